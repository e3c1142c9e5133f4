"""What runs on the workers for every Dask source: a block made a chunk, folded, merged, or a few rows taken.

A *block* is what one Dask task yields for consecutive rows: a tuple of its
parts ``(X, y, sample_weight)`` (numeric arrays and dataframes), or a
:class:`~gradfit.sources.Chunk` already (files, read by
:mod:`~gradfit.sources.dask.file_blocks`, and dataframes with categories or
missing values, :mod:`~gradfit.sources.dask.frame_blocks`; it keeps the
input's row numbers where rows were dropped, and a categorical column of many
levels as its level ``codes``, made dense dummies here only where a fit asks:
:func:`dense_dummies`).
"""

from __future__ import annotations

import numpy as np

from ..base import Chunk

#: partial results merged per task: a tree of few tasks, each moving little
FAN_IN = 8


def block_chunk(block, start, dtype, dense=None):
    """A block as a :class:`Chunk` whose first row is ``start``, its arrays as the engines expect them.

    ``dense``: a block's level codes become dummies (:func:`dense_dummies`)
    with this layout; ``None``: the codes are handed on as they are.
    """
    positions = codes = None
    if isinstance(block, Chunk):
        X, y, weight, positions, codes = block.X, block.y, block.sample_weight, block.positions, block.codes
    else:
        X, y, weight = block
    if codes is not None and dense is not None:
        X, codes = dense_dummies(X, codes, dense), None
    X = _aligned(np.asarray(X, dtype=dtype))
    y = _aligned(np.asarray(y, dtype=np.float64))
    if y.ndim == 1:
        y = y[:, None]
    weight = None if weight is None else _aligned(np.asarray(weight, dtype=np.float64))
    return Chunk(X, y, weight, start, positions, codes)


def dense_dummies(other_features, codes, layout):
    """All features, the codes' column as treatment-coded dummies, shape (n, n_dense + n_levels − 1).

    ``other_features`` (n, ``layout["n_dense"]``) go to ``layout["dense_index"]``;
    a row's level ``l ≠ reference`` sets its dummy at ``level_index[l − (l > reference)]``;
    an unseen level ignored (code −1) sets none, a missing one (−2) makes that column's dummies NaN.
    """
    n, reference = len(codes), layout["reference"]
    level_index = layout["level_index"]
    X = np.zeros((n, len(layout["dense_index"]) + len(level_index)), order="F")
    X[:, layout["dense_index"]] = other_features
    rows = np.flatnonzero((codes >= 0) & (codes != reference))
    column = codes[rows]
    X[rows, level_index[column - (column > reference)]] = 1.0
    missing = codes == -2
    if missing.any():
        X[np.ix_(missing, level_index)] = np.nan
    return X


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
        codes = None if chunk.codes is None else chunk.codes[offset:stop]
        yield Chunk(chunk.X[offset:stop], chunk.y[offset:stop], weight, chunk.row(offset), positions, codes)


def _pack(block, dtype):
    """A block as it is kept on the workers (:meth:`~gradfit.sources.DaskSource.persist`): its chunk."""
    return block_chunk(block, 0, dtype)


def _fold_block(function, combine, block, start, step, dtype, dense=None):
    """``combine``-fold of ``function`` over the block's sub-chunks of ``step`` rows (:func:`sub_chunks`)."""
    result = None
    for chunk in sub_chunks(block_chunk(block, start, dtype, dense), step):
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


def merge_tree(partials, combine, fan_in=FAN_IN):
    """The ``combine``-fold of delayed ``partials`` as one delayed value: a tree of ``fan_in`` at a time, in order.

    Blocks 0 to ``fan_in − 1`` are merged in one task, the next ``fan_in`` in
    the next, …, then those results likewise: the order of the merges is
    fixed, so the result does not depend on which worker finishes first.
    """
    from .optional import require

    join = require("dask").delayed(_join, pure=False)
    while len(partials) > 1:
        partials = [
            join(combine, *partials[i : i + fan_in]) if i + 1 < len(partials) else partials[i]
            for i in range(0, len(partials), fan_in)
        ]
    return partials[0]


def _take_block(block, rows, dtype, dense=None, start=0):
    """``(X, y, sample_weight, positions, codes)`` of the block's ``rows`` (0-based among its rows), for a minibatch.

    ``positions``: each row's place in the input (the block's first row is ``start``).
    """
    chunk = block_chunk(block, start, dtype, dense)
    pick = lambda values: None if values is None else values[rows]  # noqa: E731
    positions = start + rows if chunk.positions is None else chunk.positions[rows]
    return chunk.X[rows], chunk.y[rows], pick(chunk.sample_weight), positions, pick(chunk.codes)


def _block_rows(block):
    """The rows a block holds (kept, where rows were left out)."""
    return block.X.shape[0] if isinstance(block, Chunk) else len(block[0])
