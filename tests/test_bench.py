"""bench/: smoke runs of the benchmark scripts on tiny models and real rows, so that they do not rot.

The benchmarks themselves are scripts (their numbers are in bench/RESULTS.md); these tests only check that
every step runs, that the contenders see the same examples, and that the outputs hang together.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from helpers import ROOT, cpu_has_bf16, run_script

import bert_model


def test_gpu_check_tiny_runs_every_step_on_cpu(goemotions_dir, minilm, tmp_path):
    """bench/gpu_check.sh --tiny: environment and imports, the epoch table with the resume across precisions,
    all four throughput contenders, the precision checks."""
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path), "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable}
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
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path / "res"), "PYTHONPATH": str(hide), "PYTHON": sys.executable}
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
    (404) is skipped; the year is the first upload's, the licence its classifier's last part (blank if none)."""
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
    releases = {"alpha": {"0.2": [{"upload_time": "2019-03-01T10:00:00"}], "0.1": [],
                          "0.1.1": [{"upload_time": "2017-12-31T23:59:59"}, {"upload_time": "2018-01-02T00:00:00"}]}}
    for name, (summary, classifiers) in projects.items():
        server.always(f"pypi/{name}/json", Reply(body=json.dumps(
            {"info": {"summary": summary, "classifiers": classifiers}, "releases": releases.get(name, {})}).encode()))
    server.script("pypi/alpha/json", Reply(503, body=b"busy"))
    out = tmp_path / "topics.csv"
    r = run_script("bench/pypi_topics.py", out, "--registry", server.url, "--packages", "100", "--workers", "3")
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines() == [
        "id,text,labels,year,licence", 'alpha,Fit curves to data,"Scientific/Engineering,Utilities",2017,MIT License',
        "beta,A web crawler,Internet,,"]
    facts = json.loads((tmp_path / "topics.json").read_text())
    assert (facts["index_packages"], facts["looked_up"], facts["with_summary_and_topic"]) == (7, 7, 4)
    assert (facts["summary_shared_left_out"], facts["rows"], facts["labels_per_row"]) == (2, 2, 1.5)
    assert server.count("pypi/alpha/json") == 2 and server.count("pypi/gone/json") == 1


# ------------------------------------------------------------------------ every other bench script, on tiny inputs
# Each runs on the session's trained tiny model and its data (160/64/64 real rows) or on the tiny random BERT, so
# that a script that stops working fails CI. bench/cuda_checks.py and bench/gpu_epochs.py run on the CPU in
# bench/gpu_check.sh --tiny (the first test above); here, their refusal of --device cuda without a GPU.

HIDE_GPU = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def shell(script: str, *args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """One of bench/'s shell scripts, with this Python (not .venv's, which a worktree may lack)."""
    full = {**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
            **HIDE_GPU, **env}
    return subprocess.run(["bash", f"bench/{script}", *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=timeout)


def test_int8_variants_reads_as_the_model_and_scores_as_training(trained):
    """bench/int8_variants.py (a TypeError since Encoded lost len()): the fp32 row's test macro F1 is the one training
    wrote (the same reading of the texts, the same decision rule and scoring); every variant has its row."""
    data, run, _ = trained
    r = run_script("bench/int8_variants.py", run / "model", data, "--threads", "1", env=HIDE_GPU)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line.split(" | ") for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row[0][2:] for row in rows] == ["fp32 (PyTorch)", "per channel, 8 bits (before)",
                                            "per channel, reduce_range (7 bits)", "per tensor, reduce_range"]
    test_f1 = json.loads((run / "metrics.json").read_text())["test"]["macro"]["f1"]
    assert float(rows[0][1]) == round(test_f1, 4) and rows[0][2:4] == ["0.00000", "0.0000"]
    assert "64 test texts" in r.stdout and "read as 50 tokens: a longer text is cut" in r.stdout
    assert not (run / "model" / "onnx-int8").exists()  # each variant exported into a temporary folder


def test_goemotions_as_own_data_writes_every_shape(trained, tmp_path):
    data, _, _ = trained
    r = run_script("bench/goemotions_as_own_data.py", data, tmp_path / "own")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "own" / "goemotions_onehot.csv", encoding="utf-8", newline="") as f:
        onehot = list(csv.reader(f))
    labels = (data / "emotions.txt").read_text(encoding="utf-8").split("\n")
    assert onehot[0] == ["text", "id", "split", *labels] and len(onehot) == 1 + 160 + 64 + 64
    names = [json.loads(line) for line in (tmp_path / "own" / "goemotions_names.jsonl").read_text().splitlines()]
    first = (data / "train.tsv").read_text(encoding="utf-8").split("\n")[0].split("\t")
    assert names[0] == {"text": first[0], "labels": [labels[int(i)] for i in first[1].split(",")], "id": first[2],
                        "split": "train"}
    assert [n["split"] for n in names] == ["train"] * 160 + ["dev"] * 64 + ["test"] * 64
    ekman = (tmp_path / "own" / "ekman_labels.txt").read_text().split()
    assert ekman[-1] == "neutral" and len(ekman) == 7
    r = run_script("bench/goemotions_as_own_data.py", tmp_path / "nowhere", tmp_path / "own2")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "emotions.txt" in r.stderr


