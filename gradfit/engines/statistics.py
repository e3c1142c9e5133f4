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


@dataclass
class Moments:
    """Partial sums of one or more chunks, merged pairwise (:func:`merge`)."""

    count: int
    total: float
    mean: np.ndarray
    scatter: np.ndarray | None
    diagonal: np.ndarray


def chunk_moments(chunk, full, source):
    """The :class:`Moments` of one chunk, centred on the chunk's own mean.

    ``source`` is used only to name a bad value in the error message.
    """
    d = chunk.X.shape[1]
    n = chunk.n_rows
    width = d + chunk.y.shape[1]
    if n == 0:
        return None
    # One float64 copy of the chunk (it fits in cache): z = [X, y], then centred.
    z = np.empty((n, width))
    z[:, :d] = chunk.X
    z[:, d:] = chunk.y
    weight = chunk.sample_weight
    if weight is None:
        total = float(n)
        mean = np.add.reduce(z, axis=0) / n
    else:
        total = float(np.sum(weight))
        if not np.isfinite(total) or np.any(weight < 0):
            check_finite(source, chunk)
        if total == 0:
            return Moments(n, 0.0, np.zeros(width), np.zeros((width, width)) if full else None, np.zeros(width))
        mean = (weight @ z) / total
    if not np.all(np.isfinite(mean)):
        check_finite(source, chunk)  # names the NaN or inf; else the sum overflowed
        _raise_overflow(source, np.argmax(~np.isfinite(mean)))
    z -= mean
    if weight is not None:
        z *= np.sqrt(weight)[:, None]
    if full:
        scatter = z.T @ z
        return Moments(n, total, mean, scatter, np.diagonal(scatter).copy())
    return Moments(n, total, mean, None, np.einsum("ij,ij->j", z, z))


def merge(a, b):
    """Chan, Golub & LeVeque's pairwise merge of two :class:`Moments` (``a`` may be reused)."""
    if a is None or a.total == 0:
        return b if a is None else Moments(a.count + b.count, b.total, b.mean, b.scatter, b.diagonal)
    if b is None:
        return a
    if b.total == 0:
        a.count += b.count
        return a
    total = a.total + b.total
    delta = b.mean - a.mean
    factor = a.total * b.total / total
    a.diagonal += b.diagonal + factor * delta * delta
    if a.scatter is not None:
        a.scatter += b.scatter
        a.scatter += factor * np.outer(delta, delta)
    a.mean = a.mean + delta * (b.total / total)
    a.count += b.count
    a.total = total
    return a


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
    moments = source.reduce(lambda chunk: chunk_moments(chunk, full, source), merge)
    if moments is None or moments.count == 0:
        raise DataError(f"{source.describe()} has no data rows")
    if moments.total == 0:
        raise DataError(f"the sample weights in {source.describe()} sum to zero")
    if not np.all(np.isfinite(moments.diagonal)):
        _raise_overflow(source, int(np.argmax(~np.isfinite(moments.diagonal))))
    diagonal = np.diagonal(moments.scatter).copy() if full else moments.diagonal
    return Statistics(
        source.n_features, source.n_outputs, moments.count, moments.total, moments.mean, moments.scatter, diagonal
    )


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
