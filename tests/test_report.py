"""`hptune report`: ranking, formats, comparison, influence estimate, report files, no torch."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from hptune.cli import main
from hptune.config import parse_space
from hptune.report.influence import MIN_TRIALS, estimate_influence
from hptune.report import load_run
from hptune.report.files import report_files_fresh, write_report_files
from hptune.report.summary import summary_frame
from hptune.runstate import Run

SPACE = {
    "lr": {"low": 1e-4, "high": 1.0, "scale": "log"},
    "beta": {"low": 0.9, "high": 0.999, "scale": "one_minus_log"},
    "width": {"low": 10, "high": 100, "integer": True},
    "act": ["relu", "tanh"],
    "epochs": 3,
}


def trial(n: int, params: dict[str, Any], score: float | None, *, status: str = "ok", round_no: int = 1,
          error: str | None = None, curve: list[dict[str, float]] | None = None) -> dict[str, Any]:
    metrics = {} if score is None else {"score": score}
    return {"event": "trial", "trial": n, "round": round_no, "status": status, "params": params, "metrics": metrics,
            "curve": curve or [], "duration_s": 0.5, "error": error, "time": f"2024-01-01T00:00:{n % 60:02d}+00:00"}


def write_run(folder: Path, trials: list[dict[str, Any]], *, space: dict[str, Any] = SPACE, metric: str = "score",
              goal: str = "maximize", round_spaces: list[dict[str, Any]] | None = None) -> Path:
    """A run folder in hptune's format, for a user objective (parameter names are free)."""
    folder.mkdir(parents=True)
    meta = {"format": 1, "name": folder.name, "created": "2024-01-01T00:00:00+00:00"}
    (folder / "run.json").write_text(json.dumps(meta))
    config = {"name": folder.name, "seed": 0,
              "objective": {"function": "fake:objective", "metric": metric, "goal": goal},
              "search": {"trials": max(1, len(trials)), "jobs": 1}, "space": space}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    events: list[dict[str, Any]] = []
    rounds = sorted({t["round"] for t in trials}) or [1]
    for r in rounds:
        sp = round_spaces[r - 1] if round_spaces else space
        first = min((t["trial"] for t in trials if t["round"] == r), default=0)
        events.append({"event": "round", "round": r, "first_trial": first,
                       "trials": sum(t["round"] == r for t in trials), "seed": 0, "planned": len(rounds), "space": sp,
                       "parent": None if r == 1 else r - 1, "top": None if r == 1 else 3,
                       "margin": None if r == 1 else 0.1,
                       "time": "2024-01-01T00:00:00+00:00"})
        events += [t for t in trials if t["round"] == r]
    (folder / "trials.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


def params(lr: float = 1e-3, beta: float = 0.99, width: int = 50, act: str = "relu") -> dict[str, Any]:
    return {"lr": lr, "beta": beta, "width": width, "act": act, "epochs": 3}


def random_trials(n: int, score: Any, seed: int = 0) -> list[dict[str, Any]]:
    """n trials drawn on each parameter's scale; score(params, rng) gives the metric."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        p = params(lr=float(10 ** rng.uniform(-4, 0)), beta=float(1 - 10 ** rng.uniform(-3, -1)),
                   width=int(rng.integers(10, 101)), act=str(rng.choice(["relu", "tanh"])))
        out.append(trial(t, p, float(score(p, rng))))
    return out


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def invoke_split(*args: str) -> Any:
    """Invoke with stdout and stderr kept apart (click < 8.2 mixes them unless told not to)."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def small_run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "small", [
        trial(0, params(lr=0.0012, beta=0.99531), 0.80),
        trial(1, params(lr=0.3), None, status="diverged", error="loss is nan at epoch 2"),
        trial(2, params(lr=0.01, beta=0.9), 0.95),
        trial(3, params(lr=0.02), None, status="failed", error="ValueError: bad | input\nsecond line"),
        trial(4, params(lr=0.05), math.nan),
        trial(5, params(lr=0.0001, beta=0.999), 0.60),
    ])


