"""The absolute error and the pinball loss on a categorical column kept as level codes, certified.

``optimizer="auto"`` (and ``"newton"`` by name) runs the restricted-LP
Newton method of :mod:`gradfit.robust.absolute` on the codes: the program's
rows are sparse ``[dense features | one level indicator | 1]``
(:meth:`gradfit.robust.sums.CodedColumns.rows`), the projections solve by the
level blocks, and the LP duality gap certifies the fit as on dense data.

Oracle: the whole linear program, built here from the treatment-coded design
held as a SciPy sparse matrix and solved by HiGHS (``scipy.optimize.linprog``):

    min  (1/W) Σ v_i ((2 − 2τ) e⁺_i + 2τ e⁻_i)   s.t.  Z θ − y = e⁺ − e⁻,  e⁺, e⁻ ≥ 0,  θ free,

gradfit's pinball loss (twice scikit-learn's ``ρ_τ``; ``τ = 0.5`` is ``|r|``)
with ``r = prediction − target``. The ``many_levels`` fixture keeps a column of
more than 1000 levels as codes and refuses one of more than 1200 as dense
dummies, so the 1500-level fits here can only have read the codes.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.sparse

from gradfit import GDRegressor
from gradfit.cli import main
from gradfit.sources import FileSource, encoding

from .conftest import write_table

LEVELS = 1500


@pytest.fixture
def many_levels(monkeypatch):
    """Columns of more than 1000 levels kept as codes; a dense one may have at most 1200."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 1000)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 1200)


def rows_a_level(levels, rows=3, seed=4):
    """``levels`` levels of ``rows`` rows each, two numeric features off centre, heavy-tailed noise."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.repeat(np.arange(levels), rows))
    X = rng.normal(size=(codes.size, 2)) + 3.0
    y = X @ [1.5, -0.7] + rng.normal(size=levels)[codes] + 0.5 * rng.standard_t(2, codes.size)
    frame = pd.DataFrame({"x0": X[:, 0], "g": [f"L{c:05d}" for c in codes], "x1": X[:, 1]})
    return frame, y


@pytest.fixture(scope="module")
def table():
    return rows_a_level(LEVELS)


@pytest.fixture(scope="module")
def weights(table):
    return np.random.default_rng(6).uniform(0.5, 2.0, len(table[1]))


def sparse_design(frame, fit_intercept=True):
    """The treatment-coded design in gradfit's column order (``x0, g[T.…], x1``), as a CSR matrix."""
    levels = np.sort(frame["g"].unique())
    codes = np.searchsorted(levels, frame["g"].to_numpy())
    n = len(frame)
    keep = codes > 0  # the first level in sorted order is the reference: no dummy
    dummies = scipy.sparse.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), codes[keep] - 1)),
                                      shape=(n, levels.size - 1))
    parts = [frame[["x0"]].to_numpy(), dummies, frame[["x1"]].to_numpy()]
    if fit_intercept:
        parts.append(np.ones((n, 1)))
    return scipy.sparse.hstack(parts, format="csr")


def lp_optimum(design, y, quantile, weight=None):
    """``(P*, θ*, u*)``: the pinball loss's optimum on ``design`` by HiGHS, its parameters and the rows' duals."""
    n, p = design.shape
    v = np.ones(n) if weight is None else weight
    W = v.sum()
    cost = np.concatenate([np.zeros(p), (2 - 2 * quantile) * v / W, 2 * quantile * v / W])
    identity = scipy.sparse.identity(n, format="csr")
    A = scipy.sparse.hstack([design, -identity, identity], format="csc")
    bounds = [(None, None)] * p + [(0, None)] * (2 * n)
    result = scipy.optimize.linprog(cost, A_eq=A, b_eq=y, bounds=bounds, method="highs")
    assert result.status == 0, result.message
    return result.fun, result.x[:p], np.asarray(result.eqlin.marginals)


def pinball(design, coef, intercept, y, quantile, weight=None):
    """gradfit's cost of ``(coef, intercept)`` on the dense/sparse design, computed here."""
    r = design[:, : coef.size] @ coef + intercept - y
    v = np.ones(len(y)) if weight is None else weight
    return float(v @ (2 * np.where(r >= 0, (1 - quantile) * r, -quantile * r)) / v.sum())


