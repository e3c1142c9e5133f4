"""Regularization paths of the squared error, solved from sufficient statistics alone.

For the squared error every fit on a set of rows, and its error on another
set, depends on the rows only through their :class:`~gradfit.engines.statistics.Statistics`.
With ``G = Sₓₓ/W``, ``h = Sₓᵧ/W``, ``q = Sᵧᵧ/W`` (centred about the rows'
means when there is an intercept, about zero otherwise) gradfit's objective
for one output is (:mod:`gradfit.penalties`)

    F(c) = cᵀGc − 2hᵀc + q + alpha · (l1_ratio‖c‖₁ + (1 − l1_ratio)/2 ‖c‖²),
    intercept = μ_y − μₓ·c   (0 without an intercept).

* L2 (``l1_ratio = 0``): ``c = (2G + alpha I)⁻¹ 2h``; one eigendecomposition
  ``G = VΛVᵀ`` gives every alpha as ``V diag(2/(2λ + alpha)) Vᵀh``
  (:func:`ridge_path`).
* L1 and elastic net: cyclic coordinate descent on ``G`` with the covariance
  updates (scikit-learn's ``enet_path`` with ``precompute=True``), alphas in
  decreasing order, each started from the previous solution, each run until its
  duality gap is at most :data:`PATH_TOL` ``· q`` (scikit-learn's criterion,
  ``tol · ‖y‖²/n``), or no coordinate moves any more (:func:`enet_path`).
  The gap is the certificate ``"duality_gap"`` of :mod:`gradfit.certificate`.

The validation error of coefficients on other rows with statistics
``(W, μ, S)`` is the exact quadratic form (:func:`validation_mse`)

    MSE = [c; −1]ᵀ S [c; −1] / W + (μₓ·c + b − μ_y)².
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .jit import lazily_compiled

#: each point of an L1 / elastic-net path is solved to a duality gap of at most
#: ``PATH_TOL · q`` (``q`` the target's mean square about its mean): the path's
#: validation errors then agree with scikit-learn's run at ``tol=1e-12`` to ~1e-9
PATH_TOL = 1e-12
#: coordinate-descent sweeps allowed per path point
MAX_SWEEPS = 100_000


@dataclass
class Quadratic:
    """The squared-error problem of a set of rows, from its statistics.

    Attributes
    ----------
    gram : ndarray of shape (d, d)
        ``G``; about the means with an intercept, about zero without.
    cross : ndarray of shape (d, k)
        ``h``.
    target : ndarray of shape (k,)
        ``q``.
    mean_x : ndarray of shape (d,)
    mean_y : ndarray of shape (k,)
    fit_intercept : bool
    """

    gram: np.ndarray
    cross: np.ndarray
    target: np.ndarray
    mean_x: np.ndarray
    mean_y: np.ndarray
    fit_intercept: bool

    @classmethod
    def from_statistics(cls, stats, fit_intercept):
        d = stats.n_features
        scaled = stats.scatter / stats.sum_weights
        gram, cross, target = scaled[:d, :d], scaled[:d, d:], np.diagonal(scaled)[d:].copy()
        mean_x, mean_y = stats.mean[:d], stats.mean[d:]
        if not fit_intercept:
            gram = gram + np.outer(mean_x, mean_x)
            cross = cross + np.outer(mean_x, mean_y)
            target = target + mean_y * mean_y
        return cls(np.ascontiguousarray(gram), np.ascontiguousarray(cross), target, mean_x, mean_y, fit_intercept)

    def diagonal(self):
        """The Gram's diagonal, shape (d,) (:class:`gradfit.block_path.BlockQuadratic` has one too)."""
        return np.diagonal(self.gram)

    def intercepts(self, coefs):
        """Intercepts of ``coefs`` (..., k, d): shape (..., k)."""
        if not self.fit_intercept:
            return np.zeros(coefs.shape[:-1])
        return self.mean_y - coefs @ self.mean_x


def alpha_max(quadratic, l1_ratio):
    """The smallest alpha at which every coefficient is zero: ``2 max|h| / l1_ratio``.

    scikit-learn's ``alpha_max = max|Xᵀy|/(n · l1_ratio)`` in gradfit's units
    (twice theirs, :mod:`gradfit.penalties`); over all outputs, each being its
    own problem.
    """
    return 2.0 * float(np.max(np.abs(quadratic.cross), initial=0.0)) / l1_ratio


def l2_scale(quadratic):
    """The mean eigenvalue of the data term's Hessian ``2G``: ``2 tr(G)/d``, the centre of the L2 grid."""
    diagonal = quadratic.diagonal()
    return 2.0 * float(np.sum(diagonal)) / max(diagonal.shape[0], 1)


