"""Put the runs of bert_model.py side by side: one table, seeds averaged, the paper's Table 4 beside it.

    python compare_runs.py runs/                      every metrics.json / *.metrics.json under runs/
    python compare_runs.py runs/ --format markdown --output results.md --plot f1.png
    python compare_runs.py runs/ --compare "bert-base-uncased" "bert-base-uncased lr=3e-05"
    python compare_runs.py runs/ --compare 1f3a09c2 runs/seed1/metrics.json --seed 7

Runs that differ only in their seed (and in bookkeeping: paths, logging, checkpointing, eval batch
size) form a group. For each group: the number of runs, per-label test F1 as mean ± std over the
runs, macro and micro F1 at the run's threshold (0.3) and with the per-label thresholds tuned on
dev, best epoch, time per epoch and peak memory; the paper's Table 4 beside it.

--compare A B: the difference in test macro F1 between two groups (or single runs), with a 95%
confidence interval and a p-value from a paired bootstrap over the test examples, recomputed from
the runs' predictions.tsv files. See docs/experiments.md for the grouping rule and how to read it.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multilabel import charts, decide, files, options, outputs
from multilabel.files import PAPER_F1, PAPER_LABELS, PAPER_MACRO_F1, UserError

# Grouping: runs whose options are equal wherever an option can change a result (files.NO_RESULT says which cannot)
# but the seed form a group. bert_model.py records those settings in metrics.json ("settings"); for a run from before
# it did, they are derived here as bert_model.py then defined them (LEGACY_*, frozen: never add to these).
LEGACY_NO_RESULT = files.NO_RESULT | {"eval_batch_size"}
LEGACY_LOSS_PARAMETERS = {"weighted-bce": ("pos_weight", "pos_weight_cap"), "focal": ("focal_gamma", "focal_alpha"),
                          "asl": ("asl_gamma_neg", "asl_gamma_pos", "asl_clip")}
# An option at the value runs had before it existed (or before it counted) is left out of a group's key, so that
# the group ids of older runs, quoted in notes and in bench/RESULTS.md, stay what they were.
LEGACY_DEFAULTS = {"compile": False, "loss": "bce", "add_tokens": None, "pos_weight": "sqrt-inverse",
                   "pos_weight_cap": 30.0, "focal_gamma": 2.0, "focal_alpha": 0.25, "asl_gamma_neg": 4.0,
                   "asl_gamma_pos": 0.0, "asl_clip": 0.05, "eval_batch_size": 128, "long_texts": "truncate"}
SHORT_NAMES = {"learning_rate": "lr", "head_learning_rate": "head_lr"}
FORMATS = ("text", "markdown", "tsv", "json")
TIE_TOLERANCE = 5e-7  # predictions.tsv rounds scores to 6 decimals: closer than this, trust its `predicted`
F1_TOLERANCE = 1e-6


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------ runs and groups


@dataclass
class Run:
    path: Path
    metrics: dict
    seed: object
    settings: dict

    @property
    def labels(self) -> list[str]:
        return self.metrics["labels"]

    @property
    def taxonomy(self) -> str:
        return self.metrics["taxonomy"]


@dataclass
class Group:
    id: str
    key: str
    runs: list[Run]
    label: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def taxonomy(self) -> str:
        return self.runs[0].taxonomy

    @property
    def labels(self) -> list[str]:
        return self.runs[0].labels

    @property
    def paper(self) -> str | None:
        """Which of the paper's label sets this is (Table 4 applies), else None."""
        return next((k for k, names in PAPER_LABELS.items() if set(self.labels) == names), None)


def find_metrics_files(paths: list[str]) -> list[Path]:
    """Each PATH as given if it is a file; a folder, searched recursively for metrics.json and *.metrics.json."""
    found: dict[Path, Path] = {}
    for name in paths:
        path = Path(name)
        if path.is_dir():
            hits = sorted(p for p in path.rglob("*metrics.json")
                          if p.is_file() and (p.name == "metrics.json" or p.name.endswith(".metrics.json")))
            if not hits:
                raise UserError(f"{path}: no metrics.json or *.metrics.json in this folder")
        elif path.is_file():
            hits = [path]
        else:
            raise UserError(f"{path}: no such file or folder")
        for hit in hits:
            found.setdefault(hit.resolve(), hit)
    return list(found.values())


