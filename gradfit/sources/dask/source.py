"""The Dask source: rows of Dask arrays, dataframes or files, read where they live; partial sums come back.

A :class:`DaskSource` is a list of *blocks* (a Dask task each, yielding
consecutive rows: :mod:`~gradfit.sources.dask.tasks`) with known row
offsets. :meth:`DaskSource.reduce` sends the engine's per-chunk function to
the blocks, folds each block's sub-chunks there, and merges the blocks'
results in a tree, in order, on the workers: one ``compute`` per call, and
only the final sums (O(d²) at most) reach the client. The order of the
merges is fixed, so a result does not depend on which worker finishes first.
"""

from __future__ import annotations

import numpy as np

from ...errors import DataError, GradfitError
from ..base import Chunk, NamedBy, Source
from .arrays import column_names, to_arrays
from .categories import encode_frame, needs_encoder
from .compute import cluster_failure, compute
from .file_blocks import csv_blocks, parquet_blocks
from .names import SourceNames
from .optional import require
from .tasks import _fold_block, _join, _pack, _take_block, block_chunk, sub_chunks

#: a block read from a file holds about this many bytes of float64 rows
BLOCK_BYTES = 64 * 1024 * 1024
#: partial results merged per task: a tree of few tasks, each moving little
FAN_IN = 8


