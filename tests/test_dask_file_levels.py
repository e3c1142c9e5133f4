"""Files read by Dask's workers: the levels and missing values learned there, merged on the cluster.

Grunfeld's table with gaps (tests/test_dask_tables.py's) as CSV, Parquet and
a folder of Parquet files, fitted through ``DaskSource.from_file`` and
``gradfit train --dask --missing drop`` on a real cluster (worker
processes): the statistics equal statsmodels' formula OLS to 1e-8 and the
fit of the same file read on one machine; the missing values per column
equal pandas' counts. The client never reads a data row: its
:class:`FileSource` readers are made to fail on the client (the workers, other
processes, are untouched). Errors stay one line naming file, row and column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")
smf = pytest.importorskip("statsmodels.formula.api")

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import DaskSource, FileSource, encoding  # noqa: E402

from .conftest import write_table  # noqa: E402
from .test_categorical_blocks import dense_design, lstsq, make_table  # noqa: E402
from . import test_dask  # noqa: E402

# test_dask's real cluster, and its check that nothing is gathered to the client (autouse)
client, no_gathering = test_dask.client, test_dask.no_gathering
from .test_dask_tables import FORMULA, assert_matches_statsmodels, for_statsmodels, gappy_table  # noqa: E402

LAYOUTS = ["table.csv", "table.parquet", "folder"]
OPTIONS = dict(target="invest", missing="drop", categorical=["decade", "firm=Chrysler"])


def forbid_client_reads(monkeypatch):
    """Every way the client's FileSource reads data rows fails (the workers are other processes)."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("the client read the file's rows")

    for name in ("_scan", "_raw_batches", "_batches", "level_batches", "chunks"):
        monkeypatch.setattr(FileSource, name, refuse)
    settle = FileSource.settle
    monkeypatch.setattr(FileSource, "settle", lambda self: refuse(self) if self.levels_pending else settle(self))


@pytest.fixture
def client_reads_no_rows(monkeypatch):
    forbid_client_reads(monkeypatch)


@pytest.fixture
def table_files(tmp_path):
    table = gappy_table("category")  # dictionary-encoded in Parquet; a bool and a nullable integer column too
    return table, {layout: write_table(table, tmp_path / layout) for layout in LAYOUTS}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_levels_and_gaps_learned_on_the_workers_equal_statsmodels(client, table_files, layout, monkeypatch):
    table, paths = table_files
    path = paths[layout]
    on_one_machine = GDRegressor(optimizer="cg").fit(FileSource(path, **OPTIONS))
    result = smf.ols(FORMULA, for_statsmodels(table)).fit()
    with monkeypatch.context() as patch:
        forbid_client_reads(patch)
        source = DaskSource.from_file(path, block_rows=64, **OPTIONS)  # several blocks, on the workers
        model = GDRegressor(optimizer="cg").fit(source)
    assert model.n_samples_ == result.nobs == 210
    assert_matches_statsmodels(model.summary_, result)
    np.testing.assert_allclose(model.coef_, on_one_machine.coef_, rtol=1e-10)
    assert model.feature_names_ == on_one_machine.feature_names_
    assert "firm[T.Chrysler]" not in model.feature_names_  # the named reference
    counts = {name: int(n) for name, n in table.isna().sum().items() if n}
    assert model.fit_report_["missing"] == {"strategy": "drop", "rows_dropped": 10, "by_column": counts}
    # the rows kept per block were counted by the workers in the same pass: minibatches place rows by them
    kept = np.diff(source._kept_starts)
    assert kept.sum() == 210 and len(kept) == source.n_blocks
    minibatch = dict(engine="pass", batch_size=50, epochs=1, tol=None, random_state=2)
    np.testing.assert_allclose(GDRegressor(**minibatch).fit(source.persist()).coef_,
                               GDRegressor(**minibatch).fit(FileSource(path, **OPTIONS)).coef_, rtol=1e-10)


def test_cli_train_dask_missing_drop_on_a_folder(client, table_files, tmp_path, capsys, client_reads_no_rows):
    table, paths = table_files
    out = tmp_path / "model.json"
    assert main(["train", paths["folder"], "--target", "invest", "--dask", client.scheduler.address,
                 "--missing", "drop", "--categorical", "decade,firm=Chrysler", "--optimizer", "cg",
                 "-q", "-o", str(out)]) == 0
    result = smf.ols(FORMULA, for_statsmodels(table)).fit()
    model = load(out)
    assert_matches_statsmodels(model.summary_, result)
    counts = {name: int(n) for name, n in table.isna().sum().items() if n}
    assert model.fit_report_["missing"] == {"strategy": "drop", "rows_dropped": 10, "by_column": counts}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_missing_value_is_one_line_naming_file_row_and_column(client, table_files, layout):
    _, paths = table_files
    path = paths[layout]
    options = dict(OPTIONS, missing="error")
    with pytest.raises(DataError) as local:
        GDRegressor().fit(FileSource(path, **options))
    with pytest.raises(DataError) as on_workers:
        GDRegressor().fit(DaskSource.from_file(path, block_rows=64, **options))
    message = str(on_workers.value)
    assert message == str(local.value) and "\n" not in message
    assert message.startswith("missing value in file") and "column 'value'" in message
    assert ("line 5," if layout == "table.csv" else "row 4,") in message  # row 3 (0-based) has no value


