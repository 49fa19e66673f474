"""The generated glyph problem: shapes, determinism, balance, the split."""

from __future__ import annotations

import numpy as np
import pytest

from hptune.config.schema import DataConfig
from hptune.training import glyphs
from hptune.training.data import load_dataset


def test_shapes_dtypes_and_value_range() -> None:
    X, y = glyphs.generate(0, samples=250, size=16)
    assert X.shape == (250, 1, 16, 16) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (250,) and y.dtype == np.int64
    assert np.isfinite(X).all()
    # Paper near 0 and ink near 1, plus noise: the bulk of the pixels lies in a sane range.
    lo, hi = np.percentile(X, [1, 99])
    assert -0.6 < lo < 0.2 and 0.6 < hi < 1.8
    X24, _ = glyphs.generate(0, samples=10, size=24)
    assert X24.shape == (10, 1, 24, 24)


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    a = glyphs.generate(5, samples=200)
    b = glyphs.generate(5, samples=200)
    c = glyphs.generate(6, samples=200)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("samples", [10, 203, 1000])
def test_classes_are_balanced(samples: int) -> None:
    _, y = glyphs.generate(1, samples=samples)
    counts = np.bincount(y, minlength=glyphs.N_CLASSES)
    assert counts.max() - counts.min() <= 1 and counts.sum() == samples
    assert len(counts) == glyphs.N_CLASSES


def test_labels_are_not_in_class_order() -> None:
    _, y = glyphs.generate(2, samples=100)
    assert not np.array_equal(y, np.arange(100) % 10)


def test_images_differ_within_a_class_and_carry_the_glyph() -> None:
    X, y = glyphs.generate(3, samples=400)
    ones = X[y == 1, 0]
    # Random placement: no two images of one class alike.
    assert np.abs(ones[0] - ones[1]).mean() > 0.1
    # The glyph is ink: an image holds clearly more ink than its paper level on some pixels.
    assert (X.reshape(400, -1).max(axis=1) - np.median(X.reshape(400, -1), axis=1) > 0.5).all()
    # Class means differ: the label is in the picture (an 8 has more ink than a 1 on average).
    ink = X.reshape(400, -1).mean(axis=1)
    assert ink[y == 8].mean() > ink[y == 1].mean()


def test_the_glyph_dataset_is_split_stratified_and_standardized_per_channel() -> None:
    cfg = DataConfig(dataset="glyphs", samples=600, val_fraction=0.2, test_fraction=0.1)
    d = load_dataset(cfg, seed=4, images=True)
    assert d.X_train.shape[1:] == (1, 16, 16) and d.input_shape == (1, 16, 16) and d.n_classes == 10
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 600
    assert np.bincount(d.y_val).tolist() == [12] * 10 and np.bincount(d.y_test).tolist() == [6] * 10
    # one mean and one std for the channel, over every training pixel: what a translation shares is kept
    assert abs(float(d.X_train.mean())) < 1e-4 and abs(float(d.X_train.std()) - 1) < 1e-3
    flat = load_dataset(cfg, seed=4)  # the same data as rows of pixels for an MLP, standardized per column
    assert flat.X_train.shape == (len(d.y_train), 256) and flat.n_features == 256
    np.testing.assert_array_equal(flat.y_train, d.y_train)
    assert np.allclose(flat.X_train.mean(axis=0), 0, atol=1e-4)
    assert load_dataset(DataConfig(dataset="glyphs", samples=600), seed=4).X_test is None
    again = load_dataset(cfg, seed=4, images=True)
    np.testing.assert_array_equal(again.X_train, d.X_train)  # the data seed fixes the images


@pytest.mark.parametrize("kw", [{"samples": 0}, {"size": 4}])
def test_invalid_arguments(kw: dict) -> None:
    with pytest.raises(ValueError):
        glyphs.generate(0, **kw)

