"""Input that must never be trusted or half-read (issue 31): a model folder that asks to run its own code, label
names that other files cannot hold, a long text's unread tokens counted, a UTF-16 or binary text file, and a pipe
where a file is read more than once. Each is refused in one line before anything is read or written (or, for a
long text, reported exactly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from helpers import ROOT, write_slice

import prepare_data
from multilabel import corpus, encoder, files, lengths
from multilabel.files import UserError


def run(*args: str | Path, stdin: Path | None = None, timeout: float = 120, pass_fds: tuple[int, ...] = (),
        **env: str | Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """A script in a fresh process (no GPU, one thread, offline), its standard input from a file (or empty): (the
    process, how many bytes of that file it read)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", **{k: str(v) for k, v in env.items()}}
    with open(stdin, "rb") if isinstance(stdin, Path) else open(os.devnull, "rb") as f:
        r = subprocess.run([sys.executable, *map(str, args)], stdin=f, capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=timeout, pass_fds=pass_fds)
        return r, os.lseek(f.fileno(), 0, os.SEEK_CUR)


def one_line(r: subprocess.CompletedProcess[str], script: str, *needles: str) -> str:
    """Exit 1 with one error line (after any lines the script logs as it starts) and no traceback."""
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith(f"{script}: error: ")]
    assert len(errors) == 1 and r.stderr.rstrip("\n").endswith(errors[0]) and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def scorer(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random classifier saved as bert_model.py saves one, reading long texts in windows of 16 tokens (14
    of the text, 4 shared), at most 2 a text: 24 tokens of a text are read."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    labels = ["joy", "anger", "neutral"]
    out = tmp_path_factory.mktemp("scorer")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, trust_remote_code=False,
                                                               num_labels=len(labels))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert, trust_remote_code=False).save_pretrained(out)
    settings = {"labels": labels, "threshold": 0.3, "max_length": 16, "long_texts": "windows", "stride": 4,
                "max_windows": 2}
    (out / files.MODEL_SETTINGS).write_text(json.dumps(settings))
    return out


# ----------------------------------------------------------------------------- B10: a model folder's own code


