"""Independent oracles for gradfit's objectives, and the measures its certificates bound.

Nothing here imports gradfit: the objective is written out again from its
documented definition (:mod:`gradfit.penalties`, :mod:`gradfit.losses`),

    F(coef, b) = (1/W) Σ_i v_i ℓ(x_i·coef + b − y_i) + l1·‖coef‖₁ + (l2/2)·‖coef‖²,

``ℓ(r) = r²`` (no ½), Huber ``r²`` inside ``ε`` and ``2ε|r| − ε²`` outside, or
``|r|``; ``l1 = alpha·l1_ratio``, ``l2 = alpha·(1 − l1_ratio)`` on the
coefficients in the data's own units, never the intercept. The solvers are
other people's: statsmodels OLS/WLS, scikit-learn Ridge/Lasso/ElasticNet (at
tol 1e-12, with our own duality gap as their error bound), SciPy's L-BFGS-B
(for Huber, polished by exact Newton steps on its piecewise quadratic) and
``linprog(method="highs")`` for the absolute error. Each oracle returns its
own error estimate so that the tests can allow for it and no more.

The measures are those of :mod:`gradfit.certificate`:

* ``"distance"``: :func:`relative_coef_error`, coefficients in standardized
  units, intercept against ``max(|b*|, σ_y)``;
* the other kinds: the relative objective gap ``(F(θ) − F*) / F(θ)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Problem:
    """What gradfit is asked to minimize (single output, with an intercept).

    Attributes
    ----------
    loss : {"squared_error", "huber", "absolute_error"}
    penalty : {None, "l2", "l1", "elasticnet"}
    alpha : float
    l1_ratio : float
        Used only by ``"elasticnet"`` (``"l1"`` is 1, ``"l2"`` is 0).
    epsilon : float
        Huber's threshold, in the target's units.
    """

    loss: str = "squared_error"
    penalty: str | None = None
    alpha: float = 0.0
    l1_ratio: float = 0.5
    epsilon: float = 1.35

    @property
    def l1(self):
        return {None: 0.0, "l2": 0.0, "l1": self.alpha, "elasticnet": self.alpha * self.l1_ratio}[self.penalty]

    @property
    def l2(self):
        return {None: 0.0, "l2": self.alpha, "l1": 0.0, "elasticnet": self.alpha * (1 - self.l1_ratio)}[self.penalty]

    @property
    def certificate_kind(self):
        """The :mod:`gradfit.certificate` kind that holds for this problem."""
        return self.certificate_kinds[0]

    @property
    def certificate_kinds(self):
        """The kinds a correct library may report, the expected one first.

        An L1 or elastic-net penalty whose L1 part is 0 (``alpha=0`` or
        ``l1_ratio=0``) is a quadratic or smooth problem too; Huber with an L1
        part may be certified by a duality gap or a gradient bound.
        """
        if self.loss == "absolute_error":
            # with a penalty there is no LP: no bound is claimed ("none"), which is honest too
            return ("lp_duality_gap",) if self.l1 == 0 and self.l2 == 0 else ("none", "lp_duality_gap")
        smooth = "gradient_bound" if self.loss == "huber" else "distance"
        if self.penalty in ("l1", "elasticnet"):
            return ("duality_gap",) + (() if self.l1 > 0 and self.loss == "squared_error" else (smooth,))
        return (smooth,)

    def settings(self):
        """GDRegressor keyword arguments for this problem: only options that have an effect."""
        out = {"loss": self.loss}
        if self.loss == "huber":
            out["epsilon"] = self.epsilon
        if self.penalty is not None:
            out["penalty"] = self.penalty
            out["alpha"] = self.alpha
            if self.penalty == "elasticnet":
                out["l1_ratio"] = self.l1_ratio
        return out

    def objective(self, X, y, coef, intercept, weights=None):
        """``F(coef, intercept)`` in gradfit's convention, computed here from its definition."""
        residual = X @ np.asarray(coef, dtype=float) + float(intercept) - y
        if self.loss == "squared_error":
            pointwise = residual * residual
        elif self.loss == "huber":
            size = np.abs(residual)
            eps = self.epsilon
            pointwise = np.where(size <= eps, residual * residual, 2 * eps * size - eps * eps)
        else:
            pointwise = np.abs(residual)
        data = np.average(pointwise, weights=weights)
        coef = np.asarray(coef, dtype=float)
        return float(data + self.l1 * np.abs(coef).sum() + 0.5 * self.l2 * (coef @ coef))


