"""What a run is, and which runs are seeds of one experiment: declared once, here (no torch).

A training run is
    options     every bert_model.py option that can change its result (files.NO_RESULT says which cannot), less
                those that change nothing in it (a loss's parameters beside another loss, the window options where
                texts are not read in windows), with the reading resolved where it is known (--max-length auto's
                length, --long-texts auto's choice)
    data        the SHA-256 of each file it reads its data from, by role (train, dev, test, labels, dataset,
                taxonomy): the paths may differ from machine to machine, the content may not
    world_size  the number of processes (the global batch is --batch-size times it)

Runs whose identities are equal but for options.seed are seeds of one experiment. bert_model.py --resume continues a
checkpoint only of its own identity; metrics.json records it; compare_runs.py averages only runs of one experiment;
tune.py's --confirm reuses a finished run only of the identity it would make; predict.py resumes and merges only
parts of one run (its own identity: the model and the input by content, and the options that shape the output),
compared by the same first_difference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from multilabel import files

ROLES = ("train", "dev", "test", "labels", "dataset", "taxonomy")


def data_paths(args: dict) -> dict[str, str]:
    """The files a run reads its data from, by role: the splits, the labels, dataset.json where the data folder has
    one, and the taxonomy's mapping where one is chosen."""
    folder = Path(args["labels"]).parent
    found = {role: str(args[role]) for role in ROLES[:4]}
    if (folder / files.DATASET_FILE).exists():
        found["dataset"] = str(folder / files.DATASET_FILE)
    if args.get("taxonomy", "original") != "original":
        found["taxonomy"] = str(folder / files.TAXONOMY_FILES[args["taxonomy"]])
    return found


def data_checksums(args: dict) -> dict[str, str]:
    """SHA-256 of each data file, by role."""
    try:
        return {role: files.sha256(path) for role, path in data_paths(args).items()}
    except FileNotFoundError as e:  # as files.open_text says it
        raise files.UserError(f"{e.filename}: file not found") from None
    except OSError as e:
        raise files.UserError(f"{e.filename}: cannot read: {e.strerror}") from None


def by_role(args: dict, sha_by_path: dict[str, str]) -> dict[str, str]:
    """A record of data checksums by path (metrics.json's data_sha256, a checkpoint's) by role, as data_paths lists
    them for the run's own options."""
    return dict(zip(data_paths(args), sha_by_path.values(), strict=False))


def training_run(options: dict, data: dict[str, str], world_size: int, unused: set[str] = frozenset()) -> dict:
    """A training run's identity (the module's docstring): its result options less `unused`, its data, its world."""
    kept = {k: v for k, v in files.result_options(options).items() if k not in unused}
    return {"options": kept, "data": dict(data), "world_size": int(world_size)}


def of_record(args: dict, data: dict[str, str], world_size: int, defaults: dict,
              unused: Callable[[dict], set[str]]) -> dict:
    """The identity of a run from what it recorded (a checkpoint, a metrics.json): its options over `defaults` (an
    option added since it ran was at its default then), its data by role (by path in older records), its world size.
    `unused`: the options that change nothing in a run of these options (losses.unused_options)."""
    args = {**defaults, **args}
    data = data if set(data) <= set(ROLES) else by_role(args, data)
    return training_run(args, data, world_size, unused(args))


def experiment(identity: dict) -> dict:
    """What seeds of one experiment share: the identity but the seed."""
    return {**identity, "options": {k: v for k, v in identity["options"].items() if k != "seed"}}


def key(identity: dict) -> str:
    """A short stable name of an identity (or an experiment)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shown(value: object) -> str:
    """A value as a person reads it in a line: a checksum by its first 12 hex digits."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "..."
    return "(none)" if value is None else " ".join(map(str, value)) if isinstance(value, list) else str(value)


def first_difference(was: dict, now: dict) -> str:
    """The first way two identities (or two records of settings: a stopped prediction's, a shard's) differ, said for
    a person as "what it was, this run has what": '' where they are the same. An option is named as its flag."""
    for part in dict.fromkeys([*was, *now]):
        a, b = was.get(part), now.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            name = next(k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k))
            if part == "options":
                return f"--{name.replace('_', '-')} {shown(a.get(name))}, this run has {shown(b.get(name))}"
            if part == "data":
                return (f"other {name} data: SHA-256 {str(a.get(name))[:12]}..., this run's {str(b.get(name))[:12]}..."
                        if a.get(name) and b.get(name) else
                        f"{name} data {'read' if a.get(name) else 'not read'}, this run "
                        f"{'reads' if b.get(name) else 'does not read'} it")
            return f"{part} {name} {shown(a.get(name))}, this run has {shown(b.get(name))}"
        return f"{part.replace('_', ' ')} {shown(a)}, this run has {shown(b)}"
    return ""
