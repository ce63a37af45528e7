"""The cost of one optimizer step (and gradient clipping) on a real model's parameters, per implementation.

    python bench/optimizer_step.py                 # MiniLM-L6 (22.7M parameters)
    python bench/optimizer_step.py --model bert-base
    python bench/optimizer_step.py --model MODEL_DIR --steps 1 --rounds 1      # any BERT folder (smoke runs)

On a CPU, torch.optim.AdamW defaults to its for-loop implementation (foreach and fused are defaults on
CUDA only), and clip_grad_norm_ likewise; with a 30,522-word embedding table every step updates every
parameter. This times each variant on the same parameters and gradients and checks they agree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="minilm, bert-base, or a model folder")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    from transformers import AutoModelForSequenceClassification

    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "minilm":
            path = throughput.minilm_dir()
        elif args.model == "bert-base":
            path = throughput.make_random_bert(Path(tmp) / "m", throughput.minilm_dir(), "base")
        else:
            path = Path(args.model)
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False, num_labels=28)
    params = list(model.parameters())
    torch.manual_seed(0)
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    start = [p.detach().clone() for p in params]
    n = sum(p.numel() for p in params)
    variants = {
        "AdamW (CPU default: for-loop)": dict(),
        "AdamW foreach=True": dict(foreach=True),
        "AdamW fused=True": dict(fused=True),
    }
    times: dict[str, list[float]] = {k: [] for k in [*variants, "clip_grad_norm_ (default)", "clip_grad_norm_ foreach"]}
    final = {}
    for _ in range(args.rounds):  # interleaved
        for name, kw in variants.items():
            with torch.no_grad():
                for p, s, g in zip(params, start, grads, strict=True):
                    p.copy_(s)
                    p.grad = g.clone()
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, **kw)
            opt.step()  # the first step allocates the state
            t = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            times[name].append((time.perf_counter() - t) / args.steps)
            final[name] = [p.detach().clone() for p in params]
        for name, foreach in (("clip_grad_norm_ (default)", None), ("clip_grad_norm_ foreach", True)):
            t = time.perf_counter()
            for _ in range(args.steps):
                torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=foreach)
            times[name].append((time.perf_counter() - t) / args.steps)
    ref = final["AdamW (CPU default: for-loop)"]
    print(f"# {args.model}: {n / 1e6:.1f}M parameters, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds of {args.steps} steps\n")
    print("| variant | ms per step | max abs difference from the default after the steps |\n|---|---|---|")
    for name, ts in times.items():
        diff = max(float((a - b).abs().max()) for a, b in zip(final[name], ref, strict=True)) if name in final else None
        print(f"| {name} | {1000 * statistics.median(ts):.1f} | {'' if diff is None else f'{diff:.1e}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
