"""The model file: an exact round trip, an atomic save, and a load that trusts nothing."""

from __future__ import annotations

import ast
import json
import os
import pathlib

import numpy as np
import pandas as pd
import pytest

import gradfit
from gradfit import GDRegressor, ModelFileError
from gradfit import model as model_file
from gradfit import files_io

from .conftest import make_regression

ATTRIBUTES = [
    "coef_", "intercept_", "n_iter_", "loss_curve_", "final_cost_", "converged_", "stop_reason_",
    "learning_rate_", "engine_", "n_samples_", "n_features_in_", "feature_names_", "target_names_",
]


def assert_same_model(loaded, original):
    for name in ATTRIBUTES:
        expected, got = getattr(original, name), getattr(loaded, name)
        if isinstance(expected, np.ndarray):
            np.testing.assert_array_equal(got, expected, err_msg=name)
            assert np.shape(got) == expected.shape, name
        else:
            assert got == expected and type(got) is type(expected), name
    np.testing.assert_array_equal(loaded.scaling_.center, original.scaling_.center)
    np.testing.assert_array_equal(loaded.scaling_.scale, original.scaling_.scale)
    assert loaded.get_params() == original.get_params()


@pytest.fixture(scope="module")
def fitted():
    X, y = make_regression(n=80, d=4, seed=11, offset=5.0)
    return GDRegressor(epochs=300).fit(X, y), X


