"""A formula's factor of many levels kept as level codes, never a dense one-hot block (issue 14, items 2 and 3).

``y ~ x + np.log(x) + C(firm) + x:C(g)`` with 1100 firms: ``C(firm)`` is a
main effect in no interaction, of more than ``BLOCK_LEVELS`` levels, so
formulaic encodes the rest of the formula and the firms come as level codes
(:meth:`gradfit.formula.FormulaDesign.choose_block`). Oracles: statsmodels'
formula OLS (patsy, not formulaic), and the normal equations of formulaic's
sparse design solved by scipy's sparse LU; the dense one-hot design of
formulaic for the dummies a fit asks for; tracemalloc for the memory.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest

smf = pytest.importorskip("statsmodels.formula.api")
formulaic = pytest.importorskip("formulaic")
scipy_sparse_linalg = pytest.importorskip("scipy.sparse.linalg")

from threadpoolctl import threadpool_limits  # noqa: E402

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import encoding  # noqa: E402
from gradfit.sources.formulas import FormulaSource  # noqa: E402

from .conftest import write_table  # noqa: E402

FORMULA = "y ~ x + np.log(x) + C(firm) + x:C(g)"
N_ROWS, N_LEVELS = 2750, 1100


def make_table(n, levels, seed=0):
    """Rows of ``levels`` firms (every one present), a numeric ``x``, a small factor ``g`` and ``y``."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.arange(n) % levels)
    frame = pd.DataFrame({"x": rng.uniform(1.0, 3.0, n), "g": rng.choice(["a", "b", "c"], n),
                          "firm": [f"f{c:04d}" for c in codes]})
    frame["y"] = (1.0 + 2.0 * frame.x + np.log(frame.x) + rng.normal(size=levels)[codes]
                  + (frame.g == "b") * frame.x + rng.normal(size=n))
    return frame


@pytest.fixture(scope="module")
def table():
    return make_table(N_ROWS, N_LEVELS)


@pytest.fixture(scope="module")
def ols(table):
    with threadpool_limits(1):  # BLAS's threads fight on a loaded machine: one is faster here
        return smf.ols(FORMULA, table).fit()


def sparse_oracle(formula, frame, weight=None):
    """The (weighted) least-squares coefficients by name: formulaic's sparse design, normal equations, sparse LU."""
    matrix = formulaic.model_matrix(formula, frame, output="sparse")
    X = matrix.rhs.tocsc()
    y = np.asarray(matrix.lhs.todense()).ravel() if hasattr(matrix.lhs, "todense") else np.asarray(matrix.lhs).ravel()
    weighted = X.T if weight is None else X.T.multiply(weight).tocsr()
    solution = scipy_sparse_linalg.splu((weighted @ X).tocsc()).solve(weighted @ y)
    return pd.Series(solution, index=list(matrix.rhs.model_spec.column_names))


def by_name(model, values=None):
    names = ["Intercept"] + list(model.feature_names_)
    return pd.Series(np.concatenate([[model.intercept_], model.coef_ if values is None else values]), index=names)


def assert_coefficients(model, expected, tol=1e-8):
    got = by_name(model)
    assert sorted(got.index) == sorted(expected.index)
    np.testing.assert_allclose(got[expected.index], expected, rtol=tol, atol=tol)


def test_frame_csv_and_parquet_fits_on_codes_equal_statsmodels(tmp_path, table, ols):
    source = FormulaSource(table, FORMULA)
    layout = source.block_candidate
    assert (layout["name"], layout["n_levels"], source.design.block) == ("firm", N_LEVELS, "C(firm)")
    # the dense formula design's names and order (formulaic's): coefficients line up with a dense fit
    dense_names = [c for c in formulaic.model_matrix(FORMULA, table).rhs.columns
                   if c != "Intercept"]
    assert source.feature_names == dense_names
    model = GDRegressor(formula=FORMULA, tol=1e-10).fit(table)
    assert model.engine_ == "statistics" and model.converged_
    assert_coefficients(model, ols.params)
    assert_coefficients(model, sparse_oracle(FORMULA, table))
    summary = model.summary_
    names = ["Intercept" if name == "(intercept)" else name for name in summary["names"]]
    some = ["Intercept", "x", "np.log(x)", "x:C(g)[T.b]", "C(firm)[T.f0001]", "C(firm)[T.f0555]",
            "C(firm)[T.f1099]"]
    got = pd.Series(summary["std_error"], index=names)[some]
    np.testing.assert_allclose(got, ols.bse[some], rtol=1e-8, err_msg="std_error")
    # p-values down to 1e-205: on the log scale (a relative error ε in t moves p by about t²·ε relative)
    got = pd.Series(summary["p_value"], index=names)[some]
    np.testing.assert_allclose(np.log(got), np.log(ols.pvalues[some]), rtol=1e-9, err_msg="p_value")
    np.testing.assert_allclose(model.predict(table), ols.fittedvalues, rtol=1e-9, atol=1e-8)
    for name in ("t.csv", "t.parquet"):
        path = write_table(table, tmp_path / name)
        source = FormulaSource(path, FORMULA, batch_rows=700)  # no chunk holds every firm
        on_file = GDRegressor(tol=1e-10).fit(source)
        assert source.block_layout is not None and on_file.feature_names_ == model.feature_names_
        assert_coefficients(on_file, ols.params)
    # the command line on the Parquet file, the model file read back
    model_path = str(tmp_path / "m.json")
    assert main(["train", path, "--formula", FORMULA, "--tol", "1e-10", "-q", "-o", model_path]) == 0
    with open(model_path) as handle:
        document = json.load(handle)
    levels = {item["factor"]: item["levels"] for item in document["formula"]["categories"]}
    assert len(levels["C(firm)"]) == N_LEVELS and levels["C(g)"] == ["a", "b", "c"]
    assert_coefficients(load(model_path), ols.params)


