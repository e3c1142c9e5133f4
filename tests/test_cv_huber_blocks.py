"""GDRegressorCV(loss="huber") on a categorical column kept as level codes: no dense block, any penalty.

Each problem's (fold's, and the all-rows') Newton step is solved by its
training inliers' level blocks (:mod:`gradfit.robust.huber_cv`,
:class:`gradfit.robust.level_newton.LevelHessian`; with an L1 part by
coordinate descent on the blocks, :mod:`gradfit.robust.level_prox`) and every
pass reads the codes (:mod:`gradfit.robust.folded_sums`). Oracles:

* the same cross-validation on the dense treatment-coded dummies (the column
  forced dense by raising ``BLOCK_LEVELS``), at 120 levels: the dense method
  forms a ``p × p`` Hessian per problem a pass, which at 1300 levels takes it
  minutes (the codes: under a second);
* at 1300 levels (beyond a dense limit lowered to 1200), Huber's ridge optimum
  of one fold's training rows at one alpha found independently on the
  one-hot design (a SciPy sparse matrix): scipy.optimize's L-BFGS-B, then its
  quadratic piece solved exactly (once the inlier set is right, the optimum
  solves ``(2/W) Z_inᵀV Z_in θ + α D θ = (2/W) Z_inᵀV y_in − (2ε/W) Z_outᵀV sign(r_out)``,
  ``D`` the identity on the coefficients, zero on the intercept), the inlier
  set checked unchanged; the fold's held-out mean Huber loss at that optimum
  is ``mse_path_``'s entry, and the all-rows optimum the path's coefficients.
  With an elastic net, L-BFGS-B on the split coefficients ``coef = a − b``
  (``a, b ≥ 0``), then the same exact solve on the active set with its signs
  (the L1 part's ``αρ·sign``), its optimality (``|∂_j| ≤ αρ`` off the active
  set) checked.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg
from sklearn.model_selection import KFold

from gradfit import GDRegressorCV, load
from gradfit.cli import main
from gradfit.sources import FileSource, encoding

from .test_cv_blocks import one_hot

EPSILON = 1.35
LEVELS = 1300


def outlier_table(n_levels, rows_a_level=3, seed=0):
    """Three numeric features off centre and a text column ``g`` of ``n_levels`` levels (each present); the
    target has level effects, Gaussian noise and ~10% heavy-tailed outliers."""
    rng = np.random.default_rng(seed)
    n = rows_a_level * n_levels
    codes = rng.permutation(np.resize(np.arange(n_levels), n))
    X = rng.normal(size=(n, 3)) * [1.0, 3.0, 0.5] + [0.5, -0.2, 1.0]
    y = X @ [1.0, -0.5, 2.0] + rng.normal(size=n_levels)[codes] + rng.normal(size=n)
    y += 3.0 * rng.standard_t(2, n) * (rng.random(n) < 0.1)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    frame["g"] = [f"L{c:05d}" for c in codes]
    return frame, y


@pytest.fixture(scope="module")
def table():
    return outlier_table(LEVELS)


@pytest.fixture
def many_levels(monkeypatch):
    """Columns of more than 1000 levels kept as codes; a dense one may have at most 1200 (the 1300 here: codes)."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 1000)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 1200)


def huber(r, epsilon=EPSILON):
    a = np.abs(r)
    return np.where(a <= epsilon, r * r, 2.0 * epsilon * a - epsilon * epsilon)


