"""Penalties on a categorical column of many levels kept as blocks (:mod:`gradfit.engines.categorical`).

L2 (ridge) exactly, by the blocks' solve; L1 and elastic net by accelerated
proximal gradient on the blocks' products, certified by the duality gap.

Oracles: ``numpy.linalg.solve`` of the penalized normal equations on the
dense treatment-coded design (formed from a sparse one-hot matrix), SciPy's
sparse direct solve (SuperLU) where the levels are too many for a dense
solve, scikit-learn's ``Ridge`` (``alpha = 2a/W`` in gradfit's units,
:mod:`gradfit.penalties`) and its coordinate descent ``ElasticNet``/``Lasso``
(``alpha = 2a``). gradfit's penalty is on the coefficients in the
data's units, dummies included, so the oracle adds ``W·alpha/2`` to the
normal matrix's diagonal (never the intercept's) whatever ``standardize``.
As in ``tests/test_categorical_blocks.py``, ``encoding.BLOCK_LEVELS`` and
``encoding.MAX_LEVELS`` are lowered below the column's levels, so that only
the blocks can have served a fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import scipy.sparse.linalg
from threadpoolctl import threadpool_limits

import gradfit
from gradfit import GDRegressor
from gradfit.cli import main
from gradfit.engines import categorical
from gradfit.engines.categorical import BlockStatisticsEngine, LevelBlocks, chunk_level_moments
from gradfit.penalties import ElasticNet
from gradfit.sources import encoding

from .test_categorical_blocks import blocks_only, dense_statistics, engine_case, layout_case  # noqa: F401 - a fixture


def make_table(n, levels, numeric, seed=0, offset=3.0, targets=1):
    """Numeric ``x0..``, a text column ``g`` after ``x0``, targets with a level effect; every level present."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, n)
    codes[:levels] = np.arange(levels)
    X = rng.normal(size=(n, numeric)) + offset
    effect = rng.normal(size=(levels, targets))
    y = X @ rng.normal(size=(numeric, targets)) + effect[codes] + 0.5 * rng.normal(size=(n, targets))
    frame = pd.DataFrame({f"x{j}": X[:, j] for j in range(numeric)})
    frame.insert(min(1, numeric), "g", [f"L{c:05d}" for c in codes])
    return frame, (y[:, 0] if targets == 1 else y)


def sparse_design(frame):
    """The treatment-coded design (reference: the first level in sorted order), in gradfit's column order, CSR."""
    levels = np.sort(frame["g"].unique())
    codes = np.searchsorted(levels, frame["g"].to_numpy())
    n = len(frame)
    keep = codes > 0
    dummies = scipy.sparse.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), codes[keep] - 1)),
                                      shape=(n, len(levels) - 1))
    parts = [dummies if name == "g" else scipy.sparse.csr_matrix(frame[[name]].to_numpy(float))
             for name in frame.columns]
    return scipy.sparse.hstack(parts, format="csr")


def ridge_oracle(design, y, alpha, weight=None, fit_intercept=True, dense=True):
    """``argmin (1/W) Σ v r² + (alpha/2)‖coef‖²`` per target: ``(N + (W·alpha/2) I_features) θ = Aᵀ V y``."""
    n, d = design.shape
    v = np.ones(n) if weight is None else weight
    A = scipy.sparse.hstack([design, np.ones((n, 1))], format="csr") if fit_intercept else design
    normal = (A.T @ A.multiply(v[:, None])).tocsc()
    normal = normal + scipy.sparse.diags(np.r_[np.full(d, 0.5 * v.sum() * alpha), np.zeros(A.shape[1] - d)])
    rhs = A.T @ (np.asarray(y, float).reshape(n, -1) * v[:, None])
    if dense:
        with threadpool_limits(1):  # on a loaded machine BLAS's spinning threads only slow this
            solution = np.linalg.solve(normal.toarray(), rhs)
    else:
        solution = scipy.sparse.linalg.spsolve(normal, rhs).reshape(A.shape[1], -1)
    coef = solution[:d].T
    intercept = solution[d] if fit_intercept else np.zeros(coef.shape[0])
    return coef, intercept


def spread(design, y, weight, fit_intercept):
    """The certificate's units (:mod:`gradfit.certify`): per feature and target, std (rms without intercept)."""
    v = np.ones(design.shape[0]) if weight is None else weight
    total = v.sum()
    mean = np.asarray(design.multiply(v[:, None]).sum(axis=0)).ravel() / total
    square = np.asarray(design.multiply(design).multiply(v[:, None]).sum(axis=0)).ravel() / total
    y = np.asarray(y, float).reshape(len(v), -1)
    y_mean, y_square = v @ y / total, v @ (y * y) / total
    if fit_intercept:
        return np.sqrt(np.maximum(square - mean * mean, 0)), np.sqrt(y_square - y_mean**2), mean
    return np.sqrt(square), np.sqrt(y_square), np.zeros_like(mean)


