"""Hostile model and checkpoint files: refused in one line, within bounded time and memory, never run.

``tests/test_model_file.py`` covers damaged model files case by case; here
every field of real model files is replaced by values of every JSON type
(hypothesis), the limits on size, count and depth are pushed past, text that
is not UTF-8 or not Unicode is tried, checkpoints get the same treatment, and
the package source is scanned for anything that could run a file's content.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import os
import pathlib
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradfit
from gradfit import GDRegressor, ModelFileError
from gradfit import checkpoint
from gradfit import model as model_file
from gradfit.checkpoint import CheckpointError
from gradfit.cli import main

from .conftest import make_regression

FEATURES = ["a", "b", "c"]


def fitted_document(tmp_path_factory, k):
    """The model file of a converged fit with diagnostics and statistics (k outputs)."""
    X, y = make_regression(n=40, d=3, k=k, seed=3 + k, offset=2.0)
    targets = pd.DataFrame(np.reshape(y, (40, -1)), columns=["y"] if k == 1 else [f"y{j}" for j in range(k)])
    model = GDRegressor(epochs=500).fit(pd.DataFrame(X, columns=FEATURES), targets.iloc[:, 0] if k == 1 else targets)
    path = tmp_path_factory.mktemp("model") / "model.json"
    model.save(path)
    document = json.loads(path.read_text())
    assert document["diagnostics"]["epochs_to_tol"] is not None and document["statistics"] is not None
    return document


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    return {k: fitted_document(tmp_path_factory, k) for k in (1, 2)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder with data to predict from."""
    path = tmp_path_factory.mktemp("hostile")
    X, _ = make_regression(n=5, d=3, seed=1)
    pd.DataFrame(X, columns=FEATURES).to_csv(path / "new.csv", index=False)
    return path


