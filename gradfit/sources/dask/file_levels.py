"""A file's categories' levels and missing values, found by the workers that read it, merged on the cluster.

:meth:`DaskSource.from_file <gradfit.sources.DaskSource.from_file>` opens the
file on the client as a :class:`~gradfit.sources.FileSource` (schema, Parquet
footers); where that source's levels are still to be learned (its
``levels_pending``: categorical columns, or ``missing="drop"``), one compute
learns them here instead of a pass on the client (:meth:`FileSource.settle`):

1. every *unit* (a run of Parquet row groups, or a CSV partition of
   ``dask.dataframe.read_csv``) is read where a worker is, only the needed
   columns, and summarized (:func:`_summarize`): its rows, its rows kept, the
   missing values per column and the distinct levels of the rows kept, through
   the file's own :meth:`ChunkDecoder.present_rows
   <gradfit.sources.decode.ChunkDecoder.present_rows>` (so a missing value
   with ``missing="error"`` is named by file, row and column as a file read on
   one machine names it);
2. the summaries are merged in a tree on the workers
   (:func:`~gradfit.sources.dask.tasks.merge_tree`, the dataframes' merge
   :func:`~gradfit.sources.dask.frame_blocks._merge_summaries`); only the merged
   level sets and counts, and each unit's rows and rows kept, reach the client,
   which finishes the levels as :class:`FileSource` does
   (:meth:`FileSource.learned_in_pass`: sorted, the reference placed, limits,
   a column of many levels chosen to be kept as codes);
3. in the same compute, each unit's statistics keyed by the combination of
   levels of its rows (:func:`gradfit.engines.levels.unit_partial`, its
   *cells*: :mod:`gradfit.engines.level_cells`) are merged in a tree on the
   workers too; from them the client forms the file's statistics
   (:func:`gradfit.engines.levels.learned_statistics`: a column of many
   levels' blocks, else the dense features' moments), which the fit uses
   without another compute (the source's ``learned_statistics``). A unit
   with a bad value gives them up, and the fit's own compute names it.

Units are sized by the raw columns (one value a column a row), since the
encoded width is known only once the levels are; the blocks the fit reads are
then cut by the encoded width (:mod:`~gradfit.sources.dask.file_blocks`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import encoding, level_parts
from .file_blocks import csv_frame, parquet_names, partition_table, row_group_runs, row_groups_table
from .frame_blocks import _merge_summaries
from .names import SourceNames
from .optional import require
from .tasks import merge_tree


@dataclasses.dataclass
class Learned:
    """What the workers found, per unit, besides the levels the file source was given.

    Attributes
    ----------
    rows, kept : ndarray of int64
        Rows read and rows kept (no missing value, where ``missing="drop"``)
        of each Parquet row group in file order, or of each CSV partition.
    frame : dask DataFrame or None
        The CSV partitions the units were (reused as blocks where they suit).
    statistics : Statistics, BlockStatistics or None
        The file's statistics from the same compute
        (:func:`~gradfit.engines.levels.learned_statistics`: the units' cells merged on the cluster), or
        ``None`` where the cells were given up (a bad value, or too many of them).
    """

    rows: np.ndarray
    kept: np.ndarray
    frame: object = None
    statistics: object = None


def learn_levels(file, block_rows, run):
    """Learn ``file``'s levels and missing values on the workers (one compute) and hand them to ``file``.

    Parameters
    ----------
    file : FileSource
        With ``levels_pending``; on return its levels, ``missing_counts``,
        ``rows_dropped`` and ``n_samples`` are known, as after its own pass.
    block_rows : int
        About how many rows a unit holds.
    run : callable
        The Dask source's compute (places a bad CSV value by its line).

    Returns
    -------
    Learned
    """
    dask = require("dask")
    kinds = {c.name: c.kind for c in file._encoder.columns if c.categorical and not c.levels}
    summarize = dask.delayed(_summarize, nout=3, pure=True)
    unit_statistics = level_parts.UNIT_STATISTICS  # (None: the levels alone; the fit computes its statistics)
    frame = None
    if file.format == "parquet":
        decoder = _learning_decoder(file, parquet_names(file, file.raw_feature_names))
        # one key in the graph, not a copy in every task
        shared = dask.delayed((decoder, kinds, unit_statistics), pure=True)
        read = dask.delayed(row_groups_table, pure=True)
        runs = row_group_runs(file, block_rows)
        units = [summarize(read(path, groups, list(decoder.columns)), shared, offset, rows)
                 for path, groups, offset, rows in runs]
    else:
        # a partition's first line is known only once those before it are counted: its rows are
        # counted from 0 here, and a missing value is placed by the client (below)
        frame = csv_frame(file, block_rows)
        names = SourceNames("csv", file.describe(), file.raw_feature_names, file.target_names, file.weight_name)
        shared = dask.delayed((_learning_decoder(file, names), kinds, unit_statistics), pure=True)
        read = dask.delayed(partition_table, pure=True)
        units = [summarize(read(part), shared, 0, None) for part in frame.to_delayed()]
    if not units:  # Parquet files without row groups: no rows, as the file source finds them
        file.learned_in_pass({name: set() for name in kinds}, dict.fromkeys(file.columns, 0), 0, 0)
        return Learned(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), frame)
    cells = None if unit_statistics is None else merge_tree([partial for _, _, partial in units], unit_statistics[1])
    merged, cells, *per_unit = run(merge_tree([summary for summary, _, _ in units], _merge_summaries), cells,
                                   *[counted for _, counted, _ in units])
    rows = [unit[0] for unit in per_unit]
    starts = [offset for _, _, offset, _ in runs] if frame is None else \
        np.concatenate([[0], np.cumsum([part.sum() for part in rows])])[:-1]
    for start, (_, _, first) in zip(starts, per_unit):
        if first is not None:  # missing="error": the first unit's first missing value, by the file's own words
            raise file.decoder.missing_error(int(start) + first[0], first[1])
    total, kept, counts, levels = merged
    file.learned_in_pass({name: values for name, (values, _) in levels.items()},
                         dict(zip(file.columns, (int(n) for n in counts))), int(total), int(kept))
    statistics = None
    if unit_statistics is not None:
        with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows is named by finish
            statistics = unit_statistics[2](file, cells)
    return Learned(np.concatenate(rows).astype(np.int64),
                   np.concatenate([unit[1] for unit in per_unit]).astype(np.int64), frame, statistics)


def _learning_decoder(file, names):
    """The file's decoder, its messages by ``names`` only (the features not known yet: the raw columns)."""
    return dataclasses.replace(file.decoder, names=names, block_layout=None)


def _summarize(table, shared, start, group_rows):
    """On a worker: ``(summary, (rows, kept, first missing), partial)`` of a unit whose first row is ``start``.

    ``summary`` is a dataframe partition's
    (:func:`~gradfit.sources.dask.frame_blocks._summarize`): rows, rows kept,
    missing values per column of the decoder's columns, and
    ``{column: (levels of the rows kept, True)}``. ``rows`` and ``kept`` are
    the rows and rows kept of each of the unit's Parquet row groups
    (``group_rows``: their rows), or of the whole CSV partition; ``first
    missing`` (``missing="error"``) the unit's first missing value, ``(row in
    the unit, column)``, or ``None``; ``partial`` the unit's statistics keyed
    by its rows' levels (:func:`~gradfit.engines.levels.unit_partial`), merged
    on the cluster (:func:`~gradfit.engines.levels.merge_cell_partials`) in the same compute.
    """
    decoder, kinds, unit_statistics = shared
    group_rows = np.array([table.num_rows] if group_rows is None else group_rows, dtype=np.int64)
    first = decoder.first_missing(table) if decoder.missing == "error" else None
    if first is not None:  # the fit stops there: no levels to learn
        return ((table.num_rows, 0, np.zeros(len(decoder.columns), dtype=np.int64), {}),
                (group_rows, group_rows, first), None)
    # the unit's statistics keyed by its rows' levels (gradfit.engines.levels): the fit needs no second read
    partial = None if unit_statistics is None else unit_statistics[0](decoder, decoder.names, table, start)
    batch, positions, counts = decoder.present_rows(table, start)
    if counts is None:
        counts = np.zeros(len(decoder.columns), dtype=np.int64)
    levels = {name: (encoding.distinct_values(batch.column(name), kind), True) for name, kind in kinds.items()}
    if positions is None:
        kept = group_rows
    else:  # the rows kept of each row group: their file rows counted between the groups' first rows
        bounds = start + np.concatenate([[0], np.cumsum(group_rows)])
        kept = np.diff(np.searchsorted(positions, bounds)).astype(np.int64)
    return (table.num_rows, batch.num_rows, counts, levels), (group_rows, kept, None), partial
