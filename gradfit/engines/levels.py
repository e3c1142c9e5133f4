"""The statistics pass that learns a file's categories: levels and moments from one read.

A file whose categorical columns' levels are not known yet
(:attr:`~gradfit.sources.FileSource.levels_pending`) is read once: each batch
becomes a :class:`~gradfit.sources.level_parts.LevelPart`, coded against its
own levels, and its statistics keyed by the combination of levels of a row
(its *cells*, :mod:`gradfit.engines.level_cells`) are taken; from them, the
:class:`~gradfit.engines.moments.Moments` of its full one-hot design (the
reference kept: which level that is, is known only at the end), a sum of
positive semi-definite terms over the cells. Two partial results are merged
in the union of their levels: a level one part does not hold is a dummy that
is 0 on all its rows, so its mean, residual and scatter rows and columns are
exactly zero there, and embedding the part's moments with zeros in those
places is exact. Then Chan's update (:func:`~gradfit.engines.moments.merge`)
merges them as it merges any two; the cells merge in the union of theirs.

At the end the levels are sorted and the reference placed
(:meth:`~gradfit.sources.FileSource.learned_in_pass`, the same checks and
messages as a separate scan), and the moments are restricted to the
features in the encoding's order, the reference's dummy left out: the
scatter of a subset of columns is the sub-matrix of the scatter, so the
statistics are those of the two-pass fit, up to the order of rounding.

A column with more than :data:`~gradfit.sources.encoding.BLOCK_LEVELS`
levels (in one batch, or in the union so far) cannot be a dense one-hot:
from then on the dense moments are let go and no more formed. The cells,
kept from the first batch, give at the end that column's blocks
(:class:`~gradfit.engines.categorical.BlockStatistics`, what
:func:`~gradfit.engines.categorical.accumulate_blocks` would read), once the
levels are sorted and the column to keep as codes is chosen
(:meth:`~gradfit.sources.encoding.TableEncoder.choose_block`): the file is
read once for them too. Only where the cells outgrow their memory
(:data:`~gradfit.engines.level_cells.CELL_BYTES`) while a column has too
many levels does the pass stop (:class:`~gradfit.sources.level_parts.TooManyLevels`):
the source then learns its levels by a pass of their own
(:meth:`~gradfit.sources.FileSource.settle`) and the fit reads the
statistics as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..sources import encoding, level_parts
from ..sources.base import Chunk
from ..sources.level_parts import TooManyLevels, level_part
from .level_cells import (
    cell_blocks,
    cell_moments,
    merge_cells,
    part_cells,
    part_moments,
)
from .moments import Moments, merge
from .statistics import finish


@dataclass
class LevelPartial:
    """The merged result of consecutive parts.

    ``levels`` lists each categorical column's levels in the order of their
    dummies in ``moments`` (the union of the parts', first seen first);
    ``kept`` the parts themselves, for the source's column store, or ``None``
    once they would exceed its memory budget. ``dense``: ``moments`` hold the
    dense one-hot's moments (``False`` once a column has too many levels for
    it); ``cells`` the statistics keyed by level
    (:class:`~gradfit.engines.level_cells.Cells`, keys in ``levels``' places),
    ``None`` where there were no rows, or where they were given up (``cells_lost``).
    """

    moments: Moments | None
    levels: list
    counts: np.ndarray | None
    rows: int
    kept: list | None
    kept_bytes: int = 0
    index: list = field(default_factory=list)  # {level: place in levels} per categorical column
    dense: bool = True
    cells: object = None
    cells_lost: bool = False

    def __post_init__(self):
        if not self.index:
            self.index = [{level: i for i, level in enumerate(levels)} for levels in self.levels]


class PartNames:
    """Names a part's columns in messages (a NaN, an overflow): the source's rows, the part's own features."""

    def __init__(self, source, names):
        self.source, self.names, self.n_features = source, names, len(names)

    def describe(self):
        return self.source.describe()

    def where(self, row, column=None):
        text = self.source.row_position(row)
        return text if column is None else f"{text}, column {self.column_name(column)!r}"

    def column_name(self, column):
        if column == -1:
            return self.source.weight_name
        if column < self.n_features:
            return self.names[column]
        return self.source.target_names[column - self.n_features]


class PassState:
    """What the parts of one pass share: whether a column has had too many levels for the dense one-hot
    (``crossed``), whether the cells were given up (``cells_lost``). Flags that only ever turn on: a part made
    before one turned does work that is let go, never a different result."""

    crossed = False
    cells_lost = False


def part_partial(source, item, full, keep, state=None):
    """The :class:`LevelPartial` of one ``(batch, start)`` of ``source.level_batches()``.

    Its cells (:func:`~gradfit.engines.level_cells.part_cells`) and, while
    no column has more than :data:`~gradfit.sources.encoding.BLOCK_LEVELS`
    levels, the moments of its full one-hot design formed from them
    (:func:`~gradfit.engines.level_cells.part_moments`).
    """
    state = state or PassState()
    batch, start = item
    part = level_part(source.decoder, batch, start)
    codings = source.decoder.encoder.columns
    names = PartNames(source, [coding.name for coding in codings if not coding.categorical])
    cells = part_cells(part, names)
    dense = all(len(levels) <= encoding.BLOCK_LEVELS for levels in part.levels)
    if not dense:
        state.crossed = True
    moments = None
    if dense and not state.crossed and cells is not None:
        moments = part_moments(part, cells, codings, full, names)
    if state.cells_lost:
        cells = None
    return LevelPartial(moments, [list(levels) for levels in part.levels], part.counts, part.rows,
                        [part] if keep and dense else None, part.nbytes, dense=dense,
                        cells=cells, cells_lost=state.cells_lost)


def _places(codings, levels, sizes, n_outputs):
    """Where each column of a part with ``levels`` sits among the columns of a union of ``sizes`` levels.

    ``levels[c]`` are given as their places in the union's column ``c``.
    """
    places, j, columns = [], 0, iter(zip(levels, sizes))
    for coding in codings:
        if coding.categorical:
            own, size = next(columns)
            places.extend(j + np.asarray(own, dtype=np.intp))
            j += size
        else:
            places.append(j)
            j += 1
    places.extend(range(j, j + n_outputs))
    return np.asarray(places, dtype=np.intp), j + n_outputs


def _embed(moments, places, width):
    """``moments`` in a wider set of columns: zero (exactly) in the columns at no place of ``places``."""
    if moments is None or (len(places) == width and np.array_equal(places, np.arange(width))):
        return moments

    def spread(vector):
        out = np.zeros(width)
        out[places] = vector
        return out

    scatter = None
    if moments.scatter is not None:
        scatter = np.zeros((width, width))
        scatter[np.ix_(places, places)] = moments.scatter
    return Moments(moments.count, moments.total, spread(moments.mean), scatter, spread(moments.diagonal),
                   spread(moments.residual))


def merge_partials(source, budget, state=None):
    """``combine(a, b)``: ``b`` (the later rows) merged into ``a`` in the union of their levels."""
    codings = source.decoder.encoder.columns
    categorical = [coding for coding in codings if coding.categorical]
    n_outputs = source.decoder.n_outputs
    state = state or PassState()

    def combine(a, b):
        before = [len(levels) for levels in a.levels]
        to_union, sizes = _union_levels(a, b)
        wide = next((coding.name for coding, size in zip(categorical, sizes) if size > encoding.BLOCK_LEVELS), None)
        if wide is not None or not b.dense:
            state.crossed = True
        if state.crossed:  # no dense one-hot any more: the column's blocks come from the cells
            a.moments, a.kept, a.dense = None, None, False
        else:
            places_a, width = _places(codings, [range(size) for size in before], sizes, n_outputs)
            places_b, _ = _places(codings, to_union, sizes, n_outputs)
            moments_a = _embed(a.moments, places_a, width)
            moments_b = _embed(b.moments, places_b, width)
            a.moments = merge(moments_a, moments_b) if moments_a is not None else moments_b
        _merge_cells(a, b, to_union, sizes)
        if a.cells_lost:
            state.cells_lost = True
            if state.crossed:
                raise TooManyLevels(wide)
        if b.counts is not None:
            a.counts = b.counts if a.counts is None else a.counts + b.counts
        a.rows += b.rows
        if a.kept is not None:
            a.kept_bytes += b.kept_bytes
            a.kept = a.kept + b.kept if b.kept is not None and a.kept_bytes <= budget else None
        return a

    return combine


def _union_levels(a, b):
    """Add ``b``'s levels to ``a``'s union (first seen first); ``(to_union, sizes)``: per categorical column,
    the places of ``b``'s levels in the union, and the union's size."""
    to_union = []
    for c, levels in enumerate(b.levels):
        index, union, mapping = a.index[c], a.levels[c], []
        for level in levels:
            place = index.get(level)
            if place is None:
                place = index[level] = len(union)
                union.append(level)
            mapping.append(place)
        to_union.append(np.array(mapping, dtype=np.int64))
    return to_union, [len(levels) for levels in a.levels]


def _merge_cells(a, b, to_union, sizes):
    """``b``'s cells into ``a``'s (keys in the union's levels; ``to_union``: the places of ``b``'s levels there),
    or both let go (``cells_lost``)."""
    if a.cells_lost or b.cells_lost:
        a.cells, a.cells_lost = None, True
        return
    merged = merge_cells(a.cells, b.cells, to_union, sizes)
    if merged is None and b.cells is not None:
        a.cells, a.cells_lost = None, True
    else:
        a.cells = merged


def accumulate_learning(source, full=True):
    """One pass over a file whose levels are pending: its levels, missing counts and statistics.

    Returns :class:`~gradfit.engines.statistics.Statistics` (the dense
    one-hot's), or, where a column has more than
    :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels, the
    :class:`~gradfit.engines.categorical.BlockStatistics` of the column the
    source keeps as codes (its ``block_candidate``), from the same pass.
    Returns ``None`` where those could not be kept (:class:`TooManyLevels`):
    the source has then learned its levels by a pass of their own
    (:meth:`~gradfit.sources.FileSource.settle`), and the caller reads the
    statistics as for any source.
    """
    keep = bool(source.keep_columns) and source.memory > 0
    state = PassState()
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # merges that overflow are named by finish
            partial = source.reduce_levels(lambda item: part_partial(source, item, full, keep, state),
                                           merge_partials(source, source.memory, state))
    except TooManyLevels:
        source.settle()
        return None
    codings = source.decoder.encoder.columns
    categorical = [coding for coding in codings if coding.categorical]
    if partial is None:  # no rows at all: the messages of an empty scan
        levels, counts, rows, moments, kept = [[] for _ in categorical], None, 0, None, None
    else:
        levels, counts, rows, moments, kept = partial.levels, partial.counts, partial.rows, partial.moments, partial.kept
    counted = dict(zip(source.columns, (0 if counts is None else int(n) for n in (
        counts if counts is not None else np.zeros(len(source.columns))))))
    if partial is not None and not partial.dense:
        count = 0 if partial.cells is None else partial.cells.moments.count
        source.learned_in_pass({coding.name: set(found) for coding, found in zip(categorical, levels)},
                               counted, rows, count)
        layout = source.block_candidate
        if layout is None or partial.cells is None:
            return None  # (no column above BLOCK_LEVELS after all, or no rows: the fit's own pass says so)
        return cell_blocks(source, partial.cells, [_sorted_places(coding, found)
                                                   for coding, found in zip(categorical, levels)], layout)
    source.learned_in_pass({coding.name: set(found) for coding, found in zip(categorical, levels)},
                           counted, rows, 0 if moments is None else moments.count)
    places = _final_places(codings, levels, source.decoder.n_outputs)
    if moments is not None:
        moments = Moments(moments.count, moments.total, moments.mean[places],
                          None if moments.scatter is None else moments.scatter[np.ix_(places, places)],
                          moments.diagonal[places], moments.residual[places])
    if kept is not None:
        source.keep_learned(_encoded(source, codings, kept))
    return finish(moments, source, full)


def unit_partial(decoder, names, table, start):
    """On a Dask worker: the :class:`LevelPartial` of a unit of a file (``table``, its first row ``start``), its
    cells only (no dense moments travel: :func:`learned_statistics` forms them from the merged cells).

    A bad value (a NaN or infinite one, a negative weight) gives up the cells
    (``cells_lost``): the fit's own statistics compute then names it, with its
    row, as it always did.
    """
    import pyarrow as pa

    from ..errors import DataError

    numeric = [coding.name for coding in decoder.encoder.columns if not coding.categorical]
    try:
        part = level_part(decoder, table, start)
        cells = part_cells(part, PartNames(names, numeric))
    except (DataError, pa.ArrowException):  # a value the fit's own pass names (a text in a number column too)
        categorical = sum(coding.categorical for coding in decoder.encoder.columns)
        return LevelPartial(None, [[] for _ in range(categorical)], None, table.num_rows, None, dense=False,
                            cells_lost=True)
    return LevelPartial(None, [list(levels) for levels in part.levels], part.counts, part.rows, None, dense=False,
                        cells=cells)


def merge_cell_partials(a, b):
    """``b`` (later rows) merged into ``a``: their levels' union and their cells (:func:`unit_partial`'s)."""
    to_union, sizes = _union_levels(a, b)
    _merge_cells(a, b, to_union, sizes)
    a.rows += b.rows
    return a


def learned_statistics(source, partial):
    """The statistics of a file whose levels ``source`` has learned (``learned_in_pass``), from the merged cells.

    The :class:`~gradfit.engines.categorical.BlockStatistics` of the column
    kept as codes (``source.block_candidate``), else the
    :class:`~gradfit.engines.statistics.Statistics` of the dense features
    (the full one-hot design's moments from the cells,
    :func:`~gradfit.engines.level_cells.cell_moments`, restricted to the
    learned encoding's features); ``None`` where the cells were given up.
    """
    if partial is None or partial.cells is None or partial.cells_lost:
        return None
    codings = source.encoder.columns
    categorical = [coding for coding in codings if coding.categorical]
    if source.block_candidate is not None:
        return cell_blocks(source, partial.cells, [_sorted_places(coding, found)
                                                   for coding, found in zip(categorical, partial.levels)],
                           source.block_candidate)
    moments = cell_moments(partial.cells, codings, partial.levels, source.n_outputs, True)
    places = _final_places(codings, partial.levels, source.n_outputs)
    moments = Moments(moments.count, moments.total, moments.mean[places],
                      moments.scatter[np.ix_(places, places)], moments.diagonal[places], moments.residual[places])
    return finish(moments, source, True)


# Dask's workers make and merge these where they learn a file's levels (gradfit.sources.dask.file_levels)
level_parts.UNIT_STATISTICS = (unit_partial, merge_cell_partials, learned_statistics)


def _sorted_places(coding, found):
    """Where each level of ``found`` (the union's order) sits among the learned, sorted ``coding.levels``."""
    place = {level: i for i, level in enumerate(coding.levels)}
    return np.fromiter((place[level] for level in found), dtype=np.intp, count=len(found))


def _final_places(codings, levels, n_outputs):
    """Where each feature of the learned encoding (then each target) sits among the merged columns."""
    places, j, columns = [], 0, iter(levels)
    for coding in codings:
        if coding.categorical:
            found = {level: i for i, level in enumerate(next(columns))}
            places.extend(j + found[level] for i, level in enumerate(coding.levels) if i != coding.reference)
            j += len(found)
        else:
            places.append(j)
            j += 1
    places.extend(range(j, j + n_outputs))
    return np.asarray(places, dtype=np.intp)


def _encoded(source, codings, parts):
    """The kept parts as the source's chunks: their columns in the learned encoding's order (one copy each).

    A generator: the source makes its column store of them only when a later
    pass asks (:meth:`~gradfit.sources.FileSource.keep_learned`).
    """
    d = source.n_features
    parts.reverse()
    while parts:
        part = parts.pop()  # let each go once encoded
        X = _spread_features(codings, part, d, source.decoder.dtype)
        yield Chunk(X, part.y, part.sample_weight, part.start, part.positions)


def _spread_features(codings, part, d, dtype):
    """A part's ``X`` in the learned encoding: its numeric columns, and a 1 in each row's level's dummy (none
    for the reference)."""
    X = np.zeros((part.y.shape[0], d), dtype=dtype, order="F")  # column by column, as Arrow's columns
    f = j = 0
    columns = iter(zip(part.codes, part.levels))
    for coding in codings:
        if not coding.categorical:
            X[:, f] = part.numeric[:, j]
            j, f = j + 1, f + 1
            continue
        codes, own = next(columns)
        place = _sorted_places(coding, own)
        feature = place - (place > coding.reference)  # the dummy of each of the part's levels
        feature[place == coding.reference] = -1
        row_feature = feature[codes]
        rows = np.flatnonzero(row_feature >= 0)
        X[rows, f + row_feature[rows]] = 1.0
        f += len(coding.levels) - 1
    return X
