"""multilabel/identity.py: what a run is, the one definition of "the same experiment", and the line that names how two
runs differ."""

from __future__ import annotations

import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT))

import bert_model  # noqa: E402
from multilabel import identity, losses  # noqa: E402


def options(*argv: str) -> dict:
    return vars(bert_model.parse_args(["t.tsv", "d.tsv", "e.tsv", "l.txt", "out", *argv]))


def run_of(*argv: str, data: dict | None = None, world: int = 1) -> dict:
    args = options(*argv)
    return identity.training_run(args, data or {"train": "a" * 64}, world, losses.unused_options(args))


def test_a_run_is_its_result_options_data_and_world() -> None:
    base = run_of()
    assert "seed" in base["options"] and "save_fp" not in base["options"] and "log_every" not in base["options"]
    assert "focal_gamma" not in base["options"]  # another loss's parameter changes nothing in a BCE run
    assert run_of("--focal-gamma", "3") == base and run_of("--log-every", "7", "--resume") == base
    assert identity.first_difference(base, run_of("--learning-rate", "1e-4")) == \
        "--learning-rate 5e-05, this run has 0.0001"
    assert identity.first_difference(base, run_of("--loss", "focal")).startswith("--loss bce, this run has focal")
    assert identity.first_difference(base, run_of(data={"train": "b" * 64})) == \
        f"other train data: SHA-256 {'a' * 12}..., this run's {'b' * 12}..."
    assert identity.first_difference(base, run_of(world=2)) == "world size 1, this run has 2"


def test_seeds_of_one_experiment_differ_only_in_the_seed() -> None:
    one, two = run_of("--seed", "1"), run_of("--seed", "2")
    assert one != two and identity.experiment(one) == identity.experiment(two)
    assert identity.key(identity.experiment(one)) == identity.key(identity.experiment(two))
    assert identity.key(identity.experiment(run_of("--seed", "1", data={"train": "c" * 64}))) != \
        identity.key(identity.experiment(one))


def test_checksums_by_path_are_read_by_role() -> None:
    """A checkpoint or metrics.json from before data was kept by role: the same files in the same order."""
    args = options("--taxonomy", "ekman")
    by_path = {"t.tsv": "1", "d.tsv": "2", "e.tsv": "3", "l.txt": "4", "ekman_mapping.json": "5"}
    assert identity.by_role(args, by_path) == {"train": "1", "dev": "2", "test": "3", "labels": "4", "taxonomy": "5"}
