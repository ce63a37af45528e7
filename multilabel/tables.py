"""Your own tables, read row by row: CSV or TSV with a header, a GoEmotions split, JSONL, Parquet or one text a line,
as prepare_data.py and predict.py read them. A broken row is a Record with its error, and the rows after it are
read on (files.py owns the other file conventions; this is its part for users' tables). And a table written as
markdown, for the scripts' reports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from multilabel.files import (
    BAD_BYTES,
    SPLIT_COLUMNS,
    SPLIT_WIDTH,
    UserError,
    close,
    csv_reader,
    open_text,
    unicode_problem,
)


@dataclass
class Record:
    """One row of a table: where it starts (1-based; the row number for Parquet) and its cells by column, or
    why it cannot be read."""
    line: int
    values: dict | None = None
    error: str = ""
    cells: list | None = None  # as read, for a table without a header
    blank: bool = False  # an empty line of JSONL or text


@dataclass
class Table:
    format: str
    columns: list[str]
    rows: Iterator[Record]


TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
                 ".pq": "parquet", ".txt": "lines"}


def read_table(path: str | Path, fmt: str, columns: list[str] | None = None, batch_rows: int = 4096) -> Table:
    """A table, streamed: CSV or TSV with a header, `goemotions` (a split: text, labels, id; no header), JSONL (an
    object a line), Parquet (`columns` only, if given), or `lines` (one text a line; a CR inside a line is text).
    A broken row is a Record with an error, and the rows after it are read on; a header that cannot be read is a
    UserError."""
    if fmt == "parquet":
        return read_parquet(path, columns, batch_rows)
    f = open_text(path, newline="" if fmt in ("csv", "tsv", "goemotions") else "\n")
    if fmt in ("csv", "tsv", "goemotions"):
        reader = csv_reader(f, "," if fmt == "csv" else "\t")
        header = SPLIT_COLUMNS if fmt == "goemotions" else read_header(path, reader)
        expected = SPLIT_WIDTH if fmt == "goemotions" else "columns as the header has"
        return Table(fmt, header, closing(f, delimited_rows(reader, header, expected)))
    if fmt == "jsonl":
        return Table(fmt, jsonl_columns(path), closing(f, jsonl_rows(f)))
    if fmt == "lines":
        return Table(fmt, ["text"], closing(f, (Record(n, {"text": line.removesuffix("\n").removesuffix("\r")},
                                                      blank=not line.strip()) for n, line in enumerate(f, 1))))
    raise ValueError(fmt)


def closing(f: io.TextIOBase, rows: Iterator[Record]) -> Iterator[Record]:
    try:
        yield from rows
    finally:
        close(f)


def read_header(path: str | Path, reader) -> list[str]:
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise UserError(f"{path}:1: cannot read the header: {e}") from None
    if not header:
        raise UserError(f"{path}:1: no header line (the column names)")
    if any(unicode_problem(c) for c in header):
        raise UserError(f"{path}:1: not valid UTF-8 in the header")
    if len(set(header)) != len(header):
        raise UserError(f"{path}:1: duplicate column names in the header")
    return header


def delimited_rows(reader, header: list[str], expected: str) -> Iterator[Record]:
    """Rows of a CSV/TSV reader; one with another number of cells than the header is broken (`expected` says what
    the columns are)."""
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = reader.line_num
            yield Record(start, error=f"bad CSV quoting: {e}{span(start, end)}")
            continue
        end = reader.line_num
        if len(row) != len(header):
            yield Record(start, error=f"expected {len(header)} {expected}, found {len(row)}{span(start, end)}",
                         cells=row)
        else:
            yield Record(start, dict(zip(header, row, strict=True)), cells=row)


def span(start: int, end: int) -> str:
    return f" (lines {start}-{end}: an unclosed quote?)" if end > start else ""


def jsonl_columns(path: str | Path) -> list[str]:
    """The keys of the first object, for the messages about a missing column (each line is checked again)."""
    if str(path) == "-":
        return []
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="\n") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    return list(obj) if isinstance(obj, dict) else []
    except (ValueError, OSError):
        pass  # jsonl_rows says what is wrong, on its line
    return []


def jsonl_rows(f: io.TextIOBase) -> Iterator[Record]:
    for n, line in enumerate(f, 1):
        line = line.removesuffix("\n").removesuffix("\r")
        if not line.strip():
            yield Record(n, error="empty line", blank=True)
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            yield Record(n, error="not valid UTF-8" if BAD_BYTES.search(line) else f"not JSON: {e}")
            continue
        if not isinstance(obj, dict):
            yield Record(n, error=f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield Record(n, obj)


def read_parquet(path: str | Path, columns: list[str] | None, batch_rows: int) -> Table:
    import pyarrow.parquet as pq

    if str(path) == "-":
        raise UserError("Parquet cannot be read from standard input: give the file")
    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise UserError(f"{path}: cannot read as Parquet: {str(e).splitlines()[0]}") from None
    names = f.schema_arrow.names

    def rows() -> Iterator[Record]:
        n = 0
        wanted = [c for c in columns if c in names] if columns is not None else names
        for batch in f.iter_batches(batch_size=batch_rows, columns=wanted):
            data = [batch.column(c).to_pylist() for c in wanted]
            for values in zip(*data, strict=True):
                n += 1
                yield Record(n, dict(zip(wanted, values, strict=True)))

    return Table("parquet", names, rows())


def markdown(table, float_format: str = "{:.2f}") -> str:  # noqa: ANN001 (a pandas DataFrame; pandas not imported here)
    """A DataFrame as a markdown table: its index first, numbers right-aligned, floats by float_format."""
    header = [str(table.index.name), *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(table.columns)]
    for index, *values in table.itertuples(name=None):  # itertuples keeps each column's type (ints stay ints)
        cells = [str(index)] + [float_format.format(v) if isinstance(v, float) else str(v) for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
