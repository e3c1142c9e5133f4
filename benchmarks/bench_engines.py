"""gradfit's engines against the peers, on the same full-batch gradient descent, in one process.

For each size ``N × d`` and dtype, the data are generated once (standard
normal features, ``y = X·coef + 1.5 + noise``) and every contender runs the
same ``E`` epochs of full-batch gradient descent on the mean squared error,
from zero, with the same step ``η = 1/L`` (``L`` from gradfit's statistics):

* **gradfit**: ``GDRegressor(engine="statistics", standardize=False,
  learning_rate=η, epochs=E, tol=None).fit(X, y)``, validation included;
  also the defaults (``engine="auto"``, standardized, ``learning_rate="auto"``);
* **gradfit, pass engine, one epoch**: one call of the engine's value and
  gradient (one fused pass over X), the unit the pass engine's epochs cost;
  and a whole pass-engine fit, once (it also runs the fit report's extra pass);
* **NumPy loop** (the tutorial's): ``r = X@w + b − y``, then ``Xᵀr``, per epoch;
* **PyTorch CPU autograd** (when ``torch`` is installed): ``((X@w + b − y)²).mean()``,
  ``backward()``, a step, per epoch;
* **scikit-learn SGDRegressor** (per-sample SGD, ``max_iter=E``, ``tol=None``,
  ``penalty=None``; not the same iterates, and not at the optimum) and
  **LinearRegression** (the closed form);
* the reference costs of one ``X.sum()``, one ``X @ w`` and one ``X.T @ X``,
  with NumPy's default BLAS threads and with one: the targets' ratios take
  the faster of the two (on a loaded machine OpenBLAS's threads can make
  ``X.T @ X`` ten times slower, which would flatter gradfit).

Printed per contender: wall time (median of ``--repeat`` runs; peers whose
first run takes over ``--slow`` seconds run once, and the table says so), peak
memory (the peak resident set size above the one at the start of the run, from
Linux's ``VmHWM`` reset through ``/proc/self/clear_refs`` before the run; the
operating system's count, so it includes whatever NumPy, BLAS or PyTorch
allocate), the final cost, its gap to the optimal cost (least squares on the
normal equations, accumulated in float64),
and time / gradfit's time. The fast contenders are timed interleaved (round
after round), so that the machine's load falls on all of them alike.

Usage::

    python benchmarks/bench_engines.py                     # all sizes, float64 and float32
    python benchmarks/bench_engines.py --sizes 1e6x100x100 --dtypes float64
    python benchmarks/bench_engines.py --quick             # a smoke run, seconds
    python benchmarks/bench_engines.py --json results.json

Sizes are ``NxDxEPOCHS``. Nothing here is a test: speed is shown by the ratios
it prints, measured in one run on one machine (``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import re
import statistics
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import gradfit
from gradfit.fitting import prepare
from gradfit.sources import ArraySource

from machine import cpu_name, memory_gib  # benchmarks/machine.py, beside this script

SIZES = ("1e6x100x100", "2e5x1000x100", "4e6x32x200")
QUICK_SIZES = ("20000x50x20",)


# -- measuring -------------------------------------------------------------------


def _status(field):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak():
    """Reset the kernel's peak-RSS counter (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def peak_memory(record):
    """``record["peak"]``: peak RSS above the RSS at the start (bytes), or None if unknown."""
    gc.collect()
    resettable = _reset_peak()
    start = _status("VmRSS")
    try:
        yield
    finally:
        peak = _status("VmHWM")
        known = resettable and peak is not None and start is not None
        record["peak"] = max(peak - start, 0) if known else None


class Contender:
    """One thing to time: ``run()`` does the work; ``result(output)`` gives ``(coef, intercept)`` or None."""

    def __init__(self, name, run, result=None, note=""):
        self.name, self.run, self.result, self.note = name, run, result, note
        self.times, self.peak, self.output = [], None, None

    def once(self, measure_memory=False):
        record = {}
        gc.collect()
        with peak_memory(record) if measure_memory else contextlib.nullcontext():
            start = time.perf_counter()
            output = self.run()
            seconds = time.perf_counter() - start
        self.times.append(seconds)
        if measure_memory:
            self.peak = record["peak"]
        if self.output is None:
            self.output = output
        return seconds

    @property
    def median(self):
        return statistics.median(self.times) if self.times else float("nan")


