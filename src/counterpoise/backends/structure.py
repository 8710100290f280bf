"""Recognize the separable quadratic program that the fast QP backends (dual, osqp) solve.

    minimize   sum_i (w_i - c_i)^2 / s_i
    subject to, for each group g of units (an arm; or all units):
               sum_{i in g} w_i = T_g                       (when the group has a Normalize term)
               |(B_j' w_g - t_j) / r_j| <= delta_j           (each Balance term on the group; = 0 when exact)
               lo_i <= w_i <= hi_i

This is SBW and kernel SBW (c = d / sum d, s = d / mean d, lo = 0) and linear (GREG) calibration
(c = d, s = 2d, optional ratio or weight bounds). Groups share no constraint, so each is solved on
its own. Parameter values (targets, tolerances, bounds) are read when a solve starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..terms import Balance, Bounds, ChiSquare, Normalize


class UnsupportedProblem(InputError):
    """This backend cannot solve a problem with these terms; the cvxpy backend can."""


@dataclass
class Group:
    """The units `rows` (None: all) with their normalization total (None: free) and balance terms."""

    rows: np.ndarray | None
    total: float | None = None
    balance: list = field(default_factory=list)

    def select(self, x):
        return x if self.rows is None else x[self.rows]

    def constraint_matrix(self):
        """The scaled balance rows of this group, stacked: (n_g, k) with targets t / r and tolerances."""
        if not self.balance:
            return None, np.zeros(0), np.zeros(0)
        B = np.hstack([t._scaled for t in self.balance]) if len(self.balance) > 1 else self.balance[0]._scaled
        target = np.concatenate([t.target.value / t.scale for t in self.balance])
        delta = np.concatenate([np.zeros(len(t.columns)) if t.exact else np.asarray(t.delta.value, dtype=float)
                                for t in self.balance])
        return B, target, delta


@dataclass
class SeparableQP:
    dispersion: ChiSquare
    bounds: list
    groups: list
    n: int

    def box(self):
        """Current lower and upper bounds on w (arrays of length n, +-inf where free)."""
        lo, hi = np.full(self.n, -np.inf), np.full(self.n, np.inf)
        for term in self.bounds:
            ref = np.ones(self.n) if term.reference is None else term.reference
            if term.lower is not None:
                lo = np.maximum(lo, term.lower.value * ref)
            if term.upper is not None:
                hi = np.minimum(hi, term.upper.value * ref)
        return lo, hi


def _same_rows(a, b):
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and np.array_equal(a, b)


def separable_qp(terms, n, backend) -> SeparableQP:
    """The problem as a SeparableQP, or UnsupportedProblem naming the term `backend` cannot handle."""
    dispersion, bounds, normalize, balance = [], [], [], []
    for term in terms:
        kind = type(term)
        if kind is ChiSquare:
            dispersion.append(term)
        elif kind is Bounds:
            bounds.append(term)
        elif kind is Normalize:
            normalize.append(term)
        elif kind is Balance:
            balance.append(term)
        else:
            raise UnsupportedProblem(f"backend {backend!r} solves chi-square dispersion with balance, normalization and "
                                     f"bounds; term {term.name!r} ({kind.__name__}) needs backend='cvxpy'")
    if len(dispersion) != 1:
        raise UnsupportedProblem(f"backend {backend!r} needs exactly one chi-square dispersion term, found {len(dispersion)}")
    groups = [Group(rows=t.rows, total=t.total) for t in normalize] or [Group(rows=None)]
    for term in balance:
        group = next((g for g in groups if _same_rows(g.rows, term.rows)), None)
        if group is None:
            raise UnsupportedProblem(f"backend {backend!r}: balance term {term.name!r} covers rows that match no "
                                     "normalized group")
        group.balance.append(term)
    covered = sum(n if g.rows is None else len(g.rows) for g in groups)
    if covered != n:
        raise UnsupportedProblem(f"backend {backend!r}: the normalized groups cover {covered} of {n} units")
    return SeparableQP(dispersion=dispersion[0], bounds=bounds, groups=groups, n=n)
