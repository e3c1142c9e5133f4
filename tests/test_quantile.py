"""loss="quantile" (the pinball loss) against scikit-learn's QuantileRegressor and the whole LP by HiGHS.

gradfit's loss is ``2·ρ_τ(y − ŷ)`` (:class:`gradfit.losses.Quantile`), twice
scikit-learn's ``mean_pinball_loss``, so that ``quantile=0.5`` is the absolute
error. Oracles: ``QuantileRegressor(quantile=τ, alpha=0, solver="highs")``
for the coefficients, and ``scipy.optimize.linprog(method="highs")`` on the
whole linear program (with sample weights) for the optimal objective, which
every certificate is checked against: its value bounds the relative gap to
the LP optimum, and ``converged_`` means the gap is within ``tol``. Data:
real, ill-conditioned sets shipped with scikit-learn and statsmodels (raw
diabetes, Longley at standardized condition number ~1e4, Engel's food
expenditure, the classic quantile-regression example).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.sparse
from sklearn.base import clone
from sklearn.datasets import load_diabetes
from sklearn.linear_model import QuantileRegressor
from sklearn.metrics import mean_pinball_loss
from sklearn.utils._param_validation import InvalidParameterError

from gradfit import GDRegressor, GDRegressorCV
from gradfit.cli import main
from gradfit.errors import OptionError
from gradfit.estimator import load
from gradfit.losses import AbsoluteError, Quantile
from gradfit.sources import FileSource

from . import realdata

TOL = 1e-6
QUANTILES = (0.1, 0.5, 0.9)
# Costs are evaluated from raw-unit coefficients: on Longley (intercept −3.5e6) that rounding
# alone is ~1e-11 of the cost.
ROUNDING = 1e-9


def diabetes():
    return load_diabetes(return_X_y=True, scaled=False)


def dataset(name):
    data = realdata.load(name)
    return data.X, data.y


DATA = {"diabetes": diabetes, "longley": lambda: dataset("longley"), "engel": lambda: dataset("engel")}


def pinball(y, prediction, tau, weight=None):
    """gradfit's cost: 2 × scikit-learn's mean pinball loss (residual y − ŷ)."""
    return 2.0 * mean_pinball_loss(y, prediction, alpha=tau, sample_weight=weight)


def lp_oracle(X, y, tau, weight=None, fit_intercept=True):
    """The whole LP by HiGHS: ``min (2/W) Σ v (τ u⁺ + (1 − τ) u⁻)``, ``Zθ + u⁺ − u⁻ = y``; the optimal value.

    The objective is evaluated at HiGHS's θ (its own value meets the equalities only to a tolerance).
    """
    Z = np.c_[X, np.ones(len(X))] if fit_intercept else X
    n, p = Z.shape
    v = np.ones(n) if weight is None else weight
    identity = scipy.sparse.identity(n, format="csr")
    A = scipy.sparse.hstack([scipy.sparse.csr_matrix(Z), identity, -identity], format="csr")
    cost = 2.0 * np.r_[np.zeros(p), tau * v, (1 - tau) * v] / v.sum()
    result = scipy.optimize.linprog(cost, A_eq=A, b_eq=y, bounds=[(None, None)] * p + [(0, None)] * (2 * n),
                                    method="highs")
    assert result.status == 0
    return pinball(y, Z @ result.x[:p], tau, weight)


def check_certificate(model, optimum, cost):
    """The certificate bounds the relative gap to the LP optimum; converged_ only within tol of it."""
    certificate = model.certificate_
    gap = (cost - optimum) / cost
    assert certificate.kind == "lp_duality_gap"
    assert certificate.value is not None
    assert gap <= certificate.value + ROUNDING, (gap, certificate)
    assert model.converged_ == (certificate.value <= TOL)
    if model.converged_:
        assert gap <= TOL + ROUNDING, (gap, certificate)


def relative_coef_error(coef, oracle):
    return np.max(np.abs(coef - oracle)) / np.max(np.abs(oracle))


# -- the loss itself --------------------------------------------------------------------------


@pytest.mark.parametrize("tau", QUANTILES + (0.01, 0.99))
def test_the_loss_is_twice_scikit_learns_pinball_loss_with_its_sign_convention(tau):
    rng = np.random.default_rng(0)
    y, prediction = rng.normal(size=200), rng.normal(size=200)
    value, derivative = Quantile(tau).value_and_derivative(prediction - y)  # residual = prediction − target
    np.testing.assert_allclose(np.mean(value), pinball(y, prediction, tau), rtol=1e-13)
    # targets above the prediction cost 2τ a unit, those below 2(1 − τ)
    above = y > prediction
    np.testing.assert_allclose(value[above], 2 * tau * (y - prediction)[above], rtol=1e-12)
    np.testing.assert_allclose(value[~above], 2 * (1 - tau) * (prediction - y)[~above], rtol=1e-12)
    # the derivative in the prediction, by central differences (no residual near the kink)
    step = 1e-6
    upper, _ = Quantile(tau).value_and_derivative(prediction + step - y)
    lower, _ = Quantile(tau).value_and_derivative(prediction - step - y)
    np.testing.assert_allclose(derivative, (upper - lower) / (2 * step), rtol=1e-6)
    assert Quantile(tau).params() == {"quantile": tau}


def test_the_median_is_the_absolute_error_value_for_value():
    residual = np.random.default_rng(1).normal(size=100) * 1e3
    for got, want in zip(Quantile(0.5).value_and_derivative(residual), AbsoluteError().value_and_derivative(residual)):
        np.testing.assert_array_equal(got, want)


# -- optimizer="auto" (newton): QuantileRegressor's coefficients, a certificate at its optimum -----


@pytest.mark.parametrize("tau", QUANTILES)
@pytest.mark.parametrize("name", sorted(DATA))
def test_defaults_reach_quantile_regressors_optimum(name, tau):
    X, y = DATA[name]()
    model = GDRegressor(loss="quantile", quantile=tau).fit(X, y)
    assert model.optimizer_ == "newton"
    assert model.converged_ and model.stop_reason_ == "converged"
    cost = pinball(y, model.predict(X), tau)
    np.testing.assert_allclose(model.final_cost_, cost, rtol=1e-9)
    optimum = lp_oracle(X, y, tau)
    check_certificate(model, optimum, cost)
    oracle = QuantileRegressor(quantile=tau, alpha=0, solver="highs").fit(X, y)
    oracle_cost = pinball(y, oracle.predict(X), tau)
    assert cost <= oracle_cost * (1 + 1e-9)  # never worse than scikit-learn's objective
    # the LP's solution is a vertex; these data have a unique one: the same coefficients
    assert relative_coef_error(model.coef_, oracle.coef_) < 1e-6
    # optimality for the intercept: a share of at most τ of the rows lies below the fit, and at
    # least τ below or on it (rows on it: residuals at rounding level)
    residual = y - model.predict(X)
    on = np.abs(residual) <= 1e-9 * np.max(np.abs(y))
    below = np.mean((residual < 0) & ~on)
    assert below <= tau + 1e-12 <= below + np.mean(on) + 2e-12


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_raw_and_standardized_units_with_and_without_intercept(standardize, fit_intercept):
    X, y = diabetes()
    tau = 0.9
    model = GDRegressor(loss="quantile", quantile=tau, standardize=standardize, fit_intercept=fit_intercept).fit(X, y)
    oracle = QuantileRegressor(quantile=tau, alpha=0, solver="highs", fit_intercept=fit_intercept).fit(X, y)
    assert model.converged_
    check_certificate(model, lp_oracle(X, y, tau, fit_intercept=fit_intercept), pinball(y, model.predict(X), tau))
    assert relative_coef_error(model.coef_, oracle.coef_) < 1e-6
    if not fit_intercept:
        assert model.intercept_ == 0.0


def test_sample_weights():
    X, y = dataset("engel")
    weight = np.random.default_rng(3).uniform(0.2, 3.0, size=len(y))
    tau = 0.25
    model = GDRegressor(loss="quantile", quantile=tau).fit(X, y, sample_weight=weight)
    oracle = QuantileRegressor(quantile=tau, alpha=0, solver="highs").fit(X, y, sample_weight=weight)
    assert model.converged_
    check_certificate(model, lp_oracle(X, y, tau, weight), pinball(y, model.predict(X), tau, weight))
    assert relative_coef_error(model.coef_, oracle.coef_) < 1e-6


def test_multi_output_solves_each_output_alone():
    X, y = diabetes()
    Y = np.c_[y, np.log(y)]
    model = GDRegressor(loss="quantile", quantile=0.8).fit(X, Y)
    assert model.converged_
    for j in range(2):
        oracle = QuantileRegressor(quantile=0.8, alpha=0, solver="highs").fit(X, Y[:, j])
        assert relative_coef_error(model.coef_[j], oracle.coef_) < 1e-6


# -- quantile=0.5 is the absolute error ----------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["auto", "gd"])
def test_median_quantile_is_the_absolute_error(optimizer):
    X, y = dataset("longley")
    settings = {"optimizer": optimizer, "epochs": 200}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gd after 200 epochs: not converged, and says so
        median = GDRegressor(loss="quantile", quantile=0.5, **settings).fit(X, y)
        absolute = GDRegressor(loss="absolute_error", **settings).fit(X, y)
    np.testing.assert_array_equal(median.coef_, absolute.coef_)
    assert median.intercept_ == absolute.intercept_
    assert median.final_cost_ == absolute.final_cost_
    assert median.loss_curve_ == absolute.loss_curve_
    assert median.certificate_.value == absolute.certificate_.value
    assert median.converged_ == absolute.converged_ == (optimizer == "auto")


# -- the first-order path: subgradient steps, the best iterate, the same certificate ---------------


@pytest.mark.parametrize("optimizer", ["gd", "nesterov"])
def test_first_order_fits_are_certified_honestly(optimizer):
    X, y = diabetes()
    tau = 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GDRegressor(loss="quantile", quantile=tau, optimizer=optimizer, epochs=300).fit(X, y)
    assert model.optimizer_ == optimizer
    assert model.learning_rate_ is not None and model.learning_rate_ > 0  # "auto": in the target's units
    cost = pinball(y, model.predict(X), tau)
    np.testing.assert_allclose(model.final_cost_, cost, rtol=1e-9)
    assert model.final_cost_ <= min(model.loss_curve_) * (1 + 1e-12)  # the best iterate, never a worse last one
    optimum = lp_oracle(X, y, tau)
    check_certificate(model, optimum, cost)
    assert not model.converged_  # 300 subgradient epochs do not reach 1e-6 on raw diabetes
    assert model.stop_reason_ != "converged"


# -- penalties: the first-order path serves L1 (no claim); newton refuses ----------------------------


def test_l1_penalty_runs_first_order_without_a_claim_and_approaches_quantile_regressor():
    """QuantileRegressor's alpha is an L1 penalty: served by the proximal first-order path, which claims nothing."""
    X, y = diabetes()
    tau, a = 0.9, 0.05
    oracle = QuantileRegressor(quantile=tau, alpha=a, solver="highs").fit(X, y)

    def objective(coef, intercept):  # gradfit's: 2 × scikit-learn's, so alpha = 2a
        return pinball(y, X @ coef + intercept, tau) + 2 * a * np.abs(coef).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GDRegressor(loss="quantile", quantile=tau, penalty="l1", alpha=2 * a, optimizer="nesterov",
                            epochs=1000).fit(X, y)
    assert model.certificate_.kind == "none" and not model.converged_
    best = objective(oracle.coef_, oracle.intercept_)
    np.testing.assert_allclose(model.final_cost_, objective(model.coef_, model.intercept_), rtol=1e-9)
    assert best <= model.final_cost_ <= best * 1.005
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert GDRegressor(loss="quantile", penalty="l1", epochs=10).fit(X, y).optimizer_ != "newton"  # "auto"
    with pytest.raises(OptionError, match="unpenalized loss='quantile'"):
        GDRegressor(loss="quantile", quantile=tau, penalty="l1", alpha=2 * a, optimizer="newton").fit(X, y)


