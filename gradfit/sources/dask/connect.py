"""Clusters: a ``--dask`` address parsed, and a client for it (a LocalCluster started, or a scheduler joined)."""

from __future__ import annotations

import contextlib
import logging

from ...errors import GradfitError
from .optional import require


def parse_address(text):
    """``local`` / ``local:N`` → ``("local", N)``; ``tcp://HOST:PORT`` (or another scheme) → itself.

    Raises ``ValueError`` with a one-line explanation otherwise.
    """
    text = text.strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or "2"
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"invalid value {text!r}: expected local or local:N with N ≥ 1 worker processes")
        return ("local", int(count))
    if "://" in text:
        return text
    raise ValueError(f"invalid value {text!r}: expected local[:N] or a scheduler address such as tcp://HOST:8786")


@contextlib.contextmanager
def connect(address):
    """A ``distributed.Client`` for ``address`` (see :func:`parse_address`), closed on exit.

    ``("local", N)`` starts a LocalCluster of N single-threaded worker
    processes on this machine; a scheduler address joins a running cluster.
    Either way, ``dask.compute`` uses this client until the block ends.
    """
    distributed = require("distributed")
    if isinstance(address, tuple):
        _, count = address
        cluster = distributed.LocalCluster(
            n_workers=count, threads_per_worker=1, processes=True,
            dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,  # gradfit reports errors itself
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise GradfitError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        yield client
