"""download_data.py against a real HTTP server on 127.0.0.1 (tests/helpers.py: DataServer), real folders
and real subprocesses. Retries use --backoff 0 (or a small one) so the whole file runs in seconds."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from helpers import DATA_FILES, ROOT, Reply, run_script

import download_data

SCRIPT = ROOT / "download_data.py"
FAST = ("--backoff", "0")


def run_download(data_dir: Path, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    return run_script(SCRIPT, data_dir, *args, env={"GOEMOTIONS_BASE_URL": "", **(env or {})}, timeout=60)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_complete(data_dir: Path, goemotions_dir: Path) -> None:
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(DATA_FILES)  # no temp files left over
    for name in DATA_FILES:
        assert sha256(data_dir / name) == download_data.FILES[name]
        assert (data_dir / name).read_bytes() == (goemotions_dir / name).read_bytes()


def assert_one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("download_data.py: error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


def test_pinned_checksums_are_the_real_data(goemotions_dir: Path) -> None:
    assert set(download_data.FILES) == set(DATA_FILES)
    for name, digest in download_data.FILES.items():
        assert sha256(goemotions_dir / name) == digest, name
    assert re.search(r"/google-research/[0-9a-f]{40}/goemotions/data/$", download_data.DEFAULT_BASE_URL)


def test_clean_download(data_server, goemotions_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"  # created, parents too
    result = run_download(data_dir, "--base-url", data_server.url)
    assert result.returncode == 0, result.stderr
    assert_complete(data_dir, goemotions_dir)
    assert sorted((m, n) for m, n, _ in data_server.log) == sorted(("GET", n) for n in DATA_FILES)
    summary = result.stdout.strip().splitlines()
    assert len(summary) == 1 and "6 downloaded" in summary[0] and "0 already in place" in summary[0]
    assert result.stderr == ""  # no progress bars when stderr is not a terminal
    umask = os.umask(0)
    os.umask(umask)
    assert (data_dir / "train.tsv").stat().st_mode & 0o777 == 0o666 & ~umask  # not a temp file's 0600


def test_503_then_200_is_retried(data_server, goemotions_dir: Path, tmp_path: Path) -> None:
    data_server.script("train.tsv", Reply(503), Reply(429), Reply(500))
    result = run_download(tmp_path, "--base-url", data_server.url, "--retries", "3", *FAST)
    assert result.returncode == 0, result.stderr
    assert data_server.count("train.tsv") == 4
    assert_complete(tmp_path, goemotions_dir)


def test_retries_back_off_exponentially(data_server, tmp_path: Path) -> None:
    data_server.script("dev.tsv", Reply(503), Reply(503), Reply(503))
    result = run_download(tmp_path, "--base-url", data_server.url, "--retries", "3", "--backoff", "0.25")
    assert result.returncode == 0, result.stderr
    times = [t for _, name, t in data_server.log if name == "dev.tsv"]  # as the server received them
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # 0.25, 0.5, 1 s: each wait doubles. A request on loopback takes milliseconds, so each gap is its wait plus
    # at most 0.2 s; a constant wait (>= 1 s to pass the last) or a linear one (0.75 s last) cannot pass.
    assert len(gaps) == 3, gaps
    for gap, wait in zip(gaps, (0.25, 0.5, 1.0), strict=True):
        assert wait <= gap < wait + 0.2, gaps


def test_retries_run_out_on_a_persistent_5xx(data_server, tmp_path: Path) -> None:
    data_server.always("test.tsv", Reply(502))
    result = run_download(tmp_path, "--base-url", data_server.url, "--retries", "2", *FAST)
    assert_one_error_line(result, "test.tsv", "3 attempts", "502")
    assert data_server.count("test.tsv") == 3
    assert "test.tsv" not in leftovers(tmp_path)
    assert not [n for n in leftovers(tmp_path) if ".tmp-" in n]


@pytest.mark.parametrize("status", [404, 403])
def test_4xx_is_not_retried(data_server, tmp_path: Path, status: int) -> None:
    data_server.always("dev.tsv", Reply(status))
    result = run_download(tmp_path, "--base-url", data_server.url, "--retries", "5", *FAST)
    assert_one_error_line(result, f"HTTP {status}", "dev.tsv", "not retried")
    assert data_server.count("dev.tsv") == 1
    assert "dev.tsv" not in leftovers(tmp_path)
    assert not [n for n in leftovers(tmp_path) if ".tmp-" in n]


def test_truncated_body_leaves_no_file(data_server, tmp_path: Path) -> None:
    # Content-Length says 3.5 MB, the server sends 1000 bytes and hangs up, every time
    data_server.always("train.tsv", Reply(send=1000))
    result = run_download(tmp_path, "--base-url", data_server.url, "--retries", "2", *FAST)
    assert_one_error_line(result, "train.tsv", "3 attempts")
    assert data_server.count("train.tsv") == 3  # a cut-off connection is worth retrying
    assert "train.tsv" not in leftovers(tmp_path)
    assert not [n for n in leftovers(tmp_path) if ".tmp-" in n]


def test_truncated_body_once_then_whole(data_server, goemotions_dir: Path, tmp_path: Path) -> None:
    data_server.script("train.tsv", Reply(send=1000))
    result = run_download(tmp_path, "--base-url", data_server.url, *FAST)
    assert result.returncode == 0, result.stderr
    assert data_server.count("train.tsv") == 2
    assert_complete(tmp_path, goemotions_dir)


def test_stalled_server_fails_within_a_bounded_time(data_server, tmp_path: Path) -> None:
    data_server.always("dev.tsv", Reply(stall=30))
    start = time.monotonic()
    result = run_download(tmp_path, "--base-url", data_server.url, "--timeout", "0.5", "--retries", "1",
                          *FAST)
    elapsed = time.monotonic() - start
    assert_one_error_line(result, "dev.tsv", "2 attempts", "timed out")
    assert elapsed < 10, elapsed
    assert data_server.count("dev.tsv") == 2
    assert "dev.tsv" not in leftovers(tmp_path)


def test_default_timeout_waits_for_a_slow_server(data_server, goemotions_dir: Path, tmp_path: Path) -> None:
    # the original script gave up after 1 s; a slow login node needs far more
    data_server.script("emotions.txt", Reply(stall=1.5))
    result = run_download(tmp_path, "--base-url", data_server.url, "--retries", "0")
    assert result.returncode == 0, result.stderr
    assert data_server.count("emotions.txt") == 1
    assert_complete(tmp_path, goemotions_dir)


def test_timeout_option_parsing() -> None:
    assert download_data.parse_timeout("5") == (5.0, 5.0)
    assert download_data.parse_timeout("3,7.5") == (3.0, 7.5)
    result = run_download(Path("unused"), "--timeout", "0")
    assert result.returncode == 2 and "--timeout" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_existing_file_is_replaced(data_server, goemotions_dir: Path, tmp_path: Path) -> None:
    for name in DATA_FILES:
        (tmp_path / name).write_bytes((goemotions_dir / name).read_bytes())
    good = (goemotions_dir / "dev.tsv").read_bytes()
    (tmp_path / "dev.tsv").write_bytes(good[:-10] + b"corrupted!")  # same size, wrong bytes
    result = run_download(tmp_path, "--base-url", data_server.url)
    assert result.returncode == 0, result.stderr
    assert [(m, n) for m, n, _ in data_server.log] == [("GET", "dev.tsv")]  # only the bad one fetched
    assert "1 downloaded" in result.stdout and "5 already in place" in result.stdout
    assert_complete(tmp_path, goemotions_dir)


def test_second_run_touches_no_network(data_server, goemotions_dir: Path, tmp_path: Path) -> None:
    assert run_download(tmp_path, "--base-url", data_server.url).returncode == 0
    first = data_server.count()
    result = run_download(tmp_path, "--base-url", data_server.url)
    assert result.returncode == 0, result.stderr
    assert data_server.count() == first == len(DATA_FILES)
    assert "0 downloaded" in result.stdout
    # and with an unreachable mirror it still succeeds
    result = run_download(tmp_path, "--base-url", "http://127.0.0.1:9/nothing/", "--retries", "0")
    assert result.returncode == 0, result.stderr
    assert_complete(tmp_path, goemotions_dir)


@pytest.mark.parametrize("form", ["folder", "file_url"])
def test_local_mirror(goemotions_dir: Path, tmp_path: Path, form: str) -> None:
    base = str(goemotions_dir) if form == "folder" else goemotions_dir.as_uri() + "/"
    result = run_download(tmp_path / "data", "--base-url", base)
    assert result.returncode == 0, result.stderr
    assert "6 downloaded" in result.stdout
    assert_complete(tmp_path / "data", goemotions_dir)


def test_local_mirror_missing_file(goemotions_dir: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in DATA_FILES[:3]:
        (mirror / name).write_bytes((goemotions_dir / name).read_bytes())
    result = run_download(tmp_path / "data", "--base-url", mirror.as_uri())
    assert_one_error_line(result, "emotions.txt", "No such file")
    assert leftovers(tmp_path / "data") == ["dev.tsv", "test.tsv", "train.tsv"]


def test_base_url_from_environment(data_server, goemotions_dir: Path, tmp_path: Path) -> None:
    result = run_download(tmp_path / "a", env={"GOEMOTIONS_BASE_URL": data_server.url})
    assert result.returncode == 0, result.stderr
    assert data_server.count() == len(DATA_FILES)
    assert_complete(tmp_path / "a", goemotions_dir)
    # --base-url wins over the environment
    result = run_download(tmp_path / "b", "--base-url", str(goemotions_dir),
                          env={"GOEMOTIONS_BASE_URL": "http://127.0.0.1:9/nothing/"})
    assert result.returncode == 0, result.stderr
    assert data_server.count() == len(DATA_FILES)


def test_checksum_mismatch_from_server(data_server, tmp_path: Path) -> None:
    data_server.always("emotions.txt", Reply(body=b"admiration\namusement\n"))
    (tmp_path / "emotions.txt").write_bytes(b"an older, damaged copy")
    result = run_download(tmp_path, "--base-url", data_server.url, *FAST)
    assert_one_error_line(result, "emotions.txt", "checksum mismatch")
    assert data_server.count("emotions.txt") == 1
    assert (tmp_path / "emotions.txt").read_bytes() == b"an older, damaged copy"  # not replaced by bad bytes
    assert not [n for n in leftovers(tmp_path) if ".tmp-" in n]


def test_sigterm_mid_download_leaves_no_file(data_server, tmp_path: Path) -> None:
    data_server.always("train.tsv", Reply(stall=30))
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "--base-url", data_server.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not any(".tmp-" in n for n in leftovers(tmp_path)) or data_server.count("train.tsv") < 1:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert leftovers(tmp_path) == []


def test_unsupported_url_and_bad_data_dir(tmp_path: Path) -> None:
    assert_one_error_line(run_download(tmp_path, "--base-url", "ftp://example.org/data/"), "unsupported")
    (tmp_path / "a_file").write_text("x")
    assert_one_error_line(run_download(tmp_path / "a_file" / "data", "--base-url", "/nowhere"), "a_file")


def test_progress_bars_on_a_terminal(goemotions_dir: Path, tmp_path: Path) -> None:
    def stderr_on_a_tty(*args: str) -> str:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns, not 0
        proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
        return b"".join(chunks).decode("utf-8", "replace")

    shown = stderr_on_a_tty(str(tmp_path / "a"), "--base-url", str(goemotions_dir))
    assert "files: 100%" in shown and "6/6" in shown
    hidden = stderr_on_a_tty(str(tmp_path / "b"), "--base-url", str(goemotions_dir), "--no-progress")
    assert hidden == ""