def ridge_huber_optimum(design, y, v, alpha, epsilon=EPSILON):
    """``argmin (1/W) Σ v h(Zθ − y) + (α/2)‖coef‖²`` on ``design`` = [features, dummies, 1] (sparse).

    L-BFGS-B, then the optimality condition of its quadratic piece solved by
    SciPy's sparse LU until the inlier set no longer changes.
    """
    design = scipy.sparse.csr_matrix(design)
    W = v.sum()
    penalized = np.ones(design.shape[1])
    penalized[-1] = 0.0  # the intercept

    def cost(theta):
        r = design @ theta - y
        value = v @ huber(r, epsilon) / W + 0.5 * alpha * float(penalized @ (theta * theta))
        gradient = design.T @ (v * 2.0 * np.clip(r, -epsilon, epsilon)) / W + alpha * penalized * theta
        return value, gradient

    theta = scipy.optimize.minimize(cost, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                                    options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 20000}).x
    for _ in range(10):
        r = design @ theta - y
        inside = np.abs(r) <= epsilon
        inner = design[inside]
        normal = (2.0 / W) * (inner.T @ scipy.sparse.diags(v[inside]) @ inner) + alpha * scipy.sparse.diags(penalized)
        rhs = (2.0 / W) * (inner.T @ (v[inside] * y[inside])
                           - epsilon * design[~inside].T @ (v[~inside] * np.sign(r[~inside])))
        theta = scipy.sparse.linalg.spsolve(normal.tocsc(), rhs)
        if np.array_equal(np.abs(design @ theta - y) <= epsilon, inside):
            return theta
    raise AssertionError("the inlier set of the oracle did not settle")


def elastic_net_huber_optimum(design, y, v, alpha, l1_ratio, epsilon=EPSILON):
    """``argmin (1/W) Σ v h(Zθ − y) + α(ρ‖coef‖₁ + (1 − ρ)/2 ‖coef‖²)``, the intercept last and unpenalized."""
    design = scipy.sparse.csr_matrix(design)
    W, p = v.sum(), design.shape[1]
    d = p - 1
    l1, l2 = alpha * l1_ratio, alpha * (1.0 - l1_ratio)

    def split(x):
        return np.append(x[:d] - x[d:2 * d], x[-1])

    def cost(x):
        theta = split(x)
        r = design @ theta - y
        g = design.T @ (v * 2.0 * np.clip(r, -epsilon, epsilon)) / W
        g[:d] += l2 * theta[:d]
        value = v @ huber(r, epsilon) / W + 0.5 * l2 * theta[:d] @ theta[:d] + l1 * np.sum(x[:2 * d])
        return value, np.concatenate([g[:d] + l1, -g[:d] + l1, g[d:]])

    bounds = [(0, None)] * (2 * d) + [(None, None)]
    x = scipy.optimize.minimize(cost, np.zeros(2 * d + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 50000, "maxcor": 30}).x
    theta = split(x)
    for _ in range(10):  # the piece of the inlier set, active set and signs at θ, solved exactly
        r = design @ theta - y
        inside = np.abs(r) <= epsilon
        active = np.append(np.abs(theta[:d]) > 1e-9 * np.abs(theta[:d]).max(), True)
        sign = np.append(np.sign(theta[:d]), 0.0)[active]
        Z = design[:, active]
        inner = Z[inside]
        ridge = np.append(np.full(active[:d].sum(), l2), 0.0)
        normal = (2.0 / W) * (inner.T @ scipy.sparse.diags(v[inside]) @ inner) + scipy.sparse.diags(ridge)
        rhs = (2.0 / W) * (inner.T @ (v[inside] * y[inside])
                           - epsilon * Z[~inside].T @ (v[~inside] * np.sign(r[~inside]))) - l1 * sign
        new = np.zeros(p)
        new[active] = scipy.sparse.linalg.spsolve(normal.tocsc(), rhs)
        r_new = design @ new - y
        g = design.T @ (v * 2.0 * np.clip(r_new, -epsilon, epsilon)) / W
        settled = (np.array_equal(np.abs(r_new) <= epsilon, inside)
                   and np.array_equal(np.sign(new[active][:-1]), sign[:-1])
                   and np.all(np.abs(g[:d][~active[:d]]) <= l1 * (1 + 1e-9)))
        theta = new
        if settled:
            return theta
    raise AssertionError("the oracle's inlier and active sets did not settle")