def folder_with_code(folder: Path, marker: Path) -> Path:
    """A model folder whose config names an architecture transformers does not know, with auto_map pointing at a
    Python file in the folder that leaves `marker` when it is imported."""
    folder.mkdir()
    classes = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel",
               "AutoModelForSequenceClassification": "evil.EvilModel", "AutoTokenizer": ["evil.EvilTokenizer", None]}
    (folder / "config.json").write_text(json.dumps({"model_type": "evil-model", "auto_map": classes}))
    (folder / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    return folder


def test_no_script_runs_code_from_a_model_folder_nor_asks_on_standard_input(small_data: Path, tmp_path: Path,
                                                                            tmp_path_factory: pytest.TempPathFactory):
    marker = tmp_path / "the folder's code ran"
    modules = tmp_path_factory.mktemp("modules")  # where transformers would copy the folder's code to import it
    evil = folder_with_code(tmp_path / "evil", marker)
    answer = tmp_path / "stdin.txt"
    answer.write_text("y\nfirst text of the corpus\nsecond\n")  # "y" to transformers' question, if it asks
    (tmp_path / "mine.csv").write_text("text,labels\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(20)))
    split_files = [small_data / f for f in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")]
    runs = {"predict.py": ["predict.py", evil, "--input", "-"],
            "bert_model.py": ["bert_model.py", *split_files, tmp_path / "model", "--transformer-model", evil],
            "data_analysis.py": ["data_analysis.py", small_data, "--tokenizer", evil],
            "prepare_data.py": ["prepare_data.py", tmp_path / "mine.csv", tmp_path / "out", "--tokenizer", evil],
            "download_transformer_model.py": ["download_transformer_model.py", "--transformer-model", evil]}
    for script, argv in runs.items():
        r, read = run(*argv, stdin=answer, HF_MODULES_CACHE=modules)
        one_line(r, script, f"{evil}: its config.json asks to run code from the folder (auto_map)")
        assert not marker.exists(), script
        assert read == 0, f"{script} read {read} bytes of standard input"  # no question asked, no text eaten
        assert r.stdout == "" or script != "predict.py", r.stdout  # no output row: the corpus was not read
        assert not list(modules.rglob("evil.py"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "evil", "mine.csv", "stdin.txt"]


def test_every_from_pretrained_and_pipeline_says_trust_remote_code_false():
    """The rule of issue 31, as `grep -rn from_pretrained` checks it: the keyword on the line of the call (left out,
    transformers asks on standard input whether to run a folder's code; True runs it)."""
    calls = (".from_pretrained" + "(", "= pipeline" + "(")
    found = 0
    for path in ROOT.rglob("*"):
        if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(ROOT).parts) or \
                path.suffix not in (".py", ".sh", ".md", ".com", "") or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if any(call in line for call in calls):
                assert "trust_remote_code=False" in line, f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                found += 1
    assert found > 30


# ----------------------------------------------------------------------------- B14: label names


def test_a_label_name_holds_no_line_break_of_any_kind_nor_a_control_character():
    breaks = [chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1]
    assert {"\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\n", "\r"} <= set(breaks)
    for c in [*breaks, "\t", "\x00", "\x07", "\x1b", "\x7f", "\x9f"]:
        assert "control character" in files.label_name_problem(f"joy{c}ful"), repr(c)
    for fine in ("joy", "a=b", "+1", "-", "café", "née (FR)", "😀", "a b"):
        assert files.label_name_problem(fine) == "", fine


def test_a_label_name_starting_with_a_formula_sign_is_refused_with_the_reason(tmp_path: Path):
    for name in ("=HYPERLINK(\"http://x\")", "@SUM(A1)"):
        assert "spreadsheet" in files.label_name_problem(name) and "formula" in files.label_name_problem(name)
        (tmp_path / "emotions.txt").write_text(f"joy\n{name}\n")
        with pytest.raises(UserError, match=r"emotions.txt:2: label name .* starts with .*formula"):
            files.read_labels(tmp_path / "emotions.txt")
    settings = tmp_path / files.MODEL_SETTINGS  # a model's settings, which predict.py's CSV header is made from
    settings.write_text(json.dumps({"labels": ["joy", "=1+1"], "threshold": 0.3}))
    with pytest.raises(UserError, match=f"{settings}: label name '=1\\+1' starts with '='"):
        files.read_model_settings(tmp_path)


def test_nfc_and_nfd_of_one_name_are_one_label_twice_in_a_labels_file(tmp_path: Path):
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    (tmp_path / "emotions.txt").write_text(f"joy\n{nfc}\nanger\n{nfd}\n")
    with pytest.raises(UserError) as e:
        files.read_labels(tmp_path / "emotions.txt")
    assert str(e.value).startswith(f"{tmp_path / 'emotions.txt'}:4: label {nfd!r} repeats line 2's {nfc!r} in "
                                   f"another Unicode normalization form"), e.value


def test_prepare_data_writes_label_names_in_nfc_and_refuses_what_a_labels_file_cannot_hold(tmp_path: Path, capsys):
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    rows = [{"text": f"text {i}", "labels": [[nfc], [nfd], ["joy"]][i % 3]} for i in range(30)]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert prepare_data.main([str(tmp_path / "mine.jsonl"), str(tmp_path / "out")]) == 0
    assert files.read_labels(tmp_path / "out" / "emotions.txt") == [nfc, "joy"]
    capsys.readouterr()
    for bad in ("sad\u2028ness", "sad\x85ness", "=cmd|' /C calc'!A0", "ta\tb"):
        rows[4]["labels"] = ["joy", bad]
        (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert prepare_data.main([str(tmp_path / "bad.jsonl"), str(tmp_path / "bad")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"prepare_data.py: error: {tmp_path / 'bad.jsonl'}:5: label "
                                                       f"name {bad!r}"), err
        assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- B15: tokens unread


def test_a_long_texts_unread_tokens_are_counted_exactly(scorer: Path, goemotions_dir: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(scorer, trust_remote_code=False)
    comments = files.read_split(goemotions_dir / "test.tsv", 28).texts
    text = " ".join(comments[i % 500] for i in range(12_000)).replace("\n", " ")  # ~200,000 tokens, 800,000 chars
    total = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert total > 150_000
    reading = lengths.Reading(16, "windows", 4, 2)
    read = 14 + (14 - 4)  # two windows of 14 tokens of text, the second 10 on from the first
    short = " ".join(comments[:3])
    encoded = encoder.encode(tokenizer, [short, text], reading)
    assert encoded.capped == [max(len(tokenizer(short, add_special_tokens=False)["input_ids"]) - read, 0),
                              total - read]
    (tmp_path / "in.txt").write_text(f"{short}\n{text}\n")
    r, _ = run("predict.py", scorer, "--input", tmp_path / "in.txt", "--output", tmp_path / "out.jsonl")
    assert r.returncode == 0, r.stderr
    notes = [json.loads(line)["error"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert notes[1] == f"long text: read its first 2 windows, {total - read} tokens unread"


def test_head_tail_reads_the_real_tail_of_a_text_between_one_and_two_cuts_long(scorer: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(scorer, trust_remote_code=False)
    reading = lengths.Reading(18, "head-tail")  # 16 tokens of text: cut at 1,600 characters before tokenizing
    text = " ".join(f"w{i}" for i in range(500))  # 2,389 characters
    assert 1_600 < len(text) <= 3_200
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert encoder.encode(tokenizer, [text], reading).windows == [[tokenizer.cls_token_id, *ids[:4], *ids[-12:],
                                                                   tokenizer.sep_token_id]]


# ----------------------------------------------------------------------------- B16: UTF-16, UTF-32, NUL bytes

NOT_UTF8 = {  # name: (the file's bytes, what the one line says)
    "UTF-16LE": ("hello\nbye\n".encode("utf-16"), "UTF-16LE text (its byte-order mark), not UTF-8"),
    "UTF-16BE": (b"\xfe\xff" + "hello\nbye\n".encode("utf-16-be"), "UTF-16BE text (its byte-order mark)"),
    "UTF-32LE": ("hello\nbye\n".encode("utf-32"), "UTF-32LE text (its byte-order mark)"),
    "no byte-order mark": ("hello\nbye\n".encode("utf-16-le"), ":1: a NUL byte: not UTF-8 text"),
    "a NUL on line 3": (b"hello\nbye\nnul \x00 here\n", ":3: a NUL byte"),
}


@pytest.mark.parametrize("case", NOT_UTF8)
def test_a_text_file_in_another_encoding_is_refused_whole_by_every_reader(case: str, tmp_path: Path, capsys):
    content, problem = NOT_UTF8[case]
    path = tmp_path / "corpus"
    path.write_bytes(content)
    said = set()
    for fmt in ("lines", "goemotions", "tsv", "csv", "jsonl"):
        with pytest.raises(UserError) as e:
            list(corpus.read_rows(str(path), fmt, text_column="text"))
        said.add(str(e.value))
    (message,) = said  # one check, one verdict, whatever the format
    assert message.startswith(str(path)) and problem in message, message
    assert prepare_data.main([str(path), str(tmp_path / "out"), "--format", "csv"]) == 1
    assert capsys.readouterr().err == f"prepare_data.py: error: {message}\n"  # the same check, the same line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_predict_refuses_a_utf16_file_or_stream_before_writing_anything(scorer: Path, tmp_path: Path):
    (tmp_path / "in.txt").write_bytes(NOT_UTF8["UTF-16LE"][0])
    r, _ = run("predict.py", scorer, "--input", tmp_path / "in.txt", "--output", tmp_path / "out.tsv")
    one_line(r, "predict.py", f"{tmp_path / 'in.txt'}: UTF-16LE text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
    r, _ = run("predict.py", scorer, "--input", "-", stdin=tmp_path / "in.txt")
    one_line(r, "predict.py", "standard input: UTF-16LE text")
    assert r.stdout == ""


# ----------------------------------------------------------------------------- B17: pipes where files are read twice


def test_a_pipe_where_a_file_is_read_twice_is_refused_at_once(small_data: Path, tiny_bert: Path, scorer: Path,
                                                              tmp_path: Path):
    fifo = tmp_path / "train.tsv"
    os.mkfifo(fifo)  # nobody writes to it: opening it would block forever
    data = [small_data / f for f in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")]
    pipe_data = tmp_path / "piped"
    write_slice(small_data, pipe_data, {"dev": 48, "test": 48})
    os.mkfifo(pipe_data / "train.tsv")
    runs = {"bert_model.py": ["bert_model.py", fifo, *data[1:], tmp_path / "m", "--transformer-model", tiny_bert],
            "tune.py": ["tune.py", tmp_path / "study", "--data", pipe_data],
            "prepare_data.py": ["prepare_data.py", fifo, tmp_path / "out"],
            "predict.py": ["predict.py", scorer, "--input", fifo, "--output", tmp_path / "out.tsv"]}
    for script, argv in runs.items():
        r, _ = run(*argv, timeout=60)
        where = pipe_data / "train.tsv" if script == "tune.py" else fifo
        one_line(r, script, f"{where}: not a regular file (a pipe): give a file")
    assert not {"m", "out", "out.tsv"} & {p.name for p in tmp_path.iterdir()}


def test_a_process_substitution_is_refused_not_read_as_no_examples(small_data: Path, tiny_bert: Path,
                                                                    tmp_path: Path):
    """bash's <(cat train.tsv): /dev/fd/N, a pipe that the checksum would drain before the split is read."""
    read, write = os.pipe()
    os.write(write, (small_data / "train.tsv").read_bytes()[:4096])
    os.close(write)
    data = [small_data / f for f in ("dev.tsv", "test.tsv", "emotions.txt")]
    r, _ = run("bert_model.py", f"/dev/fd/{read}", *data, tmp_path / "m", "--transformer-model", tiny_bert,
               pass_fds=(read,), timeout=60)
    os.close(read)
    one_line(r, "bert_model.py", f"/dev/fd/{read}: not a regular file (a pipe)")


def test_an_id_with_a_line_separator_survives_predictions_tsv_and_one_with_a_tab_is_refused() -> None:
    """predictions.tsv's lines end in \\n only: an id holding U+2028 or U+0085 is read back as written (splitlines
    would cut it in two); an id with a tab or a line break, which a cell of it cannot hold, is refused in the split."""
    import numpy as np

    ids = ["a\u2028b", "c\x85d", "plain"]
    gold, scores = np.array([[1, 0], [0, 1], [1, 1]]), np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.31]])
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ids-{os.getpid()}.tsv"
    path.write_text(files.predictions_text(ids, gold, scores, 0.3, ["x", "y"]), encoding="utf-8")
    try:
        back = files.read_predictions(path, ["x", "y"])
    finally:
        path.unlink()
    assert back.ids == ids and back.gold.tolist() == gold.astype(bool).tolist()
    for bad in ("a\tb", "a\nb", "a\rb"):
        with pytest.raises(ValueError, match="tab or a line break"):
            files.split_row(["a text", "0", bad], 2)
