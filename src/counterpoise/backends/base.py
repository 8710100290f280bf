"""What every backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RawResult:
    """A backend's answer before counterpoise checks it: weights plus the solver's own account."""

    weights: np.ndarray
    status: str                  # "optimal", "inaccurate", "infeasible", "unbounded" or "failed"
    solver: str
    solve_time: float            # seconds in the solver call (compile included for cvxpy's first solve)
    duals: dict = field(default_factory=dict)   # term name -> per-column dual values
    iterations: int | None = None
    message: str = ""
    info: dict = field(default_factory=dict)
