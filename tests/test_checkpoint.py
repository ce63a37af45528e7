"""multilabel/checkpoint.py through bert_model.py: checkpoints, signals, --resume (exact, or refused for any change
that can change a result), and torchrun DDP on CPU (gloo)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, make_tiny_bert, run_script, start, stop_when, train_args, write_slice
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bert_model
from multilabel import files, losses
from multilabel.options import Range

# 200 real examples at batch 8: 25 steps an epoch, 2 epochs, fp32 so that runs are bit-comparable.
COMMON = ["--epochs", "2", "--batch-size", "8", "--precision", "fp32", "--log-every", "1",
          "--learning-rate", "1e-3", "--checkpoint-every", "4", "--resume"]


@pytest.fixture(scope="module")
def data(goemotions_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume") / "data"
    return write_slice(goemotions_dir, folder, {"train": 200, "dev": 40, "test": 40})


def args(data: Path, save: Path, model: Path, *extra: str) -> list[str]:
    return [str(a) for a in train_args(data, save, model, *COMMON, *extra)]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(folder / "model.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def reference(data, tiny_bert, tmp_path_factory):
    """The uninterrupted run (its --resume finds no checkpoint, so it starts fresh)."""
    save = tmp_path_factory.mktemp("ref") / "model"
    r = run_script(*args(data, save, tiny_bert, "--metrics-file", str(save.parent / "metrics.json")))
    assert r.returncode == 0, r.stderr[-2000:]
    return save


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_exits_99_and_resume_matches_uninterrupted(sig, data, tiny_bert, reference, tmp_path):
    save = tmp_path / "model"
    proc = start(args(data, save, tiny_bert))
    out, err = stop_when(proc, "epoch 1 batch 6/", sig)
    assert proc.returncode == 99, out[-1500:] + err[-1500:]  # the process's own exit status
    assert f"{sig.name}: checkpoint written" in out, out[-1500:]
    assert (tmp_path / "model.checkpoint.pt").exists() and not save.exists()
    assert (tmp_path / "model.requeue").read_text().startswith(sig.name)
    r = run_script(*args(data, save, tiny_bert, "--metrics-file", str(tmp_path / "metrics.json")))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stdout and "epoch 1, step " in r.stdout
    assert max_diff(weights(save), weights(reference)) <= 1e-6
    ours, ref = (json.loads(p.read_text()) for p in (tmp_path / "metrics.json", reference.parent / "metrics.json"))
    assert [round(x[1], 6) for x in ours["loss_curve"]] == [round(x[1], 6) for x in ref["loss_curve"]]
    assert not (tmp_path / "model.checkpoint.pt").exists() and not (tmp_path / "model.requeue").exists()


def test_sigkill_falls_back_to_the_last_periodic_checkpoint(data, tiny_bert, reference, tmp_path):
    save = tmp_path / "model"
    proc = start(args(data, save, tiny_bert))
    stop_when(proc, "epoch 1 batch 11/", signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    r = run_script(*args(data, save, tiny_bert))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stdout and "epoch 1, step 8 of 25" in r.stdout  # checkpoints every 4 steps
    assert max_diff(weights(save), weights(reference)) <= 1e-6


def test_timed_checkpoints(data, tiny_bert, reference, tmp_path):
    save = tmp_path / "model"  # --checkpoint-minutes 0: a checkpoint after every step
    proc = start(args(data, save, tiny_bert, "--checkpoint-every", "0", "--checkpoint-minutes", "0"))
    stop_when(proc, "epoch 1 batch 11/", signal.SIGKILL)
    r = run_script(*args(data, save, tiny_bert, "--checkpoint-every", "0", "--checkpoint-minutes", "0"))
    assert r.returncode == 0, r.stderr[-2000:]
    step = int(r.stdout.split("resumed from")[1].split("step ")[1].split(" ")[0])
    assert step >= 10  # the line for step 11 is printed before its checkpoint is written
    assert max_diff(weights(save), weights(reference)) <= 1e-6


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_is_an_error_never_a_fresh_start(damage, data, tiny_bert, reference, tmp_path):
    save = tmp_path / "model"
    shutil.copytree(reference, save)  # a good model from an earlier run
    before = (save / "model.safetensors").read_bytes()
    out, _ = stop_when(start(args(data, save, tiny_bert)), "epoch 1 batch 6/", signal.SIGTERM)
    ckpt = tmp_path / "model.checkpoint.pt"
    raw = ckpt.read_bytes()
    ckpt.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a checkpoint at all" * 100)
    r = run_script(*args(data, save, tiny_bert))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bert_model.py: error: {ckpt}: corrupt or unreadable checkpoint")
    assert (save / "model.safetensors").read_bytes() == before and ckpt.exists()


def test_resume_with_other_settings_is_refused(data, tiny_bert, tmp_path):
    save = tmp_path / "model"
    stop_when(start(args(data, save, tiny_bert)), "epoch 1 batch 6/", signal.SIGTERM)
    r = run_script(*args(data, save, tiny_bert, "--learning-rate", "2e-3"))
    assert r.returncode == 1 and "written with --learning-rate 0.001, this run has 0.002" in r.stderr


@pytest.fixture(scope="module")
def stopped(data, tiny_bert, tmp_path_factory) -> tuple[Path, bytes]:
    """A run stopped by SIGTERM mid-epoch: its SAVE_FP, and its checkpoint's bytes."""
    save = tmp_path_factory.mktemp("stopped") / "model"
    proc = start(args(data, save, tiny_bert))
    stop_when(proc, "epoch 1 batch 6/", signal.SIGTERM)
    assert proc.returncode == 99
    return save, files.checkpoint_path(save).read_bytes()