@dataclass
class Solution:
    """An oracle's answer: ``coef``, ``intercept``, the objective there, and its own error.

    ``error`` is in the unit of the problem's certificate: a relative
    coefficient error for ``"distance"``, a relative objective gap otherwise.
    """

    coef: np.ndarray
    intercept: float
    objective: float
    error: float
    by: str
    extra: dict = field(default_factory=dict)


def spread(X, weights=None):
    """Each column's (weighted) mean and standard deviation; a constant column's deviation reads as 1."""
    mean = np.average(X, axis=0, weights=weights)
    deviation = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=weights))
    return mean, np.where(deviation > 0, deviation, 1.0)


def relative_coef_error(coef, intercept, reference_coef, reference_intercept, X, y, weights=None):
    """The ``"distance"`` measure of :mod:`gradfit.certificate`.

    ``max(‖(coef − coef*)·σ‖₂ / ‖coef*·σ‖₂, |b − b*| / max(|b*|, σ_y))`` with
    ``σ`` the features' and ``σ_y`` the target's standard deviations
    (``σ_y`` also replaces a zero denominator).
    """
    _, sigma = spread(X, weights)
    sigma_y = float(np.sqrt(np.average((y - np.average(y, weights=weights)) ** 2, weights=weights)))
    difference = np.linalg.norm((np.asarray(coef) - reference_coef) * sigma)
    size = np.linalg.norm(np.asarray(reference_coef) * sigma)
    coef_error = difference / (size if size > 0 else sigma_y)
    intercept_error = abs(float(intercept) - reference_intercept) / max(abs(reference_intercept), sigma_y)
    return float(max(coef_error, intercept_error))


def relative_objective_gap(value, optimum):
    """``(F(θ) − F*) / F(θ)``: the quantity the duality-gap and gradient certificates bound."""
    return (value - optimum) / value if value > 0 else 0.0


# -- least squares ---------------------------------------------------------------


def centred_lstsq(X, y, weights=None, ridge=0.0):
    """Least squares (+ ``ridge/2·‖coef‖²`` in gradfit's scale) by QR/SVD on the centred, standardized design."""
    n = len(y)
    v = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    mean, sigma = spread(X, v)
    y_mean = np.average(y, weights=v)
    root = np.sqrt(v)[:, None]
    design = (X - mean) / sigma * root
    target = (y - y_mean) * root[:, 0]
    if ridge > 0:
        # (1/W)Σv r² + (ridge/2)‖coef‖²  ⇔  ‖√v r‖² + (W·ridge/2)‖β/σ‖²,  β = coef·σ
        design = np.vstack([design, np.diag(np.sqrt(v.sum() * ridge / 2) / sigma)])
        target = np.concatenate([target, np.zeros(X.shape[1])])
    beta = np.linalg.lstsq(design, target, rcond=None)[0]
    coef = beta / sigma
    return coef, float(y_mean - mean @ coef)


def ols(X, y, weights=None):
    """statsmodels OLS (WLS with ``weights``), checked against numpy's ``lstsq`` on the centred, standardized design.

    Returns
    -------
    Solution
        ``extra["results"]`` holds the statsmodels results (for the statistics).
    """
    import statsmodels.api as sm

    design = sm.add_constant(X, has_constant="add")
    model = sm.OLS(y, design) if weights is None else sm.WLS(y, design, weights=weights)
    results = model.fit()
    coef, intercept = results.params[1:], float(results.params[0])
    other_coef, other_intercept = centred_lstsq(X, y, weights)
    error = relative_coef_error(coef, intercept, other_coef, other_intercept, X, y, weights)
    problem = Problem()
    return Solution(coef, intercept, problem.objective(X, y, coef, intercept, weights), error,
                    "statsmodels " + ("WLS" if weights is not None else "OLS"), {"results": results})


def ridge(X, y, alpha):
    """scikit-learn ``Ridge(alpha=alpha·N/2, solver="svd")`` checked against an augmented ``lstsq``."""
    from sklearn.linear_model import Ridge

    n = len(y)
    model = Ridge(alpha=alpha * n / 2, solver="svd", tol=1e-12).fit(X, y)
    coef, intercept = model.coef_.astype(float), float(model.intercept_)
    other_coef, other_intercept = centred_lstsq(X, y, ridge=alpha)
    error = relative_coef_error(coef, intercept, other_coef, other_intercept, X, y)
    problem = Problem(penalty="l2", alpha=alpha)
    return Solution(coef, intercept, problem.objective(X, y, coef, intercept), error, "sklearn Ridge(svd)")


