"""From labels to findings (issue 34): explain.py (a number per word, per label), predict.py --keep-columns,
keywords.py (G2 and Log Ratio per label) and rates.py (label rates by a kept column). A tiny BERT trained on real
GoEmotions texts where a planted word alone decides a label (zebra, lion; `other` where neither is there) labels a
corpus with a column, and the findings are checked against what was planted and against counts made here by hand."""

from __future__ import annotations

import csv
import json
import math
import random
import re
import subprocess
from pathlib import Path

import pytest
from helpers import run_script, stop_after_a_chunk, train

from multilabel import files, words

FINDINGS_RUN = ("--epochs", "8", "--batch-size", "16", "--learning-rate", "2e-3", "--head-learning-rate", "2e-3",
                "--precision", "fp32", "--max-length", "48", "--max-windows", "24", "--seed", "1")  # reads ~850 tokens


def real_texts(goemotions_dir: Path, n: int) -> list[str]:
    with open(goemotions_dir / "train.tsv", encoding="utf-8", newline="") as f:
        return [r[0] for r, _ in zip(csv.reader(f, delimiter="\t"), range(n), strict=False)]


def plant(text: str, word: str, rng: random.Random) -> str:
    tokens = text.split()
    tokens.insert(rng.randrange(len(tokens) + 1), word)
    return " ".join(tokens)


def planted_rows(texts: list[str], seed: int) -> list[tuple[str, str]]:
    """(text, label): zebra planted in every third text, lion in the next, neither in the third (`other`)."""
    rng = random.Random(seed)
    kinds = ("zebra", "lion", "other")
    return [(plant(t, kinds[i % 3], rng) if i % 3 < 2 else t, kinds[i % 3]) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def planted_model(tiny_bert: Path, goemotions_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT trained where the word zebra alone decides the label zebra, lion lion (other: neither)."""
    tmp = tmp_path_factory.mktemp("planted")
    texts = real_texts(goemotions_dir, 600)
    names = ["zebra", "lion", "other"]
    data = tmp / "data"
    data.mkdir()
    for split, part in (("train", texts[:420]), ("dev", texts[420:510]), ("test", texts[510:])):
        rows = planted_rows(part, seed=len(part))
        files.atomic_write(data / f"{split}.tsv", files.split_text([t for t, _ in rows],
                                                                   [(names.index(k),) for _, k in rows],
                                                                   [f"{split}{i}" for i in range(len(rows))]))
    files.atomic_write(data / "emotions.txt", files.labels_text(names))
    r = train(data, tmp / "model", tiny_bert, *FINDINGS_RUN, "--metrics-file", tmp / "metrics.json")
    assert r.returncode == 0, r.stderr[-3000:]
    f1 = json.loads((tmp / "metrics.json").read_text())["test"]["per_label"]
    assert f1["zebra"]["f1"] >= 0.9 and f1["lion"]["f1"] >= 0.9, f1
    return tmp / "model"


@pytest.fixture(scope="module")
def labelled(planted_model: Path, goemotions_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of 240 real test texts, zebra planted mostly in the year 2020's, lion evenly, labelled with the year
    kept: (the folder: corpus.jsonl, labels.tsv)."""
    tmp = tmp_path_factory.mktemp("labelled")
    with open(goemotions_dir / "test.tsv", encoding="utf-8", newline="") as f:
        texts = [r[0] for r, _ in zip(csv.reader(f, delimiter="\t"), range(240), strict=False)]
    rng = random.Random(7)
    lines = []
    for i, text in enumerate(texts):
        year = 2019 + i % 2
        if rng.random() < (0.5 if year == 2020 else 0.05):
            text = plant(text, "zebra", rng)
        if i % 5 == 0:  # as often in both years
            text = plant(text, "lion", rng)
        lines.append(json.dumps({"id": f"t{i}", "text": text, "year": year}))
    lines.insert(10, json.dumps({"id": "empty", "text": "", "year": 2019}))  # a bad row, carried
    (tmp / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    r = run_script("predict.py", planted_model, "--input", tmp / "corpus.jsonl", "--keep-columns", "year",
                   "--output", tmp / "labels.tsv", "--chunk-size", "64")
    assert r.returncode == 0, r.stderr
    return tmp


def one_line(r, prog: str, *needles: str) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# --------------------------------------------------------------------------- keyness and intervals by hand


def test_g2_and_log_ratio_equal_hand_computed_values():
    import keywords

    # a = 20 of c = 1000 words, b = 10 of d = 2000: expected 10 and 20, so G2 = 2 (20 ln 2 + 10 ln 1/2) = 20 ln 2
    assert keywords.g2(20, 10, 1000, 2000) == pytest.approx(20 * math.log(2), abs=1e-9)
    assert keywords.log_ratio(20, 10, 1000, 2000) == pytest.approx(2.0, abs=1e-9)
    # a word absent from one part: 0 ln 0 = 0 in G2; Log Ratio counts the zero as 0.5 (Hardie 2014)
    assert keywords.g2(0, 8, 100, 100) == pytest.approx(16 * math.log(2), abs=1e-9)
    assert keywords.log_ratio(0, 8, 100, 100) == pytest.approx(-4.0, abs=1e-9)
    assert keywords.g2(5, 10, 100, 200) == pytest.approx(0.0, abs=1e-9)  # as frequent in both


def test_wilson_interval_and_holm_correction_equal_hand_computed_values():
    import rates

    low, high = rates.wilson(5, 10)
    z = 1.959963984540054
    half = z / (1 + z * z / 10) * math.sqrt(0.25 / 10 + z * z / 400)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-9)
    assert (low, high) == pytest.approx((0.2365930905, 0.7634069095), abs=1e-9)
    assert rates.wilson(0, 20)[0] == 0.0 and rates.wilson(20, 20)[1] == 1.0
    # exactly, for every n (in floats the formula gives a hair above 0 at n = 7, below 1 at n = 10): a rate of 0 or
    # 1 outside its own interval made the plot's error bars negative and rates.py --plot a traceback
    assert all(rates.wilson(0, n)[0] == 0.0 and rates.wilson(n, n)[1] == 1.0 for n in range(1, 3000))
    table = rates.rates({"a": 7, "b": 10}, {"a": {"x": 0}, "b": {"x": 10}}, ["x"], "part")
    assert rates.plot_png(table, "part").startswith(b"\x89PNG")
    assert rates.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06], abs=1e-12)