def another(action: argparse.Action, value: object) -> list[str]:
    """The command-line words that give the option of `action` a value other than `value`, valid for the parser."""
    flag = action.option_strings[-1]
    if isinstance(action, argparse._StoreTrueAction):
        return [flag]
    if action.choices:
        return [flag, next(c for c in action.choices if c != value)]
    if action.nargs == "*":
        return [flag, "[OTHER]"]
    if isinstance(action.type, Range):  # a number its range takes
        if not isinstance(value, int | float):  # None, or a word (--max-length auto)
            tries = [100, 101]
        else:
            tries = [value + 1] if action.type.kind is int else [value * 2 or 0.5, value / 2]
        return [flag, next(str(n) for n in tries if n != value and takes(action, str(n)))]
    return [flag, f"{value}-other"]


def takes(action: argparse.Action, text: str) -> bool:
    """Does the option's type take this value (is it within the option's range)?"""
    try:
        action.type(text)
    except argparse.ArgumentTypeError:
        return False
    return True


def test_every_option_that_can_change_a_result_refuses_to_resume_when_changed(data, tiny_bert, stopped, capsys):
    """For each option of bert_model.py's parser that is not on files.NO_RESULT (an option added later included,
    with no change to this test): the stopped run resumed with that one option changed is refused in one line
    naming it, and the checkpoint is kept."""
    save, ckpt = stopped
    base = args(data, save, tiny_bert)[1:]
    parsed = vars(bert_model.parse_args(base))
    options = [a for a in bert_model.build_parser()._actions if a.option_strings and a.dest not in files.NO_RESULT
               and a.dest != "help" and a.dest not in losses.unused_options(parsed)]  # another loss's: no effect
    assert len(options) >= 20 and {"max_grad_norm", "threshold", "eval_batch_size", "compile", "cuda"} <= \
        {a.dest for a in options}
    for action in options:
        code = bert_model.main([*base, *another(action, parsed[action.dest])])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, (action.dest, err)
        assert f"{files.checkpoint_path(save)}: written with {action.option_strings[-1]} " in err[0], err[0]
        assert files.checkpoint_path(save).read_bytes() == ckpt


