"""Plots and the HTML report of a finished fit.

They read a fit result — the fitted estimator, its ``loss_curve_``,
``fit_report_`` and ``summary_`` — and, for the predicted-against-actual and
residual plots, one pass over the data to predict (never to train)
(``../shared/DESIGN.md``: report/ sits beside the model, below nothing).
matplotlib is imported only when a plot is drawn, and always with the Agg
canvas: no display is needed.
"""

from .data import sample_predictions
from .page import render_report, write_report
from .plots import (
    cost_figure,
    figure_bytes,
    fit_figures,
    learning_rates_figure,
    predicted_figure,
    residuals_figure,
    save_figure,
    write_plots,
)

__all__ = [
    "cost_figure",
    "figure_bytes",
    "fit_figures",
    "learning_rates_figure",
    "predicted_figure",
    "render_report",
    "residuals_figure",
    "sample_predictions",
    "save_figure",
    "write_plots",
    "write_report",
]
