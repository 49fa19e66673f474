"""The command line: thin click commands. The only place that prints or exits.

Data (tables) goes to stdout; progress, notes and warnings go to stderr.
Heavy modules (pandas, torch) are imported inside the commands so that
`hptune --help` and `--version` answer at once.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import UserError

FORMAT_CHOICE = click.Choice(["table", "csv", "markdown", "json"])


def _fail(err: UserError) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(1)


class _Progress:
    """Progress on stderr.

    On a terminal: a live display (rich) with a bar, done/total, failures, elapsed
    and remaining time, and a line with the best trial so far and its parameters; a
    failed trial gets a line of its own above it, with its error. Elsewhere (CI, log
    files): one plain line per finished trial with the same facts.
    """

    def __init__(self, metric: str, space: Any = None) -> None:
        self.metric = metric
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.round_start = self.start
        self.space = space
        self.finished = 0  # trials this command finished in the current round: a resumed round's old ones took no time
        self._live: Any = None

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if kind == "note":
            self._print(f"note: {info['text']}")
            return
        if kind == "round":
            self.close()
            self.round_start, self.finished = now, 0
            self.space = info["space"]
            click.echo(f"round {info['round']}/{info['planned']}: {info['trials']} trials -> {info['run_dir']}", err=True)
            return
        record, done, total = info["record"], info["done"], info["total"]
        self.finished += 1
        elapsed = now - self.start
        rate = self.finished / max(now - self.round_start, 1e-9)
        remaining = (total - done) / rate
        best = info["best"]
        best_text = "best -"
        if best is not None:
            best_text = f"best {best.metrics[self.metric]:.4f} (trial {best.trial}: {self._params(best.params)})"
        status = record.status.value
        if self.tty:
            if status == "failed":
                self._print(f"trial {record.trial} failed: {record.error}")
            self._draw(done, total, info["failures"], best_text, elapsed, remaining)
            if done == total:
                self.close()
        else:
            value = record.metrics.get(self.metric)
            shown = f"{self.metric} {value:.4f}" if isinstance(value, float) and value == value else status
            if status != "ok":
                shown = f"{status}" + (f": {record.error}" if record.error else "")
            click.echo(f"trial {record.trial} [{done}/{total}] {shown} ({record.duration_s:.2f}s) | "
                       f"{best_text} | failed {info['failures']} | {_dur(elapsed)} elapsed, ~{_dur(remaining)} left",
                       err=True)

    def _draw(self, done: int, total: int, failures: int, best_text: str, elapsed: float, remaining: float) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=30),
                    Text(f"{done}/{total}  failed {failures}  {_dur(elapsed)} elapsed, ~{_dur(remaining)} left"))
        view = Group(bar, Text(best_text, overflow="ellipsis", no_wrap=True))
        if self._live is None:
            self._live = Live(view, console=Console(stderr=True), refresh_per_second=10, transient=False)
            self._live.start()
        else:
            self._live.update(view)

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _params(self, params: dict[str, Any]) -> str:
        from .space import Fixed, format_value

        parts = []
        for k, v in params.items():
            p = self.space[k] if self.space is not None and k in self.space else None
            if isinstance(p, Fixed):
                continue
            parts.append(f"{k}={format_value(p, v)}")
        return ", ".join(parts) or "all parameters fixed"


def _dur(seconds: float) -> str:
    from .report.text import format_duration

    return format_duration(seconds, compact=True)


def _print_outcome(outcome: Any, top: int, fmt: str = "table") -> None:
    """The ranked table on stdout (in `fmt`), notes on stderr; exit 1 when no trial finished."""
    from .report.tables import display_frame, render

    for note in outcome.notes:
        click.echo(f"note: {note}", err=True)
    cfg, frame = outcome.config, outcome.frame
    shown = frame.head(top) if top else frame
    if fmt in ("csv", "json"):  # machines get full precision, as in results.csv (errors: there and on stderr)
        click.echo(render(shown.drop(columns=["error"]), fmt), nl=False)
    else:
        click.echo(render(display_frame(frame, cfg.space, metric=cfg.objective.metric, top=top, errors=False), fmt), nl=False)
    if outcome.test:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in outcome.test.items() if k != "trial")
        click.echo(f"test split, best trial only (trial {outcome.test['trial']}): {scores}", err=True)
    finished = int((frame["status"] == "ok").sum()) if not frame.empty else 0
    if len(frame) and not finished:
        first = frame["error"].dropna()
        reason = f" The first error: {first.iloc[0]}" if len(first) else " (they diverged: try smaller learning rates)"
        click.echo(f"error: none of the {len(frame)} trials in {outcome.run_dir} finished.{reason}", err=True)
        sys.exit(1)
    click.echo(f"{len(frame)} trials ({finished} finished) in {outcome.run_dir} (results.csv, report.html); "
               f"`hptune refine {outcome.run_dir}` zooms in on the best.", err=True)


def _guarded(action: Any, progress: "_Progress | None" = None) -> Any:
    """Run a search/refine/resume call: user errors exit 1; Ctrl-C and SIGTERM keep every finished
    trial, say how to resume and exit 130 (143 for SIGTERM)."""
    import signal

    from .panda import Interrupted as PandaInterrupted
    from .search import Interrupted

    terminated = []

    def on_term(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt  # the same path as a Ctrl-C: finished trials are on disk, workers stopped

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return action()
    except (Interrupted, PandaInterrupted, KeyboardInterrupt) as err:
        if progress:
            progress.close()
        if isinstance(err, PandaInterrupted):
            click.echo(f"\ninterrupted: {err.branch} is saved up to epoch {err.epoch} in {err.run_dir}. "
                       f"Resume with: hptune resume {err.run_dir}", err=True)
        elif isinstance(err, Interrupted):
            click.echo(f"\ninterrupted: {err.done} finished trials of this round are saved in {err.run_dir}. "
                       f"Resume with: hptune resume {err.run_dir}", err=True)
        else:
            click.echo("\ninterrupted; every finished trial is saved.", err=True)
        sys.exit(143 if terminated else 130)
    except UserError as err:
        if progress:
            progress.close()
        _fail(err)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if progress:
            progress.close()


def _progress_for(source: Any) -> "_Progress":
    """Progress for a config, or for the config of a run folder."""
    from .config import Config
    from .runstate import load_run_config
    from .store import RunStore

    cfg = source if isinstance(source, Config) else load_run_config(RunStore.open(source))
    return _Progress(cfg.objective.metric, cfg.space)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hptune")
def main() -> None:
    """hptune: random search, coarse to fine, for batch-normalized networks.

    \b
    Example:
      hptune search configs/digits.yaml    # random trials in parallel
      hptune refine runs/digits            # zoom in on the best trials
      hptune report runs/digits            # the ranked table
    """


@main.command()
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Run name (default: the config's name, else the file's stem).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Folder that holds the run folders.")
@click.option("--trials", type=click.IntRange(min=1), help="Trials per round (search.trials).")
@click.option("--jobs", type=click.IntRange(min=1), help="Parallel worker processes (search.jobs).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (seed).")
@click.option("--rounds", type=click.IntRange(min=1), help="Rounds, each zoomed on the one before (search.rounds).")
@click.option("--backend", type=click.Choice(["local", "dask"]), help="Where trials run (search.backend).")
@click.option("--address", help="Dask scheduler address for --backend dask, e.g. tcp://127.0.0.1:8786.")
@click.option("--objective", "function", metavar="MODULE:FUNCTION",
              help="Your own training function train(params) -> dict of metrics (objective.function).")
@click.option("--command", metavar="'CMD {param} ...'",
              help="A training program to run per trial, with {name} placeholders (objective.command).")
@click.option("--metric", help="The metric to rank by (objective.metric), as the objective reports it.")
@click.option("--dry-run", is_flag=True, help="Print the trials that would run, and stop.")
@click.option("--check-metrics", is_flag=True,
              help="Run the first trial once (no run folder) and show the metrics read from it, and stop.")
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="table", show_default=True,
              help="Format of the final table, or of the --dry-run trials (csv and json: full precision).")
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Rows of the final table (0 = all).")
def search(config_file: Path, name: str | None, runs_dir: Path, trials: int | None, jobs: int | None,
           seed: int | None, rounds: int | None, backend: str | None, address: str | None,
           function: str | None, command: str | None, metric: str | None, dry_run: bool, check_metrics: bool,
           fmt: str, top: int) -> None:
    """Run a random search described by a YAML config (or a W&B sweep file).

    Trials run in parallel worker processes; each finished trial is written
    to runs/<name>/ at once. A new search never overwrites a run: it takes the
    next free name. A Weights & Biases sweep file runs offline, with notes on
    what hptune does differently.

    \b
    Example:
      hptune search configs/digits.yaml --trials 50 --jobs 2
      hptune search configs/digits.yaml --rounds 3
      hptune search configs/digits.yaml --dry-run --format csv
      hptune search sweep.yaml --check-metrics
    """
    from . import config as config_mod
    from . import search as search_mod

    try:
        cfg = config_mod.load_config(config_file)
        cfg = config_mod.with_overrides(cfg, name=name, trials=trials, jobs=jobs, seed=seed, rounds=rounds,
                                        backend=backend, address=address, function=function, command=command,
                                        metric=metric)
        for note in cfg.notes:
            click.echo(f"note: {note}", err=True)
        for warning in cfg.warnings:
            click.echo(f"warning: {warning}", err=True)
        if check_metrics:
            _check_metrics(search_mod.check_trial(cfg), cfg)
            return
        cores = os.cpu_count() or 1
        if cfg.search.backend == "local" and cfg.search.jobs > cores:
            click.echo(f"warning: {cfg.search.jobs} jobs on {cores} cores: workers will share cores "
                       f"(each still gets 1 thread); --jobs {cores} is usually as fast.", err=True)
        if dry_run:
            search_mod.preflight(cfg, connect=False)  # a dry run also says whether the real one could start
            _print_plan(cfg, fmt)
            return
    except UserError as err:
        _fail(err)
    progress = _progress_for(cfg)
    outcome = _guarded(lambda: search_mod.search(cfg, runs_dir, progress=progress), progress)
    _print_outcome(outcome, top, fmt)


def _check_metrics(result: Any, cfg: Any) -> None:
    """What one trial reported, as hptune read it: every report, the result, the end of its output."""
    import pandas as pd

    from .report.tables import render

    click.echo(f"trial {result.trial}: {result.status.value}" + (f" ({result.error})" if result.error else ""), err=True)
    if result.curve:
        click.echo(f"{len(result.curve)} report(s) of {cfg.objective.metric!r} read:", err=True)
        click.echo(render(pd.DataFrame(result.curve)), nl=False)
    if result.metrics:
        click.echo("result (the last report): " + ", ".join(f"{k}={v:.6g}" for k, v in result.metrics.items()), err=True)
    for name, data in (result.files or {}).items():
        tail = data.decode("utf-8", errors="replace").strip().splitlines()[-5:]
        if tail:
            click.echo(f"--- the end of its {name} ---\n" + "\n".join(tail), err=True)
    if result.status.value != "ok":
        sys.exit(1)


PLAN_CHUNK = 10_000
PLAN_WHOLE_MAX = 100_000  # table, markdown and json are built whole; csv streams


def _print_plan(cfg: Any, fmt: str) -> None:
    """The trials of a dry run; csv streams in chunks, so `| head` stops it early."""
    import pandas as pd

    from .report.tables import render
    from .search import plan_trials
    from .space import format_value

    n = cfg.search.trials
    if fmt != "csv" and n > PLAN_WHOLE_MAX:
        raise click.UsageError(f"--dry-run prints at most {PLAN_WHOLE_MAX:,} trials as {fmt}; got {n:,}. "
                               "Use --format csv, which streams any number.")
    for first in range(0, n, PLAN_CHUNK if fmt == "csv" else max(n, 1)):
        frame = pd.DataFrame(plan_trials(cfg, trials=min(PLAN_CHUNK if fmt == "csv" else n, n - first), first=first))
        if fmt in ("table", "markdown"):
            for col in cfg.space.names:
                frame[col] = [format_value(cfg.space[col], v) for v in frame[col]]
        text = render(frame, fmt)
        if fmt == "csv" and first:
            text = text.split("\n", 1)[1]  # the header once
        click.echo(text, nl=False)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--trials", type=click.IntRange(min=1), help="Trials in the new round (default: as before).")
@click.option("--top", type=click.IntRange(min=1),
              help="How many best trials define the region (default: a fifth of the finished, 3 to 10).")
@click.option("--margin", type=click.FloatRange(min=0, max=1), help="Widening on each side, as a fraction of the old width.")
@click.option("--jobs", type=click.IntRange(min=1), help="Parallel worker processes.")
@click.option("--dry-run", is_flag=True, help="Print the zoomed space, and stop.")
def refine(run_dir: Path, trials: int | None, top: int | None, margin: float | None, jobs: int | None,
           dry_run: bool) -> None:
    """Zoom in on the best trials of a run's latest round and run another round.

    The zoom happens in each range's sampling coordinate (log10 x for log,
    log10(1 - x) for one_minus_log); the new space is written to
    RUN_DIR/rounds/round-N.yaml.

    \b
    Example:
      hptune refine runs/digits --trials 25 --top 5
      hptune refine runs/digits --dry-run
    """
    from . import search as search_mod

    try:
        if dry_run:
            import yaml

            z, next_round = search_mod.plan_refine(run_dir, top=top, margin=margin)
            click.echo(f"# round {next_round}: zoomed on the top {z.top} of {z.finished} finished trials, margin {z.margin:g}")
            click.echo(yaml.safe_dump({"space": z.space.to_yaml()}, sort_keys=False, default_flow_style=None), nl=False)
            for note in z.notes:
                click.echo(f"note: {note}", err=True)
            return
    except UserError as err:
        _fail(err)
    progress = _guarded(lambda: _progress_for(run_dir))
    outcome = _guarded(lambda: search_mod.refine(run_dir, trials=trials, top=top, jobs=jobs, margin=margin,
                                                 progress=progress), progress)
    _print_outcome(outcome, 20)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--jobs", type=click.IntRange(min=1), help="Parallel worker processes.")
def resume(run_dir: Path, jobs: int | None) -> None:
    """Finish an interrupted run: the trials its round still owed, then any planned rounds.

    Finished trials are not run again; owed trials get the parameters they
    would have had.

    \b
    Example:
      hptune resume runs/digits
    """
    from . import search as search_mod
    from .store import RunStore

    if _guarded(lambda: RunStore.open(run_dir).kind) == "panda":
        from . import panda as panda_mod

        branch = _guarded(lambda: panda_mod.resume(run_dir, progress=_PandaProgress()))
        if branch:
            _panda_done(run_dir, branch)
        return
    progress = _guarded(lambda: _progress_for(run_dir))
    outcome = _guarded(lambda: search_mod.resume(run_dir, jobs=jobs, progress=progress), progress)
    _print_outcome(outcome, 20)


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Where to look for runs when none is given.")
@click.option("--top", type=click.IntRange(min=0), default=0, help="Rows to show (0 = all).")
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="table", show_default=True,
              help="table for people; csv, markdown or json for machines and documents (data only on stdout).")
@click.option("--files/--no-files", default=True, show_default=True,
              help="With one RUN_DIR: rebuild results.csv, results.md and report.html in it when the trial log "
                   "is newer than they are.")
def report(run_dirs: tuple[Path, ...], runs_dir: Path, top: int, fmt: str, files: bool) -> None:
    """Print the ranked results of a run, or compare runs.

    With one RUN_DIR: its trials, best first (values on their scale), then an
    estimate of which parameters mattered; RUN_DIR/report.html (open it in a
    browser), results.md and results.csv are brought up to date. With several,
    or none (every run under --runs-dir): one row per run with its best trial,
    trials, rounds and wall time. With --format csv, markdown or json, stdout
    holds only the table (csv and json: full-precision values, as in
    results.csv); notes and the influence estimate go to stderr.

    \b
    Example:
      hptune report runs/digits --top 10
      hptune report runs/digits --format csv > digits.csv
      hptune report                      # every run under runs/
      hptune report runs/a runs/b --format markdown
    """
    from .report import files as files_mod
    from .report import summary as summary_mod
    from .report import tables, text
    from .runstate import Run

    try:
        if len(run_dirs) == 1 and _kind(run_dirs[0]) == "panda":
            from .report import panda as panda_report

            click.echo(panda_report.branch_text(run_dirs[0], fmt), nl=False)
            if files:
                try:
                    paths = panda_report.write_panda_report(run_dirs[0])
                    click.echo(f"report: wrote {', '.join(str(p) for p in paths)}", err=True)
                except OSError as err:
                    from .errors import storage_reason

                    click.echo(f"warning: cannot write the report files in {run_dirs[0]} ({storage_reason(err)}).",
                               err=True)
            return
        if len(run_dirs) == 1:
            run = Run.open(run_dirs[0])
            stale = files and not files_mod.report_files_fresh(run)
            full = text.run_frame(run, curves=stale)  # built once, for the table and (with curves) the files
            frame = full.drop(columns=["curve"]) if stale else full
            if fmt in ("csv", "json"):
                # machines get full-precision numbers, as in results.csv
                shown = frame.head(top) if top else frame
            else:
                shown = tables.display_frame(frame, run.config.space, metric=run.metric, top=top or None)
            click.echo(tables.render(shown, fmt), nl=False)
            human = fmt == "table"  # other formats keep stdout to the table alone
            if top and len(frame) > top:
                click.echo(f"(the best {top} of {len(frame)} trials; --top 0 shows all)", err=not human)
            estimate = text.run_influence(run, frame)
            click.echo("", err=not human)
            click.echo(text.run_headline(run, frame), err=not human)
            click.echo(text.influence_text(estimate), nl=False, err=not human)
            halving = text.halving_text(run)
            if halving:
                click.echo("", err=not human)
                click.echo(halving, nl=False, err=not human)
            if files:
                _report_files(run, files_mod, (full, estimate) if stale else None)
            return
        paths = list(dict.fromkeys(run_dirs)) or summary_mod.list_runs(runs_dir)  # a folder named twice shows once
        if not paths:
            click.echo(f"no runs under {runs_dir}; start one with `hptune search CONFIG`.", err=True)
            return
        frame = summary_mod.summary_frame(paths)
        if top:
            frame = frame.head(top)
        if fmt in ("table", "markdown"):
            frame = summary_mod.display_summary(frame)
        click.echo(tables.render(frame, fmt), nl=False)
    except UserError as err:
        _fail(err)


class _PandaProgress:
    """One line per epoch on stderr, with a compact plot of the curve so far where the terminal allows."""

    BARS = "▁▂▃▄▅▆▇█"

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "note":
            click.echo(f"note: {info['text']}", err=True)
        elif kind == "branch":
            b = info["branch"]
            origin = f"from {b.parent}@{b.fork_epoch}" if b.parent else "from scratch"
            changes = ", ".join(f"{k}={v}" for k, v in b.overrides.items())
            click.echo(f"{b.name}: {origin}{' with ' + changes if changes else ''}, to epoch {b.target_epoch} "
                       f"-> {info['run_dir']}", err=True)
        elif kind == "epoch":
            p = info["point"]
            line = (f"{info['branch']} epoch {p['epoch']}/{info['target']}  train_loss {p['train_loss']:.4f}  "
                    f"val_loss {p['val_loss']:.4f}  val_accuracy {p['val_accuracy']:.4f}")
            if self.tty:
                curve = info["curve"]
                line += (f"  acc {self._spark([c['val_accuracy'] for c in curve])}"
                         f"  loss {self._spark([c['val_loss'] for c in curve])}")
            click.echo(line, err=True)

    def _spark(self, values: list[float], width: int = 24) -> str:
        import math

        values = [v for v in values[-width:] if isinstance(v, (int, float)) and math.isfinite(v)]
        if not values:
            return ""
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        return "".join(self.BARS[min(7, int((v - lo) / span * 7.999))] for v in values)


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A value for this model or branch (repeat for several), e.g. --set learning_rate=3e-4.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs to train (a fork: epochs beyond the fork).")
@click.option("--trial", type=click.IntRange(min=0), help="Start from this trial of a search run (SOURCE).")
@click.option("--from", "origin", metavar="BRANCH@EPOCH", help="Fork a branch of a panda run (SOURCE) at an epoch.")
@click.option("--export", nargs=2, metavar="BRANCH@EPOCH FILE.pt",
              help="Write a branch's weights at an epoch (a state_dict of tensors) to FILE.pt.")
@click.option("--name", help="Name of a new panda run (default: the config's name, or RUN-tN).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Folder for a new panda run started from a config.")
def panda(source: Path, sets: tuple[str, ...], epochs: int | None, trial: int | None, origin: str | None,
          export: tuple[str, str] | None, name: str | None, runs_dir: Path) -> None:
    """Babysit one model: train it epoch by epoch, fork it from any epoch with new values.

    SOURCE is a config file (a new model: its fixed values, --set, defaults), a
    search run with --trial N (that trial, retrained to its end, then continued
    with --set/--epochs), or a panda run with --from BRANCH@EPOCH (a new branch
    from that epoch's checkpoint). Every epoch is checkpointed; Ctrl-C keeps
    them all and `hptune resume` continues the branch. What a fork may change:
    learning_rate, beta1, beta2, epsilon, weight_decay, lr_decay, bn_momentum,
    batch_size, epochs, bn_stats; shapes are refused.

    \b
    Example:
      hptune panda configs/digits.yaml --set learning_rate=3e-3 --epochs 10
      hptune panda runs/digits --trial 7 --set learning_rate=3e-4 --epochs 5
      hptune panda runs/digits-t7 --from b0@8 --set learning_rate=1e-4 --epochs 5
      hptune panda runs/digits-t7 --export b1@13 model.pt
    """
    from . import panda as panda_mod

    progress = _PandaProgress()

    def act() -> None:
        overrides = panda_mod.parse_sets(sets)
        if source.is_file() or source.suffix in (".yaml", ".yml"):
            from .config import load_config, with_overrides

            if trial is not None or origin or export:
                raise UserError(f"{source} is a config file: --trial, --from and --export take a run folder.")
            cfg = with_overrides(load_config(source), name=name)
            path = panda_mod.start(cfg, runs_dir, overrides=overrides, epochs=epochs, progress=progress)
            _panda_done(path, "b0")
        elif export:
            path, build = panda_mod.export(source, export[0], export[1])
            click.echo(f"wrote {path}: the weights of {export[0]} (a state_dict of tensors). Load them with:\n"
                       f"  from hptune.training.models import BNConvNet, BNMLP\n  model = {build}\n"
                       f"  model.load_state_dict(torch.load({str(path)!r}, weights_only=True)); model.eval()", err=True)
        elif origin:
            branch = panda_mod.fork(source, origin, overrides=overrides, epochs=epochs, progress=progress)
            _panda_done(source, branch)
        elif trial is not None:
            path = panda_mod.from_trial(source, trial, overrides=overrides, epochs=epochs, name=name, progress=progress)
            _panda_done(path, None)
        else:
            raise UserError(f"{source}: give --trial N to start from a trial of a search run, --from BRANCH@EPOCH to "
                            "fork a panda run, or --export BRANCH@EPOCH FILE.pt.")

    _guarded(act)


def _panda_done(run_dir: Path, branch: str | None) -> None:
    from . import panda as panda_mod

    _, state, config = panda_mod.load(run_dir)
    metric, goal = config.objective.metric, config.objective.goal
    b = state.branches[branch] if branch else list(state.branches.values())[-1]
    best = b.best(metric, goal)
    if best is not None:
        click.echo(f"{b.name} at epoch {b.epoch}: {metric} {b.points[-1].get(metric, float('nan')):.4f} (best "
                   f"{best[metric]:.4f} at epoch {best['epoch']}). Fork it: hptune panda {run_dir} --from "
                   f"{b.name}@{best['epoch']} --set learning_rate=... --epochs N", err=True)


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
def convert(sweep_file: Path) -> None:
    """Print the hptune config equivalent to a Weights & Biases sweep file.

    Notes (as comments) say what changes; the result gains what W&B lacks,
    such as the 1 - beta scale (scale: one_minus_log) for averaging coefficients.

    \b
    Example:
      hptune convert sweep.yaml > config.yaml
    """
    from .config.wandb import convert_file

    try:
        click.echo(convert_file(sweep_file), nl=False)
    except UserError as err:
        _fail(err)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def repair(run_dir: Path) -> None:
    """Move damaged lines of a run's trial log aside, keeping every intact trial.

    A line that is not a well-formed event (edited by hand, damaged on disk) stops
    every command that reads the log. This moves such lines, with their line
    numbers, into RUN_DIR/trials.jsonl.damaged (nothing is deleted) and keeps the
    rest; the run then reads, reports and resumes again.

    \b
    Example:
      hptune repair runs/digits
    """
    from .runstate import repair_log
    from .store import RunStore

    try:
        store = RunStore.open(run_dir)
        with store.locked():
            done = repair_log(store)
    except OSError as err:
        from .errors import storage_reason

        _fail(UserError(f"{run_dir}: cannot repair the log ({storage_reason(err)}); the log was left as it was."))
    except UserError as err:
        _fail(err)
    if not done.moved:
        click.echo(f"repair: {store.log_path} is intact ({done.trials} trials); nothing to move.", err=True)
        return
    lines = ", ".join(map(str, done.moved[:20])) + (" ..." if len(done.moved) > 20 else "")
    click.echo(f"repair: moved {len(done.moved)} damaged line(s) of {store.log_path} (line {lines}) into "
               f"{done.damaged_path}; kept {done.kept} lines, {done.trials} trials.", err=True)


def _kind(run_dir: Path) -> str:
    from .store import RunStore

    return RunStore.open(run_dir).kind


def _report_files(run: Any, files_mod: Any, made: tuple[Any, Any] | None) -> None:
    """Bring results.csv, results.md and report.html up to date; say what was written, or why not.
    made: (frame with curves, influence estimate) already built for stale files; None when they are fresh."""
    if made is None:
        click.echo(f"report: {run.path / 'report.html'} (up to date)", err=True)
        return
    try:
        paths = files_mod.write_report_files(run, *made)
    except OSError as err:
        from .errors import storage_reason

        click.echo(f"warning: cannot write the report files in {run.path} ({storage_reason(err)}); "
                   "the table above is complete. Pass --no-files to skip them.", err=True)
    else:
        click.echo(f"report: wrote {', '.join(str(p) for p in paths)}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
