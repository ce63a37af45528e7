"""predict.py on a tiny random classifier (the real MiniLM tokenizer) and real GoEmotions texts: every input
format and kind of bad row, chunked against unchunked, a killed run resumed, shards merged, INT8, the model
card's commands as written; predict.com with bash and under a real Grid Engine (2 tasks, one requeued)."""

from __future__ import annotations

import csv
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
from helpers import ROOT, GridEngine, run_script, stop_after_a_chunk, write_slice

PREDICT = "predict.py"


@pytest.fixture(scope="module")
def model(minilm: Path, goemotions_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with a 28-label head and the goemotions.json bert_model.py writes."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    labels = (goemotions_dir / "emotions.txt").read_text().split()
    tokenizer = AutoTokenizer.from_pretrained(minilm, trust_remote_code=False)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=len(labels),
                        problem_type="multi_label_classification", initializer_range=0.5)
    out = tmp_path_factory.mktemp("classifier")
    BertForSequenceClassification(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"labels": labels, "threshold": 0.3, "max_length": 64,
            "thresholds": {n: 0.2 + 0.02 * i for i, n in enumerate(labels)}}
    (out / "goemotions.json").write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def texts(goemotions_dir: Path) -> list[tuple[str, str]]:
    """(text, id) of the first 300 real test examples."""
    with open(goemotions_dir / "test.tsv", encoding="utf-8", newline="") as f:
        return [(r[0], r[2]) for r, _ in zip(csv.reader(f, delimiter="\t"), range(300), strict=False)]


def predict(*args: str | Path, **kw) -> subprocess.CompletedProcess[str]:
    return run_script(PREDICT, *args, env={"OMP_NUM_THREADS": "1"}, **kw)


