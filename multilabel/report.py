"""The results of a training run: metrics as the paper's code computes them, per-label thresholds tuned on dev,
the table bert_model.py prints, its plot, and the model card (README.md) of the saved folder."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np

from multilabel import decide, files, lengths, losses
from multilabel.files import PAPER_F1, PAPER_MACRO_F1, paper_taxonomy


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float,
                    labels: list[str]) -> dict:
    """As goemotions/calculate_metrics.py: predicted when the sigmoid score is strictly above threshold (decide.py)."""
    return decide.metrics(y_true, decide.decide(probs, thresholds), labels)


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, default: float) -> np.ndarray:
    """Per label, the threshold in 0.01..0.99 with the best F1 on these examples (ties keep `default`)."""
    grid = np.arange(1, 100) / 100
    pred = probs[None, :, :] > grid[:, None, None]  # every threshold's decisions (thresholds, examples, labels)
    gold = y_true.astype(bool)
    f1 = decide.f1((pred & gold[None]).sum(1), pred.sum(1), gold.sum(0))  # (thresholds, labels)
    f1_default = decide.f1(*decide.counts(gold, decide.decide(probs, default)))
    best = grid[f1.argmax(0)]
    return np.where(f1.max(0) > f1_default + 1e-12, best, default)


def results(labels: list[str], threshold: float, dev: tuple[np.ndarray, np.ndarray],
            test: tuple[np.ndarray, np.ndarray]) -> dict:
    """Dev and test (gold, scores), at the threshold and at per-label thresholds tuned on dev."""
    tuned = tune_thresholds(*dev, threshold)
    return {"thresholds": dict(zip(labels, map(float, tuned), strict=True)),
            "dev": compute_metrics(*dev, threshold, labels), "test": compute_metrics(*test, threshold, labels),
            "dev_tuned": compute_metrics(*dev, tuned, labels), "test_tuned": compute_metrics(*test, tuned, labels)}


def metrics_table(test: dict, tuned: dict, labels: list[str]) -> str:
    """Per label: test precision, recall and F1, the paper's F1 (its label sets only), F1 with tuned thresholds."""
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
        steps, values = zip(*loss_curve, strict=True)
        ax2.plot(steps, values)
    ax2.set_xlabel("training step")
    ax2.set_ylabel(f"training loss ({loss})")
    fig.tight_layout()
    files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"), "the plot")
    plt.close(fig)


# ---------------------------------------------------------------------------------------- the model card


def model_card(metrics: dict, save_fp: Path) -> str:
    """README.md of the saved folder, the Hugging Face convention: a metadata block, then what a user of the model
    needs: labels and thresholds, results beside the paper's, how it was trained, on what data and hardware, and
    what it is (not) for. Named after the run: make run saves into runs/NAME/model."""
    name = save_fp.parent.name if save_fp.name == "model" and save_fp.parent.name else save_fp.name
    dataset = metrics.get("dataset")  # prepare_data.py's, else GoEmotions
    return "\n".join([*card_metadata(metrics, name, dataset), *card_usage(metrics, name, dataset, save_fp),
                      *card_results(metrics), *card_training(metrics, dataset), *card_limitations(dataset), ""])


def card_metadata(metrics: dict, name: str, dataset: dict | None) -> list[str]:
    a, test, tuned = metrics["args"], metrics["test"], metrics["test_tuned"]
    base, data_name = a["transformer_model"], dataset["name"] if dataset else "GoEmotions"
    meta = {"language": "en", "pipeline_tag": "text-classification",
            **({} if dataset else {"datasets": ["go_emotions"]}),
            "tags": ["text-classification", "multi-label-classification",
                     *([] if dataset else ["emotion", "goemotions"])],
            "metrics": ["f1"], **({} if Path(base).exists() else {"base_model": base})}
    return ["---", *(f"{k}: {json.dumps(v)}" for k, v in meta.items()),
            "model-index:", f"- name: {json.dumps(name)}", "  results:",
            "  - task: {type: text-classification, name: Multi-label "
            + ("classification}" if dataset else "emotion classification}"),
            (f"    dataset: {{type: {json.dumps(data_name)}, name: {json.dumps(data_name)}, split: test}}" if dataset
             else "    dataset: {type: go_emotions, name: GoEmotions, split: test}"), "    metrics:",
            f"    - {{type: f1, name: test macro F1 at {a['threshold']}, value: {test['macro']['f1']:.4f}}}",
            f"    - {{type: f1, name: test macro F1 with dev-tuned thresholds, value: {tuned['macro']['f1']:.4f}}}",
            "---", ""]


