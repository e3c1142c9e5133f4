"""Categorical columns against statsmodels' formula OLS and WLS, on real tables shipped with statsmodels.

Grunfeld's investment data (firms and years) as CSV (written by pandas'
``to_csv``, index included), Parquet, a folder of Parquet files, a pandas
DataFrame and Dask: the coefficients and every statistic (standard errors,
t, p, confidence intervals) equal ``smf.ols("invest ~ value + capital +
C(firm)")`` to 1e-8, with the same names.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

smf = pytest.importorskip("statsmodels.formula.api")
grunfeld = pytest.importorskip("statsmodels.datasets.grunfeld")

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import FileSource  # noqa: E402

from .conftest import write_table  # noqa: E402

KEYS = {"estimate": "params", "std_error": "bse", "t_value": "tvalues", "p_value": "pvalues"}


@pytest.fixture(scope="module")
def table():
    return grunfeld.load_pandas().data


def statsmodels_names(names, columns):
    """gradfit's ``firm[T.IBM]`` as a formula's ``C(firm)[T.IBM]``; ``(intercept)`` as ``Intercept``."""
    out = []
    for name in names:
        for column in columns:
            if name.startswith(column + "[T."):
                name = f"C({column})" + name[len(column):]
        out.append("Intercept" if name == "(intercept)" else name)
    return out


def assert_matches(summary, result, columns=("firm",), tol=1e-8):
    names = statsmodels_names(summary["names"], columns)
    assert sorted(names) == sorted(result.params.index), (names, list(result.params.index))
    for key, attribute in KEYS.items():
        got = pd.Series(summary[key], index=names)[result.params.index]
        expected = getattr(result, attribute)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * np.abs(expected).max() * 1e-3, err_msg=key)
    interval = result.conf_int()
    np.testing.assert_allclose(pd.Series(summary["ci_lower"], index=names)[interval.index], interval[0], rtol=tol)
    np.testing.assert_allclose(pd.Series(summary["ci_upper"], index=names)[interval.index], interval[1], rtol=tol)
    np.testing.assert_allclose(summary["r_squared"], result.rsquared, rtol=tol)


@pytest.mark.parametrize("layout", ["csv with index", "parquet", "folder"])
def test_files_equal_statsmodels_formula_ols(tmp_path, table, layout):
    if layout == "csv with index":
        path = str(tmp_path / "g.csv")
        table.to_csv(path)  # pandas' default: the index first, with a blank name
    else:
        path = write_table(table, tmp_path / ("g.parquet" if layout == "parquet" else "g"))
    source = FileSource(path, target="invest", exclude=["year"])
    model = GDRegressor(optimizer="cg").fit(source)
    assert_matches(model.summary_, smf.ols("invest ~ value + capital + C(firm)", table).fit())
    notes = model.fit_report_["notes"]
    assert any("no name" in note for note in notes) == (layout == "csv with index")


def test_dataframe_with_weights_equals_statsmodels_wls(table):
    weight = np.random.default_rng(3).uniform(0.5, 2.0, len(table))
    X = table[["value", "capital", "firm"]]
    model = GDRegressor(optimizer="cg").fit(X, table["invest"], sample_weight=weight)
    assert_matches(model.summary_, smf.wls("invest ~ value + capital + C(firm)", table, weights=weight).fit())
    assert list(model.feature_names_in_) == ["value", "capital", "firm"]
    assert model.feature_names_[2] == "firm[T.Atlantic Refining]"


def test_weights_column_in_a_file_equal_wls(tmp_path, table):
    data = table.assign(w=np.random.default_rng(4).uniform(0.5, 2.0, len(table)))
    path = write_table(data, tmp_path / "g.parquet")
    model = GDRegressor(optimizer="cg").fit(FileSource(path, "invest", exclude=["year"], sample_weight="w"))
    assert_matches(model.summary_, smf.wls("invest ~ value + capital + C(firm)", data, weights=data["w"]).fit())


def test_numeric_codes_named_categorical_and_a_named_reference(tmp_path, table):
    data = table.assign(year=table["year"].astype(int))
    path = write_table(data, tmp_path / "g.csv")
    model = GDRegressor(optimizer="cg", categorical=["year", "firm=IBM"])
    model.fit(path, "invest")
    assert "year[T.1936]" in model.feature_names_ and "firm[T.IBM]" not in model.feature_names_
    result = smf.ols("invest ~ value + capital + C(firm, Treatment('IBM')) + C(year)", data).fit()
    renamed = result.params.rename(lambda n: n.replace(", Treatment('IBM')", ""))
    got = pd.Series(model.summary_["estimate"], index=statsmodels_names(model.summary_["names"], ["firm", "year"]))
    np.testing.assert_allclose(got[renamed.index], renamed, rtol=1e-8)


def test_bool_text_and_dictionary_encoded_parquet(tmp_path, table):
    data = table.assign(big=table["value"] > 1000, firm=table["firm"].astype("category"))
    data.to_csv(tmp_path / "g.csv", index=False)  # "True"/"False" as text
    data.to_parquet(tmp_path / "g.parquet")  # firm as a dictionary column
    result = smf.ols("invest ~ value + capital + C(firm) + big", data.assign(firm=table["firm"])).fit()
    for name in ("g.csv", "g.parquet"):
        model = GDRegressor(optimizer="cg").fit(FileSource(tmp_path / name, "invest", exclude=["year"]))
        assert "big[T.True]" in model.feature_names_
        assert_matches(model.summary_, result)


def test_predict_on_raw_files_and_unseen_levels(tmp_path, table, capsys):
    path = str(tmp_path / "g.csv")
    table.to_csv(path, index=False)
    model_path = str(tmp_path / "m.json")
    assert main(["train", path, "--target", "invest", "--exclude", "year", "--optimizer", "cg", "-q",
                 "-o", model_path]) == 0
    capsys.readouterr()
    document = json.loads(open(model_path).read())
    assert document["encoding"]["columns"][2]["levels"][:2] == ["American Steel", "Atlantic Refining"]
    assert main(["predict", model_path, path]) == 0
    predicted = np.loadtxt(capsys.readouterr().out.splitlines()[1:], dtype=float)
    result = smf.ols("invest ~ value + capital + C(firm)", table).fit()
    fitted = result.fittedvalues
    np.testing.assert_allclose(predicted, fitted, rtol=1e-9)
    assert main(["evaluate", model_path, path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["r2"] == pytest.approx(result.rsquared, rel=1e-9)
    unseen = table.copy()
    unseen.loc[4, "firm"] = "Ford"
    other = str(tmp_path / "u.csv")
    unseen.to_csv(other, index=False)
    before = os.listdir(tmp_path)
    assert main(["predict", model_path, other, "-o", str(tmp_path / "p.csv")]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"file '{other}', line 6, column 'firm': category 'Ford'" in error, error
    assert os.listdir(tmp_path) == before  # nothing half written
    assert main(["predict", model_path, other, "--handle-unknown", "ignore"]) == 0
    predicted = np.loadtxt(capsys.readouterr().out.splitlines()[1:], dtype=float)
    estimator = load(model_path)
    row = unseen.loc[4]
    assert predicted[4] == pytest.approx(estimator.intercept_ + estimator.coef_[0] * row["value"]
                                         + estimator.coef_[1] * row["capital"], rel=1e-12)
    np.testing.assert_allclose(np.delete(predicted, 4), np.delete(fitted.values, 4), rtol=1e-9)
    # the estimator: the raw frame, and its own one-line error
    X = unseen[["value", "capital", "firm"]]
    with pytest.raises(DataError, match=r"row 4 \(0-based\), column 'firm': category 'Ford'"):
        estimator.predict(X)
    assert main(["inspect", model_path]) == 0
    assert "firm[T.US Steel]" in capsys.readouterr().out


def test_many_levels_are_shown_readably_by_inspect(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n, levels = 3000, 300
    data = pd.DataFrame({"x": rng.normal(size=n), "g": [f"L{i:03d}" for i in rng.integers(0, levels, n)]})
    data["y"] = data["x"] + rng.normal(size=n)
    path = write_table(data, tmp_path / "d.parquet")
    model_path = str(tmp_path / "m.json")
    assert main(["train", path, "--target", "y", "--optimizer", "cg", "-q", "-o", model_path]) == 0
    capsys.readouterr()
    assert main(["inspect", model_path]) == 0
    out = capsys.readouterr().out
    assert "g[T.L001]" in out and "g[T.L299]" not in out
    assert "more levels of g" in out


def test_errors_are_one_line(tmp_path, table, capsys):
    path = write_table(table, tmp_path / "g.parquet")
    cases = [
        (["--categorical", "firm=Ford"], "reference level 'Ford' is not among"),
        (["--categorical", "nope"], "categorical column 'nope' is not one of the features"),
        (["--exclude", "nope"], "has no column 'nope'"),
    ]
    for options, message in cases:
        assert main(["train", path, "--target", "invest", "-q"] + options) == 1
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and message in error, error


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # in-process workers: quick to start (tests/test_dask.py sends closures to worker processes)
    cluster = distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_dataframe_and_files_read_by_workers(tmp_path, table, client):
    dd = pytest.importorskip("dask.dataframe")
    from gradfit.sources import DaskSource

    result = smf.ols("invest ~ value + capital + C(firm)", table).fit()
    frame = dd.from_pandas(table, npartitions=3)
    X = frame[["value", "capital", "firm"]]
    model = GDRegressor(optimizer="cg").fit(X, frame["invest"])
    assert_matches(model.summary_, result)
    np.testing.assert_allclose(model.predict(X).compute(), result.fittedvalues, rtol=1e-9)
    path = write_table(table, tmp_path / "g")
    source = DaskSource.from_file(path, target="invest", exclude=["year"])
    assert_matches(GDRegressor(optimizer="cg").fit(source).summary_, result)
    # CSV split by the workers, with gaps left out
    gappy = table.copy()
    gappy.loc[[3, 50], "value"] = np.nan
    gappy.loc[7, "firm"] = None
    path = write_table(gappy, tmp_path / "gappy.csv")
    source = DaskSource.from_file(path, target="invest", exclude=["year"], missing="drop")
    model = GDRegressor(optimizer="cg").fit(source)
    assert model.fit_report_["missing"] == {"strategy": "drop", "rows_dropped": 3, "by_column": {"value": 2, "firm": 1}}
    assert_matches(model.summary_, smf.ols("invest ~ value + capital + C(firm)", gappy).fit())
