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

A factor of more than :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels,
or a coding other than plain treatment
(:class:`~gradfit.formula.NotStreamable`), ends the pass: the levels are then
learned by a pass of their own and the statistics read as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..formula import NotStreamable
from ..sources.base import Chunk
from ..sources.encoding import BLOCK_LEVELS
from ..sources.level_parts import TooManyLevels
from .levels import PartNames, _embed
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
    """

    moments: Moments | None
    names: list
    found: dict
    counts: dict
    rows: int
    kept: int
    probe: object = None
    index: dict = field(default_factory=dict)  # {name: place in names}

    def __post_init__(self):
        if not self.index:
            self.index = {name: i for i, name in enumerate(self.names)}


def part_partial(part, full, names):
    """The :class:`FormulaPartial` of one part (a :class:`~gradfit.sources.formulas.FormulaPart`).

    ``names(part)`` is the source that names a bad value of the part in a
    message (its rows are the table's, its columns the part's own).
    """
    moments = None
    if part.X is not None and part.X.shape[0]:
        chunk = Chunk(part.X, part.y, part.sample_weight, part.start, part.positions)
        moments = chunk_moments(chunk, full, names(part))
    return FormulaPartial(moments, list(part.names), {f: set(v) for f, v in part.found.items()}, dict(part.counts),
                          part.rows, 0 if part.X is None else part.X.shape[0], part.probe)


def merge_partials(n_outputs):
    """``combine(a, b)``: ``b`` (the later rows) merged into ``a`` in the union of their column names.

    Raises :class:`~gradfit.sources.level_parts.TooManyLevels` once a factor
    has more than :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels.
    """

    def combine(a, b):
        before = len(a.names)
        for name in b.names:
            if name not in a.index:
                a.index[name] = len(a.names)
                a.names.append(name)
        for factor, levels in b.found.items():
            merged = a.found.setdefault(factor, set())
            merged |= levels
            if len(merged) > BLOCK_LEVELS:
                raise TooManyLevels(factor)
        width = len(a.names) + n_outputs
        targets = list(range(len(a.names), width))
        places_a = np.asarray(list(range(before)) + targets, dtype=np.intp)
        places_b = np.asarray([a.index[name] for name in b.names] + targets, dtype=np.intp)
        moments_a, moments_b = _embed(a.moments, places_a, width), _embed(b.moments, places_b, width)
        a.moments = merge(moments_a, moments_b) if moments_a is not None else moments_b
        for column, n in b.counts.items():
            a.counts[column] = a.counts.get(column, 0) + n
        a.rows += b.rows
        a.kept += b.kept
        if a.probe is None:
            a.probe = b.probe
        return a

    return combine


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
    source.learned_in_pass(partial.found, partial.counts, partial.rows, partial.kept, partial.probe)
    moments = restrict(partial.moments, partial, source.feature_names, source.n_outputs)
    if moments is None:
        return None
    return finish(moments, source, full)