def test_words_keep_their_spans_in_the_text_as_given():
    text = "Don’t cafe\u0301 [NAME] 😀 CAFÉ\r\nl'homme ok"
    spans = list(words.spans(text))
    assert [text[a:b] for a, b in spans] == ["Don’t", "cafe\u0301", "[NAME]", "CAFÉ", "l'homme", "ok"]
    assert words.words(text) == ["don't", "café", "[NAME]", "café", "l'homme", "ok"]


# --------------------------------------------------------------------------- the scripts on a labelled corpus


def test_keep_columns_carry_the_input_column_into_every_output_row(labelled: Path):
    rows = read_tsv(labelled / "labels.tsv")
    corpus = [json.loads(line) for line in (labelled / "corpus.jsonl").read_text().splitlines()]
    assert len(rows) == len(corpus) == 241
    assert [r["year"] for r in rows] == [str(c["year"]) for c in corpus]
    assert list(rows[0])[:5] == ["id", "line", "predicted", "error", "year"]
    empty = next(r for r in rows if r["id"] == "empty")
    assert empty["error"] == "empty text" and empty["year"] == "2019"


def test_the_planted_word_is_its_labels_first_keyword(labelled: Path, tmp_path: Path):
    r = run_script("keywords.py", labelled / "labels.tsv", "--output", tmp_path / "k.tsv", "--plot", tmp_path / "k.png")
    assert r.returncode == 0, r.stderr
    table = read_tsv(tmp_path / "k.tsv")
    first = {r["label"]: r for r in table if r["rank"] == "1"}
    assert first["zebra"]["word"] == "zebra" and first["lion"]["word"] == "lion", first
    assert (tmp_path / "k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # its figures are the hand counts of the labelled texts
    labels = {r["id"]: r["predicted"].split(",") for r in read_tsv(labelled / "labels.tsv") if not r["error"]}
    texts = {c["id"]: c["text"] for c in map(json.loads, (labelled / "corpus.jsonl").read_text().splitlines())}
    a = sum(words.words(texts[i]).count("zebra") for i, ls in labels.items() if "zebra" in ls)
    b = sum(words.words(texts[i]).count("zebra") for i, ls in labels.items() if "zebra" not in ls)
    c = sum(len(words.words(texts[i])) for i, ls in labels.items() if "zebra" in ls)
    d = sum(len(words.words(texts[i])) for i, ls in labels.items() if "zebra" not in ls)
    assert (int(first["zebra"]["in_label"]), int(first["zebra"]["in_rest"])) == (a, b)
    e1, e2 = c * (a + b) / (c + d), d * (a + b) / (c + d)
    expected = 2 * (a * math.log(a / e1) + (b * math.log(b / e2) if b else 0))
    assert float(first["zebra"]["g2"]) == pytest.approx(expected, rel=1e-5)


def test_keyword_counts_of_shards_add_up_to_the_same_bytes_as_one_run(planted_model: Path, labelled: Path,
                                                                       tmp_path: Path):
    corpus = labelled / "corpus.jsonl"
    whole = tmp_path / "whole.md"
    assert run_script("keywords.py", labelled / "labels.tsv", "--output", whole).returncode == 0
    parts = tmp_path / "parts"
    parts.mkdir()
    for k in (1, 2, 3):
        r = run_script("predict.py", planted_model, "--input", corpus, "--keep-columns", "year", "--output",
                       parts / "labels.tsv", "--chunk-size", "64", "--shard", f"{k}/3")
        assert r.returncode == 0, r.stderr
        r = run_script("keywords.py", parts / f"labels.{k}-of-3.tsv", "--counts", parts / f"counts.{k}.json")
        assert r.returncode == 0, r.stderr
    added = tmp_path / "added.md"
    r = run_script("keywords.py", "--from-counts", *(parts / f"counts.{k}.json" for k in (1, 2, 3)), "--output", added)
    assert r.returncode == 0, r.stderr
    assert added.read_bytes() == whole.read_bytes()
    # the merged labels give the same keywords too
    assert run_script("predict.py", "--merge", "--output", parts / "labels.tsv").returncode == 0
    merged = tmp_path / "merged.md"
    assert run_script("keywords.py", parts / "labels.tsv", "--output", merged).returncode == 0
    assert merged.read_bytes() == whole.read_bytes()
    one_line(run_script("keywords.py", "--from-counts", parts / "counts.1.json", parts / "counts.1.json"),
             "keywords.py", "given twice")


def test_rates_by_the_kept_column_are_the_hand_counts_and_the_planted_difference_is_found(labelled: Path,
                                                                                         tmp_path: Path):
    r = run_script("rates.py", labelled / "labels.tsv", "--by", "year", "--compare", "2019", "2020", "--output",
                   tmp_path / "r.tsv", "--plot", tmp_path / "r.png")
    assert r.returncode == 0, r.stderr
    got = {(row["label"], row["year"]): row for row in read_tsv(tmp_path / "r.tsv")}
    labels = [row for row in read_tsv(labelled / "labels.tsv") if not row["error"]]
    for year in ("2019", "2020"):
        mine = [row for row in labels if row["year"] == year]
        with_zebra = sum("zebra" in row["predicted"].split(",") for row in mine)
        assert int(got["zebra", year]["texts"]) == len(mine)
        assert int(got["zebra", year]["with_label"]) == with_zebra
        assert float(got["zebra", year]["rate"]) == pytest.approx(with_zebra / len(mine), rel=1e-5)
    assert got["zebra", "2020"]["differs"] == "True" and got["lion", "2020"]["differs"] == "False"
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_rates_compare_shows_the_two_values_compared_only(planted_model: Path, tmp_path: Path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"a zebra {i}" if i % 2 else f"the lion {i}", "year": 2019 + i % 3})
                              + "\n" for i in range(12)))
    r = run_script("predict.py", planted_model, "--input", corpus, "--keep-columns", "year", "--output",
                   tmp_path / "l.jsonl", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    r = run_script("rates.py", tmp_path / "l.jsonl", "--by", "year", "--compare", "2021", "2019", "--output",
                   tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "r.json").read_text())
    assert [(row["label"], row["year"], row["texts"]) for row in got["rates"] if row["label"] == "zebra"] == [
        ("zebra", "2021", 4), ("zebra", "2019", 4)]


