"""The ``gradfit`` command: argument parsing and printing, no math.

Every failure the user can cause ends in one line on stderr
(``gradfit: error: …``) and a non-zero exit code (2 for usage, 1 otherwise),
never a traceback; output files are written atomically, so a failed run leaves
what was on disk as it was.

Start-up is part of speed (``../shared/DESIGN.md``): this module imports
NumPy and gradfit's light modules only, so ``--help``, ``inspect`` and
``predict`` never load scikit-learn, SciPy, matplotlib or Numba (nor pyarrow
for ``--help``); the verbs that train import the estimator where they start
(``tests/test_startup.py`` lists what each verb imports).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import re
import sys
import warnings

import numpy as np

from . import __version__, cv_cli, files_io, metrics, paths, progress, registry
from . import model as model_file
from .errors import DataError, DivergenceError, GradfitError, OptionError
from .files_io import atomic_writer
from .model import predict, read_document
from .parameters import DEFAULTS  # GDRegressor's defaults, without importing scikit-learn
from .progress import PrintProgress
from .result import divergence_message
from .report import outputs
from .summary import shown_rows
from .sources.base import check_finite

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


def _penalty(text):
    if text.lower() == "none":
        return None
    if text not in registry.PENALTIES:
        valid = ", ".join(repr(name) for name in sorted(registry.PENALTIES) + ["none"])
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {valid})")
    return text


def _dask_address(text):
    from .sources.dask import parse_address  # Dask itself is imported only when used

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _memory_size(text):
    from .sources.columns import parse_size

    try:
        return parse_size(text)
    except OptionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_positive_int = cv_cli.integer_at_least(1, "a positive integer")


def _categorical(text):
    """``--categorical``: auto, none, or columns (``name`` or ``name=reference level``)."""
    if text.strip().lower() in ("auto", "none"):
        return text.strip().lower() if text.strip().lower() == "auto" else None
    return _names(text)


def _names(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated column names")
    return names


def _owned(name, **options):
    """The flag of a parameter a part owns (``epsilon`` → ``--epsilon``), typed as the table says."""
    param = registry.owned_params()[name]
    return (f"--{name.replace('_', '-')}", name, dict(type=int if param.kind == "integer" else float, **options))


# flag, estimator parameter, argparse keyword arguments
TRAINING_OPTIONS = [
    ("--lr", "learning_rate", dict(type=_learning_rate, metavar="auto|FLOAT")),
    ("--epochs", "epochs", dict(type=int, metavar="N")),
    ("--tol", "tol", dict(type=_optional(float), metavar="FLOAT|none")),
    ("--n-iter-no-change", "n_iter_no_change", dict(type=int, metavar="N")),
    ("--optimizer", "optimizer", dict(choices=registry.names("optimizer"))),
    ("--loss", "loss", dict(choices=registry.names("loss"))),
    _owned("epsilon"),
    _owned("quantile", metavar="TAU", help="the quantile of loss=quantile, in (0, 1)"),
    ("--penalty", "penalty", dict(type=_penalty, metavar="{" + ",".join(sorted(registry.PENALTIES)) + ",none}")),
    ("--alpha", "alpha", dict(type=cv_cli.alpha_value, metavar="FLOAT|cv")),  # cv: gradfit/cv_cli.py
    ("--l1-ratio", "l1_ratio", dict(type=cv_cli.l1_ratio_value, metavar="FLOAT[,FLOAT...]")),
    ("--batch-size", "batch_size", dict(type=_optional(int), metavar="N|none")),
    ("--schedule", "schedule", dict(choices=registry.names("schedule"))),
    _owned("power_t"),
    _owned("step_size"),
    _owned("gamma"),
    ("--engine", "engine", dict(choices=registry.names("engine", sort=False))),
    ("--seed", "random_state", dict(type=_optional(int), metavar="INT|none")),
    # the table's columns (train only: the demo's table is built in)
    ("--categorical", "categorical", dict(
        type=_categorical, metavar="auto|none|COL[=LEVEL],...",
        help="columns whose values are categories, dummy coded against the first level in sorted order "
             "(or LEVEL); auto (default): text and true/false columns; named columns are added to those; "
             "none: every feature must be a number")),
    ("--missing", "missing", dict(
        choices=("error", "drop"),
        help="a missing value (empty field, null, NaN) in a used column: stop with an error (default), or "
             "leave that row out (counted per column in the summary); predict and evaluate do the same")),
    ("--handle-unknown", "handle_unknown", dict(
        choices=("error", "ignore"),
        help="a category not seen in training, when the model predicts: an error (default), or zero effect")),
    ("--formula", "formula", dict(
        metavar='"Y ~ X + C(G) + ..."',
        help="a formula (formulaic's, as statsmodels writes them) naming the target and the features, with "
             "transforms (np.log(x)), categories (C(g)) and interactions (x:z); then no --target")),
]
# a parameter a new part brings (one line in gradfit.registry, one in GDRegressor.__init__) gets its flag here
TRAINING_OPTIONS += [_owned(name) for name in registry.owned_params()
                     if name not in {option for _, option, _ in TRAINING_OPTIONS}]
#: the parameters about the table's columns: flags of train, not of the demo
TABLE_PARAMETERS = ("categorical", "missing", "handle_unknown", "formula")


def _add_training_options(parser, epochs_default=None, table=True):
    group = parser.add_argument_group("training (the same names and defaults as GDRegressor)")
    for flag, name, kwargs in TRAINING_OPTIONS:
        if name in TABLE_PARAMETERS and not table:
            continue
        default = DEFAULTS[name] if not (name == "epochs" and epochs_default) else epochs_default
        kwargs = dict(kwargs)
        text = kwargs.pop("help", "")
        group.add_argument(flag, dest=name, default=default,
                           help=f"{text + '; ' if text else ''}GDRegressor({name}=...); default {default!r}", **kwargs)
    group.add_argument("--no-standardize", dest="standardize", action="store_false",
                       help="train on the raw features (default: standardized, reported in the data's units)")
    group.add_argument("--no-intercept", dest="fit_intercept", action="store_false", help="fit no intercept")
    group.add_argument("--quiet", "-q", action="store_true", help="print no progress")


FLAGS = {name: flag for flag, name, _ in TRAINING_OPTIONS}


def _settings(args):
    """The estimator's parameters from the flags, range-checked before any data is read.

    The ranges are the estimator's own (``GDRegressor._parameter_constraints``);
    a value out of range is a usage error that names the flag, not the parameter.
    """
    names = [name for _, name, _ in TRAINING_OPTIONS] + ["standardize", "fit_intercept"]
    settings = {name: getattr(args, name, DEFAULTS[name]) for name in names}
    settings, args.cross_validation = cv_cli.split_settings(args, settings, DEFAULTS)  # --alpha cv
    from sklearn.utils._param_validation import InvalidParameterError

    from .estimator import GDRegressor

    try:
        GDRegressor(**settings)._validate_params()
    except InvalidParameterError as exc:
        args.parser.error(_flag_message(str(exc)))
    return settings


def _flag_message(text):
    """scikit-learn's "The 'epochs' parameter of GDRegressor must be … Got -5 instead." in flag terms."""
    match = re.match(r"The '(\w+)' parameter of \w+ must be (.*)\. Got (.*) instead\.$", " ".join(text.split()))
    if match is None or match.group(1) not in FLAGS:
        return text
    name, rule, value = match.groups()
    return f"argument {FLAGS[name]}: must be {rule}, not {value}"


