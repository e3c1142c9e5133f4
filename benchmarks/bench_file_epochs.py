"""An epoch over a file against an epoch over the same arrays in memory (issue 13: ≤ 1.3×).

For each data shape, a file is written (outside the repository) and fitted
with the pass engine in this process, twice (``--short`` and ``--long``
epochs, ``tol=None``): the difference over the difference in epochs is the
cost of one epoch, set-up excluded. Sources:

* **arrays**: the NumPy arrays (:class:`~gradfit.sources.ArraySource`);
* **file**: :class:`~gradfit.FileSource` with the default memory budget (the
  needed columns kept in memory after the first pass);
* **file, memory=0**: nothing kept in memory: a CSV file's columns come
  from the binary cache in ``TMPDIR``, a Parquet file is decoded again.

Usage::

    python benchmarks/bench_file_epochs.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd

import gradfit
from gradfit.fitting import fit_source
from gradfit.sources import ArraySource, FileSource

SHAPES = [("csv", 442, 10), ("csv", 100_000, 20), ("parquet", 200_000, 50)]


def seconds_per_epoch(make_source, short, long, repeat):
    """The least over ``repeat`` tries (a shared machine only ever adds time)."""
    best = {}
    for _ in range(repeat):
        for epochs in (short, long):
            source = make_source()
            settings = gradfit.GDRegressor(engine="pass", epochs=epochs, tol=None).get_params()
            start = time.perf_counter()
            fit_source(source, settings)
            best[epochs] = min(best.get(epochs, np.inf), time.perf_counter() - start)
    return (best[long] - best[short]) / (long - short)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long", type=int, default=220)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"pass engine, seconds an epoch from fits of {args.short} and {args.long} epochs "
          f"(× 20 for small files), least of {args.repeat}\n")
    print("| file | rows × features | arrays | file (kept in memory) | × arrays | file, memory=0 | × arrays |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for form, rows, features in SHAPES:
            X = rng.normal(size=(rows, features))
            y = X @ rng.normal(size=features) + rng.normal(size=rows)
            frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(features)]).assign(y=y)
            path = os.path.join(folder, f"data.{form}")
            frame.to_csv(path, index=False) if form == "csv" else frame.to_parquet(path, index=False)
            scale = 20 if rows < 10_000 else 1  # small files: more epochs, for time enough to measure
            short, long = args.short * scale, args.long * scale
            arrays = seconds_per_epoch(lambda: ArraySource(X, y[:, None]), short, long, args.repeat)
            kept = seconds_per_epoch(lambda: FileSource(path, "y"), short, long, args.repeat)
            again = seconds_per_epoch(lambda: FileSource(path, "y", memory=0), short, long, args.repeat)
            print(f"| {form} | {rows:,} × {features} | {arrays * 1e3:.3f} ms | {kept * 1e3:.3f} ms | "
                  f"{kept / arrays:.2f} | {again * 1e3:.3f} ms | {again / arrays:.2f} |")


if __name__ == "__main__":
    main()
