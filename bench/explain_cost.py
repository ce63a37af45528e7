"""What explain.py costs as texts get longer and as more labels are explained (issue 34), against predict.py.

    python bench/explain_cost.py MODEL OUT_DIR [--input ../shared/data/goemotions/test.tsv] [--words 16 64 256 1024]
        [--labels 1 4 28] [--texts 8] [--methods occlusion ig] [--ig-steps 50]

Texts of about W words are made by joining the input's texts in order (the same texts for every cell). Each cell is
one process of 1 thread (bench/faithfulness.py's run_script: seconds and peak RSS) over --texts such texts:
- by length: each W of --words, explaining the model's first label (--labels NAME: explained whether predicted or
  not), and predict.py over the same texts;
- by labels explained: each L of --labels (the model's first L labels) at the second W of --words.
A process's start and model load are not a text's cost: a run over one one-word text is timed per method and taken
off (its seconds and RSS are in the table). Tokens and windows a text: the model's own reading (encoder.encode).
OUT_DIR/table.md: the table. --smoke: tests/test_bench.py's tiny run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from faithfulness import run_script  # noqa: E402

from multilabel import corpus, encoder, lengths, words  # noqa: E402


def joined_texts(texts: list[str], n_words: int, n: int) -> list[str]:
    """n texts of `n_words` words each (multilabel/words.py's words, as explain.py numbers them), made of the
    input's texts in order, one line each."""
    out, pool = [], iter(" ".join(t.split()) for t in texts)
    for _ in range(n):
        text = ""
        while len(spans := list(words.spans(text))) < n_words:
            text = f"{text} {next(pool)}".strip()
        out.append(text[:spans[n_words - 1][1]])
    return out


def reading_of(tokenizer, reading: lengths.Reading, texts: list[str]) -> tuple[float, float]:  # noqa: ANN001
    """Median tokens and windows a text, as the model reads them."""
    encoded = encoder.encode(tokenizer, texts, reading)
    windows = [int((encoded.owner == i).sum()) for i in range(len(texts))]
    tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return statistics.median(tokens), statistics.median(windows)


def timed(script: str, model: Path, texts: list[str], extra: list[str], out_dir: Path,
          name: str) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of `script` over `texts`, one a line."""
    sample, out = out_dir / f"{name}.txt", out_dir / f"{name}.{'tsv' if script == 'predict.py' else 'jsonl'}"
    sample.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out.unlink(missing_ok=True)
    corpus.meta_of(out).unlink(missing_ok=True)
    return run_script(script, [str(model), "--input", str(sample), "--output", str(out), *extra],
                      out_dir / f"{name}.log")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "data" / "goemotions" / "test.tsv")
    p.add_argument("--words", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--labels", type=int, nargs="+", default=[1, 4, 28], help="labels explained (the model's first L)")
    p.add_argument("--texts", type=int, default=8, help="texts a cell")
    p.add_argument("--methods", nargs="+", default=["occlusion", "ig"], choices=["occlusion", "ig"])
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_bench.py)")
    args = p.parse_args(argv)
    if args.smoke:
        args.words, args.labels, args.texts, args.ig_steps = [4, 12], [1, 2], 2, 4
    args.out.mkdir(parents=True, exist_ok=True)
    source, _ = corpus.read_texts(args.input)
    _, tokenizer, settings = encoder.load(args.model, torch.device("cpu"))
    names, reading = list(settings["labels"]), lengths.Reading.of(settings)
    if max(args.labels) > len(names):
        raise SystemExit(f"explain_cost.py: --labels {max(args.labels)}: the model has {len(names)} labels")
    cells = [(w, args.labels[0]) for w in args.words] + [(args.words[min(1, len(args.words) - 1)], k)
                                                          for k in args.labels[1:]]
    rows = ["| method | words a text | tokens (median) | windows (median) | labels explained | seconds a text | "
            "explanations/s | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method in ("predict", *args.methods):
        script = "predict.py" if method == "predict" else "explain.py"
        options = [] if method == "predict" else ["--method", method, "--ig-steps", str(args.ig_steps),
                                                  "--labels"]
        start, start_rss = timed(script, args.model, ["hello"], [*options, *names[:1]] if options else [],
                                 args.out, f"{method}-start")
        rows.append(f"| {method} | process start, model load and one one-word text | | | | {start:.2f} | | "
                    f"{start_rss:.0f} |")
        for n_words, k in cells if method != "predict" else [(w, 1) for w in args.words]:
            texts = joined_texts(source, n_words, args.texts)
            tokens, windows = reading_of(tokenizer, reading, texts)
            extra = [*options, *names[:k]] if options else []
            seconds, rss = timed(script, args.model, texts, extra, args.out, f"{method}-{n_words}w-{k}l")
            per_text = max(seconds - start, 0.0) / len(texts)
            rate = "" if method == "predict" else f"{len(texts) * k / max(seconds - start, 1e-9):.2f}"
            rows.append(f"| {method} | {n_words} | {tokens:.0f} | {windows:.0f} | {k if options else ''} | "
                        f"{per_text:.3f} | {rate} | {rss:.0f} |")
    table = (f"{args.texts} texts a cell, made of {args.input.name}'s texts joined; 1 thread; seconds a text with the "
             f"process start (its own row) taken off; --ig-steps {args.ig_steps}.\n\n" + "\n".join(rows) + "\n")
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