def load_run(path: Path) -> Run:
    """One metrics.json of bert_model.py (files.read_metrics checks it), and the settings it groups by."""
    metrics = files.read_metrics(path)
    args = metrics["args"]
    if isinstance(metrics.get("settings"), dict):
        settings = dict(metrics["settings"])
    else:  # a run from before bert_model.py recorded its settings
        unused = {k for loss, names in LEGACY_LOSS_PARAMETERS.items() if loss != args.get("loss", "bce") for k in names}
        settings = {k: v for k, v in args.items() if k != "seed" and k not in LEGACY_NO_RESULT | unused}
    settings = {k: v for k, v in sorted(settings.items()) if not (k in LEGACY_DEFAULTS and v == LEGACY_DEFAULTS[k])}
    settings["world_size"] = metrics.get("world_size", 1)
    return Run(path=path, metrics=metrics, seed=args["seed"], settings=settings)


def settings_key(run: Run) -> str:
    """What must be equal for two runs to be averaged, but the data (group_runs adds it): settings, label set, and
    the test set's label counts. A group's id is made of it, where the data does not split it."""
    supports = [run.metrics["test"]["per_label"][n]["support"] for n in run.labels]
    return json.dumps({"settings": run.settings, "labels": run.labels, "test_supports": supports}, sort_keys=True)


def run_data(run: Run) -> list[str] | None:
    """The SHA-256 of each data file the run read, in the order it read them (train, dev, test, labels, then
    dataset.json and a taxonomy's mapping where read); None for a metrics.json from before they were recorded."""
    recorded = run.metrics.get("identity", {}).get("data") or run.metrics.get("data_sha256")
    return list(recorded.values()) if isinstance(recorded, dict) and recorded else None


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):  # e.g. --add-tokens: add_tokens=[NAME],[RELIGION]
        return ",".join(map(format_value, value))
    return "none" if value is None else str(value)


def group_runs(runs: list[Run]) -> list[Group]:
    """Seeds of one experiment (identity.py) form a group: runs of equal settings keys and the same data; each gets
    an id (a hash of the key) and a readable label. A run that records no checksums of its data (an older
    metrics.json) joins the runs of its settings where they all read one data, else a group of its own."""
    found: list[Group] = []
    by_settings: dict[str, list[Run]] = {}
    for run in runs:
        by_settings.setdefault(settings_key(run), []).append(run)
    for key, same in by_settings.items():
        by_data: dict[str, list[Run]] = {}
        for run in same:
            by_data.setdefault(json.dumps(run_data(run)), []).append(run)
        known = [k for k in by_data if k != "null"]
        if len(known) == 1 and "null" in by_data:
            by_data[known[0]] += by_data.pop("null")
        for data, members in by_data.items():
            full = key if len(by_data) == 1 else json.dumps({**json.loads(key), "data": json.loads(data)})
            found.append(Group(id=hashlib.sha1(full.encode()).hexdigest()[:8], key=full, runs=members,
                               settings=members[0].settings))
    unknown = [r for r in runs if run_data(r) is None]
    if unknown:
        note(f"{len(unknown)} run(s) record no checksums of their data ({unknown[0].path}"
             f"{', ...' if len(unknown) > 1 else ''}: a metrics.json from before they were kept): grouped by their "
             f"settings, beside runs of one data; runs on other data cannot be told apart")
    name_groups(found)
    for group in found:
        group.runs.sort(key=lambda r: (str(r.seed), str(r.path)))
        seeds = [str(r.seed) for r in group.runs]
        for seed in sorted({s for s in seeds if seeds.count(s) > 1}):
            note(f"group {group.label!r} has seed {seed} more than once "
                 f"({', '.join(str(r.path) for r in group.runs if str(r.seed) == seed)})")
    return sorted(found, key=lambda g: (list(PAPER_MACRO_F1).index(g.taxonomy), g.label))


