"""Label texts with a model saved by bert_model.py: a few on the command line, or a corpus of any size.

    python predict.py MODEL "I love this!" "What on earth?"
    python predict.py MODEL --threshold tuned "I love this!"
    python predict.py MODEL --input corpus.txt --output labels.tsv          # one text a line
    python predict.py MODEL --input posts.parquet --text-column body --id-column post_id --output labels.jsonl
    python predict.py MODEL --input corpus.txt --output labels.tsv --shard 3/8 --resume   # part 3 of 8
    python predict.py --merge --output labels.tsv                           # the 8 parts, in input order

MODEL is the SAVE_FP folder bert_model.py wrote (a Hugging Face model folder with goemotions.json).
A label is predicted when its sigmoid score is strictly above the threshold: the model's own (0.3
unless trained otherwise), a number given with --threshold, or the per-label thresholds tuned on dev
(--threshold tuned). The input is read, tokenized and scored a chunk at a time and the output written
as it goes, so memory does not grow with the corpus. A row that cannot be scored (empty, broken, bad
bytes) still gets an output row, with the reason in the `error` column. --output FILE appears under
its name only when complete; --resume continues a stopped run after its last complete chunk.
Details: docs/predict.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from multilabel import decide, encoder, files, lengths, options, outputs, tables
from multilabel.checkpoint import EXIT_REQUEUE, StopSignals
from multilabel.files import UserError

CHUNK_SIZE = 4096        # texts read, tokenized, scored and written at a time: memory is bounded by this
BATCH_SIZE = 64          # texts per forward pass (sorted by length within a chunk)
THRESHOLD_CHOICE = replace(options.THRESHOLD, words=("model", "tuned"))  # --threshold: a number, or the model's own
LOG_EVERY_S = 60         # a progress line this often when stderr is not a terminal
FORMATS = {".txt": "lines", ".tsv": "goemotions", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class Row:
    line: int       # where the row starts in the input (1-based; the row number for Parquet)
    id: str         # the id column, or the line number where there is none
    text: str
    error: str = ""  # why it is not scored; empty when it is
    note: str = ""   # scored, but not all of it read (a text longer than --max-windows windows)


# ------------------------------------------------------------------------------------ reading the input


def input_format(path: str, fmt: str, text_column: str | None) -> str:
    """The reader for a path: --input-format, else its suffix (.tsv: GoEmotions, or a header with --text-column)."""
    if fmt != "auto":
        return fmt
    found = FORMATS.get(Path(path).suffix.lower(), "lines") if path != "-" else "lines"
    return "tsv" if found == "goemotions" and text_column else found


def checked(line: int, row_id: object, text: object) -> Row:
    """A row to score, or with the reason it cannot be scored. An id that is not valid text is written with U+FFFD."""
    row_id = files.SURROGATE.sub("\ufffd", str(row_id))
    if not isinstance(text, str):
        return Row(line, row_id, "", "no text" if text is None else f"text is not a string ({type(text).__name__})")
    if files.unicode_problem(text):
        return Row(line, row_id, "", files.unicode_problem(text))
    if not text.strip():
        return Row(line, row_id, "", "empty text")
    return Row(line, row_id, text)


def read_rows(path: str, fmt: str, text_column: str | None = None, id_column: str | None = None) -> Iterator[Row]:
    """Every row of the input (a file, or - for standard input), one at a time, bad ones marked."""
    fmt = input_format(path, fmt, text_column)
    text_column = "text" if fmt in ("lines", "goemotions") else text_column or "text"
    id_column = "id" if fmt == "goemotions" else id_column
    table = tables.read_table(path, fmt, columns=[text_column, *([id_column] if id_column else ["id"])],
                             batch_rows=CHUNK_SIZE)
    where = f"{path}:1" if fmt != "parquet" else str(path)
    for column, option in ((text_column, "--text-column"), (id_column, "--id-column")):
        if column and fmt not in ("jsonl", "lines") and column not in table.columns:
            raise UserError(f"{where}: no column {column!r} (the columns: {', '.join(table.columns[:10])}): give "
                            f"{option}")
    id_column = id_column or ("id" if "id" in table.columns and fmt != "jsonl" else None)
    for record in table.rows:
        if record.error:
            yield Row(record.line, str(record.line), "", record.error)
        elif fmt == "jsonl":
            obj = record.values
            yield checked(record.line, obj.get(id_column or "id", record.line), obj.get(text_column))
        else:
            yield checked(record.line, record.values[id_column] if id_column else record.line,
                          record.values[text_column])


def read_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """The texts and ids of a small file (for tests and benchmarks); a bad row is an error here."""
    texts, ids = [], []
    for row in read_rows(str(path), "auto"):
        if row.error:
            raise UserError(f"{path}:{row.line}: {row.error}")
        texts.append(row.text)
        ids.append(row.id)
    return texts, ids


def chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    rows = iter(rows)
    while chunk := list(islice(rows, size)):
        yield chunk


def shard_chunks(total_rows: int, chunk_size: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The chunks [first, end) of shard K of N: whole chunks, so the parts are the unsharded run's chunks."""
    k, n = shard
    total = math.ceil(total_rows / chunk_size)
    return (k - 1) * total // n, k * total // n


