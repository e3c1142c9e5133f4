"""A formula's model spec is learned in the statistics pass: the table is read once, and the fit is statsmodels'.

The oracle is statsmodels' formula OLS / WLS on the whole table in memory
(its own design matrix, built by patsy, not formulaic). The tables are
Grunfeld's firms and years with gaps inserted, read in batches of 37 rows:
the first batch holds neither the reference firm (``American Steel``, the
first in sorted order, whose rows come last) nor most firms, so every batch
is encoded against its own levels and merged by column name. Reads are
counted by a subclass that counts the passes over the table (the one place
:class:`FormulaSource` reads rows from), or, on Dask, the partitions loaded.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

smf = pytest.importorskip("statsmodels.formula.api")
grunfeld = pytest.importorskip("statsmodels.datasets.grunfeld")
pytest.importorskip("formulaic")

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.sources.formulas import FormulaSource  # noqa: E402

from .conftest import write_table  # noqa: E402

#: main effects of a string and an int-coded category, interactions of a category with a number and with
#: another category, stateless transforms
FORMULA = ("invest ~ np.log(value) + I(np.log(capital)**2) + C(firm) + C(decade) + C(firm):capital "
           "+ C(half):C(decade)")

#: sum coding's columns depend on the levels a part holds (the last level is -1): not merged by name
SUM_CODED = "invest ~ value + C(firm, contr.sum)"


class CountingSource(FormulaSource):
    """A :class:`FormulaSource` that counts its passes over the table (for this test only)."""

    def __init__(self, *args, **kwargs):
        self.passes = 0
        super().__init__(*args, **kwargs)

    def _frames(self):
        self.passes += 1
        yield from super()._frames()


@pytest.fixture(scope="module")
def table():
    data = grunfeld.load_pandas().data
    data["decade"] = (data["year"] // 10).astype(int)  # 193, 194, 195: numbers taken as categories
    data["half"] = np.where(data["year"] % 2 == 0, "even", "odd")
    # the reference firm's rows last: no batch but the last holds it
    return data.sort_values("firm", key=lambda firm: firm == "American Steel", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def gappy(table):
    data = table.copy()
    data.loc[[5, 61, 150], "capital"] = np.nan
    data.loc[[61, 100], "value"] = np.nan
    return data


def design_scatter(result):
    """statsmodels' design (patsy's), and the weighted centred scatter of ``[X, y]`` without the intercept."""
    model = result.model
    names = [n for n in model.exog_names if n != "Intercept"]
    Z = np.column_stack([pd.DataFrame(model.exog, columns=model.exog_names)[names].to_numpy(), model.endog])
    weight = getattr(model, "weights", None)
    weight = np.ones(len(Z)) if np.isscalar(weight) or weight is None else weight
    mean = weight @ Z / weight.sum()
    centred = Z - mean
    return names, mean, (centred * weight[:, None]).T @ centred


def assert_statsmodels(model, result, statistics, rtol=1e-8):
    """Coefficients, standard errors, p-values, and the statistics themselves, against statsmodels."""
    summary = model.summary_
    names = ["Intercept" if n == "(intercept)" else n for n in summary["names"]]
    assert sorted(names) == sorted(result.params.index)
    for key, attribute in (("estimate", "params"), ("std_error", "bse"), ("p_value", "pvalues")):
        got = pd.Series(summary[key], index=names)[result.params.index]
        np.testing.assert_allclose(got, getattr(result, attribute), rtol=rtol, err_msg=key)
    oracle_names, mean, scatter = design_scatter(result)
    order = [model.feature_names_.index(n) for n in oracle_names] + [len(model.feature_names_)]
    np.testing.assert_allclose(statistics.mean[order], mean, rtol=1e-12, atol=1e-12 * np.abs(mean).max())
    np.testing.assert_allclose(statistics.scatter[np.ix_(order, order)], scatter, rtol=1e-9,
                               atol=1e-11 * np.abs(scatter).max())


@pytest.mark.parametrize("name", ["g.csv", "g.parquet", "folder"])
def test_a_streamed_file_is_read_once_and_equals_statsmodels(tmp_path, gappy, name):
    path = write_table(gappy, tmp_path / name)
    source = CountingSource(path, FORMULA, batch_rows=37, missing="drop")
    assert source.passes == 0 and source.levels_pending  # nothing read yet
    model = GDRegressor(tol=1e-12, missing="drop").fit(source)
    assert source.passes == 1, "the statistics engine's fit reads the table once"
    assert model.engine_ == "statistics" and model.converged_
    result = smf.ols(FORMULA, gappy).fit()  # statsmodels drops the rows with a gap
    assert_statsmodels(model, result, model._fit_result.statistics)
    gaps = gappy[["invest", "value", "capital", "firm", "decade", "half"]].isna()
    assert source.missing_counts == {c: int(n) for c, n in gaps.sum().items() if n}
    assert source.rows_dropped == int(gaps.any(axis=1).sum()) == 4
    assert model.fit_report_["missing"]["rows_dropped"] == 4


def test_parts_meeting_the_levels_seen_before_are_encoded_against_them(tmp_path, gappy):
    """Shuffled rows: the first batch lacks one firm, the second brings it, every later one holds known levels
    only (encoded once against the levels seen so far, a level they lack a column of zeros)."""
    shuffled = gappy.sample(frac=1, random_state=6)
    firms = [shuffled["firm"].iloc[:37 * k].nunique() for k in (1, 2)]
    assert firms == [10, 11]
    source = CountingSource(write_table(shuffled, tmp_path / "s.parquet"), FORMULA, batch_rows=37, missing="drop")
    model = GDRegressor(tol=1e-12, missing="drop").fit(source)
    assert source.passes == 1
    assert_statsmodels(model, smf.ols(FORMULA, gappy).fit(), model._fit_result.statistics)


def test_weights_equal_weighted_least_squares_and_the_model_file_predicts_the_same(tmp_path, gappy):
    data = gappy.assign(weight=np.random.default_rng(1).uniform(0.5, 2.0, len(gappy)))
    path = write_table(data, tmp_path / "w.parquet")
    source = CountingSource(path, FORMULA, batch_rows=37, missing="drop", sample_weight="weight")
    model = GDRegressor(tol=1e-12, missing="drop").fit(source)
    assert source.passes == 1
    kept = data.dropna(subset=["capital", "value"])
    result = smf.wls(FORMULA, kept, weights=kept["weight"]).fit()
    assert_statsmodels(model, result, model._fit_result.statistics)
    model_path = str(tmp_path / "m.json")
    model.save(model_path)
    loaded = load(model_path)
    assert loaded.design_.categories == model.design_.categories
    predicted = loaded.predict(kept)
    np.testing.assert_array_equal(predicted, model.predict(kept))
    np.testing.assert_allclose(predicted, result.fittedvalues, rtol=1e-9)


def test_a_dataframe_takes_the_same_path(gappy):
    formula = "invest ~ C(firm):np.log(value) + C(decade) + I(np.log(capital)**2)"
    source = CountingSource(gappy, formula, missing="drop")
    model = GDRegressor(tol=1e-12, missing="drop").fit(source)
    assert source.passes == 1
    result = smf.ols(formula, gappy).fit()
    assert_statsmodels(model, result, model._fit_result.statistics)
    # and through the estimator's own formula parameter
    direct = GDRegressor(formula=formula, tol=1e-12, missing="drop").fit(gappy)
    np.testing.assert_allclose(direct.coef_, model.coef_, rtol=1e-12)
    assert direct.feature_names_ == model.feature_names_


def test_a_coding_the_pass_cannot_merge_is_learned_apart_and_stays_exact(table):
    """The levels are learned by a pass of their own, and the fit is exact."""
    source = CountingSource(table, SUM_CODED)
    model = GDRegressor(tol=1e-12).fit(source)
    # the statistics pass, which stops at its first part, then the levels, then the statistics
    assert source.passes == 3
    assert_least_squares(model, SUM_CODED, table)



def assert_least_squares(model, formula, table):
    """The coefficients of ``formula`` by numpy's least squares on formulaic's design of the whole table."""
    matrices = pytest.importorskip("formulaic").model_matrix(formula, table)
    expected, *_ = np.linalg.lstsq(np.asarray(matrices.rhs, dtype=float), table["invest"].to_numpy(), rcond=None)
    names = list(matrices.rhs.columns)
    got = np.r_[model.intercept_, model.coef_[[model.feature_names_.index(n) for n in names[1:]]]]
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_missing_values_are_named_by_their_line_in_the_pass(tmp_path, gappy):
    path = write_table(gappy.drop(index=[5]), tmp_path / "g.csv")  # the first gap in the second batch
    with pytest.raises(DataError, match=rf"missing value in file '{path}', line 62, column 'capital'"):
        GDRegressor().fit(FormulaSource(path, FORMULA, batch_rows=37))
    with pytest.raises(DataError, match=r"has no data rows left after dropping missing values"):
        GDRegressor(missing="drop").fit(FormulaSource(gappy.iloc[[5, 61]], FORMULA, missing="drop"))


def _loaded_partitions(data, npartitions):
    """A Dask dataframe whose partitions count their loads (``loads``), each made by its own task."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    loads = []
    lock = threading.Lock()

    def load(rows):
        with lock:
            loads.append(rows[0])
        return data.iloc[rows].reset_index(drop=True)

    pieces = np.array_split(np.arange(len(data)), npartitions)
    parts = [dask.delayed(load, pure=False)(rows) for rows in pieces]
    return dd.from_delayed(parts, meta=data.iloc[:0], verify_meta=False), loads