def ok(r: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("predict.py: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def write_goemotions(path: Path, texts: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows([t, "27", i] for t, i in texts)
    return path


def long_corpus(path: Path, texts: list[tuple[str, str]], rows: int = 2000) -> Path:
    """ROWS rows cycling through TEXTS (ids made unique): a run that is still going when stop_after_a_chunk's
    signal comes (40 rows took 0.1 s in all, which let a run finish before it)."""
    return write_goemotions(path, [(texts[i % len(texts)][0], f"r{i}") for i in range(rows)])


# --------------------------------------------------------------------------- the command line


def test_texts_may_come_before_or_after_the_options(model: Path):
    """The model card's `predict.py MODEL --threshold tuned "I love this!"` used to be refused by argparse."""
    outs = {ok(predict(*order)).stdout for order in (
        [model, "--threshold", "tuned", "I love this!", "What?"],
        [model, "I love this!", "What?", "--threshold", "tuned"],
        ["--threshold", "tuned", model, "I love this!", "What?"],
        [model, "I love this!", "--threshold", "tuned", "What?"])}
    assert len(outs) == 1
    lines = outs.pop().splitlines()
    assert lines[0].startswith("text") and lines[1].startswith("I love this!") and lines[2].startswith("What?")


def test_chunked_and_unchunked_runs_agree(model: Path, texts, tmp_path: Path):
    """Chunks change only which texts share a batch: the same rows, ids and labels; scores in the last printed
    digits (fp32 sums over other batch shapes differ in the last bits; 4e-6 seen with this model)."""
    corpus = write_goemotions(tmp_path / "c.tsv", texts)
    ok(predict(model, "--input", corpus, "--output", tmp_path / "one.tsv"))
    ok(predict(model, "--input", corpus, "--output", tmp_path / "many.tsv", "--chunk-size", "7", "--batch-size", "5"))
    one, many = read_tsv(tmp_path / "one.tsv"), read_tsv(tmp_path / "many.tsv")
    assert [r["id"] for r in one] == [i for _, i in texts] == [r["id"] for r in many]
    assert [r["predicted"] for r in one] == [r["predicted"] for r in many]
    labels = json.loads((model / "goemotions.json").read_text())["labels"]
    assert max(abs(float(a[n]) - float(b[n])) for a, b in zip(one, many, strict=True) for n in labels) <= 1e-5
    # the scores are the model's: the same as transformers' own forward pass on each text alone
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    m = AutoModelForSequenceClassification.from_pretrained(model, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(model, trust_remote_code=False)
    with torch.no_grad():
        for (text, _), row in zip(texts[:5], one, strict=False):
            p = torch.sigmoid(m(**tok(text, return_tensors="pt", truncation=True, max_length=64)).logits[0])
            assert [float(row[n]) for n in labels] == pytest.approx(p.tolist(), abs=2e-6)
            assert row["predicted"] == ",".join(n for n, s in zip(labels, p.tolist(), strict=True) if s > 0.3)


def test_every_input_format_gives_the_same_labels_and_carries_the_ids(model: Path, texts, tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    few = texts[:40]
    ids = [i for _, i in few]
    (tmp_path / "c.txt").write_text("".join(t.replace("\n", " ") + "\n" for t, _ in few), encoding="utf-8")
    write_goemotions(tmp_path / "c.tsv", few)
    with open(tmp_path / "c.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["post", "body", "score"], *([i, t, "1"] for t, i in few)])
    with open(tmp_path / "h.tsv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter="\t").writerows([["body", "post"], *([t, i] for t, i in few)])
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": t, "post": i}) + "\n" for t, i in few))
    pq.write_table(pa.table({"post": ids, "body": [t for t, _ in few]}), tmp_path / "c.parquet", row_group_size=7)
    runs = {
        "txt": ["--input", tmp_path / "c.txt"],
        "goemotions": ["--input", tmp_path / "c.tsv"],
        "csv": ["--input", tmp_path / "c.csv", "--text-column", "body", "--id-column", "post"],
        "tsv header": ["--input", tmp_path / "h.tsv", "--text-column", "body", "--id-column", "post"],
        "jsonl": ["--input", tmp_path / "c.jsonl", "--text-column", "body", "--id-column", "post"],
        "parquet": ["--input", tmp_path / "c.parquet", "--text-column", "body", "--id-column", "post"],
    }
    got = {}
    for name, args in runs.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}.jsonl"
        ok(predict(model, *args, "--output", out))
        got[name] = [json.loads(x) for x in out.read_text().splitlines()]
    stdin = subprocess.run([sys.executable, PREDICT, model, "--input", "-", "--format", "jsonl"], cwd=ROOT,
                           input=(tmp_path / "c.txt").read_text(), capture_output=True, text=True, timeout=300)
    got["stdin"] = [json.loads(x) for x in ok(stdin).stdout.splitlines()]
    reference = [(g["predicted"], g["scores"]) for g in got["goemotions"]]
    for name, rows in got.items():
        assert [(g["predicted"], g["scores"]) for g in rows] == reference, name
        assert [g["id"] for g in rows] == (ids if name not in ("txt", "stdin") else [str(n) for n in range(1, 41)])
        assert not any(g["error"] for g in rows), name


def test_every_bad_row_gets_an_output_row_with_its_reason(model: Path, tmp_path: Path):
    """Empty lines, bad bytes, broken rows: reported and carried through, never a reason to stop or to drop."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "c.txt").write_bytes(b"fine text\n\n   \nbad \xff\xfe bytes\nalso fine\r\nlast, no newline")
    (tmp_path / "c.tsv").write_bytes(b'one\t1\ta1\ntwo columns\t2\n"unclosed quote\t3\ta3\nfour\t4\ta4\n')
    (tmp_path / "c.csv").write_bytes(b"id,text\nc1,good\nc2\nc3,bad \xc3\x28 byte\nc4,\nc5,also good\n")
    (tmp_path / "c.jsonl").write_text('{"text": "good", "id": "j1"}\nnot json\n[1, 2]\n{"id": "j4"}\n'
                                      '{"text": null, "id": "j5"}\n{"text": 7, "id": "j6"}\n'
                                      '{"text": "ok", "id": "j7"}\n')
    pq.write_table(pa.table({"text": ["good", None, "", "fine"]}), tmp_path / "c.parquet")
    expected = {  # line: reason ("" = scored)
        "c.txt": ["", "empty text", "empty text", "not valid UTF-8", "", ""],
        "c.tsv": ["", "expected 3 tab-separated columns (text, labels, id), found 2",
                  "bad CSV quoting: unexpected end of data (lines 3-4: an unclosed quote?)"],
        "c.csv": ["", "expected 2 columns as the header has, found 1", "not valid UTF-8", "empty text", ""],
        "c.jsonl": ["", "not JSON", "expected a JSON object, got list", "no text", "no text",
                    "text is not a string (int)", ""],
        "c.parquet": ["", "no text", "empty text", ""],
    }
    for name, reasons in expected.items():
        out = tmp_path / f"{name}.out.tsv"
        r = ok(predict(model, "--input", tmp_path / name, "--output", out))
        rows = read_tsv(out)
        assert [re.sub(r": .*", "", x["error"]) if x["error"].startswith("not JSON") else x["error"]
                for x in rows] == reasons, name
        assert all((x["predicted"] == "" and x["admiration"] == "") == bool(x["error"]) for x in rows), name
        bad = sum(1 for x in reasons if x)
        assert f"{len(reasons)} rows, {len(reasons) - bad} scored, {bad} not scored" in r.stderr, r.stderr
    assert [x["line"] for x in read_tsv(tmp_path / "c.txt.out.tsv")] == ["1", "2", "3", "4", "5", "6"]
    assert [x["id"] for x in read_tsv(tmp_path / "c.csv.out.tsv")] == ["c1", "3", "c3", "c4", "c5"]
    r = ok(predict(model, "--input", tmp_path / "c.txt", "--format", "tsv"))
    assert "empty text: 2 (lines 2, 3); not valid UTF-8: 1 (line 4)" in r.stderr
    meta = json.loads((tmp_path / "c.txt.out.tsv.meta.json").read_text())
    assert meta["rows"] == 6 and meta["bad"]["empty text"] == {"count": 2, "first_lines": [2, 3]}


def test_at_least_one_gives_the_top_label_where_none_passes(model: Path, texts, tmp_path: Path):
    corpus = write_goemotions(tmp_path / "c.tsv", texts[:50])
    ok(predict(model, "--input", corpus, "--output", tmp_path / "off.jsonl", "--threshold", "0.999"))
    ok(predict(model, "--input", corpus, "--output", tmp_path / "on.jsonl", "--threshold", "0.999", "--at-least-one"))
    off = [json.loads(x) for x in (tmp_path / "off.jsonl").read_text().splitlines()]
    on = [json.loads(x) for x in (tmp_path / "on.jsonl").read_text().splitlines()]
    assert all(g["predicted"] == [] for g in off)
    assert [g["predicted"] for g in on] == [[max(g["scores"], key=g["scores"].get)] for g in off]
    assert json.loads((tmp_path / "on.jsonl.meta.json").read_text())["at_least_one"] is True
    assert json.loads((tmp_path / "off.jsonl.meta.json").read_text())["at_least_one"] is False


def test_top_k_columns_and_csv_output(model: Path, texts, tmp_path: Path):
    corpus = write_goemotions(tmp_path / "c.tsv", texts[:20])
    ok(predict(model, "--input", corpus, "--output", tmp_path / "all.tsv"))
    ok(predict(model, "--input", corpus, "--output", tmp_path / "top.csv", "--top-k", "2"))
    with open(tmp_path / "top.csv", encoding="utf-8", newline="") as f:
        top = list(csv.DictReader(f))
    assert list(top[0]) == ["id", "line", "predicted", "error", "label_1", "score_1", "label_2", "score_2"]
    for a, t in zip(read_tsv(tmp_path / "all.tsv"), top, strict=True):
        scores = {k: v for k, v in a.items() if k not in ("id", "line", "predicted", "error")}
        best = sorted(scores, key=lambda n: -float(scores[n]))[:2]
        assert [t["label_1"], t["label_2"]] == best and t["score_1"] == scores[best[0]]


# --------------------------------------------------------------------------- complete or resumable


def test_a_killed_run_resumes_to_the_same_bytes(model: Path, goemotions_dir: Path, tmp_path: Path):
    corpus = write_slice(goemotions_dir, tmp_path / "d", {"test": 2000}) / "test.tsv"
    opts = ["--input", corpus, "--chunk-size", "64"]
    ok(predict(model, *opts, "--output", tmp_path / "whole.tsv"))
    out = tmp_path / "resumed.tsv"
    progress = tmp_path / "resumed.tsv.partial.json"
    for how in (signal.SIGKILL, signal.SIGUSR1):  # killed outright; then warned as Grid Engine does (s_rt)
        p = subprocess.Popen([sys.executable, PREDICT, model, *map(str, opts), "--output", out, "--resume"], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        done = 0 if not progress.exists() else json.loads(progress.read_text())["chunks_done"]
        while not progress.exists() or json.loads(progress.read_text())["chunks_done"] < done + 3:
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
            time.sleep(0.05)
        p.send_signal(how)
        stderr = p.communicate(timeout=120)[1]
        assert p.returncode == (-9 if how == signal.SIGKILL else 99), stderr
        assert not out.exists() and (tmp_path / "resumed.tsv.partial").exists()
        if how == signal.SIGUSR1:
            assert re.search(r"SIGUSR1: stopped after chunk \d+ \(\d+ rows\) in .*resumed\.tsv\.partial; rerun with "
                             r"--resume to continue \(exit 99\)", stderr), stderr
    # an unfinished partial is never started over by accident, nor resumed with other settings
    one_line_error(predict(model, *opts, "--output", out), "resumed.tsv.partial", "--resume continues it")
    one_line_error(predict(model, *opts, "--output", out, "--resume", "--threshold", "0.5"), "other settings",
                   "threshold")
    r = ok(predict(model, *opts, "--output", out, "--resume"))
    assert re.search(r"resuming .*resumed\.tsv\.partial after \d+ chunk\(s\)", r.stderr), r.stderr
    assert out.read_bytes() == (tmp_path / "whole.tsv").read_bytes()
    assert not progress.exists() and not (tmp_path / "resumed.tsv.partial").exists()
    meta = json.loads((tmp_path / "resumed.tsv.meta.json").read_text())
    assert meta["rows"] == meta["scored"] == 2000
    assert "already complete" in ok(predict(model, *opts, "--output", out, "--resume")).stderr


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_shards_merged_are_the_unsharded_output(model: Path, texts, tmp_path: Path, suffix: str):
    corpus = write_goemotions(tmp_path / "c.tsv", texts[:250])
    opts = ["--input", corpus, "--chunk-size", "16"]
    ok(predict(model, *opts, "--output", tmp_path / f"whole{suffix}"))
    out = tmp_path / "parts" / f"labels{suffix}"
    out.parent.mkdir()
    for k in (1, 2, 3):
        r = ok(predict(model, *opts, "--output", out, "--shard", f"{k}/3"))
        assert f"wrote {out.parent / f'labels.{k}-of-3{suffix}'}" in r.stderr
    one_line_error(run_script(PREDICT, "--merge", "--output", tmp_path / "parts" / f"other{suffix}"), "no shards")
    r = ok(run_script(PREDICT, "--merge", "--output", out))
    assert "merged 3 shards" in r.stderr and "250 rows, 250 scored" in r.stderr
    assert out.read_bytes() == (tmp_path / f"whole{suffix}").read_bytes()
    if suffix == ".tsv":  # the documented one-liner gives the same
        one_liner = (f"{{ cat labels.1-of-3{suffix}; for k in 2 3; do tail -n +2 labels.$k-of-3{suffix}; done; }}")
        cat = subprocess.run(["bash", "-c", one_liner], cwd=out.parent, capture_output=True, timeout=60).stdout
        assert cat == out.read_bytes()
    (out.parent / f"labels.2-of-3{suffix}").unlink()
    out.unlink()
    one_line_error(run_script(PREDICT, "--merge", "--output", out), "shard(s) 2 of 3 missing")


def test_memory_does_not_grow_with_the_corpus(model: Path, goemotions_dir: Path, tmp_path: Path):
    """Peak RSS (/usr/bin/time: a child's own high-water mark starts at its parent's) over the test set x 1 and
    x 8: within 1.1x."""
    if not Path("/usr/bin/time").exists():
        pytest.skip("no /usr/bin/time (Debian: apt-get install time)")
    lines = (goemotions_dir / "test.tsv").read_bytes()
    peak = {}
    for n in (1, 8):
        (tmp_path / f"x{n}.tsv").write_bytes(lines * n)
        ok(subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tmp_path / f"x{n}.rss", sys.executable, PREDICT, model,
                           "--input", tmp_path / f"x{n}.tsv", "--output", tmp_path / f"x{n}.out.tsv", "--chunk-size",
                           "1024"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}))
        peak[n] = int((tmp_path / f"x{n}.rss").read_text().split()[-1])
    assert len(read_tsv(tmp_path / "x8.out.tsv")) == 8 * 5427
    assert peak[8] < 1.1 * peak[1], peak


def test_bad_input_is_one_line_and_touches_nothing(model: Path, texts, tmp_path: Path):
    corpus = write_goemotions(tmp_path / "c.tsv", texts[:5])
    existing = tmp_path / "labels.tsv"
    existing.write_text("keep me")
    one_line_error(predict(model, "--input", corpus, "--output", existing), str(existing), "already exists")
    assert existing.read_text() == "keep me"
    one_line_error(predict(model, "--input", tmp_path / "nope.txt"), "nope.txt", "no such file")
    one_line_error(predict(tmp_path, "hi"), "not a model folder")
    one_line_error(predict(model, "--input", corpus, "--shard", "4/3"), "--shard 4/3")
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    one_line_error(predict(model, "--input", tmp_path / "h.csv"), f"{tmp_path / 'h.csv'}:1:", "no column 'text'")
    r = predict(model, "--input", corpus, "--threshold", "high")  # refused by the parser: usage, then one line
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "predict.py: error: argument --threshold: 'high' is not a number in [0, 1), or model or tuned"), r.stderr
    one_line_error(predict(model), "no texts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tsv", "h.csv", "labels.tsv"]


def test_int8_is_exported_beside_the_model_and_scores_close_to_fp32(model: Path, texts, tmp_path: Path):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model.iterdir() if p.is_file()}
    corpus = write_goemotions(tmp_path / "c.tsv", texts[:100])
    ok(predict(model, "--input", corpus, "--output", tmp_path / "fp32.jsonl"))
    r = ok(predict(model, "--input", corpus, "--output", tmp_path / "int8.jsonl", "--precision", "int8"))
    assert "exported the INT8 model to" in r.stderr
    assert (model / "onnx-int8" / "model.onnx").is_file()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model.iterdir() if p.is_file()} == before
    fp32 = [json.loads(x)["scores"] for x in (tmp_path / "fp32.jsonl").read_text().splitlines()]
    int8 = [json.loads(x)["scores"] for x in (tmp_path / "int8.jsonl").read_text().splitlines()]
    # this random tiny model's large weights quantize coarsely; the real model's F1 is in bench/RESULTS.md
    diffs = [abs(a[n] - b[n]) for a, b in zip(fp32, int8, strict=True) for n in a]
    assert sum(diffs) / len(diffs) < 0.05 and sorted(diffs)[len(diffs) // 2] < 0.02
    assert "exported" not in ok(predict(model, "hello", "--precision", "int8")).stderr  # loaded, not redone


def test_the_model_card_commands_run_as_written(minilm: Path, goemotions_dir: Path, tmp_path: Path):
    """bert_model.py's card is named after the run (not the `model` folder make run saves into), and its
    commands, run exactly as the card prints them from the project folder, work."""
    from helpers import make_tiny_bert

    data = write_slice(goemotions_dir, tmp_path / "data", {"train": 64, "dev": 32, "test": 32})
    base = make_tiny_bert(tmp_path / "base", minilm)
    save = tmp_path / "runs" / "tiny-cpu" / "model"
    ok(run_script("bert_model.py", *(data / f for f in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt")), save,
                  "--transformer-model", base, "--epochs", "1", "--precision", "fp32", "--checkpoint-every", "0"))
    card = (save / "README.md").read_text()
    assert re.search(r"^# tiny-cpu: ", card, re.M), card[:2000]
    commands = re.search(r"```bash\n(.*?)```", card, re.S)[1].strip().splitlines()
    assert len(commands) == 2 and all(c.startswith(f"python predict.py {shlex.quote(str(save))} ") for c in commands)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for command in commands:
        r = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
        assert r.stdout.splitlines()[1].startswith("I love this!")


# --------------------------------------------------------------------------- predict.com


def job(**settings: str | Path) -> subprocess.CompletedProcess[str]:
    """predict.com with bash outside Grid Engine, with exactly these settings."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**keep, "PYTHON": sys.executable, "CONDA_MODULE": "", **{k: str(v) for k, v in settings.items()}}
    return subprocess.run(["bash", str(ROOT / "predict.com")], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def test_predict_job_shards_by_task_and_checks_its_settings(model: Path, texts, tmp_path: Path):
    corpus = write_goemotions(tmp_path / "c.tsv", texts[:10])
    r = job(MODEL=model, INPUT=corpus, SGE_TASK_ID=2, SGE_TASK_FIRST=1, SGE_TASK_LAST=5, SGE_TASK_STEPSIZE=1,
            DRY_RUN=1)
    assert r.returncode == 0, r.stderr
    command = re.search(r"^predict\.com: command: (.*)$", r.stdout, re.M)[1]
    assert f"--output {tmp_path}/c.labels.tsv" in command and "--shard 2/5 --resume" in command
    assert "--precision fp32 --batch-size 64" in command
    assert "--precision fp16 --batch-size 256" in job(MODEL=model, INPUT=corpus, DEVICE="cuda", DRY_RUN=1).stdout
    for settings, needle in (({"INPUT": tmp_path / "none.txt"}, "INPUT="), ({"PRECISION": "int4"}, "PRECISION=int4"),
                             ({"MODEL": tmp_path}, "is not a model folder"),
                             ({"SGE_TASK_ID": 1, "SGE_TASK_LAST": 4, "SGE_TASK_STEPSIZE": 2}, "qsub -t 1-N")):
        r = job(**{"MODEL": model, "INPUT": corpus, **settings})
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    r = job(MODEL=model, INPUT=corpus, OMP_NUM_THREADS=1)
    assert r.returncode == 0, r.stderr
    assert len(read_tsv(tmp_path / "c.labels.tsv")) == 10 and (tmp_path / "c.labels.tsv.meta.json").exists()


def job_shell(job_id: int, task_id: int) -> int:
    from test_jobs import job_shell as find

    return find(job_id, task_id)


@pytest.mark.sge
def test_an_array_of_two_tasks_one_signalled_and_requeued_merges_to_the_whole(sge: GridEngine, model: Path,
                                                                             goemotions_dir: Path, tmp_path: Path):
    """qsub -t 1-2 predict.com: task 2 gets SIGUSR1 mid-way (as s_rt does), exits 99, Grid Engine reruns it, it
    resumes; then MERGE=1 puts the parts together: byte-identical to one uninterrupted run."""
    corpus = write_slice(goemotions_dir, tmp_path / "d", {"train": 12000}) / "train.tsv"
    # batches of 2: slow enough (seconds a task) that the signal lands mid-way
    ok(predict(model, "--input", corpus, "--output", tmp_path / "whole.tsv", "--chunk-size", "64", "--batch-size", "2"))
    logs, out = tmp_path / "logs", tmp_path / "out" / "labels.tsv"
    logs.mkdir()
    settings = {"PYTHON": sys.executable, "CONDA_MODULE": "", "MODEL": model, "INPUT": corpus, "OUTPUT": out,
                "CHUNK_SIZE": 64, "BATCH_SIZE": 2}
    j = sge.qsub("predict.com", "-t", "1-2", "-l", "ncpus=1", log_dir=logs, env=settings)

    def log(t: int) -> str:
        path = logs / f"predict.o{j}.{t}"
        return path.read_text(errors="replace") if path.exists() else ""

    progress = out.with_name("labels.2-of-2.tsv.partial.json")
    deadline = time.monotonic() + 240
    while not progress.exists() or json.loads(progress.read_text())["chunks_done"] < 2:
        assert time.monotonic() < deadline and sge.running(j), log(2)
        time.sleep(0.1)
    os.killpg(job_shell(j, 2), signal.SIGUSR1)
    records = sge.wait(j, timeout=400, records=3)
    runs = sorted((int(r["taskid"]), r["exit_status"], r["failed"].split()[0]) for r in records)
    assert runs == [(1, "0", "0"), (2, "0", "0"), (2, "99", "25")], [log(t)[-2000:] for t in (1, 2)]
    assert "exit 99, so Grid Engine requeues this job and the rerun resumes" in log(2)
    assert re.search(rf"^predict\.com: job {j} task 2 on .*, restarted=1$", log(2), re.M), log(2)
    assert re.search(r"resuming \S*labels\.2-of-2\.tsv\.partial after \d+ chunk", log(2)), log(2)
    assert "CPU threads: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 (-l ncpus=1 granted)" in log(1)
    assert "restarted=1" not in log(1)
    m = sge.qsub("predict.com", log_dir=logs, env={**settings, "MERGE": 1})
    assert sge.wait(m, timeout=120)[-1]["exit_status"] == "0", sge.log(logs, "predict", m)
    assert out.read_bytes() == (tmp_path / "whole.tsv").read_bytes()


# --------------------------------------------------------------------------- issue 24: the promises kept


def test_a_chunk_with_nothing_to_score_is_carried_through_and_resumes(model: Path, tmp_path: Path):
    """A corpus whose last chunk is only blank lines, or a text of spaces: rows with their reason, exit 0."""
    corpus = tmp_path / "b.txt"
    corpus.write_text("one\ntwo\nthree\n\n\n")
    ok(predict(model, "--input", corpus, "--output", tmp_path / "b.tsv", "--chunk-size", "3"))
    assert [r["error"] for r in read_tsv(tmp_path / "b.tsv")] == ["", "", "", "empty text", "empty text"]
    (tmp_path / "only.txt").write_text("\n\n")
    ok(predict(model, "--input", tmp_path / "only.txt", "--output", tmp_path / "only.tsv"))
    assert [r["error"] for r in read_tsv(tmp_path / "only.tsv")] == ["empty text", "empty text"]
    r = ok(predict(model, "   ", "--format", "tsv"))
    assert r.stdout.splitlines()[1].split("\t")[3] == "empty text"


def test_a_bare_cr_inside_a_line_is_text_not_a_new_row(model: Path, tmp_path: Path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"".join(b"line %d\n" % i if i != 30 else b"a bare\rCR inside\r\n" for i in range(60)))
    ok(predict(model, "--input", corpus, "--output", tmp_path / "c.tsv"))
    rows = read_tsv(tmp_path / "c.tsv")
    assert len(rows) == 60 and [r["id"] for r in rows] == [str(i) for i in range(1, 61)]


def test_an_escaped_lone_surrogate_is_a_bad_row_here_and_one_line_in_prepare_data(model: Path, tmp_path: Path):
    corpus = tmp_path / "s.jsonl"
    corpus.write_text('{"text": "fine", "id": "a"}\n{"text": "a \\ud800 b", "id": "b\\udfff"}\n')
    ok(predict(model, "--input", corpus, "--output", tmp_path / "s.tsv"))
    rows = read_tsv(tmp_path / "s.tsv")
    assert rows[1]["error"].startswith("a lone surrogate U+D800") and rows[1]["id"] == "b\ufffd"
    corpus.write_text('{"text": "fine", "labels": ["x"]}\n{"text": "a \\ud800 b", "labels": ["x"]}\n')
    r = run_script("prepare_data.py", corpus, tmp_path / "out")
    assert r.returncode == 1 and r.stderr.strip() == (f"prepare_data.py: error: {corpus}:2: a lone surrogate U+D800 "
                                                      "(an escaped \\ud800)"), r.stderr
    assert not (tmp_path / "out").exists()


def test_many_bad_rows_make_a_short_summary(model: Path, tmp_path: Path):
    """Each bad row's reason names its lines; the summary and the meta.json count kinds of reason, not rows."""
    rows = "".join(f'"a text {i}\nover two lines"\t{i}\n' for i in range(300))  # two columns of three, each
    corpus = tmp_path / "q.tsv"
    corpus.write_text("ok\t1\tz\n" + rows)
    r = ok(predict(model, "--input", corpus, "--output", tmp_path / "q.out.tsv", "--chunk-size", "50"))
    summary = r.stderr.strip().splitlines()[-1]
    assert len(summary) < 400, summary
    meta = json.loads((tmp_path / "q.out.tsv.meta.json").read_text())
    assert meta["rows"] == 301 and len(meta["bad"]) <= 2 and sum(v["count"] for v in meta["bad"].values()) == 300
    assert len((tmp_path / "q.out.tsv.meta.json").read_text()) < 4000


def test_top_k_beyond_the_labels_ranks_every_label(model: Path, tmp_path: Path):
    ok(predict(model, "hello", "there", "--top-k", "40", "--output", tmp_path / "t.tsv"))
    with open(tmp_path / "t.tsv", encoding="utf-8", newline="") as f:
        widths = {len(row) for row in csv.reader(f, delimiter="\t")}
    assert widths == {4 + 2 * 28}


def test_resume_refuses_another_model_or_an_input_rewritten_at_the_same_size(model: Path, texts, tmp_path: Path):
    import shutil

    corpus = long_corpus(tmp_path / "c.tsv", texts)
    own = tmp_path / "model"
    shutil.copytree(model, own)
    out = tmp_path / "labels.tsv"
    stop_after_a_chunk([own, "--input", corpus, "--output", out, "--chunk-size", "10", "--batch-size", "1"], out)
    info = json.loads((own / "goemotions.json").read_text())
    (own / "goemotions.json").write_text(json.dumps({**info, "threshold": 0.5}))  # the folder replaced
    resume = ("--input", corpus, "--output", out, "--chunk-size", "10", "--batch-size", "1", "--resume")
    one_line_error(predict(own, *resume), "written with other settings (model sha256 ")
    (own / "goemotions.json").write_text(json.dumps(info))
    data = corpus.read_bytes()
    corpus.write_bytes(data.replace(b"27", b"26", 1))  # the same size, other bytes
    one_line_error(predict(own, *resume), "written with other settings (input sha256 ")
    corpus.write_bytes(data)
    ok(predict(own, *resume))
    assert len(read_tsv(out)) == 2000


def test_merge_refuses_parts_that_are_not_of_one_run(model: Path, texts, tmp_path: Path):
    corpus = write_goemotions(tmp_path / "c.tsv", texts[:600])
    out = tmp_path / "labels.tsv"
    ok(predict(model, "--input", corpus, "--output", out, "--shard", "1/2"))  # chunks of 4096: all in part 2
    ok(predict(model, "--input", corpus, "--output", out, "--shard", "2/2", "--chunk-size", "16"))
    one_line_error(predict("--merge", "--output", out), "labels.2-of-2.tsv", "(chunk size 4096, this run has 16)")
    assert not out.exists() and not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".labels*"))
    (tmp_path / "labels.2-of-2.tsv").unlink()
    other = write_goemotions(tmp_path / "d.tsv", texts[10:610])
    ok(predict(model, "--input", other, "--output", out, "--shard", "2/2"))
    one_line_error(predict("--merge", "--output", out), "labels.2-of-2.tsv", "than labels.1-of-2.tsv (input ")
    (tmp_path / "labels.2-of-2.tsv").unlink()
    ok(predict(model, "--input", corpus, "--output", out, "--shard", "2/2"))
    ok(predict("--merge", "--output", out))
    ok(predict(model, "--input", corpus, "--output", tmp_path / "whole.tsv"))
    assert out.read_bytes() == (tmp_path / "whole.tsv").read_bytes()


def test_a_full_disk_names_the_output_not_the_input(model: Path, texts, tmp_path: Path, small_disk):
    disk = small_disk(1)
    corpus = write_goemotions(tmp_path / "c.tsv", texts * 20)  # 6,000 rows of 28 scores: about 2 MiB of output
    err = one_line_error(predict(model, "--input", corpus, "--output", disk / "labels.tsv"), "no room for the output")
    assert str(disk) in err and str(corpus) not in err


def test_resume_refuses_a_change_to_any_option_that_shapes_the_output(model: Path, texts, tmp_path: Path):
    """Stopped after its first chunk, a run resumed with any one of its shaping options changed is refused, by
    name; the stopped run's files are kept, and with the same options it finishes."""
    corpus = long_corpus(tmp_path / "c.tsv", texts)
    out = tmp_path / "labels.tsv"
    base = [model, "--input", corpus, "--output", out, "--chunk-size", "10", "--batch-size", "1"]
    stop_after_a_chunk(base, out)
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("labels")}
    changes = {"input_format": ["--input-format", "lines"], "threshold": ["--threshold", "0.5"],
               "at_least_one": ["--at-least-one"], "precision": ["--precision", "bf16"], "format": ["--format", "csv"],
               "top_k": ["--top-k", "2"], "id_column": ["--id-column", "x"], "chunk_size": ["--chunk-size", "20"],
               "batch_size": ["--batch-size", "2"]}
    for name, extra in changes.items():
        r = predict(*base, *extra, "--resume")  # the last of an option given twice wins
        said = f"written with other settings ({name.replace('_', ' ')} "  # identity.first_difference names it
        assert r.returncode == 1 and said in r.stderr, (name, r.stderr)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("labels")} == kept, name
    ok(predict(*base, "--resume"))
    assert len(read_tsv(out)) == 2000
