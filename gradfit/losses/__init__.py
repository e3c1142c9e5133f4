"""Pointwise losses on (prediction, target), one file each.

The shared base and the capabilities every loss declares are in
:mod:`gradfit.losses.base`; :mod:`gradfit.registry` lists the losses users
can name. All are scaled so that they agree with the squared error
``(p − y)²`` for small residuals (the absolute error and the pinball loss
in slope: ``|p − y|``).
"""

from .absolute_error import AbsoluteError
from .base import Loss
from .huber import Huber
from .quantile import Quantile
from .squared_error import SquaredError

__all__ = ["AbsoluteError", "Huber", "Loss", "Quantile", "SquaredError"]
