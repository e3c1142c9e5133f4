"""Two categorical columns of many levels on a Dask cluster: the dummies' moments from counts, merged on the workers.

The same fit as ``tests/test_wide_dense_blocks.py`` with the table as a Dask
dataframe (``tests/test_dask.py``'s cluster of worker processes): the
partial moments (:class:`gradfit.engines.categorical.OneHotLevelMoments`)
are formed and merged on the workers. Oracle: SciPy's sparse solve of the
normal equations (``NormalOracle``) and the in-memory fit.
"""

from __future__ import annotations

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

from gradfit import GDRegressor
from gradfit.sources import encoding

from . import test_dask
from .test_wide_dense_blocks import NormalOracle, make_table, sparse_design

# test_dask's real cluster, and its check that nothing is gathered to the client (autouse)
client, no_gathering = test_dask.client, test_dask.no_gathering


def test_two_columns_on_dask_equal_the_sparse_solve_and_the_in_memory_fit(client, monkeypatch):
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 100)  # both columns (300 and 150 levels) above it
    frame, y = make_table(4_000, 300, 150, seed=11)
    X = client.persist(dd.from_pandas(frame, npartitions=4))
    on_dask = GDRegressor(tol=1e-10, optimizer="cg").fit(X, y)
    in_memory = GDRegressor(tol=1e-10, optimizer="cg").fit(frame, y)
    assert on_dask.engine_ == "statistics" and on_dask.converged_
    names = list(on_dask.feature_names_)
    oracle = NormalOracle(sparse_design(frame), y, numeric=[names.index("x1"), names.index("x2")])
    scale = np.abs(oracle.coef).max()
    np.testing.assert_allclose(on_dask.coef_, oracle.coef, rtol=1e-8, atol=1e-8 * scale)
    assert on_dask.intercept_ == pytest.approx(oracle.intercept, rel=1e-8, abs=1e-8 * scale)
    np.testing.assert_allclose(on_dask.coef_, in_memory.coef_, rtol=1e-8, atol=1e-9 * scale)
