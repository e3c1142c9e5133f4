"""Formulas, ``price ~ size + np.log(area) + C(city) + size:rooms``, through formulaic.

formulaic (the formula library glum uses) parses the formula and builds the
design matrix of each chunk of rows; gradfit never parses a formula itself.
What formulaic learns from data, the *model spec* (above all the levels of
every categorical factor), must hold for the whole table, not for the first
chunk of a streamed file. So formulaic's state of each chunk is taken, the
levels of each categorical factor are merged (sorted, so the reference level
is the first in sorted order, as statsmodels and formulaic choose it on the
whole table: :meth:`FormulaDesign.finish`), and the merged spec then encodes
every chunk alike. The chunks' states are taken in the statistics pass
itself (:meth:`FormulaDesign.learn_encoding`, :mod:`gradfit.engines.formula_levels`),
or, where that pass cannot merge them, in a pass of their own
(:meth:`FormulaDesign.learn`). Only the formula and those levels are stored
in the model file; predictions rebuild the spec from them.

Transforms with a state of their own (``center(x)``, ``scale(x)``,
``poly(x)``, ``bs(x)``) would learn it from one chunk only, and anew from the
data predicted on: they are refused. Stateless ones (``np.log``,
``np.sqrt``, ``I(x**2)``, interactions) stream without limit.

A factor of many levels, a main effect in no interaction (``C(firm)`` with
10,000 firms), is not encoded by formulaic: it is kept as level codes
(:meth:`FormulaDesign.choose_block`, :meth:`FormulaDesign.transform_codes`),
as a table's categorical column of many levels is
(:mod:`gradfit.sources.encoding`), and formulaic encodes the rest of the
formula. Its levels are learned with the others from its column directly
(:meth:`FormulaDesign.effect_codes` in the statistics pass,
:meth:`FormulaDesign._learn_main_effects` in a pass of their own, as
formulaic finds them), so that no dense one-hot block is made there either.

formulaic's intercept column is the estimator's intercept: a formula with
``- 1`` or ``+ 0`` needs ``fit_intercept=False`` (``--no-intercept``), and
the other way round.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from .errors import DataError, OptionError

INTERCEPT = "Intercept"

#: While the levels are learned, each chunk is encoded against its own levels with this reference first: it
#: never occurs, so treatment coding drops it and every level of the chunk keeps its dummy (see
#: :meth:`FormulaDesign.learn_encoding`); full-rank codings give it a column of zeros, which is left out.
PENDING_REFERENCE = "\u2400gradfit-reference"


class NotStreamable(Exception):
    """A factor's coding that the pass learning the levels cannot merge (contrasts other than plain treatment).

    Not an error of the data: the levels are then learned by a pass of their own.
    """


def _formulaic():
    try:
        import formulaic
    except ImportError:  # pragma: no cover - a dependency; said in one line if it is missing
        raise OptionError("formulas need the formulaic package: pip install formulaic") from None
    return formulaic


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


class FormulaDesign:
    """A formula and the levels its categorical factors take in the data.

    Parameters
    ----------
    formula : str
        ``"y ~ x + C(g)"``; several targets as ``"y1 + y2 ~ …"``.
    categories : dict, optional
        ``{factor: sorted levels}`` learned before (a model file's); else
        they are learned from the chunks (:meth:`learn_encoding` in the
        statistics pass, or :meth:`learn`) and fixed by :meth:`finish`.
    handle_unknown : {"error", "ignore"}
    """

    def __init__(self, formula, categories=None, handle_unknown="error"):
        formulaic = _formulaic()
        try:
            parsed = formulaic.Formula(formula)
        except Exception as exc:  # formulaic's parser errors: one line, with the formula
            raise OptionError(f"formula {formula!r}: {_one_line(exc)}") from None
        if not hasattr(parsed, "lhs") or not parsed.lhs.required_variables:
            raise OptionError(f"formula {formula!r} names no target: write it as 'y ~ x + ...'")
        if not parsed.rhs.required_variables:
            raise OptionError(
                f"formula {formula!r} names no feature column gradfit can read; transforms with a state of "
                "their own (center, scale, poly, bs) are not supported: compute those columns beforehand"
            )
        self.formula = formula
        self.target_variables = sorted(parsed.lhs.required_variables)
        self.feature_variables = sorted(parsed.rhs.required_variables)
        self.categories = None if categories is None else {k: list(v) for k, v in categories.items()}
        self.handle_unknown = handle_unknown
        # the formula's structure says it (transform says it again from the matrix): known before any row is read
        self.has_intercept = any(str(term) == "1" for term in parsed.rhs)
        self._found = {}
        self._spec = None
        self._pass_spec = None  # the right-hand side's spec of the statistics pass's first chunk
        self._pass_formula = None  # the formula that spec encodes (without the main effects coded, once they are)
        self._chunks_learned = 0
        #: the factor kept as level codes (:meth:`choose_block`), its column, and its layout once built
        self.block = self.block_column = self._layout = None
        self._effects = self._level_index = self._rest_spec = None  # made when first needed
        if self.categories is not None:
            self.choose_block()

    @property
    def variables(self):
        """The table's columns the formula reads: targets first."""
        return self.target_variables + [v for v in self.feature_variables if v not in self.target_variables]

    def target_names(self, frame):
        """The left-hand side's columns, as formulaic names them (``frame`` may have no rows: its dtypes say)."""
        return [str(c) for c in self._lhs(frame).columns]

    def _lhs(self, frame):
        """formulaic's matrix of the left-hand side on ``frame``."""
        formulaic = _formulaic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return formulaic.model_matrix(formulaic.Formula(self.formula).lhs, frame, na_action="ignore")
            except Exception as exc:
                raise DataError(f"formula {self.formula!r}: {_one_line(exc)}") from None

    # -- learning -----------------------------------------------------------------

    def learn(self, frame):
        """Take formulaic's state of one chunk (a DataFrame) into the merged levels."""
        for factor, levels in self._chunk_state(frame)[1].items():
            self._found.setdefault(factor, set()).update(levels)
        self._learn_main_effects(frame)

    def _chunk_state(self, frame, formula=None):
        """``(formulaic's materialized matrices, {factor: levels found})`` of one chunk; stateful transforms refused.

        ``formula``: the one to materialize (default :meth:`_learning_formula`).
        """
        materialized = self._materialize(frame, formula)
        rhs = materialized.model_spec.rhs
        self._chunks_learned += 1
        if rhs.transform_state:
            # its state would come from one chunk, and be learned anew from the data predicted on
            names = ", ".join(sorted(rhs.transform_state))
            raise OptionError(
                f"formula {self.formula!r}: {names} learns a state from the data, which gradfit does not "
                "keep; compute that column beforehand, or use stateless transforms (np.log, I(x**2), x:z)"
            )
        found = {}
        for factor, (kind, state) in rhs.encoder_state.items():
            if getattr(kind, "value", kind) == "categorical":
                found[factor] = [_plain(v) for v in state["categories"]]
        return materialized, found

    def learn_encoding(self, frame, known=None, coded=None, terms=False):
        """A chunk encoded against its own levels, for the statistics pass that learns them.

        Every categorical factor's levels are the chunk's, after
        :data:`PENDING_REFERENCE`, a level that never occurs: treatment coding
        drops it, so a reduced-rank factor keeps a dummy for each of its
        levels (``C(g)[T.a]``, the one the whole table's reference will drop
        among them), and a full-rank one a column of zeros for it, left out.
        Which factors are reduced in which term comes from the formula's
        structure alone, so the chunk's columns include, by name, every
        column of the final design its rows touch, with the same values
        (products of indicators and numeric factors); a column of the design
        a chunk lacks is zero on all its rows.

        Parameters
        ----------
        frame : pandas.DataFrame
        known : dict, optional
            ``{factor: levels}`` of the chunks before (in a fixed order). The
            chunk is first encoded against them, once (formulaic's state of
            the chunk costs a second encoding): a level the chunk does not
            hold is a column of zeros; only if it holds a level outside them
            is its own state taken.

        coded : sequence of str, optional
            Main effects (:meth:`_main_effects`) kept as level codes in the
            pass (:meth:`effect_codes`): their terms are left out of the
            encoding, and no factor's level count ends it. ``None``: every
            term is encoded, and a main effect of more than
            :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels raises
            :class:`~gradfit.sources.level_parts.TooManyLevels`.
        terms : bool
            Also return each column's term (its text), after ``found``.

        Returns
        -------
        X : ndarray of shape (n, p), float64, column-major
            The intercept left out.
        y : ndarray of shape (n, k)
        names : list of str
            ``X``'s columns, as formulaic names them.
        target_names : list of str
        found : dict
            ``{factor: list of levels}`` the columns are of (the chunk's, or ``known``).

        Raises
        ------
        NotStreamable
            Where a factor's coding is not plain treatment (its columns would
            depend on the levels of the chunk, not only on the row).
        """
        from .sources.encoding import BLOCK_LEVELS
        from .sources.level_parts import TooManyLevels

        formula = self.formula
        if coded is None:
            # a main effect of many levels (kept as codes, :meth:`choose_block`) is never encoded densely here:
            # its levels are counted from its column first, and the pass ends (the caller learns them apart)
            for factor, levels in self._main_effect_levels(frame).items():
                if len(levels) > BLOCK_LEVELS:
                    raise TooManyLevels(factor)
        elif coded:
            formula = self._without([(factor, None) for factor in coded])
        if self._pass_formula != formula:  # the spec cached is another formula's
            self._pass_spec, self._pass_formula = None, formula
        encoded = None
        if known and self._pass_spec is not None:
            known = {factor: levels for factor, levels in known.items() if factor in self._pass_spec.encoder_state}
            encoded = self._encode_pending(self._pass_spec, frame, known, strict=True)
        if encoded is not None:
            (X, names, columns), lhs, found = encoded, self._lhs(frame), known
        else:
            materialized, found = self._chunk_state(frame, formula)  # every term (but ``coded``'s) encoded
            self._pass_spec = materialized.model_spec.rhs
            X, names, columns = self._encode_pending(self._pass_spec, frame, found)
            lhs = materialized.lhs
        y = np.asfortranarray(np.asarray(lhs, dtype=np.float64))
        found = {factor: list(levels) for factor, levels in found.items()}
        return (X, y, names, [str(c) for c in lhs.columns], found) + ((columns,) if terms else ())

    def effect_codes(self, frame):
        """``{factor: (codes, levels)}`` of the categorical main effects (:meth:`_main_effect_levels`) in ``frame``.

        ``codes`` (n,), intp: each row's place in ``levels`` (the factor's
        levels in ``frame``, as formulaic finds them); no one-hot is made.
        """
        import pandas as pd

        coded = {}
        for factor, levels in self._main_effect_levels(frame).items():
            column = dict(self._main_effects())[factor]
            codes = pd.Index(levels).get_indexer(frame[column]) if levels else np.full(len(frame), -1)
            if np.any(codes < 0):  # a value formulaic would not place (a gap the caller kept): not coded here
                raise NotStreamable(factor)
            coded[factor] = (codes.astype(np.intp), levels)
        return coded

    def _encode_pending(self, rhs, frame, levels, strict=False):
        """``(X, names, terms)`` of ``frame`` by the spec ``rhs`` with each factor's ``levels`` after the pending
        reference; ``terms``: each column's term (its text).

        ``strict``: ``None`` if a row holds a level outside them (formulaic
        would give it a row of zeros).
        """
        from formulaic.transforms.contrasts import TreatmentContrasts
        from formulaic.utils.sentinels import UNSET

        state = dict(rhs.encoder_state)
        for factor, values in levels.items():
            kind, old = state[factor]
            contrasts = old.get("contrasts")
            if contrasts is not None and not (type(contrasts.contrasts) is TreatmentContrasts
                                              and contrasts.contrasts.base is UNSET):
                raise NotStreamable(factor)
            state[factor] = (kind, _with_levels(old, [PENDING_REFERENCE] + list(values)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                matrix = rhs.update(encoder_state=state, structure=None).get_model_matrix(frame, na_action="ignore")
            except Exception as exc:
                raise DataError(f"formula {self.formula!r}: {_one_line(exc)}") from None
        if strict and any("categories outside of the nominated levels" in str(w.message) for w in caught):
            return None
        names = [str(c) for c in matrix.columns]
        keep = [j for j, name in enumerate(names) if name != INTERCEPT and PENDING_REFERENCE not in name]
        terms = [None] * len(names)
        for term, cut in matrix.model_spec.term_slices.items():
            terms[cut] = [str(term)] * len(terms[cut])
        return (np.asfortranarray(np.asarray(matrix, dtype=np.float64)[:, keep]), [names[j] for j in keep],
                [terms[j] for j in keep])

    def finish(self):
        """Fix the merged levels (sorted): every chunk is encoded with them from now on."""
        self.categories = {factor: sorted(levels) for factor, levels in self._found.items()}
        self._spec = self._pass_spec = None
        self.choose_block()

    def _materialize(self, frame, formula=None):
        formulaic = _formulaic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return formulaic.model_matrix(formula or self._learning_formula(), frame, na_action="ignore")
            except Exception as exc:
                stateful = re.search(r"\b(center|scale|standardize|poly|bs|cs|cc|te|lag)\s*\(", self.formula)
                if stateful:  # formulaic does not list their variables: they were not read
                    raise OptionError(
                        f"formula {self.formula!r}: {stateful.group(1)}() learns a state from the data, which "
                        "gradfit does not keep; compute that column beforehand") from None
                raise DataError(f"formula {self.formula!r}: {_one_line(exc)}") from None

    def _rhs_spec(self, frame):
        """The right-hand side's spec with the learned levels (built once, from the first chunk seen)."""
        if self._spec is None:
            self._spec = self._learned_spec(_formulaic().Formula(self.formula).rhs, frame)
        return self._spec

    def _learned_spec(self, rhs, frame):
        """formulaic's spec of the right-hand side ``rhs`` (a parsed formula), its factors' levels the learned ones."""
        formulaic = _formulaic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                spec = formulaic.model_matrix(rhs, frame, na_action="ignore").model_spec
            except Exception as exc:
                raise DataError(f"formula {self.formula!r}: {_one_line(exc)}") from None
        state = dict(spec.encoder_state)
        for factor, levels in (self.categories or {}).items():
            if factor in state:
                kind, old = state[factor]
                state[factor] = (kind, _with_levels(old, levels))
        return spec.update(encoder_state=state, structure=None)

    # -- encoding -------------------------------------------------------------------

    def transform(self, frame, where=None, targets=True):
        """``(X, y, feature_names, target_names)`` of a chunk; ``y`` is None without ``targets``.

        ``where(row, column)`` names a row for the message about an unseen level.
        """
        if self.block is not None:  # the factor of many levels: its dummies made from its level codes
            from .sources.dask.tasks import dense_dummies

            X, codes, y, target_names = self.transform_codes(frame, where, targets)
            return dense_dummies(X, codes, self._layout), y, list(self._layout["feature_names"]), target_names
        X, names = self._features(self._rhs_spec(frame), frame, where)
        y, target_names = self._targets(frame) if targets else (None, None)
        return X, y, names, target_names

    def _features(self, spec, frame, where):
        """``(X, names)`` of a chunk through formulaic's ``spec``, the intercept column left out."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                matrix = spec.get_model_matrix(frame, na_action="ignore")
            except Exception as exc:
                raise DataError(f"formula {self.formula!r}: {_one_line(exc)}") from None
        unseen = [w for w in caught if "categories outside of the nominated levels" in str(w.message)]
        if unseen and self.handle_unknown == "error":
            raise self._unseen_error(frame, where)
        names = [str(c) for c in matrix.columns]
        X = np.asarray(matrix, dtype=np.float64)
        keep = [j for j, name in enumerate(names) if name != INTERCEPT]
        self.has_intercept = len(keep) < len(names)
        X = np.asfortranarray(X[:, keep])
        names = [names[j] for j in keep]
        return X, names

    def _targets(self, frame):
        """``(y, target_names)`` of a chunk: the formula's left-hand side."""
        formulaic = _formulaic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lhs = formulaic.model_matrix(formulaic.Formula(self.formula).lhs, frame, na_action="ignore")
        target_names = [str(c) for c in lhs.columns]
        y = np.asfortranarray(np.asarray(lhs, dtype=np.float64))
        return y, target_names

    def _unseen_error(self, frame, where):
        """Name the first value of a categorical variable not among the learned levels."""
        known = set()
        for levels in (self.categories or {}).values():
            known.update(str(v) for v in levels)
        for column in self.feature_variables:
            if column not in frame.columns:
                continue
            values = frame[column]
            if values.dtype.kind in "f" and not any(f"({column})" in f or f == column for f in self.categories):
                continue
            for factor, levels in (self.categories or {}).items():
                if factor == column or factor.startswith(("C(" + column + ")", "C(" + column + ",")):
                    texts = {str(v) for v in levels}
                    bad = np.flatnonzero(~values.astype(str).isin(texts).to_numpy() & values.notna().to_numpy())
                    if bad.size:
                        row = int(bad[0])
                        at = where(row, column) if where else f"row {row}, column {column!r}"
                        return DataError(
                            f"{at}: category {str(values.iloc[row])!r} was not in the training data; to give it "
                            "zero effect, use handle_unknown='ignore' (--handle-unknown ignore)"
                        )
        return DataError(f"formula {self.formula!r}: a category was not in the training data; to give it "
                         "zero effect, use handle_unknown='ignore' (--handle-unknown ignore)")

    # -- a factor of many levels kept as level codes ----------------------------------

    def choose_block(self):
        """Choose the factor kept as level codes (:attr:`block`), from the formula and the learned levels.

        The factor must be a main effect of a column, ``C(city)`` or a string
        column named bare (``city``), of more than
        :data:`~gradfit.sources.encoding.BLOCK_LEVELS` levels, in no
        interaction, in a formula with an intercept (without one, formulaic
        codes the first factor with every level, which level codes against a
        reference do not describe); of several, the one of the most levels
        (the first on a tie), as for tables
        (:meth:`~gradfit.sources.encoding.TableEncoder.widest_block`). formulaic
        encodes the rest of the formula (:meth:`block_layout`); the factor's
        rows are level codes (:meth:`transform_codes`), its dummies made only
        where a fit asks for them (:meth:`transform`). Depends on the formula
        and the levels alone, so a model file's design keeps as codes the
        factor its fit kept.

        Every other factor stays dense features, so must have at most
        :data:`~gradfit.sources.encoding.MAX_LEVELS` levels.

        Returns
        -------
        str or None
            The factor (``"C(city)"``), also set as :attr:`block`; its column is :attr:`block_column`.
        """
        from .sources.encoding import BLOCK_LEVELS, MAX_BLOCK_LEVELS, MAX_LEVELS

        categories = self.categories or {}
        self.block = self.block_column = self._layout = self._level_index = None
        best = None
        for factor, column in self._main_effects():
            levels = categories.get(factor)
            if levels is not None and len(levels) > BLOCK_LEVELS and (
                    best is None or len(levels) > len(categories[best[0]])):
                best = (factor, column)
        if best is not None and len(categories[best[0]]) > MAX_BLOCK_LEVELS:
            raise DataError(f"formula {self.formula!r}: factor {best[0]} has {len(categories[best[0]])} levels, "
                            f"more than the {MAX_BLOCK_LEVELS} gradfit encodes; is it an identifier? leave it out")
        if best is not None:
            self.block, self.block_column = best
        for factor, levels in categories.items():
            if factor != self.block and len(levels) > MAX_LEVELS:
                kept = f" (here {self.block})" if self.block else ""
                raise DataError(
                    f"formula {self.formula!r}: factor {factor} has {len(levels)} levels, more than the {MAX_LEVELS} "
                    f"gradfit encodes as dense features; only one factor of many levels{kept}, a main effect "
                    "C(column) in no interaction of a formula with an intercept, is kept as level codes: "
                    "leave the other out")
        return self.block

    def _main_effects(self):
        """``[(factor, column)]``: the terms that are one column as categories, in no interaction (made once).

        ``C(city)``, or ``city`` named bare, in a formula with an intercept,
        where formulaic keeps every other term as it was when the term is
        removed; the candidates for :attr:`block`, whose levels are learned
        from their column directly (:meth:`_learn_main_effects`).
        """
        if self._effects is None:
            formulaic = _formulaic()
            terms = list(formulaic.Formula(self.formula).rhs)
            texts = [str(term) for term in terms]
            factors = [[str(factor.expr) for factor in term.factors] for term in terms]
            effects = []
            if "1" in texts:
                effects = [(text, _factor_column(text, self.feature_variables)) for text, parts in zip(texts, factors)
                           if len(parts) == 1 and sum(text in others for others in factors) == 1]
                effects = [(text, column) for text, column in effects if column is not None]
            if effects:
                rest = [str(term) for term in formulaic.Formula(self._without(effects)).rhs]
                if rest != [text for text in texts if text not in dict(effects)]:
                    effects = []  # formulaic would code another term otherwise: learn and encode them all as before
            self._effects = effects
        return self._effects

    def _without(self, effects):
        """The formula with the terms ``effects`` (``[(factor, column)]``) removed."""
        return " - ".join([self.formula] + [factor for factor, _ in effects])

    def _learning_formula(self):
        """The formula formulaic learns from: without the main effects learned apart (:meth:`_learn_main_effects`).

        So that a factor of many levels is never made a dense one-hot block by
        formulaic while its levels are learned.
        """
        return self._without(self._main_effects())

    def _learn_main_effects(self, frame):
        """Take the levels of :meth:`_main_effects` in ``frame`` into the merged levels (:meth:`_main_effect_levels`)."""
        for factor, levels in self._main_effect_levels(frame).items():
            self._found.setdefault(factor, set()).update(levels)

    def _main_effect_levels(self, frame):
        """``{factor: levels}`` of :meth:`_main_effects` in ``frame``, found in their columns as formulaic would find them.

        ``C(column)``: the column's distinct values, missing ones left out (a
        pandas ``category`` column: its categories); a column named bare: the
        same where formulaic takes it as categorical (``object``, ``str`` or
        ``category`` dtype), else it is a number and has none.
        """
        import pandas as pd

        found = {}
        for factor, column in self._main_effects():
            values = frame[column]
            categorical = isinstance(values.dtype, pd.CategoricalDtype)
            if factor == column and not (categorical or values.dtype in ("object", "str")):
                continue
            levels = values.cat.categories if categorical else pd.unique(values.dropna())
            found[factor] = [_plain(v) for v in levels]
        return found

    def block_layout(self, frame):
        """Where the :attr:`block` factor's dummies sit among the formula's features, as for tables.

        The dict of :meth:`~gradfit.sources.encoding.TableEncoder.block_layout`
        (``column``: the factor's column among :attr:`feature_variables`;
        ``name``: that column; ``levels`` as text; ``reference`` 0, the first
        level in sorted order, as formulaic's treatment coding; ``dense_index``,
        ``level_index``: positions among the features of the dense formula
        design, so that coefficients and names are those of the dense fit),
        plus ``feature_names``, all the features' names
        (``C(city)[T.Paris]``). ``frame`` (a row suffices) lets formulaic
        build the spec of the rest of the formula (:attr:`block` removed).
        """
        if self._layout is not None:
            return self._layout
        formulaic = _formulaic()
        spec = self._learned_spec(formulaic.Formula(self._without([(self.block, self.block_column)])).rhs, frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = spec.get_model_matrix(frame.iloc[:1], na_action="ignore").model_spec
        columns = [str(name) for name in built.column_names]
        slices = {str(term): columns[cut] for term, cut in built.term_slices.items()}
        levels = self.categories[self.block]
        names, dense_index, level_index = [], [], []
        for term in formulaic.Formula(self.formula).rhs:  # the dense design's order of terms
            if str(term) == self.block:
                level_index.extend(range(len(names), len(names) + len(levels) - 1))
                names.extend(f"{self.block}[T.{level}]" for level in levels[1:])
                continue
            for name in slices[str(term)]:
                if name != INTERCEPT:
                    dense_index.append(len(names))
                    names.append(name)
        self._rest_spec = spec
        self._layout = {
            "column": self.feature_variables.index(self.block_column), "name": self.block_column,
            "n_levels": len(levels), "levels": [str(level) for level in levels], "reference": 0,
            "n_dense": len(dense_index), "dense_index": np.array(dense_index, dtype=np.intp),
            "level_index": np.array(level_index, dtype=np.intp),
            "dense_names": [names[j] for j in dense_index], "feature_names": names,
        }
        return self._layout

    def transform_codes(self, frame, where=None, targets=True):
        """``(X, codes, y, target_names)`` of a chunk, the :attr:`block` factor as level codes.

        ``X`` (n, ``n_dense``): the other features (formulaic's, the rest of
        the formula); ``codes`` (n,), int64: each row's level index, ``-1``
        an unseen level (``handle_unknown="ignore"``; else a
        :class:`DataError` naming row, column and level, ``where(row,
        column)``), ``-2`` a missing value. No dense one-hot block is made.
        """
        self.block_layout(frame)
        X, _ = self._features(self._rest_spec, frame, where)
        y, target_names = self._targets(frame) if targets else (None, None)
        return X, self._block_codes(frame, where), y, target_names

    def _block_codes(self, frame, where):
        """The :attr:`block` factor's level index of each row: -1 unseen, -2 missing."""
        import pandas as pd

        if self._level_index is None:  # made once: a hash table of the levels
            self._level_index = pd.Index(self.categories[self.block])
        values = frame[self.block_column]
        codes = np.asarray(self._level_index.get_indexer(values), dtype=np.int64)
        codes[values.isna().to_numpy()] = -2
        unseen = np.flatnonzero(codes == -1)
        if unseen.size and self.handle_unknown == "error":
            row = int(unseen[0])
            at = where(row, self.block_column) if where else f"row {row}, column {self.block_column!r}"
            raise DataError(f"{at}: category {str(values.iloc[row])!r} was not in the training data "
                            f"({len(self._level_index)} categories); to give it zero effect, use "
                            "handle_unknown='ignore' (--handle-unknown ignore)")
        return codes

    def missing_features(self, frame, missing, where):
        """:func:`frame_missing` over the formula's feature columns: ``(frame kept, counts, rows dropped)``."""
        return frame_missing(frame, self.feature_variables, missing, where)

    def check_intercept(self, fit_intercept):
        """Refuse a formula whose intercept (or its absence) differs from ``fit_intercept``."""
        has = getattr(self, "has_intercept", True)
        if has != bool(fit_intercept):
            advice = ("remove '- 1' / '+ 0', or use fit_intercept=False (--no-intercept)" if fit_intercept
                      else "use fit_intercept=True (drop --no-intercept), or write the formula with '- 1'")
            raise OptionError(
                f"formula {self.formula!r} {'has an' if has else 'has no'} intercept, but fit_intercept="
                f"{bool(fit_intercept)}; the formula's intercept is the estimator's: {advice}"
            )

    # -- the model file -------------------------------------------------------------

    def to_json(self):
        return {"formula": self.formula,
                "categories": [{"factor": f, "levels": [_plain(v) for v in levels]}
                               for f, levels in (self.categories or {}).items()]}

    @classmethod
    def from_json(cls, document, fail):
        if not isinstance(document, dict) or not isinstance(document.get("formula"), str):
            fail("'formula' must be an object with the formula's text")
        categories = {}
        for i, item in enumerate(document.get("categories", [])):
            if not (isinstance(item, dict) and isinstance(item.get("factor"), str)
                    and isinstance(item.get("levels"), list)
                    and all(isinstance(v, (str, int, float, bool)) for v in item["levels"])):
                fail(f"'formula.categories[{i}]' must be an object with a 'factor' and a list of 'levels'")
            categories[item["factor"]] = item["levels"]
        try:
            return cls(document["formula"], categories)
        except OptionError as exc:
            fail(str(exc))


def _factor_column(factor, columns):
    """The column a factor reads when it is one column as categories (``C(city)``, or ``city`` bare), else ``None``."""
    found = re.fullmatch(r"C\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", factor)
    column = found.group(1) if found else factor
    return column if column in columns else None


def frame_missing(frame, columns, missing, where):
    """``(frame kept, per-column counts, rows dropped)`` for ``missing``, or a DataError naming the first gap.

    ``where(row, column)`` is given the row's number in the table: ``frame``'s index.
    """
    present = {column: frame[column].notna().to_numpy() for column in columns}
    if missing == "drop":
        keep = np.logical_and.reduce(list(present.values())) if present else np.ones(len(frame), bool)
        counts = {column: int(np.count_nonzero(~mask)) for column, mask in present.items()}
        if not keep.all():
            frame = frame[keep]
        return frame, counts, int(np.count_nonzero(~keep))
    for column, mask in present.items():
        if not mask.all():
            row = int(frame.index[np.argmax(~mask)])  # the frame's index numbers its rows in the table
            raise DataError(f"missing value in {where(row, column)}; to leave such rows out, "
                            "use missing='drop' (--missing drop)")
    return frame, {}, 0


def _with_levels(state, levels):
    """A categorical factor's encoder state (formulaic's) with ``levels`` in place of those it found."""
    state = dict(state)
    state["categories"] = list(levels)
    contrasts = state.get("contrasts")
    if contrasts is not None:
        state["contrasts"] = type(contrasts)(contrasts=contrasts.contrasts, levels=list(levels))
    return state


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__
