"""The table of parts: every loss, penalty, optimizer, schedule and engine, once.

Each entry owns the name users type, the estimator parameters it gives
meaning to (with their defaults and ranges), what it can do, and how it is
built from validated settings. The estimator's ``_parameter_constraints``
(through :mod:`gradfit.parameters`), the command line's ``choices`` and the
"X has no effect with Y" errors (:func:`dependent_options`) all come from
here; code elsewhere asks an entry what it can do and never compares its
name with a string. What an entry declares is in :mod:`gradfit.parts`.

Adding a loss is one file in ``gradfit/losses/`` and one line in
:data:`LOSSES` (see README, "How it is built"). This module imports only the
standard library and the parts' own modules (NumPy); the engines, which need
SciPy, are imported when one is built, so that ``gradfit --help`` stays light.
"""

from __future__ import annotations

from . import engines, optimizers, schedules
from .errors import OptionError
from .losses import AbsoluteError, Huber, Quantile, SquaredError
from .parts import LossPart, Names, OptimizerPart, Param, PenaltyPart, SchedulePart
from .penalties import ElasticNet


# -- constants the builders and the step size use --------------------------------------

#: β of ``momentum`` and ``nesterov``; without restarts (minibatches, partial_fit)
#: their ``"auto"`` step is ``(1 − β)/L``, see :func:`gradfit.fitting.base_learning_rate`
MOMENTUM_DECAY = 0.9
#: Adam's ``"auto"`` step, times the target's root mean square: its per-coordinate
#: normalization makes its step a distance in the coefficients' units
ADAM_AUTO_RATE = 0.01
#: a non-smooth loss (``absolute_error``): its subgradient ``mean(sign(r) x)`` does not
#: shrink with the residuals, so the step must carry the target's units. ``"auto"``
#: takes ``η = 2·rms(y)/L``, ``L`` the squared error's: that is ``1/L`` of the quadratic
#: ``r²/(2 rms(y))``, which has ``|r|``'s value and slope at residuals of the size they
#: start at (``r = −y`` from zero)
NON_SMOOTH_AUTO_FACTOR = 2.0


# -- the parameters parts own ----------------------------------------------------------

EPSILON = Param("epsilon", 1.35, "real", 0, None, "neither")
#: τ of the pinball loss; 0.5 is the absolute error's median
QUANTILE = Param("quantile", 0.5, "real", 0, 1, "neither")
#: ``alpha`` without a penalty is only a warning in the estimator: scikit-learn's own
#: checks, and its model selection tools, set ``alpha`` on any linear regressor; the
#: command line, where a flag is typed on purpose, refuses it. ``alpha=0`` without a
#: penalty says the same as no penalty: nothing is ignored.
ALPHA = Param("alpha", 1e-4, "real", 0, None, "left", refuse=False)
L1_RATIO = Param("l1_ratio", 0.15, "real", 0, 1, "both")
# The schedules' parameters are not checked against the schedule chosen: "auto"
# may pick "invscaling" with its own power_t, and refusing them elsewhere would
# change what fits are accepted (issue 12 item 6).
POWER_T = Param("power_t", 0.5, "real", 0, None, "left", refuse=None)
STEP_SIZE = Param("step_size", 100, "integer", 1, None, "left", refuse=None)
GAMMA = Param("gamma", 0.5, "real", 0, 1, "right", refuse=None)


# -- builders --------------------------------------------------------------------------


def _momentum(nesterov):
    build = optimizers.nesterov if nesterov else optimizers.momentum

    def momentum(schedule, steps_per_epoch=1, restart=None):
        return build(schedule, steps_per_epoch, MOMENTUM_DECAY, restart)

    return momentum


_CG_REASONS = {
    "quadratic": "its line search and conjugate directions assume a quadratic cost",
    "full_batch": "its line search is exact only on the whole cost",
    "prox": "it is not differentiable",
}
_ADAM_REASONS = {"prox": "its steps differ per coordinate, so no proximal step matches them"}


def loss(loss_class, *params):
    """The entry of ``loss_class`` (a :class:`gradfit.losses.base.Loss`): its name, and built from
    its parameters ``params`` (:class:`Param`, in the order its ``__init__`` takes them)."""
    names = tuple(p.name for p in params)
    if names != tuple(loss_class.parameters):
        raise RuntimeError(f"{loss_class.__name__} takes {loss_class.parameters}, its entry lists {names}")
    return LossPart(name=loss_class.name, loss_class=loss_class, params=params,
                    build=lambda settings: loss_class(*(settings[name] for name in names)))


# -- the table -------------------------------------------------------------------------

# a new loss: one file in gradfit/losses/, and one line here (README, "How it is built")
LOSSES = {part.name: part for part in [
    loss(SquaredError),
    loss(Huber, EPSILON),
    loss(AbsoluteError),
    loss(Quantile, QUANTILE),
]}

