"""A Dask dataframe with categories or missing values: levels and gaps found on the cluster, blocks encoded there.

Two steps, each one compute:

1. :func:`learn`: every partition's summary (rows, rows kept, missing values
   per column, the distinct levels of the rows kept) is made where the
   partition is and the summaries are merged in a tree on the workers
   (:func:`~gradfit.sources.dask.tasks.merge_tree`); only the merged counts
   and level sets, and each partition's two row counts, reach the client.
2. :func:`frame_blocks`: each partition becomes a
   :class:`~gradfit.sources.Chunk` on its worker (:func:`_frame_chunk`): rows
   with a missing value left out (``missing="drop"``; the rows kept keep
   their row numbers for messages), categories encoded, a categorical column
   of many levels handed on as level codes (the encoder's ``block``), never
   as a dense one-hot block.

A value is missing when it is null (None, ``pd.NA``, NaN in an object or
nullable column) or NaN in a float column, as for pandas frames
(:func:`gradfit.sources.frames.frame_source`) and files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import DataError
from .. import encoding
from ..base import Chunk
from .tasks import merge_tree


@dataclass
class FrameReading:
    """What a worker needs to make a partition a chunk; sent once per compute (one graph key).

    Parameters
    ----------
    codings : list of ColumnCoding
        One per raw feature column; while levels are learned (:func:`learn`) the
        categorical ones have no levels yet.
    encoder : TableEncoder or None
        With learned levels (:func:`_frame_chunk`); its ``block`` column is handed on as codes.
    missing : {"error", "drop"}
    names : SourceNames
        Rows (``row 18``, counted from 1) and columns in messages.
    """

    codings: list
    encoder: object
    missing: str
    names: object

    @property
    def raw_names(self):
        return [coding.name for coding in self.codings]


def _arrays(frame):
    """A pandas partition's columns as Arrow arrays (NaN and None as null)."""
    return [encoding.pandas_arrow(frame.iloc[:, j]) for j in range(frame.shape[1])]


def _targets(y, weight):
    """``y`` as (n, k) float64 and the weights as (n,) float64 (missing values as NaN)."""
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(y.shape[0], -1)
    weight = None if weight is None else np.asarray(weight, dtype=np.float64)
    return y, weight


def _presence(arrays, y, weight):
    """Per-column presence masks: each feature column, the targets (all present), the weight."""
    masks = [encoding.missing_mask(array) for array in arrays]
    masks.append(~np.isnan(y).any(axis=1))
    if weight is not None:
        masks.append(~np.isnan(weight))
    return masks


def _first_missing(reading, masks, start):
    """Raise the one-line error for the first missing value of a partition (``missing="error"``)."""
    names = reading.raw_names + [", ".join(reading.names.target_names)] + ["sample_weight"]
    rows = [(int(np.argmax(~mask)), j) for j, mask in enumerate(masks) if not mask.all()]
    if rows:
        row, j = min(rows)
        raise DataError(f"missing value in {reading.names.describe()} at "
                        f"{reading.names.row_position(start + row)}, column {names[j]!r}; "
                        "to leave such rows out, use missing='drop'")


def _summarize(frame, y, weight, reading, start):
    """On a worker: ``(rows, rows kept, missing per column, {column: (levels, integral)})`` of one partition."""
    arrays = _arrays(frame)
    y, weight = _targets(y, weight)
    masks = _presence(arrays, y, weight)
    if reading.missing != "drop":
        _first_missing(reading, masks, start)
    keep = np.logical_and.reduce(masks)
    counts = np.array([np.count_nonzero(~mask) for mask in masks], dtype=np.int64)
    levels = {}
    for coding, array in zip(reading.codings, arrays):
        if coding.categorical and not coding.levels:
            kept = array.filter(keep) if not keep.all() else array
            integral = encoding.pa.types.is_integer(encoding.plain_array(array).type)
            levels[coding.name] = (encoding.distinct_values(kept, coding.kind), integral)
    return len(keep), int(np.count_nonzero(keep)), counts, levels


