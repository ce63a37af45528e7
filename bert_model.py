"""Fine-tune a BERT-style encoder for multi-label emotion classification on GoEmotions.

    python bert_model.py TRAIN DEV TEST LABELS SAVE_FP [--cuda] [options]
    torchrun --nproc_per_node 4 bert_model.py ... --cuda        (DistributedDataParallel)

The reproduction of the GoEmotions paper's BERT baseline (Demszky et al., ACL 2020, Table 4):
BCE-with-logits over the 28 labels (or the Ekman / sentiment groupings), AdamW with linear warmup
and decay, 4 epochs, dev macro F1 after every epoch, the best epoch evaluated on test at threshold
0.3 exactly as google-research's goemotions/calculate_metrics.py does it. SAVE_FP becomes a
Hugging Face model folder (safetensors, tokenizer, goemotions.json with labels, thresholds and
metrics). A checkpoint beside it (SAVE_FP.checkpoint.pt) lets --resume continue a killed job; on
SIGTERM/SIGUSR1/SIGUSR2 the script finishes its step, writes the checkpoint and exits 99.
"""

from __future__ import annotations

import argparse
import csv
import errno
import hashlib
import json
import math
import os
import random
import resource
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from tqdm import tqdm

EXIT_ERROR = 1
EXIT_REQUEUE = 99  # stopped on a signal after writing a checkpoint; Grid Engine reschedules on 99
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

# The paper's Table 4 (BERT-base, test set, threshold 0.3): F1 per emotion, and macro F1 per taxonomy.
PAPER_F1 = {
    "admiration": 0.65, "amusement": 0.80, "anger": 0.47, "annoyance": 0.34, "approval": 0.36,
    "caring": 0.39, "confusion": 0.37, "curiosity": 0.54, "desire": 0.49, "disappointment": 0.28,
    "disapproval": 0.39, "disgust": 0.45, "embarrassment": 0.43, "excitement": 0.34, "fear": 0.60,
    "gratitude": 0.86, "grief": 0.00, "joy": 0.51, "love": 0.78, "nervousness": 0.35,
    "optimism": 0.51, "pride": 0.36, "realization": 0.21, "relief": 0.15, "remorse": 0.66,
    "sadness": 0.49, "surprise": 0.50, "neutral": 0.68,
}
PAPER_MACRO_F1 = {"original": 0.46, "ekman": 0.64, "sentiment": 0.69}
TAXONOMY_FILES = {"ekman": "ekman_mapping.json", "sentiment": "sentiment_dict.json"}
# The paper's lines (Table 4) appear only for its label sets: the 28 emotions, Ekman's 6 + neutral, sentiment's 3 +
# neutral, however they were made (--taxonomy, or prepare_data.py from names).
PAPER_LABELS = {"original": set(PAPER_F1),
                "ekman": {"anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"},
                "sentiment": {"positive", "negative", "ambiguous", "neutral"}}
GOEMOTIONS_MASKS = ("[NAME]", "[RELIGION]")  # how GoEmotions masks names and religions (--add-tokens)
DATASET_FILE = "dataset.json"  # written by prepare_data.py beside the labels file: the dataset's name and sources


class UserError(Exception):
    """Bad input or environment: reported as one line, exit 1, no traceback."""


# ----------------------------------------------------------------------------------------- data


def read_labels(path: str | Path) -> list[str]:
    """emotions.txt: one label a line (a final newline is optional)."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read labels: {e}") from None
    if lines and lines[-1] == "":
        lines.pop()
    for i, name in enumerate(lines, 1):
        if not name.strip():
            raise UserError(f"{path}:{i}: blank label name")
    if len(set(lines)) != len(lines):
        raise UserError(f"{path}: duplicate label names")
    if not lines:
        raise UserError(f"{path}: no labels")
    return lines


def read_tsv(path: str | Path, num_labels: int) -> tuple[list[str], list[list[int]], list[str]]:
    """A GoEmotions split: text, comma-separated label ids, id; no header; CSV quoting (a `"` doubled)."""
    texts, labels, ids = [], [], []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a byte-order mark is not text
            reader = csv.reader(f, delimiter="\t")
            for row in reader:
                line = reader.line_num
                if len(row) != 3:
                    raise UserError(f"{path}:{line}: expected 3 tab-separated columns, found {len(row)}")
                text, label_field, example_id = row
                if not text.strip():
                    raise UserError(f"{path}:{line}: empty text")
                try:  # an empty field: a text with no label (an all-zero target)
                    ids_here = [int(x) for x in label_field.split(",")] if label_field else []
                except ValueError:
                    raise UserError(f"{path}:{line}: label ids must be integers, got {label_field!r}") from None
                for label in ids_here:
                    if not 0 <= label < num_labels:
                        raise UserError(f"{path}:{line}: label id {label} out of range "
                                        f"(the labels file has {num_labels} labels)")
                texts.append(text)
                labels.append(ids_here)
                ids.append(example_id)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    if not texts:
        raise UserError(f"{path}: no examples")
    return texts, labels, ids


def taxonomy_mapping(labels: list[str], taxonomy: str, labels_path: str | Path) -> tuple[list[str], list[int]]:
    """New label names, and for each original label the index of its group (neutral stays its own)."""
    if taxonomy == "original":
        return labels, list(range(len(labels)))
    path = Path(labels_path).parent / TAXONOMY_FILES[taxonomy]
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read the {taxonomy} mapping: {e}") from None
    names = [*groups, "neutral"]
    group_of = {"neutral": len(groups)}
    for g, members in enumerate(groups.values()):
        group_of.update({m: g for m in members})
    missing = [name for name in labels if name not in group_of]
    if missing:
        raise UserError(f"{path}: no {taxonomy} group for label(s) {', '.join(missing)}")
    return names, [group_of[name] for name in labels]


def paper_taxonomy(labels: list[str]) -> str | None:
    """Which of the paper's label sets these are (its Table 4 applies), or None for anyone else's labels."""
    return next((k for k, names in PAPER_LABELS.items() if set(labels) == names), None)


def read_dataset_info(labels_path: str | Path) -> dict | None:
    """prepare_data.py's dataset.json beside LABELS (name, sources and their SHA-256), if there is one."""
    path = Path(labels_path).parent / DATASET_FILE
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return {"name": str(info["name"]), "sources": {s["path"]: s["sha256"] for s in info["sources"]}}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a prepare_data.py dataset.json: {e}") from None


def multi_hot(label_lists: list[list[int]], num_labels: int, mapping: list[int]) -> np.ndarray:
    y = np.zeros((len(label_lists), num_labels), dtype=np.float32)
    for i, ids in enumerate(label_lists):
        y[i, [mapping[j] for j in ids]] = 1.0
    return y