# ------------------------------------------------------------------------------------ writing the output


def output_format(path: str | None, fmt: str | None) -> str:
    """--format, else the output's suffix (.tsv .csv .jsonl), else a table on a terminal."""
    if fmt:
        return fmt
    if not path:
        return "table"
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(Path(path).suffix.lower(), "tsv")


def header(fmt: str, labels: list[str], top_k: int) -> str:
    if fmt == "jsonl":
        return ""
    if fmt == "table":
        return f"{'text':<60}  {'predicted':<28}  top {top_k} scores\n"
    columns = ["id", "line", "predicted", "error"]
    columns += [x for k in range(1, top_k + 1) for x in (f"label_{k}", f"score_{k}")] if top_k else labels
    return delimited([columns], fmt)


def delimited(rows: list[list[str]], fmt: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n").writerows(rows)
    return buf.getvalue()


def format_chunk(rows: list[Row], scores: np.ndarray, labels: list[str], thresholds: np.ndarray,
                 top_k: int, fmt: str, at_least_one: bool) -> str:
    """The output lines of a chunk, in input order: scores holds one row per row without an error."""
    chosen = decide.decide(scores, thresholds, at_least_one)
    out, table, i = [], [], 0
    for row in rows:
        if row.error:
            predicted, top, values = [], [], []
        else:
            predicted = [labels[j] for j in np.flatnonzero(chosen[i])]
            values = [round(float(x), 6) for x in scores[i]]
            top = sorted(range(len(labels)), key=lambda j: -values[j])[:top_k] if top_k else []
            i += 1
        if fmt == "jsonl":
            obj = {"id": row.id, "line": row.line, "predicted": predicted, "error": row.error or row.note}
            if top_k:
                obj["top"] = [[labels[j], values[j]] for j in top]
            else:
                obj["scores"] = dict(zip(labels, values, strict=True)) if values else {}
            out.append(json.dumps(obj, ensure_ascii=False) + "\n")
        elif fmt == "table":
            short = row.text if len(row.text) <= 60 else row.text[:57] + "..."
            best = ", ".join(f"{labels[j]} {values[j]:.2f}" for j in top) if not row.error else f"({row.error})"
            out.append(f"{short:<60}  {','.join(predicted) or '-':<28}  {best}\n")
        else:
            cells = [row.id, str(row.line), ",".join(predicted), row.error or row.note]
            if top_k:
                cells += [x for j in top for x in (labels[j], f"{values[j]:.6f}")] or [""] * (2 * top_k)
            else:
                cells += [f"{v:.6f}" for v in values] or [""] * len(labels)
            table.append(cells)
    return "".join(out) if fmt in ("jsonl", "table") else delimited(table, fmt)


def note_capped(chunk: list[Row], encoded: encoder.Encoded, reading: lengths.Reading) -> None:
    """A text read in windows but longer than --max-windows of them is scored on what was read, and its row says so
    (in the error column; its scores are there)."""
    if reading.long_texts != "windows":
        return
    scored = iter(encoded.capped)
    for row in chunk:
        if not row.error and (unread := next(scored)):
            row.note = f"long text: read its first {reading.max_windows} windows, {unread} tokens unread"


def kind_of(error: str) -> str:
    """The kind of a bad row, for the summary: its reason without the details that differ from row to row (what
    follows a colon or stands in parentheses, a code point, a count), so that a million bad rows make a handful of
    kinds, not a million: "expected 3 tab-separated columns (text, labels, id), found 2 (lines 4-5: ...)" is
    "expected N tab-separated columns"."""
    kind = re.sub(r"\s*\(.*", "", error.split(":")[0])
    kind = re.sub(r"U\+[0-9A-F]{4}", "U+XXXX", kind)
    return re.sub(r"(?<![\w-])\d+(?![\w-])", "N", kind)  # "found 2" is "found N"; "UTF-8" stays


class Counts:
    """Rows seen, scored and not scored (by kind of reason, with the first line numbers), for the summary."""

    def __init__(self, state: dict | None = None) -> None:
        state = state or {}
        self.rows, self.scored = state.get("rows", 0), state.get("scored", 0)
        self.read_in_part: dict = state.get("read_in_part", {"count": 0, "first_lines": []})
        self.bad: dict[str, dict] = state.get("bad", {})

    def add(self, rows: list[Row]) -> None:
        for row in rows:
            self.rows += 1
            if not row.error:
                self.scored += 1
                if row.note:
                    self.read_in_part["count"] += 1
                    self.read_in_part["first_lines"] += [row.line][:5 - len(self.read_in_part["first_lines"])]
                continue
            kind = self.bad.setdefault(kind_of(row.error), {"count": 0, "first_lines": []})
            kind["count"] += 1
            if len(kind["first_lines"]) < 5:
                kind["first_lines"].append(row.line)

    def state(self) -> dict:
        return {"rows": self.rows, "scored": self.scored, "bad": self.bad, "read_in_part": self.read_in_part}

    def summary(self) -> str:
        bad = self.rows - self.scored
        text = f"{self.rows} rows, {self.scored} scored, {bad} not scored"
        for kind, v in self.bad.items():
            lines = ", ".join(map(str, v["first_lines"])) + (", ..." if v["count"] > len(v["first_lines"]) else "")
            text += f"; {kind}: {v['count']} (line{'s' if v['count'] > 1 else ''} {lines})"
        if n := self.read_in_part["count"]:
            lines = ", ".join(map(str, self.read_in_part["first_lines"])) + (", ..." if n > 5 else "")
            text += f"; {n} longer than --max-windows windows, scored on their first windows (lines {lines})"
        return text


class Output:
    """--output FILE written as FILE.partial, a chunk at a time, with FILE.partial.json saying how far it got
    (chunks, bytes, counts, settings); renamed to FILE when complete. --resume cuts FILE.partial back to its
    last complete chunk and goes on from there, so the result is the same bytes as a run never stopped."""

    @staticmethod
    def partial_of(path: Path) -> Path:
        return path.with_name(path.name + ".partial")

    @staticmethod
    def progress_of(path: Path) -> Path:
        return path.with_name(path.name + ".partial.json")

    @staticmethod
    def meta_of(path: Path) -> Path:
        return path.with_name(path.name + ".meta.json")

    def __init__(self, path: Path, settings: dict, head: str, resume: bool) -> None:
        self.path, self.settings = path, settings
        self.partial, self.progress = self.partial_of(path), self.progress_of(path)
        self.chunks_done, self.counts = 0, Counts()
        if resume and self.progress.exists() and self.partial.exists():
            state = files.read_json(self.progress, "a stopped run's progress")
            changed = [k for k in settings if state["settings"].get(k) != settings[k]]
            if changed:
                raise UserError(f"{self.partial}: written with other settings ({', '.join(changed)}): rerun with "
                                f"the same ones, or remove {self.partial.name} and {self.progress.name} to start over")
            self.chunks_done, self.counts = state["chunks_done"], Counts(state["counts"])
            self.f = open(self.partial, "r+b")  # noqa: SIM115 (closed by finish)
            self.f.truncate(state["bytes"])
            self.f.seek(state["bytes"])
        else:
            self.f = open(self.partial, "wb")  # noqa: SIM115 (closed by finish)
            self.write(head, [])

    def write(self, text: str, rows: list[Row]) -> None:
        self.f.write(text.encode("utf-8", errors="surrogateescape"))
        self.f.flush()
        os.fsync(self.f.fileno())
        if rows:
            self.chunks_done += 1
            self.counts.add(rows)
        state = {"settings": self.settings, "chunks_done": self.chunks_done, "bytes": self.f.tell(),
                 "counts": self.counts.state()}
        files.atomic_write(self.progress, json.dumps(state), "the progress file")

    def finish(self, meta: dict) -> None:
        self.f.close()
        files.write_json(self.meta_of(self.path), {**meta, **self.counts.state()}, "the summary")
        os.replace(self.partial, self.path)
        self.progress.unlink()


def shard_path(path: Path, shard: tuple[int, int]) -> Path:
    """labels.tsv, shard 3 of 8: labels.3-of-8.tsv."""
    return path.with_name(f"{path.stem}.{shard[0]}-of-{shard[1]}{path.suffix}")


def find_shards(path: Path) -> list[Path]:
    """The shards of path (path.K-of-N.suffix), all N of them complete, in order."""
    found: dict[int, dict[int, Path]] = {}
    pattern = re.compile(re.escape(path.stem) + r"\.(\d+)-of-(\d+)" + re.escape(path.suffix) + "$")
    for p in path.parent.glob(f"{files.glob_escape(path.stem)}.*-of-*{files.glob_escape(path.suffix)}*"):
        m = pattern.match(p.name)
        if m:
            found.setdefault(int(m[2]), {})[int(m[1])] = p
        elif p.name.endswith(".partial"):
            raise UserError(f"{p}: a shard is not finished (rerun its task with --resume)")
    if len(found) != 1:
        raise UserError(f"{path}: " + (f"no shards {path.stem}.K-of-N{path.suffix} in {path.parent}" if not found else
                                       f"shards of several splits ({', '.join(f'N={n}' for n in sorted(found))})"))
    (n, parts), = found.items()
    missing = [str(k) for k in range(1, n + 1) if k not in parts]
    if missing:
        raise UserError(f"{path}: shard(s) {', '.join(missing)} of {n} missing (not finished?)")
    return [parts[k] for k in range(1, n + 1)]


def check_parts(parts: list[Path]) -> list[dict]:
    """The shards' summaries (meta.json), refused unless they are the parts of one run (the same model, input and
    options), each its own chunks, together every chunk of the input once."""
    metas = []
    for part in parts:
        meta_path = Output.meta_of(part)
        meta = files.read_json(meta_path, "a predict.py shard's summary") if meta_path.exists() else None
        if not isinstance(meta, dict) or not isinstance(meta.get("run"), dict) or "chunks" not in meta:
            raise UserError(f"{part}: no {meta_path.name} saying which run and chunks it holds (made by an older "
                            f"predict.py?); rerun that shard")
        metas.append(meta)
    for part, meta in zip(parts[1:], metas[1:], strict=True):
        changed = [k for k in metas[0]["run"] if meta["run"].get(k) != metas[0]["run"][k]]
        if changed:
            raise UserError(f"{part}: made with other {', '.join(changed)} than {parts[0].name}: not parts of one "
                            f"run; rerun the shards with the same options and input")
    total = math.ceil((metas[0]["input_rows"] or 0) / metas[0]["run"]["chunk_size"])
    at = 0
    for part, meta in zip(parts, metas, strict=True):
        if meta["chunks"][0] != at:
            raise UserError(f"{part}: holds chunks {meta['chunks'][0]}-{meta['chunks'][1]}, the parts before it end at "
                            f"{at}: not the parts of one run")
        at = meta["chunks"][1]
    if at != total or sum(m["rows"] for m in metas) != metas[0]["input_rows"]:
        raise UserError(f"{parts[-1]}: the parts hold {sum(m['rows'] for m in metas)} rows in {at} chunks, the input "
                        f"{metas[0]['input_rows']} rows in {total}: not the parts of one run")
    return metas


def merge(path: Path) -> str:
    """Put the shards of path together in order, into path."""
    if path.exists():
        raise UserError(f"{path}: already exists; remove it to merge again")
    parts, fmt, counts = find_shards(path), output_format(str(path), None), Counts()
    for meta in check_parts(parts):
        counts.rows += meta["rows"]
        counts.scored += meta["scored"]
        for kind, v in meta["bad"].items():
            mine = counts.bad.setdefault(kind, {"count": 0, "first_lines": []})
            mine["count"] += v["count"]
            mine["first_lines"] = (mine["first_lines"] + v["first_lines"])[:5]
        part = meta.get("read_in_part", {"count": 0, "first_lines": []})
        counts.read_in_part["count"] += part["count"]
        counts.read_in_part["first_lines"] = (counts.read_in_part["first_lines"] + part["first_lines"])[:5]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            first_header = None
            for part in parts:
                with open(part, "rb") as f:
                    if fmt in ("tsv", "csv"):
                        head = f.readline()
                        if first_header is None:
                            first_header = head
                            out.write(head)
                        elif head != first_header:
                            raise UserError(f"{part}:1: header differs from {parts[0].name}'s (other settings?)")
                    while block := f.read(1 << 20):
                        out.write(block)

    files.atomic_write(path, write, "the merged output")
    return f"merged {len(parts)} shards into {path}: {counts.summary()}"


# ------------------------------------------------------------------------------------------ the run


class Progress:
    """tqdm (with texts/s) on a terminal; otherwise a line every LOG_EVERY_S seconds, for a job's log."""

    def __init__(self, total: int | None, done: int) -> None:
        from tqdm import tqdm

        self.start, self.last, self.done, self.base = time.monotonic(), time.monotonic(), done, done
        self.bar = tqdm(total=total, initial=done, unit=" texts", file=sys.stderr, disable=not sys.stderr.isatty())
        self.total = total

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        now = time.monotonic()
        if self.bar.disable and now - self.last >= LOG_EVERY_S:
            self.last = now
            of = f" of {self.total}" if self.total else ""
            print(f"predict.py: {self.done}{of} texts, {self.rate():.1f} texts/s", file=sys.stderr, flush=True)

    def rate(self) -> float:
        return (self.done - self.base) / max(time.monotonic() - self.start, 1e-9)

    def close(self) -> None:
        self.bar.close()


def thresholds_for(choice: float | str, settings: dict, model_dir: str) -> np.ndarray:
    labels = settings["labels"]
    if choice == "model":
        return np.full(len(labels), float(settings["threshold"]), dtype=np.float32)
    if choice == "tuned":
        if not settings["thresholds"]:
            raise UserError(f"{model_dir}: no tuned thresholds in {files.MODEL_SETTINGS}")
        return np.array([settings["thresholds"][n] for n in labels], dtype=np.float32)
    return np.full(len(labels), choice, dtype=np.float32)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise UserError(f"--shard {text}: expected K/N with 1 <= K <= N, e.g. 3/8")
    return int(m[1]), int(m[2])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="the model folder bert_model.py saved (SAVE_FP)")
    p.add_argument("texts", nargs="*", help="texts to classify (before or after the options)")
    p.add_argument("--input", help="a file (one text a line; .tsv GoEmotions; .csv .jsonl .parquet), or - for stdin")
    p.add_argument("--input-format", choices=["auto", "lines", "goemotions", "tsv", "csv", "jsonl", "parquet"],
                   default="auto", help="default: from the suffix (.tsv is GoEmotions, or a header with --text-column)")
    p.add_argument("--text-column", help="the text's column (header name or JSON key; default 'text')")
    p.add_argument("--id-column", help="an id column carried through (default 'id' where there is one, else the line)")
    p.add_argument("--output", type=Path, help="write here (TSV, CSV or JSONL by suffix), complete or not at all")
    p.add_argument("--format", choices=["table", "tsv", "csv", "jsonl"],
                   help="default: from --output's suffix; a table on standard output")
    p.add_argument("--top-k", type=options.WHOLE_0,
                   help="only the K highest scores (default: every label's; the table: 3)")
    p.add_argument("--threshold", type=THRESHOLD_CHOICE, default="model",
                   help="'model' (the saved one, default), 'tuned' (per label, from dev) or a number")
    p.add_argument("--at-least-one", action="store_true",
                   help="where no label passes its threshold, predict the top one (off, as in the paper)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"], default="fp32",
                   help="fp32 (the pipeline's scores); bf16 autocast; fp16 (--cuda); int8: ONNX Runtime, CPU")
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--threads", type=options.WHOLE_1,
                   help="CPU threads (default: torch's, i.e. OMP_NUM_THREADS or the cores)")
    p.add_argument("--batch-size", type=options.WHOLE_1, default=BATCH_SIZE)
    p.add_argument("--chunk-size", type=options.WHOLE_1, default=CHUNK_SIZE,
                   help="texts read, scored and written at a time")
    p.add_argument("--shard", help="K/N: only the K-th of N equal parts, into OUTPUT.K-of-N.SUFFIX")
    p.add_argument("--resume", action="store_true", help="continue a stopped run with the same options")
    p.add_argument("--merge", action="store_true", help="put --output's finished shards together, in order")
    options.describe_ranges(p)
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.merge:
            if not args.output or args.model or args.input:
                raise UserError("--merge takes only --output (the name the shards were given)")
            with outputs.claim("predict.py", [], [outputs.Output(args.output, "the merged output (--output)")]):
                print(f"predict.py: {merge(args.output)}", file=sys.stderr)
            return 0
        return label(args)
    except UserError as e:
        return files.fail("predict.py", e)


