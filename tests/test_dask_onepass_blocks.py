"""Files read by Dask's workers: a column of many levels, its blocks from the compute that learns the levels.

``tests/test_onepass_blocks.py``'s table (a 1600-level column first seen
late, a small categorical column, features offset by 1e6, weights, gaps) as
CSV, Parquet and a folder of Parquet files, through ``DaskSource.from_file``
on a real cluster (worker processes): the workers' statistics keyed by level
are merged on the cluster in the one compute that learns the levels, the fit
computes nothing more (every compute counted), the client reads no data row,
and the coefficients equal the dense sparse solve to 1e-8 and the fit of the
same file on one machine; a table of few levels gets its dense statistics
the same way; a bad value gives the cells up, and the fit's own compute
names it by file, row and column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from gradfit import DataError, GDRegressor
from gradfit.engines.categorical import BlockStatistics
from gradfit.engines.statistics import Statistics
from gradfit.sources import DaskSource, FileSource

from . import test_dask
from .test_dask_file_levels import forbid_client_reads
from .test_onepass import write
from .test_onepass_blocks import dense_solve, table

# test_dask's real cluster, and its check that nothing is gathered to the client (autouse)
client, no_gathering = test_dask.client, test_dask.no_gathering
OPTIONS = {"target": "y", "sample_weight": "w", "missing": "drop"}


@pytest.fixture
def computes(monkeypatch):
    """Every compute a Dask source runs, counted."""
    count = {"computes": 0}
    original = DaskSource._compute

    def counted(self, *collections):
        count["computes"] += 1
        return original(self, *collections)

    monkeypatch.setattr(DaskSource, "_compute", counted)
    return count


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "folder"])
def test_the_blocks_come_from_the_compute_that_learns_the_levels(client, tmp_path, monkeypatch, computes, name):
    df = table()
    path = write(df, tmp_path / name)
    on_one_machine = GDRegressor(tol=1e-10).fit(FileSource(path, batch_rows=700, **OPTIONS))
    with monkeypatch.context() as patch:
        forbid_client_reads(patch)
        source = DaskSource.from_file(path, block_rows=700, **OPTIONS)
        assert isinstance(source.learned_statistics, BlockStatistics)
        learning = computes["computes"]
        model = GDRegressor(tol=1e-10).fit(source)
    assert computes["computes"] == learning  # the fit read nothing more
    assert model.feature_names_ == on_one_machine.feature_names_
    oracle = dense_solve(df)
    got = pd.Series(model.coef_, index=model.feature_names_)
    np.testing.assert_allclose(got[oracle.index], oracle, rtol=1e-8, atol=1e-8 * np.abs(oracle).max())
    np.testing.assert_allclose(model.coef_, on_one_machine.coef_, rtol=1e-9,
                               atol=1e-10 * np.abs(on_one_machine.coef_).max())
    np.testing.assert_allclose(model.summary_["std_error"], on_one_machine.summary_["std_error"], rtol=1e-9)
    assert model.fit_report_["missing"] == on_one_machine.fit_report_["missing"]


def test_a_table_of_few_levels_gets_its_dense_statistics_from_the_same_compute(client, tmp_path, monkeypatch,
                                                                                computes):
    df = table().drop(columns="firm")
    path = write(df, tmp_path / "few.parquet")
    on_one_machine = GDRegressor(tol=1e-10).fit(FileSource(path, batch_rows=700, **OPTIONS))
    with monkeypatch.context() as patch:
        forbid_client_reads(patch)
        source = DaskSource.from_file(path, block_rows=700, **OPTIONS)
        assert isinstance(source.learned_statistics, Statistics)
        learning = computes["computes"]
        model = GDRegressor(tol=1e-10).fit(source)
    assert computes["computes"] == learning
    assert model.feature_names_ == on_one_machine.feature_names_
    np.testing.assert_allclose(model.coef_, on_one_machine.coef_, rtol=1e-10)
    np.testing.assert_allclose(model.summary_["std_error"], on_one_machine.summary_["std_error"], rtol=1e-10)


def test_a_bad_value_gives_the_cells_up_and_the_fits_own_compute_names_it(client, tmp_path):
    df = table()
    df.loc[4500, "x1"] = np.inf
    path = write(df, tmp_path / "bad.parquet")
    source = DaskSource.from_file(path, block_rows=700, **OPTIONS)
    assert getattr(source, "learned_statistics", None) is None
    with pytest.raises(DataError, match=r"infinite value .*bad.parquet.* row 4501, column 'x1'"):
        GDRegressor().fit(source)
