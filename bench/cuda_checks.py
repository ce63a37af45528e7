"""Checks of the mixed-precision paths bert_model.py takes on a GPU: fp16 with grad scaling, bf16, fused AdamW.

    python bench/cuda_checks.py MODEL_DIR DATA_DIR [--device cuda] [--examples 2000]

Run by bench/gpu_check.sh. MODEL_DIR is any BERT folder (a random one will do); DATA_DIR the GoEmotions files.
1. Numerics on one real batch: gradients under fp16 autocast + GradScaler (unscaled) and under bf16 autocast
   point the same way as fp32 gradients (cosine > 0.99); one fused AdamW step equals the unfused one.
2. bert_model.py end to end with --precision fp16 and --precision bf16 (and fused AdamW, which --cuda uses):
   exit 0, finite losses, the training loss falls well below the starting 0.69 (the head learns the label
   priors at least).
On CPU (a smoke run) the same checks run on the CPU (torch supports all three there), --cuda left out;
--device cuda on a machine without a GPU is refused in one line (exit 2).
Prints one PASS/FAIL line per check; exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import files  # noqa: E402


def one_batch(model_dir: Path, data_dir: Path, device: str, n: int = 16):
    from transformers import AutoTokenizer

    num_labels = len(files.read_labels(data_dir / files.LABELS_FILE))
    split = files.read_split(files.split_path(data_dir, "train"), num_labels)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    enc = tokenizer(split.texts[:n], padding=True, truncation=True, max_length=50, return_tensors="pt")
    y = torch.from_numpy(files.multi_hot(split.labels[:n], num_labels))
    return enc["input_ids"].to(device), enc["attention_mask"].to(device), y.to(device)


def grads(model, ids, mask, y, dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    with torch.autocast(ids.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(input_ids=ids, attention_mask=mask).logits
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
    if scaler is not None:
        scaler.scale(loss).backward()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        scaler.unscale_(opt)
    else:
        loss.backward()
    return torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])


def numerics(model_dir: Path, data_dir: Path, device: str) -> list[tuple[str, bool, str]]:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    num_labels = len(files.read_labels(data_dir / files.LABELS_FILE))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=False,
                                                               num_labels=num_labels,
                                                               problem_type="multi_label_classification",
                                                               hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0).to(device)
    ids, mask, y = one_batch(model_dir, data_dir, device)
    ref = grads(model, ids, mask, y, None, None)
    out = []
    for name, dtype, scaler in (("fp16 autocast + GradScaler", torch.float16, torch.amp.GradScaler(device)),
                                ("bf16 autocast", torch.bfloat16, None)):
        g = grads(model, ids, mask, y, dtype, scaler)
        cos = float(torch.nn.functional.cosine_similarity(g, ref, dim=0))
        finite = bool(torch.isfinite(g).all())
        out.append((f"{name}: gradients vs fp32", finite and cos > 0.99, f"cosine {cos:.5f}, finite {finite}"))
    # fused AdamW against the default (foreach) implementation, one step from the same state
    params = [p for p in model.parameters() if p.grad is not None]
    copies = [p.detach().clone() for p in params]
    state = {id(p): p.detach().clone() for p in params}
    results = {}
    for fused in (False, True):
        with torch.no_grad():
            for p in params:
                p.copy_(state[id(p)])
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=fused or None, foreach=not fused)
        opt.step()
        results[fused] = [p.detach().clone() for p in params]
    diff = max(float((a - b).abs().max()) for a, b in zip(results[False], results[True], strict=True))
    moved = max(float((a - c).abs().max()) for a, c in zip(results[True], copies, strict=True))
    out.append(("fused AdamW step equals the unfused one", diff < 1e-6 and moved > 1e-4,
                f"max difference {diff:.2e}, max change {moved:.2e}"))
    return out


def end_to_end(model_dir: Path, data_dir: Path, device: str, examples: int,
               max_loss: float) -> list[tuple[str, bool, str]]:
    import bert_model  # run in this process: its main() is importable, and a second start costs seconds

    out = []
    for precision in ("fp16", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            metrics = Path(tmp) / "metrics.json"
            argv = [*map(str, files.folder_files(data_dir)),
                    str(Path(tmp) / "model"), "--transformer-model", str(model_dir), "--epochs", "1",
                    "--precision", precision, "--max-train-examples", str(examples), "--metrics-file", str(metrics),
                    "--checkpoint-every", "0"]
            rc = bert_model.main(argv + (["--cuda"] if device == "cuda" else []))
            if rc != 0:
                out.append((f"bert_model.py --precision {precision}", False, f"exit {rc}"))
                continue
            m = json.loads(metrics.read_text())
            losses = [v for _, v in m["loss_curve"]]
            ok = m["precision"] == precision and all(math.isfinite(v) for v in losses) \
                and m["history"][0]["train_loss"] < max_loss
            out.append((f"bert_model.py --precision {precision}" + (" (fused AdamW)" if device == "cuda" else ""),
                        ok, f"train loss {m['history'][0]['train_loss']:.4f}, "
                        f"{m['history'][0]['epoch_time_s']:.1f} s, test macro F1 {m['test']['macro']['f1']:.3f}, "
                        f"peak GPU {m['peak_gpu_mb'] or 0:.0f} MiB"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--examples", type=int, default=2000, help="training examples for the end-to-end runs")
    p.add_argument("--max-loss", type=float, default=0.5,
                   help="the end-to-end runs must end their epoch with a mean training loss below this")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("cuda_checks.py: error: --device cuda, but torch sees no GPU here (run it on the GPU machine, or "
              "--device cpu for the smoke run)", file=sys.stderr)
        return 2
    checks = numerics(args.model_dir, args.data_dir, args.device)
    checks += end_to_end(args.model_dir, args.data_dir, args.device, args.examples, args.max_loss)
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
