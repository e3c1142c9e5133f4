"""A file's columns, as Arrow read them, made a :class:`~gradfit.sources.Chunk`.

The one place where a file's values are checked and converted: a missing
value named (or its row dropped, or kept as NaN), a 64-bit integer beyond
2**53 refused, categories encoded. :class:`~gradfit.sources.FileSource`
decodes its streamed batches here, and the Dask workers their Parquet row
groups and CSV partitions (:mod:`gradfit.sources.dask.file_blocks`), so a bad
value gets the same message wherever the file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..errors import DataError
from . import encoding
from .base import Chunk, NamedBy

#: the largest integer up to which float64 holds every integer exactly
EXACT_INTEGER = 2**53


@dataclass
class ChunkDecoder(NamedBy):
    """How a file's needed columns become a chunk; small and picklable (Dask's workers get one).

    Parameters
    ----------
    raw_feature_names : list of str
        The feature columns, as stored.
    target_names : list of str
    weight_name : str or None
    encoder : TableEncoder or None
        Categories to dummies, and rows with missing values dropped or kept
        (``missing``); ``None`` for numeric columns read as they are, a
        missing value being an error.
    missing : {"error", "drop", "keep"}
    dtype : NumPy dtype of X
    names : Source
        What names the file's rows and columns in messages (``describe``,
        ``where``, ``row_position``: :class:`~gradfit.sources.base.NamedBy`): the :class:`~gradfit.sources.FileSource`
        itself, or on Dask's workers its
        :class:`~gradfit.sources.dask.SourceNames`
        (``dataclasses.replace(decoder, names=...)``).
    """

    raw_feature_names: list
    target_names: list
    weight_name: str | None
    encoder: object
    missing: str
    dtype: np.dtype
    names: object = field(repr=False, compare=False)
    #: a categorical column kept as level codes (:meth:`~gradfit.sources.encoding.TableEncoder.block_layout`,
    #: set by :meth:`~gradfit.sources.FileSource.use_blocks`), or ``None``: every column as dense dummies
    block_layout: object = None

    @property
    def columns(self):
        """The columns read: features, targets, then the weight."""
        return self.raw_feature_names + self.target_names + ([self.weight_name] if self.weight_name else [])

    @property
    def _plain(self):
        return self.encoder is None

    @property
    def n_features(self):
        return len(self.raw_feature_names)  # read as they are (no encoder): one feature a column

    @property
    def n_outputs(self):
        return len(self.target_names)

    @property
    def has_weights(self):
        return bool(self.weight_name)

    def chunk(self, batch, start):
        """The :class:`Chunk` of ``batch`` (a RecordBatch or Table of :attr:`columns`) whose first row is ``start``."""
        if not self._plain:
            return self._encoded_chunk(batch, start)
        n = batch.num_rows
        columns = [batch.column(name) for name in self.columns]
        for j, column in enumerate(columns):
            if column.null_count:
                row = int(np.argmax(~np.asarray(column.is_valid())))
                index = j if j < self.n_features + self.n_outputs else -1
                raise DataError(f"missing value in {self.describe()} at {self.where(start + row, index)}")
        d, k = self.n_features, self.n_outputs
        # Column-major: Arrow holds columns, and copying each one whole is 4-5 times
        # faster than scattering it across rows (the engines take either order).
        for j, column in enumerate(columns):
            self._check_exact(column, start, j if j < d + self.n_outputs else -1)
        X = np.empty((n, d), dtype=self.dtype, order="F")
        for j in range(d):
            X[:, j] = columns[j].to_numpy(zero_copy_only=False)
        y = np.empty((n, k), dtype=np.float64, order="F")
        for j in range(k):
            y[:, j] = columns[d + j].to_numpy(zero_copy_only=False)
        weight = columns[-1].to_numpy(zero_copy_only=False).astype(np.float64) if self.has_weights else None
        return Chunk(X, y, weight, start)

    def _encoded_chunk(self, batch, start):
        """A chunk through the encoder: categories to dummies, missing values dropped, named or kept as NaN."""
        batch, positions, _ = self.present_rows(batch, start)

        def where(row, name):
            at = start + row if positions is None else int(positions[row])
            return f"{self.describe()}, {self.row_position(at)}, column {name!r}"

        arrays = [batch.column(name) for name in self.raw_feature_names]
        codes = None
        if self.block_layout is not None:
            X, codes = self.encoder.encode_blocks(arrays, self.dtype, where)
        else:
            X = self.encoder.encode(arrays, self.dtype, where)
        y, weight = self.targets_and_weight(batch)
        return Chunk(X, y, weight, start, positions, codes)

    def targets_and_weight(self, batch):
        """``(y, sample_weight)`` of an encoded batch: the targets after the raw feature columns, the weight named."""
        raw, n, k = len(self.raw_feature_names), batch.num_rows, self.n_outputs
        y = np.empty((n, k), dtype=np.float64, order="F")
        for j in range(k):
            y[:, j] = encoding.plain_array(batch.column(raw + j)).to_numpy(zero_copy_only=False)
        weight = None
        if self.has_weights:
            weight = encoding.plain_array(batch.column(self.weight_name)).to_numpy(zero_copy_only=False)
            weight = weight.astype(np.float64)
        return y, weight

    def present_rows(self, batch, start):
        """``(batch, positions, counts)``: the rows the model uses, by ``missing``.

        ``"drop"``: the rows without a missing value, ``positions`` their rows
        in the file (``None`` if none was left out) and ``counts`` the missing
        values of each column of :attr:`columns` (an int array); ``"error"``:
        the first missing value named; ``"keep"``: every row.
        """
        positions = counts = None
        if self.missing == "drop":
            masks = [encoding.missing_mask(batch.column(name)) for name in self.columns]
            counts = np.array([mask.size - np.count_nonzero(mask) for mask in masks], dtype=np.int64)
            mask = np.logical_and.reduce(masks)
            if not mask.all():
                batch = batch.filter(pa.array(mask))
                positions = start + np.flatnonzero(mask)  # rows keep their numbers in messages
        elif self.missing == "error":
            found = self.first_missing(batch)
            if found is not None:
                raise self.missing_error(start + found[0], found[1])
        return batch, positions, counts

    def first_missing(self, batch):
        """``(row, column)`` of the first missing value ``missing="error"`` refuses (0-based row), or ``None``.

        The first column (of :attr:`columns`) with one, at its first: a null or
        NaN feature, a null target or weight.
        """
        raw = len(self.raw_feature_names)
        for j, name in enumerate(self.columns):
            column = batch.column(name)
            if j < raw:
                valid = encoding.missing_mask(column)
            elif column.null_count:
                valid = np.asarray(column.is_valid())
            else:
                continue
            if not valid.all():
                return int(np.argmax(~valid)), name
        return None

    def missing_error(self, row, column):
        """The one-line error for a missing value at file row ``row`` (0-based), column ``column``."""
        return DataError(f"missing value in {self.describe()} at {self.row_position(row)}, column {column!r}")

    def _check_exact(self, column, start, index):
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
                f"{self.describe()} at {self.where(start + row, index)}: the integer {int(values[row])} is beyond "
                "2**53, which float64 cannot hold exactly (neighbouring values would become one); "
                "rescale the column or store it as floating point"
            )
