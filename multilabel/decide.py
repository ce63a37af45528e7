"""The one decision rule and the one scoring of decisions, used by training's report, predict.py, compare_runs.py
and the bench (no torch here):

    thresholds(choice, settings, where)        the thresholds a script decides with: the model's own (goemotions.json's
                                               threshold), its per-label ones tuned on dev, or a number
    decide(scores, thresholds, at_least_one)   a label is predicted when its score is strictly above its threshold
                                               (google-research's goemotions/calculate_metrics.py: > 0.3); with
                                               at_least_one, a text that passes none gets its top-scoring label
    metrics(gold, predicted, labels)           precision, recall and F1 per label, macro, micro and weighted, and
                                               exact-match accuracy, as scikit-learn's precision_recall_fscore_support
                                               with zero_division=0 computes them (tests/test_decide.py holds it to
                                               1e-12 on generated gold and scores)
    macro_f1(gold, predicted[, weights])       the macro F1 alone; with weights (resamples x examples), one per
                                               resample: the paired bootstrap of compare_runs.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def thresholds(choice: float | str, settings: dict, where: str | Path) -> np.ndarray:
    """--threshold: 'model' (the saved threshold), 'tuned' (per label, tuned on dev; an error where there are none)
    or a number, as one threshold per label."""
    from multilabel.files import MODEL_SETTINGS, UserError  # (files.py builds on this module)

    labels = settings["labels"]
    if choice == "model":
        return np.full(len(labels), float(settings["threshold"]), dtype=np.float32)
    if choice == "tuned":
        if not settings["thresholds"]:
            raise UserError(f"{where}: no tuned thresholds in {MODEL_SETTINGS}")
        return np.array([settings["thresholds"][n] for n in labels], dtype=np.float32)
    return np.full(len(labels), choice, dtype=np.float32)


def decide(scores: np.ndarray, thresholds: np.ndarray | float, at_least_one: bool = False) -> np.ndarray:
    """Examples x labels, bool: score > threshold (a scalar, or one per label); at_least_one adds the top label of
    a text that has none."""
    chosen = scores > thresholds
    if at_least_one and len(scores):
        none = ~chosen.any(axis=1)
        chosen[none, scores[none].argmax(axis=1)] = True
    return chosen


def counts(gold: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None) -> tuple:
    """Per label: true positives, predicted positives, gold positives (support); with weights (resamples x
    examples), per resample."""
    gold, predicted = gold.astype(bool), predicted.astype(bool)
    if weights is None:
        return (gold & predicted).sum(0), predicted.sum(0), gold.sum(0)
    columns = np.hstack([gold & predicted, predicted, gold]).astype(np.float64)
    sums = weights @ columns
    k = gold.shape[1]
    return sums[..., :k], sums[..., k:2 * k], sums[..., 2 * k:]


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def f1(tp: np.ndarray, pp: np.ndarray, support: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (predicted + gold positives), 0 where both are 0."""
    return ratio(2 * np.asarray(tp, np.float64), np.asarray(pp, np.float64) + support)


def macro_f1(gold: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """The mean of the per-label F1s: a float, or one per resample of `weights`."""
    scores = f1(*counts(gold, predicted, weights)).mean(-1)
    return float(scores) if weights is None else scores


def metrics(gold: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    """Per label and averaged precision, recall and F1, and exact-match accuracy: what metrics.json holds."""
    tp, pp, support = counts(gold, predicted)
    p, r, f = ratio(tp, pp), ratio(tp, support), f1(tp, pp, support)
    out = {"per_label": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                "support": int(support[i])} for i, name in enumerate(labels)}}
    out["macro"] = {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean())}
    TP, PP, S = tp.sum(), pp.sum(), support.sum()  # noqa: N806
    out["micro"] = {"precision": float(ratio(TP, PP)), "recall": float(ratio(TP, S)), "f1": float(f1(TP, PP, S))}
    weighted = [float(np.average(v, weights=support)) if S else 0.0 for v in (p, r, f)]  # as scikit-learn does
    out["weighted"] = dict(zip(("precision", "recall", "f1"), weighted, strict=True))
    out["exact_match_accuracy"] = float((gold.astype(bool) == predicted.astype(bool)).all(1).mean())
    return out