def name_groups(groups: list[Group]) -> None:
    """Label: the model's basename (its parent's, for a folder called model), then key=value for each
    setting that is not the same in every group."""
    keys = sorted({k for g in groups for k in g.settings} - {"transformer_model"})
    own = {k for names in LEGACY_LOSS_PARAMETERS.values() for k in names}  # shown only beside their own loss

    def value(k: str, g: Group) -> object:
        return g.settings.get(k, LEGACY_DEFAULTS.get(k))

    def shown(k: str, g: Group) -> bool:
        return k not in own or k in LEGACY_LOSS_PARAMETERS.get(str(value("loss", g)), ())

    differing = [k for k in keys if len({json.dumps(value(k, g)) for g in groups if shown(k, g)}) > 1]
    for g in groups:
        path = Path(str(g.settings.get("transformer_model", "model")).rstrip("/"))
        model = (path.parent.name if path.name == "model" else path.name) or "model"  # .../NAME/model: NAME
        parts = [f"{SHORT_NAMES.get(k, k)}={format_value(value(k, g))}" for k in differing if shown(k, g)]
        g.label = " ".join([model, *parts])
    labels = [g.label for g in groups]
    for g in groups:
        if labels.count(g.label) > 1:  # same visible settings, e.g. another test set or model path
            g.label = f"{g.label} #{g.id}"


# ----------------------------------------------------------------------------------------- the table


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); std is None for a single value, both None for none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    arr = np.array(values)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def run_summary(run: Run) -> dict:
    m = run.metrics
    times = [h.get("epoch_time_s") for h in m["history"] if isinstance(h, dict) and h.get("epoch_time_s")]
    return {
        "path": str(run.path), "seed": run.seed,
        "test_macro_f1": m["test"]["macro"]["f1"], "test_micro_f1": m["test"]["micro"]["f1"],
        "test_tuned_macro_f1": m["test_tuned"]["macro"]["f1"], "test_tuned_micro_f1": m["test_tuned"]["micro"]["f1"],
        "dev_macro_f1": m.get("dev", {}).get("macro", {}).get("f1"),
        "dev_tuned_macro_f1": m.get("dev_tuned", {}).get("macro", {}).get("f1"),
        "best_epoch": m["best_epoch"], "epoch_time_s": float(np.mean(times)) if times else None,
        "peak_rss_mb": m.get("peak_rss_mb"), "peak_gpu_mb": m.get("peak_gpu_mb"),
    }


Row = tuple[str, str, float | None, float | None, float | None]


def group_rows(group: Group, per_label: str = "test") -> list[Row]:
    """(metric name, row title, mean, std, paper) for every row of the table, in order; the per-label F1 at the
    run's threshold (per_label "test") or with the dev-tuned thresholds ("test_tuned")."""
    runs = [r.metrics for r in group.runs]
    summaries = [run_summary(r) for r in group.runs]
    original = group.paper == "original"
    rows = []
    for name in group.labels:
        mean, std = mean_std([m[per_label]["per_label"][name]["f1"] for m in runs])
        rows.append((f"f1/{name}", name, mean, std, PAPER_F1.get(name) if original else None))
    threshold = format_value(float(runs[0]["threshold"]))
    for key, title, paper in (
        ("test_macro_f1", f"macro F1 @{threshold}", PAPER_MACRO_F1.get(group.paper)),
        ("test_micro_f1", f"micro F1 @{threshold}", None),
        ("test_tuned_macro_f1", "macro F1 tuned", None),
        ("test_tuned_micro_f1", "micro F1 tuned", None),
        ("dev_macro_f1", f"dev macro F1 @{threshold}", None),  # what to choose on
        ("dev_tuned_macro_f1", "dev macro F1 tuned", None),  # tuned on dev itself: optimistic
        ("best_epoch", "best epoch", None),
        ("epoch_time_s", "time/epoch (s)", None),
        ("peak_rss_mb", "peak RSS (MB)", None),
        ("peak_gpu_mb", "peak GPU (MB)", None),
    ):
        rows.append((key, title, *mean_std([s[key] for s in summaries]), paper))
    return rows


