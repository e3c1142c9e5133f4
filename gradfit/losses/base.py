"""What every loss is: a pointwise function of (prediction, target), and what it can do.

A loss is ``ℓ(p, y)`` for one prediction ``p = x·w + b`` and its target
``y``, as in scikit-learn's ``sklearn/_loss/loss.py``: the engines do all the
linear algebra (``X @ w`` and ``Xᵀ g``) and call a loss only on a block of
predictions and targets. The data term of the cost is the weighted mean

    J = Σ_i v_i Σ_j ℓ(p_ij, y_ij) / (k Σ_i v_i)

over rows ``i`` and the ``k`` outputs ``j``.

Besides its values, a loss declares what it can do; code elsewhere (the
engines, the optimizers' checks, the step size, the schedule) asks these and
never the loss's name:

``smooth``
    ``ℓ`` has a bounded second derivative in ``p`` (gradient descent with
    ``η = 1/L`` converges; a gradient bound certifies).
``curvature``
    ``sup ℓ''`` (the Hessian of ``J`` is at most ``curvature`` times the
    design's second moment), or ``None`` where ``ℓ''`` is unbounded.
``quadratic``
    ``J`` depends on ``X`` only through ``XᵀX``, ``Xᵀy``, ``yᵀy``, ``Σx``,
    ``Σy``: the statistics engine serves it and its iterates are a pass's.
``piecewise_linear``
    ``ℓ`` is ``|p − y|`` plus a linear tilt (the absolute error, the pinball
    loss; such a loss has a ``quantile`` τ): its fit is a linear program,
    which :mod:`gradfit.robust` solves exactly and certifies by the LP
    duality gap.
``huberized``
    ``ℓ`` is quadratic within ``±epsilon`` of the target and linear beyond
    (Huber): :mod:`gradfit.robust` takes Newton steps on the inliers, and a
    gradient bound certifies.
``linear_derivative``
    ``c`` where ``ℓ'(p, y) = c·(p − y)`` (so ``ℓ = (c/2)(p − y)²``), else
    ``None``: the pass engine's fused residual kernel
    (:mod:`gradfit.engines.kernels`) then serves it in one read of ``X``.

A loss's parameters are the ones its entry in :mod:`gradfit.registry` lists
(``params``); ``__init__`` only stores them.
"""

from __future__ import annotations

import numpy as np


class Loss:
    """Base of the pointwise losses; subclasses set the capabilities and :meth:`value_and_derivative`."""

    #: the name users type (``GDRegressor(loss=...)``, ``--loss``); set by each loss
    name = None
    smooth = True
    curvature = None
    quadratic = False
    linear_derivative = None
    piecewise_linear = False
    huberized = False
    #: what a mean of it is called on a plot's axis and in the CV lines (``None``: "<name> loss")
    cost_label = None
    #: its short name in the CV lines (``None``: :attr:`cost_label`)
    short_label = None

    #: the parameters ``__init__`` stores, in order (the same names as the estimator's)
    parameters = ()

    def value_and_derivative(self, prediction, target=0.0):
        """Return ``(ℓ(p, y), ∂ℓ/∂p)`` elementwise, arrays of the broadcast shape.

        ``target`` defaults to 0, so that ``value_and_derivative(r)`` is the
        loss of the residual ``r`` for the regression losses, which depend on
        ``p − y`` only.
        """
        raise NotImplementedError

    #: ``∂²ℓ/∂p²`` elementwise, ``(prediction, target) -> array``, for losses
    #: where it exists (``smooth``); ``None`` for a loss that has none
    second_derivative = None

    def params(self):
        """``{name: value}`` of this loss's parameters (see :attr:`parameters`)."""
        return {name: getattr(self, name) for name in self.parameters}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"


def residual(prediction, target):
    """``p − y``: the regression losses' argument."""
    return np.subtract(prediction, target)
