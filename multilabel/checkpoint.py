"""Where a training run is, kept across kills: the checkpoint beside SAVE_FP, resuming it (exact, or refused),
room on the disk for it, and the stop signals of Grid Engine.

A checkpoint holds the state dict of bert_model.py (model, AdamW, its schedule, the fp16 loss scaler, and where the
run is: epoch, step, this epoch's batch order, history, the best epoch's weights) with every rank's random number
generators, the options the run was started with and the SHA-256 of its data. --resume continues it only where
every option that can change a result (files.NO_RESULT says which cannot) and every data file is the same, so
that a resumed run is the run that was stopped; otherwise it refuses, in one line naming what differs.
"""

from __future__ import annotations

import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from multilabel import files, identity, losses
from multilabel.device import Env, leave
from multilabel.files import UserError, mib

FORMAT = "goemotions-checkpoint-3"  # 3: the data's SHA-256 and the resolved precision; the best weights once
STATEFUL = ("model", "optimizer", "scheduler", "scaler")  # saved as their state_dict()
SAVED = ("epoch", "step", "order", "history", "loss_curve", "best")
EXIT_REQUEUE = 99  # stopped on a signal after writing a checkpoint; Grid Engine reruns a job that exits 99
KEPT = "; the previous checkpoint and model are kept: free some space and rerun with --resume"


@dataclass
class TrainingState:
    """Where a training run is: what a checkpoint holds (STATEFUL as their state_dict(), SAVED as they are, the data's
    checksums) and what the run keeps beside it (its dev progress file, its start, how texts are read, their
    lengths). `epoch` and `step` are the next step to take; `order` is this epoch's batches; `best` the best epoch's
    dev macro F1, number, dev scores and weights (on the CPU)."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    data_sha256: dict[str, str]
    epoch: int = 0
    step: int = 0
    order: list = field(default_factory=list)
    history: list = field(default_factory=list)
    loss_curve: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"f1": -1.0, "epoch": None, "state": None, "dev_probs": None})
    progress: Path | None = None
    started: float = 0.0
    reading: Any = None
    lengths: dict = field(default_factory=dict)


def tensor_bytes(obj: object) -> int:
    """The bytes of the tensors in a (nested) state: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def check_room(save_fp: Path, ckpt_path: Path, model: torch.nn.Module, env: Env) -> None:
    """Before training: is there room beside SAVE_FP for a checkpoint (fp32 weights, AdamW's two moments and the best
    weights: 16 bytes a parameter) and the saved model (4 bytes a parameter)? Refuse where there plainly is not,
    rather than train for an hour and lose it; warn where a second checkpoint (written beside the first before it
    replaces it) would not fit. What killed writes left there is removed first."""
    if env.master:
        files.remove_stale_temps(save_fp)
        files.remove_stale_temps(ckpt_path)
    n = sum(p.numel() for p in model.parameters())
    checkpoint, saved = 16 * n, 4 * n
    free = shutil.disk_usage(save_fp.parent).free
    if free < checkpoint + saved:
        raise UserError(f"{save_fp.parent}: {mib(free)} free, but a checkpoint needs about {mib(checkpoint)} and the "
                        f"model {mib(saved)} ({n:,} parameters): free some space or choose another SAVE_FP")
    if not ckpt_path.exists() and free < 2 * checkpoint + saved:
        env.log(f"warning: {save_fp.parent}: {mib(free)} free; a checkpoint is written beside the previous one "
                f"before replacing it, so {mib(2 * checkpoint + saved)} would be safe: the second checkpoint may fail")


