"""Per-chunk partial sums for the robust solvers, one output column at a time.

Every function here builds a function of one :class:`~gradfit.sources.Chunk`
for :meth:`~gradfit.sources.Source.reduce` (so a file is streamed and a Dask
source sums on its workers) and a matching ``combine``. They work in the
units training runs in: per block of rows, ``Z_b = [(X_b − center)/scale, 1]``
(the ones column only with an intercept), a float64 copy the size of a cache
block (:mod:`gradfit.engines.blocks`), so that the Gram-type sums below lose
no digits to features that sit far from zero.

For a parameter column ``θ`` (``p = d + fit_intercept``) and output ``j``,
``r = Z θ − y_j`` is the residual; ``v`` the sample weights (1 without). All
sums are raw (not divided by ``W = Σ v``); the drivers divide.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from ..engines.blocks import PASS_BLOCK_BYTES, PASS_MIN_ROWS, block_rows, scratch
from ..engines.categorical import chunk_level_moments, merge_levels


def _blocks(chunk, scaling, fit_intercept, layout=None):
    """Yield ``(offset, Z_b, v_b)`` over the chunk: ``Z_b`` (n_b, p) in working units, ``v_b`` or None.

    A chunk carrying a categorical column as level ``codes`` (``layout``, the
    source's ``block_layout``) yields :class:`CodedBlock` s, which serve
    ``Z_b @ θ`` and ``Z_bᵀ @ values`` without a dense one-hot block.
    """
    X = chunk.X
    if chunk.codes is not None:
        coding = CodedColumns(layout, scaling, fit_intercept)
        scaling = coding.dense_scaling
    d = X.shape[1]
    p = d + fit_intercept
    rows = block_rows(p, PASS_BLOCK_BYTES, PASS_MIN_ROWS)
    inverse_scale = 1.0 / scaling.scale
    for start in range(0, chunk.n_rows, rows):
        stop = min(start + rows, chunk.n_rows)
        Z = scratch("robust.block", stop - start, p)
        np.subtract(X[start:stop], scaling.center, out=Z[:, :d])
        Z[:, :d] *= inverse_scale
        if fit_intercept:
            Z[:, d] = 1.0
        weight = None if chunk.sample_weight is None else chunk.sample_weight[start:stop]
        yield start, (Z if chunk.codes is None else CodedBlock(coding, Z, chunk.codes[start:stop])), weight


class CodedColumns:
    """Where the working-unit columns of ``z`` come from when a categorical column is kept as level codes.

    ``z = [(x − c)/s …, (1[code = l] − c_l)/s_l for the levels but the reference …, 1]``
    in the model's order (``dense_index``, ``level_index``; the intercept last);
    ``c_l`` is the dummy's centre (its level share with an intercept, else 0).
    """

    def __init__(self, layout, scaling, fit_intercept):
        from ..engines.passes import LevelCodes
        from ..scaling import Scaling

        levels = LevelCodes(layout)  # the pass engine's reading of the layout
        self.dense_index, self.level_index = levels.dense_index, levels.level_index
        self.n_levels, self.others = levels.n_levels, levels.others
        d = self.dense_index.size + self.level_index.size
        self.n_params = d + fit_intercept
        # the block's dense columns: the other features, then the intercept's ones
        self.block_columns = np.concatenate([self.dense_index, [d] if fit_intercept else []]).astype(np.intp)
        self.dense_scaling = Scaling(scaling.center[self.dense_index], scaling.scale[self.dense_index])
        self.level_center = scaling.center[self.level_index]
        self.level_scale = scaling.scale[self.level_index]
        self.fit_intercept = fit_intercept
        # each level's column in the sparse rows (the reference's: none, -1)
        self._level_column = np.full(self.n_levels, -1, dtype=np.intp)
        self._level_column[self.others] = self.level_index

    def rows(self, dense, codes):
        """The rows ``u = [z_dense, e_code, 1]`` of shape (n, p) as a CSR matrix: at most ``n_dense + 2`` entries a row.

        ``dense`` (n, n_dense + fit_intercept) holds a :class:`CodedBlock`'s dense
        columns (:attr:`block_columns`' order). In the coordinates ``φ = Mθ``
        (:meth:`to_theta`) the rows of ``Z`` are ``z = Mᵀu``: the dummies
        neither centred nor scaled, one entry a row, so that a linear program
        over many rows stays sparse (``Z``'s centred dummies fill every row).
        """
        n, width = dense.shape
        level_column = self._level_column[codes]
        has_level = level_column >= 0
        row_nnz = width + has_level
        indptr = np.concatenate([[0], np.cumsum(row_nnz)])
        indices = np.empty(indptr[-1], dtype=np.intp)
        data = np.empty(indptr[-1])
        first = indptr[:-1]
        positions = first[:, None] + np.arange(width)
        indices[positions] = self.block_columns
        data[positions] = dense
        indices[first[has_level] + width] = level_column[has_level]
        data[first[has_level] + width] = 1.0
        matrix = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, self.n_params))
        matrix.sort_indices()
        return matrix

    def to_phi_dual(self, vector):
        """``M⁻ᵀ g`` for ``g`` of shape (p,): a sum ``g = Σ a_i z_i`` as the same sum of the rows ``u`` (:meth:`rows`).

        ``z = Mᵀu`` gives ``g_l = ((Σ a u)_l − c_l (Σ a u)_b)/s_l`` on a level
        (``c_l``, ``s_l`` the dummy's centre and scale) and the rest unchanged,
        so ``(Σ a u)_l = s_l g_l + c_l g_b``. Also a gradient's map, ``∇_φ = M⁻ᵀ∇_θ``.
        """
        out = np.array(vector, dtype=float)
        if self.fit_intercept:
            out[self.level_index] = self.level_scale * out[self.level_index] + self.level_center * out[-1]
        else:
            out[self.level_index] *= self.level_scale
        return out

    def to_theta(self, phi):
        """``θ = M⁻¹φ`` for ``φ`` of shape (p,): ``θ_l = s_l φ_l``, ``θ_b = φ_b + Σ_l c_l φ_l``, the rest ``φ``.

        ``φ`` are the coefficients of the rows ``u`` (:meth:`rows`): ``φ_l``
        a level's raw coefficient, ``φ_b`` the reference level's intercept.
        """
        theta = np.array(phi, dtype=float)
        theta[self.level_index] = self.level_scale * phi[self.level_index]
        if self.fit_intercept:
            theta[-1] = phi[-1] + self.level_center @ phi[self.level_index]
        return theta


class CodedBlock:
    """``Z_b`` of a chunk's rows with a column kept as level codes: ``Z_b @ θ`` and ``Z_bᵀ @ values``.

    ``Z_b θ = D_b θ_dense + a[code] − Σ_l c_l a_l`` with ``a_l = θ_l / s_l``
    (``a_ref = 0``), ``D_b`` the dense columns; ``(Z_bᵀ u)_l = (Σ_{code = l} u −
    c_l Σ u) / s_l``: a gather and a ``bincount``, never a one-hot block.
    """

    def __init__(self, coding, dense, codes):
        self.coding, self.dense, self.codes = coding, dense, codes
        self.shape = (dense.shape[0], coding.n_params)

    def __matmul__(self, vector):
        """``Z_b @ θ`` for ``θ`` of shape (p,) or (p, m) (many parameter columns: every fold's at once)."""
        coding = self.coding
        vector = np.asarray(vector)
        scale = coding.level_scale.reshape((-1,) + (1,) * (vector.ndim - 1))
        levels = np.zeros((coding.n_levels,) + vector.shape[1:])
        levels[coding.others] = vector[coding.level_index] / scale
        return self.dense @ vector[coding.block_columns] + levels[self.codes] - coding.level_center @ levels[
            coding.others]

    @property
    def T(self):  # noqa: N802 - as NumPy's arrays: Z.T @ values
        return _Transposed(self)


class _Transposed:
    def __init__(self, block):
        self.block = block

    def __matmul__(self, values):
        """``Z_bᵀ @ values`` for ``values`` of shape (n,) or (n, m): one ``bincount`` per column."""
        block, coding = self.block, self.block.coding
        values = np.asarray(values)
        if values.ndim == 2:
            out = np.empty((coding.n_params, values.shape[1]))
            for j in range(values.shape[1]):
                out[:, j] = self @ values[:, j]
            return out
        out = np.empty(coding.n_params)
        out[coding.block_columns] = block.dense.T @ values
        sums = np.bincount(block.codes, weights=values, minlength=coding.n_levels)[coding.others]
        out[coding.level_index] = (sums - coding.level_center * np.sum(values)) / coding.level_scale
        return out


#: inlier rows gathered (from a chunk's blocks) before their level moments are taken: each
#: ``LevelMoments`` and its merge cost ``O(L·p)`` whatever its rows, so not one per cache block
LEVEL_MOMENT_ROWS = 32768


def _weighted(values, weight):
    return values if weight is None else values * weight


def add_sums(a, b):
    """Combine two dicts of partial sums: ``max_*`` keys by maximum, ``min_*`` by minimum, ``levels``
    (:class:`~gradfit.engines.categorical.LevelMoments`) by :func:`~gradfit.engines.categorical.merge_levels`,
    the rest added."""
    for key, value in b.items():
        if key == "levels":
            a[key] = merge_levels(a[key], value)
        elif key.startswith("max_"):
            a[key] = max(a[key], value)
        elif key.startswith("min_"):
            a[key] = min(a[key], value)
        else:
            a[key] = a[key] + value
    return a


def huber_sums(theta, column, epsilon, scaling, fit_intercept, hessian=True, reference=None, layout=None):
    """Per chunk: the Huber data term, its gradient, and its Hessian over the inliers.

    With ``h(r) = r²`` for ``|r| ≤ ε`` and ``2ε|r| − ε²`` beyond (gradfit's
    Huber, :class:`gradfit.losses.Huber`) and ``s = h'(r) = 2·clip(r, −ε, ε)``:

    ``value = Σ v h(r)``, ``gradient = Zᵀ(v s)``, ``hessian = 2 Σ_{|r|≤ε} v z zᵀ``
    (the generalized Hessian: ``h''`` is 2 inside the threshold and 0 beyond),
    ``inliers`` (their count), and for the dual certificate
    (:mod:`gradfit.robust.huber`) ``s_target = Σ v s y``, ``s_square = Σ v s²``,
    ``max_s``/``min_s`` (over rows of positive weight), ``weight = Σ v``.

    ``layout``: the source's ``block_layout`` (a column kept as level codes).
    The inlier Hessian is then not formed: ``levels`` holds the inlier rows'
    :class:`~gradfit.engines.categorical.LevelMoments` of the dense columns of
    ``z`` (weights ``v``; ``None`` without inliers), from which
    :class:`~gradfit.robust.level_newton.LevelHessian` solves by the level
    blocks; ``reference`` is then ignored (the moments are collected whole).

    ``reference`` (a parameter column, or None): ``hessian`` is then the
    *change* of the inlier Hessian from ``reference`` to ``theta``,
    ``2 Σ_{entered} v z zᵀ − 2 Σ_{left} v z zᵀ``, which costs one more
    ``Z θ`` product and the rows whose status changed, instead of ``d²``
    a row for every inlier (near the optimum few rows change).
    """
    p = theta.shape[0]

    def gram(Z, rows, weight):
        if not rows.any():
            return 0.0
        block = Z[rows]
        if weight is not None:
            block *= np.sqrt(weight[rows])[:, None]
        return 2.0 * (block.T @ block)  # numpy runs AᵀA as one syrk

    def partial(chunk):
        if chunk.n_rows == 0:
            return None
        y = chunk.y[:, column]
        out = {"value": 0.0, "gradient": np.zeros(p), "inliers": 0, "s_target": 0.0, "s_square": 0.0,
               "max_s": -np.inf, "min_s": np.inf, "weight": 0.0}
        inliers = []  # on level codes: each block's inlier rows, collected into one LevelMoments a chunk
        if hessian and chunk.codes is not None:
            out["levels"] = None
        elif hessian:
            out["hessian"] = np.zeros((p, p))
        for start, Z, weight in _blocks(chunk, scaling, fit_intercept, layout):
            y_b = y[start:start + Z.shape[0]]
            r = Z @ theta
            r -= y_b
            inside = np.abs(r) <= epsilon
            s = 2.0 * np.clip(r, -epsilon, epsilon)
            value = np.where(inside, r * r, 2.0 * epsilon * np.abs(r) - epsilon * epsilon)
            vs = _weighted(s, weight)
            out["value"] += float(np.sum(_weighted(value, weight)))
            out["gradient"] += Z.T @ vs
            out["s_target"] += float(vs @ y_b)
            out["s_square"] += float(vs @ s)
            out["weight"] += float(Z.shape[0] if weight is None else np.sum(weight))
            live = s if weight is None else s[weight > 0]
            if live.size:
                out["max_s"] = max(out["max_s"], float(live.max()))
                out["min_s"] = min(out["min_s"], float(live.min()))
            out["inliers"] += int(np.count_nonzero(inside))
            if not hessian:
                continue
            if chunk.codes is not None:
                inliers.append(_inlier_rows(Z, inside, weight))
                if sum(part[0].size for part in inliers) >= LEVEL_MOMENT_ROWS:  # bounded memory
                    out["levels"] = merge_levels(out["levels"], _inlier_levels(inliers, layout["n_levels"]))
                    inliers = []
            elif reference is None:
                out["hessian"] += gram(Z, inside, weight)
            else:
                before = np.abs(Z @ reference - y_b) <= epsilon
                out["hessian"] += gram(Z, inside & ~before, weight) - gram(Z, before & ~inside, weight)
        if inliers:
            out["levels"] = merge_levels(out["levels"], _inlier_levels(inliers, layout["n_levels"]))
        return out

    return partial


def _inlier_rows(block, inside, weight):
    """A :class:`CodedBlock`'s inlier rows: ``(codes, dense columns of z, weights or None)``."""
    dense = block.dense[inside, : block.coding.dense_index.size]  # a copy: the block is scratch
    return block.codes[inside], dense, None if weight is None else weight[inside]


def _inlier_levels(parts, n_levels):
    """The :class:`~gradfit.engines.categorical.LevelMoments` of a chunk's inlier rows (or None): the other
    features in working units, no targets, weights ``v``; one ``bincount`` per column for the whole chunk."""
    codes = np.concatenate([part[0] for part in parts])
    if not codes.size:
        return None
    dense = np.concatenate([part[1] for part in parts])
    weight = None if parts[0][2] is None else np.concatenate([part[2] for part in parts])
    return chunk_level_moments(codes, dense, np.empty((codes.size, 0)), weight, n_levels)


def huber_line_sums(theta, direction, steps, column, epsilon, scaling, fit_intercept, layout=None):
    """Per chunk: ``Σ v h(r + t·s)`` for every step ``t`` in ``steps`` (T,), ``s = Z·direction``.

    The line search's one pass for many trial steps at once: one more
    product ``Z·direction`` and ``T`` elementwise evaluations a row.
    """

    def partial(chunk):
        if chunk.n_rows == 0:
            return None
        y = chunk.y[:, column]
        out = {"values": np.zeros(steps.shape[0])}
        for start, Z, weight in _blocks(chunk, scaling, fit_intercept, layout):
            r = Z @ theta
            r -= y[start:start + Z.shape[0]]
            trial = r[:, None] + np.outer(Z @ direction, steps)
            a = np.abs(trial)
            value = np.where(a <= epsilon, trial * trial, 2.0 * epsilon * a - epsilon * epsilon)
            out["values"] += value.sum(axis=0) if weight is None else weight @ value
        return out

    return partial


def huber_dual_sums(theta, column, epsilon, correction, shift, scaling, fit_intercept, layout=None):
    """Per chunk, at ``s̃ = 2·clip(r, −ε, ε) − Z·correction − shift``: the dual certificate's sums.

    ``Σ v s̃ y``, ``Σ v s̃²``, ``Σ v s̃ z`` and ``max |s̃|`` (rows of positive weight).

    ``correction`` (p,) and ``shift`` (a number) move ``s`` onto the dual's
    linear constraints (see :func:`gradfit.robust.huber.certificate`).
    """
    p = theta.shape[0]

    def partial(chunk):
        if chunk.n_rows == 0:
            return None
        y = chunk.y[:, column]
        out = {"s_target": 0.0, "s_square": 0.0, "s_features": np.zeros(p), "max_abs": 0.0}
        for start, Z, weight in _blocks(chunk, scaling, fit_intercept, layout):
            r = Z @ theta
            r -= y[start:start + Z.shape[0]]
            s = 2.0 * np.clip(r, -epsilon, epsilon) - Z @ correction - shift
            vs = _weighted(s, weight)
            out["s_target"] += float(vs @ y[start:start + Z.shape[0]])
            out["s_square"] += float(vs @ s)
            out["s_features"] += Z.T @ vs
            live = s if weight is None else s[weight > 0]
            if live.size:
                out["max_abs"] = max(out["max_abs"], float(np.max(np.abs(live))))
        return out

    return partial


def absolute_sums(theta, column, keep, scaling, fit_intercept, tilt=0.0, layout=None):
    """Per chunk: ``Σ v(|r| + c·r)``, ``Zᵀ(v·(sign r + c))``, and the ``keep`` rows of smallest ``|r|``.

    ``c = tilt``: 0 for the absolute error, ``1 − 2τ`` for the pinball loss of
    quantile ``τ`` (:class:`gradfit.losses.Quantile`), whose value and
    subgradient these are.

    The kept rows (``index`` in the source, ``z``, ``y``, ``v``, ``r``) are
    the candidates for the optimal basis of the linear program
    (:mod:`gradfit.robust.absolute`); :func:`merge_nearest` keeps the ``keep``
    smallest over all chunks. Rows of zero weight are never kept (they carry
    nothing; their dual value is free).

    ``layout``: the source's ``block_layout`` (a column kept as level codes).
    A kept row's ``z`` is then its dense columns (:class:`CodedBlock`'s) and
    ``codes`` its level: :func:`near_rows` reads them as rows of ``Z``.
    """
    p = theta.shape[0]

    def partial(chunk):
        if chunk.n_rows == 0:
            return None
        y = chunk.y[:, column]
        out = {"value": 0.0, "sign_features": np.zeros(p), "weight": 0.0, "near": None}
        for start, Z, weight in _blocks(chunk, scaling, fit_intercept, layout):
            n = Z.shape[0]
            y_b = y[start:start + n]
            r = Z @ theta
            r -= y_b
            sign = np.sign(r) + tilt
            out["value"] += float(np.sum(_weighted(np.abs(r) + tilt * r, weight)))
            out["sign_features"] += Z.T @ _weighted(sign, weight)
            out["weight"] += float(n if weight is None else np.sum(weight))
            v = np.ones(n) if weight is None else np.asarray(weight, dtype=float)
            candidates = np.flatnonzero(v > 0)
            if candidates.size > keep:
                candidates = candidates[np.argpartition(np.abs(r[candidates]), keep - 1)[:keep]]
            near = {
                "index": chunk.start + start + candidates, "y": y_b[candidates].copy(), "v": v[candidates],
                "r": r[candidates],
            }
            if chunk.codes is None:
                near["z"] = Z[candidates].copy()
            else:  # fancy indexing copies: the block is scratch
                near["z"], near["codes"] = Z.dense[candidates], Z.codes[candidates]
            out["near"] = near if out["near"] is None else _nearest(out["near"], near, keep)
        return out

    return partial


def near_rows(near, coding=None):
    """The kept rows of :func:`absolute_sums` as rows of ``Z``: an array (m, p), or a :class:`CodedBlock`
    (``coding``: the :class:`CodedColumns` of a column kept as level codes); both serve ``@`` and ``.T @``."""
    return near["z"] if coding is None else CodedBlock(coding, near["z"], near["codes"])


def _nearest(a, b, keep):
    merged = {key: np.concatenate([a[key], b[key]]) for key in a}
    if merged["r"].size > keep:
        chosen = np.argpartition(np.abs(merged["r"]), keep - 1)[:keep]
        merged = {key: value[chosen] for key, value in merged.items()}
    return merged


def merge_nearest(keep):
    """The ``combine`` for :func:`absolute_sums`: add the sums, keep the ``keep`` nearest rows."""

    def combine(a, b):
        near_a, near_b = a.pop("near"), b.pop("near")
        a = add_sums(a, b)
        if near_a is None or near_b is None:
            a["near"] = near_a if near_b is None else near_b
        else:
            a["near"] = _nearest(near_a, near_b, keep)
        return a

    return combine


def absolute_dual_sums(theta, column, basis_index, basis_dual, correction, scaling, fit_intercept, tilt=0.0,
                       layout=None):
    """Per chunk, at ``ũ = u − Z·correction``: ``Σ v ũ y``, ``Σ v ũ z``, ``max ũ`` and ``min ũ``.

    ``max ũ`` and ``min ũ`` over rows of positive weight (the others' dual
    values are free), and never beyond 0 (``max_u ≥ 0 ≥ min_u``: what the
    scaling into the dual box needs).

    ``u_i = sign(r_i) + tilt``, except on the rows ``basis_index`` (sorted source
    indices) where ``u`` is ``basis_dual``: the dual point of the linear
    program (:func:`gradfit.robust.absolute.certificate`). ``layout``: the
    source's ``block_layout`` (a column kept as level codes).
    """
    p = theta.shape[0]

    def partial(chunk):
        if chunk.n_rows == 0:
            return None
        y = chunk.y[:, column]
        out = {"u_target": 0.0, "u_features": np.zeros(p), "max_u": 0.0, "min_u": 0.0}
        for start, Z, weight in _blocks(chunk, scaling, fit_intercept, layout):
            n = Z.shape[0]
            first = chunk.start + start
            r = Z @ theta
            r -= y[start:start + n]
            u = np.sign(r) + tilt
            lo, hi = np.searchsorted(basis_index, [first, first + n])
            if hi > lo:
                u[basis_index[lo:hi] - first] = basis_dual[lo:hi]
            u -= Z @ correction
            vu = _weighted(u, weight)
            out["u_target"] += float(vu @ y[start:start + n])
            out["u_features"] += Z.T @ vu
            live = u if weight is None else u[weight > 0]
            if live.size:
                out["max_u"] = max(out["max_u"], float(np.max(live)))
                out["min_u"] = min(out["min_u"], float(np.min(live)))
        return out

    return partial
