"""Turn your own multi-label data (CSV, TSV, JSONL, Parquet, or the GoEmotions layout) into this project's files.

    python prepare_data.py mydata.jsonl data/mine --label-column labels --split 0.8 0.1 0.1 --seed 42
    python prepare_data.py --train a.csv --dev b.csv --test c.csv data/mine --label-pattern 'label_.*'

OUT_DIR gets train.tsv, dev.tsv and test.tsv in the GoEmotions layout (text, comma-separated label ids, id; no
header; an empty label field is a text with no label), emotions.txt (the label names, one a line: the file every
script here reads, whatever the labels are) and dataset.json (the sources with their SHA-256, the column mapping,
the split rule and seed, the label counts per split). bert_model.py, data_analysis.py, predict.py, compare_runs.py,
`make run DATA_DIR=OUT_DIR` and the HEC jobs take OUT_DIR unchanged.

Labels come as one column of label lists (a JSON list, or names joined by --label-separator), as label ids into
--labels-file (--label-ids), or as one 0/1 column per label (--label-columns, or --label-pattern). Label order:
--labels-file's, else sorted. Label names are written in Unicode's NFC (a name typed as NFD is the same label) and
must follow the rule of multilabel/files.py (no comma, tab, line break or other control character; not starting
with = or @). Splits: three files (--train/--dev/--test), a split column (--split-column), or made
with --split TRAIN DEV TEST (iterative stratification, Sechidis et al. 2011, from the iterative-stratification
package, then one example moved where a label with >= 3 examples missed a split).

Bad input is one line (`prepare_data.py: error: FILE:LINE: problem`), exit 1, and nothing written; OUT_DIR is
written atomically, and one that holds a different dataset is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multilabel import files, lengths, options, outputs, tables
from multilabel.files import UserError

# -----------------------------------------------------------------------------
# Knobs

FORMATS = {k: v for k, v in tables.TABLE_FORMATS.items() if v != "lines"}  # a file of lines has no labels
SPLITS = files.SPLITS
DEFAULT_TOKENIZER = "bert-base-uncased"  # bert_model.py's default model
SPLIT_NAMES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}
OUTPUT_FILES = ("train.tsv", "dev.tsv", "test.tsv", files.LABELS_FILE)
SPLIT_FRACTION = options.Range(float, low=0, high=1, low_open=True, high_open=True)  # --split: each of the three
MIN_IN_EVERY_SPLIT = 3  # a made split gives every label with at least this many examples a place in all three
DataError = UserError  # bad input; the message is the one line shown to the user: FILE:LINE: problem


@dataclass
class Examples:
    """Everything read, in input order: text, label names, id, split (None until made), where it came from."""
    texts: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    columns_named: set[str] = field(default_factory=set)  # 0/1 label columns: labels even with no example


# -----------------------------------------------------------------------------
# Reading: every format yields (where, row) with row a dict of column -> value


def file_format(path: Path, forced: str | None) -> str:
    if forced:
        return forced
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension {path.suffix!r}; give --format "
                        f"({', '.join(sorted(set(FORMATS.values())))} or goemotions)")
    return fmt


# -----------------------------------------------------------------------------
# One row -> one example


def column_value(row: dict, column: str, where: str):
    if column not in row:
        raise DataError(f"{where}: no column {column!r} (the columns there: {', '.join(map(str, row)) or 'none'})")
    return row[column]


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # None, or NaN from pandas


def label_list(value, where: str, separator: str) -> list:
    """A JSON list, a list (JSONL, Parquet), or names joined by the separator; empty or missing: no label."""
    if is_missing(value):
        return []
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except ValueError as e:
                raise DataError(f"{where}: label list is not valid JSON: {e}") from None
        else:
            value = [part for part in value.split(separator)] if value else []
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise DataError(f"{where}: labels must be a list or a string of names, got {type(value).__name__}")
    return [v.strip() if isinstance(v, str) else v for v in value if not (isinstance(v, str) and not v.strip())]


def label_ids_to_names(values: list, names: list[str], where: str, labels_file: str) -> list[str]:
    out = []
    for v in values:
        try:
            i = int(v)
            if isinstance(v, bool) or i != float(v):
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"{where}: label id {v!r} is not an integer") from None
        if not 0 <= i < len(names):
            raise DataError(f"{where}: label id {i} out of range 0-{len(names) - 1} ({labels_file} has "
                            f"{len(names)} labels)")
        out.append(names[i])
    return out


def one_hot_value(value, column: str, where: str) -> bool:
    if isinstance(value, str):
        value = value.strip()
    if value in (0, 1, "0", "1", "0.0", "1.0", True, False):  # 1 == 1.0 == True, so floats and bools too
        return value in (1, "1", "1.0")
    raise DataError(f"{where}: column {column!r} must hold 0 or 1, got {value!r}")


def check_names(names: list, where: str, known: set[str] | None, labels_file: str | None) -> list[str]:
    """The label names of a row, in NFC, each once; a name against files.label_name_problem's rule is an error."""
    out = []
    for name in names:
        if not isinstance(name, str):
            raise DataError(f"{where}: label {name!r} is not a name (use --label-ids for label ids)")
        name = unicodedata.normalize("NFC", name)
        if files.label_name_problem(name):
            raise DataError(f"{where}: {files.label_name_problem(name)}")
        if known is not None and name not in known:
            raise DataError(f"{where}: label {name!r} is not in the labels file {labels_file}")
        if name not in out:
            out.append(name)
    return out


