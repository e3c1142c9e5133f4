"""The absolute error ``ℓ(p, y) = |p − y|``: the median regression."""

from __future__ import annotations

import numpy as np

from .base import Loss, residual


class AbsoluteError(Loss):
    """``ℓ = |r|``, subgradient ``sign(r)``, ``r = p − y``.

    Not differentiable at 0 (``smooth = False``): the subgradient keeps its
    size at the optimum, so a constant step circles it at a distance of about
    the step. ``schedule="auto"`` (the default) therefore decays the step as
    ``η/(1 + t)`` for a non-smooth loss, and ``learning_rate="auto"`` puts
    ``η`` in the target's units (see :mod:`gradfit.schedules` and
    :data:`gradfit.registry.NON_SMOOTH_AUTO_FACTOR`). The optimum is
    scikit-learn's ``QuantileRegressor(quantile=0.5, alpha=0)``.
    """

    name = "absolute_error"
    smooth = False
    curvature = None
    quadratic = False
    piecewise_linear = True
    #: the pinball loss's τ it equals (:class:`~gradfit.losses.Quantile`); :mod:`gradfit.robust` reads it
    quantile = 0.5

    def value_and_derivative(self, prediction, target=0.0):
        r = residual(prediction, target)
        return np.abs(r), np.sign(r)