def test_the_fit_never_builds_a_dense_block_of_the_factor():
    table = make_table(8000, N_LEVELS, seed=3)
    dense_bytes = len(table) * N_LEVELS * 8  # the factor's one-hot block alone
    tracemalloc.start()
    try:
        model = GDRegressor(formula=FORMULA, tol=1e-10).fit(table)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < dense_bytes / 5, (peak, dense_bytes)
    assert_coefficients(model, sparse_oracle(FORMULA, table))


def test_weights_and_rows_dropped_for_missing_values(table):
    data = table.copy()
    data.loc[[5, 70], "x"] = np.nan
    data.loc[[9], "firm"] = None
    weight = np.random.default_rng(4).uniform(0.5, 2.0, len(data))
    model = GDRegressor(formula=FORMULA, missing="drop", tol=1e-10).fit(data, sample_weight=weight)
    assert model.fit_report_["missing"] == {"strategy": "drop", "rows_dropped": 3, "by_column": {"x": 2, "firm": 1}}
    kept = data.notna().all(axis=1).to_numpy()
    assert_coefficients(model, sparse_oracle(FORMULA, data[kept], weight[kept]))


def test_dense_dummies_where_a_fit_asks_equal_formulaic_and_respect_max_levels(table, monkeypatch):
    source = FormulaSource(table, FORMULA, batch_rows=1000)
    source.use_blocks(False)
    X = np.vstack([chunk.X for chunk in source.chunks()])
    expected = formulaic.model_matrix(FORMULA, table).rhs
    np.testing.assert_array_equal(X, np.asarray(expected)[:, 1:])
    source.use_blocks(True)
    chunk = next(iter(source.chunks()))
    assert chunk.X.shape[1] == 4 and chunk.codes.dtype == np.int64
    np.testing.assert_array_equal(chunk.codes, table.firm.str[1:].astype(int).to_numpy()[:len(chunk.codes)])
    monkeypatch.setattr(encoding, "MAX_LEVELS", 1000)
    source.use_blocks(False)
    with pytest.raises(DataError, match="'firm': 1100 categories, more than the 1000") as caught:
        next(iter(source.chunks()))
    assert "\n" not in str(caught.value)


