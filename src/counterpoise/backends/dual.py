"""The low-dimensional dual of the separable QP (SBW, kernel SBW, linear calibration), by Newton.

For one group of units (see `forms.SeparableQP`) with constraint rows A = [B_s', 1'] (the scaled
balance columns and, when the group is normalized, the sum), targets T and tolerances delta (0 for
equalities), the primal  min sum_i (w_i - c_i)^2 / s_i  s.t. |A w - T| <= delta, lo <= w <= hi  has the dual

    minimize  D(y) = sum_i phi_i((A'y)_i) - T'y + sum_j delta_j |y_j|,
    phi_i(v) = max_{lo_i <= w <= hi_i} v w - (w - c_i)^2 / s_i,   attained at w_i(v) = clip(c_i + s_i v / 2, lo_i, hi_i),

a convex piecewise-quadratic function of k + 1 variables (k balance columns plus the normalization),
whatever the number of units. Its gradient is A w(y) - T + delta * sign(y) and its generalized Hessian
A_I diag(s_I / 2) A_I' sums over the units I strictly inside their bounds. We minimize it by a proximal
semismooth Newton method: each step minimizes the quadratic model of the smooth part at y plus the exact l1 term
sum_j delta_j |y_j| (a (k+1)-variable problem, solved exactly by `l1_qp`), so a multiplier
may change sign within a step, then backtracks (Armijo on D, which is convex along the step). Once the signs
settle this is the Newton step on the nonzero multipliers, and convergence is quadratic. Each step
costs one pass over the n x k basis for A'y, one for A w and one product for the Hessian, O(n k^2); a
path warm-starts from the previous dual point. The weights are w(y*); the result records the relative
duality gap (P(w) + D(y)) / P(w) and the largest violation of the balance and sum constraints.

The same dual serves SBW / kernel SBW (c = d / sum d, s = d / mean d, lo = 0, sum fixed) and linear
(GREG) calibration (c = d, s = 2d, no sum row unless given, optional bounds on w or on w / d).
Infeasibility is certified by a Farkas ray, checked at every Newton step: with r the balance part of y and
u = B_s r (one value per unit), the balance constraints cannot hold for any w in the box (with its sum) when

    sigma(u) - T_b'r + delta_b'|r| < 0,    sigma(u) = max { u'w : lo <= w <= hi, sum w = total },

since every feasible w would give r'(B_s'w - T_b) <= sigma(u) - T_b'r < -delta_b'|r|, while |B_s'w - T_b| <= delta_b
forces r'(B_s'w - T_b) >= -delta_b'|r|. When the problem is infeasible the dual iterates run off along such a
ray, so y itself becomes a certificate within a few steps, where a bound on D would take many. The same r gives
(T_b'r - sigma(u)) / ||r||_1, a delta below which (one tolerance for every balance column, in the scaled units)
no weights exist. The older test, -D(y) above the largest primal objective over the box, is kept as a fallback.

A cold solve of a large normalized group (SUBSAMPLE_FROM units or more, no warm start) first solves the same dual on
a seeded subsample of SUBSAMPLE units and starts from its point, rescaled: at 1M rows (kernel SBW's defaults) the
full Newton then takes 5 steps instead of 11. The optimum, and so the weights, are the same.
"""

from __future__ import annotations

import time

import numpy as np

from . import l1_qp
from .base import RawResult, register
from .forms import SeparableQP, balance_duals, split


