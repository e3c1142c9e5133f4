"""Regularization paths of the squared error on a categorical column's level blocks.

:mod:`gradfit.alpha_path` solves every fold's path from the dense ``d × d``
Gram matrix; with a categorical column of ``L`` levels kept as level codes
(:mod:`gradfit.engines.categorical`) that matrix, ``(L − 1 + p)²``, is never
formed. The same problem in the same units,

    F(c) = cᵀGc − 2hᵀc + q + alpha · (l1_ratio‖c‖₁ + (1 − l1_ratio)/2 ‖c‖²),
    intercept = μ_y − μₓ·c   (0 without an intercept),

is solved here from the :class:`~gradfit.engines.categorical.LevelBlocks`
alone. With ``π_l = W_l / W`` the level shares, ``o_l = M_l,ₓ − m`` the level
means of the ``p`` other features about ``m`` (their mean ``μₓ`` with an
intercept, zero without), and for coefficients ``c = [c_x, c_l]`` (``c_ref = 0``)
the level values ``u_l = c_l + o_l·c_x`` and ``ū = Σ π_l u_l`` (0 without an
intercept), a row of level ``l`` predicts ``(x − M_l,ₓ)·c_x + u_l − ū``, so

    (Gc)_x = S_w,ₓₓ c_x / W + Σ_l π_l o_l (u_l − ū),    (Gc)_l = π_l (u_l − ū):

one move of a level's coefficient costs ``O(p)``, one of a dense feature's
``O(L)`` (:func:`_block_coordinate_descent`), so a sweep costs ``O(L·p + p²)``.

* L2: ``(2G + alpha I) c = 2h`` is ``(N + (alpha W/2) I) c = Sₓᵧ`` for the
  normal matrix of the rows, solved exactly at each alpha by the Schur
  complement of the level block (:meth:`~gradfit.engines.categorical.LevelBlocks.solve_ridge`).
* L1 and elastic net: the cyclic coordinate descent of :mod:`gradfit.alpha_path`
  (the same coordinates in the same order, the same covariance updates and the
  same duality gap, to :data:`~gradfit.alpha_path.PATH_TOL`), with ``Gc`` kept
  through the level values above instead of the Gram's columns.

The validation error of a fold (:func:`block_validation_mse`) is the exact
quadratic form of its own level moments: for a row of level ``l`` the
residual is ``−(z − M_l)·e + m_l`` with ``e = [c_x; −1]`` and
``m_l = M_l,ᵧ − M_l,ₓ·c_x − c_l − b``, so

    Σ v r² = eᵀ S_w e + Σ_l W_l m_l²,

the within-level scatter ``S_w`` and the level means as
:class:`~gradfit.engines.categorical.LevelMoments` keep them (centred: no
``Σ v y²`` minus a square).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .alpha_path import (
    MAX_SWEEPS,
    PATH_TOL,
    Path,
    Quadratic,
    solve_path,
    validation_mse,
    warm_path,
)
from .fitting import on_codes
from .jit import lazily_compiled


@dataclass
class BlockQuadratic:
    """:class:`~gradfit.alpha_path.Quadratic` of a set of rows, its Gram kept as level blocks.

    Attributes
    ----------
    blocks : LevelBlocks
    cross : ndarray of shape (d, k)
        ``h``.
    target : ndarray of shape (k,)
        ``q``.
    mean_x : ndarray of shape (d,)
    mean_y : ndarray of shape (k,)
    fit_intercept : bool
    share : ndarray of shape (L,)
        ``π``.
    offset : ndarray of shape (L, p)
        ``o_l = M_l,ₓ − m``.
    within : ndarray of shape (p, p)
        ``S_w,ₓₓ / W``.
    between : ndarray of shape (p, p)
        ``Σ_l π_l o_l o_lᵀ``.
    offset_mean : ndarray of shape (p,)
        ``Σ_l π_l o_l`` (zero up to rounding with an intercept, ``μₓ`` without).
    """

    blocks: object
    cross: np.ndarray
    target: np.ndarray
    mean_x: np.ndarray
    mean_y: np.ndarray
    fit_intercept: bool
    share: np.ndarray
    offset: np.ndarray
    within: np.ndarray
    between: np.ndarray
    offset_mean: np.ndarray

    @classmethod
    def from_statistics(cls, stats, fit_intercept):
        """From :class:`~gradfit.engines.categorical.BlockStatistics`, as ``Quadratic.from_statistics`` from dense ones."""
        blocks = stats.blocks
        d, p, total = stats.n_features, blocks.n_dense, stats.sum_weights
        cross = blocks.cross() / total
        target = stats.scatter_diagonal[d:] / total
        mean_x, mean_y = stats.mean[:d], stats.mean[d:]
        if fit_intercept:
            offset = blocks.between[:, :p]  # M_l − μ, from the means about the shift (no cancellation)
        else:
            offset = blocks.level_mean[:, :p] + blocks.shift[:p]
            cross = cross + np.outer(mean_x, mean_y)
            target = target + mean_y * mean_y
        offset = np.ascontiguousarray(offset)
        share = blocks.level_share
        return cls(blocks, np.ascontiguousarray(cross), target, mean_x, mean_y, fit_intercept, share, offset,
                   np.ascontiguousarray(blocks.within[:p, :p] / total), (offset * share[:, None]).T @ offset,
                   share @ offset)

    def diagonal(self):
        """The Gram's diagonal, shape (d,)."""
        blocks = self.blocks
        out = np.empty(blocks.n_features)
        dense = np.diagonal(self.within) + np.diagonal(self.between)
        share = self.share[blocks.others]
        if self.fit_intercept:
            dense = dense - self.offset_mean**2
            out[blocks.level_index] = share * (1.0 - share)
        else:
            out[blocks.level_index] = share
        out[blocks.dense_index] = dense
        return out

    def intercepts(self, coefs):
        """Intercepts of ``coefs`` (..., k, d): shape (..., k)."""
        if not self.fit_intercept:
            return np.zeros(coefs.shape[:-1])
        return self.mean_y - coefs @ self.mean_x


