"""Small dense algebra the robust solvers share: the Gram of the data and solves with it."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..engines import StatisticsEngine
from ..errors import DataError


class Gram:
    """``G = (1/W) Σ v z zᵀ`` in working units (``z = [(x − center)/scale, 1]``), and ``G⁺``.

    Built from the statistics' centred scatter (no pass). ``G`` is half the
    squared error's Hessian; :attr:`least_squares` is the least-squares
    solution (p, k) in working units, the robust solvers' starting point, and
    :attr:`least_squares_error` its mean squared residuals.
    Directions the data do not determine (eigenvalues below
    ``λmax · p · machine ε``) are left out of :meth:`solve`, as the statistics
    engine leaves them out of its solve.
    """

    def __init__(self, statistics, scaling, fit_intercept):
        engine = StatisticsEngine(statistics, scaling, fit_intercept)
        k = statistics.n_outputs
        self.matrix = engine.hessian() * (k / 2.0)
        self.least_squares = engine.reference
        #: the mean squared residual of each output at least squares, shape (k,)
        self.least_squares_error = np.asarray(engine.reference_per_output, dtype=float)
        eigenvalues, vectors = scipy.linalg.eigh(self.matrix)
        top = max(float(eigenvalues[-1]), 0.0)
        keep = eigenvalues > top * self.matrix.shape[0] * np.finfo(float).eps
        self._vectors = vectors[:, keep]
        self._inverse = 1.0 / eigenvalues[keep]
        self.top = top
        #: ``max_j G_jj``: the scale of a row of ``Z``, for rounding limits
        self.largest_diagonal = float(np.max(np.diag(self.matrix)))

    def solve(self, vector):
        """``G⁺ vector`` for ``vector`` of shape (p,)."""
        return self._vectors @ (self._inverse * (self._vectors.T @ vector))


#: ``δ / max_j G_jj`` of :class:`BlockGram`'s regularized solve where ``G`` is singular within the levels
REGULARIZE = 1e-10


class BlockGram:
    """:class:`Gram` of a categorical column kept as level codes: ``G⁻¹`` by the level blocks, never a d × d matrix.

    ``G = (k/2) H`` for the squared error's per-output Hessian ``H`` of
    :class:`~gradfit.engines.categorical.BlockStatisticsEngine`, whose
    :meth:`~gradfit.engines.categorical.BlockStatisticsEngine.solve` is exact
    (the Schur complement of the level block), so ``G⁻¹ v = (2/k) H⁻¹ v``.
    Serves what Huber's certificate and Newton's method read (:meth:`solve`,
    :attr:`largest_diagonal`, :attr:`least_squares`, :attr:`least_squares_error`,
    :attr:`top`); Newton's steps solve by the inliers' level blocks
    (:class:`~gradfit.robust.level_newton.LevelHessian`).

    Where the least-squares problem is singular (a level without weight, a
    feature constant within every level) it solves as :meth:`solve_many` says.
    """

    def __init__(self, statistics, scaling, fit_intercept):
        from ..engines.categorical import BlockStatisticsEngine

        self._engine = BlockStatisticsEngine(statistics, scaling, fit_intercept)
        k, d = statistics.n_outputs, statistics.n_features
        self._factor = 2.0 / k
        # G_jj = (1/W) Σ v ((x_j − c_j)/s_j)² = (S_jj/W + (μ_j − c_j)²)/s_j², and 1 for the intercept
        offset = statistics.mean[:d] - scaling.center
        diagonal = (statistics.scatter_diagonal[:d] / statistics.sum_weights + offset * offset) / scaling.scale**2
        self.largest_diagonal = float(max(np.max(diagonal, initial=0.0), 1.0 if fit_intercept else 0.0))
        blocks = statistics.blocks
        #: the dummies of levels without weight: zero columns of ``Z`` (in the ``v``-weighted sums), left out of
        #: :meth:`solve` as :class:`Gram` leaves out the directions the data do not determine
        self._empty = blocks.level_index[blocks.level_total[blocks.others] <= 0]
        self._scaling, self._fit_intercept, self._blocks = scaling, fit_intercept, blocks
        #: a relative ridge on every feature where the data leave other directions free (a feature constant
        #: within every level): a regularized solve, whose projection the certificate corrects and verifies
        self._regularize = 0.0
        if self._empty.size:
            try:
                self.solve_many(np.ones((d + fit_intercept, 1)))
            except DataError:
                self._regularize = REGULARIZE
        else:
            try:
                self._engine.solve(np.ones((d + fit_intercept, 1)))
            except DataError:
                self._regularize = REGULARIZE
        reference, per_output = self._engine.reference, self._engine.reference_per_output
        if self._empty.size or self._regularize:  # the engine's solve refuses them: least squares by this one
            reference = np.zeros_like(reference)
            for _ in range(2):  # a Newton step from zero, refined once, as the engine's
                reference = reference - self.solve_many(self._engine._expanded(reference)[1]) / self._factor
            per_output = self._engine._expanded(reference)[0]
        #: the least-squares solution (p, k) in working units (zero where the data leave it undetermined)
        self.least_squares = reference
        self.least_squares_error = np.asarray(per_output, dtype=float)
        #: ``trace(G)``: an upper bound of ``λmax(G)`` (all Newton's damping floor needs; no eigensolver)
        self.top = float(np.sum(diagonal)) + (1.0 if fit_intercept else 0.0)

    def solve(self, vector):
        """``G⁻¹ vector`` for ``vector`` of shape (p,) (``G⁺``: levels without weight left out)."""
        return self.solve_many(np.asarray(vector, dtype=float)[:, None])[:, 0]

    def solve_many(self, vectors):
        """``G⁺ V`` for ``V`` of shape (p, m).

        Without empty levels, the engine's exact solve. With them, the same
        solve (``G = (1/W) D̃ N_c D̃``, :meth:`BlockStatisticsEngine.solve
        <gradfit.engines.categorical.BlockStatisticsEngine.solve>`) with a unit
        ridge on those levels alone: their dummies are zero columns, so the
        ridge decouples them from the rest (whose solve it leaves exact) and
        their coordinates of the result are set to zero, the pseudo-inverse's.
        Where ``G`` is still singular (a feature constant within every level),
        ``(G + δI)⁻¹`` with ``δ = REGULARIZE · max_j G_jj`` on the features: on
        the range of ``G`` (where Huber's certificate projects) it is ``G⁺``
        up to ``δ / λ``, which the certificate's correction steps remove and its
        constraint check verifies.
        """
        if not self._empty.size and not self._regularize:
            return self._factor * self._engine.solve(vectors)
        d = self._blocks.n_features
        scale, center = self._scaling.scale, self._scaling.center
        # G + δ·I on the features is (1/W) D̃ (N_c + W δ D̃⁻²) D̃: a ridge W δ scale² in the data's units
        ridge = self._regularize * self.largest_diagonal * self._blocks.total * scale * scale
        ridge[self._empty] = 1.0

        def solve_full(rhs):  # (d + 1, m): W D̃⁻¹ N_c⁻¹ D̃⁻¹ rhs
            lifted = np.array(rhs, dtype=float)
            lifted[:d] *= scale[:, None]
            solved = self._blocks.solve_ridge(lifted, ridge, origin=center)
            solved[:d] *= scale[:, None]
            solved[self._empty] = 0.0
            return self._blocks.total * solved

        if self._fit_intercept:
            return solve_full(vectors)
        solved = solve_full(np.vstack([vectors, np.zeros((1, vectors.shape[1]))]))
        unit = np.zeros((d + 1, 1))
        unit[d] = 1.0
        last = solve_full(unit)
        return solved[:d] - last[:d] * (solved[d] / last[d, 0])
