"""Inference speed, accuracy and memory: predict.py's paths against transformers.pipeline, on the real test set.

    python bench/predict_speed.py MODEL                    # MODEL: a folder saved by bert_model.py
    python bench/predict_speed.py MODEL --limit 64 --rounds 1     # smoke run
    python bench/predict_speed.py MODEL --rss 1 10 --rss-contenders predict predict-int8   # + peak memory

Contenders, each classifying the same texts (test.tsv, 5,427 texts) with the same saved model:
  predict      predict.py's own loop (read_rows, chunks, score, format_chunk: chunks of 4096 texts, batches
               sorted by length), its defaults (fp32, batch 64), the output written to a file
  predict-bf16 the same with --precision bf16 (bf16 autocast)
  predict-int8 the same with --precision int8 (ONNX Runtime, weights quantized to INT8; exported once, beforehand)
  pipeline     transformers.pipeline("text-classification", top_k=None, batch_size=64), truncation at the
               model's max_length: what a user would write instead
Each trial runs in a fresh subprocess, interleaved (predict pipeline predict-bf16 predict-int8 predict ...); the
time covers scoring and writing (the model load is reported apart). predict.py's paths read the texts as the model
was trained to (its goemotions.json: truncation, or windows pooled), as predict.py does; the pipeline truncates.
Scores are checked against each other, and macro F1 at 0.3 against the input's gold labels where it is a
GoEmotions TSV (multilabel/decide.py: the decision rule and scoring predict.py and training use).
--rss N...: predict.py itself (the command line, --output FILE) over the input repeated N times, each in a
child process whose peak RSS is read with /usr/bin/time.
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
sys.path.insert(0, str(ROOT))

from multilabel import decide, files  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "goemotions"
CONTENDERS = ("predict", "pipeline", "predict-bf16", "predict-int8")  # the CPU set, the default
GPU_ONLY = ("predict-fp16",)  # --cuda --contenders ... predict-fp16 (bench/gpu_check.sh)


def worker(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from multilabel import corpus, encoder, labelled, lengths

    texts, _ = corpus.read_texts(args.input)
    texts = texts[:args.limit] if args.limit else texts
    device = torch.device("cuda" if args.cuda else "cpu")
    t0 = time.perf_counter()
    if args.worker.startswith("predict"):
        precision = args.worker.partition("-")[2] or "fp32"
        model, tokenizer, info = encoder.load(args.model, device)
        labels = info["labels"]
        if precision == "int8":
            model = encoder.onnx_session(Path(args.model) / encoder.ONNX_DIR / "model.onnx", torch.get_num_threads())
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        thresholds = np.full(len(labels), float(info["threshold"]), dtype=np.float32)
        reading = lengths.Reading.of(info)  # how the model reads a text, as predict.py reads it
        rows = [corpus.Row(i, str(i), t) for i, t in enumerate(texts, 1)]
        t1 = time.perf_counter()
        parts = []
        with open(args.scores + ".out", "w", encoding="utf-8") as out:
            for chunk in corpus.chunks(rows, corpus.CHUNK_SIZE):
                encoded = encoder.encode(tokenizer, [r.text for r in chunk], reading)
                got = encoder.score(model, encoded, args.batch_size, encoder.pad_id(tokenizer), device, amp,
                                    reading.pooled_by)
                out.write(labelled.format_chunk(chunk, got, labels, thresholds, 0, "tsv", False))
                parts.append(got)
        scores = np.concatenate(parts)
    else:
        from transformers import pipeline

        info = files.read_model_settings(args.model)
        clf = pipeline("text-classification", trust_remote_code=False, model=args.model, top_k=None,
                       batch_size=args.batch_size, device=device)
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
    p.add_argument("--input", type=Path, default=files.split_path(DEFAULT_DATA, "test"),
                   help="texts (a GoEmotions .tsv)")
    p.add_argument("--limit", type=int, help="only the first N texts (smoke runs)")
    p.add_argument("--batch-size", type=int, default=64, help="for both (predict.py's default)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS + GPU_ONLY, default=list(CONTENDERS))
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every trial (default: torch's)")
    p.add_argument("--rss", nargs="+", type=int, metavar="N", help="also peak RSS of predict.py over the input x N")
    p.add_argument("--rss-contenders", nargs="+", choices=[c for c in CONTENDERS if c != "pipeline"],
                   default=["predict"])
    p.add_argument("--json", type=Path, help="also write every trial here")
    p.add_argument("--worker", choices=CONTENDERS + GPU_ONLY, help=argparse.SUPPRESS)
    p.add_argument("--scores", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return {**env, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)} if args.threads else env


def gold_labels(path: Path, num_labels: int, n: int):
    """The gold label matrix of a GoEmotions TSV (its first n rows, read by files.read_split), or None for other
    input."""
    if path.suffix != ".tsv":
        return None
    return files.multi_hot(files.read_split(path, num_labels).labels[:n], num_labels)


def macro_f1(gold, scores, threshold: float = 0.3) -> float:
    """Macro F1 of the decisions at `threshold`: decide.py's rule and scoring, as predict.py's and training's."""
    return decide.macro_f1(gold, decide.decide(scores, threshold))