def elastic_net_duality_gap(X, y, coef, intercept, l1, l2):
    """Relative duality gap ``(P − D)/P`` of gradfit's elastic net at ``coef`` (squared error, no weights).

    The intercept is eliminated by centring (its optimum given ``coef`` is
    ``ȳ − x̄·coef``), then scikit-learn's coordinate-descent gap for
    ``½‖r‖² + a‖w‖₁ + (b/2)‖w‖²`` with ``a = N·l1/2``, ``b = N·l2/2``, which
    is ``N/2`` times gradfit's objective, so the relative gap is the same.
    The dual point is the residual scaled into the dual-feasible set.
    """
    n = len(y)
    Xc = X - X.mean(axis=0)
    yc = y - y.mean()
    a, b = n * l1 / 2, n * l2 / 2
    residual = yc - Xc @ coef
    correlation = Xc.T @ residual - b * coef
    dual_norm = np.max(np.abs(correlation)) if coef.size else 0.0
    r2 = residual @ residual
    if dual_norm > a:
        const = a / dual_norm
        gap = 0.5 * (r2 + r2 * const**2)
    else:
        const = 1.0
        gap = r2
    gap += a * np.abs(coef).sum() - const * residual @ yc + 0.5 * b * (1 + const**2) * (coef @ coef)
    primal = 0.5 * r2 + a * np.abs(coef).sum() + 0.5 * b * (coef @ coef)
    # the primal at (coef, its best intercept) is at most gradfit's at (coef, intercept)
    return float(max(gap, 0.0) / primal) if primal > 0 else 0.0


def elastic_net(X, y, alpha, l1_ratio, precompute=False):
    """scikit-learn ``Lasso``/``ElasticNet(alpha/2, tol=1e-12)``, its error bounded by our duality gap.

    ``l1_ratio=1`` is gradfit's ``"l1"``. ``precompute=True``: coordinate descent
    on the Gram matrix, O(d²) per sweep whatever the number of rows (for the
    benchmark's millions of rows); the duality gap is still computed on the data.
    """
    from sklearn.linear_model import ElasticNet, Lasso

    with np.errstate(all="ignore"):
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if l1_ratio == 1:
                model = Lasso(alpha=alpha / 2, tol=1e-12, max_iter=1_000_000, precompute=precompute).fit(X, y)
            else:
                model = ElasticNet(alpha=alpha / 2, l1_ratio=l1_ratio, tol=1e-12, max_iter=1_000_000,
                                   precompute=precompute).fit(X, y)
    coef, intercept = model.coef_.astype(float), float(model.intercept_)
    problem = Problem(penalty="l1" if l1_ratio == 1 else "elasticnet", alpha=alpha, l1_ratio=l1_ratio)
    gap = elastic_net_duality_gap(X, y, coef, intercept, problem.l1, problem.l2)
    return Solution(coef, intercept, problem.objective(X, y, coef, intercept), gap,
                    "sklearn " + type(model).__name__, {"n_iter": model.n_iter_})


# -- smooth losses by L-BFGS-B, Huber polished by Newton --------------------------


def _pointwise(problem, residual, eps):
    if problem.loss == "squared_error":
        return residual * residual, 2 * residual
    size = np.abs(residual)
    value = np.where(size <= eps, residual * residual, 2 * eps * size - eps * eps)
    return value, 2 * np.clip(residual, -eps, eps)


