"""Every file the scripts exchange, read and written here and nowhere else: one reader, one writer, one strictness.

    the splits       DATA_DIR/{train,dev,test}.tsv: text, comma-separated label ids, id; no header; CSV quoting
    the labels       DATA_DIR/emotions.txt: one label name a line, line n (from 0) naming label id n
    the taxonomies   DATA_DIR/ekman_mapping.json, sentiment_dict.json: {group: [label, ...]}
    the dataset      DATA_DIR/dataset.json: what prepare_data.py made the folder from
    your own tables  CSV, TSV, JSONL, Parquet or one text a line: tables.py, as prepare_data.py and predict.py read them
    the run folder   SAVE_FP (a Hugging Face model folder with its settings, goemotions.json), SAVE_FP.checkpoint.pt,
                     SAVE_FP.dev.jsonl (dev F1 as training goes), metrics.json and predictions.tsv; which of
                     bert_model.py's options can change a result
    the paper        Table 4 of Demszky et al. (ACL 2020)

Bad input is a UserError: one line naming the file, the line and the problem, which every script prints as
`SCRIPT: error: ...` before exiting 1. Every write goes to a temporary name beside its target and is renamed into
place, so a killed process never leaves a half-written file under a real name. No torch here: data_analysis.py,
prepare_data.py and compare_runs.py read these files without it.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import stat
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multilabel.decide import decide


class UserError(Exception):
    """Bad input or environment: one line, no traceback, exit 1."""


def fail(prog: str, error: Exception) -> int:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 1


def command_line(prog: str, argv: list[str] | None) -> str:
    """How the script was run, for the records it writes (metrics.json, dataset.json, the model card)."""
    return shlex.join(["python", prog, *(sys.argv[1:] if argv is None else argv)])


# ------------------------------------------------------------------------------------------- writing


def temp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: beside it, hidden, named after it and this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temps(path: Path) -> None:
    """Remove what a killed process left while writing `path` (its temporary file or folder, or a folder it was
    replacing), and nothing else: another run's files beside it (model-task11 beside model-task1) are not ours."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(tmp|old)-\d+")
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*-*"):
        if pattern.fullmatch(stale.name):
            remove(stale)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def write_error(path: Path, what: str, needed: int, error: Exception, hint: str = "") -> str:
    """The line for a failed write; a full disk says what was needed and what is free."""
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
    detail = getattr(error, "strerror", None) or str(error).strip().split("\n")[0] or type(error).__name__
    if getattr(error, "errno", None) == errno.ENOSPC or (needed and free < needed + 2**20):
        return (f"{path.parent}: no room for {what}: it needs about {mib(needed)} and {mib(free)} is free "
                f"({detail}){hint}")
    return f"{path}: cannot write {what} ({detail}){hint}"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], object], what: str = "the file",
                 needed: int = 0, hint: str = "") -> None:
    """Write text, bytes, or whatever write(temp_path) writes, to a temporary file beside `path`, flushed to disk, then
    renamed to `path`: readers see the old file or the new one, never a part. A failure removes the temporary file."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode("utf-8", errors="surrogateescape") if isinstance(data, str) else data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError of its zip writer
        remove(tmp)
        raise UserError(write_error(path, what, needed, e, hint)) from None
    except BaseException:
        remove(tmp)
        raise


def remove(path: Path) -> None:
    """Remove a file or folder if it is there (and can be: a path under a file cannot be)."""
    with suppress(OSError):
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: Path, what: str = "the folder", needed: int = 0, hint: str = "") -> Iterator[Path]:
    """`with atomic_folder(OUT) as tmp:` fill tmp; at the end it replaces OUT (the old one is removed last). An error
    inside, or a failed write, removes tmp and leaves OUT as it was."""
    tmp = temp_path(path)
    remove(tmp)
    try:
        tmp.mkdir(parents=True)
        yield tmp
    except (OSError, RuntimeError) as e:
        remove(tmp)
        raise UserError(write_error(path, what, needed, e, hint)) from None
    except BaseException:
        remove(tmp)
        raise
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, obj: object, what: str = "the file") -> None:
    atomic_write(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n", what)


def sha256(path: str | Path) -> str:
    regular_file(path)  # a pipe read here would be empty for whoever reads it next, or block forever
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- reading


# What errors="surrogateescape" makes of bytes that are not UTF-8, and what an escaped lone surrogate in JSON
# becomes: neither can be written out again as UTF-8, nor tokenized.
BAD_BYTES = re.compile("[\udc80-\udcff]")
SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_problem(text: str) -> str:
    """Why `text` is not valid Unicode text, or ''. (A NUL: a file's own is refused whole, by check_encoding; one
    here came escaped in JSON, or from standard input past its start.)"""
    if BAD_BYTES.search(text):
        return "not valid UTF-8"
    if "\0" in text:
        return "a NUL character (U+0000): UTF-16 or binary data?"
    found = SURROGATE.search(text)
    return f"a lone surrogate U+{ord(found[0]):04X} (an escaped \\u{ord(found[0]):04x})" if found else ""


def open_text(path: str | Path, newline: str | None = "") -> io.TextIOBase:
    """A text file (or - for standard input) as UTF-8 with an optional byte-order mark; bytes that are not UTF-8
    become marks (BAD_BYTES) on their own line, so that the error can name it. A file in another encoding (UTF-16 or
    UTF-32, or anything with NUL bytes) is refused whole, before a line is read (check_encoding)."""
    try:
        raw = sys.stdin.buffer if str(path) == "-" else open(path, "rb")  # noqa: SIM115 (closed by close())
        try:
            check_encoding(path, raw)
        except BaseException:
            if raw is not sys.stdin.buffer:
                raw.close()
            raise
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=newline)


# Byte-order marks of the encodings that are not UTF-8 (UTF-32's first: UTF-32LE's begins as UTF-16LE's does).
OTHER_BOMS = {b"\xff\xfe\x00\x00": "UTF-32LE", b"\x00\x00\xfe\xff": "UTF-32BE", b"\xff\xfe": "UTF-16LE",
              b"\xfe\xff": "UTF-16BE"}


def check_encoding(path: str | Path, raw: io.BufferedReader) -> None:
    """Refuse a file that is not UTF-8 text as a whole: a UTF-16 or UTF-32 byte-order mark, or a NUL byte (UTF-16
    without one, or a binary file), naming the line of the first. A regular file is scanned whole without moving its
    read position; a pipe or standard input, on what is buffered of its start (a NUL further on is its row's
    problem, unicode_problem)."""
    path = "standard input" if str(path) == "-" else path
    head = raw.peek(4096)[:4096]
    bom = next((name for mark, name in OTHER_BOMS.items() if head.startswith(mark)), None)
    if bom:
        raise UserError(f"{path}: {bom} text (its byte-order mark), not UTF-8: convert it first, e.g. iconv -f "
                        f"{bom[:6]} -t UTF-8 (every text file here is UTF-8)")
    lines = 0
    for block in blocks(raw.fileno()) if stat.S_ISREG(os.fstat(raw.fileno()).st_mode) else [head]:
        if b"\0" in block:
            line = lines + block.count(b"\n", 0, block.index(b"\0")) + 1
            raise UserError(f"{path}:{line}: a NUL byte: not UTF-8 text (UTF-16 or UTF-32 without a byte-order "
                            f"mark, or a binary file?); the whole file is refused")
        lines += block.count(b"\n")


def blocks(fd: int, size: int = 1 << 20) -> Iterator[bytes]:
    """A regular file's bytes a block at a time, read without moving its read position (pread)."""
    offset = 0
    while block := os.pread(fd, size, offset):
        yield block
        offset += len(block)


