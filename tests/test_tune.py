"""tune.py and tune.com: a search on a real journal file, trials as real bert_model.py runs of a tiny BERT on a
slice of the real data: pruning, concurrent workers, a worker SIGKILLed mid-trial, a requeued worker resuming its
trial, --report and --confirm, and bad input in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from helpers import ROOT, run_script, write_slice
from optuna.trial import TrialState

import tune
from multilabel import shared_study
from multilabel import space as search_space

# A trial of the tiny BERT: 160 examples, batch 8 (20 steps an epoch, about 0.3 s), dev scored every 48 examples.
TRIAL = ["--precision", "fp32", "--max-length", "32", "--batch-size", "8", "--warmup-ratio", "0"]


@pytest.fixture
def data(goemotions_dir: Path, tmp_path: Path) -> Path:
    return write_slice(goemotions_dir, tmp_path / "data", {"train": 160, "dev": 64, "test": 64})


def space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.txt"
    path.write_text(text, encoding="utf-8")
    return path


def tune_argv(study: Path, data: Path, space_file: Path, model: Path, *options: str) -> list[str]:
    return [str(study), "--data", str(data), "--space", str(space_file), "--dev-every", "48", *options,
            "--", "--transformer-model", str(model), *TRIAL]


def tune_fixed(study: Path) -> list[str]:
    """The study's fixed bert_model.py options, as its first worker recorded them."""
    return tune.open_study(tune.parse_args([str(study)]), create=False).user_attrs["fixed"]


def new_study(argv: list[str]) -> optuna.Study:
    """The study as the first worker creates it (in this process, so that trials can be queued in it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return tune.open_study(tune.parse_args(argv), create=True)


def worker(argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    """tune.py as a Grid Engine task runs it: one worker process, its output in `log`."""
    full = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, str(ROOT / "tune.py"), *argv], cwd=ROOT, env=full,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def states(study: Path) -> dict[int, str]:
    loaded = tune.open_study(tune.parse_args([str(study)]), create=False)
    return {t.number: t.state.name for t in loaded.get_trials(deepcopy=False)}


def trial_log(study: Path, number: int) -> str:
    return tune.beside(tune.trial_path(study, number), ".log").read_text(errors="replace")


# -------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("text", "message"), [
    ("learning-rat log 1e-5 1e-3\n",
     "space.txt:1: unknown option 'learning-rat' (a search varies: transformer-model learning-rate"),
    ("# a comment\nepochs int 3 1\n", "space.txt:2: epochs: empty range 3 to 1 (LOW must be < HIGH)"),
    ("learning-rate log 0 1e-3\n", "space.txt:1: learning-rate: empty range 0 to 1e-3 (log needs LOW > 0)"),
    ("epochs choice\n", "space.txt:1: epochs: empty choice"),
    ("epochs range 1 3\n", "space.txt:1: epochs: unknown kind 'range'"),
    ("epochs int 1\n", "space.txt:1: epochs int takes LOW HIGH, got 1 value(s)"),
    ("learning-rate log 1e-5 fast\n", "space.txt:1: learning-rate: 'fast' is not a number"),
    ("epochs float 1 3\n", "space.txt:1: epochs is a whole number: use int"),
    ("learning-rate int 1 3\n", "space.txt:1: learning-rate is not a whole number: use float or log"),
    ("loss float 1 3\n", "space.txt:1: loss takes a value from a list: use choice"),
    ("loss choice bce hinge\n", "space.txt:1: loss: 'hinge' is not one of bce, weighted-bce, focal, asl"),
    ("epochs int 1 3\nepochs int 1 2\n", "space.txt:2: epochs is already on line 1"),
    ("# nothing\n\n", "space.txt: no options to search"),
    ("batch-size choice 8 16\n", "space.txt:1: --batch-size is also fixed after --: one or the other"),
    # values bert_model.py's own parser refuses: its range, for both ends and for every choice
    ("epochs int 0 2\n", "space.txt:1: epochs: '0' is not a whole number >= 1 (bert_model.py --epochs)"),
    ("batch-size choice 0 16\n", "space.txt:1: batch-size: '0' is not a whole number >= 1 (bert_model.py --batch"),
    ("weight-decay float -1 0.1\n", "space.txt:1: weight-decay: '-1' is not a number >= 0 (bert_model.py"),
    ("max-length int 4 64\n", "space.txt:1: max-length: '4' is not a whole number >= 8, or auto (bert_model.py"),
    ("loss choice focal\nasl-clip float 0 1\n", "space.txt:2: asl-clip: '1' is not a number in [0, 1) (bert_model"),
])
def test_bad_space_file_is_one_line(tmp_path: Path, data: Path, text: str, message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = tune_argv(tmp_path / "study", data, space(tmp_path, text), tmp_path / "no-model")
    assert tune.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tune.py: error: {tmp_path}/") and message in err[0], err
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("problem", ["missing", "no data"])
def test_a_study_without_its_data_makes_no_study_folder(tmp_path: Path, data: Path, problem: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in --data (or no --data) for a new study: one line, and no study folder (no journal) left behind."""
    argv = tune_argv(tmp_path / "study", tmp_path / "dta", space(tmp_path, "epochs int 1 2\n"), tmp_path)
    if problem == "no data":
        argv = argv[:1] + argv[3:]
    assert tune.main(argv) == 1
    err = capsys.readouterr().err.strip()
    wanted = (f"{tmp_path}/dta/train.tsv: file not found" if problem == "missing" else "no --data DATA_DIR")
    assert wanted in err and "\n" not in err, err
    assert not (tmp_path / "study").exists()


