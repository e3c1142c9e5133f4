"""Two categorical columns of many levels: gradfit's block engine against SciPy's sparse solvers on the same dummies.

The table of issue 14's wide-dense case: ``x1`` (numeric), ``a`` (``--wide``
levels, kept as level codes) and ``b`` (``--narrow`` levels, also above
``BLOCK_LEVELS``: its dummies are the block engine's dense part, whose moments
come from counts, :class:`gradfit.engines.categorical.OneHotLevelMoments`),
``y = 2·x1 + effect[a] + effect[b] + noise``. In one process it times:

* ``GDRegressor(tol=TOL).fit(frame, y)`` (defaults otherwise: the statistics
  engine on the blocks, certified within ``--tol``, the fit report's standard errors included);
* SciPy's sparse direct solve (SuperLU, ``spsolve``) of the normal equations
  of the sparse treatment-coded design (numeric column centred), the same
  optimum without standard errors;
* SciPy's ``lsqr`` on the sparse design (``atol = btol = 1e-10``), iterative;

and prints seconds, the largest difference of the coefficients from the
direct solve relative to the largest coefficient, and gradfit's engine,
optimizer and message. ``statsmodels`` is left out: its OLS forms the dense
design (``rows × (wide + narrow)``) and a pseudo-inverse, hours at these sizes.

Usage::

    python benchmarks/bench_two_categoricals.py --rows 20000
    python benchmarks/bench_two_categoricals.py --rows 20000 --tol 1e-10
    python benchmarks/bench_two_categoricals.py --rows 200000 --wide 5000 --narrow 3000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.linalg
from bench_parquet import machine  # benchmarks/, beside this script


def generate(rows, wide, narrow, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=rows), "a": rng.integers(0, wide, rows).astype(str),
                          "b": rng.integers(0, narrow, rows).astype(str)})
    effect_a, effect_b = rng.normal(size=wide), rng.normal(size=narrow)
    y = 2.0 * frame["x1"].to_numpy() + effect_a[frame["a"].astype(int)] + effect_b[frame["b"].astype(int)] \
        + rng.normal(size=rows)
    return frame, y


def sparse_design(frame):
    """``[x1 − mean, a's dummies, b's dummies, 1]`` (reference: the first level in sorted order), CSR."""
    n = len(frame)
    parts = [scipy.sparse.csr_matrix((frame["x1"] - frame["x1"].mean()).to_numpy()[:, None])]
    for name in ("a", "b"):
        levels = np.sort(frame[name].unique())
        codes = np.searchsorted(levels, frame[name].to_numpy())
        keep = codes > 0
        parts.append(scipy.sparse.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), codes[keep] - 1)),
                                             shape=(n, len(levels) - 1)))
    parts.append(scipy.sparse.csr_matrix(np.ones((n, 1))))
    return scipy.sparse.hstack(parts, format="csr")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--wide", type=int, default=5_000, help="levels of the column kept as codes")
    parser.add_argument("--narrow", type=int, default=3_000, help="levels of the column kept as dense dummies")
    parser.add_argument("--tol", type=float, default=1e-6, help="gradfit's tol (its default: 1e-6)")
    parser.add_argument("--no-lsqr", action="store_true", help="leave out SciPy's lsqr")
    args = parser.parse_args()
    from gradfit import GDRegressor

    frame, y = generate(args.rows, args.wide, args.narrow)
    start = time.perf_counter()
    model = GDRegressor(tol=args.tol).fit(frame, y)
    gradfit_seconds = time.perf_counter() - start
    names = list(model.feature_names_)
    # gradfit's order is x1, a's dummies, b's dummies (the frame's column order): the design's too
    assert names[0] == "x1" and names[1].startswith("a[T.") and names[-1].startswith("b[T.")

    design = sparse_design(frame)
    start = time.perf_counter()
    normal = (design.T @ design).tocsc()
    direct = scipy.sparse.linalg.spsolve(normal, design.T @ y)
    direct_seconds = time.perf_counter() - start
    coef = direct[:-1]
    scale = np.max(np.abs(coef))
    rows = [(f"gradfit `GDRegressor(tol={args.tol:g}).fit` (statistics engine on the blocks, fit report included)",
             gradfit_seconds,
             np.max(np.abs(model.coef_ - coef)) / scale),
            ("SciPy `spsolve` of the sparse normal equations (SuperLU)", direct_seconds, 0.0)]
    if not args.no_lsqr:
        start = time.perf_counter()
        iterative = scipy.sparse.linalg.lsqr(design, y, atol=1e-10, btol=1e-10, iter_lim=100_000)
        rows.append((f"SciPy `lsqr` on the sparse design ({iterative[2]} iterations)", time.perf_counter() - start,
                     np.max(np.abs(iterative[0][:-1] - coef)) / scale))
    print(f"{args.rows} rows: x1, a ({args.wide} levels, as codes), b ({args.narrow} levels, dense dummies); {machine()}")
    print("| solver | seconds | max coefficient difference / max coefficient |")
    print("|---|---:|---:|")
    for name, seconds, difference in rows:
        print(f"| {name} | {seconds:.2f} | {difference:.1e} |")
    print(f"gradfit: engine {model.engine_}, optimizer {model.optimizer_}: {model.stop_message_}")


if __name__ == "__main__":
    main()
