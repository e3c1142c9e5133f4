"""Huber's loss: damped Newton steps from inlier statistics, and a dual certificate.

One output column ``j`` at a time, in working units, the problem is

    F(θ) = (1/W) Σ v_i h(z_iᵀθ − y_i) + l1‖coef‖₁ + (l2/2)‖coef‖²,    coef = w / scale,

with ``h`` gradfit's Huber loss (``r²`` inside ``ε``, ``2ε|r| − ε²`` beyond;
:class:`gradfit.losses.Huber`), ``W = Σ v`` and ``(l1, l2)`` the penalty's
parts (:class:`gradfit.penalties.ElasticNet`); over ``k`` outputs gradfit's
objective is the mean of the ``k`` such problems.

**Solver** (:func:`newton`, L1 part zero). ``F`` is convex and piecewise
quadratic. Each iteration costs one pass (:func:`gradfit.robust.sums.huber_sums`),
which returns ``F``, ``∇F`` and the generalized Hessian
``H = (2/W) Σ_{|r_i|≤ε} v_i z_i z_iᵀ + l2·diag(1/scale², 0)`` — the statistics
of the inlier rows, as iteratively reweighted least squares (glum) forms them
for a GLM. The step ``Δ = −(H + μI)⁻¹∇F`` (Levenberg–Marquardt damping ``μ``,
needed where fewer inliers than parameters leave ``H`` singular; divided by
10 after a full step, multiplied by 10 after a backtrack, never below
``1e-12·λmax(2G)``) is a descent direction whose condition number is bounded,
and an Armijo line search (the full step, else the best of 40 halvings
evaluated in one pass) makes the method globally convergent; once the inlier set settles the full step lands on the
optimum of that quadratic piece, which is ``F``'s optimum (locally quadratic
convergence). Each trial point's pass already carries the next Hessian.
On a categorical column kept as level codes the pass collects the inliers'
level moments instead, and the step is solved by the level blocks
(:class:`gradfit.robust.level_newton.LevelHessian`): no dense Hessian.

**Certificate** (:func:`certificate`, kind ``"gradient_bound"``; any penalty).
Fenchel duality: ``h(r) = max_{|s| ≤ 2ε} (s r − s²/4)``, so for every ``s``
with ``|s_i| ≤ 2ε`` and (with an intercept) ``Σ v s = 0``, and every ``θ``,

    F(θ) ≥ D(s) = −(1/W) Σ v_i (s_i y_i + s_i²/4) − φ*(g(s)),     g(s) = (1/W) Σ v_i s_i x_i,

where ``φ*(g) = sup_c (−gᵀc − l1‖c‖₁ − (l2/2)‖c‖²)`` is ``Σ_j (|g_j| − l1)₊²/(2 l2)``
for ``l2 > 0``, and for ``l2 = 0`` is 0 when ``‖g‖∞ ≤ l1``, else ``+∞``. Hence
``F(θ) − F* ≤ F(θ) − D(s)`` for any such ``s``: a rigorous bound. The ``s`` is
built from the gradient at ``θ``: ``s_i = h'(r_i) = 2·clip(r_i, −ε, ε)`` (the
optimal dual point at the optimum), then

* unpenalized (``l1 = l2 = 0``; then ``g`` must vanish): projected onto
  ``{s : Σ v s z = 0}`` in the ``v``-weighted norm, ``s̃ = s − Z G⁺ ∇F``
  (``G = (1/W)Σ v z zᵀ`` from the statistics; ``(1/W) Σ v s z = ∇F``), one
  more pass for ``max|s̃|`` and the sums; the constraint residual
  ``(1/W)Σ v s̃ z`` is checked to be at rounding level (a second correction
  otherwise, and no claim — value ``None`` — if it stays above);
* penalized: only ``Σ v s = 0`` is needed: ``s̃ = s − mean_v(s)`` (no pass);

and scaled by ``τ ∈ [0, 2ε/max|s̃|]`` (and ``τ‖g‖∞ ≤ l1`` when ``l2 = 0``),
``τ`` maximizing the concave ``D(τ s̃)``. Over ``k`` outputs the bounds add up.
The certificate's value is ``(F(θ) − D)/F(θ)`` (0 for ``F(θ) = 0``), an upper
bound on the relative objective gap ``(F(θ) − F*)/F(θ)``. At the optimum
``∇F = 0``, ``s̃ = s`` and ``D = F*`` (strong duality), so the bound
shrinks with the gradient, the quantity it is built from.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from ..errors import DataError
from .level_newton import LevelHessian
from .sums import CodedColumns, add_sums, huber_dual_sums, huber_line_sums, huber_sums

#: Armijo's sufficient-decrease fraction
ARMIJO = 1e-4
#: the steps the line search tries at once when the full step fails: 2^-1 … 2^-40
LINE_STEPS = 0.5 ** np.arange(1, 41)
#: continuation stages at most (thresholds from the residuals' size down to ε), and iterations a stage
MAX_STAGES = 8
STAGE_ITERATIONS = 50
#: the inlier Hessian is updated by the rows that changed at most this many times, then rebuilt
REBUILD_HESSIAN = 20
#: a Newton decrement below this fraction of F is rounding
ROUNDING = 1e-15
#: the constraint residual counted as rounding, relative to 2ε·max_j sqrt(G_jj)
CONSTRAINT_ROUNDING = 1e-9


class HuberProblem:
    """One output of the Huber problem over a source: evaluations by passes.

    :attr:`certifiable`: whether :func:`certificate` holds for it (a subclass
    that changes the objective, :class:`gradfit.robust.absolute.TiltedHuber`,
    says no; :func:`newton` then stops on the decrement alone).

    Parameters
    ----------
    source : Source
    column : int
        The output.
    epsilon : float
    scaling : Scaling
    fit_intercept : bool
    penalty : ElasticNet or None
    statistics : Statistics
        The moments (``W``, the weighted means of the features and targets).
    """

    certifiable = True

    def __init__(self, source, column, epsilon, scaling, fit_intercept, penalty, statistics):
        self.source, self.column, self.epsilon = source, column, float(epsilon)
        self.scaling, self.fit_intercept, self.penalty = scaling, fit_intercept, penalty
        self.sum_weights = float(statistics.sum_weights)
        d = scaling.scale.shape[0]
        self.target_mean = float(statistics.mean[d + column])
        self.statistics_rows = int(statistics.n_samples)
        # (1/W) Σ v z_w: zero when the features are centred on their mean, not otherwise
        self.feature_mean = (statistics.mean[:d] - scaling.center) / scaling.scale
        self.n_features = d
        l2 = 0.0 if penalty is None else penalty.l2
        self.l1 = 0.0 if penalty is None else penalty.l1
        self.l2 = l2
        self.ridge = np.zeros(d + fit_intercept)
        self.ridge[:d] = l2 / (scaling.scale * scaling.scale)  # the L2 part's Hessian in working units
        self.passes = 0
        #: a categorical column kept as level codes (the sums read the codes), or None
        self.layout = getattr(source, "block_layout", None)

    def line_values(self, theta, direction, steps):
        """``F(θ + t·direction)`` for every ``t`` in ``steps``: one pass."""
        sums = self.source.reduce(
            huber_line_sums(theta, direction, steps, self.column, self.epsilon, self.scaling, self.fit_intercept,
                            self.layout),
            add_sums,
        )
        self.passes += 1
        penalty = [self.penalty_value(theta + t * direction) for t in steps]
        return sums["values"] / self.sum_weights + np.asarray(penalty)

    def with_epsilon(self, epsilon):
        """The same problem with another threshold (continuation)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__, epsilon=float(epsilon), passes=0)
        return other

    def penalty_value(self, theta):
        coef = theta[: self.n_features] / self.scaling.scale
        return self.l1 * float(np.abs(coef).sum()) + 0.5 * self.l2 * float(coef @ coef)

    def evaluate(self, theta, hessian=True, near=None):
        """One pass: a dict with ``F``, ``gradient`` (of the smooth part), ``hessian`` and the raw ``sums``.

        ``near``: an earlier evaluation (with its Hessian); the Hessian is then
        its Hessian plus the change of the inlier set (the rows that entered
        or left), which costs a pass of ``O(N d)`` instead of ``O(N_in d²)``.
        It is rebuilt whole every :data:`REBUILD_HESSIAN` updates, so that
        rounding cannot pile up (it steers the steps only: the line search
        and the certificate judge them).
        """
        # (on level codes the inliers' level moments are collected whole: no update)
        update = hessian and near is not None and near.get("updates", 0) < REBUILD_HESSIAN and self.layout is None
        sums = self.source.reduce(
            huber_sums(theta, self.column, self.epsilon, self.scaling, self.fit_intercept, hessian,
                       reference=near["theta"] if update else None, layout=self.layout),
            add_sums,
        )
        self.passes += 1
        W = self.sum_weights
        out = {"theta": theta, "sums": sums}
        out["F"] = sums["value"] / W + self.penalty_value(theta)
        out["gradient"] = sums["gradient"] / W + self.ridge * theta
        if hessian and self.layout is not None:
            coding = CodedColumns(self.layout, self.scaling, self.fit_intercept)
            out["hessian"] = LevelHessian(sums.pop("levels"), coding, self.layout["reference"], W, self.ridge,
                                          self.fit_intercept)
        elif hessian:
            if update:
                out["hessian"] = near["hessian"] + sums["hessian"] / W
                out["updates"] = near.get("updates", 0) + 1
            else:
                out["hessian"] = sums["hessian"] / W + np.diag(self.ridge)
        return out


