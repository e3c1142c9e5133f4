"""A batch of a file as its own levels see it: the part the statistics pass learns the levels from.

Before a file's levels are known, a batch cannot be encoded against them; it
can be encoded against *its own* levels. A :class:`LevelPart` holds the
batch's numeric features and, for each categorical column, the full one-hot
of the levels that occur in the batch (the reference not dropped: which
level that is, is known only at the end), in the raw columns' order:

    X = [ x_1 | 1{g = a}, 1{g = c} | x_2 | 1{h = u} ... ],     levels = [[a, c], [u, ...]]

:mod:`gradfit.engines.levels` takes the moments of such parts, merges them in
the union of their levels and, at the end, orders and drops the columns as
the learned encoding says, so that the file is read once.

A part also holds each categorical column's level codes (``codes``: the
rows' places in its own ``levels``) and the numeric features alone
(``numeric``), from which :mod:`gradfit.engines.level_cells` keeps the
statistics keyed by level, for a column of more than
:data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels; a part of such a batch
(or of a pass that found such a column) has no dense one-hot (``X`` is ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import encoding


class TooManyLevels(Exception):
    """A categorical column has more levels than a dense one-hot should hold (:data:`~gradfit.sources.encoding.BLOCK_LEVELS`).

    Not an error of the data: the pass that learns levels stops, and the
    source learns them by a pass of their own (the column may be kept as codes).
    """


@dataclass
class LevelPart:
    """One batch's rows, encoded against the batch's own levels.

    Attributes
    ----------
    X : ndarray of shape (n, p), the source's dtype, column-major, or None
        Numeric features and, per categorical column, one dummy per level of
        ``levels`` (all of them), in the raw columns' order; ``None`` where
        the part was made without its one-hot (``dense=False``).
    y : ndarray of shape (n, k)
    sample_weight : ndarray of shape (n,) or None
    start : int
        The batch's first row in the file.
    positions : ndarray of shape (n,) or None
        The rows' places in the file where rows were left out.
    levels : list of list
        The levels of each categorical column in this batch, in the order of their dummies.
    counts : ndarray of shape (len(source.columns),) or None
        Missing values of each used column (``missing="drop"``).
    rows : int
        Rows of the batch read, those left out included.
    codes : list of ndarray of shape (n,), intp
        Per categorical column, each row's place in that column's ``levels``.
    numeric : ndarray of shape (n, p_numeric), float64
        The numeric feature columns alone, in the raw columns' order.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    start: int
    positions: np.ndarray | None
    levels: list
    counts: np.ndarray | None
    rows: int
    codes: list
    numeric: np.ndarray


def level_part(decoder, batch, start, dense=True):
    """The :class:`LevelPart` of ``batch`` (a RecordBatch of ``decoder.columns``) whose first row is ``start``.

    ``dense``: build ``X``, the one-hot of the batch's own levels; it is
    not built (``None``) where a column has more than
    :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels in the batch.

    Missing values are dropped or named as ``decoder.missing`` says
    (:meth:`~gradfit.sources.decode.ChunkDecoder.present_rows`), as every
    pass over the file does.
    """
    rows = batch.num_rows
    batch, positions, counts = decoder.present_rows(batch, start)
    codings = decoder.encoder.columns
    n = batch.num_rows
    local = []
    for coding in codings:
        array = encoding.plain_array(batch.column(coding.name))
        if not coding.categorical:
            local.append(None)
            continue
        values = pc.cast(array, pa.float64()) if coding.kind == "number" else array.cast(encoding.match_type(coding.kind))
        if not isinstance(values, pa.Array):
            values = encoding.plain_array(values)
        coded = pc.dictionary_encode(values)
        local.append((coded.indices.to_numpy(zero_copy_only=False).astype(np.intp), coded.dictionary.to_pylist()))
    numeric = np.empty((n, sum(item is None for item in local)), order="F")
    for j, coding in enumerate(coding for coding, item in zip(codings, local) if item is None):
        array = encoding.plain_array(batch.column(coding.name))
        if not pa.types.is_floating(array.type):
            array = pc.cast(array, pa.float64())  # integers, bool (0/1), decimals
        numeric[:, j] = array.to_numpy(zero_copy_only=False)
    dense = dense and all(item is None or len(item[1]) <= encoding.BLOCK_LEVELS for item in local)
    X = _one_hot(local, numeric, n, decoder.dtype) if dense else None
    y, weight = decoder.targets_and_weight(batch)
    levels = [item[1] for item in local if item is not None]
    codes = [item[0] for item in local if item is not None]
    return LevelPart(X, y, weight, start, positions, levels, counts, rows, codes, numeric)


def _one_hot(local, numeric, n, dtype):
    """``X``: the numeric columns and each categorical column's full one-hot of its ``local`` levels, in order."""
    width = sum(1 if item is None else len(item[1]) for item in local)
    X = np.zeros((n, width), dtype=dtype, order="F")
    flat = X.reshape(-1, order="F")  # a view: column c of row i at c·n + i
    row = np.arange(n)
    j = f = 0
    for item in local:
        if item is None:
            X[:, j] = numeric[:, f]
            j, f = j + 1, f + 1
        else:
            codes, levels = item
            flat[(j + codes) * n + row] = 1.0
            j += len(levels)
    return X
