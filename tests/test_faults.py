"""Faults: a failing trial, a dying worker, Ctrl-C, kill -9 and resume, the run lock, reading a run being written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import (  # noqa: E402
    alive, children_of, count_trials, hptune_process, hptune_run, trial_events, user_config, wait_until)
from hptune_test_objectives import score  # noqa: E402

from hptune.config import load_config  # noqa: E402
from hptune.errors import RunError  # noqa: E402
from hptune.report import load_run  # noqa: E402
from hptune.search import plan_trials, search  # noqa: E402
from hptune.store import RunStore  # noqa: E402

# what a trial's outcome is made of; time, pid and duration_s differ from run to run
OUTCOME_KEYS = ("trial", "round", "status", "params", "metrics", "seed", "error")


def outcome(event: dict) -> tuple:
    return tuple(json.dumps(event.get(k), sort_keys=True) for k in OUTCOME_KEYS)


def kill_session(proc: subprocess.Popen) -> None:
    """Leave nothing behind: the command and every process of its session (its workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def round_events(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "time"} for e in RunStore(run_dir).events() if e["event"] == "round"]


@pytest.mark.parametrize("function, exit_text", [("killed_above", "SIGKILL"), ("exits_above", "EXIT(3)")])
def test_a_worker_that_dies_fails_only_its_trial_and_the_search_goes_on(tmp_path, function, exit_text):
    space = {"x": {"low": 0.0, "high": 1.0}, "die_above": 0.8}
    cfg = load_config(user_config(tmp_path, function, space=space, trials=12, jobs=2))
    killers = {p["trial"] for p in plan_trials(cfg) if p["x"] > 0.8}
    assert 1 <= len(killers) < 12  # the seed gives both kinds
    trials = sorted(trial_events(search(cfg, tmp_path / "runs").run_dir), key=lambda e: e["trial"])
    assert [t["trial"] for t in trials] == list(range(12))  # each trial once: the innocent ones were not logged twice
    for t in trials:
        if t["trial"] in killers:
            assert t["status"] == "failed" and t["metrics"] == {}
            assert "the worker process died while running this trial" in t["error"] and exit_text in t["error"].upper()
        else:
            assert t["status"] == "ok" and t["metrics"]["score"] == score(t["params"])


def test_a_torn_last_line_is_ignored_by_readers_and_cut_by_the_next_writer(tmp_path):
    cfg = load_config(user_config(tmp_path, "quadratic", trials=4))
    run_dir = search(cfg, tmp_path / "runs").run_dir
    log = run_dir / "trials.jsonl"
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"event":"trial","trial":4,"round":1,"status":"o')  # a writer killed mid-line
    assert len(trial_events(run_dir)) == 4
    assert len(RunStore(run_dir).events()) == 5  # the round and its 4 trials
    assert len(load_run(run_dir)) == 4
    report = hptune_run("report", str(run_dir), "--format", "csv", cwd=tmp_path)
    assert report.returncode == 0 and len(report.stdout.strip().splitlines()) == 5, report.stderr
    store = RunStore.open(run_dir)
    with store.locked():
        store.append([{"event": "note"}])
    assert log.read_bytes() == whole + b'{"event":"note"}\n'


def test_a_last_line_missing_only_its_newline_is_kept(tmp_path):
    cfg = load_config(user_config(tmp_path, "quadratic", trials=2))
    run_dir = search(cfg, tmp_path / "runs").run_dir
    log = run_dir / "trials.jsonl"
    log.write_bytes(log.read_bytes().rstrip(b"\n"))
    store = RunStore.open(run_dir)
    store.repair_tail()
    assert log.read_bytes().endswith(b"}\n") and len(trial_events(run_dir)) == 2


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_not_stale(tmp_path):
    cfg = load_config(user_config(tmp_path, "quadratic", trials=2))
    run_dir = search(cfg, tmp_path / "runs").run_dir
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from hptune.store import RunStore; s = RunStore.open(sys.argv[1]); "
         "s.lock(); print('locked', flush=True); time.sleep(60)", str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=rf"another hptune process \(pid {holder.pid}\) is writing this run"):
            RunStore.open(run_dir).lock()
        refused = hptune_run("resume", str(run_dir), cwd=tmp_path)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"another hptune process (pid {holder.pid}) is writing this run" in refused.stderr
    finally:
        holder.kill()  # SIGKILL: no chance to unlock
        holder.wait()
    store = RunStore.open(run_dir)
    store.lock()  # the kernel released the dead process's lock
    store.unlock()


