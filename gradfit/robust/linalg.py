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

    def solve(self, vector):
        """``G⁺ vector`` for ``vector`` of shape (p,)."""
        return self._vectors @ (self._inverse * (self._vectors.T @ vector))
