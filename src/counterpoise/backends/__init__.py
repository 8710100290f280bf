"""Backends: each reads a problem's terms and returns a `RawResult`; none imports `problem` or `families`."""

from .base import RawResult
from .cvxpy_backend import CvxpyBackend

BACKENDS = {"cvxpy": CvxpyBackend}

__all__ = ["BACKENDS", "CvxpyBackend", "RawResult"]
