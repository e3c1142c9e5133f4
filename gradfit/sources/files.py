"""CSV and Parquet files, streamed in batches with pyarrow.

Memory stays bounded by the batch size whatever the file size; only the
columns needed are read. Errors name the file, the column and the row (the
line, for CSV).
"""

from __future__ import annotations

import csv
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds

from ..errors import DataError
from .base import Chunk, Source

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
# pyarrow's default spellings of a missing value in CSV (ConvertOptions.null_values)
NULL_SPELLINGS = frozenset(pa_csv.ConvertOptions().null_values)


def file_format(path):
    """``"csv"`` or ``"parquet"`` from the path's suffix (a folder or glob is Parquet)."""
    lower = str(path).lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES) or os.path.isdir(path) or glob.has_magic(str(path)):
        return "parquet"
    raise DataError(
        f"file {str(path)!r}: unknown format; expected a name ending in "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or a folder of Parquet files"
    )


def _check_readable(path):
    if glob.has_magic(str(path)):
        return
    if not os.path.exists(path):
        raise DataError(f"file {str(path)!r} not found")
    if os.path.isdir(path):
        return
    if not os.access(path, os.R_OK):
        raise DataError(f"file {str(path)!r} cannot be read (permission denied)")
    if os.path.getsize(path) == 0:
        raise DataError(f"file {str(path)!r} is empty")


def _numeric(arrow_type):
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_null(arrow_type)
    )


