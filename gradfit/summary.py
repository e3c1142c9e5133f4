"""Regression statistics of a squared-error fit, from the sufficient statistics.

What statsmodels' OLS (and WLS) summary gives — standard errors, t values,
p-values, confidence intervals, R², adjusted R², the F statistic and the
residual standard deviation — computed from the centred scatter matrix the
statistics engine already holds (``../shared/DESIGN.md``), with no pass over
the data.

With row weights ``v`` (``W = Σ v``), means ``μ`` and the centred weighted
scatter ``S``, for the design with an intercept

    Var(coef)      = σ² Sₓₓ⁻¹,        Var(intercept) = σ² (1/W + μₓᵀ Sₓₓ⁻¹ μₓ),

and without one ``Var(coef) = σ² (Sₓₓ + W μₓμₓᵀ)⁻¹`` (the uncentred ``XᵀVX``),
where ``σ² = SSE / (n − p)``, ``p`` counting the intercept. Working from the
centred scatter keeps the digits that ``XᵀVX − W μμᵀ`` would lose.

Gradient descent may stop short of the least-squares coefficients, so the
statistics fall in two kinds:

* of the data and the least-squares estimator, whatever the fit returned:
  ``std_error``, ``residual_std`` (``σ``, from the optimal ``SSE*``), the F
  statistic and its p-value (the regression's overall test), the degrees of
  freedom. ``(XᵀVX)⁻¹`` does not involve coefficients, and ``σ`` comes from the
  optimum the statistics already determine, so these equal statsmodels' even
  after a few epochs;
* of the returned coefficients, the model one predicts with: ``estimate``,
  ``t_value = estimate / std_error``, its ``p_value``, the interval
  ``estimate ± t₀.₉₇₅ · std_error``, and ``r_squared`` / ``adj_r_squared`` from
  their own ``SSE`` (the ``score`` of the model on its training data).

Once the fit has converged the two coincide (to about ``tol``). A fit that is
not certified converged never gets OLS statistics of its returned
coefficients: :func:`gradfit.diagnostics.analyse` then evaluates them at the
least-squares optimum the statistics give, and says so (``evaluated_at``,
``note``); every table prints that note above it.
"""

from __future__ import annotations

import math

import numpy as np

#: the confidence level of ``ci_lower`` / ``ci_upper``
CONFIDENCE = 0.95
PER_COEFFICIENT = ("estimate", "std_error", "t_value", "p_value", "ci_lower", "ci_upper")
PER_OUTPUT = ("r_squared", "adj_r_squared", "f_statistic", "f_p_value", "residual_std", "sse")


class Unavailable(Exception):
    """The statistics do not exist for this fit; the message says why (one line)."""


def _covariance_factor(stats, fit_intercept):
    """The diagonal of ``(X̃ᵀVX̃)⁻¹``, intercept first, for the design ``X̃ = [1, X]`` or ``X``.

    The matrix is equilibrated (unit diagonal) before it is decomposed, so the
    result loses about ``cond(correlation) · ε`` relative, not ``cond(XᵀVX) · ε``.

    Raises
    ------
    Unavailable
        When the features are collinear (numerically, to the Gram's precision).
    """
    import scipy.linalg  # here: reading and printing statistics (inspect) needs no SciPy

    d = stats.n_features
    total = stats.sum_weights
    mean = stats.mean[:d]
    matrix = stats.scatter[:d, :d]
    if not fit_intercept:
        matrix = matrix + total * np.outer(mean, mean)
    spread = np.sqrt(np.diagonal(matrix))
    if np.any(spread == 0):
        column = int(np.argmin(spread))
        raise Unavailable(f"feature {column} is constant{' (the intercept already fits it)' if fit_intercept else ' zero'}")
    correlation = matrix / np.outer(spread, spread)
    eigenvalues, vectors = scipy.linalg.eigh(correlation)
    # A Gram matrix squares the condition number of the data: below this ratio
    # its smallest eigenvalue is rounding, and the inverse would be noise.
    if eigenvalues[0] <= eigenvalues[-1] * d * np.finfo(float).eps:
        with np.errstate(over="ignore"):  # exactly collinear: λmin ≤ 0, and the ratio is inf
            condition = eigenvalues[-1] / max(eigenvalues[0], np.finfo(float).tiny)
        raise Unavailable(
            f"the features are collinear (condition number of their correlation matrix "
            f"{condition:.3g}); "
            "the coefficients are not determined by the data"
        )
    # diag(M⁻¹) = diag(D⁻¹ V Λ⁻¹ Vᵀ D⁻¹) with D = diag(spread).
    coef_factor = np.einsum("ij,j,ij->i", vectors, 1.0 / eigenvalues, vectors) / (spread * spread)
    if not fit_intercept:
        return coef_factor
    projected = vectors.T @ (mean / spread)
    intercept_factor = 1.0 / total + float(np.sum(projected * projected / eigenvalues))
    return np.concatenate([[intercept_factor], coef_factor])


