"""A corpus of any size, a chunk at a time: the rows read, the output streamed, stopped, resumed, sharded and merged
(no torch; what a row's output says is the script's, passed in as text):

    read_rows(path, fmt, text_column, id_column)   every row of a file or standard input (any tables.py format),
                                                   in order, a bad one carried with its reason (Row.error)
    Span.of(rows, chunk_size, shard)               the chunks a run writes: all, or shard K of N (whole chunks, so
                                                   the parts are one run's chunks); span.chunks(rows, done) after
                                                   the `done` a stopped run wrote
    Output(path, settings, head, resume)           FILE.partial, a chunk of text at a time, each followed by
                                                   FILE.partial.json; finish(meta): FILE.meta.json, then FILE;
                                                   resumed only with the same settings (identity.first_difference)
    Stream(head)                                   the same, on standard output (not resumable)
    Counts, kind_of                                rows, scored, bad rows by kind with their first lines
    merge(path, prog)                              the finished shards path.K-of-N.suffix into path, in order, byte
                                                   for byte (a TSV/CSV's one header line once; JSONL as it is), and
                                                   its summary (path.meta.json, as an unsharded run's)
    Progress(prog, total, done)                    tqdm on a terminal, a line a minute in a job's log
    add_input_options(p), add_run_options(p)       the options of a script that goes over a corpus (predict.py,
                                                   explain.py): its input's format and columns; --shard, --resume,
                                                   --merge; parse_shard(text) and merge_only(args, prog) for them

A script's loop (predict.py's; the files beside FILE: declared(FILE), for outputs.claim):

    span = Span.of(rows, chunk_size, shard)
    out = Output(path, settings, head, resume)     # settings: what a resumed run must share, with "chunk_size"
    for chunk in span.chunks(rows(), out.chunks_done):
        out.write(text_of(chunk), chunk)
    out.finish({..., "run": settings_less_shard, **span.part(out.chunks_done)})   # what merge checks
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from multilabel import files, identity, outputs, tables
from multilabel.files import UserError

CHUNK_SIZE = 4096        # texts read, tokenized, scored and written at a time: memory is bounded by this
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
    kept: dict[str, str] = field(default_factory=dict)  # the input's columns carried into the output (--keep-columns)


# ------------------------------------------------------------------------------------ a script's options


def add_input_options(p: argparse.ArgumentParser, stdin: bool = True) -> None:
    p.add_argument("--input", help="a file (one text a line; .tsv GoEmotions; .csv .jsonl .parquet)"
                   + (", or - for standard input" if stdin else ""))
    p.add_argument("--input-format", choices=["auto", "lines", "goemotions", "tsv", "csv", "jsonl", "parquet"],
                   default="auto", help="default: from the suffix (.tsv is GoEmotions, or a header with --text-column)")
    p.add_argument("--text-column", help="the text's column (header name or JSON key; default 'text')")
    p.add_argument("--id-column", help="an id column carried through (default 'id' where there is one, else the line)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", help="K/N: only the K-th of N equal parts, into OUTPUT.K-of-N.SUFFIX")
    p.add_argument("--resume", action="store_true", help="continue a stopped run with the same options")
    p.add_argument("--merge", action="store_true", help="put --output's finished shards together, in order")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise UserError(f"--shard {text}: expected K/N with 1 <= K <= N, e.g. 3/8")
    return int(m[1]), int(m[2])


def merge_only(args: argparse.Namespace, prog: str) -> int:
    """--merge: the shards of --output put together (and its summary), nothing else done."""
    if not args.output or args.model or args.input:
        raise UserError("--merge takes only --output (the name the shards were given)")
    merged = declared(args.output)
    with outputs.claim(prog, [], [merged[0], merged[-1]]):  # the output and its summary
        print(f"{prog}: {merge(args.output, prog)}", file=sys.stderr)
    return 0


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


def read_rows(path: str, fmt: str, text_column: str | None = None, id_column: str | None = None,
              keep: tuple[str, ...] = ()) -> Iterator[Row]:
    """Every row of the input (a file, or - for standard input), one at a time, bad ones marked; `keep`: columns
    carried with each row as text (Row.kept; a JSON line without the key, or with null, keeps '')."""
    fmt = input_format(path, fmt, text_column)
    text_column = "text" if fmt in ("lines", "goemotions") else text_column or "text"
    id_column = "id" if fmt == "goemotions" else id_column
    table = tables.read_table(path, fmt, columns=[text_column, *([id_column] if id_column else ["id"]), *keep],
                             batch_rows=CHUNK_SIZE)
    where = f"{path}:1" if fmt != "parquet" else str(path)
    wanted = [(text_column, "--text-column"), (id_column, "--id-column"), *((c, "--keep-columns") for c in keep)]
    for column, option in wanted:
        if column and fmt != "jsonl" and (fmt != "lines" or option == "--keep-columns") and \
                column not in table.columns:
            raise UserError(f"{where}: no column {column!r} (the columns: {', '.join(table.columns[:10])}): give "
                            f"{option}" + (" the input's own" if option == "--keep-columns" else ""))
    id_column = id_column or ("id" if "id" in table.columns and fmt != "jsonl" else None)
    for record in table.rows:
        if record.error:
            yield Row(record.line, str(record.line), "", record.error, kept=dict.fromkeys(keep, ""))
            continue
        values = record.values
        if fmt == "jsonl":
            row = checked(record.line, values.get(id_column or "id", record.line), values.get(text_column))
        else:
            row = checked(record.line, values[id_column] if id_column else record.line, values[text_column])
        row.kept = {c: as_text(values.get(c)) for c in keep}
        yield row


def as_text(value: object) -> str:
    """A kept column's value as written: text as it is, null or missing as '', a number or a list as JSON writes it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return files.SURROGATE.sub("\ufffd", value)
    return json.dumps(value, ensure_ascii=False)


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


