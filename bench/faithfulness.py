"""How faithful explain.py's word numbers are, ERASER's way (DeYoung et al., ACL 2020), and what they cost.

    python bench/faithfulness.py MODEL OUT_DIR [--input ../shared/data/goemotions/test.tsv] [--limit 1000]
        [--methods occlusion ig] [--ig-steps 50]

explain.py runs on the input's first --limit texts with each method (1 thread, its own process: texts/s and peak
RSS), each text's predicted labels explained; predict.py on the same texts is the reference cost. Then, for each
text and label explained, its words ranked by the method's numbers (and, as the floor, in a random order):
- comprehensiveness: the label's score on the text minus its score with the top k% of the words removed (higher:
  the words the method names were what the model used);
- sufficiency: the score minus the score of the top k% of the words alone (lower: those words are enough);
each averaged over k = 1, 5, 10, 20, 50% (AOPC; a text's k% of words rounded up, at least one), then over the
explanations. Words are removed from the text as given (multilabel/words.py's spans; what lies between kept words
stays), and the texts scored as predict.py scores them (encoder.encode and encoder.score, the model's reading).
OUT_DIR/table.md: the table; OUT_DIR/METHOD.jsonl: explain.py's output. --smoke: tests/test_bench.py's tiny run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import corpus, encoder, lengths  # noqa: E402

LEVELS = (0.01, 0.05, 0.10, 0.20, 0.50)


def run_script(script: str, args: list[str], log: Path) -> tuple[float, float]:
    """A script in its own process of 1 thread: (seconds, peak RSS MiB)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(ROOT / script), *args], stdout=f, stderr=subprocess.STDOUT,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{script} failed: {log.read_text()[-2000:]}")
    return time.monotonic() - t, usage.ru_maxrss / 1024


def ranked(numbers: list[float], how: str, rng: random.Random) -> list[int]:
    """Word indexes, the most important first: by the method's numbers, or at random."""
    order = list(range(len(numbers)))
    if how == "random":
        rng.shuffle(order)
        return order
    return sorted(order, key=lambda i: -numbers[i])


def without(text: str, spans: list[tuple[int, int]], drop: set[int]) -> str:
    """The text with the words `drop` cut out (what lies between words stays)."""
    out, at = [], 0
    for i, (s, e) in enumerate(spans):
        if i in drop:
            out.append(text[at:s])
            at = e
    return "".join(out) + text[at:]


def only(text: str, spans: list[tuple[int, int]], keep: set[int]) -> str:
    return " ".join(text[s:e] for i, (s, e) in enumerate(spans) if i in keep)


def perturbations(text: str, e: dict, how: str, rng: random.Random) -> list[str]:
    """For each level, the text without its top words, then the top words alone."""
    spans = [(s, t) for _, s, t, _ in e["words"]]
    order = ranked([v for *_, v in e["words"]], how, rng)
    out = []
    for level in LEVELS:
        top = set(order[:max(1, math.ceil(level * len(order)))])
        out += [without(text, spans, top), only(text, spans, top)]
    return out


def aopc(model_dir: Path, texts: dict[str, str], explained: dict[str, list[dict]], seed: int = 0) -> dict:
    """Per method (and random): mean comprehensiveness and sufficiency AOPC over the explanations."""
    import torch

    model, tokenizer, settings = encoder.load(model_dir, torch.device("cpu"))
    reading = lengths.Reading.of(settings)
    labels = settings["labels"]

    def scores(batch: list[str]) -> np.ndarray:
        encoded = encoder.encode(tokenizer, batch, reading)
        return encoder.score(model, encoded, 64, encoder.pad_id(tokenizer), pooling=reading.pooled_by)

    results = {}
    methods = [*explained, "random"]
    for how in methods:
        source = explained[how if how != "random" else next(iter(explained))]
        rng = random.Random(seed)
        batch, meta = [], []
        for e in source:
            if e["label"] is None or not e["words"]:
                continue
            batch += perturbations(texts[e["id"]], e, how, rng)
            meta.append((e["score"], labels.index(e["label"])))
        got = scores(batch).reshape(len(meta), len(LEVELS), 2, len(labels))
        full = np.array([s for s, _ in meta])[:, None]
        chosen = got[np.arange(len(meta)), :, :, [j for _, j in meta]]  # explanations x levels x 2
        results[how] = {"comprehensiveness": float((full - chosen[:, :, 0]).mean()),
                        "sufficiency": float((full - chosen[:, :, 1]).mean()), "explanations": len(meta)}
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "data" / "goemotions" / "test.tsv")
    p.add_argument("--limit", type=int, default=1000, help="the input's first texts")
    p.add_argument("--methods", nargs="+", default=["occlusion", "ig"], choices=["occlusion", "ig"])
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_bench.py)")
    args = p.parse_args(argv)
    if args.smoke:
        args.limit, args.ig_steps = min(args.limit, 12), 4
    args.out.mkdir(parents=True, exist_ok=True)
    texts_list, ids = corpus.read_texts(args.input)
    sample = args.out / "sample.txt"  # one text a line: the first --limit texts, ids are the line numbers
    lines = [t.replace("\r", " ").replace("\n", " ") for t in texts_list[:args.limit]]
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts = {str(i): t for i, t in enumerate(lines, 1)}
    cost = {}
    for name in ("predict", *args.methods):
        out = args.out / (f"{name}.jsonl")
        out.unlink(missing_ok=True)
        corpus.meta_of(out).unlink(missing_ok=True)
        script_args = [str(args.model), "--input", str(sample), "--output", str(out)]
        if name != "predict":
            script_args += ["--method", name, "--ig-steps", str(args.ig_steps)]
        cost[name] = run_script("predict.py" if name == "predict" else "explain.py", script_args,
                                args.out / f"{name}.log")
    explained = {m: [json.loads(x) for x in (args.out / f"{m}.jsonl").read_text().splitlines()] for m in args.methods}
    faith = aopc(args.model, texts, explained)
    n = len(lines)
    rows = ["| method | comprehensiveness AOPC (higher: better) | sufficiency AOPC (lower: better) | explanations | "
            "texts/s (1 thread) | explanations/s | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for how in (*args.methods, "random"):
        f = faith[how]
        seconds, rss = cost.get(how, (None, None))
        speed = f"{n / seconds:.2f} | {f['explanations'] / seconds:.2f} | {rss:.0f}" if seconds else "- | - | -"
        rows.append(f"| {how} | {f['comprehensiveness']:.4f} | {f['sufficiency']:.4f} | {f['explanations']} | "
                    f"{speed} |")
    seconds, rss = cost["predict"]
    rows.append(f"| predict.py (no explanation) | | | | {n / seconds:.2f} | | {rss:.0f} |")
    table = (f"{n} texts of {args.input.name}, each text's predicted labels explained; AOPC over "
             f"{', '.join(f'{x:.0%}' for x in LEVELS)} of the words; --ig-steps {args.ig_steps}.\n\n"
             + "\n".join(rows) + "\n")
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
