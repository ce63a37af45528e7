"""The output rule (multilabel/outputs.py, docs/your-files.md): every script, every output option pointed at each of
the run's inputs (as given, through a symlink, through a hard link) exits non-zero with one line and leaves every
input byte-identical; files the scripts did not make are never replaced; run locks (two runs on one output: one is
refused; a stale lock is taken over with a line)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import ROOT, run_script, start, train, train_args

sys.path.insert(0, str(ROOT))

import bert_model  # noqa: E402
import compare_runs  # noqa: E402
import data_analysis  # noqa: E402
import explain  # noqa: E402
import findings_page  # noqa: E402
import keywords  # noqa: E402
import predict  # noqa: E402
import prepare_data  # noqa: E402
import rates  # noqa: E402
from multilabel import outputs  # noqa: E402


def digest(path: Path) -> dict[str, str]:
    """SHA-256 of a file, or of every file under a folder, by path."""
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    """A script's main() in this process (the output checks come before any work): (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def one_line_refusal(code: int, stderr: str, prog: str) -> None:
    assert code != 0, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), stderr
    assert "Traceback" not in stderr


def aliases(target: Path, where: Path) -> dict[str, Path]:
    """The target as given, a symlink to it, and (for a file) a hard link to it, in a folder of their own."""
    where.mkdir(parents=True, exist_ok=True)
    found = {"as given": target, "symlink": where / f"link-{target.name}"}
    found["symlink"].symlink_to(target.resolve())
    if target.is_file():
        found["hard link"] = where / f"hard-{target.name}"
        os.link(target, found["hard link"])
    return found


# ------------------------------------------------------------------------------------------ each script's runs


