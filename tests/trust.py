"""The public contract of issue 11, as checks shared by the real-data table and the property tests.

Every finished fit either

* says ``converged_`` and *is* within ``tol`` of the optimum in its
  certificate's measure (:mod:`gradfit.certificate`; checked here against an
  independent oracle from :mod:`tests.oracles`), or
* says ``converged_ = False`` and warns (``ConvergenceWarning``, or the CLI's
  ``gradfit: warning:`` line) with the certificate's value in the message,

and in both cases ``fit_report_["certificate"]["value"]`` bounds the distance
the oracle measures (up to floating point and the oracle's own error).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .oracles import EPS, mentions_value, relative_coef_error, relative_objective_gap

#: a converged "distance" fit may be this many tol from the oracle (the certificate is computed in floating point)
DISTANCE_SLACK = 10.0
#: a converged objective-gap fit: its certificate bounds (F − F*)/F(θ) ≤ tol; the oracle's gap is relative to F*
GAP_SLACK = 1.5
#: a certificate may read this much (relative) below the error it bounds: rounding in either computation
BOUND_RELATIVE_SLACK = 1e-3


def fit_recording(estimator, *args, **kwargs):
    """``estimator.fit(*args, **kwargs)``, returning the ConvergenceWarning messages it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(*args, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def certificate_of(estimator):
    """``fit_report_["certificate"]``, with a message saying what is missing when it is."""
    report = getattr(estimator, "fit_report_", None) or {}
    assert "certificate" in report, (
        "fit_report_ has no 'certificate' (issue 11, item 1: the report shows the certificate's value); "
        f"keys: {sorted(report)}"
    )
    certificate = report["certificate"]
    for key in ("kind", "value", "tol", "converged"):
        assert key in certificate, f"certificate lacks {key!r}: {certificate}"
    return certificate


def measured_error(estimator, X, y, problem, oracle, weights=None, kind=None):
    """The distance from the fit to the oracle in the unit of the problem's certificate.

    ``"distance"``: relative coefficient error; otherwise the relative objective
    gap ``(F(θ) − F_oracle) / F(θ)`` (never below 0 by more than the oracle's error).
    """
    kind = problem.certificate_kind if kind is None else kind
    coef = np.asarray(estimator.coef_, dtype=float).ravel()
    intercept = float(np.ravel(estimator.intercept_)[0])
    if kind == "distance":
        return relative_coef_error(coef, intercept, oracle.coef, oracle.intercept, X, y, weights)
    value = problem.objective(X, y, coef, intercept, weights)
    return relative_objective_gap(value, oracle.objective)


def float_slack(kind, condition):
    """What floating point alone may leave between a certificate and the oracle's measurement."""
    if kind == "distance":
        # θ − θ* = H⁻¹∇F in float64 carries about ε·κ(H) relative error
        return 1e-10 + 10 * EPS * condition
    return 1e-10


def describe(estimator, certificate, measured, oracle):
    return (
        f"converged_={estimator.converged_} stop_reason_={getattr(estimator, 'stop_reason_', None)!r} "
        f"n_iter_={getattr(estimator, 'n_iter_', None)} certificate={certificate} "
        f"measured against {oracle.by}: {measured:.3g} (oracle's own error {oracle.error:.2g})"
    )


def check_honest(estimator, messages, X, y, problem, oracle, weights=None, condition=1.0, tol=None):
    """Assert the contract of the module docstring for one finished fit.

    Parameters
    ----------
    estimator : fitted GDRegressor
    messages : list of str
        ConvergenceWarning messages (or the CLI's stderr lines) the fit produced.
    X, y, weights : the data fitted
    problem : tests.oracles.Problem
    oracle : tests.oracles.Solution or None
        ``None``: no oracle for this problem; only the certificate's own consistency is checked.
    condition : float
        The standardized condition number of ``X`` (scales the floating-point slack).
    tol : float, optional
        The ``tol`` the fit ran with (default: the estimator's).
    """
    certificate = certificate_of(estimator)
    tol = estimator.get_params()["tol"] if tol is None else tol
    kind = certificate["kind"]
    assert kind in problem.certificate_kinds, f"certificate kind {kind!r}, expected one of {problem.certificate_kinds}"
    assert bool(certificate["converged"]) == bool(estimator.converged_), (
        f"converged_={estimator.converged_} but the certificate says {certificate}"
    )
    assert bool(estimator.fit_report_.get("converged", estimator.converged_)) == bool(estimator.converged_)
    value = certificate["value"]
    if oracle is not None:
        measured = measured_error(estimator, X, y, problem, oracle, weights, kind)
        slack = float_slack(kind, condition) + oracle.error
        info = describe(estimator, certificate, measured, oracle)
        if value is not None:
            assert measured <= value * (1 + BOUND_RELATIVE_SLACK) + slack, f"the certificate is not a bound: {info}"
    else:
        info = f"converged_={estimator.converged_} certificate={certificate}"
    if estimator.converged_:
        assert value is not None and tol is not None and value <= tol, f"converged without a certified value: {info}"
        if oracle is not None:
            factor = DISTANCE_SLACK if kind == "distance" else GAP_SLACK
            assert measured <= factor * tol + slack, f"says converged but is not within tol={tol:g}: {info}"
    elif tol is not None and getattr(estimator, "stop_reason_", None) != "interrupted":
        assert messages, f"not converged, and no warning said so: {info}"
        assert value is None or any(mentions_value(m, value) for m in messages), (
            f"not converged; no warning gives the certificate's value {value!r}: {messages} ({info})"
        )
        check_advice(estimator, messages)


def check_advice(estimator, messages):
    """The warning's advice never names an option already set, nor one that would be refused."""
    params = estimator.get_params()
    text = " ".join(messages)
    if params["learning_rate"] == "auto":
        assert "learning_rate='auto'" not in text and "--lr auto" not in text, f"advises what is set: {text}"
    l1_part = params["alpha"] * {"l1": 1.0, "elasticnet": params["l1_ratio"]}.get(params["penalty"], 0.0)
    if params["loss"] != "squared_error" or l1_part > 0 or params["batch_size"]:  # what cg refuses
        assert "optimizer='cg'" not in text and "--optimizer cg" not in text, f"advises cg, which refuses this fit: {text}"
    if params["optimizer"] == "cg":
        assert "optimizer='cg'" not in text and "--optimizer cg" not in text, f"advises what is set: {text}"
