"""Label statistics of the GoEmotions splits: the data_analysis.py of the original project, validated.

    python data_analysis.py                    # ./data, a table on stdout
    python data_analysis.py data --format markdown --output stats.md --plot charts/

For each split (train, dev, test) it prints the number of samples; for each label its name, raw count,
percentage of texts that carry it and percentage of its occurrences that come with another label (the
original's four columns); and how many samples carry 1, 2, 3, ... labels.

The TSVs have no header; columns: text, labels (comma-separated ids, indexes into emotions.txt), id. They
were written with CSV quoting: a text containing `"` is wrapped in quotes with its inner quotes doubled.
They are read with the csv module, exactly as written (spaces around a text are kept).

Bad input (wrong number of columns, a label id that is not an integer or is out of range, an empty text,
a duplicate id, a blank line in emotions.txt, ...) gives one line `FILE:LINE: problem` on stderr and exit
status 1, before anything is written. Exit status 2: bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import secrets
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# -----------------------------------------------------------------------------
# Knobs

SPLITS = ("train", "dev", "test")  # read DATA_DIR/<split>.tsv in this order
LABELS_FILE = "emotions.txt"  # one label name per line; line n (from 0) names label id n
FORMATS = ("text", "tsv", "json", "markdown")
COLUMNS = {  # statistic -> header in the text and markdown tables
    "count": "count",
    "percent_of_texts": "% of texts",
    "percent_with_other_label": "% with another label",
}
LABEL_ID = re.compile(r"[0-9]+")


class DataError(Exception):
    """Bad input; the message is the one line shown to the user: FILE:LINE: problem."""


# -----------------------------------------------------------------------------
# Reading and validation


def read_labels(path: Path) -> list[str]:
    """Label names, one a line. One newline at the very end is fine; any other blank line is an error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    if text.endswith("\n"):
        text = text[:-1]
    labels: list[str] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        name = line.strip()
        if not name:
            raise DataError(f"{path}:{line_no}: blank line in the label file")
        if name in labels:
            raise DataError(f"{path}:{line_no}: label {name!r} repeats line {labels.index(name) + 1}")
        labels.append(name)
    return labels


def parse_label_ids(field: str, n_labels: int, where: str) -> tuple[int, ...]:
    """Comma-separated ids; an empty field is a text with no label (prepare_data.py writes those)."""
    if field == "":
        return ()
    ids: list[int] = []
    for token in field.split(","):
        if not LABEL_ID.fullmatch(token):
            raise DataError(f"{where}: label id {token!r} is not a non-negative integer (labels field {field!r})")
        label_id = int(token)
        if label_id >= n_labels:
            raise DataError(f"{where}: label id {label_id} out of range 0-{n_labels - 1} "
                            f"({LABELS_FILE} has {n_labels} labels)")
        if label_id in ids:
            raise DataError(f"{where}: label id {label_id} given twice")
        ids.append(label_id)
    return tuple(ids)


def bad_utf8(path: Path) -> str:
    """The error line for a file that is not UTF-8 (text is decoded in blocks, so find the bad byte's line)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = data.count(b"\n", 0, e.start) + 1
        return f"{path}:{line_no}: not valid UTF-8 ({e.reason} at byte {e.start})"
    return f"{path}: not valid UTF-8"


def read_split(path: Path, n_labels: int) -> pd.DataFrame:
    """One split as a DataFrame with columns text (str, as written), labels (tuple of ids) and id."""
    texts, label_ids, sample_ids = [], [], []
    first_seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", strict=True)
            try:
                for row in reader:
                    where = f"{path}:{reader.line_num}"
                    if len(row) != 3:
                        raise DataError(f"{where}: wrong number of columns: expected 3 (text, labels, id), "
                                        f"found {len(row)}")
                    text, labels_field, sample_id = row
                    if not text.strip():
                        raise DataError(f"{where}: empty text")
                    if not sample_id.strip():
                        raise DataError(f"{where}: empty id")
                    if sample_id in first_seen:
                        raise DataError(f"{where}: duplicate id {sample_id!r} (first on line "
                                        f"{first_seen[sample_id]})")
                    first_seen[sample_id] = reader.line_num
                    texts.append(text)
                    label_ids.append(parse_label_ids(labels_field, n_labels, where))
                    sample_ids.append(sample_id)
            except csv.Error as e:
                raise DataError(f"{path}:{reader.line_num}: bad CSV quoting: {e}") from None
            except UnicodeDecodeError:
                raise DataError(bad_utf8(path)) from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not texts:
        raise DataError(f"{path}:1: no samples")
    return pd.DataFrame({"text": texts, "labels": label_ids, "id": sample_ids})


# -----------------------------------------------------------------------------
# Statistics


def one_hot(split: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """A samples x labels 0/1 table."""
    matrix = np.zeros((len(split), len(labels)), dtype=np.int64)
    rows = np.repeat(np.arange(len(split)), split["labels"].map(len).to_numpy())
    cols = np.fromiter((i for ids in split["labels"] for i in ids), dtype=np.int64, count=len(rows))
    matrix[rows, cols] = 1
    return pd.DataFrame(matrix, columns=labels)


def label_statistics(split: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Per label: count, percent_of_texts, percent_with_other_label (0 for a label that never occurs)."""
    onehot = one_hot(split, labels)
    counts = onehot.sum(axis=0)
    with_other = onehot[onehot.sum(axis=1) > 1].sum(axis=0)
    table = pd.DataFrame({
        "count": counts,
        "percent_of_texts": counts / len(split) * 100,
        "percent_with_other_label": (with_other / counts.where(counts > 0) * 100).fillna(0.0),
    })
    table.index.name = "label"
    return table


