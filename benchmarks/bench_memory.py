"""Peak memory of streaming a file whatever its layout (issue 13: budget + the libraries' ~300 MB).

Writes files of several layouts (outside the repository, in ``--folder``),
each with about ``--size`` of needed columns as float64, then runs
``python -m gradfit train FILE --target y --quiet --memory BUDGET`` on each in
its own process, and reports its peak resident memory as the operating system
counts it (``wait4``'s ``ru_maxrss``), next to the same for a process that only
imports what ``gradfit train`` imports (the libraries' own footprint):

* **wide**: 500 columns, one file, row groups of 20,000 rows;
* **narrow**: 2 columns (1 feature), one file, row groups of 1,000,000 rows;
* **many small files**: a folder of 200 files of 20 columns;
* **few huge row groups**: one file of 20 columns in one row group;
* **wide CSV**: 200 columns of text.

``--memory 0`` (the default here) keeps nothing in memory: every pass streams
the file (CSV: its first pass, then the binary cache), the case whose memory
must not grow with the layout.

Usage::

    python benchmarks/bench_memory.py --size 256MiB --folder /tmp
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gradfit.sources.columns import parse_size

IMPORTS = "import gradfit.cli, gradfit.fitting, gradfit.report, pyarrow.dataset, pyarrow.csv, scipy.linalg, rich"


def table(rows, columns, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, columns - 1))
    y = X @ rng.normal(size=columns - 1) + rng.normal(size=rows)
    names = [f"x{j}" for j in range(columns - 1)] + ["y"]
    return pa.table(dict(zip(names, list(X.T) + [y])))


def write_layouts(folder, size):
    """``{name: path}`` of files of about ``size`` bytes of float64 columns, written in slices."""
    layouts = {}

    def one_file(name, columns, row_group, parts=1):
        rows = size // (8 * columns)
        path = os.path.join(folder, name)
        if parts == 1:
            with pq.ParquetWriter(path + ".parquet", table(2, columns, 0).schema) as writer:
                for start in range(0, rows, 50_000):
                    writer.write_table(table(min(50_000, rows - start), columns, start), row_group_size=row_group)
            return path + ".parquet"
        os.makedirs(path)
        for part in range(parts):
            pq.write_table(table(rows // parts, columns, part), os.path.join(path, f"part{part:03d}.parquet"))
        return path

    layouts["wide (500 columns)"] = one_file("wide", 500, 20_000)
    layouts["narrow (2 columns)"] = one_file("narrow", 2, 1_000_000)
    layouts["200 small files"] = one_file("many", 20, 1 << 30, parts=200)
    # one row group: a writer's row_group_size caps each write_table call, so write once
    rows = size // (8 * 20)
    path = os.path.join(folder, "huge_group.parquet")
    pq.write_table(table(rows, 20, 7), path, row_group_size=rows)
    layouts["1 huge row group"] = path
    rows = size // (8 * 200) // 4  # text is slow to write: a quarter of the size
    path = os.path.join(folder, "wide.csv")
    data = table(rows, 200, 9)
    import pyarrow.csv as pa_csv

    pa_csv.write_csv(data, path)
    layouts["wide CSV (200 columns, size/4)"] = path
    return layouts


#: run in the measured process: its own high-water mark (VmHWM), written at exit. (``wait4``'s
#: ru_maxrss would count this process's memory too: Linux keeps it across the child's exec.)
MEASURED = """
import os, runpy, sys
def high_water():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM"))
try:
    if sys.argv[1] == "-c":
        exec(sys.argv[2])
    else:  # sys.argv[0] becomes the module's path, the rest are gradfit's arguments
        runpy.run_module("gradfit", run_name="__main__", alter_sys=True)
finally:
    with open(os.environ["GRADFIT_BENCH_PEAK"], "w") as out:
        out.write(str(high_water()))
"""


def peak(arguments):
    """``(seconds, peak RSS in bytes)`` of ``python -m gradfit ARGUMENTS`` (or ``-c CODE``) in its own process."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as record:
        start = time.perf_counter()
        process = subprocess.run([sys.executable, "-c", MEASURED, *arguments], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=dict(os.environ, GRADFIT_BENCH_PEAK=record.name))
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(arguments)} failed: {process.stderr.decode()[-2000:]}")
        return elapsed, int(record.read())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MiB", help="needed columns per layout, as float64")
    parser.add_argument("--memory", default="0", help="gradfit train --memory")
    parser.add_argument("--folder", default=tempfile.gettempdir())
    parser.add_argument("--engine", default="statistics")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    folder = tempfile.mkdtemp(prefix="gradfit-bench-memory-", dir=args.folder)
    try:
        layouts = write_layouts(folder, size)
        _, libraries = peak(["-c", IMPORTS])
        print(f"gradfit train --memory {args.memory} --engine {args.engine}; about {args.size} of needed "
              f"columns per file; libraries alone: {libraries / 2**20:.0f} MiB peak RSS\n")
        print("| layout | file size | seconds | peak RSS | above the libraries |")
        print("|---|---:|---:|---:|---:|")
        for name, path in layouts.items():
            on_disk = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files) \
                if os.path.isdir(path) else os.path.getsize(path)
            command = ["train", path, "--target", "y", "--quiet",
                       "--engine", args.engine, "--memory", args.memory]
            seconds, rss = peak(command)
            print(f"| {name} | {on_disk / 2**20:.0f} MiB | {seconds:.1f} | {rss / 2**20:.0f} MiB | "
                  f"{(rss - libraries) / 2**20:.0f} MiB |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
