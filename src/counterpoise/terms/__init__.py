"""The terms a weighting problem is made of: `base` (the Term protocol), `distances` (ChiSquare, Linear, Entropy,
Logit), `constraints` (Balance, Normalize, Bounds, MaxShare, ShareCap) and `losses` (SparseLoss).

A researcher adds a constraint by subclassing `Term`; see `MaxShare` for a complete example.
"""

from .base import Term
from .constraints import Balance, Bounds, MaxShare, Normalize, ShareCap
from .distances import ChiSquare, Entropy, Linear, Logit
from .losses import SparseLoss

__all__ = ["Balance", "Bounds", "ChiSquare", "Entropy", "Linear", "Logit", "MaxShare", "Normalize", "ShareCap",
           "SparseLoss", "Term"]
