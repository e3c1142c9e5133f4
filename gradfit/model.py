"""The model file: a JSON document people can read, written atomically.

Layout (``format_version`` 1)::

    {
      "format": "gradfit-model",
      "format_version": 1,
      "gradfit_version": "0.1.0",
      "feature_names": ["x0", ...],          # d names
      "target_names": ["y"],                 # k names
      "coef": [[...d numbers...], ...],      # k rows, in the data's own units
      "intercept": [...k numbers...],
      "standardization": {"center": [...d], "scale": [...d]},
      "settings": {...the estimator's parameters...},
      "training": {"n_iter", "converged", "stop_reason", "message", "final_cost",
                   "learning_rate", "engine", "optimizer", "n_samples", "loss_curve"},
                                             # the fit's record (gradfit.result); "message", its
                                             # sentence, is optional: files written before it
                                             # was added load as they did
      "diagnostics": {...} or null,          # GDRegressor.fit_report_ (gradfit.diagnostics)
      "statistics": {...} or null,           # GDRegressor.summary_ (gradfit.summary)
      "encoding": {"columns": [...], ...}    # only with categorical columns: the raw columns and
                                             # their levels (gradfit.sources.encoding)
      "formula": {"formula": "y ~ ...", "categories": [...]}  # only for a formula: its text and the
                                             # levels of its categorical factors (gradfit.formula)
    }

Loading validates every field's type and shape against the schema tables
below (:data:`TRAINING`, :data:`DIAGNOSTICS`, :data:`STATISTICS`); a damaged,
foreign, hostile or newer file is a one-line :class:`~gradfit.errors.ModelFileError`.
Limits hold before anything is allocated for the file's content: at most
:data:`MAX_BYTES` bytes and :data:`MAX_VALUES` values, nested at most
:data:`MAX_DEPTH` deep; ``NaN``/``Infinity`` literals are refused. Unknown keys
are ignored (they are parsed, within the limits, but never used). Nothing in a
model file is ever executed: no pickle, no eval.
"""

from __future__ import annotations

import collections
import json
import math
import os

import numpy as np

from . import __version__
from .errors import ModelFileError
from .files_io import _is_number, _show, atomic_write_text, load_json
from .parameters import DEFAULTS
from .parameters import check as check_settings
from .scaling import Scaling
from .summary import PER_COEFFICIENT, PER_OUTPUT, plain, unplain

FORMAT = "gradfit-model"
FORMAT_VERSION = 1
#: model files larger than this are refused before parsing
MAX_BYTES = 256 * 1024 * 1024


def predict(X, coef, intercept, codes=None, layout=None):
    """The linear model's predictions: ``X @ coefᵀ + intercept``, the only place it is written.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Or, with ``codes``, the features other than one categorical column's
        dummies: shape (n_samples, ``layout["n_dense"]``).
    coef : array of shape (n_outputs, n_features) or (n_features,)
        In the data's own units (``GDRegressor.coef_``), all ``n_features``.
    intercept : array of shape (n_outputs,) or float
    codes : array of shape (n_samples,), int, optional
        A categorical column kept as level codes
        (:meth:`gradfit.sources.encoding.TableEncoder.encode_blocks`): its
        dummies' term ``Σ_l coef_l 1{code = l}`` is the gathered ``coef_code``
        (zero for the reference level and for ``-1``, an unseen level
        ignored; NaN for ``-2``, a missing value), never a dense one-hot block.
    layout : dict, optional
        With ``codes``: :meth:`~gradfit.sources.encoding.TableEncoder.block_layout`
        (``dense_index``, ``level_index``, ``reference``, ``n_levels``).

    Returns
    -------
    array of shape (n_samples, n_outputs), float64
        One column per output, also for a single output (callers ravel it).
        Values and coefficients near float64's limits give ``inf``, not a
        warning: callers name the row.
    """
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    bias = np.atleast_1d(np.asarray(intercept, dtype=np.float64))
    with np.errstate(over="ignore", invalid="ignore"):
        if codes is None:
            return np.asarray(X, dtype=np.float64) @ coef.T + bias
        # each level's coefficient, the reference's 0, then 0 for "unseen" (-1) and NaN for "missing" (-2)
        n_levels, reference = layout["n_levels"], layout["reference"]
        by_level = np.zeros((n_levels + 2, coef.shape[0]))
        by_level[np.delete(np.arange(n_levels), reference)] = coef[:, layout["level_index"]].T
        by_level[n_levels + 1] = np.nan
        codes = np.asarray(codes, dtype=np.intp)
        gathered = by_level[np.where(codes < 0, n_levels - 1 - codes, codes)]  # -1 -> L, -2 -> L + 1
        return np.asarray(X, dtype=np.float64) @ coef[:, layout["dense_index"]].T + gathered + bias


