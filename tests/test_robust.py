"""Robust losses (gradfit.robust): Newton's fits and their certificates against independent oracles.

Oracles: scipy's ``linprog(method="highs")`` on the whole linear program for
the absolute error; for Huber, L-BFGS-B (scipy) at tight tolerances on the
objective written out here, and scikit-learn's ``HuberRegressor`` at its own
scale (``epsilon = 1.35·scale_``, :class:`gradfit.losses.Huber`). Data: real
sets shipped inside statsmodels and scikit-learn (no network), raw units,
standardized condition numbers up to ~1e5, and correlated synthetic data.

Every case checks that the certificate's value bounds the relative gap to
the oracle's objective, and that ``converged_`` implies the oracle within
``tol``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.sparse
import statsmodels.api as sm
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import HuberRegressor

from gradfit import GDRegressor
from gradfit.errors import OptionError
from gradfit.sources import FileSource

from .conftest import write_table

TOL = 1e-6


def real(name):
    """A statsmodels data set's numeric exog and first endog column, raw units."""
    data = getattr(sm.datasets, name).load_pandas()
    X = data.exog.select_dtypes("number").to_numpy(float)
    y = np.asarray(data.endog, dtype=float)
    return X, y.reshape(len(y), -1)[:, 0]


def correlated(n, d, rho, seed, scale=None):
    rng = np.random.default_rng(seed)
    X = np.sqrt(rho) * rng.standard_normal((n, 1)) + np.sqrt(1 - rho) * rng.standard_normal((n, d))
    if scale is not None:
        X = X * scale
    y = X @ rng.standard_normal(d) + rng.standard_t(2, n)
    return X, y


DATA = {
    "diabetes": lambda: load_diabetes(return_X_y=True, scaled=False),
    "stackloss": lambda: real("stackloss"),
    "longley": lambda: real("longley"),
    "scotland": lambda: real("scotland"),
    "star98": lambda: real("star98"),
    "copper": lambda: real("copper"),
    "ccard": lambda: real("ccard"),
    "cpunish": lambda: real("cpunish"),
    "correlated": lambda: correlated(400, 8, 0.99, 0, scale=10.0 ** np.arange(-3, 5)),
}


# -- oracles ---------------------------------------------------------------------------


def design(X, fit_intercept):
    return np.c_[X, np.ones(len(X))] if fit_intercept else X


def lad_oracle(X, y, weight=None, fit_intercept=True):
    """The whole LP by HiGHS: ``min (1/W) Σ v|Zθ − y|``; returns (objective, θ)."""
    Z = design(X, fit_intercept)
    n, p = Z.shape
    v = np.ones(n) if weight is None else weight
    identity = scipy.sparse.identity(n, format="csr")
    A = scipy.sparse.hstack([scipy.sparse.csr_matrix(Z), -identity, identity], format="csr")
    cost = np.r_[np.zeros(p), v, v] / v.sum()
    result = scipy.optimize.linprog(cost, A_eq=A, b_eq=y, bounds=[(None, None)] * p + [(0, None)] * (2 * n),
                                    method="highs")
    assert result.status == 0
    theta = result.x[:p]
    # the objective at HiGHS's θ (its own value can sit below: equalities met to a tolerance)
    return float(np.abs(Z @ theta - y) @ v / v.sum()), theta


def huber_value(Z, y, theta, epsilon, weight=None, l2=0.0, l1=0.0, d=None):
    r = Z @ theta - y
    a = np.abs(r)
    v = np.ones(len(y)) if weight is None else weight
    coef = theta[:d]
    value = np.where(a <= epsilon, r * r, 2 * epsilon * a - epsilon * epsilon) @ v / v.sum()
    return value + l1 * np.abs(coef).sum() + 0.5 * l2 * coef @ coef


