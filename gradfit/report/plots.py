"""The pictures of a fit: cost curve, predicted against actual, residuals, learning rates.

Every function returns a matplotlib ``Figure`` drawn on the Agg canvas (no
pyplot, so no global state and no display); :func:`save_figure` writes one as
PNG or SVG, chosen by the file's extension, atomically.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .. import registry
from ..files_io import atomic_write_bytes
from ..result import headline
from .canvas import _figure, _style
from .cv_plots import cv_figures

FORMATS = ("png", "svg")
#: colours that stay apart for colour-blind readers (Okabe & Ito)
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: pixels per inch of PNG output
DPI = 110
#: the most outputs drawn side by side in one picture
MAX_PANELS = 4


# -- the cost curve -------------------------------------------------------------


def _positive(values):
    """``values`` with non-positive entries masked: a log axis cannot show them."""
    values = np.asarray(values, dtype=float)
    return np.where(values > 0, values, np.nan)


def cost_figure(loss_curve, final_cost, report=None):
    """The cost per epoch on a log scale, with the optimal cost drawn in.

    Parameters
    ----------
    loss_curve : list of float
        ``loss_curve_``: the cost before each epoch's update.
    final_cost : float
        The cost at the returned parameters (drawn after the last epoch).
    report : dict, optional
        ``fit_report_``. With an ``optimal_cost`` a second panel shows the gap
        ``F − F*`` on a log scale, where gradient descent's linear convergence
        is a straight line, beside the bound ``gap₀ · ρ²ᵗ`` for the step it used.
    """
    report = report or {}
    curve = np.append(np.asarray(loss_curve, dtype=float), final_cost)
    epochs = np.arange(len(curve))
    optimal = report.get("optimal_cost")
    with_gap = optimal is not None and np.isfinite(optimal)
    figure = _figure(11 if with_gap else 6.5, 4.2)
    axes = figure.subplots(1, 2 if with_gap else 1, squeeze=False)[0]

    left = axes[0]
    left.plot(epochs, _positive(curve), color=COLOURS[0], linewidth=2, label="cost F(θ)")
    if with_gap and optimal > 0 and not report.get("exact_fit"):
        left.axhline(optimal, color=COLOURS[3], linestyle="--", linewidth=1.5, label=f"optimal cost F* = {optimal:.6g}")
    elif with_gap:
        # F* is zero up to rounding: a line there would stretch the log axis to 1e-30.
        left.plot([], [], " ", label="optimal cost F* = 0 (the data fit exactly)")
    left.set_yscale("log")
    left.set_xlabel("epoch")
    loss = report.get("loss", "squared_error")
    part = registry.LOSSES.get(loss)
    left.set_ylabel(f"cost ({(part and part.loss_class.cost_label) or f'{loss} loss'})")
    left.set_title("Cost per epoch")
    _mark_stop(left, epochs[-1], curve[-1], report)
    left.legend(loc="upper right", fontsize=9, frameon=False)
    _style(left)

    if with_gap:
        _gap_panel(axes[1], curve, optimal, report)
    figure.suptitle(_headline(report), fontsize=11)
    return figure


def _headline(report):
    if not report:
        return "Training"
    stopped = headline(report.get("stop_reason"), tested=report.get("tol", 1) is not None)  # the record's words
    text = f"{report.get('n_iter', '?')} epochs, {stopped}"
    if report.get("learning_rate") is not None:
        text += f", learning rate {report['learning_rate']:.4g}"
    return text


def _mark_stop(axes, epoch, cost, report):
    if cost > 0 and np.isfinite(cost):
        axes.plot([epoch], [cost], "o", color=COLOURS[0], markersize=5)


def _gap_panel(axes, curve, optimal, report):
    gap = curve - optimal
    # Below this the gap is rounding in the cost, not distance to the optimum.
    floor = 0.0 if report.get("exact_fit") else abs(optimal) * 1e-13
    shown = np.where(gap > floor, gap, np.nan)
    epochs = np.arange(len(curve))
    axes.plot(epochs, shown, color=COLOURS[0], linewidth=2, label="gap F(θ) − F*")
    rate = report.get("contraction_per_epoch")
    if rate is not None and 0 < rate < 1 and np.isfinite(shown[0]):
        bound = shown[0] * rate ** epochs.astype(float)
        bound = np.where(bound > floor, bound, np.nan)
        axes.plot(epochs, bound, color=COLOURS[1], linestyle="--", linewidth=1.5,
                  label=f"plain GD bound: gap × {rate:.4g} per epoch")
    target = report.get("estimate_target_gap")
    if target:
        axes.axhline(target, color=COLOURS[2], linestyle=":", linewidth=1.5,
                     label=f"tol target (gap {target:.2g})")
    if np.isnan(shown[-1]) and np.any(np.isfinite(shown)):
        last = int(np.max(np.nonzero(np.isfinite(shown))[0]))
        axes.annotate("below rounding level from here", (last, shown[last]), xytext=(-12, 22),
                      textcoords="offset points", ha="right", va="bottom", fontsize=8, color="#555555",
                      arrowprops=dict(arrowstyle="->", color="#888888"))
    if np.any(np.isfinite(shown)):
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("cost − optimal cost")
    axes.set_title("Distance to the optimum")
    axes.legend(loc="best", fontsize=9, frameon=True, framealpha=0.9, edgecolor="none")
    _style(axes)


# -- predicted against actual, residuals ---------------------------------------------


def _panels(sample, height):
    k = min(sample.actual.shape[1], MAX_PANELS)
    figure = _figure(max(5.0, 4.6 * k), height)
    return figure, k


def _few_ticks(axes):
    """At most five ticks per axis: values like 350000 must not run into each other."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
    axes.yaxis.set_major_locator(MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]))


