"""Iterative refinement: the digits the Gram matrix loses, restored by data passes.

The statistics engine solves the squared error through ``XᵀX``, which squares
the condition number of ``X``: on NIST's Wampler data (``cond ≈ 2·10⁶`` after
standardizing, ``4·10¹²`` for the Gram) conjugate gradient on the statistics
stops at about 6.6 correct digits. Iterative refinement (Wilkinson; Björck for
least squares) gets them back without forming anything new:

    θ ← θ − H⁻¹ ∇F(θ),        ∇F from a pass over the data,  H from the statistics.

The step is a Newton step on the quadratic; with ``H`` known to ``ε·cond(H)``
relative accuracy each one divides the error by about ``1/(ε·cond(H))``
(``10¹⁰`` on Wampler), until the error is that of the gradient itself, which a
data pass computes without squaring anything. The pass centres every block on
the feature means before both products (``PassEngine(centre_blocks=True)``),
which keeps the digits ``X_bᵀr − center·Σr`` would cancel.

It is not a second training loop: the refinement epochs run through
:func:`gradfit.train.train` like every other epoch, with an :class:`Objective`
whose gradient comes from a :class:`PassEngine` and the optimizer
:func:`gradfit.optimizers.scale_by_inverse_hessian`; they continue the loss
curve. :func:`gradfit.fitting.fit_source` runs them after ``optimizer="cg"``,
the exact solver (on either engine; the pass engine first reads the full
scatter), and records what they did in :class:`gradfit.result.Refinement`. Refinement works
in standardized, centred units whatever units training used, so it also
repairs ``standardize=False``.

Where ``ε·cond(H)`` is too large to solve with ``H`` (NIST's Filip data, whose
Gram has condition number ~10¹⁹), the solve uses the triangular factor ``R``
of the centred, standardized data instead (:func:`qr_factor`, one more pass),
whose condition number is the data's, not its square. Where even that is
rounding noise (collinear features), :class:`~gradfit.errors.IllConditionedError`
is raised, never coefficients with digits rounding chose; likewise when the
corrections do not shrink.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .engines import PassEngine, StatisticsEngine
from .engines.moments import pooled_mean
from .errors import IllConditionedError
from .objective import Objective
from .optimizers import scale_by_inverse_hessian
from .result import Refinement
from .scaling import Scaling, constant_columns
from .train import train

EPS = np.finfo(np.float64).eps
#: a matrix is solved with while ``ε·cond ≤ CONDITION_LIMIT`` (``H``, else ``R``):
#: then each epoch divides the error by ``≳ 1/CONDITION_LIMIT``; beyond it the
#: smallest singular values are not known to one digit and there is nothing to
#: refine with
CONDITION_LIMIT = 1e-3
#: the most refinement epochs (each one data pass); it usually settles in 2-3
MAX_EPOCHS = 8
#: a correction that shrinks by less than this factor has reached the rounding
#: floor of the data-pass gradient: more epochs would only stir the last digits
SETTLED_RATIO = 0.25
#: ... and a floor above this relative size means refinement did not converge
DIVERGED_CORRECTION = 1e-4
#: with the pass engine, refinement first reads the full scatter (one pass,
#: ``O(N d²)``) and eigendecomposes it (``O(d³)``): worth it up to this many features
MAX_FEATURES = 2048


class _Settled:
    """Callback: stop once a correction no longer shrinks (the rounding floor) or vanishes."""

    #: the loop's stop reason when this callback ends it (never "interrupted": that is Ctrl-C's)
    stop_reason = "settled"

    def __init__(self, start):
        self.previous = start
        self.corrections = []
        self.last_step = np.zeros_like(start)
        self.settled = False

    def on_epoch_end(self, epoch, cost, params):
        step = params - self.previous
        norm = np.linalg.norm(params, axis=0)
        size = float(np.max(np.linalg.norm(step, axis=0) / np.where(norm > 0, norm, 1.0)))
        self.corrections.append(size)
        self.previous, self.last_step = params, step
        shrinking = len(self.corrections) < 2 or size < SETTLED_RATIO * self.corrections[-2]
        self.settled = size <= 4 * EPS or not shrinking
        return self.settled


def refinement_scaling(statistics, fit_intercept):
    """The units refinement runs in: centred (with an intercept) and standardized, whatever training used."""
    return Scaling.from_statistics(statistics, fit_intercept, standardize=True)


def hessian_solver(problem, statistics, scaling, fit_intercept, source):
    """``(solve, cond, method)``: ``g ↦ H⁻¹g`` for the smooth part of the objective in ``scaling``'s units.

    ``H`` is the statistics engine's Hessian (from ``statistics``, which must
    hold the full scatter) plus the L2 penalty's diagonal. Two ways to solve
    with it, the cheaper first:

    * ``"eigh"``: eigendecompose ``H`` (``O(p³)``, no data pass), while
      ``ε·cond(H) ≤ CONDITION_LIMIT``;
    * ``"qr"``: otherwise, the triangular factor ``R`` of the centred,
      standardized data (:func:`qr_factor`, one more pass), ``H ∝ RᵀR``. ``R``
      has the data's condition number, not its square, so it serves while
      ``ε·cond(R) ≤ CONDITION_LIMIT``: NIST's Filip, whose Gram has condition
      number ~10¹⁹, refines to 7 or more digits this way.

    ``cond`` is ``cond(H)`` (``cond(R)²`` for ``"qr"``).

    Raises
    ------
    IllConditionedError
        When even ``R`` is too ill-conditioned (or singular: collinear features).
    """
    engine = problem.objective.engine
    same_units = (
        isinstance(engine, StatisticsEngine)
        and np.array_equal(problem.scaling.center, scaling.center)
        and np.array_equal(problem.scaling.scale, scaling.scale)
    )
    if not same_units:
        engine = StatisticsEngine(statistics, scaling, fit_intercept)
    hessian = engine.hessian()
    penalty = problem.objective.penalty
    d, k = statistics.n_features, statistics.n_outputs
    diagonal = np.zeros(d) if penalty is None else penalty.hessian_diagonal(scaling.scale, k)
    hessian[np.arange(d), np.arange(d)] += diagonal
    # Constant columns carry nothing (gradient descent never moves them from 0):
    # solve on the others, and give the constant ones no step.
    free = ~constant_columns(statistics, fit_intercept)
    keep = np.concatenate([free, np.ones(int(fit_intercept), dtype=bool)])
    hessian = hessian[np.ix_(keep, keep)]
    eigenvalues, vectors = scipy.linalg.eigh(hessian)
    top, bottom = float(eigenvalues[-1]), float(eigenvalues[0])
    cond = top / bottom if bottom > 0 else np.inf
    if EPS * cond <= CONDITION_LIMIT:

        def solve(grads):
            out = np.zeros_like(grads)
            out[keep] = vectors @ ((vectors.T @ grads[keep]) / eigenvalues[:, None])
            return out

        return solve, cond, "eigh"

    # H_ww = (2/(Wk)) (RᵀR + W/2·k·diag), H_bb = 2/k, H_wb = 0 (the units are centred)
    total = statistics.sum_weights
    factor = qr_factor(source, scaling, fit_intercept, free)
    if np.any(diagonal[free] > 0):
        factor = np.linalg.qr(np.vstack([factor, np.diag(np.sqrt(total * k / 2 * diagonal[free]))]), mode="r")
    singular = np.linalg.svd(factor, compute_uv=False)
    data_cond = float(singular[0] / singular[-1]) if singular[-1] > 0 else np.inf
    if not EPS * data_cond <= CONDITION_LIMIT:
        raise IllConditionedError(
            f"the least-squares problem is too ill-conditioned for float64: the standardized data "
            f"have condition number {data_cond:.3g} (their Gram matrix {data_cond**2:.3g}), so rounding "
            f"decides the coefficients (machine epsilon x condition = {EPS * data_cond:.2g} > "
            f"{CONDITION_LIMIT:g}); no coefficients are returned. Drop collinear or nearly collinear "
            "features, add penalty='l2' with a small alpha, or rescale (e.g. centre x before taking "
            "powers for a polynomial)",
            data_cond**2,
        )

    def solve(grads):
        out = np.zeros_like(grads)
        half = scipy.linalg.solve_triangular(factor, grads[:d][free], trans="T")
        out[np.flatnonzero(free)] = scipy.linalg.solve_triangular(factor, half) * (total * k / 2)
        if fit_intercept:
            out[d] = grads[d] * (k / 2)
        return out

    return solve, data_cond**2, "qr"


def qr_factor(source, scaling, fit_intercept, columns=None):
    """``R`` (d, d), ``RᵀR = Σ v (x̃ − μ̃)(x̃ − μ̃)ᵀ``: the scatter's triangular square root, one pass.

    ``columns`` (a boolean mask of the features) restricts it to those features.

    ``x̃`` are the features in ``scaling``'s units and ``μ̃`` their weighted mean
    (zero without an intercept: the uncentred second moment). Per chunk, a
    Householder QR of the chunk centred on its own mean; chunks merge as the
    scatter does in the statistics engine (Chan, Golub & LeVeque: the means
    pooled by :func:`~gradfit.engines.moments.pooled_mean`), the cross
    term ``δδᵀ WₐW_b/W`` entering as one more row:

        R = qr([Rₐ; R_b; √(WₐW_b/W) δᵀ]),      δ = μ̃_b − μ̃ₐ.

    Unlike the scatter, ``R`` keeps the data's condition number rather than its square.
    """
    columns = np.ones(source.n_features, dtype=bool) if columns is None else columns
    d = int(np.sum(columns))
    scale = scaling.scale[columns]

    def chunk_factor(chunk):
        if chunk.n_rows == 0:
            return None
        X = np.asarray(chunk.X, dtype=np.float64)[:, columns] / scale
        weight = chunk.sample_weight
        total = float(chunk.n_rows) if weight is None else float(np.sum(weight))
        if total == 0:
            return None
        if fit_intercept:
            mean = X.mean(axis=0) if weight is None else (weight @ X) / total
            X = X - mean
        else:
            mean = np.zeros(d)
        if weight is not None:
            X = X * np.sqrt(weight)[:, None]
        return [total, mean, np.linalg.qr(X, mode="r")]

    def merge(a, b):
        total = a[0] + b[0]
        rows = [a[2], b[2]]
        if fit_intercept:
            rows.append(np.sqrt(a[0] * b[0] / total) * (b[1] - a[1])[None, :])
        return [total, pooled_mean(a[0], a[1], b[0], b[1]), np.linalg.qr(np.vstack(rows), mode="r")]

    result = source.reduce(chunk_factor, merge)
    factor = np.zeros((d, d))
    if result is not None:
        rows = result[2][:d]
        factor[: rows.shape[0]] = rows
    return factor


def refine(source, problem, params, *, fit_intercept, loss_curve, statistics=None, callbacks=()):
    """Run refinement epochs from ``params`` (in ``problem.scaling``'s units).

    Parameters
    ----------
    source : Source
        The data again: one pass per refinement epoch.
    problem : gradfit.fitting.Problem
    params : ndarray of shape (n_params, n_outputs)
    fit_intercept : bool
    loss_curve : list of float
        The curve so far; the refinement epochs continue it.
    statistics : Statistics, optional
        With the full scatter; by default ``problem.statistics`` (the
        statistics engine's).
    callbacks : sequence
        As for :func:`gradfit.train.train`; a true return from one of them stops
        refinement too (``status="interrupted"``).

    Returns
    -------
    coef : ndarray of shape (n_outputs, n_features)
    intercept : ndarray of shape (n_outputs,)
    result : gradfit.train.TrainResult
        The refinement loop's own value; its ``params`` are in ``problem.scaling``'s
        units again and its ``stop_reason`` is the refinement's status.
    record : gradfit.result.Refinement

    Raises
    ------
    IllConditionedError
        When the Hessian is too ill-conditioned to refine with, or refinement
        does not converge.
    """
    statistics = problem.statistics if statistics is None else statistics
    scaling = refinement_scaling(statistics, fit_intercept)
    solve, cond, method = hessian_solver(problem, statistics, scaling, fit_intercept, source)
    coef, intercept = problem.scaling.to_raw(params, fit_intercept)
    start = scaling.from_raw(coef, intercept, fit_intercept)
    engine = PassEngine(
        source, scaling, problem.loss, fit_intercept, statistics.sum_weights, centre_blocks=True
    )
    objective = Objective(engine, problem.objective.penalty, scaling)
    settled = _Settled(start)
    result = train(
        objective,
        scale_by_inverse_hessian(solve),
        start,
        epochs=MAX_EPOCHS,
        tol=None,
        schedule=lambda epoch: 0.0,  # Newton steps: no learning rate
        loss_curve=loss_curve,
        callbacks=(settled, *callbacks),
    )
    status = result.stop_reason  # "settled" (the callback above), "max_epochs" or "interrupted"
    final = settled.corrections[-1] if settled.corrections else 0.0
    if status != "interrupted" and final > DIVERGED_CORRECTION:
        raise IllConditionedError(
            f"iterative refinement did not converge (last correction {final:.2g} of the coefficients' "
            f"size after {len(settled.corrections)} data passes; Hessian condition number {cond:.3g}): "
            "the problem is too ill-conditioned for float64 and no coefficients are returned. Add "
            "penalty='l2' with a small alpha, or drop nearly collinear features",
            cond,
        )
    coef, intercept = scaling.to_raw(result.params, fit_intercept)
    record = Refinement(
        epochs=len(settled.corrections),
        corrections=settled.corrections,
        condition_number=cond,
        method=method,
        digits=_digits(settled.last_step, coef, intercept, scaling, fit_intercept),
        status=status,
        last_step=settled.last_step if settled.corrections else None,
    )
    result.params = problem.scaling.from_raw(coef, intercept, fit_intercept)
    return coef, intercept, result, record


def _digits(step, coef, intercept, scaling, fit_intercept):
    """``−log10(|Δ| / |value|)`` per coefficient (then intercept), Δ the last correction in data units."""
    d_coef, d_intercept = scaling.to_raw(step, fit_intercept)  # linear: the change in data units
    change = d_coef
    value = coef
    if fit_intercept:
        change = np.column_stack([d_coef, d_intercept])
        value = np.column_stack([coef, intercept])
    with np.errstate(divide="ignore", invalid="ignore"):
        digits = -np.log10(np.abs(change) / np.abs(value))
    digits = np.where(np.isnan(digits), 15.9, digits)
    return np.clip(digits, 0.0, 15.9)
