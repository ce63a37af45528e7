"""Inference speed: predict.py's path against transformers.pipeline, on the real test set, one run.

    python bench/predict_speed.py MODEL                    # MODEL: a folder saved by bert_model.py
    python bench/predict_speed.py MODEL --limit 64 --rounds 1     # smoke run

Contenders, each classifying the same texts (test.tsv, 5,427 texts) with the same saved model:
  predict      predict.py's own path: predict.load + predict.score (tokenize once, batches sorted by length),
               its defaults (fp32, batch 64)
  predict-bf16 the same with --precision bf16 (bf16 autocast)
  pipeline     transformers.pipeline("text-classification", top_k=None, batch_size=64), truncation at the
               model's max_length: what a user would write instead
Each trial runs in a fresh subprocess, interleaved (predict pipeline predict-bf16 predict ...); the time
covers scoring only (the model load is reported apart). Scores are checked against each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "goemotions"
CONTENDERS = ("predict", "pipeline", "predict-bf16")


def worker(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    import predict

    texts, _ = predict.read_texts(args.input)
    texts = texts[:args.limit] if args.limit else texts
    device = torch.device("cuda" if args.cuda else "cpu")
    t0 = time.perf_counter()
    if args.worker.startswith("predict"):
        model, tokenizer, info = predict.load(args.model, device)
        labels = info["labels"]
        t1 = time.perf_counter()
        amp = torch.bfloat16 if args.worker == "predict-bf16" else None
        scores = predict.score(model, tokenizer, texts, int(info["max_length"]), args.batch_size, device, amp).numpy()
    else:
        from transformers import pipeline

        info = json.loads((Path(args.model) / "goemotions.json").read_text(encoding="utf-8"))
        clf = pipeline("text-classification", model=args.model, top_k=None, batch_size=args.batch_size,
                       device=device)
        labels = [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)]
        t1 = time.perf_counter()
        out = clf(texts, truncation=True, max_length=int(info["max_length"]))
        column = {name: j for j, name in enumerate(labels)}
        scores = np.zeros((len(texts), len(labels)), dtype=np.float32)
        for i, row in enumerate(out):
            for d in row:
                scores[i, column[d["label"]]] = d["score"]
    if args.cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    np.save(args.scores, scores)
    print("RESULT " + json.dumps({"load_s": t1 - t0, "time_s": t2 - t1, "texts": len(texts), "labels": labels}))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a model folder saved by bert_model.py")
    p.add_argument("--input", type=Path, default=DEFAULT_DATA / "test.tsv", help="texts (a GoEmotions .tsv)")
    p.add_argument("--limit", type=int, help="only the first N texts (smoke runs)")
    p.add_argument("--batch-size", type=int, default=64, help="for both (predict.py's default)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--json", type=Path, help="also write every trial here")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--scores", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if not (Path(args.model) / "goemotions.json").exists():
        print(f"error: {args.model}: not a model folder saved by bert_model.py (no goemotions.json)", file=sys.stderr)
        return 2
    if not args.input.exists():
        print(f"error: {args.input}: no such file", file=sys.stderr)
        return 2
    import numpy as np
    import torch

    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    print(f"# predict_speed.py {time.strftime('%Y-%m-%d %H:%M %Z')}: {cpu}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"# command: python bench/predict_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}\n",
          flush=True)
    trials: dict[str, list[dict]] = {c: [] for c in args.contenders}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for c in args.contenders:
                path = Path(tmp) / f"{c}-{r}.npy"
                cmd = [sys.executable, str(Path(__file__).resolve()), str(args.model), "--input", str(args.input),
                       "--batch-size", str(args.batch_size), "--worker", c, "--scores", str(path)]
                cmd += (["--limit", str(args.limit)] if args.limit else []) + (["--cuda"] if args.cuda else [])
                p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                   env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
                lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
                if p.returncode != 0 or not lines:
                    print(f"error: trial {c} failed (exit {p.returncode}):\n{p.stderr[-3000:]}", file=sys.stderr)
                    return 1
                t = json.loads(lines[-1][len("RESULT "):])
                trials[c].append(t)
                scores[c] = np.load(path)
                print(f"round {r + 1} {c}: {t['texts'] / t['time_s']:.1f} texts/s ({t['time_s']:.1f} s, "
                      f"load {t['load_s']:.1f} s)", flush=True)
    med = {c: statistics.median(t["texts"] / t["time_s"] for t in ts) for c, ts in trials.items()}
    n = trials[args.contenders[0]][0]["texts"]
    print(f"\n| contender | texts/s (median of {args.rounds}) | seconds for {n} texts | load s | "
          f"x pipeline | max abs score difference from pipeline | same labels at 0.3 |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for c, ts in trials.items():
        ratio = med[c] / med["pipeline"] if "pipeline" in med else float("nan")
        diff = float(np.abs(scores[c] - scores["pipeline"]).max()) if "pipeline" in scores else float("nan")
        same = float(((scores[c] > 0.3) == (scores["pipeline"] > 0.3)).mean()) if "pipeline" in scores else 1.0
        summary[c] = {"texts_per_s": med[c], "ratio_vs_pipeline": ratio, "max_abs_diff": diff,
                      "same_decisions": same}
        print(f"| {c} | {med[c]:.1f} | {statistics.median(t['time_s'] for t in ts):.1f} | "
              f"{statistics.median(t['load_s'] for t in ts):.1f} | **{ratio:.2f}x** | {diff:.1e} | "
              f"{100 * same:.2f}% |")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": trials}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