def format_cell(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def digits_for(metric: str) -> int:
    return 3 if "f1" in metric else 1 if metric in ("best_epoch", "epoch_time_s") else 0


def wide_table(groups: list[Group], per_label: str = "test") -> pd.DataFrame:
    """One label set's groups as columns (plus the paper's, for its label sets), one row per label and summary
    metric."""
    table: dict[str, list[str]] = {}
    index = ["group id", "runs"]
    for g in groups:
        rows = group_rows(g, per_label)
        seeds = ", ".join(str(r.seed) for r in g.runs)
        table[g.label] = [g.id, f"{len(g.runs)} (seed {seeds})"]
        table[g.label] += [format_cell(mean, std, digits_for(key)) for key, _, mean, std, _ in rows]
    rows = group_rows(groups[0])
    index += [title for _, title, *_ in rows]
    if groups[0].paper:
        table["paper"] = ["", ""] + ["" if paper is None else f"{paper:.2f}" for *_, paper in rows]
    return pd.DataFrame(table, index=index)


def by_taxonomy(groups: list[Group]) -> list[list[Group]]:
    """One table per label set (--taxonomy ekman and Ekman's names prepared by prepare_data.py share one)."""
    out: dict[tuple, list[Group]] = {}
    for g in groups:
        out.setdefault(tuple(g.labels), []).append(g)
    return list(out.values())


def label_set_name(group: Group) -> str:
    labels = group.labels
    return f"{group.paper} taxonomy" if group.paper else (
        f"{len(labels)} labels ({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''})")


def render_text(df: pd.DataFrame, title: str) -> str:
    width = max(len(str(i)) for i in df.index)
    cols = [max(len(c), *(len(v) for v in df[c])) for c in df.columns]
    lines = [title, "", " " * width + "".join(f"  {c:>{w}}" for c, w in zip(df.columns, cols, strict=True))]
    for name, row in df.iterrows():
        lines.append(f"{name:<{width}}" + "".join(f"  {v:>{w}}" for v, w in zip(row, cols, strict=True)))
    return "\n".join(lines)


def render_markdown(df: pd.DataFrame, title: str) -> str:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    lines = [f"### {title}", "", cells(["", *df.columns]), "|---|" + "---:|" * len(df.columns)]
    lines += [cells([str(name), *row]) for name, row in df.iterrows()]
    return "\n".join(lines)


def tsv_rows(groups: list[Group], per_label: str = "test") -> list[str]:
    """Long format, one row per group and metric: easy to read back with pandas."""
    lines = ["\t".join(["group_id", "group_label", "taxonomy", "metric", "n_runs", "mean", "std", "paper"])]
    for g in groups:
        for key, _, mean, std, paper in group_rows(g, per_label):
            values = ["" if v is None else repr(float(v)) for v in (mean, std, paper)]
            lines.append("\t".join([g.id, g.label, g.taxonomy, key, str(len(g.runs)), *values]))
    return lines


def group_json(group: Group, per_label: str = "test") -> dict:
    rows = group_rows(group, per_label)
    mean, std = next((m, s) for key, _, m, s, _ in rows if key == "test_macro_f1")
    return {
        "id": group.id, "label": group.label, "taxonomy": group.taxonomy, "settings": group.settings,
        "n_runs": len(group.runs), "runs": [run_summary(r) for r in group.runs],
        "test_macro_f1": {"mean": mean, "std": std},
        "metrics": {key: {"mean": m, "std": s, "paper": p} for key, _, m, s, p in rows},
    }


# ---------------------------------------------------------------------------------- the significance test


@dataclass
class Side:
    """One side of --compare: a group, or a single run given by its metrics file."""
    name: str
    runs: list[Run]
    id: str | None = None


def predictions_candidates(run: Run) -> list[Path]:
    """Where a run's predictions.tsv may be, most trusted first."""
    args, out = run.metrics["args"], []
    given = args.get("predictions_file")
    if given:
        given = Path(given)
        if given.is_absolute():
            out.append(given)
        else:
            metrics_file = args.get("metrics_file")
            parts = Path(metrics_file).parts if metrics_file and not Path(metrics_file).is_absolute() else ()
            here = run.path.resolve().parts
            if parts and len(here) > len(parts) and here[-len(parts):] == parts:
                out.append(Path(*here[:-len(parts)]) / given)  # the folder the run was started in
    name = run.path.name
    beside = "predictions.tsv" if name == "metrics.json" else name[:-len("metrics.json")] + "predictions.tsv"
    out.append(run.path.parent / beside)
    if given and not given.is_absolute():
        out.append(given)  # relative to the current folder
    return out


def find_predictions(run: Run) -> Path:
    found: dict[Path, Path] = {}
    for path in predictions_candidates(run):
        if path.is_file():
            found.setdefault(path.resolve(), path)
    if not found:
        tried = ", ".join(dict.fromkeys(str(p) for p in predictions_candidates(run)))
        raise UserError(f"{run.path}: no predictions file found (looked for {tried})")
    paths = list(found.values())
    if len(paths) > 1:
        note(f"{run.path}: using predictions {paths[0]} (also found {', '.join(map(str, paths[1:]))})")
    return paths[0]


@dataclass
class Predictions:
    ids: list[str]
    gold: np.ndarray  # examples x labels, bool
    predicted: np.ndarray  # at the run's threshold, from the scores


def read_predictions(path: Path, labels: list[str], threshold: float | np.ndarray,
                     reported: float | None = None) -> Predictions:
    """A run's predictions.tsv (files.read_predictions), predicted again at `threshold`: a scalar is the run's own,
    where a score rounded onto it keeps the file's own decision; per-label thresholds (tuned on dev) have no column
    of decisions, so scores rounded onto them are settled by the macro F1 the run REPORTED (settle_ties)."""
    found = files.read_predictions(path, labels)
    predicted = decide.decide(found.scores, threshold)
    ties = list(zip(*np.nonzero(np.abs(found.scores - threshold) < TIE_TOLERANCE), strict=True))
    if np.isscalar(threshold):  # the file's `predicted` column is at the run's threshold
        for i, j in ties:
            predicted[i, j] = j in found.predicted[i]
    elif reported is not None:
        predicted = settle_ties(found.gold, predicted, ties, reported)
    return Predictions(ids=found.ids, gold=found.gold, predicted=predicted)


def settle_ties(gold: np.ndarray, predicted: np.ndarray, ties: list[tuple[int, int]], reported: float,
                most: int = 12) -> np.ndarray:
    """The decisions on scores that the file's 6 decimals rounded onto their threshold (the run saw the unrounded
    score: either side): the first of the 2^ties choices that gives the REPORTED macro F1. Unchanged where there
    are no ties, more than MOST, or no choice gives it (then the F1 check refuses the file)."""
    if not ties or len(ties) > most or abs(decide.macro_f1(gold, predicted) - reported) <= F1_TOLERANCE:
        return predicted
    for choice in itertools.product((False, True), repeat=len(ties)):
        trial = predicted.copy()
        for (i, j), on in zip(ties, choice, strict=True):
            trial[i, j] = on
        if abs(decide.macro_f1(gold, trial) - reported) <= F1_TOLERANCE:
            return trial
    return predicted


def load_side_predictions(side: Side, key: str) -> list[Predictions]:
    """Each run's test predictions at its threshold (0.3; key "test"), or at its per-label thresholds tuned on dev
    ("test_tuned")."""
    out = []
    for run in side.runs:
        path = find_predictions(run)
        if key == "test_tuned":
            tuned = run.metrics.get("thresholds")
            if not isinstance(tuned, dict) or set(tuned) != set(run.labels):
                raise UserError(f"{run.path}: no dev-tuned threshold for every label ('thresholds')")
            threshold = np.array([float(tuned[n]) for n in run.labels])
        else:
            threshold = float(run.metrics["threshold"])
        reported = run.metrics[key]["macro"]["f1"]
        preds = read_predictions(path, run.labels, threshold, reported)
        recomputed = decide.macro_f1(preds.gold, preds.predicted)
        if abs(recomputed - reported) > F1_TOLERANCE:
            raise UserError(f"{path}: test macro F1 {'with dev-tuned thresholds ' * (key == 'test_tuned')}from its "
                            f"scores is {recomputed:.6f}, but {run.path} says {reported:.6f}: not this run's "
                            f"predictions, or edited")
        out.append(preds)
    return out


def check_comparable(preds: list[Predictions], runs: list[Run]) -> list[Predictions]:
    """Every run on the same labels and test set (ids and gold labels); rows put in the first run's order. (The
    taxonomy may differ: --taxonomy ekman and Ekman's names prepared by prepare_data.py are the same labels.)"""
    first, ref = runs[0], preds[0]
    for run, p in zip(runs, preds, strict=True):
        if run.labels != first.labels:
            raise UserError(f"{run.path}: labels ({run.taxonomy}, {len(run.labels)} labels) differ from "
                            f"{first.path}'s ({first.taxonomy}, {len(first.labels)} labels); refusing to compare")
        if set(p.ids) != set(ref.ids):
            raise UserError(f"{run.path}: scored on different test examples than {first.path} "
                            f"({len(p.ids)} vs {len(ref.ids)} ids, {len(set(p.ids) ^ set(ref.ids))} not shared); "
                            f"refusing to compare")
    aligned = []
    for run, p in zip(runs, preds, strict=True):
        position = {example: k for k, example in enumerate(p.ids)}
        order = [position[example] for example in ref.ids]
        q = Predictions(ids=ref.ids, gold=p.gold[order], predicted=p.predicted[order])
        if not np.array_equal(q.gold, ref.gold):
            n = int((q.gold != ref.gold).any(1).sum())
            raise UserError(f"{run.path}: gold labels differ from {first.path}'s on {n} test examples; "
                            f"refusing to compare")
        aligned.append(q)
    return aligned


def resample_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """`size` bootstrap resamples of n examples, as how often each example is drawn (size x n)."""
    draws = rng.integers(0, n, size=(size, n))
    flat = (draws + np.arange(size)[:, None] * n).ravel()
    return np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)


