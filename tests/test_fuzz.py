"""Generated odd files at the command line: every run ends in a correct fit or in one line.

hypothesis writes CSV and Parquet files with odd shapes (0, 1, 2 rows, one or
many columns, ragged rows, odd header names), types, encodings, missing values,
extreme magnitudes and constant or duplicated columns, and runs
``gradfit train FILE --target … -o model.json`` in a folder that already holds
a ``model.json``. Every outcome must be one of:

* exit 0, and the new model file loads, has finite coefficients, and fits the
  data as ``numpy.linalg.lstsq`` does on the same numbers (parsed here,
  independently of pyarrow): fitted values are compared, which are defined
  even where the coefficients are not (constant or duplicated columns);
* exit 1 (2 for a command line that cannot name the column), one line
  ``gradfit: error: …`` on stderr naming the column to blame when there is
  one, and every file in the folder byte for byte as it was.

Never a traceback (an exception out of ``main`` fails the test), a hang (each
run has an alarm), NaN coefficients, or a clobbered model. Where the data are
clean the fit must succeed, unless ``optimizer="cg"`` refuses a problem that
numpy confirms is too ill-conditioned. Examples are derandomized so that CI is
repeatable; sizes are small so that the file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import decimal
import io
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gradfit
from gradfit.cli import main

PREVIOUS_MODEL = b'{"format": "gradfit-model", "note": "a model from an earlier run: must survive any failure"}\n'
#: the most seconds one run may take: a hang fails the test instead of stalling CI
RUN_SECONDS = 60
#: GRADFIT_FUZZ_EXAMPLES=2000 fuzzes longer, with fresh random examples (CI runs the fixed 60)
EXAMPLES = int(os.environ.get("GRADFIT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES, derandomize="GRADFIT_FUZZ_EXAMPLES" not in os.environ, deadline=10_000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.large_base_example],
)
# --categorical none: these tables pin what a column that is not a number does without categories
CG = ["--optimizer", "cg", "-q", "--categorical", "none"]
GD = ["--epochs", "5000", "--tol", "1e-12", "-q"]


# -- a table, what was written, and what must happen -------------------------------------


@dataclass
class Table:
    """Columns as written, with the numbers they hold as the oracle reads them.

    ``values[name]`` is a float array (NaN where a cell is not a number) or
    ``None`` for a column that is not numeric at all; ``culprits`` are the
    columns that must make a run fail when used, and ``structural`` a reason
    that every run must fail (a ragged row, a file that is not UTF-8 …).
    """

    names: list
    values: dict
    culprits: set = field(default_factory=set)
    structural: str | None = None
    overflow: set = field(default_factory=set)
    underflow: set = field(default_factory=set)

    def __repr__(self):  # short: hypothesis prints it for a failing example
        rows = len(next(iter(self.values.values()))) if self.values else 0
        return (f"Table({self.names!r}, {rows} rows, culprits={sorted(self.culprits)}, "
                f"overflow={sorted(self.overflow)}, underflow={sorted(self.underflow)}, "
                f"structural={self.structural!r})")


@contextlib.contextmanager
def alarm(seconds):
    """Fail, rather than wait forever, when a run hangs."""
    if not hasattr(signal, "setitimer"):  # Windows: no alarm, runs are still bounded by the sizes
        yield
        return

    def hung(signum, frame):
        raise TimeoutError(f"gradfit ran longer than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(folder):
    """Every file under ``folder``, names and bytes: what a failed run must leave as it was."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                files[os.path.relpath(os.path.join(root, name), folder)] = handle.read()
    return files


