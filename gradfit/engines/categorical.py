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
products and its solve cost ``O(L·p + p²)``, never ``O((L + p)²)``. The
``p × p`` Schur complements are factored once (Cholesky where well
conditioned, :class:`_SymmetricFactor`; the ridge one per penalty value) and
every solve, the covariance diagonal and the Lanczos runs for the extreme
eigenvalues reuse the factor.

Where the dense part holds another categorical column's dummies (a second
column of many levels, ``p`` in the thousands), their moments come from
counts (:class:`OneHotLevelMoments`: contingency tables by level, no
``n × p`` product a chunk, no ``L·p²`` one a merge) and the products read
their level means sparse (:class:`_LevelMatrix`): an epoch then costs
``O(nnz + L·p_numeric)``, ``nnz`` the level pairs that occur.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from ..errors import DataError
from ..sources.base import single_threaded_blas
from .moments import pooled_mean
from .statistics import StatisticsEngine, one_hot_codes

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


def chunk_level_moments(codes, X, y, weight, n_levels, one_hot=None):
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
    one_hot : sequence of (int, int), optional
        Spans ``[start, stop)`` of ``X``'s columns that are another categorical
        column's 0/1 dummies: their moments come from counts
        (:func:`chunk_one_hot_moments`, :func:`finish_one_hot`), equal to the
        dense computation up to rounding, without its ``n × q`` product.

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
    if one_hot:
        return finish_one_hot(chunk_one_hot_moments(codes, X, y, weight, n_levels, one_hot), X.shape[1])
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


@dataclass
class OneHotLevelMoments:
    """:class:`LevelMoments` whose dense part holds other categorical columns' dummies, kept sparse.

    Treatment dummies ``D`` (0/1, at most one 1 a row in each span of columns)
    of another categorical column would make every chunk's within scatter a
    dense ``q × q`` product and every merge an ``L·q²`` one. Their moments are
    counts instead: with ``N_l = Σ_{code = l} v D`` (the weighted contingency
    table of the codes' column and a span's column, sparse ``L × m``),

    * their level means are ``N_l / W_l``,
    * their within scatter ``Σ v (D − N_code/W_code)(D − N_code/W_code)ᵀ`` is
      ``diag(Σ v D) − Nᵀ diag(1/W) N`` (of two spans: ``Σ v D_s D_tᵀ − N_sᵀ diag(1/W) N_t``),
      from the totals at the end (:func:`finish_one_hot`): sums of 0/1
      weighted counts, nothing to centre;
    * their within cross scatter with the other columns ``u = [x, y]``,
      ``Σ v D (u − M_code,u)ᵀ``, is centred like ``u``'s own and merged with
      Chan's term ``Σ_l (W_l,a W_l,b / W_l) δD_l δu_lᵀ``, ``δD`` sparse.

    The other columns ``u`` are an ordinary :class:`LevelMoments` (``numeric``).

    Attributes
    ----------
    numeric : LevelMoments
        Of ``u = [the features outside the spans, y]``.
    spans : tuple of (int, int)
        The dummies' columns ``[start, stop)`` among the features ``X``.
    counts : list of scipy.sparse.csr_matrix of shape (L, m_s)
        ``N`` per span.
    cross : list of ndarray of shape (m_s, q_u)
        ``Σ v D (u − M_code,u)ᵀ`` per span.
    pairs : dict of (s, t) -> scipy.sparse matrix of shape (m_s, m_t)
        ``Σ v D_s D_tᵀ`` for spans ``s < t``.
    """

    numeric: LevelMoments
    spans: tuple
    counts: list
    cross: list
    pairs: dict


