"""An epoch over a file against an epoch over the same arrays in memory (issue 13: ≤ 1.3×).

For each data shape, a file is written (outside the repository); each source
is prepared for the pass engine (its moments pass, which keeps a file's
columns), and then one epoch's work, the cost and gradient by one pass
(``objective.value_and_grad``), is timed ``--calls`` times in a round, the
sources taking turns for ``--rounds`` rounds (a loaded machine drifts; taking
turns exposes every source to the same drift); the least round is shown.
Sources:

* **arrays**: the NumPy arrays (:class:`~gradfit.sources.ArraySource`);
* **file**: :class:`~gradfit.FileSource` with the default memory budget (the
  needed columns kept in memory after the first pass);
* **file, memory=0**: nothing kept in memory: a CSV file's columns come
  from the binary cache in ``TMPDIR``, a Parquet file is decoded again.

Usage::

    python benchmarks/bench_file_epochs.py --rounds 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd

import gradfit
from gradfit.fitting import prepare
from gradfit.sources import ArraySource, FileSource

SHAPES = [("csv", 442, 10), ("csv", 100_000, 20), ("parquet", 200_000, 50)]


def epoch_seconds(sources, calls, rounds):
    """``{name: seconds}`` of one ``value_and_grad`` pass, the least round, sources taking turns."""
    settings = gradfit.GDRegressor(engine="pass").get_params()
    objectives = {name: prepare(source, settings).objective for name, source in sources.items()}
    best = dict.fromkeys(objectives, np.inf)
    for _ in range(rounds):
        for name, objective in objectives.items():
            params = np.full((objective.engine.n_features + 1, 1), 0.1)
            start = time.perf_counter()
            for _ in range(calls):
                objective.value_and_grad(params)
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"pass engine, one epoch's pass (value_and_grad), least of {args.rounds} rounds taken in turns\n")
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
            sources = {"arrays": ArraySource(X, y[:, None]), "kept": FileSource(path, "y"),
                       "again": FileSource(path, "y", memory=0)}
            calls = 200 if rows < 10_000 else 5
            seconds = epoch_seconds(sources, calls, args.rounds)
            arrays = seconds["arrays"]
            print(f"| {form} | {rows:,} × {features} | {arrays * 1e3:.3f} ms | {seconds['kept'] * 1e3:.3f} ms | "
                  f"{seconds['kept'] / arrays:.2f} | {seconds['again'] * 1e3:.3f} ms | {seconds['again'] / arrays:.2f} |")


if __name__ == "__main__":
    main()
