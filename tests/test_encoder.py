"""multilabel/encoder.py: a model folder that cannot be scored with is one line, never garbage with exit 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import run_script


def one_line(r, *needles: str) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("predict.py: error: ") and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(trained, tmp_path: Path) -> Path:
    """A copy of the shared trained tiny model, to damage."""
    _, run, _ = trained
    return Path(shutil.copytree(run / "model", tmp_path / "model"))


def test_a_folder_without_its_tokenizer_is_refused(folder: Path) -> None:
    """Without tokenizer.json transformers builds a tokenizer of special tokens only: every text [UNK]."""
    (folder / "tokenizer.json").unlink()
    one_line(run_script("predict.py", folder, "I love this"), "the tokenizer has no vocabulary")


def test_a_truncated_weights_file_is_one_line(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    one_line(run_script("predict.py", folder, "I love this"), f"{folder}: cannot load the model")


def test_broken_settings_are_one_line(folder: Path) -> None:
    settings = folder / "goemotions.json"
    info = json.loads(settings.read_text())
    settings.write_text(settings.read_text()[:100])
    one_line(run_script("predict.py", folder, "x"), "goemotions.json:", "not valid JSON")
    settings.write_text(json.dumps({**info, "labels": info["labels"][:-1],
                                    "thresholds": {n: info["thresholds"][n] for n in info["labels"][:-1]}}))
    one_line(run_script("predict.py", folder, "x"), "names 27 labels, the model scores 28")
    tuned = dict(info["thresholds"])
    tuned.pop("grief")
    settings.write_text(json.dumps({**info, "thresholds": tuned}))
    one_line(run_script("predict.py", folder, "--threshold", "tuned", "x"), "'thresholds' has no number for every "
             "label (none for grief)")


def test_int8_on_a_read_only_folder_is_one_line(folder: Path, small_disk) -> None:
    disk = small_disk(64)
    shutil.copytree(folder, disk / "model")
    small_disk(64, disk, read_only=True)
    one_line(run_script("predict.py", disk / "model", "--precision", "int8", "x"), "cannot write the INT8 model")
