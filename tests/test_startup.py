"""Start-up is part of speed (issue 12 item 5): what ``--help``, ``inspect`` and ``predict`` import.

Each command runs in a fresh interpreter (``sys.executable``, the way the
``gradfit`` script starts), which reports its exit code and ``sys.modules``:
none of scikit-learn, SciPy, matplotlib, Numba or Dask may be there; and what
``predict`` prints equals the estimator's predictions, digit for digit. The
time it takes is measured in ``benchmarks/bench_startup.py``, not here.
Also here: the parameter table the command line reads instead of the
estimator (:mod:`gradfit.parameters`) agrees with scikit-learn's validation,
and gradfit's modules import each other without a cycle.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

import gradfit
from gradfit import GDRegressor, ModelFileError, parameters
from gradfit import model as model_file

from .conftest import make_regression, write_table

HEAVY = ("sklearn", "scipy", "matplotlib", "numba", "dask", "distributed")

SCRIPT = """
import json, sys
from gradfit.__main__ import run
report, argv = sys.argv[1], sys.argv[2:]
try:
    code = run(argv)
except SystemExit as exc:  # --help and --version exit from argparse
    code = exc.code
with open(report, "w") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""


def run_fresh(tmp_path, *argv):
    """``gradfit ARGV`` in a new interpreter: ``(exit code, imported top-level packages, stdout)``."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(report), *map(str, argv)],
                          capture_output=True, text=True, timeout=120)
    result = json.loads(report.read_text())
    assert result["code"] == 0, done.stderr
    return result["code"], {name.split(".")[0] for name in result["modules"]}, done.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A numeric model and a categorical one, saved, with their data as CSV and Parquet."""
    folder = tmp_path_factory.mktemp("startup")
    X, y = make_regression(n=150, d=3, seed=3)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y)
    numeric = GDRegressor().fit(frame[["a", "b", "c"]], frame["y"])
    numeric.save(folder / "numeric.json")
    grouped = frame.assign(g=np.where(np.arange(len(frame)) % 3 == 0, "red", "blue"))
    categorical = GDRegressor().fit(grouped[["a", "b", "g"]], grouped["y"])
    categorical.save(folder / "categorical.json")
    paths = {
        "csv": write_table(frame, folder / "data.csv"),
        "parquet": write_table(frame, folder / "data.parquet"),
        "grouped": write_table(grouped, folder / "grouped.csv"),
    }
    return folder, {"numeric": numeric, "categorical": categorical}, frame, grouped, paths


def test_help_imports_nothing_heavy(tmp_path):
    _, modules, out = run_fresh(tmp_path, "--help")
    assert "predict" in out and "train" in out
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert "pyarrow" not in modules and "pandas" not in modules  # --help reads no data


def test_train_help_shows_the_estimator_defaults(tmp_path):
    _, modules, out = run_fresh(tmp_path, "train", "--help")
    assert "default 1000" in out and "default 'squared_error'" in out
    assert not modules & set(HEAVY)


@pytest.mark.parametrize("model", ["numeric", "categorical"])
def test_inspect_imports_nothing_heavy(tmp_path, files, model):
    folder = files[0]
    _, modules, out = run_fresh(tmp_path, "inspect", folder / f"{model}.json")
    assert "coefficients in the data's units" in out
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize("data", ["csv", "parquet", "grouped"])
def test_predict_imports_nothing_heavy_and_equals_the_estimator(tmp_path, files, data):
    folder, models, frame, grouped, paths = files
    name = "categorical" if data == "grouped" else "numeric"
    _, modules, out = run_fresh(tmp_path, "predict", folder / f"{name}.json", paths[data])
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    lines = out.splitlines()
    assert lines[0] == "y"
    printed = np.array([float(v) for v in lines[1:]])
    table = grouped[["a", "b", "g"]] if data == "grouped" else frame[["a", "b", "c"]]
    np.testing.assert_array_equal(printed, models[name].predict(table))  # repr of a float reads back exactly


