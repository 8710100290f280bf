"""Backends: each reads a problem's terms and returns a `RawResult`; none imports `problem` or `families`."""

from .base import RawResult
from .cvxpy_backend import CvxpyBackend
from .osqp_backend import OsqpBackend
from .dual import DualBackend

BACKENDS = {"cvxpy": CvxpyBackend, "dual": DualBackend, "osqp": OsqpBackend}

__all__ = ["BACKENDS", "CvxpyBackend", "DualBackend", "OsqpBackend", "RawResult"]
