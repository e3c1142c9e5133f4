"""Cross-validation on a file whose categories are not known yet reads it once: the folds' pass learns the levels.

A CSV and a Parquet file, read in small batches (the reference level of the
categorical column first seen in the last rows), with a small categorical
column and, separately, a column of 1,200 levels (more than ``BLOCK_LEVELS``:
kept as level codes), weights and missing values (``missing="drop"``):

* ``GDRegressorCV`` and ``gradfit train --alpha cv`` read the file once (every
  read counted where the file is opened, as ``tests/test_onepass.py`` counts them);
* ``mse_path_``, ``alpha_`` and ``coef_`` equal those of the two passes of
  before (the levels learned by a scan first, then the folds' statistics) to
  1e-10, and those of the same rows given as a DataFrame;
* for the small column, ``mse_path_`` equals scikit-learn's ``ElasticNet``
  fitted fold by fold on the dense one-hot design (pandas' dummies, the first
  level in sorted order left out) on the same folds (:func:`gradfit.folds.fold_of`
  of each kept row's line in the file), to 1e-7;
* the missing counts, the one-line errors and the fall-back (the statistics
  keyed by level outgrowing their memory) are those of the two passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradfit import DataError, GDRegressorCV, load
from gradfit.cli import main
from gradfit.engines import fold_cells, level_cells
from gradfit.folds import fold_of
from gradfit.sources import FileSource

from . import test_onepass
from .test_cv_blocks import oracle_path
from .test_onepass import write

reads = test_onepass.reads  # the read counter (a fixture), by assignment: no shadowed import

FOLDS = 4
SETTINGS = {"penalty": "elasticnet", "l1_ratio": 0.5, "alphas": 6, "eps": 1e-2, "cv": FOLDS, "random_state": 3,
            "tol": 1e-10}


def small_table(n=1600, seed=0, gaps=True):
    """``x1, g, x2, w, y``: ``g`` of 4 levels, its reference ``a`` only in the last rows; gaps in ``x1`` and ``g``."""
    rng = np.random.default_rng(seed)
    g = rng.choice(["b", "c", "d"], n).astype(object)
    g[-12:] = "a"
    x1 = rng.normal(size=n)
    x2 = 2.0 + 3.0 * rng.normal(size=n)
    y = 1.0 + 2.0 * x1 - 0.5 * x2 + 1.5 * (g == "c") - (g == "a") + rng.normal(size=n)
    df = pd.DataFrame({"x1": x1, "g": g, "x2": x2, "w": rng.uniform(0.5, 2.0, n), "y": y})
    if gaps:
        df["x1"] = df["x1"].mask(rng.random(n) < 0.03)
        df["g"] = df["g"].mask((rng.random(n) < 0.02) & (np.arange(n) < n - 12))
    return df


def wide_table(n=5000, levels=1200, seed=1):
    """``x1, firm, g, x2, w, y``: ``firm`` of 1,200 levels (the first rows hold the upper half only), gaps in ``x2``."""
    rng = np.random.default_rng(seed)
    firm = rng.integers(levels // 2, levels, n)
    every = slice(n - levels - 800, n - 800)  # every level, the reference f0000 among them
    firm[every] = rng.permutation(levels)
    x1 = 1e3 + rng.normal(size=n)
    x2 = rng.normal(size=n)
    g = rng.choice(["lo", "mid", "hi"], n)
    y = 0.5 * x1 - x2 + rng.normal(size=levels)[firm] + 0.3 * (g == "hi") + 0.5 * rng.normal(size=n)
    df = pd.DataFrame({"x1": x1, "firm": [f"f{v:04d}" for v in firm], "g": g, "x2": x2,
                       "w": rng.uniform(0.5, 2.0, n), "y": y})
    gaps = rng.random(n) < 0.01
    gaps[every] = False
    df["x2"] = df["x2"].mask(gaps)
    return df


def source(path, **options):
    return FileSource(path, "y", sample_weight="w", missing="drop", batch_rows=300, **options)


def two_passes(path, settings, **options):
    """Before: the levels learned by a scan of their own, then the folds' statistics (two reads)."""
    scanned = source(path, **options)
    scanned.settle()
    return GDRegressorCV(**settings).fit(scanned)