# -- parameters: validated, and refused where they mean nothing ----------------------------------------


@pytest.mark.parametrize("value", [0, 1, -1, 1.5])
def test_quantile_outside_the_open_unit_interval_is_refused(value):
    X, y = diabetes()
    with pytest.raises(InvalidParameterError, match="'quantile' parameter") as caught:
        GDRegressor(loss="quantile", quantile=value).fit(X, y)
    assert "\n" not in str(caught.value)


def test_quantile_has_no_effect_with_another_loss():
    X, y = diabetes()
    with pytest.raises(OptionError, match="quantile=0.9 has no effect with loss='squared_error'"):
        GDRegressor(quantile=0.9).fit(X, y)
    with pytest.raises(OptionError, match="quantile=0.9 has no effect with loss='absolute_error'"):
        GDRegressor(loss="absolute_error", quantile=0.9).fit(X, y)


def test_cross_validated_estimator_takes_the_parameter():
    model = GDRegressorCV(quantile=0.3)
    assert clone(model).get_params()["quantile"] == 0.3
    X, y = diabetes()
    with pytest.raises(OptionError, match="cross-validates loss='squared_error' and loss='huber', not loss='quantile'"):
        GDRegressorCV(loss="quantile", quantile=0.3).fit(X, y)


# -- files, the model file and the command line ----------------------------------------------------