def weighted_macro_f1(weights: np.ndarray, gold: np.ndarray, predicted: list[np.ndarray]) -> np.ndarray:
    """Macro F1 of each run on each resample (resamples x runs): TP and counts as weighted sums (decide.py)."""
    return np.stack([decide.macro_f1(gold, p, weights) for p in predicted], 1)


def paired_bootstrap(gold: np.ndarray, pred_a: list[np.ndarray], pred_b: list[np.ndarray], resamples: int,
                     seed: int, chunk: int = 500) -> dict:
    """Mean macro F1 of A's runs minus B's, on the test set and on `resamples` paired resamples of it."""
    n = gold.shape[0]
    full = weighted_macro_f1(np.ones((1, n)), gold, pred_a + pred_b)[0]
    score_a, score_b = float(full[:len(pred_a)].mean()), float(full[len(pred_a):].mean())
    diff = score_a - score_b
    rng, deltas = np.random.default_rng(seed), []
    for start in range(0, resamples, chunk):
        scores = weighted_macro_f1(resample_counts(rng, n, min(chunk, resamples - start)), gold, pred_a + pred_b)
        deltas.append(scores[:, :len(pred_a)].mean(1) - scores[:, len(pred_a):].mean(1))
    deltas = np.concatenate(deltas)
    low, high = np.percentile(deltas, [2.5, 97.5])
    # Two-sided: how often the resampled difference strays from the observed one by at least the observed
    # difference itself (the bootstrap distribution shifted to the null of no difference).
    extreme = int(np.sum(np.abs(deltas - diff) >= abs(diff) - 1e-12))
    return {"score_a": score_a, "score_b": score_b, "difference": diff, "ci_low": float(low),
            "ci_high": float(high), "p_value": (extreme + 1) / (resamples + 1)}