def chunk_one_hot_moments(codes, X, y, weight, n_levels, spans):
    """The :class:`OneHotLevelMoments` of one chunk: :func:`chunk_level_moments` with ``spans`` of ``X`` sparse.

    ``O(n·(q_u + spans))`` besides the numeric columns' own ``O(n·q_u²)``; no
    ``n × q`` product.
    """
    n = codes.shape[0]
    if n == 0:
        return None
    in_span = np.zeros(X.shape[1], dtype=bool)
    for start, stop in spans:
        in_span[start:stop] = True
    numeric = chunk_level_moments(codes, X[:, ~in_span], y, weight, n_levels)
    # u − shift − M_code,u: the rows centred on their level's mean, as chunk_level_moments centres them
    centred = np.empty((n, numeric.within.shape[0]))
    centred[:, : X.shape[1] - int(in_span.sum())] = X[:, ~in_span]
    centred[:, X.shape[1] - int(in_span.sum()):] = y
    centred -= numeric.shift
    centred -= numeric.level_mean[codes]
    if weight is not None:
        centred *= weight[:, None]
    value = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    dummies, counts, cross = [], [], []
    for start, stop in spans:
        width = stop - start
        dummy = one_hot_codes(X[:, start:stop], f"{start}..{stop - 1}")
        if dummy is None:  # accumulate_blocks refuses a NaN first (_check_chunk), naming it
            raise ValueError(f"the columns {start}..{stop - 1} hold a value that is not finite")
        rows = np.flatnonzero(dummy >= 0)
        dummies.append(dummy)
        counts.append(scipy.sparse.csr_matrix((value[rows], (codes[rows], dummy[rows])), shape=(n_levels, width)))
        cross.append(np.stack([np.bincount(dummy[rows], weights=centred[rows, j], minlength=width)
                               for j in range(centred.shape[1])], axis=1).reshape(width, centred.shape[1]))
    pairs = {}
    for s in range(len(spans)):
        for t in range(s + 1, len(spans)):
            rows = np.flatnonzero((dummies[s] >= 0) & (dummies[t] >= 0))
            pairs[s, t] = scipy.sparse.csr_matrix((value[rows], (dummies[s][rows], dummies[t][rows])),
                                                  shape=(counts[s].shape[1], counts[t].shape[1]))
    return OneHotLevelMoments(numeric, tuple(spans), counts, cross, pairs)


def merge_one_hot(a, b):
    """:func:`merge_levels` for :class:`OneHotLevelMoments` (``a`` may be reused): counts add, cross scatters by Chan."""
    if a is None:
        return b
    if b is None:
        return a
    first, second = a.numeric, b.numeric
    both = (first.level_total > 0) & (second.level_total > 0)
    # δu as merge_levels forms it (b's means moved to a's shift first), on the levels both parts hold
    moved = second.level_mean[both] + (second.shift - first.shift) if np.any(first.shift != second.shift) \
        else second.level_mean[both]
    total = first.level_total[both] + second.level_total[both]
    factor = first.level_total[both] * second.level_total[both] / total
    delta_u = np.zeros_like(first.level_mean)
    delta_u[both] = (moved - first.level_mean[both]) * factor[:, None]
    inverse_a = np.zeros(first.level_total.shape[0])
    inverse_b = np.zeros(first.level_total.shape[0])
    inverse_a[both] = 1.0 / first.level_total[both]
    inverse_b[both] = 1.0 / second.level_total[both]
    for s in range(len(a.spans)):
        # δD = N_b/W_b − N_a/W_a on the levels both hold (sparse)
        delta_d = scipy.sparse.diags(inverse_b) @ b.counts[s] - scipy.sparse.diags(inverse_a) @ a.counts[s]
        a.cross[s] = a.cross[s] + b.cross[s] + np.asarray(delta_d.T @ delta_u)
        a.counts[s] = a.counts[s] + b.counts[s]
    for key, value in b.pairs.items():
        a.pairs[key] = a.pairs[key] + value
    a.numeric = merge_levels(first, second)
    return a


def one_hot_means(moments):
    """``(columns, N/W, P)`` of :class:`OneHotLevelMoments` for :class:`LevelBlocks`' ``one_hot``, sparse.

    The spans' columns, their raw level means and their co-occurrence
    ``P = Σ v D Dᵀ`` (the column totals on the diagonal, the pairs of spans off it).
    """
    totals = moments.numeric.level_total
    inverse = np.zeros_like(totals)
    inverse[totals > 0] = 1.0 / totals[totals > 0]
    columns = np.concatenate([np.arange(start, stop) for start, stop in moments.spans])
    means = scipy.sparse.diags(inverse) @ scipy.sparse.hstack(moments.counts, format="csr")
    blocks = [[None] * len(moments.spans) for _ in moments.spans]
    for s, counts in enumerate(moments.counts):
        blocks[s][s] = scipy.sparse.diags(np.asarray(counts.sum(axis=0)).ravel())
        for t in range(s + 1, len(moments.spans)):
            blocks[s][t], blocks[t][s] = moments.pairs[s, t], moments.pairs[s, t].T
    return columns, scipy.sparse.csr_matrix(means), scipy.sparse.bmat(blocks, format="csr")