def card_usage(metrics: dict, name: str, dataset: dict | None, save_fp: Path) -> list[str]:
    a, labels = metrics["args"], metrics["labels"]
    path = shlex.quote(str(save_fp))  # the card's commands, as they run from where bert_model.py was
    data_name = dataset["name"] if dataset else "GoEmotions"
    return [f"# {name}: multi-label {'' if dataset else 'emotion '}classification on {data_name}", "",
            f"`{a['transformer_model']}` fine-tuned by `bert_model.py` on "
            + (f"{data_name} (prepared by `prepare_data.py`), {len(labels)} labels" if dataset else
               f"GoEmotions (Demszky et al., ACL 2020), {metrics['taxonomy']} taxonomy ({len(labels)} labels)")
            + ", with the command below. A label is predicted when its sigmoid score is above its threshold.", "",
            "```bash", f"python predict.py {path} \"I love this!\"            # threshold {a['threshold']}",
            f"python predict.py {path} --threshold tuned \"I love this!\"  # per-label thresholds tuned on dev",
            "```", ""]


def card_results(metrics: dict) -> list[str]:
    a, labels, test, tuned = metrics["args"], metrics["labels"], metrics["test"], metrics["test_tuned"]
    lines = ["## Results (test set, best epoch by dev macro F1)", "",
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
    return lines


def card_training(metrics: dict, dataset: dict | None) -> list[str]:
    a = metrics["args"]
    return ["", "## Training", "", "```bash", metrics["command"], "```", "",
            "| epoch | train loss | dev macro F1 | seconds |", "|---|---|---|---|",
            *(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['dev_macro_f1']:.4f} | {h['epoch_time_s']:.0f} |"
              for h in metrics["history"]), "",
            f"Best epoch {metrics['best_epoch']}; {metrics['world_size']} process(es) x batch {a['batch_size']}, "
            f"{metrics['precision']}; {metrics['hardware']}; total {metrics['total_time_s']:.0f} s; "
            f"peak RSS {metrics['peak_rss_mb']:.0f} MiB"
            + (f", peak GPU memory {metrics['peak_gpu_mb']:.0f} MiB." if metrics["peak_gpu_mb"] else "."), "",
            f"Training {losses.describe(metrics['loss'])}"
            + (f"; added tokens: {' '.join(a['add_tokens'])}" if a.get("add_tokens") else "") + ".", "",
            *card_length(metrics),
            "Data (SHA-256 of the files it was trained, tuned and tested on):", "",
            *(f"- `{path}` {digest}" for path, digest in metrics["data_sha256"].items()), "",
            *(["Prepared by `prepare_data.py` from (SHA-256):", "",
               *(f"- `{path}` {digest}" for path, digest in dataset["sources"].items()), ""] if dataset else [])]


def card_length(metrics: dict) -> list[str]:
    """How texts are read (predict.py reads them the same way), and how much of the training texts that left out."""
    if "reading" not in metrics:  # a run from before lengths were recorded
        return []
    train = metrics["lengths"]["train"]
    share = train["tokens_lost"] / train["tokens"] if train["tokens"] else 0.0
    reading = lengths.Reading.of(metrics["reading"])
    tuned = reading.pooled_by if isinstance(reading.pooled_by, lengths.PerLabel) else None
    return [f"Texts are read as {reading.describe()} (predict.py reads them the same "
            f"way). Training texts: median {train['median']:.0f} tokens, 99th percentile {train['p99']:.0f}, longest "
            f"{train['max']}; {train['cut']} of {train['texts']} not read whole ({100 * share:.1f}% of their tokens).",
            *([] if tuned is None else [
                "", f"Each label's windows are pooled, and its threshold set, as tuned on dev: "
                f"{tuned.describe(metrics['labels'], metrics['threshold'])}. The thresholds are kept in the scores "
                f"(an offset to each label's pooled logit), so a label is predicted when its score is above "
                f"{metrics['threshold']}, as the commands above do."]), ""]


def card_limitations(dataset: dict | None) -> list[str]:
    if dataset:
        return ["## Intended use and limitations", "",
                f"Trained on {dataset['name']}: what it learned, and its biases, are that data's; see its dataset.json "
                "and its source. Scores are not calibrated probabilities, and the model must not be used to make "
                "decisions about individuals."]
    return ["## Intended use and limitations", "",
            "For research on emotion recognition in English text. GoEmotions is 58k Reddit comments (2005-2019) "
            "labelled by raters who were all native English speakers from India; Reddit's users skew young and "
            "male, the comments were filtered with lists of offensive and vulgar words, and the paper notes that "
            "these choices bias what the labels mean and how well rare emotions (grief, relief, pride, nervousness) "
            "are recognised. Scores are not calibrated probabilities of what a writer feels, and the model must "
            "not be used to make decisions about individuals. See the paper's data disclaimer and "
            "https://github.com/google-research/google-research/tree/master/goemotions."]
