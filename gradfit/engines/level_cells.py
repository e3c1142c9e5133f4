"""Statistics keyed by level, learned in the pass that learns a file's levels: the blocks of a column of many levels.

The pass of :mod:`gradfit.engines.levels` cannot know, until the file has
been read, which categorical column (if any) will have more than
:data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels and be kept as level
codes; and the dense moments it merges cannot be turned into the blocks
(:class:`~gradfit.engines.categorical.LevelMoments`) of such a column
exactly: the within-level scatter would be ``S − Σ_l W_l (M_l − μ)(M_l − μ)ᵀ``,
a difference that loses the digits the blocks exist to keep. So the pass
keeps, from its first batch, the statistics keyed by *cell*: the
combination of the levels of every categorical column in a row. With ``z``
the numeric features and the targets (``q_z`` columns), a part (a batch) holds

* its cells' keys, each column's level (its place in the union of the
  column's levels seen so far), shape ``(C, m)``;
* the :class:`~gradfit.engines.categorical.LevelMoments` of ``z`` with the
  cells as the levels (:func:`~gradfit.engines.categorical.chunk_level_moments`):
  cell totals ``W_c``, cell means ``M_c`` about a shift, the within-cell
  scatter ``S_c`` (``q_z × q_z``).

Two parts merge in the union of their cells (:func:`merge_cells`): a cell
one part lacks has no weight there, and :func:`~gradfit.engines.categorical.merge_levels`
(Chan, Golub & LeVeque's update, cell by cell) merges them as it merges any
two chunks' blocks. At the end (:func:`cell_blocks`), every categorical
column's one-hot is constant within a cell, so for the column kept as codes,
with ``u_c = [M_c,x, one-hot of the other columns' levels of c, M_c,y]``,

    W_l = Σ_{c ∈ l} W_c,   U_l = Σ_{c ∈ l} W_c u_c / W_l,
    S_w = [S_c on z, 0 elsewhere] + Σ_l Σ_{c ∈ l} W_c (u_c − U_l)(u_c − U_l)ᵀ,

the blocks of the column: the cells taken as rows of weight ``W_c`` by
:func:`~gradfit.engines.categorical.chunk_level_moments`, plus the within-cell
scatter. A sum of positive semi-definite terms, each of differences of
nearby numbers: nothing cancels, and the result is
:func:`~gradfit.engines.categorical.accumulate_blocks`'s up to rounding.

The dense moments of the full one-hot design (every column's dummies, while
no column has too many levels) come from the cells the same way
(:func:`cell_moments`: ``S = [S_c on z, 0] + Σ_c W_c (u_c − μ)(u_c − μ)ᵀ``),
for each part (:func:`part_moments`) and, on Dask, for the merged cells: the
rows are summed once, into ``q_z × q_z``, and the one-hot never made.

The cells are at most the rows, and as many as the column kept as codes has
levels when the other categorical columns follow it (a firm's sector) or are
few. Beyond :data:`CELL_BYTES` they are given up
(:func:`merge_cells` returns ``None``); the pass then goes on with the dense
moments alone, until a column has too many levels for them
(:class:`~gradfit.sources.level_parts.TooManyLevels`: the source learns its
levels by a pass of their own, as before).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import scipy.sparse

from ..errors import DataError
from ..sources.base import Chunk, check_finite, single_threaded_blas
from .categorical import (
    BlockStatistics,
    LevelBlocks,
    LevelMoments,
    chunk_level_moments,
    merge_levels,
)
from .moments import Moments
from .statistics import _check_underflow, _raise_overflow

#: the most bytes the cells' statistics may hold (means, totals and keys); beyond, they are given up
CELL_BYTES = 256 << 20
#: the most bytes of the cells' rows (their one-hot included) made at once when turned into blocks
CELL_ROWS_BYTES = 32 << 20


@dataclass
class Cells:
    """The statistics of ``z = [numeric features, targets]`` keyed by cell (see the module docstring).

    Attributes
    ----------
    keys : ndarray of shape (C, m), int64
        Each cell's level of each categorical column: its place in that
        column's levels (a part's own, or the union's once merged).
    moments : LevelMoments
        With the cells as the levels.
    """

    keys: np.ndarray
    moments: LevelMoments

    @property
    def nbytes(self):
        return self.keys.nbytes + self.moments.level_mean.nbytes + 3 * self.moments.level_total.nbytes


def part_cells(part, names):
    """The :class:`Cells` of a :class:`~gradfit.sources.level_parts.LevelPart`, or ``None`` (no rows).

    ``names`` names the numeric columns and the targets in messages (a NaN
    or infinite value, a negative weight): a
    :class:`~gradfit.engines.levels.PartNames` of the numeric columns.
    """
    n = part.y.shape[0]
    if n == 0:
        return None
    z_sum = part.numeric.sum() + part.y.sum()
    if not np.isfinite(z_sum) or (part.sample_weight is not None and not np.all(part.sample_weight >= 0)):
        check_finite(names, Chunk(part.numeric, part.y, part.sample_weight, part.start, part.positions))
    keys, cell = _cells_of(part.codes, [len(levels) for levels in part.levels], n)
    moments = chunk_level_moments(cell, part.numeric, part.y, part.sample_weight, keys.shape[0])
    return Cells(keys, moments)


def part_moments(part, cells, codings, full, names):
    """The :class:`~gradfit.engines.moments.Moments` of a part's full one-hot design, from its cells
    (:func:`cell_moments`), a sum that overflows or squares that underflow named by ``names`` (the numeric
    columns and the targets)."""
    lm = cells.moments
    if lm.total > 0 and not (np.all(np.isfinite(np.diagonal(lm.within))) and np.all(np.isfinite(lm.level_mean))):
        check_finite(names, Chunk(part.numeric, part.y, part.sample_weight, part.start, part.positions))
        bad = ~np.isfinite(np.diagonal(lm.within)) | ~np.all(np.isfinite(lm.level_mean), axis=0)
        _raise_overflow(names, int(np.argmax(bad)))
    moments = cell_moments(cells, codings, part.levels, part.y.shape[1], full)
    z_cols = _z_columns(codings, part.levels, part.y.shape[1])
    _check_underflow(SimpleNamespace(diagonal=moments.diagonal[z_cols]), part.numeric, part.y, part.sample_weight,
                     names)
    return moments


def _z_columns(codings, levels, n_outputs):
    """Where the numeric features and the targets sit among the columns of the full one-hot design of ``levels``."""
    z_cols, j, c = [], 0, 0
    for coding in codings:
        if coding.categorical:
            j += len(levels[c])
            c += 1
        else:
            z_cols.append(j)
            j += 1
    return np.asarray(z_cols + list(range(j, j + n_outputs)), dtype=np.intp)


def cell_moments(cells, codings, levels, n_outputs, full):
    """The :class:`~gradfit.engines.moments.Moments` of the full one-hot design, from ``cells`` (keys in ``levels``).

    The columns are the raw columns' order: each numeric feature, each
    categorical column's one dummy per level of ``levels``, then the
    targets. Every dummy is constant within a cell, so with the cells taken
    as rows ``u_c`` of weight ``W_c`` (their means of ``z``) and ``μ`` the
    weighted mean,

        S = [S_c on z, 0 elsewhere] + Σ_c W_c (u_c − μ)(u_c − μ)ᵀ,

    a sum of positive semi-definite terms (no cancellation), formed at
    ``O(C · width²)`` for ``C`` cells (a few megabytes of them at a time),
    not ``O(n · width²)`` for ``n`` rows.
    """
    lm = cells.moments
    z_cols = _z_columns(codings, levels, n_outputs)
    width = z_cols.shape[0] + sum(len(found) for found in levels)
    if lm.total == 0:  # rows of zero weight only: counted, nothing summed (as engines.moments.merge takes them)
        zeros = np.zeros(width)
        return Moments(lm.count, 0.0, zeros, np.zeros((width, width)) if full else None, zeros.copy(), zeros.copy())
    firsts, j, c = [], 0, 0
    for coding in codings:
        if coding.categorical:
            firsts.append(j)
            j += len(levels[c])
            c += 1
        else:
            j += 1
    relative = lm.level_total @ lm.level_mean / lm.total  # μ − shift on z
    mean = np.zeros(width)
    mean[z_cols] = lm.shift + relative
    shares = [np.bincount(cells.keys[:, c], weights=lm.level_total, minlength=len(levels[c])) / lm.total
              for c in range(len(firsts))]
    for first, share in zip(firsts, shares):
        mean[first:first + share.shape[0]] = share
    residual = np.zeros(width)
    diagonal = np.zeros(width)
    scatter = np.zeros((width, width)) if full else None
    step = max(1, CELL_ROWS_BYTES // (8 * width))
    for begin in range(0, cells.keys.shape[0], step):
        block = slice(begin, begin + step)
        rows = np.zeros((cells.keys[block].shape[0], width))
        rows[:, z_cols] = lm.level_mean[block] - relative
        present = np.arange(rows.shape[0])
        for c, (first, share) in enumerate(zip(firsts, shares)):
            rows[present, first + cells.keys[block, c]] = 1.0
            rows[:, first:first + share.shape[0]] -= share
        residual += lm.level_total[block] @ rows  # Σ W_c (u_c − μ): what the stored mean misses, rounding only
        rows *= np.sqrt(lm.level_total[block])[:, None]
        if full:
            scatter += rows.T @ rows
        else:
            diagonal += np.einsum("ij,ij->j", rows, rows)
    residual[z_cols] += lm.total * ((lm.shift - mean[z_cols]) + relative)
    if full:
        scatter[np.ix_(z_cols, z_cols)] += lm.within
        diagonal = np.diagonal(scatter).copy()
    else:
        diagonal[z_cols] += np.diagonal(lm.within)
    return Moments(lm.count, lm.total, mean, scatter, diagonal, residual)


def _cells_of(codes, sizes, n):
    """``(keys, cell)``: the distinct rows of the columns ``codes`` (in lexicographic order) and each row's place."""
    if not codes:
        return np.zeros((1, 0), dtype=np.int64), np.zeros(n, dtype=np.intp)
    radix = 1
    for size in sizes:
        radix *= max(int(size), 1)
    if radix >= 1 << 62:  # too many combinations for one int64: sort the rows themselves
        keys, cell = np.unique(np.column_stack(codes).astype(np.int64), axis=0, return_inverse=True)
        return keys, cell.reshape(-1)
    packed = codes[0].astype(np.int64)
    for size, column in zip(sizes[1:], codes[1:]):
        packed *= max(int(size), 1)
        packed += column
    if radix <= 4 * n + 1024:  # few combinations: a count, no sort
        present = np.bincount(packed, minlength=radix) > 0
        place = np.cumsum(present) - 1
        distinct = np.flatnonzero(present)
        return _unpack(distinct, sizes), place[packed]
    distinct, cell = np.unique(packed, return_inverse=True)
    return _unpack(distinct, sizes), cell.reshape(-1)


