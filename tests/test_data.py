"""Tests for hptune.data: built-ins, file formats, the split and the error messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hptune.training import data
from conftest import require_module
from hptune.training.data import DataConfig, load_dataset, load_dataset_cached, resolve_path
from hptune.errors import DataError, UserError

SMALL_SYNTH = DataConfig(dataset="synthetic", samples=2000, features=20, classes=4, informative=8)


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


def _write_csv(path: Path, n_per_class: int = 10, seed: int = 0) -> Path:
    """A small CSV with two numeric features and string labels."""
    rng = np.random.default_rng(seed)
    lines = ["a,b,species"]
    for label in ("setosa", "versicolor", "virginica"):
        for _ in range(n_per_class):
            lines.append(f"{rng.normal():.4f},{rng.normal():.4f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _load_error(cfg: DataConfig, base_dir: Path | str = ".", source: str = "exp.yaml") -> str:
    with pytest.raises(DataError) as info:
        load_dataset(cfg, seed=0, base_dir=base_dir, source=source)
    message = str(info.value)
    assert message.startswith(f"{source}: data.")
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- digits


def test_digits_shapes_classes_and_split_sizes():
    ds = load_dataset(DataConfig(), seed=0)
    assert ds.name == "digits"
    assert ds.n_features == 64 and ds.n_classes == 10
    assert ds.classes == tuple(range(10))
    assert all(type(c) is int for c in ds.classes)
    n = len(ds.y_train) + len(ds.y_val)
    assert n == 1797
    assert abs(len(ds.y_val) - 0.2 * n) <= ds.n_classes
    assert ds.X_test is None and ds.y_test is None
    for X in (ds.X_train, ds.X_val):
        assert X.dtype == np.float32 and X.flags.c_contiguous and X.shape[1] == 64
    for y in (ds.y_train, ds.y_val):
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


def test_digits_three_way_split_is_disjoint_and_complete():
    ds = load_dataset(DataConfig(val_fraction=0.2, test_fraction=0.1, standardize=False), seed=3)
    assert ds.X_test is not None and ds.y_test is not None
    sizes = [len(ds.y_train), len(ds.y_val), len(ds.y_test)]
    assert sum(sizes) == 1797
    assert abs(sizes[2] - 0.1 * 1797) <= 10
    # Unstandardized digits rows are exact small integers: compare as row sets.
    rows = [tuple(r) for X in (ds.X_train, ds.X_val, ds.X_test) for r in X.astype(int)]
    raw = np.load(Path(data.__file__).parents[1] / "datasets" / "digits.npz")
    assert sorted(rows) == sorted(tuple(r) for r in raw["X"].astype(int))


def test_split_is_stratified():
    ds = load_dataset(DataConfig(val_fraction=0.3), seed=1)
    overall = np.bincount(np.concatenate([ds.y_train, ds.y_val])) / 1797
    val = np.bincount(ds.y_val, minlength=10) / len(ds.y_val)
    train = np.bincount(ds.y_train, minlength=10) / len(ds.y_train)
    assert np.abs(val - overall).max() < 0.005
    assert np.abs(train - overall).max() < 0.005


def test_same_seed_same_split_other_seed_other_split():
    a = load_dataset(DataConfig(), seed=7)
    b = load_dataset(DataConfig(), seed=7)
    c = load_dataset(DataConfig(), seed=8)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert a.X_val.shape == c.X_val.shape
    assert not np.array_equal(a.y_val, c.y_val)


def test_standardize_uses_training_statistics_only():
    ds = load_dataset(DataConfig(), seed=0)
    # Digits has pixels that are constant (0) in training: their std stays 0, not NaN.
    std = ds.X_train.std(axis=0)
    varying = std > 0
    assert np.allclose(ds.X_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(std[varying], 1, atol=1e-4)
    assert np.isfinite(ds.X_val).all()
    # Validation was scaled with training stats, so its own stats are not exactly 0/1.
    assert np.abs(ds.X_val.mean(axis=0)[varying]).max() > 1e-3

    raw = load_dataset(DataConfig(standardize=False), seed=0)
    mean = raw.X_train.astype(np.float64).mean(axis=0)
    sd = raw.X_train.astype(np.float64).std(axis=0)
    sd[sd == 0] = 1
    np.testing.assert_allclose(ds.X_val, (raw.X_val - mean) / sd, rtol=1e-5, atol=1e-5)
    assert raw.X_train.max() == 16 and raw.X_train.min() == 0


# --------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_determinism_and_balance():
    a = load_dataset(SMALL_SYNTH, seed=5)
    assert a.name == "synthetic"
    assert a.n_features == 20 and a.n_classes == 4 and a.classes == (0, 1, 2, 3)
    assert len(a.y_train) + len(a.y_val) == 2000
    assert a.X_train.shape == (len(a.y_train), 20) and a.X_train.dtype == np.float32
    counts = np.bincount(np.concatenate([a.y_train, a.y_val]))
    assert counts.min() > 0.8 * 2000 / 4

    b = load_dataset(SMALL_SYNTH, seed=5)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    c = load_dataset(SMALL_SYNTH, seed=6)
    assert a.X_train.shape != c.X_train.shape or not np.allclose(a.X_train, c.X_train)


def test_synthetic_class_sep_changes_difficulty():
    """A nearest-centroid classifier should do better with larger class_sep."""

    def centroid_accuracy(sep: float) -> float:
        ds = load_dataset(DataConfig(**{**SMALL_SYNTH.to_dict(), "class_sep": sep}), seed=0)
        centres = np.stack([ds.X_train[ds.y_train == k].mean(axis=0) for k in range(ds.n_classes)])
        dist = ((ds.X_val[:, None, :] - centres[None]) ** 2).sum(axis=2)
        return float((dist.argmin(axis=1) == ds.y_val).mean())

    assert centroid_accuracy(4.0) > centroid_accuracy(0.5) + 0.1


def test_synthetic_too_few_informative_features():
    cfg = DataConfig(dataset="synthetic", samples=500, features=10, classes=10, informative=3)
    message = _load_error(cfg)
    assert "data.informative" in message and "at least 4" in message


def test_synthetic_target_is_rejected():
    message = _load_error(DataConfig(dataset="synthetic", target="label"))
    assert "data.target" in message and "Remove data.target" in message


# --------------------------------------------------------------------------- files


def test_csv_with_string_labels_round_trip(tmp_path):
    _write_csv(tmp_path / "iris.csv")
    ds = load_dataset(DataConfig(dataset="iris.csv", target="species", standardize=False), seed=0, base_dir=tmp_path)
    assert ds.name == "iris.csv"
    assert ds.classes == ("setosa", "versicolor", "virginica")
    assert ds.n_features == 2 and ds.n_classes == 3
    assert len(ds.y_train) + len(ds.y_val) == 30
    # Every row comes back with its own label.
    text = (tmp_path / "iris.csv").read_text().splitlines()[1:]
    expected = sorted((round(float(a), 4), round(float(b), 4), s) for a, b, s in (l.split(",") for l in text))
    got = sorted(
        (round(float(x[0]), 4), round(float(x[1]), 4), ds.classes[k])
        for X, y in ((ds.X_train, ds.y_train), (ds.X_val, ds.y_val))
        for x, k in zip(X, y)
    )
    assert got == expected


def test_csv_with_integer_labels_keeps_original_values(tmp_path):
    path = tmp_path / "ints.csv"
    rows = [f"{i},{label}" for i, label in enumerate([3, 7, 9] * 5)]
    path.write_text("x,label\n" + "\n".join(rows) + "\n")
    ds = load_dataset(DataConfig(dataset=str(path), target="label"), seed=0)
    assert ds.classes == (3, 7, 9)
    assert all(type(c) is int for c in ds.classes)
    assert set(ds.y_train.tolist()) == {0, 1, 2}


def test_relative_path_resolved_against_base_dir_not_cwd(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "configs"
    (cfg_dir / "data").mkdir(parents=True)
    _write_csv(cfg_dir / "data" / "iris.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = DataConfig(dataset="data/iris.csv", target="species")
    assert resolve_path(cfg, cfg_dir) == cfg_dir / "data" / "iris.csv"
    assert resolve_path(DataConfig(), cfg_dir) is None
    ds = load_dataset(cfg, seed=0, base_dir=cfg_dir)
    assert ds.n_classes == 3
    # Relative to the cwd it does not exist, and the message says how paths are read.
    message = _load_error(cfg, base_dir=".")
    assert str(elsewhere / "data" / "iris.csv") in message
    assert "relative to the config file's folder" in message


def test_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(40, 3)), y=np.repeat(np.array(["no", "yes"]), 20))
    ds = load_dataset(DataConfig(dataset="d.npz", test_fraction=0.25), seed=0, base_dir=tmp_path)
    assert ds.classes == ("no", "yes") and ds.n_features == 3
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 40


# --------------------------------------------------------------------------- errors


def test_error_missing_file(tmp_path):
    message = _load_error(DataConfig(dataset="nope.csv", target="y"), base_dir=tmp_path)
    assert "data.dataset: file not found: " in message
    assert str(tmp_path / "nope.csv") in message
    message = _load_error(DataConfig(dataset=str(tmp_path / "abs.npz")))
    assert "file not found" in message and "relative path" not in message


def test_error_target_missing_or_misspelled(tmp_path):
    _write_csv(tmp_path / "iris.csv")
    message = _load_error(DataConfig(dataset="iris.csv", target="specie"), base_dir=tmp_path)
    assert "data.target" in message and "'specie'" in message
    assert "Did you mean 'species'?" in message
    assert "'a', 'b', 'species'" in message

    message = _load_error(DataConfig(dataset="iris.csv"), base_dir=tmp_path)
    assert "data.target: is required for CSV files" in message and "'species'" in message


def test_error_non_numeric_feature_column(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("age,city,label\n1,paris,a\n2,rome,b\n3,oslo,a\n?,rome,b\n5,oslo,a\n6,rome,b\n")
    message = _load_error(DataConfig(dataset=str(path), target="label"))
    assert "must be numeric" in message
    assert "'city'" in message and "'paris'" in message
    assert "'age'" in message and "'?'" in message and "data row 4" in message
    assert "'label'" not in message.split("not:")[1].split(".")[0]


def test_error_nan_and_inf_features(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("a,b,c,label\n1,2,3,x\n1,,3,y\n1,2,inf,x\n1,2,3,y\n4,,6,x\n7,8,9,y\n")
    message = _load_error(DataConfig(dataset=str(path), target="label"))
    assert "3 of 6 samples" in message
    assert "'b' (2)" in message and "'c' (1)" in message and "'a'" not in message
    assert "2, 3, 5" in message


def test_error_missing_labels(tmp_path):
    path = tmp_path / "nolabel.csv"
    path.write_text("a,label\n1,x\n2,\n3,y\n4,x\n5,y\n")
    message = _load_error(DataConfig(dataset=str(path), target="label"))
    assert "1 of 5 samples" in message and "target column 'label'" in message


def test_error_class_too_small(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("a,label\n" + "\n".join(f"{i},{'rare' if i == 0 else 'common'}" for i in range(20)) + "\n")
    message = _load_error(DataConfig(dataset=str(path), target="label"))
    assert "class 'rare'" in message and "only 1 sample" in message and "at least 2" in message

    # Two samples suffice for train/val but not for train/val/test.
    path.write_text("a,label\n" + "\n".join(f"{i},{'rare' if i < 2 else 'common'}" for i in range(20)) + "\n")
    load_dataset(DataConfig(dataset=str(path), target="label"), seed=0)
    message = _load_error(DataConfig(dataset=str(path), target="label", test_fraction=0.2))
    assert "only 2 samples" in message and "at least 3" in message and "test_fraction" in message


def test_small_classes_get_one_sample_in_every_split(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text("a,label\n" + "\n".join(f"{i},{i % 4}" for i in range(12)) + "\n")
    ds = load_dataset(DataConfig(dataset=str(path), target="label", val_fraction=0.5, test_fraction=0.4), seed=0)
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert sorted(set(y.tolist())) == [0, 1, 2, 3]


def test_error_single_class(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("a,label\n1,x\n2,x\n3,x\n")
    assert "only one class ('x')" in _load_error(DataConfig(dataset=str(path), target="label"))


def test_error_bad_npz(tmp_path):
    np.savez(tmp_path / "keys.npz", x=np.zeros((4, 2)), labels=np.zeros(4))
    message = _load_error(DataConfig(dataset="keys.npz"), base_dir=tmp_path)
    assert "'X' (features, 2-D) and 'y' (labels, 1-D)" in message
    assert "'x', 'labels'" in message and "'x' should be named 'X'" in message

    np.savez(tmp_path / "len.npz", X=np.zeros((4, 2)), y=np.zeros(3))
    message = _load_error(DataConfig(dataset="len.npz"), base_dir=tmp_path)
    assert "X has 4 rows and y has 3" in message

    np.savez(tmp_path / "flat.npz", X=np.zeros(4), y=np.zeros(4))
    assert "must be 2-D" in _load_error(DataConfig(dataset="flat.npz"), base_dir=tmp_path)

    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "could not read" in _load_error(DataConfig(dataset="junk.npz"), base_dir=tmp_path)


def test_error_unknown_extension_and_builtin_typo(tmp_path):
    (tmp_path / "data.txt").write_text("1,2\n")
    message = _load_error(DataConfig(dataset="data.txt"), base_dir=tmp_path)
    assert "'.txt'" in message and ".csv, .npz, .parquet" in message and "digits, synthetic" in message

    message = _load_error(DataConfig(dataset="digit"))
    assert "Did you mean 'digits'?" in message and "built-in dataset" in message


def test_error_fractions():
    assert "0 < val_fraction < 1" in _load_error(DataConfig(val_fraction=1.0))
    assert "0 <= test_fraction < 1" in _load_error(DataConfig(test_fraction=-0.1))
    message = _load_error(DataConfig(val_fraction=0.5, test_fraction=0.5))
    assert "data.test_fraction" in message and "0.5 + 0.5" in message


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    message = _load_error(DataConfig(dataset="t.parquet", target="y"), base_dir=tmp_path)
    assert "pip install pyarrow" in message and "hptune[parquet]" in message


def test_parquet_round_trip(tmp_path):
    require_module("pyarrow", "it reads Parquet files (pip install 'hptune[parquet]')")
    import pandas as pd

    df = pd.DataFrame({"a": np.arange(20.0), "label": ["u", "v"] * 10})
    df.to_parquet(tmp_path / "t.parquet")
    ds = load_dataset(DataConfig(dataset="t.parquet", target="label"), seed=0, base_dir=tmp_path)
    assert ds.classes == ("u", "v") and ds.n_features == 1


def test_data_error_is_a_user_error():
    assert issubclass(DataError, UserError)


# --------------------------------------------------------------------------- cache


def test_cached_loader_reuses_and_notices_file_changes(tmp_path):
    path = _write_csv(tmp_path / "iris.csv")
    cfg = DataConfig(dataset="iris.csv", target="species")
    first = load_dataset_cached(cfg, seed=0, base_dir=tmp_path)
    assert load_dataset_cached(cfg, seed=0, base_dir=tmp_path) is first
    assert load_dataset_cached(cfg, seed=1, base_dir=tmp_path) is not first

    _write_csv(path, n_per_class=12, seed=1)
    # Force a distinct mtime even on filesystems with coarse timestamps.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    again = load_dataset_cached(cfg, seed=0, base_dir=tmp_path)
    assert again is not first
    assert len(again.y_train) + len(again.y_val) == 36


def test_cached_loader_builtin_and_errors_not_cached(tmp_path):
    a = load_dataset_cached(SMALL_SYNTH, seed=0)
    assert load_dataset_cached(SMALL_SYNTH, seed=0) is a
    cfg = DataConfig(dataset="late.csv", target="species")
    with pytest.raises(DataError):
        load_dataset_cached(cfg, seed=0, base_dir=tmp_path)
    _write_csv(tmp_path / "late.csv")
    assert load_dataset_cached(cfg, seed=0, base_dir=tmp_path).n_classes == 3


def test_to_dict_is_plain():
    d = DataConfig(dataset="x.csv", target="t").to_dict()
    assert d["dataset"] == "x.csv" and d["target"] == "t" and d["informative"] == 40
    assert DataConfig(**d) == DataConfig(dataset="x.csv", target="t")
