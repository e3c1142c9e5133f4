"""What a finished fit can say about itself: why it stopped, how far from the optimum, why.

:func:`analyse` reads a fit's record, :class:`~gradfit.result.FitResult` (it never trains)
and returns the fit report (``GDRegressor.fit_report_``) and, for an
unpenalized squared-error fit, the regression statistics
(``GDRegressor.summary_``, see :mod:`gradfit.summary`).

For the squared error the objective is a quadratic with Hessian ``H`` (the
same for every output), so everything follows from its eigenvalues
``λmin ≤ … ≤ λmax = L`` and the optimum ``θ*`` the statistics engine already
holds:

* the optimal cost ``F* = F(θ*)`` and the gap ``F(θ) − F*`` of the returned ``θ``;
* the condition number ``λmax/λmin``, in the units training ran in, and for the
  standardized and the raw features;
* the stable limit ``2/L``: a constant step above it makes gradient descent diverge;
* the rate: with the step ``η``, each error component along an eigenvector
  shrinks by ``|1 − ηλ|`` per epoch, so the cost gap shrinks at least by
  ``ρ² = max(|1 − ηλmin|, |1 − ηλmax|)²`` (``(1 − λmin/L)²`` for ``η = 1/L``),
  and ``⌈log(target/gap) / log ρ²⌉`` more epochs bring the gap down to
  ``target = tol·F*`` (``tol·F(0)`` when the data fit exactly, ``F* = 0``).
  Directions with ``λ = 0`` (collinear features) are left out: gradient descent
  from zero never moves along them and the cost does not depend on them.

Which engine ran decides what is free. The statistics engine holds the full
centred scatter matrix, so all of the above costs O(d³) and no pass. The pass
engine keeps only the diagonal; for the squared error (d ≤
:data:`MAX_DENSE_FEATURES`) the report collects the full statistics in **one
extra pass** over the data (the cost of about one epoch plus an O(N·d²) Gram
product) and then reports the same — except after Ctrl-C, which asks to stop
now, not to read the data once more. Other losses (Huber, absolute error) have
no closed-form optimum or constant Hessian: their report says why they
stopped, the learning rate, and ``2/L`` when ``learning_rate="auto"`` already
computed ``L``.
"""

from __future__ import annotations

import math

import numpy as np

from . import registry
from .engines import StatisticsEngine
from .objective import Objective
from .scaling import Scaling
from .summary import Unavailable, regression_statistics, to_json

#: beyond this many features the pass engine makes no extra pass for the d×d statistics
MAX_DENSE_FEATURES = 2000
#: beyond this many, the condition number of the other units (raw or standardized)
#: is not computed: one more O(d³) eigendecomposition than the fit itself needs
MAX_EXTRA_DECOMPOSITION = 1000
#: the ``tol`` the epoch estimate uses when the fit ran with ``tol=None``
DEFAULT_TOL = 1e-6


def _float_or_none(value):
    return None if value is None else float(value)


def _condition(eigenvalues):
    """``λmax/λmin``; ``inf`` when ``λmin`` is at rounding level (collinear features)."""
    top = float(eigenvalues[-1])
    bottom = float(eigenvalues[0])
    if top <= 0 or bottom <= top * len(eigenvalues) * np.finfo(float).eps:
        return math.inf
    return top / bottom


