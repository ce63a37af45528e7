"""multilabel/options.py: every numeric option of every script is checked against its range when the command line
is parsed (argparse's usage, then one line naming the option and its range, exit 2, no traceback), its --help states
the range, and values in range parse as before (int stays int, float stays float: a checkpoint's recorded settings
compare equal on --resume)."""

from __future__ import annotations

import argparse
import re

import pytest
from helpers import run_script

import bert_model
import compare_runs
import download_data
import download_transformer_model
import explain
import findings_page
import keywords
import predict
import prepare_data
import tune
from multilabel.options import Range, show

TRAIN = ["train.tsv", "dev.tsv", "test.tsv", "emotions.txt", "model"]  # never read: the parser refuses first


def numeric(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if isinstance(a.type, Range)]


def refused(r: Range) -> list[str]:
    """Values the range refuses: NaN, infinities, a word, each end's first value outside, a fraction for an int."""
    bad = ["nan", "inf", "-inf", "many"]
    if r.low is not None:
        bad.append(show(r.low) if r.low_open else show(r.low - 1))
    if r.high is not None:
        bad.append(show(r.high) if r.high_open else show(r.high + 1))
    if r.kind is int:
        bad.append("2.5")
    return bad


def one_line(err: str) -> str:
    """argparse's refusal: its usage, then one line."""
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: ") and "Traceback" not in err, err
    return lines[-1]


def test_every_numeric_option_of_bert_model_refuses_what_is_out_of_its_range(capsys: pytest.CaptureFixture[str]):
    """Generated from the parser: an option added later is covered with no change here."""
    parser = bert_model.build_parser()
    actions = numeric(parser)
    assert {"learning_rate", "head_learning_rate", "epochs", "batch_size", "eval_batch_size", "log_every",
            "max_length", "stride", "max_windows", "warmup_ratio", "weight_decay", "max_grad_norm", "seed",
            "threshold", "dev_every", "checkpoint_every", "checkpoint_minutes", "max_train_examples",
            "pos_weight_cap", "focal_gamma", "focal_alpha", "asl_gamma_neg", "asl_gamma_pos", "asl_clip",
            } == {a.dest for a in actions}
    assert [a.dest for a in parser._actions if a.type in (int, float)] == []  # every number has its range
    for action in actions:
        flag = action.option_strings[-1]
        for bad in refused(action.type):
            with pytest.raises(SystemExit) as stop:
                bert_model.parse_args([*TRAIN, f"{flag}={bad}"])
            assert stop.value.code == 2
            assert one_line(capsys.readouterr().err).endswith(
                f": error: argument {flag}: {bad!r} is not {action.type}"), (flag, bad)


def test_bert_model_help_states_every_range_and_the_defaults_are_as_before():
    parser = bert_model.build_parser()
    text = " ".join(parser.format_help().split())
    for action in numeric(parser):
        assert f"[{action.type}]" in text, action.dest
    assert "print the average loss every N batches [a whole number >= 1] [no effect on results]" in text
    args = vars(bert_model.parse_args(TRAIN))
    before = {"learning_rate": 5e-5, "head_learning_rate": None, "epochs": 4, "batch_size": 16, "max_length": "auto",
              "stride": None, "max_windows": 8, "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0,
              "seed": 42, "threshold": 0.3, "eval_batch_size": 128, "log_every": 100, "dev_every": 0,
              "checkpoint_every": 0, "checkpoint_minutes": 10, "max_train_examples": None, "pos_weight_cap": 30.0,
              "focal_gamma": 2.0, "focal_alpha": 0.25, "asl_gamma_neg": 4.0, "asl_gamma_pos": 0.0, "asl_clip": 0.05}
    assert {k: args[k] for k in before} == before
    for action in numeric(parser):  # each default is in its range, and a value given is what int or float gives
        if isinstance(action.default, int | float):
            given = action.type(repr(action.default))
            assert given == action.type.kind(repr(action.default)) and type(given) is action.type.kind, action.dest


def test_a_value_at_each_end_of_its_range_is_taken():
    args = bert_model.parse_args([*TRAIN, "--epochs", "1", "--threshold", "0", "--warmup-ratio", "1",
                                  "--focal-alpha", "-1", "--max-length", "8", "--stride", "0", "--seed", "4294967295",
                                  "--learning-rate", "0", "--asl-clip", "0.999"])
    assert (args.epochs, args.threshold, args.warmup_ratio, args.focal_alpha, args.max_length, args.stride,
            args.seed, args.learning_rate, args.asl_clip) == (1, 0.0, 1.0, -1.0, 8, 0, 2**32 - 1, 0.0, 0.999)
    assert type(args.epochs) is int and type(args.threshold) is float


