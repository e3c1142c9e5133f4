"""The table of parts (``gradfit.registry``) is the single source of names, parameters and capabilities.

Every estimator constraint and CLI choice equals the table's names; the "no
effect" errors come from the entries' parameters; a loss written in this file
and added with one table line fits through the estimator and the command line
(against scipy.optimize on the same objective); every loss's derivative and
curvature on (prediction, target) pairs match finite differences; and no
module compares a part's name with a string literal.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from gradfit import GDRegressor, GDRegressorCV, OptionError, load, registry
from gradfit.cli import TRAINING_OPTIONS, build_parser, main
from gradfit.errors import IgnoredOptionWarning
from gradfit.fitting import check_meaningful
from gradfit.losses.base import Loss, residual

from .conftest import make_regression

PACKAGE = Path(__file__).resolve().parent.parent / "gradfit"
OPTIONS = {name: kwargs for _, name, kwargs in TRAINING_OPTIONS}
DEFAULTS = GDRegressor().get_params()


class LogCosh(Loss):
    """``ℓ = 2 log cosh(p − y)``: ``r²`` near zero, ``2|r|`` far; ``ℓ' = 2 tanh r``, ``ℓ'' = 2 sech² r ≤ 2``."""

    name = "log_cosh"
    smooth = True
    curvature = 2.0

    def value_and_derivative(self, prediction, target=0.0):
        r = residual(prediction, target)
        a = np.abs(r)
        return 2.0 * (a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0)), 2.0 * np.tanh(r)

    def second_derivative(self, prediction, target=0.0):
        return 2.0 / np.cosh(residual(prediction, target)) ** 2


@pytest.fixture
def log_cosh(monkeypatch):
    """``LogCosh`` in the table for one test: the one line a new loss adds."""
    monkeypatch.setitem(registry.LOSSES, LogCosh.name, registry.loss(LogCosh))
    return LogCosh()


# -- the table is the single source ------------------------------------------------------


@pytest.mark.parametrize("kind", list(registry.TABLE))
def test_estimator_constraints_and_cli_choices_are_the_table_names(kind):
    names = set(registry.TABLE[kind])
    options = GDRegressor._parameter_constraints[kind][0].options
    assert set(options) == names
    # GDRegressorCV: the same, but a penalty is required (its alpha is what it cross-validates)
    assert set(GDRegressorCV._parameter_constraints[kind][0].options) == names
    cli = OPTIONS[kind]
    if "choices" in cli:  # sorted in --help, but the engines in the table's order ("auto" first)
        assert list(cli["choices"]) == (list(registry.ENGINES) if kind == "engine" else sorted(names))
    else:  # --penalty parses "none" too; its metavar lists the table
        assert cli["metavar"] == "{" + ",".join(sorted(names)) + ",none}"


def test_every_parameter_a_part_owns_has_its_constraint_flag_and_default():
    parser = build_parser()
    args = parser.parse_args(["train", "data.csv", "--target", "y"])
    for name, param in registry.owned_params().items():
        assert DEFAULTS[name] == param.default, name
        assert getattr(args, name) == param.default, name
        interval = GDRegressor._parameter_constraints[name][0]
        assert (interval.left, interval.right, interval.closed) == (param.low, param.high, param.closed), name
        flag = OPTIONS[name]
        assert flag["type"] in (int, float) or name in ("alpha", "l1_ratio")  # --alpha cv, --l1-ratio lists


