"""Search bert_model.py's settings: Optuna's TPE sampler and median pruner, each trial an ordinary bert_model.py run.

    python tune.py STUDY --data DATA_DIR [--trials N | --hours H] [--workers N] [-- FIXED bert_model.py options]
    qsub -t 1-8 -v STUDY=...,DATA_DIR=... tune.com          eight workers on one study (Grid Engine)
    python tune.py STUDY --report                            the trials so far: a table, the best command, a plot
    python tune.py STUDY --confirm 2                         the best 2 and the baseline, 3 seeds each, on test

STUDY is a folder: the study's journal (Optuna's JournalStorage on a file, locked with O_EXCL, which works on NFS;
a last line cut by a killed writer is removed under that lock; or --storage URL for a database), and one run
folder per trial, trials/trial-NNNN (the model folder) with its .metrics.json, .predictions.tsv, .dev.jsonl, .log
and .lease.json beside it. The search space is a small file
(sweeps/space.txt). A trial reports its dev macro F1 every --dev-every training examples (bert_model.py writes it
to SAVE_FP.dev.jsonl); a trial below the median of the finished trials of its length (its epochs) at the same
point is stopped with SIGTERM (it checkpoints and exits 99) and marked pruned. The objective is dev macro F1 (at
the threshold, or with thresholds tuned on dev); test is never read during the search.

Cluster-proof: each worker holds a lease on its trial (a file it rewrites every --heartbeat seconds). A trial whose
worker is gone (its lease expired, or its process dead on this host, or it is this Grid Engine task before a
requeue) is taken over by the next worker that looks: resumed from its checkpoint (--resume) if it has one, else
marked failed. Taking over is claimed with an atomic mkdir, so two workers never run the same trial. A worker
stopped by SIGTERM/SIGUSR1/SIGUSR2 stops its trial at a checkpoint and exits 99 (Grid Engine requeues it).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from multilabel import files, identity, options, outputs, shared_study, space
from multilabel.files import UserError

PROG = "tune.py"
ROOT = Path(__file__).resolve().parent
EXIT_REQUEUE = 99  # multilabel/checkpoint.py's (not imported here: it imports torch)
STUDY_NAME = "tune"
FORMAT = "tune-study-1"
SPLIT_FILES = ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")
FILE_ROLES = {"train.tsv": "train", "dev.tsv": "dev", "test.tsv": "test", "emotions.txt": "labels",
              "dataset.json": "dataset", "ekman_mapping.json": "taxonomy", "sentiment_dict.json": "taxonomy"}
CPU_RECIPE = ROOT / "sweeps" / "cpu-recipe.txt"  # the CPU recipe's options, in the one place they are written


# -------------------------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if args.report:
            return report(args)
        if args.confirm:
            return confirm(args)
        return search(args)
    except UserError as e:
        return files.fail(PROG, e)
    except OSError as e:  # the study folder, or a file in it, cannot be made or written: read-only, a file in the way
        return files.fail(PROG, f"{e.filename or args.study}: {e.strerror or e}")


def search(args: argparse.Namespace) -> int:
    """Create or join the study, then work on it: here, or in --workers processes."""
    if args.lease < 2 * args.heartbeat:  # a late renewal must not make a live worker's trial look abandoned
        raise UserError(f"--lease {args.lease:g} is less than twice --heartbeat {args.heartbeat:g}: other workers "
                        "would take over trials whose workers are alive (lengthen --lease or shorten --heartbeat)")
    study = open_study(args, create=True)
    if args.workers > 1:
        return run_workers(args)
    return Worker(args, study).run()


# -------------------------------------------------------------------------------------------- arguments


def parse_args(argv: list[str]) -> argparse.Namespace:
    """tune.py's options, then after `--` the fixed bert_model.py options of every trial."""
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help="the study's folder (created by the first worker)")
    p.add_argument("--data", help="DATA_DIR: train.tsv dev.tsv test.tsv emotions.txt (default: the study's)")
    p.add_argument("--space", default=str(ROOT / "sweeps" / "space.txt"), help="the search space file")
    p.add_argument("--trials", type=options.WHOLE_1, default=20, help="trials in the whole study, all workers together")
    p.add_argument("--hours", type=options.NON_NEGATIVE, default=0,
                   help="no new trial after this long since the study began")
    p.add_argument("--workers", type=options.WHOLE_1, default=1,
                   help="worker processes here (Grid Engine: one per task)")
    p.add_argument("--objective", choices=["dev", "dev-tuned"], default="dev",
                   help="dev macro F1 at the threshold (0.3), or with per-label thresholds tuned on dev")
    p.add_argument("--dev-every", type=options.WHOLE_1, default=10_000, metavar="EXAMPLES",
                   help="score dev every this many training examples, for the pruner (and at epochs' ends)")
    p.add_argument("--pruner", choices=["median", "none"], default="median")
    p.add_argument("--prune-after", type=options.WHOLE_1, default=4,
                   help="finished trials of the same epochs with a score at a point before one is pruned there")
    p.add_argument("--random-trials", type=options.WHOLE_0, default=8,
                   help="trials sampled at random before TPE models")
    p.add_argument("--sampler-seed", type=options.SEED, help="TPE's seed (each worker adds its number)")
    p.add_argument("--storage", help="an Optuna RDB URL (sqlite:///..., postgresql://...) instead of the journal")
    p.add_argument("--heartbeat", type=options.POSITIVE, default=30, help="seconds between a worker's lease renewals")
    p.add_argument("--lease", type=options.POSITIVE, default=300, help="a trial unrenewed this long is taken over")
    p.add_argument("--report", action="store_true", help="print the trials, the best command; draw --plot")
    p.add_argument("--plot", help="PNG of --report (default STUDY/report.png)")
    p.add_argument("--confirm", type=options.WHOLE_0, default=0, metavar="K",
                   help="rerun the best K and the baseline, seeds")
    p.add_argument("--seeds", type=options.WHOLE_1, default=3, help="--confirm: seeds each (42, 43, ...)")
    p.add_argument("--baseline", help="--confirm: the recipe to beat, as bert_model.py options (default: the CPU "
                   "recipe, sweeps/cpu-recipe.txt)")
    p.add_argument("--task", type=options.WHOLE_0, default=0,
                   help="--confirm: run only this run (an array task), 1-based")
    p.add_argument("--python", default=sys.executable, help="the interpreter of the bert_model.py runs")
    options.describe_ranges(p)
    args = p.parse_args(argv[:cut])
    args.fixed, args.argv = argv[cut + 1:], argv
    args.study = Path(args.study)
    return args