def solve(problem, theta, *, max_iter, tol, gram, residual_rms, callback=None):
    """:func:`newton`, preceded by a continuation in ``ε`` when few rows start as inliers.

    When fewer than half the rows are inliers at the start (``ε`` well below
    ``residual_rms``, the residuals' root mean square there), most rows are outliers, the Hessian has little rank,
    and Newton's steps change the inlier set a few rows at a time (362
    iterations on statsmodels' star98). Solving first, loosely
    (``tol=1e-3``), for ``ε_k = residual_rms·10^−k`` down towards ``ε``, each
    from the last, takes 45 (at most :data:`MAX_STAGES` stages, the ratio
    widened beyond 10 where ``ε`` is that far below). Returns what :func:`newton` returns, with the
    iterations of every stage counted; ``problem.passes`` counts all passes.
    """
    point = problem.evaluate(theta)
    if point["sums"]["inliers"] >= 0.5 * problem.statistics_rows:
        return newton(problem, theta, max_iter=max_iter, tol=tol, gram=gram, callback=callback, point=point)
    # ε_k = residual_rms·ratio^k, ratio 0.1, or larger so that there are at most MAX_STAGES stages
    stages = min(MAX_STAGES, int(np.ceil(np.log10(residual_rms / problem.epsilon))))
    ratio = (problem.epsilon / residual_rms) ** (1.0 / max(stages, 1))
    iterations = 0
    for k in range(stages):
        if iterations >= max_iter:
            break
        stage = problem.with_epsilon(residual_rms * ratio**k)
        point, _, used = newton(stage, theta, max_iter=min(max_iter - iterations, STAGE_ITERATIONS), tol=1e-3,
                                gram=gram)
        problem.passes += stage.passes
        iterations += used
        theta = point["theta"]
    point, bound, used = newton(problem, theta, max_iter=max(max_iter - iterations, 0), tol=tol, gram=gram,
                                callback=callback)
    return point, bound, iterations + used