def test_optimizer_step_and_profile_train_on_a_tiny_bert(tiny_bert, trained):
    r = run_script("bench/optimizer_step.py", "--model", tiny_bert, "--steps", "1", "--rounds", "1", env=HIDE_GPU)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row[0]: row for row in (line.strip("| ").split(" | ") for line in r.stdout.splitlines()
                                    if line.startswith("| "))}
    assert float(rows["AdamW fused=True"][2]) < 1e-5 and "clip_grad_norm_ foreach" in rows
    data, _, _ = trained
    r = run_script("bench/profile_train.py", "--model", tiny_bert, "--data", data, "--examples", "32", "--top", "3",
                   "--bert-model-args", "--precision", "fp32", "--checkpoint-every", "0", env=HIDE_GPU)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| group of operators | self CPU s |" in r.stdout and "| matmuls (linear, bmm, backward) |" in r.stdout
    assert f"{tiny_bert}, 32 examples, batch 16" in r.stdout


def test_long_texts_two_variants_on_a_tiny_bert(tiny_bert, trained, tmp_path):
    """bench/long_texts.py end to end, small: 16 documents of 2 comments, truncation and windows, one seed; the
    table, windows against truncation, the short-text check and predict.py's speed."""
    data, _, _ = trained
    out = tmp_path / "lt"
    r = run_script("bench/long_texts.py", out, "--model", tiny_bert, "--data", data, "--seeds", "1", "--variants",
                   "truncate", "windows-max", "--docs", "16", "8", "8", "--per-doc", "2", "--jobs", "1",
                   env=HIDE_GPU)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "truncate-seed1: test macro F1" in r.stdout and "windows-max-seed1: test macro F1" in r.stdout
    assert len((out / "data" / "train.tsv").read_text().splitlines()) == 16
    assert "- windows-max minus truncate: " in (out / "table.md").read_text()
    assert "byte-identical predictions" in (out / "short.txt").read_text()  # 64 comments, none over 64 tokens
    speed = (out / "speed.txt").read_text()
    assert "- windows (max): " in speed and "- truncate: " in speed


def test_long_texts_refuses_more_documents_than_the_split_has_comments(tiny_bert, goemotions_dir, tmp_path):
    """600 test documents of 16 comments need 9,600 comments; GoEmotions' test split has 5,427: refused before any
    run, not documents past the end left empty."""
    r = run_script("bench/long_texts.py", tmp_path / "lt", "--model", tiny_bert, "--data", goemotions_dir,
                   "--per-doc", "16", "--docs", "16", "8", "600", "--jobs", "1", env=HIDE_GPU)
    assert r.returncode != 0 and "600 test documents of 16 comments need 9600 comments" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "lt" / "data").exists()


