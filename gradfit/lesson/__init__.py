"""The lesson page: gradient descent on one's own data, to watch and to play with.

It trains (a grid of fits), so it lives beside the fitting code, not in
:mod:`gradfit.report`, which only reads a finished fit.

One self-contained HTML file (``lesson.html`` and ``lesson.js`` beside this
module, filled with the data as inline JSON; no network) that shows

* the cost's contour lines over two parameters and the path of the iterates.
  With two parameters they are the parameters themselves; with more, the plane
  through the optimum spanned by the eigenvectors of the Hessian ``H`` with the
  largest eigenvalue ``L`` and the smallest non-zero one ``μ``. For the squared
  error the cost *is* the quadratic

      J(θ) = J* + ½ (θ − θ*)ᵀ H (θ − θ*),

  so the page draws its level sets as ellipses from ``H``'s restriction to the
  plane, and the path as the iterates' projection onto it;
* the cost per epoch (log scale), the predictions for a few rows, and a
  learning-rate slider marked at ``1/L`` and ``2/L``, with a choice of
  optimizer and of standardization.

Every number the page prints comes from gradfit's own training loop: each
(standardization, optimizer, learning rate) of a grid is fitted with
:class:`~gradfit.GDRegressor`, a callback records the parameters after every
epoch, and a run that diverges keeps the iterates up to the
:class:`~gradfit.errors.DivergenceError` and its message. The page's script
only draws and looks numbers up; it computes none that it prints.
"""

from __future__ import annotations

import html
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .. import registry
from ..errors import DivergenceError, OptionError
from ..fitting import base_learning_rate, prepare
from ..files_io import atomic_writer
from ..model import predict
from ..result import headline

#: the optimizers a learner can choose between (``cg`` takes no learning rate)
OPTIMIZERS = ("gd", "momentum", "nesterov", "adam")
#: the slider's learning rates, as multiples of ``1/L`` (just below, at and past the limit ``2/L``)
MULTIPLES = (1 / 64, 1 / 16, 1 / 4, 1 / 2, 1.0, 1.5, 1.9, 2.0, 2.1, 3.0, 8.0)
#: a run longer than this shows its first ``FIRST_FRAMES`` epochs, then evenly spaced ones
MAX_FRAMES = 200
FIRST_FRAMES = 100
#: how the page prints a cost (as ``Epoch: i Cost: c``) and a prediction (as ``gradfit demo``)
COST_FORMAT = ".10g"
PREDICTION_FORMAT = ".6f"


def _quadratic_optimum(objective):
    """``(θ*, F*)`` of the squared error (± L2) on the statistics engine, in its working units.

    Without a penalty the engine's own least-squares optimum (the one nearest
    zero where features are collinear: where gradient descent from zero goes);
    with L2 one Newton step from the engine's reference point, exact on a
    quadratic, with the exact Hessian (the engine's plus the penalty's diagonal).
    """
    engine, penalty = objective.engine, objective.penalty
    if penalty is None or penalty.l2 == 0:
        return engine.optimum()
    hessian = engine.hessian()
    d = engine.n_features
    hessian[:d, :d] += np.diag(penalty.hessian_diagonal(objective.scaling.scale, engine.n_outputs))
    reference = engine.reference
    _, grad = objective.value_and_grad(reference)
    optimum = reference - np.linalg.lstsq(hessian, grad, rcond=None)[0]
    return optimum, objective.value(optimum)


def lesson_optimizer(settings):
    """The optimizer the page opens with: ``"auto"`` is the tutorial's ``"gd"`` (the lesson is about its step)."""
    return "gd" if settings["optimizer"] == "auto" else settings["optimizer"]


def check_lesson_settings(settings, n_outputs=1):
    """Refuse what the lesson cannot draw, with the reason; ``None`` when it can.

    The contours are those of a quadratic cost (the squared error, with or
    without an L2 penalty) of one target, and the slider sets a learning rate.
    """
    if not registry.LOSSES[settings["loss"]].quadratic:
        return f"--lesson draws the squared error's quadratic bowl; it cannot draw loss {settings['loss']!r}"
    if settings["penalty"] is not None and registry.PENALTIES[settings["penalty"]].build(
            dict(settings, alpha=1.0)).has_prox:
        return f"--lesson draws a quadratic cost; penalty {settings['penalty']!r} has an L1 part (use l2 or none)"
    if lesson_optimizer(settings) not in OPTIMIZERS:
        return (f"--lesson plays with the learning rate; optimizer {settings['optimizer']!r} takes none "
                f"(choose from {', '.join(OPTIMIZERS)})")
    if n_outputs != 1:
        return f"--lesson draws one target's cost, not {n_outputs}: give one --target"
    return None