def finish_one_hot(moments, n_features):
    """The :class:`LevelMoments` of ``[X (n_features columns, spans included), y]`` from :class:`OneHotLevelMoments`.

    The dummies' level means about their overall mean (``N_l / W_l − π``,
    zero for a level without weight) and their within scatter and cross
    scatter (see :class:`OneHotLevelMoments`), placed among the other columns'.
    """
    numeric = moments.numeric
    n_levels, q_u = numeric.level_mean.shape
    in_span = np.zeros(n_features, dtype=bool)
    for start, stop in moments.spans:
        in_span[start:stop] = True
    q = n_features + q_u - int(np.count_nonzero(~in_span))
    others = np.concatenate([np.flatnonzero(~in_span), np.arange(n_features, q)])  # u's columns among z's
    inverse_total = np.zeros(n_levels)
    present = numeric.level_total > 0
    inverse_total[present] = 1.0 / numeric.level_total[present]
    scaled = [scipy.sparse.diags(inverse_total) @ counts for counts in moments.counts]  # N/W
    shift = np.empty(q)
    level_mean = np.zeros((n_levels, q))
    within = np.empty((q, q))
    shift[others] = numeric.shift
    level_mean[:, others] = numeric.level_mean
    within[np.ix_(others, others)] = numeric.within
    for s, (start, stop) in enumerate(moments.spans):
        column_total = np.asarray(moments.counts[s].sum(axis=0)).ravel()
        shift[start:stop] = column_total / numeric.total if numeric.total > 0 else 0.0
        level_mean[present, start:stop] = scaled[s][present].toarray() - shift[start:stop]
        within[start:stop, others] = moments.cross[s]
        within[others, start:stop] = moments.cross[s].T
        square = np.diag(column_total) - (moments.counts[s].T @ scaled[s]).toarray()
        within[start:stop, start:stop] = 0.5 * (square + square.T)
        for t in range(s + 1, len(moments.spans)):
            begin, end = moments.spans[t]
            block = moments.pairs[s, t].toarray() - (moments.counts[s].T @ scaled[t]).toarray()
            within[start:stop, begin:end] = block
            within[begin:end, start:stop] = block.T
    return LevelMoments(numeric.count, numeric.total, numeric.level_count, numeric.level_total, level_mean,
                        within, shift)


#: a Schur complement whose equilibrated form is estimated better conditioned than this is
#: solved by Cholesky; beyond it by the eigendecomposition (whose check names collinear features)
CHOLESKY_CONDITION = 1e8
#: levels (or unit vectors) per block of the covariance diagonal's triangular solves: bounded memory
QUADRATIC_BLOCK = 512
#: factored ridge complements kept by :meth:`LevelBlocks._ridge_factor` (one per penalty value)
RIDGE_FACTORS = 4

COLLINEAR = ("the features are collinear within the levels of the categorical column: "
             "the coefficients are not determined by the data")


