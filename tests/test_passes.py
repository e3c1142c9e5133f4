"""What a fit costs in passes over the data, and the pass engine's step size without dozens of them.

* a pass-engine fit of E epochs reads the data at most E + 3 times (the
  moments, the step size's sketch, the epochs, the final cost; the step
  size's last pass also serves the first epoch) at d = 100 and d = 1000,
  counted by a source that counts the passes its chunks are read in;
* the automatic ``L`` is a safe bound: between the exact ``λmax`` of the
  Hessian (numpy.linalg.eigvalsh of the explicit Hessian) and 1.1 times it
  where exact (up to 16 parameters), within [0.7, 1.1] × λmax beyond, so
  gradient descent's ``1/L`` stays below the ``2/λmax`` stability limit;
* the iterates are those of the same step with the first epoch computed by
  its own pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradfit
from gradfit.engines import PassEngine, accumulate, passes
from gradfit.fitting import fit_source
from gradfit.losses import SquaredError
from gradfit.scaling import Scaling
from gradfit.sources import ArraySource

from .conftest import make_regression


class CountingSource(ArraySource):
    """Arrays whose every full read (a ``chunks()`` call, as every pass makes) is counted."""

    passes = 0

    def chunks(self):
        self.passes += 1
        yield from super().chunks()


def correlated(n, d, seed=0):
    """Features with a slowly decaying spectrum (λ_i ∝ 1/√i), the hard case for a Krylov sketch."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = rng.normal(size=(n, d)) * (np.arange(1, d + 1) ** -0.25) @ basis.T + rng.normal(size=d)
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("d", [100, 1000])
def test_a_pass_fit_of_e_epochs_reads_the_data_at_most_e_plus_3_times(d):
    epochs = 20
    X, y = correlated(2000, d)
    source = CountingSource(X, y[:, None])
    settings = gradfit.GDRegressor(engine="pass", epochs=epochs, tol=None).get_params()
    result = fit_source(source, settings)
    assert result.engine == "pass" and result.n_iter == epochs
    # E + 3 for training (moments, the step size's sketch, the final cost), and the one pass the
    # report may add: the full statistics the convergence certificate is computed from
    assert source.passes <= epochs + 3 + 1, source.passes

    if d == 100:  # the whole estimator, its fit report included (d = 1000's report is slow)
        counted = CountingSource(X, y[:, None])
        model = gradfit.GDRegressor(engine="pass", epochs=epochs, tol=None).fit(counted)
        np.testing.assert_array_equal(model.loss_curve_, result.loss_curve)
        assert source.passes <= counted.passes <= epochs + 3 + 1, counted.passes  # the report reuses that pass


def exact_curvature(X, y, weight=None, fit_intercept=True):
    """λmax of the squared error's Hessian in the working units, from the explicit matrix."""
    source = ArraySource(X, y[:, None], weight)
    scaling = Scaling.from_statistics(accumulate(source, full=False), fit_intercept, True)
    Z = (X - scaling.center) / scaling.scale
    if fit_intercept:
        Z = np.hstack([Z, np.ones((len(Z), 1))])
    v = np.ones(len(Z)) if weight is None else weight
    hessian = 2.0 * (Z * v[:, None]).T @ Z / v.sum()
    return float(np.linalg.eigvalsh(hessian)[-1]), source, scaling


def pass_curvature(source, scaling, fit_intercept=True):
    stats = accumulate(source, full=False)
    return PassEngine(source, scaling, SquaredError(), fit_intercept, stats.sum_weights).curvature()


@pytest.mark.parametrize("n, d, seed", [(300, 5, 0), (500, 15, 1)])
def test_few_parameters_get_the_exact_curvature(n, d, seed):
    X, y = make_regression(n=n, d=d, seed=seed)
    exact, source, scaling = exact_curvature(X, y)
    np.testing.assert_allclose(pass_curvature(source, scaling), exact, rtol=1e-10)


@pytest.mark.parametrize("n, d, seed", [(2000, 40, 0), (2000, 150, 1), (1200, 300, 2)])
def test_the_sketched_curvature_keeps_gradient_descent_stable(n, d, seed):
    X, y = correlated(n, d, seed)
    weight = np.random.default_rng(seed).uniform(0.5, 2.0, size=n)
    exact, source, scaling = exact_curvature(X, y, weight)
    estimate = pass_curvature(source, scaling)
    assert 0.7 * exact <= estimate <= passes.CURVATURE_MARGIN * exact * (1 + 1e-9)
    assert 1.0 / estimate < 2.0 / exact  # gradient descent's 1/L: below the divergence limit


def test_nystrom_estimate_never_exceeds_the_top_eigenvalue():
    rng = np.random.default_rng(3)
    for spectrum in (np.ones(50), 1 / np.arange(1, 51), np.linspace(1, 0.01, 50), np.r_[10, np.ones(49)]):
        basis, _ = np.linalg.qr(rng.normal(size=(50, 50)))
        hessian = (basis * spectrum) @ basis.T
        omega = rng.normal(size=(50, 8))
        first = hessian @ omega
        top = passes.nystrom_top(np.hstack([omega, first]), np.hstack([first, hessian @ first]))
        assert 0.5 * spectrum.max() <= top <= spectrum.max() * (1 + 1e-10)


def test_the_first_epoch_read_with_the_step_size_gives_the_same_iterates():
    X, y = correlated(1000, 30)
    settings = dict(engine="pass", epochs=15, tol=None)
    fused = gradfit.GDRegressor(**settings).fit(X, y)
    # The same step, given: the step size is not computed, so every epoch makes its own pass.
    plain = gradfit.GDRegressor(learning_rate=fused.learning_rate_, **settings).fit(X, y)
    np.testing.assert_allclose(fused.loss_curve_, plain.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(fused.coef_, plain.coef_, rtol=1e-10)
