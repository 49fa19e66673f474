"""Weights & Biases sweep files -> hptune's config, offline. Pure (no network, no wandb).

`translate_sweep` reads a parsed W&B sweep file (program, method, metric,
parameters, early_terminate, command, run_cap, ...) and returns hptune's
config as a plain dict plus one-line notes for the user; `to_hptune_yaml`
writes both as the YAML text `hptune convert sweep.yaml` prints.
`expand_command` expands the agent's command macros the way `wandb agent`
does, for a later runner.

How W&B distributions become hptune ranges (X is the value passed to the run):

    values / categorical             list (a uniform choice); duplicates become weights
    values + probabilities           {values, weights}
    value / constant                 a fixed value ({value: X} when X is a list, a mapping or null)
    min/max, both ints / int_uniform {low, high, integer: true}
    min/max, any float / uniform     {low, high}
    q_uniform                        {low, high, step: q}           X = round(U(min, max) / q) * q
    log_uniform_values               {low: min, high: max, scale: log}
    inv_log_uniform_values           the same: log X is uniform on [log min, log max]
    log_uniform (legacy)             {low: e^min, high: e^max, scale: log}
    inv_log_uniform (legacy)         {low: e^-max, high: e^-min, scale: log}
    q_log_uniform(_values)           as above, plus step: q
    beta(1, 1)                       {low: 0, high: 1} (any other beta: an error)
    normal, q_normal, log_normal,    an error: unbounded; the message gives the range
    q_log_normal                     mu ± 2 sigma to write instead

A step q that is an integer in the file also makes the range integer (W&B then
passes ints); q's default is the float 1.0, so W&B passes floats such as 17.0.
Nested `parameters` groups flatten to dotted names, listed in
`objective.groups` so that a runner can nest them again the way the agent
passes them (`--optimizer={'lr': 0.01}`); a dotted key written as one key
stays one name.

The rules follow W&B's sweep configuration schema and its agent as published
in the wandb/sweeps and wandb/wandb repositories.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .source import did_you_mean as _did_you_mean
from .source import num as _num

# ----------------------------------------------------------------------------
# W&B's vocabulary

METHODS = ("random", "grid", "bayes")
GOALS = ("minimize", "maximize")
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
ARGS_MACROS = ("args", "args_no_hyphens", "args_no_boolean_flags", "args_no_equals", "args_json", "args_json_file")
MACROS = ("env", "interpreter", "program", *ARGS_MACROS)
ENVVAR_RE = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")  # the agent's own pattern: upper-case names only
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")  # W&B's schema for parameter names

# keys hptune accepts and does not use: why, in one line each
IGNORED_TOP_KEYS = {
    "project": "the W&B project; hptune keeps each run on disk under runs/",
    "entity": "the W&B entity (user or team); hptune has no server",
    "description": "hptune keeps no description",
    "controller": "hptune always runs its own trials (no W&B controller)",
    "imports": "install what your program needs yourself",
    "apiVersion": "not used",
    "kind": "not used",
    "job": "a W&B Launch job; hptune runs `program` itself",
    "image_uri": "a W&B Launch image; hptune runs `program` itself",
    "scheduler": "a W&B Launch scheduler; hptune samples the space itself",
}
TOP_KEYS = ("program", "method", "metric", "parameters", "early_terminate", "command", "run_cap", "name",
            *IGNORED_TOP_KEYS, "metrics")
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")

# the keys each distribution takes besides `distribution`
DIST_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "categorical_w_probabilities": ("values", "probabilities"),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
    "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}
GRID_DISTS = ("constant", "categorical", "int_uniform", "q_uniform")

# hptune's choices
NOTE_ORDER = ("name", "method", "run_cap", "metric", "program", "command", "early_terminate", "parameters")
DEFAULT_RUNS = 60  # when the sweep gives no run_cap (W&B then runs until stopped)
BAYES_ROUNDS = 3  # coarse-to-fine rounds standing in for W&B's bayes
MIN_ROUND_TRIALS = 10  # fewer trials per round leave too little to zoom on
EPOCH_PARAM_NAMES = ("epochs", "max_epochs", "num_epochs", "n_epochs", "epoch", "total_epochs", "num_train_epochs")

# PyYAML (YAML 1.1) reads 1e-5 and 1.0e5 as text; YAML 1.2 and W&B's docs mean numbers
SCI_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")
INT_RE = re.compile(r"^[-+]?[0-9]+$")
FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


# ----------------------------------------------------------------------------
# recognizing and loading


def is_wandb_sweep(raw: Any) -> bool:
    """True when `raw` (parsed YAML) looks like a W&B sweep file rather than hptune's own config.

    hptune's configs have `space`; a sweep has `parameters`, and/or `method`,
    `metric`, `program`, `early_terminate` or `command` in W&B's shape. A sweep
    wrapped under one top-level key (`sweep: {method: ..., parameters: ...}`)
    counts too, so that `translate_sweep` can say what to unwrap.
    """
    if not isinstance(raw, dict) or not raw or "space" in raw:
        return False
    if isinstance(raw.get("parameters"), dict):
        return True
    if raw.get("method") in (*METHODS, "custom"):
        return True
    if isinstance(raw.get("metric"), dict) and "name" in raw["metric"]:
        return True
    if isinstance(raw.get("early_terminate"), dict) and "type" in raw["early_terminate"]:
        return True
    if isinstance(raw.get("program"), str) and ("command" in raw or "tune" in raw or "method" in raw):
        return True
    if isinstance(raw.get("command"), list) and any(str(t).startswith("${") for t in raw["command"]):
        return True
    if len(raw) == 1:
        (inner,) = raw.values()
        return isinstance(inner, dict) and "space" not in inner and isinstance(inner.get("parameters"), dict)
    return False


def load_sweep_file(path: str | Path) -> dict:
    """Read a sweep YAML file (bounded, duplicate keys refused, as hptune reads its own configs)."""
    from .source import parse_yaml, read_text

    path = Path(path)
    raw = parse_yaml(read_text(path), path.name)
    if raw is None:
        raise ConfigError(path.name, "", "the file is empty; a W&B sweep needs at least `method` and `parameters`.")
    if not isinstance(raw, dict):
        raise ConfigError(path.name, "", f"the top level must be a mapping of keys (method, metric, parameters, ...); "
                                         f"got {_short(raw)}.")
    return raw


def convert_file(path: str | Path) -> str:
    """The whole of `hptune convert SWEEP.yaml`: read, translate, write the YAML text."""
    path = Path(path)
    config, notes = translate_sweep(load_sweep_file(path), source=path.name)
    return to_hptune_yaml(config, notes, source=path.name)


# ----------------------------------------------------------------------------
# translating


def translate_sweep(raw: dict, *, source: str) -> tuple[dict, list[str]]:
    """A W&B sweep (parsed YAML) -> (hptune config dict, one-line notes for the user).

    Raises ConfigError(source, key path, message) for anything W&B would
    reject or hptune cannot sample; the message names the key, the value and
    what W&B accepts.
    """
    return _Translator(source).run(raw)


class _Translator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.notes: list[str] = []
        self._texts: list[tuple[str, str]] = []  # (key, text) of numbers PyYAML read as strings

    def flush_texts(self, key: str) -> None:
        """One note for the numbers under `key` that PyYAML read as text."""
        if self._texts:
            items = [f"{text!r} ({sub[len(key) + 1:] or sub})" if sub.startswith(key + ".") else repr(text)
                     for sub, text in self._texts]
            self.note(key, f"{', '.join(items[:4])}{' ...' if len(items) > 4 else ''} "
                           f"{'is' if len(items) == 1 else 'are'} text to PyYAML (YAML 1.1 reads 1e-5 as a string; "
                           "1.0e-5 is a number), read as numbers.")
            self._texts.clear()

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

    def note(self, key: str, message: str) -> None:
        self.notes.append(f"{key}: {message}" if key else message)

    # -- top level --------------------------------------------------------------
    def run(self, raw: Any) -> tuple[dict, list[str]]:
        if not isinstance(raw, dict):
            raise self.fail("", f"a W&B sweep is a mapping of keys (method, metric, parameters, ...); got {_short(raw)}.")
        if "parameters" not in raw and len(raw) == 1:
            (outer, inner), = raw.items()
            if isinstance(inner, dict) and "parameters" in inner:
                raise self.fail(str(outer), f"the sweep is nested under `{outer}:`; W&B reads method, metric and "
                                            "parameters at the top level of the file. Remove that level.")
        if "tune" in raw:
            raise self.fail("tune", "this is W&B's old Ray Tune sweep format, which hptune does not read; "
                                    "describe the space under `parameters:` (e.g. lr: {distribution: log_uniform_values, min: 1.0e-4, max: 0.1}) "
                                    "with `method: random`.")
        for key in raw:
            if key not in TOP_KEYS:
                raise self.fail(str(key), f"is not a W&B sweep key.{_did_you_mean(str(key), TOP_KEYS)} "
                                          f"W&B accepts: {', '.join(k for k in TOP_KEYS if k != 'metrics')}.")
        if "metrics" in raw:
            raise self.fail("metrics", "several metrics (multi-objective, method custom) cannot be translated: "
                                       "hptune ranks trials by one metric. Use `metric: {name: ..., goal: ...}`.")
        method = self.method(raw)
        metric = self.metric(raw.get("metric"), method)
        for key, why in IGNORED_TOP_KEYS.items():
            if key in raw:
                self.note(key, f"{_short(raw[key], 40)} not used: {why}.")
        if "parameters" not in raw:
            raise self.fail("parameters", "is missing: give the space to search, e.g. "
                                          "`parameters: {lr: {distribution: log_uniform_values, min: 1.0e-4, max: 0.1}}`.")
        grid = method == "grid"
        space, groups, grid_size = self.parameters(raw["parameters"], grid=grid)
        search = self.search(raw, method, space, grid_size)
        halving = self.early_terminate(raw.get("early_terminate"), metric, space)
        if halving is not None:
            search["halving"] = halving
            self.enough_to_zoom(search, halving)
        objective = self.objective(raw, metric, groups)

        config: dict[str, Any] = {}
        if "name" in raw:
            config["name"] = self.name(raw["name"])
        config["seed"] = 0
        config["objective"] = objective
        config["search"] = search
        config["space"] = space
        order = {k: i for i, k in enumerate(NOTE_ORDER)}
        notes = sorted(self.notes, key=lambda n: order.get(re.split(r"[.:\[]", n, maxsplit=1)[0], len(order)))
        return config, notes

    def name(self, raw: Any) -> str:
        from .schema import NAME_RE, run_name_from

        if not isinstance(raw, str) or not raw.strip():
            raise self.fail("name", f"must be a string (the sweep's name); got {_short(raw)}.")
        if NAME_RE.match(raw):
            return raw
        name = run_name_from(raw)
        self.note("name", f"{raw!r} names hptune's run folder, so it is written {name!r} "
                          "(ASCII letters, digits, '.', '_', '-').")
        return name

    def method(self, raw: dict) -> str:
        if "method" not in raw:
            raise self.fail("method", "is missing; W&B requires one of random, grid, bayes, e.g. `method: random`.")
        method = raw["method"]
        if method == "custom":
            raise self.fail("method", "custom (a W&B Launch scheduler such as Optuna or Ax) cannot be translated; "
                                      "use method: random (hptune samples the space itself), grid or bayes.")
        if not isinstance(method, str) or method not in METHODS:
            raise self.fail("method", f"must be one of {', '.join(METHODS)}; got {_short(method)}."
                                      f"{_did_you_mean(str(method), METHODS)}")
        return method

    def metric(self, raw: Any, method: str) -> dict[str, Any] | None:
        if raw is None:
            if method == "bayes":
                raise self.fail("metric", "is missing; method bayes needs a metric to optimize, "
                                          "e.g. `metric: {name: val_loss, goal: minimize}`.")
            self.note("metric", "none given (W&B's random and grid sweeps run without one); hptune ranks trials by "
                                "objective.metric, so add the name your program reports.")
            return None
        if not isinstance(raw, dict):
            raise self.fail("metric", f"must be a mapping such as {{name: val_loss, goal: minimize}}; got {_short(raw)}.")
        for key in raw:
            if key not in METRIC_KEYS:
                raise self.fail(f"metric.{key}", f"is not a W&B metric key.{_did_you_mean(str(key), METRIC_KEYS)} "
                                                 f"W&B accepts: {', '.join(METRIC_KEYS)}.")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("metric.name", f"must be the name of the metric your program logs; got {_short(name)}.")
        if "goal" in raw:
            goal = raw["goal"]
            if goal not in GOALS:
                raise self.fail("metric.goal", f"must be minimize or maximize; got {_short(goal)}.{_did_you_mean(str(goal), GOALS)}")
        else:
            goal = "minimize"
            self.note("metric.goal", "none given: W&B minimizes by default, so goal: minimize.")
        if "target" in raw:
            self.note("metric.target", f"{_short(raw['target'])} not used: hptune runs all its trials "
                                       "(W&B stops the sweep once a run reaches the target).")
        for key in ("impute", "impute_while_running"):
            if key in raw:
                self.note(f"metric.{key}", "not used: hptune ranks failed and diverged trials last.")
        return {"metric": name, "goal": goal}

    # -- objective: the program and its command -------------------------------------
    def objective(self, raw: dict, metric: dict | None, groups: list[str]) -> dict[str, Any]:
        program = raw.get("program")
        if program is not None and (not isinstance(program, str) or not program.strip()):
            raise self.fail("program", f"must be the path of the training script, e.g. train.py; got {_short(program)}.")
        if "command" in raw:
            command = self.command(raw["command"])
        else:
            command = list(DEFAULT_COMMAND)
            self.note("command", "none given: W&B's default, `${env} ${interpreter} ${program} ${args}` "
                                 "(/usr/bin/env python train.py --lr=0.01 ...).")
        uses = {t[2:-1] for t in command if t.startswith("${") and t.endswith("}")}
        if program is None:
            if "program" in uses:
                self.note("program", "none given: this sweep ran through wandb.agent(function=...) in Python; "
                                     "set objective.program to a script that takes the parameters before running it.")
            else:
                self.note("program", "none given; the command names what to run.")
        elif "program" not in uses:
            self.note("command", f"does not use ${{program}}, so program {program!r} is not run by it.")
        if not uses & set(ARGS_MACROS):
            self.note("command", "has no ${args...} macro: the program gets no parameters on its command line "
                                 "(W&B's runs read them from wandb.config).")
        out: dict[str, Any] = {"command": command, "program": program}
        if metric is not None:
            out.update(metric)
        if groups:
            out["groups"] = groups
        return out

    def command(self, raw: Any) -> list[str]:
        if isinstance(raw, str):
            raise self.fail("command", f"must be a list of tokens (W&B ignores a string); got {_short(raw)}. "
                                       f"Write it as a YAML list, e.g. [{', '.join(raw.split()[:4]) or '${env}, ${interpreter}, ${program}, ${args}'}].")
        if not isinstance(raw, list):
            raise self.fail("command", f"must be a list of tokens such as [${{env}}, ${{interpreter}}, ${{program}}, ${{args}}]; got {_short(raw)}.")
        if not raw:
            self.note("command", "is empty, so W&B's agent uses its default `${env} ${interpreter} ${program} ${args}`.")
            return list(DEFAULT_COMMAND)
        tokens: list[str] = []
        for i, token in enumerate(raw):
            if isinstance(token, (dict, list)) or token is None:
                raise self.fail(f"command[{i}]", f"must be a single token (a string or number); got {_short(token)}.")
            text = str(token)  # the agent passes str(token)
            tokens.append(text)
            if ENVVAR_RE.search(text):
                self.note(f"command[{i}]", f"{text!r}: ${{envvar:NAME}} is read from the environment when the "
                                           "trial starts (the name itself when unset).")
                text = ENVVAR_RE.sub("", text)
            if text.startswith("${") and text.endswith("}"):
                if text[2:-1] not in MACROS:
                    self.note(f"command[{i}]", f"{text} is not one of W&B's macros ({', '.join(MACROS)}); "
                                               "the agent expands it to nothing.")
            elif "${" in text:
                self.note(f"command[{i}]", f"{text!r}: W&B expands a macro only when it is the whole token, "
                                           "so this one is passed as written.")
        return tokens

    # -- parameters ----------------------------------------------------------------
    def parameters(self, raw: Any, *, grid: bool) -> tuple[dict[str, Any], list[str], int]:
        space: dict[str, Any] = {}
        groups: list[str] = []
        sizes: list[int] = []
        self._group(raw, "parameters", "", space, groups, sizes, grid=grid)
        size = math.prod(sizes) if grid else 0
        return space, groups, size

    def _group(self, raw: Any, key: str, prefix: str, space: dict[str, Any], groups: list[str],
               sizes: list[int], *, grid: bool) -> None:
        if not isinstance(raw, dict) or not raw:
            raise self.fail(key, f"must be a non-empty mapping of parameter names to specs such as "
                                 f"{{values: [16, 32]}} or {{min: 0.0, max: 0.5}}; got {_short(raw)}.")
        for pname, spec in raw.items():
            pkey = f"{key}.{pname}"
            if not isinstance(pname, str) or not PARAM_NAME_RE.match(pname):
                raise self.fail(pkey, "W&B parameter names start with a letter or '_' and hold letters, digits, "
                                      f"'_', '.' and '-'; got {_short(pname)}.")
            name = prefix + pname
            if isinstance(spec, dict) and "parameters" in spec:
                extra = [k for k in spec if k != "parameters"]
                if extra:
                    raise self.fail(f"{pkey}.{extra[0]}", "a group of nested parameters holds only `parameters`; "
                                                          f"got {', '.join(map(str, spec))}.")
                if name in space:
                    raise self.fail(pkey, f"the group {name!r} clashes with the parameter of that name.")
                groups.append(name)
                self._group(spec["parameters"], f"{pkey}.parameters", name + ".", space, groups, sizes, grid=grid)
                continue
            if name in space or any(g == name for g in groups):
                raise self.fail(pkey, f"gives the name {name!r} a second time (a dotted key and a nested group "
                                      "flatten to the same name); rename one of them.")
            try:
                value, size = self.param(pkey, spec, grid=grid)
            finally:
                self.flush_texts(pkey)
            space[name] = value
            sizes.append(size)

    def param(self, key: str, spec: Any, *, grid: bool) -> tuple[Any, int]:
        """One parameter -> (hptune spec, number of grid points)."""
        if not isinstance(spec, dict):
            hint = f"{{value: {_short(spec, 30)}}}" if not isinstance(spec, list) else f"{{values: {_short(spec, 30)}}}"
            raise self.fail(key, f"must be a mapping such as {hint}; W&B rejects a bare {_kind(spec)}.")
        dist = self.distribution(key, spec)
        if grid and dist not in GRID_DISTS:
            why = "probabilities" if dist == "categorical_w_probabilities" else f"distribution {dist}"
            raise self.fail(key, f"W&B's grid search takes only values, value, int_uniform and q_uniform "
                                 f"parameters, not {why}. Use method: random (hptune's strength), or list the values.")
        allowed = DIST_KEYS[dist]
        for k in spec:
            if k != "distribution" and k not in allowed:
                hint = ""
                if k == "q" and f"q_{dist}" in DIST_KEYS:
                    hint = f" For a step, use distribution: q_{dist}."
                elif k == "probabilities":
                    hint = " Give probabilities with values and no distribution (or categorical_w_probabilities)."
                raise self.fail(f"{key}.{k}", f"is not taken by distribution {dist}, which takes "
                                              f"{', '.join(allowed)}.{hint}")
        for k in allowed:
            if k in ("min", "max", "values", "value", "probabilities") and k not in spec:
                raise self.fail(f"{key}.{k}", f"is missing: distribution {dist} takes {', '.join(allowed)}"
                                              f"{', e.g. {min: 0.0, max: 1.0}' if k in ('min', 'max') else ''}.")
        if dist == "constant":
            return self.constant(key, spec["value"]), 1
        if dist in ("categorical", "categorical_w_probabilities"):
            return self.categorical(key, spec, grid=grid)
        if dist in ("normal", "q_normal", "log_normal", "q_log_normal"):
            raise self.unbounded(key, dist, spec)
        if dist in ("beta", "q_beta"):
            return self.beta(key, dist, spec), 0
        return self.ranged(key, dist, spec, grid=grid)

    def distribution(self, key: str, spec: dict) -> str:
        """The distribution W&B uses for this spec (given, or inferred the way W&B infers it)."""
        if "distribution" in spec:
            dist = spec["distribution"]
            if not isinstance(dist, str) or dist not in DIST_KEYS:
                raise self.fail(f"{key}.distribution", f"is not a W&B distribution; got {_short(dist)}."
                                                       f"{_did_you_mean(str(dist), DIST_KEYS)} W&B accepts: {', '.join(DIST_KEYS)}.")
            if dist == "categorical" and "probabilities" in spec:
                raise self.fail(f"{key}.probabilities", "W&B rejects probabilities with distribution: categorical; "
                                                        "drop the distribution line (or write categorical_w_probabilities).")
            return dist
        if "values" in spec:
            if any(k in spec for k in ("min", "max", "value")):
                other = next(k for k in ("min", "max", "value") if k in spec)
                raise self.fail(f"{key}.{other}", "mixes `values` with min/max/value; W&B takes one of them.")
            return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
        if "value" in spec:
            return "constant"
        if "min" in spec or "max" in spec:
            for end in ("min", "max"):
                if end not in spec:
                    raise self.fail(f"{key}.{end}", "is missing: a range needs both min and max, e.g. {min: 0.0, max: 1.0}.")
            low, high = spec["min"], spec["max"]
            # W&B: int_uniform when both bounds are integers, uniform when either is a float
            if _is_int(low) and _is_int(high):
                return "int_uniform"
            return "uniform"
        if any(k in spec for k in ("mu", "sigma", "q", "a", "b")):
            raise self.fail(key, f"gives {', '.join(k for k in spec)} but no distribution; name it, e.g. distribution: q_uniform.")
        raise self.fail(key, f"needs values, value, min/max or a distribution; got {_short(spec)}. "
                             "E.g. {values: [16, 32, 64]} or {distribution: log_uniform_values, min: 1.0e-4, max: 0.1}.")

    def constant(self, key: str, value: Any) -> Any:
        value = self.maybe_number(f"{key}.value", value)
        if isinstance(value, (list, dict)) or value is None:
            return {"value": value}
        return value

    def categorical(self, key: str, spec: dict, *, grid: bool) -> tuple[Any, int]:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise self.fail(f"{key}.values", f"must be a non-empty list of choices; got {_short(values)}.")
        values = [self.maybe_number(f"{key}.values[{i}]", v) for i, v in enumerate(values)]
        probs: list[float]
        if "probabilities" in spec:
            raw = spec["probabilities"]
            if not isinstance(raw, list) or len(raw) != len(values):
                raise self.fail(f"{key}.probabilities", f"must be a list of {len(values)} numbers, one per value; got {_short(raw)}.")
            probs = []
            for i, p in enumerate(raw):
                p = self.number(f"{key}.probabilities[{i}]", p)
                if p < 0:
                    raise self.fail(f"{key}.probabilities[{i}]", f"must be >= 0; got {_num(p)}.")
                probs.append(p)
            if not math.isclose(sum(probs), 1.0, rel_tol=1e-5, abs_tol=1e-8):
                raise self.fail(f"{key}.probabilities", f"must sum to 1 (W&B's rule); they sum to {_num(sum(probs))}.")
        else:
            probs = [1.0 / len(values)] * len(values)
        # merge repeated values (compared the way W&B's grid hashes them: 1, 1.0 and true differ)
        merged: dict[str, list[Any]] = {}
        for v, p in zip(values, probs):
            k = _value_key(v)
            if k in merged:
                merged[k][1] += p
            else:
                merged[k] = [v, p]
        unique = [v for v, _ in merged.values()]
        weights = [p for _, p in merged.values()]
        if len(unique) < len(values):
            if grid:
                self.note(f"{key}.values", "lists a value twice; W&B's grid runs each combination once, so it is listed once.")
            elif "probabilities" not in spec:
                self.note(f"{key}.values", "lists a value more than once; W&B draws each entry equally often, "
                                           "so repeated values become weights.")
        if grid or all(math.isclose(w, weights[0], rel_tol=1e-9) for w in weights):
            return unique, len(unique)
        return {"values": unique, "weights": [float(f"{w:.12g}") for w in weights]}, len(unique)

    def ranged(self, key: str, dist: str, spec: dict, *, grid: bool) -> tuple[dict[str, Any] | list[Any], int]:
        low_raw, high_raw = spec["min"], spec["max"]
        low = self.number(f"{key}.min", low_raw)
        high = self.number(f"{key}.max", high_raw)
        low_i, high_i = _is_int(low), _is_int(high)
        if dist == "int_uniform" and not (low_i and high_i):
            bad = "min" if not low_i else "max"
            raise self.fail(f"{key}.{bad}", f"int_uniform takes whole numbers written as integers (W&B rejects "
                                            f"{_short(spec[bad])}); write {int(spec[bad]) if float(spec[bad]).is_integer() else 'an integer'}, "
                                            "or use distribution: uniform.")
        if not low < high:
            raise self.fail(f"{key}.max", f"must be greater than min ({_num(low)}); got {_num(high)} "
                                          "(W&B rejects min >= max). For a fixed value write {value: ...}.")
        q = self._q(key, spec) if dist.startswith("q_") else None
        if dist.endswith("_values") and not low > 0:
            raise self.fail(f"{key}.min", f"must be > 0 for {dist} (its log is sampled uniformly); got {_num(low)}. "
                                          "Use distribution: uniform for ranges that include 0.")
        integer_q = q is not None and _is_int(q)
        if dist.startswith("q_") and "q" not in spec:
            self.note(key, f"{dist} without q: W&B's step is then the float 1.0, so it passes whole floats "
                           "such as 17.0 (write q: 1 for integers).")

        if dist == "int_uniform":
            if grid:
                values = list(range(int(low), int(high) + 1))
                self.note(key, f"int_uniform {int(low)}..{int(high)}: W&B's grid runs each of its {len(values)} integers, listed here.")
                return values, len(values)
            return {"low": int(low), "high": int(high), "integer": True}, 0
        if dist == "uniform":
            return {"low": float(low), "high": float(high)}, 0
        if dist == "q_uniform":
            if grid:
                values = _arange(low, high, q, integer=integer_q and low_i and high_i)
                if not values:
                    raise self.fail(f"{key}.q", f"leaves no grid point in [{_num(low)}, {_num(high)}); make q smaller.")
                self.note(key, f"q_uniform in a grid: W&B runs min, min+q, ... below max ({len(values)} values, "
                               "max itself excluded), listed here.")
                return values, len(values)
            return self._stepped({"low": _keep(low), "high": _keep(high)}, q, integer_q), 0

        # log scales
        if dist in ("log_uniform", "q_log_uniform"):
            lo, hi = _tidy(math.exp(low)), _tidy(math.exp(high))
            self.note(key, f"{dist} is W&B's legacy form: min and max are natural-log exponents, so values run "
                           f"e^{_num(low)}..e^{_num(high)} = {lo:.4g}..{hi:.4g} (W&B warns it is deprecated).")
            if 0 < low and high <= 1:
                self.note(key, f"probably a mistake: these bounds look like values, not exponents, and as written W&B "
                               f"samples {lo:.6g}..{hi:.6g}. If you meant {_num(low)}..{_num(high)}, write "
                               f"distribution: {dist}_values.")
        elif dist == "inv_log_uniform":
            lo, hi = _tidy(math.exp(-high)), _tidy(math.exp(-low))
            self.note(key, f"inv_log_uniform is W&B's legacy form: log(1/X) is uniform on [{_num(low)}, {_num(high)}], "
                           f"so X is log-uniform on e^-({_num(high)})..e^-({_num(low)}) = {lo:.4g}..{hi:.4g}.")
        else:
            lo, hi = low, high
            if dist == "inv_log_uniform_values":
                self.note(key, "inv_log_uniform_values samples exactly like log_uniform_values "
                               "(log X uniform between log min and log max).")
        out: dict[str, Any] = {"low": _keep(lo), "high": _keep(hi), "scale": "log"}
        if q is not None:
            return self._stepped(out, q, integer_q), 0
        return out, 0

    def _q(self, key: str, spec: dict) -> float | int:
        """A q_ distribution's step: W&B's q (1.0 when absent), > 0."""
        q = self.number(f"{key}.q", spec["q"]) if "q" in spec else 1.0
        if not q > 0:
            raise self.fail(f"{key}.q", f"must be > 0 (the step values are rounded to); got {_num(q)}.")
        return q

    def _stepped(self, out: dict[str, Any], q: float, integer_q: bool) -> dict[str, Any]:
        out["step"] = int(q) if integer_q else float(q)
        if integer_q:
            out["integer"] = True  # W&B passes ints when q is an int
            for end in ("low", "high"):
                if float(out[end]).is_integer():
                    out[end] = int(out[end])
        return out

    def unbounded(self, key: str, dist: str, spec: dict) -> ConfigError:
        mu = self.number(f"{key}.mu", spec.get("mu", 0.0))
        sigma = self.number(f"{key}.sigma", spec.get("sigma", 1.0))
        if sigma < 0:
            return self.fail(f"{key}.sigma", f"must be >= 0; got {_num(sigma)}.")
        q = spec.get("q")
        step = f", q: {_num(self.number(f'{key}.q', q))}" if q is not None else ""
        what = f"{dist}(mu={_num(mu)}, sigma={_num(sigma)})"
        if dist in ("normal", "q_normal"):
            lo, hi = mu - 2 * sigma, mu + 2 * sigma
            write = f"{{distribution: {'q_uniform' if dist == 'q_normal' else 'uniform'}, min: {_num(lo)}, max: {_num(hi)}{step}}}"
        else:
            lo, hi = math.exp(mu - 2 * sigma), math.exp(mu + 2 * sigma)
            dname = "q_log_uniform_values" if dist == "q_log_normal" else "log_uniform_values"
            write = f"{{distribution: {dname}, min: {lo:.3g}, max: {hi:.3g}{step}}}"
        return self.fail(key, f"{what} has no bounds, and hptune samples bounded ranges only (coarse to fine "
                              f"zooms in on an interval). Write the range it mostly covers instead (mu ± 2 sigma, "
                              f"95% of its draws): {write}.")

    def beta(self, key: str, dist: str, spec: dict) -> dict[str, Any]:
        a = self.number(f"{key}.a", spec.get("a", 1.0))
        b = self.number(f"{key}.b", spec.get("b", 1.0))
        if a <= 0 or b <= 0:
            bad = "a" if a <= 0 else "b"
            raise self.fail(f"{key}.{bad}", f"must be > 0 for a beta distribution; got {_num(a if bad == 'a' else b)}.")
        if a == 1 and b == 1:
            self.note(key, f"{dist}(1, 1) is uniform on [0, 1].")
            out: dict[str, Any] = {"low": 0.0, "high": 1.0}
            if dist == "q_beta":
                q = self._q(key, spec)
                return self._stepped(out, q, _is_int(q))
            return out
        mean = a / (a + b)
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        lo, hi = max(0.0, mean - 2 * sd), min(1.0, mean + 2 * sd)
        raise self.fail(key, f"beta(a={_num(a)}, b={_num(b)}) piles its draws around {mean:.3g}, and hptune samples "
                             f"a range uniformly on its scale. Write the range instead, e.g. "
                             f"{{distribution: uniform, min: {lo:.3g}, max: {hi:.3g}}} (mean ± 2 sd).")

    # -- numbers -------------------------------------------------------------------
    def number(self, key: str, raw: Any) -> float | int:
        """A number where W&B expects one; numeric strings (PyYAML reads 1e-5 as text) become numbers, with a note."""
        if isinstance(raw, bool):
            raise self.fail(key, f"must be a number; got the boolean {str(raw).lower()}.")
        if isinstance(raw, (int, float)):
            if isinstance(raw, float) and not math.isfinite(raw):
                raise self.fail(key, f"must be a finite number; got {raw}.")
            return raw
        if isinstance(raw, str) and FLOAT_RE.match(raw.strip()):
            self._texts.append((key, raw))
            return int(raw) if INT_RE.match(raw.strip()) else float(raw)
        raise self.fail(key, f"must be a number; got {_short(raw)}.")

    def maybe_number(self, key: str, raw: Any) -> Any:
        """Scientific notation that PyYAML left as text (1e-5) becomes a float; anything else is kept."""
        if isinstance(raw, str) and SCI_RE.match(raw.strip()):
            self._texts.append((key, raw))
            return float(raw)
        return raw

    # -- search ----------------------------------------------------------------------
    def search(self, raw: dict, method: str, space: dict, grid_size: int) -> dict[str, Any]:
        run_cap = None
        if "run_cap" in raw:
            cap = raw["run_cap"]
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not float(cap).is_integer() or cap < 1:
                raise self.fail("run_cap", f"must be a whole number of runs >= 1; got {_short(cap)}.")
            run_cap = int(cap)
        if method == "grid":
            trials = grid_size if run_cap is None else min(run_cap, grid_size)
            self.note("method", f"grid: {grid_size} combination{'s' if grid_size != 1 else ''}"
                                f"{f', run_cap {run_cap} runs the first {trials}' if run_cap is not None and run_cap < grid_size else ''}. "
                                "Random search tries more values of what matters: a 5 x 5 grid tries only 5 values of the "
                                "parameter that matters, 25 random trials try 25 (consider method: random).")
            return {"method": "grid", "trials": trials, "rounds": 1}
        total = run_cap if run_cap is not None else DEFAULT_RUNS
        if run_cap is None:
            self.note("run_cap", f"none given (W&B runs until stopped); hptune runs {total} trials in all. "
                                 "Set search.trials to your budget.")
        if method == "random":
            return {"method": "random", "trials": total, "rounds": 1}
        # bayes: coarse to fine stands in for the Gaussian process
        rounds = max(1, min(BAYES_ROUNDS, total // MIN_ROUND_TRIALS))
        per_round = total // rounds
        if rounds == 1:
            self.note("method", f"bayes becomes hptune's random search; {total} runs are too few to zoom "
                                f"(coarse to fine needs {MIN_ROUND_TRIALS}+ trials a round), so one round.")
        else:
            spent = per_round * rounds
            self.note("method", f"bayes becomes hptune's random search, coarse to fine: {rounds} rounds of "
                                f"{per_round} trials ({spent} in all{f', under run_cap {total}' if spent < total and run_cap is not None else ''}), "
                                "each round zooming in on the best trials of the last.")
        return {"method": "random", "trials": per_round, "rounds": rounds}

    def enough_to_zoom(self, search: dict[str, Any], halving: dict[str, Any]) -> None:
        """Coarse to fine with halving needs 3 trials of a round at the full budget: else one round."""
        from ..refine import MIN_FINISHED
        from ..strategies.halving import HalvingConfig, expected_finishers

        if search.get("rounds", 1) <= 1 or "max_epochs" not in halving:
            return
        h = HalvingConfig(min_epochs=halving["min_epochs"], factor=halving["factor"])
        if expected_finishers(search["trials"], h, halving["max_epochs"]) >= MIN_FINISHED:
            return
        total = search["trials"] * search["rounds"]
        search.update(trials=total, rounds=1)
        self.note("method", f"with early termination, rounds of {total // 3} trials leave too few at the full budget "
                            f"to zoom on: one round of {total} trials instead.")

    # -- early termination -------------------------------------------------------------
    def early_terminate(self, raw: Any, metric: dict | None, space: dict) -> dict[str, Any] | None:
        if raw is None:
            return None
        key = "early_terminate"
        if not isinstance(raw, dict):
            raise self.fail(key, f"must be a mapping such as {{type: hyperband, min_iter: 3}}; got {_short(raw)}.")
        if raw.get("type") != "hyperband":
            raise self.fail(f"{key}.type", f"must be hyperband (W&B's only stopping algorithm); got {_short(raw.get('type'))}.")
        for k in raw:
            if k not in HYPERBAND_KEYS:
                raise self.fail(f"{key}.{k}", f"is not a hyperband key.{_did_you_mean(str(k), HYPERBAND_KEYS)} "
                                              f"W&B accepts: {', '.join(HYPERBAND_KEYS)}.")
        if metric is None:
            raise self.fail(key, "hyperband compares runs by the metric; give `metric: {name: ..., goal: ...}`.")

        def whole(k: str, low: int) -> int | None:
            if k not in raw:
                return None
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v < low:
                raise self.fail(f"{key}.{k}", f"must be a whole number >= {low}; got {_short(v)}.")
            return int(v)

        min_iter, max_iter, s = whole("min_iter", 1), whole("max_iter", 1), whole("s", 1)
        eta_raw = raw.get("eta", 3)
        eta = self.number(f"{key}.eta", eta_raw)
        self.flush_texts(f"{key}.eta")
        if not eta > 1:
            raise self.fail(f"{key}.eta", f"must be > 1 (each band keeps the top 1/eta of runs); got {_num(eta)}.")
        if not float(eta).is_integer():
            raise self.fail(f"{key}.eta", f"hptune halves by a whole factor; got {_num(eta)}. Use 2 or 3.")
        eta = int(eta)
        if "eta" not in raw:
            self.note(f"{key}.eta", "none given: W&B's default 3.")
        if raw.get("strict"):
            self.note(f"{key}.strict", "not used: hptune has no strict mode.")

        if max_iter is not None and s is not None:
            # W&B: bands at max_iter/eta, max_iter/eta^2, ... (s of them, each >= 1)
            bands = []
            band = float(max_iter)
            for _ in range(s):
                band /= eta
                if band < 1:
                    break
                bands.append(int(band))
            if not bands:
                raise self.fail(f"{key}.max_iter", f"max_iter {max_iter} / eta {eta} < 1 leaves no band; "
                                                   "raise max_iter, or lower eta or s (W&B's own rule).")
            if min_iter is not None:
                self.note(f"{key}.min_iter", "not used: with max_iter and s, W&B places the bands from max_iter down.")
            bands.sort()
            halving = {"min_epochs": bands[0], "factor": eta, "max_epochs": max_iter}
            if len(bands) < s:
                self.note(f"{key}.s", f"{s} bands asked, but only {len(bands)} fit above 1 iteration.")
        elif min_iter is not None:
            if max_iter is None:
                max_iter = self._epochs_from(space)
                if max_iter is not None:
                    self.note(f"{key}.max_iter", f"none given: taken from the fixed parameter for epochs ({max_iter}).")
            else:
                self.note(f"{key}.max_iter", "W&B needs s with max_iter; read as the last epoch of the checks from min_iter up.")
            halving = {"min_epochs": min_iter, "factor": eta}
            if max_iter is None:
                self.note(key, f"W&B checks runs at {min_iter}, {min_iter * eta}, {min_iter * eta * eta}, ... without end; "
                               "set search.halving.max_epochs (and brackets) to the epochs your program trains.")
            else:
                halving["max_epochs"] = max_iter
        else:
            raise self.fail(key, "needs min_iter (the first check), or max_iter with s; e.g. "
                                 "{type: hyperband, min_iter: 3, eta: 3}.")
        self.note(key, "W&B stops runs at its bands as they report (asynchronously); hptune compares the trials of "
                       "a round at the same bands and promotes the best 1/eta (synchronous successive halving, one "
                       "bracket). It counts iterations as reports of the metric: report it once per epoch.")
        return halving

    @staticmethod
    def _epochs_from(space: dict) -> int | None:
        for name, value in space.items():
            if name.split(".")[-1] in EPOCH_PARAM_NAMES and _is_int(value) and value >= 1:
                return int(value)
        return None


# ----------------------------------------------------------------------------
# the agent's command line


def expand_command(tokens: list[str], params: dict, *, program: str | None, interpreter: str,
                   env: str | None = "/usr/bin/env", args_json_file: str | None = None,
                   groups: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """The argv W&B's agent would run for one trial.

    tokens: the sweep's command (objective.command); params: the trial's values
    by name (dotted names from nested groups are nested again under the names
    in `groups`, as the agent receives them). Macros are expanded only as whole
    tokens, as the agent does: ${env} (omitted when env is None, as on
    Windows), ${interpreter}, ${program}, ${args} (--name=value),
    ${args_no_hyphens} (name=value), ${args_no_boolean_flags} (--flag for
    true, nothing for false), ${args_no_equals} (--name value), ${args_json}
    (one JSON token) and ${args_json_file} (the path given; write
    `args_json(params)` there first). An unknown ${macro} expands to nothing.
    ${envvar:NAME} anywhere in a token becomes $NAME from `environ` (default
    os.environ), or NAME itself when unset. Values are formatted as Python's
    str() formats what the agent receives: True, 0.001, 1e-05, [64, 64],
    {'lr': 0.01}.
    """
    values = run_args(params, groups)
    flags, no_hyphens, no_booleans, no_equals = [], [], [], []
    for name, value in values.items():
        flag = f"{name}={_fmt(value)}"
        flags.append("--" + flag)
        no_hyphens.append(flag)
        no_equals += [f"--{name}", _fmt(value)]
        if isinstance(value, bool):
            if value:
                no_booleans.append("--" + name)
        else:
            no_booleans.append("--" + flag)
    macros: dict[str, list[str]] = {
        "args": flags,
        "args_no_hyphens": no_hyphens,
        "args_no_boolean_flags": no_booleans,
        "args_no_equals": no_equals,
        "args_json": [json.dumps(values)],
        "interpreter": [interpreter],
    }
    if env:
        macros["env"] = [env]
    env_vars = os.environ if environ is None else environ
    out: list[str] = []
    for token in tokens:
        token = ENVVAR_RE.sub(lambda m: env_vars.get(m.group(1), m.group(1)), str(token))
        if token.startswith("${") and token.endswith("}"):
            name = token[2:-1]
            if name == "program":
                if program is None:
                    raise ValueError("the command uses ${program}, but no program was given")
                out.append(program)
            elif name == "args_json_file":
                if args_json_file is None:
                    raise ValueError("the command uses ${args_json_file}: write args_json(params) to a file and pass its path")
                out.append(args_json_file)
            else:
                out += macros.get(name, [])
        else:
            out.append(token)
    return out


def args_json(params: dict, groups: Iterable[str] = ()) -> str:
    """The JSON text of ${args_json}, and of the file ${args_json_file} names."""
    return json.dumps(run_args(params, groups))


def run_args(params: dict, groups: Iterable[str] = ()) -> dict[str, Any]:
    """The trial's values as the agent receives them: plain Python values, nested groups
    nested again, in the order of W&B's sweep library (plain names sorted, then the groups
    sorted; inside a group, sorted)."""
    nested = nest_params({str(k): _plain(v) for k, v in params.items()}, groups)
    plain = {k: nested[k] for k in sorted(nested) if k not in _top_groups(groups)}
    grouped = {k: _sorted_dict(nested[k]) for k in sorted(nested) if k in _top_groups(groups)}
    return {**plain, **grouped}


def nest_params(flat: dict, groups: Iterable[str]) -> dict[str, Any]:
    """{'optimizer.lr': 0.1, 'bs': 32}, groups ['optimizer'] -> {'optimizer': {'lr': 0.1}, 'bs': 32}.

    A name nests under the longest group that prefixes it (recursively), so a
    dotted key that was written as one key stays one key inside its group.
    """
    groups = sorted(set(groups), key=len, reverse=True)

    def path(name: str) -> list[str]:
        for g in groups:
            if name.startswith(g + "."):
                return [*path(g), name[len(g) + 1:]]
        return [name]

    out: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = path(name)
        node = out
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ValueError(f"{name!r} nests under {p!r}, which is also a parameter")
            node = child
        if leaf in node:
            raise ValueError(f"{name!r} is given twice once nested")
        node[leaf] = value
    return out


def _top_groups(groups: Iterable[str]) -> set[str]:
    return {g.split(".")[0] for g in groups} if groups else set()


def _sorted_dict(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_dict(value[k]) for k in sorted(value)}
    return value


def _plain(value: Any) -> Any:
    """numpy scalars -> Python, tuples -> lists: what a JSON round trip through W&B gives the agent."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)):
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _fmt(value: Any) -> str:
    """How the agent writes a value into a flag: Python's str() (True, 1e-05, [64, 64])."""
    return str(value)


