"""Certificates for the squared error, and the one hook every loss goes through.

:func:`certify` is the single entry point: it dispatches on what the loss and
the penalty can show (:data:`CERTIFIERS`, keyed by the loss's name and made
from what each loss of the table of parts declares) and returns a
:class:`~gradfit.certificate.Certificate`. A loss without an entry gets
``kind="none"``: never converged.

The squared error is certified from the sufficient statistics, in the
*reference units* (:func:`gradfit.refine.refinement_scaling`: features centred
when there is an intercept and divided by their spread ``σ``, the standard
deviation, or the root mean square without an intercept). In those units the
Hessian is as well conditioned as the data allow, whatever units training ran
in, so the decisions made here (the rank, the optimum) do not depend on the
data's units.

``"distance"`` (no penalty, or L2). ``F`` is a quadratic with Hessian ``H``,
so ``θ − θ* = H⁺∇F(θ)`` exactly (``H⁺`` on the eigendirections the data
determine; along the others every point is optimal). With ``Δ = H⁺∇F(θ)``
split into ``Δ_w = (coef − coef*)·σ`` and the intercept's ``Δ_b`` (in the
data's units), per output::

    value = max(‖Δ_w‖₂ / ‖coef*·σ‖₂,  |Δ_b| / max(|b*|, σ_y))  +  ε·κ(H)

(``σ_y`` the target's standard deviation, its root mean square without an
intercept, replacing a zero ``‖coef*·σ‖``; the largest over outputs). The
last term is the rounding uncertainty of ``θ*`` itself, ``ε`` the machine
epsilon and ``κ(H)`` the condition number of ``H`` on the determined
directions: the statistics cannot place the optimum closer than that. After
the refinement epochs of ``optimizer="cg"`` (:mod:`gradfit.refine`) the last
refinement step, a Newton step with a gradient from a data pass, is the
``Δ`` (of the iterate before it: an upper bound), and no ``ε·κ`` is added.

``"duality_gap"`` (L1, elastic net): ``(F(θ) − D(ν)) / F(θ)``, ``F`` gradfit's
objective and ``D`` the dual of scikit-learn's ``enet_coordinate_descent`` at
the dual point scaled from the residuals ``ν ∝ y − Xcoef − b*(coef)``
(``b*`` the best intercept for those coefficients): with ``P = F/2`` per
row weight, ``α = l1/2``, ``β = l2/2``, ``r² = ‖R‖²/W``, ``g = XᵀR/W − β·coef``::

    c = min(1, α / max|g|)
    D/W-part:  P_c − [½ r²(1 + c²) + α‖coef‖₁ − c·Rᵀy/W + ½β(1 + c²)‖coef‖²]

``D(ν) ≤ F*``, so the value bounds the relative objective gap
``(F(θ) − F*) / F(θ)`` (0 when ``F(θ) = 0``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from . import registry
from .certificate import Certificate
from .engines import StatisticsEngine
from .refine import refinement_scaling

EPS = np.finfo(np.float64).eps
#: the most features for which the squared error's certificate is computed
#: (a d×d scatter and its eigendecomposition; with the pass engine one more pass)
MAX_FEATURES = 2000


class QuadraticReference:
    """A squared-error problem seen from the reference units: θ*, ``H⁺`` and the certificates.

    Parameters
    ----------
    statistics : Statistics
        With the full centred scatter.
    penalty : ElasticNet or None
    fit_intercept : bool

    Attributes
    ----------
    scaling : Scaling
        The reference units.
    engine : StatisticsEngine
        The data term in those units.
    eigenvalues : ndarray of shape (n_params,)
        Of the smooth part's Hessian (the data term plus the L2 part), ascending.
    rank : int
        Directions the data (and penalty) determine.
    condition_number : float
        ``κ(H)`` on those directions.
    """

    def __init__(self, statistics, penalty, fit_intercept):
        self._set_up(statistics, penalty, fit_intercept, StatisticsEngine)
        d, k = statistics.n_features, statistics.n_outputs
        hessian = self.engine.hessian()
        if penalty is not None and penalty.l2 > 0:
            hessian[np.arange(d), np.arange(d)] += penalty.hessian_diagonal(self.scaling.scale, k)
        self.hessian = hessian
        eigenvalues, vectors = scipy.linalg.eigh(hessian)
        top = max(float(eigenvalues[-1]), 0.0)
        keep = eigenvalues > top * hessian.shape[0] * EPS
        self.eigenvalues = eigenvalues
        self.rank = int(np.sum(keep))
        self.condition_number = top / float(eigenvalues[keep][0]) if self.rank else np.inf
        self._basis = vectors[:, keep]
        self._inverse = 1.0 / eigenvalues[keep]
        self._d = d
        self.target_spread = _target_spread(statistics, fit_intercept)

    def _set_up(self, statistics, penalty, fit_intercept, engine_class):
        """The statistics, the reference units and ``engine_class``'s engine on them."""
        self.statistics = statistics
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.scaling = refinement_scaling(statistics, fit_intercept)
        with np.errstate(over="ignore", invalid="ignore"):
            self.engine = engine_class(statistics, self.scaling, fit_intercept)

    # -- the quadratic -----------------------------------------------------------

    def params_from_raw(self, coef, intercept):
        """``coef`` (k, d), ``intercept`` (k,) → parameters (n_params, k) in the reference units."""
        return self.scaling.from_raw(np.asarray(coef, float), np.asarray(intercept, float), self.fit_intercept)

    def gradient(self, params):
        """``∇F`` of the smooth part (data term + L2) at ``params`` (reference units)."""
        _, grad = self.engine.value_and_grad(params)
        if self.penalty is not None and self.penalty.l2 > 0:
            grad[: self._d] += self.penalty.smooth_gradient(params[: self._d], self.scaling.scale)
        return grad

    def solve(self, rhs):
        """``H⁺ rhs`` on the determined directions; ``rhs`` (n_params, k)."""
        return self._basis @ ((self._basis.T @ rhs) * self._inverse[:, None])

    def optimum(self, params=None):
        """θ* (reference units) of the smooth quadratic: one exact Newton step from ``params`` (default θ̂)."""
        start = self.engine.reference if params is None else params
        return start - self.solve(self.gradient(start))

    def to_raw(self, params):
        return self.scaling.to_raw(params, self.fit_intercept)

    # -- certificates ------------------------------------------------------------

    def relative_distance(self, step, optimum):
        """The certificate's measure of ``step = θ − θ*`` (reference units) against ``θ*``, per output."""
        d = self._d
        size = np.linalg.norm(optimum[:d], axis=0)
        size = np.where(size > 0, size, self.target_spread)
        value = np.linalg.norm(step[:d], axis=0) / size
        if self.fit_intercept:
            # The intercept in the data's units: b = b̃ − center·coef.
            coef_step = step[:d] / self.scaling.scale[:, None]
            coef_optimum = optimum[:d] / self.scaling.scale[:, None]
            bias_step = step[d] - self.scaling.center @ coef_step
            bias_optimum = optimum[d] - self.scaling.center @ coef_optimum
            value = np.maximum(value, np.abs(bias_step) / np.maximum(np.abs(bias_optimum), self.target_spread))
        return value

    def distance(self, params, tol):
        """The ``"distance"`` certificate of ``params`` (reference units)."""
        with np.errstate(over="ignore", invalid="ignore"):
            step = self.solve(self.gradient(params))
            # θ* from the statistics' own least-squares point, not params − step: far from the
            # optimum that difference cancels (θ ~ 1e16 left θ* with no correct digit)
            value = float(np.max(self.relative_distance(step, self.optimum())))
        allowance = EPS * self.condition_number
        if not np.isfinite(value) or not np.isfinite(allowance):
            return Certificate("distance", None, tol, "the distance to the optimum is not finite")
        return Certificate(
            "distance", float(value + allowance), tol,
            f"relative distance to the least-squares optimum, theta - theta* = H^-1 grad F, "
            f"in standardized units ({value:.3g}), plus the optimum's rounding eps*cond(H) = {allowance:.3g}",
        )

    def duality_gap(self, params, tol):
        """The ``"duality_gap"`` certificate of ``params`` (reference units), L1 or elastic net."""
        d, k = self._d, self.statistics.n_outputs
        penalty = self.penalty
        scale = self.scaling.scale
        coef = params[:d] / scale[:, None]
        # Primal at θ as it is (its intercept included).
        error = self.engine.squared_error_per_output(params)
        l1_norm = np.abs(coef).sum(axis=0)
        l2_norm = (coef * coef).sum(axis=0)
        primal = error + penalty.l1 * l1_norm + 0.5 * penalty.l2 * l2_norm
        # Dual from the residuals of the best intercept for these coefficients
        # (the reference units are centred: that intercept is the target's mean).
        best = params.copy()
        if self.fit_intercept:
            best[d] = self.engine.target_mean
        residual_square = self.engine.squared_error_per_output(best)
        _, grad = self.engine.value_and_grad(best)
        correlation = -(k / 2.0) * grad[:d] * scale[:, None]  # XᵀR / W per raw feature
        alpha, beta = penalty.l1 / 2.0, penalty.l2 / 2.0
        dual_norm = np.max(np.abs(correlation - beta * coef), axis=0) if d else np.zeros(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            const = np.where(dual_norm > alpha, alpha / dual_norm, 1.0)
        r_dot_y = residual_square + np.einsum("ij,ij->j", coef, correlation)
        gap = (0.5 * residual_square * (1 + const**2) + alpha * l1_norm - const * r_dot_y
               + 0.5 * beta * (1 + const**2) * l2_norm)
        centred_primal = 0.5 * residual_square + alpha * l1_norm + 0.5 * beta * l2_norm
        dual = 2.0 * (centred_primal - gap)  # in F's units
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(primal > 0, (primal - dual) / primal, 0.0)
        value = float(np.max(np.maximum(relative, 0.0)))
        if not np.isfinite(value):
            return Certificate("duality_gap", None, tol, "the duality gap is not finite")
        return Certificate(
            "duality_gap", value, tol,
            "relative duality gap (F - D)/F at a dual point scaled from the residuals "
            "(as scikit-learn's coordinate descent), a bound on the relative objective gap",
        )

    def certify(self, params, tol):
        """The certificate this problem gives ``params`` (reference units)."""
        if self.penalty is not None and self.penalty.has_prox:
            return self.duality_gap(params, tol)
        return self.distance(params, tol)


def _target_spread(statistics, fit_intercept):
    """σ_y per output: the target's standard deviation (root mean square without an intercept), never 0."""
    d = statistics.n_features
    variance = np.maximum(statistics.scatter_diagonal[d:] / statistics.sum_weights, 0.0)
    mean = statistics.mean[d:]
    spread = np.sqrt(variance if fit_intercept else variance + mean * mean)
    return np.where(spread > 0, spread, np.where(np.abs(mean) > 0, np.abs(mean), 1.0))


class BlockReference(QuadraticReference):
    """:class:`QuadraticReference` on :class:`~gradfit.engines.categorical.BlockStatistics`.

    The same certificates; ``(H + P)⁻¹`` (``P`` the L2 part's diagonal) by the
    Schur complement of the level block
    (:meth:`~gradfit.engines.categorical.BlockStatisticsEngine.solve`),
    never a dense d × d matrix. ``eigenvalues`` holds the extreme two of ``H + P``,
    computed when first asked (the duality gap of an L1 part needs none).
    """

    def __init__(self, statistics, penalty, fit_intercept):
        from .engines.categorical import BlockStatisticsEngine

        self.statistics = statistics
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.scaling = refinement_scaling(statistics, fit_intercept)
        with np.errstate(over="ignore", invalid="ignore"):
            self.engine = BlockStatisticsEngine(statistics, self.scaling, fit_intercept, penalty)
        self._d = statistics.n_features
        self.target_spread = _target_spread(statistics, fit_intercept)

    @property
    def eigenvalues(self):
        return self.engine.smooth_eigenvalues

    @property
    def rank(self):
        # an L2 part determines every direction the data leave free
        return self.engine.rank if self.engine.penalty is None else self._d + self.fit_intercept

    @property
    def condition_number(self):
        bottom, top = float(self.eigenvalues[0]), float(self.eigenvalues[-1])
        return top / bottom if bottom > 0 else np.inf

    def solve(self, rhs):
        """``(H + P)⁻¹ rhs``, ``rhs`` (n_params, k)."""
        return self.engine.solve(rhs)

    def optimum(self, params=None):
        """:meth:`QuadraticReference.optimum`; θ* from θ̂ kept, for the certificate asks for it every epoch."""
        if params is not None:
            return super().optimum(params)
        if getattr(self, "_optimum", None) is None:
            self._optimum = super().optimum()
        return self._optimum.copy()


def refined_certificate(reference, last_step, params, tol):
    """``"distance"`` after refinement: the last Newton step (data-pass gradient) bounds the distance.

    ``last_step`` and ``params`` in the reference units (those refinement runs in).
    """
    if last_step is None:
        return None
    value = float(np.max(reference.relative_distance(last_step, params)))
    return Certificate(
        "distance", value, tol,
        "relative size of the last refinement step (a Newton step whose gradient came from a data pass), "
        "which bounds the distance to the least-squares optimum",
    )


def squared_error(problem, coef, intercept, tol, *, reference=None, refinement=None, source=None):
    """Certificate of a squared-error fit from its :class:`QuadraticReference` (``None``: none)."""
    if reference is None:
        return Certificate("none", None, tol, "the statistics the certificate needs were not collected")
    params = reference.params_from_raw(coef, intercept)
    if refinement is not None and getattr(refinement, "last_step", None) is not None:
        if not (reference.penalty is not None and reference.penalty.has_prox):
            return refined_certificate(reference, refinement.last_step, params, tol)
    return reference.certify(params, tol)


def robust_loss(problem, coef, intercept, tol, *, reference=None, refinement=None, source=None):
    """Huber's gradient bound, the absolute error's and the pinball loss's LP duality gap.

    See :func:`gradfit.robust.robust_certificate`.
    """
    from .robust import robust_certificate

    params = problem.scaling.from_raw(coef, intercept, problem.objective.engine.fit_intercept)
    return robust_certificate(problem, params, tol)


def _certifier_of(loss_class):
    """What a loss's capabilities let be proved: the exact distance for a quadratic cost, the robust
    losses' bounds (:func:`gradfit.robust.serves`), or nothing."""
    from .robust import serves

    if loss_class.quadratic:
        return squared_error
    return robust_loss if serves(loss_class) else None


#: loss name → ``certifier(problem, coef, intercept, tol, *, reference, refinement, source) -> Certificate``;
#: a loss without an entry is never certified (``kind="none"``)
CERTIFIERS = {name: certifier for name, part in registry.LOSSES.items()
              if (certifier := _certifier_of(part.loss_class)) is not None}


def certify(problem, coef, intercept, tol, *, reference=None, refinement=None, source=None):
    """The certificate of a finished fit: the single entry every surface reads.

    Parameters
    ----------
    problem : gradfit.fitting.Problem
        Its ``loss`` picks the certifier.
    coef : ndarray of shape (n_outputs, n_features)
    intercept : ndarray of shape (n_outputs,)
        In the data's units.
    tol : float or None
        The threshold (``None``: the value is reported, ``converged`` is false).
    reference : QuadraticReference, optional
        For the squared error: the statistics' view (built by the caller, who
        knows whether the data may be read once more).
    refinement : gradfit.result.Refinement, optional
    source : Source, optional
        The data, for certifiers that need a pass.

    Returns
    -------
    Certificate
    """
    certifier = CERTIFIERS.get(problem.loss.name)
    if certifier is None:
        return Certificate("none", None, tol, f"loss={problem.loss.name!r} has no certificate: no claim is made")
    return certifier(problem, coef, intercept, tol, reference=reference, refinement=refinement, source=source)
