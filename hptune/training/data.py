"""Datasets for tuning: the built-in ones, user files, and the stratified split.

`load_dataset` turns a `DataConfig` into a `Dataset` of float32 features and
int64 class indices, split into train/validation(/test) and standardized with
training statistics. Every problem a user can cause raises `DataError` with a
one-paragraph message that starts with the config file's name and key.

pandas is imported only when a CSV or Parquet file is read, so that workers
and the CLI do not pay for it when the data is built in.
"""

from __future__ import annotations

import difflib
import io
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hptune.training.dataspec import BUILTIN_DATASETS, DataConfig
from hptune.errors import DataError

SUPPORTED_EXTENSIONS = (".csv", ".npz", ".parquet")

# Column names tried, in order, when a CSV/Parquet config names no target.
_LIKELY_TARGETS = ("label", "labels", "target", "class", "y")
# Lists in messages are cut here so that a 700-column file gives a readable error.
_MAX_LISTED = 15
# How many loaded datasets one process keeps; a worker normally needs one.
_CACHE_SIZE = 4
# Synthetic difficulty, tuned so that the defaults (20000 x 100, 10 classes,
# 40 informative, class_sep 1) give a BN MLP about 0.75-0.78 validation
# accuracy, with room between good and bad hyperparameters.
_CLUSTERS_PER_CLASS = 3
_SYNTHETIC_NOISE = 0.5  # noise std of derived features, relative to their own std
_SYNTHETIC_FLIP = 0.01  # share of labels resampled uniformly