# ------------------------------------------------------------------------------------- batching


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group: int = 50) -> list[list[int]]:
    """Training order: shuffle, sort each run of `group` batches by length, cut, shuffle the batches.

    Examples of similar length share a batch (little padding), the batch order stays random.
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    batches = []
    for start in range(0, len(order), batch_size * group):
        chunk = sorted(order[start:start + batch_size * group], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Evaluation order: sorted by length, so each batch pads to almost nothing."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(input_ids: list[list[int]], idx: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad one batch to its longest sequence: (input_ids, attention_mask)."""
    width = max(len(input_ids[i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        ids[row, :len(input_ids[i])] = torch.tensor(input_ids[i])
        mask[row, :len(input_ids[i])] = 1
    return ids, mask


# -------------------------------------------------------------------------------------- metrics


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float,
                    labels: list[str]) -> dict:
    """As goemotions/calculate_metrics.py: predicted when the sigmoid score is strictly above threshold."""
    y_pred = (probs > thresholds).astype(int)
    y = y_true.astype(int)
    p, r, f, s = precision_recall_fscore_support(y, y_pred, average=None, zero_division=0)
    out = {"per_label": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                "support": int(s[i])} for i, name in enumerate(labels)}}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, y_pred, average=avg, zero_division=0)
        out[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    out["exact_match_accuracy"] = float(accuracy_score(y, y_pred))
    return out


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, default: float) -> np.ndarray:
    """Per label, the threshold in 0.01..0.99 with the best F1 on these examples (ties keep `default`)."""
    grid = np.arange(1, 100) / 100
    pred = probs[None, :, :] > grid[:, None, None]  # (thresholds, examples, labels)
    gold = y_true[None].astype(bool)
    tp = (pred & gold).sum(1)
    f1 = 2 * tp / np.maximum(pred.sum(1) + gold.sum(1), 1)  # (thresholds, labels)
    base = (probs > default) & y_true.astype(bool)
    f1_default = 2 * base.sum(0) / np.maximum((probs > default).sum(0) + y_true.sum(0), 1)
    best = grid[f1.argmax(0)]
    return np.where(f1.max(0) > f1_default + 1e-12, best, default)


def metrics_table(test: dict, tuned: dict, labels: list[str]) -> str:
    paper_set = paper_taxonomy(labels)
    width = max(15, *(len(n) + 1 for n in labels))
    rows = [f"{'label':<{width}}{'prec':>7}{'recall':>7}{'F1':>7}{'paper':>7}{'tunedF1':>9}{'support':>9}"]
    for name in labels:
        m = test["per_label"][name]
        paper = PAPER_F1.get(name) if paper_set == "original" else None
        rows.append(f"{name:<{width}}{m['precision']:7.2f}{m['recall']:7.2f}{m['f1']:7.2f}"
                    f"{'' if paper is None else f'{paper:.2f}':>7}{tuned['per_label'][name]['f1']:9.2f}"
                    f"{m['support']:9d}")
    m = test["macro"]
    paper = f"{PAPER_MACRO_F1[paper_set]:.2f}" if paper_set else ""
    rows.append(f"{'macro-average':<{width}}{m['precision']:7.2f}{m['recall']:7.2f}{m['f1']:7.2f}"
                f"{paper:>7}{tuned['macro']['f1']:9.2f}")
    return "\n".join(rows)


# ---------------------------------------------------------------------------- files, atomically


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temp file, fsync, rename: a kill mid-write leaves the previous checkpoint, and so does
    a full disk (the partial file is removed, and the error says what was needed and what is free)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError of its zip writer
        tmp.unlink(missing_ok=True)
        raise UserError(write_failed(path, "the checkpoint", tensor_bytes(state), e)) from None
    os.replace(tmp, path)