def _divergence_message(exc):
    """:class:`DivergenceError`'s explanation (:func:`gradfit.result.divergence_message`), with the advice as flags."""
    advice = "use --lr auto (1/L, never diverges)" + ("" if exc.standardized else " or drop --no-standardize")
    return divergence_message(exc.epoch, exc.cost, exc.learning_rate, exc.max_stable_learning_rate, advice)


def _flag_advice(option, value):
    """The fit report's advice (an estimator option and value) as the command line's flags."""
    if option == "standardize":
        return "drop --no-standardize"
    return f"use {FLAGS[option]} {value}"


def _fit(model, callbacks, *data, **fit_options):
    """``model.fit(*data)``, with its ConvergenceWarning told in flags, on one line."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            model.fit(*data, callbacks=callbacks, **fit_options)
        except DivergenceError as exc:
            raise GradfitError(_divergence_message(exc)) from None
    result = model._fit_result  # the fit's one record (gradfit.result)
    if result.unsettled:
        message = result.message_with(_flag_advice(*result.advice) if result.advice else None)  # advice as a flag
        print(f"gradfit: warning: stopped after {model.n_iter_} epochs (--epochs {model.epochs}), {message}",
              file=sys.stderr)
    return model


# -- commands -----------------------------------------------------------------


def cmd_demo(args):
    from .estimator import GDRegressor

    settings = _settings(args)
    if outputs.check_plot_dir(args.plot):
        raise GradfitError(outputs.check_plot_dir(args.plot))
    _check_paths(args, extra_outputs=("learning_rates",))
    if args.tol_given is False:
        settings["tol"] = None  # the tutorial runs every epoch
    _check_lesson(args, settings, 1)  # --lesson (issue 16)
    model = GDRegressor(**settings)
    rate = "auto" if settings["learning_rate"] == "auto" else settings["learning_rate"]
    print(
        "gradfit demo: the tutorial's linear regression, 4 rows x 4 features, y = 2*x0; "
        f"learning rate {rate}, {settings['epochs']} epochs, "
        f"{'standardized' if settings['standardize'] else 'raw'} features"
    )
    callbacks = () if args.quiet else (PrintProgress(settings["epochs"]),)
    _fit(model, callbacks, TUTORIAL_X, TUTORIAL_Y)
    if model.learning_rate_ is not None and rate == "auto":
        print(f"learning rate auto = 1/L = {model.learning_rate_:.6g}")
    print(f"final cost {model.final_cost_:.6g} after {model.n_iter_} epochs")
    predictions = model.predict(TUTORIAL_TEST_X)
    print(f"{'test row':<16}{'prediction':>14}{'expected':>10}")
    for row, predicted, expected in zip(TUTORIAL_TEST_X, predictions, TUTORIAL_TEST_Y):
        print(f"{' '.join(f'{v:g}' for v in row):<16}{predicted:>14.6f}{expected:>10g}")
    if args.plot is not None:
        _demo_plots(args, settings, model)
    if args.lesson is not None:  # --lesson (issue 16)
        from .lesson import write_lesson_page
        from .sources import ArraySource

        written = write_lesson_page(
            args.lesson, ArraySource(TUTORIAL_X, TUTORIAL_Y[:, None]), settings, data_name="the tutorial's data",
            test_X=TUTORIAL_TEST_X, test_y=TUTORIAL_TEST_Y, rates=[r for r in DEMO_RATES if r != "auto"],
        )
        print(f"lesson page written to {written}")
    return 0


#: the learning rates of the demo's picture: too small, small, auto, and the tutorial's (diverges)
DEMO_RATES = (0.001, 0.01, "auto", 0.1)


def _demo_plots(args, settings, model):
    """``demo --plot DIR``: the fit's plots and the tutorial's cost curves for several learning rates."""
    from .estimator import GDRegressor
    from .report import learning_rates_figure
    from .sources import ArraySource

    runs = []
    for rate in DEMO_RATES:
        # The tutorial's setting: raw features, every epoch, where 0.1 diverges.
        tutorial = GDRegressor(**dict(settings, learning_rate=rate, standardize=False, tol=None))
        recorder = outputs.CostRecorder()
        try:
            tutorial.fit(TUTORIAL_X, TUTORIAL_Y, callbacks=(recorder,))
        except DivergenceError as exc:
            runs.append(outputs.diverged_run(rate, recorder, exc))
        else:
            runs.append(outputs.finished_run(rate, tutorial))
    limit = next((run["max_stable"] for run in runs if run["max_stable"]), None)
    picture = learning_rates_figure(
        runs, max_stable=limit,
        title=f"The tutorial's cost curves: raw features, {settings['epochs']} epochs, several learning rates",
        note=f"This run ({'standardized' if settings['standardize'] else 'raw'} features, learning rate "
             f"{settings['learning_rate']}): cost {model.final_cost_:.3g} after {model.n_iter_} epochs (cost.png).",
    )
    source = ArraySource(TUTORIAL_X, TUTORIAL_Y[:, None])
    written = outputs.write_fit_outputs(model, source, plot_dir=args.plot, plot_format=args.plot_format,
                                        extra_figures={"learning_rates": picture})
    print(f"plots written: {', '.join(written)}")


#: the flags that name a file a command writes, and those that name files it reads, as
#: (flag, attribute of args); paths.check_outputs compares every output with every input and
#: with each other before any work. A new output flag is one more entry here.
OUTPUT_FLAGS = [("-o", "output"), ("--report", "report"), ("--checkpoint", "checkpoint"), ("--lesson", "lesson")]
INPUT_FLAGS = [("DATA", "data"), ("MODEL", "model"), ("--resume", "resume")]


def _check_paths(args, extra_outputs=()):
    """Refuse, before any work, an output that is an input, another output, a folder, or has no folder."""
    found = [(flag, getattr(args, name, None)) for flag, name in OUTPUT_FLAGS]
    if getattr(args, "plot", None) is not None:
        found += [("--plot", path) for path in outputs.plot_paths(args.plot, args.plot_format, extra_outputs)]
    paths.check_outputs(found, [(flag, getattr(args, name, None)) for flag, name in INPUT_FLAGS])


def cmd_train(args):
    from .sources.files import FileSource

    settings = _settings(args)
    if outputs.check_plot_dir(args.plot):
        raise GradfitError(outputs.check_plot_dir(args.plot))
    _check_paths(args)
    _check_lesson(args, settings, len(args.target) if args.target else 1)  # --lesson (issue 16)
    if args.formula is not None:
        return _train_formula(args, settings)
    if args.target is None:
        args.parser.error("the following arguments are required: --target (or --formula)")
    if args.dask is not None:
        if args.memory is not None:
            raise UsageError("--memory has no effect with --dask: the workers hold the data")
        return _train_on_dask(args, settings)
    source = FileSource(args.data, target=args.target, features=args.features, sample_weight=args.sample_weight,
                        memory=args.memory, **_table_options(args, settings))
    return _train(args, settings, source)


def _table_options(args, settings):
    """``--exclude``, ``--categorical``, ``--missing`` for a source (the last two are settings, kept with the model)."""
    return dict(exclude=args.exclude, categorical=settings["categorical"], missing=settings["missing"])


def _train_formula(args, settings):
    """``train --formula``: the table through the formula (:mod:`gradfit.formula`), streamed or on Dask."""
    from .sources.formulas import FormulaSource, dask_formula_source

    categorical = None if settings["categorical"] == "auto" else "--categorical (write C(column) in the formula)"
    for flag, value in (("--target", args.target), ("--features", args.features), ("--exclude", args.exclude),
                        ("--categorical", categorical)):
        if value is not None:
            args.parser.error(f"argument {flag}: not allowed with --formula (the formula names the columns)")
    if args.dask is None:
        source = FormulaSource(args.data, args.formula, sample_weight=args.sample_weight, missing=args.missing)
        source.design.check_intercept(settings["fit_intercept"])
        return _train(args, settings, source)
    from .sources.dask import connect, require

    if args.sample_weight is not None:
        raise GradfitError("--sample-weight with --formula and --dask is not supported")
    dd = require("dask.dataframe")
    with connect(args.dask):
        reader = dd.read_csv if args.data.lower().endswith(".csv") else dd.read_parquet
        source = dask_formula_source(reader(args.data), args.formula, args.missing)
        source.design.check_intercept(settings["fit_intercept"])
        return _train(args, settings, source)


def _train_on_dask(args, settings):
    """``train --dask``: the workers read the file; the cluster (or connection) is closed afterwards."""
    from .sources.dask import DaskSource, connect

    with connect(args.dask):
        source = DaskSource.from_file(
            args.data, target=args.target, features=args.features, sample_weight=args.sample_weight,
            **_table_options(args, settings),
        )
        if settings["batch_size"] is not None:
            source.persist()  # a minibatch gathers scattered rows: read the file once, not at every step
        return _train(args, settings, source)


def _train(args, settings, source):
    from .estimator import GDRegressor
    from .fitting import check_meaningful

    check_meaningful(settings, strict=True)  # a flag typed that would do nothing is an error here
    model = GDRegressor(**settings)
    fit_options = dict(checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume)
    if args.cross_validation is not None:  # --alpha cv: gradfit/cv_cli.py (no checkpoints)
        model, fit_options = cv_cli.build_model(settings, args.cross_validation, args.parser, _flag_message), {}
    with progress.reporter(settings["epochs"], stream=sys.stderr, quiet=args.quiet, source=source) as callbacks:
        _fit(model, callbacks, source, **fit_options)
    if args.output:
        # first: a cluster failure in the R² pass must not lose a finished fit; nor a vanished folder
        files_io.save_or_recover(model.save, args.output)
    r2 = metrics.training_r2(model._fit_result, source, _chunk_predictor(model, source))
    print(
        f"trained on {model.n_samples_} rows x {len(model.feature_names_)} features of {args.data}: "
        f"{model.n_iter_} epochs, engine {model.engine_}, optimizer {model.optimizer_}"
        + (f", learning rate {model.learning_rate_:.6g}" if model.learning_rate_ is not None else "")
    )
    print(model.stop_message_)  # the record's sentence: the words inspect, the report and the warning use
    print(f"final cost {model.final_cost_:.10g}; R^2 on the training data {r2:.6f}")
    print("diagnostics:", *outputs.diagnostics_lines(model.fit_report_), sep="\n")
    for line in cv_cli.summary_lines(model):  # --alpha cv
        print(line)
    written = outputs.write_fit_outputs(
        model, source, plot_dir=args.plot, plot_format=args.plot_format, report_path=args.report,
        data_name=args.data, defaults=DEFAULTS,
    )
    if written:
        print(f"written: {', '.join(written)}")
    if args.lesson is not None:  # --lesson (issue 16)
        from .lesson import write_lesson_page

        print(f"lesson page written to {write_lesson_page(args.lesson, source, settings, data_name=args.data)}")
    if args.output:
        print(f"model written to {args.output}")
    if model.stop_reason_ == "interrupted":
        print(f"gradfit: stopped early: {model.stop_message_}"
              f"{'; the model was written to ' + repr(args.output) if args.output else ''}", file=sys.stderr)
        return 130  # the shell's code for Ctrl-C, so that scripts stop here too
    return 0


def _check_lesson(args, settings, n_outputs):
    """``--lesson``: refuse, before any work, a path or settings the lesson page cannot take (issue 16)."""
    if args.lesson is None:
        return  # its path is checked with the other outputs (_check_paths)
    from .lesson import check_lesson_settings

    problem = check_lesson_settings(settings, n_outputs)
    if problem:
        raise GradfitError(problem)


def _chunk_predictor(model, source):
    """``chunk -> model's predictions``, shape (n_rows, n_outputs): :func:`gradfit.model.predict`.

    A chunk of ``source`` whose column of many levels comes as level codes
    (``chunk.codes``, ``source.block_layout``) has that column's coefficients
    gathered, never a dense one-hot block.
    """
    coef, intercept = model.coef_, model.intercept_
    return lambda chunk: predict(chunk.X, coef, intercept, chunk.codes, source.block_layout)


def _feature_source(model, path, target=(), sample_weight=None, missing=None, handle_unknown=None):
    """The model's raw columns of ``path``: categories encoded with its levels, missing values as it was trained.

    ``missing``: ``"drop"`` leaves rows out (evaluate), ``"keep"`` gives them
    NaN features (predict); default the model's own choice. One pass (predictions,
    metrics): keeping the columns would only cost memory or disk.
    """
    from .sources.files import FileSource

    if getattr(model, "design_", None) is not None:
        from .sources.formulas import FormulaSource

        source = FormulaSource(path, design=model.design_, sample_weight=sample_weight,
                               missing=missing or model.missing,
                               handle_unknown=handle_unknown or model.handle_unknown, targets=bool(target))
        if source.block_candidate is not None:
            source.use_blocks()  # a factor of many levels as level codes: its coefficients gathered
        return source
    encoder = getattr(model, "encoder_", None)
    features = model.feature_names_ if encoder is None else encoder.raw_names
    missing = missing or model.missing
    if encoder is None and missing == "error":
        return FileSource(path, target=list(target), features=features, sample_weight=sample_weight,
                          categorical=None, keep_columns=False)
    if encoder is None:
        from .sources.encoding import ColumnCoding, TableEncoder

        encoder = TableEncoder([ColumnCoding(name) for name in features])
    source = FileSource(path, target=list(target), features=features, sample_weight=sample_weight,
                        keep_columns=False, encoder=encoder, missing=missing,
                        handle_unknown=handle_unknown or model.handle_unknown)
    if source.block_candidate is not None:
        source.use_blocks()  # the column of many levels as level codes: chunks of rows, not of dummies
    return source


def cmd_predict(args):
    _check_paths(args)
    model = model_file.load(args.model)
    missing = args.missing or model.missing
    source = _feature_source(model, args.data, missing="keep" if missing == "drop" else "error",
                             handle_unknown=args.handle_unknown)
    if args.output is None:
        _write_predictions(model, source, sys.stdout)
        return 0
    # Written to a temporary file and renamed: bad data found half-way leaves the old file.
    with atomic_writer(args.output) as handle:
        rows = _write_predictions(model, source, handle)
    print(f"predictions for {rows} rows written to {args.output}", file=sys.stderr)
    return 0


def _write_predictions(model, source, handle):
    """Stream ``model``'s predictions on ``source`` to ``handle`` as CSV; returns the rows written."""
    predict = _chunk_predictor(model, source)
    names = [f"{name}_predicted" if name in model.feature_names_ else name for name in model.target_names_]
    writer = csv.writer(handle, lineterminator="\n")
    rows = 0
    for chunk in source.chunks():
        if chunk.n_rows == 0:
            continue
        missing = None
        if source.missing == "keep":  # rows with a missing value: an empty field
            missing = np.isnan(chunk.X).any(axis=1)
            codes = chunk.codes
            if codes is not None:
                missing |= codes == -2  # a level code's "missing"
                codes = np.where(missing, -1, codes)  # gathers 0 there, blanked below
            chunk = dataclasses.replace(chunk, X=np.where(missing[:, None], 0.0, chunk.X), codes=codes)
        check_finite(source, chunk)  # a NaN or inf would give a prediction that means nothing
        predicted = predict(chunk)
        overflow = ~np.all(np.isfinite(predicted), axis=1)
        if overflow.any():
            raise DataError(
                f"the prediction for {source.describe()} at {source.where(chunk.row(int(np.argmax(overflow))))} "
                "overflows float64: the model's coefficients are too large for these values"
            )
        if rows == 0:
            writer.writerow(names)
        if missing is not None and missing.any():
            rows_out = predicted.tolist()
            for row in np.flatnonzero(missing):
                rows_out[row] = [""] * predicted.shape[1]
            writer.writerows(rows_out)
        else:
            writer.writerows(predicted.tolist())
        rows += chunk.n_rows
    if rows == 0:
        raise DataError(f"{source.describe()} has no data rows")
    return rows


