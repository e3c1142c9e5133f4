"""Means and centred scatter matrices of row blocks, merged pairwise: the one Chan, Golub & LeVeque update.

Every pass that sums about a mean merges its blocks here, so the digits the
centring keeps are never thrown away by a naive ``ZᵀZ − n μμᵀ``: the
statistics engine's blocks and chunks
(:func:`gradfit.engines.statistics.accumulate`), cross-validation's folds
(:mod:`gradfit.folds`), the metrics' target variance (:mod:`gradfit.metrics`),
and the pooled mean of refinement's QR factors (:func:`gradfit.refine.qr_factor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Partial sums of one or more blocks, merged pairwise (:func:`merge`).

    The sums are about a reference point ``mean`` near the (weighted) mean
    of the rows: ``scatter = Σ v (z − mean)(z − mean)ᵀ`` (or only its
    ``diagonal``) and ``residual = Σ v (z − mean)``, which is what the
    reference misses of the mean (small, and zero for an exact mean).
    Carrying it makes every merge exact, whatever the reference and its
    rounding (see :func:`merge`); :func:`gradfit.engines.statistics.finish` removes it at the end.
    """

    count: int
    total: float
    mean: np.ndarray
    scatter: np.ndarray | None
    diagonal: np.ndarray
    residual: np.ndarray

    def exact_mean(self):
        """The weighted mean of the rows: ``mean + residual / total`` (``total > 0``)."""
        return self.mean + self.residual / self.total

    def well_centred(self):
        """Whether ``mean`` is within a quarter of the spread of the exact mean, in every column.

        Then the sums about it exceed the centred ones by at most 1/16 and
        lose nothing to cancellation: ``16 r² ≤ W · diag(S)``, with
        ``r = Σ v (z − mean)`` and ``W = Σ v``.
        """
        return bool(np.all(16.0 * self.residual * self.residual <= self.total * self.diagonal))


def pooled_mean(total_a, mean_a, total_b, mean_b):
    """The weighted mean of two parts' rows: ``μ = μₐ + (μ_b − μₐ) W_b / (Wₐ + W_b)``.

    A step from ``μₐ`` by a difference of nearby numbers, so no digits are
    lost where both means sit far from zero (``(Wₐμₐ + W_bμ_b)/W`` would
    round each product first).
    """
    return mean_a + (mean_b - mean_a) * (total_b / (total_a + total_b))


def merge(a, b):
    """Chan, Golub & LeVeque's pairwise merge of two :class:`Moments` (``a`` may be reused).

    Written about the merged mean ``μ`` rather than with Chan's ``δδᵀ nₐn_b/n``:
    with ``dₐ = μₐ − μ`` (a difference of nearby numbers: exact) and the
    residuals ``rₐ = Σ v (z − μₐ)``,

        S = Sₐ + S_b + Σ_parts [ n ddᵀ + r dᵀ + d rᵀ ],      r = rₐ + r_b + nₐdₐ + n_b d_b,

    which is the scatter about the stored ``μ`` exactly, whatever the rounding
    of the means. Chan's formula assumes exact means; with rounded ones its
    error is first order in ``ε|μ|``: 1e-9 relative on columns of offset 1e8
    and spread 1, against 1e-15 here. :func:`gradfit.engines.statistics.finish` removes
    the final residual (``S − rrᵀ/n``, a second-order correction).
    """
    if a is None or a.total == 0:
        if a is None:
            return b
        return Moments(a.count + b.count, b.total, b.mean, b.scatter, b.diagonal, b.residual)
    if b is None:
        return a
    if b.total == 0:
        a.count += b.count
        return a
    from scipy.linalg.blas import dger  # here: the command line imports this module without SciPy

    total = a.total + b.total
    mean = pooled_mean(a.total, a.mean, b.total, b.mean)
    residual = a.residual + b.residual
    a.diagonal += b.diagonal
    if a.scatter is not None:
        a.scatter += b.scatter
    for part in (a, b):
        shift = part.mean - mean
        moment = part.total * shift + part.residual
        residual += part.total * shift
        a.diagonal += (moment + part.residual) * shift
        if a.scatter is not None:
            # In place (BLAS ger, on the transpose: the update is symmetric): no d×d temporaries.
            a.scatter = dger(1.0, moment, shift, a=a.scatter.T, overwrite_a=True).T
            a.scatter = dger(1.0, shift, part.residual, a=a.scatter.T, overwrite_a=True).T
    a.mean = mean
    a.residual = residual
    a.count += b.count
    a.total = total
    return a
