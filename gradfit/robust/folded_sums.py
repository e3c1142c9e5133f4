"""Per-chunk partial sums of many Huber problems at once: every fold of a cross-validation in one pass.

A *problem* ``m`` is a set of training rows and an output column: the rows
of every fold but ``folds[m]`` (``folds[m] = −1``: all the rows), output
``columns[m]``. Each row's fold comes from ``labels_of(chunk)`` (the seeded
hash of its position, :func:`gradfit.folds.fold_of`), so a row is summed
into the training sums of every problem whose training set holds it and into
the held-out sums of the problem whose fold it is, from one read. The
residuals of all the problems, ``R = Z Θ − Y`` (one product of the block
``Z_b`` (n_b, p) with ``Θ`` (p, m)), cost about what one problem's gradient
costs; each problem's inlier Hessian costs its own ``O(n_b p²)``.

The sums are :func:`gradfit.robust.sums.huber_sums`'s, per problem (arrays
with a problem axis): ``value``, ``gradient`` (p, m), ``hessian`` (m, p, p),
``s_target``, ``s_square``, ``max_s``, ``min_s``, ``inliers``, ``weight``, over
each problem's training rows; ``heldout`` and ``heldout_weight``, ``Σ v h(r)``
and ``Σ v`` over its held-out rows (the fold's validation loss); and, for a
line search, ``line`` (m, T): ``Σ v h(r_base + t·Z·direction)`` over the
training rows for every step ``t``.

On a categorical column kept as level codes (``layout``, the source's
``block_layout``) ``Z`` is a :class:`~gradfit.robust.sums.CodedBlock` (a
gather and a ``bincount``, no one-hot block) and no problem's ``hessian`` is
formed: ``levels`` holds, per problem, the :class:`~gradfit.engines.categorical.LevelMoments`
of its training inliers (as :func:`gradfit.robust.sums.huber_sums` collects
them for one problem), from which :class:`~gradfit.robust.level_newton.LevelHessian`
solves by the level blocks.
"""

from __future__ import annotations

import numpy as np

from ..engines.blocks import PASS_BLOCK_BYTES, PASS_MIN_ROWS, block_rows
from ..engines.categorical import merge_levels
from .sums import LEVEL_MOMENT_ROWS, CodedBlock, _blocks, _inlier_levels, _inlier_rows


def _huber(residuals, epsilon):
    magnitude = np.abs(residuals)
    return np.where(magnitude <= epsilon, residuals * residuals, 2.0 * epsilon * magnitude - epsilon * epsilon)


def _pieces(Z, weight, width):
    """``(offset, Z, weight)`` of a :class:`~gradfit.robust.sums.CodedBlock` cut to rows of ``width`` values a
    cache block: its rows were counted by its few dense columns, while each row here holds ``width`` values
    (every problem's residuals, weights and line-search trials); a dense block is handed on whole."""
    rows = block_rows(width, PASS_BLOCK_BYTES, PASS_MIN_ROWS)
    if not isinstance(Z, CodedBlock) or Z.shape[0] <= rows:
        yield 0, Z, weight
        return
    for first in range(0, Z.shape[0], rows):
        last = min(first + rows, Z.shape[0])
        yield first, CodedBlock(Z.coding, Z.dense[first:last], Z.codes[first:last]), (
            None if weight is None else weight[first:last])


def _folded_blocks(chunk, labels_of, folds, columns, thetas, scaling, fit_intercept, layout=None, width=None):
    """A chunk's row blocks with each problem's view of them, for the folded sums below.

    Yields ``(start, Z, weight, Y, v, fold, train, V, R)``: the block's design
    ``Z`` (n, p) and weights as :func:`gradfit.robust.sums._blocks` gives
    them, each problem's targets ``Y`` (n, m), the row weights ``v`` (n,),
    the rows' folds ``fold`` (n,), ``train`` (n, m) whether a row trains a problem (fold −1 never matches:
    every row), ``V = train·v`` each problem's weights (zero outside its
    training rows) and the residuals ``R = Z θ − Y`` (n, m). ``layout``: a
    column kept as level codes (``Z`` a :class:`~gradfit.robust.sums.CodedBlock`, cut by :func:`_pieces`
    to rows of ``width`` values, by default ``8 m``).
    """
    labels, folds, columns = labels_of(chunk), np.asarray(folds), np.asarray(columns)
    width = 8 * folds.shape[0] if width is None else width
    for whole, block, block_weight in _blocks(chunk, scaling, fit_intercept, layout):
        for offset, Z, weight in _pieces(block, block_weight, width):
            start = whole + offset
            yield (start,) + _folded_block(Z, weight, chunk, labels, folds, columns, thetas, start)


