"""The two engines against each other and against oracles.

* same iterates: the statistics and the pass engine give the same cost curve
  and coefficients (1e-9 relative) over a table of problems;
* the moments equal a two-pass extended-precision oracle, and on data far
  from zero (NIST's Longley, a huge offset) the centred merge keeps the digits
  the naive ``ZᵀZ − N μμᵀ`` loses;
* the optimal cost equals ``numpy.linalg.lstsq``'s residual cost;
* no needless copies: a fit's traced allocations stay a small fraction of X,
  float32 is read as float32;
* ``engine="auto"`` follows the cost model and ``engine_`` records it;
  forcing the statistics engine where it cannot serve is an ``OptionError``;
* the threaded fold gives bit-for-bit the serial fold's result.

No timing assertions: speed is shown by ``benchmarks/bench_engines.py``.
"""

from __future__ import annotations

import os
import re
import tracemalloc
import warnings
from fractions import Fraction

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import gradfit
from gradfit.engines import (
    PassEngine,
    Statistics,
    StatisticsEngine,
    accumulate,
    choose_engine,
    engine_costs,
    kernels,
    passes,
    statistics,
)
from gradfit.losses import AbsoluteError, Huber, SquaredError
from gradfit.scaling import Scaling
from gradfit.sources import ArraySource, Source

from .conftest import make_regression

STRD = os.path.join(os.path.dirname(__file__), "data", "strd")


@pytest.fixture
def small_blocks(monkeypatch):
    """Chunks of 1000 rows, moments blocks of 200 and pass blocks of 64: every merge runs."""
    monkeypatch.setattr(Source, "rows_per_chunk", lambda self: 1000)
    monkeypatch.setattr(statistics, "moments_rows", lambda n_rows, width: 200)
    monkeypatch.setattr(passes, "PASS_BLOCK_BYTES", 1)
    monkeypatch.setattr(passes, "PASS_MIN_ROWS", 64)


