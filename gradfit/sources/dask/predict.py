"""A fitted model's predictions on a Dask array or dataframe: lazily, block by block on the workers."""

from __future__ import annotations

import numpy as np

from .categories import encode_frame
from .optional import require


def predict_dask(model, X, predict):
    """A fitted model's predictions on a Dask array or dataframe, as a lazy Dask array.

    Shape (n_samples,) for a single output, else (n_samples, n_outputs); a
    dataframe's columns must be the model's features, in order. ``predict`` is
    :func:`gradfit.model.predict` (the one place predictions are written),
    given by the caller: the sources sit below the model and never import it.
    It runs on each block, ``coef`` (n_outputs, n_features), giving (n, n_outputs).
    """
    da = require("dask.array")
    names = getattr(model, "feature_names_in_", None)
    encoder = getattr(model, "encoder_", None)
    if encoder is not None and hasattr(X, "columns"):
        encoder.handle_unknown = model.handle_unknown
        X, _ = encode_frame(X, None, encoder, model.handle_unknown, require("dask"), da)
    elif hasattr(X, "columns"):
        if names is not None and list(X.columns) != list(names):
            raise ValueError(f"X has columns {list(X.columns)}, but the model was fitted on {list(names)}")
        X = X.to_dask_array()
    coef = np.atleast_2d(model.coef_).astype(np.float64)
    if X.ndim != 2 or X.shape[1] != coef.shape[1]:
        raise ValueError(f"X has shape {X.shape}, but the model expects {model.n_features_in_} features")
    intercept = np.atleast_1d(model.intercept_).astype(np.float64)
    out = X.rechunk({1: -1}).map_blocks(
        predict, coef, intercept, chunks=(X.chunks[0], (coef.shape[0],)), dtype=np.float64
    )
    return out[:, 0] if model._y_ndim == 1 else out