def _pack(keys, sizes):
    """Each row of ``keys`` (its column ``j`` below ``sizes[j]``) as one int64, ordered as the rows; ``(None, 0)``
    where the combinations overflow int64."""
    radix = 1
    for size in sizes:
        radix *= max(int(size), 1)
    if radix >= 1 << 62:
        return None, 0
    packed = np.zeros(keys.shape[0], dtype=np.int64)
    for j, size in enumerate(sizes):
        packed = packed * max(int(size), 1) + keys[:, j]
    return packed, radix


def _unpack(packed, sizes):
    keys = np.empty((packed.shape[0], len(sizes)), dtype=np.int64)
    for j in range(len(sizes) - 1, -1, -1):
        size = max(int(sizes[j]), 1)
        keys[:, j] = packed % size
        packed = packed // size
    return keys


def merge_cells(a, b, to_union, sizes):
    """``b`` (its keys in its own levels) merged into ``a`` (keys in the union's), or ``None`` beyond :data:`CELL_BYTES`.

    ``to_union[j]`` maps column ``j``'s levels of ``b`` to their places in the
    union, of ``sizes[j]`` levels.
    """
    if b is None:
        return a
    keys_b = np.column_stack([mapping[b.keys[:, j]] for j, mapping in enumerate(to_union)]).astype(np.int64) \
        if to_union else b.keys
    if a is None:
        order = np.lexsort(keys_b.T[::-1]) if keys_b.shape[1] else np.arange(keys_b.shape[0])
        return Cells(keys_b[order], _take(b.moments, order))
    packed_a, _ = _pack(a.keys, sizes)
    if packed_a is not None:  # the usual case once the levels have been seen: every cell of b is one of a's
        packed_b, _ = _pack(keys_b, sizes)
        place = np.minimum(np.searchsorted(packed_a, packed_b), packed_a.shape[0] - 1)
        if np.array_equal(packed_a[place], packed_b):
            merged = Cells(a.keys, merge_levels(a.moments, _embed(b.moments, place, a.keys.shape[0])))
            return merged
    both = np.concatenate([a.keys, keys_b])
    packed, _ = _pack(both, sizes)
    if packed is None:
        keys, place = np.unique(both, axis=0, return_inverse=True)
    else:
        distinct, place = np.unique(packed, return_inverse=True)
        keys = _unpack(distinct, sizes)
    place = place.reshape(-1)
    width, own = keys.shape[0], place[: a.keys.shape[0]]
    # no new cell (the usual case once the levels have been seen): ``a`` stays as it is
    moments_a = a.moments if np.array_equal(own, np.arange(width)) else _embed(a.moments, own, width)
    merged = Cells(keys, merge_levels(moments_a, _embed(b.moments, place[a.keys.shape[0]:], width)))
    return merged if merged.nbytes <= CELL_BYTES else None


