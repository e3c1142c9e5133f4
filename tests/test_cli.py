"""The ``gradfit`` command end to end: train → predict → evaluate → inspect, the demo, bad input.

Most runs call :func:`gradfit.cli.main` in the test process (fast); a few run
the installed console script and ``python -m gradfit`` in a subprocess, as a
user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as sk

from gradfit.cli import main

from .conftest import make_regression, write_table as write

FEATURES = ["a", "b", "c"]
CONVERGED = ["--epochs", "5000", "--tol", "1e-12", "-q"]
SCRIPT = shutil.which("gradfit", path=os.path.dirname(sys.executable)) or shutil.which("gradfit")


def run(capsys, *argv):
    """``gradfit ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*argv, module=False):
    """``gradfit ARGV`` (or ``python -m gradfit ARGV``) in a subprocess."""
    assert module or SCRIPT, "the gradfit console script is not installed (pip install -e .)"
    command = [sys.executable, "-m", "gradfit"] if module else [SCRIPT]
    return subprocess.run(command + [str(a) for a in argv], capture_output=True, text=True, timeout=120)


def frame(n=120, seed=0):
    """Features a, b, c; targets y1, y2; a weight column w."""
    X, y = make_regression(n=n, d=3, k=2, seed=seed, offset=3.0)
    data = pd.DataFrame(X, columns=FEATURES)
    data["y1"], data["y2"] = y[:, 0], y[:, 1]
    data["w"] = np.random.default_rng(seed).uniform(0.2, 3.0, size=n)
    return data


def lstsq_predictions(data, targets, weight=None):
    design = np.column_stack([data[FEATURES].to_numpy(), np.ones(len(data))])
    y = data[targets].to_numpy()
    root = np.ones(len(data)) if weight is None else np.sqrt(data[weight].to_numpy())
    solution = np.linalg.lstsq(design * root[:, None], y * root[:, None], rcond=None)[0]
    return design @ solution, solution


def read_predictions(path_or_text):
    from io import StringIO

    source = path_or_text if os.path.exists(str(path_or_text)) else StringIO(path_or_text)
    return pd.read_csv(source)


# -- the round trip -------------------------------------------------------------


@pytest.mark.parametrize("name", ["data.csv", "data.parquet", "folder"])
def test_train_predict_evaluate_inspect(capsys, tmp_path, name):
    data = frame()
    path = write(data, tmp_path / name)
    model = tmp_path / "model.json"

    code, out, err = run(capsys, "train", path, "--target", "y1", "--features", "a,b,c", "-o", model, *CONVERGED)
    assert code == 0, err
    assert "120 rows x 3 features" in out and "converged" in out and f"model written to {model}" in out
    assert err == ""

    code, out, err = run(capsys, "predict", model, path, "-o", tmp_path / "predictions.csv")
    assert code == 0, err
    predicted = read_predictions(tmp_path / "predictions.csv")
    assert list(predicted.columns) == ["y1"]
    expected, solution = lstsq_predictions(data, ["y1"])
    np.testing.assert_allclose(predicted["y1"], expected[:, 0], rtol=1e-9, atol=1e-9)
    assert "predictions for 120 rows written to" in err

    # stdout gives the same CSV
    code, out, _ = run(capsys, "predict", model, path)
    assert code == 0 and out == (tmp_path / "predictions.csv").read_text()

    code, out, err = run(capsys, "evaluate", model, path, "--json")
    assert code == 0, err
    result = json.loads(out)
    y, p = data["y1"].to_numpy(), predicted["y1"].to_numpy()
    assert result["n_samples"] == 120
    assert result["mse"] == pytest.approx(sk.mean_squared_error(y, p), rel=1e-9)
    assert result["rmse"] == pytest.approx(sk.root_mean_squared_error(y, p), rel=1e-9)
    assert result["mae"] == pytest.approx(sk.mean_absolute_error(y, p), rel=1e-9)
    assert result["r2"] == pytest.approx(sk.r2_score(y, p), rel=1e-9)

    code, out, _ = run(capsys, "evaluate", model, path)
    assert code == 0
    assert re.search(r"^rows\s+120$", out, re.M)
    assert float(re.search(r"^R\^2\s+(\S+)$", out, re.M).group(1)) == pytest.approx(result["r2"], rel=1e-9)

    code, out, _ = run(capsys, "inspect", model, "--json")
    assert code == 0
    document = json.loads(out)
    assert {"format", "format_version", "feature_names", "target_names", "coef", "intercept",
            "standardization", "settings", "training"} <= set(document)
    assert document["feature_names"] == FEATURES and document["target_names"] == ["y1"]
    np.testing.assert_allclose(document["coef"][0], solution[:3, 0], rtol=1e-9)
    np.testing.assert_allclose(document["intercept"], solution[3], rtol=1e-9)
    assert document["training"]["converged"] is True and document["training"]["n_samples"] == 120
    assert {"n_iter", "stop_reason", "final_cost", "learning_rate", "engine", "loss_curve"} <= set(document["training"])
    assert document["settings"]["epochs"] == 5000 and document["settings"]["tol"] == 1e-12

    code, out, _ = run(capsys, "inspect", model)
    assert code == 0
    for feature, value in zip(FEATURES, solution[:3, 0]):
        line = re.search(rf"^\s+{feature}\s+(\S+)$", out, re.M)
        assert float(line.group(1)) == pytest.approx(value, rel=1e-8)
    assert re.search(r"^\s+\(intercept\)\s+\S+$", out, re.M)
    assert "120 rows" in out and "converged" in out and "epochs=5000" in out and "tol=1e-12" in out


