"""Fine-tune a BERT-style encoder for multi-label classification: GoEmotions, or your own labels.

    python bert_model.py TRAIN DEV TEST LABELS SAVE_FP [--cuda] [options]
    torchrun --nproc_per_node 4 bert_model.py ... --cuda        (DistributedDataParallel)

The reproduction of the GoEmotions paper's BERT baseline (Demszky et al., ACL 2020, Table 4): BCE-with-logits
over the 28 labels (or the Ekman / sentiment groupings), AdamW with linear warmup and decay, 4 epochs, dev macro
F1 after every epoch, the best epoch evaluated on test at threshold 0.3 exactly as google-research's
goemotions/calculate_metrics.py does it. SAVE_FP becomes a Hugging Face model folder (safetensors, tokenizer,
goemotions.json with labels, thresholds and metrics, a model card). A checkpoint beside it (SAVE_FP.checkpoint.pt)
lets --resume continue a killed job; on SIGTERM/SIGUSR1/SIGUSR2 the script finishes its step, writes the
checkpoint and exits 99. Options marked [no effect on results] are the only ones --resume lets change.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from multilabel import checkpoint, encoder, files, identity, lengths, losses, options, outputs, report
from multilabel.checkpoint import TrainingState
from multilabel.device import Env, all_ranks_finite, distributed, every_ranks_share, hardware, leave, setup
from multilabel.files import UserError

GOEMOTIONS_MASKS = ("[NAME]", "[RELIGION]")  # how GoEmotions masks names and religions (--add-tokens)
ESTIMATE_AFTER = 10  # steps after which the log says how long an epoch will take at their rate
MAX_LENGTH = options.Range(int, low=lengths.MIN_LENGTH, words=("auto",))  # tokens a text (a window)


# -------------------------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        master = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 holds the locks
        with outputs.claim("bert_model.py", run_inputs(args), run_outputs(args), lock=master):
            return fine_tune(args, files.command_line("bert_model.py", argv))
    except KeyboardInterrupt:  # Ctrl-C; a job's stop signals checkpoint instead (checkpoint.Stopper)
        print("bert_model.py: error: interrupted", file=sys.stderr)
        return 130
    except UserError as e:
        return files.fail("bert_model.py", e)


def fine_tune(args: argparse.Namespace, command: str = "") -> int:
    """The whole run, in order. Returns 0, or EXIT_REQUEUE after a stop signal and a checkpoint."""
    started = time.time()
    save_fp, ckpt_path = output_paths(args.save_fp, args.resume)
    data_sha256 = identity.data_checksums(vars(args))  # the data's content by role, checked on resume and recorded
    resumable = checkpoint_to_resume(args, ckpt_path, data_sha256)
    env = setup(args.cuda, args.precision, "bert_model.py")
    labels, splits = read_data(args)
    seed_everything(args.seed)
    model, tokenizer, new = load_model(args, labels, env)
    checkpoint.check_room(save_fp, ckpt_path, model, env)
    pad, reading, length_report = tokenize(splits, tokenizer, model, args, env, labels)
    encoder.attach_pooling(model, reading)  # --pooling learned: its sharpness, learned with the model
    loss_fn, loss_info = losses.make(args, splits["train"]["y"], labels, env.device)
    env.log(losses.describe(loss_info))
    state = training_state(args, env, model, new, splits["train"]["y"], data_sha256)
    net = distributed(model, env)
    if resumable:
        resume(state, resumable, ckpt_path, splits, args, env)
    stopper = checkpoint.Stopper(env, args.checkpoint_minutes, ckpt_path, files.requeue_marker(save_fp))
    state.progress, state.started = files.progress_path(save_fp), started
    state.reading, state.lengths = reading, length_report
    if not resumable and env.master:
        state.progress.unlink(missing_ok=True)  # a fresh run's evaluations start a fresh file
    stopped = fit(args, env, state, net, splits, labels, pad, loss_fn, stopper)
    if stopped:
        return stopper.requeue(stopped)
    test_probs = evaluate_on_test(state, net, splits["test"], args, env, pad, labels)
    if env.master:
        metrics = final_metrics(args, env, labels, splits, state, test_probs, loss_info, command, started)
        save_everything(args, env, metrics, splits["test"], test_probs, model, tokenizer, save_fp, ckpt_path)
    return 0


# -------------------------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--learning-rate", type=options.NON_NEGATIVE, default=5e-5,
                   help="peak AdamW learning rate (the paper's); 0 freezes the encoder")
    p.add_argument("--head-learning-rate", type=options.POSITIVE,
                   help="for the new classifier (and pooler); None: --learning-rate")
    p.add_argument("--init-bias-from-prior", action="store_true",
                   help="start the classifier's biases at log(p/(1-p)) of each label's training frequency")
    losses.add_options(p)
    p.add_argument("--add-tokens", nargs="*", metavar="TOKEN",
                   help="add these as tokens of their own, with new embeddings, saved with the tokenizer; with none "
                   "named: GoEmotions' masks " + " ".join(GOEMOTIONS_MASKS))
    p.add_argument("--batch-size", type=options.WHOLE_1, default=16, help="per process (per GPU under torchrun)")
    p.add_argument("--epochs", type=options.WHOLE_1, default=4, help="the paper's 4")
    add_reading_options(p)
    p.add_argument("--warmup-ratio", type=options.FRACTION, default=0.1, help="share of all steps spent warming up")
    p.add_argument("--weight-decay", type=options.NON_NEGATIVE, default=0.01,
                   help="AdamW decay (not on biases, LayerNorm)")
    p.add_argument("--max-grad-norm", type=options.POSITIVE, default=1.0, help="gradient clipping")
    p.add_argument("--seed", type=options.SEED, default=42, help="model init, dropout and data order")
    p.add_argument("--threshold", type=options.THRESHOLD, default=0.3,
                   help="a label is predicted when its score > this")
    p.add_argument("--taxonomy", choices=["original", "ekman", "sentiment"], default="original",
                   help="28 emotions, or the paper's Ekman (6 + neutral) or sentiment (3 + neutral) groups")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 autocast where the hardware supports it, else fp16 on CUDA, fp32 on CPU")
    add_run_options(p)
    options.describe_ranges(p)
    for action in p._actions:  # what --resume lets change, and compare_runs.py does not group by
        if action.dest in files.NO_RESULT and action.option_strings:
            action.help += " [no effect on results]"
    return p


def add_reading_options(p: argparse.ArgumentParser) -> None:
    """How a text is read: its length in tokens, and what becomes of a longer one (docs/own-data.md#long-texts)."""
    p.add_argument("--max-length", type=MAX_LENGTH, default="auto",
                   help="tokens a text (a window with --long-texts windows); auto: the paper's 50 for GoEmotions' "
                   "own data, else the training texts' 99th percentile rounded up to a multiple of 8, at most the "
                   "model's limit; saved with the model, for predict.py")
    p.add_argument("--long-texts", choices=("auto", *lengths.LONG_TEXTS), default="auto",
                   help="a text over --max-length: cut it, keep its head and tail, or read it whole in windows whose "
                   "logits are pooled; auto: truncate on GoEmotions' own data (the paper), else windows "
                   "(docs/own-data.md)")
    p.add_argument("--stride", type=options.WHOLE_0,
                   help="windows: tokens two consecutive windows share (default: a quarter)")
    p.add_argument("--max-windows", type=options.WHOLE_1, default=8,
                   help="windows: at most this many a text; the rest unread")
    p.add_argument("--pooling", choices=lengths.POOLINGS, default="tuned", help="windows: how a text's windows' "
                   "logits become its own; tuned: per label, the pooling from max through the mean to min and the "
                   "threshold with the best dev F1, after every epoch (the threshold saved as an offset to the "
                   "logit, so the model decides at --threshold); learned: a sharpness per label, learned with "
                   "--window-labels pooled (the loss taken on the pooled logits) (docs/own-data.md)")
    p.add_argument("--window-labels", choices=lengths.WINDOW_LABELS, default="each",
                   help="windows in training: each window taught every label of its document (as simpletransformers' "
                   "sliding_window; measured better, bench/RESULTS.md), or the loss on each document's pooled logits")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Evaluation batches, logging, checkpoints, the files written, and --compile."""
    p.add_argument("--eval-batch-size", type=options.WHOLE_1, default=128, help="dev/test batches, sorted by length")
    p.add_argument("--log-every", type=options.WHOLE_1, default=100, help="print the average loss every N batches")
    p.add_argument("--dev-every", type=options.WHOLE_0, default=0, metavar="N",
                   help="also score dev every N steps, logged and appended to SAVE_FP.dev.jsonl as after each epoch "
                   "(tune.py prunes on it); the best weights are still chosen at epochs' ends")
    p.add_argument("--checkpoint-every", type=options.WHOLE_0, default=0, help="also checkpoint every N steps (0: off)")
    p.add_argument("--checkpoint-minutes", type=options.NON_NEGATIVE, default=10,
                   help="checkpoint when this long has passed since the last one (besides every epoch's end); 0: "
                   "after every step")
    p.add_argument("--resume", action="store_true", help="continue from SAVE_FP.checkpoint.pt if it exists")
    p.add_argument("--metrics-file", help="JSON: every metric, per label and averaged, dev and test")
    p.add_argument("--predictions-file", help="TSV: id, gold, predicted, one score column per label")
    p.add_argument("--plot-file", help="PNG: per-label test F1 beside the paper's, and the loss curve "
                   "(default: beside --metrics-file)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (CUDA graphs on one GPU), with static batch shapes; "
                   "off by default until measured (docs/training.md)")
    p.add_argument("--max-train-examples", type=options.WHOLE_1,
                   help="use only the first N training examples (smoke runs)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.add_tokens == []:  # the flag alone
        args.add_tokens = list(GOEMOTIONS_MASKS)
    return args


# -------------------------------------------------------------------------------------------- setting up


def run_inputs(args: argparse.Namespace) -> list[outputs.Input]:
    """What the run reads: the data files, and the base model's folder (loaded whole) where it is a local one."""
    found = [outputs.Input(Path(p), f"the {role} data") for role, p in identity.data_paths(vars(args)).items()]
    if Path(args.transformer_model).is_dir():
        found.append(outputs.Input(Path(args.transformer_model), "the base model (--transformer-model)", folder=True))
    return found


def run_outputs(args: argparse.Namespace) -> list[outputs.Output]:
    """What the run writes: SAVE_FP (replaced whole at the end), the files beside it, and the files asked for."""
    save_fp = Path(args.save_fp)
    plot = args.plot_file or (Path(args.metrics_file).with_suffix(".png") if args.metrics_file else None)
    return [outputs.Output(save_fp, "the model folder (SAVE_FP)", folder=True, ours=encoder.saved_model_folder),
            outputs.Output(files.checkpoint_path(save_fp), "the checkpoint", named=False),
            outputs.Output(files.progress_path(save_fp), "the dev progress file", named=False,
                           ours=outputs.json_lines_with("global_step")),
            outputs.Output(args.metrics_file and Path(args.metrics_file), "the metrics (--metrics-file)"),
            outputs.Output(args.predictions_file and Path(args.predictions_file),
                           "the predictions (--predictions-file)"),
            outputs.Output(plot and Path(plot), "the plot (--plot-file)", named=bool(args.plot_file),
                           ours=outputs.png)]


def output_paths(save_fp_arg: str, resume: bool) -> tuple[Path, Path]:
    """SAVE_FP and its checkpoint; a stopped run's checkpoint is continued with --resume, never silently dropped."""
    save_fp = Path(save_fp_arg)
    ckpt_path = files.checkpoint_path(save_fp)
    if ckpt_path.exists() and not resume:
        raise UserError(f"{ckpt_path}: a stopped run's checkpoint: rerun with --resume to continue it, or choose "
                        f"another SAVE_FP (or move the checkpoint away to start afresh)")
    save_fp.parent.mkdir(parents=True, exist_ok=True)
    return save_fp, ckpt_path


def checkpoint_to_resume(args: argparse.Namespace, ckpt_path: Path, data_sha256: dict[str, str]) -> dict | None:
    """With --resume and a checkpoint: that checkpoint, if this run may continue it (checkpoint.check_resumable)."""
    if not (args.resume and ckpt_path.exists()):
        return None
    defaults = {a.dest: a.default for a in build_parser()._actions if a.dest != "help"}  # options added since
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return checkpoint.check_resumable(ckpt_path, vars(args), data_sha256, defaults, world)


def read_data(args: argparse.Namespace) -> tuple[list[str], dict[str, dict]]:
    """The labels (after --taxonomy) and the three splits: {split: {texts, ids, y}}."""
    original = files.read_labels(args.labels)
    files.read_dataset(Path(args.labels).parent)  # a bad dataset.json fails now, not after training
    labels, mapping = files.taxonomy_mapping(original, args.taxonomy, Path(args.labels).parent)
    splits = {}
    for name in files.SPLITS:
        split = files.read_split(getattr(args, name), len(original))
        n = args.max_train_examples if name == "train" and args.max_train_examples else len(split.texts)
        splits[name] = {"texts": split.texts[:n], "ids": split.ids[:n],
                        "y": files.multi_hot(split.labels[:n], len(labels), mapping)}
    return labels, splits


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_model(args: argparse.Namespace, labels: list[str], env: Env) -> tuple:
    """The encoder with its head for `labels` (and --add-tokens), on the device; which parameters are new."""
    model, tokenizer, new, mismatched = encoder.load_pretrained(args.transformer_model, labels)
    env.log(encoder.describe_loading(args.transformer_model, new, mismatched))
    if args.add_tokens:  # e.g. GoEmotions' masks [NAME] and [RELIGION] as tokens of their own
        env.log(encoder.add_tokens(model, tokenizer, args.add_tokens))
    return model.to(env.device), tokenizer, new


def tokenize(splits: dict[str, dict], tokenizer, model, args: argparse.Namespace, env: Env,
             labels: list[str]) -> tuple[int, lengths.Reading, dict]:
    """Tokenize every split once, up front, read as --max-length and --long-texts say (batches are padded later, to
    their own longest window); say how long the texts are and how much of them was not read. (pad id, how texts
    are read, the length report for metrics.json)"""
    counts = {name: lengths.token_counts(tokenizer, s["texts"]) for name, s in splits.items()}
    reading = read_as(args, counts["train"], lengths.model_limit(tokenizer, model.config), labels)
    report_, special = {}, sum(map(len, encoder.special_tokens(tokenizer)))
    for name, s in splits.items():
        s["encoded"] = encoder.encode(tokenizer, s["texts"], reading)
        if name == "train" and args.window_labels == "each" and not s["encoded"].single():  # windows taught alone
            s["y"], s["encoded"] = s["y"][s["encoded"].owner], s["encoded"].windows_as_texts()
        report_[name] = {**lengths.summary(counts[name]), **lengths.cut_report(counts[name], reading, special)}
        env.log(lengths.summary_line(name, report_[name]) + "; " + lengths.cut_line("read", report_[name]))
        windows_of(s)
    env.log(f"texts read as: {reading.describe()}")
    env.log(f"{len(labels)} labels ({args.taxonomy}); train {len(splits['train']['ids'])}, "
            f"dev {len(splits['dev']['ids'])}, test {len(splits['test']['ids'])} examples; model "
            f"{args.transformer_model}; device {env.device}, {env.precision}; {env.world} process(es) x batch "
            f"{args.batch_size}")
    return encoder.pad_id(tokenizer), reading, report_


def read_as(args: argparse.Namespace, train_counts: list[int], limit: int | None, labels: list[str]) -> lengths.Reading:
    """--max-length and --long-texts resolved (auto: the paper's 50 tokens, truncated, for GoEmotions' own data;
    else the length from the training texts, and windows)."""
    goemotions = files.read_dataset(Path(args.labels).parent) is None and files.paper_taxonomy(labels) is not None
    length = args.max_length
    if length == "auto":
        length = lengths.GOEMOTIONS_LENGTH if goemotions else lengths.auto_length(train_counts, limit)
    long_texts = args.long_texts if args.long_texts != "auto" else "truncate" if goemotions else "windows"
    reading = lengths.Reading(length, long_texts, args.stride, args.max_windows, args.pooling)
    lengths.check(reading, limit, args.window_labels, args.compile)
    return reading


def windows_of(split: dict) -> None:
    """A split's windows by text: each text's length (its windows' tokens, to batch texts of a size together) and
    width (its longest window, what its batch pads to)."""
    enc = split["encoded"]
    split["input_ids"] = enc.windows
    split["width"] = [0] * enc.texts
    split["lengths"] = [0] * enc.texts
    for w, t in zip(enc.windows, enc.owner.tolist(), strict=True):
        split["width"][t] = max(split["width"][t], len(w))
        split["lengths"][t] += len(w)


def steps_per_epoch(n_train: int, args: argparse.Namespace, env: Env) -> int:
    """One step is a global batch: --batch-size on each of the `world` processes."""
    return math.ceil(n_train / (args.batch_size * env.world))


def training_state(args: argparse.Namespace, env: Env, model, new: list[str], train_y: np.ndarray,
                   data_sha256: dict[str, str] | None = None) -> TrainingState:
    """Everything a checkpoint holds: the model, AdamW, its schedule, the loss scaler, and where the run is.

    AdamW, no decay on biases and LayerNorm. The head may learn faster than the pretrained encoder
    (--head-learning-rate): what loading initialised afresh, and BERT's pooler that feeds the classifier
    (pretrained for next-sentence prediction, if at all, not for this task). --pooling learned's sharpness at its
    own rate (encoder.POOLING_LEARNING_RATE)."""
    from transformers import get_linear_schedule_with_warmup

    rates = {"encoder": args.learning_rate, "head": args.head_learning_rate or args.learning_rate,
             "pooling": encoder.POOLING_LEARNING_RATE}
    groups: dict[tuple[bool, str], list] = {}
    for n, p in model.named_parameters():
        head = n in new or n.startswith("pooler.") or ".pooler." in n
        rate = "pooling" if n.startswith(encoder.POOLING_MODULE + ".") else "head" if head else "encoder"
        groups.setdefault((p.ndim >= 2, rate), []).append(p)
    optimizer = torch.optim.AdamW([{"params": ps, "weight_decay": args.weight_decay if decay else 0.0,
                                    "lr": rates[rate]} for (decay, rate), ps in groups.items()],
                                  lr=args.learning_rate, fused=True)  # one kernel, on CPUs as on GPUs
    if args.init_bias_from_prior:
        init_bias_from_prior(model, new, train_y, env)
    total_steps = steps_per_epoch(len(train_y), args, env) * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    return TrainingState(model, optimizer, scheduler,
                                    torch.amp.GradScaler(env.device.type, enabled=env.precision == "fp16"),
                                    data_sha256 or {})


def init_bias_from_prior(model, new: list[str], train_y: np.ndarray, env: Env) -> None:
    """Start the head at the label frequencies, not at p = 0.5 for everything: the last new bias with one entry per
    label (the output layer's) becomes log(p / (1 - p))."""
    params = dict(model.named_parameters())
    out_bias = [n for n in new if n.endswith("bias") and params[n].shape == (train_y.shape[1],)]
    if not out_bias:
        env.log("--init-bias-from-prior: the head was kept (not new), so its biases are left as trained")
        return
    prior = torch.from_numpy(train_y).mean(0).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        params[out_bias[-1]].copy_(torch.log(prior / (1 - prior)))


def resume(state: TrainingState, ck: dict, ckpt_path: Path, splits: dict, args: argparse.Namespace, env: Env) -> None:
    checkpoint.restore(state, ck, ckpt_path, env)
    env.log(f"resumed from {ckpt_path}: epoch {state.epoch + 1}, step {state.step} of "
            f"{steps_per_epoch(len(splits['train']['y']), args, env)}")


# ------------------------------------------------------------------------------------------ the loop


def fit(args: argparse.Namespace, env: Env, state: TrainingState, net: torch.nn.Module, splits: dict[str, dict],
        labels: list[str], pad: int, loss_fn: Callable, stopper: checkpoint.Stopper) -> str | None:
    """Train epoch by epoch from where `state` is; dev macro F1 after each epoch keeps the best weights.

    Returns None when done, or where it stopped on a signal (after writing the checkpoint)."""
    model, optimizer, scheduler, scaler = (getattr(state, k) for k in checkpoint.STATEFUL)
    train = on_device(splits["train"], pad, env.device)  # once: each batch is gathered there
    steps = steps_per_epoch(len(splits["train"]["y"]), args, env)
    step_loss = training_loss(net, env, loss_fn, args.compile, encoder.pooling_of(model, args.pooling))
    model.train()
    tty, first_epoch = sys.stderr.isatty(), state.epoch
    for epoch in range(state.epoch, args.epochs):
        t_epoch = time.time()
        # The same order on every rank; each global batch is cut into one slice per rank. Resuming mid-epoch
        # continues the interrupted epoch's order, saved in the checkpoint.
        first = state.step
        if not first:
            state.order = length_grouped_batches(splits["train"]["lengths"], args.batch_size * env.world,
                                                    args.seed + epoch)
        batches = rank_batches(state.order[first:], splits["train"]["width"], env.rank, args.batch_size,
                               args.compile, env.device)
        running, epoch_loss = torch.zeros((), device=env.device), torch.zeros((), device=env.device)
        n_logged = n_epoch = 0
        with tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not env.master,
                  mininterval=0.5 if tty else 60, ascii=not tty) as bar:  # a log file gets a line a minute
            for step in range(first, steps):
                rows, weights, width = batches[step - first]
                loss = step_loss(*batch_of(train, rows, width), train["y"][rows], weights)
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
                if n_epoch == ESTIMATE_AFTER and epoch == first_epoch:  # this process's first steps
                    say_how_long(time.time() - t_epoch, steps, splits["train"], args, env)

                done = step + 1
                if done % args.log_every == 0 or done == steps:
                    log_loss(running, n_logged, epoch, done, steps, state, scheduler, args, env)
                    running.zero_()
                    n_logged = 0
                if args.dev_every and done % args.dev_every == 0 and done < steps:
                    dev_progress(state, net, splits, labels, pad, epoch, done, steps, args, env)
                # under DDP the ranks agree every 10 steps (one all_reduce), alone after every step
                stopping, timely = stopper.check() if env.world == 1 or done % 10 == 0 else (False, False)
                periodic = args.checkpoint_every and done % args.checkpoint_every == 0
                if done < steps and (stopping or periodic or timely):
                    if not all_ranks_finite(epoch_loss, env.world):  # all agree, or one raises while the rest wait
                        raise UserError(f"loss is not finite at epoch {epoch + 1} step {done}; stopped, the last "
                                        f"checkpoint and saved model are kept (try a lower --learning-rate)")
                    save_checkpoint(state, epoch, done, stopper, args, env)
                    if stopping:
                        return f"at epoch {epoch + 1} step {done}"

        end_epoch(state, net, splits, labels, pad, epoch, epoch_loss, n_epoch, time.time() - t_epoch, args, env)
        save_checkpoint(state, epoch + 1, 0, stopper, args, env)
        if stopper.check()[0] and epoch + 1 < args.epochs:
            return f"after epoch {epoch + 1}"
    return None