def _folded_block(Z, weight, chunk, labels, folds, columns, thetas, start):
    """One block's ``(Z, weight, Y, v, fold, train, V, R)`` for :func:`_folded_blocks`."""
    n = Z.shape[0]
    Y = chunk.y[start:start + n][:, columns]
    v = np.ones(n) if weight is None else np.asarray(weight, dtype=float)
    train = labels[start:start + n, None] != folds[None, :]
    V = train * v[:, None]
    R = Z @ thetas
    R -= Y
    return Z, weight, Y, v, labels[start:start + n], train, V, R


def folded_huber_sums(labels_of, folds, columns, thetas, epsilon, scaling, fit_intercept, line=None, layout=None):
    """A per-chunk function for :meth:`~gradfit.sources.Source.reduce`; combine with :func:`add_folded`.

    Parameters
    ----------
    labels_of : callable
        ``labels_of(chunk)``: the fold of each of the chunk's rows, shape (n_rows,), int.
    folds : ndarray of shape (m,), int
        Each problem's held-out fold (``−1``: none, every row trains).
    columns : ndarray of shape (m,), int
        Each problem's output column.
    thetas : ndarray of shape (p, m)
        Each problem's parameters (working units, :mod:`gradfit.robust.sums`).
    epsilon : float
    scaling : Scaling
    fit_intercept : bool
    line : tuple, optional
        ``(line_folds, line_columns, bases, directions, steps)``: for ``l`` more
        problems (their folds and columns, shape (l,)), ``Σ v h`` over their
        training rows at ``bases + t·directions`` (both (p, l)) for every ``t``
        in ``steps`` (T,): the line searches, in the same pass.
    layout : dict, optional
        The source's ``block_layout`` (a column kept as level codes): each
        problem's inlier ``levels`` instead of its ``hessian``.
    """
    p, m = thetas.shape

    def partial(chunk):
        if chunk.n_rows == 0:
            return None
        coded = chunk.codes is not None
        out = {
            "value": np.zeros(m), "gradient": np.zeros((p, m)),
            "s_target": np.zeros(m), "s_square": np.zeros(m), "max_s": np.full(m, -np.inf),
            "min_s": np.full(m, np.inf), "inliers": np.zeros(m, dtype=np.int64), "weight": np.zeros(m),
            "heldout": np.zeros(m), "heldout_weight": np.zeros(m),
        }
        if coded:  # each problem's training inliers (codes, dense columns, weights), their moments a chunk
            out["levels"] = [None] * m
            inliers, gathered = [[] for _ in range(m)], np.zeros(m, dtype=np.int64)
        else:
            out["hessian"] = np.zeros((m, p, p))
        if line is not None:
            out["line"] = np.zeros((len(line[0]), line[4].shape[0]))
        for start, Z, weight, Y, v, fold, train, V, R in _folded_blocks(chunk, labels_of, folds, columns, thetas, scaling,
                                                                  fit_intercept, layout, width):
            n = Z.shape[0]
            S = 2.0 * np.clip(R, -epsilon, epsilon)
            inside = np.abs(R) <= epsilon
            H = _huber(R, epsilon)
            VS = V * S
            out["value"] += np.einsum("nm,nm->m", V, H)
            out["gradient"] += Z.T @ VS
            out["s_target"] += np.einsum("nm,nm->m", VS, Y)
            out["s_square"] += np.einsum("nm,nm->m", VS, S)
            out["weight"] += V.sum(axis=0)
            live = train & (v > 0)[:, None]
            out["max_s"] = np.maximum(out["max_s"], np.where(live, S, -np.inf).max(axis=0))
            out["min_s"] = np.minimum(out["min_s"], np.where(live, S, np.inf).min(axis=0))
            counted = inside & train
            out["inliers"] += counted.sum(axis=0)
            held = (~train) * v[:, None]
            out["heldout"] += np.einsum("nm,nm->m", held, H)
            out["heldout_weight"] += held.sum(axis=0)
            for j in range(m):  # each problem's generalized Hessian: its training inliers' Gram
                rows = counted[:, j]
                if coded:
                    inliers[j].append(_inlier_rows(Z, rows, weight))
                    gathered[j] += inliers[j][-1][0].size
                    if gathered[j] >= LEVEL_MOMENT_ROWS:  # bounded memory, as huber_sums
                        out["levels"][j] = merge_levels(out["levels"][j], _inlier_levels(inliers[j], n_levels))
                        inliers[j], gathered[j] = [], 0
                elif rows.any():
                    block = Z[rows]
                    if weight is not None:
                        block *= np.sqrt(v[rows])[:, None]
                    out["hessian"][j] += 2.0 * (block.T @ block)
            if line is not None:
                line_folds, line_columns, bases, directions, steps = line
                base = Z @ bases
                base -= chunk.y[start:start + n][:, line_columns]
                trial = base[:, :, None] + (Z @ directions)[:, :, None] * steps[None, None, :]
                trains = (fold[:, None] != line_folds[None, :]) * v[:, None]
                out["line"] += np.einsum("nl,nlt->lt", trains, _huber(trial, epsilon))
        if coded:
            for j in range(m):
                if inliers[j]:
                    out["levels"][j] = merge_levels(out["levels"][j], _inlier_levels(inliers[j], n_levels))
        return out

    n_levels = None if layout is None else layout["n_levels"]
    # the values a row holds at once: each problem's residuals and sums, each line search's trials
    width = 8 * m + (0 if line is None else 4 * len(line[0]) * line[4].shape[0])
    return partial


