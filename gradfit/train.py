"""THE training loop: epochs, stopping, divergence, history, callbacks.

Every optimizer, engine, source and surface (estimator, CLI) goes through
:func:`train`. One epoch is one update (full batch) or one sweep of shuffled
minibatches; ``loss_curve[i]`` is the cost at the parameters *before* epoch
``i``'s update (full batch: exactly the number the tutorial prints) or the
weighted mean of the minibatch costs seen during epoch ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DivergenceError

#: consecutive rising epochs, above the starting cost, that count as divergence
RISING_EPOCHS = 5
#: with a certificate to stop on, the stall rule only ends training that can no
#: longer move the cost at all: an improvement below this (relative, a few units
#: in the last place) for ``n_iter_no_change`` epochs is rounding, not progress
ROUNDING_STALL = 1e-15


@dataclass
class TrainResult:
    """What one run of the loop produced (in working units; see :mod:`gradfit.scaling`).

    The loop's own value: :func:`gradfit.fitting.fit_source` folds it into the
    fit's one record, :class:`gradfit.result.FitResult`, which every surface reads.

    Attributes
    ----------
    params : ndarray of shape (n_params, n_outputs)
    loss_curve : list of float
        One cost per epoch run.
    n_iter : int
        Epochs run (``len(loss_curve)``), counting a resumed run's earlier epochs.
    stop_reason : str
        ``"converged"`` (the certificate held, see ``certify``), ``"stalled"``
        (the cost stopped improving by ``tol`` for ``n_iter_no_change`` epochs:
        a stall, never convergence by itself), ``"max_epochs"``, or
        ``"interrupted"`` (a callback asked to stop, e.g. after Ctrl-C).
    opt_state : object
        The optimizer's state, for ``partial_fit`` and ``warm_start``.
    """

    params: np.ndarray
    loss_curve: list = field(default_factory=list)
    stop_reason: str = "max_epochs"
    opt_state: Any = None

    @property
    def n_iter(self):
        return len(self.loss_curve)


def _minibatches(rng, n_samples, batch_size):
    order = rng.permutation(n_samples)
    for start in range(0, n_samples, batch_size):
        # Sorted, so that a batch reads its rows in storage order; the sum is the same.
        yield np.sort(order[start : start + batch_size])


def _stall(best, stalled, cost, tol):
    """The stopping rule's bookkeeping after one epoch: ``(best, epochs without improvement)``."""
    stalled = stalled + 1 if cost >= best - tol * abs(best) else 0
    return min(best, cost), stalled


def _replay(curve, tol):
    """``(best, stalled, rising)`` after ``curve``, so a continued run decides as an unbroken one would."""
    best, stalled, rising = np.inf, 0, 0
    for index, cost in enumerate(curve):
        rising = rising + 1 if index and cost > curve[index - 1] else 0
        if tol is not None:
            best, stalled = _stall(best, stalled, cost, tol)
        else:
            best = min(best, cost)
    return best, stalled, rising


