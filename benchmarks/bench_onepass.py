"""A CSV with categories read once: levels learned in the statistics pass against a scan first (issue 14).

Writes a CSV of N rows (a numeric feature, two text columns of 4 and 3
levels, the target) and times, in the same run, the default squared-error
fit of it

* as it runs now: the levels learned in the statistics pass (one read),
* as before: the same source's levels learned by a scan of their own first
  (:meth:`gradfit.sources.FileSource.settle`), then the statistics pass,

the median of ``--repeats`` fits each, after a warm-up fit (imports, Numba).
``--formula "y ~ x + C(g) + C(h):x"``: the same through a formula
(:class:`~gradfit.sources.formulas.FormulaSource`: its model spec learned in
the statistics pass, :mod:`gradfit.engines.formula_levels`, against
:meth:`~gradfit.sources.formulas.FormulaSource.settle` first).
``--levels L`` gives the first text column ``L`` levels: above 1000
(``BLOCK_LEVELS``) it is kept as level codes, and its blocks come from the
same pass (:mod:`gradfit.engines.level_cells`), against a scan first and then
the blocks' pass (:func:`gradfit.engines.categorical.accumulate_blocks`).

    python benchmarks/bench_onepass.py --rows 1000000
    python benchmarks/bench_onepass.py --rows 300000 --formula "y ~ x + C(g) + C(h):x"
    python benchmarks/bench_onepass.py --rows 300000 --levels 5000
    python benchmarks/bench_onepass.py --rows 300000 --levels 5000 --dask

``--cv K``: cross-validation instead (``GDRegressorCV(penalty="l2",
alphas=10, cv=K)``): the levels learned in the folds' pass
(:mod:`gradfit.engines.fold_cells`, one read) against a scan first, then
the folds' pass.

    python benchmarks/bench_onepass.py --rows 300000 --cv 5
    python benchmarks/bench_onepass.py --rows 300000 --levels 2000 --cv 5

``--dask``: the file read by Dask's workers (``DaskSource.from_file``, a local
cluster of two worker processes), the statistics from the compute that
learns the levels (:mod:`gradfit.sources.dask.file_levels`) against a
compute of their own after it ("scan first": what every Dask file fit did before).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import pandas as pd

from gradfit import GDRegressor, GDRegressorCV
from gradfit.sources import FileSource


def write(path, n, levels=4, seed=0):
    rng = np.random.default_rng(seed)
    names = np.array(["a", "b", "c", "d"] if levels == 4 else [f"g{i:06d}" for i in range(levels)])
    code = rng.integers(0, levels, n)
    g = names[code]
    h = rng.choice(["u", "v", "w"], n)
    x = rng.normal(size=n)
    y = 1 + 2 * x + 1.5 * (code == 1) + rng.normal(size=levels)[code] * (levels > 4) - (h == "w") + rng.normal(size=n)
    pd.DataFrame({"x": x, "g": g, "h": h, "y": y}).to_csv(path, index=False)


def timed(path, scan_first, formula=None, dask=False, cv=None):
    start = time.perf_counter()
    if cv is not None:
        source = FileSource(path, "y")
        if scan_first:
            source.settle()
        GDRegressorCV(penalty="l2", alphas=10, cv=cv).fit(source)
        return time.perf_counter() - start, None
    if dask:  # the workers learn the levels and, in the same compute, the statistics
        from gradfit.sources import DaskSource

        source = DaskSource.from_file(path, "y")
        if scan_first:  # as before: the levels' compute, then the statistics' own
            source.__dict__.pop("learned_statistics", None)
        return _fit_time(source, start)
    if formula is None:
        source = FileSource(path, "y")
    else:
        from gradfit.sources.formulas import FormulaSource

        source = FormulaSource(path, formula)
    if scan_first:
        source.settle()
    return _fit_time(source, start)


def _fit_time(source, start):
    model = GDRegressor().fit(source)
    return time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formula", default=None, help='e.g. "y ~ x + C(g) + C(h):x"')
    parser.add_argument("--levels", type=int, default=4, help="levels of the text column g")
    parser.add_argument("--cv", type=int, default=None, help="GDRegressorCV with this many folds")
    parser.add_argument("--dask", action="store_true",
                        help="DaskSource.from_file on a local cluster (2 worker processes): the statistics from the "
                             "compute that learns the levels, against a compute of their own after it")
    args = parser.parse_args()
    cluster = None
    if args.dask:
        import distributed

        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address="127.0.0.1:0", silence_logs=50)
        client = distributed.Client(cluster)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.csv")
        write(path, args.rows, args.levels)
        print(f"{args.rows} rows, g of {args.levels} levels, {os.path.getsize(path) / 1e6:.1f} MB of CSV")
        timed(path, False, args.formula, args.dask, args.cv)  # warm-up
        times = {"one pass": [], "scan first": []}
        for _ in range(args.repeats):  # interleaved, so that a change of load hits both
            for name, values in times.items():
                values.append(timed(path, name == "scan first", args.formula, args.dask, args.cv)[0])
        one, two = (statistics.median(times[name]) for name in times)
        for name, values in times.items():
            print(f"{name:>10}: median {statistics.median(values):.3f} s  ({', '.join(f'{v:.3f}' for v in values)})")
        print(f"one pass / scan first: {one / two:.2f}x")
    if cluster is not None:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
