"""Regression metrics over a source, streamed chunk by chunk (one pass)."""

from __future__ import annotations

import numpy as np

from . import registry
from .errors import DataError
from .sources import check_finite


def evaluate(predict, source):
    """MSE, RMSE, MAE and R² of ``predict`` on ``source``, averaged over outputs.

    ``predict`` maps a chunk (its ``X``, and its ``codes`` where the source
    keeps a column as level codes) to predictions (n, k). R² is
    ``1 − SSE/SST`` per output (``SST`` about the weighted mean, merged across
    chunks without loss of digits), then averaged, as scikit-learn's
    ``r2_score`` does by default. Sample weights, if the source has them, weigh
    every metric.

    Returns
    -------
    dict
        ``n_samples``, ``mse``, ``rmse``, ``mae`` and ``r2``; ``r2`` is ``None``
        for a single row, where it is not defined (scikit-learn returns NaN).

    Raises
    ------
    DataError
        On a NaN or infinite value (naming its row and column), no rows, or
        weights that sum to zero.
    """
    # Imported here, not with this module: the engines load SciPy, which the
    # command line's start-up does without.
    from .engines.moments import Moments, merge

    def partial_sums(chunk):
        # the target's moments (its weighted mean and Σv(y−ȳ)², merged as the statistics engine's), Σv r², Σv |r|
        if chunk.n_rows == 0:
            return None
        check_finite(source, chunk)
        weight = np.ones(chunk.n_rows) if chunk.sample_weight is None else chunk.sample_weight
        with np.errstate(over="ignore", invalid="ignore"):
            residual = predict(chunk) - chunk.y
            squares = weight[:, None] * (residual * residual)
        _check_overflow(source, chunk, residual, "the prediction error",
                        "the model's coefficients are too large for these values")
        _check_overflow(source, chunk, squares, "the squared error",
                        "the error is too large to square in float64 (above 1.3e154)")
        chunk_total = float(weight.sum())
        if chunk_total == 0:
            zeros = np.zeros(chunk.y.shape[1])
            target = Moments(chunk.n_rows, 0.0, zeros, None, zeros.copy(), zeros.copy())
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                chunk_mean = (weight @ chunk.y) / chunk_total
                centred = chunk.y - chunk_mean
                target = Moments(chunk.n_rows, chunk_total, chunk_mean, None, weight @ (centred * centred),
                                 weight @ centred)
        return [target, squares.sum(axis=0), weight @ np.abs(residual)]

    def combine(a, b):
        return [merge(a[0], b[0]), a[1] + b[1], a[2] + b[2]]

    # Through reduce, so that a cluster source sums where its data are.
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is named just below
        sums = source.reduce(partial_sums, combine)
    if sums is None or sums[0].count == 0:
        raise DataError(f"{source.describe()} has no data rows")
    target, sse, sae = sums
    rows, total = target.count, target.total
    if total == 0:
        raise DataError(f"the sample weights in {source.describe()} sum to zero")
    with np.errstate(over="ignore", invalid="ignore"):
        sst = target.diagonal - target.residual * (target.residual / total)  # about the exact mean
    if not (np.all(np.isfinite(sse)) and np.all(np.isfinite(sst)) and np.all(np.isfinite(sae))):
        raise DataError(
            f"the metrics on {source.describe()} overflow float64: the sum of squared "
            f"{'errors' if not np.all(np.isfinite(sse)) else 'deviations of the target'} exceeds 1.8e308 "
            "(values too large for the MSE to be computed)"
        )
    mse = sse / total
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / sst, np.where(sse == 0, 1.0, 0.0))
    return {
        "n_samples": rows,
        "mse": float(mse.mean()),
        "rmse": float(np.sqrt(mse).mean()),
        "mae": float((sae / total).mean()),
        "r2": float(r2.mean()) if rows > 1 else None,
    }


def _check_overflow(source, chunk, values, what, why):
    """Raise :class:`DataError` naming the first row where ``values`` (n, k) overflowed float64."""
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{what} for {source.describe()} at {source.where(chunk.start + row)} overflows float64: {why}"
        )


def training_r2(result, source, predict):
    """R² of a finished fit (:class:`~gradfit.result.FitResult`) on its training data.

    From the statistics when the statistics engine ran (no pass); otherwise one pass.
    """
    if registry.ENGINES[result.engine].knows_optimum:
        return r2_from_statistics(result.problem.objective.engine, result.params)
    return evaluate(predict, source)["r2"]


def r2_from_statistics(engine, params):
    """Training R² of the squared error from the statistics engine: no data pass."""
    mse = engine.squared_error_per_output(params)
    variance = engine.target_moment
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(variance > 0, 1.0 - mse / variance, np.where(mse == 0, 1.0, 0.0))
    return float(r2.mean())
