"""Robust losses (Huber, absolute error, quantile) at second-order speed, with certificates.

``optimizer="newton"`` (:func:`fit`) solves Huber's loss by damped Newton
steps whose Hessian is the statistics of the inlier rows
(:mod:`gradfit.robust.huber`) and the absolute error and the pinball loss
(the piecewise-linear losses: ``curvature is None``, :func:`piecewise_linear`)
by Huber continuation finished by an exact linear-programming step
(:mod:`gradfit.robust.absolute`);
both read the data only through :meth:`~gradfit.sources.Source.reduce`, so
arrays, files and Dask sources all serve. :func:`robust_certificate` bounds
the distance to the optimum of any parameters of these losses (kinds
``"gradient_bound"`` and ``"lp_duality_gap"``, :mod:`gradfit.certificate`),
whichever optimizer produced them; :class:`BestIterate` makes the
first-order optimizers return their best iterate on the piecewise-linear losses.
"""

from __future__ import annotations

import numpy as np

from ..certificate import Certificate
from ..engines import accumulate
from ..errors import DataError, OptionError
from ..result import FitResult
from . import absolute, huber
from .linalg import BlockGram, Gram

#: the optimizer name of this module's solvers, in :data:`gradfit.registry.OPTIMIZERS`
NAME = "newton"


def serves(loss):
    """Whether this module's Newton method serves ``loss``: by what the loss declares
    (:mod:`gradfit.losses.base`), Huber-like or piecewise linear."""
    return loss.huberized or loss.piecewise_linear


def piecewise_linear(loss):
    """Whether ``loss`` is the absolute error or a pinball loss: a linear program (no curvature bound).

    Such a loss has a ``quantile`` (:class:`gradfit.losses.AbsoluteError`'s is 0.5).
    """
    return loss.piecewise_linear


def _served_names():
    from .. import registry

    return ", ".join(repr(name) for name, part in registry.LOSSES.items() if serves(part.loss_class))


def default_optimizer(loss, penalty, batch_size):
    """``"newton"`` where it serves, else ``None``.

    It serves Huber without an L1 part and the unpenalized absolute error and
    pinball loss, on full batches.

    For the default-selection of the estimator: what ``optimizer="auto"``
    should resolve to for these losses.
    """
    if not serves(loss) or batch_size is not None:
        return None
    if piecewise_linear(loss) and penalty is not None:
        return None
    if penalty is not None and penalty.has_prox:
        return None
    return NAME


def check_combination(settings, loss, penalty):
    """Refuse, with the reason and an alternative, what ``optimizer="newton"`` cannot serve."""
    if not serves(loss):
        raise OptionError(f'optimizer="newton" serves loss={_served_names()}, not '
                          f'{loss.name!r}; for the squared error use optimizer="cg"')
    if piecewise_linear(loss) and penalty is not None:
        raise OptionError(f'optimizer="newton" solves the unpenalized loss={loss.name!r} (a linear program), not '
                          f'penalty={penalty.name!r}; use optimizer="gd" or "nesterov"')
    if penalty is not None and penalty.has_prox:
        raise OptionError(f'optimizer="newton" cannot serve the L1 part of penalty={penalty.name!r}; use '
                          'penalty="l2", or optimizer="gd"/"momentum"/"nesterov"')
    if settings["batch_size"] is not None:
        raise OptionError('optimizer="newton" needs full batches (batch_size=None): each step solves with '
                          "the whole data's inlier statistics")
    if settings["learning_rate"] != "auto":
        raise OptionError('optimizer="newton" takes its steps from a line search; leave learning_rate="auto"')
    from .. import registry

    if registry.part("schedule", settings["schedule"]).decays:
        raise OptionError(f'optimizer="newton" has no learning rate to schedule; leave schedule="auto", '
                          f'not {settings["schedule"]!r}')


def _source(problem):
    return problem.objective.engine.source


def _gram(problem, source):
    statistics = problem.statistics
    if getattr(statistics, "blocks", None) is not None:  # a categorical column kept as level codes
        return BlockGram(statistics, problem.scaling, problem.objective.engine.fit_intercept), statistics
    if statistics.scatter is None:
        statistics = accumulate(source, full=True)  # one pass: the Gram the projections solve with
    return Gram(statistics, problem.scaling, problem.objective.engine.fit_intercept), statistics