def quadratic_of(stats, fit_intercept):
    """The problem of ``stats``: :class:`BlockQuadratic` on blocks, else :class:`~gradfit.alpha_path.Quadratic`."""
    if on_codes(stats):
        return BlockQuadratic.from_statistics(stats, fit_intercept)
    return Quadratic.from_statistics(stats, fit_intercept)


def path_of(quadratic, alphas, l1_ratio, tol=PATH_TOL, max_sweeps=MAX_SWEEPS):
    """:func:`block_path` or :func:`~gradfit.alpha_path.solve_path`, for ``quadratic``'s kind."""
    if isinstance(quadratic, BlockQuadratic):
        return block_path(quadratic, alphas, l1_ratio, tol, max_sweeps)
    return solve_path(quadratic, alphas, l1_ratio, tol, max_sweeps)


def validation_of(stats, coefs, intercepts):
    """:func:`block_validation_mse` or :func:`~gradfit.alpha_path.validation_mse`, for ``stats``' kind."""
    if on_codes(stats):
        return block_validation_mse(stats.blocks, coefs, intercepts)
    return validation_mse(stats, coefs, intercepts)


def block_path(quadratic, alphas, l1_ratio, tol=PATH_TOL, max_sweeps=MAX_SWEEPS):
    """The :class:`~gradfit.alpha_path.Path` of ``alphas`` (decreasing) on the blocks.

    L2 (``l1_ratio = 0``): :func:`block_ridge_path`, exact; else :func:`block_enet_path`.
    """
    alphas = np.asarray(alphas, dtype=float)
    shape = (alphas.shape[0], quadratic.cross.shape[1])
    if l1_ratio == 0:
        coefs = block_ridge_path(quadratic, alphas)
        return Path(coefs, quadratic.intercepts(coefs), np.zeros(shape), np.zeros(shape, dtype=int),
                    np.ones(shape, dtype=bool))
    return block_enet_path(quadratic, alphas, l1_ratio, tol, max_sweeps)