def huber_oracle(X, y, epsilon, weight=None, fit_intercept=True, l2=0.0, l1=0.0):
    """L-BFGS-B at tight tolerances in standardized coordinates (L1 by splitting ``coef = a − b``, a, b ≥ 0).

    Returns the objective at the oracle's point (evaluated in raw units by
    :func:`huber_value`) and that point ``(coef, intercept)``.
    """
    n, d = X.shape
    v = np.ones(n) if weight is None else weight
    W = v.sum()
    mean = (v @ X) / W if fit_intercept else np.zeros(d)
    spread = np.sqrt(v @ (X - mean) ** 2 / W)
    spread = np.where(spread > 0, spread, 1.0)
    Zs = design((X - mean) / spread, fit_intercept)
    p = Zs.shape[1]

    def standardized(x):
        theta = x[:p].copy()
        if l1 > 0:
            theta[:d] = x[:d] - x[p:]
        return theta

    def raw(theta):
        coef = theta[:d] / spread
        return np.r_[coef, theta[d] - mean @ coef] if fit_intercept else coef

    def f(x):
        theta = standardized(x)
        r = Zs @ theta - y
        a = np.abs(r)
        coef = theta[:d] / spread
        value = np.where(a <= epsilon, r * r, 2 * epsilon * a - epsilon * epsilon) @ v / W + 0.5 * l2 * coef @ coef
        g = Zs.T @ (v * 2 * np.clip(r, -epsilon, epsilon)) / W
        g[:d] += l2 * coef / spread
        if l1 > 0:  # the smooth split form: l1·Σ(a + b)/spread, equal to l1‖coef‖₁ where a·b = 0
            value += l1 * np.sum((x[:d] + x[p:]) / spread)
            return value, np.r_[g[:d] + l1 / spread, g[d:], -g[:d] + l1 / spread]
        return value, g

    start = np.linalg.lstsq(Zs, y, rcond=None)[0]
    if l1 > 0:
        x0 = np.r_[np.maximum(start[:d], 0), start[d:], np.maximum(-start[:d], 0)]
        bounds = [(0, None)] * d + [(None, None)] * (p - d) + [(0, None)] * d
    else:
        x0, bounds = start, None
    for _ in range(2):  # a restart from the last point squeezes out L-BFGS's last digits
        x0 = scipy.optimize.minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                     options=dict(ftol=0, gtol=1e-14, maxiter=20000, maxcor=30)).x
    theta = raw(standardized(x0))
    return huber_value(design(X, fit_intercept), y, theta, epsilon, weight, l2, l1, d), theta


def check(model, oracle_value, cost, tol=TOL):
    """The certificate bounds the gap to the oracle, and converged_ means within tol of it."""
    certificate = model.fit_report_["certificate"]
    gap = (cost - oracle_value) / cost if cost > 0 else 0.0
    # Both costs are evaluated from raw-unit coefficients: on Longley (intercept −4e6,
    # residuals ~150) that rounding alone is ~3e-12 of the cost.
    rounding = 1e-10
    assert certificate["value"] is not None
    assert gap <= certificate["value"] + rounding, (gap, certificate)
    if model.converged_:
        assert gap <= tol + rounding, (gap, certificate)
    return certificate


# -- the absolute error ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATA))
def test_absolute_error_newton_reaches_the_lp_optimum(name):
    X, y = DATA[name]()
    optimum, theta = lad_oracle(X, y)
    model = GDRegressor(loss="absolute_error", optimizer="newton").fit(X, y)
    cost = np.mean(np.abs(model.predict(X) - y))
    certificate = check(model, optimum, cost)
    assert certificate["kind"] == "lp_duality_gap"
    assert model.converged_ and model.optimizer_ == "newton"
    assert cost <= optimum * (1 + 1e-9) + 1e-12
    np.testing.assert_allclose(model.final_cost_, cost, rtol=1e-9)


@pytest.mark.parametrize("fit_intercept,standardize,weighted", [(False, True, False), (True, False, True)])
def test_absolute_error_newton_without_intercept_unstandardized_and_weighted(fit_intercept, standardize, weighted):
    X, y = DATA["stackloss"]()
    weight = np.random.default_rng(1).integers(0, 4, len(y)).astype(float) if weighted else None
    optimum, _ = lad_oracle(X, y, weight, fit_intercept)
    model = GDRegressor(loss="absolute_error", optimizer="newton", fit_intercept=fit_intercept,
                        standardize=standardize).fit(X, y, sample_weight=weight)
    v = np.ones(len(y)) if weight is None else weight
    cost = np.abs(model.predict(X) - y) @ v / v.sum()
    check(model, optimum, cost)
    assert model.converged_