def test_dask_learns_levels_and_statistics_in_one_compute(gappy):
    frame, loads = _loaded_partitions(gappy, 6)
    model = GDRegressor(formula=FORMULA, tol=1e-12, missing="drop").fit(frame)
    assert len(loads) == 6, "each partition read once: levels, missing values and statistics in one compute"
    result = smf.ols(FORMULA, gappy).fit()
    assert_statsmodels(model, result, model._fit_result.statistics)
    assert model.fit_report_["missing"]["rows_dropped"] == 4
    np.testing.assert_allclose(model.predict(gappy.dropna()), result.fittedvalues, rtol=1e-9)


def test_dask_names_a_bad_value_by_its_row_in_the_whole_input(gappy):
    frame, _ = _loaded_partitions(gappy, 6)
    with pytest.raises(DataError, match=r"missing value in the Dask input, row 62, column 'value'"):
        GDRegressor(formula="invest ~ value + C(firm)").fit(frame[["invest", "value", "firm"]])


def test_dask_coding_the_pass_cannot_merge_is_learned_apart(table):
    dd = pytest.importorskip("dask.dataframe")
    model = GDRegressor(formula=SUM_CODED, tol=1e-12).fit(dd.from_pandas(table, npartitions=4))
    assert_least_squares(model, SUM_CODED, table)