def say_how_long(seconds: float, steps: int, train: dict, args: argparse.Namespace, env: Env) -> None:
    """After the first ESTIMATE_AFTER steps: how long an epoch, and the run's epochs, will take at their rate."""
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    rate = seconds / ESTIMATE_AFTER
    windows = len(train["input_ids"]) if len(train["input_ids"]) != len(train["ids"]) else 0
    env.log(f"the first {ESTIMATE_AFTER} steps took {seconds:.1f} s: at that rate an epoch of {steps} steps ("
            f"{len(train['ids'])} training texts{f' read as {windows} windows' if windows else ''}, batch "
            f"{args.batch_size} x {env.world}) takes about {duration(rate * steps)}, {args.epochs} epoch(s) about "
            f"{duration(rate * steps * args.epochs)} (dev scoring aside)")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group: int = 50) -> list[list[int]]:
    """Training order: shuffle, sort each run of `group` batches by length, cut, shuffle the batches. Examples of
    similar length share a batch (little padding), the batch order stays random."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    batches = []
    for start in range(0, len(order), batch_size * group):
        chunk = sorted(order[start:start + batch_size * group], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def on_device(split: dict, pad: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The tokenized training split's windows padded to the longest, moved to the device once (tens of MB for
    GoEmotions): a step gathers its batch there, with no collate, pinning or host-to-device copy. Where texts have
    several windows, `windows` lists each text's (-1 past its last)."""
    enc = split["encoded"]
    widths = torch.tensor([len(w) for w in enc.windows])
    ids = torch.full((len(widths), int(widths.max())), pad, dtype=torch.long)
    for i, x in enumerate(enc.windows):
        ids[i, :len(x)] = torch.tensor(x)
    mask = (torch.arange(ids.shape[1])[None, :] < widths[:, None]).long()
    out = {"ids": ids.to(device), "mask": mask.to(device), "y": torch.from_numpy(split["y"]).to(device)}
    if not enc.single():
        owner = torch.from_numpy(enc.owner)
        first = torch.searchsorted(owner, torch.arange(enc.texts))
        count = torch.bincount(owner, minlength=enc.texts)
        k = torch.arange(int(count.max()))
        out["windows"] = torch.where(k[None, :] < count[:, None], first[:, None] + k[None, :], -1).to(device)
    return out


