"""The one record of a finished fit, and the one place its words are written.

Like scipy.optimize's ``OptimizeResult`` (``x, success, message, nit, fun``), a
fit returns one :class:`FitResult`: the parameters, the cost curve, why it
stopped and the sentence that says so, the convergence certificate
(:mod:`gradfit.certificate`), the engine, optimizer and step size that ran, and
what the refinement epochs after ``cg`` did (:class:`Refinement`).
:func:`gradfit.fitting.fit_source` returns it; the estimator's attributes,
``fit_report_``, the model file, the command line and the HTML report read it.

Every sentence or label about how a fit ended is built here and nowhere else:
:func:`stop_message` (the sentence), :func:`verdict` (the report's badge),
:func:`headline` (the cost plot's title) and :func:`divergence_message` (the
fit that never finished). Surfaces show these words; they never rebuild them.

The stop reasons (``FitResult.stop_reason``):

``"converged"``
    The certificate holds: the fit is provably within ``tol`` of the optimum.
``"stalled"``
    The cost stopped improving (``n_iter_no_change`` epochs) short of the certificate.
``"max_epochs"``
    The epochs ran out short of the certificate (or ``tol=None`` asked for all of them).
``"interrupted"``
    A callback asked to stop (Ctrl-C, SIGTERM with a checkpoint); the parameters reached are kept.

A fit that diverges returns no record: :class:`gradfit.errors.DivergenceError`
carries :func:`divergence_message` instead (``"diverged"`` where a stop reason is shown).

This module imports only NumPy and the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: why a finished fit stopped (see the module docstring)
STOP_REASONS = ("converged", "stalled", "max_epochs", "interrupted")
#: what a refinement's epochs ended with (:attr:`Refinement.status`)
REFINEMENT_STATUSES = ("settled", "max_epochs", "interrupted")


# -- the words ----------------------------------------------------------------


def certificate_text(certificate):
    """``"distance 3.2e-03"``, or what stands for a value when there is none."""
    if certificate.value is None:
        return f"no certificate ({certificate.detail})" if certificate.detail else "no certificate"
    return f"{certificate.kind.replace('_', ' ')} {certificate.value:.3g}"


def advice_phrase(option, value):
    """The estimator's words for one change that helps: ``use optimizer='cg'``."""
    return f"use {option}={value!r}"


def stop_message(stop_reason, certificate, n_iter, tol, advice=None):
    """The one sentence every surface shows for how a fit ended.

    Parameters
    ----------
    stop_reason : str
        One of :data:`STOP_REASONS`.
    certificate : gradfit.certificate.Certificate
        Its verdict decides "converged"; its value or detail is quoted.
    n_iter : int
        Epochs run.
    tol : float or None
        The fit's ``tol`` (``None``: no convergence test).
    advice : str, optional
        A phrase naming one change that helps (:func:`advice_phrase`, or the
        command line's flags), added to a fit that ran out or stalled.
    """
    value = certificate_text(certificate)
    if certificate.converged:
        return f"converged after {n_iter} epochs: certified within tol={tol:g} ({value})"
    if stop_reason == "interrupted":
        return (
            f"not converged: interrupted after {n_iter} epochs (Ctrl-C or a callback), {value}; "
            "the parameters reached so far were kept"
        )
    if tol is None:
        return f"not converged: ran all {n_iter} epochs with tol=None (no convergence test), {value}"
    if stop_reason == "stalled":
        why = f"the cost stalled after {n_iter} epochs"
    else:
        why = f"the {n_iter} epochs ran out"
    if certificate.value is not None:
        why += f" with the {value} > tol={tol:g}"
    else:
        why += f" and nothing certifies it ({certificate.detail})"
    tip = f"; {advice}" if advice else ""
    return f"not converged: {why}{tip}"


def verdict(stop_reason, converged):
    """The report's badge: ``"converged"``, ``"interrupted, not converged"`` or ``"not converged"``."""
    if converged:
        return "converged"
    return "interrupted, not converged" if stop_reason == "interrupted" else "not converged"


def headline(stop_reason, tested=True):
    """The cost plot's few words for how a fit ended; ``tested=False``: it ran with ``tol=None``."""
    if stop_reason == "max_epochs" and not tested:
        return "all epochs run (tol=None), not converged"
    return {
        "converged": "converged (certified)",
        "max_epochs": "not converged: stopped at the epoch limit",
        "stalled": "not converged: the cost stalled",
        "interrupted": "interrupted, not converged",
    }.get(stop_reason, stop_reason or "")


def divergence_message(epoch, cost, learning_rate, max_stable_learning_rate, advice):
    """The sentence of a fit that diverged (:class:`gradfit.errors.DivergenceError`).

    ``advice`` is the phrase that helps, in the caller's vocabulary (the
    estimator's parameters or the command line's flags).
    """
    limit = (
        f"; the largest stable learning rate for these data is {max_stable_learning_rate:.4g} "
        "(2/L, L the largest eigenvalue of the Hessian)"
        if max_stable_learning_rate is not None
        else ""
    )
    return f"training diverged at epoch {epoch}: cost {cost:.4g} with learning rate {learning_rate:.4g}{limit}; {advice}"


# -- the records ----------------------------------------------------------------