def relative(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("fit_intercept, weighted", [(True, False), (False, True)],
                         ids=["intercept", "no intercept, weights"])
def test_codes_equal_the_dense_dummies_cross_validation(fit_intercept, weighted, monkeypatch):
    frame, y = outlier_table(120, rows_a_level=5, seed=1)
    weight = np.random.default_rng(2).uniform(0.5, 2.0, len(y)) if weighted else None
    options = {"loss": "huber", "epsilon": EPSILON, "penalty": "l2", "alphas": 3, "cv": 3,
               "fit_intercept": fit_intercept}
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 100)  # the column as codes
    on_codes = GDRegressorCV(**options).fit(frame, y, sample_weight=weight)
    assert on_codes.engine_ == "pass" and on_codes.converged_
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 10**6)  # the column as dense dummies
    on_dummies = GDRegressorCV(**options).fit(frame, y, sample_weight=weight)
    np.testing.assert_allclose(on_codes.alphas_, on_dummies.alphas_, rtol=1e-12)
    np.testing.assert_allclose(on_codes.mse_path_, on_dummies.mse_path_, rtol=1e-6)
    assert on_codes.alpha_ == pytest.approx(on_dummies.alpha_, rel=1e-12)
    assert relative(on_codes.coef_path_, on_dummies.coef_path_) < 1e-6
    assert relative(on_codes.coef_, on_dummies.coef_) < 1e-6
    assert on_codes.intercept_ == pytest.approx(on_dummies.intercept_, rel=1e-6, abs=1e-9)
    assert np.nanmax(on_codes.dual_gap_path_) <= 1e-11  # every point certified (PATH_TOL)


def test_a_folds_optimum_is_the_independent_oracles_beyond_the_dense_limit(table, many_levels):
    frame, y = table
    splits = list(KFold(3, shuffle=True, random_state=0).split(frame))
    model = GDRegressorCV(loss="huber", epsilon=EPSILON, penalty="l2", alphas=4, cv=splits).fit(frame, y)
    assert model.engine_ == "pass" and model.converged_ and model.coef_.shape == (3 + LEVELS - 1,)
    assert np.nanmax(model.dual_gap_path_) <= 1e-11
    design = scipy.sparse.hstack([one_hot(frame), np.ones((len(y), 1))]).tocsr()
    v = np.ones(len(y))
    a = 2  # an alpha inside the grid (4 alphas over six decades)
    alpha = float(model.alphas_[a])
    train, test = splits[1]
    theta = ridge_huber_optimum(design[train], y[train], v[train], alpha)
    held_out = huber(design[test] @ theta - y[test]).mean()
    assert model.mse_path_[a, 1] == pytest.approx(held_out, rel=1e-7)
    everything = ridge_huber_optimum(design, y, v, alpha)  # the all-rows problem, solved in the same passes
    assert relative(model.coef_path_[a], everything[:-1]) < 1e-7


def test_elastic_net_codes_equal_the_dense_dummies_cross_validation(monkeypatch):
    frame, y = outlier_table(120, rows_a_level=5, seed=1)
    weight = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    options = {"loss": "huber", "epsilon": EPSILON, "penalty": "elasticnet", "l1_ratio": [0.3, 0.8], "alphas": 4,
               "eps": 1e-2, "cv": 3}
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 100)  # the column as codes
    on_codes = GDRegressorCV(**options).fit(frame, y, sample_weight=weight)
    assert on_codes.engine_ == "pass" and on_codes.converged_
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 10**6)  # the column as dense dummies
    on_dummies = GDRegressorCV(**options).fit(frame, y, sample_weight=weight)
    np.testing.assert_allclose(on_codes.alphas_, on_dummies.alphas_, rtol=1e-12)  # from the intercept-only fits
    np.testing.assert_allclose(on_codes.mse_path_, on_dummies.mse_path_, rtol=1e-6)
    assert (on_codes.alpha_, on_codes.l1_ratio_) == (pytest.approx(on_dummies.alpha_, rel=1e-12),
                                                     on_dummies.l1_ratio_)
    assert relative(on_codes.coef_path_, on_dummies.coef_path_) < 1e-6
    assert relative(on_codes.coef_, on_dummies.coef_) < 1e-6
    assert np.nanmax(on_codes.dual_gap_path_) <= 1e-11


