"""The saved-model convention, in one place: load an encoder (to fine-tune, or one saved here to score with),
tokenize, batch by length, score under autocast; save a model folder; export it to INT8 for ONNX Runtime.

A model folder that bert_model.py saves (SAVE_FP) is a Hugging Face folder (config.json with the label names,
model.safetensors, the tokenizer's files) with two files of ours: goemotions.json (files.MODEL_SETTINGS: labels,
threshold, the per-label thresholds tuned on dev, max_length, the run's options and metrics) and README.md, the
model card. transformers.pipeline("text-classification") loads it as it is; predict.py scores with it exactly as
training's own dev and test evaluation did, through score() below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multilabel import decide, files, lengths, outputs, report
from multilabel.files import UserError

ONNX_DIR = "onnx-int8"  # --precision int8: the exported, quantized model, inside the model folder
# Weights per channel (test macro F1 0.5120 against fp32's 0.5124; per tensor 0.5067: bench/RESULTS.md, issue 16), in
# 7 bits (reduce_range): ONNX Runtime's U8S8 kernels on x86 CPUs without VNNI add pairs of u8 x s8 products in int16
# (VPMADDUBSW), which 8-bit weights can saturate; with 7 bits no pair can, so the scores are the same on every CPU.
INT8_QUANTIZATION = {"per_channel": True, "reduce_range": True}
POOLING_MODULE = "window_pooling"  # --pooling learned: the sharpness, a part of the model while it trains
NEAR_MEAN = 1e-6  # soft_pool: a sharpness this close to 0 pools by the mean's limit
# AdamW's peak rate for the sharpness (in 1/logit; no weight decay), on the run's warmup and decay: its own, since the
# sharpness must travel a few units in a few hundred steps, whatever rate suits the encoder and its head
POOLING_LEARNING_RATE = 0.03


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or load reports from transformers (a line of ours says what matters), restored after."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


# ------------------------------------------------------------------------------------------ loading


def load_pretrained(name: str, labels: list[str]) -> tuple:
    """An encoder (hub name or folder) with a classification head for `labels`, to fine-tune: (model, tokenizer,
    names of the parameters loading initialised afresh, mismatched keys). A head of another size (a model
    fine-tuned on other labels) is replaced; one of the same size is kept (continued fine-tuning). The weights
    are fp32 whatever dtype the folder was saved in: autocast does the rest."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    head = {"num_labels": len(labels), "problem_type": "multi_label_classification",
            "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)},
            "ignore_mismatched_sizes": True, "output_loading_info": True, "dtype": torch.float32}
    files.check_no_model_code(name)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
            model, info = AutoModelForSequenceClassification.from_pretrained(name, trust_remote_code=False, **head)
    except (OSError, ValueError) as e:
        if Path(name).is_dir():
            raise UserError(f"{name}: not a loadable model folder ({str(e).splitlines()[0]})") from None
        raise UserError(f"model {name!r} is neither a local folder nor in the Hugging Face cache "
                        f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}); run "
                        f"`python download_transformer_model.py --transformer-model {name}` first") from None
    check_vocabulary(tokenizer, name)
    fresh = set(info["missing_keys"]) | {key for key, *_ in info["mismatched_keys"]}
    new = [n for n, _ in model.named_parameters() if n in fresh]
    return model, tokenizer, new, info["mismatched_keys"]


def describe_loading(name: str, new: list[str], mismatched: list) -> str:
    """One line for the log, instead of transformers' table of MISSING keys."""
    if mismatched:
        shapes = ", ".join(f"{k} {tuple(old)} -> {tuple(now)}" for k, old, now in sorted(mismatched))
        return f"model {name}: replaced its classification head of another size ({shapes}); new: {', '.join(new)}"
    if new:
        return f"model {name}: new classification head, randomly initialised: {', '.join(new)}"
    return f"model {name}: its classification head has the right size and is kept (continued fine-tuning)"


