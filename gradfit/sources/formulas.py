"""Rows of a table through a formula (:mod:`gradfit.formula`): a DataFrame, or a file streamed.

The design's levels are learned in one pass over the chunks when the source
is made (with the missing values counted, for ``missing="drop"``); every
later pass encodes each chunk with them. A Dask dataframe goes through
:func:`dask_formula_source` (levels merged from the partitions, encoded on
the workers).

A factor of many levels that the design keeps as level codes
(:meth:`~gradfit.formula.FormulaDesign.choose_block`) is offered as the
source's ``block_candidate``: after ``use_blocks(True)`` the chunks carry its
``codes`` and the rest of the formula's features, never its dummies (made
from the codes, within ``MAX_LEVELS``, for fits that ask for them). Its
levels are learned in the same learning pass as the other factors'.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from ..formula import FormulaDesign, frame_missing
from .base import Chunk, Source, fold_in_threads, worker_threads


class FormulaSource(Source):
    """A table (path or pandas DataFrame) through a formula.

    Parameters
    ----------
    data : str, path-like or pandas.DataFrame
    formula : str, optional
        Needed unless ``design`` (a fitted model's) is given.
    sample_weight : str or array-like, optional
        A column name (files, frames) or, for a frame, the weights.
    missing : {"error", "drop", "keep"}
        ``"keep"`` (predictions): a row with a missing value gets NaN features.
    design : FormulaDesign, optional
        Levels learned before; else learned from ``data`` now.
    targets : bool
        Read the formula's left-hand side (training, evaluation) or not (predictions).
    """

    def __init__(self, data, formula=None, *, sample_weight=None, missing="error", design=None,
                 handle_unknown="error", targets=True, batch_rows=65536):
        learning = design is None
        self.design = design or FormulaDesign(formula, handle_unknown=handle_unknown)
        self.design.handle_unknown = handle_unknown
        self.missing = missing
        self.targets = targets
        self.notes = []
        self.missing_counts, self.rows_dropped = None, 0
        variables = self.design.feature_variables + (
            [v for v in self.design.target_variables if v not in self.design.feature_variables] if targets else [])
        self._weight_values = None
        weight_column = sample_weight if isinstance(sample_weight, str) else None
        if isinstance(data, (str, os.PathLike)):
            from .encoding import ColumnCoding, TableEncoder
            from .files import FileSource

            features = [v for v in variables if v not in self.design.target_variables or not targets]
            self.file = FileSource(
                data, target=self.design.target_variables if targets else [], features=features,
                sample_weight=weight_column, encoder=TableEncoder([ColumnCoding(v) for v in features]),
                batch_rows=batch_rows, as_stored=True,
            )
            self.frame = None
            self.label = self.file.describe()
        else:
            self.file, self.frame, self.label = None, data, "the input"
            missing_columns = [v for v in variables + ([weight_column] if weight_column else [])
                               if v not in data.columns]
            if missing_columns:
                raise DataError(f"the input has no column {missing_columns[0]!r} (the formula names it)")
            if sample_weight is not None and weight_column is None:
                self._weight_values = np.asarray(sample_weight, dtype=np.float64)
        self.weight_name = weight_column or ("sample_weight" if self._weight_values is not None else None)
        self.has_weights = self.weight_name is not None
        self._columns = variables + ([weight_column] if weight_column else [])
        self._scan(learning)

    # -- reading --------------------------------------------------------------------

    def _frames(self):
        """``(DataFrame, first row)`` of the needed columns, index = row numbers (0-based)."""
        if self.file is None:
            frame = self.frame[[c for c in dict.fromkeys(self._columns)]].copy()
            frame.index = np.arange(len(frame))
            if self._weight_values is not None:
                frame["__weight__"] = self._weight_values
            yield frame, 0
            return
        for batch, start in self.file._raw_batches(list(dict.fromkeys(self._columns)), as_stored=True):
            frame = batch.to_pandas()
            frame.index = np.arange(start, start + len(frame))
            yield frame, start

    def _where(self, row, column):
        if self.file is None:
            return f"the input, row {row} (0-based), column {column!r}"
        return f"{self.label}, {self.file.row_position(row)}, column {column!r}"

    def _clean(self, frame):
        used = list(dict.fromkeys(self._columns))
        if self.missing == "keep":
            return frame, {}, 0
        return frame_missing(frame, used, self.missing, self._where)

    def _scan(self, learning):
        rows = kept = 0
        counts = {}
        probe = None
        for frame, _ in self._frames():
            rows += len(frame)
            frame, found, _ = self._clean(frame)
            for column, n in found.items():
                counts[column] = counts.get(column, 0) + n
            kept += len(frame)
            if len(frame) == 0:
                continue
            if probe is None:
                probe = frame.iloc[:1]
            if learning:
                self.design.learn(frame)
        if probe is None:
            raise DataError(f"{self.label} has no data rows" + (" left after dropping missing values"
                                                                 if rows else ""))
        if learning:
            self.design.finish()
        if self.design.block is not None:  # a factor of many levels: offered as level codes (use_blocks)
            self.block_candidate = self.design.block_layout(probe)
        X, y, self.feature_names, target_names = self.design.transform(probe, targets=self.targets,
                                                                       where=self._probe_where(probe))
        self.target_names = target_names if self.targets else []
        self.n_features, self.n_outputs = len(self.feature_names), len(self.target_names)
        self.dtype = np.dtype(np.float64)
        self.n_samples = kept
        if self.missing == "drop":
            self.missing_counts = {c: n for c, n in counts.items() if n}
            self.rows_dropped = rows - kept
            if self.rows_dropped:
                shown = ", ".join(f"{name!r}: {n}" for name, n in self.missing_counts.items())
                self.notes.append(f"missing values: {self.rows_dropped} of {rows} rows left out ({shown})")

    def _probe_where(self, probe):
        return lambda row, column: self._where(int(probe.index[row]), column)

    def chunks(self):
        """The rows through the formula; the :attr:`block_candidate` factor as ``Chunk.codes`` after ``use_blocks``."""
        self.check_dense_levels()
        step = self.rows_per_chunk()
        position = 0
        for frame, _ in self._frames():
            frame, _, _ = self._clean(frame)
            for offset in range(0, len(frame), step):
                part = frame.iloc[offset:offset + step]
                where = lambda row, column, part=part: self._where(int(part.index[row]), column)  # noqa: E731
                codes = None
                if self.block_layout is not None:  # never a dense one-hot block of the factor
                    X, codes, y, _ = self.design.transform_codes(part, where=where, targets=self.targets)
                else:
                    X, y, _, _ = self.design.transform(part, where=where, targets=self.targets)
                if self.missing == "keep":
                    gaps = part[self.design.feature_variables].isna().any(axis=1).to_numpy()
                    X[gaps] = np.nan
                if y is None:
                    y = np.empty((len(part), 0))
                weight = None
                if self.has_weights:
                    column = self.weight_name if self._weight_values is None else "__weight__"
                    weight = part[column].to_numpy(dtype=np.float64)
                # rows keep their numbers in the table in messages, dropped rows or not
                yield Chunk(X, y, weight, position, part.index.to_numpy(), codes)
                position += len(part)

    def reduce(self, function, combine):
        threads = worker_threads()
        if threads < 2:
            return super().reduce(function, combine)
        return fold_in_threads(function, combine, self.chunks(), threads)

    def describe(self):
        return self.label

    def row_position(self, row):
        return self.file.row_position(row) if self.file is not None else f"row {row}"


# -- Dask --------------------------------------------------------------------------


def _learn_partition(frame, design):
    """A partition's levels (formulaic's state), for merging on the client."""
    design = FormulaDesign(design.formula)
    frame = frame.dropna()
    if len(frame):
        design.learn(frame)
    return design._found, design._chunks_learned


def _encode_partition(frame, design, variables, start, missing):
    frame = frame.copy()
    frame.index = np.arange(start, start + len(frame))
    where = lambda row, column: f"the Dask input, row {row + 1}, column {column!r}"  # noqa: E731
    frame, _, _ = frame_missing(frame, variables, missing, where)
    if len(frame) == 0:
        return np.empty((0, len(design.feature_names_))), np.empty((0, len(design.target_names_)))
    X, y, _, _ = design.transform(frame, where=lambda row, column: where(int(frame.index[row]), column))
    return X, y


def _kept_rows(frame, variables, missing):
    return int(frame[variables].notna().all(axis=1).sum()) if missing == "drop" else len(frame)


def dask_formula_source(frame, formula, missing="error", handle_unknown="error", design=None):
    """A :class:`~gradfit.sources.DaskSource` of a Dask dataframe through a formula.

    The levels of each partition are found on the workers and merged; the
    encoded blocks are made on the workers too.
    """
    from .dask import DaskSource, compute, require

    dask = require("dask")
    da = require("dask.array")
    learning = design is None
    design = design or FormulaDesign(formula, handle_unknown=handle_unknown)
    design.handle_unknown = handle_unknown
    variables = list(dict.fromkeys(design.target_variables + design.feature_variables))
    absent = [v for v in variables if v not in frame.columns]
    if absent:
        raise DataError(f"the Dask input has no column {absent[0]!r} (the formula names it)")
    frame = frame[variables]
    parts = frame.to_delayed()
    if learning:
        learned = compute(*[dask.delayed(_learn_partition)(part, design) for part in parts])
        for found, chunks in learned:
            for factor, levels in found.items():
                design._found.setdefault(factor, set()).update(levels)
        design.finish()
    head = frame.head(1)
    X, y, design.feature_names_, design.target_names_ = design.transform(head)
    lengths = [int(n) for n in compute(*[dask.delayed(_kept_rows)(p, variables, missing) for p in parts])]
    raw = [int(n) for n in compute(frame.map_partitions(len))[0]]
    starts = np.concatenate([[0], np.cumsum(raw)])
    if design.block is not None:  # a factor of many levels: level codes made on the workers
        source = _dask_block_source(frame, head, design, variables, missing, lengths, starts)
    else:
        encode = dask.delayed(_encode_partition, pure=True, nout=2)
        Xs, ys = [], []
        for part, n, start in zip(parts, lengths, starts):
            block_X, block_y = encode(part, design, variables, int(start), missing)
            Xs.append(da.from_delayed(block_X, shape=(n, len(design.feature_names_)), dtype=np.float64))
            ys.append(da.from_delayed(block_y, shape=(n, len(design.target_names_)), dtype=np.float64))
        source = DaskSource(da.concatenate(Xs), da.concatenate(ys), feature_names=design.feature_names_,
                            target_names=design.target_names_, categorical=None)
    source.design = design
    source.missing_counts = None
    source.rows_dropped = int(sum(raw) - sum(lengths))
    if missing == "drop":
        gaps = compute(frame.isna().sum())[0]
        source.missing_counts = {str(c): int(n) for c, n in gaps.items() if n}
        if source.rows_dropped:
            shown = ", ".join(f"{name!r}: {n}" for name, n in source.missing_counts.items())
            source.notes.append(f"missing values: {source.rows_dropped} of {sum(raw)} rows left out ({shown})")
    return source


def _dask_block_source(frame, head, design, variables, missing, lengths, starts):
    """A :class:`~gradfit.sources.DaskSource` whose blocks are chunks made on the workers (:func:`_codes_partition`).

    The design's :attr:`~gradfit.formula.FormulaDesign.block` factor comes as
    level codes (``block_candidate``); a fit that needs dense dummies gets
    them made on the workers, within ``MAX_LEVELS`` (as for a Dask
    dataframe's categorical column, :mod:`gradfit.sources.dask.frame_blocks`).
    """
    from .dask import DaskSource, require
    from .dask.names import SourceNames

    dask = require("dask")
    source = DaskSource.__new__(DaskSource)
    source._file, source.encoder, source.notes = None, None, []
    source.feature_names, source.target_names = list(design.feature_names_), list(design.target_names_)
    source.n_features, source.n_outputs = len(source.feature_names), len(source.target_names)
    source.y_ndim = 1 if source.n_outputs == 1 else 2
    source.dtype, source.has_weights, source.frame_feature_names = np.dtype(np.float64), False, None
    source.names = SourceNames("frame", "the Dask input", source.feature_names, source.target_names)
    source.block_candidate = design.block_layout(head)  # ``head``: the frame's first row (pandas)
    read = dask.delayed(_codes_partition, pure=True)
    shared = dask.delayed(design, pure=True)  # one key in the graph, not a copy in every task
    source._set_blocks([read(part, shared, variables, int(start), missing)
                        for part, start in zip(frame.to_delayed(), starts)], lengths)
    source._collections = (frame,)
    return source


def _codes_partition(frame, design, variables, start, missing):
    """On a worker: a partition as a :class:`Chunk`: the rest of the formula's features, the factor's codes.

    Rows keep their numbers in the input (``positions``) where rows with a
    missing value were left out.
    """
    frame = frame.copy()
    frame.index = np.arange(start, start + len(frame))
    where = lambda row, column: f"the Dask input, row {row + 1}, column {column!r}"  # noqa: E731
    frame, _, _ = frame_missing(frame, variables, missing, lambda row, column: where(int(frame.index[row]), column))
    layout = design._layout
    if len(frame) == 0:
        return Chunk(np.empty((0, layout["n_dense"])), np.empty((0, len(design.target_names_))), None, start,
                     np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    X, codes, y, _ = design.transform_codes(frame, where=lambda row, column: where(int(frame.index[row]), column))
    return Chunk(X, y, None, start, frame.index.to_numpy(), codes)