PENALTIES = {part.name: part for part in [
    PenaltyPart(name="l2", params=(ALPHA,), build=lambda s: ElasticNet("l2", s["alpha"], 0.0)),
    PenaltyPart(name="l1", params=(ALPHA,), build=lambda s: ElasticNet("l1", s["alpha"], 1.0)),
    PenaltyPart(name="elasticnet", params=(ALPHA, L1_RATIO),
                build=lambda s: ElasticNet("elasticnet", s["alpha"], s["l1_ratio"])),
]}

OPTIMIZERS = {part.name: part for part in [
    # resolved per problem by gradfit.autoselect.resolve_optimizer
    OptimizerPart(name="auto"),
    OptimizerPart(name="gd", build=optimizers.gd),
    OptimizerPart(name="momentum", build=_momentum(False), restarts=True, accelerated=True),
    OptimizerPart(name="nesterov", build=_momentum(True), restarts=True, accelerated=True),
    OptimizerPart(name="adam", build=optimizers.adam, serves_prox=False, auto_rate=None, accelerated=True,
                  reasons=_ADAM_REASONS),
    OptimizerPart(name="cg", build=optimizers.cg, takes_learning_rate=False, serves_prox=False,
                  needs_full_batch=True, needs_quadratic=True, auto_rate=None, refined=True,
                  step_source="an exact line search", reasons=_CG_REASONS),
    # Not an (init, update) pair: damped Newton steps for the robust losses, run by
    # gradfit.robust.fit (fitting.fit_source hands the fit over to it), which checks
    # its own combinations (gradfit.robust.check_combination)
    OptimizerPart(name="newton", takes_learning_rate=False, serves_prox=False, needs_full_batch=True,
                  auto_rate=None, step_source="a line search"),
]}

SCHEDULES = {part.name: part for part in [
    SchedulePart(name="auto"),  # resolved by schedules.auto from the loss and the batch size
    SchedulePart(name="constant", build=lambda rate, s: schedules.constant(rate)),
    SchedulePart(name="invscaling", params=(POWER_T,), decays=True,
                 build=lambda rate, s: schedules.inverse_scaling(rate, s["power_t"])),
    SchedulePart(name="step", params=(STEP_SIZE, GAMMA), decays=True,
                 build=lambda rate, s: schedules.step_decay(rate, s["step_size"], s["gamma"])),
]}

# "auto" first, then in the order "auto" prefers them when they cost the same: the engines'
# own entries (gradfit.engines.PARTS), beside the cost model they are chosen by
ENGINES = {part.name: part for part in engines.PARTS}

#: the whole table, by kind (the estimator parameter each kind is chosen by)
TABLE = {"penalty": PENALTIES, "loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "engine": ENGINES}
#: kinds whose parameter may be ``None`` (no part of that kind)
OPTIONAL = ("penalty",)


def names(kind, sort=True):
    """The names users can type for ``kind`` (``"loss"``, ``"engine"`` …), as a live :class:`Names`."""
    return Names(TABLE[kind], sort)


def lookup(table, kind, name):
    """``table[name]``, or an :class:`OptionError` listing the valid names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise OptionError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}") from None


def part(kind, name):
    """The entry ``name`` of ``kind`` (``"loss"``, ``"optimizer"`` …), or an :class:`OptionError`."""
    return lookup(TABLE[kind], kind, name)


def owned_params():
    """``{parameter name: Param}`` of every parameter a part owns (each declared once)."""
    found = {}
    for parts in TABLE.values():
        for entry in parts.values():
            for param in entry.params:
                if found.setdefault(param.name, param) is not param:
                    raise RuntimeError(f"parameter {param.name!r} is declared twice in the table")
    return found


def dependent_options():
    """``{option: (default, owner kind, applies(settings), values text, refuse)}`` from the table.

    An option owned by some parts of a kind applies where the part chosen
    for that kind owns it; ``values`` names those parts, for the message of
    :func:`gradfit.fitting.check_meaningful`.
    """
    options = {}
    for kind, parts in TABLE.items():
        for name, param in owned_params().items():
            owners = [entry.name for entry in parts.values() if param in entry.params]
            if not owners or param.refuse is None:
                continue
            values = ", ".join(repr(owner) for owner in owners[:-1])
            values = f"{kind}={values + ' or ' if values else ''}{owners[-1]!r}"

            def applies(settings, kind=kind, owners=tuple(owners), param=param):
                # a zero where zero means "none" (alpha=0 without a penalty) ignores nothing
                return settings.get(kind) in owners or (param.refuse is False and settings.get(param.name) == 0)

            options[name] = (param.default, kind, applies, values, bool(param.refuse))
    return options
