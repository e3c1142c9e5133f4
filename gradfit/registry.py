"""One registry of names, shared by the estimator and the command-line tool.

Each table maps a name users type to the factory that builds the piece; the
estimator's parameter constraints and the CLI's ``choices`` both come from
these keys, so the two surfaces cannot drift apart.
"""

from __future__ import annotations

from . import optimizers, schedules
from .errors import OptionError
from .losses import AbsoluteError, Huber, Quantile, SquaredError
from .penalties import ElasticNet

OPTIMIZERS = {
    "auto": None,  # resolved per problem by gradfit.autoselect.resolve_optimizer
    "gd": optimizers.gd,
    "momentum": lambda schedule, steps_per_epoch=1, restart=None: optimizers.momentum(
        schedule, steps_per_epoch, MOMENTUM_DECAY, restart),
    "nesterov": lambda schedule, steps_per_epoch=1, restart=None: optimizers.nesterov(
        schedule, steps_per_epoch, MOMENTUM_DECAY, restart),
    "adam": optimizers.adam,
    "cg": optimizers.cg,
    # Not an (init, update) pair: damped Newton steps for the robust losses, run
    # by gradfit.robust.fit (fitting.fit_source hands the fit over to it).
    "newton": None,
}

LOSSES = {
    "squared_error": lambda epsilon, quantile=0.5: SquaredError(),
    "huber": lambda epsilon, quantile=0.5: Huber(epsilon),
    "absolute_error": lambda epsilon, quantile=0.5: AbsoluteError(),
    "quantile": lambda epsilon, quantile=0.5: Quantile(quantile),
}

PENALTIES = {
    "l2": lambda alpha, l1_ratio: ElasticNet("l2", alpha, 0.0),
    "l1": lambda alpha, l1_ratio: ElasticNet("l1", alpha, 1.0),
    "elasticnet": lambda alpha, l1_ratio: ElasticNet("elasticnet", alpha, l1_ratio),
}

SCHEDULES = {
    "auto": None,  # resolved by schedules.auto from the loss and the batch size
    "constant": lambda rate, power_t, step_size, gamma: schedules.constant(rate),
    "invscaling": lambda rate, power_t, step_size, gamma: schedules.inverse_scaling(rate, power_t),
    "step": lambda rate, power_t, step_size, gamma: schedules.step_decay(rate, step_size, gamma),
}

#: the step ``learning_rate="auto"`` takes, as a multiple of 1/L (L the largest
#: eigenvalue of the Hessian of the smooth part of the cost, or of a minibatch's,
#: see :func:`gradfit.fitting.base_learning_rate`); ``None`` where 1/L is not the
#: unit: Adam (its per-coordinate normalization makes its step a distance in
#: the coefficients' units, ``ADAM_AUTO_RATE`` × the target's root mean square)
#: and cg (an exact line search sets every step), and newton (a backtracking line search)
AUTO_RATE = {"auto": None, "gd": 1.0, "momentum": 1.0, "nesterov": 1.0, "adam": None, "cg": None, "newton": None}
#: β of ``momentum`` and ``nesterov``; without restarts (minibatches, partial_fit)
#: their ``"auto"`` step is ``(1 − β)/L``, see :func:`gradfit.fitting.base_learning_rate`
MOMENTUM_DECAY = 0.9
ADAM_AUTO_RATE = 0.01
#: ``absolute_error``, ``quantile`` (the losses without a curvature bound): their subgradient
#: ``mean(sign(r) x)`` (shifted by ``1 − 2τ``) does not shrink with the residuals, so
#: the step must carry the target's units. ``"auto"`` takes
#: ``η = 2·rms(y)/L``, ``L`` the squared error's: that is ``1/L`` of the quadratic
#: ``r²/(2 rms(y))``, which has ``|r|``'s value and slope at residuals of the
#: size they start at (``r = −y`` from zero)
ABSOLUTE_ERROR_AUTO_FACTOR = 2.0


#: options that mean something only with another one: option → (its default,
#: the option that gives it meaning, whether it applies to these settings, the
#: values that make it apply, for the message, and whether the estimator
#: refuses it). A value other than the default where it does not apply is an
#: error (:func:`gradfit.fitting.check_meaningful`). ``alpha`` without a penalty
#: is only a warning in the estimator: scikit-learn's own checks, and its model
#: selection tools, set ``alpha`` on any linear regressor; the command line,
#: where a flag is typed on purpose, refuses it.
DEPENDENT_OPTIONS = {
    # alpha=0 without a penalty says the same as no penalty: nothing is ignored
    "alpha": (1e-4, "penalty", lambda s: s["penalty"] is not None or s["alpha"] == 0,
              "penalty='l2', 'l1' or 'elasticnet'", False),
    "l1_ratio": (0.15, "penalty", lambda s: s["penalty"] == "elasticnet", "penalty='elasticnet'", True),
    "epsilon": (1.35, "loss", lambda s: s["loss"] == "huber", "loss='huber'", True),
    "quantile": (0.5, "loss", lambda s: s["loss"] == "quantile", "loss='quantile'", True),
}


def lookup(table, kind, name):
    """``table[name]``, or an :class:`OptionError` listing the valid names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise OptionError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}") from None