class _SymmetricFactor:
    """``S⁻¹`` of a symmetric positive definite ``S`` (p × p), factored once and reused by every solve.

    ``S = D C D`` with ``D = diag(√diag S)`` (equilibrated: ``C`` has a unit
    diagonal). Where LAPACK's estimate of ``κ₁(C)`` (``dpocon``, from the
    Cholesky factor ``C = LLᵀ``) is below :data:`CHOLESKY_CONDITION`, the
    solves use ``L`` (``O(p³/3)`` once, ``O(p²)`` a vector); otherwise, as
    before, the eigendecomposition ``C = V diag(λ) Vᵀ``, which refuses a
    matrix with ``λ_min ≤ λ_max·p·ε`` (:data:`COLLINEAR`). Since
    ``κ₂ ≤ p·κ₁``, a matrix the Cholesky path takes is far from that limit.

    Parameters
    ----------
    matrix : ndarray of shape (p, p)
        With a positive diagonal.
    """

    def __init__(self, matrix):
        self.size = p = matrix.shape[0]
        self.spread = np.sqrt(np.diagonal(matrix))
        self.cholesky = self.eigen = None
        if not p:
            return
        correlation = matrix / np.outer(self.spread, self.spread)
        try:
            lower, _ = scipy.linalg.cho_factor(correlation, lower=True, check_finite=False)
            norm = float(np.max(np.sum(np.abs(correlation), axis=0)))
            rcond, info = scipy.linalg.lapack.dpocon(lower, norm, uplo="L")
            if info == 0 and rcond * CHOLESKY_CONDITION > 1.0:
                self.cholesky = np.asfortranarray(np.tril(lower))  # LAPACK's order: no copy a solve
                return
        except np.linalg.LinAlgError:
            pass
        eigenvalues, vectors = scipy.linalg.eigh(correlation)
        if eigenvalues[0] <= eigenvalues[-1] * p * np.finfo(float).eps:
            raise DataError(COLLINEAR)
        self.eigen = (eigenvalues, vectors)

    def solve(self, rhs):
        """``S⁻¹ rhs``, ``rhs`` of shape (p, m)."""
        if not self.size:
            return np.zeros_like(rhs, dtype=np.float64)
        scaled = rhs / self.spread[:, None]
        if self.cholesky is not None:
            solved = scipy.linalg.cho_solve((self.cholesky, True), scaled, check_finite=False)
        else:
            eigenvalues, vectors = self.eigen
            solved = vectors @ ((vectors.T @ scaled) / eigenvalues[:, None])
        return solved / self.spread[:, None]

    def quadratic(self, vectors):
        """``diag(Vᵀ S⁻¹ V)`` for ``V`` of shape (p, m), in blocks of :data:`QUADRATIC_BLOCK` columns.

        ``‖L⁻¹ D⁻¹ v‖²`` (a triangular solve, BLAS ``trsm``: ``p²`` flops a
        column, half a product with ``S⁻¹``) or ``‖Λ^{-1/2} Vᵀ D⁻¹ v‖²``.
        """
        out = np.zeros(vectors.shape[1])
        if not self.size:
            return out
        for start in range(0, vectors.shape[1], QUADRATIC_BLOCK):
            scaled = vectors[:, start:start + QUADRATIC_BLOCK] / self.spread[:, None]
            if self.cholesky is not None:
                half = scipy.linalg.solve_triangular(self.cholesky, scaled, lower=True, check_finite=False)
            else:
                eigenvalues, basis = self.eigen
                half = (basis.T @ scaled) / np.sqrt(eigenvalues)[:, None]
            out[start:start + QUADRATIC_BLOCK] = np.einsum("ij,ij->j", half, half)
        return out

    def half_inverse(self):
        """``H`` with ``HᵀH = S⁻¹``, shape (p, p): ``L⁻¹ D⁻¹`` (one triangular solve, ``p³/3``) or ``Λ^{-1/2} Vᵀ D⁻¹``.

        For many quadratic forms with sparse vectors: ``vᵀ S⁻¹ v = ‖H v‖²``
        costs ``p·nnz(v)`` where :meth:`quadratic` costs ``p²``.
        """
        if getattr(self, "_half_inverse", None) is None:
            if self.cholesky is not None:
                half = scipy.linalg.solve_triangular(self.cholesky, np.eye(self.size), lower=True, check_finite=False)
            else:
                eigenvalues, basis = self.eigen
                half = basis.T / np.sqrt(eigenvalues)[:, None]
            self._half_inverse = half / self.spread[None, :]
        return self._half_inverse

    def inverse_diagonal(self):
        """``diag(S⁻¹)``, shape (p,)."""
        if getattr(self, "_half_inverse", None) is not None:
            return np.einsum("ij,ij->j", self._half_inverse, self._half_inverse)
        out = np.empty(self.size)
        for start in range(0, self.size, QUADRATIC_BLOCK):
            units = np.zeros((self.size, min(QUADRATIC_BLOCK, self.size - start)))
            units[np.arange(start, start + units.shape[1]), np.arange(units.shape[1])] = 1.0
            out[start:start + units.shape[1]] = self.quadratic(units)
        return out

    def inverse(self):
        """``S⁻¹`` as a matrix, shape (p, p)."""
        if self.eigen is not None:
            eigenvalues, vectors = self.eigen
            return (vectors / eigenvalues) @ vectors.T / np.outer(self.spread, self.spread)
        return self.solve(np.eye(self.size))


