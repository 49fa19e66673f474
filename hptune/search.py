"""The one module that wires strategy -> execution -> store: `search`, `refine`, `resume`.

A run is a sequence of rounds. Each round is announced in the trial log before its
first trial runs, with its space and every trial it plans (numbers, parameters,
seeds), so that an interrupted run resumes exactly: `resume` runs the owed trials
from the log. The log is folded once per command (`RunState`) and the state is
kept up to date in memory as results arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config.schema import Config
from .errors import RunError, StorageError, storage_reason
from .objectives import Objective, objective_for
from .records import Status, best
from .refine import Zoom, edge_notes, zoom_header
from .runstate import Round, Run, RunState, load_run_config
from .space import space_from_yaml
from .store import Checkpoints, RunStore, now_iso
from .records import TrialResult, TrialSpec
from .objectives.base import Resume
from .strategies.halving import Step, brackets_of, next_steps, promote
from .strategies.random_zoom import RoundPlan, next_round, plan_specs, zoom_round

ProgressFn = Callable[[str, dict[str, Any]], None]
RESULTS_EVERY_S = 5.0

__all__ = ["Interrupted", "Outcome", "load_run_config", "plan_refine", "plan_trials", "preflight", "refine",
           "resume", "search"]


class Interrupted(Exception):
    """The user stopped the search (Ctrl-C, SIGTERM); every finished trial is on disk."""

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
    """The trials a first round would run (dry run): trial number and parameters."""
    n = config.search.trials if trials is None else trials
    return [{"trial": s.trial, **s.params} for s in first_round_specs(config, first, n)]


def first_round_specs(config: Config, first: int, n: int) -> list[TrialSpec]:
    """Trials first..first+n-1 of a search's first round, as it will plan them."""
    return plan_specs(config.space, config, first, n, 1)


def search(config: Config, runs_dir: Path | str = "runs", *, progress: ProgressFn | None = None,
           report: bool = True) -> Outcome:
    """Run `config.search.rounds` rounds in a new run folder under runs_dir.

    report: also write results.md and report.html (about 0.5 s of matplotlib);
    results.csv is always written.
    """
    objective = preflight(config)
    store = RunStore.create(runs_dir, config.name)
    try:
        store.lock()
        store.write_config(config.to_yaml(relative_to=store.path))
    except (OSError, RunError) as err:  # nothing ran: leave nothing behind
        store.unlock()
        store.discard()
        if isinstance(err, RunError):
            raise
        raise StorageError(f"{store.path}: cannot write the new run's config ({storage_reason(err)}); nothing was "
                           "run and the folder was removed. Free space or choose another place with --runs-dir.") from None
    if store.name != config.name and progress:
        progress("note", {"text": f"a run named {config.name!r} already exists; this one is {store.path}"})
    try:
        run = Run(store=store, config=config, state=RunState())
        return _Driver(run, objective, progress).rounds(planned=config.search.rounds, report=report)
    finally:
        store.close()
        store.unlock()


def refine(run_dir: Path | str, *, trials: int | None = None, top: int | None = None, jobs: int | None = None,
           margin: float | None = None, progress: ProgressFn | None = None, report: bool = True) -> Outcome:
    """Zoom on the latest round of a run and run one more round in the same folder."""
    store = RunStore.open(run_dir)
    config = load_run_config(store, jobs=jobs, trials=trials)
    if top is not None or margin is not None:
        config = replace(config, search=replace(config.search, top=config.search.top if top is None else top,
                                                margin=config.search.margin if margin is None else margin))
    objective = preflight(config)
    with store.locked():
        run = Run(store=store, config=config, state=RunState.from_store(store))
        last = run.state.last_round
        if last is None:
            raise RunError(f"{store.path}: the run has no rounds yet; run `hptune search` first.")
        owed = run.state.owed(last)
        if owed:
            raise RunError(f"{store.path}: round {last.number} still owes {len(owed)} trial(s); "
                           f"run `hptune resume {store.path}` first.")
        return _Driver(run, objective, progress).rounds(planned=len(run.state.rounds) + 1, report=report)


def plan_refine(run_dir: Path | str, *, top: int | None = None, margin: float | None = None) -> tuple[Zoom, int]:
    """The zoom `refine` would make (for --dry-run): (zoom, next round number)."""
    run = Run.open(run_dir)
    last = run.state.last_round
    if last is None:
        raise RunError(f"{run.path}: the run has no rounds yet.")
    z = _zoom(run, last, top=top if top is not None else run.config.search.top,
              margin=run.config.search.margin if margin is None else margin)
    return z, last.number + 1


