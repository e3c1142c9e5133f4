"""How close the pass engine's sketched λmax comes to the true one (``PassEngine.curvature``).

For Hessians ``Q diag(λ) Qᵀ`` with random ``Q`` and the spectra below, the
worst ratio over ``--draws`` random starts of
:func:`gradfit.engines.passes.nystrom_top` (two products with
``CURVATURE_BLOCK`` directions, as the engine makes them) to λmax, before
``CURVATURE_MARGIN``.

Usage::

    python benchmarks/sketch_accuracy.py --draws 20
"""

from __future__ import annotations

import argparse

import numpy as np

from gradfit.engines.passes import CURVATURE_BLOCK, nystrom_top


def spectra(d):
    return {
        "flat": np.ones(d),
        "equicorrelated 0.9": np.r_[1 + 0.9 * (d - 1), np.full(d - 1, 0.1)],
        "two top": np.r_[1, 0.95, np.full(d - 2, 0.1)],
        "1/i": 1 / np.arange(1, d + 1),
        "1/√i": 1 / np.sqrt(np.arange(1, d + 1)),
        "linear 1 … 0.01": np.linspace(1, 0.01, d),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    sizes = (40, 100, 1000)
    rows = {}
    for d in sizes:
        basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
        for name, values in spectra(d).items():
            hessian = (basis * values) @ basis.T
            worst = 1.0
            for _ in range(args.draws):
                omega = rng.standard_normal((d, CURVATURE_BLOCK))
                first = hessian @ omega
                estimate = nystrom_top(np.hstack([omega, first]), np.hstack([first, hessian @ first]))
                worst = min(worst, estimate / values.max())
            rows.setdefault(name, []).append(worst)
    print(f"worst estimate / λmax over {args.draws} draws, {CURVATURE_BLOCK} directions, two products\n")
    print("| spectrum | " + " | ".join(f"d = {d}" for d in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name, worst in rows.items():
        print(f"| {name} | " + " | ".join(f"{w:.2f}" for w in worst) + " |")


if __name__ == "__main__":
    main()
