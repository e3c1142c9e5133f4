"""Files streamed in batches give the iterates of the same data in memory.

CSV, a Parquet file of several row groups, a folder and a glob of Parquet
files, read in batches smaller than a row group: the statistics and pass
engines give the in-memory coefficients and cost curve to 1e-10 relative, and
minibatches with one seed the same ones (through the row cache).
"""

from __future__ import annotations

import glob
import os
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gradfit import DataError, FileSource, GDRegressor
from gradfit.cli import main

from .conftest import make_regression

N_ROWS = 3000
FEATURES = ["a", "b", "c", "d"]
RTOL = 1e-10

# name → estimator settings; every fit runs all its epochs (tol=None)
RUNS = {
    "statistics": dict(engine="statistics", epochs=200, tol=None),
    "pass": dict(engine="pass", epochs=30, tol=None),
    "pass-huber": dict(engine="pass", loss="huber", epochs=20, tol=None),
    "minibatch": dict(engine="pass", batch_size=256, epochs=3, tol=None, random_state=7),
    "minibatch-adam": dict(engine="pass", optimizer="adam", batch_size=500, epochs=3, tol=None, random_state=3),
}


def frame(n=N_ROWS, k=1, weights=False, seed=0, dtype=np.float64):
    X, y = make_regression(n=n, d=len(FEATURES), k=k, seed=seed, dtype=dtype)
    data = pd.DataFrame(X, columns=FEATURES)
    targets = ["t"] if k == 1 else [f"t{j}" for j in range(k)]
    for j, name in enumerate(targets):
        data[name] = y if k == 1 else y[:, j]
    if weights:
        data["w"] = np.random.default_rng(seed + 1).uniform(0.0, 2.0, size=n)
    return data, targets


def write(data, folder, layout):
    """``data`` on disk as ``layout``; returns the path to give gradfit."""
    table = pa.Table.from_pandas(data, preserve_index=False)
    if layout == "csv":
        path = os.path.join(folder, "data.csv")
        data.to_csv(path, index=False, float_format="%.17g")  # every digit, so the values round-trip
        return path
    if layout == "parquet":
        path = os.path.join(folder, "data.parquet")
        pq.write_table(table, path, row_group_size=700)
        return path
    parts = os.path.join(folder, "parts")
    os.makedirs(parts, exist_ok=True)
    for i, start in enumerate(range(0, len(data), 1100)):
        pq.write_table(table.slice(start, 1100), os.path.join(parts, f"part-{i:03d}.parquet"), row_group_size=400)
    return parts if layout == "folder" else os.path.join(parts, "part-*.parquet")


