"""Panda mode: one model, epoch by epoch, forked from checkpoints with new values."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import hptune_process, hptune_run, trial_events, wait_until  # noqa: E402

from hptune import panda  # noqa: E402
from hptune.config import load_config  # noqa: E402
from hptune.errors import UserError  # noqa: E402
from hptune.search import search  # noqa: E402
from hptune.store import RunStore  # noqa: E402

torch = pytest.importorskip("torch")


def config(tmp_path: Path, **space) -> Path:
    raw = {"name": "p", "seed": 3, "data": {"dataset": "digits"},
           "space": {"learning_rate": 3e-3, "hidden_units": 32, "epochs": 4, **space}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def curve(run_dir: Path, branch: str) -> list[dict]:
    return [{k: e[k] for k in ("epoch", "train_loss", "val_loss", "val_accuracy")}
            for e in RunStore(run_dir).events() if e["event"] == "epoch" and e["branch"] == branch]


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    return panda.start(load_config(config(tmp_path)), tmp_path / "runs", overrides={}, epochs=6)


def test_a_new_model_trains_epoch_by_epoch_with_a_checkpoint_each(base):
    points = curve(base, "b0")
    assert [p["epoch"] for p in points] == [1, 2, 3, 4, 5, 6]
    for e in range(1, 7):
        state = torch.load(base / "checkpoints" / f"b0-e{e}.pt", weights_only=True)
        assert int(state["epoch"]) == e and all(torch.is_tensor(v) for v in state.values())
    assert json.loads((base / "run.json").read_text())["kind"] == "panda"


def test_a_fork_with_unchanged_values_reproduces_the_parents_next_epochs_bit_for_bit(base):
    name = panda.fork(base, "b0@3", overrides={}, epochs=3)
    assert name == "b1"
    assert curve(base, "b1") == curve(base, "b0")[3:6]


def test_a_fork_trains_with_its_new_learning_rate(base, monkeypatch):
    from hptune.training import trainer as trainer_mod

    seen = []
    real = trainer_mod.Trainer.train_epoch

    def spy(self):
        seen.append([g["lr"] for g in self.optimizer.param_groups])
        return real(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", spy)
    panda.fork(base, "b0@3", overrides={"learning_rate": 3e-5}, epochs=3)
    assert seen == [[3e-5]] * 3  # in the optimizer's param groups, from the first epoch after the fork
    forked, parent = curve(base, "b1"), curve(base, "b0")[3:6]
    assert [p["epoch"] for p in forked] == [4, 5, 6] and forked != parent
    # a much smaller rate changes the training loss less from the fork point than the parent's rate did
    start = curve(base, "b0")[2]["train_loss"]
    assert abs(forked[-1]["train_loss"] - start) < abs(parent[-1]["train_loss"] - start)


def test_a_new_decay_restarts_the_schedule_at_the_fork_and_bn_beta_reaches_the_modules(base, monkeypatch):
    from hptune.training import trainer as trainer_mod

    seen = []
    real = trainer_mod.Trainer.train_epoch

    def spy(self):
        seen.append((self.optimizer.param_groups[0]["lr"], [m.momentum for m in self.model.modules()
                                                          if isinstance(m, torch.nn.BatchNorm1d)]))
        return real(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", spy)
    panda.fork(base, "b0@2", overrides={"learning_rate": 1e-3, "lr_decay": 1.0, "bn_momentum": 0.99}, epochs=3)
    assert [lr for lr, _ in seen] == pytest.approx([1e-3, 1e-3 / 2, 1e-3 / 3])
    assert all(m == pytest.approx(0.01) for _, ms in seen for m in ms)


@pytest.mark.parametrize("key, value", [("layers", 3), ("hidden_units", 64), ("optimizer", "sgd"),
                                        ("batch_norm", False)])
def test_a_fork_refuses_to_change_a_shape(base, key, value):
    with pytest.raises(UserError, match=f"--set {key}: cannot change when continuing a model"):
        panda.fork(base, "b0@2", overrides={key: value}, epochs=1)
    assert "b1" not in panda.load(base)[1].branches  # nothing was written


def test_bad_origins_and_values_are_clear_errors(base):
    for origin, words in (("b7@2", "a branch of"), ("b0@9", "no checkpoint at epoch 9"), ("b0@x", "BRANCH@EPOCH")):
        with pytest.raises(UserError, match=words):
            panda.fork(base, origin, overrides={}, epochs=1)
    with pytest.raises(UserError, match="learning_rate: must be a number > 0"):
        panda.fork(base, "b0@2", overrides={"learning_rate": -1}, epochs=1)


def test_export_writes_weights_that_load_into_the_bnmlp(base, tmp_path):
    from hptune.config.schema import DataConfig
    from hptune.training.data import load_dataset
    from hptune.training.models import BNMLP
    from hptune.training.trainer import evaluate, to_tensor

    path, build = panda.export(base, "b0@6", tmp_path / "model.pt")
    assert build.startswith("BNMLP(64, 10, layers=2, hidden_units=32")
    model = BNMLP(64, 10, layers=2, hidden_units=32)
    model.load_state_dict(torch.load(path, weights_only=True))
    data = load_dataset(DataConfig(), seed=0)
    import numpy as np

    loss, acc = evaluate(model, to_tensor(data.X_val, np.float32, torch.device("cpu")),
                         to_tensor(data.y_val, np.int64, torch.device("cpu")))
    assert acc == curve(base, "b0")[5]["val_accuracy"] and loss == pytest.approx(curve(base, "b0")[5]["val_loss"])


@pytest.mark.slow
def test_kill_9_during_a_branch_then_resume_loses_and_repeats_no_epoch(tmp_path):
    reference = panda.start(load_config(config(tmp_path)), tmp_path / "ref", overrides={}, epochs=80)
    proc = hptune_process("panda", str(config(tmp_path)), "--epochs", "80", "--runs-dir", "runs", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "p"
    wait_until(lambda: (run_dir / "trials.jsonl").exists()
               and (run_dir / "trials.jsonl").read_text().count('"event":"epoch"') >= 5, 60, "five epochs")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = len(curve(run_dir, "b0"))
    assert 5 <= done < 80
    out = hptune_run("resume", str(run_dir), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert curve(run_dir, "b0") == curve(reference, "b0")  # every epoch once, the same numbers


def test_panda_from_a_search_trial_retrains_it_then_continues_with_new_values(tmp_path):
    raw = {"name": "s", "seed": 1, "data": {"dataset": "digits"}, "search": {"trials": 3, "jobs": 1},
           "space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "scale": "log"}, "hidden_units": 24, "epochs": 3}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    run_dir = search(load_config(tmp_path / "s.yaml"), tmp_path / "runs", report=False).run_dir
    trial = trial_events(run_dir)[1]
    out = hptune_run("panda", str(run_dir), "--trial", str(trial["trial"]), "--set", "learning_rate=1e-4",
                     "--epochs", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    p = tmp_path / "runs" / f"s-t{trial['trial']}"
    assert curve(p, "b0") == trial["curve"]  # the same parameters and seed: the trial's very curve
    assert [e["epoch"] for e in curve(p, "b1")] == [4, 5]
    report = hptune_run("report", str(p), cwd=tmp_path)
    assert report.returncode == 0 and f"trial {trial['trial']} of s" in report.stdout
    assert "learning_rate=0.0001" in report.stdout and (p / "report.html").exists()


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_stacked_search_trial_interrupted_in_panda_resumes_to_its_very_curve(tmp_path, model):
    space = {"learning_rate": {"low": 1e-3, "high": 1e-2, "scale": "log"}, "epochs": 4}
    space.update({"hidden_units": 24} if model == "mlp" else {"channels": 4, "hidden_units": 16})
    raw = {"name": "s", "seed": 2, "model": model, "data": {"dataset": "digits", "samples": 600},
           "search": {"trials": 3, "jobs": 1}, "space": space}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    run_dir = search(load_config(tmp_path / "s.yaml"), tmp_path / "runs", report=False).run_dir
    trial = trial_events(run_dir)[2]
    assert trial["group"] == 3  # trained in a stacked group

    def stop_after_two(kind, info):
        if kind == "epoch" and info["point"]["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(panda.Interrupted) as stopped:
        panda.from_trial(run_dir, trial["trial"], overrides={}, epochs=None, progress=stop_after_two)
    assert len(curve(stopped.value.run_dir, "b0")) == 2
    panda.resume(stopped.value.run_dir)
    again = curve(stopped.value.run_dir, "b0")
    if model == "mlp":
        assert again == trial["curve"]  # bit for bit, across the interruption
    else:  # conv groups agree with a trial trained alone to float rounding
        assert [p["epoch"] for p in again] == [1, 2, 3, 4]
        for a, b in zip(again, trial["curve"]):
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)


def test_a_panda_run_in_the_runs_comparison_shows_its_best_epoch_not_an_empty_search(base):
    from hptune.report.summary import summary_frame

    name = panda.fork(base, "b0@3", overrides={"learning_rate": 1e-4}, epochs=2)
    _, state, _ = panda.load(base)
    best = max((p for b in state.branches.values() for p in b.points), key=lambda p: p["val_accuracy"])
    row = summary_frame([base]).iloc[0]
    assert row["run"] == "p" and row["best"] == best["val_accuracy"] and row["rounds"] == 0
    assert row["params"].startswith("panda: 2 branches, best ") and name in state.branches
    assert row["wall_s"] > 0


@pytest.mark.slow
def test_kill_9_during_a_fork_then_resume_gives_the_uninterrupted_forks_epochs(tmp_path):
    import shutil

    base = panda.start(load_config(config(tmp_path)), tmp_path / "runs", overrides={}, epochs=4)
    reference = tmp_path / "ref" / "p"
    shutil.copytree(base, reference)
    name = panda.fork(reference, "b0@2", overrides={"learning_rate": 1e-3}, epochs=80)
    proc = hptune_process("panda", str(base), "--from", "b0@2", "--set", "learning_rate=1e-3", "--epochs", "80",
                          cwd=tmp_path)
    wait_until(lambda: len(curve(base, name)) >= 5, 60, "five epochs of the fork")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert 5 <= len(curve(base, name)) < 80
    out = hptune_run("resume", str(base), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert curve(base, name) == curve(reference, name) and len(curve(base, name)) == 80  # every epoch once
