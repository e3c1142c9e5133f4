"""Optimizers, schedules, minibatches, warm_start and partial_fit, against oracles.

Oracles: numpy.linalg.lstsq for the squared error, the formulas of the
schedules, and invariants (same seed same curve, memory layout changes nothing,
partial_fit equals fit on the same batches).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradfit import ConvergenceWarning, GDRegressor, OptionError, optimizers, schedules
from gradfit.engines import PassEngine, StatisticsEngine, accumulate
from gradfit.objective import Objective
from gradfit.penalties import ElasticNet
from gradfit.scaling import Scaling
from gradfit.sources import ArraySource
from gradfit.train import train

from .conftest import make_regression

OPTIMIZERS = ["gd", "momentum", "nesterov", "adam", "cg"]
ENGINES = ["statistics", "pass"]


def lstsq(X, y, fit_intercept=True):
    """``(coef (k, d), intercept (k,))`` of the exact least-squares fit."""
    Y = y.reshape(len(y), -1)
    design = np.column_stack([X, np.ones(len(X))]) if fit_intercept else X
    solution = np.linalg.lstsq(design, Y, rcond=None)[0]
    d = X.shape[1]
    return solution[:d].T, (solution[d] if fit_intercept else np.zeros(Y.shape[1]))


def correlated(n=300, d=5, seed=0, k=1):
    """Features with correlation ~0.9, offsets and spreads: ill-conditioned, but not absurdly."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    X = 0.9 * base + 0.45 * rng.normal(size=(n, d))
    X = X * rng.uniform(0.5, 20.0, size=d) + rng.uniform(-50, 50, size=d)
    coef = rng.normal(size=(d, k))
    y = X @ coef + 3.0 + 0.3 * rng.normal(size=(n, k))
    return X, (y[:, 0] if k == 1 else y)


# -- every optimizer reaches the least-squares answer ----------------------------

# (optimizer, epochs, rtol), all with learning_rate="auto" and schedule="auto"
REACH = [
    ("gd", 4000, 1e-10),
    ("momentum", 4000, 1e-10),
    ("nesterov", 4000, 1e-10),
    ("adam", 4000, 1e-10),
    ("cg", 100, 1e-12),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("optimizer,epochs,rtol", REACH)
def test_every_optimizer_reaches_lstsq(optimizer, epochs, rtol, engine):
    X, y = correlated(seed=1, k=2)
    model = GDRegressor(optimizer=optimizer, engine=engine, epochs=epochs, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    coef, intercept = lstsq(X, y)
    scale = np.abs(coef).max()
    np.testing.assert_allclose(model.coef_, coef, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(model.intercept_, intercept, rtol=rtol, atol=rtol * np.abs(intercept).max())


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "adam"])
def test_defaults_converge_and_say_so(optimizer):
    # With tol=1e-6 the fit stops on its own, near the optimum (the cost to 1e-6).
    X, y = correlated(seed=2)
    model = GDRegressor(optimizer=optimizer).fit(X, y)
    assert model.converged_
    coef, intercept = lstsq(X, y)
    optimum = np.mean((X @ coef[0] + intercept[0] - y) ** 2)
    assert model.final_cost_ <= optimum * (1 + 1e-4)


def test_momentum_beats_gd_on_an_ill_conditioned_problem():
    X, y = correlated(seed=3)
    epochs = {name: GDRegressor(optimizer=name, tol=1e-10, epochs=20000).fit(X, y).n_iter_
              for name in ("gd", "momentum", "nesterov")}
    assert epochs["momentum"] < epochs["gd"] / 3
    assert epochs["nesterov"] < epochs["gd"] / 3


def test_constant_step_momentum_is_the_velocity_form():
    # On minibatches (no restart) the displacement form is PyTorch's velocity form exactly.
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 2)) for _ in range(6)]
    for nesterov in (False, True):
        transform = optimizers.chain(optimizers.scale_by_schedule(schedules.constant(0.1)),
                                     optimizers.add_momentum(0.9, nesterov=nesterov))
        state, params = transform.init(np.zeros((3, 2))), np.zeros((3, 2))
        velocity, reference = np.zeros((3, 2)), np.zeros((3, 2))
        for g in grads:
            updates, state = transform.update(g, state, params)
            params = params + updates
            velocity = 0.9 * velocity + g
            reference = reference - 0.1 * (g + 0.9 * velocity if nesterov else velocity)
        np.testing.assert_allclose(params, reference, rtol=1e-12, atol=1e-15)


