"""data_analysis.py on the real GoEmotions data and on small hand-written TSVs with known answers."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT, SPLITS, run_script

import data_analysis
from multilabel import files

SCRIPT = ROOT / "data_analysis.py"

# Hand-written, as the dataset's authors wrote theirs: CSV quoting for a text with `"` (inner quotes doubled)
# or a tab; spaces around a text are part of it.
TRAIN_TSV = (
    '"Pretty sure you don\'t know what ""hurt"" means"\t1\tid1\n'
    "trailing space \t0,2\tid2\n"
    '"tab\tinside"\t0\tid3\n'
    " leading space\t0,1,2\tid4\n"
    "another\t2\tid5\n"
)
TRAIN_TEXTS = ['Pretty sure you don\'t know what "hurt" means', "trailing space ", "tab\tinside", " leading space",
               "another"]
DEV_TSV = "fine\t2\td1\nalso fine\t0\td2\n"
TEST_TSV = "x\t0,1\tt1\n"

EXPECTED_TEXT = """\
train: 5 samples

label    count  % of texts  % with another label
joy          3       60.00                 66.67
anger        2       40.00                 50.00
neutral      3       60.00                 66.67

labels  samples  % of samples
1             3         60.00
2             1         20.00
3             1         20.00

dev: 2 samples

label    count  % of texts  % with another label
joy          1       50.00                  0.00
anger        0        0.00                  0.00
neutral      1       50.00                  0.00

labels  samples  % of samples
1             2        100.00

test: 1 samples

label    count  % of texts  % with another label
joy          1      100.00                100.00
anger        1      100.00                100.00
neutral      0        0.00                  0.00