def advice(settings, result):
    """One change that helps this fit reach its certificate: ``(option, value)``, or ``None``.

    Only a change that would be accepted for this fit and that differs from
    what ran: conjugate gradient where it serves the problem and did not run;
    ``learning_rate="auto"`` where a rate was given; standardizing where it
    was off; else more epochs. ``None`` when no option can bring a
    certificate (a loss without one, or an interrupted fit).
    """
    from . import robust  # here: describe (inspect, the report) needs no SciPy

    certificate = result.certificate
    if certificate is None or certificate.kind == "none" or result.stop_reason == "interrupted":
        return None
    problem = result.problem
    penalty = problem.objective.penalty
    ran = result.optimizer or settings["optimizer"]
    l1 = penalty is not None and penalty.has_prox
    cg_serves = (
        problem.loss.quadratic and not l1 and settings["batch_size"] is None
        and settings["learning_rate"] == "auto" and not registry.SCHEDULES[settings["schedule"]].decays
    )
    if cg_serves and (not registry.OPTIMIZERS[ran].refined or settings["optimizer"] == "auto"):
        # "auto" that ran cg: cg by name adds the refinement epochs (data passes)
        return ("optimizer", "cg")
    plain = registry.OPTIMIZERS[ran].serves_prox and not registry.OPTIMIZERS[ran].accelerated
    if l1 and plain and settings["batch_size"] is None and not registry.SCHEDULES[settings["schedule"]].decays:
        return ("optimizer", "nesterov")
    blocks = getattr(problem.statistics, "blocks", None)  # a categorical column kept as level codes
    newton_serves = (settings["learning_rate"] == "auto" and settings["schedule"] == "auto"
                     and robust.default_optimizer(problem.loss, penalty, settings["batch_size"]) is not None
                     and not (blocks is not None and blocks.n_levels > _max_levels()))  # Newton's Gram is dense
    if newton_serves and ran != robust.NAME:
        return ("optimizer", robust.NAME)
    if settings["learning_rate"] != "auto":
        return ("learning_rate", "auto")
    if not settings["standardize"]:
        return ("standardize", True)
    return ("epochs", 10 * int(settings["epochs"]))


def _max_levels():
    from .sources.encoding import MAX_LEVELS  # the most levels a column may have as dense dummies

    return MAX_LEVELS


def _basic(result, settings):
    rate = result.learning_rate
    certificate = result.certificate
    report = {
        "converged": bool(result.converged),
        "stop_reason": result.stop_reason,
        "message": result.message,  # the record's sentence (gradfit.result): the words every surface shows
        "certificate": certificate.as_dict(),
        "advice": result.advice,
        "n_iter": int(result.n_iter),
        "max_epochs": int(settings["epochs"]),
        "tol": settings["tol"],
        "engine": result.engine,
        "optimizer": result.optimizer or settings["optimizer"],
        "loss": settings["loss"],
        "penalty": settings["penalty"],
        "initial_cost": float(result.loss_curve[0]) if result.loss_curve else None,
        "final_cost": float(result.final_cost),
        "learning_rate": _float_or_none(rate),
        "learning_rate_auto": settings["learning_rate"] == "auto",
        "standardized": bool(settings["standardize"]),
        "max_stable_learning_rate": None,
        "notes": [],
    }
    if report["advice"] is not None:
        report["advice"] = list(report["advice"])
    if rate is not None and report["learning_rate_auto"] and result.problem.loss.smooth:
        # "auto" has computed L already (the pass engine caches it): no more passes.
        report["max_stable_learning_rate"] = 2.0 / result.problem.objective.curvature()
    return report


def _quadratic_problem(result, settings, source, report):
    """``(statistics, objective)`` with the full scatter, or ``None`` (a note says why).

    The pass engine keeps no scatter: the fit collected it for its certificate
    (one extra pass, :func:`gradfit.fitting.fit_source`) and it is reused here.
    """
    fit_intercept = settings["fit_intercept"]
    if registry.ENGINES[result.engine].knows_optimum:
        return result.statistics, result.problem.objective
    d = result.coef.shape[1]
    if result.stop_reason == "interrupted":
        # Ctrl-C means "stop now": not one more pass over data that may be large.
        report["notes"].append("interrupted: the pass over the data the statistics need was skipped")
        return None
    if result.reference is None:
        report["notes"].append(
            f"the pass engine ran on {d} features: no optimum, condition number or statistics, "
            f"which would need the d×d scatter matrix (collected up to {MAX_DENSE_FEATURES} features)"
        )
        return None
    stats = result.reference.statistics
    if getattr(stats, "blocks", None) is not None:
        report["notes"].append("the pass engine read the categorical column as level codes: the certificate, "
                               "optimum, condition numbers and statistics come from its blocks (no extra pass)")
    else:
        report["notes"].append(
            "the pass engine keeps no scatter matrix: the certificate, optimum, condition numbers and "
            "statistics took one extra pass"
        )
    # the statistics engine's entry: on a categorical column's blocks, the blocks' engine
    engine = registry.ENGINES["statistics"].build(None, result.scaling, result.problem.loss, fit_intercept, stats)
    return stats, Objective(engine, result.problem.objective.penalty, result.scaling)