# -- conjugate gradient ------------------------------------------------------------


def make_objective(X, y, engine, alpha=None):
    source = ArraySource(X, y.reshape(len(y), -1))
    stats = accumulate(source, full=True)
    scaling = Scaling.from_statistics(stats, True, True)
    if engine == "statistics":
        data = StatisticsEngine(stats, scaling, True)
    else:
        from gradfit.losses import SquaredError

        data = PassEngine(source, scaling, SquaredError(), True, stats.sum_weights)
    penalty = None if alpha is None else ElasticNet("l2", alpha, 0.0)
    return Objective(data, penalty, scaling), scaling


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("alpha", [None, 0.05])
@pytest.mark.parametrize("seed", [4, 5])
def test_cg_is_exact_in_at_most_d_plus_one_epochs(engine, alpha, seed):
    # The optimizer alone, through the one training loop. In exact arithmetic
    # d + 1 = 7 steps land on the optimum; in float64 they land within rounding
    # amplified by the conjugacy rounding loses (up to 1e-7 here), and one more
    # step removes that too.
    X, y = correlated(seed=seed, d=6)
    objective, scaling = make_objective(X, y, engine, alpha)
    for epochs, rtol in ((7, 1e-6), (8, 1e-12)):
        result = train(objective, optimizers.cg(), np.zeros((7, 1)), epochs=epochs, schedule=lambda e: 0.0)
        coef, intercept = scaling.to_raw(result.params, True)
        expected_coef, expected_intercept = ridge(X, y, alpha)
        np.testing.assert_allclose(coef, expected_coef, rtol=rtol)
        # the oracle's own intercept has ~1e-11 rounding (features ±50 from zero)
        np.testing.assert_allclose(intercept, expected_intercept, rtol=max(rtol, 1e-9))


def ridge(X, y, alpha):
    """The exact minimizer of MSE + alpha/2‖coef‖² (plain least squares for ``alpha=None``)."""
    if alpha is None:
        expected_coef, expected_intercept = lstsq(X, y)
    else:
        # Ridge in closed form on the data's units: (XcᵀXc/N + alpha/2·I) coef = Xcᵀyc/N
        centred, n = X - X.mean(axis=0), len(y)
        expected_coef = np.linalg.solve(centred.T @ centred / n + alpha / 2 * np.eye(6),
                                        centred.T @ (y - y.mean()) / n)[None, :]
        expected_intercept = y.mean() - X.mean(axis=0) @ expected_coef[0]
    return expected_coef, np.atleast_1d(expected_intercept)


@pytest.mark.parametrize("engine", ENGINES)
def test_cg_estimator_epochs_and_refinement_record(engine):
    X, y = correlated(seed=5, d=4)
    model = GDRegressor(optimizer="cg", engine=engine).fit(X, y)
    refinement = model.refinement_
    assert refinement is not None and refinement["status"] == "settled"
    assert 1 <= refinement["epochs"] <= 8
    # cg's own epochs: at most d + 1 = 5 to the optimum, then n_iter_no_change flat ones
    assert model.n_iter_ - refinement["epochs"] <= 5 + 5 + 1
    coef, intercept = lstsq(X, y)
    np.testing.assert_allclose(model.coef_, coef[0], rtol=1e-12)
    assert np.min(refinement["digits"]) > 10


def test_cg_stops_on_an_exact_fit():
    # The cost of an exact fit keeps shrinking at rounding level; cg must still stop.
    x = np.arange(21.0)
    X = np.column_stack([x**p for p in range(1, 6)])
    y = 1 + X.sum(axis=1)
    model = GDRegressor(optimizer="cg").fit(X, y)
    assert model.converged_ and model.n_iter_ < 50
    np.testing.assert_allclose(model.coef_, np.ones(5), rtol=1e-8)