# -- ranking and formats ------------------------------------------------------


def test_load_run_ranks_finished_by_metric_then_nan_then_diverged_then_failed(small_run: Path) -> None:
    frame = load_run(small_run)
    assert list(frame["trial"]) == [2, 0, 5, 4, 1, 3]
    assert list(frame.columns) == ["trial", "round", "status", "lr", "beta", "width", "act", "epochs", "score",
                                   "duration_s", "error", "curve"]


def test_minimize_puts_the_lowest_first(tmp_path: Path) -> None:
    run = write_run(tmp_path / "m", [trial(i, params(), s) for i, s in enumerate([0.5, 0.1, 0.9])], goal="minimize")
    assert list(load_run(run)["trial"]) == [1, 0, 2]


def test_table_shows_values_on_their_scale(small_run: Path) -> None:
    out = invoke("report", str(small_run), "--no-files").output
    header, rule, first, second = out.splitlines()[:4]
    assert header.split()[:4] == ["trial", "round", "status", "lr"]
    assert first.split()[0] == "2" and second.split()[0] == "0"
    assert "1.20e-03" in second  # log scale: scientific
    assert "0.9953" in second  # one_minus_log: enough digits to tell 0.995 from 0.999
    assert "diverged" in out and "failed" in out


def test_top_limits_rows_and_says_so(small_run: Path) -> None:
    out = invoke("report", str(small_run), "--top", "2", "--no-files").output
    assert "the best 2 of 6 trials" in out
    table = out.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in table[2:4]] == ["2", "0"]


def test_csv_parses_back_with_full_precision(small_run: Path) -> None:
    result = invoke_split("report", str(small_run), "--format", "csv", "--no-files")
    assert result.exit_code == 0
    back = pd.read_csv(io.StringIO(result.stdout))
    expected = load_run(small_run).drop(columns=["curve"])
    assert list(back.columns) == list(expected.columns)
    assert list(back["trial"]) == list(expected["trial"])
    assert np.allclose(back["lr"], expected["lr"], rtol=1e-12)
    assert "Parameter influence" not in result.stdout  # notes go to stderr


def test_json_parses_back_with_nulls_for_missing_metrics(small_run: Path) -> None:
    result = invoke_split("report", str(small_run), "--format", "json", "--no-files")
    rows = json.loads(result.stdout)
    assert [r["trial"] for r in rows] == [2, 0, 5, 4, 1, 3]
    assert rows[3]["score"] is None and rows[4]["status"] == "diverged"
    assert rows[1]["beta"] == pytest.approx(0.99531)


def test_markdown_is_a_table_that_survives_pipes_in_messages(small_run: Path) -> None:
    result = invoke_split("report", str(small_run), "--format", "markdown", "--no-files")
    lines = result.stdout.strip().splitlines()
    assert lines[1].startswith("|---")
    ncols = lines[0].count(" | ") + 1
    assert len(lines) == 2 + 6
    for line in lines:
        cells = [c for c in line.strip("|").replace("\\|", "").split("|")]
        assert len(cells) == ncols
    assert "1.20e-03" in result.stdout


def test_comparison_of_two_runs(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [trial(i, params(lr=10.0 ** -i), s) for i, s in enumerate([0.7, 0.9, 0.8])])
    b = write_run(tmp_path / "b", [trial(0, params(), 0.6), trial(1, params(), None, status="failed", round_no=2)])
    rows = json.loads(invoke("report", str(a), str(b), "--format", "json").output)
    assert [r["run"] for r in rows] == ["a", "b"]
    assert rows[0]["best"] == pytest.approx(0.9) and rows[0]["best_trial"] == 1 and rows[0]["trials"] == 3
    assert "lr=1.00e-01" in rows[0]["params"]
    assert rows[1]["rounds"] == 2 and rows[1]["failed"] == 1
    assert rows[0]["wall_s"] == pytest.approx(2.0)  # round start 00:00:00, last trial 00:00:02
    frame = summary_frame([a, b])
    assert {"run", "best", "trials", "rounds", "wall_s", "params"} <= set(frame.columns)
    table = invoke("report", str(a), str(b)).output.splitlines()
    assert table[0].split()[:3] == ["run", "metric", "best"] and "wall time" in table[0]
    assert table[2].split()[:3] == ["a", "score", "0.9000"] and "2 s" in table[2]