class Units:
    """One group's units in memory: the dispersion's centres c and scales s, the box [lo, hi] and the constraint
    rows A' = [B / r, 1] (`rows.Rows`, no copy of B). `at(y)` is their view of a dual point; the dual's loop
    (`GroupDual.solve`) reads the units only through these two classes, so that units held elsewhere (the
    partitions of a Dask collection: `partitioned_dual.PartitionedUnits`) run the same loop."""

    def __init__(self, c, s, lo, hi, rows):
        self.c, self.s, self.lo, self.hi, self.rows = c, s, lo, hi, rows
        self.k, self.size = rows.p, len(c)

    def at(self, y) -> "Point":
        return Point(self, self.rows.dot(y))

    def box_weights(self, v):
        """w(v) = clip(c + s v / 2, lo, hi), and which units are strictly inside their bounds."""
        free = self.c + self.s * v / 2
        return np.clip(free, self.lo, self.hi), (free > self.lo) & (free < self.hi)

    def all_hessian(self):
        """A diag(s / 2) A' over every unit (the metric when every unit is at a bound)."""
        return self.rows.gram(self.s / 2)

    def upper_bound(self, total):
        """The largest primal objective over {lo <= w <= hi, sum w = total} (total None: no sum constraint)."""
        lo, hi = self.lo, self.hi
        if total is not None and np.all(np.isfinite(lo)):
            hi = np.minimum(hi, total - (lo.sum() - lo))
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            return np.inf
        return float(np.sum(np.maximum((lo - self.c) ** 2, (hi - self.c) ** 2) / self.s))

    def support(self, u, total):
        """sigma(u) = max u'w over lo <= w <= hi (and sum w = total unless None): the lowest units at their lower
        bounds, the remaining total given to the units of largest u up to their upper bounds."""
        lo, hi = self.lo, self.hi
        if total is None:
            return float(np.sum(np.where(u > 0, hi * u, np.where(u < 0, lo * u, 0.0))))
        if not np.all(np.isfinite(lo)):
            return np.inf
        remaining = total - lo.sum()
        if np.all(np.isinf(hi)):
            return float(lo @ u + remaining * u.max())
        order = np.argsort(-u)
        room = (hi - lo)[order]
        fill = np.clip(remaining - (np.cumsum(room) - room), 0.0, room)
        return float(lo @ u + fill @ u[order])

    def subsample(self, m, seed=0):
        """(the units of a seeded random subsample of m of them, with c, lo and hi multiplied by n / m so that
        the subsample's weights keep the group's total, and that ratio n / m)."""
        rows = np.sort(np.random.default_rng(seed).choice(self.size, m, replace=False))
        ratio = self.size / m
        return Units(self.c[rows] * ratio, self.s[rows], self.lo[rows] * ratio, self.hi[rows] * ratio,
                     self.rows.subset(rows)), ratio


class Point:
    """The units' view of a dual point: v = A'y, the weights w(v), phi = v'w - sum (w - c)^2 / s (the dual's
    smooth part less T'y) and the primal objective, with A w, the Hessian and the support function on demand."""

    def __init__(self, units, v):
        self.units, self.v = units, v
        self.w, self.inside = units.box_weights(v)
        self.P = float(np.sum((self.w - units.c) ** 2 / units.s))
        self.phi = float(v @ self.w) - self.P
        self._Aw = None

    def Aw(self):
        """A w: the scaled balance values and the sum."""
        if self._Aw is None:
            self._Aw = self.units.rows.tdot(self.w)
        return self._Aw

    def hessian(self):
        """A diag(s/2 on the units inside their bounds) A' over every dual variable."""
        return self.units.rows.gram(np.where(self.inside, self.units.s / 2, 0.0))

    def support(self, shift, total):
        """sigma(v - shift) (see `Units.support`)."""
        return self.units.support(self.v - shift, total)

    def line(self, step) -> "Line":
        return Line(self, self.units.rows.dot(step))

    def weights(self):
        return self.w


class Line:
    """The points y + alpha step of a line search from a point: v + alpha A'step, A'step computed once."""

    def __init__(self, point, direction):
        self.point, self.direction = point, direction

    def at(self, alpha) -> Point:
        return Point(self.point.units, self.point.v + alpha * self.direction)


