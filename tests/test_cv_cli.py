"""``gradfit train --alpha cv`` as a new user runs it: the choice printed, kept, inspected and drawn.

The oracle for the choice is GDRegressorCV itself on the same file (checked
against scikit-learn in test_cv.py).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gradfit import GDRegressorCV
from gradfit.cli import main

from .conftest import make_regression


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data_file(tmp_path):
    X, y = make_regression(n=400, d=4, noise=3.0, seed=21, offset=2.0)
    path = tmp_path / "data.csv"
    pd.DataFrame(X, columns=list("abcd")).assign(y=y).to_csv(path, index=False)
    return path


def test_train_chooses_alpha_and_inspect_shows_it(capsys, tmp_path, data_file):
    model_path, report = tmp_path / "m.json", tmp_path / "r.html"
    code, out, err = run(capsys, "train", data_file, "--target", "y", "--penalty", "elasticnet", "--alpha", "cv",
                         "--folds", "4", "--alphas", "30", "--l1-ratio", "0.1,0.5,0.9", "--selection", "1se",
                         "-o", model_path, "--report", report, "-q")
    assert code == 0, err
    expected = GDRegressorCV(penalty="elasticnet", alphas=30, l1_ratio=[0.1, 0.5, 0.9], cv=4,
                             selection="1se").fit(str(data_file), "y")
    assert f"alpha {expected.alpha_:.6g}, l1_ratio {expected.l1_ratio_:g}" in out
    assert f"{expected.cv_error_:.6g} ± {expected.cv_std_error_:.3g}" in out
    assert "4 folds x 30 alphas x 3 l1 ratios" in out
    document = json.loads(model_path.read_text())
    assert document["settings"]["alpha"] == pytest.approx(expected.alpha_, rel=1e-12)
    assert document["cross_validation"]["selection"] == "1se"
    np.testing.assert_allclose(document["coef"][0], expected.coef_, rtol=1e-9)
    code, shown, err = run(capsys, "inspect", model_path)
    assert code == 0, err
    assert f"alpha {expected.alpha_:.6g}" in shown and "CV error" in shown
    page = report.read_text()
    assert 'alt="cv_curve plot"' in page and 'alt="coef_path plot"' in page


def test_given_alphas_and_l2(capsys, data_file):
    code, out, err = run(capsys, "train", data_file, "--target", "y", "--penalty", "l2", "--alpha", "cv",
                         "--alphas", "0.001,0.1,10", "-q")
    assert code == 0, err
    expected = GDRegressorCV(penalty="l2", alphas=[0.001, 0.1, 10]).fit(str(data_file), "y")
    assert f"chosen:    alpha {expected.alpha_:.6g} (smallest mean error)" in out


@pytest.mark.parametrize("argv, message", [
    (["--alpha", "cv"], "'cv' needs --penalty"),
    (["--penalty", "l1", "--folds", "3"], "--folds: needs --alpha cv"),
    (["--penalty", "elasticnet", "--l1-ratio", "0.2,0.4"], "several values need --alpha cv"),
    (["--penalty", "l1", "--alpha", "cv", "--folds", "1"], "at least 2 folds"),
    (["--penalty", "l1", "--alpha", "cv", "--alphas", "0.1,x"], "comma-separated numbers"),
    (["--penalty", "l1", "--alpha", "cv", "--loss", "absolute_error"], "and loss='huber', not"),
    (["--penalty", "l1", "--alpha", "cv", "--checkpoint", "c.json"], "cannot be combined with --checkpoint"),
])
def test_usage_errors_are_one_line(capsys, data_file, argv, message):
    code, out, err = run(capsys, "train", data_file, "--target", "y", *argv)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
