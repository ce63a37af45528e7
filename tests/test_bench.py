"""bench/: smoke runs of the benchmark scripts on tiny models and real rows, so that they do not rot.

The benchmarks themselves are scripts (their numbers are in bench/RESULTS.md); these tests only check that
every step runs, that the contenders see the same examples, and that the outputs hang together.
"""

from __future__ import annotations

import json
import os
import subprocess

from conftest import ROOT, run_script

import bert_model


def test_gpu_check_tiny_runs_every_step_on_cpu(goemotions_dir, minilm, tmp_path):
    """bench/gpu_check.sh --tiny: environment, one epoch, all four throughput contenders, the precision checks."""
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--tiny", str(goemotions_dir)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    for step in ("== 1. environment", "== 2. one epoch", "== 3. bench/throughput.py", "== 4. bench/cuda_checks.py",
                 "== gpu_check done"):
        assert step in out
    assert "RESULT epoch:" in out and "for 4 steps" in out  # 64 examples at bert_model.py's batch of 16
    passes = [line for line in out.splitlines() if line.startswith("PASS ")]
    assert len(passes) == 5 and "FAIL " not in out, out[-3000:]
    assert (tmp_path / "gpu_check.log").read_text().count("PASS ") == 5

    metrics = json.loads((tmp_path / "epoch_metrics.json").read_text())
    assert metrics["history"][0]["steps"] == 4 and metrics["precision"] == "bf16"
    report = json.loads((tmp_path / "throughput.json").read_text())
    (model,) = report["models"].values()
    trials = model["trials"]
    assert sorted(trials) == ["a", "b", "c", "d"]
    # the same 32 real examples for everyone: the same count of real tokens; padding differs by batching
    assert len({t["real_tokens"] for ts in trials.values() for t in ts}) == 1
    assert all(t["examples"] == 32 and t["padded_tokens"] >= t["real_tokens"] for ts in trials.values() for t in ts)
    assert trials["d"][0]["padded_tokens"] <= trials["a"][0]["padded_tokens"]
    assert trials["c"][0]["padded_tokens"] <= trials["b"][0]["padded_tokens"]
    assert trials["d"][0]["precision"] == "bf16"
    assert "| d: bert_model.py (its defaults) |" in out and "**" in out  # the table with the ratios


def test_predict_speed_smoke_agrees_with_the_pipeline(tiny_bert, small_data, tmp_path):
    model = tmp_path / "model"
    argv = [str(small_data / f) for f in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")]
    assert bert_model.main([*argv, str(model), "--transformer-model", str(tiny_bert), "--epochs", "1",
                            "--checkpoint-every", "0"]) == 0
    r = run_script("bench/predict_speed.py", model, "--input", small_data / "test.tsv", "--rounds", "1",
                   "--json", tmp_path / "speed.json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "speed.json").read_text())["summary"]
    assert set(summary) == {"predict", "pipeline", "predict-bf16"}
    # predict.py in fp32 gives the pipeline's scores; bf16 rounds them a little
    assert summary["predict"]["max_abs_diff"] < 1e-4 and summary["predict"]["same_decisions"] == 1.0
    assert summary["predict-bf16"]["max_abs_diff"] < 0.05
    assert "| predict |" in r.stdout and "x pipeline" in r.stdout


def test_bench_scripts_refuse_bad_input_in_one_line(tmp_path):
    r = run_script("bench/throughput.py", "--data", tmp_path / "nowhere")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no train.tsv" in r.stderr
    r = run_script("bench/predict_speed.py", tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "goemotions.json" in r.stderr
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option" in r.stderr