def _relative(bounds):
    """Mean over outputs of ``(gap, F)`` pairs → the relative bound, or ``None``."""
    if any(gap is None for gap, _ in bounds):
        return None
    gap = max(float(np.mean([g for g, _ in bounds])), 0.0)
    value = float(np.mean([F for _, F in bounds]))
    if value <= 0.0:
        return 0.0 if gap <= 0.0 else None
    return gap / value


HUBER_DETAIL = ("relative objective gap bounded by a dual-feasible point built from the gradient "
                "(Fenchel dual of Huber's loss)")
ABSOLUTE_DETAIL = ("relative objective gap bounded by a dual-feasible point of the linear program "
                   "built from the residual signs")


def _lp_problem(loss, source, column, problem, fit_intercept, statistics):
    """The :class:`~gradfit.robust.absolute.AbsoluteProblem` of one output of a piecewise-linear loss."""
    return absolute.AbsoluteProblem(source, column, problem.scaling, fit_intercept, statistics, loss.quantile)


def robust_certificate(problem, params, tol):
    """The :class:`~gradfit.certificate.Certificate` of ``params`` (working units, (p, k)) for a robust loss.

    Huber (any penalty): kind ``"gradient_bound"``, :func:`gradfit.robust.huber.certificate`;
    absolute error and pinball loss without a penalty: ``"lp_duality_gap"``,
    :func:`gradfit.robust.absolute.certificate`; with a penalty, kind
    ``"none"`` (no claim). Costs two or three passes (one more to read the
    full scatter when the fit did not keep it). On a categorical column kept
    as level codes, the projections solve by the level blocks
    (:class:`~gradfit.robust.linalg.BlockGram`), the sums read the codes and
    the linear program's rows are sparse (:func:`gradfit.robust.absolute.restricted`).
    """
    loss, penalty = problem.loss, problem.objective.penalty
    source = _source(problem)
    fit_intercept = problem.objective.engine.fit_intercept
    if penalty is not None and penalty.l1 == 0 and penalty.l2 == 0:
        penalty = None  # alpha=0: no penalty at all, whatever its name
    if piecewise_linear(loss) and penalty is not None:
        return Certificate("none", None, tol, f"loss={loss.name!r} with penalty={penalty.name!r}: no bound is computed")
    if not serves(loss):
        raise ValueError(f"robust_certificate serves loss={_served_names()}, not {loss.name!r}")
    if getattr(problem.statistics, "blocks", None) is not None:  # a categorical column kept as level codes
        statistics, gram = problem.statistics, None  # a penalty's dual point needs no projection
        if penalty is None:
            try:
                gram = BlockGram(statistics, problem.scaling, fit_intercept)
            except DataError as exc:  # the projection's least-squares problem is singular
                kind = "Huber's dual point" if loss.huberized else "the linear program's dual point"
                return Certificate("none", None, tol, f"no projection for {kind}: {exc}")
    else:
        gram, statistics = _gram(problem, source)
    bounds = []
    for column in range(params.shape[1]):
        if loss.huberized:
            one = huber.HuberProblem(source, column, loss.epsilon, problem.scaling, fit_intercept, penalty, statistics)
            bounds.append(huber.certificate(one, one.evaluate(params[:, column], hessian=False), gram))
        else:
            one = _lp_problem(loss, source, column, problem, fit_intercept, statistics)
            bounds.append(absolute.certificate(one, gram, one.collect(params[:, column]))[:2])
    if loss.huberized:
        return Certificate("gradient_bound", _relative(bounds), tol, HUBER_DETAIL)
    return Certificate("lp_duality_gap", _relative(bounds), tol, ABSOLUTE_DETAIL)


class _Progress:
    """Hands every iteration to the fit's callbacks as an epoch: ``(epoch, cost, params)``."""

    def __init__(self, callbacks, params, costs):
        self.callbacks, self.params, self.costs = callbacks, params, costs
        self.curve = []
        self.column = 0
        self.stopped = False

    def __call__(self, column, cost, theta=None):
        self.costs[column] = cost
        if theta is not None:
            self.params[:, column] = theta
        value = float(np.mean(self.costs))
        epoch = len(self.curve)
        self.curve.append(value)
        for callback in self.callbacks:
            self.stopped = bool(callback.on_epoch_end(epoch, value, self.params.copy())) or self.stopped
        if self.stopped:
            raise _Stop