CG_REFUSES = [
    (dict(loss="huber"), "squared_error"),
    (dict(loss="absolute_error"), "squared_error"),
    (dict(penalty="l1"), "L1"),
    (dict(penalty="elasticnet"), "L1"),
    (dict(batch_size=10), "full batches"),
    (dict(learning_rate=0.1), "line search"),
    (dict(schedule="invscaling"), "schedule"),
]


@pytest.mark.parametrize("options,words", CG_REFUSES)
def test_cg_refuses_what_it_cannot_serve(options, words):
    X, y = make_regression(n=50, d=3)
    with pytest.raises(OptionError, match=words):
        GDRegressor(optimizer="cg", **options).fit(X, y)


def test_cg_serves_l2_and_an_l1_ratio_of_zero():
    X, y = make_regression(n=50, d=3)
    for options in (dict(penalty="l2", alpha=0.1), dict(penalty="elasticnet", l1_ratio=0.0, alpha=0.1)):
        GDRegressor(optimizer="cg", **options).fit(X, y)


# -- learning_rate="auto" --------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("standardize", [True, False])
def test_auto_learning_rate_never_diverges(optimizer, standardize):
    # Features six orders of magnitude apart, far from zero: the tutorial's trap.
    X, y = make_regression(n=200, d=3, seed=6, offset=100.0, spread=np.array([1e-3, 1.0, 1e3]))
    model = GDRegressor(optimizer=optimizer, standardize=standardize, epochs=300, tol=None).fit(X, y)
    curve = np.array(model.loss_curve_)
    assert np.all(np.isfinite(curve)) and curve[-1] < curve[0]


def test_what_auto_means_for_each_optimizer():
    X, y = make_regression(n=200, d=3, seed=7, offset=5.0)
    gd = GDRegressor(epochs=1, tol=None).fit(X, y)
    hessian_top = gd._fit_result.problem.objective.curvature()
    assert gd.learning_rate_ == pytest.approx(1 / hessian_top)
    for name in ("momentum", "nesterov"):
        rate = GDRegressor(optimizer=name, epochs=1, tol=None).fit(X, y).learning_rate_
        assert rate == pytest.approx(1 / hessian_top)
    rms = np.sqrt(np.mean(y**2))
    assert GDRegressor(optimizer="adam", epochs=1, tol=None).fit(X, y).learning_rate_ == pytest.approx(0.01 * rms)
    assert GDRegressor(optimizer="cg", epochs=1, tol=None).fit(X, y).learning_rate_ is None
    absolute = GDRegressor(loss="absolute_error", epochs=1, tol=None).fit(X, y)
    assert absolute.learning_rate_ == pytest.approx(2 * rms / hessian_top, rel=1e-6)


@pytest.mark.parametrize("batch_size", [1, 8, 64])
def test_auto_learning_rate_on_minibatches_is_stable(batch_size):
    # A single row's curvature is ~d times the full cost's: the step must shrink with the batch.
    X, y = make_regression(n=256, d=8, seed=8, noise=0.0)
    model = GDRegressor(batch_size=batch_size, random_state=0, epochs=60, tol=None).fit(X, y)
    full = GDRegressor(epochs=1, tol=None).fit(X, y).learning_rate_
    assert model.learning_rate_ < full
    curve = np.array(model.loss_curve_)
    assert np.all(np.isfinite(curve)) and curve[-1] < 1e-3 * curve[0]


def test_adam_refuses_l1():
    X, y = make_regression(n=50, d=3)
    with pytest.raises(OptionError, match="adam"):
        GDRegressor(optimizer="adam", penalty="l1").fit(X, y)


# -- schedules -------------------------------------------------------------------

