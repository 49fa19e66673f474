"""The conv family as a user meets it: `model: cnn` in a config, image data, search, halving, panda."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import trial_events  # noqa: E402

from hptune import panda  # noqa: E402
from hptune.config import load_config, parse_config  # noqa: E402
from hptune.config.schema import DataConfig  # noqa: E402
from hptune.errors import ConfigError, DataError  # noqa: E402
from hptune.search import search  # noqa: E402
from hptune.training.data import load_dataset  # noqa: E402


def cnn_config(tmp_path: Path, **extra) -> Path:
    raw = {"name": "c", "seed": 1, "model": "cnn", "data": {"dataset": "digits"},
           "search": {"trials": 6, "jobs": 2, **extra.pop("search", {})},
           "space": {"learning_rate": {"low": 3e-3, "high": 3e-2, "scale": "log"}, "channels": [4, 8],
                     "hidden_units": 16, "epochs": 3, **extra.pop("space", {})}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_parameters_of_another_family_are_an_error_naming_the_family():
    with pytest.raises(ConfigError, match=r"space.layers: unknown parameter for the built-in trainer's cnn model. "
                                          r"It belongs to model: mlp"):
        parse_config({"model": "cnn", "space": {"layers": 2}})
    with pytest.raises(ConfigError, match=r"space.kernel_size: unknown parameter .* mlp model. It belongs to model: cnn"):
        parse_config({"space": {"kernel_size": 3}})
    with pytest.raises(ConfigError, match=r"space.kernel_size\[1\]: must be one of 1, 3, 5, 7; got 4"):
        parse_config({"model": "cnn", "space": {"kernel_size": [3, 4]}})
    with pytest.raises(ConfigError, match="model: must be one of mlp, cnn"):
        parse_config({"model": "resnet", "space": {"epochs": 1}})


def test_a_conv_net_needs_images():
    with pytest.raises(DataError, match="model: cnn trains on images, and the synthetic dataset is a table"):
        load_dataset(DataConfig(dataset="synthetic", samples=200), seed=0, images=True)


@pytest.mark.parametrize("shape, layout", [((60, 8, 8), (1, 8, 8)), ((60, 3, 8, 8), (3, 8, 8)),
                                           ((60, 8, 8, 3), (3, 8, 8))])
def test_npz_images_in_each_layout(tmp_path, shape, layout):
    rng = np.random.default_rng(0)
    X = rng.normal(size=shape).astype(np.float32)
    y = np.arange(60) % 3
    np.savez(tmp_path / "img.npz", X=X, y=y)
    d = load_dataset(DataConfig(dataset="img.npz"), seed=0, base_dir=tmp_path, images=True)
    assert d.input_shape == layout and d.X_train.shape[1:] == layout
    # per channel: each channel has mean 0 and std 1 over the training set
    assert np.allclose(d.X_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    if shape[-1] == 3:  # (N, H, W, C) was moved to (N, C, H, W): the same numbers, channel by channel
        raw = load_dataset(DataConfig(dataset="img.npz", standardize=False), seed=0, base_dir=tmp_path, images=True)
        assert sorted(raw.X_train[:, 0].ravel().tolist() + raw.X_val[:, 0].ravel().tolist()) == \
            sorted(X[..., 0].ravel().tolist())


def test_an_ambiguous_image_layout_is_refused(tmp_path):
    np.savez(tmp_path / "amb.npz", X=np.zeros((30, 3, 8, 3), np.float32), y=np.arange(30) % 3)
    with pytest.raises(DataError, match=r"cannot tell its channels from its sides .* Save it as \(N, C, H, W\)"):
        load_dataset(DataConfig(dataset="amb.npz"), seed=0, base_dir=tmp_path, images=True)


@pytest.mark.slow
def test_a_conv_search_with_halving_on_digits_images(tmp_path):
    cfg = load_config(cnn_config(tmp_path, search={"trials": 9, "halving": {"min_epochs": 1, "factor": 3}}))
    trials = trial_events(search(cfg, tmp_path / "runs", report=False).run_dir)
    assert len(trials) == 9 and [t["status"] for t in trials].count("ok") == 3
    assert all(t["status"] in ("ok", "pruned") and len(t["curve"]) == t["epochs"] for t in trials)
    best = max(t["metrics"]["val_accuracy"] for t in trials if t["status"] == "ok")
    assert best > 0.8


def test_panda_trains_and_forks_a_conv_net(tmp_path):
    cfg = load_config(cnn_config(tmp_path))
    run_dir = panda.start(cfg, tmp_path / "runs", overrides={"learning_rate": 1e-2, "channels": 4}, epochs=3)
    panda.fork(run_dir, "b0@1", overrides={}, epochs=2)
    _, state, _ = panda.load(run_dir)
    b0, b1 = state.branches["b0"].points, state.branches["b1"].points
    assert [p["val_loss"] for p in b1] == [p["val_loss"] for p in b0[1:3]]  # checkpoint -> resume is exact
    path, build = panda.export(run_dir, "b0@3", tmp_path / "m.pt")
    assert build.startswith("BNConvNet((1, 8, 8), 10, conv_layers=2, channels=4")
