"""Data sources: where chunks of rows come from (arrays, files; Dask later)."""

from .arrays import ArraySource
from .base import Chunk, Source, check_finite
from .files import FileSource, file_format

__all__ = ["ArraySource", "Chunk", "FileSource", "Source", "check_finite", "file_format"]