def _number(value):
    """A float for JSON: non-finite numbers become strings so the file stays valid JSON."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def to_document(estimator):
    """The JSON-ready dict of a fitted :class:`~gradfit.GDRegressor`."""
    coef = np.atleast_2d(estimator.coef_)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gradfit_version": __version__,
        "feature_names": list(estimator.feature_names_),
        "target_names": list(estimator.target_names_),
        "coef": [[float(v) for v in row] for row in coef],
        "intercept": [float(v) for v in np.atleast_1d(estimator.intercept_)],
        "standardization": {
            "center": [float(v) for v in estimator.scaling_.center],
            "scale": [float(v) for v in estimator.scaling_.scale],
        },
        # a cross-validated model records the settings of its final fit (the chosen alpha)
        "settings": getattr(estimator, "_final_settings_", None) or estimator.get_params(deep=False),
        "training": {
            "n_iter": int(estimator.n_iter_),
            "converged": bool(estimator.converged_),
            "stop_reason": estimator.stop_reason_,
            **({"message": estimator.stop_message_} if getattr(estimator, "stop_message_", None) is not None else {}),
            "final_cost": _number(estimator.final_cost_),
            "learning_rate": None if estimator.learning_rate_ is None else _number(estimator.learning_rate_),
            "engine": estimator.engine_,
            "optimizer": getattr(estimator, "optimizer_", estimator.optimizer),
            "n_samples": int(estimator.n_samples_),
            "loss_curve": [_number(v) for v in estimator.loss_curve_],
        },
        # Reports read from the fit, not needed to predict: written as they are,
        # with non-finite numbers spelled as strings like the costs above.
        "diagnostics": plain(getattr(estimator, "fit_report_", None)),
        "statistics": plain(getattr(estimator, "summary_", None)),
        # GDRegressorCV.cv_report_ (gradfit.estimator_cv); absent for other models
        **({"cross_validation": plain(estimator.cv_report_)} if hasattr(estimator, "cv_report_") else {}),
        **_encoding_entry(estimator),
    }


def _encoding_entry(estimator):
    """``{"encoding": ...}`` for a model with categorical columns (their levels), else nothing."""
    encoder = getattr(estimator, "encoder_", None)
    design = getattr(estimator, "design_", None)
    entry = {} if encoder is None else {"encoding": encoder.to_json()}
    if design is not None:
        entry["formula"] = design.to_json()
    return entry


def json_setting(value):
    """A setting as JSON can hold it.

    NumPy scalars become Python numbers; a random generator object (a
    ``random_state`` that is not an int) cannot be written and is recorded as
    ``null``: it only seeds minibatch shuffling, never predictions.
    """
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)  # categorical=[...]
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (str, int, float, bool, type(None)))
                                       for k, v in value.items()):
        return dict(value)  # categorical={column: reference}
    return None


def save(estimator, path):
    """Write ``estimator``'s model file to ``path`` atomically.

    The whole document is serialized before the file is opened, so a value
    that cannot be written leaves ``path`` untouched. A document beyond
    :data:`MAX_BYTES` indented (a categorical column of about 10⁶ levels) is
    written without indentation; one that :func:`read_document` would still
    refuse (:data:`MAX_BYTES`, :data:`MAX_VALUES`) is a :class:`ModelFileError`,
    never a file that cannot be read back.
    """
    document = to_document(estimator)
    _check_writable(document, path)
    document["settings"] = {name: json_setting(value) for name, value in document["settings"].items()}
    text = json.dumps(document, indent=2, allow_nan=False)
    if len(text) > MAX_BYTES:
        # a categorical column of ~10⁶ levels: ~290 bytes a level indented, ~200 without (ASCII: chars are bytes)
        text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    values = text.count(",") + 1  # as read_document counts them
    if len(text) > MAX_BYTES or values > MAX_VALUES:
        raise ModelFileError(
            f"cannot write model file {os.fspath(path)!r}: {len(document['feature_names'])} features make "
            f"{len(text)} bytes and {values} values, more than the {MAX_BYTES} bytes and {MAX_VALUES} values "
            "a model file may hold; leave out the column of the most levels (--exclude)")
    atomic_write_text(path, text + "\n")


def _check_writable(document, path):
    """Refuse a model whose numbers are not finite: it would predict nothing, and JSON cannot hold it."""
    features, targets = document["feature_names"], document["target_names"]
    parts = {
        "coefficient": np.asarray(document["coef"], dtype=float),
        "intercept": np.asarray(document["intercept"], dtype=float),
        "standardization center": np.asarray(document["standardization"]["center"], dtype=float),
        "standardization scale": np.asarray(document["standardization"]["scale"], dtype=float),
    }
    for what, values in parts.items():
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            index = tuple(bad[0])
            where = (f"of {features[index[1]]!r} for {targets[index[0]]!r}" if what == "coefficient"
                     else f"for {targets[index[0]]!r}" if what == "intercept" else f"of {features[index[0]]!r}")
            raise ModelFileError(
                f"cannot write model file {os.fspath(path)!r}: the {what} {where} is {values[index]}; "
                "the data's scale is beyond float64: rescale that column"
            )


# -- reading ------------------------------------------------------------------
#
# A model file may come from anyone, so loading trusts nothing: the bytes are
# size-checked before they are parsed, parsed by the standard library's JSON
# reader alone (no pickle, no eval: nothing in the file is ever run), and the
# result is checked against the schema below before any of it is used.
# Unknown keys are ignored, at every level: a later gradfit may add optional
# fields without a new format version (one that changes the meaning of a field
# raises ``format_version``, which is refused). They are still parsed, so the
# limits below hold for them too.

#: the spellings :func:`_number` writes for non-finite values in the training record
NON_FINITE = frozenset({"inf", "-inf", "nan"})
#: most JSON values (numbers, strings, …) a model file may hold, counted before
#: parsing: a file of ``0,0,0,…`` within :data:`MAX_BYTES` would otherwise become
#: over a billion objects. A model of 4 million features fits.
MAX_VALUES = 1 << 24
#: deepest nesting of lists and objects; gradfit writes at most 4 levels
MAX_DEPTH = 32

# The schema of the records, one table each, checked by :func:`_check_record`.
# A kind is one of :data:`KINDS`; a trailing "?" also allows null. Fields are
# optional unless listed as required; "needs" lists fields that must come along
# with another (what ``gradfit inspect`` prints together).

TRAINING = {
    "fields": {
        "n_iter": "count", "n_samples": "count", "converged": "flag", "stop_reason": "text", "message": "text",
        "engine": "text", "final_cost": "real", "learning_rate": "number?", "loss_curve": "reals",
        "optimizer": "text",
    },
}

DIAGNOSTICS = {
    "fields": {
        "message": "text", "final_cost": "real", "optimizer": "text", "converged": "flag",
        "stop_reason": "text", "n_iter": "count", "max_epochs": "count", "tol": "number?",
        "engine": "text", "loss": "text", "penalty": "text?", "initial_cost": "real?",
        "learning_rate": "real?", "learning_rate_auto": "flag", "standardized": "flag",
        "max_stable_learning_rate": "real?", "notes": "texts", "curvature": "real?", "rank": "count",
        "n_params": "count", "condition_number": "real?", "condition_number_standardized": "real?",
        "condition_number_raw": "real?", "optimal_cost": "real?", "gap": "real?", "relative_gap": "real?",
        "exact_fit": "flag", "estimate_step": "real", "estimate_tol": "real", "estimate_target_gap": "real",
        "contraction_per_epoch": "real", "epochs_to_tol": "count?", "statistics": "text",
    },
    "required": ("message", "final_cost", "optimizer"),
    "needs": {
        "optimal_cost": ("gap",),
        "epochs_to_tol": ("estimate_target_gap", "estimate_tol", "estimate_step", "contraction_per_epoch"),
    },
}

#: per-coefficient and per-output fields: their shapes are checked by :func:`_check_statistics`
STATISTICS = {
    "fields": {
        "names": "texts", "n_observations": "count", "df_model": "integer", "df_resid": "integer",
        "confidence": "number", "evaluated_at": "text", "note": "text",
    },
    "required": ("names", "n_observations", "df_resid"),
}

KINDS = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "texts": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a non-negative integer"),
    "number": (lambda v: _is_number(v), "a finite number"),
    "real": (lambda v: _is_real(v), "a number"),
    "reals": (lambda v: isinstance(v, list) and all(map(_is_real, v)), "a list of numbers"),
}


def _is_real(value):
    """What :func:`gradfit.summary.plain` writes for a float: a finite number, or "inf", "-inf", "nan"."""
    return _is_number(value) or (isinstance(value, str) and value in NON_FINITE)


def _fail(path, why):
    raise ModelFileError(f"model file {str(path)!r}: {why}")


def _numbers(path, value, name, length):
    """``value`` as a float array of ``length`` finite numbers, else a :class:`ModelFileError`."""
    if not isinstance(value, list) or len(value) != length:
        _fail(path, f"{name!r} must be a list of {length} numbers")
    for index, item in enumerate(value):
        if not _is_number(item):
            _fail(path, f"{name}[{index}] is {_show(item)}, not a finite number")
    return np.asarray(value, dtype=float)


def _names(path, document, key):
    names = document.get(key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        _fail(path, f"{key!r} must be a non-empty list of strings")
    repeated = [name for name, count in collections.Counter(names).items() if count > 1]
    if repeated:
        _fail(path, f"{key!r} names {repeated[0]!r} more than once")
    return names


def _check_version(path, document):
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        _fail(path, f"not a gradfit model (no \"format\": \"{FORMAT}\")")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        _fail(path, "'format_version' must be an integer")
    if version > FORMAT_VERSION:
        _fail(path, f"format version {version} is newer than this gradfit reads ({FORMAT_VERSION}); upgrade gradfit")
    if version < 1:
        _fail(path, f"format version {version} is not valid")


def _check_record(path, record, schema, where):
    """Check ``record`` (a dict) against a schema table (:data:`TRAINING`, :data:`DIAGNOSTICS` …)."""
    if not isinstance(record, dict):
        _fail(path, f"{where!r} must be an object, not {_show(record)}")
    for key in schema.get("required", ()):
        if key not in record:
            _fail(path, f"'{where}.{key}' is missing")
    for key, kind in schema["fields"].items():
        if key not in record or (kind.endswith("?") and record[key] is None):
            continue
        valid, what = KINDS[kind.rstrip("?")]
        if not valid(record[key]):
            _fail(path, f"'{where}.{key}' must be {what}{' or null' if kind.endswith('?') else ''}, "
                        f"not {_show(record[key])}")
    for key, companions in schema.get("needs", {}).items():
        if record.get(key) is not None:
            for companion in companions:
                if companion not in record:
                    _fail(path, f"'{where}.{companion}' is missing (it comes with '{where}.{key}')")


def _check_statistics(path, statistics, d, k):
    """The regression statistics: the record, then the shape of every per-coefficient and per-output field."""
    _check_record(path, statistics, STATISTICS, "statistics")
    p = len(statistics["names"])
    if p not in (d, d + 1):
        _fail(path, f"'statistics.names' must name {d} or {d + 1} coefficients, not {p}")
    real = _is_real
    for key in PER_COEFFICIENT + PER_OUTPUT:
        value = statistics.get(key)
        if value is None:
            _fail(path, f"'statistics.{key}' is missing")
        width = p if key in PER_COEFFICIENT else None
        rows = [value] if k == 1 else value if isinstance(value, list) and len(value) == k else None
        fine = rows is not None and all(
            real(row) if width is None else isinstance(row, list) and len(row) == width and all(map(real, row))
            for row in rows
        )
        if not fine:
            shape = ("a number" if width is None else f"a list of {width} numbers") if k == 1 else (
                f"a list of {k} numbers" if width is None else f"{k} lists of {width} numbers")
            _fail(path, f"'statistics.{key}' must be {shape}, not {_show(value)}")


def read_document(path):
    """Read and validate a model file; returns the document (dict).

    Every field the model needs, and every field ``gradfit inspect`` prints,
    is checked for type and shape against the schema above; the arrays are
    added as ``_coef`` (k, d), ``_intercept`` (k,), ``_center`` and ``_scale`` (d,).

    Raises
    ------
    ModelFileError
        One line naming the file and what is wrong with it.
    """
    path = os.fspath(path)
    document = load_json(path, what="model file", max_bytes=MAX_BYTES, max_values=MAX_VALUES,
                         max_depth=MAX_DEPTH, error=ModelFileError)
    _check_version(path, document)
    if not isinstance(document.get("gradfit_version", ""), str):
        _fail(path, f"'gradfit_version' must be a string, not {_show(document['gradfit_version'])}")
    features = _names(path, document, "feature_names")
    targets = _names(path, document, "target_names")
    d, k = len(features), len(targets)
    coef = document.get("coef")
    if not isinstance(coef, list) or len(coef) != k:
        rows = f"{k} row{'s' if k != 1 else ''}"
        _fail(path, f"'coef' must be a list of {rows} of {d} numbers (one row per target)")
    document["_coef"] = np.vstack([_numbers(path, row, f"coef[{j}]", d) for j, row in enumerate(coef)])
    document["_intercept"] = _numbers(path, document.get("intercept"), "intercept", k)
    standardization = document.get("standardization")
    if not isinstance(standardization, dict):
        _fail(path, "'standardization' must be an object with 'center' and 'scale'")
    document["_center"] = _numbers(path, standardization.get("center"), "standardization.center", d)
    document["_scale"] = _numbers(path, standardization.get("scale"), "standardization.scale", d)
    if not np.all(document["_scale"] > 0):
        _fail(path, "'standardization.scale' must hold positive numbers only")
    if not isinstance(document.get("settings"), dict):
        _fail(path, "'settings' must be an object")
    _check_record(path, document.get("training"), TRAINING, "training")
    if document.get("diagnostics") is not None:
        _check_record(path, document["diagnostics"], DIAGNOSTICS, "diagnostics")
    if document.get("statistics") is not None:
        _check_statistics(path, document["statistics"], d, k)
    document["_encoder"] = None
    if document.get("encoding") is not None:
        from .sources.encoding import TableEncoder

        encoder = TableEncoder.from_json(document["encoding"], lambda why: _fail(path, why))
        if encoder.feature_names != features:
            _fail(path, "'encoding' does not give the model's 'feature_names'")
        document["_encoder"] = encoder
    document["_design"] = None
    if document.get("formula") is not None:
        from .formula import FormulaDesign

        document["_design"] = FormulaDesign.from_json(document["formula"], lambda why: _fail(path, why))
    return document


class LinearModel:
    """The fitted linear model of a model file: its names, coefficients and records.

    What predicting and ``gradfit inspect`` need, without scikit-learn (the
    command line's ``predict``, ``evaluate`` and ``inspect`` use it, and
    :func:`gradfit.load` builds a :class:`~gradfit.GDRegressor` from it). The
    attributes are named as on the estimator.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,), or (n_outputs, n_features) for several targets
        In the data's own units.
    intercept_ : float, or ndarray of shape (n_outputs,)
    feature_names_, target_names_ : list of str
    scaling_ : Scaling
        The standardization training ran in (``center``, ``scale`` of shape (n_features,)).
    encoder_ : TableEncoder or None
        The categorical columns' levels (:mod:`gradfit.sources.encoding`).
    design_ : FormulaDesign or None
        The formula (:mod:`gradfit.formula`).
    settings : dict
        The estimator's parameters as written, checked by :func:`gradfit.parameters.check`.
    missing, handle_unknown : str
        The settings that decide how data are read to predict.
    fit_report_, summary_ : dict or None
        The diagnostics and the regression statistics, as ``GDRegressor`` holds them.
    document : dict
        The whole validated document (:func:`read_document`).
    """

    def __init__(self, document):
        coef, intercept = document["_coef"], document["_intercept"]
        single = coef.shape[0] == 1
        self.document = document
        self.coef_ = coef[0] if single else coef
        self.intercept_ = float(intercept[0]) if single else intercept
        self.feature_names_ = document["feature_names"]
        self.target_names_ = document["target_names"]
        self.scaling_ = Scaling(document["_center"], document["_scale"])
        self.encoder_ = document["_encoder"]
        self.design_ = document["_design"]
        self.settings = document["settings"]
        self.missing = self.settings.get("missing", DEFAULTS["missing"])
        self.handle_unknown = self.settings.get("handle_unknown", DEFAULTS["handle_unknown"])
        self.fit_report_ = unplain(document.get("diagnostics"))
        self.summary_ = unplain(document.get("statistics"))

    def predict(self, X):
        """:func:`predict` on an encoded 2-D ``X`` of shape (n_samples, n_features): shape (n_samples, n_outputs)."""
        return predict(X, self.coef_, self.intercept_)


def load(path):
    """Read, validate and return the :class:`LinearModel` of a model file.

    Raises
    ------
    ModelFileError
        One line naming the file and what is wrong with it, a damaged setting included.
    """
    document = read_document(path)
    try:
        check_settings(document["settings"])
    except ValueError as exc:
        raise ModelFileError(f"model file {os.fspath(path)!r}: in 'settings': {exc}") from None
    return LinearModel(document)
