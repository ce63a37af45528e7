"""multilabel/files.py, the one reader and writer of every shared file: the splits, the labels file, the
taxonomies, atomic writes; and one table of bad files fed to every script that reads them, each giving the same
verdict."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, write_slice

import bert_model
import data_analysis
import prepare_data
from multilabel import corpus, files
from multilabel.checkpoint import StopSignals
from multilabel.files import UserError

LABELS = ["admiration", "amusement", "anger", "fear", "nervousness", "realization", "neutral"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# ------------------------------------------------------------------------------------------ the splits


def test_a_split_keeps_the_authors_quoting_and_spaces(tmp_path: Path) -> None:
    f = write(tmp_path / "x.tsv", '"Pretty sure you don\'t know what ""hurt"" means"\t27\ted2a8al\n'
                                  "trailing space \t0,4\tabc\n")
    split = files.read_split(f, 28)
    assert split.texts == ['Pretty sure you don\'t know what "hurt" means', "trailing space "]
    assert split.labels == [(27,), (0, 4)] and split.ids == ["ed2a8al", "abc"]
    assert files.split_text(split.texts, split.labels, split.ids) == f.read_text()  # written back byte for byte


def test_the_real_splits_read_completely(goemotions_dir: Path) -> None:
    labels = files.read_labels(goemotions_dir / "emotions.txt")
    assert len(labels) == 28 and labels[-1] == "neutral"
    sizes = {s: len(files.read_split(goemotions_dir / f"{s}.tsv", 28).texts) for s in files.SPLITS}
    assert sizes == {"train": 43410, "dev": 5426, "test": 5427}


def test_a_text_over_128_kib_is_a_text(tmp_path: Path) -> None:
    """The csv module's field limit is 128 KiB; prepare_data.py writes longer texts, so every reader reads them."""
    long = "word " * 40_000
    f = write(tmp_path / "x.tsv", files.split_text([long, "short"], [(1,), ()], ["a", "b"]))
    assert files.read_split(f, 28).texts == [long, "short"]
    assert corpus.read_texts(f)[0] == [long, "short"]


# ------------------------------------------------------------------------------------ labels, taxonomies


def test_labels_are_stripped_and_a_blank_or_repeated_one_is_an_error(tmp_path: Path) -> None:
    assert files.read_labels(write(tmp_path / "e.txt", " joy\r\nanger \r\n")) == ["joy", "anger"]
    for text, message in (("a\n\nb", "e.txt:2: blank label name"), ("a\nb\na", "e.txt:3: label 'a' repeats line 1"),
                          ("a,b\n", "e.txt:1: label name 'a,b' holds a comma"), ("", "e.txt: no labels")):
        with pytest.raises(UserError, match=message):
            files.read_labels(write(tmp_path / "e.txt", text))


def test_ekman_and_sentiment_mapping_on_hand_made_data(goemotions_dir: Path, tmp_path: Path) -> None:
    for name in ("ekman_mapping.json", "sentiment_dict.json"):
        (tmp_path / name).write_bytes((goemotions_dir / name).read_bytes())
    # admiration+amusement -> joy once; fear+nervousness -> fear; realization -> surprise; neutral stays
    examples = [(0, 1), (3, 4), (5,), (6,), (2, 6)]
    names, mapping = files.taxonomy_mapping(LABELS, "ekman", tmp_path)
    assert names == ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    got = [[names[j] for j in np.flatnonzero(row)] for row in files.multi_hot(examples, len(names), mapping)]
    assert got == [["joy"], ["fear"], ["surprise"], ["neutral"], ["anger", "neutral"]]
    names, mapping = files.taxonomy_mapping(LABELS, "sentiment", tmp_path)
    assert names == ["positive", "negative", "ambiguous", "neutral"]
    got = [[names[j] for j in np.flatnonzero(row)] for row in files.multi_hot(examples, len(names), mapping)]
    assert got == [["positive"], ["negative"], ["ambiguous"], ["neutral"], ["negative", "neutral"]]


