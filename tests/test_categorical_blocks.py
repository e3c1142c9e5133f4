"""A categorical column of many levels kept as blocks (:mod:`gradfit.engines.categorical`), never a dense one-hot.

Oracles: ``numpy.linalg.lstsq`` on the dense treatment-coded design, the
dense centred scatter and its inverse, and statsmodels' formula OLS/WLS
(``smf.ols("y ~ x0 + ... + C(g)")``). The tests lower
``encoding.BLOCK_LEVELS`` (which column is kept as codes) and
``encoding.MAX_LEVELS`` (the most levels a dense column may have) below the
number of levels, so that a fit can only have run on the blocks: the dense
path would refuse the column.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from gradfit import DataError, GDRegressor
from gradfit.cli import main
from gradfit.engines.categorical import (
    BlockStatistics,
    BlockStatisticsEngine,
    LevelBlocks,
    chunk_level_moments,
    merge_levels,
)
from gradfit.engines.statistics import Statistics, StatisticsEngine
from gradfit.scaling import Scaling
from gradfit.sources import FileSource, encoding

from .conftest import write_table

smf = pytest.importorskip("statsmodels.formula.api")


@pytest.fixture
def blocks_only(monkeypatch):
    """Columns of more than 40 levels kept as codes; a dense one may have at most 60."""
    monkeypatch.setattr(encoding, "BLOCK_LEVELS", 40)
    monkeypatch.setattr(encoding, "MAX_LEVELS", 60)


def make_table(n, levels, numeric, seed=0, offset=3.0):
    """Numeric ``x0..`` (off centre), a text column ``g`` between them, ``y`` with a level effect."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, n)
    codes[:levels] = np.arange(levels)  # every level present
    X = rng.normal(size=(n, numeric)) + offset
    effect = rng.normal(size=levels)
    y = X @ rng.normal(size=numeric) + effect[codes] + 0.5 * rng.normal(size=n)
    frame = pd.DataFrame({f"x{j}": X[:, j] for j in range(numeric)})
    frame.insert(min(1, numeric), "g", [f"L{c:04d}" for c in codes])
    return frame, y


def dense_design(frame):
    """The treatment-coded design in gradfit's column order (``g[T.level]`` in place of ``g``)."""
    parts = []
    for name in frame.columns:
        if name == "g":
            dummies = pd.get_dummies(frame["g"], dtype=float).sort_index(axis=1).iloc[:, 1:]
            parts.append(dummies.rename(columns=lambda level: f"g[T.{level}]"))
        else:
            parts.append(frame[[name]].astype(float))
    return pd.concat(parts, axis=1)


def lstsq(design, y, weight=None, fit_intercept=True):
    A = design.to_numpy()
    if fit_intercept:
        A = np.column_stack([A, np.ones(len(A))])
    root = np.ones(len(A)) if weight is None else np.sqrt(weight)
    with threadpool_limits(1):  # on a loaded machine BLAS's spinning threads made this 15 times slower
        solution = np.linalg.lstsq(A * root[:, None], y * root, rcond=None)[0]
    return (solution[:-1], solution[-1]) if fit_intercept else (solution, 0.0)


# -- the blocks against the dense statistics ------------------------------------------


def layout_case(seed=0, n=2000, p=3, levels=30, k=2, weighted=True):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, n)
    codes[:levels] = np.arange(levels)
    X = rng.normal(size=(n, p)) * [1.0, 10.0, 0.1] + [5.0, -200.0, 0.0]
    y = rng.normal(size=(n, k)) + 0.3 * codes[:, None]
    weight = rng.uniform(0.5, 2.0, n) if weighted else None
    reference = 4
    # the model's order: x0, the column's L - 1 dummies, x1, x2
    dense_index = np.array([0, levels, levels + 1])
    level_index = np.arange(1, levels)
    others = np.delete(np.arange(levels), reference)
    design = np.zeros((n, p + levels - 1))
    design[:, dense_index] = X
    for j, level in enumerate(others):
        design[codes == level, level_index[j]] = 1.0
    return codes, X, y, weight, (p, dense_index, level_index, reference), design


