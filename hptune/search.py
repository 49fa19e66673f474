"""The one module that wires sample -> execute -> store -> zoom.

A run is a sequence of rounds. Round 1 samples the config's space; each later
round samples a space zoomed on the round before (`refine`). Every round is
announced in the trial log before its first trial runs, with its space, its
trial numbers and how many rounds the command planned, so that an
interrupted run can be resumed exactly (`resume`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import Config, parse_config, parse_space, with_overrides
from .errors import RunError, UserError
from .executor import Executor, ObjectiveSpec, TrialTask, default_threads
from .refine import Zoom, edge_notes, zoom, zoom_header
from .results import best_test_scores, latest_trials, results_frame, sort_key
from .sampling import sample_trials, training_seed
from .space import Space
from .store import RunStore, now_iso

ProgressFn = Callable[[str, dict[str, Any]], None]
RESULTS_EVERY_S = 5.0


class Interrupted(Exception):
    """The user stopped the search (Ctrl-C); every finished trial is on disk."""

    def __init__(self, run_dir: Path, done: int) -> None:
        super().__init__(f"interrupted after {done} finished trials")
        self.run_dir = run_dir
        self.done = done


@dataclass
class Outcome:
    """What a command produced: the run folder, its ranked table, notes for the user."""

    run_dir: Path
    frame: Any
    notes: list[str] = field(default_factory=list)
    config: Config | None = None
    test: dict[str, Any] | None = None  # the best trial's test-split scores, if there is a test split


# ----------------------------------------------------------------------------
# public entry points


def plan_trials(config: Config, trials: int | None = None, first: int = 0) -> list[dict[str, Any]]:
    """The trials a round would run (dry run): trial number and parameters."""
    n = config.search.trials if trials is None else trials
    numbers = range(first, first + n)
    rows = sample_trials(config.space, config.seed, numbers)
    return [{"trial": t, **row} for t, row in zip(numbers, rows)]


def search(config: Config, runs_dir: Path | str = "runs", *, progress: ProgressFn | None = None,
           report: bool = True) -> Outcome:
    """Run `config.search.rounds` rounds in a new run folder under runs_dir.

    report: also write results.md and report.html (about 0.5 s of matplotlib);
    results.csv is always written.
    """
    preflight(config)
    store = RunStore.create(runs_dir, config.name)
    if store.name != config.name and progress:
        progress("note", {"text": f"a run named {config.name!r} already exists; this one is {store.path}"})
    with store.locked():
        store.write_config(config.to_yaml(relative_to=store.path))
        return _run_rounds(store, config, planned=config.search.rounds, progress=progress, report=report)


def refine(run_dir: Path | str, *, trials: int | None = None, top: int | None = None, jobs: int | None = None,
           margin: float | None = None, progress: ProgressFn | None = None, report: bool = True) -> Outcome:
    """Zoom on the latest round of a run and run one more round in the same folder."""
    store = RunStore.open(run_dir)
    config = load_run_config(store, jobs=jobs, trials=trials)
    if top is not None or margin is not None:
        config = replace(config, search=replace(config.search, top=top or config.search.top,
                                                margin=config.search.margin if margin is None else margin))
    preflight(config)
    with store.locked():
        rounds = _rounds(store.events())
        if not rounds:
            raise RunError(f"{store.path}: the run has no rounds yet; run `hptune search` first.")
        _check_complete(store, rounds)
        planned = len(rounds) + 1
        return _run_rounds(store, config, planned=planned, progress=progress, report=report)


def plan_refine(run_dir: Path | str, *, top: int | None = None, margin: float | None = None) -> tuple[Zoom, int]:
    """The zoom `refine` would make (for --dry-run): (zoom, next round number)."""
    store = RunStore.open(run_dir)
    config = load_run_config(store)
    rounds = _rounds(store.events())
    if not rounds:
        raise RunError(f"{store.path}: the run has no rounds yet.")
    last = rounds[-1]
    z = _zoom_round(store, config, last, top=top if top is not None else config.search.top,
                    margin=config.search.margin if margin is None else margin)
    return z, last["round"] + 1


def resume(run_dir: Path | str, *, jobs: int | None = None, progress: ProgressFn | None = None,
           report: bool = True) -> Outcome:
    """Run the trials an interrupted command still owed, then any rounds it had planned."""
    store = RunStore.open(run_dir)
    config = load_run_config(store, jobs=jobs)
    preflight(config)
    with store.locked():
        store.repair_tail()
        rounds = _rounds(store.events())
        if not rounds:
            raise RunError(f"{store.path}: nothing to resume: no round was started.")
        planned = rounds[-1].get("planned", rounds[-1]["round"])
        if progress:
            owed = _owed(rounds[-1], store.events())
            if owed:
                text = (f"resuming round {rounds[-1]['round']}: {len(owed)} of {rounds[-1]['trials']} trials owed"
                        + (f", then rounds up to {planned}" if planned > rounds[-1]["round"] else ""))
            elif planned > rounds[-1]["round"]:
                text = f"resuming: round {rounds[-1]['round']} is complete; running rounds up to {planned}"
            else:
                text = "nothing to resume: every planned round is complete"
            progress("note", {"text": text})
        # marks where this command's time starts: the gap since the interruption is not the run's wall time
        store.append([{"event": "resume", "time": now_iso()}])
        return _run_rounds(store, config, planned=planned, progress=progress, report=report)


def load_run_config(store: RunStore, *, jobs: int | None = None, trials: int | None = None) -> Config:
    """The config snapshot of a run, with command-line overrides."""
    raw = store.read_config()
    config = parse_config(raw, source=f"{store.path}/config.yaml", base_dir=store.path.resolve(),
                          default_name=store.name)
    return with_overrides(config, jobs=jobs, trials=trials)


def write_results(store: RunStore, config: Config, events: list[dict[str, Any]] | None = None) -> Any:
    """Rebuild results.csv from the log; returns the ranked frame."""
    events = store.events() if events is None else events
    frame = results_frame(latest_trials(events), param_names=config.space.names,
                          metric=config.objective.metric, goal=config.objective.goal,
                          metric_columns=_metric_columns(config))
    store.write_text("results.csv", frame.to_csv(index=False))
    return frame


# ----------------------------------------------------------------------------
# rounds


def _run_rounds(store: RunStore, config: Config, *, planned: int, progress: ProgressFn | None,
                report: bool = True) -> Outcome:
    executor = Executor(jobs=config.search.jobs, backend=config.search.backend, address=config.search.address)
    spec = _objective_spec(config)
    notes: list[str] = []
    try:
        while True:
            events = store.events()
            rounds = _rounds(events)
            last = rounds[-1] if rounds else None
            if last is not None and _owed(last, events):
                _execute_round(store, config, last, executor, spec, progress, events)
                continue
            if last is not None and last["round"] >= planned:
                break
            z: Zoom | None = None
            if last is None:
                space, meta = config.space, {"parent": None, "top": None, "margin": None}
            else:
                z = _zoom_round(store, config, last, top=config.search.top, margin=config.search.margin, events=events)
                space, meta = z.space, {"parent": last["round"], "top": z.top, "margin": z.margin}
            round_no = 1 if last is None else last["round"] + 1
            first = 0 if last is None else _next_trial(events)
            event = {"event": "round", "round": round_no, "first_trial": first, "trials": config.search.trials,
                     "seed": config.seed, "planned": planned, "space": space.to_yaml(), **meta, "time": now_iso()}
            _write_round_file(store, event, space, z)
            store.append([event])
            if progress:
                progress("round", {"round": round_no, "trials": config.search.trials, "space": space,
                                   "planned": planned, "run_dir": store.path})
    except KeyboardInterrupt:  # between two rounds: every finished trial is on disk, so say how to resume
        executor.shutdown(kill=True)
        events = store.events()
        last_round = _rounds(events)[-1]["round"] if _rounds(events) else None
        raise Interrupted(store.path, sum(1 for t in latest_trials(events) if t.get("round") == last_round)) from None
    finally:
        executor.shutdown()
    events = store.events()
    frame = write_results(store, config, events)
    notes.extend(n for n in _final_edge_notes(store, config, events) if n not in notes)
    try:
        if report:
            from .report import write_report_files

            write_report_files(store.path)  # results.md and report.html, next to results.csv
    except Exception as err:  # the trials are safe on disk: a failing page must not fail the search
        notes.append(f"could not write the report files in {store.path} ({type(err).__name__}: {err}); "
                     f"`hptune report {store.path}` retries")
    test = best_test_scores(latest_trials(events), metric=config.objective.metric, goal=config.objective.goal)
    return Outcome(run_dir=store.path, frame=frame, notes=notes, config=config, test=test)


def _execute_round(store: RunStore, config: Config, round_event: dict[str, Any], executor: Executor,
                   spec: ObjectiveSpec, progress: ProgressFn | None, events: list[dict[str, Any]]) -> None:
    space = parse_space(round_event["space"], source=f"{store.path}/trials.jsonl",
                        builtin=config.objective.function is None)
    owed = _owed(round_event, events)
    seed = round_event["seed"]
    tasks = [TrialTask(trial=t, round=round_event["round"], params=params, seed=training_seed(seed, t))
             for t, params in zip(owed, sample_trials(space, seed, owed))]
    total = round_event["trials"]
    done = total - len(owed)
    tracker = _BestTracker(config.objective.metric, config.objective.goal)
    for e in latest_trials(events):
        if e.get("round") == round_event["round"]:
            tracker.add(e)
    last_results = time.monotonic()
    results = executor.run_batches(spec, tasks)
    try:
        for batch in results:
            stamp = now_iso()
            for record in batch:
                record["time"] = stamp
            store.append(batch)  # on disk (one write and fsync for results that arrived together) before reported
            for record in batch:
                done += 1
                tracker.add(record)
                if progress:
                    progress("trial", {"record": record, "done": done, "total": total, "failures": tracker.failures,
                                       "best": tracker.best, "round": round_event["round"]})
            if time.monotonic() - last_results > RESULTS_EVERY_S:
                write_results(store, config)
                last_results = time.monotonic()
    except KeyboardInterrupt:
        executor.shutdown(kill=True)
        write_results(store, config)
        raise Interrupted(store.path, done) from None
    finally:
        close = getattr(results, "close", None)
        if close:
            close()


class _BestTracker:
    def __init__(self, metric: str, goal: str) -> None:
        self.metric, self.goal = metric, goal
        self.best: dict[str, Any] | None = None
        self.failures = 0

    def add(self, record: dict[str, Any]) -> None:
        if record.get("status") != "ok":
            self.failures += 1
            return
        value = record.get("metrics", {}).get(self.metric)
        if value is None or value != value:
            return
        key = sort_key(record["metrics"], self.metric, self.goal)
        if self.best is None or key < sort_key(self.best["metrics"], self.metric, self.goal):
            self.best = record


def _zoom_round(store: RunStore, config: Config, round_event: dict[str, Any], *, top: int | None, margin: float,
                events: list[dict[str, Any]] | None = None) -> Zoom:
    events = store.events() if events is None else events
    builtin = config.objective.function is None
    space = parse_space(round_event["space"], source=f"{store.path}/trials.jsonl", builtin=builtin)
    trials = [t for t in latest_trials(events) if t.get("round") == round_event["round"]]
    rounds = _rounds(events)
    original = parse_space(rounds[0]["space"], source=f"{store.path}/trials.jsonl", builtin=builtin)
    try:
        return zoom(space, trials, metric=config.objective.metric, goal=config.objective.goal, top=top,
                    margin=margin, original=original)
    except UserError as err:
        raise RunError(f"{store.path}: round {round_event['round']}: {err}") from None


def _final_edge_notes(store: RunStore, config: Config, events: list[dict[str, Any]]) -> list[str]:
    """Edge warnings on the run's best trials so far, also after a single round."""
    rounds = _rounds(events)
    ok = [t for t in latest_trials(events) if t.get("status") == "ok"
          and config.objective.metric in t.get("metrics", {})]
    if not rounds or not ok:
        return []
    original = parse_space(rounds[0]["space"], source=f"{store.path}/trials.jsonl", builtin=config.builtin)
    ok.sort(key=lambda t: (*sort_key(t["metrics"], config.objective.metric, config.objective.goal), t["trial"]))
    return edge_notes(original, ok[:1])


