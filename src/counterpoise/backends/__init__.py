"""Backends: each reads a problem's terms (through `forms`) and returns a `RawResult`; none imports `problem` or
`families`. Importing a backend's module registers it (`base.register`); `BACKENDS` and `auto_order()` are read
from that registry by the problem, the command line and the README's table."""

# Importing a module registers its backend; this order is the README table's.
from . import cvxpy_backend, dual, osqp_backend, calibration, prox  # noqa: F401  isort:skip
from .base import BACKENDS, Backend, Certificate, RawResult, auto_order, markdown_table
from .calibration import CalibrationBackend
from .cvxpy_backend import CvxpyBackend
from .dual import DualBackend
from .osqp_backend import OsqpBackend
from .prox import ProxBackend

AUTO_ORDER = auto_order()

__all__ = ["AUTO_ORDER", "BACKENDS", "Backend", "CalibrationBackend", "Certificate", "CvxpyBackend", "DualBackend",
           "OsqpBackend", "ProxBackend", "RawResult", "auto_order", "markdown_table"]
