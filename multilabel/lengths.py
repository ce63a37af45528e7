"""How long the texts are, in a model's tokens, and how a text longer than --max-length is read: one owner for the
length report (data_analysis.py, prepare_data.py, bert_model.py's log and metrics.json) and for `--max-length auto`.
No torch here: data_analysis.py and prepare_data.py load only a tokenizer.

A text over the length is read one of three ways (bert_model.py --long-texts, saved with the model for predict.py):
    truncate    its first max_length tokens (the paper; the default)
    head-tail   its first quarter and last three quarters of max_length (Sun et al. 2019, "How to fine-tune BERT
                for text classification?")
    windows     all of it, in windows of max_length tokens overlapping by --stride, at most --max-windows; the
                text's logits are pooled over its windows (--pooling), in training and in prediction alike

--pooling learned: a sharpness b per label, learned with the model (--window-labels pooled) and saved with it, pools a
text's windows' logits x as (1/b) log mean exp(b x): max as b -> +inf (a label evidenced in one passage), the mean at
b = 0, min as b -> -inf (a label that means no such passage anywhere: any one window that has it says no).
--pooling tuned (the default; windows taught --window-labels each): the same pooling, each label's b and threshold
chosen on dev's texts of more than one window after every epoch (encoder.tune_pooling), the threshold saved as an
offset to such a text's pooled logit (PerLabel), so that the model's scores decide at its --threshold as any model's
do; a text of one window keeps its window's scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multilabel import files
from multilabel.files import UserError

LONG_TEXTS = ("truncate", "head-tail", "windows")
POOLINGS = ("tuned", "max", "logsumexp", "mean", "learned")
WINDOW_LABELS = ("pooled", "each")
REPORTED = (50, 128, 256, 512)  # the share of texts over each of these lengths
MIN_LENGTH = 8  # the fewest tokens a text (a window) is read in: --max-length
GOEMOTIONS_LENGTH = 50  # the paper's max_seq_length: what `auto` means for GoEmotions' own data
CHARS_PER_TOKEN = 100  # no token is longer (WordPiece reads a longer word as [UNK]): a text is cut at
#                        this many characters a token needed before tokenizing, so a 5 MB broken row costs little
#                        (read in windows, it is tokenized once more, whole, to count the tokens left unread)


FAR = 1000.0  # encoder.soft_pool: a sharpness this far from 0 pools by the max (+) or the min (-) exactly
# --pooling tuned: the sharpnesses tried per label on dev, from the max to the min; on a tie the first (the max) stays
TUNED = (FAR, 10.0, 3.0, 1.0, 0.0, -1.0, -3.0, -10.0, -FAR)


@dataclass(frozen=True)
class PerLabel:
    """--pooling tuned, as encoder.pool takes it: each label's sharpness b (soft_pool) and the offset added to its
    pooled logit in a text of more than one window (the logit of --threshold less that of the threshold tuned on
    dev's such texts)."""
    sharpness: tuple[float, ...]
    offset: tuple[float, ...]

    def describe(self, labels: list[str], threshold: float) -> str:
        """Each label's pooling and the threshold it decides at: `neutral: min, threshold 0.18; ...`."""
        names = {FAR: "max", 0.0: "mean", -FAR: "min"}
        at = 1 / (1 + np.exp(-(logit(threshold) - np.asarray(self.offset))))
        return "; ".join(f"{n}: {names.get(b, f'sharpness {b:g}')}, threshold {t:.2f}"
                         for n, b, t in zip(labels, self.sharpness, at, strict=True))


def logit(p: float | np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Reading:
    """How each text is turned into the windows the model reads."""
    max_length: int               # tokens a window, special tokens included
    long_texts: str = "truncate"
    stride: int | None = None     # windows: tokens two consecutive windows share (default: a quarter of a window)
    max_windows: int = 8          # windows: at most this many a text; the rest of a longer one is not read
    pooling: str = "max"
    sharpness: tuple[float, ...] | None = None  # --pooling learned or tuned: each label's b, once trained
    offset: tuple[float, ...] | None = None     # --pooling tuned: each label's offset, once trained

    @classmethod
    def of(cls, settings: dict) -> Reading:
        """From a model's goemotions.json or bert_model.py's options (a model saved before these: truncation)."""
        sharpness, offset = settings.get("sharpness"), settings.get("offset")
        return cls(int(settings["max_length"]), settings.get("long_texts", "truncate"), settings.get("stride"),
                   int(settings.get("max_windows", 8)), settings.get("pooling", "max"),
                   tuple(map(float, sharpness)) if sharpness is not None else None,
                   tuple(map(float, offset)) if offset is not None else None)

    def settings(self) -> dict:
        learned = {"sharpness": list(self.sharpness)} if self.sharpness is not None else {}
        tuned = {"offset": list(self.offset)} if self.offset is not None else {}
        return {"max_length": self.max_length, "long_texts": self.long_texts, "stride": self.stride,
                "max_windows": self.max_windows, "pooling": self.pooling, **learned, **tuned}

    @property
    def pooled_by(self) -> str | tuple[float, ...] | PerLabel:
        """What encoder.score pools with: a pooling's name, the learned sharpness of each label, or the tuned
        sharpness and offset of each label."""
        if self.pooling in ("learned", "tuned") and self.long_texts == "windows":
            if self.sharpness is None or (self.pooling == "tuned" and self.offset is None):
                raise UserError(f"--pooling {self.pooling}: no pooling saved with the model (goemotions.json)")
            return self.sharpness if self.pooling == "learned" else PerLabel(self.sharpness, self.offset)
        return self.pooling

    def unused_options(self) -> set[str]:
        """bert_model.py's options of windows, where texts are not read in windows (they change nothing there)."""
        return set() if self.long_texts == "windows" else {"stride", "max_windows", "pooling", "window_labels"}

    def overlap(self, room: int) -> int:
        return min(self.stride if self.stride is not None else room // 4, room - 1)

    def tokens_needed(self, room: int) -> int:
        """The most tokens of a text that can be read: the rest is cut before tokenizing."""
        if self.long_texts == "windows":
            return room + (self.max_windows - 1) * (room - self.overlap(room))
        return room

    def describe(self) -> str:
        if self.long_texts == "windows":
            stride = f"{self.stride} tokens" if self.stride is not None else "a quarter of a window"
            pooling = {"learned": "a sharpness learned per label",
                       "tuned": "a pooling and threshold per label, tuned on dev"}.get(self.pooling, self.pooling)
            return (f"{self.max_length} tokens a window, overlapping by {stride}, at most {self.max_windows} windows a "
                    f"text, logits pooled by {pooling}")
        if self.long_texts == "head-tail":
            return f"{self.max_length} tokens: a longer text's first quarter and last three quarters of them"
        return f"{self.max_length} tokens: a longer text is cut"


def check(reading: Reading, model_limit: int | None, window_labels: str = "pooled", compiled: bool = False) -> None:
    """bert_model.py's reading options, against each other and the model."""
    if reading.max_length < MIN_LENGTH:  # auto with a model that reads fewer (--max-length N is checked by its parser)
        raise UserError(f"--max-length {reading.max_length}: at least {MIN_LENGTH} tokens")
    if model_limit and reading.max_length > model_limit:
        raise UserError(f"--max-length {reading.max_length}: the model reads at most {model_limit} tokens; use "
                        f"--long-texts windows to read longer texts whole")
    if reading.stride is not None and not 0 <= reading.stride < reading.max_length // 2:
        raise UserError(f"--stride {reading.stride}: from 0 to less than half of --max-length ({reading.max_length})")
    if compiled and reading.long_texts == "windows":
        raise UserError("--compile needs batches of fixed shapes: not with --long-texts windows (which auto chooses "
                        "for data that is not GoEmotions': give --long-texts truncate)")
    if reading.long_texts == "windows" and reading.pooling == "learned" and window_labels != "pooled":
        raise UserError("--pooling learned is learned from the loss on each document's pooled logits: give "
                        "--window-labels pooled")
    if reading.long_texts == "windows" and reading.pooling == "tuned" and window_labels != "each":
        raise UserError("--pooling tuned (the default) is chosen on dev from the scores of windows taught one by one "
                        "(--window-labels each); with --window-labels pooled give --pooling max, mean, logsumexp or "
                        "learned")


def model_limit(tokenizer, config=None) -> int | None:
    """The most tokens the model reads: its position embeddings (RoBERTa's 514 less its 2 offsets), or what its
    tokenizer says."""
    limits = [n for n in (getattr(tokenizer, "model_max_length", None),
                          getattr(config, "max_position_embeddings", None)) if isinstance(n, int) and n < 100_000]
    if config is not None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limits = [n - 2 if n == config.max_position_embeddings else n for n in limits]
    return min(limits) if limits else None


def load_tokenizer(name: str):
    """A model's tokenizer, from its folder or the Hugging Face cache (never downloaded here)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    files.check_no_model_code(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        where = "not a loadable model folder" if Path(name).is_dir() else "not in the Hugging Face cache"
        raise UserError(f"tokenizer {name}: {where} ({str(e).strip().splitlines()[0]}); give a model folder, or "
                        f"run `python download_transformer_model.py --transformer-model {name}` first") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def at_hand(name: str) -> bool:
    """A model folder, or a name whose tokenizer is in the Hugging Face cache: known without importing transformers
    (seconds, with torch)."""
    if Path(name).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "tokenizer_config.json"), str)


def report(tokenizer, splits: dict[str, list[str]]) -> dict[str, dict]:
    """The length summary of each split's texts."""
    return {name: summary(token_counts(tokenizer, texts)) for name, texts in splits.items()}


def token_counts(tokenizer, texts: list[str], cap: int = 1_000_000) -> list[int]:
    """Each text's length in the tokenizer's tokens, special tokens included (a text read whole; over `cap`
    characters, counted on its first `cap`)."""
    if not texts:
        return []
    special = tokenizer.num_special_tokens_to_add()
    pieces = tokenizer([t[:cap] for t in texts], add_special_tokens=False, truncation=False)["input_ids"]
    return [len(p) + special for p in pieces]


def summary(counts: list[int]) -> dict:
    """median, p95, p99, max and the share over 50 / 128 / 256 / 512 tokens."""
    if not counts:
        return {"texts": 0}
    a = np.asarray(counts)
    return {"texts": len(a), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "max": int(a.max()),
            **{f"over_{n}": float((a > n).mean()) for n in REPORTED}}


def summary_line(name: str, s: dict) -> str:
    if not s.get("texts"):
        return f"{name}: no texts"
    over = ", ".join(f"{100 * s[f'over_{n}']:.1f}% over {n}" for n in REPORTED)
    return (f"{name}: {s['texts']} texts, tokens median {s['median']:.0f}, p95 {s['p95']:.0f}, p99 {s['p99']:.0f}, "
            f"max {s['max']}; {over}")


def auto_length(train_counts: list[int], limit: int | None) -> int:
    """--max-length auto: the training split's 99th percentile rounded up to a multiple of 8, at most the model's
    limit (texts longer than that are read as --long-texts says)."""
    p99 = float(np.percentile(train_counts, 99)) if train_counts else 8
    length = max(MIN_LENGTH, math.ceil(p99 / 8) * 8)
    return min(length, limit) if limit else length


def cut_report(counts: list[int], reading: Reading, room_special: int) -> dict:
    """How many texts were not read whole, and the share of all their tokens left unread."""
    room = reading.max_length - room_special
    needed = reading.tokens_needed(room)
    content = [max(c - room_special, 0) for c in counts]
    lost = [max(c - needed, 0) for c in content]
    return {"texts": len(counts), "cut": sum(1 for x in lost if x), "tokens": sum(content), "tokens_lost": sum(lost)}


def cut_line(name: str, r: dict) -> str:
    share = r["tokens_lost"] / r["tokens"] if r["tokens"] else 0.0
    return f"{name}: {r['cut']} of {r['texts']} texts not read whole, {100 * share:.1f}% of the tokens unread"
