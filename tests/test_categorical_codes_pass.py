"""The pass engine on a categorical column kept as level codes: every loss, penalty and minibatch, no dense dummies.

Oracles: the same sums and fits on the dense treatment-coded design (the
column as dummies: the numerics must agree to rounding), plain NumPy on that
design, scipy.optimize (L-BFGS) for Huber's loss, HiGHS (scikit-learn's
``QuantileRegressor(solver="highs")``) for the absolute error and the pinball
loss, and scikit-learn's Ridge, Lasso and ElasticNet with gradfit's alpha
convention (:mod:`gradfit.penalties`). The ``codes_only`` fixture keeps a
column of more than 40 levels as codes and refuses one of more than 100 as
dense dummies, so a fit on the 150-level column here can only have read the
codes; ``dense`` lifts both limits for the comparison fit on dummies.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

from gradfit import GDRegressor, load
from gradfit.cli import main
from gradfit.engines import kernels
from gradfit.engines.passes import partial_sums_function
from gradfit.losses import AbsoluteError, Huber, Quantile, SquaredError
from gradfit.sources import FileSource, encoding
from gradfit.sources.base import Chunk

from .conftest import write_table
from .test_categorical_blocks import dense_design, make_table

LEVELS = 150


@pytest.fixture
def codes_only(monkeypatch):
    """Columns of more than 40 levels kept as codes; a dense one may have at most 100."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 100)


def dense(monkeypatch):
    """From now on (in this test) the column is dense dummies: what the codes must agree with."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 10**6)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 10**6)


@pytest.fixture(scope="module")
def table():
    return make_table(3000, LEVELS, 2, seed=3)


# -- one chunk's sums: codes against the dense dummies -------------------------------------


def codes_case(seed, n=700, p=3, levels=25, k=2, reference=4):
    """A layout with the dummies between dense features and a reference that is not level 0, its dense twin."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, n)
    others = np.delete(np.arange(levels), reference)
    d = p + levels - 1
    dense_index = np.array([0] + list(range(levels, levels + p - 1)))  # x0, dummies, x1, x2
    level_index = np.arange(1, levels)
    layout = {"dense_index": dense_index, "level_index": level_index, "reference": reference, "n_levels": levels,
              "n_dense": p}
    X = rng.normal(size=(n, p)) * [1.0, 30.0, 0.2] + [5.0, -200.0, 0.0]
    full = np.zeros((n, d))
    full[:, dense_index] = X
    rows = np.flatnonzero(codes != reference)
    full[rows, level_index[np.searchsorted(others, codes[rows])]] = 1.0
    y = rng.normal(size=(n, k)) * 3.0
    weight = rng.uniform(0.2, 2.0, n)
    coef = rng.normal(size=(d, k))
    offset = rng.normal(size=k)
    return layout, X, full, codes, y, weight, coef, offset


LOSSES = {"squared_error": SquaredError(), "huber": Huber(epsilon=1.5), "absolute_error": AbsoluteError(),
          "quantile": Quantile(quantile=0.8), "hessian products": None}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("order, compiled", [("C", True), ("C", False), ("F", False)])  # F: the BLAS blocks anyway