def test_a_lease_shorter_than_two_heartbeats_is_refused(tmp_path: Path, data: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--lease 40 with a renewal every 30 s: a worker a little late would lose its trial to another; refused before
    the study is made. Twice the heartbeat is accepted."""
    space_file = space(tmp_path, "epochs int 1 2\n")
    assert tune.main(tune_argv(tmp_path / "study", data, space_file, tmp_path, "--lease", "40")) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "tune.py: error: --lease 40 is less than twice --heartbeat 30: other workers would take over trials whose "
        "workers are alive (lengthen --lease or shorten --heartbeat)"]
    assert not (tmp_path / "study").exists()
    new_study(tune_argv(tmp_path / "study", data, space_file, tmp_path, "--lease", "20", "--heartbeat", "10"))


def test_bad_input_in_a_process_has_no_traceback(tmp_path: Path, data: Path) -> None:
    r = run_script("tune.py", *tune_argv(tmp_path / "s", data, space(tmp_path, "epochs int 2 2\n"), tmp_path))
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"tune.py: error: {tmp_path}/space.txt:1: epochs: empty range 2 to 2 (LOW must be < HIGH)"], r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_a_study_of_another_dataset_is_refused(tmp_path: Path, data: Path, goemotions_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    space_file = space(tmp_path, "epochs int 1 2\n")
    new_study(tune_argv(tmp_path / "study", data, space_file, tmp_path))
    other = write_slice(goemotions_dir, tmp_path / "other", {"train": 150, "dev": 64, "test": 64})
    assert tune.main(tune_argv(tmp_path / "study", other, space_file, tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tune.py: error: {tmp_path}/study: this study was written for another dataset "
                          "(other train data: SHA-256 "), err
    assert err.endswith("use a new study folder") and "\n" not in err
    assert tune.main(tune_argv(tmp_path / "study", data, space(tmp_path, "epochs int 1 3\n"), tmp_path)) == 1
    assert "this study was started with another space" in capsys.readouterr().err
    assert tune.main([str(tmp_path / "nothing"), "--report"]) == 1
    assert "no study here (no journal.log)" in capsys.readouterr().err
    db = f"sqlite:///{tmp_path}/studies.db"  # --storage: an RDB URL instead of the journal
    assert tune.main([str(tmp_path / "db"), "--storage", db, "--report"]) == 1
    assert capsys.readouterr().err.strip() == f"tune.py: error: {db}: no study here: start one with tune.py " \
                                               f"{tmp_path}/db --data"
    new_study(tune_argv(tmp_path / "db", data, space_file, tmp_path, "--storage", db))
    assert tune.main([str(tmp_path / "db"), "--storage", db, "--report"]) == 0
    assert "0 trials: none; 0 training steps" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------- the journal and folder


def journal_lines(study: Path) -> list[bytes]:
    return (study / "journal.log").read_bytes().splitlines(keepends=True)


def test_a_cut_last_line_of_the_journal_is_removed_and_the_study_goes_on(tmp_path: Path, data: Path,
                                                                          tiny_bert: Path) -> None:
    """A worker killed while appending leaves the journal's last line cut. Optuna appended the next line onto it,
    and from then on every worker and --report failed on that line. tune.py removes it first, saying so."""
    study = tmp_path / "study"
    argv = tune_argv(study, data, space(tmp_path, "learning-rate log 1e-4 1e-3\n"), tiny_bert, "--trials", "1")
    new_study(argv)
    whole = (study / "journal.log").read_bytes()
    cut = b'{"op_code":4,"worker_id":"a-worker-killed-mid-line","study_id":0,"dat'
    (study / "journal.log").write_bytes(whole + cut)
    r = run_script("tune.py", str(study), "--report")
    assert r.returncode == 0 and r.stderr.strip().splitlines() == [f"tune.py: {study}/journal.log: removed a cut "
                                                                   f"last line ({len(cut)} bytes: a writer stopped "
                                                                   "mid-line)"], r.stderr
    assert (study / "journal.log").read_bytes() == whole and "0 trials: none" in r.stdout
    (study / "journal.log").write_bytes(whole + cut)
    r = run_script("tune.py", *argv, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "removed a cut last line" in r.stderr, r.stdout + r.stderr
    assert states(study) == {0: "COMPLETE"}
    assert all(json.loads(line) for line in journal_lines(study))


def test_a_line_cut_while_a_worker_runs_is_removed_before_its_next_append(tmp_path: Path, data: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The study was opened whole; then another worker died mid-line: this worker's next append, under the
    journal's lock, removes the cut line before it writes its own."""
    study = tmp_path / "study"
    opened = new_study(tune_argv(study, data, space(tmp_path, "epochs int 1 2\n"), tmp_path))
    capsys.readouterr()
    cut = b'{"op_code":2,"worker_id":"gone","study_id":0,"user_attr":{"no'
    with open(study / "journal.log", "ab") as f:
        f.write(cut)
    opened.set_user_attr("after", 1)
    assert f"removed a cut last line ({len(cut)} bytes" in capsys.readouterr().err
    assert all(json.loads(line) for line in journal_lines(study))
    assert tune.open_study(tune.parse_args([str(study)]), create=False).user_attrs["after"] == 1


def test_a_last_line_being_written_is_left_to_its_writer(tmp_path: Path, data: Path) -> None:
    """A last line with no newline may be a write in progress: tune.py takes the journal's lock (Optuna's, which
    the writer holds) before it removes anything, so it waits for the line to be finished and keeps it."""
    study = tmp_path / "study"
    new_study(tune_argv(study, data, space(tmp_path, "epochs int 1 2\n"), tmp_path))
    line = next(x for x in journal_lines(study) if json.loads(x)["op_code"] == 2)  # set a user attr: again, harmless
    lock = study / "journal.log.lock"
    lock.touch()  # held by the writer, as Optuna's JournalFileOpenLock holds it
    with open(study / "journal.log", "ab") as f:
        f.write(line[:20])
    reader = subprocess.Popen([sys.executable, str(ROOT / "tune.py"), str(study), "--report"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    assert reader.poll() is None  # waiting for the lock
    with open(study / "journal.log", "ab") as f:
        f.write(line[20:])
    lock.unlink()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0 and err == "", err
    assert journal_lines(study)[-1] == line


def test_a_line_in_the_journal_that_is_not_json_is_one_line(tmp_path: Path, data: Path) -> None:
    study = tmp_path / "study"
    argv = tune_argv(study, data, space(tmp_path, "epochs int 1 2\n"), tmp_path)
    new_study(argv)
    lines = journal_lines(study)
    (study / "journal.log").write_bytes(b"".join([lines[0], b'{"op_code":4,"wor{"op_code":2}\n', *lines[1:]]))
    for r in (run_script("tune.py", str(study), "--report"), run_script("tune.py", *argv)):
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [
            f"tune.py: error: {study}/journal.log:2: not a line of Optuna's journal (not JSON): Optuna cannot read "
            "the study past it; mend that line by hand, or use a new study folder"], r.stderr


def test_a_study_folder_that_cannot_be_written_is_one_line(tmp_path: Path, data: Path, small_disk,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Read-only (a read-only mount: root writes through chmod), a file in the way, a folder for the journal. In
    this process (an OSError traceback would fail the test here too), then one as a process."""
    space_file = space(tmp_path, "epochs int 1 2\n")
    disk = small_disk(4)
    new_study(tune_argv(disk / "study", data, space_file, tmp_path))
    small_disk(4, disk, read_only=True)
    (tmp_path / "a-file").write_text("")
    (tmp_path / "odd" / "journal.log").mkdir(parents=True)
    for study, problem in ((disk / "new", ": cannot make the study folder here: Read-only file system"),
                           (disk / "study", ": cannot write in the study folder: Read-only file system"),
                           (tmp_path / "a-file", ": cannot make the study folder here: File exists"),
                           (tmp_path / "a-file" / "study", ": cannot make the study folder here: Not a directory"),
                           (tmp_path / "odd", "/journal.log: Is a directory")):
        assert tune.main(tune_argv(study, data, space_file, tmp_path)) == 1
        assert capsys.readouterr().err.strip().splitlines() == [f"tune.py: error: {study}{problem}"]
    r = run_script("tune.py", *tune_argv(disk / "new", data, space_file, tmp_path))
    assert r.returncode == 1 and r.stderr == f"tune.py: error: {disk}/new: cannot make the study folder here: " \
                                             "Read-only file system\n", r.stderr
    r = run_script("tune.py", str(disk / "study"), "--report", "--plot", str(tmp_path / "report.png"))
    assert r.returncode == 0 and "0 trials: none" in r.stdout, r.stderr  # reading needs no write
    # a plot the report may not write (the study's own journal): refused before the report prints, not after
    r = run_script("tune.py", str(disk / "study"), "--report", "--plot", str(disk / "study" / "journal.log"))
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, (r.stdout, r.stderr)
    assert "journal.log" in r.stderr and "Traceback" not in r.stderr


# -------------------------------------------------------------------------------------------- a search


def test_a_bad_trial_is_pruned_then_report_and_confirm(tmp_path: Path, data: Path, tiny_bert: Path) -> None:
    """Trial 0 finishes; trial 1, as long (a learning rate that wrecks the model), is below it at the first dev
    score and stopped there, long before its 12 epochs; --report and --confirm read the study."""
    study = tmp_path / "study"
    argv = tune_argv(study, data, space(tmp_path, "learning-rate log 1e-7 3e-2\nepochs int 1 30\n"), tiny_bert,
                     "--trials", "2", "--prune-after", "1")
    s = new_study(argv)
    s.enqueue_trial({"learning-rate": 1e-7, "epochs": 12})
    s.enqueue_trial({"learning-rate": 3e-2, "epochs": 12})
    r = run_script("tune.py", *argv, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert states(study) == {0: "COMPLETE", 1: "PRUNED"}, r.stdout
    assert "trial 1: pruned at 48 examples" in r.stdout
    assert "SIGTERM: checkpoint written" in trial_log(study, 1)  # stopped as a requeue stops it
    pruned = tune.trial_path(study, 1)
    assert not tune.beside(pruned, ".checkpoint.pt").exists() and not tune.beside(pruned, ".metrics.json").exists()
    # 12 epochs would score 48 times; the worker looks every 0.5 s and an epoch takes about 0.3 s (in one CI run it
    # scored its whole first epoch, 4 times, before it stopped)
    assert len(tune.files.read_progress(tune.files.progress_path(pruned))) < 24

    r = run_script("tune.py", str(study), "--report")
    assert r.returncode == 0, r.stderr
    assert "2 trials: 1 complete, 1 pruned" in r.stdout and "best: trial 0, dev macro F1 " in r.stdout
    assert f"command: {sys.executable} {ROOT}/bert_model.py {data}/train.tsv" in r.stdout
    assert (study / "report.png").stat().st_size > 10_000

    r = run_script("tune.py", str(study), "--confirm", "1", "--seeds", "2", "--workers", "2",
                   "--baseline", "--learning-rate 1e-3 --epochs 1", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    first = tune.baseline_name([*tune_fixed(study), "--learning-rate", "1e-3", "--epochs", "1"])
    assert sorted(p.name for p in (study / "confirm").glob("*.metrics.json")) == [
        f"{first}-seed42.metrics.json", f"{first}-seed43.metrics.json",
        "trial-0000-seed42.metrics.json", "trial-0000-seed43.metrics.json"]
    assert r.stdout.count("2 (seed 42, 43)") == 2  # compare_runs' table: two groups of two seeds
    assert "trial-0000 against the baseline:\nPaired bootstrap over 64 test examples" in r.stdout

    # another baseline: its own runs, never the first baseline's finished ones under its name
    r = run_script("tune.py", str(study), "--confirm", "1", "--seeds", "2", "--workers", "2",
                   "--baseline", "--learning-rate 1e-3 --epochs 2", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("confirm: baseline-") == 2 and "confirm: trial-0000" not in r.stdout  # trial runs kept
    second = tune.baseline_name([*tune_fixed(study), "--learning-rate", "1e-3", "--epochs", "2"])
    for seed in (42, 43):
        assert json.loads((study / "confirm" / f"{second}-seed{seed}.metrics.json").read_text())["settings"][
            "epochs"] == 2

    # a finished run is reused only when it is the run --confirm would make (identity.py): one whose metrics say
    # other options, or other data, is run again; the others are kept
    for seed, change in ((42, ("args", "learning_rate", 0.5)), (43, ("identity", "data", {"train": "0" * 64}))):
        path = study / "confirm" / f"trial-0000-seed{seed}.metrics.json"
        metrics = json.loads(path.read_text())
        metrics[change[0]][change[1]] = change[2] if change[1] != "data" else {**metrics["identity"]["data"],
                                                                                 **change[2]}
        path.write_text(json.dumps(metrics))
    r = run_script("tune.py", str(study), "--confirm", "1", "--seeds", "2", "--workers", "2",
                   "--baseline", "--learning-rate 1e-3 --epochs 2", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "trial-0000-seed42: its finished run was written with --learning-rate 0.5, this run has" in r.stdout
    assert "trial-0000-seed43: its finished run was written with other train data" in r.stdout
    assert r.stdout.count("confirm: trial-0000 seed") == 2 and "confirm: baseline-" not in r.stdout
    for seed in (42, 43):
        assert json.loads((study / "confirm" / f"trial-0000-seed{seed}.metrics.json").read_text())["args"][
            "learning_rate"] != 0.5


def test_a_trial_is_pruned_only_against_finished_trials_of_its_length() -> None:
    """At the same examples seen, a 3-epoch trial trails 1-epoch trials (its learning rate has decayed less):
    Optuna's MedianPruner prunes it; tune.py's pruner waits for 4 finished 3-epoch trials, then prunes it only if
    it is below their median."""
    study = optuna.create_study(direction="maximize")
    epochs = {"epochs": optuna.distributions.IntDistribution(1, 3)}

    def trial(length: int, score: float, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(params={"epochs": length}, distributions=epochs, state=state,
                                         value=score if state == TrialState.COMPLETE else None,
                                         intermediate_values={1: score})

    for _ in range(4):
        study.add_trial(trial(1, 0.5))
    slow = trial(3, 0.2, TrialState.RUNNING)
    rule = shared_study.MedianOfTheSameLength(4)
    assert optuna.pruners.MedianPruner(n_startup_trials=4, n_min_trials=4).prune(study, slow)
    assert not rule.prune(study, slow)
    for _ in range(3):
        study.add_trial(trial(3, 0.3))
    assert not rule.prune(study, slow)  # 3 finished trials of its length: not yet
    study.add_trial(trial(3, 0.3))
    assert rule.prune(study, slow)
    assert not rule.prune(study, trial(3, 0.35, TrialState.RUNNING))


def test_concurrent_workers_one_sigkilled_mid_trial(tmp_path: Path, data: Path, tiny_bert: Path) -> None:
    """Two workers on one journal; one is SIGKILLed mid-trial. Its trial is not left running: its bert_model.py
    checkpoints (SIGTERM when its parent dies) and the other worker resumes it; every trial runs once."""
    study = tmp_path / "study"
    argv = tune_argv(study, data, space(tmp_path, "learning-rate log 1e-4 1e-3\n"), tiny_bert, "--trials", "4",
                     "--pruner", "none") + ["--epochs", "12"]
    new_study(argv)
    a = worker(argv, tmp_path / "a.log")
    b = worker(argv, tmp_path / "b.log")

    def a_has_checkpoint() -> bool:
        for path in (study / "trials").glob("*.lease.json"):
            lease = shared_study.read_lease(path.with_name(path.name.removesuffix(".lease.json")))
            if lease and lease["pid"] == a.pid and tune.files.checkpoint_path(
                    path.with_name(path.name.removesuffix(".lease.json"))).exists():
                return True
        return False

    wait_for(a_has_checkpoint)
    a.kill()
    a.wait()
    assert b.wait(timeout=240) == 0, (tmp_path / "b.log").read_text()
    out = (tmp_path / "b.log").read_text()
    assert states(study) == dict.fromkeys(range(4), "COMPLETE"), out
    assert "its worker is gone" in out and "resuming its checkpoint" in out
    resumed = [n for n in range(4) if "resumed from" in trial_log(study, n)]
    assert len(resumed) == 1, out
    for n in range(4):  # each trial trained to the end exactly once
        assert trial_log(study, n).count("Test macro F1") == 1, trial_log(study, n)


def test_a_requeued_worker_resumes_its_own_trial(tmp_path: Path, data: Path, tiny_bert: Path) -> None:
    """Grid Engine's s_rt warning (SIGUSR1): the trial checkpoints, the worker exits 99; the rerun of the same task
    (same JOB_ID and SGE_TASK_ID) takes its trial back at once and resumes it with --resume."""
    study = tmp_path / "study"
    argv = tune_argv(study, data, space(tmp_path, "learning-rate log 1e-4 1e-3\n"), tiny_bert, "--trials", "1",
                     "--lease", "3600") + ["--epochs", "12"]
    new_study(argv)
    task = {"JOB_ID": "77", "SGE_TASK_ID": "3"}
    w = worker(argv, tmp_path / "first.log", **task)
    wait_for(lambda: tune.files.checkpoint_path(tune.trial_path(study, 0)).exists())
    w.send_signal(signal.SIGUSR1)
    assert w.wait(timeout=120) == 99, (tmp_path / "first.log").read_text()
    assert states(study) == {0: "RUNNING"}
    assert "stopped at a checkpoint" in (tmp_path / "first.log").read_text()
    w = worker(argv, tmp_path / "again.log", **task, RESTARTED="1")
    assert w.wait(timeout=120) == 0, (tmp_path / "again.log").read_text()
    assert states(study) == {0: "COMPLETE"}
    assert "trial 0: its worker is gone (77.3 pid" in (tmp_path / "again.log").read_text()
    assert "resumed from" in trial_log(study, 0) and trial_log(study, 0).count("Test macro F1") == 1


# -------------------------------------------------------------------------------------------- tune.com


def test_tune_com_dry_run_and_a_bad_setting(tmp_path: Path, data: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JOB_ID", "SGE_TASK_ID", "OMP_NUM_THREADS")}
    env.update(PYTHON=sys.executable, CONDA_MODULE="", STUDY=str(tmp_path / "study"), DATA_DIR=str(data),
               DEVICE="cpu", DRY_RUN="1", TRIALS="8", EXTRA_ARGS="--epochs 1", SGE_TASK_ID="2")
    r = subprocess.run(["bash", str(ROOT / "tune.com")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (f"tune.com: command: {sys.executable} {ROOT}/tune.py {tmp_path}/study --data {data} --space "
            f"{ROOT}/sweeps/space.txt --trials 8 --hours 0 --objective dev --dev-every 10000 --python "
            f"{sys.executable} -- --transformer-model bert-base-uncased --epochs 1") in r.stdout
    r = subprocess.run(["bash", str(ROOT / "tune.com")], capture_output=True, text=True, cwd=ROOT,
                       env={**env, "CONFIRM": "2"})
    assert f"--confirm 2 --data {data} --task 2" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["bash", str(ROOT / "tune.com")], capture_output=True, text=True, cwd=ROOT,
                       env={**env, "TRIALS": "many"})
    assert r.returncode == 1 and r.stderr.strip() == "tune.com: error: TRIALS=many is not a whole number >= 1"


def test_the_default_space_file_reads(tmp_path: Path) -> None:
    options = [p.option for p in search_space.read_space(ROOT / "sweeps" / "space.txt", tune.search_table())]
    assert options == ["learning-rate", "head-learning-rate", "epochs", "batch-size", "warmup-ratio", "loss",
                       "max-length"]


@pytest.mark.sge
def test_an_array_of_two_workers_under_grid_engine_one_killed_mid_trial(sge, tmp_path: Path, data: Path,
                                                                         tiny_bert: Path) -> None:
    """qsub -t 1-2 tune.com under the real local Grid Engine: two workers on one journal file; task 1 is killed
    outright mid-trial (SIGKILL to its whole process group, as a lost node or h_rt does). Task 2 takes the trial
    over (resumed from its checkpoint) and the study ends with every trial complete, none left running."""
    from test_jobs import job_shell

    study, logs = tmp_path / "study", tmp_path / "logs"
    logs.mkdir()
    settings = {"PYTHON": sys.executable, "CONDA_MODULE": "", "STUDY": study, "DATA_DIR": data, "DEVICE": "cpu",
                "MODEL": tiny_bert, "SPACE": space(tmp_path, "learning-rate log 1e-4 1e-3\n"), "TRIALS": 4,
                "DEV_EVERY": 48, "TUNE_ARGS": "--pruner none", "EXTRA_ARGS": " ".join([*TRIAL, "--epochs", "12"]),
                "HF_HUB_CACHE": tmp_path / "cache", "OMP_NUM_THREADS": 1}
    j = sge.qsub("tune.com", "-t", "1-2", "-l", "ncpus=1", log_dir=logs, env=settings)

    def task_1_has_a_checkpoint() -> bool:
        for lease in (study / "trials").glob("*.lease.json") if (study / "trials").exists() else []:
            save_fp = lease.with_name(lease.name.removesuffix(".lease.json"))
            owner = shared_study.read_lease(save_fp) or {}
            if owner.get("job") == f"{j}.1" and tune.files.checkpoint_path(save_fp).exists():
                return True
        return False

    wait_for(task_1_has_a_checkpoint, timeout=240)
    os.killpg(job_shell(j, 1), signal.SIGKILL)
    records = sge.wait(j, timeout=400, records=2)
    log2 = (logs / f"tune.o{j}.2").read_text(errors="replace")
    assert {r["taskid"]: r["exit_status"] for r in records}["2"] == "0", log2[-3000:]
    assert states(study) == dict.fromkeys(range(4), "COMPLETE"), log2[-3000:]
    assert "its worker is gone" in log2 and "resuming its checkpoint" in log2, log2[-3000:]
    for n in range(4):  # each trial trained to its end exactly once
        assert trial_log(study, n).count("Test macro F1") == 1, trial_log(study, n)


def test_an_option_added_to_bert_model_is_searchable_with_its_type() -> None:
    """The search space is bert_model.py's own parser (space.py): an option added to it tomorrow (here, to a copy of
    it) is searchable as declared, its range and choices checked, a switch a switch, without touching tune.py."""
    import bert_model
    from multilabel.options import Range

    parser = bert_model.build_parser()
    parser.add_argument("--new-rate", type=Range(float, low=0, high=1), default=0.5)
    parser.add_argument("--new-mode", choices=["a", "b"], default="a")
    parser.add_argument("--new-switch", action="store_true")
    table = search_space.searchable(parser, search_space.loss_of_options())
    assert (table["new-rate"].type, table["new-mode"].type, table["new-switch"].type) == (float, str, bool)
    assert table["focal-gamma"].loss == "focal" and "seed" not in table and "threshold" not in table
    good = search_space.space_line(["new-rate", "float", "0.1", "0.9"], "s:1", 1, table)
    assert good.values == (0.1, 0.9)
    for words, message in ((["new-rate", "float", "0.1", "1.5"], "'1.5' is not a number in [0, 1]"),
                           (["new-rate", "int", "0", "1"], "not a whole number: use float or log"),
                           (["new-mode", "choice", "a", "c"], "'c' is not one of a, b"),
                           (["new-switch", "choice", "yes", "maybe"], "'maybe' is not one of yes, no")):
        with pytest.raises(tune.UserError, match=re.escape(message)):
            search_space.space_line(words, "s:1", 1, table)
    trial = optuna.create_study().ask()
    params = [good, search_space.space_line(["new-switch", "choice", "yes"], "s:2", 2, table)]
    assert search_space.suggest(trial, params, [], table)[:1] == ["--new-rate"]
    assert search_space.suggest(trial, params, [], table)[2:] == ["--new-switch"]
