"""Regularized calibrated propensity scores (balnet) on adelie: `balnet`, `cv_balnet`, `boot_balnet`, and their cvxpy
references."""

from .boot import boot_balnet
from .cv import BalnetCV, cv_balnet
from .fit import balnet
from .model import BalnetFit

__all__ = ["BalnetCV", "BalnetFit", "balnet", "boot_balnet", "cv_balnet"]