def block_ridge_path(quadratic, alphas):
    """L2 solutions ``(2G + alpha I)⁻¹ 2h`` at every alpha, by ``LevelBlocks.solve_ridge``: shape (n_alphas, k, d).

    ``(2G + alpha I) c = 2h`` times ``W/2`` is ``(S + Λ) c = W h`` with
    ``Λ = (alpha W/2) I``, ``S = W G``. With an intercept ``S`` is the scatter
    about the means: the normal matrix of ``[x − μₓ, 1]`` is ``[[S, 0], [0, W]]``,
    so ``solve_ridge`` of ``[W h; 0]`` (the target centred) about ``origin = μₓ``
    gives ``c`` (and 0). Without, ``S`` is the leading block of the normal matrix
    ``N`` of ``[x, 1]`` about zero: ``c = t − u·(s/σ)`` with ``[t; s] = (N + Λ)⁻¹ [W h; 0]``
    and ``[u; σ] = (N + Λ)⁻¹ [0; 1]`` (the Schur complement of the intercept's entry).
    """
    blocks = quadratic.blocks
    d, k = quadratic.cross.shape
    total = blocks.total
    coefs = np.empty((len(alphas), k, d))
    # alpha = 0 (given by the user): a level without rows in these rows is not determined by them; as the
    # dense path leaves such directions at zero, its dummy alone gets a unit ridge (its right-hand side is 0)
    free = np.zeros(d)
    free[blocks.level_index] = blocks.level_total[blocks.others] <= 0
    for i, alpha in enumerate(alphas):
        ridge = 0.5 * float(alpha) * total if alpha > 0 else free
        if quadratic.fit_intercept:
            # the target centred too: its mean (the intercept's entry, ``W μ_y``) would only be moved to the
            # stored shift and back inside the solve, costing the digits of ``μ_y / spread`` (3e6: 5 digits)
            rhs = np.vstack([total * quadratic.cross, np.zeros((1, k))])
            coefs[i] = blocks.solve_ridge(rhs, ridge, origin=quadratic.mean_x)[:d].T
        else:
            rhs = np.zeros((d + 1, k + 1))
            rhs[:d, :k] = total * quadratic.cross
            rhs[d, k] = 1.0
            solved = blocks.solve_ridge(rhs, ridge)
            coefs[i] = (solved[:d, :k] - np.outer(solved[:d, k], solved[d, :k] / solved[d, k])).T
    return coefs


def block_enet_path(quadratic, alphas, l1_ratio, tol=PATH_TOL, max_sweeps=MAX_SWEEPS):
    """L1 / elastic-net solutions by coordinate descent on the blocks, warm-started along ``alphas``.

    :func:`gradfit.alpha_path.enet_path` with ``Gc`` kept through the level
    values (:func:`_block_coordinate_descent`); the same order of coordinates,
    the same gap and the same stopping rule.
    """
    kernel = compiled_block_kernel()
    blocks = quadratic.blocks
    d, k = quadratic.cross.shape
    # each coordinate's place: a dense feature's column (≥ 0) or −1 − its level
    slot = np.empty(d, dtype=np.int64)
    slot[blocks.dense_index] = np.arange(blocks.n_dense)
    slot[blocks.level_index] = -1 - blocks.others
    diagonal = quadratic.diagonal()

    def solve(cross, target, l1, l2, coef):
        return kernel(slot, diagonal, quadratic.share, quadratic.offset, quadratic.within, quadratic.between,
                      quadratic.offset_mean, quadratic.fit_intercept, cross, target, l1, l2, coef, tol, max_sweeps)

    return warm_path(quadratic, alphas, l1_ratio, tol, max_sweeps, solve)


def block_validation_mse(blocks, coefs, intercepts):
    """Mean squared error on the rows of ``blocks`` (a fold's own), averaged over outputs, of every model.

    Parameters
    ----------
    blocks : LevelBlocks
        Of the validation rows.
    coefs : ndarray of shape (n_models, k, d)
    intercepts : ndarray of shape (n_models, k)

    Returns
    -------
    ndarray of shape (n_models,)
    """
    p = blocks.n_dense
    n_models, k, _ = coefs.shape
    present = blocks.level_total > 0
    totals = blocks.level_total[present]
    means = blocks.level_mean[present]  # about the shift
    shift = blocks.shift
    total = np.zeros(n_models)
    for output in range(k):
        dense = coefs[:, output, blocks.dense_index]  # (n_models, p)
        levels = np.zeros((n_models, blocks.n_levels))
        levels[:, blocks.others] = coefs[:, output, blocks.level_index]
        index = np.r_[np.arange(p), p + output]
        extended = np.concatenate([dense, -np.ones((n_models, 1))], axis=1)
        spread = np.einsum("ai,ij,aj->a", extended, blocks.within[np.ix_(index, index)], extended)
        # m_l = (M_l,y − M_l,x·c) − c_l − b, the shift's part apart (one number a model)
        constant = shift[p + output] - dense @ shift[:p] - intercepts[:, output]
        level_part = means[:, p + output][None, :] - dense @ means[:, :p].T - levels[:, present]
        between = (level_part + constant[:, None]) ** 2 @ totals
        total += (np.maximum(spread, 0.0) + between) / blocks.total
    return total / k


