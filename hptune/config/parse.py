"""YAML -> validated, frozen config objects. Every check of user input lives here.

Errors name the file, the key path, the rule, the value received and a fix:

    digits.yaml: space.beta1.high: must be < 1 for scale one_minus_log; got 1.0

PyYAML reads `1e-4` as the string '1e-4' (numeric strings are accepted where a
number is expected) and a bare `on`/`yes` as True (an error where a number is
expected, with the reason).
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .data import DataConfig
from .errors import ConfigError
from .params import BUILTIN_PARAMS, ParamDomain
from .space import SCALES, Choice, Fixed, Param, Range, Space

BUILTIN_METRICS = ("val_accuracy", "val_loss", "train_loss")
GOALS = ("maximize", "minimize")
BACKENDS = ("local", "dask")
DEVICES_HINT = "cpu, cuda or cuda:N"

TOP_KEYS = ("name", "seed", "device", "data", "objective", "search", "space")
DATA_KEYS = (*DataConfig.__dataclass_fields__, "seed")
OBJECTIVE_KEYS = ("metric", "goal", "function", "path")
SEARCH_KEYS = ("trials", "jobs", "threads", "rounds", "top", "margin", "backend", "address")
RANGE_KEYS = ("low", "high", "scale", "integer")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME_RULE = ("must start with an ASCII letter or digit, followed by letters, digits, '.', '_' or '-' "
             "(it names a folder)")


def run_name_from(stem: str) -> str:
    """A valid run name from a file's stem: other characters become '-' ("my exp" -> "my-exp")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip("._-")
    return name or "run"
FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What a trial optimizes. function: None for the built-in trainer, else "module:attr"."""

    metric: str = "val_accuracy"
    goal: str = "maximize"
    function: str | None = None
    path: str | None = None  # folder put on the import path for `function`; relative to the config file


@dataclass(frozen=True)
class SearchConfig:
    """How trials are run. jobs: worker processes (>= 1); top: None = automatic."""

    trials: int = 25
    jobs: int = 1
    rounds: int = 1
    top: int | None = None
    margin: float = 0.1
    backend: str = "local"
    address: str | None = None
    threads: int | None = None  # CPU threads per worker; None = cores ÷ jobs


@dataclass(frozen=True)
class Config:
    """A validated run configuration. `base_dir` is where relative paths are read from."""

    name: str
    seed: int
    space: Space
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    device: str = "cpu"
    data_seed: int = 0  # the split and the synthetic problem: fixed when `seed` changes, so runs compare
    source: str = "config"
    base_dir: str = "."
    warnings: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        """True when trials run the built-in BN trainer."""
        return self.objective.function is None

    def to_yaml(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The resolved config as plain data; paths made relative to `relative_to`."""
        data = {**self.data.to_dict(), "seed": self.data_seed}
        base = Path(self.base_dir)
        if data["dataset"] not in _builtin_datasets():
            path = Path(data["dataset"])
            path = path if path.is_absolute() else base / path
            data["dataset"] = _relpath(path, relative_to) if relative_to else str(path)
        out: dict[str, Any] = {
            "name": self.name,
            "seed": self.seed,
            "device": self.device,
            "data": data,
            "objective": {k: v for k, v in vars(self.objective).items() if v is not None},
            "search": {k: v for k, v in vars(self.search).items() if v is not None},
            "space": self.space.to_yaml(),
        }
        if self.objective.function is not None and relative_to is not None:
            out["objective"]["path"] = _relpath(Path(self.function_dir), relative_to)
        return out

    @property
    def function_dir(self) -> str:
        """The folder put on sys.path to import objective.function."""
        return str(Path(self.base_dir) / (self.objective.path or "."))