@pytest.mark.parametrize(("parse", "argv", "line"), [
    (predict.parse_args, ["m", "hi", "--threshold=nan"], "argument --threshold: 'nan' is not a number in [0, 1), or "
                                                         "model or tuned"),
    (predict.parse_args, ["m", "hi", "--threshold", "1"], "argument --threshold: '1' is not a number in [0, 1), or "
                                                          "model or tuned"),
    (predict.parse_args, ["m", "hi", "--batch-size", "0"], "argument --batch-size: '0' is not a whole number >= 1"),
    (predict.parse_args, ["m", "hi", "--chunk-size", "0"], "argument --chunk-size: '0' is not a whole number >= 1"),
    (predict.parse_args, ["m", "hi", "--threads", "0"], "argument --threads: '0' is not a whole number >= 1"),
    (predict.parse_args, ["m", "hi", "--top-k", "-1"], "argument --top-k: '-1' is not a whole number >= 0"),
    (tune.parse_args, ["s", "--trials", "0"], "argument --trials: '0' is not a whole number >= 1"),
    (tune.parse_args, ["s", "--workers", "0"], "argument --workers: '0' is not a whole number >= 1"),
    (tune.parse_args, ["s", "--hours", "-1"], "argument --hours: '-1' is not a number >= 0"),
    (tune.parse_args, ["s", "--dev-every", "0"], "argument --dev-every: '0' is not a whole number >= 1"),
    (tune.parse_args, ["s", "--heartbeat", "0"], "argument --heartbeat: '0' is not a number > 0"),
    (tune.parse_args, ["s", "--lease=nan"], "argument --lease: 'nan' is not a number > 0"),
    (tune.parse_args, ["s", "--random-trials", "-1"], "argument --random-trials: '-1' is not a whole number >= 0"),
    (tune.parse_args, ["s", "--prune-after", "0"], "argument --prune-after: '0' is not a whole number >= 1"),
    (tune.parse_args, ["s", "--seeds", "0"], "argument --seeds: '0' is not a whole number >= 1"),
    (tune.parse_args, ["s", "--sampler-seed", "-1"], "argument --sampler-seed: '-1' is not a whole number in [0, "
                                                     "4294967295]"),
    (compare_runs.main, ["x", "--resamples", "99"], "argument --resamples: '99' is not a whole number >= 100"),
    (compare_runs.main, ["x", "--seed", "-1"], "argument --seed: '-1' is not a whole number >= 0"),
    (prepare_data.parse_args, ["a", "b", "--split", "0.8", "0.2", "0"], "argument --split: '0' is not a number in "
                                                                         "(0, 1)"),
    (prepare_data.parse_args, ["a", "b", "--min-count", "-1"], "argument --min-count: '-1' is not a whole number >= 0"),
    (prepare_data.parse_args, ["a", "b", "--seed", "-1"], "argument --seed: '-1' is not a whole number in [0, "
                                                          "4294967295]"),
    (download_data.main, ["d", "--retries", "-1"], "argument --retries: '-1' is not a whole number >= 0"),
    (download_data.main, ["d", "--backoff", "inf"], "argument --backoff: 'inf' is not a number >= 0"),
    (download_data.main, ["d", "--timeout", "5,nan"], "argument --timeout: expected SECONDS or CONNECT,READ, each a "
                                                      "number > 0, got '5,nan'"),
    (explain.parse_args, ["m", "hi", "--ig-steps", "1"], "argument --ig-steps: '1' is not a whole number in [2, "
                                                         "1000]"),
    (explain.parse_args, ["m", "hi", "--chunk-size", "0"], "argument --chunk-size: '0' is not a whole number >= 1"),
    (keywords.parse_args, ["l", "--alpha", "1"], "argument --alpha: '1' is not a number in (0, 1)"),
    (keywords.parse_args, ["l", "--top", "0"], "argument --top: '0' is not a whole number >= 1"),
    (findings_page.main, ["e", "--output", "p.html", "--texts", "0"], "argument --texts: '0' is not a whole number "
                                                                      ">= 1"),
    (download_transformer_model.parse_args, ["--retries", "-1"], "argument --retries: '-1' is not a whole number >= 0"),
    (download_transformer_model.parse_args, ["--retry-wait", "nan"], "argument --retry-wait: 'nan' is not a number "
                                                                      ">= 0"),
])
def test_each_scripts_numeric_options_refuse_what_is_out_of_range(parse, argv, line, capsys):
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    assert stop.value.code == 2
    assert one_line(capsys.readouterr().err).endswith(f": error: {line}")


@pytest.mark.parametrize(("script", "argv", "line", "help_states"), [
    ("bert_model.py", [*TRAIN, "--threshold", "1.5"], "argument --threshold: '1.5' is not a number in [0, 1)",
     "[a number in [0, 1)]"),
    ("predict.py", ["m", "hi", "--threshold", "nan"], "argument --threshold: 'nan' is not a number in [0, 1), or "
     "model or tuned", "or a number [a number in [0, 1), or model or tuned]"),
    ("tune.py", ["s", "--workers", "0"], "argument --workers: '0' is not a whole number >= 1",
     "(Grid Engine: one per task) [a whole number >= 1]"),
    ("compare_runs.py", ["x", "--resamples", "50"], "argument --resamples: '50' is not a whole number >= 100",
     "bootstrap resamples (default 10000) [a whole number >= 100]"),
    ("prepare_data.py", ["a", "b", "--split", "1", "0", "0"], "argument --split: '1' is not a number in (0, 1)",
     "[a number in (0, 1)]"),
    ("download_data.py", ["d", "--backoff", "nan"], "argument --backoff: 'nan' is not a number >= 0",
     "doubled for each next (default 1) [a number >= 0]"),
    ("download_transformer_model.py", ["--retries", "-3"], "argument --retries: '-3' is not a whole number >= 0",
     "backoff (default: 4) [a whole number >= 0]"),
])
def test_a_script_refuses_in_one_line_and_its_help_states_the_range(script, argv, line, help_states):
    r = run_script(script, *argv)
    assert r.returncode == 2 and r.stdout == "" and one_line(r.stderr) == f"{script}: error: {line}", r.stderr
    shown = run_script(script, "--help")
    assert shown.returncode == 0 and help_states in " ".join(shown.stdout.split()), shown.stdout


def test_a_range_in_words():
    assert [str(r) for r in (Range(int, low=1), Range(float, low=0, low_open=True), Range(float, high=1),
                             Range(float, 0, 1, high_open=True), Range(int, low=8, words=("auto",)))] == [
        "a whole number >= 1", "a number > 0", "a number <= 1", "a number in [0, 1)", "a whole number >= 8, or auto"]
    assert not re.search(r"\de[+-]", str(Range(int, 0, 2**32 - 1)))  # bounds as written, never 4.29497e+09