def newton(problem, theta, *, max_iter, tol, gram, callback=None, point=None):
    """Minimize one output's Huber objective by damped Newton steps (see the module docstring).

    Parameters
    ----------
    problem : HuberProblem
        With no L1 part.
    theta : ndarray of shape (p,)
        Start (working units).
    max_iter : int
        Newton iterations at most (each one pass, more when it backtracks).
    tol : float
        Iterations stop once the Newton decrement ``−∇Fᵀ Δ`` is below
        ``tol·F`` and :func:`certificate` (checked then) is within ``tol``,
        or once it is at rounding level (``ROUNDING·F``), or when the line
        search finds no decrease.
    gram : Gram
    callback : callable, optional
        ``callback(F, theta)`` after every accepted iteration.
    point : dict, optional
        ``problem.evaluate(theta)``, when already known.

    Returns
    -------
    point : dict
        The last evaluation (``theta``, ``F``, ``gradient``, ``hessian``, ``sums``).
    certificate : tuple or None
        ``(gap, F)`` of the certificate at the returned point, ``None`` if none was computed there.
    iterations : int
    """
    point = point or problem.evaluate(theta)
    p = theta.shape[0]
    floor = 1e-12 * max(2.0 * gram.top, np.finfo(float).tiny)
    damping = max(1e-6 * _trace(point["hessian"]) / p, floor)
    bound = None
    checked_at = np.inf
    iterations = 0
    while iterations < max_iter:
        gradient, F = point["gradient"], point["F"]
        step = _damped_step(point["hessian"], gradient, damping)
        slope = float(gradient @ step)
        decrement = -slope
        if decrement <= tol * max(F, np.finfo(float).tiny) and decrement < checked_at / 100:
            # The bound is first order in the gradient, the decrement second: check it
            # only once the decrement is small, and again each time it has fallen 100×.
            if not problem.certifiable:
                break
            checked_at = decrement
            bound = certificate(problem, point, gram)
            if bound[0] is not None and bound[0] <= tol * bound[1]:
                break
        if not decrement > ROUNDING * F:
            break  # nothing left that float64 can show
        trial, t = _line_search(problem, point, step, slope)
        iterations += 1
        if trial is None:
            break  # no decrease left to find: rounding has taken over
        point, bound = trial, None
        damping = max(damping / 10.0, floor) if t == 1.0 else min(damping * 10.0, 1e12)
        if callback is not None:
            callback(point["F"], point["theta"])
    return point, bound, iterations


def _trace(hessian):
    return hessian.trace() if isinstance(hessian, LevelHessian) else float(np.trace(hessian))


