"""Time to the optimum against the condition number: gradfit's defaults and its peers (issue 11).

For synthetic data with standardized condition numbers 1e2, 1e4, 1e6, 1e8
(``tests/realdata.synthetic``: features of their own units whose correlation
matrix has exactly that condition number; default N = 1e6 rows, d = 100) and
for the real data sets of ``tests/realdata`` (shipped inside statsmodels and
scikit-learn), every contender fits the same problem once:

====================  ==========================================================
problem               contenders
====================  ==========================================================
least squares         gradfit defaults, gradfit ``optimizer="cg"``, statsmodels
                      ``OLS``, scikit-learn ``LinearRegression``, scikit-learn
                      ``SGDRegressor(penalty=None)`` on standardized features
ridge                 gradfit ``penalty="l2"``, scikit-learn ``Ridge``
elastic net           gradfit ``penalty="elasticnet"``, scikit-learn ``ElasticNet``
Huber                 gradfit ``loss="huber"`` with ``epsilon = 1.35·scale_``,
                      scikit-learn ``HuberRegressor(alpha=0)`` (which estimates
                      ``scale_``; at that scale the two optima coincide)
====================  ==========================================================

All with their default settings. The accuracy column is the relative
coefficient error of :mod:`gradfit.certificate`'s ``"distance"`` (standardized
units, intercept against ``max(|b*|, σ_y)``) against a reference solution of
the same problem: ``numpy.linalg.lstsq`` on the centred, standardized design
(augmented for ridge), scikit-learn's coordinate descent at tol 1e-12 for the
elastic net, L-BFGS-B polished by Newton steps for Huber (``tests/oracles``).
"≤ 1e-6" says whether the contender reached the issue's target; "what it
said": gradfit's ``converged_``, and whether a ``ConvergenceWarning`` came. Times are wall-clock seconds of ``fit``
(median of ``--repeat`` runs), and ratios are against gradfit's defaults on
the same problem.

Usage::

    python benchmarks/bench_convergence.py            # N = 1e6, d = 100, κ 1e2 … 1e8, real data sets
    python benchmarks/bench_convergence.py --small    # N = 20000, d = 20: a quick run
    python benchmarks/bench_convergence.py --rows 200000 --features 50 --no-real

Nothing here is a test: the table is measured in one run on one machine
(``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository root: gradfit and tests.realdata / tests.oracles
sys.path.insert(0, HERE)

import gradfit  # noqa: E402
from tests import oracles, realdata  # noqa: E402

from machine import cpu_name, memory_gib  # noqa: E402  benchmarks/machine.py, beside this script

TARGET = 1e-6


def timed(fit, repeat):
    """Run ``fit()`` ``repeat`` times: the median wall time, the last result, and whether it warned.

    "Warned": the contender issued a ``ConvergenceWarning`` (scikit-learn's
    and gradfit's way of saying that it stopped before its own criterion).
    """
    from sklearn.exceptions import ConvergenceWarning

    times = []
    result = None
    for _ in range(repeat):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            result = fit()
            times.append(time.perf_counter() - start)
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return statistics.median(times), result, warned


def warm_up():
    """Fit every gradfit contender once on small data, so that Numba's compilation is not timed."""
    data = realdata.synthetic(100.0, n_samples=2000, n_features=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for options in ({}, {"optimizer": "cg"}, {"penalty": "l2"}, {"penalty": "elasticnet"}, {"loss": "huber"}):
            gradfit.GDRegressor(epochs=20, **options).fit(data.X, data.y)


def coef_of(model):
    """``(coef, intercept)`` of a fitted gradfit, scikit-learn, pipeline or statsmodels model."""
    if hasattr(model, "params"):  # statsmodels results: constant first
        return np.asarray(model.params[1:]), float(model.params[0])
    if hasattr(model, "steps"):  # StandardScaler + regressor: back to the data's units
        scaler, regressor = model.steps[0][1], model.steps[-1][1]
        coef = regressor.coef_ / scaler.scale_
        return coef, float(np.ravel(regressor.intercept_)[0] - scaler.mean_ @ coef)
    return np.asarray(model.coef_, dtype=float).ravel(), float(np.ravel(model.intercept_)[0])


def problems(X, y):
    """The four problems and their contenders: ``[(problem, reference (coef, b), [(name, fit)])]``."""
    import statsmodels.api as sm
    from sklearn.linear_model import ElasticNet, HuberRegressor, LinearRegression, Ridge, SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(y)
    ridge_alpha = 0.02 * float(np.median(X.var(axis=0)))  # gradfit's alpha; Ridge's is alpha·N/2
    Xc = X - X.mean(axis=0)
    net_alpha = 0.02 * 2 * float(np.max(np.abs(Xc.T @ (y - y.mean())))) / n  # gradfit's; ElasticNet's is half
    del Xc
    least_squares = oracles.centred_lstsq(X, y)
    ridge = oracles.centred_lstsq(X, y, ridge=ridge_alpha)
    net = oracles.elastic_net(X, y, net_alpha, 0.5, precompute=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        huber_peer = HuberRegressor(alpha=0.0).fit(X, y)  # for its scale_; timed again below
    epsilon = 1.35 * float(huber_peer.scale_)
    huber = oracles.huber(X, y, epsilon)
    return [
        ("least squares", least_squares, [
            ("gradfit defaults", lambda: gradfit.GDRegressor().fit(X, y)),
            ("gradfit optimizer='cg'", lambda: gradfit.GDRegressor(optimizer="cg").fit(X, y)),
            ("statsmodels OLS", lambda: sm.OLS(y, sm.add_constant(X, has_constant="add")).fit()),
            ("sklearn LinearRegression", lambda: LinearRegression().fit(X, y)),
            ("sklearn SGDRegressor(penalty=None), standardized",
             lambda: make_pipeline(StandardScaler(), SGDRegressor(penalty=None, random_state=0)).fit(X, y)),
        ]),
        ("ridge", ridge, [
            ("gradfit penalty='l2'", lambda: gradfit.GDRegressor(penalty="l2", alpha=ridge_alpha).fit(X, y)),
            ("sklearn Ridge", lambda: Ridge(alpha=ridge_alpha * n / 2).fit(X, y)),
        ]),
        ("elastic net", (net.coef, net.intercept), [
            ("gradfit penalty='elasticnet'",
             lambda: gradfit.GDRegressor(penalty="elasticnet", alpha=net_alpha, l1_ratio=0.5).fit(X, y)),
            ("sklearn ElasticNet", lambda: ElasticNet(alpha=net_alpha / 2, l1_ratio=0.5).fit(X, y)),
        ]),
        ("huber", (huber.coef, huber.intercept), [
            ("gradfit loss='huber'", lambda: gradfit.GDRegressor(loss="huber", epsilon=epsilon).fit(X, y)),
            ("sklearn HuberRegressor(alpha=0)", lambda: HuberRegressor(alpha=0.0).fit(X, y)),
        ]),
    ]


def measure(name, X, y, condition, repeat):
    """Print the table rows of one data set."""
    rows = []
    for problem, (ref_coef, ref_intercept), contenders in problems(X, y):
        base = None
        for contender, fit in contenders:
            seconds, model, warned = timed(fit, repeat)
            coef, intercept = coef_of(model)
            error = oracles.relative_coef_error(coef, intercept, ref_coef, ref_intercept, X, y)
            base = seconds if base is None else base
            converged = getattr(model, "converged_", None)
            said = [] if converged is None else ["converged_" if converged else "not converged_"]
            said = "; ".join(said + (["ConvergenceWarning"] if warned else []))
            rows.append((name, f"{condition:.3g}", problem, contender, f"{seconds:.4g}", f"{seconds / base:.3g}",
                         f"{error:.1e}", "yes" if error <= TARGET else "**no**", said))
    for row in rows:
        print("| " + " | ".join(row) + " |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="N = 20000, d = 20 (seconds, not minutes)")
    parser.add_argument("--rows", type=float, default=None, help="N of the synthetic sets (default 1e6)")
    parser.add_argument("--features", type=int, default=None, help="d of the synthetic sets (default 100)")
    parser.add_argument("--conditions", default="1e2,1e4,1e6,1e8", help="standardized condition numbers")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (the median is shown)")
    parser.add_argument("--no-real", action="store_true", help="leave out the real data sets")
    parser.add_argument("--no-synthetic", action="store_true", help="leave out the synthetic data sets")
    args = parser.parse_args(argv)
    rows = int(args.rows or (20_000 if args.small else 1_000_000))
    features = args.features or (20 if args.small else 100)

    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, {memory_gib():.1f} GiB; Python {platform.python_version()}, "
          f"NumPy {np.__version__}; load average {os.getloadavg()[0]:.1f}")
    print(f"Command: python benchmarks/bench_convergence.py {' '.join(sys.argv[1:] if argv is None else argv)}\n")
    warm_up()
    print("| data | κ (standardized) | problem | contender | time (s) | time / gradfit | rel. coef error "
          "| ≤ 1e-6 | what it said |")
    print("|---|---:|---|---|---:|---:|---:|---|---|")
    if not args.no_synthetic:
        for condition in (float(c) for c in args.conditions.split(",")):
            data = realdata.synthetic(condition, n_samples=rows, n_features=features)
            measure(f"synthetic {rows}×{features}", data.X, data.y, data.condition_number, args.repeat)
            del data
    if not args.no_real:
        for name in realdata.REAL:
            data = realdata.load(name)
            measure(f"{name} {data.X.shape[0]}×{data.X.shape[1]}", data.X, data.y, data.condition_number,
                    args.repeat)


if __name__ == "__main__":
    main()
