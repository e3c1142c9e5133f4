"""The lesson page (issue 16): its numbers are gradfit's, and a real headless Chromium can use it.

The oracle for every number on the page is an independent ``GDRegressor`` fit
with the run's settings: fitted for ``e`` epochs, its ``final_cost_`` is the
cost the page shows at epoch ``e`` and its ``predict`` the predictions there;
a run that diverges raises the ``DivergenceError`` whose message the page shows.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings

import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from gradfit import DivergenceError, GDRegressor
from gradfit.cli import TUTORIAL_TEST_X, TUTORIAL_X, TUTORIAL_Y, main

from .conftest import make_regression

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's 'chromium' package (./scripts/test does it when run as root or with sudo)",
)
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync"]


def embedded(path):
    """The JSON the page carries (what its script draws from)."""
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="lesson-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def oracle(X, y, *, epochs, learning_rate, optimizer, standardize, tol=None):
    """``(cost, predictions)`` after ``epochs`` epochs of an independent fit, or the DivergenceError."""
    model = GDRegressor(learning_rate=learning_rate, optimizer=optimizer, standardize=standardize, epochs=epochs,
                        tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            model.fit(X, y)
        except DivergenceError as exc:
            return exc
    return model


def frame_of(run, epoch):
    return run["epochs"].index(epoch)


@pytest.fixture(scope="module")
def tutorial_page(tmp_path_factory):
    path = tmp_path_factory.mktemp("lesson") / "lesson.html"
    assert main(["demo", "--lesson", str(path), "-q"]) == 0
    return path


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    """A CSV with three features on very different scales (ill-conditioned raw), and its page."""
    folder = tmp_path_factory.mktemp("houses")
    X, y = make_regression(n=50, d=3, seed=16, noise=0.3, offset=3.0)
    table = pd.DataFrame({"size": X[:, 0], "age": X[:, 1], "rooms": X[:, 2], "price": y})
    csv = folder / "houses.csv"
    table.to_csv(csv, index=False, float_format="%.17g")
    page = folder / "lesson.html"
    assert main(["train", str(csv), "--target", "price", "--lesson", str(page), "-q", "--epochs", "300"]) == 0
    return csv, page


# -- the numbers ----------------------------------------------------------------------------


def test_tutorial_page_explains_the_tutorials_divergence(tutorial_page):
    data = embedded(tutorial_page)
    raw, standardized = data["variants"]["raw"], data["variants"]["standardized"]
    assert raw["L_text"] == "149.2" and raw["limit_texts"] == ["0.006703", "0.01341"]
    assert raw["n_zero"] == 3 and raw["plane"]["kind"] == "slice"  # 4 collinear features + intercept
    assert standardized["L_text"] == "8" and standardized["condition_text"] == "4"  # a rounder bowl
    # The tutorial's rates are on the slider; 0.1 diverges with the library's own message.
    index = raw["rates"].index(0.1)
    run = raw["runs"]["gd"][index]
    expected = oracle(TUTORIAL_X, TUTORIAL_Y, epochs=100, learning_rate=0.1, optimizer="gd", standardize=False)
    assert isinstance(expected, DivergenceError)
    assert run["stop_reason"] == "diverged" and run["message"] == str(expected)
    assert run["epochs"][-1] == expected.epoch and run["cost"][-1] == format(expected.cost, ".10g")
    # The same 0.1 with standardized features converges (it is below that bowl's 2/L = 0.25).
    assert standardized["runs"]["gd"][standardized["rates"].index(0.1)]["stop_reason"] == "max_epochs"
    assert data["test_rows"][0] == ["5", "6", "7", "8"] and data["test_targets"] == ["10", "12", "14", "16"]


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "adam"])
def test_tutorial_numbers_are_the_librarys(tutorial_page, optimizer, standardize):
    variant = embedded(tutorial_page)["variants"]["standardized" if standardize else "raw"]
    for index in (0, variant["rates"].index(1 / variant["L"]), len(variant["rates"]) - 1):
        rate, run = variant["rates"][index], variant["runs"][optimizer][index]
        full = oracle(TUTORIAL_X, TUTORIAL_Y, epochs=100, learning_rate=rate, optimizer=optimizer,
                      standardize=standardize)
        if isinstance(full, DivergenceError):
            assert run["stop_reason"] == "diverged" and run["message"] == str(full)
            continue
        assert run["cost"] == [format(c, ".10g") for c in list(full.loss_curve_) + [full.final_cost_]]
        assert run["pred"][-1] == [format(v, ".6f") for v in full.predict(TUTORIAL_TEST_X)]
        # Mid-way: a fit stopped at epoch 37 ends where the page's epoch 37 is.
        part = oracle(TUTORIAL_X, TUTORIAL_Y, epochs=37, learning_rate=rate, optimizer=optimizer,
                      standardize=standardize)
        frame = frame_of(run, 37)
        assert run["cost"][frame] == format(part.final_cost_, ".10g")
        assert run["pred"][frame] == [format(v, ".6f") for v in part.predict(TUTORIAL_TEST_X)]


def test_demo_page_agrees_with_the_demos_printed_numbers(tutorial_page, capsys):
    assert main(["demo", "--lr", "0.01", "--no-standardize", "--optimizer", "nesterov"]) == 0
    printed = capsys.readouterr().out
    data = embedded(tutorial_page)
    run = data["variants"]["raw"]["runs"]["nesterov"][data["variants"]["raw"]["rates"].index(0.01)]
    final_cost = re.search(r"final cost (\S+) after", printed).group(1)
    assert format(float(run["cost"][-1]), ".6g") == final_cost
    for line, prediction in zip(printed.splitlines()[-4:], run["pred"][-1]):
        assert line.split()[-2] == prediction


def test_other_data_set_numbers_are_the_librarys(houses):
    csv, page = houses
    data = embedded(page)
    table = pd.read_csv(csv)
    X = table[["size", "age", "rooms"]].to_numpy()
    assert data["feature_names"] == ["size", "age", "rooms"] and data["target_name"] == "price"
    assert data["test_rows"] == [[f"{v:g}" for v in row] for row in X[:4]]
    for key in ("raw", "standardized"):
        variant = data["variants"][key]
        assert variant["plane"]["kind"] == "slice" and variant["n_params"] == 4 and variant["n_zero"] == 0
        for optimizer in ("gd", "adam"):
            for index in (variant["rates"].index(1 / variant["L"]), len(variant["rates"]) - 1):
                rate, run = variant["rates"][index], variant["runs"][optimizer][index]
                expected = GDRegressor(learning_rate=rate, optimizer=optimizer, standardize=key == "standardized",
                                       epochs=300)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    try:
                        expected.fit(str(csv), "price")
                    except DivergenceError as exc:
                        assert run["stop_reason"] == "diverged" and run["message"] == str(exc)
                        continue
                curve = list(expected.loss_curve_) + [expected.final_cost_]
                assert run["n_epochs"] == expected.n_iter_
                assert run["cost"] == [format(curve[e], ".10g") for e in run["epochs"]]
                assert run["pred"][-1] == [format(v, ".6f") for v in expected.predict(X[:4])]


def test_page_opens_where_the_command_says(tmp_path, houses):
    """--optimizer, --no-standardize and --lr auto (Adam's, not 1/L) choose the opening run; minibatches work."""
    csv, _ = houses
    page = tmp_path / "lesson.html"
    options = ["--optimizer", "adam", "--no-standardize", "--batch-size", "16", "--seed", "3", "--epochs", "20"]
    assert main(["train", str(csv), "--target", "price", "--lesson", str(page), "-q", *options]) == 0
    data = embedded(page)
    expected = GDRegressor(optimizer="adam", standardize=False, batch_size=16, random_state=3, epochs=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        expected.fit(str(csv), "price")
    assert data["start"]["optimizer"] == "adam" and data["start"]["standardize"] is False
    variant = data["variants"]["raw"]
    index = data["start"]["rate_index"]
    assert variant["rates"][index] == expected.learning_rate_
    run = variant["runs"]["adam"][index]
    assert run["cost"] == [format(c, ".10g") for c in list(expected.loss_curve_) + [expected.final_cost_]]
    assert run["pred"][-1] == [format(v, ".6f") for v in expected.predict(pd.read_csv(csv).to_numpy()[:4, :3])]


def test_lesson_refuses_what_it_cannot_draw(tmp_path, houses, capsys):
    csv, _ = houses
    page = tmp_path / "lesson.html"
    for extra, reason in ((["--loss", "huber"], "quadratic"), (["--optimizer", "cg"], "learning rate"),
                          (["--penalty", "l1"], "L1")):
        assert main(["train", str(csv), "--target", "price", "--lesson", str(page), *extra]) == 1
        error = capsys.readouterr().err
        assert error.startswith("gradfit: error: --lesson") and reason in error and "Traceback" not in error
    page.write_text("an earlier page")  # a failed run leaves what was on disk as it was
    one = tmp_path / "one.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.1, 5.9]}).to_csv(one, index=False)
    assert main(["train", str(one), "--target", "y", "--no-intercept", "--lesson", str(page), "-q"]) == 1
    assert "two parameters" in capsys.readouterr().err
    assert main(["demo", "--lesson", str(tmp_path / "missing" / "lesson.html")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(csv), "--target", "price", "--lesson", str(csv)]) == 1  # would overwrite the data
    assert "overwrite" in capsys.readouterr().err
    assert page.read_text() == "an earlier page"
    assert not [name for name in tmp_path.iterdir() if name.name.startswith(".gradfit-")]


def test_page_is_self_contained_and_escapes_names(tmp_path):
    X, y = make_regression(n=30, d=1, seed=5)
    csv = tmp_path / "x.csv"
    pd.DataFrame({"</script><b>x": X[:, 0], "y": y}).to_csv(csv, index=False)
    page = tmp_path / "lesson.html"
    assert main(["train", str(csv), "--target", "y", "--lesson", str(page), "-q", "--epochs", "50"]) == 0
    text = page.read_text(encoding="utf-8")
    assert "</script><b>" not in text and text.count("</script>") == 2
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|url\(http|@import", text)
    data = embedded(page)
    assert data["feature_names"] == ["</script><b>x"]
    assert data["variants"]["raw"]["plane"]["kind"] == "parameters"  # one feature and the intercept: no slice


# -- the page in a real browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


class Visit:
    """A page open in Chromium, with every request and console message recorded."""

    def __init__(self, browser, path):
        self.context = browser.new_context(viewport={"width": 1240, "height": 1000})
        self.requests, self.messages = [], []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda message: self.messages.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.messages.append(("pageerror", str(error))))
        self.page.goto(path.as_uri())

    def _route(self, route):
        self.requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()  # offline: nothing may leave the machine

    def attribute(self, name):
        return self.page.get_attribute("#lesson", f"data-{name}")

    def text(self, selector):
        return self.page.inner_text(selector)

    def predictions(self):
        return [row.inner_text().split("\t")[1].strip() for row in self.page.query_selector_all("#predictions tbody tr")]

    def set_rate(self, rate):
        self.page.fill("#rate", repr(math.log10(rate)))

    def close(self, page_path):
        assert self.requests == [page_path.as_uri()], self.requests
        assert not [m for m in self.messages if m[0] in ("error", "pageerror", "warning")], self.messages
        self.context.close()


@needs_chromium
def test_learner_drives_the_tutorial_page(browser, tutorial_page, tmp_path):
    data = embedded(tutorial_page)
    raw = data["variants"]["raw"]
    visit = Visit(browser, tutorial_page)
    page = visit.page
    assert visit.attribute("optimizer") == "gd" and visit.attribute("standardize") == "true"
    page.screenshot(path=str(tmp_path / "opened.png"), full_page=True)

    # Raw features, the tutorial's 0.1: past 2/L, the path leaps out and the page says why.
    page.uncheck("#standardize")
    visit.set_rate(0.1)
    assert visit.attribute("rate") == "0.1" and visit.attribute("stop-reason") == "diverged"
    explanation = visit.text("#explain")
    assert "past the stability limit 2/L = 0.01341" in explanation and "L = 149.2" in explanation
    assert "1 − η·L = -13.92" in explanation and "collinear" in explanation
    library = oracle(TUTORIAL_X, TUTORIAL_Y, epochs=100, learning_rate=0.1, optimizer="gd", standardize=False)
    assert visit.text("#library-message") == str(library)
    assert "leaps out" in page.text_content("#bowl")
    page.screenshot(path=str(tmp_path / "diverged.png"), full_page=True)
    # Just below 2/L it is stable again.
    visit.set_rate(1.9 / raw["L"])
    assert page.get_attribute("#explain", "class") == "explain stable"

    # Play, pause and step: the epoch and the path's points advance.
    visit.set_rate(1 / raw["L"])
    page.click("#reset")
    assert visit.attribute("epoch") == "0" and visit.attribute("points") == "1"
    page.click("#step")
    assert visit.attribute("epoch") == "1" and visit.attribute("points") == "2"
    page.click("#play")
    for _ in range(400):  # the page's strict CSP forbids wait_for_function's eval: poll from here
        if int(visit.attribute("epoch")) >= 12:
            break
        page.wait_for_timeout(25)
    page.click("#play")  # pause
    paused = int(visit.attribute("epoch"))
    assert int(visit.attribute("points")) == paused + 1
    page.wait_for_timeout(300)
    assert int(visit.attribute("epoch")) == paused  # paused means paused
    page.screenshot(path=str(tmp_path / "playing.png"), full_page=True)

    # At epoch 40, each switch shows the library's numbers for the new run.
    page.fill("#scrub", "40")
    assert visit.attribute("epoch") == "40"
    for optimizer, standardize in (("gd", False), ("nesterov", False), ("adam", False), ("adam", True),
                                   ("momentum", True)):
        if page.is_checked("#standardize") != standardize:
            page.click("#standardize")
        page.check(f"#optimizer-{optimizer}")
        variant = data["variants"]["standardized" if standardize else "raw"]
        rate = variant["rates"][int(visit.attribute("rate-index"))]
        expected = oracle(TUTORIAL_X, TUTORIAL_Y, epochs=40, learning_rate=rate, optimizer=optimizer,
                          standardize=standardize)
        assert visit.attribute("epoch") == "40"
        assert visit.text("#cost-now") == format(expected.final_cost_, ".10g"), (optimizer, standardize)
        assert visit.predictions() == [format(v, ".6f") for v in expected.predict(TUTORIAL_TEST_X)]
    assert rate == pytest.approx(1 / data["variants"]["standardized"]["L"])  # the same multiple of 1/L
    page.screenshot(path=str(tmp_path / "switched.png"), full_page=True)
    assert all((tmp_path / name).stat().st_size > 20_000 for name in ("opened.png", "diverged.png", "playing.png"))
    visit.close(tutorial_page)


@needs_chromium
def test_learner_drives_a_page_of_other_data(browser, houses, tmp_path):
    csv, page_path = houses
    data = embedded(page_path)
    visit = Visit(browser, page_path)
    page = visit.page
    page.check("#optimizer-momentum")
    page.uncheck("#standardize")
    variant = data["variants"]["raw"]
    visit.set_rate(variant["rates"][-1])  # 8/L: gradient descent's limit is far behind
    run = variant["runs"]["momentum"][-1]
    assert visit.attribute("stop-reason") == run["stop_reason"]
    assert visit.text("#cost-now") == run["cost"][-1]
    assert visit.text("#n-epochs") == str(run["n_epochs"])
    page.click("#reset")
    page.click("#step")
    page.click("#step")
    assert visit.attribute("points") == "3" and visit.text("#cost-now") == run["cost"][2]
    assert visit.predictions() == run["pred"][2]
    assert "slice" in visit.text("#notes") and "eigenvectors" in visit.text("#notes")
    page.screenshot(path=str(tmp_path / "houses.png"), full_page=True)
    visit.close(page_path)