def _write_round_file(store: RunStore, event: dict[str, Any], space: Space, zoomed: Zoom | None) -> None:
    """rounds/round-N.yaml: the round's space with its parent, top and margin (zoomed: None for round 1)."""
    if zoomed is None:
        header = (f"Round 1 of run {store.name}: the space from the config, sampled at random.\n"
                  "Paste the `space:` block into a config to search it again.")
    else:
        header = zoom_header(event["round"], event["parent"], zoomed, store.name)
    body = {"round": event["round"], "parent": event["parent"], "top": event["top"], "margin": event["margin"],
            "trials": event["trials"], "first_trial": event["first_trial"], "space": space.to_yaml()}
    store.write_round_space(event["round"], header, body)


# ----------------------------------------------------------------------------
# helpers


def _rounds(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "round"]


def _owed(round_event: dict[str, Any], events: list[dict[str, Any]]) -> list[int]:
    first, n = round_event["first_trial"], round_event["trials"]
    done = {int(e["trial"]) for e in events if e.get("event") == "trial"}
    return [t for t in range(first, first + n) if t not in done]


def _next_trial(events: list[dict[str, Any]]) -> int:
    rounds = _rounds(events)
    return max((r["first_trial"] + r["trials"] for r in rounds), default=0)


def _check_complete(store: RunStore, rounds: list[dict[str, Any]]) -> None:
    owed = _owed(rounds[-1], store.events())
    if owed:
        raise RunError(f"{store.path}: round {rounds[-1]['round']} still owes {len(owed)} trial(s); "
                       f"run `hptune resume {store.path}` first.")