def _take(moments, order):
    return LevelMoments(moments.count, moments.total, moments.level_count[order], moments.level_total[order],
                        moments.level_mean[order], moments.within, moments.shift)


def _embed(moments, places, width):
    """``moments`` over ``width`` cells, its own at ``places``: a cell it lacks has no rows (exactly zero)."""
    level_count = np.zeros(width, dtype=np.int64)
    level_total = np.zeros(width)
    level_mean = np.zeros((width, moments.level_mean.shape[1]))
    level_count[places] = moments.level_count
    level_total[places] = moments.level_total
    level_mean[places] = moments.level_mean
    return LevelMoments(moments.count, moments.total, level_count, level_total, level_mean, moments.within,
                        moments.shift)


def cell_blocks(source, cells, final_codes, layout):
    """The :class:`~gradfit.engines.categorical.BlockStatistics` of the column ``layout`` keeps as codes, from ``cells``.

    Parameters
    ----------
    source : FileSource
        Its levels learned (``layout`` is its ``block_layout``).
    cells : Cells
        Keys in the union's levels.
    final_codes : list of ndarray
        Per categorical column, the place in the learned (sorted) levels of
        each of the union's levels.
    layout : dict
        :meth:`~gradfit.sources.encoding.TableEncoder.block_layout`.

    Returns what :func:`~gradfit.engines.categorical.accumulate_blocks` would
    give, to rounding (see the module docstring).
    """
    moments = cells.moments
    if moments is None or moments.count == 0:
        raise DataError(f"{source.describe()} has no data rows")
    if moments.total == 0:
        raise DataError(f"the sample weights in {source.describe()} sum to zero")
    merged, one_hot = cell_level_moments(source, cells, final_codes, layout, with_one_hot=True)
    return layout_blocks(merged, one_hot, layout)


