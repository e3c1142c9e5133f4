"""``engine="auto"`` against the faster engine over a grid of N, d and epochs (issue 13: within 1.25×).

For every cell, the same full-batch squared-error fit (``tol=None``) is timed
with ``engine="statistics"`` and ``engine="pass"`` (:func:`gradfit.fitting.fit_source`:
set-up and epochs, not the fit report; the least of ``--repeat`` tries), and
the engine that :func:`gradfit.engines.choose_engine` picks is looked up in
the pair. Printed: both times, the cost model's two estimates, the pick, and
the pick's time over the faster one's.

Usage::

    python benchmarks/bench_auto.py --repeat 2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import gradfit
from gradfit.engines import choose_engine, engine_costs
from gradfit.fitting import fit_source
from gradfit.losses import SquaredError
from gradfit.sources import ArraySource

GRID_ROWS = (20_000, 100_000)
GRID_FEATURES = (10, 100, 500)
GRID_EPOCHS = (5, 50, 200)


def timed(source, engine, epochs, repeat):
    settings = gradfit.GDRegressor(engine=engine, epochs=epochs, tol=None).get_params()
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fit_source(source, settings)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    warm = ArraySource(rng.normal(size=(2000, 20)), rng.normal(size=(2000, 1)))
    for engine in ("statistics", "pass"):  # compile the kernel, import what the engines import
        timed(warm, engine, 3, 1)
    print(f"full-batch squared error, tol=None; seconds (least of {args.repeat}), model = engine_costs; "
          f"load average before: {os.getloadavg()[0]:.1f}\n")
    print("| N | d | epochs | statistics s | pass s | model stat. | model pass | auto picks | × faster |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    worst = 1.0
    for n in GRID_ROWS:
        for d in GRID_FEATURES:
            X = rng.normal(size=(n, d)) @ (np.eye(d) + 0.3 * rng.normal(size=(d, d)) / np.sqrt(d))
            y = X @ rng.normal(size=d) + rng.normal(size=n)
            source = ArraySource(X, y[:, None])
            for epochs in GRID_EPOCHS:
                seconds = {engine: timed(source, engine, epochs, args.repeat) for engine in ("statistics", "pass")}
                model = engine_costs(n, d, epochs)
                pick = choose_engine("auto", SquaredError(), None, d, epochs, n_samples=n)
                ratio = seconds[pick] / min(seconds.values())
                worst = max(worst, ratio)
                print(f"| {n:,} | {d} | {epochs} | {seconds['statistics']:.3f} | {seconds['pass']:.3f} | "
                      f"{model[0]:.3f} | {model[1]:.3f} | {pick} | {ratio:.2f} |")
    print(f"\nworst: auto's pick takes {worst:.2f} × the faster engine's time; "
          f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
