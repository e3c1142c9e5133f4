"""Penalties on the coefficients; the intercept is never penalized.

gradfit minimizes ``J(w, b) + alpha · R(coef)`` with
``R(coef) = l1_ratio · ‖coef‖₁ + (1 − l1_ratio)/2 · ‖coef‖²``, where ``coef`` are the
coefficients **in the data's own units**. Standardization therefore changes the
path training takes, never the answer it converges to.

Relation to scikit-learn (``J`` is the mean squared error, twice the data term of
``Lasso`` and ``ElasticNet``, and ``1/N`` times ``Ridge``'s):

* ``Lasso(alpha=a)``             ⇔ ``penalty="l1", alpha=2a``
* ``ElasticNet(alpha=a, l1_ratio=r)`` ⇔ ``penalty="elasticnet", alpha=2a, l1_ratio=r``
* ``Ridge(alpha=a)`` on N rows   ⇔ ``penalty="l2", alpha=2a/N``

Training runs in working units ``w = coef · scale`` (per feature); the methods
below take and return working-unit arrays of shape ``(n_features, n_outputs)``
and the per-feature ``scale`` of shape ``(n_features,)``.
"""

from __future__ import annotations

import numpy as np


class ElasticNet:
    """``alpha · (l1_ratio‖coef‖₁ + (1 − l1_ratio)/2 ‖coef‖²)``; L1 and L2 are the ends."""

    def __init__(self, name, alpha, l1_ratio):
        self.name = name
        self.alpha = float(alpha)
        self.l1_ratio = float(l1_ratio)

    @property
    def l1(self):
        return self.alpha * self.l1_ratio

    @property
    def l2(self):
        return self.alpha * (1.0 - self.l1_ratio)

    def value(self, weights, scale):
        """Penalty value; ``weights`` (d, k) in working units, summed over outputs."""
        coef = weights / scale[:, None]
        return self.l1 * np.abs(coef).sum() + 0.5 * self.l2 * (coef * coef).sum()

    def smooth_gradient(self, weights, scale):
        """Gradient of the differentiable (L2) part with respect to ``weights``."""
        return self.l2 * weights / (scale * scale)[:, None]

    def smooth_hvp(self, direction, scale):
        """Hessian of the L2 part times ``direction`` (d, k)."""
        return self.l2 * direction / (scale * scale)[:, None]

    def curvature(self, scale):
        """Largest eigenvalue of the L2 part's Hessian (it is diagonal)."""
        return self.l2 * float(np.max(1.0 / (scale * scale))) if scale.size else 0.0

    @property
    def has_prox(self):
        return self.l1 > 0

    def prox(self, weights, step, scale):
        """Soft-threshold: the proximal step of ``step · l1‖coef‖₁`` in working units.

        ``|coef_j| = |w_j| / scale_j``, so feature j's threshold is ``step·l1/scale_j``.
        Coefficients that cross zero become exactly zero.
        """
        threshold = (step * self.l1 / scale)[:, None]
        return np.sign(weights) * np.maximum(np.abs(weights) - threshold, 0.0)

    def params(self):
        return {"alpha": self.alpha, "l1_ratio": self.l1_ratio}
