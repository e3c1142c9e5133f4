"""Predictions with a categorical column of many levels: the level's coefficient gathered, never dense dummies.

Oracles: the dense treatment-coded design, built here with pandas against the
training levels (``pd.get_dummies`` of a ``Categorical``: an unseen level is
a row of zeros), times the model's coefficients; and statsmodels' formula OLS
(``smf.ols("y ~ x0 + C(g) + x1").fit().fittedvalues``). The tables have 1500
levels, above :data:`gradfit.sources.encoding.BLOCK_LEVELS` (1000), so the fit
and the predictions keep the column as level codes; the tests of files
measure (``tracemalloc``) that no dense (rows × levels) block was made.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import gradfit
from gradfit import DataError, GDRegressor, ModelFileError
from gradfit import model as model_file
from gradfit.cli import _feature_source, main
from gradfit.model import load as load_model
from gradfit.sources import encoding

from .conftest import write_table
from .test_startup import HEAVY, run_fresh

LEVELS = 1500


def make_table(n, levels, seed=0):
    """``x0``, a text column ``g`` of ``levels`` levels (every one present), ``x1``, and ``y`` with a level effect."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, n)
    codes[:levels] = rng.permutation(levels)
    effect = rng.normal(size=levels)
    x0, x1 = rng.normal(size=n) + 3.0, rng.normal(size=n) - 2.0
    frame = pd.DataFrame({"x0": x0, "g": [f"L{c:05d}" for c in codes], "x1": x1})
    frame["y"] = 1.5 * x0 - 0.7 * x1 + effect[codes] + 0.3 * rng.normal(size=n)
    return frame


def dense_oracle(frame, levels, coef, intercept, reference=None):
    """``design @ coefᵀ + intercept`` with the design's dummies built by pandas; NaN where a value is missing.

    ``reference``: the level without a dummy (default the first); ``coef`` of
    shape (n_features,) or (n_outputs, n_features).
    """
    seen = frame["g"].where(frame["g"].isin(levels))  # an unseen level: no category, a row of zeros
    dummies = pd.get_dummies(pd.Categorical(seen, categories=levels), dtype=float)
    dummies = dummies.drop(columns=levels[0] if reference is None else reference).to_numpy()
    design = np.column_stack([frame["x0"].to_numpy(float), dummies, frame["x1"].to_numpy(float)])
    predicted = design @ np.asarray(coef).T + intercept
    predicted[frame[["x0", "g", "x1"]].isna().any(axis=1).to_numpy()] = np.nan
    return predicted


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model trained by ``gradfit train`` on 6000 rows of 1500 levels, its data as CSV and Parquet, and new rows."""
    folder = tmp_path_factory.mktemp("predict_codes")
    train = make_table(6000, LEVELS, seed=1)
    parquet = write_table(train, folder / "train.parquet")
    model_path = str(folder / "model.json")
    assert main(["train", parquet, "--target", "y", "--tol", "1e-10", "-q", "-o", model_path]) == 0
    model = gradfit.load(model_path)
    levels = sorted(train["g"].unique())
    new = make_table(3000, LEVELS, seed=2).drop(columns="y")
    new.loc[[0, 5], "g"] = levels[0]  # the reference level: no dummy
    return {"folder": folder, "train": train, "parquet": parquet, "csv": write_table(train, folder / "train.csv"),
            "model_path": model_path, "model": model, "levels": levels, "new": new}


def test_the_column_is_kept_as_codes_and_named_as_statsmodels_does(fitted):
    model, levels = fitted["model"], fitted["levels"]
    assert model.encoder_.block == "g"  # re-derived from the levels when the file is read
    assert model.feature_names_ == ["x0"] + [f"g[T.{level}]" for level in levels[1:]] + ["x1"]


def test_frame_predictions_equal_the_dense_design(fitted):
    model, train, new, levels = fitted["model"], fitted["train"], fitted["new"], fitted["levels"]
    expected = dense_oracle(new, levels, model.coef_, model.intercept_)
    tracemalloc.start()
    try:
        predicted = model.predict(new)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(new) * (LEVELS - 1) * 8 / 8, peak  # far below the dense dummies' 36 MB
    np.testing.assert_allclose(predicted, expected, rtol=1e-10, atol=1e-10)
    # a model fitted in memory, on the frame, predicts as the one read back from its file
    in_memory = GDRegressor(tol=1e-10).fit(train.drop(columns="y"), train["y"])
    assert in_memory.encoder_.block == "g"
    np.testing.assert_allclose(in_memory.predict(new), dense_oracle(new, levels, in_memory.coef_,
                                                                    in_memory.intercept_), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(in_memory.predict(new), expected, rtol=1e-8, atol=1e-8)


def test_predictions_equal_statsmodels_formula_ols(monkeypatch, tmp_path, capsys):
    """A column of 80 levels kept as codes (above 40), beyond a dense column's 60: frames and files."""
    smf = pytest.importorskip("statsmodels.formula.api")
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 60)
    train, new = make_table(2000, 80, seed=6), make_table(500, 80, seed=7).drop(columns="y")
    ols = smf.ols("y ~ x0 + C(g) + x1", train).fit()
    model = GDRegressor(tol=1e-10).fit(train.drop(columns="y"), train["y"])
    np.testing.assert_allclose(model.predict(train.drop(columns="y")), ols.fittedvalues, rtol=1e-8)
    np.testing.assert_allclose(model.predict(new), ols.predict(new), rtol=1e-8)
    model_path = str(tmp_path / "model.json")
    for path in (write_table(train, tmp_path / "train.csv"), write_table(train, tmp_path / "train.parquet")):
        assert main(["train", path, "--target", "y", "--tol", "1e-10", "-q", "-o", model_path]) == 0
        capsys.readouterr()
        assert main(["predict", model_path, write_table(new, tmp_path / "new.csv")]) == 0
        predicted = np.array(capsys.readouterr().out.splitlines()[1:], dtype=float)
        np.testing.assert_allclose(predicted, ols.predict(new), rtol=1e-8)


