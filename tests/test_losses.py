"""bert_model.py's losses against label imbalance (--loss) and --add-tokens: hand computations, their limits,
pos_weight from real label counts, and real training runs on a tiny BERT through save, predict.py and pipeline."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_script, train, write_slice

import bert_model as bm
from multilabel import files, losses

LOGITS = [[2.0, -1.0, 0.0, -4.0], [-3.0, 0.5, 4.0, 1.5]]
TARGETS = [[1, 0, 1, 0], [0, 1, 0, 0]]
# 10 training rows: label a has 2 positives, b 6, c 1, d none
TRAIN_Y = np.array([[1, 0, 0, 0]] * 2 + [[0, 1, 0, 0]] * 6 + [[0, 0, 1, 0]] + [[0, 0, 0, 0]], np.float32)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def by_hand(rule) -> torch.Tensor:
    """rule(p, y) -> the loss of one entry, in plain floats; applied to every entry of LOGITS/TARGETS."""
    return torch.tensor([[rule(sigmoid(x), y) for x, y in zip(xs, ys, strict=True)]
                         for xs, ys in zip(LOGITS, TARGETS, strict=True)])


def bce(p: float, y: int) -> float:
    return -math.log(p) if y else -math.log(1 - p)


def computed(loss: str, **options) -> torch.Tensor:
    """What bert_model.py's label_loss computes on LOGITS/TARGETS for these command-line options."""
    args = bm.parse_args(["t", "d", "e", "l", "s", "--loss", loss,
                          *(x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v)))])
    fn, _ = losses.make(args, TRAIN_Y, ["a", "b", "c", "d"], torch.device("cpu"))
    return fn(torch.tensor(LOGITS), torch.tensor(TARGETS, dtype=torch.float32))


def test_bce_is_the_textbook_formula():
    assert torch.allclose(computed("bce"), by_hand(bce), atol=1e-6)


def test_weighted_bce_weighs_positives_by_the_label_counts():
    # TRAIN_Y: sqrt-inverse is sqrt(8/2), sqrt(4/6), sqrt(9/1), and the cap for d (no positive)
    for rule, expected in (("sqrt-inverse", [2.0, math.sqrt(4 / 6), 3.0, 30.0]),
                           ("inverse", [4.0, 4 / 6, 9.0, 30.0])):
        assert losses.pos_weights(TRAIN_Y, rule, 30.0).tolist() == pytest.approx(expected)
    assert losses.pos_weights(TRAIN_Y, "inverse", 5.0).tolist() == pytest.approx([4.0, 4 / 6, 5.0, 5.0])
    w = [4.0, 4 / 6, 9.0, 30.0]
    hand = torch.tensor([[(w[j] * -math.log(sigmoid(x)) if y else -math.log(1 - sigmoid(x)))
                          for j, (x, y) in enumerate(zip(xs, ys, strict=True))]
                         for xs, ys in zip(LOGITS, TARGETS, strict=True)])
    assert torch.allclose(computed("weighted-bce", pos_weight="inverse"), hand, atol=1e-5)


def test_pos_weight_from_the_real_goemotions_counts(goemotions_dir):
    labels = files.read_labels(goemotions_dir / "emotions.txt")
    y = files.multi_hot(files.read_split(goemotions_dir / "train.tsv", len(labels)).labels, len(labels))
    w = dict(zip(labels, losses.pos_weights(y, "sqrt-inverse", 30.0).tolist(), strict=True))
    counts = {"grief": 77, "pride": 111, "relief": 153, "nervousness": 164, "neutral": 14219}  # the counts
    for name, n in counts.items():
        assert w[name] == pytest.approx(math.sqrt((43410 - n) / n), rel=1e-6), name
    assert max(w, key=w.get) == "grief" and min(w, key=w.get) == "neutral"


