"""bench/: smoke runs of the benchmark scripts on tiny models and real rows, so that they do not rot.

The benchmarks themselves are scripts (their numbers are in bench/RESULTS.md); these tests only check that
every step runs, that the contenders see the same examples, and that the outputs hang together.
"""

from __future__ import annotations

import json
import os
import subprocess

from helpers import ROOT, cpu_has_bf16, run_script

import bert_model


def test_gpu_check_tiny_runs_every_step_on_cpu(goemotions_dir, minilm, tmp_path):
    """bench/gpu_check.sh --tiny: environment and imports, the epoch table with the resume across precisions,
    all four throughput contenders, the precision checks."""
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--tiny", str(goemotions_dir)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    for step in ("== 1. environment and imports", "== 2. bench/gpu_epochs.py", "== 3. bench/throughput.py",
                 "== 4. bench/cuda_checks.py", "== 5. bench/predict_speed.py", "== gpu_check done"):
        assert step in out
    inference = json.loads((tmp_path / "predict_speed.json").read_text())["summary"]
    assert set(inference) == {"predict", "predict-bf16", "pipeline"}
    assert inference["predict"]["max_abs_diff"] < 1e-4
    passes = [line for line in out.splitlines() if line.startswith("PASS ")]
    assert len(passes) == 6 and "FAIL " not in out, out[-3000:]
    assert "PASS resume across precisions: bf16 run exit 99 (99 expected), resumed in fp16 exit 0" in out
    assert (tmp_path / "gpu_check.log").read_text().count("PASS ") == 6

    epochs = json.loads((tmp_path / "gpu_epochs.json").read_text())["runs"]
    assert [(e["name"], e["mode"], e["precision"], e["steps"]) for e in epochs] == \
        [("base", "eager", "bf16", 4), ("base", "eager", "fp16", 4)]  # 64 examples at batch 16
    assert "| base | eager | fp16 |" in (tmp_path / "gpu_epochs.md").read_text()
    report = json.loads((tmp_path / "throughput.json").read_text())
    (model,) = report["models"].values()
    trials = model["trials"]
    assert sorted(trials) == ["a", "b", "c", "d"]
    # the same 32 real examples for everyone: the same count of real tokens; padding differs by batching
    assert len({t["real_tokens"] for ts in trials.values() for t in ts}) == 1
    assert all(t["examples"] == 32 and t["padded_tokens"] >= t["real_tokens"] for ts in trials.values() for t in ts)
    assert trials["d"][0]["padded_tokens"] <= trials["a"][0]["padded_tokens"]
    assert trials["c"][0]["padded_tokens"] <= trials["b"][0]["padded_tokens"]
    assert trials["d"][0]["precision"] == ("bf16" if cpu_has_bf16() else "fp32")  # --precision auto on this CPU
    assert "| d: bert_model.py (its defaults) |" in out and "**" in out  # the table with the ratios


