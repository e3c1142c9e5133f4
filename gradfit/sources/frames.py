"""pandas DataFrames with categorical columns or missing values, as a :class:`FrameSource` or an :class:`ArraySource`.

A frame of numbers alone goes through scikit-learn's validation as before;
this module serves the frames that need the encoder of
:mod:`gradfit.sources.encoding`: a string, ``category``, ``object`` or bool
column, a column named categorical, or ``missing="drop"``. A frame with
categorical columns keeps their level codes and makes a chunk's dummies when
the chunk is read (:class:`FrameSource`), as files do: never the whole
frame's one-hot block; one of numbers alone is encoded once (an :class:`ArraySource`).
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import DataError
from . import encoding
from .arrays import ArraySource
from .base import Chunk, Source, fold_in_threads, worker_threads


def is_frame(X):
    """A pandas DataFrame (without importing pandas)."""
    return type(X).__module__.startswith("pandas") and hasattr(X, "columns") and hasattr(X, "dtypes")


def needs_encoder(X, categorical, missing):
    """Whether a frame must go through the encoder rather than scikit-learn's numeric validation."""
    if missing != "error" or (categorical is not None and not isinstance(categorical, str)):
        return True
    if categorical is None:
        return False
    return any(dtype.kind not in "iufc" for dtype in X.dtypes)


def _where(row, name):
    return f"the input, row {row} (0-based), column {name!r}"


def _arrays(X):
    names = [str(column) for column in X.columns]
    if len(set(names)) != len(names):
        raise DataError("the input has two columns of the same name")
    return names, [encoding.pandas_arrow(X.iloc[:, j]) for j in range(X.shape[1])]


def _present(arrays, y, weight):
    """Per-column presence masks of the features, then the targets' and the weights' (where given)."""
    masks = [encoding.missing_mask(array) for array in arrays]
    masks.append(np.all(~np.isnan(y), axis=1))
    if weight is not None:
        masks.append(~np.isnan(weight))
    return masks


def frame_source(X, y, sample_weight, *, encoder=None, categorical="auto", missing="error",
                 handle_unknown="error", target_names=None):
    """An :class:`ArraySource` of the encoded frame, with ``encoder``, ``notes``, ``missing_counts``.

    ``encoder`` given (``partial_fit`` after the first batch): its levels are
    used; else they are learned from ``X`` (the rows kept).
    """
    names, arrays = _arrays(X)
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(y.shape[0], -1)
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if len(y) != len(X) or (weight is not None and len(weight) != len(X)):
        raise ValueError(f"X has {len(X)} rows, but y or sample_weight another number")
    notes, counts, dropped = [], None, 0
    masks = _present(arrays, y, weight)
    if missing == "drop":
        keep = np.logical_and.reduce(masks)
        labels = names + [", ".join(target_names or ["y"])] + (["sample_weight"] if weight is not None else [])
        counts = {label: int(np.count_nonzero(~mask)) for label, mask in zip(labels, masks) if not mask.all()}
        dropped = int(np.count_nonzero(~keep))
        if dropped:
            arrays = [array.filter(keep) for array in arrays]
            y = y[keep]
            weight = None if weight is None else weight[keep]
            shown = ", ".join(f"{name!r}: {n}" for name, n in counts.items())
            notes.append(f"missing values: {dropped} of {len(keep)} rows left out ({shown})")
    else:
        for name, mask in zip(names, masks):
            if not mask.all():
                raise DataError(f"missing value in {_where(int(np.argmax(~mask)), name)}; "
                                "to leave such rows out, use missing='drop'")
    if encoder is None:
        codings, references = encoding.plan(names, [array.type for array in arrays], categorical, "the input")
        for coding, array in zip(codings, arrays):
            if coding.categorical:
                integral = encoding.pa.types.is_integer(encoding.plain_array(array).type)
                encoding.finish_levels(coding, encoding.distinct_values(array, coding.kind), integral,
                                       references, "the input", encoding.MAX_BLOCK_LEVELS)
        encoder = encoding.TableEncoder(codings, handle_unknown)
        encoder.choose_block("the input")
    elif encoder.raw_names != names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    if encoder.categorical:
        # the dummies are made per chunk, never for the whole frame at once (a column of many levels as codes)
        source = FrameSource(encoder, encoder.column_values(arrays, _where), y, weight, target_names)
    else:
        source = ArraySource(encoder.encode(arrays, np.float64, _where), y, weight, encoder.feature_names,
                             target_names)
    source.encoder, source.notes, source.missing_counts, source.rows_dropped = encoder, notes, counts, dropped
    source.raw_feature_names = names
    return source