def test_long_texts_one_passage_documents_and_the_tuned_pooling_on_a_tiny_bert(tiny_bert, goemotions_dir, tmp_path):
    """bench/long_texts.py --kind one-passage (issue 33): neutral comments about 2 windows long, a passage of
    gratitude, amusement or love in three of four, `neutral` (an absence label) in the rest; a run at the defaults
    (--pooling tuned)."""
    out = tmp_path / "op"
    r = run_script("bench/long_texts.py", out, "--model", tiny_bert, "--data", goemotions_dir, "--kind", "one-passage",
                   "--windows", "2", "--seeds", "1", "--variants", "truncate", "windows-tuned", "--docs", "16", "8",
                   "8", "--jobs", "1", env=HIDE_GPU)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (out / "data" / "emotions.txt").read_text().split() == ["gratitude", "amusement", "love", "neutral"]
    rows = [line.split("\t") for line in (out / "data" / "train.tsv").read_text().splitlines()]
    assert len(rows) == 16 and [row[1] for row in rows[::4]] == ["3"] * 4  # every fourth: no passage, neutral
    assert "windows-tuned-seed1: test macro F1" in r.stdout
    table = (out / "table.md").read_text()
    assert "- windows-tuned minus truncate: " in table and "- truncate minus windows-tuned" not in table  # once
    # the same documents in windows of 32 tokens: a run of its own beside the others, read so, in the table
    r = run_script("bench/long_texts.py", out, "--model", tiny_bert, "--data", goemotions_dir, "--kind", "one-passage",
                   "--windows", "2", "--seeds", "1", "--variants", "windows-tuned", "--window", "32", "--docs", "16",
                   "8", "8", "--jobs", "1", env=HIDE_GPU)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "windows-tuned-w32-seed1: test macro F1" in r.stdout and "done before" not in r.stdout
    saved = json.loads((out / "runs" / "windows-tuned-w32-seed1" / "model" / "goemotions.json").read_text())
    assert (saved["max_length"], saved["long_texts"], saved["pooling"]) == (32, "windows", "tuned")
    assert json.loads((out / "runs" / "windows-tuned-seed1" / "model" / "goemotions.json").read_text())[
        "max_length"] == 64
    assert "- windows-tuned-w32 minus windows-tuned: " in (out / "table.md").read_text()


def test_planted_marker_smoke_at_the_defaults_on_a_tiny_bert(tiny_bert, goemotions_dir, tmp_path):
    """bench/planted_marker.py (issue 33's case), small: 8 documents of ~200 words of neutral comments, the marker
    pair after ~150 words in every other one, past the tiny model's 128 tokens; one epoch at the defaults."""
    out = tmp_path / "pm"
    r = run_script("bench/planted_marker.py", out, "--model", tiny_bert, "--data", goemotions_dir, "--variants",
                   "defaults", "--docs", "8", "4", "4", "--words", "200", "--at", "150", "--epochs", "1", "--jobs",
                   "1", env=HIDE_GPU)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rows = [line.split("\t") for line in (out / "data" / "train.tsv").read_text().splitlines()]
    assert [row[1] for row in rows] == ["0", "1"] * 4 and all(("violet lighthouse" in row[0]) == (row[1] == "0")
                                                                for row in rows)
    table = (out / "table.md").read_text()
    assert "| defaults-seed1 | " in table and "marker: " in table and "| 128 tokens, " in table, table


def test_faithfulness_smoke_explains_and_scores_each_method(trained, tmp_path):
    """bench/faithfulness.py on a few test texts: explain.py with each method, predict.py, the AOPC table."""
    _, run, _ = trained
    r = run_script("bench/faithfulness.py", run / "model", tmp_path / "f", "--smoke", env=HIDE_GPU)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    table = (tmp_path / "f" / "table.md").read_text()
    for row in ("| occlusion | ", "| ig | ", "| random | ", "| predict.py (no explanation) |"):
        assert row in table, table
    explained = [json.loads(x) for x in (tmp_path / "f" / "ig.jsonl").read_text().splitlines()]
    assert len({e["line"] for e in explained}) == 12


