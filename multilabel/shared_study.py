"""A study that workers on many nodes share through files (tune.py): the journal, kept whole; the leases by which a
worker holds a trial, and takes over one whose worker is gone; and the pruner.

The journal is Optuna's JournalStorage on a file: every append takes journal.log.lock (made with O_EXCL, which works
on NFS), and Optuna writes whole lines under it. A lease is a file beside a trial's SAVE_FP (SAVE_FP.lease.json), with
the worker's host, pid, Grid Engine job and the time, rewritten every --heartbeat seconds; taking a trial over is
claimed with an atomic mkdir (SAVE_FP.claim-N), so two workers never run the same trial.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from multilabel import files, outputs
from multilabel.files import UserError

# ------------------------------------------------------------------------------------------ the journal


def journal_storage(journal: Path) -> optuna.storages.JournalStorage:
    """The study's storage: the journal file, checked (check_journal), locked with JournalLock."""
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
    print(f"tune.py: {journal}: removed a cut last line ({size - keep} bytes: a writer stopped mid-line)",
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


# ------------------------------------------------------------------------------------------ the pruner


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


# ------------------------------------------------------------------------------------------ leases


def lease_path(save_fp: Path) -> Path:
    return save_fp.with_name(save_fp.name + ".lease.json")


def read_lease(save_fp: Path) -> dict | None:
    try:
        return json.loads(lease_path(save_fp).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def write_lease(save_fp: Path, me: dict, generation: int) -> None:
    files.write_json(lease_path(save_fp), {**me, "generation": generation, "time": time.time()}, "a lease")


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
            or here and not outputs.pid_alive(int(lease.get("pid", 0)))
            or time.time() - float(lease.get("time", 0)) > lease_s)
    if gone and here and lease.get("child") and outputs.pid_alive(int(lease["child"])):
        return "wait"
    return "gone" if gone else "live"


def claim(save_fp: Path, lease: dict | None) -> int | None:
    """Take a stale trial over: the one worker whose mkdir succeeds gets its next generation, others None."""
    generation = (lease or {}).get("generation", 0) + 1
    try:
        os.mkdir(save_fp.with_name(f"{save_fp.name}.claim-{generation}"))
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


def describe(lease: dict | None) -> str:
    if not lease:
        return "no lease"
    age = time.time() - float(lease.get("time", 0))
    return f"{lease.get('job') or ''} pid {lease.get('pid')} on {lease.get('host')}, lease renewed {age:.0f} s ago"
