"""Penalties against scikit-learn's Ridge, Lasso and ElasticNet, at convergence.

The alpha mapping of :mod:`gradfit.penalties` is the thing under test:
``Lasso(alpha=a)`` and ``ElasticNet(alpha=a)`` ⇔ ``alpha=2a``, ``Ridge(alpha=a)``
⇔ ``alpha=2a/W``, for one output or several, with or without sample weights
and standardization.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import ElasticNet, Lasso, Ridge

from gradfit import ConvergenceWarning, GDRegressor
from gradfit.penalties import ElasticNet as Penalty

TOL = 1e-6  # the agreement the issue asks for, on coefficients and intercepts


def sparse_data(n=200, d=6, k=1, seed=0, offset=2.0):
    """Features of different spreads; two of the true coefficients are zero."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + offset
    coef = rng.normal(size=(d, k)) * 2
    coef[[1, 4]] = 0.0
    y = X @ coef + 1.0 + 0.5 * rng.normal(size=(n, k))
    return X, (y[:, 0] if k == 1 else y)


def fit(options, X, y, sample_weight=None, epochs=20000):
    model = GDRegressor(tol=1e-15, epochs=epochs, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, sample_weight=sample_weight)


def assert_agrees(model, reference):
    coef = np.atleast_2d(reference.coef_)
    np.testing.assert_allclose(np.atleast_2d(model.coef_), coef, rtol=TOL, atol=TOL * np.abs(coef).max())
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=TOL, atol=TOL)


# (name, scikit-learn estimator, gradfit's options given N rows and weight sum W)
CASES = [
    ("ridge", lambda: Ridge(alpha=3.0), lambda W: dict(penalty="l2", alpha=2 * 3.0 / W)),
    ("lasso", lambda: Lasso(alpha=0.3, tol=1e-14, max_iter=100000), lambda W: dict(penalty="l1", alpha=0.6)),
    ("elasticnet", lambda: ElasticNet(alpha=0.2, l1_ratio=0.4, tol=1e-14, max_iter=100000),
     lambda W: dict(penalty="elasticnet", alpha=0.4, l1_ratio=0.4)),
]
OPTIMIZERS = {"ridge": ["gd", "nesterov", "cg"], "lasso": ["gd", "momentum", "nesterov"],
              "elasticnet": ["gd", "nesterov"]}
TABLE = [(name, sk, ours, opt) for name, sk, ours in CASES for opt in OPTIMIZERS[name]]


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("name,sklearn_estimator,options,optimizer", TABLE)
def test_agrees_with_scikit_learn(name, sklearn_estimator, options, optimizer, k):
    X, y = sparse_data(k=k, seed=1)
    reference = sklearn_estimator().fit(X, y)
    model = fit(dict(optimizer=optimizer, **options(len(X))), X, y)
    assert_agrees(model, reference)


@pytest.mark.parametrize("name,sklearn_estimator,options", CASES)
def test_agrees_with_sample_weights(name, sklearn_estimator, options):
    X, y = sparse_data(seed=2)
    weight = np.random.default_rng(2).uniform(0.1, 4.0, size=len(y))
    reference = sklearn_estimator().fit(X, y, sample_weight=weight)
    model = fit(dict(optimizer="nesterov", **options(weight.sum())), X, y, sample_weight=weight)
    assert_agrees(model, reference)


@pytest.mark.parametrize("name,sklearn_estimator,options", CASES)
@pytest.mark.parametrize("standardize", [True, False])
def test_standardization_changes_the_path_not_the_optimum(name, sklearn_estimator, options, standardize):
    # The penalty is on the coefficients in the data's units either way.
    X, y = sparse_data(seed=3, offset=0.5)
    reference = sklearn_estimator().fit(X, y)
    model = fit(dict(optimizer="nesterov", standardize=standardize, **options(len(X))), X, y, epochs=60000)
    assert_agrees(model, reference)


def ratio(penalty, l1_ratio):
    """``l1_ratio`` where it means something: only elastic net takes one (another penalty refuses it)."""
    return dict(l1_ratio=l1_ratio) if penalty == "elasticnet" else {}


