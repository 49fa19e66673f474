"""RunState = fold(log): rounds, owed trials, latest results, wall time; and hptune 0.1's run folders."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import FIXTURES, hptune_run, trial_events  # noqa: E402
from hptune_test_objectives import score  # noqa: E402

from hptune.errors import RunError  # noqa: E402
from hptune.report import load_run  # noqa: E402
from hptune.runstate import Run, RunState  # noqa: E402
from hptune.sampling import sample_trials, training_seed  # noqa: E402
from hptune.search import refine, resume  # noqa: E402
from hptune.store import LogLine, RunStore  # noqa: E402

V1 = FIXTURES / "runs_v1"
SPACE = {"x": {"low": 0.0, "high": 1.0}}


def round_event(number, first, trials, *, specs=True, time="2026-01-01T00:00:00+00:00", planned=None):
    out = {"event": "round", "round": number, "first_trial": first, "trials": trials, "seed": 5,
           "planned": planned or number, "space": SPACE, "time": time}
    if specs:
        out["specs"] = [{"trial": t, "params": {"x": t / 10}, "seed": 100 + t} for t in range(first, first + trials)]
    return out


def trial_event(trial, round_no=1, value=0.5, time="2026-01-01T00:00:01+00:00", status="ok"):
    return {"event": "trial", "trial": trial, "round": round_no, "status": status, "params": {"x": trial / 10},
            "metrics": {"score": value}, "duration_s": 0.1, "seed": 100 + trial, "error": None, "time": time}


def fold(events):
    return RunState.fold([LogLine(i + 1, e) for i, e in enumerate(events)])


def test_the_fold_knows_rounds_owed_trials_latest_results_and_the_next_number():
    state = fold([round_event(1, 0, 3), trial_event(0), trial_event(2), {"event": "resume", "time": None},
                  trial_event(1), trial_event(0, value=0.9), round_event(2, 3, 2), trial_event(4, 2)])
    assert [r.number for r in state.rounds] == [1, 2]
    assert [s.trial for s in state.owed(state.rounds[0])] == []
    assert [s.trial for s in state.owed()] == [3]  # the last round by default
    assert state.owed()[0].params == {"x": 0.3} and state.owed()[0].seed == 103  # from the log, not re-drawn
    assert state.results[0].metrics["score"] == 0.9  # the last record of a trial wins
    assert [r.trial for r in state.round_results(1)] == [0, 1, 2]
    assert state.next_trial == 5


def test_the_fold_is_updated_in_memory_as_the_log_grows():
    events = [round_event(1, 0, 2), trial_event(0), trial_event(1)]
    state = fold(events[:1])
    for e in events[1:]:
        state.apply(e)
    assert state.all_results() == fold(events).all_results() and state.owed() == []


def test_wall_time_counts_round_starts_and_resumes_to_their_last_trial():
    state = fold([round_event(1, 0, 3, time="2026-01-01T00:00:00+00:00"),
                  trial_event(0, time="2026-01-01T00:00:04+00:00"),
                  {"event": "resume", "time": "2026-01-02T00:00:00+00:00"},  # a day later: not counted
                  trial_event(1, time="2026-01-02T00:00:03+00:00")])
    assert state.wall_s == pytest.approx(7.0)


def test_a_torn_last_line_is_skipped_and_everything_before_it_folds(tmp_path):
    store = RunStore.create(tmp_path, "r")
    lines = [round_event(1, 0, 3), trial_event(0), trial_event(1)]
    store.log_path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"event": "trial", "tri')
    state = RunState.from_store(store)
    assert sorted(state.results) == [0, 1] and [s.trial for s in state.owed()] == [2]
    assert state.log_bytes == store.log_path.stat().st_size


@pytest.mark.parametrize("bad, words", [
    ([1, 2, 3], "must be a JSON object"),
    (None, "must be a JSON object"),
    ({"event": "trial"}, "trial number"),
    ({"event": "round", "first_trial": 0, "trials": 1, "space": SPACE}, "round number"),
    ({"event": "round", "round": 2, "first_trial": "0", "trials": 1, "space": SPACE}, "first_trial"),
    ({"event": "trial", "trial": "seven"}, "trial number"),
    ({"no_event": 1}, "needs an \"event\" name"),
])
def test_a_line_of_the_wrong_shape_is_an_error_naming_its_line(tmp_path, bad, words):
    store = RunStore.create(tmp_path, "r")
    lines = [round_event(1, 0, 2), trial_event(0), bad, trial_event(1)]
    store.log_path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    with pytest.raises(RunError) as info:
        RunState.from_store(store)
    assert "trials.jsonl: line 3: " in str(info.value) and words in str(info.value)
    assert "hptune repair" in str(info.value)


# -- hptune 0.1's run folders (format 1) ------------------------------------------------


def copy_v1(name: str, tmp_path: Path) -> Path:
    """A copy of a committed format-1 run, its objective's folder pointed at the test objectives."""
    run_dir = tmp_path / name
    shutil.copytree(V1 / name, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    if config["objective"].get("function"):
        config["objective"]["path"] = str(FIXTURES)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


@pytest.mark.parametrize("name", ["user-v1", "digits-v1"])
def test_a_format_1_run_reads_and_reports(tmp_path, name):
    run_dir = copy_v1(name, tmp_path)
    run = Run.open(run_dir)
    events = [e for e in RunStore(run_dir).events() if e["event"] == "trial"]
    assert len(run.state.results) == len(events) and run.state.owed() == []
    # format 1 rounds did not list their trials: they are drawn again, as hptune 0.1 drew them
    for rnd in run.state.rounds:
        for spec in rnd.specs:
            logged = run.state.results[spec.trial]
            assert (spec.params, spec.seed) == (logged.params, logged.seed)
    report = hptune_run("report", str(run_dir), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (run_dir / "report.html").exists() and len(load_run(run_dir)) == len(events)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["user-v1", "digits-v1"])
def test_a_format_1_run_whose_last_round_owes_trials_resumes_exactly(tmp_path, name):
    run_dir = copy_v1(f"{name}-interrupted", tmp_path)
    complete = {e["trial"]: e for e in trial_events(V1 / name)}
    before = {e["trial"] for e in trial_events(run_dir)}
    owed = sorted(set(complete) - before)
    assert owed  # the fixture is cut short
    resume(run_dir, report=False)
    after = {e["trial"]: e for e in trial_events(run_dir)}
    assert sorted(after) == sorted(complete)  # exactly the owed trials ran, once each
    for t in owed:
        assert after[t]["params"] == complete[t]["params"] and after[t]["seed"] == complete[t]["seed"]
        if name == "user-v1":  # a deterministic objective: the very metrics 0.1 recorded
            assert after[t]["metrics"]["score"] == complete[t]["metrics"]["score"] == score(after[t]["params"])


def test_a_format_1_run_refines_into_a_planned_round(tmp_path):
    run_dir = copy_v1("user-v1", tmp_path)
    refine(run_dir, trials=4, report=False)
    state = Run.open(run_dir).state
    assert [r.number for r in state.rounds] == [1, 2, 3]
    third = state.rounds[2]
    assert [s.trial for s in third.specs] == [12, 13, 14, 15] and not state.owed()
    raw = [e for e in RunStore(run_dir).events() if e["event"] == "round"][-1]
    assert len(raw["specs"]) == 4  # new rounds list their trials
    space_params = sample_trials(Run.open(run_dir).round_space(third), raw["seed"], range(12, 16))
    assert [s.params for s in third.specs] == space_params
    assert [s.seed for s in third.specs] == [training_seed(raw["seed"], t) for t in range(12, 16)]


def test_refine_refuses_while_a_round_still_owes_trials(tmp_path):
    run_dir = copy_v1("user-v1-interrupted", tmp_path)
    with pytest.raises(RunError, match=r"round 2 still owes 3 trial\(s\); run `hptune resume"):
        refine(run_dir, report=False)
