"""Dask arrays and dataframes: the chunks stay on the workers, partial sums come back.

A :class:`DaskSource` is a list of *blocks* (a Dask task each, yielding the
NumPy ``(X, y, sample_weight)`` of consecutive rows) with known row offsets.
:meth:`DaskSource.reduce` sends the engine's per-chunk function to the blocks,
folds each block's sub-chunks there, and merges the blocks' results in a tree,
in order, on the workers: one ``compute`` per call, and only the final sums
(O(d²) at most) reach the client. The order of the merges is fixed, so a
result does not depend on which worker finishes first.

Dask is an optional dependency (``pip install gradfit[dask]``); this module
imports it only when a Dask source is made.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time

import numpy as np

from ..errors import ClusterError, DataError, GradfitError
from .base import Chunk, Source, array_position, file_row_position

#: a block read from a file holds about this many bytes of float64 rows
BLOCK_BYTES = 64 * 1024 * 1024
#: partial results merged per task: a tree of few tasks, each moving little
FAN_IN = 8
#: seconds a computation waits with no worker in the cluster before the fit
#: stops; Dask's ``distributed.scheduler.no-workers-timeout``, where set, decides instead
NO_WORKERS_TIMEOUT = 60.0
#: seconds between looks at the cluster while a computation runs (none for shorter ones)
WATCH_SECONDS = 1.0
#: seconds the scheduler has to answer such a look
ANSWER_TIMEOUT = 30.0

INSTALL_HINT = "pip install gradfit[dask]"


class MissingDependencyError(GradfitError, ImportError):
    """An optional dependency (Dask) is not installed; the message says how to get it."""


def require(module="dask"):
    """Import ``module`` (``dask``, ``dask.dataframe``, ``distributed``…) or fail in one line."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"this needs Dask, which is not installed ({module!r} cannot be imported): {INSTALL_HINT}"
        ) from None


def is_dask_collection(obj):
    """True for a Dask array, dataframe or series, without importing Dask."""
    return hasattr(type(obj), "__dask_graph__") and not isinstance(obj, type)


# -- names: what travels to the workers ----------------------------------------


class SourceNames(Source):
    """The names of a source and where its values are, without its data.

    The per-chunk functions engines send to the workers name bad values through
    the source they were given (``source.where(row, column)``); a
    :class:`DaskSource` pickles as this, so that those closures never drag the
    collections (whose graphs may hold the data itself) along.

    Parameters
    ----------
    kind : {"array", "frame", "csv", "parquet"}
        How rows are named: ``X[17, 3]`` (0-based, as :class:`ArraySource`),
        ``row 18`` (1-based), ``line 19`` (CSV, header is line 1), or the
        Parquet file and its row.
    label : str
        :meth:`describe`'s text, e.g. ``"file 'data.parquet'"``.
    fragment_starts, fragment_names : optional
        For ``"parquet"`` with several files: each file's first row and base name.
    """

    def __init__(self, kind, label, feature_names, target_names, weight_name=None,
                 fragment_starts=None, fragment_names=None):
        self.kind = kind
        self.label = label
        self.feature_names = list(feature_names)
        self.target_names = list(target_names)
        self.weight_name = weight_name
        self.fragment_starts = None if fragment_starts is None else np.asarray(fragment_starts, dtype=np.int64)
        self.fragment_names = None if fragment_names is None else list(fragment_names)
        self.n_features = len(self.feature_names)
        self.n_outputs = len(self.target_names)
        self.has_weights = weight_name is not None

    def describe(self):
        return self.label

    def where(self, row, column=None):
        if self.kind == "array":
            return array_position(row, column, self.n_features)
        return super().where(row, column)

    def row_position(self, row):
        if self.kind == "csv":
            return file_row_position(row, True)
        if self.kind == "parquet":
            return file_row_position(row, False, self.fragment_starts, self.fragment_names)
        return super().row_position(row)

    def column_name(self, column):
        if column == -1:
            return self.weight_name or "sample_weight"
        return super().column_name(column)


# -- what runs on the workers ---------------------------------------------------


def _pack(X, y, weight, dtype):
    """A block's ``(X, y, sample_weight)`` as the engines expect them."""
    X = _aligned(np.asarray(X, dtype=dtype))
    y = _aligned(np.asarray(y, dtype=np.float64))
    if y.ndim == 1:
        y = y[:, None]
    return X, y, None if weight is None else _aligned(np.asarray(weight, dtype=np.float64))


