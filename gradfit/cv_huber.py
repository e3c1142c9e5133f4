"""``GDRegressorCV(loss="huber")``: the alpha grid and the cross-validated path, every pass serving all folds.

The squared error's cross-validation needs one pass (:mod:`gradfit.folds`,
:mod:`gradfit.alpha_path`); Huber's solutions depend on the rows beyond their
statistics, so its path is solved by passes (:mod:`gradfit.robust.huber_cv`),
each of which serves every fold, every l1 ratio and the all-rows problem at
once. The data are read ``1 + (passes of the path)`` times — the first pass
the per-fold statistics (means, ``W``, the Gram the solver starts from) —
whatever the number of folds.

On a categorical column kept as level codes (the source's ``block_layout``)
the statistics are level blocks and the passes read the codes; each
problem's (proximal) Newton step is solved by its training inliers' level
blocks (:mod:`gradfit.robust.huber_cv`), never a dense one-hot block.
"""

from __future__ import annotations

from contextlib import nullcontext
from numbers import Integral

import numpy as np

from .alpha_path import alpha_grid
from .block_path import quadratic_of
from .fitting import on_codes
from .folds import check_splits, fold_seed, partition_labels
from .robust.huber_cv import (
    FoldedProblems,
    alpha_max,
    given_labels,
    hashed_labels,
    intercept_solutions,
    solve_path,
)
from .robust.linalg import BlockGram, Gram
from .scaling import Scaling
from .sources.base import single_threaded_blas


def fold_labels(folds, random_state, source):
    """``labels_of(chunk)`` for ``folds``: hashed for a count, else the partition of the rows by the splits.

    ``folds`` is a number of folds or a list of ``(train, test)`` pairs (for an
    in-memory ``source``). Huber's passes need each row's one held-out fold:
    splits whose test sets do not partition the rows (``ShuffleSplit``,
    repeated splits) are refused.
    """
    if isinstance(folds, Integral):
        return hashed_labels(folds, fold_seed(random_state))
    labels = partition_labels(check_splits(folds, source.n_samples), source.n_samples)
    if labels is None:
        raise ValueError('loss="huber" cross-validates folds whose test sets partition the rows (KFold, '
                         "GroupKFold, or cv=<number of folds>), not overlapping or partial splits")
    return given_labels(labels)


def huber_path(source, statistics, labels_of, l1_ratios, given, *, n_alphas, eps, epsilon, fit_intercept,
               max_iter):
    """Cross-validate Huber's loss along the grid(s).

    Parameters
    ----------
    source : Source
    statistics : FoldStatistics
        From the first pass (the same folds as ``labels_of``).
    labels_of : callable
        :func:`fold_labels`.
    l1_ratios : list of float
    given : ndarray of shape (n_alphas,) or None
        The user's alphas (decreasing), or ``None`` for a counted grid.
    n_alphas : int
    eps : float
        The span of a counted grid.
    epsilon : float
        Huber's threshold.
    fit_intercept : bool
    max_iter : int
        Newton iterations per problem and alpha at most.

    Returns
    -------
    dict
        ``grids`` (n_l1_ratio, n_alphas); ``cv_loss`` (n_l1_ratio, n_alphas,
        n_folds), each fold's held-out mean Huber loss; ``gaps`` (n_l1_ratio,
        n_alphas, n_folds + 1) the certified relative gap bounds (last: all
        rows); ``coefs`` (n_l1_ratio, n_alphas, n_outputs, n_features) and
        ``intercepts`` (n_l1_ratio, n_alphas, n_outputs), the all-rows path;
        ``unsettled``; ``passes`` (the path's, the statistics' pass not included).

        With an L1 part a counted grid runs from the smallest alpha at which
        every all-rows coefficient is zero (:func:`gradfit.robust.huber_cv.alpha_max`,
        from the intercept-only Huber fits) down to ``eps`` times it; for L2
        alone it is the squared error's grid (:func:`gradfit.alpha_path.alpha_grid`:
        from ``s/eps`` to ``s·eps``, ``s`` the mean eigenvalue of the
        squared error's Hessian, which bounds Huber's).
    """
    total = statistics.total
    scaling = Scaling.from_statistics(total, fit_intercept, True)  # the solver's units, as gradfit.robust's
    gram = (BlockGram if on_codes(total) else Gram)(total, scaling, fit_intercept)
    problems = FoldedProblems(source, labels_of, statistics, scaling, fit_intercept, epsilon, gram, l1_ratios,
                              total.n_outputs)
    # on level codes the problems' algebra is vectors of the levels' length (O(L·p) a step): BLAS's threads,
    # woken for each of thousands of short products, cost far more than they save (50 s against 7.6 s at
    # 10,000 levels, bench_cv_huber_levels.py); the passes' workers run single-threaded BLAS anyway
    quiet = single_threaded_blas if on_codes(total) else nullcontext
    with quiet():
        intercept_only = None
        if any(r > 0 for r in l1_ratios):
            intercept_only = intercept_solutions(problems, max_iter)
    rows = []
    for ratio in l1_ratios:
        if given is not None:
            rows.append(given)
        elif ratio > 0:
            top = alpha_max(intercept_only, problems, ratio)
            resolution = np.finfo(np.float64).resolution
            rows.append(np.full(n_alphas, 2.0 * resolution) if top <= 2.0 * resolution
                        else np.geomspace(top, top * eps, num=n_alphas))
        else:
            rows.append(alpha_grid(quadratic_of(total, fit_intercept), 0.0, n_alphas, eps))
    grids = np.array(rows)
    with quiet():
        path = solve_path(problems, grids, intercept_only=intercept_only, max_iter=max_iter)
    n_ratios, count = grids.shape
    coefs = np.empty((n_ratios, count, total.n_outputs, total.n_features))
    intercepts = np.empty((n_ratios, count, total.n_outputs))
    for i in range(n_ratios):
        for a in range(count):
            coefs[i, a], intercepts[i, a] = scaling.to_raw(path.params[i, a], fit_intercept)
    return {"grids": grids, "cv_loss": path.cv_loss, "gaps": path.gaps, "coefs": coefs, "intercepts": intercepts,
            "unsettled": path.unsettled, "passes": path.passes}