def add_folded(a, b):
    """Combine two outputs of :func:`folded_huber_sums`: ``max_s``/``min_s`` elementwise, each problem's
    ``levels`` by :func:`~gradfit.engines.categorical.merge_levels`, the rest added."""
    for key, value in b.items():
        if key == "levels":
            a[key] = [merge_levels(x, y) for x, y in zip(a[key], value)]
        elif key == "max_s":
            a[key] = np.maximum(a[key], value)
        elif key == "min_s":
            a[key] = np.minimum(a[key], value)
        else:
            a[key] = a[key] + value
    return a


def folded_dual_sums(labels_of, folds, columns, thetas, corrections, epsilon, scaling, fit_intercept, layout=None):
    """Per chunk, for every problem at ``s̃ = 2·clip(r, −ε, ε) − Z·correction`` over its training rows.

    :func:`gradfit.robust.sums.huber_dual_sums` for many problems at once:
    ``s_target = Σ v s̃ y``, ``s_square = Σ v s̃²``, ``s_features = Zᵀ(v s̃)``
    (p, m) and ``max_abs = max |s̃|`` (rows of positive weight); combine with
    :func:`add_folded_dual`. ``corrections`` (p, m); ``layout``: a column kept as level codes.
    """
    p, m = thetas.shape

    def partial(chunk):
        if chunk.n_rows == 0:
            return None
        out = {"s_target": np.zeros(m), "s_square": np.zeros(m), "s_features": np.zeros((p, m)),
               "max_abs": np.zeros(m)}
        for _, Z, _, Y, v, _, train, V, R in _folded_blocks(chunk, labels_of, folds, columns, thetas, scaling,
                                                          fit_intercept, layout):
            S = 2.0 * np.clip(R, -epsilon, epsilon) - Z @ corrections
            VS = V * S
            out["s_target"] += np.einsum("nm,nm->m", VS, Y)
            out["s_square"] += np.einsum("nm,nm->m", VS, S)
            out["s_features"] += Z.T @ VS
            live = train & (v > 0)[:, None]
            out["max_abs"] = np.maximum(out["max_abs"], np.where(live, np.abs(S), 0.0).max(axis=0))
        return out

    return partial


def add_folded_dual(a, b):
    """Combine two outputs of :func:`folded_dual_sums`: ``max_abs`` by maximum, the rest added."""
    for key, value in b.items():
        a[key] = np.maximum(a[key], value) if key == "max_abs" else a[key] + value
    return a
