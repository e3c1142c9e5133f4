"""What of a Dask source travels to the workers: its names and where its values are, never its data."""

from __future__ import annotations

import numpy as np

from ..base import Source, array_position, file_row_position


class SourceNames(Source):
    """The names of a source and where its values are, without its data.

    The per-chunk functions engines send to the workers name bad values through
    the source they were given (``source.where(row, column)``); a
    :class:`~gradfit.sources.DaskSource` pickles as this, so that those
    closures never drag the collections (whose graphs may hold the data
    itself) along. The workers that read a file name its bad values through
    it too (:class:`~gradfit.sources.decode.ChunkDecoder`).

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

    def __reduce__(self):
        return (SourceNames, (
            self.kind, self.label, self.feature_names, self.target_names,
            self.weight_name, self.fragment_starts, self.fragment_names,
        ))

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
