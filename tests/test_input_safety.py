"""Input that must never be trusted or half-read (issue 31): a model folder that asks to run its own code, label
names that other files cannot hold, a long text's unread tokens counted, a UTF-16 or binary text file, and a pipe
where a file is read more than once. Each is refused in one line before anything is read or written (or, for a
long text, reported exactly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from multilabel import encoder, files, lengths


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