def run_gradfit(argv):
    """``gradfit ARGV`` in this process: (exit code, stdout, stderr). Exceptions propagate: a traceback fails."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), alarm(RUN_SECONDS):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def expressible(name, names):
    """Whether ``--target``/``--features`` can name this column: the CLI strips names and splits on commas."""
    stripped = name.strip()
    if not stripped or "," in name:
        return False
    exact = names.count(name)
    near = sum(1 for other in names if other.strip() == stripped)
    return exact == 1 and (near == 1 or name == stripped)


def train(folder, data, targets, features=None, options=CG):
    # --target=NAMES: a name such as "-" must not read as an option
    argv = ["train", data, "--target=" + ",".join(t.strip() for t in targets), "-o", os.path.join(folder, "model.json")]
    if features is not None:
        argv += ["--features=" + ",".join(f.strip() for f in features)]
    return run_gradfit(argv + list(options))


def oracle_fitted(X, Y):
    """Least-squares fitted values of ``Y`` (n, k) on ``[1, X]``, from standardized columns (scale-free)."""
    center = X.mean(axis=0) if X.size else np.zeros(X.shape[1])
    spread = X.std(axis=0) if X.size else np.ones(X.shape[1])
    spread[spread == 0] = 1.0
    design = np.column_stack([np.ones(len(X)), (X - center) / spread])
    solution, *_ = np.linalg.lstsq(design, Y, rcond=None)
    return design @ solution, design


def condition(design):
    """The condition number of a design matrix: infinite with fewer rows than columns."""
    rows, columns = design.shape
    return np.linalg.cond(design) if rows >= columns else math.inf


def check(folder, before, outcome, table, features, targets, *, clean):
    """The rules of the module docstring, for one run; returns the loaded model, or None after an error.

    ``features`` and ``targets`` are the columns the run was meant to use; a
    successful run is checked against the columns its model names.
    """
    code, out, err = outcome
    used = list(features) + list(targets)
    if code != 0:
        message = err.strip()
        assert code in (1, 2), (code, err)
        assert "\n" not in message and "Traceback" not in message, err
        assert message.startswith("gradfit: error: " if code == 1 else "gradfit"), err
        assert snapshot(folder) == before, "a failed run changed or left files in the folder"
        if clean:
            # The one refusal clean data may get: cg on a problem too ill-conditioned for float64.
            assert "ill-conditioned" in message, message
            X = np.column_stack([table.values[f] for f in features])
            _, design = oracle_fitted(X, np.zeros((len(X), 1)))
            assert condition(design) > 1e5, (condition(design), message)
        # When the columns' values are the only thing wrong, the message must name one of the culprits.
        named = all(expressible(name, table.names) for name in used) and len(set(table.names)) == len(table.names)
        blamed = (table.culprits | table.overflow | table.underflow) & set(used)
        if named and blamed and features and len(set(used)) == len(used) and not table.structural:
            assert any(repr(name) in message for name in blamed), (blamed, message)
        return None
    model = gradfit.load(os.path.join(folder, "model.json"))
    features, targets = model.feature_names_, model.target_names_
    for name in features + targets:
        assert table.names.count(name) == 1, f"the model uses {name!r}, which the file does not name once"
    assert not table.structural, ("expected an error", table.structural, out, err)
    trouble = (table.culprits | table.overflow | table.underflow) & set(features + targets)
    assert not trouble, ("expected an error naming one of", trouble, out, err)
    coef = np.atleast_2d(model.coef_)
    assert np.all(np.isfinite(coef)) and np.all(np.isfinite(model.intercept_))
    X = np.column_stack([table.values[f] for f in features])
    Y = np.column_stack([table.values[t] for t in targets])
    fitted = X @ coef.T + np.atleast_1d(model.intercept_)
    expected, _ = oracle_fitted(X, Y)
    # the target's spread, or for a constant target its size: the fit stops once its certificate holds,
    # the intercept within tol (1e-12 here) of its size, so 1e-6 of 1e-5 of it is a margin of 10x
    scale = np.sqrt(np.mean((Y - Y.mean(axis=0)) ** 2, axis=0)) + 1e-5 * np.abs(Y).max(axis=0) + 1e-300
    error = np.sqrt(np.mean((fitted - expected) ** 2, axis=0)) / scale
    # x·coef + intercept itself rounds: features far from zero against their spread cancel digits
    rounding = 64 * np.finfo(float).eps * np.max(np.abs(X) @ np.abs(coef.T) + np.abs(model.intercept_), axis=0)
    assert np.all(error < 1e-6 + rounding / scale), (error, rounding / scale, coef, model.intercept_)
    return model


# -- strategies ---------------------------------------------------------------------------------

# No bare carriage return: csv.writer quotes it only when it is part of the line terminator,
# and unquoted, pyarrow rightly reads it as the end of a line (a different file from the one meant).
NAME_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff\r")
ODD_NAMES = st.sampled_from(["", " ", " a", "a ", "a,b", 'q"uote', "new\nline", "tab\t", "é", "中文", "𝑥", "NA",
                             "nan", "1", "-", "(intercept)", "y_predicted"])


@st.composite
def header_names(draw, count):
    names = []
    for _ in range(count):
        kind = draw(st.sampled_from(["plain", "plain", "plain", "odd", "text", "repeat"]))
        if kind == "plain" or (kind == "repeat" and not names):
            name = f"c{len(names)}"
        elif kind == "odd":
            name = draw(ODD_NAMES)
        elif kind == "text":
            name = draw(st.text(NAME_CHARACTERS, min_size=1, max_size=6))
        else:
            name = draw(st.sampled_from(names))
        names.append(name)
    return names


def spell(value, style):
    """A number as text, in one of several spellings pyarrow and Python both read."""
    if style == "repr":
        return repr(float(value))
    if style == "int" and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if style == "exp":
        return f"{value:.17E}"
    if style == "plus" and value >= 0:
        return "+" + repr(float(value))
    return f"{value:.17g}"


NOT_NUMBERS = st.sampled_from(["x", "true", "2020-01-02", "1_000", "0x1F", "１", "1,5", "--1", "1e", "nan", "NA", "",
                               "N/A", "null", "inf", "-Infinity", "1e400", " ", "é", "12:30"])


@st.composite
def csv_tables(draw):
    """A CSV file's text (before encoding) and its :class:`Table`."""
    wide = draw(st.integers(0, 9)) == 0
    n_columns = 61 if wide else draw(st.integers(1, 6))
    n_rows = 70 if wide else draw(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 12]))
    names = draw(header_names(n_columns))
    values, culprits = {}, set()
    cells = []
    for name in names:
        # Per column, not per cell: a seed and a spelling keep hypothesis's examples small.
        rng = np.random.default_rng(draw(st.integers(0, 2**16), label="seed"))
        if wide:
            column = rng.normal(size=n_rows)
        elif draw(st.booleans(), label="integers"):
            column = rng.integers(-50, 51, size=n_rows).astype(float)
        else:
            column = np.round(rng.uniform(-1e3, 1e3, size=n_rows), 3)
        column = list(column)
        style = draw(st.sampled_from(["repr", "int", "exp", "plus", "g"]), label="spelling")
        texts = [spell(v, style) for v in column]
        if n_rows and draw(st.integers(0, 7)) == 0:  # one bad cell
            row = draw(st.integers(0, n_rows - 1))
            texts[row] = draw(NOT_NUMBERS)
            column[row] = math.nan
            culprits.add(name)
        values.setdefault(name, np.array(column, dtype=float))
        cells.append(texts)
    rows = [list(r) for r in zip(*cells)] if n_rows else []
    handle = io.StringIO()
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    writer = csv.writer(handle, quoting=quoting, lineterminator=newline)
    writer.writerow(names)
    writer.writerows(rows)
    text = handle.getvalue()
    if draw(st.booleans()) and text.endswith(newline):
        text = text[: -len(newline)]  # no newline at the end
    table = Table(names, values, culprits)
    return text, table


