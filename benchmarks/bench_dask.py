"""Dask on a LocalCluster: time per pass-engine epoch, against the same work in memory.

One pass-engine epoch is one reduction over the data: per block
``r = X w + b − y`` then ``Xᵀr``, merged pairwise on the workers, one
``compute`` per epoch. This script times epochs (a callback stamps the end of
each) of ``GDRegressor(engine="pass")`` with a fixed learning rate (so that no
curvature passes are mixed in) on:

* the same rows as NumPy arrays in this process (the in-memory floor; NumPy
  may use every core here);
* Dask arrays drawn and persisted on a LocalCluster of 1, then 2,
  single-threaded worker processes;

and prints a Markdown table: median seconds per epoch, rows per second, the
ratio to the in-memory epoch, and the speed-up from 1 to 2 workers. It also
checks that the three fits give the same coefficients.

Usage::

    python benchmarks/bench_dask.py [--rows 4000000] [--features 20] [--block-rows 250000] [--epochs 12]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np

from machine import cpu_name, memory_gib  # benchmarks/machine.py, beside this script


class EpochTimer:
    """A training callback: the wall time between consecutive epoch ends."""

    def __init__(self):
        self.stamps = [time.perf_counter()]

    def on_epoch_end(self, epoch, cost, params):
        self.stamps.append(time.perf_counter())

    def epochs(self):
        # The first interval also holds the set-up (the moments pass): left out.
        return np.diff(self.stamps)[1:]


def timed_fit(X, y, epochs):
    from gradfit import GDRegressor

    timer = EpochTimer()
    model = GDRegressor(engine="pass", learning_rate=0.1, epochs=epochs, tol=None)
    model.fit(X, y, callbacks=[timer])
    return model, timer.epochs()


def machine():
    return f"{os.cpu_count()} cores ({cpu_name()}), {memory_gib():.0f} GiB RAM"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--block-rows", type=int, default=250_000)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(0)
    coef = rng.normal(size=args.features)
    scales = rng.uniform(0.5, 5, size=args.features)

    def dataset():
        # Drawn on the workers, as data loaded there would be; the same numbers
        # on every cluster (the seed and the blocks fix them).
        draw = da.random.RandomState(0)
        X = draw.normal(size=(args.rows, args.features), chunks=(args.block_rows, args.features)) * scales
        y = X @ coef + 1.0 + 0.1 * draw.normal(size=args.rows, chunks=args.block_rows)
        return X, y

    print(f"machine: {machine()}; numpy {np.__version__}, dask {dask.__version__}")
    print(f"data: {args.rows:,} rows × {args.features} float64 features "
          f"({args.rows * args.features * 8 / 2**20:.0f} MiB), blocks of {args.block_rows:,} rows; "
          f"{args.epochs} pass-engine epochs, the first left out", flush=True)

    rows, reference = {}, None
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            Xd, yd = client.persist(dataset())
            if reference is None:
                X, y = dask.compute(Xd, yd)
                reference, rows["in memory (NumPy, this process)"] = timed_fit(X, y, args.epochs)
                del X, y
            model, seconds = timed_fit(Xd, yd, args.epochs)
            rows[f"LocalCluster, {workers} worker process{'es' if workers > 1 else ''}"] = seconds
            gap = np.max(np.abs(model.coef_ - reference.coef_) / np.abs(reference.coef_))
            print(f"  {workers} worker(s): coefficients agree with in memory to {gap:.1e} relative", flush=True)

    in_memory = rows["in memory (NumPy, this process)"]
    floor = np.median(in_memory)
    one = np.median(rows["LocalCluster, 1 worker process"])
    print()
    print("| run | median s / epoch | million rows / s | × in-memory time | speed-up over 1 worker |")
    print("|---|---|---|---|---|")
    for name, seconds in rows.items():
        median = np.median(seconds)
        speedup = f"{one / median:.2f} ×" if "LocalCluster" in name else ""
        print(f"| {name} | {median:.3f} | {args.rows / median / 1e6:.1f} | {median / floor:.2f} × | {speedup} |")


if __name__ == "__main__":
    main()