class _Stop(Exception):
    pass


def fit(source, problem, settings, *, params=None, callbacks=()):
    """``optimizer="newton"`` on a robust loss: the fit's record, a :class:`gradfit.result.FitResult`.

    Starts from ``params`` (working units) or least squares; each output is
    solved in turn. ``loss_curve`` holds the objective (the mean over outputs,
    the others at their current parameters) after every accepted iteration;
    ``stop_reason`` is ``"converged"`` only when the certificate is within
    ``tol``; callbacks see every iteration as an epoch, and a true return
    (Ctrl-C) stops with the best parameters so far.
    """
    loss, penalty = problem.loss, problem.objective.penalty
    check_combination(settings, loss, penalty)
    fit_intercept = settings["fit_intercept"]
    tol = settings["tol"] if settings["tol"] is not None else 0.0
    gram, statistics = _gram(problem, source)
    params = gram.least_squares.copy() if params is None else np.array(params, dtype=float)
    k = params.shape[1]
    costs = np.full(k, np.nan)
    progress = _Progress(tuple(callbacks), params, costs)
    bounds = [None] * k
    stop_reason = "max_epochs"
    try:
        for column in range(k):
            if loss.huberized:
                one = huber.HuberProblem(source, column, loss.epsilon, problem.scaling, fit_intercept, penalty,
                                         statistics)
                point, bound, _ = huber.solve(
                    one, params[:, column], max_iter=settings["epochs"], tol=tol, gram=gram,
                    residual_rms=float(np.sqrt(gram.least_squares_error[column])),
                    callback=lambda F, theta, column=column: progress(column, F, theta),
                )
                params[:, column] = point["theta"]
                costs[column] = point["F"]
                bounds[column] = bound if bound is not None else huber.certificate(one, point, gram)
            else:
                one = _lp_problem(loss, source, column, problem, fit_intercept, statistics)
                theta, bound, _ = absolute.solve(one, gram, params[:, column], max_iter=settings["epochs"], tol=tol,
                                                 callback=lambda P, theta, column=column: progress(column, P, theta))
                params[:, column] = theta
                costs[column] = bound[1]
                bounds[column] = bound
    except _Stop:
        stop_reason = "interrupted"
    if stop_reason == "interrupted":
        certificate = robust_certificate(problem, params, settings["tol"])
    else:
        kind, detail = ("gradient_bound", HUBER_DETAIL) if loss.huberized else ("lp_duality_gap", ABSOLUTE_DETAIL)
        certificate = Certificate(kind, _relative(bounds), settings["tol"], detail)
        stop_reason = "converged" if certificate.converged else "max_epochs"
    coef, intercept = problem.scaling.to_raw(params, fit_intercept)
    return FitResult(
        coef=coef, intercept=intercept, loss_curve=progress.curve, stop_reason=stop_reason, tol=settings["tol"],
        final_cost=float(problem.objective.value(params)) if stop_reason == "interrupted" else float(np.mean(costs)),
        engine=problem.engine, learning_rate=None, scaling=problem.scaling, statistics=problem.statistics,
        params=params, opt_state=None, problem=problem, rng=None, schedule=None, refinement=None,
        certificate=certificate, optimizer=NAME,
    )


class BestIterate:
    """A training callback that keeps the parameters of the lowest cost seen (full batches).

    ``loss_curve[i]`` is the cost at the parameters *before* epoch ``i``'s
    update, so the cost handed over at the end of epoch ``i`` belongs to the
    parameters the previous call saw (the start for epoch 0). For the
    absolute error and the pinball loss, whose subgradient steps do not decrease the cost
    monotonically, the fit then returns :attr:`params` when its cost is lower
    than the last iterate's.
    """

    def __init__(self, params):
        self.previous = params
        self.params = params
        self.cost = np.inf

    def on_epoch_end(self, epoch, cost, params):
        if cost < self.cost:
            self.cost, self.params = cost, self.previous
        self.previous = params  # training makes new arrays each update: no copy needed
        return None
