"""bert_model.py: data reading, batching, metrics, and real training runs on tiny BERTs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import cpu_has_bf16, run_script, train_args, write_slice
from sklearn.metrics import f1_score, precision_recall_fscore_support

import bert_model as bm
from multilabel import encoder, files
from multilabel.device import Env

LABELS = ["admiration", "amusement", "anger", "fear", "nervousness", "realization", "neutral"]


# ----------------------------------------------------------------------------------- batching


def test_length_grouped_batches_cover_everything_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 50, size=1000).tolist()
    batches = bm.length_grouped_batches(lengths, 16, seed=1)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert bm.length_grouped_batches(lengths, 16, seed=1) == batches
    assert bm.length_grouped_batches(lengths, 16, seed=2) != batches

    def pad_share(bs):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs) / sum(lengths)

    random_batches = [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]
    assert pad_share(batches) < 0.1 < pad_share(random_batches)
    evaluation = encoder.sorted_batches(lengths, 64)
    assert sorted(i for b in evaluation for i in b) == list(range(1000)) and pad_share(evaluation) < 0.08


# ------------------------------------------------------------------------- end to end (tiny)


def printed_table(stdout: str, labels: list[str]) -> dict[str, list[str]]:
    """bert_model.py's results table, {row name: its columns}, one row per label then the macro average."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["label", "prec", "recall", "F1", "paper",
                                                                          "tunedF1", "support"])
    rows = [line.split() for line in lines[start + 1:start + 2 + len(labels)]]
    assert [row[0] for row in rows] == [*labels, "macro-average"], rows
    return {row[0]: row[1:] for row in rows}


def test_cli_trains_evaluates_and_saves(trained, paper_table4):
    data, out, r = trained
    metrics = json.loads((out / "metrics.json").read_text())
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert losses[-1] < losses[0] * 0.8, losses  # training loss falls
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["best_epoch"] == 1 + int(np.argmax([h["dev_macro_f1"] for h in metrics["history"]]))
    assert "Test macro F1" in r.stdout and "time to save" in r.stdout and "peak RSS" in r.stdout
    assert "the first 10 steps took " in r.stdout and "an epoch of 20 steps (160 training texts, batch 8 x 1) takes " \
        "about " in r.stdout and "3 epoch(s) about " in r.stdout  # how long, said before the first epoch ends
    assert r.stdout.count("the first 10 steps took ") == 1  # once, not every epoch
    # the table: each label's test precision, recall, F1, the paper's F1 (Table 4), tuned F1 and support
    table = printed_table(r.stdout, metrics["labels"])
    assert table["admiration"][3] == "0.65"
    for name in metrics["labels"]:
        m, tuned = metrics["test"]["per_label"][name], metrics["test_tuned"]["per_label"][name]
        assert table[name] == [f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}",
                               f"{paper_table4[name]:.2f}", f"{tuned['f1']:.2f}", str(m["support"])], name
    assert table["macro-average"][2:5] == [f"{metrics['test']['macro']['f1']:.2f}",
                                           f"{paper_table4['macro-average']:.2f}",
                                           f"{metrics['test_tuned']['macro']['f1']:.2f}"]
    info = json.loads((out / "model" / "goemotions.json").read_text())
    assert info["labels"] == files.read_labels(data / "emotions.txt") and info["threshold"] == 0.3
    assert set(info["thresholds"]) == set(info["labels"]) and info["args"]["epochs"] == 3
    assert not (out / "model.checkpoint.pt").exists()  # removed once the model is saved
    png = out / "metrics.png"  # the plot defaults to beside the metrics file
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    h, w = matplotlib.image.imread(png).shape[:2]
    assert w >= 600 and h >= 400