def assert_same_cv(got, expected):
    np.testing.assert_allclose(got.mse_path_, expected.mse_path_, rtol=1e-10)
    assert got.alpha_ == pytest.approx(expected.alpha_, rel=1e-12)
    assert got.feature_names_ == expected.feature_names_
    np.testing.assert_allclose(got.coef_, expected.coef_, rtol=1e-10, atol=1e-10 * np.abs(expected.coef_).max())
    assert got.intercept_ == pytest.approx(expected.intercept_, rel=1e-10)


def dense_one_hot(kept, columns):
    """The dense design of ``columns`` in gradfit's order: a text column's dummies, the first sorted level left out."""
    parts = []
    for name in columns:
        if not pd.api.types.is_numeric_dtype(kept[name]):
            levels = sorted(kept[name].unique())
            parts.append(np.column_stack([(kept[name] == level).to_numpy(float) for level in levels[1:]]))
        else:
            parts.append(kept[name].to_numpy()[:, None])
    return np.hstack(parts)


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_a_small_categorical_column_is_learned_in_the_folds_pass(tmp_path, reads, name):
    df = small_table()
    path = write(df, tmp_path / name)
    learned = source(path)
    model = GDRegressorCV(**SETTINGS).fit(learned)
    assert reads["reads"] == 1  # the levels, the missing counts, every fold's statistics and the final fit
    assert model.feature_names_ == ["x1", "g[T.b]", "g[T.c]", "g[T.d]", "x2"]
    # the pass kept the columns, encoded as the learned levels say: a later pass reads memory
    kept = list(learned.chunks())
    assert reads["reads"] == 1
    expected = two_passes(path, SETTINGS)
    assert reads["reads"] == 3
    scanned = source(path)
    scanned.settle()
    for name_, part in (("X", lambda c: c.X), ("y", lambda c: c.y), ("w", lambda c: c.sample_weight),
                        ("rows", lambda c: [c.row(i) for i in range(c.n_rows)])):
        np.testing.assert_array_equal(np.concatenate([part(c) for c in kept]),
                                      np.concatenate([part(c) for c in scanned.chunks()]), err_msg=name_)
    assert_same_cv(model, expected)
    assert model.fit_report_["missing"] == expected.fit_report_["missing"]
    assert model.fit_report_["missing"]["by_column"] == {c: int(n) for c, n in df.isna().sum().items() if n}
    # scikit-learn fold by fold on the dense one-hot; a kept row's fold is that of its line in the file
    kept = df.dropna()
    labels = fold_of(kept.index.to_numpy(), FOLDS, SETTINGS["random_state"])
    rows = np.arange(len(kept))
    folds = [(rows[labels != f], rows[labels == f]) for f in range(FOLDS)]
    X = dense_one_hot(kept, ["x1", "g", "x2"])
    oracle = oracle_path(X, kept["y"].to_numpy(), model.alphas_, 0.5, folds, kept["w"].to_numpy())
    np.testing.assert_allclose(model.mse_path_, oracle, rtol=1e-7)


def test_the_same_rows_as_a_dataframe_fall_into_the_same_folds(tmp_path, reads):
    df = small_table(seed=2, gaps=False)
    path = write(df, tmp_path / "t.csv")
    settings = dict(SETTINGS, penalty="l2")
    model = GDRegressorCV(**settings).fit(FileSource(path, "y", sample_weight="w", batch_rows=250))
    assert reads["reads"] == 1
    frame = GDRegressorCV(**settings).fit(df[["x1", "g", "x2"]], df["y"], sample_weight=df["w"])
    assert_same_cv(model, frame)