def read_examples(path: Path, args: argparse.Namespace, split: str | None, known: list[str] | None,
                  out: Examples) -> dict:
    """Append one file's examples to `out`; returns what dataset.json says about the file."""
    fmt = file_format(path, args.format)
    files.regular_file(path)  # read, then checksummed: a pipe would be read once
    table = tables.read_table(path, fmt)
    use = Columns.of(table.columns, args, path, fmt)
    known_set = set(known) if known is not None else None
    out.columns_named.update(check_names(use.one_hot, str(path), known_set, args.labels_file))
    n = 0
    for record in table.rows:
        if record.blank and fmt == "jsonl":
            continue
        where = f"{path}:{record.line}" if fmt != "parquet" else f"{path}: row {record.line}"
        if record.error:
            raise DataError(f"{where}: {record.error}")
        text, names, example_id = (goemotions_example(record.cells, known, where) if fmt == "goemotions" else
                                   example(record.values, use, args, known, where))
        out.labels.append(check_names(names, where, known_set, args.labels_file))
        out.texts.append(text)
        out.ids.append(example_id or f"{path.stem}-{record.line}")
        out.splits.append(split_of(record.values, args.split_column, where) if args.split_column else split)
        out.where.append(where)
        n += 1
    if n == 0:
        raise DataError(f"{path}: no examples")
    return {"path": str(path), "sha256": files.sha256(path), "format": fmt, "examples": n,
            **({"split": split} if split and not args.split_column else {})}


@dataclass
class Columns:
    """Which columns hold what: the text(s), the labels (a column of lists, or one 0/1 column per label), the id."""
    text: list[str]
    labels: str | None
    one_hot: list[str]
    id: str | None

    @classmethod
    def of(cls, columns: list[str], args: argparse.Namespace, path: Path, fmt: str) -> Columns:
        one_hot = one_hot_label_columns(columns, args, path) if fmt != "goemotions" else []
        use = cls(args.text_column or ["text"], None if one_hot else args.label_column or "labels", one_hot,
                  args.id_column)
        for name in [*use.text, *([use.labels] if use.labels else []), *([use.id] if use.id else []),
                     *([args.split_column] if args.split_column else [])]:
            if columns and name not in columns and fmt != "goemotions":
                raise DataError(f"{path}: no column {name!r} (the columns there: {', '.join(columns)})")
        return use


def goemotions_example(cells: list[str], known: list[str], where: str) -> tuple[str, list[str], str]:
    """A row of this project's own split layout, checked as every script checks it (files.split_row)."""
    try:
        text, ids, example_id = files.split_row(cells, len(known))
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    return text, [known[i] for i in ids], example_id


def example(row: dict, use: Columns, args: argparse.Namespace, known: list[str] | None,
            where: str) -> tuple[str, list, str]:
    """(text, label names, id or '') of one row of a user's table."""
    parts = [column_value(row, c, where) for c in use.text]
    if any(not isinstance(p, str) and not is_missing(p) for p in parts):
        raise DataError(f"{where}: text is not a string")
    text = " ".join(p for p in parts if not is_missing(p))
    if files.unicode_problem(text):
        raise DataError(f"{where}: {files.unicode_problem(text)}")
    if not text.strip():
        raise DataError(f"{where}: empty text")
    if use.one_hot:
        names = [c for c in use.one_hot if one_hot_value(column_value(row, c, where), c, where)]
    else:
        values = label_list(column_value(row, use.labels, where), where, args.label_separator)
        names = label_ids_to_names(values, known, where, args.labels_file) if args.label_ids else values
    example_id = ""
    if use.id:
        value = column_value(row, use.id, where)
        example_id = "" if is_missing(value) else str(value).strip()
        if not example_id:
            raise DataError(f"{where}: empty id (column {use.id!r})")
        if files.unicode_problem(example_id):
            raise DataError(f"{where}: {files.unicode_problem(example_id)} in the id")
    return text, names, example_id


