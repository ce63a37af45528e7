"""The training losses: one table, LOSSES (name -> function and its parameters), from which bert_model.py's --loss
and each loss's own options are made. Each function takes logits and 0/1 targets (rows x labels) and returns the
loss of every entry; the training step averages them over labels and rows. bce is the paper's; the others are what
users try against label imbalance (docs/training.md#losses-against-imbalance---loss-and---add-tokens).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.functional import binary_cross_entropy_with_logits, logsigmoid

from multilabel.options import NON_NEGATIVE, POSITIVE, Range

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pos_weights(train_y: np.ndarray, rule: str, cap: float) -> torch.Tensor:
    """weighted-bce's pos_weight per label from the training split: negatives / positives (inverse, as in torch's
    BCEWithLogitsLoss docs) or its square root (sqrt-inverse), capped; a label with no positive gets the cap."""
    positives = train_y.sum(0).astype(np.float64)
    ratio = np.divide(len(train_y) - positives, positives, out=np.full_like(positives, np.inf), where=positives > 0)
    weights = np.sqrt(ratio) if rule == "sqrt-inverse" else ratio
    return torch.tensor(np.minimum(weights, cap), dtype=torch.float32)


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float, alpha: float) -> torch.Tensor:
    """Lin et al. 2017, per label: alpha_t (1 - p_t)^gamma BCE, p_t the probability of the true class;
    alpha < 0: no alpha_t. gamma 0 and no alpha is BCE."""
    bce = binary_cross_entropy_with_logits(logits, y, reduction="none")
    loss = (1 - torch.exp(-bce)) ** gamma * bce
    return loss if alpha < 0 else (alpha * y + (1 - alpha) * (1 - y)) * loss


def asymmetric_loss(logits: torch.Tensor, y: torch.Tensor, gamma_neg: float, gamma_pos: float,
                    clip: float) -> torch.Tensor:
    """Ridnik et al., ICCV 2021 (ASL): positives -(1 - p)^gamma_pos log p; negatives -p_m^gamma_neg log(1 - p_m) with
    the shifted probability p_m = max(p - clip, 0), so very easy negatives weigh nothing. Both gammas 0 and clip 0
    is BCE."""
    p = torch.sigmoid(logits)
    positive = (1 - p) ** gamma_pos * -logsigmoid(logits)
    if clip > 0:
        p_m = (p - clip).clamp(min=0)
        negative = p_m ** gamma_neg * -torch.log((1 - p_m).clamp(min=1e-8))
    else:
        negative = p ** gamma_neg * -logsigmoid(-logits)
    return y * positive + (1 - y) * negative


def bce(p: dict, train_y: np.ndarray, device: torch.device) -> tuple[LossFn, dict]:
    return (lambda logits, y: binary_cross_entropy_with_logits(logits, y, reduction="none")), {}


def weighted_bce(p: dict, train_y: np.ndarray, device: torch.device) -> tuple[LossFn, dict]:
    w = pos_weights(train_y, p["pos_weight"], p["pos_weight_cap"])
    weights = w.to(device)
    fn = lambda logits, y: binary_cross_entropy_with_logits(logits, y, reduction="none", pos_weight=weights)  # noqa: E731
    return fn, {"rule": p["pos_weight"], "cap": p["pos_weight_cap"], "pos_weight": w.tolist()}


def focal(p: dict, train_y: np.ndarray, device: torch.device) -> tuple[LossFn, dict]:
    return (lambda logits, y: focal_loss(logits, y, p["focal_gamma"], p["focal_alpha"])), {
        "gamma": p["focal_gamma"], "alpha": p["focal_alpha"]}


def asl(p: dict, train_y: np.ndarray, device: torch.device) -> tuple[LossFn, dict]:
    return (lambda logits, y: asymmetric_loss(logits, y, p["asl_gamma_neg"], p["asl_gamma_pos"], p["asl_clip"])), {
        "gamma_neg": p["asl_gamma_neg"], "gamma_pos": p["asl_gamma_pos"], "clip": p["asl_clip"]}


@dataclass
class Param:
    default: float | str
    help: str
    type: Range = NON_NEGATIVE  # the values allowed (a number)
    choices: tuple[str, ...] | None = None  # or these words


@dataclass
class Loss:
    make: Callable[[dict, np.ndarray, torch.device], tuple[LossFn, dict]]
    help: str
    params: dict[str, Param]


LOSSES = {
    "bce": Loss(bce, "the paper's: binary cross-entropy", {}),
    "weighted-bce": Loss(weighted_bce, "BCE with pos_weight per label (--pos-weight)", {
        "pos_weight": Param("sqrt-inverse", "pos_weight = negatives/positives of each label in the training split, "
                            "or its square root", choices=("inverse", "sqrt-inverse")),
        "pos_weight_cap": Param(30.0, "no pos_weight above this", POSITIVE)}),
    "focal": Loss(focal, "Lin et al. 2017", {
        "focal_gamma": Param(2.0, "the focusing exponent (the paper's 2)"),
        "focal_alpha": Param(0.25, "the weight of positives, 1 - it of negatives (the paper's 0.25); negative: none",
                             Range(float, high=1))}),
    "asl": Loss(asl, "asymmetric loss, Ridnik et al. 2021", {
        "asl_gamma_neg": Param(4.0, "negatives' focusing exponent (paper: 4)"),
        "asl_gamma_pos": Param(0.0, "positives' focusing exponent (paper: 0)"),
        "asl_clip": Param(0.05, "probability margin m; a negative scored below it adds no loss (paper: 0.05)",
                          Range(float, low=0, high=1, high_open=True))}),
}


def add_options(p: argparse.ArgumentParser) -> None:
    """--loss, and every loss's own options, from the table."""
    p.add_argument("--loss", choices=list(LOSSES), default="bce", help="; ".join(
        f"{name}: {loss.help}" for name, loss in LOSSES.items()) + " (docs/training.md#losses-against-imbalance)")
    for name, loss in LOSSES.items():
        for dest, param in loss.params.items():
            kind = {"choices": param.choices} if param.choices else {"type": param.type}
            p.add_argument(f"--{dest.replace('_', '-')}", default=param.default, help=f"{name}: {param.help}", **kind)


def unused_options(args: dict) -> set[str]:
    """The options of the losses not chosen: they change nothing in this run."""
    return {dest for name, loss in LOSSES.items() if name != args.get("loss", "bce") for dest in loss.params}


def make(args: argparse.Namespace, train_y: np.ndarray, labels: list[str],
         device: torch.device) -> tuple[LossFn, dict]:
    """The --loss chosen, as a function of (logits, targets), and what it is, for the log and metrics.json."""
    loss = LOSSES[args.loss]
    fn, info = loss.make({dest: getattr(args, dest) for dest in loss.params}, train_y, device)
    if "pos_weight" in info:
        info["pos_weight"] = dict(zip(labels, info["pos_weight"], strict=True))
    return fn, {"name": args.loss, **info}


def describe(info: dict) -> str:
    """One line for the log and the model card."""
    if info["name"] == "weighted-bce":
        w = info["pos_weight"]
        low, high = min(w, key=w.get), max(w, key=w.get)
        return (f"loss: weighted-bce, pos_weight {info['rule']} capped at {info['cap']:g}: {w[low]:.2f} ({low}) "
                f"to {w[high]:.2f} ({high})")
    params = ", ".join(f"{k} {v:g}" for k, v in info.items() if k != "name")
    return f"loss: {info['name']}" + (f" ({params})" if params else " (binary cross-entropy)")
