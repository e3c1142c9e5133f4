"""A column of more levels than a dense one-hot takes (``BLOCK_LEVELS``) is learned in the statistics pass too.

A CSV, a Parquet file and a folder of Parquet files with a 1600-level column
(its reference level and half its levels first seen in later batches), a
second small categorical column, two features offset by 1e6, weights and
missing values (``missing="drop"``) are fitted with the squared error and

* read once (every read of the file counted where it is opened, as
  ``tests/test_onepass.py`` counts them), the column kept as level codes;
* the coefficients equal the weighted least-squares solve of the dense
  one-hot design, built from the table by pandas and solved by SciPy's sparse
  LU (``scipy.sparse.linalg.spsolve``), to 1e-8;
* the statistics (the blocks), the standard errors and the missing counts
  equal those of the two passes of before (a scan of the levels, then
  :func:`~gradfit.engines.categorical.accumulate_blocks`);
* the errors for too many levels are those of the scan, word for word.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import scipy.sparse.linalg

from gradfit import DataError, GDRegressor, fitting
from gradfit.engines.categorical import BlockStatistics, accumulate_blocks
from gradfit.engines.levels import accumulate_learning
from gradfit.sources import FileSource, encoding

from . import test_onepass
from .test_onepass import write

reads = test_onepass.reads  # the read counter (a fixture), by assignment: no shadowed import

LEVELS = 1600


def table(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    firm = rng.integers(LEVELS // 2, LEVELS, n)  # the first rows: the upper half of the levels only
    firm[2000:2000 + LEVELS] = rng.permutation(LEVELS)  # every level, the reference f0000 first seen at row 2000+
    x1 = 1e6 + rng.normal(size=n)
    x2 = 1e6 + 3.0 * rng.normal(size=n)
    g = rng.choice(["lo", "mid", "hi"], n)
    effect = rng.normal(size=LEVELS)
    y = (2.0 + 0.5 * (x1 - 1e6) - (x2 - 1e6) + effect[firm] + 0.3 * (g == "hi") - 0.2 * (g == "lo")
         + 0.1 * rng.normal(size=n))
    df = pd.DataFrame({"x1": x1, "firm": [f"f{v:04d}" for v in firm], "g": g, "x2": x2,
                       "w": rng.uniform(0.5, 2.0, n), "y": y})
    gaps = rng.random(n) < 0.01
    gaps[2000:2000 + LEVELS] = False  # (so that every level keeps a row)
    df["x2"] = df["x2"].mask(gaps)
    df["g"] = df["g"].mask(np.roll(gaps, 7) & (np.arange(n) < 2000))
    return df


def dense_solve(df):
    """Weighted least squares on the dense one-hot design: the rows without a missing value, treatment coding
    against the first level in sorted order; the features centred (the intercept absorbs it) before the
    normal equations are solved by sparse LU. Returns the coefficients by gradfit's feature names."""
    df = df.dropna()
    columns, names = [], []
    for name in ("x1", "firm", "g", "x2"):
        if name in ("firm", "g"):
            levels = sorted(df[name].unique())
            codes = pd.Categorical(df[name], categories=levels).codes
            rows = np.flatnonzero(codes > 0)
            columns.append(scipy.sparse.csc_matrix((np.ones(rows.size), (rows, codes[rows] - 1)),
                                                   shape=(len(df), len(levels) - 1)))
            names += [f"{name}[T.{level}]" for level in levels[1:]]
        else:
            values = df[name].to_numpy()
            columns.append(scipy.sparse.csc_matrix((values - values.mean())[:, None]))
            names.append(name)
    X = scipy.sparse.hstack(columns + [scipy.sparse.csc_matrix(np.ones((len(df), 1)))]).tocsc()
    weight = scipy.sparse.diags(df["w"].to_numpy())
    coef = scipy.sparse.linalg.spsolve((X.T @ weight @ X).tocsc(), X.T @ (weight @ df["y"].to_numpy()))
    return pd.Series(coef[:-1], index=names)


