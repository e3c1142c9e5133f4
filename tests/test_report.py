"""Plots and the HTML report: files written, self-contained, and rendered by a real browser."""

import base64
import os
import re
import shutil
import subprocess
import tempfile

import matplotlib.image
import numpy as np
import pytest

from gradfit import DivergenceError, GDRegressor
from gradfit.cli import main
from gradfit.report import (
    cost_figure,
    fit_figures,
    learning_rates_figure,
    render_report,
    sample_predictions,
    save_figure,
)
from gradfit.report.outputs import CostRecorder, diverged_run, finished_run
from gradfit.sources import ArraySource

from .conftest import TUTORIAL_X, TUTORIAL_Y, make_regression

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's 'chromium' package (./scripts/test does it when run as root or with sudo)",
)


@pytest.fixture(scope="module")
def fitted():
    X, y = make_regression(n=300, d=3, seed=21, noise=0.4)
    model = GDRegressor(standardize=False, epochs=400, tol=1e-9).fit(X, y)
    return model, ArraySource(X, y[:, None])


def read_png(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    return image


# -- plots ---------------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["png", "svg"])
def test_plots_are_written_in_the_format_of_their_extension(tmp_path, fitted, extension):
    model, source = fitted
    figures = fit_figures(model, sample_predictions(model, source))
    assert set(figures) == {"cost", "predicted", "residuals"}
    for name, figure in figures.items():
        path = save_figure(figure, tmp_path / f"{name}.{extension}")
        if extension == "png":
            image = read_png(path)
            assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas
        else:
            text = open(path, encoding="utf-8").read()
            assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".gradfit-")]


def test_unknown_plot_extension_is_refused(tmp_path, fitted):
    model, _ = fitted
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        save_figure(cost_figure(model.loss_curve_, model.final_cost_), tmp_path / "cost.jpg")


def test_cost_figure_draws_the_optimal_cost_and_the_gap(fitted):
    model, _ = fitted
    figure = cost_figure(model.loss_curve_, model.final_cost_, model.fit_report_)
    cost_axes, gap_axes = figure.axes
    assert cost_axes.get_yscale() == "log" and gap_axes.get_yscale() == "log"
    optimal = model.fit_report_["optimal_cost"]
    horizontal = [line for line in cost_axes.get_lines() if np.allclose(line.get_ydata(), optimal)]
    assert horizontal, "the optimal cost is drawn as a horizontal line"
    gap = gap_axes.get_lines()[0].get_ydata()
    finite = gap[np.isfinite(gap)]
    assert np.all(np.diff(finite) <= 0) and finite[-1] < 1e-6 * finite[0]


def test_prediction_sample_is_bounded_and_reproducible():
    X, y = make_regression(n=30_000, d=2, seed=22)
    model = GDRegressor().fit(X, y)
    source = ArraySource(X, y[:, None])
    first = sample_predictions(model, source, limit=1000)
    again = sample_predictions(model, source, limit=1000)
    assert first.n_rows == 30_000 and 500 < len(first.actual) <= 1000
    np.testing.assert_array_equal(first.actual, again.actual)
    np.testing.assert_allclose(first.predicted[:, 0], first.actual[:, 0] - first.residuals[:, 0])


def test_learning_rate_runs_record_the_divergence(tmp_path):
    runs = []
    for rate in (0.001, 0.01, "auto", 0.1):
        model, recorder = GDRegressor(learning_rate=rate, standardize=False, epochs=100, tol=None), CostRecorder()
        try:
            runs.append(finished_run(rate, model.fit(TUTORIAL_X, TUTORIAL_Y, callbacks=[recorder])))
        except DivergenceError as exc:
            runs.append(diverged_run(rate, recorder, exc))
    assert [run["diverged_at"] for run in runs] == [None, None, None, 5]
    assert len(runs[3]["curve"]) == 6 and runs[3]["curve"][0] == pytest.approx(30.0)
    assert runs[3]["curve"][-1] > 1e12 and runs[3]["max_stable"] == pytest.approx(0.0134, abs=5e-5)
    assert len(runs[0]["curve"]) == 101 and runs[2]["label"].startswith("auto = 1/L")
    figure = learning_rates_figure(runs, max_stable=runs[3]["max_stable"])
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert any("diverged" in label and "2/L" in label for label in labels)
    read_png(save_figure(figure, tmp_path / "rates.png"))


# -- command line --------------------------------------------------------------------