class DaskSource(NamedBy, Source):
    """Rows of Dask arrays, dataframes or files, read where they live.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), or dask DataFrame
        Numeric columns; float32 stays float32 (as for NumPy input), anything
        else is read as float64.
    y : dask array of shape (n_samples,) or (n_samples, n_outputs), dask Series or DataFrame
        May also be a NumPy array or pandas object: it is then sent to the
        workers once, in blocks matching X's.
    sample_weight : same kinds as y, of shape (n_samples,), optional
    feature_names, target_names : list of str, optional
        Default: a dataframe's column names, else ``x0, x1, …`` and ``y`` (``y0, …``).

    Notes
    -----
    Row offsets must be known: Dask arrays with unknown chunk sizes and
    dataframes cost one counting compute when the source is made (a
    persisted collection makes it cheap). Blocks are re-read at every pass;
    :meth:`persist` keeps them in the workers' memory, which minibatches need
    to be fast (each minibatch is one compute over the blocks its rows lie in).

    The source pickles as its :class:`SourceNames` (names only), so that the
    closures the engines send to the workers stay small; its messages are
    told by them too (:class:`~gradfit.sources.base.NamedBy`).
    """

    def __init__(self, X, y, sample_weight=None, feature_names=None, target_names=None, *,
                 categorical="auto", encoder=None, handle_unknown="error"):
        dask = require("dask")
        da = require("dask.array")
        frame_names = column_names(X)
        target_frame_names = column_names(y)
        self.encoder, self.notes, self.missing_counts, self.rows_dropped = None, [], None, 0
        if frame_names is not None and X.ndim == 2 and (encoder is not None or needs_encoder(X, categorical)):
            # categories: levels found on the cluster, X made the encoded features block by block
            X, self.encoder = encode_frame(X, categorical, encoder, handle_unknown, dask, da)
            feature_names = feature_names or self.encoder.feature_names
        arrays = [X, y] + ([] if sample_weight is None else [sample_weight])
        arrays = to_arrays(arrays, dask, da)
        X, y = arrays[0], arrays[1]
        weight = arrays[2] if sample_weight is not None else None
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional (n_samples, n_features), not of shape {X.shape}")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have 1 or 2 dimensions, not shape {y.shape}")
        if weight is not None and weight.ndim != 1:
            raise ValueError(f"sample_weight must be 1-dimensional, not of shape {weight.shape}")
        lengths = [X.shape[0], y.shape[0]] + ([] if weight is None else [weight.shape[0]])
        if len(set(lengths)) > 1:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
        for name, array in (("X", X), ("y", y), ("sample_weight", weight)):
            if array is not None and array.dtype.kind not in "biuf":
                raise DataError(f"{name} has dtype {array.dtype}, which is not numeric")
        self.y_ndim = y.ndim
        self.n_samples, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.n_outputs = 1 if y.ndim == 1 else int(y.shape[1])
        if self.n_samples < 1 or self.n_features < 1:
            raise ValueError(f"X of shape {X.shape}: at least one row and one feature are needed")
        self.dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        self.has_weights = weight is not None
        self.frame_feature_names = frame_names
        if feature_names is None:
            feature_names = frame_names or [f"x{j}" for j in range(self.n_features)]
        if target_names is None:
            target_names = target_frame_names or (
                ["y"] if self.n_outputs == 1 else [f"y{j}" for j in range(self.n_outputs)]
            )
        self.feature_names, self.target_names = list(feature_names), list(target_names)
        self.names = SourceNames(
            "frame" if frame_names is not None else "array",
            "the Dask input",
            self.feature_names,
            self.target_names,
            "sample_weight" if self.has_weights else None,
        )
        # One column chunk for X and y, and y's and the weights' row chunks those of X,
        # so that block i of each holds the same rows.
        rows = X.chunks[0]
        X = X.rechunk({0: rows, 1: -1})
        y = y.rechunk({0: rows, 1: -1} if y.ndim == 2 else {0: rows})
        weight = None if weight is None else weight.rechunk({0: rows})
        Xs, ys = X.to_delayed().ravel(), y.to_delayed().ravel()
        weights = [None] * len(Xs) if weight is None else weight.to_delayed().ravel()
        # A block is the tuple of its parts: Dask hands the task their values,
        # with no task of its own to put them together.
        self._set_blocks(list(zip(Xs, ys, weights)), rows)
        # Held so that persisted inputs (ours: y or weights sent from NumPy) stay on the
        # workers while the source lives: the blocks name their keys only.
        self._collections = (X, y, weight)
        self._file = None

    @classmethod
    def from_file(cls, path, target, features=None, sample_weight=None, block_rows=None, **table_options):
        """A CSV or Parquet file (or folder, or glob) read by the workers, not the client.

        The client reads the schema and the Parquet footers (to check the
        columns and know every row group's rows); the workers read the data,
        only the needed columns. Parquet blocks are runs of row groups of about
        :data:`BLOCK_BYTES`, in the same file order as :class:`FileSource`, so
        bad values are named by file and row. A CSV file is split by
        ``dask.dataframe.read_csv`` and costs one more pass to count each
        block's rows (convert it to Parquet for repeated use).

        The path must be readable at the same place on the workers (a shared
        file system, or a local cluster).

        ``table_options`` (``exclude``, ``categorical``, ``missing``) are
        :class:`FileSource`'s: the client learns the categories' levels (and
        counts missing values) in one pass over those columns, and the workers
        encode their blocks with them. With ``missing="drop"``, rows keep their
        place in the file for messages, and minibatches are refused.
        """
        from ..files import FileSource

        require("dask")  # before the file is read: a missing Dask is said at once
        file = FileSource(path, target, features=features, sample_weight=sample_weight, **table_options)
        self = cls.__new__(cls)
        self._file = file
        self.encoder, self.notes = file.encoder, file.notes
        self.missing_counts, self.rows_dropped = file.missing_counts, file.rows_dropped
        for name in ("n_features", "n_outputs", "feature_names", "target_names", "has_weights", "dtype"):
            setattr(self, name, getattr(file, name))
        self.y_ndim = 1 if file.n_outputs == 1 else 2
        self.frame_feature_names = None
        width = file.n_features + file.n_outputs + 1
        block_rows = int(block_rows or max(1024, BLOCK_BYTES // (8 * width)))
        if file.format == "parquet":
            self.names, blocks, lengths = parquet_blocks(file, block_rows)
        else:
            self.names, blocks, lengths = csv_blocks(file, block_rows, self._compute)
        self._set_blocks(blocks, lengths)
        self.n_samples -= file.rows_dropped  # the rows read; blocks keep the file's row numbers
        return self

    def _set_blocks(self, blocks, lengths):
        self._blocks = list(blocks)
        self._starts = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int64)
        self.n_samples = int(self._starts[-1])

    def __reduce__(self):
        return self.names.__reduce__()

    @property
    def n_blocks(self):
        return len(self._blocks)

    def persist(self):
        """Keep the blocks (as NumPy, only the needed columns) in the workers' memory; returns self."""
        dask = require("dask")
        pack = dask.delayed(_pack, pure=True)
        blocks = [pack(block, self.dtype) if isinstance(block, tuple) else block for block in self._blocks]
        self._blocks = list(self._compute_with(dask.persist, *blocks))
        return self

    # -- reading -------------------------------------------------------------

    def _compute(self, *collections):
        return self._compute_with(compute, *collections)

    def _compute_with(self, run, *collections):
        try:
            return run(*collections)
        except GradfitError:
            raise
        except Exception as exc:
            failure = cluster_failure(exc)
            if failure is not None:  # before the CSV check: it is not the data's fault
                raise failure from None
            # A CSV value that is not a number fails inside pandas, which does not
            # say where; find its line the way FileSource does.
            if self._file is not None and self._file.format == "csv":
                raise self._file._locate_csv_error(exc) from None
            raise

    def reduce(self, function, combine):
        """``combine``-fold of ``function(chunk)`` over all chunks, run on the workers.

        One compute: ``function`` runs on every block's sub-chunks where the
        block is, the partial results are merged in a fixed order (blocks 0-7
        in one task, 8-15 in the next, …, then those results likewise), and only
        the final result comes back. ``function`` and ``combine`` are pickled
        (closures over NumPy parameters are fine).
        """
        if not self._blocks:
            return None
        dask = require("dask")
        fold = dask.delayed(_fold_block, pure=False)
        join = dask.delayed(_join, pure=False)
        step = self.rows_per_chunk()
        partials = [
            fold(function, combine, block, int(start), step, self.dtype)
            for block, start in zip(self._blocks, self._starts[:-1])
        ]
        while len(partials) > 1:
            partials = [
                join(combine, *partials[i : i + FAN_IN]) if i + 1 < len(partials) else partials[i]
                for i in range(0, len(partials), FAN_IN)
            ]
        return self._compute(partials[0])[0]

    def take(self, rows):
        """The :class:`Chunk` of the sorted global ``rows``, gathered from their blocks (one compute)."""
        if getattr(self, "rows_dropped", 0):
            raise DataError(f"{self.describe()}: minibatches on Dask with rows left out for missing values "
                            "are not supported; drop them from the file, or use full batches")
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return Chunk(np.empty((0, self.n_features), self.dtype), np.empty((0, self.n_outputs)),
                         np.empty(0) if self.has_weights else None, 0)
        dask = require("dask")
        take = dask.delayed(_take_block, pure=True)
        block_of = np.searchsorted(self._starts, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(block_of)) + 1
        pieces = [
            take(self._blocks[block_of[group[0]]], rows[group] - self._starts[block_of[group[0]]], self.dtype)
            for group in np.split(np.arange(rows.size), cuts)
        ]
        parts = self._compute(*pieces)
        X = np.concatenate([part[0] for part in parts])
        y = np.concatenate([part[1] for part in parts])
        weight = np.concatenate([part[2] for part in parts]) if self.has_weights else None
        return Chunk(X, y, weight, int(rows[0]))

    def chunks(self):
        """Bring the blocks to the client one at a time (engines use :meth:`reduce` instead)."""
        step = self.rows_per_chunk()
        for block, start in zip(self._blocks, self._starts[:-1]):
            yield from sub_chunks(block_chunk(self._compute(block)[0], int(start), self.dtype), step)
