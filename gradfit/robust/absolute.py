"""The absolute error and the pinball loss: a linear program, solved by Huber continuation and an exact finish.

One output ``j`` at a time, in working units (``z = [(x − center)/scale, 1]``),

    P(θ) = (1/W) Σ v_i (|r_i| + c·r_i),   r_i = z_iᵀθ − y_i          (no penalty)

is a linear program: ``c = 0`` is the absolute error, ``c = 1 − 2τ`` the
pinball loss of quantile ``τ`` (:class:`gradfit.losses.Quantile`, twice
scikit-learn's ``ρ_τ(y − ŷ)``). Its dual (``|r| + c·r = max_{u ∈ B} u r`` over
the box ``B = [c − 1, c + 1]``, which holds 0 as ``|c| < 1``; minimizing over
``θ`` leaves the constraint) is

    max_u  D(u) = −(1/W) Σ v_i u_i y_i    s.t.  Σ v_i u_i z_i = 0,  u_i ∈ B,

(the intercept's column of ``z`` makes ``Σ v u = 0`` one of the constraints;
``u → −u`` gives the equivalent ``max (1/W) Σ v u y``), so
``P(θ) − P* ≤ P(θ) − D(u)`` for every feasible ``u`` (weak duality), with
equality at an optimal pair (``u_i = sign(r_i) + c`` where ``r_i ≠ 0``).

**Certificate** (:func:`certificate`, kind ``"lp_duality_gap"``). At any ``θ``:

1. one pass (:func:`gradfit.robust.sums.absolute_sums`): ``P(θ)``,
   ``Σ v (sign(r) + c) z``, and the set ``C`` of the ``m`` rows of smallest ``|r|``
   (with positive weight; ``m`` = :func:`basis_candidates`, grown eightfold
   while every kept row fits exactly: ties), kept whole;
2. ``u_i = sign(r_i) + c`` outside ``C``; on ``C``, the best dual values given
   those: the small linear program ``max −Σ_C v u y`` over ``u_C ∈ B`` with
   ``Σ_C v u z = −Σ_{i∉C} v (sign(r_i) + c) z_i`` (HiGHS, through
   ``scipy.optimize.linprog``; if it is infeasible, bounded least squares
   gets as close as it can);
3. the constraint's residual ``e = (1/W) Σ v u z`` (HiGHS's tolerance, or
   infeasibility) is removed by the ``v``-weighted projection
   ``ũ = u − Z G⁺ e`` (``G = (1/W) Σ v z zᵀ`` from the statistics), and ``ũ``
   is scaled into the box by ``1/max(1, max ũ/(c + 1), min ũ/(c − 1))``
   (towards 0, which is inside ``B``: the equality constraints stay); one
   more pass gives ``max ũ``, ``min ũ``, ``Σ v ũ y`` and the residual
   ``(1/W) Σ v ũ z``, which is checked to be at rounding level (else a second projection; no claim if it stays);
4. the value is ``(P(θ) − max(D(ũ), 0))/P(θ)`` (0 for ``P = 0``; ``D = 0``,
   at ``u = 0``, is always feasible), an upper bound on the
   relative objective gap ``(P(θ) − P*)/P(θ)``.

**Solver** (:func:`solve`). From the least-squares solution, minimize
Huber's loss plus the tilt, ``h_ε(r) + 2εc·r`` (:func:`gradfit.robust.huber.newton`
on :class:`TiltedHuber`), for a shrinking threshold ``ε`` (its minimizer tends
to an LP solution as ``ε → 0``, and ``h_ε/(2ε) + c·r`` is ``|r| + c·r − ε/2``
outside ``ε``: the asymmetric smoothing of the pinball loss), each stage
warm-started from the last. After
every stage, an exact step: with the signs of the rows outside ``C`` held at
their current values, the LP restricted to ``C``,
``min_θ Σ_{i∉C} v (sign(r_i) + c) z_iᵀθ + Σ_C v (|r_i| + c·r_i)``, is solved by
HiGHS (its solution is the multipliers of step 2's program; when that
program is infeasible, ``C`` grows fourfold); if no row outside ``C``
changes sign at its solution, that solution is the LP optimum, and step 2's dual on the same ``C`` proves it (the
certificate comes out at rounding level). Otherwise the certificate's own
pass at the new point gives the next ``C`` and the restricted LP is solved
again (the signs of far rows settle, as in Portnoy and Koenker's
"globbing"), up to :data:`EXACT_ROUNDS` rounds a stage. The point returned
is the best one evaluated (smallest ``P``), never a worse last one.

**A categorical column kept as level codes** (the source's ``block_layout``).
The passes read the codes (:class:`~gradfit.robust.sums.CodedBlock`: a
gather and a ``bincount``), a kept row is its dense columns and its level,
the projections ``G⁺`` solve through the level blocks
(:class:`~gradfit.robust.linalg.BlockGram`) and the Huber stages step by them
(:mod:`gradfit.robust.level_newton`). The restricted program's equations are
written for the rows ``u = [z_dense, e_code, 1]`` (:func:`_constraints`, the
coordinates ``φ = Mθ`` of :meth:`~gradfit.robust.sums.CodedColumns.rows`):
a SciPy sparse matrix with at most ``n_dense + 2`` entries a row, which HiGHS
takes as it is, where ``Z``'s centred dummies would fill every row. The
certificate is the same number as on the dense dummies: no dense
``n × L`` or ``L × L`` array is ever formed.

``B = [c − 1, c + 1] = 2·[−τ, 1 − τ]``: with scikit-learn's residual ``y − ŷ``
(``u → −u``) and its unscaled ``ρ_τ`` this is the classic ``[τ − 1, τ]`` of
quantile regression's dual.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg

from .huber import HuberProblem, newton
from .sums import (
    CodedColumns,
    absolute_dual_sums,
    absolute_sums,
    add_sums,
    merge_nearest,
    near_rows,
)

#: the box of the dual variables of the absolute error (the pinball loss's: shifted by c = 1 − 2τ)
DUAL_BOX = (-1.0, 1.0)
#: exact steps per continuation stage (each: one LP on the candidate rows, two passes)
EXACT_ROUNDS = 3
#: the Huber threshold shrinks by this factor from stage to stage
SHRINK = 0.1
#: Newton iterations per continuation stage: a stage needs to get near, not to converge
STAGE_ITERATIONS = 30
#: residuals below this fraction of the mean absolute residual count as exact fits (ties)
TIE = 1e-9
#: the constraint residual counted as rounding, relative to max_j sqrt(G_jj)
CONSTRAINT_ROUNDING = 1e-9


class TiltedHuber(HuberProblem):
    """The continuation's smooth stage: Huber's loss plus ``2ε·c·r``, ``c = tilt``.

    ``F(θ) = (1/W) Σ v h_ε(r) + 2εc·(z̄ᵀθ − ȳ)``, ``z̄ = (1/W) Σ v z`` and ``ȳ``
    from the statistics (the tilt is linear in ``θ``: no pass of its own, and
    the Hessian is Huber's). Its minimizer tends to the pinball loss's as
    ``ε → 0``; ``c = 0`` is plain Huber. Huber's dual certificate does not
    hold for the tilted loss, so :func:`gradfit.robust.huber.newton` stops a
    tilted stage on its Newton decrement alone (:attr:`certifiable`).
    """

    def __init__(self, *args, tilt=0.0):
        super().__init__(*args)
        self.tilt = float(tilt)
        self.certifiable = self.tilt == 0.0
        self.mean_features = np.append(self.feature_mean, [1.0] * self.fit_intercept)

    def _linear(self, theta):
        return 2.0 * self.epsilon * self.tilt * (float(self.mean_features @ theta) - self.target_mean)

    def line_values(self, theta, direction, steps):
        values = super().line_values(theta, direction, steps)
        return values + np.array([self._linear(theta + t * direction) for t in steps])

    def evaluate(self, theta, hessian=True, near=None):
        out = super().evaluate(theta, hessian=hessian, near=near)
        out["F"] += self._linear(theta)
        out["gradient"] = out["gradient"] + 2.0 * self.epsilon * self.tilt * self.mean_features
        return out


def basis_candidates(n_params, n_samples):
    """``m``: rows kept as candidates for the optimal basis (``p`` of them are in it)."""
    return int(min(n_samples, max(10 * n_params, 200)))


def dual_box(quantile):
    """``B = [c − 1, c + 1]``, ``c = 1 − 2τ``: the box of the dual variables of quantile ``τ``."""
    tilt = 1.0 - 2.0 * quantile
    return (DUAL_BOX[0] + tilt, DUAL_BOX[1] + tilt)


class AbsoluteProblem:
    """One output of the absolute-error problem (``quantile=0.5``), or the pinball loss's, over a source."""

    def __init__(self, source, column, scaling, fit_intercept, statistics, quantile=0.5):
        self.source, self.column = source, column
        self.tilt = 1.0 - 2.0 * float(quantile)
        self.box = dual_box(quantile)
        self.scaling, self.fit_intercept = scaling, fit_intercept
        self.statistics = statistics
        self.sum_weights = float(statistics.sum_weights)
        self.keep = basis_candidates(scaling.scale.shape[0] + fit_intercept, statistics.n_samples)
        self.passes = 0
        #: a categorical column kept as level codes (the sums read the codes; the programs' rows are sparse), or None
        self.layout = getattr(source, "block_layout", None)
        self.coding = None if self.layout is None else CodedColumns(self.layout, scaling, fit_intercept)

    def collect(self, theta):
        """Step 1 of the certificate: a dict with ``P``, ``sign_features`` (raw sum), ``near``.

        One pass, more when ties are many: while every kept row fits exactly
        (``|r| ≤`` :data:`TIE` ``· P``; data with many equal targets and
        discrete features have many rows on the optimal fit, all with a free
        dual value) there may be more such rows outside, so ``m`` grows
        eightfold and the pass is run again.
        """
        while True:
            sums = self.source.reduce(
                absolute_sums(theta, self.column, self.keep, self.scaling, self.fit_intercept, self.tilt,
                              self.layout),
                merge_nearest(self.keep),
            )
            self.passes += 1
            sums["P"] = sums["value"] / self.sum_weights
            sums["theta"] = theta
            near = sums["near"]
            full = near is not None and near["r"].size >= self.keep and self.keep < self.statistics.n_samples
            if not (full and np.max(np.abs(near["r"])) <= TIE * sums["P"]):
                return sums
            self.keep = min(8 * self.keep, self.statistics.n_samples)


def _outside(collected, tilt, coding=None):
    """``Σ_{i∉C} v (sign(r_i) + c) z_i`` (raw sum) and the candidate rows, sorted by source index."""
    near = collected["near"]
    order = np.argsort(near["index"])
    near = {key: value[order] for key, value in near.items()}
    inside = near_rows(near, coding).T @ (near["v"] * (np.sign(near["r"]) + tilt))
    return collected["sign_features"] - inside, near


def exact_step(problem, collected):
    """:func:`restricted`'s exact step from ``collected`` (step 1 at a point), or ``None``."""
    outside, near = _outside(collected, problem.tilt, problem.coding)
    return restricted(near, outside, problem.box, problem.coding, dual=False)[1]


def _constraints(near, outside, coding):
    """Step 2's equations ``A u_C = b``: ``A = (V_C Z_C)ᵀ`` (p, m) and ``b = −outside``.

    On a column kept as level codes (``coding``, :class:`~gradfit.robust.sums.CodedColumns`)
    the same equations in the coordinates ``φ = Mθ``, multiplied by ``M⁻ᵀ``
    (invertible: the same solutions): ``A`` is then the sparse
    ``(V_C U_C)ᵀ`` of the rows ``u = [z_dense, e_code, 1]`` (at most
    ``n_dense + 2`` entries a column, never a dense ``p × m`` block) and the
    multipliers are ``φ``, which :meth:`~gradfit.robust.sums.CodedColumns.to_theta` maps back.
    """
    if coding is None:
        return (near["z"] * near["v"][:, None]).T, -outside
    rows = coding.rows(near["z"], near["codes"])
    return (scipy.sparse.diags(near["v"]) @ rows).T.tocsr(), -coding.to_phi_dual(outside)


def restricted(near, outside, box=DUAL_BOX, coding=None, dual=True):
    """Step 2: ``u_C`` in the box maximizing ``−Σ_C v u y`` with ``Σ_C v u z = −outside``, and the exact step.

    One small linear program (``m`` variables bounded by ``box``, ``p``
    equations) by HiGHS. Its equations' multipliers ``λ`` solve its dual, the
    restricted primal ``min_θ outsideᵀθ + Σ_C v (|r_i| + c·r_i)`` (``box = [c − 1, c + 1]``;
    stationarity gives
    ``v_i y_i = v_i z_iᵀλ`` on rows strictly inside the box: ``θ = λ``
    interpolates them): the exact step. Returns ``(u_C, θ or None)``; when
    the program is infeasible (the rows of ``C`` cannot balance the others'
    signs: the restricted primal is unbounded), bounded least squares gets
    ``u_C`` as close as it can and there is no step.

    ``coding``: a column kept as level codes; the equations are then sparse
    (:func:`_constraints`), and an infeasible program's ``u_C`` is the signs'
    ``sign(r_i) + c`` (bounded least squares by LSMR took minutes on 90,000
    sparse rows; the certificate's projection corrects either, and its bound
    is then loose: :func:`solve` grows ``C``). ``dual=False``: the step alone
    (``u_C`` is ``None`` when the program is infeasible).
    """
    A, rhs = _constraints(near, outside, coding)
    cost = near["v"] * near["y"]
    # HiGHS reads |values| ≥ 1e20 as infinite: costs in the target's units are scaled
    # to at most 1 (the solution is the same; the multipliers scale back).
    unit = float(np.max(np.abs(cost), initial=0.0)) or 1.0
    # HiGHS's presolve spent 100 s on a sparse program that its simplex solves in 0.4 s (1,500 levels, 15,000
    # rows): off for the sparse rows, whose program has nothing for it to remove but the levels' structure
    options = None if coding is None else {"presolve": False}
    result = scipy.optimize.linprog(cost / unit, A_eq=A, b_eq=rhs, bounds=box, method="highs", options=options)
    if result.status == 0:
        multipliers = unit * np.asarray(result.eqlin.marginals, dtype=float)
        if coding is None:
            return np.clip(result.x, *box), multipliers
        return _refine(A, rhs, np.clip(result.x, *box), box), coding.to_theta(multipliers)
    if not dual:
        return None, None
    if coding is not None:
        return np.clip(np.sign(near["r"]) + box[0] + 1.0, *box), None  # c = box[0] + 1
    return scipy.optimize.lsq_linear(A, rhs, bounds=box).x, None


def _refine(A, rhs, dual, box):
    """``u_C`` with its equations' residual ``A u_C − b`` removed on the basis rows: one step of iterative refinement.

    The simplex's basic solution carries the rounding of its factorization
    (``‖A u − b‖ ≈ 1e-14 W`` at 5,200 levels); the certificate's projection
    spreads such a residual over every row, ``W/W_l`` times larger on a
    level's few rows, and the shrink into the box then costs the bound about
    ``L`` times the residual (1.7e-10 relative at 5,200 levels). On the rows
    strictly inside the box (the basis: ``p`` of them where the program is
    nondegenerate) the sparse square system ``A_B δ = b − A u`` is solved
    exactly (SuperLU); the step is kept where it stays in the box and lowers
    the residual, else ``u_C`` is returned as it was (the projection corrects it).
    """
    low, high = box
    margin = 1e-9 * (high - low)
    basis = np.flatnonzero((dual > low + margin) & (dual < high - margin))
    if basis.size != A.shape[0]:
        return dual
    residual = rhs - A @ dual
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.sparse.linalg.MatrixRankWarning)
        try:
            step = scipy.sparse.linalg.spsolve(A[:, basis].tocsc(), residual)
        except RuntimeError:  # a singular basis
            return dual
    refined = dual.copy()
    refined[basis] += step
    if (not np.all(np.isfinite(step)) or np.any(refined[basis] < low) or np.any(refined[basis] > high)
            or np.max(np.abs(rhs - A @ refined)) >= np.max(np.abs(residual))):
        return dual
    return refined


