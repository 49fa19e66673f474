"""What data the built-in trainer trains on: a frozen description, pure data (no numpy), so that
configs can hold it cheaply. Loading it is `hptune.training.data`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

BUILTIN_DATASETS = ("digits", "synthetic", "glyphs")
SAMPLES = {"synthetic": 20000, "glyphs": 6000}  # generated problems: samples when none are given


@dataclass(frozen=True)
class DataConfig:
    """What to load and how to split it.

    dataset: "digits", "synthetic", or a path ending in .csv, .npz or .parquet
    (a relative path is relative to the config file's folder).
    val_fraction: 0 < val_fraction < 1; test_fraction: 0 <= test_fraction < 1,
    and val_fraction + test_fraction < 1.
    target: the label column, required for CSV/Parquet, unused otherwise.
    samples/features/classes/informative/class_sep: the synthetic problem,
    with samples >= classes, features >= 1, classes >= 2,
    1 <= informative <= features and class_sep > 0 (samples also sets the size
    of the glyph problem; None: 20,000 for synthetic, 6,000 for glyphs).
    image_size: the side of the glyph images in pixels (>= 8).
    """

    dataset: str = "digits"
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    target: str | None = None
    standardize: bool = True
    samples: int | None = None
    features: int = 100
    classes: int = 10
    informative: int = 40
    class_sep: float = 1.0
    image_size: int = 16

    @property
    def n_samples(self) -> int:
        """The samples of a generated problem (its default when none were given)."""
        return self.samples if self.samples is not None else SAMPLES.get(self.dataset, SAMPLES["synthetic"])

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for YAML snapshots)."""
        return asdict(self)
