"""Huber's cross-validation on a categorical column of many levels: on the level codes against the dense dummies.

The table: three numeric features, a text column ``g`` of ``--levels`` levels
(``--rows-per-level`` rows each), a target with level effects, Gaussian noise
and ~10% heavy-tailed outliers. ``GDRegressorCV(loss="huber", penalty=...)``
is timed on the codes (the column is a block candidate: more than
``BLOCK_LEVELS`` levels; :mod:`gradfit.robust.huber_cv` solves each fold's
steps by its inliers' level blocks) and, with ``--dense``, on the dense
dummies (``BLOCK_LEVELS`` raised in this process: a ``p × p`` Hessian per
fold a pass). Prints seconds, the Python heap's peak (tracemalloc, which
slows NumPy's allocations: the seconds are from a separate untraced run),
the passes, the largest certified gap and, with ``--dense``, the largest
relative differences of the validation path and the coefficients.

Usage::

    python benchmarks/bench_cv_huber_levels.py --levels 1300 --dense
    python benchmarks/bench_cv_huber_levels.py --levels 10000 --rows-per-level 4 --folds 5 --alphas 10
    python benchmarks/bench_cv_huber_levels.py --levels 10000 --penalty elasticnet
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd

from gradfit import GDRegressorCV
from gradfit.sources import encoding


def generate(levels, rows_per_level, seed=0):
    rng = np.random.default_rng(seed)
    n = levels * rows_per_level
    codes = rng.permutation(np.resize(np.arange(levels), n))
    X = rng.normal(size=(n, 3)) * [1.0, 3.0, 0.5] + [0.5, -0.2, 1.0]
    y = X @ [1.0, -0.5, 2.0] + rng.normal(size=levels)[codes] + rng.normal(size=n)
    y += 3.0 * rng.standard_t(2, n) * (rng.random(n) < 0.1)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    frame["g"] = [f"L{c:05d}" for c in codes]
    return frame, y


def run(frame, y, options):
    start = time.perf_counter()
    model = GDRegressorCV(**options).fit(frame, y)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    GDRegressorCV(**options).fit(frame, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return model, seconds, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=1300)
    parser.add_argument("--rows-per-level", type=int, default=4)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--alphas", type=int, default=5)
    parser.add_argument("--penalty", default="l2", choices=["l2", "l1", "elasticnet"])
    parser.add_argument("--dense", action="store_true", help="also on the dense dummies (slow beyond ~500 levels)")
    args = parser.parse_args()
    frame, y = generate(args.levels, args.rows_per_level)
    options = {"loss": "huber", "penalty": args.penalty, "alphas": args.alphas, "cv": args.folds}
    if args.penalty == "elasticnet":
        options["l1_ratio"] = 0.5
    print(f"{len(y)} rows, {args.levels} levels, {args.folds} folds, {args.alphas} alphas, penalty={args.penalty}; "
          f"the one-hot block would be {len(y) * (args.levels + 2) * 8 / 2**20:.0f} MiB")
    encoding.BLOCK_LEVELS = min(encoding.BLOCK_LEVELS, args.levels - 1)  # the column as codes
    codes, seconds, peak = run(frame, y, options)
    print(f"codes: {seconds:8.2f} s  peak {peak / 2**20:7.1f} MiB  passes {codes.cv_report_['passes']}  "
          f"max gap {np.nanmax(codes.dual_gap_path_):.1e}  engine {codes.engine_}")
    if args.dense:
        encoding.BLOCK_LEVELS = encoding.MAX_LEVELS = 10**9
        dense, seconds, peak = run(frame, y, options)
        path = np.max(np.abs(codes.mse_path_ - dense.mse_path_) / np.abs(dense.mse_path_))
        coef = np.max(np.abs(codes.coef_ - dense.coef_)) / np.max(np.abs(dense.coef_))
        print(f"dense: {seconds:8.2f} s  peak {peak / 2**20:7.1f} MiB  passes {dense.cv_report_['passes']}  "
              f"max gap {np.nanmax(dense.dual_gap_path_):.1e}")
        print(f"codes vs dense: validation path {path:.1e}, coefficients {coef:.1e} (relative)")


if __name__ == "__main__":
    main()