def _block_coordinate_descent(slot, diagonal, share, offset, within, between, offset_mean, centred, cross, target,
                              l1, l2, coef, tol, max_sweeps):
    """``alpha_path._coordinate_descent`` with the Gram as level blocks (see the module docstring), in place.

    ``slot[j]``: coordinate ``j``'s dense column ``k`` (``≥ 0``) or ``−1 − l``
    for level ``l``'s dummy. Kept up to date: ``u`` (L,) the level values,
    ``ū``, ``wc = S_w,ₓₓ c_x / W`` and ``acc = Σ_l π_l o_l u_l`` (p,), so that
    ``(Gc)_k = wc_k + acc_k − ū·(Σπo)_k`` and ``(Gc)_l = π_l (u_l − ū)``.

    Returns ``(gap, P(c), sweeps)`` as the dense kernel.
    """
    d = cross.shape[0]
    n_levels, p = offset.shape
    a1, a2 = 0.5 * l1, 0.5 * l2
    dense = np.zeros(p)
    level = np.zeros(n_levels)
    for j in range(d):
        s = slot[j]
        if s >= 0:
            dense[s] = coef[j]
        else:
            level[-1 - s] = coef[j]
    values = np.zeros(n_levels)  # u
    for m in range(n_levels):
        acc_value = level[m]
        for k in range(p):
            acc_value += offset[m, k] * dense[k]
        values[m] = acc_value
    mean_value = 0.0  # ū
    if centred:
        for m in range(n_levels):
            mean_value += share[m] * values[m]
    within_product = np.zeros(p)
    accumulated = np.zeros(p)
    for k in range(p):
        for i in range(p):
            within_product[i] += within[i, k] * dense[k]
    for m in range(n_levels):
        for i in range(p):
            accumulated[i] += share[m] * offset[m, i] * values[m]
    product = np.zeros(d)  # G c, refreshed for the gap
    gap, objective = np.inf, 0.0
    for sweep in range(max_sweeps):
        moved = False
        for j in range(d):
            diag = diagonal[j]
            if diag <= 0.0:
                continue  # a constant feature (or a level without rows): its coefficient stays zero
            s = slot[j]
            if s >= 0:
                gc = within_product[s] + accumulated[s] - (mean_value * offset_mean[s] if centred else 0.0)
            else:
                m = -1 - s
                gc = share[m] * (values[m] - mean_value)
            old = coef[j]
            rho = cross[j] - gc + diag * old
            new = max(abs(rho) - a1, 0.0) / (diag + a2)
            if rho < 0.0:
                new = -new
            if new != old:
                moved = True
                delta = new - old
                coef[j] = new
                if s >= 0:
                    dense[s] = new
                    for m in range(n_levels):
                        values[m] += offset[m, s] * delta
                    if centred:
                        mean_value += offset_mean[s] * delta
                    for i in range(p):
                        within_product[i] += within[i, s] * delta
                        accumulated[i] += between[i, s] * delta
                else:
                    m = -1 - s
                    level[m] = new
                    values[m] += delta
                    if centred:
                        mean_value += share[m] * delta
                    for i in range(p):
                        accumulated[i] += share[m] * offset[m, i] * delta
        for j in range(d):
            s = slot[j]
            if s >= 0:
                product[j] = within_product[s] + accumulated[s] - (mean_value * offset_mean[s] if centred else 0.0)
            else:
                m = -1 - s
                product[j] = share[m] * (values[m] - mean_value)
        # the duality gap (scikit-learn's formula, divided by n), as the dense kernel
        dual_norm = 0.0
        cross_dot = 0.0
        quadratic = 0.0
        l1_norm = 0.0
        squared_norm = 0.0
        for j in range(d):
            dual_norm = max(dual_norm, abs(cross[j] - product[j] - a2 * coef[j]))
            cross_dot += cross[j] * coef[j]
            quadratic += coef[j] * product[j]
            l1_norm += abs(coef[j])
            squared_norm += coef[j] * coef[j]
        residual = max(target - 2.0 * cross_dot + quadratic, 0.0)  # ‖r‖²/n
        if dual_norm > a1:
            const = a1 / dual_norm
            gap = 0.5 * (residual + residual * const * const)
        else:
            const = 1.0
            gap = residual
        gap += a1 * l1_norm - const * (target - cross_dot) + 0.5 * a2 * (1.0 + const * const) * squared_norm
        objective = 0.5 * residual + a1 * l1_norm + 0.5 * a2 * squared_norm
        if gap <= tol * target or not moved:
            return max(gap, 0.0), objective, sweep + 1
    return max(gap, 0.0), objective, max_sweeps


#: :func:`_block_coordinate_descent` compiled by Numba (cached on disk), or as Python where Numba is missing
compiled_block_kernel = lazily_compiled(_block_coordinate_descent)