# -------------------------------------------------------------------------------------------- the study


def storage_for(args: argparse.Namespace) -> optuna.storages.BaseStorage | str:
    if args.storage:
        return args.storage
    return shared_study.journal_storage(args.study / "journal.log")


def data_dir(args: argparse.Namespace, study: optuna.Study | None) -> Path:
    given = args.data or (study.user_attrs.get("data") if study else None)
    if not given:
        raise UserError("no --data DATA_DIR (the folder with train.tsv, dev.tsv, test.tsv and emotions.txt)")
    return Path(given).resolve()


def data_checksums(folder: Path, fixed: list[str]) -> dict[str, str]:
    """SHA-256 of each data file a trial reads, by role (identity.py: the paths may differ from node to node)."""
    for name in SPLIT_FILES:
        files.regular_file(folder / name)  # a pipe: one line, not "file not found"
    missing = [name for name in SPLIT_FILES if not (folder / name).exists()]
    if missing:
        raise UserError(f"{folder / missing[0]}: file not found (--data needs {', '.join(SPLIT_FILES)})")
    taxonomy = space.fixed_options(fixed).get("taxonomy") or "original"
    train, dev, test, labels = files.folder_files(folder)
    return identity.data_checksums({"train": train, "dev": dev, "test": test, "labels": labels, "taxonomy": taxonomy})


