"""The tutorial's objective, exactly: cost curve, gradient, divergence."""

import numpy as np
import pytest

import gradfit
from gradfit import DivergenceError, GDRegressor

from .conftest import make_regression


def tutorial_loop(X, y, learning_rate, epochs):
    """The TensorFlow.js tutorial in NumPy, with the update actually applied."""
    w, b = np.zeros(X.shape[1]), 0.0
    costs = []
    for _ in range(epochs):
        residual = X @ w + b - y
        costs.append(np.mean(residual**2))  # the cost printed at this epoch
        w = w - learning_rate * 2 / len(y) * X.T @ residual
        b = b - learning_rate * 2 / len(y) * residual.sum()
    return np.array(costs), w, b


@pytest.mark.parametrize("engine", ["statistics", "pass"])
def test_curve_equals_the_tutorial_loop(tutorial, engine):
    X, y = tutorial
    model = GDRegressor(standardize=False, learning_rate=0.01, epochs=100, tol=None, engine=engine).fit(X, y)
    expected, w, b = tutorial_loop(X, y, 0.01, 100)
    assert model.loss_curve_[0] == pytest.approx(30.0, rel=1e-14)
    np.testing.assert_allclose(model.loss_curve_, expected, rtol=1e-9)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-9)
    np.testing.assert_allclose(model.intercept_, b, rtol=1e-9)
    assert model.n_iter_ == 100


def test_defaults_predict_the_tutorial_answers(tutorial):
    X, y = tutorial
    test = np.array([[5, 6, 7, 8], [6, 7, 8, 9], [7, 8, 9, 10], [8, 9, 10, 11]], dtype=float)
    model = GDRegressor().fit(X, y)
    np.testing.assert_allclose(model.predict(test), [10, 12, 14, 16], atol=1e-3)


def test_tutorial_learning_rate_diverges_with_an_explanation(tutorial):
    X, y = tutorial
    model = GDRegressor(standardize=False, learning_rate=0.1, epochs=100, tol=None)
    with pytest.raises(DivergenceError) as caught:
        model.fit(X, y)
    error = caught.value
    assert error.learning_rate == 0.1
    assert error.max_stable_learning_rate == pytest.approx(0.0134, abs=5e-5)
    message = str(error)
    for part in ("epoch", "cost", "0.1", "0.0134", 'learning_rate="auto"', "standardize"):
        assert part in message
    assert not hasattr(model, "coef_"), "a diverged fit must not leave coefficients"


def test_just_above_the_stable_limit_diverges_and_just_below_converges(tutorial):
    X, y = tutorial
    limit = GDRegressor(standardize=False, learning_rate="auto").fit(X, y).learning_rate_ * 2
    with pytest.raises(DivergenceError):
        GDRegressor(standardize=False, learning_rate=limit * 1.05, epochs=2000, tol=None).fit(X, y)
    model = GDRegressor(standardize=False, learning_rate=limit * 0.95, epochs=2000, tol=None).fit(X, y)
    assert np.all(np.isfinite(model.coef_))


@pytest.mark.parametrize("engine", ["statistics", "pass"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("standardize", [True, False])
def test_gradient_matches_finite_differences(engine, fit_intercept, standardize):
    from gradfit.fitting import prepare

    X, y = make_regression(n=60, d=4, k=2, seed=3, offset=2.0)
    weight = np.random.default_rng(1).uniform(0.5, 2, size=60)
    model = GDRegressor(engine=engine, fit_intercept=fit_intercept, standardize=standardize)
    source = model._source(X, y, weight, reset=True)
    objective = prepare(source, model.get_params()).objective
    params = np.random.default_rng(2).normal(size=(4 + fit_intercept, 2))
    _, grad = objective.value_and_grad(params)
    numeric = np.zeros_like(params)
    h = 1e-6
    for index in np.ndindex(params.shape):
        up, down = params.copy(), params.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (objective.value(up) - objective.value(down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("engine", ["statistics", "pass"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_converges_to_lstsq(engine, fit_intercept):
    # Without an intercept the features cannot be centred: keep them near zero
    # so that plain gradient descent converges in a few thousand epochs.
    X, y = make_regression(n=300, d=6, k=2, seed=4, offset=10.0 if fit_intercept else 0.0)
    model = GDRegressor(engine=engine, fit_intercept=fit_intercept, epochs=5000, tol=1e-12).fit(X, y)
    assert model.converged_
    design = np.column_stack([X, np.ones(len(X))]) if fit_intercept else X
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(model.coef_, solution[:6].T, rtol=1e-6, atol=1e-8)
    if fit_intercept:
        np.testing.assert_allclose(model.intercept_, solution[6], rtol=1e-6)


def test_weights_equal_repeated_rows():
    X, y = make_regression(n=50, d=3, seed=5)
    counts = np.random.default_rng(0).integers(0, 4, size=50)
    weighted = GDRegressor(tol=None, epochs=300).fit(X, y, sample_weight=counts)
    repeated = GDRegressor(tol=None, epochs=300).fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-10)


def test_standardize_reports_the_data_units():
    X, y = make_regression(n=400, d=3, seed=6, offset=1000.0, spread=np.array([1e-3, 1.0, 1e3]))
    model = GDRegressor(epochs=3000, tol=1e-12).fit(X, y)
    solution = np.linalg.lstsq(np.column_stack([X, np.ones(400)]), y, rcond=None)[0]
    np.testing.assert_allclose(model.coef_, solution[:3], rtol=1e-6)
    np.testing.assert_allclose(model.predict(X), X @ solution[:3] + solution[3], rtol=1e-9)


def test_tol_stops_early_and_running_out_of_epochs_warns():
    X, y = make_regression(n=100, d=3, seed=7)
    converged = GDRegressor(tol=1e-6).fit(X, y)
    assert converged.converged_ and converged.n_iter_ < 1000
    with pytest.warns(gradfit.ConvergenceWarning):
        GDRegressor(tol=1e-12, epochs=3, learning_rate=1e-4).fit(X, y)


def test_verbose_prints_the_tutorial_lines(tutorial, capsys):
    X, y = tutorial
    GDRegressor(verbose=2, epochs=3, tol=None, standardize=False, learning_rate=0.01).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out == ["Epoch: 0 Cost: 30", "Epoch: 1 Cost: 7.89", "Epoch: 2 Cost: 2.52882"]