def unique_optimum(design, y, theta, duals, quantile, weight):
    """Whether the LP optimum ``theta`` is unique: the rows it fits exactly are ``p`` (a basis), and their duals
    lie strictly inside the box (dual nondegenerate: no other optimal vertex)."""
    v = np.ones(len(y)) if weight is None else weight
    r = design @ theta - y
    exact = np.abs(r) <= 1e-9 * np.abs(y).max()
    u = duals / (v / v.sum())  # the dual of the row's equation, per unit weight: in [−(2 − 2τ), 2τ]
    inside = (u[exact] > -(2 - 2 * quantile) + 1e-7) & (u[exact] < 2 * quantile - 1e-7)
    return exact.sum() == design.shape[1] and bool(inside.all())


def settings(quantile, **more):
    loss = {"loss": "absolute_error"} if quantile == 0.5 else {"loss": "quantile", "quantile": quantile}
    return {**loss, "tol": 1e-10, **more}


def assert_certified_optimum(model, design, y, quantile, weight, fit_intercept=True, unique=True):
    """Certified, the optimum's cost to 1e-8; with ``unique`` (the oracle checks it) its coefficients to 1e-6."""
    assert model.converged_ and model.fit_report_["optimizer"] == "newton", model.fit_report_["message"]
    assert model.engine_ == "pass"  # passes that read the codes: no dense dummies
    certificate = model.fit_report_["certificate"]
    assert certificate["kind"] == "lp_duality_gap" and certificate["value"] <= 1e-10, certificate
    optimum, theta, duals = lp_optimum(design, y, quantile, weight)
    intercept = model.intercept_ if fit_intercept else 0.0
    reached = pinball(design, model.coef_, intercept, y, quantile, weight)
    assert abs(reached - optimum) <= 1e-8 * optimum, (reached, optimum)
    assert abs(model.final_cost_ - optimum) <= 1e-8 * optimum, (model.final_cost_, optimum)
    if unique:
        assert unique_optimum(design, y, theta, duals, quantile, weight)  # else no coefficients to compare with
        scale = np.abs(theta).max()
        np.testing.assert_allclose(model.coef_, theta[: model.coef_.size], rtol=0, atol=1e-6 * scale)
        if fit_intercept:
            assert abs(model.intercept_ - theta[-1]) <= 1e-6 * scale
    return theta