def test_focal_loss_by_hand_and_its_limits():
    def focal(gamma, alpha):
        def rule(p, y):
            p_true = p if y else 1 - p
            a = 1.0 if alpha < 0 else (alpha if y else 1 - alpha)
            return a * (1 - p_true) ** gamma * bce(p, y)
        return rule

    assert torch.allclose(computed("focal"), by_hand(focal(2.0, 0.25)), atol=1e-6)  # the paper's defaults
    assert torch.allclose(computed("focal", focal_gamma=0.5, focal_alpha=0.9), by_hand(focal(0.5, 0.9)), atol=1e-6)
    assert torch.allclose(computed("focal", focal_gamma=0, focal_alpha=-1), by_hand(bce), atol=1e-6)  # = BCE
    # a well-classified entry loses far more weight than a badly classified one
    ratio = computed("focal", focal_alpha=-1) / by_hand(bce)
    assert ratio[0, 0] < 0.02 and ratio[1, 2] > 0.9  # logit 2 on a positive (easy); logit 4 on a negative (wrong)


def test_asymmetric_loss_by_hand_and_its_limits():
    def asl(gamma_neg, gamma_pos, clip):
        def rule(p, y):
            if y:
                return (1 - p) ** gamma_pos * -math.log(p)
            p_m = max(p - clip, 0.0)
            return p_m ** gamma_neg * -math.log(1 - p_m)
        return rule

    assert torch.allclose(computed("asl"), by_hand(asl(4.0, 0.0, 0.05)), atol=1e-6)  # the paper's defaults
    assert torch.allclose(computed("asl", asl_gamma_neg=2, asl_gamma_pos=1, asl_clip=0.2),
                          by_hand(asl(2.0, 1.0, 0.2)), atol=1e-6)
    assert torch.allclose(computed("asl", asl_gamma_neg=0, asl_gamma_pos=0, asl_clip=0), by_hand(bce), atol=1e-6)
    # the margin: a negative scored below it (logit -4: p = 0.018 < 0.05) adds nothing, and no gradient
    x = torch.tensor(LOGITS, requires_grad=True)
    loss = losses.asymmetric_loss(x, torch.tensor(TARGETS, dtype=torch.float32), 4.0, 0.0, 0.05)
    assert loss[0, 3].item() == 0.0
    loss.sum().backward()
    assert x.grad[0, 3].item() == 0.0 and x.grad[1, 3].item() > 0  # logit 1.5, a negative: pushed down


def test_the_loss_options_are_checked():
    for bad in (["--focal-gamma", "-1"], ["--asl-clip", "1"], ["--pos-weight-cap", "-2"], ["--loss", "hinge"]):
        r = run_script("bert_model.py", "t", "d", "e", "l", "s", *bad)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and last.startswith("bert_model.py: error: ") and bad[0] in last, (bad, r.stderr)


# ------------------------------------------------------------------------------- real training runs


@pytest.fixture(scope="module")
def data(goemotions_dir, tmp_path_factory) -> Path:
    return write_slice(goemotions_dir, tmp_path_factory.mktemp("losses") / "data", {"train": 96, "dev": 48, "test": 48})


def train_loss(data: Path, out: Path, model: Path, *extra: str):
    """A 2-epoch fp32 run of bert_model.py; (its metrics, its weights, its output)."""
    from safetensors.torch import load_file

    r = train(data, out / "model", model, "--epochs", "2", "--batch-size", "8", "--learning-rate", "1e-3",
              "--precision", "fp32", "--log-every", "2", "--metrics-file", out / "metrics.json",
              "--predictions-file", out / "pred.tsv", *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), load_file(out / "model" / "model.safetensors"), r


def curve(metrics: dict) -> np.ndarray:
    return np.array([loss for _, loss in metrics["loss_curve"]])


