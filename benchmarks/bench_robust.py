"""Robust losses at second-order speed (issue 13, item 5): gradfit's ``optimizer="newton"`` against scikit-learn.

* Huber, ``N × d`` features correlated 0.9 (2e5 × 50; 1e6 × 100 with
  ``--large``), 5 % gross outliers: ``HuberRegressor(alpha=0)`` (L-BFGS, its
  scale estimated with the coefficients) against gradfit with
  ``epsilon = 1.35 · scale_`` from that fit, which has the same optimum (see
  :class:`gradfit.losses.Huber`); timed to gradfit's certified optimum
  (``tol=1e-6``, relative objective gap).
* The absolute error, 2e4 × 10 (Student-t noise): ``QuantileRegressor(quantile=0.5,
  alpha=0, solver="highs")`` against gradfit to a certified 1e-6 relative LP
  duality gap.
* The pinball loss at ``τ = 0.9``, same data: ``QuantileRegressor(quantile=0.9,
  alpha=0, solver="highs")`` against ``GDRegressor(loss="quantile",
  quantile=0.9)`` (its defaults: ``optimizer="newton"``) to a certified 1e-6
  relative LP duality gap; the objective compared is scikit-learn's mean
  pinball loss (gradfit's cost is twice it).

Every ratio comes from one run on one machine; each fit is also checked
against the other's objective. Run: ``python benchmarks/bench_robust.py [--large]
[--only huber|absolute_error|quantile] [--rows N]`` (``--rows``: the LP losses' ``N``, default 20,000).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.linear_model import HuberRegressor, QuantileRegressor
from sklearn.metrics import mean_pinball_loss

from gradfit import GDRegressor


def correlated(n, d, rho, rng):
    """Features with unit variance and pairwise correlation ``rho``."""
    common = rng.standard_normal((n, 1))
    return np.sqrt(rho) * common + np.sqrt(1.0 - rho) * rng.standard_normal((n, d))


def huber_objective(X, y, coef, intercept, epsilon):
    r = X @ coef + intercept - y
    a = np.abs(r)
    return float(np.mean(np.where(a <= epsilon, r * r, 2 * epsilon * a - epsilon * epsilon)))


def timed(function):
    start = time.perf_counter()
    out = function()
    return out, time.perf_counter() - start


HEADER = ("| loss | N × d | gradfit `newton` s | converged, certificate | peer | peer s | peer / gradfit | "
          "peer's objective / gradfit's − 1 |\n|---|---|---:|---|---|---:|---:|---:|")


def row(loss, n, d, ours, our_time, peer, peer_time, excess):
    certificate = ours.fit_report_["certificate"]
    print(f"| {loss} | {n:,} × {d} | {our_time:.2f} | {ours.converged_}, {certificate['value']:.1e} | {peer} | "
          f"{peer_time:.2f} | {peer_time / our_time:.1f}× | {excess:.1e} |", flush=True)


def bench_huber(n, d, rng):
    X = correlated(n, d, 0.9, rng)
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    outliers = rng.random(n) < 0.05
    y[outliers] += 20 * rng.standard_normal(outliers.sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk, sk_time = timed(lambda: HuberRegressor(epsilon=1.35, alpha=0.0, max_iter=10_000).fit(X, y))
    epsilon = 1.35 * sk.scale_
    ours, our_time = timed(lambda: GDRegressor(loss="huber", epsilon=epsilon, optimizer="newton").fit(X, y))
    ours_F = huber_objective(X, y, ours.coef_, ours.intercept_, epsilon)
    sk_F = huber_objective(X, y, sk.coef_, sk.intercept_, epsilon)
    row("huber", n, d, ours, our_time, "HuberRegressor(alpha=0)", sk_time, sk_F / ours_F - 1)


def bench_absolute(n, d, rng):
    X = correlated(n, d, 0.5, rng)
    y = X @ rng.standard_normal(d) + rng.standard_t(2, n)
    sk, sk_time = timed(lambda: QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(X, y))
    ours, our_time = timed(lambda: GDRegressor(loss="absolute_error", optimizer="newton").fit(X, y))
    ours_P = float(np.mean(np.abs(X @ ours.coef_ + ours.intercept_ - y)))
    sk_P = float(np.mean(np.abs(X @ sk.coef_ + sk.intercept_ - y)))
    row("absolute_error", n, d, ours, our_time, 'QuantileRegressor(solver="highs")', sk_time, sk_P / ours_P - 1)


def bench_quantile(n, d, rng, tau=0.9):
    X = correlated(n, d, 0.5, rng)
    y = X @ rng.standard_normal(d) + rng.standard_t(2, n)
    sk, sk_time = timed(lambda: QuantileRegressor(quantile=tau, alpha=0.0, solver="highs").fit(X, y))
    ours, our_time = timed(lambda: GDRegressor(loss="quantile", quantile=tau).fit(X, y))
    ours_P = mean_pinball_loss(y, ours.predict(X), alpha=tau)
    sk_P = mean_pinball_loss(y, sk.predict(X), alpha=tau)
    row(f"quantile {tau}", n, d, ours, our_time, f'QuantileRegressor({tau}, solver="highs")', sk_time,
        sk_P / ours_P - 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also Huber at 1e6 x 100 (about 0.8 GB)")
    parser.add_argument("--only", choices=("huber", "absolute_error", "quantile"), help="one loss only")
    parser.add_argument("--rows", type=int, default=20_000, help="N of the absolute error and quantile rows")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(HEADER, flush=True)
    if args.only in (None, "huber"):
        bench_huber(200_000, 50, rng)
        if args.large:
            bench_huber(1_000_000, 100, rng)
    if args.only in (None, "absolute_error"):
        bench_absolute(args.rows, 10, rng)
    if args.only in (None, "quantile"):
        bench_quantile(args.rows, 10, rng)


if __name__ == "__main__":
    main()
