"""Accuracy against NIST's certified values (StRD linear least squares).

``optimizer="cg"`` must get every certified coefficient to at least 7
significant digits (log relative error, LRE) on Norris, Pontius, NoInt1,
NoInt2, Longley and Wampler3, 5 on Wampler4 and Wampler5, and on Filip either 6
or a clear IllConditionedError, never wrong digits silently; the residual
standard deviation and R² (uncentred without an intercept) to as many digits.
The files in tests/data/strd are NIST's, byte for byte.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from gradfit import ArraySource, DataError, GDRegressor, IllConditionedError
from gradfit.datasets import load_strd, log_relative_error, residual_statistics
from gradfit.refine import qr_factor
from gradfit.scaling import Scaling
from gradfit.engines import accumulate

FOLDER = os.path.join(os.path.dirname(__file__), "data", "strd")

# data set → (digits required of the coefficients, s and R²; n, number of certified parameters)
REQUIRED = {
    "Norris": (7, 36, 2),
    "Pontius": (7, 40, 3),
    "NoInt1": (7, 11, 1),
    "NoInt2": (7, 3, 1),
    "Longley": (7, 16, 7),
    "Wampler3": (7, 21, 6),
    "Wampler4": (5, 21, 6),
    "Wampler5": (5, 21, 6),
    "Filip": (6, 82, 11),
}
VARIANTS = [
    dict(),
    dict(engine="pass"),
    dict(standardize=False),
]


def path(name):
    return os.path.join(FOLDER, f"{name}.dat")


def digits(model, problem):
    """``(coefficients' LRE (min), s LRE, R² LRE)`` of a fitted model."""
    estimates = np.concatenate([[model.intercept_], model.coef_]) if problem.fit_intercept else model.coef_
    s, r2 = residual_statistics(problem.X, problem.y, model.coef_, model.intercept_, problem.fit_intercept)
    return (float(np.min(log_relative_error(estimates, problem.certified))),
            float(log_relative_error(s, problem.residual_sd)), float(log_relative_error(r2, problem.r2)))


# -- the reader -----------------------------------------------------------------


def test_the_files_are_nists_bytes():
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "strd")
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FOLDER, "*.dat")))
    assert names == sorted(f"{name}.dat" for name in REQUIRED)
    if os.path.isdir(shared):
        for name in names:
            with open(os.path.join(FOLDER, name), "rb") as ours, open(os.path.join(shared, name), "rb") as theirs:
                assert ours.read() == theirs.read(), name


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_reader_shapes(name):
    _, n, p = REQUIRED[name]
    problem = load_strd(path(name))
    assert problem.name == name
    assert problem.X.shape == (n, p - problem.fit_intercept) and problem.y.shape == (n,)
    assert problem.fit_intercept == (name not in ("NoInt1", "NoInt2"))
    assert problem.certified.shape == (p,)
    assert np.all(np.isfinite(problem.X)) and np.all(np.isfinite(problem.y))


def test_reader_values():
    longley = load_strd(path("Longley"))
    assert longley.intercept == -3482258.63459582
    assert longley.coef[-1] == 1829.15146461355 and longley.coef_sd[1] == 0.334910077722432e-01
    assert longley.residual_sd == 304.854073561965 and longley.r2 == 0.995479004577296
    assert longley.y[0] == 60323 and list(longley.X[0]) == [83.0, 234289, 2356, 1590, 107608, 1947]
    filip = load_strd(path("Filip"))  # y first, then x; the design holds x, x², …, x¹⁰
    assert filip.polynomial_degree == 10
    assert filip.y[0] == 0.8116 and filip.X[0, 0] == -6.860120914
    np.testing.assert_allclose(filip.X[:, 9], filip.X[:, 0] ** 10, rtol=1e-15)
    noint = load_strd(path("NoInt2"))
    assert not noint.fit_intercept and noint.intercept == 0.0 and noint.coef[0] == 0.727272727272727


def test_reader_refuses_other_files(tmp_path):
    other = tmp_path / "other.dat"
    other.write_text("just\nsome\ntext\n")
    with pytest.raises(DataError, match="not an StRD file"):
        load_strd(other)


def test_log_relative_error():
    np.testing.assert_allclose(log_relative_error([1.001, 1.0, 2.0, 0.0, 1e-9], [1.0, 1.0, -2.0, 0.0, 0.0]),
                               [3.0, 15.0, 0.0, 15.0, 9.0], atol=1e-9)
    assert log_relative_error(np.nan, 1.0) == 0.0


def test_residual_statistics_are_the_certified_ones_at_the_certified_values():
    for name in ("Longley", "NoInt1", "Pontius"):
        problem = load_strd(path(name))
        s, r2 = residual_statistics(problem.X, problem.y, problem.coef, problem.intercept, problem.fit_intercept)
        assert log_relative_error(s, problem.residual_sd) > 12
        assert log_relative_error(r2, problem.r2) > 12