def _scatter_style(n):
    # Many points: smaller and lighter, so that density still shows.
    return dict(s=30 if n < 50 else 14 if n < 2000 else 6, alpha=0.7 if n < 2000 else 0.35, linewidths=0, zorder=3)


def predicted_figure(sample, statistics=None):
    """Predicted against actual values, one panel per output, with the line y = x.

    ``sample`` is a :class:`~gradfit.report.data.PredictionSample`;
    ``statistics`` (``summary_``) adds R² to the titles.
    """
    figure, k = _panels(sample, 4.6)
    axes_row = figure.subplots(1, k, squeeze=False)[0]
    for j, axes in enumerate(axes_row):
        actual, predicted = sample.actual[:, j], sample.predicted[:, j]
        axes.scatter(actual, predicted, color=COLOURS[0], **_scatter_style(len(actual)))
        if len(actual):
            low = float(min(actual.min(), predicted.min()))
            high = float(max(actual.max(), predicted.max()))
            pad = 0.03 * (high - low or 1.0)
            axes.plot([low - pad, high + pad], [low - pad, high + pad], color=COLOURS[3],
                      linestyle="--", linewidth=1.2, label="predicted = actual")
            axes.set_xlim(low - pad, high + pad)
            axes.set_ylim(low - pad, high + pad)
            axes.set_aspect("equal", adjustable="box")
            axes.legend(loc="upper left", fontsize=9, frameon=False)
        name = sample.target_names[j]
        axes.set_xlabel(f"actual {name}")
        axes.set_ylabel(f"predicted {name}")
        axes.set_title(f"{name}{_r_squared(statistics, j, k)}")
        _few_ticks(axes)
        _style(axes)
    figure.suptitle(_sample_caption(sample, "Predicted against actual"), fontsize=11)
    return figure


def _r_squared(statistics, j, k):
    if not statistics:
        return ""
    value = statistics.get("r_squared")
    value = value[j] if isinstance(value, list) else value
    try:
        return f"  (R² = {float(value):.6g})"
    except (TypeError, ValueError):
        return ""


def _sample_caption(sample, title):
    shown = len(sample.actual)
    if shown < sample.n_rows:
        return f"{title} ({shown:,} of {sample.n_rows:,} rows, drawn at random)"
    return f"{title} ({sample.n_rows:,} rows)"


