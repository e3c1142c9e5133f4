"""The pictures of a cross-validated fit: the CV curve and the coefficient path.

They read ``GDRegressorCV.cv_report_`` (or the ``cross_validation`` record of
a model file): nothing is fitted or read again.
"""

from __future__ import annotations

import numpy as np

from .. import registry
from ..cv_cli import error_label
from .canvas import _figure, _style



def _mean(label):
    """``"mean …"`` of a loss's label, once."""
    return label if label.startswith("mean") else f"mean {label}"


def _owns_ratio(penalty):
    """Whether ``penalty`` (a name) takes ``l1_ratio`` (elastic net), rather than fixing its own mix."""
    return penalty in registry.PENALTIES and "l1_ratio" in registry.PENALTIES[penalty].param_names

def cv_curve_figure(record):
    """Mean validation error against alpha (log), ± one standard error, the chosen alpha marked.

    One curve per l1 ratio. ``record``: ``alphas`` and ``mean_mse``,
    ``std_error`` (n_l1_ratio, n_alphas), ``l1_ratios``, ``alpha``,
    ``l1_ratio``, ``cv_error``, ``cv_std_error``, ``selection``, ``n_folds``.
    """
    figure = _figure(7.5, 4.6)
    axes = figure.subplots()
    alphas = np.asarray(record["alphas"], dtype=float)
    mean = np.asarray(record["mean_mse"], dtype=float)
    error = np.asarray(record["std_error"], dtype=float)
    ratios = record["l1_ratios"]
    for i, ratio in enumerate(ratios):
        label = f"l1_ratio {ratio:g}" if len(ratios) > 1 else None
        axes.errorbar(alphas[i], mean[i], yerr=error[i], marker="o", markersize=3, linewidth=1.2,
                      elinewidth=0.7, capsize=2, label=label)
    axes.axvline(record["alpha"], color="#b22222", linestyle="--", linewidth=1.2,
                 label=f"chosen alpha {record['alpha']:.4g} ({record['selection']})")
    axes.set_xscale("log")
    axes.set_xlabel("alpha (gradfit's units)")
    axes.set_ylabel(f"validation {_mean(error_label(record))}")
    axes.legend(fontsize=8, frameon=False)
    _style(axes)
    figure.suptitle(
        f"{record['n_folds']}-fold cross-validation: error {record['cv_error']:.4g} ± {record['cv_std_error']:.2g} "
        f"at alpha {record['alpha']:.4g}" + (f", l1_ratio {record['l1_ratio']:g}" if len(ratios) > 1 else ""),
        fontsize=11,
    )
    return figure


def coef_path_figure(record, feature_names, target_names):
    """Every coefficient on all the rows against alpha (log), for the chosen l1 ratio; the chosen alpha marked."""
    coefs = np.asarray(record["coef_path"], dtype=float)  # (n_alphas, k, d)
    index = record["l1_ratios"].index(record["l1_ratio"])
    alphas = np.asarray(record["alphas"], dtype=float)[index]
    k = coefs.shape[1]
    figure = _figure(max(6.5, 5.5 * min(k, 4)), 4.6)
    panels = figure.subplots(1, min(k, 4), squeeze=False)[0]
    for j, axes in enumerate(panels):
        for feature, name in enumerate(feature_names):
            axes.plot(alphas, coefs[:, j, feature], linewidth=1.1, label=name)
        axes.axvline(record["alpha"], color="#b22222", linestyle="--", linewidth=1.2)
        axes.set_xscale("log")
        axes.set_xlabel("alpha (gradfit's units)")
        axes.set_ylabel(f"coefficient ({target_names[j]})")
        if len(feature_names) <= 12:
            axes.legend(fontsize=7, frameon=False)
        _style(axes)
    figure.suptitle(f"Coefficient path on all the rows ({record['penalty']}"
                    f"{', l1_ratio %g' % record['l1_ratio'] if _owns_ratio(record['penalty']) else ''})",
                    fontsize=11)
    return figure


def cv_figures(model):
    """``{"cv_curve": …, "coef_path": …}`` for a cross-validated model, else ``{}``."""
    record = getattr(model, "cv_report_", None)
    if not record:
        return {}
    return {
        "cv_curve": cv_curve_figure(record),
        "coef_path": coef_path_figure(record, model.feature_names_, model.target_names_),
    }
