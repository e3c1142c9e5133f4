"""Penalties on the coefficients; the intercept is never penalized.

gradfit minimizes, over ``k`` outputs,

    F = (1/k) Σ_j [ J_j(coef_j, intercept_j) + alpha · R(coef_j) ],
    R(c) = l1_ratio · ‖c‖₁ + (1 − l1_ratio)/2 · ‖c‖²,

with ``J_j`` the data term of output ``j`` (the weighted mean of ``ℓ(r)`` over
rows) and ``coef`` **in the data's own units**. Standardization therefore
changes the path training takes, never the answer it converges to, and each
output is the same problem it would be alone (the penalty is averaged over
outputs like the data term), as in scikit-learn.

Relation to scikit-learn, for the squared error ``J = (1/W) Σ v r²`` (no
factor ½; ``W = Σ v`` the sum of the sample weights, ``N`` without weights):

=======================================  ===========================================
scikit-learn                              gradfit
=======================================  ===========================================
``Lasso(alpha=a)``                        ``penalty="l1", alpha=2a``
``ElasticNet(alpha=a, l1_ratio=r)``       ``penalty="elasticnet", alpha=2a, l1_ratio=r``
``Ridge(alpha=a)``                        ``penalty="l2", alpha=2a/W``
=======================================  ===========================================

Why: ``Lasso`` and ``ElasticNet`` minimize ``(1/(2W)) Σ v r² + a·R`` (their
weights are rescaled to sum to ``N``, which is the same), half of gradfit's
data term, so gradfit's ``alpha`` is twice theirs; ``Ridge`` minimizes the
plain sum ``Σ v r² + a‖c‖²``, ``W`` times gradfit's data term and ``2/W`` times
its ``alpha/2 ‖c‖²``. Both hold per output for multi-output ``y``.
``tests/test_penalties.py`` checks the table to 1e-6 at convergence.

Training runs in working units ``w = coef · scale`` (per feature); the methods
below take and return working-unit arrays of shape ``(n_features, n_outputs)``
and the per-feature ``scale`` of shape ``(n_features,)``.
"""

from __future__ import annotations

import numpy as np


class ElasticNet:
    """``alpha · (l1_ratio‖coef‖₁ + (1 − l1_ratio)/2 ‖coef‖²)``, averaged over outputs.

    L1 (``l1_ratio=1``) and L2 (``l1_ratio=0``) are its ends.

    Parameters
    ----------
    name : {"l1", "l2", "elasticnet"}
        How the user asked for it (for messages).
    alpha : float
    l1_ratio : float in [0, 1]
    """

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
        """Penalty value; ``weights`` (d, k) in working units, averaged over the k outputs."""
        coef = weights / scale[:, None]
        k = weights.shape[1]
        return (self.l1 * np.abs(coef).sum() + 0.5 * self.l2 * (coef * coef).sum()) / k

    def smooth_gradient(self, weights, scale):
        """Gradient of the differentiable (L2) part with respect to ``weights``: ``l2 w / (k s²)``."""
        return self.l2 * weights / (weights.shape[1] * (scale * scale)[:, None])

    def smooth_hvp(self, direction, scale):
        """Hessian of the L2 part times ``direction`` (d, k)."""
        return self.l2 * direction / (direction.shape[1] * (scale * scale)[:, None])

    def hessian_diagonal(self, scale, n_outputs):
        """The L2 part's Hessian (diagonal), per output: shape (n_features,)."""
        return self.l2 / (n_outputs * scale * scale)

    def curvature(self, scale, n_outputs=1):
        """Largest eigenvalue of the L2 part's Hessian (it is diagonal)."""
        return float(np.max(self.hessian_diagonal(scale, n_outputs))) if scale.size else 0.0

    @property
    def has_prox(self):
        return self.l1 > 0

    def prox(self, weights, step, scale):
        """Soft-threshold: the proximal step of ``step · (l1/k)‖coef‖₁`` in working units.

        ``|coef_j| = |w_j| / scale_j``, so feature j's threshold is ``step·l1/(k·scale_j)``.
        Coefficients that cross zero become exactly zero.
        """
        threshold = (step * self.l1 / (weights.shape[1] * scale))[:, None]
        return np.sign(weights) * np.maximum(np.abs(weights) - threshold, 0.0)

    def params(self):
        return {"alpha": self.alpha, "l1_ratio": self.l1_ratio}