def measure_rss(args: argparse.Namespace) -> list[dict]:
    """Peak RSS of predict.py (the command line, writing --output) over the input repeated N times, for each N
    in --rss and each of --rss-contenders, interleaved; each a child process measured by /usr/bin/time."""
    results = []
    lines = args.input.read_bytes().splitlines(keepends=True)[:args.limit or None]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rss:
            (Path(tmp) / f"x{n}{args.input.suffix}").write_bytes(b"".join(lines) * n)
        print(f"\n| predict.py | corpus | texts | peak RSS MiB | texts/s (whole process) | RSS / {args.rss[0]}x |")
        print("|---|---|---|---|---|---|")
        first: dict[str, float] = {}
        for n in args.rss:
            for c in args.rss_contenders:
                out = Path(tmp) / f"out-{c}-{n}.tsv"
                precision = c.partition("-")[2] or "fp32"
                corpus = Path(tmp) / f"x{n}{args.input.suffix}"
                cmd = [sys.executable, str(ROOT / "predict.py"), str(args.model), "--input", str(corpus),
                       "--output", str(out), "--precision", precision, "--batch-size", str(args.batch_size)]
                start = time.perf_counter()
                # /usr/bin/time, not os.wait4 here: a child's peak RSS starts at its parent's (Linux carries the
                # high-water mark over fork and exec), and this process holds torch and a model
                p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(out) + ".rss", *cmd], capture_output=True,
                                   text=True, cwd=ROOT, env=child_env(args))
                seconds = time.perf_counter() - start
                if p.returncode != 0:
                    raise SystemExit(f"error: {' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
                kib = int(Path(str(out) + ".rss").read_text().split()[-1])
                texts = len(lines) * n
                mib = kib / 1024
                first.setdefault(c, mib)
                results.append({"contender": c, "repeat": n, "texts": texts, "peak_rss_mib": mib, "seconds": seconds})
                print(f"| {c} | test x {n} | {texts} | {mib:.0f} | {texts / seconds:.1f} | {mib / first[c]:.3f} |",
                      flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if not (Path(args.model) / files.MODEL_SETTINGS).exists():
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
    if "predict-int8" in args.contenders + (args.rss_contenders if args.rss else []):
        from multilabel import encoder

        model = encoder.load(args.model, torch.device("cpu"))[0]
        print(f"# INT8 model: {encoder.export_int8(model, Path(args.model))[0]} (exported once, before the trials)\n")
    trials: dict[str, list[dict]] = {c: [] for c in args.contenders}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for c in args.contenders:
                path = Path(tmp) / f"{c}-{r}.npy"
                cmd = [sys.executable, str(Path(__file__).resolve()), str(args.model), "--input", str(args.input),
                       "--batch-size", str(args.batch_size), "--worker", c, "--scores", str(path)]
                cmd += (["--limit", str(args.limit)] if args.limit else []) + (["--cuda"] if args.cuda else [])
                p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env(args))
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
          f"x pipeline | max abs score difference from pipeline | same labels at 0.3 | test macro F1 at 0.3 |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        gold = gold_labels(args.input, len(trials[args.contenders[0]][0]["labels"]), n)
    except files.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {}
    for c, ts in trials.items():
        ratio = med[c] / med["pipeline"] if "pipeline" in med else float("nan")
        diff = float(np.abs(scores[c] - scores["pipeline"]).max()) if "pipeline" in scores else float("nan")
        same = float(((scores[c] > 0.3) == (scores["pipeline"] > 0.3)).mean()) if "pipeline" in scores else 1.0
        f1 = macro_f1(gold, scores[c]) if gold is not None else float("nan")
        summary[c] = {"texts_per_s": med[c], "ratio_vs_pipeline": ratio, "max_abs_diff": diff,
                      "same_decisions": same, "macro_f1": f1}
        print(f"| {c} | {med[c]:.1f} | {statistics.median(t['time_s'] for t in ts):.1f} | "
              f"{statistics.median(t['load_s'] for t in ts):.1f} | **{ratio:.2f}x** | {diff:.1e} | "
              f"{100 * same:.2f}% | {f1:.4f} |")
    rss = measure_rss(args) if args.rss else []
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": trials, "rss": rss}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