def test_absolute_error_with_many_ties_still_certifies():
    # affairs: two thirds of the targets are 0, the features discrete: thousands of rows on the fit
    X, y = real("fair")
    X, y = X[:1500], y[:1500]
    optimum, _ = lad_oracle(X, y)
    model = GDRegressor(loss="absolute_error", optimizer="newton").fit(X, y)
    check(model, optimum, np.mean(np.abs(model.predict(X) - y)))
    assert model.converged_


@pytest.mark.parametrize("optimizer", ["gd", "nesterov"])
def test_first_order_absolute_error_returns_its_best_iterate_and_an_honest_bound(optimizer):
    X, y = DATA["diabetes"]()
    optimum, _ = lad_oracle(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GDRegressor(loss="absolute_error", optimizer=optimizer, epochs=300, schedule="constant").fit(X, y)
    cost = np.mean(np.abs(model.predict(X) - y))
    np.testing.assert_allclose(model.final_cost_, cost, rtol=1e-9)
    assert cost <= min(model.loss_curve_) * (1 + 1e-12)  # never worse than an iterate it passed
    certificate = check(model, optimum, cost)
    assert model.converged_ == certificate["converged"]


# -- Huber ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATA))
def test_huber_newton_reaches_the_oracle(name):
    X, y = DATA[name]()
    epsilon = 0.5 * np.std(y)  # a threshold inside the residuals' range, whatever the target's units
    optimum, theta = huber_oracle(X, y, epsilon)
    model = GDRegressor(loss="huber", epsilon=epsilon, optimizer="newton").fit(X, y)
    cost = huber_value(design(X, True), y, np.r_[model.coef_, model.intercept_], epsilon)
    certificate = check(model, optimum, cost)
    assert certificate["kind"] == "gradient_bound"
    assert model.converged_
    np.testing.assert_allclose(model.final_cost_, cost, rtol=1e-9)


def test_huber_newton_with_the_default_epsilon_on_raw_units():
    # y in the hundreds, epsilon = 1.35: nearly every row an outlier, the Hessian of low rank
    X, y = DATA["diabetes"]()
    optimum, _ = huber_oracle(X, y, 1.35)
    model = GDRegressor(loss="huber", optimizer="newton").fit(X, y)
    check(model, optimum, huber_value(design(X, True), y, np.r_[model.coef_, model.intercept_], 1.35))
    assert model.converged_


def test_huber_newton_is_huber_regressor_at_its_scale():
    X, y = correlated(500, 6, 0.9, 3)
    reference = HuberRegressor(epsilon=1.35, alpha=0.0, tol=1e-12, max_iter=10_000).fit(X, y)
    epsilon = 1.35 * reference.scale_
    model = GDRegressor(loss="huber", epsilon=epsilon, optimizer="newton").fit(X, y)
    assert model.converged_
    # HuberRegressor's L-BFGS (over the scale too) stops ~1e-4 short: gradfit's objective is lower
    Z = design(X, True)
    ours = huber_value(Z, y, np.r_[model.coef_, model.intercept_], epsilon)
    theirs = huber_value(Z, y, np.r_[reference.coef_, reference.intercept_], epsilon)
    assert ours <= theirs * (1 + 1e-12)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-2, atol=1e-3)
    optimum, _ = huber_oracle(X, y, epsilon)
    check(model, optimum, ours)


@pytest.mark.parametrize("alpha", [1e-3, 1.0])
def test_huber_newton_with_l2(alpha):
    X, y = DATA["longley"]()
    epsilon = 0.5 * np.std(y)
    optimum, _ = huber_oracle(X, y, epsilon, l2=alpha)
    model = GDRegressor(loss="huber", epsilon=epsilon, penalty="l2", alpha=alpha, optimizer="newton").fit(X, y)
    cost = huber_value(design(X, True), y, np.r_[model.coef_, model.intercept_], epsilon, l2=alpha, d=X.shape[1])
    check(model, optimum, cost)
    assert model.converged_