def _block_covariance_factor(blocks, fit_intercept):
    """:func:`_covariance_factor` of block statistics: the diagonal of the inverse through the level block.

    See :meth:`gradfit.engines.categorical.LevelBlocks.covariance_diagonal`
    (``O(L·p²)``, no d × d matrix).
    """
    from .errors import DataError

    try:
        return blocks.covariance_diagonal(fit_intercept)
    except DataError as exc:
        raise Unavailable(str(exc)) from None


def regression_statistics(stats, coef, intercept, sse, optimal_sse, fit_intercept, feature_names=None):
    """statsmodels-style OLS/WLS statistics of the coefficients ``coef``, ``intercept``.

    Parameters
    ----------
    stats : Statistics
        With the full centred scatter matrix (see :mod:`gradfit.engines.statistics`).
    coef : ndarray of shape (n_outputs, n_features)
    intercept : ndarray of shape (n_outputs,)
    sse : ndarray of shape (n_outputs,)
        The weighted residual sum of squares ``Σ v r²`` of these coefficients.
    optimal_sse : ndarray of shape (n_outputs,)
        The least-squares one (``sse`` itself at the optimum).
    fit_intercept : bool
    feature_names : list of str, optional

    Returns
    -------
    dict
        Per coefficient (intercept first when there is one): ``estimate``,
        ``std_error``, ``t_value``, ``p_value`` (two-sided), ``ci_lower``,
        ``ci_upper`` (95%); per output: ``r_squared`` (uncentred without an
        intercept, as statsmodels), ``adj_r_squared``, ``f_statistic``,
        ``f_p_value``, ``residual_std`` (``√(SSE*/df_resid)``), ``sse`` (of
        the returned coefficients); and
        ``names``, ``n_observations``, ``df_model``, ``df_resid``,
        ``confidence``. Each per-coefficient entry is an array of shape
        (n_outputs, n_params) and each per-output one of shape (n_outputs,);
        :func:`to_json` flattens a single output.

    Raises
    ------
    Unavailable
        Collinear or constant features, or no residual degrees of freedom.

    Notes
    -----
    ``n_observations`` counts rows, zero-weight rows included, as statsmodels'
    ``WLS`` does; with weights, ``SSE``, ``residual_std`` and the sums of squares
    are in the weights' units (statsmodels' whitened ones) while standard
    errors, t values and R² do not depend on how the weights are scaled.
    """
    import scipy.stats  # here: reading and printing statistics (inspect) needs no SciPy

    d = stats.n_features
    n_params = d + bool(fit_intercept)
    n_obs = int(stats.n_samples)
    df_resid = n_obs - n_params
    if df_resid <= 0:
        raise Unavailable(f"{n_obs} rows leave no residual degrees of freedom for {n_params} parameters")
    blocks = getattr(stats, "blocks", None)  # a categorical column kept as blocks (gradfit.engines.categorical)
    factor = _covariance_factor(stats, fit_intercept) if blocks is None else _block_covariance_factor(blocks,
                                                                                                      fit_intercept)
    total = stats.sum_weights
    target_mean = stats.mean[d:]
    target_scatter = (np.diagonal(stats.scatter) if blocks is None else stats.scatter_diagonal)[d:]
    estimate = np.asarray(coef, dtype=float)
    if fit_intercept:
        estimate = np.column_stack([np.asarray(intercept, dtype=float), estimate])
    sse = np.asarray(sse, dtype=float)
    optimal_sse = np.asarray(optimal_sse, dtype=float)
    variance = optimal_sse / df_resid
    with np.errstate(over="ignore"):  # data near float64's limits: statistics of inf, written as "inf"
        std_error = np.sqrt(variance[:, None] * factor[None, :])
    quantile = scipy.stats.t.ppf(0.5 + CONFIDENCE / 2, df_resid)
    # statsmodels: centred total sum of squares with a constant, uncentred without.
    tss = target_scatter if fit_intercept else target_scatter + total * target_mean * target_mean
    df_model = d
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t_value = estimate / std_error
        r_squared = 1.0 - sse / tss
        f_statistic = ((tss - optimal_sse) / df_model) / variance
    p_value = 2.0 * scipy.stats.t.sf(np.abs(t_value), df_resid)
    adj_r_squared = 1.0 - (n_obs - bool(fit_intercept)) / df_resid * (1.0 - r_squared)
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(d)]
    return {
        "names": (["(intercept)"] if fit_intercept else []) + names,
        "estimate": estimate,
        "std_error": std_error,
        "t_value": t_value,
        "p_value": p_value,
        "ci_lower": estimate - quantile * std_error,
        "ci_upper": estimate + quantile * std_error,
        "r_squared": r_squared,
        "adj_r_squared": adj_r_squared,
        "f_statistic": f_statistic,
        "f_p_value": scipy.stats.f.sf(f_statistic, df_model, df_resid),
        "residual_std": np.sqrt(variance),
        "sse": sse,
        "n_observations": n_obs,
        "df_model": df_model,
        "df_resid": df_resid,
        "confidence": CONFIDENCE,
    }


