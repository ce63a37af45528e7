"""What pruning saved in a tune.py study: the training steps (and seconds) its trials ran, against the steps they
would have run unpruned (each pruned trial's epochs x steps per epoch, from its settings and the training split).

    python bench/tune_pruning.py STUDY

Steps are counted from each trial's SAVE_FP.dev.jsonl (its last dev score's global step). Seconds unpruned are an
estimate: each pruned trial's remaining steps at the seconds per step of a straight line fitted to the finished
trials' (steps, seconds): its slope is the cost of a training step with its share of dev scoring, without the
fixed cost of loading the model and scoring test.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tune  # noqa: E402
from multilabel import files  # noqa: E402


def full_steps(options: dict[str, str | None], n_train: int) -> int:
    n = min(n_train, int(options.get("max-train-examples") or n_train))
    return int(options.get("epochs") or 4) * math.ceil(n / int(options.get("batch-size") or 16))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study")
    args = p.parse_args(argv)
    study = tune.open_study(tune.parse_args([args.study]), create=False)
    n_train = len(files.read_lines(Path(study.user_attrs["data"]) / "train.tsv", "the training split"))
    ran = full = 0
    seconds_done, finished = 0.0, []
    print(f"{'trial':>5} {'state':<8} {'steps run':>9} {'steps unpruned':>14} {'seconds':>8} {'dev F1':>7}")
    for t in study.get_trials(deepcopy=False):
        progress = files.read_progress(files.progress_path(tune.trial_path(Path(args.study), t.number)))
        steps = progress[-1]["global_step"] if progress else 0
        whole = full_steps(tune.fixed_options(tune.trial_args(t, study)), n_train)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
