"""The pinball loss of quantile ``τ``: quantile regression."""

from __future__ import annotations

import numpy as np

from .base import Loss, residual


class Quantile(Loss):
    """The pinball loss of quantile ``τ``, scaled by 2 so that ``τ = 0.5`` is ``|r|``, ``r = p − y``.

    With ``u = y − p`` (so ``u = −r``), the pinball loss of scikit-learn's
    ``QuantileRegressor`` and ``mean_pinball_loss`` is ``ρ_τ(u) = τ·u`` for
    ``u ≥ 0`` and ``(τ − 1)·u`` for ``u < 0``: targets above the prediction
    cost ``τ`` a unit, those below ``1 − τ``, so the optimum leaves a share
    ``τ`` of the (weighted) rows below the fit. gradfit's loss is
    ``ℓ(p, y) = 2·ρ_τ(y − p) = |r| + (1 − 2τ)·r``, subgradient
    ``sign(r) + (1 − 2τ)``: at ``τ = 0.5`` exactly
    :class:`~gradfit.losses.AbsoluteError` (the same cost values), and twice
    scikit-learn's objective in general (the same minimizer; ``final_cost_``
    is ``2·mean_pinball_loss``). Non-smooth, so it is fitted as the absolute
    error is: ``schedule="auto"`` decays the step, ``learning_rate="auto"``
    puts it in the target's units, and ``optimizer="newton"``
    (:mod:`gradfit.robust.absolute`) solves the linear program exactly. The
    optimum is ``QuantileRegressor(quantile=τ, alpha=0)``'s.

    Parameters
    ----------
    quantile : float in (0, 1)
        ``τ``.
    """

    name = "quantile"
    smooth = False
    curvature = None
    quadratic = False
    piecewise_linear = True
    parameters = ("quantile",)

    def __init__(self, quantile):
        self.quantile = float(quantile)

    def value_and_derivative(self, prediction, target=0.0):
        r = residual(prediction, target)
        tilt = 1.0 - 2.0 * self.quantile  # the linear part that makes the loss asymmetric
        return np.abs(r) + tilt * r, np.sign(r) + tilt