def open_study(args: argparse.Namespace, create: bool) -> optuna.Study:
    """The study in args.study: created (or joined) with this search's settings, which must be the study's."""
    journal = args.study / "journal.log"
    if not create:
        if not args.storage and not journal.exists():
            raise UserError(f"{args.study}: no study here (no journal.log): start one with tune.py {args.study} --data")
        try:
            return optuna.load_study(study_name=STUDY_NAME, storage=storage_for(args))
        except KeyError:
            raise UserError(f"{args.storage}: no study here: start one with tune.py {args.study} --data") from None
    space_path = Path(args.space)
    params = space.read_space(space_path, search_table())
    space.check_fixed(args.fixed, params, space_path)
    # --data is read before anything is made: a typo (or a new study without --data) leaves no study folder
    new = not args.storage and not journal.exists()
    sums = data_checksums(data_dir(args, None), args.fixed) if args.data or new else None
    make_folder(args.study)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage_for(args), direction="maximize",
                                load_if_exists=True, sampler=sampler(args), pruner=pruner(args))
    folder = data_dir(args, study)
    sums = sums or data_checksums(folder, args.fixed)  # a worker joining with the study's own data
    wanted = {"format": FORMAT, "data_sha256": sums, "fixed": args.fixed,
              "space": [[p.option, p.kind, list(p.values)] for p in params], "objective": args.objective,
              "dev_every": args.dev_every}
    check_settings(study, wanted, args.study)
    for key, value in {**wanted, "data": str(folder), "started": time.time()}.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    return study


def make_folder(study: Path) -> None:
    try:
        study.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{study}: cannot make the study folder here: {e.strerror}") from None
    try:
        tempfile.TemporaryFile(dir=study).close()
    except OSError as e:
        raise UserError(f"{study}: cannot write in the study folder: {e.strerror}") from None


def check_settings(study: optuna.Study, wanted: dict, where: Path) -> None:
    """Refuse to join a study made with other data or other settings (as bert_model.py --resume refuses)."""
    have = study.user_attrs
    if "format" not in have:
        return
    had = {FILE_ROLES.get(k, k): v for k, v in have["data_sha256"].items()}  # a study from before roles: by file
    if difference := identity.first_difference({"data": had}, {"data": wanted["data_sha256"]}):
        raise UserError(f"{where}: this study was written for another dataset ({difference}): use a new study folder")
    for key in ("fixed", "space", "objective", "dev_every"):
        if have.get(key) != wanted[key]:
            raise UserError(f"{where}: this study was started with another {key.replace('_', '-')} "
                            f"({have.get(key)!r}, here {wanted[key]!r}): use a new study folder, or the same options")


def sampler(args: argparse.Namespace) -> optuna.samplers.BaseSampler:
    worker = os.environ.get("SGE_TASK_ID", "").isdigit() and int(os.environ["SGE_TASK_ID"])
    worker = worker or int(os.environ.get("TUNE_WORKER", "0"))  # each worker its own seed: no two draw alike
    seed = None if args.sampler_seed is None else args.sampler_seed + worker
    return optuna.samplers.TPESampler(n_startup_trials=args.random_trials, seed=seed, constant_liar=True)


def pruner(args: argparse.Namespace) -> optuna.pruners.BasePruner:
    if args.pruner == "none":
        return optuna.pruners.NopPruner()
    return shared_study.MedianOfTheSameLength(args.prune_after)


def trial_path(study_dir: Path, number: int) -> Path:
    """A trial's SAVE_FP: the model folder, its files beside it (the Grid Engine job's layout)."""
    return study_dir.resolve() / "trials" / f"trial-{number:04d}"


def beside(save_fp: Path, suffix: str) -> Path:
    return save_fp.with_name(save_fp.name + suffix)


