"""Huber's Newton method on a categorical column kept as level codes (:mod:`gradfit.robust.level_newton`).

``loss="huber"`` with ``optimizer="auto"`` runs Newton's method on the
level blocks: the inliers' level moments and a Schur-complement step, never a
dense one-hot block or a dense Hessian. Oracles: the same Newton method on
the dense treatment-coded design (the column as dummies), and Huber's optimum
on that design found independently: scipy.optimize's L-BFGS-B, then the
optimality condition of its quadratic piece solved by ``numpy.linalg.lstsq``
(once the inlier set is right, Huber's optimum is the least-squares solution
of ``Zᵢₙᵀ V (Zᵢₙθ − yᵢₙ) + ε Zₒᵤₜᵀ V sign(rₒᵤₜ) = 0``), the inlier set checked
unchanged. The ``many_levels`` fixture keeps a column of more than 1000 levels
as codes and refuses one of more than 1200 as dense dummies: the 1500-level
column here is beyond the dense limit, where ``"auto"`` ran plain gradient
descent before and stopped short of ``tol``.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg

from gradfit import GDRegressor
from gradfit.sources import FileSource, encoding

from .conftest import write_table
from .test_categorical_blocks import dense_design, make_table

LEVELS = 1500
EPSILON = 1.5


@pytest.fixture
def many_levels(monkeypatch):
    """Columns of more than 1000 levels kept as codes; a dense one may have at most 1200."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 1000)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 1200)


