"""W&B sweep files -> hptune config: the corpus of real sweep files, tables of good
and malformed inputs, sampling checks against W&B's formulas, and the agent's
command macros."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hptune.config import parse_config, parse_space
from hptune.errors import ConfigError
from hptune.config.wandb import (
    args_json,
    convert_file,
    expand_command,
    format_float,
    is_wandb_sweep,
    load_sweep_file,
    nest_params,
    run_args,
    to_hptune_yaml,
    translate_sweep,
)

CORPUS = Path(__file__).parent / "fixtures" / "wandb_sweeps"
CORPUS_FILES = sorted(p for p in CORPUS.iterdir() if p.suffix in (".yaml", ".yml"))
# the corpus files that cannot be translated, and what their error names
CORPUS_ERRORS = {
    "AshwinSankar17__da6401_assignment1__sweep_config.yaml": ("line 49, column 9", "malformed YAML"),
    "wandb__examples__sweep-tune-hyperopt.yaml": ("tune", "Ray Tune"),
}
LOG_DISTS = {"log_uniform", "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values",
             "q_log_uniform", "q_log_uniform_values"}


def sweep(**kw: Any) -> dict:
    """A minimal valid sweep with the given keys replaced."""
    base: dict[str, Any] = {"program": "train.py", "method": "random", "run_cap": 30,
                            "metric": {"name": "val_loss", "goal": "minimize"},
                            "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1}}}
    base.update(kw)
    return base


def translate(raw: dict) -> tuple[dict, list[str]]:
    return translate_sweep(raw, source="sweep.yaml")


def space_of(params: dict, method: str = "random") -> dict:
    return translate(sweep(method=method, parameters=params))[0]["space"]


# ----------------------------------------------------------------------------
# the corpus


def test_corpus_is_large_enough_and_every_file_names_its_source() -> None:
    assert len(CORPUS_FILES) >= 25
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    for path in CORPUS_FILES:
        head = path.read_text(encoding="utf-8").splitlines()[:2]
        assert head[0].startswith("# Source: https://github.com/"), path.name
        assert "commit" in head[1] and "path" in head[1], path.name
        assert f"`{path.name}`" in sources, f"{path.name} is not listed in SOURCES.md"


def _flatten(params: dict, prefix: str = "") -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, spec in params.items():
        if isinstance(spec, dict) and "parameters" in spec:
            out.update(_flatten(spec["parameters"], f"{prefix}{name}."))
        else:
            out[prefix + name] = spec
    return out


def _wandb_dist(spec: dict) -> str:
    """W&B's distribution for a spec, inferred independently of the code under test."""
    if "distribution" in spec:
        return spec["distribution"]
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
    return "int_uniform" if ints else "uniform"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_file_translates_or_fails_clearly(path: Path) -> None:
    if path.name in CORPUS_ERRORS:
        key, words = CORPUS_ERRORS[path.name]
        with pytest.raises(ConfigError) as err:
            translate_sweep(load_sweep_file(path), source=path.name)
        assert err.value.key == key and words in str(err.value) and path.name in str(err.value)
        return
    raw = load_sweep_file(path)
    assert is_wandb_sweep(raw)
    config, notes = translate_sweep(raw, source=path.name)
    assert all(isinstance(n, str) and "\n" not in n for n in notes)
    space = config["space"]
    flat = _flatten(raw["parameters"])
    assert list(space) == list(flat)  # every parameter, in the file's order, nested groups dotted
    grid = raw["method"] == "grid"
    for name, spec in flat.items():
        dist, got = _wandb_dist(spec), space[name]
        if dist == "constant":
            assert not (isinstance(got, dict) and "low" in got), name
        elif dist == "categorical" or grid:
            assert isinstance(got, list) or "values" in got, name
        elif dist in LOG_DISTS:
            assert got["scale"] == "log" and got["low"] < got["high"], name
        else:
            assert dist in ("uniform", "int_uniform", "q_uniform"), (name, dist)
            assert "scale" not in got and got["low"] < got["high"], name
            assert got.get("integer", False) == (dist == "int_uniform" or isinstance(spec.get("q"), int)), name
    assert config["search"]["method"] == ("grid" if grid else "random")
    assert config["objective"]["command"]


@pytest.mark.parametrize("path", [p for p in CORPUS_FILES if p.name not in CORPUS_ERRORS], ids=lambda p: p.name)
def test_corpus_yaml_round_trips_and_passes_hptunes_validator(path: Path) -> None:
    config, notes = translate_sweep(load_sweep_file(path), source=path.name)
    text = to_hptune_yaml(config, notes, source=path.name)
    assert yaml.safe_load(text) == config
    if "metric" not in config["objective"]:  # W&B runs a random or grid sweep without one; hptune ranks by it
        with pytest.raises(ConfigError, match="objective.metric: is missing"):
            parse_config(config, source=path.name)
        return
    if "halving" in config["search"] and "max_epochs" not in config["search"]["halving"]:
        # W&B checks without end: hptune asks for the budget (a note says so)
        with pytest.raises(ConfigError, match="search.halving: needs the full budget"):
            parse_config(config, source=path.name)
        return
    parsed = parse_config(config, source=path.name)  # what `hptune search sweep.yaml` runs
    assert parsed.objective.kind == "command" and set(parsed.space.names) == set(config["space"])


