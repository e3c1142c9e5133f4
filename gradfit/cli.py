"""The ``gradfit`` command: argument parsing and printing, no math.

Every failure the user can cause ends in one line on stderr
(``gradfit: error: …``) and a non-zero exit code (2 for usage, 1 otherwise),
never a traceback; output files are written atomically, so a failed run leaves
what was on disk as it was.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
import sys
import tempfile

import numpy as np

from . import metrics, registry
from .engines import ENGINES
from .errors import GradfitError
from .estimator import GDRegressor, load
from .model import atomic_write_text
from .progress import PrintProgress
from .sources import FileSource

DEFAULTS = {name: p.default for name, p in inspect.signature(GDRegressor).parameters.items()}

# The tutorial (TensorFlow.js linear regression): y = 2·x₀ with x = (x₀, x₀+1, x₀+2, x₀+3).
TUTORIAL_X = np.array([[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6], [4, 5, 6, 7]], dtype=float)
TUTORIAL_Y = np.array([2, 4, 6, 8], dtype=float)
TUTORIAL_TEST_X = np.array([[5, 6, 7, 8], [6, 7, 8, 9], [7, 8, 9, 10], [8, 9, 10, 11]], dtype=float)
TUTORIAL_TEST_Y = np.array([10, 12, 14, 16], dtype=float)


class UsageError(GradfitError):
    """Bad command-line usage (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line (no usage dump) and exit 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


# -- option types -------------------------------------------------------------


def _learning_rate(text):
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected 'auto' or a positive number")
    return value


def _optional(kind):
    def parse(text):
        if text.lower() == "none":
            return None
        return kind(text)

    parse.__name__ = kind.__name__
    return parse


def _names(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated column names")
    return names


# flag, estimator parameter, argparse keyword arguments
TRAINING_OPTIONS = [
    ("--lr", "learning_rate", dict(type=_learning_rate, metavar="auto|FLOAT")),
    ("--epochs", "epochs", dict(type=int, metavar="N")),
    ("--tol", "tol", dict(type=_optional(float), metavar="FLOAT|none")),
    ("--n-iter-no-change", "n_iter_no_change", dict(type=int, metavar="N")),
    ("--optimizer", "optimizer", dict(choices=sorted(registry.OPTIMIZERS))),
    ("--loss", "loss", dict(choices=sorted(registry.LOSSES))),
    ("--epsilon", "epsilon", dict(type=float)),
    ("--penalty", "penalty", dict(type=_optional(str), metavar="{" + ",".join(sorted(registry.PENALTIES)) + ",none}")),
    ("--alpha", "alpha", dict(type=float)),
    ("--l1-ratio", "l1_ratio", dict(type=float)),
    ("--batch-size", "batch_size", dict(type=_optional(int), metavar="N|none")),
    ("--schedule", "schedule", dict(choices=sorted(registry.SCHEDULES))),
    ("--power-t", "power_t", dict(type=float)),
    ("--step-size", "step_size", dict(type=int)),
    ("--gamma", "gamma", dict(type=float)),
    ("--engine", "engine", dict(choices=list(ENGINES))),
    ("--seed", "random_state", dict(type=_optional(int), metavar="INT|none")),
]


def _add_training_options(parser, epochs_default=None):
    group = parser.add_argument_group("training (the same names and defaults as GDRegressor)")
    for flag, name, kwargs in TRAINING_OPTIONS:
        default = DEFAULTS[name] if not (name == "epochs" and epochs_default) else epochs_default
        group.add_argument(flag, dest=name, default=default, help=f"GDRegressor({name}=...); default {default!r}", **kwargs)
    group.add_argument("--no-standardize", dest="standardize", action="store_false",
                       help="train on the raw features (default: standardized, reported in the data's units)")
    group.add_argument("--no-intercept", dest="fit_intercept", action="store_false", help="fit no intercept")
    group.add_argument("--quiet", "-q", action="store_true", help="print no progress")


def _settings(args):
    names = [name for _, name, _ in TRAINING_OPTIONS] + ["standardize", "fit_intercept"]
    settings = {name: getattr(args, name) for name in names}
    if settings["penalty"] is not None and settings["penalty"] not in registry.PENALTIES:
        registry.lookup(registry.PENALTIES, "penalty", settings["penalty"])
    return settings


# -- commands -----------------------------------------------------------------


def cmd_demo(args):
    settings = _settings(args)
    if args.tol_given is False:
        settings["tol"] = None  # the tutorial runs every epoch
    model = GDRegressor(**settings)
    rate = "auto" if settings["learning_rate"] == "auto" else settings["learning_rate"]
    print(
        "gradfit demo: the tutorial's linear regression, 4 rows x 4 features, y = 2*x0; "
        f"learning rate {rate}, {settings['epochs']} epochs, "
        f"{'standardized' if settings['standardize'] else 'raw'} features"
    )
    callbacks = () if args.quiet else (PrintProgress(settings["epochs"]),)
    model.fit(TUTORIAL_X, TUTORIAL_Y, callbacks=callbacks)
    if model.learning_rate_ is not None and rate == "auto":
        print(f"learning rate auto = 1/L = {model.learning_rate_:.6g}")
    print(f"final cost {model.final_cost_:.6g} after {model.n_iter_} epochs")
    predictions = model.predict(TUTORIAL_TEST_X)
    print(f"{'test row':<16}{'prediction':>14}{'expected':>10}")
    for row, predicted, expected in zip(TUTORIAL_TEST_X, predictions, TUTORIAL_TEST_Y):
        print(f"{' '.join(f'{v:g}' for v in row):<16}{predicted:>14.6f}{expected:>10g}")
    return 0


def cmd_train(args):
    source = FileSource(args.data, target=args.target, features=args.features, sample_weight=args.sample_weight)
    settings = _settings(args)
    model = GDRegressor(**settings)
    callbacks = () if args.quiet else (PrintProgress(settings["epochs"], stream=sys.stderr),)
    model.fit(source, callbacks=callbacks)
    r2 = metrics.training_r2(model._fit_result, source, _chunk_predictor(model))
    if args.output:
        model.save(args.output)
    print(
        f"trained on {model.n_samples_} rows x {len(model.feature_names_)} features of {args.data}: "
        f"{model.n_iter_} epochs ({model.stop_reason_.replace('_', ' ')}), engine {model.engine_}"
        + (f", learning rate {model.learning_rate_:.6g}" if model.learning_rate_ is not None else "")
    )
    print(f"final cost {model.final_cost_:.10g}; R^2 on the training data {r2:.6f}")
    if args.output:
        print(f"model written to {args.output}")
    return 0


def _chunk_predictor(model):
    coef = np.atleast_2d(model.coef_).T
    intercept = np.atleast_1d(model.intercept_)
    return lambda X: X @ coef + intercept


def _feature_source(model, path, target=()):
    return FileSource(path, target=list(target), features=model.feature_names_)


def cmd_predict(args):
    model = load(args.model)
    source = _feature_source(model, args.data)
    predict = _chunk_predictor(model)
    names = [f"{name}_predicted" if name in model.feature_names_ else name for name in model.target_names_]
    if args.output is None:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        for chunk in source.chunks():
            writer.writerows(predict(chunk.X).tolist())
        return 0
    folder = os.path.dirname(os.path.abspath(args.output))
    fd, temp = tempfile.mkstemp(prefix=".gradfit-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(names)
            for chunk in source.chunks():
                writer.writerows(predict(chunk.X).tolist())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, args.output)
    except BaseException:
        os.unlink(temp)
        raise
    print(f"predictions for {source.n_samples} rows written to {args.output}", file=sys.stderr)
    return 0


def cmd_evaluate(args):
    model = load(args.model)
    target = args.target or model.target_names_
    source = _feature_source(model, args.data, target)
    result = metrics.evaluate(_chunk_predictor(model), source)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in ("n_samples", "mse", "rmse", "mae", "r2"):
            label = {"r2": "R^2", "n_samples": "rows"}.get(key, key.upper())
            print(f"{label:<6}{result[key]:.10g}" if key != "n_samples" else f"{label:<6}{result[key]}")
    return 0


def cmd_inspect(args):
    model = load(args.model)
    from .model import read_document

    document = {k: v for k, v in read_document(args.model).items() if not k.startswith("_")}
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_)
    width = max(len(n) for n in model.feature_names_ + ["(intercept)"]) + 2
    for j, target in enumerate(model.target_names_):
        print(f"target {target}")
        print(f"  {'(intercept)':<{width}}{intercept[j]: .10g}")
        for name, value in zip(model.feature_names_, coef[j]):
            print(f"  {name:<{width}}{value: .10g}")
    training = document["training"]
    settings = document["settings"]
    print(
        f"training: {training.get('n_iter')} epochs ({str(training.get('stop_reason')).replace('_', ' ')}), "
        f"final cost {training.get('final_cost')}, engine {training.get('engine')}, "
        f"learning rate {training.get('learning_rate')}, {training.get('n_samples')} rows"
    )
    shown = ", ".join(f"{k}={v!r}" for k, v in settings.items() if DEFAULTS.get(k, object()) != v)
    print(f"settings: {shown or 'all defaults'}")
    return 0


# -- parser -------------------------------------------------------------------


def build_parser():
    parser = Parser(prog="gradfit", description="Linear models fitted by gradient descent.")
    parser.add_argument("--version", action="version", version=f"gradfit {__import__('gradfit').__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    demo = commands.add_parser("demo", help="the tutorial's example, built in")
    _add_training_options(demo, epochs_default=100)
    demo.set_defaults(run=cmd_demo)

    train = commands.add_parser("train", help="fit a model to a CSV or Parquet file")
    train.add_argument("data", help="CSV or Parquet file (or a folder of Parquet files) with a header")
    train.add_argument("--target", required=True, type=_names, help="target column (comma-separated for several)")
    train.add_argument("--features", type=_names, help="feature columns (default: all others)")
    train.add_argument("--sample-weight", help="a column of row weights")
    train.add_argument("-o", "--output", help="write the model (JSON) here")
    _add_training_options(train)
    train.set_defaults(run=cmd_train)

    predict = commands.add_parser("predict", help="predictions as CSV")
    predict.add_argument("model", help="model file written by 'gradfit train'")
    predict.add_argument("data", help="CSV or Parquet file with the model's feature columns")
    predict.add_argument("-o", "--output", help="write CSV here (default: stdout)")
    predict.set_defaults(run=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="MSE, RMSE, MAE and R^2 on a data file")
    evaluate.add_argument("model")
    evaluate.add_argument("data")
    evaluate.add_argument("--target", type=_names, help="target column(s) (default: the model's)")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(run=cmd_evaluate)

    inspect_ = commands.add_parser("inspect", help="coefficients and the training record")
    inspect_.add_argument("model")
    inspect_.add_argument("--json", action="store_true", help="print the model document as JSON")
    inspect_.set_defaults(run=cmd_inspect)
    return parser


def main(argv=None):
    """Entry point of the ``gradfit`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "demo":
            args.tol_given = any(a == "--tol" or a.startswith("--tol=") for a in argv)
        return args.run(args)
    except UsageError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    except (GradfitError, ValueError) as exc:
        # ValueError: scikit-learn's parameter validation, already one line.
        message = " ".join(str(exc).split())
        print(f"gradfit: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gradfit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    except OSError as exc:
        print(f"gradfit: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