def three_rows_a_level(levels, seed=4):
    """``levels`` levels of three rows each (odd: each level's middle row can be an inlier, so the optimum
    is unique), two numeric features off centre, heavy-tailed noise: about 4% of the rows are outliers."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.repeat(np.arange(levels), 3))
    X = rng.normal(size=(codes.size, 2)) + 3.0
    y = X @ [1.5, -0.7] + rng.normal(size=levels)[codes] + 0.5 * rng.normal(size=codes.size)
    y += 0.3 * rng.standard_t(2, codes.size)
    frame = pd.DataFrame({"x0": X[:, 0], "g": [f"L{c:04d}" for c in codes], "x1": X[:, 1]})
    return frame, y


@pytest.fixture(scope="module")
def table():
    return three_rows_a_level(LEVELS)


@pytest.fixture(scope="module")
def weights(table):
    return np.random.default_rng(6).uniform(0.5, 2.0, len(table[1]))


def huber_optimum(design, y, weight, epsilon):
    """Huber's optimum ``[coef, (intercept)]`` on a dense design: L-BFGS-B, then its piece solved exactly.

    The design is held as a SciPy sparse matrix (the dummies are one-hot) so
    that the oracle stays fast; the piece's normal equations are solved by
    SciPy's sparse LU.
    """
    design = scipy.sparse.csr_matrix(design)
    v = np.ones(len(y)) if weight is None else weight
    W = v.sum()

    def huber(theta):  # gradfit's Huber: r² inside ε, 2ε|r| − ε² beyond; the weighted mean over rows
        r = design @ theta - y
        inside = np.abs(r) <= epsilon
        value = v @ np.where(inside, r * r, 2 * epsilon * np.abs(r) - epsilon**2) / W
        return value, design.T @ (v * np.where(inside, 2 * r, 2 * epsilon * np.sign(r))) / W

    theta = scipy.optimize.minimize(huber, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                                    options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 20000}).x
    for _ in range(10):
        # the quadratic piece of the inlier set at θ: Z_inᵀ V Z_in θ = Z_inᵀ V y_in − ε Z_outᵀ V sign(r_out)
        r = design @ theta - y
        inside = np.abs(r) <= epsilon
        inner = design[inside]
        normal = (inner.T @ scipy.sparse.diags(v[inside]) @ inner).tocsc()
        rhs = inner.T @ (v[inside] * y[inside]) - epsilon * design[~inside].T @ (v[~inside] * np.sign(r[~inside]))
        theta = scipy.sparse.linalg.spsolve(normal, rhs)
        if np.array_equal(np.abs(design @ theta - y) <= epsilon, inside):
            return theta
    raise AssertionError("the inlier set of the oracle did not settle")


def relative(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no intercept"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weights"])
def test_auto_huber_on_codes_converges_to_the_oracle_beyond_the_dense_limit(fit_intercept, weighted, table, weights,
                                                                            many_levels):
    frame, y = table
    weight = weights if weighted else None
    model = GDRegressor(loss="huber", epsilon=EPSILON, fit_intercept=fit_intercept, tol=1e-9).fit(
        frame, y, sample_weight=weight)
    # before: the column beyond MAX_LEVELS ran gd under "auto", which stopped short of tol ("not converged")
    assert model.converged_ and model.fit_report_["optimizer"] == "newton", model.fit_report_["message"]
    assert model.engine_ == "pass"  # passes that read the codes: no dense dummies
    certificate = model.fit_report_["certificate"]
    assert certificate["kind"] == "gradient_bound" and certificate["value"] <= 1e-9, certificate
    design = dense_design(frame).to_numpy()
    if fit_intercept:
        design = np.column_stack([design, np.ones(len(y))])
    optimum = huber_optimum(design, y, weight, EPSILON)
    coef = optimum[:-1] if fit_intercept else optimum
    assert relative(model.coef_, coef) < 1e-8
    if fit_intercept:
        assert abs(model.intercept_ - optimum[-1]) < 1e-8 * np.abs(optimum).max()


def test_newton_on_codes_equals_newton_on_the_dense_dummies(monkeypatch):
    # 400 levels (the dense Newton method forms a d × d Hessian a pass: 1500 levels take it 5-20 s)
    frame, y = three_rows_a_level(400, seed=8)
    weights = np.random.default_rng(9).uniform(0.5, 2.0, len(y))
    options = {"loss": "huber", "epsilon": EPSILON, "tol": 1e-9}
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 300)  # the column as codes
    on_codes = GDRegressor(**options).fit(frame, y, sample_weight=weights)
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 10**6)
    on_dummies = GDRegressor(**options).fit(frame, y, sample_weight=weights)
    for model in (on_codes, on_dummies):
        assert model.converged_ and model.fit_report_["optimizer"] == "newton"
    assert on_codes.n_iter_ == on_dummies.n_iter_  # the same iterations: the blocks change the solve, not the steps
    assert relative(on_codes.coef_, on_dummies.coef_) < 1e-8
    assert abs(on_codes.intercept_ - on_dummies.intercept_) < 1e-8 * np.abs(on_dummies.coef_).max()
    np.testing.assert_allclose(on_codes.final_cost_, on_dummies.final_cost_, rtol=1e-12)


def test_csv_file_fit_equals_in_memory(table, many_levels, tmp_path):
    frame, y = table
    path = write_table(frame.assign(y=y), tmp_path / "data.csv")
    source = FileSource(path, "y", batch_rows=1000)
    on_file = GDRegressor(loss="huber", tol=1e-9).fit(source)
    assert source.block_layout is not None and on_file.converged_
    in_memory = GDRegressor(loss="huber", tol=1e-9).fit(frame, y)
    np.testing.assert_allclose(on_file.coef_, in_memory.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(on_file.intercept_, in_memory.intercept_, rtol=1e-10, atol=1e-12)
    assert on_file.n_iter_ == in_memory.n_iter_


def test_no_dense_block_is_formed(table, many_levels):
    frame, y = table
    n, d = len(y), 2 + LEVELS - 1
    one_hot = n * d * 8  # the dense dummies of the column (54 MB); the dense Hessian is d² · 8 (18 MB)
    tracemalloc.start()
    try:
        model = GDRegressor(loss="huber", tol=1e-9).fit(frame, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model.converged_
    assert peak < 0.75 * min(one_hot, d * d * 8), (peak, one_hot)  # neither the one-hot nor the d × d Hessian


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no intercept"])
def test_a_level_without_weight_is_left_out_as_the_dense_pseudo_inverse_leaves_it(fit_intercept, table, many_levels):
    frame, y = table
    empty = (frame["g"] == "L0007").to_numpy()
    weight = np.where(empty, 0.0, 1.0)
    options = {"loss": "huber", "epsilon": EPSILON, "fit_intercept": fit_intercept, "tol": 1e-9}
    model = GDRegressor(**options).fit(frame, y, sample_weight=weight)
    assert model.converged_ and model.fit_report_["optimizer"] == "newton", model.fit_report_["message"]
    without = GDRegressor(**options).fit(frame[~empty], y[~empty])  # the level's rows left out: its dummy gone
    coef = dict(zip(model.feature_names_, model.coef_))
    assert relative(np.array([coef[name] for name in without.feature_names_]), without.coef_) < 1e-8
    assert abs(model.intercept_ - without.intercept_) < 1e-8 * np.abs(without.coef_).max()


def test_dask_dataframe_fit_equals_in_memory(many_levels, monkeypatch):
    """On a Dask dataframe the inliers' level moments are summed on the workers and merged there."""
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)  # a smaller table: 60 levels, beyond a dense limit of 50
    monkeypatch.setattr(encoding, "MAX_LEVELS", 50)
    frame, y = make_table(2000, 60, 2, seed=22)
    y = y + np.random.default_rng(1).standard_t(2, len(y))
    cluster = distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None,
                                       silence_logs=50)
    try:
        with distributed.Client(cluster) as client:
            on_dask = GDRegressor(loss="huber", tol=1e-9).fit(client.persist(dd.from_pandas(frame, npartitions=4)), y)
    finally:
        cluster.close()
    in_memory = GDRegressor(loss="huber", tol=1e-9).fit(frame, y)
    assert on_dask.converged_ and on_dask.fit_report_["optimizer"] == "newton"
    assert on_dask.n_iter_ == in_memory.n_iter_
    np.testing.assert_allclose(on_dask.coef_, in_memory.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(on_dask.intercept_, in_memory.intercept_, rtol=1e-10, atol=1e-12)


def test_a_feature_constant_within_every_level_still_converges(table, many_levels):
    """``x1`` a function of the level: in the span of the dummies, so the optimum (not its coefficients) is
    that of the fit without it; the certificate's projection solves on the range of the singular Gram."""
    frame, y = table
    frame = frame.assign(x1=frame["g"].str[1:].astype(float))
    model = GDRegressor(loss="huber", epsilon=EPSILON, tol=1e-9).fit(frame, y)
    assert model.converged_ and model.fit_report_["optimizer"] == "newton", model.fit_report_["message"]
    without = GDRegressor(loss="huber", epsilon=EPSILON, tol=1e-9).fit(frame.drop(columns="x1"), y)
    np.testing.assert_allclose(model.final_cost_, without.final_cost_, rtol=1e-9)
    np.testing.assert_allclose(model.predict(frame), without.predict(frame.drop(columns="x1")), rtol=0, atol=1e-6)


def test_newton_by_name_runs_the_auto_method_on_the_codes(table, weights, many_levels):
    """``optimizer="newton"`` by name is what ``"auto"`` runs (:func:`gradfit.robust.fit`): on the level blocks too,
    beyond the dense limit (before: a one-line refusal naming optimizer='newton')."""
    frame, y = table
    options = {"loss": "huber", "epsilon": EPSILON, "tol": 1e-10}
    by_name = GDRegressor(optimizer="newton", **options).fit(frame, y, sample_weight=weights)
    by_default = GDRegressor(**options).fit(frame, y, sample_weight=weights)
    assert by_name.converged_ and by_name.engine_ == "pass" and by_name.fit_report_["optimizer"] == "newton"
    assert by_name.n_iter_ == by_default.n_iter_
    assert relative(by_name.coef_, by_default.coef_) < 1e-12
    design = np.column_stack([dense_design(frame).to_numpy(), np.ones(len(y))])
    optimum = huber_optimum(design, y, weights, EPSILON)
    assert relative(by_name.coef_, optimum[:-1]) < 1e-8
    assert abs(by_name.intercept_ - optimum[-1]) < 1e-8 * np.abs(optimum).max()