class PathRecorder:
    """A training callback that keeps the parameters (working units) and the cost after every epoch.

    ``params[i]`` is ``θ_{i+1}``, the parameters after epoch ``i``'s update;
    ``costs[i]`` is ``J(θ_i)``, the cost before it (``loss_curve_[i]``).
    """

    def __init__(self):
        self.params = []
        self.costs = []

    def on_epoch_end(self, epoch, cost, params):
        self.params.append(np.array(params[:, 0], dtype=float))
        self.costs.append(float(cost))


def _rounded(values, digits=7):
    """Drawing coordinates: a few significant digits, ``None`` for what is not finite (JSON has no inf)."""
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in values]


def _frames(n_states):
    """Indexes of the states shown: all, or the first ``FIRST_FRAMES`` then evenly spaced ones and the last."""
    if n_states <= MAX_FRAMES:
        return list(range(n_states))
    rest = np.linspace(FIRST_FRAMES, n_states - 1, MAX_FRAMES - FIRST_FRAMES).round().astype(int)
    return sorted(set(range(FIRST_FRAMES)) | set(rest.tolist()))


class _Plane:
    """The two coordinates the contours are drawn in, from the Hessian ``H`` and an optimum ``θ*``.

    ``coordinates(θ)`` maps parameters (n_params,) to the plane's (2,); on the
    plane the cost is ``J* + ½ Σ_i curvatures[i] · (axes[i] · (x − center))²``
    (``axes`` (2, 2), orthonormal rows).
    """

    def __init__(self, hessian, optimum, names):
        eigenvalues, vectors = np.linalg.eigh((hessian + hessian.T) / 2)
        largest = eigenvalues[-1]
        # zero up to rounding (collinear features): the rule of the diagnostics' condition number
        self.zero_below = largest * len(eigenvalues) * np.finfo(float).eps
        nonzero = eigenvalues > self.zero_below
        self.eigenvalues = eigenvalues[::-1]
        self.n_zero = int(np.sum(~nonzero))
        # Any optimum plus a null-space direction is optimal: take the one nearest zero (the
        # start), which is where gradient descent from zero goes (its steps lie in H's range).
        span = vectors[:, nonzero]
        self.optimum = span @ (span.T @ optimum)
        p = hessian.shape[0]
        if p == 2:
            self.kind = "parameters"
            self.basis = np.eye(2)
            self.origin = np.zeros(2)
            self.labels = list(names)
            block = hessian
        else:
            self.kind = "slice"
            # the smallest non-zero eigenvalue (or, when only L is non-zero, a flat direction)
            small = min(int(np.argmax(nonzero)), p - 2)
            # horizontal: the flat, long direction of the bowl; vertical: the steep one
            self.basis = np.column_stack([vectors[:, small], vectors[:, -1]])
            self.origin = self.optimum
            self.labels = [f"along v_min (eigenvalue μ = {eigenvalues[small]:.4g})",
                           f"along v_max (eigenvalue L = {largest:.4g})"]
            block = self.basis.T @ hessian @ self.basis
        curvatures, axes = np.linalg.eigh((block + block.T) / 2)
        self.curvatures, self.axes = np.maximum(curvatures, 0.0), axes.T
        self.center = self.coordinates(self.optimum)
        self.smallest = float(eigenvalues[min(int(np.argmax(nonzero)), p - 2)]) if p > 2 else float(curvatures[0])
        self.largest = float(largest)

    def coordinates(self, params):
        return self.basis.T @ (np.asarray(params, dtype=float) - self.origin)

    def box(self, start):
        """``[xmin, xmax, ymin, ymax]``: the level set through ``start`` with a margin."""
        offset = self.axes @ (start - self.center)
        level = 0.5 * float(np.sum(self.curvatures * offset**2))
        with np.errstate(divide="ignore"):
            inverse = self.axes.T @ np.diag(np.where(self.curvatures > 0, 1 / self.curvatures, np.inf)) @ self.axes
        half = np.sqrt(2 * level * np.diag(inverse))
        half = np.where(np.isfinite(half) & (half > 0), half, np.abs(start - self.center) + 1.0)
        margin = 1.25 * half
        return [float(self.center[0] - margin[0]), float(self.center[0] + margin[0]),
                float(self.center[1] - margin[1]), float(self.center[1] + margin[1])]

    def describe(self):
        return {
            "kind": self.kind,
            "labels": self.labels,
            "center": _rounded(self.center, 12),
            "axes": [_rounded(axis, 12) for axis in self.axes],
            "curvatures": _rounded(self.curvatures, 12),
        }


