"""YAML -> validated, frozen config objects (`hptune.config.schema`). Every check of user input lives here.

Errors name the file and line, the key path, the rule, the value received (cut
short) and a fix:

    digits.yaml:7: space.beta1.high: must be < 1 for scale one_minus_log; got 1.0. Try 0.999.

PyYAML reads `1e-4` as the string '1e-4' (numeric strings are accepted where a
number is expected) and a bare `on`/`yes` as True (an error where a number is
expected, with the reason).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..records import short_repr
from ..space import SCALES, Choice, Fixed, Param, Range, Space
from ..training.params import DEFAULT_FAMILY, FAMILIES, ParamDomain
from .lint import lint_space
from .schema import (BUILTIN_METRICS, NAME_RULE, Config, DataConfig, HalvingConfig, ObjectiveConfig,
                     SearchConfig, run_name_from, valid_name)
from .source import did_you_mean as _did_you_mean
from .source import line_of, parse_yaml, read_text
from .source import num as _num

GOALS = ("maximize", "minimize")
BACKENDS = ("local", "dask")
DEVICES_HINT = "cpu, cuda or cuda:N"

TOP_KEYS = ("name", "seed", "device", "model", "data", "objective", "search", "space")
DATA_KEYS = (*DataConfig.__dataclass_fields__, "seed")
OBJECTIVE_KEYS = ("metric", "goal", "function", "path", "command", "program", "groups")
SEARCH_KEYS = ("trials", "jobs", "threads", "rounds", "top", "margin", "backend", "address", "timeout", "halving",
               "method", "stack")
METHODS = ("random", "grid")
HALVING_KEYS = ("min_epochs", "factor", "max_epochs", "brackets")
RANGE_KEYS = ("low", "high", "scale", "integer", "step")
CHOICE_KEYS = ("values", "weights")
FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


# ----------------------------------------------------------------------------
# loading


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file.

    Raises ConfigError for a missing, unreadable or oversized file, malformed
    YAML, or any invalid value (naming its line).
    """
    path = Path(path)
    raw = parse_yaml(read_text(path), path.name)
    from .wandb import is_wandb_sweep, translate_sweep

    if is_wandb_sweep(raw):  # a Weights & Biases sweep file, run offline: its notes say what changed
        translated, notes = translate_sweep(raw, source=path.name)
        config = parse_config(translated, source=path.name, base_dir=path.resolve().parent, default_name=path.stem)
        return replace(config, notes=tuple(f"{path.name}: {n}" for n in notes))
    return parse_config(raw, source=path.name, base_dir=path.resolve().parent, default_name=path.stem)


def parse_config(raw: Any, *, source: str = "config", base_dir: Path | str = ".",
                 default_name: str = "run") -> Config:
    """Validate already-parsed YAML (a dict) into a Config.

    Errors name the line of the key when `raw` came from `hptune.config.source.parse_yaml`.
    """
    v = _Validator(source, raw)
    if raw is None:
        raise v.fail("", "the file is empty; it needs at least a `space:` mapping. See configs/digits.yaml.")
    if not isinstance(raw, dict):
        raise v.fail("", f"the top level must be a mapping of keys (name, seed, data, objective, search, space); got {_kind(raw)}.")
    v.keys(raw, TOP_KEYS, "")
    if "name" in raw:
        name = v.string(raw["name"], "name")
        if not valid_name(name):
            raise v.fail("name", f"{NAME_RULE}; got {_q(name)}.")
    else:
        name = run_name_from(default_name)
    seed = v.integer(raw.get("seed", 0), "seed", low=0)
    device = v.string(raw.get("device", "cpu"), "device")
    if not re.match(r"^(cpu|cuda(:\d+)?)$", device):
        raise v.fail("device", f"must be {DEVICES_HINT}; got {_q(device)}.")
    objective = _objective(v, raw.get("objective", {}))
    model = v.one_of(raw.get("model", DEFAULT_FAMILY), "model", tuple(FAMILIES))
    if "model" in raw and not objective.kind == "builtin":
        raise v.fail("model", "chooses the built-in trainer's model family; your objective trains its own model. Remove it.")
    search = _search(v, raw.get("search", {}))
    data = _data(v, raw.get("data", {}))
    data_raw = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    data_seed = v.integer(data_raw.get("seed", 0), "data.seed", low=0)
    if "space" not in raw:
        raise v.fail("space", "is missing: give the parameters to tune, e.g. `learning_rate: {low: 1.0e-4, high: 1.0, scale: log}`.")
    space = _space(v, raw["space"], family=model if objective.kind == "builtin" else None)
    _check_search(v, search, space, objective.kind == "builtin", model)
    warnings = tuple(lint_space(space, source))
    return Config(name=name, seed=seed, space=space, data=data, objective=objective, search=search,
                  device=device, model=model, data_seed=data_seed, source=source, base_dir=str(base_dir),
                  warnings=warnings)