def oracle_distance(coef, intercept, best_coef, best_intercept, sigma, sigma_y, fit_intercept):
    """The certificate's measure of the distance to the oracle's optimum, per target (the largest)."""
    value = np.linalg.norm((coef - best_coef) * sigma, axis=1) / np.linalg.norm(best_coef * sigma, axis=1)
    if fit_intercept:
        value = np.maximum(value, np.abs(intercept - best_intercept) / np.maximum(np.abs(best_intercept), sigma_y))
    return float(np.max(value))


# -- the solve and the engine against the dense penalized normal equations ----------------


@pytest.mark.parametrize("weighted", [False, True])
def test_solve_ridge_equals_the_dense_penalized_normal_equations(weighted):
    codes, X, y, weight, layout, design = layout_case(weighted=weighted)
    levels = 30
    v = np.ones(len(design)) if weight is None else weight.copy()
    empty = 7  # a level without weight: determined by the penalty alone
    v[codes == empty] = 0.0
    blocks = LevelBlocks(chunk_level_moments(codes, X, y, v, levels), *layout)
    d = design.shape[1]
    origin = np.random.default_rng(3).normal(size=d) + blocks.feature_mean()
    augmented = np.column_stack([design - origin, np.ones(len(design))])
    normal = augmented.T @ (augmented * v[:, None])
    rhs = np.random.default_rng(2).normal(size=(d + 1, 2))
    for size in (1e-3, 1.0, 1e4):
        ridge = size * np.random.default_rng(5).uniform(0.5, 2.0, d)  # any diagonal, not only gradfit's
        penalized = normal.copy()
        penalized[np.arange(d), np.arange(d)] += ridge
        expected = np.linalg.solve(penalized, rhs)
        # (the dense solve's own rounding: ε·cond of the centred matrix, ~1e-9 at λ = 1e-3)
        np.testing.assert_allclose(blocks.solve_ridge(rhs, ridge, origin), expected, rtol=1e-8,
                                   atol=1e-11 * np.abs(expected).max())
    # at λ = 0: today's solve (which refuses the empty level), and the complement's own formula agrees
    full = LevelBlocks(chunk_level_moments(codes, X, y, weight, levels), *layout)
    tiny = np.zeros(d)
    tiny[0] = 1e-300  # below rounding of every entry: through the Schur complement, not solve_normal
    np.testing.assert_allclose(full.solve_ridge(rhs, tiny), full.solve_normal(rhs), rtol=1e-10,
                               atol=1e-12 * np.abs(full.solve_normal(rhs)).max())
    assert full.solve_ridge(rhs, 0.0) is not None
    np.testing.assert_array_equal(full.solve_ridge(rhs, 0.0), full.solve_normal(rhs))
    with pytest.raises(gradfit.DataError, match="has no weight"):
        blocks.solve_normal(rhs)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("standardize", [True, False])
def test_block_engine_with_l2_equals_the_dense_statistics(fit_intercept, standardize, monkeypatch):
    stats, scaling, dense, design, y = engine_case(fit_intercept, standardize)
    penalty = ElasticNet("l2", 0.3, 0.0)
    d, k = design.shape[1], y.shape[1]
    hessian = dense.hessian()
    hessian[np.arange(d), np.arange(d)] += penalty.hessian_diagonal(scaling.scale, k)
    grad0 = dense.value_and_grad(np.zeros_like(dense.reference))[1]
    optimum = -np.linalg.solve(hessian, grad0)  # the smooth part is a quadratic: one Newton step from zero
    for parameters in (None, 5):  # eigh of the formed Hessian, then Lanczos beyond DENSE_PARAMETERS
        if parameters is not None:
            monkeypatch.setattr(categorical, "DENSE_PARAMETERS", parameters)
        engine = BlockStatisticsEngine(stats, scaling, fit_intercept, penalty)
        np.testing.assert_allclose(engine.reference, optimum, atol=1e-10 * np.abs(optimum).max())
        params = np.random.default_rng(4).normal(size=optimum.shape)
        value, grad = engine.value_and_grad(params)  # the data term alone, as every engine's
        expected_value, expected_grad = dense.value_and_grad(params)
        assert value == pytest.approx(expected_value, rel=1e-10)
        np.testing.assert_allclose(grad, expected_grad, atol=1e-10 * np.abs(expected_grad).max())
        expected = np.linalg.solve(hessian, grad)
        np.testing.assert_allclose(engine.solve(grad), expected, atol=1e-9 * np.abs(expected).max())
        smooth = np.linalg.eigvalsh(hessian)
        assert engine.smooth_eigenvalues[0] == pytest.approx(smooth[0], rel=1e-6)
        assert engine.smooth_eigenvalues[-1] == pytest.approx(smooth[-1], rel=1e-8)
        assert engine.curvature() == pytest.approx(dense.curvature(), rel=1e-8)  # the data term's
        assert engine.condition_number() == pytest.approx(dense.condition_number(), rel=1e-6)