@pytest.fixture(scope="module")
def world(trained, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The inputs of one run of each script: real data, a real base model and a real trained run."""
    data, run, _ = trained
    tmp = tmp_path_factory.mktemp("outputs")
    table = tmp / "mine.csv"
    table.write_text("text,labels\n" + "".join(f"text number {i},{'a' if i % 2 else 'b'}\n" for i in range(60)),
                     encoding="utf-8")
    corpus = tmp / "corpus.txt"
    corpus.write_text("I love this!\nWhat on earth?\n", encoding="utf-8")
    posts = tmp / "posts.csv"  # labelled with a column kept, and explained: the findings scripts' inputs
    posts.write_text("text,year\nI love this!,2019\nWhat on earth?,2020\nThanks a lot,2020\n", encoding="utf-8")
    model = run / "model"
    assert predict.main([str(model), "--input", str(posts), "--text-column", "text", "--keep-columns", "year",
                         "--output", str(tmp / "labels.tsv")]) == 0
    assert explain.main([str(model), "--input", str(posts), "--text-column", "text", "--labels", "all",
                         "--output", str(tmp / "expl.jsonl")]) == 0
    return {"data": data, "run": run, "tiny": tiny_bert, "table": table, "corpus": corpus, "tmp": tmp,
            "posts": posts, "labels": tmp / "labels.tsv", "expl": tmp / "expl.jsonl"}


def bert_model_case(w: dict) -> tuple:
    d = w["data"]
    argv = [d / "train.tsv", d / "dev.tsv", d / "test.tsv", d / "emotions.txt", w["tmp"] / "new" / "model",
            "--transformer-model", w["tiny"], "--epochs", "1"]
    inputs = [d / "train.tsv", d / "dev.tsv", d / "test.tsv", d / "emotions.txt", w["tiny"],
              w["tiny"] / "config.json"]
    return bert_model.main, "bert_model.py", argv, {"SAVE_FP": 4, "--metrics-file": None,
                                                      "--predictions-file": None, "--plot-file": None}, inputs


def predict_case(w: dict) -> tuple:
    model = w["run"] / "model"
    argv = [model, "--input", w["corpus"], "--output", w["tmp"] / "new" / "labels.tsv"]
    return predict.main, "predict.py", argv, {"--output": None}, [model, model / "config.json", w["corpus"]]


def compare_runs_case(w: dict) -> tuple:
    run = w["run"]
    argv = [run, "--output", w["tmp"] / "table.txt"]
    inputs = [run / "metrics.json", run / "predictions.tsv", run / "metrics.png"]
    return compare_runs.main, "compare_runs.py", argv, {"--output": None, "--plot": None}, inputs


def data_analysis_case(w: dict) -> tuple:
    d = w["data"]
    argv = [d, "--tokenizer", w["tiny"]]
    inputs = [d / "train.tsv", d / "dev.tsv", d / "test.tsv", d / "emotions.txt", w["tiny"] / "vocab.txt"]
    return data_analysis.main, "data_analysis.py", argv, {"--output": None}, inputs


def prepare_data_case(w: dict) -> tuple:
    argv = [w["table"], w["tmp"] / "prepared", "--tokenizer", w["tiny"]]
    inputs = [w["table"], w["table"].parent, w["tiny"], w["tiny"] / "vocab.txt"]
    return prepare_data.main, "prepare_data.py", argv, {"OUT_DIR": 1}, inputs


def explain_case(w: dict) -> tuple:
    model = w["run"] / "model"
    argv = [model, "--input", w["corpus"], "--output", w["tmp"] / "new" / "expl.jsonl"]
    return explain.main, "explain.py", argv, {"--output": None}, [model, model / "config.json", w["corpus"]]


def findings_inputs(w: dict, made: Path) -> list[Path]:
    """A labelled (or explained) corpus: the file, its summary, and the corpus it recorded."""
    return [made, made.with_name(made.name + ".meta.json"), w["posts"]]


def keywords_case(w: dict) -> tuple:
    argv = [w["labels"], "--output", w["tmp"] / "new" / "k.tsv", "--plot", w["tmp"] / "new" / "k.png"]
    return keywords.main, "keywords.py", argv, {"--output": None, "--plot": None}, findings_inputs(w, w["labels"])


def keyword_counts_case(w: dict) -> tuple:
    argv = [w["labels"], "--counts", w["tmp"] / "new" / "counts.json"]
    return keywords.main, "keywords.py", argv, {"--counts": None}, findings_inputs(w, w["labels"])


def rates_case(w: dict) -> tuple:
    argv = [w["labels"], "--by", "year", "--output", w["tmp"] / "new" / "r.tsv", "--plot", w["tmp"] / "new" / "r.png"]
    return rates.main, "rates.py", argv, {"--output": None, "--plot": None}, findings_inputs(w, w["labels"])[:2]


def findings_page_case(w: dict) -> tuple:
    argv = [w["expl"], "--output", w["tmp"] / "new" / "page.html"]
    return findings_page.main, "findings_page.py", argv, {"--output": None}, findings_inputs(w, w["expl"])


CASES = {"bert_model.py": bert_model_case, "predict.py": predict_case, "compare_runs.py": compare_runs_case,
         "data_analysis.py": data_analysis_case, "prepare_data.py": prepare_data_case, "explain.py": explain_case,
         "keywords.py": keywords_case, "keywords.py --counts": keyword_counts_case, "rates.py": rates_case,
         "findings_page.py": findings_page_case}
OUTPUT_OPTIONS = {"bert_model.py": ["SAVE_FP", "--metrics-file", "--predictions-file", "--plot-file"],
                  "predict.py": ["--output"], "compare_runs.py": ["--output", "--plot"],
                  "data_analysis.py": ["--output"], "prepare_data.py": ["OUT_DIR"], "explain.py": ["--output"],
                  "keywords.py": ["--output", "--plot"], "keywords.py --counts": ["--counts"],
                  "rates.py": ["--output", "--plot"], "findings_page.py": ["--output"]}


def pointed(argv: list, option: str, at: int | None, target: Path) -> list:
    """argv with one output pointed at `target`: a positional one (its index) replaced, an option set."""
    argv = list(argv)
    if at is not None:
        argv[at] = target
        return argv
    if option in argv:
        argv[argv.index(option) + 1] = target
        return argv
    return [*argv, option, target]


@pytest.mark.parametrize("script", list(CASES))
def test_no_output_option_can_replace_an_input(script: str, world: dict, tmp_path: Path) -> None:
    """Every output option of the script, at every input of its run, as given and through links: one line, exit
    non-zero, every input byte-identical (and nothing written)."""
    main, prog, argv, options, inputs = CASES[script](world)
    assert sorted(options) == sorted(OUTPUT_OPTIONS[script])
    before = {str(p): digest(p) for p in inputs}
    tried = 0
    for option, at in options.items():
        for target in inputs:
            for how, alias in aliases(target, tmp_path / f"{option}-{target.name}-{tried}").items():
                code, err = run_main(main, pointed(argv, option, at, alias))
                assert code != 0, (option, target, how, err[-500:])
                one_line_refusal(code, err, prog)
                assert {str(p): digest(p) for p in inputs} == before, (option, target, how)
                assert not list(world["tmp"].glob("new/*")), (option, target, how)
                tried += 1
    assert tried >= 2 * len(options) * len(inputs)


def test_the_parsers_have_no_other_output_options() -> None:
    """A new output option must join OUTPUT_OPTIONS above (and the script's declared outputs)."""
    parsers = {"bert_model.py": bert_model.build_parser()}
    for prog, parser in parsers.items():
        writes = {a.option_strings[0] if a.option_strings else a.dest.upper() for a in parser._actions
                  if a.dest in ("save_fp", "output", "plot") or a.dest.endswith("_file") and a.dest != "labels"}
        assert writes == set(OUTPUT_OPTIONS[prog]), writes


# ------------------------------------------------------------------------------------------ outputs of outputs


def test_an_output_inside_save_fp_is_refused(world: dict, tmp_path: Path) -> None:
    """B2: --metrics-file inside SAVE_FP would vanish when SAVE_FP is replaced at the end."""
    main, prog, argv, _, _ = bert_model_case(world)
    save = tmp_path / "model"
    argv = pointed(argv, "SAVE_FP", 4, save)
    for option in ("--metrics-file", "--predictions-file", "--plot-file"):
        code, err = run_main(main, [*argv, option, save / "x.json"])
        one_line_refusal(code, err, prog)
        assert "replaced whole" in err
    code, err = run_main(main, [*argv, "--metrics-file", tmp_path / "m.json", "--predictions-file",
                                tmp_path / "m.json"])
    one_line_refusal(code, err, prog)
    assert not save.exists()


def test_a_save_fp_with_files_not_written_here_is_refused(world: dict, tmp_path: Path) -> None:
    """B3's other half: a folder holding a base model (no goemotions.json), or a saved model beside a user's own
    file, is not replaced."""
    main, prog, argv, _, _ = bert_model_case(world)
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "notes.txt").write_text("mine")
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in (world["run"] / "model").iterdir():
        if name.is_file():
            (saved / name.name).write_bytes(name.read_bytes())
    (saved / "my-notes.txt").write_text("mine")
    for folder, words in ((base, "without goemotions.json"), (saved, "my-notes.txt")):
        before = digest(folder)
        code, err = run_main(main, pointed(argv, "SAVE_FP", 4, folder))
        one_line_refusal(code, err, prog)
        assert words in err
        assert digest(folder) == before


def test_a_saved_model_lists_its_files(world: dict) -> None:
    """The trained run's folder is its own: replaceable by a rerun (saved_model_folder says so from its list)."""
    from multilabel import encoder

    model = world["run"] / "model"
    listed = json.loads((model / "goemotions.json").read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in model.iterdir() if p.name != "onnx-int8")
    assert encoder.saved_model_folder(model) == ""


def test_a_stopped_runs_checkpoint_needs_resume(world: dict, tmp_path: Path) -> None:
    """B4: a rerun without --resume over a stopped run's SAVE_FP refuses, rather than deleting its checkpoint."""
    main, prog, argv, _, _ = bert_model_case(world)
    save = tmp_path / "model"
    ckpt = tmp_path / "model.checkpoint.pt"
    ckpt.write_bytes(b"hours of training")
    code, err = run_main(main, pointed(argv, "SAVE_FP", 4, save))
    one_line_refusal(code, err, prog)
    assert "--resume" in err
    assert ckpt.read_bytes() == b"hours of training"


def test_predict_never_replaces_a_summary_it_did_not_write(world: dict, tmp_path: Path) -> None:
    """B18: a user's own OUT.meta.json beside --output is not silently overwritten; predict.py's own is."""
    main, prog, argv, _, _ = predict_case(world)
    out = tmp_path / "labels.tsv"
    mine = tmp_path / "labels.tsv.meta.json"
    mine.write_text('{"my": "notes"}')
    code, err = run_main(main, pointed(argv, "--output", None, out))
    one_line_refusal(code, err, prog)
    assert mine.read_text() == '{"my": "notes"}' and not out.exists()
    mine.unlink()
    assert run_main(main, pointed(argv, "--output", None, out))[0] == 0
    out.unlink()  # a summary of predict.py's own, left by an earlier run: replaced
    code, err = run_main(main, pointed(argv, "--output", None, out))
    assert code == 0, err
    assert json.loads(mine.read_text())["rows"] == 2


def test_download_data_refuses_a_prepared_folder(world: dict, tmp_path: Path, data_server) -> None:
    """B13: download_data.py into a folder prepare_data.py made would replace the user's splits and labels."""
    prepared = tmp_path / "prepared"
    r = run_script("prepare_data.py", world["table"], prepared, "--tokenizer", world["tiny"])
    assert r.returncode == 0, r.stderr
    before = digest(prepared)
    r = run_script("download_data.py", prepared, "--base-url", data_server.url)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "prepared data" in r.stderr
    assert digest(prepared) == before
    assert not data_server.log


# ------------------------------------------------------------------------------------------ locks


def lock_of(holder: dict) -> str:
    now = time.time()
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "job": None, "command": "x", "token": "t",
                       "started": now, "renewed": now, **holder})


