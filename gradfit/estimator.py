"""``GDRegressor``: the scikit-learn estimator contract, and nothing else.

Parameters are stored by ``__init__`` and checked in ``fit``; the fitting
itself lives in :mod:`gradfit.fitting`.
"""

from __future__ import annotations

import os
import signal
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import model as model_file
from . import parameters, progress
from .certificate import Certificate
from .diagnostics import analyse
from .fitting import fit_source, prepare
from .progress import PrintProgress
from .sources import ArraySource, DaskSource, FileSource, Source, is_dask_collection
from .sources.dask import predict_dask
from .sources import frames


def sklearn_constraints(constraints):
    """:data:`gradfit.parameters.CONSTRAINTS` in scikit-learn's vocabulary (``_parameter_constraints``)."""

    def translate(constraint):
        if isinstance(constraint, parameters.Interval):
            return Interval(constraint.kind, constraint.left, constraint.right, closed=constraint.closed)
        if isinstance(constraint, parameters.Options):
            return StrOptions(constraint.values)  # the table's live names stay live
        return constraint  # None, a type, or a set scikit-learn names the same ("boolean", ...)

    return {name: [translate(c) for c in rules] for name, rules in constraints.items()}


class GDRegressor(RegressorMixin, BaseEstimator):
    """Linear regression fitted by gradient descent.

    Minimizes ``F(w, b) = (1/(W k)) Σ_i v_i Σ_j ℓ(x_i·w_j + b_j − y_ij) + alpha·R(w)``
    over ``n_samples`` rows with weights ``v`` (``W = Σ v``) and ``k`` outputs,
    from ``w = 0, b = 0``; with the squared error ``ℓ(r) = r²`` and no penalty
    this is the tutorial's mean squared error.

    Parameters
    ----------
    learning_rate : float or "auto", default="auto"
        The step ``η`` of ``θ ← θ − η ∇F``. ``"auto"`` takes ``1/L``, ``L`` the
        largest eigenvalue of the Hessian (in the units training runs in), for
        which gradient descent cannot diverge; any step above ``2/L`` does.
        What ``"auto"`` means for each optimizer, loss and minibatches (Adam:
        ``0.01 × rms(y)``; ``absolute_error``, ``quantile``: ``2·rms(y)/L``; ``cg``: its line
        search) is in :func:`gradfit.fitting.base_learning_rate`; ``cg`` takes
        no other value.
    epochs : int, default=1000
        The most epochs to run.
    tol : float or None, default=1e-6
        The threshold of the fit's convergence *certificate*
        (:mod:`gradfit.certify`): training stops, converged, as soon as the
        certificate is at most ``tol``. For the squared error with or without
        ``"l2"`` it is the relative distance to the optimum in standardized
        units (exact, from ``θ − θ* = H⁻¹∇F``); with ``"l1"``/``"elasticnet"``
        the relative duality gap. ``converged_`` is true only then; a
        ``ConvergenceWarning`` gives the certificate's value and one change
        that helps when it is not. ``None`` runs all epochs and claims nothing.
        For ``loss="huber"``, ``"absolute_error"`` and ``"quantile"`` the certificate is an
        upper bound on the relative objective gap ``(F − F*)/F``
        (:mod:`gradfit.robust`).
    n_iter_no_change : int, default=5
        Training also stops, *not* converged (``stop_reason_ == "stalled"``)
        unless the certificate holds, once the cost has not improved on its
        best by more than ``tol`` relative for this many epochs in a row; on
        the statistics engine, which checks the certificate every epoch, by
        more than ``min(tol, 1e-15)``: only a cost that rounding stopped. On
        the pass engine (for the squared error) a stall first collects the
        statistics, the one extra pass the certificate needs, and training
        goes on checking the certificate.
    fit_intercept : bool, default=True
    standardize : bool, default=True
        Train on standardized features (centred when there is an intercept,
        divided by their spread); ``coef_`` and ``intercept_`` are reported in
        the data's own units, and the optimum does not change.
    optimizer : {"auto", "gd", "momentum", "nesterov", "adam", "cg", "newton"}, default="auto"
        See :mod:`gradfit.optimizers`. ``"auto"`` runs plain gradient descent
        (``"gd"``, the tutorial's update) where the statistics show it reaches
        ``tol`` within half of ``epochs``, else conjugate gradient (squared
        error, with or without L2, condition number up to 1e4), the Newton
        step with the statistics' Hessian beyond (``optimizer_ == "newton"``),
        or ``"nesterov"`` (L1, elastic net; started from coordinate descent on
        the statistics, :func:`gradfit.fitting.lasso_start`); for ``loss="huber"`` and
        ``"absolute_error"``/``"quantile"`` on full batches ``"newton"`` (:mod:`gradfit.robust`); minibatches,
        the pass engine, a given learning rate or schedule, and other losses
        run ``"gd"`` (:mod:`gradfit.autoselect`). ``optimizer_`` says which ran. ``"cg"`` (conjugate gradient) is exact on
        the squared error (with or without ``"l2"``) in at most ``d + 1`` epochs,
        and is followed by refinement epochs whose gradient comes from a data
        pass (:mod:`gradfit.refine`); it raises ``IllConditionedError`` rather
        than return digits float64 cannot determine. ``"newton"`` serves
        ``loss="huber"`` (no L1 part) and the unpenalized ``"absolute_error"``
        and ``"quantile"``: damped Newton steps from the inlier rows' statistics,
        and for those two an exact linear-programming finish; its fits stop when
        their certificate is within ``tol`` (see :mod:`gradfit.robust`).
    loss : {"squared_error", "huber", "absolute_error", "quantile"}, default="squared_error"
    epsilon : float, default=1.35
        Huber's threshold, in the target's units (no scale is estimated, unlike
        scikit-learn's ``HuberRegressor``; see :class:`gradfit.losses.Huber`).
        Needs ``loss="huber"``: another value with another loss is an error.
    quantile : float in (0, 1), default=0.5
        ``τ`` of ``loss="quantile"``, the pinball loss ``2·ρ_τ(y − ŷ)`` with
        ``ρ_τ(u) = τ·u`` for ``u ≥ 0`` and ``(τ − 1)·u`` below (scikit-learn's
        ``QuantileRegressor`` and ``mean_pinball_loss``; twice theirs, so that
        ``quantile=0.5`` is ``loss="absolute_error"``, cost values included;
        :class:`gradfit.losses.Quantile`). The fit leaves a share ``τ`` of the
        rows below it. Needs ``loss="quantile"``: another value with another
        loss is an error.
    penalty : {None, "l2", "l1", "elasticnet"}, default=None
        On the coefficients in the data's units, never the intercept; L1 by a
        proximal step, so coefficients become exactly zero. ``Lasso(alpha=a)``
        and ``ElasticNet(alpha=a)`` are ``alpha=2a``, ``Ridge(alpha=a)`` is
        ``alpha=2a/n_samples`` (the sum of the sample weights when given; see
        :mod:`gradfit.penalties`).
    alpha : float, default=1e-4
        Needs ``penalty``: another value without one is an error.
    l1_ratio : float in [0, 1], default=0.15
        Needs ``penalty="elasticnet"``: another value with another penalty is an error.
    batch_size : int or None, default=None
        ``None``: full batch. An integer: minibatches, rows shuffled every
        epoch from ``random_state``.
    schedule : {"auto", "constant", "invscaling", "step"}, default="auto"
        ``η_t = η``, ``η / (1 + t)^power_t`` or ``η · gamma^⌊t/step_size⌋`` (t in epochs).
        ``"auto"``: constant for a smooth loss, ``η/(1 + t)`` for
        ``absolute_error`` and ``quantile`` (see :func:`gradfit.schedules.auto`).
    power_t : float, default=0.5
    step_size : int, default=100
    gamma : float, default=0.5
    engine : {"auto", "statistics", "pass"}, default="auto"
        Where the gradient comes from; see :mod:`gradfit.engines`.
    random_state : int, Generator or None, default=None
    warm_start : bool, default=False
        Start ``fit`` from the previous coefficients.
    verbose : int, default=0
        Show progress on stdout: a live bar on a terminal, else the tutorial's
        ``Epoch: i Cost: c`` lines (thinned for long runs; every epoch from 2).
        See :mod:`gradfit.progress`.
    categorical : "auto", list, dict or None, default="auto"
        For DataFrames, files and Dask dataframes: which columns are
        categories, treatment coded against their first level in sorted order
        (features named ``g[T.level]``, as statsmodels prints them). ``"auto"``:
        text, ``category``, ``object`` and bool columns; a list adds columns
        (numeric codes), ``"g=LEVEL"`` (or a dict ``{"g": LEVEL}``) names the
        reference; ``None``: none. See :mod:`gradfit.sources.encoding`.
    missing : {"error", "drop"}, default="error"
        A missing value (null, empty field, NaN) in a used column: an error
        naming its row and column, or ``"drop"``: the row is left out, and
        ``fit_report_["missing"]`` counts them per column. ``predict`` then
        returns NaN for a row with a missing feature (one value per row).
        With NumPy arrays, rows with a NaN feature or weight are dropped; a
        NaN target is scikit-learn's input error (a DataFrame's is dropped).
        On Dask (arrays and dataframes) the rows are left out and counted on
        the workers.
    handle_unknown : {"error", "ignore"}, default="error"
        At prediction: a category not seen in training is an error, or
        contributes zero (all of its column's dummies 0).
    formula : str or None, default=None
        A formula, ``"y ~ x + np.log(z) + C(g) + x:w"``, applied by formulaic
        (:mod:`gradfit.formula`); ``fit(X)`` then takes a DataFrame, a file
        path or a Dask dataframe without ``y``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_outputs, n_features)
    intercept_ : float or ndarray of shape (n_outputs,)
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        ``loss_curve_[i]``: the cost at the parameters before epoch ``i``'s update.
    final_cost_ : float
        The cost at the returned parameters.
    converged_ : bool
        True only when the certificate holds: ``certificate_.value <= tol``.
    stop_reason_ : {"converged", "stalled", "max_epochs", "interrupted"}
        ``"converged"`` exactly when ``converged_``; ``"stalled"``: the cost
        stopped improving (``n_iter_no_change``) short of the certificate.
    stop_message_ : str
        The sentence saying how the fit ended, from the fit's record
        (:attr:`gradfit.result.FitResult.message`): the words of
        ``fit_report_["message"]``, the ``ConvergenceWarning``, the command
        line, the model file and the report. ``None`` for a model file
        written before it was recorded that has no fit report either.
    certificate_ : gradfit.certificate.Certificate
        What the fit can prove about its distance to the optimum (``kind``,
        ``value``, ``tol``, ``detail``); also ``fit_report_["certificate"]``.
    optimizer_ : str
        The optimizer that ran (``"auto"`` resolved).
    learning_rate_ : float or None
        The base step used (``None`` for ``cg``).
    engine_ : {"statistics", "pass"}
    optimizer_ : str
        The optimizer that ran.
    refinement_ : dict or None
        For ``optimizer="cg"``, what the refinement epochs did
        (:class:`gradfit.result.Refinement`: ``epochs``, ``corrections``,
        ``condition_number``, ``method``, estimated correct ``digits`` of each
        coefficient then the intercept, ``status``); ``None`` when none ran
        (other optimizers, ``partial_fit``). Its epochs are counted in
        ``n_iter_`` and ``loss_curve_``.
    scaling_ : Scaling
        The standardization (``center``, ``scale``) training ran in.
    n_samples_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when X had string column names
    feature_names_ : list of str
    target_names_ : list of str
    fit_report_ : dict
        Why training stopped and, for the squared error, how far from the
        optimum: ``optimal_cost``, ``gap``, condition numbers, ``2/L``, and the
        epochs plain gradient descent would still need (see :mod:`gradfit.diagnostics`).
    summary_ : dict or None
        For unpenalized squared-error fits, statsmodels-style OLS/WLS
        statistics of the coefficients (intercept first): ``std_error``,
        ``t_value``, ``p_value``, ``ci_lower``, ``ci_upper``, ``r_squared``,
        ``adj_r_squared``, ``f_statistic``, ``residual_std`` … (see
        :mod:`gradfit.summary`); ``None`` otherwise (``fit_report_["statistics"]`` says why).
    """

    _parameter_constraints = sklearn_constraints(parameters.CONSTRAINTS)  # the table: gradfit/parameters.py

    def __init__(
        self,
        *,
        learning_rate="auto",
        epochs=1000,
        tol=1e-6,
        n_iter_no_change=5,
        fit_intercept=True,
        standardize=True,
        optimizer="auto",
        loss="squared_error",
        epsilon=1.35,
        quantile=0.5,
        penalty=None,
        alpha=1e-4,
        l1_ratio=0.15,
        batch_size=None,
        schedule="auto",
        power_t=0.5,
        step_size=100,
        gamma=0.5,
        engine="auto",
        random_state=None,
        warm_start=False,
        verbose=0,
        categorical="auto",
        missing="error",
        handle_unknown="error",
        formula=None,
    ):
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.fit_intercept = fit_intercept
        self.standardize = standardize
        self.optimizer = optimizer
        self.loss = loss
        self.epsilon = epsilon
        self.quantile = quantile
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.batch_size = batch_size
        self.schedule = schedule
        self.power_t = power_t
        self.step_size = step_size
        self.gamma = gamma
        self.engine = engine
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.categorical = categorical
        self.missing = missing
        self.handle_unknown = handle_unknown
        self.formula = formula

    # -- input ----------------------------------------------------------------

    def _source(self, X, y, sample_weight, reset):
        """A :class:`~gradfit.sources.Source` for what ``fit`` was given."""
        if self.formula is not None and not isinstance(X, Source):
            if self.categorical != "auto":
                raise ValueError("with a formula, name categories in it (C(column)), not with categorical=")
            return self._formula_source(X, y, sample_weight, reset)
        if isinstance(X, Source):
            if y is not None:
                raise ValueError("y must be None when X is a gradfit data source (it names its targets)")
            source = X
        elif isinstance(X, (str, os.PathLike)):
            if y is None:
                raise ValueError("fitting a file needs y: the name of its target column(s)")
            source = FileSource(X, target=y, categorical=self.categorical, missing=self.missing,
                                handle_unknown=self.handle_unknown)
        elif is_dask_collection(X) or is_dask_collection(y):
            return self._dask_source(X, y, sample_weight, reset)
        elif frames.is_frame(X) and (
                frames.needs_encoder(X, self.categorical, self.missing) or getattr(self, "encoder_", None)):
            return self._frame_source(X, y, sample_weight, reset)
        else:
            if y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
            target_names = self._target_names_of(y)  # before validation turns a pandas y into an array
            X, y = validate_data(
                self, X, y, reset=reset, multi_output=True, y_numeric=True,
                dtype=[np.float64, np.float32], ensure_all_finite=False, ensure_min_samples=2,
            )
            y = np.asarray(y, dtype=np.float64)
            if reset:
                self._y_ndim = y.ndim
            y = y.reshape(y.shape[0], -1)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            names = getattr(self, "feature_names_in_", None)
            if self.missing == "drop":
                return frames.array_source_dropping(X, y, sample_weight, names, target_names)
            return ArraySource(X, y, sample_weight, names, target_names)
        if sample_weight is not None:
            raise ValueError("with a file or data source, give the weights as a column (sample_weight=...)")
        if reset:
            self._y_ndim = 1 if source.n_outputs == 1 else 2
            if getattr(source, "levels_pending", False):  # set once the statistics pass learned the levels
                vars(self).pop("n_features_in_", None)
            else:
                self.n_features_in_ = source.n_features
        return source

    def _formula_source(self, X, y, sample_weight, reset):
        """A table through ``formula`` (:mod:`gradfit.formula`): a DataFrame, a file, or a Dask dataframe."""
        from .sources.formulas import FormulaSource, dask_formula_source

        if y is not None:
            raise ValueError("with a formula, the target is its left-hand side: pass y=None")
        design = None if reset else getattr(self, "design_", None)
        if is_dask_collection(X):
            if sample_weight is not None:
                raise ValueError("with a formula on Dask, sample weights are not supported")
            source = dask_formula_source(X, self.formula, self.missing, self.handle_unknown, design)
        else:
            if not (isinstance(X, (str, os.PathLike)) or frames.is_frame(X)):
                raise ValueError("a formula needs a DataFrame or a file path (its columns are named)")
            source = FormulaSource(X, self.formula, sample_weight=sample_weight, missing=self.missing,
                                   design=design, handle_unknown=self.handle_unknown)
        source.design.check_intercept(self.fit_intercept)
        if reset:
            self._y_ndim = 1 if source.n_outputs == 1 else 2
            self.n_features_in_ = len(source.design.feature_variables)
            self.feature_names_in_ = np.asarray(source.design.feature_variables, dtype=object)
        return source

    def _frame_source(self, X, y, sample_weight, reset):
        """A DataFrame with categorical columns or missing values, encoded (:mod:`gradfit.sources.frames`)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        source = frames.frame_source(
            X, y, sample_weight, encoder=None if reset else getattr(self, "encoder_", None),
            categorical=self.categorical, missing=self.missing, handle_unknown=self.handle_unknown,
            target_names=self._target_names_of(y),
        )
        if reset:
            self._y_ndim = 1 if np.ndim(y) == 1 else 2
            self.n_features_in_ = len(source.raw_feature_names)
            self.feature_names_in_ = np.asarray(source.raw_feature_names, dtype=object)
        return source

    def _dask_source(self, X, y, sample_weight, reset):
        """Dask arrays or dataframes: a :class:`~gradfit.sources.DaskSource`, summed on the workers."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        source = DaskSource(X, y, sample_weight, categorical=self.categorical,
                            encoder=None if reset else getattr(self, "encoder_", None),
                            handle_unknown=self.handle_unknown, missing=self.missing)
        if reset:
            self._y_ndim = source.y_ndim
            # the raw columns where a dataframe was encoded, as for pandas frames
            self.n_features_in_ = len(source.frame_feature_names) if source.frame_feature_names is not None else \
                source.n_features
            if source.frame_feature_names is not None:
                self.feature_names_in_ = np.asarray(source.frame_feature_names, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif source.encoder is None and source.n_features != self.n_features_in_:
            raise ValueError(f"X has {source.n_features} features, but {type(self).__name__} "
                             f"is expecting {self.n_features_in_} features as input")
        return source

    @staticmethod
    def _target_names_of(y):
        name = getattr(y, "name", None)
        if isinstance(name, str):
            return [name]
        columns = getattr(y, "columns", None)
        if columns is not None and all(isinstance(c, str) for c in columns):
            return list(columns)
        return None

    # -- fitting --------------------------------------------------------------

    def _callbacks(self, callbacks):
        extra = tuple(callbacks or ())
        if not self.verbose:
            return extra
        return (PrintProgress(self.epochs, every=1 if self.verbose >= 2 else None),) + extra

    def fit(self, X, y=None, sample_weight=None, *, callbacks=None, checkpoint=None, checkpoint_every=10,
            resume=None):
        """Fit by gradient descent.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), a path to a CSV or
            Parquet file, or a gradfit data source
        y : array-like of shape (n_samples,) or (n_samples, n_outputs); for a
            path, the target column name(s); for a source, None
        sample_weight : array-like of shape (n_samples,), optional
        callbacks : sequence, optional
            Objects with ``on_epoch_end(epoch, cost, params)``, called after every
            epoch; a true return stops training (see :func:`gradfit.train.train`).
        checkpoint : path, optional
            Write the whole training state here (atomically) every
            ``checkpoint_every`` epochs and when training ends; SIGTERM then
            also stops at the end of an epoch, like Ctrl-C.
        checkpoint_every : int, default=10
        resume : path, optional
            Go on from a checkpoint made with the same parameters (``epochs``
            may differ) on the same data; the result is bit for bit that of an
            unbroken fit. Anything else is refused with a ``CheckpointError``.

        Returns
        -------
        self

        Raises
        ------
        DivergenceError
            If the cost diverges; the estimator is then left as it was.
        IllConditionedError
            With ``optimizer="cg"``, if the problem is too ill-conditioned for
            float64 to determine the coefficients (see :mod:`gradfit.refine`);
            the estimator is then left as it was.

        Notes
        -----
        Ctrl-C during ``fit`` stops training at the end of the current epoch
        and keeps the parameters reached (``stop_reason_ == "interrupted"``);
        a second Ctrl-C aborts at once.
        """
        self._validate_params()
        start = None
        if self.warm_start and hasattr(self, "coef_"):
            start = (np.atleast_2d(self.coef_), np.atleast_1d(self.intercept_))
        source = self._source(X, y, sample_weight, reset=True)
        settings = self.get_params(deep=False)
        params = None
        problem = None
        if start is not None:
            problem = prepare(source, settings)
            params = problem.scaling.from_raw(start[0], start[1], self.fit_intercept)
        shown = dict(quiet=not self.verbose, every=1 if self.verbose >= 2 else None, source=source)
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, not {checkpoint_every}")
        stops = (signal.SIGINT, signal.SIGTERM) if checkpoint is not None else (signal.SIGINT,)
        with progress.reporter(self.epochs, **shown) as bars, progress.Interrupt(signals=stops) as interrupt:
            extra = tuple(callbacks or ())
            result = fit_source(
                source, settings, params=params, problem=problem, callbacks=bars + extra + (interrupt,),
                checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
            )
        self._set_result(result, source)
        self._warn_unsettled(result)
        return self

    def _warn_unsettled(self, result):
        if result.unsettled:
            warnings.warn(f"{type(self).__name__} {result.message}", ConvergenceWarning)

    def partial_fit(self, X, y=None, sample_weight=None, *, callbacks=None):
        """One epoch over the batch given, continuing the optimizer's state.

        The first call fixes the standardization and the step size from its
        batch; later calls must have the same features.
        """
        first = not hasattr(self, "_partial")
        if first:
            self._validate_params()
        source = self._source(X, y, sample_weight, reset=first)
        settings = self.get_params(deep=False)
        if first:
            problem = prepare(source, settings)
            result = fit_source(source, settings, problem=problem, epochs=1, callbacks=self._callbacks(callbacks))
        else:
            state = self._partial
            if source.n_outputs != state.params.shape[1]:
                raise ValueError(f"y has {source.n_outputs} outputs; earlier batches had {state.params.shape[1]}")
            problem = prepare(source, settings, scaling=state.scaling)
            result = fit_source(
                source, settings, params=state.params, opt_state=state.opt_state,
                loss_curve=state.loss_curve, problem=problem, epochs=1,
                learning_rate=state.learning_rate, rng=state.rng, callbacks=self._callbacks(callbacks),
            )
        self._set_result(result, source, full=False)
        self._partial = result
        return self

    def _set_result(self, result, source, full=True, settings=None):
        """Every fitted attribute from the fit's one record (:class:`gradfit.result.FitResult`)."""
        single = self._y_ndim == 1
        if not hasattr(self, "n_features_in_") and hasattr(source, "levels_pending"):
            self.n_features_in_ = source.n_features  # a file's levels, learned in the statistics pass
        self.coef_ = result.coef[0] if single else result.coef
        self.intercept_ = float(result.intercept[0]) if single else result.intercept
        self.n_iter_ = result.n_iter
        self.loss_curve_ = list(result.loss_curve)
        self.final_cost_ = result.final_cost
        self.converged_ = result.converged
        self.stop_reason_ = result.stop_reason
        self.stop_message_ = result.message
        self.certificate_ = result.certificate
        self.learning_rate_ = result.learning_rate
        self.engine_ = result.engine
        self.optimizer_ = result.optimizer or self.optimizer
        self.refinement_ = None if result.refinement is None else result.refinement.as_dict()
        self.scaling_ = result.scaling
        self.n_samples_ = result.statistics.n_samples
        self.feature_names_ = list(source.feature_names)
        self.target_names_ = list(source.target_names)
        settings = self.get_params(deep=False) if settings is None else settings
        self.fit_report_, self.summary_ = analyse(result, settings, source, full=full)
        encoder = getattr(source, "encoder", None)
        self.encoder_ = encoder if encoder is not None and encoder.categorical else None
        self.design_ = getattr(source, "design", None)
        self.fit_report_["notes"][:0] = list(getattr(source, "notes", ()))
        if getattr(source, "missing_counts", None) is not None:
            self.fit_report_["missing"] = {"strategy": "drop", "rows_dropped": int(source.rows_dropped),
                                           "by_column": dict(source.missing_counts)}
        self._fit_result = result

    # -- using ----------------------------------------------------------------

    def predict(self, X):
        """Predictions ``X @ coef_ᵀ + intercept_``, shape (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self, "coef_")
        if is_dask_collection(X):
            return predict_dask(self, X, model_file.predict)  # lazily, block by block on the workers
        encoder = getattr(self, "encoder_", None)
        design = getattr(self, "design_", None)
        codes = layout = None
        if design is not None:
            from .sources.formulas import FormulaSource

            missing = "keep" if self.missing == "drop" else "error"
            source = FormulaSource(X, design=design, missing=missing, handle_unknown=self.handle_unknown,
                                   targets=False)
            if source.block_candidate is not None:
                source.use_blocks()  # a factor of many levels as level codes: its coefficients gathered
            chunks, layout = list(source.chunks()), source.block_layout
            width = source.n_features if layout is None else layout["n_dense"]
            X = np.vstack([chunk.X for chunk in chunks]) if chunks else np.empty((0, width))
            if layout is not None:
                codes = np.concatenate([chunk.codes for chunk in chunks]) if chunks else np.empty(0, np.int64)
        elif encoder is not None or (frames.is_frame(X) and self.missing == "drop"):
            # rows with a missing value (missing="drop") are predicted NaN: one prediction per row
            encoder = encoder or self._numeric_encoder()
            encoder.handle_unknown = self.handle_unknown  # the estimator's setting at predict time
            # a column of many levels comes as level codes: its coefficients gathered, never dense dummies
            layout = None if encoder.block is None else encoder.block_layout()
            out = frames.predict_frame(X, encoder, self.missing, lambda X, codes: model_file.predict(
                X, self.coef_, self.intercept_, codes, layout))  # a block of rows at a time: no whole-frame dummies
            return out[:, 0] if self._y_ndim == 1 else out
        else:
            # missing="drop": a row with a NaN is predicted NaN (one prediction per row)
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32],
                              ensure_all_finite="allow-nan" if self.missing == "drop" else True)
        out = model_file.predict(X, self.coef_, self.intercept_, codes, layout)
        return out[:, 0] if self._y_ndim == 1 else out

    def _numeric_encoder(self):
        """The identity encoder of a model without categories (for frames with missing values)."""
        from .sources.encoding import ColumnCoding, TableEncoder

        names = getattr(self, "feature_names_in_", self.feature_names_)
        return TableEncoder([ColumnCoding(str(name)) for name in names])

    def save(self, path):
        """Write the model as JSON to ``path``, atomically (see :mod:`gradfit.model`)."""
        check_is_fitted(self, "coef_")
        model_file.save(self, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


def _stored_certificate(diagnostics):
    """The certificate a model file recorded (``None`` when it has none or it does not read as one)."""
    stored = (diagnostics or {}).get("certificate") if isinstance(diagnostics, dict) else None
    if not isinstance(stored, dict):
        return None
    value, tol = stored.get("value"), stored.get("tol")
    if not (value is None or isinstance(value, (int, float))) or not (tol is None or isinstance(tol, (int, float))):
        return None
    try:
        return Certificate(str(stored.get("kind")), value, tol, str(stored.get("detail", "")))
    except ValueError:
        return None


def load(path):
    """Read a model file written by :meth:`GDRegressor.save`; returns a fitted estimator."""
    fitted = model_file.load(path)  # validated, its settings too (gradfit.parameters)
    document = fitted.document
    settings = document["settings"]
    valid = GDRegressor().get_params()
    estimator = GDRegressor(**{k: v for k, v in settings.items() if k in valid})
    for name in ("coef_", "intercept_", "feature_names_", "target_names_", "encoder_", "design_", "scaling_",
                 "fit_report_", "summary_"):
        setattr(estimator, name, getattr(fitted, name))
    k, d = document["_coef"].shape
    estimator._y_ndim = 1 if k == 1 else 2
    estimator.n_features_in_ = d
    if estimator.design_ is not None:
        estimator.n_features_in_ = len(estimator.design_.feature_variables)
        estimator.feature_names_in_ = np.asarray(estimator.design_.feature_variables, dtype=object)
    if estimator.encoder_ is not None:  # the model takes the raw columns
        estimator.n_features_in_ = len(estimator.encoder_.raw_names)
        estimator.feature_names_in_ = np.asarray(estimator.encoder_.raw_names, dtype=object)
    elif not all(name == f"x{j}" for j, name in enumerate(estimator.feature_names_)):
        estimator.feature_names_in_ = np.asarray(estimator.feature_names_, dtype=object)
    training = document["training"]
    estimator.n_iter_ = training.get("n_iter")
    estimator.loss_curve_ = training.get("loss_curve", [])
    estimator.final_cost_ = training.get("final_cost")
    estimator.converged_ = training.get("converged")
    estimator.stop_reason_ = training.get("stop_reason")
    # the record's sentence; a file written before the training section held it has it in its report
    estimator.stop_message_ = training.get("message", (document.get("diagnostics") or {}).get("message"))
    estimator.optimizer_ = training.get("optimizer", settings.get("optimizer"))
    estimator.certificate_ = _stored_certificate(document.get("diagnostics"))
    estimator.learning_rate_ = training.get("learning_rate")
    estimator.engine_ = training.get("engine")
    estimator.n_samples_ = training.get("n_samples")
    return estimator