def split_of(row: dict, column: str, where: str) -> str:
    value = str(column_value(row, column, where)).strip().lower()
    if value not in SPLIT_NAMES:
        raise DataError(f"{where}: split {value!r} in column {column!r} is not one of {', '.join(SPLIT_NAMES)}")
    return SPLIT_NAMES[value]


def one_hot_label_columns(columns: list[str], args: argparse.Namespace, path: Path) -> list[str]:
    """The 0/1 label columns: named (--label-columns) or matched (--label-pattern, in the file's order)."""
    if args.label_columns:
        missing = [c for c in args.label_columns if c not in columns]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r} (the columns there: {', '.join(columns)})")
        return list(args.label_columns)
    if args.label_pattern:
        pattern = re.compile(args.label_pattern)
        used = {*(args.text_column or ["text"]), args.id_column, args.split_column}
        found = [c for c in columns if pattern.fullmatch(c) and c not in used]
        if not found:
            raise DataError(f"{path}: no column matches --label-pattern {args.label_pattern!r} (the columns there: "
                            f"{', '.join(columns)})")
        return found
    return []


def check_unique_ids(ex: Examples) -> None:
    first: dict[str, int] = {}
    for i, example_id in enumerate(ex.ids):
        j = first.setdefault(example_id, i)
        if j != i:
            raise DataError(f"{ex.where[i]}: duplicate id {example_id!r} (first at {ex.where[j]})")


# -----------------------------------------------------------------------------
# Labels and splits


def label_matrix(ex: Examples, labels: list[str]) -> np.ndarray:
    index = {name: j for j, name in enumerate(labels)}
    y = np.zeros((len(ex.texts), len(labels)), dtype=bool)
    for i, names in enumerate(ex.labels):
        y[i, [index[n] for n in names if n in index]] = True
    return y


def check_fractions(fractions: list[float]) -> None:
    if abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"--split {' '.join(map(str, fractions))}: the fractions add up to {sum(fractions):g}, "
                        f"not 1")


def make_split(y: np.ndarray, fractions: list[float], seed: int) -> np.ndarray:
    """0/1/2 (train/dev/test) per example: iterstrat's iterative stratification over the three folds at once
    (the examples shuffled first, as its MultilabelStratifiedShuffleSplit does), then every label with >= 3
    examples given at least one in each split (moved from the split with the most of it)."""
    from iterstrat.ml_stratifiers import IterativeStratification

    n = len(y)
    sizes = np.array(fractions) * n
    if n < len(SPLITS) or (np.round(sizes) < 1).any():
        short = SPLITS[int(np.argmin(sizes))]
        raise DataError(f"{n} example(s) are too few to split {'/'.join(map(str, fractions))} ({short} would "
                        f"get none)")
    rng = np.random.RandomState(seed)
    order = np.arange(n)
    rng.shuffle(order)
    folds = np.empty(n, dtype=int)
    folds[order] = IterativeStratification(labels=y[order], r=np.array(fractions), random_state=rng)
    return give_every_label_every_split(y, folds)


