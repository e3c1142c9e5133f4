"""The statistics pass that learns a formula's model spec: its levels and its moments from one read.

A formula's design (:class:`~gradfit.formula.FormulaDesign`) needs the levels
of every categorical factor over the whole table before a chunk can be
encoded with them; this pass learns them while it collects the statistics,
as :mod:`gradfit.engines.levels` does for a plain table's columns. Each part
of the table (:meth:`~gradfit.sources.formulas.FormulaSource.level_parts`)
is encoded against its own levels
(:meth:`~gradfit.formula.FormulaDesign.learn_encoding`: every level keeps its
dummy), so its columns are named ``x``, ``C(g)[T.Paris]``, ``C(g)[a]:x`` …,
a superset of the final design's columns among those its rows touch. Its
:class:`~gradfit.engines.moments.Moments` are taken on them
(:func:`~gradfit.engines.statistics.chunk_moments`); two partial results
are merged in the union of their column *names*: a column one part lacks is
zero on all its rows, so its mean, residual and scatter rows and columns are
exactly zero there, and embedding that part's moments with zeros
(:func:`gradfit.engines.levels._embed`) before Chan's merge
(:func:`~gradfit.engines.moments.merge`) is exact.

At the end the merged levels are sorted, the reference is placed as
formulaic places it, and the final column names are those of the final spec
(:meth:`~gradfit.sources.formulas.FormulaSource.learned_in_pass`); the
statistics are the sub-matrix of the merged moments at those names, in
their order (the scatter of a subset of columns is the sub-matrix of the
scatter), with the missing values counted in the same read.

A main effect of many levels (``C(firm)`` with 10,000 firms, the factor the
design keeps as level codes, :meth:`~gradfit.formula.FormulaDesign.choose_block`)
cannot be a dense one-hot, and which factor that is is known only at the
end. So while the formula has categorical main effects in no interaction
(:meth:`~gradfit.formula.FormulaDesign.effect_codes`), each part also
carries their level codes (its own levels) and the rest of the formula's
columns ``r``, and the pass keeps from its first part the statistics of
``z = [r, y]`` keyed by *cell*, the combination of those factors' levels in
a row (:class:`~gradfit.engines.level_cells.Cells`,
:func:`~gradfit.engines.level_cells.part_cells`). Two parts' cells merge in
the union of the factors' levels (first seen first) and in the union of
the names of ``r``: a column a part lacks is zero on all its rows, so its
level means, shift and within-cell scatter are exactly zero there
(:func:`_widen`). Once one of those factors has more than
:data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels, the parts encode the
rest of the formula only (its terms left out, never a dense block of its
dummies) and the dense moments are let go; at the end the levels are
sorted, the factor kept as codes chosen, and its blocks
(:class:`~gradfit.engines.categorical.BlockStatistics`) formed from the
cells in the layout's order of features
(:func:`~gradfit.engines.level_cells.level_moments_of_cells`, :func:`formula_blocks`):
the table is read once for them too. Where no factor crossed, the dense
moments are used as before and the cells let go.

Any other factor of more than
:data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels, cells beyond
:data:`~gradfit.engines.level_cells.CELL_BYTES` while a factor has many
levels, or a coding other than plain treatment
(:class:`~gradfit.formula.NotStreamable`), ends the pass: the levels are then
learned by a pass of their own and the statistics read as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np

from ..formula import NotStreamable
from ..sources.base import Chunk
from ..sources.encoding import BLOCK_LEVELS
from ..sources.level_parts import LevelPart, TooManyLevels
from .categorical import LevelMoments
from .level_cells import Cells, layout_blocks, level_moments_of_cells, part_cells
from .levels import PartNames, _embed, _merge_cells, _union_levels
from .moments import Moments, merge
from .statistics import chunk_moments, finish


@dataclass
class FormulaPartial:
    """The merged result of consecutive parts of a table read through a formula.

    Attributes
    ----------
    moments : Moments or None
        Of the columns ``names`` then the targets (``None``: no rows kept yet).
    names : list of str
        The union of the parts' design columns, first seen first.
    found : dict
        ``{factor: set of levels}``.
    counts : dict
        Missing values by column (``missing="drop"``).
    rows, kept : int
        Rows read, and rows kept (no missing value).
    probe : pandas.DataFrame or None
        The first row kept: the final design's column names are read from it.
    dense : bool
        ``moments`` are the whole design's (``False`` once a factor kept as
        codes in the pass has too many levels for a dense one-hot).
    effects : list of str or None
        The categorical main effects the cells are keyed by (``None``: no cells).
    levels : list of list
        Per factor of ``effects``, its levels (the union's, first seen first).
    rest_names : list of str
        The columns of the cells' ``z`` before the targets (the union's, first seen first).
    cells : Cells or None
        Keys in ``levels``' places (``None``: no rows, or given up: ``cells_lost``).
    """

    moments: Moments | None
    names: list
    found: dict
    counts: dict
    rows: int
    kept: int
    probe: object = None
    index: dict = field(default_factory=dict)  # {name: place in names}
    dense: bool = True
    effects: list | None = None
    levels: list = field(default_factory=list)
    rest_names: list = field(default_factory=list)
    cells: Cells | None = None
    cells_lost: bool = False
    level_index: list = field(default_factory=list)  # {level: place in levels} per factor of effects
    rest_index: dict = field(default_factory=dict)  # {name: place in rest_names}

    def __post_init__(self):
        if not self.index:
            self.index = {name: i for i, name in enumerate(self.names)}
        if not self.level_index:
            self.level_index = [{level: i for i, level in enumerate(levels)} for levels in self.levels]
        if not self.rest_index:
            self.rest_index = {name: i for i, name in enumerate(self.rest_names)}


def part_partial(part, full, names):
    """The :class:`FormulaPartial` of one part (a :class:`~gradfit.sources.formulas.FormulaPart`).

    ``names(part)`` is the source that names a bad value of the part in a
    message (its rows are the table's, its columns the part's own).
    """
    moments = cells = None
    rest_names = []
    if part.X is not None and part.X.shape[0] and part.dense:
        chunk = Chunk(part.X, part.y, part.sample_weight, part.start, part.positions)
        moments = chunk_moments(chunk, full, names(part))
    if part.X is not None and part.effects is not None:  # the cells of z = [rest of the formula, targets]
        rest = np.arange(part.X.shape[1]) if part.rest is None else part.rest
        rest_names = [part.names[j] for j in rest]
        numeric = np.asfortranarray(part.X[:, rest])
        level_part = LevelPart(numeric, part.codes, part.levels, part.y, part.sample_weight, part.start,
                               part.positions, None, part.rows)
        cells = part_cells(level_part, names(replace(part, names=rest_names)))
    return FormulaPartial(moments, list(part.names) if part.dense else [], {f: set(v) for f, v in part.found.items()},
                          dict(part.counts), part.rows, 0 if part.X is None else part.X.shape[0], part.probe,
                          dense=part.dense, effects=part.effects,
                          levels=[list(levels) for levels in part.levels or []], rest_names=rest_names, cells=cells)


def _widen(cells, places, width):
    """``cells`` with ``z``'s columns at ``places`` among ``width`` (zero, exactly, in the others: a column of
    no row of theirs), the targets after the last."""
    if cells is None or (len(places) == width and np.array_equal(places, np.arange(width))):
        return cells
    moments = cells.moments
    level_mean = np.zeros((moments.level_mean.shape[0], width))
    level_mean[:, places] = moments.level_mean
    within = np.zeros((width, width))
    within[np.ix_(places, places)] = moments.within
    shift = np.zeros(width)
    shift[places] = moments.shift
    return Cells(cells.keys, LevelMoments(moments.count, moments.total, moments.level_count, moments.level_total,
                                          level_mean, within, shift))


def _merge_effect_cells(a, b, n_outputs):
    """``b``'s cells merged into ``a``'s, in the union of the effects' levels and of the rest's column names;
    whether an effect now has more than :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels."""
    if b.effects is None:
        return False
    if a.effects is None:  # ``a`` had no rows: b's structure, nothing merged yet
        a.effects, a.levels, a.level_index = list(b.effects), [[] for _ in b.effects], [{} for _ in b.effects]
    if a.effects != b.effects:
        raise NotStreamable(a.effects[0])
    to_union, sizes = _union_levels(SimpleNamespace(index=a.level_index, levels=a.levels), b)
    before = len(a.rest_names)
    for name in b.rest_names:
        if name not in a.rest_index:
            a.rest_index[name] = len(a.rest_names)
            a.rest_names.append(name)
    width = len(a.rest_names)
    targets = list(range(width, width + n_outputs))
    a.cells = _widen(a.cells, np.asarray(list(range(before)) + targets, dtype=np.intp), width + n_outputs)
    b.cells = _widen(b.cells, np.asarray([a.rest_index[name] for name in b.rest_names] + targets, dtype=np.intp),
                     width + n_outputs)
    _merge_cells(a, b, to_union, sizes)
    return any(size > BLOCK_LEVELS for size in sizes)


def merge_partials(n_outputs):
    """``combine(a, b)``: ``b`` (the later rows) merged into ``a`` in the union of their column names.

    Raises :class:`~gradfit.sources.level_parts.TooManyLevels` once a factor
    has more than :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels.
    """

    def combine(a, b):
        crossed = _merge_effect_cells(a, b, n_outputs)
        for factor, levels in b.found.items():
            merged = a.found.setdefault(factor, set())
            merged |= levels
            if len(merged) > BLOCK_LEVELS and factor not in (a.effects or ()):
                raise TooManyLevels(factor)
            crossed = crossed or len(merged) > BLOCK_LEVELS
        if crossed or not (a.dense and b.dense):  # no dense one-hot of an effect: its blocks come from the cells
            a.moments, a.names, a.index, a.dense = None, [], {}, False
            if a.cells_lost:
                raise TooManyLevels(a.effects[0] if a.effects else "")
        else:
            _merge_dense(a, b, n_outputs)
        for column, n in b.counts.items():
            a.counts[column] = a.counts.get(column, 0) + n
        a.rows += b.rows
        a.kept += b.kept
        if a.probe is None:
            a.probe = b.probe
        return a

    return combine


def _merge_dense(a, b, n_outputs):
    """``b``'s moments merged into ``a``'s in the union of their column names."""
    before = len(a.names)
    for name in b.names:
        if name not in a.index:
            a.index[name] = len(a.names)
            a.names.append(name)
    width = len(a.names) + n_outputs
    targets = list(range(len(a.names), width))
    places_a = np.asarray(list(range(before)) + targets, dtype=np.intp)
    places_b = np.asarray([a.index[name] for name in b.names] + targets, dtype=np.intp)
    moments_a, moments_b = _embed(a.moments, places_a, width), _embed(b.moments, places_b, width)
    a.moments = merge(moments_a, moments_b) if moments_a is not None else moments_b


def restrict(moments, partial, feature_names, n_outputs):
    """The merged moments at ``feature_names`` (in that order) then the targets, or ``None`` if a name is absent.

    A design column no part had would be one whose values are not a
    function of the row alone; it does not happen with treatment coding,
    and the caller then reads the statistics by a pass of their own.
    """
    if moments is None:
        return None
    try:
        places = [partial.index[name] for name in feature_names]
    except KeyError:
        return None
    places = np.asarray(places + list(range(len(partial.names), len(partial.names) + n_outputs)), dtype=np.intp)
    return Moments(moments.count, moments.total, moments.mean[places],
                   None if moments.scatter is None else moments.scatter[np.ix_(places, places)],
                   moments.diagonal[places], moments.residual[places])


def accumulate_formula(source, full=True):
    """One read of a :class:`~gradfit.sources.formulas.FormulaSource` whose levels are pending: its levels,
    missing counts and :class:`~gradfit.engines.statistics.Statistics`.

    Returns ``None`` where the pass cannot learn them (a factor of many
    levels, a coding other than treatment): the source has then learned its
    levels by a pass of their own (:meth:`~gradfit.sources.formulas.FormulaSource.settle`),
    and the caller reads the statistics as for any source.
    """
    names = lambda part: PartNames(source, part.names)  # noqa: E731
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # merges that overflow are named by finish
            partial = source.reduce_levels(lambda part: part_partial(part, full, names),
                                           merge_partials(source.n_outputs))
    except (TooManyLevels, NotStreamable):
        source.settle()
        return None
    if partial is None:  # no rows at all: the messages of an empty scan
        source.learned_in_pass({}, {}, 0, 0, None)
        return None
    source.learned_in_pass(learned_levels(partial), partial.counts, partial.rows, partial.kept, partial.probe)
    if not partial.dense:  # a factor of many levels: its blocks from the cells
        if source.block_candidate is None or partial.cells is None:
            return None  # (the fit's own pass names what is wrong)
        return formula_blocks(source, partial)
    moments = restrict(partial.moments, partial, source.feature_names, source.n_outputs)
    if moments is None:
        return None
    return finish(moments, source, full)


def learned_levels(partial):
    """``{factor: set of levels}`` of a merged :class:`FormulaPartial`, its effects' levels (from their codes) too."""
    found = {factor: set(levels) for factor, levels in partial.found.items()}
    for factor, levels in zip(partial.effects or (), partial.levels):
        found[factor] = found.get(factor, set()) | set(levels)
    return found


