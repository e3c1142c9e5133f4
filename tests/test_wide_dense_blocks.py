"""Two categorical columns of many levels: one kept as level codes, the other's dummies as the blocks' dense part.

The widest column (``a``) is kept as codes; the other (``b``, also above
``BLOCK_LEVELS``) becomes dense treatment dummies next to the numeric
features, which :mod:`gradfit.engines.categorical` accumulates from counts
(contingency tables, per-level sums) instead of a dense product and solves
through factorizations kept per penalty value.

Oracles: SciPy's sparse direct solve (SuperLU) of the normal equations of
the sparse treatment-coded design (numeric columns centred, an exact
reparametrization that leaves the slopes and level effects as they are),
the same factorization for standard errors (``σ² (AᵀVA)⁻¹``, as
statsmodels' OLS/WLS computes them), and the dense chunk moments
(``chunk_level_moments`` on the dense dummies, and the dense statistics of
:mod:`gradfit.engines.statistics`).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import scipy.sparse.linalg

from gradfit import GDRegressor
from gradfit.engines import categorical, level_cells, statistics
from gradfit.engines.categorical import (
    LevelBlocks,
    chunk_level_moments,
    chunk_one_hot_moments,
    finish_one_hot,
    merge_levels,
    merge_one_hot,
)
from gradfit.engines.statistics import _one_hot_moments as one_hot_moments
from gradfit.engines.statistics import accumulate, block_moments
from gradfit.sources import FileSource, encoding
from gradfit.sources.arrays import ArraySource
from gradfit.sources.frames import frame_source

from .conftest import write_table

OFFSET = 1e6


def make_table(n, wide, narrow, seed=0, offset=OFFSET):
    """``x1``, ``a`` (``wide`` levels), ``x2``, ``b`` (``narrow`` levels), ``y``; every level present."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, wide, n)
    a[:wide] = np.arange(wide)
    b = rng.integers(0, narrow, n)
    b[:narrow] = rng.permutation(narrow)
    x = rng.normal(size=(n, 2)) + offset
    y = 2.0 * (x[:, 0] - offset) - (x[:, 1] - offset) + rng.normal(size=wide)[a] + rng.normal(size=narrow)[b] \
        + 0.5 * rng.normal(size=n)
    frame = pd.DataFrame({"x1": x[:, 0], "a": [f"A{c:05d}" for c in a], "x2": x[:, 1],
                          "b": [f"B{c:05d}" for c in b]})
    return frame, y


def sparse_design(frame):
    """The treatment-coded design in gradfit's column order (reference: the first level in sorted order), CSR."""
    n = len(frame)
    parts = []
    for name in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            levels = np.sort(frame[name].unique())
            codes = np.searchsorted(levels, frame[name].to_numpy())
            keep = codes > 0
            parts.append(scipy.sparse.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), codes[keep] - 1)),
                                                 shape=(n, len(levels) - 1)))
        else:
            parts.append(scipy.sparse.csr_matrix(frame[[name]].to_numpy(float)))
    return scipy.sparse.hstack(parts, format="csr")


