"""The one decision rule and its scores (multilabel/decide.py) against scikit-learn, on generated gold labels and
scores, ties on the threshold included (scores are drawn from a grid that holds the thresholds)."""

from __future__ import annotations

import sys

import numpy as np
from helpers import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

sys.path.insert(0, str(ROOT))

import compare_runs  # noqa: E402
from multilabel import decide, report  # noqa: E402

GRID = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0]  # scores: ties with the thresholds below happen often


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    """(gold, scores, thresholds): 1-30 examples, 2-6 labels (one label is sklearn's binary case, not ours)."""
    n, k = draw(st.integers(1, 30)), draw(st.integers(2, 6))
    gold = np.array(draw(st.lists(st.booleans(), min_size=n * k, max_size=n * k))).reshape(n, k)
    scores = np.array(draw(st.lists(st.sampled_from(GRID), min_size=n * k, max_size=n * k))).reshape(n, k)
    per_label = draw(st.booleans())
    thresholds = (np.array(draw(st.lists(st.sampled_from([0.1, 0.3, 0.5]), min_size=k, max_size=k)))
                  if per_label else draw(st.sampled_from([0.0, 0.3, 0.5])))
    return gold, scores, thresholds


@settings(max_examples=300, deadline=None)
@given(cases())
def test_metrics_equal_scikit_learn(case) -> None:
    gold, scores, thresholds = case
    predicted = decide.decide(scores, thresholds)
    assert np.array_equal(predicted, scores > thresholds)  # strictly above: a tie is not a label
    labels = [f"l{j}" for j in range(gold.shape[1])]
    ours = decide.metrics(gold, predicted, labels)
    y, p = gold.astype(int), predicted.astype(int)
    prec, rec, f1, support = precision_recall_fscore_support(y, p, average=None, zero_division=0)
    for j, name in enumerate(labels):
        got = ours["per_label"][name]
        assert abs(got["precision"] - prec[j]) < 1e-12 and abs(got["recall"] - rec[j]) < 1e-12
        assert abs(got["f1"] - f1[j]) < 1e-12 and got["support"] == support[j]
    for average in ("macro", "micro", "weighted"):
        prec, rec, f1, _ = precision_recall_fscore_support(y, p, average=average, zero_division=0)
        got = ours[average]
        assert abs(got["precision"] - prec) < 1e-12 and abs(got["recall"] - rec) < 1e-12
        assert abs(got["f1"] - f1) < 1e-12
    assert abs(ours["exact_match_accuracy"] - accuracy_score(y, p)) < 1e-12
    assert abs(decide.macro_f1(gold, predicted) - ours["macro"]["f1"]) < 1e-12


@settings(max_examples=100, deadline=None)
@given(cases(), st.integers(0, 2**32 - 1))
def test_the_bootstrap_form_is_the_same_f1(case, seed: int) -> None:
    """compare_runs.py's vectorised form: a resample's weights give the macro F1 of the examples drawn."""
    gold, scores, thresholds = case
    predicted = decide.decide(scores, thresholds)
    rng = np.random.default_rng(seed)
    weights = compare_runs.resample_counts(rng, len(gold), 3)
    fast = compare_runs.weighted_macro_f1(weights, gold, [predicted])[:, 0]
    for w, value in zip(weights, fast, strict=True):
        rows = np.repeat(np.arange(len(gold)), w.astype(int))
        slow = decide.metrics(gold[rows], predicted[rows], ["x"] * gold.shape[1])["macro"]["f1"] if len(rows) else 0
        assert abs(value - slow) < 1e-12


@settings(max_examples=100, deadline=None)
@given(cases())
def test_at_least_one_adds_only_the_top_label(case) -> None:
    _, scores, thresholds = case
    plain, forced = decide.decide(scores, thresholds), decide.decide(scores, thresholds, at_least_one=True)
    assert forced.any(1).all()
    changed = (forced != plain).any(1)
    assert not plain[changed].any()
    assert (forced[changed].sum(1) == 1).all()
    assert (forced[changed].argmax(1) == scores[changed].argmax(1)).all()


@settings(max_examples=100, deadline=None)
@given(cases())
def test_tuned_thresholds_are_the_best_of_the_grid(case) -> None:
    """report.tune_thresholds: per label, no threshold of 0.01..0.99 beats the one chosen (by decide.metrics)."""
    gold, scores, _ = case
    tuned = report.tune_thresholds(gold.astype(np.float32), scores, 0.3)
    labels = [f"l{j}" for j in range(gold.shape[1])]
    chosen = decide.metrics(gold, decide.decide(scores, tuned), labels)["per_label"]
    for t in (0.05, 0.3, 0.55, 0.95):
        other = decide.metrics(gold, decide.decide(scores, t), labels)["per_label"]
        assert all(chosen[n]["f1"] >= other[n]["f1"] - 1e-12 for n in labels)
