"""A batch of a file as its own levels see it: the part the statistics pass learns the levels from.

Before a file's levels are known, a batch cannot be encoded against them; it
can be coded against *its own* levels. A :class:`LevelPart` holds the
batch's numeric features and, for each categorical column, each row's place
among the levels that occur in the batch (``codes``, the batch's own
dictionary: ``pyarrow.compute.dictionary_encode``):

    numeric = [ x_1 | x_2 ... ],   codes = [[0, 1, 0, ...], [0, 0, ...]],   levels = [[a, c], [u, ...]]

:mod:`gradfit.engines.level_cells` takes its statistics keyed by the
combination of levels of a row (its *cells*), and :mod:`gradfit.engines.levels`
the moments of its full one-hot from them; they are merged in the union of
the parts' levels and, at the end, ordered and dropped as the learned
encoding says, so that the file is read once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import encoding

#: How each unit of a file read by Dask's workers gets its statistics keyed by level, made and merged on the
#: workers and finished on the client in the compute that learns the levels
#: (:mod:`gradfit.sources.dask.file_levels`): ``(unit_partial, merge, finish)``, registered by
#: :mod:`gradfit.engines.levels` (the statistics are an engine's, and sources import no engine); ``None``:
#: the levels alone are learned there, and the fit computes its statistics.
UNIT_STATISTICS = None


class TooManyLevels(Exception):
    """A categorical column has more levels than a dense one-hot should hold (:data:`~gradfit.sources.encoding.BLOCK_LEVELS`),
    and the statistics keyed by level that would give its blocks have outgrown their memory
    (:data:`~gradfit.engines.level_cells.CELL_BYTES`).

    Not an error of the data: the pass that learns levels stops, and the
    source learns them by a pass of their own (the column may be kept as codes).
    """


@dataclass
class LevelPart:
    """One batch's rows, coded against the batch's own levels.

    Attributes
    ----------
    numeric : ndarray of shape (n, p_numeric), float64
        The numeric feature columns, in the raw columns' order.
    codes : list of ndarray of shape (n,), intp
        Per categorical column (in the raw columns' order), each row's place in that column's ``levels``.
    levels : list of list
        The levels of each categorical column in this batch, in the order of their codes.
    y : ndarray of shape (n, k)
    sample_weight : ndarray of shape (n,) or None
    start : int
        The batch's first row in the file.
    positions : ndarray of shape (n,) or None
        The rows' places in the file where rows were left out.
    counts : ndarray of shape (len(source.columns),) or None
        Missing values of each used column (``missing="drop"``).
    rows : int
        Rows of the batch read, those left out included.
    """

    numeric: np.ndarray
    codes: list
    levels: list
    y: np.ndarray
    sample_weight: np.ndarray | None
    start: int
    positions: np.ndarray | None
    counts: np.ndarray | None
    rows: int

    @property
    def nbytes(self):
        return self.numeric.nbytes + self.y.nbytes + sum(codes.nbytes for codes in self.codes)


def level_part(decoder, batch, start):
    """The :class:`LevelPart` of ``batch`` (a RecordBatch of ``decoder.columns``) whose first row is ``start``.

    Missing values are dropped or named as ``decoder.missing`` says
    (:meth:`~gradfit.sources.decode.ChunkDecoder.present_rows`), as every
    pass over the file does.
    """
    rows = batch.num_rows
    batch, positions, counts = decoder.present_rows(batch, start)
    codings = decoder.encoder.columns
    n = batch.num_rows
    numeric = np.empty((n, sum(not coding.categorical for coding in codings)), order="F")
    codes, levels = [], []
    j = 0
    for coding in codings:
        array = encoding.plain_array(batch.column(coding.name))
        if not coding.categorical:
            if not pa.types.is_floating(array.type):
                array = pc.cast(array, pa.float64())  # integers, bool (0/1), decimals
            numeric[:, j] = array.to_numpy(zero_copy_only=False)
            j += 1
            continue
        values = pc.cast(array, pa.float64()) if coding.kind == "number" else array.cast(encoding.match_type(coding.kind))
        if not isinstance(values, pa.Array):
            values = encoding.plain_array(values)
        coded = pc.dictionary_encode(values)
        codes.append(coded.indices.to_numpy(zero_copy_only=False).astype(np.intp))
        levels.append(coded.dictionary.to_pylist())
    y, weight = decoder.targets_and_weight(batch)
    return LevelPart(numeric, codes, levels, y, weight, start, positions, counts, rows)
