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
      "training": {"n_iter", "converged", "stop_reason", "final_cost",
                   "learning_rate", "engine", "n_samples", "loss_curve"}
    }

Loading validates every field's type and shape (a damaged, foreign or newer
file is a :class:`~gradfit.errors.ModelFileError`); nothing in a model file is
ever executed. No pickle.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from .errors import ModelFileError

FORMAT = "gradfit-model"
FORMAT_VERSION = 1
#: model files larger than this are refused before parsing
MAX_BYTES = 256 * 1024 * 1024


def _number(value):
    """A float for JSON: non-finite numbers become strings so the file stays valid JSON."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part.

    The text goes to a temporary file in the same folder, is flushed to disk,
    then renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".gradfit-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def to_document(estimator):
    """The JSON-ready dict of a fitted :class:`~gradfit.GDRegressor`."""
    from . import __version__

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
        "settings": estimator.get_params(deep=False),
        "training": {
            "n_iter": int(estimator.n_iter_),
            "converged": bool(estimator.converged_),
            "stop_reason": estimator.stop_reason_,
            "final_cost": _number(estimator.final_cost_),
            "learning_rate": None if estimator.learning_rate_ is None else _number(estimator.learning_rate_),
            "engine": estimator.engine_,
            "n_samples": int(estimator.n_samples_),
            "loss_curve": [_number(v) for v in estimator.loss_curve_],
        },
    }


def save(estimator, path):
    """Write ``estimator``'s model file to ``path`` atomically."""
    text = json.dumps(to_document(estimator), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _fail(path, why):
    raise ModelFileError(f"model file {str(path)!r}: {why}")


def _list_of_numbers(path, document, key, length, where=None):
    value = document
    for part in (where or []) + [key]:
        value = value.get(part) if isinstance(value, dict) else None
    name = ".".join((where or []) + [key])
    if not isinstance(value, list) or len(value) != length:
        _fail(path, f"{name!r} must be a list of {length} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        _fail(path, f"{name!r} must hold finite numbers only")
    return np.asarray(value, dtype=float)


def read_document(path):
    """Read and validate a model file; returns the document (dict)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            _fail(path, f"{size} bytes is larger than the {MAX_BYTES}-byte limit for model files")
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise ModelFileError(f"model file {path!r} not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model file {path!r} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ModelFileError(f"model file {path!r} is nested too deeply") from None
    except OSError as exc:
        raise ModelFileError(f"model file {path!r} cannot be read ({exc.strerror})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        _fail(path, f"not a gradfit model (no \"format\": \"{FORMAT}\")")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        _fail(path, "'format_version' must be an integer")
    if version > FORMAT_VERSION:
        _fail(path, f"format version {version} is newer than this gradfit reads ({FORMAT_VERSION}); upgrade gradfit")
    if version < 1:
        _fail(path, f"format version {version} is not valid")
    features = document.get("feature_names")
    targets = document.get("target_names")
    for key, names in (("feature_names", features), ("target_names", targets)):
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            _fail(path, f"{key!r} must be a non-empty list of strings")
    d, k = len(features), len(targets)
    coef = document.get("coef")
    if not isinstance(coef, list) or len(coef) != k:
        _fail(path, f"'coef' must be a list of {k} rows of {d} numbers")
    rows = [_list_of_numbers(path, {"row": row}, "row", d) for row in coef]
    document["_coef"] = np.vstack(rows)
    document["_intercept"] = _list_of_numbers(path, document, "intercept", k)
    document["_center"] = _list_of_numbers(path, document, "center", d, ["standardization"])
    document["_scale"] = _list_of_numbers(path, document, "scale", d, ["standardization"])
    if not isinstance(document.get("settings"), dict) or not isinstance(document.get("training"), dict):
        _fail(path, "'settings' and 'training' must be objects")
    return document
