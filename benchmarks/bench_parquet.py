"""A Parquet file larger than memory: ``gradfit train``'s peak memory and throughput.

Generates a Parquet file of the given size (outside the repository), then runs,
each in its own process, timed from start to exit with its peak resident memory
as the operating system reports it (``wait4``'s ``ru_maxrss``):

* **pyarrow**: merely reading the columns gradfit needs, batch by batch
  (``pyarrow.dataset``'s ``to_batches``), touching nothing; the floor;
* **gradfit**: ``python -m gradfit train FILE --target y -o MODEL`` (the default
  engine: the statistics engine, one pass over the file);
* optionally (``--pass-epochs N``) ``gradfit train --engine pass --epochs N``:
  the pass engine re-reads the file every epoch (and for the moments, R² and
  the diagnostics): memory must stay as low.

and prints a Markdown table: seconds, GiB/s of the needed columns, peak RSS,
and gradfit's time over pyarrow's. Targets (issue 5): peak RSS < 2 GiB
whatever the file size, time ≤ 1.3 × pyarrow's.

Usage::

    python benchmarks/bench_parquet.py --size 32GiB --folder /scratch
    python benchmarks/bench_parquet.py --size 2GiB --folder /tmp --pass-epochs 2 --repeat 2

The file is deleted afterwards unless ``--keep`` (a kept file is reused by the
next run with the same size and shape).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from machine import cpu_name, memory_gib  # benchmarks/machine.py, beside this script

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}

# pyarrow's own default (pre_buffer=True) reads ahead without bound (1.4 GiB of
# memory for a 1 GiB file), so the floor reads as gradfit does: without it.
READER = """
import json, sys
import pyarrow.dataset as ds

path, columns = sys.argv[1], sys.argv[2].split(",")
options = ds.ParquetFragmentScanOptions(pre_buffer=False)
rows = 0
for batch in ds.dataset(path, format="parquet").to_batches(
        columns=columns, batch_size=65536, fragment_scan_options=options):
    rows += batch.num_rows
print(json.dumps({"rows": rows}))
"""


def parse_size(text):
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in UNITS:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected e.g. 32GiB, 500MiB, 2GB")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def gib(count):
    return count / 2**30


def generate(path, size, features, group_rows, seed=0):
    """Write about ``size`` bytes of float64 rows ``y = X·coef + 1 + noise`` as row groups.

    A few random tables are built once and written in turn (each row group is
    a distinct random draw only up to that cycle): generating 30 GiB costs
    writing it, not drawing 4·10⁹ random numbers.
    """
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=features)
    names = [f"x{j}" for j in range(features)]
    tables = []
    for _ in range(4):
        # Fortran order: each column contiguous, so Arrow takes it without a copy.
        X = np.asfortranarray(rng.normal(size=(group_rows, features)) * rng.uniform(0.5, 5, size=features))
        y = X @ coef + 1.0 + 0.1 * rng.normal(size=group_rows)
        tables.append(pa.table([pa.array(X[:, j]) for j in range(features)] + [pa.array(y)], names=names + ["y"]))
    groups = max(1, -(-size // (group_rows * (features + 1) * 8)))
    start = time.perf_counter()
    # No dictionary pages: random floats have no repeats, and trying costs time.
    with pq.ParquetWriter(path, tables[0].schema, use_dictionary=False) as writer:
        for group in range(groups):
            writer.write_table(tables[group % len(tables)], row_group_size=group_rows)
    return coef, groups * group_rows, time.perf_counter() - start


def run_measured(command):
    """``command`` in a fresh wrapper whose RUSAGE_CHILDREN is that command's alone: wall, CPU, peak RSS."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "seconds = time.perf_counter() - start\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'seconds': seconds, 'cpu': usage.ru_utime + usage.ru_stime, "
        "'peak': usage.ru_maxrss * 1024, 'code': done.returncode, 'out': done.stdout, 'err': done.stderr}))\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["code"] != 0:
        raise SystemExit(f"command failed ({result['code']}): {' '.join(command)}\n{result['err']}")
    return result