@st.composite
def targets_and_features(draw, table, max_targets=2):
    """Targets, and features (``None``: every other column), among the table's columns."""
    names = table.names
    k = draw(st.integers(1, min(max_targets, len(names))))
    targets = list(dict.fromkeys(draw(st.permutations(names))[:k]))
    others = [n for n in names if n not in targets]
    if draw(st.booleans()) and others:
        features = list(dict.fromkeys(draw(st.lists(st.sampled_from(others), min_size=1, max_size=len(others)))))
        return targets, features, features
    return targets, None, others


def is_clean(table, features, targets, n_rows):
    used = features + targets
    return (
        n_rows >= 2 and not table.structural and bool(features)
        and all(expressible(name, table.names) for name in used)
        and not ((table.culprits | table.overflow | table.underflow) & set(used))
        and len(set(used)) == len(used)
    )


def run_case(table, data_name, writer, targets, features, used_features, options=CG):
    """Write the file with ``writer(path)``, train, check; returns the loaded model or None."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, data_name)
        writer(path)
        with open(os.path.join(folder, "model.json"), "wb") as handle:
            handle.write(PREVIOUS_MODEL)
        before = snapshot(folder)
        outcome = train(folder, path, targets, features, options)
        if os.environ.get("GRADFIT_FUZZ_LOG"):  # to see what the examples cover: exit codes and messages
            with open(os.environ["GRADFIT_FUZZ_LOG"], "a") as log:
                log.write(f"{outcome[0]} {outcome[2].strip()[:90]!r}\n")
        n_rows = len(next(iter(table.values.values()))) if table.values else 0
        clean = is_clean(table, used_features, targets, n_rows)
        if clean:
            assert outcome[0] == 0 or "ill-conditioned" in outcome[2], outcome[2]
        if outcome[0] == 0 or clean:
            return check(folder, before, outcome, table, used_features, targets, clean=clean)
        return check(folder, before, outcome, table, used_features, targets, clean=False)


# -- CSV: shapes, names, spellings -------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_csv_shapes_names_and_spellings(data):
    text, table = data.draw(csv_tables(), label="csv")
    targets, features, used = data.draw(targets_and_features(table), label="columns")
    bom = data.draw(st.booleans(), label="byte-order mark")
    encoded = ("\ufeff" if bom else "") + text

    def write(path):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(encoded)

    run_case(table, "data.csv", write, targets, features, used)


# -- CSV: encodings and broken rows ------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_csv_encodings_and_broken_rows(data):
    n_rows = data.draw(st.integers(2, 8), label="rows")
    names = ["a", "b", "y"] if data.draw(st.booleans()) else ["é", "b", "y"]
    rng = np.random.default_rng(data.draw(st.integers(0, 1000), label="seed"))
    values = {name: np.round(rng.normal(size=n_rows) * 10, 3) for name in names}
    rows = [[repr(float(values[name][i])) for name in names] for i in range(n_rows)]
    table = Table(names, values)
    damage = data.draw(st.sampled_from(["none", "latin-1", "utf-16", "utf-16-le", "longer row", "shorter row",
                                        "blank lines", "unused text", "bad cell", "nul byte"]), label="damage")
    encoding = "utf-8"
    row = data.draw(st.integers(0, n_rows - 1), label="row")
    if damage == "latin-1":
        encoding = "latin-1"
        rows[row][1] = "é"  # in a used column
        table.culprits.add("b")
        if names[0] == "é":
            table.structural = "the header is not UTF-8"
    elif damage in ("utf-16", "utf-16-le"):
        encoding = damage
        table.structural = "UTF-16 text"
    elif damage == "longer row":
        rows[row].append("1")
        table.structural = "a row with more fields than the header"
    elif damage == "shorter row":
        rows[row].pop()
        table.structural = "a row with fewer fields than the header"
    elif damage == "blank lines":
        rows.insert(row, [])
    elif damage == "bad cell":
        rows[row][0] = data.draw(NOT_NUMBERS, label="cell")
        table.culprits.add(names[0])
    elif damage == "nul byte":
        rows[row][1] = rows[row][1] + "\0"
        table.culprits.add("b")
    features = None
    if damage == "unused text":
        names.append("note")
        for i, fields in enumerate(rows):
            fields.append(data.draw(st.sampled_from(["x,y", "line\nbreak", 'q"q', "é", ""]), label="note"))
        features = names[:2]
    handle = io.StringIO()
    csv.writer(handle, lineterminator="\n").writerows([names] + rows)

    def write(path):
        with open(path, "wb") as out:
            out.write(handle.getvalue().encode(encoding))

    run_case(table, "data.csv", write, ["y"], features, names[:2])


# -- Parquet: types ---------------------------------------------------------------------------------

NUMERIC_TYPES = {
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float16": pa.float16(), "float32": pa.float32(), "float64": pa.float64(),
    "bool": pa.bool_(), "decimal": pa.decimal128(12, 3), "decimal256": pa.decimal256(40, 3),
    "dictionary": pa.dictionary(pa.int32(), pa.float64()),
}
OTHER_TYPES = ["string", "date", "timestamp", "list", "struct", "binary", "null", "dictionary of strings"]


def arrow_column(kind, numbers):
    """An Arrow array of ``kind`` holding ``numbers`` (small integers, or None for a null)."""
    if kind == "float16":
        return pa.array(np.array([np.nan if v is None else v for v in numbers], dtype=np.float16),
                        mask=np.array([v is None for v in numbers], dtype=bool))
    if kind == "bool":
        return pa.array([None if v is None else bool(v % 2) for v in numbers], pa.bool_())
    if kind.startswith("decimal"):
        return pa.array([None if v is None else decimal.Decimal(v) / 8 for v in numbers], NUMERIC_TYPES[kind])
    if kind == "dictionary":
        return pa.array([None if v is None else float(v) for v in numbers], pa.float64()).dictionary_encode()
    if kind in NUMERIC_TYPES:
        return pa.array(numbers, NUMERIC_TYPES[kind])
    texts = [None if v is None else str(v) for v in numbers]
    # types given, not inferred: an empty list would be inferred as the null type
    return {
        "string": lambda: pa.array(texts, pa.string()),
        "dictionary of strings": lambda: pa.array(texts, pa.string()).dictionary_encode(),
        "binary": lambda: pa.array([None if t is None else t.encode() for t in texts], pa.binary()),
        "date": lambda: pa.array([None if v is None else datetime.date(2020, 1, 1 + v % 28) for v in numbers],
                                 pa.date32()),
        "timestamp": lambda: pa.array([None if v is None else datetime.datetime(2020, 1, 1, v % 24) for v in numbers],
                                      pa.timestamp("us")),
        "list": lambda: pa.array([None if v is None else [float(v)] for v in numbers], pa.list_(pa.float64())),
        "struct": lambda: pa.array([None if v is None else {"v": float(v)} for v in numbers],
                                   pa.struct([("v", pa.float64())])),
        "null": lambda: pa.nulls(len(numbers)),
    }[kind]()


def oracle_value(kind, v):
    if v is None:
        return math.nan
    if kind == "bool":
        return float(v % 2)
    if kind.startswith("decimal"):
        return v / 8
    return float(v)


@FUZZ
@given(data=st.data())
def test_parquet_types(data):
    n_rows = data.draw(st.sampled_from([0, 1, 2, 3, 5, 9]), label="rows")
    n_columns = data.draw(st.integers(2, 6), label="columns")
    names = [f"c{j}" for j in range(n_columns)]
    table = Table(names, {})
    columns = {}
    for name in names:
        numeric = data.draw(st.integers(0, 5), label="numeric?") > 0
        kind = data.draw(st.sampled_from(list(NUMERIC_TYPES) if numeric else OTHER_TYPES), label=name)
        low = 0 if kind.startswith("uint") or kind == "bool" else -100
        numbers = data.draw(st.lists(st.integers(low, 100), min_size=n_rows, max_size=n_rows), label="values")
        if n_rows and data.draw(st.integers(0, 6)) == 0:
            numbers[data.draw(st.integers(0, n_rows - 1))] = None
        if kind == "null":
            numbers = [None] * n_rows
        columns[name] = arrow_column(kind, numbers)
        table.values[name] = np.array([oracle_value(kind, v) for v in numbers], dtype=float)
        if (not numeric and kind != "null") or None in numbers:
            table.culprits.add(name)  # the null type is numeric to pyarrow: its values are missing, if any
    arrow = pa.table(columns)
    targets, features, used = data.draw(targets_and_features(table), label="targets")
    layout = data.draw(st.sampled_from(["file", "row groups", "folder", "folder of mixed types"]), label="layout")

    def write(path):
        if layout.startswith("folder"):
            os.makedirs(path)
            half = n_rows // 2
            second = arrow.slice(half)
            if layout == "folder of mixed types":  # the second file holds the numbers as float64
                second = second.cast(pa.schema([
                    pa.field(f.name, pa.float64()) if f.type in NUMERIC_TYPES.values() else f for f in arrow.schema
                ]))
            pq.write_table(arrow.slice(0, half), os.path.join(path, "part0.parquet"))
            pq.write_table(second, os.path.join(path, "part1.parquet"))
        else:
            pq.write_table(arrow, path, row_group_size=max(1, n_rows // 3) if layout == "row groups" else None)

    run_case(table, "data" if layout.startswith("folder") else "data.parquet", write, targets, features, used)


# -- extreme magnitudes --------------------------------------------------------------------------------

EXPONENTS = [-320, -310, -300, -200, -160, -150, -100, -20, 0, 20, 100, 150, 152, 160, 200, 300, 307]
FLOAT32_EXPONENTS = [-44, -40, -30, -10, 0, 10, 30, 37]


def expected_trouble(values, target=False):
    """``"overflow"``, ``"underflow"`` or None for a float64 column, as gradfit must judge it.

    Overflow: the sum or the centred sum of squares is not finite, or for a
    target the mean of its squares (the cost at zero). Underflow: the values
    differ (beyond rounding of their size) but their centred sum of squares is
    below what float64 keeps digits for.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        total = np.add.reduce(values[:, None], axis=0)[0]  # summed as gradfit sums a block's columns
        mean = total / len(values)
        centred = values - mean
        scatter = np.sum(centred * centred)
        second_moment = mean * mean + scatter / len(values)
    if not (np.isfinite(total) and np.isfinite(scatter)) or (target and not np.isfinite(second_moment)):
        return "overflow"
    spread = np.max(np.abs(centred))
    if scatter < np.finfo(float).tiny / np.finfo(float).eps and spread > 1e-12 * abs(mean):
        return "underflow"
    return None


