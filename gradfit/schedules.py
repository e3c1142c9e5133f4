"""Learning-rate schedules: ``epoch -> step size``, scaling a base rate.

The base rate is ``learning_rate`` (or ``1/L`` for ``"auto"``); ``epoch`` is a
float that counts epochs from 0, so minibatch steps see fractional epochs.
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
