"""gradfit: linear models fitted by gradient descent, exactly and honestly.

>>> import numpy as np, gradfit
>>> X = np.array([[1., 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6], [4, 5, 6, 7]])
>>> model = gradfit.GDRegressor().fit(X, [2., 4, 6, 8])
>>> np.round(model.predict([[5., 6, 7, 8]]), 6)
array([10.])
"""

__version__ = "0.1.0"

from sklearn.exceptions import ConvergenceWarning

from .errors import (
    ClusterError,
    DataError,
    DivergenceError,
    GradfitError,
    IgnoredOptionWarning,
    IllConditionedError,
    ModelFileError,
    OptionError,
)
from .checkpoint import CheckpointError
from .estimator import GDRegressor, load
from .estimator_cv import GDRegressorCV
from .sources import ArraySource, FileSource

__all__ = [
    "ArraySource",
    "ConvergenceWarning",
    "IgnoredOptionWarning",
    "DataError",
    "DivergenceError",
    "FileSource",
    "GDRegressor",
    "GDRegressorCV",
    "GradfitError",
    "IllConditionedError",
    "CheckpointError",
    "ClusterError",
    "ModelFileError",
    "OptionError",
    "load",
]