@FUZZ
@given(data=st.data())
def test_extreme_magnitudes(data):
    n_rows = data.draw(st.integers(3, 9), label="rows")
    fmt = data.draw(st.sampled_from(["csv", "float64", "float32"]), label="format")
    names = ["a", "b", "y"]
    rng = np.random.default_rng(data.draw(st.integers(0, 10**6), label="seed"))
    table = Table(names, {})
    columns = {}
    for name in names:
        exponent = data.draw(st.sampled_from(FLOAT32_EXPONENTS if fmt == "float32" else EXPONENTS), label=name)
        offset = data.draw(st.sampled_from([0.0, 1.0, 1e10]), label="offset") * 10.0 ** exponent
        values = (offset + rng.integers(-9, 10, size=n_rows) * 10.0 ** exponent)
        if fmt == "float32":
            with np.errstate(over="ignore"):
                values = values.astype(np.float32)
            assume(np.all(np.isfinite(values)))
        text_values = values.astype(float)
        columns[name] = values
        table.values[name] = text_values
        trouble = expected_trouble(text_values, target=name == "y")
        if trouble == "overflow":
            table.overflow.add(name)
        elif trouble == "underflow":
            table.underflow.add(name)

    def write(path):
        if fmt == "csv":
            with open(path, "w") as handle:
                handle.write("a,b,y\n" + "".join(
                    f"{repr(float(columns['a'][i]))},{repr(float(columns['b'][i]))},{repr(float(columns['y'][i]))}\n"
                    for i in range(n_rows)))
        else:
            pq.write_table(pa.table({name: pa.array(columns[name]) for name in names}), path)

    model = run_case(table, "data.csv" if fmt == "csv" else "data.parquet", write, ["y"], None, ["a", "b"], CG)
    # The pass engine sums X_bᵀr on the raw features: where those products overflow it is
    # known to fail (see test_products_that_overflow_on_the_pass_engine); elsewhere the same rules hold.
    products = n_rows * max(float(np.max(np.abs(table.values[n]))) for n in ("a", "b")) * float(
        np.max(np.abs(table.values["y"])))
    if model is not None and products < 1e300:
        run_case(table, "data.csv" if fmt == "csv" else "data.parquet", write, ["y"], None, ["a", "b"],
                 ["--engine", "pass"] + CG)