def test_frame_unseen_levels_and_missing_values(fitted):
    model, new, levels = fitted["model"], fitted["new"].copy(), fitted["levels"]
    new.loc[7, "g"] = "Z-never-seen"
    with pytest.raises(DataError, match=r"row 7 \(0-based\), column 'g': category 'Z-never-seen' was not in the "
                                        r"training data \(1500 categories\)") as error:
        model.predict(new)
    assert "\n" not in str(error.value)
    ignoring = gradfit.load(fitted["model_path"]).set_params(handle_unknown="ignore")
    predicted = ignoring.predict(new)
    expected = dense_oracle(new, levels, model.coef_, model.intercept_)  # the unseen level: a row of zero dummies
    assert predicted[7] == pytest.approx(model.intercept_ + model.coef_[0] * new.loc[7, "x0"]
                                         + model.coef_[-1] * new.loc[7, "x1"], rel=1e-12)
    np.testing.assert_allclose(predicted, expected, rtol=1e-10, atol=1e-10)
    gaps = fitted["new"].copy()
    gaps.loc[3, "g"] = None
    gaps.loc[11, "x1"] = np.nan
    with pytest.raises(DataError, match=r"missing value in the input, row 3 \(0-based\), column 'g'"):
        model.predict(gaps)
    dropping = gradfit.load(fitted["model_path"]).set_params(missing="drop")
    predicted = dropping.predict(gaps)
    assert predicted.shape == (len(gaps),) and np.flatnonzero(np.isnan(predicted)).tolist() == [3, 11]
    np.testing.assert_allclose(predicted, dense_oracle(gaps, levels, model.coef_, model.intercept_),
                               rtol=1e-10, atol=1e-10)


