"""Backends: each reads a problem's terms and returns a `RawResult`; none imports `problem` or `families`."""

from .base import RawResult
from .calibration import CalibrationBackend
from .cvxpy_backend import CvxpyBackend
from .dual import DualBackend
from .osqp_backend import OsqpBackend
from .prox import ProxBackend

BACKENDS = {"cvxpy": CvxpyBackend, "dual": DualBackend, "osqp": OsqpBackend, "calibration": CalibrationBackend,
            "prox": ProxBackend}

#: What backend="auto" tries, fastest first; each is skipped where it cannot solve the problem exactly.
AUTO_ORDER = ("dual", "calibration", "prox", "cvxpy")

__all__ = ["AUTO_ORDER", "BACKENDS", "CalibrationBackend", "CvxpyBackend", "DualBackend", "OsqpBackend", "ProxBackend", "RawResult"]
