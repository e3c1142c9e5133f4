"""Assemble one fit: source → statistics → engine → objective → optimizer → loop.

Both surfaces (the estimator and the CLI) call :func:`fit_source`; it holds
no math of its own beyond choosing the pieces and the step size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import registry
from .engines import PassEngine, StatisticsEngine, accumulate, choose_engine
from .errors import DataError, OptionError
from .objective import Objective
from .scaling import Scaling
from .train import train


@dataclass
class FitResult:
    """A finished fit, in the data's own units, with what produced it.

    ``coef`` (k, d), ``intercept`` (k,); ``params`` and ``opt_state`` in working
    units for continuing; ``engine`` the engine that ran; ``learning_rate`` the
    base step used (``None`` for ``cg``, whose steps come from its line search);
    ``statistics`` the moments of the data (the full scatter for the statistics
    engine).
    """

    coef: np.ndarray
    intercept: np.ndarray
    loss_curve: list
    stop_reason: str
    final_cost: float
    engine: str
    learning_rate: float | None
    scaling: Scaling
    statistics: Any
    params: np.ndarray
    opt_state: Any
    problem: Any
    rng: Any

    @property
    def n_iter(self):
        return len(self.loss_curve)

    @property
    def converged(self):
        return self.stop_reason == "converged"


@dataclass
class Problem:
    """The prepared pieces of a fit, reusable across calls (``partial_fit``)."""

    objective: Objective
    scaling: Scaling
    statistics: Any
    engine: str
    loss: Any
    n_samples: int


def prepare(source, settings, scaling=None):
    """Read the statistics, choose the engine and build the objective.

    ``settings`` is the estimator's ``get_params()``; ``scaling`` fixes the
    working units (``partial_fit`` keeps its first batch's).
    """
    loss = registry.lookup(registry.LOSSES, "loss", settings["loss"])(settings["epsilon"])
    penalty = None
    if settings["penalty"] is not None:
        penalty = registry.lookup(registry.PENALTIES, "penalty", settings["penalty"])(
            settings["alpha"], settings["l1_ratio"]
        )
    optimizer = settings["optimizer"]
    registry.lookup(registry.OPTIMIZERS, "optimizer", optimizer)
    if optimizer == "cg":
        if not loss.quadratic:
            raise OptionError(f'optimizer="cg" needs loss="squared_error", not {loss.name!r}')
        if penalty is not None and penalty.has_prox:
            raise OptionError(f'optimizer="cg" cannot serve the L1 part of penalty={penalty.name!r}; use "l2"')
        if settings["batch_size"] is not None:
            raise OptionError('optimizer="cg" needs full batches (batch_size=None)')
    engine_name = choose_engine(
        settings["engine"], loss, settings["batch_size"], source.n_features, settings["epochs"]
    )
    statistics = accumulate(source, full=engine_name == "statistics")
    if statistics.n_samples < 2:
        raise DataError(
            f"{source.describe()} has {statistics.n_samples} sample; at least 2 samples are required"
        )
    if scaling is None:
        scaling = Scaling.from_statistics(statistics, settings["fit_intercept"], settings["standardize"])
    if engine_name == "statistics":
        engine = StatisticsEngine(statistics, scaling, settings["fit_intercept"])
    else:
        engine = PassEngine(source, scaling, loss, settings["fit_intercept"], statistics.sum_weights)
    return Problem(Objective(engine, penalty, scaling), scaling, statistics, engine_name, loss, statistics.n_samples)


def base_learning_rate(problem, settings):
    """The step: a float as given, or ``"auto"``: ``1/L`` (a constant for Adam)."""
    rate = settings["learning_rate"]
    if rate != "auto":
        return float(rate)
    optimizer = settings["optimizer"]
    if optimizer == "adam":
        return registry.ADAM_AUTO_RATE
    # For |r| (no curvature) the objective's L is the squared error's: a step of the same scale.
    return registry.AUTO_RATE[optimizer] / problem.objective.curvature()


def fit_source(source, settings, *, params=None, opt_state=None, loss_curve=None, problem=None,
               epochs=None, learning_rate=None, rng=None, callbacks=()):
    """Fit the linear model to ``source`` with the estimator's ``settings``.

    ``params``/``opt_state``/``loss_curve`` continue earlier training;
    ``problem`` reuses prepared pieces; ``epochs`` overrides ``settings["epochs"]``;
    ``learning_rate`` and ``rng`` fix the step and the shuffling stream.
    """
    problem = problem or prepare(source, settings)
    objective = problem.objective
    fit_intercept = settings["fit_intercept"]
    n_params = source.n_features + fit_intercept
    if params is None:
        params = np.zeros((n_params, source.n_outputs))
    optimizer_name = settings["optimizer"]
    batch_size = settings["batch_size"]
    if optimizer_name == "cg":
        rate = None
        schedule = lambda epoch: 0.0  # noqa: E731 - cg's steps come from its line search
    else:
        rate = base_learning_rate(problem, settings) if learning_rate is None else learning_rate
        schedule = registry.lookup(registry.SCHEDULES, "schedule", settings["schedule"])(
            rate, settings["power_t"], settings["step_size"], settings["gamma"]
        )
    steps = 1 if batch_size is None else -(-problem.n_samples // batch_size)
    optimizer = registry.OPTIMIZERS[optimizer_name](schedule, steps)
    if rng is None and batch_size is not None:
        rng = np.random.default_rng(settings["random_state"])

    def max_stable():
        try:
            return 2.0 / objective.curvature()
        except Exception:  # the message is a courtesy; never mask the divergence itself
            return None

    result = train(
        objective,
        optimizer,
        params,
        epochs=settings["epochs"] if epochs is None else epochs,
        tol=settings["tol"],
        n_iter_no_change=settings["n_iter_no_change"],
        schedule=schedule,
        batch_size=batch_size,
        n_samples=problem.n_samples,
        rng=rng,
        opt_state=opt_state,
        loss_curve=loss_curve,
        max_stable_learning_rate=max_stable if problem.loss.curvature else None,
        standardized=settings["standardize"],
        callbacks=callbacks,
    )
    final_cost = objective.value(result.params)
    coef, intercept = problem.scaling.to_raw(result.params, fit_intercept)
    return FitResult(
        coef=coef,
        intercept=intercept,
        loss_curve=result.loss_curve,
        stop_reason=result.stop_reason,
        final_cost=float(final_cost),
        engine=problem.engine,
        learning_rate=rate,
        scaling=problem.scaling,
        statistics=problem.statistics,
        params=result.params,
        opt_state=result.opt_state,
        problem=problem,
        rng=rng,
    )
