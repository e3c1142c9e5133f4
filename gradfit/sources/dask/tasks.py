"""What runs on the workers for every Dask source: a block made a chunk, folded, merged, or a few rows taken.

A *block* is what one Dask task yields for consecutive rows: a tuple of its
parts ``(X, y, sample_weight)`` (arrays and dataframes), or a
:class:`~gradfit.sources.Chunk` already (files, read by
:mod:`~gradfit.sources.dask.file_blocks`; it keeps the file's row numbers
where rows were dropped).
"""

from __future__ import annotations

import numpy as np

from ..base import Chunk


def block_chunk(block, start, dtype):
    """A block as a :class:`Chunk` whose first row is ``start``, its arrays as the engines expect them."""
    positions = None
    if isinstance(block, Chunk):
        X, y, weight, positions = block.X, block.y, block.sample_weight, block.positions
    else:
        X, y, weight = block
    X = _aligned(np.asarray(X, dtype=dtype))
    y = _aligned(np.asarray(y, dtype=np.float64))
    if y.ndim == 1:
        y = y[:, None]
    weight = None if weight is None else _aligned(np.asarray(weight, dtype=np.float64))
    return Chunk(X, y, weight, start, positions)


def _aligned(array):
    # Arrays that travelled inside a graph (``da.from_array(...).persist()``) can
    # arrive at odd addresses; NumPy then skips BLAS and the engines' products
    # run 4-5 times slower. One copy puts them right (once, if the blocks are
    # persisted).
    return array if array.flags.aligned else array.copy()


def sub_chunks(chunk, step):
    """The chunk in pieces of ``step`` rows: blocks are split like every other source's chunks.

    So the engines get them in the pieces they are tuned for.
    """
    for offset in range(0, chunk.n_rows, step):
        stop = offset + step
        weight = None if chunk.sample_weight is None else chunk.sample_weight[offset:stop]
        positions = None if chunk.positions is None else chunk.positions[offset:stop]
        yield Chunk(chunk.X[offset:stop], chunk.y[offset:stop], weight, chunk.row(offset), positions)


def _pack(block, dtype):
    """A block as it is kept on the workers (:meth:`~gradfit.sources.DaskSource.persist`): its chunk."""
    return block_chunk(block, 0, dtype)


def _fold_block(function, combine, block, start, step, dtype):
    """``combine``-fold of ``function`` over the block's sub-chunks of ``step`` rows (:func:`sub_chunks`)."""
    result = None
    for chunk in sub_chunks(block_chunk(block, start, dtype), step):
        partial = function(chunk)
        if partial is not None:
            result = partial if result is None else combine(result, partial)
    return result


def _join(combine, *partials):
    """``combine``-fold of ``partials`` in order (``None``: an empty block)."""
    result = None
    for partial in partials:
        if partial is not None:
            # Each partial has exactly one consumer, so ``combine`` may reuse it.
            result = partial if result is None else combine(result, partial)
    return result


def _take_block(block, rows, dtype):
    """``(X, y, sample_weight)`` of the block's ``rows`` (0-based within the block), for a minibatch."""
    chunk = block_chunk(block, 0, dtype)
    return chunk.X[rows], chunk.y[rows], None if chunk.sample_weight is None else chunk.sample_weight[rows]