def layout_blocks(merged, one_hot, layout):
    """The :class:`~gradfit.engines.categorical.BlockStatistics` of merged level moments in ``layout``'s order."""
    blocks = LevelBlocks(merged, layout["n_dense"], layout["dense_index"], layout["level_index"], layout["reference"],
                         layout["dense_names"], [f"{layout['name']}={text}" for text in layout["levels"]],
                         one_hot=one_hot)
    return BlockStatistics.from_blocks(blocks)


def cell_level_moments(source, cells, final_codes, layout, with_one_hot=False):
    """The :class:`~gradfit.engines.categorical.LevelMoments` of the column ``layout`` keeps as codes, from ``cells``
    (of a positive total weight): what :func:`cell_blocks` finishes, and what a fold's cells give
    (:mod:`gradfit.engines.fold_cells`, merged fold by fold as any level moments).

    ``with_one_hot``: return ``(moments, one_hot)``, ``one_hot`` the other categorical columns' sparse
    dummies for :class:`~gradfit.engines.categorical.LevelBlocks` (``None`` without such columns).
    """
    moments = cells.moments
    codings = source.encoder.columns
    categorical = [coding for coding in codings if coding.categorical]
    kept = next(j for j, coding in enumerate(categorical) if coding.name == layout["name"])
    level = final_codes[kept][cells.keys[:, kept]]
    n_numeric = sum(not coding.categorical for coding in codings)
    # each cell's z about the cells' shift: u_c − shift in the dense features' order (the one-hots about 0)
    z_place = np.empty(n_numeric, dtype=np.intp)
    hot = []  # (column among the categorical ones, its first dense feature, its reference)
    j = f = c = 0
    for coding in codings:
        if not coding.categorical:
            z_place[f] = j
            j, f = j + 1, f + 1
        else:
            if c != kept:
                hot.append((c, j, coding.reference))
                j += len(coding.levels) - 1
            c += 1
    widths = [len(categorical[column].levels) - 1 for column, _, _ in hot]
    return level_moments_of_cells(moments, cells, final_codes, level, layout, z_place, hot, widths,
                                  source.n_outputs, with_one_hot)