def verdict(a: str, b: str, result: dict) -> str:
    diff, low, high, p = (result[k] for k in ("difference", "ci_low", "ci_high", "p_value"))
    p_text = f"p = {p:.3g}" if p >= 0.001 else f"p = {p:.1e}"
    if p >= 0.05:
        return (f"no significant difference at 5%: {a} minus {b} is {diff:+.3f} macro F1 "
                f"(95% CI {low:.3f} to {high:.3f}, {p_text})")
    better, worse, sign = (a, b, 1) if diff > 0 else (b, a, -1)
    lo, hi = sorted((sign * low, sign * high))
    return f"{better} is better than {worse} by {abs(diff):.3f} macro F1 (95% CI {lo:.3f} to {hi:.3f}, {p_text})"


def compare(a: Side, b: Side, resamples: int, seed: int, key: str = "test") -> dict:
    preds = load_side_predictions(a, key) + load_side_predictions(b, key)
    preds = check_comparable(preds, a.runs + b.runs)
    gold = preds[0].gold
    result = paired_bootstrap(gold, [p.predicted for p in preds[:len(a.runs)]],
                              [p.predicted for p in preds[len(a.runs):]], resamples, seed)
    sides = {k: {"name": s.name, "id": s.id, "runs": [str(r.path) for r in s.runs],
                 "seeds": [r.seed for r in s.runs]} for k, s in (("a", a), ("b", b))}
    metric = ("test macro F1 with dev-tuned thresholds" if key == "test_tuned" else
              "test macro F1 at the run's threshold")
    return {**sides, "metric": metric, "test": "paired bootstrap",
            "examples": int(gold.shape[0]), "resamples": resamples, "seed": seed, **result,
            "sentence": verdict(a.name, b.name, result)}