def resume(run_dir: Path | str, *, jobs: int | None = None, progress: ProgressFn | None = None,
           report: bool = True) -> Outcome:
    """Run the trials an interrupted command still owed, then any rounds it had planned."""
    store = RunStore.open(run_dir)
    config = load_run_config(store, jobs=jobs)
    objective = preflight(config)
    with store.locked():
        store.repair_tail()
        run = Run(store=store, config=config, state=RunState.from_store(store))
        last = run.state.last_round
        if last is None:
            raise RunError(f"{store.path}: nothing to resume: no round was started.")
        planned = last.planned
        if progress:
            owed = run.state.owed(last)
            if owed:
                text = (f"resuming round {last.number}: {len(owed)} of {last.trials} trials owed"
                        + (f", then rounds up to {planned}" if planned > last.number else ""))
            elif planned > last.number:
                text = f"resuming: round {last.number} is complete; running rounds up to {planned}"
            else:
                text = "nothing to resume: every planned round is complete"
            progress("note", {"text": text})
        # marks where this command's time starts: the gap since the interruption is not the run's wall time
        driver = _Driver(run, objective, progress)
        driver.append([{"event": "resume", "time": now_iso()}])
        return driver.rounds(planned=planned, report=report)


def check_trial(config: Config) -> TrialResult:
    """Run the first trial a search would run, once, in this process (no run folder): what its objective
    reports, to check that hptune reads the metrics (`hptune search --check-metrics`)."""
    from .objectives.base import Task

    objective = preflight(config, connect=False)
    [result] = objective.run(Task(tuple(first_round_specs(config, 0, 1))))
    return result


def preflight(config: Config, *, connect: bool = True) -> Objective:
    """Fail fast, in this process, on what would make every trial fail (before any run folder exists).

    Checks the data loads, the device exists, the objective function imports
    and (connect=True) the Dask scheduler answers. Returns the objective. Raises UserError.
    """
    if config.search.backend == "dask" and connect:
        from .execution import executor_for

        executor_for(config.search).check()
    objective = objective_for(config)
    objective.preflight()
    return objective


# ----------------------------------------------------------------------------
# the rounds of one command


