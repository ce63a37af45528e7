"""What a script writes, declared and checked before it writes anything, and held for the run's life: one owner for
every output, in every script (docs/your-files.md says what it promises).

    with outputs.claim(PROG, inputs, outs):      # the checks below, then a lock on each output; released at the end
        ... the work ...

The checks, each a one-line UserError naming both paths, before any work:
  - no output is an input, by path (through symlinks) or by file (a hard link), nor holds one (a folder replaced
    whole), nor lies inside a folder the run loads as a whole (a model folder: its files are its fingerprint);
  - no output is another output, nor lies inside one that is replaced whole (it would vanish with it);
  - an output that exists already is replaced only where the script made it: a file the user named (--output,
    --metrics-file) is theirs to replace; a file the script names beside it (OUT.meta.json, SAVE_FP.dev.jsonl) and a
    folder replaced whole (SAVE_FP, OUT_DIR) must be recognisably the script's own (`ours`), else the run is refused.

The lock: OUTPUT.lock beside each output, made with O_EXCL (atomic on NFS as on local disks), holding the host, pid,
Grid Engine job and command of its run, renewed every LOCK_RENEW_S seconds by a thread. A second run on the same
output is refused in one line. A lock whose run is gone (its pid dead on this host, this very Grid Engine task before
a requeue, or not renewed for LOCK_STALE_S seconds on any host) is taken over, with a line saying so.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from multilabel.files import UserError

LOCK_RENEW_S = 30.0
LOCK_STALE_S = 180.0  # under tune.py's trial lease (300 s), so that a trial taken over finds its lock stale
LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class Input:
    """A file the run reads, or a folder it loads as a whole (nothing may be written inside it); `role` says what it
    is to the run where that is not reading it (a file of a run compared, say)."""
    path: Path
    what: str
    folder: bool = False
    role: str = "which this run reads"


@dataclass(frozen=True)
class Output:
    """A file (or a folder replaced whole) the run writes. `named`: the user named it, and may have it replaced; else
    the script names it, and replaces it only where `ours` says it made it. `ours(path)`: '' for one of the script's
    own, else what it is instead."""
    path: Path
    what: str
    folder: bool = False
    named: bool = True
    ours: Callable[[Path], str] | None = None


def claim(prog: str, inputs: Iterable[Input], outs: Iterable[Output], lock: bool = True):  # noqa: ANN201
    """Check the outputs against the inputs and one another, lock them, check that what exists is ours: a context
    manager that releases the locks at its end."""
    inputs, outs = [i for i in inputs if i.path], [o for o in outs if o.path]
    check_paths(inputs, outs)
    return held(prog, outs, lock)


@contextmanager
def held(prog: str, outs: list[Output], lock: bool) -> Iterator[None]:
    locks = []
    try:
        for out in outs if lock else []:
            if out.named or out.folder:
                locks.append(Lock(out.path, prog))
        for out in outs:
            check_ours(out)
        yield
    finally:
        for held_lock in reversed(locks):
            held_lock.release()


# ------------------------------------------------------------------------------------------ the path checks


def resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)


def check_paths(inputs: list[Input], outs: list[Output]) -> None:
    for out in outs:
        where = resolved(out.path)
        blocked = next((p for p in where.parents if p.exists() and not p.is_dir()), None)
        if blocked:
            raise UserError(f"{out.path}: cannot write {out.what} there: {blocked} is a file, not a folder")
        for source in inputs:
            clash = clash_with_input(out, where, source)
            if clash:
                raise UserError(f"{out.path}: {clash}; choose another path for {out.what}")
        for other in outs:
            if other is not out and (clash := clash_of_outputs(out, where, other)):
                raise UserError(f"{out.path}: {clash}")


def linked_into(path: Path, folder: Path) -> bool:
    """Is `path` a hard link to one of the files under `folder`?"""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_nlink < 2 or not folder.is_dir():
        return False
    return any(file_id(p) == (st.st_dev, st.st_ino) for p in folder.rglob("*") if p.is_file())


def clash_with_input(out: Output, where: Path, source: Input) -> str:
    read = resolved(source.path)
    same = where == read or (file_id(out.path) is not None and file_id(out.path) == file_id(source.path))
    if same or (source.folder and linked_into(out.path, source.path)):
        return f"is {source.path} ({source.what}), {source.role}"
    if out.folder and inside(read, where):
        return f"would be replaced whole, and it holds {source.path} ({source.what}), {source.role}"
    if source.folder and inside(where, read):
        return f"is inside {source.path} ({source.what}), which this run loads as a whole"
    return ""


def clash_of_outputs(out: Output, where: Path, other: Output) -> str:
    there = resolved(other.path)
    if where == there:
        return f"is also {other.what} ({other.path}): one file cannot be both"
    if other.folder and inside(where, there):
        return f"is inside {other.path} ({other.what}), which is replaced whole at the end: {out.what} would vanish"
    return ""


def check_ours(out: Output) -> None:
    """An output that is there already: a folder where a file goes (or the reverse), or not the script's own."""
    path = out.path
    if not os.path.lexists(path):
        return
    fix = "choose another path" if out.named else "move it away"
    if path.is_dir() != out.folder:
        raise UserError(f"{path}: exists and is {'a folder' if path.is_dir() else 'a file'}, not {out.what}: "
                        f"refusing to replace it; {fix}")
    if out.ours is not None and (instead := out.ours(path)):
        raise UserError(f"{path}: exists and is {instead}, not {out.what} this script made: refusing to replace it; "
                        f"{fix}")