def give_every_label_every_split(y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Rarest label first: where a label with >= MIN_IN_EVERY_SPLIT examples has none in a split, swap: one
    example of it comes from the split holding most of it (the one that fills most such gaps, and whose other
    labels keep an example in the split it leaves), and one example goes back whose labels all stay in both."""
    counts = y.sum(0)
    for j in np.argsort(counts, kind="stable"):
        if counts[j] < MIN_IN_EVERY_SPLIT:
            continue
        for target in range(len(SPLITS)):
            per_split = np.array([(y[folds == s, j]).sum() for s in range(len(SPLITS))])
            if per_split[target]:
                continue
            donor = int(per_split.argmax())
            in_donor, in_target = y[folds == donor].sum(0), y[folds == target].sum(0)
            gaps = (in_target == 0) & (counts >= MIN_IN_EVERY_SPLIT)
            candidates = np.flatnonzero((folds == donor) & y[:, j])
            safe = [i for i in candidates if (in_donor[y[i]] > 1).all()]
            pick = min(safe or list(candidates), key=lambda i: (-(y[i] & gaps).sum(), y[i].sum(), i))
            folds[pick] = target
            in_target += y[pick]
            back = [i for i in np.flatnonzero(folds == target) if i != pick and (in_target[y[i]] > 1).all()]
            if back:  # the split sizes stay as iterstrat made them
                folds[min(back, key=lambda i: (y[i].sum(), i))] = donor
    return folds


def counts_per_split(y: np.ndarray, splits: np.ndarray, labels: list[str]) -> dict:
    out = {}
    for s, name in enumerate(SPLITS):
        ys = y[splits == s]
        out[name] = {"examples": int(len(ys)), "without_label": int((~ys.any(1)).sum()),
                     "labels": {label: int(c) for label, c in zip(labels, ys.sum(0), strict=True)}}
    return out


def count_table(counts: dict, labels: list[str]) -> str:
    width = max(15, *(len(n) + 2 for n in labels))
    rows = [f"{'label':<{width}}" + "".join(f"{s:>9}" for s in SPLITS)]
    rows += [f"{n:<{width}}" + "".join(f"{counts[s]['labels'][n]:>9}" for s in SPLITS) for n in labels]
    rows.append(f"{'(no label)':<{width}}" + "".join(f"{counts[s]['without_label']:>9}" for s in SPLITS))
    rows.append(f"{'examples':<{width}}" + "".join(f"{counts[s]['examples']:>9}" for s in SPLITS))
    return "\n".join(rows)


# -----------------------------------------------------------------------------
# The whole thing


def prepare(args: argparse.Namespace, command: str) -> int:
    out_dir = Path(args.out_dir)
    existing = check_out_dir(out_dir)
    if args.split is not None:
        check_fractions(args.split)
    known = nfc_labels(args.labels_file) if args.labels_file else None
    if (args.label_ids or args.format == "goemotions") and known is None:
        raise DataError("label ids need --labels-file (the names, one a line, in id order)")
    inputs = ([(Path(args.input), None)] if args.input else
              [(Path(p), s) for p, s in ((args.train, "train"), (args.dev, "dev"), (args.test, "test"))])
    ex = Examples()
    sources = [read_examples(path, args, split, known, ex) for path, split in inputs]
    check_unique_ids(ex)
    labels, y, dropped = choose_labels(ex, known, args.min_count)
    splits, rule = assign_splits(ex, y, args)
    counts = counts_per_split(y, splits, labels)
    print(count_table(counts, labels))
    warn_missing_labels(labels, y, counts)
    print_lengths(args.tokenizer, {name: [ex.texts[i] for i in np.flatnonzero(splits == s)]
                                   for s, name in enumerate(SPLITS)})
    contents = {f"{name}.tsv": files.split_text([ex.texts[i] for i in rows], [np.flatnonzero(y[i]) for i in rows],
                                                [ex.ids[i] for i in rows])
                for s, name in enumerate(SPLITS) for rows in [np.flatnonzero(splits == s)]}
    contents[files.LABELS_FILE] = files.labels_text(labels)
    dataset = {
        "name": args.name or (Path(args.input).stem if args.input else out_dir.name),
        "command": command, "sources": sources,
        "columns": {"text": args.text_column or ["text"], "labels": describe_labels(args),
                    "id": args.id_column or ("id" if args.format == "goemotions" else None),
                    "generated_ids": None if args.id_column or args.format == "goemotions" else
                    "FILE_STEM-LINE (row number for Parquet)"},
        "labels_file": args.labels_file, "labels": labels, "min_count": args.min_count, "dropped_labels": dropped,
        "split": rule, "counts": counts,
        "files": {f: hashlib.sha256(contents[f].encode("utf-8")).hexdigest() for f in OUTPUT_FILES},
    }
    what = publish(contents, dataset, existing, out_dir)
    n = {s: counts[s]["examples"] for s in SPLITS}
    print(f"prepare_data.py: {what} {out_dir}: {len(labels)} labels; train {n['train']}, dev {n['dev']}, test "
          f"{n['test']} examples ({sum(counts[s]['without_label'] for s in SPLITS)} without a label)", file=sys.stderr)
    return 0


def nfc_labels(path: str) -> list[str]:
    """--labels-file's names in NFC, as every name this script writes (read_labels refuses two equal under NFC)."""
    return [unicodedata.normalize("NFC", n) for n in files.read_labels(path)]


def print_lengths(tokenizer: str, texts: dict[str, list[str]]) -> None:
    """How long the texts are in the tokens of the model they will be trained with (bert_model.py reads
    --max-length of them; `auto` chooses from the training split's): a note, not an error, where the default
    model's tokenizer is not at hand."""
    if tokenizer == DEFAULT_TOKENIZER and not lengths.at_hand(tokenizer):
        print(f"prepare_data.py: lengths in tokens not reported: {tokenizer} is not in the Hugging Face cache "
              f"(--tokenizer MODEL: the model you will train, a folder or a cached name)", file=sys.stderr)
        return
    tok = lengths.load_tokenizer(tokenizer)
    print(f"lengths in {tokenizer}'s tokens (special tokens included):")
    for name, found in lengths.report(tok, texts).items():
        print(lengths.summary_line(name, found))


def choose_labels(ex: Examples, known: list[str] | None, min_count: int) -> tuple[list[str], np.ndarray, dict]:
    """The labels file's order, else the names sorted; labels with fewer than min_count examples dropped."""
    labels = known if known is not None else sorted({n for names in ex.labels for n in names} | ex.columns_named)
    y = label_matrix(ex, labels)
    dropped = {n: int(c) for n, c in zip(labels, y.sum(0), strict=True) if c < min_count}
    if dropped:
        print(f"prepare_data.py: --min-count {min_count}: dropped {len(dropped)} label(s) with fewer "
              f"examples: {', '.join(f'{n} ({c})' for n, c in dropped.items())}", file=sys.stderr)
        labels = [n for n in labels if n not in dropped]
        y = label_matrix(ex, labels)
    if not labels:
        raise DataError("no labels left (none in the data, or all below --min-count)")
    return labels, y, dropped


def assign_splits(ex: Examples, y: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    """0/1/2 (train/dev/test) per example, made or as given; and the rule, for dataset.json."""
    if args.input and not args.split_column:
        rule = {"rule": "made: iterative stratification (Sechidis et al. 2011, iterative-stratification "
                        "0.1.9), then one example moved where a label with >= 3 examples missed a split",
                "fractions": args.split, "seed": args.seed}
        return make_split(y, args.split, args.seed), rule
    splits = np.array([SPLITS.index(s) for s in ex.splits])
    for s, name in enumerate(SPLITS):
        if not (splits == s).any():
            raise DataError(f"{args.input or args.train}: no {name} examples (split column "
                            f"{args.split_column!r})" if args.split_column else f"no {name} examples")
    return splits, ({"rule": "column", "column": args.split_column} if args.split_column else {"rule": "files"})


def warn_missing_labels(labels: list[str], y: np.ndarray, counts: dict) -> None:
    for j, name in enumerate(labels):
        missing = [s for s in ("dev", "test") if counts[s]["labels"][name] == 0]
        if missing:
            print(f"prepare_data.py: warning: label {name!r} has no example in {' or '.join(missing)} "
                  f"({int(y[:, j].sum())} in all)", file=sys.stderr)


# -----------------------------------------------------------------------------
# Writing, atomically


def check_out_dir(out_dir: Path) -> dict | None:
    """OUT_DIR's dataset.json, where it holds one (outputs.claim has refused an OUT_DIR that is not ours)."""
    return files.read_dataset(out_dir) if out_dir.is_dir() else None


def prepare_inputs(args: argparse.Namespace) -> list[outputs.Input]:
    """The input file(s), the labels file, and the tokenizer's folder where it is a local one."""
    paths = [(args.input, "the input"), (args.train, "--train"), (args.dev, "--dev"), (args.test, "--test"),
             (args.labels_file, "--labels-file")]
    found = [outputs.Input(Path(p), what) for p, what in paths if p]
    if Path(args.tokenizer).is_dir():
        found.append(outputs.Input(Path(args.tokenizer), "the tokenizer's folder (--tokenizer)", folder=True))
    return found


def prepare_outputs(args: argparse.Namespace) -> list[outputs.Output]:
    """OUT_DIR, replaced whole: empty, or a folder this script prepared (dataset.json lists its files)."""
    def listed(folder: Path) -> list[str]:
        info = files.read_dataset(folder)
        return list(info["files"]) if info else []
    return [outputs.Output(Path(args.out_dir), "OUT_DIR", folder=True,
                           ours=outputs.folder_listing(files.DATASET_FILE, listed))]


def publish(contents: dict[str, str], dataset: dict, existing: dict | None, out_dir: Path) -> str:
    """Write OUT_DIR whole (a folder written beside it, then renamed): 'wrote'; or 'unchanged' where it already holds
    the same files. One that holds another dataset is refused."""
    if existing is not None:
        if existing["files"] == dataset["files"] and existing["labels"] == dataset["labels"]:
            return "unchanged"
        raise DataError(f"{out_dir}: holds a different dataset ({existing['name']}, dataset.json); choose "
                        f"another OUT_DIR or remove it")
    with files.atomic_folder(out_dir, "the prepared data") as tmp:
        for name, text in contents.items():
            (tmp / name).write_text(text, encoding="utf-8", newline="")
        (tmp / files.DATASET_FILE).write_text(json.dumps(dataset, indent=1) + "\n", encoding="utf-8")
    return "wrote"


def describe_labels(args: argparse.Namespace) -> dict:
    if args.label_columns or args.label_pattern:
        return {"encoding": "one 0/1 column per label", "columns": args.label_columns, "pattern": args.label_pattern}
    if args.label_ids or args.format == "goemotions":
        return {"encoding": "label ids into the labels file", "column": args.label_column or "labels"}
    return {"encoding": "label names (a JSON list, or joined by the separator)", "column": args.label_column or
            "labels", "separator": args.label_separator}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="[INPUT] OUT_DIR",
                   help="one input file and OUT_DIR; or only OUT_DIR, with --train/--dev/--test")
    p.add_argument("--train", help="the training split, as its own file (with --dev and --test)")
    p.add_argument("--dev", help="the dev (validation) split")
    p.add_argument("--test", help="the test split")
    p.add_argument("--format", choices=["csv", "tsv", "jsonl", "parquet", "goemotions"],
                   help="default: from the extension (.csv .tsv .jsonl .parquet); goemotions: the layout of this "
                        "project's TSVs (text, label ids, id; no header; needs --labels-file)")
    p.add_argument("--text-column", nargs="+", help="text column(s), several joined by a space (default: text)")
    p.add_argument("--label-column", help="a column of label lists: a JSON list or names joined by "
                                          "--label-separator (default: labels)")
    p.add_argument("--label-separator", default=",", help="between label names in a string label column")
    p.add_argument("--label-ids", action="store_true", help="the label column holds ids into --labels-file")
    p.add_argument("--label-columns", nargs="+", metavar="COLUMN", help="one 0/1 column per label, by name")
    p.add_argument("--label-pattern", metavar="REGEX", help="one 0/1 column per label: the columns it matches")
    p.add_argument("--labels-file", help="the label names, one a line: their order, and no other names allowed")
    p.add_argument("--min-count", type=options.WHOLE_0, default=0, help="drop labels with fewer examples in all")
    p.add_argument("--id-column", help="example ids (unique); default: generated, FILE_STEM-LINE")
    p.add_argument("--split-column", help="a column saying train, dev (or validation) or test")
    p.add_argument("--split", type=SPLIT_FRACTION, nargs=3, metavar=("TRAIN", "DEV", "TEST"),
                   default=[0.8, 0.1, 0.1], help="fractions for a made, stratified split of one input file")
    p.add_argument("--seed", type=options.SEED, default=42, help="of the made split")
    p.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, metavar="MODEL",
                   help="report the texts' lengths in this model's tokens: the one you will train (a folder, or a "
                   "name in the Hugging Face cache; default %(default)s)")
    p.add_argument("--name", help="the dataset's name (model cards use it); default: the input file's stem")
    options.describe_ranges(p)
    args = p.parse_intermixed_args(argv)  # INPUT and OUT_DIR may come before, between or after the options
    files = [args.train, args.dev, args.test]
    if any(files):
        if not all(files) or len(args.paths) != 1:
            p.error("--train, --dev and --test go together, with OUT_DIR as the only path")
        args.input, args.out_dir = None, args.paths[0]
    elif len(args.paths) == 2:
        args.input, args.out_dir = args.paths
    else:
        p.error("give INPUT OUT_DIR, or --train/--dev/--test and OUT_DIR")
    if args.label_columns and args.label_pattern:
        p.error("--label-columns or --label-pattern, not both")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with outputs.claim("prepare_data.py", prepare_inputs(args), prepare_outputs(args)):
            return prepare(args, files.command_line("prepare_data.py", argv))
    except DataError as e:
        return files.fail("prepare_data.py", e)


if __name__ == "__main__":
    sys.exit(main())
