"""The proximal Newton step of an L1 or elastic-net Huber problem on level codes: coordinate descent on the blocks.

:func:`gradfit.robust.huber_cv.proximal_step` minimizes the quadratic model

    gᵀΔ + ½ Δᵀ(H + μD)Δ + Σ_j w_j |θ_j + Δ_j|

by cyclic coordinate descent on a dense ``p × p`` matrix. With a column of
``L`` levels kept as codes, ``H`` is a :class:`~gradfit.robust.level_newton.LevelHessian`:
the inliers' level blocks. In its coordinates ``φ = Mθ`` (``φ_l = θ_l/s_l``
a level's raw coefficient, ``φ_b = θ_b − Σ_l c_l φ_l``: see
:mod:`gradfit.robust.level_newton`) the model's matrix is

    A = (2/W) N + diag(ridge + μD),    N = Σ_in v u uᵀ,   u = [z_dense, e_code, 1],

whose level block is diagonal (a row has one level): with ``W_l`` the
inliers' weight of level ``l`` and ``m_l`` their mean of the dense columns,
``N_ll = W_l``, ``N_l,dense = W_l m_l``, ``N_l,b = W_l``, ``N_dense,dense =
S_within + Σ_l W_l m_l m_lᵀ``, ``N_dense,b = Σ_l W_l m_l``, ``N_bb = Σ_l W_l``.
The L1 part stays separable (``w_l s_l |φ_l|`` on a level, the rest
unchanged), so a coordinate's update is the same soft threshold, and keeping
the model's gradient ``G = g_φ + A(u − φ)`` current costs ``O(p)`` a level
and ``O(L + p)`` a dense feature or the intercept: ``O(L·p)`` a sweep, never
an ``L × L`` matrix. The step is ``Δθ = M⁻¹(u − φ)``.
"""

from __future__ import annotations

import numpy as np

from ..jit import lazily_compiled


def level_proximal_step(hessian, gradient, theta, l1_weights, damping, free, sweeps, tol):
    """``Δθ`` minimizing the proximal Newton model at ``H + μD`` (``H`` a :class:`LevelHessian`).

    Parameters
    ----------
    hessian : LevelHessian
    gradient, theta, l1_weights : ndarray of shape (p,)
        In working units (θ); ``l1_weights`` 0 on the intercept.
    damping : float
        ``μ``, put on the features as :meth:`LevelHessian.damped_step` puts it.
    free : ndarray of shape (p,), bool
        Coordinates allowed to move (every one, or the intercept alone: the
        same sets in ``φ``).
    sweeps : int
    tol : float
        Stop once no coordinate moved more than ``tol`` times the largest
        (both measured by ``sqrt(A_jj)``).

    Returns
    -------
    ndarray of shape (p,)
    """
    coding, W = hessian.coding, hessian.sum_weights
    fit_intercept = hessian.fit_intercept
    d = hessian.n_features
    extra = (hessian.ridge[:d] + damping) * hessian._to_phi  # diag(ridge + μD) in φ, on the features
    blocks = hessian.blocks
    if blocks is None:  # no inlier: A = diag(ridge + μ) (the intercept's curvature is the damping's)
        diagonal = np.append(hessian.ridge[:d] + damping, [damping] if fit_intercept else [])
        target = theta - gradient / diagonal
        moved = np.sign(target) * np.maximum(np.abs(target) - l1_weights / diagonal, 0.0)
        return np.where(free, moved, theta) - theta
    p = blocks.n_dense
    factor = 2.0 / W
    others = blocks.others
    level_total = blocks.level_total
    means = blocks.level_mean[:, :p] + blocks.shift[:p]  # m_l (any value where W_l = 0: it is weighted by 0)
    weighted = level_total[:, None] * means  # W_l m_l
    dense_dense = factor * (blocks.within[:p, :p] + means.T @ weighted)
    dense_dense[np.diag_indices(p)] += extra[coding.dense_index]
    level_dense = factor * np.ascontiguousarray(weighted[others])
    level_weight = factor * level_total[others]
    level_extra = extra[coding.level_index]
    dense_intercept = factor * weighted.sum(axis=0)
    intercept = factor * blocks.total
    b = d if fit_intercept else -1
    # θ → φ: φ_l = θ_l/s_l, φ_b = θ_b − Σ c_l φ_l; the gradient ∇_φ = M⁻ᵀ∇_θ; the L1 weights w_l s_l
    phi = np.array(theta, dtype=float)
    phi[coding.level_index] = theta[coding.level_index] / coding.level_scale
    if fit_intercept:
        phi[b] = theta[b] - coding.level_center @ phi[coding.level_index]
    weights = np.array(l1_weights, dtype=float)
    weights[coding.level_index] *= coding.level_scale
    u = _compiled_descent()(dense_dense, level_dense, level_weight, level_extra, dense_intercept, intercept,
                            coding.dense_index, coding.level_index, b, coding.to_phi_dual(gradient), phi, weights,
                            np.asarray(free, dtype=np.bool_), sweeps, tol)
    return coding.to_theta(u - phi)