def test_the_table_module_imports_no_scikit_learn_scipy_or_numba():
    code = ("import sys, gradfit.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy', 'numba')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("option, value, owner, owners", [
    ("epsilon", 2.0, "loss", ["huber"]),
    ("l1_ratio", 0.5, "penalty", ["elasticnet"]),
    ("alpha", 0.5, "penalty", ["l2", "l1", "elasticnet"]),
])
def test_no_effect_errors_name_the_parts_that_own_the_option(option, value, owner, owners):
    assert [name for name, part in registry.TABLE[owner].items() if option in part.param_names] == owners
    settings = dict(DEFAULTS, **{option: value})
    settings[owner] = None if owner == "penalty" else "squared_error"
    with pytest.raises(OptionError, match=f"{option}={value!r} has no effect with {owner}=") as raised:
        check_meaningful(settings, strict=True)
    assert f"applies only with {owner}={owners[0]!r}" in str(raised.value)
    for name in owners:
        assert repr(name) in str(raised.value)
    for name in owners:  # with an owner chosen, nothing is ignored
        check_meaningful(dict(settings, **{owner: name}), strict=True)
    if not registry.owned_params()[option].refuse:
        with pytest.warns(IgnoredOptionWarning, match=option):
            check_meaningful(settings)


def test_a_new_part_parameter_is_checked_where_it_has_no_effect(monkeypatch):
    shape = registry.Param("shape", 1.0, "real", 0, None, "neither")

    class Scaled(LogCosh):
        name = "scaled"
        parameters = ("shape",)

        def __init__(self, shape):
            self.shape = shape

    monkeypatch.setitem(registry.LOSSES, "scaled", registry.loss(Scaled, shape))
    settings = dict(DEFAULTS, shape=2.0)
    with pytest.raises(OptionError, match="shape=2.0 has no effect with loss='squared_error'; it applies only with "
                                          "loss='scaled'"):
        check_meaningful(settings)
    check_meaningful(dict(settings, loss="scaled"))
    assert registry.part("loss", "scaled").build(dict(settings, loss="scaled")).params() == {"shape": 2.0}


def test_an_unknown_part_lists_the_table():
    with pytest.raises(OptionError, match="unknown loss 'l3'; valid: absolute_error, huber, quantile, squared_error"):
        registry.part("loss", "l3")


# -- a loss added with one line ------------------------------------------------------------


def log_cosh_oracle(X, y):
    """scipy's L-BFGS-B on the same objective: mean 2 log cosh(Xw + b − y)."""
    loss = LogCosh()

    def cost(theta):
        value, derivative = loss.value_and_derivative(X @ theta[:-1] + theta[-1], y)
        return value.mean(), np.append(X.T @ derivative, derivative.sum()) / len(y)

    return minimize(cost, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B",
                    options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000}).x


@pytest.fixture
def outliers():
    X, y = make_regression(n=200, d=3, seed=4, offset=1.0, noise=0.3)
    y[::17] += 15.0
    return X, y


