"""Categorical columns and missing values: raw table columns to the model's features.

A raw feature column is either numeric (one feature, its value) or
*categorical*: its distinct values, the *levels*, sorted, and treatment
(dummy) coding against a reference level, the first in sorted order unless
one is named, as statsmodels and formulaic choose it. A column ``firm`` with
levels ``Chrysler < General Electric < General Motors`` becomes two features,

    firm[T.General Electric] = 1{firm = "General Electric"},
    firm[T.General Motors]   = 1{firm = "General Motors"},

named as statsmodels prints them (``C(firm)[T.…]`` in a formula). The levels
are learned from the training data (:func:`learn_levels`, merged chunk by
chunk) and stored in the model file (:meth:`TableEncoder.to_json`), so that
prediction takes the raw table. A level not seen in training is an error
naming it, or, with ``handle_unknown="ignore"``, contributes zero (every
dummy of that column 0), as scikit-learn's ``OneHotEncoder`` does.

Which columns are categorical (``categorical=``):

* ``"auto"`` (the default): string, dictionary-encoded strings (Arrow,
  Parquet, pandas ``category``), pandas ``object`` and bool columns; numbers
  stay numbers;
* a list of column names: those, numeric codes (zip codes, years) included,
  besides the ones ``"auto"`` finds; entries ``"name=level"`` name the
  reference level (as printed: ``firm=Chrysler``, ``year=1936``);
* ``None``: none; a non-numeric column is an error, as before categories existed.

Missing values (``missing=``): ``"error"`` (a one-line error naming the
file, column and row), ``"drop"`` (rows with a missing value in any column
the model uses are left out, counted per column), or, for predictions only,
``"keep"`` (the row's prediction is NaN). NaN in a float column counts as
missing when dropping, as in pandas and statsmodels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from ..choices import HANDLE_UNKNOWN

#: the most levels a categorical column may have when it becomes dense features (the
#: statistics hold a dense Gram of all features: 5000 levels make 200 MB of it)
MAX_LEVELS = 5000
#: a categorical column of more levels than this (the one with the most, if several) is
#: kept as level codes (:meth:`TableEncoder.choose_block`): the statistics hold it as blocks
#: (:mod:`gradfit.engines.categorical`), never as a dense one-hot block
BLOCK_LEVELS = 1000
#: the most levels of the column kept as codes: its blocks hold (levels × features) values
MAX_BLOCK_LEVELS = 1_000_000


def level_text(level):
    """A level as statsmodels and formulaic print it: ``Chrysler``, ``1936``, ``1936.0``, ``True``."""
    return str(level)


def is_string_type(arrow_type):
    if pa.types.is_dictionary(arrow_type):
        return is_string_type(arrow_type.value_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def is_number_type(arrow_type):
    """What gradfit reads as a number (bool as 0/1 where a column is not categorical)."""
    if pa.types.is_dictionary(arrow_type):
        return is_number_type(arrow_type.value_type)
    return (
        pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)
        or pa.types.is_decimal(arrow_type) or pa.types.is_null(arrow_type)
    )


def auto_categorical(arrow_type):
    """Whether ``"auto"`` takes a column of this type as categorical: strings and bools."""
    return is_string_type(arrow_type) or pa.types.is_boolean(arrow_type)


def parse_categorical(categorical):
    """``(names, references)`` from the ``categorical`` option.

    Returns ``(None, {})`` for ``None`` (nothing categorical), ``("auto", {})``
    for ``"auto"``, else the listed names and a ``{name: level text}`` of the
    references named (``"firm=Chrysler"``, or a dict ``{"firm": "Chrysler"}``).
    """
    if categorical is None or (isinstance(categorical, str) and categorical.lower() == "none"):
        return None, {}
    if isinstance(categorical, str) and categorical == "auto":
        return "auto", {}
    if isinstance(categorical, str):
        categorical = [categorical]
    names, references = [], {}
    items = categorical.items() if isinstance(categorical, dict) else ((c, None) for c in categorical)
    for entry, reference in items:
        if not isinstance(entry, str):
            raise ValueError(f"categorical: column names must be strings, not {entry!r}")
        if reference is None and "=" in entry:
            entry, reference = entry.split("=", 1)
        names.append(entry)
        if reference is not None:
            references[entry] = level_text(reference)
    return names, references


@dataclass
class ColumnCoding:
    """How one raw feature column becomes features.

    ``levels`` is ``None`` for a numeric column, else the sorted levels
    (Python ``str``, ``bool``, ``int`` or ``float``, one kind per column);
    ``reference`` indexes the level without a feature.
    """

    name: str
    levels: list | None = None
    reference: int = 0
    kind: str = "number"  # "number", or for levels: "string", "bool", "number"

    @property
    def categorical(self):
        return self.levels is not None

    @property
    def feature_names(self):
        if not self.categorical:
            return [self.name]
        return [f"{self.name}[T.{level_text(v)}]" for i, v in enumerate(self.levels) if i != self.reference]

    def value_set(self):
        """The levels as an Arrow array of the type values are matched in."""
        if self.kind == "string":
            return pa.array(self.levels, pa.string())
        if self.kind == "bool":
            return pa.array(self.levels, pa.bool_())
        return pa.array([float(v) for v in self.levels], pa.float64())


def match_type(kind):
    return {"string": pa.string(), "bool": pa.bool_()}.get(kind, pa.float64())


def level_kind(arrow_type):
    if is_string_type(arrow_type):
        return "string"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    return "number"


def plain_array(array):
    """A ChunkedArray or Array as one Array, dictionaries decoded."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def distinct_values(array, kind):
    """The distinct non-missing values of a column (a chunk of it) as a Python set."""
    array = plain_array(array)
    if kind == "number":
        array = pc.cast(array, pa.float64())
        array = pc.filter(array, pc.invert(pc.is_nan(array)).fill_null(False))
    else:
        array = array.cast(match_type(kind))
    return set(pc.unique(array.drop_null()).to_pylist())