def dense_statistics(design, y, weight):
    v = np.ones(len(design)) if weight is None else weight
    z = np.column_stack([design, y])
    mean = v @ z / v.sum()
    scatter = (z - mean).T @ ((z - mean) * v[:, None])
    return Statistics(design.shape[1], y.shape[1], len(design), float(v.sum()), mean, scatter,
                      np.diagonal(scatter).copy())


@pytest.mark.parametrize("weighted", [False, True])
def test_blocks_equal_the_dense_scatter_solve_and_inverse(weighted):
    codes, X, y, weight, layout, design = layout_case(weighted=weighted)
    levels = 30
    cuts = [0, 300, 301, 1200, len(codes)]  # uneven chunks, one of a single row: merges of every kind
    moments = None
    for start, stop in itertools.pairwise(cuts):
        part = chunk_level_moments(codes[start:stop], X[start:stop], y[start:stop],
                                   None if weight is None else weight[start:stop], levels)
        moments = merge_levels(moments, part)
    blocks = LevelBlocks(moments, *layout)
    stats = BlockStatistics.from_blocks(blocks)
    dense = dense_statistics(design, y, weight)
    d = design.shape[1]
    np.testing.assert_allclose(stats.mean, dense.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.scatter_diagonal, dense.scatter_diagonal, rtol=1e-11)
    np.testing.assert_allclose(blocks.cross(), dense.scatter[:d, d:], rtol=1e-9, atol=1e-9 * np.abs(dense.scatter).max())
    vectors = np.random.default_rng(1).normal(size=(d, 3))
    expected = dense.scatter[:d, :d] @ vectors
    np.testing.assert_allclose(blocks.scatter_product(vectors), expected, atol=1e-12 * np.abs(expected).max())
    v = np.ones(len(design)) if weight is None else weight
    augmented = np.column_stack([design, np.ones(len(design))])
    normal = augmented.T @ (augmented * v[:, None])
    rhs = np.random.default_rng(2).normal(size=(d + 1, 2))
    np.testing.assert_allclose(blocks.solve_normal(rhs), np.linalg.solve(normal, rhs), rtol=1e-9, atol=1e-12)
    with_intercept = np.linalg.inv(np.roll(np.roll(normal, 1, axis=0), 1, axis=1))  # intercept first
    np.testing.assert_allclose(blocks.covariance_diagonal(True), np.diagonal(with_intercept), rtol=1e-10)
    without = np.linalg.inv(normal[:d, :d])
    np.testing.assert_allclose(blocks.covariance_diagonal(False), np.diagonal(without), rtol=1e-10)


def engine_case(fit_intercept, standardize):
    """``(block statistics, scaling, the dense statistics engine, dense design, y)`` of :func:`layout_case`."""
    codes, X, y, weight, layout, design = layout_case(seed=3)
    stats = BlockStatistics.from_blocks(LevelBlocks(chunk_level_moments(codes, X, y, weight, 30), *layout))
    scaling = Scaling.from_statistics(stats, fit_intercept, standardize)
    dense = StatisticsEngine(dense_statistics(design, y, weight), scaling, fit_intercept)
    return stats, scaling, dense, design, y


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("standardize", [True, False])
def test_block_engine_equals_the_statistics_engine(fit_intercept, standardize, monkeypatch):
    stats, scaling, dense, _, _ = engine_case(fit_intercept, standardize)
    engine = BlockStatisticsEngine(stats, scaling, fit_intercept)
    size = np.abs(dense.reference).max()
    np.testing.assert_allclose(engine.reference, dense.reference, atol=1e-10 * size)
    params = np.random.default_rng(4).normal(size=dense.reference.shape)
    value, grad = engine.value_and_grad(params)
    expected_value, expected_grad = dense.value_and_grad(params)
    assert value == pytest.approx(expected_value, rel=1e-10)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-10 * np.abs(expected_grad).max())
    np.testing.assert_allclose(engine.hessian(), dense.hessian(), atol=1e-12 * np.abs(dense.hessian()).max())
    np.testing.assert_allclose(engine.solve(grad), np.linalg.solve(dense.hessian(), grad),
                               atol=1e-9 * np.abs(np.linalg.solve(dense.hessian(), grad)).max())
    assert engine.curvature() == pytest.approx(dense.curvature(), rel=1e-10)
    assert engine.condition_number() == pytest.approx(dense.condition_number(), rel=1e-8)
    # beyond DENSE_PARAMETERS the extreme eigenvalues come from Lanczos, on H and on H⁻¹
    from gradfit.engines import categorical

    monkeypatch.setattr(categorical, "DENSE_PARAMETERS", 5)
    lanczos = BlockStatisticsEngine(stats, scaling, fit_intercept)
    assert lanczos.curvature() == pytest.approx(dense.curvature(), rel=1e-8)
    assert lanczos.condition_number() == pytest.approx(dense.condition_number(), rel=1e-6)
    with pytest.raises(ValueError, match="never formed"):
        lanczos.hessian()