@dataclass(frozen=True)
class Dataset:
    """A split, ready-to-train classification problem.

    Features are float32 and C-contiguous; labels are int64 indices into
    `classes`, which holds the original label values. The test arrays are None
    when `test_fraction` is 0. Arrays may be shared through
    `load_dataset_cached`: do not modify them in place.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    n_features: int
    n_classes: int
    classes: tuple[Any, ...]
    input_shape: tuple[int, int, int] | None = None  # (C, H, W) when the data are images


# Channel counts an image array may have; a 4-D array is (N, C, H, W) or (N, H, W, C) by where one sits.
IMAGE_CHANNELS = (1, 2, 3, 4)


@dataclass
class _Raw:
    """Unsplit data as read, before label encoding and checks."""

    name: str  # Dataset.name: the built-in's name or the file name
    X: np.ndarray  # 2-D, numeric dtype
    y: np.ndarray  # 1-D, any dtype; object arrays use None for missing
    where: str  # how messages name the data, e.g. "iris.csv"
    columns: list[str] | None  # feature names; None means refer to 0-based indices
    label_desc: str  # how messages name the labels, e.g. "target column 'species'"
    image_shape: tuple[int, int, int] | None = None  # (C, H, W): X holds images flattened to rows


# --------------------------------------------------------------------------- public API


def resolve_path(cfg: DataConfig, base_dir: Path | str) -> Path | None:
    """The absolute path of `cfg.dataset`, or None for a built-in dataset.

    A relative path is taken relative to `base_dir` (the config file's
    folder), never the working directory. The path is not checked to exist.
    """
    if cfg.dataset in BUILTIN_DATASETS:
        return None
    path = Path(cfg.dataset).expanduser()
    if not path.is_absolute():
        path = Path(base_dir).expanduser() / path
    # abspath rather than resolve(): keep the user's symlinks in messages.
    return Path(os.path.abspath(path))


def load_dataset(
    cfg: DataConfig, *, seed: int, base_dir: Path | str = ".", source: str = "config", images: bool = False
) -> Dataset:
    """Load, check, split and (optionally) standardize the configured data.

    seed: a non-negative int; it seeds the split and the generated problems,
    so equal (cfg, seed) give identical datasets.
    source: the config file's name, the prefix of every error message.
    images: for a conv net: X arrays (N, C, H, W), standardized per channel (one
    mean and std per channel over every training pixel, which keeps what a
    translation shares between positions); otherwise rows of features,
    standardized per column. Image data (digits, glyphs, an .npz of images)
    also come as rows for an MLP; tables cannot become images.
    Raises DataError for any problem with the data or the fractions.
    """
    _check_fractions(cfg, source)
    data_seed, split_seed = np.random.SeedSequence(seed).spawn(2)
    raw = _read(cfg, base_dir, source, np.random.default_rng(data_seed))
    X = _check_features(raw, source)
    y, classes = _encode_labels(raw, source)
    train, val, test = _split(y, classes, cfg, raw, source, np.random.default_rng(split_seed))

    X_train, X_val = X[train], X[val]
    X_test = X[test] if test is not None else None
    shape = raw.image_shape
    if images:
        if shape is None:
            raise _error(source, "data.dataset", f"model: cnn trains on images, and {raw.where} is a table of "
                                                 "features. Use digits, glyphs or an .npz file whose X holds images "
                                                 "(N, H, W), (N, C, H, W) or (N, H, W, C); or model: mlp.")
        X_train, X_val, X_test = (None if a is None else a.reshape(a.shape[0], *shape) for a in (X_train, X_val, X_test))
        axes: tuple[int, ...] = (0, 2, 3)  # per channel: over examples and positions
    else:
        axes = (0,)  # per column
    if cfg.standardize:
        mean = X_train.mean(axis=axes, keepdims=True)
        std = X_train.std(axis=axes, keepdims=True)
        # A column that is constant in training (up to float32 rounding) carries
        # nothing to scale up; dividing would only amplify rounding noise.
        std[std <= 1e-7 * np.maximum(np.abs(mean), 1.0)] = 1.0
        X_train = (X_train - mean) / std
        X_val = (X_val - mean) / std
        X_test = (X_test - mean) / std if X_test is not None else None

    return Dataset(
        name=raw.name,
        X_train=_f32(X_train),
        y_train=np.ascontiguousarray(y[train]),
        X_val=_f32(X_val),
        y_val=np.ascontiguousarray(y[val]),
        X_test=_f32(X_test) if X_test is not None else None,
        y_test=np.ascontiguousarray(y[test]) if test is not None else None,
        n_features=int(X.shape[1]),
        n_classes=len(classes),
        classes=classes,
        input_shape=shape,
    )


_CACHE: OrderedDict[tuple[Any, ...], Dataset] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def load_dataset_cached(
    cfg: DataConfig, *, seed: int, base_dir: Path | str = ".", source: str = "config", images: bool = False
) -> Dataset:
    """`load_dataset` with a small per-process cache.

    The key is (cfg, resolved path, file mtime and size, seed), so a file that
    changes on disk is read again. Errors are not cached. The returned arrays
    are shared between callers and must not be modified.
    """
    path = resolve_path(cfg, base_dir)
    stamp: tuple[int, int] | None = None
    if path is not None:
        try:
            st = path.stat()
        except OSError:
            # Let load_dataset produce the proper "file not found" message.
            return load_dataset(cfg, seed=seed, base_dir=base_dir, source=source, images=images)
        stamp = (st.st_mtime_ns, st.st_size)
    key = (cfg, str(path) if path is not None else None, stamp, seed, images)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    dataset = load_dataset(cfg, seed=seed, base_dir=base_dir, source=source, images=images)
    with _CACHE_LOCK:
        _CACHE[key] = dataset
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return dataset


def clear_cache() -> None:
    """Forget every dataset held by `load_dataset_cached` in this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --------------------------------------------------------------------------- reading


def _read(cfg: DataConfig, base_dir: Path | str, source: str, rng: np.random.Generator) -> _Raw:
    """Dispatch on the dataset name or file extension."""
    if cfg.dataset in BUILTIN_DATASETS:
        if cfg.target is not None:
            raise _error(
                source,
                "data.target",
                f"is only used with CSV and Parquet files, but data.dataset is the built-in "
                f"{cfg.dataset!r}; got target {cfg.target!r}. Remove data.target.",
            )
        if cfg.dataset == "digits":
            return _read_digits()
        if cfg.dataset == "glyphs":
            return _make_glyphs(cfg, source, rng)
        return _make_synthetic(cfg, source, rng)

    path = resolve_path(cfg, base_dir)
    assert path is not None
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise _error(source, "data.dataset", _unknown_dataset_message(cfg.dataset, ext))
    if not path.exists():
        hint = ""
        if not Path(cfg.dataset).expanduser().is_absolute():
            hint = " (a relative path is read relative to the config file's folder)"
        raise _error(source, "data.dataset", f"file not found: {path}{hint}.")
    if not path.is_file():
        raise _error(source, "data.dataset", f"{path} is not a regular file; give the path of a {ext} file.")
    if ext == ".npz":
        if cfg.target is not None:
            raise _error(
                source,
                "data.target",
                f"is only used with CSV and Parquet files; {path.name} is an .npz archive whose "
                f"labels are always the array 'y'; got target {cfg.target!r}. Remove data.target.",
            )
        return _read_npz(path, source)
    return _read_table(path, ext, cfg.target, source)


