"""A file's categories are learned in the statistics pass: a default fit reads the file once.

* a CSV and a Parquet file (a folder of two files too) with string, bool and
  pandas ``category`` columns and missing values (``missing="drop"``), fitted
  with the default squared error, are read once (every read of the file is
  counted where it is opened: :meth:`FileSource._batches`), and their
  coefficients, standard errors, t and p-values and intervals equal
  statsmodels' ``smf.ols("y ~ x + C(g) + C(h) + C(k)", df)`` to 1e-8;
* the statistics of that one pass equal those of the two passes (a scan of
  the levels, then the statistics) to 1e-12, and so do the missing counts;
* a named reference level, a level seen only in a later batch or file;
* errors stay one line naming the file, column and row; a column with
  more levels than a dense one-hot takes (``BLOCK_LEVELS``) is learned in the
  same pass (its blocks from the statistics keyed by level,
  ``tests/test_onepass_blocks.py``), and falls back to its own scan (three
  reads, the first cut short) only where those outgrow their memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradfit import DataError, GDRegressor
from gradfit.engines import accumulate
from gradfit.engines.levels import accumulate_learning
from gradfit.sources import FileSource, encoding

from .test_categorical import assert_matches, statsmodels_names

smf = pytest.importorskip("statsmodels.formula.api")

COLUMNS = ("g", "h", "k")


@pytest.fixture
def reads(monkeypatch):
    """How many times a file is opened for a pass (CSV parsed, Parquet decoded)."""
    count = {"reads": 0}
    original = FileSource._batches

    def counted(self, *args, **kwargs):
        count["reads"] += 1
        yield from original(self, *args, **kwargs)

    monkeypatch.setattr(FileSource, "_batches", counted)
    return count


def table(n=3000, seed=0, gaps=True):
    rng = np.random.default_rng(seed)
    g = rng.choice(["Chrysler", "General Motors", "IBM", "Atlantic Refining"], n)
    h = rng.random(n) < 0.4
    k = rng.choice(["lo", "mid", "hi"], n)
    x = rng.normal(size=n)
    y = 1.0 + 2.0 * x + 1.5 * (g == "IBM") - 0.7 * h + 0.3 * (k == "hi") + rng.normal(size=n)
    df = pd.DataFrame({"x": x, "g": g, "h": h, "k": pd.Categorical(k), "y": y})
    if gaps:
        df["x"] = df["x"].mask(rng.random(n) < 0.02)
        df["g"] = df["g"].mask(rng.random(n) < 0.02)
        df["h"] = df["h"].astype(object).mask(rng.random(n) < 0.02)
        df["k"] = df["k"].mask(rng.random(n) < 0.02)
    df.loc[n - 5:, "g"] = "Zenith"  # a level first seen in the last rows (a later batch)
    return df


def complete(df):
    out = df.dropna().copy()
    out["h"] = out["h"].astype(bool)
    return out


def write(df, path):
    if str(path).endswith(".csv"):
        df.to_csv(path, index=False)
    elif str(path).endswith(".parquet"):
        df.to_parquet(path)
    else:  # a folder of two files; the second holds a level the first has not
        path.mkdir()
        half = len(df) // 2
        df.iloc[:half].to_parquet(path / "a.parquet")
        df.iloc[half:].to_parquet(path / "b.parquet")
    return str(path)


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "folder"])
def test_a_default_fit_reads_the_file_once_and_equals_statsmodels(tmp_path, reads, name):
    df = table()
    path = write(df, tmp_path / name)
    GDRegressor().fit(FileSource(path, "y", missing="drop"))  # the defaults: gradient descent to tol
    assert reads["reads"] == 1
    reads["reads"] = 0
    source = FileSource(path, "y", missing="drop", batch_rows=700)  # several batches, each with its own levels
    model = GDRegressor(optimizer="cg").fit(source)  # to the optimum, as statsmodels' solve
    assert reads["reads"] == 1
    assert_matches(model.summary_, smf.ols("y ~ x + C(g) + C(h) + C(k)", complete(df)).fit(), COLUMNS)
    expected = {c: int(n) for c, n in df.isna().sum().items() if n}
    assert model.fit_report_["missing"]["by_column"] == expected
    assert model.fit_report_["missing"]["rows_dropped"] == len(df) - len(complete(df))
    assert model.n_features_in_ == len(model.feature_names_)
    # the columns were kept: predicting the training rows, the report's passes, read memory
    assert reads["reads"] == 1


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_one_pass_statistics_equal_the_two_pass_ones(tmp_path, reads, name):
    path = write(table(seed=1), tmp_path / name)
    learned = FileSource(path, "y", missing="drop", batch_rows=500)
    stats = accumulate_learning(learned)
    assert reads["reads"] == 1 and not learned.levels_pending
    scanned = FileSource(path, "y", missing="drop", batch_rows=500)
    scanned.settle()  # the separate scan of before
    expected = accumulate(scanned)
    assert reads["reads"] == 3
    assert learned.feature_names == scanned.feature_names
    assert learned.missing_counts == scanned.missing_counts and learned.rows_dropped == scanned.rows_dropped
    assert learned.n_samples == scanned.n_samples == stats.n_samples == expected.n_samples
    np.testing.assert_allclose(stats.mean, expected.mean, rtol=1e-12, atol=1e-14)
    scale = np.abs(expected.scatter).max()
    np.testing.assert_allclose(stats.scatter, expected.scatter, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(stats.scatter_diagonal, expected.scatter_diagonal, rtol=1e-12, atol=1e-12 * scale)
    # the encoder is the scan's, so that later passes and predictions encode alike
    assert learned.encoder.to_json() == scanned.encoder.to_json()
    np.testing.assert_array_equal(np.concatenate([c.X for c in learned.chunks()]),
                                  np.concatenate([c.X for c in scanned.chunks()]))
    assert reads["reads"] == 3  # both read their kept columns


def test_a_named_reference_and_the_diagonal_pass(tmp_path, reads):
    df = table(seed=2, gaps=False)
    path = write(df, tmp_path / "t.csv")
    source = FileSource(path, "y", categorical=["g=IBM", "k=mid"])
    model = GDRegressor(optimizer="cg").fit(source)
    assert reads["reads"] == 1
    result = smf.ols("y ~ x + C(g, Treatment('IBM')) + C(h) + C(k, Treatment('mid'))", df).fit()
    names = [n.replace("g[T.", "C(g, Treatment('IBM'))[T.").replace("k[T.", "C(k, Treatment('mid'))[T.")
             .replace("h[T.", "C(h)[T.") for n in model.feature_names_]
    np.testing.assert_allclose(pd.Series(model.coef_, index=names)[result.params.index[1:]],
                               result.params.iloc[1:], rtol=1e-8)
    # the pass engine's moments (the diagonal only) are learned in the same pass
    source = FileSource(path, "y", categorical=["g=IBM", "k=mid"])
    other = GDRegressor(loss="huber", engine="pass", epochs=3, tol=None, optimizer="gd").fit(source)
    assert other.feature_names_ == model.feature_names_


def test_errors_stay_one_line(tmp_path):
    df = table(n=200, gaps=False)
    bad = df.assign(x=df["x"].astype(object))
    bad.loc[150, "x"] = "12,5"  # text in a numeric column, inside the block the types are guessed from
    path = write(bad, tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"bad.csv', line 152, column 'x': '12,5' is not a number"):
        GDRegressor().fit(path, "y")
    gappy = df.copy()
    gappy.loc[40, "g"] = None
    path = write(gappy, tmp_path / "gap.csv")
    with pytest.raises(DataError, match=r"missing value in file .*gap.csv' at line 42, column 'g'"):
        GDRegressor().fit(path, "y")
    folder = tmp_path / "types"
    folder.mkdir()
    df.iloc[:100].to_parquet(folder / "a.parquet")
    df.iloc[100:].assign(g=np.arange(100)).to_parquet(folder / "b.parquet")
    with pytest.raises(DataError, match=r"b.parquet, column 'g': type int64 is not string"):
        GDRegressor().fit(str(folder), "y")


@pytest.mark.parametrize("cells", ["kept", "over their budget"])
def test_many_levels_are_learned_in_the_pass_or_fall_back_to_their_own_scan(tmp_path, reads, monkeypatch, cells):
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)  # a small table of "many" levels
    if cells != "kept":  # the statistics keyed by level outgrow their memory: the scan of before
        monkeypatch.setattr("gradfit.engines.level_cells.CELL_BYTES", 1000)
    rng = np.random.default_rng(3)
    n = 2000
    level = rng.integers(0, 60, n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "firm": [f"f{v:02d}" for v in level], "y": x + 0.01 * level + rng.normal(size=n)})
    path = write(df, tmp_path / "many.csv")
    source = FileSource(path, "y", batch_rows=100)  # 30 to 45 levels a batch: the union passes 40 in a later one
    model = GDRegressor(optimizer="cg").fit(source)
    # kept: the blocks come from the pass that learns the levels; else the pass cut short, the scan, the statistics
    assert reads["reads"] == (1 if cells == "kept" else 3)
    before = FileSource(path, "y", batch_rows=100)
    before.settle()  # the scan of before, then the statistics
    expected = GDRegressor(optimizer="cg").fit(before)
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-10, atol=1e-13)
    assert model.feature_names_ == expected.feature_names_
    result = smf.ols("y ~ x + C(firm)", df).fit()  # the level blocks' solve, to its tolerance
    got = pd.Series(model.coef_, index=statsmodels_names(model.feature_names_, ["firm"]))
    np.testing.assert_allclose(got[result.params.index[1:]], result.params.iloc[1:], rtol=1e-4, atol=1e-6)


def test_the_same_statistics_on_one_thread_and_on_several(tmp_path):
    from threadpoolctl import threadpool_limits

    from gradfit.sources.base import worker_threads

    path = write(table(seed=4), tmp_path / "t.csv")
    with threadpool_limits(1):  # BLAS on one thread: the pass runs on the calling thread alone
        assert worker_threads() == 1
        serial = accumulate_learning(FileSource(path, "y", missing="drop", batch_rows=300))
    threaded = accumulate_learning(FileSource(path, "y", missing="drop", batch_rows=300))
    np.testing.assert_array_equal(serial.mean, threaded.mean)
    np.testing.assert_array_equal(serial.scatter, threaded.scatter)
