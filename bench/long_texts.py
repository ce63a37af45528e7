"""Long texts, constructed, of two kinds (issues 25 and 33), so that the labels late in a document are out of reach of
truncation. Trains every way of reading them, with seeds, and puts the runs side by side with compare_runs.py.

    python bench/long_texts.py OUT_DIR --model MINILM_DIR [--kind spread|one-passage] [--windows N]
        [--window TOKENS] [--data ../shared/data/goemotions] [--seeds 1 2 3] [--jobs 2]

--kind spread (issue 25): a document is --per-doc GoEmotions comments, its labels the union of theirs (28 labels):
every part of it is evidence. --kind one-passage (issue 33): a document is neutral comments (GoEmotions' `neutral`
alone) filling about --windows windows, and in three of four documents one passage (a comment labelled gratitude,
amusement and/or love only; two in a row in a third of them) at a random place among them; labels: the passage's,
or `neutral` where there is no passage (an absence label). Both from GoEmotions' own splits.
OUT_DIR/data: the documents.
OUT_DIR/runs/VARIANT-seedN: a bert_model.py run each (a run with its metrics.json is not run again). --window
reads the same documents (always built in 64-token units) in windows of another size, or truncates there, as
OUT_DIR/runs/VARIANT-wTOKENS-seedN, beside the others: shorter windows and more of them against longer ones.
OUT_DIR/table.md: compare_runs.py's table; then each variant against truncation, paired bootstrap on test.
OUT_DIR/short.txt: windows cost nothing on short texts: a model trained with windows scores GoEmotions' own test
split (no text over the window) byte-identically read in windows and truncated.
OUT_DIR/speed.txt: predict.py on the test documents: texts/s and peak memory, windows against truncation.
Each run is one process with 1 thread (OMP_NUM_THREADS=1), `--jobs` at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import files  # noqa: E402

WINDOW = 64  # tokens: a document of 8 comments is about 150 of MiniLM's tokens, so truncation reads ~3 of its 8
# each variant's reading; train() gives --max-length (the window, or where truncation cuts) before it, so that
# truncate-256's own --max-length wins
VARIANTS = {
    "truncate": ["--long-texts", "truncate"],
    "head-tail": ["--long-texts", "head-tail"],  # (--window-labels: no effect)
    "windows-max": ["--long-texts", "windows", "--pooling", "max", "--window-labels", "pooled"],
    "windows-logsumexp": ["--long-texts", "windows", "--pooling", "logsumexp", "--window-labels", "pooled"],
    "windows-mean": ["--long-texts", "windows", "--pooling", "mean", "--window-labels", "pooled"],
    "windows-each": ["--long-texts", "windows", "--pooling", "max", "--window-labels", "each"],
    # the defaults since issue 33: windows taught each, each label's pooling and threshold tuned on dev
    "windows-tuned": ["--long-texts", "windows", "--pooling", "tuned", "--window-labels", "each"],
    # a sharpness per label learned from the pooled loss (issue 33): max for a one-passage label, min for an absence
    "windows-learned": ["--long-texts", "windows", "--pooling", "learned", "--window-labels", "pooled"],
    "truncate-256": ["--max-length", "256", "--long-texts", "truncate"],  # every document whole: the ceiling
    # pooled windows at batch 5 documents: about as many steps an epoch, and windows a step, as windows-each's
    # 16 windows a step (a document is ~3 windows), so that the two differ in how windows are taught only
    "windows-max-b5": ["--long-texts", "windows", "--pooling", "max", "--window-labels", "pooled",
                       "--batch-size", "5"],
}
RECIPE = ["--epochs", "2", "--batch-size", "16", "--learning-rate", "1e-4", "--head-learning-rate", "3e-3",
          "--init-bias-from-prior"]


def make_documents(src: Path, out: Path, docs: dict[str, int], per_doc: int, seed: int) -> None:
    """docs[split] documents of `per_doc` comments of that split each, in a random order."""
    labels = files.read_labels(src / "emotions.txt")
    splits = {split: files.read_split(src / f"{split}.tsv", len(labels)) for split in docs}
    for split, n in docs.items():  # each comment used once: never an empty document, nothing written
        if n * per_doc > len(splits[split].texts):
            raise SystemExit(f"long_texts.py: {n} {split} documents of {per_doc} comments need {n * per_doc} "
                             f"comments; {src / f'{split}.tsv'} has {len(splits[split].texts)} (give fewer --docs)")
    out.mkdir(parents=True, exist_ok=True)
    for split, n in docs.items():
        s = splits[split]
        order = list(range(len(s.texts)))
        random.Random(seed).shuffle(order)
        texts, ids, label_ids = [], [], []
        for d in range(n):
            part = order[d * per_doc:(d + 1) * per_doc]
            texts.append(" ".join(s.texts[i] for i in part))
            label_ids.append(tuple(sorted({j for i in part for j in s.labels[i]})))
            ids.append(f"{split}-doc{d}")
        files.atomic_write(out / f"{split}.tsv", files.split_text(texts, label_ids, ids))
    files.atomic_write(out / "emotions.txt", files.labels_text(labels))


PASSAGE_LABELS = ("gratitude", "amusement", "love")  # emotions whose comments say so plainly (issue 25's best learned)


def make_one_passage_documents(src: Path, out: Path, docs: dict[str, int], windows: int, model: str,
                               seed: int) -> None:
    """docs[split] documents of neutral comments of that split, about `windows` windows of WINDOW tokens long (in
    `model`'s tokens); three of four hold a passage: one comment labelled only with PASSAGE_LABELS (two such
    comments in a row in a third of them, so some documents have two labels), at a random place. Labels: the
    passage's, or `neutral` for a document without a passage (an absence label)."""
    from multilabel import lengths

    tokenizer = lengths.load_tokenizer(model)
    names = files.read_labels(src / "emotions.txt")
    out_labels = [*PASSAGE_LABELS, "neutral"]
    room = WINDOW - 2
    target = room + (windows - 1) * (room - room // 4) - room // 2  # tokens: half a window short of `windows` windows
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in docs.items():
        s = files.read_split(src / f"{split}.tsv", len(names))
        named = [(t, [names[i] for i in ls]) for t, ls in zip(s.texts, s.labels, strict=True)]
        neutral = [t for t, ls in named if ls == ["neutral"]]
        passages = [(t, ls) for t, ls in named if set(ls) <= set(PASSAGE_LABELS)]
        size = dict(zip(neutral, (len(ids) for ids in tokenizer(neutral, add_special_tokens=False)["input_ids"]),
                        strict=True))
        texts, label_ids, ids = [], [], []
        for d in range(n):
            filler: list[str] = []
            while sum(size[t] for t in filler) < target:
                filler.append(rng.choice(neutral))
            labels: set[str] = {"neutral"}
            if d % 4:
                passage = [rng.choice(passages) for _ in range(2 if d % 3 == 0 else 1)]
                at = rng.randrange(len(filler) + 1)
                filler[at:at] = [t for t, _ in passage]
                labels = {n for _, ls in passage for n in ls}
            texts.append(" ".join(filler))
            label_ids.append(tuple(sorted(out_labels.index(n) for n in labels)))
            ids.append(f"{split}-doc{d}")
        files.atomic_write(out / f"{split}.tsv", files.split_text(texts, label_ids, ids))
    files.atomic_write(out / "emotions.txt", files.labels_text(out_labels))


def run_name(variant: str, window: int, seed: int) -> str:
    return f"{variant}-seed{seed}" if window == WINDOW else f"{variant}-w{window}-seed{seed}"


def train(data: Path, run: Path, model: str, variant: str, seed: int, window: int = WINDOW, cuda: bool = False) -> str:
    if (run / "metrics.json").exists():
        return f"{run.name}: done before"
    cmd = [sys.executable, str(ROOT / "bert_model.py"), *(str(data / f"{s}.tsv") for s in files.SPLITS),
           str(data / "emotions.txt"), str(run / "model"), "--transformer-model", model, *RECIPE,
           "--max-length", str(window), *VARIANTS[variant], "--seed", str(seed),
           "--metrics-file", str(run / "metrics.json"), "--predictions-file", str(run / "predictions.tsv"),
           "--log-every", "1000", *(["--cuda"] if cuda else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    (run.parent / f"{run.name}.log").write_text(r.stdout + r.stderr)
    if r.returncode:
        return f"{run.name}: FAILED ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode})"
    f1 = json.loads((run / "metrics.json").read_text())["test"]["macro"]["f1"]
    return f"{run.name}: test macro F1 {f1:.4f} in {time.time() - t:.0f} s"


def compare(out: Path) -> None:
    runs = out / "runs"
    table = subprocess.run([sys.executable, str(ROOT / "compare_runs.py"), str(runs), "--format", "markdown"],
                           capture_output=True, text=True, check=True).stdout
    groups = json.loads(subprocess.run([sys.executable, str(ROOT / "compare_runs.py"), str(runs), "--format",
                                        "json"], capture_output=True, text=True, check=True).stdout)
    lines = [table, "", "Each against truncation at the window, then against the defaults, windows-tuned (test macro "
             "F1 difference, paired bootstrap):", ""]
    by_variant = {}
    for g in groups["groups"]:
        name = Path(g["runs"][0]["path"]).parent.name.rsplit("-seed", 1)[0]
        by_variant[name] = g["id"]
    done = set()
    for against in ("truncate", "windows-tuned"):  # truncation, and the default reading since issue 33
        for name, gid in by_variant.items():
            if name != against and against in by_variant and frozenset((name, against)) not in done:
                done.add(frozenset((name, against)))
                r = subprocess.run([sys.executable, str(ROOT / "compare_runs.py"), str(runs), "--compare", gid,
                                    by_variant[against]], capture_output=True, text=True)
                lines.append(f"- {name} minus {against}: " +
                             (r.stdout.strip().splitlines() or [r.stderr.strip()])[-1])
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def predict(model: Path, data: Path, output: Path, settings: dict | None = None,
            cuda: bool = False) -> tuple[float, float]:
    """predict.py on data's test split with `model` (its goemotions.json changed by `settings`, in a copy):
    (texts/s as predict.py reports, peak RSS MiB of the process)."""
    if settings:
        import shutil
        copy = output.with_suffix(".model")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(model, copy)
        saved = json.loads((copy / files.MODEL_SETTINGS).read_text())
        (copy / files.MODEL_SETTINGS).write_text(json.dumps({**saved, **settings}))
        model = copy
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(ROOT / "predict.py"), str(model), "--input", str(data / "test.tsv"), "--output",
           str(output), *(["--cuda"] if cuda else [])]
    with open(output.with_suffix(".log"), "w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this process's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    if proc.returncode:
        raise SystemExit(f"predict.py failed: {text[-2000:]}")
    rate = float(text.split(" texts/s")[0].rsplit(";", 1)[-1])
    return rate, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--model", required=True, help="the encoder (e.g. MiniLM's folder)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "goemotions")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--docs", type=int, nargs=3, default=[1200, 300, 600], metavar=("TRAIN", "DEV", "TEST"))
    p.add_argument("--kind", choices=["spread", "one-passage"], default="spread", help="which documents (above)")
    p.add_argument("--per-doc", type=int, default=8, help="--kind spread: comments a document")
    p.add_argument("--windows", type=int, default=2, help="--kind one-passage: windows a document, about")
    p.add_argument("--window", type=int, default=WINDOW,
                   help=f"tokens a window (or where truncation cuts) when reading them (default {WINDOW}: the unit "
                        "the documents are built in)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cuda", action="store_true", help="train and predict on the GPU (bench/gpu_check.sh)")
    args = p.parse_args(argv)
    data = args.out / "data"
    docs = dict(zip(files.SPLITS, args.docs, strict=True))
    if args.kind == "spread":
        make_documents(args.data, data, docs, args.per_doc, seed=0)
    else:
        make_one_passage_documents(args.data, data, docs, args.windows, args.model, seed=0)
    todo = [(v, s) for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda vs: train(data, args.out / "runs" / run_name(vs[0], args.window, vs[1]),
                                              args.model, *vs, window=args.window, cuda=args.cuda), todo):
            print(line, flush=True)
    compare(args.out)
    first = args.out / "runs" / f"windows-max-seed{args.seeds[0]}" / "model"
    if first.exists() and args.kind == "spread":
        short = args.out / "short"
        short.mkdir(exist_ok=True)
        predict(first, args.data, short / "windows.tsv", cuda=args.cuda)
        predict(first, args.data, short / "truncate.tsv", {"long_texts": "truncate"}, cuda=args.cuda)
        same = (short / "windows.tsv").read_bytes() == (short / "truncate.tsv").read_bytes()
        line = (f"GoEmotions test split (5,427 comments, none over {WINDOW} tokens), the windows-max model read in "
                f"windows and truncated: {'byte-identical' if same else 'DIFFERENT'} predictions")
        (args.out / "short.txt").write_text(line + "\n")
        print(line)
        where = "the GPU" if args.cuda else "1 thread"
        speed = [f"predict.py on {args.docs[2]} test documents, {where}, {WINDOW}-token windows vs truncation:"]
        for name, settings in (("windows (max)", None), ("truncate", {"long_texts": "truncate"})):
            rate, rss = predict(first, data, short / f"docs-{name.split()[0]}.tsv", settings, args.cuda)
            speed.append(f"- {name}: {rate:.1f} texts/s, peak RSS {rss:.0f} MiB")
        (args.out / "speed.txt").write_text("\n".join(speed) + "\n")
        print("\n".join(speed))
    print(f"peak RSS of the runs: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