def test_metrics_file_agrees_with_sklearn_on_the_predictions_file(trained):
    _, out, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    labels = metrics["labels"]
    with open(out / "predictions.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 64
    gold = np.array([[name in r["gold"].split(",") for name in labels] for r in rows])
    probs = np.array([[float(r[name]) for name in labels] for r in rows])
    predicted = np.array([[name in r["predicted"].split(",") for name in labels] for r in rows])
    assert (predicted == (probs > 0.3)).all()
    p, rec, f, s = precision_recall_fscore_support(gold, predicted, average="macro", zero_division=0)
    assert metrics["test"]["macro"]["f1"] == pytest.approx(f, abs=1e-6)
    assert metrics["test"]["macro"]["precision"] == pytest.approx(p, abs=1e-6)
    tuned = np.array([metrics["thresholds"][n] for n in labels])
    f_tuned = f1_score(gold, probs > tuned, average="macro", zero_division=0)
    assert metrics["test_tuned"]["macro"]["f1"] == pytest.approx(f_tuned, abs=1e-6)
    assert metrics["dev_tuned"]["macro"]["f1"] >= metrics["dev"]["macro"]["f1"]


def test_saved_model_reloads_with_the_same_predictions_in_predict_and_pipeline(trained):
    data, out, _ = trained
    with open(out / "predictions.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    r = run_script("predict.py", out / "model", "--input", data / "test.tsv", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    labels = json.loads((out / "metrics.json").read_text())["labels"]
    assert [g["id"] for g in got] == [row["id"] for row in rows]
    ours = np.array([[g["scores"][n] for n in labels] for g in got])
    saved = np.array([[float(row[n]) for n in labels] for row in rows])
    assert np.abs(ours - saved).max() <= 1e-6 + 1e-12  # the same model, scored the same way (6 decimals)
    assert [",".join(g["predicted"]) for g in got] == [row["predicted"] for row in rows]

    from transformers import pipeline

    texts = files.read_split(data / "test.tsv", 28).texts
    pipe = pipeline("text-classification", trust_remote_code=False, model=str(out / "model"), top_k=None,
                    device="cpu")
    for result, g in zip(pipe(texts[:10]), got[:10], strict=True):
        scores = {d["label"]: d["score"] for d in result}
        assert max(abs(scores[n] - g["scores"][n]) for n in labels) < 1e-5


# ------------------------------------------------------------------------------------- errors


def test_cuda_without_a_gpu_is_one_line(small_data, tiny_bert, tmp_path):
    # CUDA_VISIBLE_DEVICES= hides any GPU this machine has: the test runs everywhere, never skips
    r = run_script(*train_args(small_data, tmp_path / "m", tiny_bert, "--cuda"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("bert_model.py: error: --cuda given but PyTorch sees no CUDA device")
    assert "Traceback" not in r.stderr and not (tmp_path / "m").exists()


def test_bad_label_id_in_train_names_file_and_line(small_data, tiny_bert, tmp_path):
    lines = (small_data / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[6] = "some text\t3,40\tzzz\n"
    (small_data / "train.tsv").write_text("".join(lines), encoding="utf-8")
    r = run_script(*train_args(small_data, tmp_path / "m", tiny_bert))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: {small_data / 'train.tsv'}:7: label id 40 out of range" in r.stderr


def test_unreadable_and_malformed_files(small_data, tiny_bert, tmp_path):
    r = run_script(*train_args(small_data, tmp_path / "m", tiny_bert)[:1], small_data / "train.tsv",
                   tmp_path / "missing.tsv", small_data / "test.tsv", small_data / "emotions.txt", tmp_path / "m",
                   "--transformer-model", tiny_bert)
    assert r.returncode == 1 and "missing.tsv: file not found" in r.stderr and "Traceback" not in r.stderr
    (small_data / "dev.tsv").write_bytes(b"caf\xe9\t1\tx\n")
    r = run_script(*train_args(small_data, tmp_path / "m", tiny_bert))
    assert r.returncode == 1 and "dev.tsv:1: not valid UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_missing_model_offline_says_to_download_first(small_data, tmp_path):
    r = run_script(*train_args(small_data, tmp_path / "m", Path("acme/not-downloaded")),
                   env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "neither a local folder nor in the Hugging Face cache" in last and "download_transformer_model.py" in last


def test_nan_loss_stops_and_keeps_the_saved_model(small_data, tiny_bert, tmp_path):
    save = tmp_path / "m"
    shutil.copytree(tiny_bert, save)  # a model saved by an earlier run (one from before saved folders listed files)
    (save / "goemotions.json").write_text('{"labels": ["admiration"]}')
    before = (save / "model.safetensors").read_bytes()
    r = run_script(*train_args(small_data, save, tiny_bert, "--learning-rate", "1e12", "--precision", "fp32",
                              "--warmup-ratio", "0", "--log-every", "2", "--max-grad-norm", "1e30"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "loss is nan" in r.stderr.strip().splitlines()[-1] or "not finite" in r.stderr
    assert (save / "model.safetensors").read_bytes() == before


def test_save_fp_that_is_a_file_or_a_folder_of_other_things_is_refused(small_data, tiny_bert, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"an old torch.save pickle")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "thesis.tex").write_text("years of work")
    for save in (tmp_path / "model.pt", tmp_path / "results"):
        r = run_script(*train_args(small_data, save, tiny_bert))
        assert r.returncode == 1 and "refusing to replace it" in r.stderr
    assert (tmp_path / "model.pt").read_bytes() == b"an old torch.save pickle"
    assert (tmp_path / "results" / "thesis.tex").read_text() == "years of work"


def test_sentiment_taxonomy_end_to_end(small_data, tiny_bert, tmp_path):
    r = run_script(*train_args(small_data, tmp_path / "m", tiny_bert, "--taxonomy", "sentiment", "--epochs", "1",
                              "--metrics-file", tmp_path / "metrics.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["labels"] == ["positive", "negative", "ambiguous", "neutral"] and metrics["paper_macro_f1"] == 0.69
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["id2label"] == {"0": "positive", "1": "negative", "2": "ambiguous", "3": "neutral"}
    assert config["problem_type"] == "multi_label_classification"
    # gold sentiment of each test example, from the original labels through sentiment_dict.json
    groups = json.loads((small_data / "sentiment_dict.json").read_text())
    names = files.read_labels(small_data / "emotions.txt")
    label_ids = files.read_split(small_data / "test.tsv", 28).labels
    expected = sum(any(names[j] in groups["negative"] for j in ids) for ids in label_ids)
    assert metrics["test"]["per_label"]["negative"]["support"] == expected > 0


# ---------------------------------------------------------------------------- the real MiniLM


@pytest.mark.slow
def test_real_minilm_learns_on_real_examples(minilm, goemotions_dir, tmp_path):
    """Learning, on 192 real examples: the test examples of each emotion are ranked above the others, from the
    probabilities in predictions.tsv. The head as initialised ranks them at chance (measured with both learning
    rates 0: mean ROC AUC 0.50, gratitude 0.43) and at threshold 0.3 predicts the prior, neutral for all; so does
    this short run (measured), so F1 at 0.3 cannot tell. Labels shifted by one example: gratitude 0.45, a fail."""
    from sklearn.metrics import roc_auc_score

    data = write_slice(goemotions_dir, tmp_path / "data", {"train": 192, "dev": 100, "test": 200})
    r = run_script(*train_args(data, tmp_path / "m", minilm, "--epochs", "2", "--batch-size", "16",
                              "--learning-rate", "1e-4", "--init-bias-from-prior", "--head-learning-rate", "1e-3",
                              "--log-every", "2", "--metrics-file", tmp_path / "metrics.json",
                              "--predictions-file", tmp_path / "pred.tsv"))
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    labels = metrics["labels"]
    with open(tmp_path / "pred.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    gold = np.array([[name in row["gold"].split(",") for name in labels] for row in rows])
    probs = np.array([[float(row[name]) for name in labels] for row in rows])
    auc = {name: roc_auc_score(gold[:, j], probs[:, j]) for j, name in enumerate(labels) if gold[:, j].sum() >= 5}
    # measured, 3 runs of 200 test examples (192 or 384 to train on, head rate 1e-3 or 3e-3): gratitude 0.97-0.99,
    # the mean over the labels with 5+ examples 0.61-0.64
    assert gold[:, labels.index("gratitude")].sum() >= 5 and auc["gratitude"] >= 0.9, auc
    assert len(auc) >= 10 and np.mean(list(auc.values())) >= 0.55, auc
    # --precision auto: bf16 autocast where the CPU has the instructions oneDNN's bf16 needs, else fp32
    assert metrics["precision"] == ("bf16" if cpu_has_bf16() else "fp32")


def test_head_learning_rate_and_prior_bias(small_data, tiny_bert, tmp_path):
    """--learning-rate 0 freezes the encoder; the head still learns at --head-learning-rate, from the priors."""
    from safetensors.torch import load_file

    r = run_script(*train_args(small_data, tmp_path / "m", tiny_bert, "--epochs", "1", "--batch-size", "8",
                              "--learning-rate", "0", "--head-learning-rate", "1e-2", "--init-bias-from-prior",
                              "--log-every", "1", "--precision", "fp32", "--metrics-file", tmp_path / "metrics.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    first_loss = json.loads((tmp_path / "metrics.json").read_text())["loss_curve"][0][1]
    assert first_loss < 0.3  # BCE at the label frequencies; a zero bias starts near log(2) = 0.69
    before, after = load_file(tiny_bert / "model.safetensors"), load_file(tmp_path / "m" / "model.safetensors")
    encoder = [k for k in after if ".encoder." in k or ".embeddings." in k]
    assert encoder and all((after[k] == before[k.removeprefix("bert.")]).all() for k in encoder)
    assert not (after["bert.pooler.dense.weight"] == before["pooler.dense.weight"]).all()
    label_ids = files.read_split(small_data / "train.tsv", 28).labels
    prior = files.multi_hot(label_ids, 28).mean(0).clip(1e-4, 1 - 1e-4)
    assert np.corrcoef(after["classifier.bias"].numpy(), np.log(prior / (1 - prior)))[0, 1] > 0.9


# ------------------------------------------------------------------ starting from any model folder


def test_load_report_is_one_line_of_our_own(trained, tiny_bert):
    _, _, r = trained
    about_the_head = [line for line in (r.stdout + r.stderr).splitlines()
                      if "classifier" in line or "initiali" in line or "MISSING" in line or "checkpoint" in line]
    assert about_the_head == [f"model {tiny_bert}: new classification head, randomly initialised: classifier.weight, "
                              "classifier.bias"], about_the_head
    assert "Consider training" not in r.stdout + r.stderr and "TRAIN this model" not in r.stdout + r.stderr


def test_a_head_of_another_size_is_replaced_and_one_of_the_same_size_kept(trained, tmp_path):
    """A saved 28-label model, fine-tuned again on Ekman's 7 groups (new head) and on the 28 (head kept)."""
    import torch
    from safetensors.torch import load_file

    data, out, _ = trained
    r = run_script(*train_args(data, tmp_path / "ekman", out / "model", "--taxonomy", "ekman", "--epochs", "1",
                              "--batch-size", "16", "--metrics-file", tmp_path / "ekman.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "replaced its classification head of another size (classifier.bias (28,) -> (7,), " \
           "classifier.weight (28, 32) -> (7, 32))" in r.stdout
    assert json.loads((tmp_path / "ekman.json").read_text())["labels"][-1] == "neutral"
    assert load_file(tmp_path / "ekman" / "model.safetensors")["classifier.weight"].shape == (7, 32)

    labels = files.read_labels(data / "emotions.txt")
    model, _, new, mismatched = encoder.load_pretrained(str(out / "model"), labels)
    assert new == [] and not mismatched
    saved = load_file(out / "model" / "model.safetensors")
    assert torch.equal(model.classifier.weight, saved["classifier.weight"])  # continued fine-tuning
    assert "is kept (continued fine-tuning)" in encoder.describe_loading("x", new, mismatched)


def _tiny_encoders() -> dict:
    import transformers as t

    small = dict(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128)
    return {  # base model class, config; and the head's parameters as the architecture defines them
        "bert": (t.BertModel, t.BertConfig(**small), ["bert.pooler.", "classifier."]),
        "roberta": (t.RobertaModel, t.RobertaConfig(**small, pad_token_id=1), ["classifier."]),
        "xlm-roberta": (t.XLMRobertaModel, t.XLMRobertaConfig(**small, pad_token_id=1), ["classifier."]),
        "distilbert": (t.DistilBertModel, t.DistilBertConfig(vocab_size=120, dim=32, n_layers=1, n_heads=2,
                                                             hidden_dim=64), ["pre_classifier.", "classifier."]),
        "electra": (t.ElectraModel, t.ElectraConfig(**small, embedding_size=32), ["classifier."]),
        "deberta-v2": (t.DebertaV2Model, t.DebertaV2Config(**small), ["pooler.", "classifier."]),
        "modernbert": (t.ModernBertModel, t.ModernBertConfig(**small, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                                             cls_token_id=1, sep_token_id=2),
                       ["head.", "classifier."]),
        "albert": (t.AlbertModel, t.AlbertConfig(**small, embedding_size=16), ["albert.pooler.", "classifier."]),
        "mpnet": (t.MPNetModel, t.MPNetConfig(**small), ["classifier."]),
    }


@pytest.mark.parametrize("arch", list(_tiny_encoders()))
def test_the_head_learns_at_the_head_rate_whatever_the_encoder(arch, minilm, tmp_path):
    """What loading reports as new (plus BERT's and ALBERT's pooler) is the head: --head-learning-rate and
    --init-bias-from-prior act on it, on every encoder users pick; the encoder keeps --learning-rate."""
    import argparse

    import torch
    from transformers import AutoTokenizer

    cls, config, head = _tiny_encoders()[arch]
    torch.manual_seed(0)
    cls(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm, trust_remote_code=False).save_pretrained(tmp_path)
    model, _, new, _ = encoder.load_pretrained(str(tmp_path), LABELS)
    assert new and all(n.startswith(tuple(head)) for n in new)
    y = np.zeros((20, len(LABELS)), dtype=np.float32)
    y[:10, 0] = y[:2, 3] = 1  # priors 0.5 and 0.1; the rest never seen (clamped to 1e-4)
    args = argparse.Namespace(learning_rate=1e-5, head_learning_rate=1e-2, weight_decay=0.01,
                              init_bias_from_prior=True, batch_size=4, epochs=1, warmup_ratio=0.0)
    env = Env(0, 1, torch.device("cpu"), "fp32", None, lambda *a, **k: None)
    state = bm.training_state(args, env, model, new, y)
    lr_of = {id(p): g["lr"] for g in state.optimizer.param_groups for p in g["params"]}
    for n, p in model.named_parameters():
        assert lr_of[id(p)] == (1e-2 if n.startswith(tuple(head)) else 1e-5), n
    out_bias = dict(model.named_parameters())[[n for n in new if n.endswith("bias")][-1]]
    assert out_bias.detach().numpy()[[0, 3]] == pytest.approx([0.0, np.log(0.1 / 0.9)], abs=1e-5)


# ------------------------------------------------------------------------- dev scores as training goes


def test_dev_every_writes_progress_and_changes_nothing(trained, tiny_bert, tmp_path):
    """--dev-every N scores dev mid-epoch into SAVE_FP.dev.jsonl (what tune.py prunes on); the run's predictions
    are byte-identical to the same run without it, and the epochs' lines are metrics.json's history."""
    data, out, _ = trained
    run = tmp_path / "runs" / "tiny-cpu"
    r = run_script(*train_args(data, run / "model", tiny_bert, "--epochs", "3", "--batch-size", "8",
                               "--learning-rate", "1e-3", "--log-every", "5", "--precision", "fp32", "--dev-every", "7",
                               "--metrics-file", run / "metrics.json", "--predictions-file", run / "predictions.tsv"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "predictions.tsv").read_bytes() == (out / "predictions.tsv").read_bytes()
    progress = files.read_progress(files.progress_path(run / "model"))
    assert [p["global_step"] for p in progress] == [7, 14, 20, 27, 34, 40, 47, 54, 60]  # 20 steps an epoch
    assert "epoch 1 step 7/20: dev macro F1" in r.stdout + r.stderr
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [p["dev_macro_f1"] for p in progress if p["step"] == 20] == [h["dev_macro_f1"] for h in history]
    assert [p["global_step"] for p in files.read_progress(files.progress_path(out / "model"))] == [20, 40, 60]
