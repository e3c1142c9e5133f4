"""Data sources: where chunks of rows come from (arrays, files, Dask)."""

from .arrays import ArraySource
from .base import Chunk, Source, check_finite
from .dask import DaskSource, is_dask_collection
from .files import FileSource, file_format

__all__ = ["ArraySource", "Chunk", "DaskSource", "FileSource", "Source", "check_finite", "file_format", "is_dask_collection"]