def batch_of(train: dict[str, torch.Tensor], rows: torch.Tensor, width: int) -> tuple:
    """A batch's input ids and attention mask, and, where texts have several windows, which text of the batch each
    window is (the loss is taken on the texts' pooled logits)."""
    if "windows" not in train:
        return train["ids"][rows, :width], train["mask"][rows, :width], None
    windows = train["windows"][rows]
    valid = windows >= 0
    owner = torch.arange(len(rows), device=rows.device)[:, None].expand_as(windows)[valid]
    windows = windows[valid]
    return train["ids"][windows, :width], train["mask"][windows, :width], owner


def rank_batches(order: list[list[int]], lengths: list[int], rank: int, batch_size: int, static: bool,
                 device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """This rank's share of each global batch: (rows, loss weights, width), the rows and weights put on the device
    once an epoch. static (--compile): every batch has batch_size rows (a short one is filled with copies of its
    first row at weight 0) and a width rounded up to a multiple of 8, so that the compiled step sees a handful of
    shapes."""
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
                  compile_it: bool, pooling: str | torch.Tensor = "max") -> Callable[..., torch.Tensor]:
    """The forward and loss of one batch: the mean over its labels and its real rows (weight 1; padding rows weigh
    0), in fp32. --compile: torch.compile'd (CUDA graphs on one GPU; the default mode under DDP, where CUDA graphs
    are known to break, and on a CPU)."""

    def step_loss(ids, mask, owner, y, weights):
        with torch.autocast(env.device.type, dtype=env.amp_dtype or torch.float32, enabled=env.amp_dtype is not None):
            logits = net(input_ids=ids, attention_mask=mask).logits
        if owner is not None:  # a document's loss is on its windows' pooled logits
            logits = encoder.pool(logits.float(), owner, len(y), pooling)
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