class _Driver:
    """One command's work on a locked run: plan rounds, run their owed trials, record results."""

    def __init__(self, run: Run, objective: Objective, progress: ProgressFn | None) -> None:
        self.run, self.objective, self.progress = run, objective, progress
        self.store, self.config, self.state = run.store, run.config, run.state
        self.checkpoints = Checkpoints(run.store.path)

    def append(self, events: list[dict[str, Any]]) -> None:
        """On disk first (one write and fsync), then in the state. A failed write is a StorageError
        that says how many trials are safe and how to resume."""
        try:
            self.store.append(events)
        except OSError as err:
            raise self._storage_error(err, self.store.log_path) from None
        for e in events:
            self.state.apply(e)
        self.state.log_bytes = self.store.log_size() or 0

    def _storage_error(self, err: OSError, path: Path) -> StorageError:
        try:  # what is on disk now: a write that failed part way may still have put whole lines down
            safe = len(RunState.from_store(self.store).results)
        except (RunError, OSError):
            safe = len(self.state.results)
        return StorageError(f"{path}: cannot write ({storage_reason(err)}). The search stopped; the {safe} finished "
                            f"trials in {self.store.path} are safe on disk. Free space (or make the folder writable) "
                            f"and resume with: hptune resume {self.store.path}")

    def rounds(self, *, planned: int, report: bool) -> Outcome:
        from .execution import executor_for

        executor = executor_for(self.config.search)
        try:
            while True:
                last = self.state.last_round
                if last is not None and self.state.owed(last):
                    self._execute(last, executor)
                    continue
                if last is not None and last.number >= planned:
                    break
                try:
                    plan = next_round(self.state, self.config)
                except RunError as err:  # a round that cannot be zoomed on: nothing was written
                    raise RunError(f"{self.store.path}: {err}") from None
                self.append([plan.event(planned, now_iso())])
                try:
                    self._write_round_file(plan)
                except OSError as err:
                    raise self._storage_error(err, self.store.path / "rounds") from None
                if self.progress:
                    self.progress("round", {"round": plan.number, "trials": len(plan.specs), "space": plan.space,
                                            "planned": planned, "run_dir": self.store.path})
        except KeyboardInterrupt:  # between two rounds: every finished trial is on disk, so say how to resume
            executor.shutdown(kill=True)
            last = self.state.last_round
            raise Interrupted(self.store.path, 0 if last is None else self._saved(last)) from None
        finally:
            executor.shutdown()
        return self._finish(report)

    def _execute(self, rnd: Round, executor: Any) -> None:
        """Run the round's owed trials: all to their full budget, or rung by rung when the round halves."""
        if brackets_of(rnd.meta) is None:
            self._run(rnd, executor, self.objective.groups(self.state.owed(rnd)), lambda r: [r.to_event()])
            return
        specs = {s.trial: s for s in rnd.specs}
        while True:
            steps = next_steps(self.state, rnd)
            if not steps:
                break
            decisions = [s for s in steps if s.decide]
            if decisions:
                self._decide(rnd, decisions)
                continue
            tasks, step_of = [], {}
            for step in steps:
                chosen = [specs[t] for t in step.trials]
                resume = None if step.from_epochs is None else [self._resume(rnd, step, t) for t in step.trials]
                tasks += self.objective.groups(chosen, budget=step.epochs, resume=resume, keep_state=not step.final)
                step_of.update({t: step for t in step.trials})
            self._run(rnd, executor, tasks, lambda r: self._rung_events(rnd, step_of[r.trial], r))
        self.checkpoints.remove_round(rnd.specs)

    def _run(self, rnd: Round, executor: Any, tasks: list[Any], events_of: Callable[[TrialResult], list[dict]]) -> None:
        """Run tasks; each batch of results goes to the log (one write and fsync) before it is reported.

        events_of: the log lines of one result (a trial's final line, or its line at a rung).
        """
        total = len(rnd.specs)
        metric, goal = self.config.objective.metric, self.config.objective.goal
        done_before = self.state.round_results(rnd.number)
        done = len(done_before)
        failures = sum(r.status in (Status.FAILED, Status.DIVERGED) for r in done_before)
        leader = best(done_before, metric, goal)
        last_results = time.monotonic()
        results = executor.run(self.objective, tasks)
        try:
            for batch in results:
                stamp = now_iso()
                batch = [r.with_extra(time=stamp) for r in batch]
                self._keep_files(batch)
                events = [e for r in batch for e in events_of(r)]
                self.append(events)  # on disk before reported
                self.checkpoints.drop_replaced(events)
                for event in events:
                    if event["event"] != "trial":
                        continue
                    r = self.state.results[event["trial"]]
                    done += 1
                    if r.status in (Status.FAILED, Status.DIVERGED):
                        failures += 1
                    leader = best([r] + ([leader] if leader else []), metric, goal)
                    if self.progress:
                        self.progress("trial", {"record": r, "done": done, "total": total, "failures": failures,
                                                "best": leader, "round": rnd.number})
                if time.monotonic() - last_results > RESULTS_EVERY_S:
                    self._write_results(best_effort=True)
                    last_results = time.monotonic()
        except KeyboardInterrupt:
            executor.shutdown(kill=True)
            self._write_results(best_effort=True)
            raise Interrupted(self.store.path, self._saved(rnd)) from None
        finally:
            close = getattr(results, "close", None)
            if close:
                close()

    def _keep_files(self, batch: list[TrialResult]) -> None:
        """A trial's own files (a command's stdout and stderr) under trials/<trial>/, before its line."""
        from .store import write_bytes_atomic

        for r in batch:
            if not r.files:
                continue
            folder = self.store.path / "trials" / str(r.trial)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                for name, data in r.files.items():
                    write_bytes_atomic(folder / name, data)
            except OSError as err:
                raise self._storage_error(err, folder) from None

    # -- successive halving ---------------------------------------------------------

    def _rung_events(self, rnd: Round, step: Step, r: TrialResult) -> list[dict[str, Any]]:
        """A result at a rung: a rung line (its checkpoint written first), or the trial's final line
        (the last rung, or a trial that failed or diverged on the way)."""
        if step.rung > 0:  # a trial's time is all its rungs' time
            prev = self.state.rung_results[(rnd.number, step.bracket, step.rung - 1)].get(r.trial)
            if prev is not None:
                r = replace(r, duration_s=round(prev.duration_s + r.duration_s, 6))
        if step.final or r.status != Status.OK:
            return [r.to_event()]
        extra: dict[str, Any] = {"bracket": step.bracket, "rung": step.rung}
        if r.state is not None:
            try:
                extra["checkpoint"] = self.checkpoints.save(r.trial, r.epochs or step.epochs, r.state)
            except OSError as err:
                raise self._storage_error(err, self.checkpoints.folder) from None
        return [r.with_extra(**extra).to_event("rung")]

    def _resume(self, rnd: Round, step: Step, trial: int) -> Resume:
        """Where a promoted trial continues: its result at the rung before, and its checkpoint when it has one."""
        prev = self.state.rung_results[(rnd.number, step.bracket, step.rung - 1)][trial]
        state = self.checkpoints.load(prev.extra.get("checkpoint"))
        return Resume(epoch=prev.epochs or step.from_epochs or 0, curve=tuple(prev.curve or ()), state=state)

    def _decide(self, rnd: Round, steps: list[Step]) -> None:
        """Promote the best of each finished rung; the others end `pruned` at that rung, all in one write."""
        metric, goal = self.config.objective.metric, self.config.objective.goal
        events: list[dict[str, Any]] = []
        stamp = now_iso()
        pruned_all = []
        for step in steps:
            here = self.state.rung_results.get((rnd.number, step.bracket, step.rung), {})
            promoted, pruned = promote([here[t] for t in step.trials if t in here], step.keep, metric, goal)
            events.append({"event": "promotion", "round": rnd.number, "bracket": step.bracket, "rung": step.rung,
                           "epochs": step.epochs, "promoted": promoted, "pruned": pruned, "time": stamp})
            for t in pruned:
                events.append(here[t].as_status(Status.PRUNED).with_extra(time=stamp).to_event())
            pruned_all += [here[t] for t in pruned]
            if self.progress:
                self.progress("note", {"text": f"round {rnd.number}, rung {step.rung + 1} ({plural(step.epochs, 'epoch')}"
                                               + (f", bracket {step.bracket + 1}" if step.bracket else "")
                                               + f"): {len(promoted)} of {len(step.trials)} go on, "
                                                 f"{len(pruned)} pruned"})
        self.append(events)
        for r in pruned_all:
            self.checkpoints.remove(r.extra.get("checkpoint"))

    def _saved(self, rnd: Round) -> int:
        """The round's trials on disk now (read again: an interruption may fall between a write and its count)."""
        try:
            return len(RunState.from_store(self.store).round_results(rnd.number))
        except RunError:
            return len(self.state.round_results(rnd.number))

    def _write_results(self, *, best_effort: bool = False) -> Any:
        """Rewrite results.csv; returns the ranked frame. best_effort: a failed write is left for later
        (the log holds every trial; the file is rebuilt from it)."""
        from .report.files import write_results_csv
        from .report.text import run_frame

        try:
            return write_results_csv(self.run)
        except OSError:
            if not best_effort:
                raise
            return run_frame(self.run)

    def _finish(self, report: bool) -> Outcome:
        from .report.files import write_report_files, write_results_csv
        from .report.tables import best_test_scores
        from .report.text import run_frame

        notes = self._edge_notes()
        full = run_frame(self.run, curves=report)  # built once: for results.csv and, with curves, the page
        frame = full.drop(columns=["curve"]) if report else full
        page_error: Exception | None = None
        if report:
            try:
                write_report_files(self.run, full)  # results.csv, results.md and report.html
            except Exception as err:  # the trials are safe on disk: a failing page must not fail the search
                page_error = err
        if not report or page_error is not None:
            try:
                write_results_csv(self.run, frame)
            except OSError as err:  # the trials are safe in the log: say so, and how to get the files
                page_error = None
                notes.append(f"could not write results.csv in {self.store.path} ({storage_reason(err)}); every "
                             f"trial is in its trials.jsonl, and `hptune report {self.store.path}` writes the files "
                             "once there is room")
        if page_error is not None:
            why = (storage_reason(page_error) if isinstance(page_error, OSError)
                   else f"{type(page_error).__name__}: {page_error}")
            notes.append(f"could not write the report files in {self.store.path} ({why}); "
                         f"`hptune report {self.store.path}` retries")
        test = best_test_scores(self.state.all_results(), metric=self.config.objective.metric,
                                goal=self.config.objective.goal)
        return Outcome(run_dir=self.store.path, frame=frame, notes=notes, config=self.config, test=test)

    def _edge_notes(self) -> list[str]:
        """Edge warnings on the run's best trial so far, also after a single round."""
        first = self.state.rounds[0] if self.state.rounds else None
        leader = best(self.state.all_results(), self.config.objective.metric, self.config.objective.goal)
        if first is None or leader is None:
            return []
        return edge_notes(space_from_yaml(first.space), [leader])

    def _write_round_file(self, plan: RoundPlan) -> None:
        """rounds/round-N.yaml: the round's space with its parent, top and margin."""
        if plan.zoom is None:
            header = (f"Round 1 of run {self.store.name}: the space from the config, sampled at random.\n"
                      "Paste the `space:` block into a config to search it again.")
        else:
            header = zoom_header(plan.number, plan.number - 1, plan.zoom, self.store.name)
        z = plan.zoom
        body = {"round": plan.number, "parent": None if z is None else plan.number - 1,
                "top": None if z is None else z.top, "margin": None if z is None else z.margin,
                "trials": len(plan.specs), "first_trial": plan.specs[0].trial if plan.specs else 0,
                "space": plan.space.to_yaml()}
        self.store.write_round_space(plan.number, header, body)


def _zoom(run: Run, rnd: Round, *, top: int | None, margin: float) -> Zoom:
    try:
        return zoom_round(run.state, rnd, run.config, top=top, margin=margin)
    except RunError as err:
        raise RunError(f"{run.path}: {err}") from None


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
