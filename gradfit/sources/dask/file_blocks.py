"""A CSV or Parquet file cut into blocks that the workers read, through the file source's own decoding.

The client has opened the file as a :class:`~gradfit.sources.FileSource`
(schema, Parquet footers; the categories' levels and missing values learned
by the workers, :mod:`~gradfit.sources.dask.file_levels`); the workers read
the blocks, only the needed columns, and make each one a chunk with that
source's :class:`~gradfit.sources.decode.ChunkDecoder`: the same checks and
messages (file, row or line, column) as a file read on one machine.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa

from ...errors import GradfitError
from .. import encoding
from .names import SourceNames
from .optional import require


def parquet_blocks(file, block_rows):
    """``(names, blocks, lengths)`` of a Parquet file or folder: runs of row groups of about ``block_rows`` rows.

    In the same file order as :class:`~gradfit.sources.FileSource` reads them,
    so rows keep their numbers; a block never spans two files.
    """
    dask = require("dask")
    names = parquet_names(file, file.feature_names)
    decoder = _decoder(file, names)  # the file's decoding, its messages by names only
    read = dask.delayed(_read_row_groups, pure=True)
    runs = row_group_runs(file, block_rows)
    blocks = [read(decoder, path, groups, offset) for path, groups, offset, _ in runs]
    return names, blocks, [sum(rows) for *_, rows in runs]


def parquet_names(file, feature_names):
    """The :class:`SourceNames` that name a Parquet file's (or folder's) rows: file and row."""
    return SourceNames(
        "parquet", file.describe(), feature_names, file.target_names, file.weight_name,
        file._fragment_starts[:-1], [os.path.basename(f.path) for f in file.fragments],
    )


def row_group_runs(file, block_rows):
    """``[(path, row groups, first row, rows of each group)]``: runs of row groups of about ``block_rows`` rows.

    From the footers only, in file order; a run never spans two files, and
    every row group is in exactly one run.
    """
    runs = []
    for fragment, start in zip(file.fragments, file._fragment_starts[:-1]):
        metadata = fragment.metadata
        groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        begin = 0
        while begin < len(groups):
            stop, rows = begin + 1, groups[begin]
            while stop < len(groups) and rows + groups[stop] <= block_rows:
                rows += groups[stop]
                stop += 1
            runs.append((os.path.abspath(fragment.path), list(range(begin, stop)), int(start) + sum(groups[:begin]),
                         groups[begin:stop]))
            begin = stop
    return runs


def _decoder(file, names):
    """The file's decoding, its messages by ``names`` only; a categorical column of many levels read as codes.

    The blocks always carry that column's codes (the source's
    :attr:`~gradfit.sources.Source.block_candidate`): a fit on the blocks
    reads them as they are, a fit that needs dummies gets them made on the
    workers (:func:`~gradfit.sources.dask.tasks.dense_dummies`).
    """
    return dataclasses.replace(file.decoder, names=names, block_layout=file.block_candidate)


def _read_row_groups(decoder, path, row_groups, start):
    """On a worker: row groups of one Parquet file (the needed columns only) as a :class:`~gradfit.sources.Chunk`."""
    return decoder.chunk(row_groups_table(path, row_groups, decoder.columns), start)


def row_groups_table(path, row_groups, columns):
    """On a worker: the ``columns`` of some row groups of one Parquet file, as an Arrow table."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_groups(row_groups, columns=columns, use_threads=False)


def csv_blocks(file, block_rows, run, counted=None):
    """``(names, blocks, lengths)`` of a CSV file, split by ``dask.dataframe.read_csv``.

    Counting each block's rows costs one pass (``run``: the source's compute,
    which places a bad value by its line), unless ``counted``, a
    ``(frame, lengths)`` of :func:`csv_frame` counted already (by the pass
    that learned the levels: :mod:`~gradfit.sources.dask.file_levels`), is given.
    """
    dask = require("dask")
    names = SourceNames("csv", file.describe(), file.feature_names, file.target_names, file.weight_name)
    if counted is None:
        frame = csv_frame(file, block_rows)
        lengths = [int(n) for n in run(frame.map_partitions(len))[0]]
    else:
        frame, lengths = counted
    starts = np.concatenate([[0], np.cumsum(lengths)])
    decoder = _decoder(file, names)
    read = dask.delayed(_read_partition, pure=True)
    blocks = [read(part, decoder, int(start)) for part, start in zip(frame.to_delayed(), starts)]
    return names, blocks, lengths


def csv_frame(file, block_rows):
    """The CSV file's needed columns as a ``dask.dataframe.read_csv`` frame of about ``block_rows`` rows a partition.

    Categorical columns are read as text or bool (as :class:`FileSource` reads them), the others as float64.
    """
    dd = require("dask.dataframe")
    kinds = {"string": "string", "bool": "boolean"}
    dtypes = {name: "float64" for name in file.columns}
    if file.decoder.encoder is not None:
        dtypes.update({name: kinds.get(str(t), "float64")
                       for name, t in file._csv_types(file.raw_feature_names).items()})
    try:
        return dd.read_csv(
            os.path.abspath(file.path),
            usecols=file.columns,
            dtype=dtypes,
            blocksize=max(1024, int(block_rows * _bytes_per_line(file.path))),
        )[file.columns]
    except Exception as exc:  # dask reads a sample here, on the client: place its error as FileSource does
        if isinstance(exc, GradfitError):
            raise
        raise file._locate_csv_error(exc) from None


def _read_partition(frame, decoder, start):
    """On a worker: a pandas partition of the CSV file's columns as a :class:`~gradfit.sources.Chunk`."""
    return decoder.chunk(partition_table(frame), start)


def partition_table(frame):
    """On a worker: a pandas partition of a CSV file's columns as an Arrow table (missing values null)."""
    return pa.table({str(name): encoding.pandas_arrow(frame[name]) for name in frame.columns})


def _bytes_per_line(path):
    """Mean line length of a text file's first 64 KiB, to size CSV blocks in rows."""
    with open(path, "rb") as handle:
        sample = handle.read(1 << 16)
    return len(sample) / max(1, sample.count(b"\n"))