class FileSource(Source):
    """A CSV file, a Parquet file, or a folder or glob of Parquet files.

    Parameters
    ----------
    path : str or path-like
    target : str or list of str
        The target column(s); several give a multi-output model. Empty for
        reading features alone (predictions), which needs ``features``.
    features : list of str, optional
        The feature columns; by default every column but the targets and weight.
    sample_weight : str, optional
        A column of non-negative row weights.
    batch_rows : int, default=65536
        Rows per streamed batch: memory is bounded by this, not the file size.
    """

    def __init__(self, path, target, features=None, sample_weight=None, batch_rows=65536):
        self.path = os.fspath(path)
        self.format = file_format(self.path)
        _check_readable(self.path)
        self.batch_rows = int(batch_rows)
        targets = [target] if isinstance(target, str) else list(target)
        if not targets and features is None:
            raise DataError("no target column given")
        self._open()
        columns = self.schema.names
        missing = [c for c in targets + list(features or []) + ([sample_weight] if sample_weight else []) if c not in columns]
        if missing:
            raise DataError(
                f"{self.describe()} has no column {missing[0]!r}; its columns are: {', '.join(columns)}"
            )
        if features is None:
            features = [c for c in columns if c not in targets and c != sample_weight]
        features = list(features)
        if not features:
            raise DataError(f"{self.describe()} has no feature columns besides the target")
        overlap = set(features) & set(targets)
        if overlap:
            raise DataError(f"column {sorted(overlap)[0]!r} is both a feature and a target")
        self.feature_names = features
        self.target_names = targets
        self.weight_name = sample_weight
        self.has_weights = sample_weight is not None
        self.n_features = len(features)
        self.n_outputs = len(targets)
        self.columns = features + targets + ([sample_weight] if sample_weight else [])
        for name in self.columns:
            if self.format == "parquet" and not _numeric(self.schema.field(name).type):
                raise DataError(
                    f"{self.describe()}, column {name!r}: type {self.schema.field(name).type} is not numeric"
                )
        feature_types = [self.schema.field(name).type for name in features]
        self.dtype = np.dtype(
            np.float32 if all(t == pa.float32() for t in feature_types) else np.float64
        )
        self.n_samples = self._count_rows()

    # -- opening -------------------------------------------------------------

    def _open(self):
        if self.format == "csv":
            try:
                reader = pa_csv.open_csv(self.path, read_options=pa_csv.ReadOptions(block_size=1 << 20))
                self.schema = reader.schema
                reader.close()
            except pa.ArrowInvalid as exc:
                raise self._locate_csv_error(exc, columns=()) from None
            except OSError as exc:
                raise DataError(f"{self.describe()}: {_first_line(exc)}") from None
            self.dataset = None
        else:
            try:
                self.dataset = pa_ds.dataset(self._parquet_files(), format="parquet")
                self.schema = self.dataset.schema
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"{self.describe()}: not a readable Parquet file ({_first_line(exc)})") from None
            self.fragments = list(self.dataset.get_fragments())
        if not self.schema.names:
            raise DataError(f"{self.describe()} has no columns")

    def _parquet_files(self):
        if glob.has_magic(self.path):
            files = sorted(glob.glob(self.path))
        elif os.path.isdir(self.path):
            files = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(self.path)
                for name in names
                if name.lower().endswith(PARQUET_SUFFIXES)
            )
        else:
            files = [self.path]
        if not files:
            raise DataError(f"{self.describe()}: no Parquet files found")
        return files

    def _count_rows(self):
        if self.format == "csv":
            return None  # known after the first pass
        counts = [fragment.count_rows() for fragment in self.fragments]
        self._fragment_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return int(self._fragment_starts[-1])

    # -- messages ------------------------------------------------------------

    def describe(self):
        return f"file {self.path!r}"

    def where(self, row, column=None):
        if self.format == "csv":
            # The header is line 1; exact unless a quoted field holds a line break.
            text = f"line {row + 2}"
        else:
            index = int(np.searchsorted(self._fragment_starts, row, side="right")) - 1
            text = f"row {row - self._fragment_starts[index] + 1}"
            if len(self.fragments) > 1:
                text = f"{os.path.basename(self.fragments[index].path)} {text}"
        if column is not None:
            text += f", column {self.column_name(column)!r}"
        return text

    def column_name(self, column):
        if column == -1:
            return self.weight_name
        return super().column_name(column)

    # -- reading -------------------------------------------------------------

    def _batches(self):
        if self.format == "csv":
            convert = pa_csv.ConvertOptions(
                include_columns=self.columns,
                column_types={name: pa.float64() for name in self.columns},
            )
            reader = pa_csv.open_csv(
                self.path,
                read_options=pa_csv.ReadOptions(block_size=max(1 << 20, self.batch_rows * 16)),
                convert_options=convert,
            )
            yield from reader
        else:
            yield from self.dataset.to_batches(columns=self.columns, batch_size=self.batch_rows)

    def chunks(self):
        start = 0
        try:
            for batch in self._batches():
                for offset in range(0, batch.num_rows, self.batch_rows):
                    part = batch.slice(offset, self.batch_rows)
                    yield self._to_chunk(part, start)
                    start += part.num_rows
        except pa.ArrowInvalid as exc:
            raise self._locate_csv_error(exc) from None
        if self.n_samples is None:
            self.n_samples = start

    def _to_chunk(self, batch, start):
        n = batch.num_rows
        columns = [batch.column(name) for name in self.columns]
        for j, column in enumerate(columns):
            if column.null_count:
                row = int(np.argmax(~np.asarray(column.is_valid())))
                index = j if j < self.n_features + self.n_outputs else -1
                raise DataError(f"missing value in {self.describe()} at {self.where(start + row, index)}")
        d, k = self.n_features, self.n_outputs
        X = np.empty((n, d), dtype=self.dtype)
        for j in range(d):
            X[:, j] = columns[j].to_numpy(zero_copy_only=False)
        y = np.empty((n, k), dtype=np.float64)
        for j in range(k):
            y[:, j] = columns[d + j].to_numpy(zero_copy_only=False)
        weight = columns[-1].to_numpy(zero_copy_only=False).astype(np.float64) if self.has_weights else None
        return Chunk(X, y, weight, start)

    def _locate_csv_error(self, exc, columns=None):
        """Find the line and column pyarrow stopped at; it does not report them itself.

        ``columns`` are the columns whose values must be numbers (default: the
        ones read); field counts are checked on every line.
        """
        columns = self.columns if columns is None else list(columns)
        try:
            with open(self.path, newline="", encoding="utf-8", errors="replace") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                wanted = [header.index(name) for name in columns]
                for fields in reader:
                    if len(fields) != len(header):
                        if not fields:
                            continue  # a blank line, which pyarrow skips too
                        return DataError(
                            f"{self.describe()}, line {reader.line_num}: {len(fields)} fields, "
                            f"but the header has {len(header)}"
                        )
                    for name, index in zip(columns, wanted):
                        text = fields[index].strip()
                        if text in NULL_SPELLINGS:
                            continue
                        try:
                            float(text)
                        except ValueError:
                            return DataError(
                                f"{self.describe()}, line {reader.line_num}, column {name!r}: "
                                f"{fields[index]!r} is not a number"
                            )
        except (OSError, csv.Error, StopIteration):
            pass
        return DataError(f"{self.describe()}: {_first_line(exc)}")


def _first_line(exc):
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
