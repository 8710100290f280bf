"""Calibration to exact totals (Deville & Sarndal 1992; survey::calibrate and grake), on the dual engine.

For calibration of base weights d to totals, minimize sum_i d_i G(w_i / d_i) subject to X'w = T (and, per group of
units, sum w = N), with bounds on g = w / d and on w. The weights are w_i = d_i F(x_i'lam), F = (G')^-1 clipped to
the bounds (`terms.distances`: linear, raking, logit), and lam minimizes the convex dual in one variable per total.
This backend runs the dual Newton of backend "dual" on that dual (`dual.GroupDual`: every row an equality, so its
proximal step is the plain Newton step), with survey's rule in place of the duality gap: it stops when every target
is within max |x_j'w - T_j| / (1 + |T_j|) < epsilon. Without convergence (the Newton steps run out, or the totals
are out of reach of the bounds, which the dual's Farkas ray shows) the result is "inaccurate" with the closest
weights found and the worst targets named (`CalibrationError` from `solve`, or the weights with
raise_on_failure=False, survey's force=TRUE). A normalization (sum w = N) is one more target, so entropy balancing
(raking to the target means, sum w = 1) is solved here too, one group of units (an arm) at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from .base import RawResult, register
from .dual import DualRun, GroupDual, distance_block
from .forms import CalibrationForm, balance_duals
from .rows import Rows
from .units import Units


@register
class CalibrationBackend:
    """Backend "calibration": the dual Newton with survey's convergence rule; see the module docstring."""

    name = "calibration"
    form = CalibrationForm
    auto = 2
    solves = "calibration (linear, raking, logit; ratio and weight bounds), entropy balancing"
    how = ("the dual Newton of backend 'dual' (equalities only), stopped by survey's rule: every target's misfit "
           "within epsilon of one plus its total")

    def __init__(self, problem):
        self.weighting = CalibrationForm.of(problem.terms, problem.n, self.name)
        self.rows = [sparse_if_mostly_zero(group.constraint_rows(problem.n if group.rows is None else len(group.rows)))
                     for group in self.weighting.groups]
        self.y = {}                # group index -> the last converged dual point: a warm start along a path

    def solve(self, solver=None, epsilon=1e-9, max_iter=100, warm_start=True):
        start = time.perf_counter()
        lo, hi = self.weighting.box()
        weights = np.empty(self.weighting.n)
        duals, worst, runs = {}, [], []
        for index, (group, rows) in enumerate(zip(self.weighting.groups, self.rows)):
            units = Units.of(distance_block(self.weighting.distance, group), group.select(lo), group.select(hi), rows)
            target, _ = group.targets()
            run = calibrate_rows(units, target, group.total, CalibrationForm.scales(group),
                                 self.y.get(index) if warm_start else None, epsilon, max_iter)
            weights[slice(None) if group.rows is None else group.rows] = run.dual.weights
            self.y[index] = run.dual.y if run.converged else None
            duals.update(balance_duals(group.balance, run.dual.y))
            worst += run.worst(CalibrationForm.names(group))
            runs.append(run)
        worst = sorted(worst, key=lambda row: -row[3])[:5]
        converged = all(run.converged for run in runs)
        largest = max(run.largest for run in runs)
        iterations = sum(run.dual.iterations for run in runs)
        kind = DISTANCE_NAMES[type(self.weighting.distance).__name__]
        return RawResult(weights=weights, status="optimal" if converged else "inaccurate", solver=f"newton/{kind}",
                         solve_time=time.perf_counter() - start, duals=duals, iterations=iterations,
                         message=newton_message(kind, iterations, largest, epsilon, converged, worst),
                         info={"max_relative_misfit": largest, "worst_targets": worst, "epsilon": epsilon},
                         worst_targets=worst,
                         dual_point=np.concatenate([run.dual.y for run in runs]))


