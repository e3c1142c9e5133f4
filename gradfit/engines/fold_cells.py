"""The folds' statistics pass that learns a file's categories: levels and every fold's statistics from one read.

Cross-validation (:mod:`gradfit.folds`) on a file whose categorical levels
are not known yet (:attr:`~gradfit.sources.FileSource.levels_pending`) reads
it once, as a plain fit does (:mod:`gradfit.engines.levels`). Each batch
becomes a :class:`~gradfit.sources.level_parts.LevelPart` (coded against its
own levels); each row's fold is ``labels_of`` of its position in the file
(:func:`gradfit.folds.fold_of`: the folds of every other pass, a row left out
for a missing value keeping its number); the part's rows are grouped by fold
and each group's statistics keyed by *cell* (the combination of levels of a
row: :func:`~gradfit.engines.level_cells.part_cells`) are taken. So a part
holds, per fold ``f``, cells ``c`` with totals ``W_fc``, means ``M_fc`` and
within-cell scatters ``S_fc`` of the numeric features and targets.

Two parts merge in the union of their levels (first seen first, as
:func:`gradfit.engines.levels.merge_partials` takes it), fold by fold
(:func:`~gradfit.engines.level_cells.merge_cells`, Chan's update cell by
cell). At the end the levels are learned
(:meth:`~gradfit.sources.FileSource.learned_in_pass`: sorted, the reference
placed, the same checks and messages as a scan), and each fold's moments are
formed from its cells exactly as the whole table's are:

* the :class:`~gradfit.engines.categorical.LevelMoments` of the column kept
  as level codes (the source's ``block_candidate``, more than
  :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels), by
  :func:`~gradfit.engines.level_cells.cell_level_moments`;
* else the :class:`~gradfit.engines.moments.Moments` of the full one-hot
  design (:func:`~gradfit.engines.level_cells.cell_moments`, a sum of positive
  semi-definite terms over the cells), restricted to the learned encoding's
  features (the reference's dummy left out).

:mod:`gradfit.folds` merges them into each fold's training statistics and
the pooled ones, as it merges the moments of a pass over a source whose
levels are known. The parts are kept for the source's column store, as a
plain fit's pass keeps them, so that later passes (a report's, the training
rows' predictions) read memory, not the file. Where the cells of all the folds together outgrow
:data:`~gradfit.engines.level_cells.CELL_BYTES` the pass stops
(:class:`CellsLost`): the source then learns its levels by a pass of their
own and the folds' statistics are read as for any source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..sources import encoding
from ..sources.base import Chunk, check_finite
from ..sources.level_parts import LevelPart, level_part
from .level_cells import CELL_BYTES, cell_level_moments, cell_moments, merge_cells, part_cells
from .levels import PartNames, _encoded, _final_places, _sorted_places, _union_levels
from .moments import Moments


class CellsLost(Exception):
    """The folds' cells outgrew :data:`~gradfit.engines.level_cells.CELL_BYTES`: the pass stops (not an error)."""


@dataclass
class FoldPartial:
    """The merged result of consecutive parts of the folds' pass.

    Attributes
    ----------
    levels : list of list
        Each categorical column's levels, the union of the parts' (first seen first).
    counts : ndarray or None
        Missing values of each used column (``missing="drop"``).
    rows : int
        Rows read, those left out included.
    cells : list
        Per fold, its :class:`~gradfit.engines.level_cells.Cells` (keys in
        ``levels``' places), or ``None`` where it has no rows yet.
    kept : list or None
        The parts themselves, for the source's column store (as
        :func:`gradfit.engines.levels.accumulate_learning` keeps them), or
        ``None`` once they would exceed its memory budget or a column has
        too many levels for dense dummies (it is then kept as codes).
    """

    levels: list
    counts: np.ndarray | None
    rows: int
    cells: list
    kept: list | None = None
    kept_bytes: int = 0
    index: list = field(default_factory=list)  # {level: place in levels} per categorical column

    def __post_init__(self):
        if not self.index:
            self.index = [{level: i for i, level in enumerate(levels)} for levels in self.levels]


def fold_part(source, item, labels_of, n_folds, keep=False):
    """The :class:`FoldPartial` of one ``(batch, start)`` of ``source.level_batches()``.

    ``labels_of(positions)`` gives each row's fold (``0 … n_folds − 1``) from
    its position in the file; ``keep``: the part is kept for the column store.
    """
    batch, start = item
    part = level_part(source.decoder, batch, start)
    codings = source.decoder.encoder.columns
    names = PartNames(source, [coding.name for coding in codings if not coding.categorical])
    n = part.y.shape[0]
    positions = part.positions if part.positions is not None else start + np.arange(n)
    weight = part.sample_weight
    # a bad value is named by its first row in the file, before the rows are grouped by fold
    if not np.isfinite(part.numeric.sum() + part.y.sum()) or (weight is not None and not np.all(weight >= 0)):
        check_finite(names, Chunk(part.numeric, part.y, weight, start, part.positions))
    labels = np.asarray(labels_of(positions), dtype=np.intp)
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_folds))])
    cells = []
    for f in range(n_folds):
        rows = order[bounds[f]:bounds[f + 1]]
        group = LevelPart(np.take(part.numeric, rows, axis=0), [codes[rows] for codes in part.codes], part.levels,
                          part.y[rows], None if weight is None else weight[rows], start, positions[rows], None, 0)
        cells.append(part_cells(group, names))
    keep = keep and all(len(levels) <= encoding.BLOCK_LEVELS for levels in part.levels)
    return FoldPartial([list(levels) for levels in part.levels], part.counts, part.rows, cells,
                       [part] if keep else None, part.nbytes)


