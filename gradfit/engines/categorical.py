"""A categorical column of many levels kept as blocks: level counts, per-level means, a within-level scatter.

Treatment coding turns a column of ``L`` levels into ``L − 1`` dummy
features; the dense statistics of ``[dummies, x, y]`` would hold an
``(L − 1 + q)²`` scatter (10,000 levels: 800 MB) and every chunk a dense
one-hot block. None of it is needed: with ``z = [x, y]`` (the ``p`` other
features and the ``k`` targets, ``q = p + k`` columns) and row weights ``v``,
everything the squared error asks of the data is in

* ``W_l = Σ_{code = l} v`` (the *level totals*, shape ``(L,)``),
* ``M_l = Σ_{code = l} v z / W_l`` (the *level means*, shape ``(L, q)``),
* ``S_w = Σ v (z − M_code)(z − M_code)ᵀ`` (the *within-level scatter*, ``q × q``),

collected from the level codes by ``np.bincount`` (no one-hot block) and
merged chunk by chunk with Chan, Golub & LeVeque's update per level
(:func:`merge_levels`); the level means are kept about a shift (a chunk's
mean), so that the level effects, their differences, keep their digits for
features far from zero. From them:

* the centred scatter of the features, as an operator (:meth:`LevelBlocks.scatter_product`,
  ``O(L·p)`` a product): with ``B`` the ``L × d`` matrix of rows
  ``[M_l,ₓ − μₓ, e_l − π]`` (``π_l = W_l / W``, the dummies' means),
  ``Sₓₓ = [[S_w,ₓₓ, 0], [0, 0]] + Bᵀ diag(W) B``: within plus between levels,
  no cancellation;
* the least-squares solve by the Schur complement of the diagonal block
  (:meth:`LevelBlocks.solve_normal`, ``O(L·p + p³)``). In the parameters
  ``α_l`` (the level's own intercept: ``b + a_l``, ``a_ref = 0``) and ``w``,
  the normal matrix is the arrowhead ``[[diag(W), C], [Cᵀ, XᵀVX]]`` with
  ``C_l = W_l M_l,ₓ``, whose Schur complement ``XᵀVX − Cᵀ diag(W)⁻¹ C`` is
  exactly ``S_w,ₓₓ``: ``w = S_w,ₓₓ⁻¹ (r_w − Σ_l M_l,ₓ r_l)``, ``α_l = r_l / W_l − M_l,ₓ·w``;
* with a diagonal penalty ``Λ`` (ridge) added, the solve by the Schur
  complement of the level block in the dummy coordinates, which ``Λ`` keeps
  diagonal (:meth:`LevelBlocks.solve_ridge`, ``O(L·p + p³)``):
  ``S = [[S_w,ₓₓ + Λ_w, 0], [0, 0]] + W_ref [m_ref; 1][m_ref; 1]ᵀ
  + Σ_{l ≠ ref} (W_l λ_l / (W_l + λ_l)) [m_l; 1][m_l; 1]ᵀ``, a sum of positive
  semi-definite terms (no cancellation); a level without rows is then
  determined by its penalty. An L1 part is the optimizer's proximal step on
  the engine's products (:class:`BlockStatisticsEngine`);
* the diagonal of ``(X̃ᵀVX̃)⁻¹`` for standard errors (:meth:`LevelBlocks.covariance_diagonal`):
  ``Var(w) ∝ S_w,ₓₓ⁻¹``, ``Var(b) ∝ 1/W_ref + m_refᵀ S_w⁻¹ m_ref`` and
  ``Var(a_l) ∝ 1/W_l + 1/W_ref + (m_l − m_ref)ᵀ S_w⁻¹ (m_l − m_ref)``.

:class:`BlockStatisticsEngine` is the statistics engine on these blocks: its
products and its solve cost ``O(L·p + p²)``, never ``O((L + p)²)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ..errors import DataError
from ..sources.base import single_threaded_blas
from .moments import pooled_mean
from .statistics import StatisticsEngine

#: up to this many parameters the engine's Hessian is formed (from its products) and
#: eigendecomposed; beyond it the extreme eigenvalues come from Lanczos (``eigsh``)
DENSE_PARAMETERS = 200


@dataclass
class LevelMoments:
    """Partial sums of some rows for one categorical column (see the module docstring).

    Attributes
    ----------
    count : int
        Rows read (zero-weight rows included).
    total : float
        ``W = Σ v``.
    level_count : ndarray of shape (L,), int64
    level_total : ndarray of shape (L,)
        ``W_l``.
    level_mean : ndarray of shape (L, q)
        ``M_l − shift`` (zero for a level without weight).
    within : ndarray of shape (q, q)
        ``S_w``.
    shift : ndarray of shape (q,)
        The point the level means are stored about: a chunk's mean. Features
        far from zero (1e8 with a spread of 1) would otherwise leave the level
        means, and the level effects (their differences), only ``ε·1e8`` apart.
    """

    count: int
    total: float
    level_count: np.ndarray
    level_total: np.ndarray
    level_mean: np.ndarray
    within: np.ndarray
    shift: np.ndarray


def chunk_level_moments(codes, X, y, weight, n_levels):
    """The :class:`LevelMoments` of one chunk, from its level codes (no one-hot block).

    Parameters
    ----------
    codes : ndarray of shape (n,), int
        Each row's level, ``0 ≤ code < n_levels``.
    X : ndarray of shape (n, p)
        The other features.
    y : ndarray of shape (n, k)
    weight : ndarray of shape (n,) or None
    n_levels : int

    Returns
    -------
    LevelMoments or None (no rows)

    The level means come from ``bincount`` sums; the rows are then centred on
    their own level's mean (a gather) before the one product ``zᵀz`` (BLAS
    ``syrk``), so the within scatter keeps its digits whatever the spread of
    the levels' means.
    """
    n = codes.shape[0]
    if n == 0:
        return None
    p, k = X.shape[1], y.shape[1]
    z = np.empty((n, p + k))
    if p:  # (a source without other features may hand on an X of no rows as well as no columns)
        z[:, :p] = X
    z[:, p:] = y
    total = float(np.sum(weight)) if weight is not None else float(n)
    shift = (z.sum(axis=0) if weight is None else weight @ z) / total if total > 0 else np.zeros(p + k)
    z -= shift
    if weight is None:
        level_total = np.bincount(codes, minlength=n_levels).astype(np.float64)
    else:
        level_total = np.bincount(codes, weights=weight, minlength=n_levels)
    level_count = np.bincount(codes, minlength=n_levels).astype(np.int64)
    sums = np.empty((n_levels, p + k))
    for j in range(p + k):
        sums[:, j] = np.bincount(codes, weights=z[:, j] if weight is None else z[:, j] * weight, minlength=n_levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        level_mean = np.where(level_total[:, None] > 0, sums / level_total[:, None], 0.0)
    z -= level_mean[codes]
    if weight is not None:
        z *= np.sqrt(weight)[:, None]
    within = z.T @ z
    return LevelMoments(n, total, level_count, level_total, level_mean, within, shift)


def merge_levels(a, b):
    """Chan, Golub & LeVeque's pairwise merge, level by level (``a`` may be reused).

    :func:`gradfit.engines.moments.merge` for many groups at once: each
    level's rows are one group whose scatter is summed into the shared
    within-level scatter, so the cross term is Chan's, vectorized over levels,
    and the means are :func:`~gradfit.engines.moments.pooled_mean`'s.

    With ``δ_l = M_l,b − M_l,a``: ``S_w = S_w,a + S_w,b + Σ_l (W_l,a W_l,b / W_l) δ_l δ_lᵀ``
    over the levels both parts hold, and ``M_l = M_l,a + δ_l W_l,b / W_l``; ``b``'s
    means are first moved to ``a``'s shift (by the difference of two nearby points).
    """
    if a is None:
        return b
    if b is None:
        return a
    if np.any(a.shift != b.shift):
        present = b.level_total > 0
        b.level_mean[present] += b.shift - a.shift
    total = a.level_total + b.level_total
    both = (a.level_total > 0) & (b.level_total > 0)
    only_b = (a.level_total == 0) & (b.level_total > 0)
    delta = b.level_mean[both] - a.level_mean[both]
    factor = a.level_total[both] * b.level_total[both] / total[both]
    a.within += b.within + (delta * factor[:, None]).T @ delta
    # the levels' means pooled as every other merge pools them (engines.moments)
    a.level_mean[both] = pooled_mean(a.level_total[both, None], a.level_mean[both], b.level_total[both, None],
                                     b.level_mean[both])
    a.level_mean[only_b] = b.level_mean[only_b]
    a.level_total = total
    a.level_count += b.level_count
    a.count += b.count
    a.total += b.total
    return a


class LevelBlocks:
    """The block-structured statistics of ``[dense features, one categorical column, y]``.

    Parameters
    ----------
    moments : LevelMoments
        All rows, merged.
    n_dense : int
        ``p``, the features other than the column's dummies.
    dense_index : ndarray of shape (p,), int
        Where those features are among the model's ``d = p + L − 1``.
    level_index : ndarray of shape (L − 1,), int
        Where the dummies of the levels other than ``reference`` are (in level order).
    reference : int
        The level without a dummy.
    dense_names, level_names : list of str, optional
        The other features' names and the levels', for messages.
    """

    def __init__(self, moments, n_dense, dense_index, level_index, reference, dense_names=None, level_names=None):
        self.n_dense = p = int(n_dense)
        self.n_levels = moments.level_total.shape[0]
        self.n_features = p + self.n_levels - 1
        self.n_outputs = moments.level_mean.shape[1] - p
        self.dense_index = np.asarray(dense_index, dtype=np.intp)
        self.level_index = np.asarray(level_index, dtype=np.intp)
        self.reference = int(reference)
        self.others = np.delete(np.arange(self.n_levels), self.reference)
        self.count, self.total = moments.count, moments.total
        self.level_count = moments.level_count
        self.level_total = moments.level_total
        self.level_mean = moments.level_mean
        self.within = moments.within
        self.shift = moments.shift
        relative = self.level_total @ self.level_mean / self.total
        self.mean = self.shift + relative  # μ of z = [x, y]
        self.between = self.level_mean - relative  # rows M_l − μ, from means about the shift
        # the features' part, contiguous: the products of every epoch read it (a strided view is copied by BLAS)
        self.between_features = np.ascontiguousarray(self.between[:, : self.n_dense])
        self.level_mean_features = np.ascontiguousarray(self.level_mean[:, : self.n_dense])
        self.level_share = self.level_total / self.total  # π
        self._within_inverse = None
        self.dense_names = dense_names or [f"feature {j}" for j in self.dense_index]
        self.level_names = level_names or [f"level {j}" for j in range(self.n_levels)]

    # -- the moments of all d features, in the model's order ---------------------

    def feature_mean(self):
        """Means of the ``d`` features (the dummies' are the level shares)."""
        mean = np.empty(self.n_features)
        mean[self.dense_index] = self.mean[: self.n_dense]
        mean[self.level_index] = self.level_share[self.others]
        return mean

    def scatter_diagonal(self):
        """The diagonal of the centred scatter of ``[features, y]``, shape (d + k,)."""
        p = self.n_dense
        total_z = np.diagonal(self.within) + self.level_total @ (self.between * self.between)
        diagonal = np.empty(self.n_features + self.n_outputs)
        diagonal[self.dense_index] = total_z[:p]
        share = self.level_share[self.others]
        diagonal[self.level_index] = self.total * share * (1.0 - share)
        diagonal[self.n_features:] = total_z[p:]
        return diagonal

    def cross(self):
        """``Sₓᵧ``, the centred cross scatter of the features and the targets, shape (d, k)."""
        p = self.n_dense
        weighted = self.level_total[:, None] * self.between[:, p:]  # W_l (M_l,y − μ_y)
        cross = np.empty((self.n_features, self.n_outputs))
        cross[self.dense_index] = self.within[:p, p:] + self.between[:, :p].T @ weighted
        cross[self.level_index] = weighted[self.others] - np.outer(self.level_share[self.others], weighted.sum(axis=0))
        return cross

    def scatter_product(self, vectors):
        """``Sₓₓ V`` for ``V`` of shape (d, m): within plus between levels, ``O(L·p·m)``."""
        p = self.n_dense
        dense = vectors[self.dense_index]
        full = np.zeros((self.n_levels, vectors.shape[1]))
        full[self.others] = vectors[self.level_index]
        # B V: row l is (M_l,x − μ_x)·v_dense + v_l − π·v_levels
        between = self.between_features @ dense + full - self.level_share @ full
        between *= self.level_total[:, None]
        out = np.empty_like(vectors, dtype=np.float64)
        out[self.dense_index] = self.within[:p, :p] @ dense + self.between_features.T @ between
        out[self.level_index] = between[self.others] - np.outer(self.level_share[self.others], between.sum(axis=0))
        return out

    # -- solves ------------------------------------------------------------------

    def _check_levels(self):
        empty = np.flatnonzero(self.level_total <= 0)
        if empty.size:
            raise DataError(f"{self.level_names[int(empty[0])]!r} (a level of the categorical column) has no weight: "
                            "its effect is not determined by the data")

    def within_inverse(self):
        """``S_w,ₓₓ⁻¹`` (p × p), by an eigendecomposition of its equilibrated form.

        Raises
        ------
        DataError
            When a feature is constant within every level, or the features are
            collinear within levels: the level effects and they are not determined apart.
        """
        if self._within_inverse is None:
            self._check_levels()
            p = self.n_dense
            matrix = self.within[:p, :p]
            within = np.diagonal(matrix)
            overall = within + self.level_total @ (self.between[:, :p] * self.between[:, :p])
            # a spread within levels at rounding level of the whole spread: constant within every level
            flat = np.flatnonzero((within <= 0) | (within <= 1e-24 * overall))
            if flat.size:
                hint = ""
                if 2 * self.n_levels > self.count:  # most levels hold one row: a name or a key, not a category
                    hint = (f" ({self.n_levels} levels for {self.count} rows: is the column an identifier? "
                            "leave it out, --exclude)")
                raise DataError(f"{self.dense_names[int(flat[0])]!r} is constant within every level of the "
                                f"categorical column: it and the level effects are not determined apart{hint}")
            if p:
                spread = np.sqrt(within)
                correlation = matrix / np.outer(spread, spread)
                eigenvalues, vectors = scipy.linalg.eigh(correlation)
                if eigenvalues[0] <= eigenvalues[-1] * p * np.finfo(float).eps:
                    raise DataError("the features are collinear within the levels of the categorical column: "
                                    "the coefficients are not determined by the data")
                self._within_inverse = (vectors / eigenvalues) @ vectors.T / np.outer(spread, spread)
            else:
                self._within_inverse = np.zeros((0, 0))
        return self._within_inverse

    def solve_normal(self, rhs, origin=None):
        """``N⁻¹ r`` for the normal matrix ``N = Σ v x̃x̃ᵀ`` of ``x̃ = [x − origin (the d features), 1]``.

        ``rhs`` of shape (d + 1, m), intercept last; ``origin`` (d,) defaults to
        zero. Through the level intercepts ``α`` (see the module docstring),
        about the stored shift ``s``: with ``δ = s − origin`` and
        ``S = [[I, δ], [0, 1]]``, ``N = S N_s Sᵀ``, so ``N⁻¹ = S⁻ᵀ N_s⁻¹ S⁻¹``.
        ``O(L·p·m + p²·m)``.
        """
        inverse = self.within_inverse()
        p, ref = self.n_dense, self.reference
        offset = np.zeros(self.n_features)
        offset[self.dense_index] = self.shift[:p]
        if origin is not None:
            offset -= origin
        r_bias = rhs[self.n_features]
        moved = rhs[: self.n_features] - np.outer(offset, r_bias)  # S⁻¹ r
        r_dense = moved[self.dense_index]
        r_levels = moved[self.level_index]
        # Tᵀ s = r: s_α[others] = r_levels, s_α[ref] = r_b − Σ r_levels
        s_alpha = np.empty((self.n_levels, rhs.shape[1]))
        s_alpha[self.others] = r_levels
        s_alpha[ref] = r_bias - r_levels.sum(axis=0)
        means = self.level_mean_features
        weights = inverse @ (r_dense - means.T @ s_alpha)
        alpha = s_alpha / self.level_total[:, None] - means @ weights
        out = np.empty((self.n_features + 1, rhs.shape[1]))
        out[self.dense_index] = weights
        out[self.level_index] = alpha[self.others] - alpha[ref]
        out[self.n_features] = alpha[ref] - offset @ out[: self.n_features]  # S⁻ᵀ
        return out

    def ridge_complement(self, ridge):
        """The Schur complement ``S`` of the (diagonal) level block of ``N_s + Λ``, shape (p + 1, p + 1).

        In the dummy coordinates ``[a (the L − 1 levels but the reference), w, b]``
        about the stored shift, the normal matrix plus the penalty
        ``Λ = diag(λ_a, λ_w, 0)`` is ``[[D, C], [Cᵀ, E]]`` with the diagonal
        ``D = diag(W_l + λ_l)`` (the dummies never share a row), ``C_l = W_l [m_l; 1]``
        and ``E = [[S_w,ₓₓ + Λ_w, 0], [0, 0]] + Σ_l W_l [m_l; 1][m_l; 1]ᵀ``
        (within plus between levels; ``m_l`` the level means of x about the shift). So

            S = E − Cᵀ D⁻¹ C = [[S_w,ₓₓ + Λ_w, 0], [0, 0]] + W_ref [m_ref; 1][m_ref; 1]ᵀ
                + Σ_{l ≠ ref} (W_l λ_l / (W_l + λ_l)) [m_l; 1][m_l; 1]ᵀ,

        a sum of positive semi-definite terms: no cancellation. ``ridge`` (d,):
        ``λ`` of the ``d`` features in the model's order. ``O(L·p²)``.
        """
        p = self.n_dense
        level_ridge = np.zeros(self.n_levels)
        level_ridge[self.others] = ridge[self.level_index]
        totals = self.level_total
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(totals + level_ridge > 0, totals * level_ridge / (totals + level_ridge), 0.0)
        factor[self.reference] = totals[self.reference]
        ends = np.empty((self.n_levels, p + 1))
        ends[:, :p], ends[:, p] = self.level_mean[:, :p], 1.0
        complement = (ends * factor[:, None]).T @ ends
        complement[:p, :p] += self.within[:p, :p]
        complement[np.arange(p), np.arange(p)] += ridge[self.dense_index]
        return complement

    def _ridge_factor(self, ridge):
        """``(S⁻¹, ends, W, W + λ)`` for :meth:`solve_ridge`, kept for the last ``ridge``.

        ``S⁻¹`` of :meth:`ridge_complement` by its equilibrated eigendecomposition;
        ``ends`` the rows ``[m_l; 1]``, ``W`` the totals and ``W + λ`` the diagonal
        of the levels but the reference (in the order of their dummies).
        """
        key = ridge.tobytes()
        cached = getattr(self, "_ridge_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        empty = np.flatnonzero((self.level_total[self.others] + ridge[self.level_index]) <= 0)
        if empty.size:
            raise DataError(f"{self.level_names[int(self.others[empty[0]])]!r} (a level of the categorical column) "
                            "has no weight: its effect is not determined by the data")
        complement = self.ridge_complement(ridge)
        spread = np.sqrt(np.maximum(np.diagonal(complement), 0.0))
        if np.any(spread == 0):
            raise DataError("the features are collinear within the levels of the categorical column: "
                            "the coefficients are not determined by the data")
        eigenvalues, vectors = scipy.linalg.eigh(complement / np.outer(spread, spread))
        if eigenvalues[0] <= eigenvalues[-1] * complement.shape[0] * np.finfo(float).eps:
            raise DataError("the features are collinear within the levels of the categorical column: "
                            "the coefficients are not determined by the data")
        inverse = (vectors / eigenvalues) @ vectors.T / np.outer(spread, spread)
        p = self.n_dense
        ends = np.empty((self.others.size, p + 1))
        ends[:, :p], ends[:, p] = self.level_mean[self.others, :p], 1.0
        totals = self.level_total[self.others]
        factors = (inverse, ends, totals, totals + ridge[self.level_index])
        self._ridge_cache = (key, factors)
        return factors

    def solve_ridge(self, rhs, ridge, origin=None):
        """``(N + Λ)⁻¹ r``: :meth:`solve_normal` with ``Λ = diag(ridge, 0)`` added to the normal matrix.

        ``ridge`` (d,) or a float: the penalty's diagonal on the ``d`` features
        (never the intercept). By the Schur complement of the diagonal level
        block (:meth:`ridge_complement`): with ``r`` split as ``[r_a, r_rest]``,
        ``t_rest = S⁻¹ (r_rest − Σ_{l ≠ ref} (W_l / (W_l + λ_l)) [m_l; 1] r_l)`` and
        ``t_l = (r_l − W_l [m_l; 1]·t_rest) / (W_l + λ_l)``. A level without rows
        is determined by its penalty alone (``t_l = r_l / λ_l``). ``Λ`` commutes
        with the change of origin (``S Λ Sᵀ = Λ``, the intercept unpenalized),
        so the solve runs about the stored shift as :meth:`solve_normal` does.
        With ``ridge = 0`` it is :meth:`solve_normal`. ``O(L·p·m + p²·m)``.
        """
        ridge = np.broadcast_to(np.asarray(ridge, dtype=np.float64), (self.n_features,))
        if not np.any(ridge):
            return self.solve_normal(rhs, origin)
        inverse, ends, totals, diagonal = self._ridge_factor(np.ascontiguousarray(ridge))
        p = self.n_dense
        offset = np.zeros(self.n_features)
        offset[self.dense_index] = self.shift[:p]
        if origin is not None:
            offset -= origin
        r_bias = rhs[self.n_features]
        moved = rhs[: self.n_features] - np.outer(offset, r_bias)  # S⁻¹ r, as in solve_normal
        r_levels = moved[self.level_index]  # in the order of self.others
        rest = np.empty((p + 1, rhs.shape[1]))
        rest[:p], rest[p] = moved[self.dense_index], r_bias
        rest -= ends.T @ (r_levels * (totals / diagonal)[:, None])
        rest = inverse @ rest
        levels = (r_levels - totals[:, None] * (ends @ rest)) / diagonal[:, None]
        out = np.empty((self.n_features + 1, rhs.shape[1]))
        out[self.dense_index] = rest[:p]
        out[self.level_index] = levels
        out[self.n_features] = rest[p] - offset @ out[: self.n_features]  # S⁻ᵀ
        return out

    def data_rank(self, fit_intercept):
        """The rank of the normal matrix (the penalty left out), for a fit that a penalty determines.

        The nonempty levels' dummies (but the reference's) are determined, each
        by its own rows; the rest is the rank of the Schur complement of their
        block: :meth:`ridge_complement` at ``λ = 0`` with an intercept, and
        without one (the features about zero, the reference's rows uncentred)
        ``S_w,ₓₓ + W_ref M_ref M_refᵀ``.
        """
        p = self.n_dense
        nonempty = int(np.count_nonzero(self.level_total[self.others] > 0))
        if fit_intercept:
            complement = self.ridge_complement(np.zeros(self.n_features))
        else:
            mean = self.level_mean[self.reference, :p] + self.shift[:p]
            complement = self.within[:p, :p] + self.level_total[self.reference] * np.outer(mean, mean)
        if not complement.size:
            return nonempty
        spread = np.sqrt(np.maximum(np.diagonal(complement), 0.0))
        spread[spread == 0] = 1.0
        eigenvalues = scipy.linalg.eigh(complement / np.outer(spread, spread), eigvals_only=True)
        top = max(float(eigenvalues[-1]), 0.0)
        return nonempty + int(np.count_nonzero(eigenvalues > top * complement.shape[0] * np.finfo(float).eps))

    def covariance_diagonal(self, fit_intercept):
        """The diagonal of ``(X̃ᵀVX̃)⁻¹``, intercept first, for ``X̃ = [1, X]`` (or ``X``), in the model's order."""
        inverse = self.within_inverse()
        p, ref = self.n_dense, self.reference
        means = self.level_mean[:, :p]
        offsets = means - means[ref]  # m_l − m_ref (the shift cancels)
        reference_mean = means[ref] + self.shift[:p]  # in the data's units
        quadratic = np.einsum("ij,jk,ik->i", offsets, inverse, offsets)
        features = np.empty(self.n_features)
        features[self.dense_index] = np.diagonal(inverse)
        features[self.level_index] = (1.0 / self.level_total[self.others] + 1.0 / self.level_total[ref]
                                      + quadratic[self.others])
        bias = 1.0 / self.level_total[ref] + reference_mean @ inverse @ reference_mean
        if fit_intercept:
            return np.concatenate([[bias], features])
        # Without the intercept: the Schur complement of its entry in the inverse.
        with_bias = np.empty(self.n_features)  # Cov(θ_j, b)
        with_bias[self.dense_index] = -(inverse @ reference_mean)
        with_bias[self.level_index] = offsets[self.others] @ inverse @ reference_mean - 1.0 / self.level_total[ref]
        return features - with_bias * with_bias / bias


@dataclass
class BlockStatistics:
    """What :class:`~gradfit.engines.statistics.Statistics` holds, with the scatter kept as :class:`LevelBlocks`.

    ``scatter`` is ``None`` (no dense d × d matrix exists); ``mean`` and
    ``scatter_diagonal`` are those of all ``d + k`` columns, so
    :class:`~gradfit.scaling.Scaling` and the moments' users read them as usual.
    """

    n_features: int
    n_outputs: int
    n_samples: int
    sum_weights: float
    mean: np.ndarray
    scatter: None
    scatter_diagonal: np.ndarray
    blocks: LevelBlocks

    @classmethod
    def from_blocks(cls, blocks):
        mean = np.concatenate([blocks.feature_mean(), blocks.mean[blocks.n_dense:]])
        return cls(blocks.n_features, blocks.n_outputs, blocks.count, blocks.total, mean, None,
                   blocks.scatter_diagonal(), blocks)


def accumulate_blocks(source):
    """One pass over a source whose chunks carry level ``codes``: its :class:`BlockStatistics`.

    Raises
    ------
    DataError
        On a NaN or infinite value (named), no rows, or weights summing to zero.
    """
    layout = source.block_layout
    n_levels = layout["n_levels"]

    def per_chunk(chunk):
        _check_chunk(source, layout, chunk)
        return chunk_level_moments(chunk.codes, chunk.X, chunk.y, chunk.sample_weight, n_levels)

    moments = source.reduce(per_chunk, merge_levels)
    return block_statistics(moments, layout, source.describe())


def block_statistics(moments, layout, what):
    """The :class:`BlockStatistics` of merged :class:`LevelMoments` of some rows (``what`` names them).

    Raises
    ------
    DataError
        No rows, or weights summing to zero.
    """
    if moments is None or moments.count == 0:
        raise DataError(f"{what} has no data rows")
    if moments.total == 0:
        raise DataError(f"the sample weights in {what} sum to zero")
    blocks = LevelBlocks(moments, layout["n_dense"], layout["dense_index"], layout["level_index"],
                         layout["reference"], layout["dense_names"], [f"{layout['name']}={level}"
                                                                       for level in layout["levels"]])
    return BlockStatistics.from_blocks(blocks)


def _check_chunk(source, layout, chunk):
    """Refuse a NaN or infinite value, a negative weight, or a level the model does not know, naming where."""
    dense_names = layout["dense_names"]
    for values, names in ((chunk.X, dense_names), (chunk.y, source.target_names)):
        if not np.isfinite(values.sum()):
            bad = ~np.isfinite(values)
            if bad.any():
                row, column = np.argwhere(bad)[0]
                kind = "missing value (NaN)" if np.isnan(values[row, column]) else "infinite value"
                raise DataError(f"{kind} in {source.describe()} at {source.row_position(chunk.row(row))}, "
                                f"column {names[column]!r}")
            raise DataError(f"values in {source.describe()} are too large: their sums overflow float64")
    if chunk.sample_weight is not None:
        bad = ~np.isfinite(chunk.sample_weight) | (chunk.sample_weight < 0)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"sample weight {chunk.sample_weight[row]} in {source.describe()} at "
                            f"{source.row_position(chunk.row(row))} is not a finite non-negative number")
    if chunk.codes.size and chunk.codes.min() < 0:
        row = int(np.argmax(chunk.codes < 0))
        raise DataError(f"{source.describe()} at {source.row_position(chunk.row(row))}, column "
                        f"{layout['name']!r}: no level to fit (missing, or not among the levels learned)")


class _ScaledGram:
    """``G = D Sₓₓ D / W`` as an operator: ``G @ V`` by :meth:`LevelBlocks.scatter_product`."""

    def __init__(self, blocks, inv_scale):
        self.blocks, self.inv_scale = blocks, inv_scale
        self.shape = (blocks.n_features, blocks.n_features)

    def __matmul__(self, vectors):
        matrix = vectors if vectors.ndim == 2 else vectors[:, None]
        out = self.inv_scale[:, None] * self.blocks.scatter_product(self.inv_scale[:, None] * matrix)
        out /= self.blocks.total
        return out if vectors.ndim == 2 else out[:, 0]


class BlockStatisticsEngine(StatisticsEngine):
    """:class:`~gradfit.engines.statistics.StatisticsEngine` on :class:`BlockStatistics`.

    The same value, gradient and Hessian products (the formulas of the base
    class, its ``gram`` an operator: ``O(L·p + p²)`` an epoch); the reference
    point θ̂ and :meth:`solve` by the Schur complement of the level block;
    ``eigenvalues`` holds only the smallest and the largest eigenvalue of the
    Hessian (Lanczos on ``H`` and on ``H⁻¹``) unless the problem is small
    (:data:`DENSE_PARAMETERS`), which is all that curvature and condition number need.

    With a ``penalty`` (its L2 part, ``P = diag(l2 / (k·scale²), 0)`` in
    working units, :mod:`gradfit.penalties`) the engine still computes the
    data term ``J``, but θ̂ is the minimizer of ``J`` plus that L2 part and
    :meth:`solve` applies ``(H + P)⁻¹``: the data alone need not determine
    the coefficients (a level without rows, a feature constant within
    levels). ``smooth_eigenvalues`` are the extreme eigenvalues of ``H + P``;
    ``eigenvalues`` and ``rank`` stay the data term's. An L1 part is not the
    engine's (the training loop's proximal step, :mod:`gradfit.objective`);
    with L1 alone and data that leave directions free, θ̂ is zero (any point
    serves the exact expansion about it).
    """

    def __init__(self, stats, scaling, fit_intercept, penalty=None):
        blocks = stats.blocks
        d, k = stats.n_features, stats.n_outputs
        inv_scale = 1.0 / scaling.scale
        total = stats.sum_weights
        self.stats, self.blocks, self.scaling = stats, blocks, scaling
        self.fit_intercept = fit_intercept
        self.n_features, self.n_outputs = d, k
        self.n_samples = stats.n_samples
        self.gram = _ScaledGram(blocks, inv_scale)
        self.cross = blocks.cross() * inv_scale[:, None] / total
        self.target_moment = stats.scatter_diagonal[d:] / total
        self.mean_offset = (stats.mean[:d] - scaling.center) * inv_scale
        self.target_mean = stats.mean[d:]
        # only the L2 part enters the solve; any penalty lets the data leave directions free
        self.penalty = penalty if penalty is not None and penalty.l2 > 0 else None
        self.penalized = penalty is not None and (penalty.l2 > 0 or penalty.l1 > 0)
        self._solve()

    def _raw_ridge(self):
        """``Λ`` of the normal matrix in the data's units: ``W·l2/2`` on every feature (0 without a penalty).

        ``H + P = (2/(kW)) D̃ (N_c + Λ) D̃`` with ``D̃ = diag(1/scale, 1)``: the
        penalty is on the coefficients in the data's units, so ``Λ`` does not
        depend on the scaling (standardization changes the path, not the optimum).
        """
        return 0.0 if self.penalty is None else 0.5 * self.stats.sum_weights * self.penalty.l2

    def solve(self, rhs, ridge=True):
        """``(H + P)⁻¹ rhs`` (``rhs`` of shape (n_params, m)), exactly, through the level blocks.

        With ``D̃ = diag(1/scale, 1)`` and ``c`` the centre, ``H + P = (2/k)(1/W) D̃ (N_c + Λ) D̃``
        for the normal matrix ``N_c`` of ``[x − c, 1]`` and :meth:`_raw_ridge`'s ``Λ``, so
        ``(H + P)⁻¹ r = (k/2) W D̃⁻¹ (N_c + Λ)⁻¹ D̃⁻¹ r``; without an intercept ``H + P`` is the
        leading block of that, solved by the Schur complement of the last entry of ``(N_c + Λ)⁻¹``.
        ``ridge=False``: the data term's ``H⁻¹`` alone (``P`` left out).
        """
        d, k = self.n_features, self.n_outputs
        scale, center = self.scaling.scale, self.scaling.center
        factor = 0.5 * k * self.stats.sum_weights
        raw_ridge = self._raw_ridge() if ridge else 0.0

        def solve_full(vectors):  # (d + 1, m): K⁻ᵀ N⁻¹ K⁻¹, through N_c of [x − c, 1]
            lifted = np.empty_like(vectors)
            lifted[:d] = scale[:, None] * vectors[:d]
            lifted[d] = vectors[d]
            solved = self.blocks.solve_ridge(lifted, raw_ridge, origin=center)
            solved[:d] *= scale[:, None]
            return solved

        if self.fit_intercept:
            return factor * solve_full(rhs)
        padded = np.vstack([rhs, np.zeros((1, rhs.shape[1]))])
        solved = solve_full(padded)
        unit = np.zeros((d + 1, 1))
        unit[d] = 1.0
        last = solve_full(unit)
        return factor * (solved[:d] - last[:d] * (solved[d] / last[d, 0]))

    def _penalty_hvp(self, direction):
        """``P·direction``: the L2 part's Hessian product (zero on the intercept)."""
        out = np.zeros_like(direction)
        if self.penalty is not None:
            d = self.n_features
            # per output (as hvp): not smooth_hvp, which divides by the columns it is given
            out[:d] = self.penalty.hessian_diagonal(self.scaling.scale, self.n_outputs)[:, None] * direction[:d]
        return out

    def _solve(self):
        """The reference point θ̂: a Newton step from zero, refined once (the eigenvalues are computed when asked)."""
        p, k = self.n_features + self.fit_intercept, self.n_outputs
        reference = np.zeros((p, k))
        try:
            for _ in range(2):
                _, grad = self._expanded(reference)
                reference = reference - self.solve(grad + self._penalty_hvp(reference))
        except DataError:
            if self.penalty is not None:
                raise
            # L1 alone on data that leave directions free, or no penalty on a batch that leaves a level
            # without rows (partial_fit's epochs need no optimum): about zero, the expansion is exact about
            # any point; a complete fit's certificate (certify.BlockReference) solves again and says why
            reference = np.zeros((p, k))
        per_output, grad = self._expanded(reference)
        self.reference = reference
        self.reference_value = float(np.sum(per_output)) / k
        self.reference_per_output = per_output
        self.reference_grad = grad
        self._spectrum = self._smooth_spectrum = None

    def _extreme(self, matvec):
        """The largest eigenvalue of the symmetric operator ``matvec`` (Lanczos, ``eigsh``)."""
        p = self.n_features + self.fit_intercept
        operator = scipy.sparse.linalg.LinearOperator((p, p), matvec=lambda v: matvec(v.reshape(p, 1)).ravel(),
                                                      dtype=np.float64)
        return scipy.sparse.linalg.eigsh(operator, k=1, which="LA", return_eigenvectors=False, v0=np.ones(p))[0]

    @property
    def eigenvalues(self):
        """The data term's Hessian's eigenvalues (ascending): all up to :data:`DENSE_PARAMETERS`, else the extreme two.

        Computed when first asked (each Lanczos run costs some hundred
        products); the smallest by Lanczos on ``H⁻¹``, or 0 when the data alone
        leave a direction free (a penalty determines it).
        """
        if self._spectrum is None:
            p = self.n_features + self.fit_intercept
            if p <= DENSE_PARAMETERS:
                with single_threaded_blas():  # as StatisticsEngine: BLAS threads only slow a small eigh
                    eigenvalues = scipy.linalg.eigh(self.hessian(), eigvals_only=True)
                top = max(float(eigenvalues[-1]), 0.0)
                rank = int(np.count_nonzero(eigenvalues > top * p * np.finfo(float).eps))
            else:
                top = self._extreme(self.hvp)
                try:
                    eigenvalues = np.array([1.0 / self._extreme(lambda v: self.solve(v, ridge=False)), top])
                    rank = p
                except DataError:
                    if not self.penalized:
                        raise
                    eigenvalues, rank = np.array([0.0, top]), self.blocks.data_rank(self.fit_intercept)
            # without a penalty the solve refuses a singular problem (LevelBlocks.within_inverse)
            self._spectrum = (eigenvalues, rank if self.penalized else p)
        return self._spectrum[0]

    @property
    def rank(self):
        """Directions the data term determines."""
        self.eigenvalues  # noqa: B018 - computes the spectrum, rank included
        return self._spectrum[1]

    @property
    def smooth_eigenvalues(self):
        """The eigenvalues of ``H + P`` (the data term and the L2 part), as :attr:`eigenvalues` are ``H``'s."""
        if self.penalty is None:
            return self.eigenvalues
        if self._smooth_spectrum is None:
            p = self.n_features + self.fit_intercept
            if p <= DENSE_PARAMETERS:
                hessian = self.hessian()
                d = self.n_features
                hessian[np.arange(d), np.arange(d)] += self.penalty.hessian_diagonal(self.scaling.scale, self.n_outputs)
                with single_threaded_blas():
                    self._smooth_spectrum = scipy.linalg.eigh(hessian, eigvals_only=True)
            else:
                self._smooth_spectrum = np.array([1.0 / self._extreme(self.solve),
                                                  self._extreme(lambda v: self.hvp(v) + self._penalty_hvp(v))])
        return self._smooth_spectrum

    def hessian(self):
        """The per-output Hessian, formed from its products: only up to :data:`DENSE_PARAMETERS` parameters."""
        p = self.n_features + self.fit_intercept
        if p > DENSE_PARAMETERS:
            raise ValueError(f"{p} parameters: the categorical column's blocks are never formed into a dense Hessian")
        hessian = self.hvp(np.eye(p))
        return 0.5 * (hessian + hessian.T)
