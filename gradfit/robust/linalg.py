"""Small dense algebra the robust solvers share: the Gram of the data and solves with it."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..engines import StatisticsEngine


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

    Raises
    ------
    DataError
        When the least-squares problem is singular (a feature constant within every level).
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
        #: the least-squares solution (p, k) in working units (zero where the data leave it undetermined)
        self.least_squares = self._engine.reference
        self.least_squares_error = np.asarray(self._engine.reference_per_output, dtype=float)
        #: ``trace(G)``: an upper bound of ``λmax(G)`` (all Newton's damping floor needs; no eigensolver)
        self.top = float(np.sum(diagonal)) + (1.0 if fit_intercept else 0.0)

    def solve(self, vector):
        """``G⁻¹ vector`` for ``vector`` of shape (p,)."""
        return self._factor * self._engine.solve(np.asarray(vector, dtype=float)[:, None])[:, 0]
