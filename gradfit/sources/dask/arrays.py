"""Dask collections as row-aligned Dask arrays: dataframes and series through their partitions, NumPy sent once."""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from .compute import compute
from .optional import is_dask_collection


def _frame_values(frame, dtype):
    """A pandas partition as a NumPy array; missing values become NaN (then named by the moments pass)."""
    return frame.to_numpy(dtype=dtype, na_value=np.nan)


def column_names(obj):
    """A dataframe's string column names (a series: its name), else None."""
    if not hasattr(obj, "index"):  # an array
        return None
    names = [obj.name] if obj.ndim == 1 else list(obj.columns)
    return names if all(isinstance(name, str) for name in names) else None


def to_arrays(objects, dask, da, rows=None):
    """Dask arrays with known row chunks for each of X, y, weights.

    Dask dataframes and series become arrays through their partitions (their
    lengths counted in one compute for all of them); NumPy and pandas inputs
    are sent to the workers once, split like X (``rows``: the row chunks to
    split them in, else those of the first Dask collection).
    """
    frames = [i for i, obj in enumerate(objects) if is_dask_collection(obj) and hasattr(obj, "map_partitions")
              and not hasattr(obj, "chunks")]
    for i in frames:
        for column, dtype in _dtypes(objects[i]):
            if not (dtype.kind in "biuf"):
                raise DataError(f"column {column!r} has dtype {dtype}, which is not numeric")
    counted = compute(*[objects[i].map_partitions(len) for i in frames]) if frames else ()
    arrays = list(objects)
    for i, lengths in zip(frames, counted):
        arrays[i] = _frame_to_array(objects[i], [int(n) for n in lengths], dask, da)
    for i, array in enumerate(arrays):
        if is_dask_collection(array) and any(np.isnan(n) for n in array.chunks[0]):
            arrays[i] = array.compute_chunk_sizes()  # one compute: the rows of each block
    reference = next((a for a in arrays if is_dask_collection(a)), None)
    for i, obj in enumerate(arrays):
        if not is_dask_collection(obj):
            values = np.asarray(obj)
            if rows is not None and values.ndim >= 1 and values.shape[0] == sum(rows):
                chunks = (tuple(rows),) + tuple((n,) for n in values.shape[1:])
            elif reference is not None and values.ndim >= 1 and values.shape[0] == reference.shape[0]:
                chunks = (reference.chunks[0],) + tuple((n,) for n in values.shape[1:])
            else:
                chunks = "auto"
            # Sent once, not with every compute.
            arrays[i] = da.from_array(values, chunks=chunks).persist()
    return arrays


def _dtypes(frame):
    """``(column, NumPy dtype)`` pairs of a dataframe or series (object for non-numeric pandas types)."""
    dtypes = {frame.name: frame.dtype} if frame.ndim == 1 else frame.dtypes
    pairs = []
    for name, dtype in dtypes.items():
        # pandas' nullable types (Int64, Float64, boolean) carry their NumPy type
        dtype = getattr(dtype, "numpy_dtype", dtype)
        try:
            pairs.append((name, np.dtype(dtype)))
        except TypeError:
            pairs.append((name, np.dtype(object)))
    return pairs


def _frame_to_array(frame, lengths, dask, da):
    dtypes = [dtype for _, dtype in _dtypes(frame)]
    dtype = np.dtype(np.float32 if all(t == np.float32 for t in dtypes) else np.float64)
    values = dask.delayed(_frame_values, pure=True)
    blocks = [
        da.from_delayed(values(part, dtype), shape=(n, len(dtypes)) if frame.ndim == 2 else (n,), dtype=dtype)
        for part, n in zip(frame.to_delayed(), lengths)
    ]
    return da.concatenate(blocks, axis=0)