def _unknown_dataset_message(value: str, ext: str) -> str:
    builtins = ", ".join(BUILTIN_DATASETS)
    exts = ", ".join(SUPPORTED_EXTENSIONS)
    if ext:
        return (
            f"{value!r} has the unsupported file type {ext!r}; supported file types are "
            f"{exts}, and the built-in datasets are {builtins}."
        )
    close = difflib.get_close_matches(value.strip().lower(), BUILTIN_DATASETS, n=1, cutoff=0.6)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"{value!r} is neither a built-in dataset ({builtins}) nor a file path ending in "
        f"{exts}.{guess}"
    )


def _read_digits() -> _Raw:
    ref = resources.files("hptune.datasets").joinpath("digits.npz")
    try:
        blob = ref.read_bytes()
    except FileNotFoundError as exc:
        # A packaging bug, not bad input: the wheel must ship datasets/*.npz.
        raise RuntimeError(
            "hptune's bundled hptune/datasets/digits.npz is missing from this installation; "
            "reinstall hptune (the wheel must include package data datasets/*.npz)"
        ) from exc
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        X, y = npz["X"], npz["y"]
    return _Raw(name="digits", X=X, y=y, where="the digits dataset", columns=None, label_desc="labels",
                image_shape=(1, 8, 8))


def _make_glyphs(cfg: DataConfig, source: str, rng: np.random.Generator) -> _Raw:
    """The generated glyph images (`hptune.training.glyphs`), drawn from the data seed."""
    from .glyphs import N_CLASSES, generate

    if cfg.n_samples < 3 * N_CLASSES:
        raise _error(source, "data.samples", f"must be at least {3 * N_CLASSES} for the glyph problem (3 per class); "
                                             f"got {cfg.n_samples}.")
    X, y = generate(int(rng.integers(2**31)), cfg.n_samples, cfg.image_size)
    n, c, h, w = X.shape
    return _Raw(name="glyphs", X=X.reshape(n, c * h * w), y=y, where="the glyph problem", columns=None,
                label_desc="labels", image_shape=(c, h, w))