def with_overrides(cfg: Config, *, name: str | None = None, trials: int | None = None,
                   jobs: int | None = None, seed: int | None = None, rounds: int | None = None,
                   backend: str | None = None, address: str | None = None,
                   function: str | None = None, command: str | None = None, metric: str | None = None) -> Config:
    """Apply command-line overrides, validated with the same rules as the file."""
    v = _Validator("command line")
    search = cfg.search
    if trials is not None:
        search = replace(search, trials=v.integer(trials, "--trials", low=1))
    if jobs is not None:
        search = replace(search, jobs=v.integer(jobs, "--jobs", low=1))
    if rounds is not None:
        search = replace(search, rounds=v.integer(rounds, "--rounds", low=1))
    if backend is not None:
        search = replace(search, backend=v.one_of(backend, "--backend", BACKENDS))
    if address is not None:
        search = replace(search, address=address)
    _check_rounds(v, "--rounds", search)
    if search.backend == "dask" and not search.address:
        raise v.fail("--address", _DASK_ADDRESS.format(example="--address tcp://127.0.0.1:8786"))
    out = replace(cfg, search=search)
    if name is not None:
        if not valid_name(name):
            raise v.fail("--name", f"{NAME_RULE}; got {_q(name)}.")
        out = replace(out, name=name)
    if seed is not None:
        out = replace(out, seed=v.integer(seed, "--seed", low=0))
    if function is not None:
        if not FUNCTION_RE.match(function):
            raise v.fail("--objective", f"must look like package.module:function; got {_q(function)}.")
        out = replace(out, objective=replace(out.objective, function=function, command=None))
        if cfg.builtin:  # the built-in trainer's names no longer bind the space
            out = replace(out, model=DEFAULT_FAMILY)
    if command is not None:
        if not command.strip():
            raise v.fail("--command", "is empty; give the command that trains one trial.")
        out = replace(out, objective=replace(out.objective, command=command, function=None))
    if metric is not None:
        out = replace(out, objective=replace(out.objective, metric=metric))
    _check_search(v, out.search, out.space, out.builtin, out.model)  # the overrides against the space
    return out


def parse_space(raw: Any, *, source: str = "config", builtin: bool = True, family: str | None = None) -> Space:
    """Validate a `space:` mapping. builtin: check names and values against the built-in
    trainer's `family` (default: the MLP); otherwise parameter names are free."""
    v = _Validator(source, {"space": raw} if isinstance(raw, dict) else None)
    return _space(v, raw, family=(family or DEFAULT_FAMILY) if builtin else None)


_DASK_ADDRESS = "the dask backend needs the scheduler's address, e.g. {example}."


# ----------------------------------------------------------------------------
# sections


def _objective(v: "_Validator", raw: Any) -> ObjectiveConfig:
    raw = v.mapping(raw, "objective")
    v.keys(raw, OBJECTIVE_KEYS, "objective")
    if raw.get("command") is not None:
        return _command_objective(v, raw)
    for key in ("program", "groups"):
        if raw.get(key) is not None:
            raise v.fail(f"objective.{key}", "belongs to a command objective (objective.command); remove it.")
    function = raw.get("function")
    if function is not None:
        function = v.string(function, "objective.function")
        if not FUNCTION_RE.match(function):
            raise v.fail("objective.function",
                         f"must look like package.module:function (a function train(params) -> dict of metrics); got {_q(function)}.")
    metric = v.string(raw.get("metric", "val_accuracy"), "objective.metric")
    if function is None and metric not in BUILTIN_METRICS:
        hint = " The test split never ranks trials." if metric.startswith("test_") else ""
        raise v.fail("objective.metric",
                     f"the built-in trainer reports {', '.join(BUILTIN_METRICS)}; got {_q(metric)}.{hint}{_did_you_mean(metric, BUILTIN_METRICS)}")
    default_goal = "minimize" if metric.endswith("loss") or metric.endswith("error") else "maximize"
    goal = v.one_of(raw.get("goal", default_goal), "objective.goal", GOALS)
    path = raw.get("path")
    if path is not None:
        path = v.string(path, "objective.path")
    return ObjectiveConfig(metric=metric, goal=goal, function=function, path=path)