def test_an_elastic_net_folds_optimum_is_the_independent_oracles_beyond_the_dense_limit(table, many_levels):
    frame, y = table
    splits = list(KFold(3, shuffle=True, random_state=0).split(frame))
    model = GDRegressorCV(loss="huber", epsilon=EPSILON, penalty="elasticnet", l1_ratio=0.5, alphas=4, eps=1e-4,
                          cv=splits).fit(frame, y)
    assert model.engine_ == "pass" and model.converged_
    assert np.nanmax(model.dual_gap_path_) <= 1e-11
    design = scipy.sparse.hstack([one_hot(frame), np.ones((len(y), 1))]).tocsr()
    a = 3  # the smallest alpha: most level coefficients active (about 1000 of 1302), some still zero
    alpha = float(model.alphas_[a])
    train, test = splits[0]
    theta = elastic_net_huber_optimum(design[train], y[train], np.ones(train.size), alpha, 0.5)
    assert 0 < np.count_nonzero(theta[:-1]) < theta.size - 1  # some coefficients zero, some not
    held_out = huber(design[test] @ theta - y[test]).mean()
    assert model.mse_path_[a, 0] == pytest.approx(held_out, rel=1e-7)


def test_no_dense_block_is_formed(table, many_levels):
    frame, y = table
    n, d = len(y), 3 + LEVELS - 1
    one_hot_bytes = n * d * 8  # the dense dummies (40 MB); the dense method's Hessians: 4 · d² · 8 (54 MB)
    tracemalloc.start()
    try:
        model = GDRegressorCV(loss="huber", epsilon=EPSILON, penalty="l2", alphas=3, cv=3).fit(frame, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model.converged_
    # neither the one-hot block nor one problem's dense Hessian (the dense method holds one a problem, 4 here):
    # what is left is O(rows · problems) (residuals, inlier rows) and O(levels · features · problems)
    assert peak < min(one_hot_bytes / 4, 0.75 * d * d * 8), (peak, one_hot_bytes)


def test_the_command_line_cross_validates_huber_on_the_codes(table, many_levels, tmp_path, capsys):
    frame, y = table
    path = tmp_path / "table.parquet"
    frame.assign(y=y).to_parquet(path, index=False)
    model_path = tmp_path / "m.json"
    code = main(["train", str(path), "--target", "y", "--loss", "huber", "--epsilon", str(EPSILON), "--penalty",
                 "l2", "--alpha", "cv", "--folds", "3", "--alphas", "3", "-o", str(model_path), "-q"])
    assert code == 0, capsys.readouterr().err
    estimator = GDRegressorCV(loss="huber", epsilon=EPSILON, penalty="l2", alphas=3, cv=3).fit(frame, y)
    saved = load(model_path)
    assert saved.alpha == pytest.approx(estimator.alpha_, rel=1e-12)
    np.testing.assert_allclose(saved.coef_, estimator.coef_, rtol=1e-9, atol=1e-12)


def test_a_file_and_a_dask_dataframe_equal_the_frame(monkeypatch, tmp_path):
    """Streamed batches and Dask partitions: each problem's inlier level moments merged across chunks and workers."""
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 100)  # 150 levels: codes
    frame, y = outlier_table(150, rows_a_level=6, seed=3)
    options = {"loss": "huber", "epsilon": EPSILON, "penalty": "elasticnet", "l1_ratio": 0.5, "alphas": 3, "cv": 3}
    in_memory = GDRegressorCV(**options).fit(frame, y)
    path = tmp_path / "table.csv"
    frame.assign(y=y).to_csv(path, index=False)
    source = FileSource(str(path), "y", batch_rows=200)
    on_file = GDRegressorCV(**options).fit(source)
    assert source.block_layout is not None
    cluster = distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None,
                                       silence_logs=50)
    try:
        with distributed.Client(cluster) as client:
            data = client.persist(dd.from_pandas(frame.assign(y=y), npartitions=4))
            on_dask = GDRegressorCV(**options).fit(data[list(frame.columns)], data["y"])
    finally:
        cluster.close()
    for model in (on_file, on_dask):
        assert model.engine_ == "pass" and model.converged_
        np.testing.assert_allclose(model.mse_path_, in_memory.mse_path_, rtol=1e-10)
        np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-9, atol=1e-12)