def smooth(X, y, problem, weights=None):
    """Minimize ``problem`` (squared error or Huber, any penalty) with SciPy's L-BFGS-B.

    Works in standardized units (``β = coef·σ/σ_y``, target ``(y − ȳ)/σ_y``,
    ε scaled alike) so the solver sees a well-scaled problem; an L1 part is
    made smooth by splitting ``β = β⁺ − β⁻`` with ``β± ≥ 0``. For Huber with
    no L1 part the answer is then polished by Newton steps on the active set
    (the objective is piecewise quadratic, so a step whose active set holds is
    exact). ``error`` is the relative objective decrease the polish found:
    how far L-BFGS-B was from the optimum (a nominal 1e-12 when none ran).
    """
    from scipy.optimize import minimize

    n, d = X.shape
    v = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    total = v.sum()
    mean, sigma = spread(X, v)
    y_mean = np.average(y, weights=v)
    sigma_y = float(np.sqrt(np.average((y - y_mean) ** 2, weights=v))) or 1.0
    Z = (X - mean) / sigma
    target = (y - y_mean) / sigma_y
    eps = problem.epsilon / sigma_y
    l1 = problem.l1 / (sigma_y * sigma)  # per β_j, objective in units of σ_y²
    l2 = problem.l2 / sigma**2
    split = problem.l1 > 0

    def unpack(theta):
        beta = theta[:d] - theta[d:2 * d] if split else theta[:d]
        return beta, theta[-1]

    def value_and_gradient(theta):
        beta, b = unpack(theta)
        residual = Z @ beta + b - target
        values, derivative = _pointwise(problem, residual, eps)
        weighted = v * derivative / total
        grad_beta = Z.T @ weighted + l2 * beta
        value = values @ v / total + 0.5 * (l2 * beta) @ beta
        if split:
            value += l1 @ (theta[:d] + theta[d:2 * d])
            gradient = np.concatenate([grad_beta + l1, -grad_beta + l1, [weighted.sum()]])
        else:
            gradient = np.concatenate([grad_beta, [weighted.sum()]])
        return value, gradient

    size = 2 * d + 1 if split else d + 1
    bounds = [(0, None)] * (2 * d) + [(None, None)] if split else None
    found = minimize(value_and_gradient, np.zeros(size), jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": 100_000, "maxfun": 200_000, "ftol": 1e-16, "gtol": 1e-13, "maxcor": 30})
    theta = found.x
    first_value = value_and_gradient(theta)[0]
    # Without a polish there is no bound of our own: against scikit-learn's certified Lasso/ElasticNet
    # (test_realdata.test_oracles_agree_with_each_other) L-BFGS-B here is within ~1e-15 relative.
    error = 1e-12
    if problem.loss == "huber" and not split:
        theta, polished_value = _newton_polish(value_and_gradient, theta, Z, target, v / total, eps, l2)
        error = max(first_value - polished_value, 0.0) / polished_value if polished_value > 0 else 0.0
    beta, b = unpack(theta)
    coef = beta * sigma_y / sigma
    intercept = float(y_mean + sigma_y * b - mean @ coef)
    objective = problem.objective(X, y, coef, intercept, weights)
    polished = problem.loss == "huber" and not split
    return Solution(coef, intercept, objective, error, "scipy L-BFGS-B" + (" + Newton" if polished else ""))


def _newton_polish(value_and_gradient, theta, Z, target, share, eps, l2, steps=30):
    """Newton steps with backtracking on the piecewise-quadratic Huber objective (no L1 part)."""
    design = np.hstack([Z, np.ones((len(Z), 1))])
    curvature_l2 = np.concatenate([l2, [0.0]])
    value, gradient = value_and_gradient(theta)
    for _ in range(steps):
        residual = design @ theta - target
        inside = np.abs(residual) <= eps
        hessian = 2 * (design[inside].T * share[inside]) @ design[inside] + np.diag(curvature_l2)
        try:
            step = np.linalg.lstsq(hessian, -gradient, rcond=None)[0]
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-10:
            candidate = theta + t * step
            new_value, new_gradient = value_and_gradient(candidate)
            if new_value <= value:
                break
            t /= 2
        else:
            break
        improved = value - new_value
        theta, value, gradient = candidate, new_value, new_gradient
        if improved <= 1e-17 * max(abs(value), 1e-300):
            break
    return theta, value


def huber(X, y, epsilon, alpha=0.0, penalty=None, l1_ratio=0.5, weights=None):
    """gradfit's Huber objective solved by L-BFGS-B (+ Newton polish): see :func:`smooth`."""
    problem = Problem(loss="huber", penalty=penalty, alpha=alpha, l1_ratio=l1_ratio, epsilon=epsilon)
    return smooth(X, y, problem, weights)


# -- absolute error by linear programming -----------------------------------------


def least_absolute(X, y, l1=0.0, weights=None):
    """``min (1/W) Σ v|x·coef + b − y| + l1‖coef‖₁`` by ``scipy.optimize.linprog(method="highs")``.

    HiGHS solves the dual linear program, which has one variable per row but
    only ``d + 1`` constraints (fast for many rows): in standardized units
    (``Z`` the standardized features, ``c = v/W``, ``λ_j`` the L1 weight of ``β_j``)

        max ỹᵀa  subject to  Σ a = 0,  |Zᵀa| ≤ λ,  |a_i| ≤ c_i,

    and the coefficients are its constraints' multipliers. ``error`` is the
    relative duality gap ``(P(β, b) − D(a)) / P(β, b)`` recomputed here from
    both points: a certified bound on how far the returned point's objective
    is from the optimum, whatever the solver's tolerances.
    """
    from scipy.optimize import linprog

    n, d = X.shape
    v = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    share = v / v.sum()
    mean, sigma = spread(X, v)
    y_mean = float(np.median(y))
    sigma_y = float(np.mean(np.abs(y - y_mean))) or 1.0
    Z = (X - mean) / sigma
    target = (y - y_mean) / sigma_y
    lam = l1 / (sigma_y * sigma) * np.ones(d)  # objective in units of σ_y; |coef_j| = σ_y|β_j|/σ_j
    options = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
    bounds = np.column_stack([-share, share])
    if l1 > 0:
        found = linprog(-target, A_ub=np.vstack([Z.T, -Z.T]), b_ub=np.concatenate([lam, lam]),
                        A_eq=np.ones((1, n)), b_eq=[0.0], bounds=bounds, method="highs", options=options)
    else:
        found = linprog(-target, A_eq=np.vstack([Z.T, np.ones((1, n))]), b_eq=np.zeros(d + 1), bounds=bounds,
                        method="highs", options=options)
    if found.status != 0:
        raise RuntimeError(f"linprog failed: {found.message}")
    dual = float(target @ found.x)
    if l1 > 0:
        upper, lower = found.ineqlin.marginals[:d], found.ineqlin.marginals[d:]
        candidates = [(upper - lower, found.eqlin.marginals[0]), (lower - upper, -found.eqlin.marginals[0])]
    else:
        candidates = [(found.eqlin.marginals[:d], found.eqlin.marginals[d]),
                      (-found.eqlin.marginals[:d], -found.eqlin.marginals[d])]

    def primal(beta, b):
        return float(share @ np.abs(Z @ beta + b - target) + lam @ np.abs(beta))

    beta, b = min(candidates, key=lambda candidate: primal(*candidate))
    value = primal(beta, b)
    coef = beta * sigma_y / sigma
    intercept = float(y_mean + sigma_y * b - mean @ coef)
    problem = Problem(loss="absolute_error", penalty="l1" if l1 > 0 else None, alpha=l1)
    objective = problem.objective(X, y, coef, intercept, weights)
    error = max(value - dual, 0.0) / value if value > 0 else 0.0
    return Solution(coef, intercept, objective, error, "scipy linprog(highs), dual")


# -- dispatch ---------------------------------------------------------------------


def solve(X, y, problem, weights=None):
    """The oracle for ``problem``; ``None`` where none here solves it (absolute error with an L2 part)."""
    if problem.loss == "squared_error":
        if problem.l1 == 0 and problem.l2 == 0:
            return ols(X, y, weights)
        if weights is None and problem.l1 == 0:
            return ridge(X, y, problem.l2)
        if weights is None:
            return elastic_net(X, y, problem.alpha, 1.0 if problem.penalty == "l1" else problem.l1_ratio)
        return smooth(X, y, problem, weights)
    if problem.loss == "huber":
        return smooth(X, y, problem, weights)
    if problem.l2 > 0:
        return None
    return least_absolute(X, y, problem.l1, weights)


# -- reading a certificate's value back out of a message --------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def mentions_value(message, value):
    """Whether ``message`` contains ``value`` as printed to some number of significant digits.

    Every number in the message is read with the precision it was printed
    to; it matches when ``value`` rounds to it (half a unit in its last digit,
    plus rounding slack).
    """
    if value is None:
        return False
    for token in _NUMBER.findall(message):
        try:
            number = float(token)
        except ValueError:
            continue
        mantissa = re.split(r"[eE]", token)[0].lstrip("+-")
        exponent = int(re.split(r"[eE]", token)[1]) if re.search(r"[eE]", token) else 0
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        half_unit = 0.5 * 10.0 ** (exponent - decimals)
        if abs(number - value) <= half_unit * 1.001 + 1e-15 * abs(value):
            return True
    return False
