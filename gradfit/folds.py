"""Cross-validation folds and their sufficient statistics, from one pass over the data.

A row's fold is a seeded hash of its position in the source (0-based, over
all rows; a row of a file left out for a missing value keeps its number, so
the kept rows' folds do not depend on how the file is cut into chunks), so an
array, the same rows in a file, and a Dask collection of them fall into the
same folds whatever their chunking, and no second read is needed to know
them. The hash is SplitMix64 (Steele, Lea & Flood 2014) of
``position + (seed + 1) · φ`` (``φ`` the 64-bit golden ratio); each block of
``n_folds`` consecutive rows is dealt to the folds in the order of its rows'
hashes (:func:`fold_of`), so fold sizes differ by at most one.

One pass (:meth:`~gradfit.sources.base.Source.reduce`) collects each fold's
centred :class:`~gradfit.engines.statistics.Moments` (the statistics engine's
blocks and Chan merges, per fold). Fold ``f``'s training statistics are the
other folds' moments merged (``k − 1`` merges of centred moments: never a
subtraction ``total − fold``, which would lose the digits the centring kept),
and its validation statistics are its own.

A source whose categorical column of many levels is kept as level codes
(``source.block_layout``) gets the same per fold as
:class:`~gradfit.engines.categorical.LevelMoments` (level counts, level means,
within-level scatter, merged level by level): its statistics are then
:class:`~gradfit.engines.categorical.BlockStatistics`, and no fold ever holds
a dense one-hot block or its ``(L − 1 + p)²`` scatter.

A file whose categorical levels are not known yet
(:attr:`~gradfit.sources.FileSource.levels_pending`) learns them in this same
pass (:mod:`gradfit.engines.fold_cells`: each fold's statistics keyed by the
combination of levels of a row, merged by level values, its moments formed
from them at the end): the file is read once for the levels, the missing
counts and every fold's statistics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .engines.categorical import (
    _check_chunk,
    accumulate_blocks,
    block_statistics,
    chunk_level_moments,
    merge_levels,
)
from .engines.fold_cells import learn_fold_moments
from .engines.statistics import Statistics, accumulate, chunk_moments, finish, merge
from .errors import DataError
from .sources import ArraySource, FileSource, check_finite
from .sources.base import Chunk

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def fold_seed(random_state):
    """The integer seed of the folds: ``random_state`` if an int, 0 for ``None``.

    A ``numpy.random.Generator`` or ``RandomState`` draws one (then the folds
    differ from call to call, as the generator moves on).
    """
    if random_state is None:
        return 0
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    return int(random_state.randint(0, 2**31))


def _splitmix64(values, seed):
    """SplitMix64 of ``values + (seed + 1)·φ`` (uint64 arithmetic wraps around, as the hash wants)."""
    z = values.astype(np.uint64) + np.uint64(((int(seed) + 1) * _GOLDEN) & _MASK)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fold_of(positions, n_folds, seed=0):
    """The fold of each row, from its position alone.

    Rows are taken in blocks of ``n_folds`` consecutive positions; within a
    block, the row whose hash (:func:`_splitmix64` of its position) is the
    ``j``-th smallest goes to fold ``j``. So every block is spread over all the
    folds by a random permutation of its own, fold sizes differ by at most one,
    and a fold is never empty when there are at least ``n_folds`` rows; and a
    row's fold depends on nothing but its position and the seed, whichever
    chunk or worker reads it.

    Parameters
    ----------
    positions : array-like of int, shape (n,)
        0-based row positions in the source.
    n_folds : int
    seed : int

    Returns
    -------
    ndarray of shape (n,), int
    """
    positions = np.asarray(positions, dtype=np.int64)
    own = _splitmix64(positions, seed)
    first = positions - positions % n_folds
    labels = np.zeros(positions.shape[0], dtype=np.intp)
    for member in range(n_folds):  # the rank of each row's hash among its block's
        labels += _splitmix64(first + member, seed) < own
    return labels


def split(n_samples, n_folds, seed=0):
    """The folds as scikit-learn's ``cv`` takes them: a list of ``(train, test)`` index arrays.

    For checking gradfit against scikit-learn's CV estimators on the same rows.
    """
    labels = fold_of(np.arange(n_samples), n_folds, seed)
    rows = np.arange(n_samples)
    return [(rows[labels != f], rows[labels == f]) for f in range(n_folds)]


@dataclass
class FoldStatistics:
    """What cross-validation needs of the data: per fold, training and validation statistics.

    Attributes
    ----------
    train, test : list of Statistics
        ``n_folds`` each; ``train[f]`` of every row not in fold ``f`` (or the
        splitter's training rows), ``test[f]`` of fold ``f``'s rows.
    total : Statistics
        Of all the rows (for the alpha grid and the final refit).
    """

    train: list
    test: list
    total: Statistics

    @property
    def n_folds(self):
        return len(self.test)


def _merge_folds(a, b):
    """Fold-wise :func:`~gradfit.engines.statistics.merge` of two lists of moments (``a`` reused)."""
    return [merge(x, y) for x, y in zip(a, b)]


def _merge_level_folds(a, b):
    """Fold-wise :func:`~gradfit.engines.categorical.merge_levels` of two lists of level moments (``a`` reused)."""
    return [merge_levels(x, y) for x, y in zip(a, b)]


def _split_level_moments(chunk, labels, n_folds, source, layout):
    """Per-fold :class:`~gradfit.engines.categorical.LevelMoments` of one chunk carrying level codes."""
    _check_chunk(source, layout, chunk)  # names a bad value by its row in the source
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=n_folds)
    X, y, codes = _rows(chunk.X, order), _rows(chunk.y, order), chunk.codes[order]
    weight = None if chunk.sample_weight is None else chunk.sample_weight[order]
    parts = [None] * n_folds
    start = 0
    for f in range(n_folds):
        stop = start + int(counts[f])
        if stop > start:
            parts[f] = chunk_level_moments(codes[start:stop], X[start:stop], y[start:stop],
                                           None if weight is None else weight[start:stop], layout["n_levels"])
        start = stop
    return parts


def _split_moments(chunk, labels, n_folds, source, layout=None):
    """Per-fold :class:`Moments` of one chunk, the rows grouped by ``labels`` (shape (n_rows,)).

    ``layout``: the source's ``block_layout``, read where the pass starts (a
    Dask worker's copy of the source is a stand-in without it).
    """
    if layout is not None:
        return _split_level_moments(chunk, labels, n_folds, source, layout)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=n_folds)
    X, y = _rows(chunk.X, order), _rows(chunk.y, order)
    weight = None if chunk.sample_weight is None else chunk.sample_weight[order]
    parts = [None] * n_folds
    start = 0
    try:
        for f in range(n_folds):
            stop = start + int(counts[f])
            if stop > start:
                part = Chunk(X[start:stop], y[start:stop], None if weight is None else weight[start:stop], chunk.start)
                parts[f] = chunk_moments(part, True, source)
            start = stop
    except DataError:
        check_finite(source, chunk)  # names a bad value by its row in the source, not in the regrouped rows
        raise
    return parts


def _rows(values, order):
    """``values[order]``, gathered along the memory's own order.

    Files give column-major chunks (:class:`~gradfit.sources.FileSource`); gathering
    their rows column by column is 2-3 times faster than NumPy's row indexing.
    """
    if values.flags.f_contiguous and not values.flags.c_contiguous:
        return np.take(values.T, order, axis=1).T
    return np.take(values, order, axis=0)


def row_positions(chunk):
    """Each row's position in the source: ``chunk.positions`` where rows were left out, else consecutive."""
    if chunk.positions is not None:
        return np.asarray(chunk.positions, dtype=np.int64)
    return np.arange(chunk.start, chunk.start + chunk.n_rows)


def _hashed_fold_moments(chunk, n_folds, seed, source, layout=None):
    labels = fold_of(row_positions(chunk), n_folds, seed)
    return _split_moments(chunk, labels, n_folds, source, layout)


def _labelled_fold_moments(chunk, labels, n_folds, source, layout=None):
    return _split_moments(chunk, labels[chunk.start : chunk.start + chunk.n_rows], n_folds, source, layout)


def _combine(moments_list, source, what):
    """Merge copies of ``moments_list`` (the inputs are left as they are) and finish them.

    Level moments (a column kept as codes) give :class:`~gradfit.engines.categorical.BlockStatistics`.
    """
    blocks = source.block_layout is not None
    merged = None
    for moments in moments_list:
        if moments is not None:  # (both merges reuse their first argument)
            merged = (merge_levels if blocks else merge)(merged, copy.deepcopy(moments))
    if blocks:
        return block_statistics(merged, source.block_layout, what)
    return finish(merged, source, True, what=what)


def _from_fold_moments(parts, source, name):
    n_folds = len(parts)
    for f, part in enumerate(parts):
        if part is None or part.count == 0:
            raise DataError(f"{name} {f + 1} of {n_folds} of {source.describe()} has no rows; use fewer folds")
    test = [_combine([parts[f]], source, f"{name} {f + 1} of {source.describe()}") for f in range(n_folds)]
    train = [
        _combine([parts[g] for g in range(n_folds) if g != f], source,
                 f"the training rows of {name} {f + 1} of {source.describe()}")
        for f in range(n_folds)
    ]
    total = _combine(parts, source, source.describe())
    return FoldStatistics(train, test, total)


def fold_statistics(source, n_folds, seed=0):
    """One pass over ``source``: the :class:`FoldStatistics` of hashed folds (:func:`fold_of`).

    Works for every source (arrays, files, Dask): the per-chunk function needs
    only the chunk's rows and their positions. A file whose levels are
    pending learns them in this pass (:mod:`gradfit.engines.fold_cells`; a
    column of many levels is then kept as level codes, ``use_blocks``).
    """
    if isinstance(source, FileSource) and source.levels_pending:
        parts = learn_fold_moments(source, lambda positions: fold_of(positions, n_folds, seed), n_folds)
        if parts is not None:  # (None: the cells outgrew their memory; the levels were learned apart)
            return _from_fold_moments(parts, source, "fold")
    with np.errstate(over="ignore", invalid="ignore"):  # overflows are named by chunk_moments and finish
        layout = source.block_layout
        parts = source.reduce(lambda chunk: _hashed_fold_moments(chunk, n_folds, seed, source, layout),
                              _merger(source))
    if parts is None:
        raise DataError(f"{source.describe()} has no data rows")
    return _from_fold_moments(parts, source, "fold")


def split_statistics(source, splits):
    """The :class:`FoldStatistics` of given ``(train, test)`` index pairs, for an in-memory ``source``.

    When the test sets partition the rows (``KFold``, ``GroupKFold``, …) one
    pass collects each test set's moments and the training statistics are the
    others merged; otherwise (``ShuffleSplit``, repeated or overlapping splits)
    each pair's rows are summed on their own, from memory.
    """
    n = source.n_samples
    splits = check_splits(splits, n)
    labels = partition_labels(splits, n)
    if labels is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            layout = source.block_layout
            parts = source.reduce(lambda chunk: _labelled_fold_moments(chunk, labels, len(splits), source, layout),
                                  _merger(source))
        return _from_fold_moments(parts, source, "split")
    # first: a bad value is named by its row in the input
    total = accumulate_blocks(source) if source.block_layout is not None else accumulate(source)
    train, test = [], []
    for f, (train_rows, test_rows) in enumerate(splits):
        train.append(_rows_statistics(source, train_rows, f"the training rows of split {f + 1}"))
        test.append(_rows_statistics(source, test_rows, f"the test rows of split {f + 1}"))
    return FoldStatistics(train, test, total)


def check_splits(splits, n):
    """``splits`` as a list of ``(train, test)`` int arrays, each non-empty and inside ``0..n − 1``."""
    splits = [(np.asarray(train, dtype=np.intp), np.asarray(test, dtype=np.intp)) for train, test in splits]
    if not splits:
        raise ValueError("cv gave no (train, test) splits")
    for f, (train, test) in enumerate(splits):
        for what, rows in (("train", train), ("test", test)):
            if rows.size == 0:
                raise ValueError(f"split {f + 1} of cv has an empty {what} set")
            if rows.min() < 0 or rows.max() >= n:
                raise ValueError(f"split {f + 1} of cv has {what} indices outside 0..{n - 1}")
    return splits


def partition_labels(splits, n):
    """Each row's fold when the test sets partition the ``n`` rows and each train set is the rest, else ``None``.

    ``KFold``, ``GroupKFold``, … are such; ``ShuffleSplit`` and repeated or
    overlapping splits are not.
    """
    labels = np.full(n, -1, dtype=np.intp)
    for f, (train, test) in enumerate(splits):
        if np.any(labels[test] >= 0) or len(np.unique(test)) != len(test):
            return None
        labels[test] = f
    if np.all(labels >= 0) and all(len(train) + len(test) == n for train, test in splits):
        return labels
    return None


def _merger(source):
    """The fold-wise merge of the per-chunk parts: of level moments for a column kept as codes."""
    return _merge_level_folds if source.block_layout is not None else _merge_folds


def _rows_statistics(source, rows, what):
    if hasattr(source, "subset"):  # a frame: the rows as a source of their own, encoded chunk by chunk
        subset = source.subset(rows)
    else:
        weight = None if source.sample_weight is None else source.sample_weight[rows]
        subset = ArraySource(source.X[rows], source.y[rows], weight, source.feature_names, source.target_names)
    if subset.block_layout is not None:  # the other features and the codes (no dummies)
        n_levels = subset.block_layout["n_levels"]
        moments = subset.reduce(lambda chunk: chunk_level_moments(
            chunk.codes, chunk.X, chunk.y, chunk.sample_weight, n_levels), merge_levels)
        return block_statistics(moments, subset.block_layout, what)
    with np.errstate(over="ignore", invalid="ignore"):
        moments = subset.reduce(lambda chunk: chunk_moments(chunk, True, subset), merge)
    return finish(moments, subset, True, what=what)