# -- fits ---------------------------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fit_equals_dense_lstsq_with_500_levels(blocks_only, monkeypatch, fit_intercept):
    monkeypatch.setattr(encoding, "MAX_LEVELS", 400)  # below the column's 500: only the blocks can fit it
    frame, y = make_table(20_000, 500, 5, seed=1)
    model = GDRegressor(tol=1e-10, fit_intercept=fit_intercept).fit(frame, y)
    design = dense_design(frame)
    coef, intercept = lstsq(design, y, fit_intercept=fit_intercept)
    assert list(model.feature_names_) == list(design.columns)
    assert model.engine_ == "statistics" and model.converged_
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-8, atol=1e-8 * np.abs(coef).max())
    assert model.intercept_ == pytest.approx(intercept, rel=1e-8, abs=1e-8 * np.abs(coef).max())
    # predictions on the raw frame: the model one predicts with
    np.testing.assert_allclose(model.predict(frame.iloc[:100]), design.to_numpy()[:100] @ coef + intercept,
                               rtol=1e-8, atol=1e-8)


def statsmodels_names(names):
    return ["Intercept" if n == "(intercept)" else ("C(g)" + n[1:] if n.startswith("g[T.") else n) for n in names]


def assert_statsmodels(summary, result, tol=1e-8):
    names = statsmodels_names(summary["names"])
    assert sorted(names) == sorted(result.params.index)
    for key, attribute in (("estimate", "params"), ("std_error", "bse"), ("t_value", "tvalues"),
                           ("p_value", "pvalues")):
        got = pd.Series(np.ravel(summary[key]), index=names)[result.params.index]
        expected = getattr(result, attribute)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * np.abs(expected).max() * 1e-3, err_msg=key)
    interval = result.conf_int()
    width = np.abs(interval.to_numpy()).max()  # an end near zero is a difference: relative to the widest
    for key, column in (("ci_lower", 0), ("ci_upper", 1)):
        got = pd.Series(np.ravel(summary[key]), index=names)[interval.index]
        np.testing.assert_allclose(got, interval[column], rtol=tol, atol=tol * width * 1e-3, err_msg=key)
    assert float(np.ravel(summary["r_squared"])[0]) == pytest.approx(result.rsquared, rel=tol)
    assert float(np.ravel(summary["f_statistic"])[0]) == pytest.approx(result.fvalue, rel=1e-7)


@pytest.mark.parametrize("weighted", [False, True])
def test_statistics_equal_statsmodels_formula_ols_and_wls(blocks_only, weighted):
    frame, y = make_table(6000, 80, 3, seed=2)
    data = frame.assign(y=y)
    formula = "y ~ x0 + C(g) + x1 + x2"
    if weighted:
        weight = np.random.default_rng(5).uniform(0.5, 2.0, len(y))
        model = GDRegressor(tol=1e-10, optimizer="cg").fit(frame, y, sample_weight=weight)  # by name, on the blocks
        result = smf.wls(formula, data, weights=weight).fit()
    else:
        model = GDRegressor(tol=1e-10).fit(frame, y)
        result = smf.ols(formula, data).fit()
    assert model.converged_
    assert_statsmodels(model.summary_, result)


@pytest.mark.parametrize("layout", ["data.parquet", "data.csv", "folder"])
def test_files_through_the_cli_equal_statsmodels(blocks_only, tmp_path, capsys, layout):
    frame, y = make_table(5000, 70, 2, seed=6)
    data = frame.assign(y=y)
    path = write_table(data, tmp_path / layout)
    source = FileSource(path, "y")
    assert source.block_candidate["n_levels"] == 70
    model = GDRegressor(tol=1e-10).fit(source)
    assert_statsmodels(model.summary_, smf.ols("y ~ x0 + C(g) + x1", data).fit())
    model_path = str(tmp_path / "m.json")
    assert main(["train", path, "--target", "y", "--tol", "1e-10", "-q", "-o", model_path]) == 0
    capsys.readouterr()
    assert main(["predict", model_path, path]) == 0
    predicted = np.loadtxt(capsys.readouterr().out.splitlines()[1:], dtype=float)
    np.testing.assert_allclose(predicted, smf.ols("y ~ x0 + C(g) + x1", data).fit().fittedvalues, rtol=1e-8)


