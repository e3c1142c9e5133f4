"""CSV and Parquet files, streamed in batches with pyarrow.

Memory stays bounded by the batch size whatever the file size; only the
columns needed are read. Errors name the file, the column and the row (the
line, for CSV).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import fnmatch
import glob
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq

from ..errors import DataError
from . import encoding
from .columns import ColumnStore, memory_budget, row_bytes
from .base import Source, file_row_position, fold_in_threads, pending_property, worker_threads
from .decode import ChunkDecoder
from .file_checks import Stamps, estimate_rows, sniff_csv

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
# pyarrow's default spellings of a missing value in CSV (ConvertOptions.null_values)
#: the most bytes of needed columns (as float64) in one streamed batch: wide files get fewer rows
STREAM_BATCH_BYTES = 8 << 20
#: the most bytes of a Parquet column chunk read at a time (not the whole row group's chunk)
STREAM_BUFFER_BYTES = 1 << 20
NULL_SPELLINGS = frozenset(pa_csv.ConvertOptions().null_values)
# What pyarrow reads as a number: Python's float() also takes "1_000" and other
# digits than ASCII, which would hide the bad value from _locate_csv_error.
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
    path, candidate = os.fspath(path), os.fspath(candidate)
    if is_glob(path):  # a name glob.glob(path) would match (both made absolute)
        return fnmatch.fnmatchcase(os.path.abspath(candidate), os.path.abspath(path))
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
        The most rows per streamed batch; fewer for wide files, so that a batch
        holds at most :data:`STREAM_BATCH_BYTES` (memory is bounded by this,
        not by the file's size or layout).
    memory : int or str, optional
        The most bytes of needed columns kept in memory after the first pass
        (bytes, or a size such as ``"512MiB"`` or ``"4GiB"``; ``0`` keeps
        none). Within it every later pass reads memory, not the file; beyond
        it a CSV file's columns go to a binary cache in ``TMPDIR`` and Parquet
        is streamed again (:mod:`gradfit.sources.columns`). Default:
        :func:`~gradfit.sources.columns.default_memory_budget`, a quarter of
        the machine's memory or what is available, whichever is less.
    keep_columns : bool, default=True
        Keep the columns after the first pass, as ``memory`` says; ``False``
        for a reader of one pass (predictions, metrics), for which keeping
        would only cost memory or disk.
    exclude : list of str, optional
        Columns left out of the default features (not with ``features``).
    categorical : "auto", list, dict or None, default="auto"
        Which feature columns are categories (:mod:`gradfit.sources.encoding`);
        their levels are learned in the fit's statistics pass
        (:mod:`gradfit.engines.levels`; :attr:`levels_pending` until then),
        or by a pass of their own over those columns (:meth:`settle`) where
        the features are asked for first (a column of more than
        :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels is learned in
        the statistics pass too, its blocks with it: :mod:`gradfit.engines.level_cells`).
    missing : {"error", "drop", "keep"}, default="error"
        ``"drop"`` leaves out rows with a missing value in a used column
        (counted in ``missing_counts``, ``rows_dropped``, in the same pass as the levels);
        ``"keep"`` (predictions) gives their features NaN.
    encoder : TableEncoder, optional
        A fitted model's encoder (its levels): features are its raw columns.
    handle_unknown : {"error", "ignore"}, optional
        Overrides the encoder's.
    as_stored : bool, default=False
        Hand the feature columns on as stored (no type checks), for
        :class:`~gradfit.sources.formulas.FormulaSource`.

    A first column with a blank name (the index ``DataFrame.to_csv`` writes)
    is left out of the default features, with a note in ``notes``.
    """

    def __init__(self, path, target, features=None, sample_weight=None, batch_rows=65536, memory=None,
                 keep_columns=True, *, exclude=None, categorical="auto", missing="error", encoder=None,
                 handle_unknown=None, as_stored=False):
        self.path = os.fspath(path)
        self.format = file_format(self.path)
        _check_readable(self.path, self.format)
        self.batch_rows = int(batch_rows)
        if missing not in ("error", "drop", "keep"):
            raise ValueError(f"missing must be 'error' or 'drop', not {missing!r}")
        self.missing = missing
        self.notes = []
        self._as_stored = as_stored  # features handed on as stored (formulas): no type checks here
        self._listed = encoding.parse_categorical(categorical)[0] if encoder is None else None
        self.memory = memory_budget(memory)
        self.keep_columns = bool(keep_columns)
        self._columns = None
        targets = [target] if isinstance(target, str) else list(target)
        if not targets and features is None:
            raise DataError(f"{self.describe()}: no target column given")
        self._open()
        columns = self.schema.names
        targets = [_resolve(name, columns) for name in targets]
        features = None if features is None else [_resolve(name, columns) for name in features]
        exclude = [_resolve(name, columns) for name in (exclude or ())]
        if exclude and features is not None:
            raise DataError(f"{self.describe()}: give the features or the columns to exclude, not both")
        sample_weight = _resolve(sample_weight, columns) if sample_weight else sample_weight
        named = targets + list(features or []) + exclude + ([sample_weight] if sample_weight else [])
        missing_columns = [c for c in named if c not in columns]
        if missing_columns:
            raise DataError(
                f"{self.describe()} has no column {missing_columns[0]!r}; its columns are: "
                f"{', '.join(_show_name(c) for c in columns[:50])}{', ...' if len(columns) > 50 else ''}"
            )
        if features is None:
            left_out = set(exclude)
            if "__index_level_0__" in columns:  # pandas' to_parquet writes a named or non-range index so
                left_out.add("__index_level_0__")
                self.notes.append("column '__index_level_0__' (a pandas index) left out")
            if columns[0] == "" and "" not in targets and "" != sample_weight and columns.count("") == 1:
                # pandas' to_csv() writes the index first, with a blank name: not a feature
                left_out.add("")
                self.notes.append("the first column has no name (an index, as pandas' to_csv writes it): left out")
            features = [c for c in columns if c not in targets and c != sample_weight and c not in left_out]
        features = list(features)
        if not features:
            raise DataError(f"{self.describe()} has no feature columns besides the target")
        overlap = set(features) & set(targets)
        if overlap:
            raise DataError(f"{self.describe()}: column {sorted(overlap)[0]!r} is both a feature and a target")
        _check_unique(self, columns, features + targets + ([sample_weight] if sample_weight else []))
        self.raw_feature_names = features
        self.target_names = targets
        self.weight_name = sample_weight
        self.has_weights = sample_weight is not None
        self.n_outputs = len(targets)
        self.columns = features + targets + ([sample_weight] if sample_weight else [])
        for name in self.columns[len(features):]:
            # CSV: the types are guessed from the first block; a bad value is located when read
            if self.format == "parquet" and not _numeric(self.schema.field(name).type):
                raise DataError(
                    f"{self.describe()}, column {name!r}: type {self.schema.field(name).type} is not numeric"
                )
        given = encoder is not None
        if encoder is None:
            codings, self._references = encoding.plan(
                features, [self.schema.field(name).type for name in features], categorical, self.describe(),
                guessed=self.format == "csv")
            encoder = encoding.TableEncoder(codings)
        elif list(encoder.raw_names) != features:
            raise DataError(f"{self.describe()}: the model's columns are {', '.join(encoder.raw_names)}")
        if handle_unknown is not None:
            encoder.handle_unknown = handle_unknown
        self.encoder = encoder
        self._kinds = {c.name: c.kind for c in encoder.columns if c.categorical}
        if self.format == "parquet" and len(self.fragments) > 1:
            self._check_fragments()
        self._plain = not encoder.categorical and missing == "error"
        feature_types = [self.schema.field(name).type for name in features]
        self.dtype = np.dtype(
            np.float32 if not encoder.categorical and all(t == pa.float32() for t in feature_types) else np.float64
        )
        #: how a batch of ``columns`` becomes a chunk (Dask's workers read with it too)
        self.decoder = ChunkDecoder(features, targets, sample_weight, None if self._plain else encoder, missing,
                                    self.dtype, self)
        self.n_samples = self._count_rows()
        self.missing_counts, self.rows_dropped = None, 0
        self._learned = any(c.categorical and not c.levels for c in encoder.columns)
        self._stamps = Stamps(self._parquet_files() if self.format == "parquet" else [self.path], self.describe())
        if (self._learned or missing == "drop") and self._learns_in_pass(as_stored, given):
            # learned in the statistics pass (level_batches, gradfit.engines.levels): the file is read once;
            # asking for the features, the encoder or the missing counts before that scans the file (settle)
            self.levels_pending = True
            return
        if self._learned or missing == "drop":
            self._scan()
        self._levels_known()

    #: the levels (and missing counts) are still to be learned: in the statistics pass, or by :meth:`settle`
    levels_pending = False

    def _learns_in_pass(self, as_stored, given):
        """Whether this source's levels may wait for the statistics pass: a training table (no model's
        encoder), its columns handed on encoded (not to a formula)."""
        return not as_stored and not given

    def _levels_known(self):
        """The levels are known: the features, and the column kept as codes if one has many levels."""
        self.levels_pending = False
        encoder = self._encoder
        # a model's encoder (predictions) has chosen its column already: its codes are gathered (use_blocks)
        block = None if self._as_stored else encoder.choose_block(self.describe()) if self._learned else encoder.block
        if block is not None:
            self.block_candidate = encoder.block_layout()  # kept as codes once a fit asks (use_blocks)
        self.feature_names = encoder.feature_names
        self.n_features = len(self.feature_names)

    def settle(self):
        """Learn the levels (and count the missing values) now, by a pass of their own, if still pending.

        What asks for the features before the statistics pass (engines that
        are given their statistics, Dask's client, a caller's question) pays
        that extra read, as every fit did before levels were learned in the pass.
        """
        if self.levels_pending:
            self.levels_pending = False
            self._scan()
            self._levels_known()

    encoder = pending_property("encoder")
    feature_names = pending_property("feature_names")
    n_features = pending_property("n_features")
    block_candidate = pending_property("block_candidate")
    missing_counts = pending_property("missing_counts")
    rows_dropped = pending_property("rows_dropped")

    @property
    def n_samples(self):
        """Rows a pass yields: ``None`` for CSV until read; with ``missing="drop"`` the rows kept (:meth:`settle`)."""
        if self.__dict__.get("levels_pending") and self.missing == "drop":
            self.settle()
        return self.__dict__.get("_n_samples")

    @n_samples.setter
    def n_samples(self, value):
        self.__dict__["_n_samples"] = value

    def _scan(self):
        """One pass over the needed columns: the categories' levels, and the missing values to drop.

        Reads only the categorical columns, unless rows with missing values
        are dropped (then every used column, to count them and to learn the
        levels of the rows kept only).
        """
        codings = self._encoder.columns
        learn = [c for c in codings if c.categorical and not c.levels]
        dropping = self.missing == "drop"
        wanted = list(self.columns) if dropping else [c.name for c in learn]
        found = {c.name: set() for c in learn}
        counts = dict.fromkeys(self.columns, 0) if dropping else None
        kept = rows = 0
        for batch, start in self._raw_batches(wanted):
            mask = None
            if dropping:
                masks = [encoding.missing_mask(batch.column(name)) for name in wanted]
                for name, valid in zip(wanted, masks):
                    counts[name] += int(valid.size - np.count_nonzero(valid))
                mask = np.logical_and.reduce(masks)
                kept += int(np.count_nonzero(mask))
                batch = batch.filter(pa.array(mask))
            rows += batch.num_rows if mask is None else mask.size
            for coding in learn:
                column = batch.column(coding.name)
                if self.missing == "error" and column.null_count:
                    row = int(np.argmax(~np.asarray(column.is_valid())))
                    raise DataError(f"missing value in {self.describe()} at "
                                    f"{self.row_position(start + row)}, column {coding.name!r}")
                found[coding.name] |= encoding.distinct_values(column, coding.kind)
        self._finish_levels(found)
        if dropping:
            self._dropped(counts, rows, kept)

    def _finish_levels(self, found):
        """Sort each categorical column's levels ``found[name]`` (a set) and place its reference."""
        for coding in self._encoder.columns:
            if coding.name not in found:
                continue
            values = found[coding.name]
            if self._auto_text_of_numbers(coding, values):
                raise self._locate_csv_error(pa.ArrowInvalid(f"column {coding.name!r} is not numeric"), [coding.name])
            integral = pa.types.is_integer(_value_type(self.schema.field(coding.name).type))
            limit = encoding.MAX_LEVELS if self._as_stored else encoding.MAX_BLOCK_LEVELS  # one may be kept as codes
            encoding.finish_levels(coding, values, integral, getattr(self, "_references", {}), self.describe(), limit)

    def _dropped(self, counts, rows, kept):
        """Rows with missing values left out: ``counts`` by column of :attr:`columns`, of ``rows`` read, ``kept`` kept."""
        self.missing_counts = missing = {name: n for name, n in counts.items() if n}
        self.rows_dropped = dropped = rows - kept
        self.n_samples = kept  # the rows a pass yields (Parquet rows keep their numbers in messages)
        if dropped:
            shown = ", ".join(f"{name!r}: {n}" for name, n in missing.items())
            self.notes.append(f"missing values: {dropped} of {rows} rows left out ({shown})")

    @contextlib.contextmanager
    def _reading(self):
        """Around a whole pass over the file: a reader's error as one line, located, and the files' stamps checked.

        Every pass starts and ends by checking the files are those the fit
        started on: a file replaced, rewritten or grown under a running fit is
        refused, not mixed in (and is named as why a read failed, before its content).
        """
        self._stamps.check()
        try:
            yield
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, pa.ArrowKeyError) as exc:
            self._stamps.check()  # a file changed under the reader is why, not its content
            if self.format == "csv":
                raise self._locate_csv_error(exc) from None
            raise DataError(f"{self.describe()}: {_first_line(exc)}") from None
        except OSError:
            self._stamps.check()
            raise
        self._stamps.check()

    # -- the statistics pass that learns the levels (gradfit.engines.levels) ----------

    def level_batches(self):
        """``(batch, first row)`` of every needed column, for the pass that learns the levels.

        Batches are cut so that a part's dense one-hot of its own levels stays
        about :attr:`chunk_bytes`; a column with more than
        :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels in a batch has
        no one-hot (its levels are kept by :mod:`gradfit.engines.level_cells`).
        The cut depends on the batch alone, so the pass's sums do too.
        """
        learn = [c.name for c in self._encoder.columns if c.categorical]
        start = 0
        with self._reading():
            for batch in self._batches():
                width = len(self.columns) + 1
                for name in learn:
                    levels = pc.count_distinct(encoding.plain_array(batch.column(name))).as_py()
                    width += levels if levels <= encoding.BLOCK_LEVELS else 0
                rows = int(max(4096, min(1 << 20, self.chunk_bytes // (8 * width))))
                step = min(self.stream_batch_rows(), rows)
                for offset in range(0, batch.num_rows, step):
                    part = batch.slice(offset, step)
                    yield part, start
                    start += part.num_rows

    def reduce_levels(self, function, combine):
        """The fold of ``function((batch, start))`` over :meth:`level_batches`, on threads as :meth:`reduce`."""
        threads = worker_threads()
        if threads >= 2:
            return fold_in_threads(function, combine, self.level_batches(), threads)
        result = None
        for item in self.level_batches():
            partial = function(item)
            result = partial if result is None else combine(result, partial)
        return result

    def learned_in_pass(self, levels, counts, rows, kept):
        """The statistics pass learned the levels: ``levels`` (a set by categorical column), missing ``counts``
        by column, ``rows`` read, ``kept`` of them without a missing value."""
        self._finish_levels(levels)
        if self.missing == "drop":
            self._dropped(counts, rows, kept)
        elif self.n_samples is None:
            self.n_samples = rows
        self._levels_known()

    _learned_chunks = None

    def keep_learned(self, chunks):
        """Keep the learned pass's ``chunks`` (encoded, in order; an iterable made lazily) for later passes.

        They become the column store (:meth:`chunks` keeps its own) when a
        later pass first asks: a fit on the statistics alone makes none.
        """
        self._learned_chunks = chunks if self.keep_columns else None

    def _store_learned(self):
        chunks, self._learned_chunks = self._learned_chunks, None
        if chunks is None:
            return
        store = ColumnStore(self.memory, self.n_samples, self.format == "csv", row_bytes(self), self.rows_per_chunk())
        if not store.active:
            return
        for chunk in chunks:
            store.keep(chunk)
        store.finish(self)
        self._columns = store if store.complete else None

    def _auto_text_of_numbers(self, coding, values):
        """A CSV column that "auto" found to be text, but mostly holds numbers: a numeric column with bad cells."""
        if self.format != "csv" or coding.kind != "string" or coding.name in (self._listed if isinstance(self._listed, list) else ()):
            return False
        numbers = sum(1 for v in values if NUMBER.fullmatch(v.strip()))
        return numbers > 0 and 2 * numbers >= len(values)

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
                if self._as_stored and column in self.raw_feature_names:
                    continue
                kind = self._kinds.get(column)
                found = schema.field(column).type
                if kind in ("string", "bool") and encoding.level_kind(found) != kind:
                    raise DataError(f"{self.describe()}: {name}, column {column!r}: type {found} is not {kind} "
                                    "as in the first file")
                if kind not in ("string", "bool") and not _numeric(found):
                    raise DataError(
                        f"{self.describe()}: {name}, column {column!r}: type {found} is not numeric"
                    )
        self._widen_differing_columns()

    def _widen_differing_columns(self):
        """Read a column as float64 where the files disagree on its type.

        pyarrow casts every file to the first file's types: a float32 column
        there would turn another file's 1e300 into inf, an int8 one refuse 1000.
        """
        differing = [
            column for column in self.columns
            if self._kinds.get(column) not in ("string", "bool") and not (
                self._as_stored and column in self.raw_feature_names) and any(fragment.physical_schema.field(column).type != self.schema.field(column).type
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

    def _csv_types(self, columns):
        """How each column is read from CSV: numbers as float64; text and bool as such where they are features."""
        codings = {c.name: c for c in self._encoder.columns}
        types = {}
        for name in columns:
            coding = codings.get(name)
            inferred = self.schema.field(name).type
            if coding is not None and coding.categorical:
                types[name] = encoding.match_type(coding.kind)
            elif coding is not None and pa.types.is_boolean(inferred):
                types[name] = pa.bool_()  # "True"/"False" text: read as bool, then 1/0
            else:
                types[name] = pa.float64()
        return types

    def stream_batch_rows(self, columns=None):
        """Rows per streamed batch: ``batch_rows``, fewer for wide files (at most :data:`STREAM_BATCH_BYTES`)."""
        width = len(self.columns if columns is None else columns) * 8
        return max(1, min(self.batch_rows, STREAM_BATCH_BYTES // width))

    def _batches(self, columns=None, as_stored=False):
        columns = self.columns if columns is None else columns
        rows = self.stream_batch_rows(columns)
        if self.format == "csv":
            types = self._csv_types(columns) if not as_stored else {
                name: pa.string() if pa.types.is_null(self.schema.field(name).type) else self.schema.field(name).type
                for name in columns}
            convert = pa_csv.ConvertOptions(
                include_columns=columns,
                column_types=types,
                strings_can_be_null=True,
            )
            # A block of text makes one batch: about 16 bytes of text a value (at
            # least 1 MiB, which pyarrow needs for long lines).
            block = max(1 << 20, min(rows * len(columns) * 16, 4 * STREAM_BATCH_BYTES))
            reader = pa_csv.open_csv(
                self.path,
                read_options=pa_csv.ReadOptions(block_size=max(block, self._csv_block_bytes())),
                convert_options=convert,
            )
            yield from reader
        else:
            # Memory whatever the layout: the dataset scanner reads 16 batches ahead
            # in each of 4 files by default, pre-buffers whole row groups (a 1 GiB
            # file took 1.4 GiB) and decodes a row group whole before slicing it
            # into batches (a file of one huge row group took twice its size).
            # ParquetFile.iter_batches, one file at a time, decodes batch by batch
            # through a buffered stream: what is held is a batch of at most
            # STREAM_BATCH_BYTES and one page of each needed column.
            for fragment in self.fragments:
                # a buffer a column: their sum stays near a batch's bytes however many columns
                buffer = max(64 << 10, min(STREAM_BUFFER_BYTES, STREAM_BATCH_BYTES // len(columns)))
                reader = pq.ParquetFile(fragment.path, pre_buffer=False, buffer_size=buffer)
                try:
                    yield from reader.iter_batches(batch_size=rows, columns=columns, use_threads=True)
                finally:
                    reader.close()

    def _csv_block_bytes(self):
        """pyarrow's block: room for ``batch_rows`` short rows, and always for the header."""
        return max(self._block_bytes, self.batch_rows * 16)

    def _raw_batches(self, columns, as_stored=False):
        """``(batch, first row)`` of the given columns, errors located as :meth:`chunks` locates them.

        ``as_stored``: CSV columns in the types guessed from the first block
        (text stays text), for tables handed on whole (formulas).
        """
        start = 0
        try:
            for batch in self._batches(columns, as_stored):
                yield batch, start
                start += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            if self.format == "csv":
                raise self._locate_csv_error(exc) from None
            raise DataError(f"{self.describe()}: {_first_line(exc)}") from None

    def chunks(self):
        self.check_dense_levels()
        self._store_learned()  # the columns the statistics pass that learned the levels read
        if self._columns is not None and self._columns.complete:
            yield from self._columns.chunks()  # read once already: memory, or the binary cache
            return
        store = None
        # A column as codes is kept as its codes (ColumnStore), from the second pass on: the blocks'
        # statistics engine reads the file once, and keeping its only pass would cost memory for nothing.
        if self.keep_columns and (self.block_layout is None or self._code_passes > 0):
            store = ColumnStore(self.memory, self.n_samples, self.format == "csv", row_bytes(self),
                                self.rows_per_chunk())
            store = store if store.active else None
        start = 0
        # dummies widen a row: a chunk of them stays about Source.chunk_bytes, not batch_rows rows
        step = self.stream_batch_rows() if self._plain else min(self.stream_batch_rows(), self.rows_per_chunk())
        with self._reading():
            for batch in self._batches():
                for offset in range(0, batch.num_rows, step):
                    part = batch.slice(offset, step)
                    chunk = self._to_chunk(part, start)
                    yield chunk if store is None else store.keep(chunk)
                    start += part.num_rows
        if self.n_samples is None:
            self.n_samples = start
        if store is not None:
            store.finish(self)
            self._columns = store if store.complete else None
        if self.block_layout is not None:
            self._code_passes += 1

    def reduce(self, function, combine):
        """The fold of :meth:`Source.reduce`, the chunks' work on threads while the next batch is read.

        pyarrow decodes on its own threads and the engines' NumPy releases the
        GIL, so reading and summing overlap; the result is the serial fold's
        (:func:`~gradfit.sources.base.fold_in_threads`), and at most a few
        batches are held at once.
        """
        if self._columns is not None and self._columns.complete and self._columns.n_chunks < 2:
            # one kept chunk: handing it to a thread (or asking BLAS its threads,
            # ~50 µs) costs as much as a small epoch
            return super().reduce(function, combine)
        threads = worker_threads()
        if threads < 2:
            return super().reduce(function, combine)
        return fold_in_threads(function, combine, self.chunks(), threads)

    _row_cache = None
    _code_passes = 0  # whole passes with the column as codes, since use_blocks chose them

    def take(self, rows):
        """The sorted rows ``rows``, for minibatches: same rows, dtype and order as arrays in memory.

        The first call writes the needed columns once to an anonymous binary
        file in ``TMPDIR`` (:class:`~gradfit.sources.rowcache.RowCache`: one
        more pass, disk of about the data's float64 size, no memory); every
        minibatch then reads only its rows from it, since neither CSV nor a
        Parquet row group can be read from the middle.
        """
        self._store_learned()
        if self._columns is not None and self._columns.complete:
            kept = self._columns.take(rows)
            if kept is not None:
                return kept
        if self._row_cache is None:
            from .rowcache import RowCache

            self._row_cache = RowCache(self)
        return self._row_cache.take(rows)

    def _to_chunk(self, batch, start):
        return self.decoder.chunk(batch, start)

    def use_blocks(self, codes=True):
        """:meth:`Source.use_blocks`; columns kept from a pass of the other kind are let go."""
        layout = self.block_candidate if codes else None
        if layout is not self.block_layout:
            self._columns = self._learned_chunks = None  # (the learning pass keeps dense dummies' chunks only)
            self._code_passes = 0
            if self._row_cache is not None:  # its records hold the other kind of row
                self._row_cache.close()
                self._row_cache = None
        self.block_layout = self.decoder.block_layout = layout

    def _locate_csv_error(self, exc, columns=None):
        """Find the line and column pyarrow stopped at; it does not report them itself.

        ``columns`` are the columns whose values must be numbers (default: the
        ones read as numbers, not categories' text or bools); field counts are
        checked on every line.
        """
        if columns is None:
            columns = self.columns
            if "_encoder" in self.__dict__:  # a text column's 'GM' is no bad number
                types = self._csv_types(columns)
                columns = [name for name in columns if types[name] == pa.float64()]
        columns = list(columns)
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


def _value_type(arrow_type):
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


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
