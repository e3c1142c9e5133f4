"""GDRegressor's parameters: their defaults and the values each may take, without scikit-learn.

One table, :data:`PARAMETERS`, read by three surfaces:

* the estimator: ``GDRegressor._parameter_constraints`` is this table in
  scikit-learn's vocabulary (:func:`gradfit.estimator.sklearn_constraints`), and
  ``GDRegressor.__init__``'s defaults are :data:`DEFAULTS` (a test compares them);
* the command line: its flags' defaults, built before (and, for ``--help``,
  ``inspect`` and ``predict``, without) importing scikit-learn;
* the model file: :func:`check` refuses a damaged setting when a model is loaded
  (:func:`gradfit.model.load`), with scikit-learn's words.

A constraint is an :class:`Interval`, an :class:`Options`, ``None`` (the value
``None``), a type (``list``, ``dict``, ``str``: any instance), or one of
scikit-learn's named sets ``"boolean"``, ``"random_state"``, ``"verbose"``;
a value is valid when it satisfies one constraint of its list, exactly as
:func:`sklearn.utils._param_validation.validate_parameter_constraints` decides.
Only NumPy and the standard library are imported here.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np

from . import registry
from .choices import HANDLE_UNKNOWN, MISSING  # noqa: F401 (also read from here)



class Interval(NamedTuple):
    """Numbers of ``kind`` (``Integral`` or ``Real``) between ``left`` and ``right`` (``None``: unbounded).

    ``closed`` is ``"left"``, ``"right"``, ``"both"`` or ``"neither"``, as in
    scikit-learn's ``Interval``; like it, ``Integral`` takes ``True``/``False``
    and ``Real`` takes ints, NaN lies in no interval, and an unbounded end is
    open: ``Interval(Real, 0, None, "left")`` refuses ``inf``.
    """

    kind: type
    left: float | None
    right: float | None
    closed: str

    def holds(self, value):
        if not isinstance(value, self.kind):
            return False
        # an open end at infinity refuses infinity itself; NaN fails every comparison
        left = -math.inf if self.left is None else self.left
        right = math.inf if self.right is None else self.right
        above = value >= left if self.closed in ("left", "both") else value > left
        below = value <= right if self.closed in ("right", "both") else value < right
        return bool(above and below)

    def __str__(self):
        integer = self.kind is Integral
        left = "-inf" if self.left is None else self.left if integer else float(self.left)
        right = "inf" if self.right is None else self.right if integer else float(self.right)
        return (f"{'an int' if integer else 'a float'} in the range {'[' if self.closed in ('left', 'both') else '('}"
                f"{left}, {right}{']' if self.closed in ('right', 'both') else ')'}")


class Options(NamedTuple):
    """One of the strings ``values``."""

    values: frozenset

    def holds(self, value):
        return isinstance(value, str) and value in self.values

    def __str__(self):
        return f"a str among {{{', '.join(repr(v) for v in sorted(self.values))}}}"


def _options(names):
    return Options(frozenset(names))


def _part(kind, default):
    """``(default, constraints)`` of the parameter that chooses a part of ``kind``: one of the table's
    names (:mod:`gradfit.registry`; its live keys: a part added later is valid at once)."""
    return default, [Options(registry.TABLE[kind].keys())] + ([None] if kind in registry.OPTIONAL else [])


def _owned(name):
    """``(default, constraints)`` of a parameter a part owns, as its entry in the table declares them."""
    param = registry.owned_params()[name]
    return param.default, [Interval(Integral if param.kind == "integer" else Real, param.low, param.high,
                                    param.closed)]


#: the named sets, as scikit-learn defines them: (test, words)
NAMED = {
    "boolean": (lambda v: isinstance(v, (bool, np.bool_)), "an instance of 'bool' or an instance of 'numpy.bool_'"),
    "random_state": (lambda v: v is None or isinstance(v, np.random.RandomState)
                     or Interval(Integral, 0, 2**32 - 1, "both").holds(v),
                     "an int in the range [0, 4294967295], an instance of 'numpy.random.mtrand.RandomState' or None"),
    "verbose": (lambda v: isinstance(v, (bool, np.bool_)) or Interval(Integral, 0, None, "left").holds(v),
                "an int in the range [0, inf), an instance of 'bool' or an instance of 'numpy.bool_'"),
}

#: name: (default, constraints): GDRegressor's parameters, in the order of its signature
PARAMETERS = {
    "learning_rate": ("auto", [Interval(Real, 0, None, "neither"), _options({"auto"})]),
    "epochs": (1000, [Interval(Integral, 1, None, "left")]),
    "tol": (1e-6, [Interval(Real, 0, None, "left"), None]),
    "n_iter_no_change": (5, [Interval(Integral, 1, None, "left")]),
    "fit_intercept": (True, ["boolean"]),
    "standardize": (True, ["boolean"]),
    # the parts and the parameters they own: from the table of parts (gradfit.registry)
    "optimizer": _part("optimizer", "auto"),
    "loss": _part("loss", "squared_error"),
    "epsilon": _owned("epsilon"),
    "quantile": _owned("quantile"),
    "penalty": _part("penalty", None),
    "alpha": _owned("alpha"),
    "l1_ratio": _owned("l1_ratio"),
    "batch_size": (None, [Interval(Integral, 1, None, "left"), None]),
    "schedule": _part("schedule", "auto"),
    "power_t": _owned("power_t"),
    "step_size": _owned("step_size"),
    "gamma": _owned("gamma"),
    "engine": _part("engine", "auto"),
    "random_state": (None, ["random_state"]),
    "warm_start": (False, ["boolean"]),
    "verbose": (0, ["verbose"]),
    "categorical": ("auto", [_options({"auto"}), list, dict, None]),
    "missing": ("error", [_options(MISSING)]),
    "handle_unknown": ("error", [_options(HANDLE_UNKNOWN)]),
    "formula": (None, [str, None]),
}

DEFAULTS = {name: default for name, (default, _) in PARAMETERS.items()}
CONSTRAINTS = {name: constraints for name, (_, constraints) in PARAMETERS.items()}


def _holds(constraint, value):
    if constraint is None:
        return value is None
    if isinstance(constraint, str):
        return NAMED[constraint][0](value)
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint.holds(value)


def _words(constraint):
    if constraint is None:
        return "None"
    if isinstance(constraint, str):
        return NAMED[constraint][1]
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__!r}"
    return str(constraint)


def check(settings, owner="GDRegressor"):
    """Raise ``ValueError`` for the first setting outside its constraints; unknown names are not checked.

    The message is scikit-learn's: ``The 'epochs' parameter of GDRegressor
    must be an int in the range [1, inf). Got -5 instead.``
    """
    for name, value in settings.items():
        constraints = CONSTRAINTS.get(name)
        if constraints is None or any(_holds(c, value) for c in constraints):
            continue
        words = [_words(c) for c in constraints]
        rule = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
        raise ValueError(f"The {name!r} parameter of {owner} must be {rule}. Got {value!r} instead.")
