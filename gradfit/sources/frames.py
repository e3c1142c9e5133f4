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
                                       references, "the input")
        encoder = encoding.TableEncoder(codings, handle_unknown)
    elif encoder.raw_names != names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    features = encoder.encode(arrays, np.float64, _where)
    source = ArraySource(features, y, weight, encoder.feature_names, target_names)
    source.encoder, source.notes, source.missing_counts, source.rows_dropped = encoder, notes, counts, dropped
    source.raw_feature_names = names
    return source


def encode_frame(X, encoder, missing):
    """The features of a frame for predictions; rows with a missing value are NaN when ``missing="drop"``."""
    names, arrays = _arrays(X)
    if names != encoder.raw_names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    if missing != "drop":
        for name, array in zip(names, arrays):
            mask = encoding.missing_mask(array)
            if not mask.all():
                raise DataError(f"missing value in {_where(int(np.argmax(~mask)), name)}")
    return encoder.encode(arrays, np.float64, _where)


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

