"""Regularized calibrated propensity scores (balnet) on adelie: `balnet`, `cv_balnet`, and their cvxpy references."""

from .cv import BalnetCV, cv_balnet
from .fit import balnet
from .model import BalnetFit

__all__ = ["BalnetCV", "BalnetFit", "balnet", "cv_balnet"]
