"""Pointwise regression losses, as functions of the residual.

Each loss is ``ℓ(r)`` with ``r = prediction - target``; the engines do all the
linear algebra (``X @ w`` and ``Xᵀ g``) and call a loss only on a block of
residuals (scikit-learn's ``_linear_loss.py`` split). The data term of the cost
is the weighted mean ``J = Σ_i v_i Σ_j ℓ(r_ij) / (k Σ_i v_i)`` over rows ``i``
and the ``k`` outputs ``j``.

All are scaled so that they agree with the squared error ``r²`` for small
residuals (no factor ½: the tutorial's cost is the plain mean squared error).
"""

from __future__ import annotations

import numpy as np


class SquaredError:
    """``ℓ(r) = r²``, ``ℓ'(r) = 2r``. The tutorial's cost."""

    name = "squared_error"
    #: sup ℓ''; the Hessian of J is at most ``curvature`` times the design's second moment.
    curvature = 2.0
    #: whether the statistics engine can serve it (J depends on X only through XᵀX, Xᵀy …)
    quadratic = True

    def value_and_derivative(self, residual):
        """Return ``(ℓ(r), ℓ'(r))`` elementwise; arrays of ``residual``'s shape."""
        return residual * residual, 2.0 * residual

    def params(self):
        return {}


class Huber:
    """Huber's loss, scaled to agree with ``r²`` inside the threshold.

    ``ℓ(r) = r²`` for ``|r| ≤ ε`` and ``2ε|r| − ε²`` beyond; ``ℓ'(r) = 2·clip(r, −ε, ε)``.
    This is twice scikit-learn's ``SGDRegressor(loss="huber")`` loss. Unlike
    scikit-learn's ``HuberRegressor``, which minimizes
    ``Σ (σ + H_ε(r/σ) σ) + α‖w‖²`` over the coefficients *and* a scale ``σ``
    (so that its ε is in units of σ and the fit is scale-invariant), gradfit's
    ε is in the target's own units and no scale is estimated. Since
    ``σ·H_ε(r/σ) = huber_{εσ}(r)/σ``, gradfit with ``epsilon = ε·scale_`` (and no
    penalty) has ``HuberRegressor(alpha=0)``'s coefficients;
    ``tests/test_losses.py`` checks it.
    """

    name = "huber"
    curvature = 2.0
    quadratic = False

    def __init__(self, epsilon):
        self.epsilon = float(epsilon)

    def value_and_derivative(self, residual):
        eps = self.epsilon
        absr = np.abs(residual)
        inside = absr <= eps
        value = np.where(inside, residual * residual, 2.0 * eps * absr - eps * eps)
        return value, 2.0 * np.clip(residual, -eps, eps)

    def params(self):
        return {"epsilon": self.epsilon}


class AbsoluteError:
    """``ℓ(r) = |r|``, subgradient ``sign(r)``: the median regression.

    Not differentiable at 0: the subgradient keeps its size at the optimum, so
    a constant step circles it at a distance of about the step. ``schedule="auto"``
    (the default) therefore decays the step as ``η/(1 + t)`` for this loss, and
    ``learning_rate="auto"`` puts ``η`` in the target's units (see
    :mod:`gradfit.schedules` and :data:`gradfit.registry.ABSOLUTE_ERROR_AUTO_FACTOR`).
    The optimum is scikit-learn's ``QuantileRegressor(quantile=0.5, alpha=0)``.
    """

    name = "absolute_error"
    curvature = None
    quadratic = False
    #: the pinball loss's τ it equals (:class:`Quantile`); :mod:`gradfit.robust` reads it
    quantile = 0.5

    def value_and_derivative(self, residual):
        return np.abs(residual), np.sign(residual)

    def params(self):
        return {}


class Quantile:
    """The pinball loss of quantile ``τ``, scaled by 2 so that ``τ = 0.5`` is ``|r|``.

    With ``u = target − prediction`` (so ``u = −r``), the pinball loss of
    scikit-learn's ``QuantileRegressor`` and ``mean_pinball_loss`` is
    ``ρ_τ(u) = τ·u`` for ``u ≥ 0`` and ``(τ − 1)·u`` for ``u < 0``: targets
    above the prediction cost ``τ`` a unit, those below ``1 − τ``, so the
    optimum leaves a share ``τ`` of the (weighted) rows below the fit.
    gradfit's loss is ``ℓ(r) = 2·ρ_τ(−r) = |r| + (1 − 2τ)·r``, subgradient
    ``sign(r) + (1 − 2τ)``: at ``τ = 0.5`` exactly :class:`AbsoluteError`
    (the same cost values), and twice scikit-learn's objective in general (the
    same minimizer; ``final_cost_`` is ``2·mean_pinball_loss``). Non-smooth,
    so it is fitted as the absolute error is: ``schedule="auto"`` decays the
    step, ``learning_rate="auto"`` puts it in the target's units, and
    ``optimizer="newton"`` (:mod:`gradfit.robust.absolute`) solves the linear
    program exactly. The optimum is ``QuantileRegressor(quantile=τ, alpha=0)``'s.

    Parameters
    ----------
    quantile : float in (0, 1)
        ``τ``.
    """

    name = "quantile"
    curvature = None
    quadratic = False

    def __init__(self, quantile):
        self.quantile = float(quantile)

    def value_and_derivative(self, residual):
        tilt = 1.0 - 2.0 * self.quantile  # the linear part that makes the loss asymmetric
        return np.abs(residual) + tilt * residual, np.sign(residual) + tilt

    def params(self):
        return {"quantile": self.quantile}
