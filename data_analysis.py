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
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from multilabel import files, lengths, outputs, tables
from multilabel.files import UserError

# -----------------------------------------------------------------------------
# Knobs

FORMATS = ("text", "tsv", "json", "markdown")
COLUMNS = {  # statistic -> header in the text and markdown tables
    "count": "count",
    "percent_of_texts": "% of texts",
    "percent_with_other_label": "% with another label",
}


# -----------------------------------------------------------------------------
# Reading (multilabel.files: the one reader of the splits and labels every script uses)


def read_split(path: Path, n_labels: int) -> pd.DataFrame:
    """One split as a DataFrame with columns text (str, as written), labels (tuple of ids) and id."""
    split = files.read_split(path, n_labels)
    return pd.DataFrame({"text": split.texts, "labels": split.labels, "id": split.ids})


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


def analyse(data_dir: Path) -> dict:
    """Read and validate everything, then compute the statistics: {"name", "labels": [...], "splits": {...}}."""
    dataset = files.read_dataset(data_dir)  # prepare_data.py's, for a folder it prepared; else GoEmotions
    labels = files.read_labels(data_dir / files.LABELS_FILE)
    frames = {name: read_split(data_dir / f"{name}.tsv", len(labels)) for name in files.SPLITS}
    return {"name": dataset["name"] if dataset else "GoEmotions", "labels": labels, "splits": {
        name: {"samples": len(frame), "labels": label_statistics(frame, labels),
               "labels_per_sample": labels_per_sample(frame), "cooccurrence": cooccurrence_percent(frame, labels)}
        for name, frame in frames.items()}}


def token_lengths(data_dir: Path, n_labels: int, tokenizer: str) -> dict:
    """{"tokenizer", "splits": {split: median, p95, p99, max, over_N}} in the model's tokens."""
    tok = lengths.load_tokenizer(tokenizer)
    texts = {name: files.read_split(data_dir / f"{name}.tsv", n_labels).texts for name in files.SPLITS}
    return {"tokenizer": tokenizer, "splits": lengths.report(tok, texts)}


def lengths_text(stats: dict) -> str:
    if "lengths" not in stats:
        return ""
    found = stats["lengths"]
    return (f"\nlengths in {found['tokenizer']}'s tokens (special tokens included):\n"
            + "".join(lengths.summary_line(name, s) + "\n" for name, s in found["splits"].items()))


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
    return "\n".join(parts) + lengths_text(stats)


def format_tsv(stats: dict) -> str:
    """One tidy table: split, kind (samples|label|labels_per_sample), name, count, percent, percent_with_other."""
    rows = []
    for name, split in stats["splits"].items():
        rows.append((name, "samples", "all", split["samples"], 100.0, None))
        for label, r in split["labels"].iterrows():
            rows.append((name, "label", label, r["count"], r["percent_of_texts"], r["percent_with_other_label"]))
        for n, r in split["labels_per_sample"].iterrows():
            rows.append((name, "labels_per_sample", n, r["samples"], r["percent_of_samples"], None))
    for name, found in stats.get("lengths", {}).get("splits", {}).items():
        # median, p95, p99, max: tokens (rounded); over_N: texts over N tokens, and their percent
        rows += [(name, "tokens", k, round(v), None, None) for k, v in found.items() if k in ("median", "p95", "p99",
                                                                                             "max")]
        rows += [(name, "tokens", k, round(v * found["texts"]), 100 * v, None) for k, v in found.items()
                 if k.startswith("over_")]
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
    if "lengths" in stats:
        out["lengths"] = stats["lengths"]
    return json.dumps(out, indent=2) + "\n"


def format_markdown(stats: dict) -> str:
    parts = []
    for name, split in stats["splits"].items():
        table = split["labels"].rename(columns=COLUMNS)
        per_sample = split["labels_per_sample"].rename(columns={"percent_of_samples": "% of samples"})
        parts.append(f"### {name}: {split['samples']} samples\n\n{tables.markdown(table)}\n\n"
                     f"{tables.markdown(per_sample)}\n")
    return "\n".join(parts) + lengths_text(stats)


FORMATTERS = {"text": format_text, "tsv": format_tsv, "json": format_json, "markdown": format_markdown}


# -----------------------------------------------------------------------------
# Writing


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
    files.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100), "the chart")
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
        files.atomic_write(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100), "the chart")
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=Path("data"), metavar="DATA_DIR",
                        help="folder with train.tsv, dev.tsv, test.tsv and emotions.txt (default: ./data)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (atomically), not stdout")
    parser.add_argument("--tokenizer", metavar="MODEL",
                        help="also report the texts' lengths in this model's tokens (a folder, or a name in the "
                        "Hugging Face cache): median, p95, p99, max, and the share over 50, 128, 256 and 512")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="also write PNG charts to DIR: label_frequency.png, cooccurrence_<split>.png")
    args = parser.parse_args(argv)

    try:
        with outputs.claim("data_analysis.py", analysis_inputs(args), analysis_outputs(args)):
            return analyse_and_write(args)
    except UserError as e:
        return files.fail("data_analysis.py", e)


def analysis_inputs(args: argparse.Namespace) -> list[outputs.Input]:
    """The data folder's files, and the tokenizer's folder where it is a local one."""
    paths = [*files.folder_files(args.data_dir), args.data_dir / files.DATASET_FILE]
    found = [outputs.Input(path, "a file of DATA_DIR") for path in paths]
    if args.tokenizer and Path(args.tokenizer).is_dir():
        found.append(outputs.Input(Path(args.tokenizer), "the tokenizer's folder (--tokenizer)", folder=True))
    return found


def analysis_outputs(args: argparse.Namespace) -> list[outputs.Output]:
    """--output, and the charts --plot writes into its folder (PNG files of the same names: ours to replace)."""
    charts = ["label_frequency.png", *(f"cooccurrence_{name}.png" for name in files.SPLITS)] if args.plot else []
    return [outputs.Output(args.output, "the statistics (--output)"),
            *(outputs.Output(args.plot / name, "a chart (--plot)", ours=outputs.png) for name in charts)]


def analyse_and_write(args: argparse.Namespace) -> int:
    stats = analyse(args.data_dir)
    if args.tokenizer:
        stats["lengths"] = token_lengths(args.data_dir, len(stats["labels"]), args.tokenizer)
    report = FORMATTERS[args.format](stats)
    if args.output is None:
        sys.stdout.write(report)
    else:
        files.atomic_write(args.output, report, "the statistics")
        print(f"data_analysis.py: wrote {args.output}", file=sys.stderr)
    if args.plot is not None:
        written = plot(stats, args.plot)
        print(f"data_analysis.py: wrote {len(written)} charts to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
