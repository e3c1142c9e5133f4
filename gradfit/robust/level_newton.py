"""Huber's Newton step on a categorical column kept as level codes: the inlier Hessian by its level blocks.

Huber's generalized Hessian (:mod:`gradfit.robust.huber`) is the squared
error's normal matrix with the row weights restricted to the inliers,

    H = (2/W) Σ_{|r_i| ≤ ε} v_i z_i z_iᵀ + diag(ridge),

so a damped Newton step ``Δ = −(H + μI)⁻¹ ∇F`` is a weighted least-squares
solve. With a column of ``L`` levels its dummies would make ``H`` an
``(L + p)²`` matrix; instead the pass collects the inliers'
:class:`~gradfit.engines.categorical.LevelMoments` (``chunk_level_moments``
with weights ``v·1{inlier}``, of the other features only) and the step is
solved by the Schur complement of the diagonal level block
(:meth:`~gradfit.engines.categorical.LevelBlocks.solve_ridge`), ``O(L·p + p³)``.

**Coordinates.** In working units ``z = [z_dense, (e_code − c)/s, 1]`` (the
dummies centred on ``c_l`` and scaled by ``s_l``; ``c = 0`` without an
intercept). With ``φ = Mθ``: ``φ_dense = θ_dense``, ``φ_l = θ_l / s_l`` (the
level's raw coefficient) and ``φ_b = θ_b − Σ_l c_l θ_l / s_l``, the rows are
``u = [z_dense, e_code, 1]``, whose normal matrix ``N = Σ_in v u uᵀ`` is the
one :class:`~gradfit.engines.categorical.LevelBlocks` solves with. A Newton
step is invariant under the change (``Δθ = M⁻¹Δφ``, ``∇_φ = M⁻ᵀ∇_θ``), the
L2 part stays diagonal (``l2/scale²`` on the dense features, ``l2`` on a
level's raw coefficient), and the damping ``μ`` is put on the features as
``μ·M⁻¹M⁻ᵀ``'s diagonal would put it (``μ`` on a dense feature, ``μ s_l²`` on
a level; none on the intercept): a positive diagonal as the dense method's
``μI`` is, so the step stays a descent direction, and the line search and
the certificate judge it as they judge the dense one.

**Singular inlier Hessian.** A level none of whose rows is an inlier has no
curvature: its diagonal entry of the level block is then its damping alone
(``solve_ridge`` determines a level without weight by its ridge), as the
dense method's ``H + μI`` determines it. Where the complement is still
numerically singular, ``μ`` is multiplied by 10 and the solve repeated, as
:func:`gradfit.robust.huber._damped_step` retries its Cholesky factorization.
Without any inlier, ``H`` is ``diag(ridge)`` and the step ``−∇F/(ridge + μ)``.
"""

from __future__ import annotations

import numpy as np

from ..engines.categorical import LevelBlocks
from ..errors import DataError


class LevelHessian:
    """The inlier Hessian of one output as level blocks: what :func:`gradfit.robust.huber.newton` steps with.

    Parameters
    ----------
    moments : LevelMoments or None
        The inlier rows' moments of the dense features in working units (no
        targets), with weights ``v``; ``None`` when no row is an inlier.
    coding : CodedColumns
        Where the dense features and the dummies sit (:mod:`gradfit.robust.sums`).
    reference : int
        The level without a dummy.
    sum_weights : float
        ``W = Σ v`` over all rows.
    ridge : ndarray of shape (p,)
        The L2 part's Hessian diagonal in working units (0 on the intercept).
    fit_intercept : bool
    """

    def __init__(self, moments, coding, reference, sum_weights, ridge, fit_intercept):
        self.coding, self.sum_weights, self.fit_intercept = coding, float(sum_weights), fit_intercept
        self.ridge = np.asarray(ridge, dtype=float)
        self.n_features = coding.dense_index.size + coding.level_index.size
        self.blocks = None
        if moments is not None and moments.total > 0:
            self.blocks = LevelBlocks(moments, coding.dense_index.size, coding.dense_index, coding.level_index,
                                      reference)
        # φ_l = θ_l / s_l: a quadratic form diag(q) in θ is diag(q ⊙ t²) in φ, t = s on the levels, 1 elsewhere
        self._to_phi = np.ones(self.n_features)
        self._to_phi[coding.level_index] = coding.level_scale**2

    def trace(self):
        """``trace(H)`` in working units (θ), as the dense method's initial damping reads it."""
        W = self.sum_weights
        total = float(np.sum(self.ridge))
        if self.blocks is None:
            return total
        blocks, coding = self.blocks, self.coding
        p = blocks.n_dense
        means = blocks.level_mean[:, :p] + blocks.shift[:p]
        dense = np.diagonal(blocks.within)[:p] + blocks.level_total @ (means * means)  # Σ_in v z_j²
        level_total = blocks.level_total[blocks.others]  # the inliers' weight of each level but the reference
        c, s = coding.level_center, coding.level_scale
        # Σ_in v ((e_l − c_l)/s_l)² = (W_l,in (1 − 2c_l) + c_l² W_in) / s_l²
        levels = (level_total * (1.0 - 2.0 * c) + c * c * blocks.total) / (s * s)
        total += 2.0 / W * (float(np.sum(dense)) + float(np.sum(levels)))
        if self.fit_intercept:
            total += 2.0 / W * blocks.total
        return total

    def damped_step(self, gradient, damping):
        """``−(H + μD)⁻¹ ∇F`` of shape (p,) (``D`` the damping's positive diagonal, see the module docstring)."""
        if self.blocks is None:  # no inlier: H = diag(ridge), the intercept's curvature is the damping's
            return -gradient / (self.ridge + damping)
        while True:
            try:
                return self._step(gradient, damping)
            except DataError:  # the complement numerically singular: more damping, as the dense method
                if damping >= 1e12:
                    raise
                damping = max(damping * 10.0, 1e-12)

    def _step(self, gradient, damping):
        coding, d = self.coding, self.n_features
        half = 0.5 * self.sum_weights
        rhs = np.zeros((d + 1, 1 if self.fit_intercept else 2))
        rhs[: d + self.fit_intercept, 0] = coding.to_phi_dual(gradient)  # ∇_φ = M⁻ᵀ ∇_θ
        rhs[:, 0] *= half
        if not self.fit_intercept:
            rhs[d, 1] = 1.0  # the intercept's unit vector: the leading block's inverse by a Schur complement
        # (H_φ + damping)⁻¹ = (W/2)(N + (W/2) diag)⁻¹ on the features
        solved = self.blocks.solve_ridge(rhs, half * (self.ridge[:d] + damping) * self._to_phi)
        if self.fit_intercept:
            phi = -solved[:, 0]
        else:
            phi = -(solved[:d, 0] - solved[:d, 1] * (solved[d, 0] / solved[d, 1]))
        return coding.to_theta(phi[: d + self.fit_intercept])  # Δθ = M⁻¹ Δφ