def cmd_evaluate(args):
    model = model_file.load(args.model)
    target = args.target or model.target_names_
    if len(target) != len(model.target_names_):
        raise GradfitError(
            f"--target names {len(target)} column(s), but model {args.model!r} predicts "
            f"{len(model.target_names_)}: {', '.join(model.target_names_)}"
        )
    source = _feature_source(model, args.data, target, args.sample_weight, missing=args.missing,
                             handle_unknown=args.handle_unknown)
    result = metrics.evaluate(_chunk_predictor(model, source), source)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'rows':<6}{result['n_samples']}")
    for key, label in (("mse", "MSE"), ("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R^2")):
        value = result[key]
        print(f"{label:<6}{value:.10g}" if value is not None else f"{label:<6}undefined for a single row")
    return 0


def _rate_text(training):
    """The learning rate of a model file's training record; cg and Newton take steps of their own."""
    optimizer = registry.OPTIMIZERS.get(training.get("optimizer"))
    if training.get("learning_rate") is None and optimizer is not None and not optimizer.takes_learning_rate:
        return f"none ({training['optimizer']} takes its own steps)"
    return _show(training.get("learning_rate"))


def _show(value):
    """A number from the model file for people: 10 significant digits; anything else as it is."""
    if isinstance(value, float):
        return f"{value:.10g}"
    return "unknown" if value is None else str(value)