def _command_objective(v: "_Validator", raw: dict) -> ObjectiveConfig:
    if raw.get("function") is not None:
        raise v.fail("objective.command", "give either a command or a function, not both.")
    command = raw["command"]
    if isinstance(command, str):
        if not command.strip():
            raise v.fail("objective.command", "is empty; give the command that trains one trial, e.g. "
                                              "\"python train.py --lr {learning_rate}\".")
        cmd: str | tuple[str, ...] = command
    elif isinstance(command, list) and command and all(isinstance(t, (str, int, float)) for t in command):
        cmd = tuple(str(t) for t in command)
    else:
        raise v.fail("objective.command", f"must be a command string, or a list of words (W&B's form); got {_kind(command)}.")
    if "metric" not in raw:
        raise v.fail("objective.metric", "is missing: name the metric your command reports, e.g. `metric: val_loss` "
                                         "(printed as JSON lines, name=value or `name: value`).")
    metric = v.string(raw["metric"], "objective.metric")
    default_goal = "minimize" if metric.endswith("loss") or metric.endswith("error") else "maximize"
    goal = v.one_of(raw.get("goal", default_goal), "objective.goal", GOALS)
    program = raw.get("program")
    if program is not None:
        program = v.string(program, "objective.program")
    groups = raw.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise v.fail("objective.groups", f"must be a list of parameter group names; got {_kind(groups)}.")
    path = raw.get("path")
    if path is not None:
        path = v.string(path, "objective.path")
    return ObjectiveConfig(metric=metric, goal=goal, path=path, command=cmd, program=program, groups=tuple(groups))


def _search(v: "_Validator", raw: Any) -> SearchConfig:
    raw = v.mapping(raw, "search")
    v.keys(raw, SEARCH_KEYS, "search")
    d = SearchConfig()
    top = raw.get("top")
    timeout = raw.get("timeout")
    backend = v.one_of(raw.get("backend", d.backend), "search.backend", BACKENDS)
    address = raw.get("address")
    if address is not None:
        address = v.string(address, "search.address")
    if backend == "dask" and address is None:
        raise v.fail("search.address", _DASK_ADDRESS.format(example="`address: tcp://127.0.0.1:8786`"))
    out = SearchConfig(
        trials=v.integer(raw.get("trials", d.trials), "search.trials", low=1),
        jobs=v.integer(raw.get("jobs", os.cpu_count() or 1), "search.jobs", low=1),
        rounds=v.integer(raw.get("rounds", d.rounds), "search.rounds", low=1),
        top=None if top is None else v.integer(top, "search.top", low=1),
        margin=v.number(raw.get("margin", d.margin), "search.margin", low=0.0, high=1.0),
        backend=backend,
        address=address,
        threads=v.integer(raw.get("threads", d.threads), "search.threads", low=1),
        timeout_s=None if timeout is None else v.number(timeout, "search.timeout", low=0.0, open_low=True),
        halving=_halving(v, raw.get("halving")),
        method=v.one_of(raw.get("method", "random"), "search.method", METHODS),
        stack=_stack(v, raw.get("stack", "auto")),
    )
    _check_rounds(v, "search.rounds", out)
    return out


def _stack(v: "_Validator", raw: Any) -> int | None:
    """search.stack: auto (None), off (1) or a group size K >= 1."""
    if raw is None or raw == "auto":
        return None
    if raw is False or raw == "off":  # (0 == False: a 0 must reach the integer check)
        return 1
    if isinstance(raw, str) and not raw.strip().isdigit():
        raise v.fail("search.stack", f"must be auto, off or a number of trials to train as one model (e.g. 16); "
                                     f"got {_q(raw)}.")
    return v.integer(raw, "search.stack", low=1)