def _other_condition(stats, fit_intercept, standardize):
    """Condition number of the data term's Hessian with the other choice of ``standardize``."""
    if stats.n_features > MAX_EXTRA_DECOMPOSITION:
        return None
    scaling = Scaling.from_statistics(stats, fit_intercept, standardize)
    # Raw features near 1e300 (a constant column, say) give a raw Hessian that
    # overflows float64: its condition number is then not computable, and that
    # must not fail a fit that ran standardized.
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            return _condition(StatisticsEngine(stats, scaling, fit_intercept).eigenvalues)
    except (ValueError, np.linalg.LinAlgError):
        return None


def smooth_hessian(objective):
    """The Hessian (per output) of the smooth part of ``objective`` (data term + L2), in its units.

    Formed exactly, never by probing ``hvp`` with an identity: the L2 part's
    product divides by the number of columns it is given (the outputs), which
    an identity's ``n_params`` columns would make wrong.
    """
    engine = objective.engine
    hessian = engine.hessian()
    penalty = objective.penalty
    if penalty is not None and penalty.l2 > 0:
        d = engine.n_features
        hessian[np.arange(d), np.arange(d)] += penalty.hessian_diagonal(objective.scaling.scale, engine.n_outputs)
    return hessian


def _optimum(result, objective, penalty):
    """``(θ*, F*)`` of the objective in its units, or ``None`` with an L1 part (no closed form).

    θ* comes from the fit's :class:`~gradfit.certify.QuadraticReference`
    (decided in standardized units, whatever units training used).
    """
    if penalty is not None and penalty.has_prox:
        return None
    reference = result.reference
    if reference is None:
        return None
    coef, intercept = reference.to_raw(reference.optimum())
    optimum = objective.scaling.from_raw(coef, intercept, reference.fit_intercept)
    return optimum, objective.value(optimum)


def _smooth_eigenvalues(objective, penalty):
    """Eigenvalues of the Hessian of the smooth part of the objective, ascending."""
    engine = objective.engine
    if penalty is None or penalty.l2 == 0:
        return engine.eigenvalues
    if getattr(engine, "smooth_eigenvalues", None) is not None:  # the block engine's, with the L2 part
        return engine.smooth_eigenvalues
    if engine.reference.shape[0] > MAX_DENSE_FEATURES:
        return None
    return np.linalg.eigvalsh(smooth_hessian(objective))


def epochs_to_reach(gap, target, contraction):
    """Epochs until ``gap · contraction^t ≤ target``: 0 if already there, ``None`` if never.

    A target of 0 (``tol=0``) is never reached by a contraction: ``None``.
    """
    if gap <= target:
        return 0
    if target <= 0 or contraction >= 1 or not math.isfinite(contraction):
        return None
    if contraction <= 0:
        return 1
    return max(1, math.ceil(math.log(target / gap) / math.log(contraction)))


def _quadratic(result, settings, stats, objective, report):
    penalty = objective.penalty
    fit_intercept = settings["fit_intercept"]
    standardize = settings["standardize"]
    engine = objective.engine
    curvature = objective.curvature()
    report["curvature"] = curvature
    report["max_stable_learning_rate"] = 2.0 / curvature if curvature > 0 else None
    data_condition = _condition(engine.eigenvalues)
    report["rank"] = int(engine.rank)
    report["n_params"] = int(engine.reference.shape[0])  # block statistics keep only the extreme eigenvalues
    report["condition_number"] = data_condition
    other = _other_condition(stats, fit_intercept, not standardize)
    report["condition_number_standardized"] = data_condition if standardize else other
    report["condition_number_raw"] = other if standardize else data_condition

    optimum = _optimum(result, objective, penalty)
    if optimum is None:
        if penalty is not None and penalty.has_prox:
            report["notes"].append("an L1 penalty has no closed-form optimum: no gap or epoch estimate")
        return
    _, optimal_cost = optimum
    gap = max(result.final_cost - optimal_cost, 0.0)
    report["optimal_cost"] = float(optimal_cost)
    report["gap"] = float(gap)
    report["relative_gap"] = float(gap / optimal_cost) if optimal_cost > 0 else None

    eigenvalues = _smooth_eigenvalues(objective, penalty)
    if eigenvalues is None:
        return
    top = float(eigenvalues[-1])
    kept = eigenvalues[eigenvalues > top * len(eigenvalues) * np.finfo(float).eps]
    schedule = getattr(result, "schedule", None) or settings["schedule"]  # "auto" resolved by the fit
    optimizer, schedule = registry.OPTIMIZERS[report["optimizer"]], registry.SCHEDULES[schedule]
    # plain gradient descent at a constant step: its own rate; else the 1/L every method can take
    plain_gd = (optimizer.auto_rate is not None and not optimizer.accelerated and schedule.build is not None
                and not schedule.decays and result.learning_rate)
    step = float(result.learning_rate) if plain_gd else 1.0 / top
    rate = max(abs(1.0 - step * kept[0]), abs(1.0 - step * kept[-1]))
    tol = settings["tol"] if settings["tol"] is not None else DEFAULT_TOL
    start = report["initial_cost"] or result.final_cost
    # The data fit exactly (F* at rounding level of the start): a relative target
    # would be zero, so measure against the starting cost instead.
    exact = optimal_cost <= start * 1e3 * np.finfo(float).eps
    target = tol * (start if exact else optimal_cost)
    report["exact_fit"] = bool(exact)
    report["estimate_step"] = step
    report["estimate_tol"] = tol
    report["estimate_target_gap"] = target
    report["contraction_per_epoch"] = float(rate * rate)
    report["epochs_to_tol"] = epochs_to_reach(gap, target, rate * rate)


