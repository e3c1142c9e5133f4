"""GDRegressorCV on a Dask cluster: the folds and validation errors of the same rows in memory.

Two worker processes: the per-fold moments are computed and merged on the
workers (the per-chunk function travels pickled), each row's fold from its
global position, so the answer is the arrays' to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from gradfit import GDRegressorCV  # noqa: E402
from gradfit.sources import DaskSource  # noqa: E402

from .conftest import make_regression  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=50
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_gives_the_folds_and_errors_of_the_arrays(client, monkeypatch):
    def gathered(self):
        raise AssertionError("DaskSource.chunks() gathered the data to the client")

    monkeypatch.setattr(DaskSource, "chunks", gathered)
    X, y = make_regression(n=1200, d=5, noise=3.0, seed=12, offset=4.0)
    settings = dict(penalty="elasticnet", l1_ratio=[0.2, 0.8], alphas=20, cv=5, random_state=3)
    arrays = GDRegressorCV(**settings).fit(X, y)
    cluster = GDRegressorCV(**settings).fit(da.from_array(X, chunks=(250, 5)), da.from_array(y, chunks=250))
    np.testing.assert_allclose(cluster.mse_path_, arrays.mse_path_, rtol=1e-10)
    np.testing.assert_allclose(cluster.alphas_, arrays.alphas_, rtol=1e-12)
    assert cluster.alpha_ == pytest.approx(arrays.alpha_, rel=1e-12) and cluster.l1_ratio_ == arrays.l1_ratio_
    np.testing.assert_allclose(cluster.coef_, arrays.coef_, rtol=1e-9)