@dataclass
class CalibrationRun:
    """Where a calibration ended: the dual Newton's run, and each target's achieved value and total, in the totals'
    own units (the row values times the rows' scales)."""

    dual: DualRun
    achieved: np.ndarray
    T: np.ndarray
    epsilon: float

    @property
    def relative(self) -> np.ndarray:
        """|achieved - T| / (1 + |T|), survey's measure of each target's misfit."""
        return np.abs(self.achieved - self.T) / (1 + np.abs(self.T))

    @property
    def largest(self) -> float:
        return float(self.relative.max(initial=0.0))

    @property
    def converged(self) -> bool:
        return self.largest < self.epsilon

    @property
    def iterations(self) -> int:
        return self.dual.iterations

    def worst(self, names, count=5) -> list:
        """(name, achieved, target, relative misfit) of the `count` worst targets."""
        return [(names[j], float(self.achieved[j]), float(self.T[j]), float(self.relative[j]))
                for j in np.argsort(self.relative)[::-1][:count]]


def calibrate_rows(units, target, total, scales, y, epsilon=1e-9, max_iter=100, callback=None) -> CalibrationRun:
    """Calibrate `units` to the scaled targets `target` (and the sum `total` unless None), the rows' misfits scaled
    to the totals' units by `scales`, from the dual point y (None: 0); `callback(step, y)` after every step."""
    dual = GroupDual(units, target, np.zeros(len(target)), total)
    T = dual.T * scales
    start = np.zeros(len(dual.T)) if y is None or len(y) != len(dual.T) else y

    def within(Aw):
        return np.max(np.abs(Aw * scales - T) / (1 + np.abs(T)), initial=0.0) < epsilon

    run = dual.solve(start, max_iter=max_iter, stop=within, callback=callback)
    return CalibrationRun(run, run.Aw * scales, T, epsilon)


def grake(calibration_rows, distance, d, g_box, target, total, scales, y, epsilon=1e-9, max_iter=100):
    """survey's grake: the calibration of base weights d (zeros allowed: those units keep weight 0, a replicate's
    deleted PSUs) to the scaled targets on the rows `calibration_rows` (`rows.Rows` over every unit), with the
    distance's block rebased on d (`units.Quadratic.rebased`, `units.Ratio.rebased`) and the bounds on g = w / d,
    from the dual point y. Returns the weights and the `CalibrationRun`."""
    d = np.asarray(d, dtype=float)
    kept = np.flatnonzero(d > 0)
    lo, hi = g_box
    units = Units.of(distance.take(kept).rebased(d[kept]), lo[kept] * d[kept], hi[kept] * d[kept],
                     calibration_rows.subset(kept))
    run = calibrate_rows(units, target, total, scales, y, epsilon, max_iter)
    weights = np.zeros(len(d))
    weights[kept] = run.dual.weights
    return weights, run


def newton_message(kind, iterations, largest, epsilon, converged, worst) -> str:
    """The solver message of a calibration, naming the worst targets when it did not converge."""
    message = (f"Deville-Sarndal Newton ({kind}): {iterations} iterations, max |misfit| / (1 + |T|) = "
               f"{largest:.1e} (epsilon {epsilon:g})")
    if not converged:
        message += "; did not converge. Worst targets (achieved vs target): " + ", ".join(
            f"{n} {a:.6g} vs {b:.6g}" for n, a, b, _ in worst[:3])
    return message


def sparse_if_mostly_zero(rows):
    """`rows` with its own sparse copy of B's selected columns when at most a quarter of B is nonzero."""
    if scipy.sparse.issparse(rows.B) or np.count_nonzero(rows.B) > 0.25 * rows.B.size:
        return rows
    B = scipy.sparse.csr_matrix(rows.B)
    return Rows(B if rows.columns is None else B[:, rows.columns], column_scale=rows.column_scale,
                constant=rows.constant)


#: The distance's name in the solver label and messages (survey's calfun names).
DISTANCE_NAMES = {"Linear": "linear", "Entropy": "raking", "Logit": "logit"}
