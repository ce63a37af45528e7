"""tune.py's search space (sweeps/space.txt: one `OPTION KIND VALUES` a line), over bert_model.py's options as its own
parser declares them: which options a search may vary and with what type (its Range, its choices, a switch), and
which belong to a loss (the losses table). Nothing here copies bert_model.py's options: an option added to its parser
tomorrow is searchable with its declared type and range. The parser is passed in (tune.py imports bert_model.py, and
so torch, only when it reads a space).

    table = space.searchable(bert_model.build_parser(), space.loss_of_options())
    params = space.read_space(path, table)
    options = space.suggest(trial, params, fixed, table)        # a trial's bert_model.py options
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from multilabel import files
from multilabel.files import UserError
from multilabel.options import Range

# Never searched: what a run reads and writes and the options of no effect (files.NO_RESULT), the seed (--confirm's
# seeds), the threshold the objective is measured at, the labels (--taxonomy), the machine and its numerics (--cuda,
# --precision, --compile, --eval-batch-size), and the size of the data (--max-train-examples).
NOT_SEARCHED = files.NO_RESULT | {"seed", "threshold", "taxonomy", "cuda", "precision", "compile", "eval_batch_size",
                                 "max_train_examples"}
SET_BY_TUNE = {"metrics-file", "predictions-file", "plot-file", "resume", "dev-every"}  # each trial's, from tune.py
SWITCH = ("yes", "no")  # a switch's values in the space file (--init-bias-from-prior yes: given; no: not)
KINDS = {"float": 2, "log": 2, "int": 2, "choice": None}  # how many values each kind takes (None: one or more)


@dataclass(frozen=True)
class Option:
    """A searchable option of bert_model.py: its name (without --), the type of its values (int, float; str: one of
    its choices or any word; bool: a switch), its parser action (which checks a value), the loss it belongs to."""
    name: str
    type: type
    action: argparse.Action
    loss: str | None = None


@dataclass(frozen=True)
class Param:
    option: str
    kind: str
    values: tuple
    line: int


def loss_of_options() -> dict[str, str]:
    """Each loss's own options (bert_model.py's --pos-weight-cap, --focal-gamma, ...) and the loss they belong to."""
    from multilabel.losses import LOSSES  # imports torch

    return {dest.replace("_", "-"): name for name, loss in LOSSES.items() for dest in loss.params}


def searchable(parser: argparse.ArgumentParser, loss_of: dict[str, str]) -> dict[str, Option]:
    """bert_model.py's options a search may vary (all that can change a result but NOT_SEARCHED, and lists)."""
    table = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in NOT_SEARCHED or action.dest == "help":
            continue
        switch = isinstance(action, argparse._StoreTrueAction)
        if action.nargs is not None and not switch:  # a list of values (--add-tokens): not a search's
            continue
        kind = bool if switch else str if action.choices or action.type is None else \
            action.type.kind if isinstance(action.type, Range) else action.type
        name = action.option_strings[-1].removeprefix("--")
        table[name] = Option(name, kind, action, loss_of.get(name))
    return table


def read_space(path: Path, table: dict[str, Option]) -> list[Param]:
    """The search space file, checked: one `OPTION KIND VALUES` a line; errors say FILE:LINE."""
    space: dict[str, Param] = {}
    for n, line in enumerate(files.read_lines(path, "a search space file"), 1):
        words = line.split("#", 1)[0].split()
        if words:
            param = space_line(words, f"{path}:{n}", n, table)
            if param.option in space:
                raise UserError(f"{path}:{n}: {param.option} is already on line {space[param.option].line}")
            space[param.option] = param
    if not space:
        raise UserError(f"{path}: no options to search (one 'OPTION KIND VALUES' a line)")
    return list(space.values())