def log_loss(running: torch.Tensor, n: int, epoch: int, done: int, steps: int, state: TrainingState, scheduler,
             args: argparse.Namespace, env: Env) -> None:
    """The average loss since the last logging point: the one host-device sync of the loop."""
    if env.world > 1:
        dist.all_reduce(running)
    avg = running.item() / n / env.world
    if not math.isfinite(avg):
        raise UserError(f"loss is {avg} at epoch {epoch + 1} step {done}; stopped, the last checkpoint and saved "
                        f"model are kept (try a lower --learning-rate)")
    state.loss_curve.append([epoch * steps + done, avg])
    if done % args.log_every == 0 and env.master:
        tqdm.write(f"epoch {epoch + 1} batch {done}/{steps} loss {avg:.4f} lr {scheduler.get_last_lr()[0]:.2e}")


def end_epoch(state: TrainingState, net, splits: dict, labels: list[str], pad: int, epoch: int,
              epoch_loss: torch.Tensor, n_epoch: int, seconds: float, args: argparse.Namespace, env: Env) -> None:
    """Dev macro F1 of the epoch's weights; the best so far are kept."""
    if env.world > 1:
        dist.all_reduce(epoch_loss)
    train_loss = epoch_loss.item() / max(n_epoch, 1) / env.world
    dev_probs, dev_f1, tuned = dev_progress(state, net, splits, labels, pad, epoch, n_epoch, n_epoch, args, env)
    state.history.append({"epoch": epoch + 1, "train_loss": train_loss, "dev_macro_f1": dev_f1,
                             "epoch_time_s": seconds, "steps": n_epoch})
    env.log(f"epoch {epoch + 1}: average loss {train_loss:.4f}, dev macro F1 {dev_f1:.4f}, time {seconds:.1f} s "
            f"({n_epoch * args.batch_size * env.world / seconds:.1f} examples/s)")
    if dev_f1 > state.best["f1"]:
        state.best = {"f1": dev_f1, "epoch": epoch + 1, "dev_probs": torch.from_numpy(dev_probs),
                         "pooling": dataclasses.asdict(tuned) if tuned else None,  # --pooling tuned's choice
                         "state": {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}}
    state.order = []