def test_gpu_check_keeps_going_after_a_missing_import(goemotions_dir, minilm, tmp_path):
    """A package the GPU machine lacks fails step 1 by name; the other steps still run, and the exit is 1."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'matplotlib':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n", encoding="utf-8")
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path / "res"), "PYTHONPATH": str(hide)}
    env.pop("OUT", None)
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--tiny", str(goemotions_dir)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert "FAIL imports: missing matplotlib" in out
    assert "== 4. bench/cuda_checks.py" in out  # every step ran
    assert out.strip().splitlines()[-1].startswith("== gpu_check done; FAILED step(s): 1")


def test_predict_speed_smoke_agrees_with_the_pipeline(tiny_bert, small_data, tmp_path):
    model = tmp_path / "model"
    argv = [str(small_data / f) for f in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")]
    assert bert_model.main([*argv, str(model), "--transformer-model", str(tiny_bert), "--epochs", "1",
                            "--checkpoint-every", "0"]) == 0
    r = run_script("bench/predict_speed.py", model, "--input", small_data / "test.tsv", "--rounds", "1",
                   "--json", tmp_path / "speed.json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "speed.json").read_text())["summary"]
    assert set(summary) == {"predict", "pipeline", "predict-bf16", "predict-int8"}
    # predict.py in fp32 gives the pipeline's scores; bf16 rounds them a little
    assert summary["predict"]["max_abs_diff"] < 1e-4 and summary["predict"]["same_decisions"] == 1.0
    assert summary["predict-bf16"]["max_abs_diff"] < 0.05
    assert (model / "onnx-int8" / "model.onnx").exists() and summary["predict-int8"]["macro_f1"] >= 0
    assert "| predict |" in r.stdout and "x pipeline" in r.stdout


def test_bench_scripts_refuse_bad_input_in_one_line(tmp_path):
    r = run_script("bench/throughput.py", "--data", tmp_path / "nowhere")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no train.tsv" in r.stderr
    r = run_script("bench/predict_speed.py", tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "goemotions.json" in r.stderr
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option" in r.stderr


def test_time_to_accuracy_smoke_measures_both_runners(tiny_bert, small_data, tmp_path):
    """bench/time_to_accuracy.py end to end: one bert_model.py candidate, one Trainer peer, 1 thread."""
    out, report = tmp_path / "runs", tmp_path / "tta.json"
    r = run_script("bench/time_to_accuracy.py", "--model", tiny_bert, "--data", small_data, "--threads", "1",
                   "--max-train-examples", "64", "--candidates", "recipe-1ep,trainer-1ep", "--out", out,
                   "--json", report, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    summary = json.loads(report.read_text())
    assert summary["machine"]["threads"] == 1 and summary["machine"]["nproc"] >= 1 and summary["started"]
    results = {x["name"]: x for x in summary["results"]}
    assert list(results) == ["recipe-1ep", "trainer-1ep"]
    for name, runner in (("recipe-1ep", "bert_model"), ("trainer-1ep", "trainer")):
        x = results[name]
        assert x["ok"] and x["rc"] == 0 and x["runner"] == runner and x["wall_s"] > 0 and x["train_s"] > 0
        assert x["train_examples"] == 64 and x["epochs"] == 1
        # the F1 values come from the metrics file the candidate wrote, and its model folder is there
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert x["test_f1"] == metrics["test"]["macro"]["f1"] and x["dev_f1"] == metrics["dev"]["macro"]["f1"]
        assert 0 <= x["test_f1"] <= 1 and 0 <= x["dev_f1"] <= 1
        assert (out / name / "model" / "config.json").exists() and (out / name / "model" / "model.safetensors").exists()
        # the exact command, with the candidate's options and the smoke cap
        assert x["command"][1] == ("bert_model.py" if runner == "bert_model" else "bench/time_to_accuracy.py")
        assert x["command"][-2:] == ["--max-train-examples", "64"] and "OMP_NUM_THREADS=1" in x["shell"]
    assert "--head-learning-rate" in results["recipe-1ep"]["command"]
    flags = json.loads((out / "trainer-1ep" / "metrics.json").read_text())["flags"]
    assert flags.get("train_sampling_strategy") == "group_by_length" or flags.get("group_by_length") is True
    assert set(summary["front"]) <= set(results) and summary["front"]
    assert summary["peer_ratios"][0]["peer"] == "trainer-1ep"
    assert "| recipe-1ep | bert_model |" in r.stdout and "| trainer-1ep | trainer |" in r.stdout
    assert "Front (not beaten" in r.stdout and "Trainer peer trainer-1ep:" in r.stdout


def test_time_to_accuracy_front_ratio_and_train_cap():
    from bench import time_to_accuracy as tta

    def res(name, runner, wall, f1):
        return {"name": name, "runner": runner, "ok": True, "wall_s": wall, "test_f1": f1}

    results = [res("a", "bert_model", 100, 0.47), res("b", "bert_model", 200, 0.46), res("c", "bert_model", 250, 0.51),
               res("t", "trainer", 300, 0.465), {"name": "x", "runner": "bert_model", "ok": False, "wall_s": 1}]
    assert [r["name"] for r in tta.front(results)] == ["a", "c"]  # b is slower and worse than a; t than c
    (ratio,) = tta.peer_ratios(results)
    assert ratio["fastest_reaching"] == "a" and ratio["ratio"] == 3.0
    cap = tta.with_train_cap
    assert cap(["--epochs", "1", "--max-train-examples", "21705", "--seed", "1"], 64) == \
        ["--epochs", "1", "--seed", "1", "--max-train-examples", "64"]
    assert cap(["--max-train-examples", "10"], 64)[-1] == "10" and cap(["--epochs", "1"], None) == ["--epochs", "1"]
    assert set(tta.DEFAULT_CANDIDATES) <= set(tta.CANDIDATES)


def test_pypi_topics_builds_a_dataset_from_a_registry_on_loopback(tmp_path):
    """bench/pypi_topics.py against a registry stand-in: a package with two topics is a row (after a 503, retried),
    one without a topic or summary is not, two sharing a summary are both dropped, a name whose project is gone
    (404) is skipped."""
    from helpers import DataServer, Reply

    server = DataServer(tmp_path, prefix="/")
    projects = {
        "alpha": ("Fit curves  to\tdata", ["Topic :: Scientific/Engineering :: Physics", "Topic :: Utilities",
                                           "License :: OSI Approved :: MIT License"]),
        "beta": ("A web crawler", ["Topic :: Internet :: WWW/HTTP"]),
        "gamma": ("No topic here", ["Programming Language :: Python :: 3"]),
        "delta": ("", ["Topic :: Utilities"]),
        "twin-1": ("A small example package", ["Topic :: Utilities"]),
        "twin-2": ("a small example package", ["Topic :: Internet"]),
    }
    index = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in [*projects, "gone"])
    server.always("simple/", Reply(body=f"<!DOCTYPE html><html><body>\n{index}</body></html>".encode()))
    for name, (summary, classifiers) in projects.items():
        server.always(f"pypi/{name}/json", Reply(body=json.dumps(
            {"info": {"summary": summary, "classifiers": classifiers}, "releases": {}}).encode()))
    server.script("pypi/alpha/json", Reply(503, body=b"busy"))
    out = tmp_path / "topics.csv"
    r = run_script("bench/pypi_topics.py", out, "--registry", server.url, "--packages", "100", "--workers", "3")
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines() == [
        "id,text,labels", 'alpha,Fit curves to data,"Scientific/Engineering,Utilities"', "beta,A web crawler,Internet"]
    facts = json.loads((tmp_path / "topics.json").read_text())
    assert (facts["index_packages"], facts["looked_up"], facts["with_summary_and_topic"]) == (7, 7, 4)
    assert (facts["summary_shared_left_out"], facts["rows"], facts["labels_per_row"]) == (2, 2, 1.5)
    assert server.count("pypi/alpha/json") == 2 and server.count("pypi/gone/json") == 1
