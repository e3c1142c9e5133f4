"""Cross-validated penalties: gradfit's GDRegressorCV against scikit-learn's (and glum's) CV estimators.

Each run happens in its own process, on the same data (generated from one
seed) and the same folds (gradfit's hashed folds, given to scikit-learn as a
list of index pairs), and reports the fit's wall time and its peak memory over
the data already in memory and the libraries loaded (``ru_maxrss`` minus the
resident size before the fit). The grid: ``--folds`` folds × ``--alphas`` alphas × 3 l1 ratios
(0.1, 0.5, 0.9) for the elastic net; the same folds and counts for the lasso and
ridge. scikit-learn runs with its defaults (``tol=1e-4``, ``precompute="auto"``);
gradfit solves every path point to a duality gap of ``1e-12 · var(y)``.

``--parquet`` also writes the data to a Parquet file and times, each from the
file, a plain ``GDRegressor`` fit (one statistics pass) against
``GDRegressorCV`` (one pass for all the folds): the issue's target is CV within
1.5 × the plain fit.

Usage::

    python benchmarks/bench_cv.py              # N = 1e6, d = 100, 5 folds x 100 alphas x 3 l1 ratios
    python benchmarks/bench_cv.py --small      # N = 2e4, d = 50: a quick run
    python benchmarks/bench_cv.py --small --parquet /tmp
    python benchmarks/bench_cv.py --small --threads 1   # a shared, loaded machine: every run on one core
    python benchmarks/bench_cv.py --huber --n 20000 --d 20 --folds 5 --alphas 10   # Huber CV vs separate fits

``--huber`` times ``GDRegressorCV(loss="huber", penalty="l2")`` (every pass
serves all the folds and the all-rows problem) against what a user would
otherwise run: for each fold, ``GDRegressor(loss="huber")`` on its training
rows at every alpha of the same grid (warm-started down the grid), then the
final fit; both count the passes over the data (chunk reads) and report the
largest difference of the CV curves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

from machine import cpu_name, memory_gib  # benchmarks/machine.py, beside this script

L1_RATIOS = [0.1, 0.5, 0.9]


def make_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
    coef = rng.normal(size=d) * (rng.uniform(size=d) < 0.3)  # sparse truth: the lasso has work to do
    y = X @ coef + 2.0 + 3.0 * rng.normal(size=n)
    return X, y


def _rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(name, n, d, folds, alphas, parquet, repeat):
    """In a child process: fit ``name`` and print ``{"seconds", "extra_bytes", ...}`` as JSON.

    gradfit's fits run ``repeat`` times and the best time is kept (the first
    pays for imports and Numba's cache); scikit-learn's run once.
    """
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from gradfit.folds import split

    X, y = make_data(n, d)
    splits = split(n, folds, seed=0)
    # libraries loaded before the baseline: the memory reported is the fit's, not Numba's or LLVM's (~130 MiB)
    import sklearn.linear_model  # noqa: F401

    from gradfit.alpha_path import compiled_kernel

    compiled_kernel()
    before = _rss_bytes()
    best = None
    for _ in range(repeat if "gradfit" in name or "GDRegressor" in name else 1):
        result = _fit_once(name, X, y, n, d, folds, alphas, parquet, splits)
        best = result if best is None or result["seconds"] < best["seconds"] else best
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({**best, "extra_bytes": max(peak - before, 0)}))


def _fit_once(name, X, y, n, d, folds, alphas, parquet, splits):
    import gradfit

    start = time.perf_counter()
    extra = {}
    if name.startswith("gradfit"):
        penalty = {"gradfit ElasticNetCV": "elasticnet", "gradfit LassoCV": "l1", "gradfit RidgeCV": "l2"}[name]
        model = gradfit.GDRegressorCV(penalty=penalty, l1_ratio=L1_RATIOS, alphas=alphas, cv=folds, random_state=0)
        model.fit(X, y)
        extra = {"alpha": model.alpha_}
    elif name == "sklearn ElasticNetCV":
        from sklearn.linear_model import ElasticNetCV

        model = ElasticNetCV(l1_ratio=L1_RATIOS, alphas=alphas, cv=splits).fit(X, y)
        extra = {"alpha": 2 * model.alpha_}
    elif name == "sklearn LassoCV":
        from sklearn.linear_model import LassoCV

        model = LassoCV(alphas=alphas, cv=splits).fit(X, y)
        extra = {"alpha": 2 * model.alpha_}
    elif name == "sklearn RidgeCV":
        from sklearn.linear_model import RidgeCV

        grid = np.geomspace(1e-3, 1e3, alphas) * n
        model = RidgeCV(alphas=grid, cv=splits, scoring="neg_mean_squared_error").fit(X, y)
    elif name == "glum GeneralizedLinearRegressorCV":
        from glum import GeneralizedLinearRegressorCV

        model = GeneralizedLinearRegressorCV(l1_ratio=L1_RATIOS, n_alphas=alphas, cv=splits).fit(X, y)
    elif name in ("file: GDRegressor", "file: GDRegressorCV"):
        path = os.path.join(parquet, f"bench_cv_{n}_{d}.parquet")
        if name == "file: GDRegressor":
            model = gradfit.GDRegressor(penalty="elasticnet", alpha=0.01).fit(path, "y")
        else:
            model = gradfit.GDRegressorCV(penalty="elasticnet", l1_ratio=L1_RATIOS, alphas=alphas,
                                          cv=folds).fit(path, "y")
    return {"seconds": time.perf_counter() - start, **extra}


def huber_main(n, d, folds, alphas, threads):
    """``--huber``: Huber CV through shared passes against ``folds × alphas`` separate fits (in this process)."""
    if threads:
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import gradfit
    from gradfit.folds import split

    class Counting(gradfit.ArraySource):
        reads = 0

        def chunks(self):
            Counting.reads += 1
            yield from super().chunks()

    rng = np.random.default_rng(0)
    X, y = make_data(n, d)
    y = y + rng.standard_t(2, size=n)  # heavy tails: what Huber is for
    # imports (scikit-learn, SciPy) paid before either clock starts
    gradfit.GDRegressorCV(loss="huber", penalty="l2", alphas=2, cv=2).fit(X[:50], y[:50])
    gradfit.GDRegressor(loss="huber", penalty="l2").fit(X[:50], y[:50])
    print(f"N = {n}, d = {d}: Huber, L2, {folds} folds x {alphas} alphas; {cpu_name()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    Counting.reads = 0
    start = time.perf_counter()
    model = gradfit.GDRegressorCV(loss="huber", penalty="l2", alphas=alphas, cv=folds).fit(Counting(X, y[:, None]))
    shared = time.perf_counter() - start, Counting.reads
    Counting.reads = 0
    start = time.perf_counter()
    curve = np.empty((alphas, folds))
    for f, (train, test) in enumerate(split(n, folds)):
        separate = gradfit.GDRegressor(loss="huber", penalty="l2", warm_start=True)
        for a, alpha in enumerate(model.alphas_):
            separate.set_params(alpha=alpha).fit(Counting(X[train], y[train, None]))
            r = np.abs(separate.predict(X[test]) - y[test])
            eps = separate.epsilon
            curve[a, f] = np.mean(np.where(r <= eps, r * r, 2 * eps * r - eps * eps))
    gradfit.GDRegressor(loss="huber", penalty="l2", alpha=model.alpha_).fit(Counting(X, y[:, None]))
    apart = time.perf_counter() - start, Counting.reads
    print()
    print("| fit | seconds | passes over the data |")
    print("|---|---:|---:|")
    print(f"| GDRegressorCV(loss='huber'): all folds per pass | {shared[0]:.2f} | {shared[1]} |")
    print(f"| {folds} x {alphas} separate GDRegressor(loss='huber') fits + final | {apart[0]:.2f} | {apart[1]} |")
    print(f"\nratio: {apart[0] / shared[0]:.1f} x the time, {apart[1] / shared[1]:.1f} x the passes; "
          f"CV curves differ by at most {np.max(np.abs(curve - model.mse_path_) / model.mse_path_):.1e} (relative)")


def write_parquet(folder, n, d):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(folder, f"bench_cv_{n}_{d}.parquet")
    X, y = make_data(n, d)
    columns = {f"x{j}": X[:, j] for j in range(d)}
    columns["y"] = y
    pq.write_table(pa.table(columns), path, row_group_size=65536)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="N = 2e4, d = 50")
    parser.add_argument("--n", type=int)
    parser.add_argument("--d", type=int)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--alphas", type=int, default=100)
    parser.add_argument("--parquet", metavar="FOLDER", help="also time CV against a plain fit from a Parquet file here")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--repeat", type=int, default=2, help="gradfit's fits: best of this many (default 2)")
    parser.add_argument("--threads", type=int,
                        help="BLAS threads of every run (OPENBLAS/OMP/MKL_NUM_THREADS; gradfit's chunk threads follow)")
    parser.add_argument("--huber", action="store_true",
                        help="Huber CV (shared passes) against folds x alphas separate fits; small N only")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.n or (20_000 if args.small else 1_000_000)
    d = args.d or (50 if args.small else 100)
    if args.huber:
        huber_main(n, d, args.folds, args.alphas, args.threads)
        return
    if args.run:
        run_one(args.run, n, d, args.folds, args.alphas, args.parquet, args.repeat)
        return
    names = ["gradfit ElasticNetCV", "sklearn ElasticNetCV", "gradfit LassoCV", "sklearn LassoCV",
             "gradfit RidgeCV", "sklearn RidgeCV"]
    try:
        import glum  # noqa: F401

        names.append("glum GeneralizedLinearRegressorCV")
    except ImportError:
        print("(glum is not installed: its CV estimator is left out)")
    parquet_path = None
    if args.parquet:
        parquet_path = write_parquet(args.parquet, n, d)
        names += ["file: GDRegressor", "file: GDRegressorCV"]
    names = [name for name in names if name not in args.skip.split(",")]
    print(f"N = {n}, d = {d}: {args.folds} folds x {args.alphas} alphas (x {len(L1_RATIOS)} l1 ratios for the "
          f"elastic net); {cpu_name()}, {os.cpu_count()} CPUs, {memory_gib():.0f} GiB, Python {platform.python_version()}")
    pairs = {"sklearn ElasticNetCV": "gradfit ElasticNetCV", "sklearn LassoCV": "gradfit LassoCV",
             "sklearn RidgeCV": "gradfit RidgeCV", "glum GeneralizedLinearRegressorCV": "gradfit ElasticNetCV",
             "file: GDRegressorCV": "file: GDRegressor"}
    print()
    print("| fit | seconds | peak memory over the data (MiB) | time / gradfit's |")
    print("|---|---:|---:|---:|", flush=True)
    results = {}
    try:
        for name in names:  # each row as soon as it is measured
            command = [sys.executable, os.path.abspath(__file__), "--run", name, "--n", str(n), "--d", str(d),
                       "--folds", str(args.folds), "--alphas", str(args.alphas), "--repeat", str(args.repeat)]
            if args.parquet:
                command += ["--parquet", args.parquet]
            environment = dict(os.environ)
            if args.threads:
                for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                    environment[variable] = str(args.threads)
            done = subprocess.run(command, capture_output=True, text=True, env=environment)
            if done.returncode != 0:
                lines = done.stderr.strip().splitlines()
                print(f"| {name} | failed: {lines[-1] if lines else done.returncode} | | |", flush=True)
                continue
            result = results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            base = results.get(pairs.get(name))
            ratio = f"{result['seconds'] / base['seconds']:.1f} ×" if base else ""
            print(f"| {name} | {result['seconds']:.2f} | {result['extra_bytes'] / 2**20:.0f} | {ratio} |", flush=True)
    finally:
        if parquet_path:
            os.remove(parquet_path)

if __name__ == "__main__":
    main()