@functools.cache
def search_table() -> dict[str, space.Option]:
    """bert_model.py's searchable options, from its own parser and the losses table (space.py); imported only
    here, as bert_model.py imports torch."""
    from bert_model import build_parser

    return space.searchable(build_parser(), space.loss_of_options())


# -------------------------------------------------------------------------------------------- leases


# -------------------------------------------------------------------------------------------- a worker


def die_with_parent() -> None:
    """In the child: SIGTERM when the worker dies (even by SIGKILL), so bert_model.py checkpoints and stops."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


@dataclass
class Job:
    trial: Trial
    resume: bool
    generation: int


class Worker:
    """Asks the study for trials (or takes over an abandoned one) and runs them until the budget is spent."""

    def __init__(self, args: argparse.Namespace, study: optuna.Study) -> None:
        self.args, self.study, self.me = args, study, outputs.identity()
        self.data = data_dir(args, study)
        self.table = search_table()
        self.space = space.read_space(Path(args.space), self.table)
        self.stop: str | None = None
        self.waiting = False  # a trial will be free to take over in a moment
        for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, self.note)

    def note(self, signum: int, frame: object) -> None:
        self.stop = signal.Signals(signum).name

    def say(self, text: str) -> None:
        print(f"{PROG}: worker {self.me['job'] or self.me['pid']}: {text}", flush=True)

    def run(self) -> int:
        failures = 0
        while not self.stop:
            self.waiting = False
            job = self.take_over() or self.ask()
            if job is None and self.waiting:
                time.sleep(1)
                continue
            if job is None:
                self.say("budget spent: no more trials")
                return 0
            rc = self.run_trial(job)
            if rc == EXIT_REQUEUE:
                return EXIT_REQUEUE
            failures = failures + 1 if rc else 0
            if failures >= 3:
                raise UserError("3 trials in a row failed: see their .log files in the study's trials/ folder")
        self.say(f"{self.stop}: stopping (exit {EXIT_REQUEUE}: Grid Engine requeues this worker)")
        return EXIT_REQUEUE

    def budget_left(self) -> bool:
        started = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # not WAITING (queued)
        if len(self.study.get_trials(deepcopy=False, states=started)) >= self.args.trials:
            return False
        hours = self.args.hours
        return not hours or time.time() - self.study.user_attrs["started"] < hours * 3600

    def ask(self) -> Job | None:
        if not self.budget_left():
            return None
        trial = self.study.ask()
        trial.set_user_attr("args", space.suggest(trial, self.space, self.study.user_attrs["fixed"], self.table))
        return Job(trial, resume=False, generation=0)

    def take_over(self) -> Job | None:
        """A RUNNING trial whose worker is gone: resumed if it left a checkpoint, finished if it left metrics,
        else failed. None when there is no such trial to run."""
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            save_fp = trial_path(self.args.study, frozen.number)
            lease = shared_study.read_lease(save_fp)
            state = shared_study.staleness(frozen, lease, self.me, self.args.lease)
            self.waiting = self.waiting or state == "wait"
            if state != "gone":
                continue
            generation = shared_study.claim(save_fp, lease)
            if generation is None:
                continue
            trial = Trial(self.study, frozen._trial_id)
            if beside(save_fp, ".metrics.json").exists():
                self.finish(trial, save_fp, "completed by a worker that is gone")
            elif files.checkpoint_path(save_fp).exists() and "args" in frozen.user_attrs:
                gone = shared_study.describe(lease)
                self.say(f"trial {frozen.number}: its worker is gone ({gone}): resuming its checkpoint")
                return Job(trial, resume=True, generation=generation)
            else:
                gone = shared_study.describe(lease)
                self.say(f"trial {frozen.number}: its worker is gone ({gone}), no checkpoint: failed")
                self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return None

    def command(self, trial: Trial) -> list[str]:
        save_fp = trial_path(self.args.study, trial.number)
        batch = int(space.fixed_options(trial_args(trial, self.study)).get("batch-size") or 16)
        return [self.args.python, str(ROOT / "bert_model.py"), *(str(self.data / f) for f in SPLIT_FILES),
                str(save_fp), *trial_args(trial, self.study),
                "--dev-every", str(max(1, self.study.user_attrs["dev_every"] // batch)),
                "--metrics-file", str(beside(save_fp, ".metrics.json")),
                "--predictions-file", str(beside(save_fp, ".predictions.tsv")), "--resume"]

    def run_trial(self, job: Job) -> int:
        """One bert_model.py run, its dev scores reported as they come; pruned, finished, failed or stopped."""
        trial, save_fp = job.trial, trial_path(self.args.study, job.trial.number)
        save_fp.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(trial)
        trial.set_user_attr("command", shlex.join(cmd))
        shared_study.write_lease(save_fp, self.me, job.generation)
        self.say(f"trial {trial.number}{' resumed' if job.resume else ''}: {' '.join(trial_args(trial, self.study))}")
        with open(beside(save_fp, ".log"), "a", encoding="utf-8") as log:
            child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
            beat = shared_study.Heartbeat(save_fp, {**self.me, "child": child.pid}, job.generation, self.args.heartbeat)
            shared_study.write_lease(save_fp, beat.me, job.generation)
            beat.start()
            pruned = self.watch(child, trial, save_fp)
            beat.done.set()
        return self.outcome(child.returncode, pruned, trial, save_fp)

    def watch(self, child: subprocess.Popen, trial: Trial, save_fp: Path) -> bool:
        """Report each new dev score; SIGTERM the run when the pruner says so, or pass a stop signal on."""
        reported = set(self.study.get_trials(deepcopy=False)[trial.number].intermediate_values)
        pruned, forwarded = False, False
        while child.poll() is None:
            time.sleep(0.5)
            if self.stop and not forwarded:
                child.send_signal(signal.SIGTERM)
                forwarded = True
            for record in files.read_progress(files.progress_path(save_fp)):
                point = round(record["examples"] / self.study.user_attrs["dev_every"])
                if point not in reported:
                    reported.add(point)
                    trial.report(record["dev_macro_f1"], point)
                    if not pruned and not forwarded and trial.should_prune():
                        self.say(f"trial {trial.number}: pruned at {record['examples']} examples "
                                 f"(dev macro F1 {record['dev_macro_f1']:.4f})")
                        child.send_signal(signal.SIGTERM)
                        pruned = True
        return pruned

    def outcome(self, rc: int, pruned: bool, trial: Trial, save_fp: Path) -> int:
        if rc == 0:
            return self.finish(trial, save_fp, "finished")
        if rc == EXIT_REQUEUE and pruned:
            self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            files.checkpoint_path(save_fp).unlink(missing_ok=True)  # nobody resumes a pruned trial
            beside(save_fp, ".requeue").unlink(missing_ok=True)
            return 0
        if rc == EXIT_REQUEUE and self.stop:
            lease = shared_study.read_lease(save_fp) or {}
            shared_study.write_lease(save_fp, self.me, lease.get("generation", 0))
            self.say(f"trial {trial.number}: stopped at a checkpoint; it resumes when a worker takes it over")
            return EXIT_REQUEUE
        self.say(f"trial {trial.number}: bert_model.py exited {rc}: failed; last line of {beside(save_fp, '.log')}: "
                 f"{last_line(beside(save_fp, '.log'))}")
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return 1

    def finish(self, trial: Trial, save_fp: Path, how: str) -> int:
        metrics = files.read_json(beside(save_fp, ".metrics.json"), "a bert_model.py metrics file")
        value = objective(metrics, self.study.user_attrs["objective"])
        self.study.tell(trial, value, skip_if_finished=True)
        self.say(f"trial {trial.number}: {how}: dev macro F1 {value:.4f}")
        return 0


def trial_args(trial: Trial | FrozenTrial, study: optuna.Study) -> list[str]:
    """A trial's bert_model.py options: the study's fixed ones, then the trial's own."""
    return [*study.user_attrs["fixed"], *trial.user_attrs.get("args", [])]