@pytest.mark.slow
def test_kill_9_then_resume_runs_exactly_the_owed_trials_with_their_parameters(tmp_path):
    space = {"x": {"low": 0.0, "high": 1.0}, "sleep_s": 0.1}
    config = user_config(tmp_path, "slow", space=space, trials=24, jobs=2, rounds=2)  # ~2.5 s of trials
    reference = search(load_config(config), tmp_path / "reference").run_dir  # the same search, never interrupted

    run_dir = tmp_path / "runs" / "user"
    proc = hptune_process("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    try:
        wait_until(lambda: count_trials(run_dir) >= 6 if (run_dir / "trials.jsonl").exists() else False, 30,
                   "6 finished trials")
        workers = children_of(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        wait_until(lambda: not any(alive(w) for w in workers), 10, "the orphaned workers to exit")
    finally:
        kill_session(proc)

    with open(run_dir / "trials.jsonl", "ab") as log:  # as if killed mid-write
        log.write(b'{"event":"trial","trial":23,"round":1,"status":"ok","params":{"x":0.5')
    before = trial_events(run_dir)
    assert 6 <= len(before) < 48
    assert len(load_run(run_dir)) == len(before)  # a report reads the interrupted run

    resumed = hptune_run("resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = trial_events(run_dir)
    assert after[: len(before)] == before  # finished trials are kept as they were, not run again
    new = after[len(before):]
    finished = {t["trial"] for t in before}
    assert sorted(t["trial"] for t in new) == sorted(set(range(48)) - finished)  # exactly the owed trials
    assert sorted(map(outcome, after)) == sorted(map(outcome, trial_events(reference)))
    assert round_events(run_dir) == round_events(reference)  # round 2 zoomed on the same round 1


@pytest.mark.slow
def test_ctrl_c_stops_keeps_finished_trials_says_how_to_resume_and_exits_130(tmp_path):
    # ~3 s of trials: a loaded machine must not let the search finish before the Ctrl-C lands
    space = {"x": {"low": 0.0, "high": 1.0}, "sleep_s": 0.15}
    config = user_config(tmp_path, "slow", space=space, trials=40, jobs=2)
    run_dir = tmp_path / "runs" / "user"
    proc = hptune_process("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    seen: list[int] = []

    def read_while_written() -> bool:
        if not (run_dir / "config.yaml").exists():
            return False
        seen.append(len(load_run(run_dir)))  # a report, consistent while the run is written
        return seen[-1] >= 5

    try:
        wait_until(read_while_written, 30, "5 finished trials")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the main process and its workers
        _, err = proc.communicate(timeout=30)
    finally:
        kill_session(proc)
    assert seen == sorted(seen)
    assert proc.returncode == 130, err
    assert f"Resume with: hptune resume {Path('runs') / 'user'}" in err
    assert "Traceback" not in err
    kept = trial_events(run_dir)
    assert 5 <= len(kept) < 40 and all(t["status"] == "ok" for t in kept)
    assert len({t["trial"] for t in kept}) == len(kept)

    resumed = hptune_run("resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = trial_events(run_dir)
    assert after[: len(kept)] == kept and sorted(t["trial"] for t in after) == list(range(40))


@pytest.mark.slow
def test_killed_at_random_moments_again_and_again_no_trial_is_lost_duplicated_or_changed(tmp_path):
    """A short run of benchmarks/bench_faults.py (the full one kills a search 40 times)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_faults.py"
    out = subprocess.run([sys.executable, str(script), "--kills", "5", "--trials", "40", "--sleep", "0.03",
                          "--max-delay", "1.5", "--seed", "3"], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and summary["ok"], (summary, out.stderr[-2000:])
    assert summary["kills"] >= 1 and summary["final_trials"] == 120