def dev_progress(state: TrainingState, net, splits: dict, labels: list[str], pad: int, epoch: int, done: int,
                 steps: int, args: argparse.Namespace, env: Env) -> tuple[np.ndarray, float, lengths.PerLabel | None]:
    """Dev scores and macro F1 at --threshold now, appended to SAVE_FP.dev.jsonl: (scores, F1, and with --pooling
    tuned each label's pooling and threshold tuned on these scores, which the scores are pooled by)."""
    tuned = None
    if state.reading.long_texts == "windows" and state.reading.pooling == "tuned":
        logits = window_logits(net, splits["dev"], args, env, pad)
        tuned = encoder.tune_pooling(logits, splits["dev"]["encoded"], splits["dev"]["y"], args.threshold)
        dev_probs = encoder.probabilities(logits, splits["dev"]["encoded"], tuned)
    else:
        dev_probs = evaluate(net, splits["dev"], args, env, pad)
    dev_f1 = report.compute_metrics(splits["dev"]["y"], dev_probs, args.threshold, labels)["macro"]["f1"]
    if env.master:
        steps_per = steps_per_epoch(len(splits["train"]["y"]), args, env)
        files.append_progress(state.progress, {
            "epoch": epoch + 1, "step": done, "global_step": epoch * steps_per + done,
            "examples": (epoch * steps_per + done) * args.batch_size * env.world, "dev_macro_f1": dev_f1,
            "seconds": time.time() - state.started})
        if done < steps:
            env.log(f"epoch {epoch + 1} step {done}/{steps}: dev macro F1 {dev_f1:.4f}")
    return dev_probs, dev_f1, tuned