def test_explain_cost_smoke_times_each_length_and_label_count(trained, tmp_path):
    """bench/explain_cost.py on two lengths and two label counts: a row for each cell, the explanations made."""
    _, run, _ = trained
    r = run_script("bench/explain_cost.py", run / "model", tmp_path / "c", "--smoke", env=HIDE_GPU)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    table = (tmp_path / "c" / "table.md").read_text()
    for row in ("| predict | 4 |", "| occlusion | 12 |", "| ig | 12 |", "| ig | process start"):
        assert row in table, table
    assert [len(line.split("|")) for line in table.splitlines() if line.startswith("| occlusion | 12 |")] == [10, 10]
    explained = [json.loads(x) for x in (tmp_path / "c" / "ig-12w-2l.jsonl").read_text().splitlines()]
    assert len(explained) == 2 * 2 and all(len(e["words"]) == 12 for e in explained)


def test_tune_pruning_counts_and_finishes_a_pruned_trial(tiny_bert, trained, tmp_path):
    """A study of two tiny trials, the second pruned; bench/tune_pruning.py's arithmetic, then --finish."""
    import optuna

    import tune

    data, _, _ = trained
    study = tmp_path / "study"
    (tmp_path / "space.txt").write_text("learning-rate log 1e-7 3e-2\nepochs int 1 30\n", encoding="utf-8")
    argv = [str(study), "--data", str(data), "--space", str(tmp_path / "space.txt"), "--dev-every", "48",
            "--trials", "2", "--prune-after", "1", "--", "--transformer-model", str(tiny_bert), "--precision", "fp32",
            "--max-length", "32", "--batch-size", "8", "--warmup-ratio", "0"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = tune.open_study(tune.parse_args(argv), create=True)
    s.enqueue_trial({"learning-rate": 1e-7, "epochs": 12})
    s.enqueue_trial({"learning-rate": 3e-2, "epochs": 12})
    r = run_script("tune.py", *argv, env=HIDE_GPU)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_script("bench/tune_pruning.py", study)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[:4] == ["0", "COMPLETE", "240", "240"]  # 12 epochs of 160 rows at batch 8
    assert lines[2].split()[1:2] == ["PRUNED"] and lines[2].split()[3] == "240"
    assert lines[3].startswith("all trials: ")
    r = run_script("bench/tune_pruning.py", study, "--finish", tmp_path / "finish", "--workers", "1", env=HIDE_GPU)
    assert r.returncode == 0, r.stderr
    assert "trials' seconds: " in r.stdout and "unpruned (measured; " in r.stdout
    assert (tmp_path / "finish" / "trials").is_dir()
    r = run_script("bench/tune_pruning.py", tmp_path / "nowhere")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "no study here" in r.stderr


def test_same_result_and_ab_commits_at_head(tiny_bert, trained):
    """bench/same_result.sh and bench/ab_commits.sh, HEAD against itself, on the tiny BERT and 32 examples."""
    data, _, _ = trained
    env = {"MODEL": str(tiny_bert), "DATA": str(data), "TRAIN_EXAMPLES": "32", "THREADS": "1"}
    r = shell("same_result.sh", "HEAD", "HEAD", env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "predictions.tsv: byte-identical (65 lines)" in r.stdout
    assert "metrics.json: options the same; keys that differ (times, host, memory and paths aside): none" in r.stdout
    assert "labels.tsv: byte-identical" in r.stdout and "table.txt: byte-identical" in r.stdout
    r = shell("ab_commits.sh", "HEAD", "HEAD", "1", env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "round 1: old " in r.stdout and "new/old per round: " in r.stdout


def test_job_threads_under_grid_engine(sge, tiny_bert, trained):
    """bench/job_threads.sh: one old and one new job file as Grid Engine jobs, 32 examples of the tiny BERT."""
    data, _, _ = trained
    r = shell("job_threads.sh", env={"MODEL": str(tiny_bert), "DATA": str(data), "TRAIN": "32", "REPEATS": "1"},
              timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "mean examples/s: old " in r.stdout and "new/old" in r.stdout


def test_gpu_scripts_refuse_cuda_without_a_gpu_in_one_line(tiny_bert, trained, tmp_path):
    data, _, _ = trained
    r = run_script("bench/cuda_checks.py", tiny_bert, data, "--device", "cuda", env=HIDE_GPU)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "sees no GPU" in r.stderr
    r = run_script("bench/gpu_epochs.py", data, "--model", f"base={tiny_bert}", "--out", tmp_path, env=HIDE_GPU)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "sees no GPU" in r.stderr
