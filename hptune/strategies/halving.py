"""Successive halving inside a round, by promotion (and Hyperband's brackets).

All of a bracket's trials train to its first rung; the best 1/factor of them continue
to the next rung from where they stopped (their state travels as a checkpoint), and so
on up to the full budget. The others are recorded `pruned`, with the rung they reached
and their partial curve. Decisions depend only on the round's results at that rung,
never on timing or --jobs, and each one is written to the log before anything acts on
it, so a resumed round continues the very same schedule.

Rungs for a budget B, a first rung m and a factor η: m, m·η, m·η², ... as long as the
next one still fits (r·η <= B), then B itself. With m = 1, η = 3: B = 10 gives 1, 3, 10;
B = 27 gives 1, 3, 9, 27.

Hyperband (brackets > 1): the round's trials are dealt to brackets in trial order,
bracket b starting at the rung m·η^b with fewer, longer trials, so that each bracket
spends about the same budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config.schema import HalvingConfig
from ..records import Status, TrialResult, TrialSpec, ranked


def rungs(budget: int, first: int, factor: int) -> list[int]:
    """The epochs at which trials are compared, ending at the full budget."""
    first = max(1, min(first, budget))
    out = [first]
    while out[-1] * factor * factor <= budget:  # the next rung, and room for a factor more after it
        out.append(out[-1] * factor)
    if out[-1] != budget:
        out.append(budget)
    return out


def keep_count(n: int, factor: int) -> int:
    """How many of n trials at a rung go on: n / factor, rounded up, at least 1."""
    return max(1, math.ceil(n / factor)) if n else 0


@dataclass(frozen=True)
class Bracket:
    """A group of a round's trials halved together: their rungs, in epochs."""

    index: int
    trials: tuple[int, ...]
    rungs: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"bracket": self.index, "trials": list(self.trials), "rungs": list(self.rungs)}


def plan_brackets(specs: list[TrialSpec], config: HalvingConfig, budget: int) -> list[Bracket]:
    """Deal the round's trials to brackets (trial order; the budgets of the brackets about equal)."""
    numbers = [s.trial for s in specs]
    full = rungs(budget, config.min_epochs, config.factor)
    count = max(1, min(config.brackets, len(full), len(numbers)))  # the last bracket trains every trial to the end
    if count == 1:
        return [Bracket(0, tuple(numbers), tuple(full))]
    # bracket b skips the first b rungs; it gets fewer trials, as Hyperband's n_b ∝ η^(s-b) / (s-b+1)
    weights = [config.factor ** (count - 1 - b) / (count - b) for b in range(count)]
    total = sum(weights)
    sizes = [max(1, round(len(numbers) * w / total)) for w in weights]
    sizes[0] += len(numbers) - sum(sizes)
    out, start = [], 0
    for b, size in enumerate(sizes):
        out.append(Bracket(b, tuple(numbers[start:start + size]), tuple(full[b:])))
        start += size
    return [b for b in out if b.trials]


def promote(results: list[TrialResult], keep: int, metric: str, goal: str) -> tuple[list[int], list[int]]:
    """(promoted, pruned) trial numbers, from the rung's results: the best `keep` finished ones go on.

    Only results with status ok can be promoted; the rest were already final (failed, diverged).
    """
    ok = [r for r in results if r.status == Status.OK]
    order = ranked(ok, metric, goal)
    promoted = sorted(r.trial for r in order[:keep])
    pruned = sorted(r.trial for r in order[keep:])
    return promoted, pruned


def expected_finishers(trials: int, config: HalvingConfig, budget: int) -> int:
    """How many trials of a round reach the full budget (for checking that a zoom has enough)."""
    n = trials
    for _ in rungs(budget, config.min_epochs, config.factor)[:-1]:
        n = keep_count(n, config.factor)
    return n


def round_budget(config: Any) -> int:
    """The full budget (epochs) of the trials of a config whose search.halving is set (config is valid)."""
    from ..space import Fixed

    h = config.search.halving
    epochs = config.space["epochs"] if "epochs" in config.space else None
    if config.builtin:
        from ..training.params import FAMILIES

        return int(epochs.value) if isinstance(epochs, Fixed) else int(FAMILIES[config.model]["epochs"].default)
    if h.max_epochs is not None:
        return h.max_epochs
    assert isinstance(epochs, Fixed)
    return int(epochs.value)


def halving_meta(specs: list[TrialSpec], config: Any) -> dict[str, Any]:
    """What a halving round records in its event: the factor and each bracket's trials and rungs."""
    h = config.search.halving
    brackets = plan_brackets(specs, h, round_budget(config))
    return {"halving": {"factor": h.factor, "brackets": [b.to_json() for b in brackets]}}


def brackets_of(meta: dict[str, Any]) -> list[Bracket] | None:
    """A round's brackets from its event (None: the round does not halve)."""
    raw = meta.get("halving")
    if not isinstance(raw, dict):
        return None
    return [Bracket(int(b["bracket"]), tuple(int(t) for t in b["trials"]), tuple(int(r) for r in b["rungs"]))
            for b in raw.get("brackets", [])]


@dataclass(frozen=True)
class Step:
    """What a bracket needs next: train `trials` to `epochs` (continuing from `from_epochs`), or decide
    which of them go on (decide=True: every result of the rung is in)."""

    bracket: int
    rung: int
    epochs: int
    final: bool
    trials: tuple[int, ...]
    from_epochs: int | None
    decide: bool
    keep: int = 0


def next_steps(state: Any, rnd: Any) -> list[Step]:
    """For each bracket of a halving round, its next step; no step for a bracket that is done.

    state: a RunState; rnd: one of its rounds. A trial counts as done at a rung when it has
    a result there (a rung event) or a final result (failed, diverged: it stops early).
    """
    brackets = brackets_of(rnd.meta) or []
    factor = int(rnd.meta["halving"]["factor"])
    out = []
    for b in brackets:
        alive = list(b.trials)
        for i, epochs in enumerate(b.rungs):
            final = i == len(b.rungs) - 1
            here = state.rung_results.get((rnd.number, b.index, i), {})
            owed = tuple(t for t in alive if t not in here and t not in state.results)
            from_epochs = b.rungs[i - 1] if i > 0 else None
            if owed:
                out.append(Step(b.index, i, epochs, final, owed, from_epochs, decide=False))
                break
            if final:
                break
            decision = state.decisions.get((rnd.number, b.index, i))
            if decision is None:
                out.append(Step(b.index, i, epochs, final, tuple(alive), from_epochs, decide=True,
                                keep=keep_count(len(alive), factor)))
                break
            alive = decision[0]
    return out
