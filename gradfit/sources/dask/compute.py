"""Computing on a cluster, and what can go wrong there: never a wait without end, failures in one line.

:func:`compute` is ``dask.compute`` that watches a distributed cluster while it
runs; :func:`cluster_failure` says what an exception raised by Dask means.
"""

from __future__ import annotations

import sys
import time

from ...errors import ClusterError, GradfitError
from .optional import require

#: seconds a computation waits with no worker in the cluster before the fit
#: stops; Dask's ``distributed.scheduler.no-workers-timeout``, where set, decides instead
NO_WORKERS_TIMEOUT = 60.0
#: seconds between looks at the cluster while a computation runs (none for shorter ones)
WATCH_SECONDS = 1.0
#: seconds the scheduler has to answer such a look
ANSWER_TIMEOUT = 30.0


def compute(*collections):
    """``dask.compute(*collections)``; on a distributed cluster, never a wait without end.

    Dask reruns a task whose worker died while running it (up to
    ``distributed.scheduler.allowed-failures`` deaths, then ``KilledWorker``)
    and recomputes results lost with a worker from their graph (the tasks are
    pure), so a result is whole or does not come. What Dask does not bound is
    a wait with no worker left: it waits for workers to come. So the
    computation is watched every :data:`WATCH_SECONDS`, and stopped after
    :func:`no_workers_timeout` seconds without a worker. Failures of the
    cluster come out as :class:`ClusterError`.
    """
    dask = require("dask")
    client = _active_client()
    if client is None:
        return dask.compute(*collections)
    address = getattr(client.scheduler, "address", None)
    try:
        return _compute_watched(client, collections, address)
    except GradfitError:
        raise
    except Exception as exc:
        failure = cluster_failure(exc, address)
        if failure is None:
            raise
        raise failure from None


def no_workers_timeout():
    """Seconds a computation may wait with no worker in the cluster.

    Dask's ``distributed.scheduler.no-workers-timeout`` where set (a scheduler
    started with it fails such tasks after that long too), else
    :data:`NO_WORKERS_TIMEOUT`.
    """
    dask = require("dask")
    from dask.utils import parse_timedelta

    configured = dask.config.get("distributed.scheduler.no-workers-timeout", None)
    if configured is None:
        return NO_WORKERS_TIMEOUT
    return float(parse_timedelta(configured, default="s"))


def _active_client():
    """The ``distributed.Client`` that ``dask.compute`` would use now, or ``None``."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None  # never imported: no client exists
    from dask.base import get_scheduler

    client = getattr(get_scheduler(), "__self__", None)  # a client's scheduler is its bound ``get``
    return client if isinstance(client, distributed.Client) else None


def _compute_watched(client, collections, address):
    distributed = require("distributed")
    futures = client.compute(list(collections))
    timeout = no_workers_timeout()
    alone_since = None  # when the cluster was first seen with no worker
    while True:
        try:
            distributed.wait(futures, timeout=WATCH_SECONDS)
            break
        except (TimeoutError, distributed.TimeoutError):
            pass  # still running: look at the cluster
        if _count_workers(client, address):
            alone_since = None
            continue
        now = time.monotonic()
        alone_since = now if alone_since is None else alone_since
        if now - alone_since >= timeout:
            # Dropping the futures releases the tasks on the scheduler.
            raise ClusterError(
                f"no Dask worker left in the cluster at {address} for {timeout:g} s (they died and none "
                "came back); the fit stopped: start workers, or set distributed.scheduler.no-workers-timeout "
                "to wait longer"
            )
    return tuple(client.gather(futures))


def _count_workers(client, address):
    """Workers in the cluster now, as the scheduler says (it has :data:`ANSWER_TIMEOUT` to)."""
    if client.status != "running":  # "connecting" once the scheduler is lost, "closed" after
        raise _lost_scheduler(address)
    try:
        info = client.sync(client.scheduler.identity, n_workers=0, callback_timeout=ANSWER_TIMEOUT)
    except TimeoutError:
        raise ClusterError(
            f"the Dask scheduler at {address} did not answer within {ANSWER_TIMEOUT:g} s; the fit stopped"
        ) from None
    except OSError as exc:  # CommClosedError is one
        raise _lost_scheduler(address, exc) from None
    return int(info.get("n_workers", len(info.get("workers", ()))))


def _lost_scheduler(address, exc=None):
    where = f" at {address}" if address else ""
    why = f": {_one_line(exc)}" if exc is not None else ""
    return ClusterError(
        f"lost the connection to the Dask scheduler{where} (it stopped, or the network failed{why}); the fit stopped"
    )


def cluster_failure(exc, address=None):
    """A :class:`ClusterError` saying what ``exc`` (raised by Dask) means, or ``None`` when it is not the cluster's."""
    if "distributed" not in sys.modules:
        return None
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker, NoValidWorkerError

    where = f" at {address}" if address else ""
    if isinstance(exc, KilledWorker):
        tries = exc.allowed_failures + 1
        last = getattr(exc.last_worker, "address", exc.last_worker)
        return ClusterError(
            f"Dask gave up on task {exc.task!r} after {tries} worker{'s' if tries > 1 else ''} died running it "
            f"(the last: {last}; distributed.scheduler.allowed-failures is {exc.allowed_failures}); "
            "the fit stopped, see the workers' logs (a worker out of memory is the usual cause)"
        )
    if isinstance(exc, NoValidWorkerError):
        return ClusterError(
            f"no Dask worker could run task {exc.task!r} for {exc.args[4]:g} s "
            "(distributed.scheduler.no-workers-timeout); the fit stopped"
        )
    if isinstance(exc, CancelledError):
        reason = getattr(exc, "reason", None)
        groups = getattr(exc, "error_groups", None)
        if reason is None and groups:
            reason = groups[0].reason
        if reason == "scheduler-connection-lost":
            return _lost_scheduler(address)
        return ClusterError(f"Dask cancelled the fit's computation (reason: {reason or 'unknown'}); the fit stopped")
    if isinstance(exc, CommClosedError):
        return ClusterError(f"lost the connection to the Dask cluster{where} ({_one_line(exc)}); the fit stopped")
    if isinstance(exc, TimeoutError):
        return ClusterError(f"the Dask cluster{where} did not answer in time ({_one_line(exc)}); the fit stopped")
    return None


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__
