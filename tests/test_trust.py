"""Nothing a user's code, the disk or the log does ends a search silently.

Each test states the exit code, the message's first line and the run folder afterwards:
nothing lost, nothing left behind.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import (  # noqa: E402
    alive, children_of, count_trials, hptune_process, hptune_run, trial_events, user_config, wait_until)
from hptune_test_objectives import score  # noqa: E402

from hptune.config import load_config  # noqa: E402
from hptune.errors import ConfigError, StorageError  # noqa: E402
from hptune.search import resume, search  # noqa: E402
from hptune.store import RunStore  # noqa: E402


def first_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    return lines[0] if lines else ""


def leftovers(folder: Path) -> list[str]:
    """Temp files anywhere under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


def outcomes(run_dir: Path) -> dict[int, tuple]:
    return {e["trial"]: (json.dumps(e["params"], sort_keys=True), e["seed"], e["status"],
                         json.dumps(e["metrics"], sort_keys=True)) for e in trial_events(run_dir)}


# -- 1. sys.exit in user code --------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1])
def test_sys_exit_in_the_objective_fails_that_trial_only(tmp_path, code):
    space = {"x": {"low": 0.0, "high": 1.0}, "die_above": 0.6, "code": code}
    config = user_config(tmp_path, "exits_python", space=space, trials=8, jobs=2)
    proc = hptune_run("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = trial_events(tmp_path / "runs" / "user")
    assert sorted(t["trial"] for t in trials) == list(range(8))
    exited = [t for t in trials if t["params"]["x"] > 0.6]
    assert exited and all(t["status"] == "failed" for t in exited)
    assert all(t["error"].startswith(f"the objective called sys.exit({code})") for t in exited)
    assert all(t["status"] == "ok" for t in trials if t["params"]["x"] <= 0.6)


# -- 2. results the log cannot hold ---------------------------------------------------------


def test_numpy_values_in_a_result_are_plain_numbers_in_the_log(tmp_path):
    run_dir = search(load_config(user_config(tmp_path, "numpy_curve", trials=3, jobs=1)), tmp_path / "runs").run_dir
    for t in trial_events(run_dir):
        assert t["status"] == "ok" and t["curve"] == [{"epoch": 1, "acc": 0.5, "hist": [0, 1, 2]}]
        assert t["metrics"]["score"] == pytest.approx(score(t["params"]), rel=1e-6)


@pytest.mark.parametrize("function, words", [
    ("unloggable", "curve[0].seen is a builtins.set, which the trial log cannot hold"),
    ("lock_metric", "metric 'lock' must be a number; got lock"),
])
def test_a_result_the_log_cannot_hold_fails_its_trial_and_names_key_and_type(tmp_path, function, words):
    config = user_config(tmp_path, function, trials=3, jobs=2)
    proc = hptune_run("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert first_error_line(proc.stderr).startswith("error: none of the 3 trials in runs/user finished")
    trials = trial_events(tmp_path / "runs" / "user")
    assert len(trials) == 3 and all(t["status"] == "failed" and words in t["error"] for t in trials)
    again = hptune_run("resume", str(tmp_path / "runs" / "user"), cwd=tmp_path)  # nothing owed, nothing crashes
    assert again.returncode == 1 and "Traceback" not in again.stderr and len(trial_events(tmp_path / "runs" / "user")) == 3


# -- 3. report files and a search finishing at the same time ----------------------------------


@pytest.mark.slow
def test_report_files_are_never_left_stale_by_a_report_racing_a_search(tmp_path):
    space = {"x": {"low": 0.0, "high": 1.0}, "sleep_s": 0.03}
    config = user_config(tmp_path, "slow", space=space, trials=40, jobs=2)
    proc = hptune_process("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "user"
    reports = 0
    while proc.poll() is None:
        if (run_dir / "trials.jsonl").exists():
            hptune_run("report", str(run_dir), "--format", "csv", cwd=tmp_path)
            reports += 1
    proc.communicate()
    assert proc.returncode == 0 and reports >= 1
    final = hptune_run("report", str(run_dir), cwd=tmp_path)
    rows = (run_dir / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 40, (final.stderr, len(rows))  # up to date, whoever wrote last


def test_freshness_is_read_from_the_log_not_from_timestamps(tmp_path):
    from hptune.report.files import report_files_fresh, write_report_files
    from hptune.runstate import Run

    run_dir = search(load_config(user_config(tmp_path, "quadratic", trials=4)), tmp_path / "runs").run_dir
    assert report_files_fresh(Run.open(run_dir))
    stale = Run.open(run_dir)  # a report that read the log ...
    with open(run_dir / "trials.jsonl", "a") as f:  # ... before a trial finished
        f.write(json.dumps({**trial_events(run_dir)[0], "trial": 99}) + "\n")
    write_report_files(stale)  # and wrote its files after: newer files, older content
    assert not report_files_fresh(Run.open(run_dir))
    out = hptune_run("report", str(run_dir), cwd=tmp_path)
    assert "report: wrote" in out.stderr and report_files_fresh(Run.open(run_dir))
    assert len((run_dir / "results.csv").read_text().strip().splitlines()) == 1 + 5


# -- 4. a full disk (a real one: a small tmpfs), 7. read-only places ----------------------------


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def fill(self) -> None:
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {done.stderr.decode().strip()}")
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_stops_the_search_with_what_is_safe_and_resume_finishes_it(tmp_path, small_disk):
    config = user_config(tmp_path, "quadratic", trials=400, jobs=2)
    runs = small_disk.path / "runs"
    proc = hptune_run("search", str(config), "--runs-dir", str(runs), cwd=tmp_path)
    run_dir = runs / "user"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    safe = count_trials(run_dir)
    line = first_error_line(proc.stderr)
    assert line.startswith(f"error: {run_dir}/trials.jsonl: cannot write (the disk is full). The search stopped; "
                           f"the {safe} finished trials in {run_dir} are safe on disk."), line
    assert f"resume with: hptune resume {run_dir}" in line and 0 < safe < 400
    assert leftovers(run_dir) == []
    small_disk.remount("size=2m")
    again = hptune_run("resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(outcomes(run_dir)) == list(range(400))  # each trial once


def test_report_files_on_a_full_disk_leave_no_temp_file_and_claim_nothing(tmp_path, small_disk):
    run_dir = search(load_config(user_config(tmp_path, "quadratic", trials=30)), small_disk.path / "runs",
                     report=False).run_dir
    small_disk.fill()
    out = hptune_run("report", str(run_dir), cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert "warning: cannot write the report files" in out.stderr and "(the disk is full)" in out.stderr
    assert "report: wrote" not in out.stderr and not (run_dir / "report.html").exists()
    assert leftovers(run_dir) == [] and len(trial_events(run_dir)) == 30


def test_a_search_on_a_full_disk_leaves_no_run_folder_behind(tmp_path, small_disk):
    runs = small_disk.path / "runs"
    runs.mkdir()
    small_disk.fill()
    proc = hptune_run("search", str(user_config(tmp_path, "quadratic", trials=3)), "--runs-dir", str(runs), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "(the disk is full)" in first_error_line(proc.stderr) and "nothing was run" in first_error_line(proc.stderr)
    assert list(runs.iterdir()) == []


def test_read_only_places_are_clear_errors(tmp_path, small_disk):
    runs = small_disk.path / "runs"
    run_dir = search(load_config(user_config(tmp_path, "quadratic", trials=3)), runs, report=False).run_dir
    small_disk.remount("ro")
    new = hptune_run("search", str(user_config(tmp_path, "quadratic", trials=3)), "--runs-dir", str(runs), cwd=tmp_path)
    assert new.returncode == 1 and "Traceback" not in new.stderr
    assert first_error_line(new.stderr).startswith(f"error: {runs}: cannot create a run folder in it (the file system is read-only)")
    again = hptune_run("resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert first_error_line(again.stderr).startswith(f"error: {run_dir}: cannot write in the run folder")
    report = hptune_run("report", str(run_dir), cwd=tmp_path)  # reading still works
    assert report.returncode == 0 and "warning: cannot write the report files" in report.stderr


def test_a_log_that_cannot_be_appended_to_stops_with_the_resume_command(tmp_path, monkeypatch):
    """A read-only trials.jsonl (or any write error) in the middle of a search."""
    config = load_config(user_config(tmp_path, "quadratic", trials=12, jobs=1))
    real = RunStore.append
    calls = []

    def append(self, events):
        calls.append(len(events))
        if len(calls) > 4:
            raise PermissionError(13, "Permission denied", str(self.log_path))
        return real(self, events)

    monkeypatch.setattr(RunStore, "append", append)
    with pytest.raises(StorageError) as info:
        search(config, tmp_path / "runs")
    run_dir = tmp_path / "runs" / "user"
    message = str(info.value)
    assert message.startswith(f"{run_dir}/trials.jsonl: cannot write (permission denied). The search stopped; the ")
    assert f"hptune resume {run_dir}" in message
    assert leftovers(run_dir) == []
    monkeypatch.setattr(RunStore, "append", real)
    resume(run_dir, report=False)
    assert sorted(outcomes(run_dir)) == list(range(12))


# -- 5. log lines of the wrong shape, and repair -----------------------------------------------


@pytest.mark.parametrize("bad", ['{"event": "trial"}', "[1, 2, 3]", "null", '{"event": "round", "trials": 1}',
                                 '{"event": "trial", "trial": "three"}', "not json at all"])
def test_a_damaged_log_line_is_a_clear_error_and_repair_keeps_every_intact_trial(tmp_path, bad):
    run_dir = search(load_config(user_config(tmp_path, "quadratic", trials=6)), tmp_path / "runs",
                     report=False).run_dir
    log = run_dir / "trials.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:3]) + bad + "\n" + "".join(lines[3:]))
    for command in ("report", "resume", "refine"):
        out = hptune_run(command, str(run_dir), cwd=tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert first_error_line(out.stderr).startswith(f"error: {log}: line 4"), out.stderr
        assert f"hptune repair {run_dir}" in out.stderr
    fixed = hptune_run("repair", str(run_dir), cwd=tmp_path)
    assert fixed.returncode == 0 and f"moved 1 damaged line(s) of {log} (line 4)" in fixed.stderr
    assert [json.loads(x) for x in (run_dir / "trials.jsonl.damaged").read_text().splitlines()] == [{"line": 4, "text": bad}]
    assert len(trial_events(run_dir)) == 6
    assert hptune_run("report", str(run_dir), cwd=tmp_path).returncode == 0


# -- 6. YAML bombs and huge files ---------------------------------------------------------------


BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
objective: {goal: *h}
space: {epochs: 1}
"""


def peak_child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@pytest.mark.parametrize("key", ["objective: {goal: *h}", "space: {learning_rate: {low: 0.1, high: 1, scale: *h}}",
                                 "search: {backend: *h}", "data: {standardize: *h}"])
def test_a_billion_laughs_config_is_refused_at_once(tmp_path, key):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB.replace("objective: {goal: *h}", key))
    assert path.stat().st_size < 800
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hptune", "search", str(path), "--dry-run"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert first_error_line(proc.stderr).startswith("error: bomb.yaml: expands to more than 100,000 values")
    assert len(proc.stderr) < 1000 and time.monotonic() - start < 10


def test_a_config_of_fifty_megabytes_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "w") as f:
        f.write("space:\n")
        for i in range(1_200_000):
            f.write(f"  p{i}: {i}\n")
    assert path.stat().st_size > 20_000_000
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"huge.yaml: is \d+\.\d MB; config files over 1 MB are refused"):
        load_config(path)
    assert time.monotonic() - start < 1.0


# -- 8. run names ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [129, 255, 300])
def test_a_run_name_too_long_for_a_folder_is_a_config_error(tmp_path, length):
    out = hptune_run("search", str(user_config(tmp_path, "quadratic", trials=2)), "--name", "n" * length, "--dry-run",
                     cwd=tmp_path)
    assert out.returncode == 1 and "at most 128 characters" in first_error_line(out.stderr)
    cfg_path = user_config(tmp_path, "quadratic", trials=2, name="n" * 128)  # the longest name, twice: -2 still fits
    for _ in range(2):
        assert hptune_run("search", str(cfg_path), "--runs-dir", "runs", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["n" * 128, "n" * 128 + "-2"]


# -- 9. a deleted log ---------------------------------------------------------------------------


def test_a_deleted_log_is_said_to_be_missing(tmp_path):
    run_dir = search(load_config(user_config(tmp_path, "quadratic", trials=3)), tmp_path / "runs").run_dir
    (run_dir / "trials.jsonl").unlink()
    for command in ("report", "resume"):
        out = hptune_run(command, str(run_dir), cwd=tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert first_error_line(out.stderr).startswith(f"error: {run_dir}/trials.jsonl: the trial log is missing")
        assert "up to date" not in out.stderr


# -- 10. a chatty objective never mixes into machine output ---------------------------------------


def test_what_a_trial_prints_goes_to_stderr_never_into_csv(tmp_path):
    out = hptune_run("search", str(user_config(tmp_path, "prints", trials=4, jobs=2)), "--runs-dir", "runs",
                     "--format", "csv", cwd=tmp_path)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("trial,round,status,x,score") and len(lines) == 5
    assert "training with x=" not in out.stdout and "training with x=" in out.stderr


# -- 11. a trial that kills its process, with --jobs 1 ---------------------------------------------


def test_jobs_1_isolates_a_trial_that_kills_its_process_and_resume_does_not_repeat_it(tmp_path):
    space = {"x": {"low": 0.0, "high": 1.0}, "die_above": 0.7}
    config = user_config(tmp_path, "exits_above", space=space, trials=8, jobs=1)
    out = hptune_run("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "runs" / "user"
    trials = {t["trial"]: t for t in trial_events(run_dir)}
    assert sorted(trials) == list(range(8))
    killers = [t for t in trials.values() if t["params"]["x"] > 0.7]
    assert killers and all("the worker process died while running this trial (exit code EXIT(3)" in t["error"]
                           for t in killers)
    again = hptune_run("resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0 and "nothing to resume" in again.stderr and len(trial_events(run_dir)) == 8


# -- 12. a hung trial -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_search_timeout_stops_a_hung_trial_and_the_rest_run(tmp_path, jobs):
    space = {"x": {"low": 0.0, "high": 1.0}, "hang_above": 0.85}
    config = user_config(tmp_path, "hangs_above", space=space, trials=10, jobs=jobs, timeout=1.5)
    start = time.monotonic()
    out = hptune_run("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - start < 30
    trials = trial_events(tmp_path / "runs" / "user")
    hung = [t for t in trials if t["params"]["x"] > 0.85]
    assert len(trials) == 10 and hung
    assert all(t["status"] == "failed" and t["error"].startswith("timeout after 1.5 s") for t in hung)
    assert all(t["status"] == "ok" for t in trials if t["params"]["x"] <= 0.85)


# -- 13. SIGTERM ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_with_the_resume_command(tmp_path):
    space = {"x": {"low": 0.0, "high": 1.0}, "sleep_s": 0.1}
    config = user_config(tmp_path, "slow", space=space, trials=60, jobs=2)
    proc = hptune_process("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "user"
    wait_until(lambda: count_trials(run_dir) >= 4, 60, "four finished trials")
    workers = children_of(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "leaked" not in err
    done = count_trials(run_dir)
    assert f"interrupted: {done} finished trials of this round are saved in runs/user. Resume with: hptune resume runs/user" in err
    wait_until(lambda: not any(alive(p) for p in workers), 10, "the workers to exit")
    assert 4 <= done < 60
    assert hptune_run("resume", str(run_dir), cwd=tmp_path).returncode == 0
    assert sorted(outcomes(run_dir)) == list(range(60))


# -- paths the other tests do not reach ------------------------------------------------------------


def test_a_report_page_that_fails_never_fails_the_search(tmp_path, monkeypatch):
    import hptune.report.html as html

    def broken(*args, **kwargs):
        raise RuntimeError("matplotlib is broken")

    monkeypatch.setattr(html, "render_html", broken)
    outcome = search(load_config(user_config(tmp_path, "quadratic", trials=3)), tmp_path / "runs")
    assert len(trial_events(outcome.run_dir)) == 3 and (outcome.run_dir / "results.csv").exists()
    assert any("could not write the report files" in n and "matplotlib is broken" in n for n in outcome.notes)


def test_ctrl_c_between_rounds_keeps_the_first_round_and_resume_runs_the_rest(tmp_path):
    from hptune.search import Interrupted

    config = load_config(user_config(tmp_path, "quadratic", trials=5, rounds=3))

    def progress(kind, info):
        if kind == "round" and info["round"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        search(config, tmp_path / "runs", progress=progress)
    run_dir = tmp_path / "runs" / "user"
    assert len(trial_events(run_dir)) == 5
    resume(run_dir, report=False)
    assert sorted(outcomes(run_dir)) == list(range(15))


def test_results_csv_is_rewritten_during_a_long_search(tmp_path, monkeypatch):
    import hptune.search as search_mod

    monkeypatch.setattr(search_mod, "RESULTS_EVERY_S", 0.0)
    seen = []

    def progress(kind, info):
        if kind == "trial" and (tmp_path / "runs" / "user" / "results.csv").exists():
            seen.append(len((tmp_path / "runs" / "user" / "results.csv").read_text().strip().splitlines()) - 1)

    search(load_config(user_config(tmp_path, "quadratic", trials=6, jobs=1)), tmp_path / "runs", progress=progress)
    assert seen and seen == sorted(seen) and 0 < seen[-1] < 6  # the file followed the search, row by row


def test_a_run_folder_from_a_newer_hptune_is_refused(tmp_path):
    run_dir = search(load_config(user_config(tmp_path, "quadratic", trials=2)), tmp_path / "runs").run_dir
    (run_dir / "run.json").write_text(json.dumps({"format": 99, "name": "user"}))
    out = hptune_run("report", str(run_dir), cwd=tmp_path)
    assert out.returncode == 1 and "run format 99; this hptune reads formats 1, 2" in first_error_line(out.stderr)


def test_report_with_no_runs_and_config_warnings_reach_stderr(tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    out = hptune_run("report", "--runs-dir", str(empty), cwd=tmp_path)
    assert out.returncode == 0 and out.stdout == "" and f"no runs under {empty}" in out.stderr
    missing = hptune_run("report", "--runs-dir", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 1 and "no such folder" in first_error_line(missing.stderr)
    path = tmp_path / "lint.yaml"
    path.write_text(yaml.safe_dump({"space": {"weight_decay": {"low": 1e-6, "high": 0.1}, "epochs": 1}}))
    dry = hptune_run("search", str(path), "--dry-run", "--trials", "2", cwd=tmp_path)
    assert dry.returncode == 0 and "warning: lint.yaml: space.weight_decay: a uniform range spanning" in dry.stderr
    assert "warning" not in dry.stdout