def _merge_summaries(first, second):
    """Two summaries as one: rows, rows kept and counts added, level sets united."""
    levels = dict(first[3])
    for name, (values, integral) in second[3].items():
        known, known_integral = levels.get(name, (set(), True))
        levels[name] = (known | values, known_integral and integral)
    return first[0] + second[0], first[1] + second[1], first[2] + second[2], levels


def _kept(summary):
    return summary[1]


def learn(frame, ys, weights, reading, starts):
    """One compute: the levels, the missing values per column and each partition's rows kept, found on the workers.

    Parameters
    ----------
    frame : dask DataFrame
        The raw feature columns.
    ys, weights : list of delayed
        Each partition's targets (n, k) and weights (n,) or ``None``s.
    reading : FrameReading
        ``codings`` whose categorical columns without levels get them here (of the rows kept).
    starts : list of int
        Each partition's first row (for messages).

    Returns
    -------
    kept : ndarray of shape (n_partitions,)
        Each partition's rows kept (all of them unless ``missing="drop"``).
    counts : ndarray of shape (n_columns,)
        Missing values per column: each feature column, the targets, the weight (if any).
    levels : dict
        ``{column: (set of levels, integral)}`` for the categorical columns that had none.
    """
    from .compute import compute
    from .optional import require

    dask = require("dask")
    summarize = dask.delayed(_summarize, pure=True)
    kept = dask.delayed(_kept, pure=True)
    shared = dask.delayed(reading, pure=True)  # one key in the graph, not a copy in every task
    summaries = [summarize(part, y, w, shared, int(start))
                 for part, y, w, start in zip(frame.to_delayed(), ys, weights, starts)]
    merged, *per_partition = compute(merge_tree(summaries, _merge_summaries),
                                     *[kept(summary) for summary in summaries])
    return np.array(per_partition, dtype=np.int64), merged[2], merged[3]


def frame_blocks(frame, ys, weights, reading, starts):
    """The delayed :class:`~gradfit.sources.Chunk` of every partition; ``starts``: each partition's first row."""
    from .optional import require

    dask = require("dask")
    read = dask.delayed(_frame_chunk, pure=True)
    shared = dask.delayed(reading, pure=True)
    return [read(part, y, w, shared, int(start))
            for part, y, w, start in zip(frame.to_delayed(), ys, weights, starts)]


def _frame_chunk(frame, y, weight, reading, start):
    """On a worker: a partition as a :class:`Chunk`: rows with a missing value dropped, categories encoded.

    ``start``: the partition's first row in the input. With
    ``missing="drop"`` the chunk's ``positions`` hold every kept row's
    number in the input (messages name it); with the encoder's ``block``
    column, ``X`` holds the other features and ``codes`` that column's levels.
    """
    arrays = _arrays(frame)
    y, weight = _targets(y, weight)
    masks = _presence(arrays, y, weight)
    positions = None
    if reading.missing == "drop":
        keep = np.logical_and.reduce(masks)
        positions = start + np.flatnonzero(keep)
        if not keep.all():
            arrays = [array.filter(keep) for array in arrays]
            y = y[keep]
            weight = None if weight is None else weight[keep]
    else:
        _first_missing(reading, masks, start)

    def where(row, name):
        at = start + row if positions is None else int(positions[row])
        return f"{reading.names.describe()}, {reading.names.row_position(at)}, column {name!r}"

    encoder = reading.encoder
    codes = None
    if encoder.block is not None:
        X, codes = encoder.encode_blocks(arrays, np.float64, where)
    else:
        X = encoder.encode(arrays, np.float64, where)
    return Chunk(X, y, weight, start, positions, codes)


def missing_note(counts, labels, dropped, rows):
    """``(by_column, note)``: the missing values per column (those with any) and the note the fit reports."""
    by_column = {label: int(n) for label, n in zip(labels, counts) if n}
    shown = ", ".join(f"{name!r}: {n}" for name, n in by_column.items())
    note = f"missing values: {dropped} of {rows} rows left out ({shown})" if dropped else None
    return by_column, note