def _halving(v: "_Validator", raw: Any) -> HalvingConfig | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return HalvingConfig()
    raw = v.mapping(raw, "search.halving")
    v.keys(raw, HALVING_KEYS, "search.halving")
    d = HalvingConfig()
    max_epochs = raw.get("max_epochs")
    return HalvingConfig(
        min_epochs=v.integer(raw.get("min_epochs", d.min_epochs), "search.halving.min_epochs", low=1),
        factor=v.integer(raw.get("factor", d.factor), "search.halving.factor", low=2),
        max_epochs=None if max_epochs is None else v.integer(max_epochs, "search.halving.max_epochs", low=1),
        brackets=v.integer(raw.get("brackets", d.brackets), "search.halving.brackets", low=1),
    )


def _check_search(v: "_Validator", search: SearchConfig, space: Space, builtin: bool, family: str) -> None:
    """The checks that tie `search` to the space and the objective: run for a file and after overrides."""
    _check_halving(v, search, space, builtin, family)
    if search.method == "grid":
        _check_grid(v, search, space)


def _check_grid(v: "_Validator", search: SearchConfig, space: Space) -> None:
    from ..strategies.grid import grid_size

    for p in space.params:
        if isinstance(p, Range):
            raise v.fail(f"space.{p.name}", "is a range, and a grid needs the values to try: give a list "
                                            f"(e.g. [{_num(p.low)}, {_num(p.high)}]), or search at random.")
    if search.rounds > 1:
        raise v.fail("search.rounds", "a grid runs once: every combination; coarse to fine needs random rounds.")
    size = grid_size(space)
    if search.trials > size:
        raise v.fail("search.trials", f"the grid has {size} combinations; got {search.trials} trials. "
                                      f"Set trials to {size} (or fewer, to run the first ones).")


def _check_halving(v: "_Validator", config_search: SearchConfig, space: Space, builtin: bool, family: str) -> None:
    """One budget per round: the built-in trainer's fixed `epochs`, or halving.max_epochs (or a fixed
    `epochs`) for your own objective; and, over several rounds, enough trials reaching it to zoom on."""
    from ..refine import MIN_FINISHED
    from ..strategies.halving import expected_finishers

    h = config_search.halving
    if h is None:
        return
    epochs = space["epochs"] if "epochs" in space else None
    if builtin:
        if h.max_epochs is not None:
            raise v.fail("search.halving.max_epochs", "the built-in trainer's budget is its `epochs` parameter; "
                                                      "remove max_epochs and set epochs in the space.")
        if epochs is not None and not isinstance(epochs, Fixed):
            raise v.fail("space.epochs", "successive halving compares trials at the same epochs, so epochs must be one "
                                         "fixed value (e.g. `epochs: 27`), not a range or a list.")
        budget = epochs.value if isinstance(epochs, Fixed) else FAMILIES[family]["epochs"].default
    else:
        if h.max_epochs is not None:
            budget = h.max_epochs
        elif isinstance(epochs, Fixed) and isinstance(epochs.value, int) and not isinstance(epochs.value, bool):
            budget = epochs.value
        else:
            raise v.fail("search.halving", "needs the full budget of a trial: set max_epochs (the number of "
                                           "per-epoch results a trial yields), or a fixed `epochs` in the space.")
    if h.min_epochs >= budget:
        raise v.fail("search.halving.min_epochs", f"must be below the full budget ({budget} epochs) so that there is "
                                                  f"something to stop early; got {h.min_epochs}.")
    if config_search.rounds > 1:
        finishing = expected_finishers(config_search.trials, h, budget)
        if finishing < MIN_FINISHED:
            raise v.fail("search.halving", f"with {config_search.trials} trials a round and factor {h.factor}, only "
                                           f"{finishing} trial(s) would reach the full budget, and coarse to fine needs "
                                           f"{MIN_FINISHED} to zoom on. Raise search.trials or lower the factor.")


def _check_rounds(v: "_Validator", key: str, search: SearchConfig) -> None:
    from ..refine import MIN_FINISHED

    if search.rounds > 1 and search.trials < MIN_FINISHED:
        raise v.fail(key, f"{search.rounds} rounds need at least {MIN_FINISHED} trials per round to zoom on; "
                          f"got search.trials {search.trials}. Raise trials or use one round.")


