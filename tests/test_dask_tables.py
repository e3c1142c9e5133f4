"""Real tables as Dask dataframes: categories, bools, nullable columns and gaps, against statsmodels and lstsq.

Grunfeld's investment data (statsmodels) with a firm column as pandas
``category``, ``object`` or ``string[pyarrow]``, a bool column, a nullable
``Int64`` year, a decade taken as categorical by name, and missing values
injected in several columns (NaN, None, ``pd.NA``): fitted on a real cluster
(worker processes: tests/test_dask.py's fixtures) with ``missing="drop"``,
the coefficients, standard errors and p-values equal statsmodels' formula
OLS (which drops the same rows) to 1e-8, and the missing values per column
pandas' own counts. A categorical column of ~1500 levels fitted through Dask
(dataframe and Parquet read by the workers) equals ``numpy.linalg.lstsq`` on
the dense design, with ``encoding.MAX_LEVELS`` lowered so that a dense
one-hot block would have been refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")
smf = pytest.importorskip("statsmodels.formula.api")
grunfeld = pytest.importorskip("statsmodels.datasets.grunfeld")

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import DaskSource, FileSource, encoding  # noqa: E402

from .conftest import write_table  # noqa: E402
from .test_categorical_blocks import dense_design, lstsq, make_table  # noqa: E402
from . import test_dask  # noqa: E402

# test_dask's real cluster, and its check that nothing is gathered to the client (autouse)
client, no_gathering = test_dask.client, test_dask.no_gathering

FEATURES = ["value", "capital", "firm", "year", "large", "decade"]
#: statsmodels' names of gradfit's categorical terms (firm's reference named: Chrysler)
TERMS = {"firm": "C(firm, Treatment('Chrysler'))", "large": "C(large)", "decade": "C(decade)"}
FORMULA = "invest ~ value + capital + C(firm, Treatment('Chrysler')) + year + C(large) + C(decade)"
KEYS = {"estimate": "params", "std_error": "bse", "p_value": "pvalues", "t_value": "tvalues"}


def gappy_table(firm_dtype):
    """Grunfeld with a bool, a nullable year, a decade (numeric codes) and gaps in five columns."""
    table = grunfeld.load_pandas().data.copy()
    table["year"] = pd.array(table["year"].astype(int), dtype="Int64")
    table["decade"] = (table["year"].astype(int) // 10 * 10).astype(np.int64)
    table["large"] = pd.array(table["capital"] > table["capital"].median(), dtype="boolean")
    table["firm"] = table["firm"].astype(firm_dtype)
    table.loc[[3, 50, 190], "value"] = np.nan
    table.loc[[7, 120], "firm"] = None
    table.loc[[11], "year"] = pd.NA
    table.loc[[64, 65], "large"] = pd.NA
    table.loc[[99, 150], "invest"] = np.nan
    return table[FEATURES + ["invest"]]


def for_statsmodels(table):
    """The same table as patsy takes it: missing values as NaN or None (patsy cannot sort pd.NA)."""
    plain = table.copy()
    plain["year"] = table["year"].astype("float64")
    plain["large"] = table["large"].astype(object).where(table["large"].notna(), None)
    plain["firm"] = table["firm"].astype(object).where(table["firm"].notna(), None)
    return plain


def statsmodels_name(name):
    if name == "(intercept)":
        return "Intercept"
    column, bracket, level = name.partition("[")
    return TERMS[column] + bracket + level if bracket else name


def assert_matches_statsmodels(summary, result, tol=1e-8):
    names = [statsmodels_name(name) for name in summary["names"]]
    assert sorted(names) == sorted(result.params.index), (names, list(result.params.index))
    for key, attribute in KEYS.items():
        got = pd.Series(summary[key], index=names)[result.params.index]
        expected = getattr(result, attribute)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * 1e-3 * np.abs(expected).max(), err_msg=key)


def as_dask(table, client, npartitions=4):
    frame = client.persist(dd.from_pandas(table, npartitions=npartitions))
    return frame[FEATURES], frame["invest"]


@pytest.mark.parametrize("firm_dtype", ["category", "string[pyarrow]"])  # "object": the weighted case
def test_real_table_with_gaps_equals_statsmodels_formula_ols(client, firm_dtype):
    table = gappy_table(firm_dtype)
    X, y = as_dask(table, client)
    model = GDRegressor(missing="drop", categorical=["decade", "firm=Chrysler"], optimizer="cg").fit(X, y)
    result = smf.ols(FORMULA, for_statsmodels(table)).fit()
    assert model.n_samples_ == result.nobs == 210
    assert_matches_statsmodels(model.summary_, result)
    counts = {name: int(n) for name, n in table.isna().sum().items() if n}
    assert model.fit_report_["missing"] == {"strategy": "drop", "rows_dropped": 10, "by_column": counts}
    assert model.fit_report_["notes"][0].startswith("missing values: 10 of 220 rows left out ('value': 3")
    # one prediction per input row; a row with a missing feature is NaN, as for pandas
    predictions = model.predict(X).compute()
    pandas = GDRegressor(missing="drop", categorical=["decade", "firm=Chrysler"], optimizer="cg").fit(table[FEATURES],
                                                                                     table["invest"])
    expected = pandas.predict(table[FEATURES])
    assert predictions.shape == (220,) and np.isnan(predictions).sum() == 8
    np.testing.assert_allclose(predictions, expected, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(predictions[~np.isnan(predictions)][:5],
                               result.fittedvalues.to_numpy()[:5], rtol=1e-9)


def test_weights_with_gaps_equal_statsmodels_wls(client):
    table = gappy_table("object")
    table["weight"] = np.random.default_rng(3).uniform(0.5, 2.0, len(table))
    table.loc[[20, 99], "weight"] = np.nan  # row 99 has no target either: counted in both columns
    frame = client.persist(dd.from_pandas(table, npartitions=3))
    model = GDRegressor(missing="drop", categorical=["decade", "firm=Chrysler"], optimizer="cg").fit(
        frame[FEATURES], frame["invest"], sample_weight=frame["weight"])
    kept = for_statsmodels(table).dropna()
    result = smf.wls(FORMULA, kept, weights=kept["weight"]).fit()
    assert model.n_samples_ == result.nobs == 209
    assert_matches_statsmodels(model.summary_, result)
    gaps = table.drop(columns="weight").isna().sum()  # the weights are counted as "sample_weight", as for pandas
    assert model.fit_report_["missing"]["by_column"] == {name: int(n) for name, n in gaps.items()
                                                         if n} | {"sample_weight": 2}


def test_gaps_in_the_model_file_and_rows_named_by_their_place(client, tmp_path):
    table = gappy_table("category")
    X, y = as_dask(table, client)
    model = GDRegressor(missing="drop", categorical=["decade"]).fit(X, y)
    model.save(tmp_path / "model.json")
    loaded = load(tmp_path / "model.json")
    assert loaded.fit_report_["missing"]["by_column"] == model.fit_report_["missing"]["by_column"]
    np.testing.assert_allclose(loaded.predict(X).compute(), model.predict(X).compute(), rtol=1e-12,
                               equal_nan=True)
    # an infinite value after rows left out is named by its row in the input (counted from 1)
    bad = table.copy()
    bad.loc[160, "capital"] = np.inf
    X, y = as_dask(bad, client)
    with pytest.raises(DataError, match=r"row 161, column 'capital'"):
        GDRegressor(missing="drop").fit(X, y)
    # without missing="drop", the first gap is one line naming its row and column
    with pytest.raises(DataError, match=r"^missing value in the Dask input at row 4, column 'value'; .*drop"):
        GDRegressor().fit(*as_dask(gappy_table("category"), client, npartitions=1))


def test_minibatches_with_rows_left_out_give_the_in_memory_iterates(client, tmp_path):
    table = gappy_table("object")
    settings = dict(missing="drop", engine="pass", batch_size=70, epochs=1, tol=None, random_state=4,
                    categorical=["decade"])
    on_dask = GDRegressor(**settings).fit(*as_dask(table, client))
    in_memory = GDRegressor(**settings).fit(table[FEATURES], table["invest"])
    np.testing.assert_allclose(on_dask.coef_, in_memory.coef_, rtol=1e-10)
    np.testing.assert_allclose(on_dask.loss_curve_, in_memory.loss_curve_, rtol=1e-10)
    # a folder of Parquet files read by the workers: the rows kept counted per block at the first minibatch
    path = write_table(table, tmp_path / "folder")
    options = dict(target="invest", missing="drop", categorical=["decade"])
    del settings["missing"], settings["categorical"]
    on_workers = GDRegressor(**settings).fit(DaskSource.from_file(path, block_rows=64, **options).persist())
    streamed = GDRegressor(**settings).fit(FileSource(path, **options))
    np.testing.assert_allclose(on_workers.coef_, streamed.coef_, rtol=1e-10)
    np.testing.assert_allclose(on_workers.coef_, in_memory.coef_, rtol=1e-10)


def test_dask_arrays_with_gaps_give_the_numpy_fit(client):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(8)
    X = rng.normal(size=(600, 3)) + 2.0
    y = X @ [1.0, -2.0, 0.5] + rng.normal(size=600)
    weight = rng.uniform(0.5, 2.0, 600)
    X[[3, 140, 599], 0], X[[70], 2], weight[[140, 300]] = np.nan, np.nan, np.nan
    settings = dict(missing="drop", engine="statistics", epochs=100, tol=None)
    arrays = client.persist([da.from_array(X, chunks=(150, 2)), da.from_array(y, chunks=200),
                             da.from_array(weight, chunks=150)])
    model = GDRegressor(**settings).fit(*arrays[:2], sample_weight=arrays[2])
    keep = ~np.isnan(X).any(axis=1) & ~np.isnan(weight)
    reference = GDRegressor(**settings).fit(X[keep], y[keep], sample_weight=weight[keep])
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-10)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=1e-10)
    assert model.fit_report_["missing"] == {
        "strategy": "drop", "rows_dropped": 5, "by_column": {"x0": 3, "x2": 1, "sample_weight": 2}}
    assert not hasattr(model, "feature_names_in_") and model.n_features_in_ == 3
    expected = X @ reference.coef_ + reference.intercept_  # NaN where a feature is missing: one value a row
    np.testing.assert_allclose(model.predict(arrays[0]).compute(), expected, rtol=1e-10, equal_nan=True)


@pytest.fixture
def many_levels(monkeypatch):
    """A dense column may have at most 1000 levels: a fit that made the 1500-level one dense would fail."""
    monkeypatch.setattr(encoding, "MAX_LEVELS", 1000)
    frame, y = make_table(3200, 1500, 2, seed=21)
    frame["y"] = y
    design = dense_design(frame.drop(columns="y"))
    return frame, design, lstsq(design, y)


def test_a_column_of_1500_levels_through_dask_equals_dense_lstsq(client, many_levels, tmp_path):
    frame, design, (coef, intercept) = many_levels
    scale = np.abs(coef).max()
    X = client.persist(dd.from_pandas(frame, npartitions=5))
    model = GDRegressor(tol=1e-10).fit(X[["x0", "g", "x1"]], X["y"])
    assert model.engine_ == "statistics" and model.feature_names_ == list(design.columns)
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-8, atol=1e-8 * scale)
    np.testing.assert_allclose(model.intercept_, intercept, rtol=1e-8, atol=1e-8 * scale)
    # predictions gather each row's level coefficient on the workers
    np.testing.assert_allclose(model.predict(X[["x0", "g", "x1"]]).compute(), design.to_numpy() @ coef + intercept,
                               rtol=1e-9, atol=1e-9 * scale)
    # an unseen level, ignored: that row's level adds zero (its code -1 gathers 0)
    unseen = frame[["x0", "g", "x1"]].copy()
    unseen.loc[5, "g"] = "never seen"
    got = model.set_params(handle_unknown="ignore").predict(dd.from_pandas(unseen, npartitions=2)).compute()
    expected = design.to_numpy() @ model.coef_ + model.intercept_
    expected[5] = model.intercept_ + unseen.loc[5, "x0"] * model.coef_[0] + unseen.loc[5, "x1"] * model.coef_[-1]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * scale)
    # the same table as a folder of Parquet files read by the workers, and through the CLI
    path = write_table(frame, tmp_path / "folder")
    source = DaskSource.from_file(path, target="y")
    assert source.block_candidate["n_levels"] == 1500
    from_file = GDRegressor(tol=1e-10).fit(source)
    np.testing.assert_allclose(from_file.coef_, coef, rtol=1e-8, atol=1e-8 * scale)
    out = tmp_path / "model.json"
    options = ["--dask", client.scheduler.address, "--tol", "1e-10", "-q", "-o", str(out)]
    assert main(["train", path, "--target", "y", *options]) == 0
    np.testing.assert_allclose(load(out).coef_, coef, rtol=1e-8, atol=1e-8 * scale)


def test_other_fits_on_many_levels_equal_the_dense_fit(client, monkeypatch):
    """A pass fit (Huber) on a column of many levels: dummies made on the workers, or (with the pass engine
    on codes) the codes: the iterates of the dense in-memory fit either way."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)  # 60 levels: a block candidate, dense within MAX_LEVELS
    frame, y = make_table(2000, 60, 2, seed=22)
    X = client.persist(dd.from_pandas(frame, npartitions=4))
    settings = dict(loss="huber", epsilon=2.0, engine="pass", epochs=5, tol=None)
    on_dask = GDRegressor(**settings).fit(X, y)
    in_memory = GDRegressor(**settings).fit(dense_design(frame), y)
    np.testing.assert_allclose(on_dask.coef_, in_memory.coef_, rtol=1e-10, atol=1e-12)
    # Huber's optimizer="newton" by name beyond MAX_LEVELS: before, a one-line refusal ("60 categories, more than
    # the 50"); now the method "auto" runs, on the level blocks (the inliers' level moments summed on the workers)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 50)
    by_name = GDRegressor(loss="huber", epsilon=2.0, optimizer="newton", tol=1e-9).fit(X, y)
    assert by_name.converged_ and by_name.engine_ == "pass"
    np.testing.assert_allclose(by_name.coef_, GDRegressor(loss="huber", epsilon=2.0, tol=1e-9).fit(frame, y).coef_,
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("handle_unknown", ["error", "ignore"])
def test_unseen_levels_in_dask_predictions(client, handle_unknown):
    table = grunfeld.load_pandas().data
    train = table[table["firm"] != "IBM"]
    model = GDRegressor(handle_unknown=handle_unknown).fit(
        dd.from_pandas(train[["value", "capital", "firm"]], npartitions=3), dd.from_pandas(train["invest"], 3))
    X = dd.from_pandas(table[["value", "capital", "firm"]], npartitions=3)
    if handle_unknown == "error":
        first = int(np.flatnonzero(table["firm"].to_numpy() == "IBM")[0])
        with pytest.raises(DataError, match=rf"row {first + 1}, column 'firm': category 'IBM' was not in"):
            model.predict(X).compute()
        return
    predictions = model.predict(X).compute()
    expected = model.predict(table[["value", "capital", "firm"]])  # pandas: the level adds zero
    np.testing.assert_allclose(predictions, expected, rtol=1e-12)
    ibm = (table["firm"] == "IBM").to_numpy()
    np.testing.assert_allclose(predictions[ibm], model.intercept_ + table.loc[ibm, ["value", "capital"]].to_numpy()
                               @ model.coef_[:2], rtol=1e-12)
