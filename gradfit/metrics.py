"""Regression metrics over a source, streamed chunk by chunk (one pass)."""

from __future__ import annotations

import numpy as np


def evaluate(predict, source):
    """MSE, RMSE, MAE and R² of ``predict`` on ``source``, averaged over outputs.

    ``predict`` maps a chunk's X (n, d) to predictions (n, k). R² is
    ``1 − SSE/SST`` per output (``SST`` about the weighted mean, merged across
    chunks without loss of digits), then averaged, as scikit-learn's
    ``r2_score`` does by default. Sample weights, if the source has them, weigh
    every metric.
    """
    k = source.n_outputs
    total, mean, sst = 0.0, np.zeros(k), np.zeros(k)
    sse, sae = np.zeros(k), np.zeros(k)
    for chunk in source.chunks():
        if chunk.n_rows == 0:
            continue
        residual = predict(chunk.X) - chunk.y
        weight = np.ones(chunk.n_rows) if chunk.sample_weight is None else chunk.sample_weight
        chunk_total = float(weight.sum())
        if chunk_total == 0:
            continue
        sse += weight @ (residual * residual)
        sae += weight @ np.abs(residual)
        chunk_mean = (weight @ chunk.y) / chunk_total
        centred = chunk.y - chunk_mean
        chunk_sst = weight @ (centred * centred)
        merged = total + chunk_total
        delta = chunk_mean - mean
        sst += chunk_sst + delta * delta * total * chunk_total / merged
        mean += delta * chunk_total / merged
        total = merged
    mse = sse / total
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / sst, np.where(sse == 0, 1.0, 0.0))
    return {
        "n_samples": int(source.n_samples) if source.n_samples is not None else None,
        "mse": float(mse.mean()),
        "rmse": float(np.sqrt(mse).mean()),
        "mae": float((sae / total).mean()),
        "r2": float(r2.mean()),
    }


def training_r2(result, source, predict):
    """R² of a finished fit (:class:`~gradfit.fitting.FitResult`) on its training data.

    From the statistics when the statistics engine ran (no pass); otherwise one pass.
    """
    if result.engine == "statistics":
        return r2_from_statistics(result.problem.objective.engine, result.params)
    return evaluate(predict, source)["r2"]


def r2_from_statistics(engine, params):
    """Training R² of the squared error from the statistics engine: no data pass."""
    mse = engine.squared_error_per_output(params)
    variance = engine.target_moment
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(variance > 0, 1.0 - mse / variance, np.where(mse == 0, 1.0, 0.0))
    return float(r2.mean())
