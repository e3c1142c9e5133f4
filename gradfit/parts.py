"""The kinds of entry in the table of parts (:mod:`gradfit.registry`): what each declares.

An entry is a frozen dataclass: its name, the estimator parameters it owns
(:class:`Param`, plain data: scikit-learn's constraints are built from them
only when the estimator needs them), its capabilities, and its builder.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Param:
    """An estimator parameter a part owns: its default and range, as plain data.

    ``kind`` is ``"real"`` or ``"integer"``; ``low``/``high`` (``None``:
    unbounded) and ``closed`` (``"left"``, ``"right"``, ``"both"``,
    ``"neither"``) are scikit-learn's ``Interval``'s, built lazily by
    :mod:`gradfit.parameters`. ``refuse`` says what a value other than
    the default does where the part that owns it is not chosen: ``True`` an
    :class:`OptionError`, ``False`` a warning in the estimator (an error on
    the command line), ``None`` nothing (not checked).
    """

    name: str
    default: Any
    kind: str
    low: float | None = None
    high: float | None = None
    closed: str = "neither"
    refuse: bool | None = True


@dataclass(frozen=True)
class Part:
    """One entry of the table: ``kind`` and ``name``, the parameters it owns, and its builder."""

    name: str
    kind: str = ""
    build: Callable | None = None
    params: tuple = ()

    @property
    def param_names(self):
        return tuple(p.name for p in self.params)


@dataclass(frozen=True)
class LossPart(Part):
    """A loss; ``build(settings)`` returns the loss object (:mod:`gradfit.losses`), whose class declares
    its capabilities (:attr:`CAPABILITIES`)."""

    kind: str = "loss"
    loss_class: type = None

    def __call__(self, *values):
        """The loss from its parameters' values in order: the earlier table's ``LOSSES[name](epsilon)``.

        A value beyond the loss's own parameters must be ``None`` (the
        earlier call passed ``epsilon`` to every loss): nothing is dropped silently.
        """
        extra = values[len(self.params):]
        if any(value is not None for value in extra):
            raise TypeError(f"loss {self.name!r} takes {self.param_names}, not {len(values)} values")
        return self.build(dict(zip(self.param_names, values)))

    #: what a loss declares (:mod:`gradfit.losses.base`), asked of its entry as of the loss
    CAPABILITIES = ("smooth", "quadratic", "curvature", "linear_derivative", "piecewise_linear", "huberized")

    def __getattr__(self, name):
        # the capabilities are the loss class's, stated once there
        if name in LossPart.CAPABILITIES:
            return getattr(self.loss_class, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@dataclass(frozen=True)
class OptimizerPart(Part):
    """An optimizer; ``build(schedule, steps_per_epoch, **context)`` returns an optax-style ``(init, update)``.

    ``auto_rate``: the step ``learning_rate="auto"`` takes as a multiple of
    ``1/L`` (``None``: another unit, see :func:`gradfit.fitting.base_learning_rate`).
    ``step_source``: where its steps come from when it takes no learning rate.
    ``accelerated``: it keeps a velocity (momentum); ``restarts``: the velocity
    restarts where the cost rises (:func:`gradfit.optimizers.add_momentum`).
    ``refined``: asked for by name, it is followed by refinement epochs whose
    gradient comes from a data pass (:mod:`gradfit.refine`).
    ``reasons``: why it cannot serve a need (``"quadratic"``, ``"full_batch"``,
    ``"prox"``), in its own words, for the messages.
    """

    kind: str = "optimizer"
    takes_learning_rate: bool = True
    serves_prox: bool = True
    needs_full_batch: bool = False
    needs_quadratic: bool = False
    restarts: bool = False
    accelerated: bool = False
    auto_rate: float | None = 1.0
    refined: bool = False
    step_source: str = ""
    reasons: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulePart(Part):
    """A schedule; ``build(learning_rate, settings) -> (epoch -> step)``; ``decays``: whether the step changes."""

    kind: str = "schedule"
    decays: bool = False


@dataclass(frozen=True)
class PenaltyPart(Part):
    """A penalty; ``build(settings)`` returns the :class:`~gradfit.penalties.ElasticNet` it means."""

    kind: str = "penalty"


@dataclass(frozen=True)
class EnginePart(Part):
    """An engine; ``build(source, scaling, loss, fit_intercept, statistics, penalty=None)`` returns it.

    ``penalty``: the fit's (or ``None``), for an engine whose solve includes
    its L2 part (the statistics engine on a categorical column's blocks).

    ``needs_quadratic``/``needs_full_batch``: which losses and batches it
    serves (by the loss's capability, never its name); ``cost(n_samples,
    n_features, epochs)``: its cost model in seconds (:func:`gradfit.engines.engine_costs`);
    ``knows_optimum``: it keeps the statistics that give the optimum, the
    eigenvalues and the training R² without another pass; ``serves_text``:
    what it serves, for the message that refuses it.
    """

    kind: str = "engine"
    needs_quadratic: bool = False
    needs_full_batch: bool = False
    knows_optimum: bool = False
    cost: Callable | None = None
    serves_text: str = ""

    def refusal(self, loss, batch_size):
        """Why this engine cannot serve ``loss`` with ``batch_size`` (text), or ``None`` where it can."""
        if self.needs_quadratic and not loss.quadratic:
            return f"loss={loss.name!r}"
        if self.needs_full_batch and batch_size is not None:
            return f"minibatches (batch_size={batch_size})"
        return None


class Names:
    """The names of one kind of part, live: a part added to the table later is among them.

    For the command line's ``choices`` (sorted, as ``--help`` lists them;
    ``sort=False`` keeps the table's order, "auto" first).
    """

    def __init__(self, parts, sort=True):
        self.parts, self.sort = parts, sort

    def __iter__(self):
        return iter(sorted(self.parts) if self.sort else list(self.parts))

    def __contains__(self, name):
        return name in self.parts

    def __len__(self):
        return len(self.parts)
