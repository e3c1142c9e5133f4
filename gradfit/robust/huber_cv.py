"""Huber's loss cross-validated: every pass serves all the folds, all the l1 ratios and all the rows.

The problems of a cross-validation are, for each l1 ratio ``i``, fold ``f``
(and ``f = −1``: all the rows, the final model) and output ``c``,

    F_m(θ) = (1/W_m) Σ_{rows not in f} v h(zᵀθ − y_c) + alpha·(l1_ratio‖coef‖₁ + (1 − l1_ratio)/2 ‖coef‖²),

gradfit's Huber objective (:mod:`gradfit.robust.huber`) on the fold's
training rows. They are solved together, alpha by alpha down each ratio's
decreasing grid (``grids[i, j]``), each from its solution at the previous
alpha. Every pass (:func:`gradfit.robust.folded_sums.folded_huber_sums`)
evaluates every unfinished problem at its own parameters — value, gradient,
inlier Hessian, the certificate's sums and the held-out loss — and, where a
problem's full step failed, its line search; so the number of passes is the
largest number of iterations any problem needs at each alpha, not their sum:
it does not grow with the number of folds or l1 ratios.

**Step** (proximal Newton; Lee, Sun & Saunders 2014). At ``θ`` with smooth
gradient ``g`` (data term and L2 part) and Hessian ``H`` (the inlier
statistics and the L2 part, damped by ``μI`` as in :func:`gradfit.robust.huber.newton`),

    Δ = argmin_Δ gᵀΔ + ½ Δᵀ(H + μI)Δ + l1 Σ_j |θ_j + Δ_j| / scale_j

by coordinate descent on the ``p × p`` model (no pass; for ``l1 = 0`` one
Cholesky solve); the decrement is ``λ = −(gᵀΔ + P₁(θ + Δ) − P₁(θ))`` and the
step ``t`` satisfies Armijo's rule ``F(θ + tΔ) ≤ F(θ) − 10⁻⁴ t λ``: the full
step first, else the best of :data:`LINE_STEPS` (their values from the next
round's pass, or from the same pass as the step where the problem's previous
step failed too), then one pass at that point; when none
satisfies the rule, the damping ``μ`` grows 100-fold and a shorter step is
proposed (or, with ``λ`` at rounding level, the point stops).

**Certificate**: each point stops once ``λ ≤ tol·F`` and the dual bound of
:func:`gradfit.robust.huber.certificate` (``"gradient_bound"``; from the
point's own sums, no pass, when ``alpha > 0``) is within ``tol·F`` — a proof
that ``F(θ) − F* ≤ tol·F(θ)`` — or once ``λ`` is at rounding level
(``ROUNDING²·F``: the decrement is second order in the gradient, the bound
first) or no step decreases ``F``, with the bound of the last point, which
may then exceed ``tol`` (counted as unsettled). At ``alpha = 0`` the bound
needs the dual point projected over each problem's own rows
(:func:`unpenalized_bounds`): the point runs to rounding, then one shared
pass (rarely two or three) bounds every problem of that alpha at once.

**Level codes.** On a categorical column kept as level codes (the source's
``block_layout``) every pass reads the codes (:mod:`gradfit.robust.folded_sums`:
a gather and a ``bincount`` a problem), each problem's Hessian is its
training inliers' level blocks (:class:`~gradfit.robust.level_newton.LevelHessian`,
the squared error's normal matrix over those rows: level counts, per-level
sums, within-level scatter) and its step is solved by the Schur complement of
the diagonal level block, ``O(L·p + p³)``; the all-rows and each fold's Gram
(the start, the damping floor, the unpenalized projections) are
:class:`~gradfit.robust.linalg.BlockGram` s. Without an L1 part the step
is the damped Newton step (:meth:`LevelHessian.damped_step
<gradfit.robust.level_newton.LevelHessian.damped_step>`); with one, the
proximal model is minimized by coordinate descent on the blocks
(:mod:`gradfit.robust.level_prox`, ``O(L·p)`` a sweep). No ``p × p`` matrix
of the dummies is formed.

**Validation**: a fold's error at alpha ``j`` is the weighted mean Huber
loss ``Σ_{rows in f} v h(r) / Σ_{rows in f} v`` of its held-out rows at its
solution, read from the same pass that evaluated that solution (no
validation pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..folds import fold_of, row_positions
from ..jit import lazily_compiled
from ..penalties import ElasticNet
from .folded_sums import add_folded, add_folded_dual, folded_dual_sums, folded_huber_sums
from .huber import ARMIJO, CONSTRAINT_ROUNDING, ROUNDING, HuberProblem, _damped_step, _trace, certificate
from .level_newton import LevelHessian
from .level_prox import level_proximal_step
from .sums import CodedColumns

#: the steps a line search evaluates in one pass: 2^-1 … 2^-12 (fewer than gradfit.robust.huber's 40:
#: each costs a residual per training row and problem; where none decreases F enough, the damping
#: grows 100-fold instead, which shortens the next step)
LINE_STEPS = 0.5 ** np.arange(1, 13)
#: coordinate-descent sweeps of one proximal Newton step at most, and their stop (relative move)
CD_SWEEPS = 10_000
CD_TOL = 1e-14
#: full steps with a decrement below ``NEAR·F`` are taken while ``F`` rises by at most ``FLAT·|F|``
#: (its rounding), at most ``FLAT_STEPS`` times a point: they drive the gradient, which the bound is
#: first order in, down to its own rounding
NEAR = 1e-10
FLAT = 1e-14
FLAT_STEPS = 3
#: each path point's certificate: relative objective gap at most this (the bound's own rounding floor,
#: first order in the gradient's, sits near 1e-12 on ill-conditioned data)
PATH_TOL = 1e-11


@dataclass
class HuberPath:
    """What :func:`solve_path` returns.

    Attributes
    ----------
    cv_loss : ndarray of shape (n_l1_ratio, n_alphas, n_folds)
        Each fold's held-out mean Huber loss (averaged over outputs).
    gaps : ndarray of shape (n_l1_ratio, n_alphas, n_folds + 1)
        Each point's certified relative objective gap bound (the last column:
        all the rows); ``NaN`` where no dual point could be made feasible.
    params : ndarray of shape (n_l1_ratio, n_alphas, p, n_outputs)
        The all-rows problems' solutions (working units).
    unsettled : int
        Points (problems × alphas) whose bound did not reach ``tol``.
    passes : int
        Data passes, all included.
    """

    cv_loss: np.ndarray
    gaps: np.ndarray
    params: np.ndarray
    unsettled: int
    passes: int


class FoldedProblems:
    """The problems of a cross-validation and the passes that evaluate them together.

    Parameters
    ----------
    source : Source
    labels_of : callable
        ``labels_of(chunk)`` → the fold of each row of the chunk.
    statistics : FoldStatistics
        Per fold training statistics and the total (``W``, means).
    scaling : Scaling
    fit_intercept : bool
    epsilon : float
    gram : Gram or BlockGram
        Of all the rows (the damping floor, the least-squares start); a
        :class:`~gradfit.robust.linalg.BlockGram` on a column kept as level codes.
    ratios : sequence of float
    n_outputs : int
    """

    def __init__(self, source, labels_of, statistics, scaling, fit_intercept, epsilon, gram, ratios, n_outputs):
        self.source, self.labels_of, self.scaling = source, labels_of, scaling
        self.fit_intercept, self.epsilon, self.gram = fit_intercept, float(epsilon), gram
        k = statistics.n_folds
        self.n_folds = k
        layout = [(i, f, c) for i in range(len(ratios)) for f in list(range(k)) + [-1] for c in range(n_outputs)]
        self.ratio_index = np.array([i for i, _, _ in layout])
        self.folds = np.array([f for _, f, _ in layout])
        self.columns = np.array([c for _, _, c in layout])
        self.ratios = [float(r) for r in ratios]
        self.statistics = [statistics.total if f < 0 else statistics.train[f] for f in self.folds]
        self.passes = 0
        #: a categorical column kept as level codes (the source's ``block_layout``), or None
        self.layout = getattr(source, "block_layout", None)
        self.n_params = scaling.scale.shape[0] + fit_intercept

    @property
    def n_problems(self):
        return self.folds.shape[0]

    def problem(self, m, alpha):
        """The :class:`~gradfit.robust.huber.HuberProblem` of problem ``m`` at ``alpha`` (penalty, W, means)."""
        ratio = self.ratios[self.ratio_index[m]]
        penalty = None if alpha == 0 else ElasticNet("elasticnet", alpha, ratio)
        return HuberProblem(self.source, int(self.columns[m]), self.epsilon, self.scaling, self.fit_intercept,
                            penalty, self.statistics[m])

    def evaluate(self, which, thetas, line=None):
        """One pass: the sums of problems ``which`` at ``thetas`` (p, len(which)), and their line searches."""
        sums = self.source.reduce(
            folded_huber_sums(self.labels_of, self.folds[which], self.columns[which], thetas, self.epsilon,
                              self.scaling, self.fit_intercept, line=line, layout=self.layout),
            add_folded,
        )
        self.passes += 1
        return sums


def unpenalized_bounds(problems, states):
    """``(F − D, F)`` for the unpenalized (``alpha = 0``) ``states``, in shared passes.

    :func:`gradfit.robust.huber.certificate`'s unpenalized case for many
    problems at once: each ``s`` is projected onto ``{Σ v s z = 0}`` over its
    own training rows with its own Gram (from the fold's statistics),
    ``s̃ = s − Z G_m⁺ ∇F``; one pass gives every problem's sums, a second (and
    third) corrects the problems whose constraint residual is above rounding.
    A problem still above after three passes gets ``None`` (no claim), as does
    one whose level blocks' least-squares problem is singular (codes).
    """
    from ..errors import DataError
    from .linalg import BlockGram, Gram

    kind = Gram if problems.layout is None else BlockGram
    index = [m for m, _ in states]
    grams = [kind(problems.statistics[m], problems.scaling, problems.fit_intercept) for m in index]
    W = np.array([state.problem.sum_weights for _, state in states])
    thetas = np.stack([state.point["theta"] for _, state in states], axis=1)
    corrections = np.zeros((problems.n_params, len(states)))
    pending, results = [], [None] * len(states)
    for i, (g, (_, state), w) in enumerate(zip(grams, states, W)):
        try:
            corrections[:, i] = g.solve(state.point["sums"]["gradient"] / w)
            pending.append(i)
        except DataError:  # level blocks whose least-squares problem is singular: no projection, no claim
            pass
    pending = np.array(pending, dtype=np.intp)
    eps = problems.epsilon
    limits = np.array([CONSTRAINT_ROUNDING * 2.0 * eps * float(np.sqrt(g.largest_diagonal)) for g in grams])
    for _ in range(3 if pending.size else 0):
        rows = np.array(index)[pending]
        sums = problems.source.reduce(
            folded_dual_sums(problems.labels_of, problems.folds[rows], problems.columns[rows], thetas[:, pending],
                             corrections[:, pending], eps, problems.scaling, problems.fit_intercept,
                             problems.layout),
            add_folded_dual,
        )
        problems.passes += 1
        still = []
        for j, i in enumerate(pending):
            residual = sums["s_features"][:, j] / W[i]
            if np.max(np.abs(residual)) <= limits[i]:
                results[i] = (sums["s_target"][j] / W[i], sums["s_square"][j] / W[i], sums["max_abs"][j])
            else:
                corrections[:, i] += grams[i].solve(residual)
                still.append(i)
        pending = np.array(still, dtype=np.intp)
        if not pending.size:
            break
    bounds = []
    for (_, state), result in zip(states, results):
        F = state.point["F"]
        if result is None:
            bounds.append((None, F))
            continue
        A, B, M = result
        upper = 2.0 * eps / M if M > 0 else 1.0
        tau = min(max(-2.0 * A / B, 0.0), upper) if B > 0 else upper  # the concave quadratic's maximizer
        bounds.append((F - max(0.0, -tau * A - 0.25 * tau * tau * B), F))
    return bounds


def _own(sums, j):
    """Problem ``j``'s sums out of a pass's (the problem axis dropped; the line search's left out)."""
    return {key: (value[..., j] if key == "gradient" else value[j]) for key, value in sums.items() if key != "line"}


def proximal_newton_step(hessian, gradient, theta, l1_weights, damping, free=None):
    """The damped proximal Newton step ``Δ`` of :func:`proximal_step` at ``H + μI``, for either Hessian.

    A :class:`~gradfit.robust.level_newton.LevelHessian` (level codes; its
    damping ``μ`` is put on a level as ``μ s_l²``, a positive diagonal as
    ``μI``: :mod:`gradfit.robust.level_newton`): without an L1 part, its damped
    Newton step, solved by the level blocks; with one (or only some
    coordinates free), coordinate descent on the blocks
    (:func:`gradfit.robust.level_prox.level_proximal_step`).
    """
    if isinstance(hessian, LevelHessian):
        if not np.any(l1_weights > 0) and (free is None or free.all()):
            return _damped_step(hessian, gradient, damping)
        free = np.ones(theta.shape[0], dtype=bool) if free is None else free
        return level_proximal_step(hessian, gradient, theta, l1_weights, damping, free, CD_SWEEPS, CD_TOL)
    return proximal_step(hessian + damping * np.eye(theta.shape[0]), gradient, theta, l1_weights, free)


def _point(problem, theta, own):
    """An evaluation as :func:`gradfit.robust.huber.certificate` reads it, from one problem's sums.

    On level codes (``own["levels"]``, the training inliers' level moments) the
    Hessian is a :class:`~gradfit.robust.level_newton.LevelHessian`.
    """
    W = problem.sum_weights
    if "levels" in own:
        coding = CodedColumns(problem.layout, problem.scaling, problem.fit_intercept)
        hessian = LevelHessian(own["levels"], coding, problem.layout["reference"], W, problem.ridge,
                               problem.fit_intercept)
    else:
        hessian = own["hessian"] / W + np.diag(problem.ridge)
    return {
        "theta": theta, "sums": own,
        "F": own["value"] / W + problem.penalty_value(theta),
        "gradient": own["gradient"] / W + problem.ridge * theta,
        "hessian": hessian,
        "heldout": own["heldout"] / own["heldout_weight"] if own["heldout_weight"] > 0 else np.nan,
    }


def _l1_weights(problem):
    """``l1 / scale_j`` per working coordinate (0 for the intercept)."""
    weights = np.zeros(problem.n_features + problem.fit_intercept)
    weights[: problem.n_features] = problem.l1 / problem.scaling.scale
    return weights


def proximal_step(hessian, gradient, theta, l1_weights, free=None):
    """``Δ = argmin gᵀΔ + ½ΔᵀHΔ + Σ_j w_j |θ_j + Δ_j|`` by cyclic coordinate descent.

    Parameters
    ----------
    hessian : ndarray of shape (p, p)
        Positive definite (damped).
    gradient, theta, l1_weights : ndarray of shape (p,)
    free : ndarray of shape (p,), bool, optional
        Coordinates allowed to move (the others keep ``Δ_j = 0``).

    Returns
    -------
    ndarray of shape (p,)
    """
    p = theta.shape[0]
    free = np.ones(p, dtype=bool) if free is None else free
    if not np.any(l1_weights[free] > 0):
        step = np.zeros(p)
        index = np.flatnonzero(free)
        sub = hessian[np.ix_(index, index)]
        factor = np.linalg.cholesky(sub)
        step[index] = -np.linalg.solve(factor.T, np.linalg.solve(factor, gradient[index]))
        return step
    return _compiled_descent()(hessian, gradient, theta, l1_weights, np.flatnonzero(free), CD_SWEEPS, CD_TOL) - theta


def _coordinate_descent(hessian, gradient, theta, l1_weights, order, sweeps, tol):
    """The loop of :func:`proximal_step`: returns ``u = θ + Δ`` (Numba compiles it where installed)."""
    u = theta.copy()
    model_gradient = gradient.copy()  # H(u − θ) + g
    p = theta.shape[0]
    for _ in range(sweeps):
        largest = 0.0
        size = 0.0
        for j in order:
            diagonal = hessian[j, j]
            old = u[j]
            target = old - model_gradient[j] / diagonal
            magnitude = abs(target) - l1_weights[j] / diagonal
            new = 0.0
            if magnitude > 0.0:
                new = magnitude if target > 0.0 else -magnitude
            if new != old:
                delta = new - old
                u[j] = new
                for i in range(p):
                    model_gradient[i] += delta * hessian[i, j]
                largest = max(largest, abs(delta) * np.sqrt(diagonal))
            size = max(size, abs(new) * np.sqrt(diagonal))
        if largest <= tol * max(size, 1e-300):
            break
    return u


#: :func:`_coordinate_descent` compiled by Numba (cached on disk), or as Python where Numba is missing
_compiled_descent = lazily_compiled(_coordinate_descent)


class _State:
    """One problem's Newton iteration at the current alpha."""

    def __init__(self, problem, point, gram, free):
        self.problem, self.point, self.free = problem, point, free
        p = point["theta"].shape[0]
        self.floor = 1e-12 * max(2.0 * gram.top, np.finfo(float).tiny)
        self.damping = max(1e-6 * _trace(point["hessian"]) / p, self.floor)
        self.bound = None
        self.checked_at = np.inf
        self.iterations = 0
        self.done = False
        self.trial = None  # (step, decrement) while a full step is being tried
        self.chosen = None  # the point the line search picked, to evaluate
        self.flat = 0  # full steps taken within F's rounding
        self.searching = None  # (step, decrement) of a failed full step, whose line values come next
        self.backtracked = False  # the last full step failed: the next one's line values come with it

    def propose(self, tol, gram, max_iter, certify):
        """The parameters to evaluate next (a full step), or ``None`` when this problem is done."""
        point, problem = self.point, self.problem
        F = point["F"]
        # at alpha = 0 the bound needs a projection pass: computed for all problems at once afterwards
        certify = certify and problem.penalty is not None
        if self.iterations >= max_iter:
            self.finish(certify, gram)
            return None
        theta, l1 = point["theta"], _l1_weights(problem)
        while True:
            try:
                step = proximal_newton_step(point["hessian"], point["gradient"], theta, l1, self.damping, self.free)
                break
            except np.linalg.LinAlgError:
                self.damping = max(self.damping * 10.0, 1e-12)
        decrement = -(float(point["gradient"] @ step) + float(l1 @ (np.abs(theta + step) - np.abs(theta))))
        if certify and decrement <= tol * max(F, np.finfo(float).tiny) and decrement < self.checked_at / 100:
            # the bound is first order in the gradient, the decrement second: check it only once the
            # decrement is small, and again each time it has fallen 100x (as gradfit.robust.huber.newton)
            self.checked_at = decrement
            self.bound = certificate(problem, point, gram)
            if self.bound[0] is not None and self.bound[0] <= tol * self.bound[1]:
                self.done = True
                return None
        if not decrement > ROUNDING * ROUNDING * F:
            # nothing left that float64 can show: the bound is first order in the gradient, the decrement
            # second, so the decrement's rounding level is the square of the value's
            self.finish(certify, gram)
            return None
        self.trial = (step, decrement)
        return theta + step

    def finish(self, certify, gram):
        """Stop here; the bound of the last point, where none was computed at it (no pass for alpha > 0)."""
        self.done = True
        if certify and self.bound is None:
            self.bound = certificate(self.problem, self.point, gram)


def solve_path(problems, grids, *, intercept_only=None, tol=PATH_TOL, max_iter=1000):
    """Solve every problem of ``problems`` along ``grids`` (n_l1_ratio, n_alphas), passes shared.

    Starts each ratio's first alpha from the all-rows least squares (L2 alone),
    or, with an L1 part, from ``intercept_only`` (:func:`intercept_solutions`:
    each problem's solution with every coefficient zero, the solution at the
    largest alpha of a counted grid). Returns a :class:`HuberPath`.
    """
    gram = problems.gram
    M = problems.n_problems
    p = problems.n_params
    n_ratios, n_alphas = grids.shape
    k = problems.n_folds
    n_outputs = int(problems.columns.max()) + 1
    points = [None] * M
    starts = np.stack([gram.least_squares[:, c] for c in problems.columns], axis=1)
    if intercept_only is not None:
        for m in range(M):
            if problems.ratios[problems.ratio_index[m]] > 0:
                points[m] = intercept_only[m]
    cold = [m for m in range(M) if points[m] is None]
    if cold:
        sums = problems.evaluate(np.array(cold), starts[:, cold])
        for j, m in enumerate(cold):
            points[m] = _point(problems.problem(m, grids[problems.ratio_index[m], 0]), starts[:, m], _own(sums, j))
    cv_loss = np.zeros((n_ratios, n_alphas, k))
    gaps = np.full((n_ratios, n_alphas, k + 1), np.nan)
    params = np.zeros((n_ratios, n_alphas, p, n_outputs))
    unsettled = 0
    for a in range(n_alphas):
        states = []
        for m in range(M):
            problem = problems.problem(m, float(grids[problems.ratio_index[m], a]))
            states.append(_State(problem, _point(problem, points[m]["theta"], points[m]["sums"]), gram, None))
        _iterate(problems, states, tol, gram, max_iter, certify=True)
        unpenalized = [(m, state) for m, state in enumerate(states) if state.problem.penalty is None]
        if unpenalized:  # alpha = 0: the bound needs a projection over each problem's rows (shared passes)
            for (m, state), bound in zip(unpenalized, unpenalized_bounds(problems, unpenalized)):
                state.bound = bound
        for m, state in enumerate(states):
            points[m] = state.point
            i, f, c = problems.ratio_index[m], problems.folds[m], problems.columns[m]
            settled = state.bound is not None and state.bound[0] is not None and state.bound[0] <= tol * state.bound[1]
            unsettled += not settled
            if f >= 0:
                cv_loss[i, a, f] += state.point["heldout"] / n_outputs
            else:
                params[i, a, :, c] = state.point["theta"]
        for i in range(n_ratios):  # each fold's bound over its outputs: mean gap over mean F (as the fit's)
            for f in list(range(k)) + [-1]:
                mine = [s for m, s in enumerate(states) if problems.ratio_index[m] == i and problems.folds[m] == f]
                if all(s.bound is not None and s.bound[0] is not None for s in mine):
                    gap = max(float(np.mean([s.bound[0] for s in mine])), 0.0)
                    value = float(np.mean([s.bound[1] for s in mine]))
                    gaps[i, a, f] = gap / value if value > 0 else (0.0 if gap <= 0 else np.nan)
    return HuberPath(cv_loss, gaps, params, unsettled, problems.passes)


def intercept_solutions(problems, max_iter):
    """Each problem's Huber fit with every coefficient zero (only the intercept moves), unpenalized.

    The point every L1 path starts from, and where :func:`alpha_max` reads its gradient.
    Without an intercept it is ``θ = 0`` (one pass).
    """
    M = problems.n_problems
    p = problems.n_params
    free = np.zeros(p, dtype=bool)
    free[p - 1] = problems.fit_intercept
    thetas = np.zeros((p, M))
    if problems.fit_intercept:
        d = p - 1
        thetas[d] = [problems.statistics[m].mean[d + problems.columns[m]] for m in range(M)]  # the mean target
    sums = problems.evaluate(np.arange(M), thetas)
    states = []
    for m in range(M):
        problem = problems.problem(m, 0.0)
        states.append(_State(problem, _point(problem, thetas[:, m], _own(sums, m)), problems.gram, free))
    if problems.fit_intercept:
        _iterate(problems, states, 0.0, problems.gram, max_iter, certify=False)
    return [state.point for state in states]


def alpha_max(points, problems, l1_ratio):
    """The smallest alpha at which every coefficient of the all-rows problems is zero.

    At the intercept-only solutions ``points`` (:func:`intercept_solutions`), zero
    coefficients are optimal iff ``|∂F/∂coef_j| ≤ alpha·l1_ratio`` for every
    ``j``; ``∂F/∂coef_j = scale_j · ∂F/∂θ_j``. The largest over outputs.
    """
    d = problems.scaling.scale.shape[0]
    top = 0.0
    for m, point in enumerate(points):
        if problems.folds[m] >= 0:
            continue
        gradient = point["sums"]["gradient"][:d] / problems.statistics[m].sum_weights
        top = max(top, float(np.max(np.abs(gradient * problems.scaling.scale), initial=0.0)))
    return top / l1_ratio


def hashed_labels(n_folds, seed):
    """``labels_of`` for hashed folds: each row's :func:`gradfit.folds.fold_of` from its position."""

    def labels_of(chunk):
        return fold_of(row_positions(chunk), n_folds, seed)  # (the positions gradfit.folds hashes)

    return labels_of


def given_labels(labels):
    """``labels_of`` for folds given as each row's label (an in-memory source's rows in order)."""

    def labels_of(chunk):
        return labels[chunk.start:chunk.start + chunk.n_rows]

    return labels_of


def _iterate(problems, states, tol, gram, max_iter, certify):
    """Run every unfinished state to its stop, one shared pass per round.

    A round's pass evaluates every problem's full step (or the point its line
    search chose) and the line searches of the problems whose last full step
    failed Armijo's rule; a problem that has just backtracked asks for its next
    step's line values with the step itself (steps fail in runs).
    """
    while True:
        which, thetas, line = [], [], []
        for m, state in enumerate(states):
            if state.done:
                continue
            if state.chosen is not None:
                which.append(m)
                thetas.append(state.chosen)
                continue
            if state.searching is not None:
                line.append(m)
                continue
            proposal = state.propose(tol, gram, max_iter, certify)
            if proposal is not None:
                which.append(m)
                thetas.append(proposal)
                if state.backtracked:
                    line.append(m)
        if not which and not line:
            return
        line_spec = None
        if line:
            line_spec = (problems.folds[line], problems.columns[line],
                         np.stack([states[m].point["theta"] for m in line], axis=1),
                         np.stack([(states[m].searching or states[m].trial)[0] for m in line], axis=1), LINE_STEPS)
        sums = problems.evaluate(np.array(which, dtype=np.intp),
                                 np.stack(thetas, axis=1) if thetas else np.zeros((problems.n_params, 0)),
                                 line=line_spec)
        line_values = {m: sums["line"][r] for r, m in enumerate(line)}
        for j, m in enumerate(which):
            state = states[m]
            point = _point(state.problem, thetas[j], _own(sums, j))
            if state.chosen is not None:  # the line search's point: accepted
                state.chosen = None
                state.point, state.bound = point, None
                state.iterations += 1
                continue
            step, decrement = state.trial
            state.trial = None
            F = state.point["F"]
            # Near the optimum F's rounding (a few ulps) hides a decrease the gradient still shows: a full
            # step there is taken if F does not rise beyond rounding, at most FLAT_STEPS times.
            flat = (decrement <= NEAR * F and point["F"] <= F + FLAT * abs(F) and state.flat < FLAT_STEPS)
            if point["F"] <= F - ARMIJO * decrement or flat:
                state.flat += point["F"] > F - ARMIJO * decrement
                state.point, state.bound = point, None
                state.iterations += 1
                state.damping = max(state.damping / 10.0, state.floor)
                state.backtracked = False
                continue
            state.backtracked = True
            if m in line_values:
                _choose(state, step, decrement, line_values.pop(m), certify, gram)
            else:
                state.searching = (step, decrement)  # its line values: the next round's pass
        for m, values in line_values.items():
            state = states[m]
            if state.searching is not None:
                step, decrement = state.searching
                state.searching = None
                _choose(state, step, decrement, values, certify, gram)


def _choose(state, step, decrement, line_values, certify, gram):
    """After a failed full step: the best admissible ``t`` of :data:`LINE_STEPS` (its point next), or more damping."""
    F = state.point["F"]
    values = line_values / state.problem.sum_weights + np.array(
        [state.problem.penalty_value(state.point["theta"] + t * step) for t in LINE_STEPS])
    admissible = values <= F - ARMIJO * LINE_STEPS * decrement
    if not admissible.any():
        if decrement > NEAR * F and state.damping < 1e12:
            # a shorter, more gradient-like step next: Levenberg-Marquardt's own safeguard
            state.damping = min(max(state.damping, state.floor) * 100.0, 1e12)
        else:
            state.finish(certify, gram)  # no decrease left to find: rounding has taken over
        return
    t = float(LINE_STEPS[admissible][np.argmin(values[admissible])])
    state.chosen = state.point["theta"] + t * step
    state.damping = min(state.damping * 10.0, 1e12)