def test_chunk_sums_on_codes_equal_the_dense_dummies(name, centred, weighted, order, compiled, monkeypatch):
    monkeypatch.setattr(kernels, "available", kernels.available and compiled)
    layout, X, full, codes, y, weight, coef, offset = codes_case(seed=hash((name, centred, weighted)) % 1000)
    weight = weight if weighted else None
    center = full.mean(axis=0) if centred else None  # the dummies' centre: the level shares
    loss = LOSSES[name]
    with_target = loss is not None
    on_codes = partial_sums_function(coef, offset, loss, with_target, center, layout)(
        Chunk(np.asarray(X, order=order), y, weight, 0, codes=codes))
    on_dummies = partial_sums_function(coef, offset, loss, with_target, center)(
        Chunk(np.asarray(full, order=order), y, weight, 0))
    for a, b in zip(on_codes, on_dummies):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)
    # and plain NumPy on the dense design: the prediction, the loss's derivative, X̃ᵀ(v g)
    design = full if center is None else full - center
    prediction = design @ coef + offset
    v = np.ones(len(y)) if weight is None else weight
    if loss is None:
        value, derivative = prediction * prediction, 2.0 * prediction
    else:
        value, derivative = loss.value_and_derivative(prediction, y)
    np.testing.assert_allclose(on_codes[0], np.sum(v[:, None] * value), rtol=1e-10)
    np.testing.assert_allclose(on_codes[1], design.T @ (v[:, None] * derivative), rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(on_codes[2], v @ derivative, rtol=1e-10, atol=1e-9)


# -- whole fits: codes against dummies, same iterates --------------------------------------

FITS = {
    "huber": dict(loss="huber", optimizer="gd", epochs=60),
    "absolute_error": dict(loss="absolute_error", epochs=60),
    "quantile": dict(loss="quantile", quantile=0.8, optimizer="nesterov", epochs=60),
    "ridge, pass engine": dict(penalty="l2", alpha=0.01, engine="pass", optimizer="nesterov", epochs=60),
    "lasso, pass engine": dict(penalty="l1", alpha=0.02, engine="pass", epochs=60),
    "elasticnet, pass engine": dict(penalty="elasticnet", alpha=0.02, l1_ratio=0.5, engine="pass", epochs=60),
    "minibatch sgd": dict(batch_size=128, epochs=3, random_state=4),
    "minibatch huber, weights": dict(loss="huber", batch_size=256, epochs=2, optimizer="momentum", random_state=5),
    "adam, no intercept, pass engine": dict(optimizer="adam", fit_intercept=False, engine="pass", epochs=40),
}


@pytest.mark.parametrize("name", list(FITS))
def test_fits_on_codes_equal_the_fits_on_dense_dummies(name, table, codes_only, monkeypatch):
    frame, y = table
    weight = np.random.default_rng(6).uniform(0.5, 2.0, len(y)) if "weights" in name else None
    settings = dict(FITS[name], tol=None)  # every epoch runs on both: the iterates compared, not the stopping
    on_codes = GDRegressor(**settings).fit(frame, y, sample_weight=weight)
    assert on_codes.engine_ == "pass"
    dense(monkeypatch)
    on_dummies = GDRegressor(**settings).fit(frame, y, sample_weight=weight)
    assert on_dummies.n_iter_ == on_codes.n_iter_
    np.testing.assert_allclose(on_codes.coef_, on_dummies.coef_, rtol=1e-8, atol=1e-10 * np.abs(y).max())
    np.testing.assert_allclose(on_codes.intercept_, on_dummies.intercept_, rtol=1e-8, atol=1e-10 * np.abs(y).max())


# -- at the optimum: independent solvers on the dense design --------------------------------


def relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet"])
def test_penalized_pass_fits_on_codes_equal_scikit_learn(penalty, table, codes_only):
    from sklearn.linear_model import ElasticNet, Lasso, Ridge

    frame, y = table
    design = dense_design(frame).to_numpy()
    reference, settings = {
        "l2": (Ridge(alpha=3.0), dict(penalty="l2", alpha=2 * 3.0 / len(y), optimizer="nesterov")),
        "l1": (Lasso(alpha=0.01, tol=1e-14, max_iter=100000), dict(penalty="l1", alpha=0.02)),
        "elasticnet": (ElasticNet(alpha=0.01, l1_ratio=0.5, tol=1e-14, max_iter=100000),
                       dict(penalty="elasticnet", alpha=0.02, l1_ratio=0.5)),
    }[penalty]
    reference.fit(design, y)
    model = GDRegressor(engine="pass", tol=None, epochs=800, **settings).fit(frame, y)
    assert relative(model.coef_, reference.coef_) < 1e-8
    assert abs(model.intercept_ - reference.intercept_) < 1e-8 * np.abs(y).max()
    # certified by the blocks' reference where it takes the penalty; else no claim, saying why
    certificate = model.fit_report_["certificate"]
    assert certificate["kind"] != "none" or "level codes" in certificate["detail"], certificate


def test_huber_on_codes_equals_lbfgs_on_the_dense_design(table, codes_only):
    frame, y = table
    design = np.column_stack([dense_design(frame).to_numpy(), np.ones(len(y))])
    epsilon = 1.0

    def huber(theta):  # gradfit's Huber: r² inside ε, 2ε|r| − ε² beyond; the mean over rows
        r = design @ theta - y
        inside = np.abs(r) <= epsilon
        value = np.where(inside, r * r, 2 * epsilon * np.abs(r) - epsilon**2).mean()
        return value, design.T @ np.where(inside, 2 * r, 2 * epsilon * np.sign(r)) / len(y)

    optimum = scipy.optimize.minimize(huber, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                                      options=dict(gtol=1e-13, ftol=1e-16, maxiter=50000)).x
    model = GDRegressor(loss="huber", epsilon=epsilon, optimizer="nesterov", tol=None, epochs=2000).fit(frame, y)
    assert relative(model.coef_, optimum[:-1]) < 1e-5
    assert abs(model.intercept_ - optimum[-1]) < 1e-5 * np.abs(optimum).max()
    certificate = model.fit_report_["certificate"]  # Huber's dual bound, its projection solved by the level blocks
    assert certificate["kind"] == "gradient_bound" and certificate["value"] < 1e-10, certificate


@pytest.mark.parametrize("settings", [
    dict(optimizer="nesterov"),
    dict(optimizer="nesterov", fit_intercept=False),
    dict(optimizer="gd", standardize=False),
    dict(optimizer="nesterov", penalty="l2", alpha=0.01),
    dict(optimizer="gd", penalty="elasticnet", alpha=0.01, l1_ratio=0.5),
], ids=["plain", "no intercept", "raw units", "l2", "elasticnet"])
def test_huber_certificate_on_codes_equals_the_dense_dummies(settings, table, codes_only, monkeypatch):
    frame, y = table
    weight = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    options = dict(loss="huber", epochs=40, tol=None, **settings)
    on_codes = GDRegressor(**options).fit(frame, y, sample_weight=weight).fit_report_["certificate"]
    dense(monkeypatch)
    on_dummies = GDRegressor(**options).fit(frame, y, sample_weight=weight).fit_report_["certificate"]
    assert on_codes["kind"] == on_dummies["kind"] == "gradient_bound"
    np.testing.assert_allclose(on_codes["value"], on_dummies["value"], rtol=1e-6, atol=1e-14)


@pytest.mark.parametrize("quantile", [0.5, 0.8])
def test_piecewise_linear_fits_on_codes_approach_the_highs_optimum(quantile, table, codes_only):
    from sklearn.linear_model import QuantileRegressor

    frame, y = table
    design = dense_design(frame).to_numpy()
    lp = QuantileRegressor(quantile=quantile, alpha=0, solver="highs").fit(design, y)

    def pinball(residual):  # gradfit's, scaled by 2 (τ = 0.5 is |r|), r = prediction − target
        return np.mean(2 * np.where(residual >= 0, (1 - quantile) * residual, -quantile * residual))

    optimum = pinball(design @ lp.coef_ + lp.intercept_ - y)
    settings = dict(loss="absolute_error") if quantile == 0.5 else dict(loss="quantile", quantile=quantile)
    model = GDRegressor(tol=None, epochs=1500, **settings).fit(frame, y)
    reached = pinball(design @ model.coef_ + model.intercept_ - y)
    assert optimum <= reached + 1e-12 and reached <= optimum * (1 + 2e-3)  # a subgradient method: near, not exact
    np.testing.assert_allclose(model.final_cost_, reached, rtol=1e-10)  # the engine's cost is the dense design's
    assert not model.fit_report_["certificate"]["converged"]


# -- files: the codes kept between passes and for minibatches -----------------------------


@pytest.mark.parametrize("layout", ["data.csv", "data.parquet", "folder"])
@pytest.mark.parametrize("memory", [None, 0])
def test_file_fits_on_codes_equal_in_memory(layout, memory, table, codes_only, tmp_path):
    frame, y = table
    path = write_table(frame.assign(y=y), tmp_path / layout)
    for settings in (dict(loss="huber", optimizer="gd", epochs=15, tol=None),
                     dict(batch_size=256, epochs=2, random_state=2, tol=None)):
        source = FileSource(path, "y", batch_rows=700, memory=memory)
        on_file = GDRegressor(**settings).fit(source)
        assert source.block_layout is not None  # the column as codes, through every pass or minibatch
        if memory is None:
            assert source._columns is not None and source._columns.complete  # kept in memory as codes
        in_memory = GDRegressor(**settings).fit(frame, y)
        np.testing.assert_allclose(on_file.coef_, in_memory.coef_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(on_file.intercept_, in_memory.intercept_, rtol=1e-10, atol=1e-12)


def test_a_csv_spilled_to_the_binary_cache_keeps_its_codes(table, codes_only, tmp_path):
    frame, y = table
    path = write_table(frame.assign(y=y), tmp_path / "data.csv")
    source = FileSource(path, "y", batch_rows=500, memory=10_000)  # beyond the budget: the binary cache on disk
    settings = dict(loss="quantile", quantile=0.3, epochs=10, tol=None)
    on_file = GDRegressor(**settings).fit(source)
    assert source._columns is not None and source._columns.where == "disk"
    np.testing.assert_allclose(on_file.coef_, GDRegressor(**settings).fit(frame, y).coef_, rtol=1e-10, atol=1e-12)


# -- no dense block, and what still needs one --------------------------------------------------


def test_more_levels_than_dense_allows_fit_huber_without_a_dense_block(tmp_path):
    levels = encoding.MAX_LEVELS + 200  # the real limit: before, a one-line refusal
    rng = np.random.default_rng(7)
    n = 3 * levels
    codes = np.concatenate([np.arange(levels), rng.integers(0, levels, n - levels)])
    x = rng.normal(size=(n, 2))
    y = x @ [1.0, -2.0] + rng.normal(size=levels)[codes] + rng.standard_t(2, n)
    frame = pd.DataFrame({"x0": x[:, 0], "g": [f"L{c:05d}" for c in codes], "x1": x[:, 1]})
    dense_bytes = n * (levels + 2) * 8  # the one-hot block the dummies would need
    tracemalloc.start()
    try:
        # "auto" runs Huber's Newton method on the level blocks (tests/test_categorical_huber_newton.py)
        model = GDRegressor(loss="huber", epochs=30).fit(frame, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < dense_bytes / 8, (peak, dense_bytes)
    assert model.coef_.shape == (levels + 1,) and model.engine_ == "pass"
    assert np.all(np.isfinite(model.coef_))
    assert model.converged_ and model.fit_report_["optimizer"] == "newton", model.fit_report_["message"]


def test_squared_error_pass_fits_on_codes_report_the_blocks_statistics(table, codes_only, tmp_path):
    frame, y = table
    on_blocks = GDRegressor(tol=1e-10).fit(frame, y)  # the blocks' statistics engine
    by_passes = GDRegressor(engine="pass", optimizer="cg", tol=1e-10).fit(frame, y)
    assert (on_blocks.engine_, by_passes.engine_) == ("statistics", "pass") and by_passes.converged_
    np.testing.assert_allclose(by_passes.coef_, on_blocks.coef_, rtol=1e-7, atol=1e-9)
    report = by_passes.fit_report_
    assert any("level codes" in note for note in report["notes"])
    assert report["condition_number"] == pytest.approx(on_blocks.fit_report_["condition_number"], rel=1e-6)
    path = write_table(frame.assign(y=y), tmp_path / "d.parquet")  # the CLI's report samples rows as codes
    assert main(["train", path, "--target", "y", "--batch-size", "500", "--epochs", "2", "-q",
                 "--report", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 0


def test_newton_by_name_keeps_the_codes_beyond_the_dense_limit(table, codes_only, tmp_path, capsys):
    # optimizer="newton" by name is the method "auto" runs (robust.fit): on the level blocks, with no dense limit
    # (before, a one-line refusal: "more than the 100 ... (optimizer='newton', ...)")
    frame, y = table
    path = write_table(frame.assign(y=y), tmp_path / "d.parquet")
    assert main(["train", path, "--target", "y", "--loss", "huber", "--optimizer", "gd", "--epochs", "5", "-q"]) == 0
    assert "not converged" in capsys.readouterr().err  # 5 epochs of gd: Huber's bound says how far, no claim
    model_path = tmp_path / "m.json"
    assert main(["train", path, "--target", "y", "--loss", "huber", "--optimizer", "newton", "--tol", "1e-10",
                 "-o", str(model_path), "-q"]) == 0, capsys.readouterr().err
    by_name = GDRegressor(loss="huber", optimizer="newton", tol=1e-10).fit(frame, y)
    by_default = GDRegressor(loss="huber", tol=1e-10).fit(frame, y)
    assert by_name.converged_ and by_name.engine_ == "pass" and by_name.fit_report_["optimizer"] == "newton"
    np.testing.assert_allclose(by_name.coef_, by_default.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(load(model_path).coef_, by_name.coef_, rtol=1e-9, atol=1e-12)
    # the absolute error's and the pinball loss's Newton method reads the codes (tests/test_categorical_lp.py)
    assert GDRegressor(loss="absolute_error", optimizer="newton").fit(frame, y).converged_