def _damped_step(hessian, gradient, damping):
    if isinstance(hessian, LevelHessian):  # a column kept as level codes: solved by its level blocks
        return hessian.damped_step(gradient, damping)
    p = gradient.shape[0]
    while True:
        try:
            factor = np.linalg.cholesky(hessian + damping * np.eye(p))
            return -np.linalg.solve(factor.T, np.linalg.solve(factor, gradient))
        except np.linalg.LinAlgError:
            damping = max(damping * 10.0, 1e-12)


def _line_search(problem, point, step, slope):
    """Armijo's rule along ``step``: ``(trial point, t)``, or ``(None, 0)`` when no step decreases ``F``.

    The full step first (one pass, which also carries the next gradient and
    Hessian); when it fails, one pass evaluates ``F`` at every ``t`` of
    :data:`LINE_STEPS` and the lowest that satisfies the rule is taken (one
    more pass for its gradient): at most three passes an iteration.
    """
    F = point["F"]
    trial = problem.evaluate(point["theta"] + step, near=point)
    if trial["F"] <= F + ARMIJO * slope:
        return trial, 1.0
    values = problem.line_values(point["theta"], step, LINE_STEPS)
    admissible = values <= F + ARMIJO * LINE_STEPS * slope
    if not admissible.any():
        return None, 0.0
    t = float(LINE_STEPS[admissible][np.argmin(values[admissible])])
    return problem.evaluate(point["theta"] + t * step, near=point), t


def certificate(problem, point, gram):
    """``(F(θ) − D, F(θ))`` for one output at ``point`` (an evaluation); see the module docstring.

    ``F(θ) − D`` is ``None`` when no dual point could be made feasible to
    rounding. Costs a pass when the objective has no penalty, none otherwise.
    """
    sums, theta, W = point["sums"], point["theta"], problem.sum_weights
    eps = problem.epsilon
    F = point["F"]
    l1, l2 = problem.l1, problem.l2
    y_mean = problem.target_mean
    d = problem.n_features
    if l1 == 0.0 and l2 == 0.0:
        # g must vanish: project s onto Σ v s z = 0, verify, correct once more if rounding needs it.
        try:
            correction = gram.solve(sums["gradient"] / W)
        except DataError:  # level blocks whose least-squares problem is singular: no projection, no claim
            return None, F
        limit = CONSTRAINT_ROUNDING * 2.0 * eps * float(np.sqrt(gram.largest_diagonal))
        for _ in range(3):
            dual = problem.source.reduce(
                huber_dual_sums(theta, problem.column, eps, correction, 0.0, problem.scaling, problem.fit_intercept,
                                problem.layout),
                add_sums,
            )
            problem.passes += 1
            residual = dual["s_features"] / W
            if np.max(np.abs(residual)) <= limit:
                break
            correction = correction + gram.solve(residual)
        else:
            return None, F
        A, B, M = dual["s_target"] / W, dual["s_square"] / W, dual["max_abs"]
        g = np.zeros(d)
    else:
        shift = sums["gradient"][d] / W if problem.fit_intercept else 0.0  # mean_v(s): Σ v = W
        A = sums["s_target"] / W - shift * y_mean
        B = max(sums["s_square"] / W - shift * shift, 0.0)
        M = max(sums["max_s"] - shift, shift - sums["min_s"], 0.0)
        # (1/W) Σ v s̃ x = scale ⊙ (1/W) Σ v s̃ z_w  (given Σ v s̃ = 0, or center = 0 without an intercept)
        g = problem.scaling.scale * (sums["gradient"][:d] / W - shift * problem.feature_mean)
    upper = 2.0 * eps / M if M > 0 else 1.0
    if l2 == 0.0 and l1 > 0.0 and np.max(np.abs(g), initial=0.0) > 0:
        upper = min(upper, l1 / float(np.max(np.abs(g))))

    def dual_value(tau):
        value = -tau * A - 0.25 * tau * tau * B
        if l2 > 0.0:
            excess = np.maximum(np.abs(tau * g) - l1, 0.0)
            value -= float(excess @ excess) / (2.0 * l2)
        return value

    best = max(0.0, dual_value(upper))  # D(0) = 0 ≤ F*: always valid
    if upper > 0:
        found = scipy.optimize.minimize_scalar(lambda tau: -dual_value(tau), bounds=(0.0, upper),
                                               method="bounded", options={"xatol": 1e-12 * upper})
        best = max(best, -float(found.fun))
    if l2 == 0.0 and l1 == 0.0 and B > 0:
        tau = min(max(-2.0 * A / B, 0.0), upper)  # the exact maximizer of the quadratic
        best = max(best, dual_value(tau))
    return F - best, F