def regular_file(path: str | Path, hint: str = "") -> None:
    """Refuse a path that is there but is not a regular file, for a reader that reads it more than once (checks
    it, then reads it; or reads it and checksums it): a pipe would be empty the second time, or block forever. A
    missing file is left to whoever opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = ("a pipe" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise UserError(f"{path}: not a regular file ({kind}): give a file, which is read more than once{hint}")


def close(f: io.TextIOBase) -> None:
    """Close a file; standard input stays open (a wrapper closed with it would close sys.stdin for good)."""
    f.detach() if f.name == "<stdin>" or getattr(f, "buffer", None) is sys.stdin.buffer else f.close()


def read_lines(path: Path, what: str) -> list[str]:
    """A small text file's lines (a final newline is optional, CRLF is fine), strictly UTF-8."""
    f = open_text(path, newline="\n")
    try:
        text = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        close(f)
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines, 1):
        if unicode_problem(line):
            raise UserError(f"{path}:{i}: {unicode_problem(line)} in the {what}")
    return lines


def read_json(path: Path, what: str) -> object:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found ({what})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 ({what})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({what}: {e.msg} at column {e.colno})") from None


def csv_reader(f: io.TextIOBase, delimiter: str):
    csv.field_size_limit(2**31 - 1)  # a long text is a text, in every reader
    return csv.reader(f, delimiter=delimiter, strict=True)


