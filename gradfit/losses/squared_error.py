"""The squared error ``ℓ(p, y) = (p − y)²``: the tutorial's cost."""

from __future__ import annotations

import numpy as np

from .base import Loss, residual


class SquaredError(Loss):
    """``ℓ = r²``, ``ℓ' = 2r``, ``ℓ'' = 2`` with ``r = p − y``.

    No factor ½: the tutorial's cost is the plain mean squared error.
    """

    name = "squared_error"
    smooth = True
    curvature = 2.0
    quadratic = True
    linear_derivative = 2.0
    cost_label = "mean squared error"
    short_label = "MSE"

    def value_and_derivative(self, prediction, target=0.0):
        r = residual(prediction, target)
        return r * r, 2.0 * r

    def second_derivative(self, prediction, target=0.0):
        return np.full(np.broadcast(prediction, target).shape, 2.0)
