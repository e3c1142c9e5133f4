"""Real regression data sets that ship inside installed packages, and synthetic ones of known conditioning.

Every set here loads offline: statsmodels bundles its data sets as CSV files
inside the package, and scikit-learn's ``load_diabetes`` and ``load_linnerud``
read files inside ``sklearn/datasets/data`` (its ``fetch_*`` loaders download,
and are not used). The tests of issue 11 fit each set with gradfit's defaults
and compare with independent oracles (:mod:`tests.oracles`).

The difficulty of a least-squares problem for first-order methods is the
condition number of its Hessian in the units training runs in. With
standardized features and an intercept that Hessian is ``2·diag(C, 1)``, ``C``
the features' correlation matrix, so the *standardized condition number* is

    κ = max(λmax(C), 1) / min(λmin(C), 1).

:attr:`Dataset.condition_number` computes it (``python -m tests.realdata``
prints the table); standard-normal features have κ ≈ 1. Measured:

===============  ==========  =======  ===============  ==========  =======
set              N × d       κ        set              N × d       κ
===============  ==========  =======  ===============  ==========  =======
longley          16 × 6      1.22e4   grunfeld         220 × 3     5.29
stackloss        21 × 3      10.3     macrodata        203 × 10    3.04e4
scotland         32 × 7      623      statecrime       51 × 5      20.4
star98           303 × 20    1.3e5    committee        20 × 5      11.8
fair             6366 × 8    31.3     randhie          20190 × 9   5.33
ccard            72 × 4      79       diabetes         442 × 10    470
copper           25 × 5      315      diabetes_scaled  442 × 10    470
cpunish          17 × 6      23       linnerud_*       20 × 3      8.96
engel            235 × 1     1        synthetic_1eK    400 × 8     10^K
spector          32 × 3      2.34
===============  ==========  =======  ===============  ==========  =======
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """One regression problem: ``y ≈ X @ coef + intercept``.

    Attributes
    ----------
    name : str
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,), float64
    feature_names : tuple of str
        Column names safe for CSV/Parquet headers.
    source : str
        Where the data come from (package and loader).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple
    source: str

    @property
    def condition_number(self):
        """The standardized condition number κ (see the module docstring)."""
        return standardized_condition_number(self.X)

    def frame(self):
        """A pandas DataFrame of the features and a ``target`` column, for writing files."""
        import pandas as pd

        frame = pd.DataFrame(self.X, columns=list(self.feature_names))
        frame["target"] = self.y
        return frame


def standardized_condition_number(X):
    """κ of the standardized least-squares Hessian with an intercept: ``cond(diag(C, 1))``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)

    Returns
    -------
    float
        ``inf`` when a feature is constant or the features are collinear.
    """
    spread = X.std(axis=0)
    if np.any(spread == 0):
        return float("inf")
    Z = (X - X.mean(axis=0)) / spread
    eigenvalues = np.linalg.eigvalsh(Z.T @ Z / len(Z))
    low, high = min(eigenvalues[0], 1.0), max(eigenvalues[-1], 1.0)
    return float("inf") if low <= 0 else float(high / low)


def _sanitize(name):
    return "".join(c if c.isalnum() else "_" for c in str(name))


def _from_frame(name, frame, target, features, source):
    features = list(features)
    data = frame[features + [target]].astype(float).dropna()
    return Dataset(
        name=name,
        X=np.ascontiguousarray(data[features].to_numpy(dtype=np.float64)),
        y=data[target].to_numpy(dtype=np.float64).copy(),
        feature_names=tuple(_sanitize(f) for f in features),
        source=source,
    )


def _statsmodels(module, target, features=None, transform=None):
    """A loader for ``statsmodels.datasets.<module>`` with ``target`` regressed on ``features`` (default: the rest)."""

    def load():
        import statsmodels.datasets as smd

        frame = getattr(smd, module).load_pandas().data.copy()
        if transform is not None:
            frame = transform(frame)
        names = [c for c in frame.columns if c != target] if features is None else features
        return _from_frame(module, frame, target, names, f"statsmodels.datasets.{module}")

    return load


def _star98(frame):
    # The endogenous pair (pupils above/below the median) as one numeric target: the share above.
    frame["share_above"] = frame["NABOVE"] / (frame["NABOVE"] + frame["NBELOW"])
    return frame.drop(columns=["NABOVE", "NBELOW"])


def _diabetes(scaled):
    def load():
        from sklearn.datasets import load_diabetes

        bunch = load_diabetes(scaled=scaled)
        return Dataset(
            name="diabetes_scaled" if scaled else "diabetes",
            X=np.ascontiguousarray(bunch.data, dtype=np.float64),
            y=np.asarray(bunch.target, dtype=np.float64),
            feature_names=tuple(_sanitize(f) for f in bunch.feature_names),
            source=f"sklearn.datasets.load_diabetes(scaled={scaled})",
        )

    return load


def _linnerud(target):
    def load():
        from sklearn.datasets import load_linnerud

        bunch = load_linnerud()
        column = list(bunch.target_names).index(target)
        return Dataset(
            name=f"linnerud_{target.lower()}",
            X=np.asarray(bunch.data, dtype=np.float64),
            y=np.asarray(bunch.target[:, column], dtype=np.float64),
            feature_names=tuple(bunch.feature_names),
            source=f"sklearn.datasets.load_linnerud (target {target})",
        )

    return load


