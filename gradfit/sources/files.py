"""CSV and Parquet files, streamed in batches with pyarrow.

Memory stays bounded by the batch size whatever the file size; only the
columns needed are read. Errors name the file, the column and the row (the
line, for CSV).
"""

from __future__ import annotations

import collections
import csv
import glob
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds

from ..errors import DataError
from .base import Chunk, Source, file_row_position, fold_in_threads, worker_threads
from .file_checks import Stamps, estimate_rows, sniff_csv

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
# pyarrow's default spellings of a missing value in CSV (ConvertOptions.null_values)
NULL_SPELLINGS = frozenset(pa_csv.ConvertOptions().null_values)
# What pyarrow reads as a number: Python's float() also takes "1_000" and other
# digits than ASCII, which would hide the bad value from _locate_csv_error.
#: a CSV file whose needed columns take at most this much as float64 is kept in memory after one pass
KEEP_CSV_BYTES = 64 << 20
#: the largest integer up to which float64 holds every integer exactly
EXACT_INTEGER = 2**53
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE | re.ASCII)


def file_format(path):
    """``"csv"`` or ``"parquet"`` from the path's suffix (a folder or glob is Parquet)."""
    lower = str(path).lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES) or os.path.isdir(path) or is_glob(path):
        return "parquet"
    raise DataError(
        f"file {str(path)!r}: unknown format; expected a name ending in "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or a folder of Parquet files"
    )


def is_glob(path):
    """Whether ``path`` is read as a glob: it has ``*?[`` and no file of that very name exists.

    A literal name comes first: ``data[1].parquet`` that exists is that file,
    never ``data1.parquet``.
    """
    path = os.fspath(path)
    return glob.has_magic(path) and not os.path.lexists(path)


def data_files(path):
    """The files a DATA path reads: itself, the Parquet files of a folder, or a glob's matches (sorted)."""
    path = os.fspath(path)
    if is_glob(path):
        return sorted(name for name in glob.glob(path) if not os.path.isdir(name))
    if os.path.isdir(path):
        return sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if name.lower().endswith(PARQUET_SUFFIXES)
        )
    return [path]


def data_would_read(path, candidate):
    """Whether a file written at ``candidate`` would be read as part of DATA ``path`` (folder or glob)."""
    from ..paths import glob_matches

    path, candidate = os.fspath(path), os.fspath(candidate)
    if is_glob(path):
        return glob_matches(path, candidate)
    if os.path.isdir(path):
        folder = os.path.realpath(path)
        real = os.path.realpath(candidate)
        return real.startswith(folder + os.sep) and real.lower().endswith(PARQUET_SUFFIXES)
    return False


