"""Constraints on the weights: balance to targets, normalization, bounds, a cap on any unit's share and on a
subset's share."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse

from .base import Term, parameter, select


class Balance(Term):
    """Approximate balance: |(B_j' w - t_j) / s_j| <= delta_j for every column j of B.

    B holds the balance functions of the units in `rows` (its columns `column_index` only, when given), t the
    targets (Parameter "target") and s the fixed scales that make delta unit-free (target SDs for delta in SD
    units, 1 for raw units, |t| for relative tolerances). `delta=None` asks for exact balance B'w = t. The given
    matrix (a dense array, or a scipy sparse matrix: calibration's margins) is kept as `matrix` (the builder's
    matrix or a view of it, never a scaled copy or a column selection):
    backends fold the scales and the selection into their small vectors. With an `offset` o (one number per
    balanced column) the matrix holds the balance functions minus o, which the weighted arm's normalization
    (sum w = 1) makes the same constraint, ((B - o)'w - (t - o)) / s, without the cancellation a large common value
    causes; `B` gives the balance functions themselves. `tolerance` names the delta Parameter ("delta" by default;
    kernel SBW's covariate means use "mean_delta", so that sweeping "delta" moves the basis's tolerance alone).
    The dual of
    column j is the objective's sensitivity to its tolerance: the objective falls by about |dual_j| per unit of
    extra delta_j; the sign says which side binds (+: the weighted value sits at its upper limit).
    """

    name = "balance"

    def __init__(self, B, target, delta=None, scale=None, rows=None, columns=None, name=None, column_index=None,
                 offset=None, tolerance="delta"):
        self.matrix = B if scipy.sparse.issparse(B) else np.asarray(B, dtype=float)
        self.offset = None if offset is None else np.asarray(offset, dtype=float)
        self.column_index = None if column_index is None else np.asarray(column_index)
        k = self.matrix.shape[1] if column_index is None else len(self.column_index)
        self.scale = np.ones(k) if scale is None else np.asarray(scale, dtype=float)
        self.rows = rows
        self.columns = list(columns) if columns is not None else [f"b{j}" for j in range(k)]
        self.name = name or self.name
        self.target = parameter(target, f"{self.name}.target")
        self.exact = delta is None
        self.tolerance = tolerance
        self.delta = None if self.exact else parameter(np.broadcast_to(delta, (k,)), f"{self.name}.{tolerance}",
                                                       nonneg=True)

    def parameters(self):
        params = {"target": self.target}
        if not self.exact:
            params[self.tolerance] = self.delta
        return params

    @property
    def B(self) -> np.ndarray:
        """The balance functions of the balanced columns (the stored matrix itself when it has no offset and no
        column selection, else a new array)."""
        B = self.matrix if self.column_index is None else self.matrix[:, self.column_index]
        return B if self.offset is None else B + self.offset

    def scaled_target(self) -> np.ndarray:
        """(t - o) / s, the targets in the constraint's own units."""
        target = np.asarray(self.target.value, dtype=float)
        return (target if self.offset is None else target - self.offset) / self.scale

    def tolerances(self) -> np.ndarray:
        """delta per column, in the units of s (zeros for exact balance)."""
        if self.exact:
            return np.zeros(len(self.columns))
        return np.broadcast_to(np.asarray(self.delta.value, dtype=float), (len(self.columns),))

    def imbalance(self, w):
        """(B'w - t) / s: the scaled imbalance, a cvxpy expression or a numpy array."""
        if isinstance(w, np.ndarray):
            values = select(w, self.rows) @ self.matrix
            values = values if self.column_index is None else values[self.column_index]
            return values / self.scale - self.scaled_target()
        # cvxpy keeps its own copy of the constant, so the scaled matrix here is a temporary of the build
        B = self.matrix if self.column_index is None else self.matrix[:, self.column_index]
        B = B @ scipy.sparse.diags(1.0 / self.scale) if scipy.sparse.issparse(B) else B / self.scale
        target = self.target if self.offset is None else self.target - self.offset
        return B.T @ select(w, self.rows) - cp.multiply(target, 1.0 / self.scale)

    def constraints(self, w, slack=None):
        """Balance constraints; with a nonnegative `slack` vector they are loosened by it (infeasibility diagnosis)."""
        gap = self.imbalance(w)
        if self.exact and slack is None:
            return [gap == 0]
        limit = (0 if self.exact else self.delta) + (0 if slack is None else slack)
        return [gap <= limit, -gap <= limit]

    def violation(self, w):
        return float(np.max(np.abs(self.imbalance(w)) - self.tolerances(), initial=0.0))

    def dual(self, constraints):
        if constraints[0].dual_value is None:
            return None
        if len(constraints) == 1:
            return np.asarray(constraints[0].dual_value, dtype=float).ravel()
        return np.asarray(constraints[0].dual_value - constraints[1].dual_value, dtype=float).ravel()


class Normalize(Term):
    """sum_{i in rows} w_i = total."""

    name = "normalize"

    def __init__(self, total, rows=None, name=None):
        self.total = float(total)
        self.rows = rows
        self.name = name or self.name

    def constraints(self, w):
        return [cp.sum(select(w, self.rows)) == self.total]

    def violation(self, w):
        return abs(float(np.sum(select(w, self.rows))) - self.total) / abs(self.total)


class Bounds(Term):
    """lower_i <= w_i / r_i <= upper_i, with r = 1 (bounds on w) or r = d (bounds on the ratio g = w/d).

    Bounds are scalars or per-unit arrays, held in Parameters ("lower", "upper") so they can be swept
    (keep them scalar where you can: cvxpy compiles a scalar parameter faster). Violations are reported in
    units of the mean reference weight, so 1e-6 means "a millionth of a typical weight".
    """

    name = "bounds"

    def __init__(self, lower=None, upper=None, reference=None, name=None):
        self.reference = None if reference is None else np.asarray(reference, dtype=float)
        self.name = name or self.name
        self.lower = None if lower is None else parameter(lower, f"{self.name}.lower")
        self.upper = None if upper is None else parameter(upper, f"{self.name}.upper")

    def parameters(self):
        return {k: p for k, p in (("lower", self.lower), ("upper", self.upper)) if p is not None}

    def _limit(self, param):
        return param if self.reference is None else cp.multiply(param, self.reference)

    def constraints(self, w):
        cons = []
        if self.lower is not None:
            cons.append(w >= self._limit(self.lower))
        if self.upper is not None:
            cons.append(w <= self._limit(self.upper))
        return cons

    def limits(self, n):
        """The current (lower, upper) bounds on w as arrays of length n (-inf / inf where free)."""
        ref = np.ones(n) if self.reference is None else self.reference
        lo = np.full(n, -np.inf) if self.lower is None else self.lower.value * ref
        hi = np.full(n, np.inf) if self.upper is None else self.upper.value * ref
        return lo, hi

    def violation(self, w):
        lo, hi = self.limits(len(w))
        unit = float(np.mean(self.reference)) if self.reference is not None else max(float(np.mean(np.abs(w))), 1e-300)
        return max(float(np.max(lo - w, initial=0.0)), float(np.max(w - hi, initial=0.0))) / unit


class MaxShare(Term):
    """No unit carries more than `share` of the total weight: w_i <= share * sum(w).

    Also the worked example of a user-written term: a constructor, `parameters`, `constraints` and
    `violation` are all a term needs to solve on cvxpy.
    """

    name = "max_share"

    def __init__(self, share, name=None):
        self.name = name or self.name
        self.share = cp.Parameter(nonneg=True, name=f"{self.name}.share", value=float(share))

    def parameters(self):
        return {"share": self.share}

    def constraints(self, w):
        return [w <= self.share * cp.sum(w)]

    def violation(self, w):
        return max(float(np.max(w) - self.share.value * np.sum(w)), 0.0) / max(float(np.mean(np.abs(w))), 1e-300)


class ShareCap(Term):
    """The units in `mask` hold at most `share` of the total weight: mask'w <= share * sum(w) (Parameter "share").

    Written as a user writes a term: no backend knows it by name, but its constraint is affine in w, so the dual
    engine reads its row from cvxpy (`backends.affine`) and solves the problem with it.
    """

    name = "share_cap"

    def __init__(self, mask, share, name=None):
        self.name = name or self.name
        self.mask = np.asarray(mask, dtype=float)
        self.share = cp.Parameter(nonneg=True, name=f"{self.name}.share", value=float(share))

    def parameters(self):
        return {"share": self.share}

    def constraints(self, w):
        return [self.mask @ w <= self.share * cp.sum(w)]

    def violation(self, w):
        """The excess share, relative to the total weight."""
        return max(float(self.mask @ w - self.share.value * np.sum(w)), 0.0) / max(abs(float(np.sum(w))), 1e-300)
