"""The step-wise trainer: the same numbers as hptune 0.1's one-shot trainer, and a state that
continues exactly after `torch.save` / `torch.load(weights_only=True)`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hptune.config.schema import DataConfig  # noqa: E402
from hptune.training.data import load_dataset  # noqa: E402
from hptune.training.trainer import Trainer, train_trial  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden_train_0_1.json"
# Curves recorded by hptune 0.1's train_trial (torch 2.13.0, CPU, 1 thread) for a table of
# configurations: every optimizer, lr decay, BN before/after/off, population statistics, a test split.
CASES = json.loads(GOLDEN.read_text())


def dataset(kw):
    return load_dataset(DataConfig(**kw), seed=0)


@pytest.mark.skipif(not torch.__version__.startswith("2.13.0"), reason="recorded with torch 2.13.0")
@pytest.mark.parametrize("case", CASES, ids=[c["params"].get("optimizer", "adam") + str(i) for i, c in enumerate(CASES)])
def test_the_step_wise_trainer_gives_hptune_0_1s_numbers_bit_for_bit(case, one_torch_thread):
    out = train_trial(case["params"], dataset(case["data"]), seed=case["seed"])
    assert out["curve"] == case["result"]["curve"]
    assert out["metrics"] == case["result"]["metrics"]


@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: c["params"].get("optimizer", "adam"))
def test_a_saved_state_continues_exactly(case, one_torch_thread):
    data = dataset(case["data"])
    whole = train_trial(case["params"], data, seed=case["seed"])
    first = Trainer(case["params"], data, seed=case["seed"])
    first.train(until_epoch=1)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # tensors only: no pickled objects
    assert all(torch.is_tensor(v) for v in state.values())
    second = Trainer(case["params"], data, seed=0)  # another seed: the state must bring its own RNG
    second.load_state_dict(state)
    assert second.epoch == 1
    rest = second.train()
    assert first.curve + rest == whole["curve"]
    assert second.metrics() == whole["metrics"]


def test_population_metrics_leave_the_running_averages_alone(one_torch_thread):
    params = {"bn_stats": "population", "epochs": 2}
    data = dataset({})
    t = Trainer(params, data, seed=3)
    t.train(until_epoch=1)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.metrics()
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())
    t.train()
    assert t.result()["metrics"] == train_trial(params, data, seed=3)["metrics"]


def test_the_learning_rate_schedule_is_a_pytorch_scheduler(one_torch_thread):
    t = Trainer({"optimizer": "sgd", "learning_rate": 0.1, "lr_decay": 1.0, "epochs": 3}, dataset({}), seed=0)
    assert isinstance(t.schedule, torch.optim.lr_scheduler.LRScheduler)
    lrs = []
    for _ in range(3):
        lrs.append(t.optimizer.param_groups[0]["lr"])
        t.train_epoch()
    assert lrs == [0.1 / (1 + 1.0 * e) for e in range(3)]


def test_trainers_of_the_same_data_share_one_copy_of_it_and_train_as_if_alone():
    data = load_dataset(DataConfig(), seed=0)
    a = Trainer({"hidden_units": 16, "epochs": 2}, data, seed=1)
    b = Trainer({"hidden_units": 16, "epochs": 2, "learning_rate": 3e-3}, data, seed=2)
    assert a.X_train is b.X_train and a.y_val is b.y_val  # one copy for both
    alone = train_trial({"hidden_units": 16, "epochs": 2, "learning_rate": 3e-3}, data, seed=2)
    while not a.done:  # training a must not change what b trains on
        a.train_epoch()
    other = Trainer({"hidden_units": 16, "epochs": 2}, load_dataset(DataConfig(), seed=0), seed=1)
    assert other.X_train is not a.X_train and torch.equal(other.X_train, a.X_train)
    while not b.done:
        b.train_epoch()
    assert b.curve == alone["curve"]