def finish_levels(coding, values, integral, references, describe, limit=MAX_LEVELS):
    """Sort the levels found and place the reference; ``integral``: the column's type is an integer type.

    ``limit``: the most levels allowed: :data:`MAX_LEVELS` where every column
    becomes dense features, :data:`MAX_BLOCK_LEVELS` where the source can keep
    one as codes (then :meth:`TableEncoder.choose_block` checks the others).
    """
    if not values:
        raise DataError(f"{describe}, column {coding.name!r}: no values to learn categories from")
    levels = sorted(values)
    if coding.kind == "number" and integral:
        levels = [int(v) for v in levels]
    if len(levels) > limit:
        dense = " (as dense features)" if limit == MAX_LEVELS else ""
        raise DataError(f"{describe}, column {coding.name!r}: {len(levels)} categories, more than the "
                        f"{limit} gradfit encodes{dense}; is it an identifier? leave it out (--exclude)")
    coding.levels = levels
    wanted = references.get(coding.name)
    if wanted is not None:
        texts = [level_text(v) for v in levels]
        if wanted not in texts:
            shown = ", ".join(repr(t) for t in texts[:20]) + (", ..." if len(texts) > 20 else "")
            raise DataError(f"{describe}, column {coding.name!r}: the reference level {wanted!r} is not among "
                            f"its levels: {shown}")
        coding.reference = texts.index(wanted)


def missing_mask(array):
    """True where a column's value is present: not null, and not NaN in a float column."""
    array = plain_array(array)
    valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_floating(array.type):
        valid &= ~np.isnan(array.to_numpy(zero_copy_only=False).astype(np.float64))
    return valid