def residuals_figure(sample):
    """Residuals (actual − predicted) against predicted values, with their histogram beside."""
    k = min(sample.actual.shape[1], MAX_PANELS)
    figure = _figure(max(6.5, 6.0 * k), 4.4)
    grid = figure.add_gridspec(1, 2 * k, width_ratios=[3, 1] * k)
    for j in range(k):
        scatter = figure.add_subplot(grid[0, 2 * j])
        histogram = figure.add_subplot(grid[0, 2 * j + 1], sharey=scatter)
        residual, predicted = sample.residuals[:, j], sample.predicted[:, j]
        scatter.scatter(predicted, residual, color=COLOURS[0], **_scatter_style(len(residual)))
        scatter.axhline(0.0, color=COLOURS[3], linestyle="--", linewidth=1.2)
        name = sample.target_names[j]
        scatter.set_xlabel(f"predicted {name}")
        scatter.set_ylabel("residual (actual − predicted)")
        scatter.set_title(name)
        if len(residual):
            largest = float(np.max(np.abs(residual)))
            span = (-1.1 * largest, 1.1 * largest) if largest > 0 else None
            histogram.hist(residual, bins=min(40, max(5, len(residual) // 10)), range=span,
                           orientation="horizontal", color=COLOURS[0], alpha=0.8)
            if span:
                scatter.set_ylim(*span)  # zero in the middle: lopsidedness shows
            size = float(np.max(np.abs(sample.actual[:, j]))) or 1.0
            if largest <= 1e-9 * size:
                scatter.text(0.5, 0.12, f"every residual is at rounding level (|r| ≤ {largest:.2g}): an exact fit",
                             transform=scatter.transAxes, ha="center", va="center", fontsize=9,
                             color="#444444", bbox=dict(facecolor="white", edgecolor="#cccccc"))
        histogram.axhline(0.0, color=COLOURS[3], linestyle="--", linewidth=1.2)
        histogram.set_xlabel("rows")
        histogram.tick_params(labelleft=False)
        _few_ticks(scatter)
        _style(scatter)
        _style(histogram)
    figure.suptitle(_sample_caption(sample, "Residuals"), fontsize=11)
    return figure


# -- the learning-rate picture of the demo ----------------------------------------------


def learning_rates_figure(runs, title=None, max_stable=None, note=None):
    """Cost curves of several learning rates on one log-scale picture.

    Parameters
    ----------
    runs : list of dict
        Each with ``label`` (e.g. ``"0.01"``), ``curve`` (the costs per epoch)
        and, for a run that diverged, ``diverged_at`` (its epoch) — its curve
        then ends with the cost that gave it away, marked with a cross.
    title : str, optional
    max_stable : float, optional
        ``2/L``, quoted in the legend of diverging runs.
    note : str, optional
        A line under the picture.
    """
    figure = _figure(9, 5.2)
    axes = figure.subplots()
    for index, run in enumerate(runs):
        colour = COLOURS[index % len(COLOURS)]
        curve = np.asarray(run["curve"], dtype=float)
        epochs = np.arange(len(curve))
        finite = np.where(np.isfinite(curve), curve, np.nan)
        label = f"learning rate {run['label']}"
        diverged = run.get("diverged_at") is not None
        if diverged:
            label += " — diverged" + (f" (above 2/L = {max_stable:.3g})" if max_stable else "")
        else:
            label += f": cost {curve[-1]:.3g} after {len(curve) - 1} epochs"
        axes.plot(epochs, _positive(finite), color=colour, linewidth=2.2, label=label,
                  marker="o" if len(curve) <= 12 else None, markersize=4)
        if diverged:
            last = int(np.max(np.nonzero(np.isfinite(finite))[0]))
            axes.plot([last], [finite[last]], "X", color=colour, markersize=11, markeredgecolor="black")
            axes.annotate(
                f"diverged at epoch {run['diverged_at']}\ncost {finite[last]:.3g}",
                (last, finite[last]), xytext=(18, -4), textcoords="offset points",
                fontsize=9, color=colour, va="top", fontweight="bold",
            )
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("cost (mean squared error), log scale")
    axes.set_title(title or "Cost per epoch for several learning rates")
    axes.legend(loc="center right", fontsize=9, frameon=True, framealpha=0.9)
    axes.margins(x=0.04)
    if note:
        figure.text(0.01, 0.005, note, fontsize=9, color="#444444", ha="left", va="bottom")
        figure.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    _style(axes)
    return figure


# -- writing ----------------------------------------------------------------------


def figure_bytes(figure, fmt="png"):
    """The figure as PNG or SVG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt!r}; valid: {', '.join(FORMATS)}")
    import matplotlib
    from matplotlib.text import Text

    # Column names are drawn as they are: "$x$" or "a_b" is a name, not TeX (mathtext would
    # fail on "$" alone, or draw another name).
    for text in figure.findobj(Text):
        text.set_parse_math(False)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=_metadata(fmt))
    return buffer.getvalue()


def _metadata(fmt):
    # No creation date: the same fit draws the same bytes.
    return {"Software": "gradfit"} if fmt == "png" else {"Date": None, "Creator": "gradfit"}


def save_figure(figure, path):
    """Write ``figure`` to ``path``: PNG or SVG by its extension."""
    fmt = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"plot file {os.fspath(path)!r}: the name must end in .png or .svg")
    atomic_write_bytes(path, figure_bytes(figure, fmt))
    return path


def fit_figures(model, sample=None):
    """The figures of a fitted estimator: ``{"cost": …, "predicted": …, "residuals": …}``.

    The last two need ``sample`` (:func:`~gradfit.report.sample_predictions`).
    """
    report = getattr(model, "fit_report_", None) or {}
    figures = {"cost": cost_figure(model.loss_curve_, model.final_cost_, report)}
    figures.update(cv_figures(model))  # a cross-validated model adds its CV curve and coefficient path
    if sample is not None:
        figures["predicted"] = predicted_figure(sample, getattr(model, "summary_", None))
        figures["residuals"] = residuals_figure(sample)
    return figures


def write_plots(folder, figures, fmt="png"):
    """Write ``figures`` (name → Figure) as ``folder/name.fmt``; returns the paths written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt!r}; valid: {', '.join(FORMATS)}")
    # Every picture is drawn before the first is written: one that cannot be drawn leaves no
    # half-written set of plots behind.
    drawn = {name: figure_bytes(figure, fmt) for name, figure in figures.items()}
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, data in drawn.items():
        path = os.path.join(folder, f"{name}.{fmt}")
        atomic_write_bytes(path, data)
        written.append(path)
    return written
