"""The built-in trainer's hyperparameters, per model family: names, domains and defaults.

Pure data (no torch import) so that config validation and `--help` stay fast.
Every family shares the optimizer, schedule and batch-norm parameters; each adds
its own shape parameters. A second family is a new table here, not a branch in
the config reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParamDomain:
    """What values a built-in parameter accepts.

    kind: "float", "int", "bool" or "choice".
    low/high: inclusive bounds for numbers (None = unbounded);
    high_open: True when `high` itself is not allowed (β < 1).
    choices: the allowed values for kind "choice".
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        """The rule in words, for error messages."""
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        noun = "an integer" if self.kind == "int" else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return noun + (" " + " and ".join(parts) if parts else "")

    def accepts(self, value: Any) -> bool:
        """Whether one concrete value lies in the domain."""
        if self.kind == "choice":
            # True == 1 in Python: a boolean is not a number here
            return any(value == c and type(value) is type(c) or (isinstance(c, int) and not isinstance(c, bool)
                                                                   and isinstance(value, float) and value == c)
                       for c in self.choices)
        if self.kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and float(value) != int(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True


# What the built-in trainer reports for every trial (and may rank by).
BUILTIN_METRICS = ("val_accuracy", "val_loss", "train_loss")

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
ACTIVATIONS = ("relu", "tanh", "sigmoid")

def _table(params: list[ParamDomain]) -> dict[str, ParamDomain]:
    return {p.name: p for p in params}


_OPTIMIZATION = [
    ParamDomain("learning_rate", "float", 1e-3, "initial learning rate α", low=0, low_open=True),
    ParamDomain("optimizer", "choice", "adam", "update rule", choices=OPTIMIZERS),
    ParamDomain("beta1", "float", 0.9, "momentum's β, Adam's β1", low=0, high=1, high_open=True),
    ParamDomain("beta2", "float", 0.999, "RMSprop's β, Adam's β2", low=0, high=1, high_open=True),
    ParamDomain("epsilon", "float", 1e-8, "RMSprop/Adam ε", low=0, low_open=True),
    ParamDomain("lr_decay", "float", 0.0, "α = α0 / (1 + lr_decay · epoch)", low=0),
    ParamDomain("batch_size", "int", 64, "mini-batch size", low=2),
    ParamDomain("epochs", "int", 10, "passes over the training set", low=1),
]
_NORMALIZATION = [
    ParamDomain("activation", "choice", "relu", "hidden activation", choices=ACTIVATIONS),
    ParamDomain("batch_norm", "bool", True, "batch-normalize hidden layers"),
    ParamDomain("bn_position", "choice", "before", "normalize z (before) or a (after the activation)",
                choices=("before", "after")),
    ParamDomain("bn_momentum", "float", 0.9,
                "β of the running mean/variance averages (PyTorch's momentum is 1 − β)",
                low=0, high=1, high_open=True),
    ParamDomain("bn_stats", "choice", "running",
                "evaluation statistics: running averages or an exact pass over the training set",
                choices=("running", "population")),
    ParamDomain("weight_decay", "float", 0.0, "L2 penalty", low=0),
]

FAMILIES: dict[str, dict[str, ParamDomain]] = {
    "mlp": _table([
        *_OPTIMIZATION,
        ParamDomain("layers", "int", 2, "number of hidden layers", low=1),
        ParamDomain("hidden_units", "int", 100, "units per hidden layer", low=1),
        *_NORMALIZATION,
    ]),
    "cnn": _table([
        *_OPTIMIZATION,
        ParamDomain("conv_layers", "int", 2, "conv blocks (convolution, batch norm, activation, 2x2 max pool)", low=1),
        ParamDomain("channels", "int", 8, "channels of the first block; each next block doubles them, up to 4x", low=1),
        ParamDomain("kernel_size", "choice", 3, "side of the convolution kernels ('same' padding)", choices=(1, 3, 5, 7)),
        ParamDomain("hidden_units", "int", 64, "units of the dense hidden layer before the output", low=1),
        *_NORMALIZATION,
    ]),
}
DEFAULT_FAMILY = "mlp"


def defaults(family: str) -> dict[str, Any]:
    """Every parameter of a family at its default value."""
    return {name: p.default for name, p in FAMILIES[family].items()}


def resolve_params(params: dict[str, Any], family: str = DEFAULT_FAMILY) -> dict[str, Any]:
    """The full parameter set: `params` over the family's defaults.

    Raises ValueError for an unknown name or a value outside its domain (the
    config layer has already given the user a proper message; this guards the
    API). numpy scalars are turned into Python numbers; int parameters into int.
    """
    table = FAMILIES[family]
    unknown = sorted(set(params) - set(table))
    if unknown:
        raise ValueError(f"unknown training parameter(s) {unknown} for the {family} model; known: {sorted(table)}")
    resolved = defaults(family)
    for name, value in params.items():
        if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy scalar
            value = value.item()
        domain = table[name]
        if domain.kind == "choice" and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON may turn 3 into 3.0
        if not domain.accepts(value):
            raise ValueError(f"parameter {name}={value!r} is not {domain.describe()}")
        resolved[name] = int(value) if domain.kind == "int" else value
    return resolved


# What trials must share to train as one stacked model (after defaults are filled in).
# MLP: the layer structure and the batch schedule; hidden_units may differ (padded and masked),
# and so may epochs (a member that is done leaves the group). Conv nets: the whole shape.
STACK_KEYS = {
    "mlp": ("layers", "activation", "batch_norm", "bn_position", "optimizer", "batch_size", "bn_stats"),
    "cnn": ("conv_layers", "channels", "kernel_size", "hidden_units", "activation", "batch_norm", "bn_position",
            "batch_size", "epochs"),
}


# What a fork may change (continuing from a checkpoint): everything that is not a shape.
CHANGEABLE = ("learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "lr_decay", "bn_momentum", "epochs",
              "batch_size", "bn_stats")
