"""Long texts (issue 25): how long the texts are, --max-length auto, and texts read in windows whose logits are pooled,
in training and in predict.py alike."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, make_tiny_bert, run_script, start, stop_after_a_chunk, stop_when, train_args, write_slice

from multilabel import encoder, files, lengths

FILLER = ("the cat sat on a mat while some people walked by the river and talked about the weather in town "
          "during a long afternoon").split()


def planted_data(folder: Path, n: dict[str, int], at: int, length: int, seed: int = 0, block: int = 1) -> Path:
    """Documents of `length` filler words (one token each); label 0 (`zebra`) where the word zebra is planted
    `block` times from word `at` (and nowhere else), label 1 (`lion`) where lion is the document's first `block`
    words. The labels file and three splits."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in n.items():
        texts, labels, ids = [], [], []
        for i in range(count):
            words = [rng.choice(FILLER) for _ in range(length)]
            zebra, lion = i % 2 == 0, rng.random() < 0.5
            if zebra:
                words[at:at + block] = ["zebra"] * block
            if lion:
                words[:block] = ["lion"] * block
            texts.append(" ".join(words))
            labels.append(tuple(k for k, on in ((0, zebra), (1, lion)) if on))
            ids.append(f"{split}{i}")
        files.atomic_write(folder / f"{split}.tsv", files.split_text(texts, labels, ids))
    files.atomic_write(folder / "emotions.txt", "zebra\nlion")
    return folder


def marker_data(folder: Path, n: dict[str, int], seed: int = 0, words: int = 120, block: int = 8) -> Path:
    """Issue 33's documents, small: `words` filler words (5 windows of 32 tokens); every other one has `block` zebras
    in a row somewhere after its first window. Label 0 `marker` (they are there: evidence in one passage), label 1
    `other` (they are not: an absence label, as GoEmotions' neutral). (bench/long_text_pooling.py's data.)"""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in n.items():
        texts, labels = [], []
        for i in range(count):
            text = [rng.choice(FILLER) for _ in range(words)]
            if i % 2 == 0:
                at = rng.randrange(30, words - block + 1)
                text[at:at + block] = ["zebra"] * block
            texts.append(" ".join(text))
            labels.append((0,) if i % 2 == 0 else (1,))
        ids = [f"{split}{i}" for i in range(count)]
        files.atomic_write(folder / f"{split}.tsv", files.split_text(texts, labels, ids))
    files.atomic_write(folder / "emotions.txt", "marker\nother")
    return folder


MARKER_RUN = ("--batch-size", "8", "--learning-rate", "1e-3", "--head-learning-rate", "1e-3", "--precision", "fp32",
              "--max-length", "32", "--long-texts", "windows", "--epochs", "12", "--seed", "1")