def test_resume_on_other_data_is_refused_by_content_not_by_path(data, tiny_bert, stopped, tmp_path, capsys):
    save, ckpt = stopped
    for name, change in (("train.tsv", lambda t: t.replace("\t27\t", "\t26\t", 1)), ("dev.tsv", lambda t: t[:-200]),
                         ("emotions.txt", lambda t: t.replace("neutral", "calm"))):
        copy = tmp_path / name.split(".")[0]
        shutil.copytree(data, copy)
        (copy / name).write_text(change((data / name).read_text()), encoding="utf-8")
        argv = args(copy, save, tiny_bert)[1:]
        assert bert_model.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        role = {"train.tsv": "train", "dev.tsv": "dev", "emotions.txt": "labels"}[name]
        assert len(err) == 1 and f"written with other {role} data: SHA-256" in err[0], err
        assert files.checkpoint_path(save).read_bytes() == ckpt


def test_resume_refuses_a_checkpoint_of_another_loss_or_vocabulary(data, tiny_bert, tmp_path):
    save = tmp_path / "model"
    stop_when(start(args(data, save, tiny_bert, "--loss", "focal")), "epoch 1 batch 6/", signal.SIGTERM)
    for other, message in ((["--loss", "asl"], "written with --loss focal, this run has asl"),
                           (["--loss", "focal", "--focal-gamma", "1"], "--focal-gamma 2.0, this run has 1.0"),
                           (["--loss", "focal", "--add-tokens"], "(none), this run has [NAME] [RELIGION]")):
        r = run_script(*args(data, save, tiny_bert, *other))
        assert r.returncode == 1 and message in r.stderr.strip().splitlines()[-1], (other, r.stderr[-1500:])
    assert (tmp_path / "model.checkpoint.pt").exists()  # refused, and kept


def test_a_checkpoint_from_before_loss_options_resumes_as_bce(data, tiny_bert, reference, tmp_path):
    import torch

    save = tmp_path / "model"
    stop_when(start(args(data, save, tiny_bert)), "epoch 1 batch 6/", signal.SIGTERM)
    ckpt = tmp_path / "model.checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    for key in ("loss", "pos_weight", "pos_weight_cap", "focal_gamma", "focal_alpha", "asl_gamma_neg",
                "asl_gamma_pos", "asl_clip", "add_tokens"):
        del state["args"][key]  # as the bert_model.py of before issue 18 wrote it
    torch.save(state, ckpt)
    assert run_script(*args(data, save, tiny_bert, "--loss", "asl")).returncode == 1
    r = run_script(*args(data, save, tiny_bert))
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stderr[-2000:]
    assert max_diff(weights(save), weights(reference)) <= 1e-6


def test_resume_with_added_tokens_and_asl_matches_uninterrupted(data, tiny_bert, tmp_path):
    extra = ["--loss", "asl", "--add-tokens"]
    r = run_script(*args(data, tmp_path / "ref" / "model", tiny_bert, *extra))
    assert r.returncode == 0, r.stderr[-2000:]
    save = tmp_path / "model"
    proc = start(args(data, save, tiny_bert, *extra))
    assert stop_when(proc, "epoch 2 batch 3/", signal.SIGUSR1) and proc.returncode == 99
    r = run_script(*args(data, save, tiny_bert, *extra))
    assert r.returncode == 0 and "resumed from" in r.stdout and "2 new token(s)" in r.stdout, r.stderr[-2000:]
    assert weights(save)["bert.embeddings.word_embeddings.weight"].shape[0] == 30524
    assert max_diff(weights(save), weights(tmp_path / "ref" / "model")) <= 1e-6


# ------------------------------------------------------------------------------------ torchrun


