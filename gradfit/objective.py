"""The objective training minimizes: an engine's data term plus a penalty.

``F(θ) = J(θ) + alpha·R(coef)``, with J from the engine and R from
:mod:`gradfit.penalties` (never the intercept). Its smooth part has a value,
gradient, Hessian product and curvature bound; its L1 part enters through a
proximal step.
"""

from __future__ import annotations


class Objective:
    """``engine`` (data term) + ``penalty`` (or None), in working units."""

    def __init__(self, engine, penalty, scaling):
        self.engine = engine
        self.penalty = penalty
        self.scaling = scaling
        self.n_features = engine.n_features

    def _weights(self, params):
        return params[: self.n_features]

    def value_and_grad(self, params, rows=None):
        value, grad = self.engine.value_and_grad(params, rows)
        if self.penalty is not None:
            weights = self._weights(params)
            value += self.penalty.value(weights, self.scaling.scale)
            grad[: self.n_features] += self.penalty.smooth_gradient(weights, self.scaling.scale)
        return value, grad

    def value(self, params):
        return self.value_and_grad(params)[0]

    def hvp(self, direction):
        out = self.engine.hvp(direction)
        if self.penalty is not None:
            out[: self.n_features] += self.penalty.smooth_hvp(self._weights(direction), self.scaling.scale)
        return out

    def curvature(self):
        """``L`` of the smooth part: the engine's plus the L2 penalty's."""
        extra = 0.0
        if self.penalty is not None:
            extra = self.penalty.curvature(self.scaling.scale, self.engine.n_outputs)
        return self.engine.curvature() + extra

    @property
    def has_prox(self):
        return self.penalty is not None and self.penalty.has_prox

    def prox(self, params, step):
        """Proximal step of the L1 part on the weights (the intercept untouched)."""
        out = params.copy()
        out[: self.n_features] = self.penalty.prox(self._weights(params), step, self.scaling.scale)
        return out
