"""The statistics engine: squared-error cost and gradient from sufficient statistics.

For the squared error, ``J`` and ``∇J`` depend on the data only through the
(weighted) count, the means and the centred scatter matrix of ``z = [x, y]``.
One pass collects them; after that every epoch costs O(d²), and its iterates
are those of a data pass (``../shared/DESIGN.md``).

Accumulation is per block of rows *centred* (a point within a quarter of the
block's spread of its mean removed) and blocks and chunks are merged pairwise
(Chan, Golub & LeVeque's update, in the exact form of :func:`~gradfit.engines.moments.merge`), which
keeps the digits that the naive ``ZᵀZ − n μμᵀ`` throws away: on NIST's Longley
data a solve on the standardized statistics keeps ~12 digits, on the naive
ones ~8.5.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..sources.base import check_finite, single_threaded_blas
from .blocks import MOMENTS_BLOCK_BYTES, MOMENTS_MAX_BYTES, MOMENTS_ROWS_PER_COLUMN, block_rows, scratch
from .moments import Moments, merge


@dataclass
class Statistics:
    """Weighted moments of ``z = [x, y]`` (``d + k`` columns).

    Attributes
    ----------
    n_features, n_outputs : int
    n_samples : int
        Rows read (zero-weight rows included).
    sum_weights : float
        ``W = Σ v_i`` (``n_samples`` without weights).
    mean : ndarray of shape (d + k,)
        Weighted means.
    scatter : ndarray of shape (d + k, d + k) or None
        ``Σ v_i (z_i − μ)(z_i − μ)ᵀ``; ``None`` when only the diagonal was kept.
    scatter_diagonal : ndarray of shape (d + k,)
        Its diagonal (always kept).
    """

    n_features: int
    n_outputs: int
    n_samples: int
    sum_weights: float
    mean: np.ndarray
    scatter: np.ndarray | None
    scatter_diagonal: np.ndarray


def chunk_moments(chunk, full, source):
    """The :class:`Moments` of one chunk: its blocks' sums, merged.

    The chunk is walked in blocks of about :data:`~gradfit.engines.blocks.MOMENTS_BLOCK_BYTES`
    (whatever size the source's chunks are), so the float64 copy each block
    needs stays in cache and is the only copy made. The first block is centred
    on its own mean; every later one on the mean of the block before it, which
    costs no extra read, or on zero where that is as good (features already
    centred), which needs no copy either; a block that turns out not
    :meth:`Moments.well_centred` (a trend, a jump) is redone on its own mean.
    ``source`` is used only to name a bad value in the error message.
    """
    n = chunk.n_rows
    if n == 0:
        return None
    one_hot = _one_hot_spans(source, chunk) if full else None
    width = chunk.X.shape[1] + chunk.y.shape[1]
    rows = moments_rows(n, width)
    moments = shift = None
    # An overflow is found from the sums and named below; NumPy's warning would
    # only add lines to the one-line error (or a traceback under -W error).
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, n, rows):
            stop = start + rows
            weight = None if chunk.sample_weight is None else chunk.sample_weight[start:stop]
            X, y = chunk.X[start:stop], chunk.y[start:stop]
            block = block_moments(X, y, weight, full, shift, one_hot=one_hot)
            if not isinstance(block, int) and shift is not None and not block.well_centred():
                block = block_moments(X, y, weight, full, block.exact_mean(), one_hot=one_hot)
            if isinstance(block, int):
                check_finite(source, chunk)  # names the NaN, inf or negative weight; else the sum overflowed
                _raise_overflow(source, block)
            _check_underflow(block, X, y, weight, source)
            if block.total > 0:
                shift = block.exact_mean()
                d = X.shape[1]
                if np.all(16.0 * block.total * shift[:d] ** 2 <= block.diagonal[:d]):
                    shift[:d] = 0.0  # zero is within a quarter of the spread: see block_moments
            moments = block if moments is None else merge(moments, block)
    return moments


#: a scatter below this has lost digits to squares that underflow (subnormal or zero)
TINY_SCATTER = np.finfo(float).tiny / np.finfo(float).eps


def _check_underflow(block, X, y, weight, source):
    """Refuse a column whose values differ but whose centred squares underflow float64.

    Its scatter would read as zero (a constant column, silently left out of the
    model) or keep only a few digits. Cheap: a column is looked at only when
    its scatter is already that small, which real data never are.
    """
    for column in np.flatnonzero(block.diagonal < TINY_SCATTER):
        d = X.shape[1]
        values = X[:, column] if column < d else y[:, column - d]
        if weight is not None:
            values = values[weight > 0]
        if not values.size:
            continue
        mean = float(np.mean(values, dtype=np.float64))  # the block's own: its sums may be about another point
        spread = float(np.max(np.abs(values - mean)))
        if spread > 1e-12 * abs(mean):  # else constant, to rounding (as gradfit.scaling decides)
            raise DataError(
                f"values in {source.describe()}, column {source.column_name(int(column))!r}, are too "
                f"small: they differ by about {spread:.1e}, whose squares underflow float64; rescale that column"
            )


def moments_rows(n_rows, width):
    """Rows of the blocks the moments pass cuts ``n_rows`` rows of ``width`` values into.

    About :data:`~gradfit.engines.blocks.MOMENTS_BLOCK_BYTES`, at least
    :data:`~gradfit.engines.blocks.MOMENTS_ROWS_PER_COLUMN` rows per column
    (so merging a block costs little next to forming it), at most what fits
    in :data:`~gradfit.engines.blocks.MOMENTS_MAX_BYTES` (so very wide rows do
    not make the per-thread copy large); the blocks are of equal length, so
    that no short last block pays the merge for little work.
    """
    target = block_rows(width + 1, MOMENTS_BLOCK_BYTES, MOMENTS_ROWS_PER_COLUMN * (width + 1))
    limit = max(1, MOMENTS_MAX_BYTES // (8 * (width + 1)))
    blocks = max(1, n_rows // target, -(-n_rows // limit))
    return -(-n_rows // blocks)


def _one_hot_spans(source, chunk):
    """The spans of ``chunk.X``'s columns that are categorical columns' 0/1 dummies, or ``None``.

    ``source.one_hot_spans`` where it has them (a sequence of ``(start, stop)``:
    e.g. the names of a part of the levels' pass), else from its encoder
    (:meth:`~gradfit.sources.encoding.TableEncoder.one_hot_spans`) when ``chunk.X`` holds all its features.
    """
    given = getattr(source, "one_hot_spans", None)
    if given is not None and not callable(given):
        return list(given) or None
    encoder = getattr(source, "encoder", None)
    if chunk.codes is not None or not hasattr(encoder, "one_hot_spans") or chunk.X.shape[1] != encoder.n_features:
        return None
    return encoder.one_hot_spans() or None


def block_moments(X, y, weight, full, shift=None, one_hot=None):
    """The :class:`Moments` of one block of rows, about ``shift`` (default: the block's mean).

    Parameters
    ----------
    X : ndarray of shape (m, d), float32 or float64
    y : ndarray of shape (m, k)
    weight : ndarray of shape (m,) or None
    full : bool
        The whole scatter ``zᵀz`` (BLAS ``syrk``) or only its diagonal.
    shift : ndarray of shape (d + k,), optional
        The point the sums are about; it should be near the block's mean.
    one_hot : sequence of (int, int), optional
        Spans ``[start, stop)`` of ``X``'s columns that are a categorical
        column's 0/1 dummies (at most one 1 a row): with ``full``, their part
        of the scatter comes from counts (:func:`_one_hot_moments`), equal to
        the dense product up to rounding without its ``m × d²`` cost.

    Returns
    -------
    Moments, or int
        The index of a column whose sums are not finite (a NaN, an inf, an
        overflow, or a negative or non-finite weight, reported as column 0),
        for the caller to name.

    The mean, when needed, costs one more read of the block (~10 % of the
    pass at d = 100); its rounding is carried exactly by the residual. With
    float64 features, no weights and a zero shift for them, the block needs
    no copy: see :func:`_product_in_place`.
    """
    m, d = X.shape
    width = d + y.shape[1]
    if full and one_hot:
        return _one_hot_moments(X, y, weight, shift, one_hot)
    if weight is None:
        total = float(m)
    else:
        total = float(np.sum(weight))
        if not np.isfinite(total) or np.any(weight < 0):
            return 0
        if total == 0:
            zeros = np.zeros(width)
            return Moments(m, 0.0, zeros, np.zeros((width, width)) if full else None, zeros.copy(), zeros.copy())
    if shift is None:
        shift = np.empty(width)
        shift[:d], shift[d:] = _column_sums(X, weight), _column_sums(y, weight)
        shift /= total
        if not np.all(np.isfinite(shift)):
            return int(np.argmax(~np.isfinite(shift)))
    if full and weight is None and X.dtype == np.float64 and not np.any(shift[:d]):
        product = _product_in_place(X, y, shift[d:])
    else:
        # The one copy: z = [1, X − shift, y − shift] in float64 (float32 widened
        # here), reused from block to block. The leading column (ones, or √v) makes
        # the same syrk also give Σ v (z − shift), the residual the merges carry.
        z = scratch("moments", m, width + 1)
        values = z[:, 1:]
        np.subtract(X, shift[:d], out=values[:, :d])
        np.subtract(y, shift[d:], out=values[:, d:])
        if weight is None:
            z[:, 0] = 1.0
        else:
            np.sqrt(weight, out=z[:, 0])
            values *= z[:, :1]
        if full:
            product = z.T @ z  # NumPy computes zᵀz with syrk: half the flops of a general product
    if full:
        scatter = product[1:, 1:].copy()  # contiguous, for the in-place updates of merge
        diagonal, residual = np.diagonal(scatter).copy(), product[0, 1:].copy()
    else:
        scatter, diagonal, residual = None, np.einsum("ij,ij->j", values, values), z[:, 0] @ values
    bad = ~(np.isfinite(diagonal) & np.isfinite(residual))
    if bad.any():
        return int(np.argmax(bad))
    return Moments(m, total, shift, scatter, diagonal, residual)


def one_hot_codes(block, describe):
    """Each row's dummy (``-1``: none) in ``block`` (n, m) of 0/1 dummies, at most one 1 a row (``None``: a NaN).

    By one product with ``[1, j]`` (row sums and ``Σ_j j·x_j``, BLAS at memory
    speed in either memory order; ``argmax`` along rows of a column-major
    block is twenty times slower): with ``x ≥ 0``, ``Σ x = 1`` and ``x_c = 1``
    at ``c = Σ j·x_j`` every other entry is 0.
    """
    m = block.shape[1]
    sums, index = (block @ np.column_stack([np.ones(m), np.arange(m, dtype=np.float64)])).T
    if not np.all(np.isfinite(sums)):
        return None  # a missing value (NaN in every dummy of its row): for the caller to name
    codes = np.clip(np.rint(index), 0, max(m - 1, 0)).astype(np.intp)
    some = sums != 0
    if not (np.all(sums[some] == 1) and np.all(block[np.flatnonzero(some), codes[some]] == 1)
            and block.min(initial=0.0) >= 0):
        raise ValueError(f"the columns {describe} are not 0/1 dummies of one categorical column")
    codes[~some] = -1
    return codes


def _one_hot_moments(X, y, weight, shift, spans):
    """:func:`block_moments` (``full``) with the dummies' columns ``spans`` of ``X`` from counts.

    The other columns ``u`` (the numeric features and ``y``) by
    :func:`block_moments` itself; with ``D`` a span's dummies, ``s`` the
    shift, ``W_D = Σ v D`` (by ``bincount``), ``r_u = Σ v (u − s_u)`` (the
    numeric part's residual) and ``C = Σ v D (u − s_u)ᵀ`` (``bincount`` of
    the centred rows by dummy):

        Σ v (D − s_D)(u − s_u)ᵀ = C − s_D r_uᵀ,
        Σ v (D − s_D)(D' − s_D')ᵀ = P − s_D W_D'ᵀ − W_D s_D'ᵀ + W s_D s_D'ᵀ,

    ``P = Σ v D D'ᵀ`` (``diag(W_D)`` within a span, the pairs' counts
    between two), and the residual ``W_D − W s_D``. The dummies are 0/1 and
    ``0 ≤ s_D ≤ 1``: no cancellation beyond the dense product's.
    """
    m, d = X.shape
    k = y.shape[1]
    in_span = np.zeros(d, dtype=bool)
    for start, stop in spans:
        in_span[start:stop] = True
    rest = np.flatnonzero(~in_span)
    others = np.concatenate([rest, np.arange(d, d + k)])  # u's columns among z's
    value = np.ones(m) if weight is None else np.asarray(weight, dtype=np.float64)
    if weight is not None and (not np.isfinite(np.sum(weight)) or np.any(weight < 0)):
        return 0
    total = float(np.sum(value))
    if shift is None and total > 0:
        shift = np.empty(d + k)
        shift[:d], shift[d:] = _column_sums(X, weight), _column_sums(y, weight)
        shift /= total
        if not np.all(np.isfinite(shift)):
            return int(np.argmax(~np.isfinite(shift)))
    numeric = block_moments(X[:, rest], y, weight, True, None if shift is None else shift[others])
    if isinstance(numeric, int):
        return int(others[numeric])
    if total == 0:
        zeros = np.zeros(d + k)
        return Moments(m, 0.0, zeros, np.zeros((d + k, d + k)), zeros.copy(), zeros.copy())
    shift = shift.copy()
    centred = np.empty((m, others.size))
    centred[:, : rest.size], centred[:, rest.size:] = X[:, rest], y
    centred -= shift[others]
    centred *= value[:, None]
    scatter = np.empty((d + k, d + k))
    residual = np.empty(d + k)
    scatter[np.ix_(others, others)] = numeric.scatter
    residual[others] = numeric.residual
    codes, totals = [], []
    for start, stop in spans:
        width = stop - start
        dummy = one_hot_codes(X[:, start:stop], f"{start}..{stop - 1}")
        if dummy is None:  # the column of the first value that is not finite, for the caller to name
            return start + int(np.argmax(~np.all(np.isfinite(X[:, start:stop]), axis=0)))
        rows = np.flatnonzero(dummy >= 0)
        codes.append(dummy)
        column_total = np.bincount(dummy[rows], weights=value[rows], minlength=width)
        totals.append(column_total)
        sums = np.stack([np.bincount(dummy[rows], weights=centred[rows, j], minlength=width)
                         for j in range(others.size)], axis=1).reshape(width, others.size)
        block = sums - np.outer(shift[start:stop], numeric.residual)
        scatter[start:stop, others] = block
        scatter[others, start:stop] = block.T
        residual[start:stop] = column_total - total * shift[start:stop]
    for s, (start, stop) in enumerate(spans):
        for t, (begin, end) in enumerate(spans[s:], start=s):
            if s == t:
                pairs = np.diag(totals[s])
            else:
                rows = np.flatnonzero((codes[s] >= 0) & (codes[t] >= 0))
                pairs = np.zeros((stop - start, end - begin))
                np.add.at(pairs, (codes[s][rows], codes[t][rows]), value[rows])
            first, second = shift[start:stop], shift[begin:end]
            block = pairs - np.outer(first, totals[t]) - np.outer(totals[s], second) + total * np.outer(first, second)
            scatter[start:stop, begin:end] = block
            scatter[begin:end, start:stop] = block.T
    diagonal = np.diagonal(scatter).copy()
    bad = ~(np.isfinite(diagonal) & np.isfinite(residual))
    if bad.any():
        return int(np.argmax(bad))
    return Moments(m, total, shift, scatter, diagonal, residual)


def _product_in_place(X, y, target_shift):
    """``zᵀz`` for ``z = [1, X, y − target_shift]`` without copying X.

    For a block whose features are already centred (zero within a quarter of
    their spread of the mean, so the sums about zero are as good as centred
    ones): ``XᵀX`` by syrk on the block as it lies, the rest from the small
    ``[1, y − shift]``. At d = 32 this takes a quarter off the pass.
    """
    m, d = X.shape
    k = y.shape[1]
    ends = scratch("moments.ends", m, k + 1)  # [1, y − shift]
    ends[:, 0] = 1.0
    np.subtract(y, target_shift, out=ends[:, 1:])
    cross = ends.T @ X  # [Σx; Σ(y − shift)xᵀ]
    product = np.empty((d + k + 1, d + k + 1))
    product[1 : d + 1, 1 : d + 1] = X.T @ X  # syrk on the block in place
    corner = ends.T @ ends
    product[0, 0], product[0, d + 1 :], product[d + 1 :, d + 1 :] = corner[0, 0], corner[0, 1:], corner[1:, 1:]
    product[d + 1 :, 0] = corner[1:, 0]
    product[0, 1 : d + 1], product[1 : d + 1, 0] = cross[0], cross[0]
    product[d + 1 :, 1 : d + 1], product[1 : d + 1, d + 1 :] = cross[1:], cross[1:].T
    return product


def _column_sums(values, weight):
    """``Σ v x`` of every column, by BLAS (``gemv``, at memory speed) in the values' precision.

    Only the reference point of a block's sums comes from it, so float32's
    rounding costs nothing: the residual carries it (a float64 reduction of
    float32 columns would take ten times as long).
    """
    weight = np.ones(len(values), dtype=values.dtype) if weight is None else weight.astype(values.dtype, copy=False)
    return weight @ values


def accumulate(source, full=True):
    """One pass over ``source``: its :class:`Statistics`, validating every chunk.

    Parameters
    ----------
    source : Source
    full : bool, default=True
        Keep the whole scatter matrix (O(N d²) work, for the statistics engine)
        or only its diagonal (O(N d), the moments standardization needs).

    Raises
    ------
    DataError
        On a NaN or infinite value (naming its row and column), a negative
        weight, values whose squares overflow, or no rows at all.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # merges that overflow are named just below
        moments = source.reduce(lambda chunk: chunk_moments(chunk, full, source), merge)
    return finish(moments, source, full)


def finish(moments, source, full=True, what=None):
    """The :class:`Statistics` of merged :class:`Moments`, checked (the end of :func:`accumulate`).

    ``what`` names the rows in messages (default: ``source.describe()``), e.g.
    a cross-validation fold's.
    """
    what = source.describe() if what is None else what
    if moments is None or moments.count == 0:
        raise DataError(f"{what} has no data rows")
    if moments.total == 0:
        raise DataError(f"the sample weights in {what} sum to zero")
    if not np.all(np.isfinite(moments.diagonal)):
        _raise_overflow(source, int(np.argmax(~np.isfinite(moments.diagonal))))
    # From the stored mean to the exact one: μ + r/n, and S − rrᵀ/n (second order).
    correction = moments.residual / moments.total
    mean = moments.mean + correction
    scatter = None
    if full:
        scatter = moments.scatter - np.outer(moments.residual, correction)
        diagonal = np.diagonal(scatter).copy()
    else:
        diagonal = moments.diagonal - moments.residual * correction
    _check_target_squares(source, mean, diagonal, moments.total)
    return Statistics(source.n_features, source.n_outputs, moments.count, moments.total, mean, scatter, diagonal)


def _check_target_squares(source, mean, diagonal, total):
    """The cost at θ = 0 is the mean of y²: a target far from zero can overflow it with a finite spread."""
    d = source.n_features
    with np.errstate(over="ignore"):
        second_moment = mean[d:] * mean[d:] + diagonal[d:] / total
    if not np.all(np.isfinite(second_moment)):
        _raise_overflow(source, d + int(np.argmax(~np.isfinite(second_moment))))


def _raise_overflow(source, column):
    raise DataError(
        f"values in {source.describe()}, column {source.column_name(int(column))!r}, are too "
        "large: their sums or squares overflow float64; rescale that column"
    )


#: matrices up to this size are factored with one BLAS thread (see StatisticsEngine._solve)
SMALL_LAPACK = 512


#: below this condition number the reference point is solved for by Cholesky
CHOLESKY_CONDITION = 1e8


def _solver(hessian, eigenvalues, keep):
    """``rhs → H⁺ rhs`` on the eigendirections ``keep`` marks (all of them: ``H⁻¹ rhs``).

    By Cholesky when every direction is kept and H is well conditioned (0.02 s
    against 0.25 s for the eigenvectors at d = 1000), else through the
    eigenvectors, whose rounding the refinement of ill-conditioned fits
    (:mod:`gradfit.refine`) was tuned on.
    """
    import scipy.linalg  # here: the command line imports this module without SciPy

    if np.all(keep) and eigenvalues[-1] < CHOLESKY_CONDITION * eigenvalues[0]:
        try:
            factor = scipy.linalg.cho_factor(hessian)
            return lambda rhs: scipy.linalg.cho_solve(factor, rhs)
        except np.linalg.LinAlgError:
            pass
    eigenvalues, vectors = scipy.linalg.eigh(hessian)
    basis = vectors[:, keep]
    return lambda rhs: basis @ ((basis.T @ rhs) / eigenvalues[keep][:, None])


class StatisticsEngine:
    """Value, gradient and Hessian products of the squared error from :class:`Statistics`.

    In working units (see :mod:`gradfit.scaling`) with ``m = (μₓ − center) / scale``
    and ``δ = m·w + b − μ_y``, for each output:

        J      = (1/k) Σ_outputs [ wᵀ G w − 2 wᵀ h + q + δ² ]
        ∇_w J  = (2/k) (G w − h + m δ),      ∇_b J = (2/k) δ

    with ``G = D Sₓₓ D / W``, ``h = D Sₓᵧ / W``, ``q = diag(Sᵧᵧ) / W``, ``D = diag(1/scale)``.
    When the features are centred (``center = μₓ``), ``m = 0`` exactly and the
    intercept decouples from the weights.

    Expanded like that, J suffers cancellation near the optimum (its rounding
    error is about ε·q, so a cost below that, or a relative improvement below
    ε·q/J, cannot be seen). So the engine evaluates J exactly as the quadratic
    it is, about a reference point θ̂ (the least-squares solution, from an
    eigendecomposition of the Hessian H, refined once):

        J(θ) = J(θ̂) + ∇J(θ̂)ᵀΔ + ½ ΔᵀHΔ,      ∇J(θ) = ∇J(θ̂) + HΔ,      Δ = θ − θ̂

    Only the constant ``J(θ̂)`` carries the ε·q rounding; differences between
    epochs, and the gap to the optimum, are computed to full precision.
    """

    name = "statistics"

    def __init__(self, stats, scaling, fit_intercept):
        if stats.scatter is None:
            raise ValueError("the statistics engine needs the full scatter matrix")
        d, k = stats.n_features, stats.n_outputs
        inv_scale = 1.0 / scaling.scale
        total = stats.sum_weights
        self.stats = stats
        self.fit_intercept = fit_intercept
        self.n_features, self.n_outputs = d, k
        self.n_samples = stats.n_samples
        self.gram = stats.scatter[:d, :d] * np.outer(inv_scale, inv_scale) / total
        self.cross = stats.scatter[:d, d:] * inv_scale[:, None] / total
        self.target_moment = np.diagonal(stats.scatter)[d:] / total
        self.mean_offset = (stats.mean[:d] - scaling.center) * inv_scale
        self.target_mean = stats.mean[d:]
        self._solve()

    # -- the expansion, used only to set up the reference point ----------------

    def _split(self, params):
        d = self.n_features
        weights = params[:d]
        bias = params[d] if self.fit_intercept else 0.0
        return weights, bias

    def _expanded(self, params):
        """Per-output J (clamped at 0) and ∇J by the direct expansion."""
        weights, bias = self._split(params)
        k = self.n_outputs
        gram_w = self.gram @ weights
        delta = self.mean_offset @ weights + bias - self.target_mean
        per_output = np.einsum("ij,ij->j", weights, gram_w - 2.0 * self.cross) + self.target_moment + delta * delta
        grad = np.empty_like(params)
        grad[: self.n_features] = (2.0 / k) * (gram_w - self.cross + np.outer(self.mean_offset, delta))
        if self.fit_intercept:
            grad[self.n_features] = (2.0 / k) * delta
        return np.maximum(per_output, 0.0), grad

    def _solve(self):
        """Eigenvalues of H (L, the condition number) and the reference point θ̂ (:func:`_solver`)."""
        import scipy.linalg  # here: the command line imports this module without SciPy

        hessian = self.hessian()
        # LAPACK on a small matrix gains nothing from BLAS threads, and on a loaded
        # machine OpenBLAS's spinning threads made a 101 × 101 eigh take 0.3 s.
        small = hessian.shape[0] <= SMALL_LAPACK
        with single_threaded_blas() if small else contextlib.nullcontext():
            eigenvalues = scipy.linalg.eigh(hessian, eigvals_only=True)
            top = max(float(eigenvalues[-1]), 0.0)
            # Directions the data do not determine (rank deficiency) are left alone:
            # gradient descent from zero never moves along them either.
            keep = eigenvalues > top * hessian.shape[0] * np.finfo(float).eps
            pseudo_solve = _solver(hessian, eigenvalues, keep)
        self.eigenvalues = eigenvalues
        self.rank = int(np.sum(keep))
        p, k = hessian.shape[0], self.n_outputs
        reference = np.zeros((p, k))
        for _ in range(2):  # a Newton step from zero, then one step of iterative refinement
            _, grad = self._expanded(reference)
            reference = reference - pseudo_solve(grad)
        per_output, grad = self._expanded(reference)
        self.reference = reference
        self.reference_value = float(np.sum(per_output)) / k
        self.reference_per_output = per_output
        self.reference_grad = grad

    # -- what the loop uses ------------------------------------------------------

    def value_and_grad(self, params, rows=None):
        """``(J, ∇J)`` at ``params`` of shape (n_params, k)."""
        if rows is not None:
            raise ValueError("the statistics engine cannot compute minibatch gradients")
        step = params - self.reference
        curvature = self.hvp(step)
        value = self.reference_value + np.sum(step * (self.reference_grad + 0.5 * curvature))
        return float(max(value, 0.0)), self.reference_grad + curvature

    def value(self, params):
        return self.value_and_grad(params)[0]

    def squared_error_per_output(self, params):
        """Mean squared error of each output at ``params``: shape (k,), no extra pass."""
        step = params - self.reference
        curvature = self.hvp(step)
        k = self.n_outputs
        per_output = self.reference_per_output + k * np.einsum(
            "ij,ij->j", step, self.reference_grad + 0.5 * curvature
        )
        return np.maximum(per_output, 0.0)

    def optimum(self):
        """``(θ*, J*)``: the least-squares solution in working units and its cost."""
        return self.reference, self.reference_value

    def hvp(self, direction):
        """Hessian of J times ``direction`` (n_params, k)."""
        weights, bias = self._split(direction)
        k = self.n_outputs
        t = self.mean_offset @ weights + bias
        out = np.empty_like(direction)
        out[: self.n_features] = (2.0 / k) * (self.gram @ weights + np.outer(self.mean_offset, t))
        if self.fit_intercept:
            out[self.n_features] = (2.0 / k) * t
        return out

    def hessian(self):
        """The per-output Hessian, shape (n_params, n_params) (the same for every output)."""
        d, k = self.n_features, self.n_outputs
        m = self.mean_offset
        p = d + self.fit_intercept
        matrix = np.empty((p, p))
        matrix[:d, :d] = self.gram + np.outer(m, m)
        if self.fit_intercept:
            matrix[:d, d] = m
            matrix[d, :d] = m
            matrix[d, d] = 1.0
        return (2.0 / k) * matrix

    def curvature(self):
        """``L``: the largest eigenvalue of the Hessian."""
        return float(self.eigenvalues[-1])

    def condition_number(self):
        """``λmax / λmin`` of the Hessian in working units (``inf`` if singular)."""
        smallest = float(self.eigenvalues[0])
        return float(self.eigenvalues[-1]) / smallest if smallest > 0 else np.inf