# -- influence ------------------------------------------------------------------


def _estimate(trials: list[dict[str, Any]], goal: str = "maximize") -> Any:
    frame = pd.DataFrame([{"trial": t["trial"], "status": t["status"], **t["params"],
                           "score": t["metrics"].get("score", math.nan)} for t in trials])
    return estimate_influence(frame, parse_space(SPACE, builtin=False), metric="score", goal=goal)


def test_influence_finds_the_one_parameter_that_drives_the_metric() -> None:
    # best at lr = 1e-2, in the middle of the range: a straight-line correlation would miss it
    trials = random_trials(80, lambda p, rng: -(math.log10(p["lr"]) + 2) ** 2 + rng.normal(0, 0.05))
    est = _estimate(trials)
    assert est.n == 80 and est.params[0].name == "lr"
    assert est.params[0].explained > 0.6
    assert all(inf.explained < 0.15 for inf in est.params[1:])
    assert est.params[0].trend == "best in the middle"
    assert "estimate" in est.label and "80" in est.label


def test_influence_of_a_choice_and_the_direction_of_a_one_minus_log_range() -> None:
    trials = random_trials(80, lambda p, rng: (p["act"] == "tanh") + rng.normal(0, 0.1))
    est = _estimate(trials)
    assert est.params[0].name == "act" and est.params[0].best == "tanh" and est.params[0].rho is None
    trials = random_trials(80, lambda p, rng: -math.log10(1 - p["beta"]))
    beta = next(inf for inf in _estimate(trials).params if inf.name == "beta")
    assert beta.rho == pytest.approx(1.0) and beta.trend == "better when larger"
    # minimizing the same metric reverses the direction
    beta = next(inf for inf in _estimate(trials, goal="minimize").params if inf.name == "beta")
    assert beta.rho == pytest.approx(-1.0) and beta.trend == "better when smaller"


def test_influence_uses_finished_trials_only_and_needs_enough_of_them() -> None:
    trials = random_trials(MIN_TRIALS - 1, lambda p, rng: p["lr"])
    trials += [trial(100 + i, params(), None, status="diverged") for i in range(5)]
    est = _estimate(trials)
    assert est.params == () and "at least" in est.note and est.n == MIN_TRIALS - 1 and est.excluded == 5


