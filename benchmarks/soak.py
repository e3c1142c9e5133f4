"""Soak: many fits and predictions back to back, and whether the process's memory grows.

Not a test (pytest never collects it: it lives outside ``tests/``). It runs, for
a given time or number of rounds, a mixed workload in one process:

* arrays in memory of several shapes, float64 and float32, single and multi-output;
* CSV and Parquet files (and a folder of Parquet files) through ``gradfit.FileSource``;
* both engines (statistics, pass), the optimizers gd, momentum, nesterov, adam
  and cg, minibatches (the file row cache), the Huber loss and an L2 penalty,
  ``partial_fit``;
* the command line in-process (``gradfit train``, ``predict``, ``inspect``) and
  a model file's save and load;

and every ``--sample-every`` rounds it samples the resident memory (``VmRSS``
from ``/proc/self/status``; the peak from ``resource`` where there is no
``/proc``), the open file descriptors and the threads. At the end it prints a
table of the samples and compares the median memory of the second half of the
run with that of the first (after a warm-up, which the allocator, imports and
thread pools take); it exits 1 if memory grew by more than ``--threshold-mib``
or file descriptors or threads grew at all, else 0.

Usage::

    python benchmarks/soak.py --seconds 300
    python benchmarks/soak.py --rounds 200 --sample-every 10 --threshold-mib 10
    python benchmarks/soak.py --seconds 60 --leak-kib 256   # a planted leak: must exit 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import warnings

import numpy as np
import pandas as pd

import gradfit
from gradfit import FileSource, GDRegressor
from gradfit.cli import main as cli

# -- what the process holds -------------------------------------------------------------


def resident_mib():
    """Current resident memory in MiB (the peak, where the system has no /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def open_descriptors():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def sample(round_, start):
    return {
        "round": round_, "seconds": time.perf_counter() - start, "rss": resident_mib(),
        "fds": open_descriptors(), "threads": threading.active_count(),
    }


# -- the workload ----------------------------------------------------------------------


def regression(rng, n, d, k=1, dtype=np.float64):
    X = (rng.normal(size=(n, d)) * rng.uniform(0.5, 5, size=d) + rng.normal(size=d)).astype(dtype)
    Y = X.astype(float) @ rng.normal(size=(d, k)) + 1.5 + 0.1 * rng.normal(size=(n, k))
    return X, (Y[:, 0] if k == 1 else Y)


def write_files(folder, rng):
    """The files the workload reads: a CSV, a Parquet file and a folder of Parquet files."""
    X, Y = regression(rng, 3000, 6, k=2)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(6)]).assign(y0=Y[:, 0], y1=Y[:, 1])
    frame["w"] = rng.uniform(0.5, 2.0, size=len(frame))
    paths = {"csv": os.path.join(folder, "data.csv"), "parquet": os.path.join(folder, "data.parquet"),
             "folder": os.path.join(folder, "parts")}
    frame.to_csv(paths["csv"], index=False)
    frame.astype({f"x{j}": np.float32 for j in range(6)}).to_parquet(paths["parquet"], index=False)
    os.makedirs(paths["folder"])
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[rows].to_parquet(os.path.join(paths["folder"], f"part{i}.parquet"), index=False)
    return paths


def quietly(function, *args, **kwargs):
    """Run ``function`` with stdout and stderr swallowed (the CLI prints)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return function(*args, **kwargs)


def arrays_case(rng, settings, n, d, k, dtype):
    X, y = regression(rng, n, d, k, dtype)
    model = GDRegressor(**settings).fit(X, y)
    prediction = model.predict(X)
    assert np.all(np.isfinite(prediction))


def file_case(rng, paths, kind, settings, targets):
    source = FileSource(paths[kind], target=targets, sample_weight="w" if rng.random() < 0.5 else None)
    model = GDRegressor(**settings).fit(source)
    assert np.all(np.isfinite(model.coef_))


def cli_case(rng, paths, folder):
    model = os.path.join(folder, "model.json")
    data = paths["csv" if rng.random() < 0.5 else "parquet"]
    optimizer = ["cg"] if rng.random() < 0.5 else ["gd", "--epochs", "300"]
    assert quietly(cli, ["train", data, "--target", "y0", "-o", model, "-q", "--optimizer", *optimizer]) == 0
    assert quietly(cli, ["predict", model, data, "-o", os.path.join(folder, "predictions.csv")]) == 0
    assert quietly(cli, ["inspect", model]) == 0


def save_load_case(rng, folder):
    X, y = regression(rng, 500, 4, k=2)
    model = GDRegressor(optimizer="cg").fit(X, y)
    path = os.path.join(folder, "saved.json")
    model.save(path)
    np.testing.assert_allclose(gradfit.load(path).predict(X), model.predict(X))


def partial_fit_case(rng):
    model = GDRegressor(learning_rate=0.01)
    for _ in range(5):
        X, y = regression(rng, 200, 3)
        model.partial_fit(X, y)


def cases(rng, paths, folder):
    """The round's list of (name, thunk): every kind of work, shapes drawn afresh."""
    n = int(rng.choice([200, 1000, 5000]))
    d = int(rng.choice([1, 5, 20]))
    return [
        ("arrays f64 statistics gd", lambda: arrays_case(rng, dict(epochs=200), n, d, 1, np.float64)),
        ("arrays f32 k=2 pass adam",
         lambda: arrays_case(rng, dict(engine="pass", optimizer="adam", epochs=50, tol=None), n, d, 2, np.float32)),
        ("arrays cg", lambda: arrays_case(rng, dict(optimizer="cg"), n, d, 1, np.float64)),
        ("arrays huber momentum l2",
         lambda: arrays_case(rng, dict(loss="huber", optimizer="momentum", penalty="l2", epochs=30, tol=None),
                             n, d, 1, np.float64)),
        ("arrays minibatch nesterov",
         lambda: arrays_case(rng, dict(optimizer="nesterov", batch_size=64, epochs=3, tol=None, random_state=1),
                             n, d, 1, np.float64)),
        ("csv statistics cg", lambda: file_case(rng, paths, "csv", dict(optimizer="cg"), ["y0", "y1"])),
        ("parquet f32 pass gd",
         lambda: file_case(rng, paths, "parquet", dict(engine="pass", epochs=20, tol=None), "y0")),
        ("folder minibatch", lambda: file_case(
            rng, paths, "folder", dict(batch_size=256, epochs=2, tol=None, random_state=0, learning_rate=0.01), "y1")),
        ("cli train/predict/inspect", lambda: cli_case(rng, paths, folder)),
        ("save/load", lambda: save_load_case(rng, folder)),
        ("partial_fit", lambda: partial_fit_case(rng)),
    ]


