"""Reference data: a reader for NIST's StRD linear least-squares files.

The Statistical Reference Datasets (https://www.itl.nist.gov/div898/strd/lls/lls.shtml)
give, for each data set, the data and its least-squares solution certified to
15 significant digits. :func:`load_strd` reads one ``.dat`` file into the
design a linear model fits and the certified values to compare with;
:func:`log_relative_error` is the measure NIST's accuracy studies use.

The file layout (``../shared/data/strd/README.md``): line 5 gives the line
range of the certified values and line 6 that of the data (1-based,
inclusive); certified rows are ``Bk  estimate  sd``, then ``Residual /
Standard Deviation  s`` and ``R-Squared  r2``; in the data block y comes first.
The design is read off the parameters and the columns: a model without
``B0`` has no intercept; one predictor column with more slopes than columns is
the polynomial ``x, x², …, x^p`` (Pontius, Filip, Wampler); otherwise the raw
columns (Longley).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .model import predict

_RANGE = re.compile(r"lines\s+(\d+)\s+to\s+(\d+)", re.IGNORECASE)
_PARAMETER = re.compile(r"^\s*B(\d+)\s+(\S+)\s+(\S+)")


@dataclass(frozen=True)
class StRD:
    """One StRD linear regression problem and its certified solution.

    Attributes
    ----------
    name : str
        E.g. ``"Longley"`` (the file's stem).
    X : ndarray of shape (n_samples, n_features)
        The design without the column of ones (``x, x², …`` for polynomials).
    y : ndarray of shape (n_samples,)
    fit_intercept : bool
        Whether the model has ``B0``.
    coef : ndarray of shape (n_features,)
        Certified ``B1, B2, …``.
    intercept : float
        Certified ``B0`` (0.0 without an intercept).
    coef_sd, intercept_sd : ndarray of shape (n_features,), float
        Certified standard deviations of the estimates.
    residual_sd : float
        Certified ``s = √(RSS / (n − p))``, ``p`` counting the intercept.
    r2 : float
        Certified R², uncentred (``1 − RSS/Σy²``) without an intercept.
    polynomial_degree : int or None
        The degree when the design is a polynomial in one ``x``.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    fit_intercept: bool
    coef: np.ndarray
    intercept: float
    coef_sd: np.ndarray
    intercept_sd: float
    residual_sd: float
    r2: float
    polynomial_degree: int | None

    @property
    def n_params(self):
        """``p``: the certified parameters, the intercept included."""
        return self.X.shape[1] + self.fit_intercept

    @property
    def certified(self):
        """All certified estimates, ``B0`` (when present) first, shape (p,)."""
        if self.fit_intercept:
            return np.concatenate([[self.intercept], self.coef])
        return self.coef.copy()


def _number(text, path, line):
    try:
        return float(text)
    except ValueError:
        raise DataError(f"file {os.fspath(path)!r}, line {line}: {text!r} is not a number") from None


def load_strd(path):
    """Read an StRD linear least-squares ``.dat`` file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    StRD

    Raises
    ------
    DataError
        If the header does not give the line ranges, a number cannot be read,
        or the certified values are incomplete.
    """
    with open(path, encoding="ascii") as handle:
        lines = handle.read().splitlines()
    ranges = [_RANGE.search(line) for line in lines[:10]]
    ranges = [(int(m.group(1)), int(m.group(2))) for m in ranges if m]
    if len(ranges) < 2:
        raise DataError(f"file {os.fspath(path)!r}: no 'lines A to B' ranges in its header (not an StRD file?)")
    (cert_first, cert_last), (data_first, data_last) = ranges[:2]

    estimates, sds = {}, {}
    residual_sd = r2 = None
    for number in range(cert_first, cert_last + 1):
        line = lines[number - 1]
        match = _PARAMETER.match(line)
        if match:
            index = int(match.group(1))
            estimates[index] = _number(match.group(2), path, number)
            sds[index] = _number(match.group(3), path, number)
        elif "Standard Deviation" in line and "Parameter" not in line and line.split():
            residual_sd = _number(line.split()[-1], path, number)
        elif "R-Squared" in line:
            r2 = _number(line.split()[-1], path, number)
    if not estimates or residual_sd is None or r2 is None:
        raise DataError(f"file {os.fspath(path)!r}: certified values incomplete in lines {cert_first}-{cert_last}")

    rows = []
    for number in range(data_first, data_last + 1):
        fields = lines[number - 1].split()
        if fields:
            rows.append([_number(field, path, number) for field in fields])
    data = np.array(rows, dtype=np.float64)
    y, columns = data[:, 0].copy(), data[:, 1:]

    fit_intercept = 0 in estimates
    slopes = sorted(i for i in estimates if i > 0)
    if slopes != list(range(1, len(slopes) + 1)):
        raise DataError(f"file {os.fspath(path)!r}: certified parameters {sorted(estimates)} are not B0/B1..Bp")
    degree = None
    if columns.shape[1] == len(slopes):
        X = columns.copy()
    elif columns.shape[1] == 1:
        # A polynomial in one x; the powers are formed in float64 as every peer does.
        degree = len(slopes)
        X = np.column_stack([columns[:, 0] ** power for power in range(1, degree + 1)])
    else:
        raise DataError(
            f"file {os.fspath(path)!r}: {columns.shape[1]} predictor columns for {len(slopes)} slopes"
        )
    return StRD(
        name=os.path.splitext(os.path.basename(os.fspath(path)))[0],
        X=X,
        y=y,
        fit_intercept=fit_intercept,
        coef=np.array([estimates[i] for i in slopes]),
        intercept=estimates.get(0, 0.0),
        coef_sd=np.array([sds[i] for i in slopes]),
        intercept_sd=sds.get(0, 0.0),
        residual_sd=residual_sd,
        r2=r2,
        polynomial_degree=degree,
    )


def log_relative_error(estimate, certified, cap=15.0):
    """NIST's digits of agreement: ``−log10(|est − cert| / |cert|)``, elementwise.

    With ``cert = 0`` the absolute error ``−log10(|est|)`` is used. The result is
    capped at ``cap`` (identical to every printed digit) and floored at 0;
    a non-finite estimate scores 0.
    """
    estimate = np.asarray(estimate, dtype=float)
    certified = np.asarray(certified, dtype=float)
    error = np.abs(estimate - certified)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(certified != 0, error / np.abs(certified), error)
        digits = -np.log10(relative)
    digits = np.where(np.isnan(digits), 0.0, digits)
    return np.clip(digits, 0.0, cap)


def residual_statistics(X, y, coef, intercept, fit_intercept):
    """``(s, R²)`` as StRD certifies them, for the model ``X @ coef + intercept``.

    ``s = √(RSS / (n − p))`` with ``p`` counting the intercept; R² is centred
    with an intercept and uncentred (``1 − RSS/Σy²``) without one. The sums
    are taken with ``math.fsum`` so the rounding here does not hide the model's.
    """
    residual = y - predict(X, coef, intercept)[:, 0]
    rss = math.fsum(residual * residual)
    n, p = X.shape[0], X.shape[1] + fit_intercept
    if fit_intercept:
        mean = math.fsum(y) / n
        total = math.fsum((y - mean) ** 2)
    else:
        total = math.fsum(y * y)
    return math.sqrt(rss / (n - p)), 1.0 - rss / total