def test_multi_output_with_sample_weight(capsys, tmp_path):
    data = frame(seed=1)
    path = write(data, tmp_path / "data.parquet")
    model = tmp_path / "model.json"
    code, _, err = run(capsys, "train", path, "--target", "y1,y2", "--sample-weight", "w", "-o", model, *CONVERGED)
    assert code == 0, err
    document = json.loads(model.read_text())
    assert document["feature_names"] == FEATURES, "the weight column is not a feature"
    assert document["target_names"] == ["y1", "y2"]

    expected, _ = lstsq_predictions(data, ["y1", "y2"], weight="w")
    code, out, _ = run(capsys, "predict", model, path)
    predicted = read_predictions(out)
    assert list(predicted.columns) == ["y1", "y2"]
    np.testing.assert_allclose(predicted.to_numpy(), expected, rtol=1e-9, atol=1e-9)

    code, out, _ = run(capsys, "evaluate", model, path, "--sample-weight", "w", "--json")
    result = json.loads(out)
    y, p, w = data[["y1", "y2"]].to_numpy(), predicted.to_numpy(), data["w"].to_numpy()
    assert result["mse"] == pytest.approx(sk.mean_squared_error(y, p, sample_weight=w), rel=1e-9)
    assert result["rmse"] == pytest.approx(sk.root_mean_squared_error(y, p, sample_weight=w), rel=1e-9)
    assert result["mae"] == pytest.approx(sk.mean_absolute_error(y, p, sample_weight=w), rel=1e-9)
    assert result["r2"] == pytest.approx(sk.r2_score(y, p, sample_weight=w), rel=1e-9)

    # without weights, the plain metrics
    code, out, _ = run(capsys, "evaluate", model, path, "--json")
    assert json.loads(out)["mse"] == pytest.approx(sk.mean_squared_error(y, p), rel=1e-9)


def test_evaluate_a_single_row_has_no_r2(capsys, tmp_path):
    data = frame()
    model = tmp_path / "model.json"
    run(capsys, "train", write(data, tmp_path / "data.csv"), "--target", "y1", "--features", "a,b,c", "-o", model, "-q")
    one = write(data.iloc[:1], tmp_path / "one.csv")
    code, out, _ = run(capsys, "evaluate", model, one, "--json")
    assert code == 0 and json.loads(out)["r2"] is None
    code, out, _ = run(capsys, "evaluate", model, one)
    assert code == 0 and "R^2   undefined" in out
    code, out, _ = run(capsys, "predict", model, one)
    assert code == 0 and len(out.splitlines()) == 2, "one row can be predicted"