SCHEDULES = [
    ("constant", dict(), lambda t: 0.2),
    ("invscaling", dict(power_t=0.5), lambda t: 0.2 / (1 + t) ** 0.5),
    ("invscaling", dict(power_t=1.0), lambda t: 0.2 / (1 + t)),
    ("step", dict(step_size=3, gamma=0.5), lambda t: 0.2 * 0.5 ** (t // 3)),
]


@pytest.mark.parametrize("name,options,formula", SCHEDULES)
def test_schedules_do_what_they_say(name, options, formula):
    # Plain gd on the tutorial's cost: each update is exactly −η_t ∇J, so the
    # step actually taken, divided by the gradient, is the schedule.
    X, y = make_regression(n=40, d=2, seed=9)
    steps = []

    class Record:
        def __init__(self):
            self.previous = None

        def on_epoch_end(self, epoch, cost, params):
            steps.append(params.copy())

    model = GDRegressor(learning_rate=0.2, schedule=name, epochs=9, tol=None, engine="pass", **options)
    model.fit(X, y, callbacks=[Record()])
    objective = model._fit_result.problem.objective
    params = np.zeros_like(steps[0])
    for epoch, after in enumerate(steps):
        _, grad = objective.value_and_grad(params)
        np.testing.assert_allclose(after - params, -formula(epoch) * grad, rtol=1e-10, atol=1e-14)
        params = after


def test_schedules_count_fractional_epochs_on_minibatches():
    rates = [schedules.inverse_scaling(1.0, 1.0)(t) for t in (0, 0.5, 1)]
    assert rates == [1.0, 1 / 1.5, 0.5]
    assert schedules.step_decay(1.0, 2, 0.1)(1.99) == 1.0 and schedules.step_decay(1.0, 2, 0.1)(2.0) == 0.1


@pytest.mark.parametrize("loss,expected", [("squared_error", "constant"), ("huber", "constant"),
                                           ("absolute_error", "invscaling")])
def test_auto_schedule(loss, expected):
    X, y = make_regression(n=40, d=2, seed=10)
    model = GDRegressor(loss=loss, epochs=3, tol=None).fit(X, y)
    assert model._fit_result.schedule == expected


# -- minibatches -----------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "adam"])
def test_minibatches_are_reproducible_from_the_seed(optimizer):
    X, y = make_regression(n=150, d=4, seed=11)
    runs = [GDRegressor(optimizer=optimizer, batch_size=16, random_state=seed, epochs=15, tol=None).fit(X, y)
            for seed in (3, 3, 4)]
    assert runs[0].loss_curve_ == runs[1].loss_curve_
    np.testing.assert_array_equal(runs[0].coef_, runs[1].coef_)
    assert runs[0].loss_curve_ != runs[2].loss_curve_
    # a RandomState instance is drawn from, as in scikit-learn: equal states, equal curves
    states = [np.random.RandomState(7), np.random.RandomState(7)]
    curves = [GDRegressor(optimizer=optimizer, batch_size=16, random_state=state, epochs=15, tol=None)
              .fit(X, y).loss_curve_ for state in states]
    assert curves[0] == curves[1] != runs[0].loss_curve_


LAYOUTS = [
    ("C order", lambda X: np.ascontiguousarray(X)),
    ("Fortran order", lambda X: np.asfortranarray(X)),
    ("a strided view", lambda X: np.repeat(X, 2, axis=1)[:, ::2]),
    ("a pandas frame", lambda X: __import__("pandas").DataFrame(X)),
]


@pytest.mark.parametrize("layout,convert", LAYOUTS)
def test_minibatch_curves_do_not_depend_on_the_memory_layout(layout, convert):
    X, y = make_regression(n=150, d=4, seed=12)
    options = dict(batch_size=10, random_state=5, epochs=10, tol=None, engine="pass", optimizer="nesterov")
    reference = GDRegressor(**options).fit(X, y)
    other = GDRegressor(**options).fit(convert(X.copy()), y)
    np.testing.assert_allclose(other.loss_curve_, reference.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(other.coef_, reference.coef_, rtol=1e-12)


def test_minibatches_reach_the_optimum_with_a_decaying_schedule():
    X, y = make_regression(n=400, d=4, seed=13, noise=0.5)
    model = GDRegressor(batch_size=20, random_state=0, schedule="invscaling", power_t=1.0, epochs=300,
                        tol=None).fit(X, y)
    coef, _ = lstsq(X, y)
    np.testing.assert_allclose(model.coef_, coef[0], rtol=2e-2, atol=2e-2)


# -- warm_start and partial_fit ---------------------------------------------------


def test_warm_start_starts_from_the_previous_coefficients():
    X, y = make_regression(n=100, d=3, seed=14)
    model = GDRegressor(warm_start=True, epochs=5, tol=None, learning_rate=0.05).fit(X, y)
    first_final = model.final_cost_
    model.fit(X, y)
    assert model.loss_curve_[0] == pytest.approx(first_final, rel=1e-12)
    straight = GDRegressor(epochs=10, tol=None, learning_rate=0.05).fit(X, y)
    np.testing.assert_allclose(model.coef_, straight.coef_, rtol=1e-12)
    cold = GDRegressor(warm_start=False, epochs=5, tol=None, learning_rate=0.05).fit(X, y).fit(X, y)
    assert cold.loss_curve_[0] == pytest.approx(np.mean(y**2))


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "adam"])
def test_partial_fit_is_fit_with_the_batch_as_its_minibatch(optimizer):
    # partial_fit: one epoch per call, the optimizer's state kept between calls;
    # the same as fit whose every minibatch is that batch.
    X, y = make_regression(n=80, d=3, seed=15)
    online = GDRegressor(optimizer=optimizer, tol=None)
    for _ in range(12):
        online.partial_fit(X, y)
    assert online.n_iter_ == 12
    batch = GDRegressor(optimizer=optimizer, tol=None, epochs=12, batch_size=len(X), random_state=0).fit(X, y)
    np.testing.assert_allclose(online.loss_curve_, batch.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(online.coef_, batch.coef_, rtol=1e-12)
    restarted = GDRegressor(optimizer=optimizer, tol=None)
    restarted.partial_fit(X, y)
    state = restarted._partial.opt_state
    restarted.partial_fit(X, y)
    assert restarted._partial.opt_state is not state  # carried forward, not re-initialized


def test_partial_fit_over_different_batches_matches_minibatch_updates():
    X, y = make_regression(n=90, d=3, seed=16)
    halves = [(X[:45], y[:45]), (X[45:], y[45:])]
    online = GDRegressor(optimizer="momentum", learning_rate=0.05, tol=None)
    for _ in range(3):
        for part in halves:
            online.partial_fit(*part)
    # the same steps by hand: momentum (no restarts: the batches' costs do not
    # compare) on each half's own mean squared error
    scaling = online.scaling_
    params = np.zeros((4, 1))
    transform = optimizers.momentum(schedules.constant(0.05), restart=False)
    state = transform.init(params)
    for _ in range(3):
        for part_X, part_y in halves:
            source = ArraySource(part_X, part_y[:, None])
            stats = accumulate(source, full=True)
            engine = StatisticsEngine(stats, scaling, True)
            _, grad = engine.value_and_grad(params)
            updates, state = transform.update(grad, state, params)
            params = params + updates
    coef, intercept = scaling.to_raw(params, True)
    np.testing.assert_allclose(online.coef_, coef[0], rtol=1e-10)
    np.testing.assert_allclose(online.intercept_, intercept[0], rtol=1e-10)


# -- the pieces ------------------------------------------------------------------


def test_newton_step_solves_a_quadratic_at_once():
    rng = np.random.default_rng(17)
    A = rng.normal(size=(4, 4))
    H = A @ A.T + np.eye(4)
    c = rng.normal(size=(4, 2))
    transform = optimizers.scale_by_inverse_hessian(lambda g: np.linalg.solve(H, g))
    params = np.zeros((4, 2))
    updates, _ = transform.update(H @ params - c, transform.init(params), params)
    np.testing.assert_allclose(params + updates, np.linalg.solve(H, c), rtol=1e-12)


def test_chain_threads_state_and_is_pure():
    transform = optimizers.adam(schedules.constant(0.1))
    params = np.ones((2, 1))
    state = transform.init(params)
    grads = np.array([[1.0], [-2.0]])
    first, state1 = transform.update(grads, state, params)
    again, _ = transform.update(grads, state, params)
    np.testing.assert_array_equal(first, again)  # same inputs, same outputs: no hidden state
    np.testing.assert_allclose(first, -0.1 * np.sign(grads), rtol=1e-6)  # Adam's first step: −η sign(g)
    assert state1[0].count == 1 and state[0].count == 0