def level_moments_of_cells(moments, cells, final_codes, level, layout, z_place, hot, widths, n_outputs,
                           with_one_hot=False):
    """:func:`cell_level_moments` with the places of the dense features given (a formula's order of terms,
    :func:`gradfit.engines.formula_levels.formula_blocks`, as well as a table's columns).

    ``moments``: the cells' :class:`~gradfit.engines.categorical.LevelMoments`
    of ``z`` (the dense features' numeric columns, then the targets);
    ``level``: each cell's level of the column kept as codes; ``z_place``:
    where each numeric column of ``z`` sits among the dense features;
    ``hot``: ``(column, first dense feature, reference)`` of each other
    categorical column, its dummies in level order from ``first``, ``widths``
    of them (its levels but the reference).
    """
    n_levels, n_dense, n_numeric = layout["n_levels"], layout["n_dense"], z_place.shape[0]
    shift = np.zeros(n_dense + n_outputs)
    shift[z_place] = moments.shift[:n_numeric]
    shift[n_dense:] = moments.shift[n_numeric:]
    with single_threaded_blas():  # products of a few columns: BLAS's threads only spin (as in fold_in_threads)
        merged = _cell_rows_blocks(moments, cells, final_codes, level, n_levels, n_dense, z_place, hot, shift,
                                   widths)
    within = np.zeros_like(merged.within)
    places = np.concatenate([z_place, np.arange(n_dense, n_dense + n_outputs)])
    within[np.ix_(places, places)] = moments.within
    merged.within += within
    merged.count, merged.total = moments.count, moments.total
    if not with_one_hot:
        return merged
    return merged, _cell_one_hot(cells, final_codes, level, merged.level_total, hot, widths) if hot else None


def _cell_one_hot(cells, final_codes, level, level_total, hot, widths):
    """:class:`~gradfit.engines.categorical.LevelBlocks`' ``one_hot`` for the other categorical columns' dummies.

    From the cells (every row of a cell has its levels): ``N`` (the kept column's
    level × a dummy, the cells' weights summed), ``R = N / W`` and ``P = Σ v D Dᵀ``,
    as :func:`~gradfit.engines.categorical.one_hot_means` gives them from a pass's counts.
    """
    weight = cells.moments.level_total
    inverse = np.zeros_like(level_total)
    inverse[level_total > 0] = 1.0 / level_total[level_total > 0]
    dummies, counts, columns = [], [], []
    for (column, first, reference), width in zip(hot, widths):
        code = final_codes[column][cells.keys[:, column]]
        dummy = np.where(code == reference, -1, code - (code > reference))
        on = np.flatnonzero(dummy >= 0)
        dummies.append(dummy)
        counts.append(scipy.sparse.csr_matrix((weight[on], (level[on], dummy[on])), shape=(level_total.shape[0], width)))
        columns.append(np.arange(first, first + width))
    blocks = [[None] * len(hot) for _ in hot]
    for s, count in enumerate(counts):
        blocks[s][s] = scipy.sparse.diags(np.asarray(count.sum(axis=0)).ravel())
        for t in range(s + 1, len(hot)):
            both = np.flatnonzero((dummies[s] >= 0) & (dummies[t] >= 0))
            pairs = scipy.sparse.csr_matrix((weight[both], (dummies[s][both], dummies[t][both])),
                                            shape=(widths[s], widths[t]))
            blocks[s][t], blocks[t][s] = pairs, pairs.T
    means = scipy.sparse.diags(inverse) @ scipy.sparse.hstack(counts, format="csr")
    return np.concatenate(columns), scipy.sparse.csr_matrix(means), scipy.sparse.bmat(blocks, format="csr")


def _cell_rows_blocks(moments, cells, final_codes, level, n_levels, n_dense, z_place, hot, shift, widths):
    """The cells as rows of weight ``W_c`` (``u_c``: see the module docstring), their blocks by
    :func:`~gradfit.engines.categorical.chunk_level_moments`, a few megabytes of rows at a time."""
    merged, n_numeric = None, z_place.shape[0]
    step = max(1, CELL_ROWS_BYTES // (8 * (n_dense + 1)))
    for begin in range(0, level.shape[0], step):
        rows = slice(begin, begin + step)
        X = np.zeros((level[rows].shape[0], n_dense))
        X[:, z_place] = moments.level_mean[rows, :n_numeric]
        for column, first, reference in hot:
            code = final_codes[column][cells.keys[rows, column]]
            on = np.flatnonzero(code != reference)
            X[on, first + code[on] - (code[on] > reference)] = 1.0
        # the other columns' dummies from counts (chunk_one_hot_moments): no rows × n_dense² product
        part = chunk_level_moments(level[rows], X, moments.level_mean[rows, n_numeric:], moments.level_total[rows],
                                   n_levels, one_hot=[(first, first + width) for (_, first, _), width in zip(hot, widths)])
        # counts are rows, not cells; a cell's rows of zero weight count too
        part.level_count = np.bincount(level[rows], weights=moments.level_count[rows], minlength=n_levels)
        part.level_count = part.level_count.astype(np.int64)
        part.count = int(moments.level_count[rows].sum())
        part.shift = part.shift + shift
        merged = merge_levels(merged, part)
    return merged