def tensor_bytes(obj) -> int:
    """The bytes of the tensors in a (nested) state: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def write_failed(path: Path, what: str, needed: int, e: Exception) -> str:
    """One line for a failed write: a full disk says what was needed and what is free."""
    free = shutil.disk_usage(path.parent).free
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if getattr(e, "errno", None) == errno.ENOSPC or free < needed + 2**20:
        return (f"{path.parent}: no room for {what}: it needs about {mib(needed)} and {mib(free)} is free "
                f"({detail}); the previous checkpoint and model are kept: free some space and rerun with --resume")
    return f"{path}: cannot write {what} ({detail}); the previous checkpoint and model are kept"


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle error, wrong file: never a silent fresh start
        raise UserError(f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); move it away to start afresh") from None
    if not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT, "goemotions-checkpoint-1"):
        raise UserError(f"{path}: not a bert_model.py checkpoint")
    return state


def save_model(model, tokenizer, save_fp: Path, info: dict, card: str) -> None:
    """A Hugging Face folder with a model card, written beside SAVE_FP and renamed into place; the old one
    goes last."""
    tmp = save_fp.with_name(f".{save_fp.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "goemotions.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        (tmp / "README.md").write_text(card, encoding="utf-8")
    except (OSError, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(write_failed(save_fp, "the model", tensor_bytes(model.state_dict()), e)) from None
    old = save_fp.with_name(f".{save_fp.name}.old-{os.getpid()}")
    if save_fp.exists():
        os.replace(save_fp, old)
    os.replace(tmp, save_fp)
    shutil.rmtree(old, ignore_errors=True)


def model_card(metrics: dict, save_fp: Path) -> str:
    """README.md of the saved folder, the Hugging Face convention: a metadata block, then what a user of
    the model needs: labels and thresholds, results beside the paper's, how it was trained, on what data,
    on what hardware, and what it is (not) for. Named after the run: make run saves into runs/NAME/model."""
    name = save_fp.parent.name if save_fp.name == "model" and save_fp.parent.name else save_fp.name
    path = shlex.quote(str(save_fp))  # the card's commands, as they run from where bert_model.py was
    a, labels, test, tuned = metrics["args"], metrics["labels"], metrics["test"], metrics["test_tuned"]
    base, dataset = a["transformer_model"], metrics.get("dataset")  # dataset: prepare_data.py's, else GoEmotions
    data_name = dataset["name"] if dataset else "GoEmotions"
    meta = {"language": "en", "pipeline_tag": "text-classification",
            **({} if dataset else {"datasets": ["go_emotions"]}),
            "tags": ["text-classification", "multi-label-classification",
                     *([] if dataset else ["emotion", "goemotions"])],
            "metrics": ["f1"], **({} if Path(base).exists() else {"base_model": base})}
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in meta.items()),
             "model-index:", f"- name: {json.dumps(name)}", "  results:",
             "  - task: {type: text-classification, name: Multi-label "
             + ("classification}" if dataset else "emotion classification}"),
             (f"    dataset: {{type: {json.dumps(data_name)}, name: {json.dumps(data_name)}, split: test}}" if dataset
              else "    dataset: {type: go_emotions, name: GoEmotions, split: test}"), "    metrics:",
             f"    - {{type: f1, name: test macro F1 at {a['threshold']}, value: {test['macro']['f1']:.4f}}}",
             f"    - {{type: f1, name: test macro F1 with dev-tuned thresholds, value: {tuned['macro']['f1']:.4f}}}",
             "---", "",
             f"# {name}: multi-label {'' if dataset else 'emotion '}classification on {data_name}", "",
             f"`{base}` fine-tuned by `bert_model.py` on "
             + (f"{data_name} (prepared by `prepare_data.py`), {len(labels)} labels" if dataset else
                f"GoEmotions (Demszky et al., ACL 2020), {metrics['taxonomy']} taxonomy ({len(labels)} labels)")
             + ", with the command below. A label is predicted "
             "when its sigmoid score is above its threshold.", "",
             "```bash", f"python predict.py {path} \"I love this!\"            # threshold {a['threshold']}",
             f"python predict.py {path} --threshold tuned \"I love this!\"  # per-label thresholds tuned on dev",
             "```", "", "## Results (test set, best epoch by dev macro F1)", "",
             "| | macro F1 | micro F1 | macro precision | macro recall |", "|---|---|---|---|---|"]
    for key, what in (("test", f"test, threshold {a['threshold']}"), ("test_tuned", "test, dev-tuned thresholds"),
                      ("dev", f"dev, threshold {a['threshold']}"), ("dev_tuned", "dev, dev-tuned thresholds")):
        m = metrics[key]
        lines.append(f"| {what} | {m['macro']['f1']:.4f} | {m['micro']['f1']:.4f} | {m['macro']['precision']:.4f} "
                     f"| {m['macro']['recall']:.4f} |")
    if metrics["paper_macro_f1"]:  # the paper's label sets only
        lines.append(f"| the paper's BERT-base (Table 4), threshold 0.3 | {metrics['paper_macro_f1']:.2f} | | | |")
    paper_f1 = metrics["paper_f1"]
    lines += ["", f"| label | dev-tuned threshold | precision | recall | F1 |{' paper F1 |' if paper_f1 else ''} "
              "F1, tuned | support |", "|---|---|---|---|---|" + ("---|" if paper_f1 else "") + "---|---|"]
    for n in labels:
        m = test["per_label"][n]
        paper = "" if not paper_f1 else f" {paper_f1[n]:.2f} |" if n in paper_f1 else " |"
        lines.append(f"| {n} | {metrics['thresholds'][n]:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     f"{m['f1']:.3f} |{paper} {tuned['per_label'][n]['f1']:.3f} | {m['support']} |")
    lines += ["", "## Training", "", "```bash", metrics["command"], "```", "",
              "| epoch | train loss | dev macro F1 | seconds |", "|---|---|---|---|",
              *(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['dev_macro_f1']:.4f} | {h['epoch_time_s']:.0f} |"
                for h in metrics["history"]), "",
              f"Best epoch {metrics['best_epoch']}; {metrics['world_size']} process(es) x batch {a['batch_size']}, "
              f"{metrics['precision']}; {metrics['hardware']}; total {metrics['total_time_s']:.0f} s; "
              f"peak RSS {metrics['peak_rss_mb']:.0f} MiB"
              + (f", peak GPU memory {metrics['peak_gpu_mb']:.0f} MiB." if metrics["peak_gpu_mb"] else "."), "",
              *([f"Training {describe_loss(metrics['loss'])}"
                 + (f"; added tokens: {' '.join(a['add_tokens'])}" if a.get("add_tokens") else "") + ".", ""]
                if "loss" in metrics else []),
              "Data (SHA-256 of the files it was trained, tuned and tested on):", "",
              *(f"- `{path}` {digest}" for path, digest in metrics["data_sha256"].items()), "",
              *(["Prepared by `prepare_data.py` from (SHA-256):", "",
                 *(f"- `{path}` {digest}" for path, digest in dataset["sources"].items()), ""] if dataset else []),
              "## Intended use and limitations", "",
              (f"Trained on {data_name}: what it learned, and its biases, are that data's; see its dataset.json and "
               "its source. Scores are not calibrated probabilities, and the model must not be used to make "
               "decisions about individuals." if dataset else
              "For research on emotion recognition in English text. GoEmotions is 58k Reddit comments (2005-2019) "
              "labelled by raters who were all native English speakers from India; Reddit's users skew young and "
              "male, the comments were filtered with lists of offensive and vulgar words, and the paper notes that "
              "these choices bias what the labels mean and how well rare emotions (grief, relief, pride, nervousness) "
              "are recognised. Scores are not calibrated probabilities of what a writer feels, and the model must "
              "not be used to make decisions about individuals. See the paper's data disclaimer and "
              "https://github.com/google-research/google-research/tree/master/goemotions."), ""]
    return "\n".join(lines)


def write_predictions(path: Path, ids: list[str], y_true: np.ndarray, probs: np.ndarray,
                      thresholds: np.ndarray | float, labels: list[str]) -> None:
    pred = probs > thresholds
    lines = ["\t".join(["id", "gold", "predicted", *labels])]
    for i, example_id in enumerate(ids):
        gold = ",".join(labels[j] for j in np.flatnonzero(y_true[i]))
        predicted = ",".join(labels[j] for j in np.flatnonzero(pred[i]))
        lines.append("\t".join([example_id, gold, predicted, *(f"{p:.6f}" for p in probs[i])]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def plot(path: Path, test: dict, labels: list[str], loss_curve: list[list[float]], loss: str = "bce") -> None:
    """Per-label test F1 beside the paper's, and the training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 9), gridspec_kw={"height_ratios": [3, 2]})
    x = np.arange(len(labels))
    ax1.bar(x - 0.2, [test["per_label"][n]["f1"] for n in labels], 0.4, label="this run")
    paper_set = paper_taxonomy(labels)
    if paper_set == "original":
        ax1.bar(x + 0.2, [PAPER_F1.get(n, 0) for n in labels], 0.4, label="paper (Table 4)")
    ax1.set_xticks(x, labels, rotation=60, ha="right")
    ax1.set_ylabel("test F1")
    ax1.set_title(f"Test F1 per label: macro {test['macro']['f1']:.3f}"
                  + (f" (paper {PAPER_MACRO_F1[paper_set]:.2f})" if paper_set else ""))
    ax1.legend()
    if loss_curve:
        steps, losses = zip(*loss_curve, strict=True)
        ax2.plot(steps, losses)
    ax2.set_xlabel("training step")
    ax2.set_ylabel(f"training loss ({loss})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ the model


def load_model_and_tokenizer(name: str, labels: list[str]) -> tuple:
    """The encoder with a classification head for `labels`, its tokenizer, and the names of the parameters
    that loading initialised afresh (the new head). A head of another size (a model fine-tuned on other
    labels) is replaced; one of the same size is kept (continued fine-tuning)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, progress_bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # our one line below replaces transformers' load report
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=len(labels), problem_type="multi_label_classification",
            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
            ignore_mismatched_sizes=True, output_loading_info=True,
            dtype=torch.float32)  # fp32 master weights, whatever dtype the folder was saved in; autocast does the rest
    except (OSError, ValueError) as e:
        if Path(name).is_dir():
            raise UserError(f"{name}: not a loadable model folder ({str(e).splitlines()[0]})") from None
        raise UserError(f"model {name!r} is neither a local folder nor in the Hugging Face cache "
                        f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}); run "
                        f"`python download_transformer_model.py --transformer-model {name}` first") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress_bar:
            hf_logging.enable_progress_bar()
    fresh = set(info["missing_keys"]) | {key for key, *_ in info["mismatched_keys"]}
    new = [n for n, _ in model.named_parameters() if n in fresh]
    return model, tokenizer, new, info["mismatched_keys"]


def describe_loading(name: str, new: list[str], mismatched: set) -> str:
    """One line for the log, instead of transformers' table of MISSING keys."""
    if mismatched:
        shapes = ", ".join(f"{k} {tuple(old)} -> {tuple(now)}" for k, old, now in sorted(mismatched))
        return f"model {name}: replaced its classification head of another size ({shapes}); new: {', '.join(new)}"
    if new:
        return f"model {name}: new classification head, randomly initialised: {', '.join(new)}"
    return f"model {name}: its classification head has the right size and is kept (continued fine-tuning)"


def add_tokens(model, tokenizer, tokens: list[str]) -> str:
    """Make each of `tokens` one token of its own, matched in the text as written (before lower-casing), with a new
    embedding row (transformers starts it at the mean of the others). Saved with the tokenizer, so predict.py
    and transformers.pipeline split text the same way. Returns a line for the log."""
    from transformers import AddedToken

    before = {t: tokenizer.tokenize(t) for t in tokens}
    added = tokenizer.add_tokens([AddedToken(t, normalized=False) for t in tokens])
    if added:
        model.resize_token_embeddings(len(tokenizer))
    was = "; ".join(f"{t} was {' '.join(pieces)}" for t, pieces in before.items())
    return f"--add-tokens: {added} new token(s), vocabulary now {len(tokenizer)} ({was})"


@torch.no_grad()
def predict(model, input_ids: list[list[int]], batches: list[list[int]], pad_id: int,
            device: torch.device, amp_dtype: torch.dtype | None) -> tuple[list[int], torch.Tensor]:
    """Sigmoid scores for the examples in `batches`: (their indices, scores in that order)."""
    model.eval()
    order, scores = [], []
    for idx in batches:
        ids, mask = collate(input_ids, idx, pad_id)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(input_ids=ids.to(device, non_blocking=True),
                           attention_mask=mask.to(device, non_blocking=True)).logits
        order += idx
        scores.append(torch.sigmoid(logits.float()))
    model.train()
    return order, torch.cat(scores).cpu() if scores else torch.zeros(0)


def evaluate(model, input_ids, lengths, batch_size, pad_id, device, amp_dtype, rank, world) -> np.ndarray:
    """Scores for a whole split; under DDP each rank scores its share and rank 0 reassembles them."""
    batches = sorted_batches(lengths, batch_size)
    order, scores = predict(model.module if world > 1 else model, input_ids, batches[rank::world],
                            pad_id, device, amp_dtype)
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, (order, scores))
        order = [i for o, _ in parts for i in o]
        scores = torch.cat([s for _, s in parts if len(s)])
    out = np.zeros((len(lengths), scores.shape[1]), dtype=np.float32)
    out[order] = scores.numpy()
    return out