def source(path, batch_rows):
    return FileSource(path, "y", sample_weight="w", missing="drop", batch_rows=batch_rows)


@pytest.mark.parametrize(("name", "batch_rows"), [
    ("t.csv", 400),  # batches of a few hundred levels: the union passes 1000 in the middle of the pass
    ("t.parquet", 400),
    ("t.parquet", 4000),  # the first batch already has more than 1000 levels
    ("folder", 700),
])
def test_a_column_of_many_levels_is_learned_in_the_one_pass_and_equals_the_dense_solve(tmp_path, reads, name,
                                                                                        batch_rows):
    df = table()
    path = write(df, tmp_path / name)
    model = GDRegressor(tol=1e-10).fit(source(path, batch_rows))
    assert reads["reads"] == 1
    assert model.fit_report_["engine"] == "statistics" and model.converged_
    oracle = dense_solve(df)
    got = pd.Series(model.coef_, index=model.feature_names_)
    assert sorted(got.index) == sorted(oracle.index)
    np.testing.assert_allclose(got[oracle.index], oracle, rtol=1e-8, atol=1e-8 * np.abs(oracle).max())
    # the two passes of before: a scan of the levels, then the blocks
    before = source(path, batch_rows)
    before.settle()
    expected = GDRegressor(tol=1e-10).fit(before)
    assert model.feature_names_ == expected.feature_names_
    # both certified within 1e-10 of the optimum (relative): equal to that, not to the last bit
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-9, atol=1e-10 * np.abs(expected.coef_).max())
    np.testing.assert_allclose(model.summary_["std_error"], expected.summary_["std_error"], rtol=1e-9)
    for key in ("t_value", "p_value"):  # these hold the coefficients too
        np.testing.assert_allclose(model.summary_[key], expected.summary_[key], rtol=1e-8, atol=1e-8, err_msg=key)
    assert model.fit_report_["missing"] == expected.fit_report_["missing"]
    assert model.fit_report_["missing"]["rows_dropped"] == len(df) - len(df.dropna())