def save_checkpoint(state: TrainingState, epoch: int, step: int, stopper: checkpoint.Stopper, args: argparse.Namespace,
                    env: Env) -> None:
    state.epoch, state.step = epoch, step
    stopper.last_checkpoint = time.time()
    checkpoint.save(stopper.ckpt_path, state, vars(args), env)


def evaluate(net, split: dict, args: argparse.Namespace, env: Env, pad: int,
             pooling: lengths.PerLabel | None = None) -> np.ndarray:
    """Scores for a whole split through predict.py's path (encoder.score), each text's windows pooled (by --pooling,
    the learned sharpness, or a tuned pooling); under DDP each rank scores its share of the batches and all assemble
    them."""
    model = net.module if env.world > 1 else net
    return encoder.score(model, split["encoded"], args.eval_batch_size, pad, env.device, env.amp_dtype,
                         pooling or encoder.pooling_of(model, args.pooling),
                         share=(env.rank, env.world), gather=every_ranks_share if env.world > 1 else None)


def window_logits(net, split: dict, args: argparse.Namespace, env: Env, pad: int) -> np.ndarray:
    """Every window's logits, not pooled (--pooling tuned is tuned on them)."""
    model = net.module if env.world > 1 else net
    out = encoder.window_logits(model, split["encoded"].windows, args.eval_batch_size, pad, env.device,
                                env.amp_dtype, share=(env.rank, env.world))
    return every_ranks_share(out) if env.world > 1 else out