class GroupDual:
    """The dual of one group: its units (`Units`, or units held elsewhere with the same interface) with the
    targets T, tolerances delta and, when normalized, the total of the sum row."""

    def __init__(self, units, target, delta, total):
        self.units = units
        self.k = units.k
        self.normalized = total is not None
        self.T = np.concatenate([target, [total]]) if self.normalized else np.asarray(target, dtype=float)
        self.delta = np.concatenate([delta, [0.0]]) if self.normalized else np.asarray(delta, dtype=float)
        self.total = total

    def value(self, y, point):
        """D(y), given the units' point at y."""
        return point.phi - self.T @ y + self.delta @ np.abs(y)

    def violation(self, Aw):
        """Largest violation of |A w - T| <= delta, given A w (scaled balance units; the sum relative to its total)."""
        excess = np.abs(Aw - self.T) - self.delta
        if self.normalized:
            excess[-1] /= max(abs(self.T[-1]), 1e-300)
        return float(max(np.max(excess, initial=0.0), 0.0))

    def farkas(self, y, point):
        """(certified, delta bound): whether y's balance part is a ray certifying infeasibility (see the module),
        and the common scaled delta below which no weights exist according to it (NaN when not certified)."""
        r = y[:self.k]
        if not np.any(r):
            return False, float("nan")
        sigma = point.support(y[-1] if self.normalized else 0.0, self.total)
        T, delta = self.T[:self.k], self.delta[:self.k]
        margin = sigma - T @ r + delta @ np.abs(r)
        scale = abs(sigma) + abs(T @ r) + delta @ np.abs(r)
        if not margin < -1e-9 * max(scale, 1e-300):
            return False, float("nan")
        return True, float((T @ r - sigma) / np.abs(r).sum())

    # ---- Newton ----

    def solve(self, y, tol=1e-10, max_iter=200, factor=None):
        """Minimize D from `y`; returns (w, y, status, iterations, relative gap, violation, factor).

        `factor` is a generalized Hessian kept from an earlier solve of a nearby problem (a path): while the residual
        falls tenfold per step, the first steps re-use it (chord steps, O(n k) instead of O(n k^2)); from the first
        fresh Hessian on, every step is a full Newton step. The stopping test is exact either way. The Hessian last
        used is returned for the next solve. w is the units' weights (an array in memory).
        """
        point = self.units.at(y)
        D = self.value(y, point)
        bound = self.units.upper_bound(self.total)
        self.infeasible_below = float("nan")
        status, residual, chord, reuse = "inaccurate", np.inf, False, factor is not None
        stalled, drop = 0, np.inf
        for it in range(1, max_iter + 1):
            grad = point.Aw() - self.T
            P = point.P
            gap = (P + D) / max(abs(P), abs(D), 1e-300)
            violation = self.violation(grad + self.T)
            if violation <= tol and gap <= tol:
                status = "optimal"
                break
            certified, below = self.farkas(y, point)
            if certified or -D > bound * (1 + 1e-9) + 1e-300:
                status, self.infeasible_below = "infeasible", below
                break
            previous, residual = residual, float(np.linalg.norm(self._pseudo_gradient(y, grad)))
            # steps that lower neither D nor the residual: the model's steps are lost to rounding, further ones too
            stalled = stalled + 1 if residual > 0.999 * previous and drop <= 1e-12 * abs(D) else 0
            if stalled >= STALLED_STEPS:
                break
            if chord and residual > 0.1 * previous:
                factor = None
            chord = factor is not None and reuse
            if not chord:
                factor, reuse = self._hessian(point), False
            # the proximal Newton point: the quadratic model of the smooth part at y, with the l1 term kept exact
            step = l1_qp.minimize(factor, grad, self.delta, y)
            decrease = grad @ step + l1_qp.l1_change(self.delta, y, step)
            moved = self._line_search(y, point, D, step, decrease, residual)
            if moved is None:
                if chord:                     # the old Hessian led nowhere: retry with a fresh one
                    factor, chord, residual = None, False, np.inf
                    continue
                break
            drop = D - moved[2]
            y, point, D = moved
        violation = self.violation(point.Aw())
        P = point.P
        gap = (P + D) / max(abs(P), abs(D), 1e-300)
        if status == "inaccurate" and violation <= tol and gap <= tol:
            status = "optimal"
        return point.weights(), y, status, it, gap, violation, factor

    def _hessian(self, point):
        """The generalized Hessian A_I diag(s/2) A_I' over the units inside their bounds, plus a 1e-12 relative
        ridge; when every unit is at a bound (a cold start far away), the all-units metric instead."""
        H = point.hessian()
        if not np.any(np.diag(H) > 0):
            H = self.units.all_hessian()
        ridge = 1e-12 * max(float(np.max(np.diag(H), initial=0.0)), 1e-300)
        return H + ridge * np.eye(len(H))

    def _pseudo_gradient(self, y, grad):
        """The minimum-norm subgradient of D at y (smooth gradient `grad`): zero exactly at the optimum."""
        at_zero = (self.delta > 0) & (y == 0)
        return np.where(at_zero, np.sign(grad) * np.maximum(np.abs(grad) - self.delta, 0.0),
                        grad + self.delta * np.sign(y))

    def _line_search(self, y, point, D, step, decrease, residual):
        """Backtrack from the proximal Newton point: accept on Armijo decrease of D (against the model's predicted
        `decrease` < 0), or, where D's change is lost to rounding near the optimum, on a decrease of the subgradient
        residual. D is convex along the segment, |y| included, so no projection is needed."""
        line = point.line(step)
        alpha = 1.0
        for _ in range(60):
            trial_y = y + alpha * step
            trial = line.at(alpha)
            D_new = self.value(trial_y, trial)
            if D_new <= D + 1e-4 * alpha * decrease:
                return trial_y, trial, D_new
            new_residual = np.linalg.norm(self._pseudo_gradient(trial_y, trial.Aw() - self.T))
            if new_residual <= (1 - 1e-4 * alpha) * residual and D_new <= D + 1e-12 * abs(D):
                return trial_y, trial, D_new
            alpha /= 2
        return None


