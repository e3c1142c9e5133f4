"""The HTML report: one self-contained file with the settings, diagnostics, statistics and plots.

Everything is inline (CSS in a ``<style>`` element, plots as base64 PNG
``data:`` URIs), so the page opens anywhere, offline, and can be mailed as
one file. Every piece of text from the data (file, column names) is escaped.
"""

from __future__ import annotations

import base64
import datetime
import html

import numpy as np

from ..diagnostics import describe
from ..files_io import atomic_write_text
from ..result import verdict
from ..summary import PER_COEFFICIENT, p_text, per_output, shown_rows
from .plots import figure_bytes

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 2rem auto; max-width: 1150px; padding: 0 1.2rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1rem; margin-bottom: 0.3rem; }
.subtitle { color: #555; margin-top: 0; }
.status { display: inline-block; padding: 0.15rem 0.6rem; border-radius: 0.8rem; font-weight: 600; }
.status.converged { background: #e3f4e8; color: #17612d; }
.status.other { background: #fdf1dc; color: #8a5300; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
th { background: #f5f5f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, Menlo, monospace; }
tr.significant td.p { font-weight: 600; }
.settings td.changed { font-weight: 600; }
.diagnostics td:first-child { font-weight: 600; white-space: nowrap; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
.note { color: #555; font-size: 0.9rem; }
"""


def _e(value):
    return html.escape(str(value), quote=True)


def _num(value, digits=6):
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return "n/a" if value is None else str(value)


def _table(header, rows, classes=None, numeric=()):
    """An HTML table; ``numeric`` are the column indexes to right-align; ``header=None``: no header row."""
    header = header or []
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = []
    for row in rows:
        row_class = ""
        if isinstance(row, tuple) and len(row) == 2 and isinstance(row[1], dict):
            row, attributes = row
            row_class = f' class="{_e(attributes.get("class", ""))}"'
        cells = []
        for i, cell in enumerate(row):
            css = []
            if i in numeric:
                css.append("num")
            if isinstance(cell, tuple):  # (text, extra class)
                cell, extra = cell
                css.append(extra)
            attribute = f' class="{" ".join(css)}"' if css else ""
            cells.append(f"<td{attribute}>{_e(cell)}</td>")
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    css = f' class="{classes}"' if classes else ""
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table{css}>{thead}<tbody>{''.join(body)}</tbody></table>"


def _settings_table(model, defaults):
    rows = []
    for name, value in model.get_params(deep=False).items():
        changed = name in defaults and defaults[name] != value
        rows.append([name, (repr(value), "changed" if changed else "")])
    return _table(["setting", "value"], rows, classes="settings")


def _statistics_tables(statistics, target_names):
    multi = isinstance(statistics["r_squared"], list)
    n_outputs = len(statistics["r_squared"]) if multi else 1
    parts = []
    if statistics.get("note"):
        parts.append(f'<p class="note"><strong>{_e(statistics["note"])}</strong></p>')
    percent = f"{statistics.get('confidence', 0.95):.0%}"
    for j in range(n_outputs):
        row = per_output(statistics, j)
        name = target_names[j] if j < len(target_names) else f"y{j}"
        parts.append(f"<h3>{_e(name)}</h3>")
        parts.append(
            f'<p>R² {_num(row["r_squared"])} · adjusted R² {_num(row["adj_r_squared"])} · '
            f'F {_num(row["f_statistic"])} (p = {_e(p_text(row["f_p_value"]))}) · '
            f'residual std {_num(row["residual_std"])} · {statistics["n_observations"]} rows, '
            f'{statistics["df_resid"]} residual degrees of freedom</p>'
        )
        rows = []
        for i in shown_rows(statistics["names"]):
            if isinstance(i, str):  # a long run of one column's levels, folded
                rows.append(([i, "", "", "", "", "", ""], {"class": ""}))
                continue
            coefficient = statistics["names"][i]
            values = [row[key][i] for key in PER_COEFFICIENT]
            p_value = values[3]
            significant = isinstance(p_value, float) and p_value < 0.05
            cells = [coefficient] + [_num(v) for v in values[:3]] + [(p_text(p_value), "p")] + [_num(v) for v in values[4:]]
            rows.append((cells, {"class": "significant" if significant else ""}))
        header = ["", "coef", "std err", "t", "P>|t|", f"{percent} low", f"{percent} high"]
        parts.append(_table(header, rows, classes="statistics", numeric=range(1, 7)))
    return "".join(parts)


def _coefficients_table(model):
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_)
    shown = shown_rows(list(model.feature_names_))
    header = ["target", "(intercept)"] + [model.feature_names_[i] if isinstance(i, int) else "..." for i in shown]
    rows = [[name, _num(intercept[j], 10)] + [_num(coef[j][i], 10) if isinstance(i, int) else "" for i in shown]
            for j, name in enumerate(model.target_names_)]
    return _table(header, rows, classes="coefficients", numeric=range(1, len(header)))


CAPTIONS = {
    "cost": "The cost before each epoch's update (log scale) and, where the optimum is known, "
            "its distance to the optimal cost: plain gradient descent's linear convergence is a straight line there.",
    "predicted": "Predicted against actual values; points on the dashed line are predicted exactly.",
    "residuals": "Residuals against predicted values, and their distribution: look for curvature, funnels and outliers.",
    "learning_rates": "The tutorial's cost curves for several learning rates.",
    "cv_curve": "Cross-validation: the mean validation error over folds against alpha, with bars of one "
                "standard error; the dashed line marks the chosen alpha.",
    "coef_path": "The coefficients fitted on all the rows along the alpha grid; the dashed line marks the chosen alpha.",
}


def render_report(model, figures, *, title="gradfit report", data=None, defaults=None):
    """The report page of a fitted estimator, as HTML text.

    Parameters
    ----------
    model : fitted GDRegressor
    figures : dict
        Name → matplotlib Figure (see :func:`~gradfit.report.fit_figures`),
        inlined as PNG.
    title : str
    data : str, optional
        What the model was trained on (a file name), for the subtitle.
    defaults : dict, optional
        The estimator's default parameters: settings that differ are shown bold.
    """
    report = getattr(model, "fit_report_", None) or {}
    statistics = getattr(model, "summary_", None)
    converged = report.get("converged")
    # The badge reads the certificate's verdict, in the record's words (gradfit.result).
    status = verdict(report.get("stop_reason"), converged)
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    subtitle = (
        f"{_e(data) + ' · ' if data else ''}{model.n_samples_:,} rows · {len(model.feature_names_)} features · "
        f"target {_e(', '.join(model.target_names_))} · gradfit {_e(_version())} · {_e(now)}"
    )
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="subtitle">{subtitle}</p>',
        f'<p><span class="status {"converged" if converged else "other"}">{_e(status)}</span> '
        f"{_e(report.get('message', ''))}</p>",
        "<h2>Coefficients</h2>",
        _coefficients_table(model),
        "<h2>Diagnostics</h2>",
        _table(None, [[label, text] for label, text in describe(report)], classes="diagnostics") if report
        else '<p class="note">No diagnostics recorded.</p>',
        "<h2>Statistics</h2>",
        _statistics_tables(statistics, model.target_names_) if statistics
        else f'<p class="note">{_e(report.get("statistics", "No statistics for this fit."))}</p>',
        "<h2>Plots</h2>",
    ]
    for name, figure in figures.items():
        encoded = base64.b64encode(figure_bytes(figure, "png")).decode("ascii")
        caption = CAPTIONS.get(name, name)
        sections.append(
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{_e(name)} plot">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    sections.append("<h2>Settings</h2>")
    sections.append(_settings_table(model, defaults or {}))
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _version():
    from .. import __version__

    return __version__


def write_report(path, model, figures, **options):
    """Write :func:`render_report` to ``path`` atomically (readers never see half a page)."""
    atomic_write_text(path, render_report(model, figures, **options))
    return path
