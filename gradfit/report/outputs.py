"""What the command line prints and writes about a finished fit: diagnostics, statistics, plots, report.

Kept out of :mod:`gradfit.cli` so that the command stays argument parsing;
everything here reads a fitted estimator (and, for the plots, the data once
more to predict) and never trains.
"""

from __future__ import annotations

import os

from ..diagnostics import describe
from ..summary import format_table


def diagnostics_lines(report, indent="  "):
    """``fit_report_`` as ``label: text`` lines (``[]`` for a model file without one)."""
    if not report:
        return []
    pairs = describe(report)
    width = max(len(label) for label, _ in pairs) + 1
    return [f"{indent}{label + ':':<{width}} {text}" for label, text in pairs]


def statistics_lines(statistics, target_names):
    """``summary_`` as text tables (``[]`` when the fit has none)."""
    return format_table(statistics, target_names) if statistics else []


def write_fit_outputs(model, source, *, plot_dir=None, plot_format="png", report_path=None,
                      data_name=None, defaults=None, extra_figures=None):
    """Draw the fit's plots into ``plot_dir`` and/or write the HTML report; returns the paths written.

    ``source`` is read once to predict a sample of rows (for the predicted and
    residual plots); ``extra_figures`` (name → Figure) are added to both.
    """
    from . import fit_figures, sample_predictions, write_plots, write_report

    if plot_dir is None and report_path is None:
        return []
    sample = sample_predictions(model, source)
    figures = fit_figures(model, sample)
    figures.update(extra_figures or {})
    written = []
    if plot_dir is not None:
        written += write_plots(plot_dir, figures, plot_format)
    if report_path is not None:
        title = f"gradfit report: {', '.join(model.target_names_)}"
        written.append(write_report(report_path, model, figures, title=title, data=data_name, defaults=defaults))
    return written


def check_plot_dir(path):
    """A one-line reason ``path`` cannot hold plots, or ``None`` (checked before training)."""
    if path is None:
        return None
    if os.path.exists(path) and not os.path.isdir(path):
        return f"--plot {path!r}: not a folder"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"--plot {path!r}: folder {parent!r} does not exist"
    return None


#: the plots ``--plot`` draws for every fit (:func:`gradfit.report.plots.fit_figures`)
FIT_PLOTS = ("cost", "predicted", "residuals")


def plot_paths(folder, plot_format="png", extra=()):
    """The files ``--plot folder`` will write (checked against inputs and other outputs before training)."""
    return [os.path.join(folder, f"{name}.{plot_format}") for name in FIT_PLOTS + tuple(extra)]


class CostRecorder:
    """A training callback that keeps every epoch's cost: the curve of a run that then diverges."""

    def __init__(self):
        self.costs = []

    def on_epoch_end(self, epoch, cost, params):
        self.costs.append(float(cost))


def finished_run(rate, model):
    """One curve of the learning-rate picture, from a fitted estimator."""
    label = f"auto = 1/L = {model.learning_rate_:.3g}" if rate == "auto" else f"{rate:g}"
    return {"label": label, "curve": list(model.loss_curve_) + [model.final_cost_], "diverged_at": None,
            "max_stable": (model.fit_report_ or {}).get("max_stable_learning_rate")}


def diverged_run(rate, recorder, error):
    """One curve of the learning-rate picture, from a :class:`~gradfit.errors.DivergenceError`.

    The loop raises before the callbacks see the diverging epoch, so the
    recorded costs end just before it and ``error.cost`` is the cost that gave it away.
    """
    return {"label": f"{rate:g}", "curve": recorder.costs + [error.cost], "diverged_at": error.epoch,
            "max_stable": error.max_stable_learning_rate}