def _aligned(array):
    # Arrays that travelled inside a graph (``da.from_array(...).persist()``) can
    # arrive at odd addresses; NumPy then skips BLAS and the engines' products
    # run 4-5 times slower. One copy puts them right (once, if the blocks are
    # persisted).
    return array if array.flags.aligned else array.copy()


def _frame_values(frame, dtype):
    """A pandas partition as a NumPy array; missing values become NaN (then named by the moments pass)."""
    return frame.to_numpy(dtype=dtype, na_value=np.nan)


def _read_parquet_block(names, path, row_groups, start, dtype, table_encoder=None, missing="error"):
    """Read row groups of one Parquet file (the needed columns only) as a block.

    With ``table_encoder`` (categorical columns, or ``missing="drop"``), the raw
    columns are read and encoded as :class:`~gradfit.sources.FileSource` encodes them.
    """
    import pyarrow.parquet as pq

    if table_encoder is not None:
        columns = table_encoder.raw_names + names.target_names + ([names.weight_name] if names.has_weights else [])
        table = pq.ParquetFile(path).read_row_groups(row_groups, columns=columns, use_threads=False)
        return _encode_table(table, names, table_encoder, missing, start, dtype)
    columns = names.feature_names + names.target_names + ([names.weight_name] if names.has_weights else [])
    table = pq.ParquetFile(path).read_row_groups(row_groups, columns=columns, use_threads=False)
    for j, name in enumerate(columns):
        column = table.column(name)
        if column.null_count:
            row = int(np.argmax(~np.asarray(column.is_valid())))
            index = j if j < names.n_features + names.n_outputs else -1
            raise DataError(f"missing value in {names.describe()} at {names.where(start + row, index)}")
    d, k = names.n_features, names.n_outputs
    X = np.empty((table.num_rows, d), dtype=dtype)
    for j in range(d):
        X[:, j] = table.column(j).to_numpy()
    y = np.empty((table.num_rows, k))
    for j in range(k):
        y[:, j] = table.column(d + j).to_numpy()
    weight = table.column(d + k).to_numpy().astype(np.float64) if names.has_weights else None
    return X, y, weight


def _encode_table(table, names, table_encoder, missing, start, dtype):
    """``(X, y, sample_weight)`` of an Arrow table of raw columns: encoded, missing values dropped or named."""
    from . import encoding

    raw = len(table_encoder.raw_names)
    used = table.column_names
    masks = [encoding.missing_mask(table.column(j)) for j in range(len(used))]
    if missing == "drop":
        keep = np.logical_and.reduce(masks)
        if not keep.all():
            table = table.filter(keep)
    else:
        for j, mask in enumerate(masks):
            if not mask.all() and (j < raw or table.column(j).null_count):
                row = int(np.argmax(~mask))
                raise DataError(f"missing value in {names.describe()} at {names.row_position(start + row)}, "
                                f"column {used[j]!r}")

    def where(row, column):
        return f"{names.describe()}, {names.row_position(start + row)}, column {column!r}"

    X = table_encoder.encode([table.column(j) for j in range(raw)], dtype, where)
    k = names.n_outputs
    y = np.empty((table.num_rows, k))
    for j in range(k):
        y[:, j] = encoding.plain_array(table.column(raw + j)).to_numpy(zero_copy_only=False)
    weight = None
    if names.has_weights:
        weight = encoding.plain_array(table.column(raw + k)).to_numpy(zero_copy_only=False).astype(np.float64)
    return X, y, weight


def _encode_frame_block(frame, names, table_encoder, missing, start, dtype):
    """A pandas partition of raw columns (features, targets, weight) as an encoded block."""
    import pyarrow as pa

    from .encoding import pandas_arrow

    table = pa.table({str(name): pandas_arrow(frame[name]) for name in frame.columns})
    return _encode_table(table, names, table_encoder, missing, start, dtype)


def _fold_block(function, combine, block, start, step, dtype):
    """``combine``-fold of ``function`` over the block's sub-chunks of ``step`` rows.

    Blocks are split like every other source's chunks, so that the engines
    hand them on in the pieces they are tuned for.
    """
    X, y, weight = _pack(*block, dtype)
    result = None
    for offset in range(0, X.shape[0], step):
        stop = offset + step
        chunk = Chunk(X[offset:stop], y[offset:stop], None if weight is None else weight[offset:stop], start + offset)
        partial = function(chunk)
        if partial is not None:
            result = partial if result is None else combine(result, partial)
    return result


