"""Checkpoints and resume: a broken-off run, resumed, ends bit for bit like an unbroken one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import gradfit
from gradfit.checkpoint import CheckpointError

from .conftest import make_regression

CASES = [
    dict(),
    dict(engine="pass"),
    dict(standardize=False, learning_rate=1e-3),
    dict(optimizer="momentum"),
    dict(optimizer="nesterov", engine="pass"),
    dict(optimizer="adam"),
    dict(optimizer="cg"),
    dict(batch_size=32, random_state=7),
    dict(batch_size=50, random_state=1, optimizer="adam", engine="pass"),
    dict(penalty="l1", alpha=0.05),
    dict(loss="huber", epsilon=0.5),
]


@pytest.mark.parametrize("settings", CASES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "defaults")
@pytest.mark.parametrize("stop_at", [1, 7, 20])
def test_resumed_fit_equals_the_unbroken_one(tmp_path, settings, stop_at):
    X, y = make_regression(n=300, d=4, k=2, seed=11, offset=3.0)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, size=300)
    path = tmp_path / "state.json"
    whole = gradfit.GDRegressor(epochs=30, tol=None, **settings).fit(X, y, sample_weight=weight)
    gradfit.GDRegressor(epochs=stop_at, tol=None, **settings).fit(
        X, y, sample_weight=weight, checkpoint=path, checkpoint_every=3
    )
    resumed = gradfit.GDRegressor(epochs=30, tol=None, **settings).fit(X, y, sample_weight=weight, resume=path)
    assert resumed.loss_curve_ == whole.loss_curve_
    assert np.array_equal(resumed.coef_, whole.coef_)
    assert np.array_equal(resumed.intercept_, whole.intercept_)


def test_a_converged_checkpoint_resumes_to_the_same_stop(tmp_path):
    X, y = make_regression(n=200, d=3, seed=2)
    path = tmp_path / "state.json"
    whole = gradfit.GDRegressor(tol=1e-6).fit(X, y)
    gradfit.GDRegressor(tol=1e-6).fit(X, y, checkpoint=path)
    resumed = gradfit.GDRegressor(tol=1e-6).fit(X, y, resume=path)
    assert resumed.converged_ and resumed.n_iter_ == whole.n_iter_
    assert np.array_equal(resumed.coef_, whole.coef_)


def test_checkpoints_are_written_every_n_epochs(tmp_path):
    X, y = make_regression(n=100, d=2, seed=3)
    path = tmp_path / "state.json"
    seen = []

    class Spy:
        def on_epoch_end(self, epoch, cost, params):
            if path.exists():
                seen.append(len(json.loads(path.read_text())["loss_curve"]))

    gradfit.GDRegressor(epochs=10, tol=None).fit(X, y, checkpoint=path, checkpoint_every=4, callbacks=[Spy()])
    # The spy runs before the checkpoint of the same epoch: it sees the one before.
    assert sorted(set(seen)) == [4, 8]
    assert len(json.loads(path.read_text())["loss_curve"]) == 10


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(learning_rate=0.01), "learning_rate"),
        (dict(optimizer="adam"), "optimizer"),
        (dict(fit_intercept=False), "fit_intercept"),
        (dict(batch_size=16, random_state=0), "batch_size"),
    ],
)
def test_other_settings_are_refused(tmp_path, change, message):
    X, y = make_regression(n=100, d=2, seed=4)
    path = tmp_path / "state.json"
    gradfit.GDRegressor(epochs=5).fit(X, y, checkpoint=path)
    with pytest.raises(CheckpointError, match=message):
        gradfit.GDRegressor(epochs=5, **change).fit(X, y, resume=path)


def test_a_checkpoint_from_before_a_parameter_existed_resumes_at_its_default(tmp_path):
    # quantile came after checkpoints did: an older file has no such setting, and ran at its default
    X, y = make_regression(n=100, d=2, seed=4)
    path = tmp_path / "state.json"
    settings = dict(optimizer="gd", loss="quantile")
    gradfit.GDRegressor(epochs=5, **settings).fit(X, y, checkpoint=path)
    document = json.loads(path.read_text())
    del document["settings"]["quantile"]
    path.write_text(json.dumps(document))
    resumed = gradfit.GDRegressor(epochs=8, **settings).fit(X, y, resume=path)
    whole = gradfit.GDRegressor(epochs=8, **settings).fit(X, y)
    np.testing.assert_array_equal(resumed.coef_, whole.coef_)
    with pytest.raises(CheckpointError, match="made with quantile=0.5, not 0.9"):  # but not at another value
        gradfit.GDRegressor(epochs=8, quantile=0.9, **settings).fit(X, y, resume=path)


def test_other_data_is_refused(tmp_path):
    X, y = make_regression(n=100, d=2, seed=4)
    path = tmp_path / "state.json"
    gradfit.GDRegressor(epochs=5).fit(X, y, checkpoint=path)
    changed = X.copy()
    changed[57, 1] += 1e-9
    with pytest.raises(CheckpointError, match="other data"):
        gradfit.GDRegressor(epochs=5).fit(changed, y, resume=path)
    with pytest.raises(CheckpointError, match="other data"):
        gradfit.GDRegressor(epochs=5).fit(X[:-1], y[:-1], resume=path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "{not json",
        lambda d: json.dumps({**d, "format": "something-else"}),
        lambda d: json.dumps({**d, "format_version": 99}),
        lambda d: json.dumps({**d, "params": {"dtype": "<f8", "shape": [3, 1], "base64": "AAAA"}}),
        lambda d: json.dumps({**d, "params": {"dtype": "|O", "shape": [1], "base64": ""}}),
        lambda d: json.dumps({**d, "opt_state": {"tuple": [1, 2, 3, 4, 5]}}),
        lambda d: json.dumps({**d, "rng": {"bit_generator": "MT19937"}}),
        lambda d: json.dumps({**d, "loss_curve": ["NaN"]}),
    ],
)
def test_damaged_checkpoints_give_a_clear_error(tmp_path, damage):
    X, y = make_regression(n=100, d=2, seed=5)
    path = tmp_path / "state.json"
    gradfit.GDRegressor(epochs=5, batch_size=10, random_state=0).fit(X, y, checkpoint=path)
    path.write_text(damage(json.loads(path.read_text())))
    with pytest.raises(CheckpointError) as caught:
        gradfit.GDRegressor(epochs=5, batch_size=10, random_state=0).fit(X, y, resume=path)
    assert "\n" not in str(caught.value)


# -- the command line, killed for real -----------------------------------------------


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    """A Parquet file whose pass-engine epochs take a noticeable time."""
    folder = tmp_path_factory.mktemp("checkpoint-cli")
    X, y = make_regression(n=200_000, d=8, seed=9)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(8)])
    frame["y"] = y
    path = folder / "data.parquet"
    frame.to_parquet(path, row_group_size=50_000)
    return path


def _train(data, *extra):
    return [sys.executable, "-m", "gradfit", "train", str(data), "--target", "y", "--engine", "pass",
            "--epochs", "60", "--tol", "none", "--quiet", *extra]


def _curve_length(path):
    try:
        return len(json.loads(path.read_text())["loss_curve"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def whole(slow_data):
    """The unbroken run's model."""
    path = slow_data.parent / "whole.json"
    subprocess.run(_train(slow_data, "-o", str(path)), check=True, capture_output=True, timeout=300)
    return path


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_a_killed_cli_run_resumes_to_the_same_model(tmp_path, slow_data, whole, how):
    state, model = tmp_path / "state.json", tmp_path / "model.json"
    stop_after = {"SIGKILL": 7, "SIGTERM": 4, "SIGINT": 10}[how]
    process = subprocess.Popen(_train(slow_data, "-o", str(model), "--checkpoint", str(state),
                                      "--checkpoint-every", "1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _curve_length(state) < stop_after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(getattr(signal, how))
    process.communicate(timeout=120)
    stopped_at = _curve_length(state)
    assert 0 < stopped_at < 60, "the run should have been stopped part-way"
    resumed = subprocess.run(_train(slow_data, "-o", str(model), "--checkpoint", str(state), "--resume", str(state)),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = json.loads(whole.read_text()), json.loads(model.read_text())
    assert got["coef"] == expected["coef"] and got["intercept"] == expected["intercept"]
    assert got["training"]["loss_curve"] == expected["training"]["loss_curve"]
    assert os.path.getsize(state) > 0
