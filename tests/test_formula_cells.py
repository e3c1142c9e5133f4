"""A formula's main effect of many levels is learned in the statistics pass: the table is read once (issue 14).

``y ~ x + np.log(z) + C(g):x + C(firm) + C(h)`` with 1,200 firms: ``C(firm)``
is kept as level codes (:meth:`gradfit.formula.FormulaDesign.choose_block`),
and its blocks come from the statistics the pass keeps keyed by the main
effects' levels (:mod:`gradfit.engines.formula_levels`), with no separate
scan for its levels. The rows are ordered so that the first batches hold a
few firms each (the dense moments are kept until the firms pass
``BLOCK_LEVELS``, then let go), new firms keep appearing late, and the
reference firm (``f0000``, the first in sorted order) comes last. Oracles:
statsmodels' formula WLS (patsy's design), the normal equations of
formulaic's sparse one-hot design solved by scipy's sparse LU, and the fit
whose levels are learned by a scan of their own (its standard errors);
passes are counted by a subclass of :class:`FormulaSource` (the one place
it reads rows from); tracemalloc for the memory.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

smf = pytest.importorskip("statsmodels.formula.api")
formulaic = pytest.importorskip("formulaic")
scipy_sparse_linalg = pytest.importorskip("scipy.sparse.linalg")

from threadpoolctl import threadpool_limits  # noqa: E402

from gradfit import GDRegressor  # noqa: E402
from gradfit.engines.categorical import BlockStatistics  # noqa: E402
from gradfit.sources.formulas import FormulaSource  # noqa: E402

from .conftest import write_table  # noqa: E402
from .test_formula_onepass import CountingSource  # noqa: E402  (the pass-counting source, shared)

FORMULA = "y ~ x + np.log(z) + C(g):x + C(firm) + C(h)"
N_LEVELS = 1200


def make_table(levels=N_LEVELS, per_level=(8, 2), seed=0):
    """Firms in order of their number (the reference ``f0000`` last), gaps in ``x``, ``firm`` and ``y``, weights.

    The first third of the firms have ``per_level[0]`` rows each, the others
    ``per_level[1]``: a frame's first part (4096 rows) holds fewer than
    ``BLOCK_LEVELS`` firms, the parts after it the rest.
    """
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(levels), np.where(np.arange(levels) < levels // 3, *per_level))
    order = np.argsort(np.where(codes == 0, levels, codes) + rng.uniform(0, 3, codes.size), kind="stable")
    codes = codes[order]
    n = codes.size
    frame = pd.DataFrame({"x": rng.uniform(1.0, 3.0, n), "z": rng.uniform(0.5, 4.0, n),
                          "g": rng.choice(["a", "b", "c"], n), "h": rng.choice(["u", "v", "w", "t"], n),
                          "firm": [f"f{c:04d}" for c in codes], "w": rng.uniform(0.5, 2.0, n)})
    frame["y"] = (1.0 + 2.0 * frame.x + np.log(frame.z) + rng.normal(size=levels)[codes]
                  + (frame.g == "b") * frame.x + (frame.h == "v") + rng.normal(size=n))
    frame.loc[[7, 2000], "x"] = np.nan
    frame.loc[[1500], "firm"] = None
    frame.loc[[30], "y"] = np.nan
    return frame


@pytest.fixture(scope="module")
def table():
    return make_table()


@pytest.fixture(scope="module")
def kept(table):
    return table[table[["x", "z", "g", "h", "firm", "y", "w"]].notna().all(axis=1)]


@pytest.fixture(scope="module")
def wls(kept):
    with threadpool_limits(1):  # BLAS's threads fight on a loaded machine: one is faster here
        return smf.wls(FORMULA, kept, weights=kept["w"]).fit()


def sparse_oracle(frame, weight, formula=FORMULA):
    """The weighted least-squares coefficients by name: formulaic's sparse design, normal equations, sparse LU."""
    matrix = formulaic.model_matrix(formula, frame, output="sparse")
    X = matrix.rhs.tocsc()
    y = np.asarray(matrix.lhs.todense()).ravel() if hasattr(matrix.lhs, "todense") else np.asarray(matrix.lhs).ravel()
    weighted = X.T.multiply(weight).tocsr()
    solution = scipy_sparse_linalg.splu((weighted @ X).tocsc()).solve(weighted @ y)
    return pd.Series(solution, index=list(matrix.rhs.model_spec.column_names))


def by_name(model):
    return pd.Series(np.concatenate([[model.intercept_], model.coef_]), index=["Intercept"] + model.feature_names_)


def summary_series(model, key):
    names = ["Intercept" if name == "(intercept)" else name for name in model.summary_["names"]]
    return pd.Series(model.summary_[key], index=names)