def _level_descent(dense_dense, level_dense, level_weight, level_extra, dense_intercept, intercept, dense_index,
                   level_index, b, gradient, phi, weights, free, sweeps, tol):
    """The loop of :func:`level_proximal_step`: returns ``u = φ + Δφ`` (Numba compiles it where installed)."""
    u = phi.copy()
    G = gradient.copy()  # A(u − φ) + g_φ
    p = dense_index.shape[0]
    L = level_index.shape[0]
    for _ in range(sweeps):
        largest = 0.0
        size = 0.0
        for k in range(p):
            j = dense_index[k]
            if not free[j]:
                continue
            diagonal = dense_dense[k, k]
            old = u[j]
            target = old - G[j] / diagonal
            magnitude = abs(target) - weights[j] / diagonal
            new = 0.0
            if magnitude > 0.0:
                new = magnitude if target > 0.0 else -magnitude
            if new != old:
                delta = new - old
                u[j] = new
                for i in range(p):
                    G[dense_index[i]] += delta * dense_dense[i, k]
                for i in range(L):
                    G[level_index[i]] += delta * level_dense[i, k]
                if b >= 0:
                    G[b] += delta * dense_intercept[k]
                largest = max(largest, abs(delta) * np.sqrt(diagonal))
            size = max(size, abs(new) * np.sqrt(diagonal))
        for i in range(L):
            j = level_index[i]
            if not free[j]:
                continue
            diagonal = level_weight[i] + level_extra[i]
            old = u[j]
            target = old - G[j] / diagonal
            magnitude = abs(target) - weights[j] / diagonal
            new = 0.0
            if magnitude > 0.0:
                new = magnitude if target > 0.0 else -magnitude
            if new != old:
                delta = new - old
                u[j] = new
                G[j] += delta * diagonal
                for k in range(p):
                    G[dense_index[k]] += delta * level_dense[i, k]
                if b >= 0:
                    G[b] += delta * level_weight[i]
                largest = max(largest, abs(delta) * np.sqrt(diagonal))
            size = max(size, abs(new) * np.sqrt(diagonal))
        if b >= 0 and free[b] and intercept > 0.0:
            old = u[b]
            new = old - G[b] / intercept
            if new != old:
                delta = new - old
                u[b] = new
                for k in range(p):
                    G[dense_index[k]] += delta * dense_intercept[k]
                for i in range(L):
                    G[level_index[i]] += delta * level_weight[i]
                G[b] += delta * intercept
                largest = max(largest, abs(delta) * np.sqrt(intercept))
            size = max(size, abs(new) * np.sqrt(intercept))
        if largest <= tol * max(size, 1e-300):
            break
    return u


#: :func:`_level_descent` compiled by Numba (cached on disk), or as Python where Numba is missing
_compiled_descent = lazily_compiled(_level_descent)