# -- the run and its report --------------------------------------------------------------


#: what --leak-kib keeps, to check that the verdict sees a leak
_LEAKED = []


def run(args):
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    samples, timings = [sample(0, start)], {}
    with tempfile.TemporaryDirectory(prefix="gradfit-soak-") as folder:
        paths = write_files(folder, rng)
        round_ = 0
        while True:
            round_ += 1
            for name, work in cases(rng, paths, folder):
                began = time.perf_counter()
                work()
                timings.setdefault(name, []).append(time.perf_counter() - began)
            if args.leak_kib:
                _LEAKED.append(np.ones(args.leak_kib * 128))  # touched, so resident
            if round_ % args.sample_every == 0:
                samples.append(sample(round_, start))
            elapsed = time.perf_counter() - start
            if (args.rounds and round_ >= args.rounds) or (not args.rounds and elapsed >= args.seconds):
                break
    if samples[-1]["round"] != round_:
        samples.append(sample(round_, start))
    return samples, timings, round_


def verdict(samples, args):
    """(grew, lines): memory of the second half against the first, after the warm-up."""
    warm = samples[max(1, int(len(samples) * args.warmup)):]
    if len(warm) < 4:
        return False, ["too few samples after the warm-up for a verdict: run longer or sample more often"]
    half = len(warm) // 2
    first, second = warm[:half], warm[half:]
    before, after = statistics.median(s["rss"] for s in first), statistics.median(s["rss"] for s in second)
    rounds = np.array([s["round"] for s in warm], dtype=float)
    slope = float(np.polyfit(rounds, [s["rss"] for s in warm], 1)[0]) * 1000 if np.ptp(rounds) else 0.0
    fds = (first[0]["fds"], warm[-1]["fds"])
    threads = (first[0]["threads"], warm[-1]["threads"])
    growth = after - before
    grew = growth > args.threshold_mib or fds[1] > fds[0] or threads[1] > threads[0]
    lines = [
        f"median RSS, first half after warm-up: {before:.1f} MiB; second half: {after:.1f} MiB; "
        f"growth {growth:+.1f} MiB (threshold {args.threshold_mib} MiB)",
        f"least-squares slope over the warm samples: {slope:+.2f} MiB per 1000 rounds",
        f"open file descriptors: {fds[0]} -> {fds[1]}; threads: {threads[0]} -> {threads[1]}",
        "verdict: " + ("MEMORY GROWS" if grew else "no growth"),
    ]
    return grew, lines


def table(samples, rows=12):
    """The samples as a Markdown table, thinned to about ``rows`` rows (first and last kept)."""
    step = max(1, len(samples) // rows)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    lines = ["| round | seconds | RSS MiB | open fds | threads |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['round']} | {s['seconds']:.0f} | {s['rss']:.1f} | {s['fds']} | {s['threads']} |" for s in shown]
    return lines


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="run this long (default 120)")
    parser.add_argument("--rounds", type=int, default=0, help="run this many rounds instead of --seconds")
    parser.add_argument("--sample-every", type=int, default=5, help="rounds between memory samples (default 5)")
    parser.add_argument("--warmup", type=float, default=0.2,
                        help="fraction of the samples left out as warm-up (default 0.2)")
    parser.add_argument("--threshold-mib", type=float, default=20.0,
                        help="memory growth, second half over first, that fails the run (default 20 MiB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--leak-kib", type=int, default=0,
                        help="keep this many KiB more every round: checks that the verdict catches a leak")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    warnings.simplefilter("ignore")  # ConvergenceWarning from the short fits: not what is measured here
    samples, timings, rounds = run(args)
    fits = sum(len(t) for t in timings.values())
    print(f"gradfit soak: {rounds} rounds, {fits} workloads in {samples[-1]['seconds']:.0f} s; "
          f"Python {platform.python_version()}, NumPy {np.__version__}, {os.cpu_count()} CPUs")
    print("| workload | runs | mean ms |", "|---|---:|---:|", sep="\n")
    for name, times in timings.items():
        print(f"| {name} | {len(times)} | {1000 * statistics.mean(times):.1f} |")
    print()
    print(*table(samples), sep="\n")
    grew, lines = verdict(samples, args)
    print()
    print(*lines, sep="\n")
    return 1 if grew else 0


if __name__ == "__main__":
    sys.exit(main())