@pytest.mark.parametrize(("name", "penalty"), [("t.csv", "l2"), ("t.parquet", "elasticnet")])
def test_a_column_of_1200_levels_is_learned_in_the_folds_pass_and_kept_as_codes(tmp_path, reads, name, penalty):
    df = wide_table()
    path = write(df, tmp_path / name)
    settings = dict(SETTINGS, penalty=penalty, alphas=5)
    learned = source(path)
    model = GDRegressorCV(**settings).fit(learned)
    assert reads["reads"] == 1
    assert learned.block_layout is not None and learned.block_layout["name"] == "firm"  # never a dense one-hot
    assert model.fit_report_["engine"] == "statistics" and len(model.coef_) == 2 + 1199 + 2
    expected = two_passes(path, settings)
    assert reads["reads"] == 3
    assert_same_cv(model, expected)
    assert model.fit_report_["missing"] == expected.fit_report_["missing"]
    assert model.fit_report_["missing"]["rows_dropped"] == int(df["x2"].isna().sum())


def test_the_command_line_and_its_report_read_the_file_once(tmp_path, reads, capsys):
    path = write(small_table(seed=4), tmp_path / "t.parquet")
    model_path = tmp_path / "m.json"
    code = main(["train", path, "--target", "y", "--sample-weight", "w", "--missing", "drop", "--penalty", "l1",
                 "--alpha", "cv", "--folds", "3", "--alphas", "5", "-o", str(model_path),
                 "--report", str(tmp_path / "r.html"), "-q"])
    assert code == 0, capsys.readouterr().err
    assert reads["reads"] == 1  # the report's passes read the columns the folds' pass kept
    expected = GDRegressorCV(penalty="l1", alphas=5, cv=3).fit(FileSource(path, "y", sample_weight="w",
                                                                          missing="drop"))
    saved = load(model_path)
    assert saved.alpha == pytest.approx(expected.alpha_, rel=1e-12)
    np.testing.assert_allclose(saved.coef_, expected.coef_, rtol=1e-9, atol=1e-12)


def test_cells_beyond_their_memory_fall_back_to_the_scan(tmp_path, reads, monkeypatch):
    path = write(wide_table(n=3000, seed=5), tmp_path / "t.parquet")
    settings = dict(SETTINGS, penalty="l2", alphas=4)
    expected = two_passes(path, settings)
    reads["reads"] = 0
    for module in (level_cells, fold_cells):
        monkeypatch.setattr(module, "CELL_BYTES", 20_000)
    model = GDRegressorCV(**settings).fit(source(path))
    assert reads["reads"] == 3  # the folds' pass cut short, the scan of the levels, the folds' statistics
    assert_same_cv(model, expected)


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_errors_are_those_of_the_two_passes(tmp_path, name):
    df = small_table(seed=6, gaps=False)
    df.loc[777, "x2"] = np.inf
    path = write(df, tmp_path / name)
    with pytest.raises(DataError) as learned:
        GDRegressorCV(**SETTINGS).fit(source(path))
    with pytest.raises(DataError) as scanned:
        two_passes(path, SETTINGS)
    assert str(learned.value) == str(scanned.value) and "\n" not in str(learned.value)
    assert "'x2'" in str(learned.value) and ("line 779" in str(learned.value) or "row 778" in str(learned.value))
    df.loc[777, "x2"] = np.nan
    path = write(df, tmp_path / ("gap_" + name))
    with pytest.raises(DataError, match=r"missing value in .* column 'x2'"):
        GDRegressorCV(**SETTINGS).fit(FileSource(path, "y", batch_rows=300))
    tiny = write(small_table(n=3, seed=7, gaps=False), tmp_path / ("tiny_" + name))
    with pytest.raises((DataError, ValueError), match="fold|folds"):
        GDRegressorCV(**SETTINGS).fit(FileSource(tiny, "y"))


@pytest.mark.parametrize("table", [small_table, wide_table])
def test_a_fold_of_zero_weight_is_named_as_before(tmp_path, table):
    df = table().dropna().reset_index(drop=True)
    df.loc[fold_of(np.arange(len(df)), FOLDS, SETTINGS["random_state"]) == 1, "w"] = 0.0
    path = write(df, tmp_path / "t.parquet")
    settings = dict(SETTINGS, penalty="l2", alphas=3)
    with pytest.raises(DataError, match=r"^the sample weights in fold 2 of file .* sum to zero$") as learned:
        GDRegressorCV(**settings).fit(source(path))
    with pytest.raises(DataError) as scanned:
        two_passes(path, settings)
    assert str(learned.value) == str(scanned.value)