@pytest.fixture(scope="module")
def bce_run(data, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("bce")
    return (*train_loss(data, out, tiny_bert), out)


def test_focal_and_asl_at_their_limits_train_as_bce_does(data, tiny_bert, bce_run, tmp_path):
    ref, ref_weights, _, _ = bce_run
    assert ref["loss"] == {"name": "bce"} and ref["args"]["loss"] == "bce"
    for name, extra in (("focal", ["--focal-gamma", "0", "--focal-alpha", "-1"]),
                        ("asl", ["--asl-gamma-neg", "0", "--asl-gamma-pos", "0", "--asl-clip", "0"])):
        m, w, r = train_loss(data, tmp_path / name, tiny_bert, "--loss", name, *extra)
        assert m["args"]["loss"] == name and m["loss"]["name"] == name
        assert f"loss: {name} (" in r.stdout
        assert np.abs(curve(m) - curve(ref)).max() < 1e-5, name
        assert max((w[k] - ref_weights[k]).abs().max().item() for k in w) < 1e-4, name


def test_each_loss_trains_and_differs_from_bce(data, tiny_bert, bce_run, tmp_path):
    ref, _, _, _ = bce_run
    for name in ("weighted-bce", "focal", "asl"):
        m, _, r = train_loss(data, tmp_path / name, tiny_bert, "--loss", name)
        c = curve(m)
        assert np.isfinite(c).all() and c[-1] < c[0], (name, c)  # it learns (its own loss falls)
        assert np.abs(c - curve(ref)).max() > 1e-3, name  # and it is not BCE under another name
        if name == "weighted-bce":  # the log names the range, metrics.json every label's weight
            w = m["loss"]["pos_weight"]
            assert set(w) == set(m["labels"]) and m["loss"]["rule"] == "sqrt-inverse"
            low, high = min(w, key=w.get), max(w, key=w.get)
            assert f"capped at 30: {w[low]:.2f} ({low}) to {w[high]:.2f} ({high})" in r.stdout


def test_add_tokens_round_trips_through_save_predict_and_pipeline(data, tiny_bert, bce_run, tmp_path):
    from transformers import AutoTokenizer, pipeline

    m, w, r = train_loss(data, tmp_path, tiny_bert, "--add-tokens")
    assert m["args"]["add_tokens"] == ["[NAME]", "[RELIGION]"]
    assert "--add-tokens: 2 new token(s), vocabulary now 30524 ([NAME] was [ name ]" in r.stdout
    assert w["bert.embeddings.word_embeddings.weight"].shape[0] == 30524
    tok = AutoTokenizer.from_pretrained(tmp_path / "model", trust_remote_code=False)
    assert tok.tokenize("Thanks [NAME], the [RELIGION] one") == ["thanks", "[NAME]", ",", "the", "[RELIGION]", "one"]
    assert json.loads((tmp_path / "model" / "config.json").read_text())["vocab_size"] == 30524
    card = (tmp_path / "model" / "README.md").read_text()
    assert "Training loss: bce (binary cross-entropy); added tokens: [NAME] [RELIGION]." in card

    split = files.read_split(data / "test.tsv", 28)
    texts, ids = split.texts, split.ids
    masked = [i for i, t in enumerate(texts) if "[NAME]" in t]
    assert len(masked) >= 2
    with open(tmp_path / "pred.tsv", encoding="utf-8", newline="") as f:
        saved = {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}
    r = run_script("predict.py", tmp_path / "model", "--input", data / "test.tsv", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    got = {g["id"]: g for g in map(json.loads, r.stdout.splitlines())}
    pipe = pipeline("text-classification", trust_remote_code=False, model=str(tmp_path / "model"), top_k=None,
                    device="cpu")
    for i, result in zip(masked, pipe([texts[i] for i in masked]), strict=True):
        piped = {d["label"]: d["score"] for d in result}
        for name in m["labels"]:
            assert abs(got[ids[i]]["scores"][name] - float(saved[ids[i]][name])) < 1e-5
            assert abs(piped[name] - float(saved[ids[i]][name])) < 1e-5

    # and the tokens matter: the same run without them scores the masked texts otherwise
    m2, _, _, plain_run = bce_run
    with open(plain_run / "pred.tsv", encoding="utf-8", newline="") as f:
        plain = {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}
    assert max(abs(float(plain[ids[i]][n]) - float(saved[ids[i]][n])) for i in masked for n in m2["labels"]) > 1e-4

