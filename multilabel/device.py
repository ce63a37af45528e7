"""Where a training process runs: alone, or one of torchrun's (rank, world); its device; its precision."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from multilabel.files import UserError

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Env:
    """This process: its rank among `world` (torchrun), device, precision (and its autocast dtype), its logger
    (print on rank 0, nothing on the others)."""

    rank: int
    world: int
    device: torch.device
    precision: str
    amp_dtype: torch.dtype | None
    log: Callable[..., None]

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup(cuda: bool, precision: str, prog: str) -> Env:
    """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (a plain run is rank 0 of 1); the process group, the device and
    the precision follow from them and the options."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda and not torch.cuda.is_available():
        raise UserError("--cuda given but PyTorch sees no CUDA device (torch.cuda.is_available() is False)")
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world > 1:
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    log = print if rank == 0 else (lambda *a, **k: None)
    omp = os.environ.get("OMP_NUM_THREADS")
    log(f"{prog}: {torch.get_num_threads()} CPU thread(s) per process "
        f"({f'OMP_NUM_THREADS={omp}' if omp else 'torch default, OMP_NUM_THREADS unset'}), {world} process(es)")
    resolved = resolve_precision(precision, cuda)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them
    return Env(rank, world, device, resolved, AMP_DTYPES[resolved], log)


def leave() -> None:
    """The end of a DDP run, on every rank: a barrier, then destroy_process_group. After the last all-gather a gloo
    worker thread may still hold that work's tensors, and dropping them takes the GIL; a rank whose interpreter is
    already shutting down then aborts ("terminate called without an active exception", seen once in CI, about 1
    run in 100-250 in a reproduction; pytorch issue 190489). The barrier's wait releases the GIL so the worker can
    finish first. It makes the abort less likely; it is not shown to remove it (too rare to measure)."""
    dist.barrier()
    dist.destroy_process_group()


def resolve_precision(requested: str, cuda: bool) -> str:
    """auto: bf16 autocast where the hardware has it natively; else fp16 with a loss scaler on a GPU, fp32 on a CPU.
    torch.cuda.is_bf16_supported() counts emulation by default (True on a V100 or T4, which have no bf16 tensor
    cores): ask for native support."""
    if requested != "auto":
        return requested
    if cuda:
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def all_ranks_finite(x: torch.Tensor, world: int) -> bool:
    """Is `x` finite on every rank? (All ranks get the same answer, so they stop together.)"""
    finite = torch.isfinite(x).float()
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def hardware(env: Env) -> str:
    """What the run ran on, for metrics.json and the model card."""
    if env.device.type == "cuda":
        return f"{env.world} x {torch.cuda.get_device_name(env.device)}"
    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")), "CPU") if cpuinfo.exists() else "CPU"
    return f"{cpu}, {env.world} process(es) x {torch.get_num_threads()} thread(s)"


def every_ranks_share(scores: np.ndarray) -> np.ndarray:
    """Under DDP: the rows each rank scored (NaN elsewhere), put together on every rank."""
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, scores)
    for part in parts:
        scores = np.where(np.isnan(scores), part, scores)
    return scores


def distributed(model: torch.nn.Module, env: Env) -> torch.nn.Module:
    """Under torchrun, DDP with bucket views (no copy of the gradients) and no buffers to broadcast (an encoder has
    none that training changes); alone, the model itself."""
    if env.world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda"
                                                     else None, gradient_as_bucket_view=True, broadcast_buffers=False)