# ---------------------------------------------------------------------------------------- test and report


def evaluate_on_test(state: TrainingState, net, split: dict, args: argparse.Namespace, env: Env,
                     pad: int, labels: list[str]) -> np.ndarray:
    """The best epoch's weights (and tuned pooling) on test."""
    state.model.load_state_dict(state.best["state"])
    tuned = state.best.get("pooling")
    if tuned:
        state.reading = dataclasses.replace(state.reading, sharpness=tuple(tuned["sharpness"]),
                                            offset=tuple(tuned["offset"]))
        env.log(f"pooling tuned on dev (its texts of more than one window): "
                f"{state.reading.pooled_by.describe(labels, args.threshold)}")
    test_probs = evaluate(net, split, args, env, pad, state.reading.pooled_by if tuned else None)
    if env.world > 1:
        leave()
    return test_probs


def final_metrics(args: argparse.Namespace, env: Env, labels: list[str], splits: dict[str, dict], state: TrainingState,
                  test_probs: np.ndarray, loss_info: dict, command: str, started: float) -> dict:
    """Dev and test, at --threshold and at per-label thresholds tuned on dev: what metrics.json holds."""
    found = report.results(labels, args.threshold, (splits["dev"]["y"], state.best["dev_probs"].numpy()),
                           (splits["test"]["y"], test_probs))
    run = run_identity(args, state, env.world)
    dataset = files.read_dataset(Path(args.labels).parent)
    paper = files.paper_taxonomy(labels)
    return {
        "labels": labels, "taxonomy": args.taxonomy, "threshold": args.threshold,
        "thresholds": found.pop("thresholds"), "best_epoch": state.best["epoch"], **found,
        "paper_macro_f1": files.PAPER_MACRO_F1.get(paper), "paper_f1": files.PAPER_F1 if paper == "original" else None,
        "dataset": {"name": dataset["name"], "sources": {s["path"]: s["sha256"] for s in dataset["sources"]}}
        if dataset else None,
        "history": state.history, "loss_curve": state.loss_curve, "precision": env.precision,
        "world_size": env.world, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(env.device) / 2**20 if args.cuda else None,
        "args": vars(args), "loss": loss_info, "command": command, "hardware": hardware(env),
        "total_time_s": time.time() - started, "data_sha256": {
            path: state.data_sha256[role] for role, path in identity.data_paths(vars(args)).items()},
        "reading": encoder.trained_reading(state.model, state.reading).settings(), "lengths": state.lengths,
        # what the run is (identity.py), and the experiment it is a seed of: what compare_runs.py groups runs by
        "identity": run, "experiment": identity.key(identity.experiment(run)),
        "settings": identity.experiment(run)["options"],
    }


