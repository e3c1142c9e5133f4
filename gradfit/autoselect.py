"""What ``optimizer="auto"`` (the default) runs, decided per problem.

Plain gradient descent (the tutorial's update) with ``η = 1/L`` shrinks the
error along the Hessian's eigendirection of eigenvalue ``λ`` by ``1 − λ/L`` an
epoch, so from ``θ = 0`` it needs about

    t = log(tol) / log(1 − λmin/L)  ≈  κ · ln(1/tol)

epochs to bring the relative error to ``tol`` (``κ = L/λmin``): 14 epochs at
``κ = 1``, 1,400 at ``κ = 100``, 1.4·10⁹ at ``κ = 10⁸``. The statistics
engine knows ``κ`` before the first epoch (it holds the eigenvalues), so
``"auto"`` keeps gradient descent where that fits comfortably in ``epochs``
(within half of it) and otherwise takes a method whose epochs do not grow with ``κ`` that way:

* the squared error, with or without L2, up to ``κ = 10⁴``: ``"cg"``,
  conjugate gradient with an exact line search, exact in at most
  ``n_params`` epochs in exact arithmetic (a few times that in floating
  point), each epoch O(d²) on the statistics;
* beyond ``κ = 10⁴`` (where conjugate gradient in floating point needs
  thousands of epochs): ``"newton"``, the step ``θ ← θ − H⁺∇F`` with the
  Hessian the statistics hold (:func:`gradfit.optimizers.scale_by_inverse_hessian`,
  the solve the statistics engine already makes for its reference point):
  one epoch reaches the optimum to ``ε·κ``, a second is a step of iterative
  refinement; not a name users pass;
* L1 or elastic net: ``"nesterov"``, accelerated proximal gradient with
  restarts (FISTA with O'Donoghue & Candès' restarts), ``√κ`` rather than
  ``κ``.

Everywhere else ``"auto"`` is ``"gd"``: minibatches, the pass engine (which
does not know ``κ`` before training), a learning rate or schedule given
(conjugate gradient takes neither), ``tol=None`` (no target to reach), other
losses, and ``standardize=False``, the tutorial's raw-feature training, which
asks to watch plain gradient descent on the data as they are (its
certificate, computed in standardized units, then says whether it got there,
and the warning advises ``standardize=True`` or ``optimizer="cg"``). ``GDRegressor.optimizer_`` and
the model file record what ran.
"""

from __future__ import annotations

import math

import numpy as np

from . import registry

#: gd is kept when its estimated epochs are within this fraction of ``epochs``
GD_BUDGET_FRACTION = 0.5
#: conjugate gradient is taken up to this condition number; beyond it, in floating
#: point, it needs far more than ``n_params`` epochs (measured at d = 100: 323
#: epochs at κ = 10⁴, over 1,000 at 10⁶), and "auto" takes the Newton step
CG_CONDITION = 1e4
#: what ``optimizer_`` says for that step (not a name users pass: ``"auto"`` picks it)
NEWTON = "newton"


def smooth_eigenvalues(problem):
    """Eigenvalues (ascending) of the smooth part's Hessian in the units training runs in.

    Only for the statistics engine (``None`` otherwise): the data term's are
    known; an L2 part adds its diagonal (one more O(d³) decomposition).
    """
    engine = problem.objective.engine
    if not hasattr(engine, "eigenvalues"):
        return None
    penalty = problem.objective.penalty
    if penalty is None or penalty.l2 == 0:
        return np.asarray(engine.eigenvalues)
    if getattr(engine, "smooth_eigenvalues", None) is not None:  # the block engine's, with the L2 part
        return np.asarray(engine.smooth_eigenvalues)
    hessian = engine.hessian()
    d = engine.n_features
    hessian[np.arange(d), np.arange(d)] += penalty.hessian_diagonal(problem.scaling.scale, engine.n_outputs)
    return np.linalg.eigvalsh(hessian)


def gd_epochs(eigenvalues, tol):
    """Epochs gradient descent with ``η = 1/L`` needs to bring the relative error to ``tol`` (``inf``: never)."""
    top = float(eigenvalues[-1])
    if top <= 0:
        return 0.0
    kept = eigenvalues[eigenvalues > top * len(eigenvalues) * np.finfo(float).eps]
    ratio = float(kept[0]) / top
    if ratio >= 1.0:
        return 1.0
    if tol <= 0:
        return math.inf
    return math.log(tol) / math.log1p(-ratio)


def resolve_optimizer(settings, problem, complete=True):
    """The optimizer ``settings["optimizer"]`` means for ``problem``: itself, or what ``"auto"`` picks.

    ``complete=False`` (``partial_fit``'s single epochs, on batches that may
    differ): ``"gd"``, so that every batch continues the same method.
    """
    requested = settings["optimizer"]
    if requested != "auto":
        return requested
    if not complete:
        return "gd"
    penalty = problem.objective.penalty
    simple = (
        problem.loss.quadratic
        and registry.ENGINES[problem.engine].knows_optimum
        and settings["batch_size"] is None
        and settings["learning_rate"] == "auto"
        and not registry.SCHEDULES[settings["schedule"]].decays
        and settings["tol"] is not None
        and settings["standardize"]
    )
    if not simple:
        return "gd"
    eigenvalues = smooth_eigenvalues(problem)
    if eigenvalues is not None and gd_epochs(eigenvalues, settings["tol"]) <= GD_BUDGET_FRACTION * settings["epochs"]:
        return "gd"
    if penalty is not None and penalty.has_prox:
        return "nesterov"
    top = float(eigenvalues[-1]) if eigenvalues is not None else 0.0
    kept = eigenvalues[eigenvalues > top * len(eigenvalues) * np.finfo(float).eps] if top > 0 else eigenvalues
    if eigenvalues is not None and top > 0 and top / float(kept[0]) > CG_CONDITION:
        return NEWTON
    return "cg"