def merge_fold_partials(budget):
    """``combine(a, b)``: ``b`` (the later rows) merged into ``a``, the union of their levels, each fold's cells
    merged in it, the parts kept up to ``budget`` bytes.

    Raises :class:`CellsLost` beyond :data:`~gradfit.engines.level_cells.CELL_BYTES` (all folds together).
    """

    def combine(a, b):
        _merge_fold_partials(a, b)
        if a.kept is not None:
            a.kept_bytes += b.kept_bytes
            wide = any(len(levels) > encoding.BLOCK_LEVELS for levels in a.levels)
            a.kept = a.kept + b.kept if b.kept is not None and a.kept_bytes <= budget and not wide else None
        return a

    return combine


def _merge_fold_partials(a, b):
    to_union, sizes = _union_levels(a, b)
    for f, (mine, theirs) in enumerate(zip(a.cells, b.cells)):
        merged = merge_cells(mine, theirs, to_union, sizes)
        if merged is None and theirs is not None:
            raise CellsLost()
        a.cells[f] = merged
    if sum(cells.nbytes for cells in a.cells if cells is not None) > CELL_BYTES:
        raise CellsLost()
    if b.counts is not None:
        a.counts = b.counts if a.counts is None else a.counts + b.counts
    a.rows += b.rows


def learn_fold_moments(source, labels_of, n_folds):
    """One pass over a file whose levels are pending: its levels, missing counts and every fold's moments.

    Parameters
    ----------
    source : FileSource
        With ``levels_pending``; on return its levels are learned
        (:meth:`~gradfit.sources.FileSource.learned_in_pass`) and, where a
        column has too many levels for a dense one-hot (its
        ``block_candidate``), that column is kept as level codes
        (``use_blocks``), as the squared error's cross-validation keeps it.
    labels_of : callable
        ``labels_of(positions)``: each row's fold from its position in the file.
    n_folds : int

    Returns
    -------
    list of (Moments or LevelMoments or None), or None
        Per fold, the moments of its rows (``None``: it has none), the
        features in the learned encoding's order; ``None`` where the cells
        were given up (the source has then learned its levels by a pass of
        their own: the caller reads the folds' statistics as for any source).
    """
    keep = bool(source.keep_columns) and source.memory > 0
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # merges that overflow are named by finish
            partial = source.reduce_levels(lambda item: fold_part(source, item, labels_of, n_folds, keep),
                                           merge_fold_partials(source.memory))
    except CellsLost:
        source.settle()
        if source.block_candidate is not None:
            source.use_blocks(True)
        return None
    codings = source.decoder.encoder.columns
    categorical = [coding for coding in codings if coding.categorical]
    if partial is None:  # no rows at all: the messages of an empty scan
        partial = FoldPartial([[] for _ in categorical], None, 0, [None] * n_folds)
    counts = partial.counts if partial.counts is not None else np.zeros(len(source.columns), dtype=np.int64)
    counted = {name: int(n) for name, n in zip(source.columns, counts)}
    kept = sum(cells.moments.count for cells in partial.cells if cells is not None)
    source.learned_in_pass({coding.name: set(found) for coding, found in zip(categorical, partial.levels)},
                           counted, partial.rows, kept)
    layout = source.block_candidate
    if layout is not None:
        source.use_blocks(True)
    elif partial.kept is not None:  # later passes (the report's, predictions of the training rows) read memory
        source.keep_learned(_encoded(source, codings, partial.kept))
    moments = [None] * n_folds
    with np.errstate(over="ignore", invalid="ignore"):
        for f, cells in enumerate(partial.cells):
            if cells is None or cells.moments.count == 0:
                continue  # (gradfit.folds names the fold that has no rows)
            moments[f] = _fold_moments(source, cells, partial.levels, codings, categorical, layout, f, n_folds)
    return moments


def _fold_moments(source, cells, levels, codings, categorical, layout, fold, n_folds):
    """One fold's moments from its cells (see the module docstring)."""
    lm = cells.moments
    if layout is not None:
        if lm.total == 0:  # (the message of gradfit.engines.categorical.block_statistics for the fold)
            raise DataError(f"the sample weights in fold {fold + 1} of {source.describe()} sum to zero")
        return cell_level_moments(source, cells, [_sorted_places(coding, found)
                                                  for coding, found in zip(categorical, levels)], layout)
    full = cell_moments(cells, codings, levels, source.n_outputs, True)
    places = _final_places(codings, levels, source.n_outputs)
    return Moments(full.count, full.total, full.mean[places], full.scatter[np.ix_(places, places)],
                   full.diagonal[places], full.residual[places])