def check_vocabulary(tokenizer, where: str | Path) -> None:
    """transformers builds a tokenizer with only the special tokens where a folder lacks tokenizer.json and the
    vocabulary files: every text would become [UNK]."""
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    if not set(tokenizer.get_vocab().values()) - special:
        raise UserError(f"{where}: the tokenizer has no vocabulary (no tokenizer.json or vocabulary file), so every "
                        f"text would be [UNK]; copy the tokenizer's files from the base model into it")


def load(model_dir: str | Path, device: torch.device) -> tuple:
    """A saved model folder, to score with: (model in eval mode on `device`, tokenizer, settings). The settings
    are goemotions.json's (labels, threshold, thresholds, max_length), or for a folder saved elsewhere its config's
    labels, threshold 0.3 and 512 tokens."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model folder (no config.json); give the SAVE_FP of bert_model.py")
    files.check_no_model_code(model_dir)
    settings = files.read_model_settings(model_dir)
    try:
        with quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=False)
            model = model.to(device).eval()
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    except Exception as e:  # a truncated safetensors file, a config of an unknown architecture, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{model_dir}: cannot load the model: {first}") from None
    check_vocabulary(tokenizer, model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if settings is None:
        settings = {"labels": labels}
    elif len(settings["labels"]) != model.config.num_labels:
        raise UserError(f"{model_dir}: {files.MODEL_SETTINGS} names {len(settings['labels'])} labels, the model "
                        f"scores {model.config.num_labels}: not the folder bert_model.py saved")
    return model, tokenizer, {"threshold": 0.3, "thresholds": None, "max_length": 512, **settings}


def fingerprint(model_dir: Path) -> str:
    """SHA-256 over a model folder's files that decide its scores (weights, config, tokenizer, our settings): a folder
    replaced or retrained under the same path gets another fingerprint."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name != "README.md"):
        h.update(f"{path.name}\0{files.sha256(path)}\0".encode())
    return h.hexdigest()


def add_tokens(model, tokenizer, tokens: list[str]) -> str:
    """Make each of `tokens` one token of its own, matched in the text as written (before lower-casing), with a new
    embedding row (transformers starts it at the mean of the others). Saved with the tokenizer, so predict.py and
    transformers.pipeline split text the same way. Returns a line for the log."""
    from transformers import AddedToken

    before = {t: tokenizer.tokenize(t) for t in tokens}
    added = tokenizer.add_tokens([AddedToken(t, normalized=False) for t in tokens])
    if added:
        model.resize_token_embeddings(len(tokenizer))
    was = "; ".join(f"{t} was {' '.join(pieces)}" for t, pieces in before.items())
    return f"--add-tokens: {added} new token(s), vocabulary now {len(tokenizer)} ({was})"


def save(model, tokenizer, save_fp: Path, settings: dict, card: str) -> None:
    """The model folder, written beside SAVE_FP and renamed into place; a model saved there before goes last."""
    needed = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    with files.atomic_folder(save_fp, "the model", needed, "; the previous checkpoint and model are kept") as tmp, \
            quiet_transformers():
        # --pooling learned's sharpness goes into goemotions.json (settings), not among the encoder's weights
        weights = {k: v for k, v in model.state_dict().items() if not k.startswith(POOLING_MODULE + ".")}
        model.save_pretrained(tmp, safe_serialization=True, state_dict=weights)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        written = sorted([p.name for p in tmp.iterdir()] + [files.MODEL_SETTINGS])
        (tmp / files.MODEL_SETTINGS).write_text(json.dumps({**settings, "files": written}, indent=1),
                                                encoding="utf-8")


def saved_model_folder(folder: Path) -> str:
    """'' for a folder save() made (or an empty one), which a new run may replace; else what it is instead. The
    files it holds are those save() listed in goemotions.json, and the INT8 export; a folder saved before the list
    was kept is known by goemotions.json alone."""
    def listed(path: Path) -> list[str] | None:
        try:
            return json.loads((path / files.MODEL_SETTINGS).read_text(encoding="utf-8")).get("files")
        except (OSError, ValueError, AttributeError):
            return []
    return outputs.folder_listing(files.MODEL_SETTINGS, listed, also=[ONNX_DIR])(folder)