def objective(metrics: dict, which: str) -> float:
    part = metrics.get("dev_tuned" if which == "dev-tuned" else "dev")
    if not isinstance(part, dict) or not isinstance(part.get("macro", {}).get("f1"), int | float):
        raise UserError("a trial's metrics file has no dev macro F1 (not bert_model.py's?)")
    return float(part["macro"]["f1"])


def last_line(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(empty)"


def run_workers(args: argparse.Namespace) -> int:
    """--workers N here: N copies of this script, each one worker (as N Grid Engine tasks would be)."""
    argv = args.argv
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.workers))
    cut = argv.index("--") if "--" in argv else len(argv)
    cmd = [sys.executable, str(ROOT / PROG), *argv[:cut], "--workers", "1", *argv[cut:]]
    procs = [subprocess.Popen(cmd, env={**env, "TUNE_WORKER": str(i + 1)}) for i in range(args.workers)]

    def forward(signum: int, frame: object) -> None:
        for p in procs:
            p.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, forward)
    codes = [p.wait() for p in procs]
    return EXIT_REQUEUE if EXIT_REQUEUE in codes else max(codes)


# -------------------------------------------------------------------------------------------- --report


def trial_rows(study: optuna.Study, study_dir: Path) -> list[dict]:
    """Each trial: state, objective, the training done (from its .dev.jsonl), seconds, its options."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        progress = files.read_progress(files.progress_path(trial_path(study_dir, t.number)))
        last = progress[-1] if progress else {}
        end = t.datetime_complete.timestamp() if t.datetime_complete else time.time()
        rows.append({"trial": t.number, "state": t.state.name,
                     "value": t.value if t.state == TrialState.COMPLETE else None,
                     "last_dev": last.get("dev_macro_f1"), "steps": last.get("global_step", 0),
                     "examples": last.get("examples", 0),
                     "seconds": end - t.datetime_start.timestamp() if t.datetime_start else 0.0,
                     "args": " ".join(t.user_attrs.get("args", []))})
    return rows


def report(args: argparse.Namespace) -> int:
    """The trials and the best command on stdout, the plot in --plot: both, or (a plot path refused) neither."""
    study = open_study(args, create=False)
    rows = trial_rows(study, args.study)
    plot = outputs.Output(Path(args.plot) if args.plot else args.study / "report.png", "the report's plot",
                          named=bool(args.plot), ours=outputs.png)
    journal = outputs.Input(args.study / "journal.log", "the study's journal")
    with outputs.claim(PROG, [journal, outputs.Input(Path(args.space), "the study's space file")], [plot]):
        print_trials(study, rows)
        plot_report(study, rows, plot.path)
    return 0


def print_trials(study: optuna.Study, rows: list[dict]) -> None:
    print(f"{'trial':>5} {'state':<8} {'dev F1':>7} {'steps':>6} {'examples':>9} {'seconds':>8}  options")
    for r in rows:
        f1 = r["value"] if r["value"] is not None else r["last_dev"]
        shown = "" if f1 is None else f"{f1:.4f}" + ("" if r["value"] is not None else "*")
        print(f"{r['trial']:>5} {r['state']:<8} {shown:>7} {r['steps']:>6} {r['examples']:>9} "
              f"{r['seconds']:>8.0f}  {r['args']}")
    states = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "RUNNING", "FAIL")}
    print(f"{len(rows)} trials: " + (", ".join(f"{n} {s.lower()}" for s, n in states.items() if n) or "none")
          + f"; {sum(r['steps'] for r in rows)} training steps, {sum(r['examples'] for r in rows)} examples, "
          f"{sum(r['seconds'] for r in rows):.0f} s of trials in all (* pruned: its last dev F1)")
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if done:
        best = study.best_trial
        print(f"best: trial {best.number}, dev macro F1 {best.value:.4f} ({study.user_attrs['objective']})")
        print(f"command: {best.user_attrs.get('command', '')}")


def plot_report(study: optuna.Study, rows: list[dict], path: Path) -> None:
    """Dev F1 over trials (pruned ones at their last score) and the parameters' importance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    for state, colour in (("COMPLETE", "tab:blue"), ("PRUNED", "tab:gray")):
        pts = [(r["trial"], r["value"] if r["value"] is not None else r["last_dev"]) for r in rows
               if r["state"] == state and (r["value"] is not None or r["last_dev"] is not None)]
        if pts:
            ax1.scatter(*zip(*pts, strict=True), color=colour, label=state.lower())
    best, line = -1.0, []
    for r in rows:
        if r["value"] is not None:
            best = max(best, r["value"])
        line.append(best if best >= 0 else None)
    ax1.plot([r["trial"] for r in rows], line, color="tab:orange", label="best so far")
    ax1.set(xlabel="trial", ylabel="dev macro F1", title="dev macro F1 over trials")
    ax1.legend()
    importance = param_importance(study)
    if importance:
        ax2.barh(list(importance)[::-1], list(importance.values())[::-1])
        ax2.set(title="parameter importance (Optuna, fANOVA)", xlabel="importance")
    else:
        ax2.text(0.5, 0.5, "importance: needs 2 or more finished trials", ha="center")
        ax2.set_axis_off()
    fig.tight_layout()
    files.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100), "the plot")
    plt.close(fig)
    print(f"plot: {path}")


