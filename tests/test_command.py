"""Any training program as a trial: placeholders and environment in, metrics out, logs kept,
failures, timeouts, halving and interruptions handled without orphans; W&B programs and sweeps offline."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import (  # noqa: E402
    FIXTURES, alive, hptune_process, hptune_run, killed_then_resumed, outcomes, trial_events, wait_until)

from hptune.config import load_config, parse_config  # noqa: E402
from hptune.errors import ConfigError, UserError  # noqa: E402
from hptune.objectives.command import parse_line  # noqa: E402
from hptune.search import check_trial, search  # noqa: E402

PROGRAMS = FIXTURES / "programs"
PY = sys.executable


def command_config(tmp_path: Path, command: str | list, *, name: str = "cmd", trials: int = 4, jobs: int = 2,
                   space: dict | None = None, metric: str = "val_loss", **search_extra) -> Path:
    raw = {"name": name, "seed": 2,
           "objective": {"command": command, "metric": metric, "path": str(PROGRAMS)},
           "search": {"trials": trials, "jobs": jobs, **search_extra},
           "space": space or {"lr": {"low": 1e-3, "high": 0.1, "scale": "log"}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# -- reading metrics ---------------------------------------------------------------------------


@pytest.mark.parametrize("line, metric, expected", [
    ('{"epoch": 3, "val_loss": 0.41, "tag": "x"}', "val_loss", {"epoch": 3.0, "val_loss": 0.41}),
    ("val_loss=0.5 acc=0.9", "val_loss", {"val_loss": 0.5, "acc": 0.9}),
    ("Epoch 2/10\r938/938 [=====] - 2s 2ms/step - loss: 0.2735 - accuracy: 0.9204 - val_loss: 0.1391 "
     "- val_accuracy: 0.9582", "val_loss", {"loss": 0.2735, "accuracy": 0.9204, "val_loss": 0.1391, "val_accuracy": 0.9582}),
    ("step 100: val_loss: 1.5e-03, lr: 3e-4", "val_loss", {"val_loss": 0.0015, "lr": 0.0003}),
    ("epoch 3 val_loss: nan", "val_loss", None),  # NaN counts: see below
    ("loss: 0.27", "val_loss", None),  # the metric is not on the line
    ("val_loss_ema=0.3", "val_loss", None),  # a longer name is another metric
    ('{"val_loss": "high"}', "val_loss", None),
    ("Saving to ./val_loss.png", "val_loss", None),
])
def test_a_report_is_one_line_with_the_metric(line, metric, expected):
    found = parse_line(line, metric)
    if line == "epoch 3 val_loss: nan":
        assert found is not None and found["val_loss"] != found["val_loss"]
        return
    assert found == expected


# -- running a command ---------------------------------------------------------------------------


def test_parameters_go_in_and_a_curve_of_metrics_comes_out(tmp_path):
    cfg = load_config(command_config(tmp_path, "python fit.py --lr {lr} --epochs 4"))
    run_dir = search(cfg, tmp_path / "runs", report=False).run_dir
    trials = trial_events(run_dir)
    assert sorted(t["trial"] for t in trials) == [0, 1, 2, 3]
    for t in trials:
        assert t["status"] == "ok" and [p["epoch"] for p in t["curve"]] == [1, 2, 3, 4]
        assert t["metrics"] == {k: v for k, v in t["curve"][-1].items() if k != "epoch"}  # the last report
        assert t["metrics"]["val_loss"] == pytest.approx((t["params"]["lr"] - 0.01) ** 2 * 100 + 0.25, abs=2e-3)
        folder = run_dir / "trials" / str(t["trial"])
        assert "Epoch 4/4" in (folder / "stdout.log").read_text()
        assert f"trial {t['trial']} params" in (folder / "stderr.log").read_text()  # HPTUNE_TRIAL, HPTUNE_PARAMS
    again = search(cfg, tmp_path / "again", report=False).run_dir  # HPTUNE_SEED: the program's randomness repeats
    assert {t["trial"]: t["metrics"] for t in trial_events(again)} == {t["trial"]: t["metrics"] for t in trials}


def test_a_metrics_file_when_written_is_what_counts(tmp_path):
    cfg = load_config(command_config(tmp_path, f"{PY} metrics_file.py", trials=2, jobs=1))
    for t in trial_events(search(cfg, tmp_path / "runs", report=False).run_dir):
        assert len(t["curve"]) == 3 and t["metrics"]["val_loss"] == pytest.approx(t["params"]["lr"] * 10 / 3)


def test_a_failing_command_is_a_failed_trial_with_the_end_of_its_stderr(tmp_path):
    out = hptune_run("search", str(command_config(tmp_path, "python fit.py --lr {lr} --fail", trials=2)),
                     "--runs-dir", "runs", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    for t in trial_events(tmp_path / "runs" / "cmd"):
        assert t["status"] == "failed" and t["error"].startswith("the command exited with code 3")
        assert "CUDA out of memory (pretend)" in t["error"] and len(t["curve"]) == 2  # what it reported is kept


def test_a_command_that_reports_nothing_says_so(tmp_path):
    cfg = load_config(command_config(tmp_path, "echo hello {lr}", trials=1, jobs=1))
    [t] = trial_events(search(cfg, tmp_path / "runs", report=False).run_dir)
    assert t["status"] == "failed" and t["error"].startswith("the command reported no 'val_loss'")
    assert "hello" in t["error"]


def test_config_errors_for_commands():
    with pytest.raises(ConfigError, match="objective.metric: is missing: name the metric your command reports"):
        parse_config({"objective": {"command": "python t.py"}, "space": {"x": 1}})
    with pytest.raises(ConfigError, match="objective.command: must be a command string, or a list"):
        parse_config({"objective": {"command": {"a": 1}, "metric": "m"}, "space": {"x": 1}})
    with pytest.raises(ConfigError, match="objective.program: belongs to a command objective"):
        parse_config({"objective": {"program": "t.py"}, "space": {"epochs": 1}})


def test_a_missing_program_is_refused_before_anything_runs(tmp_path):
    cfg = load_config(command_config(tmp_path, "trainz --lr {lr}"))
    with pytest.raises(UserError, match="'trainz' is not a program on PATH"):
        search(cfg, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_check_metrics_runs_one_trial_and_shows_what_was_read(tmp_path):
    result = check_trial(load_config(command_config(tmp_path, "python fit.py --lr {lr} --epochs 3")))
    assert result.status == "ok" and len(result.curve) == 3
    out = hptune_run("search", str(command_config(tmp_path, "python fit.py --lr {lr} --epochs 3")),
                     "--check-metrics", cwd=tmp_path)
    assert out.returncode == 0 and "3 report(s) of 'val_loss' read" in out.stderr
    assert "val_loss" in out.stdout.splitlines()[0] and not (tmp_path / "runs").exists()


# -- stopping commands: halving, timeouts, interruptions ------------------------------------------


def pids_in(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_halving_stops_pruned_commands_and_their_children(tmp_path):
    pidfile = tmp_path / "pids"
    cfg = load_config(command_config(tmp_path, f"python fit.py --lr {{lr}} --epochs 9 --sleep 0.05 --spawn {pidfile}",
                                     trials=9, jobs=2, halving={"min_epochs": 1, "factor": 3, "max_epochs": 9}))
    run_dir = search(cfg, tmp_path / "runs", report=False).run_dir
    trials = trial_events(run_dir)
    assert sorted(t["status"] for t in trials).count("ok") == 1
    assert sorted(t["epochs"] for t in trials if t["status"] == "pruned") == [1] * 6 + [3] * 2
    assert all(len(t["curve"]) == t["epochs"] for t in trials)
    wait_until(lambda: not any(alive(p) for p in pids_in(pidfile)), 10, "every command and helper to be gone")


@pytest.mark.slow
def test_a_hung_command_is_stopped_by_the_timeout_with_its_children(tmp_path):
    pidfile = tmp_path / "pids"
    space = {"lr": {"low": 1e-3, "high": 0.1, "scale": "log"}, "sleep": [0.0, 30.0]}
    cfg = load_config(command_config(tmp_path, f"python fit.py --lr {{lr}} --epochs 2 --sleep {{sleep}} --spawn {pidfile}",
                                     space=space, trials=6, timeout=3))
    trials = trial_events(search(cfg, tmp_path / "runs", report=False).run_dir)
    slow = [t for t in trials if t["params"]["sleep"] == 30.0]
    assert slow and all(t["status"] == "failed" and t["error"].startswith("timeout after 3 s") for t in slow)
    assert all(t["status"] == "ok" for t in trials if t["params"]["sleep"] == 0.0)
    wait_until(lambda: not any(alive(p) for p in pids_in(pidfile)), 10, "no orphaned training process")


@pytest.mark.slow
def test_command_trials_do_not_depend_on_jobs_nor_on_a_kill_and_resume(tmp_path):
    """The same parameters and HPTUNE_SEED reach the program whatever --jobs is, and after kill -9 + resume."""
    command = "python fit.py --lr {lr} --epochs 3 --sleep 0.1"
    one = search(load_config(command_config(tmp_path, command, name="j1", trials=12, jobs=1)), tmp_path / "a",
                 report=False).run_dir
    two = search(load_config(command_config(tmp_path, command, name="j2", trials=12, jobs=2)), tmp_path / "b",
                 report=False).run_dir
    assert outcomes(one) == outcomes(two) and len(outcomes(one)) == 12
    assert all(t[2] == "ok" and len(t[4]) == 3 for t in outcomes(one).values())
    config = command_config(tmp_path, command, name="kr", trials=12, jobs=2)
    resumed = killed_then_resumed("search", str(config), "--runs-dir", "runs", cwd=tmp_path,
                                  run_dir=tmp_path / "runs" / "kr", after=2, total=12)
    assert outcomes(resumed) == outcomes(one)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_stopping_hptune_leaves_no_training_process_behind(tmp_path, how):
    pidfile = tmp_path / "pids"
    config = command_config(tmp_path, f"python fit.py --lr {{lr}} --epochs 40 --sleep 0.2 --spawn {pidfile}", trials=4)
    proc = hptune_process("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    wait_until(lambda: len(pids_in(pidfile)) >= 4, 60, "two commands and their helpers running")
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # the terminal signals the whole foreground group
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_until(lambda: not any(alive(p) for p in pids_in(pidfile)), 15, "every training process to be gone")


# -- W&B programs and sweep files, offline -------------------------------------------------------


def wandb_installed() -> None:
    from conftest import require_module

    require_module("wandb", "W&B programs run as trials (pip install 'hptune[wandb]')")


def test_an_unmodified_wandb_program_runs_as_a_trial_offline(tmp_path):
    wandb_installed()
    space = {"lr": {"low": 1e-3, "high": 0.1, "scale": "log"}, "layers": [1, 2]}
    cfg = load_config(command_config(tmp_path, ["${env}", "${interpreter}", "${program}", "${args}"], space=space,
                                     trials=2, jobs=2))
    from dataclasses import replace

    cfg = replace(cfg, objective=replace(cfg.objective, program="wandb_program.py"))
    run_dir = search(cfg, tmp_path / "runs", report=False).run_dir
    for t in trial_events(run_dir):
        assert t["status"] == "ok", t["error"]
        lr, layers = t["params"]["lr"], t["params"]["layers"]
        # wandb.config held the trial's values (not the program's defaults); wandb.log reached hptune
        assert [p["val_loss"] for p in t["curve"]] == pytest.approx([(lr - 0.01) ** 2 + layers / (e + 1)
                                                                     for e in range(3)])
    assert not (PROGRAMS / "wandb").exists()  # W&B's offline files went to the trial's scratch folder


def test_wandb_config_holds_nested_parameter_groups_as_args_json_does(tmp_path):
    wandb_installed()
    space = {"opt.lr": {"low": 1e-3, "high": 0.1, "scale": "log"}, "opt.sched.gamma": {"low": 0.1, "high": 0.9}}
    cfg = load_config(command_config(tmp_path, ["${env}", "${interpreter}", "${program}", "${args_json}"], space=space,
                                     trials=2, jobs=1))
    from dataclasses import replace

    cfg = replace(cfg, objective=replace(cfg.objective, program="wandb_groups_program.py",
                                         groups=("opt", "opt.sched")))
    run_dir = search(cfg, tmp_path / "runs", report=False).run_dir
    for t in trial_events(run_dir):
        assert t["status"] == "ok", t["error"]
        p = t["params"]
        assert t["metrics"]["val_loss"] == pytest.approx((p["opt.lr"] - 0.01) ** 2 + p["opt.sched.gamma"])


def test_a_wandb_sweep_file_runs_with_no_server(tmp_path):
    wandb_installed()
    out = hptune_run("search", str(PROGRAMS / "sweep.yaml"), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "note: sweep.yaml:" in out.stderr
    trials = trial_events(tmp_path / "runs" / "sweep")
    assert len(trials) == 4 and all(t["status"] == "ok" and len(t["curve"]) == 3 for t in trials)
    converted = hptune_run("convert", str(PROGRAMS / "sweep.yaml"), cwd=tmp_path)
    assert converted.returncode == 0 and converted.stdout.startswith("#")
    (tmp_path / "converted.yaml").write_text(converted.stdout)
    cfg = load_config(tmp_path / "converted.yaml")
    assert cfg.space["lr"].scale == "log" and cfg.objective.command[2] == "${program}"


@pytest.mark.slow
def test_a_grid_gives_the_same_trials_whatever_jobs_is_and_after_a_kill_and_resume(tmp_path):
    space = {"lr": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "epochs": [2, 3]}
    command = "python fit.py --lr {lr} --epochs {epochs} --sleep 0.1"
    runs = {jobs: search(load_config(command_config(tmp_path, command, name=f"g{jobs}", trials=12, jobs=jobs,
                                                    space=space, method="grid")), tmp_path / f"r{jobs}",
                         report=False).run_dir for jobs in (1, 2)}
    assert outcomes(runs[1]) == outcomes(runs[2])
    assert sorted((t[0]["lr"], t[0]["epochs"]) for t in outcomes(runs[1]).values()) == sorted(
        (lr, e) for lr in space["lr"] for e in space["epochs"])  # every combination once
    config = command_config(tmp_path, command, name="gk", trials=12, jobs=2, space=space, method="grid")
    resumed = killed_then_resumed("search", str(config), "--runs-dir", "runs", cwd=tmp_path,
                                  run_dir=tmp_path / "runs" / "gk", after=2, total=12)
    assert outcomes(resumed) == outcomes(runs[1])


def test_a_wandb_grid_sweep_runs_every_combination_once_then_stops(tmp_path):
    wandb_installed()
    import shutil

    shutil.copy(PROGRAMS / "wandb_program.py", tmp_path / "wandb_program.py")
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({
        "program": "wandb_program.py", "method": "grid", "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"values": [0.001, 0.01, 0.1]}, "layers": {"values": [1, 2]}}}))
    out = hptune_run("search", "grid.yaml", "--runs-dir", "runs", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    trials = trial_events(tmp_path / "runs" / "grid")
    assert all(t["status"] == "ok" for t in trials)
    combos = sorted((t["params"]["lr"], t["params"]["layers"]) for t in trials)
    assert combos == sorted((lr, layers) for lr in (0.001, 0.01, 0.1) for layers in (1, 2))  # each once, no more
    best = min(trials, key=lambda t: t["metrics"]["val_loss"])
    assert (best["params"]["lr"], best["params"]["layers"]) == (0.01, 1)  # the program's minimum


def test_convert_of_a_file_that_is_no_sweep_or_is_broken_is_one_clear_error(tmp_path):
    (tmp_path / "broken.yaml").write_text("method: grid\nparameters: {lr: {values: [0.1, }\n")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"space": {"epochs": 1}}))
    (tmp_path / "normal.yaml").write_text(yaml.safe_dump({
        "method": "random", "metric": {"name": "loss"}, "parameters": {"lr": {"distribution": "normal"}}}))
    for name, words in (("broken.yaml", "broken.yaml"), ("mine.yaml", "not a W&B sweep"),
                        ("normal.yaml", "parameters.lr"), ("missing.yaml", "missing.yaml")):
        out = hptune_run("convert", name, cwd=tmp_path)
        assert out.returncode != 0 and "Traceback" not in out.stderr, (name, out.stderr)
        assert out.stderr.startswith("error:") and words in out.stderr, (name, out.stderr)
