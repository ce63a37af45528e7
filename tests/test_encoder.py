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


def test_the_int8_export_records_its_quantization_and_an_older_one_is_redone(folder: Path) -> None:
    """7-bit weights (reduce_range): the U8S8 kernels of a CPU without VNNI cannot saturate, so the scores are the
    same on every CPU; an export made with other settings (an older predict.py's) is made again, not reused."""
    import torch

    from multilabel import encoder

    model, _, _ = encoder.load(folder, torch.device("cpu"))
    path, made = encoder.export_int8(model, folder)
    marker = folder / encoder.ONNX_DIR / "quantization.json"
    assert made and json.loads(marker.read_text()) == encoder.INT8_QUANTIZATION == {"per_channel": True,
                                                                                      "reduce_range": True}
    assert encoder.export_int8(model, folder) == (path, False)  # reused
    marker.unlink()  # as an export of before this setting left it
    assert encoder.export_int8(model, folder) == (path, True)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_a_folder_saved_elsewhere_is_scored_with_its_config_labels(folder: Path) -> None:
    """Without goemotions.json (a classifier not trained here): the config's label names, threshold 0.3."""
    (folder / "goemotions.json").unlink()
    r = run_script("predict.py", folder, "I love this", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    config = json.loads((folder / "config.json").read_text())
    assert list(got["scores"]) == [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    assert got["predicted"] == [n for n, v in got["scores"].items() if v > 0.3]