def test_the_light_model_predicts_as_the_estimator(files):
    folder, models, frame, _, _ = files
    light = model_file.load(folder / "numeric.json")
    loaded = gradfit.load(folder / "numeric.json")
    X = frame[["a", "b", "c"]].to_numpy()
    np.testing.assert_array_equal(light.predict(X)[:, 0], models["numeric"].predict(frame[["a", "b", "c"]]))
    np.testing.assert_array_equal(loaded.predict(frame[["a", "b", "c"]]), light.predict(X)[:, 0])
    assert light.fit_report_ == loaded.fit_report_ and light.summary_ == loaded.summary_


# -- the parameter table the command line reads --------------------------------------------


def test_the_table_holds_the_estimators_signature():
    signature = {name: p.default for name, p in inspect.signature(GDRegressor).parameters.items()}
    assert list(signature) == list(parameters.DEFAULTS)
    assert signature == parameters.DEFAULTS


#: values to try on every parameter: each type JSON can hold, edges, and hostile text
PROBES = [None, True, False, 0, 1, 2, -1, 5, 10**12, 2**32 - 1, 2**32, 0.0, 0.5, 1.0, 1.5, -0.5, 1e-300,
          math.inf, -math.inf, math.nan, np.float64(0.25), np.int64(3), np.bool_(True), "auto", "none", "",
          "__import__('os').system('x')", [], ["a"], {}, {"a": "b"}, *sorted(
              {v for c in parameters.CONSTRAINTS.values() for r in c if isinstance(r, parameters.Options)
               for v in r.values})]


@pytest.mark.parametrize("name", list(parameters.CONSTRAINTS))
def test_the_light_check_agrees_with_scikit_learn(name):
    """Oracle: scikit-learn's own validation of ``GDRegressor._parameter_constraints``."""
    for value in PROBES:
        try:
            validate_parameter_constraints(GDRegressor._parameter_constraints, {name: value}, "GDRegressor")
            expected = None
        except InvalidParameterError as exc:
            expected = str(exc)
        try:
            parameters.check({name: value})
            found = None
        except ValueError as exc:
            found = str(exc)
        assert (found is None) == (expected is None), (name, value, found, expected)
        if found is not None:
            assert found.startswith(f"The {name!r} parameter of GDRegressor must be ") and found.endswith(
                f"Got {value!r} instead."), found


def test_a_bad_setting_is_refused_by_both_loaders(tmp_path, files):
    folder = files[0]
    document = json.loads((folder / "numeric.json").read_text())
    document["settings"]["epochs"] = -3
    path = tmp_path / "model.json"
    path.write_text(json.dumps(document))
    for load in (model_file.load, gradfit.load):
        with pytest.raises(ModelFileError, match=r"in 'settings': The 'epochs' parameter .* Got -3 instead"):
            load(path)


# -- no import cycles ----------------------------------------------------------------------


def _module_imports(inside_functions=False):
    """Every gradfit module and the gradfit modules it imports at its top level (``ast``, not importing).

    ``inside_functions``: also the imports inside its functions (the lazy ones).
    """
    root = pathlib.Path(gradfit.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)
    graph = {}
    for name, (path, package) in modules.items():
        here = name if package else name.rsplit(".", 1)[0]
        found = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree) if inside_functions else tree.body:
            if isinstance(node, ast.ImportFrom):
                base = here.split(".")[: len(here.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                pieces = target.split(".")
                for end in range(1, len(pieces) + 1):
                    module = ".".join(pieces[:end])
                    # a package a module lives in is being imported already: not an edge
                    if module in modules and module != name and not name.startswith(module + "."):
                        found.add(module)
        graph[name] = found
    return graph


@pytest.mark.parametrize("inside_functions", [False, True], ids=["top level", "lazy imports too"])
def test_no_import_cycles(inside_functions):
    graph = _module_imports(inside_functions)
    assert "gradfit.model" in graph and "gradfit.parameters" in graph["gradfit.model"]
    if inside_functions:  # the lazy imports are seen: the package's own lazy names, the CLI's verbs
        assert "gradfit.engines.categorical" in graph["gradfit.engines"] and "gradfit.estimator" in graph["gradfit.cli"]
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycles.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, [" -> ".join(cycle) for cycle in cycles]
