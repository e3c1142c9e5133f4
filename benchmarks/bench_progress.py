"""What showing progress costs: ``gradfit train`` quiet, in a pipe, and on a terminal, in one run.

The same fit (a small CSV, the pass engine, many epochs: the case where an
epoch is cheapest and a redraw dearest) is run as a subprocess three ways,
alternating, ``--repeat`` times each, and the median wall time is shown:

* **quiet**: ``--quiet``;
* **pipe**: progress to a pipe (the thinned ``Epoch: i Cost: c`` lines);
* **pty**: progress to a pseudo-terminal (the live rich bar), drained by
  this process as a terminal would be.

Target (issue 13): pipe and pty within 1.05 × quiet.

Usage::

    python benchmarks/bench_progress.py --rows 442 --epochs 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def write_csv(path, rows, features=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    y = X @ rng.normal(size=features) + 0.1 * rng.normal(size=rows)
    header = ",".join([f"x{j}" for j in range(features)] + ["y"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.17g")


def run(command, how):
    """Seconds from start to exit of ``command``, its progress going ``how``."""
    env = dict(os.environ, COLUMNS="100")
    if how == "pty":
        master, slave = pty.openpty()
        drained = []

        def drain():
            while True:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:
                    return
                if not data:
                    return
                drained.append(len(data))

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        start = time.perf_counter()
        process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env)
        code = process.wait()
        elapsed = time.perf_counter() - start
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    else:
        start = time.perf_counter()
        process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        elapsed = time.perf_counter() - start
        code = process.returncode
    if code != 0:
        raise SystemExit(f"{' '.join(command)} ({how}) failed with exit code {code}")
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=442)
    parser.add_argument("--epochs", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "data.csv")
        write_csv(path, args.rows)
        base = [sys.executable, "-m", "gradfit", "train", path, "--target", "y", "--engine", "pass",
                "--epochs", str(args.epochs), "--tol", "none"]
        times = {"quiet": [], "pipe": [], "pty": []}
        for _ in range(args.repeat):
            for how in times:
                command = base + (["--quiet"] if how == "quiet" else [])
                times[how].append(run(command, "pipe" if how == "quiet" else how))
    quiet = statistics.median(times["quiet"])
    print(f"gradfit train, {args.rows} rows x 10 features (CSV), pass engine, {args.epochs} epochs; "
          f"median of {args.repeat}\n")
    print("| progress | seconds | × quiet |")
    print("|---|---:|---:|")
    for how, values in times.items():
        median = statistics.median(values)
        print(f"| {how} | {median:.2f} | {median / quiet:.3f} |")


if __name__ == "__main__":
    main()