def check_options(args: argparse.Namespace) -> None:
    if not args.model:
        raise UserError("no model: give the model folder bert_model.py saved, then the texts or --input FILE")
    if args.cuda and not torch.cuda.is_available():
        raise UserError("--cuda given but PyTorch sees no CUDA device")
    if args.precision == "fp16" and not args.cuda:
        raise UserError("--precision fp16 needs --cuda (on a CPU use bf16 or int8)")
    if args.precision == "int8" and args.cuda:
        raise UserError("--precision int8 is the CPU path (ONNX Runtime); on a GPU use fp16 or bf16")
    if args.input and args.texts:
        raise UserError("give texts on the command line or --input, not both")
    if not args.input and not args.texts:
        raise UserError("no texts: give some on the command line, --input FILE, or --input - for standard input")
    if args.input and args.input != "-":  # read more than once (checked, counted, checksummed): a file, not a pipe
        if not Path(args.input).exists():
            raise UserError(f"{args.input}: no such file")
        files.regular_file(args.input, " (a stream: --input - reads standard input, once)")
    if args.resume and not args.output:
        raise UserError("--resume needs --output (standard output cannot be resumed)")
    if args.shard and (not args.input or args.input == "-"):
        raise UserError("--shard needs --input FILE (standard input cannot be split)")