@register
class DualBackend:
    """Backend "dual": Newton on the (k+1)-variable dual of each group; see the module docstring."""

    name = "dual"
    form = SeparableQP
    auto = 1
    solves = "SBW, kernel SBW, linear calibration, exact-target sparse calibration"
    how = ("proximal semismooth Newton on the dual in k + 1 variables (k balance columns), O(n k^2) per step; "
           "warm-started along paths")

    def __init__(self, problem):
        self.qp = SeparableQP.of(problem.terms, problem.n, self.name)
        self.n = problem.n
        self.rows = [g.constraint_rows(problem.n if g.rows is None else len(g.rows)) for g in self.qp.groups]
        self.history = {}         # group index -> the last two (parameters, dual point) pairs, for warm starts
        self.factors = {}         # group index -> the last Newton factorization, re-used by chord steps on a path

    def solve(self, solver=None, tol=1e-10, max_iter=200, warm_start=True):
        start = time.perf_counter()
        lo, hi = self.qp.box()
        center, scale = self.qp.dispersion.center, self.qp.dispersion.scale
        weights = np.empty(self.n)
        duals, statuses, iterations, gaps, violations, ray, below = {}, [], 0, [], [], {}, []
        subsample_steps = 0
        for index, group in enumerate(self.qp.groups):
            target, delta = group.targets()
            units = Units(group.select(center), group.select(scale), group.select(lo), group.select(hi),
                          self.rows[index])
            dual = GroupDual(units, target, delta, group.total)
            cold = np.zeros(len(dual.T))
            params = np.concatenate([dual.T, dual.delta])
            history = self.history.get(index, []) if warm_start else []
            y0 = _predict(history, params, len(cold))
            if y0 is None and dual.normalized and units.size >= SUBSAMPLE_FROM:
                y0, steps = subsample_start(dual, tol, max_iter)
                subsample_steps += steps
            factor = self.factors.get(index) if warm_start else None
            w, y, status, its, gap, violation, factor = dual.solve(cold if y0 is None else y0, tol, max_iter, factor)
            if status != "optimal" and y0 is not None:      # a warm start from a bad point: start over
                w, y, status, more, gap, violation, factor = dual.solve(cold, tol, max_iter)
                its += more
            self.history[index] = (history + [(params, y)])[-2:] if status == "optimal" else []
            self.factors[index] = factor if status == "optimal" else None
            if group.rows is None:
                weights[:] = w
            else:
                weights[group.rows] = w
            # y is the multiplier of A w in [T - delta, T + delta] with w = c + s A'y / 2: the objective's
            # sensitivity to the scaled balance values.
            duals.update(balance_duals(group.balance, y))
            if status == "infeasible":       # y grows without bound along a certificate of infeasibility
                ray.update(split(group.balance, y / max(np.linalg.norm(y), 1e-300)))
                if len(set(np.round(dual.delta[:dual.k], 12))) == 1:     # one tolerance: its certified floor
                    below.append(dual.infeasible_below)
            statuses.append(status)
            iterations += its
            gaps.append(gap)
            violations.append(violation)
        status = next((s for s in ("infeasible", "inaccurate") if s in statuses), "optimal")
        return RawResult(
            weights=weights, status=status, solver="newton", solve_time=time.perf_counter() - start, duals=duals,
            iterations=iterations,
            message=f"dual Newton: relative duality gap {max(gaps):.1e}, max violation {max(violations):.1e}",
            info={"duality_gap": max(gaps), "max_violation": max(violations), "infeasibility_ray": ray,
                  "infeasible_below": max(below, default=float("nan")), "subsample_iterations": subsample_steps},
        )