def _run(source, settings, problem, plane, test_X):
    """One run of the training loop with ``settings``, as the page's frames.

    ``problem`` (:func:`gradfit.fitting.prepare`'s, same standardization) gives
    the working units the recorded parameters are in.
    """
    from ..estimator import GDRegressor

    model = GDRegressor(**settings)
    recorder = PathRecorder()
    message = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            model.fit(source, callbacks=(recorder,))
        except DivergenceError as exc:
            # The loop raises before the callbacks see the diverging epoch: the recorded
            # states end with the parameters whose cost ``exc.cost`` gave it away.
            message = str(exc)
            costs = recorder.costs + [exc.cost]
            stop_reason = exc.stop_reason  # "diverged"
        else:
            costs = list(model.loss_curve_) + [model.final_cost_]
            stop_reason = model.stop_reason_
    states = [np.zeros(len(plane.origin))] + recorder.params  # a fit starts from zero
    frames = _frames(len(states))
    path, cost_texts, predictions = [], [], []
    with np.errstate(all="ignore"):  # a diverging run's numbers overflow: they are shown as inf
        for index in frames:
            params = states[index]
            path.append(_rounded(plane.coordinates(params)))
            cost_texts.append(format(costs[index], COST_FORMAT))
            coef, intercept = problem.scaling.to_raw(params[:, None], settings["fit_intercept"])
            predicted = predict(test_X, coef, intercept)  # the estimator's predict
            predictions.append([format(v, PREDICTION_FORMAT) for v in predicted[:, 0]])
    return {
        "epochs": frames,
        "n_epochs": len(states) - 1,
        "path": path,
        "cost": cost_texts,
        "pred": predictions,
        "stop_reason": stop_reason,
        "stopped": headline(stop_reason, tested=settings["tol"] is not None),
        "message": message,
    }


def lesson_data(source, settings, test_X, test_y, *, title, data_name, rates=(), test_label="test rows"):
    """Everything the lesson page shows, as a JSON-ready dict; every run through gradfit's loop.

    Parameters
    ----------
    source : gradfit data source
        One target; the estimator fits it as given (:class:`~gradfit.sources.ArraySource`,
        :class:`~gradfit.sources.FileSource`).
    settings : dict
        ``GDRegressor`` parameters; ``learning_rate``, ``optimizer`` and
        ``standardize`` say where the page starts, the others hold for every run.
    test_X : ndarray of shape (n_rows, n_features)
    test_y : ndarray of shape (n_rows,) or None
        The rows whose predictions are shown epoch by epoch, and their targets.
    rates : sequence of float
        Learning rates on the slider besides the multiples of ``1/L``.

    Returns
    -------
    dict
        ``variants[standardized|raw]``: ``L``, the eigenvalues, the plane and
        ``runs[optimizer][i]`` for ``rates[i]``: the frames' epochs, the path
        in the plane's coordinates, the cost and predictions as printed, and
        the stop reason (``"diverged"`` with the library's message) and ``stopped``, its words
        (:func:`gradfit.result.headline`).
    """
    settings = dict(settings, optimizer=lesson_optimizer(settings))
    problem_message = check_lesson_settings(settings, source.n_outputs)
    if problem_message:
        raise OptionError(problem_message)
    fit_intercept = settings["fit_intercept"]
    names = list(source.feature_names) + (["intercept"] if fit_intercept else [])
    test_X = np.asarray(test_X, dtype=float)
    variants = {}
    for standardize in (True, False):
        key = "standardized" if standardize else "raw"
        variant_settings = dict(settings, standardize=standardize)
        problem = prepare(source, variant_settings)  # the working units the runs record parameters in
        # The quadratic's Hessian and optimum from the statistics (the pass engine, chosen for
        # minibatches or by --engine, does not keep them); the same cost, so the same numbers.
        quadratic = problem if registry.ENGINES[problem.engine].knows_optimum else prepare(
            source, dict(variant_settings, engine="statistics", batch_size=None))
        objective = quadratic.objective
        p = len(names)
        if p < 2:
            raise OptionError("--lesson draws the cost over two parameters; this model has one "
                              "(one feature and no intercept)")
        hessian = objective.hvp(np.eye(p))
        optimum, optimal_cost = _quadratic_optimum(objective)
        plane = _Plane(hessian, optimum[:, 0], [f"{n} ({'standardized' if standardize else 'raw'})" for n in names])
        curvature = objective.curvature()  # the L of DivergenceError's 2/L
        extra = {float(r) for r in rates}
        if settings["learning_rate"] == "auto":
            # where the page opens: what "auto" means for the chosen optimizer (Adam's is not 1/L)
            extra.add(base_learning_rate(problem, variant_settings, restart=settings["batch_size"] is None))
        grid = sorted({m / curvature for m in MULTIPLES} | extra)
        runs = {
            optimizer: [
                _run(source, dict(settings, learning_rate=rate, optimizer=optimizer, standardize=standardize),
                     problem, plane, test_X)
                for rate in grid
            ]
            for optimizer in OPTIMIZERS
        }
        eigenvalues = plane.eigenvalues
        variants[key] = {
            "L": curvature,
            "L_text": f"{curvature:.4g}",
            "mu_text": f"{plane.smallest:.4g}",
            "condition_text": f"{curvature / plane.smallest:.4g}" if plane.smallest > 0 else "infinite",
            "eigenvalues_text": ", ".join(f"{v:.4g}" if v > plane.zero_below else "0"
                                          for v in eigenvalues),
            "n_zero": plane.n_zero,
            "n_params": p,
            "optimal_cost_text": format(optimal_cost, COST_FORMAT),
            "rates": grid,
            "rate_texts": [f"{r:.4g}" for r in grid],
            "multiple_texts": [f"{r * curvature:.3g}" for r in grid],
            "growth_texts": [f"{1 - r * curvature:.4g}" for r in grid],
            "slow_texts": [f"{1 - r * plane.smallest:.4g}" for r in grid],
            "limit_texts": [f"{1 / curvature:.4g}", f"{2 / curvature:.4g}"],
            "plane": dict(plane.describe(), box=plane.box(plane.coordinates(np.zeros(p)))),
            "runs": runs,
        }
    chosen = variants["standardized" if settings["standardize"] else "raw"]
    rate = settings["learning_rate"]
    if rate == "auto":
        rate = base_learning_rate(prepare(source, settings), settings, restart=settings["batch_size"] is None)
    return {
        "title": title,
        "data_name": data_name,
        "feature_names": list(source.feature_names),
        "target_name": source.target_names[0],
        "cost_formula": "J(θ) = mean((x·w " + ("+ b " if fit_intercept else "") + "− y)²)"
                        + (f" + the L2 penalty (alpha {settings['alpha']:g})" if settings["penalty"] is not None
                           else ""),
        "test_label": test_label,
        "test_rows": [[f"{v:g}" for v in row] for row in test_X],
        "test_targets": None if test_y is None else [f"{v:g}" for v in np.ravel(test_y)],
        "epochs": settings["epochs"],
        "tol": settings["tol"],
        "start": {"optimizer": settings["optimizer"], "standardize": bool(settings["standardize"]),
                  "rate_index": int(np.argmin(np.abs(np.log(np.array(chosen["rates"]) / rate))))},
        "variants": variants,
    }


