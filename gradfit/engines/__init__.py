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

# The cost model of "auto", in seconds of wall time on both cores of the
# 2-core machines this project runs on (float64, a quiet machine; one core's
# CPU time scaled by 1/1.4-1.5: benchmarks/README.md has the measurements):
#: a fused pass (one epoch of the pass engine), per row·feature: 1e6 × 100 in 33 ms
#: compiled (:mod:`gradfit.engines.kernels`; 60 ms by BLAS blocks, without Numba)
PASS_SECONDS = 3.3e-10
#: ... and per pass, whatever its size (the chunks' threads, the Python around them):
#: 100 × 5 in 50 µs
PASS_OVERHEAD_SECONDS = 5e-5
#: the statistics pass, per row·feature (reading, centring, copying blocks) ...
COPY_SECONDS = 1.6e-9
#: ... and per row·feature² (the centred Gram, BLAS syrk): 1e6 × 100 in 0.24 s in all,
#: 4e6 × 32 in 0.2 s, 2e5 × 1000 in 1.9 s
GRAM_SECONDS = 7.7e-12
#: the d × d eigendecompositions a statistics fit makes, per feature³ (0.3 s at d = 1000)
EIGH_SECONDS = 6e-10
#: a pass multiplying ``b`` directions at once (the step size's Hessian products) costs
#: ``1 + DIRECTION_PASS_FRACTION·(b − 1)`` passes: one read of X, ``b`` products (compiled, 1e5 × 100:
#: 15.6 ms for 1, 34.8 ms for 4, 70 ms for 8)
DIRECTION_PASS_FRACTION = 0.45


def curvature_passes(n_features, fit_intercept=True):
    """The pass engine's step size (``learning_rate="auto"``) in passes' worth of time.

    :meth:`PassEngine.curvature`: one pass with ``p`` directions up to 16
    parameters, else two with 8 (its last pass also gives the first epoch's
    gradient, which is therefore not counted twice).
    """
    from .passes import CURVATURE_BLOCK, EXACT_CURVATURE_PARAMS

    p = n_features + fit_intercept
    if p <= EXACT_CURVATURE_PARAMS:
        return 1 + DIRECTION_PASS_FRACTION * (p - 1)
    return 2 * (1 + DIRECTION_PASS_FRACTION * (CURVATURE_BLOCK - 1))


def engine_costs(n_samples, n_features, epochs):
    """Estimated seconds of ``(statistics, pass)`` for a full-batch squared-error fit, set-up included.

    statistics: one pass forming the centred Gram, ``N (c₁ d + c₂ d²)``, and the
    eigendecomposition, ``c₃ d³``; its epochs are O(d²), negligible. pass: the
    moments pass (``c₁ N d``, as the Gram pass's reading), ``epochs`` fused
    passes, the step size (:func:`curvature_passes`) and the final cost's
    pass, ``N d`` each and a fixed cost.
    ``n_samples=None`` (a file not yet read) counts as many rows: ``d³`` drops out.
    """
    d = float(n_features)
    rows = 1e12 if n_samples is None else float(n_samples)
    statistics = rows * (COPY_SECONDS * d + GRAM_SECONDS * d * d) + EIGH_SECONDS * d**3
    passes = (epochs + 1 + curvature_passes(n_features)) * (rows * d * PASS_SECONDS + PASS_OVERHEAD_SECONDS)
    return statistics, passes + rows * d * COPY_SECONDS


def choose_engine(requested, loss, batch_size, n_features, epochs, n_samples=None):
    """The engine to run: ``"statistics"`` or ``"pass"``.

    ``"auto"`` takes statistics when the loss is the squared error, the batch
    is full, and by :func:`engine_costs` one Gram pass and eigendecomposition
    cost less than the pass engine's set-up and epochs: for ``N ≫ d`` roughly
    when ``epochs + 9 ≥ d / 43``, i.e. always below about 400 features.
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


__all__ = ["ENGINES", "PassEngine", "Statistics", "StatisticsEngine", "accumulate", "choose_engine", "curvature_passes",
           "engine_costs"]