def test_missing_values_dropped_on_the_blocks(blocks_only, tmp_path):
    frame, y = make_table(4000, 60, 2, seed=7)
    data = frame.assign(y=y)
    data.loc[[5, 17], "g"] = None
    data.loc[[9], "x1"] = np.nan
    path = write_table(data, tmp_path / "d.parquet")
    model = GDRegressor(tol=1e-10, missing="drop").fit(FileSource(path, "y", missing="drop"))
    kept = data.dropna()
    assert_statsmodels(model.summary_, smf.ols("y ~ x0 + C(g) + x1", kept).fit())


def test_other_fits_take_the_column_dense_or_as_codes_and_only_dense_solvers_refuse(blocks_only, tmp_path, capsys):
    frame, y = make_table(3000, 50, 2, seed=8)  # 50 levels: kept as codes, and within the dense limit
    huber = GDRegressor(loss="huber", tol=1e-8).fit(frame, y)
    assert len(huber.coef_) == 2 + 49
    settings = {"batch_size": 500, "epochs": 5, "tol": None, "random_state": 0}  # minibatches: codes as dummies
    minibatch = GDRegressor(**settings).fit(frame, y)
    encoding.BLOCK_LEVELS = 1000  # (restored by monkeypatch) the column dense from the start, as before blocks
    np.testing.assert_allclose(minibatch.coef_, GDRegressor(**settings).fit(frame, y).coef_, rtol=1e-12)
    encoding.BLOCK_LEVELS = 40
    many, y = make_table(3000, 70, 2, seed=9)  # 70 levels: beyond the dense limit of 60
    path = write_table(many.assign(y=y), tmp_path / "d.parquet")
    # beyond the dense limit the pass engine reads the codes (tests/test_categorical_codes_pass.py) ...
    assert main(["train", path, "--target", "y", "--loss", "huber", "--epochs", "20", "-q"]) == 0
    capsys.readouterr()
    assert len(GDRegressor(penalty="l2", alpha=0.1, epochs=20).fit(many, y).coef_) == 2 + 69
    assert len(GDRegressor(batch_size=100, epochs=2).fit(many, y).coef_) == 2 + 69
    # ... and so does Huber's optimizer="newton" by name (before: a one-line refusal, "more than the 60"): it is
    # the method "auto" runs, on the level blocks (tests/test_categorical_huber_newton.py)
    assert main(["train", path, "--target", "y", "--loss", "huber", "--optimizer", "newton", "-q"]) == 0
    assert GDRegressor(loss="huber", optimizer="newton").fit(many, y).fit_report_["optimizer"] == "newton"


def test_a_feature_constant_within_every_level_is_refused_in_one_line(blocks_only):
    frame, y = make_table(3000, 50, 2, seed=10)
    frame["x1"] = frame["g"].str[1:].astype(float)  # a function of the level: not determined apart from it
    with pytest.raises(DataError, match="'x1' is constant within every level"):
        GDRegressor().fit(frame, y)
    identifier = frame.assign(g=[f"row{i}" for i in range(len(frame))])  # one level a row
    with pytest.raises(DataError, match="3000 levels for 3000 rows: is the column an identifier"):
        GDRegressor().fit(identifier, y)
    frame, y = make_table(3000, 50, 2, seed=10)
    weight = np.where(frame["g"] == "L0007", 0.0, 1.0)
    with pytest.raises(DataError, match="'g=L0007' .* has no weight"):
        GDRegressor().fit(frame, y, sample_weight=weight)


