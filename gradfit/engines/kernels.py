"""The fused pass of the squared error, compiled (Numba): X read from memory once.

The pass engine's epoch for the squared error needs, over a chunk of rows,

    r_io = β_o + Σ_j (x_ij − c_j) u_jo − y_io,
    S = Σ_i v_i Σ_o r_io²,      R_o = Σ_i v_i r_io,      G_oj = Σ_i v_i r_io (x_ij − c_j),

with ``u`` the coefficients in the data's units (d × k), ``β`` the offset,
``c`` an optional centre (else 0), ``v`` optional sample weights (else 1) and
``y`` an optional target (else 0: Hessian products). With BLAS that is two
calls per block of rows, ``X_b u`` and then ``X_bᵀ r``, and the second read of
the block, even from cache, plus a Python call per block, leaves an epoch at
1.6 × one ``X @ w`` on one core and worse on two (benchmarks/README.md).
Here one loop does both while a row is in the core's first-level cache (rows
contiguous in memory: C-ordered chunks, as arrays in memory and Dask blocks
usually are), and releases the GIL, so the source's threads run chunks side
by side: 1.03 × the time of one ``X @ w`` on one core, 1.2 × on two.

Numba is a dependency of gradfit, imported on the first squared-error pass
(0.1 s and ~50 MB that a statistics fit does not need). When it cannot be
imported (an install without it, a Python it does not support yet),
:data:`available` turns False and the pass engine keeps its BLAS blocks: the
same sums to rounding, about 1.5 × slower. The kernel compiles on first use
for each kind of chunk (float32 or float64, weights or not, ...: a few tenths
of a second each) and is cached on disk (``__pycache__``, or Numba's
user-wide cache where that is read-only).
"""

from __future__ import annotations

import numpy as np

from ..jit import lazily_compiled

#: whether the compiled kernel may run here: False once Numba failed to
#: import, and tests switch it off to check the BLAS path
available = True

#: pairs of rows summed on their own before joining the chunk's sums (see _rows_kernel)
SUM_BLOCK_ROWS = 64

# Reassociation lets the compiler vectorize the sums; no "no NaN/inf" flags:
# a diverging fit must still see its inf and NaN.
_FASTMATH = {"reassoc", "contract"}


def _rows_kernel(X, coef_t, offset, y, weight, center, grad, residual_sum, codes, level_grad):
    """``S``, and ``G``, ``R`` added to ``grad`` (k, d) and ``residual_sum`` (k,), row by row.

    With level ``codes`` (n,) (a categorical column kept as codes), each
    row's ``v r`` is also added to ``level_grad[o, code]`` (k, L): the
    column's dummies' ``G``, gathered by level (``None``: no such column).

    For rows contiguous in memory (C order). Each row is read once, for its
    dot products and then for its gradient term while it is in L1. Rows are
    taken in pairs from the two halves of the chunk, ``i`` and ``i + h``: two
    streams keep twice the memory reads in flight, which brought one core from
    1.15 × to 1.03 × the time of one ``X @ w`` (a single stream leaves the core
    waiting on memory between its dot product and its update). The sums over
    rows go through a partial sum per :data:`SUM_BLOCK_ROWS` pairs, so their
    rounding grows like ``(B + n/B) ε`` rather than ``n ε``.
    """
    n, d = X.shape
    k = coef_t.shape[0]
    half = (n + 1) // 2
    value = 0.0
    partial_grad = np.zeros((k, d))
    partial_residual = np.zeros(k)
    for first in range(0, half, SUM_BLOCK_ROWS):
        partial_value = 0.0
        for i in range(first, min(first + SUM_BLOCK_ROWS, half)):
            # The partner row; an odd chunk's middle row pairs with itself at weight 0.
            p = i + half
            v = 1.0 if weight is None else weight[i]
            if p < n:
                vp = 1.0 if weight is None else weight[p]
            else:
                p, vp = i, 0.0
            for o in range(k):
                a = 0.0
                b = 0.0
                if center is None:
                    for j in range(d):
                        a += X[i, j] * coef_t[o, j]
                        b += X[p, j] * coef_t[o, j]
                else:
                    for j in range(d):
                        a += (X[i, j] - center[j]) * coef_t[o, j]
                        b += (X[p, j] - center[j]) * coef_t[o, j]
                # The prediction, then the target net of the offset, as the BLAS
                # blocks form X u − (y − β).
                if y is None:
                    a += offset[o]
                    b += offset[o]
                else:
                    a -= y[i, o] - offset[o]
                    b -= y[p, o] - offset[o]
                va = v * a
                if p != i:
                    vb = vp * b
                    partial_value += va * a + vb * b
                    partial_residual[o] += va + vb
                else:  # no partner: nothing of it, not even 0 · inf = NaN
                    vb = 0.0
                    partial_value += va * a
                    partial_residual[o] += va
                if codes is not None:
                    level_grad[o, codes[i]] += va
                    level_grad[o, codes[p]] += vb
                if center is None:
                    for j in range(d):
                        partial_grad[o, j] += va * X[i, j] + vb * X[p, j]
                else:
                    for j in range(d):
                        partial_grad[o, j] += va * (X[i, j] - center[j]) + vb * (X[p, j] - center[j])
        value += partial_value
        for o in range(k):
            residual_sum[o] += partial_residual[o]
            partial_residual[o] = 0.0
            for j in range(d):
                grad[o, j] += partial_grad[o, j]
                partial_grad[o, j] = 0.0
    return value


