"""pandas DataFrames with categorical columns or missing values, as an :class:`ArraySource`.

A frame of numbers alone goes through scikit-learn's validation as before;
this module serves the frames that need the encoder of
:mod:`gradfit.sources.encoding`: a string, ``category``, ``object`` or bool
column, a column named categorical, or ``missing="drop"``.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from . import encoding
from .arrays import ArraySource
from .base import Chunk


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
    if encoder.block is not None:
        features, codes = encoder.encode_blocks(arrays, np.float64, _where)
        source = BlockArraySource(features, codes, encoder.block_layout(), y, weight, encoder.feature_names,
                                  target_names)
    else:
        features = encoder.encode(arrays, np.float64, _where)
        source = ArraySource(features, y, weight, encoder.feature_names, target_names)
    source.encoder, source.notes, source.missing_counts, source.rows_dropped = encoder, notes, counts, dropped
    source.raw_feature_names = names
    return source


class BlockArraySource(ArraySource):
    """An :class:`ArraySource` whose categorical column of many levels is held as level codes.

    ``other_features`` holds the other features (``layout["n_dense"]``
    columns) and ``codes`` the column's levels; chunks carry both once a fit
    asks for the codes (:meth:`~gradfit.sources.base.Source.use_blocks`).
    Everything else (``X``, other fits' chunks, folds) sees the dense
    dummies, made once, within :data:`~gradfit.sources.encoding.MAX_LEVELS`.
    """

    def __init__(self, other_features, codes, layout, y, sample_weight=None, feature_names=None, target_names=None):
        super().__init__(other_features[:0], y, sample_weight, feature_names, target_names)
        self.other_features = other_features
        self.codes = codes
        self.block_candidate = layout
        self.n_samples, self.n_features = len(codes), len(self.feature_names)
        self._dense = None

    @property
    def X(self):
        """All features, the column's dummies among them (the dense encoding)."""
        if self._dense is None:
            self.check_dense_levels()
            layout = self.block_candidate
            dense = np.zeros((self.n_samples, self.n_features))
            dense[:, layout["dense_index"]] = self.other_features
            rows = np.flatnonzero((self.codes >= 0) & (self.codes != layout["reference"]))
            column = self.codes[rows]
            dense[rows, layout["level_index"][column - (column > layout["reference"])]] = 1.0
            self._dense = dense
        return self._dense

    @X.setter
    def X(self, value):  # ArraySource.__init__ sets it: the dense features are made when first read
        pass

    def chunks(self):
        if self.block_layout is None:
            yield from super().chunks()
            return
        step = self.rows_per_chunk()
        for start in range(0, self.n_samples, step):
            stop = start + step
            weight = None if self.sample_weight is None else self.sample_weight[start:stop]
            yield Chunk(self.other_features[start:stop], self.y[start:stop], weight, start,
                        codes=self.codes[start:stop])

    def take(self, rows):
        """The chunk of the sorted ``rows`` (minibatches): the other features and the level codes, or the dummies."""
        if self.block_layout is None:
            return super().take(rows)
        weight = None if self.sample_weight is None else self.sample_weight[rows]
        return Chunk(self.other_features[rows], self.y[rows], weight, int(rows[0]) if len(rows) else 0,
                     codes=self.codes[rows])


def encode_frame(X, encoder, missing):
    """``(features, codes)`` of a frame for predictions; rows with a missing value are NaN when ``missing="drop"``.

    ``codes`` is ``None``, or, where the encoder keeps a column of many levels
    as level codes (:attr:`~gradfit.sources.encoding.TableEncoder.block`),
    that column's codes, shape (n,), and ``features`` the other features,
    shape (n, ``n_dense``) (:meth:`~gradfit.sources.encoding.TableEncoder.encode_blocks`):
    never a dense one-hot block of the column.
    """
    names, arrays = _arrays(X)
    if names != encoder.raw_names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    if missing != "drop":
        for name, array in zip(names, arrays):
            mask = encoding.missing_mask(array)
            if not mask.all():
                raise DataError(f"missing value in {_where(int(np.argmax(~mask)), name)}")
    if encoder.block is not None:
        return encoder.encode_blocks(arrays, np.float64, _where)
    return encoder.encode(arrays, np.float64, _where), None


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

