"""The Term protocol: one mathematical idea of a weighting problem (a distance, a constraint, a loss).

A term knows its cvxpy form (`objective(w)`, `constraints(w)`, written with `cvxpy.Parameter`s so that a path is
compiled once), its value at numpy weights (`value(w)`), how far numpy weights violate it (`violation(w)`, in the
term's own scaled units: the post-solve check compares these with 1e-6), its per-column tolerances where it has
them (`tolerances()`), its dual values read off its solved cvxpy constraints (`dual`), and which parameter values
it refuses before any backend runs (`check()`). Backends read terms;
terms never know about backends. The defaults mean "contributes nothing", so a user's term writes only what
applies to it (see `constraints.MaxShare` for a complete example).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np


class Term:
    """Base class. Subclasses override what applies to them."""

    name = "term"

    def parameters(self) -> dict[str, cp.Parameter]:
        """The swept quantities of this term, by short name (e.g. {"delta": ...})."""
        return {}

    def objective(self, w) -> cp.Expression | None:
        """This term's contribution to the objective (a convex cvxpy expression), or None."""
        return None

    def constraints(self, w) -> list:
        """This term's cvxpy constraints on the weight vector `w` (a cvxpy expression of length n)."""
        return []

    def value(self, w: np.ndarray) -> float:
        """The objective contribution at numpy weights `w`."""
        return 0.0

    def objective_scale(self) -> float | None:
        """The objective's natural magnitude (its value at w = 0), so a backend can solve it at scale 1; None
        for a term that does not know it (a backend then relies on the other objective terms)."""
        return None

    def violation(self, w: np.ndarray) -> float:
        """Largest violation of this term's constraints at numpy weights `w` (0 when satisfied)."""
        return 0.0

    def check(self) -> None:
        """Raise InputError when the current parameter values make this term's problem meaningless (every backend
        would return a degenerate answer); called before any backend solves."""

    def tolerances(self) -> np.ndarray | None:
        """Per-column tolerances of a constraint that allows some slack (0 where it must hold exactly), or None."""
        return None

    def dual(self, constraints) -> np.ndarray | None:
        """Per-column dual values read off this term's solved cvxpy `constraints`, where that means something."""
        return None


def select(w, rows):
    """The weights of the units `rows` (None: every unit)."""
    return w if rows is None else w[rows]


def parameter(value, name, nonneg=False):
    """A cvxpy Parameter holding `value` (an array or a scalar)."""
    value = np.asarray(value, dtype=float)
    return cp.Parameter(value.shape, name=name, value=value, nonneg=nonneg)