# -- fits ---------------------------------------------------------------------------------


CASES = [  # (levels, weighted, fit_intercept, standardize, targets)
    (300, False, True, True, 1),
    (300, True, True, True, 2),
    (300, False, False, True, 2),
    (300, True, False, True, 1),
    (300, False, True, False, 2),
    (300, True, True, False, 1),
    (300, False, False, False, 1),
    (300, True, False, False, 2),
    (1500, True, True, True, 1),
]


@pytest.mark.parametrize("levels, weighted, fit_intercept, standardize, targets", CASES)
@pytest.mark.usefixtures("blocks_only")
def test_ridge_fit_equals_the_dense_penalized_solve(levels, weighted, fit_intercept, standardize,
                                                     targets):
    n = 6 * levels
    frame, y = make_table(n, levels, 3, seed=levels + 7 * weighted + 3 * fit_intercept + standardize, targets=targets)
    weight = np.random.default_rng(1).uniform(0.2, 3.0, n) if weighted else None
    alpha = 0.02
    # raw units: "auto" keeps plain gradient descent (the tutorial's); conjugate gradient gets there
    optimizer = "auto" if standardize else "cg"
    model = GDRegressor(penalty="l2", alpha=alpha, tol=1e-11, fit_intercept=fit_intercept, standardize=standardize,
                        optimizer=optimizer).fit(frame, y, sample_weight=weight)
    assert model.engine_ == "statistics" and len(model.coef_.reshape(targets, -1)[0]) == 3 + levels - 1
    assert levels > encoding.MAX_LEVELS  # (blocks_only) dense dummies would have been refused: the blocks fit it
    design = sparse_design(frame)
    coef, intercept = ridge_oracle(design, y, alpha, weight, fit_intercept)
    got_coef = model.coef_.reshape(targets, -1)
    got_intercept = np.atleast_1d(model.intercept_)
    np.testing.assert_allclose(got_coef, coef, rtol=1e-8, atol=1e-8 * np.abs(coef).max())
    np.testing.assert_allclose(got_intercept, intercept, rtol=1e-8, atol=1e-8 * np.abs(coef).max())
    # the certificate: converged, and its distance bounds the oracle's (the measure of gradfit.certify)
    assert model.converged_ and model.certificate_.kind == "distance"
    sigma, sigma_y, _ = spread(design, y, weight, fit_intercept)
    distance = oracle_distance(got_coef, got_intercept, coef, intercept, sigma, sigma_y, fit_intercept)
    assert distance <= model.certificate_.value + 1e-12 <= 1e-11 + 1e-12


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.usefixtures("blocks_only")
def test_certificate_measures_the_distance_to_the_oracle_optimum(weighted):
    # short of the optimum, the certificate's distance is the oracle's, not a bound that merely holds
    frame, y = make_table(2000, 300, 3, seed=21)
    weight = np.random.default_rng(2).uniform(0.2, 3.0, len(y)) if weighted else None
    model = GDRegressor(penalty="l2", alpha=0.05, optimizer="gd", epochs=8, tol=1e-10)
    with pytest.warns(gradfit.ConvergenceWarning):
        model.fit(frame, y, sample_weight=weight)
    design = sparse_design(frame)
    coef, intercept = ridge_oracle(design, y, 0.05, weight)
    sigma, sigma_y, _ = spread(design, y, weight, True)
    distance = oracle_distance(model.coef_[None], np.atleast_1d(model.intercept_), coef, intercept, sigma, sigma_y,
                               True)
    assert not model.converged_ and distance > 1e-6
    assert model.certificate_.value == pytest.approx(distance, rel=1e-6)