def labels_per_sample(split: pd.DataFrame) -> pd.DataFrame:
    """How many samples carry 1, 2, 3, ... labels (and their percentage)."""
    samples = split["labels"].map(len).value_counts().sort_index()
    table = pd.DataFrame({"samples": samples, "percent_of_samples": samples / len(split) * 100})
    table.index.name = "labels"
    return table


def cooccurrence_percent(split: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Row label x column label: % of the row label's occurrences that also carry the column label."""
    matrix = one_hot(split, labels).to_numpy()
    pairs = matrix.T @ matrix  # pairs[i, j]: texts with both label i and label j; the diagonal: label counts
    counts = pd.Series(np.diag(pairs).copy(), index=labels)
    np.fill_diagonal(pairs, 0)
    table = pd.DataFrame(pairs, index=labels, columns=labels)
    return table.div(counts.where(counts > 0), axis=0).fillna(0.0) * 100


def dataset_name(data_dir: Path) -> str:
    """The name in prepare_data.py's dataset.json, for a folder it prepared; else GoEmotions."""
    path = data_dir / "dataset.json"
    if not path.exists():
        return "GoEmotions"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["name"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a prepare_data.py dataset.json: {e}") from None


def analyse(data_dir: Path) -> dict:
    """Read and validate everything, then compute the statistics: {"name", "labels": [...], "splits": {...}}."""
    dataset = dataset_name(data_dir)
    labels = read_labels(data_dir / LABELS_FILE)
    frames = {name: read_split(data_dir / f"{name}.tsv", len(labels)) for name in SPLITS}
    return {"name": dataset, "labels": labels, "splits": {
        name: {"samples": len(frame), "labels": label_statistics(frame, labels),
               "labels_per_sample": labels_per_sample(frame), "cooccurrence": cooccurrence_percent(frame, labels)}
        for name, frame in frames.items()}}


# -----------------------------------------------------------------------------
# Output formats


def format_text(stats: dict) -> str:
    parts = []
    for name, split in stats["splits"].items():
        # the index name moved to the columns' name: one header line, "label" over the label names
        table = split["labels"].rename(columns=COLUMNS).rename_axis(index=None, columns="label")
        per_sample = (split["labels_per_sample"].rename(columns={"percent_of_samples": "% of samples"})
                      .rename_axis(index=None, columns="labels"))
        parts.append(f"{name}: {split['samples']} samples\n\n"
                     f"{table.to_string(float_format='{:.2f}'.format)}\n\n"
                     f"{per_sample.to_string(float_format='{:.2f}'.format)}\n")
    return "\n".join(parts)


def format_tsv(stats: dict) -> str:
    """One tidy table: split, kind (samples|label|labels_per_sample), name, count, percent, percent_with_other."""
    rows = []
    for name, split in stats["splits"].items():
        rows.append((name, "samples", "all", split["samples"], 100.0, None))
        for label, r in split["labels"].iterrows():
            rows.append((name, "label", label, r["count"], r["percent_of_texts"], r["percent_with_other_label"]))
        for n, r in split["labels_per_sample"].iterrows():
            rows.append((name, "labels_per_sample", n, r["samples"], r["percent_of_samples"], None))
    table = pd.DataFrame(rows, columns=["split", "kind", "name", "count", "percent", "percent_with_other_label"])
    table["count"] = table["count"].astype(int)
    return table.to_csv(sep="\t", index=False, float_format="%.4f", lineterminator="\n")


def format_json(stats: dict) -> str:
    out = {"labels": stats["labels"], "splits": {}}
    for name, split in stats["splits"].items():
        out["splits"][name] = {
            "samples": split["samples"],
            "labels": [{"label": label, "count": int(r["count"]), "percent_of_texts": float(r["percent_of_texts"]),
                        "percent_with_other_label": float(r["percent_with_other_label"])}
                       for label, r in split["labels"].iterrows()],
            "labels_per_sample": {str(n): int(r["samples"]) for n, r in split["labels_per_sample"].iterrows()},
        }
    return json.dumps(out, indent=2) + "\n"


def markdown_table(table: pd.DataFrame, float_format: str = "{:.2f}") -> str:
    header = [str(table.index.name), *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(table.columns)]
    for index, *values in table.itertuples(name=None):  # itertuples keeps each column's type (ints stay ints)
        cells = [str(index)] + [float_format.format(v) if isinstance(v, float) else str(v) for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_markdown(stats: dict) -> str:
    parts = []
    for name, split in stats["splits"].items():
        table = split["labels"].rename(columns=COLUMNS)
        per_sample = split["labels_per_sample"].rename(columns={"percent_of_samples": "% of samples"})
        parts.append(f"### {name}: {split['samples']} samples\n\n{markdown_table(table)}\n\n"
                     f"{markdown_table(per_sample)}\n")
    return "\n".join(parts)


FORMATTERS = {"text": format_text, "tsv": format_tsv, "json": format_json, "markdown": format_markdown}


# -----------------------------------------------------------------------------
# Writing


def atomic_write(path: Path, write) -> None:
    """Call write(temp_path) for a temp file beside path, then rename it to path; no partial file on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plot(stats: dict, out_dir: Path) -> list[Path]:
    """label_frequency.png (% of texts per label, one bar per split) and cooccurrence_<split>.png heatmaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = stats["labels"]
    written = []
    fig, ax = plt.subplots(figsize=(9, max(6, 0.4 * len(labels))), layout="constrained")
    y = np.arange(len(labels))
    height = 0.8 / len(stats["splits"])
    for i, (name, split) in enumerate(stats["splits"].items()):
        ax.barh(y + i * height, split["labels"]["percent_of_texts"], height=height,
                label=f"{name} ({split['samples']} samples)")
    ax.set_yticks(y + height * (len(stats["splits"]) - 1) / 2, labels)
    ax.invert_yaxis()
    ax.set_xlabel("% of texts with the label")
    ax.set_title(f"{stats['name']}: label frequency per split")
    ax.legend()
    path = out_dir / "label_frequency.png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    written.append(path)
    for name, split in stats["splits"].items():
        fig, ax = plt.subplots(figsize=(11, 10), layout="constrained")
        image = ax.imshow(split["cooccurrence"].to_numpy(), cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=90)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("... also carries this label")
        ax.set_ylabel("% of the texts with this label ...")
        ax.set_title(f"{stats['name']} {name}: label co-occurrence (% of the row label's texts)")
        fig.colorbar(image, ax=ax, shrink=0.8)
        path = out_dir / f"cooccurrence_{name}.png"
        atomic_write(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=Path("data"), metavar="DATA_DIR",
                        help="folder with train.tsv, dev.tsv, test.tsv and emotions.txt (default: ./data)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (atomically), not stdout")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="also write PNG charts to DIR: label_frequency.png, cooccurrence_<split>.png")
    args = parser.parse_args(argv)

    try:
        stats = analyse(args.data_dir)
    except DataError as e:
        print(f"data_analysis.py: error: {e}", file=sys.stderr)
        return 1
    report = FORMATTERS[args.format](stats)
    try:
        if args.output is None:
            sys.stdout.write(report)
        else:
            atomic_write(args.output, lambda tmp: tmp.write_text(report, encoding="utf-8"))
            print(f"data_analysis.py: wrote {args.output}", file=sys.stderr)
        if args.plot is not None:
            written = plot(stats, args.plot)
            print(f"data_analysis.py: wrote {len(written)} charts to {args.plot}", file=sys.stderr)
    except OSError as e:
        print(f"data_analysis.py: error: {e.filename or ''}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