def space_line(words: list[str], where: str, n: int, table: dict[str, Option]) -> Param:
    option, kind, values = words[0].removeprefix("--"), words[1] if len(words) > 1 else "", words[2:]
    if option not in table:
        raise UserError(f"{where}: unknown option '{option}' (a search varies: {' '.join(table)})")
    if kind not in KINDS:
        raise UserError(f"{where}: {option}: unknown kind '{kind}' (float, log, int or choice)")
    if KINDS[kind] is not None and len(values) != KINDS[kind]:
        raise UserError(f"{where}: {option} {kind} takes LOW HIGH, got {len(values)} value(s)")
    if kind == "choice":
        return Param(option, kind, choice_values(table[option], values, where), n)
    of = table[option].type
    if of not in (int, float):
        raise UserError(f"{where}: {option} takes a value from a list: use choice")
    if (kind == "int") != (of is int):
        raise UserError(f"{where}: {option} is " + ("a whole number: use int" if of is int
                                                     else "not a whole number: use float or log"))
    low, high = (number(v, of, option, where) for v in values)
    if low >= high or (kind == "log" and low <= 0):
        raise UserError(f"{where}: {option}: empty range {values[0]} to {values[1]}"
                        + (" (log needs LOW > 0)" if kind == "log" and low < high else " (LOW must be < HIGH)"))
    for v in values:
        check_value(table[option], v, where)
    return Param(option, kind, (low, high), n)


def choice_values(option: Option, values: list[str], where: str) -> tuple:
    if not values:
        raise UserError(f"{where}: {option.name}: empty choice (choice V1 V2 ...)")
    typed = tuple(choice_value(option, v, where) for v in values)
    if len(set(typed)) < len(typed):
        raise UserError(f"{where}: {option.name}: a choice is given twice")
    return typed


def choice_value(option: Option, text: str, where: str) -> str | int | float:
    if option.type is bool:
        if text not in SWITCH:
            raise UserError(f"{where}: {option.name}: '{text}' is not one of {', '.join(SWITCH)}")
        return text
    value = text if option.type is str else number(text, option.type, option.name, where)
    check_value(option, text, where)
    return value


def number(text: str, kind: type, option: str, where: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise UserError(f"{where}: {option}: '{text}' is not a {'whole number' if kind is int else 'number'}") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {option}: '{text}' is not a finite number")
    return value


def check_value(option: Option, text: str, where: str) -> None:
    """Would bert_model.py take --OPTION TEXT? Its own parser says: the option's type (and range), its choices."""
    action = option.action
    try:
        value = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise UserError(f"{where}: {option.name}: {e} (bert_model.py --{option.name})") from None
    if action.choices and value not in action.choices:
        raise UserError(f"{where}: {option.name}: '{text}' is not one of {', '.join(action.choices)}")


def fixed_options(fixed: list[str]) -> dict[str, str | None]:
    """The fixed bert_model.py options by name (without --), each with its value (None for a switch)."""
    found: dict[str, str | None] = {}
    for i, word in enumerate(fixed):
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            nxt = fixed[i + 1] if i + 1 < len(fixed) else None
            found[name] = value or (nxt if nxt is not None and not nxt.startswith("--") else None)
    return found


def check_fixed(fixed: list[str], space: list[Param], space_path: Path) -> None:
    given = fixed_options(fixed)
    for name in given:
        if name in SET_BY_TUNE:
            raise UserError(f"fixed option --{name}: tune.py sets it for every trial")
    for param in space:
        if param.option in given:
            raise UserError(f"{space_path}:{param.line}: --{param.option} is also fixed after --: one or the other")


def suggest(trial, space: list[Param], fixed: list[str], table: dict[str, Option]) -> list[str]:  # noqa: ANN001
    """The trial's bert_model.py options from the space (a loss's options only where that loss is chosen)."""
    chosen: dict[str, object] = {}
    for param in space:
        if param.kind == "choice":
            chosen[param.option] = trial.suggest_categorical(param.option, list(param.values))
    loss = chosen.get("loss", fixed_options(fixed).get("loss", "bce"))
    out: list[str] = []
    for param in space:
        if (table[param.option].loss or loss) != loss:
            continue
        if param.kind in ("float", "log"):
            chosen[param.option] = trial.suggest_float(param.option, *param.values, log=param.kind == "log")
        elif param.kind == "int":
            chosen[param.option] = trial.suggest_int(param.option, *param.values)
        out += option_words(table[param.option], chosen[param.option])
    return out


def option_words(option: Option, value: object) -> list[str]:
    if option.type is bool:
        return [f"--{option.name}"] if value == "yes" else []
    return [f"--{option.name}", str(value)]
