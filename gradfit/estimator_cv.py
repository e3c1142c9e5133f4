"""``GDRegressorCV``: choose ``alpha`` (and ``l1_ratio``) by cross-validation, from one read of the data.

For the squared error, one pass collects each fold's statistics
(:mod:`gradfit.folds`); every fold's whole regularization path and its
validation errors are then solved from them (:mod:`gradfit.alpha_path`), and the
final model is fitted on all the rows at the chosen alpha by the normal
:class:`~gradfit.GDRegressor` fit, from the pooled statistics: the data are
read once, whatever the number of folds, alphas and l1 ratios.

A categorical column of many levels kept as level codes (a source's
``block_candidate``) stays codes throughout for the squared error: each
fold's statistics are level blocks (:mod:`gradfit.folds`), its path and its
validation errors are solved on them (:mod:`gradfit.block_path`), and the
final fit runs on the blocks as any :class:`~gradfit.GDRegressor` fit does.
So does Huber's cross-validation, with any penalty: each problem's
(proximal) Newton step is solved by its training inliers' level blocks
(:mod:`gradfit.robust.huber_cv`).
"""

from __future__ import annotations

import inspect
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if

from . import progress, registry
from .errors import OptionError
from .estimator import GDRegressor
from .fitting import check_combination, fit_source, on_codes, prepare
from .folds import fold_seed, fold_statistics, split_statistics
from .alpha_path import MAX_SWEEPS, alpha_grid, compiled_kernel
from .block_path import compiled_block_kernel, path_of, quadratic_of, validation_of
from .cv_huber import fold_labels, huber_path
from .robust.huber_cv import PATH_TOL as HUBER_PATH_TOL
from .sources import ArraySource, FileSource
from .sources.base import single_threaded_blas, worker_threads

#: the penalties whose alpha can be cross-validated (those of the table that own an alpha)
CV_PENALTIES = tuple(name for name, part in registry.PENALTIES.items() if "alpha" in part.param_names)
#: the losses that can be cross-validated, by what they declare: a quadratic cost from one
#: pass's per-fold statistics, a Huber-like one by passes that serve every fold
#: (:mod:`gradfit.robust.huber_cv`)
CV_LOSSES = tuple(name for name, part in registry.LOSSES.items() if part.quadratic or part.huberized)
#: the parameters GDRegressorCV adds to (or changes from) GDRegressor's
_OWN = ("penalty", "alphas", "l1_ratio", "eps", "cv", "selection")


#: GDRegressorCV's own parameters and their defaults; the others are GDRegressor's but ``alpha``,
#: which it chooses
CV_PARAMETERS = {"penalty": "elasticnet", "alphas": 100, "l1_ratio": 0.5, "eps": 1e-3, "cv": 5, "selection": "min"}