# --------------------------------------------------------------------------------------- the paper

# Table 4 (BERT-base, test set, threshold 0.3): F1 per emotion, and macro F1 per taxonomy.
PAPER_F1 = {
    "admiration": 0.65, "amusement": 0.80, "anger": 0.47, "annoyance": 0.34, "approval": 0.36,
    "caring": 0.39, "confusion": 0.37, "curiosity": 0.54, "desire": 0.49, "disappointment": 0.28,
    "disapproval": 0.39, "disgust": 0.45, "embarrassment": 0.43, "excitement": 0.34, "fear": 0.60,
    "gratitude": 0.86, "grief": 0.00, "joy": 0.51, "love": 0.78, "nervousness": 0.35,
    "optimism": 0.51, "pride": 0.36, "realization": 0.21, "relief": 0.15, "remorse": 0.66,
    "sadness": 0.49, "surprise": 0.50, "neutral": 0.68,
}
PAPER_MACRO_F1 = {"original": 0.46, "ekman": 0.64, "sentiment": 0.69}
# The paper's numbers stand only beside its label sets, however they were made (--taxonomy, or prepare_data.py
# from names); anyone else's labels get the same tables without them.
PAPER_LABELS = {"original": set(PAPER_F1),
                "ekman": {"anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"},
                "sentiment": {"positive", "negative", "ambiguous", "neutral"}}


def paper_taxonomy(labels: list[str]) -> str | None:
    """Which of the paper's label sets these are (its Table 4 applies), or None for anyone else's labels."""
    return next((k for k, names in PAPER_LABELS.items() if set(labels) == names), None)


# ------------------------------------------------------------------------- labels and taxonomies

LABELS_FILE = "emotions.txt"
TAXONOMY_FILES = {"ekman": "ekman_mapping.json", "sentiment": "sentiment_dict.json"}


# What a label name may be, for every file that holds one: a line of emotions.txt, a cell of predictions.tsv joined
# with the others by commas, a column of predict.py's output (a CSV that a spreadsheet opens), a key of
# goemotions.json. No comma; no tab, line break or other control character (Unicode's Cc, Zl and Zp: everything
# str.splitlines splits on among them); not starting with = or @, which a spreadsheet takes for a formula; valid
# Unicode. Two names equal under NFC are one label written two ways (prepare_data.py writes NFC).
LABEL_FORMULA_STARTS = ("=", "@")


def label_name_problem(name: str) -> str:
    """Why `name` cannot be a label (the rule above), or ''."""
    if not name.strip():
        return "blank label name"
    control = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if control is not None:
        return (f"label name {name!r} holds U+{ord(control):04X}, a tab, line break or other control character "
                f"(label names are lines and cells)")
    if unicode_problem(name):
        return f"label name {name!r}: {unicode_problem(name)}"
    if "," in name:
        return f"label name {name!r} holds a comma (label names are joined by commas)"
    if name.startswith(LABEL_FORMULA_STARTS):
        return (f"label name {name!r} starts with {name[0]!r}: a spreadsheet opening predict.py's CSV would run "
                f"that column's name as a formula")
    return ""


