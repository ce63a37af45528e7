"""The README's main command, `make run`, offline: data mirror + local model folder, the whole pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_offline_runs_the_whole_pipeline(goemotions_dir, tiny_bert, tmp_path):
    venv = Path(sys.executable).parent.parent  # the environment running the tests
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        ["make", "-s", "run", f"VENV={venv}", f"DATA_DIR={tmp_path / 'data'}", f"DATA_MIRROR={goemotions_dir}",
         f"MODEL={tiny_bert}", f"OUT_DIR={out}", "EPOCHS=1", "TRAIN_ARGS=--max-train-examples 64 --batch-size 16"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "6 files verified (sha256): 6 downloaded" in r.stdout  # download_data.py from the mirror
    assert "train: 43410 samples" in r.stdout  # data_analysis.py
    assert "Test macro F1" in r.stdout  # bert_model.py
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["args"]["epochs"] == 1 and metrics["args"]["transformer_model"] == str(tiny_bert)
    assert sum(m["support"] for m in metrics["test"]["per_label"].values()) >= 5427  # the whole test split
    assert (out / "model" / "model.safetensors").exists() and (out / "predictions.tsv").exists()
    assert (out / "metrics.png").exists()
