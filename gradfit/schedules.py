"""Learning-rate schedules: ``epoch -> step size``, scaling a base rate.

The base rate ``η`` is ``learning_rate`` (or what ``"auto"`` makes of it, see
:func:`gradfit.fitting.base_learning_rate`); ``t`` is a float that counts
epochs from 0, so minibatch steps see fractional epochs (``2.5`` is halfway
through the third epoch).

==============  ==========================================  ====================
name            ``η_t``                                      peer
==============  ==========================================  ====================
``constant``    ``η``                                       the tutorial's
``invscaling``  ``η / (1 + t)^power_t``                     scikit-learn's SGD
``step``        ``η · gamma^⌊t / step_size⌋``              PyTorch's ``StepLR``
``auto``        one of the above, chosen by :func:`auto`
==============  ==========================================  ====================
"""

from __future__ import annotations


def constant(learning_rate):
    """``η_t = η``: the tutorial's."""
    return lambda epoch: learning_rate


def inverse_scaling(learning_rate, power_t):
    """``η_t = η / (1 + t)^power_t`` (scikit-learn's ``"invscaling"``, counted in epochs)."""
    return lambda epoch: learning_rate / (1.0 + epoch) ** power_t


def step_decay(learning_rate, step_size, gamma):
    """``η_t = η · gamma^⌊t / step_size⌋`` (PyTorch's ``StepLR``, counted in epochs)."""
    return lambda epoch: learning_rate * gamma ** int(epoch // step_size)


#: ``power_t`` that ``"auto"`` uses for a non-smooth loss: ``Σ η_t = ∞`` and
#: ``Σ η_t² < ∞``, the classic condition for the subgradient method to converge
NON_SMOOTH_POWER = 1.0


def auto(smooth):
    """What ``schedule="auto"`` means: ``(name, power_t or None)``.

    * a smooth loss (squared error, Huber) on full batches: ``"constant"``; with
      ``η = 1/L`` gradient descent converges without decay;
    * a non-smooth loss (``absolute_error``, ``quantile``): ``"invscaling"`` with
      ``power_t = 1``. A subgradient does not vanish at the optimum, so a
      constant step circles it at a distance of about ``η``; ``η/(1 + t)``
      shrinks the circle while the steps still add up to infinity, so the
      iterates reach the optimum from any start;
    * minibatches of a smooth loss: ``"constant"`` too, with the step bounded
      by a minibatch's curvature (:func:`gradfit.fitting.minibatch_curvature`).
      Where the model fits the data exactly this converges linearly; otherwise
      the minibatch noise sets a floor on the cost about proportional to the
      step, where ``tol`` stops training. ``schedule="invscaling"`` lowers
      the floor epoch by epoch instead.

    Parameters
    ----------
    smooth : bool
        Whether the loss has a bounded second derivative.
    """
    if not smooth:
        return "invscaling", NON_SMOOTH_POWER
    return "constant", None