#: A Newton loop stops ("inaccurate") after this many steps in a row that lower neither D nor the residual: on a nearly
#: infeasible problem the iterates can stall far out along the ray before it certifies, and the problem's solve
#: then settles feasibility with the relaxed problem (`infeasibility.certify`) instead of running to max_iter.
STALLED_STEPS = 5

#: A cold solve of a normalized group of at least this many units starts from the dual of a SUBSAMPLE-unit
#: subsample (seeded), whose point is close to the full one: most Newton steps then cost SUBSAMPLE rows, not n.
SUBSAMPLE_FROM = 100_000
SUBSAMPLE = 50_000


def subsample_start(dual, tol, max_iter):
    """The dual point of the group on a fixed random subsample of m units, rescaled to the full group: with every
    c, lo and hi multiplied by n / m (so that the subsample's weights keep the group's total), the subsample's
    weights are n / m times those of the full group at y = (m / n) y_sub. (That point or None when the solve fails,
    and its Newton steps.)"""
    units, ratio = dual.units.subsample(SUBSAMPLE)
    small = GroupDual(units, dual.T[:-1], dual.delta[:-1], dual.T[-1])
    _, y, status, steps, *_ = small.solve(np.zeros(len(dual.T)), tol, max_iter)
    return (y / ratio if status == "optimal" else None), steps


def _predict(history, params, size):
    """A warm start for the dual at `params` from the last solved points: the last dual point, moved along the
    secant of the last two when the parameters keep moving along (nearly) the same line, as on a path."""
    if not history or len(history[-1][1]) != size:
        return None
    p1, y1 = history[-1]
    if len(history) < 2:
        return y1.copy()
    p0, y0 = history[-2]
    step, change = p1 - p0, params - p1
    length = step @ step
    if length == 0 or abs(change @ step) < 0.9 * np.sqrt(length * (change @ change)):
        return y1.copy()
    guess = y1 + (y1 - y0) * (change @ step) / length
    return np.where(np.sign(guess) == np.sign(y1), guess, 0.0)   # do not push a multiplier across zero