# -- the accuracy -----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v}" for k, v in v.items()) or "defaults")
@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_cg_gets_the_certified_digits(name, variant):
    required = REQUIRED[name][0]
    problem = load_strd(path(name))
    model = GDRegressor(optimizer="cg", fit_intercept=problem.fit_intercept, **variant)
    try:
        model.fit(problem.X, problem.y)
    except IllConditionedError as error:
        # allowed for Filip only, and then with a message that says why
        assert name == "Filip", error
        assert "too ill-conditioned for float64" in str(error)
        return
    params, s, r2 = digits(model, problem)
    assert params >= required, f"{name}: {params:.1f} digits"
    assert s >= required and r2 >= required, f"{name}: s {s:.1f}, R² {r2:.1f} digits"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_refinement_estimates_its_digits(name):
    # The last refinement correction is the size of the error left: its
    # estimate of the digits never claims more than 1.5 digits above the truth
    # and is within 1.5 of it, or 2.5 where refinement settled on rounding
    # noise (the QR path on Filip: there the iterate's error is itself noise,
    # one to two digits under the last correction, depending on the BLAS).
    # (Below ~14 digits, where the truth is measurable.)
    problem = load_strd(path(name))
    model = GDRegressor(optimizer="cg", fit_intercept=problem.fit_intercept).fit(problem.X, problem.y)
    record = model.refinement_
    assert record["status"] == "settled" and record["epochs"] <= 8
    estimates = np.concatenate([[model.intercept_], model.coef_]) if problem.fit_intercept else model.coef_
    certified = problem.certified
    order = np.r_[1 : len(certified), 0] if problem.fit_intercept else np.arange(len(certified))
    actual = log_relative_error(estimates[order], certified[order])  # coef first, then intercept
    estimated = np.asarray(record["digits"])[0]
    low = actual < 14
    under = 2.5 if record["method"] == "qr" else 1.5
    assert np.all(estimated[low] - actual[low] <= 1.5), (estimated, actual)
    assert np.all(actual[low] - estimated[low] <= under), (estimated, actual)


def test_filip_refines_with_the_qr_factor():
    # Filip's Gram matrix has condition number ~1e19: the refinement solves
    # with the data's triangular factor instead (condition ~4e9).
    problem = load_strd(path("Filip"))
    model = GDRegressor(optimizer="cg").fit(problem.X, problem.y)
    assert model.refinement_["method"] == "qr"
    assert model.refinement_["condition_number"] > 1e16


class SmallChunks(ArraySource):
    """Arrays read a few rows at a time, so that chunk merging is exercised."""

    def rows_per_chunk(self):
        return 5


@pytest.mark.parametrize("name", ["Longley", "Filip", "NoInt1"])
def test_chunked_reading_keeps_the_digits(name):
    required = REQUIRED[name][0]
    problem = load_strd(path(name))
    source = SmallChunks(problem.X, problem.y[:, None])
    model = GDRegressor(optimizer="cg", fit_intercept=problem.fit_intercept).fit(source)
    params, s, r2 = digits(model, problem)
    assert min(params, s, r2) >= required


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_qr_factor_is_the_scatters_square_root(fit_intercept):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(47, 4)) * [1, 10, 100, 0.1] + [5, -3, 1000, 0]
    weight = rng.uniform(0.1, 2.0, size=47)
    source = SmallChunks(X, rng.normal(size=(47, 1)), weight)
    stats = accumulate(source, full=True)
    scaling = Scaling.from_statistics(stats, fit_intercept, True)
    factor = qr_factor(source, scaling, fit_intercept)
    Z = (X - scaling.center) / scaling.scale
    if fit_intercept:
        Z = Z - np.average(Z, axis=0, weights=weight)
    expected = (Z * weight[:, None]).T @ Z
    np.testing.assert_allclose(factor.T @ factor, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert np.allclose(factor, np.triu(factor))


# -- never wrong digits silently ----------------------------------------------------


@pytest.mark.parametrize("engine", ["statistics", "pass"])
def test_collinear_features_are_refused_not_guessed(engine):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 2))
    X = np.column_stack([x, x[:, 0] + 2 * x[:, 1]])  # the third column is the first plus twice the second
    y = x @ [1.0, -1.0] + 0.1 * rng.normal(size=50)
    with pytest.raises(IllConditionedError, match="too ill-conditioned for float64") as caught:
        GDRegressor(optimizer="cg", engine=engine).fit(X, y)
    assert caught.value.condition_number > 1e20
    # a ridge penalty makes the problem well-posed again
    GDRegressor(optimizer="cg", engine=engine, penalty="l2", alpha=1e-6).fit(X, y)


def test_refinement_is_recorded_only_for_cg():
    problem = load_strd(path("Norris"))
    assert GDRegressor().fit(problem.X, problem.y).refinement_ is None
    record = GDRegressor(optimizer="cg").fit(problem.X, problem.y).refinement_
    assert record["method"] == "eigh" and record["epochs"] >= 1
