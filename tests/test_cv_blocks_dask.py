"""GDRegressorCV on a Dask dataframe whose column of 1,500 levels stays level codes on the workers.

The oracle is the same cross-validation of the frame in memory (checked
against scikit-learn on the one-hot dummies in test_cv_blocks.py): a row's
fold is a hash of its global position, so the folds are the same.
"""

from __future__ import annotations

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

from gradfit import GDRegressorCV

from . import test_dask
from .test_cv_blocks import make_table

# test_dask's real cluster, and its check that nothing is gathered to the client (autouse)
client, no_gathering = test_dask.client, test_dask.no_gathering


def test_the_folds_level_blocks_are_merged_on_the_workers(client):
    frame, y = make_table(n=4000)
    settings = {"penalty": "elasticnet", "l1_ratio": 0.5, "alphas": 4, "eps": 1e-2, "cv": 3, "random_state": 4}
    in_memory = GDRegressorCV(**settings).fit(frame, y)
    table = client.persist(dd.from_pandas(frame.assign(y=y), npartitions=3))
    model = GDRegressorCV(**settings).fit(table[list(frame.columns)], table["y"])
    assert model.engine_ == "statistics"
    np.testing.assert_allclose(model.alphas_, in_memory.alphas_, rtol=1e-12)
    np.testing.assert_allclose(model.mse_path_, in_memory.mse_path_, rtol=1e-10)
    assert model.alpha_ == in_memory.alpha_
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-8, atol=1e-10)