@pytest.mark.parametrize("first, second, values, trouble", [
    (pa.float32(), pa.float64(), [1e300, 2.0], "too large"),  # would be cast to float32: inf
    (pa.float32(), pa.float64(), [1e30, 2.0], None),
    (pa.int8(), pa.int64(), [1000, -2000], None),  # would not fit int8
    (pa.uint8(), pa.float64(), [-1.5, 2.25], None),
    (pa.float16(), pa.decimal128(10, 2), [decimal.Decimal("70000.25"), decimal.Decimal("1.5")], None),
])
def test_a_folder_whose_files_disagree_on_a_columns_type(tmp_path, first, second, values, trouble):
    """The first file's type does not decide: each file's numbers arrive as they are, or an overflow is named."""
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(pa.table({"a": pa.array([1, 2, 3], first), "y": pa.array([1.0, 2.0, 4.0])}), folder / "p0.parquet")
    pq.write_table(pa.table({"a": pa.array(values, second), "y": pa.array([1.0, 2.5])}), folder / "p1.parquet")
    table = Table(["a", "y"], {"a": np.array([1, 2, 3] + [float(v) for v in values]),
                               "y": np.array([1.0, 2.0, 4.0, 1.0, 2.5])}, overflow={"a"} if trouble else set())
    (tmp_path / "model.json").write_bytes(PREVIOUS_MODEL)
    before = snapshot(tmp_path)
    outcome = train(str(tmp_path), str(folder), ["y"])
    assert (outcome[0] == 0) == (trouble is None), outcome
    check(str(tmp_path), before, outcome, table, ["a"], ["y"], clean=trouble is None)
    if trouble:
        assert trouble in outcome[2] and "'a'" in outcome[2]