def param_importance(study: optuna.Study) -> dict[str, float]:
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError):
        return {}


# -------------------------------------------------------------------------------------------- --confirm


def confirm_runs(study: optuna.Study, args: argparse.Namespace) -> list[tuple[str, int, list[str]]]:
    """(group name, seed, bert_model.py options) of each run: the best K trials' settings and the baseline."""
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                  key=lambda t: -t.value)
    if not done:
        raise UserError(f"{args.study}: no finished trial to confirm yet")
    groups = [(f"trial-{t.number:04d}", trial_args(t, study)) for t in done[:args.confirm]]
    baseline = [*study.user_attrs["fixed"], *shlex.split(args.baseline or cpu_recipe())]
    groups.append((baseline_name(baseline), baseline))
    return [(name, 42 + s, [*opts, "--seed", str(42 + s)]) for name, opts in groups for s in range(args.seeds)]


def cpu_recipe() -> str:
    """sweeps/cpu-recipe.txt's options (its lines but the comments)."""
    return " ".join(line for line in files.read_lines(CPU_RECIPE, "the CPU recipe") if not line.startswith("#"))


def baseline_name(options: list[str]) -> str:
    """The baseline's runs are named for its options, so that a --confirm with another --baseline never takes
    an earlier baseline's finished runs for its own."""
    return "baseline-" + hashlib.sha256(shlex.join(options).encode()).hexdigest()[:8]


