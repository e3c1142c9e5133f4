"""Peak memory and time of ``GDRegressor().fit`` on pandas DataFrames with categorical columns.

A frame's categorical dummies are made chunk by chunk (:class:`gradfit.sources.frames.FrameSource`),
never for the whole frame at once. Each case runs in a fresh process (so the
peak RSS is its own): the frame is built, then fitted once; printed are the
peak RSS (``ru_maxrss``) before and after the fit, NumPy's traced peak during
the fit (``tracemalloc``), and the fit's time. ``--tree PATH`` (repeatable)
runs every case with that source tree first on ``PYTHONPATH`` (e.g. the
commit before, checked out elsewhere), to compare::

    python benchmarks/bench_frame_chunks.py --tree /path/to/before --tree .
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = {
    "numeric only (missing='drop'), 300k × 6": dict(n=300_000, levels=[], numeric=6),
    "900-level string + 5 numeric, 300k": dict(n=300_000, levels=[900], numeric=5),
    "5000 + 3000 levels, 100k": dict(n=100_000, levels=[5000, 3000], numeric=0),
}

CHILD = r"""
import json, resource, sys, time, tracemalloc, warnings
import numpy as np, pandas as pd
warnings.simplefilter("ignore")
import gradfit
from gradfit import GDRegressor
case = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
n = case["n"]
columns = {f"x{j}": rng.normal(size=n) for j in range(case["numeric"])}
y = rng.normal(size=n)
for k, levels in enumerate(case["levels"]):
    codes = rng.integers(0, levels, n)
    codes[:levels] = np.arange(levels)
    columns[f"g{k}"] = pd.Series(codes).map(("L%05d" % k + "_{:05d}").format)
    y = y + rng.normal(size=levels)[codes]
frame = pd.DataFrame(columns)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.perf_counter()
model = GDRegressor(missing="drop").fit(frame, y)
seconds = time.perf_counter() - start
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tree": gradfit.__file__, "seconds": seconds, "rss_before_mb": before / 1024,
                  "rss_after_mb": after / 1024, "traced_mb": traced / 2**20, "features": len(model.coef_)}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", help="a gradfit source tree to run (default: this one)")
    parser.add_argument("--cases", default=",".join(str(i) for i in range(len(CASES))),
                        help="which cases, by number (0,1,2)")
    args = parser.parse_args()
    trees = args.tree or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    print("| case | tree | fit (s) | peak RSS before fit (MB) | peak RSS after fit (MB) | traced peak in fit (MB) |")
    print("|---|---|---:|---:|---:|---:|")
    for i, (name, case) in enumerate(CASES.items()):
        if str(i) not in args.cases.split(","):
            continue
        for tree in trees:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))  # run from /: not this folder first on the path
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], env=env, capture_output=True, cwd="/",
                                 text=True)
            if out.returncode:
                print(f"| {name} | {tree} | failed: {out.stderr.strip().splitlines()[-1]} | | | |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {name} | {os.path.dirname(os.path.dirname(r['tree']))} | {r['seconds']:.2f} | {r['rss_before_mb']:.0f} | {r['rss_after_mb']:.0f} "
                  f"| {r['traced_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