class NormalOracle:
    """The weighted (ridge) least-squares problem of a sparse design, solved by SuperLU about centred numeric columns.

    ``A_c = [X − 1 c, 1]`` with ``c`` the numeric columns' weighted means (zero
    for the dummies): ``θ_c`` has the slopes and level effects of ``θ`` and
    the intercept ``b = b_c − c·w``. ``alpha``: gradfit's L2 penalty (the
    normal matrix gains ``W·alpha/2`` on every feature, never the intercept).
    """

    def __init__(self, design, y, weight=None, alpha=0.0, numeric=()):
        n, d = design.shape
        v = np.ones(n) if weight is None else weight
        self.center = np.zeros(d)
        dense = design[:, list(numeric)].toarray()
        self.center[list(numeric)] = v @ dense / v.sum()
        centred = design.tolil(copy=True)
        for j, column in zip(numeric, dense.T):
            centred[:, j] = (column - self.center[j])[:, None]
        A = scipy.sparse.hstack([centred.tocsr(), np.ones((n, 1))], format="csr")
        normal = (A.T @ A.multiply(v[:, None])).tocsc()
        normal = normal + scipy.sparse.diags(np.r_[np.full(d, 0.5 * v.sum() * alpha), 0.0])
        self.lu = scipy.sparse.linalg.splu(normal)
        solution = self.lu.solve(A.T @ (y * v))
        self.coef = solution[:d]
        self.intercept = solution[d] - self.center @ self.coef
        residual = y - A @ solution
        self.sigma2 = float(v @ (residual * residual)) / (n - d - 1)
        self.d = d

    def standard_error(self, j):
        """``√(σ² (N⁻¹)_jj)`` of feature ``j``, or of the intercept (``j = None``: ``e = [−c, 1]`` in ``θ_c``)."""
        unit = np.zeros(self.d + 1)
        if j is None:
            unit[: self.d], unit[self.d] = -self.center, 1.0
        else:
            unit[j] = 1.0
        return float(np.sqrt(self.sigma2 * unit @ self.lu.solve(unit)))


@pytest.fixture(scope="module")
def table():
    return make_table(15_000, 1_500, 1_100, seed=3)


def test_the_narrower_column_is_dense_dummies_and_the_layout_names_their_span(table):
    frame, y = table
    source = frame_source(frame, y, None)
    layout = source.block_candidate
    assert layout["name"] == "a" and layout["n_levels"] == 1_500
    # x1, x2 then b's 1,099 dummies among the dense features
    assert layout["one_hot"] == [(2, 2 + 1_099)]
    assert layout["dense_names"][2] == "b[T.B00001]"


def assert_fit_equals_oracle(model, frame, y, weight):
    assert model.engine_ == "statistics" and model.converged_
    names = list(model.feature_names_)
    oracle = NormalOracle(sparse_design(frame), y, weight, numeric=[names.index("x1"), names.index("x2")])
    scale = np.abs(oracle.coef).max()
    np.testing.assert_allclose(model.coef_, oracle.coef, rtol=1e-8, atol=1e-8 * scale)
    assert model.intercept_ == pytest.approx(oracle.intercept, rel=1e-8, abs=1e-8 * scale)
    summary = model.summary_
    errors = pd.Series(np.ravel(summary["std_error"]), index=summary["names"])
    first_a, first_b = names[names.index("x1") + 1], names[names.index("x2") + 1]
    for name in ("x1", "x2", first_a, names[names.index("x2") - 1], first_b, names[-1]):
        assert errors[name] == pytest.approx(oracle.standard_error(names.index(name)), rel=1e-8), name
    assert errors["(intercept)"] == pytest.approx(oracle.standard_error(None), rel=1e-8)


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_and_standard_errors_equal_the_sparse_normal_equations(table, weighted):
    frame, y = table
    weight = np.random.default_rng(7).uniform(0.5, 2.0, len(y)) if weighted else None
    model = GDRegressor(tol=1e-10, optimizer="cg").fit(frame, y, sample_weight=weight)
    assert_fit_equals_oracle(model, frame, y, weight)


def test_unstandardized_fit_equals_the_sparse_normal_equations(monkeypatch):
    # In the data's units (standardize=False) conjugate gradient needs features near zero (an offset of 1e6
    # makes the raw Hessian's condition number ~1e12); columns of 400 and 300 levels, both above BLOCK_LEVELS
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 200)
    frame, y = make_table(6_000, 400, 300, seed=5, offset=0.0)
    weight = np.random.default_rng(9).uniform(0.5, 2.0, len(y))
    model = GDRegressor(tol=1e-10, standardize=False, optimizer="cg").fit(frame, y, sample_weight=weight)
    assert frame_source(frame, y, None).block_candidate["one_hot"] == [(2, 2 + 299)]  # x1, x2, then b's dummies
    assert_fit_equals_oracle(model, frame, y, weight)


