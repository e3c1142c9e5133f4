"""gradfit: linear models fitted by gradient descent, exactly and honestly.

>>> import numpy as np, gradfit
>>> X = np.array([[1., 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6], [4, 5, 6, 7]])
>>> model = gradfit.GDRegressor().fit(X, [2., 4, 6, 8])
>>> np.round(model.predict([[5., 6, 7, 8]]), 6)
array([10.])

The names below are imported when first used (PEP 562): ``import gradfit``
itself loads nothing heavy, so the command line can set up its Ctrl-C
handling before scikit-learn, SciPy or NumPy load (:mod:`gradfit.__main__`).
"""

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "ConvergenceWarning": "sklearn.exceptions",
    "ClusterError": "gradfit.errors",
    "DataError": "gradfit.errors",
    "DivergenceError": "gradfit.errors",
    "GradfitError": "gradfit.errors",
    "IllConditionedError": "gradfit.errors",
    "ModelFileError": "gradfit.errors",
    "OptionError": "gradfit.errors",
    "CheckpointError": "gradfit.checkpoint",
    "GDRegressor": "gradfit.estimator",
    "load": "gradfit.estimator",
    "ArraySource": "gradfit.sources",
    "FileSource": "gradfit.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gradfit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # imported once
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
