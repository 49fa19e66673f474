"""Config loading: good configs parse; every kind of user error names file, key, rule and value."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from hptune.config import lint_space, load_config, parse_config, with_overrides
from hptune.errors import ConfigError
from hptune.space import Choice, Fixed, Range

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_shipped_config_loads_with_its_documented_meaning():
    cfg = load_config(ROOT / "configs" / "digits.yaml")
    assert cfg.name == "digits" and cfg.seed == 0
    assert cfg.search.trials == 25 and cfg.search.jobs == 2
    assert cfg.data.dataset == "digits" and cfg.data.val_fraction == 0.2
    assert cfg.objective.metric == "val_accuracy" and cfg.objective.goal == "maximize"
    assert cfg.space["learning_rate"] == Range("learning_rate", 1e-4, 1.0, scale="log")
    assert cfg.space["beta1"] == Range("beta1", 0.9, 0.999, scale="one_minus_log")
    assert cfg.space["hidden_units"] == Range("hidden_units", 50, 100, integer=True)
    assert cfg.space["layers"] == Choice("layers", (2, 3, 4))
    assert cfg.space["epochs"] == Fixed("epochs", 10)
    assert cfg.warnings == ()


def test_defaults_and_name_from_the_file_stem(tmp_path):
    cfg = load_config(write(tmp_path, "space: {learning_rate: {low: 0.001, high: 0.1, scale: log}}\n", "my-exp.yaml"))
    assert cfg.name == "my-exp" and cfg.seed == 0 and cfg.search.rounds == 1
    assert cfg.objective.metric == "val_accuracy"


def test_numeric_strings_are_numbers_and_int_params_are_integer_ranges(tmp_path):
    cfg = load_config(write(tmp_path, """
        space:
          learning_rate: {low: 1e-4, high: 1e-1, scale: log}   # PyYAML reads 1e-4 as a string
          hidden_units: {low: 16, high: 64}
          batch_size: {low: 16, high: 512, scale: log, integer: true}
          weight_decay: 1e-5
    """))
    assert cfg.space["learning_rate"].low == 1e-4
    assert cfg.space["hidden_units"].integer
    assert cfg.space["weight_decay"].value == 1e-5


def test_loss_metrics_default_to_minimize(tmp_path):
    cfg = load_config(write(tmp_path, "objective: {metric: val_loss}\nspace: {epochs: 3}\n"))
    assert cfg.objective.goal == "minimize"


def test_user_functions_free_the_parameter_names(tmp_path):
    cfg = load_config(write(tmp_path, """
        objective: {function: "mymod:train", metric: score}
        space: {alpha: {low: 0.1, high: 10, scale: log}, kernel: [rbf, linear]}
    """))
    assert cfg.space.names == ["alpha", "kernel"] and not cfg.builtin


BAD = [
    # (yaml text, key path in the message, other words that must appear)
    ("space:\n  beta1: {low: 0.9, high: 1.0, scale: one_minus_log}\n", "space.beta1.high", ["must be < 1", "one_minus_log", "got 1"]),
    ("space:\n  beta1: {low: -0.1, high: 0.9, scale: one_minus_log}\n", "space.beta1.low", [">= 0", "got -0.1"]),
    ("space:\n  learning_rate: {low: 0, high: 1, scale: log}\n", "space.learning_rate.low", ["> 0 for scale log", "got 0"]),
    ("space:\n  hidden_units: {low: 0, high: 10, scale: log, integer: true}\n", "space.hidden_units.low", [">= 1"]),
    ("space:\n  learning_rate: {low: 0.1, high: 0.01}\n", "space.learning_rate.high", ["greater than low", "got 0.01"]),
    ("space:\n  learning_rate: {low: 0.1}\n", "space.learning_rate.high", ["is missing"]),
    ("space:\n  learning_rate: {low: 0.001, high: 0.1, scale: logarithmic}\n", "space.learning_rate.scale", ["uniform, log, one_minus_log", "'logarithmic'"]),
    ("space:\n  learning_rate: {low: 0.001, hgih: 0.1}\n", "space.learning_rate.hgih", ["unknown key", "Did you mean 'high'"]),
    ("space:\n  lerning_rate: {low: 0.001, high: 0.1}\n", "space.lerning_rate", ["unknown parameter", "Did you mean 'learning_rate'", "Valid names"]),
    ("space:\n  learning_rate: {low: on, high: 0.1}\n", "space.learning_rate.low", ["must be a number", "boolean true", "YAML reads bare on/off/yes/no"]),
    ("space:\n  learning_rate: {low: abc, high: 0.1}\n", "space.learning_rate.low", ["must be a number", "'abc'"]),
    ("space:\n  beta1: {low: 0.9, high: 0.99, scale: one_minus_log, integer: true}\n", "space.beta1.integer", ["cannot be integer"]),
    ("space:\n  hidden_units: {low: 10.5, high: 20, integer: true}\n", "space.hidden_units.low", ["whole number"]),
    ("space:\n  hidden_units: {low: 10, high: 20, integer: false}\n", "space.hidden_units.integer", ["whole numbers"]),
    ("space:\n  optimizer: [adam, adamw]\n", "space.optimizer[1]", ["one of sgd, momentum, rmsprop, adam", "'adamw'"]),
    ("space:\n  optimizer: {low: 1, high: 2}\n", "space.optimizer", ["cannot be a range", "use a list"]),
    ("space:\n  layers: []\n", "space.layers", ["empty list"]),
    ("space:\n  layers: [2, 2, 3]\n", "space.layers[1]", ["listed twice"]),
    ("space:\n  batch_size: 1\n", "space.batch_size", [">= 2", "got 1"]),
    ("space:\n  epochs: 2.5\n", "space.epochs", ["integer", "got 2.5"]),
    ("space:\n  batch_norm: maybe\n", "space.batch_norm", ["true or false"]),
    ("space:\n  activation: [relu, {x: 1}]\n", "space.activation[1]", ["single number, string or boolean"]),
    ("space: [1, 2]\n", "space", ["mapping"]),
    ("seed: 1\n", "space", ["is missing"]),
    ("spaec: {epochs: 1}\n", "spaec", ["unknown key", "Did you mean 'space'"]),
    ("search: {trials: 0}\nspace: {epochs: 1}\n", "search.trials", [">= 1", "got 0"]),
    ("search: {jobs: two}\nspace: {epochs: 1}\n", "search.jobs", ["must be a number"]),
    ("search: {backend: dask}\nspace: {epochs: 1}\n", "search.address", ["scheduler"]),
    ("search: {backend: ray}\nspace: {epochs: 1}\n", "search.backend", ["local, dask"]),
    ("data: {val_fraction: 1.5}\nspace: {epochs: 1}\n", "data.val_fraction", ["< 1", "got 1.5"]),
    ("data: {val_fraction: 0.5, test_fraction: 0.5}\nspace: {epochs: 1}\n", "data.test_fraction", ["< 1"]),
    ("data: {datset: digits}\nspace: {epochs: 1}\n", "data.datset", ["Did you mean 'dataset'"]),
    ("objective: {metric: val_acc}\nspace: {epochs: 1}\n", "objective.metric", ["val_accuracy, val_loss, train_loss", "Did you mean 'val_accuracy'"]),
    ("objective: {metric: test_accuracy}\nspace: {epochs: 1}\n", "objective.metric", ["never ranks"]),
    ("objective: {goal: max}\nspace: {epochs: 1}\n", "objective.goal", ["maximize, minimize"]),
    ("objective: {function: not-a-function}\nspace: {epochs: 1}\n", "objective.function", ["package.module:function"]),
    ("name: ../evil\nspace: {epochs: 1}\n", "name", ["names a folder"]),
    ("device: gpu\nspace: {epochs: 1}\n", "device", ["cpu, cuda or cuda:N"]),
    ("- just\n- a list\n", "", ["top level must be a mapping"]),
]


@pytest.mark.parametrize("text, key, words", BAD, ids=[b[1] or "top" for b in BAD])
def test_each_user_error_names_file_key_rule_and_value(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    m = re.match(r"exp\.yaml(?::(\d+))?: (.*)", message)
    assert m and m.group(2).startswith(key), message
    first = key.split(".")[0].split("[")[0]
    if first and f"{first}:" in text:  # a key that is in the file: the message names its line
        assert m.group(1) is not None, message
        line = text.splitlines()[int(m.group(1)) - 1]
        parts = [part.split("[")[0] for part in key.split(".")]
        assert any(part in line for part in parts), (line, message)  # the key, or its parent when it is missing
    for w in words:
        assert w in message, (w, message)
    assert "\n" not in message


def test_value_errors_name_the_line_of_the_key(tmp_path):
    path = write(tmp_path, """
        name: digits
        seed: 0
        data: {dataset: digits, val_fraction: 0.2}
        search: {trials: 25, jobs: 2}
        space:
          learning_rate: {low: 1.0e-4, high: 1.0, scale: log}
          beta1: {low: 0.9, high: 1.0, scale: one_minus_log}
          layers: [2, 3,
                   -1]
    """, "digits.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith("digits.yaml:8: space.beta1.high: must be < 1"), str(info.value)
    path.write_text(path.read_text().replace("high: 1.0, scale: one", "high: 0.999, scale: one"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith("digits.yaml:10: space.layers[2]: must be an integer >= 1"), str(info.value)


def test_malformed_yaml_reports_line_and_column(tmp_path):
    path = write(tmp_path, "space:\n  learning_rate: {low: 0.1, high: 0.2\n  epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "exp.yaml: line 3, column" in str(info.value) and "malformed YAML" in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="folder"):
        load_config(tmp_path)


def test_binary_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path)) or str(info.value).startswith("exp.yaml")


def test_overrides_are_validated_like_the_file():
    cfg = parse_config({"space": {"epochs": 1}}, source="x.yaml")
    assert with_overrides(cfg, trials=7, jobs=3, seed=5, rounds=2).search.trials == 7
    with pytest.raises(ConfigError, match="--trials"):
        with_overrides(cfg, trials=0)
    with pytest.raises(ConfigError, match="--address"):
        with_overrides(cfg, backend="dask")
    with pytest.raises(ConfigError, match="--objective"):
        with_overrides(cfg, function="nope")


def test_overrides_meet_the_checks_that_tie_search_to_the_space():
    """What the file would refuse (a grid over several rounds or more trials than combinations, halving
    rounds with too few trials reaching the budget, a null fixed value) is refused from the command line too."""
    grid = parse_config({"search": {"method": "grid", "trials": 4}, "space": {"layers": [2, 3], "batch_size": [32, 64]}},
                        source="g.yaml")
    with pytest.raises(ConfigError, match="search.rounds: a grid runs once"):
        with_overrides(grid, rounds=3)
    with pytest.raises(ConfigError, match="search.trials: the grid has 4 combinations"):
        with_overrides(grid, trials=50)
    halving = parse_config({"search": {"halving": {"factor": 4}, "trials": 12}, "space": {"epochs": 20}}, source="h.yaml")
    with pytest.raises(ConfigError, match="coarse to fine needs 3"):
        with_overrides(halving, rounds=2)
    assert with_overrides(halving, trials=48, rounds=2).search.rounds == 2
    with pytest.raises(ConfigError, match="space.learning_rate.value: must be a single number"):
        parse_config({"space": {"learning_rate": {"value": None}}}, source="n.yaml")
    assert parse_config({"objective": {"function": "m:f", "metric": "s"}, "space": {"x": {"value": None}}},
                        source="n.yaml").space["x"].value is None  # your own objective may fix any value


@pytest.mark.parametrize("space, fragment", [
    ({"weight_decay": {"low": 1e-6, "high": 1e-1}}, "consider `scale: log`"),
    ({"beta1": {"low": 0.9, "high": 0.999}}, "consider `scale: one_minus_log`"),
    ({"learning_rate": [1e-4, 1e-3, 1e-2, 1e-1]}, "decades"),
])
def test_lint_warns_about_likely_wrong_scales(space, fragment):
    cfg = parse_config({"space": space}, source="x.yaml")
    assert len(cfg.warnings) == 1 and fragment in cfg.warnings[0]
    assert cfg.warnings[0].startswith("x.yaml: space.")


def test_lint_is_quiet_on_good_spaces():
    cfg = parse_config({"space": {"learning_rate": {"low": 1e-4, "high": 1, "scale": "log"},
                                  "hidden_units": {"low": 50, "high": 100}, "batch_size": [32, 64, 128],
                                  "beta1": {"low": 0.9, "high": 0.999, "scale": "one_minus_log"}}})
    assert lint_space(cfg.space) == []


def test_snapshot_round_trips_with_relative_data_paths(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cfg = parse_config({"data": {"dataset": "data/x.csv", "target": "label"}, "space": {"epochs": 1}},
                       source="x.yaml", base_dir=tmp_path)
    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    snap = cfg.to_yaml(relative_to=run_dir)
    assert snap["data"]["dataset"] == "../../data/x.csv"
    again = parse_config(snap, source="config.yaml", base_dir=run_dir)
    assert (Path(again.base_dir) / again.data.dataset).resolve() == (data_dir / "x.csv").resolve()
    assert again.space == cfg.space


def _random_value(rng, depth=0):
    kinds = ["int", "float", "str", "bool", "none", "numstr"] + (["list", "dict"] if depth < 3 else [])
    kind = kinds[rng.integers(len(kinds))]
    keys = ["space", "data", "search", "objective", "low", "high", "scale", "integer", "learning_rate",
            "beta1", "layers", "trials", "jobs", "metric", "goal", "dataset", "val_fraction", "name", "seed", "x"]
    if kind == "int":
        return int(rng.integers(-5, 5))
    if kind == "float":
        return float(rng.choice([0.0, 1.0, -1.0, 0.5, 1e-4, 1e300, float("inf"), float("nan")]))
    if kind == "str":
        return str(rng.choice(["log", "uniform", "one_minus_log", "adam", "", "digits", "val_accuracy", "maximize"]))
    if kind == "numstr":
        return str(rng.choice(["1e-4", "0.9", "-3", "nan", "1e999"]))
    if kind == "bool":
        return bool(rng.integers(2))
    if kind == "none":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.integers(0, 4))]
    return {str(rng.choice(keys)): _random_value(rng, depth + 1) for _ in range(rng.integers(0, 5))}


def test_no_input_whatever_its_shape_escapes_as_anything_but_a_config_error():
    import numpy as np

    rng = np.random.default_rng(0)
    accepted = 0
    for _ in range(3000):
        raw = _random_value(rng)
        if isinstance(raw, dict) and rng.random() < 0.7:
            raw["space"] = _random_value(rng, 1)
        try:
            parse_config(raw, source="fuzz.yaml")
            accepted += 1
        except ConfigError as err:
            assert str(err).startswith("fuzz.yaml") and "\n" not in str(err)
    assert accepted < 3000


def test_several_rounds_need_enough_trials_to_zoom_on():
    with pytest.raises(ConfigError, match="search.rounds: 2 rounds need at least 3 trials"):
        parse_config({"search": {"trials": 2, "rounds": 2}, "space": {"epochs": 1}}, source="x.yaml")
    cfg = parse_config({"search": {"trials": 2}, "space": {"epochs": 1}}, source="x.yaml")
    with pytest.raises(ConfigError, match="--rounds"):
        with_overrides(cfg, rounds=3)


def test_the_data_seed_is_separate_from_the_search_seed():
    a = parse_config({"seed": 1, "space": {"epochs": 1}})
    b = parse_config({"seed": 2, "data": {"seed": 5}, "space": {"epochs": 1}})
    assert a.data_seed == 0 and b.data_seed == 5
    assert parse_config(b.to_yaml()).data_seed == 5
    with pytest.raises(ConfigError, match="data.seed"):
        parse_config({"data": {"seed": -1}, "space": {"epochs": 1}})


def test_a_key_given_twice_is_an_error_with_both_lines(tmp_path):
    with pytest.raises(ConfigError, match=r"exp.yaml: search: appears twice \(lines 1 and 2\)"):
        load_config(write(tmp_path, "search: {trials: 2}\nsearch: {trials: 3}\nspace: {epochs: 1}\n"))


@pytest.mark.parametrize("stem, name", [("my exp.v2", "my-exp.v2"), ("über", "ber"), ("__x", "x"), ("!!!", "run")])
def test_the_default_run_name_is_made_valid_from_the_file_stem(tmp_path, stem, name):
    assert load_config(write(tmp_path, "space: {epochs: 1}\n", f"{stem}.yaml")).name == name


def test_an_explicit_bad_name_explains_the_rule(tmp_path):
    with pytest.raises(ConfigError, match="must start with an ASCII letter or digit"):
        load_config(write(tmp_path, "name: .hidden\nspace: {epochs: 1}\n"))
