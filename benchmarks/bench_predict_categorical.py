"""``gradfit predict`` with a categorical column of many levels: time and peak memory against numbers alone.

Writes the table of ``bench_categorical.py`` (``--rows`` rows, ``--numeric``
features, a text column ``g`` of ``--levels`` levels, ``y``) as Parquet and
CSV (outside the repository), trains two models on it (with ``g``, and
without it: ``--exclude g``), then runs ``gradfit predict`` of each on each
file, each in its own process (peak resident memory from ``wait4``'s
``ru_maxrss``, CPU seconds ``ru_utime + ru_stime``). Above
``gradfit.sources.encoding.BLOCK_LEVELS`` (1000) levels the column is read as
level codes and each row's level coefficient gathered: no dense one-hot block.

Usage::

    python benchmarks/bench_predict_categorical.py --rows 200000 --levels 10000 --numeric 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from bench_categorical import generate  # benchmarks/, beside this script
from bench_parquet import machine, run_measured


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--numeric", type=int, default=2)
    parser.add_argument("--levels", type=int, default=10_000)
    parser.add_argument("--folder", default=tempfile.gettempdir())
    args = parser.parse_args()
    stem = os.path.join(args.folder, f"gradfit-predict-{args.rows}-{args.numeric}-{args.levels}")
    parquet, csv, with_levels, numeric = stem + ".parquet", stem + ".csv", stem + ".model.json", stem + ".num.json"
    output = stem + ".predicted.csv"
    generate(parquet, args.rows, args.numeric, args.levels)
    table = pq.read_table(parquet)
    index = table.schema.get_field_index("g")
    pa_csv.write_csv(table.set_column(index, "g", table["g"].cast(pa.string())), csv)  # levels as text
    results = []
    try:
        gradfit = [sys.executable, "-m", "gradfit"]
        run_measured(gradfit + ["train", parquet, "--target", "y", "-q", "-o", with_levels])
        run_measured(gradfit + ["train", parquet, "--target", "y", "-q", "--exclude", "g", "-o", numeric])
        for data in (csv, parquet):
            for name, model in ((f"+ {args.levels} levels", with_levels), ("numeric only", numeric)):
                measured = run_measured(gradfit + ["predict", model, data, "-o", output])
                results.append((os.path.splitext(data)[1][1:], name, measured))
    finally:
        for name in (parquet, csv, with_levels, numeric, output):
            if os.path.exists(name):
                os.unlink(name)
    print(f"gradfit predict: {args.rows} rows, {args.numeric} numeric features, one column of {args.levels} "
          f"levels; {machine()}")
    print("| file | model | wall s | CPU s | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|")
    for kind, name, result in results:
        print(f"| {kind} | {name} | {result['seconds']:.2f} | {result['cpu']:.2f} | {result['peak'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
