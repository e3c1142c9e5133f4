"""Formulas (formulaic) against statsmodels' formula OLS, streamed, in memory and on Dask.

``GDRegressor(formula=...)`` and ``gradfit train --formula`` must give
statsmodels' ``smf.ols(formula, data)`` statistics to 1e-8 whatever the
chunking: a file read 50 rows at a time sees each firm in a different
chunk, so the levels must be merged over the chunks, not taken from the first.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

smf = pytest.importorskip("statsmodels.formula.api")
grunfeld = pytest.importorskip("statsmodels.datasets.grunfeld")
pytest.importorskip("formulaic")

from gradfit import DataError, GDRegressor, OptionError, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources.formulas import FormulaSource  # noqa: E402

from .conftest import write_table  # noqa: E402

FORMULA = "invest ~ np.log(value) + C(firm) + capital:value + C(year)"


@pytest.fixture(scope="module")
def table():
    return grunfeld.load_pandas().data


def assert_same(summary, result, tol=1e-8):
    names = ["Intercept" if n == "(intercept)" else n for n in summary["names"]]
    assert sorted(names) == sorted(result.params.index)
    for key, attribute in (("estimate", "params"), ("std_error", "bse"), ("p_value", "pvalues")):
        got = pd.Series(summary[key], index=names)[result.params.index]
        np.testing.assert_allclose(got, getattr(result, attribute), rtol=tol, err_msg=key)


def test_dataframe_and_streamed_files_equal_statsmodels(tmp_path, table):
    result = smf.ols(FORMULA, table).fit()
    model = GDRegressor(optimizer="cg", formula=FORMULA).fit(table)
    assert_same(model.summary_, result)
    np.testing.assert_allclose(model.predict(table), result.fittedvalues, rtol=1e-9)
    for name in ("g.csv", "g"):
        path = write_table(table, tmp_path / name)
        # 50 rows a chunk: no chunk holds every firm or year
        source = FormulaSource(path, FORMULA, batch_rows=50)
        assert_same(GDRegressor(optimizer="cg").fit(source).summary_, result)


def test_weights_and_missing_values(table):
    data = table.copy()
    data.loc[[2, 40], "capital"] = np.nan
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(data))
    formula = "invest ~ value + capital + C(firm)"
    result = smf.wls(formula, data, weights=weight).fit()
    model = GDRegressor(optimizer="cg", formula=formula, missing="drop").fit(data, sample_weight=weight)
    assert_same(model.summary_, result)
    assert model.fit_report_["missing"] == {"strategy": "drop", "rows_dropped": 2, "by_column": {"capital": 2}}
    predicted = model.predict(data)
    assert np.isnan(predicted[[2, 40]]).all() and np.isfinite(np.delete(predicted, [2, 40])).all()
    with pytest.raises(DataError, match=r"missing value in the input, row 2 \(0-based\), column 'capital'"):
        GDRegressor(formula=formula).fit(data)


def test_command_line_train_predict_and_the_model_file(tmp_path, table, capsys):
    path = write_table(table, tmp_path / "g.csv")
    model_path = str(tmp_path / "m.json")
    assert main(["train", path, "--formula", FORMULA, "--optimizer", "cg", "-q", "-o", model_path]) == 0
    capsys.readouterr()
    document = json.loads(open(model_path).read())
    assert document["formula"]["formula"] == FORMULA
    assert document["feature_names"][0] == "np.log(value)"
    result = smf.ols(FORMULA, table).fit()
    assert_same(load(model_path).summary_, result)
    assert main(["predict", model_path, path]) == 0
    predicted = np.array(capsys.readouterr().out.splitlines()[1:], dtype=float)
    np.testing.assert_allclose(predicted, result.fittedvalues, rtol=1e-9)
    unseen = table.copy()
    unseen.loc[9, "firm"] = "Ford"
    other = write_table(unseen, tmp_path / "u.csv")
    assert main(["predict", model_path, other]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"file '{other}', line 11, column 'firm': category 'Ford'" in error, error


@pytest.mark.parametrize("formula, fit_intercept, message", [
    ("invest ~ value + C(firm) - 1", True, "has no intercept"),
    ("invest ~ center(value)", True, "state of their own"),
    ("invest ~ value + scale(capital)", True, "learns a state"),
    ("invest ~ value +", True, "formula"),
])
def test_refusals_are_one_line(table, formula, fit_intercept, message):
    with pytest.raises((OptionError, DataError), match=message) as caught:
        GDRegressor(formula=formula, fit_intercept=fit_intercept).fit(table)
    assert "\n" not in str(caught.value)


def test_dask_dataframe(table):
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    formula = "invest ~ np.log(value) + C(firm) + capital"
    result = smf.ols(formula, table).fit()
    with distributed.Client(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None):
        frame = dd.from_pandas(table, npartitions=4)
        model = GDRegressor(optimizer="cg", formula=formula).fit(frame)
    assert_same(model.summary_, result)


def test_categories_are_named_in_the_formula_not_beside_it(table, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"C\(column\)"):
        GDRegressor(formula="invest ~ value", categorical=["firm"]).fit(table)
    path = write_table(table, tmp_path / "g.csv")
    assert main(["train", path, "--formula", "invest ~ value", "--categorical", "firm", "-q"]) == 2
    assert "--categorical: not allowed with --formula" in capsys.readouterr().err