# ----------------------------------------------------------------------------
# writing hptune's YAML


TOP_ORDER = ("name", "seed", "device", "data", "objective", "search", "space")
OBJECTIVE_ORDER = ("command", "program", "metric", "goal", "groups", "function", "path")
SEARCH_ORDER = ("method", "trials", "rounds", "halving", "jobs", "threads", "top", "margin", "backend", "address")
RANGE_ORDER = ("low", "high", "scale", "step", "integer", "values", "weights", "value")


def to_hptune_yaml(config: dict, notes: list[str], *, source: str) -> str:
    """The text `hptune convert SWEEP` prints: the notes as comments, then the config.

    Floats are written so that PyYAML reads them back as floats (1.0e-04, not 1e-04).
    """
    import yaml

    out = [f"# hptune config translated from the W&B sweep {source}."]
    if notes:
        out.append("# Notes:")
        out += [f"# - {' '.join(str(n).split())}" for n in notes]
    body = yaml.dump(_ordered(config), Dumper=_dumper(), sort_keys=False, default_flow_style=None,
                     allow_unicode=True, width=10_000)
    return "\n".join(out) + "\n" + body


def _ordered(config: dict) -> dict:
    def order(d: dict, keys: tuple[str, ...]) -> dict:
        return {**{k: d[k] for k in keys if k in d}, **{k: v for k, v in d.items() if k not in keys}}

    out = order(config, TOP_ORDER)
    if isinstance(out.get("objective"), dict):
        out["objective"] = order(out["objective"], OBJECTIVE_ORDER)
    if isinstance(out.get("search"), dict):
        out["search"] = order(out["search"], SEARCH_ORDER)
    if isinstance(out.get("space"), dict):
        out["space"] = {k: order(v, RANGE_ORDER) if isinstance(v, dict) else v for k, v in out["space"].items()}
    return out