def _relpath(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # another drive on Windows
        return str(Path(path).resolve())


def _builtin_datasets() -> tuple[str, ...]:
    from .data import BUILTIN_DATASETS

    return BUILTIN_DATASETS


# ----------------------------------------------------------------------------
# loading


def load_config(path: str | Path, *, search_path: Path | None = None) -> Config:
    """Read and validate a YAML config file.

    Raises ConfigError for a missing or unreadable file, malformed YAML, or
    any invalid value.
    """
    import yaml

    path = Path(path)
    source = path.name
    if not path.exists():
        raise ConfigError(str(path), "", "config file not found; check the path (e.g. configs/digits.yaml).")
    if path.is_dir():
        raise ConfigError(str(path), "", "is a folder, not a config file; give a .yaml file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), "", f"cannot be read as UTF-8 text ({err}).") from None
    try:
        raw = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as err:
        raise ConfigError(source, err.key_path, f"appears twice (lines {err.first} and {err.second}); "
                                                "YAML keeps only the last one. Remove one of them.") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(source, where, f"malformed YAML: {problem}. Check the indentation and quoting there.") from None
    except yaml.YAMLError as err:
        text = " ".join(str(err).split())  # one paragraph, whatever PyYAML says
        raise ConfigError(source, "", f"malformed YAML: {text}. Is this a YAML text file?") from None
    return parse_config(raw, source=source, base_dir=path.resolve().parent, default_name=path.stem)


class _DuplicateKey(Exception):
    def __init__(self, key_path: str, first: int, second: int) -> None:
        super().__init__(key_path)
        self.key_path, self.first, self.second = key_path, first, second


@functools.lru_cache(maxsize=1)
def _unique_key_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(str(key), seen[key], line)  # the key as written, at its second line
                except TypeError:  # an unhashable key: let PyYAML report it
                    continue
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return Loader


def parse_config(raw: Any, *, source: str = "config", base_dir: Path | str = ".",
                 default_name: str = "run") -> Config:
    """Validate already-parsed YAML (a dict) into a Config."""
    if raw is None:
        raise ConfigError(source, "", "the file is empty; it needs at least a `space:` mapping. See configs/digits.yaml.")
    if not isinstance(raw, dict):
        raise ConfigError(source, "", f"the top level must be a mapping of keys (name, seed, data, objective, search, space); got {_kind(raw)}.")
    v = _Validator(source)
    v.keys(raw, TOP_KEYS, "")
    if "name" in raw:
        name = v.string(raw["name"], "name")
        if not NAME_RE.match(name):
            raise ConfigError(source, "name", f"{NAME_RULE}; got {name!r}.")
    else:
        name = run_name_from(default_name)
    seed = v.integer(raw.get("seed", 0), "seed", low=0)
    device = v.string(raw.get("device", "cpu"), "device")
    if not re.match(r"^(cpu|cuda(:\d+)?)$", device):
        raise ConfigError(source, "device", f"must be {DEVICES_HINT}; got {device!r}.")
    objective = _objective(v, raw.get("objective", {}))
    search = _search(v, raw.get("search", {}))
    data = _data(v, raw.get("data", {}))
    data_raw = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    data_seed = v.integer(data_raw.get("seed", 0), "data.seed", low=0)
    if "space" not in raw:
        raise ConfigError(source, "space", "is missing: give the parameters to tune, e.g. `learning_rate: {low: 1.0e-4, high: 1.0, scale: log}`.")
    space = parse_space(raw["space"], source=source, builtin=objective.function is None)
    warnings = tuple(lint_space(space, source))
    return Config(name=name, seed=seed, space=space, data=data, objective=objective, search=search,
                  device=device, data_seed=data_seed, source=source, base_dir=str(base_dir), warnings=warnings)


def with_overrides(cfg: Config, *, name: str | None = None, trials: int | None = None,
                   jobs: int | None = None, seed: int | None = None, rounds: int | None = None,
                   backend: str | None = None, address: str | None = None,
                   function: str | None = None) -> Config:
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
    _check_rounds("command line", "--rounds", search)
    if search.backend == "dask" and not search.address:
        raise ConfigError("command line", "--address", "the dask backend needs the scheduler's address, e.g. --address tcp://127.0.0.1:8786.")
    out = replace(cfg, search=search)
    if name is not None:
        if not NAME_RE.match(name):
            raise ConfigError("command line", "--name", f"{NAME_RULE}; got {name!r}.")
        out = replace(out, name=name)
    if seed is not None:
        out = replace(out, seed=v.integer(seed, "--seed", low=0))
    if function is not None:
        if not FUNCTION_RE.match(function):
            raise ConfigError("command line", "--objective", f"must look like package.module:function; got {function!r}.")
        out = replace(out, objective=replace(out.objective, function=function))
    return out


# ----------------------------------------------------------------------------
# sections


def _objective(v: "_Validator", raw: Any) -> ObjectiveConfig:
    raw = v.mapping(raw, "objective")
    v.keys(raw, OBJECTIVE_KEYS, "objective")
    function = raw.get("function")
    if function is not None:
        function = v.string(function, "objective.function")
        if not FUNCTION_RE.match(function):
            raise ConfigError(v.source, "objective.function",
                              f"must look like package.module:function (a function train(params) -> dict of metrics); got {function!r}.")
    metric = v.string(raw.get("metric", "val_accuracy"), "objective.metric")
    if function is None and metric not in BUILTIN_METRICS:
        hint = " The test split never ranks trials." if metric.startswith("test_") else ""
        raise ConfigError(v.source, "objective.metric",
                          f"the built-in trainer reports {', '.join(BUILTIN_METRICS)}; got {metric!r}.{hint}{_did_you_mean(metric, BUILTIN_METRICS)}")
    default_goal = "minimize" if metric.endswith("loss") or metric.endswith("error") else "maximize"
    goal = v.one_of(raw.get("goal", default_goal), "objective.goal", GOALS)
    path = raw.get("path")
    if path is not None:
        path = v.string(path, "objective.path")
    return ObjectiveConfig(metric=metric, goal=goal, function=function, path=path)


def _search(v: "_Validator", raw: Any) -> SearchConfig:
    raw = v.mapping(raw, "search")
    v.keys(raw, SEARCH_KEYS, "search")
    d = SearchConfig()
    top = raw.get("top")
    threads = raw.get("threads")
    backend = v.one_of(raw.get("backend", d.backend), "search.backend", BACKENDS)
    address = raw.get("address")
    if address is not None:
        address = v.string(address, "search.address")
    if backend == "dask" and address is None:
        raise ConfigError(v.source, "search.address", "the dask backend needs the scheduler's address, e.g. `address: tcp://127.0.0.1:8786`.")
    out = SearchConfig(
        trials=v.integer(raw.get("trials", d.trials), "search.trials", low=1),
        jobs=v.integer(raw.get("jobs", os.cpu_count() or 1), "search.jobs", low=1),
        rounds=v.integer(raw.get("rounds", d.rounds), "search.rounds", low=1),
        top=None if top is None else v.integer(top, "search.top", low=1),
        margin=v.number(raw.get("margin", d.margin), "search.margin", low=0.0, high=1.0),
        backend=backend,
        address=address,
        threads=None if threads is None else v.integer(threads, "search.threads", low=1),
    )
    _check_rounds(v.source, "search.rounds", out)
    return out


def _check_rounds(source: str, key: str, search: SearchConfig) -> None:
    from .refine import MIN_FINISHED

    if search.rounds > 1 and search.trials < MIN_FINISHED:
        raise ConfigError(source, key, f"{search.rounds} rounds need at least {MIN_FINISHED} trials per round to zoom on; "
                                       f"got search.trials {search.trials}. Raise trials or use one round.")


def _data(v: "_Validator", raw: Any) -> DataConfig:
    raw = v.mapping(raw, "data")
    v.keys(raw, DATA_KEYS, "data")
    d = DataConfig()
    dataset = v.string(raw.get("dataset", d.dataset), "data.dataset")
    val = v.number(raw.get("val_fraction", d.val_fraction), "data.val_fraction", low=0.0, high=1.0, open_low=True, open_high=True)
    test = v.number(raw.get("test_fraction", d.test_fraction), "data.test_fraction", low=0.0, high=1.0, open_high=True)
    if val + test >= 1:
        raise ConfigError(v.source, "data.test_fraction",
                          f"val_fraction + test_fraction must be < 1 to leave training data; got {val:g} + {test:g}.")
    target = raw.get("target")
    if target is not None:
        target = str(target)
    features = v.integer(raw.get("features", d.features), "data.features", low=1)
    informative = v.integer(raw.get("informative", min(d.informative, features)), "data.informative", low=1)
    if informative > features:
        raise ConfigError(v.source, "data.informative", f"must be <= data.features ({features}); got {informative}.")
    return DataConfig(
        dataset=dataset, val_fraction=val, test_fraction=test, target=target,
        standardize=v.boolean(raw.get("standardize", d.standardize), "data.standardize"),
        samples=v.integer(raw.get("samples", d.samples), "data.samples", low=10),
        features=features,
        classes=v.integer(raw.get("classes", d.classes), "data.classes", low=2),
        informative=informative,
        class_sep=v.number(raw.get("class_sep", d.class_sep), "data.class_sep", low=0.0, open_low=True),
    )


def parse_space(raw: Any, *, source: str = "config", builtin: bool = True) -> Space:
    """Validate a `space:` mapping (also used to read a round's space back from a run)."""
    v = _Validator(source)
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(v.source, "space", f"must be a non-empty mapping of parameter names to ranges, lists or values; got {_kind(raw)}.")
    params: list[Param] = []
    for name, spec in raw.items():
        key = f"space.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][\w.-]*$", name):
            raise ConfigError(v.source, key, "parameter names must be identifiers (letters, digits, '_').")
        domain = BUILTIN_PARAMS.get(name)
        if builtin and domain is None:
            raise ConfigError(v.source, key,
                              f"unknown parameter for the built-in trainer.{_did_you_mean(name, BUILTIN_PARAMS)} "
                              f"Valid names: {', '.join(BUILTIN_PARAMS)}. (With objective.function, names are free.)")
        if isinstance(spec, dict):
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
            raise ConfigError(v.source, f"{key}.{end}", f"is missing: a range needs both low and high, e.g. {{low: 0.001, high: 0.1, scale: log}}; for a fixed value write `{name}: 0.01`, for a choice a list.")
    if domain is not None and domain.kind not in ("float", "int"):
        raise ConfigError(v.source, key, f"{name} is {domain.describe()}, so it cannot be a range; use a list to choose among values, e.g. {name}: [{', '.join(_yaml_str(c) for c in (domain.choices or (True, False)))}].")
    scale = v.one_of(spec.get("scale", "uniform"), f"{key}.scale", SCALES)
    default_integer = domain is not None and domain.kind == "int"
    integer = v.boolean(spec.get("integer", default_integer), f"{key}.integer")
    low = v.number(spec["low"], f"{key}.low")
    high = v.number(spec["high"], f"{key}.high")
    if domain is not None and domain.kind == "int" and not integer:
        raise ConfigError(v.source, f"{key}.integer", f"{name} takes whole numbers; remove `integer: false`.")
    if integer:
        if scale == "one_minus_log":
            raise ConfigError(v.source, f"{key}.integer", "scale one_minus_log is for coefficients in [0, 1) and cannot be integer; use scale uniform or log.")
        for end, x in (("low", low), ("high", high)):
            if x != int(x):
                raise ConfigError(v.source, f"{key}.{end}", f"must be a whole number for an integer range; got {x:g}.")
        low, high = float(int(low)), float(int(high))
    if not low < high:
        raise ConfigError(v.source, f"{key}.high", f"must be greater than low ({_num(low)}); got {_num(high)}. For a fixed value write `{name}: {_num(low)}`.")
    if scale == "log":
        need = 1 if integer else 0
        if low <= 0 or (integer and low < need):
            rule = "must be >= 1 for an integer range on scale log" if integer else "must be > 0 for scale log"
            raise ConfigError(v.source, f"{key}.low", f"{rule}; got {_num(low)}. Use scale uniform for ranges that include 0.")
    if scale == "one_minus_log":
        if low < 0:
            raise ConfigError(v.source, f"{key}.low", f"must be >= 0 for scale one_minus_log (it samples 1 - x on a log scale); got {_num(low)}.")
        if high >= 1:
            raise ConfigError(v.source, f"{key}.high", f"must be < 1 for scale one_minus_log; got {_num(high)}. Try 0.999.")
    if domain is not None:
        for end, x in (("low", low), ("high", high)):
            if not domain.accepts(int(x) if integer else x):
                raise ConfigError(v.source, f"{key}.{end}", f"{name} must be {domain.describe()}; got {_num(x)}.")
    return Range(name, low, high, scale=scale, integer=integer)


def _choice(v: "_Validator", name: str, spec: list, domain: ParamDomain | None) -> Choice:
    key = f"space.{name}"
    if not spec:
        raise ConfigError(v.source, key, "an empty list has nothing to choose from; give at least one value.")
    values: list[Any] = []
    for i, item in enumerate(spec):
        values.append(_scalar(v, f"{key}[{i}]", item, domain))
    seen: list[Any] = []
    for i, x in enumerate(values):
        if any(type(x) is type(s) and x == s for s in seen):
            raise ConfigError(v.source, f"{key}[{i}]", f"{_yaml_str(x)} is listed twice; each choice should appear once.")
        seen.append(x)
    return Choice(name, tuple(values))


def _fixed(v: "_Validator", name: str, spec: Any, domain: ParamDomain | None) -> Fixed:
    return Fixed(name, _scalar(v, f"space.{name}", spec, domain))


def _scalar(v: "_Validator", key: str, item: Any, domain: ParamDomain | None) -> Any:
    if isinstance(item, (dict, list)) or item is None:
        raise ConfigError(v.source, key, f"must be a single number, string or boolean; got {_kind(item)}.")
    if domain is None:
        return item
    if domain.kind in ("float", "int"):
        x = v.number(item, key)
        if domain.kind == "int":
            if x != int(x):
                raise ConfigError(v.source, key, f"must be {domain.describe()}; got {_num(x)}.")
            x = int(x)
        if not domain.accepts(x):
            raise ConfigError(v.source, key, f"must be {domain.describe()}; got {_num(x)}.")
        return x
    if domain.kind == "bool":
        return v.boolean(item, key)
    if item not in domain.choices:
        raise ConfigError(v.source, key, f"must be {domain.describe()}; got {item!r}.{_did_you_mean(str(item), [str(c) for c in domain.choices])}")
    return item


# ----------------------------------------------------------------------------
# lint


def lint_space(space: Space, source: str = "config") -> list[str]:
    """Warnings about spaces that probably sample on the wrong scale. Never fatal."""
    out: list[str] = []
    for p in space.params:
        key = f"{source}: space.{p.name}"
        if isinstance(p, Range) and p.scale == "uniform":
            if p.low > 0 and p.high / p.low > 100:
                top = 0.9 * p.high / (p.high - p.low)
                out.append(f"{key}: a uniform range spanning {p.high / p.low:.0f}x puts {100 * top:.0f}% of samples in its top decade "
                           f"({_num(p.high / 10)}..{_num(p.high)}); consider `scale: log`.")
            elif 0 <= p.low and p.high < 1 and (1 - p.low) / (1 - p.high) >= 10:
                share = (p.high - max(p.low, 1 - 10 * (1 - p.high))) / (p.high - p.low)
                out.append(f"{key}: a uniform range crowding toward 1 ({_num(p.low)}..{_num(p.high)}) samples 1 - x unevenly "
                           f"({100 * (1 - share):.0f}% of samples land below {_num(1 - 10 * (1 - p.high))}); consider `scale: one_minus_log`.")
        if isinstance(p, Choice):
            nums = [x for x in p.values if isinstance(x, (int, float)) and not isinstance(x, bool)]
            if len(nums) == len(p.values) and len(nums) >= 3 and min(nums) > 0 and max(nums) / min(nums) >= 100:
                out.append(f"{key}: a choice list spanning {math.log10(max(nums) / min(nums)):.0f} decades tries only {len(nums)} values; "
                           f"consider a range {{low: {_num(min(nums))}, high: {_num(max(nums))}, scale: log}}.")
    return out


# ----------------------------------------------------------------------------
# primitives


class _Validator:
    """Typed accessors that raise ConfigError with the file and key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

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
                raise self.fail(path, f"unknown key.{_did_you_mean(str(k), valid)} Valid keys{' under ' + key if key else ''}: {', '.join(valid)}.")

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
                raise self.fail(key, f"must be a number; got the string {raw!r}.") from None
        if not isinstance(raw, (int, float)):
            raise self.fail(key, f"must be a number; got {_kind(raw)}.")
        x = float(raw)
        if not math.isfinite(x):
            raise self.fail(key, f"must be a finite number; got {raw}.")
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
        raise self.fail(key, f"must be true or false; got {raw!r}.")

    def one_of(self, raw: Any, key: str, valid: tuple[str, ...]) -> str:
        if not isinstance(raw, str) or raw not in valid:
            raise self.fail(key, f"must be one of {', '.join(valid)}; got {raw!r}.{_did_you_mean(str(raw), valid)}")
        return raw


def _did_you_mean(word: str, valid: Any) -> str:
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _kind(raw: Any) -> str:
    if raw is None:
        return "nothing (an empty value)"
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    return f"{type(raw).__name__} {raw!r}"


def _num(x: float) -> str:
    return f"{x:g}"


def _yaml_str(x: Any) -> str:
    return str(x).lower() if isinstance(x, bool) else str(x)
