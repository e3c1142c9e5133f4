"""Start-up of the command line: ``gradfit --help``, ``inspect`` and ``predict`` against ``import numpy``.

Issue 12 asks ``gradfit --help`` to run within 2x the time of
``python -c "import numpy"``. Each command runs ``--runs`` times in a fresh
interpreter: the medians of its wall time and of its CPU time (user +
system; steadier than wall time on a loaded machine); ``predict`` and
``inspect`` use a model trained here on a small CSV file (200 rows x 3
features, also as Parquet).

    PYTHONPATH=. python benchmarks/bench_startup.py [--runs 10]

The gradfit measured is the one ``python -c "import gradfit"`` finds (set
PYTHONPATH to compare trees). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def median_seconds(argv, runs):
    """Median wall time and median CPU time (user + system) of ``argv``, each run a new process."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    gradfit = [sys.executable, "-m", "gradfit"]
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 3))
        y = X @ [1.0, 2.0, 3.0] + 0.5 + 0.1 * rng.normal(size=200)
        csv = os.path.join(folder, "data.csv")
        np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="", fmt="%.17g")
        model = os.path.join(folder, "model.json")
        subprocess.run([*gradfit, "train", csv, "--target", "y", "-o", model, "-q"], check=True,
                       stdout=subprocess.DEVNULL)
        import pyarrow.csv
        import pyarrow.parquet

        parquet = os.path.join(folder, "data.parquet")
        pyarrow.parquet.write_table(pyarrow.csv.read_csv(csv), parquet)
        rows = [
            ('python -c "import numpy"', [sys.executable, "-c", "import numpy"]),
            ("gradfit --help", [*gradfit, "--help"]),
            ("gradfit inspect MODEL", [*gradfit, "inspect", model]),
            ("gradfit predict MODEL data.csv", [*gradfit, "predict", model, csv]),
            ("gradfit predict MODEL data.parquet", [*gradfit, "predict", model, parquet]),
        ]
        base = None
        print(f"{'command':<38}{'wall s':>8}{'x numpy':>9}{'CPU s':>8}{'x numpy':>9}   (medians of {runs} runs)")
        for label, argv in rows:
            wall, cpu = median_seconds(argv, runs)
            base = base or (wall, cpu)
            print(f"{label:<38}{wall:>8.3f}{wall / base[0]:>9.2f}{cpu:>8.3f}{cpu / base[1]:>9.2f}")


if __name__ == "__main__":
    main()