CORPUS_EXPECTED = {
    "MilesCranmer__pysr_wandb__sweep.yml": {
        "adaptive_parsimony_scaling": {"low": 0.367879441171, "high": 403.428793493, "scale": "log"},
        "tournament_selection_n": {"low": 2, "high": 20, "integer": True},
        "annealing": ["true", "false"],
    },
    "AntonRydahl__MNIST_VAE_SWEEP__sweep.yaml": {
        "learn_rate": {"low": 1e-5, "high": 0.1}, "epochs": {"low": 5, "high": 50, "integer": True}},
    "czbiohub-sf__yogo__sweep.yml": {"batch_size": {"low": 1, "high": 256, "scale": "log", "step": 1.0}},
    "hericks__online-lever-adaptation__drqn_random_sweep.yml": {
        "len_update_cycle": {"low": 1, "high": 64, "scale": "log", "step": 1, "integer": True}, "eps_min": 0},
    "dhruvdcoder__wandb-allennlp__wandb_sweep_nli_lstm.yaml": {
        "overrides.model.input_size": {"low": 100, "high": 500, "step": 1.0},
        "overrides.model.bidirectional": "true"},
    "ayulockin__av-segmentation__sweep.yml": {"scheduler": [True], "config": ["configs/baseline.py"]},
    "desy-ml__rl-vs-bo__sweep.yml": {"net_arch": [[32, 32], [400, 300], [800, 600]]},
    "tsilva__mnist-classifier__sweep.yml": {"seeds": {"value": [123]}},
    "HashakGik__torch-wandb-boilerplate__sweep.yml": {"lr": [-0.001, 0.001, 1.0, -0.01], "device": "cuda:0"},
    "karapostK__hassaku__mf_ml1m_sweep_conf.yml": {
        "lr": {"low": 1e-5, "high": 0.01, "scale": "log"}, "running_settings.batch_verbose": True},
    "wandb__sweeps__sweep-nested.yaml": {"optimizer.nadam.beta": [0.9, 0.95]},
    "wandb__examples__minimal-hydra-example__wandb_sweep.yaml": {
        "optimizer.config.learning_rate": {"low": 1e-5, "high": 0.1}, "optimizer": ["sgd", "adagrad", "adam"]},
}


@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTED))
def test_corpus_values(name: str) -> None:
    space = translate_sweep(load_sweep_file(CORPUS / name), source=name)[0]["space"]
    for param, want in CORPUS_EXPECTED[name].items():
        got = space[param]
        if isinstance(want, dict) and "low" in want:
            assert got.keys() == want.keys(), param
            for k, v in want.items():
                assert got[k] == pytest.approx(v, rel=1e-11) if isinstance(v, float) else got[k] == v, (param, k)
                assert type(got[k]) is type(v), (param, k)
        else:
            assert got == want, param


def test_corpus_search_and_objective_details() -> None:
    def load(name: str) -> tuple[dict, list[str]]:
        return translate_sweep(load_sweep_file(CORPUS / name), source=name)

    cfg, notes = load("karapostK__hassaku__mf_ml1m_sweep_conf.yml")  # bayes, run_cap 50
    assert cfg["search"] == {"method": "random", "trials": 16, "rounds": 3}
    assert cfg["objective"]["groups"] == ["running_settings"]
    assert any("3 rounds of 16 trials (48 in all, under run_cap 50)" in n for n in notes)
    assert any(n.startswith("project:") for n in notes) and any(n.startswith("entity:") for n in notes)

    cfg, notes = load("wandb__examples__pytorch-cnn-fashion__sweep-grid-hyperband.yaml")
    assert cfg["search"] == {"method": "grid", "trials": 540, "rounds": 1,
                             "halving": {"min_epochs": 3, "factor": 3, "max_epochs": 27}}
    cfg, _ = load("wandb__sweeps__sweep-local-hyperband.yaml")  # max_iter 10, s 2, eta 3: bands 1 and 3
    assert cfg["search"]["halving"] == {"min_epochs": 1, "factor": 3, "max_epochs": 10}
    cfg, notes = load("Aleph-Alpha__magma__sweep.yml")  # min_iter only, no epochs parameter
    assert cfg["search"]["halving"] == {"min_epochs": 300, "factor": 3}
    assert any("300, 900, 2700, ... without end" in n for n in notes)

    cfg, notes = load("DuaneNielsen__reality__sweep_config.yaml")
    assert cfg["space"]["lr"]["low"] == pytest.approx(math.exp(1e-4))
    assert any("probably a mistake" in n and "log_uniform_values" in n for n in notes)

    cfg, notes = load("desy-ml__rl-vs-bo__sweep.yml")
    assert cfg["name"] == "First-Sweep"
    assert cfg["objective"]["command"] == ["${env}", "python3", "${program}", "${args}"]
    cfg, notes = load("manuel-delverme__constrained_vs_regularized__sweep.yml")
    assert "metric" not in cfg["objective"] and any("no ${args...} macro" in n for n in notes)
    cfg, notes = load("jeremyadamsfisher__Amphisbaena__sweep.yml")
    assert cfg["objective"]["program"] is None and any("wandb.agent(function=...)" in n for n in notes)
    cfg, _ = load("copenlu__flexible-probing__sweep.yml")
    assert cfg["objective"]["command"][-2:] == ["${args}", "manual"]
    assert cfg["space"]["l1-weight"] == [0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]


def test_convert_file_prints_notes_then_the_config() -> None:
    text = convert_file(CORPUS / "wandb__sweeps__sweep-nested.yaml")
    lines = text.splitlines()
    assert lines[0] == "# hptune config translated from the W&B sweep wandb__sweeps__sweep-nested.yaml."
    body = [ln for ln in lines if not ln.startswith("#")]
    assert [ln.split(":")[0] for ln in body if not ln.startswith(" ")] == ["seed", "objective", "search", "space"]
    assert "  optimizer.lr: [0.001, 1.0e-04]" in lines


# ----------------------------------------------------------------------------
# recognizing a sweep


