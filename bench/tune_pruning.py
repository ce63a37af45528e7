"""What pruning saved in a tune.py study: the training steps (and seconds) its trials ran, against the steps they
would have run unpruned (each pruned trial's epochs x steps per epoch, from its settings and the training split).

    python bench/tune_pruning.py STUDY
    python bench/tune_pruning.py STUDY --finish OUT [--workers 2]

Steps are counted from each trial's SAVE_FP.dev.jsonl (its last dev score's global step); a pruned trial's steps
unpruned count its texts, a lower bound where long texts are read in several windows (it says so). Seconds
unpruned are an estimate: each pruned trial's remaining steps at the seconds per step of a straight line fitted to
the finished trials' (steps, seconds): its slope is the cost of a training step with its share of dev scoring,
without the fixed cost of loading the model and scoring test.

--finish measures it instead: every pruned trial is run again to its end with the very command the study ran (the
same seed and settings, so the same steps up to where it was pruned; this checkout's bert_model.py), in OUT/trials,
--workers at a time. The table then gives each one's seconds and dev macro F1 unpruned, and the last line whether
pruning threw away a trial that would have beaten the study's best.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tune  # noqa: E402
from multilabel import files, space  # noqa: E402


def full_steps(options: dict[str, str | None], n_train: int) -> int:
    n = min(n_train, int(options.get("max-train-examples") or n_train))
    return int(options.get("epochs") or 4) * math.ceil(n / int(options.get("batch-size") or 16))


def finish(trial, study_dir: Path, out: Path, which: str) -> tuple[float, float]:
    """Run a pruned trial's command to its end in OUT: (seconds, dev macro F1)."""
    trials = str(tune.trial_path(study_dir, trial.number).parent)
    cmd = [word.replace(trials, str(out / "trials")) for word in shlex.split(trial.user_attrs["command"])]
    cmd[:2] = [sys.executable, str(tune.ROOT / "bert_model.py")]  # this checkout's, the study's may be gone
    save_fp = tune.trial_path(out, trial.number)
    save_fp.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(tune.beside(save_fp, ".log"), "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"trial {trial.number} run to its end failed: see {tune.beside(save_fp, '.log')}")
    metrics = json.loads(tune.beside(save_fp, ".metrics.json").read_text())
    return time.monotonic() - start, tune.objective(metrics, which)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study")
    p.add_argument("--finish", type=Path, metavar="OUT", help="run the pruned trials to their end here")
    p.add_argument("--workers", type=int, default=2, help="--finish: runs at a time")
    args = p.parse_args(argv)
    try:
        study = tune.open_study(tune.parse_args([args.study]), create=False)
    except files.UserError as e:
        return files.fail("tune_pruning.py", e)
    if args.finish:
        return finish_pruned(study, Path(args.study).resolve(), args.finish.resolve(), args.workers)
    data = Path(study.user_attrs["data"])  # rows, not lines: a text may hold a line break in its quotes
    n_train = len(files.read_split(files.split_path(data, "train"), len(files.read_labels(data / files.LABELS_FILE)))
                  .texts)
    ran = full = 0
    windows = False  # a finished trial ran more steps than its texts make: texts read in several windows
    seconds_done, finished = 0.0, []
    print(f"{'trial':>5} {'state':<8} {'steps run':>9} {'steps unpruned':>14} {'seconds':>8} {'dev F1':>7}")
    for t in study.get_trials(deepcopy=False):
        progress = files.read_progress(files.progress_path(tune.trial_path(Path(args.study), t.number)))
        steps = progress[-1]["global_step"] if progress else 0
        counted = full_steps(space.fixed_options(tune.trial_args(t, study)), n_train)
        windows = windows or (t.state.name == "COMPLETE" and steps > counted)
        whole = steps if t.state.name == "COMPLETE" else counted
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
        if t.state.name == "COMPLETE":
            finished.append((steps, seconds))
        ran, full, seconds_done = ran + steps, full + (whole if t.state.name in ("COMPLETE", "PRUNED") else steps), \
            seconds_done + seconds
        value = t.value if t.value is not None else float("nan")
        print(f"{t.number:>5} {t.state.name:<8} {steps:>9} {whole:>14} {seconds:>8.0f} {value:>7.4f}")
    rate = float(np.polyfit(*zip(*finished, strict=True), 1)[0]) if len(finished) > 1 else float("nan")
    print(f"all trials: {ran} training steps run, {full} unpruned ({100 * (1 - ran / full):.0f}% saved); "
          f"{seconds_done:.0f} s of trials, unpruned about {seconds_done + (full - ran) * rate:.0f} s (estimate: "
          f"{rate:.3f} s per training step, fitted to the finished trials)")
    if windows:
        print("texts were read in windows (finished trials ran more steps than their texts make): a pruned trial's "
              "steps unpruned count texts, not windows, so they and the saving are lower bounds (--finish measures)")
    return 0


def finish_pruned(study, study_dir: Path, out: Path, workers: int) -> int:
    """Each pruned trial run to its end; the study's trials' seconds and best with and without pruning."""
    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    which = study.user_attrs.get("objective", "dev")
    with ThreadPoolExecutor(workers) as pool:
        ended = dict(zip([t.number for t in pruned],
                         pool.map(lambda t: finish(t, study_dir, out, which), pruned), strict=True))
    print(f"{'trial':>5} {'state':<8} {'seconds':>8} {'dev F1':>7} {'seconds unpruned':>16} {'dev F1 unpruned':>15}")
    pruned_s = unpruned_s = 0.0
    for t in trials:
        if t.state.name not in ("COMPLETE", "PRUNED"):
            continue
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        whole, value = ended.get(t.number, (seconds, t.value))
        pruned_s, unpruned_s = pruned_s + seconds, unpruned_s + whole
        shown = t.value if t.value is not None else float("nan")
        print(f"{t.number:>5} {t.state.name:<8} {seconds:>8.0f} {shown:>7.4f} {whole:>16.0f} {value:>15.4f}")
    best = max(t.value for t in trials if t.state.name == "COMPLETE")
    best_unpruned = max([best, *(v for _, v in ended.values())])
    print(f"trials' seconds: {pruned_s:.0f} pruned, {unpruned_s:.0f} unpruned (measured; "
          f"{100 * (1 - pruned_s / unpruned_s):.0f}% saved); best dev macro F1 {best:.4f} pruned, "
          f"{best_unpruned:.4f} unpruned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
