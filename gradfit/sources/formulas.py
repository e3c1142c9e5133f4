"""Rows of a table through a formula (:mod:`gradfit.formula`): a DataFrame, or a file streamed.

The design's levels are learned in the statistics pass
(:mod:`gradfit.engines.formula_levels`, from :meth:`FormulaSource.level_parts`),
with the missing values counted (``missing="drop"``): the table is read once
for the statistics engine. Until then they are :attr:`~FormulaSource.levels_pending`;
asking for the features before that learns them by a pass of their own
(:meth:`FormulaSource.settle`). Every later pass encodes each chunk with them.
A Dask dataframe goes through :func:`dask_formula_source` (levels and
statistics merged from the partitions in one compute, encoded on the workers).

A factor of many levels that the design keeps as level codes
(:meth:`~gradfit.formula.FormulaDesign.choose_block`) is offered as the
source's ``block_candidate``: after ``use_blocks(True)`` the chunks carry its
``codes`` and the rest of the formula's features, never its dummies (made
from the codes, within ``MAX_LEVELS``, for fits that ask for them). Its
levels are learned in the statistics pass too: the parts carry the main
effects' level codes (:func:`encode_part`), and the pass forms the factor's
blocks from statistics keyed by them (:mod:`gradfit.engines.formula_levels`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..formula import FormulaDesign, frame_missing
from .base import Chunk, Source, fold_in_threads, pending_property, worker_threads


@dataclass
class FormulaPart:
    """Rows of the table encoded against their own levels, for the pass that learns them.

    Attributes
    ----------
    X : ndarray of shape (n, p) or None
        :meth:`~gradfit.formula.FormulaDesign.learn_encoding`'s columns
        ``names`` (``None``: no row of the batch kept).
    y : ndarray of shape (n, k)
    sample_weight : ndarray of shape (n,) or None
    start : int
        The part's first row among the rows kept.
    positions : ndarray of shape (n,)
        The rows' numbers in the table, for messages.
    names : list of str
    found : dict
        ``{factor: levels of the part}``.
    counts : dict
        Missing values by column (the first part of a batch holds its batch's).
    rows : int
        Rows of the table read (the first part of a batch: its batch's).
    probe : pandas.DataFrame or None
        The part's first row.
    effects : list of str or None
        The categorical main effects kept as level codes in the pass
        (:meth:`~gradfit.formula.FormulaDesign.effect_codes`; ``None``: none).
    codes, levels : list
        Per factor of ``effects``: each row's place in ``levels``, the part's own levels.
    rest : ndarray of int or None
        The columns of ``X`` that are not ``effects``' dummies (``None``: all).
    dense : bool
        ``X`` holds every term, ``effects``' dummies included (as
        :meth:`~gradfit.formula.FormulaDesign.learn_encoding` with no
        ``coded``): ``False`` once a factor of ``effects`` has more than
        :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels.
    """

    X: np.ndarray | None
    y: np.ndarray | None
    sample_weight: np.ndarray | None
    start: int
    positions: np.ndarray | None
    names: list
    found: dict
    counts: dict
    rows: int
    probe: object = None
    effects: list | None = None
    codes: list | None = None
    levels: list | None = None
    rest: np.ndarray | None = None
    dense: bool = True


def encode_part(design, frame, known=None, effects=None, crossed=False):
    """Rows of the table encoded against their own levels, for the pass that learns them (a :class:`FormulaPart`'s).

    The categorical main effects (:meth:`~gradfit.formula.FormulaDesign.effect_codes`)
    come as level codes too; while none has had more than
    :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels (``crossed``, or
    in ``frame``) every term is encoded
    (:meth:`~gradfit.formula.FormulaDesign.learn_encoding`), and ``rest``
    says which columns are not theirs; after, only the rest of the formula
    (``dense`` False). ``effects``: those of the parts before, which every
    part must have alike.

    Returns
    -------
    ``(X, y, names, found, effects, codes, levels, rest, dense)``.
    """
    from ..formula import NotStreamable
    from .encoding import BLOCK_LEVELS

    coded = design.effect_codes(frame) if design._main_effects() else {}
    if effects is not None and list(coded) != effects:  # a column taken as categories in one part only
        raise NotStreamable(next(iter(set(coded) ^ set(effects))))
    effects = list(coded)
    crossed = crossed or any(len(levels) > BLOCK_LEVELS for _, levels in coded.values())
    rest = None
    if crossed:  # the effects' terms left out: their levels come as codes alone
        X, y, names, _, found = design.learn_encoding(frame, known, coded=effects)
    else:
        X, y, names, _, found, terms = design.learn_encoding(frame, known, terms=True)
        if effects:
            rest = np.flatnonzero([term not in coded for term in terms])
    return (X, y, names, found, effects, [coded[factor][0] for factor in effects],
            [coded[factor][1] for factor in effects], rest, not crossed)


class FormulaSource(Source):
    """A table (path or pandas DataFrame) through a formula.

    Parameters
    ----------
    data : str, path-like or pandas.DataFrame
    formula : str, optional
        Needed unless ``design`` (a fitted model's) is given.
    sample_weight : str or array-like, optional
        A column name (files, frames) or, for a frame, the weights.
    missing : {"error", "drop", "keep"}
        ``"keep"`` (predictions): a row with a missing value gets NaN features.
    design : FormulaDesign, optional
        Levels learned before; else learned from ``data`` now.
    targets : bool
        Read the formula's left-hand side (training, evaluation) or not (predictions).
    """

    def __init__(self, data, formula=None, *, sample_weight=None, missing="error", design=None,
                 handle_unknown="error", targets=True, batch_rows=65536):
        learning = design is None
        self.design = design or FormulaDesign(formula, handle_unknown=handle_unknown)
        self.design.handle_unknown = handle_unknown
        self.missing = missing
        self.targets = targets
        self.notes = []
        self.missing_counts, self.rows_dropped = None, 0
        variables = self.design.feature_variables + (
            [v for v in self.design.target_variables if v not in self.design.feature_variables] if targets else [])
        self._weight_values = None
        weight_column = sample_weight if isinstance(sample_weight, str) else None
        if isinstance(data, (str, os.PathLike)):
            from .encoding import ColumnCoding, TableEncoder
            from .files import FileSource

            features = [v for v in variables if v not in self.design.target_variables or not targets]
            self.file = FileSource(
                data, target=self.design.target_variables if targets else [], features=features,
                sample_weight=weight_column, encoder=TableEncoder([ColumnCoding(v) for v in features]),
                batch_rows=batch_rows, as_stored=True,
            )
            self.frame = None
            self.label = self.file.describe()
        else:
            self.file, self.frame, self.label = None, data, "the input"
            missing_columns = [v for v in variables + ([weight_column] if weight_column else [])
                               if v not in data.columns]
            if missing_columns:
                raise DataError(f"the input has no column {missing_columns[0]!r} (the formula names it)")
            if sample_weight is not None and weight_column is None:
                self._weight_values = np.asarray(sample_weight, dtype=np.float64)
        self.weight_name = weight_column or ("sample_weight" if self._weight_values is not None else None)
        self.has_weights = self.weight_name is not None
        self._columns = variables + ([weight_column] if weight_column else [])
        if learning:
            # learned in the statistics pass (gradfit.engines.formula_levels): the table is read once;
            # asking for the features before that scans it (settle)
            self._pending_targets()
            return
        self._scan(False)

    #: the model spec (and missing counts) are still to be learned: in the statistics pass, or by :meth:`settle`
    levels_pending = False

    feature_names = pending_property("feature_names")
    n_features = pending_property("n_features")
    missing_counts = pending_property("missing_counts")
    rows_dropped = pending_property("rows_dropped")
    block_candidate = pending_property("block_candidate")

    def _pending_targets(self):
        """What is known before a row is read: the targets' names (the left-hand side on no rows)."""
        empty = self.frame.iloc[:0] if self.file is None else \
            self.file.schema.empty_table().select(list(dict.fromkeys(self._columns))).to_pandas()
        try:
            self.target_names = self.design.target_names(empty) if self.targets else []
        except DataError:  # the left-hand side needs rows: learn the spec now, by a pass of its own
            self._scan(True)
            return
        self.n_outputs = len(self.target_names)
        self.dtype = np.dtype(np.float64)
        self.n_samples = None  # known after the pass (rows kept)
        self.levels_pending = True

    def settle(self):
        """Learn the model spec (and count the missing values) now, by a pass of its own, if still pending."""
        if self.__dict__.get("levels_pending"):
            self.levels_pending = False
            self._scan(True)

    # -- reading --------------------------------------------------------------------

    def _frames(self):
        """``(DataFrame, first row)`` of the needed columns, index = row numbers (0-based)."""
        if self.file is None:
            frame = self.frame[[c for c in dict.fromkeys(self._columns)]].copy()
            frame.index = np.arange(len(frame))
            if self._weight_values is not None:
                frame["__weight__"] = self._weight_values
            yield frame, 0
            return
        for batch, start in self.file._raw_batches(list(dict.fromkeys(self._columns)), as_stored=True):
            frame = batch.to_pandas()
            frame.index = np.arange(start, start + len(frame))
            yield frame, start

    def _where(self, row, column):
        if self.file is None:
            return f"the input, row {row} (0-based), column {column!r}"
        return f"{self.label}, {self.file.row_position(row)}, column {column!r}"

    def _clean(self, frame):
        used = list(dict.fromkeys(self._columns))
        if self.missing == "keep":
            return frame, {}, 0
        return frame_missing(frame, used, self.missing, self._where)

    def _scan(self, learning):
        rows = kept = 0
        counts = {}
        probe = None
        for frame, _ in self._frames():
            rows += len(frame)
            frame, found, _ = self._clean(frame)
            for column, n in found.items():
                counts[column] = counts.get(column, 0) + n
            kept += len(frame)
            if len(frame) == 0:
                continue
            if probe is None:
                probe = frame.iloc[:1]
            if learning:
                self.design.learn(frame)
        if learning and probe is not None:
            self.design.finish()
        self._known(probe, counts, rows, kept)

    def learned_in_pass(self, found, counts, rows, kept, probe):
        """The statistics pass learned the spec: ``found`` levels by factor, missing ``counts`` by column,
        ``rows`` read, ``kept`` of them, ``probe`` the first row kept (``None``: none)."""
        self.levels_pending = False
        if probe is not None:
            self.design._found = {factor: set(levels) for factor, levels in found.items()}
            self.design.finish()
        self._known(probe, counts, rows, kept)

    def _known(self, probe, counts, rows, kept):
        """The features' names from the learned spec (read from one row), the rows kept and the missing counts."""
        if probe is None:
            raise DataError(f"{self.label} has no data rows" + (" left after dropping missing values"
                                                                 if rows else ""))
        if self.design.block is not None:  # a factor of many levels: offered as level codes (use_blocks)
            self.block_candidate = self.design.block_layout(probe)
        X, y, self.feature_names, target_names = self.design.transform(probe, targets=self.targets,
                                                                       where=self._probe_where(probe))
        self.target_names = target_names if self.targets else []
        self.n_features, self.n_outputs = len(self.feature_names), len(self.target_names)
        self.dtype = np.dtype(np.float64)
        self.n_samples = kept
        if self.missing == "drop":
            self.missing_counts = {c: n for c, n in counts.items() if n}
            self.rows_dropped = rows - kept
            if self.rows_dropped:
                shown = ", ".join(f"{name!r}: {n}" for name, n in self.missing_counts.items())
                self.notes.append(f"missing values: {self.rows_dropped} of {rows} rows left out ({shown})")

    def level_parts(self):
        """The table's rows as :class:`FormulaPart`\\ s, each encoded against its own levels, in order.

        Rows with a missing value are dropped (and counted) or named as
        :meth:`chunks` does. A part holds about :attr:`chunk_bytes` of its
        encoded columns (its width is known once encoded: the first part is
        of 4096 rows, and the last part's width sizes the next).

        The categorical main effects (:meth:`~gradfit.formula.FormulaDesign.effect_codes`,
        the candidates to be kept as level codes) come as each row's level
        too, so that the pass keeps statistics keyed by them
        (:mod:`gradfit.engines.formula_levels`). Once one of them has more
        than :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels (in a part,
        or in the parts so far), the parts no longer encode their terms
        (``dense`` False): never a dense one-hot of them. Any other factor
        of as many levels raises :class:`~gradfit.sources.level_parts.TooManyLevels`.
        """
        from .encoding import BLOCK_LEVELS
        from .level_parts import TooManyLevels

        known = {}  # {factor: {level: None}} of the parts so far, first seen first: each part is tried on them
        width = None  # the encoded width: known once a part is encoded (dummies may make it wide)
        effects = None  # the categorical main effects, as the first part has them
        crossed = False  # one of them has had too many levels for a dense one-hot
        position = 0
        for frame, _ in self._frames():
            rows = len(frame)
            frame, counts, _ = self._clean(frame)
            if len(frame) == 0:
                yield FormulaPart(None, None, None, position, None, [], {}, counts, rows)
                continue
            offset = 0
            while offset < len(frame):
                step = 4096 if width is None else int(max(4096, min(1 << 20, self.chunk_bytes // (8 * width))))
                part = frame.iloc[offset:offset + step]
                X, y, names, found, effects, codes, levels, rest, dense = encode_part(self.design, part, known,
                                                                                      effects, crossed)
                crossed = not dense
                for factor, seen in found.items():
                    union = known.setdefault(factor, {})
                    union.update(dict.fromkeys(seen))
                    if len(union) > BLOCK_LEVELS:
                        if factor not in effects:
                            raise TooManyLevels(factor)
                        crossed = True  # the parts from the next on code it
                if not self.targets:
                    y = np.empty((len(part), 0))
                weight = None
                if self.has_weights:
                    weight = part[self.weight_name if self._weight_values is None else "__weight__"].to_numpy(
                        dtype=np.float64)
                yield FormulaPart(X, y, weight, position, part.index.to_numpy(), names, found,
                                  counts if offset == 0 else {}, rows if offset == 0 else 0, part.iloc[:1],
                                  effects or None, codes, levels, rest, dense)
                width = X.shape[1] + y.shape[1] + 1
                position += len(part)
                offset += len(part)

    def reduce_levels(self, function, combine):
        """The fold of ``function(part)`` over :meth:`level_parts`, on threads as :meth:`reduce`."""
        threads = worker_threads()
        if threads >= 2:
            return fold_in_threads(function, combine, self.level_parts(), threads)
        result = None
        for part in self.level_parts():
            partial = function(part)
            result = partial if result is None else combine(result, partial)
        return result

    def _probe_where(self, probe):
        return lambda row, column: self._where(int(probe.index[row]), column)

    def chunks(self):
        """The rows through the formula; the :attr:`block_candidate` factor as ``Chunk.codes`` after ``use_blocks``."""
        self.check_dense_levels()
        step = self.rows_per_chunk()
        position = 0
        for frame, _ in self._frames():
            frame, _, _ = self._clean(frame)
            for offset in range(0, len(frame), step):
                part = frame.iloc[offset:offset + step]
                where = lambda row, column, part=part: self._where(int(part.index[row]), column)  # noqa: E731
                codes = None
                if self.block_layout is not None:  # never a dense one-hot block of the factor
                    X, codes, y, _ = self.design.transform_codes(part, where=where, targets=self.targets)
                else:
                    X, y, _, _ = self.design.transform(part, where=where, targets=self.targets)
                if self.missing == "keep":
                    gaps = part[self.design.feature_variables].isna().any(axis=1).to_numpy()
                    X[gaps] = np.nan
                if y is None:
                    y = np.empty((len(part), 0))
                weight = None
                if self.has_weights:
                    column = self.weight_name if self._weight_values is None else "__weight__"
                    weight = part[column].to_numpy(dtype=np.float64)
                # rows keep their numbers in the table in messages, dropped rows or not
                yield Chunk(X, y, weight, position, part.index.to_numpy(), codes)
                position += len(part)

    def reduce(self, function, combine):
        threads = worker_threads()
        if threads < 2:
            return super().reduce(function, combine)
        return fold_in_threads(function, combine, self.chunks(), threads)

    def describe(self):
        return self.label

    def row_position(self, row):
        return self.file.row_position(row) if self.file is not None else f"row {row}"


# -- Dask --------------------------------------------------------------------------


def _learn_partition(frame, design):
    """A partition's levels (formulaic's state), for merging on the client (where the statistics pass cannot)."""
    design = FormulaDesign(design.formula)
    frame = frame.dropna()
    if len(frame):
        design.learn(frame)
    return design._found, design._chunks_learned


def _partition_part(frame, design, variables, missing, start):
    """A partition's :class:`~gradfit.engines.formula_levels.FormulaPartial` (levels, missing counts and the
    whole scatter of its rows encoded against its own levels), its rows numbered from ``start`` in messages."""
    from ..engines.formula_levels import FormulaPartial, part_partial
    from .dask.names import SourceNames

    rows = len(frame)
    frame = frame.copy()
    frame.index = np.arange(start, start + rows)
    where = lambda row, column: f"the Dask input, row {row + 1}, column {column!r}"  # noqa: E731
    frame, counts, _ = frame_missing(frame, variables, missing, where)
    if len(frame) == 0:
        return FormulaPartial(None, [], {}, counts, rows, 0)
    learning = FormulaDesign(design.formula)
    target_names = learning.target_names(frame.iloc[:0])
    X, y, names, found, effects, codes, levels, rest, dense = encode_part(learning, frame)
    part = FormulaPart(X, y, None, start, frame.index.to_numpy(), names, found, counts, rows, frame.iloc[:1],
                       effects or None, codes, levels, rest, dense)
    return part_partial(part, True, lambda part: SourceNames("frame", "the Dask input", part.names, target_names))


def _partition_partial(frame, design, variables, missing):
    """On a worker: ``(partial, (rows, kept, failed))`` of one partition (:func:`_partition_part`).

    A bad value (a gap with ``missing="error"``, a NaN a transform made) is
    not raised here, where the partition's first row is not known:
    ``failed`` says so, and the client reads that partition again to name
    it (:func:`_raise_placed`).
    """
    try:
        partial = _partition_part(frame, design, variables, missing, 0)
    except DataError:
        return None, (len(frame), 0, True)
    return partial, (len(frame), partial.kept, False)


def _raise_placed(frame, design, variables, start, missing):
    """Name the bad value of a partition whose first row is ``start``, as a table read on one machine names it."""
    _partition_part(frame, design, variables, missing, start)
    raise DataError("the Dask input: a value the formula cannot use (a missing value, or a transform's NaN or "
                    "infinity)")


def _learn_in_one_compute(parts, design, variables, missing, n_outputs, run):
    """The partitions' levels, missing counts and moments, merged on the cluster in a tree: one compute.

    Returns ``(partial, rows, kept)``: the merged partial, each partition's
    rows and rows kept; ``partial`` is ``None`` where the levels are to be
    learned apart (a coding other than treatment, a factor of many levels).
    """
    from ..engines.formula_levels import merge_partials
    from ..formula import NotStreamable
    from .dask import require
    from .dask.tasks import merge_tree
    from .level_parts import TooManyLevels

    dask = require("dask")
    learn = dask.delayed(_partition_partial, nout=2, pure=True)
    units = [learn(part, design, variables, missing) for part in parts]
    try:
        merged, *counted = run(merge_tree([partial for partial, _ in units], merge_partials(n_outputs)),
                               *[count for _, count in units])
    except (TooManyLevels, NotStreamable):
        return None, None, None
    rows = [int(count[0]) for count in counted]
    for i, (_, _, failed) in enumerate(counted):
        if failed:  # read that partition again, knowing its first row, to name the value
            run(dask.delayed(_raise_placed)(parts[i], design, variables, int(sum(rows[:i])), missing))
    return merged, rows, [int(count[1]) for count in counted]


def _encode_partition(frame, design, variables, start, missing):
    frame = frame.copy()
    frame.index = np.arange(start, start + len(frame))
    where = lambda row, column: f"the Dask input, row {row + 1}, column {column!r}"  # noqa: E731
    frame, _, _ = frame_missing(frame, variables, missing, where)
    if len(frame) == 0:
        return np.empty((0, len(design.feature_names_))), np.empty((0, len(design.target_names_)))
    X, y, _, _ = design.transform(frame, where=lambda row, column: where(int(frame.index[row]), column))
    return X, y


def _kept_rows(frame, variables, missing):
    return int(frame[variables].notna().all(axis=1).sum()) if missing == "drop" else len(frame)


def dask_formula_source(frame, formula, missing="error", handle_unknown="error", design=None):
    """A :class:`~gradfit.sources.DaskSource` of a Dask dataframe through a formula.

    Training (no ``design``): one compute learns the model spec where the
    partitions are, as :class:`FormulaSource` does in its statistics pass:
    each partition's levels, missing values and moments (its rows encoded
    against its own levels, :func:`_partition_partial`), merged in a tree on
    the workers (:func:`~gradfit.engines.formula_levels.merge_partials`). Its
    statistics are the source's ``learned_statistics``, which the statistics
    engine uses without another compute (:func:`gradfit.fitting.prepare`).
    The encoded blocks every later pass reads are made on the workers too.
    """
    from .dask import DaskSource, compute, require

    dask = require("dask")
    da = require("dask.array")
    learning = design is None
    design = design or FormulaDesign(formula, handle_unknown=handle_unknown)
    design.handle_unknown = handle_unknown
    variables = list(dict.fromkeys(design.target_variables + design.feature_variables))
    absent = [v for v in variables if v not in frame.columns]
    if absent:
        raise DataError(f"the Dask input has no column {absent[0]!r} (the formula names it)")
    frame = frame[variables]
    parts = frame.to_delayed()
    partial = raw = lengths = None
    if learning:
        try:
            n_outputs = len(design.target_names(frame._meta))  # the left-hand side on no rows (Dask's meta)
        except DataError:  # it needs rows: the levels learned apart
            n_outputs = None
        if n_outputs is not None:
            partial, raw, lengths = _learn_in_one_compute(parts, design, variables, missing, n_outputs, compute)
        if partial is not None:
            if partial.probe is None:
                raise DataError("the Dask input has no data rows" + (" left after dropping missing values"
                                                                     if sum(raw) else ""))
            from ..engines.formula_levels import learned_levels

            design._found = learned_levels(partial)
            design.finish()
            head = partial.probe
        else:  # the levels learned apart (a coding other than treatment, a factor of many levels)
            learned = compute(*[dask.delayed(_learn_partition)(part, design) for part in parts])
            for found, chunks in learned:
                for factor, levels in found.items():
                    design._found.setdefault(factor, set()).update(levels)
            design.finish()
    if partial is None:
        lengths = [int(n) for n in compute(*[dask.delayed(_kept_rows)(p, variables, missing) for p in parts])]
        raw = [int(n) for n in compute(frame.map_partitions(len))[0]]
        head = frame.head(1)
    X, y, design.feature_names_, design.target_names_ = design.transform(head)
    starts = np.concatenate([[0], np.cumsum(raw)])
    if design.block is not None:  # a factor of many levels: level codes made on the workers
        source = _dask_block_source(frame, head, design, variables, missing, lengths, starts)
    else:
        encode = dask.delayed(_encode_partition, pure=True, nout=2)
        Xs, ys = [], []
        for part, n, start in zip(parts, lengths, starts):
            block_X, block_y = encode(part, design, variables, int(start), missing)
            Xs.append(da.from_delayed(block_X, shape=(n, len(design.feature_names_)), dtype=np.float64))
            ys.append(da.from_delayed(block_y, shape=(n, len(design.target_names_)), dtype=np.float64))
        source = DaskSource(da.concatenate(Xs), da.concatenate(ys), feature_names=design.feature_names_,
                            target_names=design.target_names_, categorical=None)
    source.design = design
    source.missing_counts = None
    source.rows_dropped = int(sum(raw) - sum(lengths))
    if partial is not None and not partial.dense:  # a factor of many levels: its blocks from the merged cells
        from ..engines.formula_levels import formula_blocks

        if design.block is not None and partial.cells is not None:
            source.learned_statistics = formula_blocks(source, partial)
    elif partial is not None:
        from ..engines.formula_levels import restrict
        from ..engines.statistics import finish

        moments = restrict(partial.moments, partial, design.feature_names_, len(design.target_names_))
        if moments is not None:
            source.learned_statistics = finish(moments, source, True)
    if missing == "drop":
        if partial is not None:
            gaps = partial.counts
        else:
            gaps = compute(frame.isna().sum())[0]
        source.missing_counts = {str(c): int(n) for c, n in gaps.items() if n}
        if source.rows_dropped:
            shown = ", ".join(f"{name!r}: {n}" for name, n in source.missing_counts.items())
            source.notes.append(f"missing values: {source.rows_dropped} of {sum(raw)} rows left out ({shown})")
    return source


def _dask_block_source(frame, head, design, variables, missing, lengths, starts):
    """A :class:`~gradfit.sources.DaskSource` whose blocks are chunks made on the workers (:func:`_codes_partition`).

    The design's :attr:`~gradfit.formula.FormulaDesign.block` factor comes as
    level codes (``block_candidate``); a fit that needs dense dummies gets
    them made on the workers, within ``MAX_LEVELS`` (as for a Dask
    dataframe's categorical column, :mod:`gradfit.sources.dask.frame_blocks`).
    """
    from .dask import DaskSource, require
    from .dask.names import SourceNames

    dask = require("dask")
    source = DaskSource.__new__(DaskSource)
    source._file, source.encoder, source.notes = None, None, []
    source.feature_names, source.target_names = list(design.feature_names_), list(design.target_names_)
    source.n_features, source.n_outputs = len(source.feature_names), len(source.target_names)
    source.y_ndim = 1 if source.n_outputs == 1 else 2
    source.dtype, source.has_weights, source.frame_feature_names = np.dtype(np.float64), False, None
    source.names = SourceNames("frame", "the Dask input", source.feature_names, source.target_names)
    source.block_candidate = design.block_layout(head)  # ``head``: the frame's first row (pandas)
    read = dask.delayed(_codes_partition, pure=True)
    shared = dask.delayed(design, pure=True)  # one key in the graph, not a copy in every task
    source._set_blocks([read(part, shared, variables, int(start), missing)
                        for part, start in zip(frame.to_delayed(), starts)], lengths)
    source._collections = (frame,)
    return source


def _codes_partition(frame, design, variables, start, missing):
    """On a worker: a partition as a :class:`Chunk`: the rest of the formula's features, the factor's codes.

    Rows keep their numbers in the input (``positions``) where rows with a
    missing value were left out.
    """
    frame = frame.copy()
    frame.index = np.arange(start, start + len(frame))
    where = lambda row, column: f"the Dask input, row {row + 1}, column {column!r}"  # noqa: E731
    frame, _, _ = frame_missing(frame, variables, missing, lambda row, column: where(int(frame.index[row]), column))
    layout = design._layout
    if len(frame) == 0:
        return Chunk(np.empty((0, layout["n_dense"])), np.empty((0, len(design.target_names_))), None, start,
                     np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    X, codes, y, _ = design.transform_codes(frame, where=lambda row, column: where(int(frame.index[row]), column))
    return Chunk(X, y, None, start, frame.index.to_numpy(), codes)
