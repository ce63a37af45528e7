"""The GPU job's path, checked on a CPU (issue 17): what a first run on the HEC's GPUs would meet.

Precision resolution (native bf16 only), resuming across precisions, fp32 master weights whatever dtype a
folder was saved in, ranks that agree to stop on a non-finite loss, a full disk, torchrun launchers with
and without --shutdown-timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, make_tiny_bert, run_script, write_slice

import bert_model
from multilabel import device, encoder

FP32 = ["--epochs", "1", "--batch-size", "8", "--log-every", "1", "--learning-rate", "1e-3", "--resume"]


@pytest.fixture(scope="module")
def data(goemotions_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slice(goemotions_dir, tmp_path_factory.mktemp("cuda_path") / "data",
                       {"train": 96, "dev": 32, "test": 32})


def args(data: Path, save: Path, model: Path, *extra: str) -> list[str]:
    return [str(data / "train.tsv"), str(data / "dev.tsv"), str(data / "test.tsv"), str(data / "emotions.txt"),
            str(save), "--transformer-model", str(model), *FP32, *extra]


def loss_curve(metrics: Path) -> list[float]:
    return [loss for _, loss in json.loads(metrics.read_text())["loss_curve"]]


# ------------------------------------------------------------------------------ 2. precision auto


def test_auto_precision_takes_bf16_only_where_the_gpu_has_it_natively(monkeypatch: pytest.MonkeyPatch):
    """A V100 or T4: torch.cuda.is_bf16_supported() says yes by default (emulation), no when asked for native."""
    v100 = lambda including_emulation=True: including_emulation  # noqa: E731
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", v100)
    assert device.resolve_precision("auto", cuda=True) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100, H100
    assert device.resolve_precision("auto", cuda=True) == "bf16"
    assert device.resolve_precision("fp32", cuda=True) == "fp32"  # what is asked for is kept


# ------------------------------------------------------------------------------ 3. resume across precisions

# bert_model.py with `auto` resolving to what the GPU of this "node" has: the job requeued onto another type.
FAKED = ("import sys, bert_model, multilabel.device as d; d.resolve_precision = lambda requested, cuda: {!r}; "
         "sys.exit(bert_model.main())")


def start_faked(precision: str, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-c", FAKED.format(precision), *argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop_at(proc: subprocess.Popen, prefix: str) -> tuple[str, str]:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            proc.send_signal(signal.SIGUSR1)
            break
    out, err = proc.communicate(timeout=300)
    return "".join(seen) + out, err


@pytest.mark.parametrize(("first", "then"), [("bf16", "fp16"), ("fp16", "bf16")])
def test_a_job_requeued_onto_another_gpu_type_resumes_in_its_precision(data, tiny_bert, tmp_path, first, then):
    save = tmp_path / "model"
    argv = args(data, save, tiny_bert, "--precision", "auto", "--metrics-file", str(tmp_path / "m.json"))
    out, err = stop_at(start_faked(first, argv), "epoch 1 batch 5/")
    assert "checkpoint written" in out, out + err
    ck = torch.load(tmp_path / "model.checkpoint.pt", weights_only=True)
    assert ck["precision"] == first and ck["args"]["precision"] == "auto"
    proc = start_faked(then, argv)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    moved = f"written in {first}, this run is {then} (another GPU type?): the fp32 weights and AdamW state carry on"
    assert moved in out, out
    assert ("the fp16 loss scaler starts afresh" in out) == (then == "fp16")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["precision"] == then and all(map(torch.isfinite, torch.tensor(loss_curve(tmp_path / "m.json"))))
    assert (save / "model.safetensors").exists()


def test_resuming_in_the_same_precision_says_nothing_about_it(data, tiny_bert, tmp_path):
    save = tmp_path / "model"
    argv = args(data, save, tiny_bert, "--precision", "auto")
    stop_at(start_faked("fp16", argv), "epoch 1 batch 5/")
    proc = start_faked("fp16", argv)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "resumed from" in out and "written in" not in out


# ------------------------------------------------------------------------------ 4. fp32 master weights


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_folder_saved_in_half_precision_trains_as_the_same_weights_in_fp32(data, minilm, tmp_path, dtype):
    """transformers 5 loads a folder in the dtype of its config; training must not see that."""
    from transformers import BertModel

    tiny = make_tiny_bert(tmp_path / "tiny", minilm, dropout=0.0)
    model = BertModel.from_pretrained(tiny, trust_remote_code=False, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():  # weights that both files hold exactly
            p.copy_(p.to(dtype).float())
    model.save_pretrained(tmp_path / "fp32")
    model.to(dtype).save_pretrained(tmp_path / "half")
    assert json.loads((tmp_path / "half" / "config.json").read_text())["dtype"] == str(dtype).removeprefix("torch.")
    for folder in ("fp32", "half"):  # the tokenizer's files
        for f in tiny.iterdir():
            if f.name not in ("config.json", "model.safetensors"):
                shutil.copy(f, tmp_path / folder / f.name)

    loaded, *_ = encoder.load_pretrained(str(tmp_path / "half"), ["a", "b"])
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    curves = {}
    for folder in ("fp32", "half"):
        m = tmp_path / f"{folder}.json"
        r = run_script("bert_model.py", *args(data, tmp_path / f"out-{folder}", tmp_path / folder,
                                              "--precision", "fp32", "--metrics-file", str(m), "--seed", "3"))
        assert r.returncode == 0, r.stderr[-2000:]
        curves[folder] = loss_curve(m)
    assert len(curves["half"]) == 12 and curves["half"][-1] < curves["half"][0]
    assert max(abs(a - b) for a, b in zip(curves["fp32"], curves["half"], strict=True)) < 1e-6


# ------------------------------------------------------------------------------ 5. a NaN on one rank

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def test_a_non_finite_loss_on_one_rank_stops_every_rank(goemotions_dir, minilm, tmp_path):
    """One word's embedding is NaN and one training text has it: only the rank whose batch holds it sees a NaN
    loss at that step. All ranks must stop together, and no checkpoint of NaN weights may be written."""
    from transformers import AutoTokenizer, BertModel

    tiny = make_tiny_bert(tmp_path / "tiny", minilm, dropout=0.0)
    word = AutoTokenizer.from_pretrained(tiny, trust_remote_code=False).convert_tokens_to_ids("zebra")
    model = BertModel.from_pretrained(tiny, trust_remote_code=False)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[word] = float("nan")
    model.save_pretrained(tiny)
    data = write_slice(goemotions_dir, tmp_path / "data", {"train": 64, "dev": 16, "test": 16})
    rows = (data / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows[20] = "a zebra\t" + rows[20].split("\t", 1)[1]
    (data / "train.tsv").write_text("".join(rows), encoding="utf-8")
    save = tmp_path / "run" / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, "bert_model.py", *args(data, save, tiny, "--batch-size", "4", "--precision", "fp32",
                                            "--checkpoint-every", "1", "--log-every", "100", "--seed", "1")]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode != 0
    assert r.stderr.count("error: loss is not finite at epoch 1 step") == 2, r.stderr[-3000:]  # both ranks, agreed
    ck = torch.load(save.parent / "model.checkpoint.pt", weights_only=True)  # the last good step's
    trained = {k: v for k, v in ck["model"].items() if "word_embeddings" not in k}  # all but the poisoned row
    assert all(torch.isfinite(v).all() for v in trained.values())
    assert ck["step"] >= 1


# ------------------------------------------------------------------------------ 7. a full disk


def parameters(model: Path) -> int:
    from transformers import BertModel
    return sum(p.numel() for p in BertModel.from_pretrained(model, trust_remote_code=False).parameters())


def test_a_disk_without_room_for_a_checkpoint_is_refused_before_training(data, tiny_bert, small_disk):
    disk = small_disk(8)
    (disk / ".model.checkpoint.pt.tmp-12345").write_bytes(bytes(5 * 2**20))  # a SIGKILLed write's partial file
    r = run_script("bert_model.py", *args(data, disk / "model", tiny_bert, "--precision", "fp32"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"bert_model.py: error: {disk}: 8 MiB free, but a checkpoint needs about "), lines
    assert "choose another SAVE_FP" in lines[0]
    # not a step trained, nothing written, and the partial file was removed before the room was measured
    assert "epoch 1/1" not in r.stdout + r.stderr and not any(disk.iterdir())


def test_a_checkpoint_that_fills_the_disk_keeps_the_previous_one_and_resumes(data, tiny_bert, small_disk, tmp_path):
    """Room for one checkpoint and the model, not for a second checkpoint beside the first: the second write
    fails with one line, its partial file is removed, the first stays, and with room again the run resumes
    and ends where an uninterrupted run does."""
    from safetensors.torch import load_file

    n = parameters(tiny_bert)
    size = int((20 * n + 2 * 2**20) / 2**20) + 1  # the refusal's 20 bytes a parameter, and the tokenizer
    assert 12 * n * 2 > size * 2**20  # two mid-epoch-1 checkpoints (weights and AdamW state) do not fit
    disk = small_disk(size)
    save = disk / "model"
    run = args(data, save, tiny_bert, "--precision", "fp32", "--checkpoint-every", "4")
    r = run_script("bert_model.py", *run)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "the second checkpoint may fail" in r.stdout
    lines = [line for line in r.stderr.splitlines() if "error" in line.lower()]  # the rest is tqdm's bar
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"bert_model.py: error: {disk}: no room for the checkpoint: it needs about "), lines
    assert "the previous checkpoint and model are kept" in lines[0] and "Traceback" not in r.stderr
    assert sorted(p.name for p in disk.iterdir()) == ["model.checkpoint.pt", "model.requeue"] or \
        sorted(p.name for p in disk.iterdir()) == ["model.checkpoint.pt"]
    assert torch.load(disk / "model.checkpoint.pt", weights_only=True)["step"] == 4

    small_disk(200, disk)  # room again
    r = run_script("bert_model.py", *run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stdout and "step 4 of 12" in r.stdout
    ref = tmp_path / "ref" / "model"
    r = run_script("bert_model.py", *args(data, ref, tiny_bert, "--precision", "fp32", "--checkpoint-every", "4"))
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_file(save / "model.safetensors"), load_file(ref / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_the_end_of_epoch_checkpoint_holds_the_weights_once_when_that_epoch_is_the_best(data, tiny_bert, tmp_path):
    save = tmp_path / "model"
    cmd = args(data, save, tiny_bert, "--precision", "fp32", "--epochs", "2")
    proc = subprocess.Popen([sys.executable, "bert_model.py", *cmd], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out, err = stop_at(proc, "epoch 1: average loss")
    assert "after epoch 1" in out, out + err
    ck = torch.load(tmp_path / "model.checkpoint.pt", weights_only=True)
    assert ck["best"]["epoch"] == 1 and ck["best"]["state"] is None and ck["epoch"] == 1 and ck["step"] == 0
    n = sum(v.numel() for v in ck["model"].values())
    assert (tmp_path / "model.checkpoint.pt").stat().st_size < 13 * n  # weights and AdamW: 12 bytes a parameter
    r = run_script("bert_model.py", *cmd)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = tmp_path / "ref"
    r2 = run_script("bert_model.py", *args(data, ref, tiny_bert, "--precision", "fp32", "--epochs", "2"))
    assert r2.returncode == 0
    from safetensors.torch import load_file
    a, b = load_file(save / "model.safetensors"), load_file(ref / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


# ------------------------------------------------------------------------------ 1. torchrun's flags


def old_launcher(tmp_path: Path) -> Path:
    """A `python` whose torchrun is torch 2.11's: the same launcher without --shutdown-timeout."""
    shim = tmp_path / "torchrun_2_11.py"
    shim.write_text(
        "import sys\n"
        "from torch.distributed import run\n"
        "new = run.get_args_parser\n"
        "def old():\n"
        "    p = new()\n"
        "    for a in [a for a in p._actions if '--shutdown-timeout' in a.option_strings]:\n"
        "        p._remove_action(a)\n"
        "        for g in p._action_groups:\n"
        "            if a in g._group_actions:\n"
        "                g._group_actions.remove(a)\n"
        "        for s in a.option_strings:\n"
        "            p._option_string_actions.pop(s)\n"
        "    p.set_defaults(shutdown_timeout=None)  # what the old launcher's config has: its fixed 30 s\n"
        "    return p\n"
        "run.get_args_parser = old\n"
        "sys.argv[0] = 'torchrun'\n"
        "run.main()\n", encoding="utf-8")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/bash\nif [ "$1 $2" = "-m torch.distributed.run" ]; then shift 2; '
                      f'exec {sys.executable} {shim} "$@"; fi\nexec {sys.executable} "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    r = subprocess.run([python, "-m", "torch.distributed.run", "--shutdown-timeout", "1", "x.py"],
                       capture_output=True, text=True)
    assert "unrecognized arguments: --shutdown-timeout" in r.stderr  # as torch 2.11's torchrun answers
    return python


