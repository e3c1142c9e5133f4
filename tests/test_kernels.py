"""The compiled fused pass (``gradfit.engines.kernels``) against a NumPy oracle.

* its sums equal float64 NumPy's over a table of chunks: float32 and float64,
  one and three outputs, with and without target, weights and centre, row
  counts that leave a partner-less middle row or a partial block of sums;
* it takes C-ordered chunks only, and the pass engine serves the rest (and
  everything, when Numba cannot be imported) with BLAS blocks: a fit in a
  process where ``import numba`` fails gives the compiled fit's answer.

The engines' iterates with and without it are compared in ``test_engines.py``
(``pass_path``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gradfit.engines import kernels

pytestmark = pytest.mark.skipif(not kernels.usable(np.zeros((1, 1))), reason="Numba cannot be imported here")


def oracle(X, coef, offset, y, weight, center):
    """``S``, ``Xᵀ(v r)`` and ``Σ v r`` by NumPy in float64."""
    Z = X.astype(np.float64) - (0.0 if center is None else center)
    r = Z @ coef + offset - (0.0 if y is None else y)
    v = np.ones(len(X)) if weight is None else weight
    return float(np.sum(v[:, None] * r * r)), Z.T @ (v[:, None] * r), (v[:, None] * r).sum(axis=0)


def close(a, b, rtol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b), initial=0.0)) <= rtol * max(float(np.max(np.abs(b), initial=0.0)), 1e-300)


@pytest.mark.parametrize("n", [1, 2, 7, 128, 1001])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("with_target", [True, False], ids=["target", "no-target"])
@pytest.mark.parametrize("weights", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("centred", [False, True], ids=["raw", "centred"])
def test_sums_equal_numpy(n, dtype, k, with_target, weights, centred):
    rng = np.random.default_rng(n + 10 * k)
    d = 7
    X = (rng.normal(size=(n, d)) * 3 + 5).astype(dtype)
    coef, offset = rng.normal(size=(d, k)), rng.normal(size=k)
    y = rng.normal(size=(n, k)) if with_target else None
    weight = rng.uniform(0.0, 2.0, size=n) if weights else None
    center = rng.normal(size=d) + 5 if centred else None
    assert kernels.usable(X)
    value, grad, residual_sum = kernels.squared_error_sums(X, coef, offset, y, weight, center)
    expected = oracle(X, coef, offset, y, weight, center)
    assert close(value, expected[0])
    assert grad.shape == (d, k) and close(grad, expected[1])
    assert residual_sum.shape == (k,) and close(residual_sum, expected[2])


def test_an_empty_chunk_sums_to_zero():
    value, grad, residual_sum = kernels.squared_error_sums(np.zeros((0, 4)), np.ones((4, 2)), np.ones(2), np.zeros((0, 2)))
    assert value == 0.0 and not grad.any() and not residual_sum.any() and grad.shape == (4, 2)


def test_non_finite_values_reach_the_sums():
    # No "assume finite" flags: a diverging fit must see its inf and NaN.
    X = np.ones((9, 3))
    value, grad, _ = kernels.squared_error_sums(X, np.full((3, 1), np.inf), np.zeros(1), np.zeros((9, 1)))
    assert np.isinf(value) and np.isinf(grad).all()
    X[4, 1] = np.nan
    value, _, residual_sum = kernels.squared_error_sums(X, np.ones((3, 1)), np.zeros(1), np.zeros((9, 1)))
    assert np.isnan(value) and np.isnan(residual_sum).all()


@pytest.mark.parametrize(
    "X",
    [np.asfortranarray(np.ones((50, 4))), np.ones((50, 8))[:, ::2], np.ones((50, 4), dtype=np.int64), np.ones(4)],
    ids=["Fortran order", "strided columns", "integers", "one-dimensional"],
)
def test_only_c_ordered_float_chunks_take_the_kernel(X):
    assert not kernels.usable(X)


FIT = """
import json, sys
import numpy as np
{block}
import gradfit
from gradfit.engines import kernels
rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 5)) * [1, 2, 3, 4, 5] + 10
y = X @ rng.normal(size=5) + 1.5 + 0.1 * rng.normal(size=3000)
model = gradfit.GDRegressor(engine="pass", epochs=30, tol=None).fit(X, y)
print(json.dumps(dict(available=kernels.available, coef=model.coef_.tolist(), curve=model.loss_curve_)))
"""


def test_without_numba_the_blas_blocks_give_the_same_fit():
    # A real process in which ``import numba`` fails, as on a Python Numba does not support yet.
    def run(block):
        result = subprocess.run([sys.executable, "-c", FIT.format(block=block)], capture_output=True, text=True,
                                check=True)
        return json.loads(result.stdout)

    compiled = run("")
    without = run("sys.modules['numba'] = None  # import numba raises ImportError")
    assert compiled["available"] is True and without["available"] is False
    assert close(without["curve"], compiled["curve"], 1e-12)
    assert close(without["coef"], compiled["coef"], 1e-10)
