"""Shared fixtures and helpers: the tutorial's data, small random regression problems, data files."""

from __future__ import annotations

import os

import numpy as np
import pytest

TUTORIAL_X = np.array([[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6], [4, 5, 6, 7]], dtype=float)
TUTORIAL_Y = np.array([2, 4, 6, 8], dtype=float)


def make_regression(n=200, d=5, k=1, noise=0.1, seed=0, offset=0.0, spread=None, dtype=np.float64):
    """Random linear data with features of different offsets and spreads."""
    rng = np.random.default_rng(seed)
    spread = rng.uniform(0.5, 5.0, size=d) if spread is None else spread
    X = (rng.normal(size=(n, d)) * spread + offset + rng.normal(size=d)).astype(dtype)
    coef = rng.normal(size=(d, k))
    y = X.astype(float) @ coef + 1.5 + noise * rng.normal(size=(n, k))
    return X, (y[:, 0] if k == 1 else y)


def write_table(data, path, parts=3):
    """A DataFrame as CSV, Parquet, or a folder of ``parts`` Parquet files, by the name of ``path``."""
    path = str(path)
    if path.endswith(".csv"):
        data.to_csv(path, index=False)
    elif path.endswith(".parquet"):
        data.to_parquet(path, index=False)
    else:
        os.makedirs(path)
        for i, rows in enumerate(np.array_split(np.arange(len(data)), parts)):
            data.iloc[rows].to_parquet(os.path.join(path, f"part{i}.parquet"), index=False)
    return path


@pytest.fixture
def tutorial():
    return TUTORIAL_X.copy(), TUTORIAL_Y.copy()