def alpha_grid(quadratic, l1_ratio, n_alphas, eps):
    """``n_alphas`` alphas, log-spaced, decreasing (shape (n_alphas,)).

    With an L1 part (``l1_ratio > 0``): from :func:`alpha_max` down to
    ``eps · alpha_max``, as scikit-learn's ``LassoCV``/``ElasticNetCV``. For L2
    alone, where no alpha zeroes the coefficients: from ``s/eps`` down to
    ``s·eps``, ``s`` = :func:`l2_scale`, the alpha at which the penalty's
    curvature equals the data's on an average direction (the grid spans six
    decades about it at ``eps=1e-3``).
    """
    if l1_ratio > 0:
        top = alpha_max(quadratic, l1_ratio)
        resolution = np.finfo(np.float64).resolution
        if top <= 2.0 * resolution:  # as scikit-learn: nothing to explain
            return np.full(n_alphas, 2.0 * resolution)
        return np.geomspace(top, top * eps, num=n_alphas)
    scale = l2_scale(quadratic)
    if scale <= 0:
        scale = 1.0  # every feature constant: any alpha gives the same (zero) coefficients
    return np.geomspace(scale / eps, scale * eps, num=n_alphas)


def ridge_path(quadratic, alphas):
    """L2 solutions for every alpha from one eigendecomposition.

    Returns
    -------
    coefs : ndarray of shape (n_alphas, k, d)
    intercepts : ndarray of shape (n_alphas, k)
    """
    eigenvalues, vectors = scipy.linalg.eigh(quadratic.gram)
    d = eigenvalues.shape[0]
    top = max(float(eigenvalues[-1]), 0.0) if d else 0.0
    eigenvalues = np.maximum(eigenvalues, 0.0)  # rounding can leave a tiny negative one
    # alpha = 0 (given by the user): directions the data do not determine are left at zero
    determined = eigenvalues > top * d * np.finfo(float).eps
    projection = vectors.T @ quadratic.cross  # (d, k)
    alphas = np.asarray(alphas, dtype=float)
    denominator = 2.0 * eigenvalues[None, :] + alphas[:, None]
    with np.errstate(divide="ignore"):
        factor = np.where(determined[None, :] | (alphas[:, None] > 0), 2.0 / denominator, 0.0)
    coefs = np.einsum("de,ae,ek->akd", vectors, factor, projection)
    return coefs, quadratic.intercepts(coefs)


@dataclass
class Path:
    """Solutions along a decreasing alpha grid.

    ``coefs`` (n_alphas, k, d), ``intercepts`` (n_alphas, k); ``dual_gaps``
    (n_alphas, k): each point's duality gap relative to its objective (the
    certificate's value), zero for L2 (solved exactly); ``sweeps`` (n_alphas, k):
    coordinate-descent sweeps; ``converged`` (n_alphas, k) bool.
    """

    coefs: np.ndarray
    intercepts: np.ndarray
    dual_gaps: np.ndarray
    sweeps: np.ndarray
    converged: np.ndarray


def solve_path(quadratic, alphas, l1_ratio, tol=PATH_TOL, max_sweeps=MAX_SWEEPS):
    """The :class:`Path` of ``alphas`` (decreasing): :func:`ridge_path` for L2, else :func:`enet_path`."""
    alphas = np.asarray(alphas, dtype=float)
    shape = (alphas.shape[0], quadratic.cross.shape[1])
    if l1_ratio == 0:
        coefs, intercepts = ridge_path(quadratic, alphas)
        return Path(coefs, intercepts, np.zeros(shape), np.zeros(shape, dtype=int), np.ones(shape, dtype=bool))
    return enet_path(quadratic, alphas, l1_ratio, tol, max_sweeps)


def enet_path(quadratic, alphas, l1_ratio, tol=PATH_TOL, max_sweeps=MAX_SWEEPS):
    """L1 / elastic-net solutions by coordinate descent on the Gram matrix, warm-started along ``alphas``."""
    kernel = compiled_kernel()
    gram = quadratic.gram
    return warm_path(quadratic, alphas, l1_ratio, tol, max_sweeps,
                     lambda cross, target, l1, l2, coef: kernel(gram, cross, target, l1, l2, coef, tol, max_sweeps))


