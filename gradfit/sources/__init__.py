"""Data sources: where chunks of rows come from (arrays, files, Dask).

The names below are imported when first used (PEP 562): a module that needs
only :func:`check_finite` or the encoding does not load pyarrow's file readers,
and ``gradfit --help`` loads neither (``../shared/DESIGN.md``, start-up).
"""

__all__ = ["ArraySource", "Chunk", "DaskSource", "FileSource", "Source", "check_finite", "file_format", "is_dask_collection"]


def __getattr__(name):
    # Literal imports only (no importlib), as in gradfit/__init__.py.
    if name == "ArraySource":
        from . import arrays as module
    elif name in ("Chunk", "Source", "check_finite"):
        from . import base as module
    elif name in ("DaskSource", "is_dask_collection"):
        from . import dask as module
    elif name in ("FileSource", "file_format"):
        from . import files as module
    else:
        raise AttributeError(f"module 'gradfit.sources' has no attribute {name!r}")
    globals()[name] = getattr(module, name)  # imported once
    return globals()[name]
