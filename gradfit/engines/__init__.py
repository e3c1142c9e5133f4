"""Engines: the value and gradient of the cost at θ, from per-chunk partial sums.

``statistics`` keeps the sufficient statistics of the squared error and never
reads the data again; ``pass`` reads the data every epoch and serves any loss
and minibatches. :func:`choose_engine` picks one by a cost model.
"""

from __future__ import annotations

from ..errors import OptionError
from .passes import PassEngine
from .statistics import Statistics, StatisticsEngine, accumulate

ENGINES = ("auto", "statistics", "pass")

# One epoch of a pass reads X once (memory-bound, ~1.25e9 row·features a second
# on the 2-core machines here); the scatter matrix costs N·d² flops at ~40
# GFLOP/s. So statistics wins once epochs × N·d > N·d² / GRAM_SPEEDUP.
GRAM_SPEEDUP = 30.0


def choose_engine(requested, loss, batch_size, n_features, epochs):
    """The engine to run: ``"statistics"`` or ``"pass"``.

    ``"auto"`` takes statistics when the loss is quadratic, the batch is full,
    and the epochs outweigh one Gram product (``epochs ≥ d / GRAM_SPEEDUP``).
    Forcing ``"statistics"`` where it cannot serve is an error.
    """
    if requested not in ENGINES:
        raise OptionError(f"unknown engine {requested!r}; valid engines: {', '.join(ENGINES)}")
    servable = loss.quadratic and batch_size is None
    if requested == "statistics":
        if not servable:
            why = f"loss={loss.name!r}" if not loss.quadratic else "minibatches (batch_size)"
            raise OptionError(
                f'engine="statistics" serves the full-batch squared error only, not {why}; '
                'use engine="pass" or "auto"'
            )
        return "statistics"
    if requested == "pass":
        return "pass"
    return "statistics" if servable and epochs * GRAM_SPEEDUP >= n_features else "pass"


__all__ = ["ENGINES", "PassEngine", "Statistics", "StatisticsEngine", "accumulate", "choose_engine"]
