"""Huber's loss, scaled to agree with ``(p − y)²`` inside the threshold."""

from __future__ import annotations

import numpy as np

from .base import Loss, residual


class Huber(Loss):
    """``ℓ = r²`` for ``|r| ≤ ε`` and ``2ε|r| − ε²`` beyond; ``ℓ' = 2·clip(r, −ε, ε)``, ``r = p − y``.

    ``ℓ'' = 2`` inside the threshold and 0 beyond (it jumps at ``|r| = ε``,
    but is bounded: the loss is smooth in the sense that matters, a
    Lipschitz gradient). This is twice scikit-learn's
    ``SGDRegressor(loss="huber")`` loss. Unlike scikit-learn's
    ``HuberRegressor``, which minimizes ``Σ (σ + H_ε(r/σ) σ) + α‖w‖²`` over
    the coefficients *and* a scale ``σ`` (so that its ε is in units of σ and
    the fit is scale-invariant), gradfit's ε is in the target's own units and
    no scale is estimated. Since ``σ·H_ε(r/σ) = huber_{εσ}(r)/σ``, gradfit
    with ``epsilon = ε·scale_`` (and no penalty) has
    ``HuberRegressor(alpha=0)``'s coefficients; ``tests/test_losses.py`` checks it.
    """

    name = "huber"
    smooth = True
    curvature = 2.0
    quadratic = False
    huberized = True
    cost_label = "Huber loss"
    parameters = ("epsilon",)

    def __init__(self, epsilon):
        self.epsilon = float(epsilon)

    def value_and_derivative(self, prediction, target=0.0):
        r = residual(prediction, target)
        eps = self.epsilon
        absr = np.abs(r)
        inside = absr <= eps
        value = np.where(inside, r * r, 2.0 * eps * absr - eps * eps)
        return value, 2.0 * np.clip(r, -eps, eps)

    def second_derivative(self, prediction, target=0.0):
        return np.where(np.abs(residual(prediction, target)) <= self.epsilon, 2.0, 0.0)