@pytest.mark.parametrize("rows, bad", [(200, 150), (60_000, 59_000)])
def test_a_bad_csv_cell_is_one_line_naming_file_line_and_column(client, tmp_path, capsys, rows, bad):
    """A bad cell in the first MiB makes the column text to pyarrow (a numeric column with a bad cell, found
    when the merged levels are finished); further on, a worker fails to parse it (placed by the client)."""
    rng = np.random.default_rng(5)
    table = pd.DataFrame({"capital": rng.normal(size=rows).round(6), "firm": rng.choice(["GM", "IBM", "GE"], rows),
                          "invest": rng.normal(size=rows).round(6)})
    table.loc[7, "capital"] = np.nan
    table["capital"] = table["capital"].astype(object)
    table.loc[bad, "capital"] = "12,5x"
    path = write_table(table, tmp_path / "bad.csv")
    out = tmp_path / "model.json"
    code = main(["train", path, "--target", "invest", "--dask", client.scheduler.address, "--missing", "drop",
                 "-q", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and "Traceback" not in err, err
    assert err == f"gradfit: error: file {path!r}, line {bad + 2}, column 'capital': '12,5x' is not a number"
    assert not out.exists()
    # read on one machine: the same words (the text column 'firm' is no bad number there either)
    assert main(["train", path, "--target", "invest", "--missing", "drop", "-q", "-o", str(out)]) != 0
    assert capsys.readouterr().err.strip() == err and not out.exists()


def test_csv_partitions_cut_again_when_dummies_widen_the_rows(client, tmp_path, monkeypatch):
    """60 dense levels make a row 12 times wider than its raw columns: the blocks are cut smaller than the
    partitions the levels were learned on (and counted by one more pass); the fit is the same."""
    from gradfit.sources.dask import source as dask_source

    monkeypatch.setattr(dask_source, "BLOCK_BYTES", 504 * 1024)  # 1024-row blocks of dummies, 12902 raw rows
    frame, y = make_table(3000, 60, 2, seed=24)
    frame["y"] = y
    frame.loc[[5, 2000], "x0"] = np.nan
    path = write_table(frame, tmp_path / "wide.csv")
    source = DaskSource.from_file(path, target="y", missing="drop")
    assert source.block_candidate is None and source.n_blocks >= 2 and source._kept_starts is None
    assert source.missing_counts == {"x0": 2} and source.n_samples == 2998
    kept = frame.dropna()
    coef, intercept = lstsq(dense_design(kept.drop(columns="y")), kept["y"].to_numpy())
    model = GDRegressor(tol=1e-10).fit(source)
    scale = np.abs(coef).max()
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-8, atol=1e-8 * scale)
    np.testing.assert_allclose(model.intercept_, intercept, rtol=1e-8, atol=1e-8 * scale)
    minibatch = dict(engine="pass", batch_size=500, epochs=1, tol=None, random_state=2)
    np.testing.assert_allclose(GDRegressor(**minibatch).fit(source).coef_,
                               GDRegressor(**minibatch).fit(FileSource(path, target="y", missing="drop")).coef_,
                               rtol=1e-10)


@pytest.mark.parametrize("layout", ["table.csv", "folder"])
def test_a_column_of_many_levels_learned_on_the_workers_is_kept_as_codes(client, tmp_path, monkeypatch, layout,
                                                                         client_reads_no_rows):
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)  # on the client, where the merged levels are finished
    frame, y = make_table(1500, 60, 2, seed=23)
    frame["y"] = y
    path = write_table(frame, tmp_path / layout)
    source = DaskSource.from_file(path, target="y", block_rows=300)
    assert source.block_candidate["n_levels"] == 60 and source.n_blocks > 1
    model = GDRegressor(tol=1e-10).fit(source)
    coef, intercept = lstsq(dense_design(frame.drop(columns="y")), y)
    scale = np.abs(coef).max()
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-8, atol=1e-8 * scale)
    np.testing.assert_allclose(model.intercept_, intercept, rtol=1e-8, atol=1e-8 * scale)