_dispatcher = lazily_compiled(_rows_kernel, fallback=False, fastmath=_FASTMATH)


def _compiled_kernel():
    """The Numba dispatcher of :func:`_rows_kernel`, or None without Numba (and :data:`available` turns False)."""
    global available
    if not available:
        return None
    compiled = _dispatcher()
    if compiled is None:  # broken or missing: the BLAS blocks serve (module docstring)
        available = False
    return compiled


def usable(X):
    """Whether :func:`squared_error_sums` takes ``X``: Numba present, float32 or float64, C-contiguous.

    Column-major chunks (the file source's, pandas') stay with the BLAS blocks:
    a row of them is spread over d pages, and a compiled loop over blocks of
    rows ran at 1.8 × one ``X @ w`` on one core, where BLAS's ran at 1.6 ×.
    """
    if not (X.ndim == 2 and X.dtype in (np.float32, np.float64) and X.flags.c_contiguous):
        return False
    return _compiled_kernel() is not None


def squared_error_sums(X, coef, offset, y=None, sample_weight=None, center=None, codes=None, n_levels=0):
    """The squared error's sums over a chunk, in one compiled read of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
        C-contiguous (:func:`usable`); float32 is widened value by value,
        never copied.
    coef : ndarray of shape (d, k)
        ``u``, the coefficients in the data's units.
    offset : ndarray of shape (k,)
        ``β``.
    y : ndarray of shape (n, k), optional
        The target; without it ``r = X u + β`` (Hessian products).
    sample_weight : ndarray of shape (n,), optional
    center : ndarray of shape (d,), optional
        Subtracted from every row first.
    codes : ndarray of shape (n,), int, optional
        Each row's level (``0 ≤ code < n_levels``) of a categorical column
        kept as codes; its contribution to the prediction is folded into
        ``y`` by the caller.
    n_levels : int
        ``L``, with ``codes``.

    Returns
    -------
    value : float
        ``S = Σ_i v_i Σ_o r_io²``.
    grad : ndarray of shape (d, k)
        ``Xᵀ(v r)`` (of ``X − c`` with a centre).
    residual_sum : ndarray of shape (k,)
        ``Σ_i v_i r_io``.
    level_sum : ndarray of shape (L, k), only with ``codes``
        ``Σ_{code_i = l} v_i r_io``.
    """
    d, k = coef.shape
    coef_t = np.ascontiguousarray(coef.T, dtype=np.float64)
    offset = np.ascontiguousarray(offset, dtype=np.float64)
    grad = np.zeros((k, d))
    residual_sum = np.zeros(k)
    level_grad = None if codes is None else np.zeros((k, n_levels))
    if X.shape[0] > 0:
        value = float(_compiled_kernel()(X, coef_t, offset, y, sample_weight, center, grad, residual_sum, codes,
                                         level_grad))
    else:
        value = 0.0
    if codes is None:
        return value, grad.T, residual_sum
    return value, grad.T, residual_sum, level_grad.T