def _data(v: "_Validator", raw: Any) -> DataConfig:
    raw = v.mapping(raw, "data")
    v.keys(raw, DATA_KEYS, "data")
    d = DataConfig()
    dataset = v.string(raw.get("dataset", d.dataset), "data.dataset")
    val = v.number(raw.get("val_fraction", d.val_fraction), "data.val_fraction", low=0.0, high=1.0, open_low=True, open_high=True)
    test = v.number(raw.get("test_fraction", d.test_fraction), "data.test_fraction", low=0.0, high=1.0, open_high=True)
    if val + test >= 1:
        raise v.fail("data.test_fraction",
                     f"val_fraction + test_fraction must be < 1 to leave training data; got {val:g} + {test:g}.")
    target = raw.get("target")
    if target is not None:
        target = v.string(target, "data.target")
    features = v.integer(raw.get("features", d.features), "data.features", low=1)
    informative = v.integer(raw.get("informative", min(d.informative, features)), "data.informative", low=1)
    if informative > features:
        raise v.fail("data.informative", f"must be <= data.features ({features}); got {informative}.")
    return DataConfig(
        dataset=dataset, val_fraction=val, test_fraction=test, target=target,
        standardize=v.boolean(raw.get("standardize", d.standardize), "data.standardize"),
        samples=None if raw.get("samples") is None else v.integer(raw.get("samples"), "data.samples", low=10),
        features=features,
        classes=v.integer(raw.get("classes", d.classes), "data.classes", low=2),
        informative=informative,
        class_sep=v.number(raw.get("class_sep", d.class_sep), "data.class_sep", low=0.0, open_low=True),
        image_size=v.integer(raw.get("image_size", d.image_size), "data.image_size", low=8),
    )


def _space(v: "_Validator", raw: Any, *, family: str | None) -> Space:
    """family: the built-in trainer's model family whose parameters these are; None = free names."""
    if not isinstance(raw, dict) or not raw:
        raise v.fail("space", f"must be a non-empty mapping of parameter names to ranges, lists or values; got {_kind(raw)}.")
    domains = FAMILIES[family] if family is not None else {}
    params: list[Param] = []
    for name, spec in raw.items():
        key = f"space.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][\w.-]*$", name):
            raise v.fail(key, "parameter names must be identifiers (letters, digits, '_').")
        domain = domains.get(name)
        if family is not None and domain is None:
            others = [f for f, table in FAMILIES.items() if f != family and name in table]
            where = f" It belongs to model: {others[0]}." if others else ""
            raise v.fail(key, f"unknown parameter for the built-in trainer's {family} model.{where}{_did_you_mean(name, domains)} "
                              f"Valid names: {', '.join(domains)}. (With objective.function, names are free.)")
        if isinstance(spec, dict) and "value" in spec:
            v.keys(spec, ("value",), key)
            value = spec["value"]
            structured = isinstance(value, (list, dict)) or value is None  # free for your own objective only
            params.append(Fixed(name, value if domain is None and structured else _scalar(v, f"{key}.value", value, domain)))
        elif isinstance(spec, dict) and "values" in spec:
            params.append(_weighted_choice(v, name, spec, domain))
        elif isinstance(spec, dict):
            params.append(_range(v, name, spec, domain))
        elif isinstance(spec, list):
            params.append(_choice(v, name, spec, domain))
        else:
            params.append(_fixed(v, name, spec, domain))
    return Space(tuple(params))


