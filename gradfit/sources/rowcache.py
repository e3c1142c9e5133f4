"""A binary copy of a file's rows on local disk, for minibatches.

Minibatches take rows in a random order (``rng.permutation`` every epoch). A
Parquet row group or a CSV file can only be decoded from its start, so
reading a batch of scattered rows from them would decode most of the file at
every step. Instead, the first minibatch writes the needed columns once, as
fixed-size binary records (X as stored, y and the weights in float64), to an
anonymous temporary file; every minibatch then reads just its rows from it.

A categorical column kept as level codes (the source's ``block_layout``) is
one int64 field of its own, beside the other features: never its dummies.

The file costs ``n_samples × (d·itemsize + 8·k + 8·[weights])`` bytes of disk,
in ``tempfile.gettempdir()`` (``TMPDIR``), and no memory beyond the rows taken:
it is mapped a window at a time, for the duration of one ``take`` only. It has no name on disk, so
it disappears when the source is closed or garbage-collected, or the process
ends, however it ends.
"""

from __future__ import annotations

import mmap
import shutil
import tempfile

import numpy as np

from ..errors import DataError
from .base import Chunk

#: disk left free after the cache is written, so that it never fills a disk
HEADROOM_BYTES = 1 << 30
#: the most bytes of the cache mapped at once while a minibatch is read
WINDOW_BYTES = 16 << 20


class RowCache:
    """The rows of ``source`` (which must have run one pass) as binary records.

    Parameters
    ----------
    source : Source
        Read once, chunk by chunk, in storage order.
    folder : str, optional
        Where the anonymous file lives; default ``tempfile.gettempdir()``.
    """

    def __init__(self, source, folder=None):
        layout = source.block_layout
        width = source.n_features if layout is None else layout["n_dense"]
        fields = [("X", source.dtype, (width,)), ("y", np.float64, (source.n_outputs,))]
        if source.has_weights:
            fields.append(("w", np.float64))
        self.has_codes = layout is not None
        if self.has_codes:
            fields.append(("c", np.int64))  # the level codes of the column kept as codes
        self.record = np.dtype(fields)
        self.has_weights = source.has_weights
        folder = folder or tempfile.gettempdir()
        if source.n_samples is not None:
            needed = source.n_samples * self.record.itemsize
            free = shutil.disk_usage(folder).free
            if needed + HEADROOM_BYTES > free:
                raise DataError(
                    f"minibatches over {source.describe()} need a {_size(needed)} row cache in {folder!r}, "
                    f"which has {_size(free)} free; set TMPDIR to a folder with room, or use full batches"
                )
        self.file = tempfile.TemporaryFile(prefix="gradfit-rows-", dir=folder)
        rows = 0
        try:
            for chunk in source.chunks():
                records = np.empty(chunk.n_rows, dtype=self.record)
                records["X"] = chunk.X
                records["y"] = chunk.y
                if self.has_weights:
                    records["w"] = chunk.sample_weight
                if self.has_codes:
                    records["c"] = chunk.codes
                self.file.write(records.tobytes())
                rows += chunk.n_rows
            self.file.flush()
        except OSError as exc:
            self.close()
            raise DataError(
                f"cannot write the minibatch row cache of {source.describe()} in {folder!r}: "
                f"{exc.strerror or exc}; set TMPDIR to a folder with room, or use full batches"
            ) from None
        self.n_samples = rows

    def take(self, rows):
        """The :class:`Chunk` of the sorted row indices ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        records = np.empty(rows.size, dtype=self.record)
        size = self.record.itemsize
        # The rows are read through short-lived maps of at most WINDOW_BYTES each:
        # one map of the whole file would count every page the kernel maps
        # around each row read (it faults in 64 KiB at a time) as this process's
        # memory, the whole file by the end of a large minibatch.
        window = np.maximum(rows * size // WINDOW_BYTES, 0)
        cuts = np.flatnonzero(np.diff(window)) + 1
        for begin, end in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [rows.size]])):
            first, last = int(rows[begin]), int(rows[end - 1])
            offset = first * size // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
            length = (last + 1) * size - offset
            with mmap.mmap(self.file.fileno(), length, offset=offset, access=mmap.ACCESS_READ) as view:
                table = np.frombuffer(view, dtype=self.record, count=last - first + 1, offset=first * size - offset)
                records[begin:end] = table[rows[begin:end] - first]
                del table
        weight = np.ascontiguousarray(records["w"]) if self.has_weights else None
        codes = np.ascontiguousarray(records["c"]) if self.has_codes else None
        start = int(rows[0]) if rows.size else 0
        return Chunk(np.ascontiguousarray(records["X"]), np.ascontiguousarray(records["y"]), weight, start,
                     codes=codes)

    def close(self):
        self.file.close()


def _size(count):
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"