def test_a_taxonomy_with_an_unmapped_label_or_a_broken_file_is_one_line(goemotions_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "ekman_mapping.json").write_bytes((goemotions_dir / "ekman_mapping.json").read_bytes())
    with pytest.raises(UserError, match="no ekman group for label.*schadenfreude"):
        files.taxonomy_mapping(["joy", "schadenfreude"], "ekman", tmp_path)
    write(tmp_path / "ekman_mapping.json", '{"joy": ["joy"],\n "x": ')
    with pytest.raises(UserError, match=r"ekman_mapping.json:2: not valid JSON"):
        files.taxonomy_mapping(["joy"], "ekman", tmp_path)


# ------------------------------------------------------------------------------------------ writing


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = write(tmp_path / "out.txt", "old")

    def half(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with pytest.raises(KeyboardInterrupt), files.atomic_folder(tmp_path / "folder") as tmp:
        (tmp / "a").write_text("a")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_stale_temporary_files_of_one_name_only_are_removed(tmp_path: Path) -> None:
    """Sweep tasks model-task1 and model-task11 share a folder: task 1 restarting must not touch task 11's files."""
    for name in (".model-task1.tmp-12", ".model-task1.checkpoint.pt.tmp-13", ".model-task11.tmp-14",
                 ".model-task11.checkpoint.pt.tmp-15", "model-task1.checkpoint.pt", ".model-task1.old-16"):
        write(tmp_path / name, "x")
    files.remove_stale_temps(tmp_path / "model-task1")
    files.remove_stale_temps(tmp_path / "model-task1.checkpoint.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model-task11.checkpoint.pt.tmp-15",
                                                          ".model-task11.tmp-14", "model-task1.checkpoint.pt"]


# ------------------------------------------------------------- one table of bad files, every script

SPLIT_CASES = {  # name: (train.tsv's content, the problem (FILE:LINE: ...) or None where the file is fine)
    "duplicate id": ("a\t0\tx1\nb\t1\tx2\nc\t2\tx1\n", "train.tsv:3: duplicate id 'x1' (first at"),
    "duplicate label id": ("a\t0\tx1\nb\t1,1\tx2\n", "train.tsv:2: label id 1 given twice"),
    "label out of range": ("a\t0\tx1\nb\t7\tx2\n", "train.tsv:2: label id 7 out of range 0-6 (the labels file has 7"),
    "empty text": ("a\t0\tx1\n  \t1\tx2\n", "train.tsv:2: empty text"),
    "wrong column count": ("a\t0\tx1\nb\t1\n", "train.tsv:2: expected 3 tab-separated columns (text, labels, id), "
                                               "found 2"),
    "bad UTF-8": ("a\t0\tx1\nb \udcff\t1\tx2\n", "train.tsv:2: not valid UTF-8"),
    "an empty file": ("", "train.tsv: no examples"),
    "a byte-order mark": ("\ufeffa\t0\tx1\nb\t1\tx2\n", None),
}
LABEL_CASES = {  # name: (emotions.txt's content, the problem or None)
    "a blank label name": ("admiration\n\namusement\n", "emotions.txt:2: blank label name"),
    "a padded label name": ("admiration\n amusement \nanger\nfear\nnervousness\nrealization\nneutral", None),
}
TRAIN_FINE = "first\t0\tx1\nsecond\t1\tx2\n"


def data_folder(tmp_path: Path, train: str, labels: str) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.tsv").write_bytes(train.encode("utf-8", errors="surrogateescape"))
    for split in ("dev", "test"):
        write(folder / f"{split}.tsv", TRAIN_FINE.replace("\tx", f"\t{split}"))
    write(folder / "emotions.txt", labels)
    return folder


def verdict(script: str, folder: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit status, the one error line without its SCRIPT: prefix, or the first text read)."""
    if script == "bert_model.py":
        handlers = {s: signal.getsignal(s) for s in StopSignals.SIGNALS}
        code = bert_model.main([*(str(folder / f) for f in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")),
                                str(folder.parent / "m"), "--transformer-model", str(tiny), "--epochs", "1",
                                "--precision", "fp32"])
        for s, handler in handlers.items():  # main() took the stop signals, as it must in a job
            signal.signal(s, handler)
        first = json.loads((folder.parent / "m" / files.MODEL_SETTINGS).read_text())["labels"] if code == 0 else None
    elif script == "data_analysis.py":
        code = data_analysis.main([str(folder), "--format", "json"])
        first = json.loads(capsys.readouterr().out)["labels"] if code == 0 else None
    else:
        code = prepare_data.main(["--train", str(folder / "train.tsv"), "--dev", str(folder / "dev.tsv"), "--test",
                                  str(folder / "test.tsv"), "--format", "goemotions", "--labels-file",
                                  str(folder / "emotions.txt"), str(folder.parent / "out")])
        first = files.read_labels(folder.parent / "out" / "emotions.txt") if code == 0 else None
    err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(err) == (code != 0), err
    return code, err[0].split(": error: ", 1)[1] if err else first


@pytest.mark.parametrize("script", ["bert_model.py", "data_analysis.py", "prepare_data.py"])
def test_every_reader_of_the_splits_gives_the_same_verdict(script: str, tiny_bert: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    for case, (train, problem) in {**SPLIT_CASES, **{k: (TRAIN_FINE, v) for k, (_, v) in LABEL_CASES.items()}}.items():
        labels = LABEL_CASES[case][0] if case in LABEL_CASES else "\n".join(LABELS)
        work = tmp_path / case.replace(" ", "-")
        work.mkdir()
        folder = data_folder(work, train, labels)
        code, said = verdict(script, folder, tiny_bert, capsys)
        if problem is None:
            assert code == 0 and said == LABELS, (case, said)
        else:
            assert code == 1 and said.startswith(str(folder / problem.split(":")[0])) and problem in said, \
                (case, said)
            assert sorted(p.name for p in work.iterdir()) == ["data"], case  # nothing written


def test_predict_reads_a_split_as_a_corpus_and_carries_each_bad_row_with_the_same_reason(tmp_path: Path) -> None:
    """predict.py labels what it is given: a row with a problem in what it reads (the text, the columns, the bytes)
    is an output row with the reason the other scripts give; label ids are not its business."""
    for case, (train, problem) in SPLIT_CASES.items():
        f = tmp_path / "x.tsv"
        f.write_bytes(train.encode("utf-8", errors="surrogateescape"))
        rows = list(corpus.read_rows(str(f), "auto"))
        reasons = {row.line: row.error for row in rows if row.error}
        if case in ("empty text", "wrong column count", "bad UTF-8"):
            assert reasons == {2: problem.split(":", 2)[2].strip()}, (case, reasons)
        else:
            assert not reasons and len(rows) == train.count("\n"), (case, rows)
        if case == "a byte-order mark":
            assert rows[0].text == "a"


def test_no_script_reads_a_shared_file_itself() -> None:
    """The splits are parsed, and files written atomically, by multilabel/files.py alone."""
    for script in ROOT.glob("*.py"):
        text = script.read_text()
        for needle in ("csv.reader(", ".tmp-", "secrets.token_hex"):
            assert needle not in text, f"{script.name} has {needle}"


def test_the_real_data_reads_the_same_in_every_script(goemotions_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = write_slice(goemotions_dir, tmp_path / "d", {"train": 300, "dev": 10, "test": 10})
    split = files.read_split(data / "train.tsv", 28)
    assert corpus.read_texts(data / "train.tsv") == (split.texts, split.ids)
    frame = data_analysis.read_split(data / "train.tsv", 28)
    assert frame["text"].tolist() == split.texts and frame["labels"].tolist() == split.labels