def load(path: Path) -> dict:
    """A checkpoint, its tensors mapped rather than read (the settings are checked before the weights are used)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated zip, pickle error, wrong file: never a silent fresh start
        raise UserError(f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); move it away to start afresh") from None
    if not isinstance(ck, dict) or not str(ck.get("format", "")).startswith("goemotions-checkpoint-"):
        raise UserError(f"{path}: not a bert_model.py checkpoint")
    if ck["format"] != FORMAT:
        raise UserError(f"{path}: written by an older bert_model.py ({ck['format']}), which did not record the SHA-256 "
                        f"of its data, so resuming it cannot be checked to be exact; move it away to start afresh")
    return ck


def check_resumable(path: Path, args: dict, data: dict[str, str], defaults: dict, world: int) -> dict:
    """The checkpoint at `path` if this run may continue it: a run of the same identity (identity.py: the options
    that can change its result, an option the checkpoint does not name having been added since at its default; the
    data by content; the number of processes). Otherwise a UserError naming the first difference."""
    ck = load(path)
    was = identity.of_record(ck["args"], ck["data_sha256"], ck["world"], defaults, losses.unused_options)
    now = identity.training_run(args, data, world, losses.unused_options(args))
    if difference := identity.first_difference(was, now):
        raise UserError(f"{path}: written with {difference}; use the same settings and data, or move it away")
    return ck


def save(path: Path, state: TrainingState, args: dict, env: Env) -> None:
    """The state dict and every rank's random number generators, written by rank 0 to a temporary file, flushed, and
    renamed over the previous checkpoint: a kill or a full disk mid-write leaves the previous one."""
    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(env.device) if args["cuda"] else None}
    rngs = [rng]
    if env.world > 1:
        rngs = [None] * env.world
        dist.all_gather_object(rngs, rng)
    error = None
    if env.master:
        saved = {k: getattr(state, k) for k in SAVED}
        if state.step == 0 and state.best["epoch"] == state.epoch:  # the epoch just ended was the best:
            saved["best"] = {**state.best, "state": None}  # its weights are the model's, not stored twice
        ck = {"format": FORMAT, "args": args, "data_sha256": state.data_sha256, "world": env.world, "rng": rngs,
              "precision": env.precision, **{k: getattr(state, k).state_dict() for k in STATEFUL}, **saved}
        try:
            files.atomic_write(path, lambda tmp: torch.save(ck, tmp), "the checkpoint", tensor_bytes(ck), KEPT)
        except UserError as e:
            error = e
    if env.world > 1:  # all ranks stop if rank 0 could not write it (else they would wait for it forever)
        failed = torch.tensor(float(error is not None), device=env.device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failed.item() and error is None:
            error = UserError(f"{path}: rank 0 could not write the checkpoint (its error is above)")
    if error is not None:
        raise error


def restore(state: TrainingState, ck: dict, path: Path, env: Env) -> None:
    """Load a checked checkpoint into the state. A job requeued onto another GPU type may resolve --precision auto
    to another precision: the fp32 weights and AdamW state carry over, the fp16 loss scaler starts afresh."""
    was = ck["precision"]
    for k in STATEFUL:
        if k != "scaler" or env.precision == was == "fp16":
            getattr(state, k).load_state_dict(ck[k])
    if was != env.precision:
        env.log(f"{path}: written in {was}, this run is {env.precision} (another GPU type?): the fp32 weights and "
                f"AdamW state carry on{'; the fp16 loss scaler starts afresh' if env.precision == 'fp16' else ''}")
    for k in SAVED:
        setattr(state, k, ck[k])
    if state.best["epoch"] is not None and state.best["state"] is None:  # the best epoch was the last one
        state.best["state"] = {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}
    torch.set_rng_state(ck["rng"][env.rank]["torch"])
    if env.device.type == "cuda" and ck["rng"][env.rank]["cuda"] is not None:
        torch.cuda.set_rng_state(ck["rng"][env.rank]["cuda"], env.device)


# ------------------------------------------------------------------------------------------ stop signals


class StopSignals:
    """Grid Engine's warnings (-notify: SIGUSR1; s_rt: SIGUSR2) and qdel's SIGTERM, noted rather than obeyed at
    once: the work stops at its next safe point, says so, and exits EXIT_REQUEUE, which the .com jobs turn into a
    rerun that resumes."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.signal: str | None = None
        for s in self.SIGNALS:
            signal.signal(s, self.note)

    def note(self, signum: int, frame: object) -> None:
        self.signal = signal.Signals(signum).name


class Stopper(StopSignals):
    """bert_model.py's: also says when a timed checkpoint is due, and all ranks agree on both."""

    def __init__(self, env: Env, minutes: float, ckpt_path: Path, marker: Path) -> None:
        super().__init__()
        self.env, self.minutes, self.ckpt_path, self.marker = env, minutes, ckpt_path, marker
        self.last_checkpoint = time.time()
        if env.master:
            marker.unlink(missing_ok=True)

    def check(self) -> tuple[bool, bool]:
        """(has a stop signal arrived, is a timed checkpoint due), agreed by all ranks."""
        flags = [self.signal is not None, time.time() - self.last_checkpoint > 60 * self.minutes]
        if self.env.world > 1:
            t = torch.tensor(flags, dtype=torch.float32, device=self.env.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flags = [bool(x) for x in t.tolist()]
        return flags[0], flags[1]

    def requeue(self, where: str) -> int:
        """After the checkpoint: say so, leave a marker (torchrun hides our exit code), exit 99."""
        if self.env.master:
            self.marker.write_text(f"{self.signal} {where}\n", encoding="utf-8")
        self.env.log(f"{self.signal or 'stop signal'}: checkpoint written to {self.ckpt_path} {where}; "
                     f"rerun with --resume (exit {EXIT_REQUEUE}; marker {self.marker})")
        if self.env.world > 1:
            leave()
        return EXIT_REQUEUE
