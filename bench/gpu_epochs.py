"""One epoch per model, mode and precision with bert_model.py: the table of bench/gpu_check.sh (issue 17).

    python bench/gpu_epochs.py DATA_DIR --model base=PATH --model minilm=PATH --device cuda --out RESULTS_DIR
    python bench/gpu_epochs.py DATA_DIR ... --runs base:eager:bf16,base:compile:bf16 --agree-step 200
    python bench/gpu_epochs.py DATA_DIR ... --resume-check minilm      # bf16 -> SIGUSR1 -> resumed in fp16

Each run is a fresh `bert_model.py ... --epochs 1` process; the numbers come from its metrics.json: seconds for
the epoch (compiling included, for --compile), examples/s, peak GPU memory, the training loss at the first
logging point at or after --agree-step (eager and --compile of the same model and precision must agree
there), test macro F1, and the whole process's time. Prints one Markdown table and writes it, with the raw
numbers, to RESULTS_DIR/gpu_epochs.md and .json. Exit 1 if a run failed or a pair disagreed. --device cuda (the
default) where torch sees no GPU is refused in one line (exit 2); --device cpu is the smoke run (gpu_check.sh --tiny).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import files  # noqa: E402

TARGET = "targets on an H100 (issue 17): a BERT-base epoch at batch 16 <= 15 s, <= 3072 MiB peak GPU memory"


def bert_model(data: Path, model: Path, save: Path, device: str, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "bert_model.py"), *map(str, files.folder_files(data)), str(save),
            "--transformer-model", str(model),
            "--epochs", "1", "--checkpoint-minutes", "1000", "--eval-batch-size", "256",
            *(["--cuda"] if device == "cuda" else []), *extra]


def one_epoch(data: Path, model: Path, out: Path, models: Path, name: str, mode: str, precision: str, device: str,
              extra: list[str]) -> dict:
    metrics = out / f"{name}-{mode}-{precision}.json"
    cmd = bert_model(data, model, models / f"{name}-{mode}-{precision}", device, "--precision", precision,
                     "--metrics-file", str(metrics), "--log-every", "50", *(["--compile"] if mode == "compile" else []),
                     *extra)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - t0
    (out / f"{name}-{mode}-{precision}.log").write_text(r.stdout + r.stderr, encoding="utf-8")
    if r.returncode != 0:
        error = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"name": name, "mode": mode, "precision": precision, "error": error}
    m = json.loads(metrics.read_text())
    h = m["history"][0]
    return {"name": name, "mode": mode, "precision": m["precision"], "epoch_s": h["epoch_time_s"],
            "examples_s": h["steps"] * m["args"]["batch_size"] * m["world_size"] / h["epoch_time_s"],
            "steps": h["steps"], "peak_gpu_mb": m["peak_gpu_mb"] or 0.0, "loss_curve": m["loss_curve"],
            "test_macro_f1": m["test"]["macro"]["f1"], "process_s": wall}


def loss_at(run: dict, step: int) -> tuple[int, float] | None:
    return next(((s, loss) for s, loss in run.get("loss_curve", []) if s >= step), None)


def table(runs: list[dict], agree_step: int) -> str:
    rows = ["| model | mode | precision | epoch s | examples/s | peak GPU MiB | loss at step | test macro F1 | "
            "process s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if "error" in r:
            rows.append(f"| {r['name']} | {r['mode']} | {r['precision']} | FAILED: {r['error']} | | | | | |")
            continue
        at = loss_at(r, agree_step)
        rows.append(f"| {r['name']} | {r['mode']} | {r['precision']} | {r['epoch_s']:.1f} | {r['examples_s']:.0f} | "
                    f"{r['peak_gpu_mb']:.0f} | {f'{at[1]:.4f} ({at[0]})' if at else ''} | "
                    f"{r['test_macro_f1']:.4f} | {r['process_s']:.0f} |")
    return "\n".join(rows)


def agreement(runs: list[dict], agree_step: int, tolerance: float) -> list[str]:
    """Eager and --compile of one model and precision: the same loss at the same step, within `tolerance`."""
    lines = []
    for r in runs:
        if r["mode"] != "compile":
            continue
        eager = next((e for e in runs if e["mode"] == "eager" and e["name"] == r["name"]
                      and e["precision"] == r["precision"]), None)
        if eager is None or "error" in eager or "error" in r:
            continue
        a, b = loss_at(eager, agree_step), loss_at(r, agree_step)
        ok = a is not None and b is not None and a[0] == b[0] and abs(a[1] - b[1]) <= tolerance
        lines.append(f"{'PASS' if ok else 'FAIL'} {r['name']} {r['precision']}: eager and --compile losses at step "
                     f"{a[0] if a else '?'}: {a[1] if a else float('nan'):.4f} vs {b[1] if b else float('nan'):.4f} "
                     f"(tolerance {tolerance})")
    return lines


def resume_check(data: Path, model: Path, out: Path, models: Path, device: str, extra: list[str],
                 stop_at: int) -> str:
    """A job requeued onto another GPU type: --precision auto resolved to bf16 (this GPU), stopped by SIGUSR1 after
    `stop_at` steps, then resumed where auto resolves to fp16 (a V100's; faked, as only one GPU type is here)."""
    save = models / "resume-check"
    base = bert_model(data, model, save, device, "--log-every", str(stop_at), "--resume", "--precision", "auto",
                      *extra)

    def on(precision: str) -> list[str]:  # bert_model.py where auto resolves to `precision`
        fake = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import bert_model, multilabel.device as d; "
                f"d.resolve_precision = lambda requested, cuda: {precision!r}; sys.exit(bert_model.main())")
        return [base[0], "-c", fake, *base[2:]]

    proc = subprocess.Popen(on("bf16"), cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = []
    for line in proc.stdout:
        log.append(line)
        if line.startswith(f"epoch 1 batch {stop_at}/"):
            proc.send_signal(signal.SIGUSR1)
            break
    log.append(proc.communicate(timeout=600)[0])
    r = subprocess.run(on("fp16"), capture_output=True, text=True, cwd=ROOT)
    (out / "resume-check.log").write_text("".join(log) + r.stdout + r.stderr, encoding="utf-8")
    moved = "written in bf16, this run is fp16" in r.stdout and "the fp16 loss scaler starts afresh" in r.stdout
    ok = proc.returncode == 99 and r.returncode == 0 and moved
    return (f"{'PASS' if ok else 'FAIL'} resume across precisions: bf16 run exit {proc.returncode} (99 expected), "
            f"resumed in fp16 exit {r.returncode}{', the scaler started afresh' if moved else ', no precision line'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="GoEmotions folder (train/dev/test.tsv, emotions.txt)")
    p.add_argument("--model", action="append", required=True, help="NAME=MODEL_DIR (repeatable)")
    p.add_argument("--runs", default="base:eager:bf16,base:compile:bf16,base:eager:fp16,base:compile:fp16,"
                   "minilm:eager:bf16,minilm:compile:bf16", help="NAME:MODE:PRECISION,...")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--models-dir", type=Path, help="where the trained models go (default: OUT/models)")
    p.add_argument("--agree-step", type=int, default=1000, help="compare eager and --compile losses here")
    p.add_argument("--tolerance", type=float, default=0.02, help="bf16/fp16 rounding over that many steps")
    p.add_argument("--resume-check", metavar="NAME", help="also: bf16 stopped by SIGUSR1, resumed in fp16")
    p.add_argument("--resume-stop-at", type=int, default=40, help="the step the resume check stops at")
    p.add_argument("--extra", default="", help="more bert_model.py options, e.g. '--max-train-examples 64'")
    a = p.parse_args(argv)
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("gpu_epochs.py: error: --device cuda, but torch sees no GPU here (run it on the GPU machine, or "
                  "--device cpu for the smoke run)", file=sys.stderr)
            return 2
    models = dict(m.split("=", 1) for m in a.model)
    extra = a.extra.split()
    a.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for spec in a.runs.split(","):
        name, mode, precision = spec.split(":")
        runs.append(one_epoch(a.data, Path(models[name]), a.out, a.models_dir or a.out / "models", name, mode,
                              precision, a.device, extra))
        r = runs[-1]
        print(f"{name} {mode} {precision}: " + (f"FAILED: {r['error']}" if "error" in r else
              f"{r['epoch_s']:.1f} s, {r['examples_s']:.0f} examples/s, {r['peak_gpu_mb']:.0f} MiB"), flush=True)
    checks = agreement(runs, a.agree_step, a.tolerance)
    if a.resume_check:
        checks.append(resume_check(a.data, Path(models[a.resume_check]), a.out, a.models_dir or a.out / "models",
                                   a.device, extra, a.resume_stop_at))
    text = "\n".join([table(runs, a.agree_step), "", *checks, "", TARGET])
    print(text)
    (a.out / "gpu_epochs.md").write_text(text + "\n", encoding="utf-8")
    (a.out / "gpu_epochs.json").write_text(json.dumps({"runs": runs, "checks": checks}, indent=1), encoding="utf-8")
    failed = any("error" in r for r in runs) or any(c.startswith("FAIL") for c in checks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
