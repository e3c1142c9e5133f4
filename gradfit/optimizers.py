"""Optimizers as pure ``(init, update)`` pairs, composed as in optax.

``init(params) -> state`` and ``update(grads, state, params, *, value=None, hvp=None)
-> (updates, state)``; the training loop adds ``updates`` to ``params``. Named
optimizers are chains of small transformations, e.g.
``momentum = chain(trace(0.9), scale_by_schedule(schedule))``.

``params`` and ``grads`` are arrays of shape ``(n_params, n_outputs)``: each
column is the independent problem of one output (rows are the weights, then
the intercept). A ``schedule`` maps the epoch (a float: ``2.5`` is halfway
through the third epoch of minibatches) to a step size.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np


class GradientTransformation(NamedTuple):
    """A pure pair: ``init(params) -> state``; ``update(grads, state, params, **extra) -> (updates, state)``."""

    init: Callable[[np.ndarray], Any]
    update: Callable[..., tuple[np.ndarray, Any]]


def chain(*transforms):
    """Apply ``transforms`` one after the other, each to the previous one's output."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params, **extra):
        new_state = []
        for t, s in zip(transforms, state):
            grads, s = t.update(grads, s, params, **extra)
            new_state.append(s)
        return grads, tuple(new_state)

    return GradientTransformation(init, update)


class ScheduleState(NamedTuple):
    count: int


def scale_by_schedule(schedule, steps_per_epoch=1):
    """Multiply by ``-schedule(epoch)``; ``epoch = count / steps_per_epoch``."""

    def init(params):
        return ScheduleState(count=0)

    def update(grads, state, params, **extra):
        step = schedule(state.count / steps_per_epoch)
        return -step * grads, ScheduleState(count=state.count + 1)

    return GradientTransformation(init, update)


class TraceState(NamedTuple):
    velocity: np.ndarray


def trace(decay, nesterov=False):
    """Heavy-ball momentum: ``v ← decay·v + g``; returns ``v`` (or ``g + decay·v`` for Nesterov)."""

    def init(params):
        return TraceState(velocity=np.zeros_like(params))

    def update(grads, state, params, **extra):
        velocity = decay * state.velocity + grads
        out = grads + decay * velocity if nesterov else velocity
        return out, TraceState(velocity=velocity)

    return GradientTransformation(init, update)


class AdamState(NamedTuple):
    count: int
    mu: np.ndarray
    nu: np.ndarray


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8):
    """Adam's rescaling: bias-corrected first moment over the root of the second (Kingma & Ba)."""

    def init(params):
        return AdamState(count=0, mu=np.zeros_like(params), nu=np.zeros_like(params))

    def update(grads, state, params, **extra):
        count = state.count + 1
        mu = b1 * state.mu + (1 - b1) * grads
        nu = b2 * state.nu + (1 - b2) * grads * grads
        mu_hat = mu / (1 - b1**count)
        nu_hat = nu / (1 - b2**count)
        return mu_hat / (np.sqrt(nu_hat) + eps), AdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


class ConjugateGradientState(NamedTuple):
    grads: np.ndarray | None
    direction: np.ndarray | None


def conjugate_gradient():
    """Linear conjugate gradient with the exact line search of a quadratic.

    Direction ``p ← −g + β p`` with Polak–Ribière ``β = max(0, gᵀ(g − g₋)/g₋ᵀg₋)``
    (equal to Fletcher–Reeves on a quadratic, and self-restarting in floating
    point), step ``α = −gᵀp / pᵀHp``. On ``J(θ) = ½θᵀHθ − cᵀθ`` this reaches the
    minimizer in at most ``n_params`` steps in exact arithmetic. Needs the
    keyword ``hvp``: a function returning ``H @ p`` for ``p`` of the params' shape.
    Each output column is its own problem, so dot products are per column.
    """

    def init(params):
        return ConjugateGradientState(grads=None, direction=None)

    def update(grads, state, params, *, hvp=None, **extra):
        if hvp is None:
            raise TypeError("conjugate_gradient needs the keyword argument hvp")
        gg = np.einsum("ij,ij->j", grads, grads)
        if state.direction is None:
            direction = -grads
        else:
            prev = state.grads
            prev_gg = np.einsum("ij,ij->j", prev, prev)
            with np.errstate(divide="ignore", invalid="ignore"):
                beta = np.einsum("ij,ij->j", grads, grads - prev) / prev_gg
            beta = np.where(np.isfinite(beta), np.maximum(beta, 0.0), 0.0)
            direction = -grads + beta * state.direction
        curvature = np.einsum("ij,ij->j", direction, hvp(direction))
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = -np.einsum("ij,ij->j", grads, direction) / curvature
        # A column whose gradient vanished has converged: its step is zero, not 0/0.
        alpha = np.where((gg > 0) & (curvature > 0) & np.isfinite(alpha), alpha, 0.0)
        return alpha * direction, ConjugateGradientState(grads=grads, direction=direction)

    return GradientTransformation(init, update)


# --- named optimizers -----------------------------------------------------------


def gd(schedule, steps_per_epoch=1):
    """Plain gradient descent, the tutorial's: ``θ ← θ − η_t ∇J``."""
    return scale_by_schedule(schedule, steps_per_epoch)


def momentum(schedule, steps_per_epoch=1, decay=0.9):
    """Heavy-ball momentum (Polyak): ``v ← βv + ∇J``, ``θ ← θ − η_t v``."""
    return chain(trace(decay), scale_by_schedule(schedule, steps_per_epoch))


def nesterov(schedule, steps_per_epoch=1, decay=0.9):
    """Nesterov's accelerated gradient in the form optax and PyTorch use."""
    return chain(trace(decay, nesterov=True), scale_by_schedule(schedule, steps_per_epoch))


def adam(schedule, steps_per_epoch=1, b1=0.9, b2=0.999, eps=1e-8):
    """Adam: ``θ ← θ − η_t m̂ / (√v̂ + ε)``."""
    return chain(scale_by_adam(b1, b2, eps), scale_by_schedule(schedule, steps_per_epoch))


def cg(schedule=None, steps_per_epoch=1):
    """Conjugate gradient (needs ``hvp``); its step comes from the line search, not a schedule."""
    return conjugate_gradient()
