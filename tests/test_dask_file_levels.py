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

import json

import numpy as np
import pytest

pytest.importorskip("distributed")
smf = pytest.importorskip("statsmodels.formula.api")

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import DaskSource, FileSource, encoding  # noqa: E402

from .conftest import write_table  # noqa: E402
from .test_categorical_blocks import dense_design, lstsq, make_table  # noqa: E402
from .test_dask import client, no_gathering  # noqa: E402, F401  (a real cluster; nothing gathered)
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
    table = gappy_table("object")
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
    saved = json.loads(out.read_text())
    assert "missing" in json.dumps(saved)


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


def test_a_bad_csv_cell_is_one_line_naming_file_line_and_column(client, tmp_path, capsys):
    table = gappy_table("object").dropna()
    table["capital"] = table["capital"].astype(object)
    table.iloc[150, table.columns.get_loc("capital")] = "12,5x"  # past pyarrow's and Dask's first block guesses
    path = write_table(table, tmp_path / "bad.csv")
    code = main(["train", path, "--target", "invest", "--dask", client.scheduler.address, "--missing", "drop",
                 "-q", "-o", str(tmp_path / "model.json")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("gradfit: error: file") and "line 152" in err and "'capital'" in err, err
    assert not (tmp_path / "model.json").exists()


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