@pytest.mark.parametrize("penalty", ["l1", "elasticnet"])
def test_l1_gives_exact_zeros_where_scikit_learn_does(penalty):
    X, y = sparse_data(seed=4)
    reference = (Lasso(alpha=0.3, tol=1e-14, max_iter=100000) if penalty == "l1"
                 else ElasticNet(alpha=0.3, l1_ratio=0.7, tol=1e-14, max_iter=100000)).fit(X, y)
    assert np.sum(reference.coef_ == 0) >= 1
    model = fit(dict(penalty=penalty, alpha=0.6, **ratio(penalty, 0.7)), X, y)
    np.testing.assert_array_equal(model.coef_ == 0.0, reference.coef_ == 0.0)
    big = fit(dict(penalty=penalty, alpha=1e3, **ratio(penalty, 0.7)), X, y, epochs=2000)
    assert np.all(big.coef_ == 0.0)


@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet"])
@pytest.mark.parametrize("fit_options", [dict(), dict(standardize=False)])
def test_the_intercept_is_never_penalized(penalty, fit_options):
    # Unpenalized, the intercept's optimality condition is ∂F/∂b = 0: it is the
    # weighted mean of y − X·coef whatever alpha is (a penalized one would be
    # pulled towards zero, far from y's mean of ~100). The penalty is strong
    # enough to shrink the coefficients to a fraction of their size.
    X, y = sparse_data(seed=5)
    y = y + 100.0
    weight = np.random.default_rng(5).uniform(0.5, 2.0, size=len(y))
    options = dict(penalty=penalty, alpha=10.0, **ratio(penalty, 0.5), optimizer="nesterov", **fit_options)
    model = fit(options, X, y, sample_weight=weight, epochs=60000)
    free = fit(dict(optimizer="cg", **fit_options), X, y, sample_weight=weight)
    assert np.abs(model.coef_).sum() < 0.6 * np.abs(free.coef_).sum()
    expected = np.average(y - X @ model.coef_, weights=weight)
    assert model.intercept_ == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet"])
def test_each_output_is_its_own_problem(penalty):
    # The penalty is averaged over outputs like the cost, so fitting k outputs
    # together is fitting each alone, with the same alpha.
    X, Y = sparse_data(seed=6, k=3)
    options = dict(penalty=penalty, alpha=0.3, **ratio(penalty, 0.5), optimizer="nesterov")
    together = fit(options, X, Y)
    for j in range(3):
        alone = fit(options, X, Y[:, j])
        np.testing.assert_allclose(together.coef_[j], alone.coef_, rtol=1e-7, atol=1e-9)
        assert together.intercept_[j] == pytest.approx(alone.intercept_, rel=1e-7, abs=1e-9)


def test_no_intercept_agrees_with_scikit_learn():
    X, y = sparse_data(seed=7)
    for reference, options in (
        (Ridge(alpha=3.0, fit_intercept=False), dict(penalty="l2", alpha=6.0 / len(y))),
        (Lasso(alpha=0.3, fit_intercept=False, tol=1e-14, max_iter=100000), dict(penalty="l1", alpha=0.6)),
    ):
        reference.fit(X, y)
        model = fit(dict(fit_intercept=False, optimizer="nesterov", **options), X, y)
        assert_agrees(model, reference)


# -- the penalty's pieces --------------------------------------------------------


def test_penalty_value_gradient_and_prox():
    penalty = Penalty("elasticnet", alpha=2.0, l1_ratio=0.25)
    scale = np.array([1.0, 2.0, 4.0])
    weights = np.array([[1.0, -3.0], [0.5, 2.0], [-0.05, 0.0]])  # working units, 2 outputs
    coef = weights / scale[:, None]
    expected = (0.5 * np.abs(coef).sum() + 0.5 * 1.5 * (coef**2).sum()) / 2
    assert penalty.value(weights, scale) == pytest.approx(expected)
    # gradient of the L2 part, by central differences
    h, numeric = 1e-6, np.zeros_like(weights)
    l2 = Penalty("l2", alpha=1.5, l1_ratio=0.0)
    for index in np.ndindex(weights.shape):
        up, down = weights.copy(), weights.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (l2.value(up, scale) - l2.value(down, scale)) / (2 * h)
    np.testing.assert_allclose(penalty.smooth_gradient(weights, scale), numeric, rtol=1e-7, atol=1e-9)
    # prox: soft threshold step·l1/(k·scale) per feature; what crosses zero is exactly zero
    out = penalty.prox(weights, 1.0, scale)
    threshold = 0.5 / (2 * scale)[:, None]
    np.testing.assert_allclose(out, np.sign(weights) * np.maximum(np.abs(weights) - threshold, 0))
    assert out[2, 0] == 0.0 and out[2, 1] == 0.0
