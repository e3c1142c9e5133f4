"""GDRegressorCV on a categorical column of many levels kept as level codes: no dense one-hot block.

The table has a column of 1,500 levels (a block candidate: more than
``BLOCK_LEVELS``) beside three numeric features. The oracle is scikit-learn
fitted fold by fold on the one-hot encoding of the same column (a SciPy
sparse matrix, so the oracle itself stays small), in gradfit's order of
features and on gradfit's folds (:func:`gradfit.folds.split`), at gradfit's
alphas mapped by the table of :mod:`gradfit.penalties` (``ElasticNet``/``Lasso``
``alpha = a/2``, ``Ridge`` ``alpha = a·W/2`` with ``W`` the training weight);
the validation errors are NumPy's means of the held-out residuals.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import scipy.sparse.linalg
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Ridge
from sklearn.model_selection import KFold, ShuffleSplit

from gradfit import GDRegressorCV, load
from gradfit.cli import main
from gradfit.folds import split
from gradfit.sources.encoding import BLOCK_LEVELS, MAX_LEVELS

RTOL = 1e-7
N_LEVELS = 1500
FEATURES = ["x0", "x1", "x2"]


def make_table(n=6000, n_levels=N_LEVELS, seed=0):
    """A frame of three numeric features and a text column ``g`` of ``n_levels`` levels (each present), and its target."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.resize(np.arange(n_levels), n))
    effect = rng.normal(size=n_levels)
    X = rng.normal(size=(n, 3)) * [1.0, 3.0, 0.5] + [0.5, -0.2, 1.0]
    y = X @ [1.0, -0.5, 2.0] + effect[codes] + rng.normal(size=n)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["g"] = [f"L{c:05d}" for c in codes]
    return frame, y


def one_hot(frame):
    """``[x0, x1, x2, g's dummies]`` (reference: the first level in sorted order), sparse, gradfit's order."""
    levels = np.sort(frame["g"].unique())
    code = np.searchsorted(levels, frame["g"].to_numpy())
    rows = np.flatnonzero(code > 0)
    dummies = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, code[rows] - 1)),
                                      shape=(len(frame), len(levels) - 1))
    return scipy.sparse.hstack([scipy.sparse.csr_matrix(frame[FEATURES].to_numpy()), dummies]).tocsr()


def oracle_path(X, y, alphas, l1_ratio, folds, weight=None, fit_intercept=True):
    """scikit-learn fold by fold along ``alphas`` (warm-started): the validation MSEs, shape (n_alphas, n_folds)."""
    out = np.empty((len(alphas), len(folds)))
    for f, (train, test) in enumerate(folds):
        w = None if weight is None else weight[train]
        model = ElasticNet(l1_ratio=l1_ratio, fit_intercept=fit_intercept, tol=1e-12, max_iter=1_000_000,
                           warm_start=True)
        for i, alpha in enumerate(alphas):
            if l1_ratio > 0:
                model.set_params(alpha=alpha / 2)
            else:
                total = len(train) if w is None else w.sum()
                model = Ridge(alpha=alpha * total / 2, fit_intercept=fit_intercept, solver="sparse_cg", tol=1e-13,
                              max_iter=100_000)
            with warnings.catch_warnings():  # its own gap test on tiny alphas; the comparison judges
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X[train], y[train], sample_weight=w)
            residual = model.predict(X[test]) - y[test]
            out[i, f] = np.average(residual**2, weights=None if weight is None else weight[test])
    return out


@pytest.fixture(scope="module")
def table():
    frame, y = make_table()
    weight = np.random.default_rng(5).uniform(0.2, 3.0, len(frame))
    return frame, y, weight, one_hot(frame)


def test_the_column_is_a_block_candidate(table):
    frame, *_ = table
    assert BLOCK_LEVELS < frame["g"].nunique() == N_LEVELS <= MAX_LEVELS


