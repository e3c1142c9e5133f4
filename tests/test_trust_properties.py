"""Property tests (hypothesis) over gradfit's parameter space, on real and ill-conditioned data (issue 11).

Whatever the settings (loss, penalty, alpha, l1_ratio, standardize, optimizer,
learning rate from 1e-12 to 1e12, ``tol`` down to 0, a handful of epochs,
minibatches), a fit ends in one of two ways:

* a model, whose ``converged_`` is honest (:func:`tests.trust.check_honest`:
  converged means within ``tol`` of an independent oracle, else a warning that
  gives the certificate's value), or
* a gradfit error (or scikit-learn's ``InvalidParameterError``) whose message
  is one line; never another exception type (a ``ValueError("math domain
  error")`` after training, say).

The same through ``python -m gradfit train`` for a few settings: exit code 0
and a model file, or 1/2 with one line on stderr and no traceback.
"""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from gradfit import GDRegressor, GradfitError, load as load_model

from . import oracles, realdata
from .oracles import Problem
from .trust import check_honest, fit_recording

#: small sets, easy to hard: κ ≈ 10 (stackloss), 470 (diabetes), 1.2e4 (longley), 1e6 (synthetic)
DATASETS = ("stackloss", "diabetes", "longley", "synthetic_1e6")
LOSSES = ("squared_error", "huber", "absolute_error")
PENALTIES = (None, "l2", "l1", "elasticnet")
OPTIMIZERS = ("gd", "momentum", "nesterov", "adam", "cg")
LEARNING_RATES = ("auto", 1e-12, 1e-6, 1e-3, 0.1, 1.0, 1e3, 1e12)
TOLS = (0.0, 1e-12, 1e-6, 1e-3, 0.1)
EPOCHS = (1, 2, 5, 40, 400)
#: alpha as a multiple of the data's own scale (the L1 alpha_max, or the median feature variance for L2)
ALPHA_FACTORS = (0.0, 1e-6, 1e-2, 0.3, 10.0)
L1_RATIOS = (0.0, 0.15, 0.5, 1.0)


def _alpha_scale(data, penalty):
    if penalty == "l2":
        return float(np.median(data.X.var(axis=0)))
    Xc = data.X - data.X.mean(axis=0)
    return float(2 * np.max(np.abs(Xc.T @ (data.y - data.y.mean()))) / len(data.y))


@functools.lru_cache(maxsize=None)
def oracle(dataset, problem):
    data = realdata.load(dataset)
    return oracles.solve(data.X, data.y, problem)


@st.composite
def cases(draw):
    """One point of the parameter space: (data set, GDRegressor options, alpha and epsilon as data-relative factors).

    The data are loaded in the test, not here: a strategy must not depend on
    what loading imports.
    """
    loss = draw(st.sampled_from(LOSSES))
    penalty = draw(st.sampled_from(PENALTIES))
    options = dict(
        loss=loss,
        optimizer=draw(st.sampled_from(OPTIMIZERS)),
        learning_rate=draw(st.sampled_from(LEARNING_RATES)),
        tol=draw(st.sampled_from(TOLS)),
        epochs=draw(st.sampled_from(EPOCHS)),
        standardize=draw(st.booleans()),
        batch_size=draw(st.sampled_from((None, None, None, 8))),
        random_state=0,
    )
    if penalty is not None:
        options["penalty"] = penalty
        if penalty == "elasticnet":
            options["l1_ratio"] = draw(st.sampled_from(L1_RATIOS))
    factors = dict(alpha=draw(st.sampled_from(ALPHA_FACTORS)), epsilon=draw(st.sampled_from((0.1, 1.0))))
    return draw(st.sampled_from(DATASETS)), options, factors


def resolve(data, options, factors):
    """The options with alpha and epsilon in the data's units, and the problem they pose."""
    options = dict(options)
    loss, penalty = options["loss"], options.get("penalty")
    if loss == "huber":
        options["epsilon"] = float(data.y.std() * factors["epsilon"])
    if penalty is not None:
        options["alpha"] = factors["alpha"] * _alpha_scale(data, penalty)
    problem = Problem(loss=loss, penalty=penalty, alpha=options.get("alpha", 0.0),
                      l1_ratio=options.get("l1_ratio", 0.0), epsilon=options.get("epsilon", 1.35))
    return options, problem