class FrameSource(ArraySource):
    """A frame's rows, its categorical columns' dummies made chunk by chunk: never a dense one-hot block of the frame.

    Holds each raw column as :meth:`~gradfit.sources.encoding.TableEncoder.column_values`
    give it (float64 values, or int64 level codes: 8 bytes a row either
    way), and makes a chunk's features when :meth:`chunks` or :meth:`take`
    hands it out, equal to those rows of the whole frame's encoding
    (:meth:`~gradfit.sources.encoding.TableEncoder.encode`): an ``(m, d)``
    block, ``m`` bounded by :meth:`~gradfit.sources.base.Source.rows_per_chunk`.

    The encoder's :attr:`~gradfit.sources.encoding.TableEncoder.block` column
    (many levels) is the :attr:`block_candidate`: once a fit asks for codes
    (:meth:`~gradfit.sources.base.Source.use_blocks`) chunks carry its codes
    and the other features (``layout["n_dense"]`` columns), else its dummies
    too (within :data:`~gradfit.sources.encoding.MAX_LEVELS`).

    Parameters
    ----------
    encoder : TableEncoder
    values : list of ndarray of shape (n_samples,)
        One per raw column: float64 values, or int64 level codes.
    y : ndarray of shape (n_samples, n_outputs)
    sample_weight : ndarray of shape (n_samples,) or None
    target_names : list of str, optional
    """

    def __init__(self, encoder, values, y, sample_weight=None, target_names=None):
        self.values = [np.asarray(v, dtype=np.float64) if not c.categorical else v
                       for c, v in zip(encoder.columns, values)]
        self.columns = encoder.columns
        self.block_name = encoder.block
        self.block_candidate = encoder.block_layout() if encoder.block is not None else None
        self.codes = None if encoder.block is None else self.values[self.block_candidate["column"]]
        self.y, self.sample_weight = y, sample_weight
        self.n_samples, self.n_features, self.n_outputs = len(y), encoder.n_features, y.shape[1]
        self.dtype = np.dtype(np.float64)
        self.has_weights = sample_weight is not None
        self.feature_names = encoder.feature_names
        self.target_names = list(target_names) if target_names is not None else (
            ["y"] if self.n_outputs == 1 else [f"y{j}" for j in range(self.n_outputs)])

    def features(self, rows, codes=False):
        """The features of ``rows`` (a slice or sorted indices), shape (m, d), column-major, as ``TableEncoder.encode`` makes them.

        ``codes``: leave out the :attr:`block_candidate` column (its codes go
        on :class:`Chunk` ``codes``): shape (m, ``layout["n_dense"]``).
        """
        m = len(range(self.n_samples)[rows]) if isinstance(rows, slice) else len(rows)
        width = self.block_candidate["n_dense"] if codes else self.n_features
        X = np.zeros((m, width), dtype=np.float64, order="F")
        j = 0
        for coding, values in zip(self.columns, self.values):
            if codes and coding.name == self.block_name:
                continue
            if not coding.categorical:
                X[:, j] = values[rows]
                j += 1
                continue
            encoding.put_dummies(X, j, len(coding.levels), coding.reference, values[rows])
            j += len(coding.levels) - 1
        return X

    @property
    def X(self):
        """All features of every row, dense (for what needs them at once; passes read :meth:`chunks`)."""
        self.check_dense_levels()
        return self.features(slice(None))

    @property
    def other_features(self):
        """Every row's features but the :attr:`block_candidate` column's dummies, dense."""
        return self.features(slice(None), codes=True)

    def _chunk(self, rows, start):
        weight = None if self.sample_weight is None else self.sample_weight[rows]
        if self.block_layout is not None:
            return Chunk(self.features(rows, codes=True), self.y[rows], weight, start, codes=self.codes[rows])
        return Chunk(self.features(rows), self.y[rows], weight, start)

    def _bounds(self):
        if self.block_layout is None:
            self.check_dense_levels()
        step = self.rows_per_chunk()
        return [(start, min(start + step, self.n_samples)) for start in range(0, self.n_samples, step)]

    def chunks(self):
        for start, stop in self._bounds():
            yield self._chunk(slice(start, stop), start)

    def reduce(self, function, combine):
        """The fold of :meth:`Source.reduce`; each chunk is encoded on the thread that works on it."""
        bounds = self._bounds()
        threads = worker_threads() if len(bounds) > 1 else 1
        if threads < 2:
            return super(ArraySource, self).reduce(function, combine)
        return fold_in_threads(lambda b: function(self._chunk(slice(*b), b[0])), combine, bounds, threads)

    def take(self, rows):
        """The chunk of the sorted ``rows`` (minibatches), encoded."""
        if self.block_layout is None:
            self.check_dense_levels()
        return self._chunk(rows, int(rows[0]) if len(rows) else 0)

    def subset(self, rows):
        """A :class:`FrameSource` of the given rows (a split's), encoded chunk by chunk as well."""
        subset = copy.copy(self)
        subset.values = [values[rows] for values in self.values]
        subset.codes = None if self.codes is None else subset.values[self.block_candidate["column"]]
        subset.y = self.y[rows]
        subset.sample_weight = None if self.sample_weight is None else self.sample_weight[rows]
        subset.n_samples = len(subset.y)
        return subset


