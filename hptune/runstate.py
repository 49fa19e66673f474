"""RunState = fold(events): the one reader of a run's log, for search, resume, refine and report.

A command folds the log once (`RunState.from_store`) and then keeps the state up to
date in memory as it appends events (`apply`), so nothing re-reads the log in a loop.

What the fold knows: the rounds in order (each with the trials it planned), the
latest result of every trial, which planned trials are still owed, the next free
trial number, and the wall time of the commands that ran trials.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunError
from .records import LogFormatError, TrialResult, TrialSpec, _is_int, short_repr
from .store import LOG_NAME, LogLine, RunStore


@dataclass
class Round:
    """One round as its event announced it.

    specs: the planned trials in trial order (format 1 logs did not list them: they
    are drawn again from the round's seed and space, exactly as they were then).
    """

    number: int
    first_trial: int
    trials: int
    seed: int
    planned: int
    space: dict[str, Any]
    specs: list[TrialSpec]
    parent: int | None = None
    top: int | None = None
    margin: float | None = None
    time: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # anything else the event holds (a strategy's settings)


@dataclass
class RunState:
    """Everything a command needs to know about a run, folded from its log.

    rung_results: (round, bracket, rung index) -> {trial: its result at that rung};
    decisions: (round, bracket, rung index) -> (promoted, pruned) trial numbers.
    """

    rounds: list[Round] = field(default_factory=list)
    results: dict[int, TrialResult] = field(default_factory=dict)
    rung_results: dict[tuple[int, int, int], dict[int, TrialResult]] = field(default_factory=dict)
    decisions: dict[tuple[int, int, int], tuple[list[int], list[int]]] = field(default_factory=dict)
    log_bytes: int = 0  # how much of the log this state holds (derived files are stamped with it)
    _wall_closed: float = 0.0
    _segment: tuple[float, float | None] | None = None

    # -- folding -----------------------------------------------------------------
    @classmethod
    def fold(cls, lines: list[LogLine], *, where: str = LOG_NAME) -> "RunState":
        """Fold parsed log lines; raises RunError naming the line of any event of the wrong shape."""
        state = cls()
        for line in lines:
            try:
                state.apply(line.value)
            except LogFormatError as err:
                run_dir = Path(where).parent
                raise RunError(f"{where}: line {line.number}: {err}; the log was edited or damaged. "
                               f"`hptune repair {run_dir}` moves damaged lines aside (into {LOG_NAME}.damaged) "
                               "and keeps every intact trial.") from None
        return state

    @classmethod
    def from_store(cls, store: RunStore) -> "RunState":
        """Fold a run's log. Raises RunError when the log is missing from a run that had one."""
        lines = store.read_log()
        if not store.log_path.exists():
            made = [n for n in ("rounds", "results.csv", "report.html") if (store.path / n).exists()]
            if made:
                raise RunError(f"{store.log_path}: the trial log is missing, but the run has {', '.join(made)}: it "
                               "was deleted or moved. The log is the run's record of its trials; restore it "
                               "(the other files are derived from it and cannot replace it).")
        state = cls.fold(lines, where=str(store.log_path))
        state.log_bytes = store.bytes_read
        return state

    def apply(self, event: Any) -> None:
        """Take one event into the state (as read from the log, or as just appended)."""
        if not isinstance(event, dict):
            raise LogFormatError(f"an event must be a JSON object; got {short_repr(event)}")
        kind = event.get("event")
        if kind == "trial":
            result = TrialResult.from_event(event)
            self.results[result.trial] = result
            self._tick(event.get("time"), start=False)
        elif kind == "round":
            self.rounds.append(_read_round(event))
            self._tick(event.get("time"), start=True)
        elif kind == "resume":
            self._tick(event.get("time"), start=True)
        elif kind == "rung":
            result = TrialResult.from_event(event)
            key = (result.round, _int_field(event, "bracket", 0), _int_field(event, "rung"))
            self.rung_results.setdefault(key, {})[result.trial] = result
            self._tick(event.get("time"), start=False)
        elif kind == "promotion":
            key = (_int_field(event, "round"), _int_field(event, "bracket", 0), _int_field(event, "rung"))
            promoted, pruned = event.get("promoted"), event.get("pruned")
            if not (isinstance(promoted, list) and isinstance(pruned, list)
                    and all(_is_int(t) for t in promoted + pruned)):
                raise LogFormatError(f"a promotion event needs lists of trial numbers; got {short_repr(event)}")
            self.decisions[key] = (list(promoted), list(pruned))
        elif not isinstance(kind, str):
            raise LogFormatError(f"an event needs an \"event\" name; got {short_repr(event)}")
        # other events (notes) carry nothing the state needs

    # -- questions ---------------------------------------------------------------
    @property
    def last_round(self) -> Round | None:
        return self.rounds[-1] if self.rounds else None

    def owed(self, rnd: Round | None = None) -> list[TrialSpec]:
        """The planned trials of a round (default: the last) with no result yet, in trial order."""
        rnd = self.last_round if rnd is None else rnd
        if rnd is None:
            return []
        return [s for s in rnd.specs if s.trial not in self.results]

    def round_results(self, number: int) -> list[TrialResult]:
        return [r for t, r in sorted(self.results.items()) if r.round == number]

    def all_results(self) -> list[TrialResult]:
        """Every trial's latest result, in trial order."""
        return [self.results[t] for t in sorted(self.results)]

    @property
    def next_trial(self) -> int:
        """The first trial number no round has used."""
        ends = [r.first_trial + r.trials for r in self.rounds]
        ends += [s.trial + 1 for r in self.rounds for s in r.specs[-1:]]
        return max(ends, default=0)

    @property
    def wall_s(self) -> float:
        """Time the run's commands spent on trials: from each round start or resume to the last
        trial before the next one, summed (the gaps between commands are not counted)."""
        total = self._wall_closed
        if self._segment is not None and self._segment[1] is not None:
            total += max(0.0, self._segment[1] - self._segment[0])
        return float(total)

    def _tick(self, text: Any, *, start: bool) -> None:
        t = _timestamp(text)
        if t is None:
            return
        if start:
            if self._segment is not None and self._segment[1] is not None:
                self._wall_closed += max(0.0, self._segment[1] - self._segment[0])
            self._segment = (t, None)
        elif self._segment is not None:
            self._segment = (self._segment[0], t)


def _int_field(event: dict[str, Any], key: str, default: int | None = None) -> int:
    value = event.get(key, default)
    if not _is_int(value) or value < 0:
        raise LogFormatError(f"a {event.get('event')} event needs an integer {key} >= 0; got {short_repr(value)}")
    return value


def _read_round(event: dict[str, Any]) -> Round:
    number = event.get("round")
    if not _is_int(number) or number < 1:
        raise LogFormatError(f"a round event needs a round number >= 1; got {short_repr(number)}")
    first, trials, seed = event.get("first_trial"), event.get("trials"), event.get("seed", 0)
    for key, value in (("first_trial", first), ("trials", trials), ("seed", seed)):
        if not _is_int(value) or value < 0:
            raise LogFormatError(f"round {number}: {key} must be an integer >= 0; got {short_repr(value)}")
    space = event.get("space")
    if not isinstance(space, dict):
        raise LogFormatError(f"round {number}: space must be an object; got {short_repr(space)}")
    planned = event.get("planned", number)
    if not _is_int(planned):
        raise LogFormatError(f"round {number}: planned must be an integer; got {short_repr(planned)}")
    raw_specs = event.get("specs")
    if raw_specs is None:
        specs = _draw_specs(space, seed, range(first, first + trials), number)
    elif isinstance(raw_specs, list):
        specs = [TrialSpec.from_json(s, number) for s in raw_specs]
    else:
        raise LogFormatError(f"round {number}: specs must be a list; got {short_repr(raw_specs)}")
    known = {"event", "round", "first_trial", "trials", "seed", "planned", "space", "specs", "parent", "top",
             "margin", "time"}
    return Round(number=number, first_trial=first, trials=trials if raw_specs is None else len(specs), seed=seed,
                 planned=planned, space=space, specs=specs, parent=event.get("parent"), top=event.get("top"),
                 margin=event.get("margin"), time=event.get("time"),
                 meta={k: v for k, v in event.items() if k not in known})


def _draw_specs(space_raw: dict[str, Any], seed: int, numbers: range, round_no: int) -> list[TrialSpec]:
    """A format-1 round's planned trials: drawn from (seed, trial number, space), as hptune 0.1 drew them."""
    from .sampling import draw
    from .space import space_from_yaml

    try:
        space = space_from_yaml(space_raw)
    except ValueError as err:
        raise LogFormatError(f"round {round_no}: its space cannot be read ({err})") from None
    return draw(space, seed, numbers, round_no)


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass
class Run:
    """A run folder read for use: its store, its validated config snapshot and its folded state."""

    store: RunStore
    config: Any  # hptune.config.Config
    state: RunState

    @classmethod
    def open(cls, path: Path | str, *, jobs: int | None = None, trials: int | None = None) -> "Run":
        """Open a run folder and fold its log (once). Raises RunError for a missing or damaged run."""
        store = RunStore.open(path)
        return cls(store=store, config=load_run_config(store, jobs=jobs, trials=trials),
                   state=RunState.from_store(store))

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def metric(self) -> str:
        return self.config.objective.metric

    @property
    def goal(self) -> str:
        return self.config.objective.goal

    def round_space(self, rnd: Round) -> Any:
        """The space a round sampled (the config's space when its logged one cannot be read)."""
        from .space import space_from_yaml

        try:
            return space_from_yaml(rnd.space)
        except ValueError:
            return self.config.space


def load_run_config(store: RunStore, *, jobs: int | None = None, trials: int | None = None) -> Any:
    """The config snapshot of a run (validated as a config file is), with command-line overrides."""
    from .config import parse_config, with_overrides
    from .errors import ConfigError

    raw = store.read_config()
    try:
        config = parse_config(raw, source=f"{store.path}/config.yaml", base_dir=store.path.resolve(),
                              default_name=store.name)
    except ConfigError as err:
        raise RunError(f"{err} The run's config snapshot was edited or damaged; restore it to read the run.") from None
    return with_overrides(config, jobs=jobs, trials=trials)


@dataclass(frozen=True)
class Repair:
    """What `repair_log` did: the damaged lines moved aside (their 1-based numbers), the lines kept."""

    moved: tuple[int, ...]
    kept: int
    trials: int
    damaged_path: Path


def repair_log(store: RunStore) -> Repair:
    """Move every line that is not a well-formed event (damaged JSON, a wrong shape, a torn tail)
    out of the log into `trials.jsonl.damaged`, appended there with its line number; keep the rest.

    Nothing is deleted: the moved lines stay readable beside the log. The caller holds the run's lock.
    """
    path = store.log_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path}: there is no trial log to repair.") from None
    scratch = RunState()
    good: list[bytes] = []
    moved: list[tuple[int, bytes]] = []
    for i, raw in enumerate(data.split(b"\n")):
        if not raw.strip():
            continue
        try:
            scratch.apply(json.loads(raw))
        except (ValueError, LogFormatError):
            moved.append((i + 1, raw))
            continue
        good.append(raw)
    damaged = store.path / f"{LOG_NAME}.damaged"
    if moved:
        with open(damaged, "a", encoding="utf-8") as f:
            for number, raw in moved:
                f.write(json.dumps({"line": number, "text": raw.decode("utf-8", errors="replace")}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        store.write_text(LOG_NAME, "".join(line.decode("utf-8") + "\n" for line in good))
    return Repair(moved=tuple(n for n, _ in moved), kept=len(good), trials=len(scratch.results), damaged_path=damaged)