@dataclass
class TableEncoder:
    """Raw feature columns to the model's features (see the module docstring).

    Parameters
    ----------
    columns : list of ColumnCoding
        One per raw feature column, in order.
    handle_unknown : {"error", "ignore"}
    """

    columns: list
    handle_unknown: str = "error"
    #: the column kept as level codes (:meth:`choose_block`), or ``None``: all dense
    block: str | None = None

    @property
    def raw_names(self):
        return [column.name for column in self.columns]

    @property
    def feature_names(self):
        return [name for column in self.columns for name in column.feature_names]

    @property
    def n_features(self):
        return len(self.feature_names)

    @property
    def categorical(self):
        return any(column.categorical for column in self.columns)

    def choose_block(self, describe):
        """Keep the categorical column of the most levels, above :data:`BLOCK_LEVELS`, as level codes.

        Every other column must then be within :data:`MAX_LEVELS` (it stays
        dense features). Sets and returns :attr:`block` (``None``: all dense).
        """
        self.block = self.widest_block()
        for coding in self.columns:
            if coding.categorical and coding.name != self.block and len(coding.levels) > MAX_LEVELS:
                raise DataError(
                    f"{describe}, column {coding.name!r}: {len(coding.levels)} categories; only one categorical "
                    f"column (here {self.block!r}) may have more than {MAX_LEVELS}: leave one out (--exclude)")
        return self.block

    def widest_block(self):
        """The name of the categorical column of the most levels, above :data:`BLOCK_LEVELS` (the first on a tie), or ``None``.

        Depends on the levels alone, so a model file's encoder
        (:meth:`from_json`) keeps as codes the column its fit kept.
        """
        many = [c for c in self.columns if c.categorical and len(c.levels) > BLOCK_LEVELS]
        return max(many, key=lambda c: len(c.levels)).name if many else None

    def one_hot_spans(self):
        """The spans ``(start, stop)`` of the categorical columns' dummies among all features (dense encoding).

        Their moments come from counts (:func:`gradfit.engines.statistics.block_moments`).
        """
        spans, j = [], 0
        for coding in self.columns:
            width = len(coding.feature_names)
            if coding.categorical and width:
                spans.append((j, j + width))
            j += width
        return spans

    def block_layout(self):
        """Where the codes' column sits among the features (:class:`~gradfit.engines.categorical.LevelBlocks`).

        Returns a dict: ``column`` (its index among the raw columns),
        ``name``, ``n_levels``, ``levels`` (as text), ``reference``, ``n_dense`` (the other features),
        ``dense_index`` and ``level_index`` (their positions among all
        features), ``dense_names``, ``one_hot`` (the spans ``(start, stop)``
        of the other features that are another categorical column's 0/1
        dummies, whose moments come from counts: :func:`~gradfit.engines.categorical.chunk_level_moments`).
        """
        dense_index, level_index, names, one_hot = [], [], [], []
        j = 0
        for i, coding in enumerate(self.columns):
            width = len(coding.feature_names)
            if coding.name == self.block:
                column, block = i, coding
                level_index.extend(range(j, j + width))
            else:
                if coding.categorical and width:
                    one_hot.append((len(dense_index), len(dense_index) + width))
                dense_index.extend(range(j, j + width))
                names.extend(coding.feature_names)
            j += width
        return {"column": column, "name": block.name, "n_levels": len(block.levels),
                "levels": [level_text(level) for level in block.levels], "reference": block.reference,
                "n_dense": len(dense_index), "dense_index": np.array(dense_index, dtype=np.intp),
                "level_index": np.array(level_index, dtype=np.intp), "dense_names": names, "one_hot": one_hot}

    def encode_blocks(self, arrays, dtype=np.float64, where=None):
        """``(X, codes)``: the features but the :attr:`block` column's dummies, shape (n, n_dense), and its level codes.

        ``codes`` (n,), int64: each row's level index (``-1``: an unseen level
        with ``handle_unknown="ignore"``; ``-2``: missing).
        """
        column = next(i for i, c in enumerate(self.columns) if c.name == self.block)
        dense = TableEncoder([c for c in self.columns if c.name != self.block], self.handle_unknown)
        X = dense.encode(arrays[:column] + arrays[column + 1:], dtype, where)
        codes = self._codes(self.columns[column], plain_array(arrays[column]), where)
        return X, codes

    def encode(self, arrays, dtype=np.float64, where=None):
        """The features of a block of rows, shape (n, n_features), column-major.

        Parameters
        ----------
        arrays : list of pyarrow arrays
            The raw feature columns, one per :attr:`columns`. Missing values
            (null, or NaN) make NaN in every feature of that column.
        dtype : NumPy dtype of the result
        where : callable(row, column_name) -> str, optional
            For the message when a level is unseen (``handle_unknown="error"``).
        """
        n = len(arrays[0]) if arrays else 0
        X = np.zeros((n, self.n_features), dtype=dtype, order="F")
        j = 0
        for coding, array in zip(self.columns, arrays):
            array = plain_array(array)
            if not coding.categorical:
                if not pa.types.is_floating(array.type):
                    array = pc.cast(array, pa.float64())  # integers, bool (0/1), decimals; nulls stay null
                X[:, j] = array.to_numpy(zero_copy_only=False)  # a null becomes NaN
                j += 1
                continue
            width = len(coding.levels) - 1
            codes = self._codes(coding, array, where)
            present = codes >= 0
            rows = np.flatnonzero(present & (codes != coding.reference))
            column = codes[rows]
            column = column - (column > coding.reference)
            X[rows, j + column] = 1.0
            missing = codes == -2
            if missing.any():
                X[missing, j : j + width] = np.nan
            j += width
        return X

    def _codes(self, coding, array, where):
        """Level index of each row; -1 for an unseen level (ignored), -2 for a missing value."""
        kind = coding.kind
        if kind == "number":
            values = pc.cast(array, pa.float64()) if not pa.types.is_floating(array.type) else array
        else:
            try:
                values = array.cast(match_type(kind))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(
                    f"column {coding.name!r} is {array.type}, but the model learned its categories from {kind} values"
                ) from None
        codes = pc.index_in(values, value_set=coding.value_set())
        valid = missing_mask(values)
        result = codes.to_numpy(zero_copy_only=False)
        result = np.where(np.isnan(result.astype(np.float64)), -1, result).astype(np.int64) \
            if result.dtype.kind == "f" else result.astype(np.int64)
        result[~valid] = -2
        unseen = np.flatnonzero(result == -1)
        if unseen.size and self.handle_unknown == "error":
            row = int(unseen[0])
            level = values[row].as_py()
            at = where(row, coding.name) if where is not None else f"row {row}, column {coding.name!r}"
            raise DataError(
                f"{at}: category {level_text(level)!r} was not in the training data "
                f"({len(coding.levels)} categories); to give it zero effect, use handle_unknown='ignore' "
                "(--handle-unknown ignore)"
            )
        return result

    # -- the model file ---------------------------------------------------------

    def to_json(self):
        return {
            "columns": [
                {"name": c.name} if not c.categorical else
                {"name": c.name, "kind": c.kind, "levels": list(c.levels), "reference": c.reference}
                for c in self.columns
            ],
            "handle_unknown": self.handle_unknown,
        }

    @classmethod
    def from_json(cls, document, fail):
        """The encoder a model file describes; ``fail(why)`` raises on anything malformed."""
        if not isinstance(document, dict) or not isinstance(document.get("columns"), list):
            fail("'encoding' must be an object with a list of 'columns'")
        columns = []
        kinds = {"string": str, "bool": bool, "number": (int, float)}
        for i, item in enumerate(document["columns"]):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                fail(f"'encoding.columns[{i}]' must be an object with a string 'name'")
            if "levels" not in item:
                columns.append(ColumnCoding(item["name"]))
                continue
            kind, levels, reference = item.get("kind"), item.get("levels"), item.get("reference")
            if kind not in kinds or not isinstance(levels, list) or len(levels) < 1:
                fail(f"'encoding.columns[{i}]' must have a 'kind' (string, bool, number) and a list of 'levels'")
            for level in levels:
                bad = not isinstance(level, kinds[kind]) or (kind == "number" and isinstance(level, bool))
                if bad or (isinstance(level, float) and not math.isfinite(level)):
                    fail(f"'encoding.columns[{i}].levels' holds {level!r}, which is not a {kind} level")
            if len(set(levels)) != len(levels):
                fail(f"'encoding.columns[{i}].levels' names a level twice")
            if not isinstance(reference, int) or isinstance(reference, bool) or not 0 <= reference < len(levels):
                fail(f"'encoding.columns[{i}].reference' must index its levels")
            columns.append(ColumnCoding(item["name"], list(levels), reference, kind))
        handle_unknown = document.get("handle_unknown", "error")
        if handle_unknown not in HANDLE_UNKNOWN:
            fail(f"'encoding.handle_unknown' must be one of {', '.join(HANDLE_UNKNOWN)}")
        encoder = cls(columns, handle_unknown)
        encoder.block = encoder.widest_block()  # not stored: derived from the levels, as the fit chose it
        return encoder


