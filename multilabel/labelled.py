"""A labelled corpus, predict.py's output: its columns, written a chunk at a time by predict.py and read back a row
at a time by the scripts that turn labels into findings (keywords.py, rates.py).

    header(fmt, labels, top_k, keep)            the first line of a TSV/CSV output (none for JSONL)
    format_chunk(rows, scores, labels, ...)     a chunk's lines, in input order
    Labelled.open(path)                         a finished output (its FILE.meta.json says how it was written):
                                                .labels, .keep, .meta, and .rows(): LabelledRow a row at a time

The columns: id, line, predicted (label names joined by commas; a label name never holds one), error (why the row
was not scored, or a note on how it was read), the columns kept from the input (--keep-columns), then every label's
score, or the top K labels and scores. JSONL: the same as keys, the kept columns under "columns", the scores under
"scores" (or "top").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multilabel import corpus, decide, files, tables
from multilabel.corpus import Row
from multilabel.files import UserError

FIRST_COLUMNS = ("id", "line", "predicted", "error")


def header(fmt: str, labels: list[str], top_k: int, keep: tuple[str, ...] = ()) -> str:
    if fmt == "jsonl":
        return ""
    if fmt == "table":
        return f"{'text':<60}  {'predicted':<28}  top {top_k} scores\n"
    return corpus.delimited([[*FIRST_COLUMNS, *keep, *score_columns(labels, top_k)]], fmt)


def score_columns(labels: list[str], top_k: int) -> list[str]:
    return [x for k in range(1, top_k + 1) for x in (f"label_{k}", f"score_{k}")] if top_k else list(labels)


def check_keep(keep: tuple[str, ...], labels: list[str], top_k: int, fmt: str) -> None:
    """--keep-columns: each once, and in a TSV/CSV none named as a column the output has already."""
    if len(set(keep)) != len(keep):
        raise UserError(f"--keep-columns {' '.join(keep)}: a column named twice")
    if fmt in ("tsv", "csv"):
        taken = [c for c in keep if c in (*FIRST_COLUMNS, *score_columns(labels, top_k))]
        if taken:
            raise UserError(f"--keep-columns {taken[0]}: the output has a column {taken[0]!r} already (the columns "
                            f"{', '.join(FIRST_COLUMNS)} and the scores')")


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
            if row.kept:
                obj["columns"] = row.kept
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
            cells = [row.id, str(row.line), ",".join(predicted), row.error or row.note, *row.kept.values()]
            if top_k:
                cells += [x for j in top for x in (labels[j], f"{values[j]:.6f}")] or [""] * (2 * top_k)
            else:
                cells += [f"{v:.6f}" for v in values] or [""] * len(labels)
            table.append(cells)
    return "".join(out) if fmt in ("jsonl", "table") else corpus.delimited(table, fmt)


# ------------------------------------------------------------------------------------------ reading it back


@dataclass
class LabelledRow:
    id: str
    line: int            # the input's line (or Parquet row) it labels
    predicted: list[str]
    error: str           # why it was not scored (then predicted is empty), or a note on how it was read
    kept: dict[str, str]
    scored: bool         # False for a row carried with its error


@dataclass
class Labelled:
    path: Path
    meta: dict           # FILE.meta.json, as predict.py wrote it
    labels: list[str]
    keep: tuple[str, ...]
    fmt: str

    @classmethod
    def open(cls, path: Path) -> Labelled:
        """A finished predict.py --output (or a --merge of its shards), refused in one line where it is not one."""
        path = Path(path)
        if not path.is_file():
            partial = corpus.partial_of(path)
            raise UserError(f"{path}: no such file" + (f" (a stopped run: {partial.name}; finish it with predict.py "
                                                         f"--resume)" if partial.exists() else ""))
        meta_path = corpus.meta_of(path)
        if not meta_path.is_file():
            raise UserError(f"{path}: no {meta_path.name} beside it: not a finished predict.py --output (one written "
                            f"on standard output cannot be read back)")
        meta = files.read_json(meta_path, "a predict.py output's summary")
        if not isinstance(meta, dict) or not isinstance(meta.get("thresholds"), dict) or "run" not in meta:
            raise UserError(f"{meta_path}: not a predict.py output's summary")
        if meta.get("format") not in ("tsv", "csv", "jsonl"):
            raise UserError(f"{path}: written as {meta.get('format')!r}, not TSV, CSV or JSONL")
        keep = tuple(meta["run"].get("keep_columns") or ())
        return cls(path, meta, list(meta["thresholds"]), keep, meta["format"])

    @property
    def first_row(self) -> int:
        """The input rows before this file's first (a shard holds chunks [first, end) of the input)."""
        return self.meta.get("chunks", [0])[0] * self.meta["run"]["chunk_size"]

    def rows(self) -> Iterator[LabelledRow]:
        """Every row, in order; a line that cannot be read is a UserError naming it (the file is the script's own:
        a broken one is not a corpus row to carry)."""
        if self.fmt == "jsonl":
            yield from self.jsonl_rows()
            return
        expected = [*FIRST_COLUMNS, *self.keep]
        table = tables.read_table(self.path, self.fmt)
        if table.columns[:len(expected)] != expected:
            raise UserError(f"{self.path}:1: expected the columns {', '.join(expected)} first, found "
                            f"{', '.join(table.columns[:len(expected)])}")
        for record in table.rows:
            if record.error:
                raise UserError(f"{self.path}:{record.line}: {record.error}")
            v = record.values
            yield self.row(record.line, v["id"], v["line"], v["predicted"], v["error"],
                           {c: v[c] for c in self.keep}, has_scores=v[table.columns[len(expected)]] != "")

    def jsonl_rows(self) -> Iterator[LabelledRow]:
        with open(self.path, encoding="utf-8", newline="\n") as f:
            for n, text in enumerate(f, 1):
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise UserError(f"{self.path}:{n}: not a JSON line ({e.msg})") from None
                predicted = ",".join(obj.get("predicted", []))
                has_scores = bool(obj.get("scores") or obj.get("top"))
                yield self.row(n, obj.get("id"), obj.get("line"), predicted, obj.get("error", ""),
                               obj.get("columns", {}), has_scores)

    def row(self, at: int, row_id: object, line: object, predicted: str, error: str, kept: dict,
            has_scores: bool) -> LabelledRow:
        try:
            names = [p for p in str(predicted).split(",") if p]
            unknown = next((p for p in names if p not in self.labels), None)
            if unknown is not None:
                raise ValueError(f"label {unknown!r} is not one of the model's")
            return LabelledRow(str(row_id), int(line), names, str(error), {c: str(kept.get(c, "")) for c in self.keep},
                               scored=has_scores)
        except (TypeError, ValueError) as e:
            raise UserError(f"{self.path}:{at}: not a row predict.py writes ({e})") from None