def time_contenders(contenders, repeat, slow, pause):
    """Run every contender: the first round measures memory; those under ``slow`` seconds ``repeat`` times, interleaved.

    Every run starts after ``pause`` idle seconds: OpenBLAS keeps its worker
    threads spinning for a while after a threaded call (~0.1 s), and a spinning
    thread takes a core from whatever runs next (a gradfit pass right after an
    ``X @ w`` took 82 ms instead of 61).
    """
    fast = []
    for contender in contenders:
        time.sleep(pause)
        if contender.once(measure_memory=True) < slow:
            fast.append(contender)
    for _ in range(repeat - 1):
        for contender in fast:
            time.sleep(pause)
            contender.once()


# -- the contenders -----------------------------------------------------------------


def make_data(n, d, dtype, seed=0):
    """X (n, d) of ``dtype`` filled in place (no full-size temporaries), y float64."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, d), dtype=dtype)
    y = np.empty(n)
    coef = rng.normal(size=d)
    step = max(1, (1 << 22) // d)
    for start in range(0, n, step):
        block = rng.standard_normal((min(step, n - start), d))
        X[start : start + len(block)] = block
        y[start : start + len(block)] = block @ coef + 1.5 + rng.standard_normal(len(block))
    return X, y


def cost(X, y, coef, intercept):
    """The mean squared error of ``(coef, intercept)``, in float64, a block at a time."""
    total = 0.0
    coef = np.asarray(coef, dtype=np.float64)
    for start in range(0, len(X), 65536):
        residual = X[start : start + 65536].astype(np.float64) @ coef + intercept - y[start : start + 65536]
        total += float(residual @ residual)
    return total / len(X)


def optimal_cost(X, y):
    """The least-squares cost: ``lstsq`` on the (float64) normal equations of the stored values.

    Accumulated in float64 a block at a time, so float32 X gets its own exact
    optimum; the well-conditioned benchmark data lose nothing to the squaring.
    """
    d = X.shape[1]
    gram, cross = np.zeros((d + 1, d + 1)), np.zeros(d + 1)
    for start in range(0, len(X), 65536):
        block = np.column_stack([X[start : start + 65536].astype(np.float64), np.ones(len(X[start : start + 65536]))])
        gram += block.T @ block
        cross += block.T @ y[start : start + 65536]
    solution = np.linalg.lstsq(gram, cross, rcond=None)[0]
    return cost(X, y, solution[:d], solution[d])


def numpy_loop(X, y, epochs, rate):
    """The tutorial's loop: per epoch ``X @ w`` then ``X.T @ r``, in X's dtype."""
    n = X.shape[0]
    target = y.astype(X.dtype)
    w = np.zeros(X.shape[1], dtype=X.dtype)
    b = X.dtype.type(0)
    step = X.dtype.type(rate)
    for _ in range(epochs):
        residual = X @ w + b - target
        _ = residual @ residual / n  # the cost the tutorial prints
        w -= step * (2 * (X.T @ residual) / n)
        b -= step * (2 * residual.sum() / n)
    return w, float(b)


def torch_loop(torch, X, y, epochs, rate):
    """PyTorch CPU autograd on the same data (``from_numpy``: no copy of X)."""
    data = torch.from_numpy(X)
    target = torch.from_numpy(y.astype(X.dtype))
    w = torch.zeros(X.shape[1], dtype=data.dtype, requires_grad=True)
    b = torch.zeros((), dtype=data.dtype, requires_grad=True)
    for _ in range(epochs):
        loss = ((data @ w + b - target) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= rate * w.grad
            b -= rate * b.grad
            w.grad.zero_()
            b.grad.zero_()
    return w.detach().numpy().astype(np.float64), float(b)


def contenders_for(X, y, epochs, rate, peers, torch):
    from sklearn.linear_model import LinearRegression, SGDRegressor

    d = X.shape[1]
    w = np.random.default_rng(1).standard_normal(d).astype(X.dtype)
    same = dict(epochs=epochs, tol=None, standardize=False, learning_rate=rate)
    pass_problem = prepare(ArraySource(X, y[:, None]), gradfit.GDRegressor(engine="pass", **same).get_params())
    params = np.random.default_rng(2).standard_normal((d + 1, 1)) * 0.1

    def fitted(model):
        return model.coef_, model.intercept_

    def one_thread(function):
        def run():
            with threadpool_limits(limits=1, user_api="blas"):
                return function()

        return run

    items = [
        Contender("X.sum()", lambda: X.sum()),
        Contender("X @ w", lambda: X @ w, note="NumPy's default BLAS threads"),
        Contender("X @ w, 1 BLAS thread", one_thread(lambda: X @ w)),
        Contender("X.T @ X", lambda: X.T @ X, note="NumPy's default BLAS threads (syrk)"),
        Contender("X.T @ X, 1 BLAS thread", one_thread(lambda: X.T @ X)),
        Contender("gradfit (statistics)", lambda: gradfit.GDRegressor(engine="statistics", **same).fit(X, y), fitted,
                  "same epochs and step as the loops; validation included"),
        Contender("gradfit (defaults)", lambda: gradfit.GDRegressor(epochs=epochs, tol=None).fit(X, y), fitted,
                  'engine="auto", standardized, learning_rate="auto"'),
        Contender("gradfit pass engine, 1 epoch", lambda: pass_problem.objective.value_and_grad(params),
                  note="one fused pass: value and gradient"),
    ]
    if "numpy" in peers:
        items.append(Contender("NumPy loop (tutorial)", lambda: numpy_loop(X, y, epochs, rate), lambda out: out))
    if "torch" in peers and torch is not None:
        items.append(Contender("PyTorch CPU autograd", lambda: torch_loop(torch, X, y, epochs, rate), lambda out: out,
                               f"torch {torch.__version__}, {torch.get_num_threads()} threads"))
    if "pass" in peers:
        items.append(Contender("gradfit (pass engine fit)",
                               lambda: gradfit.GDRegressor(engine="pass", **same).fit(X, y), fitted,
                               "E fused passes, plus the fit report's extra statistics pass"))
    if "sgd" in peers:
        sgd = dict(max_iter=epochs, tol=None, penalty=None, random_state=0)
        items.append(Contender("scikit-learn SGDRegressor", lambda: SGDRegressor(**sgd).fit(X, y), fitted,
                               "per-sample SGD, default invscaling step"))
    if "linear" in peers:
        items.append(Contender("scikit-learn LinearRegression", lambda: LinearRegression().fit(X, y), fitted,
                               "closed form (lstsq)"))
    return items


def fresh_process_memory(n, d, epochs, dtype, engine):
    """gradfit's fit in a fresh process: ``{"fit_peak", "process_peak", "x_bytes"}`` in bytes.

    The child generates the same data, then fits once: ``fit_peak`` is the
    peak RSS above the RSS after the data were made (nothing warmed up
    before: the engines' per-thread scratch arrays are counted), and
    ``process_peak`` the whole process's peak (``VmHWM``: Python, NumPy,
    SciPy, scikit-learn and X itself included; not ``ru_maxrss``, which a
    child inherits from the parent it was forked from).
    """
    import subprocess

    command = [sys.executable, os.path.abspath(__file__), "--child", f"{n}x{d}x{epochs}", dtype, engine]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(size, dtype, engine):
    n, d, epochs = parse_size(size)
    X, y = make_data(n, d, np.dtype(dtype))
    record = {}
    warnings.simplefilter("ignore")
    before = _status("VmHWM")
    with peak_memory(record):
        gradfit.GDRegressor(engine=engine, epochs=epochs, tol=None).fit(X, y)
    process_peak = max(before, _status("VmHWM")) if before is not None else None
    print(json.dumps({"fit_peak": record["peak"], "x_bytes": X.nbytes, "process_peak": process_peak}))


# -- reporting -----------------------------------------------------------------------


def machine():
    from threadpoolctl import threadpool_info

    info = {"python": platform.python_version(), "numpy": np.__version__, "gradfit": gradfit.__version__}
    info["cpu"] = cpu_name()
    info["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["memory_gib"] = round(memory_gib(), 1)
    info["blas"] = [
        f"{lib['internal_api']} {lib.get('version')} ({lib.get('architecture')}, {lib['num_threads']} threads)"
        for lib in threadpool_info() if lib["user_api"] == "blas"
    ]
    try:
        import sklearn

        info["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return info


def megabytes(count):
    return "n/a" if count is None else f"{count / 1e6:,.0f}"


def ratios(contenders):
    """The targets' ratios; a reference is NumPy's faster way (default BLAS threads or one)."""
    by_name = {c.name: c.median for c in contenders}
    out = {}
    fit = by_name["gradfit (statistics)"]
    gram = min(by_name["X.T @ X"], by_name["X.T @ X, 1 BLAS thread"])
    product = min(by_name["X @ w"], by_name["X @ w, 1 BLAS thread"])
    out["gradfit fit / X.T@X"] = fit / gram
    out["pass epoch / X@w"] = by_name["gradfit pass engine, 1 epoch"] / product
    for peer in ("NumPy loop (tutorial)", "PyTorch CPU autograd", "scikit-learn LinearRegression",
                 "scikit-learn SGDRegressor"):
        if peer in by_name:
            out[f"{peer} / gradfit"] = by_name[peer] / fit
    return out


def parse_size(text):
    match = re.fullmatch(r"([0-9.e+]+)x([0-9.e+]+)x([0-9.e+]+)", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected NxDxEPOCHS, e.g. 1e6x100x100")
    return tuple(int(float(part)) for part in match.groups())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, help=f"NxDxEPOCHS (default: {' '.join(SIZES)})")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--peers", nargs="+", default=["numpy", "torch", "sgd", "linear", "pass"],
                        choices=["numpy", "torch", "sgd", "linear", "pass"])
    parser.add_argument("--repeat", type=int, default=9, help="runs of each fast contender (median)")
    parser.add_argument("--slow", type=float, default=5.0, help="a first run longer than this is not repeated")
    parser.add_argument("--pause", type=float, default=0.3, help="idle seconds before every run (BLAS threads settle)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {' '.join(QUICK_SIZES)}, 2 runs")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # SIZE DTYPE ENGINE: fresh_process_memory
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    sizes = args.sizes or [parse_size(s) for s in (QUICK_SIZES if args.quick else SIZES)]
    repeat = 2 if args.quick else args.repeat
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: its row is skipped")

    info = machine()
    info["load_average_at_start"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print("machine:", json.dumps(info))
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    results = {"machine": info, "command": sys.argv, "runs": []}
    warnings.simplefilter("ignore")  # SGDRegressor's and gradfit's ConvergenceWarning on purpose-limited epochs
    for n, d, epochs in sizes:
        for dtype in args.dtypes:
            X, y = make_data(n, d, np.dtype(dtype))
            rate = gradfit.GDRegressor(standardize=False, epochs=1, tol=None).fit(X, y).learning_rate_
            contenders = contenders_for(X, y, epochs, rate, args.peers, torch)
            time_contenders(contenders, repeat, args.slow, args.pause)
            optimal = optimal_cost(X, y)
            for contender in contenders:
                contender.final_cost = None
                if contender.result is not None:
                    coef, intercept = contender.result(contender.output)
                    contender.final_cost = cost(X, y, np.ravel(coef), float(np.ravel(intercept)[0]))
            print("\n".join(render(X, dtype, epochs, contenders, optimal)))
            measured = ratios(contenders)
            print("\n" + "\n".join(f"- {name}: {value:.2f}" for name, value in measured.items()))
            fresh = {engine: fresh_process_memory(n, d, epochs, dtype, engine) for engine in ("statistics", "pass")}
            for engine, memory in fresh.items():
                print(f"- gradfit ({engine}) in a fresh process: fit's peak RSS above start "
                      f"{memory['fit_peak'] / 1e6:,.0f} MB = {memory['fit_peak'] / memory['x_bytes']:.3f} × X; "
                      f"whole process {memory['process_peak'] / 1e6:,.0f} MB = "
                      f"{memory['process_peak'] / memory['x_bytes']:.2f} × X")
            results["runs"].append({
                "n": n, "d": d, "epochs": epochs, "dtype": dtype, "x_bytes": X.nbytes, "optimal_cost": optimal,
                "rate": rate, "ratios": measured, "fresh_process_memory": fresh,
                "contenders": [
                    {"name": c.name, "times": c.times, "median": c.median, "peak_bytes": c.peak,
                     "final_cost": c.final_cost, "note": c.note}
                    for c in contenders
                ],
            })
            del X, y, contenders
            gc.collect()
    if hasattr(os, "getloadavg"):
        results["load_average_at_end"] = os.getloadavg()
        print(f"\nload average (1, 5, 15 min) at the start {info['load_average_at_start']}, "
              f"at the end {results['load_average_at_end']}: other processes share these cores")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


def render(X, dtype, epochs, contenders, optimal):
    gradfit_time = next(c.median for c in contenders if c.name == "gradfit (statistics)")
    lines = [
        f"\n### N = {X.shape[0]:,}, d = {X.shape[1]:,}, {epochs} epochs, {np.dtype(dtype).name} "
        f"(X: {X.nbytes / 1e6:,.0f} MB; optimal cost {optimal:.10g})\n",
        "| contender | time (s) | runs | peak memory above start (MB) | final cost | gap to optimum | time / gradfit | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in contenders:
        final = gap = ""
        if c.final_cost is not None:
            final, gap = f"{c.final_cost:.10g}", f"{(c.final_cost - optimal) / optimal:.1e}"
        lines.append(
            f"| {c.name} | {c.median:.4g} | {len(c.times)} | {megabytes(c.peak)} | {final} | {gap} | "
            f"{c.median / gradfit_time:.2f} | {c.note} |"
        )
    return lines


if __name__ == "__main__":
    main()
