"""The errors gradfit raises on purpose.

Every one of them carries a message meant for a person: one line, naming the
file, column and row where that is known. The command-line tool prints the
message alone (no traceback) and exits non-zero.
"""

from __future__ import annotations

import os

from .result import divergence_message


class GradfitError(Exception):
    """Base class of gradfit's deliberate, user-facing errors."""


class DataError(GradfitError, ValueError):
    """The data cannot be used: unreadable file, bad value, wrong shape.

    Subclasses ``ValueError`` so that scikit-learn's conventions hold.
    """


class ModelFileError(GradfitError, ValueError):
    """A model file is damaged, foreign, or written by a newer gradfit."""


class OptionError(GradfitError, ValueError):
    """An option has a value gradfit does not know; the message lists the valid ones."""


class DivergenceError(GradfitError, ArithmeticError):
    """Training diverged: the cost became non-finite or kept growing.

    No fit record is made (there are no parameters to keep); the message comes
    from :func:`gradfit.result.divergence_message`, and surfaces that show a
    stop reason show :attr:`stop_reason`, ``"diverged"``.

    Attributes
    ----------
    epoch : int
        The epoch at which divergence was detected (0-based, like ``loss_curve_``).
    cost : float
        The cost at that epoch (may be ``inf`` or ``nan``).
    learning_rate : float
        The learning rate that was used.
    max_stable_learning_rate : float or None
        ``2 / L``, with ``L`` the largest eigenvalue of the cost's Hessian in the
        units training ran in; plain gradient descent with a constant step
        converges for any step below it. ``None`` when it is not defined (a
        loss without bounded curvature).
    """

    #: the stop reason surfaces show for it (the lesson page's runs)
    stop_reason = "diverged"

    def __init__(self, epoch, cost, learning_rate, max_stable_learning_rate, standardized):
        self.epoch = epoch
        self.cost = cost
        self.learning_rate = learning_rate
        self.max_stable_learning_rate = max_stable_learning_rate
        self.standardized = standardized
        advice = 'use learning_rate="auto" (1/L, never diverges)'
        if not standardized:
            advice += " or standardize the features"
        super().__init__(divergence_message(epoch, cost, learning_rate, max_stable_learning_rate, advice))


class IllConditionedError(GradfitError, ArithmeticError):
    """The least-squares problem is too ill-conditioned for float64.

    Raised by ``optimizer="cg"`` (the exact solver) rather than return
    coefficients whose digits rounding has decided (see :mod:`gradfit.refine`).

    Attributes
    ----------
    condition_number : float
        ``λmax / λmin`` of the Hessian of the standardized problem (``inf`` when singular).
    """

    def __init__(self, message, condition_number):
        self.condition_number = condition_number
        super().__init__(message)


class ClusterError(GradfitError, RuntimeError):
    """The Dask cluster failed during a fit, beyond what Dask recovers from by itself.

    Dask reruns a task whose worker died and recomputes results lost with a
    worker, from the graph; so a fit either gets every partial sum, or stops
    with this error (no model is made from partial sums). It is raised when
    Dask gives up on a task whose workers kept dying (``KilledWorker``), when
    the connection to the scheduler is lost, or when no worker is left for
    :func:`no_workers_timeout` seconds.

    Parameters
    ----------
    what : str
        What happened, one line.
    checkpoint : path, optional
        The fit's checkpoint: where it exists, the message says to go on from
        it; otherwise it advises keeping one.
    """

    def __init__(self, what, checkpoint=None):
        self.what = what
        if checkpoint is not None and os.path.exists(checkpoint):
            path = os.fspath(checkpoint)
            advice = f"the checkpoint {path!r} holds the epochs done: go on from it with --resume {path} (resume=)"
        else:
            advice = "keep a checkpoint (--checkpoint PATH) to go on from after such a failure"
        super().__init__(f"{what}; {advice}")


class IgnoredOptionWarning(UserWarning):
    """An option was set that this fit does not use (see :func:`gradfit.fitting.check_meaningful`)."""
