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
import logging
import math
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

CHUNK_SIZE = 4096        # texts read, tokenized, scored and written at a time: memory is bounded by this
BATCH_SIZE = 64          # texts per forward pass (sorted by length within a chunk)
LOG_EVERY_S = 60         # a progress line this often when stderr is not a terminal
ONNX_DIR = "onnx-int8"   # --precision int8: the exported, quantized model, inside the model folder
FORMATS = {".txt": "lines", ".tsv": "goemotions", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet"}
BAD_BYTES = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of bytes that are not UTF-8
STOP_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")  # Grid Engine's warnings (-notify, s_rt) and qdel


class UserError(Exception):
    """Bad input: reported as one line, exit 1, no traceback."""


@dataclass
class Row:
    line: int       # where the row starts in the input (1-based; the row number for Parquet)
    id: str         # the id column, or the line number where there is none
    text: str
    error: str = ""  # why it is not scored; empty when it is


# --------------------------------------------------------------------------- reading the input


def input_format(path: str, fmt: str, text_column: str | None) -> str:
    """The reader for a path: --input-format, else its suffix (.tsv: GoEmotions, or a header with --text-column)."""
    if fmt != "auto":
        return fmt
    found = FORMATS.get(Path(path).suffix.lower(), "lines") if path != "-" else "lines"
    return "tsv" if found == "goemotions" and text_column else found


def checked(line: int, row_id: str, text: object) -> Row:
    row_id = BAD_BYTES.sub("\ufffd", row_id)  # an id with bad bytes is still written, as U+FFFD
    if not isinstance(text, str):
        return Row(line, row_id, "", "no text" if text is None else f"text is not a string ({type(text).__name__})")
    if BAD_BYTES.search(text):
        return Row(line, row_id, "", "not valid UTF-8")
    if not text.strip():
        return Row(line, row_id, "", "empty text")
    return Row(line, row_id, text)


def read_lines(f: io.TextIOBase) -> Iterator[Row]:
    for n, line in enumerate(f, 1):
        yield checked(n, str(n), line.rstrip("\r\n"))


def read_delimited(f: io.TextIOBase, delimiter: str, text_column: str | None, id_column: str | None,
                   goemotions: bool) -> Iterator[Row]:
    """GoEmotions TSV (text, labels, id; no header) or CSV/TSV with a header; CSV quoting either way."""
    reader = csv.reader(f, delimiter=delimiter)
    text_at, id_at, width = 0, 2, 3
    if not goemotions:
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise UserError(f"1: cannot read the header: {e}") from None
        text_column = text_column or "text"
        if text_column not in header:
            raise UserError(f"1: no column {text_column!r} in the header ({', '.join(header[:10])}): "
                            f"give --text-column")
        if id_column and id_column not in header:
            raise UserError(f"1: no column {id_column!r} in the header: give --id-column")
        id_column = id_column or ("id" if "id" in header else None)
        text_at, width = header.index(text_column), len(header)
        id_at = header.index(id_column) if id_column else None
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = reader.line_num
            yield Row(start, str(start), "", f"broken row: {e}")
            continue
        end = reader.line_num
        row_id = row[id_at] if id_at is not None and len(row) == width else str(start)
        if len(row) != width:
            span = f" (lines {start}-{end}: an unclosed quote?)" if end > start else ""
            what = "(text, labels, id)" if goemotions else "as the header has"
            yield Row(start, row_id, "", f"expected {width} columns {what}, found {len(row)}{span}")
        else:
            yield checked(start, row_id, row[text_at])


def read_jsonl(f: io.TextIOBase, text_column: str | None, id_column: str | None) -> Iterator[Row]:
    text_column = text_column or "text"
    for n, line in enumerate(f, 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            yield Row(n, str(n), "", "not valid UTF-8" if BAD_BYTES.search(line) else f"not JSON: {e}")
            continue
        if not isinstance(obj, dict):
            yield Row(n, str(n), "", "not a JSON object")
            continue
        row_id = obj.get(id_column or "id", n)
        yield checked(n, str(row_id), obj.get(text_column))


def read_parquet(path: str, text_column: str | None, id_column: str | None) -> Iterator[Row]:
    import pyarrow.parquet as pq

    text_column = text_column or "text"
    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise UserError(f"{path}: cannot read as Parquet: {e}") from None
    names = f.schema_arrow.names
    if text_column not in names:
        raise UserError(f"{path}: no column {text_column!r} (columns: {', '.join(names[:10])}): give --text-column")
    if id_column and id_column not in names:
        raise UserError(f"{path}: no column {id_column!r}: give --id-column")
    id_column = id_column or ("id" if "id" in names else None)
    n = 0
    for batch in f.iter_batches(batch_size=CHUNK_SIZE, columns=[text_column] + ([id_column] if id_column else [])):
        texts = batch.column(text_column).to_pylist()
        ids = batch.column(id_column).to_pylist() if id_column else None
        for i, text in enumerate(texts):
            n += 1
            yield checked(n, str(ids[i]) if ids else str(n), text)


def read_rows(path: str, fmt: str, text_column: str | None = None, id_column: str | None = None) -> Iterator[Row]:
    """Every row of the input (a file, or - for standard input), one at a time, bad ones marked."""
    fmt = input_format(path, fmt, text_column)
    if fmt == "parquet":
        if path == "-":
            raise UserError("Parquet cannot be read from standard input: give the file")
        yield from read_parquet(path, text_column, id_column)
        return
    # surrogateescape: bytes that are not UTF-8 become marks that checked() reports, instead of an exception
    newline = "" if fmt in ("goemotions", "tsv", "csv") else None
    if path == "-":
        f = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="surrogateescape", newline=newline)
    else:
        f = open(path, encoding="utf-8-sig", errors="surrogateescape", newline=newline)
    try:
        if fmt == "lines":
            yield from read_lines(f)
        elif fmt == "jsonl":
            yield from read_jsonl(f, text_column, id_column)
        else:
            yield from read_delimited(f, "," if fmt == "csv" else "\t", text_column, id_column,
                                      fmt == "goemotions")
    except UserError as e:
        raise UserError(f"{path}:{e}") from None
    finally:  # standard input stays open (a wrapper closed with it would close sys.stdin for good)
        f.detach() if path == "-" else f.close()


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


# --------------------------------------------------------------------------- the model


def load(model_dir: str | Path, device: torch.device):
    """Model, tokenizer and the goemotions.json settings (labels, thresholds, max_length)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model folder (no config.json); give the SAVE_FP of bert_model.py")
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar per load would fill a job's log; our own progress follows
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load the model: {str(e).splitlines()[0]}") from None
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    info_path = model_dir / "goemotions.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    labels = info.get("labels") or [model.config.id2label[i] for i in range(model.config.num_labels)]
    info = {"threshold": 0.3, "max_length": 512, "thresholds": None, **info, "labels": labels}
    return model, tokenizer, info


def export_int8(model, model_dir: Path) -> Path:
    """MODEL/onnx-int8/model.onnx: the model exported to ONNX (torch.onnx) with its weights quantized to
    INT8 per channel by ONNX Runtime (dynamic quantization), written beside the PyTorch files and renamed
    into place."""
    import onnx  # noqa: F401  (torch.onnx.export needs it)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    final = model_dir / ONNX_DIR / "model.onnx"
    if final.exists():
        return final
    tmp = model_dir / f".{ONNX_DIR}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 8), dtype=torch.long)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process first
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it records as dynamic
        torch.onnx.export(model.cpu(), (ids, torch.ones_like(ids)), tmp / "fp32.onnx", dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                        "attention_mask": {0: "batch", 1: "length"}, "logits": {0: "batch"}})
        # per channel: test macro F1 0.5120 against fp32's 0.5124 on GoEmotions; per tensor 0.5067 (RESULTS.md)
        quantize_dynamic(tmp / "fp32.onnx", tmp / "model.onnx", weight_type=QuantType.QInt8, per_channel=True)
    logging.getLogger().setLevel(quiet)
    (tmp / "fp32.onnx").unlink()
    final.parent.mkdir(exist_ok=True)
    os.replace(tmp / "model.onnx", final)
    tmp.rmdir()
    return final


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def batches(encoded: list[list[int]], batch_size: int,
            pad_id: int) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """(positions, input ids, attention mask) for batches of texts sorted by length: little padding."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            ids[row, :len(encoded[i])] = encoded[i]
            mask[row, :len(encoded[i])] = 1
        yield idx, ids, mask


@torch.no_grad()
def score(model, tokenizer, texts: list[str], max_length: int, batch_size: int = BATCH_SIZE,
          device: torch.device | None = None, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sigmoid scores (texts x labels). model: a PyTorch model, or an ONNX Runtime session (int8)."""
    device = device or torch.device("cpu")
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if texts else []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = None
    for idx, ids, mask in batches(encoded, batch_size, pad_id):
        if hasattr(model, "run"):  # ONNX Runtime
            logits = torch.from_numpy(model.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        else:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(input_ids=torch.from_numpy(ids).to(device),
                               attention_mask=torch.from_numpy(mask).to(device)).logits
        if out is None:
            out = torch.zeros(len(texts), logits.shape[1])
        out[idx] = torch.sigmoid(logits.float()).cpu()
    return out if out is not None else torch.zeros(0, 0)


# --------------------------------------------------------------------------- writing the output


def output_format(path: str | None, fmt: str | None) -> str:
    """--format, else the output's suffix (.tsv .csv .jsonl), else a table on a terminal."""
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower() if path else ""
    if not path:
        return "table"
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "tsv")


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


def predictions(scores: torch.Tensor, thresholds: torch.Tensor, at_least_one: bool) -> torch.Tensor:
    """Which labels each text gets: score above its threshold; --at-least-one adds the top label where none is."""
    chosen = scores > thresholds
    if at_least_one and len(scores):
        none = ~chosen.any(dim=1)
        chosen[none, scores[none].argmax(dim=1)] = True
    return chosen


def format_chunk(rows: list[Row], scores: torch.Tensor, labels: list[str], thresholds: torch.Tensor,
                 top_k: int, fmt: str, at_least_one: bool) -> str:
    """The output lines of a chunk, in input order: scores holds one row per row without an error."""
    chosen = predictions(scores, thresholds, at_least_one)
    out, table, i = [], [], 0
    for row in rows:
        if row.error:
            predicted, top, values = [], [], []
        else:
            predicted = [labels[j] for j in torch.nonzero(chosen[i]).flatten().tolist()]
            values = [round(float(x), 6) for x in scores[i]]
            top = sorted(range(len(labels)), key=lambda j: -values[j])[:top_k] if top_k else []
            i += 1
        if fmt == "jsonl":
            obj = {"id": row.id, "line": row.line, "predicted": predicted, "error": row.error}
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
            cells = [row.id, str(row.line), ",".join(predicted), row.error]
            if top_k:
                cells += [x for j in top for x in (labels[j], f"{values[j]:.6f}")] or [""] * (2 * top_k)
            else:
                cells += [f"{v:.6f}" for v in values] or [""] * len(labels)
            table.append(cells)
    return "".join(out) if fmt in ("jsonl", "table") else delimited(table, fmt)


class Counts:
    """Rows seen, scored and not scored (by reason, with the first line numbers), for the summary."""

    def __init__(self, state: dict | None = None) -> None:
        state = state or {}
        self.rows, self.scored = state.get("rows", 0), state.get("scored", 0)
        self.bad: dict[str, dict] = state.get("bad", {})

    def add(self, rows: list[Row]) -> None:
        for row in rows:
            self.rows += 1
            if not row.error:
                self.scored += 1
                continue
            kind = self.bad.setdefault(row.error.split(":")[0], {"count": 0, "first_lines": []})
            kind["count"] += 1
            if len(kind["first_lines"]) < 5:
                kind["first_lines"].append(row.line)

    def state(self) -> dict:
        return {"rows": self.rows, "scored": self.scored, "bad": self.bad}

    def summary(self) -> str:
        bad = self.rows - self.scored
        text = f"{self.rows} rows, {self.scored} scored, {bad} not scored"
        for kind, v in self.bad.items():
            lines = ", ".join(map(str, v["first_lines"])) + (", ..." if v["count"] > len(v["first_lines"]) else "")
            text += f"; {kind}: {v['count']} (line{'s' if v['count'] > 1 else ''} {lines})"
        return text


class Output:
    """--output FILE written as FILE.partial, a chunk at a time, with FILE.partial.json saying how far it got
    (chunks, bytes, counts, settings); renamed to FILE when complete. --resume cuts FILE.partial back to its
    last complete chunk and goes on from there, so the result is the same bytes as a run never stopped."""

    def __init__(self, path: Path, settings: dict, head: str, resume: bool) -> None:
        self.path, self.settings = path, settings
        self.partial = path.with_name(path.name + ".partial")
        self.progress = path.with_name(path.name + ".partial.json")
        self.chunks_done, self.counts = 0, Counts()
        if resume and self.progress.exists() and self.partial.exists():
            state = json.loads(self.progress.read_text(encoding="utf-8"))
            changed = [k for k in settings if state["settings"].get(k) != settings[k]]
            if changed:
                raise UserError(f"{self.partial}: written with other settings ({', '.join(changed)}): rerun with "
                                f"the same ones, or remove {self.partial.name} and {self.progress.name} to start over")
            self.chunks_done, self.counts = state["chunks_done"], Counts(state["counts"])
            self.f = open(self.partial, "r+b")
            self.f.truncate(state["bytes"])
            self.f.seek(state["bytes"])
        else:
            self.f = open(self.partial, "wb")
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
        tmp = self.progress.with_name(self.progress.name + ".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, self.progress)

    def finish(self, meta: dict) -> None:
        self.f.close()
        meta_path = self.path.with_name(self.path.name + ".meta.json")
        meta_path.write_text(json.dumps({**meta, **self.counts.state()}, indent=1) + "\n", encoding="utf-8")
        os.replace(self.partial, self.path)
        self.progress.unlink()


def shard_path(path: Path, shard: tuple[int, int]) -> Path:
    """labels.tsv, shard 3 of 8: labels.3-of-8.tsv."""
    return path.with_name(f"{path.stem}.{shard[0]}-of-{shard[1]}{path.suffix}")


def merge(path: Path) -> str:
    """Put the shards of path (path.K-of-N.suffix, all N complete) together in order, into path."""
    found: dict[int, dict[int, Path]] = {}
    pattern = re.compile(re.escape(path.stem) + r"\.(\d+)-of-(\d+)" + re.escape(path.suffix) + "$")
    for p in path.parent.glob(f"{path.stem}.*-of-*{path.suffix}*"):
        m = pattern.match(p.name)
        if m:
            found.setdefault(int(m[2]), {})[int(m[1])] = p
        elif p.name.endswith(".partial"):
            raise UserError(f"{p}: a shard is not finished (rerun its task with --resume)")
    if len(found) != 1:
        raise UserError(f"{path}: " + (f"no shards {path.stem}.K-of-N{path.suffix} in {path.parent}" if not found else
                                       f"shards of several splits ({', '.join(f'N={n}' for n in sorted(found))})"))
    if path.exists():
        raise UserError(f"{path}: already exists; remove it to merge again")
    (n, parts), = found.items()
    missing = [str(k) for k in range(1, n + 1) if k not in parts]
    if missing:
        raise UserError(f"{path}: shard(s) {', '.join(missing)} of {n} missing (not finished?)")
    fmt = output_format(str(path), None)
    tmp = path.with_name(path.name + ".partial")
    counts = Counts()
    with open(tmp, "wb") as out:
        first_header = None
        for k in range(1, n + 1):
            with open(parts[k], "rb") as f:
                if fmt in ("tsv", "csv"):
                    head = f.readline()
                    if first_header is None:
                        first_header = head
                        out.write(head)
                    elif head != first_header:
                        raise UserError(f"{parts[k]}:1: header differs from {parts[1].name}'s (other settings?)")
                while block := f.read(1 << 20):
                    out.write(block)
            meta = parts[k].with_name(parts[k].name + ".meta.json")
            if meta.exists():
                state = json.loads(meta.read_text(encoding="utf-8"))
                counts.rows += state["rows"]
                counts.scored += state["scored"]
                for kind, v in state["bad"].items():
                    mine = counts.bad.setdefault(kind, {"count": 0, "first_lines": []})
                    mine["count"] += v["count"]
                    mine["first_lines"] = (mine["first_lines"] + v["first_lines"])[:5]
    os.replace(tmp, path)
    return f"merged {n} shards into {path}: {counts.summary()}"


# --------------------------------------------------------------------------- the run


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


STOP: list[str] = []


def stop_after_this_chunk(signum: int, frame: object) -> None:
    STOP.append(signal.Signals(signum).name)


def thresholds_for(choice: str, info: dict, model_dir: str) -> torch.Tensor:
    labels = info["labels"]
    if choice == "model":
        return torch.full((len(labels),), float(info["threshold"]))
    if choice == "tuned":
        if not info["thresholds"]:
            raise UserError(f"{model_dir}: no tuned thresholds in goemotions.json")
        return torch.tensor([info["thresholds"][n] for n in labels])
    try:
        return torch.full((len(labels),), float(choice))
    except ValueError:
        raise UserError(f"--threshold {choice!r}: expected a number, 'model' or 'tuned'") from None


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
    p.add_argument("--top-k", type=int, help="only the K highest scores (default: every label's; the table: 3)")
    p.add_argument("--threshold", default="model",
                   help="a number, 'model' (the saved one, default) or 'tuned' (per label, from dev)")
    p.add_argument("--at-least-one", action="store_true",
                   help="where no label passes its threshold, predict the top one (off, as in the paper)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"], default="fp32",
                   help="fp32 (the pipeline's scores); bf16 autocast; fp16 (--cuda); int8: ONNX Runtime, CPU")
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's, i.e. OMP_NUM_THREADS or the cores)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="texts read, scored and written at a time")
    p.add_argument("--shard", help="K/N: only the K-th of N equal parts, into OUTPUT.K-of-N.SUFFIX")
    p.add_argument("--resume", action="store_true", help="continue a stopped run with the same options")
    p.add_argument("--merge", action="store_true", help="put --output's finished shards together, in order")
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.merge:
            if not args.output or args.model or args.input:
                raise UserError("--merge takes only --output (the name the shards were given)")
            print(f"predict.py: {merge(args.output)}", file=sys.stderr)
            return 0
        return label(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def label(args: argparse.Namespace) -> int:
    if not args.model:
        raise UserError("no model: give the model folder bert_model.py saved, then the texts or --input FILE")
    if args.cuda and not torch.cuda.is_available():
        raise UserError("--cuda given but PyTorch sees no CUDA device")
    if args.precision == "fp16" and not args.cuda:
        raise UserError("--precision fp16 needs --cuda (on a CPU use bf16 or int8)")
    if args.precision == "int8" and args.cuda:
        raise UserError("--precision int8 is the CPU path (ONNX Runtime); on a GPU use fp16 or bf16")
    for name in ("batch_size", "chunk_size", "threads", "top_k"):
        if getattr(args, name) is not None and getattr(args, name) < (0 if name == "top_k" else 1):
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: too small")
    if args.input and args.texts:
        raise UserError("give texts on the command line or --input, not both")
    if not args.input and not args.texts:
        raise UserError("no texts: give some on the command line, --input FILE, or --input - for standard input")
    if args.input and args.input != "-" and not Path(args.input).is_file():
        raise UserError(f"{args.input}: no such file")
    if args.resume and not args.output:
        raise UserError("--resume needs --output (standard output cannot be resumed)")
    shard = parse_shard(args.shard)
    if shard and (not args.input or args.input == "-"):
        raise UserError("--shard needs --input FILE (standard input cannot be split)")
    fmt = output_format(str(args.output) if args.output else None, args.format)
    top_k = args.top_k if args.top_k is not None else (3 if fmt == "table" else 0)
    out_path = shard_path(args.output, shard) if args.output and shard else args.output
    if out_path and out_path.exists():
        if args.resume:
            print(f"predict.py: {out_path} is already complete", file=sys.stderr)
            return 0
        raise UserError(f"{out_path}: already exists; remove it or choose another --output")
    partial = out_path.with_name(out_path.name + ".partial") if out_path else None
    if partial and partial.exists() and not args.resume:
        raise UserError(f"{partial}: a stopped run's output: --resume continues it; remove it to start over")

    if args.input and args.input != "-":  # a missing column or an unreadable file, before the model loads
        next(iter(read_rows(args.input, args.input_format, args.text_column, args.id_column)), None)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    model, tokenizer, info = load(args.model, device)
    labels, thresholds = info["labels"], thresholds_for(args.threshold, info, args.model)
    if args.precision == "int8":
        exported = (Path(args.model) / ONNX_DIR / "model.onnx").exists()
        onnx_path = export_int8(model, Path(args.model))
        if not exported:
            print(f"predict.py: exported the INT8 model to {onnx_path} (once; the PyTorch files are untouched)",
                  file=sys.stderr)
        model = onnx_session(onnx_path, torch.get_num_threads())
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def rows() -> Iterator[Row]:
        if args.texts:
            return (checked(i, str(i), t) for i, t in enumerate(args.texts, 1))
        return read_rows(args.input, args.input_format, args.text_column, args.id_column)

    first, end, total = 0, None, None
    try:
        if shard:
            total = sum(1 for _ in rows())
            first, end = shard_chunks(total, args.chunk_size, shard)
            total = min(end * args.chunk_size, total) - first * args.chunk_size
        head = header(fmt, labels, top_k)
        if out_path:
            source = Path(args.input).resolve() if args.input and args.input != "-" else None
            settings = {"model": str(Path(args.model).resolve()), "input": str(source or args.input or args.texts),
                        "input_size": source.stat().st_size if source else None,
                        **{k: getattr(args, k) for k in ("input_format", "text_column", "id_column", "threshold",
                                                         "at_least_one", "precision", "batch_size", "chunk_size",
                                                         "shard")}, "format": fmt, "top_k": top_k}
            out = Output(out_path, settings, head, args.resume)
            if out.chunks_done:
                print(f"predict.py: resuming {out.partial} after {out.chunks_done} chunk(s), "
                      f"{out.counts.rows} rows", file=sys.stderr)
            for name in STOP_SIGNALS:
                signal.signal(getattr(signal, name), stop_after_this_chunk)
        else:
            out = None
            sys.stdout.write(head)
        done = out.chunks_done if out else 0
        counts = out.counts if out else Counts()
        progress = Progress(total, counts.rows)
        for chunk in islice(chunks(rows(), args.chunk_size), first + done, end):
            texts = [r.text for r in chunk if not r.error]
            scores = score(model, tokenizer, texts, int(info["max_length"]), args.batch_size, device, amp)
            text = format_chunk(chunk, scores, labels, thresholds, top_k, fmt, args.at_least_one)
            if out:
                out.write(text, chunk)
            else:
                counts.add(chunk)
                sys.stdout.write(text)
                sys.stdout.flush()
            progress.update(len(chunk))
            if STOP:
                progress.close()
                print(f"predict.py: {STOP[0]}: stopped after chunk {out.chunks_done} ({out.counts.rows} rows) in "
                      f"{out.partial}; rerun with --resume to continue (exit 99)", file=sys.stderr)
                return 99
        progress.close()
    except OSError as e:
        raise UserError(f"{e.filename or args.input}: {e.strerror or e}") from None
    seconds = time.monotonic() - progress.start
    if out:
        out.finish({"model": str(args.model), "input": args.input, "shard": args.shard, "precision": args.precision,
                    "thresholds": dict(zip(labels, [round(float(t), 6) for t in thresholds], strict=True)),
                    "at_least_one": args.at_least_one, "format": fmt, "top_k": top_k})
    note = "; at least one label per text (--at-least-one)" if args.at_least_one else ""
    print(f"predict.py: {(out.counts if out else counts).summary()}; {progress.rate():.1f} texts/s over "
          f"{seconds:.1f} s{note}" + (f"; wrote {out_path}" if out_path else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
