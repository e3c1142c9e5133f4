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
from .. import encoding
from ..base import Chunk, NamedBy, Source
from .arrays import column_names, to_arrays
from .categories import arrow_type_of, needs_encoder
from .compute import cluster_failure, compute
from .file_blocks import csv_blocks, parquet_blocks, row_group_runs
from .file_levels import learn_levels
from .frame_blocks import FrameReading, frame_blocks, learn, missing_note
from .names import SourceNames
from .optional import require
from .tasks import _block_rows, _fold_block, _pack, _take_block, block_chunk, merge_tree, sub_chunks

#: a block read from a file holds about this many bytes of float64 rows
BLOCK_BYTES = 64 * 1024 * 1024


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
                 categorical="auto", encoder=None, handle_unknown="error", missing="error"):
        dask = require("dask")
        da = require("dask.array")
        frame_names = column_names(X)
        target_frame_names = column_names(y)
        self.encoder, self.notes, self.missing_counts, self.rows_dropped = None, [], None, 0
        self._file = None
        if missing not in ("error", "drop"):
            raise ValueError(f"missing must be 'error' or 'drop', not {missing!r}")
        if frame_names is not None and X.ndim == 2 and (
                encoder is not None or missing == "drop" or needs_encoder(X, categorical)):
            # categories or gaps: found on the cluster, each partition made a chunk where it is
            self._init_frame(X, y, sample_weight, target_names or target_frame_names, categorical, encoder,
                             handle_unknown, missing, dask, da)
            return
        if missing == "drop" and frame_names is None and getattr(X, "ndim", 0) == 2 and hasattr(X, "chunks"):
            # an array: its columns named as features, so that its gaps are found and counted as a dataframe's
            if any(np.isnan(n) for n in X.chunks[0]):
                X = X.compute_chunk_sizes()
            names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(X.shape[1])]
            frame = require("dask.dataframe").from_dask_array(X.rechunk({1: -1}), columns=names)
            self._init_frame(frame, y, sample_weight, target_names or target_frame_names, None, None,
                             handle_unknown, missing, dask, da)
            self.frame_feature_names = self.encoder = None  # no names of its own (feature_names_in_), no categories
            return
        if missing == "drop":
            raise ValueError("missing='drop' on Dask needs a 2-dimensional array or a dataframe as X")
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

    def _init_frame(self, X, y, sample_weight, target_names, categorical, encoder, handle_unknown, missing,
                    dask, da):
        """A dataframe through :mod:`~gradfit.sources.dask.frame_blocks`: levels, gaps and blocks on the workers."""
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            raise DataError("the Dask input has two columns of the same name")
        rows = [int(n) for n in self._compute(X.map_partitions(len))[0]]
        starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        y, weight = to_arrays([y, sample_weight] if sample_weight is not None else [y], dask, da,
                              rows=tuple(rows)) + ([None] if sample_weight is None else [])
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have 1 or 2 dimensions, not shape {y.shape}")
        if weight is not None and weight.ndim != 1:
            raise ValueError(f"sample_weight must be 1-dimensional, not of shape {weight.shape}")
        lengths = [sum(rows), y.shape[0]] + ([] if weight is None else [weight.shape[0]])
        if len(set(lengths)) > 1:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
        for name, array in (("y", y), ("sample_weight", weight)):
            if array is not None and array.dtype.kind not in "biuf":
                raise DataError(f"{name} has dtype {array.dtype}, which is not numeric")
        self.y_ndim = y.ndim
        self.n_outputs = 1 if y.ndim == 1 else int(y.shape[1])
        target_names = list(target_names or (["y"] if self.n_outputs == 1 else
                                             [f"y{j}" for j in range(self.n_outputs)]))
        ys = y.rechunk({0: tuple(rows), 1: -1} if y.ndim == 2 else {0: tuple(rows)}).to_delayed().ravel()
        weights = [None] * len(rows) if weight is None else weight.rechunk({0: tuple(rows)}).to_delayed().ravel()
        label = "the Dask input"
        if encoder is None:
            types = [arrow_type_of(t) for _, t in X.dtypes.items()]
            codings, references = encoding.plan(names, types, categorical, label)
        elif encoder.raw_names != names:
            raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
        else:
            codings, references = encoder.columns, {}
        self.has_weights = weight is not None
        self.target_names = target_names
        self.names = SourceNames("frame", label, names, target_names, "sample_weight" if self.has_weights else None)
        reading = FrameReading(codings, None, missing, self.names)
        kept, counts, levels = learn(X, ys, weights, reading, starts[:-1])
        if encoder is None:
            for coding in codings:
                if coding.categorical:
                    values, integral = levels.get(coding.name, (set(), True))
                    encoding.finish_levels(coding, values, integral, references, label, encoding.MAX_BLOCK_LEVELS)
            encoder = encoding.TableEncoder(codings, handle_unknown)
            encoder.choose_block(label)
        else:
            encoder.block = None
            encoder.choose_block(label)  # a model file keeps no block: the same column as the fit's
        if encoder.block is not None:
            self.block_candidate = encoder.block_layout()  # kept as codes once a fit asks (use_blocks)
        self.encoder = encoder
        if missing == "drop":
            labels = names + [", ".join(target_names)] + (["sample_weight"] if self.has_weights else [])
            self.rows_dropped = int(sum(rows) - kept.sum())
            self.missing_counts, note = missing_note(counts, labels, self.rows_dropped, sum(rows))
            self.notes = [note] if note else []
        self.feature_names = encoder.feature_names
        self.n_features = len(self.feature_names)
        self.names.feature_names, self.names.n_features = self.feature_names, self.n_features
        self.frame_feature_names = names
        self.dtype = np.dtype(np.float64)
        reading.encoder = encoder
        # Blocks in the rows kept: minibatches take rows by that count; chunks name rows by their positions.
        self._set_blocks(frame_blocks(X, ys, weights, reading, starts[:-1]), kept)
        if self.n_samples < 1 or self.n_features < 1:
            raise ValueError(f"X with {self.n_samples} rows (kept) and {self.n_features} features: "
                             "at least one row and one feature are needed")
        self._collections = (X, y, weight)

    @classmethod
    def from_file(cls, path, target, features=None, sample_weight=None, block_rows=None, **table_options):
        """A CSV or Parquet file (or folder, or glob) read by the workers, not the client.

        The client reads the schema and the Parquet footers (to check the
        columns and know every row group's rows); the workers read the data,
        only the needed columns. Parquet blocks are runs of row groups of about
        :data:`BLOCK_BYTES`, in the same file order as :class:`FileSource`, so
        bad values are named by file and row. A CSV file is split by
        ``dask.dataframe.read_csv`` and costs one more pass to count each
        block's rows, unless the pass that learns its levels counted them
        (convert it to Parquet for repeated use).

        The path must be readable at the same place on the workers (a shared
        file system, or a local cluster).

        ``table_options`` (``exclude``, ``categorical``, ``missing``) are
        :class:`FileSource`'s: the workers learn the categories' levels (and
        count missing values) in one pass, merged on the cluster
        (:mod:`~gradfit.sources.dask.file_levels`; the client never reads the
        data rows), and encode their blocks with them; the same compute
        gives the statistics (``learned_statistics``: a column of many
        levels' blocks, or the dense ones), so that a fit on them computes
        no more. A CSV file's partitions
        of that pass are counted by it, and are the blocks unless dummies
        widen the rows much (then they are cut again and counted by one more
        pass). With ``missing="drop"``, rows keep their place in the file for
        messages; minibatches count the rows kept (each block's, counted by
        the workers in that pass).
        """
        from ..files import FileSource

        require("dask")  # before the file is read: a missing Dask is said at once
        file = FileSource(path, target, features=features, sample_weight=sample_weight, **table_options)
        self = cls.__new__(cls)
        self._file = file
        learned = None
        if file.levels_pending:
            # the workers find the levels and the missing values (file_levels), in units sized by
            # the raw columns: the encoded width is known only after
            raw_rows = int(block_rows or max(1024, BLOCK_BYTES // (8 * (len(file.columns) + 1))))
            learned = learn_levels(file, raw_rows, self._compute)
            if learned.statistics is not None:
                # the statistics (a column of many levels: its blocks) from the same compute: the fit reads no more
                self.learned_statistics = learned.statistics
        self.encoder, self.notes = file.encoder, file.notes
        self.block_candidate = file.block_candidate  # its blocks carry the codes (file_blocks._decoder)
        self.missing_counts, self.rows_dropped = file.missing_counts, file.rows_dropped
        for name in ("n_features", "n_outputs", "feature_names", "target_names", "has_weights", "dtype"):
            setattr(self, name, getattr(file, name))
        self.y_ndim = 1 if file.n_outputs == 1 else 2
        self.frame_feature_names = None
        layout = file.block_candidate  # a column kept as codes is one value a row, not its dummies
        width = (file.n_features if layout is None else layout["n_dense"] + 1) + file.n_outputs + 1
        block_rows = int(block_rows or max(1024, BLOCK_BYTES // (8 * width)))
        kept = None  # each block's rows kept, where the workers counted them
        if file.format == "parquet":
            self.names, blocks, lengths = parquet_blocks(file, block_rows)
            if learned is not None:  # the learning units' row groups, summed by block
                firsts = np.cumsum([0] + [len(groups) for _, groups, _, _ in row_group_runs(file, block_rows)])[:-1]
                kept = np.add.reduceat(learned.kept, firsts)
        elif learned is not None and 2 * block_rows >= raw_rows:
            # the partitions the levels were learned on suit the encoded rows: they are the blocks, counted
            self.names, blocks, lengths = csv_blocks(file, block_rows, self._compute, (learned.frame, learned.rows))
            kept = learned.kept
        else:
            self.names, blocks, lengths = csv_blocks(file, block_rows, self._compute)
        self._set_blocks(blocks, lengths)
        self.n_samples -= file.rows_dropped  # the rows read; blocks keep the file's row numbers
        if kept is not None and self.rows_dropped:
            self._kept_starts = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        return self

    def _set_blocks(self, blocks, lengths):
        self._blocks = list(blocks)
        self._starts = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int64)
        self.n_samples = int(self._starts[-1])
        self._kept_starts = None  # a file's blocks' first rows among the rows kept (take), counted when needed

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
        step, dense = self.rows_per_chunk(), self._dense_layout()
        partials = [
            fold(function, combine, block, int(start), step, self.dtype, dense)
            for block, start in zip(self._blocks, self._starts[:-1])
        ]
        return self._compute(merge_tree(partials, combine))[0]

    def _dense_layout(self):
        """What the workers need to make the codes' column dense dummies, when a fit asks for dummies; else ``None``.

        The blocks of a source with a :attr:`block_candidate` always carry its
        level codes (so a fit on the blocks never sees a dummy); a fit that
        needs dense features gets them made on the workers, within ``MAX_LEVELS``.
        """
        layout = self.block_candidate
        if layout is None or self.block_layout is not None:
            return None
        self.check_dense_levels()
        return {key: layout[key] for key in ("reference", "dense_index", "level_index")}

    def take(self, rows):
        """The :class:`Chunk` of the sorted global ``rows``, gathered from their blocks (one compute).

        ``rows`` count the rows kept (where rows were left out for missing
        values); the chunk's ``positions`` name each row's place in the input.
        """
        rows = np.asarray(rows, dtype=np.int64)
        codes = self.block_layout is not None
        if rows.size == 0:
            width = self.block_layout["n_dense"] if codes else self.n_features
            return Chunk(np.empty((0, width), self.dtype), np.empty((0, self.n_outputs)),
                         np.empty(0) if self.has_weights else None, 0, None,
                         np.empty(0, dtype=np.int64) if codes else None)
        dask = require("dask")
        take = dask.delayed(_take_block, pure=True)
        dense = self._dense_layout()
        starts = self._take_starts()
        block_of = np.searchsorted(starts, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(block_of)) + 1
        pieces = []
        for group in np.split(np.arange(rows.size), cuts):
            block = block_of[group[0]]
            pieces.append(take(self._blocks[block], rows[group] - starts[block], self.dtype, dense,
                               int(self._starts[block])))
        parts = self._compute(*pieces)

        def joined(i):
            return None if parts[0][i] is None else np.concatenate([part[i] for part in parts])

        return Chunk(joined(0), joined(1), joined(2), int(rows[0]), joined(3), joined(4))

    def _take_starts(self):
        """Each block's first row among the rows kept, and the rows kept (length ``n_blocks + 1``).

        :attr:`_starts` but for a file read with rows left out: its blocks are
        placed by the file's rows (the rows each block keeps are known once it
        is read), so the rows kept are counted on the workers once, at the
        first minibatch (cheap after :meth:`persist`, which minibatches call for).
        """
        if self._file is None or not self.rows_dropped:
            return self._starts
        if self._kept_starts is None:
            count = require("dask").delayed(_block_rows, pure=True)
            kept = self._compute(*[count(block) for block in self._blocks])
            self._kept_starts = np.concatenate([[0], np.cumsum(np.asarray(kept, dtype=np.int64))]).astype(np.int64)
        return self._kept_starts

    def chunks(self):
        """Bring the blocks to the client one at a time (engines use :meth:`reduce` instead)."""
        step = self.rows_per_chunk()
        for block, start in zip(self._blocks, self._starts[:-1]):
            chunk = block_chunk(self._compute(block)[0], int(start), self.dtype, self._dense_layout())
            yield from sub_chunks(chunk, step)
