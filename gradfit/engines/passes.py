"""The pass engine: value and gradient from one fused pass over the data.

For any pointwise loss. Per block of rows ``X_b``, small enough to stay in the
core's cache between the two products (:mod:`gradfit.engines.blocks`):

    r = X_b u + β − y_b,      (ℓ, g) = loss(r),      Σ v ℓ,   X_bᵀ (v g),   Σ v g

so an epoch reads X from memory once, not twice (``X @ w`` and then ``Xᵀ r``
over the whole array would). The model is in raw units ``u = w / scale``,
``β = b − center·u``, so that X is never standardized or copied; the chain
rule brings the sums back to working units:
``∇_w J = (X_bᵀ(vg) − center Σvg) / scale / (W k)``.

The engine never names a loss: it asks what the loss declares
(:mod:`gradfit.losses.base`). A loss whose derivative is linear in the
residual, ``ℓ' = c·r`` (``linear_derivative = c``: the squared error, with
``c = 2``), on C-ordered chunks, takes one compiled loop that reads each row
once for both (:mod:`gradfit.engines.kernels`). Otherwise (other losses,
column-major chunks, no Numba) a block costs two BLAS calls and a
subtraction (``X_b u``, ``− (y_b − β)``, ``X_bᵀ(v r)``), and for a
linear derivative one more product per chunk gives the rest:
``[1, r]ᵀ(v r) = [Σ v r; Σ v r²]``; other losses go through their pointwise
``value_and_derivative(prediction, target)``.

A categorical column kept as level codes (the source's ``block_layout``,
chunks with ``codes``: :class:`LevelCodes`) is read as codes, never as a
dense one-hot block: its dummies' part of ``X_b u`` is the level's
coefficient gathered (``a[code]``), folded into the target of a linear
derivative or added to the prediction, and of ``X_bᵀ(vg)`` one ``bincount``
a chunk (the compiled loop adds ``v r`` to its row's level as it goes). The
sums are the dense dummies' to rounding; an epoch costs ``O(N p + L)`` for
``p`` other features and ``L`` levels, not ``O(N (p + L))``.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .blocks import PASS_BLOCK_BYTES, PASS_MIN_ROWS, block_rows, scratch


def _copy_block(block, center):
    """``block`` as a float64 copy in scratch, widened and (``center`` not None) centred."""
    out = scratch("pass.block", block.shape[0], block.shape[1])
    if center is None:
        out[...] = block
    else:
        np.subtract(block, center, out=out)
    return out


class LevelCodes:
    """Where a categorical column kept as level codes sits among the ``d`` features (a source's ``block_layout``).

    Treatment coding gives the column's ``L − 1`` dummies (all levels but the
    ``reference``) the positions ``level_index``, the other ``p`` features
    ``dense_index``. Its dummies' part of the prediction is then one gather,
    ``X̃_dummies u = a[code]`` with ``a_l`` the coefficient of level ``l``
    (``a_ref = 0``), and of ``X̃ᵀ(vg)`` one ``bincount``:
    ``Σ_{code = l} v g``, at ``level_index`` (the reference's dropped).
    Centred (``centre_blocks``: the dummies' centre is the level share ``π``),
    ``(e_code − π)·a = a[code] − π·a`` and ``Σ v g (1[code = l] − π_l)``.
    """

    def __init__(self, layout):
        self.dense_index = np.asarray(layout["dense_index"], dtype=np.intp)
        self.level_index = np.asarray(layout["level_index"], dtype=np.intp)
        self.n_levels = int(layout["n_levels"])
        self.others = np.delete(np.arange(self.n_levels), int(layout["reference"]))

    def level_coef(self, coef):
        """``a`` of shape (L, k): each level's coefficient, 0 for the reference."""
        levels = np.zeros((self.n_levels, coef.shape[1]))
        levels[self.others] = coef[self.level_index]
        return levels

    def gather(self, dense_gradient, level_sums, derivative_sum, center):
        """``X̃ᵀ(vg)`` of shape (d, k) from the other features' part and the per-level sums ``Σ_{code=l} v g``."""
        d = self.dense_index.size + self.level_index.size
        gradient = np.empty((d, dense_gradient.shape[1]))
        gradient[self.dense_index] = dense_gradient
        gradient[self.level_index] = level_sums[self.others]
        if center is not None:
            gradient[self.level_index] -= np.outer(center[self.level_index], derivative_sum)
        return gradient


def _level_sums(codes, values, n_levels):
    """``Σ_{code = l} values`` per level, shape (L, k), for ``values`` of shape (n, k)."""
    return np.column_stack([np.bincount(codes, weights=values[:, o], minlength=n_levels)
                            for o in range(values.shape[1])])


def partial_sums_function(coef, offset, loss, with_target, center=None, layout=None):
    """The per-chunk function of a pass: ``chunk → [Σvℓ, X_cᵀ(vg), Σvg, Σv]``.

    Parameters
    ----------
    coef : ndarray of shape (d, k)
        ``u``, the coefficients in the data's units.
    offset : ndarray of shape (k,)
        ``β``, added to every row's prediction.
    loss : loss object or None
        ``None``: the design's products ``2 X̃ᵀ(X̃ u)`` (``ℓ = r²`` without a
        target: the Hessian of the squared error, the unit of every curvature bound).
    with_target : bool
        ``r = X u + β − y``, or ``X u + β`` (Hessian products).
    center : ndarray of shape (d,) or None
        Subtracted from every block before both products.
    layout : dict or None
        The source's ``block_layout``: chunks carry a categorical column as
        level ``codes`` (``X`` then holds the other features), read as
        :class:`LevelCodes` says, never as a dense one-hot block.

    Returns a function of one chunk (it reads nothing else), for
    :meth:`~gradfit.sources.Source.reduce`: float32 blocks are widened one block
    at a time, so that every engine and source gives the same float64 iterates.
    """
    if layout is None:
        return _dense_sums_function(coef, offset, loss, with_target, center)
    levels = LevelCodes(layout)
    level_coef = levels.level_coef(coef)
    dense_center = None if center is None else center[levels.dense_index]
    if center is not None:  # the dummies centred: a[code] − π·a, the constant joins the offset
        offset = offset - center[levels.level_index] @ coef[levels.level_index]
    dense = _dense_sums_function(coef[levels.dense_index], offset, loss, with_target, dense_center, levels.n_levels)

    def partial_sums(chunk):
        value, dense_gradient, derivative_sum, total, level_sums = dense(chunk, chunk.codes,
                                                                          level_coef[chunk.codes])
        return [value, levels.gather(dense_gradient, level_sums, derivative_sum, center), derivative_sum, total]

    return partial_sums


def _dense_sums_function(coef, offset, loss, with_target, center=None, n_levels=None):
    """:func:`partial_sums_function` over the chunk's ``X``; with ``n_levels``, a function of
    ``(chunk, codes, shift)`` that adds ``shift`` (n, k) to every row's prediction and also
    returns ``Σ_{code = l} v g`` (L, k)."""
    d, k = coef.shape
    # ℓ' = c·r: the residual itself is the derivative, up to c (ℓ = (c/2) r²)
    factor = 2.0 if loss is None else loss.linear_derivative
    linear = factor is not None

    def partial_sums(chunk, codes=None, shift=None):
        X, weight = chunk.X, chunk.sample_weight
        n = chunk.n_rows
        total = float(n) if weight is None else float(np.sum(weight))
        if linear and kernels.usable(X):  # ℓ = (c/2) r², g = c r, in one compiled read of X
            target = chunk.y if with_target else None
            if shift is not None:  # the level's coefficient joins the target: r = X u + β − (y − a[code])
                target = -shift if target is None else target - shift
            sums = kernels.squared_error_sums(X, coef, offset, target, weight, center, codes, n_levels or 0)
            value, gradient, residual_sum = sums[:3]
            partial = [0.5 * factor * value, factor * gradient, factor * residual_sum, total]
            return partial if codes is None else partial + [factor * sums[3]]
        rows = block_rows(d, PASS_BLOCK_BYTES, PASS_MIN_ROWS)
        copy = X.dtype != np.float64 or center is not None
        # A linear derivative: r = X u − t with t = y − β (or −β), formed once a chunk rather than once a block.
        if not linear:
            target = None
        elif with_target:
            target = np.subtract(chunk.y, offset, out=scratch("pass.target", n, k))
            if shift is not None:
                target -= shift
        elif shift is not None:
            target = np.subtract(-offset, shift, out=scratch("pass.target", n, k))
        else:
            target = np.broadcast_to(-offset, (n, k))
        # [1, r] of the whole chunk, filled block by block: the ones column turns
        # Σ v r into one more row of the single product that sums the residuals.
        ones_and_residual = scratch("pass.residual", n, k + 1, order="F", ones_column=True)
        residual = ones_and_residual[:, 1:]
        weighted = residual if weight is None else scratch("pass.weighted", n, k)
        # a column kept as codes: every row's v g, for one bincount a chunk
        derivatives = scratch("pass.derivatives", n, k) if codes is not None and not linear else None
        products = np.empty((-(-n // rows), d, k))  # X_bᵀ(v g) of each block, summed once at the end
        value, derivative_sum = 0.0, np.zeros(k)
        for i, start in enumerate(range(0, n, rows)):
            stop = min(start + rows, n)
            X_b = _copy_block(X[start:stop], center) if copy else X[start:stop]
            r = residual[start:stop]
            np.matmul(X_b, coef, out=r)
            if linear:
                r -= target[start:stop]
                g = r if weight is None else np.multiply(r, weight[start:stop, None], out=weighted[start:stop])
            else:
                r += offset  # the prediction X u + β: the loss sees (prediction, target)
                if shift is not None:
                    r += shift[start:stop]
                pointwise, g = loss.value_and_derivative(r, chunk.y[start:stop] if with_target else 0.0)
                if weight is not None:
                    pointwise = pointwise * weight[start:stop, None]
                    g *= weight[start:stop, None]
                value += float(np.sum(pointwise))
                derivative_sum += g.sum(axis=0)
                if derivatives is not None:
                    derivatives[start:stop] = g
            np.matmul(X_b.T, g, out=products[i])  # while X_b is still in cache
        gradient = products.sum(axis=0)
        if linear:  # ℓ = (c/2) r², g = c r
            sums = ones_and_residual.T @ weighted  # [Σ v r; rᵀ(v r)]
            partial = [0.5 * factor * float(np.trace(sums[1:])), factor * gradient, factor * sums[0], total]
            if codes is not None:
                partial.append(factor * _level_sums(codes, weighted[:n], n_levels))
            return partial
        partial = [value, gradient, derivative_sum, total]
        return partial if codes is None else partial + [_level_sums(codes, derivatives[:n], n_levels)]

    return partial_sums


def _add(a, b):
    for i in range(4):
        a[i] += b[i]
    return a


class PassEngine:
    """Cost and gradient of ``loss`` over ``source`` by data passes.

    Parameters
    ----------
    source : Source
    scaling : Scaling
    loss : loss object (see :mod:`gradfit.losses`)
    fit_intercept : bool
    sum_weights : float
        ``W``, known from the moments pass.
    centre_blocks : bool, default=False
        Subtract ``center`` from every block before both products, so the
        residual is ``(X_b − center) u + b − y_b`` and the gradient
        ``(X_b − center)ᵀ(v g)``, instead of the ``− center Σvg`` correction
        afterwards. It costs a copy of each block, and keeps the digits that
        ``X_bᵀ(vg)`` and ``center·u`` would cancel when the features are far
        from zero compared with their spread: :mod:`gradfit.refine` uses it for
        the data-pass gradients of iterative refinement (on NIST's Longley data
        it is the difference between 11 and 13 correct digits).
    """

    name = "pass"

    def __init__(self, source, scaling, loss, fit_intercept, sum_weights, centre_blocks=False):
        self.source = source
        self.scaling = scaling
        self.loss = loss
        self.fit_intercept = fit_intercept
        self.sum_weights = float(sum_weights)
        self.centre_blocks = centre_blocks
        self.n_features, self.n_outputs = source.n_features, source.n_outputs
        self._curvature = None
        self._start = None  # (J, ∇J) at θ = 0, when the step size's pass gave them

    @classmethod
    def for_fit(cls, source, scaling, loss, fit_intercept, statistics):
        """The engine of a fit (its entry's builder, :data:`gradfit.registry.ENGINES`).

        ``Xᵀg − center·Σg`` loses ``log10(|center|/scale)`` digits and can
        overflow when features sit far from zero: there it centres each block
        instead (a block-sized copy), above :data:`CENTRE_BLOCKS_ABOVE`.
        """
        far = bool(np.any(np.abs(scaling.center) > CENTRE_BLOCKS_ABOVE * scaling.scale))
        return cls(source, scaling, loss, fit_intercept, statistics.sum_weights, centre_blocks=far)

    def _raw(self, params):
        d = self.n_features
        coef = params[:d] / self.scaling.scale[:, None]
        bias = params[d] if self.fit_intercept else np.zeros(params.shape[1])
        if self.centre_blocks:
            return coef, bias
        # einsum, not BLAS: a vector-matrix product this small runs on OpenBLAS's threads, which on a busy
        # machine cost milliseconds a minibatch step at d = 10,000 (a categorical column's dummies)
        return coef, bias - np.einsum("j,jk->k", self.scaling.center, coef)

    def _pass(self, params, rows, loss, with_target):
        """Σ v ℓ, Xᵀ(v g), Σ v g and Σ v over the rows (all, or ``rows``)."""
        coef, offset = self._raw(params)
        center = self.scaling.center if self.centre_blocks else None
        partial_sums = partial_sums_function(coef, offset, loss, with_target, center, self.source.block_layout)
        if rows is not None:
            return partial_sums(self.source.take(rows))
        return self.source.reduce(partial_sums, _add)

    def _to_working(self, grad_coef, grad_sum, scale_by):
        d = self.n_features
        grad = np.empty((d + self.fit_intercept, grad_sum.shape[0]))  # a column per output or direction
        if not self.centre_blocks:
            grad_coef = grad_coef - np.outer(self.scaling.center, grad_sum)
        grad[:d] = grad_coef / self.scaling.scale[:, None]
        if self.fit_intercept:
            grad[d] = grad_sum
        return grad / scale_by

    def value_and_grad(self, params, rows=None):
        """``(J, ∇J)`` over all rows, or over the minibatch ``rows`` (sorted indices)."""
        if rows is None and self._start is not None and params.shape == self._start[1].shape and not params.any():
            return self._start[0], self._start[1].copy()  # θ = 0: read with the step size's last pass
        value, grad_coef, grad_sum, total = self._pass(params, rows, self.loss, True)
        if rows is None:
            total = self.sum_weights  # the same, without rounding differences
        if total == 0:
            return 0.0, np.zeros_like(params)
        scale_by = total * self.n_outputs
        return value / scale_by, self._to_working(grad_coef, grad_sum, scale_by)

    def value(self, params):
        return self.value_and_grad(params)[0]

    def hvp(self, direction):
        """Hessian of the squared error's J times ``direction``: one pass."""
        _, grad_coef, grad_sum, _ = self._pass(direction, None, None, False)
        return self._to_working(grad_coef, grad_sum, self.sum_weights * self.n_outputs)

    def _hvp_and_start(self, directions):
        """:meth:`hvp` of ``directions``, and ``(J, ∇J)`` at θ = 0 (where a fresh fit starts), in one pass.

        The value and gradient are kept for :meth:`value_and_grad`: the
        step size's last product then costs the first epoch no pass of its own.
        """
        start = np.zeros((self.n_features + self.fit_intercept, self.n_outputs))
        coef, offset = self._raw(directions)
        center = self.scaling.center if self.centre_blocks else None
        layout = self.source.block_layout
        products = partial_sums_function(coef, offset, None, False, center, layout)
        coef, offset = self._raw(start)
        gradient = partial_sums_function(coef, offset, self.loss, True, center, layout)
        both = self.source.reduce(lambda chunk: (products(chunk), gradient(chunk)),
                                  lambda a, b: (_add(a[0], b[0]), _add(a[1], b[1])))
        value, grad_coef, grad_sum, _ = both[1]
        scale_by = self.sum_weights * self.n_outputs
        if scale_by > 0:
            self._start = (value / scale_by, self._to_working(grad_coef, grad_sum, scale_by))
        _, grad_coef, grad_sum, _ = both[0]
        return self._to_working(grad_coef, grad_sum, scale_by)

    def curvature(self):
        """``L`` bound: loss curvature/2 × λmax of the squared error's Hessian ``H``, in two passes at most.

        Up to :data:`EXACT_CURVATURE_PARAMS` parameters, ``H`` itself comes
        from one pass (a product with the identity) and ``λmax`` is exact.
        Beyond, a block Krylov sketch: ``Y₁ = HΩ`` and ``Y₂ = HY₁`` for
        :data:`CURVATURE_BLOCK` random directions ``Ω`` (two passes, each
        reading the data once for all directions), then the Nyström estimate
        on ``K = [Ω, Y₁]``: ``λ̂ = λmax(HK (KᵀHK)⁺ (HK)ᵀ) ≤ λmax`` (Tropp et
        al. 2017, "Fixed-rank approximation of a positive-semidefinite matrix
        from streaming data"). Over spectra flat, geometric, ``1/i``,
        ``1/√i`` and linear at d = 40 to 1000 it came within 0.70 of
        ``λmax`` (0.86 but for ``1/√i`` at d = 1000), and ``λ̂ ×``
        :data:`CURVATURE_MARGIN` is returned: gradient descent's ``1/L`` then
        stays below its ``2/λmax`` limit. The last pass also gives the cost
        and gradient at θ = 0, where a fresh fit's first epoch reads them.
        """
        if self._curvature is None:
            # no bound on ℓ'' (a non-smooth loss): the squared error's, the unit its step is scaled from
            factor = (self.loss.curvature or 2.0) / 2.0
            p = self.n_features + self.fit_intercept
            if p <= EXACT_CURVATURE_PARAMS:
                hessian = self._hvp_and_start(np.eye(p))
                top = float(np.linalg.eigvalsh((hessian + hessian.T) / 2)[-1])
            else:
                omega = np.random.default_rng(0).standard_normal((p, CURVATURE_BLOCK))
                first = self.hvp(omega)
                second = self._hvp_and_start(first)
                top = CURVATURE_MARGIN * nystrom_top(np.hstack([omega, first]), np.hstack([first, second]))
            self._curvature = factor * top
        return self._curvature


#: the pass engine centres its blocks when a feature's mean exceeds its spread by this factor
CENTRE_BLOCKS_ABOVE = 1e4
#: parameters up to which ``H`` is formed whole (one pass, ``p`` products at once) and ``λmax`` is exact
EXACT_CURVATURE_PARAMS = 16
#: directions of the block Krylov sketch of :meth:`PassEngine.curvature` (a product with 8 costs
#: about 4.5 times one with 1 in the compiled pass, one read of the data either way)
CURVATURE_BLOCK = 8
#: the sketch's estimate, a lower bound on λmax, is raised by this much
CURVATURE_MARGIN = 1.1


def nystrom_top(basis, image):
    """The largest eigenvalue of the Nyström approximation of a PSD ``H`` from ``image = H @ basis``.

    Parameters
    ----------
    basis : ndarray of shape (p, m)
    image : ndarray of shape (p, m)
        ``H @ basis``.

    The basis is orthonormalized (``basis = QR``, so ``HQ = image R⁻¹``;
    columns that add no direction are dropped), then with ``T = QᵀHQ``
    the estimate is ``λmax(T^{-1/2} (HQ)ᵀ(HQ) T^{-1/2})``, which never
    exceeds ``λmax(H)`` (``H ⪰`` its Nyström approximation).
    """
    q, r = np.linalg.qr(basis)
    diagonal = np.abs(np.diag(r))
    keep = diagonal > 1e-10 * diagonal.max()
    q, r = q[:, keep], r[np.ix_(keep, keep)]
    hq = np.linalg.solve(r.T, image[:, keep].T).T  # H Q = image R⁻¹
    t = q.T @ hq
    values, vectors = np.linalg.eigh((t + t.T) / 2)
    positive = values > 1e-12 * values[-1]
    if not positive.any():
        return 0.0
    whiten = vectors[:, positive] / np.sqrt(values[positive])
    small = whiten.T @ (hq.T @ hq) @ whiten
    return float(np.linalg.eigvalsh((small + small.T) / 2)[-1])