def certificate(problem, gram, collected):
    """``(P(θ) − D(ũ), P(θ), step)`` for one output, from step 1's ``collected`` (see the module docstring).

    ``P(θ) − D`` is ``None`` when the dual point could not be made feasible to
    rounding; ``step`` is :func:`restricted`'s exact step from ``θ`` (or
    ``None``). Costs one pass (two when a second projection is needed).
    """
    W = problem.sum_weights
    outside, near = _outside(collected, problem.tilt, problem.coding)
    dual_c, step = restricted(near, outside, problem.box, problem.coding)
    residual = (outside + near_rows(near, problem.coding).T @ (near["v"] * dual_c)) / W
    correction = gram.solve(residual)
    limit = CONSTRAINT_ROUNDING * float(np.sqrt(gram.largest_diagonal))
    for _ in range(3):
        dual = problem.source.reduce(
            absolute_dual_sums(collected["theta"], problem.column, near["index"], dual_c, correction,
                               problem.scaling, problem.fit_intercept, problem.tilt, problem.layout),
            add_sums,
        )
        problem.passes += 1
        residual = dual["u_features"] / W
        if np.max(np.abs(residual)) <= limit * max(1.0, dual["max_u"], -dual["min_u"]):
            break
        correction = correction + gram.solve(residual)
    else:
        return None, collected["P"], step
    low, high = problem.box  # low < 0 < high: shrinking towards 0 keeps Σ v ũ z = 0
    shrink = max(1.0, dual["max_u"] / high, dual["min_u"] / low)
    lower_bound = -(dual["u_target"] / W) / shrink
    return collected["P"] - max(lower_bound, 0.0), collected["P"], step  # D = 0 is valid too (P* ≥ 0)