@pytest.mark.parametrize("quantile", [0.5, 0.2, 0.8], ids=["absolute", "q0.2", "q0.8"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weights"])
def test_lp_on_codes_is_certified_at_the_highs_optimum(quantile, weighted, table, weights, many_levels):
    frame, y = table
    weight = weights if weighted else None
    model = GDRegressor(**settings(quantile)).fit(frame, y, sample_weight=weight)
    assert_certified_optimum(model, sparse_design(frame), y, quantile, weight)


def test_lp_on_codes_without_an_intercept(table, many_levels):
    frame, y = table
    model = GDRegressor(**settings(0.8, fit_intercept=False)).fit(frame, y)
    assert_certified_optimum(model, sparse_design(frame, fit_intercept=False), y, 0.8, None, fit_intercept=False)


def test_newton_by_name_keeps_the_codes_beyond_the_dense_limit(table, many_levels):
    frame, y = table
    by_name = GDRegressor(**settings(0.2, optimizer="newton")).fit(frame, y)  # before: the dense refusal
    auto = GDRegressor(**settings(0.2)).fit(frame, y)
    assert by_name.converged_ and by_name.fit_report_["optimizer"] == "newton"
    np.testing.assert_array_equal(by_name.coef_, auto.coef_)


def test_parquet_file_fit_equals_in_memory(table, weights, many_levels, tmp_path, capsys):
    frame, y = table
    path = write_table(frame.assign(y=y, w=weights), tmp_path / "data.parquet")
    source = FileSource(path, "y", sample_weight="w", batch_rows=1000)
    on_file = GDRegressor(**settings(0.8)).fit(source)
    assert source.block_layout is not None  # the column read as codes from the file
    assert_certified_optimum(on_file, sparse_design(frame), y, 0.8, weights)
    in_memory = GDRegressor(**settings(0.8)).fit(frame, y, sample_weight=weights)
    np.testing.assert_allclose(on_file.final_cost_, in_memory.final_cost_, rtol=1e-12)
    # the command line: the same fit, the same certificate's words
    assert main(["train", path, "--target", "y", "--sample-weight", "w", "--loss", "quantile", "--quantile", "0.8",
                 "--tol", "1e-10", "-o", str(tmp_path / "model.json")]) == 0
    summary = capsys.readouterr()
    assert "not converged" not in summary.out + summary.err and "lp duality gap" in summary.out + summary.err
    coef = json.loads((tmp_path / "model.json").read_text())["coef"]
    np.testing.assert_allclose(np.ravel(coef), on_file.coef_, rtol=0, atol=1e-9 * np.abs(on_file.coef_).max())


def test_codes_equal_the_dense_dummies(monkeypatch):
    # 120 levels: the dense method's program is dense (the centred dummies fill every row), minutes at 1500
    frame, y = rows_a_level(120, seed=8)
    weight = np.random.default_rng(9).uniform(0.5, 2.0, len(y))
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 100)  # the column as codes
    on_codes = GDRegressor(**settings(0.2)).fit(frame, y, sample_weight=weight)
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 10**6)
    on_dummies = GDRegressor(**settings(0.2)).fit(frame, y, sample_weight=weight)
    assert on_codes.engine_ == "pass" and on_codes.coef_.shape == on_dummies.coef_.shape
    for model in (on_codes, on_dummies):
        assert model.converged_ and model.fit_report_["optimizer"] == "newton"
    np.testing.assert_allclose(on_codes.final_cost_, on_dummies.final_cost_, rtol=1e-10)


def test_first_order_fits_on_codes_get_a_valid_lp_bound(table, many_levels):
    """A few gd epochs on the codes: the certificate now bounds the gap (it said "none" before), and the bound
    holds: it is at least the true relative gap measured against HiGHS's optimum."""
    frame, y = table
    model = GDRegressor(loss="absolute_error", optimizer="gd", epochs=30, tol=1e-10).fit(frame, y)
    certificate = model.fit_report_["certificate"]
    assert certificate["kind"] == "lp_duality_gap" and not model.converged_, certificate
    design = sparse_design(frame)
    optimum = lp_optimum(design, y, 0.5)[0]
    reached = pinball(design, model.coef_, model.intercept_, y, 0.5)
    assert certificate["value"] >= (reached - optimum) / reached - 1e-12


def test_more_levels_than_dense_allows_fit_and_certify_without_a_dense_block():
    levels = encoding.MAX_LEVELS + 200  # the real limit: before, gd on the codes, "not converged"
    frame, y = rows_a_level(levels, seed=11)
    dense_bytes = len(y) * (levels + 2) * 8  # the one-hot block the dummies would need (650 MB)
    tracemalloc.start()
    try:
        model = GDRegressor(**settings(0.8)).fit(frame, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < dense_bytes / 10, (peak, dense_bytes)
    assert model.coef_.shape == (levels + 1,)
    assert_certified_optimum(model, sparse_design(frame), y, 0.8, None)


def test_dask_dataframe_fit_is_certified_at_the_optimum(monkeypatch):
    """On a Dask dataframe the sums read the codes on the workers; the kept rows and the program on the client."""
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)  # a smaller table: 60 levels, beyond a dense limit of 50
    monkeypatch.setattr(encoding, "MAX_LEVELS", 50)
    frame, y = rows_a_level(60, rows=25, seed=22)
    cluster = distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None,
                                       silence_logs=50)
    try:
        with distributed.Client(cluster) as client:
            on_dask = GDRegressor(**settings(0.8)).fit(client.persist(dd.from_pandas(frame, npartitions=4)), y)
    finally:
        cluster.close()
    assert_certified_optimum(on_dask, sparse_design(frame), y, 0.8, None, unique=False)  # an optimal face (unique_optimum says no)