@dataclass(frozen=True)
class Span:
    """The chunks of the input a run writes: [first, end) (end None: to the input's end), the rows in them and in the
    input (counted for a shard, None otherwise)."""
    chunk_size: int
    first: int = 0
    end: int | None = None
    rows: int | None = None
    input_rows: int | None = None

    @classmethod
    def of(cls, rows: Callable[[], Iterable[Row]], chunk_size: int, shard: tuple[int, int] | None) -> Span:
        """All the chunks; or shard K of N's, the input read once (rows()) to count its rows."""
        if not shard:
            return cls(chunk_size)
        input_rows = sum(1 for _ in rows())
        first, end = shard_chunks(input_rows, chunk_size, shard)
        return cls(chunk_size, first, end, min(end * chunk_size, input_rows) - first * chunk_size, input_rows)

    def chunks(self, rows: Iterable[Row], done: int = 0) -> Iterator[list[Row]]:
        """The span's chunks of rows (the whole input's), after the first `done` (a stopped run's)."""
        return islice(chunks(rows, self.chunk_size), self.first + done, self.end)

    def part(self, done: int) -> dict:
        """What merge checks of a finished part, beside its run: the chunks it holds and the input's rows."""
        return {"chunks": [self.first, self.first + done], "input_rows": self.input_rows}


# ------------------------------------------------------------------------------------ writing the output


def output_format(path: str | None, fmt: str | None) -> str:
    """--format, else the output's suffix (.tsv .csv .jsonl), else a table on a terminal."""
    if fmt:
        return fmt
    if not path:
        return "table"
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(Path(path).suffix.lower(), "tsv")


def delimited(rows: list[list[str]], fmt: str) -> str:
    """Rows of cells as TSV or CSV lines (the csv module's quoting, \\n line ends)."""
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n").writerows(rows)
    return buf.getvalue()


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

    def add_part(self, state: dict) -> None:
        """The counts of a later part of the input (a shard's meta.json)."""
        self.rows += state["rows"]
        self.scored += state["scored"]
        for kind, v in state["bad"].items():
            mine = self.bad.setdefault(kind, {"count": 0, "first_lines": []})
            mine["count"] += v["count"]
            mine["first_lines"] = (mine["first_lines"] + v["first_lines"])[:5]
        part = state.get("read_in_part", {"count": 0, "first_lines": []})
        self.read_in_part["count"] += part["count"]
        self.read_in_part["first_lines"] = (self.read_in_part["first_lines"] + part["first_lines"])[:5]

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


