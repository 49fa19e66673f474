"""Random trials from a space and a seed; pure numpy.

A trial's values depend only on (seed, trial number, space): each trial draws
from its own stream `SeedSequence(seed, spawn_key=(trial,))`, so results never
depend on the number of workers, on which trials ran before, or on resuming.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .records import TrialSpec
from .space import Choice, Fixed, Range, Space


def trial_streams(seed: int, trial: int) -> tuple[np.ndarray, int]:
    """(unit draws source, training seed) for one trial.

    Returns a generator-independent pair: 64 uniform draws are far more than
    any space needs; the training seed is a 31-bit integer for torch.
    """
    ss = np.random.SeedSequence(seed, spawn_key=(trial,))
    draw_ss, train_ss = ss.spawn(2)
    return draw_ss, int(train_ss.generate_state(1, dtype=np.uint32)[0] >> 1)


def unit_draws(seed: int, trials: Iterable[int], n: int) -> np.ndarray:
    """A (len(trials), n) array of U[0, 1) draws, row i from trial i's own stream."""
    trials = list(trials)
    out = np.empty((len(trials), n))
    for i, t in enumerate(trials):
        draw_ss, _ = trial_streams(seed, t)
        out[i] = np.random.Generator(np.random.PCG64(draw_ss)).random(n)
    return out


def training_seed(seed: int, trial: int) -> int:
    """The seed given to the objective for one trial (recorded in the trial log)."""
    return trial_streams(seed, trial)[1]


def sample_trials(space: Space, seed: int, trials: Iterable[int]) -> list[dict[str, Any]]:
    """Parameter dicts for the given trial numbers, in the order given.

    Values are plain Python types (int for integer ranges, float otherwise,
    the listed object for choices).
    """
    trials = list(trials)
    randoms = space.random_params
    u = unit_draws(seed, trials, len(randoms))
    columns: dict[str, list[Any]] = {}
    for j, p in enumerate(randoms):
        if isinstance(p, Range):
            columns[p.name] = [p.cast(x) for x in p.from_unit(u[:, j])]
        else:
            assert isinstance(p, Choice)
            columns[p.name] = [p.values[k] for k in p.from_unit(u[:, j])]
    rows: list[dict[str, Any]] = []
    for i in range(len(trials)):
        row: dict[str, Any] = {}
        for p in space.params:
            row[p.name] = p.value if isinstance(p, Fixed) else columns[p.name][i]
        rows.append(row)
    return rows


def draw(space: Space, seed: int, numbers: range, round_no: int) -> list[TrialSpec]:
    """Random trials: parameters and training seed from (seed, trial number, space) only."""
    return [TrialSpec(trial=t, round=round_no, params=params, seed=training_seed(seed, t))
            for t, params in zip(numbers, sample_trials(space, seed, numbers))]
