"""The one engine: the low-dimensional dual of the weighting form, by a proximal semismooth Newton method.

For one group of units (see `forms.WeightingForm`) with constraint rows A (the scaled balance columns, the sum when
the group is normalized, and the rows of a user's affine terms), the primal

    minimize sum_i dist_i(w_i)  s.t.  lo <= w <= hi,  T_j - a_j <= (A w)_j <= T_j + b_j

(dist_i the chi-square (w_i - c_i)^2 / s_i or d_i G(w_i / d_i) for raking, logit, linear; a = b = delta for a
tolerance, 0 for an equality, one of them infinite for a one-sided row) has the dual

    minimize  D(y) = sum_i phi_i((A'y)_i) - T'y + sum_j psi_j(y_j),    psi_j(y) = a_j max(y, 0) + b_j max(-y, 0),
    phi_i(v) = max_{lo_i <= w <= hi_i} v w - dist_i(w),   attained at w_i(v) = clip(w_i^free(v), lo_i, hi_i)

(w^free = c + s v / 2 for the chi-square, d F(v) for d G(w / d): `units.Quadratic`, `units.Ratio`), a convex
function of one variable per row, whatever the number of units. Its smooth part's gradient is A w(y) - T and its generalized
Hessian A_I diag(dw/dv) A_I' sums over the units I strictly inside their bounds. Each step minimizes the quadratic
model of the smooth part at y plus the exact psi (solved exactly by `l1_qp`; an infinite slope keeps a one-sided
row's multiplier on its side; with equalities only, the plain Newton step), so a multiplier may change sign within
a step, then backtracks (Armijo on D, which is convex along the step). Once the signs settle this is the Newton
step on the nonzero multipliers, and convergence is quadratic. Each step costs one pass over the n x k rows for
A'y, one for A w and one product for the Hessian, O(n k^2); a path warm-starts from the previous dual point. The
weights are w(y*); the run records the relative duality gap (P(w) + D(y)) / P(w) and the largest row violation, or
stops by a rule of the caller's (`backends.calibration`: survey's, on the misfits). The loop reads the units only
through `units.Units`, whose sums are passes over row blocks in memory or on a Dask collection's partitions alike.

Infeasibility is certified by a Farkas ray, checked at every Newton step: with r the part of y off the sum row and
u = A_r'r (one value per unit), the rows cannot hold for any w in the box (with its sum) when

    sigma(u) - T_r'r + psi(r) < 0,    sigma(u) = max { u'w : lo <= w <= hi, sum w = total },

since every feasible w would give r'(A_r w - T_r) <= sigma(u) - T_r'r < -psi(r), while the rows' bounds force
r'(A_r w - T_r) >= -psi(r). When the problem is infeasible the dual iterates run off along such a ray, so y itself
becomes a certificate within a few steps, where a bound on D would take many. With one tolerance for every balance
column and no user's rows, the same r gives (T_r'r - sigma(u)) / ||r||_1, a delta below which (in the scaled units)
no weights exist. The older test, -D(y) above the largest primal objective over the box, is kept as a fallback.

A cold solve of a large normalized group (SUBSAMPLE_FROM units or more, no warm start) first solves the same dual on
a seeded subsample of SUBSAMPLE units and starts from its point, rescaled: at 1M rows (kernel SBW's defaults) the
full Newton then takes 4 steps instead of 11. The optimum, and so the weights, are the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..terms import ChiSquare
from . import l1_qp
from .base import Certificate, RawResult, register
from .forms import DualForm, WeightingForm, balance_duals, split
from .units import Memo, Quadratic, Ratio, Units


@dataclass
class DualRun:
    """Where a dual Newton run ended: the weights w(y) (`Units.weights`: a lazy dask array for units on partitions),
    the dual point y, the status ("optimal", "infeasible": y is a Farkas ray, or "inaccurate"), the Newton steps taken,
    the relative duality gap, the largest row violation, the last Hessian (a path's chord steps re-use it) and,
    when infeasible with one tolerance, the scaled tolerance below which no weights exist (else NaN); `Aw`, the rows'
    values at the end."""

    weights: object
    y: np.ndarray
    status: str
    iterations: int
    gap: float
    violation: float
    factor: np.ndarray | None
    infeasible_below: float = float("nan")
    Aw: np.ndarray | None = None


class GroupDual:
    """The dual of one group: its units (`units.Units`, in memory or on partitions) with the row
    targets T and tolerances delta of the rows other than the sum (in the order of the units' rows: the balance
    columns, then any user's rows), or instead of delta a pair (a, b) of one-sided slopes (`l1_qp`: a row that binds
    on one side only), and, when normalized, the total of the sum row, which sits right after the balance columns."""

    def __init__(self, units, target, delta, total):
        self.units = units
        self.k = units.k
        self.normalized = total is not None
        self.total = total
        self.given = (np.asarray(target, dtype=float), delta)
        T = np.asarray(target, dtype=float)
        self.T = np.insert(T, self.k, total) if self.normalized else T
        if isinstance(delta, tuple):
            self.delta = tuple(np.insert(side, self.k, 0.0) if self.normalized else np.asarray(side, dtype=float)
                               for side in delta)
        else:
            self.delta = np.insert(delta, self.k, 0.0) if self.normalized else np.asarray(delta, dtype=float)
        self.free = np.ones(len(self.T), bool)           # every row but the sum row
        if self.normalized:
            self.free[self.k] = False

    def on(self, units) -> "GroupDual":
        """The same rows and targets on other units (a subsample)."""
        return GroupDual(units, *self.given, self.total)

    def psi(self, y) -> float:
        """The tolerances' term of D at y: sum delta_j |y_j| (one-sided rows: their slopes)."""
        if not isinstance(self.delta, tuple):
            return float(self.delta @ np.abs(y))
        return float(np.sum(l1_qp.psi(*self.delta, y)))

    def value(self, y, point):
        """D(y), given the units' point at y."""
        return point.phi - self.T @ y + self.psi(y)

    def violation(self, Aw):
        """Largest violation of |A w - T| <= delta, given A w (scaled balance units; the sum relative to its total)."""
        if isinstance(self.delta, tuple):
            a, b = self.delta                  # the row's range is [T - a, T + b]
            excess = np.maximum(Aw - self.T - b, self.T - Aw - a)
        else:
            excess = np.abs(Aw - self.T) - self.delta
        if self.normalized:
            excess[self.k] /= max(abs(self.T[self.k]), 1e-300)
        return float(max(np.max(excess, initial=0.0), 0.0))

    def farkas(self, y, point):
        """(certified, delta bound): whether y less its sum multiplier is a ray certifying infeasibility (see the
        module), and the common scaled delta below which no weights exist according to it (NaN when not certified,
        or when the rows are not all two-sided)."""
        r = np.where(self.free, y, 0.0)
        if not np.any(r):
            return False, float("nan")
        sigma = point.support()
        penalty = self.psi(r)
        margin = sigma - self.T @ r + penalty
        scale = abs(sigma) + abs(self.T @ r) + penalty
        if not margin < -1e-9 * max(scale, 1e-300):
            return False, float("nan")
        if isinstance(self.delta, tuple):
            return True, float("nan")
        return True, float((self.T @ r - sigma) / np.abs(r).sum())

    # ---- Newton ----

    def solve(self, y, tol=1e-10, max_iter=200, factor=None, stop=None, callback=None) -> "DualRun":
        """Minimize D from `y`; returns the `DualRun`.

        `factor` is a generalized Hessian kept from an earlier solve of a nearby problem (a path): while the residual
        falls tenfold per step, the first steps re-use it (chord steps, O(n k) instead of O(n k^2)); from the first
        fresh Hessian on, every step is a full Newton step. The stopping test is exact either way: the relative
        duality gap and the largest row violation at most `tol`, or `stop(A w)` when given (calibration's rule on the
        misfits). The Hessian last used is returned for the next solve. w is the units' weights (an array in
        memory, a lazy dask array on partitions). `callback(step, y)` runs after every Newton step.
        """
        point = self.units.at(y, sigma=None if stop is not None else (self.k if self.normalized else None,
                                                                      self.total))
        D = self.value(y, point)
        bound = self.units.upper_bound(self.total)
        infeasible_below = float("nan")
        status, residual, chord, reuse = "inaccurate", np.inf, False, factor is not None
        stalled, drop, steps = 0, np.inf, 0
        for _ in range(max_iter):
            grad = point.Aw() - self.T
            P = point.P
            gap = (P + D) / max(abs(P), abs(D), 1e-300)
            if self._converged(grad + self.T, gap, tol, stop):
                status = "optimal"
                break
            # a Farkas ray ends the run, except under a stopping rule of the caller's (calibration: survey's
            # Newton runs to its last step and reports the closest weights and the worst targets)
            certified, below = self.farkas(y, point) if stop is None else (False, float("nan"))
            if certified or stop is None and -D > bound * (1 + 1e-9) + 1e-300:
                status, infeasible_below = "infeasible", below
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
            steps += 1
            if callback is not None:
                callback(steps, y)
        violation = self.violation(point.Aw())
        P = point.P
        gap = (P + D) / max(abs(P), abs(D), 1e-300)
        if status == "inaccurate" and self._converged(point.Aw(), gap, tol, stop):
            status = "optimal"
        return DualRun(self.units.weights(y), y, status, steps, gap, violation, factor, infeasible_below, point.Aw())

    def _converged(self, Aw, gap, tol, stop) -> bool:
        if stop is not None:
            return stop(Aw)
        return self.violation(Aw) <= tol and gap <= tol

    def _hessian(self, point):
        """The generalized Hessian A_I diag(dw/dv) A_I' over the units inside their bounds, plus a 1e-12 relative
        ridge; when every unit is at a bound (a cold start far away), the all-units metric instead."""
        H = point.hessian()
        if not np.any(np.diag(H) > 0):
            H = self.units.all_hessian()
        ridge = 1e-12 * max(float(np.max(np.diag(H), initial=0.0)), 1e-300)
        return H + ridge * np.eye(len(H))

    def _pseudo_gradient(self, y, grad):
        """The minimum-norm subgradient of D at y (smooth gradient `grad`): zero exactly at the optimum."""
        if isinstance(self.delta, tuple):
            a, b = self.delta
            with np.errstate(invalid="ignore"):
                return np.where(y == 0, grad - np.clip(grad, -a, b), grad + l1_qp.slope_at(a, b, np.sign(y)))
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
    """Backend "dual": Newton on the low-dimensional dual of each group; see the module docstring."""

    name = "dual"
    form = DualForm
    auto = 1
    solves = ("SBW, kernel SBW, linear calibration, exact-target sparse calibration; raking and logit calibration "
              "with tolerances; any of them with a user's terms that are affine in w, and MaxShare where the totals "
              "are fixed")
    how = ("proximal semismooth Newton on the dual in one variable per row (k balance columns, the sum, a user's "
           "rows), O(n k^2) per step; warm-started along paths")

    def __init__(self, problem):
        self.weighting = DualForm.of(problem.terms, problem.n, self.name)
        self.n = problem.n
        self.rows = [g.constraint_rows(problem.n if g.rows is None else len(g.rows)) for g in self.weighting.groups]
        self.history = {}         # group index -> the last two (parameters, dual point) pairs, for warm starts
        self.factors = {}         # group index -> the last Newton factorization, re-used by chord steps on a path

    def _units(self, group, rows, lo, hi):
        return Units.of(distance_block(self.weighting.distance, group), group.select(lo), group.select(hi), rows)

    def solve(self, solver=None, tol=1e-10, max_iter=200, warm_start=True):
        start = time.perf_counter()
        lo, hi = self.weighting.box()
        weights = np.empty(self.n)
        duals, runs, points, ray, below = {}, [], [], {}, []
        subsample_steps = 0
        for index, group in enumerate(self.weighting.groups):
            rows, lower, upper, owners = self.weighting.user_rows(group, self.rows[index])
            units = self._units(group, rows, lo, hi)
            target, delta = group.targets()
            dual = GroupDual(units, *row_bounds(target, delta, lower, upper), group.total)
            cold = np.zeros(len(dual.T))
            params = _warm_parameters(dual)
            history = self.history.get(index, []) if warm_start else []
            y0 = _predict(history, params, len(cold))
            if y0 is None and dual.normalized and units.size >= SUBSAMPLE_FROM:
                y0, steps = subsample_start(dual, tol, max_iter)
                subsample_steps += steps
            factor = self.factors.get(index) if warm_start else None
            run = dual.solve(cold if y0 is None else y0, tol, max_iter, factor)
            if run.status != "optimal" and y0 is not None:      # a warm start from a bad point: start over
                steps = run.iterations
                run = dual.solve(cold, tol, max_iter)
                run.iterations += steps
            self.history[index] = (history + [(params, run.y)])[-2:] if run.status == "optimal" else []
            self.factors[index] = run.factor if run.status == "optimal" else None
            if group.rows is None:
                weights[:] = run.weights
            else:
                weights[group.rows] = run.weights
            # y is the multiplier of A w in [T - delta, T + delta] with w = w(A'y): the objective's
            # sensitivity to the scaled balance values.
            duals.update(balance_duals(group.balance, run.y))
            points.append(run.y)
            if run.status == "infeasible":       # y grows without bound along a certificate of infeasibility
                direction = run.y / max(np.linalg.norm(run.y), 1e-300)
                ray.update(split(group.balance, direction))
                users = direction[len(direction) - len(owners):] if owners else np.zeros(0)
                for name in dict.fromkeys(owners):
                    ray[name] = users[np.array(owners) == name]
                if len(set(np.round(delta, 12))) == 1 and not len(lower):  # one tolerance, no user's rows: its floor
                    below.append(run.infeasible_below)
            runs.append(run)
        status = worst_status(run.status for run in runs)
        gap, violation = max(run.gap for run in runs), max(run.violation for run in runs)
        floor = max(below, default=float("nan"))
        certificate = Certificate(ray=ray, below=floor) if status == "infeasible" else None
        return RawResult(
            weights=weights, status=status, solver="newton", solve_time=time.perf_counter() - start, duals=duals,
            iterations=sum(run.iterations for run in runs),
            message=f"dual Newton: relative duality gap {gap:.1e}, max violation {violation:.1e}",
            info={"duality_gap": gap, "max_violation": violation, "infeasible_below": floor,
                  "subsample_iterations": subsample_steps},
            dual_point=np.concatenate(points), certificate=certificate,
        )


def worst_status(statuses) -> str:
    """The status of a problem from its groups' runs: "infeasible" if any group is, else "inaccurate" if any is,
    else "optimal"."""
    statuses = set(statuses)
    return next((s for s in ("infeasible", "inaccurate") if s in statuses), "optimal")


def distance_block(distance, group):
    """The distance of a group's units: a chi-square (SBW's, linear calibration's) by its centres and scales, any
    other by its base weights."""
    if isinstance(distance, ChiSquare):
        return Quadratic(group.select(distance.center), group.select(distance.scale))
    return Ratio(distance, group.select(distance.base))


def dual_block(terms, n) -> tuple:
    """The row block (rows, distance, lo, hi, memo) of `units.Units` for a problem of one group over n units in
    memory (a partition's piece of one), from its terms by the weighting form."""
    form = WeightingForm.of(terms, n, "dual")
    group, (lo, hi) = form.groups[0], form.box()
    return group.constraint_rows(n), distance_block(form.distance, group), lo, hi, Memo(size=0)


def _warm_parameters(dual) -> np.ndarray:
    """What a warm start extrapolates along: the targets and tolerances (one-sided rows: their finite slopes)."""
    sides = dual.delta if isinstance(dual.delta, tuple) else (dual.delta,)
    return np.concatenate([dual.T, *[np.where(np.isfinite(side), side, 0.0) for side in sides]])


def row_bounds(target, delta, lower, upper):
    """(T, delta or (a, b)) of `GroupDual` for balance rows |row - target| <= delta followed by a user's rows
    lower <= row <= upper (at least one side finite, `affine.AffineTerm`): a two-sided row is its midpoint and
    half-width; a one-sided row is its finite side with an infinite slope on the other (`l1_qp`)."""
    if not len(lower):
        return target, delta
    two_sided = np.isfinite(lower) & np.isfinite(upper)
    T = np.where(two_sided, (lower + upper) / 2, np.where(np.isfinite(upper), upper, lower))
    half = np.where(two_sided, (upper - lower) / 2, 0.0)
    a = np.where(two_sided, half, np.where(np.isfinite(upper), np.inf, 0.0))      # T - lower
    b = np.where(two_sided, half, np.where(np.isfinite(upper), 0.0, np.inf))      # upper - T
    if np.all(two_sided):
        return np.concatenate([target, T]), np.concatenate([delta, a])
    return np.concatenate([target, T]), (np.concatenate([delta, a]), np.concatenate([delta, b]))


#: A Newton loop stops ("inaccurate") after this many steps in a row that lower neither D nor the residual: on a nearly
#: infeasible problem the iterates can stall far out along the ray before it certifies, and the problem's solve
#: then settles feasibility with the relaxed problem (`infeasibility.certify`) instead of running to max_iter.
STALLED_STEPS = 5

#: A cold solve of a normalized group of at least this many units starts from the dual of a SUBSAMPLE-unit
#: subsample (seeded), whose point is close to the full one: most Newton steps then cost SUBSAMPLE rows, not n.
SUBSAMPLE_FROM = 100_000
SUBSAMPLE = 50_000


def subsample_start(dual, tol, max_iter):
    """The dual point of the group on a fixed random subsample of m units, rescaled to the full group: with the
    distance and the box scaled by n / m (`Units.subsample`: so that the subsample's weights keep the group's total),
    the subsample's weights are n / m times those of the full group at y = factor y_sub (factor m / n for the
    chi-square, 1 for a distance on the ratio w / d). (That point or None when the solve fails, and its Newton
    steps.)"""
    units, factor = dual.units.subsample(SUBSAMPLE)
    run = dual.on(units).solve(np.zeros(len(dual.T)), tol, max_iter)
    return (run.y * factor if run.status == "optimal" else None), run.iterations


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

