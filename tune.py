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
import math
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from multilabel import files, options
from multilabel.files import UserError

PROG = "tune.py"
ROOT = Path(__file__).resolve().parent
EXIT_REQUEUE = 99  # multilabel/checkpoint.py's (not imported here: it imports torch)
STUDY_NAME = "tune"
FORMAT = "tune-study-1"
SPLIT_FILES = ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")
# bert_model.py's options a search may vary, with the type of their values (each value a space file gives is also
# checked against bert_model.py's own parser: its range or its choices). Not searchable: the data and output paths,
# the seed, the threshold the objective is measured at, and the options of no effect on results.
TUNABLE = {"learning-rate": float, "head-learning-rate": float, "epochs": int, "batch-size": int, "max-length": int,
           "warmup-ratio": float, "weight-decay": float, "max-grad-norm": float, "loss": str, "pos-weight": str,
           "pos-weight-cap": float, "focal-gamma": float, "focal-alpha": float, "asl-gamma-neg": float,
           "asl-gamma-pos": float, "asl-clip": float, "init-bias-from-prior": bool}
SWITCH = ("yes", "no")  # a switch's values in the space file (init-bias-from-prior)
ONLY_WITH_LOSS = {"pos-weight": "weighted-bce", "pos-weight-cap": "weighted-bce", "focal-gamma": "focal",
                  "focal-alpha": "focal", "asl-gamma-neg": "asl", "asl-gamma-pos": "asl", "asl-clip": "asl"}
KINDS = {"float": 2, "log": 2, "int": 2, "choice": None}
SET_BY_TUNE = {"metrics-file", "predictions-file", "plot-file", "resume", "dev-every", "threshold"}
CPU_RECIPE = "--batch-size 32 --learning-rate 1e-4 --head-learning-rate 3e-3 --init-bias-from-prior --epochs 1"


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
    p.add_argument("--baseline", default=CPU_RECIPE, help="--confirm: the recipe to beat, as bert_model.py options")
    p.add_argument("--task", type=options.WHOLE_0, default=0,
                   help="--confirm: run only this run (an array task), 1-based")
    p.add_argument("--python", default=sys.executable, help="the interpreter of the bert_model.py runs")
    options.describe_ranges(p)
    args = p.parse_args(argv[:cut])
    args.fixed, args.argv = argv[cut + 1:], argv
    args.study = Path(args.study)
    return args


# -------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Param:
    option: str
    kind: str
    values: tuple
    line: int


def read_space(path: Path) -> list[Param]:
    """The search space file, checked: one `OPTION KIND VALUES` a line; errors say FILE:LINE."""
    space: dict[str, Param] = {}
    for n, line in enumerate(files.read_lines(path, "a search space file"), 1):
        words = line.split("#", 1)[0].split()
        if words:
            param = space_line(words, f"{path}:{n}", n)
            if param.option in space:
                raise UserError(f"{path}:{n}: {param.option} is already on line {space[param.option].line}")
            space[param.option] = param
    if not space:
        raise UserError(f"{path}: no options to search (one 'OPTION KIND VALUES' a line)")
    return list(space.values())


def space_line(words: list[str], where: str, n: int) -> Param:
    option, kind, values = words[0].removeprefix("--"), words[1] if len(words) > 1 else "", words[2:]
    if option not in TUNABLE:
        raise UserError(f"{where}: unknown option '{option}' (a search varies: {' '.join(TUNABLE)})")
    if kind not in KINDS:
        raise UserError(f"{where}: {option}: unknown kind '{kind}' (float, log, int or choice)")
    if KINDS[kind] is not None and len(values) != KINDS[kind]:
        raise UserError(f"{where}: {option} {kind} takes LOW HIGH, got {len(values)} value(s)")
    if kind == "choice":
        return Param(option, kind, choice_values(option, values, where), n)
    if TUNABLE[option] not in (int, float):
        raise UserError(f"{where}: {option} takes a value from a list: use choice")
    if (kind == "int") != (TUNABLE[option] is int):
        raise UserError(f"{where}: {option} is " + ("a whole number: use int" if TUNABLE[option] is int
                                                     else "not a whole number: use float or log"))
    low, high = (number(v, TUNABLE[option], option, where) for v in values)
    if low >= high or (kind == "log" and low <= 0):
        raise UserError(f"{where}: {option}: empty range {values[0]} to {values[1]}"
                        + (" (log needs LOW > 0)" if kind == "log" and low < high else " (LOW must be < HIGH)"))
    for v in values:
        check_value(option, v, where)
    return Param(option, kind, (low, high), n)