def assert_one_line(message):
    assert message.strip(), "an error without a message"
    assert "\n" not in message.strip(), f"a multi-line error: {message!r}"
    assert "Traceback" not in message


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_every_fit_ends_in_an_honest_model_or_a_one_line_error(case):
    dataset, options, factors = case
    data = realdata.load(dataset)
    options, problem = resolve(data, options, factors)
    estimator = GDRegressor(**options)
    try:
        messages = fit_recording(estimator, data.X, data.y)
    except (GradfitError, InvalidParameterError) as exc:  # a refused combination, a divergence …
        assert_one_line(str(exc))
        return
    assert np.all(np.isfinite(estimator.coef_)) and np.all(np.isfinite(estimator.intercept_))
    check_honest(estimator, messages, data.X, data.y, problem, oracle(dataset, problem),
                 condition=data.condition_number, tol=options["tol"])


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(dataset=st.sampled_from(DATASETS), loss=st.sampled_from(LOSSES), penalty=st.sampled_from(PENALTIES),
       standardize=st.booleans())
def test_options_that_would_change_nothing_are_errors_or_have_no_effect(dataset, loss, penalty, standardize):
    """``alpha`` without a penalty, ``l1_ratio`` without elastic net, ``epsilon`` without Huber: either
    a one-line error that names the option, or exactly the fit without it (never a different answer)."""
    data = realdata.load(dataset)
    base = dict(loss=loss, standardize=standardize, epochs=30, tol=None)
    if penalty is not None:
        base.update(penalty=penalty, alpha=1e-3 * _alpha_scale(data, penalty))
    if loss == "huber":
        base["epsilon"] = float(data.y.std())
    extras = []
    if penalty is None:
        extras.append(("alpha", 0.5))
    if penalty != "elasticnet":
        extras.append(("l1_ratio", 0.9))
    if loss != "huber":
        extras.append(("epsilon", 0.01))
    reference = None
    for name, value in extras:
        estimator = GDRegressor(**base, **{name: value})
        try:
            fit_recording(estimator, data.X, data.y)
        except (GradfitError, InvalidParameterError) as exc:
            assert_one_line(str(exc))
            assert name in str(exc), f"the error does not name {name!r}: {exc}"
            continue
        if reference is None:
            reference = GDRegressor(**base)
            fit_recording(reference, data.X, data.y)
        np.testing.assert_array_equal(estimator.coef_, reference.coef_, err_msg=f"{name}={value} changed the fit")


# -- the command line --------------------------------------------------------------------

#: each is a subprocess (~3 s of imports): a few settings, the edges the issue names
CLI_SETTINGS = [
    pytest.param([], id="defaults"),
    pytest.param(["--tol", "0"], id="tol0"),
    pytest.param(["--tol", "0", "--epochs", "3"], id="tol0-3epochs"),
    pytest.param(["--lr", "1e-12"], id="lr1e-12"),
    pytest.param(["--lr", "1e12"], id="lr1e12"),
    pytest.param(["--loss", "absolute_error", "--tol", "0"], id="absolute-tol0"),
    pytest.param(["--loss", "huber", "--optimizer", "cg"], id="huber-cg"),
    pytest.param(["--alpha", "0.5"], id="alpha-without-penalty"),
]


@pytest.fixture(scope="module")
def longley_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "longley.csv"
    realdata.load("longley").frame().to_csv(path, index=False, float_format="%.17g")
    return str(path)


def _problem_of(model):
    params = model.get_params()
    penalty = params["penalty"]
    return Problem(loss=params["loss"], penalty=penalty, alpha=params["alpha"] if penalty else 0.0,
                   l1_ratio=params["l1_ratio"], epsilon=params["epsilon"])


@pytest.mark.slow
@pytest.mark.parametrize("flags", CLI_SETTINGS)
def test_cli_train_ends_in_a_model_or_one_line(flags, longley_csv, tmp_path):
    output = tmp_path / "model.json"
    done = subprocess.run(
        [sys.executable, "-m", "gradfit", "train", longley_csv, "--target", "target", "--quiet", "-o", str(output),
         *flags], capture_output=True, text=True, timeout=300,
    )
    assert "Traceback" not in done.stderr, done.stderr
    if done.returncode == 0:
        assert output.exists(), "exit code 0 without a model file"
        model = load_model(output)
        data = realdata.load("longley")
        problem = _problem_of(model)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        check_honest(model, lines, data.X, data.y, problem, oracle("longley", problem),
                     condition=data.condition_number)
    else:
        assert done.returncode in (1, 2), (done.returncode, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("usage:")]
        assert len(lines) == 1 and lines[0].startswith("gradfit"), done.stderr
        assert not output.exists(), "a failed run left a model file"
    if "--tol" in flags and "0" in flags:
        assert done.returncode == 0 and output.exists(), f"--tol 0 wrote no model: {done.stderr}"
