"""A file's columns, as Arrow read them, made a :class:`~gradfit.sources.Chunk`.

The one place where a file's values are checked and converted: a missing
value named (or its row dropped, or kept as NaN), a 64-bit integer beyond
2**53 refused, categories encoded. :class:`~gradfit.sources.FileSource`
decodes its streamed batches here, and the Dask workers their Parquet row
groups and CSV partitions (:mod:`gradfit.sources.dask.file_blocks`), so a bad
value gets the same message wherever the file is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import DataError
from . import encoding
from .base import Chunk

#: the largest integer up to which float64 holds every integer exactly
EXACT_INTEGER = 2**53


@dataclass
class ChunkDecoder:
    """How a file's needed columns become a chunk; small and picklable (Dask's workers get one).

    Parameters
    ----------
    feature_columns : list of str
        The raw feature columns, as stored.
    target_columns : list of str
    weight_column : str or None
    encoder : TableEncoder or None
        Categories to dummies, and rows with missing values dropped or kept
        (``missing``); ``None`` for numeric columns read as they are, a
        missing value being an error.
    missing : {"error", "drop", "keep"}
    dtype : NumPy dtype of X

    The message methods come from ``names`` at each call (the
    :class:`~gradfit.sources.FileSource`, or the Dask source's
    :class:`~gradfit.sources.dask.SourceNames`): ``describe()``,
    ``where(row, column)`` and ``row_position(row)``, rows counted in the file.
    """

    feature_columns: list
    target_columns: list
    weight_column: str | None
    encoder: object
    missing: str
    dtype: np.dtype

    @property
    def columns(self):
        """The columns read: features, targets, then the weight."""
        return self.feature_columns + self.target_columns + ([self.weight_column] if self.weight_column else [])

    def chunk(self, table, start, names):
        """The :class:`Chunk` of ``table`` (a RecordBatch or Table of :attr:`columns`) whose first row is ``start``."""
        if self.encoder is not None:
            return self._encoded_chunk(table, start, names)
        n = table.num_rows
        d, k = len(self.feature_columns), len(self.target_columns)
        columns = [table.column(name) for name in self.columns]
        for j, column in enumerate(columns):
            if column.null_count:
                row = int(np.argmax(~np.asarray(column.is_valid())))
                index = j if j < d + k else -1
                raise DataError(f"missing value in {names.describe()} at {names.where(start + row, index)}")
        # Column-major: Arrow holds columns, and copying each one whole is 4-5 times
        # faster than scattering it across rows (the engines take either order).
        for j, column in enumerate(columns):
            _check_exact(column, start, j if j < d + k else -1, names)
        X = np.empty((n, d), dtype=self.dtype, order="F")
        for j in range(d):
            X[:, j] = columns[j].to_numpy(zero_copy_only=False)
        y = np.empty((n, k), dtype=np.float64, order="F")
        for j in range(k):
            y[:, j] = columns[d + j].to_numpy(zero_copy_only=False)
        weight = columns[-1].to_numpy(zero_copy_only=False).astype(np.float64) if self.weight_column else None
        return Chunk(X, y, weight, start)

    def _encoded_chunk(self, table, start, names):
        """A chunk through the encoder: categories to dummies, missing values dropped, named or kept as NaN."""
        raw = len(self.feature_columns)
        positions = None
        if self.missing == "drop":
            mask = np.logical_and.reduce([encoding.missing_mask(table.column(name)) for name in self.columns])
            if not mask.all():
                table = table.filter(pa.array(mask))
                positions = start + np.flatnonzero(mask)  # rows keep their numbers in messages
        elif self.missing == "error":
            for j, name in enumerate(self.columns):
                valid = encoding.missing_mask(table.column(name)) if j < raw else None
                if (valid is not None and not valid.all()) or (valid is None and table.column(name).null_count):
                    row = int(np.argmax(~valid)) if valid is not None else \
                        int(np.argmax(~np.asarray(table.column(name).is_valid())))
                    raise DataError(f"missing value in {names.describe()} at {names.row_position(start + row)}, "
                                    f"column {name!r}")

        def where(row, name):
            at = start + row if positions is None else int(positions[row])
            return f"{names.describe()}, {names.row_position(at)}, column {name!r}"

        X = self.encoder.encode([table.column(name) for name in self.feature_columns], self.dtype, where)
        n, k = table.num_rows, len(self.target_columns)
        y = np.empty((n, k), dtype=np.float64, order="F")
        for j in range(k):
            y[:, j] = encoding.plain_array(table.column(raw + j)).to_numpy(zero_copy_only=False)
        weight = None
        if self.weight_column:
            weight = encoding.plain_array(table.column(self.weight_column)).to_numpy(zero_copy_only=False)
            weight = weight.astype(np.float64)
        return Chunk(X, y, weight, start, positions)


def _check_exact(column, start, index, names):
    """Refuse 64-bit integers beyond 2**53: float64 cannot hold them, and neighbours would collapse into one."""
    if not (pa.types.is_integer(column.type) and column.type.bit_width == 64) or len(column) == 0:
        return
    values = column.to_numpy(zero_copy_only=False)
    inexact = (values > EXACT_INTEGER) if values.dtype.kind == "u" else (np.abs(values) > EXACT_INTEGER)
    if values.dtype.kind == "i":
        inexact |= values == np.iinfo(np.int64).min  # whose abs() overflows
    if inexact.any():
        row = int(np.argmax(inexact))
        raise DataError(
            f"{names.describe()} at {names.where(start + row, index)}: the integer {int(values[row])} is beyond "
            "2**53, which float64 cannot hold exactly (neighbouring values would become one); "
            "rescale the column or store it as floating point"
        )