def _frame_arrays(X, encoder, missing):
    """The frame's raw columns as Arrow arrays, checked against the encoder's columns and for missing values."""
    names, arrays = _arrays(X)
    if names != encoder.raw_names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    if missing != "drop":
        for name, array in zip(names, arrays):
            mask = encoding.missing_mask(array)
            if not mask.all():
                raise DataError(f"missing value in {_where(int(np.argmax(~mask)), name)}")
    return arrays


def _encode_rows(arrays, encoder, where):
    if encoder.block is not None:
        return encoder.encode_blocks(arrays, np.float64, where)
    return encoder.encode(arrays, np.float64, where), None


def predict_frame(X, encoder, missing, predict):
    """``predict(features, codes)`` over a frame's rows, encoded a block of rows at a time; shape (n, n_outputs).

    Rows with a missing value are NaN when ``missing="drop"``. ``codes`` is
    ``None``, or, where the encoder keeps a column of many levels as level
    codes (:attr:`~gradfit.sources.encoding.TableEncoder.block`), that
    column's codes, shape (rows,), and ``features`` the other features
    (:meth:`~gradfit.sources.encoding.TableEncoder.encode_blocks`). At most
    about :attr:`~gradfit.sources.base.Source.chunk_bytes` of features are
    made at once: no categorical column's dummies are made for the whole frame.
    """
    arrays = _frame_arrays(X, encoder, missing)
    n = len(X)
    width = encoder.n_features + 1
    step = int(max(4096, Source.chunk_bytes // (8 * width)))
    parts = []
    for start in range(0, n, step):
        rows = [array.slice(start, step) for array in arrays]
        features, codes = _encode_rows(rows, encoder, lambda row, name, start=start: _where(start + row, name))
        parts.append(predict(features, codes))
    if not parts:
        features, codes = _encode_rows(arrays, encoder, _where)
        return predict(features, codes)
    return np.concatenate(parts)


def array_source_dropping(X, y, weight, feature_names, target_names):
    """An :class:`ArraySource` of arrays without the rows holding a NaN (``missing="drop"``), counted per column."""
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(X.shape[1])]
    gaps = np.isnan(X)
    target_gaps = np.isnan(y).any(axis=1)
    weight_gaps = np.isnan(weight) if weight is not None else np.zeros(len(X), dtype=bool)
    keep = ~(gaps.any(axis=1) | target_gaps | weight_gaps)
    counts = {name: int(n) for name, n in zip(names, gaps.sum(axis=0)) if n}
    if target_gaps.any():
        counts[", ".join(target_names or ["y"])] = int(target_gaps.sum())
    if weight_gaps.any():
        counts["sample_weight"] = int(weight_gaps.sum())
    dropped = int(np.count_nonzero(~keep))
    notes = []
    if dropped:
        X, y = X[keep], y[keep]
        weight = None if weight is None else weight[keep]
        shown = ", ".join(f"{name!r}: {n}" for name, n in counts.items())
        notes.append(f"missing values: {dropped} of {len(keep)} rows left out ({shown})")
    source = ArraySource(X, y, weight, feature_names, target_names)
    source.notes, source.missing_counts, source.rows_dropped = notes, counts, dropped
    return source