@pytest.mark.parametrize("launcher", ["torch 2.11", "this torch"])
def test_the_multi_gpu_job_passes_only_the_flags_its_torchrun_accepts(small_data, tiny_bert, tmp_path, launcher):
    python = old_launcher(tmp_path) if launcher == "torch 2.11" else Path(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("global_storage", "JOB_ID", "SGE_TASK_ID")}
    env.update(PYTHON=str(python), CONDA_MODULE="", DATA_DIR=str(small_data), SAVE_FP=str(tmp_path / "out" / "m"),
               MODEL=str(tiny_bert), DEVICE="cpu", NGPUS="2", EPOCHS="1", BATCH_SIZE="8", PRECISION="fp32",
               PLOT_FILE="", HF_HUB_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    r = subprocess.run(["bash", str(ROOT / "run_transformer_model.com")], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "unrecognized arguments" not in r.stderr
    if launcher == "torch 2.11":
        command = next(line for line in r.stdout.splitlines() if line.startswith("run_transformer_model.com: command:"))
        assert "--shutdown-timeout" not in command
        assert "torchrun: no --shutdown-timeout here (torch older than 2.12): the workers get its fixed 30 s" \
            in r.stdout
    else:
        assert "--shutdown-timeout 120" in r.stdout
        assert "torchrun: the workers get 120 s after a stop signal to write their checkpoint" in r.stdout
    assert "--signals-to-handle SIGTERM\\,SIGINT\\,SIGHUP\\,SIGQUIT\\,SIGUSR1\\,SIGUSR2" in r.stdout or \
        "--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2" in r.stdout
    assert "2 process(es) x batch 8" in r.stdout and (tmp_path / "out" / "m" / "model.safetensors").exists()


# ------------------------------------------------------------------------------ part 2: --compile


def test_compile_with_static_shapes_gives_the_eager_loss_curve(data, minilm, tmp_path):
    """--compile pads every batch to the batch size (rows at weight 0) and to a width that is a multiple of 8;
    the loss and the gradients stay those of the real examples (no dropout, so the two runs see the same
    arithmetic). 96 examples at batch 8 with 20 dropped: the last batch is short."""
    tiny = make_tiny_bert(tmp_path / "tiny", minilm, dropout=0.0)
    curves = {}
    for mode in ("eager", "compile"):
        m = tmp_path / f"{mode}.json"
        r = run_script("bert_model.py", *args(data, tmp_path / mode, tiny, "--precision", "fp32", "--max-length", "16",
                                              "--max-train-examples", "76", "--metrics-file", str(m),
                                              *(["--compile"] if mode == "compile" else [])),
                       env={"OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        curves[mode] = loss_curve(m)
    assert len(curves["eager"]) == 10 and curves["eager"][-1] < curves["eager"][0]
    assert max(abs(a - b) for a, b in zip(curves["eager"], curves["compile"], strict=True)) < 1e-4


def test_static_batches_pad_rows_at_weight_zero_and_widths_to_eight():
    lengths = [5, 9, 12, 3, 7]
    order = [[0, 1, 2, 3], [4]]
    plain = bert_model.rank_batches(order, lengths, 0, 4, False, torch.device("cpu"))
    static = bert_model.rank_batches(order, lengths, 0, 4, True, torch.device("cpu"))
    assert [(r.tolist(), w.tolist(), n) for r, w, n in plain] == [([0, 1, 2, 3], [1.0] * 4, 12), ([4], [1.0], 7)]
    assert [(r.tolist(), w.tolist(), n) for r, w, n in static] == [([0, 1, 2, 3], [1.0] * 4, 16),
                                                                    ([4, 4, 4, 4], [1.0, 0.0, 0.0, 0.0], 8)]
    # under DDP, rank 1 of batch size 2 has nothing in the last global batch: one row at weight 0
    rank1 = bert_model.rank_batches(order, lengths, 1, 2, False, torch.device("cpu"))
    assert [(r.tolist(), w.tolist()) for r, w, _ in rank1] == [([2, 3], [1.0, 1.0]), ([4], [0.0])]
