"""Dask is optional: it is imported only when used, and its absence is one line that says how to install it."""

from __future__ import annotations

import importlib

from ...errors import GradfitError

INSTALL_HINT = "pip install gradfit[dask]"


class MissingDependencyError(GradfitError, ImportError):
    """An optional dependency (Dask) is not installed; the message says how to get it."""


def require(module="dask"):
    """Import ``module`` (``dask``, ``dask.dataframe``, ``distributed``…) or fail in one line."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"this needs Dask, which is not installed ({module!r} cannot be imported): {INSTALL_HINT}"
        ) from None


def is_dask_collection(obj):
    """True for a Dask array, dataframe or series, without importing Dask."""
    return hasattr(type(obj), "__dask_graph__") and not isinstance(obj, type)
