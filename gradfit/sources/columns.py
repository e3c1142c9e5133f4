"""A file's needed columns kept after the first pass: in memory when they fit, else a binary cache.

Decoding CSV costs far more than the arithmetic of an epoch (a 442-row file:
0.77 ms an epoch parsed, 63 µs in memory), and even Parquet costs a decode a
pass. So the first full pass over a :class:`~gradfit.sources.FileSource`
keeps every chunk it yields, C-ordered as the engines read fastest, and later
passes yield the kept chunks, with the same row positions (``Chunk.start``)
for messages:

* in memory, while the kept bytes stay within the budget
  (:func:`memory_budget`: ``--memory`` / ``FileSource(memory=...)``, by default
  :func:`default_memory_budget`);
* otherwise, for CSV, in an anonymous binary file in ``TMPDIR`` (raw chunk
  bytes, read back with one ``readinto`` an array: no parsing), which
  disappears with the source or the process however it ends;
* otherwise (Parquet beyond the budget, or no room on disk) nowhere: every
  pass streams the file again, in bounded memory.

A categorical column kept as level codes (``Chunk.codes``) is kept as its
codes, one int64 a row, never as dummies.

A pass that stops early (an error, a consumer that breaks off) keeps nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import numpy as np

from ..errors import DataError, OptionError
from .base import Chunk

#: the default budget's share of the machine's memory
DEFAULT_MEMORY_SHARE = 0.25
#: disk left free by the binary cache (the minibatch row cache leaves the same)
DISK_HEADROOM_BYTES = 1 << 30

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text):
    """Bytes from a size such as ``"512MiB"``, ``"4GiB"``, ``"1.5GB"`` or ``"1000000"``.

    Binary units (KiB, MiB, GiB, TiB) count powers of 1024, decimal ones (KB,
    MB, GB, TB, or K, M, G, T) powers of 1000; a bare number counts bytes.
    """
    match = _SIZE.fullmatch(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise OptionError(
            f"memory size {text!r} is not a size; write e.g. 512MiB, 4GiB or 2GB (a bare number counts bytes)"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def _meminfo():
    """``(total, available)`` bytes of memory from /proc/meminfo, or ``(None, None)``."""
    values = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values.get("MemTotal"), values.get("MemAvailable")


def default_memory_budget():
    """``min(25 % of the machine's memory, the memory available now)``, in bytes.

    A quarter leaves room for the rest of the process and for other programs;
    what is available now keeps a busy machine out of swap. Without
    ``/proc/meminfo``, a quarter of the physical pages (``sysconf``), else 1 GiB.
    """
    total, available = _meminfo()
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 1 << 30
    share = int(DEFAULT_MEMORY_SHARE * total)
    return share if available is None else min(share, available)


def memory_budget(memory):
    """Bytes from ``memory``: ``None`` for :func:`default_memory_budget`, an int of bytes, or a size string."""
    if memory is None:
        return default_memory_budget()
    if isinstance(memory, str):
        return parse_size(memory)
    if isinstance(memory, (bool, float)) or not isinstance(memory, (int, np.integer)) or memory < 0:
        raise OptionError(f"memory={memory!r} must be a number of bytes ≥ 0 or a size such as '4GiB'")
    return int(memory)


class ColumnStore:
    """The chunks of one full pass over a file, kept for every later pass.

    Parameters
    ----------
    budget : int
        The most bytes kept in memory.
    n_samples : int or None
        Rows of the file, when known before the pass (Parquet): a file that
        cannot fit is not kept in memory at all.
    spill : bool
        Whether chunks beyond the budget go to a binary file in ``TMPDIR``
        (CSV, whose parsing is the cost) or are dropped (Parquet, already binary).
    row_bytes : int
        Bytes of one row as kept: ``d·itemsize(X) + 8k (+ 8 with weights)``.
    block_rows : int
        Rows of the blocks kept (``Source.rows_per_chunk``).
    """

    def __init__(self, budget, n_samples, spill, row_bytes, block_rows):
        self.budget = int(budget)
        self.block_rows = int(block_rows)
        self.pending = []  # chunks not yet joined into a block
        self.spill = spill
        self.row_bytes = int(row_bytes)
        self.kept = []  # the chunks in memory, while filling or when complete in memory
        self.kept_bytes = 0
        self.file = None  # the binary cache, once spilled
        self.index = []  # (start, rows, X shape/dtype, weights?) of each chunk in the file
        self.complete = False
        self.where = "memory"
        if n_samples is not None and n_samples * self.row_bytes > self.budget:
            self.where = "disk" if spill else None

    @property
    def n_chunks(self):
        return len(self.kept) if self.where == "memory" else len(self.index)

    @property
    def active(self):
        return self.where is not None

    def keep(self, chunk):
        """Keep ``chunk`` and return it C-ordered.

        Consecutive chunks are kept joined in blocks of ``block_rows`` rows,
        the size the engines' threads take from arrays in memory.
        """
        chunk = Chunk(
            np.ascontiguousarray(chunk.X), np.ascontiguousarray(chunk.y),
            None if chunk.sample_weight is None else np.ascontiguousarray(chunk.sample_weight), chunk.start,
            chunk.positions,  # rows left out (missing="drop"): messages still name the file's own rows
            None if chunk.codes is None else np.ascontiguousarray(chunk.codes),
        )
        if self.where is None:
            return chunk
        self.kept_bytes += chunk.n_rows * self.row_bytes
        if self.where == "memory" and self.kept_bytes > self.budget:
            self.where = "disk" if self.spill else None
            held, self.kept = self.kept, []
            for block in held:
                self._write(block)
            if self.where is None:
                self.pending = []
                return chunk
        self.pending.append(chunk)
        if sum(part.n_rows for part in self.pending) >= self.block_rows:
            self._flush()
        return chunk

    def _flush(self):
        parts, self.pending = self.pending, []
        if not parts:
            return
        if len(parts) == 1:
            block = parts[0]
        else:
            weights = [part.sample_weight for part in parts]
            positions = None
            if any(part.positions is not None for part in parts):
                positions = np.concatenate([
                    part.positions if part.positions is not None else part.start + np.arange(part.n_rows)
                    for part in parts])
            codes = None if parts[0].codes is None else np.concatenate([part.codes for part in parts])
            block = Chunk(np.concatenate([part.X for part in parts]), np.concatenate([part.y for part in parts]),
                          None if weights[0] is None else np.concatenate(weights), parts[0].start, positions, codes)
        if self.where == "memory":
            self.kept.append(block)
        else:
            self._write(block)

    def _write(self, chunk):
        if self.where != "disk":
            return
        if chunk.positions is not None:
            # the cache file holds values only: a file with rows left out streams every pass
            self.close()
            self.where = None
            return
        try:
            if self.file is None:
                self.folder = tempfile.gettempdir()
                self.file = tempfile.TemporaryFile(prefix="gradfit-columns-", dir=self.folder)
            arrays = [chunk.X, chunk.y] + ([chunk.sample_weight] if chunk.sample_weight is not None else []) \
                + ([chunk.codes] if chunk.codes is not None else [])
            if shutil.disk_usage(self.folder).free < sum(a.nbytes for a in arrays) + DISK_HEADROOM_BYTES:
                raise OSError("no room")
            for array in arrays:
                self.file.write(memoryview(array).cast("B"))
            self.index.append((chunk.start, chunk.n_rows, chunk.X.shape[1], chunk.X.dtype,
                               chunk.y.shape[1], chunk.sample_weight is not None, chunk.codes is not None))
        except OSError:
            self.close()  # no room: every pass streams the file instead
            self.where = None

    def finish(self, source):
        """The pass ended: from now on :meth:`chunks` serves every pass (if anything was kept)."""
        if self.where is not None:
            self._flush()
        if self.where == "disk":
            self.file.flush()
        self.complete = self.active
        if self.complete and self.where == "memory":
            self._starts = np.array([c.start for c in self.kept] + [source.n_samples], dtype=np.int64)

    def chunks(self):
        """The kept chunks, in order: views of memory, or fresh arrays read from the cache file."""
        if self.where == "memory":
            yield from self.kept
            return
        offset = 0
        for start, rows, width, dtype, outputs, weighted, coded in self.index:
            X = np.empty((rows, width), dtype=dtype)
            y = np.empty((rows, outputs))
            weight = np.empty(rows) if weighted else None
            codes = np.empty(rows, dtype=np.int64) if coded else None
            for array in (X, y) + ((weight,) if weighted else ()) + ((codes,) if coded else ()):
                got = os.preadv(self.file.fileno(), [memoryview(array).cast("B")], offset)
                if got != array.nbytes:
                    raise DataError(f"the binary cache of the data in {self.folder!r} was cut short")
                offset += array.nbytes
            yield Chunk(X, y, weight, start, codes=codes)

    def take(self, rows):
        """The :class:`Chunk` of the sorted rows ``rows`` (kept in memory only; else ``None``)."""
        if not (self.complete and self.where == "memory"):
            return None
        rows = np.asarray(rows, dtype=np.int64)
        owner = np.searchsorted(self._starts, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(owner)) + 1
        parts = []
        for begin, end in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [rows.size]])):
            if begin == end:
                continue
            chunk = self.kept[int(owner[begin])]
            local = rows[begin:end] - chunk.start
            parts.append((chunk.X[local], chunk.y[local], None if chunk.sample_weight is None else chunk.sample_weight[local],
                          None if chunk.codes is None else chunk.codes[local]))
        if not parts:
            first = self.kept[0]
            return Chunk(first.X[:0], first.y[:0], None if first.sample_weight is None else first.sample_weight[:0], 0,
                         codes=None if first.codes is None else first.codes[:0])
        X = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        weight = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
        codes = None if parts[0][3] is None else np.concatenate([p[3] for p in parts])
        return Chunk(X, y, weight, int(rows[0]), codes=codes)

    def close(self):
        self.kept = []
        if self.file is not None:
            self.file.close()
            self.file = None
        self.complete = False


def row_bytes(source):
    """Bytes a row of ``source`` takes when kept: X as stored, y and the weights in float64 (a column kept as
    level codes: the other features and one int64 code)."""
    layout = source.block_layout
    if layout is not None:
        return layout["n_dense"] * np.dtype(source.dtype).itemsize + 8 + 8 * source.n_outputs + 8 * source.has_weights
    return source.n_features * np.dtype(source.dtype).itemsize + 8 * source.n_outputs + 8 * source.has_weights