def test_bad_choices_are_one_line_and_write_nothing(planted_model: Path, labelled: Path, tmp_path: Path):
    labels = labelled / "labels.tsv"
    out = tmp_path / "out.tsv"
    one_line(run_script("keywords.py", labels, "--labels", "tiger", "--output", out), "keywords.py", "tiger")
    one_line(run_script("rates.py", labels, "--by", "month", "--output", out), "rates.py", "no kept column 'month'")
    one_line(run_script("rates.py", labels, "--by", "year", "--compare", "2019", "1999"), "rates.py", "1999")
    one_line(run_script("rates.py", labels, "--by", "year", "--labels", "tiger"), "rates.py", "tiger")
    changed = tmp_path / "corpus.jsonl"
    changed.write_text((labelled / "corpus.jsonl").read_text().replace("t1", "t1x", 1))
    one_line(run_script("keywords.py", labels, "--input", changed, "--output", out), "keywords.py", "SHA-256")
    one_line(run_script("keywords.py", labels, "--output", labels), "keywords.py")  # its own input
    one_line(run_script("predict.py", planted_model, "--input", labelled / "corpus.jsonl", "--keep-columns",
                        "year", "predicted", "--output", out), "predict.py", "'predicted'")
    csv_input = tmp_path / "c.csv"
    csv_input.write_text("text,year\nhello zebra,2020\n")
    one_line(run_script("predict.py", planted_model, "--input", csv_input, "--text-column", "text",
                        "--keep-columns", "month", "--output", out), "predict.py", "no column 'month'")
    assert not out.exists()