@pytest.fixture(scope="module")
def tiny_512(minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT that reads up to 512 tokens."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny512"), minilm, positions=512)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600-token documents: the label zebra's only evidence is at tokens 530 to 589, past what the model can read
    at once (512)."""
    return planted_data(tmp_path_factory.mktemp("planted"), {"train": 64, "dev": 16, "test": 32}, at=530, length=600,
                        block=60)


def test_a_label_evidenced_only_after_token_512_is_learned_with_windows_not_with_truncation(tiny_512, planted,
                                                                                             tmp_path):
    common = ("--batch-size", "4", "--learning-rate", "5e-3", "--head-learning-rate", "3e-2", "--precision", "fp32",
              "--seed", "1")
    f1 = {}
    # truncation never sees the evidence, however long it trains: 2 epochs are enough to show it
    for name, reading in (("windows", ("--epochs", "6", "--max-length", "64", "--long-texts", "windows",
                                       "--max-windows", "16", "--window-labels", "pooled", "--pooling", "max")),
                          ("truncate", ("--epochs", "2", "--max-length", "512", "--long-texts", "truncate"))):
        r = run_script(*train_args(planted, tmp_path / name, tiny_512, *common, *reading,
                                   "--metrics-file", tmp_path / f"{name}.json"))
        assert r.returncode == 0, r.stderr[-2000:]
        f1[name] = json.loads((tmp_path / f"{name}.json").read_text())["test"]["per_label"]["zebra"]["f1"]
    assert f1["windows"] >= 0.95, f1
    assert f1["truncate"] <= 0.7, f1  # at best every text gets zebra: half of them have it
    log = (tmp_path / "truncate.json").read_text()
    assert json.loads(log)["lengths"]["train"]["cut"] == 64  # every training text was cut, and the log said so


def test_pooled_scores_do_not_depend_on_batch_mates_and_short_texts_score_as_before(tiny_512, planted):
    model, tokenizer, _ = encoder.load(tiny_512, torch.device("cpu"))
    texts = files.read_split(planted / "test.tsv", 2).texts[:6]
    short = ["a short one", "the cat sat", "x " * 30]
    reading = lengths.Reading(64, "windows", 16, 16, "logsumexp")
    together = encoder.score(model, encoder.encode(tokenizer, texts + short, reading), 4, 0, pooling="logsumexp")
    for i, text in enumerate(texts + short):
        alone = encoder.score(model, encoder.encode(tokenizer, [text], reading), 4, 0, pooling="logsumexp")
        np.testing.assert_allclose(alone[0], together[i], atol=1e-6)
    # texts within the window: the windows are the truncated texts, scored by the very same path, bit for bit
    windows = encoder.encode(tokenizer, short, reading)
    assert windows.single() and windows.windows == tokenizer(short, truncation=True, max_length=64)["input_ids"]
    before = encoder.score(model, tokenizer(short, truncation=True, max_length=64)["input_ids"], 4, 0)
    assert (encoder.score(model, windows, 4, 0, pooling="logsumexp") == before).all()


def test_pooling_is_max_mean_and_logsumexp_per_text():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [3.0, 0.5], [-2.0, 4.0]])
    owner = torch.tensor([0, 0, 1, 2])
    assert encoder.pool(logits, owner, 3, "max").tolist() == [[1.0, 2.0], [3.0, 0.5], [-2.0, 4.0]]
    assert encoder.pool(logits, owner, 3, "mean").tolist() == [[0.5, 0.5], [3.0, 0.5], [-2.0, 4.0]]
    lse = encoder.pool(logits, owner, 3, "logsumexp")
    assert torch.allclose(lse[0], torch.logsumexp(logits[:2], 0)) and (lse[1:] == logits[2:]).all()


def test_windows_cover_the_text_with_the_stride_and_stop_at_max_windows(minilm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm, trust_remote_code=False)
    text = " ".join(f"w{i}" for i in range(40))  # w0 .. w39: 2 tokens each? counted below
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    enc = encoder.encode(tokenizer, [text], lengths.Reading(18, "windows", 4, 100))
    room, step = 16, 12
    assert [w[1:-1] for w in enc.windows] == [ids[k:k + room] for k in range(0, len(ids) - room + step, step)]
    assert all(w[0] == tokenizer.cls_token_id and w[-1] == tokenizer.sep_token_id for w in enc.windows)
    assert enc.capped == [0]
    capped = encoder.encode(tokenizer, [text], lengths.Reading(18, "windows", 4, 2))
    assert len(capped.windows) == 2 and capped.capped == [len(ids) - (room + step)]
    head_tail = encoder.encode(tokenizer, [text], lengths.Reading(18, "head-tail"))
    assert head_tail.windows == [[tokenizer.cls_token_id, *ids[:4], *ids[-12:], tokenizer.sep_token_id]]


def test_max_length_auto_is_the_p99_of_training_texts_saved_and_used_by_predict(tiny_bert, tmp_path):
    # own data (a dataset.json): 100 training texts of 10 to 99 filler words (one token each): p99 is 99 + 2
    data = planted_data(tmp_path / "data", {"train": 100, "dev": 20, "test": 20}, at=1, length=100)
    lines = (data / "train.tsv").read_text().splitlines()
    cut = [f"{' '.join(line.split(chr(9))[0].split()[:10 + i % 90])}\t{line.split(chr(9), 1)[1]}"
           for i, line in enumerate(lines)]
    (data / "train.tsv").write_text("\n".join(cut) + "\n")
    (data / "dataset.json").write_text(json.dumps({"name": "mine", "sources": [], "labels": ["zebra", "lion"],
                                                   "files": {}}))
    counts = [min(10 + i % 90, 100) + 2 for i in range(100)]
    expected = lengths.auto_length(counts, 128)
    assert expected == int(np.ceil(np.percentile(counts, 99) / 8) * 8) == 104
    r = run_script(*train_args(data, tmp_path / "m", tiny_bert, "--epochs", "1", "--batch-size", "16",
                               "--predictions-file", tmp_path / "p.tsv", "--precision", "fp32"))
    assert r.returncode == 0, r.stderr[-2000:]
    # and, not being GoEmotions, read whole in windows (--long-texts auto)
    assert f"texts read as: {expected} tokens a window, overlapping by a quarter" in r.stdout + r.stderr
    saved = json.loads((tmp_path / "m" / files.MODEL_SETTINGS).read_text())
    assert saved["max_length"] == expected and saved["args"]["max_length"] == "auto"
    # predict.py reads the saved length: its scores are training's own on the test split (texts of 102 tokens)
    out = run_script("predict.py", tmp_path / "m", "--input", data / "test.tsv", "--output", tmp_path / "o.tsv")
    assert out.returncode == 0, out.stderr
    mine = {r[0]: r[3:] for r in (x.split("\t") for x in (tmp_path / "p.tsv").read_text().splitlines()[1:])}
    theirs = {r[0]: r[4:] for r in (x.split("\t") for x in (tmp_path / "o.tsv").read_text().splitlines()[1:])}
    assert mine == theirs


def test_goemotions_own_data_keeps_the_papers_50(trained):
    _, out, r = trained
    saved = json.loads((out / "model" / files.MODEL_SETTINGS).read_text())
    assert saved["max_length"] == 50 and saved["long_texts"] == "truncate" and saved["args"]["long_texts"] == "auto"
    assert "texts read as: 50 tokens" in r.stdout + r.stderr
    assert "train: 160 texts, tokens median" in r.stdout + r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["max_length"] == 50 and metrics["lengths"]["test"]["texts"] == 64


def test_training_with_windows_resumes_byte_identically(tiny_bert, goemotions_dir, tmp_path):
    data = write_slice(goemotions_dir, tmp_path / "data", {"train": 96, "dev": 32, "test": 32})
    args = ("--epochs", "2", "--batch-size", "8", "--precision", "fp32", "--max-length", "12", "--long-texts",
            "windows", "--stride", "2", "--log-every", "3", "--checkpoint-minutes", "1000")
    whole = run_script(*train_args(data, tmp_path / "a" / "model", tiny_bert, *args, "--predictions-file",
                                   tmp_path / "a" / "p.tsv"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    cmd = train_args(data, tmp_path / "b" / "model", tiny_bert, *args, "--predictions-file", tmp_path / "b" / "p.tsv",
                     "--resume")
    proc = start(cmd)
    out, err = stop_when(proc, "epoch 1 batch 6/", signal.SIGTERM)
    assert proc.returncode == 99, err[-2000:]
    again = run_script(*cmd)
    assert again.returncode == 0 and "resumed from" in again.stdout + again.stderr, again.stderr[-2000:]
    assert (tmp_path / "a" / "p.tsv").read_bytes() == (tmp_path / "b" / "p.tsv").read_bytes()


def test_predict_shards_and_a_5_mb_text_with_windows(tiny_bert, goemotions_dir, tmp_path):
    data = write_slice(goemotions_dir, tmp_path / "data", {"train": 48, "dev": 16, "test": 16})
    r = run_script(*train_args(data, tmp_path / "m", tiny_bert, "--epochs", "1", "--batch-size", "8", "--precision",
                               "fp32", "--max-length", "16", "--long-texts", "windows", "--max-windows", "4"))
    assert r.returncode == 0, r.stderr[-2000:]
    texts = files.read_split(goemotions_dir / "test.tsv", 28).texts[:30]
    texts[7] = "word " * 1_000_000  # a broken row: 5 MB
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    whole = run_script("predict.py", tmp_path / "m", "--input", tmp_path / "in.txt", "--output", tmp_path / "all.tsv",
                       "--chunk-size", "8")
    assert whole.returncode == 0, whole.stderr
    rows = [line.split("\t") for line in (tmp_path / "all.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 30 and rows[7][3].startswith("long text: read its first 4 windows")
    assert all(v for v in rows[7][4:])  # scored on what was read
    assert "longer than --max-windows windows, scored on their first windows (lines 8" in whole.stderr
    for k in (1, 2):
        s = run_script("predict.py", tmp_path / "m", "--input", tmp_path / "in.txt", "--output",
                       tmp_path / "sharded.tsv", "--chunk-size", "8", "--shard", f"{k}/2")
        assert s.returncode == 0, s.stderr
    merged = run_script("predict.py", "--merge", "--output", tmp_path / "sharded.tsv")
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "sharded.tsv").read_bytes() == (tmp_path / "all.tsv").read_bytes()
    # stopped after a chunk (as s_rt does) and resumed: the same bytes (a longer input, so that it is mid-way)
    (tmp_path / "more.txt").write_text("\n".join([t for t in texts if len(t) < 10_000] * 20) + "\n")
    argv = [tmp_path / "m", "--input", tmp_path / "more.txt", "--chunk-size", "8"]
    assert run_script("predict.py", *argv, "--output", tmp_path / "more.tsv").returncode == 0
    stop_after_a_chunk([*argv, "--output", tmp_path / "resumed.tsv"], tmp_path / "resumed.tsv")
    again = run_script("predict.py", *argv, "--output", tmp_path / "resumed.tsv", "--resume")
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr
    assert (tmp_path / "resumed.tsv").read_bytes() == (tmp_path / "more.tsv").read_bytes()


@pytest.mark.parametrize("option, message", [
    (("--max-length", "200"), "--max-length 200: the model reads at most 128 tokens; use --long-texts windows"),
    (("--max-length", "32", "--stride", "16"), "--stride 16: from 0 to less than half of --max-length (32)"),
    (("--max-windows", "0", "--long-texts", "windows"), "argument --max-windows: '0' is not a whole number >= 1"),
    (("--max-length", "many"), "argument --max-length: 'many' is not a whole number >= 8, or auto"),
    (("--compile", "--long-texts", "windows"), "--compile needs batches of fixed shapes"),
    (("--long-texts", "windows", "--pooling", "learned"), "--pooling learned is learned from the loss on each "
     "document's pooled logits: give --window-labels pooled"),
    (("--long-texts", "windows", "--window-labels", "pooled"), "--pooling tuned (the default) is chosen on dev from "
     "the scores of windows taught one by one (--window-labels each); with --window-labels pooled give --pooling max"),
])
def test_bad_length_options_are_one_line(small_data, tiny_bert, tmp_path, option, message):
    r = run_script(*train_args(small_data, tmp_path / "m", tiny_bert, *option))
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "m").exists()


def test_data_analysis_and_prepare_data_report_token_lengths(minilm, tmp_path):
    data = planted_data(tmp_path / "data", {"train": 10, "dev": 4, "test": 4}, at=1, length=60)
    r = run_script("data_analysis.py", data, "--tokenizer", minilm)
    assert r.returncode == 0, r.stderr
    assert "train: 10 texts, tokens median 62, p95 62, p99 62, max 62; 100.0% over 50, 0.0% over 128" in r.stdout
    stats = json.loads(run_script("data_analysis.py", data, "--tokenizer", minilm, "--format", "json").stdout)
    assert stats["lengths"]["splits"]["dev"]["max"] == 62
    rows = [f"{' '.join(['cat'] * n)},lion" for n in range(1, 41)]
    (tmp_path / "mine.csv").write_text("text,labels\n" + "\n".join(rows) + "\n")
    p = run_script("prepare_data.py", tmp_path / "mine.csv", tmp_path / "out", "--tokenizer", minilm)
    assert p.returncode == 0, p.stderr
    assert "lengths in " in p.stdout and "train: 32 texts, tokens median" in p.stdout
    missing = run_script("prepare_data.py", tmp_path / "mine.csv", tmp_path / "out2",
                         env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert missing.returncode == 0 and "lengths in tokens not reported" in missing.stderr, missing.stderr


def per_label_f1(metrics: Path) -> dict[str, float]:
    return {k: v["f1"] for k, v in json.loads(metrics.read_text())["test"]["per_label"].items()}


def test_learned_pooling_learns_a_presence_and_an_absence_label_where_the_defaults_cannot(tiny_bert, tmp_path):
    # issue 33: `marker` is evidenced in one passage, `other` means no such passage anywhere
    data = marker_data(tmp_path / "data", {"train": 160, "dev": 40, "test": 80})
    learned = run_script(*train_args(data, tmp_path / "learned", tiny_bert, *MARKER_RUN, "--window-labels", "pooled",
                                     "--pooling", "learned", "--metrics-file", tmp_path / "learned.json",
                                     "--predictions-file", tmp_path / "learned.tsv"))
    assert learned.returncode == 0, learned.stderr[-2000:]
    assert "logits pooled by a sharpness learned per label" in learned.stdout + learned.stderr
    f1 = per_label_f1(tmp_path / "learned.json")
    assert f1["marker"] >= 0.9 and f1["other"] >= 0.9, f1
    sharpness = json.loads((tmp_path / "learned" / files.MODEL_SETTINGS).read_text())["sharpness"]
    assert sharpness[0] > 1 and sharpness[1] < -1, sharpness  # max-like for the presence, min-like for the absence
    # predict.py reads the sharpness saved with the model: its scores are training's own evaluation's
    out = run_script("predict.py", tmp_path / "learned", "--input", data / "test.tsv", "--output", tmp_path / "o.tsv")
    assert out.returncode == 0, out.stderr
    mine = {r[0]: r[3:] for r in (x.split("\t") for x in (tmp_path / "learned.tsv").read_text().splitlines()[1:])}
    theirs = {r[0]: r[4:] for r in (x.split("\t") for x in (tmp_path / "o.tsv").read_text().splitlines()[1:])}
    assert mine == theirs and len(mine) == 80
    model, tokenizer, settings = encoder.load(tmp_path / "learned", torch.device("cpu"))
    reading = lengths.Reading.of(settings)
    texts = files.read_split(data / "test.tsv", 2).texts
    again = encoder.score(model, encoder.encode(tokenizer, texts, reading), 16, 0, pooling=reading.pooled_by)
    np.testing.assert_allclose(again, [[float(v) for v in mine[f"test{i}"]] for i in range(80)], atol=1e-6)


def test_the_defaults_get_a_one_passage_label_and_an_absence_label_right_where_max_pooling_cannot(tiny_bert, tmp_path):
    # issue 33's planted marker at the defaults (windows taught each, --pooling tuned): both labels right
    data = marker_data(tmp_path / "data", {"train": 160, "dev": 40, "test": 80})
    default = run_script(*train_args(data, tmp_path / "default", tiny_bert, *MARKER_RUN, "--metrics-file",
                                     tmp_path / "default.json", "--predictions-file", tmp_path / "default.tsv"))
    assert default.returncode == 0, default.stderr[-2000:]
    log = default.stdout + default.stderr
    assert "pooled by a pooling and threshold per label, tuned on dev" in log
    assert "pooling tuned on dev (its texts of more than one window): marker: " in log
    f1 = per_label_f1(tmp_path / "default.json")
    assert f1["marker"] >= 0.9 and f1["other"] >= 0.9, f1  # at --threshold 0.3: the offsets carry the tuned thresholds
    settings = json.loads((tmp_path / "default" / files.MODEL_SETTINGS).read_text())
    assert settings["pooling"] == "tuned" and len(settings["sharpness"]) == len(settings["offset"]) == 2
    card = (tmp_path / "default" / "README.md").read_text()
    assert "its threshold set, as tuned on dev: marker: " in card and "predicted when its score is above 0.3" in card
    # predict.py pools and decides as training's own test evaluation did
    out = run_script("predict.py", tmp_path / "default", "--input", data / "test.tsv", "--output", tmp_path / "o.tsv")
    assert out.returncode == 0, out.stderr
    mine = {r[0]: r[3:] for r in (x.split("\t") for x in (tmp_path / "default.tsv").read_text().splitlines()[1:])}
    theirs = {r[0]: r[4:] for r in (x.split("\t") for x in (tmp_path / "o.tsv").read_text().splitlines()[1:])}
    assert mine == theirs and len(mine) == 80
    # issue 25's max pooling (the old default): a window without the marker learns the base rate of both labels,
    # over 0.3, and max pooling takes it for every document: `other` everywhere
    old = run_script(*train_args(data, tmp_path / "max", tiny_bert, *MARKER_RUN, "--pooling", "max",
                                 "--metrics-file", tmp_path / "max.json"))
    assert old.returncode == 0, old.stderr[-2000:]
    assert per_label_f1(tmp_path / "max.json")["other"] <= 0.7


def test_tuned_pooling_under_two_gloo_processes_matches_one_process_at_double_batch(minilm, tmp_path):
    # dev's window logits are gathered from both ranks before each label's pooling is tuned on them
    tiny = make_tiny_bert(tmp_path / "tiny0", minilm, dropout=0.0)
    data = marker_data(tmp_path / "data", {"train": 96, "dev": 24, "test": 24})
    common = ("--epochs", "6", "--precision", "fp32", "--max-length", "32", "--long-texts", "windows",
              "--learning-rate", "1e-3", "--head-learning-rate", "1e-3", "--seed", "1", "--eval-batch-size", "8")
    one = run_script(*train_args(data, tmp_path / "one", tiny, *common, "--batch-size", "8"))
    assert one.returncode == 0, one.stderr[-2000:]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *map(str, train_args(data, tmp_path / "two", tiny, *common, "--batch-size", "4"))],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    logged = (two.stdout + two.stderr).count("pooling tuned on dev (its texts of more than one window): marker: ")
    assert logged == 1  # rank 0 logs it
    a, b = (json.loads((tmp_path / k / files.MODEL_SETTINGS).read_text()) for k in ("one", "two"))
    assert a["sharpness"] == b["sharpness"] and np.allclose(a["offset"], b["offset"], atol=1e-3), (a, b)
    assert a["offset"] != [0.0, 0.0] and a["metrics"]["test"]["macro"]["f1"] > 0.9, a  # a pooling tuned, and right
    assert a["metrics"]["test"]["macro"]["f1"] == pytest.approx(b["metrics"]["test"]["macro"]["f1"], abs=1e-6)


def test_tuned_pooling_chooses_max_for_a_presence_and_min_for_an_absence_and_offsets_the_threshold():
    # dev: 4 texts of 2 windows. Label 0, a presence: high in one window of texts 0 and 1, 0 (a score of 0.5) in
    # every other. Label 1, an absence: low in one window of texts 0 and 1 (and high in the other), 1 elsewhere.
    # A fifth text, of one window, keeps its window's scores, and is not tuned on.
    logits = np.array([[3, -3], [0, 5], [0, 5], [3, -3], [0, 1], [0, 1], [0, 1], [0, 1], [0.1, -0.2]],
                      dtype=np.float32)
    encoded = encoder.Encoded([[1]] * 9, np.array([0, 0, 1, 1, 2, 2, 3, 3, 4]), [0] * 5)
    gold = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]])
    tuned = encoder.tune_pooling(logits, encoded, gold, 0.3)
    assert tuned.sharpness[0] == lengths.FAR and tuned.sharpness[1] < 0, tuned  # the max; towards the min
    assert tuned.offset[0] < 0, tuned  # 0.5 everywhere without the evidence: the max decides above it
    scores = encoder.probabilities(logits, encoded, tuned)
    assert ((scores[:4] > 0.3) == gold[:4].astype(bool)).all(), scores  # at 0.3: the tuned thresholds are offsets
    assert np.array_equal(scores[4], torch.sigmoid(torch.from_numpy(logits[8])).numpy())  # a window's own scores
    assert "label0: max, threshold 0.5" in tuned.describe(["label0", "label1"], 0.3)
    # exactly the max and the min from FAR on
    far = encoder.pool(torch.from_numpy(logits), torch.from_numpy(encoded.owner), 5, (lengths.FAR, -lengths.FAR))
    assert torch.equal(far, torch.tensor([[3.0, -3], [3, -3], [0, 1], [0, 1], [0.1, -0.2]]))
    # nothing read in more than one window: nothing pooled, nothing offset (scores as under truncation)
    single = encoder.Encoded([[1]] * 4, np.arange(4), [0] * 4)
    plain = encoder.tune_pooling(logits[:8:2], single, gold[:4], 0.3)
    assert plain.offset == (0.0, 0.0) and plain.sharpness == (lengths.FAR, lengths.FAR)
    as_truncated = torch.sigmoid(torch.from_numpy(logits[:8:2])).numpy()
    assert np.array_equal(encoder.probabilities(logits[:8:2], single, plain), as_truncated)
    reading = lengths.Reading(32, "windows", None, 8, "tuned", tuned.sharpness, tuned.offset)
    assert lengths.Reading.of(json.loads(json.dumps(reading.settings()))).pooled_by == tuned


def test_learned_pooling_spans_min_mean_and_max_and_keeps_a_lone_windows_logits():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [3.0, 0.5], [-2.0, 4.0], [0.5, 0.5]])
    owner = torch.tensor([0, 0, 1, 2, 2])
    far = encoder.pool(logits, owner, 3, torch.tensor([200.0, -200.0]))
    assert torch.allclose(far[[0, 2]], torch.tensor([[1.0, -1.0], [0.5, 0.5]]), atol=0.01)  # max, and min
    assert (far[1] == logits[2]).all()  # a text of one window keeps its logits exactly
    for b in (0.0, 1e-7, -1e-7):  # at 0, and either side of it, the mean
        mean = encoder.pool(logits, owner, 3, torch.tensor([b, b]))
        assert torch.allclose(mean[[0, 2]], torch.tensor([[0.5, 0.5], [-0.75, 2.25]]), atol=1e-5)
        assert (mean[1] == logits[2]).all()
    for b in ((0.7, -1.3), (1e-8, 30.0)):  # saved as a tuple: the same as the tensor
        pooled = encoder.pool(logits, owner, 3, b)
        assert (pooled[1] == logits[2]).all() and torch.equal(pooled, encoder.pool(logits, owner, 3, torch.tensor(b)))
        assert (pooled[[0, 2]] >= logits[[0, 3]].minimum(logits[[1, 4]]) - 1e-6).all()
    # the sharpness learns from the loss, through 0: a label wanted higher sharpens towards the max
    b = torch.zeros(2, requires_grad=True)
    encoder.pool(logits, owner, 3, b).sum().backward()
    assert (b.grad > 0).all()
    reading = lengths.Reading(32, "windows", None, 8, "learned", (2.5, -1.25))
    assert lengths.Reading.of(json.loads(json.dumps(reading.settings()))) == reading
    assert reading.pooled_by == (2.5, -1.25)
    assert lengths.Reading(32, "truncate", pooling="learned").pooled_by == "learned"  # not read in windows


def test_learned_pooling_resumes_byte_identically(tiny_bert, tmp_path):
    data = marker_data(tmp_path / "data", {"train": 48, "dev": 16, "test": 16})
    args = ("--epochs", "2", "--batch-size", "4", "--precision", "fp32", "--max-length", "32", "--long-texts",
            "windows", "--window-labels", "pooled", "--pooling", "learned", "--log-every", "3",
            "--checkpoint-minutes", "1000")
    whole = run_script(*train_args(data, tmp_path / "a" / "model", tiny_bert, *args, "--predictions-file",
                                   tmp_path / "a" / "p.tsv"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    cmd = train_args(data, tmp_path / "b" / "model", tiny_bert, *args, "--predictions-file", tmp_path / "b" / "p.tsv",
                     "--resume")
    proc = start(cmd)
    out, err = stop_when(proc, "epoch 1 batch 6/", signal.SIGTERM)
    assert proc.returncode == 99, err[-2000:]
    again = run_script(*cmd)
    assert again.returncode == 0 and "resumed from" in again.stdout + again.stderr, again.stderr[-2000:]
    assert (tmp_path / "a" / "p.tsv").read_bytes() == (tmp_path / "b" / "p.tsv").read_bytes()
    saved = [json.loads((tmp_path / k / "model" / files.MODEL_SETTINGS).read_text())["sharpness"] for k in "ab"]
    assert saved[0] == saved[1] and saved[0] != [0.0, 0.0]


def test_long_text_pooling_bench_smoke(minilm, tmp_path):
    r = run_script("bench/long_text_pooling.py", tmp_path, "--smoke", "--tokenizer", minilm)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = (tmp_path / "table.md").read_text().splitlines()
    assert len(rows) == 5 and rows[2].startswith("| each | tuned |") and rows[4].startswith("| pooled | learned |")
    assert rows[3].startswith("| each | max |")
