"""The HEC job files: install.com, download_model_data.com, run_transformer_model.com.

Part 1 runs them with bash directly (settings come from the environment, as `qsub -v` gives them).
Part 2 submits them to a real single-host Grid Engine (tests/sge/setup_sge.sh, started by .ci/run):
the chain install -> download -> train with -hold_jid, a requeue on exit 99, torchrun from -l ngpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, GridEngine, HubStandIn, free_port, write_slice

JOBS = ("install.com", "download_model_data.com", "run_transformer_model.com")
VENV_PYTHON = sys.executable
# From ../shared/README.md (byte-identical to google-research's goemotions/data/).
SHA256 = {
    "train.tsv": "1c254a142be5c00e80d819b9ae1bbd36d94b2eeb8f4b1271846508d57e57d9c5",
    "dev.tsv": "575489c079c9de1097062a01738f998590d6b7ead66dd1c9fd1d2ba01fd8bc62",
    "test.tsv": "0587b2dd8b27b97352adbfc3fb083d46005c8946657fdc2b1ca8b1cc7f1f8be4",
    "emotions.txt": "45c3ef86782d2a4d7fedcd6d8c111aa0d0e94720689bd164fac94fefb4495a89",
    "ekman_mapping.json": "d6b1fea382917c1685c42e1324a0344106be9390f52a3850ce032656d103a328",
    "sentiment_dict.json": "801f6f028082141bd38541a4b14d65b33bdc55d29c7b2aaa029fefecf206f76b",
}
# Settings a developer's shell might carry that would change what the jobs do.
JOB_VARS = ("global_storage", "CODE_DIR", "CONDA_ENV", "CONDA_MODULE", "PYTHON", "DATA_DIR", "DATA_MIRROR", "MODEL",
            "MODEL_DIR", "RUN_NAME", "SAVE_FP", "METRICS_FILE", "PREDICTIONS_FILE", "PLOT_FILE", "EPOCHS",
            "BATCH_SIZE", "LEARNING_RATE", "MAX_LENGTH", "LONG_TEXTS", "MAX_WINDOWS", "POOLING", "SEED", "THRESHOLD",
            "TAXONOMY", "LOSS", "PRECISION",
            "CHECKPOINT_EVERY", "CHECKPOINT_MINUTES", "DEVICE", "EXTRA_ARGS", "DRY_RUN", "NGPUS", "HF_HOME",
            "HF_HUB_CACHE",
            "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "JOB_ID", "SGE_O_WORKDIR", "ENV_FILE",
            "REQUIREMENTS", "DOWNLOAD_RETRIES", "GOEMOTIONS_BASE_URL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NSLOTS",
            "SGE_TASK_ID", "SWEEP", "RESTARTED")


def job(name: str, timeout: float = 120, **settings: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a job file with bash outside Grid Engine, with exactly these settings."""
    env = {k: v for k, v in os.environ.items() if k not in JOB_VARS}
    env.update({k: str(v) for k, v in settings.items()})
    return subprocess.run(["bash", str(ROOT / name)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def one_error(result: subprocess.CompletedProcess[str], name: str, *needles: str) -> str:
    """The job failed with exactly one error line, and nothing else went to stderr (no cascade)."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def command_of(stdout: str) -> str:
    found = re.findall(r"^run_transformer_model\.com: command: (.*)$", stdout, re.M)
    assert len(found) == 1, stdout
    return found[0]


@pytest.fixture
def hec(tmp_path: Path, goemotions_dir: Path) -> Path:
    """A stand-in for $global_storage on the HEC: the data where download_model_data.com puts it."""
    g = tmp_path / "global_storage"
    write_slice(goemotions_dir, g / "data" / "go-emotions", {"train": 96, "dev": 48, "test": 48})
    return g


# =========================================================================== 1. the files themselves


@pytest.mark.parametrize("name", JOBS)
def test_job_file_is_valid_bash_with_grid_engine_directives(name: str):
    r = subprocess.run(["bash", "-n", str(ROOT / name)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    directives = re.findall(r"^#\$ (.*)$", (ROOT / name).read_text(), re.M)
    for wanted in ("-S /bin/bash", "-cwd", "-j y", f"-N {name.removesuffix('.com').replace('_', '-')}"):
        assert wanted in directives, (name, directives)
    assert any(d.startswith("-l h_vmem=") for d in directives) and any(d.startswith("-l h_rt=") for d in directives)


def test_training_job_asks_for_a_gpu_node_and_a_warning_before_its_time_limit():
    directives = re.findall(r"^#\$ (.*)$", (ROOT / "run_transformer_model.com").read_text(), re.M)
    assert {"-q short", "-l ngpus=1", "-l ncpus=4", "-l h_vmem=40G", "-l h_rt=01:00:00", "-l s_rt=00:55:00",
            "-notify"} <= set(directives)


def test_environment_yml_is_a_conda_file_over_requirements_txt():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert set(env) == {"name", "channels", "dependencies"}
    assert env["name"] == "py3.11-go-emotions" and env["channels"] == ["conda-forge"]
    assert env["dependencies"][:2] == ["python=3.11", "pip"]
    assert env["dependencies"][2] == {"pip": ["-r requirements.txt"]}  # one list of packages: requirements.txt
    assert len(env["dependencies"]) == 3 and (ROOT / "requirements.txt").exists()


# =========================================================================== 2. settings, outside Grid Engine


def test_training_job_defaults_are_the_hec_paths_and_the_paper_settings(hec: Path):
    r = job("run_transformer_model.com", global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "run_transformer_model.com: no module system here (no 'module' command): skipping 'module add " \
           "anaconda3/wmlce'" in r.stdout
    cmd, data, save = command_of(r.stdout), hec / "data" / "go-emotions", hec / "models" / "go-emotions"
    assert cmd.startswith(f"{VENV_PYTHON} {ROOT}/bert_model.py {data}/train.tsv {data}/dev.tsv {data}/test.tsv "
                          f"{data}/emotions.txt {save}/bert-base-uncased --transformer-model bert-base-uncased "
                          "--epochs 4 --batch-size 16 --learning-rate 5e-5 --max-length auto --long-texts auto "
                          "--max-windows 8 --pooling tuned --seed 42 --threshold 0.3 "
                          "--taxonomy original --loss bce --precision auto --checkpoint-every 0 "
                          "--checkpoint-minutes 10 --resume ")
    assert (f"--metrics-file {save}/bert-base-uncased.metrics.json --predictions-file "
            f"{save}/bert-base-uncased.predictions.tsv --plot-file {save}/bert-base-uncased.png --cuda") in cmd
    assert f"HF_HUB_CACHE={hec}/huggingface_transformer_models_cache HF_HUB_OFFLINE=1 NGPUS=1" in r.stdout


def test_every_training_setting_can_be_overridden(hec: Path, tmp_path: Path):
    data = hec / "data" / "go-emotions"
    r = job("run_transformer_model.com", global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1, CONDA_MODULE="",
            DATA_DIR=data, MODEL="roberta-base", SAVE_FP=tmp_path / "m" / "rb", METRICS_FILE=tmp_path / "met.json",
            PREDICTIONS_FILE=tmp_path / "pred.tsv", PLOT_FILE="", EPOCHS=2, BATCH_SIZE=32, LEARNING_RATE="3e-5",
            MAX_LENGTH=64, LONG_TEXTS="windows", MAX_WINDOWS=4, POOLING="logsumexp", SEED=7, THRESHOLD=0.25,
            TAXONOMY="ekman", LOSS="focal", PRECISION="fp16", CHECKPOINT_EVERY=0,
            CHECKPOINT_MINUTES=2.5,
            DEVICE="cpu", EXTRA_ARGS="--max-train-examples 64 --log-every 5", HF_HUB_CACHE=tmp_path / "cache",
            HF_HUB_OFFLINE=0)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "module" not in r.stdout  # CONDA_MODULE= skips the module step silently
    assert command_of(r.stdout) == (
        f"{VENV_PYTHON} {ROOT}/bert_model.py {data}/train.tsv {data}/dev.tsv {data}/test.tsv {data}/emotions.txt "
        f"{tmp_path}/m/rb --transformer-model roberta-base --epochs 2 --batch-size 32 --learning-rate 3e-5 "
        "--max-length 64 --long-texts windows --max-windows 4 --pooling logsumexp --seed 7 --threshold 0.25 "
        "--taxonomy ekman --loss focal --precision fp16 --checkpoint-every 0 "
        "--checkpoint-minutes 2.5 --resume "
        f"--metrics-file {tmp_path}/met.json --predictions-file {tmp_path}/pred.tsv --max-train-examples 64 "
        "--log-every 5 ")
    assert f"HF_HUB_CACHE={tmp_path}/cache HF_HUB_OFFLINE=0 NGPUS=1" in r.stdout


def test_model_dir_and_run_name_place_the_outputs(hec: Path, tmp_path: Path):
    r = job("run_transformer_model.com", global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1,
            MODEL_DIR=tmp_path / "models", RUN_NAME="trial-1", MODEL="acme/tiny-bert")
    cmd = command_of(r.stdout)
    assert f"{tmp_path}/models/trial-1 --transformer-model acme/tiny-bert " in cmd
    assert f"--metrics-file {tmp_path}/models/trial-1.metrics.json" in cmd


@pytest.mark.parametrize("name", ["run_transformer_model.com", "download_model_data.com"])
def test_legacy_transformers_cache_of_the_original_readme_still_works(name: str, hec: Path, hub: HubStandIn,
                                                                     tiny_bert: Path, goemotions_dir: Path,
                                                                     tmp_path: Path):
    legacy = tmp_path / "legacy" / "huggingface_transformer_models_cache"
    if name == "run_transformer_model.com":
        r = job(name, global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1, TRANSFORMERS_CACHE=legacy)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"HF_HUB_CACHE={legacy} HF_HUB_OFFLINE=1" in r.stdout
    else:  # the whole job (data from a mirror, the model from the hub stand-in): the model lands in the legacy folder
        hub.add_repo("acme/tiny-bert", tiny_bert)
        r = job(name, timeout=300, global_storage=hec, PYTHON=VENV_PYTHON, CONDA_MODULE="", TRANSFORMERS_CACHE=legacy,
                DATA_DIR=tmp_path / "data", DATA_MIRROR=goemotions_dir, MODEL="acme/tiny-bert", HF_ENDPOINT=hub.url)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        snapshots = list((legacy / "models--acme--tiny-bert" / "snapshots").iterdir())
        assert len(snapshots) == 1 and sorted(p.name for p in snapshots[0].iterdir()) == [
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
        assert (snapshots[0] / "model.safetensors").read_bytes() == (tiny_bert / "model.safetensors").read_bytes()
        assert not (hec / "huggingface_transformer_models_cache").exists()  # not in the default cache as well
        assert f"{name}: done: the GPU job reads the data from DATA_DIR={tmp_path / 'data'} and the model from " \
               f"HF_HUB_CACHE={legacy}" in r.stdout
    assert f"{name}: TRANSFORMERS_CACHE is ignored by transformers 5: using it as HF_HUB_CACHE={legacy}" in r.stdout


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("EPOCHS", "four", "EPOCHS=four is not a whole number >= 1"),
    ("EPOCHS", "0", "EPOCHS=0 is not a whole number >= 1"),
    ("BATCH_SIZE", "-8", "BATCH_SIZE=-8 is not a whole number >= 1"),
    ("MAX_LENGTH", "", None),  # empty means the default
    ("SEED", "1.5", "SEED=1.5 is not a whole number >= 0"),
    ("CHECKPOINT_EVERY", "x", "CHECKPOINT_EVERY=x is not a whole number >= 0"),
    ("CHECKPOINT_MINUTES", "soon", "CHECKPOINT_MINUTES=soon is not a number"),
    ("LEARNING_RATE", "fast", "LEARNING_RATE=fast is not a number"),
    ("THRESHOLD", "0.3.1", "THRESHOLD=0.3.1 is not a number"),
    ("TAXONOMY", "plutchik", "TAXONOMY=plutchik: use original, ekman or sentiment"),
    ("PRECISION", "fp8", "PRECISION=fp8: use auto, fp32, bf16 or fp16"),
    ("LOSS", "hinge", "LOSS=hinge: use bce, weighted-bce, focal or asl"),
    ("DEVICE", "tpu", "DEVICE=tpu: use cuda or cpu"),
    ("NGPUS", "0", "NGPUS=0 is not a whole number >= 1"),
    ("OMP_NUM_THREADS", "all", "OMP_NUM_THREADS=all is not a whole number >= 1"),
    ("SGE_TASK_ID", "x", "SGE_TASK_ID=x is not a whole number >= 1"),
    ("DATA_DIR", "/nonexistent/go-emotions", "no train.tsv in DATA_DIR=/nonexistent/go-emotions: run "
                                             "download_model_data.com first"),
    ("CODE_DIR", "/tmp", "no bert_model.py in CODE_DIR=/tmp: qsub from the project folder"),
    ("PYTHON", "/nonexistent/python", "PYTHON=/nonexistent/python is not an executable"),
])
def test_a_bad_training_setting_is_one_clear_line(hec: Path, setting: str, value: str, message: str | None):
    settings = {"global_storage": hec, "PYTHON": VENV_PYTHON, "DRY_RUN": "1", setting: value}
    r = job("run_transformer_model.com", **settings)
    if message is None:
        assert r.returncode == 0, r.stderr
    else:
        one_error(r, "run_transformer_model.com", message)
        assert "command:" not in r.stdout


def test_without_global_storage_the_paths_must_be_given(tmp_path: Path):
    one_error(job("run_transformer_model.com", PYTHON=VENV_PYTHON),
              "run_transformer_model.com", "DATA_DIR is not set and $global_storage is not set", "qsub -v DATA_DIR=")
    one_error(job("download_model_data.com", PYTHON=VENV_PYTHON),
              "download_model_data.com", "DATA_DIR is not set and $global_storage is not set")
    one_error(job("install.com"), "install.com", "CONDA_ENV is not set and $global_storage is not set")


def test_no_module_system_and_no_conda_is_one_line_not_a_cascade(hec: Path):
    for name in ("run_transformer_model.com", "download_model_data.com"):
        r = job(name, global_storage=hec)
        assert f"{name}: no module system here (no 'module' command)" in r.stdout
        one_error(r, name, f"no conda environment at CONDA_ENV={hec}/conda_environments/py3.11-go-emotions: "
                           "run install.com first (or -v PYTHON=...)")
    env = hec / "conda_environments" / "py3.11-go-emotions"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(VENV_PYTHON)
    one_error(job("run_transformer_model.com", global_storage=hec), "run_transformer_model.com",
              "conda not found (no anaconda module?)")
    r = job("install.com", global_storage=hec)
    assert "install.com: no module system here" in r.stdout
    one_error(r, "install.com", "conda not found (module add anaconda3/wmlce?)", "-v PYTHON=ENV/bin/python")


def test_install_job_checks_every_pin_and_reports_cuda(tmp_path: Path):
    r = job("install.com", PYTHON=VENV_PYTHON)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"install.com: PYTHON={VENV_PYTHON} given: not creating a conda environment, only checking it" in r.stdout
    assert re.search(r"^torch 2\.13\.0\S*, transformers 5\.24\.0: all requirements met$", r.stdout, re.M)
    assert re.search(r"^CUDA visible: (no \(a CPU node|yes, \d GPU)", r.stdout, re.M)
    wrong = tmp_path / "requirements.txt"
    wrong.write_text("torch==2.13.0\nrequests==0.0.1\nno-such-package-xyz==1.0\n")
    r = job("install.com", PYTHON=VENV_PYTHON, REQUIREMENTS=wrong)
    assert r.returncode == 1
    assert ("install.com: error: 2 requirement(s) not met: requests: want ==0.0.1, have 2.34.2; "
            "no-such-package-xyz: want ==1.0, have nothing") in r.stderr
    assert "install.com: error: the environment is not usable" in r.stderr


def test_training_job_reports_the_gpus_and_the_training_summary(hec: Path, tiny_bert: Path, tmp_path: Path):
    """Outside Grid Engine too (bash run_transformer_model.com). This machine has no GPU: a stand-in
    nvidia-smi on PATH answers the two calls the job makes (the table, then the memory sampler)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text('#!/bin/bash\nif [ $# = 0 ]; then echo "| NVIDIA-SMI stand-in  GPU 0: H100 |"; exit 0; fi\n'
                    'echo "0, 17000, 81559"; echo "0, 16907, 81559"; exec sleep 600\n')
    fake.chmod(0o755)
    r = job("run_transformer_model.com", timeout=300, global_storage=hec, PYTHON=VENV_PYTHON, MODEL=tiny_bert,
            DEVICE="cpu", EPOCHS=1, PRECISION="fp32", PLOT_FILE="", PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| NVIDIA-SMI stand-in  GPU 0: H100 |" in r.stdout
    assert "GPU memory (nvidia-smi, sampled every 10 s): peak 17000 of 81559 MiB" in r.stdout
    assert re.search(r"^Test macro F1 \d\.\d+", r.stdout, re.M)
    save = hec / "models" / "go-emotions" / tiny_bert.name
    assert f"run_transformer_model.com: model: {save}" in r.stdout and (save / "model.safetensors").exists()
    for suffix in (".metrics.json", ".predictions.tsv"):
        assert save.with_name(save.name + suffix).exists(), suffix


def test_outside_grid_engine_torch_keeps_its_thread_default_unless_told(hec: Path):
    r = job("run_transformer_model.com", global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1)
    assert "run_transformer_model.com: CPU threads: torch's default (not under Grid Engine, OMP_NUM_THREADS " \
           "unset)" in r.stdout
    r = job("run_transformer_model.com", global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1, OMP_NUM_THREADS=3)
    assert "run_transformer_model.com: CPU threads: OMP_NUM_THREADS=3 MKL_NUM_THREADS=3 per process " \
           "(OMP_NUM_THREADS given)" in r.stdout
    for name in ("install.com", "download_model_data.com"):
        assert "CPU threads" not in job(name, PYTHON=VENV_PYTHON, CODE_DIR=hec).stdout
        one_error(job(name, PYTHON=VENV_PYTHON, OMP_NUM_THREADS="0"), name, "OMP_NUM_THREADS=0 is not a whole number")


def test_download_job_bad_setting(hec: Path):
    one_error(job("download_model_data.com", global_storage=hec, PYTHON=VENV_PYTHON, DOWNLOAD_RETRIES="many"),
              "download_model_data.com", "DOWNLOAD_RETRIES=many is not a whole number")


# =========================================================================== 2b. array tasks, sweeps (no Grid Engine)


def task(settings: dict[str, str | Path], task_id: int | str | None = None) -> subprocess.CompletedProcess[str]:
    extra = {} if task_id is None else {"SGE_TASK_ID": str(task_id)}
    return job("run_transformer_model.com", **{"PYTHON": VENV_PYTHON, "DRY_RUN": "1", **settings, **extra})


def test_an_array_task_takes_seed_41_plus_its_id_and_its_own_run_name(hec: Path, tmp_path: Path):
    plain = command_of(task({"global_storage": hec}).stdout)
    assert command_of(task({"global_storage": hec}, "undefined").stdout) == plain  # not an array job: as before
    save = hec / "models" / "go-emotions"
    cmd = command_of(task({"global_storage": hec}, 3).stdout)
    assert cmd == plain.replace("--seed 42", "--seed 44").replace(f"{save}/bert-base-uncased",
                                                                  f"{save}/bert-base-uncased-task3")
    assert "--seed 7 " in command_of(task({"global_storage": hec, "SEED": 7}, 3).stdout)  # SEED wins
    cmd = command_of(task({"global_storage": hec, "RUN_NAME": "lr3", "PLOT_FILE": ""}, 2).stdout)
    assert f"{save}/lr3-task2 " in cmd and "--plot-file" not in cmd
    cmd = command_of(task({"global_storage": hec, "SAVE_FP": tmp_path / "m"}, 2).stdout)
    assert f"{tmp_path}/m-task2 " in cmd and f"--metrics-file {tmp_path}/m-task2.metrics.json" in cmd
    one_error(task({"global_storage": hec, "METRICS_FILE": tmp_path / "m.json"}, 2), "run_transformer_model.com",
              "METRICS_FILE is set, but in an array job every task writes its own beside SAVE_FP: leave "
              "METRICS_FILE unset")


def write_sweep(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_sweep_task_runs_its_line_and_dry_run_lists_every_task(hec: Path, tmp_path: Path):
    sweep = write_sweep(tmp_path / "lr.tsv", "# learning rates", "MODEL\tLEARNING_RATE\tSEED\tEXTRA_ARGS",
                        "acme/a\t3e-5\t\t--max-train-examples 64", "", "acme/b\t\t7\t--log-every 5,10\r")
    settings = {"global_storage": hec, "SWEEP": sweep, "EPOCHS": "2", "LEARNING_RATE": "1e-4", "MODEL": "acme/c"}
    save = hec / "models" / "go-emotions"
    r = task(settings, 2)
    assert r.returncode == 0, r.stderr
    assert f"run_transformer_model.com: task 2: {sweep} line 5" in r.stdout
    cmd = command_of(r.stdout)  # the line's cells beat -v; an empty cell leaves -v; seed 42 unless the line sets it
    assert f"{save}/b-lr-task2 --transformer-model acme/b --epochs 2 --batch-size 16 --learning-rate 1e-4 " in cmd
    assert "--seed 7 " in cmd and shlex.split(cmd)[-2:] == ["--log-every", "5,10"]  # a comma: fine in a sweep
    r = task(settings)  # DRY_RUN=1, not an array job: every task's command
    assert r.returncode == 0, r.stderr
    listed = re.findall(r"^run_transformer_model\.com: task (\d) \((\S+) line (\d)\): (.*)$", r.stdout, re.M)
    assert [t[:3] for t in listed] == [("1", str(sweep), "3"), ("2", str(sweep), "5")]
    assert "--seed 42 " in listed[0][3] and "--learning-rate 3e-5 " in listed[0][3] and f"{save}/a-lr-task1 " in \
        listed[0][3]
    assert listed[1][3] == cmd


@pytest.mark.parametrize(("lines", "task_id", "message"), [
    (["MODEL\tSEEDS", "x\t1"], 1, "{f} line 1: unknown setting 'SEEDS' (a sweep sets: MODEL RUN_NAME EPOCHS"),
    (["# c", "SEED\tSEED", "1\t2"], 1, "{f} line 2: SEED is in the header twice"),
    (["MODEL\tEPOCHS", "x\t2", "y\tfour"], 1, "{f} line 3: EPOCHS=four is not a whole number >= 1"),
    (["TAXONOMY", "ekman", "plutchik"], 1, "{f} line 3: TAXONOMY=plutchik: use original, ekman or sentiment"),
    (["MODEL\tEPOCHS", "x\t2\t3"], 1, "{f} line 2: 3 cell(s) but the header has 2"),
    (["SEED", "1", "", "2"], 3, "task 3, but SWEEP={f} has 2 run line(s) (the last on line 4): qsub -t 1-2"),
    (["SEED"], 1, "SWEEP={f} has no run lines"),
    (["SEED", "1", "2"], None, "SWEEP={f} has 2 run(s): submit an array job, qsub -t 1-2 -v SWEEP={f} "
                               "run_transformer_model.com (or DRY_RUN=1 to print every task's command)"),
])
def test_bad_sweep_input_is_one_line_naming_the_file_and_line(hec: Path, tmp_path: Path, lines: list[str],
                                                              task_id: int | None, message: str):
    sweep = write_sweep(tmp_path / "bad.tsv", *lines)
    settings = {"global_storage": hec, "SWEEP": sweep, "DRY_RUN": "0" if task_id is None else "1"}
    r = task(settings, task_id)
    one_error(r, "run_transformer_model.com", message.format(f=sweep))
    assert "command:" not in r.stdout
    one_error(task({"global_storage": hec, "SWEEP": tmp_path / "none.tsv"}, 1), "run_transformer_model.com",
              f"SWEEP={tmp_path}/none.tsv: no such file")


def test_the_shipped_sweep_files_are_valid(hec: Path):
    sweeps = sorted((ROOT / "sweeps").glob("*.tsv"))
    assert {p.name for p in sweeps} >= {"seeds.tsv", "taxonomies.tsv", "models.tsv"}
    listed = {}
    for sweep in sweeps:
        r = task({"global_storage": hec, "SWEEP": sweep.relative_to(ROOT)})
        assert r.returncode == 0, (sweep, r.stderr)
        listed[sweep.name] = re.findall(r"^run_transformer_model\.com: task \d+ \(.*?\): (.*)$", r.stdout, re.M)
    assert [re.search(r"--seed (\d+)", c)[1] for c in listed["seeds.tsv"]] == ["42", "43", "44", "45", "46"]
    assert [re.search(r"--taxonomy (\w+)", c)[1] for c in listed["taxonomies.tsv"]] == ["original", "ekman",
                                                                                        "sentiment"]
    models = [re.search(r"--transformer-model (\S+)", c)[1] for c in listed["models.tsv"]]
    assert {"bert-base-uncased", "roberta-base"} <= set(models) and len(set(models)) == len(models) >= 4
    assert all("--seed 42 " in c for c in listed["models.tsv"] + listed["taxonomies.tsv"])


def test_make_sweep_runs_every_line_on_this_machine(make: str, goemotions_dir: Path, tiny_bert: Path, tmp_path: Path):
    """The laptop's way: make sweep runs the lines SWEEP_JOBS at a time, as the array job's tasks."""
    sweep = write_sweep(tmp_path / "two.tsv", "SEED\tTAXONOMY", "\tekman", "5\t")
    out, data = tmp_path / "runs", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in JOB_VARS}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    sweep_cmd = [make, "-s", "sweep", f"VENV={Path(VENV_PYTHON).parent.parent}", f"DATA_DIR={data}",
                 f"DATA_MIRROR={goemotions_dir}", f"SWEEP={sweep}", f"SWEEP_DIR={out}", f"MODEL={tiny_bert}",
                 "EPOCHS=1", "TRAIN_ARGS=--max-train-examples 32 --precision fp32"]
    r = subprocess.run([m for m in sweep_cmd if not m.startswith("SWEEP=")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0 and "make sweep: error: SWEEP is not set" in r.stderr and not data.exists()
    bad = write_sweep(tmp_path / "bad.tsv", "SEED", "x")
    r = subprocess.run([*sweep_cmd, f"SWEEP={bad}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert f"run_transformer_model.com: error: {bad} line 2: SEED=x is not a whole number >= 0" in r.stderr
    assert r.returncode != 0 and not out.exists()
    r = subprocess.run([*sweep_cmd, "DRY_RUN=1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(re.findall(r"^run_transformer_model\.com: task \d \(", r.stdout, re.M)) == 2 and not out.exists()
    r = subprocess.run([*sweep_cmd, "SWEEP_JOBS=2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "run_sweep.sh: 2 runs at a time: OMP_NUM_THREADS=1 each" in r.stdout
    assert f"run_sweep.sh: all 2 task(s) of {sweep} done" in r.stdout
    args = [json.loads((out / f"{tiny_bert.name}-two-task{t}.metrics.json").read_text())["args"] for t in (1, 2)]
    assert [(a["seed"], a["taxonomy"], a["epochs"]) for a in args] == [(42, "ekman", 1), (5, "original", 1)]
    for t in (1, 2):
        assert (out / f"{tiny_bert.name}-two-task{t}" / "model.safetensors").exists()
        log = (out / f"two-task{t}.log").read_text()
        assert "bert_model.py: 1 CPU thread(s) per process (OMP_NUM_THREADS=1), 1 process(es)" in log


# =========================================================================== 3. under Grid Engine


def job_settings(**settings: str | Path) -> dict[str, str | Path]:
    """-v settings for a job on this machine: the test venv's python, no module system."""
    return {"PYTHON": VENV_PYTHON, "CONDA_MODULE": "", **settings}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.sge
def test_the_hec_chain_under_grid_engine(sge: GridEngine, hub: HubStandIn, tiny_bert: Path, goemotions_dir: Path,
                                         tmp_path: Path):
    """install -> download_model_data (hub stand-in, data mirror) -> run_transformer_model, chained by -hold_jid."""
    hub.add_repo("acme/tiny-bert", tiny_bert, extra={"tf_model.h5": b"not for PyTorch"})
    logs, g = tmp_path / "logs", tmp_path / "global_storage"
    logs.mkdir()
    j_install = sge.qsub("install.com", env=job_settings(), log_dir=logs)
    j_download = sge.qsub("download_model_data.com", "-hold_jid", str(j_install), log_dir=logs, env=job_settings(
        global_storage=g, DATA_MIRROR=goemotions_dir, MODEL="acme/tiny-bert", HF_ENDPOINT=hub.url))
    j_train = sge.qsub("run_transformer_model.com", "-hold_jid", "download-model-data", log_dir=logs,
                       env=job_settings(global_storage=g, MODEL="acme/tiny-bert", DEVICE="cpu", EPOCHS=1,
                                        PRECISION="fp32", EXTRA_ARGS="--max-train-examples 64",
                                        HF_ENDPOINT=f"http://127.0.0.1:{free_port()}"))
    install, download, train = (sge.wait(j, timeout=400)[-1] for j in (j_install, j_download, j_train))
    log_install = sge.log(logs, "install", j_install)
    log_download = sge.log(logs, "download-model-data", j_download)
    log_train = sge.log(logs, "run-transformer-model", j_train)
    for rec, log in ((install, log_install), (download, log_download), (train, log_train)):
        assert (rec["exit_status"], rec["failed"]) == ("0", "0"), log[-3000:]
    # the chain ran in order: each job started only after the one it waited for had ended
    assert sge.time(download, "start_time") >= sge.time(install, "end_time")
    assert sge.time(train, "start_time") >= sge.time(download, "end_time")
    assert "all requirements met" in log_install
    # serial jobs without -pe or -l ncpus: NSLOTS=1, one thread
    for name, log in (("install.com", log_install), ("download_model_data.com", log_download)):
        assert f"{name}: CPU threads: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1" in log, log[-3000:]
    # the download job: the data passes its checksums, the model is in the cache, PyTorch files only
    data = g / "data" / "go-emotions"
    assert {name: sha256(data / name) for name in SHA256} == SHA256
    snapshot = next((g / "huggingface_transformer_models_cache" / "models--acme--tiny-bert" / "snapshots").iterdir())
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                          "tokenizer_config.json"]
    assert "OK: acme/tiny-bert loads offline" in log_download
    # the training job: model, metrics and predictions beside it, and the summary in its log
    save = g / "models" / "go-emotions" / "tiny-bert"
    assert (save / "model.safetensors").exists() and (save / "goemotions.json").exists()
    for suffix in (".metrics.json", ".predictions.tsv", ".png"):
        assert save.with_name(save.name + suffix).stat().st_size > 0, suffix
    assert re.search(r"^Test macro F1 \d\.\d+", log_train, re.M), log_train[-3000:]
    assert f"run_transformer_model.com: job {j_train} on " in log_train
    assert f"run_transformer_model.com: model: {save}" in log_train
    assert "nvidia-smi not found: no GPU report" in log_train
    assert float(train["maxvmem"].rstrip("GMKB")) > 0  # qacct reports the memory the README points to


@pytest.mark.sge
def test_a_bad_setting_fails_the_job_with_a_clear_line_in_its_log(sge: GridEngine, hec: Path, tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    j = sge.qsub("run_transformer_model.com", log_dir=logs, env=job_settings(global_storage=hec, EPOCHS="four"))
    rec = sge.wait(j, timeout=120)[-1]
    log = sge.log(logs, "run-transformer-model", j)
    assert rec["exit_status"] == "1", log
    assert log.strip().splitlines()[-1] == "run_transformer_model.com: error: EPOCHS=four is not a whole number >= 1"


@pytest.mark.sge
def test_the_gpu_count_comes_from_the_ngpus_request(sge: GridEngine, hec: Path, tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    settings = job_settings(global_storage=hec, DRY_RUN=1)
    one = sge.qsub("run_transformer_model.com", log_dir=logs, env=settings)
    two = sge.qsub("run_transformer_model.com", "-l", "ngpus=2", log_dir=logs, env=settings)
    clash = sge.qsub("run_transformer_model.com", log_dir=logs, env={**settings, "NGPUS": 2})
    for j in (one, two, clash):
        sge.wait(j, timeout=120)
    cmd_one = command_of(sge.log(logs, "run-transformer-model", one))
    assert cmd_one.startswith(f"{VENV_PYTHON} {ROOT}/bert_model.py ")
    cmd_two = command_of(sge.log(logs, "run-transformer-model", two))
    assert shlex.split(cmd_two)[:11] == [VENV_PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                         "2", "--signals-to-handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2",
                                         "--shutdown-timeout", "120", f"{ROOT}/bert_model.py"]
    assert "run_transformer_model.com: error: NGPUS=2 but the job was granted -l ngpus=1: submit with qsub -l " \
           "ngpus=2 instead" in sge.log(logs, "run-transformer-model", clash)


@pytest.mark.sge
def test_a_job_uses_the_cpus_it_was_granted(sge: GridEngine, hec: Path, tiny_bert: Path, tmp_path: Path):
    """Issue 12: 1 CPU granted -> 1 thread; the user's OMP_NUM_THREADS wins; torchrun's 2 processes on a
    2-CPU grant get 1 each. Real tiny trainings: bert_model.py's first line reports what torch uses."""
    logs = tmp_path / "logs"
    logs.mkdir()
    settings = job_settings(global_storage=hec, MODEL=tiny_bert, DEVICE="cpu", EPOCHS=1, PRECISION="fp32",
                            PLOT_FILE="", EXTRA_ARGS="--max-train-examples 32", HF_HUB_CACHE=tmp_path / "cache")
    runs = {
        "granted 1": (["-l", "ncpus=1"], {"RUN_NAME": "a"}),
        "user's 2": (["-l", "ncpus=1"], {"RUN_NAME": "b", "OMP_NUM_THREADS": 2}),
        "torchrun": (["-l", "ngpus=2", "-l", "ncpus=2"], {"RUN_NAME": "c", "BATCH_SIZE": 8}),
    }
    ids = {k: sge.qsub("run_transformer_model.com", *opts, log_dir=logs, env={**settings, **extra})
           for k, (opts, extra) in runs.items()}
    log = {}
    for k, j in ids.items():
        rec = sge.wait(j, timeout=300)[-1]
        log[k] = sge.log(logs, "run-transformer-model", j)
        assert rec["exit_status"] == "0", log[k][-3000:]
    job_line = "run_transformer_model.com: CPU threads: OMP_NUM_THREADS={n} MKL_NUM_THREADS={n} per process ({why})"
    assert job_line.format(n=1, why="-l ncpus=1 granted, 1 process(es)") in log["granted 1"]
    assert "bert_model.py: 1 CPU thread(s) per process (OMP_NUM_THREADS=1), 1 process(es)" in log["granted 1"]
    assert job_line.format(n=2, why="OMP_NUM_THREADS given") in log["user's 2"]
    assert "bert_model.py: 2 CPU thread(s) per process (OMP_NUM_THREADS=2), 1 process(es)" in log["user's 2"]
    assert job_line.format(n=1, why="-l ncpus=2 granted, 2 process(es)") in log["torchrun"]
    assert "bert_model.py: 1 CPU thread(s) per process (OMP_NUM_THREADS=1), 2 process(es)" in log["torchrun"]


def job_shell(job_id: int, task_id: int | None = None) -> int:
    """PID of the shell running this Grid Engine job's script (of this task of an array job): it leads the
    job's process group. All tasks of an array job run the same script file; their environments differ."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"job_scripts/{job_id}".encode() in (proc / "cmdline").read_bytes():
                if task_id is None or f"SGE_TASK_ID={task_id}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process runs the script of job {job_id}" + (f" task {task_id}" if task_id else ""))


@pytest.mark.sge
@pytest.mark.parametrize("ngpus", [1, 2])
def test_a_signalled_job_checkpoints_exits_99_and_grid_engine_reruns_it(sge: GridEngine, goemotions_dir: Path,
                                                                       tiny_bert: Path, tmp_path: Path, ngpus: int):
    """What s_rt / -notify do on the HEC: SIGUSR1 to the job's process group -> checkpoint, exit 99, requeue,
    resume; with -l ngpus=2 through torchrun (2 CPU processes here, gloo)."""
    data = write_slice(goemotions_dir, tmp_path / "data", {"train": 640, "dev": 48, "test": 48})
    logs, save = tmp_path / "logs", tmp_path / "models" / "tiny"
    logs.mkdir()
    j = sge.qsub("run_transformer_model.com", "-l", f"ngpus={ngpus}", log_dir=logs, env=job_settings(
        DATA_DIR=data, SAVE_FP=save, MODEL=tiny_bert, DEVICE="cpu", EPOCHS=1, PRECISION="fp32", PLOT_FILE="",
        BATCH_SIZE=16 // ngpus, CHECKPOINT_EVERY=0, HF_HUB_CACHE=tmp_path / "cache"))
    deadline = time.monotonic() + 180
    while "epoch 1/1" not in sge.log(logs, "run-transformer-model", j):  # the training loop has started
        assert time.monotonic() < deadline and sge.running(j), sge.log(logs, "run-transformer-model", j)
        time.sleep(0.2)
    os.killpg(job_shell(j), signal.SIGUSR1)  # as Grid Engine does: to the job's whole process group
    records = sge.wait(j, timeout=300, records=2)
    log = sge.log(logs, "run-transformer-model", j)
    assert [(r["exit_status"], r["failed"].split()[0]) for r in records] == [("99", "25"), ("0", "0")], log[-3000:]
    assert records[0]["failed"].endswith("rescheduling")
    assert re.search(r"SIGUSR1: checkpoint written to \S*/tiny\.checkpoint\.pt at epoch 1 step \d+;", log), log[-3000:]
    assert "exit 99, so Grid Engine requeues this job and the rerun resumes" in log
    assert re.search(rf"^run_transformer_model\.com: job {j} on .*, restarted=1$", log, re.M), log[-3000:]
    assert re.search(r"^resumed from \S*/tiny\.checkpoint\.pt: epoch 1, step \d+ of 40$", log, re.M), log[-3000:]
    assert f"{ngpus} process(es) x batch {16 // ngpus}" in log
    assert re.search(r"^Test macro F1", log, re.M) and (save / "model.safetensors").exists()


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("true", "1 error")])
def test_without_grid_engine_the_job_tests_skip_except_in_ci(ci: str, outcome: str, tmp_path: Path):
    env = {**os.environ, "SGE_ROOT": "/nonexistent", "CI": ci}  # qstat now fails, as where none is installed
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rse", "-p", "no:cacheprovider",
                        f"{Path(__file__)}::test_a_bad_setting_fails_the_job_with_a_clear_line_in_its_log"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert outcome in r.stdout, r.stdout
    if ci:
        assert "Grid Engine tests must run in CI: qstat -f fails" in r.stdout
    else:
        assert "start one with `sudo bash tests/sge/setup_sge.sh start`" in r.stdout


def task_log(log_dir: Path, job_id: int, task_id: int) -> str:
    """The log of one task of an array job: NAME.o<JOB_ID>.<TASK>."""
    path = log_dir / f"run-transformer-model.o{job_id}.{task_id}"
    return path.read_text(errors="replace") if path.exists() else f"(no log {path})"


@pytest.mark.sge
def test_a_sweep_array_job_gives_each_task_its_line(sge: GridEngine, hec: Path, tmp_path: Path):
    """qsub -t 1-4 -v SWEEP=... on a 3-line sweep (DRY_RUN): tasks 1-3 print their line's command, task 4 fails
    with one line; a plain job with DRY_RUN=1 lists all three."""
    logs = tmp_path / "logs"
    logs.mkdir()
    sweep = write_sweep(tmp_path / "tax.tsv", "TAXONOMY\tSEED", "original\t", "ekman\t5", "sentiment\t")
    settings = job_settings(global_storage=hec, DRY_RUN=1, SWEEP=sweep)
    j = sge.qsub("run_transformer_model.com", "-t", "1-4", log_dir=logs, env=settings)
    plain = sge.qsub("run_transformer_model.com", log_dir=logs, env=settings)
    records = sge.wait(j, timeout=120, records=4)
    sge.wait(plain, timeout=120)
    assert sorted((int(r["taskid"]), r["exit_status"]) for r in records) == [(1, "0"), (2, "0"), (3, "0"), (4, "1")]
    commands = [command_of(task_log(logs, j, t)) for t in (1, 2, 3)]
    save = hec / "models" / "go-emotions"
    assert [re.search(r"--taxonomy (\w+) ", c)[1] for c in commands] == ["original", "ekman", "sentiment"]
    assert [re.search(r"--seed (\d+) ", c)[1] for c in commands] == ["42", "5", "42"]
    assert [f"{save}/bert-base-uncased-tax-task{t} " in c for t, c in enumerate(commands, 1)] == [True] * 3
    log4 = task_log(logs, j, 4)
    assert log4.strip().splitlines()[-1] == (f"run_transformer_model.com: error: task 4, but SWEEP={sweep} has 3 run "
                                             "line(s) (the last on line 4): qsub -t 1-3")
    listed = re.findall(r"^run_transformer_model\.com: task (\d) \(.*?\): (.*)$",
                        sge.log(logs, "run-transformer-model", plain), re.M)
    assert listed == [(str(t), c) for t, c in enumerate(commands, 1)]


@pytest.mark.sge
def test_an_array_job_of_seeds_requeues_a_signalled_task_alone(sge: GridEngine, goemotions_dir: Path,
                                                                tiny_bert: Path, tmp_path: Path):
    """qsub -t 1-3: three seeds, each task its own run; task 2 is signalled mid-epoch (as s_rt does), exits
    99 and is rerun from its checkpoint by Grid Engine, while tasks 1 and 3 never notice."""
    # 320 steps of batch 4: long enough that the signal lands mid-epoch on a loaded machine
    data = write_slice(goemotions_dir, tmp_path / "data", {"train": 1280, "dev": 48, "test": 48})
    logs, models = tmp_path / "logs", tmp_path / "models"
    logs.mkdir()
    j = sge.qsub("run_transformer_model.com", "-t", "1-3", "-l", "ncpus=1", log_dir=logs, env=job_settings(
        DATA_DIR=data, MODEL_DIR=models, MODEL=tiny_bert, DEVICE="cpu", EPOCHS=1, PRECISION="fp32", PLOT_FILE="",
        BATCH_SIZE=4, HF_HUB_CACHE=tmp_path / "cache"))

    def log(t: int) -> str:
        return task_log(logs, j, t)

    deadline = time.monotonic() + 240
    while "epoch 1/1" not in log(2):  # task 2's training loop has started
        assert time.monotonic() < deadline and sge.running(j), log(2)
        time.sleep(0.2)
    os.killpg(job_shell(j, 2), signal.SIGUSR1)  # as Grid Engine does: to that task's whole process group
    records = sge.wait(j, timeout=400, records=4)
    runs = sorted((int(r["taskid"]), r["exit_status"], r["failed"].split()[0]) for r in records)
    assert runs == [(1, "0", "0"), (2, "0", "0"), (2, "99", "25"), (3, "0", "0")], [log(t)[-2000:] for t in (1, 2, 3)]
    name = tiny_bert.name
    assert re.search(rf"^resumed from \S*/{name}-task2\.checkpoint\.pt: epoch 1, step \d+ of 320$", log(2), re.M)
    assert re.search(rf"^run_transformer_model\.com: job {j} task 2 on .*, restarted=1$", log(2), re.M)
    for t in (1, 3):
        assert "restarted=1" not in log(t) and "resumed from" not in log(t), log(t)[-2000:]
    metrics = [json.loads((models / f"{name}-task{t}.metrics.json").read_text()) for t in (1, 2, 3)]
    assert [m["args"]["seed"] for m in metrics] == [42, 43, 44]
    assert [m["args"]["save_fp"] for m in metrics] == [str(models / f"{name}-task{t}") for t in (1, 2, 3)]
    predictions = {(models / f"{name}-task{t}.predictions.tsv").read_bytes() for t in (1, 2, 3)}
    assert len(predictions) == 3  # three seeds, three different models
    for t in (1, 2, 3):
        assert (models / f"{name}-task{t}" / "model.safetensors").exists()
        assert not (models / f"{name}-task{t}.requeue").exists()
    # compare_runs.py sees three runs that differ only by seed: one group of 3
    r = subprocess.run([VENV_PYTHON, str(ROOT / "compare_runs.py"), str(models), "--format", "json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    groups = json.loads(r.stdout)["groups"]
    assert [(g["n_runs"], sorted(run["seed"] for run in g["runs"])) for g in groups] == [(3, [42, 43, 44])]