@pytest.mark.usefixtures("blocks_only")
def test_ridge_equals_scikit_learn_ridge():
    linear_model = pytest.importorskip("sklearn.linear_model")
    frame, y = make_table(3000, 300, 3, seed=31)
    weight = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    a = 4.0  # scikit-learn's: Σ v r² + a‖coef‖², gradfit's alpha = 2a/W
    design = sparse_design(frame).toarray()
    with threadpool_limits(1):
        expected = linear_model.Ridge(alpha=a, solver="cholesky").fit(design, y, sample_weight=weight)
    model = GDRegressor(penalty="l2", alpha=2 * a / weight.sum(), tol=1e-11).fit(frame, y, sample_weight=weight)
    assert model.converged_
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-8, atol=1e-8 * np.abs(expected.coef_).max())
    assert model.intercept_ == pytest.approx(expected.intercept_, rel=1e-8)


@pytest.mark.usefixtures("blocks_only")
def test_an_empty_level_and_an_identifier_column_fit_with_a_penalty():
    # without a penalty both are refused (the data do not determine the level effects); L2 determines them
    frame, y = make_table(3000, 300, 2, seed=41)
    weight = np.where(frame["g"] == "L00007", 0.0, 1.0)
    model = GDRegressor(penalty="l2", alpha=0.01, tol=1e-11).fit(frame, y, sample_weight=weight)
    coef, intercept = ridge_oracle(sparse_design(frame), y, 0.01, weight)
    assert model.converged_
    np.testing.assert_allclose(model.coef_, coef[0], rtol=1e-8, atol=1e-8 * np.abs(coef).max())
    assert model.coef_[list(model.feature_names_).index("g[T.L00007]")] == 0.0  # no rows: only the penalty speaks
    identifier = frame.iloc[:400].assign(g=[f"row{i:05d}" for i in range(400)])
    model = GDRegressor(penalty="l2", alpha=0.01, tol=1e-11).fit(identifier, y[:400])
    coef, intercept = ridge_oracle(sparse_design(identifier), y[:400], 0.01)
    assert model.converged_
    np.testing.assert_allclose(model.coef_, coef[0], rtol=1e-8, atol=1e-8 * np.abs(coef).max())
    assert model.intercept_ == pytest.approx(intercept[0], rel=1e-8)
    # L1 alone: no solve determines the coefficients, the engine's expansion is about zero
    linear_model = pytest.importorskip("sklearn.linear_model")
    lasso = GDRegressor(penalty="l1", alpha=0.05, tol=1e-9, epochs=5000).fit(identifier, y[:400])
    expected = linear_model.Lasso(alpha=0.025, tol=1e-10, max_iter=100_000).fit(sparse_design(identifier), y[:400])
    assert lasso.converged_ and lasso.certificate_.kind == "duality_gap"
    np.testing.assert_allclose(lasso.coef_, expected.coef_, atol=1e-5 * np.abs(expected.coef_).max())


@pytest.mark.parametrize("offset", [1e6])
@pytest.mark.usefixtures("blocks_only")
def test_features_far_from_zero_keep_their_digits(offset):
    frame, y = make_table(6000, 300, 3, seed=51, offset=0.0)
    shifted = frame.copy()
    for name in ("x0", "x1", "x2"):
        shifted[name] = frame[name] + offset
        frame[name] = shifted[name] - offset  # exactly the same numbers (Sterbenz), about zero
    weight = np.random.default_rng(5).uniform(0.5, 2.0, len(y))
    for weights in (None, weight):
        coef, intercept = ridge_oracle(sparse_design(frame), y, 0.01, weights)  # coef does not move with x's origin
        model = GDRegressor(penalty="l2", alpha=0.01, tol=1e-11).fit(shifted, y, sample_weight=weights)
        assert model.converged_
        np.testing.assert_allclose(model.coef_, coef[0], rtol=1e-9, atol=1e-9 * np.abs(coef).max())
        moved = intercept[0] - offset * coef[0][[0, 300, 301]].sum()
        assert model.intercept_ == pytest.approx(moved, rel=1e-9)