@pytest.mark.parametrize(("raw", "expected"), [
    ({"method": "random", "parameters": {"lr": {"values": [0.1]}}}, True),
    ({"parameters": {"lr": {"min": 0.0, "max": 1.0}}}, True),
    ({"program": "train.py", "method": "bayes"}, True),
    ({"metric": {"name": "loss"}, "program": "x.py"}, True),
    ({"sweep": {"method": "bayes", "parameters": {"a": {"value": 1}}}}, True),  # wrapped: translate says so
    ({"space": {"lr": {"low": 0.1, "high": 1.0}}, "objective": {"metric": "val_loss"}}, False),
    ({"defaults": ["common"], "metric": "episode_reward", "sweep": "???"}, False),  # a Hydra config
    ({"name": "digits", "search": {"trials": 5}}, False),
    ([], False),
    (None, False),
])
def test_is_wandb_sweep(raw: Any, expected: bool) -> None:
    assert is_wandb_sweep(raw) is expected


def test_hptunes_own_config_is_not_a_sweep() -> None:
    raw = yaml.safe_load((Path(__file__).parent.parent / "configs" / "digits.yaml").read_text())
    assert not is_wandb_sweep(raw)


# ----------------------------------------------------------------------------
# good inputs: W&B parameter -> hptune space entry


GOOD_PARAMS = [
    ({"values": [16, 32, 64]}, [16, 32, 64]),
    ({"values": ["adam", "sgd"], "distribution": "categorical"}, ["adam", "sgd"]),
    ({"values": ["a", "b"], "probabilities": [0.7, 0.3]}, {"values": ["a", "b"], "weights": [0.7, 0.3]}),
    ({"values": ["a", "b"], "probabilities": [0.7, 0.3], "distribution": "categorical_w_probabilities"},
     {"values": ["a", "b"], "weights": [0.7, 0.3]}),
    ({"values": ["a", "a", "b"]}, {"values": ["a", "b"], "weights": [0.666666666667, 0.333333333333]}),
    ({"values": [1, 1.0, True]}, [1, 1.0, True]),  # W&B tells these apart
    ({"values": [[64, 64], [128]]}, [[64, 64], [128]]),
    ({"values": ["1e-3", "1e-4"]}, [0.001, 0.0001]),
    ({"value": 0.5}, 0.5),
    ({"value": "adam", "distribution": "constant"}, "adam"),
    ({"value": [1, 2]}, {"value": [1, 2]}),
    ({"value": None}, {"value": None}),
    ({"value": {"a": 1}}, {"value": {"a": 1}}),
    ({"min": 1, "max": 10}, {"low": 1, "high": 10, "integer": True}),
    ({"min": 1, "max": 10.0}, {"low": 1.0, "high": 10.0}),
    ({"min": 0.1, "max": 1}, {"low": 0.1, "high": 1.0}),
    ({"min": 0, "max": 1, "distribution": "uniform"}, {"low": 0.0, "high": 1.0}),
    ({"min": 32, "max": 256, "distribution": "int_uniform"}, {"low": 32, "high": 256, "integer": True}),
    ({"min": "1e-5", "max": "1e-2", "distribution": "log_uniform_values"}, {"low": 1e-5, "high": 0.01, "scale": "log"}),
    ({"min": 0, "max": 1, "q": 0.05, "distribution": "q_uniform"}, {"low": 0, "high": 1, "step": 0.05}),
    ({"min": 16, "max": 256, "q": 16, "distribution": "q_uniform"}, {"low": 16, "high": 256, "step": 16, "integer": True}),
    ({"min": 100, "max": 500, "distribution": "q_uniform"}, {"low": 100, "high": 500, "step": 1.0}),
    ({"min": 1e-4, "max": 0.1, "distribution": "log_uniform_values"}, {"low": 1e-4, "high": 0.1, "scale": "log"}),
    ({"min": 1e-4, "max": 0.1, "distribution": "inv_log_uniform_values"}, {"low": 1e-4, "high": 0.1, "scale": "log"}),
    ({"min": -9.21034037198, "max": -2.302585093, "distribution": "log_uniform"},
     {"low": 1.0e-4, "high": 0.1, "scale": "log"}),
    ({"min": 2.302585093, "max": 9.21034037198, "distribution": "inv_log_uniform"},
     {"low": 1.0e-4, "high": 0.1, "scale": "log"}),
    ({"min": 8, "max": 512, "q": 8, "distribution": "q_log_uniform_values"},
     {"low": 8, "high": 512, "scale": "log", "step": 8, "integer": True}),
    ({"min": 0, "max": 2, "q": 1, "distribution": "q_log_uniform"},
     {"low": 1, "high": 7.38905609893, "scale": "log", "step": 1, "integer": True}),
    ({"distribution": "beta"}, {"low": 0.0, "high": 1.0}),
    ({"distribution": "beta", "a": 1, "b": 1}, {"low": 0.0, "high": 1.0}),
]


@pytest.mark.parametrize(("spec", "expected"), GOOD_PARAMS, ids=lambda x: json.dumps(x)[:50])
def test_good_parameter(spec: dict, expected: Any) -> None:
    got = space_of({"x": spec})["x"]
    if isinstance(expected, dict) and "low" in expected:
        assert got.keys() == expected.keys()
        for k, v in expected.items():
            assert got[k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), k
            if k in ("low", "high", "step"):
                assert isinstance(got[k], int) == isinstance(v, int), (k, got[k])
    elif isinstance(expected, dict) and "weights" in expected:
        assert got["values"] == expected["values"]
        assert got["weights"] == pytest.approx(expected["weights"])
    else:
        assert got == expected
        assert [type(x) for x in got] == [type(x) for x in expected] if isinstance(expected, list) else type(got) is type(expected)


