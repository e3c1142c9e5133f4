"""What a fit can prove about its distance to the optimum.

"Converged" in gradfit means *certified*: a :class:`Certificate` whose
``value`` bounds (or equals) how far the returned parameters are from the
optimum, measured in the unit its ``kind`` names, is at most ``tol``. A fit
that cannot show that is not called converged, whatever its cost curve did.

The kinds, and the quantity ``value`` holds (all relative, so one ``tol``
serves data of any units):

``"distance"``
    Squared error, with or without an L2 penalty: the objective is a
    quadratic with Hessian ``H``, so ``θ − θ* = H⁻¹∇F(θ)`` exactly. ``value``
    is the relative coefficient error measured in standardized units,
    ``max(‖(coef − coef*)·σ‖₂ / ‖coef*·σ‖₂, |b − b*| / max(|b*|, σ_y))``
    (``σ`` the features' standard deviations, ``σ_y`` the target's; ``σ_y``
    also replaces a zero denominator; without an intercept both are root mean
    squares, the units gradfit standardizes to then), plus ``ε·κ(H)``, the
    rounding uncertainty of ``θ*`` itself (:mod:`gradfit.certify`).
``"duality_gap"``
    L1 or elastic net: ``(F(θ) − D(ν)) / F(θ)`` for a dual-feasible ``ν`` built
    from the residuals (as scikit-learn's coordinate descent reports it), an
    upper bound on the relative objective gap ``(F(θ) − F*) / F(θ)``.
``"gradient_bound"``
    Smooth losses that are not quadratic (Huber): an upper bound on the
    relative objective gap from the gradient and a curvature bound.
``"lp_duality_gap"``
    The absolute error (and other piecewise-linear losses): the relative gap
    to a dual-feasible point of the linear program, built from the residual
    signs; an upper bound on the relative objective gap.
``"none"``
    Nothing can be shown (``value`` is ``None``); never converged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

KINDS = ("distance", "duality_gap", "gradient_bound", "lp_duality_gap", "none")


@dataclass(frozen=True)
class Certificate:
    """A bound on the distance to the optimum and whether it meets ``tol``.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    value : float or None
        The certified quantity (see the module docstring); ``None`` when
        nothing can be shown.
    tol : float or None
        The threshold it was held to (the estimator's ``tol``).
    detail : str
        One sentence saying what is bounded and how, for reports.
    """

    kind: str
    value: float | None
    tol: float | None
    detail: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown certificate kind {self.kind!r}; valid: {', '.join(KINDS)}")

    @property
    def converged(self):
        """True only when a bound exists and is within ``tol``."""
        return self.value is not None and self.tol is not None and self.value <= self.tol

    def as_dict(self):
        """JSON-ready: the fields and ``converged``."""
        out = asdict(self)
        out["converged"] = self.converged
        return out