@pytest.mark.parametrize("fit_intercept, standardize, weighted", [
    (True, True, False),
    (False, False, True),
    (True, False, True),
])
def test_elastic_net_paths_equal_scikit_learn_on_the_dummies(table, fit_intercept, standardize, weighted):
    frame, y, weight, X = table
    weight = weight if weighted else None
    ratios = [0.4, 1.0]
    model = GDRegressorCV(penalty="elasticnet", l1_ratio=ratios, alphas=5, eps=1e-2, cv=3, random_state=1,
                          fit_intercept=fit_intercept, standardize=standardize).fit(frame, y, sample_weight=weight)
    assert model.n_features_in_ == 4 and len(model.coef_) == 3 + N_LEVELS - 1
    folds = split(len(frame), 3, seed=1)
    expected = np.array([oracle_path(X, y, model.alphas_[i], r, folds, weight, fit_intercept)
                         for i, r in enumerate(ratios)])
    np.testing.assert_allclose(model.mse_path_, expected, rtol=RTOL)
    best = np.unravel_index(np.argmin(expected.mean(axis=2)), expected.shape[:2])
    assert (model.l1_ratio_, model.alpha_) == (ratios[best[0]], model.alphas_[best])
    # the grid's top: the smallest alpha at which every coefficient is zero, over all features (levels included)
    centred = fit_intercept
    w = np.ones(len(y)) if weight is None else weight
    mean_x = np.asarray(X.T @ w / w.sum()).ravel() if centred else np.zeros(X.shape[1])
    mean_y = w @ y / w.sum() if centred else 0.0
    correlation = (X.T @ (w * (y - mean_y)) - mean_x * (w @ (y - mean_y))) / w.sum()
    np.testing.assert_allclose(model.alphas_[:, 0], 2 * np.abs(correlation).max() / np.array(ratios), rtol=1e-10)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ridge_path_equals_ridge_fold_by_fold(table, fit_intercept):
    frame, y, weight, X = table
    model = GDRegressorCV(penalty="l2", alphas=6, cv=3, random_state=1, fit_intercept=fit_intercept).fit(
        frame, y, sample_weight=weight)
    expected = oracle_path(X, y, model.alphas_, 0.0, split(len(frame), 3, seed=1), weight, fit_intercept)
    np.testing.assert_allclose(model.mse_path_, expected, rtol=RTOL)
    assert model.alpha_ == model.alphas_[np.argmin(expected.mean(axis=1))]
    np.testing.assert_array_equal(model.dual_gap_path_, 0.0)  # solved exactly


def test_a_parquet_file_in_bounded_memory_and_the_refit(table, tmp_path):
    frame, y, _, X = table
    path = tmp_path / "table.parquet"
    frame.assign(y=y).to_parquet(path, index=False)
    settings = {"penalty": "l1", "alphas": 6, "eps": 1e-2, "cv": 3, "random_state": 1}
    tracemalloc.start()
    try:
        model = GDRegressorCV(**settings).fit(str(path), "y")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    dense_block = len(frame) * (N_LEVELS - 1) * 8  # the one-hot block in float64: 72 MB
    assert peak < dense_block / 8, f"peak {peak / 1e6:.1f} MB"
    expected = oracle_path(X, y, model.alphas_, 1.0, split(len(frame), 3, seed=1))
    np.testing.assert_allclose(model.mse_path_, expected, rtol=RTOL)
    assert model.alpha_ == model.alphas_[np.argmin(expected.mean(axis=1))]
    # the same rows from the frame fall into the same folds
    in_memory = GDRegressorCV(**settings).fit(frame, y)
    np.testing.assert_allclose(in_memory.mse_path_, model.mse_path_, rtol=1e-12)
    # the final fit on all the rows at the chosen alpha (GDRegressor's, on the blocks) is scikit-learn's refit
    refit = ElasticNet(alpha=model.alpha_ / 2, l1_ratio=1.0, tol=1e-12, max_iter=1_000_000).fit(X, y)
    np.testing.assert_allclose(model.coef_, refit.coef_, rtol=0, atol=1e-7 * np.abs(refit.coef_).max())
    assert model.intercept_ == pytest.approx(refit.intercept_, rel=1e-7)
    assert model.certificate_.kind == "duality_gap" and model.converged_
    np.testing.assert_allclose(model.predict(frame), X @ refit.coef_ + refit.intercept_, rtol=1e-6)


@pytest.mark.parametrize("cv", [KFold(3, shuffle=True, random_state=0),
                                ShuffleSplit(n_splits=2, test_size=0.3, random_state=1)])
def test_a_splitter_partitioning_the_rows_or_not(table, cv):
    frame, y, _, X = table
    model = GDRegressorCV(penalty="elasticnet", l1_ratio=0.6, alphas=4, eps=1e-2, cv=cv).fit(frame, y)
    folds = list(cv.split(np.zeros((len(frame), 1))))
    np.testing.assert_allclose(model.mse_path_, oracle_path(X, y, model.alphas_, 0.6, folds), rtol=RTOL)


def test_more_levels_than_dense_dummies_allow():
    # beyond MAX_LEVELS the dense cross-validation refused the column; on the blocks it has no limit
    frame, y = make_table(n=12_000, n_levels=MAX_LEVELS + 500, seed=2)
    model = GDRegressorCV(penalty="l2", alphas=4, cv=3).fit(frame, y)
    expected = oracle_path(one_hot(frame), y, model.alphas_, 0.0, split(len(frame), 3, seed=0))
    np.testing.assert_allclose(model.mse_path_, expected, rtol=RTOL)


@pytest.mark.parametrize("penalty", ["l2", "elasticnet"])
def test_huber_cross_validation_keeps_the_codes_beyond_the_dense_limit(penalty):
    # Huber's paths run on the level blocks (tests/test_cv_huber_blocks.py): beyond MAX_LEVELS they fit
    # (before, a one-line DataError: "more than the 5000 ... Huber's cross-validation")
    frame, y = make_table(n=11_000, n_levels=MAX_LEVELS + 1, seed=3)
    model = GDRegressorCV(loss="huber", penalty=penalty, alphas=3, cv=3).fit(frame, y)
    assert model.converged_ and model.engine_ == "pass" and np.all(np.isfinite(model.mse_path_))
    assert np.nanmax(model.dual_gap_path_) <= 1e-11


