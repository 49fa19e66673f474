"""The command line end to end, as a user runs it (subprocesses)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hptune.cli import main

ROOT = Path(__file__).resolve().parents[1]


def hptune(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "hptune", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def tiny_config(tmp_path: Path, **search) -> Path:
    settings = {"trials": 4, "jobs": 1, **search}
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""
        name: tiny
        seed: 0
        data: {{dataset: digits, val_fraction: 0.2}}
        search: {json.dumps(settings)}
        space:
          learning_rate: {{low: 3.0e-3, high: 3.0e-2, scale: log}}
          hidden_units: {{low: 32, high: 64}}
          layers: [1, 2]
          epochs: 3
    """))
    return path


def test_every_command_has_help_text_with_an_example():
    runner = CliRunner()
    for name, command in main.commands.items():
        assert command.help and len(command.help) > 40, name
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, name


def test_help_and_version_do_not_import_torch_or_pandas():
    code = ("import sys; from click.testing import CliRunner; from hptune.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(main, ['--version']); import hptune; assert r.output.strip().endswith(hptune.__version__); "
            "print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_search_then_report_end_to_end(tmp_path):
    cfg = tiny_config(tmp_path)
    proc = hptune("search", str(cfg), cwd=tmp_path, check=True)
    assert "trial 0 [1/4]" in proc.stderr  # one progress line per trial when stderr is not a terminal
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["trial", "round", "status"]
    run = tmp_path / "runs" / "tiny"
    assert (run / "config.yaml").exists() and (run / "rounds" / "round-1.yaml").exists()
    log = [json.loads(l) for l in (run / "trials.jsonl").read_text().splitlines()]
    assert [e["event"] for e in log].count("trial") == 4
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert list(rows[0])[:11] == ["trial", "round", "status", "learning_rate", "hidden_units", "layers", "epochs",
                                  "val_accuracy", "val_loss", "train_loss", "duration_s"]
    accs = [float(r["val_accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True) and accs[0] > 0.9
    # a second search never overwrites: it takes the next free name and says so
    again = hptune("search", str(cfg), "--trials", "3", cwd=tmp_path, check=True)
    assert "tiny-2" in again.stderr and (tmp_path / "runs" / "tiny-2" / "results.csv").exists()
    assert len(list(csv.DictReader((run / "results.csv").open()))) == 4
    # report of one run, and of every run
    one = hptune("report", "runs/tiny", "--format", "csv", cwd=tmp_path, check=True)
    assert len(one.stdout.strip().splitlines()) == 5
    every = hptune("report", cwd=tmp_path, check=True)
    assert "tiny" in every.stdout and "tiny-2" in every.stdout


@pytest.mark.slow
def test_refine_and_resume_from_the_command_line(tmp_path):
    cfg = tiny_config(tmp_path, trials=5)
    hptune("search", str(cfg), cwd=tmp_path, check=True)
    dry = hptune("refine", "runs/tiny", "--dry-run", "--top", "3", cwd=tmp_path, check=True)
    assert dry.stdout.startswith("# round 2") and "learning_rate:" in dry.stdout
    hptune("refine", "runs/tiny", "--trials", "3", "--top", "3", cwd=tmp_path, check=True)
    rows = list(csv.DictReader((tmp_path / "runs" / "tiny" / "results.csv").open()))
    assert sorted(int(r["trial"]) for r in rows) == list(range(8))
    done = hptune("resume", "runs/tiny", cwd=tmp_path, check=True)
    assert done.returncode == 0 and len(list(csv.DictReader((tmp_path / "runs" / "tiny" / "results.csv").open()))) == 8


def test_dry_run_prints_trials_without_training(tmp_path):
    cfg = tiny_config(tmp_path)
    proc = hptune("search", str(cfg), "--dry-run", "--trials", "1000", "--format", "json", cwd=tmp_path, check=True)
    rows = json.loads(proc.stdout)
    assert len(rows) == 1000 and rows[3]["trial"] == 3
    assert all(3e-3 <= r["learning_rate"] <= 3e-2 for r in rows)
    assert not (tmp_path / "runs").exists()
    table = hptune("search", str(cfg), "--dry-run", cwd=tmp_path, check=True)
    assert table.stdout.splitlines()[0].split() == ["trial", "learning_rate", "hidden_units", "layers", "epochs"]


@pytest.mark.parametrize("content, code, words", [
    ("space:\n  beta1: {low: 0.9, high: 1.0, scale: one_minus_log}\n", 1, "space.beta1.high: must be < 1"),
    ("space: {learning_rate: {low: 0.1, high: 0.2}\n", 1, "malformed YAML"),
    ("\x00\x01\x02", 1, "bad.yaml"),
    ("data: {dataset: missing.csv, target: y}\nspace: {epochs: 1}\n", 1, "file not found"),
])
def test_user_errors_exit_1_with_one_paragraph_and_no_traceback(tmp_path, content, code, words):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    proc = hptune("search", str(path), cwd=tmp_path)
    assert proc.returncode == code
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing was created for a bad config


def test_usage_errors_exit_2(tmp_path):
    cfg = tiny_config(tmp_path)
    assert hptune("search", str(cfg), "--trials", "0", cwd=tmp_path).returncode == 2
    assert hptune("search", cwd=tmp_path).returncode == 2
    assert hptune("frobnicate", cwd=tmp_path).returncode == 2


def test_missing_run_folders_are_clear_errors(tmp_path):
    for args in (["report", "runs/nope"], ["refine", "runs/nope"], ["resume", "runs/nope"]):
        proc = hptune(*args, cwd=tmp_path)
        assert proc.returncode == 1 and "no such run folder" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "notarun").mkdir()
    proc = hptune("report", "notarun", cwd=tmp_path)
    assert proc.returncode == 1 and "not an hptune run folder" in proc.stderr


def test_a_dry_run_checks_what_the_real_run_would_need(tmp_path):
    path = tmp_path / "nodata.yaml"
    path.write_text("data: {dataset: nope.csv, target: y}\nspace: {epochs: 1}\n")
    proc = hptune("search", str(path), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 1 and "file not found" in proc.stderr


def test_csv_dry_runs_stream_and_big_whole_formats_are_refused(tmp_path):
    cfg = tiny_config(tmp_path)
    proc = hptune("search", str(cfg), "--dry-run", "--trials", "25000", "--format", "csv", cwd=tmp_path, check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == 25001 and lines[0].startswith("trial,") and lines[-1].startswith("24999,")
    assert hptune("search", str(cfg), "--dry-run", "--trials", "200000", "--format", "json", cwd=tmp_path).returncode == 2


@pytest.mark.slow
def test_a_search_whose_trials_all_fail_exits_1_with_the_first_error(tmp_path):
    (tmp_path / "broken.py").write_text("def train(p):\n    raise ValueError('bad data')\n")
    path = tmp_path / "broken.yaml"
    path.write_text("objective: {function: 'broken:train', metric: score}\nsearch: {trials: 3, jobs: 1}\n"
                    "space: {x: {low: 0, high: 1}}\n")
    proc = hptune("search", str(path), "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 1
    assert "none of the 3 trials" in proc.stderr and "ValueError: bad data (at broken.py:2)" in proc.stderr
    assert (tmp_path / "runs" / "broken" / "results.csv").exists()  # the failures are kept
    assert proc.stdout.splitlines()[0] == "trial,round,status,x,score,duration_s"