def _read_npz(path: Path, source: str) -> _Raw:
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # np.load raises a zoo of types for damaged files
        raise _error(
            source,
            "data.dataset",
            f"could not read {path} as a NumPy .npz archive ({type(exc).__name__}: {exc}); "
            f"save it with numpy.savez(path, X=features, y=labels).",
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise _error(
            source,
            "data.dataset",
            f"{path} holds a single array (.npy format), but an .npz archive with arrays 'X' "
            f"(features, 2-D) and 'y' (labels, 1-D) is needed; save it with "
            f"numpy.savez(path, X=features, y=labels).",
        )
    with loaded as npz:
        keys = list(npz.files)
        missing = [k for k in ("X", "y") if k not in keys]
        if missing:
            hints = []
            for k in missing:
                other = {"X": "x", "y": "Y"}[k]
                if other in keys:
                    hints.append(f"{other!r} should be named {k!r}")
            hint = f" ({'; '.join(hints)}; names are case-sensitive)" if hints else ""
            raise _error(
                source,
                "data.dataset",
                f"{path.name} must contain arrays 'X' (features, 2-D) and 'y' (labels, 1-D), "
                f"but {_and_list(repr(k) for k in missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing; it has "
                f"{_names(keys) if keys else 'no arrays'}{hint}.",
            )
        try:
            X, y = npz["X"], npz["y"]
        except ValueError as exc:  # object arrays need pickle, which we refuse
            raise _error(
                source,
                "data.dataset",
                f"could not read arrays 'X' and 'y' from {path.name} ({exc}); store numbers "
                f"(and, for labels, numbers or fixed-width strings), not Python objects.",
            ) from exc
    image_shape = None
    if X.ndim in (3, 4):
        image_shape = _image_layout(X.shape, path.name, source)
        if X.ndim == 4 and X.shape[-1] == image_shape[0] and X.shape[1] != image_shape[0]:
            X = np.moveaxis(X, -1, 1)  # (N, H, W, C) -> (N, C, H, W)
        X = X.reshape(X.shape[0], -1)
    elif X.ndim != 2:
        fix = " (for a single feature use X.reshape(-1, 1))" if X.ndim == 1 else ""
        raise _error(
            source,
            "data.dataset",
            f"array 'X' in {path.name} must be 2-D (samples, features), or images (N, H, W), (N, C, H, W) or "
            f"(N, H, W, C), but has shape {X.shape}{fix}.",
        )
    if y.ndim != 1:
        raise _error(
            source,
            "data.dataset",
            f"array 'y' in {path.name} must be 1-D (one label per sample), but has shape "
            f"{y.shape}; save y.ravel() if it is a column vector.",
        )
    if X.shape[0] != y.shape[0]:
        raise _error(
            source,
            "data.dataset",
            f"arrays 'X' and 'y' in {path.name} must have the same number of samples, but X has "
            f"{X.shape[0]} rows and y has {y.shape[0]}.",
        )
    if X.dtype.kind not in "biuf":
        raise _error(
            source,
            "data.dataset",
            f"array 'X' in {path.name} must be numeric, but has dtype {X.dtype}; encode the "
            f"features as numbers.",
        )
    return _Raw(name=path.name, X=X, y=y, where=path.name, columns=None, label_desc="array 'y'",
                image_shape=image_shape)


def _image_layout(shape: tuple[int, ...], name: str, source: str) -> tuple[int, int, int]:
    """(C, H, W) of an image array: (N, H, W) is one channel; a 4-D array has its channels (1 to 4) first,
    (N, C, H, W), or last, (N, H, W, C). When both ends or neither could be channels, it is refused."""
    if len(shape) == 3:
        return (1, int(shape[1]), int(shape[2]))
    first, last = shape[1] in IMAGE_CHANNELS, shape[3] in IMAGE_CHANNELS
    if first and not last:
        return (int(shape[1]), int(shape[2]), int(shape[3]))
    if last and not first:
        return (int(shape[3]), int(shape[1]), int(shape[2]))
    raise _error(source, "data.dataset", f"array 'X' in {name} has shape {shape}, and hptune cannot tell its channels "
                                         f"from its sides ({'both ends' if first else 'neither end'} could hold 1 to 4 "
                                         "channels). Save it as (N, C, H, W): numpy.savez(path, X=X, y=y) with "
                                         "X.transpose(0, 3, 1, 2) for (N, H, W, C).")


def _read_table(path: Path, ext: str, target: str | None, source: str) -> _Raw:
    """Read a CSV or Parquet file and split off the target column."""
    import pandas as pd

    kind = "CSV" if ext == ".csv" else "Parquet"
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401  (pandas' default Parquet engine)
        except ImportError:
            raise _error(
                source,
                "data.dataset",
                f"reading Parquet files ({path.name}) needs the pyarrow package, which is not "
                f"installed; run `pip install pyarrow` (or `pip install hptune[parquet]`), or "
                f"convert the file to .csv or .npz.",
            ) from None
    try:
        if ext == ".csv":
            df = pd.read_csv(path)
        else:
            df = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise _error(source, "data.dataset", f"{path} is empty; a CSV file needs a header row and data rows.") from None
    except Exception as exc:  # parser errors, bad encodings, damaged Parquet files
        raise _error(
            source,
            "data.dataset",
            f"could not read {path} as a {kind} file ({type(exc).__name__}: {exc}).",
        ) from exc

    # Parquet column labels need not be strings; the config names them as text.
    by_name = {str(c): c for c in df.columns}
    names = list(by_name)
    if target is None:
        likely = [n for n in names if n.lower() in _LIKELY_TARGETS]
        guess = f" (perhaps {likely[0]!r}?)" if likely else ""
        raise _error(
            source,
            "data.target",
            f"is required for {kind} files: set it to the name of the label column{guess}; "
            f"{path.name} has columns {_names(names)}.",
        )
    if target not in by_name:
        close = [n for n in names if n.lower() == target.lower()]
        close += [n for n in difflib.get_close_matches(target, names, n=3, cutoff=0.6) if n not in close]
        guess = f" Did you mean {_or_list(repr(n) for n in close)}?" if close else ""
        raise _error(
            source,
            "data.target",
            f"column {target!r} is not in {path.name}.{guess} Its columns are {_names(names)}.",
        )
    if len(df) == 0:
        raise _error(source, "data.dataset", f"{path} has a header but no data rows.")
    features = [n for n in names if n != target]
    if not features:
        raise _error(
            source,
            "data.dataset",
            f"{path.name} has no feature columns: its only column is the target {target!r}.",
        )

    bad = []
    for name in features:
        col = df[by_name[name]]
        if pd.api.types.is_numeric_dtype(col):
            continue
        numeric = pd.to_numeric(col, errors="coerce")
        offending = np.flatnonzero((numeric.isna() & col.notna()).to_numpy())
        if len(offending):
            row = int(offending[0])
            bad.append(f"{name!r} (e.g. {col.iloc[row]!r} in data row {row + 1})")
        else:
            bad.append(f"{name!r} (dtype {col.dtype})")
    if bad:
        raise _error(
            source,
            "data.dataset",
            f"feature columns must be numeric, but {len(bad)} column{'s' if len(bad) > 1 else ''} "
            f"of {path.name} {'are' if len(bad) > 1 else 'is'} not: {_names(bad, quote=False)}. "
            f"Encode {'them' if len(bad) > 1 else 'it'} as numbers (e.g. one-hot) or remove "
            f"{'them' if len(bad) > 1 else 'it'} from the file; every column "
            f"except the target {target!r} is used as a feature.",
        )

    X = df[[by_name[n] for n in features]].to_numpy(dtype=np.float64, na_value=np.nan)
    labels = df[by_name[target]]
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_extension_array_dtype(labels):
        y = labels.to_numpy()
    else:
        # Object array with None for every kind of missing (NaN, pd.NA, None).
        y = labels.astype(object).where(labels.notna(), None).to_numpy()
    return _Raw(
        name=path.name, X=X, y=y, where=path.name, columns=features, label_desc=f"target column {target!r}"
    )


# --------------------------------------------------------------------------- synthetic


def _make_synthetic(cfg: DataConfig, source: str, rng: np.random.Generator) -> _Raw:
    """A `make_classification`-style problem, in numpy only.

    Each class is a mixture of Gaussian clusters centred on distinct vertices of
    a hypercube of half-side `class_sep` in the informative subspace, each with
    its own random covariance. The other features are random linear
    combinations of the informative ones plus noise; columns and rows are
    shuffled and 1% of labels are resampled at random. Up to three clusters
    per class, fewer when the hypercube has too few vertices; cluster j belongs
    to class j % classes, so small samples still cover the classes evenly.
    """
    _check_synthetic(cfg, source)
    n, d, c, k_inf = cfg.n_samples, cfg.features, cfg.classes, cfg.informative
    per_class = next(k for k in range(_CLUSTERS_PER_CLASS, 0, -1) if 2**k_inf >= k * c)
    n_clusters = c * per_class

    if k_inf <= 30:
        codes = rng.choice(2**k_inf, size=n_clusters, replace=False)
        bits = (codes[:, None] >> np.arange(k_inf)) & 1
    else:
        # Too many vertices to enumerate; random ones collide with negligible odds,
        # but redraw until distinct so two classes can never share a centre.
        while True:
            bits = rng.integers(0, 2, size=(n_clusters, k_inf))
            if len(np.unique(bits, axis=0)) == n_clusters:
                break
    centroids = (2.0 * bits - 1.0) * cfg.class_sep

    sizes = np.full(n_clusters, n // n_clusters)
    sizes[: n % n_clusters] += 1
    X_inf = rng.standard_normal((n, k_inf))
    y = np.empty(n, dtype=np.int64)
    start = 0
    for j in range(n_clusters):
        stop = start + sizes[j]
        mix = rng.uniform(-1.0, 1.0, size=(k_inf, k_inf))
        X_inf[start:stop] = X_inf[start:stop] @ mix + centroids[j]
        y[start:stop] = j % c
        start = stop

    n_rest = d - k_inf
    if n_rest:
        combos = rng.uniform(-1.0, 1.0, size=(k_inf, n_rest))
        rest = X_inf @ combos
        # Noise at the scale of each derived column, so they are related to but
        # not exact copies of the informative ones.
        rest += _SYNTHETIC_NOISE * rest.std(axis=0) * rng.standard_normal((n, n_rest))
        X = np.hstack([X_inf, rest])
    else:
        X = X_inf

    flip = rng.random(n) < _SYNTHETIC_FLIP
    y[flip] = rng.integers(0, c, size=int(flip.sum()))
    X = X[:, rng.permutation(d)]
    order = rng.permutation(n)
    return _Raw(
        name="synthetic",
        X=np.ascontiguousarray(X[order]),
        y=y[order],
        where="the synthetic dataset",
        columns=None,
        label_desc="labels",
    )


def _check_synthetic(cfg: DataConfig, source: str) -> None:
    rules: list[tuple[str, bool, str]] = [
        ("samples", cfg.n_samples >= cfg.classes, f"an integer >= classes ({cfg.classes})"),
        ("features", cfg.features >= 1, "an integer >= 1"),
        ("classes", cfg.classes >= 2, "an integer >= 2"),
        ("informative", 1 <= cfg.informative <= cfg.features, f"an integer from 1 to features ({cfg.features})"),
        ("class_sep", math.isfinite(cfg.class_sep) and cfg.class_sep > 0, "a number > 0 (larger is easier)"),
    ]
    for key, ok, rule in rules:
        if not ok:
            raise _error(source, f"data.{key}", f"must be {rule} for the synthetic dataset; got {getattr(cfg, key)!r}.")
    if 2**cfg.informative < cfg.classes:
        need = math.ceil(math.log2(cfg.classes))
        raise _error(
            source,
            "data.informative",
            f"{cfg.informative} informative features give only {2**cfg.informative} distinct "
            f"class centres, fewer than classes={cfg.classes}; set informative to at least {need}.",
        )


# --------------------------------------------------------------------------- checks and split


def _check_fractions(cfg: DataConfig, source: str) -> None:
    vf, tf = cfg.val_fraction, cfg.test_fraction
    if not 0 < vf < 1:
        raise _error(source, "data.val_fraction", f"must be a number with 0 < val_fraction < 1; got {vf!r}.")
    if not 0 <= tf < 1:
        raise _error(source, "data.test_fraction", f"must be a number with 0 <= test_fraction < 1; got {tf!r}.")
    if not vf + tf < 1:
        raise _error(
            source,
            "data.test_fraction",
            f"val_fraction + test_fraction must be < 1 so that data is left for training; got "
            f"{vf!r} + {tf!r} = {vf + tf:g}.",
        )


def _check_features(raw: _Raw, source: str) -> np.ndarray:
    """The features as float64, after rejecting empty data and NaN/inf."""
    X = np.asarray(raw.X, dtype=np.float64)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise _error(
            source,
            "data.dataset",
            f"{raw.where} has {X.shape[0]} samples and {X.shape[1]} features; both must be at least 1.",
        )
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        per_col = bad.sum(axis=0)
        cols = np.flatnonzero(per_col)
        if raw.columns is not None:
            where = [f"{raw.columns[j]!r} ({per_col[j]})" for j in cols]
            what = "column" if len(cols) == 1 else "columns"
        else:
            where = [f"{j} ({per_col[j]})" for j in cols]
            what = ("column" if len(cols) == 1 else "columns") + " (0-based index)"
        raise _error(
            source,
            "data.dataset",
            f"{len(rows)} of {X.shape[0]} samples in {raw.where} have missing (NaN) or infinite "
            f"feature values, in {len(cols)} {what} (bad values per column): "
            f"{_names(where, quote=False)}; first affected data rows (1-based): "
            f"{', '.join(str(r + 1) for r in rows[:5])}. Remove or fill in those values.",
        )
    return X


def _encode_labels(raw: _Raw, source: str) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Map labels to int64 indices 0..C-1; return them with the original values."""
    y = raw.y
    if y.dtype.kind in "fc":
        missing = ~np.isfinite(y)
    elif y.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and not math.isfinite(v)) for v in y], dtype=bool)
    else:
        missing = np.zeros(len(y), dtype=bool)
    if missing.any():
        rows = np.flatnonzero(missing)
        raise _error(
            source,
            "data.dataset",
            f"{len(rows)} of {len(y)} samples in {raw.where} have a missing (NaN, empty) or "
            f"infinite {raw.label_desc}; first affected data rows (1-based): "
            f"{', '.join(str(r + 1) for r in rows[:5])}. Every sample needs a class label.",
        )
    if y.dtype.kind == "c":
        raise _error(source, "data.dataset", f"the {raw.label_desc} in {raw.where} is complex-valued; labels must be integers or strings.")
    if y.dtype.kind == "f":
        fractional = np.flatnonzero(y != np.round(y))
        if len(fractional):
            raise _error(
                source,
                "data.dataset",
                f"the {raw.label_desc} in {raw.where} must hold class labels (integers or "
                f"strings), but {len(fractional)} values are fractional, e.g. {y[fractional[0]].item()!r} "
                f"in data row {fractional[0] + 1}; hptune tunes classifiers, not regressors.",
            )
        y = y.astype(np.int64)
    if y.dtype.kind == "O" and len({type(v) for v in y}) > 1:
        # Mixed types cannot be sorted; their text is a stable, readable stand-in.
        y = np.array([str(v) for v in y], dtype=object)
    values, index = np.unique(y, return_inverse=True)
    classes = tuple(values.tolist())
    if len(classes) < 2:
        raise _error(
            source,
            "data.dataset",
            f"the {raw.label_desc} in {raw.where} has only one class ({classes[0]!r}); "
            f"classification needs at least 2.",
        )
    return index.astype(np.int64).reshape(-1), classes


def _split(
    y: np.ndarray,
    classes: tuple[Any, ...],
    cfg: DataConfig,
    raw: _Raw,
    source: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Stratified train/val(/test) index arrays; every split gets every class."""
    has_test = cfg.test_fraction > 0
    need = 3 if has_test else 2
    counts = np.bincount(y, minlength=len(classes))
    small = np.flatnonzero(counts < need)
    if len(small):
        worst = small[np.argmin(counts[small])]
        parts = "1 for training, 1 for validation" + (" and 1 for test" if has_test else "")
        others = f" ({len(small)} of the {len(classes)} classes are this small)" if len(small) > 1 else ""
        if raw.name == "synthetic":
            hint = "increase data.samples"
        elif has_test:
            hint = "add samples of that class, remove it from the data, or set data.test_fraction to 0"
        else:
            hint = "add samples of that class or remove it from the data"
        if raw.columns is not None and len(y) >= 10 and len(classes) > len(y) / 2:
            # Mostly-unique values: likely an id or a measurement, not a label.
            hint += (
                f"; {len(classes)} distinct values in {len(y)} samples suggests that the "
                f"{raw.label_desc} is not a class label"
            )
        raise _error(
            source,
            "data.dataset",
            f"class {classes[worst]!r} of the {raw.label_desc} in {raw.where} has only "
            f"{counts[worst]} sample{'s' if counts[worst] != 1 else ''}{others}, but a stratified split with "
            f"val_fraction={cfg.val_fraction:g} and test_fraction={cfg.test_fraction:g} needs at "
            f"least {need} per class ({parts}); {hint}.",
        )

    train, val, test = [], [], []
    for c, n in enumerate(counts):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = max(1, math.floor(n * cfg.val_fraction + 0.5))
        n_test = max(1, math.floor(n * cfg.test_fraction + 0.5)) if has_test else 0
        # Rounding up small classes can eat the training share; give it back,
        # taking from the larger held-out split first.
        while n_val + n_test > n - 1:
            if n_test > n_val or (n_test == n_val and n_test > 1):
                n_test -= 1
            else:
                n_val -= 1
        val.append(idx[:n_val])
        test.append(idx[n_val : n_val + n_test])
        train.append(idx[n_val + n_test :])
    # Shuffle across classes so that no split is ordered by label.
    parts_out = [rng.permutation(np.concatenate(p)) for p in (train, val, test)]
    return parts_out[0], parts_out[1], parts_out[2] if has_test else None


# --------------------------------------------------------------------------- messages


def _error(source: str, key: str, message: str) -> DataError:
    return DataError(f"{source}: {key}: {message}")


def _names(items: Sequence[str], *, quote: bool = True) -> str:
    """A comma-separated list, cut after `_MAX_LISTED` items."""
    shown = [repr(s) if quote else s for s in items[:_MAX_LISTED]]
    more = f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED else ""
    return ", ".join(shown) + more


def _and_list(items: Any) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _or_list(items: Any) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _f32(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float32)