def assert_same_fit(model, reference):
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=RTOL)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=RTOL)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=RTOL)
    assert model.n_iter_ == reference.n_iter_
    assert model.engine_ == reference.engine_


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same data as every layout, plus the in-memory arrays."""
    data, targets = frame()
    folder = str(tmp_path_factory.mktemp("streaming"))
    paths = {layout: write(data, folder, layout) for layout in ("csv", "parquet", "folder", "glob")}
    return data, targets, paths


@pytest.mark.parametrize("layout", ["csv", "parquet", "folder", "glob"])
@pytest.mark.parametrize("run", list(RUNS))
def test_streamed_file_gives_the_in_memory_iterates(files, layout, run):
    data, targets, paths = files
    settings = RUNS[run]
    reference = GDRegressor(**settings).fit(data[FEATURES].to_numpy(), data["t"].to_numpy())
    # Batches of 500 rows: smaller than a row group, not a divisor of the file.
    model = GDRegressor(**settings).fit(FileSource(paths[layout], "t", batch_rows=500))
    assert_same_fit(model, reference)


@pytest.mark.parametrize("layout", ["csv", "folder"])
@pytest.mark.parametrize("run", ["statistics", "pass", "minibatch"])
def test_weights_and_several_targets(tmp_path, layout, run):
    data, targets = frame(k=2, weights=True, seed=4)
    path = write(data, str(tmp_path), layout)
    settings = RUNS[run]
    reference = GDRegressor(**settings).fit(
        data[FEATURES].to_numpy(), data[targets].to_numpy(), sample_weight=data["w"].to_numpy()
    )
    model = GDRegressor(**settings).fit(FileSource(path, targets, sample_weight="w", batch_rows=450))
    assert_same_fit(model, reference)


@pytest.mark.parametrize("run", ["statistics", "minibatch"])
def test_float32_parquet_gives_the_float32_array_iterates(tmp_path, run):
    data, _ = frame(dtype=np.float32)
    data = data.astype({name: np.float32 for name in FEATURES})
    path = write(data, str(tmp_path), "parquet")
    source = FileSource(path, "t", batch_rows=512)
    assert source.dtype == np.float32
    X = data[FEATURES].to_numpy()
    assert X.dtype == np.float32
    reference = GDRegressor(**RUNS[run]).fit(X, data["t"].to_numpy())
    assert_same_fit(GDRegressor(**RUNS[run]).fit(source), reference)


def test_take_returns_the_rows_of_the_arrays(files):
    data, _, paths = files
    rows = np.sort(np.random.default_rng(0).choice(N_ROWS, size=300, replace=False))
    for layout in ("csv", "folder"):
        source = FileSource(paths[layout], "t", batch_rows=500)
        list(source.chunks())  # the moments pass comes first in a fit
        chunk = source.take(rows)
        np.testing.assert_array_equal(chunk.X, data[FEATURES].to_numpy()[rows])
        np.testing.assert_array_equal(chunk.y[:, 0], data["t"].to_numpy()[rows])
        assert chunk.start == rows[0] and chunk.sample_weight is None


def test_row_cache_leaves_no_file_behind(files, tmp_path, monkeypatch):
    _, _, paths = files
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # memory=0: the columns are not kept in memory, so minibatches need the row cache
    GDRegressor(**RUNS["minibatch"]).fit(FileSource(paths["parquet"], "t", memory=0))
    # The cache is an anonymous file: it never has a name in TMPDIR.
    assert os.listdir(tmp_path) == []


def test_row_cache_refuses_a_disk_without_room(files, monkeypatch):
    _, _, paths = files
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(DataError, match=r"row cache in .*free; set TMPDIR to a folder with room"):
        # memory=0: columns kept in memory would need no row cache (and no disk)
        GDRegressor(**RUNS["minibatch"]).fit(FileSource(paths["parquet"], "t", memory=0))


def test_fit_takes_a_path_and_a_glob(files):
    data, _, paths = files
    reference = GDRegressor(**RUNS["statistics"]).fit(data[FEATURES].to_numpy(), data["t"].to_numpy())
    assert_same_fit(GDRegressor(**RUNS["statistics"]).fit(paths["glob"], "t"), reference)


# -- a bad row deep in a file is named before any model is written ------------


def _bad_csv(folder, text):
    data, _ = frame()
    path = write(data, folder, "csv")
    with open(path) as handle:
        lines = handle.readlines()
    fields = lines[2900].split(",")  # line 2901 of the file: data row 2900
    fields[2] = text
    lines[2900] = ",".join(fields)
    with open(path, "w") as handle:
        handle.writelines(lines)
    return path


@pytest.mark.parametrize("options", [[], ["--engine", "pass", "--batch-size", "64", "--epochs", "2"]])
@pytest.mark.parametrize("text, message", [
    ("oops", "file '{path}', line 2901, column 'c': 'oops' is not a number"),
    ("", "missing value in file '{path}' at line 2901, column 'c'"),
    ("inf", "infinite value (inf) in file '{path}' at line 2901, column 'c'"),
])
def test_bad_csv_row_is_named_and_no_model_is_written(tmp_path, capsys, options, text, message):
    path = _bad_csv(str(tmp_path), text)
    output = tmp_path / "model.json"
    code = main(["train", path, "--target", "t", "-o", str(output), "--quiet", *options])
    error = capsys.readouterr().err
    assert code == 1
    assert message.format(path=path) in error, error
    assert error.count("\n") == 1
    assert not output.exists()


def test_bad_parquet_row_names_its_file_and_row(tmp_path, capsys):
    data, _ = frame()
    data.loc[2500, "b"] = np.nan  # part-002 holds rows 2200…2999: its row 301
    data["b"] = data["b"].astype("float64")
    table = pa.Table.from_pandas(data, preserve_index=False)
    # A null (not NaN) in the file: pandas' NaN becomes null in Arrow.
    assert table.column("b").null_count == 1
    path = write(data, str(tmp_path), "folder")
    output = tmp_path / "model.json"
    code = main(["train", path, "--target", "t", "-o", str(output), "--engine", "pass", "--quiet"])
    error = capsys.readouterr().err
    assert code == 1
    assert "part-002.parquet row 301, column 'b'" in error, error
    assert not output.exists()


def test_cli_on_a_folder_gives_the_in_memory_model(files, tmp_path, capsys):
    data, _, paths = files
    output = tmp_path / "model.json"
    code = main(["train", paths["folder"], "--target", "t", "--engine", "pass", "--epochs", "25",
                 "--tol", "none", "-o", str(output), "--quiet"])
    assert code == 0, capsys.readouterr().err
    reference = GDRegressor(engine="pass", epochs=25, tol=None).fit(data[FEATURES].to_numpy(), data["t"].to_numpy())
    from gradfit import load

    model = load(str(output))
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=RTOL)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=RTOL)
    assert glob.glob(str(tmp_path / ".gradfit-*")) == []
