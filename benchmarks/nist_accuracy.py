"""Digits of agreement with NIST's certified values, gradfit beside its peers.

For every StRD linear-regression file in a folder (``tests/data/strd`` by
default), fits the certified model with

* **gradfit cg**: ``GDRegressor(optimizer="cg")`` (statistics engine, then
  refinement epochs whose gradient comes from a data pass, :mod:`gradfit.refine`);
* **gradfit cg, pass**: the same with ``engine="pass"``;
* **gradfit gd**: ``GDRegressor()`` (plain gradient descent, the defaults:
  ``tol=1e-6``, at most 1000 epochs), to show what a tolerance-stopped first-order
  method gives;
* **lstsq**: ``numpy.linalg.lstsq(A, y, rcond=None)`` on the raw design, the
  column of ones first (LAPACK gelsd, SVD, the default cutoff);
* **LinearRegression**: ``sklearn.linear_model.LinearRegression``;

and prints a Markdown table of the log relative error (LRE, NIST's digits of
agreement, capped at 15) of the coefficients (the minimum over them), the
residual standard deviation ``s`` and R² (uncentred for the no-intercept
models). "error" means the method refused (gradfit's ``IllConditionedError``).

Usage::

    python benchmarks/nist_accuracy.py [FOLDER] [--json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import warnings

import numpy as np
import sklearn
from sklearn.linear_model import LinearRegression

import gradfit
from gradfit import GDRegressor, GradfitError
from gradfit.datasets import load_strd, log_relative_error, residual_statistics

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FOLDER = os.path.join(HERE, "..", "tests", "data", "strd")
ORDER = ["Norris", "Pontius", "NoInt1", "NoInt2", "Filip", "Longley", "Wampler1", "Wampler2",
         "Wampler3", "Wampler4", "Wampler5"]


def _gradfit(**options):
    def fit(problem):
        model = GDRegressor(fit_intercept=problem.fit_intercept, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gradfit.ConvergenceWarning)
            model.fit(problem.X, problem.y)
        return model.coef_, model.intercept_

    return fit


def _lstsq(problem):
    if not problem.fit_intercept:
        return np.linalg.lstsq(problem.X, problem.y, rcond=None)[0], 0.0
    design = np.column_stack([np.ones(len(problem.y)), problem.X])  # B0's column first, as NIST orders them
    solution = np.linalg.lstsq(design, problem.y, rcond=None)[0]
    return solution[1:], solution[0]


def _linear_regression(problem):
    model = LinearRegression(fit_intercept=problem.fit_intercept).fit(problem.X, problem.y)
    return model.coef_, model.intercept_


METHODS = {
    "gradfit cg": _gradfit(optimizer="cg"),
    "gradfit cg, pass": _gradfit(optimizer="cg", engine="pass"),
    "gradfit gd": _gradfit(),
    "lstsq": _lstsq,
    "LinearRegression": _linear_regression,
}


def measure(problem, method):
    """``{"params": LRE, "s": LRE, "r2": LRE}``, or ``{"error": message}``."""
    try:
        coef, intercept = METHODS[method](problem)
    except GradfitError as exc:
        return {"error": str(exc)}
    coef = np.asarray(coef, dtype=float).ravel()
    estimates = np.concatenate([[intercept], coef]) if problem.fit_intercept else coef
    s, r2 = residual_statistics(problem.X, problem.y, coef, float(intercept), problem.fit_intercept)
    return {
        "params": float(np.min(log_relative_error(estimates, problem.certified))),
        "s": float(log_relative_error(s, problem.residual_sd)),
        "r2": float(log_relative_error(r2, problem.r2)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=DEFAULT_FOLDER, help="folder of StRD .dat files")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    paths = glob.glob(os.path.join(args.folder, "*.dat"))
    names = {os.path.splitext(os.path.basename(p))[0]: p for p in paths}
    ordered = [n for n in ORDER if n in names] + sorted(set(names) - set(ORDER))
    results = {}
    for name in ordered:
        problem = load_strd(names[name])
        results[name] = {method: measure(problem, method) for method in METHODS}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"LRE (digits) against the certified values; NumPy {np.__version__}, scikit-learn "
          f"{sklearn.__version__}, gradfit {gradfit.__version__}, {platform.machine()}.\n")
    header = "| data set | " + " | ".join(METHODS) + " |"
    print(header)
    print("|---|" + "---|" * len(METHODS))
    for name, row in results.items():
        cells = []
        for method in METHODS:
            result = row[method]
            if "error" in result:
                cells.append("error")
            else:
                cells.append(f"{result['params']:.1f} (s {result['s']:.1f}, R² {result['r2']:.1f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
