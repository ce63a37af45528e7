"""Issue 33's planted-marker case with a real encoder, as a new user meets it: long documents of neutral GoEmotions
comments, half of them with a marker word pair far in (past the first 512-token window), labels `marker` (the pair is
there: evidence in one passage) and `other` (it is not: an absence label, as GoEmotions' neutral). bert_model.py is
run at its defaults (windows of --max-length auto, each window taught its document's labels, --pooling tuned) with
the issue's options (3 epochs, batch 8, learning rate 1e-4); for the record, with issue 25's max pooling, and with
shorter windows (128 or 256 tokens, more of them: at most --max-windows 8, so a text's last tokens may go unread).

    python bench/planted_marker.py OUT_DIR --model MINILM_DIR [--data ../shared/data/goemotions] [--seeds 1]
        [--variants defaults max window-128 window-256] [--docs 240 60 120] [--jobs 2]

OUT_DIR/data: the documents (about --words words each; the pair placed about --at words in).
OUT_DIR/runs/VARIANT-seedN: a bert_model.py run each (a run with its metrics.json is not run again), its log beside.
OUT_DIR/table.md: per run, `marker` and `other` test F1 and how each label was pooled. Each run is one process with 1
thread (OMP_NUM_THREADS=1), --jobs at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import files, lengths  # noqa: E402

MARKER = "violet lighthouse"  # two plain words that no neutral comment puts together
LABELS = ("marker", "other")
# max: issue 25's pooling, the default before issue 33; 128 and 256: shorter windows, more of them (the defaults else)
VARIANTS = {"defaults": [], "max": ["--pooling", "max"], "window-128": ["--max-length", "128"],
            "window-256": ["--max-length", "256"]}
RECIPE = ["--batch-size", "8", "--learning-rate", "1e-4", "--log-every", "1000"]  # the issue's, with 3 epochs


def make_documents(src: Path, out: Path, docs: dict[str, int], words: int, at: int, seed: int = 0) -> None:
    """docs[split] documents of that split's neutral comments, about `words` words each; every other one has MARKER
    between two comments about `at` words in."""
    names = files.read_labels(src / "emotions.txt")
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in docs.items():
        s = files.read_split(src / f"{split}.tsv", len(names))
        neutral = [t for t, ls in zip(s.texts, s.labels, strict=True) if [names[i] for i in ls] == ["neutral"]]
        texts, labels = [], []
        for d in range(n):
            parts: list[str] = []
            while sum(len(p.split()) for p in parts) < words:
                parts.append(rng.choice(neutral))
                if d % 2 == 0 and MARKER not in parts and sum(len(p.split()) for p in parts) >= at:
                    parts.append(MARKER)
            texts.append(" ".join(parts))
            labels.append((0,) if d % 2 == 0 else (1,))
        files.atomic_write(out / f"{split}.tsv", files.split_text(texts, labels, [f"{split}-doc{d}" for d in range(n)]))
    files.atomic_write(out / "emotions.txt", files.labels_text(list(LABELS)))


def train(data: Path, run: Path, model: str, variant: str, seed: int, epochs: int) -> dict:
    """One bert_model.py run (1 thread): its metrics.json."""
    if not (run / "metrics.json").exists():
        cmd = [sys.executable, str(ROOT / "bert_model.py"), *(str(data / f"{s}.tsv") for s in files.SPLITS),
               str(data / "emotions.txt"), str(run / "model"), "--transformer-model", model, *RECIPE, "--epochs",
               str(epochs),
               *VARIANTS[variant], "--seed", str(seed), "--metrics-file", str(run / "metrics.json")]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        started = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        (run.parent / f"{run.name}.log").write_text(r.stdout + r.stderr + f"\nwall {time.time() - started:.0f} s\n")
        if r.returncode:
            raise SystemExit(f"{run.name} failed: {r.stderr[-2000:]}")
    return json.loads((run / "metrics.json").read_text())


def row(name: str, metrics: dict) -> str:
    """| run | marker F1 | other F1 | macro F1 | how each label was pooled | windows a text | minutes |"""
    f1 = [metrics["test"]["per_label"][n]["f1"] for n in LABELS]
    reading = lengths.Reading.of(metrics["reading"])
    pooled = reading.pooled_by.describe(list(LABELS), metrics["threshold"]) \
        if isinstance(reading.pooled_by, lengths.PerLabel) else f"{reading.pooling}, threshold {metrics['threshold']}"
    train = metrics["lengths"]["train"]
    return (f"| {name} | {f1[0]:.3f} | {f1[1]:.3f} | {metrics['test']['macro']['f1']:.3f} | {pooled} | "
            f"{reading.max_length} tokens, {train['median']:.0f} median | {metrics['total_time_s'] / 60:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--model", required=True, help="the encoder (e.g. MiniLM's folder)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "goemotions")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["defaults", "max"])
    p.add_argument("--docs", type=int, nargs=3, default=[240, 60, 120], metavar=("TRAIN", "DEV", "TEST"))
    p.add_argument("--words", type=int, default=520, help="words a document, about")
    p.add_argument("--at", type=int, default=440, help="words before the marker, about")
    p.add_argument("--epochs", type=int, default=3, help="the issue's 3 (fewer: a smoke run)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    data = args.out / "data"
    make_documents(args.data, data, dict(zip(files.SPLITS, args.docs, strict=True)), args.words, args.at)
    todo = [(v, s) for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        found = list(pool.map(lambda vs: train(data, args.out / "runs" / f"{vs[0]}-seed{vs[1]}", args.model, *vs,
                                               args.epochs), todo))
    lines = ["| run | marker F1 | other F1 | macro F1 | pooling, and the threshold it decides at | window | minutes |",
             "|---|---|---|---|---|---|---|"]
    lines += [row(f"{v}-seed{s}", m) for (v, s), m in zip(todo, found, strict=True)]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
