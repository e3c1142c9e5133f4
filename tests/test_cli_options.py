"""Every training flag of ``gradfit train`` reaches the estimator, with its name and default.

The flags come from one table (``gradfit.cli.TRAINING_OPTIONS``) whose choices
come from ``gradfit.registry``; the model file records the estimator's
parameters, so each flag can be followed all the way through.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from gradfit import GDRegressor, load, registry
from gradfit.cli import TRAINING_OPTIONS, build_parser, main

from .conftest import make_regression

FEATURES = ["a", "b", "c"]


@pytest.fixture
def data_file(tmp_path):
    X, y = make_regression(n=120, d=3, seed=0, offset=2.0)
    X[:, 2] = 0.01 * X[:, 0] + np.random.default_rng(0).normal(scale=0.01, size=120)  # nearly irrelevant
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = y
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path, X, y


def train(capsys, data_file, tmp_path, *flags):
    path, _, _ = data_file
    model_path = tmp_path / "model.json"
    code = main(["train", str(path), "--target", "y", "-o", str(model_path), "-q", *map(str, flags)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return load(model_path)


def test_every_estimator_parameter_has_a_flag_with_the_same_default():
    signature = {name: p.default for name, p in inspect.signature(GDRegressor).parameters.items()}
    flagged = {name for _, name, _ in TRAINING_OPTIONS} | {"standardize", "fit_intercept"}
    assert set(signature) - flagged <= {"warm_start", "verbose"}  # meaningless for one run of the command
    parser = build_parser()
    args = parser.parse_args(["train", "data.csv", "--target", "y"])
    for name in flagged:
        assert getattr(args, name) == signature[name], name


@pytest.mark.parametrize("name,table", [("optimizer", registry.OPTIMIZERS), ("loss", registry.LOSSES),
                                        ("schedule", registry.SCHEDULES)])
def test_choices_come_from_the_registry(name, table):
    kwargs = {option: kw for _, option, kw in TRAINING_OPTIONS}[name]
    assert sorted(kwargs["choices"]) == sorted(table)


# (flags, the parameter they set, its value); each run alone, on top of the defaults
FLAGS = [
    (["--lr", "0.05"], "learning_rate", 0.05),
    (["--epochs", "7"], "epochs", 7),
    (["--tol", "none"], "tol", None),
    (["--n-iter-no-change", "3"], "n_iter_no_change", 3),
    (["--optimizer", "nesterov"], "optimizer", "nesterov"),
    (["--optimizer", "cg"], "optimizer", "cg"),
    (["--loss", "huber", "--epsilon", "2.5"], "epsilon", 2.5),
    (["--loss", "absolute_error"], "loss", "absolute_error"),
    (["--loss", "quantile", "--quantile", "0.9"], "quantile", 0.9),
    (["--penalty", "elasticnet", "--alpha", "0.2", "--l1-ratio", "0.3"], "l1_ratio", 0.3),
    (["--penalty", "l2", "--alpha", "0.2"], "alpha", 0.2),
    (["--batch-size", "16", "--seed", "3"], "batch_size", 16),
    (["--batch-size", "16", "--seed", "3"], "random_state", 3),
    (["--schedule", "invscaling", "--power-t", "0.25"], "power_t", 0.25),
    (["--schedule", "step", "--step-size", "5", "--gamma", "0.3"], "gamma", 0.3),
    (["--schedule", "step", "--step-size", "5", "--gamma", "0.3"], "step_size", 5),
    (["--engine", "pass"], "engine", "pass"),
    (["--no-standardize", "--lr", "1e-4"], "standardize", False),
    (["--no-intercept"], "fit_intercept", False),
]


@pytest.mark.parametrize("flags,name,value", FLAGS, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_each_flag_reaches_the_estimator(capsys, data_file, tmp_path, flags, name, value):
    model = train(capsys, data_file, tmp_path, *flags)
    assert model.get_params()[name] == value


@pytest.mark.parametrize("flags", [
    ["--optimizer", "cg"],
    ["--optimizer", "momentum", "--penalty", "l1", "--alpha", "0.5"],
    ["--loss", "huber", "--epsilon", "0.5", "--optimizer", "nesterov"],
    ["--loss", "quantile", "--quantile", "0.25"],
    ["--batch-size", "10", "--seed", "4", "--optimizer", "adam", "--epochs", "30", "--tol", "none"],
], ids=" ".join)
def test_the_command_fits_what_the_estimator_fits(capsys, data_file, tmp_path, flags):
    model = train(capsys, data_file, tmp_path, *flags)
    _, X, y = data_file
    settings = model.get_params()
    direct = GDRegressor(**settings).fit(pd.DataFrame(X, columns=FEATURES), pd.Series(y, name="y"))
    np.testing.assert_allclose(model.coef_, direct.coef_, rtol=1e-9, atol=1e-12)
    assert model.intercept_ == pytest.approx(direct.intercept_, rel=1e-9)


def test_l1_from_the_command_line_gives_exact_zeros(capsys, data_file, tmp_path):
    model = train(capsys, data_file, tmp_path, "--penalty", "l1", "--alpha", "0.5", "--tol", "1e-12",
                  "--epochs", "5000")
    assert np.sum(model.coef_ == 0.0) >= 1
    assert model.get_params()["penalty"] == "l1"


def test_cg_with_a_loss_it_cannot_serve_is_a_one_line_error(capsys, data_file, tmp_path):
    path, _, _ = data_file
    code = main(["train", str(path), "--target", "y", "--optimizer", "cg", "--loss", "huber", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("gradfit: error:") and 'optimizer="cg" needs loss="squared_error"' in err
    assert err.count("\n") == 1