def test_ridge_on_two_columns_equals_the_penalized_sparse_solve(table):
    frame, y = table
    weight = np.random.default_rng(8).uniform(0.5, 2.0, len(y))
    alpha = 0.01
    model = GDRegressor(tol=1e-10, penalty="l2", alpha=alpha).fit(frame, y, sample_weight=weight)
    assert model.engine_ == "statistics" and model.converged_
    names = list(model.feature_names_)
    oracle = NormalOracle(sparse_design(frame), y, weight, alpha=alpha,
                          numeric=[names.index("x1"), names.index("x2")])
    scale = np.abs(oracle.coef).max()
    np.testing.assert_allclose(model.coef_, oracle.coef, rtol=1e-8, atol=1e-8 * scale)
    assert model.intercept_ == pytest.approx(oracle.intercept, rel=1e-8, abs=1e-8 * scale)


# -- the moments from counts against the dense computation ----------------------------


def one_hot_chunk(n=4_000, seed=0, weighted=True):
    """Codes of 60 levels, then X = [x0, 40 dummies (some rows none), x1, 9 dummies], y of two columns."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 60, n)
    first, second = rng.integers(-1, 40, n), rng.integers(-1, 9, n)
    X = np.zeros((n, 51))
    X[:, 0] = rng.normal(size=n) * 3.0 + OFFSET
    X[:, 41] = rng.normal(size=n) - OFFSET
    X[first >= 0, 1 + first[first >= 0]] = 1.0
    X[second >= 0, 42 + second[second >= 0]] = 1.0
    y = np.column_stack([X[:, 0] - OFFSET + first, rng.normal(size=n)]) + 0.1 * codes[:, None]
    weight = rng.uniform(0.0, 2.0, n) if weighted else None
    return codes, X, y, weight, ((1, 41), (42, 51))


def assert_same_moments(got, expected, rtol=1e-12):
    assert (got.count, got.total) == (expected.count, pytest.approx(expected.total, rel=1e-14))
    np.testing.assert_array_equal(got.level_count, expected.level_count)
    np.testing.assert_allclose(got.level_total, expected.level_total, rtol=1e-14)
    # the level means in the data's units (each stored about its own shift)
    np.testing.assert_allclose(got.level_mean + got.shift, expected.level_mean + expected.shift, rtol=rtol,
                               atol=rtol * np.abs(expected.level_mean).max())
    np.testing.assert_allclose(got.within, expected.within, rtol=rtol, atol=rtol * np.abs(expected.within).max())


@pytest.mark.parametrize("weighted", [False, True])
def test_chunk_moments_from_counts_equal_the_dense_ones(weighted):
    codes, X, y, weight, spans = one_hot_chunk(weighted=weighted)
    assert_same_moments(chunk_level_moments(codes, X, y, weight, 60, one_hot=spans),
                        chunk_level_moments(codes, X, y, weight, 60))


@pytest.mark.parametrize("weighted", [False, True])
def test_merged_moments_from_counts_equal_the_dense_statistics(weighted):
    codes, X, y, weight, spans = one_hot_chunk(seed=1, weighted=weighted)
    cuts = [0, 900, 1_000, 2_500, 4_000]
    sparse = dense = None
    for start, stop in itertools.pairwise(cuts):
        rows = slice(start, stop)
        part = None if weight is None else weight[rows]
        sparse = merge_one_hot(sparse, chunk_one_hot_moments(codes[rows], X[rows], y[rows], part, 60, spans))
        dense = merge_levels(dense, chunk_level_moments(codes[rows], X[rows], y[rows], part, 60))
    merged = finish_one_hot(sparse, X.shape[1])
    assert_same_moments(merged, dense)
    # and the whole centred scatter of [dummies of the codes, X, y] (engines/statistics.py), through LevelBlocks
    reference = 0
    blocks = LevelBlocks(merged, X.shape[1], np.arange(X.shape[1]), np.arange(X.shape[1], X.shape[1] + 59), reference)
    full = np.column_stack([X, (codes[:, None] == np.arange(1, 60)).astype(float), y])
    statistics = accumulate(ArraySource(full[:, :-2], full[:, -2:], weight))
    d = full.shape[1] - 2
    units = np.eye(d)
    np.testing.assert_allclose(blocks.scatter_product(units), statistics.scatter[:d, :d], rtol=1e-12,
                               atol=1e-12 * np.abs(statistics.scatter).max())
    np.testing.assert_allclose(blocks.cross(), statistics.scatter[:d, d:], rtol=1e-11,
                               atol=1e-12 * np.abs(statistics.scatter).max())


def test_columns_that_are_not_dummies_are_refused():
    codes, X, y, weight, spans = one_hot_chunk(n=200)
    X[5, 1:41] = 0.5  # a row of halves: not 0/1
    with pytest.raises(ValueError, match="not 0/1 dummies"):
        chunk_level_moments(codes, X, y, weight, 60, one_hot=spans)


def test_block_levels_apply_as_the_layout_says(monkeypatch):
    # both columns within BLOCK_LEVELS: no codes, no spans; the fit is the dense one (unchanged)
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 5_000)
    frame, y = make_table(2_000, 300, 200, seed=4)
    assert frame_source(frame, y, None).block_candidate is None


@pytest.mark.parametrize("own_scan", [False, True])
def test_a_folder_of_parquet_files_reads_the_counts_as_the_frame_does(monkeypatch, tmp_path, own_scan):
    # a file's blocks from the cells of the levels' pass (engines/level_cells.py), or (own_scan) from a pass of
    # their own after the levels' scan: either way b's dummies from counts and read sparse by LevelBlocks
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 100)
    if own_scan:
        monkeypatch.setattr(level_cells, "CELL_BYTES", 0)  # the cells given up: accumulate_blocks' pass
    frame, y = make_table(3_000, 200, 120, seed=12)
    path = write_table(frame.assign(y=y), tmp_path / "folder", parts=3)
    source = FileSource(path, "y")
    assert source.block_candidate["one_hot"] == [(2, 2 + 119)]
    counted, sparse = [], []
    monkeypatch.setattr(categorical, "chunk_one_hot_moments",
                        lambda *args: counted.append(1) or chunk_one_hot_moments(*args))
    level_means = categorical.LevelBlocks._level_means
    monkeypatch.setattr(categorical.LevelBlocks, "_level_means",
                        lambda self, one_hot: sparse.append(one_hot is not None) or level_means(self, one_hot))
    model = GDRegressor(tol=1e-10, optimizer="cg").fit(source)
    assert_fit_equals_oracle(model, frame, y, None)
    assert counted and sparse and all(sparse)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shift", ["mean", "off", "zero"])
def test_dense_block_moments_from_counts_equal_the_dense_product(weighted, shift):
    # the dense statistics engine's blocks (engines/statistics.py block_moments): the dummies' part from counts
    _, X, y, weight, spans = one_hot_chunk(n=3_000, seed=2, weighted=weighted)
    point = None
    if shift != "mean":
        point = np.r_[X.mean(axis=0), y.mean(axis=0)] + (0.01 if shift == "off" else 0.0)
        if shift == "zero":  # chunk_moments' shift for columns already centred: zero for the dummies
            point[1:41], point[42:51] = 0.0, 0.0
    dense = block_moments(X, y, weight, True, point)
    counted = block_moments(X, y, weight, True, point, one_hot=spans)
    assert (counted.count, counted.total) == (dense.count, pytest.approx(dense.total, rel=1e-14))
    np.testing.assert_allclose(counted.exact_mean(), dense.exact_mean(), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(counted.scatter, dense.scatter, rtol=1e-12, atol=1e-12 * np.abs(dense.scatter).max())


def test_a_dense_fit_with_two_small_categorical_columns_reads_their_dummies_as_counts(monkeypatch):
    # no column above BLOCK_LEVELS: the dense statistics engine, its scatter's dummy blocks from counts
    frame, y = make_table(3_000, 60, 40, seed=14)
    weight = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    counted = []
    monkeypatch.setattr(statistics, "_one_hot_moments",
                        lambda *args: counted.append(1) or one_hot_moments(*args))
    model = GDRegressor(tol=1e-10).fit(frame, y, sample_weight=weight)
    assert counted and model.engine_ == "statistics"
    assert_fit_equals_oracle(model, frame, y, weight)

