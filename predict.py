"""Classify new texts with a model saved by bert_model.py.

    python predict.py MODEL "I love this!" "What on earth?"
    python predict.py MODEL --input texts.txt --format jsonl > scores.jsonl
    python predict.py MODEL --input data/test.tsv --threshold tuned

MODEL is the SAVE_FP folder bert_model.py wrote (a Hugging Face model folder with goemotions.json).
A label is predicted when its sigmoid score is strictly above the threshold: the model's own
(0.3 unless trained otherwise), a number given with --threshold, or the per-label thresholds tuned
on dev (--threshold tuned). Texts are tokenized once and scored in batches sorted by length.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch


class UserError(Exception):
    """Bad input: reported as one line, exit 1, no traceback."""


def read_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """Texts and ids from a GoEmotions TSV (text, labels, id; CSV quoting) or a file of one text a line."""
    path = Path(path)
    try:
        if path.suffix == ".tsv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                rows = list(csv.reader(f, delimiter="\t"))
            for i, row in enumerate(rows, 1):
                if len(row) != 3:
                    raise UserError(f"{path}:{i}: expected 3 tab-separated columns (text, labels, id), "
                                    f"found {len(row)}")
            texts, ids = [r[0] for r in rows], [r[2] for r in rows]
        else:
            texts = path.read_text(encoding="utf-8-sig").splitlines()
            ids = [str(i) for i in range(1, len(texts) + 1)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise UserError(f"{path}:{i}: empty text")
    return texts, ids


def load(model_dir: str | Path, device: torch.device):
    """Model, tokenizer and the goemotions.json settings (labels, thresholds, max_length)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model folder (no config.json); give the SAVE_FP of bert_model.py")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load the model: {str(e).splitlines()[0]}") from None
    info_path = model_dir / "goemotions.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    labels = info.get("labels") or [model.config.id2label[i] for i in range(model.config.num_labels)]
    info = {"threshold": 0.3, "max_length": 512, "thresholds": None, **info, "labels": labels}
    return model, tokenizer, info


@torch.no_grad()
def score(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64,
          device: torch.device | None = None, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sigmoid scores (texts x labels): tokenize once, score in batches sorted by length."""
    device = device or torch.device("cpu")
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = torch.zeros(len(texts), model.config.num_labels)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, :len(encoded[i])] = 1
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        out[idx] = torch.sigmoid(logits.float()).cpu()
    return out


def format_results(texts: list[str], ids: list[str], scores: torch.Tensor, labels: list[str],
                   thresholds: torch.Tensor, top_k: int, fmt: str) -> str:
    lines = []
    for i, text in enumerate(texts):
        predicted = [labels[j] for j in torch.nonzero(scores[i] > thresholds).flatten().tolist()]
        top = torch.argsort(scores[i], descending=True)[:top_k].tolist()
        if fmt == "jsonl":
            lines.append(json.dumps({"id": ids[i], "text": text, "predicted": predicted,
                                     "top": [[labels[j], round(float(scores[i, j]), 6)] for j in top],
                                     "scores": {labels[j]: round(float(scores[i, j]), 6) for j in range(len(labels))}}))
        else:
            short = text if len(text) <= 60 else text[:57] + "..."
            best = ", ".join(f"{labels[j]} {float(scores[i, j]):.2f}" for j in top)
            lines.append(f"{short:<60}  {','.join(predicted) or '-':<28}  {best}")
    if fmt == "table":
        lines.insert(0, f"{'text':<60}  {'predicted':<28}  top {top_k} scores")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the model folder bert_model.py saved (SAVE_FP)")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--input", help="a file: one text a line, or a .tsv in the GoEmotions layout")
    p.add_argument("--threshold", help="a number, 'model' (the saved one, default) or 'tuned' (per label, from dev)",
                   default="model")
    p.add_argument("--top-k", type=int, default=3, help="how many of the highest scores to show")
    p.add_argument("--format", choices=["table", "jsonl"], default="table")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16 autocast is faster where the hardware has it; fp32 gives the pipeline's exact scores")
    p.add_argument("--cuda", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.cuda and not torch.cuda.is_available():
            raise UserError("--cuda given but PyTorch sees no CUDA device")
        device = torch.device("cuda" if args.cuda else "cpu")
        if args.input and args.texts:
            raise UserError("give texts on the command line or --input, not both")
        if args.input:
            texts, ids = read_texts(args.input)
        else:
            texts, ids = args.texts, [str(i + 1) for i in range(len(args.texts))]
        if not texts:
            raise UserError("no texts: give some on the command line or with --input FILE")
        model, tokenizer, info = load(args.model, device)
        labels = info["labels"]
        if args.threshold == "model":
            thresholds = torch.full((len(labels),), float(info["threshold"]))
        elif args.threshold == "tuned":
            if not info["thresholds"]:
                raise UserError(f"{args.model}: no tuned thresholds in goemotions.json")
            thresholds = torch.tensor([info["thresholds"][n] for n in labels])
        else:
            try:
                thresholds = torch.full((len(labels),), float(args.threshold))
            except ValueError:
                raise UserError(f"--threshold {args.threshold!r}: expected a number, 'model' or 'tuned'") from None
        amp = torch.bfloat16 if args.precision == "bf16" else None
        scores = score(model, tokenizer, texts, int(info["max_length"]), args.batch_size, device, amp)
        print(format_results(texts, ids, scores, labels, thresholds, args.top_k, args.format))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
