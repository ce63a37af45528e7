"""download_transformer_model.py against a stand-in for the Hugging Face hub on 127.0.0.1.

The real huggingface_hub download code runs (HF_ENDPOINT=the stand-in); the cache is a temp folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import HubStandIn, clean_env, free_port, run_clean

import download_transformer_model as dtm

SCRIPT = "download_transformer_model.py"
REPO = "acme/tiny-bert"
PYTORCH_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
# What many hub repos carry besides the PyTorch weights: never to be downloaded.
OTHER_FORMATS = {"tf_model.h5": b"tf" * 50, "flax_model.msgpack": b"flax", "rust_model.ot": b"rust",
                 "onnx/model.onnx": b"onnx", "coreml/model.mlpackage/weight.bin": b"coreml", "README.md": b"# x"}


def snapshot(cache: Path, repo: str = REPO) -> Path:
    snaps = list((cache / f"models--{repo.replace('/', '--')}" / "snapshots").iterdir())
    assert len(snaps) == 1, snaps
    return snaps[0]


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("download_transformer_model.py: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def offline_load(repo: str, **env: str | Path) -> subprocess.CompletedProcess[str]:
    """Load tokenizer and model by name in a fresh process with HF_HUB_OFFLINE=1 and no reachable hub."""
    code = ("import sys; from transformers import AutoModel, AutoTokenizer; "
            "t = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=False); "
            "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=False); "
            "print('loaded', type(m).__name__, t('hello world')['input_ids'])")
    full = clean_env(HF_HUB_OFFLINE="1", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", **env)
    return subprocess.run([sys.executable, "-c", code, repo], capture_output=True, text=True, env=full, timeout=120)


def publish_tiny(hub: HubStandIn, tiny_bert: Path) -> HubStandIn:
    """Serve the tiny BERT as acme/tiny-bert, with TF/Flax/ONNX/... copies beside it."""
    hub.add_repo(REPO, tiny_bert, extra=OTHER_FORMATS | {"pytorch_model.bin": b"a second copy of the weights"})
    return hub


@pytest.fixture
def tiny_hub(hub: HubStandIn, tiny_bert: Path) -> HubStandIn:
    return publish_tiny(hub, tiny_bert)


@pytest.fixture(scope="module")
def downloaded(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory):
    """One download of acme/tiny-bert into HF_HOME=<tmp>/hf, shared by the tests that only read it."""
    hub = publish_tiny(HubStandIn().start(), tiny_bert)
    home = tmp_path_factory.mktemp("downloaded") / "hf"
    result = run_clean(SCRIPT, "--transformer-model", REPO, env=clean_env(HF_ENDPOINT=hub.url, HF_HOME=home))
    yield hub, home, result
    hub.stop()


# --------------------------------------------------------------------------- choosing files (exact values)


def test_choose_files_prefers_safetensors_and_skips_other_frameworks():
    repo = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "pytorch_model.bin",
            "model.safetensors", "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "onnx/model.onnx",
            "coreml/fill-mask/float32_model.mlpackage/Manifest.json", "README.md", ".gitattributes"]
    assert dtm.choose_files(repo) == ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                                      "model.safetensors"]


def test_choose_files_falls_back_to_pytorch_bin_and_takes_all_shards():
    assert dtm.choose_files(["config.json", "vocab.json", "merges.txt", "pytorch_model.bin", "tf_model.h5"]) == [
        "config.json", "vocab.json", "merges.txt", "pytorch_model.bin"]
    sharded = ["config.json", "tokenizer.json", "model.safetensors.index.json", "model-00002-of-00002.safetensors",
               "model-00001-of-00002.safetensors", "pytorch_model.bin.index.json",
               "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    assert dtm.choose_files(sharded) == ["config.json", "tokenizer.json", "model.safetensors.index.json",
                                         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def test_choose_files_refuses_a_repo_without_pytorch_weights():
    with pytest.raises(dtm.DownloadError, match="no PyTorch weights"):
        dtm.choose_files(["config.json", "vocab.txt", "tf_model.h5", "flax_model.msgpack"])
    with pytest.raises(dtm.DownloadError, match="no config.json"):
        dtm.choose_files(["model.safetensors"])


def test_resolve_cache_order_and_the_legacy_variable(tmp_path: Path):
    assert dtm.resolve_cache(str(tmp_path / "c"), {"HF_HUB_CACHE": "/x"}) == (str(tmp_path / "c"), "from --cache-dir")
    value, note = dtm.resolve_cache(None, {"TRANSFORMERS_CACHE": "/legacy"})
    assert value == "/legacy" and "TRANSFORMERS_CACHE=/legacy is ignored by transformers 5" in note
    value, note = dtm.resolve_cache(None, {"TRANSFORMERS_CACHE": "/legacy", "HF_HUB_CACHE": "/new"})
    assert value is None and "HF_HUB_CACHE=/new takes precedence" in note
    assert dtm.resolve_cache(None, {"HF_HOME": "/h"}) == (None, "from HF_HOME")


# --------------------------------------------------------------------------- against the hub stand-in


def test_downloads_only_what_pytorch_needs_and_it_loads_offline(downloaded):
    tiny_hub, home, r = downloaded
    assert r.returncode == 0, r.stdout + r.stderr
    folder = snapshot(home / "hub")
    assert files_in(folder) == PYTORCH_FILES
    fetched = {p.rsplit("/", 1)[-1] for p in tiny_hub.paths("GET", "/resolve/")}
    assert fetched == PYTORCH_FILES  # nothing else went over the wire
    assert not any(name in p for p in tiny_hub.paths() for name in [*OTHER_FORMATS, "pytorch_model.bin"])
    # it says where the model is and how big, and that it loads offline
    n_files, n_bytes = dtm.folder_size(folder)
    assert f"Location: {folder} ({n_files} files, {dtm.human(n_bytes)})" in r.stdout
    assert re.search(rf"OK: {REPO} loads offline: BertModel \(bert, [\d.]+M parameters\)", r.stdout)
    assert f"export HF_HUB_CACHE={home / 'hub'} HF_HUB_OFFLINE=1" in r.stdout
    # and a fresh process loads it by name with HF_HUB_OFFLINE=1 and no reachable hub
    loaded = offline_load(REPO, HF_HOME=home)
    assert loaded.returncode == 0 and "loaded BertModel [101, 7592, 2088, 102]" in loaded.stdout, loaded.stderr


def test_a_repo_with_only_pytorch_model_bin(hub: HubStandIn, tiny_bert: Path, tmp_path: Path):
    import torch
    from safetensors.torch import load_file

    bin_file = tmp_path / "pytorch_model.bin"
    torch.save(load_file(tiny_bert / "model.safetensors"), bin_file)
    hub.add_repo("acme/old-bert", tiny_bert, skip=("model.safetensors",),
                 extra={"pytorch_model.bin": bin_file.read_bytes(), "tf_model.h5": b"tf"})
    env = clean_env(HF_ENDPOINT=hub.url, HF_HUB_CACHE=tmp_path / "c")
    r = run_clean(SCRIPT, "--transformer-model", "acme/old-bert", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert files_in(snapshot(tmp_path / "c", "acme/old-bert")) == PYTORCH_FILES - {"model.safetensors"} | {
        "pytorch_model.bin"}
    assert "OK: acme/old-bert loads offline: BertModel" in r.stdout


def test_a_repo_without_pytorch_weights_is_one_clear_error(hub: HubStandIn, tiny_bert: Path, tmp_path: Path):
    hub.add_repo("acme/tf-only", tiny_bert, skip=("model.safetensors",), extra={"tf_model.h5": b"tf"})
    r = run_clean(SCRIPT, "--transformer-model", "acme/tf-only", env=clean_env(HF_ENDPOINT=hub.url, HF_HOME=tmp_path))
    assert_one_error_line(r, "acme/tf-only", "no PyTorch weights", "tf_model.h5")
    assert hub.paths(contains="/resolve/") == []


def test_unknown_model_is_one_line_without_retries(hub: HubStandIn, tmp_path: Path):
    r = run_clean(SCRIPT, "--transformer-model", "acme/no-such-model", "--retry-wait", "5",
                  env=clean_env(HF_ENDPOINT=hub.url, HF_HOME=tmp_path))
    assert_one_error_line(r, "'acme/no-such-model' not found on " + hub.url)
    assert hub.paths() == ["/api/models/acme/no-such-model/revision/main"]  # a 404 is not retried
    assert not (tmp_path / "hub" / "models--acme--no-such-model" / "snapshots").exists()


def test_no_network_gives_up_after_bounded_retries(tmp_path: Path):
    start = time.monotonic()
    r = run_clean(SCRIPT, "--transformer-model", REPO, "--retries", "2", "--retry-wait", "0.2",
                  env=clean_env(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HOME=tmp_path))
    assert time.monotonic() - start < 60
    assert_one_error_line(r, f"cannot download '{REPO}'", "ConnectError", "no network on this node?")
    assert len(re.findall(r"retry \d/2 in", r.stderr)) == 2, r.stderr


def test_transient_hub_errors_are_retried(tiny_hub: HubStandIn, tmp_path: Path):
    tiny_hub.failures += [("^/api/models/", 503), ("^/api/models/", 502), ("^/api/models/", 500)]
    r = run_clean(SCRIPT, "--transformer-model", REPO, "--retry-wait", "0.25",
                  env=clean_env(HF_ENDPOINT=tiny_hub.url, HF_HOME=tmp_path / "hf"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "retry 1/4 in 0.25 s" in r.stderr and "retry 2/4 in 0.5 s" in r.stderr and "retry 3/4 in 1 s" in r.stderr
    # the waits as the stand-in saw them: 0.25, 0.5, 1 s between the model-info requests, plus at most 0.2 s
    # for a request on loopback (a constant or a linear wait cannot pass)
    times = tiny_hub.times("/api/models/")[:4]  # three failures, then the model info (the download follows)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 3, tiny_hub.paths()
    for gap, wait in zip(gaps, (0.25, 0.5, 1.0), strict=True):
        assert wait <= gap < wait + 0.2, gaps
    assert files_in(snapshot(tmp_path / "hf" / "hub")) == PYTORCH_FILES


def test_legacy_transformers_cache_is_honoured_and_reported(tiny_hub: HubStandIn, tmp_path: Path):
    legacy = tmp_path / "huggingface_transformer_models_cache"
    r = run_clean(SCRIPT, "--transformer-model", REPO,
                  env=clean_env(HF_ENDPOINT=tiny_hub.url, HF_HOME=tmp_path / "home", TRANSFORMERS_CACHE=legacy))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Note: TRANSFORMERS_CACHE={legacy} is ignored by transformers 5: using it as HF_HUB_CACHE" in r.stdout
    assert files_in(snapshot(legacy)) == PYTORCH_FILES
    assert not (tmp_path / "home" / "hub").exists()


def test_cache_dir_option(tiny_hub: HubStandIn, tmp_path: Path):
    r = run_clean(SCRIPT, "--transformer-model", REPO, "--cache-dir", tmp_path / "models",
                  env=clean_env(HF_ENDPOINT=tiny_hub.url, HF_HOME=tmp_path / "home"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert files_in(snapshot(tmp_path / "models")) == PYTORCH_FILES
    assert not (tmp_path / "home" / "hub").exists()
    assert f"export HF_HUB_CACHE={tmp_path / 'models'} HF_HUB_OFFLINE=1" in r.stdout


def test_with_hf_hub_offline_it_only_checks_the_cache(downloaded):
    tiny_hub, home, first = downloaded
    assert first.returncode == 0, first.stderr
    env = clean_env(HF_ENDPOINT=tiny_hub.url, HF_HOME=home)
    before = len(tiny_hub.requests)
    r = run_clean(SCRIPT, "--transformer-model", REPO, env={**env, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0 and f"OK: {REPO} loads offline" in r.stdout, r.stderr
    assert len(tiny_hub.requests) == before
    r = run_clean(SCRIPT, "--transformer-model", "acme/never-downloaded", env={**env, "HF_HUB_OFFLINE": "1"})
    assert_one_error_line(r, "acme/never-downloaded", "does not load from the cache", "HF_HUB_OFFLINE=1")
    assert len(tiny_hub.requests) == before


def test_a_download_that_does_not_load_fails(hub: HubStandIn, tiny_bert: Path, tmp_path: Path):
    hub.add_repo("acme/broken", tiny_bert, extra={"model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"})
    r = run_clean(SCRIPT, "--transformer-model", "acme/broken", env=clean_env(HF_ENDPOINT=hub.url, HF_HOME=tmp_path))
    assert_one_error_line(r, "acme/broken", "does not load from the cache")
    assert "OK:" not in r.stdout


def test_a_local_folder_is_checked_without_network(tiny_bert: Path, tmp_path: Path):
    env = clean_env(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HOME=tmp_path)
    r = run_clean(SCRIPT, "--transformer-model", tiny_bert, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    n_files, n_bytes = dtm.folder_size(tiny_bert)
    assert f"Location: {tiny_bert} ({n_files} files, {dtm.human(n_bytes)})" in r.stdout
    assert not (tmp_path / "hub").exists()
    (tmp_path / "empty").mkdir()
    assert_one_error_line(run_clean(SCRIPT, "--transformer-model", tmp_path / "empty", env=env),
                          str(tmp_path / "empty"), "does not load as a model")
    assert_one_error_line(run_clean(SCRIPT, "--transformer-model", tmp_path / "missing", env=env),
                          "no such model folder")


def test_bert_model_trains_offline_from_the_downloaded_cache(downloaded, small_data: Path, tmp_path: Path):
    tiny_hub, home, r = downloaded
    assert r.returncode == 0, r.stdout + r.stderr
    before = len(tiny_hub.requests)
    env = clean_env(HF_HOME=home, HF_HUB_OFFLINE="1", HF_ENDPOINT=tiny_hub.url)
    d, out = small_data, tmp_path / "model"
    train = run_clean("bert_model.py", d / "train.tsv", d / "dev.tsv", d / "test.tsv", d / "emotions.txt", out,
                      "--transformer-model", REPO, "--epochs", "1", "--max-train-examples", "64",
                      "--batch-size", "16", env=env)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert "Test macro F1" in train.stdout
    assert (out / "model.safetensors").exists() and (out / "goemotions.json").exists()
    assert len(tiny_hub.requests) == before  # not one request to the hub
