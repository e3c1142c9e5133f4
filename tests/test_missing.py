"""Missing values, column hygiene (--exclude, a pandas index column, bool text) against statsmodels.

statsmodels' formulas drop rows with a missing value in any used column
(``missing="drop"``); gradfit's ``missing="drop"`` must give the same fit
and say how many rows it left out, per column, in every place a fit is
reported: ``fit_report_``, the ``train`` summary, the model file, the report.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pandas as pd
import pytest

smf = pytest.importorskip("statsmodels.formula.api")
fair = pytest.importorskip("statsmodels.datasets.fair")

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import FileSource  # noqa: E402

from .conftest import write_table  # noqa: E402
from .test_categorical import assert_matches  # noqa: E402


@pytest.fixture(scope="module")
def gappy():
    """Fair's affairs data (6366 rows) with gaps in a number, a category and the target."""
    data = fair.load_pandas().data[["affairs", "rate_marriage", "age", "yrs_married", "children", "religious",
                                    "occupation"]].copy()
    data["occupation"] = data["occupation"].map({1.0: "student", 2.0: "farming", 3.0: "white collar",
                                                 4.0: "teacher", 5.0: "manager", 6.0: "professional"})
    rng = np.random.default_rng(1)
    for column, count in (("age", 40), ("occupation", 25), ("affairs", 10)):
        data.loc[rng.choice(len(data), count, replace=False), column] = np.nan
    return data


FORMULA = "affairs ~ rate_marriage + age + yrs_married + children + religious + C(occupation)"


def test_drop_equals_statsmodels_and_is_counted(tmp_path, gappy, capsys):
    result = smf.ols(FORMULA, gappy).fit()
    expected = {"age": int(gappy["age"].isna().sum()), "occupation": int(gappy["occupation"].isna().sum()),
                "affairs": int(gappy["affairs"].isna().sum())}
    dropped = len(gappy) - int(result.nobs)
    for name in ("d.csv", "d.parquet", "d"):
        path = write_table(gappy, tmp_path / name)
        model = GDRegressor(optimizer="cg", missing="drop").fit(path, "affairs")
        assert_matches(model.summary_, result, columns=("occupation",))
        assert model.fit_report_["missing"] == {"strategy": "drop", "rows_dropped": dropped, "by_column": expected}
        assert model.n_samples_ == result.nobs
        if name == "d.parquet":  # minibatches read the rows kept, from the row cache
            source = FileSource(path, "affairs", missing="drop")
            assert source.n_samples == result.nobs
            kept = gappy.dropna()["affairs"].to_numpy()
            np.testing.assert_array_equal(source.take(np.array([0, 5, 6000])).y[:, 0], kept[[0, 5, 6000]])
    frame = GDRegressor(optimizer="cg", missing="drop").fit(gappy.drop(columns="affairs"), gappy["affairs"])
    assert_matches(frame.summary_, result, columns=("occupation",))
    assert frame.fit_report_["missing"]["rows_dropped"] == dropped
    # the command line: the summary, the model file, the report
    path = str(tmp_path / "d.csv")
    model_path, report = str(tmp_path / "m.json"), str(tmp_path / "r.html")
    assert main(["train", path, "--target", "affairs", "--missing", "drop", "--optimizer", "cg", "-q",
                 "-o", model_path, "--report", report]) == 0
    out = capsys.readouterr().out
    assert f"missing values: {dropped} of {len(gappy)} rows left out ('age': 40, 'occupation': 25, 'affairs': 10)" in out
    document = json.loads(open(model_path).read())
    assert document["diagnostics"]["missing"]["by_column"] == expected
    assert document["settings"]["missing"] == "drop"
    assert "rows left out" in open(report).read()