def test_two_targets_and_a_named_reference_level(monkeypatch, tmp_path, capsys):
    """Coefficients (2, n_features) gathered per output; the reference level named (no dummy, zero effect)."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 60)
    train, new = make_table(3000, 90, seed=8), make_table(400, 90, seed=9).drop(columns="y")
    train["z"] = 2.0 * train["y"] - train["x0"] + np.random.default_rng(10).normal(size=len(train))
    levels, reference = sorted(train["g"].unique()), "L00017"
    model = GDRegressor(tol=1e-10, categorical={"g": reference}).fit(train[["x0", "g", "x1"]], train[["y", "z"]])
    assert model.encoder_.block == "g" and model.coef_.shape == (2, 2 + 89)
    assert f"g[T.{reference}]" not in model.feature_names_ and f"g[T.{levels[0]}]" in model.feature_names_
    expected = dense_oracle(new, levels, model.coef_, model.intercept_, reference)
    np.testing.assert_allclose(model.predict(new), expected, rtol=1e-10, atol=1e-10)
    data, model_path = write_table(train, tmp_path / "train.parquet"), str(tmp_path / "model.json")
    assert main(["train", data, "--target", "y,z", "--categorical", f"g={reference}", "--tol", "1e-10", "-q",
                 "-o", model_path]) == 0
    capsys.readouterr()
    assert main(["predict", model_path, write_table(new, tmp_path / "new.csv")]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(printed.columns) == ["y", "z"]
    saved = gradfit.load(model_path)
    np.testing.assert_allclose(printed.to_numpy(), dense_oracle(new, levels, saved.coef_, saved.intercept_, reference),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(printed.to_numpy(), expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", ["csv", "parquet", "folder"])
def test_cli_predict_and_evaluate_equal_the_dense_design(fitted, tmp_path, capsys, kind):
    model, new, levels = fitted["model"], fitted["new"], fitted["levels"]
    rng = np.random.default_rng(3)
    table = new.assign(y=rng.normal(size=len(new)))
    path = write_table(table, tmp_path / {"csv": "new.csv", "parquet": "new.parquet", "folder": "parts"}[kind])
    out = str(tmp_path / "predicted.csv")
    tracemalloc.start()
    try:
        assert main(["predict", fitted["model_path"], path, "-o", out]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(new) * (LEVELS - 1) * 8 / 8, peak  # far below the dense dummies' 36 MB
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["y"] and len(predicted) == len(new)
    expected = dense_oracle(new, levels, model.coef_, model.intercept_)
    np.testing.assert_allclose(predicted["y"], expected, rtol=1e-10, atol=1e-10)
    capsys.readouterr()
    assert main(["evaluate", fitted["model_path"], path, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    residual = expected - table["y"].to_numpy()
    assert metrics["n_samples"] == len(new)
    assert metrics["mse"] == pytest.approx(np.mean(residual**2), rel=1e-10)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(residual)), rel=1e-10)
    assert metrics["r2"] == pytest.approx(1 - np.sum(residual**2) / np.sum((table["y"] - table["y"].mean())**2),
                                          rel=1e-10)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_cli_unseen_level_is_one_line_and_leaves_the_output(fitted, tmp_path, capsys, kind):
    model, levels = fitted["model"], fitted["levels"]
    new = fitted["new"].copy()
    new.loc[1200, "g"] = "Z-never-seen"
    path = write_table(new, tmp_path / f"new.{kind}")
    out = tmp_path / "predicted.csv"
    out.write_text("the old predictions\n")
    assert main(["predict", fitted["model_path"], path, "-o", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    where = "line 1202" if kind == "csv" else "row 1201"
    assert error.startswith(f"gradfit: error: file {path!r}, {where}, column 'g': category 'Z-never-seen' was "
                            "not in the training data"), error
    assert "\n" not in error and "--handle-unknown ignore" in error
    assert out.read_text() == "the old predictions\n"
    assert main(["predict", fitted["model_path"], path, "-o", str(out), "--handle-unknown", "ignore"]) == 0
    predicted = pd.read_csv(out)["y"].to_numpy()
    np.testing.assert_allclose(predicted, dense_oracle(new, levels, model.coef_, model.intercept_),
                               rtol=1e-10, atol=1e-10)
    assert predicted[1200] == pytest.approx(model.intercept_ + model.coef_[0] * new.loc[1200, "x0"]
                                            + model.coef_[-1] * new.loc[1200, "x1"], rel=1e-12)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_cli_missing_values_dropped(fitted, tmp_path, capsys, kind):
    model, levels = fitted["model"], fitted["levels"]
    new = fitted["new"].assign(y=np.linspace(-1, 1, len(fitted["new"])))
    new.loc[[4, 2999], "g"] = None
    new.loc[9, "x0"] = np.nan
    path = write_table(new, tmp_path / f"gaps.{kind}")
    assert main(["predict", fitted["model_path"], path]) == 1
    error = capsys.readouterr().err.strip()
    where = "line 11" if kind == "csv" else "row 10"  # the first column with a gap, x0, is checked first
    assert error == f"gradfit: error: missing value in file {path!r} at {where}, column 'x0'", error
    out = tmp_path / "predicted.csv"
    assert main(["predict", fitted["model_path"], path, "--missing", "drop", "-o", str(out)]) == 0
    with open(out, newline="") as handle:
        fields = [row[0] for row in csv.reader(handle)][1:]  # one field a row; csv writes an empty one as ""
    assert len(fields) == len(new) and [i for i, field in enumerate(fields) if field == ""] == [4, 9, 2999]
    expected = dense_oracle(new, levels, model.coef_, model.intercept_)
    np.testing.assert_allclose(pd.read_csv(out)["y"].to_numpy(), expected, rtol=1e-10, atol=1e-10)
    capsys.readouterr()
    assert main(["evaluate", fitted["model_path"], path, "--missing", "drop", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    kept = ~np.isnan(expected)
    assert metrics["n_samples"] == len(new) - 3
    assert metrics["mse"] == pytest.approx(np.mean((expected[kept] - new["y"].to_numpy()[kept]) ** 2), rel=1e-10)


def test_cli_reads_rows_not_dummies(fitted, tmp_path):
    """Chunks as long as for a table of four numbers: the column is one code a row, not 1499 dummies."""
    path = write_table(pd.concat([fitted["new"]] * 30, ignore_index=True), tmp_path / "long.parquet")
    source = _feature_source(load_model(fitted["model_path"]), path, missing="keep")
    assert source.block_layout is not None and source.block_layout["n_levels"] == LEVELS
    assert source.rows_per_chunk() > 500_000
    lengths = [chunk.n_rows for chunk in source.chunks()]
    assert sum(lengths) == 90_000 and lengths[0] == min(90_000, source.batch_rows)
    assert all(chunk.codes is not None and chunk.X.shape[1] == 2 for chunk in source.chunks())


def test_cli_predict_with_codes_imports_nothing_heavy(fitted, tmp_path):
    _, modules, out = run_fresh(tmp_path, "predict", fitted["model_path"], fitted["csv"])
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    np.testing.assert_array_equal(np.array(out.splitlines()[1:], dtype=float),
                                  fitted["model"].predict(fitted["train"].drop(columns="y")))


def test_twenty_thousand_levels_predict_without_a_dense_block(tmp_path):
    """50,000 rows of a 20,000-level model: a dense one-hot block would be 50,000 x 20,000 x 8 bytes = 8 GB."""
    train = make_table(40_000, 20_000, seed=4)
    model = GDRegressor(tol=1e-8).fit(train.drop(columns="y"), train["y"])
    assert model.encoder_.block == "g"
    new = make_table(50_000, 20_000, seed=5).drop(columns="y")
    path = write_table(new, tmp_path / "new.parquet")
    model_path = str(tmp_path / "model.json")
    model.save(model_path)
    dense_bytes = 50_000 * 20_000 * 8
    tracemalloc.start()
    try:
        predicted = model.predict(new)
        frame_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert main(["predict", model_path, path, "-o", str(tmp_path / "out.csv")]) == 0
        file_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frame_peak < dense_bytes / 200 and file_peak < dense_bytes / 200, (frame_peak, file_peak)
    rows = np.flatnonzero(np.arange(len(new)) % 997 == 0)  # the oracle on a sample of rows (its design is dense)
    levels = sorted(train["g"].unique())
    expected = dense_oracle(new.iloc[rows], levels, model.coef_, model.intercept_)
    np.testing.assert_allclose(predicted[rows], expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["y"].to_numpy(), predicted, rtol=1e-15)


def test_inspect_and_the_report_fold_the_levels(fitted, tmp_path, capsys):
    model_path, levels = fitted["model_path"], fitted["levels"]
    assert main(["inspect", model_path]) == 0
    out = capsys.readouterr().out
    assert f"g[T.{levels[1]}]" in out and f"g[T.{levels[-1]}]" not in out
    assert f"... {LEVELS - 1 - 10} more levels of g" in out
    assert len(out.splitlines()) < 120  # two tables (coefficients, statistics) of a dozen rows each, not 1500
    report = str(tmp_path / "report.html")
    assert main(["train", fitted["parquet"], "--target", "y", "-q", "--tol", "1e-10", "--report", report]) == 0
    page = open(report, encoding="utf-8").read()
    assert f"... {LEVELS - 1 - 10} more levels of g" in page and f"g[T.{levels[-1]}]" not in page
    assert os.path.getsize(report) < 400_000  # the plots (a sample of rows) and folded tables, not 1500 rows


def test_the_model_file_holds_the_levels_once_in_its_encoding(fitted):
    document = json.load(open(fitted["model_path"], encoding="utf-8"))
    (column,) = [c for c in document["encoding"]["columns"] if "levels" in c]
    assert column["levels"] == fitted["levels"] and column["name"] == "g"
    assert "block" not in document["encoding"]  # which column is kept as codes follows from the levels
    # per level: its name (feature_names, statistics), its coefficient, standardization and statistics
    assert os.path.getsize(fitted["model_path"]) / LEVELS < 400


def test_a_model_file_too_large_indented_is_written_compact_or_refused(fitted, monkeypatch, tmp_path):
    """Read back whatever is written: beyond MAX_BYTES indented, without indentation; beyond the limits, an error."""
    model, new = fitted["model"], fitted["new"]
    indented = os.path.getsize(fitted["model_path"])
    monkeypatch.setattr(model_file, "MAX_BYTES", int(indented * 0.9))
    path = tmp_path / "model.json"
    model.save(path)
    assert os.path.getsize(path) < indented * 0.9 and path.read_text().count("\n") == 1
    np.testing.assert_array_equal(gradfit.load(path).predict(new), model.predict(new))
    for limit, value in (("MAX_BYTES", 100_000), ("MAX_VALUES", 10_000)):
        with monkeypatch.context() as patch:
            patch.setattr(model_file, limit, value)
            path.write_text("the old model\n")
            with pytest.raises(ModelFileError, match=r"cannot write model file .*: 1501 features make \d+ bytes "
                                                     r"and \d+ values, more than the") as error:
                model.save(path)
            assert "\n" not in str(error.value) and path.read_text() == "the old model\n"


def test_an_infinite_value_is_named_by_its_column_beside_the_codes(fitted, tmp_path, capsys):
    new = fitted["new"].copy()
    new.loc[6, "x1"] = np.inf
    path = write_table(new, tmp_path / "new.csv")
    assert main(["predict", fitted["model_path"], path]) == 1
    error = capsys.readouterr().err.strip()
    assert error == f"gradfit: error: infinite value (inf) in file {path!r} at line 8, column 'x1'", error
