"""Optimizers as pure ``(init, update)`` pairs, composed as in optax.

``init(params) -> state`` and ``update(grads, state, params, *, value=None, hvp=None)
-> (updates, state)``; the training loop adds ``updates`` to ``params`` (and
then takes the L1 proximal step, if there is one). Named optimizers are chains
of small transformations, e.g.
``momentum = chain(scale_by_schedule(schedule), add_momentum(0.9))``.

============  =========================================  ====================================
name          update                                     ``learning_rate="auto"``
============  =========================================  ====================================
``gd``        ``−η g``                                   ``1/L``; minibatches ``1/L_b``
``momentum``  ``−η g + β Δθ``, restarts on full batches  ``1/L``; minibatches ``(1 − β)/L_b``
``nesterov``  ``−η g + β Δθ − β Δ(η g)``, the same       ``1/L``; minibatches ``(1 − β)/L_b``
``adam``      ``−η m̂ / (√v̂ + ε)``                      ``0.01 ×`` the target's RMS
``cg``        exact line search, conjugate directions    none: the line search sets it
============  =========================================  ====================================

``L`` is the largest eigenvalue of the Hessian of the smooth part of the cost
(in the units training runs in), ``L_b`` a minibatch's; ``β = 0.9``. See
:func:`gradfit.fitting.base_learning_rate`, also for the non-smooth ``absolute_error``.

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


class MomentumState(NamedTuple):
    previous_params: np.ndarray | None
    previous_updates: np.ndarray | None
    since_restart: np.ndarray | None
    previous_value: float | None
    previous_beta: np.ndarray | None


#: a rise of the cost smaller than this (relative) is rounding, not an overshoot
RISE_TOLERANCE = 1e-12


def add_momentum(decay, nesterov=False, restart=False):
    """Heavy-ball or Nesterov momentum on the *displacement*, after the step is scaled.

    Takes the scaled step ``u_t = −η_t g_t`` and returns

        heavy ball:  u_t + β (θ_t − θ_{t−1})
        Nesterov:    u_t + β (θ_t − θ_{t−1}) + β (u_t − u_{t−1})

    With a constant step and no ``restart`` this is exactly the velocity form
    ``v ← βv + g``, ``θ ← θ − η v`` (Nesterov: ``θ ← θ − η (g + βv)``, as in
    optax and PyTorch). The displacement form is used because it stays right
    with a proximal step (L1): ``θ_t − θ_{t−1}`` is the step actually taken,
    prox included, so at a fixed point the update is ``−η g`` and the proximal
    step of size ``η`` has the Lasso optimum as its fixed point (Ochs et al.'s
    iPiano). The velocity form would settle where ``g/(1 − β)``, not ``g``,
    balances the threshold.

    ``restart`` (for full batches, where ``g`` and the cost are exact): with a
    constant β = 0.9 and ``η = 1/L`` the plain method rings, the cost rising and
    falling for hundreds of epochs in the stiff directions (its rate there is
    √β ≈ 0.95 an epoch, where gradient descent needs one epoch), which also
    fools a stopping rule that waits for the cost to stop improving. So, after
    O'Donoghue & Candès (2015) and Beck & Teboulle's monotone FISTA:

    * the momentum of an output is dropped when its last displacement points
      uphill (``g_tᵀ(θ_t − θ_{t−1}) > 0``), and grows back as
      ``β_t = min(β, (t − 1)/(t + 2))`` over the ``t`` steps since (Nesterov's
      own sequence);
    * a step with momentum that raised the cost (the keyword ``value``,
      ``F(θ_t) > F(θ_{t−1})`` beyond rounding) is taken back: the next iterate
      is the plain gradient step from ``θ_{t−1}``, ``θ_{t−1} + u_{t−1}``, and all
      momentum restarts. The cost then never stays above its best for more
      than the one epoch that measured the rise. (A plain gradient step that
      raises the cost is left alone: the step is too large, and the training
      loop's divergence check should say so.)
    """

    def init(params):
        return MomentumState(previous_params=None, previous_updates=None, since_restart=None,
                             previous_value=None, previous_beta=None)

    def update(updates, state, params, *, value=None, **extra):
        k = updates.shape[1]
        if state.previous_params is None:
            displacement = previous_updates = np.zeros_like(updates)
            since = np.zeros(k)
        else:
            displacement, previous_updates = params - state.previous_params, state.previous_updates
            since = state.since_restart
        rose = (
            restart
            and value is not None
            and state.previous_value is not None
            and value > state.previous_value + RISE_TOLERANCE * abs(state.previous_value)
            and np.any(state.previous_beta > 0)
        )
        if rose:
            # θ_{t+1} = θ_{t−1} + u_{t−1}: the gradient step from the better point
            back = state.previous_params + state.previous_updates - params
            fresh = MomentumState(previous_params=state.previous_params, previous_updates=state.previous_updates,
                                  since_restart=np.ones(k), previous_value=state.previous_value,
                                  previous_beta=np.zeros(k))
            return back, fresh
        if restart:
            # u = −η g, so gᵀΔ > 0 ⇔ uᵀΔ < 0: that output starts afresh (Δ = u₋₁ = 0)
            uphill = np.einsum("ij,ij->j", updates, displacement) < 0
            since = np.where(uphill, 0.0, since) + 1
            previous_updates = np.where(uphill, 0.0, previous_updates)
            beta = np.where(uphill, 0.0, np.minimum(decay, (since - 1) / (since + 2)))
        else:
            since = since + 1
            beta = np.full(k, float(decay))
        out = updates + beta * displacement
        if nesterov:
            out = out + beta * (updates - previous_updates)
        new_state = MomentumState(previous_params=params, previous_updates=updates, since_restart=since,
                                  previous_value=value, previous_beta=beta)
        return out, new_state

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
    initial_norm: np.ndarray | None


#: cg stops moving an output once its gradient is this many ε below where it
#: started: the rounding floor of the gradient, below which a step only stirs noise
CG_GRADIENT_FLOOR = 100 * np.finfo(np.float64).eps


def conjugate_gradient():
    """Linear conjugate gradient with the exact line search of a quadratic.

    Direction ``p ← −g + β p`` with Polak–Ribière ``β = max(0, gᵀ(g − g₋)/g₋ᵀg₋)``
    (equal to Fletcher–Reeves on a quadratic, and self-restarting in floating
    point), step ``α = −gᵀp / pᵀHp``. On ``J(θ) = ½θᵀHθ − cᵀθ`` this reaches the
    minimizer in at most ``n_params`` steps in exact arithmetic. Needs the
    keyword ``hvp``: a function returning ``H @ p`` for ``p`` of the params' shape.
    Each output column is its own problem, so dot products are per column.

    An output whose gradient has fallen to ``CG_GRADIENT_FLOOR × ‖g₀‖`` takes
    no more steps: its cost then stops changing and ``tol`` ends training, even
    where the model fits exactly and the cost keeps shrinking at rounding level.
    """

    def init(params):
        return ConjugateGradientState(grads=None, direction=None, initial_norm=None)

    def update(grads, state, params, *, hvp=None, **extra):
        if hvp is None:
            raise TypeError("conjugate_gradient needs the keyword argument hvp")
        gg = np.einsum("ij,ij->j", grads, grads)
        initial = np.sqrt(gg) if state.initial_norm is None else state.initial_norm
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
        # A column whose gradient vanished (or sank to rounding level) has
        # converged: its step is zero, not 0/0 or noise.
        moving = (gg > (CG_GRADIENT_FLOOR * initial) ** 2) & (curvature > 0) & np.isfinite(alpha)
        alpha = np.where(moving, alpha, 0.0)
        new_state = ConjugateGradientState(grads=grads, direction=direction, initial_norm=initial)
        return alpha * direction, new_state

    return GradientTransformation(init, update)


class NewtonState(NamedTuple):
    count: int


def scale_by_inverse_hessian(solve):
    """A Newton step with a fixed Hessian: ``updates = −H⁻¹ g``.

    ``solve`` maps a gradient (n_params, n_outputs) to ``H⁻¹ g``. On a quadratic
    with the exact ``H`` this lands on the minimizer in one step; with an ``H``
    known only to some digits it is *iterative refinement*: each step divides the
    error by about ``1 / (ε·cond(H))``, as long as the gradient is computed more
    accurately than ``H`` was (:mod:`gradfit.refine` uses it with gradients from a
    data pass and ``H`` from the statistics).
    """

    def init(params):
        return NewtonState(count=0)

    def update(grads, state, params, **extra):
        return -solve(grads), NewtonState(count=state.count + 1)

    return GradientTransformation(init, update)


# --- named optimizers -----------------------------------------------------------
#
# Every named optimizer takes ``(schedule, steps_per_epoch)``; the training loop
# applies the L1 proximal step with the schedule's step after the update, so
# each of them is written so that at a fixed point its update is ``−η g``
# (which makes the Lasso optimum the fixed point of update-then-prox).


def gd(schedule, steps_per_epoch=1):
    """Plain gradient descent, the tutorial's: ``θ ← θ − η_t ∇J``."""
    return scale_by_schedule(schedule, steps_per_epoch)


def momentum(schedule, steps_per_epoch=1, decay=0.9, restart=None):
    """Heavy-ball momentum (Polyak): ``θ_{t+1} = θ_t − η_t ∇J(θ_t) + β (θ_t − θ_{t−1})``.

    Without ``restart``, with a constant step, the same iterates as
    ``v ← βv + ∇J``, ``θ ← θ − η v``. ``restart`` (default: full batches,
    ``steps_per_epoch == 1``) ramps β up, restarts it when the momentum points
    uphill and takes back a step that raised the cost (:func:`add_momentum`).
    """
    restart = steps_per_epoch == 1 if restart is None else restart
    return chain(scale_by_schedule(schedule, steps_per_epoch), add_momentum(decay, restart=restart))


def nesterov(schedule, steps_per_epoch=1, decay=0.9, restart=None):
    """Nesterov's accelerated gradient, the gradient taken at the current iterate.

    ``θ_{t+1} = θ_t − η g_t + β (θ_t − θ_{t−1}) − β (η g_t − η g_{t−1})``: without
    ``restart``, with a constant step, the form optax and PyTorch use
    (``θ ← θ − η (g + βv)``); ``restart`` as for :func:`momentum`.
    """
    restart = steps_per_epoch == 1 if restart is None else restart
    return chain(
        scale_by_schedule(schedule, steps_per_epoch), add_momentum(decay, nesterov=True, restart=restart)
    )


def adam(schedule, steps_per_epoch=1, b1=0.9, b2=0.999, eps=1e-8):
    """Adam: ``θ ← θ − η_t m̂ / (√v̂ + ε)``.

    Its steps are per coordinate, so no scalar proximal step matches them: the
    L1 penalty is refused with Adam (see :func:`gradfit.fitting.prepare`).
    """
    return chain(scale_by_adam(b1, b2, eps), scale_by_schedule(schedule, steps_per_epoch))


def cg(schedule=None, steps_per_epoch=1):
    """Conjugate gradient (needs ``hvp``); its step comes from the line search, not a schedule."""
    return conjugate_gradient()
