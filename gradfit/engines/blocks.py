"""Row blocks sized for the cache, and per-thread scratch arrays to hold them.

A source hands an engine chunks of whatever size suits the source (a few MB
of an array, a Parquet batch, a Dask block); the engines then walk each chunk
in *blocks* of rows sized for what they do with them:

* the fused pass by BLAS (for other losses than the squared error,
  column-major chunks, or without Numba: :mod:`gradfit.engines.kernels` does
  the rest row by row) reads a block from memory for ``X_b u`` and again for
  ``X_bᵀ g``; the second read is cheaper while the block is still in cache.
  On one core (1e6 × 100, float64, CPU time) an epoch costs 1.6 × one
  ``X @ w`` with 256 KB to 1 MB blocks, 2.0 × with 8 MB (no reuse left) and
  2.1 × with 64 KB, whose per-call overhead eats the gain. On two threads
  small blocks lose everything: every BLAS call hands the GIL over, a thread
  wake-up of tens of µs on these machines, and with 256 KB blocks two threads
  ran no faster than one (85 ms an epoch, against 55 ms with 1 MB blocks;
  d = 1000 needed 512 rows, 4 MB, to scale at all);
* the moments pass copies a block into a float64 scratch array, centres it
  and forms ``zᵀz`` (BLAS ``syrk``), which is compute-bound: block sizes
  from 1 to 8 MB run within 3 % of each other, and only the number of rows
  matters, through the cost of merging a block's d × d sums.

Scratch arrays are private to the thread that asks (sources may run the
per-chunk function on several threads) and reused from call to call, so a pass
allocates nothing of the size of a block; each thread keeps its few MB (at
most :data:`MOMENTS_MAX_BYTES` for very wide rows) for the next pass.
"""

from __future__ import annotations

import threading

import numpy as np

#: bytes of float64 rows the fused pass keeps in cache between its two products
PASS_BLOCK_BYTES = 1024 * 1024
#: fewer rows per block than this, and threads spend their time handing the GIL over
PASS_MIN_ROWS = 512
#: bytes of the float64 centred copy of one block in the moments pass
MOMENTS_BLOCK_BYTES = 2 * 1024 * 1024
#: at least this many rows per column: merging a block's d × d sums (a few
#: reads and writes of d² values, memory-bound once they outgrow the cache)
#: then costs a few % of forming them (``syrk``, d²/2 multiply-adds a row)
MOMENTS_ROWS_PER_COLUMN = 4
#: ... but no block's copy above this, whatever the width of the rows
MOMENTS_MAX_BYTES = 16 * 1024 * 1024

_local = threading.local()


def block_rows(width, block_bytes, minimum=16):
    """Rows of ``width`` float64 values that fill ``block_bytes`` (at least ``minimum``)."""
    return max(int(minimum), int(block_bytes) // (8 * max(int(width), 1)))


def scratch(name, rows, columns, order="C", ones_column=False):
    """A float64 array of shape ``(rows, columns)``, private to this thread and reused.

    Parameters
    ----------
    name : str
        What it is for; arrays of different names never alias.
    rows, columns : int
        ``rows`` may vary between calls: a view of the first ``rows`` rows of a
        larger array is returned (the last block of a chunk is shorter).
    order : {"C", "F"}
    ones_column : bool
        Column 0 holds ones (set once, when the array is made; callers must
        not write to it).

    The contents are otherwise undefined: callers overwrite what they read.
    """
    arrays = getattr(_local, "arrays", None)
    if arrays is None:
        arrays = _local.arrays = {}
    key = (name, columns, order, ones_column)
    array = arrays.get(name)
    if array is None or array[0] != key or array[1].shape[0] < rows:
        array = (key, np.empty((max(rows, 1), columns), order=order))
        if ones_column:
            array[1][:, 0] = 1.0
        arrays[name] = array
    return array[1][:rows]