def cmd_inspect(args):
    model = model_file.load(args.model)
    document = {k: v for k, v in read_document(args.model).items() if not k.startswith("_")}
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_)
    print(
        f"gradfit model {args.model} (format {document['format_version']}, written by gradfit "
        f"{document.get('gradfit_version', 'unknown')}): {coef.shape[1]} features, {coef.shape[0]} "
        f"target{'s' if coef.shape[0] > 1 else ''}, coefficients in the data's units"
    )
    width = max(len(n) for n in model.feature_names_ + ["(intercept)"]) + 2
    for j, target in enumerate(model.target_names_):
        print(f"target {target}")
        print(f"  {'(intercept)':<{width}}{intercept[j]: .10g}")
        for i in shown_rows(model.feature_names_):
            if isinstance(i, str):  # a long run of one categorical column's levels, folded
                print(f"  {i}")
                continue
            print(f"  {model.feature_names_[i]:<{width}}{coef[j][i]: .10g}")
    training = document["training"]
    print(
        f"training: {_show(training.get('n_samples'))} rows, {_show(training.get('n_iter'))} epochs "
        f"({'converged' if training.get('converged') is True else 'not converged'}, stop reason "
        f"{_show(training.get('stop_reason')).replace('_', ' ')}), final cost {_show(training.get('final_cost'))}, "
        f"engine {_show(training.get('engine'))}, optimizer {_show(training.get('optimizer'))}, "
        f"learning rate {_rate_text(training)}"
    )
    settings = document["settings"]
    shown = ", ".join(f"{k}={v!r}" for k, v in settings.items() if DEFAULTS.get(k, object()) != v)
    print(f"settings: {shown or 'all defaults'}")
    for line in cv_cli.inspect_lines(document):  # a model trained with --alpha cv
        print(line)
    if model.fit_report_:
        print("diagnostics:", *outputs.diagnostics_lines(model.fit_report_), sep="\n")
    for line in outputs.statistics_lines(model.summary_, model.target_names_):
        print(line)
    return 0