class _LevelMatrix:
    """An ``L × p`` matrix of per-level values (level means of the features), for its products.

    ``M = P + U Cᵀ``: ``P`` holds the ``columns`` (other categorical
    columns' dummies) as a sparse ``R`` (their raw level means ``N_l / W_l``:
    at most one nonzero a row of the data) and the rest dense; ``U Cᵀ`` (a
    few columns) moves the sparse ones to where the matrix is stored about
    (the shift, the overall mean). Products cost ``O(nnz + L·(p − |J|))``
    instead of ``O(L·p)``; without sparse columns it is the dense matrix.
    """

    def __init__(self, dense, columns=None, sparse=None, low=None, high=None):
        self.p = dense.shape[1]
        self.columns = np.zeros(0, dtype=np.intp) if columns is None else np.asarray(columns, dtype=np.intp)
        self.rest = np.setdiff1d(np.arange(self.p), self.columns)
        self.dense = np.ascontiguousarray(dense[:, self.rest]) if self.columns.size else dense
        self.sparse, self.low, self.high = sparse, low, high  # R (L, |J|) csr; U (L, r); C (|J|, r)

    def rows(self, index):
        """The matrix of the rows ``index``."""
        if not self.columns.size:
            return _LevelMatrix(self.dense[index])
        out = _LevelMatrix.__new__(_LevelMatrix)
        out.p, out.columns, out.rest = self.p, self.columns, self.rest
        out.dense, out.sparse = self.dense[index], self.sparse[index]
        out.low, out.high = self.low[index], self.high
        return out

    def dot(self, vectors):
        """``M V`` for ``V`` of shape (p, m)."""
        if not self.columns.size:
            return self.dense @ vectors
        part = vectors[self.columns]
        return self.dense @ vectors[self.rest] + self.sparse @ part + self.low @ (self.high.T @ part)

    def tdot(self, vectors):
        """``Mᵀ V`` for ``V`` of shape (L, m)."""
        if not self.columns.size:
            return self.dense.T @ vectors
        out = np.empty((self.p, vectors.shape[1]))
        out[self.rest] = self.dense.T @ vectors
        out[self.columns] = self.sparse.T @ vectors + self.high @ (self.low.T @ vectors)
        return out

    def gram(self, weights):
        """``Mᵀ diag(f) M``, shape (p, p)."""
        if not self.columns.size:
            return (self.dense * weights[:, None]).T @ self.dense
        rest, columns = self.rest, self.columns
        weighted_dense = self.dense * weights[:, None]
        weighted_low = self.low * weights[:, None]
        out = np.empty((self.p, self.p))
        out[np.ix_(rest, rest)] = weighted_dense.T @ self.dense
        # the sparse columns with everything: Mⱼᵀ F M = Rᵀ F M + C (Uᵀ F M)
        with_all = np.empty((columns.size, self.p))
        with_all[:, rest] = np.asarray(self.sparse.T @ weighted_dense)
        with_all[:, columns] = (self.sparse.T @ self.sparse.multiply(weights[:, None]).tocsr()).toarray()
        low_all = np.empty((self.low.shape[1], self.p))  # Uᵀ F P
        low_all[:, rest] = weighted_low.T @ self.dense
        low_all[:, columns] = np.asarray(self.sparse.T @ weighted_low).T
        with_all[:, columns] += low_all[:, columns].T @ self.high.T + self.high @ (weighted_low.T @ self.low) @ self.high.T
        with_all += self.high @ low_all
        out[columns] = with_all
        out[np.ix_(rest, columns)] = with_all[:, rest].T
        return out


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
    one_hot : tuple (columns, means, cooccurrence), optional
        Which of the ``p`` features are other categorical columns' dummies
        (``columns``, int), their raw level means ``R = N_l / W_l`` (``means``,
        scipy.sparse ``L × |columns|``) and ``P = Σ v D Dᵀ`` (``cooccurrence``,
        scipy.sparse, ``|columns|²``), as :func:`one_hot_means` gives them: the
        products, solves and ridge complement then read them sparse
        (:class:`_LevelMatrix`, and the dummies' within scatter as
        ``P − Rᵀ diag(W) R``), ``O(nnz)`` instead of ``O(L·|columns|)`` and ``O(|columns|²)``.
    """

    def __init__(self, moments, n_dense, dense_index, level_index, reference, dense_names=None, level_names=None,
                 one_hot=None):
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
        self._level_means(one_hot)
        self._within_inverse = self._within_factor = None
        self._ridge_cache = {}  # ridge (bytes) -> its factored complement (:meth:`_ridge_factor`)
        self.dense_names = dense_names or [f"feature {j}" for j in self.dense_index]
        self.level_names = level_names or [f"level {j}" for j in range(self.n_levels)]

    def _level_means(self, one_hot):
        """The operators of ``M − μ`` (``_between``) and ``M − shift`` (``_means``) on the features, sparse where dummies."""
        p = self.n_dense
        self._one_hot = None
        if one_hot is None:
            self._between, self._means = _LevelMatrix(self.between_features), _LevelMatrix(self.level_mean_features)
            self._within_features = np.ascontiguousarray(self.within[:p, :p])  # a strided view is copied by BLAS
            return
        columns, means, cooccurrence = one_hot
        columns = np.asarray(columns, dtype=np.intp)
        means = scipy.sparse.csr_matrix(means)
        rest = np.setdiff1d(np.arange(p), columns)
        self._one_hot = (columns, rest, means, scipy.sparse.csr_matrix(cooccurrence),
                         np.ascontiguousarray(self.within[np.ix_(rest, rest)]),
                         np.ascontiguousarray(self.within[np.ix_(rest, columns)]))
        present = (self.level_total > 0).astype(np.float64)
        relative = self.mean[columns] - self.shift[columns]
        # stored: M − shift on the levels with weight (0 on the others), M − μ = that − relative
        self._means = _LevelMatrix(self.level_mean_features, columns, means, present[:, None],
                                   -self.shift[columns][:, None])
        self._between = _LevelMatrix(self.between_features, columns, means, np.column_stack([present, np.ones_like(present)]),
                                     np.column_stack([-self.shift[columns], -relative]))

    def _within_product(self, vectors):
        """``S_w,ₓₓ V`` for ``V`` of shape (p, m); the dummies' block as ``P V − Rᵀ (W ⊙ R V)``."""
        if self._one_hot is None:
            return self._within_features @ vectors
        columns, rest, means, cooccurrence, rest_rest, rest_columns = self._one_hot
        part = vectors[columns]
        out = np.empty_like(vectors, dtype=np.float64)
        out[rest] = rest_rest @ vectors[rest] + rest_columns @ part
        out[columns] = rest_columns.T @ vectors[rest] + cooccurrence @ part \
            - means.T @ (self.level_total[:, None] * (means @ part))
        return out

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
        """``Sₓₓ V`` for ``V`` of shape (d, m): within plus between levels, ``O(L·p·m)`` (sparse dummies: ``O(nnz·m)``)."""
        dense = vectors[self.dense_index]
        full = np.zeros((self.n_levels, vectors.shape[1]))
        full[self.others] = vectors[self.level_index]
        # B V: row l is (M_l,x − μ_x)·v_dense + v_l − π·v_levels
        between = self._between.dot(dense) + full - self.level_share @ full
        between *= self.level_total[:, None]
        out = np.empty_like(vectors, dtype=np.float64)
        out[self.dense_index] = self._within_product(dense) + self._between.tdot(between)
        out[self.level_index] = between[self.others] - np.outer(self.level_share[self.others], between.sum(axis=0))
        return out

    # -- solves ------------------------------------------------------------------

    def _check_levels(self):
        empty = np.flatnonzero(self.level_total <= 0)
        if empty.size:
            raise DataError(f"{self.level_names[int(empty[0])]!r} (a level of the categorical column) has no weight: "
                            "its effect is not determined by the data")

    def within_inverse(self):
        """``S_w,ₓₓ⁻¹`` (p × p), from :meth:`within_factor` (formed when asked; the solves use the factor).

        Raises
        ------
        DataError
            When a feature is constant within every level, or the features are
            collinear within levels: the level effects and they are not determined apart.
        """
        if self._within_inverse is None:
            self._within_inverse = self.within_factor().inverse()
        return self._within_inverse

    def within_factor(self):
        """``S_w,ₓₓ`` factored once (:class:`_SymmetricFactor`): every solve and the covariance diagonal reuse it.

        Raises
        ------
        DataError
            As :meth:`within_inverse`.
        """
        if self._within_factor is None:
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
            self._within_factor = _SymmetricFactor(np.array(matrix))
        return self._within_factor

    def solve_normal(self, rhs, origin=None):
        """``N⁻¹ r`` for the normal matrix ``N = Σ v x̃x̃ᵀ`` of ``x̃ = [x − origin (the d features), 1]``.

        ``rhs`` of shape (d + 1, m), intercept last; ``origin`` (d,) defaults to
        zero. Through the level intercepts ``α`` (see the module docstring),
        about the stored shift ``s``: with ``δ = s − origin`` and
        ``S = [[I, δ], [0, 1]]``, ``N = S N_s Sᵀ``, so ``N⁻¹ = S⁻ᵀ N_s⁻¹ S⁻¹``.
        ``O(L·p·m + p²·m)``.
        """
        factor = self.within_factor()
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
        means = self._means
        weights = factor.solve(r_dense - means.tdot(s_alpha))
        alpha = s_alpha / self.level_total[:, None] - means.dot(weights)
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
        complement = np.empty((p + 1, p + 1))  # [m_l; 1]ᵀ diag(factor) [m_l; 1], sparse where dummies
        complement[:p, :p] = self._means.gram(factor)
        complement[:p, p] = complement[p, :p] = self._means.tdot(factor[:, None])[:, 0]
        complement[p, p] = factor.sum()
        complement[:p, :p] += self.within[:p, :p]
        complement[np.arange(p), np.arange(p)] += ridge[self.dense_index]
        return complement

    def _ridge_factor(self, ridge):
        """``(S, ends, W, W + λ)`` for :meth:`solve_ridge`: ``S`` of :meth:`ridge_complement` factored.

        ``S`` as a :class:`_SymmetricFactor`, kept per ``ridge`` (the last
        :data:`RIDGE_FACTORS` values: a Newton iteration's damping or an alpha
        path asks for several); ``ends`` the rows ``m_l`` (a :class:`_LevelMatrix`;
        the ends' last entry is 1), ``W`` the totals
        and ``W + λ`` the diagonal of the levels but the reference (in the order of their dummies).
        """
        key = ridge.tobytes()
        cached = self._ridge_cache.get(key)
        if cached is not None:
            return cached
        empty = np.flatnonzero((self.level_total[self.others] + ridge[self.level_index]) <= 0)
        if empty.size:
            raise DataError(f"{self.level_names[int(self.others[empty[0]])]!r} (a level of the categorical column) "
                            "has no weight: its effect is not determined by the data")
        complement = self.ridge_complement(ridge)
        if np.any(np.diagonal(complement) <= 0):
            raise DataError(COLLINEAR)
        factor = _SymmetricFactor(complement)
        if getattr(self, "_ridge_ends", None) is None:  # the same for every ridge
            self._ridge_ends = self._means.rows(self.others)
        totals = self.level_total[self.others]
        factors = (factor, self._ridge_ends, totals, totals + ridge[self.level_index])
        if len(self._ridge_cache) >= RIDGE_FACTORS:
            self._ridge_cache.pop(next(iter(self._ridge_cache)))  # the oldest
        self._ridge_cache[key] = factors
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
        factor, ends, totals, diagonal = self._ridge_factor(np.ascontiguousarray(ridge))
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
        shrunk = r_levels * (totals / diagonal)[:, None]
        rest[:p] -= ends.tdot(shrunk)  # [m_l; 1]ᵀ, the last entry 1
        rest[p] -= shrunk.sum(axis=0)
        rest = factor.solve(rest)
        levels = (r_levels - totals[:, None] * (ends.dot(rest[:p]) + rest[p])) / diagonal[:, None]
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
        """The diagonal of ``(X̃ᵀVX̃)⁻¹``, intercept first, for ``X̃ = [1, X]`` (or ``X``), in the model's order.

        The quadratic forms ``(m_l − m_ref)ᵀ S_w⁻¹ (m_l − m_ref)`` by triangular
        solves with the factor of :meth:`within_factor`, in blocks of levels
        (``O(L·p²)`` BLAS flops, ``O(p·block)`` memory).
        """
        factor = self.within_factor()
        p, ref = self.n_dense, self.reference
        means = self.level_mean[:, :p]
        offsets = means[self.others] - means[ref]  # m_l − m_ref (the shift cancels)
        reference_mean = means[ref] + self.shift[:p]  # in the data's units
        quadratic = factor.quadratic(offsets.T) if self._one_hot is None else self._sparse_quadratic(factor)
        features = np.empty(self.n_features)
        features[self.dense_index] = factor.inverse_diagonal()
        features[self.level_index] = 1.0 / self.level_total[self.others] + 1.0 / self.level_total[ref] + quadratic
        solved_mean = factor.solve(reference_mean[:, None])[:, 0]  # S_w⁻¹ m_ref
        bias = 1.0 / self.level_total[ref] + reference_mean @ solved_mean
        if fit_intercept:
            return np.concatenate([[bias], features])
        # Without the intercept: the Schur complement of its entry in the inverse.
        with_bias = np.empty(self.n_features)  # Cov(θ_j, b)
        with_bias[self.dense_index] = -solved_mean
        with_bias[self.level_index] = offsets @ solved_mean - 1.0 / self.level_total[ref]
        return features - with_bias * with_bias / bias

    def _sparse_quadratic(self, factor):
        """``(m_l − m_ref)ᵀ S_w⁻¹ (m_l − m_ref)`` for the levels but the reference, with the dummies' means sparse.

        ``‖H (m_l − m_ref)‖²`` (:meth:`_SymmetricFactor.half_inverse`): the
        dummies' part of ``m_l − m_ref`` is ``R_l − R_ref`` (every level has
        weight here), so ``H_J Rᵀ`` costs ``p·nnz`` and the numeric part ``p·p_numeric`` a level.
        """
        columns, rest, means, *_ = self._one_hot
        half = factor.half_inverse()
        ref = self.reference
        numeric = self.level_mean[:, rest]
        reference_part = half[:, rest] @ numeric[ref] + np.asarray(means[ref] @ half[:, columns].T).ravel()
        half_columns_t = np.ascontiguousarray(half[:, columns].T)  # (|J|, p): R_block @ it is a sparse-dense product
        out = np.empty(self.others.size)
        for start in range(0, self.others.size, QUADRATIC_BLOCK):
            levels = self.others[start:start + QUADRATIC_BLOCK]
            image = numeric[levels] @ half[:, rest].T + np.asarray(means[levels] @ half_columns_t)
            image -= reference_part
            out[start:start + levels.size] = np.einsum("ij,ij->i", image, image)
        return out


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
    # other categorical columns' dummies among the dense features: their moments from counts
    spans = tuple(tuple(span) for span in layout.get("one_hot", ()))

    def per_chunk(chunk):
        _check_chunk(source, layout, chunk)
        if spans:
            return chunk_one_hot_moments(chunk.codes, chunk.X, chunk.y, chunk.sample_weight, n_levels, spans)
        return chunk_level_moments(chunk.codes, chunk.X, chunk.y, chunk.sample_weight, n_levels)

    moments = source.reduce(per_chunk, merge_one_hot if spans else merge_levels)
    one_hot = None
    if spans and moments is not None:
        one_hot = one_hot_means(moments)
        moments = finish_one_hot(moments, layout["n_dense"])
    return block_statistics(moments, layout, source.describe(), one_hot=one_hot)


def block_statistics(moments, layout, what, one_hot=None):
    """The :class:`BlockStatistics` of merged :class:`LevelMoments` of some rows (``what`` names them).

    ``one_hot``: :class:`LevelBlocks`' (other categorical columns' dummies read sparse), from :func:`one_hot_means`.

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
                                                                       for level in layout["levels"]],
                         one_hot=one_hot)
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