# -- constant and duplicated columns --------------------------------------------------------------------


@settings(FUZZ, max_examples=max(30, EXAMPLES // 2))
@given(data=st.data())
def test_constant_and_duplicated_columns(data):
    """Coefficients are not identifiable; the fitted values are, and must be lstsq's (gd, both engines)."""
    n_rows = data.draw(st.integers(6, 14), label="rows")
    rng = np.random.default_rng(data.draw(st.integers(0, 10**6), label="seed"))
    base = rng.normal(size=(n_rows, 2)) * [1.0, 30.0] + [0.0, 5.0]
    _, design = oracle_fitted(base, np.zeros((n_rows, 1)))
    assume(condition(design) < 20)
    columns = {"x0": base[:, 0], "x1": base[:, 1]}
    for j in range(data.draw(st.integers(1, 3), label="extra columns")):
        kind = data.draw(st.sampled_from(["constant", "zero", "copy", "scaled copy", "negated copy"]), label="kind")
        source = columns[data.draw(st.sampled_from(["x0", "x1"]), label="of")]
        columns[f"e{j}"] = {
            "constant": lambda: np.full(n_rows, data.draw(st.sampled_from([1.0, -3.5, 1e6, 1e-300, -1e150]))),
            "zero": lambda: np.zeros(n_rows),
            "copy": lambda: source.copy(),
            "scaled copy": lambda: source * 2.0,
            "negated copy": lambda: -source,
        }[kind]()
    target = base @ rng.normal(size=2) + 0.1 * rng.normal(size=n_rows)
    if data.draw(st.integers(0, 5)) == 0:
        target = np.full(n_rows, 4.25)  # a constant target: every coefficient 0
    columns["y"] = target
    names = list(columns)
    table = Table(names, columns)
    fmt = data.draw(st.sampled_from(["csv", "parquet"]), label="format")

    def write(path):
        if fmt == "csv":
            with open(path, "w") as handle:
                handle.write(",".join(names) + "\n")
                for i in range(n_rows):
                    handle.write(",".join(repr(float(columns[n][i])) for n in names) + "\n")
        else:
            pq.write_table(pa.table({n: pa.array(columns[n]) for n in names}), path)

    features = names[:-1]
    # The pass engine is known to fail on a constant column far from zero (see
    # test_a_constant_column_near_the_float64_limit_on_the_pass_engine): checked up to 1e6.
    far = max(float(np.max(np.abs(columns[n]))) for n in features) > 1e6
    for engine in ("statistics",) if far else ("statistics", "pass"):
        model = run_case(table, f"data.{fmt}", write, ["y"], None, features, GD + ["--engine", engine])
        assert model is not None, "constant and duplicated columns must not stop a gd fit"


# -- a few runs as a user makes them: the console script in a subprocess --------------------------------

SUBPROCESS_CASES = {
    "clean, CRLF and a BOM": ("\ufeffa,b,y\r\n1,2,3\r\n2,1,4\r\n3,5,2\r\n4,4,7\r\n", 0, None),
    "a text cell": ("a,b,y\n1,2,3\n2,x,4\n3,5,2\n", 1, "'b'"),
    "squares overflow": ("a,b,y\n1,2e300,3\n2,-1e300,4\n3,5,2\n", 1, "'b'"),
    "squares underflow": ("a,b,y\n1,2e-170,3\n2,-1e-170,4\n3,5e-170,2\n", 1, "'b'"),
    "UTF-16": ("a,b,y\n1,2,3\n2,1,4\n3,5,2\n".encode("utf-16"), 1, "UTF-16"),
}


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_console_script_in_a_subprocess(tmp_path, case):
    content, code, named = SUBPROCESS_CASES[case]
    data = tmp_path / "data.csv"
    data.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    (tmp_path / "model.json").write_bytes(PREVIOUS_MODEL)
    before = snapshot(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "gradfit", "train", str(data), "--target", "y", "-o", str(tmp_path / "model.json"),
         "--optimizer", "cg", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == code, result.stderr
    if code == 0:
        model = gradfit.load(tmp_path / "model.json")
        assert np.all(np.isfinite(model.coef_))
    else:
        message = result.stderr.strip()
        assert "\n" not in message and message.startswith("gradfit: error: ") and named in message, message
        assert snapshot(tmp_path) == before


# -- known engine limits, reported to the engines' owner (strict: a fix turns these into failures to remove) --


# Xᵀg − center·Σg would cancel here; the pass engine centres its blocks instead.
@pytest.mark.parametrize("constant", [1e150, 1e300])
def test_a_constant_column_near_the_float64_limit_on_the_pass_engine(constant):
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(6, 2)), np.full(6, constant)])
    y = X[:, :2] @ [1.0, 2.0] + 0.1
    model = gradfit.GDRegressor(engine="pass", epochs=5000, tol=1e-12).fit(X, y)
    np.testing.assert_allclose(model.predict(X), y, rtol=1e-6)


# X_bᵀr on raw features near 1e160 would overflow; centred blocks keep it finite.
def test_products_that_overflow_on_the_pass_engine():
    X = np.array([[7e-100, 9.999999996e159], [3e-100, 9.999999996e159], [0.0, 9.999999991e159]])
    y = np.array([-8e150, -9e150, -6e150])
    model = gradfit.GDRegressor(engine="pass", optimizer="cg").fit(X, y)
    expected, _ = oracle_fitted(X, y[:, None])
    np.testing.assert_allclose(model.predict(X), expected[:, 0], rtol=1e-6)
