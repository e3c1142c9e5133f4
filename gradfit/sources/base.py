"""What every data source yields: row chunks of ``(X, y, sample_weight)``.

A source knows its shape and names and can be read any number of times, chunk
by chunk, in a fixed order. Engines never see where the chunks come from
(``../shared/DESIGN.md``: arrays, files, Dask).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from ..errors import DataError


@dataclass(frozen=True)
class Chunk:
    """A block of consecutive rows (or, for minibatches, chosen rows).

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features), float32 or float64
        As stored: no copy, no standardization.
    y : ndarray of shape (n_rows, n_outputs), float64
    sample_weight : ndarray of shape (n_rows,) or None
        ``None`` means every row weighs 1.
    start : int
        Index in the source of the chunk's first row (0-based, header excluded).
    positions : ndarray of shape (n_rows,) or None
        Each row's index in the source where rows were left out (missing
        values dropped), for messages; ``None``: ``start, start + 1, …``.
    codes : ndarray of shape (n_rows,), int64, or None
        The level codes of a categorical column kept as codes (a source's
        ``block_layout``, :mod:`gradfit.engines.categorical`); ``X`` then
        holds the other features only.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    start: int
    positions: np.ndarray | None = None
    codes: np.ndarray | None = None

    def row(self, i):
        """The index in the source of the chunk's row ``i`` (for messages)."""
        return int(self.positions[i]) if self.positions is not None else self.start + int(i)

    @property
    def n_rows(self):
        return self.X.shape[0]


