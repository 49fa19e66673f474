"""A grid: every combination of the listed values, in order (the first parameter varies slowest).

Random search tries more values of the parameters that matter (with a 5 x 5 grid over
two parameters only 5 values of the one that matters are tried; 25 random trials try
25), so hptune's own configs search at random; a grid is here for the sweep files that
ask for one. Its trials are planned like any round's: recorded in the log before they
run, so a resume runs exactly the owed grid points.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..records import TrialSpec
from ..sampling import training_seed
from ..space import Choice, Fixed, Space


def grid_size(space: Space) -> int:
    n = 1
    for p in space.params:
        if isinstance(p, Choice):
            n *= len(p.values)
    return n


def grid_specs(space: Space, seed: int, first: int, trials: int, round_no: int) -> list[TrialSpec]:
    """The first `trials` points of the grid, numbered from `first`."""
    names = [p.name for p in space.params]
    axes = [p.values if isinstance(p, Choice) else (p.value,) for p in space.params
            if isinstance(p, (Choice, Fixed))]
    out = []
    for i, combo in enumerate(itertools.islice(itertools.product(*axes), trials)):
        t = first + i
        params: dict[str, Any] = dict(zip(names, combo))
        out.append(TrialSpec(trial=t, round=round_no, params=params, seed=training_seed(seed, t)))
    return out