def test_huber_newton_weighted_without_intercept_unstandardized():
    X, y = DATA["scotland"]()
    weight = np.random.default_rng(2).uniform(0, 3, len(y))
    epsilon = 0.3 * np.std(y)
    optimum, _ = huber_oracle(X, y, epsilon, weight, fit_intercept=False)
    model = GDRegressor(loss="huber", epsilon=epsilon, optimizer="newton", fit_intercept=False,
                        standardize=False).fit(X, y, sample_weight=weight)
    check(model, optimum, huber_value(X, y, model.coef_, epsilon, weight))
    assert model.converged_


@pytest.mark.parametrize("penalty,alpha,l1_ratio", [(None, 1e-4, 0.15), ("elasticnet", 0.5, 0.5), ("l1", 0.2, 1.0)])
def test_huber_certificate_of_first_order_fits_bounds_the_gap(penalty, alpha, l1_ratio):
    X, y = DATA["stackloss"]()
    epsilon = 2.0
    l1 = alpha * l1_ratio if penalty else 0.0
    l2 = alpha * (1 - l1_ratio) if penalty else 0.0
    optimum, _ = huber_oracle(X, y, epsilon, l2=l2, l1=l1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mix = {"l1_ratio": l1_ratio} if penalty == "elasticnet" else {}  # l1_ratio means nothing elsewhere
        model = GDRegressor(loss="huber", epsilon=epsilon, optimizer="nesterov", penalty=penalty, alpha=alpha,
                            epochs=3000, **mix).fit(X, y)
    cost = huber_value(design(X, True), y, np.r_[model.coef_, model.intercept_], epsilon, l2=l2, l1=l1, d=X.shape[1])
    certificate = check(model, optimum, cost)
    assert certificate["value"] < 1e-2  # a bound that means something near the optimum, not only a valid one


def test_multi_output():
    X, y = DATA["scotland"]()
    Y = np.c_[y, np.log(y)]
    model = GDRegressor(loss="absolute_error", optimizer="newton").fit(X, Y)
    assert model.converged_
    for j in range(2):
        optimum, _ = lad_oracle(X, Y[:, j])
        np.testing.assert_allclose(np.mean(np.abs(model.predict(X)[:, j] - Y[:, j])), optimum, rtol=1e-9)
    epsilon = 0.5
    huber = GDRegressor(loss="huber", epsilon=epsilon, optimizer="newton").fit(X, Y)
    assert huber.converged_
    for j in range(2):
        optimum, _ = huber_oracle(X, Y[:, j], epsilon)
        cost = huber_value(design(X, True), Y[:, j], np.r_[huber.coef_[j], huber.intercept_[j]], epsilon)
        assert (cost - optimum) / cost <= TOL


# -- over files: the solver reads chunks, never the whole data ------------------------------


@pytest.mark.parametrize("name", ["data.csv", "data.parquet", "folder"])
def test_newton_over_a_streamed_file(tmp_path, name):
    X, y = correlated(3000, 5, 0.9, 7)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(5)]).assign(y=y)
    path = write_table(frame, tmp_path / name)
    source = FileSource(path, target="y", batch_rows=512)  # several chunks
    lad = GDRegressor(loss="absolute_error", optimizer="newton").fit(source)
    optimum, _ = lad_oracle(X, y)
    check(lad, optimum, np.mean(np.abs(lad.predict(X) - y)))
    assert lad.converged_
    huber = GDRegressor(loss="huber", optimizer="newton").fit(FileSource(path, target="y", batch_rows=512))
    in_memory = GDRegressor(loss="huber", optimizer="newton").fit(X, y)
    assert huber.converged_
    np.testing.assert_allclose(huber.coef_, in_memory.coef_, rtol=1e-7, atol=1e-9)


# -- what newton refuses ---------------------------------------------------------------------


@pytest.mark.parametrize("settings,words", [
    (dict(loss="squared_error"), 'optimizer="cg"'),
    (dict(loss="huber", penalty="l1"), "L1 part"),
    (dict(loss="absolute_error", penalty="l2"), "unpenalized"),
    (dict(loss="huber", batch_size=8), "full batches"),
    (dict(loss="huber", learning_rate=0.1), "line search"),
    (dict(loss="huber", schedule="invscaling"), "schedule"),
])
def test_newton_refuses_what_it_cannot_serve(settings, words):
    X, y = DATA["stackloss"]()
    with pytest.raises(OptionError, match=words):
        GDRegressor(optimizer="newton", **settings).fit(X, y)