def test_output_files_get_ordinary_permissions(capsys, tmp_path):
    path = write(frame(), tmp_path / "data.csv")
    model, predictions = tmp_path / "model.json", tmp_path / "p.csv"
    run(capsys, "train", path, "--target", "y1", "-o", model, "-q")
    run(capsys, "predict", model, path, "-o", predictions)
    umask = os.umask(0o022)
    os.umask(umask)
    for output in (model, predictions):
        assert os.stat(output).st_mode & 0o777 == 0o666 & ~umask
    os.chmod(predictions, 0o640)
    run(capsys, "predict", model, path, "-o", predictions)
    assert os.stat(predictions).st_mode & 0o777 == 0o640, "replacing a file keeps its permissions"


def test_console_script_and_python_m(tmp_path):
    data = frame()
    path = write(data, tmp_path / "data.csv")
    model = tmp_path / "model.json"
    trained = run_process("train", path, "--target", "y1", "--features", "a,b,c", "-o", model, *CONVERGED)
    assert trained.returncode == 0, trained.stderr
    predicted = run_process("predict", model, path, module=True)
    assert predicted.returncode == 0, predicted.stderr
    expected, _ = lstsq_predictions(data, ["y1"])
    np.testing.assert_allclose(read_predictions(predicted.stdout)["y1"], expected[:, 0], rtol=1e-9)
    evaluated = run_process("evaluate", model, path, "--json")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["r2"] > 0.99
    inspected = run_process("inspect", model, module=True)
    assert inspected.returncode == 0 and "target y1" in inspected.stdout


# -- the demo -------------------------------------------------------------------


def test_demo():
    result = run_process("demo")
    assert result.returncode == 0, result.stderr
    epochs = re.findall(r"^Epoch: (\d+) Cost: (\S+)$", result.stdout, re.M)
    assert [int(i) for i, _ in epochs] == list(range(100))
    assert float(epochs[0][1]) == pytest.approx(30.0)
    rows = re.findall(r"^(\d+ \d+ \d+ \d+)\s+(\S+)\s+(\d+)$", result.stdout, re.M)
    assert [row for row, _, _ in rows] == ["5 6 7 8", "6 7 8 9", "7 8 9 10", "8 9 10 11"]
    for _, predicted, expected in rows:
        assert abs(float(predicted) - float(expected)) < 1e-3
    assert [int(e) for _, _, e in rows] == [10, 12, 14, 16]