def test_round_trip_single_output(tmp_path, fitted):
    model, X = fitted
    model.save(tmp_path / "model.json")
    loaded = gradfit.load(tmp_path / "model.json")
    assert_same_model(loaded, model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.predict(X).shape == (80,)
    assert loaded.score(X, model.predict(X)) == 1.0


def test_round_trip_multi_output_with_feature_names(tmp_path):
    X, y = make_regression(n=90, d=3, k=2, seed=12, offset=2.0)
    features = pd.DataFrame(X, columns=["rooms", "age", "area"])
    targets = pd.DataFrame(y, columns=["price", "rent"])
    weight = np.random.default_rng(0).uniform(0.5, 2.0, size=90)
    model = GDRegressor(epochs=2000, tol=1e-10, penalty="l2", alpha=1e-3).fit(features, targets, sample_weight=weight)
    model.save(tmp_path / "model.json")
    loaded = gradfit.load(str(tmp_path / "model.json"))
    assert_same_model(loaded, model)
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.feature_names_ == ["rooms", "age", "area"] and loaded.target_names_ == ["price", "rent"]
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    assert loaded.predict(features).shape == (90, 2)


def test_the_file_is_readable_json(tmp_path, fitted):
    model, _ = fitted
    model.save(tmp_path / "model.json")
    text = (tmp_path / "model.json").read_text(encoding="utf-8")
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert document["format"] == "gradfit-model" and document["format_version"] == model_file.FORMAT_VERSION
    assert document["coef"] == [list(model.coef_)] and document["intercept"] == [model.intercept_]
    assert document["training"]["final_cost"] == model.final_cost_
    assert document["settings"] == model.get_params()


def test_settings_that_json_cannot_hold(tmp_path):
    # A RandomState as random_state, NumPy scalars as parameters: the file is still written.
    X, y = make_regression(n=40, d=2, seed=13)
    model = GDRegressor(epochs=np.int64(20), tol=None, learning_rate=np.float64(0.1), batch_size=8,
                        random_state=np.random.RandomState(0)).fit(X, y)
    model.save(tmp_path / "model.json")
    settings = json.loads((tmp_path / "model.json").read_text())["settings"]
    assert settings["epochs"] == 20 and settings["random_state"] is None
    np.testing.assert_array_equal(gradfit.load(tmp_path / "model.json").predict(X), model.predict(X))


def test_no_pickle_anywhere():
    package = pathlib.Path(gradfit.__file__).parent
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve") for n in names), path


# -- atomic saving ----------------------------------------------------------------


def _boom(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["json.dumps", "os.replace", "os.fsync", "write"])
def test_a_failed_save_leaves_the_previous_file(tmp_path, fitted, monkeypatch, where):
    model, _ = fitted
    path = tmp_path / "model.json"
    path.write_text("the previous model\n")
    if where == "write":
        # Fail half-way through writing the text, after the temporary file exists.
        monkeypatch.setattr(model_file, "atomic_write_text", lambda p, text: _write_half(p, text))
    else:
        module, name = where.split(".")
        monkeypatch.setattr(getattr(model_file, module), name, _boom)
    with pytest.raises(OSError, match="No space"):
        model.save(path)
    assert path.read_text() == "the previous model\n"
    assert os.listdir(tmp_path) == ["model.json"], "no temporary file is left behind"


def _write_half(path, text):
    with files_io.atomic_writer(path) as handle:
        handle.write(text[: len(text) // 2])
        _boom()


def test_a_failed_first_save_writes_nothing(tmp_path, fitted, monkeypatch):
    model, _ = fitted
    monkeypatch.setattr(model_file.os, "replace", _boom)
    with pytest.raises(OSError):
        model.save(tmp_path / "model.json")
    assert os.listdir(tmp_path) == []


def test_save_replaces_and_keeps_permissions(tmp_path, fitted):
    model, X = fitted
    path = tmp_path / "model.json"
    path.write_text("old")
    path.chmod(0o640)
    model.save(path)
    assert gradfit.load(path).n_iter_ == model.n_iter_
    assert path.stat().st_mode & 0o777 == 0o640


# -- loading what cannot be trusted -------------------------------------------------


def _edit(document, change):
    document = json.loads(json.dumps(document))
    change(document)
    return json.dumps(document)


def _set(key, value):
    def change(document):
        target = document
        parts = key.split(".")
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value

    return change


def _delete(key):
    return lambda document: document.pop(key)


# name -> (the file's text from the good document, what the message must say)
DAMAGED = {
    "truncated": (lambda doc, text: text[: len(text) // 3], "not valid JSON"),
    "empty": (lambda doc, text: "", "not valid JSON"),
    "not UTF-8": (lambda doc, text: b"\xff\xfe{}", "not UTF-8"),
    "a JSON list": (lambda doc, text: "[1, 2, 3]", "not a gradfit model"),
    "a JSON string": (lambda doc, text: '"gradfit-model"', "not a gradfit model"),
    "foreign JSON": (lambda doc, text: '{"name": "something else", "coef": [1]}', "not a gradfit model"),
    "newer format": (lambda doc, text: _edit(doc, _set("format_version", 2)), "newer"),
    "format version a string": (lambda doc, text: _edit(doc, _set("format_version", "1")), "integer"),
    "format version zero": (lambda doc, text: _edit(doc, _set("format_version", 0)), "not valid"),
    "strings in coef": (lambda doc, text: _edit(doc, _set("coef", [["1", "2", "3", "4"]])), "coef[0][0]"),
    "booleans in coef": (lambda doc, text: _edit(doc, _set("coef", [[True, 1, 2, 3]])), "coef[0][0]"),
    "coef row too short": (lambda doc, text: _edit(doc, _set("coef", [[1.0, 2.0]])), "'coef[0]' must be a list of 4"),
    "coef not nested": (lambda doc, text: _edit(doc, _set("coef", [1.0, 2.0, 3.0, 4.0])), "list of 1 row of 4"),
    "too many coef rows": (lambda doc, text: _edit(doc, _set("coef", [[1.0] * 4] * 2)), "list of 1 row of"),
    "NaN in coef": (lambda doc, text: text.replace(str(doc["coef"][0][1]), "NaN", 1), "not valid JSON"),
    "'nan' string in coef": (lambda doc, text: _edit(doc, _set("coef", [[1.0, "nan", 1.0, 1.0]])), "coef[0][1]"),
    "overflowing number": (lambda doc, text: text.replace(str(doc["coef"][0][1]), "1e999", 1), "coef[0][1]"),
    "enormous integer": (lambda doc, text: text.replace(str(doc["coef"][0][1]), "9" * 5000, 1), "model file"),
    "long integer": (lambda doc, text: text.replace(str(doc["coef"][0][1]), "9" * 400, 1), "coef[0][1]"),
    "intercept wrong length": (lambda doc, text: _edit(doc, _set("intercept", [1.0, 2.0])), "'intercept'"),
    "no intercept": (lambda doc, text: _edit(doc, _delete("intercept")), "'intercept'"),
    "scale wrong length": (lambda doc, text: _edit(doc, _set("standardization.scale", [1.0])),
                           "'standardization.scale'"),
    "zero scale": (lambda doc, text: _edit(doc, _set("standardization.scale", [1.0, 0.0, 1.0, 1.0])), "positive"),
    "no standardization": (lambda doc, text: _edit(doc, _delete("standardization")), "'standardization'"),
    "feature names not strings": (lambda doc, text: _edit(doc, _set("feature_names", [1, 2, 3, 4])),
                                  "'feature_names'"),
    "feature named twice": (lambda doc, text: _edit(doc, _set("feature_names", ["a", "b", "a", "c"])),
                            "'a' more than once"),
    "no target names": (lambda doc, text: _edit(doc, _set("target_names", [])), "'target_names'"),
    "settings a list": (lambda doc, text: _edit(doc, _set("settings", [])), "'settings'"),
    "bad setting": (lambda doc, text: _edit(doc, _set("settings.learning_rate", "fast")), "learning_rate"),
    "training a string": (lambda doc, text: _edit(doc, _set("training", "yes")), "'training'"),
    "n_iter a string": (lambda doc, text: _edit(doc, _set("training.n_iter", "x")), "'training.n_iter'"),
    "loss curve a number": (lambda doc, text: _edit(doc, _set("training.loss_curve", 5)), "'training.loss_curve'"),
    "deeply nested": (lambda doc, text: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "deeply nested inside": (lambda doc, text: text.replace('"settings": {', '"settings": {"x": ' + "[" * 100_000
                                                           + "]" * 100_000 + ",", 1), "nested too deeply"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory, fitted):
    path = tmp_path_factory.mktemp("good") / "model.json"
    fitted[0].save(path)
    text = path.read_text()
    return json.loads(text), text


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_files_give_one_line(tmp_path, good, case):
    make, expected = DAMAGED[case]
    content = make(*good)
    path = tmp_path / "model.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ModelFileError) as caught:
        gradfit.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"model file {str(path)!r}")
    assert expected in message, message
    assert isinstance(caught.value, ValueError)


def test_a_huge_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "model.json"
    with open(path, "wb") as handle:  # sparse: no disk, no time
        handle.truncate(model_file.MAX_BYTES + 1)
    with pytest.raises(ModelFileError, match="larger than the .*-byte limit"):
        gradfit.load(path)


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_a_missing_file_or_a_folder(tmp_path, kind):
    path = tmp_path / "model.json"
    if kind == "folder":
        path.mkdir()
    with pytest.raises(ModelFileError, match="not found" if kind == "missing" else "folder"):
        gradfit.load(path)


def test_optional_training_fields_may_be_missing(tmp_path, good, fitted):
    document, _ = good
    path = tmp_path / "model.json"
    path.write_text(_edit(document, _set("training", {})))
    loaded = gradfit.load(path)
    assert loaded.n_iter_ is None
    np.testing.assert_array_equal(loaded.coef_, fitted[0].coef_)
