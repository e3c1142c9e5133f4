"""Numba kernels compiled on first use, one way for every kernel of the package.

Numba is imported only when a kernel first runs (``gradfit --help`` and the
light verbs never pay for it), compiled once per process (and cached on disk),
and where Numba is missing or broken the plain Python function serves: the
same loop, interpreted (slow, not wrong), or ``None`` for callers that have a
faster fallback of their own (the pass engine's BLAS blocks).
"""

from __future__ import annotations

import threading


def lazily_compiled(function, *, fallback=True, **options):
    """A function returning ``function`` compiled by ``numba.njit(cache=True, nogil=True, **options)``.

    Parameters
    ----------
    function : callable
        A kernel written in Numba's subset of Python.
    fallback : bool
        Without Numba, return ``function`` itself (``True``) or ``None``.
    **options
        More ``numba.njit`` options (``fastmath``).

    Returns
    -------
    callable of no arguments
        Compiles on its first call (thread-safe: a source's threads may ask at
        once) and returns the same dispatcher after.
    """
    lock = threading.Lock()
    compiled = []

    def get():
        with lock:
            if not compiled:
                try:
                    import numba

                    compiled.append(numba.njit(function, cache=True, nogil=True, **options))
                except Exception:  # noqa: BLE001 - no (working) Numba here: the module docstring says what serves
                    compiled.append(function if fallback else None)
            return compiled[0]

    return get