def load_scorer(args: argparse.Namespace, device: torch.device) -> tuple:
    """(scorer, tokenizer, settings): the model in PyTorch, or its INT8 export in ONNX Runtime."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer, settings = encoder.load(args.model, device)
    if args.precision != "int8":
        return model, tokenizer, settings
    onnx_path, exported = encoder.export_int8(model, Path(args.model))
    if exported:
        print(f"predict.py: exported the INT8 model to {onnx_path} (once; the PyTorch files are untouched)",
              file=sys.stderr)
    return encoder.onnx_session(onnx_path, torch.get_num_threads()), tokenizer, settings


def label(args: argparse.Namespace) -> int:
    check_options(args)
    shard = parse_shard(args.shard)
    fmt = output_format(str(args.output) if args.output else None, args.format)
    top_k = args.top_k if args.top_k is not None else (3 if fmt == "table" else 0)
    out_path = shard_path(args.output, shard) if args.output and shard else args.output
    with outputs.claim("predict.py", label_inputs(args), label_outputs(out_path)):
        return label_into(args, out_path, fmt, top_k, shard)


def label_inputs(args: argparse.Namespace) -> list[outputs.Input]:
    """The model folder (loaded whole: an output inside it would change its fingerprint) and the input file."""
    found = [outputs.Input(Path(args.model), "the model folder", folder=True)]
    if args.input and args.input != "-":
        found.append(outputs.Input(Path(args.input), "the input (--input)"))
    return found


def label_outputs(out_path: Path | None) -> list[outputs.Output]:
    """--output (or its shard's name), and the files beside it: the partial output, its progress and the summary."""
    if not out_path:
        return []
    return [outputs.Output(out_path, "the output (--output)"),
            outputs.Output(Output.partial_of(out_path), "a stopped run's partial output", named=False),
            outputs.Output(Output.progress_of(out_path), "a stopped run's progress file", named=False,
                           ours=outputs.json_with("settings", "chunks_done")),
            outputs.Output(Output.meta_of(out_path), "the output's summary", named=False,
                           ours=outputs.json_with("run", "chunks"))]


def label_into(args: argparse.Namespace, out_path: Path | None, fmt: str, top_k: int,
               shard: tuple[int, int] | None) -> int:
    """label(), with the outputs checked and locked."""
    if out_path and out_path.exists():
        if args.resume:
            print(f"predict.py: {out_path} is already complete", file=sys.stderr)
            return 0
        raise UserError(f"{out_path}: already exists; remove it or choose another --output")
    partial = Output.partial_of(out_path) if out_path else None
    if partial and partial.exists() and not args.resume:
        raise UserError(f"{partial}: a stopped run's output: --resume continues it; remove it to start over")
    if args.input and args.input != "-":  # a missing column or an unreadable file, before the model loads
        next(iter(read_rows(args.input, args.input_format, args.text_column, args.id_column)), None)
    device = torch.device("cuda" if args.cuda else "cpu")
    scorer, tokenizer, settings = load_scorer(args, device)
    if args.input == "-":  # UTF-16 or binary input refused before the output begins (its start peeked, not read)
        files.check_encoding("-", sys.stdin.buffer)
    try:
        return run(args, scorer, tokenizer, settings, fmt, top_k, out_path, shard, device)
    except OSError as e:
        raise UserError(files.write_error(Path(e.filename or out_path or "-"), "the output", 0, e)) from None


def run(args: argparse.Namespace, scorer, tokenizer, settings: dict, fmt: str, top_k: int, out_path: Path | None,
        shard: tuple[int, int] | None, device: torch.device) -> int:
    """Read, score and write a chunk at a time, from where a stopped run got to; exit 99 on a stop signal."""
    labels, thresholds = settings["labels"], thresholds_for(args.threshold, settings, args.model)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    top_k = min(top_k, len(labels))  # --top-k beyond the labels: every label, ranked
    reading = lengths.Reading.of(settings)

    def rows() -> Iterator[Row]:
        if args.texts:
            return (checked(i, str(i), t) for i, t in enumerate(args.texts, 1))
        return read_rows(args.input, args.input_format, args.text_column, args.id_column)

    first, end, total, input_rows = 0, None, None, None
    if shard:
        input_rows = sum(1 for _ in rows())
        first, end = shard_chunks(input_rows, args.chunk_size, shard)
        total = min(end * args.chunk_size, input_rows) - first * args.chunk_size
    head = header(fmt, labels, top_k)
    out, stop, run = None, None, None
    if out_path:
        run = run_settings(args, fmt, top_k)
        out = Output(out_path, {**run, "shard": args.shard}, head, args.resume)
        if out.chunks_done:
            print(f"predict.py: resuming {out.partial} after {out.chunks_done} chunk(s), {out.counts.rows} rows",
                  file=sys.stderr)
        stop = StopSignals()
    else:
        sys.stdout.write(head)
    counts = out.counts if out else Counts()
    progress = Progress(total, counts.rows)
    for chunk in islice(chunks(rows(), args.chunk_size), first + (out.chunks_done if out else 0), end):
        encoded = encoder.encode(tokenizer, [r.text for r in chunk if not r.error], reading)
        scores = encoder.score(scorer, encoded, args.batch_size, encoder.pad_id(tokenizer), device, amp,
                               reading.pooling)
        note_capped(chunk, encoded, reading)
        text = format_chunk(chunk, scores, labels, thresholds, top_k, fmt, args.at_least_one)
        if out:
            out.write(text, chunk)
        else:
            counts.add(chunk)
            sys.stdout.write(text)
            sys.stdout.flush()
        progress.update(len(chunk))
        if stop and stop.signal:
            progress.close()
            print(f"predict.py: {stop.signal}: stopped after chunk {out.chunks_done} ({out.counts.rows} rows) in "
                  f"{out.partial}; rerun with --resume to continue (exit {EXIT_REQUEUE})", file=sys.stderr)
            return EXIT_REQUEUE
    progress.close()
    seconds = time.monotonic() - progress.start
    if out:
        out.finish({"model": str(args.model), "input": args.input, "shard": args.shard, "precision": args.precision,
                    "thresholds": dict(zip(labels, [round(float(t), 6) for t in thresholds], strict=True)),
                    "at_least_one": args.at_least_one, "format": fmt, "top_k": top_k,
                    # what --merge checks: every part of one run, its chunks, and the input's rows
                    "run": run, "chunks": [first, first + out.chunks_done], "input_rows": input_rows})
    note = "; at least one label per text (--at-least-one)" if args.at_least_one else ""
    print(f"predict.py: {counts.summary()}; {progress.rate():.1f} texts/s over {seconds:.1f} s{note}"
          + (f"; wrote {out_path}" if out_path else ""), file=sys.stderr)
    return 0


def run_settings(args: argparse.Namespace, fmt: str, top_k: int) -> dict:
    """What a resumed run must share with the run it continues, and the shards of one run with one another: the
    model and the input by content (SHA-256), and every option that shapes the output."""
    source = Path(args.input).resolve() if args.input and args.input != "-" else None
    return {"model": str(Path(args.model).resolve()), "model_sha256": encoder.fingerprint(Path(args.model)),
            "input": str(source or args.input or args.texts), "input_size": source.stat().st_size if source else None,
            "input_sha256": files.sha256(source) if source else None,
            **{k: getattr(args, k) for k in ("input_format", "text_column", "id_column", "threshold", "at_least_one",
                                             "precision", "batch_size", "chunk_size")},
            "format": fmt, "top_k": top_k}


if __name__ == "__main__":
    sys.exit(main())