@dataclass
class Refinement:
    """What the refinement epochs after ``optimizer="cg"`` did (:mod:`gradfit.refine`).

    Attributes
    ----------
    epochs : int
        Refinement epochs run (one data pass each).
    corrections : list of float
        Size of each epoch's correction relative to the parameters (standardized
        units, the largest over outputs): the error it removed.
    condition_number : float
        ``cond(H)`` of the standardized problem (penalty included).
    method : {"eigh", "qr"}
        How the refinement solved with ``H`` (see :func:`gradfit.refine.hessian_solver`).
    digits : ndarray of shape (n_outputs, n_features + fit_intercept)
        Estimated correct significant digits of ``coef`` (then ``intercept``),
        from the size of the last correction in the data's units: the floor the
        data-pass gradient sets. Capped at 15.9.
    status : {"settled", "max_epochs", "interrupted"}
        The stop reason of the refinement's own epochs (:data:`REFINEMENT_STATUSES`),
        as the training loop returned it.
    last_step : ndarray of shape (n_params, n_outputs) or None
        The last correction, in the refinement's units (centred, standardized):
        the distance certificate of :mod:`gradfit.certify` reads it. Not in :meth:`as_dict`.
    """

    epochs: int
    corrections: list = field(default_factory=list)
    condition_number: float = float("nan")
    method: str = "eigh"
    digits: np.ndarray | None = None
    status: str = "settled"
    last_step: np.ndarray | None = None

    def as_dict(self):
        """Plain numbers and lists, for JSON (``GDRegressor.refinement_``)."""
        return {
            "epochs": self.epochs,
            "corrections": [float(c) for c in self.corrections],
            "condition_number": float(self.condition_number),
            "method": self.method,
            "digits": None if self.digits is None else np.round(self.digits, 2).tolist(),
            "status": self.status,
        }


@dataclass
class FitResult:
    """A finished fit: its parameters, how it ended and what produced it.

    Attributes
    ----------
    coef : ndarray of shape (n_outputs, n_features)
    intercept : ndarray of shape (n_outputs,)
        In the data's own units.
    loss_curve : list of float
        The cost curve: ``loss_curve[i]`` the cost before epoch ``i``'s update
        (refinement epochs continue it).
    stop_reason : str
        One of :data:`STOP_REASONS`.
    certificate : gradfit.certificate.Certificate
        What the fit can prove about its distance to the optimum
        (:mod:`gradfit.certify`); ``converged`` is its verdict.
    tol : float or None
        The threshold the certificate was held to (the estimator's ``tol``).
    final_cost : float
        The cost at the returned parameters.
    engine : str
        The engine that ran.
    optimizer : str
        The optimizer that ran (``"auto"`` resolved, :mod:`gradfit.autoselect`).
    learning_rate : float or None
        The base step size (``None`` for ``cg`` and Newton, which take their own steps).
    schedule : str or None
        The schedule that ran (``"auto"`` resolved; ``None`` for ``cg`` and Newton).
    refinement : Refinement or None
        What the refinement epochs after ``cg`` did; ``None`` when none ran.
    advice : tuple (option, value) or None
        One change that helps a fit short of its certificate
        (:func:`gradfit.diagnostics.advice`); ``None`` for a converged fit.
    params, opt_state :
        The parameters (n_params, n_outputs) and the optimizer's state in the
        working units, for continuing (``partial_fit``, ``warm_start``).
    scaling, statistics, problem, rng, reference :
        The working units (:class:`gradfit.scaling.Scaling`), the data's moments,
        the prepared pieces (:class:`gradfit.fitting.Problem`), the shuffling
        stream, and the squared error's :class:`~gradfit.certify.QuadraticReference`
        (``None`` for other losses or when its statistics were not collected),
        which the fit report reuses rather than read the data again.
    """

    coef: np.ndarray
    intercept: np.ndarray
    loss_curve: list
    stop_reason: str
    certificate: Any
    tol: float | None
    final_cost: float
    engine: str
    optimizer: str | None
    learning_rate: float | None
    params: np.ndarray
    opt_state: Any = None
    scaling: Any = None
    statistics: Any = None
    problem: Any = None
    rng: Any = None
    schedule: str | None = None
    refinement: Refinement | None = None
    advice: tuple | None = None
    reference: Any = None

    def __post_init__(self):
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {self.stop_reason!r}; valid: {', '.join(STOP_REASONS)}")

    @property
    def n_iter(self):
        """Epochs run (``len(loss_curve)``)."""
        return len(self.loss_curve)

    @property
    def converged(self):
        """True only when the certificate holds (never merely because the cost stopped moving)."""
        return self.certificate is not None and self.certificate.converged

    #: scipy.optimize's name for it
    success = converged

    @property
    def message(self):
        """The sentence saying how the fit ended (:func:`stop_message`), with the estimator's advice."""
        return self.message_with(None if self.advice is None else advice_phrase(*self.advice))

    def message_with(self, advice):
        """:attr:`message` with ``advice`` (a phrase, e.g. the command line's flags) as the change that helps."""
        return stop_message(self.stop_reason, self.certificate, self.n_iter, self.tol, advice)

    @property
    def unsettled(self):
        """Stopped short of the certificate with a test in force (epochs ran out, or stalled): warn."""
        return self.tol is not None and not self.converged and self.stop_reason in ("max_epochs", "stalled")
