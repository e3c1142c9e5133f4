"""The pass engine: value and gradient from one fused pass over the data.

For any pointwise loss. Per row block ``X_b`` (still in cache between the two
products):

    r = X_b u + β − y_b,      (ℓ, g) = loss(r),      Σ v ℓ,   X_bᵀ (v g),   Σ v g

with the model in raw units ``u = w / scale``, ``β = b − center·u``, so that X
is never standardized or copied; the chain rule brings the sums back to
working units: ``∇_w J = (X_bᵀ(vg) − center Σvg) / scale / (W k)``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg

from ..losses import SquaredError


class PassEngine:
    """Cost and gradient of ``loss`` over ``source`` by data passes.

    Parameters
    ----------
    source : Source
    scaling : Scaling
    loss : loss object (see :mod:`gradfit.losses`)
    fit_intercept : bool
    sum_weights : float
        ``W``, known from the moments pass.
    """

    name = "pass"

    def __init__(self, source, scaling, loss, fit_intercept, sum_weights):
        self.source = source
        self.scaling = scaling
        self.loss = loss
        self.fit_intercept = fit_intercept
        self.sum_weights = float(sum_weights)
        self.n_features, self.n_outputs = source.n_features, source.n_outputs
        self._curvature = None

    def _raw(self, params):
        d = self.n_features
        coef = params[:d] / self.scaling.scale[:, None]
        bias = params[d] if self.fit_intercept else np.zeros(params.shape[1])
        return coef, bias - self.scaling.center @ coef

    def _pass(self, params, rows, loss, with_target):
        """Σ v ℓ, Xᵀ(v g), Σ v g and Σ v over the rows (all, or ``rows``)."""
        coef, offset = self._raw(params)

        def partial_sums(chunk):
            # float32 blocks are widened one block at a time, so that every
            # engine and source gives the same float64 iterates.
            X = np.asarray(chunk.X, dtype=np.float64)
            residual = X @ coef
            residual += offset
            if with_target:
                residual -= chunk.y
            pointwise, derivative = loss.value_and_derivative(residual)
            weight = chunk.sample_weight
            if weight is None:
                value, total = float(np.sum(pointwise)), float(chunk.n_rows)
            else:
                value, total = float(weight @ pointwise.sum(axis=1)), float(np.sum(weight))
                derivative *= weight[:, None]
            return [value, X.T @ derivative, derivative.sum(axis=0), total]

        def add(a, b):
            for i in range(4):
                a[i] += b[i]
            return a

        if rows is not None:
            return partial_sums(self.source.take(rows))
        result = self.source.reduce(partial_sums, add)
        return result

    def _to_working(self, grad_coef, grad_sum, scale_by):
        d = self.n_features
        grad = np.empty((d + self.fit_intercept, self.n_outputs))
        grad[:d] = (grad_coef - np.outer(self.scaling.center, grad_sum)) / self.scaling.scale[:, None]
        if self.fit_intercept:
            grad[d] = grad_sum
        return grad / scale_by

    def value_and_grad(self, params, rows=None):
        """``(J, ∇J)`` over all rows, or over the minibatch ``rows`` (sorted indices)."""
        value, grad_coef, grad_sum, total = self._pass(params, rows, self.loss, True)
        if rows is None:
            total = self.sum_weights  # the same, without rounding differences
        if total == 0:
            return 0.0, np.zeros_like(params)
        scale_by = total * self.n_outputs
        return value / scale_by, self._to_working(grad_coef, grad_sum, scale_by)

    def value(self, params):
        return self.value_and_grad(params)[0]

    def hvp(self, direction):
        """Hessian of the squared error's J times ``direction``: one pass."""
        _, grad_coef, grad_sum, _ = self._pass(direction, None, SquaredError(), False)
        return self._to_working(grad_coef, grad_sum, self.sum_weights * self.n_outputs)

    def curvature(self):
        """``L`` bound: loss curvature/2 × λmax of the squared error's Hessian (Lanczos, one pass a product)."""
        if self._curvature is None:
            factor = (self.loss.curvature or 2.0) / 2.0
            p = self.n_features + self.fit_intercept

            def matvec(vector):
                return self.hvp(np.asarray(vector, dtype=float).reshape(p, 1))[:, 0]

            if p <= 8:
                # Small: build the Hessian column by column (p passes) and take it exactly.
                hessian = np.column_stack([matvec(column) for column in np.eye(p)])
                top = float(np.linalg.eigvalsh((hessian + hessian.T) / 2)[-1])
            else:
                operator = scipy.sparse.linalg.LinearOperator((p, p), matvec=matvec, dtype=float)
                top = float(
                    scipy.sparse.linalg.eigsh(
                        operator, k=1, which="LA", tol=1e-4, v0=np.ones(p), return_eigenvectors=False
                    )[0]
                )
            self._curvature = factor * top
        return self._curvature