@pytest.mark.parametrize(("spec", "expected"), [
    ({"values": [1, 2, 2]}, [1, 2]),
    ({"min": 1, "max": 4}, [1, 2, 3, 4]),
    ({"min": 0, "max": 1, "q": 0.25, "distribution": "q_uniform"}, [0.0, 0.25, 0.5, 0.75]),  # W&B: arange, max excluded
    ({"min": 0, "max": 0.3, "q": 0.1, "distribution": "q_uniform"}, [0.0, 0.1, 0.2]),  # no 0.30000000000000004
    ({"min": 8, "max": 32, "q": 8, "distribution": "q_uniform"}, [8, 16, 24]),
    ({"value": 3}, 3),
])
def test_grid_lists_what_wandbs_grid_runs(spec: dict, expected: Any) -> None:
    assert space_of({"x": spec}, method="grid")["x"] == expected


def test_nested_groups_flatten_to_dotted_names_and_dotted_keys_stay_one_name() -> None:
    params = {"a.b": {"value": 1}, "opt": {"parameters": {"lr": {"values": [0.1]},
                                                          "inner": {"parameters": {"beta": {"value": 0.9}}},
                                                          "x.y": {"value": 2}}}}
    cfg, _ = translate(sweep(parameters=params))
    assert list(cfg["space"]) == ["a.b", "opt.lr", "opt.inner.beta", "opt.x.y"]
    assert cfg["objective"]["groups"] == ["opt", "opt.inner"]
    assert "groups" not in translate(sweep())[0]["objective"]


@pytest.mark.parametrize(("run_cap", "method", "search", "words"), [
    (None, "random", {"method": "random", "trials": 60, "rounds": 1}, "none given (W&B runs until stopped)"),
    (25, "random", {"method": "random", "trials": 25, "rounds": 1}, None),
    (None, "bayes", {"method": "random", "trials": 20, "rounds": 3}, "3 rounds of 20 trials"),
    (50, "bayes", {"method": "random", "trials": 16, "rounds": 3}, "48 in all, under run_cap 50"),
    (25, "bayes", {"method": "random", "trials": 12, "rounds": 2}, "2 rounds of 12"),
    (8, "bayes", {"method": "random", "trials": 8, "rounds": 1}, "too few to zoom"),
    (None, "grid", {"method": "grid", "trials": 6, "rounds": 1}, "Random search tries more values"),
    (4, "grid", {"method": "grid", "trials": 4, "rounds": 1}, "run_cap 4 runs the first 4"),
])
def test_method_and_run_cap(run_cap: int | None, method: str, search: dict, words: str | None) -> None:
    raw = sweep(method=method, parameters={"a": {"values": [1, 2, 3]}, "b": {"values": [1, 2]}})
    if run_cap is None:
        del raw["run_cap"]
    else:
        raw["run_cap"] = run_cap
    cfg, notes = translate(raw)
    assert cfg["search"] == search
    if words:
        assert any(words in n for n in notes), notes