def fit(source):
    return GDRegressor(tol=1e-10, missing="drop").fit(source)


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", None])
def test_read_once_equals_weighted_least_squares_and_the_separate_scan(tmp_path, table, kept, wls, name):
    data = table if name is None else write_table(table, tmp_path / name)
    # a CSV of one batch and a frame: parts of 4096 rows (512 firms) then the rest; Parquet: batches of 300
    # rows (38 firms), dense moments until the firms pass BLOCK_LEVELS, the rest of the formula alone after
    batches = {"batch_rows": 300} if name == "t.parquet" else {}
    source = CountingSource(data, FORMULA, sample_weight="w", missing="drop", **batches)
    model = fit(source)
    assert source.passes == 1, "the statistics engine's fit reads the table once"
    assert isinstance(model._fit_result.statistics, BlockStatistics)
    assert model.engine_ == "statistics" and model.converged_
    assert source.design.block == "C(firm)" and source.block_layout["n_levels"] == N_LEVELS
    assert source.rows_dropped == 4 and source.missing_counts == {"x": 2, "firm": 1, "y": 1}
    got = by_name(model)
    assert sorted(got.index) == sorted(wls.params.index)
    np.testing.assert_allclose(got[wls.params.index], wls.params, rtol=1e-8, atol=1e-8)
    oracle = sparse_oracle(kept, kept["w"].to_numpy())
    np.testing.assert_allclose(got[oracle.index], oracle, rtol=1e-8, atol=1e-8)
    # the fit whose levels are learned by a scan of their own, then its blocks read by another pass
    apart = CountingSource(data, FORMULA, sample_weight="w", missing="drop", **batches)
    apart.settle()
    reference = fit(apart)
    assert apart.passes == 2
    for key in ("std_error", "p_value"):
        np.testing.assert_allclose(summary_series(model, key), summary_series(reference, key), rtol=1e-9,
                                   err_msg=key)
    some = ["Intercept", "x", "np.log(z)", "C(g)[T.b]:x", "C(h)[T.v]", "C(firm)[T.f0001]", "C(firm)[T.f1199]"]
    np.testing.assert_allclose(summary_series(model, "std_error")[some], wls.bse[some], rtol=1e-8)


def test_the_first_part_already_past_the_limit_never_encodes_the_factor_densely():
    """A frame's first part holds more than ``BLOCK_LEVELS`` firms: the factor is coded from the start, and the
    memory of the fit stays far below the factor's dense one-hot block."""
    table = make_table(levels=1500, per_level=(4, 4), seed=3)
    dense_bytes = len(table) * 1500 * 8
    source = CountingSource(table, FORMULA, sample_weight="w", missing="drop")
    tracemalloc.start()
    try:
        model = fit(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert source.passes == 1
    assert peak < dense_bytes / 5, (peak, dense_bytes)
    rows = table[["x", "z", "g", "h", "firm", "y", "w"]].notna().all(axis=1)
    oracle = sparse_oracle(table[rows], table.loc[rows, "w"].to_numpy())
    np.testing.assert_allclose(by_name(model)[oracle.index], oracle, rtol=1e-8, atol=1e-8)


def test_few_levels_keep_the_dense_moments(kept):
    """No factor past ``BLOCK_LEVELS``: the dense moments of the pass, as before, the table read once."""
    small = kept[kept["firm"] < "f0040"]
    source = CountingSource(small, FORMULA, sample_weight="w", missing="drop")
    model = fit(source)
    assert source.passes == 1 and source.design.block is None
    oracle = sparse_oracle(small, small["w"].to_numpy())
    np.testing.assert_allclose(by_name(model)[oracle.index], oracle, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("npartitions", [4, 1])
def test_dask_learns_the_blocks_in_the_compute_that_learns_the_levels(table, kept, npartitions):
    """Each partition's cells made where it is and merged in a tree: every partition loaded once. Four
    partitions hold 150 to 600 firms each (their union crosses ``BLOCK_LEVELS`` in the merge); one holds all
    (the rest of the formula encoded alone, the firms as codes)."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    loads = []

    def load(rows):
        loads.append(rows[0])
        return table.iloc[rows].reset_index(drop=True)

    pieces = np.array_split(np.arange(len(table)), npartitions)
    frame = dd.from_delayed([dask.delayed(load, pure=False)(rows) for rows in pieces], meta=table.iloc[:0],
                            verify_meta=False)
    with dask.config.set(scheduler="sync"):
        model = GDRegressor(formula=FORMULA, tol=1e-10, missing="drop").fit(frame)
    assert len(loads) == npartitions, "each partition read once: levels, missing values and blocks in one compute"
    assert isinstance(model._fit_result.statistics, BlockStatistics)
    assert model.fit_report_["missing"]["rows_dropped"] == 4
    oracle = sparse_oracle(kept, np.ones(len(kept)))
    np.testing.assert_allclose(by_name(model)[oracle.index], oracle, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("formula", ["y ~ x + firm + C(year) + C(flag)", "y ~ C(year) + np.log(z) + C(firm) + x:C(g)"])
def test_other_main_effects_are_dense_features_beside_the_codes(kept, formula):
    """A string column named bare kept as codes; numbers and bools taken as categories are dense dummies
    formed from the cells (in the formula's order of terms)."""
    rng = np.random.default_rng(5)
    data = kept.assign(year=rng.integers(2000, 2006, len(kept)), flag=rng.random(len(kept)) < 0.3)
    source = CountingSource(data, formula, sample_weight="w")
    model = fit(source)
    assert source.passes == 1 and isinstance(model._fit_result.statistics, BlockStatistics)
    assert source.design.block in ("firm", "C(firm)")
    oracle = sparse_oracle(data, data["w"].to_numpy(), formula)
    np.testing.assert_allclose(by_name(model)[oracle.index], oracle, rtol=1e-8, atol=1e-8)


def test_a_transforms_nan_after_the_factor_passed_the_limit_is_named_by_its_row(tmp_path, kept):
    from gradfit import DataError

    data = kept.reset_index(drop=True)
    data.loc[4500, "z"] = -1.0  # np.log(z): NaN, in a part that encodes the rest of the formula only
    path = write_table(data, tmp_path / "e.parquet")
    with pytest.raises(DataError, match=r"^missing value \(NaN\) in file '.*e\.parquet' at row 4501, column "
                                        r"'np\.log\(z\)'$"):
        fit(FormulaSource(path, FORMULA, batch_rows=300))
