"""In-memory arrays (NumPy; pandas and polars via scikit-learn's validation)."""

from __future__ import annotations

from .base import Chunk, Source, array_position, fold_in_threads, worker_threads


class ArraySource(Source):
    """Row blocks of arrays already in memory: views, never copies.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    y : ndarray of shape (n_samples, n_outputs), float64
    sample_weight : ndarray of shape (n_samples,) or None
    feature_names, target_names : list of str, optional
    """

    def __init__(self, X, y, sample_weight=None, feature_names=None, target_names=None):
        self.X = X
        self.y = y
        self.sample_weight = sample_weight
        self.n_samples, self.n_features = X.shape
        self.n_outputs = y.shape[1]
        self.dtype = X.dtype
        self.has_weights = sample_weight is not None
        self.feature_names = list(feature_names) if feature_names is not None else [
            f"x{j}" for j in range(self.n_features)
        ]
        self.target_names = list(target_names) if target_names is not None else (
            ["y"] if self.n_outputs == 1 else [f"y{j}" for j in range(self.n_outputs)]
        )

    def describe(self):
        return "the input"

    def where(self, row, column=None):
        """Array indexing, 0-based: ``X[17, 3]``, ``y[17, 0]``, ``sample_weight[17]``."""
        return array_position(row, column, self.n_features)

    def chunks(self):
        step = self.rows_per_chunk()
        for start in range(0, self.n_samples, step):
            stop = start + step
            weight = None if self.sample_weight is None else self.sample_weight[start:stop]
            yield Chunk(self.X[start:stop], self.y[start:stop], weight, start)

    def reduce(self, function, combine):
        """The fold of :meth:`Source.reduce`, with the chunks' work spread over threads.

        The chunks are views, so handing them to threads copies nothing; the
        result is the serial fold's (see :func:`~gradfit.sources.base.fold_in_threads`).
        """
        if self.n_samples <= self.rows_per_chunk():  # one chunk: no threads to ask BLAS about
            return super().reduce(function, combine)
        threads = worker_threads()
        if threads < 2:
            return super().reduce(function, combine)
        return fold_in_threads(function, combine, self.chunks(), threads)

    def take(self, rows):
        weight = None if self.sample_weight is None else self.sample_weight[rows]
        return Chunk(self.X[rows], self.y[rows], weight, int(rows[0]) if len(rows) else 0)