def test_influence_is_printed_with_the_table_and_on_stderr_for_machine_formats(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", random_trials(40, lambda p, rng: -abs(math.log10(p["lr"]) + 2)))
    out = invoke("report", str(run), "--no-files").output
    assert "Parameter influence (an estimate from 40 finished trials" in out
    result = invoke_split("report", str(run), "--format", "csv", "--no-files")
    assert "Parameter influence" in result.stderr and "Parameter influence" not in result.stdout


# -- report files -------------------------------------------------------------


def test_report_writes_the_files_once_and_again_when_the_log_grows(small_run: Path) -> None:
    result = invoke_split("report", str(small_run))
    assert "report: wrote" in result.stderr
    for name in ("results.csv", "results.md", "report.html"):
        assert (small_run / name).stat().st_size > 0
    assert report_files_fresh(Run.open(small_run))
    again = invoke_split("report", str(small_run))
    assert "up to date" in again.stderr
    log = small_run / "trials.jsonl"
    with open(log, "a") as f:
        f.write(json.dumps(trial(6, params(), 0.99)) + "\n")
    future = (small_run / "report.html").stat().st_mtime + 5
    os.utime(log, (future, future))
    assert not report_files_fresh(Run.open(small_run))
    third = invoke_split("report", str(small_run))
    assert "report: wrote" in third.stderr
    assert next(csv.DictReader((small_run / "results.csv").open()))["trial"] == "6"


def test_no_files_writes_nothing(small_run: Path) -> None:
    invoke("report", str(small_run), "--no-files")
    assert not (small_run / "report.html").exists() and not (small_run / "results.md").exists()


def test_results_md_and_csv(small_run: Path) -> None:
    paths = write_report_files(Run.open(small_run))
    assert [p.name for p in paths] == ["results.csv", "results.md", "report.html"]
    rows = list(csv.DictReader((small_run / "results.csv").open()))
    assert [r["trial"] for r in rows] == ["2", "0", "5", "4", "1", "3"] and "curve" not in rows[0]
    md = (small_run / "results.md").read_text()
    assert md.startswith("# small: hptune results")
    assert "best: trial 2, score 0.9500" in md
    assert "## Parameter influence (estimate)" in md and "No estimate" in md  # 4 finished trials only
    assert "## Rounds (coarse to fine)" in md and "1.00e-04 to 1.00e+00 (log)" in md
    assert "| 0 | 1 | ok | 1.20e-03 | 0.9953 |" in md


def test_wall_time_sums_rounds(small_run: Path) -> None:
    assert Run.open(small_run).state.wall_s == pytest.approx(5.0)


# -- no torch -------------------------------------------------------------------


def test_report_never_imports_torch(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", random_trials(30, lambda p, rng: p["lr"]))
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from hptune.cli import main\n"
            f"r = CliRunner().invoke(main, ['report', {str(run)!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(main, ['report', {str(run)!r}, {str(run)!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            "import hptune\n"
            f"hptune.load_run({str(run)!r})\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert (run / "report.html").exists()


def test_wall_time_leaves_out_the_gap_before_a_resume(tmp_path: Path) -> None:
    import json

    from hptune.store import RunStore

    store = RunStore.create(tmp_path, "gap")
    store.write_config({"name": "gap", "objective": {"metric": "score", "function": "m:f"}, "space": {"x": [1, 2]}})
    events = [
        {"event": "round", "round": 1, "first_trial": 0, "trials": 3, "seed": 0, "space": {"x": [1, 2]},
         "time": "2026-01-01T00:00:00+00:00"},
        {"event": "trial", "trial": 0, "round": 1, "status": "ok", "params": {"x": 1}, "metrics": {"score": 1.0},
         "time": "2026-01-01T00:00:04+00:00"},
        # interrupted here; resumed an hour later
        {"event": "resume", "time": "2026-01-01T01:00:00+00:00"},
        {"event": "trial", "trial": 1, "round": 1, "status": "ok", "params": {"x": 2}, "metrics": {"score": 2.0},
         "time": "2026-01-01T01:00:03+00:00"},
    ]
    (store.path / "trials.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    assert Run.open(store.path).state.wall_s == pytest.approx(7.0)


def test_influence_on_pure_noise_is_zero_in_95_percent_of_searches() -> None:
    """200 searches of 40 trials whose metric is noise: the top parameter's `explained` is calibrated."""
    from hptune.sampling import sample_trials

    space = parse_space(SPACE, builtin=False)
    rng = np.random.default_rng(0)
    tops = []
    for rep in range(200):
        rows = sample_trials(space, rep, range(40))
        frame = pd.DataFrame([{"trial": i, "status": "ok", **r, "score": rng.normal()} for i, r in enumerate(rows)])
        tops.append(estimate_influence(frame, space, metric="score", goal="maximize").params[0].explained)
    tops = np.array(tops)
    # family-wise 5%: the share of noise searches that call any parameter influential
    assert (tops > 0).mean() <= 0.08, (tops > 0).mean()
    assert np.median(tops) == 0.0 and np.quantile(tops, 0.99) < 0.25