def analyse(result, settings, source=None, full=True):
    """The fit report and the regression statistics of a finished fit.

    Parameters
    ----------
    result : gradfit.result.FitResult
    settings : dict
        The estimator's ``get_params()``.
    source : Source, optional
        The training data; read once more only when the pass engine ran with
        the squared error (to collect the statistics it does not keep).
    full : bool, default=True
        ``False`` (``partial_fit``) reports why training stopped only: the
        statistics of one batch say nothing about a model trained on many.

    Returns
    -------
    report : dict
        JSON-ready. Always ``converged``, ``stop_reason``, ``message`` (the
        record's, :attr:`gradfit.result.FitResult.message`), ``advice``,
        ``n_iter``, ``max_epochs``, ``final_cost``, ``learning_rate``,
        ``max_stable_learning_rate``, ``engine``, ``notes``. For the squared
        error also ``optimal_cost``, ``gap``, ``relative_gap``,
        ``condition_number`` (the units training ran in),
        ``condition_number_standardized``, ``condition_number_raw``,
        ``curvature`` (L), ``rank``, ``contraction_per_epoch`` (of the cost
        gap), ``epochs_to_tol`` (``None``: never, at that step),
        ``estimate_step``, ``estimate_tol``.
    statistics : dict or None
        :func:`gradfit.summary.regression_statistics` in :func:`~gradfit.summary.to_json`
        form for unpenalized squared-error fits; ``None`` otherwise, and then
        ``report["statistics"]`` says why.
    """
    report = _basic(result, settings)
    try:
        return _analyse(result, settings, source, full, report)
    except Exception as exc:  # noqa: BLE001 - the fit is done: a failing estimate must not lose it
        report["notes"].append(f"the diagnostics stopped early ({type(exc).__name__}: {exc}); the fit is unaffected")
        report["statistics"] = "not computed: the diagnostics stopped early (see notes)"
        return report, None