# ------------------------------------------------------------------------------------------ what is ours


def json_with(*keys: str) -> Callable[[Path], str]:
    """Ours: a JSON object with these keys."""
    def ours(path: Path) -> str:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "not JSON"
        return "" if isinstance(obj, dict) and all(k in obj for k in keys) else f"JSON without {', '.join(keys)}"
    return ours


def json_lines_with(key: str) -> Callable[[Path], str]:
    """Ours: JSON lines, each an object with `key` (a last line cut short by a kill aside)."""
    def ours(path: Path) -> str:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError):
            return "not text"
        lines = text.splitlines()
        for line in lines if text.endswith("\n") else lines[:-1]:
            try:
                if key not in json.loads(line):
                    return f"JSON lines without {key!r}"
            except (ValueError, TypeError):
                return "not JSON lines"
        return ""
    return ours


def png(path: Path) -> str:
    """Ours: a PNG image (what every plot of the scripts is)."""
    try:
        with open(path, "rb") as f:
            return "" if f.read(8) == b"\x89PNG\r\n\x1a\n" else "not a PNG image"
    except OSError:
        return "unreadable"


def folder_listing(list_file: str, listed: Callable[[Path], list[str] | None],
                   also: Iterable[str] = ()) -> Callable[[Path], str]:
    """Ours: an empty folder, or one with `list_file` whose other entries are all named in it (`listed` reads the
    list; None: an older folder without a list, where `list_file` alone says it is ours) or in `also`."""
    def ours(path: Path) -> str:
        entries = sorted(p.name for p in path.iterdir())
        if not entries:
            return ""
        if list_file not in entries:
            return f"a folder without {list_file} ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})"
        known = listed(path)
        unknown = [] if known is None else [e for e in entries if e not in {list_file, *known, *also}]
        return f"a folder holding files not written here ({', '.join(unknown[:3])})" if unknown else ""
    return ours


# ------------------------------------------------------------------------------------------ the lock


def identity() -> dict:
    """Who this process is: host and pid, and the Grid Engine job and task (the same again after a requeue)."""
    job = os.environ.get("JOB_ID")
    task = os.environ.get("SGE_TASK_ID", "undefined")
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": f"{job}.{task}" if job else None}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def read_lock(path: Path) -> dict | None:
    """A lock's content; None where there is none; {} for a file that is not one of ours. An empty one is a lock whose
    run was killed between making it and writing it (or is writing it now): renewed when it was made."""
    try:
        text = path.read_text(encoding="utf-8")
        made = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    if not text:
        return {"pid": 0, "host": "", "started": made, "renewed": made, "command": "(an empty lock)"}
    try:
        obj = json.loads(text)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) and "pid" in obj and "renewed" in obj else {}