# ------------------------------------------------------------------------------------------ scoring


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@dataclass
class Encoded:
    """Texts as the model reads them: the windows (token ids, special tokens included) of every text, a text's
    windows consecutive; which text each window belongs to; and, read in windows, how many tokens each text left
    unread."""
    windows: list[list[int]]
    owner: np.ndarray         # window -> text
    capped: list[int]         # windows: each text's tokens beyond --max-windows windows, unread (exact); 0 in the
    #                           other readings, which cut a long text by design and do not count what they cut

    @property
    def texts(self) -> int:
        return len(self.capped)

    def single(self) -> bool:
        """Every text is one window: scores are the windows' own."""
        return len(self.windows) == self.texts

    def windows_as_texts(self) -> Encoded:
        """Each window a text of its own (--window-labels each: taught all of its document's labels)."""
        n = len(self.windows)
        return Encoded(self.windows, np.arange(n), [0] * n)


def encode(tokenizer, texts: list[str], reading: lengths.Reading | int) -> Encoded:
    """Each text tokenized whole and read as `reading` says (a plain int: truncation at that many tokens). A text
    within max_length is one window, the same token ids as the tokenizer's own truncation would give; padding comes
    later, per batch."""
    if isinstance(reading, int):
        reading = lengths.Reading(reading)
    before, after = special_tokens(tokenizer)
    special = len(before) + len(after)
    room = reading.max_length - special
    needed = reading.tokens_needed(room)
    cap = needed * lengths.CHARS_PER_TOKEN
    heads = [what_is_read(t, cap, reading.long_texts) for t in texts]
    with quiet_transformers():  # "Token indices sequence length is longer than ...": we know
        pieces = tokenizer(heads, add_special_tokens=False, truncation=False)["input_ids"] if texts else []
    windows, owner, capped = [], [], []
    for i, (text, ids) in enumerate(zip(texts, pieces, strict=True)):
        parts = read(ids, room, reading)
        windows += [before + part + after for part in parts]
        owner += [i] * len(parts)
        capped.append(unread(tokenizer, text, ids, cap, needed) if reading.long_texts == "windows" else 0)
    return Encoded(windows, np.asarray(owner, dtype=np.int64), capped)


def what_is_read(text: str, cap: int, long_texts: str) -> str:
    """The characters of a text that can reach a window (no token is longer than CHARS_PER_TOKEN): its first `cap`,
    or with head-tail its first and last `cap`."""
    if long_texts == "head-tail":
        return text if len(text) <= 2 * cap else text[:cap] + " " + text[-cap:]
    return text[:cap]


def unread(tokenizer, text: str, ids: list[int], cap: int, needed: int) -> int:
    """The tokens of a text read in windows that no window reaches. `ids` are the tokens of its first `cap`
    characters: a longer text is tokenized again, whole, to count them (about a second a megabyte, and only for a
    text too long to be read whole anyway)."""
    if len(text) > cap:
        with quiet_transformers():
            ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
    return max(len(ids) - needed, 0)


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS] and [SEP] for BERT)."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    whole = tokenizer("a")["input_ids"]
    at = next(i for i in range(len(whole)) if whole[i:i + len(inner)] == inner)
    return whole[:at], whole[at + len(inner):]