def confirm(args: argparse.Namespace) -> int:
    """Run (or, --task I, run one of) the confirmation runs; when all are done, compare_runs' table and tests."""
    study = open_study(args, create=False)
    data = data_dir(args, study)
    check_settings(study, {**study.user_attrs, "data_sha256": data_checksums(data, study.user_attrs["fixed"])},
                   args.study)
    runs = confirm_runs(study, args)
    todo = [i for i in ([args.task - 1] if args.task else range(len(runs)))]
    if args.task and not 0 <= todo[0] < len(runs):
        raise UserError(f"--task {args.task}, but --confirm {args.confirm} has {len(runs)} runs: qsub -t 1-{len(runs)}")
    codes = run_confirm(runs, todo, data, args)
    if any(codes) or args.task:
        return EXIT_REQUEUE if EXIT_REQUEUE in codes else max(codes)
    return compare(runs, args, study.user_attrs["objective"])


def confirm_fp(args: argparse.Namespace, name: str, seed: int) -> Path:
    return args.study.resolve() / "confirm" / f"{name}-seed{seed}"


def run_confirm(runs: list, todo: list[int], data: Path, args: argparse.Namespace) -> list[int]:
    """Each run not finished yet, --workers at a time (resumed from its checkpoint if it has one)."""
    waiting, running, codes = list(todo), [], []
    while waiting or running:
        while waiting and len(running) < args.workers:
            name, seed, opts = runs[waiting.pop(0)]
            save_fp = confirm_fp(args, name, seed)
            cmd = [args.python, str(ROOT / "bert_model.py"), *(str(data / f) for f in SPLIT_FILES), str(save_fp),
                   *opts, "--metrics-file", str(beside(save_fp, ".metrics.json")),
                   "--predictions-file", str(beside(save_fp, ".predictions.tsv")), "--resume"]
            if finished(save_fp, cmd[2:]):
                continue
            save_fp.parent.mkdir(parents=True, exist_ok=True)
            print(f"{PROG}: confirm: {name} seed {seed}: {shlex.join(cmd)}", flush=True)
            log = open(beside(save_fp, ".log"), "a", encoding="utf-8")  # closed when the run ends
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             preexec_fn=die_with_parent), log, save_fp))
        time.sleep(0.5)
        for item in [r for r in running if r[0].poll() is not None]:
            running.remove(item)
            item[1].close()
            codes.append(item[0].returncode)
            if item[0].returncode:
                log_line = last_line(beside(item[2], ".log"))
                print(f"{PROG}: confirm: {item[2].name} exited {item[0].returncode}: {log_line}")
    return codes