def solve(problem, gram, theta, *, max_iter, tol, callback=None):
    """Minimize one output's absolute error (or pinball loss); see the module docstring.

    Returns
    -------
    theta : ndarray of shape (p,)
        The best point evaluated.
    bound : tuple
        ``(P − D or None, P)`` of its certificate.
    iterations : int
        Newton iterations plus exact steps.
    """
    collected = problem.collect(theta)
    best = {"P": collected["P"], "theta": theta, "bound": None}
    iterations = 0

    def consider(collected, bound=None):
        if collected["P"] < best["P"] or (collected["P"] == best["P"] and bound is not None):
            best.update(P=collected["P"], theta=collected["theta"], bound=bound)
        if callback is not None:
            callback(best["P"], best["theta"])  # the fit's curve: the best so far

    # the first threshold: the residuals' mean absolute size at least squares
    epsilon = max(collected["P"], np.finfo(float).tiny)
    floor = 1e-10 * epsilon
    while iterations < max_iter and epsilon >= floor:
        huber = TiltedHuber(problem.source, problem.column, epsilon, problem.scaling, problem.fit_intercept,
                            None, problem.statistics, tilt=problem.tilt)
        point, _, used = newton(huber, theta, max_iter=min(STAGE_ITERATIONS, max_iter - iterations),
                                tol=1e-10, gram=gram)
        problem.passes += huber.passes
        iterations += used
        theta = point["theta"]
        collected = problem.collect(theta)
        consider(collected)
        step = exact_step(problem, collected)
        for _ in range(EXACT_ROUNDS):
            iterations += 1
            if step is None:
                if problem.keep >= problem.statistics.n_samples:
                    break
                # C cannot balance the other rows' signs: more candidates, from the same point
                problem.keep = min(4 * problem.keep, problem.statistics.n_samples)
                collected = problem.collect(collected["theta"])
                step = exact_step(problem, collected)
                continue
            collected = problem.collect(step)
            gap, P, step = certificate(problem, gram, collected)
            consider(collected, (gap, P))
            if gap is not None and gap <= tol * P:
                return best["theta"], (gap, P), iterations
        epsilon *= SHRINK
    if best["bound"] is None:
        best["bound"] = certificate(problem, gram, problem.collect(best["theta"]))[:2]
    return best["theta"], best["bound"], iterations