def partial_of(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def progress_of(path: Path) -> Path:
    return path.with_name(path.name + ".partial.json")


def meta_of(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def recorded_input(path: Path) -> Path | None:
    """The corpus a finished output was made from, as its meta.json recorded it (None where it cannot be read: the
    reader that opens the output then says why)."""
    try:
        source = json.loads(meta_of(path).read_text(encoding="utf-8"))["run"]["input"]
        return Path(source) if isinstance(source, str) and Path(source).is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_rows(path: Path, run: dict, given: str | None) -> Iterator[Row]:
    """The rows of the corpus an output was made from (`run`: its meta.json's), read as that run read them (format,
    text and id columns); the corpus is --input if given, else the path recorded, and refused unless its SHA-256 is
    the one recorded: the output's rows are never joined to other texts."""
    source = given or run.get("input")
    if run.get("input_sha256") is None:
        raise UserError(f"{path}: made from texts on the command line or standard input: there is no corpus file to "
                        f"read them from")
    if not Path(source).is_file():
        raise UserError(f"{source}: no such file (the corpus {path.name} was made from): give --input")
    if files.sha256(source) != run["input_sha256"]:
        raise UserError(f"{source}: not the file {path.name} was made from (its SHA-256 differs from the one "
                        f"recorded, of {run.get('input')})")
    return read_rows(source, run["input_format"], run["text_column"], run["id_column"])


def declared(path: Path | None) -> list[outputs.Output]:
    """path (an --output, or its shard's name) and the files beside it, for outputs.claim: the partial output, its
    progress and the summary."""
    if not path:
        return []
    return [outputs.Output(path, "the output (--output)"),
            outputs.Output(partial_of(path), "a stopped run's partial output", named=False),
            outputs.Output(progress_of(path), "a stopped run's progress file", named=False,
                           ours=outputs.json_with("settings", "chunks_done")),
            outputs.Output(meta_of(path), "the output's summary", named=False, ours=outputs.json_with("run", "chunks"))]


def complete(path: Path | None, resume: bool) -> bool:
    """True where --resume finds path complete already; a UserError where path, or a stopped run's partial output,
    is there and would be written over."""
    if path and path.exists():
        if resume:
            return True
        raise UserError(f"{path}: already exists; remove it or choose another --output")
    partial = partial_of(path) if path else None
    if partial and partial.exists() and not resume:
        raise UserError(f"{partial}: a stopped run's output: --resume continues it; remove it to start over")
    return False


class Output:
    """--output FILE written as FILE.partial, a chunk at a time, with FILE.partial.json saying how far it got
    (chunks, bytes, counts, settings); renamed to FILE when complete. --resume cuts FILE.partial back to its
    last complete chunk and goes on from there, so the result is the same bytes as a run never stopped."""

    def __init__(self, path: Path, settings: dict, head: str, resume: bool) -> None:
        self.path, self.settings = path, settings
        self.partial, self.progress = partial_of(path), progress_of(path)
        self.chunks_done, self.counts = 0, Counts()
        if resume and self.progress.exists() and self.partial.exists():
            state = files.read_json(self.progress, "a stopped run's progress")
            if difference := identity.first_difference(state["settings"], settings):
                raise UserError(f"{self.partial}: written with other settings ({difference}): rerun with the same "
                                f"ones, or remove {self.partial.name} and {self.progress.name} to start over")
            self.chunks_done, self.counts = state["chunks_done"], Counts(state["counts"])
            self.f = open(self.partial, "r+b")  # noqa: SIM115 (closed by finish)
            self.f.truncate(state["bytes"])
            self.f.seek(state["bytes"])
        else:
            self.f = open(self.partial, "wb")  # noqa: SIM115 (closed by finish)
            self.write(head, [])

    def write(self, text: str, rows: list[Row]) -> None:
        """A chunk's text (rows: the chunk's; none for the header), flushed to disk, then the progress that says so."""
        self.f.write(text.encode("utf-8", errors="surrogateescape"))
        self.f.flush()
        os.fsync(self.f.fileno())
        if rows:
            self.chunks_done += 1
            self.counts.add(rows)
        state = {"settings": self.settings, "chunks_done": self.chunks_done, "bytes": self.f.tell(),
                 "counts": self.counts.state()}
        files.atomic_write(self.progress, json.dumps(state), "the progress file")

    def resuming(self) -> str:
        return f"resuming {self.partial} after {self.chunks_done} chunk(s), {self.counts.rows} rows"

    def stopped(self, signal: str, exit_code: int) -> str:
        return (f"{signal}: stopped after chunk {self.chunks_done} ({self.counts.rows} rows) in {self.partial}; rerun "
                f"with --resume to continue (exit {exit_code})")

    def finish(self, meta: dict) -> None:
        """FILE.meta.json (meta and the counts), then FILE.partial renamed to FILE."""
        self.f.close()
        files.write_json(meta_of(self.path), {**meta, **self.counts.state()}, "the summary")
        os.replace(self.partial, self.path)
        self.progress.unlink()


class Stream:
    """Output's interface on standard output: written as it goes, counted, never resumed."""

    def __init__(self, head: str) -> None:
        self.chunks_done, self.counts = 0, Counts()
        sys.stdout.write(head)

    def write(self, text: str, rows: list[Row]) -> None:
        self.counts.add(rows)
        sys.stdout.write(text)
        sys.stdout.flush()


# ------------------------------------------------------------------------------------ shards and merge


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


def check_parts(parts: list[Path], prog: str) -> list[dict]:
    """The shards' summaries (meta.json), refused unless they are the parts of one run (the same model, input and
    options: their "run"), each its own chunks, together every chunk of the input once."""
    metas = []
    for part in parts:
        meta_path = meta_of(part)
        meta = files.read_json(meta_path, f"a {prog} shard's summary") if meta_path.exists() else None
        if not isinstance(meta, dict) or not isinstance(meta.get("run"), dict) or "chunks" not in meta:
            raise UserError(f"{part}: no {meta_path.name} saying which run and chunks it holds (made by an older "
                            f"{prog}?); rerun that shard")
        metas.append(meta)
    for part, meta in zip(parts[1:], metas[1:], strict=True):
        if difference := identity.first_difference(metas[0]["run"], meta["run"]):
            raise UserError(f"{part}: made with other settings than {parts[0].name} ({difference}): not parts of one "
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


def merge(path: Path, prog: str) -> str:
    """Put the shards of path together in order, into path: a TSV's or CSV's header line once (the same in each),
    JSONL as it is. Returns the line that says so."""
    if path.exists():
        raise UserError(f"{path}: already exists; remove it to merge again")
    parts, fmt, counts = find_shards(path), output_format(str(path), None), Counts()
    metas = check_parts(parts, prog)
    for meta in metas:
        counts.add_part(meta)

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

    merged = {**metas[0], "shard": None, "chunks": [0, metas[-1]["chunks"][1]], "merged_from": [p.name for p in parts]}
    files.write_json(meta_of(path), {**merged, **counts.state()}, "the merged output's summary")
    files.atomic_write(path, write, "the merged output")
    return f"merged {len(parts)} shards into {path}: {counts.summary()}"


# ------------------------------------------------------------------------------------------ progress


class Progress:
    """tqdm (with texts/s) on a terminal; otherwise a line every LOG_EVERY_S seconds, for a job's log."""

    def __init__(self, prog: str, total: int | None, done: int) -> None:
        from tqdm import tqdm

        self.prog = prog
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
            print(f"{self.prog}: {self.done}{of} texts, {self.rate():.1f} texts/s", file=sys.stderr, flush=True)

    def rate(self) -> float:
        return (self.done - self.base) / max(time.monotonic() - self.start, 1e-9)

    def close(self) -> None:
        self.bar.close()