def machine():
    return (f"{os.cpu_count()} cores ({cpu_name()}), {memory_gib():.0f} GiB RAM, "
            f"Python {platform.python_version()}, pyarrow {pa.__version__}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("2GiB"), help="file size, e.g. 32GiB")
    parser.add_argument("--folder", default=os.environ.get("TMPDIR", "/tmp"), help="where to write the file")
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--row-group-rows", type=int, default=1 << 20)
    parser.add_argument("--pass-epochs", type=int, default=0, help="also run the pass engine for N epochs")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command (interleaved)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    args = parser.parse_args(argv)

    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.abspath(args.folder)
    if os.path.commonpath([folder, repository]) == repository:
        parser.error(f"--folder {folder} is inside the repository; give a folder outside it")
    path = os.path.join(folder, f"gradfit-bench-{args.size}-{args.features}.parquet")
    model = os.path.join(folder, f"gradfit-bench-{os.getpid()}.json")
    pass_model = os.path.join(folder, f"gradfit-bench-{os.getpid()}-pass.json")
    columns = [f"x{j}" for j in range(args.features)] + ["y"]
    print(f"machine: {machine()}", flush=True)
    try:
        if os.path.exists(path):
            coef = None
            rows = pq.ParquetFile(path).metadata.num_rows
            print(f"reusing {path}", flush=True)
        else:
            print(f"writing {gib(args.size):.1f} GiB to {path} ...", flush=True)
            coef, rows, seconds = generate(path, args.size, args.features, args.row_group_rows)
            print(f"  {rows:,} rows in {seconds:.0f} s ({gib(os.path.getsize(path)) / seconds:.2f} GiB/s)", flush=True)
        size = os.path.getsize(path)
        needed = rows * len(columns) * 8
        commands = {
            "pyarrow: read the columns": [sys.executable, "-c", READER, path, ",".join(columns)],
            "gradfit train (statistics engine)": [
                sys.executable, "-m", "gradfit", "train", path, "--target", "y", "-o", model, "--quiet"],
        }
        if args.pass_epochs:
            commands[f"gradfit train --engine pass --epochs {args.pass_epochs} (re-reads the file)"] = [
                sys.executable, "-m", "gradfit", "train", path, "--target", "y", "-o", pass_model, "--quiet",
                "--engine", "pass", "--epochs", str(args.pass_epochs), "--lr", "0.1", "--tol", "none"]
        results = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                print(f"running {name} ...", flush=True)
                results[name].append(run_measured(command))
                print(f"  {results[name][-1]['seconds']:.1f} s, peak RSS "
                      f"{results[name][-1]['peak'] / 2**20:.0f} MiB", flush=True)
        if coef is not None:
            with open(model) as handle:
                fitted = np.asarray(json.load(handle)["coef"][0])
            print(f"max |coef − true coef| of the statistics fit: {np.max(np.abs(fitted - coef)):.2e}")
        floor = min(r["seconds"] for r in results["pyarrow: read the columns"])
        print()
        print(f"File: {gib(size):.2f} GiB, {rows:,} rows × {len(columns)} float64 columns "
              f"(row groups of {args.row_group_rows:,} rows, snappy); needed columns {gib(needed):.2f} GiB.")
        print()
        print("| run | seconds (best; all runs) | GiB/s of needed columns | peak RSS | time / pyarrow's |")
        print("|---|---|---|---|---|")
        for name, runs in results.items():
            best = min(r["seconds"] for r in runs)
            every = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            # The pass engine reads the file more than once (its epochs, the
            # moments, R², diagnostics): its rate would mean nothing.
            rate = "—" if "engine pass" in name else f"{gib(needed) / best:.2f}"
            print(f"| {name} | {best:.1f} ({every}) | {rate} | "
                  f"{max(r['peak'] for r in runs) / 2**20:.0f} MiB | {best / floor:.2f} × |")
    finally:
        for written in (model, pass_model):
            if os.path.exists(written):
                os.unlink(written)
        if not args.keep and os.path.exists(path):
            os.unlink(path)
            print(f"\ndeleted {path}")


if __name__ == "__main__":
    main()
