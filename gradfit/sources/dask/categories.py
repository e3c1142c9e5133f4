"""Categorical columns of a Dask dataframe: their levels learned on the cluster, each partition encoded there."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...errors import DataError
from .. import encoding
from .compute import compute


def _dtype_arrow_type(dtype):
    """The Arrow type a pandas column of ``dtype`` becomes, for :func:`gradfit.sources.encoding.plan`."""
    categories = getattr(dtype, "categories", None)
    if categories is not None:  # pandas category: strings, or numeric codes
        return pa.string() if categories.dtype.kind in "OUS" or str(categories.dtype).startswith("str") \
            else pa.dictionary(pa.int32(), pa.float64())
    if str(dtype) in ("bool", "boolean"):
        return pa.bool_()
    kind = getattr(getattr(dtype, "numpy_dtype", dtype), "kind", "O")
    if kind in "iuf":
        return pa.float64()
    if kind in "mM":
        return pa.timestamp("ns")  # not a category by "auto": refused as not numeric
    return pa.string()  # object and string columns: text


def needs_encoder(frame, categorical):
    """Whether a Dask dataframe has columns for the encoder (see :func:`gradfit.sources.frames.needs_encoder`)."""
    if categorical is None:
        return False
    if not isinstance(categorical, str):
        return True
    return any(getattr(getattr(t, "numpy_dtype", t), "kind", "O") not in "iuf" for _, t in frame.dtypes.items())


def _distinct(series):
    """A partition's distinct non-missing values (merged by Dask's own reduction, on the cluster)."""
    return series.dropna().drop_duplicates()


def encode_frame(X, categorical, encoder, handle_unknown, dask, da):
    """``(features as a Dask array, encoder)``: the levels learned on the cluster, one compute for all columns."""
    names = [str(c) for c in X.columns]
    if encoder is None:
        types = [_dtype_arrow_type(t) for _, t in X.dtypes.items()]
        codings, references = encoding.plan(names, types, categorical, "the Dask input")
        learn = [c for c in codings if c.categorical]
        found = compute(*[X[c.name].map_partitions(_distinct).drop_duplicates() for c in learn])
        for coding, values in zip(learn, found):
            array = encoding.pandas_arrow(values.reset_index(drop=True))
            integral = pa.types.is_integer(encoding.plain_array(array).type)
            encoding.finish_levels(coding, encoding.distinct_values(array, coding.kind), integral, references,
                                   "the Dask input")
        encoder = encoding.TableEncoder(codings, handle_unknown)
    elif encoder.raw_names != names:
        raise ValueError(f"X has columns {names}, but the model was fitted on {encoder.raw_names}")
    lengths = [int(n) for n in compute(X.map_partitions(len))[0]]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    encode = dask.delayed(_encode_partition, pure=True)
    blocks = [
        da.from_delayed(encode(part, encoder, int(start)), shape=(n, encoder.n_features), dtype=np.float64)
        for part, n, start in zip(X.to_delayed(), lengths, starts)
    ]
    return da.concatenate(blocks, axis=0), encoder


def _encode_partition(frame, encoder, start):
    """The features of a pandas partition (rows counted from 1 in messages, as for dataframes)."""
    arrays = [encoding.pandas_arrow(frame.iloc[:, j]) for j in range(frame.shape[1])]
    for name, array in zip(encoder.raw_names, arrays):
        mask = encoding.missing_mask(array)
        if not mask.all():
            raise DataError(f"missing value in the Dask input at row {start + int(np.argmax(~mask)) + 1}, "
                            f"column {name!r}")
    where = lambda row, name: f"the Dask input, row {start + row + 1}, column {name!r}"  # noqa: E731
    return encoder.encode(arrays, np.float64, where)
