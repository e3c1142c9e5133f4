"""Assemble one fit: source → statistics → engine → objective → optimizer → loop.

Both surfaces (the estimator and the CLI) call :func:`fit_source`; it holds
no math of its own beyond choosing the pieces and the step size.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import checkpoint as checkpoints
from . import registry, robust, schedules
from .autoselect import NEWTON, resolve_optimizer
from .optimizers import scale_by_inverse_hessian
from .certify import MAX_FEATURES as MAX_CERTIFIED_FEATURES
from .certify import BlockReference, QuadraticReference, certify
from .engines import accumulate, choose_engine
from .engines.categorical import accumulate_blocks
from .engines.formula_levels import accumulate_formula
from .engines.levels import accumulate_learning
from .certificate import Certificate
from .diagnostics import advice
from .errors import DataError, IgnoredOptionWarning, OptionError
from .model import json_setting
from .objective import Objective
from .refine import MAX_FEATURES as MAX_REFINEMENT_FEATURES
from .refine import refine as refine_fit
from .result import FitResult  # the fit's one record
from .scaling import Scaling
from .errors import ClusterError
from .train import train


@dataclass
class Problem:
    """The prepared pieces of a fit, reusable across calls (``partial_fit``)."""

    objective: Objective
    scaling: Scaling
    statistics: Any
    engine: str
    loss: Any
    n_samples: int


def _names(parts, **needs):
    """``"a", "b" or "c"``: the names of ``parts`` whose capabilities are ``needs`` (for messages)."""
    names = [f'"{p.name}"' for p in parts.values() if p.build is not None
             and all(getattr(p, key) == value for key, value in needs.items())]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def check_combination(settings, loss, penalty):
    """Refuse, with a message that says why, what an optimizer cannot serve (its entry's capabilities)."""
    optimizer = settings["optimizer"]
    if optimizer == robust.NAME:
        robust.check_combination(settings, loss, penalty)
        return
    part = registry.OPTIMIZERS[optimizer]
    if part.needs_quadratic and not loss.quadratic:
        quadratic = " or ".join(f'loss="{name}"' for name, entry in registry.LOSSES.items() if entry.quadratic)
        raise OptionError(
            f'optimizer="{optimizer}" needs {quadratic}, not {loss.name!r}: {part.reasons["quadratic"]}; '
            f"use {_names(registry.OPTIMIZERS, needs_quadratic=False, takes_learning_rate=True)}"
        )
    if not part.serves_prox and penalty is not None and penalty.has_prox:
        raise OptionError(
            f'optimizer="{optimizer}" cannot serve the L1 part of penalty={penalty.name!r} ({part.reasons["prox"]}); '
            f"use optimizer={_names(registry.OPTIMIZERS, serves_prox=True)}"
        )
    if part.needs_full_batch and settings["batch_size"] is not None:
        raise OptionError(f'optimizer="{optimizer}" needs full batches (batch_size=None): '
                          f'{part.reasons["full_batch"]}')
    if not part.takes_learning_rate:
        if settings["learning_rate"] != "auto":
            raise OptionError(f'optimizer="{optimizer}" takes every step from {part.step_source}; '
                              'leave learning_rate="auto"')
        if registry.SCHEDULES[settings["schedule"]].decays:
            raise OptionError(f'optimizer="{optimizer}" has no learning rate to schedule; leave schedule="auto", '
                              f'not {settings["schedule"]!r}')


def check_meaningful(settings, strict=False):
    """Refuse an option whose value would be ignored, naming the option that gives it meaning.

    Compared with the default (:func:`gradfit.registry.dependent_options`, from the table):
    scikit-learn's ``get_params`` stores every parameter, so only a value
    other than the default can have been asked for. An entry the estimator
    does not refuse (``alpha``) is an :class:`~gradfit.errors.IgnoredOptionWarning`
    unless ``strict`` (the command line).
    """
    for option, (default, owner, applies, values, refuse) in registry.dependent_options().items():
        value = settings.get(option, default)
        if value != default and not applies(settings):
            message = (f"{option}={value!r} has no effect with {owner}={settings.get(owner)!r}; "
                       f"it applies only with {values} (or leave {option} at its default {default!r})")
            if refuse or strict:
                raise OptionError(message)
            warnings.warn(message, IgnoredOptionWarning, stacklevel=4)


def robust_default(settings, loss, penalty, complete=True):
    """Whether ``optimizer="auto"`` runs :mod:`gradfit.robust`'s Newton method for this fit.

    For Huber and the absolute error where Newton serves them
    (:func:`gradfit.robust.default_optimizer`), in a complete fit that asked
    for no step size, schedule or checkpoint (Newton has none of those) and
    has a ``tol`` to stop at (``tol=None`` runs every epoch of gd, as for the
    squared error); the first-order optimizers serve the rest, certified the
    same way.
    """
    return (complete and settings["optimizer"] == "auto" and settings["learning_rate"] == "auto"
            and settings["schedule"] == "auto" and settings["tol"] is not None
            and robust.default_optimizer(loss, penalty, settings["batch_size"]) is not None)


def lasso_start(problem, fit_intercept):
    """Where ``optimizer="auto"`` starts an L1 or elastic-net fit on the statistics (working units).

    Accelerated proximal gradient needs thousands of epochs on correlated
    features; coordinate descent on the Gram matrix (the regularization
    path's solver, :func:`gradfit.alpha_path.solve_path`, scikit-learn's
    ``precompute=True``) reaches a duality gap of ``1e-12·var(y)`` in O(d²)
    sweeps without touching the data. The training loop then runs from there
    and its certificate (the duality gap) decides, as for any other start.
    """
    from .alpha_path import Quadratic, solve_path

    penalty = problem.objective.penalty
    path = solve_path(Quadratic.from_statistics(problem.statistics, fit_intercept), [penalty.alpha],
                      penalty.l1_ratio)
    return problem.scaling.from_raw(path.coefs[0], path.intercepts[0], fit_intercept)


def serves_blocks(settings, loss, penalty):
    """Whether a fit with these settings runs on the blocks of a categorical column kept as codes.

    The squared error with any penalty (the blocks' solve adds the L2 part's
    diagonal exactly, :meth:`~gradfit.engines.categorical.LevelBlocks.solve_ridge`;
    an L1 part is the optimizer's proximal step, certified by the duality gap),
    full batches, an engine that knows the optimum
    (``"auto"``, or ``"statistics"`` by name) and any optimizer but the robust
    losses' Newton method, which runs passes of its own (:func:`gradfit.robust.fit`, on the
    level blocks too: :func:`keeps_codes`) (``"cg"`` runs
    without the refinement epochs it takes on a dense scatter: see
    :func:`fit_source`). Otherwise the column is dense dummies, as long as it
    has at most ``MAX_LEVELS`` levels.
    """
    engine = registry.part("engine", settings["engine"])
    return (loss.quadratic and settings["batch_size"] is None
            and (engine.name == "auto" or engine.knows_optimum) and settings["optimizer"] != robust.NAME)


def keeps_codes(settings, loss, penalty, engine_name, n_levels):
    """Whether a fit reads a categorical column of many levels as level codes, never as dense dummies.

    Every fit does, through the block statistics engine where
    :func:`serves_blocks` says so and the pass engine
    (:mod:`gradfit.engines.passes`) otherwise, but those that solve with a
    dense d × d scatter while the column has at most ``MAX_LEVELS`` levels
    (beyond, they take the codes too: first-order optimizers, whose
    certificate may then be none):

    * a fit of the dense statistics engine that :func:`serves_blocks` does
      not admit (its exact solve, :func:`lasso_start`'s coordinate descent and
      its certificate read the dense scatter); ``engine="statistics"`` by
      name then stays dense.

    The robust losses' Newton method (:mod:`gradfit.robust`), by name or as
    ``"auto"``'s default (the same :func:`gradfit.robust.fit`), keeps the
    codes: Huber's steps solve by the inliers' level blocks
    (:mod:`gradfit.robust.level_newton`), the absolute error's and the pinball
    loss's linear programs' rows are sparse
    (:func:`gradfit.robust.absolute.restricted`).

    ``engine_name`` is the engine :func:`~gradfit.engines.choose_engine` chose.
    """
    from .sources.encoding import MAX_LEVELS

    if serves_blocks(settings, loss, penalty):
        return True
    if robust.serves(loss) and (settings["optimizer"] == robust.NAME or robust_default(settings, loss, penalty)):
        return True  # Newton by name or by default: level blocks (Huber), sparse LP rows (the others)
    if registry.part("engine", settings["engine"]).knows_optimum:
        return False
    dense_allowed = n_levels <= MAX_LEVELS
    if robust_default(settings, loss, penalty) or registry.ENGINES[engine_name].knows_optimum:
        return not dense_allowed
    return True


def on_codes(statistics):
    """Whether ``statistics`` are a categorical column's blocks (:class:`~gradfit.engines.categorical.BlockStatistics`)."""
    return getattr(statistics, "blocks", None) is not None


def learns_scatter(settings, loss, penalty):
    """Whether the pass that learns a file's levels keeps the whole scatter: it is read before the engine is
    chosen (the features are not known yet), so wherever the statistics engine or Newton's method may use it."""
    engine = registry.part("engine", settings["engine"])
    may_use = engine.knows_optimum or (engine.name == "auto" and loss.quadratic and settings["batch_size"] is None)
    return may_use or settings["optimizer"] == robust.NAME or robust_default(settings, loss, penalty)


def prepare(source, settings, scaling=None, statistics=None):
    """Read the statistics, choose the engine and build the objective.

    ``settings`` is the estimator's ``get_params()``; ``scaling`` fixes the
    working units (``partial_fit`` keeps its first batch's); ``statistics``,
    with the full scatter, spares the pass that reads them (cross-validation
    has them already).
    """
    loss = registry.part("loss", settings["loss"]).build(settings)
    penalty = None
    if settings["penalty"] is not None:
        penalty = registry.part("penalty", settings["penalty"]).build(settings)
    registry.part("optimizer", settings["optimizer"])
    registry.part("schedule", settings["schedule"])
    check_meaningful(settings)
    check_combination(settings, loss, penalty)
    learned = None
    if statistics is None and getattr(source, "levels_pending", False):
        # a file's categories learned in the statistics pass itself: the file is read once (None: the levels
        # were learned apart); a column of many levels comes with its blocks (BlockStatistics)
        # (a formula's model spec likewise: gradfit.engines.formula_levels)
        learning = accumulate_formula if getattr(source, "design", None) is not None else accumulate_learning
        statistics = learned = learning(source, full=learns_scatter(settings, loss, penalty))
    if statistics is None:
        # a Dask formula's: merged on the cluster in the compute that learned its levels (dask_formula_source)
        statistics = learned = getattr(source, "learned_statistics", None)
    engine_name = choose_engine(
        settings["engine"], loss, settings["batch_size"], source.n_features, settings["epochs"],
        # A CSV's rows are known after the first pass; until then its size says about how many there are
        n_samples=source.n_samples if source.n_samples is not None else getattr(source, "estimated_samples", None),
    )
    if getattr(source, "block_candidate", None) is not None:
        # a categorical column of many levels: its statistics as blocks, never a dense one-hot
        if learned is not None and on_codes(learned) and not keeps_codes(
                settings, loss, penalty, engine_name, source.block_candidate["n_levels"]):
            statistics = None  # this fit reads the column as dense dummies: the learned blocks serve it not
        given = statistics
        source.use_blocks(on_codes(statistics) if statistics is not None else keeps_codes(
            settings, loss, penalty, engine_name, source.block_candidate["n_levels"]))
        if source.block_layout is not None:
            statistics = given if given is not None else accumulate_blocks(source)
            # the blocks' statistics engine where it serves the fit, else passes that read the codes
            engine_name = "statistics" if serves_blocks(settings, loss, penalty) else "pass"
    if statistics is None:
        # optimizer="newton" solves with the Gram (projections, the least-squares start): read it in the same pass
        newton = settings["optimizer"] == robust.NAME or robust_default(settings, loss, penalty)
        statistics = accumulate(source, full=registry.ENGINES[engine_name].knows_optimum or newton)
    if statistics.n_samples < 2:
        raise DataError(
            f"{source.describe()} has {statistics.n_samples} sample; at least 2 samples are required"
        )
    if scaling is None:
        scaling = Scaling.from_statistics(statistics, settings["fit_intercept"], settings["standardize"])
    engine = registry.ENGINES[engine_name].build(source, scaling, loss, settings["fit_intercept"], statistics,
                                                 penalty=penalty)
    return Problem(Objective(engine, penalty, scaling), scaling, statistics, engine_name, loss, statistics.n_samples)


def target_rms(statistics):
    """Root mean square of the targets (over rows and outputs): the size of the residuals at θ = 0."""
    d = statistics.n_features
    mean = statistics.mean[d:]
    variance = np.maximum(statistics.scatter_diagonal[d:] / statistics.sum_weights, 0.0)
    rms = float(np.sqrt(np.mean(mean * mean + variance)))
    return rms if rms > 0 else 1.0  # all-zero targets: any step serves


def minibatch_curvature(problem, batch_size, fit_intercept):
    """``L_b``: the smoothness constant that bounds a step on minibatches of ``batch_size`` rows.

    For ``b`` of ``N`` rows drawn without replacement (Gower et al. 2019, "SGD:
    general analysis and improved rates", expected smoothness)

        L_b = N(b − 1)/(b(N − 1)) · L  +  (N − b)/(b(N − 1)) · L_row,

    ``L`` the full cost's and ``L_row`` a single row's, here the mean over rows
    of ``(curvature of ℓ)/k · (‖x̃_i‖² + fit_intercept)`` (from the moments: no
    extra pass). ``L_1 = L_row``, ``L_N = L``; the penalty's curvature is added
    in full.
    """
    objective = problem.objective
    data_curvature = objective.engine.curvature()
    penalty_curvature = objective.curvature() - data_curvature
    n = problem.n_samples
    b = min(batch_size, n)
    if b >= n:
        return data_curvature + penalty_curvature
    stats, scaling = problem.statistics, problem.scaling
    d = stats.n_features
    variance = np.maximum(stats.scatter_diagonal[:d] / stats.sum_weights, 0.0)
    offset = stats.mean[:d] - scaling.center
    row_norm = float(np.sum((variance + offset * offset) / (scaling.scale * scaling.scale))) + fit_intercept
    factor = (problem.loss.curvature or 2.0) / stats.n_outputs  # no bound (non-smooth): the squared error's
    row_curvature = factor * row_norm
    mixed = (n * (b - 1) * data_curvature + (n - b) * max(row_curvature, data_curvature)) / (b * (n - 1))
    return mixed + penalty_curvature


def base_learning_rate(problem, settings, restart=True):
    """The base step ``η``: a float as given, or what ``"auto"`` means for the optimizer.

    * ``gd``, ``momentum``, ``nesterov``: ``1/L``, ``L`` the largest eigenvalue of
      the Hessian of the smooth part of the cost in the units training runs in
      (gradient descent cannot diverge below ``2/L``; heavy ball with β = 0.9 not
      below ``3.8/L``, Nesterov not below ``1.36/L``). With minibatches ``L`` is
      :func:`minibatch_curvature`'s ``L_b``, which grows to a single row's.
    * ``momentum``, ``nesterov`` without restarts (minibatches, ``partial_fit``;
      ``restart=False``): ``(1 − β)/L_b``. Their momentum adds up steps to
      ``η/(1 − β)`` in the long run, ten times ``η``, which on noisy minibatch
      gradients is what needs bounding; this keeps it at plain SGD's ``1/L_b``.
    * a non-smooth loss (``absolute_error``, ``quantile``; any of those three): ``2·rms(y)/L``
      with the squared error's ``L``, see :data:`gradfit.registry.NON_SMOOTH_AUTO_FACTOR`.
    * ``adam``: ``0.01 × rms(y)``. Adam moves each coordinate by about ``η`` a
      step whatever the gradient's size, so ``η`` is a distance in the
      coefficients' units, which standardized features put in the target's.
    * ``cg``: ``None``; the line search sets every step.
    """
    rate = settings["learning_rate"]
    if rate != "auto":
        return float(rate)
    optimizer = registry.OPTIMIZERS[settings["optimizer"]]
    if not optimizer.takes_learning_rate:
        return None
    if optimizer.auto_rate is None:  # Adam: a distance in the coefficients' units
        return registry.ADAM_AUTO_RATE * target_rms(problem.statistics)
    if settings["batch_size"] is None:
        curvature = problem.objective.curvature()
    else:
        curvature = minibatch_curvature(problem, settings["batch_size"], settings["fit_intercept"])
    rate = optimizer.auto_rate / curvature
    if optimizer.restarts and not restart:
        rate *= 1.0 - registry.MOMENTUM_DECAY
    if not problem.loss.smooth:
        rate *= registry.NON_SMOOTH_AUTO_FACTOR * target_rms(problem.statistics)
    return rate


def resolve_schedule(settings, loss):
    """``(name, power_t)`` of the schedule to run: ``"auto"`` made concrete (:func:`gradfit.schedules.auto`)."""
    name, power_t = settings["schedule"], settings["power_t"]
    if name == "auto":
        name, auto_power = schedules.auto(smooth=loss.smooth)
        power_t = power_t if auto_power is None else auto_power
    return name, power_t


def refinement_statistics(source, problem):
    """The statistics with the full scatter that refinement solves with, or ``None``.

    The statistics engine has them; with the pass engine they cost one more
    pass (``O(N d²)``), read only up to ``gradfit.refine.MAX_FEATURES`` features.
    """
    if problem.statistics.scatter is not None:
        return problem.statistics
    if source.n_features > MAX_REFINEMENT_FEATURES:
        return None
    return accumulate(source, full=True)


def _build_optimizer(name, schedule, steps, options, reference):
    """The optimizer ``name`` from the registry, or ``"auto"``'s Newton step on the statistics' Hessian.

    The Newton step runs only standardized (:func:`gradfit.autoselect.resolve_optimizer`),
    where the training units are the reference's, so ``reference.solve`` (H⁺) applies as it is.
    """
    if name == NEWTON:
        return scale_by_inverse_hessian(reference.solve)
    return registry.OPTIMIZERS[name].build(schedule, steps, **options)


def _certifier(reference, scaling, fit_intercept, tol):
    """``params (training units) -> Certificate``: the loop's convergence test."""

    def certifier(params):
        return reference.certify(reference.params_from_raw(*scaling.to_raw(params, fit_intercept)), tol)

    return certifier


def fit_source(source, settings, *, params=None, opt_state=None, loss_curve=None, problem=None,
               epochs=None, learning_rate=None, rng=None, callbacks=(), refine=None,
               checkpoint=None, checkpoint_every=10, resume=None):
    """Fit the linear model to ``source`` with the estimator's ``settings``.

    ``params``/``opt_state``/``loss_curve`` continue earlier training;
    ``problem`` reuses prepared pieces; ``epochs`` overrides ``settings["epochs"]``;
    ``learning_rate`` and ``rng`` fix the step and the shuffling stream.
    ``momentum`` and ``nesterov`` restart (:func:`gradfit.optimizers.add_momentum`)
    only in a complete full-batch fit, where every epoch sees the same cost.

    ``refine``: whether ``optimizer="cg"`` is followed by refinement epochs whose
    gradient comes from a data pass (:mod:`gradfit.refine`). ``None`` (the
    default) refines a complete fit, not ``partial_fit``'s single epochs
    (``epochs`` given). They continue ``loss_curve`` and run through the same
    training loop; the record's ``refinement`` (:class:`gradfit.result.Refinement`)
    says what they did. With the pass engine they first read the full scatter (one more pass), up to
    ``gradfit.refine.MAX_FEATURES`` features; beyond that none run.

    ``checkpoint``: a path where the whole training state is written every
    ``checkpoint_every`` epochs and at the end (:mod:`gradfit.checkpoint`);
    ``resume``: a checkpoint to go on from, made with the same settings (but
    ``epochs``) on the same data. A resumed run ends with the same bits as an
    unbroken one.

    Returns
    -------
    FitResult
        The fit's one record (:mod:`gradfit.result`): parameters, cost curve,
        stop reason and message, certificate, engine, optimizer, step size.

    Raises
    ------
    IllConditionedError
        From the refinement, when the problem is too ill-conditioned for float64.
    CheckpointError
        When ``resume`` is damaged or was made with other settings or data.
    """
    asked = settings  # what the advice in the record's message compares with
    problem = problem or prepare(source, settings)
    # -- robust losses (gradfit.robust): Newton's fit, best iterates, certificates ---------
    if robust_default(settings, problem.loss, problem.objective.penalty, epochs is None and checkpoint is None
                      and resume is None):
        # (on level codes too: Huber's steps solve by the level blocks, the linear programs' rows are sparse)
        settings = dict(settings, optimizer=robust.NAME)  # "auto": what reaches the certified optimum
    if settings["optimizer"] == robust.NAME:
        if checkpoint is not None or resume is not None:
            raise OptionError('optimizer="newton" runs a few passes, not an epoch loop: it takes no checkpoint')
        if not settings["standardize"]:
            # Newton and its certificate in standardized units: the optimum is the same (the
            # penalty is on the coefficients in the data's units), and raw units as far apart
            # as Longley's lose the certificate's digits to cancellation
            raw = None if params is None else problem.scaling.to_raw(params, settings["fit_intercept"])
            problem = prepare(source, dict(settings, standardize=True), statistics=problem.statistics)
            if raw is not None:
                params = problem.scaling.from_raw(raw[0], raw[1], settings["fit_intercept"])
        return _advised(robust.fit(source, problem, settings, params=params, callbacks=callbacks), asked)
    robust_loss = robust.serves(problem.loss) and epochs is None and settings["batch_size"] is None
    # -- end robust losses ---------------------------------------------------------------
    objective = problem.objective
    fit_intercept = settings["fit_intercept"]
    n_params = source.n_features + fit_intercept
    fresh = params is None  # a fit from zero (not warm_start, partial_fit or a resumed run)
    if params is None:
        params = np.zeros((n_params, source.n_outputs))
    requested = settings  # what a checkpoint records and compares
    complete = epochs is None  # partial_fit runs single epochs, each maybe on a different batch
    optimizer_name = resolve_optimizer(settings, problem, complete)
    settings = dict(settings, optimizer=optimizer_name)
    if fresh and resume is None and complete and requested["optimizer"] == "auto" and objective.has_prox \
            and requested["learning_rate"] == "auto" and requested["schedule"] == "auto" \
            and problem.statistics.scatter is not None:
        params = lasso_start(problem, fit_intercept)
    batch_size = settings["batch_size"]
    steps = 1 if batch_size is None else -(-problem.n_samples // batch_size)
    tol = settings["tol"]
    reference = certifier = None
    # cg by name is followed by refinement epochs, which the certificate
    # judges: its own epochs end as they always have (the stall rule).
    # engines.categorical: no d×d scatter; nothing for refinement to solve with (its statistics are exact blocks)
    blocks = getattr(problem.statistics, "blocks", None) is not None
    refining = bool(complete if refine is None else refine) and registry.OPTIMIZERS[requested["optimizer"]].refined \
        and not blocks
    if complete and problem.loss.quadratic and (blocks or problem.statistics.scatter is not None
                                                and source.n_features <= MAX_CERTIFIED_FEATURES):
        # The statistics engine: the certificate costs O(d²) an epoch, so the loop checks it every epoch.
        reference = block_reference(problem.statistics, objective.penalty, fit_intercept) if blocks else \
            QuadraticReference(problem.statistics, objective.penalty, fit_intercept)
        if tol is not None and not refining and reference is not None:
            certifier = _certifier(reference, problem.scaling, fit_intercept, tol)
    if optimizer_name == NEWTON and reference is None:  # too many features for the d×d solve
        optimizer_name = settings["optimizer"] = "cg"
    # Restarts compare the cost from epoch to epoch: only where it is the same cost throughout.
    restart = complete and batch_size is None
    options = {"restart": restart} if registry.OPTIMIZERS[optimizer_name].restarts else {}
    takes_rate = registry.OPTIMIZERS[optimizer_name].takes_learning_rate
    if not takes_rate:
        rate = schedule_name = None
        schedule = lambda epoch: 0.0  # noqa: E731 - cg's steps come from its line search, Newton's from H
    else:
        rate = base_learning_rate(problem, settings, restart) if learning_rate is None else learning_rate
        schedule_name, power_t = resolve_schedule(settings, problem.loss)
        schedule = registry.SCHEDULES[schedule_name].build(rate, dict(settings, power_t=power_t))
    run_epochs = settings["epochs"] if epochs is None else epochs
    if checkpoint is not None or resume is not None:
        fingerprint = checkpoints.data_fingerprint(problem.statistics, source.feature_names, source.target_names)
        plain_settings = {name: json_setting(value) for name, value in requested.items()}
    if resume is not None:
        # Everything the loop carries from epoch to epoch comes from the checkpoint.
        saved = checkpoints.read(resume)
        checkpoints.check_compatible(saved, resume, plain_settings, fingerprint)
        params, loss_curve, rng, rate = checkpoints.restore(
            saved, resume, (n_params, source.n_outputs), uses_rate=takes_rate,
            expected_rate=rate, minibatches=batch_size is not None, engine=problem.engine,
        )
        if takes_rate:
            schedule = registry.SCHEDULES[schedule_name].build(rate, dict(settings, power_t=power_t))
        optimizer = _build_optimizer(optimizer_name, schedule, steps, options, reference)
        opt_state = checkpoints.decode_tree(
            saved.get("opt_state"), optimizer.init(params), f"checkpoint {os.fspath(resume)!r} is damaged: opt_state",
            params_shape=params.shape, max_count=len(loss_curve) * steps,
        )
        run_epochs = max(settings["epochs"] - len(loss_curve), 0)
    else:
        optimizer = _build_optimizer(optimizer_name, schedule, steps, options, reference)
    if rng is None and batch_size is not None:
        rng = np.random.default_rng(settings["random_state"])
    refine_callbacks = tuple(callbacks)  # the refinement phase has its own state: not checkpointed
    if checkpoint is not None:
        head = checkpoints.header(plain_settings, fingerprint, problem.scaling, rate, problem.statistics, problem.engine)
        checkpointer = checkpoints.Checkpointer(checkpoint, checkpoint_every, head)
        callbacks = tuple(callbacks) + (checkpointer,)

    def max_stable():
        try:
            return 2.0 / objective.curvature()
        except Exception:  # the message is a courtesy; never mask the divergence itself
            return None

    best = None  # gradfit.robust: a non-smooth loss's best iterate (full batches: the curve is the cost)
    if robust_loss and not problem.loss.smooth:
        best = robust.BestIterate(params)
        callbacks = tuple(callbacks) + (best,)

    def run(start, state, curve, count, check):
        try:
            return train(
                objective,
                optimizer,
                start,
                epochs=count,
                tol=tol,
                n_iter_no_change=settings["n_iter_no_change"],
                schedule=schedule,
                batch_size=batch_size,
                n_samples=problem.n_samples,
                rng=rng,
                opt_state=state,
                loss_curve=curve,
                max_stable_learning_rate=max_stable if problem.loss.smooth else None,
                standardized=settings["standardize"],
                callbacks=callbacks,
                certify=check,
            )
        except ClusterError as exc:
            if checkpoint is not None:
                # The state after the last whole epoch (every epoch's sums are whole or
                # never came): a resumed run goes on from there with the same bits.
                checkpointer.on_train_end()
            raise ClusterError(exc.what, checkpoint) from None  # its message: go on from the checkpoint

    done_before = len(loss_curve or [])
    result = run(params, opt_state, loss_curve, run_epochs, certifier)
    if (result.stop_reason == "stalled" and reference is None and complete and not refining and problem.loss.quadratic
            and source.n_features <= MAX_CERTIFIED_FEATURES and not blocks):
        # The pass engine's cost stalled: a stall is not convergence. Collect the
        # statistics now (the one extra pass the certificate needs anyway) and go
        # on, checking the certificate every epoch, until it holds or epochs run out.
        reference = QuadraticReference(accumulate(source, full=True), objective.penalty, fit_intercept)
        certifier = _certifier(reference, problem.scaling, fit_intercept, tol)

        left = run_epochs - (len(result.loss_curve) - done_before)
        if left > 0 and not certifier(result.params).converged:
            result = run(result.params, result.opt_state, result.loss_curve, left, certifier)
    refinement = statistics = None
    refine = complete if refine is None else refine
    # Refinement follows cg when asked for by name: it reads the data again and
    # refuses problems float64 cannot determine, which "auto" must not impose.
    if refine and registry.OPTIMIZERS[requested["optimizer"]].refined and not blocks \
            and result.stop_reason != "interrupted":
        statistics = reference.statistics if reference is not None else refinement_statistics(source, problem)
    if statistics is not None:
        coef, intercept, refined, refinement = refine_fit(
            source, problem, result.params, fit_intercept=fit_intercept,
            loss_curve=result.loss_curve, statistics=statistics, callbacks=refine_callbacks,
        )
        # cg's own state stays: it describes where cg left off, for continuing
        result.params, result.loss_curve = refined.params, refined.loss_curve
        if refined.stop_reason == "interrupted":  # Ctrl-C during refinement stops the fit; "settled" does not
            result.stop_reason = refined.stop_reason
    else:
        coef, intercept = problem.scaling.to_raw(result.params, fit_intercept)
    final_cost = objective.value(result.params)
    if robust_loss and best is not None and best.cost < final_cost:  # gradfit.robust: never worse than the best seen
        result.params, final_cost = best.params, best.cost
        coef, intercept = problem.scaling.to_raw(result.params, fit_intercept)
    stop_reason = result.stop_reason
    if not complete:
        certificate = Certificate("none", None, tol, "partial_fit: one epoch on one batch certifies nothing about the data")
    elif blocks and reference is None and problem.loss.quadratic:
        certificate = Certificate("none", None, tol, CODES_NOT_CERTIFIED.format(
            penalty=getattr(objective.penalty, "name", None)))
    else:
        if reference is None and problem.loss.quadratic and stop_reason != "interrupted" \
                and source.n_features <= MAX_CERTIFIED_FEATURES:
            # The pass engine keeps no scatter: at most one more pass (none when refinement read it).
            full = statistics if statistics is not None else accumulate(source, full=True)
            reference = QuadraticReference(full, objective.penalty, fit_intercept)
        judged = problem
        if robust_loss and not settings["standardize"]:  # the robust certificates in standardized units (as above)
            judged = prepare(source, dict(requested, standardize=True), statistics=problem.statistics)
        certificate = certify(judged, coef, intercept, tol, reference=reference, refinement=refinement, source=source)
        if certificate.converged:
            stop_reason = "converged"
        elif stop_reason == "converged":
            stop_reason = "stalled"  # certified during training, not after refinement moved it
    return _advised(FitResult(
        coef=coef, intercept=intercept, loss_curve=result.loss_curve, stop_reason=stop_reason, tol=tol,
        final_cost=float(final_cost), engine=problem.engine, learning_rate=rate, scaling=problem.scaling,
        statistics=problem.statistics, params=result.params, opt_state=result.opt_state, problem=problem, rng=rng,
        schedule=schedule_name, refinement=refinement, certificate=certificate, optimizer=optimizer_name,
        reference=reference,
    ), asked)


#: why a penalized squared-error fit on a column kept as level codes has no certificate (the blocks' reference
#: does not take the penalty; the dense reference would need the dense scatter the codes avoid)
CODES_NOT_CERTIFIED = ("penalty={penalty!r} on a categorical column kept as level codes: its certificate needs the "
                       "dense scatter of the column's dummies, which is never formed; no claim is made")


def block_reference(statistics, penalty, fit_intercept):
    """:class:`~gradfit.certify.BlockReference` of a fit on a categorical column's blocks, or ``None`` where it
    does not take ``penalty`` (the certificate then says so: :data:`CODES_NOT_CERTIFIED`)."""
    try:
        return BlockReference(statistics, penalty, fit_intercept)
    except (ValueError, DataError):
        # a penalty the blocks' reference does not serve, or the unpenalized problem singular (a feature
        # constant within levels) where a penalty's need not be; without a penalty that is the fit's own error
        if penalty is None:
            raise
        return None


def _advised(result, settings):
    """``result`` with its ``advice``: one change that helps a fit short of its certificate."""
    result.advice = None if result.converged else advice(settings, result)
    return result