def plan(names, types, categorical, describe, guessed=False):
    """The :class:`ColumnCoding` of each raw feature column (levels still to learn).

    Parameters
    ----------
    names : list of str
    types : list of pyarrow DataType
        As the source reads them.
    categorical : "auto", list, dict or None
    describe : str
        The source, for messages.
    guessed : bool
        The types were guessed from a sample (CSV): a column not numeric
        there and not categorical is read as numbers, and its first value
        that is not a number is named then.

    Returns
    -------
    codings : list of ColumnCoding
    references : dict
        Reference levels named by the user, by column.
    """
    listed, references = parse_categorical(categorical)
    if listed not in (None, "auto"):
        unknown = [name for name in listed if name not in names]
        if unknown:
            raise DataError(f"{describe}: categorical column {unknown[0]!r} is not one of the features: "
                            f"{', '.join(names[:50])}")
    codings = []
    for name, arrow_type in zip(names, types):
        chosen = listed is not None and (name in listed if listed != "auto" else False)
        if listed is not None and (chosen or auto_categorical(arrow_type)):
            codings.append(ColumnCoding(name, levels=[], kind=level_kind(arrow_type)))
        elif is_number_type(arrow_type) or guessed:  # guessed (CSV): a bad value is located when read
            codings.append(ColumnCoding(name))
        else:
            hint = "" if listed is None else "; name it in categorical= (--categorical) to use its values as categories"
            if listed is None and is_string_type(arrow_type):
                hint = "; with categorical='auto' (the default; not --categorical none) its values are categories"
            raise DataError(f"{describe}, column {name!r}: type {arrow_type} is not numeric{hint}")
    return codings, references


def pandas_arrow(series):
    """A pandas Series as an Arrow array (NaN and None as null)."""
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # mixed objects: compare as text, as statsmodels' formulas would fail on them anyway
        return pa.array(series.map(lambda v: None if v is None or v != v else str(v)), pa.string())