def test_predict_keeps_one_line_per_row(tmp_path, gappy, capsys):
    path = write_table(gappy, tmp_path / "d.csv")
    model_path = str(tmp_path / "m.json")
    assert main(["train", path, "--target", "affairs", "--missing", "drop", "--optimizer", "cg", "-q",
                 "-o", model_path]) == 0
    capsys.readouterr()
    assert main(["predict", model_path, path]) == 0
    lines = [row[0] for row in csv.reader(io.StringIO(capsys.readouterr().out))]  # "" quotes an empty field
    assert lines[0] == "affairs" and len(lines) == len(gappy) + 1
    features = gappy.drop(columns="affairs")
    blank = features.isna().any(axis=1).to_numpy()
    assert all((line == "") == flag for line, flag in zip(lines[1:], blank))
    fitted = smf.ols(FORMULA, gappy).fit().predict(gappy)
    got = np.array([float(line) for line in lines[1:] if line])
    np.testing.assert_allclose(got, fitted[~blank], rtol=1e-9)
    # the estimator: NaN in the rows with a missing value
    predicted = load(model_path).predict(features)
    assert np.array_equal(np.isnan(predicted), blank)
    # evaluate leaves them out; --missing error refuses them in one line
    assert main(["evaluate", model_path, path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == len(gappy) - int(
        (blank | gappy["affairs"].isna().to_numpy()).sum())
    assert main(["predict", model_path, path, "--missing", "error"]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "missing value" in error and "column 'age'" in error and "line " in error, error


def test_missing_error_is_the_default_and_one_line(tmp_path, gappy, capsys):
    path = write_table(gappy, tmp_path / "d.csv")
    before = sorted(os.listdir(tmp_path))
    assert main(["train", path, "--target", "affairs", "-q", "-o", str(tmp_path / "m.json")]) == 1
    error = capsys.readouterr().err.strip()
    # the levels are learned in the statistics pass, which names the first column with a gap (in column
    # order: 'age' before 'occupation') in the first chunk that has one, as every pass does
    first = int(np.flatnonzero(gappy["age"].isna())[0])
    assert "\n" not in error and f"line {first + 2}, column 'age'" in error, error
    assert sorted(os.listdir(tmp_path)) == before
    with pytest.raises(DataError, match="missing value in the input, row .* column 'age'"):
        GDRegressor().fit(gappy.drop(columns="affairs"), gappy["affairs"].fillna(0))


def test_exclude_index_column_and_bool_text(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 200
    data = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "flag": rng.random(n) < 0.4,
                         "noise": rng.normal(size=n)})
    data["y"] = 1 + 2 * data["a"] - data["b"] + 3 * data["flag"] + 0.1 * rng.normal(size=n)
    path = str(tmp_path / "d.csv")
    data.to_csv(path)  # the index first, with a blank name; flag as "True"/"False"
    model_path = str(tmp_path / "m.json")
    assert main(["train", path, "--target", "y", "--exclude", "noise", "--optimizer", "cg", "-q",
                 "-o", model_path]) == 0
    out = capsys.readouterr().out
    assert "the first column has no name" in out
    model = load(model_path)
    assert model.feature_names_ == ["a", "b", "flag[T.True]"]
    result = smf.ols("y ~ a + b + flag", data).fit()
    assert_matches(model.summary_, result, columns=())
    # predict on the same file: the index column is not asked for
    assert main(["predict", model_path, path]) == 0
    predicted = np.array(capsys.readouterr().out.splitlines()[1:], dtype=float)
    np.testing.assert_allclose(predicted, result.fittedvalues, rtol=1e-9)
    # --categorical none: bool text is read as 1/0
    assert main(["train", path, "--target", "y", "--exclude", "noise", "--categorical", "none",
                 "--optimizer", "cg", "-q", "-o", model_path]) == 0
    assert load(model_path).feature_names_ == ["a", "b", "flag"]
    assert main(["train", path, "--target", "y", "--exclude", "noise", "--features", "a", "-q"]) == 1
    assert "not both" in capsys.readouterr().err


def test_rows_keep_their_numbers_after_rows_are_dropped(tmp_path, capsys):
    rows = ["a,g,y", "1,p,2", ",q,3", "2,,4", "3,p,5", "4,q,inf", "5,p,6"]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    assert main(["train", str(path), "--target", "y", "--missing", "drop", "-q"]) == 1
    error = capsys.readouterr().err.strip()
    assert "line 6, column 'y'" in error and "infinite" in error, error


def test_numpy_arrays_drop_rows_with_nan(gappy):
    data = gappy.drop(columns="occupation").dropna(subset=["affairs"])  # NaN targets: scikit-learn's error
    X, y = data.drop(columns="affairs").to_numpy(), data["affairs"].to_numpy()
    model = GDRegressor(optimizer="cg", missing="drop").fit(X, y)
    result = smf.ols("affairs ~ rate_marriage + age + yrs_married + children + religious", data).fit()
    np.testing.assert_allclose(model.summary_["std_error"], result.bse, rtol=1e-8)
    assert model.fit_report_["missing"]["by_column"] == {"x1": int(np.isnan(X[:, 1]).sum())}
    predicted = model.predict(X)
    assert np.array_equal(np.isnan(predicted), np.isnan(X).any(axis=1))