def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(world: dict, tmp_path: Path) -> None:
    """A lock held by a live process on this host, or renewed lately on another, refuses a second run in one line;
    one of a dead process, or not renewed for LOCK_STALE_S on another host, is taken over with a line."""
    main, prog, argv, _, _ = predict_case(world)
    out = tmp_path / "labels.tsv"
    lock = outputs.lock_path(out)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for holder in ({"pid": sleeper.pid}, {"host": "node-7", "pid": 1}):
            lock.write_text(lock_of(holder))
            code, err = run_main(main, pointed(argv, "--output", None, out))
            one_line_refusal(code, err, prog)
            assert "in use by another run" in err and not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    for holder in ({"pid": sleeper.pid}, {"host": "node-7", "pid": 1, "renewed": time.time() - 1000}):
        lock.write_text(lock_of(holder))
        code, err = run_main(main, pointed(argv, "--output", None, out))
        assert code == 0, err
        assert "taking over the lock of a run that is gone" in err
        assert not lock.exists()
        out.unlink()
    lock.write_text("")  # a run killed between making its lock and writing it, long ago
    os.utime(lock, (time.time() - 1000, time.time() - 1000))
    code, err = run_main(main, pointed(argv, "--output", None, out))
    assert code == 0 and "taking over the lock of a run that is gone (not renewed for " in err, err
    out.unlink()
    lock.write_text("my own file")
    code, err = run_main(main, pointed(argv, "--output", None, out))
    one_line_refusal(code, err, prog)
    assert lock.read_text() == "my own file"


