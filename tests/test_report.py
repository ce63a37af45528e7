"""multilabel/report.py: metrics as the paper's code computes them, thresholds tuned on dev, the model card."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from multilabel import report


def test_metrics_predict_strictly_above_threshold_as_calculate_metrics_does():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    probs = np.array([[0.3, 0.1], [0.2, 0.31], [0.9, 0.3]])  # 0.3 exactly is not a prediction
    m = report.compute_metrics(y, probs, 0.3, ["a", "b"])
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_label"]["b"]["recall"] == 0.5
    assert m["exact_match_accuracy"] == pytest.approx(1 / 3)  # only the second row is exact
    assert m["micro"]["f1"] == pytest.approx(f1_score(y, probs > 0.3, average="micro"))


def test_tuned_thresholds_are_never_worse_on_dev():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 6)) < [0.02, 0.05, 0.1, 0.2, 0.3, 0.5]).astype(np.float32)
    probs = np.clip(y * rng.random((500, 6)) * 0.6 + rng.random((500, 6)) * 0.5, 0, 1)
    tuned = report.tune_thresholds(y, probs, 0.3)
    assert tuned.shape == (6,) and ((tuned > 0) & (tuned < 1)).all()
    base = report.compute_metrics(y, probs, 0.3, list("abcdef"))
    best = report.compute_metrics(y, probs, tuned, list("abcdef"))
    for name in "abcdef":
        assert best["per_label"][name]["f1"] >= base["per_label"][name]["f1"]
    assert best["macro"]["f1"] > base["macro"]["f1"]


def test_model_card_describes_the_saved_folder(trained, paper_table4):
    """README.md in SAVE_FP: metadata block, labels and thresholds, results beside the paper, command, data."""
    import hashlib

    import yaml

    data, out, r = trained
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["pipeline_tag"] == "text-classification" and meta["datasets"] == ["go_emotions"]
    assert "base_model" not in meta  # a local folder is no hub id
    reported = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert reported["test macro F1 at 0.3"] == pytest.approx(metrics["test"]["macro"]["f1"], abs=1e-4)
    # one row per label: dev-tuned threshold, test precision, recall, F1, the paper's F1 beside it, tuned F1, support
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in card.splitlines() if line.startswith("| "))
            if cells[0] in metrics["labels"]}
    assert list(rows) == metrics["labels"]
    assert rows["admiration"][4] == "0.65"
    for name in metrics["labels"]:
        m, tuned = metrics["test"]["per_label"][name], metrics["test_tuned"]["per_label"][name]
        assert rows[name] == [f"{metrics['thresholds'][name]:.2f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                              f"{m['f1']:.3f}", f"{paper_table4[name]:.2f}", f"{tuned['f1']:.3f}",
                              str(m["support"])], name
    assert "python bert_model.py " in card and "--epochs 3" in card  # the command
    digest = hashlib.sha256((data / "train.tsv").read_bytes()).hexdigest()
    assert f"`{data / 'train.tsv'}` {digest}" in card
    assert "native English speakers from India" in card  # the dataset's known biases
    assert metrics["command"].startswith("python bert_model.py ") and metrics["total_time_s"] > 0
    assert "thread(s)" in metrics["hardware"]