class GDRegressorCV(GDRegressor):
    """:class:`~gradfit.GDRegressor` with ``alpha`` chosen by k-fold cross-validation.

    For the squared error the data are read once: per-fold sufficient
    statistics give every fold's training problem (the other folds' statistics
    merged) and its exact validation error (a quadratic form of the fold's
    own statistics), so ``n_folds × n_alphas × n_l1_ratios`` fits cost no
    further pass. The L2 path is exact (one eigendecomposition per fold); L1
    and elastic-net paths are solved by coordinate descent on the Gram matrix,
    warm-started along the decreasing grid, each point to a duality gap of
    ``1e-12 · var(y)`` (:data:`gradfit.alpha_path.PATH_TOL`). The chosen model is
    then fitted on all the rows by :class:`~gradfit.GDRegressor`'s own fit,
    started from the path's solution, from the same statistics. A
    categorical column of many levels kept as level codes stays codes: the
    fold statistics are level blocks and the paths and validation errors are
    solved on them (:mod:`gradfit.block_path`), never on a dense one-hot block.

    For ``loss="huber"`` the paths are solved by passes over the data, each of
    which serves every fold, every l1 ratio and the all-rows problem at once
    (:mod:`gradfit.cv_huber`, :mod:`gradfit.robust.huber_cv`): the number of
    passes does not grow with the number of folds. Each point is certified by
    Huber's ``"gradient_bound"`` to a relative gap of ``1e-11``
    (:data:`gradfit.robust.huber_cv.PATH_TOL`); the validation error is the
    held-out rows' mean Huber loss. A column kept as level codes stays
    codes: the steps solve by each problem's inlier level blocks.

    Parameters
    ----------
    penalty : {"l2", "l1", "elasticnet"}, default="elasticnet"
    alphas : int or array-like of float, default=100
        A number of alphas, or the alphas themselves (sorted decreasing, as
        scikit-learn does). A number gives a log-spaced grid: with an L1 part
        from the smallest alpha at which every coefficient is zero (computed on
        all the rows, as ``LassoCV``) down to ``eps`` times it; for L2 alone
        from ``s/eps`` down to ``s·eps``, ``s = 2 tr(G)/d`` the mean eigenvalue
        of the data term's Hessian (:func:`gradfit.alpha_path.alpha_grid`).
        In gradfit's units: see the README's table for scikit-learn's.
    l1_ratio : float or array-like of float in [0, 1], default=0.5
        For ``penalty="elasticnet"``: one ratio or several (each with its own
        grid); ``"l1"`` is ratio 1 and ``"l2"`` ratio 0, as in ``GDRegressor``.
    eps : float, default=1e-3
        The span of a counted grid (``alpha_min / alpha_max``).
    cv : int, cross-validation generator or iterable, default=5
        A number of folds: each row's fold is a seeded hash of its position
        (:func:`gradfit.folds.fold_of`, seed ``random_state``, 0 when ``None``),
        the same for arrays, files and Dask collections; ``gradfit.folds.split``
        lists them for other tools. For data in memory, also any scikit-learn
        splitter or an iterable of ``(train, test)`` index arrays. ``None``: 5.
    selection : {"min", "1se"}, default="min"
        ``"min"``: the alpha (and l1 ratio) of the smallest mean validation
        error, as scikit-learn. ``"1se"``: on the best l1 ratio's grid, the
        largest alpha whose mean error is within one standard error (over
        folds: ``std(ddof=1)/√n_folds``) of the smallest (glmnet's ``lambda.1se``).
    learning_rate, epochs, tol, n_iter_no_change, fit_intercept, standardize, \
optimizer, loss, epsilon, quantile, batch_size, schedule, power_t, step_size, gamma, \
engine, random_state, warm_start, verbose
        As :class:`~gradfit.GDRegressor`, for the final fit. ``loss`` is
        ``"squared_error"`` or ``"huber"`` (with ``epsilon``; then ``cv``
        splits must partition the rows, and ``epochs`` also caps each path
        point's Newton iterations). ``random_state`` also seeds the folds.

    Attributes
    ----------
    alpha_ : float
        The chosen alpha.
    l1_ratio_ : float
        The chosen l1 ratio.
    alphas_ : ndarray of shape (n_alphas,) or (n_l1_ratio, n_alphas)
        The grid(s), decreasing.
    mse_path_ : ndarray of shape (n_alphas, n_folds) or (n_l1_ratio, n_alphas, n_folds)
        Each fold's validation mean squared error (averaged over outputs) at
        each alpha; the l1-ratio axis only with several ratios, as scikit-learn.
        For ``loss="huber"``: the held-out rows' (weighted) mean Huber loss
        ``h(r)`` (:class:`gradfit.losses.Huber`), the loss being cross-validated.
    cv_loss_path_ : ndarray
        The same array as ``mse_path_``, under a name that fits every loss.
    cv_error_ : float
        The mean over folds of the validation error at the chosen point.
    cv_std_error_ : float
        Its standard error over folds, ``std(ddof=1)/√n_folds``.
    coef_path_ : ndarray of shape (n_alphas, n_features) or (n_alphas, n_outputs, n_features)
        The path on all the rows, for the chosen l1 ratio's grid.
    dual_gap_path_ : ndarray of shape (n_l1_ratio, n_alphas, n_folds)
        Each fold's path point's relative duality gap (0 for L2: exact); for
        Huber, the certified bound on its relative objective gap (``NaN``
        where no dual point could be made feasible to rounding).
    n_folds_ : int
    cv_report_ : dict
        What the model file, ``gradfit inspect`` and the report show.
    coef_, intercept_, fit_report_, summary_, ... :
        As :class:`~gradfit.GDRegressor`, of the final fit on all the rows at
        ``alpha_``.
    """

    _parameter_constraints = {
        **{key: value for key, value in GDRegressor._parameter_constraints.items()
           if key not in ("alpha", "l1_ratio", "penalty")},
        "penalty": [StrOptions(set(CV_PENALTIES))],
        "alphas": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "l1_ratio": [Interval(Real, 0, 1, closed="both"), "array-like"],
        "eps": [Interval(Real, 0, 1, closed="neither")],
        "cv": ["cv_object"],
        "selection": [StrOptions({"min", "1se"})],
    }

    def __init__(self, **params):
        # scikit-learn's contract: __init__ only stores the parameters its signature names
        # (CV_PARAMETERS, then GDRegressor's for the final fit: set below, so that a parameter
        # added to GDRegressor is GDRegressorCV's at once), each at its default unless given
        named = list(type(self).__init__.__signature__.parameters.values())[1:]
        for parameter in named:
            setattr(self, parameter.name, params.pop(parameter.name, parameter.default))
        if params:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected keyword arguments: "
                            f"{', '.join(sorted(params))}")

    # -- checks -----------------------------------------------------------------

    def _l1_ratios(self):
        penalty = registry.PENALTIES[self.penalty]
        if "l1_ratio" not in penalty.param_names:  # l1 and l2 fix their own mix
            return [penalty.build({"alpha": 1.0}).l1_ratio]
        ratios = np.atleast_1d(np.asarray(self.l1_ratio, dtype=float))
        if ratios.ndim != 1 or ratios.size == 0 or not np.all((ratios >= 0) & (ratios <= 1)):
            raise ValueError(f"l1_ratio must be a number or a list of numbers in [0, 1], not {self.l1_ratio!r}")
        return [float(r) for r in ratios]

    def _given_alphas(self):
        """The user's alphas, sorted decreasing, or ``None`` for a counted grid."""
        if isinstance(self.alphas, Integral):
            return None
        alphas = np.asarray(self.alphas, dtype=float)
        if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
            raise ValueError(f"alphas must be a count or a list of non-negative numbers, not {self.alphas!r}")
        return np.sort(alphas)[::-1]

    def _final_settings(self, alpha, l1_ratio):
        """The :class:`~gradfit.GDRegressor` parameters of the final fit."""
        settings = {key: value for key, value in self.get_params(deep=False).items() if key not in _OWN}
        settings.update(penalty=self.penalty, alpha=float(alpha))
        # l1 and l2 fix their own mix: any l1_ratio but GDRegressor's default would be refused there
        owned = "l1_ratio" in registry.PENALTIES[self.penalty].param_names
        settings["l1_ratio"] = float(l1_ratio) if owned else GDRegressor().l1_ratio
        return settings

    # -- fitting ----------------------------------------------------------------

    def fit(self, X, y=None, sample_weight=None, *, callbacks=None):
        """Cross-validate the alpha grid(s), then fit all the rows at the chosen alpha.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), a path to a CSV or
            Parquet file, a gradfit data source, or a Dask collection
        y : array-like of shape (n_samples,) or (n_samples, n_outputs); for a
            path, the target column name(s); for a source, None
        sample_weight : array-like of shape (n_samples,), optional
            Weighted training errors and weighted validation means.
        callbacks : sequence, optional
            For the final fit, as :meth:`GDRegressor.fit`.

        Returns
        -------
        self
        """
        self._validate_params()
        if self.loss not in CV_LOSSES:
            raise OptionError(f"GDRegressorCV cross-validates {' and '.join(f'loss={n!r}' for n in CV_LOSSES)}, "
                              f"not loss={self.loss!r}")
        huber = registry.LOSSES[self.loss].huberized  # else quadratic: the statistics' path
        l1_ratios = self._l1_ratios()
        given = self._given_alphas()
        # what the final fit would refuse (optimizer="cg" with L1, ...) is refused before the data are read
        for ratio in l1_ratios:
            settings = self._final_settings(1.0, ratio)
            check_combination(settings, registry.LOSSES[self.loss].build(settings),
                              registry.PENALTIES[self.penalty].build(dict(settings, l1_ratio=ratio)))
        start = None
        if self.warm_start and hasattr(self, "coef_"):
            start = (np.atleast_2d(self.coef_), np.atleast_1d(self.intercept_))
        source = self._source(X, y, sample_weight, reset=True)
        learned = None if huber else self._learned_fold_statistics(source)
        if source.block_candidate is not None:
            # the folds, paths and validation errors run on the level blocks (block_path), and Huber's
            # passes read the codes, each step solved by the inliers' level blocks (robust.huber_cv)
            source.use_blocks(True)
        folds = self._folds(source)  # a count, or the splits (drawn once: a shuffling splitter draws anew)
        labels_of = None
        if huber:  # Huber's passes need each row's fold (refuses overlapping splits unread)
            labels_of = fold_labels(folds, self.random_state, source)
        statistics = learned if learned is not None else self._fold_statistics(source, folds)
        self.n_folds_ = statistics.n_folds

        if huber:
            grids, mse, gaps, paths = self._huber_path(source, statistics, labels_of, l1_ratios, given)
        else:
            grids, mse, gaps = self._squared_path(statistics, l1_ratios, given)
        n_folds = statistics.n_folds
        n_l1 = len(l1_ratios)

        best_ratio, best_alpha, mean, std_error = select(mse, self.selection)
        alpha, ratio = float(grids[best_ratio, best_alpha]), l1_ratios[best_ratio]
        if huber:  # the all-rows problems were solved along the path in the same passes
            path_coefs, path_intercepts = paths["coefs"][best_ratio], paths["intercepts"][best_ratio]
        else:  # the path on all the rows, from the statistics
            full_path = path_of(quadratic_of(statistics.total, self.fit_intercept), grids[best_ratio], ratio)
            path_coefs, path_intercepts = full_path.coefs, full_path.intercepts

        # the final fit starts from the path's point at the chosen alpha
        settings = self._final_settings(alpha, ratio)
        problem = prepare(source, settings, statistics=statistics.total)
        if start is None:
            coef, intercept = path_coefs[best_alpha], path_intercepts[best_alpha]
        else:
            coef, intercept = start
        params = problem.scaling.from_raw(coef, intercept, self.fit_intercept)
        shown = dict(quiet=not self.verbose, every=1 if self.verbose >= 2 else None, source=source)
        with progress.reporter(self.epochs, **shown) as bars, progress.Interrupt() as interrupt:
            result = fit_source(source, settings, params=params, problem=problem,
                                callbacks=bars + tuple(callbacks or ()) + (interrupt,))
        self._set_result(result, source, settings=settings)
        self._warn_unsettled(result)

        single = self._y_ndim == 1
        self.alpha_, self.l1_ratio_ = alpha, ratio
        self.alphas_ = grids[0] if n_l1 == 1 else grids
        self.mse_path_ = mse[0] if n_l1 == 1 else mse
        self.cv_loss_path_ = self.mse_path_
        self.dual_gap_path_ = gaps
        self.coef_path_ = path_coefs[:, 0, :] if single else path_coefs
        self.cv_error_ = float(mean[best_ratio, best_alpha])
        self.cv_std_error_ = float(std_error[best_ratio, best_alpha])
        self.cv_report_ = {
            "selection": self.selection,
            "loss": self.loss,
            "n_folds": n_folds,
            "folds": "hashed" if isinstance(self.cv, Integral) or self.cv is None else "given",
            "penalty": self.penalty,
            "alpha": alpha,
            "l1_ratio": ratio,
            "cv_error": self.cv_error_,
            "cv_std_error": self.cv_std_error_,
            "l1_ratios": list(l1_ratios),
            "alphas": grids.tolist(),
            "mean_mse": mean.tolist(),
            "std_error": std_error.tolist(),
            "coef_path": path_coefs.tolist(),
            "max_dual_gap": float(np.nanmax(gaps)) if np.any(np.isfinite(gaps)) else None,
        }
        if huber:
            self.cv_report_["passes"] = paths["passes"]
        self._final_settings_ = settings
        return self

    def _squared_path(self, statistics, l1_ratios, given):
        """The squared error's paths from the fold statistics: ``(grids, mse, gaps)`` (no pass)."""
        total = quadratic_of(statistics.total, self.fit_intercept)
        grids = np.array([given if given is not None else alpha_grid(total, r, self.alphas, self.eps)
                          for r in l1_ratios])
        folds = [quadratic_of(s, self.fit_intercept) for s in statistics.train]
        n_l1, n_alphas, n_folds = len(l1_ratios), grids.shape[1], statistics.n_folds
        mse = np.empty((n_l1, n_alphas, n_folds))
        gaps = np.empty((n_l1, n_alphas, n_folds))
        unsettled = 0
        jobs = [(i, f) for i in range(n_l1) for f in range(n_folds)]

        def solve(job):
            i, f = job
            path = path_of(folds[f], grids[i], l1_ratios[i])
            return validation_of(statistics.test[f], path.coefs, path.intercepts), path

        kernel = None
        if any(r > 0 for r in l1_ratios):
            kernel = compiled_block_kernel if on_codes(statistics.total) else compiled_kernel
        for (i, f), (errors, path) in zip(jobs, _map(solve, jobs, kernel)):
            mse[i, :, f] = errors
            gaps[i, :, f] = path.dual_gaps.max(axis=1)
            unsettled += int(np.sum(~path.converged))
        if unsettled:
            warnings.warn(f"{unsettled} points of the cross-validation paths did not reach their duality gap "
                          f"in {MAX_SWEEPS} sweeps", ConvergenceWarning)
        return grids, mse, gaps

    def _huber_path(self, source, statistics, labels_of, l1_ratios, given):
        """Huber's paths, every pass serving all folds (:mod:`gradfit.cv_huber`): ``(grids, loss, gaps, path)``."""
        path = huber_path(source, statistics, labels_of, l1_ratios, given, n_alphas=self.alphas, eps=self.eps,
                          epsilon=self.epsilon, fit_intercept=self.fit_intercept, max_iter=self.epochs)
        if path["unsettled"]:
            warnings.warn(f"{path['unsettled']} points of the cross-validation paths stopped at rounding before "
                          f"their certificate reached {HUBER_PATH_TOL:g}", ConvergenceWarning)
        return path["grids"], path["cv_loss"], path["gaps"][:, :, :-1], path

    def _folds(self, source):
        """``cv`` checked: a number of folds (``None``: 5), or, for data in memory, the list of its splits."""
        cv = 5 if self.cv is None else self.cv
        if isinstance(cv, Integral):
            if cv < 2:
                raise ValueError(f"cv must be at least 2 folds, not {cv}")
            if source.n_samples is not None and source.n_samples < cv:
                raise ValueError(f"cannot make {cv} folds of {source.n_samples} samples")
            return cv
        if not isinstance(source, ArraySource):
            raise ValueError("a scikit-learn splitter or a list of (train, test) pairs needs data in memory; "
                             "for a file or a Dask collection give cv a number of folds")
        # a frame encoded chunk by chunk: the splitter sees its rows alone (it needs the rows, not the dummies)
        X = np.empty((source.n_samples, 0)) if hasattr(source, "subset") else source.X
        return list(check_cv(cv).split(X, source.y[:, 0] if source.n_outputs == 1 else source.y))

    def _learned_fold_statistics(self, source):
        """The squared error's fold statistics of a file whose levels are pending, learned in the folds' pass
        itself (:func:`gradfit.folds.fold_statistics`: one read); ``None`` for any other source or ``cv``."""
        cv = 5 if self.cv is None else self.cv
        if not isinstance(source, FileSource) or not source.levels_pending or not isinstance(cv, Integral) or cv < 2:
            return None
        if source.missing != "drop" and source.n_samples is not None and source.n_samples < cv:
            return None  # (refused by _folds, unread; with "drop" the rows kept are counted in the pass)
        return fold_statistics(source, cv, fold_seed(self.random_state))

    def _fold_statistics(self, source, folds):
        """One pass: hashed folds for a count, or the given splits (:meth:`_folds`) for data in memory."""
        if isinstance(folds, Integral):
            return fold_statistics(source, folds, fold_seed(self.random_state))
        return split_statistics(source, folds)

    # cross-validation needs all the data at once: no partial_fit (hasattr says so)
    partial_fit = available_if(lambda self: False)(GDRegressor.partial_fit)