def resolve_side(name: str, groups: list[Group]) -> Side:
    """A group label, a group id (or a unique prefix of one, 4 characters or more), or one run's metrics file."""
    path = Path(name)
    if path.exists():
        found = find_metrics_files([name])
        if len(found) != 1:
            raise UserError(f"{path}: a folder with {len(found)} metrics files; give one run's metrics.json "
                            f"or a group label or id")
        return Side(name=str(found[0]), runs=[load_run(found[0])])
    matches = [g for g in groups if g.label == name] or [g for g in groups if g.id == name]
    if not matches and len(name) >= 4:
        matches = [g for g in groups if g.id.startswith(name)]
    if len(matches) != 1:
        known = "; ".join(f"{g.id} {g.label!r}" for g in groups) or "none: give PATHs to search"
        raise UserError(f"--compare {name!r}: {'ambiguous' if matches else 'no such'} group or metrics file "
                        f"(groups: {known})")
    return Side(name=matches[0].label, runs=matches[0].runs, id=matches[0].id)


def comparison_text(c: dict) -> str:
    lines = [f"Paired bootstrap over {c['examples']} test examples, {c['resamples']} resamples, seed {c['seed']}:"]
    for key, score in (("a", c["score_a"]), ("b", c["score_b"])):
        side = c[key]
        lines.append(f"  {key.upper()}: {side['name']} ({len(side['runs'])} run{'s' * (len(side['runs']) > 1)}): "
                     f"test macro F1{' (dev-tuned thresholds)' * ('tuned' in c['metric'])} {score:.4f}")
    lines.append(f"  A - B = {c['difference']:+.4f} (95% CI {c['ci_low']:+.4f} to {c['ci_high']:+.4f}), "
                 f"p = {c['p_value']:.4g}")
    lines.append(c["sentence"])
    return "\n".join(lines)


def comparison_tsv(c: dict) -> list[str]:
    keys = ["examples", "resamples", "seed", "score_a", "score_b", "difference", "ci_low", "ci_high", "p_value"]
    return ["\t".join(["a", "b", *keys]), "\t".join([c["a"]["name"], c["b"]["name"], *(str(c[k]) for k in keys)])]


# ------------------------------------------------------------------------------------------- output


def render(groups: list[Group], comparison: dict | None, fmt: str, per_label: str = "test") -> str:
    if fmt == "json":
        out = {"groups": [group_json(g, per_label) for g in groups]}
        if comparison:
            out["comparison"] = comparison
        return json.dumps(out, indent=1) + "\n"
    if fmt == "tsv":
        lines = tsv_rows(groups, per_label) if groups else []
        if comparison:
            lines += ([""] if lines else []) + comparison_tsv(comparison)
        return "\n".join(lines) + "\n"
    blocks = []
    for table_groups in by_taxonomy(groups):
        n_runs = sum(len(g.runs) for g in table_groups)
        title = (f"{label_set_name(table_groups[0])}: {len(table_groups)} group(s), {n_runs} run(s), test set"
                 + (", per-label F1 with dev-tuned thresholds" if per_label == "test_tuned" else "")
                 + ("; paper = Demszky et al. 2020, Table 4" if table_groups[0].paper else ""))
        df = wide_table(table_groups, per_label)
        blocks.append(render_markdown(df, title) if fmt == "markdown" else render_text(df, title))
    if comparison:
        text = comparison_text(comparison)
        blocks.append(f"### Significance\n\n```\n{text}\n```" if fmt == "markdown" else text)
    return "\n\n".join(blocks) + "\n"


