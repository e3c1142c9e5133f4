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

__version__ = "0.1.0"

_ERRORS = ("ClusterError", "DataError", "DivergenceError", "GradfitError", "IgnoredOptionWarning",
           "IllConditionedError", "ModelFileError", "OptionError")

__all__ = sorted(_ERRORS + ("ConvergenceWarning", "CheckpointError", "GDRegressor", "GDRegressorCV", "load",
                            "ArraySource", "FileSource"))


def __getattr__(name):
    # Literal imports only (no importlib): the package imports nothing a file could name.
    if name in _ERRORS:
        from . import errors as module
    elif name == "CheckpointError":
        from . import checkpoint as module
    elif name in ("GDRegressor", "load"):
        from . import estimator as module
    elif name == "GDRegressorCV":
        from . import estimator_cv as module
    elif name in ("ArraySource", "FileSource"):
        from . import sources as module
    elif name == "ConvergenceWarning":
        from sklearn import exceptions as module
    else:
        raise AttributeError(f"module 'gradfit' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # imported once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