def _metric_columns(config: Config) -> tuple[str, ...]:
    from .results import BUILTIN_METRIC_COLUMNS

    return BUILTIN_METRIC_COLUMNS if config.builtin else (config.objective.metric,)


def _objective_spec(config: Config) -> ObjectiveSpec:
    # a Dask worker runs one task per thread it was started with: 1 thread per trial unless told otherwise
    default = 1 if config.search.backend == "dask" else default_threads(config.search.jobs)
    threads = config.search.threads or default
    return ObjectiveSpec(data=config.data, data_seed=config.data_seed, base_dir=config.base_dir if config.builtin
                         else config.function_dir, source=config.source, device=config.device,
                         function=config.objective.function, threads=threads, metric=config.objective.metric)


def preflight(config: Config, *, connect: bool = True) -> None:
    """Fail fast, in this process, on what would make every trial fail (before any run folder exists).

    Checks the data loads, the device exists, the objective function imports
    and (connect=True) the Dask scheduler answers. Raises UserError.
    """
    if config.search.backend == "dask" and connect:
        Executor(backend="dask", address=config.search.address).check()
    if config.builtin:
        from .data import load_dataset_cached

        load_dataset_cached(config.data, seed=config.data_seed, base_dir=config.base_dir, source=config.source)
        if config.device != "cpu":
            from .train import check_device

            try:
                check_device(config.device)
            except UserError as err:
                raise UserError(f"{config.source}: {err}") from None
    else:
        from .executor import load_function

        try:
            load_function(config.objective.function, config.function_dir)
        except Exception as err:  # the user's module may raise anything on import
            raise UserError(f"{config.source}: objective.function: cannot import {config.objective.function!r} "
                            f"({type(err).__name__}: {err}). The module must be importable from "
                            f"{config.function_dir} or the Python path, and define the function.") from None
