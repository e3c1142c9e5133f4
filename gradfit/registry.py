"""One registry of names, shared by the estimator and the command-line tool.

Each table maps a name users type to the factory that builds the piece; the
estimator's parameter constraints and the CLI's ``choices`` both come from
these keys, so the two surfaces cannot drift apart.
"""

from __future__ import annotations

from . import optimizers, schedules
from .errors import OptionError
from .losses import AbsoluteError, Huber, SquaredError
from .penalties import ElasticNet

OPTIMIZERS = {
    "gd": optimizers.gd,
    "momentum": optimizers.momentum,
    "nesterov": optimizers.nesterov,
    "adam": optimizers.adam,
    "cg": optimizers.cg,
}

LOSSES = {
    "squared_error": lambda epsilon: SquaredError(),
    "huber": lambda epsilon: Huber(epsilon),
    "absolute_error": lambda epsilon: AbsoluteError(),
}

PENALTIES = {
    "l2": lambda alpha, l1_ratio: ElasticNet("l2", alpha, 0.0),
    "l1": lambda alpha, l1_ratio: ElasticNet("l1", alpha, 1.0),
    "elasticnet": lambda alpha, l1_ratio: ElasticNet("elasticnet", alpha, l1_ratio),
}

SCHEDULES = {
    "constant": lambda rate, power_t, step_size, gamma: schedules.constant(rate),
    "invscaling": lambda rate, power_t, step_size, gamma: schedules.inverse_scaling(rate, power_t),
    "step": lambda rate, power_t, step_size, gamma: schedules.step_decay(rate, step_size, gamma),
}

#: the step ``learning_rate="auto"`` takes, as a multiple of 1/L (or a constant for Adam,
#: whose per-coordinate normalization makes 1/L meaningless)
AUTO_RATE = {"gd": 1.0, "momentum": 1.0, "nesterov": 1.0, "adam": None, "cg": None}
ADAM_AUTO_RATE = 0.01


def lookup(table, kind, name):
    """``table[name]``, or an :class:`OptionError` listing the valid names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise OptionError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}") from None