def _range(v: "_Validator", name: str, spec: dict, domain: ParamDomain | None) -> Range:
    key = f"space.{name}"
    v.keys(spec, RANGE_KEYS, key)
    for end in ("low", "high"):
        if end not in spec:
            raise v.fail(f"{key}.{end}", f"is missing: a range needs both low and high, e.g. {{low: 0.001, high: 0.1, scale: log}}; for a fixed value write `{name}: 0.01`, for a choice a list.")
    if domain is not None and domain.kind not in ("float", "int"):
        raise v.fail(key, f"{name} is {domain.describe()}, so it cannot be a range; use a list to choose among values, e.g. {name}: [{', '.join(_yaml_str(c) for c in (domain.choices or (True, False)))}].")
    scale = v.one_of(spec.get("scale", "uniform"), f"{key}.scale", SCALES)
    default_integer = domain is not None and domain.kind == "int"
    integer = v.boolean(spec.get("integer", default_integer), f"{key}.integer")
    low = v.number(spec["low"], f"{key}.low")
    high = v.number(spec["high"], f"{key}.high")
    if domain is not None and domain.kind == "int" and not integer:
        raise v.fail(f"{key}.integer", f"{name} takes whole numbers; remove `integer: false`.")
    if integer:
        if scale == "one_minus_log":
            raise v.fail(f"{key}.integer", "scale one_minus_log is for coefficients in [0, 1) and cannot be integer; use scale uniform or log.")
        if "step" not in spec:  # with a step, values are rounded to its multiples whatever the ends
            for end, x in (("low", low), ("high", high)):
                if x != int(x):
                    raise v.fail(f"{key}.{end}", f"must be a whole number for an integer range; got {x:g}.")
            low, high = float(int(low)), float(int(high))
    if not low < high:
        raise v.fail(f"{key}.high", f"must be greater than low ({_num(low)}); got {_num(high)}. For a fixed value write `{name}: {_num(low)}`.")
    if scale == "log":
        if low <= 0 or (integer and low < 1):
            rule = "must be >= 1 for an integer range on scale log" if integer else "must be > 0 for scale log"
            raise v.fail(f"{key}.low", f"{rule}; got {_num(low)}. Use scale uniform for ranges that include 0.")
    if scale == "one_minus_log":
        if low < 0:
            raise v.fail(f"{key}.low", f"must be >= 0 for scale one_minus_log (it samples 1 - x on a log scale); got {_num(low)}.")
        if high >= 1:
            raise v.fail(f"{key}.high", f"must be < 1 for scale one_minus_log; got {_num(high)}. Try 0.999.")
    if domain is not None:
        for end, x in (("low", low), ("high", high)):
            if not domain.accepts(int(x) if integer else x):
                raise v.fail(f"{key}.{end}", f"{name} must be {domain.describe()}; got {_num(x)}.")
    step = None
    if "step" in spec:
        step = v.number(spec["step"], f"{key}.step", low=0.0, open_low=True)
        if integer and step != int(step):
            raise v.fail(f"{key}.step", f"must be a whole number for an integer range; got {_num(step)}.")
        if step >= high - low and not integer:
            raise v.fail(f"{key}.step", f"must be smaller than the range ({_num(high - low)}); got {_num(step)}.")
    return Range(name, low, high, scale=scale, integer=integer, step=step)


def _weighted_choice(v: "_Validator", name: str, spec: dict, domain: ParamDomain | None) -> Choice:
    key = f"space.{name}"
    v.keys(spec, CHOICE_KEYS, key)
    values = spec["values"]
    if not isinstance(values, list):
        raise v.fail(f"{key}.values", f"must be a list of the values to choose from; got {_kind(values)}.")
    choice = _choice(v, name, values, domain, key=f"{key}.values")
    weights = spec.get("weights")
    if weights is None:
        return choice
    if not isinstance(weights, list) or len(weights) != len(values):
        raise v.fail(f"{key}.weights", f"must be a list of {len(values)} numbers, one per value; got {_kind(weights)}.")
    ws = tuple(v.number(w, f"{key}.weights[{i}]", low=0.0, open_low=True) for i, w in enumerate(weights))
    return Choice(name, choice.values, ws)


def _choice(v: "_Validator", name: str, spec: list, domain: ParamDomain | None, key: str | None = None) -> Choice:
    key = key or f"space.{name}"
    if not spec:
        raise v.fail(key, "an empty list has nothing to choose from; give at least one value.")
    values: list[Any] = []
    for i, item in enumerate(spec):
        values.append(_scalar(v, f"{key}[{i}]", item, domain))
    seen: list[Any] = []
    for i, x in enumerate(values):
        if any(type(x) is type(s) and x == s for s in seen):
            raise v.fail(f"{key}[{i}]", f"{_q(_yaml_str(x))} is listed twice; each choice should appear once.")
        seen.append(x)
    return Choice(name, tuple(values))


def _fixed(v: "_Validator", name: str, spec: Any, domain: ParamDomain | None) -> Fixed:
    return Fixed(name, _scalar(v, f"space.{name}", spec, domain))


def _scalar(v: "_Validator", key: str, item: Any, domain: ParamDomain | None) -> Any:
    if domain is None and "[" in key and (isinstance(item, (dict, list)) or item is None):
        return item  # your own objective may choose among lists or mappings (e.g. layer sizes [64, 64])
    if isinstance(item, (dict, list)) or item is None:
        raise v.fail(key, f"must be a single number, string or boolean; got {_kind(item)}.")
    if isinstance(item, float) and not math.isfinite(item):
        raise v.fail(key, f"must be a finite number; got {item}.")
    if domain is None:
        if not isinstance(item, (str, int, float, bool)):
            raise v.fail(key, f"must be a single number, string or boolean; got {_kind(item)}.")
        return item
    if domain.kind in ("float", "int"):
        x = v.number(item, key)
        if domain.kind == "int":
            if x != int(x):
                raise v.fail(key, f"must be {domain.describe()}; got {_num(x)}.")
            x = int(x)
        if not domain.accepts(x):
            raise v.fail(key, f"must be {domain.describe()}; got {_num(x)}.")
        return x
    if domain.kind == "bool":
        return v.boolean(item, key)
    if item not in domain.choices:
        raise v.fail(key, f"must be {domain.describe()}; got {_q(item)}.{_did_you_mean(str(item), [str(c) for c in domain.choices])}")
    return item


