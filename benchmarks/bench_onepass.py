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

    python benchmarks/bench_onepass.py --rows 1000000
    python benchmarks/bench_onepass.py --rows 300000 --formula "y ~ x + C(g) + C(h):x"
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import pandas as pd

from gradfit import GDRegressor
from gradfit.sources import FileSource


def write(path, n, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.choice(["a", "b", "c", "d"], n)
    h = rng.choice(["u", "v", "w"], n)
    x = rng.normal(size=n)
    y = 1 + 2 * x + 1.5 * (g == "b") - (h == "w") + rng.normal(size=n)
    pd.DataFrame({"x": x, "g": g, "h": h, "y": y}).to_csv(path, index=False)


def timed(path, scan_first, formula=None):
    start = time.perf_counter()
    if formula is None:
        source = FileSource(path, "y")
    else:
        from gradfit.sources.formulas import FormulaSource

        source = FormulaSource(path, formula)
    if scan_first:
        source.settle()
    model = GDRegressor().fit(source)
    return time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formula", default=None, help='e.g. "y ~ x + C(g) + C(h):x"')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.csv")
        write(path, args.rows)
        print(f"{args.rows} rows, {os.path.getsize(path) / 1e6:.1f} MB of CSV")
        timed(path, False, args.formula)  # warm-up
        times = {"one pass": [], "scan first": []}
        for _ in range(args.repeats):  # interleaved, so that a change of load hits both
            for name, values in times.items():
                values.append(timed(path, name == "scan first", args.formula)[0])
        one, two = (statistics.median(times[name]) for name in times)
        for name, values in times.items():
            print(f"{name:>10}: median {statistics.median(values):.3f} s  ({', '.join(f'{v:.3f}' for v in values)})")
        print(f"one pass / scan first: {one / two:.2f}x")


if __name__ == "__main__":
    main()