# ------------------------------------------------------------------------------------ arguments


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("train", help="train.tsv")
    p.add_argument("dev", help="dev.tsv (model selection and threshold tuning)")
    p.add_argument("test", help="test.tsv (reported, never tuned on)")
    p.add_argument("labels", help="emotions.txt; ekman_mapping.json / sentiment_dict.json are read beside it")
    p.add_argument("save_fp", help="output model folder (Hugging Face format)")
    p.add_argument("--cuda", action="store_true", help="train on the GPU (an error if there is none)")
    p.add_argument("--transformer-model", default="bert-base-uncased", help="hub name or local model folder")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="peak AdamW learning rate (the paper's)")
    p.add_argument("--head-learning-rate", type=float,
                   help="for the new classifier (and pooler); None: --learning-rate")
    p.add_argument("--init-bias-from-prior", action="store_true",
                   help="start the classifier's biases at log(p/(1-p)) of each label's training frequency")
    p.add_argument("--loss", choices=["bce", "weighted-bce", "focal", "asl"], default="bce",
                   help="bce: the paper's; weighted-bce: BCE with pos_weight per label (--pos-weight); focal: Lin et "
                   "al. 2017; asl: asymmetric loss, Ridnik et al. 2021 (docs/training.md#losses-against-imbalance)")
    p.add_argument("--pos-weight", choices=["inverse", "sqrt-inverse"], default="sqrt-inverse",
                   help="weighted-bce: pos_weight = negatives/positives of each label in the training split, or its "
                   "square root")
    p.add_argument("--pos-weight-cap", type=float, default=30.0, help="weighted-bce: no pos_weight above this")
    p.add_argument("--focal-gamma", type=float, default=2.0, help="focal: the focusing exponent (the paper's 2)")
    p.add_argument("--focal-alpha", type=float, default=0.25,
                   help="focal: the weight of positives, 1 - it of negatives (the paper's 0.25); negative: none")
    p.add_argument("--asl-gamma-neg", type=float, default=4.0, help="asl: negatives' focusing exponent (paper: 4)")
    p.add_argument("--asl-gamma-pos", type=float, default=0.0, help="asl: positives' focusing exponent (paper: 0)")
    p.add_argument("--asl-clip", type=float, default=0.05,
                   help="asl: probability margin m; a negative scored below it adds no loss (paper: 0.05)")
    p.add_argument("--add-tokens", nargs="*", metavar="TOKEN",
                   help="add these as tokens of their own, with new embeddings, saved with the tokenizer; with none "
                   "named: GoEmotions' masks " + " ".join(GOEMOTIONS_MASKS))
    p.add_argument("--batch-size", type=int, default=16, help="per process (per GPU under torchrun)")
    p.add_argument("--epochs", type=int, default=4, help="the paper's 4")
    p.add_argument("--max-length", type=int, default=50, help="tokens per text (the paper: 50)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="share of all steps spent warming up")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay (not on biases, LayerNorm)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping")
    p.add_argument("--seed", type=int, default=42, help="model init, dropout and data order")
    p.add_argument("--threshold", type=float, default=0.3, help="a label is predicted when its score > this")
    p.add_argument("--taxonomy", choices=["original", "ekman", "sentiment"], default="original",
                   help="28 emotions, or the paper's Ekman (6 + neutral) or sentiment (3 + neutral) groups")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 autocast where the hardware supports it, else fp16 on CUDA, fp32 on CPU")
    p.add_argument("--eval-batch-size", type=int, default=128, help="dev/test batches, sorted by length")
    p.add_argument("--log-every", type=int, default=100, help="print the average loss every N batches")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (0: off)")
    p.add_argument("--checkpoint-minutes", type=float, default=10,
                   help="checkpoint when this long has passed since the last one (besides every epoch's end)")
    p.add_argument("--resume", action="store_true", help="continue from SAVE_FP.checkpoint.pt if it exists")
    p.add_argument("--metrics-file", help="JSON: every metric, per label and averaged, dev and test")
    p.add_argument("--predictions-file", help="TSV: id, gold, predicted, one score column per label")
    p.add_argument("--plot-file", help="PNG: per-label test F1 beside the paper's, and the loss curve "
                   "(default: beside --metrics-file)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (CUDA graphs on one GPU), with static batch shapes; "
                   "off by default until measured (docs/training.md)")
    p.add_argument("--max-train-examples", type=int, help="use only the first N training examples (smoke runs)")
    args = p.parse_args(argv)
    if args.add_tokens == []:  # the flag alone
        args.add_tokens = list(GOEMOTIONS_MASKS)
    for name in ("pos_weight_cap", "focal_gamma", "asl_gamma_neg", "asl_gamma_pos"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if not 0 <= args.asl_clip < 1 or args.focal_alpha > 1:
        p.error("--asl-clip must be in [0, 1) and --focal-alpha at most 1")
    return args


# ----------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "bert_model.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        return fine_tune(args, command)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def fine_tune(args: argparse.Namespace, command: str = "") -> int:
    """The whole run, in order. Returns 0, or EXIT_REQUEUE after a stop signal and a checkpoint."""
    t_start = time.time()
    env = setup(args)
    save_fp, ckpt_path = check_output_folder(args.save_fp)
    labels, splits = read_splits(args)
    seed_everything(args.seed)
    model, tokenizer, new, mismatched = load_model_and_tokenizer(args.transformer_model, labels)
    env.log(describe_loading(args.transformer_model, new, mismatched))
    if args.add_tokens:  # e.g. GoEmotions' masks [NAME] and [RELIGION] as tokens of their own
        env.log(add_tokens(model, tokenizer, args.add_tokens))
    if env.master:  # before measuring the room: a partial file left by a process killed mid-write
        for stale in save_fp.parent.glob(f".{save_fp.name}*.tmp-*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    check_room(save_fp, ckpt_path, model, env)
    model.to(env.device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokenize_splits(splits, tokenizer, args.max_length)
    env.log(f"{len(labels)} labels ({args.taxonomy}); train {len(splits['train']['ids'])}, "
            f"dev {len(splits['dev']['ids'])}, test {len(splits['test']['ids'])} examples; model "
            f"{args.transformer_model}; device {env.device}, {env.precision}; {env.world} process(es) x batch "
            f"{args.batch_size}")

    loss_fn, loss_info = label_loss(args, splits["train"]["y"], labels, env.device)
    env.log(describe_loss(loss_info))
    state = training_state(args, env, model, new, splits["train"]["y"])
    net = (torch.nn.parallel.DistributedDataParallel(  # DDP: this line; no buffers to broadcast in an encoder
        model, device_ids=[env.device.index] if args.cuda else None, gradient_as_bucket_view=True,
        broadcast_buffers=False) if env.world > 1 else model)
    if args.resume and ckpt_path.exists():
        resume(state, ckpt_path, args, env)
        env.log(f"resumed from {ckpt_path}: epoch {state['epoch'] + 1}, step {state['step']} of "
                f"{steps_per_epoch(len(splits['train']['ids']), args, env)}")
    stopper = Stopper(env, args.checkpoint_minutes, ckpt_path, save_fp.with_name(save_fp.name + ".requeue"))

    stopped = fit(args, env, state, net, splits, labels, pad_id, loss_fn, stopper)
    if stopped:
        return stopper.requeue(stopped)

    # -- test: the best epoch's weights, at threshold 0.3 and with dev-tuned per-label thresholds
    model.load_state_dict(state["best"]["state"])
    test_probs = evaluate(net, splits["test"]["input_ids"], splits["test"]["lengths"],
                          args.eval_batch_size, pad_id, env.device, env.amp_dtype, env.rank, env.world)
    if env.world > 1:
        dist.destroy_process_group()
    if not env.master:
        return 0
    metrics = final_metrics(args, env, labels, splits, state, test_probs)
    metrics["loss"] = loss_info
    metrics.update(command=command, hardware=hardware(env), total_time_s=time.time() - t_start,
                   data_sha256=data_checksums(args))
    print(metrics_table(metrics["test"], metrics["test_tuned"], labels))
    t_save = time.time()
    write_outputs(args, metrics, splits["test"], test_probs, model, tokenizer, save_fp)
    ckpt_path.unlink(missing_ok=True)
    env.log(f"time to save: {time.time() - t_save:.1f} s -> {save_fp}")
    env.log(f"peak RSS {metrics['peak_rss_mb']:.0f} MiB"
            + (f", peak GPU memory {metrics['peak_gpu_mb']:.0f} MiB" if metrics["peak_gpu_mb"] else ""))
    env.log(f"total time {time.time() - t_start:.1f} s; best epoch {state['best']['epoch']} "
            f"(dev macro F1 {state['best']['f1']:.4f})")
    env.log(f"Test macro F1 {metrics['test']['macro']['f1']:.4f} at threshold {args.threshold} "
            f"(dev-tuned thresholds: {metrics['test_tuned']['macro']['f1']:.4f}"
            + (f"; paper {metrics['paper_macro_f1']:.2f})" if metrics["paper_macro_f1"] else ")"))
    return 0


# -------------------------------------------------------------------------------------- setting up


@dataclass
class Env:
    """Where this process runs: its rank among `world` (torchrun), device, precision, and its logger."""

    rank: int
    world: int
    device: torch.device
    precision: str
    amp_dtype: torch.dtype | None
    log: Callable[..., None]

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup(args: argparse.Namespace) -> Env:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK (a plain run is rank 0 of 1); pick device and precision."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if args.cuda and not torch.cuda.is_available():
        raise UserError("--cuda given but PyTorch sees no CUDA device (torch.cuda.is_available() is False)")
    device = torch.device(f"cuda:{local_rank}" if args.cuda else "cpu")
    if world > 1:
        if args.cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if args.cuda else "gloo")
    log = print if rank == 0 else (lambda *a, **k: None)
    omp = os.environ.get("OMP_NUM_THREADS")
    log(f"bert_model.py: {torch.get_num_threads()} CPU thread(s) per process "
        f"({f'OMP_NUM_THREADS={omp}' if omp else 'torch default, OMP_NUM_THREADS unset'}), {world} process(es)")

    precision = resolve_precision(args.precision, args.cuda)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them
    return Env(rank, world, device, precision, amp_dtype, log)


def resolve_precision(requested: str, cuda: bool) -> str:
    """auto: bf16 autocast where the hardware has it natively; else fp16 with a loss scaler on a GPU, fp32 on a CPU."""
    if requested != "auto":
        return requested
    if cuda:
        return "bf16" if native_cuda_bf16() else "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def native_cuda_bf16() -> bool:
    """torch.cuda.is_bf16_supported() counts emulation by default: True on a V100 or T4, which have no bf16
    tensor cores. Ask for native support (compute capability 8.0 or newer)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch from before the argument (2.2 and older)
        return torch.cuda.get_device_capability()[0] >= 8


def check_output_folder(save_fp_arg: str) -> tuple[Path, Path]:
    """SAVE_FP will be replaced at the end: refuse anything but an empty or a model folder. The checkpoint."""
    save_fp = Path(save_fp_arg)
    replaceable = save_fp.is_dir() and (not any(save_fp.iterdir()) or (save_fp / "config.json").exists())
    if save_fp.exists() and not replaceable:
        raise UserError(f"{save_fp}: exists and is not a model folder (it would be replaced); choose another SAVE_FP")
    save_fp.parent.mkdir(parents=True, exist_ok=True)
    return save_fp, save_fp.with_name(save_fp.name + ".checkpoint.pt")


def check_room(save_fp: Path, ckpt_path: Path, model, env: Env) -> None:
    """Before training: is there room beside SAVE_FP for a checkpoint (fp32 weights, AdamW's two moments and the
    best weights: 16 bytes a parameter) and the saved model (4 bytes a parameter)? Refuse where there plainly is
    not, rather than train for an hour and lose it; warn where a second checkpoint (written beside the first
    before it replaces it) would not fit."""
    n = sum(p.numel() for p in model.parameters())
    checkpoint, saved = 16 * n, 4 * n
    free = shutil.disk_usage(save_fp.parent).free
    if free < checkpoint + saved:
        raise UserError(f"{save_fp.parent}: {mib(free)} free, but a checkpoint needs about {mib(checkpoint)} and the "
                        f"model {mib(saved)} ({n:,} parameters): free some space or choose another SAVE_FP")
    if not ckpt_path.exists() and free < 2 * checkpoint + saved:
        env.log(f"warning: {save_fp.parent}: {mib(free)} free; a checkpoint is written beside the previous one "
                f"before replacing it, so {mib(2 * checkpoint + saved)} would be safe: the second checkpoint may fail")


def read_splits(args: argparse.Namespace) -> tuple[list[str], dict[str, dict]]:
    """Read and check the three splits, mapped to the taxonomy: {split: {texts, ids, y}}."""
    original_labels = read_labels(args.labels)
    read_dataset_info(args.labels)  # a bad dataset.json fails now, not after training
    labels, mapping = taxonomy_mapping(original_labels, args.taxonomy, args.labels)
    splits = {}
    for split in ("train", "dev", "test"):
        texts, label_ids, ids = read_tsv(getattr(args, split), len(original_labels))
        if split == "train" and args.max_train_examples:
            n = args.max_train_examples
            texts, label_ids, ids = texts[:n], label_ids[:n], ids[:n]
        splits[split] = {"texts": texts, "ids": ids, "y": multi_hot(label_ids, len(labels), mapping)}
    return labels, splits


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tokenize_splits(splits: dict[str, dict], tokenizer, max_length: int) -> None:
    """Tokenize once, up front; batches are padded later to their own longest text."""
    for s in splits.values():
        s["input_ids"] = tokenizer(s["texts"], truncation=True, max_length=max_length)["input_ids"]
        s["lengths"] = [len(x) for x in s["input_ids"]]


def steps_per_epoch(n_train: int, args: argparse.Namespace, env: Env) -> int:
    """One step is a global batch: --batch-size on each of the `world` processes."""
    return math.ceil(n_train / (args.batch_size * env.world))


def training_state(args: argparse.Namespace, env: Env, model, new: list[str], train_y: np.ndarray) -> dict:
    """Everything a checkpoint holds: the model, AdamW, its schedule, the loss scaler, and where we are."""
    from transformers import get_linear_schedule_with_warmup

    # AdamW, no decay on biases and LayerNorm. The head may learn faster than the pretrained encoder
    # (--head-learning-rate): what loading initialised afresh, and BERT's pooler that feeds the classifier
    # (pretrained for next-sentence prediction, if at all, not for this task).
    head_lr = args.head_learning_rate or args.learning_rate
    groups: dict[tuple[bool, bool], list] = {}
    for n, p in model.named_parameters():
        is_head = n in new or n.startswith("pooler.") or ".pooler." in n
        groups.setdefault((p.ndim >= 2, is_head), []).append(p)
    optimizer = torch.optim.AdamW([{"params": ps, "weight_decay": args.weight_decay if decay else 0.0,
                                    "lr": head_lr if head else args.learning_rate}
                                   for (decay, head), ps in groups.items()],
                                  lr=args.learning_rate, fused=True)  # one kernel, on CPUs as on GPUs
    if args.init_bias_from_prior:  # start the head at the label frequencies, not at p = 0.5 for everything
        params = dict(model.named_parameters())
        out_bias = [n for n in new if n.endswith("bias") and params[n].shape == (train_y.shape[1],)]
        if out_bias:  # the last new bias with one entry per label: the output layer's
            prior = torch.from_numpy(train_y).mean(0).clamp(1e-4, 1 - 1e-4)
            with torch.no_grad():
                params[out_bias[-1]].copy_(torch.log(prior / (1 - prior)))
        else:
            env.log("--init-bias-from-prior: the head was kept (not new), so its biases are left as trained")
    total_steps = steps_per_epoch(len(train_y), args, env) * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler,
            "scaler": torch.amp.GradScaler(env.device.type, enabled=env.precision == "fp16"),
            "epoch": 0, "step": 0, "order": [],  # the next step to take; `order`: this epoch's batches
            "history": [], "loss_curve": [],
            "best": {"f1": -1.0, "epoch": None, "state": None, "dev_probs": None}}


# These must match between a checkpoint and the run that resumes it. Not the precision: a job requeued onto
# another GPU type may resolve `auto` to another one, and the fp32 weights and AdamW state carry over (resume).
RESUME_KEYS = ("transformer_model", "learning_rate", "head_learning_rate", "init_bias_from_prior", "batch_size",
               "epochs", "max_length", "warmup_ratio", "weight_decay", "seed", "taxonomy",
               "max_train_examples", "train", "loss", "pos_weight", "pos_weight_cap", "focal_gamma", "focal_alpha",
               "asl_gamma_neg", "asl_gamma_pos", "asl_clip", "add_tokens")
CHECKPOINT_FORMAT = "goemotions-checkpoint-2"  # 2: the resolved precision; the best weights once, not twice
# (format 1, without those, still resumes)
STATEFUL = ("model", "optimizer", "scheduler", "scaler")  # saved as their state_dict()
SAVED = ("epoch", "step", "order", "history", "loss_curve", "best")


def save_state(path: Path, state: dict, args: argparse.Namespace, env: Env) -> None:
    """A checkpoint is the state dict, plus every rank's random number generators."""
    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(env.device) if args.cuda else None}
    rngs = [rng]
    if env.world > 1:
        rngs = [None] * env.world
        dist.all_gather_object(rngs, rng)
    error = None
    if env.master:
        saved = {k: state[k] for k in SAVED}
        if state["step"] == 0 and state["best"]["epoch"] == state["epoch"]:  # the epoch just ended was the best:
            saved["best"] = {**state["best"], "state": None}  # its weights are the model's, not stored twice
        try:
            save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "args": vars(args), "world": env.world, "rng": rngs,
                                   "precision": env.precision, **{k: state[k].state_dict() for k in STATEFUL},
                                   **saved})
        except UserError as e:
            error = e
    if env.world > 1:  # all ranks stop if rank 0 could not write it (else they would wait for it forever)
        failed = torch.tensor(float(error is not None), device=env.device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failed.item() and error is None:
            error = UserError(f"{path}: rank 0 could not write the checkpoint (its error is above)")
    if error is not None:
        raise error


def resume(state: dict, path: Path, args: argparse.Namespace, env: Env) -> None:
    """Load a checkpoint into the state, refusing one written with other settings."""
    ck = load_checkpoint(path)
    defaults = vars(parse_args(["TRAIN", "DEV", "TEST", "LABELS", "SAVE_FP"]))  # for a checkpoint from before an option

    def shown(v):
        return "(none)" if v is None else " ".join(v) if isinstance(v, list) else v

    for key in RESUME_KEYS:
        written = ck["args"].get(key, defaults[key])
        if written != getattr(args, key):
            raise UserError(f"{path}: written with --{key.replace('_', '-')} {shown(written)}, "
                            f"this run has {shown(getattr(args, key))}; use the same settings or move it away")
    if ck["world"] != env.world:
        raise UserError(f"{path}: written by {ck['world']} process(es), this run has {env.world}")
    was = ck.get("precision") or ("fp16" if ck["scaler"] else None)  # format 1: only the scaler tells fp16
    for k in STATEFUL:
        if k != "scaler" or (env.precision == was == "fp16"):
            state[k].load_state_dict(ck[k])
    if was is not None and was != env.precision:
        env.log(f"{path}: written in {was}, this run is {env.precision} (another GPU type?): the fp32 weights and "
                f"AdamW state carry on{'; the fp16 loss scaler starts afresh' if env.precision == 'fp16' else ''}")
    state.update({k: ck[k] for k in SAVED})
    if state["best"]["epoch"] is not None and state["best"]["state"] is None:  # the best epoch was the last one
        state["best"]["state"] = {k: v.detach().to("cpu", copy=True) for k, v in state["model"].state_dict().items()}
    torch.set_rng_state(ck["rng"][env.rank]["torch"])
    if args.cuda and ck["rng"][env.rank]["cuda"] is not None:
        torch.cuda.set_rng_state(ck["rng"][env.rank]["cuda"], env.device)


class Stopper:
    """Grid Engine's warnings (-notify, s_rt: SIGUSR1/SIGUSR2) and SIGTERM mean: finish the step, write a
    checkpoint, exit 99 (Grid Engine requeues). Also says when a timed checkpoint is due."""

    def __init__(self, env: Env, minutes: float, ckpt_path: Path, marker: Path):
        self.env, self.minutes, self.ckpt_path, self.marker = env, minutes, ckpt_path, marker
        self.last_checkpoint = time.time()
        self.signal: str | None = None
        for s in STOP_SIGNALS:
            signal.signal(s, self.on_signal)
        if env.master:
            marker.unlink(missing_ok=True)

    def on_signal(self, signum: int, frame) -> None:
        self.signal = signal.Signals(signum).name

    def check(self) -> tuple[bool, bool]:
        """(has a stop signal arrived, is a timed checkpoint due), agreed by all ranks."""
        flags = [self.signal is not None, time.time() - self.last_checkpoint > 60 * self.minutes]
        if self.env.world > 1:
            t = torch.tensor(flags, dtype=torch.float32, device=self.env.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flags = [bool(x) for x in t.tolist()]
        return flags[0], flags[1]

    def requeue(self, where: str) -> int:
        """After the checkpoint: say so, leave a marker (torchrun hides our exit code), exit 99."""
        if self.env.master:
            self.marker.write_text(f"{self.signal} {where}\n", encoding="utf-8")
        self.env.log(f"{self.signal or 'stop signal'}: checkpoint written to {self.ckpt_path} {where}; "
                     f"rerun with --resume (exit {EXIT_REQUEUE}; marker {self.marker})")
        if self.env.world > 1:
            dist.destroy_process_group()
        return EXIT_REQUEUE


# ---------------------------------------------------------------------------------------- losses
# Each takes logits and 0/1 targets (rows x labels) and returns the loss of every entry; the training step
# averages them over labels and rows. bce is the paper's; the others are what users try against imbalance.


def pos_weights(train_y: np.ndarray, rule: str, cap: float) -> torch.Tensor:
    """weighted-bce's pos_weight per label from the training split: negatives / positives (inverse, as in
    torch's BCEWithLogitsLoss docs) or its square root (sqrt-inverse), capped; a label with no positive gets
    the cap."""
    positives = train_y.sum(0).astype(np.float64)
    ratio = np.divide(len(train_y) - positives, positives, out=np.full_like(positives, np.inf),
                      where=positives > 0)
    weights = np.sqrt(ratio) if rule == "sqrt-inverse" else ratio
    return torch.tensor(np.minimum(weights, cap), dtype=torch.float32)


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float, alpha: float) -> torch.Tensor:
    """Lin et al. 2017, per label: alpha_t (1 - p_t)^gamma BCE, p_t the probability of the true class;
    alpha < 0: no alpha_t. gamma 0 and no alpha is BCE."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p_true = torch.exp(-bce)
    loss = (1 - p_true) ** gamma * bce
    return loss if alpha < 0 else (alpha * y + (1 - alpha) * (1 - y)) * loss


def asymmetric_loss(logits: torch.Tensor, y: torch.Tensor, gamma_neg: float, gamma_pos: float,
                    clip: float) -> torch.Tensor:
    """Ridnik et al., ICCV 2021 (ASL): positives -(1 - p)^gamma_pos log p; negatives -p_m^gamma_neg log(1 - p_m)
    with the shifted probability p_m = max(p - clip, 0), so very easy negatives weigh nothing. Both gammas 0 and
    clip 0 is BCE."""
    p = torch.sigmoid(logits)
    positive = (1 - p) ** gamma_pos * -torch.nn.functional.logsigmoid(logits)
    if clip > 0:
        p_m = (p - clip).clamp(min=0)
        negative = p_m ** gamma_neg * -torch.log((1 - p_m).clamp(min=1e-8))
    else:
        negative = p ** gamma_neg * -torch.nn.functional.logsigmoid(-logits)
    return y * positive + (1 - y) * negative


def label_loss(args: argparse.Namespace, train_y: np.ndarray, labels: list[str],
               device: torch.device) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dict]:
    """The --loss chosen, as a function of (logits, targets), and what it is for the log and metrics.json."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    if args.loss == "bce":
        return (lambda logits, y: bce(logits, y, reduction="none")), {"name": "bce"}
    if args.loss == "weighted-bce":
        w = pos_weights(train_y, args.pos_weight, args.pos_weight_cap)
        info = {"name": "weighted-bce", "rule": args.pos_weight, "cap": args.pos_weight_cap,
                "pos_weight": dict(zip(labels, map(float, w), strict=True))}
        w = w.to(device)
        return (lambda logits, y: bce(logits, y, reduction="none", pos_weight=w)), info
    if args.loss == "focal":
        info = {"name": "focal", "gamma": args.focal_gamma, "alpha": args.focal_alpha}
        return (lambda logits, y: focal_loss(logits, y, args.focal_gamma, args.focal_alpha)), info
    info = {"name": "asl", "gamma_neg": args.asl_gamma_neg, "gamma_pos": args.asl_gamma_pos, "clip": args.asl_clip}
    return (lambda logits, y: asymmetric_loss(logits, y, args.asl_gamma_neg, args.asl_gamma_pos, args.asl_clip)), info


def describe_loss(info: dict) -> str:
    """One line for the log."""
    if info["name"] == "weighted-bce":
        w = info["pos_weight"]
        low, high = min(w, key=w.get), max(w, key=w.get)
        return (f"loss: weighted-bce, pos_weight {info['rule']} capped at {info['cap']:g}: {w[low]:.2f} ({low}) "
                f"to {w[high]:.2f} ({high})")
    params = ", ".join(f"{k} {v:g}" for k, v in info.items() if k != "name")
    return f"loss: {info['name']}" + (f" ({params})" if params else " (binary cross-entropy)")


# ------------------------------------------------------------------------------------ the loop


def fit(args: argparse.Namespace, env: Env, state: dict, net: torch.nn.Module, splits: dict[str, dict],
        labels: list[str], pad_id: int, loss_fn: Callable, stopper: Stopper) -> str | None:
    """Train epoch by epoch from where `state` is; dev macro F1 after each epoch keeps the best weights.

    Returns None when done, or where it stopped on a signal (after writing the checkpoint).
    """
    model, optimizer, scheduler, scaler = (state[k] for k in STATEFUL)
    rank, world, device = env.rank, env.world, env.device
    train = on_device(splits["train"], pad_id, device)  # once: each batch is gathered there
    global_batch = args.batch_size * world
    steps = steps_per_epoch(len(splits["train"]["ids"]), args, env)
    step_loss = training_loss(net, env, loss_fn, args.compile)

    def checkpoint(epoch: int, step: int) -> None:
        state["epoch"], state["step"] = epoch, step
        stopper.last_checkpoint = time.time()
        save_state(stopper.ckpt_path, state, args, env)

    model.train()
    tty = sys.stderr.isatty()
    for epoch in range(state["epoch"], args.epochs):
        t_epoch = time.time()
        # The same order on every rank; each global batch is cut into one slice per rank. Resuming
        # mid-epoch continues the interrupted epoch's order, saved in the checkpoint.
        first = state["step"]
        if not first:
            state["order"] = length_grouped_batches(splits["train"]["lengths"], global_batch, args.seed + epoch)
        batches = rank_batches(state["order"][first:], splits["train"]["lengths"], rank, args.batch_size,
                               args.compile, device)
        running = torch.zeros((), device=device)
        epoch_loss = torch.zeros((), device=device)
        n_logged = n_epoch = 0
        with tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not env.master,
                  mininterval=0.5 if tty else 60, ascii=not tty) as bar:  # a log file gets a line a minute
            for step in range(first, steps):
                rows, weights, width = batches[step - first]
                ids, mask, y = train["ids"][rows, :width], train["mask"][rows, :width], train["y"][rows]
                loss = step_loss(ids, mask, y, weights)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                running += loss.detach()
                epoch_loss += loss.detach()
                n_logged += 1
                n_epoch += 1
                bar.update()

                done = step + 1
                if done % args.log_every == 0 or done == steps:
                    if world > 1:
                        dist.all_reduce(running)
                    avg = running.item() / n_logged / world  # the one host-device sync, at logging points
                    if not math.isfinite(avg):
                        raise UserError(f"loss is {avg} at epoch {epoch + 1} step {done}; stopped, the last "
                                        f"checkpoint and saved model are kept (try a lower --learning-rate)")
                    state["loss_curve"].append([epoch * steps + done, avg])
                    if done % args.log_every == 0 and env.master:
                        tqdm.write(f"epoch {epoch + 1} batch {done}/{steps} loss {avg:.4f} "
                                   f"lr {scheduler.get_last_lr()[0]:.2e}")
                    running.zero_()
                    n_logged = 0
                # under DDP the ranks agree every 10 steps (one all_reduce), alone after every step
                stopping, timely = stopper.check() if world == 1 or done % 10 == 0 else (False, False)
                periodic = args.checkpoint_every and done % args.checkpoint_every == 0
                if done < steps and (stopping or periodic or timely):
                    if not all_ranks_finite(epoch_loss, world):  # all agree, or one raises while the rest wait
                        raise UserError(f"loss is not finite at epoch {epoch + 1} step {done}; stopped, the last "
                                        f"checkpoint and saved model are kept (try a lower --learning-rate)")
                    checkpoint(epoch, done)
                    if stopping:
                        return f"at epoch {epoch + 1} step {done}"

        # -- end of epoch: dev macro F1, keep the best weights, checkpoint
        if world > 1:
            dist.all_reduce(epoch_loss)
        train_loss = epoch_loss.item() / max(n_epoch, 1) / world
        epoch_time = time.time() - t_epoch
        dev_probs = evaluate(net, splits["dev"]["input_ids"], splits["dev"]["lengths"],
                             args.eval_batch_size, pad_id, device, env.amp_dtype, rank, world)
        dev_f1 = compute_metrics(splits["dev"]["y"], dev_probs, args.threshold, labels)["macro"]["f1"]
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "dev_macro_f1": dev_f1,
                                 "epoch_time_s": epoch_time, "steps": n_epoch})
        env.log(f"epoch {epoch + 1}: average loss {train_loss:.4f}, dev macro F1 {dev_f1:.4f}, "
                f"time {epoch_time:.1f} s ({n_epoch * global_batch / epoch_time:.1f} examples/s)")
        if dev_f1 > state["best"]["f1"]:
            state["best"] = {"f1": dev_f1, "epoch": epoch + 1, "dev_probs": torch.from_numpy(dev_probs),
                             "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
        state["order"] = []
        checkpoint(epoch + 1, 0)
        if stopper.check()[0] and epoch + 1 < args.epochs:
            return f"after epoch {epoch + 1}"
    return None


def on_device(split: dict, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The tokenized training split padded to its longest text, moved to the device once (tens of MB for
    GoEmotions): a step gathers its batch there, with no collate, pinning or host-to-device copy."""
    lengths = torch.tensor(split["lengths"])
    ids = torch.full((len(lengths), int(lengths.max())), pad_id, dtype=torch.long)
    for i, x in enumerate(split["input_ids"]):
        ids[i, :len(x)] = torch.tensor(x)
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    return {"ids": ids.to(device), "mask": mask.to(device), "y": torch.from_numpy(split["y"]).to(device)}


def rank_batches(order: list[list[int]], lengths: list[int], rank: int, batch_size: int, static: bool,
                 device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """This rank's share of each global batch: (rows, loss weights, width), the rows and weights put on the
    device once an epoch. static (--compile): every batch has batch_size rows (a short one is filled with
    copies of its first row at weight 0) and a width rounded up to a multiple of 8, so that the compiled step
    sees a handful of shapes."""
    out = []
    for batch in order:
        rows = batch[rank * batch_size:(rank + 1) * batch_size]
        weights = [1.0] * len(rows) if rows else [0.0]  # a rank with no example in the last batch: weight 0
        rows = rows or batch[:1]
        width = max(lengths[i] for i in rows)
        if static:
            weights += [0.0] * (batch_size - len(rows))
            rows += [rows[0]] * (batch_size - len(rows))
            width = -(-width // 8) * 8
        out.append((rows, weights, width))
    flat_rows = torch.tensor([i for rows, _, _ in out for i in rows], device=device)
    flat_weights = torch.tensor([w for _, ws, _ in out for w in ws], device=device)
    at = 0
    for k, (rows, _, width) in enumerate(out):
        out[k] = (flat_rows[at:at + len(rows)], flat_weights[at:at + len(rows)], width)
        at += len(rows)
    return out


def training_loss(net: torch.nn.Module, env: Env, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  compile_it: bool) -> Callable[..., torch.Tensor]:
    """The forward and loss (label_loss) of one batch: the mean over its labels and its real rows (weight 1;
    padding rows weigh 0), in fp32. --compile: torch.compile'd (CUDA graphs on one GPU; the default mode under
    DDP, where CUDA graphs are known to break, and on a CPU)."""

    def step_loss(ids, mask, y, weights):
        with torch.autocast(env.device.type, dtype=env.amp_dtype or torch.float32, enabled=env.amp_dtype is not None):
            logits = net(input_ids=ids, attention_mask=mask).logits
        per_row = loss_fn(logits.float(), y).mean(1)
        return (per_row * weights).sum() / weights.sum().clamp(min=1)

    if not compile_it:
        return step_loss
    graphs = env.device.type == "cuda" and env.world == 1
    compiled = torch.compile(step_loss, mode="reduce-overhead" if graphs else "default", dynamic=False)

    def compiled_loss(*batch):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs may now be overwritten
        return compiled(*batch)

    return compiled_loss


def all_ranks_finite(x: torch.Tensor, world: int) -> bool:
    """Is `x` finite on every rank? (All ranks get the same answer, so they stop together.)"""
    finite = torch.isfinite(x).float()
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


# ------------------------------------------------------------------------------- test and report


def hardware(env: Env) -> str:
    if env.device.type == "cuda":
        return f"{env.world} x {torch.cuda.get_device_name(env.device)}"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "CPU") if Path("/proc/cpuinfo").exists() else "CPU"
    return f"{cpu}, {env.world} process(es) x {torch.get_num_threads()} thread(s)"


def data_checksums(args: argparse.Namespace) -> dict[str, str]:
    files = [args.train, args.dev, args.test, args.labels]
    if (Path(args.labels).parent / DATASET_FILE).exists():
        files.append(str(Path(args.labels).parent / DATASET_FILE))
    if args.taxonomy != "original":
        files.append(str(Path(args.labels).parent / TAXONOMY_FILES[args.taxonomy]))
    return {f: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}


def final_metrics(args: argparse.Namespace, env: Env, labels: list[str], splits: dict[str, dict], state: dict,
                  test_probs: np.ndarray) -> dict:
    """Dev and test, at --threshold and at per-label thresholds tuned on dev; what metrics.json holds."""
    dev_probs, dev_y, test_y = state["best"]["dev_probs"].numpy(), splits["dev"]["y"], splits["test"]["y"]
    tuned = tune_thresholds(dev_y, dev_probs, args.threshold)
    results = {
        "dev": compute_metrics(dev_y, dev_probs, args.threshold, labels),
        "test": compute_metrics(test_y, test_probs, args.threshold, labels),
        "dev_tuned": compute_metrics(dev_y, dev_probs, tuned, labels),
        "test_tuned": compute_metrics(test_y, test_probs, tuned, labels),
    }
    return {
        "labels": labels, "taxonomy": args.taxonomy, "threshold": args.threshold,
        "thresholds": dict(zip(labels, map(float, tuned), strict=True)), "best_epoch": state["best"]["epoch"],
        **results, "paper_macro_f1": PAPER_MACRO_F1.get(paper_taxonomy(labels)),
        "paper_f1": PAPER_F1 if paper_taxonomy(labels) == "original" else None,
        "dataset": read_dataset_info(args.labels),
        "history": state["history"], "loss_curve": state["loss_curve"], "precision": env.precision,
        "world_size": env.world, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(env.device) / 2**20 if args.cuda else None,
        "args": vars(args),
    }


def write_outputs(args: argparse.Namespace, metrics: dict, test: dict, test_probs: np.ndarray, model, tokenizer,
                  save_fp: Path) -> None:
    """metrics.json, predictions.tsv, the plot, and last the model folder (each written atomically)."""
    labels = metrics["labels"]
    if args.metrics_file:
        atomic_write_text(Path(args.metrics_file), json.dumps(metrics, indent=1))
    if args.predictions_file:
        write_predictions(Path(args.predictions_file), test["ids"], test["y"], test_probs, args.threshold, labels)
    plot_file = args.plot_file or (str(Path(args.metrics_file).with_suffix(".png")) if args.metrics_file else None)
    if plot_file:
        plot(Path(plot_file), metrics["test"], labels, metrics["loss_curve"], args.loss)
    info = {"labels": labels, "taxonomy": args.taxonomy, "threshold": args.threshold,
            "thresholds": metrics["thresholds"], "max_length": args.max_length, "args": vars(args),
            "metrics": {k: {a: metrics[k][a] for a in ("macro", "micro", "weighted", "exact_match_accuracy")}
                        for k in ("dev", "test", "dev_tuned", "test_tuned")} | {"best_epoch": metrics["best_epoch"]}}
    save_model(model, tokenizer, save_fp, info, model_card(metrics, save_fp))


if __name__ == "__main__":
    sys.exit(main())