def finished(save_fp: Path, argv: list[str]) -> bool:
    """Is this confirmation run done: a metrics.json beside it of the very run argv would make (identity.py: the
    options that can change its result, its data by content, one process)? One of another identity is run again."""
    from bert_model import parse_args
    from multilabel import losses  # imports torch, as bert_model.py does

    path = beside(save_fp, ".metrics.json")
    if not path.exists():
        return False
    wanted = vars(parse_args(argv))
    now = identity.training_run(wanted, identity.data_checksums(wanted), 1, losses.unused_options(wanted))
    done = files.read_json(path, "a confirmation run's metrics")
    data = done.get("identity", {}).get("data") or done.get("data_sha256") or {}
    was = identity.of_record(done.get("args", {}), data, done.get("world_size", 1), wanted, losses.unused_options)
    if difference := identity.first_difference(was, now):
        print(f"{PROG}: confirm: {save_fp.name}: its finished run was written with {difference}: running it again",
              flush=True)
        return False
    return True


def compare(runs: list, args: argparse.Namespace, objective: str) -> int:
    """compare_runs.py's table of the confirmation runs, and each best trial against the baseline."""
    metrics = [str(beside(confirm_fp(args, name, seed), ".metrics.json")) for name, seed, _ in runs]
    tuned = ["--thresholds", "tuned"] if objective == "dev-tuned" else []
    table = compare_runs(*metrics, *tuned)
    print(table)
    groups = json.loads(compare_runs(*metrics, "--format", "json"))["groups"]
    of = {Path(run["path"]).resolve(): g["id"] for g in groups for run in g["runs"]}
    ids = {name: of[Path(m).resolve()] for (name, _, _), m in zip(runs, metrics, strict=True)}
    baseline = runs[-1][0]
    for name in dict.fromkeys(n for n, _, _ in runs if n != baseline):
        if ids[name] == ids[baseline]:
            print(f"{name}: the same settings as the baseline")
            continue
        out = compare_runs(*metrics, *tuned, "--compare", ids[name], ids[baseline])
        print(f"\n{name} against the baseline:\n" + out[out.index("Paired bootstrap"):].strip())
    return 0


def compare_runs(*argv: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "compare_runs.py"), *argv], capture_output=True, text=True)
    if r.returncode:
        lines = r.stderr.strip().splitlines() or [f"exit {r.returncode}"]
        raise UserError(f"compare_runs.py failed: {lines[-1]}")
    return r.stdout


if __name__ == "__main__":
    sys.exit(main())
