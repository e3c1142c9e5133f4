"""GDRegressorCV(loss="huber"): every data pass serves all the folds at once.

Oracle: each fold's training rows refitted on their own, alpha by alpha, by
L-BFGS-B at tight tolerances on gradfit's Huber objective
(:func:`tests.test_robust.huber_oracle`; L1 by splitting the coefficients),
and its held-out rows' mean Huber loss computed with NumPy. Reads are counted
by sources that count every pass over their chunks.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold, ShuffleSplit

from gradfit import ArraySource, GDRegressorCV
from gradfit.folds import split
from gradfit.robust.huber_cv import PATH_TOL

from .test_cv import CountingFile, CountingSource  # sources that count every read of the data
from .test_robust import design, huber_oracle

RTOL = 1e-6
EPSILON = 1.35


def correlated(n, d, rho, seed, scale):
    """Correlated features of spreads ``scale`` and offsets, a heavy-tailed (Student t, 2 dof) noise."""
    rng = np.random.default_rng(seed)
    X = np.sqrt(rho) * rng.standard_normal((n, 1)) + np.sqrt(1 - rho) * rng.standard_normal((n, d))
    X = X * scale + rng.normal(size=d) * 3 * scale
    y = X @ (rng.standard_normal(d) / scale) + 2.0 + rng.standard_t(2, n)
    return X, y


@pytest.fixture(scope="module")
def data():
    return correlated(160, 4, 0.9, 5, 10.0 ** np.arange(-2, 2))


def huber_mean(X, y, theta, fit_intercept=True):
    r = np.abs(design(X, fit_intercept) @ theta - y)
    return float(np.mean(np.where(r <= EPSILON, r * r, 2 * EPSILON * r - EPSILON**2)))


def oracle_curve(X, y, alphas, l1_ratio, folds):
    """(n_alphas, n_folds) held-out mean Huber losses of the folds refitted one by one."""
    curve = np.empty((len(alphas), len(folds)))
    for f, (train, test) in enumerate(folds):
        for a, alpha in enumerate(alphas):
            _, theta = huber_oracle(X[train], y[train], EPSILON, l2=alpha * (1 - l1_ratio), l1=alpha * l1_ratio)
            curve[a, f] = huber_mean(X[test], y[test], theta)
    return curve


@pytest.mark.parametrize("penalty, l1_ratio", [("l2", 0.0), ("l1", 1.0), ("elasticnet", 0.5)])
def test_the_cv_curve_and_alpha_are_the_folds_refitted_one_by_one(data, penalty, l1_ratio):
    X, y = data
    model = GDRegressorCV(loss="huber", epsilon=EPSILON, penalty=penalty, l1_ratio=0.5, alphas=5, eps=1e-2,
                          cv=3, random_state=2).fit(X, y)
    expected = oracle_curve(X, y, model.alphas_, l1_ratio, split(len(X), 3, seed=2))
    np.testing.assert_allclose(model.mse_path_, expected, rtol=RTOL)
    assert model.cv_loss_path_ is model.mse_path_
    assert model.alpha_ == model.alphas_[np.argmin(expected.mean(axis=1))]
    # every point certified: the gradient_bound of each fold's problem within the path's tolerance
    assert np.all(model.dual_gap_path_ <= PATH_TOL)
    # the final model: all the rows at the chosen alpha, as the oracle fits them
    _, theta = huber_oracle(X, y, EPSILON, l2=model.alpha_ * (1 - l1_ratio), l1=model.alpha_ * l1_ratio)
    np.testing.assert_allclose(np.r_[model.coef_, model.intercept_], theta, rtol=1e-5, atol=1e-7 * np.abs(theta).max())
    assert model.converged_ and model.certificate_.kind == "gradient_bound"
    if l1_ratio > 0:  # the grid starts where every coefficient is zero, and not above
        assert np.all(model.coef_path_[0] == 0) and np.any(model.coef_path_[1] != 0)


def test_several_l1_ratios_and_given_alphas(data):
    X, y = data
    alphas = [3.0, 0.3, 0.03]
    model = GDRegressorCV(loss="huber", penalty="elasticnet", l1_ratio=[0.2, 0.9], alphas=alphas, cv=3).fit(X, y)
    assert model.mse_path_.shape == (2, 3, 3)
    folds = split(len(X), 3)
    for i, ratio in enumerate([0.2, 0.9]):
        np.testing.assert_allclose(model.mse_path_[i], oracle_curve(X, y, alphas, ratio, folds), rtol=RTOL)


@pytest.mark.parametrize("penalty", ["l2", "l1"])
def test_passes_do_not_grow_with_the_folds(data, penalty):
    X, y = data
    reads, passes = {}, {}
    for folds in (3, 10):
        source = CountingSource(X, y[:, None])
        model = GDRegressorCV(loss="huber", penalty=penalty, alphas=8, cv=folds).fit(source)
        reads[folds], passes[folds] = source.reads, model.cv_report_["passes"]
        assert reads[folds] >= passes[folds] + 1  # the statistics' pass, the path's passes, the final fit
    # one pass serves every fold: the count is the slowest fold's iterations, not the folds' sum
    assert passes[10] <= passes[3] + 8
    assert reads[10] < 2 * reads[3]


def test_a_csv_file_gives_the_folds_and_errors_of_the_arrays(data, tmp_path):
    X, y = data
    path = tmp_path / "data.csv"
    pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y).to_csv(path, index=False)
    settings = {"loss": "huber", "penalty": "l1", "alphas": 7, "cv": 4, "random_state": 9}
    arrays = GDRegressorCV(**settings).fit(X, y)
    source = CountingFile(str(path), target="y", batch_rows=50)
    streamed = GDRegressorCV(**settings).fit(source)
    np.testing.assert_allclose(streamed.mse_path_, arrays.mse_path_, rtol=1e-9)
    assert streamed.alpha_ == pytest.approx(arrays.alpha_, rel=1e-12)
    np.testing.assert_allclose(streamed.coef_, arrays.coef_, rtol=1e-7)
    assert source.reads >= streamed.cv_report_["passes"] + 1
    by_path = GDRegressorCV(**settings).fit(str(path), "y")
    np.testing.assert_allclose(by_path.mse_path_, arrays.mse_path_, rtol=1e-9)


def test_given_folds_and_what_it_refuses(data):
    X, y = data
    hashed = GDRegressorCV(loss="huber", penalty="l2", alphas=4, cv=3).fit(X, y)
    listed = GDRegressorCV(loss="huber", penalty="l2", alphas=4, cv=split(len(X), 3)).fit(X, y)
    np.testing.assert_allclose(listed.mse_path_, hashed.mse_path_, rtol=1e-10)
    # splits are drawn once, for the statistics and the passes alike (a generator can be read only once)
    drawn = GDRegressorCV(loss="huber", penalty="l2", alphas=4, cv=(pair for pair in split(len(X), 3))).fit(X, y)
    np.testing.assert_allclose(drawn.mse_path_, hashed.mse_path_, rtol=1e-10)
    alphas = hashed.alphas_[2:]
    kfold = GDRegressorCV(loss="huber", penalty="l2", alphas=alphas, cv=KFold(3)).fit(X, y)
    folds = list(KFold(3).split(X))
    np.testing.assert_allclose(kfold.mse_path_, oracle_curve(X, y, alphas, 0.0, folds), rtol=RTOL)
    source = CountingSource(X, y[:, None])
    with pytest.raises(ValueError, match="partition the rows"):
        GDRegressorCV(loss="huber", cv=ShuffleSplit(3, random_state=0)).fit(source)
    assert source.reads == 0


def test_sample_weights_weight_the_training_and_the_validation(data):
    X, y = data
    weight = np.random.default_rng(4).uniform(0.2, 3.0, len(y))
    alphas = [1.0, 0.0]  # alpha = 0 too: its bound projects each fold's dual point over its own rows
    model = GDRegressorCV(loss="huber", penalty="l2", alphas=alphas, cv=3).fit(X, y, sample_weight=weight)
    assert np.all(model.dual_gap_path_ <= PATH_TOL)
    for f, (train, test) in enumerate(split(len(X), 3)):
        for a, alpha in enumerate(alphas):
            _, theta = huber_oracle(X[train], y[train], EPSILON, weight=weight[train], l2=alpha)
            r = np.abs(design(X[test], True) @ theta - y[test])
            loss = np.where(r <= EPSILON, r * r, 2 * EPSILON * r - EPSILON**2)
            assert model.mse_path_[a, f] == pytest.approx(np.average(loss, weights=weight[test]), rel=RTOL)


def test_the_command_line(data, tmp_path):
    X, y = data
    path = tmp_path / "data.csv"
    pd.DataFrame(X, columns=list("abcd")).assign(y=y).to_csv(path, index=False)
    model_path = tmp_path / "m.json"
    done = subprocess.run([sys.executable, "-m", "gradfit", "train", str(path), "--target", "y", "--loss", "huber",
                           "--penalty", "l2", "--alpha", "cv", "--folds", "3", "--alphas", "5", "-o", str(model_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    expected = GDRegressorCV(loss="huber", penalty="l2", alphas=5, cv=3).fit(str(path), "y")
    assert f"alpha {expected.alpha_:.6g}" in done.stdout
    assert f"{expected.cv_error_:.6g} ± {expected.cv_std_error_:.3g}" in done.stdout
    assert "mean validation Huber loss over folds" in done.stdout
    document = json.loads(model_path.read_text())
    assert document["cross_validation"]["loss"] == "huber"
    np.testing.assert_allclose(document["coef"][0], expected.coef_, rtol=1e-9)


def test_several_outputs_share_the_passes_and_average_their_losses(data):
    X, y = data
    Y = np.c_[y, 0.5 * y + np.random.default_rng(8).standard_t(3, len(y))]
    alphas = [1.0, 0.1, 0.01]
    both = GDRegressorCV(loss="huber", penalty="l1", alphas=alphas, cv=3).fit(X, Y)
    each = [GDRegressorCV(loss="huber", penalty="l1", alphas=alphas, cv=3).fit(X, Y[:, j]) for j in range(2)]
    np.testing.assert_allclose(both.mse_path_, np.mean([m.mse_path_ for m in each], axis=0), rtol=1e-9)
    assert both.coef_.shape == (2, 4) and both.coef_path_.shape == (3, 2, 4)
    assert both.cv_report_["passes"] <= max(m.cv_report_["passes"] for m in each) + 3


def test_the_unpenalized_bound_is_the_robust_certificate_and_bounds_the_gap(data):
    # alpha = 0: every problem's dual point projected over its own training rows, in shared passes
    from gradfit.folds import fold_statistics
    from gradfit.robust.huber import HuberProblem, certificate
    from gradfit.robust.huber_cv import FoldedProblems, _own, _point, _State, hashed_labels, unpenalized_bounds
    from gradfit.robust.linalg import Gram
    from gradfit.scaling import Scaling

    X, y = data
    source = ArraySource(X, y[:, None])
    statistics = fold_statistics(source, 3, 0)
    scaling = Scaling.from_statistics(statistics.total, True, True)
    gram = Gram(statistics.total, scaling, True)
    problems = FoldedProblems(source, hashed_labels(3, 0), statistics, scaling, True, EPSILON, gram, [0.0], 1)
    theta = gram.least_squares[:, 0]  # least squares: not Huber's optimum, so the bounds are positive
    sums = problems.evaluate(np.arange(4), np.tile(theta[:, None], (1, 4)))
    states = [(m, _State(problems.problem(m, 0.0), _point(problems.problem(m, 0.0), theta, _own(sums, m)), gram, None))
              for m in range(4)]
    bounds = unpenalized_bounds(problems, states)
    # the all-rows problem (the last): gradfit.robust's own certificate, which reads the whole source
    whole = HuberProblem(source, 0, EPSILON, scaling, True, None, statistics.total)
    expected = certificate(whole, whole.evaluate(theta, hessian=False), gram)
    assert bounds[3][0] == pytest.approx(expected[0], rel=1e-9) and bounds[3][1] == pytest.approx(expected[1])
    for f, (train, _) in enumerate(split(len(X), 3)):  # each fold's bound holds its true gap
        optimum, _ = huber_oracle(X[train], y[train], EPSILON)
        gap, value = bounds[f]
        assert value - optimum <= gap * (1 + 1e-9) and gap > 0
