"""prepare_data.py: every format and label encoding gives the same files; made splits; bad input; end to end.

The examples are a slice of the real GoEmotions data (tests/conftest.py), written here as a user would bring
them: CSV with 0/1 columns, JSONL and Parquet with label names, label ids with a labels file, ...
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_script, write_slice

import data_analysis
from multilabel import files

SCRIPT = "prepare_data.py"
OUT_FILES = ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")


def read_layout(data: Path) -> tuple[list[str], list[dict]]:
    """The GoEmotions layout as records: text, label names, id, split."""
    labels = (data / "emotions.txt").read_text(encoding="utf-8").split("\n")
    records = []
    for split in ("train", "dev", "test"):
        with open(data / f"{split}.tsv", encoding="utf-8", newline="") as f:
            for text, ids, example_id in csv.reader(f, delimiter="\t"):
                records.append({"text": text, "labels": [labels[int(i)] for i in ids.split(",") if i],
                                "id": example_id, "split": split})
    return labels, records


def prepare(*args: str | Path):
    return run_script(SCRIPT, *args)


def assert_same_files(out: Path, ref: Path) -> None:
    for name in OUT_FILES:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


@pytest.fixture
def slice_dir(goemotions_dir: Path, tmp_path: Path) -> Path:
    return write_slice(goemotions_dir, tmp_path / "ref", {"train": 120, "dev": 40, "test": 40})


# ------------------------------------------------------------------------ every format, every encoding


def write_inputs(ref: Path, tmp: Path) -> dict[str, list[str | Path]]:
    """The same examples in each format and label encoding -> the prepare_data.py arguments that read them."""
    labels, records = read_layout(ref)
    frame = pd.DataFrame(records)
    onehot = frame[["text", "id", "split"]].copy()
    for name in labels:
        onehot[name] = [int(name in r["labels"]) for r in records]
    onehot.to_csv(tmp / "onehot.csv", index=False)
    onehot.rename(columns={n: f"label_{n}" for n in labels}).to_parquet(tmp / "onehot.parquet")
    with open(tmp / "names.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    frame.to_parquet(tmp / "names.parquet")  # a list<string> column
    with_json = frame.assign(labels=[json.dumps(r["labels"]) for r in records])
    with_json.to_csv(tmp / "names_json.tsv", sep="\t", index=False)
    frame.assign(labels=["|".join(r["labels"]) for r in records]).to_csv(tmp / "names_pipe.csv", index=False)
    frame.assign(labels=[" ".join(str(labels.index(n)) for n in r["labels"]) for r in records]).to_csv(
        tmp / "ids.csv", index=False)
    split_files = {}
    for split in ("train", "dev", "test"):
        frame[frame.split == split].drop(columns="split").to_json(tmp / f"{split}.jsonl", orient="records",
                                                                   lines=True, force_ascii=False)
        split_files[split] = tmp / f"{split}.jsonl"
    lf = ref / "emotions.txt"
    common = ["--labels-file", lf, "--id-column", "id"]
    by_column = [*common, "--split-column", "split"]
    return {
        "goemotions layout": ["--format", "goemotions", "--labels-file", lf, "--train", ref / "train.tsv",
                              "--dev", ref / "dev.tsv", "--test", ref / "test.tsv"],
        "csv one-hot (pattern)": [tmp / "onehot.csv", *by_column, "--label-pattern", ".*"],
        "csv one-hot (named)": [tmp / "onehot.csv", *by_column, "--label-columns", *labels],
        "parquet one-hot": [tmp / "onehot.parquet", *by_column, "--label-pattern", "label_.*"],
        "jsonl names": [tmp / "names.jsonl", *by_column],
        "parquet names": [tmp / "names.parquet", *by_column],
        "tsv json lists": [tmp / "names_json.tsv", *by_column, "--label-column", "labels"],
        "csv names | joined": [tmp / "names_pipe.csv", *by_column, "--label-separator", "|"],
        "csv label ids": [tmp / "ids.csv", *by_column, "--label-ids", "--label-separator", " "],
        "jsonl split files": [*common, *(x for s, p in split_files.items() for x in (f"--{s}", p))],
    }


def test_every_format_and_label_encoding_gives_byte_identical_files(slice_dir: Path, tmp_path: Path) -> None:
    cases = write_inputs(slice_dir, tmp_path)
    for name, args in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '_')}"
        if name == "parquet one-hot":  # the column names carry a prefix the labels file does not
            continue
        # INPUT OUT_DIR first: an option of several values (--label-columns A B ...) would take OUT_DIR too
        r = prepare(args[0], out, *args[1:]) if isinstance(args[0], Path) else prepare(out, *args)
        assert r.returncode == 0, (name, r.stderr)
        assert_same_files(out, slice_dir)
        meta = json.loads((out / "dataset.json").read_text())
        assert meta["files"]["train.tsv"] == files.sha256(slice_dir / "train.tsv")
        assert meta["counts"]["dev"]["examples"] == 40 and len(meta["sources"]) in (1, 3)
    # Parquet one-hot with prefixed columns: the label names are the column names, sorted without a labels file
    out = tmp_path / "out-parquet"
    r = prepare(*[a for a in cases["parquet one-hot"] if a not in ("--labels-file", slice_dir / "emotions.txt")],
                out)
    assert r.returncode == 0, r.stderr
    labels = (out / "emotions.txt").read_text().split("\n")
    assert labels == sorted(f"label_{n}" for n in (slice_dir / "emotions.txt").read_text().split("\n"))
    ref_labels, ref = read_layout(slice_dir)
    _, got = read_layout(out)
    assert [(r["id"], r["split"], sorted(r["labels"])) for r in ref] == \
        [(g["id"], g["split"], sorted(n.removeprefix("label_") for n in g["labels"])) for g in got]


def test_texts_without_labels_and_several_text_columns(tmp_path: Path) -> None:
    rows = [{"title": f"title {i}", "body": f"body {i}", "tags": ["a"] if i % 3 == 0 else [], "split": s}
            for i, s in enumerate(["train"] * 6 + ["dev"] * 3 + ["test"] * 3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = prepare(tmp_path / "in.jsonl", tmp_path / "out", "--text-column", "title", "body", "--label-column",
                "tags", "--split-column", "split")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "out" / "train.tsv").read_text().splitlines()
    assert lines[0] == "title 0 body 0\t0\tin-1" and lines[1] == "title 1 body 1\t\tin-2"  # empty field: no label
    split = files.read_split(tmp_path / "out" / "train.tsv", 1)
    assert split.labels[:2] == [(0,), ()] and split.ids[1] == "in-2"
    y = files.multi_hot(split.labels, 1)
    assert y.tolist() == [[1.0], [0.0], [0.0], [1.0], [0.0], [0.0]]
    stats = data_analysis.analyse(tmp_path / "out")
    assert stats["name"] == "in" and stats["splits"]["train"]["labels_per_sample"].loc[0, "samples"] == 4
    assert "(no label)" in r.stdout


# ----------------------------------------------------------------------------------------- made splits


def test_made_split_puts_every_label_with_3_examples_in_every_split_and_is_seeded(slice_dir: Path,
                                                                                  tmp_path: Path) -> None:
    _, records = read_layout(slice_dir)
    records = records[:200]
    for i in (5, 50, 150):  # a label with exactly 3 examples, and one with a single example
        records[i]["labels"] = [*records[i]["labels"], "rare3"]
    records[7]["labels"] = [*records[7]["labels"], "once"]
    (tmp_path / "all.jsonl").write_text("".join(json.dumps({k: r[k] for k in ("text", "labels", "id")}) + "\n"
                                                for r in records))
    outs = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        outs[name] = tmp_path / name
        r = prepare(tmp_path / "all.jsonl", outs[name], "--id-column", "id", "--seed", seed)
        assert r.returncode == 0, r.stderr
    assert "warning: label 'once' has no example in" in r.stderr  # 1 example: a warning, by name
    assert_same_files(outs["a"], outs["b"])  # same seed, same split
    assert (outs["a"] / "train.tsv").read_bytes() != (outs["c"] / "train.tsv").read_bytes()
    for out in outs.values():
        labels, got = read_layout(out)
        assert sorted(g["id"] for g in got) == sorted(r["id"] for r in records)  # each example once
        per_split = {s: [g for g in got if g["split"] == s] for s in ("train", "dev", "test")}
        assert [len(per_split[s]) for s in per_split] == pytest.approx([160, 20, 20], abs=4)
        totals = {n: sum(n in r["labels"] for r in records) for n in labels}
        for name, total in totals.items():
            if total >= 3:
                for s, rows in per_split.items():
                    assert any(name in g["labels"] for g in rows), (name, total, s)
        meta = json.loads((out / "dataset.json").read_text())
        assert meta["split"]["seed"] in (7, 8) and meta["split"]["fractions"] == [0.8, 0.1, 0.1]
        assert meta["counts"]["test"]["labels"]["rare3"] == 1


def test_min_count_drops_rare_labels_and_says_so(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "labels": "common" + (",rare" if i == 0 else "")} for i in range(30)]
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    r = prepare(tmp_path / "in.csv", tmp_path / "out", "--min-count", "2")
    assert r.returncode == 0, r.stderr
    assert "dropped 1 label(s) with fewer examples: rare (1)" in r.stderr
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["labels"] == ["common"] and meta["dropped_labels"] == {"rare": 1}


# ------------------------------------------------------------------------------------------- OUT_DIR


def test_out_dir_same_dataset_is_kept_a_different_one_refused(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "labels": ["x"] if i % 2 else ["y"]} for i in range(20)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert prepare(tmp_path / "in.jsonl", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = prepare(tmp_path / "in.jsonl", out)
    assert again.returncode == 0 and "unchanged" in again.stderr
    other = prepare(tmp_path / "in.jsonl", out, "--seed", "1")
    assert other.returncode == 1 and "holds a different dataset" in other.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    busy = prepare(tmp_path / "in.jsonl", tmp_path / "busy")
    assert busy.returncode == 1 and "without dataset.json" in busy.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "in.jsonl", "out"]  # no temp folder left


# ------------------------------------------------------------------------------------------- bad input


BAD = {  # name: (file name, content, extra args, words in the one error line)
    "missing column": ("a.csv", "body,labels\nhello,x\n", [], ["a.csv: no column 'text'", "body, labels"]),
    "bad json row": ("a.jsonl", '{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": [\n', [],
                     ["a.jsonl:2: not JSON"]),
    "empty text": ("a.jsonl", '{"text": "a", "labels": ["x"]}\n{"text": "  ", "labels": ["x"]}\n', [],
                   ["a.jsonl:2: empty text"]),
    "unknown name": ("a.jsonl", '{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": ["zz"]}\n',
                     ["--labels-file", "LABELS"], ["a.jsonl:2: label 'zz' is not in the labels file"]),
    "id out of range": ("a.csv", "text,labels\na,0\nb,5\n", ["--label-ids", "--labels-file", "LABELS"],
                        ["a.csv:3: label id 5 out of range 0-1"]),
    "not 0/1": ("a.csv", "text,x,y\na,1,0\nb,2,0\n", ["--label-columns", "x", "y"],
                ["a.csv:3: column 'x' must hold 0 or 1, got '2'"]),
    "duplicate id": ("a.jsonl", '{"text": "a", "labels": [], "id": 1}\n{"text": "b", "labels": [], "id": 1}\n',
                     ["--id-column", "id"], ["a.jsonl:2: duplicate id '1' (first at", "a.jsonl:1)"]),
    "fractions": ("a.jsonl", '{"text": "a", "labels": ["x"]}\n', ["--split", "0.8", "0.1", "0.2"],
                  ["--split 0.8 0.1 0.2: the fractions add up to 1.1, not 1"]),
    "too small": ("a.jsonl", "".join(f'{{"text": "t{i}", "labels": ["x"]}}\n' for i in range(5)), [],
                  ["5 example(s) are too few to split"]),
    "bad split value": ("a.csv", "text,labels,s\na,x,train\nb,x,holdout\n", ["--split-column", "s"],
                        ["a.csv:3: split 'holdout'"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_writes_nothing(case: str, tmp_path: Path) -> None:
    name, content, extra, words = BAD[case]
    (tmp_path / name).write_text(content, encoding="utf-8")
    (tmp_path / "labels.txt").write_text("x\ny\n")
    extra = [str(tmp_path / "labels.txt") if a == "LABELS" else a for a in extra]
    r = prepare(tmp_path / name, tmp_path / "out", *extra)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prepare_data.py: error: "), r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "labels.txt"])  # nothing written


# ------------------------------------------------------------------------- end to end on other labels


@pytest.mark.slow
def test_prepare_train_predict_compare_on_labels_that_are_not_goemotions(goemotions_dir: Path, tiny_bert: Path,
                                                                         tmp_path: Path) -> None:
    """Ekman's groups renamed, neutral as no label at all: prepare, train two seeds, predict, compare."""
    _, records = read_layout(write_slice(goemotions_dir, tmp_path / "go", {"train": 300, "dev": 1,
                                                                                  "test": 1}))
    groups = json.loads((goemotions_dir / "ekman_mapping.json").read_text())
    rename = dict(zip(groups, ["cross", "yuck", "scared", "glad", "down", "wow"], strict=True))
    group_of = {m: rename[g] for g, members in groups.items() for m in members}
    with open(tmp_path / "mine.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["comment", "tags"])
        for r in records:
            writer.writerow([r["text"], ";".join(sorted({group_of[n] for n in r["labels"] if n != "neutral"}))])
    data = tmp_path / "data"
    r = prepare(tmp_path / "mine.csv", data, "--text-column", "comment", "--label-column", "tags",
                "--label-separator", ";", "--split", "0.6", "0.2", "0.2", "--name", "my-comments")
    assert r.returncode == 0, r.stderr
    assert data_analysis.main([str(data), "--output", str(tmp_path / "stats.txt")]) == 0
    runs = []
    for seed in ("1", "2"):
        out = tmp_path / f"run{seed}"
        t = run_script("bert_model.py", data / "train.tsv", data / "dev.tsv", data / "test.tsv",
                       data / "emotions.txt", out / "model", "--transformer-model", tiny_bert, "--epochs", "1",
                       "--batch-size", "16", "--learning-rate", "1e-3", "--precision", "fp32", "--seed", seed,
                       "--metrics-file", out / "metrics.json", "--predictions-file", out / "predictions.tsv")
        assert t.returncode == 0, t.stderr[-3000:]
        runs.append(out / "metrics.json")
    assert "paper" not in t.stdout.splitlines()[-1]  # the last line: test macro F1, no paper beside it
    metrics = json.loads(runs[0].read_text())
    assert metrics["labels"] == ["cross", "down", "glad", "scared", "wow", "yuck"]
    assert metrics["paper_macro_f1"] is None and metrics["paper_f1"] is None
    assert metrics["dataset"]["name"] == "my-comments" and str(tmp_path / "mine.csv") in metrics["dataset"]["sources"]
    gold_empty = [line.split("\t")[1] == "" for line in (tmp_path / "run1" / "predictions.tsv").read_text()
                  .splitlines()[1:]]
    assert any(gold_empty)  # texts with no label are scored and evaluated
    card = (tmp_path / "run1" / "model" / "README.md").read_text()
    assert "classification on my-comments" in card and "go_emotions" not in card and "paper" not in card
    assert files.sha256(tmp_path / "mine.csv") in card
    p = run_script("predict.py", tmp_path / "run1" / "model", "you are so kind, thanks", "--format", "jsonl")
    assert p.returncode == 0, p.stderr
    scores = json.loads(p.stdout.splitlines()[0])["scores"]
    assert sorted(scores) == metrics["labels"] and all(0 < v < 1 for v in scores.values())
    c = run_script("compare_runs.py", *runs, "--compare", runs[0], runs[1])
    assert c.returncode == 0, c.stderr
    assert "6 labels (cross, down, glad, scared, wow, ...)" in c.stdout and "Table 4" not in c.stdout
    assert "Paired bootstrap" in c.stdout
    assert np.isfinite(metrics["test"]["macro"]["f1"])


# ------------------------------------------------------------------------- issue 24: the promises kept


def test_bad_bytes_are_reported_at_their_own_line_far_into_a_file(tmp_path: Path) -> None:
    """The decoder reads ahead in blocks of 8 KB: the line must still be the bad byte's own."""
    lines = [b"text,labels\n"] + [b"a fairly long line of text number %d,x\n" % i for i in range(300)]
    lines[141 - 1] = b"bad \xff byte,x\n"
    (tmp_path / "a.csv").write_bytes(b"".join(lines))
    r = prepare(tmp_path / "a.csv", tmp_path / "out")
    assert r.returncode == 1
    assert r.stderr.strip() == f"prepare_data.py: error: {tmp_path / 'a.csv'}:141: not valid UTF-8"


def test_a_corrupt_dataset_json_in_out_dir_is_one_line_and_kept(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "labels": ["x"] if i % 2 else ["y"]} for i in range(20)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset.json").write_text('{"name": "half of a fi')
    r = prepare(tmp_path / "in.jsonl", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith(f"prepare_data.py: error: {out / 'dataset.json'}:1: not valid JSON"), r.stderr
    assert [p.name for p in out.iterdir()] == ["dataset.json"]


def test_a_full_disk_is_one_line_naming_out_dir_and_leaves_nothing(tmp_path: Path, small_disk) -> None:
    disk = small_disk(1)
    rows = [{"text": "x" * 300 + str(i), "labels": ["x"] if i % 2 else ["y"]} for i in range(6000)]  # ~2 MiB
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = prepare(tmp_path / "in.jsonl", disk / "out")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines[-1].startswith(f"prepare_data.py: error: {disk}: no room for the prepared "
                                                      "data"), r.stderr
    assert list(disk.iterdir()) == []