@pytest.fixture
def csv(tmp_path):
    X, y = diabetes()
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    path = tmp_path / "f.csv"
    frame.to_csv(path, index=False)
    return path, X, y


def cli(*argv):
    """``python -m gradfit ARGV`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "gradfit", *map(str, argv)], capture_output=True, text=True,
                          check=False, timeout=120)


def cli_here(capsys, *argv):
    """``gradfit ARGV`` in this process: (exit code, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    return code, capsys.readouterr().err


def test_streamed_file_matches_arrays(csv):
    path, X, y = csv
    model = GDRegressor(loss="quantile", quantile=0.9).fit(FileSource(path, target="y", batch_rows=100))
    in_memory = GDRegressor(loss="quantile", quantile=0.9).fit(X, y)
    assert model.converged_
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-9)
    np.testing.assert_allclose(model.final_cost_, in_memory.final_cost_, rtol=1e-12)


def test_command_line_trains_saves_and_shows_the_quantile(csv, tmp_path, capsys):
    path, X, y = csv
    model_path = tmp_path / "m.json"
    done = cli("train", path, "--target", "y", "--loss", "quantile", "--quantile", "0.9", "-o", model_path, "-q")
    assert done.returncode == 0, done.stderr
    assert "lp duality gap" in done.stdout
    saved = json.loads(model_path.read_text())
    assert saved["settings"]["loss"] == "quantile" and saved["settings"]["quantile"] == 0.9
    loaded = load(model_path)
    assert loaded.quantile == 0.9 and loaded.loss == "quantile" and loaded.converged_
    oracle = QuantileRegressor(quantile=0.9, alpha=0, solver="highs").fit(X, y)
    assert relative_coef_error(loaded.coef_, oracle.coef_) < 1e-6
    assert main(["inspect", str(model_path)]) == 0
    assert "settings: loss='quantile', quantile=0.9" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "1", "-1"])
def test_command_line_refuses_a_quantile_outside_0_1(csv, tmp_path, capsys, value):
    path, _, _ = csv
    code, err = cli_here(capsys, "train", path, "--target", "y", "--loss", "quantile", "--quantile", value,
                         "-o", tmp_path / "m.json")
    assert code == 2
    assert err.strip().splitlines()[-1] == (f"gradfit train: argument --quantile: must be a float in the range "
                                            f"(0.0, 1.0), not {float(value)} (see 'gradfit train --help')")
    assert "Traceback" not in err and not (tmp_path / "m.json").exists()


def test_command_line_refuses_a_quantile_without_the_loss(csv, tmp_path, capsys):
    path, _, _ = csv
    code, err = cli_here(capsys, "train", path, "--target", "y", "--quantile", "0.3", "-o", tmp_path / "m.json")
    assert code == 1
    assert err.strip() == ("gradfit: error: quantile=0.3 has no effect with loss='squared_error'; it applies "
                                   "only with loss='quantile' (or leave quantile at its default 0.5)")
    assert not (tmp_path / "m.json").exists()