def _check_readable(path, format):
    if is_glob(path):
        return
    if not os.path.exists(path):
        raise DataError(f"file {str(path)!r} not found")
    if os.path.isdir(path):
        if format == "csv":
            raise DataError(f"file {str(path)!r} is a folder, not a CSV file (only Parquet files are read from folders)")
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
        _check_readable(self.path, self.format)
        self.batch_rows = int(batch_rows)
        targets = [target] if isinstance(target, str) else list(target)
        if not targets and features is None:
            raise DataError(f"{self.describe()}: no target column given")
        self._open()
        columns = self.schema.names
        targets = [_resolve(name, columns) for name in targets]
        features = None if features is None else [_resolve(name, columns) for name in features]
        sample_weight = _resolve(sample_weight, columns) if sample_weight else sample_weight
        missing = [c for c in targets + list(features or []) + ([sample_weight] if sample_weight else []) if c not in columns]
        if missing:
            raise DataError(
                f"{self.describe()} has no column {missing[0]!r}; its columns are: "
                f"{', '.join(_show_name(c) for c in columns[:50])}{', ...' if len(columns) > 50 else ''}"
            )
        if features is None:
            features = [c for c in columns if c not in targets and c != sample_weight]
        features = list(features)
        if not features:
            raise DataError(f"{self.describe()} has no feature columns besides the target")
        overlap = set(features) & set(targets)
        if overlap:
            raise DataError(f"{self.describe()}: column {sorted(overlap)[0]!r} is both a feature and a target")
        _check_unique(self, columns, features + targets + ([sample_weight] if sample_weight else []))
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
        if self.format == "parquet" and len(self.fragments) > 1:
            self._check_fragments()
        feature_types = [self.schema.field(name).type for name in features]
        self.dtype = np.dtype(
            np.float32 if all(t == pa.float32() for t in feature_types) else np.float64
        )
        self.n_samples = self._count_rows()
        self._stamps = Stamps(self._parquet_files() if self.format == "parquet" else [self.path], self.describe())

    # -- opening -------------------------------------------------------------

    def _open(self):
        if self.format == "csv":
            self._check_utf8_bom()
            self._block_bytes = sniff_csv(self.path, self.describe())
            try:
                reader = pa_csv.open_csv(self.path, read_options=pa_csv.ReadOptions(block_size=self._block_bytes))
                self.schema = reader.schema
                self.schema.names  # decoded here: a header in another encoding fails now, not later
                reader.close()
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):
                    raise DataError(f"{self.describe()} has no header row (its first line is empty)") from None
                raise self._locate_csv_error(exc, columns=()) from None
            except UnicodeDecodeError:
                raise DataError(f"{self.describe()}: the header is not UTF-8 text; save the file as UTF-8") from None
            except OSError as exc:
                raise DataError(f"{self.describe()}: {_first_line(exc)}") from None
            self.dataset = None
        else:
            try:
                self.dataset = pa_ds.dataset(self._parquet_files(), format="parquet")
                self.schema = self.dataset.schema
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"{self.describe()} is not a readable Parquet file ({_parquet_reason(exc)})") from None
            self.fragments = list(self.dataset.get_fragments())
        if not self.schema.names:
            raise DataError(f"{self.describe()} has no columns")

    def _check_utf8_bom(self):
        """Refuse UTF-16 and UTF-32 text by its byte-order mark: pyarrow would read it as odd fields."""
        if self.path.lower().endswith(".gz"):
            return
        try:
            with open(self.path, "rb") as handle:
                start = handle.read(4)
        except OSError:
            return  # pyarrow's own error names the problem
        if start.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
            raise DataError(f"{self.describe()} is UTF-16 or UTF-32 text; gradfit reads CSV as UTF-8: save it as UTF-8")

    def _parquet_files(self):
        files = data_files(self.path)
        if not files:
            raise DataError(f"{self.describe()}: no Parquet files found")
        return files

    def _check_fragments(self):
        """Every file of a folder has the columns, as numbers: the dataset's schema is only the first file's."""
        for fragment in self.fragments:
            schema = fragment.physical_schema
            name = os.path.basename(fragment.path)
            for column in self.columns:
                if column not in schema.names:
                    raise DataError(f"{self.describe()}: {name} has no column {column!r}")
                if not _numeric(schema.field(column).type):
                    raise DataError(
                        f"{self.describe()}: {name}, column {column!r}: type {schema.field(column).type} is not numeric"
                    )
        self._widen_differing_columns()

    def _widen_differing_columns(self):
        """Read a column as float64 where the files disagree on its type.

        pyarrow casts every file to the first file's types: a float32 column
        there would turn another file's 1e300 into inf, an int8 one refuse 1000.
        """
        differing = [
            column for column in self.columns
            if any(fragment.physical_schema.field(column).type != self.schema.field(column).type
                   for fragment in self.fragments)
        ]
        if not differing:
            return
        schema = self.schema
        for column in differing:
            schema = schema.set(schema.get_field_index(column), pa.field(column, pa.float64()))
        self.dataset = pa_ds.dataset(self._parquet_files(), format="parquet", schema=schema)
        self.schema = self.dataset.schema
        self.fragments = list(self.dataset.get_fragments())

    def _count_rows(self):
        if self.format == "csv":
            return None  # known after the first pass
        counts = [fragment.count_rows() for fragment in self.fragments]
        self._fragment_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return int(self._fragment_starts[-1])

    @property
    def estimated_samples(self):
        """About how many rows a CSV file holds, from its size and its first lines (for choosing an engine)."""
        if self.n_samples is not None:
            return self.n_samples
        return estimate_rows(self.path, self._block_bytes)

    # -- messages ------------------------------------------------------------

    def describe(self):
        return f"file {self.path!r}"

    def row_position(self, row):
        if self.format == "csv":
            return file_row_position(row, True)
        names = [os.path.basename(fragment.path) for fragment in self.fragments]
        return file_row_position(row, False, self._fragment_starts, names)

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
                read_options=pa_csv.ReadOptions(block_size=self._csv_block_bytes()),
                convert_options=convert,
            )
            yield from reader
        else:
            # pre_buffer (the default) reads ahead without bound: a 1 GiB file took
            # 1.4 GiB of memory. Without it, memory is a few row groups whatever the size.
            yield from self.dataset.to_batches(
                columns=self.columns,
                batch_size=self.batch_rows,
                fragment_scan_options=pa_ds.ParquetFragmentScanOptions(pre_buffer=False),
            )

    def _csv_block_bytes(self):
        """pyarrow's block: room for ``batch_rows`` short rows, and always for the header."""
        return max(self._block_bytes, self.batch_rows * 16)

    _kept = None

    def chunks(self):
        # Every pass starts and ends by checking the files are those the fit started on:
        # a file replaced, rewritten or grown under a running fit is refused, not mixed in.
        self._stamps.check()
        if self._kept is not None:
            for chunk in self._kept:  # copies: a pass may not change what the next one reads
                yield Chunk(chunk.X.copy(order="K"), chunk.y.copy(order="K"),
                            None if chunk.sample_weight is None else chunk.sample_weight.copy(), chunk.start)
            self._stamps.check()
            return
        # A small CSV is kept in memory after its first pass: parsing text costs far more than
        # the arithmetic, above all for wide files (20,000 columns: seconds a pass).
        estimate = self.estimated_samples if self.format == "csv" else None
        keep = [] if estimate is not None and estimate * len(self.columns) * 8 <= KEEP_CSV_BYTES else None
        start = 0
        try:
            for batch in self._batches():
                for offset in range(0, batch.num_rows, self.batch_rows):
                    part = batch.slice(offset, self.batch_rows)
                    chunk = self._to_chunk(part, start)
                    if keep is not None:
                        keep.append(Chunk(chunk.X.copy(order="K"), chunk.y.copy(order="K"),
                                          None if chunk.sample_weight is None else chunk.sample_weight.copy(),
                                          chunk.start))
                    yield chunk
                    start += part.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, pa.ArrowKeyError) as exc:
            self._stamps.check()  # a file changed under the reader is why, not its content
            if self.format == "csv":
                raise self._locate_csv_error(exc) from None
            raise DataError(f"{self.describe()}: {_first_line(exc)}") from None
        except OSError:
            self._stamps.check()
            raise
        self._stamps.check()
        if self.n_samples is None:
            self.n_samples = start
        if keep is not None and start * len(self.columns) * 8 <= KEEP_CSV_BYTES:
            self._kept = keep

    def reduce(self, function, combine):
        """The fold of :meth:`Source.reduce`, the chunks' work on threads while the next batch is read.

        pyarrow decodes on its own threads and the engines' NumPy releases the
        GIL, so reading and summing overlap; the result is the serial fold's
        (:func:`~gradfit.sources.base.fold_in_threads`), and at most a few
        batches are held at once.
        """
        threads = worker_threads()
        if threads < 2:
            return super().reduce(function, combine)
        return fold_in_threads(function, combine, self.chunks(), threads)

    _row_cache = None

    def take(self, rows):
        """The sorted rows ``rows``, for minibatches: same rows, dtype and order as arrays in memory.

        The first call writes the needed columns once to an anonymous binary
        file in ``TMPDIR`` (:class:`~gradfit.sources.rowcache.RowCache`: one
        more pass, disk of about the data's float64 size, no memory); every
        minibatch then reads only its rows from it, since neither CSV nor a
        Parquet row group can be read from the middle.
        """
        if self._row_cache is None:
            from .rowcache import RowCache

            self._row_cache = RowCache(self)
        return self._row_cache.take(rows)

    def _to_chunk(self, batch, start):
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

    def _locate_csv_error(self, exc, columns=None):
        """Find the line and column pyarrow stopped at; it does not report them itself.

        ``columns`` are the columns whose values must be numbers (default: the
        ones read); field counts are checked on every line.
        """
        columns = self.columns if columns is None else list(columns)
        block = self._csv_block_bytes() if hasattr(self, "columns") else self._block_bytes
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # the default 128 KiB would stop here
        try:
            # utf-8-sig: pyarrow drops a byte-order mark from the first name, so must this
            # surrogateescape: bytes that are not UTF-8 come back as they are, to be named
            with open(self.path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                wanted = [header.index(name) for name in columns]
                line = reader.line_num + 1  # where the next record starts: a quoted field may span lines
                for fields in reader:
                    if len(fields) != len(header):
                        if not fields:
                            line = reader.line_num + 1
                            continue  # a blank line, which pyarrow skips too
                        return DataError(
                            f"{self.describe()}, line {line}: {len(fields)} "
                            f"field{'s' if len(fields) != 1 else ''}, but the header has {len(header)}"
                        )
                    for name, index in zip(columns, wanted):
                        # as pyarrow: a missing value is spelled exactly; a number may have spaces around
                        if fields[index] in NULL_SPELLINGS:
                            continue
                        # pyarrow trims spaces and tabs only: \v or a no-break space make it no number
                        if not NUMBER.fullmatch(fields[index].strip(" \t")):
                            return DataError(
                                f"{self.describe()}, line {line}, column {name!r}: "
                                f"{_show_field(fields[index])} is not a number"
                            )
                    size = sum(map(len, fields)) + len(fields)
                    if size >= block:
                        longest = max(range(len(fields)), key=lambda i: len(fields[i]))
                        return DataError(
                            f"{self.describe()}, line {line}: the row holds {size} characters (column "
                            f"{header[longest]!r}: a field of {len(fields[longest])}), more than the "
                            f"{block}-byte blocks gradfit reads CSV in; such a field is no number: drop "
                            "the column or convert the file to Parquet"
                        )
                    broken = next((i for i, field in enumerate(fields) if "\n" in field or "\r" in field), None)
                    if broken is not None:
                        return DataError(
                            f"{self.describe()}, line {line}, column {header[broken]!r}: a quoted value holds "
                            "a line break, which gradfit's CSV reader does not take: remove it"
                        )
                    line = reader.line_num + 1
        except (OSError, csv.Error, StopIteration, ValueError):
            pass  # the file is odd in a way this reader cannot place: say what pyarrow said
        return DataError(f"{self.describe()}: {_first_line(exc)}")


def _resolve(name, columns):
    """The file's column for ``name``: itself, else the one column that differs only by surrounding spaces.

    The command line strips the names it is given, so a header ``" price "``
    could otherwise never be named; two such columns are left for the
    "more than one column" and "no column" messages.
    """
    if name in columns:
        return name
    matches = [column for column in columns if column.strip() == name.strip()]
    return matches[0] if len(matches) == 1 else name


def _show_field(text):
    """A field for a message: quoted, with bytes that are not UTF-8 shown as bytes."""
    try:
        return repr(text.encode("utf-8").decode())
    except UnicodeEncodeError:  # surrogate escapes of undecodable bytes
        return f"{text.encode('utf-8', 'surrogateescape')!r} (not UTF-8 text)"


def _show_name(name):
    """A column name for a list in a message: quoted when spaces, commas or nothing would hide it."""
    plain = name and name == name.strip() and "," not in name and name.isprintable()
    return name if plain else repr(name)


def _check_unique(source, columns, wanted):
    """A column named twice in the file, or given twice, cannot be told apart: say so."""
    in_file, given = collections.Counter(columns), collections.Counter(wanted)
    for name in wanted:
        if in_file[name] > 1:
            raise DataError(f"{source.describe()} has more than one column named {name!r}")
        if given[name] > 1:
            raise DataError(f"{source.describe()}: column {name!r} is given more than once")


def _parquet_reason(exc):
    """pyarrow's reason in a few words: its messages run to several sentences."""
    text = _first_line(exc)
    if "magic bytes" in text:
        return "not Parquet, or damaged"
    return text


def _first_line(exc):
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