def _join(combine, *partials):
    """``combine``-fold of ``partials`` in order (``None``: an empty block)."""
    result = None
    for partial in partials:
        if partial is not None:
            # Each partial has exactly one consumer, so ``combine`` may reuse it.
            result = partial if result is None else combine(result, partial)
    return result


def _take_block(block, rows, dtype):
    X, y, weight = _pack(*block, dtype)
    return X[rows], y[rows], None if weight is None else weight[rows]


# -- the source -----------------------------------------------------------------


class DaskSource(Source):
    """Rows of Dask arrays or dataframes, read where they live.

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
    closures the engines send to the workers stay small.
    """

    def __init__(self, X, y, sample_weight=None, feature_names=None, target_names=None, *,
                 categorical="auto", encoder=None, handle_unknown="error"):
        dask = require("dask")
        da = require("dask.array")
        frame_names = _column_names(X)
        target_frame_names = _column_names(y)
        self.encoder, self.notes, self.missing_counts, self.rows_dropped = None, [], None, 0
        if frame_names is not None and X.ndim == 2 and (encoder is not None or _needs_encoder(X, categorical)):
            # categories: levels found on the cluster, X made the encoded features block by block
            X, self.encoder = _encode_dask_frame(X, categorical, encoder, handle_unknown, dask, da)
            feature_names = feature_names or self.encoder.feature_names
        arrays = [X, y] + ([] if sample_weight is None else [sample_weight])
        arrays = _to_arrays(arrays, dask, da)
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
        from .files import FileSource

        dask = require("dask")
        file = FileSource(path, target, features=features, sample_weight=sample_weight, **table_options)
        self = cls.__new__(cls)
        self._file = file
        encoder = None if file._plain else file.encoder
        self.encoder, self.notes = file.encoder, file.notes
        self.missing_counts, self.rows_dropped = file.missing_counts, file.rows_dropped
        for name in ("n_features", "n_outputs", "feature_names", "target_names", "has_weights", "dtype"):
            setattr(self, name, getattr(file, name))
        self.y_ndim = 1 if file.n_outputs == 1 else 2
        self.frame_feature_names = None
        width = file.n_features + file.n_outputs + 1
        block_rows = int(block_rows or max(1024, BLOCK_BYTES // (8 * width)))
        if file.format == "parquet":
            starts = file._fragment_starts
            self.names = SourceNames(
                "parquet", file.describe(), file.feature_names, file.target_names, file.weight_name,
                starts[:-1], [os.path.basename(f.path) for f in file.fragments],
            )
            read = dask.delayed(_read_parquet_block, pure=True)
            blocks, lengths = [], []
            for fragment, start in zip(file.fragments, starts[:-1]):
                metadata = fragment.metadata
                groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
                begin = 0
                while begin < len(groups):
                    stop, rows = begin + 1, groups[begin]
                    while stop < len(groups) and rows + groups[stop] <= block_rows:
                        rows += groups[stop]
                        stop += 1
                    offset = int(start) + sum(groups[:begin])
                    blocks.append(read(self.names, os.path.abspath(fragment.path), list(range(begin, stop)),
                                       offset, self.dtype, encoder, file.missing))
                    lengths.append(rows)
                    begin = stop
        else:
            dd = require("dask.dataframe")
            self.names = SourceNames("csv", file.describe(), file.feature_names, file.target_names, file.weight_name)
            kinds = {"string": "string", "bool": "boolean"}
            dtypes = {name: "float64" for name in file.columns}
            if encoder is not None:
                dtypes.update({name: kinds.get(str(t), "float64")
                               for name, t in file._csv_types(file.raw_feature_names).items()})
            try:
                frame = dd.read_csv(
                    os.path.abspath(file.path),
                    usecols=file.columns,
                    dtype=dtypes,
                    blocksize=max(1024, int(block_rows * _bytes_per_line(file.path))),
                )[file.columns]
            except Exception as exc:  # dask reads a sample here, on the client: place its error as FileSource does
                if isinstance(exc, GradfitError):
                    raise
                raise file._locate_csv_error(exc) from None
            lengths = [int(n) for n in self._compute(frame.map_partitions(len))[0]]
            if encoder is None:
                pack = dask.delayed(_pack_frame, pure=True)
                blocks = [pack(part, self.n_features, self.n_outputs, self.has_weights)
                          for part in frame.to_delayed()]
            else:
                pack = dask.delayed(_encode_frame_block, pure=True)
                starts = np.concatenate([[0], np.cumsum(lengths)])
                blocks = [pack(part, self.names, encoder, file.missing, int(start), self.dtype)
                          for part, start in zip(frame.to_delayed(), starts)]
        self._set_blocks(blocks, lengths)
        self.n_samples -= file.rows_dropped  # the rows read; blocks keep the file's row numbers
        return self

    def _set_blocks(self, blocks, lengths):
        self._blocks = list(blocks)
        self._starts = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int64)
        self.n_samples = int(self._starts[-1])

    def __reduce__(self):
        return (SourceNames, (
            self.names.kind, self.names.label, self.names.feature_names, self.names.target_names,
            self.names.weight_name, self.names.fragment_starts, self.names.fragment_names,
        ))

    @property
    def n_blocks(self):
        return len(self._blocks)

    def persist(self):
        """Keep the blocks (as NumPy, only the needed columns) in the workers' memory; returns self."""
        dask = require("dask")
        pack = dask.delayed(_pack, pure=True)
        blocks = [pack(*block, self.dtype) if isinstance(block, tuple) else block for block in self._blocks]
        self._blocks = list(self._compute_with(dask.persist, *blocks))
        return self

    # -- messages ------------------------------------------------------------

    def describe(self):
        return self.names.describe()

    def where(self, row, column=None):
        return self.names.where(row, column)

    def column_name(self, column):
        return self.names.column_name(column)

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
            X, y, weight = _pack(*self._compute(block)[0], self.dtype)
            for offset in range(0, X.shape[0], step):
                stop = offset + step
                yield Chunk(X[offset:stop], y[offset:stop], None if weight is None else weight[offset:stop],
                            int(start) + offset)


def _dtype_arrow_type(dtype):
    """The Arrow type a pandas column of ``dtype`` becomes, for :func:`gradfit.sources.encoding.plan`."""
    import pyarrow as pa

    categories = getattr(dtype, "categories", None)
    if categories is not None:  # pandas category: strings, or numeric codes
        return pa.string() if categories.dtype.kind in "OUS" or str(categories.dtype).startswith("str") \
            else pa.dictionary(pa.int32(), pa.float64())
    if str(dtype) in ("bool", "boolean"):
        return pa.bool_()
    kind = getattr(getattr(dtype, "numpy_dtype", dtype), "kind", "O")
    if kind in "iuf":
        return pa.float64()
    if kind in "mM":
        return pa.timestamp("ns")  # not a category by "auto": refused as not numeric
    return pa.string()  # object and string columns: text


def _needs_encoder(frame, categorical):
    """Whether a Dask dataframe has columns for the encoder (see :func:`gradfit.sources.frames.needs_encoder`)."""
    if categorical is None:
        return False
    if not isinstance(categorical, str):
        return True
    return any(getattr(getattr(t, "numpy_dtype", t), "kind", "O") not in "iuf" for _, t in frame.dtypes.items())


def _distinct(series):
    """A partition's distinct non-missing values (merged by Dask's own reduction, on the cluster)."""
    return series.dropna().drop_duplicates()


def _encode_dask_frame(X, categorical, encoder, handle_unknown, dask, da):
    """``(features as a Dask array, encoder)``: the levels learned on the cluster, one compute for all columns."""
    from . import encoding

    names = [str(c) for c in X.columns]
    if encoder is None:
        types = [_dtype_arrow_type(t) for _, t in X.dtypes.items()]
        codings, references = encoding.plan(names, types, categorical, "the Dask input")
        learn = [c for c in codings if c.categorical]
        found = compute(*[X[c.name].map_partitions(_distinct).drop_duplicates() for c in learn])
        for coding, values in zip(learn, found):
            array = encoding.pandas_arrow(values.reset_index(drop=True))
            integral = encoding.pa.types.is_integer(encoding.plain_array(array).type)
            encoding.finish_levels(coding, encoding.distinct_values(array, coding.kind), integral, references,
                                   "the Dask input")
        encoder = encoding.TableEncoder(codings, handle_unknown)
    elif encoder.raw_names != names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    lengths = [int(n) for n in compute(X.map_partitions(len))[0]]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    encode = dask.delayed(_encode_partition, pure=True)
    blocks = [
        da.from_delayed(encode(part, encoder, int(start)), shape=(n, encoder.n_features), dtype=np.float64)
        for part, n, start in zip(X.to_delayed(), lengths, starts)
    ]
    return da.concatenate(blocks, axis=0), encoder


def _encode_partition(frame, encoder, start):
    """The features of a pandas partition (rows counted from 1 in messages, as for dataframes)."""
    from .encoding import missing_mask, pandas_arrow

    arrays = [pandas_arrow(frame.iloc[:, j]) for j in range(frame.shape[1])]
    for name, array in zip(encoder.raw_names, arrays):
        mask = missing_mask(array)
        if not mask.all():
            raise DataError(f"missing value in the Dask input at row {start + int(np.argmax(~mask)) + 1}, "
                            f"column {name!r}")
    where = lambda row, name: f"the Dask input, row {start + row + 1}, column {name!r}"  # noqa: E731
    return encoder.encode(arrays, np.float64, where)


def _pack_frame(frame, n_features, n_outputs, has_weights):
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    d, k = n_features, n_outputs
    return values[:, :d].copy(), values[:, d : d + k].copy(), values[:, d + k].copy() if has_weights else None


def _bytes_per_line(path):
    """Mean line length of a text file's first 64 KiB, to size CSV blocks in rows."""
    with open(path, "rb") as handle:
        sample = handle.read(1 << 16)
    return len(sample) / max(1, sample.count(b"\n"))


def _column_names(obj):
    """A dataframe's string column names (a series: its name), else None."""
    if not hasattr(obj, "index"):  # an array
        return None
    names = [obj.name] if obj.ndim == 1 else list(obj.columns)
    return names if all(isinstance(name, str) for name in names) else None


def _to_arrays(objects, dask, da):
    """Dask arrays with known row chunks for each of X, y, weights.

    Dask dataframes and series become arrays through their partitions (their
    lengths counted in one compute for all of them); NumPy and pandas inputs
    are sent to the workers once, split like X.
    """
    frames = [i for i, obj in enumerate(objects) if is_dask_collection(obj) and hasattr(obj, "map_partitions")
              and not hasattr(obj, "chunks")]
    for i in frames:
        for column, dtype in _dtypes(objects[i]):
            if not (dtype.kind in "biuf"):
                raise DataError(f"column {column!r} has dtype {dtype}, which is not numeric")
    counted = compute(*[objects[i].map_partitions(len) for i in frames]) if frames else ()
    arrays = list(objects)
    for i, lengths in zip(frames, counted):
        arrays[i] = _frame_to_array(objects[i], [int(n) for n in lengths], dask, da)
    for i, array in enumerate(arrays):
        if is_dask_collection(array) and any(np.isnan(n) for n in array.chunks[0]):
            arrays[i] = array.compute_chunk_sizes()  # one compute: the rows of each block
    reference = next((a for a in arrays if is_dask_collection(a)), None)
    for i, obj in enumerate(arrays):
        if not is_dask_collection(obj):
            values = np.asarray(obj)
            if reference is not None and values.ndim >= 1 and values.shape[0] == reference.shape[0]:
                chunks = (reference.chunks[0],) + tuple((n,) for n in values.shape[1:])
            else:
                chunks = "auto"
            # Sent once, not with every compute.
            arrays[i] = da.from_array(values, chunks=chunks).persist()
    return arrays


def _dtypes(frame):
    """``(column, NumPy dtype)`` pairs of a dataframe or series (object for non-numeric pandas types)."""
    dtypes = {frame.name: frame.dtype} if frame.ndim == 1 else frame.dtypes
    pairs = []
    for name, dtype in dtypes.items():
        # pandas' nullable types (Int64, Float64, boolean) carry their NumPy type
        dtype = getattr(dtype, "numpy_dtype", dtype)
        try:
            pairs.append((name, np.dtype(dtype)))
        except TypeError:
            pairs.append((name, np.dtype(object)))
    return pairs


def _frame_to_array(frame, lengths, dask, da):
    dtypes = [dtype for _, dtype in _dtypes(frame)]
    dtype = np.dtype(np.float32 if all(t == np.float32 for t in dtypes) else np.float64)
    values = dask.delayed(_frame_values, pure=True)
    blocks = [
        da.from_delayed(values(part, dtype), shape=(n, len(dtypes)) if frame.ndim == 2 else (n,), dtype=dtype)
        for part, n in zip(frame.to_delayed(), lengths)
    ]
    return da.concatenate(blocks, axis=0)


def _predict_block(X, coef, intercept):
    return np.asarray(X, dtype=np.float64) @ coef + intercept


def predict_dask(model, X):
    """A fitted model's predictions on a Dask array or dataframe, as a lazy Dask array.

    Shape (n_samples,) for a single output, else (n_samples, n_outputs); a
    dataframe's columns must be the model's features, in order.
    """
    da = require("dask.array")
    names = getattr(model, "feature_names_in_", None)
    encoder = getattr(model, "encoder_", None)
    if encoder is not None and hasattr(X, "columns"):
        encoder.handle_unknown = model.handle_unknown
        X, _ = _encode_dask_frame(X, None, encoder, model.handle_unknown, require("dask"), da)
    elif hasattr(X, "columns"):
        if names is not None and list(X.columns) != list(names):
            raise ValueError(f"X has columns {list(X.columns)}, but the model was fitted on {list(names)}")
        X = X.to_dask_array()
    if X.ndim != 2 or X.shape[1] != len(np.atleast_2d(model.coef_)[0]):
        raise ValueError(f"X has shape {X.shape}, but the model expects {model.n_features_in_} features")
    coef = np.atleast_2d(model.coef_).T.astype(np.float64)
    intercept = np.atleast_1d(model.intercept_).astype(np.float64)
    out = X.rechunk({1: -1}).map_blocks(
        _predict_block, coef, intercept, chunks=(X.chunks[0], (coef.shape[1],)), dtype=np.float64
    )
    return out[:, 0] if model._y_ndim == 1 else out


# -- computing on a cluster, and what can go wrong there ------------------------


def compute(*collections):
    """``dask.compute(*collections)``; on a distributed cluster, never a wait without end.

    Dask reruns a task whose worker died while running it (up to
    ``distributed.scheduler.allowed-failures`` deaths, then ``KilledWorker``)
    and recomputes results lost with a worker from their graph (the tasks are
    pure), so a result is whole or does not come. What Dask does not bound is
    a wait with no worker left: it waits for workers to come. So the
    computation is watched every :data:`WATCH_SECONDS`, and stopped after
    :func:`no_workers_timeout` seconds without a worker. Failures of the
    cluster come out as :class:`ClusterError`.
    """
    dask = require("dask")
    client = _active_client()
    if client is None:
        return dask.compute(*collections)
    address = getattr(client.scheduler, "address", None)
    try:
        return _compute_watched(client, collections, address)
    except GradfitError:
        raise
    except Exception as exc:
        failure = cluster_failure(exc, address)
        if failure is None:
            raise
        raise failure from None


def no_workers_timeout():
    """Seconds a computation may wait with no worker in the cluster.

    Dask's ``distributed.scheduler.no-workers-timeout`` where set (a scheduler
    started with it fails such tasks after that long too), else
    :data:`NO_WORKERS_TIMEOUT`.
    """
    dask = require("dask")
    from dask.utils import parse_timedelta

    configured = dask.config.get("distributed.scheduler.no-workers-timeout", None)
    if configured is None:
        return NO_WORKERS_TIMEOUT
    return float(parse_timedelta(configured, default="s"))


def _active_client():
    """The ``distributed.Client`` that ``dask.compute`` would use now, or ``None``."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None  # never imported: no client exists
    from dask.base import get_scheduler

    client = getattr(get_scheduler(), "__self__", None)  # a client's scheduler is its bound ``get``
    return client if isinstance(client, distributed.Client) else None


def _compute_watched(client, collections, address):
    distributed = require("distributed")
    futures = client.compute(list(collections))
    timeout = no_workers_timeout()
    alone_since = None  # when the cluster was first seen with no worker
    while True:
        try:
            distributed.wait(futures, timeout=WATCH_SECONDS)
            break
        except (TimeoutError, distributed.TimeoutError):
            pass  # still running: look at the cluster
        if _count_workers(client, address):
            alone_since = None
            continue
        now = time.monotonic()
        alone_since = now if alone_since is None else alone_since
        if now - alone_since >= timeout:
            # Dropping the futures releases the tasks on the scheduler.
            raise ClusterError(
                f"no Dask worker left in the cluster at {address} for {timeout:g} s (they died and none "
                "came back); the fit stopped: start workers, or set distributed.scheduler.no-workers-timeout "
                "to wait longer"
            )
    return tuple(client.gather(futures))


def _count_workers(client, address):
    """Workers in the cluster now, as the scheduler says (it has :data:`ANSWER_TIMEOUT` to)."""
    if client.status != "running":  # "connecting" once the scheduler is lost, "closed" after
        raise _lost_scheduler(address)
    try:
        info = client.sync(client.scheduler.identity, n_workers=0, callback_timeout=ANSWER_TIMEOUT)
    except TimeoutError:
        raise ClusterError(
            f"the Dask scheduler at {address} did not answer within {ANSWER_TIMEOUT:g} s; the fit stopped"
        ) from None
    except OSError as exc:  # CommClosedError is one
        raise _lost_scheduler(address, exc) from None
    return int(info.get("n_workers", len(info.get("workers", ()))))


def _lost_scheduler(address, exc=None):
    where = f" at {address}" if address else ""
    why = f": {_one_line(exc)}" if exc is not None else ""
    return ClusterError(
        f"lost the connection to the Dask scheduler{where} (it stopped, or the network failed{why}); the fit stopped"
    )


def cluster_failure(exc, address=None):
    """A :class:`ClusterError` saying what ``exc`` (raised by Dask) means, or ``None`` when it is not the cluster's."""
    if "distributed" not in sys.modules:
        return None
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker, NoValidWorkerError

    where = f" at {address}" if address else ""
    if isinstance(exc, KilledWorker):
        tries = exc.allowed_failures + 1
        last = getattr(exc.last_worker, "address", exc.last_worker)
        return ClusterError(
            f"Dask gave up on task {exc.task!r} after {tries} worker{'s' if tries > 1 else ''} died running it "
            f"(the last: {last}; distributed.scheduler.allowed-failures is {exc.allowed_failures}); "
            "the fit stopped, see the workers' logs (a worker out of memory is the usual cause)"
        )
    if isinstance(exc, NoValidWorkerError):
        return ClusterError(
            f"no Dask worker could run task {exc.task!r} for {exc.args[4]:g} s "
            "(distributed.scheduler.no-workers-timeout); the fit stopped"
        )
    if isinstance(exc, CancelledError):
        reason = getattr(exc, "reason", None)
        groups = getattr(exc, "error_groups", None)
        if reason is None and groups:
            reason = groups[0].reason
        if reason == "scheduler-connection-lost":
            return _lost_scheduler(address)
        return ClusterError(f"Dask cancelled the fit's computation (reason: {reason or 'unknown'}); the fit stopped")
    if isinstance(exc, CommClosedError):
        return ClusterError(f"lost the connection to the Dask cluster{where} ({_one_line(exc)}); the fit stopped")
    if isinstance(exc, TimeoutError):
        return ClusterError(f"the Dask cluster{where} did not answer in time ({_one_line(exc)}); the fit stopped")
    return None


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


# -- clusters -------------------------------------------------------------------


def parse_address(text):
    """``local`` / ``local:N`` → ``("local", N)``; ``tcp://HOST:PORT`` (or another scheme) → itself.

    Raises ``ValueError`` with a one-line explanation otherwise.
    """
    text = text.strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or "2"
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"invalid value {text!r}: expected local or local:N with N ≥ 1 worker processes")
        return ("local", int(count))
    if "://" in text:
        return text
    raise ValueError(f"invalid value {text!r}: expected local[:N] or a scheduler address such as tcp://HOST:8786")


@contextlib.contextmanager
def connect(address):
    """A ``distributed.Client`` for ``address`` (see :func:`parse_address`), closed on exit.

    ``("local", N)`` starts a LocalCluster of N single-threaded worker
    processes on this machine; a scheduler address joins a running cluster.
    Either way, ``dask.compute`` uses this client until the block ends.
    """
    distributed = require("distributed")
    if isinstance(address, tuple):
        _, count = address
        cluster = distributed.LocalCluster(
            n_workers=count, threads_per_worker=1, processes=True,
            dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,  # gradfit reports errors itself
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise GradfitError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        yield client