def cli(capsys, *argv):
    """``gradfit ARGV`` in this process: (exit code, stdout, stderr); nothing else may escape."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *named):
    assert code == 1, err
    message = err.strip()
    assert "\n" not in message and "Traceback" not in message, err
    assert message.startswith("gradfit: error: "), err
    for part in named:
        assert part in message, (part, message)


def load_or_refuse(path):
    """``gradfit.load(path)``, or ``None`` when refused; a refusal must be one ModelFileError line."""
    try:
        return gradfit.load(path)
    except ModelFileError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"model file {str(path)!r}"), message
        return None


def check_through_the_cli(capsys, folder, path, loaded):
    """``inspect``, ``inspect --json`` and ``predict -o``: clean outcomes that agree with ``gradfit.load``."""
    output = folder / "predictions.csv"
    output.write_bytes(b"the previous predictions\n")
    for argv in (["inspect", path], ["inspect", path, "--json"], ["predict", path, folder / "new.csv", "-o", output]):
        code, out, err = cli(capsys, *argv)
        if loaded is None:
            assert_one_line_error(code, err, "model file")
        elif argv[0] == "inspect":
            assert code == 0, err
        else:  # renamed features may be missing from the data: then a one-line data error
            assert code == 0 or (code == 1 and "\n" not in err.strip() and "Traceback" not in err), err
        if code != 0:
            assert output.read_bytes() == b"the previous predictions\n"


def write_json(path, document):
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# -- every field, every wrong type ----------------------------------------------------


def field_paths(node, prefix=()):
    """Every key path of a JSON document, containers included."""
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += field_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node[:4]):  # the first few items of long lists stand for the rest
            paths += field_paths(value, prefix + (index,))
    return paths


def replace(document, path, value, delete=False):
    document = copy.deepcopy(document)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


SPECIAL = st.sampled_from([
    None, True, False, 0, -1, 1, 2, 10**400, -(10**30), 1.5, -0.0, 1e308, 5e-324, "", "x", "inf", "-inf", "nan",
    "\u00e9\u4e2d", "\x00", "\ud800", [], {}, [1.0], [[1.0, 2.0, 3.0]], ["a", "a"], {"a": 1}, [None], "(intercept)",
])
JSON_VALUES = st.recursive(
    SPECIAL | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=8,
)


#: GRADFIT_FUZZ_EXAMPLES=2000 tries more, fresh random replacements (CI runs the fixed set)
EXAMPLES = int(os.environ.get("GRADFIT_FUZZ_EXAMPLES", "150"))
DERANDOMIZE = "GRADFIT_FUZZ_EXAMPLES" not in os.environ


@settings(max_examples=EXAMPLES, derandomize=DERANDOMIZE, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_field_replaced_by_anything(data, documents, folder, capsys):
    """Loading either gives a working model or refuses in one line; the CLI agrees and never clobbers."""
    k = data.draw(st.sampled_from([1, 2]), label="outputs")
    document = documents[k]
    path = data.draw(st.sampled_from(field_paths(document)), label="field")
    delete = data.draw(st.booleans(), label="delete") if isinstance(path[-1], str) else False
    value = None if delete else data.draw(JSON_VALUES, label="value")
    model_path = write_json(folder / "model.json", replace(document, path, value, delete))

    loaded = load_or_refuse(model_path)
    if loaded is not None:
        assert np.all(np.isfinite(loaded.coef_)) and np.all(np.isfinite(loaded.intercept_))
    check_through_the_cli(capsys, folder, model_path, loaded)


def test_fields_the_loader_needs_are_refused_when_wrong(documents, tmp_path):
    """A few replacements must be refused (not merely survived): the schema is enforced."""
    document = documents[2]
    cases = [
        (("diagnostics", "message"), 5),
        (("diagnostics", "gap"), "far"),
        (("diagnostics", "notes"), [1]),
        (("statistics", "names"), ["(intercept)", "a"]),
        (("statistics", "std_error"), [[1.0, 2.0, 3.0, 4.0]]),
        (("statistics", "r_squared"), 0.5),
        (("statistics", "n_observations"), -1),
        (("training", "loss_curve"), [[1.0]]),
        (("gradfit_version",), {"a": 1}),
        (("feature_names", 0), "\ud800"),
    ]
    for path, value in cases:
        target = write_json(tmp_path / "model.json", replace(document, path, value))
        with pytest.raises(ModelFileError, match=r"^model file .*: "):
            gradfit.load(target)
    for path in [("diagnostics", "message"), ("statistics", "names"), ("statistics", "t_value")]:
        write_json(tmp_path / "model.json", replace(document, path, None, delete=True))
        with pytest.raises(ModelFileError, match="missing"):
            gradfit.load(tmp_path / "model.json")


def test_unknown_keys_are_ignored(documents, tmp_path, capsys):
    """Decided: unknown keys are parsed (within the limits) and ignored, at every level; see gradfit.model."""
    document = copy.deepcopy(documents[1])
    document["from_the_future"] = {"nested": [1, 2, {"x": "y"}]}
    document["training"]["new_field"] = "value"
    document["standardization"]["shift"] = [1.0, 2.0, 3.0]
    document["diagnostics"]["new_field"] = None
    document["statistics"]["new_field"] = [1]
    path = write_json(tmp_path / "model.json", document)
    loaded = gradfit.load(path)
    np.testing.assert_array_equal(loaded.coef_, documents[1]["coef"][0])
    code, out, _ = cli(capsys, "inspect", path, "--json")
    assert code == 0 and json.loads(out)["from_the_future"] == {"nested": [1, 2, {"x": "y"}]}


# -- depth, size, count -------------------------------------------------------------


@pytest.mark.parametrize("shape", ["list", "object"])
@pytest.mark.parametrize("depth", [40, 900, 100_000])
@pytest.mark.parametrize("where", ["top", "unknown key", "settings"])
def test_deep_nesting(documents, tmp_path, capsys, folder, shape, depth, where):
    """Beyond MAX_DEPTH (a model is 4 deep) it is refused, parsed or not: no RecursionError, no crash."""
    open_, close = ("[", "]") if shape == "list" else ('{"a":', "}")
    nested = open_ * depth + "1" + close * depth
    if where == "top":
        text = nested
    else:
        text = json.dumps(documents[1])
        key = '"settings": {' if where == "settings" else '"format": '
        insert = f'"x": {nested}, ' if where == "settings" else f'"deep": {nested}, '
        text = text.replace(key, key + insert, 1) if where == "settings" else text.replace("{", "{" + insert, 1)
    path = tmp_path / "model.json"
    path.write_text(text)
    with pytest.raises(ModelFileError, match="nested too deeply" if where != "top" or depth > 900 else "."):
        gradfit.load(path)
    check_through_the_cli(capsys, folder, path, None)


def test_too_many_values_are_refused_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "model.json"
    # The real limit: 2**24 + 1 zeros, 32 MiB, refused by counting before the parser makes 16 million objects.
    path.write_bytes(b"[" + b"0," * model_file.MAX_VALUES + b"0]")
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="more than 16777216 values"):
            gradfit.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * path.stat().st_size, f"{peak} bytes: the file was parsed"


def test_values_under_a_limit_load(documents, tmp_path, monkeypatch):
    path = write_json(tmp_path / "model.json", documents[1])
    count = path.read_text().count(",") + 1
    monkeypatch.setattr(model_file, "MAX_VALUES", count)
    gradfit.load(path)
    monkeypatch.setattr(model_file, "MAX_VALUES", count - 1)
    with pytest.raises(ModelFileError, match="values"):
        gradfit.load(path)


def test_enormous_declared_sizes_cost_nothing(documents, tmp_path):
    """A model cannot declare a size: arrays are checked against the names, one value at a time."""
    document = replace(documents[1], ("feature_names",), [f"f{j}" for j in range(200_000)])
    path = write_json(tmp_path / "model.json", document)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="'coef' must be a list of 1 row of 200000 numbers|coef\\[0\\]"):
            gradfit.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * path.stat().st_size


# -- numbers and text --------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 5000])
@pytest.mark.parametrize("field", ["intercept", "scale", "final_cost", "gap", "std_error", "loss_curve"])
def test_non_finite_and_huge_numbers(documents, tmp_path, literal, field):
    document = copy.deepcopy(documents[1])
    marker = 123.25  # a value no fit writes, replaced by the literal in the text
    location = {
        "intercept": ("intercept", 0), "scale": ("standardization", "scale", 1),
        "final_cost": ("training", "final_cost"), "gap": ("diagnostics", "gap"),
        "std_error": ("statistics", "std_error", 2), "loss_curve": ("training", "loss_curve", 1),
    }[field]
    document = replace(document, location, marker)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(document).replace(str(marker), literal))
    with pytest.raises(ModelFileError) as caught:
        gradfit.load(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", [1e308, -1e308, 1.7e308])
def test_finite_coefficients_whose_predictions_overflow(documents, tmp_path, capsys, folder, value):
    """A model file may hold any finite number; a prediction that overflows is a one-line error, not "inf"."""
    path = write_json(tmp_path / "model.json", replace(documents[1], ("coef", 0, 1), value))
    assert gradfit.load(path).coef_[1] == value
    output = tmp_path / "predictions.csv"
    code, out, err = cli(capsys, "predict", path, folder / "new.csv", "-o", output)
    assert_one_line_error(code, err, "overflows float64", "line 2")
    assert not output.exists()


def test_big_integers_where_counts_are_expected_are_harmless(documents, tmp_path, capsys, folder):
    document = replace(documents[1], ("training", "n_iter"), 10**300)
    path = write_json(tmp_path / "model.json", document)
    assert gradfit.load(path).n_iter_ == 10**300
    check_through_the_cli(capsys, folder, path, True)


@pytest.mark.parametrize("case", ["latin-1 name", "invalid byte", "utf-16", "lone surrogate", "surrogate key",
                                  "nul in name", "utf-8 bom"])
def test_text_that_is_not_utf8_or_not_unicode(documents, tmp_path, capsys, folder, case):
    text = json.dumps(documents[1], ensure_ascii=False)
    path = tmp_path / "model.json"
    if case == "latin-1 name":
        data = text.replace('"a"', '"\u00e9"', 1).encode("latin-1")
    elif case == "invalid byte":
        data = text.replace('"a"', '"a\udcff"', 1).encode("utf-8", "surrogateescape")
    elif case == "utf-16":
        data = text.encode("utf-16")
    elif case == "lone surrogate":
        data = text.replace('"a"', '"\\ud800"', 1).encode()
    elif case == "surrogate key":
        data = text.replace('"training": {', '"training": {"\\udfff": 1, ', 1).encode()
    elif case == "nul in name":
        data = text.replace('"a"', '"a\\u0000b"', 1).encode()
    else:
        data = b"\xef\xbb\xbf" + text.encode()
    path.write_bytes(data)
    loaded = load_or_refuse(path)
    if case in ("nul in name", "utf-8 bom"):
        assert loaded is not None  # valid Unicode: a name is any text
    else:
        assert loaded is None
    check_through_the_cli(capsys, folder, path, loaded)


# -- time: the loader stays linear --------------------------------------------------------


# -- checkpoints ------------------------------------------------------------------------


@pytest.fixture
def checkpoint_document():
    """A checkpoint envelope as :func:`gradfit.checkpoint.read` checks it, with arrays and a state tree."""
    return {
        "format": checkpoint.FORMAT,
        "format_version": checkpoint.FORMAT_VERSION,
        "settings": GDRegressor().get_params(),
        "fingerprint": "0" * 64,
        "loss_curve": [3.0, 2.5, 2.25],
        "params": checkpoint.encode_array(np.arange(8.0).reshape(4, 2)),
        "opt_state": checkpoint.encode_tree((np.zeros((4, 2)), 3, None, (1.5, np.ones(2)))),
        "rng": checkpoint.encode_rng(np.random.default_rng(5)),
    }


def read_checkpoint(path):
    """:func:`checkpoint.read` and the decoding of what it holds: a document, or one CheckpointError line."""
    try:
        document = checkpoint.read(path)
        checkpoint.decode_array(document["params"], "params")
        checkpoint.decode_rng(document.get("rng"))
        if "opt_state" in document:
            checkpoint.decode_tree(document["opt_state"], (np.zeros((3, 1)), 0))
        return document
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return None


def test_a_checkpoint_round_trips(tmp_path, checkpoint_document):
    checkpoint.save(tmp_path / "c.json", checkpoint_document)
    document = checkpoint.read(tmp_path / "c.json")
    np.testing.assert_array_equal(checkpoint.decode_array(document["params"], "params"), np.arange(8.0).reshape(4, 2))
    assert checkpoint.decode_rng(document["rng"]).random() == np.random.default_rng(5).random()
    template = (np.zeros((4, 2)), 0, None, (0.0, np.zeros(2)))
    state = checkpoint.decode_tree(document["opt_state"], template)
    assert state[1] == 3 and state[2] is None and state[3][0] == 1.5
    np.testing.assert_array_equal(state[3][1], np.ones(2))


@settings(max_examples=EXAMPLES, derandomize=DERANDOMIZE, deadline=None)
@given(data=st.data())
def test_checkpoint_fields_replaced_by_anything(data, tmp_path_factory):
    document = {
        "format": checkpoint.FORMAT, "format_version": 1, "settings": {"epochs": 10}, "fingerprint": "ab",
        "loss_curve": [1.0, 0.5], "params": checkpoint.encode_array(np.ones((3, 1))),
        "opt_state": checkpoint.encode_tree((np.ones((3, 1)), 4)),
        "rng": checkpoint.encode_rng(np.random.default_rng(0)),
    }
    path = data.draw(st.sampled_from(field_paths(document)), label="field")
    value = data.draw(JSON_VALUES, label="value")
    target = tmp_path_factory.mktemp("c") / "c.json"
    target.write_text(json.dumps(replace(document, path, value)))
    read_checkpoint(target)  # a document or one CheckpointError line; anything else fails the test


@pytest.mark.parametrize("shape", [[2**31 - 1, 2**31 - 1], [2**30, 2**30], [2**31 - 1]])
def test_a_checkpoint_array_declaring_terabytes_is_refused_before_allocating(shape):
    node = {"dtype": "<f8", "shape": shape, "base64": base64.b64encode(b"\0" * 16).decode()}
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="needs .* bytes, but the data hold 16"):
            checkpoint.decode_array(node, "params")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("node, expected", [
    ({"dtype": "|O", "shape": [1], "base64": "AAAAAAAAAAA="}, "dtype"),  # objects would mean pickle
    ({"dtype": "<f4", "shape": [1], "base64": "AAAAAA=="}, "dtype"),
    ({"dtype": ["<f8"], "shape": [1], "base64": "AAAAAAAAAAA="}, "dtype"),
    ({"dtype": "<f8", "shape": [True], "base64": "AAAAAAAAAAA="}, "bad shape"),
    ({"dtype": "<f8", "shape": [-1], "base64": ""}, "bad shape"),
    ({"dtype": "<f8", "shape": [1, 1, 1], "base64": "AAAAAAAAAAA="}, "bad shape"),
    ({"dtype": "<f8", "shape": [2**31], "base64": ""}, "bad shape"),
    ({"dtype": "<f8", "shape": "1", "base64": "AAAAAAAAAAA="}, "bad shape"),
    ({"dtype": "<f8", "shape": [1], "base64": "!!!!!!!!!!!="}, "not valid base64"),
    ({"dtype": "<f8", "shape": [1], "base64": 12}, "base64 string"),
    ({"dtype": "<f8", "shape": [2], "base64": "AAAAAAAAAAA="}, "needs 16 bytes"),
    ({"dtype": "<f8", "shape": [1], "base64": "AAAAAAAAAAA=", "extra": 1}, "not an encoded array"),
    ([1.0], "not an encoded array"),
])
def test_bad_checkpoint_arrays(node, expected):
    with pytest.raises(CheckpointError, match=expected):
        checkpoint.decode_array(node, "params")


def test_a_checkpoint_state_of_the_wrong_shape(checkpoint_document):
    template = (np.zeros((4, 2)), 0, None, (0.0, np.zeros(2)))
    for node, expected in [
        ({"tuple": [1, 2]}, "2 entries"),
        ([1, 2, 3, 4], "expected a tuple"),
        ({"tuple": "abcd"}, "expected a tuple"),
        ({"tuple": [checkpoint.encode_array(np.zeros((5, 2))), 0, None, {"tuple": [0.0, None]}]}, "shape"),
        ({"tuple": [None, "x", None, {"tuple": [0.0, None]}]}, "unexpected str"),
    ]:
        with pytest.raises(CheckpointError, match=expected):
            checkpoint.decode_tree(node, template)


@pytest.mark.parametrize("case", ["NaN", "huge int in curve", "long int", "deep", "not UTF-8", "utf-16", "surrogate",
                                  "a list", "no params", "version true", "too many values"])
def test_hostile_checkpoint_files(tmp_path, checkpoint_document, monkeypatch, case):
    text = json.dumps(checkpoint_document)
    data = {
        "NaN": text.replace("2.5", "NaN").encode(),
        "huge int in curve": text.replace("2.5", "1" + "0" * 400).encode(),
        "long int": text.replace("2.5", "1" * 5000).encode(),
        "deep": text.replace("{", '{"x": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1).encode(),
        "not UTF-8": text.replace("00", "\udcff\udcfe", 1).encode("utf-8", "surrogateescape"),
        "utf-16": text.encode("utf-16"),
        "surrogate": text.replace('"fingerprint": "0', '"fingerprint": "\\ud800', 1).encode(),
        "a list": b"[1, 2]",
        "no params": json.dumps({k: v for k, v in checkpoint_document.items() if k != "params"}).encode(),
        "version true": text.replace('"format_version": 1', '"format_version": true').encode(),
        "too many values": text.encode(),
    }[case]
    if case == "too many values":
        monkeypatch.setattr(checkpoint, "MAX_VALUES", 10)
    path = tmp_path / "c.json"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.read(path)
    assert "\n" not in str(caught.value) and "c.json" in str(caught.value)


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    """A checkpoint written by ``gradfit train --checkpoint``, and the data it was made on."""
    folder = tmp_path_factory.mktemp("checkpoint")
    X, y = make_regression(n=60, d=3, seed=9)
    pd.DataFrame(X, columns=FEATURES).assign(y=y).to_csv(folder / "data.csv", index=False)
    code = main(["train", str(folder / "data.csv"), "--target", "y", "--epochs", "20", "--tol", "none", "-q",
                 "--checkpoint", str(folder / "c.json"), "--checkpoint-every", "5"])
    assert code == 0
    return folder, json.loads((folder / "c.json").read_text())


@settings(max_examples=EXAMPLES // 2, derandomize=DERANDOMIZE, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_resuming_from_a_hostile_checkpoint(data, real_checkpoint, capsys):
    """``gradfit train --resume``: any field replaced by anything resumes or fails in one line, model untouched."""
    folder, document = real_checkpoint
    path = data.draw(st.sampled_from(field_paths(document)), label="field")
    value = data.draw(JSON_VALUES, label="value")
    target = folder / "hostile.json"
    target.write_text(json.dumps(replace(document, path, value)))
    (folder / "model.json").write_bytes(b"the previous model\n")
    code, _, err = cli(capsys, "train", folder / "data.csv", "--target", "y", "--epochs", "20", "--tol", "none",
                       "-q", "--resume", target, "-o", folder / "model.json")
    if code != 0:
        assert_one_line_error(code, err)
        assert (folder / "model.json").read_bytes() == b"the previous model\n"
    else:
        assert np.all(np.isfinite(gradfit.load(folder / "model.json").coef_))


def test_a_huge_checkpoint_is_refused_before_reading(tmp_path):
    path = tmp_path / "c.json"
    with open(path, "wb") as handle:  # sparse: no disk, no time
        handle.truncate(checkpoint.MAX_BYTES + 1)
    with pytest.raises(CheckpointError, match="byte limit"):
        checkpoint.read(path)


# -- nothing in a file is ever run ---------------------------------------------------------

PACKAGE = pathlib.Path(gradfit.__file__).parent
#: modules that serialize or deserialize code, or run what they read
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "yaml",
                     "jsonpickle", "copyreg"}
#: builtins that run or import text
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input"}
#: where importlib may be used: Dask's optional modules, by literal name only
IMPORTLIB_ALLOWED = {"sources/dask/optional.py"}


def _python_files():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_code_runs_from_a_file_anywhere_in_the_package():
    for path in _python_files():
        relative = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{relative}: imports {name}"
                    if name.split(".")[0] == "importlib":
                        assert relative in IMPORTLIB_ALLOWED, f"{relative}: imports importlib"
            elif isinstance(node, ast.Call):
                function = node.func
                name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
                owner = getattr(getattr(function, "value", None), "id", None)
                builtin = isinstance(function, ast.Name) or owner == "builtins"
                assert not (builtin and name in FORBIDDEN_CALLS), f"{relative}, line {node.lineno}: calls {name}"
                if name in ("load", "loads") and isinstance(function, ast.Attribute):
                    owner = getattr(function.value, "id", None)
                    assert owner not in ("np", "numpy", "pickle", "marshal", "yaml"), f"{relative}: {owner}.{name}"
                for keyword in node.keywords:
                    assert keyword.arg != "allow_pickle", f"{relative}, line {node.lineno}: allow_pickle"
                    assert keyword.arg not in ("object_hook", "object_pairs_hook") or relative == "summary.py", (
                        f"{relative}, line {node.lineno}: a JSON hook could build objects from a file"
                    )
                if name == "require" and relative.startswith("sources/dask/"):
                    assert all(isinstance(a, ast.Constant) for a in node.args), "Dask modules by literal name only"


def test_the_load_paths_read_json_only():
    """model.py and checkpoint.py read files through files_io.load_json (strict JSON, limits) and nothing else."""
    for name in ("model.py", "checkpoint.py", "files_io.py"):
        source = (PACKAGE / name).read_text(encoding="utf-8")
        tree = ast.parse(source)
        calls = {
            (getattr(node.func.value, "id", None), node.func.attr)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert ("json", "load") not in calls, f"{name}: json.load bypasses the limits"
        if name == "files_io.py":  # load_json moved here from model.py (issue 17: one module for safe files)
            assert ("json", "loads") in calls
        assert ("np", "frombuffer") not in calls or name == "checkpoint.py"


@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch {marker}')",
    "{{'__reduce__': ['os.system', ['touch {marker}']]}}",
    "open('{marker}', 'w')",
])
def test_code_in_a_model_file_is_only_text(documents, tmp_path, capsys, folder, payload):
    marker = tmp_path / "pwned"
    text = payload.format(marker=marker)
    for path in [("feature_names", 0), ("settings", "learning_rate"), ("settings", "optimizer"),
                 ("diagnostics", "message"), ("gradfit_version",), ("format",)]:
        model_path = write_json(tmp_path / "model.json", replace(documents[1], path, text))
        loaded = load_or_refuse(model_path)
        check_through_the_cli(capsys, folder, model_path, loaded)
        assert not marker.exists()


def test_a_pickle_is_not_a_model(tmp_path, capsys):
    # The bytes of pickle.dumps(os.system) style payloads: refused as not JSON, never unpickled.
    path = tmp_path / "model.json"
    path.write_bytes(b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.")
    code, _, err = cli(capsys, "inspect", path)
    assert_one_line_error(code, err, "not valid JSON")