def test_demo_with_the_tutorials_learning_rate_diverges_and_says_why():
    result = run_process("demo", "--lr", "0.1", "--no-standardize", module=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.findall(r"^Epoch: (\d+)", result.stdout, re.M)[:2] == ["0", "1"]
    message = result.stderr.strip()
    assert "\n" not in message, "one line"
    assert message.startswith("gradfit: error: training diverged at epoch 5: cost ")
    assert "learning rate 0.1;" in message
    limit = float(re.search(r"largest stable learning rate for these data is (\S+) ", message).group(1))
    assert limit == pytest.approx(0.0134, abs=1e-4)
    assert "--lr auto" in message and "--no-standardize" in message


def test_demo_in_process_prints_the_tutorials_lines(capsys):
    code, out, err = run(capsys, "demo", "--epochs", "20", "--no-standardize", "--lr", "0.01")
    assert code == 0 and err == ""
    assert len(re.findall(r"^Epoch: \d+ Cost: \S+$", out, re.M)) == 20


# -- bad input --------------------------------------------------------------------

GOOD_CSV = "a,b,y\n1,2,3\n2,1,4\n3,5,1\n4,4,2\n"

# A case: files to create (name -> text, bytes, a DataFrame for Parquet, or None
# for a folder), the command, the exit code, and what the message must name.
# {model} is a trained model on columns a, b -> y; -o points at an existing file.
BAD_INPUT = {
    # the data file itself
    "missing file": ({}, "train nope.csv --target y", 1, ["'nope.csv'", "not found"]),
    "folder named like a CSV": ({"x.csv": None}, "train x.csv --target y", 1, ["'x.csv'", "folder"]),
    "empty file": ({"x.csv": ""}, "train x.csv --target y", 1, ["'x.csv'", "empty"]),
    "header only": ({"x.csv": "a,b,y\n"}, "train x.csv --target y", 1, ["'x.csv'", "no data rows"]),
    "missing target column": ({"x.csv": GOOD_CSV}, "train x.csv --target price", 1,
                              ["'x.csv'", "no column 'price'", "a, b, y"]),
    "missing feature column": ({"x.csv": GOOD_CSV}, "train x.csv --target y --features a,q", 1,
                               ["'x.csv'", "no column 'q'"]),
    "non-numeric value": ({"x.csv": "a,b,y\n1,2,3\n4,x,6\n7,8,9\n"}, "train x.csv --target y", 1,
                          ["'x.csv'", "line 3", "column 'b'", "'x' is not a number"]),
    "non-numeric target": ({"x.csv": "a,b,y\n1,2,3\n4,5,6\n7,8,seven\n"}, "train x.csv --target y", 1,
                           ["'x.csv'", "line 4", "column 'y'", "'seven'"]),
    "NaN": ({"x.csv": "a,b,y\n1,2,3\n4,NaN,6\n7,8,9\n"}, "train x.csv --target y", 1,
            ["'x.csv'", "line 3", "column 'b'"]),
    "empty field": ({"x.csv": "a,b,y\n1,2,3\n4,5,6\n7,,9\n"}, "train x.csv --target y", 1,
                    ["'x.csv'", "line 4", "column 'b'", "missing"]),
    "infinity": ({"x.csv": "a,b,y\n1,2,3\n4,5,6\n7,8,inf\n"}, "train x.csv --target y", 1,
                 ["'x.csv'", "line 4", "column 'y'", "infinite"]),
    "NaN in Parquet": ({"x.parquet": pa.table({"a": [1.0, 2, 3], "b": [1.0, np.nan, 2], "y": [1.0, 2, 3]})},
                       "train x.parquet --target y", 1, ["'x.parquet'", "row 2", "column 'b'", "NaN"]),
    "null in Parquet": ({"x.parquet": pd.DataFrame({"a": [1.0, 2, 3], "b": [1.0, None, 2], "y": [1.0, 2, 3]})},
                        "train x.parquet --target y", 1, ["'x.parquet'", "row 2", "column 'b'", "missing"]),
    "infinity in Parquet": ({"x.parquet": pd.DataFrame({"a": [1.0, 2, 3], "b": [1.0, 2, 3], "y": [1.0, 2, -np.inf]})},
                            "train x.parquet --target y", 1, ["'x.parquet'", "row 3", "column 'y'", "infinite"]),
    "text column in Parquet": ({"x.parquet": pd.DataFrame({"a": [1.0, 2], "b": ["p", "q"], "y": [1.0, 2]})},
                               "train x.parquet --target y --categorical none", 1, ["'x.parquet'", "column 'b'", "not numeric"]),
    "short row": ({"x.csv": "a,b,y\n1,2,3\n4,5\n7,8,9\n"}, "train x.csv --target y", 1,
                  ["'x.csv'", "line 3", "2 fields", "header has 3"]),
    "long row": ({"x.csv": "a,b,y\n1,2,3\n4,5,6\n7,8,9,10\n"}, "train x.csv --target y", 1,
                 ["'x.csv'", "line 4", "4 fields"]),
    "single row": ({"x.csv": "a,b,y\n1,2,3\n"}, "train x.csv --target y", 1, ["'x.csv'", "1 sample", "at least 2"]),
    "damaged Parquet": ({"x.parquet": b"PAR1 this is not really parquet"}, "train x.parquet --target y", 1,
                        ["'x.parquet'", "not a readable Parquet file"]),
    "unknown format": ({"x.xlsx": "a,b,y\n"}, "train x.xlsx --target y", 1, ["'x.xlsx'", "unknown format", ".csv"]),
    "duplicate column": ({"x.csv": "a,a,y\n1,2,3\n2,1,4\n"}, "train x.csv --target y", 1,
                         ["'x.csv'", "more than one column named 'a'"]),
    "target as a feature": ({"x.csv": GOOD_CSV}, "train x.csv --target y --features a,y", 1,
                            ["'x.csv'", "'y'", "both a feature and a target"]),
    "negative weight": ({"x.csv": "a,b,y,w\n1,2,3,1\n2,1,4,-1\n3,5,1,1\n"}, "train x.csv --target y --sample-weight w",
                        1, ["'x.csv'", "line 3", "column 'w'"]),
    "weights sum to zero": ({"x.csv": "a,b,y,w\n1,2,3,0\n2,1,4,0\n3,5,1,0\n"},
                            "train x.csv --target y --sample-weight w", 1, ["'x.csv'", "sum to zero"]),
    "no output folder": ({"x.csv": GOOD_CSV}, "train x.csv --target y -o nowhere/model.json", 1,
                         ["'nowhere/model.json'", "does not exist"]),
    # option values
    "unknown optimizer": ({"x.csv": GOOD_CSV}, "train x.csv --target y --optimizer sgd", 2,
                          ["--optimizer", "'sgd'", "'adam'", "'cg'", "'gd'", "'momentum'", "'nesterov'"]),
    "unknown loss": ({"x.csv": GOOD_CSV}, "train x.csv --target y --loss l3", 2,
                     ["--loss", "'l3'", "'squared_error'", "'huber'", "'absolute_error'"]),
    "unknown penalty": ({"x.csv": GOOD_CSV}, "train x.csv --target y --penalty l3", 2,
                        ["--penalty", "'l3'", "'l1'", "'l2'", "'elasticnet'", "'none'"]),
    "unknown engine": ({"x.csv": GOOD_CSV}, "train x.csv --target y --engine gpu", 2,
                       ["--engine", "'gpu'", "'auto'", "'statistics'", "'pass'"]),
    "unknown schedule": ({"x.csv": GOOD_CSV}, "train x.csv --target y --schedule cosine", 2,
                         ["--schedule", "'cosine'", "'constant'", "'invscaling'", "'step'"]),
    "learning rate not a number": ({"x.csv": GOOD_CSV}, "train x.csv --target y --lr foo", 2,
                                   ["--lr", "'foo'", "'auto' or a positive number"]),
    "negative learning rate": ({"x.csv": GOOD_CSV}, "train x.csv --target y --lr -0.5", 2, ["--lr", "'-0.5'"]),
    "negative epochs": ({"x.csv": GOOD_CSV}, "train x.csv --target y --epochs -5", 2, ["--epochs", "-5", "[1, inf)"]),
    "epochs not an integer": ({"x.csv": GOOD_CSV}, "train x.csv --target y --epochs 1.5", 2, ["--epochs", "'1.5'"]),
    "l1 ratio out of range": ({"x.csv": GOOD_CSV}, "train x.csv --target y --l1-ratio 2", 2, ["--l1-ratio", "2.0"]),
    "unknown flag": ({"x.csv": GOOD_CSV}, "train x.csv --target y --learning-rate 0.1", 2, ["--learning-rate"]),
    "no target": ({"x.csv": GOOD_CSV}, "train x.csv", 2, ["--target"]),
    "demo: unknown optimizer": ({}, "demo --optimizer sgd", 2, ["--optimizer", "'sgd'", "'adam'"]),
    # predict and evaluate: the data
    "predict: missing data file": ({}, "predict {model} nope.csv", 1, ["'nope.csv'", "not found"]),
    "predict: header only": ({"x.csv": "a,b\n"}, "predict {model} x.csv", 1, ["'x.csv'", "no data rows"]),
    "predict: non-numeric value": ({"x.csv": "a,b\n1,2\n3,oops\n"}, "predict {model} x.csv", 1,
                                   ["'x.csv'", "line 3", "column 'b'", "'oops'"]),
    "predict: infinity": ({"x.csv": "a,b\n1,2\n3,4\n-inf,5\n"}, "predict {model} x.csv", 1,
                          ["'x.csv'", "line 4", "column 'a'", "infinite"]),
    "predict: NaN": ({"x.csv": "a,b\n1,2\nnan,4\n"}, "predict {model} x.csv", 1, ["'x.csv'", "line 3", "column 'a'"]),
    "predict: ragged row": ({"x.csv": "a,b\n1,2\n3\n"}, "predict {model} x.csv", 1, ["'x.csv'", "line 3", "1 field,"]),
    "predict: different features": ({"x.csv": "a,c\n1,2\n3,4\n"}, "predict {model} x.csv", 1,
                                    ["'x.csv'", "no column 'b'", "a, c"]),
    "predict: output is the input": ({"x.csv": "a,b\n1,2\n"}, "predict {model} x.csv -o x.csv", 1,
                                     ["'x.csv'", "overwrite"]),
    "predict: output is a folder": ({"x.csv": "a,b\n1,2\n", "out": None}, "predict {model} x.csv -o out", 1,
                                    ["'out'", "folder"]),
    "evaluate: different features": ({"x.csv": "a,c,y\n1,2,3\n3,4,5\n"}, "evaluate {model} x.csv", 1,
                                     ["'x.csv'", "no column 'b'"]),
    "evaluate: missing target": ({"x.csv": "a,b\n1,2\n3,4\n"}, "evaluate {model} x.csv", 1,
                                 ["'x.csv'", "no column 'y'"]),
    "evaluate: wrong number of targets": ({"x.csv": "a,b,y,z\n1,2,3,4\n3,4,5,6\n"}, "evaluate {model} x.csv --target y,z",
                                          1, ["--target", "2 column(s)", "'model.json'", "predicts 1: y"]),
    "evaluate: infinity": ({"x.csv": "a,b,y\n1,2,3\n3,4,inf\n"}, "evaluate {model} x.csv", 1,
                           ["'x.csv'", "line 3", "column 'y'", "infinite"]),
    "evaluate: header only": ({"x.csv": "a,b,y\n"}, "evaluate {model} x.csv", 1, ["'x.csv'", "no data rows"]),
    # the model file
    "predict: missing model": ({"x.csv": GOOD_CSV}, "predict nope.json x.csv", 1, ["'nope.json'", "not found"]),
    "predict: truncated model": ({"m.json": "TRUNCATED", "x.csv": GOOD_CSV}, "predict m.json x.csv", 1,
                                 ["'m.json'", "not valid JSON"]),
    "predict: foreign JSON": ({"m.json": '{"coef": [1, 2]}', "x.csv": GOOD_CSV}, "predict m.json x.csv", 1,
                              ["'m.json'", "not a gradfit model"]),
    "evaluate: damaged model": ({"m.json": "DAMAGED", "x.csv": GOOD_CSV}, "evaluate m.json x.csv", 1,
                                ["'m.json'", "coef[0][0]", "not a finite number"]),
    "inspect: truncated model": ({"m.json": "TRUNCATED"}, "inspect m.json", 1, ["'m.json'", "not valid JSON"]),
    "inspect: newer model": ({"m.json": "NEWER"}, "inspect m.json --json", 1, ["'m.json'", "format version 2", "newer"]),
    "inspect: not JSON at all": ({"m.json": b"\x89PNG\r\n\x1a\n"}, "inspect m.json", 1, ["'m.json'", "not valid JSON"]),
    "inspect: a folder": ({"m.json": None}, "inspect m.json", 1, ["'m.json'", "folder"]),
}


@pytest.fixture(scope="module")
def model_text(tmp_path_factory):
    """The text of a model trained on columns a, b -> y."""
    folder = tmp_path_factory.mktemp("model")
    (folder / "t.csv").write_text(GOOD_CSV)
    assert main(["train", str(folder / "t.csv"), "--target", "y", "-o", str(folder / "m.json"), "-q"]) == 0
    return (folder / "m.json").read_text()


def damaged(kind, model_text):
    document = json.loads(model_text)
    if kind == "TRUNCATED":
        return model_text[: len(model_text) // 2]
    if kind == "NEWER":
        document["format_version"] = 2
    if kind == "DAMAGED":
        document["coef"] = [["1.0", 2.0]]
    return json.dumps(document)


def snapshot(folder):
    """Every file under ``folder`` (names and bytes): what a failed run must leave as it was."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, folder)] = handle.read()
    return files


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input(case, capsys, tmp_path, monkeypatch, model_text):
    files, command, exit_code, named = BAD_INPUT[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.json").write_text(model_text)
    for name, content in files.items():
        if content is None:
            (tmp_path / name).mkdir()
        elif isinstance(content, pd.DataFrame):
            content.to_parquet(tmp_path / name, index=False)
        elif isinstance(content, pa.Table):
            pq.write_table(content, tmp_path / name)
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            text = damaged(content, model_text) if content in ("TRUNCATED", "NEWER", "DAMAGED") else content
            (tmp_path / name).write_text(text)
    argv = command.replace("{model}", "model.json").split()
    if argv[0] in ("train", "predict") and "-o" not in argv:
        argv += ["-o", "existing.out"]
    (tmp_path / "existing.out").write_bytes(b"precious bytes\n")
    before = snapshot(tmp_path)

    code, out, err = run(capsys, *argv)

    assert code == exit_code, err
    assert "Traceback" not in err
    message = err.strip()
    assert "\n" not in message, f"one line, got: {err!r}"
    assert message.startswith("gradfit")
    for part in named:
        assert part in message, f"{part!r} not in {message!r}"
    assert snapshot(tmp_path) == before, "files on disk must be left as they were (and no temporary files)"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(capsys, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(GOOD_CSV)
    path.chmod(0)
    code, _, err = run(capsys, "train", path, "--target", "y")
    assert code == 1 and "cannot be read" in err and str(path) in err


def test_predict_to_stdout_with_bad_data_prints_no_rows(capsys, tmp_path, model_text):
    # An error found before the first row is written leaves stdout empty: no half table.
    (tmp_path / "model.json").write_text(model_text)
    (tmp_path / "x.csv").write_text("a,b\n1,inf\n")
    code, out, err = run(capsys, "predict", tmp_path / "model.json", tmp_path / "x.csv")
    assert code == 1 and out == "" and "infinite" in err


def test_a_failed_train_keeps_the_old_model(capsys, tmp_path):
    path = write(frame(), tmp_path / "data.csv")
    model = tmp_path / "model.json"
    assert run(capsys, "train", path, "--target", "y1", "-o", model, "-q")[0] == 0
    before = model.read_bytes()
    code, _, err = run(capsys, "train", path, "--target", "y1", "-o", model, "-q",
                       "--lr", "5", "--no-standardize", "--tol", "none")
    assert code == 1 and "diverged" in err
    assert model.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "model.json"]


def test_running_out_of_epochs_warns_in_one_line(capsys, tmp_path):
    path = write(frame(), tmp_path / "data.csv")
    code, out, err = run(capsys, "train", path, "--target", "y1", "--epochs", "3", "-q", "--lr", "1e-4")
    assert code == 0
    assert err.strip().startswith("gradfit: warning: stopped after 3 epochs")
    assert "\n" not in err.strip() and "--epochs" in err and "--lr auto" in err
