"""Regression statistics and fit diagnostics, against statsmodels, NIST and exact algebra."""

import json
import math
import os
import re
import warnings

import numpy as np
import pytest
import statsmodels.api as sm

from gradfit import GDRegressor, load
from gradfit.cli import main
from gradfit.diagnostics import epochs_to_reach
from gradfit.engines import accumulate
from gradfit.sources import ArraySource
from gradfit.summary import Unavailable, format_table, plain, regression_statistics, unplain

from .conftest import make_regression

STRD = os.path.join(os.path.dirname(__file__), "data", "strd")
PER_COEFFICIENT = {"std_error": "bse", "t_value": "tvalues", "p_value": "pvalues"}


def statsmodels_fit(X, y, fit_intercept, weights=None):
    design = sm.add_constant(X, prepend=True, has_constant="add") if fit_intercept else X
    model = sm.WLS(y, design, weights=weights) if weights is not None else sm.OLS(y, design)
    return model.fit()


def assert_matches_statsmodels(statistics, reference, rtol=1e-8):
    for ours, theirs in PER_COEFFICIENT.items():
        np.testing.assert_allclose(statistics[ours], getattr(reference, theirs), rtol=rtol, err_msg=ours)
    interval = reference.conf_int(alpha=0.05)
    np.testing.assert_allclose(statistics["ci_lower"], interval[:, 0], rtol=rtol)
    np.testing.assert_allclose(statistics["ci_upper"], interval[:, 1], rtol=rtol)
    np.testing.assert_allclose(statistics["r_squared"], reference.rsquared, rtol=rtol)
    np.testing.assert_allclose(statistics["adj_r_squared"], reference.rsquared_adj, rtol=rtol)
    np.testing.assert_allclose(statistics["f_statistic"], reference.fvalue, rtol=rtol)
    np.testing.assert_allclose(statistics["f_p_value"], reference.f_pvalue, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(statistics["residual_std"], math.sqrt(reference.scale), rtol=rtol)
    assert statistics["df_resid"] == reference.df_resid
    assert statistics["df_model"] == reference.df_model


# -- statsmodels ------------------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("standardize", [True, False])
def test_statistics_equal_statsmodels(fit_intercept, weighted, standardize):
    X, y = make_regression(n=80, d=4, seed=3, noise=0.7, offset=5.0)
    weights = np.random.default_rng(1).uniform(0.2, 3.0, size=len(y)) if weighted else None
    model = GDRegressor(optimizer="cg", fit_intercept=fit_intercept, standardize=standardize)
    model.fit(X, y, sample_weight=weights)
    reference = statsmodels_fit(X, y, fit_intercept, weights)
    # cg reaches the least-squares coefficients, so the two describe the same model.
    np.testing.assert_allclose(model.summary_["estimate"], reference.params, rtol=1e-8)
    assert_matches_statsmodels(model.summary_, reference)
    assert model.summary_["names"] == (["(intercept)"] if fit_intercept else []) + [f"x{j}" for j in range(4)]


def test_multi_output_statistics_are_per_output():
    X, Y = make_regression(n=60, d=3, k=2, seed=4, noise=0.5)
    model = GDRegressor(optimizer="cg").fit(X, Y)
    statistics = model.summary_
    assert len(statistics["r_squared"]) == 2 and len(statistics["std_error"]) == 2
    for j in range(2):
        reference = statsmodels_fit(X, Y[:, j], True)
        one = {key: (value[j] if isinstance(value, list) else value) for key, value in statistics.items()}
        assert_matches_statsmodels(one, reference)


def test_pass_engine_collects_the_same_statistics_in_one_extra_pass():
    X, y = make_regression(n=120, d=3, seed=5, noise=0.3)
    by_statistics = GDRegressor(optimizer="cg", engine="statistics").fit(X, y)
    by_pass = GDRegressor(optimizer="cg", engine="pass").fit(X, y)
    assert by_pass.engine_ == "pass"
    for key in ("std_error", "t_value", "r_squared", "f_statistic", "residual_std"):
        np.testing.assert_allclose(by_pass.summary_[key], by_statistics.summary_[key], rtol=1e-8, err_msg=key)
    assert any("extra pass" in note for note in by_pass.fit_report_["notes"])
    np.testing.assert_allclose(by_pass.fit_report_["optimal_cost"], by_statistics.fit_report_["optimal_cost"], rtol=1e-10)


def test_a_fit_short_of_the_optimum_shows_the_optimum_s_statistics_named_so():
    """Four epochs, far from the optimum (issue 11): no OLS statistics of a point that is not the optimum.

    The table is statsmodels' (computed at the least-squares optimum the
    statistics give) and says so; the returned coefficients' own are withheld.
    """
    X, y = make_regression(n=100, d=3, seed=6, noise=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        early = GDRegressor(epochs=4, tol=None, standardize=False).fit(X, y)
    statistics, reference = early.summary_, statsmodels_fit(X, y, True)
    assert not early.converged_ and early.fit_report_["relative_gap"] > 1e-3
    assert statistics["evaluated_at"] == "least-squares optimum" and "NOT of the returned" in statistics["note"]
    assert "withheld" in early.fit_report_["statistics"]
    np.testing.assert_allclose(statistics["estimate"], reference.params, rtol=1e-8)
    np.testing.assert_allclose(statistics["std_error"], reference.bse, rtol=1e-8)
    np.testing.assert_allclose(statistics["t_value"], reference.tvalues, rtol=1e-8)
    np.testing.assert_allclose(statistics["p_value"], reference.pvalues, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(statistics["residual_std"], math.sqrt(reference.scale), rtol=1e-8)
    np.testing.assert_allclose(statistics["f_statistic"], reference.fvalue, rtol=1e-8)
    assert statistics["r_squared"] == pytest.approx(reference.rsquared, rel=1e-10)
    assert statistics["r_squared"] > early.score(X, y)
    lines = "\n".join(format_table(statistics))
    assert "least-squares optimum" in lines


# -- NIST -----------------------------------------------------------------------------


def read_strd(name):
    """The design, the target, the certified (estimate, sd) per parameter, residual sd and R²."""
    with open(os.path.join(STRD, f"{name}.dat"), encoding="ascii") as handle:
        lines = handle.read().splitlines()
    certified, data = (re.search(r"lines\s+(\d+)\s+to\s+(\d+)", lines[i]) for i in (4, 5))
    parameters, residual_sd, r_squared = {}, None, None
    for line in lines[int(certified[1]) - 1 : int(certified[2])]:
        match = re.match(r"\s*B(\d+)\s+(\S+)\s+(\S+)", line)
        if match:
            parameters[int(match[1])] = (float(match[2]), float(match[3]))
        elif line.strip().startswith("Standard Deviation"):
            residual_sd = float(line.split()[-1])
        elif line.strip().startswith("R-Squared"):
            r_squared = float(line.split()[-1])
    rows = np.array([[float(v) for v in line.split()] for line in lines[int(data[1]) - 1 : int(data[2])] if line.split()])
    y, X = rows[:, 0], rows[:, 1:]
    slopes = len(parameters) - (0 in parameters)
    if X.shape[1] == 1 and slopes > 1:  # a polynomial in one x
        X = np.column_stack([X[:, 0] ** power for power in range(1, slopes + 1)])
    return X, y, [parameters[k] for k in sorted(parameters)], 0 in parameters, residual_sd, r_squared


@pytest.mark.parametrize(
    "name", ["Norris", "Pontius", "NoInt1", "NoInt2", "Longley", "Wampler3", "Wampler4", "Wampler5"]
)
def test_standard_errors_equal_nist_certified_values(name):
    X, y, parameters, fit_intercept, residual_sd, r_squared = read_strd(name)
    model = GDRegressor(optimizer="cg", fit_intercept=fit_intercept, epochs=2000).fit(X, y)
    statistics = model.summary_
    certified_sd = [sd for _, sd in parameters]
    # Digits lost come from the residual sum of squares (ε·Σ(y−ȳ)² absolute, from the
    # statistics alone) and the conditioning of the correlation matrix; 1e-8 holds for all.
    np.testing.assert_allclose(statistics["std_error"], certified_sd, rtol=1e-8)
    np.testing.assert_allclose(statistics["residual_std"], residual_sd, rtol=1e-8)
    np.testing.assert_allclose(statistics["r_squared"], r_squared, rtol=1e-10)


def test_filip_is_too_collinear_for_the_gram():
    """Filip's Gram has condition number ~1e19: its inverse would be rounding, so no statistics."""
    X, y, *_ = read_strd("Filip")
    stats = accumulate(ArraySource(X, y[:, None]))
    with pytest.raises(Unavailable, match="collinear"):
        regression_statistics(stats, np.zeros((1, X.shape[1])), np.zeros(1), np.ones(1), np.ones(1), True)


# -- when there are no statistics ------------------------------------------------------------


@pytest.mark.parametrize(
    "options, why",
    [
        (dict(penalty="l2", alpha=0.1), "penalty"),
        (dict(loss="huber"), "squared error"),
        (dict(penalty="l1", alpha=0.01), "penalty"),
    ],
)
def test_no_statistics_for_penalized_or_other_losses(options, why):
    X, y = make_regression(n=60, d=3, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GDRegressor(**options).fit(X, y)
    assert model.summary_ is None
    assert why in model.fit_report_["statistics"]


def test_collinear_features_and_too_few_rows_have_no_statistics(tutorial):
    X, y = tutorial  # 4 rows, 5 parameters
    model = GDRegressor().fit(X, y)
    assert model.summary_ is None and "degrees of freedom" in model.fit_report_["statistics"]
    X, y = make_regression(n=30, d=2, seed=14)
    X = np.column_stack([X, 2 * X[:, 0] - X[:, 1]])
    model = GDRegressor(epochs=50).fit(X, y)
    assert model.summary_ is None and "collinear" in model.fit_report_["statistics"]
    X = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0]])
    model = GDRegressor(optimizer="cg").fit(X, [1.0, 2.0, 3.5])
    assert model.summary_ is None and "degrees of freedom" in model.fit_report_["statistics"]


def test_partial_fit_reports_why_it_stopped_only():
    X, y = make_regression(n=50, d=2, seed=8)
    model = GDRegressor().partial_fit(X, y)
    assert model.summary_ is None
    assert model.fit_report_["n_iter"] == 1 and "partial_fit" in model.fit_report_["statistics"]


# -- diagnostics -------------------------------------------------------------------------


def hessian(X, fit_intercept=True):
    design = np.column_stack([X, np.ones(len(X))]) if fit_intercept else X
    return 2.0 * design.T @ design / len(X)


def test_diagnostics_against_exact_algebra():
    X, y = make_regression(n=150, d=3, seed=9, noise=0.4, offset=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GDRegressor(epochs=30, tol=None, standardize=False).fit(X, y)
    report = model.fit_report_
    design = np.column_stack([X, np.ones(len(X))])
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    optimal = np.mean((design @ solution - y) ** 2)
    assert report["optimal_cost"] == pytest.approx(optimal, rel=1e-10)
    assert report["gap"] == pytest.approx(model.final_cost_ - optimal, rel=1e-6)
    raw = np.linalg.eigvalsh(hessian(X))
    assert report["condition_number_raw"] == pytest.approx(raw[-1] / raw[0], rel=1e-6)
    assert report["condition_number"] == report["condition_number_raw"]
    standardized = np.linalg.eigvalsh(hessian((X - X.mean(0)) / X.std(0)))
    assert report["condition_number_standardized"] == pytest.approx(standardized[-1] / standardized[0], rel=1e-8)
    assert report["max_stable_learning_rate"] == pytest.approx(2 / raw[-1], rel=1e-10)
    assert report["learning_rate"] == pytest.approx(1 / raw[-1], rel=1e-10)
    assert report["contraction_per_epoch"] == pytest.approx((1 - raw[0] / raw[-1]) ** 2, rel=1e-8)
    assert not report["converged"] and report["stop_reason"] == "max_epochs"


@pytest.mark.parametrize("learning_rate", ["auto", 0.6])
def test_epochs_to_tol_is_an_upper_bound_that_holds(learning_rate):
    """Continue plain gradient descent for the predicted epochs: the gap is then below the target."""
    X, y = make_regression(n=200, d=3, seed=10, noise=0.3)
    settings = dict(learning_rate=learning_rate, tol=None, standardize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GDRegressor(epochs=3, **settings).fit(X, y)
        report = model.fit_report_
        more = report["epochs_to_tol"]
        assert more > 0
        model.set_params(warm_start=True, epochs=more).fit(X, y)
    assert model.fit_report_["gap"] <= report["estimate_target_gap"]
    assert model.fit_report_["epochs_to_tol"] == 0


def test_epochs_to_reach():
    assert epochs_to_reach(1.0, 2.0, 0.5) == 0
    assert epochs_to_reach(1.0, 0.25, 0.5) == 2
    assert epochs_to_reach(1.0, 0.2, 0.5) == 3
    assert epochs_to_reach(1.0, 0.1, 1.0) is None
    assert epochs_to_reach(1.0, 0.1, 0.0) == 1


def test_a_step_above_the_limit_never_gets_there():
    X, y = make_regression(n=100, d=2, seed=11)
    model = GDRegressor(learning_rate=0.1, epochs=5, tol=None).fit(X, y)
    limit = model.fit_report_["max_stable_learning_rate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = GDRegressor(learning_rate=limit * 0.999, epochs=2, tol=None).fit(X, y).fit_report_
    assert report["contraction_per_epoch"] < 1 and report["epochs_to_tol"] > 100


def test_huber_report_says_what_it_cannot_know():
    X, y = make_regression(n=80, d=2, seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = GDRegressor(loss="huber", optimizer="gd", epochs=20).fit(X, y).fit_report_  # gd's report
    assert "optimal_cost" not in report and any("closed-form" in note for note in report["notes"])
    assert report["max_stable_learning_rate"] > report["learning_rate"]


# -- model file and command line ----------------------------------------------------------------


@pytest.fixture
def trained(tmp_path):
    X, y = make_regression(n=90, d=3, seed=13, noise=0.5)
    path = tmp_path / "data.csv"
    header = "a,b,c,price"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.17g")
    model_path = tmp_path / "model.json"
    assert main(["train", str(path), "--target", "price", "--optimizer", "cg", "-q", "-o", str(model_path)]) == 0
    return X, y, model_path


def test_inspect_json_has_the_statistics(trained, capsys):
    X, y, model_path = trained
    capsys.readouterr()
    assert main(["inspect", str(model_path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    statistics = document["statistics"]
    for key in ("std_error", "t_value", "p_value", "ci_lower", "ci_upper"):
        assert isinstance(statistics[key], list) and len(statistics[key]) == 4
    for key in ("r_squared", "adj_r_squared", "f_statistic", "residual_std"):
        assert isinstance(statistics[key], float)
    assert statistics["names"] == ["(intercept)", "a", "b", "c"]
    assert_matches_statsmodels(statistics, statsmodels_fit(X, y, True))
    assert document["diagnostics"]["converged"] is True
    assert document["diagnostics"]["optimal_cost"] == pytest.approx(document["training"]["final_cost"], rel=1e-12)


def test_inspect_prints_diagnostics_and_the_table(trained, capsys):
    _, _, model_path = trained
    capsys.readouterr()
    assert main(["inspect", str(model_path)]) == 0
    out = capsys.readouterr().out
    for part in ("diagnostics:", "condition number", "stable below 2/L", "R^2", "std err", "P>|t|", "(intercept)"):
        assert part in out
    assert len([line for line in out.splitlines() if re.match(r"\s+[abc]\s+-?\d", line)]) >= 3


def test_train_prints_the_diagnostics(tmp_path, capsys, trained):
    capsys.readouterr()
    data = tmp_path / "data.csv"
    assert main(["train", str(data), "--target", "price", "--lr", "0.01", "--epochs", "20", "--tol", "none", "-q"]) == 0
    out = capsys.readouterr().out
    assert "diagnostics:" in out and "ran all 20 epochs" in out and "more epochs" in out


def test_model_file_keeps_the_reports_with_non_finite_numbers(tmp_path, tutorial):
    """Collinear features: condition number inf; the file spells it "inf", loading gives the float back."""
    X, y = tutorial
    model = GDRegressor().fit(X, y)
    assert model.fit_report_["condition_number"] == math.inf
    model.save(tmp_path / "m.json")
    with open(tmp_path / "m.json", encoding="utf-8") as handle:
        document = json.load(handle, parse_constant=lambda name: pytest.fail(f"{name} in the file"))
    assert document["diagnostics"]["condition_number"] == "inf" and document["statistics"] is None
    loaded = load(tmp_path / "m.json")
    assert plain(loaded.fit_report_) == plain(model.fit_report_)
    assert loaded.fit_report_["condition_number"] == math.inf and loaded.summary_ is None


def test_model_file_round_trips_the_statistics(trained):
    _, _, model_path = trained
    loaded = load(model_path)
    loaded.save(model_path.with_name("again.json"))
    assert load(model_path.with_name("again.json")).summary_ == loaded.summary_
    assert isinstance(loaded.summary_["std_error"], list) and len(loaded.summary_["std_error"]) == 4


def test_plain_and_unplain_are_inverse():
    value = {"a": [1.0, math.inf, -math.inf, np.float64(2.5)], "b": np.int64(3), "c": None, "d": "text", "e": True}
    written = plain(value)
    assert written == {"a": [1.0, "inf", "-inf", 2.5], "b": 3, "c": None, "d": "text", "e": True}
    json.dumps(written, allow_nan=False)
    assert unplain(written) == {"a": [1.0, math.inf, -math.inf, 2.5], "b": 3, "c": None, "d": "text", "e": True}
