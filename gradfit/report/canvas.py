"""The canvas every picture is drawn on and the house style of its axes.

A matplotlib ``Figure`` on the Agg canvas (no pyplot: no global state, no
display); matplotlib is imported when the first picture is drawn.
"""

from __future__ import annotations


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plain_log_labels(axes):
    """Label a log axis ``0.4``, ``2``, ``3000`` rather than ``4×10⁻¹`` when it spans few decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    low, high = axes.get_ylim()
    if low > 0 and high / low < 1e3:
        plain = FuncFormatter(lambda value, position: f"{value:g}")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_locator(LogLocator(subs=(2, 3, 4, 5, 6, 8) if high / low < 30 else (2, 5)))
        axes.yaxis.set_minor_formatter(plain)
        # Few decades: minor lines help reading values; over many they are only clutter.
        axes.grid(True, which="minor", axis="y", color="#f0f0f0", linewidth=0.5)


def _style(axes):
    if axes.get_yscale() == "log":
        _plain_log_labels(axes)
    axes.grid(True, which="major", color="#dddddd", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
