"""A fitted model's predictions on a Dask array or dataframe: lazily, block by block on the workers."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ...errors import DataError
from .. import encoding
from .compute import compute
from .optional import require


def predict_dask(model, X, predict):
    """A fitted model's predictions on a Dask array or dataframe, as a lazy Dask array.

    Shape (n_samples,) for a single output, else (n_samples, n_outputs): one
    prediction per input row. ``predict`` is :func:`gradfit.model.predict`
    (the one place predictions are written), given by the caller: the
    sources sit below the model and never import it. It runs on each block,
    ``coef`` (n_outputs, n_features), giving (n, n_outputs).

    A dataframe's columns must be the model's raw columns, in order; each
    partition is encoded where it is (:func:`_predict_partition`). A
    categorical column of more than ``BLOCK_LEVELS`` levels is read as level
    codes and its coefficient gathered (never a dense one-hot block). A
    missing value is an error naming its row and column, or, for a model fitted
    with ``missing="drop"``, makes that row's prediction NaN; an unseen level is
    an error, or adds zero with ``handle_unknown="ignore"``.
    """
    coef = np.atleast_2d(model.coef_).astype(np.float64)
    intercept = np.atleast_1d(model.intercept_).astype(np.float64)
    if getattr(model, "design_", None) is not None:
        out = _predict_formula(X, model, coef, intercept, predict)
        return out[:, 0] if model._y_ndim == 1 else out
    encoder = _encoder(model)
    if hasattr(X, "columns") and encoder is not None:
        out = _predict_frame(X, encoder, model.missing, coef, intercept, predict)
    else:
        if hasattr(X, "columns"):
            X = X.to_dask_array()
        if X.ndim != 2 or X.shape[1] != coef.shape[1]:
            raise ValueError(f"X has shape {X.shape}, but the model expects {model.n_features_in_} features")
        out = X.rechunk({1: -1}).map_blocks(
            predict, coef, intercept, chunks=(X.chunks[0], (coef.shape[0],)), dtype=np.float64
        )
    return out[:, 0] if model._y_ndim == 1 else out


def _encoder(model):
    """The model's encoder for predictions (its categories, or its numeric columns by name), or ``None``.

    A copy, with the estimator's ``handle_unknown`` and the column of many
    levels chosen again (a model file does not record it).
    """
    encoder = getattr(model, "encoder_", None)
    if encoder is None:
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            return None
        encoder = encoding.TableEncoder([encoding.ColumnCoding(str(name)) for name in names])
    encoder = dataclasses.replace(encoder, handle_unknown=model.handle_unknown, block=None)
    encoder.choose_block("the Dask input")
    return encoder


def _predict_frame(X, encoder, missing, coef, intercept, predict):
    names = [str(c) for c in X.columns]
    if names != encoder.raw_names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    reading = _PredictReading(encoder, missing, coef, intercept, predict,
                              encoder.block_layout() if encoder.block is not None else None)
    return _by_partition(X, _predict_partition, reading, coef.shape[0])


def _by_partition(X, function, reading, n_outputs):
    """``function(partition, reading, first row)`` on the workers, as one Dask array of shape (n, n_outputs)."""
    dask, da = require("dask"), require("dask.array")
    lengths = [int(n) for n in compute(X.map_partitions(len))[0]]
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    reading, run = dask.delayed(reading, pure=True), dask.delayed(function, pure=True)
    blocks = [da.from_delayed(run(part, reading, int(start)), shape=(n, n_outputs), dtype=np.float64)
              for part, n, start in zip(X.to_delayed(), lengths, starts)]
    return da.concatenate(blocks, axis=0)


@dataclasses.dataclass
class _PredictReading:
    encoder: object
    missing: str
    coef: np.ndarray
    intercept: np.ndarray
    predict: object
    layout: dict | None


def _predict_partition(frame, reading, start):
    """On a worker: a partition's predictions, shape (n, n_outputs); rows named from 1 in messages."""
    arrays = [encoding.pandas_arrow(frame.iloc[:, j]) for j in range(frame.shape[1])]
    if reading.missing != "drop":
        for name, array in zip(reading.encoder.raw_names, arrays):
            mask = encoding.missing_mask(array)
            if not mask.all():
                raise DataError(f"missing value in the Dask input at row {start + int(np.argmax(~mask)) + 1}, "
                                f"column {name!r}; the model was fitted with missing='error'")
    where = lambda row, name: f"the Dask input, row {start + row + 1}, column {name!r}"  # noqa: E731
    if reading.layout is None:
        return reading.predict(reading.encoder.encode(arrays, np.float64, where), reading.coef, reading.intercept)
    other, codes = reading.encoder.encode_blocks(arrays, np.float64, where)
    return reading.predict(other, reading.coef, reading.intercept, codes, reading.layout)


def _predict_formula(X, model, coef, intercept, predict):
    """A formula model's predictions on a Dask dataframe, each partition through the formula on its worker.

    A factor kept as level codes (the design's ``block``) has its
    coefficients gathered by code (:func:`gradfit.model.predict`), never a
    dense one-hot block.
    """
    design = copy.copy(model.design_)
    design.handle_unknown = model.handle_unknown  # the estimator's setting at predict time
    absent = [v for v in design.feature_variables if v not in X.columns]
    if absent:
        raise DataError(f"the Dask input has no column {absent[0]!r} (the formula names it)")
    X = X[design.feature_variables]
    return _by_partition(X, _predict_formula_partition, _FormulaReading(design, model.missing, coef, intercept,
                                                                         predict), coef.shape[0])


@dataclasses.dataclass
class _FormulaReading:
    design: object
    missing: str
    coef: np.ndarray
    intercept: np.ndarray
    predict: object


def _predict_formula_partition(frame, reading, start):
    """On a worker: a partition's predictions through the formula, shape (n, n_outputs); rows named from 1.

    A row with a missing value is an error (``missing="error"``), or, for a
    model fitted with ``missing="drop"``, predicted NaN.
    """
    design = reading.design  # its own methods: this package imports nothing of gradfit.formula (no import cycle)
    if len(frame) == 0:
        return np.empty((0, reading.coef.shape[0]))
    frame = frame.copy()
    frame.index = np.arange(start, start + len(frame))
    where = lambda row, column: f"the Dask input, row {int(frame.index[row]) + 1}, column {column!r}"  # noqa: E731
    if reading.missing != "drop":
        design.missing_features(frame, "error", where)
    gaps = frame[design.feature_variables].isna().any(axis=1).to_numpy()
    if design.block is not None:
        X, codes, _, _ = design.transform_codes(frame, where, targets=False)
        out = reading.predict(X, reading.coef, reading.intercept, codes, design.block_layout(frame))
    else:
        X, _, _, _ = design.transform(frame, where, targets=False)
        out = reading.predict(X, reading.coef, reading.intercept)
    out[gaps] = np.nan
    return out