# --------------------------------------------------------------------------- explanations


def explain(*args: str | Path):
    return run_script("explain.py", *args, env={"OMP_NUM_THREADS": "1"})


def job(**settings: str | Path | int) -> subprocess.CompletedProcess[str]:
    from test_predict import job as predict_com

    return predict_com(**settings)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("method", ["occlusion", "ig"])
def test_the_planted_word_gets_the_top_number_for_its_label_and_spans_slice_the_text(planted_model: Path,
                                                                                    tmp_path: Path, method: str):
    filler = "so I went to the market and then we talked for a while about nothing much at all".split()
    long_words = (filler * 40)[:560]  # ~580 tokens: zebra past token 512, read in windows
    long_text = " ".join(long_words[:540] + ["zebra"] + long_words[540:])
    rows = [{"id": "short", "text": "I saw a zebra at the zoo today"},
            {"id": "odd", "text": "Cafe\u0301 😀 [NAME] saw a zebra\r\nthere, didn’t they?"},
            {"id": "long", "text": long_text},
            {"id": "lion", "text": "the lion sleeps tonight 👍🏽 naïve"},
            {"id": "empty", "text": "   "}]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "e.jsonl"
    r = explain(planted_model, "--input", corpus, "--output", out, "--method", method, "--ig-steps", "64")
    assert r.returncode == 0, r.stderr
    got = read_jsonl(out)
    texts = {row["id"]: row["text"] for row in rows}
    for e in got:
        if e["label"] is None:
            continue
        text = texts[e["id"]]
        assert all(text[s:t] == w for w, s, t, _ in e["words"]), e  # offsets into the text as given
        assert [w for w, _, _, _ in e["words"]] == [text[s:t] for s, t in words.spans(text)]
    by = {(e["id"], e["label"]): e for e in got}
    for row_id, label in (("short", "zebra"), ("odd", "zebra"), ("long", "zebra"), ("lion", "lion")):
        e = by[row_id, label]
        top = max(e["words"], key=lambda w: w[3])
        assert top[0] == label, (row_id, method, sorted(e["words"], key=lambda w: -w[3])[:3])
        if method == "ig":
            assert abs(e["delta"]) < 0.05, e["delta"]  # the convergence delta, recorded (about 0.7 at 16 steps)
    long_zebra = by["long", "zebra"]
    start = max(long_zebra["words"], key=lambda w: w[3])[1]
    assert len(texts["long"][:start].split()) == 540  # the zebra past token 512, found where it is
    assert any(w[0] == "Cafe\u0301" for w in by["odd", "zebra"]["words"])  # a combining accent stays in its word
    empty = [e for e in got if e["id"] == "empty"]
    assert len(empty) == 1 and empty[0]["label"] is None and empty[0]["error"] == "empty text"


def test_explanations_resume_and_merge_to_the_bytes_of_one_run(planted_model: Path, labelled: Path, tmp_path: Path):
    corpus = labelled / "corpus.jsonl"
    opts = ["--input", corpus, "--chunk-size", "20", "--labels", "zebra", "lion"]
    whole = tmp_path / "whole.jsonl"
    assert explain(planted_model, *opts, "--output", whole).returncode == 0
    stopped = tmp_path / "stopped.jsonl"
    stop_after_a_chunk([planted_model, *opts, "--output", stopped], stopped, script="explain.py")
    assert not stopped.exists()
    r = explain(planted_model, *opts, "--output", stopped, "--resume")
    assert r.returncode == 0 and "resuming" in r.stderr, r.stderr
    assert stopped.read_bytes() == whole.read_bytes()
    # the shards as the job file runs them (an array of two tasks, then MERGE=1): explain.py --shard K/2, --merge
    merged = tmp_path / "job" / "e.jsonl"
    settings = {"EXPLAIN": "occlusion", "MODEL": planted_model, "INPUT": corpus, "OUTPUT": merged,
                "LABELS": "zebra;lion", "CHUNK_SIZE": 20, "OMP_NUM_THREADS": 1, "SGE_TASK_FIRST": 1, "SGE_TASK_LAST": 2}
    for k in (1, 2):
        r = job(**settings, SGE_TASK_ID=k)
        assert r.returncode == 0 and f"--shard {k}/2 --resume" in r.stdout, r.stdout + r.stderr
    r = job(EXPLAIN="occlusion", INPUT=corpus, OUTPUT=merged, MERGE=1)
    assert r.returncode == 0 and merged.read_bytes() == whole.read_bytes(), r.stdout + r.stderr
    assert len(read_jsonl(whole)) == 2 * 240 + 1  # every row, both labels (the bad row: one line)
    # keywords with each word's mean number: the model used the planted word for its label
    r = run_script("keywords.py", labelled / "labels.tsv", "--explanations", whole, "--output", tmp_path / "k.json")
    assert r.returncode == 0, r.stderr
    zebra = next(k for k in json.loads((tmp_path / "k.json").read_text())["keywords"] if k["label"] == "zebra")
    assert zebra["word"] == "zebra" and zebra["mean_number"] > 0.3, zebra