labels  samples  % of samples
2             1        100.00
"""


def write_data(folder: Path, train: str = TRAIN_TSV, dev: str = DEV_TSV, test: str = TEST_TSV,
               emotions: str = "joy\nanger\nneutral") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test), ("emotions.txt", emotions)):
        (folder / name).write_text(text, encoding="utf-8", newline="")
    return folder


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_data(tmp_path / "tiny")


def run_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = data_analysis.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_stats(goemotions_dir: Path) -> dict:
    result = run_script(SCRIPT, goemotions_dir, "--format", "json", timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_real_sample_counts(real_stats: dict) -> None:
    assert {s: real_stats["splits"][s]["samples"] for s in SPLITS} == {"train": 43410, "dev": 5426, "test": 5427}
    assert len(real_stats["labels"]) == 28 and real_stats["labels"][-1] == "neutral"
    for split in real_stats["splits"].values():
        assert sum(split["labels_per_sample"].values()) == split["samples"]
        assert sum(r["count"] for r in split["labels"]) == sum(int(n) * k for n, k in
                                                             split["labels_per_sample"].items())


@pytest.mark.parametrize("split", SPLITS)
def test_original_readme_claims_about_neutral(real_stats: dict, split: str) -> None:
    rows = {r["label"]: r for r in real_stats["splits"][split]["labels"]}
    neutral = rows["neutral"]["percent_with_other_label"]
    assert neutral >= 9.8  # (a) at least 9.8% of neutral's occurrences come with another label
    others = [r["percent_with_other_label"] for name, r in rows.items() if name != "neutral"]
    assert neutral < min(others)  # (b) the lowest co-occurrence percentage of all labels


def test_reader_agrees_with_pandas_csv_on_real_data(goemotions_dir: Path) -> None:
    for split in SPLITS:
        ours = data_analysis.read_split(goemotions_dir / f"{split}.tsv", 28)
        theirs = pd.read_csv(goemotions_dir / f"{split}.tsv", sep="\t", header=None, keep_default_na=False, dtype=str)
        assert ours["text"].tolist() == theirs[0].tolist()
        assert ours["id"].tolist() == theirs[2].tolist()
        assert [",".join(map(str, ids)) for ids in ours["labels"]] == theirs[1].tolist()
    train = data_analysis.read_split(goemotions_dir / "train.tsv", 28)["text"]
    assert train.str.contains('"').sum() > 1000  # texts that were written CSV-quoted
    assert (train != train.str.strip()).sum() > 1000  # spaces around texts kept


def test_default_data_dir_is_dot_data(small_data: Path) -> None:
    result = run_script(SCRIPT, cwd=small_data.parent)  # small_data is <tmp>/data
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("train: 96 samples\n")
    assert "\ndev: 48 samples\n" in result.stdout and "\ntest: 48 samples\n" in result.stdout


# --------------------------------------------------------------------------- exact values, formats


def test_text_table_exact(tiny: Path) -> None:
    result = run_script(SCRIPT, tiny)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED_TEXT
    assert result.stderr == ""


def test_reads_csv_quoting_exactly(tiny: Path) -> None:
    train = data_analysis.read_split(tiny / "train.tsv", 3)
    assert train["text"].tolist() == TRAIN_TEXTS
    assert train["labels"].tolist() == [(1,), (0, 2), (0,), (0, 1, 2), (2,)]
    assert train["id"].tolist() == ["id1", "id2", "id3", "id4", "id5"]


def test_json_format(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, tiny, "--format", "json")
    assert code == 0
    stats = json.loads(out)
    assert stats["labels"] == ["joy", "anger", "neutral"]
    train = stats["splits"]["train"]
    assert train["samples"] == 5
    assert train["labels_per_sample"] == {"1": 3, "2": 1, "3": 1}
    assert [(r["label"], r["count"]) for r in train["labels"]] == [("joy", 3), ("anger", 2), ("neutral", 3)]
    assert [r["percent_of_texts"] for r in train["labels"]] == pytest.approx([60, 40, 60])
    assert [r["percent_with_other_label"] for r in train["labels"]] == pytest.approx([200 / 3, 50, 200 / 3])
    assert [r["percent_with_other_label"] for r in stats["splits"]["dev"]["labels"]] == [0, 0, 0]
    assert stats["splits"]["test"]["labels_per_sample"] == {"2": 1}


def test_tsv_format(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, tiny, "--format", "tsv")
    assert code == 0
    table = pd.read_csv(StringIO(out), sep="\t", keep_default_na=False, dtype=str)
    assert list(table.columns) == ["split", "kind", "name", "count", "percent", "percent_with_other_label"]
    rows = {(r.split, r.kind, r.name): r for r in table.itertuples()}
    assert rows[("train", "samples", "all")].count == "5"
    assert (rows[("train", "label", "joy")].count, rows[("train", "label", "joy")].percent,
            rows[("train", "label", "joy")].percent_with_other_label) == ("3", "60.0000", "66.6667")
    assert rows[("train", "labels_per_sample", "3")].count == "1"
    assert rows[("dev", "label", "anger")].count == "0"
    assert len(table) == 3 * 4 + 3 + 1 + 1  # 3 splits x (samples + 3 labels) + labels-per-sample rows


def test_markdown_format(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, tiny, "--format", "markdown")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "### train: 5 samples"
    assert "| label | count | % of texts | % with another label |" in lines
    assert "| joy | 3 | 60.00 | 66.67 |" in lines
    assert "| 3 | 1 | 20.00 |" in lines
    assert "### test: 1 samples" in lines


def test_output_file(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "reports" / "stats.txt"
    code, out, err = run_main(capsys, tiny, "--output", out_file)
    assert code == 0 and out == "" and str(out_file) in err
    assert out_file.read_text(encoding="utf-8") == EXPECTED_TEXT
    assert [p.name for p in out_file.parent.iterdir()] == ["stats.txt"]  # no temp file left


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "stats.txt"
    target.write_text("old")

    def fails_half_way(tmp: Path) -> None:
        tmp.write_text("half of a new rep")
        raise OSError(28, "No space left on device")

    with pytest.raises(files.UserError, match="no room for the statistics"):
        files.atomic_write(target, fails_half_way, "the statistics")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["stats.txt"]
    new = tmp_path / "new.txt"
    with pytest.raises(files.UserError):
        files.atomic_write(new, fails_half_way)
    assert not new.exists()


def test_unwritable_output_is_one_line(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_file").write_text("x")
    code, out, err = run_main(capsys, tiny, "--output", tmp_path / "a_file" / "stats.txt")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "cannot write" in err


def test_plots(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    code, out, err = run_main(capsys, tiny, "--plot", tmp_path / "charts")
    assert code == 0 and out == EXPECTED_TEXT and "4 charts" in err
    names = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert names == ["cooccurrence_dev.png", "cooccurrence_test.png", "cooccurrence_train.png",
                     "label_frequency.png"]
    for name in names:
        with Image.open(tmp_path / "charts" / name) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 600 <= width <= 3000 and 600 <= height <= 3000, (name, image.size)
            colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
            assert colors is None or len(colors) > 20  # a chart, not a blank canvas


# --------------------------------------------------------------------------- validation

BAD_INPUTS = {  # name: (file, its content, expected "file:line", expected words)
    "too_few_columns": ("train.tsv", "ok\t0\ta\nonly text\t0\n", 2, "expected 3 tab-separated columns"),
    "too_many_columns": ("dev.tsv", "ok\t0\ta\tb\n", 1, "found 4"),
    "blank_row": ("test.tsv", "ok\t0\ta\n\nok\t1\tb\n", 2, "found 0"),
    "non_integer_label": ("train.tsv", "ok\t0\ta\nok\t1,x\tb\n", 2, "label id 'x' is not a non-negative integer"),
    "negative_label": ("train.tsv", "ok\t-1\ta\n", 1, "label id '-1' is not a non-negative integer"),
    # an empty label field is a text with no label (tests/test_prepare_data.py); an empty id in a list is not
    "empty_label_id": ("train.tsv", "ok\t0\ta\nok\t0,\tb\n", 2, "label id '' is not"),
    "label_out_of_range": ("dev.tsv", "ok\t0\ta\nok\t2\tb\nok\t3\tc\n", 3, "label id 3 out of range 0-2"),
    "label_twice": ("dev.tsv", "ok\t1,1\ta\n", 1, "label id 1 given twice"),
    "empty_text": ("test.tsv", "ok\t0\ta\n\t0\tb\n", 2, "empty text"),
    "blank_text": ("test.tsv", "   \t0\tb\n", 1, "empty text"),
    "empty_id": ("test.tsv", "ok\t0\t\n", 1, "empty id"),
    "duplicate_id": ("train.tsv", "a\t0\tx1\nb\t1\tx2\nc\t2\tx1\n", 3, "duplicate id 'x1' (first at"),
    "bad_quoting": ("train.tsv", 'ok\t0\ta\n"quoted"then more\t0\tb\n', 2, "bad CSV quoting"),
    "no_samples": ("dev.tsv", "", None, "no examples"),
    "blank_label_line": ("emotions.txt", "joy\n\nanger\nneutral", 2, "blank label name"),
    "blank_last_label_line": ("emotions.txt", "joy\nanger\nneutral\n\n", 4, "blank label name"),
    "repeated_label": ("emotions.txt", "joy\nanger\njoy", 3, "label 'joy' repeats line 1"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(case: str, tiny: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    name, content, line, words = BAD_INPUTS[case]
    (tiny / name).write_text(content, encoding="utf-8", newline="")
    old = tmp_path / "old.txt"
    old.write_text("keep me")
    new = tmp_path / "new.txt"
    for output in (old, new):
        code, out, err = run_main(capsys, tiny, "--output", output, "--plot", tmp_path / "charts")
        assert code == 1 and out == ""
        assert err.endswith("\n") and err.count("\n") == 1, err
        assert err.startswith(f"data_analysis.py: error: {tiny / name}{'' if line is None else f':{line}'}: "), err
        assert words in err
    assert old.read_text() == "keep me"
    assert not new.exists()
    assert not (tmp_path / "charts").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt", "tiny"]


def test_bad_utf8_names_the_line(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tiny / "dev.tsv").write_bytes(b"ok\t0\ta\nbad \xff byte\t0\tb\n")
    code, _, err = run_main(capsys, tiny)
    assert code == 1 and err.startswith(f"data_analysis.py: error: {tiny / 'dev.tsv'}:2: not valid UTF-8")


def test_missing_file(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tiny / "test.tsv").unlink()
    code, out, err = run_main(capsys, tiny)
    assert code == 1 and out == ""
    assert err == f"data_analysis.py: error: {tiny / 'test.tsv'}: file not found\n"


def test_one_trailing_newline_in_labels_is_fine(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tiny / "emotions.txt").write_text("joy\nanger\nneutral\n")
    code, out, _ = run_main(capsys, tiny)
    assert code == 0 and out == EXPECTED_TEXT


def test_bad_input_in_a_real_process(tiny: Path) -> None:
    (tiny / "train.tsv").write_text("ok\t0\ta\nok\t7\tb\n")
    result = subprocess.run([sys.executable, str(SCRIPT), str(tiny)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"data_analysis.py: error: {tiny / 'train.tsv'}:2: label id 7 out of range 0-2 "
                             f"(the labels file has 3 labels)\n")