def format_float(x: float) -> str:
    """A float as YAML that PyYAML reads back as the same float: 0.1, 1.0e-04, 2.5e+06, .inf."""
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        for digits in range(1, 18):
            text = f"{x:.{digits}e}"
            if float(text) == x:
                break
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{exponent[0]}{exponent[1:].zfill(2)}"
    text = repr(x)
    return text if ("." in text or "e" in text) else text + ".0"


def _dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_float(dumper: Any, value: float) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:float", format_float(value))

    Dumper.add_representer(float, represent_float)
    return Dumper


# ----------------------------------------------------------------------------
# helpers


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tidy(x: float) -> float:
    """12 significant digits: e^-1 = 0.367879441171, not 0.36787944117144233 (and it survives YAML)."""
    return float(f"{x:.12g}")


def _keep(x: float | int) -> float | int:
    """A bound as given: ints stay ints (W&B keeps the type), floats stay floats."""
    return x if _is_int(x) else float(x)


def _arange(low: float, high: float, q: float, *, integer: bool) -> list[Any]:
    """W&B's grid points of q_uniform: numpy.arange(min, max, q), tidied of binary tails."""
    import numpy as np

    points = np.arange(low, high, q).tolist()
    if integer:
        return [int(round(p)) for p in points]
    return [float(f"{p:.12g}") for p in points]


def _value_key(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, sort_keys=True)


def _kind(raw: Any) -> str:
    if raw is None:
        return "empty value"
    if isinstance(raw, bool):
        return "boolean"
    return {list: "list", str: "string", int: "number", float: "number"}.get(type(raw), type(raw).__name__)


def _short(value: Any, limit: int = 80) -> str:
    """A value as the user wrote it, at most `limit` characters."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