def plot_png(groups: list[Group]) -> bytes:
    """Per-label test F1 (mean, error bars: std over seeds) of each group beside the paper's, per taxonomy."""
    plt = charts.pyplot()
    tables = by_taxonomy(groups)
    fig, axes = plt.subplots(len(tables), 1, figsize=(13, 5 * len(tables)), squeeze=False)
    for ax, table_groups in zip(axes[:, 0], tables, strict=True):
        labels, paper = table_groups[0].labels, table_groups[0].paper
        bars = len(table_groups) + (paper == "original")
        width, x = 0.8 / bars, np.arange(len(labels))
        for i, g in enumerate(table_groups):
            stats = [mean_std([r.metrics["test"]["per_label"][n]["f1"] for r in g.runs]) for n in labels]
            ax.bar(x + (i - (bars - 1) / 2) * width, [m for m, _ in stats], width,
                   yerr=[s or 0 for _, s in stats], capsize=2, label=f"{g.label} (n={len(g.runs)})")
        if paper == "original":
            ax.bar(x + (bars - 1) / 2 * width, [PAPER_F1.get(n, 0) for n in labels], width,
                   label="paper (Table 4)", color="0.6")
        ax.set_xticks(x, labels, rotation=60, ha="right")
        ax.set_ylabel("test F1")
        ax.set_title(f"{label_set_name(table_groups[0])}: test F1 per label, mean ± std over seeds"
                     + (f" (paper macro F1 {PAPER_MACRO_F1[paper]:.2f})" if paper else ""))
        ax.legend(fontsize="small")
    fig.tight_layout()
    return charts.png(fig)


def runs_files(runs: list[Run]) -> list[outputs.Input]:
    """What an output must never replace: each run's metrics.json, its predictions and its plot (read or not)."""
    found = []
    for run in runs:
        found.append(outputs.Input(run.path, "a run's metrics file"))
        found += [outputs.Input(p, "a run's predictions", role="one of the runs' files") for p in
                  predictions_candidates(run) if p.is_file()]
        found.append(outputs.Input(run.path.with_suffix(".png"), "a run's plot", role="one of the runs' files"))
    return found


def report_outputs(args: argparse.Namespace) -> list[outputs.Output]:
    """--output and --plot, in folders that exist (nothing is created on error)."""
    found = [outputs.Output(Path(args.output), "the table (--output)") if args.output else None,
             outputs.Output(Path(args.plot), "the plot (--plot)", ours=outputs.png) if args.plot else None]
    for out in filter(None, found):
        if not out.path.parent.is_dir():
            raise UserError(f"{out.path}: folder {out.path.parent} does not exist")
    return list(filter(None, found))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="a metrics.json, or a folder searched for them")
    p.add_argument("--format", choices=FORMATS, default="text", help="text (default), markdown, tsv or json")
    p.add_argument("--output", help="write here (atomically) instead of to stdout")
    p.add_argument("--plot", help="PNG: per-label test F1 with error bars beside the paper's")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="test macro F1 of A minus B, paired bootstrap; a group label or id, or a metrics.json")
    p.add_argument("--thresholds", choices=["run", "tuned"], default="run",
                   help="per-label F1 and --compare at each run's threshold (run, default: 0.3) or its per-label "
                   "dev-tuned ones")
    p.add_argument("--resamples", type=options.Range(int, low=100), default=10_000,
                   help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=options.WHOLE_0, default=0, help="random seed of the bootstrap (default 0)")
    options.describe_ranges(p)
    args = p.parse_args(argv)
    try:
        if not args.paths and not args.compare:
            raise UserError("nothing to do: give PATHs (metrics.json files or folders) or --compare A B")
        if args.plot and not args.paths:
            raise UserError("--plot needs PATHs to plot")
        key = "test_tuned" if args.thresholds == "tuned" else "test"  # the metrics block, and the thresholds
        runs = [load_run(f) for f in find_metrics_files(args.paths)]
        groups = group_runs(runs)
        sides = [resolve_side(name, groups) for name in args.compare or []]
        with outputs.claim("compare_runs.py", runs_files(runs + [r for side in sides for r in side.runs]),
                           report_outputs(args)):
            comparison = compare(*sides, args.resamples, args.seed, key) if sides else None
            text = render(groups, comparison, args.format, key)
            png = plot_png(groups) if args.plot else None
            if args.output:
                files.atomic_write(args.output, text, "the table")
            else:
                sys.stdout.write(text)
            if png is not None:
                files.atomic_write(args.plot, png, "the plot")
    except UserError as e:
        return files.fail("compare_runs.py", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