# -- parser -------------------------------------------------------------------


def _add_plot_options(parser, also=""):
    parser.add_argument("--plot", metavar="DIR",
                        help=f"draw the cost curve, predicted against actual and residuals into DIR{also}")
    parser.add_argument("--plot-format", choices=("png", "svg"), default="png", help="file type of --plot (default png)")


LESSON_HELP = ("write one self-contained HTML page to play with: the cost's contours and the path of the "
               "iterates, a learning-rate slider, the optimizers, standardization on or off (issue 16)")


def _add_table_use_options(parser, drop_means):
    parser.add_argument("--missing", choices=("error", "drop"),
                        help=f"missing values: error, or drop ({drop_means}); default: as the model was trained")
    parser.add_argument("--handle-unknown", choices=("error", "ignore"),
                        help="a category not seen in training: error (default), or ignore (it contributes zero)")


def build_parser():
    parser = Parser(prog="gradfit", description="Linear models fitted by gradient descent.")
    parser.add_argument("--version", action="version", version=f"gradfit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    demo = commands.add_parser("demo", help="the tutorial's example, built in")
    _add_training_options(demo, epochs_default=100, table=False)
    _add_plot_options(demo, also=", and the tutorial's cost curves for learning rates 0.001, 0.01, auto and 0.1")
    demo.add_argument("--lesson", metavar="FILE.html", help=LESSON_HELP)
    demo.set_defaults(run=cmd_demo, parser=demo)

    train = commands.add_parser("train", help="fit a model to a CSV or Parquet file")
    train.add_argument("data", help="CSV or Parquet file (or a folder of Parquet files) with a header")
    train.add_argument("--target", type=_names, help="target column (comma-separated for several); required "
                       "unless --formula")

    train.add_argument("--features", type=_names, help="feature columns (default: all others)")
    train.add_argument("--exclude", type=_names, metavar="COL,...",
                       help="leave these columns out of the features (default features: all others)")
    train.add_argument("--sample-weight", help="a column of row weights")

    train.add_argument("-o", "--output", help="write the model (JSON) here")
    train.add_argument("--checkpoint", metavar="PATH",
                       help="write the whole training state here every --checkpoint-every epochs and at the end; "
                            "SIGTERM then stops at the end of an epoch like Ctrl-C")
    train.add_argument("--checkpoint-every", type=_positive_int, default=10, metavar="N",
                       help="epochs between checkpoints (default 10)")
    train.add_argument("--resume", metavar="PATH",
                       help="go on from a checkpoint made by the same command on the same data "
                            "(only --epochs may differ); the result equals an unbroken run's")
    train.add_argument("--memory", type=_memory_size, metavar="SIZE",
                       help="the most memory for keeping the file's needed columns after the first pass, e.g. "
                            "512MiB or 4GiB (0: keep none); within it later epochs read memory, beyond it a CSV "
                            "file's columns go to a binary cache in TMPDIR. Default: a quarter of the machine's "
                            "memory, or what is available if less")
    train.add_argument("--dask", type=_dask_address, metavar="local[:N]|tcp://HOST:PORT",
                       help="read and sum the data on Dask workers: a local cluster of N worker "
                       "processes (default 2), or a running scheduler (pip install gradfit[dask])")
    _add_training_options(train)
    cv_cli.add_options(train)  # --folds, --alphas, --selection (with --alpha cv)
    _add_plot_options(train)
    train.add_argument("--report", metavar="FILE.html",
                       help="write one self-contained HTML page: settings, diagnostics, statistics, plots")
    train.add_argument("--lesson", metavar="FILE.html", help=LESSON_HELP)
    train.set_defaults(run=cmd_train, parser=train)

    predict = commands.add_parser("predict", help="predictions as CSV")
    predict.add_argument("model", help="model file written by 'gradfit train'")
    predict.add_argument("data", help="CSV or Parquet file with the model's feature columns")
    predict.add_argument("-o", "--output", help="write CSV here (default: stdout)")
    _add_table_use_options(predict, "a row with a missing value gets an empty prediction field")
    predict.set_defaults(run=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="MSE, RMSE, MAE and R^2 on a data file")
    evaluate.add_argument("model")
    evaluate.add_argument("data")
    evaluate.add_argument("--target", type=_names, help="target column(s) (default: the model's)")
    evaluate.add_argument("--sample-weight", help="a column of row weights for the metrics")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    _add_table_use_options(evaluate, "rows with a missing value are left out of the metrics")
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
        with progress.pipe_safe():  # a reader gone (| head) stops the printing, not the fit
            return args.run(args)
    except UsageError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    except (GradfitError, ValueError) as exc:
        # ValueError: scikit-learn's parameter validation, already one line.
        print(f"gradfit: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gradfit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    except OSError as exc:
        where = f"file {exc.filename!r}: " if exc.filename else ""
        print(f"gradfit: error: {where}{exc.strerror or _one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
