"""GDRegressorCV: scikit-learn's CV answers, from one read of the data.

Oracles: scikit-learn's LassoCV, ElasticNetCV and RidgeCV (and Ridge fold by
fold) on the same folds and the same grid, mapped by the table in
:mod:`gradfit.penalties` (Lasso/ElasticNet ``alpha=2a``; Ridge ``alpha=2a/W``
with ``W`` the training rows); NumPy predictions for the validation errors.
Reads are counted by a source that counts the chunks it really reads. The
Dask case (a LocalCluster) is in test_dask.py, on that module's cluster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import ElasticNetCV, LassoCV, Ridge, RidgeCV
from sklearn.model_selection import KFold, ShuffleSplit

from gradfit import ArraySource, FileSource, GDRegressorCV, OptionError, load
from gradfit.folds import fold_of, split
from gradfit.alpha_path import Quadratic, solve_path, validation_mse

from .conftest import make_regression

RTOL = 1e-6
TIGHT = dict(tol=1e-12, max_iter=1_000_000)


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(n=300, d=6, noise=4.0, seed=3, offset=10.0)
    return X, y


def test_folds_depend_on_position_only_and_are_balanced():
    labels = fold_of(np.arange(1003), 5, seed=7)
    assert np.bincount(labels).max() - np.bincount(labels).min() <= 1
    np.testing.assert_array_equal(fold_of(np.arange(500, 1003), 5, seed=7), labels[500:])
    assert not np.array_equal(fold_of(np.arange(1003), 5, seed=8), labels)


@pytest.mark.parametrize("penalty, l1_ratio, oracle", [
    ("l1", 0.5, LassoCV),
    ("elasticnet", 0.3, ElasticNetCV),
    ("elasticnet", [0.1, 0.5, 0.9], ElasticNetCV),
])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_lasso_and_elastic_net_match_scikit_learn(data, penalty, l1_ratio, oracle, fit_intercept):
    X, y = data
    model = GDRegressorCV(penalty=penalty, l1_ratio=l1_ratio, alphas=40, cv=5, random_state=2,
                          fit_intercept=fit_intercept).fit(X, y)
    folds = split(len(X), 5, seed=2)  # gradfit's folds, given to scikit-learn
    extra = {} if oracle is LassoCV else {"l1_ratio": l1_ratio}
    reference = oracle(alphas=40, cv=folds, fit_intercept=fit_intercept, **extra, **TIGHT).fit(X, y)
    np.testing.assert_allclose(model.alphas_, 2 * reference.alphas_, rtol=1e-12)
    np.testing.assert_allclose(model.mse_path_, reference.mse_path_, rtol=RTOL)
    assert model.alpha_ == pytest.approx(2 * reference.alpha_, rel=1e-12)
    if oracle is ElasticNetCV:
        assert model.l1_ratio_ == reference.l1_ratio_
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=RTOL, atol=1e-8 * np.abs(reference.coef_).max())
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=RTOL, abs=1e-9)
    assert model.fit_report_["penalty"] == penalty


def test_a_scikit_learn_splitter_and_given_alphas(data):
    X, y = data
    cv = KFold(4, shuffle=True, random_state=0)
    alphas = [0.01, 1.0, 0.1, 3.0]
    model = GDRegressorCV(penalty="l1", alphas=[2 * a for a in alphas], cv=cv).fit(X, y)
    reference = LassoCV(alphas=alphas, cv=cv, **TIGHT).fit(X, y)
    np.testing.assert_allclose(model.alphas_, 2 * np.sort(alphas)[::-1])
    np.testing.assert_allclose(model.mse_path_, reference.mse_path_, rtol=RTOL)
    assert model.alpha_ == 2 * reference.alpha_


def test_overlapping_splits_are_summed_on_their_own(data):
    X, y = data
    cv = ShuffleSplit(n_splits=3, test_size=0.3, random_state=1)
    model = GDRegressorCV(penalty="elasticnet", l1_ratio=0.7, alphas=15, cv=cv).fit(X, y)
    reference = ElasticNetCV(l1_ratio=0.7, alphas=15, cv=cv, **TIGHT).fit(X, y)
    np.testing.assert_allclose(model.mse_path_, reference.mse_path_, rtol=RTOL)
    assert model.alpha_ == pytest.approx(2 * reference.alpha_, rel=1e-12)


def test_sample_weights_match_scikit_learn(data):
    X, y = data
    weight = np.random.default_rng(4).uniform(0.2, 3.0, size=len(X))
    model = GDRegressorCV(penalty="l1", alphas=20, random_state=5).fit(X, y, sample_weight=weight)
    reference = LassoCV(alphas=20, cv=split(len(X), 5, seed=5), **TIGHT).fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(model.alphas_, 2 * reference.alphas_, rtol=1e-12)
    np.testing.assert_allclose(model.mse_path_, reference.mse_path_, rtol=RTOL)


def test_ridge_matches_ridge_fold_by_fold_and_ridge_cv():
    # Ridge's alpha is per training set (alpha = 2a/W): equal training sizes let one grid serve every fold
    X, y = make_regression(n=300, d=6, noise=4.0, seed=8, offset=3.0)
    cv = KFold(5, shuffle=True, random_state=3)
    folds = list(cv.split(X))
    n_train = len(folds[0][0])
    ridge_alphas = np.geomspace(1e3, 1e-2, 12)
    model = GDRegressorCV(penalty="l2", alphas=2 * ridge_alphas / n_train, cv=cv).fit(X, y)
    expected = np.array([[np.mean((Ridge(alpha=a).fit(X[train], y[train]).predict(X[test]) - y[test]) ** 2)
                          for train, test in folds] for a in ridge_alphas])
    np.testing.assert_allclose(model.mse_path_, expected, rtol=1e-9)
    reference = RidgeCV(alphas=ridge_alphas, cv=folds, scoring="neg_mean_squared_error").fit(X, y)
    assert model.alpha_ == pytest.approx(2 * reference.alpha_ / n_train, rel=1e-12)
    assert model.cv_error_ == pytest.approx(-reference.best_score_, rel=1e-9)


def test_validation_error_is_the_error_of_the_path_on_the_fold(data):
    X, y = data
    model = GDRegressorCV(penalty="elasticnet", alphas=10, cv=3, random_state=0).fit(X, y)
    labels = fold_of(np.arange(len(X)), 3, seed=0)
    train, test = labels != 1, labels == 1
    stats = ArraySource(X[train], y[train, None])
    from gradfit.engines import accumulate

    path = solve_path(Quadratic.from_statistics(accumulate(stats), True), model.alphas_, 0.5)
    predictions = X[test] @ path.coefs[:, 0, :].T + path.intercepts[:, 0]
    direct = np.mean((predictions - y[test, None]) ** 2, axis=0)
    np.testing.assert_allclose(model.mse_path_[:, 1], direct, rtol=1e-10)
    np.testing.assert_allclose(validation_mse(accumulate(ArraySource(X[test], y[test, None])), path.coefs,
                                              path.intercepts), direct, rtol=1e-10)


def test_one_standard_error_rule(data):
    X, y = data
    best = GDRegressorCV(penalty="l1", alphas=30, random_state=1).fit(X, y)
    sparse = GDRegressorCV(penalty="l1", alphas=30, random_state=1, selection="1se").fit(X, y)
    mean = best.mse_path_.mean(axis=1)
    se = best.mse_path_.std(axis=1, ddof=1) / np.sqrt(5)
    i = int(np.argmin(mean))
    within = best.alphas_[mean <= mean[i] + se[i]]
    assert sparse.alpha_ == within.max() >= best.alpha_ == best.alphas_[i]
    assert sparse.cv_error_ <= best.cv_error_ + best.cv_std_error_


class CountingSource(ArraySource):
    """Arrays in small chunks that count every read of the data."""

    def rows_per_chunk(self):
        return 64

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads = 0

    def chunks(self):
        self.reads += 1
        yield from super().chunks()


class CountingFile(FileSource):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads = 0

    def chunks(self):
        self.reads += 1
        yield from super().chunks()


@pytest.mark.parametrize("penalty, folds, alphas", [
    ("l2", 3, 5), ("l1", 5, 50), ("elasticnet", 10, [0.1, 1.0]),
])
def test_the_data_are_read_once(data, penalty, folds, alphas):
    X, y = data
    source = CountingSource(X, y[:, None])
    assert source.n_samples > source.rows_per_chunk()  # several chunks, spread over threads
    model = GDRegressorCV(penalty=penalty, alphas=alphas, cv=folds, l1_ratio=[0.2, 0.8]).fit(source)
    assert source.reads == 1
    assert model.converged_ and model.engine_ == "statistics"


def test_a_parquet_file_gives_the_folds_and_errors_of_the_arrays(data, tmp_path):
    X, y = data
    path = tmp_path / "data.parquet"
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    frame.to_parquet(path, row_group_size=70)
    settings = dict(penalty="elasticnet", l1_ratio=[0.3, 0.9], alphas=25, cv=4, random_state=9)
    arrays = GDRegressorCV(**settings).fit(X, y)
    source = CountingFile(str(path), target="y", batch_rows=64)
    streamed = GDRegressorCV(**settings).fit(source)
    assert source.reads == 1
    np.testing.assert_allclose(streamed.mse_path_, arrays.mse_path_, rtol=1e-10)
    # the same grid point (the grid itself differs in the last bits: other chunks, other rounding)
    assert streamed.alpha_ == pytest.approx(arrays.alpha_, rel=1e-12) and streamed.l1_ratio_ == arrays.l1_ratio_
    np.testing.assert_allclose(streamed.coef_, arrays.coef_, rtol=1e-9)


def test_the_model_file_keeps_the_choice(data, tmp_path):
    X, y = data
    model = GDRegressorCV(penalty="l1", alphas=12).fit(X, y)
    model.save(tmp_path / "m.json")
    loaded = load(tmp_path / "m.json")
    assert loaded.alpha == model.alpha_ and loaded.penalty == "l1"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_what_it_refuses(data, tmp_path):
    X, y = data
    with pytest.raises(OptionError, match="cross-validates loss='squared_error' and loss='huber'"):
        GDRegressorCV(loss="absolute_error").fit(X, y)
    source = CountingSource(X, y[:, None])
    with pytest.raises(OptionError, match='optimizer="cg" cannot serve the L1 part'):
        GDRegressorCV(penalty="l1", optimizer="cg").fit(source)
    assert source.reads == 0  # refused before the data were read
    path = tmp_path / "d.parquet"
    pd.DataFrame({"a": X[:, 0], "y": y}).to_parquet(path)
    with pytest.raises(ValueError, match="needs data in memory"):
        GDRegressorCV(cv=KFold(3)).fit(str(path), "y")
    with pytest.raises(ValueError, match="folds of 4 samples"):
        GDRegressorCV(cv=5).fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="l1_ratio"):
        GDRegressorCV(l1_ratio=[0.5, 1.5]).fit(X, y)
    assert not hasattr(GDRegressorCV(), "partial_fit")


def test_several_outputs_share_alpha_and_average_their_errors():
    # each output is its own lasso (gradfit's penalty is averaged over outputs), one alpha for all
    X, y = make_regression(n=240, d=4, k=2, noise=3.0, seed=30)
    alphas = [2.0, 0.5, 0.1, 0.01]
    model = GDRegressorCV(penalty="l1", alphas=alphas, cv=4).fit(X, y)
    folds = split(len(X), 4)
    per_output = [LassoCV(alphas=[a / 2 for a in alphas], cv=folds, **TIGHT).fit(X, y[:, j]).mse_path_
                  for j in range(2)]
    np.testing.assert_allclose(model.mse_path_, np.mean(per_output, axis=0), rtol=RTOL)
    assert model.coef_.shape == (2, 4) and model.coef_path_.shape == (4, 2, 4)


def test_features_far_from_zero_keep_their_digits():
    # offsets 1e6 times the spread: each fold's training statistics come from merging the other folds'
    # centred moments; a subtraction total − fold of raw sums would leave ~4 digits here
    X, y = make_regression(n=300, d=4, noise=2.0, seed=41, offset=1e6, spread=np.ones(4))
    model = GDRegressorCV(penalty="elasticnet", l1_ratio=0.5, alphas=20, random_state=1).fit(X, y)
    reference = ElasticNetCV(l1_ratio=0.5, alphas=20, cv=split(len(X), 5, seed=1), **TIGHT).fit(X, y)
    np.testing.assert_allclose(model.mse_path_, reference.mse_path_, rtol=RTOL)


def test_the_l2_grid_is_centred_on_the_mean_eigenvalue(data):
    X, y = data
    model = GDRegressorCV(penalty="l2", alphas=7, eps=1e-2).fit(X, y)
    scale = 2 * np.trace(np.cov(X, rowvar=False, bias=True)) / X.shape[1]  # mean eigenvalue of 2G
    np.testing.assert_allclose(model.alphas_, np.geomspace(scale / 1e-2, scale * 1e-2, 7), rtol=1e-10)