def read_labels(path: str | Path) -> list[str]:
    """emotions.txt: one name a line, spaces around a name dropped; a name against the rule above, or repeated
    (also in another Unicode normalization form), is an error."""
    path = Path(path)
    names: list[str] = []
    first_line: dict[str, int] = {}  # by NFC form
    for i, line in enumerate(read_lines(path, "labels file"), 1):
        name = line.strip()
        if label_name_problem(name):
            raise UserError(f"{path}:{i}: {label_name_problem(name)}")
        j = first_line.setdefault(unicodedata.normalize("NFC", name), i)
        if j != i:
            raise UserError(f"{path}:{i}: {repeated(name, names[j - 1], j)}")
        names.append(name)
    if not names:
        raise UserError(f"{path}: no labels")
    return names


def check_label_names(labels: list[str], path: Path) -> None:
    """The label names a JSON file lists (a model's settings, a run's metrics), by the rule above."""
    bad = next((n for n in labels if label_name_problem(n)), None)
    if bad is not None:
        raise UserError(f"{path}: {label_name_problem(bad)}")


def repeated(name: str, first: str, line: int) -> str:
    if name == first:
        return f"label {name!r} repeats line {line}"
    return (f"label {name!r} repeats line {line}'s {first!r} in another Unicode normalization form (NFC and NFD): "
            f"one label written two ways")


def labels_text(labels: list[str]) -> str:
    return "\n".join(labels)  # no final newline, as GoEmotions' emotions.txt


def taxonomy_mapping(labels: list[str], taxonomy: str, folder: str | Path) -> tuple[list[str], list[int]]:
    """The group names (neutral last, its own group), and for each label the index of its group."""
    if taxonomy == "original":
        return labels, list(range(len(labels)))
    path = Path(folder) / TAXONOMY_FILES[taxonomy]
    groups = read_json(path, f"the {taxonomy} mapping")
    if not isinstance(groups, dict) or not all(isinstance(m, list) and all(isinstance(x, str) for x in m)
                                               for m in groups.values()):
        raise UserError(f"{path}: not a {taxonomy} mapping ({{group: [label, ...]}})")
    names = [*groups, "neutral"]
    group_of = {"neutral": len(groups)}
    for g, members in enumerate(groups.values()):
        group_of.update({m: g for m in members})
    missing = [name for name in labels if name not in group_of]
    if missing:
        raise UserError(f"{path}: no {taxonomy} group for label(s) {', '.join(missing)}")
    return names, [group_of[name] for name in labels]


def multi_hot(label_ids: list[tuple[int, ...]], num_labels: int, mapping: list[int] | None = None) -> np.ndarray:
    """Examples x labels, 0/1 float32; `mapping` takes each label id to its group's (a taxonomy)."""
    y = np.zeros((len(label_ids), num_labels), dtype=np.float32)
    for i, ids in enumerate(label_ids):
        y[i, [mapping[j] if mapping else j for j in ids]] = 1.0
    return y


# ------------------------------------------------------------------------------------------ splits

SPLITS = ("train", "dev", "test")
SPLIT_COLUMNS = ["text", "labels", "id"]
SPLIT_WIDTH = "tab-separated columns (text, labels, id)"
LABEL_ID = re.compile(r"[0-9]+")


def split_path(folder: str | Path, split: str) -> Path:
    """Where a data folder holds one of SPLITS: FOLDER/SPLIT.tsv."""
    if split not in SPLITS:
        raise ValueError(f"no split {split!r}: the splits are {', '.join(SPLITS)}")
    return Path(folder) / f"{split}.tsv"


def folder_files(folder: str | Path) -> list[Path]:
    """A data folder's splits in SPLITS' order, then its labels file: bert_model.py's first four arguments."""
    return [*(split_path(folder, s) for s in SPLITS), Path(folder) / LABELS_FILE]


@dataclass
class Split:
    texts: list[str]
    labels: list[tuple[int, ...]]  # label ids, indexes into the labels file
    ids: list[str]