@pytest.mark.parametrize(("early", "halving"), [
    ({"type": "hyperband", "min_iter": 3}, {"min_epochs": 3, "factor": 3}),
    ({"type": "hyperband", "min_iter": 2, "eta": 2, "max_iter": 20}, {"min_epochs": 2, "factor": 2, "max_epochs": 20}),
    ({"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3}, {"min_epochs": 3, "factor": 3, "max_epochs": 27}),
    ({"type": "hyperband", "max_iter": 81, "s": 3}, {"min_epochs": 3, "factor": 3, "max_epochs": 81}),
    ({"type": "hyperband", "max_iter": 9, "s": 5, "eta": 3}, {"min_epochs": 1, "factor": 3, "max_epochs": 9}),
    ({"type": "hyperband", "max_iter": 27, "s": 2, "min_iter": 5}, {"min_epochs": 3, "factor": 3, "max_epochs": 27}),
])
def test_hyperband_becomes_halving(early: dict, halving: dict) -> None:
    cfg, notes = translate(sweep(early_terminate=early))
    assert cfg["search"]["halving"] == halving
    assert any("synchronous successive halving, one bracket" in n for n in notes)


def test_hyperband_takes_max_epochs_from_a_fixed_epochs_parameter() -> None:
    params = {"lr": {"values": [0.1]}, "trainer.max_epochs": {"value": 30}}
    cfg, notes = translate(sweep(parameters=params, early_terminate={"type": "hyperband", "min_iter": 3}))
    assert cfg["search"]["halving"] == {"min_epochs": 3, "factor": 3, "max_epochs": 30}
    assert any("taken from the fixed parameter" in n for n in notes)


def test_metric_goal_defaults_to_minimize_and_top_level_notes() -> None:
    cfg, notes = translate(sweep(metric={"name": "acc"}, project="p", entity="e", description="d",
                                 controller={"type": "local"}, imports=["torch"], name="my sweep"))
    assert cfg["objective"]["goal"] == "minimize" and cfg["objective"]["metric"] == "acc"
    assert cfg["name"] == "my-sweep"
    for key in ("metric.goal", "project", "entity", "description", "controller", "imports", "name"):
        assert sum(n.startswith(key + ":") for n in notes) == 1, key


def test_command_tokens_are_kept_as_text_with_notes_for_what_the_agent_ignores() -> None:
    cfg, notes = translate(sweep(command=["${env}", "python", "${program}", 3, "--x=${args}", "${foo}", "${args}"]))
    assert cfg["objective"]["command"] == ["${env}", "python", "${program}", "3", "--x=${args}", "${foo}", "${args}"]
    assert any(n.startswith("command[4]") and "whole token" in n for n in notes)
    assert any(n.startswith("command[5]") and "expands it to nothing" in n for n in notes)
    cfg, _ = translate(sweep())
    assert cfg["objective"]["command"] == ["${env}", "${interpreter}", "${program}", "${args}"]
    assert cfg["objective"]["program"] == "train.py"


# ----------------------------------------------------------------------------
# malformed inputs: a ConfigError naming the key, the value and what W&B accepts


def params(spec: Any) -> dict:
    return sweep(parameters={"lr": spec})


MALFORMED = [
    # (sweep, key, words in the message)
    ({"parameters": {"a": {"values": [1]}}}, "method", "is missing"),
    (sweep(method="bayesian"), "method", "Did you mean 'bayes'"),
    (sweep(method="custom"), "method", "custom"),
    (sweep(methd="random"), "methd", "Did you mean 'method'"),
    (sweep(tune={"x": 1}), "tune", "Ray Tune"),
    (sweep(metrics=[{"name": "a"}, {"name": "b"}]), "metrics", "one metric"),
    ({"sweep": sweep()}, "sweep", "nested under `sweep:`"),
    ({k: v for k, v in sweep().items() if k != "parameters"}, "parameters", "is missing"),
    (sweep(parameters={}), "parameters", "non-empty mapping"),
    (sweep(parameters=[1]), "parameters", "non-empty mapping"),
    (sweep(metric="val_loss"), "metric", "must be a mapping"),
    (sweep(metric={"goal": "minimize"}), "metric.name", "got null"),
    (sweep(metric={"name": "x", "goal": "maximise"}), "metric.goal", "Did you mean 'maximize'"),
    (sweep(metric={"name": "x", "gaol": "max"}), "metric.gaol", "Did you mean 'goal'"),
    ({k: v for k, v in sweep(method="bayes").items() if k != "metric"}, "metric", "method bayes needs a metric"),
    (sweep(run_cap=0), "run_cap", "got 0"),
    (sweep(run_cap="10"), "run_cap", "got '10'"),
    (sweep(run_cap=2.5), "run_cap", "got 2.5"),
    (sweep(program=["train.py"]), "program", "path of the training script"),
    (sweep(command="python train.py ${args}"), "command", "list of tokens"),
    (sweep(command=["${env}", ["x"]]), "command[1]", "single token"),
    (sweep(name=3), "name", "must be a string"),
    (params(0.01), "parameters.lr", "{value: 0.01}"),
    (params([0.1, 0.01]), "parameters.lr", "{values: [0.1, 0.01]}"),
    (params({"distribution": "loguniform", "min": 1, "max": 2}), "parameters.lr.distribution", "Did you mean 'log_uniform'"),
    (params({"values": []}), "parameters.lr.values", "non-empty list"),
    (params({"values": 0.1}), "parameters.lr.values", "got 0.1"),
    (params({"values": [1, 2], "min": 0}), "parameters.lr.min", "mixes `values`"),
    (params({"values": [1, 2], "probabilities": [0.5]}), "parameters.lr.probabilities", "list of 2 numbers"),
    (params({"values": [1, 2], "probabilities": [0.5, 0.6]}), "parameters.lr.probabilities", "sum to 1"),
    (params({"values": [1, 2], "probabilities": [1.5, -0.5]}), "parameters.lr.probabilities[1]", ">= 0"),
    (params({"values": [1, 2], "probabilities": [0.5, 0.5], "distribution": "categorical"}),
     "parameters.lr.probabilities", "categorical_w_probabilities"),
    (params({"min": 0.1}), "parameters.lr.max", "is missing"),
    (params({"min": 0.1, "max": 0.01}), "parameters.lr.max", "greater than min (0.1); got 0.01"),
    (params({"min": 1, "max": 1}), "parameters.lr.max", "greater than min"),
    (params({"min": "a", "max": 1.0}), "parameters.lr.min", "got 'a'"),
    (params({"min": True, "max": 1.0}), "parameters.lr.min", "boolean"),
    (params({"min": 0.0, "max": 1.0, "q": 0.1}), "parameters.lr.q", "q_uniform"),
    (params({"min": 0.0, "max": 1.0, "distribution": "uniform", "mu": 0}), "parameters.lr.mu", "takes min, max"),
    (params({"min": 1.0, "max": 5, "distribution": "int_uniform"}), "parameters.lr.min", "write 1"),
    (params({"min": 0, "max": 1, "distribution": "log_uniform_values"}), "parameters.lr.min", "must be > 0"),
    (params({"min": 0, "max": 1, "q": 0, "distribution": "q_uniform"}), "parameters.lr.q", "must be > 0"),
    (params({"a": 1, "b": 1, "q": 0, "distribution": "q_beta"}), "parameters.lr.q", "must be > 0"),
    (params({"distribution": "categorical", "value": 3}), "parameters.lr.value", "takes values"),
    (params({"distribution": "constant"}), "parameters.lr.value", "is missing"),
    (params({"values": [1, 2], "distribution": "categorical_w_probabilities"}), "parameters.lr.probabilities", "is missing"),
    (params({"q": 2}), "parameters.lr", "no distribution"),
    (params({}), "parameters.lr", "needs values, value, min/max"),
    (params({"distribution": "normal", "mu": 0.5, "sigma": 0.1}), "parameters.lr", "min: 0.3, max: 0.7"),
    (params({"distribution": "normal"}), "parameters.lr", "normal(mu=0, sigma=1) has no bounds"),
    (params({"distribution": "q_normal", "mu": 10, "sigma": 2, "q": 1}), "parameters.lr", "q_uniform, min: 6, max: 14, q: 1"),
    (params({"distribution": "log_normal", "mu": -5, "sigma": 1}), "parameters.lr", "log_uniform_values, min: 0.000912, max: 0.0498"),
    (params({"distribution": "q_log_normal", "q": 2}), "parameters.lr", "q_log_uniform_values"),
    (params({"distribution": "normal", "sigma": -1}), "parameters.lr.sigma", ">= 0"),
    (params({"distribution": "beta", "a": 2, "b": 5}), "parameters.lr", "beta(a=2, b=5)"),
    (params({"distribution": "beta", "a": 0}), "parameters.lr.a", "> 0"),
    (params({"parameters": {"x": {"value": 1}}, "value": 2}), "parameters.lr.value", "holds only `parameters`"),
    (sweep(parameters={"9lr": {"value": 1}}), "parameters.9lr", "start with a letter"),
    (sweep(parameters={"a.b": {"value": 1}, "a": {"parameters": {"b": {"value": 2}}}}), "parameters.a.parameters.b", "second time"),
    (sweep(method="grid", parameters={"lr": {"distribution": "log_uniform_values", "min": 0.1, "max": 1}}),
     "parameters.lr", "grid search takes only values"),
    (sweep(method="grid", parameters={"lr": {"values": [1, 2], "probabilities": [0.5, 0.5]}}),
     "parameters.lr", "not probabilities"),
    (sweep(early_terminate={"type": "envelope"}), "early_terminate.type", "must be hyperband"),
    (sweep(early_terminate={"type": "hyperband"}), "early_terminate", "needs min_iter"),
    (sweep(early_terminate={"type": "hyperband", "max_iter": 27}), "early_terminate", "needs min_iter"),
    (sweep(early_terminate={"type": "hyperband", "min_iter": 0}), "early_terminate.min_iter", ">= 1"),
    (sweep(early_terminate={"type": "hyperband", "min_iter": 3, "eta": 1}), "early_terminate.eta", "must be > 1"),
    (sweep(early_terminate={"type": "hyperband", "min_iter": 3, "eta": 2.5}), "early_terminate.eta", "whole factor"),
    (sweep(early_terminate={"type": "hyperband", "max_iter": 2, "s": 2, "eta": 3}), "early_terminate.max_iter", "no band"),
    (sweep(early_terminate={"type": "hyperband", "min_iters": 3}), "early_terminate.min_iters", "Did you mean 'min_iter'"),
    (sweep(early_terminate=[1]), "early_terminate", "must be a mapping"),
    ({k: v for k, v in sweep(early_terminate={"type": "hyperband", "min_iter": 3}).items() if k != "metric"},
     "early_terminate", "compares runs by the metric"),
]


@pytest.mark.parametrize(("raw", "key", "words"), MALFORMED, ids=lambda x: x if isinstance(x, str) else None)
def test_malformed(raw: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        translate(raw)
    assert err.value.key == key, str(err.value)
    assert words in err.value.detail, str(err.value)
    assert str(err.value).startswith(f"sweep.yaml: {key}: ")


def test_malformed_values_are_shortened() -> None:
    with pytest.raises(ConfigError) as err:
        translate(sweep(method="x" * 500))
    assert "got '" + "x" * 76 + "...." in str(err.value) and "x" * 77 not in str(err.value)


def test_load_sweep_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_sweep_file(tmp_path / "missing.yaml")
    (tmp_path / "dup.yaml").write_text("method: random\nmethod: grid\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_sweep_file(tmp_path / "dup.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_sweep_file(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_sweep_file(tmp_path / "list.yaml")


# ----------------------------------------------------------------------------
# sampling: the translated entry samples like W&B's distribution


def wandb_sample(spec: dict, u: np.ndarray) -> np.ndarray:
    """W&B's sampler, written from the formulas of its docs and sweeps library: X = ppf(u)."""
    from scipy import stats

    dist = spec["distribution"]
    lo, hi, q = spec.get("min"), spec.get("max"), spec.get("q", 1.0)
    if dist == "uniform":
        return lo + u * (hi - lo)
    if dist == "int_uniform":
        return np.floor(lo + u * (hi - lo + 1))
    if dist == "q_uniform":
        return np.round((lo + u * (hi - lo)) / q) * q
    if dist == "log_uniform":  # legacy: bounds are exponents
        return np.exp(lo + u * (hi - lo))
    if dist == "log_uniform_values":
        return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    if dist == "inv_log_uniform":  # log(1/X) ~ U(min, max)
        return np.exp(-(lo + (1 - u) * (hi - lo)))
    if dist == "inv_log_uniform_values":  # log(1/X) ~ U(log(1/max), log(1/min))
        return np.exp(-(-np.log(hi) + (1 - u) * (np.log(hi) - np.log(lo))))
    if dist == "q_log_uniform":
        return np.round(np.exp(lo + u * (hi - lo)) / q) * q
    if dist == "q_log_uniform_values":
        return np.round(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))) / q) * q
    if dist == "beta":
        return stats.beta.ppf(u, spec.get("a", 1), spec.get("b", 1))
    raise AssertionError(dist)


def hptune_sample(entry: Any, u: np.ndarray) -> np.ndarray:
    """The contract's meaning of an entry: hptune's own Range sampling, then rounding to `step`."""
    if isinstance(entry, list):
        return np.array(entry, dtype=object)[np.minimum((u * len(entry)).astype(int), len(entry) - 1)]
    if "weights" in entry:
        idx = np.searchsorted(np.cumsum(entry["weights"]), u, side="right")
        return np.array(entry["values"], dtype=object)[np.minimum(idx, len(entry["values"]) - 1)]
    return parse_space({"x": entry}, builtin=False)["x"].from_unit(u)  # hptune's own sampling


CONTINUOUS = [
    {"distribution": "uniform", "min": -1.0, "max": 3.0},
    {"distribution": "log_uniform", "min": -9.0, "max": -2.0},
    {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
    {"distribution": "inv_log_uniform", "min": 1.0, "max": 6.0},
    {"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 1.0},
    {"distribution": "beta"},
]


@pytest.mark.parametrize("spec", CONTINUOUS, ids=lambda s: s["distribution"])
def test_continuous_distributions_sample_like_wandb(spec: dict) -> None:
    from scipy import stats

    entry = space_of({"x": spec})["x"]
    ours = hptune_sample(entry, np.random.default_rng(1).random(4000))
    theirs = wandb_sample(spec, np.random.default_rng(2).random(4000))
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    # and the same support, exactly
    lo, hi = wandb_sample(spec, np.array([0.0, 1.0]))
    assert (entry["low"], entry["high"]) == (pytest.approx(min(lo, hi), rel=1e-11), pytest.approx(max(lo, hi), rel=1e-11))


def test_legacy_log_uniform_bounds_are_exponents() -> None:
    entry = space_of({"x": {"distribution": "log_uniform", "min": -11, "max": -2}})["x"]
    assert entry["low"] == pytest.approx(math.exp(-11), rel=1e-11)
    assert entry["high"] == pytest.approx(math.exp(-2), rel=1e-11)
    x = hptune_sample(entry, np.random.default_rng(0).random(20_000))
    assert x.min() >= math.exp(-11) and x.max() <= math.exp(-2)
    # natural log uniform: each of the 9 e-folds gets a ninth of the draws
    counts = np.histogram(np.log(x), bins=9, range=(-11, -2))[0]
    assert np.all(np.abs(counts / len(x) - 1 / 9) < 0.015)


DISCRETE = [
    {"distribution": "int_uniform", "min": 3, "max": 9},
    {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
    {"distribution": "q_uniform", "min": 0.05, "max": 0.95, "q": 0.1},  # bounds off the grid
    {"distribution": "q_uniform", "min": 16, "max": 256, "q": 16},
    {"distribution": "q_log_uniform_values", "min": 1, "max": 64, "q": 1},
    {"distribution": "q_log_uniform", "min": 0.0, "max": 4.0, "q": 5},
]


@pytest.mark.parametrize("spec", DISCRETE, ids=lambda s: f"{s['distribution']}-{s['min']}-{s.get('q', '')}")
def test_quantized_distributions_sample_like_wandb(spec: dict) -> None:
    entry = space_of({"x": spec})["x"]
    n = 40_000
    ours = hptune_sample(entry, np.random.default_rng(3).random(n)).astype(float)
    theirs = wandb_sample(spec, np.random.default_rng(4).random(n)).astype(float)
    q = spec.get("q", 1)
    assert np.allclose(ours / q, np.round(ours / q))  # every value a multiple of q
    keys = np.union1d(np.round(ours, 9), np.round(theirs, 9))
    p_ours = np.array([(np.round(ours, 9) == k).mean() for k in keys])
    p_theirs = np.array([(np.round(theirs, 9) == k).mean() for k in keys])
    assert np.abs(p_ours - p_theirs).max() < 0.012, dict(zip(keys, p_ours - p_theirs))


def test_q_uniform_ends_get_half_weight_as_in_wandb() -> None:
    entry = space_of({"x": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}})["x"]
    x = hptune_sample(entry, np.random.default_rng(5).random(40_000))
    freq = [np.isclose(x, v).mean() for v in (0, 0.25, 0.5, 0.75, 1.0)]
    assert freq == pytest.approx([0.125, 0.25, 0.25, 0.25, 0.125], abs=0.01)


@pytest.mark.parametrize(("spec", "expected"), [
    ({"values": ["a", "b", "c"], "probabilities": [0.6, 0.3, 0.1]}, {"a": 0.6, "b": 0.3, "c": 0.1}),
    ({"values": ["a", "a", "a", "b"]}, {"a": 0.75, "b": 0.25}),
    ({"values": ["a", "b", "a"], "probabilities": [0.2, 0.5, 0.3]}, {"a": 0.5, "b": 0.5}),
])
def test_choices_sample_like_wandb(spec: dict, expected: dict) -> None:
    entry = space_of({"x": spec})["x"]
    x = hptune_sample(entry, np.random.default_rng(6).random(40_000))
    for value, p in expected.items():
        assert (x == value).mean() == pytest.approx(p, abs=0.01)


# ----------------------------------------------------------------------------
# the agent's command line


PARAMS = {"lr": 1e-05, "batch_size": 32, "use_bn": True, "dropout": False, "layers": [64, 64], "opt": "adam"}


@pytest.mark.parametrize(("macro", "expected"), [
    ("${args}", ["--batch_size=32", "--dropout=False", "--layers=[64, 64]", "--lr=1e-05", "--opt=adam", "--use_bn=True"]),
    ("${args_no_hyphens}", ["batch_size=32", "dropout=False", "layers=[64, 64]", "lr=1e-05", "opt=adam", "use_bn=True"]),
    ("${args_no_boolean_flags}", ["--batch_size=32", "--layers=[64, 64]", "--lr=1e-05", "--opt=adam", "--use_bn"]),
    ("${args_no_equals}", ["--batch_size", "32", "--dropout", "False", "--layers", "[64, 64]", "--lr", "1e-05",
                           "--opt", "adam", "--use_bn", "True"]),
    ("${args_json}", ['{"batch_size": 32, "dropout": false, "layers": [64, 64], "lr": 1e-05, "opt": "adam", "use_bn": true}']),
    ("${args_json_file}", ["wandb/config.json"]),
    ("${env}", ["/usr/bin/env"]),
    ("${interpreter}", ["python3"]),
    ("${program}", ["train.py"]),
    ("${unknown}", []),
    ("--fixed", ["--fixed"]),
    ("--lr=${args}", ["--lr=${args}"]),  # only whole tokens are macros
])
def test_expand_command_macros(macro: str, expected: list[str]) -> None:
    got = expand_command([macro], PARAMS, program="train.py", interpreter="python3", args_json_file="wandb/config.json")
    assert got == expected


def test_expand_command_default_command_and_windows() -> None:
    tokens = ["${env}", "${interpreter}", "${program}", "${args}"]
    params = {"lr": 0.001, "epochs": 10}
    assert expand_command(tokens, params, program="train.py", interpreter="python") == \
        ["/usr/bin/env", "python", "train.py", "--epochs=10", "--lr=0.001"]
    assert expand_command(tokens, params, program="train.py", interpreter="python", env=None) == \
        ["python", "train.py", "--epochs=10", "--lr=0.001"]
    assert expand_command([3, "${args}"], {"x": 1.0}, program=None, interpreter="python") == ["3", "--x=1.0"]


def test_expand_command_formats_values_as_the_agent_does() -> None:
    params = {"a": 0.1, "b": 1e-7, "c": 3.0, "d": None, "e": "two words", "f": {"k": [1, 2]},
              "g": np.float64(0.25), "h": np.int64(4), "i": (1, 2), "j": [np.float64(0.5)]}
    got = expand_command(["${args}"], params, program=None, interpreter="python")
    assert got == ["--a=0.1", "--b=1e-07", "--c=3.0", "--d=None", "--e=two words", "--f={'k': [1, 2]}",
                   "--g=0.25", "--h=4", "--i=[1, 2]", "--j=[0.5]"]
    assert json.loads(args_json(params))["j"] == [0.5]


def test_expand_command_nests_groups_again() -> None:
    params = {"batch_size": 32, "optimizer.lr": 0.001, "optimizer.nadam.beta": 0.9, "a.b": 1}
    groups = ["optimizer", "optimizer.nadam"]
    got = expand_command(["${args}"], params, program=None, interpreter="python", groups=groups)
    # plain names sorted, then the groups (the order of W&B's sweeps library)
    assert got == ["--a.b=1", "--batch_size=32", "--optimizer={'lr': 0.001, 'nadam': {'beta': 0.9}}"]
    assert args_json(params, groups) == '{"a.b": 1, "batch_size": 32, "optimizer": {"lr": 0.001, "nadam": {"beta": 0.9}}}'
    assert expand_command(["${args}"], {"optimizer.lr": 0.1}, program=None, interpreter="python") == ["--optimizer.lr=0.1"]


def test_nest_params() -> None:
    assert nest_params({"o.lr": 1, "o.x.y": 2, "z": 3}, ["o"]) == {"o": {"lr": 1, "x.y": 2}, "z": 3}
    assert nest_params({"o.i.b": 1}, ["o", "o.i"]) == {"o": {"i": {"b": 1}}}
    with pytest.raises(ValueError):
        nest_params({"o": 1, "o.lr": 2}, ["o"])
    assert list(run_args({"z": 1, "g.a": 2, "a": 3}, ["g"])) == ["a", "z", "g"]


def test_expand_command_envvar_and_errors() -> None:
    env = {"DATA": "/data", "lower": "x"}
    got = expand_command(["--data=${envvar:DATA}/train", "${envvar:MISSING}", "${envvar:lower}"], {},
                         program=None, interpreter="python", environ=env)
    # upper-case names only, as the agent; ${envvar:lower} is then an unknown macro, which expands to nothing
    assert got == ["--data=/data/train", "MISSING"]
    with pytest.raises(ValueError, match="program"):
        expand_command(["${program}"], {}, program=None, interpreter="python")
    with pytest.raises(ValueError, match="args_json_file"):
        expand_command(["${args_json_file}"], {}, program="t.py", interpreter="python")


def test_translated_command_expands() -> None:
    cfg, _ = translate_sweep(load_sweep_file(CORPUS / "wandb__examples__minimal-hydra-example__wandb_sweep.yaml"),
                             source="x")
    obj = cfg["objective"]
    argv = expand_command(obj["command"], {"optimizer.config.learning_rate": 0.01, "experiment": "expt001",
                                           "optimizer": "sgd"}, program=obj["program"], interpreter="python")
    assert argv == ["/usr/bin/env", "python", "main.py", "experiment=expt001", "optimizer=sgd",
                    "optimizer.config.learning_rate=0.01"]


# ----------------------------------------------------------------------------
# YAML output


@pytest.mark.parametrize(("x", "text"), [
    (1e-4, "1.0e-04"), (2.5e-5, "2.5e-05"), (0.001, "0.001"), (0.1, "0.1"), (3.0, "3.0"), (0.0, "0.0"),
    (-1e-7, "-1.0e-07"), (1e6, "1.0e+06"), (123456.5, "123456.5"), (1.2345678901234e-9, "1.2345678901234e-09"),
    (float("inf"), ".inf"), (float("-inf"), "-.inf"),
])
def test_format_float(x: float, text: str) -> None:
    assert format_float(x) == text
    assert yaml.safe_load(text) == x


def test_format_float_round_trips() -> None:
    rng = np.random.default_rng(7)
    for x in np.concatenate([10 ** rng.uniform(-12, 12, 500), -(10 ** rng.uniform(-12, 12, 100))]):
        x = float(x)
        loaded = yaml.safe_load(format_float(x))
        assert isinstance(loaded, float) and loaded == x
    assert math.isnan(yaml.safe_load(format_float(float("nan"))))


def test_to_hptune_yaml_layout() -> None:
    config = {"space": {"lr": {"scale": "log", "high": 0.1, "low": 1e-4}}, "search": {"trials": 5, "method": "random"},
              "objective": {"metric": "loss", "command": ["${args}"]}, "seed": 0, "name": "x"}
    text = to_hptune_yaml(config, ["a: one", "b: two\nlines"], source="s.yaml")
    assert text.startswith("# hptune config translated from the W&B sweep s.yaml.\n")
    assert "# - a: one\n# - b: two lines\n" in text
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert body == ["name: x", "seed: 0", "objective:", "  command: ['${args}']", "  metric: loss",
                    "search: {method: random, trials: 5}", "space:", "  lr: {low: 1.0e-04, high: 0.1, scale: log}"]
    assert yaml.safe_load(text) == config