def _analyse(result, settings, source, full, report):
    statistics = None
    if settings["batch_size"] is not None:
        report["notes"].append(
            "minibatches: 2/L and the epoch estimate are those of full-batch gradient descent"
        )
    if not full:
        report["statistics"] = "partial_fit: statistics describe complete fits only"
        return report, None
    if not result.problem.loss.quadratic:
        report["statistics"] = f"loss={settings['loss']!r}: the regression statistics assume the squared error"
        report["notes"].append(f"loss={settings['loss']!r} has no closed-form optimum: no gap or epoch estimate")
        return report, None
    problem = _quadratic_problem(result, settings, source, report)
    if problem is None:
        report["statistics"] = "not computed (see notes)"
        return report, None
    stats, objective = problem
    _quadratic(result, settings, stats, objective, report)
    penalty = objective.penalty
    if penalty is not None and (penalty.l1 > 0 or penalty.l2 > 0):
        report["statistics"] = f"penalty={settings['penalty']!r}: OLS statistics describe unpenalized fits"
        return report, None
    reference = result.reference
    if reference is None:
        report["statistics"] = "not computed: the statistics of the data were not collected (see notes)"
        return report, None
    # SSE and SSE* from the exact quadratic about the optimum (no cancellation in
    # SSE − SSE*), in the reference units: the rank and the optimum are decided
    # in a well-scaled basis, never in the raw units training may have used.
    engine = reference.engine
    optimum = reference.optimum()
    optimal_sse = engine.squared_error_per_output(optimum) * stats.sum_weights
    if result.converged:
        coef, intercept = result.coef, result.intercept
        sse = engine.squared_error_per_output(reference.params_from_raw(coef, intercept)) * stats.sum_weights
        evaluated_at = "returned coefficients"
    else:
        # Never OLS statistics of a point that is not the optimum: those of the optimum, named so.
        coef, intercept = reference.to_raw(optimum)
        sse = optimal_sse
        evaluated_at = "least-squares optimum"
    try:
        raw = regression_statistics(
            stats, coef, intercept, sse, optimal_sse,
            settings["fit_intercept"], feature_names=getattr(source, "feature_names", None),
        )
    except Unavailable as exc:
        report["statistics"] = f"not available: {exc}"
        return report, None
    raw["evaluated_at"] = evaluated_at
    if result.converged:
        report["statistics"] = "available, at the returned coefficients (certified at the optimum)"
    else:
        raw["note"] = (
            "statistics of the least-squares optimum computed from the data's statistics, NOT of the "
            f"returned coefficients: the fit is {report['message']}"
        )
        report["statistics"] = (
            "available at the least-squares optimum only: the returned coefficients are not at it, "
            "so their own OLS statistics are withheld"
        )
    statistics = to_json(raw)
    return report, statistics


def _g(value, digits=6):
    return "n/a" if value is None else f"{float(value):.{digits}g}"


def describe(report):
    """The report as ``(label, text)`` pairs, for the command line and the HTML page."""
    rows = [("stopped", report["message"])]
    certificate = report.get("certificate")
    if isinstance(certificate, dict):  # a model file's, read as it was written
        value = certificate.get("value")
        shown = f"{value:.3g}" if isinstance(value, (int, float)) else "none"
        rows.append((
            "certificate",
            f"{str(certificate.get('kind', '?')).replace('_', ' ')} {shown} (tol {certificate.get('tol')}; "
            f"{'converged' if certificate.get('converged') else 'not converged'}): {certificate.get('detail', '')}",
        ))
    cost = f"{_g(report['final_cost'], 10)}"
    if report.get("optimal_cost") is not None:
        cost += f"; optimal {_g(report['optimal_cost'], 10)}, gap {_g(report['gap'], 3)}"
        if report.get("relative_gap") is not None:
            cost += f" ({_g(report['relative_gap'], 3)} relative)"
    rows.append(("cost", cost))
    if report.get("condition_number") is not None:
        rows.append((
            "condition number",
            f"{_g(report.get('condition_number_standardized'), 4)} standardized, "
            f"{_g(report.get('condition_number_raw'), 4)} raw "
            f"(of the Hessian; training ran {'standardized' if report.get('standardized') else 'raw'})",
        ))
    rate = report.get("learning_rate")
    if rate is None:
        text = f"none ({report['optimizer']} takes its own steps)"
    else:
        unit = registry.OPTIMIZERS.get(report["optimizer"])
        auto = report.get("learning_rate_auto") and (unit is None or unit.auto_rate is not None)
        text = f"{_g(rate)}" + (" (auto = 1/L)" if auto else "")
    if report.get("max_stable_learning_rate") is not None:
        text += f"; stable below 2/L = {_g(report['max_stable_learning_rate'])}"
    rows.append(("learning rate", text))
    if "epochs_to_tol" in report:
        epochs = report["epochs_to_tol"]
        how = (
            "already there" if epochs == 0
            else "never at this step (at or above the stable limit)" if epochs is None
            else f"about {epochs} more epochs"
        )
        rows.append((
            "plain GD from here",
            f"{how} to bring the gap below {_g(report['estimate_target_gap'], 3)} "
            f"(tol={_g(report['estimate_tol'], 3)}; step {_g(report['estimate_step'], 4)}, "
            f"gap x{_g(report['contraction_per_epoch'], 6)} per epoch)",
        ))
    rows.append(("statistics", report.get("statistics", "n/a")))
    for note in report.get("notes", []):
        rows.append(("note", note))
    return rows