def run_identity(args: argparse.Namespace, state: TrainingState, world: int) -> dict:
    """identity.training_run, with the reading resolved (--max-length auto's length, --long-texts auto's choice)."""
    reading = state.reading
    options = vars(args) | {"max_length": reading.max_length, "long_texts": reading.long_texts}
    return identity.training_run(options, state.data_sha256, world,
                                 losses.unused_options(options) | reading.unused_options())


def save_everything(args: argparse.Namespace, env: Env, metrics: dict, test: dict, test_probs: np.ndarray, model,
                    tokenizer, save_fp: Path, ckpt_path: Path) -> None:
    """The table; metrics.json, predictions.tsv, the plot, and last the model folder (each written atomically);
    the checkpoint removed; the summary."""
    labels = metrics["labels"]
    print(report.metrics_table(metrics["test"], metrics["test_tuned"], labels))
    t_save = time.time()
    if args.metrics_file:
        files.write_json(args.metrics_file, metrics, "the metrics")
    if args.predictions_file:
        files.atomic_write(args.predictions_file, files.predictions_text(test["ids"], test["y"], test_probs,
                                                                         args.threshold, labels), "the predictions")
    plot_file = args.plot_file or (str(Path(args.metrics_file).with_suffix(".png")) if args.metrics_file else None)
    if plot_file:
        report.plot(Path(plot_file), metrics["test"], labels, metrics["loss_curve"], args.loss)
    averages = {k: {a: metrics[k][a] for a in ("macro", "micro", "weighted", "exact_match_accuracy")}
                for k in ("dev", "test", "dev_tuned", "test_tuned")}
    settings = {"labels": labels, "taxonomy": args.taxonomy, "threshold": args.threshold,
                "thresholds": metrics["thresholds"], **metrics["reading"], "args": vars(args),
                "metrics": averages | {"best_epoch": metrics["best_epoch"]}}
    encoder.save(model, tokenizer, save_fp, settings, report.model_card(metrics, save_fp))
    ckpt_path.unlink(missing_ok=True)
    env.log(f"time to save: {time.time() - t_save:.1f} s -> {save_fp}")
    env.log(f"peak RSS {metrics['peak_rss_mb']:.0f} MiB"
            + (f", peak GPU memory {metrics['peak_gpu_mb']:.0f} MiB" if metrics["peak_gpu_mb"] else ""))
    env.log(f"total time {metrics['total_time_s']:.1f} s; best epoch {metrics['best_epoch']} "
            f"(dev macro F1 {metrics['history'][metrics['best_epoch'] - 1]['dev_macro_f1']:.4f})")
    env.log(f"Test macro F1 {metrics['test']['macro']['f1']:.4f} at threshold {args.threshold} "
            f"(dev-tuned thresholds: {metrics['test_tuned']['macro']['f1']:.4f}"
            + (f"; paper {metrics['paper_macro_f1']:.2f})" if metrics["paper_macro_f1"] else ")"))


if __name__ == "__main__":
    sys.exit(main())