def relative(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -- the same iterates -----------------------------------------------------------

CASES = {
    "plain": {},
    "no intercept": dict(fit_intercept=False),
    "raw units": dict(standardize=False),
    "raw, no intercept": dict(standardize=False, fit_intercept=False),
    "weights": dict(weights=True),
    "weights, raw, no intercept": dict(weights=True, standardize=False, fit_intercept=False),
    "three outputs": dict(k=3),
    "three outputs, weights": dict(k=3, weights=True),
    "float32": dict(dtype=np.float32),
    "float32, three outputs, weights": dict(dtype=np.float32, k=3, weights=True),
    "Fortran order": dict(fortran=True),
    "centred features": dict(centred=True),
    "offset 1e4": dict(offset=1e4),
    "nesterov": dict(optimizer="nesterov"),
    "l2 penalty": dict(penalty="l2", alpha=0.1),
    "elastic net": dict(penalty="elasticnet", alpha=0.05),
}


def make_case(n=3001, d=6, k=1, weights=False, dtype=np.float64, fortran=False, offset=0.0, seed=0,
              centred=False):
    X, y = make_regression(n=n, d=d, k=k, noise=0.5, seed=seed, offset=offset, dtype=dtype)
    if centred:  # features near zero: the moments pass forms XᵀX on the blocks in place
        X -= X.mean(axis=0)
    if fortran:
        X = np.asfortranarray(X)
    weight = np.random.default_rng(seed + 1).uniform(0.0, 3.0, size=n) if weights else None
    return X, y, weight


@pytest.fixture(params=[True, False], ids=["compiled", "blas"])
def pass_path(request, monkeypatch):
    """The pass engine's squared error by the compiled kernel (where it applies) or by BLAS blocks."""
    if not request.param:
        monkeypatch.setattr(kernels, "available", False)
    return request.param


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_engines_give_the_same_cost_curve_and_coefficients(case, small_blocks, pass_path):
    options = dict(CASES[case])
    data = {key: options.pop(key) for key in ("k", "weights", "dtype", "fortran", "offset", "centred") if key in options}
    X, y, weight = make_case(**data)
    settings = dict(epochs=40, tol=None, **options)
    # One step size for both: "auto" would give the pass engine its own L (a sketch beyond 16 parameters).
    rate = gradfit.GDRegressor(engine="statistics", **settings).fit(X, y, sample_weight=weight).learning_rate_
    fits = {
        engine: gradfit.GDRegressor(engine=engine, learning_rate=rate, **settings).fit(X, y, sample_weight=weight)
        for engine in ("statistics", "pass")
    }
    statistics_fit, pass_fit = fits["statistics"], fits["pass"]
    assert statistics_fit.engine_ == "statistics" and pass_fit.engine_ == "pass"
    assert len(statistics_fit.loss_curve_) == len(pass_fit.loss_curve_) == 40
    assert relative(pass_fit.loss_curve_, statistics_fit.loss_curve_) < 1e-9
    curve = np.asarray(statistics_fit.loss_curve_)
    assert curve[-1] < curve[0]  # it did train
    assert relative(pass_fit.coef_, statistics_fit.coef_) < 1e-9
    assert relative(pass_fit.intercept_, statistics_fit.intercept_) < 1e-9


def test_pass_engine_curvature_and_hessian_products_match_the_statistics(small_blocks, pass_path):
    X, y, weight = make_case(k=2, weights=True, d=12)
    source = ArraySource(X, y.reshape(len(y), -1), weight)
    stats = accumulate(source)
    scaling = Scaling.from_statistics(stats, True, True)
    exact = StatisticsEngine(stats, scaling, True)
    by_passes = PassEngine(source, scaling, SquaredError(), True, stats.sum_weights)
    direction = np.random.default_rng(3).normal(size=(13, 2))
    assert relative(by_passes.hvp(direction), exact.hvp(direction)) < 1e-12
    assert abs(by_passes.curvature() / exact.curvature() - 1) < 1e-4  # exact up to 16 parameters


@pytest.mark.parametrize("loss", [Huber(0.7), AbsoluteError()], ids=["huber", "absolute_error"])
@pytest.mark.parametrize("weights", [False, True], ids=["unweighted", "weighted"])
def test_pass_engine_other_losses_against_a_direct_computation(loss, weights, small_blocks):
    X, y, weight = make_case(k=2, weights=weights, dtype=np.float32)
    y = y.reshape(len(y), -1)
    source = ArraySource(X, y, weight)
    stats = accumulate(source, full=False)
    scaling = Scaling.from_statistics(stats, True, True)
    engine = PassEngine(source, scaling, loss, True, stats.sum_weights)
    params = np.random.default_rng(4).normal(size=(7, 2))
    value, grad = engine.value_and_grad(params)
    # The same in plain NumPy, on standardized float64 features.
    features = np.column_stack([(X.astype(float) - scaling.center) / scaling.scale, np.ones(len(X))])
    pointwise, derivative = loss.value_and_derivative(features @ params - y)
    v = np.ones(len(X)) if weight is None else weight
    scale = v.sum() * 2
    assert value == pytest.approx(float(v @ pointwise.sum(axis=1)) / scale, rel=1e-12)
    assert relative(grad, features.T @ (derivative * v[:, None]) / scale) < 1e-12


# -- the moments against oracles -------------------------------------------------


def two_pass_oracle(Z, weight=None):
    """Weighted mean and centred scatter of Z's rows in extended precision, two passes."""
    Z = np.asarray(Z, dtype=np.longdouble)
    v = np.ones(len(Z), dtype=np.longdouble) if weight is None else np.asarray(weight, dtype=np.longdouble)
    mean = (v @ Z) / v.sum()
    centred = Z - mean
    return mean, (centred * v[:, None]).T @ centred


@pytest.mark.parametrize("weights", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    "offset, dtype, centred",
    [(0.0, np.float64, False), (0.0, np.float64, True), (1e8, np.float64, False), (1e4, np.float32, False)],
    ids=["near zero", "centred", "offset 1e8", "float32, offset 1e4"],
)
def test_moments_equal_a_two_pass_extended_precision_oracle(weights, offset, dtype, centred, small_blocks):
    X, y, weight = make_case(n=4321, d=5, k=2, weights=weights, offset=offset, dtype=dtype, seed=7,
                             centred=centred)
    stats = accumulate(ArraySource(X, y, weight))
    mean, scatter = two_pass_oracle(np.column_stack([X, y]), weight)
    assert stats.n_samples == 4321
    assert stats.sum_weights == pytest.approx(4321.0 if weight is None else float(weight.sum()), rel=1e-14)
    assert relative(stats.mean, mean) < 1e-14
    assert relative(stats.scatter, scatter) < 1e-12
    assert relative(stats.scatter_diagonal, np.diagonal(scatter)) < 1e-12
    # The diagonal-only pass (the pass engine's) keeps the same moments.
    diagonal = accumulate(ArraySource(X, y, weight), full=False)
    assert diagonal.scatter is None
    assert relative(diagonal.scatter_diagonal, np.diagonal(scatter)) < 1e-12


def test_centred_merge_keeps_the_digits_the_naive_formula_loses(small_blocks):
    X, y, _ = make_case(n=4321, d=4, offset=1e8, seed=8)
    Z = np.column_stack([X, y])
    stats = accumulate(ArraySource(X, y.reshape(-1, 1)))
    _, oracle = two_pass_oracle(Z)
    naive = Z.T @ Z - len(Z) * np.outer(Z.mean(axis=0), Z.mean(axis=0))
    assert relative(stats.scatter, oracle) < 1e-12
    assert relative(naive, oracle) > 1e-3  # (most of) the digits are gone


def read_longley():
    """NIST StRD Longley: X (16, 6), y (16,), certified coefficients B1…B6 and B0."""
    with open(os.path.join(STRD, "Longley.dat")) as handle:
        lines = handle.read().splitlines()
    certified = {}
    for line in lines[30:51]:  # "Certified Values (lines 31 to 51)"
        fields = line.split()
        if fields and fields[0].startswith("B") and fields[0][1:].isdigit():
            certified[int(fields[0][1:])] = float(fields[1])
    data = np.array([[float(value) for value in line.split()] for line in lines[60:76]])  # lines 61 to 76
    return data[:, 1:], data[:, 0], np.array([certified[j] for j in range(1, 7)]), certified[0]


def digits(estimate, certified):
    """NIST's log relative error: correct significant digits, the worst over the parameters."""
    error = np.abs(np.asarray(estimate) - certified) / np.abs(certified)
    return float(np.min(-np.log10(np.maximum(error, 1e-16))))


def longley_solution(stats):
    """Coefficients and intercept in the data's units from Longley's :class:`Statistics`."""
    scaling = Scaling.from_statistics(stats, True, True)
    params, _ = StatisticsEngine(stats, scaling, True).optimum()
    coef, intercept = scaling.to_raw(params, True)
    return np.append(coef[0], intercept[0])


@pytest.fixture
def blocks_of_three(monkeypatch):
    """Moments blocks of 3 rows: on 16 rows, the pairwise merges do all the work."""
    monkeypatch.setattr(statistics, "moments_rows", lambda n_rows, width: 3)


def test_longley_moments_equal_exact_rational_arithmetic(blocks_of_three):
    X, y, _, _ = read_longley()
    rows = [[Fraction(value) for value in row] for row in np.column_stack([X, y])]
    mean = [sum(column, Fraction(0)) / len(rows) for column in zip(*rows)]
    scatter = [
        [sum((row[i] - mean[i]) * (row[j] - mean[j]) for row in rows) for j in range(7)] for i in range(7)
    ]
    stats = accumulate(ArraySource(X, y[:, None]))
    assert relative(stats.mean, np.array(mean, dtype=float)) < 1e-15
    assert relative(stats.scatter, np.array(scatter, dtype=float)) < 1e-14


def test_longley_centred_statistics_keep_digits_the_naive_scatter_loses(blocks_of_three):
    X, y, coef, intercept = read_longley()
    certified = np.append(coef, intercept)
    centred = accumulate(ArraySource(X, y[:, None]))
    Z = np.column_stack([X, y])
    n = len(Z)
    mean = Z.sum(axis=0) / n
    naive_scatter = Z.T @ Z - n * np.outer(mean, mean)
    naive = Statistics(6, 1, n, float(n), mean, naive_scatter, np.diagonal(naive_scatter).copy())
    centred_digits = digits(longley_solution(centred), certified)
    naive_digits = digits(longley_solution(naive), certified)
    assert centred_digits > 11
    assert naive_digits < centred_digits - 3


# -- the optimum -------------------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no intercept"])
@pytest.mark.parametrize("weights", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k", [1, 3], ids=["one output", "three outputs"])
def test_optimal_cost_equals_the_lstsq_residual_cost(fit_intercept, weights, k):
    X, y, weight = make_case(n=2000, d=8, k=k, weights=weights, offset=50.0, seed=11)
    y = y.reshape(len(y), -1)
    stats = accumulate(ArraySource(X, y, weight))
    scaling = Scaling.from_statistics(stats, fit_intercept, True)
    _, optimal_cost = StatisticsEngine(stats, scaling, fit_intercept).optimum()
    v = np.ones(len(X)) if weight is None else weight
    design = np.column_stack([X, np.ones(len(X))]) if fit_intercept else X
    root = np.sqrt(v)[:, None]
    solution = np.linalg.lstsq(design * root, y * root, rcond=None)[0]
    residual = design @ solution - y
    lstsq_cost = float(v @ (residual * residual).sum(axis=1)) / (v.sum() * k)
    assert optimal_cost == pytest.approx(lstsq_cost, rel=1e-10)


# -- no needless copies ------------------------------------------------------------


def peak_traced(function):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("engine", ["statistics", "pass"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_fit_allocates_a_small_fraction_of_X(engine, dtype):
    rng = np.random.default_rng(5)
    n, d = 131072 if dtype == np.float64 else 262144, 100  # X of 100 MB
    X = np.empty((n, d), dtype=dtype)
    for start in range(0, n, 8192):
        X[start : start + 8192] = rng.standard_normal((min(8192, n - start), d))
    y = X[:, :3].sum(axis=1, dtype=np.float64) + rng.standard_normal(n)
    model = gradfit.GDRegressor(engine=engine, epochs=3, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peak = peak_traced(lambda: model.fit(X, y))
    assert model.engine_ == engine
    assert peak < 0.1 * X.nbytes, f"peak {peak / 1e6:.1f} MB for X of {X.nbytes / 1e6:.1f} MB"


def test_float32_chunks_reach_the_engines_as_float32():
    X, y, _ = make_case(n=5000, d=4, dtype=np.float32)
    seen = []

    class Spy(ArraySource):
        def chunks(self):
            for chunk in super().chunks():
                seen.append((chunk.X.dtype, np.shares_memory(chunk.X, X)))
                yield chunk

    gradfit.GDRegressor(epochs=3, tol=None, engine="pass").fit(Spy(X, y[:, None]))
    assert seen and all(dtype == np.float32 and shared for dtype, shared in seen)


# -- bad values, found by the statistics pass --------------------------------------


@pytest.mark.parametrize("engine", ["statistics", "pass"])
@pytest.mark.parametrize(
    "value, kind", [(np.nan, "missing value (NaN)"), (np.inf, "infinite value")], ids=["nan", "inf"]
)
def test_a_bad_value_is_named_by_row_and_column(engine, value, kind, small_blocks):
    X, y, _ = make_case(n=5000, d=4)
    X[3333, 2] = value
    with pytest.raises(gradfit.DataError, match=re.escape(kind) + r".* X\[3333, 2\]"):
        gradfit.GDRegressor(engine=engine, epochs=2).fit(X, y)


def test_a_negative_weight_is_named(small_blocks):
    X, y, weight = make_case(n=5000, d=4, weights=True)
    source = ArraySource(X, y[:, None], weight)
    weight[4001] = -1.0
    with pytest.raises(gradfit.DataError, match=r"sample_weight\[4001\]"):
        accumulate(source)


def test_overflowing_squares_name_the_column():
    X, y, _ = make_case(n=3000, d=3)
    X[:, 1] *= 1e200
    with pytest.raises(gradfit.DataError, match=r"column 'x1'.*overflow"):
        gradfit.GDRegressor(engine="statistics").fit(X, y)


# -- threads ----------------------------------------------------------------------


@pytest.mark.parametrize("full", [True, False], ids=["scatter", "diagonal"])
def test_threaded_fold_equals_the_serial_fold_bit_for_bit(full, small_blocks):
    X, y, weight = make_case(n=20000, d=5, k=2, weights=True, offset=1e3)
    source = ArraySource(X, y, weight)
    blas_threads = [info["num_threads"] for info in threadpool_info()]
    threaded = accumulate(source, full=full)
    assert [info["num_threads"] for info in threadpool_info()] == blas_threads  # restored
    with threadpool_limits(limits=1, user_api="blas"):  # one BLAS thread: the serial fold
        serial = accumulate(source, full=full)
    assert np.array_equal(threaded.mean, serial.mean)
    assert np.array_equal(threaded.scatter_diagonal, serial.scatter_diagonal)
    if full:
        assert np.array_equal(threaded.scatter, serial.scatter)
    engine = PassEngine(source, Scaling.identity(5), Huber(1.0), True, threaded.sum_weights)
    params = np.ones((6, 2))
    with threadpool_limits(limits=1, user_api="blas"):
        serial_value, serial_grad = engine.value_and_grad(params)
    value, grad = engine.value_and_grad(params)
    assert value == serial_value and np.array_equal(grad, serial_grad)


# -- choosing the engine ----------------------------------------------------------------


@pytest.mark.parametrize(
    "requested, loss, batch_size, d, epochs, n, expected",
    [
        ("auto", SquaredError(), None, 100, 100, 10**6, "statistics"),
        ("auto", SquaredError(), None, 1000, 100, 2 * 10**5, "statistics"),
        ("auto", SquaredError(), None, 32, 1, 10**6, "statistics"),
        ("auto", SquaredError(), None, 5000, 5, 10**6, "pass"),
        ("auto", SquaredError(), None, 2000, 100, 1000, "pass"),  # the d³ eigendecomposition dominates
        ("auto", SquaredError(), None, 5000, 5, None, "pass"),  # rows not known yet (CSV)
        ("auto", Huber(1.0), None, 10, 1000, 10**6, "pass"),
        ("auto", SquaredError(), 32, 10, 1000, 10**6, "pass"),
        ("pass", SquaredError(), None, 10, 1000, 10**6, "pass"),
        ("statistics", SquaredError(), None, 5000, 1, 10**6, "statistics"),
    ],
)
def test_choose_engine_follows_the_cost_model(requested, loss, batch_size, d, epochs, n, expected):
    assert choose_engine(requested, loss, batch_size, d, epochs, n_samples=n) == expected
    if requested == "auto" and loss.quadratic and batch_size is None:
        statistics_cost, pass_cost = engine_costs(n, d, epochs)
        assert (statistics_cost <= pass_cost) == (expected == "statistics")


@pytest.mark.parametrize(
    "options, expected",
    [
        (dict(epochs=100), "statistics"),
        (dict(epochs=1), "pass"),  # 300 features, one epoch: passes cost less than the Gram
        (dict(epochs=100, loss="huber"), "pass"),
        (dict(epochs=2, batch_size=500, random_state=0), "pass"),
        (dict(epochs=3, engine="pass"), "pass"),
        (dict(epochs=1, engine="statistics"), "statistics"),
    ],
)
def test_auto_engine_is_recorded_in_engine_(options, expected):
    X, y, _ = make_case(n=1500, d=300, seed=2)
    settings = dict(tol=None, **options)
    loss = Huber(1.0) if "loss" in options else SquaredError()
    requested = settings.get("engine", "auto")
    assert choose_engine(requested, loss, settings.get("batch_size"), 300, settings["epochs"], 1500) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gradfit.GDRegressor(**settings).fit(X, y)
    assert model.engine_ == expected


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(loss="huber"), r"loss='huber'"),
        (dict(loss="absolute_error"), r"loss='absolute_error'"),
        (dict(batch_size=16), r"batch_size=16"),
    ],
)
def test_forcing_statistics_where_it_cannot_serve_is_an_option_error(options, message, tutorial):
    X, y = tutorial
    with pytest.raises(gradfit.OptionError, match=rf'engine="statistics".*{message}.*engine="pass"'):
        gradfit.GDRegressor(engine="statistics", **options).fit(X, y)


def test_an_unknown_engine_lists_the_valid_ones():
    with pytest.raises(gradfit.OptionError, match="auto, statistics, pass"):
        choose_engine("gram", SquaredError(), None, 3, 10)