def formula_blocks(source, partial):
    """The :class:`~gradfit.engines.categorical.BlockStatistics` of the factor ``source`` keeps as codes, from the
    pass's cells (``partial.cells``), or ``None`` where a dense feature is none of the cells' columns.

    The dense features of the layout (``source.block_candidate``, in the
    formula's order) are columns of the rest of the formula (by name among
    ``partial.rest_names``) or the dummies of another effect of the cells'
    keys (``C(g)[T.b]``, its levels sorted, the first the reference, as
    formulaic codes it); a rest column the design drops (a reference
    level's dummy) is left out: the scatter of a subset of columns is the
    sub-matrix of the scatter.
    """
    from ..errors import DataError

    layout, design, cells = source.block_candidate, source.design, partial.cells
    if cells.moments.count == 0:
        raise DataError(f"{source.describe()} has no data rows")
    if cells.moments.total == 0:
        raise DataError(f"the sample weights in {source.describe()} sum to zero")
    kept = partial.effects.index(design.block)
    final_codes = []
    for factor, levels in zip(partial.effects, partial.levels):
        place = {level: i for i, level in enumerate(design.categories[factor])}
        final_codes.append(np.fromiter((place[level] for level in levels), dtype=np.intp, count=len(levels)))
    dense = {name: i for i, name in enumerate(layout["dense_names"])}
    z_keep = [j for j, name in enumerate(partial.rest_names) if name in dense]
    z_place = [dense[partial.rest_names[j]] for j in z_keep]
    hot, widths, covered = [], [], set(z_place)
    for c, factor in enumerate(partial.effects):
        if c == kept:
            continue
        places = [dense.get(f"{factor}[T.{level}]") for level in design.categories[factor][1:]]
        if not places:
            continue
        if None in places or places != list(range(places[0], places[0] + len(places))):
            return None
        hot.append((c, places[0], 0))
        widths.append(len(places))
        covered.update(places)
    if covered != set(range(layout["n_dense"])):
        return None
    moments = cells.moments
    width = len(partial.rest_names)
    columns = np.asarray(z_keep + list(range(width, width + source.n_outputs)), dtype=np.intp)
    moments = LevelMoments(moments.count, moments.total, moments.level_count, moments.level_total,
                           moments.level_mean[:, columns], moments.within[np.ix_(columns, columns)],
                           moments.shift[columns])
    level = final_codes[kept][cells.keys[:, kept]]
    merged, one_hot = level_moments_of_cells(moments, cells, final_codes, level, layout,
                                             np.asarray(z_place, dtype=np.intp), hot, widths, source.n_outputs,
                                             with_one_hot=True)
    return layout_blocks(merged, one_hot, layout)
