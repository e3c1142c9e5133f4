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
        self._first = True
        self._chunks_learned = 0

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

    def _chunk_state(self, frame):
        """``(formulaic's materialized matrices, {factor: levels found})`` of one chunk; stateful transforms refused."""
        materialized = self._materialize(frame)
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

    def learn_encoding(self, frame, known=None):
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
        encoded = None
        if known and self._pass_spec is not None:
            encoded = self._encode_pending(self._pass_spec, frame, known, strict=True)
        if encoded is not None:
            (X, names), lhs, found = encoded, self._lhs(frame), known
        else:
            materialized, found = self._chunk_state(frame)
            self._pass_spec = materialized.model_spec.rhs
            X, names = self._encode_pending(self._pass_spec, frame, found)
            lhs = materialized.lhs
        y = np.asfortranarray(np.asarray(lhs, dtype=np.float64))
        return X, y, names, [str(c) for c in lhs.columns], {factor: list(levels) for factor, levels in found.items()}

    def _encode_pending(self, rhs, frame, levels, strict=False):
        """``(X, names)`` of ``frame`` by the spec ``rhs`` with each factor's ``levels`` after the pending reference.

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
        return np.asfortranarray(np.asarray(matrix, dtype=np.float64)[:, keep]), [names[j] for j in keep]

    def finish(self):
        """Fix the merged levels (sorted): every chunk is encoded with them from now on."""
        self.categories = {factor: sorted(levels) for factor, levels in self._found.items()}
        self._spec = self._pass_spec = None

    def _materialize(self, frame):
        formulaic = _formulaic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return formulaic.model_matrix(self.formula, frame, na_action="ignore")
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
            formulaic = _formulaic()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    spec = formulaic.model_matrix(
                        formulaic.Formula(self.formula).rhs, frame, na_action="ignore").model_spec
                except Exception as exc:
                    raise DataError(f"formula {self.formula!r}: {_one_line(exc)}") from None
            state = dict(spec.encoder_state)
            for factor, levels in (self.categories or {}).items():
                if factor in state:
                    kind, old = state[factor]
                    state[factor] = (kind, _with_levels(old, levels))
            self._spec = spec.update(encoder_state=state, structure=None)
        return self._spec

    # -- encoding -------------------------------------------------------------------

    def transform(self, frame, where=None, targets=True):
        """``(X, y, feature_names, target_names)`` of a chunk; ``y`` is None without ``targets``.

        ``where(row, column)`` names a row for the message about an unseen level.
        """
        spec = self._rhs_spec(frame)
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
        y = target_names = None
        if targets:
            formulaic = _formulaic()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lhs = formulaic.model_matrix(formulaic.Formula(self.formula).lhs, frame, na_action="ignore")
            target_names = [str(c) for c in lhs.columns]
            y = np.asfortranarray(np.asarray(lhs, dtype=np.float64))
        return X, y, names, target_names

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