class Source:
    """Base class: a re-readable sequence of :class:`Chunk`.

    Subclasses set ``n_features``, ``n_outputs``, ``feature_names``,
    ``target_names``, ``dtype`` (of X), ``n_samples`` (``None`` until known) and
    ``has_weights``, and implement :meth:`chunks`; :meth:`take` is needed only
    for minibatches. ``block_layout`` is ``None`` unless a categorical column
    is kept as level codes (:meth:`gradfit.sources.encoding.TableEncoder.block_layout`).
    """

    #: the layout of a categorical column that may be kept as level codes
    #: (:meth:`gradfit.sources.encoding.TableEncoder.block_layout`), or ``None``
    block_candidate = None
    #: that layout once :meth:`use_blocks` was called: chunks then carry ``codes``
    block_layout = None

    def use_blocks(self, codes=True):
        """Hand the :attr:`block_candidate` column on as level codes (``Chunk.codes``), or as dummies, from now on.

        Every fit says which, before its first pass
        (:func:`gradfit.fitting.keeps_codes`): codes but where it solves with
        a dense scatter of the dummies.
        """
        self.block_layout = self.block_candidate if codes else None

    def check_dense_levels(self):
        """Refuse to encode the :attr:`block_candidate` column as dense dummies beyond ``MAX_LEVELS``."""
        from .encoding import MAX_LEVELS

        layout = self.block_candidate
        if layout is not None and self.block_layout is None and layout["n_levels"] > MAX_LEVELS:
            raise DataError(
                f"{self.describe()}, column {layout['name']!r}: {layout['n_levels']} categories, more than the "
                f"{MAX_LEVELS} gradfit encodes as dense features, which this fit would take (it solves with their dense "
                "scatter); other fits keep the column as level codes")

    #: a chunk is the unit of work handed to a thread, and of the partial results
    #: merged: big enough that the hand-over and a chunk's first block cost
    #: little (engines walk it in cache-sized blocks, :mod:`gradfit.engines.blocks`;
    #: the moments pass centres a chunk's first block on its own mean, at the
    #: price of one more read: 32 MB chunks make that pass 7 % faster than 8 MB
    #: ones), small enough to give every core many chunks
    chunk_bytes = 32 * 1024 * 1024

    def rows_per_chunk(self):
        """Rows per chunk: a chunk of X and y, in float64, about ``chunk_bytes``."""
        # a column kept as codes is one value a row, not its dummies
        features = self.n_features if self.block_layout is None else self.block_layout["n_dense"] + 1
        width = features + self.n_outputs + 1
        return int(max(4096, min(1 << 20, self.chunk_bytes // (8 * width))))

    def chunks(self):
        """Yield the chunks of the whole source, in order."""
        raise NotImplementedError

    def reduce(self, function, combine):
        """``combine``-fold of ``function(chunk)`` over every chunk, in order.

        The one way engines read a whole source: a source whose chunks live
        elsewhere (a cluster) overrides this to run ``function`` where the
        chunks are and send back only the partial results. ``function`` may
        return ``None`` for an empty chunk; the result is ``None`` for no chunks.
        """
        result = None
        for chunk in self.chunks():
            partial = function(chunk)
            if partial is None:
                continue
            result = partial if result is None else combine(result, partial)
        return result

    def take(self, rows):
        """Return the :class:`Chunk` of the given sorted row indices (for minibatches)."""
        raise DataError(f"{self.describe()} cannot be read in minibatches")

    def describe(self):
        """A short name for messages, e.g. ``file 'data.csv'`` or ``X``."""
        raise NotImplementedError

    def where(self, row, column=None):
        """Where a value is, for messages: ``"row 17, column 'x3'"``.

        ``row`` is 0-based over the data rows; the message counts from 1.
        ``column`` indexes features, or ``n_features + j`` for output ``j``,
        or ``-1`` for the sample weight.
        """
        text = self.row_position(row)
        if column is not None:
            text += f", column {self.column_name(column)!r}"
        return text

    def row_position(self, row):
        """Where data row ``row`` (0-based) is, for :meth:`where`: ``"row 18"`` (files say more)."""
        return f"row {row + 1}"

    def column_name(self, column):
        if column == -1:
            return "sample_weight"
        if column < self.n_features:
            return self.feature_names[column]
        return self.target_names[column - self.n_features]


def pending_property(name):
    """A property ``name`` of a source whose levels are learned in the statistics pass (``levels_pending``).

    Read before that pass, it learns them by a pass of their own (the
    source's ``settle()``); its value is kept as ``_name``.
    """

    def get(self):
        if self.__dict__.get("levels_pending"):
            self.settle()
        return self.__dict__.get("_" + name, getattr(Source, name, None))

    def put(self, value):
        self.__dict__["_" + name] = value

    return property(get, put, doc=f"``{name}``, once the levels are known (``settle()``).")


class NamedBy:
    """Messages told by ``self.names`` (a :class:`Source`): for what reads rows on its behalf.

    Put before :class:`Source` among the bases, so these win over its defaults.
    """

    def describe(self):
        return self.names.describe()

    def where(self, row, column=None):
        return self.names.where(row, column)

    def row_position(self, row):
        return self.names.row_position(row)

    def column_name(self, column):
        return self.names.column_name(column)


def file_row_position(row, csv, fragment_starts=None, fragment_names=()):
    """Where data row ``row`` (0-based) of a file or folder is: ``line 19``, ``row 18``, ``part1.parquet row 18``.

    CSV counts lines with the header as line 1 (exact unless a quoted field
    holds a line break); Parquet counts rows within the file that holds the
    row (``fragment_starts``: each file's first row, ascending), named when
    there are several (``fragment_names``).
    """
    if csv:
        return f"line {row + 2}"
    if fragment_starts is None:
        return f"row {row + 1}"
    index = int(np.searchsorted(fragment_starts, row, side="right")) - 1
    text = f"row {row - fragment_starts[index] + 1}"
    return f"{fragment_names[index]} {text}" if len(fragment_names) > 1 else text


def array_position(row, column, n_features):
    """Where a value is in in-memory arrays, 0-based: ``X[17, 3]``, ``y[17, 0]``, ``sample_weight[17]``."""
    if column is None:
        return f"row {row}"
    if column == -1:
        return f"sample_weight[{row}]"
    if column >= n_features:
        return f"y[{row}, {column - n_features}]"
    return f"X[{row}, {column}]"


def check_finite(source, chunk):
    """Raise :class:`DataError` at the first NaN or infinity in ``chunk``.

    Called on the slow path only, once a cheap chunk sum has come out
    non-finite; it names the row and column of the first bad value.
    """
    layout = source.block_layout if chunk.codes is not None else None
    for block, offset in ((chunk.X, 0), (chunk.y, source.n_features)):
        bad = ~np.isfinite(block)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            value = block[row, column]
            if layout is not None and offset == 0:  # X holds the features but the coded column's
                column = layout["dense_index"][column]
            kind = "missing value (NaN)" if np.isnan(value) else f"infinite value ({value})"
            raise DataError(
                f"{kind} in {source.describe()} at {source.where(chunk.row(row), offset + column)}"
            )
    if chunk.sample_weight is not None:
        bad = ~np.isfinite(chunk.sample_weight) | (chunk.sample_weight < 0)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"sample weight {chunk.sample_weight[row]} in {source.describe()} at "
                f"{source.where(chunk.row(row), -1)} is not a finite non-negative number"
            )


# -- per-chunk work on several threads ---------------------------------------------

#: chunks handed out ahead of the one being merged, per thread: enough to keep
#: every thread busy while the caller merges (merging is quick), few enough to
#: bound what is held (a d×d result a chunk for the statistics pass)
LOOKAHEAD = 1

_lock = threading.Lock()
_controller = None
_limit_depth = 0
_limiter = None
_pool = None  # (process id, threads, executor)


def _blas():
    global _controller
    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()  # ~10 ms: made once
        return _controller


def worker_threads():
    """Threads for per-chunk work: as many as BLAS may use, at most the CPUs this process has.

    BLAS's thread count is the knob users already turn (``OMP_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS``, ``threadpoolctl.threadpool_limits``): held at 1,
    every pass runs on the calling thread alone.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    blas = [info["num_threads"] for info in _blas().info() if info["user_api"] == "blas"]
    return max(1, min(cpus, max(blas, default=1)))


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS held to one thread inside (reference-counted across threads: the last one out restores it)."""
    global _limit_depth, _limiter
    controller = _blas()
    with _lock:
        if _limit_depth == 0:
            _limiter = controller.limit(limits=1, user_api="blas")
        _limit_depth += 1
    try:
        yield
    finally:
        with _lock:
            _limit_depth -= 1
            if _limit_depth == 0:
                _limiter.restore_original_limits()
                _limiter = None


def _executor(threads):
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != threads:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="gradfit"))
        return _pool[2]


def fold_in_threads(function, combine, chunks, threads):
    """:meth:`Source.reduce`'s fold, with ``function`` run on ``threads`` threads.

    NumPy and BLAS release the GIL, so the chunks' work runs in parallel while
    the calling thread merges finished results. Partial results are combined
    in the order of the chunks, exactly as the serial fold combines them, so
    the result does not depend on the number of threads.

    BLAS is held to one thread meanwhile: a chunk is too small for BLAS's own
    threads to pay (OpenBLAS's ``syrk`` on one chunk gains little from a second
    thread), and threads of threads only fight over the cores; on a loaded
    machine OpenBLAS's spinning threads made a 0.3 s pass take over 10 s.
    """
    executor = _executor(threads)
    pending = collections.deque()
    result = None

    def merge_oldest(result):
        partial = pending.popleft().result()
        if partial is None:
            return result
        return partial if result is None else combine(result, partial)

    with single_threaded_blas():
        try:
            for chunk in chunks:
                pending.append(executor.submit(function, chunk))
                if len(pending) > LOOKAHEAD * threads:
                    result = merge_oldest(result)
            while pending:
                result = merge_oldest(result)
        finally:
            for future in pending:
                future.cancel()
    return result