def choice_values(option: str, values: list[str], where: str) -> tuple:
    if not values:
        raise UserError(f"{where}: {option}: empty choice (choice V1 V2 ...)")
    typed = tuple(choice_value(option, v, where) for v in values)
    if len(set(typed)) < len(typed):
        raise UserError(f"{where}: {option}: a choice is given twice")
    return typed


def choice_value(option: str, text: str, where: str) -> str | int | float:
    if TUNABLE[option] is bool:
        if text not in SWITCH:
            raise UserError(f"{where}: {option}: '{text}' is not one of {', '.join(SWITCH)}")
        return text
    value = text if TUNABLE[option] is str else number(text, TUNABLE[option], option, where)
    check_value(option, text, where)
    return value


def number(text: str, kind: type, option: str, where: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise UserError(f"{where}: {option}: '{text}' is not a {'whole number' if kind is int else 'number'}") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {option}: '{text}' is not a finite number")
    return value


def check_value(option: str, text: str, where: str) -> None:
    """Would bert_model.py take --OPTION TEXT? Its own parser says: the option's type (and range), its choices."""
    action = bert_model_option(option)
    try:
        value = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise UserError(f"{where}: {option}: {e} (bert_model.py --{option})") from None
    if action.choices and value not in action.choices:
        raise UserError(f"{where}: {option}: '{text}' is not one of {', '.join(action.choices)}")


@functools.cache
def bert_model_option(option: str) -> argparse.Action:
    """bert_model.py's declaration of --OPTION; imported only here, as bert_model.py imports torch."""
    from bert_model import build_parser

    return next(a for a in build_parser()._actions if f"--{option}" in a.option_strings)


def fixed_options(fixed: list[str]) -> dict[str, str | None]:
    """The fixed bert_model.py options by name (without --), each with its value (None for a switch)."""
    found: dict[str, str | None] = {}
    for i, word in enumerate(fixed):
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            nxt = fixed[i + 1] if i + 1 < len(fixed) else None
            found[name] = value or (nxt if nxt is not None and not nxt.startswith("--") else None)
    return found


def check_fixed(fixed: list[str], space: list[Param], space_path: Path) -> None:
    given = fixed_options(fixed)
    for name in given:
        if name in SET_BY_TUNE - {"threshold"}:
            raise UserError(f"fixed option --{name}: tune.py sets it for every trial")
    for param in space:
        if param.option in given:
            raise UserError(f"{space_path}:{param.line}: --{param.option} is also fixed after --: one or the other")


def suggest(trial: Trial, space: list[Param], fixed: list[str]) -> list[str]:
    """The trial's bert_model.py options from the space (a loss's options only where that loss is chosen)."""
    chosen: dict[str, object] = {}
    for param in space:
        if param.kind == "choice":
            chosen[param.option] = trial.suggest_categorical(param.option, list(param.values))
    loss = chosen.get("loss", fixed_options(fixed).get("loss", "bce"))
    out: list[str] = []
    for param in space:
        if ONLY_WITH_LOSS.get(param.option, loss) != loss:
            continue
        if param.kind in ("float", "log"):
            chosen[param.option] = trial.suggest_float(param.option, *param.values, log=param.kind == "log")
        elif param.kind == "int":
            chosen[param.option] = trial.suggest_int(param.option, *param.values)
        out += option_words(param.option, chosen[param.option])
    return out


def option_words(option: str, value: object) -> list[str]:
    if TUNABLE[option] is bool:
        return [f"--{option}"] if value == "yes" else []
    return [f"--{option}", str(value)]


# -------------------------------------------------------------------------------------------- the study


def storage_for(args: argparse.Namespace) -> optuna.storages.BaseStorage | str:
    if args.storage:
        return args.storage
    journal = args.study / "journal.log"
    check_journal(journal)
    backend = optuna.storages.journal.JournalFileBackend(str(journal), lock_obj=JournalLock(journal))
    return optuna.storages.JournalStorage(backend)


class JournalLock(optuna.storages.journal.JournalFileOpenLock):
    """Optuna's lock on the journal (journal.log.lock, made with O_EXCL: NFS-safe), which every append takes; once
    taken, a last line with no newline is removed first. Optuna writes whole lines under this lock, so such a line
    is what a writer killed mid-line (or a full quota) left; a line appended onto it would make the journal
    unreadable for every worker and --report from then on. Readers need no lock: Optuna skips a last line with no
    newline as one still being written."""

    def __init__(self, journal: Path) -> None:
        super().__init__(str(journal))
        self.journal = journal

    def acquire(self) -> bool:
        super().acquire()
        try:
            drop_cut_line(self.journal)
        except BaseException:
            self.release()
            raise
        return True


def drop_cut_line(journal: Path) -> None:
    """Cut the journal after its last newline, saying so on stderr (only under the journal's lock)."""
    with open(journal, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        keep = whole_lines_end(f, size)
        if keep == size:
            return
        f.truncate(keep)
        os.fsync(f.fileno())
    print(f"{PROG}: {journal}: removed a cut last line ({size - keep} bytes: a writer stopped mid-line)",
          file=sys.stderr, flush=True)


def whole_lines_end(f: BinaryIO, size: int) -> int:
    """Where the file's whole lines end: just after its last newline (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        f.seek(start)
        block = f.read(end - start)
        if b"\n" in block:
            return start + block.rindex(b"\n") + 1
        end = start
    return 0


def check_journal(journal: Path) -> None:
    """Before Optuna reads the journal: a cut last line removed (under the lock, so never a line being written),
    and a line that is not JSON refused, naming it (Optuna would fail on it with a traceback, in every worker)."""
    if not journal.is_file():
        return
    with open(journal, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        cut = whole_lines_end(f, size) != size
    if cut:  # being written now, or cut: taking the lock waits for a writer, then removes a cut line
        lock = JournalLock(journal)
        lock.acquire()
        lock.release()
    with open(journal, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return  # being written by another worker
            try:
                json.loads(line)
            except ValueError:
                raise UserError(f"{journal}:{n}: not a line of Optuna's journal (not JSON): Optuna cannot read the "
                                "study past it; mend that line by hand, or use a new study folder") from None


def data_dir(args: argparse.Namespace, study: optuna.Study | None) -> Path:
    given = args.data or (study.user_attrs.get("data") if study else None)
    if not given:
        raise UserError("no --data DATA_DIR (the folder with train.tsv, dev.tsv, test.tsv and emotions.txt)")
    return Path(given).resolve()


def data_checksums(folder: Path, fixed: list[str]) -> dict[str, str]:
    """SHA-256 of each data file a trial reads, by file name (the paths may differ from node to node)."""
    taxonomy = fixed_options(fixed).get("taxonomy") or "original"
    paths = {"train": folder / "train.tsv", "dev": folder / "dev.tsv", "test": folder / "test.tsv",
             "labels": folder / "emotions.txt", "taxonomy": taxonomy}
    try:
        return {Path(p).name: files.sha256(p) for p in files.data_files(paths)}
    except FileNotFoundError as e:
        raise UserError(f"{e.filename}: file not found (--data needs {', '.join(SPLIT_FILES)})") from None


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
    space = read_space(space_path)
    check_fixed(args.fixed, space, space_path)
    make_folder(args.study)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage_for(args), direction="maximize",
                                load_if_exists=True, sampler=sampler(args), pruner=pruner(args))
    folder = data_dir(args, study)
    wanted = {"format": FORMAT, "data_sha256": data_checksums(folder, args.fixed), "fixed": args.fixed,
              "space": [[p.option, p.kind, list(p.values)] for p in space], "objective": args.objective,
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
    for name, sha in wanted["data_sha256"].items():
        if have["data_sha256"].get(name) != sha:
            raise UserError(f"{where}: this study was written for another dataset ({name} differs: SHA-256 "
                            f"{str(have['data_sha256'].get(name))[:12]}, here {sha[:12]}): use a new study folder")
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
    return MedianOfTheSameLength(args.prune_after)


class MedianOfTheSameLength(optuna.pruners.BasePruner):
    """Optuna's median rule (a trial whose best dev score so far is below the median of the finished trials'
    scores at this point is pruned), with two changes, both measured (bench/RESULTS.md, "Tuning"):
    - a trial is compared only with finished trials of the same length (the same epochs): at the same examples
      seen, a 1-epoch trial's learning rate has decayed further than a 3-epoch trial's, and Optuna's MedianPruner
      pruned the longer, better trials of a study for starting slower;
    - a point needs AFTER such finished trials' scores before anything is pruned there (Optuna's default, 1,
      pruned a trial for being below the one trial that had trained that long)."""

    def __init__(self, after: int) -> None:
        self.after = after

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        point = trial.last_step
        if point is None:
            return False
        length = trial.params.get("epochs")  # None: fixed for the whole study
        peers = [t.intermediate_values[point] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.params.get("epochs") == length and point in t.intermediate_values]
        return len(peers) >= self.after and max(trial.intermediate_values.values()) < statistics.median(peers)


def trial_path(study_dir: Path, number: int) -> Path:
    """A trial's SAVE_FP: the model folder, its files beside it (the Grid Engine job's layout)."""
    return study_dir.resolve() / "trials" / f"trial-{number:04d}"


def beside(save_fp: Path, suffix: str) -> Path:
    return save_fp.with_name(save_fp.name + suffix)


# -------------------------------------------------------------------------------------------- leases


def identity() -> dict:
    """Who this worker is: host and pid, and the Grid Engine job and task (the same again after a requeue)."""
    job = os.environ.get("JOB_ID")
    task = os.environ.get("SGE_TASK_ID", "undefined")
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": f"{job}.{task}" if job else None}


def read_lease(save_fp: Path) -> dict | None:
    try:
        return json.loads(beside(save_fp, ".lease.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def write_lease(save_fp: Path, me: dict, generation: int) -> None:
    files.write_json(beside(save_fp, ".lease.json"), {**me, "generation": generation, "time": time.time()}, "a lease")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staleness(trial: FrozenTrial, lease: dict | None, me: dict, lease_s: float) -> str:
    """Is this RUNNING trial's worker gone? "live", "gone", or "wait" (gone, but its bert_model.py is still
    writing its checkpoint on this host)."""
    if lease is None:  # its worker died between asking for it and writing the lease (or is just about to write it)
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0
        return "gone" if time.time() - started > lease_s else "live"
    here = lease.get("host") == me["host"]
    if here and lease.get("pid") == me["pid"]:
        return "live"
    gone = (bool(me["job"]) and lease.get("job") == me["job"]  # this very Grid Engine task, before its requeue
            or here and not pid_alive(int(lease.get("pid", 0)))
            or time.time() - float(lease.get("time", 0)) > lease_s)
    if gone and here and lease.get("child") and pid_alive(int(lease["child"])):
        return "wait"
    return "gone" if gone else "live"


def claim(save_fp: Path, lease: dict | None) -> int | None:
    """Take a stale trial over: the one worker whose mkdir succeeds gets its next generation, others None."""
    generation = (lease or {}).get("generation", 0) + 1
    try:
        os.mkdir(beside(save_fp, f".claim-{generation}"))
    except FileExistsError:
        return None
    return generation


class Heartbeat(threading.Thread):
    """Rewrites the worker's lease on its trial every `every` seconds until stopped."""

    def __init__(self, save_fp: Path, me: dict, generation: int, every: float) -> None:
        super().__init__(daemon=True)
        self.save_fp, self.me, self.generation, self.every = save_fp, me, generation, every
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            write_lease(self.save_fp, self.me, self.generation)


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
        self.args, self.study, self.me = args, study, identity()
        self.data = data_dir(args, study)
        self.space = read_space(Path(args.space))
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
        trial.set_user_attr("args", suggest(trial, self.space, self.study.user_attrs["fixed"]))
        return Job(trial, resume=False, generation=0)

    def take_over(self) -> Job | None:
        """A RUNNING trial whose worker is gone: resumed if it left a checkpoint, finished if it left metrics,
        else failed. None when there is no such trial to run."""
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            save_fp = trial_path(self.args.study, frozen.number)
            lease = read_lease(save_fp)
            state = staleness(frozen, lease, self.me, self.args.lease)
            self.waiting = self.waiting or state == "wait"
            if state != "gone":
                continue
            generation = claim(save_fp, lease)
            if generation is None:
                continue
            trial = Trial(self.study, frozen._trial_id)
            if beside(save_fp, ".metrics.json").exists():
                self.finish(trial, save_fp, "completed by a worker that is gone")
            elif files.checkpoint_path(save_fp).exists() and "args" in frozen.user_attrs:
                self.say(f"trial {frozen.number}: its worker is gone ({describe(lease)}): resuming its checkpoint")
                return Job(trial, resume=True, generation=generation)
            else:
                self.say(f"trial {frozen.number}: its worker is gone ({describe(lease)}), no checkpoint: failed")
                self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return None

    def command(self, trial: Trial) -> list[str]:
        save_fp = trial_path(self.args.study, trial.number)
        batch = int(fixed_options(trial_args(trial, self.study)).get("batch-size") or 16)
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
        write_lease(save_fp, self.me, job.generation)
        self.say(f"trial {trial.number}{' resumed' if job.resume else ''}: {' '.join(trial_args(trial, self.study))}")
        with open(beside(save_fp, ".log"), "a", encoding="utf-8") as log:
            child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
            beat = Heartbeat(save_fp, {**self.me, "child": child.pid}, job.generation, self.args.heartbeat)
            write_lease(save_fp, beat.me, job.generation)
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
            write_lease(save_fp, self.me, read_lease(save_fp).get("generation", 0) if read_lease(save_fp) else 0)
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


def describe(lease: dict | None) -> str:
    if not lease:
        return "no lease"
    age = time.time() - float(lease.get("time", 0))
    return f"{lease.get('job') or ''} pid {lease.get('pid')} on {lease.get('host')}, lease renewed {age:.0f} s ago"


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
    study = open_study(args, create=False)
    rows = trial_rows(study, args.study)
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
    plot_report(study, rows, Path(args.plot) if args.plot else args.study / "report.png")
    return 0


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
    baseline = [*study.user_attrs["fixed"], *shlex.split(args.baseline)]
    groups.append((baseline_name(baseline), baseline))
    return [(name, 42 + s, [*opts, "--seed", str(42 + s)]) for name, opts in groups for s in range(args.seeds)]


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
            if beside(save_fp, ".metrics.json").exists():
                continue
            save_fp.parent.mkdir(parents=True, exist_ok=True)
            cmd = [args.python, str(ROOT / "bert_model.py"), *(str(data / f) for f in SPLIT_FILES), str(save_fp),
                   *opts, "--metrics-file", str(beside(save_fp, ".metrics.json")),
                   "--predictions-file", str(beside(save_fp, ".predictions.tsv")), "--resume"]
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