def read(ids: list[int], room: int, reading: lengths.Reading) -> list[list[int]]:
    """The parts of one text's tokens that the model reads (special tokens not yet added)."""
    if len(ids) <= room or reading.long_texts == "truncate":
        return [ids[:room]]
    if reading.long_texts == "head-tail":
        head = room // 4
        return [ids[:head] + ids[len(ids) - (room - head):]]
    step = room - reading.overlap(room)
    count = min(1 + math.ceil((len(ids) - room) / step), reading.max_windows)
    return [ids[k * step:k * step + room] for k in range(count)]


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Evaluation order: sorted by length, so that each batch pads to almost nothing."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad(encoded: list[list[int]], idx: list[int], pad_token: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch padded to its longest text: (input ids, attention mask)."""
    width = max(len(encoded[i]) for i in idx)
    ids = np.full((len(idx), width), pad_token, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        ids[row, :len(encoded[i])] = encoded[i]
        mask[row, :len(encoded[i])] = 1
    return ids, mask


@torch.no_grad()
def window_logits(model, windows: list[list[int]], batch_size: int, pad_token: int,
                  device: torch.device | None = None, amp_dtype: torch.dtype | None = None,
                  share: tuple[int, int] = (0, 1), sigmoid: bool = False) -> np.ndarray:
    """Logits (windows x labels, float32; with sigmoid, their scores) in the windows' order, in batches sorted by
    length, whatever text each window belongs to. model: a PyTorch model (put in eval mode for this, and back
    after) or an ONNX Runtime session. share (k, n): score only every n-th batch from the k-th (one process of n
    under torchrun); the other rows stay NaN."""
    device = device or torch.device("cpu")
    onnx = hasattr(model, "run")
    was_training = not onnx and model.training
    if not onnx:
        model.eval()
    out = np.full((len(windows), num_labels(model)), np.nan, dtype=np.float32)
    for idx in sorted_batches([len(x) for x in windows], batch_size)[share[0]::share[1]]:
        ids, mask = pad(windows, idx, pad_token)
        if onnx:
            logits = torch.from_numpy(model.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        else:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(input_ids=torch.from_numpy(ids).to(device, non_blocking=True),
                               attention_mask=torch.from_numpy(mask).to(device, non_blocking=True)).logits
        out[idx] = (torch.sigmoid(logits.float()) if sigmoid else logits.float()).cpu().numpy()
    if was_training:
        model.train()
    return out


def pool(logits: torch.Tensor, owner: torch.Tensor, texts: int,
         pooling: str | torch.Tensor | tuple[float, ...] | lengths.PerLabel) -> torch.Tensor:
    """Each text's logits from its windows' (texts x labels): max, mean, log-sum-exp (a smooth max, at most
    log(windows) above it), with a sharpness per label (--pooling learned: a tensor, or the saved tuple) their
    soft_pool, or (--pooling tuned) soft_pool plus each label's offset. A text of one window keeps that window's
    logits exactly (no offset: its scores are a window's). Differentiable: training takes the loss on these (and
    learns the sharpness)."""
    if len(owner) == texts:
        return logits
    if isinstance(pooling, lengths.PerLabel):  # the offsets, to texts of more than one window only
        pooled = soft_pool(logits, owner, texts, torch.as_tensor(pooling.sharpness, device=logits.device))
        several = (torch.bincount(owner, minlength=texts) > 1).to(pooled.dtype)[:, None]
        return pooled + several * torch.as_tensor(pooling.offset, dtype=pooled.dtype, device=pooled.device)
    if not isinstance(pooling, str):
        return soft_pool(logits, owner, texts, torch.as_tensor(pooling, device=logits.device))
    index = owner[:, None].expand_as(logits)
    top = torch.full((texts, logits.shape[1]), -torch.inf, dtype=logits.dtype, device=logits.device)
    top = top.scatter_reduce(0, index, logits, "amax", include_self=True)
    if pooling == "max":
        return top
    if pooling == "mean":
        zeros = torch.zeros_like(top)
        return zeros.scatter_reduce(0, index, logits, "mean", include_self=False)
    if pooling != "logsumexp":
        raise ValueError(f"pool: no pooling {pooling!r} (--pooling tuned and learned pool with what was learned)")
    shift = top.detach()
    total = torch.zeros_like(top).index_add(0, owner, torch.exp(logits - shift[owner]))
    return shift + torch.log(total)


def soft_pool(logits: torch.Tensor, owner: torch.Tensor, texts: int, sharpness: torch.Tensor) -> torch.Tensor:
    """(1/b) log mean_w exp(b x_w) per text and label, b the label's sharpness: max as b -> +inf (exactly from
    b = lengths.FAR), the mean at b = 0, min as b -> -inf (from -FAR). In float64, shifted by the windows' max where
    b > 0 and their min where b < 0 (no exp overflows, and a text of one window keeps its logit exactly); for
    |b| < NEAR_MEAN, the limit's first terms (the mean plus b/2 times the windows' variance), so that b can cross 0
    with a gradient."""
    x = logits.double()
    b = sharpness.double()[None, :].expand(texts, -1)
    index = owner[:, None].expand_as(x)
    zeros = x.new_zeros((texts, x.shape[1]))
    count = torch.bincount(owner, minlength=texts).to(x.dtype)[:, None]
    top = torch.full_like(zeros, -torch.inf).scatter_reduce(0, index, x, "amax")
    low = torch.full_like(zeros, torch.inf).scatter_reduce(0, index, x, "amin")
    shift = torch.where(b > 0, top, low).detach()
    near = b.abs() < NEAR_MEAN
    safe = torch.where(near, torch.full_like(b, NEAR_MEAN), b)
    exact = shift + torch.log(zeros.index_add(0, owner, torch.exp(safe[owner] * (x - shift[owner]))) / count) / safe
    mean = zeros.index_add(0, owner, x) / count
    spread = zeros.index_add(0, owner, (x - mean[owner]) ** 2) / count
    pooled = torch.where(near, mean + b / 2 * spread, exact)
    return torch.where(b >= lengths.FAR, top, torch.where(b <= -lengths.FAR, low, pooled)).to(logits.dtype)


def tune_pooling(logits: np.ndarray, encoded: Encoded, gold: np.ndarray, threshold: float) -> lengths.PerLabel:
    """--pooling tuned, from dev's window logits: per label, the sharpness of lengths.TUNED and the threshold
    (report.tune_thresholds) with the best F1 on dev's texts of more than one window, the threshold kept as an offset
    to those texts' pooled logit (logit(threshold) - logit(tuned)), so that the scores decide at `threshold`. On a
    tie the earlier of lengths.TUNED (nearer the max) stays; a threshold moves only where it beats `threshold` on
    dev. A text of one window keeps its window's scores; where dev has no longer text, nothing is tuned."""
    labels = logits.shape[1]
    sharpness, offset, best = np.full(labels, lengths.FAR), np.zeros(labels), np.full(labels, -1.0)
    several = np.bincount(encoded.owner, minlength=encoded.texts) > 1
    if not several.any():
        return lengths.PerLabel(tuple(sharpness), tuple(offset))
    x, owner, gold = torch.from_numpy(logits), torch.from_numpy(encoded.owner), gold[several]
    for b in lengths.TUNED:
        with torch.no_grad():
            probs = torch.sigmoid(pool(x, owner, encoded.texts, (b,) * labels)).numpy()[several]
        tuned = report.tune_thresholds(gold, probs, threshold)
        f1 = decide.f1(*decide.counts(gold, decide.decide(probs, tuned)))
        better = f1 > best + 1e-12
        best[better], sharpness[better] = f1[better], b
        offset[better] = (lengths.logit(threshold) - lengths.logit(tuned))[better]
    return lengths.PerLabel(tuple(map(float, sharpness)), tuple(map(float, offset)))


class WindowPooling(torch.nn.Module):
    """--pooling learned: each label's sharpness b (soft_pool), starting at 0 (the mean). A part of the model while it
    trains (so in its state_dict: checkpoints and the best epoch's weights hold it); saved in goemotions.json."""

    def __init__(self, labels: int) -> None:
        super().__init__()
        self.sharpness = torch.nn.Parameter(torch.zeros(labels))


def attach_pooling(model, reading: lengths.Reading) -> None:
    """--pooling learned with windows: a WindowPooling added to the model, before its optimizer is made (it learns
    at POOLING_LEARNING_RATE)."""
    if reading.long_texts == "windows" and reading.pooling == "learned":
        model.add_module(POOLING_MODULE, WindowPooling(model.config.num_labels).to(model.device))


def pooling_of(model, pooling: str) -> str | torch.Tensor:
    """What pool() takes: the model's own learned sharpness (the parameter itself: training moves it), or the name."""
    module = getattr(model, POOLING_MODULE, None)
    return module.sharpness if module is not None and pooling == "learned" else pooling


def trained_reading(model, reading: lengths.Reading) -> lengths.Reading:
    """The reading with what the model learned (--pooling learned's sharpness), to save with it."""
    module = getattr(model, POOLING_MODULE, None)
    if module is None:
        return reading
    return dataclasses.replace(reading, sharpness=tuple(module.sharpness.detach().cpu().tolist()))


def score(model, encoded: Encoded | list[list[int]], batch_size: int, pad_token: int,
          device: torch.device | None = None, amp_dtype: torch.dtype | None = None,
          pooling: str | torch.Tensor | tuple[float, ...] | lengths.PerLabel = "max",
          share: tuple[int, int] = (0, 1), gather: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Sigmoid scores (texts x labels, float32) in the texts' order: every window scored (window_logits), pooled
    per text. (A plain list: one window a text.) With share, only this process's share of the windows is scored
    (the rest NaN), and gather puts every process's shares together before the windows are pooled."""
    windows = encoded.windows if isinstance(encoded, Encoded) else encoded
    single = not isinstance(encoded, Encoded) or encoded.single()  # the scores of the windows themselves
    out = window_logits(model, windows, batch_size, pad_token, device, amp_dtype, share, sigmoid=single)
    out = gather(out) if gather else out
    return out if single else probabilities(out, encoded, pooling)


def probabilities(logits: np.ndarray, encoded: Encoded,
                  pooling: str | torch.Tensor | tuple[float, ...] | lengths.PerLabel) -> np.ndarray:
    if isinstance(pooling, torch.Tensor):
        pooling = pooling.detach().cpu()
    with torch.no_grad():
        pooled = pool(torch.from_numpy(logits), torch.from_numpy(encoded.owner), encoded.texts, pooling)
    return torch.sigmoid(pooled).numpy()


def num_labels(model) -> int:
    if hasattr(model, "run"):
        return int(model.get_outputs()[0].shape[1])
    return int(model.config.num_labels)


# ------------------------------------------------------------------------------------------ INT8


def export_int8(model, model_dir: Path, quantization: dict | None = None,
                folder: Path | None = None) -> tuple[Path, bool]:
    """MODEL/onnx-int8/model.onnx: the model exported to ONNX (torch.onnx) with its weights quantized to INT8 by ONNX
    Runtime (dynamic quantization, INT8_QUANTIZATION unless told otherwise), written beside the PyTorch files and
    renamed into place; done again where an earlier export used other settings. (path, whether it was made now)."""
    import onnx  # noqa: F401  (torch.onnx.export needs it)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantization = quantization or INT8_QUANTIZATION
    folder = folder or model_dir / ONNX_DIR
    if (folder / "model.onnx").exists() and (folder / "quantization.json").exists() and \
            json.loads((folder / "quantization.json").read_text(encoding="utf-8")) == quantization:
        return folder / "model.onnx", False
    ids = torch.ones((2, 8), dtype=torch.long)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process first
    hint = "; export it once where the model folder is writable (a copy of it), or use --precision fp32 or bf16"
    with files.atomic_folder(folder, "the INT8 model", hint=hint) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it records as dynamic
        torch.onnx.export(model.cpu(), (ids, torch.ones_like(ids)), tmp / "fp32.onnx", dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                        "attention_mask": {0: "batch", 1: "length"}, "logits": {0: "batch"}})
        quantize_dynamic(tmp / "fp32.onnx", tmp / "model.onnx", weight_type=QuantType.QInt8, **quantization)
        (tmp / "fp32.onnx").unlink()
        (tmp / "quantization.json").write_text(json.dumps(quantization), encoding="utf-8")
    logging.getLogger().setLevel(quiet)
    return folder / "model.onnx", True


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