def test_predictions_unseen_levels_missing_values_and_the_command_line(tmp_path, table, ols, capsys):
    model = GDRegressor(formula=FORMULA, missing="drop", tol=1e-10).fit(table)
    rows = table.head(6).copy()
    rows.loc[1, "firm"] = "Ford"
    rows.loc[2, "firm"] = None
    rows.loc[3, "x"] = np.nan
    with pytest.raises(DataError, match=r"row 1 \(0-based\), column 'firm': category 'Ford' was not in the training"):
        model.predict(rows)
    model.set_params(handle_unknown="ignore")
    predicted = model.predict(rows)
    # an unseen level ignored adds zero: the reference level's prediction (f0000 has no coefficient)
    as_reference = model.predict(rows.loc[[1]].assign(firm="f0000"))
    np.testing.assert_allclose(predicted[1], as_reference[0], rtol=1e-12)
    assert np.isnan(predicted[[2, 3]]).all()
    np.testing.assert_allclose(predicted[[0, 4, 5]], ols.fittedvalues[[0, 4, 5]], rtol=1e-9)
    # the model file: the formula and its levels, the same predictions
    path = str(tmp_path / "m.json")
    model.save(path)
    loaded = load(path)
    assert loaded.design_.block == "C(firm)"
    np.testing.assert_allclose(loaded.predict(table), ols.fittedvalues, rtol=1e-9, atol=1e-8)
    # the command line on raw files: unseen level (error, ignore), missing values (blank fields), evaluate
    data = write_table(rows, tmp_path / "new.csv")
    assert main(["predict", path, data, "--handle-unknown", "error"]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"file '{data}', line 3, column 'firm': category 'Ford'" in error, error
    assert main(["predict", path, data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "y" and lines[3:5] == ['""', '""']  # the csv module's empty field
    np.testing.assert_allclose([float(v) for v in lines[1:3] + lines[5:]], predicted[[0, 1, 4, 5]], rtol=1e-12)
    assert main(["evaluate", path, write_table(table, tmp_path / "all.parquet"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["r2"] == pytest.approx(ols.rsquared, rel=1e-9)


def test_which_factor_is_kept_as_codes(table, monkeypatch):
    frame = table.assign(shop=[f"s{c:04d}" for c in np.random.default_rng(1).permutation(np.arange(N_ROWS) % 1050)])
    # two factors of many levels: the wider one as codes, the other dense features, as for tables
    formula = "y ~ x + C(shop) + C(firm)"
    source = FormulaSource(frame, formula)
    layout = source.use_blocks() or source.block_layout
    assert source.design.block == "C(firm)" and layout["n_dense"] == 1 + 1049
    chunk = next(iter(source.chunks()))
    expected = formulaic.model_matrix(formula, frame).rhs
    dense = np.asarray(expected)[:, 1:]
    assert source.feature_names == list(expected.columns[1:])
    np.testing.assert_array_equal(chunk.X, dense[:, layout["dense_index"]])
    rows = np.flatnonzero(chunk.codes > 0)
    np.testing.assert_array_equal(dense[:, layout["level_index"]][rows, chunk.codes[rows] - 1], 1.0)
    # the factor alone: each firm's mean
    alone = GDRegressor(formula="y ~ C(firm)", tol=1e-10).fit(table)
    means = table.groupby("firm").y.mean()
    np.testing.assert_allclose(alone.predict(table), means[table.firm].to_numpy(), rtol=1e-10, atol=1e-10)
    # a factor in an interaction, or in a formula without an intercept, stays dense
    def learned(formula):  # the levels are pending until the features are asked for (or the statistics pass)
        source = FormulaSource(frame, formula)
        assert len(source.feature_names) > 1000
        return source

    assert learned("y ~ x + x:C(firm)").design.block is None
    assert learned("y ~ x + C(firm) - 1").design.block is None
    # a string column named bare is a factor too
    bare = learned("y ~ x + firm")
    assert bare.design.block == "firm" and bare.feature_names[:2] == ["x", "firm[T.f0001]"]
    # the other one beyond the dense limit: refused in one line
    monkeypatch.setattr(encoding, "MAX_LEVELS", 1000)
    with pytest.raises(DataError, match=r"factor C\(shop\) has 1050 levels, more than the 1000") as caught:
        GDRegressor(formula=formula).fit(frame)
    assert "\n" not in str(caught.value) and "(here C(firm))" in str(caught.value)


dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")
from . import test_dask  # noqa: E402

# test_dask's real cluster (worker processes: the design travels pickled), and its check that nothing is gathered
client, no_gathering = test_dask.client, test_dask.no_gathering


def test_dask_dataframe_codes_made_on_the_workers(client, table, ols, monkeypatch):
    monkeypatch.setattr(encoding, "MAX_LEVELS", 1000)  # a dense one-hot block of the firms would be refused
    frame = dd.from_pandas(table, npartitions=3)
    model = GDRegressor(formula=FORMULA, tol=1e-10).fit(frame)
    assert model.engine_ == "statistics"
    assert_coefficients(model, ols.params)
    rows = table.head(6).copy()
    rows.loc[4, "firm"] = "Ford"
    with pytest.raises(DataError, match=r"the Dask input, row 5, column 'firm': category 'Ford'"):
        model.predict(dd.from_pandas(rows, npartitions=2)).compute()
    rows.loc[4, "x"] = np.nan
    rows.loc[1, "firm"] = "Ford"
    model.set_params(handle_unknown="ignore", missing="drop")
    predicted = model.predict(dd.from_pandas(rows, npartitions=2)).compute()
    np.testing.assert_allclose(predicted, model.predict(rows), rtol=1e-12)
    assert np.isnan(predicted[4]) and np.isfinite(np.delete(predicted, 4)).all()
    np.testing.assert_allclose(predicted[1], model.predict(rows.loc[[1]].assign(firm="f0000"))[0], rtol=1e-12)
