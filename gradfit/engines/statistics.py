"""The statistics engine: squared-error cost and gradient from sufficient statistics.

For the squared error, ``J`` and ``∇J`` depend on the data only through the
(weighted) count, the means and the centred scatter matrix of ``z = [x, y]``.
One pass collects them; after that every epoch costs O(d²), and its iterates
are those of a data pass (``../shared/DESIGN.md``).

Accumulation is per chunk *centred* (the chunk's own mean removed) and chunks
are merged with Chan, Golub & LeVeque's pairwise update

    n = nₐ + n_b,   δ = μ_b − μₐ,   μ = μₐ + δ n_b/n,   S = Sₐ + S_b + δδᵀ nₐn_b/n,

which keeps the digits that the naive ``ZᵀZ − n μμᵀ`` throws away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..errors import DataError
from ..sources import check_finite


@dataclass
class Statistics:
    """Weighted moments of ``z = [x, y]`` (``d + k`` columns).

    Attributes
    ----------
    n_features, n_outputs : int
    n_samples : int
        Rows read (zero-weight rows included).
    sum_weights : float
        ``W = Σ v_i`` (``n_samples`` without weights).
    mean : ndarray of shape (d + k,)
        Weighted means.
    scatter : ndarray of shape (d + k, d + k) or None
        ``Σ v_i (z_i − μ)(z_i − μ)ᵀ``; ``None`` when only the diagonal was kept.
    scatter_diagonal : ndarray of shape (d + k,)
        Its diagonal (always kept).
    """

    n_features: int
    n_outputs: int
    n_samples: int
    sum_weights: float
    mean: np.ndarray
    scatter: np.ndarray | None
    scatter_diagonal: np.ndarray


def accumulate(source, full=True):
    """One pass over ``source``: its :class:`Statistics`, validating every chunk.

    Parameters
    ----------
    source : Source
    full : bool, default=True
        Keep the whole scatter matrix (O(N d²) work, for the statistics engine)
        or only its diagonal (O(N d), the moments standardization needs).

    Raises
    ------
    DataError
        On a NaN or infinite value (naming its row and column), a negative
        weight, values whose squares overflow, or no rows at all.
    """
    d, k = source.n_features, source.n_outputs
    width = d + k
    count, total = 0, 0.0
    mean = np.zeros(width)
    scatter = np.zeros((width, width)) if full else None
    diagonal = np.zeros(width)
    buffer = None
    for chunk in source.chunks():
        n = chunk.n_rows
        count += n
        if n == 0:
            continue
        if buffer is None or buffer.shape[0] < n:
            buffer = np.empty((n, width))
        z = buffer[:n]
        z[:, :d] = chunk.X
        z[:, d:] = chunk.y
        weight = chunk.sample_weight
        if weight is None:
            chunk_total = float(n)
            chunk_mean = np.add.reduce(z, axis=0) / n
        else:
            chunk_total = float(np.sum(weight))
            if not np.isfinite(chunk_total) or np.any(weight < 0):
                check_finite(source, chunk)
            if chunk_total == 0:
                continue
            chunk_mean = (weight @ z) / chunk_total
        if not np.all(np.isfinite(chunk_mean)):
            check_finite(source, chunk)  # names the NaN or inf; else the sum overflowed
            _raise_overflow(source, np.argmax(~np.isfinite(chunk_mean)))
        z -= chunk_mean
        if weight is not None:
            z *= np.sqrt(weight)[:, None]
        if full:
            chunk_scatter = z.T @ z
            chunk_diagonal = np.diagonal(chunk_scatter)
        else:
            chunk_diagonal = np.einsum("ij,ij->j", z, z)
        if total == 0:
            mean, total = chunk_mean, chunk_total
            diagonal = chunk_diagonal.copy()
            if full:
                scatter = chunk_scatter
            continue
        merged = total + chunk_total
        delta = chunk_mean - mean
        factor = total * chunk_total / merged
        mean = mean + delta * (chunk_total / merged)
        diagonal += chunk_diagonal + factor * delta * delta
        if full:
            scatter += chunk_scatter
            scatter += factor * np.outer(delta, delta)
        total = merged
    if count == 0:
        raise DataError(f"{source.describe()} has no data rows")
    if total == 0:
        raise DataError(f"the sample weights in {source.describe()} sum to zero")
    if not np.all(np.isfinite(diagonal)):
        _raise_overflow(source, int(np.argmax(~np.isfinite(diagonal))))
    if full:
        diagonal = np.diagonal(scatter).copy()
    return Statistics(d, k, count, total, mean, scatter, diagonal)


def _raise_overflow(source, column):
    raise DataError(
        f"values in {source.describe()}, column {source.column_name(int(column))!r}, are too "
        "large: their sums overflow float64; rescale that column"
    )


class StatisticsEngine:
    """Value, gradient and Hessian products of the squared error from :class:`Statistics`.

    In working units (see :mod:`gradfit.scaling`) with ``m = (μₓ − center) / scale``
    and ``δ = m·w + b − μ_y``, for each output:

        J      = (1/k) Σ_outputs [ wᵀ G w − 2 wᵀ h + q + δ² ]
        ∇_w J  = (2/k) (G w − h + m δ),      ∇_b J = (2/k) δ

    with ``G = D Sₓₓ D / W``, ``h = D Sₓᵧ / W``, ``q = diag(Sᵧᵧ) / W``, ``D = diag(1/scale)``.
    When the features are centred (``center = μₓ``), ``m = 0`` exactly and the
    intercept decouples from the weights.

    Expanded like that, J suffers cancellation near the optimum (its rounding
    error is about ε·q, so a cost below that, or a relative improvement below
    ε·q/J, cannot be seen). So the engine evaluates J exactly as the quadratic
    it is, about a reference point θ̂ (the least-squares solution, from an
    eigendecomposition of the Hessian H, refined once):

        J(θ) = J(θ̂) + ∇J(θ̂)ᵀΔ + ½ ΔᵀHΔ,      ∇J(θ) = ∇J(θ̂) + HΔ,      Δ = θ − θ̂

    Only the constant ``J(θ̂)`` carries the ε·q rounding; differences between
    epochs, and the gap to the optimum, are computed to full precision.
    """

    name = "statistics"

    def __init__(self, stats, scaling, fit_intercept):
        if stats.scatter is None:
            raise ValueError("the statistics engine needs the full scatter matrix")
        d, k = stats.n_features, stats.n_outputs
        inv_scale = 1.0 / scaling.scale
        total = stats.sum_weights
        self.stats = stats
        self.fit_intercept = fit_intercept
        self.n_features, self.n_outputs = d, k
        self.n_samples = stats.n_samples
        self.gram = stats.scatter[:d, :d] * np.outer(inv_scale, inv_scale) / total
        self.cross = stats.scatter[:d, d:] * inv_scale[:, None] / total
        self.target_moment = np.diagonal(stats.scatter)[d:] / total
        self.mean_offset = (stats.mean[:d] - scaling.center) * inv_scale
        self.target_mean = stats.mean[d:]
        self._solve()

    # -- the expansion, used only to set up the reference point ----------------

    def _split(self, params):
        d = self.n_features
        weights = params[:d]
        bias = params[d] if self.fit_intercept else 0.0
        return weights, bias

    def _expanded(self, params):
        """Per-output J (clamped at 0) and ∇J by the direct expansion."""
        weights, bias = self._split(params)
        k = self.n_outputs
        gram_w = self.gram @ weights
        delta = self.mean_offset @ weights + bias - self.target_mean
        per_output = np.einsum("ij,ij->j", weights, gram_w - 2.0 * self.cross) + self.target_moment + delta * delta
        grad = np.empty_like(params)
        grad[: self.n_features] = (2.0 / k) * (gram_w - self.cross + np.outer(self.mean_offset, delta))
        if self.fit_intercept:
            grad[self.n_features] = (2.0 / k) * delta
        return np.maximum(per_output, 0.0), grad

    def _solve(self):
        """Eigendecompose H once: L, the condition number and the reference point θ̂."""
        hessian = self.hessian()
        eigenvalues, vectors = scipy.linalg.eigh(hessian)
        self.eigenvalues = eigenvalues
        top = max(float(eigenvalues[-1]), 0.0)
        # Directions the data do not determine (rank deficiency) are left alone:
        # gradient descent from zero never moves along them either.
        keep = eigenvalues > top * hessian.shape[0] * np.finfo(float).eps
        self.rank = int(np.sum(keep))

        def pseudo_solve(rhs):
            return vectors[:, keep] @ ((vectors[:, keep].T @ rhs) / eigenvalues[keep][:, None])

        p, k = hessian.shape[0], self.n_outputs
        reference = np.zeros((p, k))
        for _ in range(2):  # a Newton step from zero, then one step of iterative refinement
            _, grad = self._expanded(reference)
            reference = reference - pseudo_solve(grad)
        per_output, grad = self._expanded(reference)
        self.reference = reference
        self.reference_value = float(np.sum(per_output)) / k
        self.reference_per_output = per_output
        self.reference_grad = grad

    # -- what the loop uses ------------------------------------------------------

    def value_and_grad(self, params, rows=None):
        """``(J, ∇J)`` at ``params`` of shape (n_params, k)."""
        if rows is not None:
            raise ValueError("the statistics engine cannot compute minibatch gradients")
        step = params - self.reference
        curvature = self.hvp(step)
        value = self.reference_value + np.sum(step * (self.reference_grad + 0.5 * curvature))
        return float(max(value, 0.0)), self.reference_grad + curvature

    def value(self, params):
        return self.value_and_grad(params)[0]

    def squared_error_per_output(self, params):
        """Mean squared error of each output at ``params``: shape (k,), no extra pass."""
        step = params - self.reference
        curvature = self.hvp(step)
        k = self.n_outputs
        per_output = self.reference_per_output + k * np.einsum(
            "ij,ij->j", step, self.reference_grad + 0.5 * curvature
        )
        return np.maximum(per_output, 0.0)

    def optimum(self):
        """``(θ*, J*)``: the least-squares solution in working units and its cost."""
        return self.reference, self.reference_value

    def hvp(self, direction):
        """Hessian of J times ``direction`` (n_params, k)."""
        weights, bias = self._split(direction)
        k = self.n_outputs
        t = self.mean_offset @ weights + bias
        out = np.empty_like(direction)
        out[: self.n_features] = (2.0 / k) * (self.gram @ weights + np.outer(self.mean_offset, t))
        if self.fit_intercept:
            out[self.n_features] = (2.0 / k) * t
        return out

    def hessian(self):
        """The per-output Hessian, shape (n_params, n_params) (the same for every output)."""
        d, k = self.n_features, self.n_outputs
        m = self.mean_offset
        p = d + self.fit_intercept
        matrix = np.empty((p, p))
        matrix[:d, :d] = self.gram + np.outer(m, m)
        if self.fit_intercept:
            matrix[:d, d] = m
            matrix[d, :d] = m
            matrix[d, d] = 1.0
        return (2.0 / k) * matrix

    def curvature(self):
        """``L``: the largest eigenvalue of the Hessian."""
        return float(self.eigenvalues[-1])

    def condition_number(self):
        """``λmax / λmin`` of the Hessian in working units (``inf`` if singular)."""
        smallest = float(self.eigenvalues[0])
        return float(self.eigenvalues[-1]) / smallest if smallest > 0 else np.inf
