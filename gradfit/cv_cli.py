"""``gradfit train --alpha cv``: the command line's cross-validation options and lines.

Kept out of :mod:`gradfit.cli` (which only calls in here): parsing ``--alpha``
(a number or ``cv``), ``--l1-ratio`` (one or several), ``--folds``,
``--alphas`` and ``--selection``; building the :class:`~gradfit.GDRegressorCV`;
and the lines ``train`` and ``inspect`` print about the choice.
"""

from __future__ import annotations

import argparse
import math

from . import registry


def error_label(record, short=False):
    """What the CV error of ``record`` (``cv_report_``, a model file's ``cross_validation``) is called.

    From its loss's entry in the table (``short_label``, ``cost_label``); a
    record without ``loss`` is the squared error's.
    """
    name = record.get("loss") or "squared_error"
    part = registry.LOSSES.get(name)
    labels = () if part is None else (part.loss_class.short_label if short else None, part.loss_class.cost_label)
    return next((label for label in labels if label), f"{name} loss")


#: the flags that only mean something with ``--alpha cv``
CV_FLAGS = {"folds": "--folds", "alphas": "--alphas", "selection": "--selection"}


def alpha_value(text):
    """``--alpha``: a non-negative number, or ``cv`` to choose it by cross-validation."""
    if text.strip().lower() == "cv":
        return "cv"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a non-negative number or 'cv'")
    return value


def _numbers(text):
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number or comma-separated numbers")
    return values


def l1_ratio_value(text):
    """``--l1-ratio``: one number in [0, 1], or several (comma-separated, with ``--alpha cv``)."""
    values = _numbers(text)
    if len(values) == 1:
        return values[0]  # range-checked with the other settings, by GDRegressor's constraints
    if not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: l1 ratios must be in [0, 1]")
    return values


def alphas_value(text):
    """``--alphas``: a count of alphas (an integer), or the alphas themselves (``0.1,1,10``)."""
    if text.strip().isdigit():
        count = int(text)
        if count < 1:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected at least 1 alpha")
        return count
    values = _numbers(text)
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: alphas must be non-negative")
    return values


def integer_at_least(minimum, expected):
    """An argparse ``type``: an integer of at least ``minimum``, else "invalid value …: expected {expected}"."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}")
        return value

    return parse


#: ``--folds``
folds_value = integer_at_least(2, "at least 2 folds")


def add_options(parser):
    """``train``'s cross-validation flags (used with ``--alpha cv``)."""
    group = parser.add_argument_group(
        "cross-validation (with --alpha cv: GDRegressorCV, one read of the data for the squared error; "
        "for --loss huber every pass serves all folds)")
    group.add_argument("--folds", type=folds_value, metavar="K",
                       help="number of folds, each row's from a seeded hash of its position (--seed); default 5")
    group.add_argument("--alphas", type=alphas_value, metavar="N|A,B,...",
                       help="a count of log-spaced alphas (default 100) or the alphas themselves")
    group.add_argument("--selection", choices=("min", "1se"),
                       help="'min': the smallest mean error (default); '1se': the largest alpha within one "
                            "standard error of it")


def split_settings(args, settings, defaults):
    """``(settings, cross_validation)``: GDRegressor's settings, and the CV options or ``None``.

    Without ``--alpha cv`` the CV flags are usage errors; with it, ``alpha``
    leaves the settings (kept valid for the range checks, unused) and the CV
    options are returned for :func:`build_model`.
    """
    given = {name: getattr(args, name, None) for name in CV_FLAGS}
    ratio = settings["l1_ratio"]
    if settings["alpha"] != "cv":
        for name, value in given.items():
            if value is not None:
                args.parser.error(f"argument {CV_FLAGS[name]}: needs --alpha cv")
        if isinstance(ratio, list):
            args.parser.error("argument --l1-ratio: several values need --alpha cv")
        return settings, None
    if not hasattr(args, "folds"):
        args.parser.error("argument --alpha: 'cv' (cross-validation) is for 'gradfit train'")
    if settings["penalty"] is None:
        args.parser.error("argument --alpha: 'cv' needs --penalty l1, l2 or elasticnet")
    if getattr(args, "checkpoint", None) or getattr(args, "resume", None):
        args.parser.error("argument --alpha: 'cv' cannot be combined with --checkpoint or --resume")
    options = {"cv": given["folds"] or 5, "selection": given["selection"] or "min"}
    if given["alphas"] is not None:
        options["alphas"] = given["alphas"]
    # --l1-ratio not given: GDRegressorCV's default (0.5, ElasticNetCV's), not GDRegressor's 0.15
    if ratio is not defaults["l1_ratio"]:
        options["l1_ratio"] = ratio
    plain = dict(settings, alpha=defaults["alpha"], l1_ratio=defaults["l1_ratio"])
    return plain, options


def build_model(settings, options, parser, flag_message):
    """The :class:`~gradfit.GDRegressorCV` of ``train --alpha cv``, its parameters range-checked."""
    from sklearn.utils._param_validation import InvalidParameterError

    from .estimator_cv import GDRegressorCV

    parameters = {k: v for k, v in settings.items() if k not in ("alpha", "l1_ratio")}
    model = GDRegressorCV(**parameters, **options)
    try:
        model._validate_params()
    except InvalidParameterError as exc:
        parser.error(flag_message(str(exc)))
    return model


def _grid_text(record):
    n_alphas = len(record["alphas"][0])
    ratios = record["l1_ratios"]
    text = f"{record['n_folds']} folds x {n_alphas} alphas"
    if len(ratios) > 1:
        text += f" x {len(ratios)} l1 ratios ({', '.join(f'{r:g}' for r in ratios)})"
    return text


def choice_lines(record, indent="  "):
    """What was chosen, from a ``cv_report_`` / model-file ``cross_validation`` record."""
    if not record:
        return []
    owned = record["penalty"] in registry.PENALTIES and "l1_ratio" in registry.PENALTIES[record["penalty"]].param_names
    ratio = f", l1_ratio {record['l1_ratio']:g}" if owned else ""
    rule = "smallest mean error" if record["selection"] == "min" else "largest alpha within one standard error"
    return [
        "cross-validation:",
        f"{indent}grid:      {_grid_text(record)} ({record['folds']} folds), penalty {record['penalty']}",
        f"{indent}chosen:    alpha {record['alpha']:.6g}{ratio} ({rule})",
        f"{indent}CV error:  {record['cv_error']:.6g} ± {record['cv_std_error']:.3g} "
        f"(mean validation {error_label(record, short=True)} over folds ± its standard error)",
    ]


def summary_lines(model):
    """``train``'s lines about the cross-validation (none for a plain fit)."""
    return choice_lines(getattr(model, "cv_report_", None))


def inspect_lines(document):
    """``inspect``'s lines, from the model file's ``cross_validation`` record (none without one)."""
    record = document.get("cross_validation")
    needed = ("alpha", "cv_error", "cv_std_error", "n_folds", "penalty", "selection", "l1_ratio", "l1_ratios",
              "alphas", "folds")
    if not isinstance(record, dict) or not all(key in record for key in needed):
        return []
    try:
        return choice_lines(record)
    except (TypeError, ValueError, IndexError, KeyError):
        return ["cross-validation: (record unreadable)"]