def split_row(cells: list[str], num_labels: int) -> tuple[str, tuple[int, ...], str]:
    """One row of a split, its three cells as read_table(..., "goemotions") gives them (which counts them): (text,
    label ids, id), or ValueError with the problem."""
    text, field, example_id = cells
    if any(unicode_problem(c) for c in cells):
        raise ValueError(next(unicode_problem(c) for c in cells if unicode_problem(c)))
    if not text.strip():
        raise ValueError("empty text")
    if not example_id.strip():
        raise ValueError("empty id")
    if any(c in example_id for c in "\t\r\n"):  # predictions.tsv writes the id as it is, in a cell of a line
        raise ValueError(f"id {example_id!r} holds a tab or a line break")
    ids: list[int] = []
    for token in field.split(",") if field else []:  # an empty field: a text with no label
        if not LABEL_ID.fullmatch(token):
            raise ValueError(f"label id {token!r} is not a non-negative integer (labels field {field!r})")
        if int(token) >= num_labels:
            raise ValueError(f"label id {int(token)} out of range 0-{num_labels - 1} (the labels file has "
                             f"{num_labels} labels)")
        if int(token) in ids:
            raise ValueError(f"label id {int(token)} given twice")
        ids.append(int(token))
    return text, tuple(ids), example_id


def read_split(path: str | Path, num_labels: int) -> Split:
    """A whole split, checked: every row as split_row wants it, ids unique, at least one example."""
    from multilabel.tables import read_table  # here: tables.py builds on this module

    path = Path(path)
    split, first_line = Split([], [], []), {}
    for record in read_table(path, "goemotions").rows:
        try:
            if record.error:
                raise ValueError(record.error)
            text, labels, example_id = split_row(record.cells, num_labels)
        except ValueError as e:
            raise UserError(f"{path}:{record.line}: {e}") from None
        if example_id in first_line:
            raise UserError(f"{path}:{record.line}: duplicate id {example_id!r} (first at "
                            f"{path}:{first_line[example_id]})")
        first_line[example_id] = record.line
        split.texts.append(text)
        split.labels.append(labels)
        split.ids.append(example_id)
    if not split.texts:
        raise UserError(f"{path}: no examples")
    return split


def split_text(texts: list[str], labels: list[tuple[int, ...]] | np.ndarray, ids: list[str]) -> str:
    """A split as written: CSV quoting where a text needs it, label ids joined by commas."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    for text, ids_here, example_id in zip(texts, labels, ids, strict=True):
        writer.writerow([text, ",".join(map(str, ids_here)), example_id])
    return out.getvalue()


# ------------------------------------------------------------------------------------------ dataset.json

DATASET_FILE = "dataset.json"


def read_dataset(folder: str | Path) -> dict | None:
    """prepare_data.py's dataset.json in `folder`, checked for what the scripts read of it; None where there is
    none (GoEmotions as downloaded)."""
    path = Path(folder) / DATASET_FILE
    if not path.exists():
        return None
    info = read_json(path, "a prepare_data.py dataset.json")
    try:
        valid = (isinstance(info["name"], str) and isinstance(info["labels"], list) and isinstance(info["files"], dict)
                 and all(isinstance(s["path"], str) and isinstance(s["sha256"], str) for s in info["sources"]))
    except (KeyError, TypeError):
        valid = False
    if not valid:
        raise UserError(f"{path}: not a prepare_data.py dataset.json (no valid name, sources, labels and files)")
    return info


# ------------------------------------------------------------------------------------------ the run folder

MODEL_SETTINGS = "goemotions.json"  # in a saved model folder: labels, thresholds, max_length, args, metrics
MODEL_CONFIGS = ("config.json", "tokenizer_config.json")  # where a model can name code of its own (auto_map)


def check_no_model_code(model: str | Path, revision: str | None = None) -> None:
    """Refuse a model (a folder, or a name in the Hugging Face cache) whose config names Python code of its own
    (auto_map): transformers would import it from the folder, or ask on standard input whether to. This project
    never runs a model's own code: every from_pretrained here says trust_remote_code=False (which refuses it too,
    in transformers' words), and this says why, in one line, before anything is loaded."""
    for name in MODEL_CONFIGS:
        path = model_file(model, name, revision)
        try:
            config = json.loads(path.read_text(encoding="utf-8-sig")) if path else None
        except (OSError, ValueError):
            continue  # loading says what is wrong with it
        if isinstance(config, dict) and "auto_map" in config:
            where = "folder" if Path(model).is_dir() else "model's repository"
            raise UserError(f"{model}: its {name} asks to run code from the {where} (auto_map); this project never "
                            f"runs a model's own code")