def test_the_command_line_cross_validates_on_the_blocks(table, tmp_path, capsys):
    frame, y, _, _ = table
    path = tmp_path / "table.parquet"
    frame.assign(y=y).to_parquet(path, index=False)
    model_path = tmp_path / "m.json"
    code = main(["train", str(path), "--target", "y", "--penalty", "l2", "--alpha", "cv", "--folds", "3",
                 "--alphas", "5", "-o", str(model_path), "-q"])
    assert code == 0, capsys.readouterr().err
    estimator = GDRegressorCV(penalty="l2", alphas=5, cv=3).fit(frame, y)
    saved = load(model_path)
    assert saved.alpha == pytest.approx(estimator.alpha_, rel=1e-12)
    np.testing.assert_allclose(saved.coef_, estimator.coef_, rtol=1e-9, atol=1e-12)


def test_a_formulas_factor_of_many_levels_is_cross_validated_on_the_blocks_too(table):
    frame, y, _, _ = table
    settings = {"penalty": "elasticnet", "l1_ratio": 0.5, "alphas": 4, "eps": 1e-2, "cv": 3}
    columns = GDRegressorCV(**settings).fit(frame, y)
    tracemalloc.start()
    try:
        formula = GDRegressorCV(**settings, formula="y ~ x0 + x1 + x2 + C(g)").fit(frame.assign(y=y))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(frame) * (N_LEVELS - 1) * 8 / 8, f"peak {peak / 1e6:.1f} MB"
    np.testing.assert_allclose(formula.mse_path_, columns.mse_path_, rtol=1e-10)
    np.testing.assert_allclose(formula.coef_, columns.coef_, rtol=1e-8, atol=1e-10)


def test_alpha_zero_leaves_a_level_without_training_rows_at_zero(table):
    # with few rows a level, some levels have no row in some fold's training rows: at alpha = 0 the data do
    # not determine their dummies, which the path leaves at zero as the dense path (and lstsq's minimum norm) do
    frame, y = make_table(n=3200, seed=6)
    model = GDRegressorCV(penalty="l2", alphas=[1e-3, 0.0], cv=3).fit(frame, y)
    X = scipy.sparse.hstack([one_hot(frame), np.ones((len(frame), 1))]).tocsc()
    expected, left_out = [], 0
    for train, test in split(len(frame), 3, seed=0):
        used = np.flatnonzero(X[train].getnnz(axis=0) > 0)  # the dummies of the levels the training rows hold
        left_out += X.shape[1] - len(used)
        design = X[train][:, used]
        coef = scipy.sparse.linalg.spsolve((design.T @ design).tocsc(), design.T @ y[train])  # normal equations
        expected.append(np.mean((X[test][:, used] @ coef - y[test]) ** 2))
    assert left_out > 0  # the case happens
    np.testing.assert_allclose(model.mse_path_[1], expected, rtol=RTOL)


def test_features_and_target_far_from_zero_keep_their_digits():
    # a feature at 1e6 and a target at 3e6 (spread ~1): the blocks keep the level means about a shift, the path
    # solves with the target centred; the oracle centres the dense features and the target before its normal
    # equations (the dummies' centred Gram DᵀD − W ππᵀ has no large numbers to cancel)
    frame, y = make_table(n=4500, seed=7)
    frame["x2"] += 1e6
    y = y + 3e6
    alphas = [1e-2, 1e-3]
    model = GDRegressorCV(penalty="l2", alphas=alphas, cv=3).fit(frame, y)
    X = one_hot(frame)
    expected = np.empty((2, 3))
    for f, (train, test) in enumerate(split(len(frame), 3, seed=0)):
        design, target = X[train], y[train]
        mean, target_mean = np.asarray(design.mean(axis=0)).ravel(), target.mean()
        dense = design[:, :3].toarray() - mean[:3]
        dummies = design[:, 3:]
        share = mean[3:]
        gram = np.empty((X.shape[1], X.shape[1]))
        gram[:3, :3] = dense.T @ dense
        gram[:3, 3:] = dummies.T.dot(dense).T  # Σ (x − μ)(d − π) = Σ (x − μ) d
        gram[3:, :3] = gram[:3, 3:].T
        gram[3:, 3:] = (dummies.T @ dummies).toarray() - len(train) * np.outer(share, share)
        centred = target - target_mean
        cross = np.concatenate([dense.T @ centred, dummies.T @ centred])
        for i, alpha in enumerate(alphas):
            coef = np.linalg.solve(gram + 0.5 * alpha * len(train) * np.eye(len(cross)), cross)
            held = X[test]
            prediction = (held[:, :3].toarray() - mean[:3]) @ coef[:3] + held[:, 3:] @ coef[3:] - share @ coef[3:]
            expected[i, f] = np.mean((prediction + target_mean - y[test]) ** 2)
    np.testing.assert_allclose(model.mse_path_, expected, rtol=RTOL)