def train(
    objective,
    optimizer,
    params,
    *,
    epochs,
    tol=None,
    n_iter_no_change=5,
    schedule,
    batch_size=None,
    n_samples=None,
    rng=None,
    opt_state=None,
    loss_curve=None,
    max_stable_learning_rate=None,
    standardized=False,
    callbacks=(),
    certify=None,
    certify_every=1,
):
    """Run up to ``epochs`` epochs of ``optimizer`` on ``objective`` from ``params``.

    Parameters
    ----------
    objective : Objective
    optimizer : GradientTransformation
    params : ndarray of shape (n_params, n_outputs)
        Starting point (zeros for a fresh fit). Not modified.
    epochs : int
        Epochs to run in this call.
    tol : float or None
        The stall rule: stop (``"stalled"``, not converged) once the cost has
        failed to improve on the best so far by more than ``tol × |best|`` for
        ``n_iter_no_change`` consecutive epochs. With ``certify`` the threshold
        is ``min(tol, ROUNDING_STALL)`` and the certificate's value must also
        have made no new best for as many checks: the certificate stops
        training, and a method keeps going while it moves either. ``None``
        runs every epoch.
    schedule : callable
        ``epoch -> step size``; also the step of the L1 proximal operator.
    batch_size : int or None
        ``None`` for full batch; else minibatches of this many rows, shuffled
        every epoch by ``rng`` over ``n_samples`` rows.
    opt_state, loss_curve :
        To continue earlier training (``warm_start``, ``partial_fit``).
    max_stable_learning_rate : callable
        Returns ``2/L`` for the divergence message; called only on divergence.
    callbacks : sequence
        Objects with ``on_epoch_end(epoch, cost, params) -> bool | None``; a true
        return stops training after that epoch, with the callback's own
        ``stop_reason`` attribute where it has one, else ``"interrupted"``
        (the first callback to stop names the reason).
        A callback with ``wants_state = True`` also gets the keywords
        ``opt_state``, ``loss_curve`` and ``rng`` (to checkpoint them).
        An optional ``on_train_end()`` is called when training ends normally.
    certify : callable, optional
        ``params -> Certificate`` (:mod:`gradfit.certify`); checked after every
        ``certify_every``-th epoch (counted from the first epoch ever, so a
        resumed run checks where an unbroken one would) and before a resumed
        run goes on: training stops ``"converged"`` when it holds.

    Raises
    ------
    DivergenceError
        At once, when the cost is non-finite or has risen for ``RISING_EPOCHS``
        epochs in a row above the starting cost. No parameters are returned.
    """
    state = optimizer.init(params) if opt_state is None else opt_state
    if tol is not None and certify is not None:
        tol = min(tol, ROUNDING_STALL)
    curve = list(loss_curve or [])
    first_epoch = len(curve)
    best, stalled, rising = _replay(curve, tol)
    steps_per_epoch = 1 if batch_size is None else -(-n_samples // batch_size)
    best_value, unimproved = np.inf, 0  # the certificate's best value, and checks since it improved
    stop_reason = "max_epochs"
    if tol is not None and certify is None and stalled >= n_iter_no_change:
        epochs, stop_reason = 0, "stalled"  # a resumed run that had already stalled
    if curve and certify is not None and certify(params).converged:
        epochs, stop_reason = 0, "converged"  # a resumed run that had already converged

    for epoch in range(first_epoch, first_epoch + epochs):
        if batch_size is None:
            batches = (None,)
        else:
            batches = _minibatches(rng, n_samples, batch_size)
        epoch_cost, epoch_weight = 0.0, 0
        # A step too large overflows to inf or NaN: that is divergence, reported below with the
        # epoch and the step size, never NumPy's warning lines.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for step, rows in enumerate(batches):
                value, grads = objective.value_and_grad(params, rows)
                if not np.isfinite(value):
                    break  # reported below
                weight = 1 if rows is None else len(rows)
                epoch_cost += value * weight
                epoch_weight += weight
                updates, state = optimizer.update(grads, state, params, value=value, hvp=objective.hvp)
                params = params + updates
                if objective.has_prox:
                    params = objective.prox(params, schedule(epoch + step / steps_per_epoch))
            cost = epoch_cost / epoch_weight if np.isfinite(value) else value
            if np.isfinite(cost) and not np.all(np.isfinite(params)):
                cost = np.inf  # the last step overflowed the parameters themselves
        rising = rising + 1 if curve and cost > curve[-1] else 0
        curve.append(cost)
        if not np.isfinite(cost) or (rising >= RISING_EPOCHS and cost > curve[0]):
            limit = max_stable_learning_rate() if max_stable_learning_rate else None
            raise DivergenceError(epoch, cost, schedule(epoch), limit, standardized)
        stop = None  # the reason of the first callback that asks to stop
        for callback in callbacks:
            if getattr(callback, "wants_state", False):
                # e.g. a checkpoint: everything needed to go on from here
                answer = callback.on_epoch_end(epoch, cost, params, opt_state=state, loss_curve=curve, rng=rng)
            else:
                answer = callback.on_epoch_end(epoch, cost, params)
            if answer and stop is None:
                stop = getattr(callback, "stop_reason", "interrupted")
        if stop is not None:
            stop_reason = stop
            break
        if certify is not None and (epoch + 1) % certify_every == 0:
            certificate = certify(params)
            if certificate.converged:
                stop_reason = "converged"
                break
            # The certificate sees progress the cost cannot (a cost gap is the
            # square of the distance): a stall needs both to stand still.
            value = np.inf if certificate.value is None else certificate.value
            best_value, unimproved = (value, 0) if value < best_value else (best_value, unimproved + 1)
        if tol is not None:
            best, stalled = _stall(best, stalled, cost, tol)
            if stalled >= n_iter_no_change and (certify is None or unimproved >= n_iter_no_change):
                stop_reason = "stalled"
                break
    for callback in callbacks:
        if hasattr(callback, "on_train_end"):
            callback.on_train_end()
    return TrainResult(params=params, loss_curve=curve, stop_reason=stop_reason, opt_state=state)
