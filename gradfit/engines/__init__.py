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

# The cost model of "auto", in seconds per unit of work, measured on the 2-core
# machines this project runs on (benchmarks/bench_engines.py; float64, both
# cores; see benchmarks/README.md for the runs):
#: one fused pass (an epoch of the pass engine), per row·feature: ~1e6 × 100 in 40 ms
PASS_SECONDS = 4.0e-10
#: the statistics pass (centred Gram, syrk), per row·feature²: ~1e6 × 100² in 0.25 s;
#: syrk runs faster per flop for wide data, so this is an upper bound for d ≫ 100
GRAM_SECONDS = 2.5e-11
#: the d × d eigendecomposition the statistics engine starts with, per feature³
EIGH_SECONDS = 2.0e-10
#: passes the pass engine spends on L (Lanczos, ``learning_rate="auto"``)
CURVATURE_PASSES = 20


def engine_costs(n_samples, n_features, epochs):
    """Estimated seconds of ``(statistics, pass)`` for a full-batch squared-error fit.

    statistics: one Gram pass ``N d²`` and one eigendecomposition ``d³``, then
    O(d²) epochs (negligible); pass: ``epochs`` fused passes ``N d`` plus those
    :data:`CURVATURE_PASSES` for the step size. Both also read the data once
    for the moments; the statistics engine's Gram pass is that read.
    ``n_samples=None`` (a file not yet read) counts as many rows: the ``d³`` term drops.
    """
    d = float(n_features)
    rows = 1e12 if n_samples is None else float(n_samples)
    statistics = rows * d * d * GRAM_SECONDS + d**3 * EIGH_SECONDS
    passes = (epochs + CURVATURE_PASSES) * rows * d * PASS_SECONDS
    return statistics, passes


def choose_engine(requested, loss, batch_size, n_features, epochs, n_samples=None):
    """The engine to run: ``"statistics"`` or ``"pass"``.

    ``"auto"`` takes statistics when the loss is the squared error, the batch
    is full, and by :func:`engine_costs` one Gram product and eigendecomposition
    cost less than the epochs' passes: roughly when
    ``epochs + 20 ≥ d · GRAM_SECONDS / PASS_SECONDS ≈ d / 16``.
    Forcing ``"statistics"`` where it cannot serve is an :class:`OptionError`.
    """
    if requested not in ENGINES:
        raise OptionError(f"unknown engine {requested!r}; valid engines: {', '.join(ENGINES)}")
    servable = loss.quadratic and batch_size is None
    if requested == "statistics":
        if not servable:
            why = f"loss={loss.name!r}" if not loss.quadratic else f"minibatches (batch_size={batch_size})"
            raise OptionError(
                f'engine="statistics" serves the full-batch squared error only, not {why}; '
                'use engine="pass" or "auto"'
            )
        return "statistics"
    if requested == "pass" or not servable:
        return "pass"
    statistics, passes = engine_costs(n_samples, n_features, epochs)
    return "statistics" if statistics <= passes else "pass"


__all__ = ["ENGINES", "PassEngine", "Statistics", "StatisticsEngine", "accumulate", "choose_engine", "engine_costs"]
