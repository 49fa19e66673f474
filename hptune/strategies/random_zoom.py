"""Random search, coarse to fine: round 1 samples the config's space; each later round samples
that space zoomed on the best finished trials of the round before (`hptune.refine.zoom`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config.schema import Config
from ..errors import RunError, UserError
from ..records import TrialSpec
from ..refine import Zoom, zoom
from ..runstate import Round, RunState
from ..sampling import draw
from ..space import Space, space_from_yaml
from .halving import halving_meta


@dataclass(frozen=True)
class RoundPlan:
    """A round about to start: its number, space, planned trials and how it was made."""

    number: int
    space: Space
    specs: list[TrialSpec]
    seed: int
    zoom: Zoom | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def event(self, planned: int, time: str) -> dict[str, Any]:
        """The round's line in the log: announced with every trial it plans, before any runs."""
        first = self.specs[0].trial if self.specs else 0
        return {"event": "round", "round": self.number, "first_trial": first, "trials": len(self.specs),
                "seed": self.seed, "planned": planned, "space": self.space.to_yaml(),
                "parent": None if self.zoom is None else self.number - 1,
                "top": None if self.zoom is None else self.zoom.top,
                "margin": None if self.zoom is None else self.zoom.margin,
                **self.meta, "time": time, "specs": [s.to_json() for s in self.specs]}


def plan_specs(space: Space, config: Config, first: int, n: int, round_no: int) -> list[TrialSpec]:
    """Trials first..first+n-1 of a round over `space`: the grid's next points, or random draws."""
    if config.search.method == "grid":
        from .grid import grid_specs

        return grid_specs(space, config.seed, first, n, round_no)
    return draw(space, config.seed, range(first, first + n), round_no)


def next_round(state: RunState, config: Config) -> RoundPlan:
    """The next round: the config's space for the first, else a zoom on the latest round's best
    (`search.top` and `search.margin`; refine puts its --top and --margin there)."""
    last = state.last_round
    first = state.next_trial
    if last is None:
        number, space, z = 1, config.space, None
    else:
        z = zoom_round(state, last, config, top=config.search.top, margin=config.search.margin)
        number, space = last.number + 1, z.space
    specs = plan_specs(space, config, first, config.search.trials, number)
    meta = halving_meta(specs, config) if config.search.halving is not None else {}
    return RoundPlan(number=number, space=space, specs=specs, seed=config.seed, zoom=z, meta=meta)


def zoom_round(state: RunState, rnd: Round, config: Config, *, top: int | None, margin: float) -> Zoom:
    """The zoom on one round's best finished trials, with edge notes against the run's first space."""
    try:
        space = space_from_yaml(rnd.space)
        original = space_from_yaml(state.rounds[0].space)
    except ValueError as err:
        raise RunError(f"round {rnd.number}: its space in the log cannot be read ({err}).") from None
    try:
        return zoom(space, state.round_results(rnd.number), metric=config.objective.metric,
                    goal=config.objective.goal, top=top, margin=margin, original=original)
    except UserError as err:
        raise RunError(f"round {rnd.number}: {err}") from None
