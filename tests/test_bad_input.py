"""The promise about bad input, as properties over generated files (Hypothesis): whatever bytes, encodings, line
endings, quoting, sizes and structure a file has, every reader either reads it or says what is wrong in one line
naming the file (and the line, where there is one), writes nothing and changes nothing; and a corpus is labelled
row for row, the bad rows carrying their reason.

Bounded for the ordinary suite (about a minute in all); HYPOTHESIS_PROFILE=long runs many more examples. A failing
example that Hypothesis finds is added below as an @example, so that it stays a regression case.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import data_analysis
import predict
from multilabel import corpus, files
from multilabel.checkpoint import StopSignals
from multilabel.files import UserError

settings.register_profile("default", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The pieces files are made of: text, the separators of every format, quoting, line endings, a byte-order mark,
# bytes that are not UTF-8, JSON escapes of lone surrogates, numbers that look like label ids, long runs.
PIECES = st.sampled_from([b"joy", b"a text", b" ", b"\t", b",", b'"', b'""', b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf",
                          b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\\ud800", b"0", b"1,2", b"27", b"-1", b"{", b"}",
                          b"[", b"]", b":", b'"text"', b"x" * 200, "é".encode(), "😀".encode(), b"\x00"])
CONTENT = st.lists(PIECES, max_size=60).map(b"".join)


def one_line(error: UserError, path: Path) -> None:
    """A UserError as the scripts print it: one line, naming the file first (and a line within the file, if any)."""
    message = str(error)
    assert "\n" not in message and message.startswith(str(path)), message
    line = re.match(re.escape(str(path)) + r":(\d+):", message)
    if line:
        assert 1 <= int(line[1]) <= max(1, path.read_bytes().count(b"\n") + 1), message


@given(content=CONTENT, labels=st.integers(1, 30))
@example(content=b"a\t1,1\tx\n", labels=28)  # a label id twice: once read by one script, refused by another
@example(content=b'"quoted"then\t0\tx\n', labels=28)  # bad quoting
@example(content=b"\xef\xbb\xbfa\t0\tx\n", labels=28)  # a byte-order mark is not text
def test_a_split_is_read_or_refused_in_one_line(tmp_path: Path, content: bytes, labels: int) -> None:
    path = tmp_path / "train.tsv"
    path.write_bytes(content)
    try:
        split = files.read_split(path, labels)
    except UserError as e:
        one_line(e, path)
        return
    assert len(split.texts) == len(split.labels) == len(split.ids) == len(set(split.ids)) > 0
    assert all(t.strip() and not files.unicode_problem(t) and not t.startswith("\ufeff") for t in split.texts)
    assert all(0 <= i < labels for ids in split.labels for i in ids)
    # written back and read again: the same split
    path.write_text(files.split_text(split.texts, split.labels, split.ids), encoding="utf-8", newline="")
    again = files.read_split(path, labels)
    assert (again.texts, again.labels, again.ids) == (split.texts, split.labels, split.ids)


@given(content=CONTENT)
def test_a_labels_file_is_read_or_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "emotions.txt"
    path.write_bytes(content)
    try:
        labels = files.read_labels(path)
    except UserError as e:
        one_line(e, path)
        return
    assert labels and len(set(labels)) == len(labels)
    assert all(n == n.strip() and not files.label_name_problem(n) for n in labels)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=8)
SETTINGS_KEYS = st.sampled_from(["name", "sources", "labels", "files", "threshold", "thresholds", "max_length"])


@given(content=st.one_of(CONTENT, st.dictionaries(SETTINGS_KEYS, JSON_VALUES, max_size=6).map(
    lambda d: json.dumps(d).encode())))
def test_dataset_json_and_a_models_settings_are_read_or_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    for name, read in ((files.DATASET_FILE, files.read_dataset), (files.MODEL_SETTINGS, files.read_model_settings)):
        path = tmp_path / name
        path.write_bytes(content)
        try:
            info = read(tmp_path)
        except UserError as e:
            one_line(e, path)
            continue
        assert isinstance(info, dict) and isinstance(info["labels"], list)


@given(content=CONTENT)
def test_data_analysis_writes_nothing_on_bad_input(tmp_path: Path, content: bytes, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "emotions.txt").write_text("joy\nanger\nneutral")
    for split in ("dev", "test"):
        (data / f"{split}.tsv").write_text(f"fine\t0\t{split}1\n")
    (data / "train.tsv").write_bytes(content)
    out = tmp_path / "stats.txt"
    out.unlink(missing_ok=True)
    code = data_analysis.main([str(data), "--output", str(out)])
    err = capsys.readouterr().err
    if code == 0:
        assert out.exists()
    else:
        assert code == 1 and err.count("\n") == 1 and err.startswith(f"data_analysis.py: error: {data / 'train.tsv'}")
        assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


FORMATS = {"lines": ".txt", "goemotions": ".tsv", "csv": ".csv", "jsonl": ".jsonl"}


@given(fmt=st.sampled_from(list(FORMATS)), content=CONTENT)
@example(fmt="lines", content=b"a\rb\n")  # a bare CR inside a line
@example(fmt="jsonl", content=b'{"text": "a \\ud800 b"}\n')  # an escaped lone surrogate
@example(fmt="lines", content=b"\xef\xbb\xbf")  # only a byte-order mark: no line
@example(fmt="jsonl", content=b'{"text": "a"}\n{"text": "b \x00"}\n')  # a NUL byte: not a UTF-8 text file
def test_a_corpus_gives_a_row_for_every_row_and_a_reason_for_every_bad_one(tmp_path: Path, fmt: str,
                                                                          content: bytes) -> None:
    path = tmp_path / f"corpus{FORMATS[fmt]}"
    path.write_bytes((b"text,id\n" if fmt == "csv" else b"") + content)
    try:
        rows = list(corpus.read_rows(str(path), "auto"))
    except UserError as e:  # only a header, or a file that is not UTF-8 text (NUL bytes), is refused; rows are carried
        assert fmt == "csv" or b"\x00" in content, e
        one_line(e, path)
        return
    assert b"\x00" not in content
    assert [r.line for r in rows] == sorted({r.line for r in rows})  # one row each, in order
    assert all((r.error != "") != (r.text != "") for r in rows)  # scored with a text, or a reason and none
    assert all(not files.unicode_problem(r.text + r.id) for r in rows)  # every row can be written out
    if fmt in ("lines", "jsonl"):  # a row per line: a CR inside a line is text
        lines = content.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # a byte-order mark is not a line
        assert len(rows) == len(lines) - (lines[-1] == b"")


@pytest.fixture(scope="module")
def scorer(tiny_bert: Path, goemotions_dir: Path, tmp_path_factory) -> Path:
    """A tiny random classifier with the settings bert_model.py saves."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    labels = files.read_labels(goemotions_dir / "emotions.txt")
    out = tmp_path_factory.mktemp("scorer")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, trust_remote_code=False,
                                                               num_labels=len(labels))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert, trust_remote_code=False).save_pretrained(out)
    (out / files.MODEL_SETTINGS).write_text(json.dumps({"labels": labels, "threshold": 0.3, "max_length": 32}))
    return out


@settings(max_examples=max(5, settings().max_examples // 8))
@given(fmt=st.sampled_from(list(FORMATS)), content=CONTENT)
def test_predict_labels_every_row_of_any_corpus(tmp_path: Path, scorer: Path, fmt: str, content: bytes,
                                                capsys) -> None:
    path = tmp_path / f"corpus{FORMATS[fmt]}"
    path.write_bytes((b"text,id\n" if fmt == "csv" else b"") + content)
    out = tmp_path / "labels.jsonl"
    out.unlink(missing_ok=True)
    handlers = {s: signal.getsignal(s) for s in StopSignals.SIGNALS}
    try:
        code = predict.main([str(scorer), "--input", str(path), "--output", str(out), "--chunk-size", "3"])
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    if b"\x00" in content:  # not UTF-8 text: the whole file refused, in one line, nothing written
        assert code == 1 and capsys.readouterr().err.count("\n") == 1 and not out.exists()
        return
    capsys.readouterr()
    rows = list(corpus.read_rows(str(path), "auto"))
    assert code == 0
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["line"] for g in got] == [r.line for r in rows] and [g["error"] for g in got] == [r.error for r in rows]
    assert all(bool(g["scores"]) != bool(g["error"]) for g in got)