@pytest.fixture(scope="module")
def tiny_no_dropout(minilm, tmp_path_factory):
    """Without dropout, one process at batch 2B and two at batch B see exactly the same computation."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny0"), minilm, dropout=0.0)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, **kw)


def test_two_gloo_processes_match_one_process_at_double_batch(data, tiny_no_dropout, tmp_path):
    one = tmp_path / "one" / "model"
    r = run_script(*args(data, one, tiny_no_dropout, "--batch-size", "8", "--metrics-file", str(one.parent / "m.json")))
    assert r.returncode == 0, r.stderr[-2000:]
    two = tmp_path / "two" / "model"
    r2 = torchrun(args(data, two, tiny_no_dropout, "--batch-size", "4", "--metrics-file", str(two.parent / "m.json")))
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout.count("Test macro F1") == 1  # only rank 0 prints
    a, b = (json.loads((p.parent / "m.json").read_text()) for p in (one, two))
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert [s for s, _ in a["loss_curve"]] == [s for s, _ in b["loss_curve"]]
    assert max(abs(x - y) for (_, x), (_, y) in zip(a["loss_curve"], b["loss_curve"], strict=True)) < 1e-4
    for split in ("dev", "test"):  # every example scored exactly once, gathered from both ranks
        assert sum(m["support"] for m in b[split]["per_label"].values()) == \
            sum(m["support"] for m in a[split]["per_label"].values())
        assert b[split]["macro"]["f1"] == pytest.approx(a[split]["macro"]["f1"], abs=1e-6)
    assert max_diff(weights(one), weights(two)) < 1e-4


def test_resume_under_torchrun(data, tiny_no_dropout, tmp_path):
    ref = tmp_path / "ref" / "model"
    r = torchrun(args(data, ref, tiny_no_dropout, "--batch-size", "4"))
    assert r.returncode == 0, r.stderr[-3000:]
    save = tmp_path / "run" / "model"
    # Grid Engine signals the job's process group, but torchrun starts its workers in sessions of their
    # own: run_transformer_model.com has torchrun pass SIGUSR1/2 on (--signals-to-handle). The workers
    # agree, checkpoint and exit 99; torchrun reports a failure of its own, so the marker file tells.
    launcher = [*TORCHRUN, "--signals-to-handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2"]
    proc = start(args(data, save, tiny_no_dropout, "--batch-size", "4"), launcher=launcher)
    out, err = stop_when(proc, "epoch 1 batch 14/", signal.SIGUSR1, group=True)
    assert (save.parent / "model.checkpoint.pt").exists(), out[-1500:] + err[-1500:]
    assert (save.parent / "model.requeue").exists()
    r = torchrun(args(data, save, tiny_no_dropout, "--batch-size", "4"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout
    assert max_diff(weights(save), weights(ref)) <= 1e-6


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.data())
def test_any_changed_value_of_any_setting_refuses_to_resume(data, tiny_bert, stopped, capsys, choice):
    """The same property with generated values: an option drawn from the parser, a value drawn for its type."""
    save, ckpt = stopped
    base = args(data, save, tiny_bert)[1:]
    parsed = vars(bert_model.parse_args(base))
    options = [a for a in bert_model.build_parser()._actions if a.option_strings and a.dest not in files.NO_RESULT
               and a.dest != "help" and a.dest not in losses.unused_options(parsed)]
    action = choice.draw(st.sampled_from(options))
    if isinstance(action, argparse._StoreTrueAction) or action.nargs == "*":
        words = another(action, parsed[action.dest])
    elif action.choices:
        words = [action.option_strings[-1], choice.draw(st.sampled_from([c for c in action.choices
                                                                           if c != parsed[action.dest]]))]
    elif isinstance(action.type, Range) and action.type.kind is int:  # --max-length: or auto
        words = [action.option_strings[-1], str(choice.draw(st.integers(1, 10_000).filter(
            lambda v: v != parsed[action.dest] and takes(action, str(v)))))]
    elif isinstance(action.type, Range):
        value = choice.draw(st.floats(0.001, 0.999).filter(
            lambda v: v != parsed[action.dest] and takes(action, repr(v))))
        words = [action.option_strings[-1], repr(value)]
    else:
        words = [action.option_strings[-1], choice.draw(st.text("abc/-_", min_size=1, max_size=12).filter(
            lambda s: not s.startswith("-")))]  # argparse would take it for an option
    code = bert_model.main([*base, *words])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and f"written with {action.option_strings[-1]} " in err[0], (words, err)
    assert files.checkpoint_path(save).read_bytes() == ckpt