def gone(holder: dict, me: dict) -> str:
    """Why the run holding a lock is gone, or '' while it may still be running."""
    here = holder.get("host") == me["host"]
    if me["job"] and holder.get("job") == me["job"]:
        return f"it was this Grid Engine task ({me['job']}) before a requeue"
    if here and holder.get("pid") == me["pid"]:
        return f"its pid {me['pid']} is this process's: it ran before a restart"
    if here and not pid_alive(int(holder.get("pid", 0))):
        return f"its process {holder.get('pid')} on {holder.get('host')} is gone"
    age = time.time() - float(holder.get("renewed", 0))
    return f"not renewed for {age:.0f} s" if age > LOCK_STALE_S else ""


class Lock:
    """OUTPUT.lock, held from here until release(), renewed by a thread (see the module's docstring)."""

    def __init__(self, path: Path, prog: str) -> None:
        self.output, self.path, self.token = path, lock_path(path), uuid.uuid4().hex
        self.content = {**identity(), "command": " ".join([prog, *sys.argv[1:]]), "token": self.token,
                        "started": time.time(), "renewed": time.time()}
        try:
            self.acquire()
        except UserError:
            self.remove_made()
            raise
        self.done = threading.Event()
        threading.Thread(target=self.renew, daemon=True).start()

    def acquire(self) -> None:
        self.made = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{self.path.parent}: cannot make the folder of {self.output} ({e.strerror})") from None
        while not self.create():
            holder = read_lock(self.path)
            if holder is None:
                continue  # released just now
            if not holder:
                raise UserError(f"{self.path}: exists and is not a lock of these scripts: refusing to replace it; "
                                f"move it away")
            why = gone(holder, self.content)
            if not why and not holder["pid"] and time.time() - holder["renewed"] < 5:
                time.sleep(0.1)  # an empty lock just made: its run is writing it
                continue
            if not why:
                raise UserError(f"{self.output}: in use by another run ({describe(holder)}): wait for it to end, or "
                                f"choose another path; if that run is gone, remove {self.path}")
            self.take_over(holder, why)

    def create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise UserError(f"{self.path}: cannot make the lock of {self.output} ({e.strerror or e})") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.content))
        return True

    def take_over(self, holder: dict, why: str) -> None:
        """Remove a stale lock: one taker at a time (a second O_EXCL file), and only the lock judged stale."""
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            if time.time() - guard.stat().st_mtime > 60:  # a taker that died in these few lines
                guard.unlink(missing_ok=True)
            time.sleep(0.1)
            return
        try:
            if read_lock(self.path) == holder:
                self.path.unlink()
                print(f"{self.content['command'].split()[0]}: {self.path}: taking over the lock of a run that is "
                      f"gone ({why}; {describe(holder)})", file=sys.stderr)
        finally:
            guard.unlink(missing_ok=True)

    def renew(self) -> None:
        while not self.done.wait(LOCK_RENEW_S):
            if (read_lock(self.path) or {}).get("token") != self.token:
                return  # taken over (this process was judged gone): not ours to write any more
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            try:
                tmp.write_text(json.dumps({**self.content, "renewed": time.time()}), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError:
                tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock, and the folders made for it where nothing else went into them (a run that failed)."""
        self.done.set()
        held_now = read_lock(self.path)
        if held_now and held_now.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.remove_made()

    def remove_made(self) -> None:
        for folder in self.made:
            try:
                folder.rmdir()
            except OSError:
                break


def describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
    job = f", Grid Engine job {holder['job']}" if holder.get("job") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, since {started}: {holder.get('command', '')}"