@pytest.fixture
def data_csv(tmp_path):
    X, y = make_regression(n=400, d=3, seed=23, noise=0.5)
    path = tmp_path / "houses.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="area,rooms,age,price", comments="", fmt="%.17g")
    return path


def test_train_plot_writes_the_three_plots(tmp_path, data_csv, capsys):
    plots = tmp_path / "plots"
    assert main(["train", str(data_csv), "--target", "price", "-q", "--plot", str(plots), "--plot-format", "svg"]) == 0
    assert sorted(os.listdir(plots)) == ["cost.svg", "predicted.svg", "residuals.svg"]
    assert "written: " in capsys.readouterr().out


def test_train_plot_into_a_file_is_refused_before_training(tmp_path, data_csv, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["train", str(data_csv), "--target", "price", "--plot", str(tmp_path / "taken")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_demo_plot_draws_the_learning_rates(tmp_path, capsys):
    plots = tmp_path / "demo"
    assert main(["demo", "-q", "--plot", str(plots)]) == 0
    assert sorted(os.listdir(plots)) == ["cost.png", "learning_rates.png", "predicted.png", "residuals.png"]
    for name in os.listdir(plots):
        read_png(plots / name)


# -- the report page ------------------------------------------------------------------


@pytest.fixture
def report_html(tmp_path, data_csv):
    path = tmp_path / "report.html"
    assert main(["train", str(data_csv), "--target", "price", "-q", "--report", str(path), "-o",
                 str(tmp_path / "model.json")]) == 0
    return path


def test_report_is_one_self_contained_page(report_html):
    text = report_html.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # No external resources: no URLs, no linked files; the images are data URIs.
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?!data:)", text)
    assert "http://" not in text and "https://" not in text and "<link" not in text and "@import" not in text
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3 and all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    for part in ("Settings", "Diagnostics", "Statistics", "Plots", "std err", "area", "R²", "condition number"):
        assert part in text
    assert not [name for name in os.listdir(report_html.parent) if name.startswith(".gradfit-")]


def test_report_escapes_names_from_the_data(fitted):
    model, source = fitted
    model.feature_names_ = ["<script>alert(1)</script>", "b&c", "d"]
    try:
        text = render_report(model, {}, data="<evil>.csv")
    finally:
        model.feature_names_ = ["x0", "x1", "x2"]
    assert "<script>alert" not in text and "&lt;script&gt;" in text and "&lt;evil&gt;.csv" in text


def chromium(*arguments):
    """Run headless Chromium with the network and background services off; returns stdout."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", *arguments,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var marker = document.createElement("pre");
  marker.id = "gradfit-probe";
  marker.textContent = "images=" + images.length +
    " drawn=" + images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length +
    " statistics_rows=" + document.querySelectorAll("table.statistics tbody tr").length +
    " diagnostics_rows=" + document.querySelectorAll("table.diagnostics tbody tr").length +
    " widths=" + images.map(function (i) { return i.naturalWidth; }).join(",");
  document.body.appendChild(marker);
});
</script>
"""


@needs_chromium
def test_chromium_renders_the_tables_and_the_images(tmp_path, report_html):
    # The page itself has no script; a copy gets a probe that reports what the browser laid out.
    probe = tmp_path / "probe.html"
    probe.write_text(report_html.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'id="gradfit-probe">([^<]*)<', dom)
    assert found, "the probe script did not run"
    facts = dict(item.split("=") for item in found.group(1).split())
    assert facts["images"] == "3" and facts["drawn"] == "3", facts
    assert facts["statistics_rows"] == "4"  # intercept + 3 features
    assert int(facts["diagnostics_rows"]) >= 5
    assert all(int(width) > 300 for width in facts["widths"].split(","))
    assert dom.count("<tr") >= 4 + 5 + 2

    # The page as a person sees it: a screenshot with text, tables and plots on white.
    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1280,2600", "--hide-scrollbars", report_html.as_uri())
    image = matplotlib.image.imread(screenshot)[..., :3]
    assert image.shape[:2] == (2600, 1280)
    ink = image.mean(axis=2) < 0.6  # dark pixels: text, lines and markers
    rows_with_ink = np.flatnonzero(ink.any(axis=1))
    assert ink.mean() > 0.005 and rows_with_ink.size > 800, "the page looks empty"
    # The plots' blue (#0072B2) is on the page: the images were drawn, not just reserved.
    blue = (np.abs(image - np.array([0x00, 0x72, 0xB2]) / 255).max(axis=2) < 0.08)
    assert blue.sum() > 2000