def test_explain_bad_choices_are_one_line(planted_model: Path, labelled: Path, tmp_path: Path):
    corpus = labelled / "corpus.jsonl"
    out = tmp_path / "e.jsonl"
    for settings, needle in (({"EXPLAIN": "shap"}, "EXPLAIN=shap: use occlusion or ig"),
                             ({"EXPLAIN": "ig", "PRECISION": "int8"}, "takes no PRECISION")):
        r = job(MODEL=planted_model, INPUT=corpus, OUTPUT=out, **settings)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    r = job(MODEL=planted_model, INPUT=corpus, EXPLAIN="ig", DRY_RUN=1, LABELS="Software Development;lion")
    assert f"--output {corpus.with_suffix('.explanations.jsonl')} " in r.stdout and "--chunk-size 64" in r.stdout
    assert "--labels Software\\ Development lion --method ig" in r.stdout, r.stdout  # a name with a space: one name
    one_line(explain(planted_model, "--input", corpus, "--output", out, "--labels", "tiger"), "explain.py", "tiger")
    one_line(explain(planted_model, "--input", corpus, "--output", tmp_path / "e.tsv"), "explain.py", ".jsonl")
    one_line(explain(planted_model, "--input", corpus, "--output", corpus.with_suffix(".jsonl")), "explain.py")
    one_line(explain(planted_model, "--input", tmp_path / "missing.txt", "--output", out), "explain.py", "no such")
    csv_input = tmp_path / "c.csv"
    csv_input.write_text("text,year\nhello zebra,2020\n")
    one_line(explain(planted_model, "--input", csv_input, "--text-column", "body", "--output", out), "explain.py",
             "no column 'body'")
    assert not out.exists()


# --------------------------------------------------------------------------- the page, in a real browser


def test_the_page_renders_in_headless_chromium_with_the_planted_word_highlighted(chromium: str, planted_model: Path,
                                                                                 labelled: Path, tmp_path: Path):
    corpus = tmp_path / "c.jsonl"
    rows = [{"id": "zoo", "text": "I saw a zebra at the zoo <b>today</b> 😀"}, {"id": "none", "text": ""},
            {"id": "cat", "text": "the lion sleeps tonight"}]
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    expl = tmp_path / "e.jsonl"
    assert explain(planted_model, "--input", corpus, "--output", expl).returncode == 0
    assert run_script("keywords.py", labelled / "labels.tsv", "--output", tmp_path / "k.json", "--plot",
                      tmp_path / "k.png").returncode == 0
    r = run_script("rates.py", labelled / "labels.tsv", "--by", "year", "--output", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    page = tmp_path / "page.html"
    r = run_script("findings_page.py", expl, "--output", page, "--keywords", tmp_path / "k.json", "--rates",
                   tmp_path / "r.json", "--image", tmp_path / "k.png")
    assert r.returncode == 0, r.stderr
    source = page.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=.(https?:)?//", source)  # nothing from a network
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [x for x in done.stderr.splitlines() if "CONSOLE" in x or "Uncaught" in x]
    assert not console, console  # no script error
    dom = done.stdout
    assert 'class="expl shown"' in dom  # the page's script ran (it shows the chosen label's blocks)
    zoo = re.search(r'<div class="text" data-line="1">.*?</div></div>', dom, re.S).group()
    marks = re.findall(r'<mark style="[^"]*" data-weight="([^"]+)">([^<]*)</mark>', zoo)
    assert max(marks, key=lambda m: float(m[0]))[1] == "zebra", marks
    assert "&lt;" in zoo and "<b>today" not in zoo  # the text's own markup shown as text, not obeyed
    assert "empty text" in dom and "Keywords per label" in dom and "Rates by year" in dom
    assert "data:image/png;base64," in dom