def test_a_loss_added_with_one_line_fits_through_the_estimator(log_cosh, outliers):
    X, y = outliers
    expected = log_cosh_oracle(X, y)
    model = GDRegressor(loss="log_cosh", epochs=3000, tol=None).fit(X, y)
    assert model.fit_report_["certificate"]["kind"] == "none"  # no certificate for this loss: no claim
    np.testing.assert_allclose(model.coef_, expected[:-1], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(model.intercept_, expected[-1], rtol=1e-6, atol=1e-8)
    assert model.engine_ == "pass"  # not quadratic: the statistics cannot serve it
    with pytest.raises(OptionError, match='engine="statistics".*loss=\'log_cosh\''):
        GDRegressor(loss="log_cosh", engine="statistics").fit(X, y)
    with pytest.raises(OptionError, match='optimizer="cg" needs loss="squared_error", not \'log_cosh\''):
        GDRegressor(loss="log_cosh", optimizer="cg").fit(X, y)


def test_a_loss_added_with_one_line_fits_through_the_command_line(log_cosh, outliers, tmp_path, capsys):
    X, y = outliers
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = y
    frame.to_csv(tmp_path / "data.csv", index=False)
    code = main(["train", str(tmp_path / "data.csv"), "--target", "y", "--loss", "log_cosh", "--epochs", "3000",
                 "--tol", "none", "-o", str(tmp_path / "model.json"), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    expected = log_cosh_oracle(X, y)
    model = load(tmp_path / "model.json")
    assert model.loss == "log_cosh"
    np.testing.assert_allclose(model.coef_, expected[:-1], rtol=1e-6, atol=1e-8)


# -- losses on (prediction, target) against finite differences ------------------------------

ALL_LOSSES = [registry.LOSSES[name].build(dict(DEFAULTS, epsilon=0.7)) for name in registry.LOSSES] + [LogCosh()]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: loss.name)
def test_derivative_and_curvature_match_finite_differences(loss):
    rng = np.random.default_rng(0)
    target = rng.normal(scale=3.0, size=(400, 2))
    prediction = target + rng.normal(scale=2.0, size=target.shape)
    r = prediction - target
    away = np.abs(np.abs(r) - getattr(loss, "epsilon", 0.0)) > 1e-3  # off the kinks (0, ±ε)
    away &= np.abs(r) > 1e-3
    h = 1e-6
    value, derivative = loss.value_and_derivative(prediction, target)
    assert value.shape == derivative.shape == target.shape
    up, down = loss.value_and_derivative(prediction + h, target), loss.value_and_derivative(prediction - h, target)
    np.testing.assert_allclose(derivative[away], ((up[0] - down[0]) / (2 * h))[away], rtol=1e-6, atol=1e-6)
    # a regression loss depends on p − y alone, so the one-argument form is the residual's
    np.testing.assert_allclose(loss.value_and_derivative(r)[1], derivative, rtol=1e-12, atol=1e-12)
    assert loss.smooth == (loss.second_derivative is not None) == (loss.curvature is not None)
    if loss.smooth:
        second = loss.second_derivative(prediction, target)
        np.testing.assert_allclose(second[away], ((up[1] - down[1]) / (2 * h))[away], rtol=1e-5, atol=1e-5)
        assert np.all(second <= loss.curvature + 1e-12)  # the bound the step size rests on
    if loss.linear_derivative is not None:  # the pass engine's fused kernel: ℓ' = c·(p − y)
        np.testing.assert_allclose(derivative, loss.linear_derivative * r, rtol=1e-15)
        np.testing.assert_allclose(value, 0.5 * loss.linear_derivative * r * r, rtol=1e-15)
    if loss.quadratic:  # the statistics identity needs ℓ quadratic in p − y
        assert loss.linear_derivative is not None


def test_each_table_entry_declares_what_its_class_does():
    for name, part in registry.LOSSES.items():
        built = part.build(DEFAULTS)
        assert built.name == name and type(built) is part.loss_class
        assert (part.smooth, part.quadratic, part.curvature) == (built.smooth, built.quadratic, built.curvature)
        assert tuple(built.params()) == part.param_names


# -- nobody compares a part's name with a string -------------------------------------------

#: modules the quantile branch changes at the same time; the lead ports them onto the table at the merge
PORTED_AT_MERGE = set()


def test_no_module_compares_a_part_name_with_a_string_literal():
    names = sorted({name for parts in registry.TABLE.values() for name in parts if name != "auto"})
    literal = "|".join(re.escape(name) for name in names)
    quoted = rf"""["'](?:{literal})["']"""
    patterns = [
        re.compile(rf"(?:==|!=)\s*{quoted}"),  # x == "cg"
        re.compile(rf"{quoted}\s*(?:==|!=)"),  # "cg" == x
        re.compile(rf"\bin\s*[(\[{{][^)\]}}]*{quoted}"),  # x in ("cg", "newton")
    ]
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if path.name == "registry.py" or relative.parts[0] in PORTED_AT_MERGE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = re.sub(r"``.*?``", "", line.split("#")[0])  # not the docstrings' literals
            if any(p.search(code) for p in patterns):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_pass_engine_names_no_loss():
    source = (PACKAGE / "engines" / "passes.py").read_text()
    assert "SquaredError" not in source and "isinstance" not in source


def test_the_earlier_factory_call_builds_the_loss_and_drops_nothing():
    assert registry.LOSSES["huber"](0.7).epsilon == 0.7
    assert isinstance(registry.LOSSES["squared_error"](None), registry.LOSSES["squared_error"].loss_class)
    with pytest.raises(TypeError, match="takes"):
        registry.LOSSES["squared_error"](0.7)  # an epsilon the squared error would ignore
