"""The working units training runs in, and the way back to the data's own units.

Training parameters are ``θ = (w, b)`` for the standardized features
``x̃ = (x − center) / scale``; the model in the data's units is

    coef = w / scale,        intercept = b − center · coef.

The prediction ``x̃·w + b`` equals ``x·coef + intercept`` exactly, so the cost of
``θ`` on standardized data *is* the cost of ``(coef, intercept)`` on the raw
data: ``loss_curve_`` is always in the target's own units. With the scaling the
identity (center 0, scale 1) the two coincide, as in the tutorial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scaling:
    """Per-feature ``center`` and ``scale``, arrays of shape (n_features,)."""

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def identity(cls, n_features):
        return cls(np.zeros(n_features), np.ones(n_features))

    @classmethod
    def from_statistics(cls, stats, fit_intercept, standardize):
        """Standardization from one pass's moments.

        With an intercept, features are centred and divided by their standard
        deviation; without one, centring would change the model, so they are only
        divided by their root mean square. Either way the diagonal of the
        Hessian becomes constant (Jacobi preconditioning). Constant columns keep
        scale 1, as in scikit-learn's ``StandardScaler``.
        """
        d = stats.n_features
        if not standardize:
            return cls.identity(d)
        mean = stats.mean[:d]
        center = mean.copy() if fit_intercept else np.zeros(d)
        spread = _spread(stats, fit_intercept)
        scale = np.where(constant_columns(stats, fit_intercept), 1.0, spread)
        return cls(center, scale)

    def to_raw(self, params, fit_intercept):
        """``params`` (n_params, k) in working units → ``coef`` (k, d), ``intercept`` (k,)."""
        d = self.scale.shape[0]
        coef = params[:d] / self.scale[:, None]
        bias = params[d] if fit_intercept else np.zeros(params.shape[1])
        intercept = bias - self.center @ coef
        return coef.T.copy(), intercept

    def from_raw(self, coef, intercept, fit_intercept):
        """Inverse of :meth:`to_raw`: ``coef`` (k, d), ``intercept`` (k,) → params (n_params, k)."""
        weights = coef.T * self.scale[:, None]
        if not fit_intercept:
            return weights
        return np.vstack([weights, (intercept + coef @ self.center)[None, :]])


def _spread(stats, fit_intercept):
    """Per feature: standard deviation (with an intercept) or root mean square (without)."""
    d = stats.n_features
    mean = stats.mean[:d]
    variance = np.maximum(stats.scatter_diagonal[:d] / stats.sum_weights, 0.0)
    return np.sqrt(variance) if fit_intercept else np.sqrt(variance + mean * mean)


def constant_columns(stats, fit_intercept):
    """Mask (n_features,) of the features the model cannot use: constant ones.

    With an intercept a constant column duplicates it; without one only an
    all-zero column carries nothing. A spread at rounding level of the
    column's size counts as constant: centring left only rounding noise.
    """
    d = stats.n_features
    spread = _spread(stats, fit_intercept)
    return (spread == 0) | (spread <= 1e-12 * np.maximum(np.abs(stats.mean[:d]), np.finfo(float).tiny))