def test_two_trainings_on_one_save_fp(world: dict, tmp_path: Path) -> None:
    """B5: a second bert_model.py on a running run's SAVE_FP is refused in one line; the first finishes alone, and
    its folder is its own (seed 1's)."""
    d, save = world["data"], tmp_path / "model"
    first = start(train_args(d, save, world["tiny"], "--epochs", "30", "--seed", "1", "--batch-size", "32",
                             "--precision", "fp32"))
    try:
        deadline = time.time() + 120
        while not outputs.lock_path(save).exists() and time.time() < deadline:
            time.sleep(0.2)
        second = train(d, save, world["tiny"], "--epochs", "1", "--seed", "2", "--precision", "fp32")
        assert second.returncode == 1, second.stderr
        assert "in use by another run" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert json.loads((save / "goemotions.json").read_text())["args"]["seed"] == 1
    assert not outputs.lock_path(save).exists()
    assert len((tmp_path / "model.dev.jsonl").read_text().splitlines()) == 30


def test_two_predictions_into_one_output(world: dict, tmp_path: Path) -> None:
    """B6: the second predict.py on one --output is refused in one line; the first's output holds its own rows."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"text a {i}\n" for i in range(20_000)), encoding="utf-8")
    b.write_text("only b\n", encoding="utf-8")
    out, model = tmp_path / "o.tsv", world["run"] / "model"
    first = start(["predict.py", model, "--input", a, "--output", out, "--chunk-size", "200"])
    try:
        deadline = time.time() + 120
        while not outputs.lock_path(out).exists() and time.time() < deadline:
            time.sleep(0.1)
        second = run_script("predict.py", model, "--input", b, "--output", out)
        assert second.returncode == 1 and "in use by another run" in second.stderr, second.stderr
    finally:
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert len(out.read_text().splitlines()) == 20_001  # a.txt's rows and a header, no b.txt's
    assert sorted(p.name for p in tmp_path.glob("o.tsv.*")) == ["o.tsv.meta.json"]  # no lock, no stale .partial
