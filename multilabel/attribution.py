"""Why a text got a label: a number for each word of the text (multilabel/words.py's words), for a label, by one of
two methods, through the model exactly as it scores the text (encoder.py: the same windows, the same pooling):

    Reading.of(tokenizer, text, reading)    the text's windows as encoder.encode makes them, and which word each
                                            token of each window belongs to (its offsets; special tokens, and
                                            tokens between words such as emoji and punctuation, belong to none)
    window_logits(...), text_scores(base, ...)  the text scored once, as predict.py scores it (which labels to
                                            explain, and occlusion's starting point)
    occlusion(model, read, base, ...)       leave one word out: the label's score (sigmoid, pooled over the
                                            windows) with the word's tokens hidden from attention in every window
                                            that holds it, subtracted from the score with it. One batched forward
                                            pass of the windows a word touches, for every word
    integrated_gradients(model, read, ...)  Integrated Gradients (Sundararajan et al. 2017; captum's
                                            LayerIntegratedGradients) over the input embeddings, from a baseline
                                            of the text's tokens as [PAD] (or [MASK]), special tokens kept, to the
                                            text, of the label's pooled logit; a word's number is the sum over its
                                            tokens, in every window that holds them. Its convergence delta
                                            (attributions' sum minus the logit's change) is returned with it

A positive number: the word raises the label's score (occlusion: in score units; IG: in logit units).

    line(head, ...), read_lines(path)       explain.py's output, a JSON line for each text and label: written by
                                            explain.py, read back by findings_page.py
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multilabel import encoder, lengths, words
from multilabel.files import UserError

KEYS = ("id", "line", "label", "score", "method", "words", "delta", "error")


@dataclass
class Reading:
    """One text as the model reads it."""
    windows: list[list[int]]          # token ids, special tokens included: encoder.encode's windows of this text
    word_at: list[list[int]]          # per window, per position: the index of the word its token is part of, or -1
    spans: list[tuple[int, int]]      # the words' (start, end) in the text as given
    capped: int                       # tokens left unread (more than --max-windows windows)
    special: tuple[int, int]          # the special tokens before and after a window's text ([CLS], [SEP])

    @classmethod
    def of(cls, tokenizer, text: str, reading: lengths.Reading) -> Reading:
        before, after = encoder.special_tokens(tokenizer)
        room = reading.max_length - len(before) - len(after)
        cap = reading.tokens_needed(room) * lengths.CHARS_PER_TOKEN
        head = encoder.what_is_read(text, cap, reading.long_texts)
        with encoder.quiet_transformers():
            got = tokenizer(head, add_special_tokens=False, truncation=False, return_offsets_mapping=True)
        ids, offsets = got["input_ids"], [to_text(s, len(text), cap, head) for s, _ in got["offset_mapping"]]
        spans = list(words.spans(text))
        starts = [s for s, _ in spans]

        def word_of(at: int) -> int:
            k = bisect.bisect_right(starts, at) - 1
            return k if k >= 0 and at < spans[k][1] else -1

        token_word = [word_of(at) for at in offsets]
        positions = encoder.read(list(range(len(ids))), room, reading)  # the same windows encoder.encode cuts
        windows = [before + [ids[p] for p in part] + after for part in positions]
        word_at = [[-1] * len(before) + [token_word[p] for p in part] + [-1] * len(after) for part in positions]
        capped = encoder.unread(tokenizer, text, ids, cap, reading.tokens_needed(room)) \
            if reading.long_texts == "windows" else 0
        return cls(windows, word_at, spans, capped, (len(before), len(after)))


def to_text(at: int, length: int, cap: int, head: str) -> int:
    """An offset into what was read (head-tail: the first cap characters, a space, the last cap) as one into the
    text."""
    if len(head) == length or at <= cap:
        return at
    return length - cap + (at - cap - 1)


def padded(windows: list[list[int]], pad_token: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = encoder.pad(windows, list(range(len(windows))), pad_token)
    return torch.from_numpy(ids), torch.from_numpy(mask)


@torch.no_grad()
@torch.no_grad()
def window_logits(model, read: Reading, pad_token: int, batch_size: int,  # noqa: ANN001
                  device: torch.device) -> torch.Tensor:
    """The text's windows' logits (windows x labels), as the model scores it."""
    return logits_of(model, *padded(read.windows, pad_token), batch_size, device)


def text_scores(base: torch.Tensor, pooling) -> np.ndarray:  # noqa: ANN001
    """Every label's score of the text: its windows' logits pooled, through the sigmoid."""
    return torch.sigmoid(encoder.pool(base, torch.zeros(len(base), dtype=torch.long), 1, pooling))[0].numpy()


@torch.no_grad()
def occlusion(model, read: Reading, base: torch.Tensor, labels: list[int], pooling, pad_token: int,  # noqa: ANN001
              batch_size: int, device: torch.device) -> np.ndarray:
    """Words x labels: the label's score minus its score without the word (base: window_logits, computed once)."""
    ids, mask = padded(read.windows, pad_token)
    n = len(read.windows)
    where = np.array([row + [-1] * (ids.shape[1] - len(row)) for row in read.word_at])  # windows x positions
    full = torch.from_numpy(text_scores(base, pooling))[labels]
    variants = [(k, j) for k in range(len(read.spans)) for j in range(n) if (where[j] == k).any()]
    if not variants:
        return np.zeros((len(read.spans), len(labels)), dtype=np.float32)
    hidden = torch.stack([mask[j] * torch.from_numpy(where[j] != k) for k, j in variants])
    changed = logits_of(model, ids[[j for _, j in variants]], hidden, batch_size, device)
    per_word = base.repeat(len(read.spans), 1, 1)  # words x windows x labels
    for (k, j), row in zip(variants, changed, strict=True):
        per_word[k, j] = row
    owner = torch.arange(len(read.spans)).repeat_interleave(n)
    without = torch.sigmoid(encoder.pool(per_word.reshape(-1, base.shape[1]), owner, len(read.spans), pooling))
    return (full[None, :] - without[:, labels]).numpy()