def _map(function, jobs, kernel):
    """``map(function, jobs)``, on the source's threads when there are several.

    The coordinate-descent kernels release the GIL (and the L2 path is LAPACK),
    so the (l1 ratio, fold) paths run side by side; ``kernel`` (the loader of
    the one the paths use, or ``None``) is loaded first, once, rather than by every thread.
    """
    threads = min(worker_threads(), len(jobs))
    if threads < 2:
        return map(function, jobs)
    if kernel is not None:
        kernel()
    with single_threaded_blas(), ThreadPoolExecutor(threads, thread_name_prefix="gradfit-cv") as executor:
        return list(executor.map(function, jobs))


def select(mse, selection):
    """The chosen ``(l1-ratio index, alpha index)``, and the mean and standard error over folds.

    Parameters
    ----------
    mse : ndarray of shape (n_l1_ratio, n_alphas, n_folds)
    selection : {"min", "1se"}

    Returns
    -------
    best_ratio, best_alpha : int
    mean, std_error : ndarray of shape (n_l1_ratio, n_alphas)
    """
    mean = mse.mean(axis=2)
    n_folds = mse.shape[2]
    std_error = mse.std(axis=2, ddof=1) / np.sqrt(n_folds) if n_folds > 1 else np.zeros_like(mean)
    best_ratio, best_alpha = np.unravel_index(int(np.argmin(mean)), mean.shape)
    if selection == "1se":
        threshold = mean[best_ratio, best_alpha] + std_error[best_ratio, best_alpha]
        # the grid decreases: the first alpha within the threshold is the largest
        best_alpha = int(np.flatnonzero(mean[best_ratio] <= threshold)[0])
    return int(best_ratio), int(best_alpha), mean, std_error


def _signature():
    """``GDRegressorCV.__init__``'s signature: :data:`CV_PARAMETERS`, then GDRegressor's other parameters."""
    inherited = inspect.signature(GDRegressor.__init__).parameters
    own = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
           for name, default in CV_PARAMETERS.items()]
    rest = [parameter for name, parameter in inherited.items() if name not in CV_PARAMETERS and name != "alpha"]
    return inspect.Signature([rest[0]] + own + rest[1:])  # rest[0]: self


GDRegressorCV.__init__.__signature__ = _signature()