def warm_path(quadratic, alphas, l1_ratio, tol, max_sweeps, solve):
    """The :class:`Path` of ``alphas`` (decreasing), each output's coefficients warm-started along them.

    ``solve(cross, target, l1, l2, coef)`` runs coordinate descent from
    ``coef`` (updated in place) on one output's quadratic (``cross`` its
    ``X̃ᵀy/W``, ``target`` its ``yᵀy/W``) and returns ``(gap, objective,
    sweeps)``: the Gram's products are the solver's business (the dense
    Gram here, the level blocks in :mod:`gradfit.block_path`).
    """
    d, k = quadratic.cross.shape
    n = len(alphas)
    coefs = np.zeros((n, k, d))
    gaps, sweeps, converged = np.zeros((n, k)), np.zeros((n, k), dtype=int), np.zeros((n, k), dtype=bool)
    for output in range(k):
        coef = np.zeros(d)
        cross = np.ascontiguousarray(quadratic.cross[:, output])
        target = float(quadratic.target[output])
        for i, alpha in enumerate(alphas):
            l1, l2 = alpha * l1_ratio, alpha * (1.0 - l1_ratio)
            gap, objective, count = solve(cross, target, l1, l2, coef)
            coefs[i, output] = coef
            # the gap of P = F/2 relative to P: the same ratio as for F
            gaps[i, output] = gap / objective if objective > 0 else 0.0
            sweeps[i, output] = count
            converged[i, output] = gap <= tol * target or count < max_sweeps
    return Path(coefs, quadratic.intercepts(coefs), gaps, sweeps, converged)


def validation_mse(stats, coefs, intercepts):
    """Mean squared error on the rows of ``stats``, averaged over outputs, of every model.

    Parameters
    ----------
    stats : Statistics
        Of the validation rows.
    coefs : ndarray of shape (n_models, k, d)
    intercepts : ndarray of shape (n_models, k)

    Returns
    -------
    ndarray of shape (n_models,)
    """
    d = stats.n_features
    scaled = stats.scatter / stats.sum_weights
    n_models, k, _ = coefs.shape
    total = np.zeros(n_models)
    for output in range(k):
        index = np.r_[np.arange(d), d + output]
        block = scaled[np.ix_(index, index)]
        extended = np.concatenate([coefs[:, output, :], -np.ones((n_models, 1))], axis=1)
        spread = np.einsum("ai,ij,aj->a", extended, block, extended)
        shift = coefs[:, output, :] @ stats.mean[:d] + intercepts[:, output] - stats.mean[d + output]
        total += np.maximum(spread, 0.0) + shift * shift
    return total / k


def _coordinate_descent(gram, cross, target, l1, l2, coef, tol, max_sweeps):
    """Minimize ``P(c) = ½cᵀGc − hᵀc + ½q + a₁‖c‖₁ + ½a₂‖c‖²`` (``a₁ = l1/2``, ``a₂ = l2/2``: F/2) in place.

    Cyclic coordinate descent with ``Gc`` kept up to date (each move of ``c_j``
    costs one column of ``G``); after each sweep the duality gap of
    scikit-learn's ``enet_coordinate_descent_gram``, with a dual point scaled
    from ``h − Gc − a₂c`` to be feasible. Stops when the gap is at most
    ``tol · q`` or a sweep moved no coordinate (a fixed point in floating point).

    Returns ``(gap, P(c), sweeps)``.
    """
    d = cross.shape[0]
    a1, a2 = 0.5 * l1, 0.5 * l2
    product = np.zeros(d)  # G c
    for j in range(d):
        if coef[j] != 0.0:
            for i in range(d):
                product[i] += gram[i, j] * coef[j]
    gap, objective = np.inf, 0.0
    for sweep in range(max_sweeps):
        moved = False
        for j in range(d):
            diagonal = gram[j, j]
            if diagonal <= 0.0:
                continue  # a constant feature: its coefficient stays zero
            old = coef[j]
            rho = cross[j] - product[j] + diagonal * old
            new = max(abs(rho) - a1, 0.0) / (diagonal + a2)
            if rho < 0.0:
                new = -new
            if new != old:
                moved = True
                delta = new - old
                coef[j] = new
                for i in range(d):
                    product[i] += delta * gram[i, j]
        # the duality gap (scikit-learn's formula, divided by n)
        dual_norm = 0.0
        cross_dot = 0.0
        quadratic = 0.0
        l1_norm = 0.0
        squared_norm = 0.0
        for j in range(d):
            value = abs(cross[j] - product[j] - a2 * coef[j])
            if value > dual_norm:
                dual_norm = value
            cross_dot += cross[j] * coef[j]
            quadratic += coef[j] * product[j]
            l1_norm += abs(coef[j])
            squared_norm += coef[j] * coef[j]
        residual = max(target - 2.0 * cross_dot + quadratic, 0.0)  # ‖r‖²/n
        if dual_norm > a1:
            const = a1 / dual_norm
            gap = 0.5 * (residual + residual * const * const)
        else:
            const = 1.0
            gap = residual
        gap += a1 * l1_norm - const * (target - cross_dot) + 0.5 * a2 * (1.0 + const * const) * squared_norm
        objective = 0.5 * residual + a1 * l1_norm + 0.5 * a2 * squared_norm
        if gap <= tol * target or not moved:
            return max(gap, 0.0), objective, sweep + 1
    return max(gap, 0.0), objective, max_sweeps


#: :func:`_coordinate_descent` compiled by Numba (cached on disk), or as Python where Numba is missing
compiled_kernel = lazily_compiled(_coordinate_descent)