def first_rows(source, n_rows=4):
    """The first ``n_rows`` rows of ``source`` (fewer if it has fewer): ``(X, y)``, for the predictions shown."""
    X, y = [], []
    for chunk in source.chunks():
        X.append(chunk.X[: n_rows - sum(len(part) for part in X)])
        y.append(chunk.y[: len(X[-1]), 0])
        if sum(len(part) for part in X) >= n_rows:
            break
    return np.concatenate(X).astype(float), np.concatenate(y).astype(float)


def write_lesson_page(path, source, settings, *, data_name, test_X=None, test_y=None, rates=(),
                      test_label=None):
    """Build the lesson for ``source`` and write it to ``path`` (the command line's ``--lesson``).

    Without ``test_X`` the page predicts the data's first four rows.
    """
    if test_X is None:
        test_X, test_y = first_rows(source)
        test_label = test_label or f"first {len(test_X)} rows"
    rates = list(rates)
    if settings["learning_rate"] != "auto":
        rates.append(float(settings["learning_rate"]))
    title = f"Gradient descent, step by step: {data_name}"
    data = lesson_data(source, settings, test_X, test_y, title=title, data_name=data_name, rates=rates,
                       test_label=test_label or "test rows")
    return write_lesson(path, data)


def _template(name):
    return (Path(__file__).parent / name).read_text(encoding="utf-8")  # shipped beside this module


def render_lesson(data):
    """The lesson page as HTML text: the template with its script and the data inline."""
    # Inside a <script> element "</script" or "<!--" would end or change it: "<" occurs in JSON
    # only inside strings, where "\\u003c" is the same character.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    values = {"TITLE": html.escape(data["title"]), "DATA": payload, "SCRIPT": _template("lesson.js")}
    # One pass, so that text from the data can never be taken for a marker.
    return re.sub(r"\{\{(TITLE|DATA|SCRIPT)\}\}", lambda match: values[match.group(1)], _template("lesson.html"))


def write_lesson(path, data):
    """Write the lesson page to ``path`` atomically (readers never see half a page); returns ``path``."""
    text = render_lesson(data)
    with atomic_writer(path) as handle:
        handle.write(text)
    return path