def to_json(statistics):
    """JSON-shaped form: plain lists and floats.

    One output gives flat per-coefficient lists and scalars (``std_error``:
    ``[se_intercept, se_x0, ...]``, ``r_squared``: a number); several give one
    list (or number) per output, in the order of ``target_names``. Non-finite
    numbers stay floats here; :func:`plain` spells them as strings for a file.
    """
    single = len(np.atleast_1d(statistics["r_squared"])) == 1
    out = {}
    for key, value in statistics.items():
        if key in PER_COEFFICIENT:
            rows = [[float(v) for v in row] for row in np.atleast_2d(value)]
            out[key] = rows[0] if single else rows
        elif key in PER_OUTPUT:
            values = [float(v) for v in np.atleast_1d(value)]
            out[key] = values[0] if single else values
        else:
            out[key] = value
    return out


def plain(value):
    """``value`` with NumPy scalars made Python ones and non-finite floats spelled ``"inf"``/``"nan"``.

    The model file's convention (strict JSON has no infinities); :func:`unplain` reverses it.
    """
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else str(float(value))
    return value


_SPELLED = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def unplain(value):
    """Inverse of :func:`plain`: ``"inf"``, ``"-inf"``, ``"nan"`` back to floats."""
    if isinstance(value, dict):
        return {key: unplain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unplain(item) for item in value]
    if isinstance(value, str) and value in _SPELLED:
        return _SPELLED[value]
    return value


def per_output(statistics, output):
    """The statistics of one output from a :func:`to_json` (or raw) dict."""
    multi = isinstance(statistics["r_squared"], (list, np.ndarray)) and np.ndim(statistics["r_squared"]) == 1
    pick = {}
    for key in PER_COEFFICIENT + PER_OUTPUT:
        value = statistics.get(key)
        if value is None:
            continue
        pick[key] = value[output] if multi else value
    return pick


#: a categorical column with more levels than this shows only the first ones in tables
LEVELS_SHOWN = 10
LEVELS_FOLDED_ABOVE = 20


def shown_rows(names):
    """What a table lists of ``names``: indices, and in place of a long run of one column's levels, a line.

    A categorical column's features (``g[T.a]``, ``g[T.b]``, …) follow each
    other; beyond :data:`LEVELS_FOLDED_ABOVE` of them only the first
    :data:`LEVELS_SHOWN` are listed, then ``"... 290 more levels of g"``
    (a string); every value stays in the model file (``inspect --json``).
    """
    items, i = [], 0
    while i < len(names):
        column = names[i].split("[T.", 1)[0] if "[T." in names[i] else None
        j = i + 1
        while column is not None and j < len(names) and names[j].startswith(column + "[T."):
            j += 1
        if column is not None and j - i > LEVELS_FOLDED_ABOVE:
            items += list(range(i, i + LEVELS_SHOWN))
            items.append(f"... {j - i - LEVELS_SHOWN} more levels of {column} (all in the model file: inspect --json)")
        else:
            items += list(range(i, j))
        i = j
    return items


def _fmt(value, width=11):
    """A number in ``width`` columns, 5 significant digits ("nan"/"inf" as they are)."""
    try:
        text = f"{float(value):.5g}"
    except (TypeError, ValueError):
        text = str(value)
    return f"{text:>{width}}"


def p_text(value):
    """A p-value for people: 3 significant digits, and ``<1e-300`` where float64 underflowed to 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "<1e-300" if value == 0 else f"{value:.3g}"


def format_table(statistics, target_names=None):
    """The statistics as text tables, one per output (what ``gradfit inspect`` prints).

    Returns
    -------
    list of str
        Lines, without trailing newlines.
    """
    names = statistics["names"]
    multi = np.ndim(statistics["r_squared"]) == 1
    n_outputs = len(statistics["r_squared"]) if multi else 1
    targets = target_names or [f"y{j}" for j in range(n_outputs)]
    width = max(len(n) for n in names) + 2
    lines = []
    if statistics.get("note"):
        lines.append(f"note: {statistics['note']}")
    for j in range(n_outputs):
        row = per_output(statistics, j)
        at = statistics.get("evaluated_at")
        lines.append(
            f"statistics for {targets[j]}{' at the ' + at if at else ''} ({statistics['n_observations']} rows, "
            f"{statistics['df_resid']} residual degrees of freedom):"
        )
        lines.append(
            f"  R^2 {_fmt(row['r_squared'], 0)}   adj. R^2 {_fmt(row['adj_r_squared'], 0)}   "
            f"F {_fmt(row['f_statistic'], 0)} (p {p_text(row['f_p_value'])})   "
            f"residual std {_fmt(row['residual_std'], 0)}"
        )
        percent = f"{statistics.get('confidence', CONFIDENCE):.0%}"
        header = ["coef", "std err", "t", "P>|t|", f"{percent} low", f"{percent} high"]
        lines.append("  " + " " * width + "".join(f"{h:>12}" for h in header))
        for i in shown_rows(names):
            if isinstance(i, str):
                lines.append(f"  {i}")
                continue
            name = names[i]
            values = [_fmt(row[key][i]) for key in PER_COEFFICIENT]
            values[3] = f"{p_text(row['p_value'][i]):>11}"
            lines.append(f"  {name:<{width}}" + "".join(" " + v for v in values))
    return lines
