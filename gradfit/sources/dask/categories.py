"""Which columns of a Dask dataframe are categorical, from its dtypes alone (no compute).

Their levels are learned on the cluster and each partition encoded there by
:mod:`~gradfit.sources.dask.frame_blocks`.
"""

from __future__ import annotations

import pyarrow as pa


def arrow_type_of(dtype):
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
