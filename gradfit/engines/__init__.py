"""Engines: the value and gradient of the cost at θ, from per-chunk partial sums.

``statistics`` keeps the sufficient statistics of a quadratic loss (the squared
error) and never reads the data again; ``pass`` reads the data every epoch and
serves any loss and minibatches. Each is an entry of :data:`PARTS` (what it
serves, its cost model, how it is built), which the table of parts
(:data:`gradfit.registry.ENGINES`) lists; :func:`choose_engine` picks the
cheapest that serves.
"""

from __future__ import annotations

from ..errors import OptionError
from ..parts import EnginePart
from .passes import PassEngine
from .statistics import Statistics, StatisticsEngine, accumulate

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
    """The name of the engine to run, e.g. ``"statistics"`` or ``"pass"``.

    ``"auto"`` takes, of the engines in :data:`PARTS` that
    serve ``loss`` and ``batch_size`` (by the loss's capabilities), the one
    whose cost model (:func:`engine_costs`) is lowest, the first in the
    table on a tie: for the full-batch squared error with ``N ≫ d`` the
    statistics roughly when ``epochs + 9 ≥ d / 43``, i.e. always below about
    400 features. Forcing an engine where it cannot serve is an :class:`OptionError`.
    """
    engines = {part.name: part for part in PARTS}
    if requested not in engines:
        raise OptionError(f"unknown engine {requested!r}; valid engines: {', '.join(engines)}")
    if engines[requested].build is not None:
        why = engines[requested].refusal(loss, batch_size)
        if why is not None:
            # the engines that serve, then "auto"
            others = [name for name, part in engines.items()
                      if name != requested and part.build is not None and part.refusal(loss, batch_size) is None]
            others = " or ".join(f'"{name}"' for name in others + [name for name, part in engines.items()
                                                                   if part.build is None])
            raise OptionError(f'engine="{requested}" serves {engines[requested].serves_text} only, not {why}; '
                              f'use engine={others}')
        return requested
    serving = [part for part in engines.values() if part.build is not None and part.refusal(loss, batch_size) is None]
    if len(serving) == 1:
        return serving[0].name
    costs = [part.cost(n_samples, n_features, epochs) for part in serving]
    return serving[costs.index(min(costs))].name


def _statistics_engine(source, scaling, loss, fit_intercept, statistics, penalty=None):
    if getattr(statistics, "blocks", None) is not None:  # a categorical column kept as level codes
        from .categorical import BlockStatisticsEngine  # SciPy's sparse eigensolver: only when used

        # its solve needs the L2 part: the data alone may leave the level effects free
        return BlockStatisticsEngine(statistics, scaling, fit_intercept, penalty)
    return StatisticsEngine(statistics, scaling, fit_intercept)


def _pass_engine(source, scaling, loss, fit_intercept, statistics, penalty=None):
    return PassEngine.for_fit(source, scaling, loss, fit_intercept, statistics)


#: the engines' entries in the table of parts, "auto" first, then in the order "auto"
#: prefers them when they cost the same
PARTS = (
    EnginePart(name="auto"),  # choose_engine: the cheapest that serves
    EnginePart(name="statistics", build=_statistics_engine, needs_quadratic=True, needs_full_batch=True,
               knows_optimum=True, cost=lambda n, d, epochs: engine_costs(n, d, epochs)[0],
               serves_text="the full-batch squared error"),
    EnginePart(name="pass", build=_pass_engine, cost=lambda n, d, epochs: engine_costs(n, d, epochs)[1],
               serves_text="any loss and minibatches"),
)
#: the engine names users can pass, "auto" first
ENGINES = tuple(part.name for part in PARTS)


__all__ = ["ENGINES", "PARTS", "PassEngine", "Statistics", "StatisticsEngine", "accumulate", "choose_engine", "curvature_passes",
           "engine_costs"]
