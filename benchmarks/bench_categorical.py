"""A categorical column with many levels: ``gradfit train``'s time and peak memory against numbers alone.

Writes a Parquet file (outside the repository) of ``--rows`` rows: ``--numeric``
float64 features, one text column ``g`` of ``--levels`` levels, and
``y = X·coef + effect[g] + noise``; then runs, each in its own process (peak
resident memory from ``wait4``'s ``ru_maxrss``, CPU seconds from its
``ru_utime + ru_stime``):

* ``gradfit train FILE --target y --exclude g`` (the numeric features alone);
* ``gradfit train FILE --target y`` (``g`` treatment coded: ``levels − 1`` more features),

and prints wall and CPU seconds, peak RSS and the ratios. Above
``gradfit.sources.encoding.BLOCK_LEVELS`` (1000) levels the column is kept as
level codes and its statistics as blocks (:mod:`gradfit.engines.categorical`:
level totals, level means, a within-level scatter), never a dense one-hot
block; at or below it, dense dummies as before. Issue 14's target: 10,000
levels and 20 numeric features on 2·10⁶ rows in under 1 GB and within 3× the
numeric fit.

``--loss``, ``--engine``, ``--optimizer``, ``--epochs``, ``--tol`` and ``--batch-size`` are
handed to both runs, so that they run the same method: e.g. ``--loss huber
--optimizer gd --epochs 50 --tol none`` times 50 epochs of the pass engine,
which reads the column as level codes (:mod:`gradfit.engines.passes`),
against 50 on the numeric features alone; without ``--optimizer``, Huber's
``"auto"`` is Newton's method in both runs (on the level codes it solves by
the inliers' level blocks, :mod:`gradfit.robust.level_newton`). The
categorical fit's optimizer, epochs and message (with its certificate) are
printed. ``--outliers F`` gives that fraction of the rows a gross (Cauchy)
error, so that Huber's inlier set is not every row (with the default
Gaussian noise the least-squares start is already Huber's optimum).

``--penalty {l1,l2,elasticnet} --alpha A`` runs both fits with that penalty
(on the blocks too: L2 exactly by :meth:`gradfit.engines.categorical.LevelBlocks.solve_ridge`,
L1 by accelerated proximal gradient on the blocks' products); ``--alpha cv``
chooses it by cross-validation in both runs (``GDRegressorCV``: on the blocks,
each fold's path solved from its level blocks, :mod:`gradfit.block_path`).

``--formula`` runs the categorical fit as ``gradfit train FILE --formula
"y ~ x0 + ... + C(g)"``: formulaic encodes the numeric terms and ``C(g)``, a
main effect of many levels, is kept as level codes
(:meth:`gradfit.formula.FormulaDesign.choose_block`), never a dense block.

``--lstsq`` (small sizes only: it forms the dense design) also compares the
model file's coefficients with ``numpy.linalg.lstsq`` on the dense
treatment-coded design (with ``--penalty l2``: ``numpy.linalg.solve`` of the
penalized normal equations, ``W·A/2`` added to every coefficient's diagonal
entry) and prints the largest relative difference.

Usage::

    python benchmarks/bench_categorical.py --rows 2000000 --levels 10000
    python benchmarks/bench_categorical.py --rows 50000 --levels 2000 --numeric 5 --lstsq
    python benchmarks/bench_categorical.py --rows 200000 --levels 10000 --loss huber --optimizer gd --epochs 50 --tol none
    python benchmarks/bench_categorical.py --rows 200000 --levels 10000 --penalty l2 --alpha 1e-4
    python benchmarks/bench_categorical.py --rows 200000 --levels 10000 --loss huber --outliers 0.05
    python benchmarks/bench_categorical.py --rows 200000 --levels 10000 --formula
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from bench_parquet import machine, run_measured  # benchmarks/, beside this script


def generate(path, rows, numeric, levels, seed=0, outliers=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, numeric))
    codes = rng.integers(0, levels, size=rows)
    codes[:levels] = np.arange(levels)  # every level present
    y = X @ rng.normal(size=numeric) + rng.normal(size=levels)[codes] + 0.1 * rng.normal(size=rows)
    if outliers:  # gross errors (Cauchy, scale 3) on that fraction of the rows: Huber's inlier set has work to do
        hit = rng.random(rows) < outliers
        y[hit] += 3.0 * rng.standard_cauchy(int(hit.sum()))
    names = np.array([f"L{i:05d}" for i in range(levels)])
    columns = [pa.array(X[:, j]) for j in range(numeric)] + [pa.array(names[codes]).dictionary_encode(), pa.array(y)]
    pq.write_table(pa.table(columns, names=[f"x{j}" for j in range(numeric)] + ["g", "y"]), path)
    return X, codes, y


def lstsq_difference(model_path, X, codes, y, levels, ridge=0.0):
    """Largest relative difference of the model's coefficients from lstsq on the dense treatment-coded design.

    ``ridge > 0``: from the solve of the normal equations with ``ridge`` added
    to every coefficient's diagonal entry (not the intercept's).
    """
    with open(model_path) as handle:
        document = json.load(handle)
    design = np.zeros((len(y), X.shape[1] + levels))
    design[:, : X.shape[1]] = X
    design[np.arange(len(y)), X.shape[1] + codes] = 1.0  # level 0, the reference, is the intercept's column
    design[:, X.shape[1]] = 1.0
    with threadpool_limits(1):  # BLAS threads on a shared machine only fight
        if ridge > 0:
            normal = design.T @ design
            penalized = np.delete(np.arange(design.shape[1]), X.shape[1])  # all but the intercept's column
            normal[penalized, penalized] += ridge
            solution = np.linalg.solve(normal, design.T @ y)
        else:
            solution = np.linalg.lstsq(design, y, rcond=None)[0]
    expected = np.concatenate([solution[: X.shape[1]], solution[X.shape[1] + 1 :]])
    coef = np.asarray(document["coef"], dtype=float).ravel()
    intercept = float(np.ravel(document["intercept"])[0])
    got = np.concatenate([coef, [intercept]])
    want = np.concatenate([expected, [solution[X.shape[1]]]])
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _alpha(text):
    """``--alpha``: a number, or ``cv``."""
    return text if text == "cv" else float(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--numeric", type=int, default=20)
    parser.add_argument("--levels", type=int, default=10_000)
    parser.add_argument("--folder", default=tempfile.gettempdir())
    parser.add_argument("--lstsq", action="store_true", help="compare with numpy.linalg.lstsq on the dense design")
    for option in ("--loss", "--engine", "--optimizer", "--epochs", "--tol", "--batch-size"):
        parser.add_argument(option, help=f"gradfit train's {option}, for both runs")
    parser.add_argument("--penalty", choices=["l1", "l2", "elasticnet"], help="fit both with this penalty")
    parser.add_argument("--alpha", type=_alpha, default=1e-4,
                        help="the penalty's alpha (with --penalty), or cv: chosen by cross-validation (train --alpha cv)")
    parser.add_argument("--formula", action="store_true",
                        help="the categorical fit through a formula, y ~ x0 + ... + C(g)")
    parser.add_argument("--outliers", type=float, default=0.0,
                        help="fraction of rows given a gross (Cauchy) error, for the robust losses")
    args = parser.parse_args()
    if args.lstsq and (args.penalty not in (None, "l2") or args.loss not in (None, "squared_error")
                       or args.alpha == "cv"):
        parser.error("--lstsq compares with a closed-form optimum: the squared error, no penalty or --penalty l2")
    options = [text for option in ("loss", "engine", "optimizer", "epochs", "tol", "batch_size")
               if getattr(args, option) is not None
               for text in (f"--{option.replace('_', '-')}", getattr(args, option))]
    if args.penalty:
        options += ["--penalty", args.penalty, "--alpha", args.alpha if args.alpha == "cv" else repr(args.alpha)]
    path = os.path.join(args.folder, f"gradfit-categorical-{args.rows}-{args.numeric}-{args.levels}.parquet")
    model_path = path + ".model.json"
    X, codes, y = generate(path, args.rows, args.numeric, args.levels, outliers=args.outliers)
    try:
        command = [sys.executable, "-m", "gradfit", "train", path, "--target", "y", "-q"] + options
        numeric = run_measured(command + ["--exclude", "g"])
        if args.formula:  # the same columns through formulaic, C(g) kept as level codes
            formula = "y ~ " + " + ".join([f"x{j}" for j in range(args.numeric)] + ["C(g)"])
            command = [sys.executable, "-m", "gradfit", "train", path, "--formula", formula, "-q"] + options
        categorical = run_measured(command + ([] if args.tol is not None else ["--tol", "1e-10"]) + ["-o", model_path])
        difference = None
        if args.lstsq:
            ridge = 0.5 * args.rows * args.alpha if args.penalty else 0.0  # gradfit's alpha: W·alpha/2 (penalties)
            difference = lstsq_difference(model_path, X, codes, y, args.levels, ridge)
        with open(model_path, encoding="utf-8") as handle:
            training = json.load(handle)["training"]  # the categorical fit's record: epochs and certificate
    finally:
        for name in (path, model_path):
            if os.path.exists(name):
                os.unlink(name)
    print(f"{args.rows} rows, {args.numeric} numeric features, one column of {args.levels} levels"
          f"{' (through a formula, C(g))' if args.formula else ''}"
          f"{f', {args.outliers:g} of the rows outliers' if args.outliers else ''}"
          f"{'; ' + ' '.join(options) if options else ''}; {machine()}")
    print("| fit | wall s | CPU s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    for name, result in (("numeric only", numeric), (f"+ {args.levels} levels", categorical)):
        print(f"| {name} | {result['seconds']:.2f} | {result['cpu']:.2f} | {result['peak'] / 2**20:.0f} |")
    print(f"ratio: wall {categorical['seconds'] / numeric['seconds']:.2f}, CPU {categorical['cpu'] / numeric['cpu']:.2f} "
          "(target ≤ 3 and < 1 GiB at 10,000 levels, 2e6 rows)")
    print(f"categorical fit: optimizer {training['optimizer']}, {training['n_iter']} epochs, "
          f"engine {training['engine']}: {training['message']}")
    if difference is not None:
        oracle = "the penalized normal equations" if args.penalty else "numpy.linalg.lstsq"
        print(f"largest relative difference from {oracle} on the dense design: {difference:.2e}")


if __name__ == "__main__":
    main()