def test_cli_ridge_on_more_levels_than_dense_dummies_allow(tmp_path, capsys):
    # the real limits: MAX_LEVELS dense dummies; a column beyond it was refused for every penalty
    levels = encoding.MAX_LEVELS + 500
    frame, y = make_table(3 * levels, levels, 2, seed=61)
    path = str(tmp_path / "many.csv")
    frame.assign(y=y).to_csv(path, index=False)
    model_path = str(tmp_path / "m.json")
    alpha = 0.05
    assert main(["train", path, "--target", "y", "--penalty", "l2", "--alpha", str(alpha), "--tol", "1e-10",
                 "-q", "-o", model_path]) == 0, capsys.readouterr().err
    model = gradfit.load(model_path)
    assert model.fit_report_["engine"] == "statistics" and model.certificate_.converged
    coef, intercept = ridge_oracle(sparse_design(frame), y, alpha, dense=False)
    np.testing.assert_allclose(model.coef_, coef[0], rtol=1e-8, atol=1e-8 * np.abs(coef).max())
    assert model.intercept_ == pytest.approx(intercept[0], rel=1e-8)
    # L1 too: accelerated proximal gradient on the blocks, certified by the duality gap
    linear_model = pytest.importorskip("sklearn.linear_model")
    lasso_path = str(tmp_path / "lasso.json")
    assert main(["train", path, "--target", "y", "--penalty", "l1", "--alpha", "0.02", "--tol", "1e-9",
                 "--epochs", "5000", "-q", "-o", lasso_path]) == 0, capsys.readouterr().err
    lasso = gradfit.load(lasso_path)
    assert lasso.fit_report_["engine"] == "statistics" and lasso.certificate_.kind == "duality_gap"
    assert lasso.certificate_.converged
    expected = linear_model.Lasso(alpha=0.01, tol=1e-14, max_iter=100_000).fit(sparse_design(frame), y)
    np.testing.assert_allclose(lasso.coef_, expected.coef_, atol=1e-5 * np.abs(expected.coef_).max())


def penalized_cost(design, y, coef, intercept, alpha, l1_ratio, weight=None):
    """gradfit's objective ``(1/W) Σ v r² + alpha (l1_ratio‖c‖₁ + (1 − l1_ratio)/2 ‖c‖²)`` on the dense design."""
    v = np.ones(design.shape[0]) if weight is None else weight
    residual = design @ coef + intercept - y
    return float(v @ residual**2 / v.sum() + alpha * (l1_ratio * np.abs(coef).sum()
                                                      + 0.5 * (1 - l1_ratio) * coef @ coef))


@pytest.mark.parametrize("penalty, l1_ratio", [("l1", 1.0), ("elasticnet", 0.5)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.usefixtures("blocks_only")
def test_l1_and_elastic_net_equal_coordinate_descent(penalty, l1_ratio, weighted, fit_intercept):
    linear_model = pytest.importorskip("sklearn.linear_model")
    frame, y = make_table(3000, 300, 3, seed=71 + weighted + 2 * fit_intercept)
    weight = np.random.default_rng(7).uniform(0.2, 3.0, len(y)) if weighted else None
    alpha, tol = 0.01, 1e-9
    settings = {"l1_ratio": l1_ratio} if penalty == "elasticnet" else {}
    model = GDRegressor(penalty=penalty, alpha=alpha, tol=tol, epochs=5000, fit_intercept=fit_intercept,
                        **settings).fit(frame, y, sample_weight=weight)
    assert model.engine_ == "statistics" and len(model.coef_) == 3 + 299
    assert model.converged_ and model.certificate_.kind == "duality_gap"
    design = sparse_design(frame)
    expected = linear_model.ElasticNet(alpha=alpha / 2, l1_ratio=l1_ratio, tol=1e-14, max_iter=100_000,
                                       fit_intercept=fit_intercept).fit(design, y, sample_weight=weight)
    dense = design.toarray()
    cost = penalized_cost(dense, y, model.coef_, model.intercept_, alpha, l1_ratio, weight)
    best = penalized_cost(dense, y, expected.coef_, expected.intercept_, alpha, l1_ratio, weight)
    # the duality gap bounds the relative gap to the optimum, of which coordinate descent's cost is an upper bound
    assert (cost - best) / cost <= model.certificate_.value + 1e-13
    np.testing.assert_allclose(model.coef_, expected.coef_, atol=1e-5 * np.abs(expected.coef_).max())
    assert np.array_equal(model.coef_ == 0, expected.coef_ == 0) or np.abs(model.coef_ - expected.coef_).max() < 1e-8


@pytest.mark.usefixtures("blocks_only")
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_column_alone(fit_intercept):
    # no other feature: the Schur complement is the intercept's 1 × 1 (or nothing at all)
    frame, y = make_table(2000, 100, 1, seed=81)
    only = frame[["g"]]
    for alpha in (0.01, None):
        settings = {"penalty": "l2", "alpha": alpha} if alpha else {}
        model = GDRegressor(tol=1e-11, fit_intercept=fit_intercept, **settings).fit(only, y)
        coef, intercept = ridge_oracle(sparse_design(only), y, alpha or 0.0, fit_intercept=fit_intercept)
        assert model.converged_ and len(model.coef_) == 99
        np.testing.assert_allclose(model.coef_, coef[0], rtol=1e-8, atol=1e-8 * np.abs(coef).max())
        assert model.intercept_ == pytest.approx(intercept[0], rel=1e-8, abs=1e-12)