def test_two_targets_on_the_blocks_equal_lstsq(blocks_only):
    frame, y = make_table(4000, 60, 3, seed=11)
    targets = np.column_stack([y, 2.0 * y + frame["x0"].to_numpy()])
    model = GDRegressor(tol=1e-10, engine="statistics").fit(frame, targets)
    design = dense_design(frame)
    for j in range(2):
        coef, intercept = lstsq(design, targets[:, j])
        np.testing.assert_allclose(model.coef_[j], coef, rtol=1e-8, atol=1e-8 * np.abs(coef).max())
        assert model.intercept_[j] == pytest.approx(intercept, rel=1e-8)


def test_one_source_serves_a_fit_on_the_blocks_then_a_dense_one(blocks_only, tmp_path):
    frame, y = make_table(3000, 50, 2, seed=12)
    source = FileSource(write_table(frame.assign(y=y), tmp_path / "d.parquet"), "y")
    first = GDRegressor(tol=1e-10).fit(source)  # on the blocks
    huber = GDRegressor(loss="huber", tol=1e-8).fit(source)  # dummies: the kept columns of the other kind go
    again = GDRegressor(tol=1e-10).fit(source)
    assert huber.n_features_in_ == again.n_features_in_ == first.n_features_in_
    np.testing.assert_allclose(again.coef_, first.coef_, rtol=1e-12)
    coef, _ = lstsq(dense_design(frame), y)
    np.testing.assert_allclose(first.coef_, coef, rtol=1e-8, atol=1e-8 * np.abs(coef).max())


@pytest.mark.parametrize("offset", [1e6, 1e8])
def test_level_effects_keep_their_digits_for_features_far_from_zero(blocks_only, offset):
    # The level means are stored about a chunk's mean: about zero, features at 1e8 with a
    # spread of 1 left the level effects (differences of level means) 1e-7 apart from lstsq's.
    frame, y = make_table(8000, 60, 3, seed=13, offset=0.0)
    shifted = frame.copy()
    for name in ("x0", "x1", "x2"):
        shifted[name] = frame[name] + offset
        frame[name] = shifted[name] - offset  # exactly the same numbers (Sterbenz), about zero
    coef, _ = lstsq(dense_design(frame), y)
    model = GDRegressor(tol=1e-10).fit(shifted, y)
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-9, atol=1e-10 * np.abs(coef).max())


@pytest.mark.parametrize("reference", [0, 2, 6])
def test_predict_gathers_level_coefficients_as_the_dense_dummies_would(reference):
    """model.predict with level codes equals the dense one-hot product; unseen (-1) adds 0, missing (-2) is NaN."""
    from gradfit.model import predict

    rng = np.random.default_rng(reference)
    n_levels, p, n = 7, 3, 60
    dense_index = np.array([0, 2, 4])
    level_index = np.setdiff1d(np.arange(p + n_levels - 1), dense_index)
    layout = {"n_levels": n_levels, "reference": reference, "dense_index": dense_index, "level_index": level_index}
    coef, intercept = rng.standard_normal((2, p + n_levels - 1)), rng.standard_normal(2)
    others, codes = rng.standard_normal((n, p)), rng.integers(-2, n_levels, n)
    dense = np.zeros((n, p + n_levels - 1))
    dense[:, dense_index] = others
    kept = [level for level in range(n_levels) if level != reference]
    for row, code in enumerate(codes):
        if code >= 0 and code != reference:
            dense[row, level_index[kept.index(code)]] = 1.0
    expected = dense @ coef.T + intercept
    expected[codes == -2] = np.nan
    np.testing.assert_allclose(predict(others, coef, intercept, codes, layout), expected, rtol=1e-13, atol=1e-13)


def test_partial_fit_on_batches_missing_levels_equals_the_dense_dummies(monkeypatch):
    """partial_fit's later batches may leave levels without rows: the blocks' epochs equal the dense dummies'."""
    frame, y = make_table(600, 50, 2)
    batches = [(frame.iloc[:500], y[:500]), (frame.iloc[500:510], y[500:510]), (frame.iloc[510:530], y[510:530])]

    def run(block_levels):
        monkeypatch.setattr(encoding, "BLOCK_LEVELS", block_levels)
        model = GDRegressor()
        for X_batch, y_batch in batches:
            model.partial_fit(X_batch, y_batch)
        return model

    on_blocks, dense = run(40), run(1000)
    np.testing.assert_allclose(on_blocks.coef_, dense.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(on_blocks.intercept_, dense.intercept_, rtol=1e-9, atol=1e-12)
