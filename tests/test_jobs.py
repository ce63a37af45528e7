"""The HEC job files: install.com, download_model_data.com, run_transformer_model.com.

Part 1 runs them with bash directly (settings come from the environment, as `qsub -v` gives them).
Part 2 submits them to a real single-host Grid Engine (tests/sge/setup_sge.sh, started by .ci/run):
the chain install -> download -> train with -hold_jid, a requeue on exit 99, torchrun from -l ngpus.
"""

from __future__ import annotations

import hashlib
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
from conftest import ROOT, GridEngine, HubStandIn, free_port, write_slice

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
            "BATCH_SIZE", "LEARNING_RATE", "MAX_LENGTH", "SEED", "THRESHOLD", "TAXONOMY", "PRECISION",
            "CHECKPOINT_EVERY", "CHECKPOINT_MINUTES", "DEVICE", "EXTRA_ARGS", "DRY_RUN", "NGPUS", "HF_HOME",
            "HF_HUB_CACHE",
            "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "JOB_ID", "SGE_O_WORKDIR", "ENV_FILE",
            "REQUIREMENTS", "DOWNLOAD_RETRIES", "GOEMOTIONS_BASE_URL")


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
                          "--epochs 4 --batch-size 16 --learning-rate 5e-5 --max-length 50 --seed 42 --threshold 0.3 "
                          "--taxonomy original --precision auto --checkpoint-every 0 --checkpoint-minutes 10 --resume ")
    assert (f"--metrics-file {save}/bert-base-uncased.metrics.json --predictions-file "
            f"{save}/bert-base-uncased.predictions.tsv --plot-file {save}/bert-base-uncased.png --cuda") in cmd
    assert f"HF_HUB_CACHE={hec}/huggingface_transformer_models_cache HF_HUB_OFFLINE=1 NGPUS=1" in r.stdout


def test_every_training_setting_can_be_overridden(hec: Path, tmp_path: Path):
    data = hec / "data" / "go-emotions"
    r = job("run_transformer_model.com", global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1, CONDA_MODULE="",
            DATA_DIR=data, MODEL="roberta-base", SAVE_FP=tmp_path / "m" / "rb", METRICS_FILE=tmp_path / "met.json",
            PREDICTIONS_FILE=tmp_path / "pred.tsv", PLOT_FILE="", EPOCHS=2, BATCH_SIZE=32, LEARNING_RATE="3e-5",
            MAX_LENGTH=64, SEED=7, THRESHOLD=0.25, TAXONOMY="ekman", PRECISION="fp16", CHECKPOINT_EVERY=0,
            CHECKPOINT_MINUTES=2.5,
            DEVICE="cpu", EXTRA_ARGS="--max-train-examples 64 --log-every 5", HF_HUB_CACHE=tmp_path / "cache",
            HF_HUB_OFFLINE=0)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "module" not in r.stdout  # CONDA_MODULE= skips the module step silently
    assert command_of(r.stdout) == (
        f"{VENV_PYTHON} {ROOT}/bert_model.py {data}/train.tsv {data}/dev.tsv {data}/test.tsv {data}/emotions.txt "
        f"{tmp_path}/m/rb --transformer-model roberta-base --epochs 2 --batch-size 32 --learning-rate 3e-5 "
        "--max-length 64 --seed 7 --threshold 0.25 --taxonomy ekman --precision fp16 --checkpoint-every 0 "
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
def test_legacy_transformers_cache_of_the_original_readme_still_works(name: str, hec: Path, tmp_path: Path):
    legacy = tmp_path / "huggingface_transformer_models_cache"
    if name == "run_transformer_model.com":
        r = job(name, global_storage=hec, PYTHON=VENV_PYTHON, DRY_RUN=1, TRANSFORMERS_CACHE=legacy)
        assert f"HF_HUB_CACHE={legacy} HF_HUB_OFFLINE=1" in r.stdout
    else:  # stops right after (CODE_DIR has no scripts): only the cache line matters here
        r = job(name, global_storage=hec, PYTHON=VENV_PYTHON, TRANSFORMERS_CACHE=legacy, CODE_DIR=tmp_path)
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
    ("DEVICE", "tpu", "DEVICE=tpu: use cuda or cpu"),
    ("NGPUS", "0", "NGPUS=0 is not a whole number >= 1"),
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


def test_download_job_bad_setting(hec: Path):
    one_error(job("download_model_data.com", global_storage=hec, PYTHON=VENV_PYTHON, DOWNLOAD_RETRIES="many"),
              "download_model_data.com", "DOWNLOAD_RETRIES=many is not a whole number")


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


def job_shell(job_id: int) -> int:
    """PID of the shell running this Grid Engine job's script: it leads the job's process group."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"job_scripts/{job_id}".encode() in (proc / "cmdline").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process runs the script of job {job_id}")


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