@pytest.mark.parametrize("name", ["t.csv", "folder"])
def test_the_blocks_of_the_one_pass_equal_those_of_the_two_passes(tmp_path, reads, name):
    path = write(table(seed=1), tmp_path / name)
    learned = source(path, 300)
    stats = accumulate_learning(learned)
    assert reads["reads"] == 1 and isinstance(stats, BlockStatistics)
    assert learned.block_candidate["name"] == "firm" and learned.block_candidate["n_levels"] == LEVELS
    scanned = source(path, 300)
    scanned.settle()
    scanned.use_blocks(True)
    expected = accumulate_blocks(scanned)
    assert reads["reads"] == 3
    assert learned.encoder.to_json() == scanned.encoder.to_json()
    assert learned.missing_counts == scanned.missing_counts and learned.rows_dropped == scanned.rows_dropped
    assert stats.n_samples == expected.n_samples == learned.n_samples
    np.testing.assert_allclose(stats.sum_weights, expected.sum_weights, rtol=1e-14)
    np.testing.assert_allclose(stats.mean, expected.mean, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(stats.scatter_diagonal, expected.scatter_diagonal, rtol=1e-11)
    got, want = stats.blocks, expected.blocks
    np.testing.assert_array_equal(got.level_count, want.level_count)
    np.testing.assert_allclose(got.level_total, want.level_total, rtol=1e-14)
    np.testing.assert_allclose(got.within, want.within, rtol=1e-11, atol=1e-11 * np.abs(want.within).max())
    # the level effects keep their digits: means about different shifts, compared as differences from level 0
    spread = got.level_mean - got.level_mean[0]
    np.testing.assert_allclose(spread, want.level_mean - want.level_mean[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.between, want.between, rtol=1e-9, atol=1e-9)


def few_levels(monkeypatch, max_block):
    """Small stand-ins for the limits, so that a table of some dozens of levels has "many"."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 50)
    monkeypatch.setattr(encoding, "MAX_BLOCK_LEVELS", max_block)


def two_wide_columns(path, n=3000, seed=5):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 60, n), rng.integers(0, 70, n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "a": [f"a{v:02d}" for v in a], "b": [f"b{v:02d}" for v in b],
                       "y": x + 0.01 * a - 0.02 * b + rng.normal(size=n)})
    return write(df, path)


@pytest.mark.parametrize(("max_block", "expected"), [
    (65, r"column 'b': 70 categories, more than the 65 gradfit encodes; is it an identifier\?"),
    (100, r"column 'a': 60 categories; only one categorical column \(here 'b'\) may have more than 50"),
])
def test_too_many_levels_are_the_scans_errors(tmp_path, monkeypatch, max_block, expected):
    few_levels(monkeypatch, max_block)
    path = two_wide_columns(tmp_path / "wide.csv")
    with pytest.raises(DataError, match=expected) as in_pass:
        GDRegressor().fit(FileSource(path, "y", batch_rows=200))
    with pytest.raises(DataError) as in_scan:
        FileSource(path, "y", batch_rows=200).settle()
    assert str(in_pass.value) == str(in_scan.value)
    assert "\n" not in str(in_pass.value)


@pytest.mark.parametrize("settings", [
    {"loss": "absolute_error"},  # its restricted-LP Newton method runs on the codes (sparse rows)
    {"loss": "huber", "optimizer": "newton"},
])
def test_the_learning_pass_serves_a_fit_on_the_codes_and_a_dense_one_reads_its_statistics(tmp_path, monkeypatch,
                                                                                           settings):
    few_levels(monkeypatch, 1000)
    rng = np.random.default_rng(6)
    n = 1500
    level = rng.integers(0, 45, n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "firm": [f"f{v:02d}" for v in level], "y": x + 0.05 * level + rng.laplace(size=n)})
    path = write(df, tmp_path / "lad.csv")
    statistics_passes = []
    for name in ("accumulate", "accumulate_blocks"):  # the real functions, counted
        function = getattr(fitting, name)
        counted = lambda *a, _f=function, _n=name, **k: statistics_passes.append(_n) or _f(*a, **k)  # noqa: E731
        monkeypatch.setattr(fitting, name, counted)
    pending = FileSource(path, "y", batch_rows=100)
    model = GDRegressor(**settings).fit(pending)
    # the pass that learned the levels is the statistics pass of a fit on the codes (the learned blocks); a fit
    # that reads the column as dense dummies throws those away and reads the dense statistics
    assert statistics_passes == ([] if pending.block_layout is not None else ["accumulate"])
    before = FileSource(path, "y", batch_rows=100)
    before.settle()
    expected = GDRegressor(**settings).fit(before)
    assert (pending.block_layout is not None) == (before.block_layout is not None)
    assert model.feature_names_ == expected.feature_names_
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-9, atol=1e-12)


def test_two_columns_of_many_levels_one_kept_as_codes_the_other_dense_from_one_pass(tmp_path, reads, monkeypatch):
    few_levels(monkeypatch, 1000)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 65)  # 'a' (60 levels) may be dense; 'b' (70) is kept as codes
    path = two_wide_columns(tmp_path / "two.parquet")
    model = GDRegressor(tol=1e-10).fit(FileSource(path, "y", batch_rows=250))
    assert reads["reads"] == 1
    before = FileSource(path, "y", batch_rows=250)
    before.settle()
    assert before.block_candidate["name"] == "b"
    expected = GDRegressor(tol=1e-10).fit(before)
    assert model.feature_names_ == expected.feature_names_
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-9, atol=1e-10 * np.abs(expected.coef_).max())
    np.testing.assert_allclose(model.summary_["std_error"], expected.summary_["std_error"], rtol=1e-9)