def logits_of(model, ids: torch.Tensor, mask: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    out = [model(input_ids=ids[i:i + batch_size].to(device), attention_mask=mask[i:i + batch_size].to(device))
           .logits.float().cpu() for i in range(0, len(ids), batch_size)]
    return torch.cat(out)


def integrated_gradients(model, read: Reading, labels: list[int], pooling, pad_token: int,  # noqa: ANN001
                         baseline_token: int, steps: int, batch_size: int,
                         device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(words x labels of attributions, the convergence delta of each label)."""
    from captum.attr import LayerIntegratedGradients

    ids, mask = padded(read.windows, pad_token)
    n, width = ids.shape
    where = np.array([row + [-1] * (width - len(row)) for row in read.word_at])
    text_tokens = torch.from_numpy(where >= 0) | (mask.bool() & ~special_positions(read, width))
    baseline = torch.where(text_tokens, torch.full_like(ids, baseline_token), ids)

    def forward(flat: torch.Tensor, flat_mask: torch.Tensor) -> torch.Tensor:
        b = flat.shape[0]  # captum's steps, each the text's windows side by side
        logits = model(input_ids=flat.view(b * n, width), attention_mask=flat_mask.view(b * n, width)).logits
        return encoder.pool(logits.float(), torch.arange(b, device=flat.device).repeat_interleave(n), b, pooling)

    ig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    flat, flat_mask, flat_base = (t.reshape(1, -1).to(device) for t in (ids, mask, baseline))
    with torch.no_grad():
        logits, base_logits = forward(flat, flat_mask)[0], forward(flat_base, flat_mask)[0]
    out = np.zeros((len(read.spans), len(labels)), dtype=np.float32)
    deltas = np.zeros(len(labels), dtype=np.float64)
    for c, label in enumerate(labels):
        # (captum's own delta assumes the layer has a row per input; here it has one per window: taken by hand)
        attr = ig.attribute(flat, baselines=flat_base, target=label, additional_forward_args=(flat_mask,),
                            n_steps=steps, internal_batch_size=max(1, batch_size // n))
        per_token = attr.sum(-1).view(n, width).detach().double().cpu().numpy()
        np.add.at(out[:, c], where[where >= 0], per_token[where >= 0])
        deltas[c] = per_token.sum() - float(logits[label] - base_logits[label])
    return out, deltas


def special_positions(read: Reading, width: int) -> torch.Tensor:
    """Windows x positions: the special tokens of each window, kept in the baseline."""
    out = torch.zeros((len(read.windows), width), dtype=torch.bool)
    before, after = read.special
    for j, window in enumerate(read.windows):
        out[j, :before] = True
        out[j, len(window) - after:len(window)] = True
    return out


def line(row_id: str, row_line: int, label: str | None = None, score: float | None = None, method: str | None = None,
         numbered: list | None = None, delta: float | None = None, error: str = "") -> str:
    """One line of explain.py's output: a label's explanation of a text (numbered: [word, start, end, number] for
    each word), or, with no label, a text with none to explain (error: why, or empty)."""
    obj = {"id": row_id, "line": row_line, "label": label, "score": score, "method": method,
           "words": numbered or [], "delta": delta, "error": error}
    return json.dumps(obj, ensure_ascii=False) + "\n"


def read_lines(path: Path) -> Iterator[dict]:
    """explain.py's output, a line at a time; a line that is not one it writes is a UserError naming it."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for n, text in enumerate(f, 1):
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict) or tuple(obj) != KEYS:
                    raise ValueError("not the keys explain.py writes")
            except ValueError as e:
                raise UserError(f"{path}:{n}: not a line explain.py writes ({e})") from None
            yield obj