#: name -> loader; every one reads files inside an installed package (no network)
LOADERS = {
    "longley": _statsmodels("longley", "TOTEMP"),
    "stackloss": _statsmodels("stackloss", "STACKLOSS"),
    "scotland": _statsmodels("scotland", "YES"),
    "star98": _statsmodels("star98", "share_above", transform=_star98),
    "fair": _statsmodels("fair", "affairs"),
    "ccard": _statsmodels("ccard", "AVGEXP"),
    "copper": _statsmodels("copper", "WORLDCONSUMPTION"),
    "cpunish": _statsmodels("cpunish", "EXECUTIONS"),
    "engel": _statsmodels("engel", "foodexp"),
    "spector": _statsmodels("spector", "GRADE"),
    "grunfeld": _statsmodels("grunfeld", "invest", ["value", "capital", "year"]),
    # realint = tbilrate − infl up to rounding: left out, else the design is (nearly) rank-deficient
    "macrodata": _statsmodels(
        "macrodata", "realgdp",
        ["realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "tbilrate", "unemp", "pop", "infl"],
    ),
    "statecrime": _statsmodels("statecrime", "murder", ["poverty", "hs_grad", "urban", "white", "single"]),
    "committee": _statsmodels("committee", "BILLS104"),
    "randhie": _statsmodels("randhie", "mdvis"),
    "diabetes": _diabetes(scaled=False),
    "diabetes_scaled": _diabetes(scaled=True),
    "linnerud_weight": _linnerud("Weight"),
    "linnerud_waist": _linnerud("Waist"),
    "linnerud_pulse": _linnerud("Pulse"),
}

REAL = tuple(LOADERS)

#: standardized condition numbers of the synthetic sets
SYNTHETIC_CONDITIONS = (1e2, 1e4, 1e6, 1e8)
SYNTHETIC = tuple(f"synthetic_1e{int(round(np.log10(c)))}" for c in SYNTHETIC_CONDITIONS)


def synthetic(condition, n_samples=400, n_features=8, noise=0.5, seed=0):
    """Features whose standardized condition number is exactly ``condition`` (to rounding).

    The features' correlation matrix ``C`` gets eigenvalues spaced
    geometrically from ``λmin`` to ``λmax = condition·λmin`` with mean 1
    (``scipy.stats.random_correlation``, unit diagonal); then
    ``Z = W · C^{1/2}`` with ``W`` centred normal noise whitened so that
    ``WᵀW/n = I``, so ``Z`` is centred with ``ZᵀZ/n = C`` exactly, and
    ``X = Z·spread + offset`` puts each feature in units of its own (which
    standardization removes again). ``y = X @ coef + 3 + noise``.

    Parameters
    ----------
    condition : float, at least 1
    n_samples, n_features : int
    noise : float
        Standard deviation of the noise relative to that of ``X @ coef``.
    seed : int

    Returns
    -------
    Dataset
    """
    from scipy.stats import random_correlation

    rng = np.random.default_rng(seed)
    eigenvalues = np.geomspace(1.0, float(condition), n_features)
    eigenvalues *= n_features / eigenvalues.sum()
    correlation = random_correlation.rvs(eigenvalues, random_state=rng, tol=1e-12)
    correlation = (correlation + correlation.T) / 2
    values, vectors = np.linalg.eigh(correlation)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    raw = rng.normal(size=(n_samples, n_features))
    raw -= raw.mean(axis=0)
    # whiten: rawᵀraw/n = LLᵀ, so W = raw·L⁻ᵀ has WᵀW/n = I exactly (to rounding; L is well conditioned)
    lower = np.linalg.cholesky(raw.T @ raw / n_samples)
    Z = raw @ (np.linalg.inv(lower).T @ root)
    spread = 10.0 ** rng.uniform(-1, 2, size=n_features)
    offset = rng.normal(size=n_features) * spread * 2
    X = Z * spread + offset
    coef = rng.normal(size=n_features) / spread
    signal = X @ coef
    y = signal + 3.0 + noise * signal.std() * rng.normal(size=n_samples)
    exponent = int(round(np.log10(condition)))
    return Dataset(
        name=f"synthetic_1e{exponent}",
        X=np.ascontiguousarray(X),
        y=y,
        feature_names=tuple(f"f{j}" for j in range(n_features)),
        source=f"tests.realdata.synthetic(condition=1e{exponent}, seed={seed})",
    )


@functools.lru_cache(maxsize=None)
def load(name):
    """The data set called ``name`` (one of :data:`REAL` or :data:`SYNTHETIC`), loaded once per session."""
    if name in LOADERS:
        return LOADERS[name]()
    if name in SYNTHETIC:
        return synthetic(float("1" + name.split("_1")[1]))
    raise KeyError(f"unknown data set {name!r}; valid: {', '.join(REAL + SYNTHETIC)}")


def condition_table():
    """``{name: (n_samples, n_features, κ)}`` for every set."""
    return {
        name: (load(name).X.shape[0], load(name).X.shape[1], load(name).condition_number)
        for name in REAL + SYNTHETIC
    }


if __name__ == "__main__":
    for name, (rows, columns, kappa) in condition_table().items():
        print(f"{name:18s} {rows:6d} x {columns:2d}   standardized condition number {kappa:.3g}")