# ----------------------------------------------------------------------------
# primitives


class _Validator:
    """Typed accessors that raise ConfigError with the file, the line (when known) and the key path.

    root: the whole parsed document, to look up lines (`hptune.config.source.line_of`).
    """

    def __init__(self, source: str, root: Any = None) -> None:
        self.source = source
        self.root = root

    def fail(self, key: str, message: str) -> ConfigError:
        line = line_of(self.root, key) if key else None
        return ConfigError(self.source, key, message, line=line)

    def mapping(self, raw: Any, key: str) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(key, f"must be a mapping (key: value lines); got {_kind(raw)}.")
        return raw

    def keys(self, raw: dict, valid: tuple[str, ...] | Any, key: str) -> None:
        for k in raw:
            if k not in valid:
                path = f"{key}.{k}" if key else str(k)
                hint = _did_you_mean(k, valid) if isinstance(k, str) else ""
                raise self.fail(path, f"unknown key.{hint} Valid keys{' under ' + key if key else ''}: {', '.join(valid)}.")

    def string(self, raw: Any, key: str) -> str:
        if isinstance(raw, bool) or raw is None or isinstance(raw, (dict, list)):
            raise self.fail(key, f"must be a string; got {_kind(raw)}.")
        return str(raw)

    def number(self, raw: Any, key: str, *, low: float | None = None, high: float | None = None,
               open_low: bool = False, open_high: bool = False) -> float:
        if isinstance(raw, bool):
            raise self.fail(key, f"must be a number; got the boolean {str(raw).lower()} (YAML reads bare on/off/yes/no/true/false as booleans). Write a number instead.")
        if isinstance(raw, str):
            try:
                raw = float(raw.strip())
            except ValueError:
                raise self.fail(key, f"must be a number; got the string {_q(raw)}.") from None
        if not isinstance(raw, (int, float)):
            raise self.fail(key, f"must be a number; got {_kind(raw)}.")
        try:
            x = float(raw)
        except OverflowError:  # an int too large for a float
            raise self.fail(key, f"must be a finite number; got {_q(raw)}.") from None
        if not math.isfinite(x):
            raise self.fail(key, f"must be a finite number; got {_q(raw)}.")
        if low is not None and (x < low or (open_low and x == low)):
            raise self.fail(key, f"must be {'>' if open_low else '>='} {low:g}; got {_num(x)}.")
        if high is not None and (x > high or (open_high and x == high)):
            raise self.fail(key, f"must be {'<' if open_high else '<='} {high:g}; got {_num(x)}.")
        return x

    def integer(self, raw: Any, key: str, *, low: int | None = None) -> int:
        x = self.number(raw, key)
        if x != int(x):
            raise self.fail(key, f"must be a whole number; got {_num(x)}.")
        if low is not None and x < low:
            raise self.fail(key, f"must be an integer >= {low}; got {int(x)}.")
        return int(x)

    def boolean(self, raw: Any, key: str) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise self.fail(key, f"must be true or false; got {_q(raw)}.")

    def one_of(self, raw: Any, key: str, valid: tuple[str, ...]) -> str:
        if not isinstance(raw, str) or raw not in valid:
            hint = _did_you_mean(raw, valid) if isinstance(raw, str) else ""
            raise self.fail(key, f"must be one of {', '.join(valid)}; got {_q(raw)}.{hint}")
        return raw


def _q(value: Any) -> str:
    """A value quoted in a message: its repr, cut short (a value may be huge)."""
    return short_repr(value, 60)


def _kind(raw: Any) -> str:
    if raw is None:
        return "nothing (an empty value)"
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    return f"{type(raw).__name__} {_q(raw)}"


def _yaml_str(x: Any) -> str:
    return str(x).lower() if isinstance(x, bool) else str(x)