def model_file(model: str | Path, name: str, revision: str | None = None) -> Path | None:
    """A file of a model folder, or of a hub model in the Hugging Face cache; None where there is none."""
    if Path(model).is_dir():
        return Path(model) / name
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(str(model), name, revision=revision)
    except Exception:  # not a valid hub name: loading says so
        return None
    return Path(found) if isinstance(found, str) else None


def checkpoint_path(save_fp: Path) -> Path:
    return save_fp.with_name(save_fp.name + ".checkpoint.pt")


def requeue_marker(save_fp: Path) -> Path:
    """Left by a run stopped on a signal (torchrun hides the exit code 99 that says so)."""
    return save_fp.with_name(save_fp.name + ".requeue")


def progress_path(save_fp: Path) -> Path:
    """SAVE_FP.dev.jsonl: a line per dev evaluation during training (after each epoch, and every --dev-every steps),
    appended as the run goes, for whoever watches it (tune.py prunes trials on it)."""
    return save_fp.with_name(save_fp.name + ".dev.jsonl")


def append_progress(path: Path, record: dict) -> None:
    """One JSON line (epoch, step, global_step, examples, dev_macro_f1, seconds), flushed to disk."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_progress(path: Path) -> list[dict]:
    """The dev evaluations so far, by global step (a resumed run's repeat of a step replaces it); a line cut short by
    a kill, or a missing file, is not there yet."""
    found: dict[int, dict] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            record = json.loads(line)
            found[int(record["global_step"])] = record
        except (ValueError, KeyError, TypeError):
            continue
    return [found[k] for k in sorted(found)]


def read_model_settings(folder: str | Path) -> dict | None:
    """A saved model's goemotions.json, checked; None for a folder without one (a model not saved here)."""
    path = Path(folder) / MODEL_SETTINGS
    if not path.exists():
        return None
    info = read_json(path, "the model's settings")
    labels = info.get("labels") if isinstance(info, dict) else None
    if not isinstance(labels, list) or not labels or not all(isinstance(n, str) for n in labels):
        raise UserError(f"{path}: no list of label names ('labels')")
    check_label_names(labels, path)
    if not isinstance(info.get("threshold", 0.3), int | float) or not isinstance(info.get("max_length", 512), int):
        raise UserError(f"{path}: 'threshold' is not a number or 'max_length' not an integer")
    tuned = info.get("thresholds")
    if tuned is not None and (not isinstance(tuned, dict) or set(tuned) != set(labels)
                              or not all(isinstance(v, int | float) for v in tuned.values())):
        missing = sorted(set(labels) - set(tuned)) if isinstance(tuned, dict) else []
        raise UserError(f"{path}: 'thresholds' has no number for every label"
                        + (f" (none for {', '.join(missing[:5])})" if missing else ""))
    return info


# bert_model.py's options that cannot change a result: where files are read from (their content is checked by
# SHA-256) and written to, logging, checkpoint timing, and --resume itself. Every other option can: --resume
# refuses to continue a checkpoint under a change to any of them, and compare_runs.py averages only runs that are
# equal in all of them but the seed. An option added later is therefore a setting, safe by default.
NO_RESULT = frozenset({"train", "dev", "test", "labels", "save_fp", "metrics_file", "predictions_file",
                       "plot_file", "resume", "log_every", "checkpoint_every", "checkpoint_minutes", "dev_every"})


def result_options(args: dict) -> dict:
    """The options of a run that can change its result (the seed among them)."""
    return {k: v for k, v in args.items() if k not in NO_RESULT}


METRICS_KEYS = ("labels", "taxonomy", "threshold", "best_epoch", "test", "test_tuned", "history", "args")


def read_metrics(path: Path) -> dict:
    """A metrics.json of bert_model.py, checked for what compare_runs.py reads."""
    metrics = read_json(path, "a bert_model.py metrics file")
    if not isinstance(metrics, dict) or any(k not in metrics for k in METRICS_KEYS):
        missing = next((k for k in METRICS_KEYS if k not in metrics), "") if isinstance(metrics, dict) else ""
        what = f"no {missing!r}" if missing else "not a JSON object"
        raise UserError(f"{path}: not a bert_model.py metrics file ({what})")
    labels, args = metrics["labels"], metrics["args"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise UserError(f"{path}: 'labels' is not a list of label names")
    check_label_names(labels, path)
    if metrics["taxonomy"] not in PAPER_MACRO_F1:
        raise UserError(f"{path}: unknown taxonomy {metrics['taxonomy']!r}")
    if not isinstance(metrics["threshold"], int | float) or not isinstance(metrics["history"], list):
        raise UserError(f"{path}: 'threshold' is not a number or 'history' not a list")
    if not isinstance(args, dict) or "seed" not in args:
        raise UserError(f"{path}: 'args' has no seed")
    for split in ("test", "test_tuned"):
        part = metrics[split]
        if not isinstance(part, dict) or not isinstance(part.get("per_label"), dict):
            raise UserError(f"{path}: not a bert_model.py metrics file (no '{split}.per_label')")
        for name in labels:
            entry = part["per_label"].get(name)
            if not isinstance(entry, dict) or not isinstance(entry.get("f1"), int | float) or "support" not in entry:
                raise UserError(f"{path}: '{split}.per_label' has no F1 and support for label '{name}'")
        for avg in ("macro", "micro"):
            if not isinstance(part.get(avg), dict) or not isinstance(part[avg].get("f1"), int | float):
                raise UserError(f"{path}: '{split}' has no {avg} F1")
    return metrics


def predictions_text(ids: list[str], y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float,
                     labels: list[str]) -> str:
    """predictions.tsv: id, gold and predicted label names (comma-joined), a score column per label (6 decimals)."""
    pred = decide(probs, thresholds)
    lines = ["\t".join(["id", "gold", "predicted", *labels])]
    for i, example_id in enumerate(ids):
        gold = ",".join(labels[j] for j in np.flatnonzero(y_true[i]))
        predicted = ",".join(labels[j] for j in np.flatnonzero(pred[i]))
        lines.append("\t".join([example_id, gold, predicted, *(f"{p:.6f}" for p in probs[i])]))
    return "\n".join(lines) + "\n"


@dataclass
class Predictions:
    ids: list[str]
    gold: np.ndarray  # examples x labels, bool
    scores: np.ndarray  # examples x labels, as written (6 decimals)
    predicted: list[set[int]]  # the file's own decisions, at the run's threshold


def read_predictions(path: Path, labels: list[str]) -> Predictions:
    """predictions.tsv of bert_model.py, checked against the run's labels."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # lines end in \n only: an id may hold U+2028
        lines = [line.removesuffix("\r") for line in lines[:-1 if lines[-1] == "" else None]]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    header = ["id", "gold", "predicted", *labels]
    if not lines or lines[0].split("\t") != header:
        raise UserError(f"{path}:1: header is not 'id, gold, predicted' and the run's {len(labels)} labels")
    index = {name: j for j, name in enumerate(labels)}

    def columns(line: int, names: str) -> list[int]:
        unknown = [n for n in names.split(",") if n and n not in index]
        if unknown:
            raise UserError(f"{path}:{line}: unknown label {unknown[0]!r}")
        return [index[n] for n in names.split(",") if n]

    out = Predictions([], np.zeros((len(lines) - 1, len(labels)), bool), np.zeros((len(lines) - 1, len(labels))), [])
    for i, line in enumerate(lines[1:]):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise UserError(f"{path}:{i + 2}: expected {len(header)} tab-separated columns, found {len(cells)}")
        try:
            out.scores[i] = [float(c) for c in cells[3:]]
        except ValueError:
            raise UserError(f"{path}:{i + 2}: a score is not a number") from None
        out.gold[i, columns(i + 2, cells[1])] = True
        out.predicted.append(set(columns(i + 2, cells[2])))
        out.ids.append(cells[0])
    if not out.ids:
        raise UserError(f"{path}: no predictions (header only)")
    if len(set(out.ids)) != len(out.ids):
        raise UserError(f"{path}: the same example id appears twice")
    return out
