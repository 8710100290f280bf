"""Calibration by Newton's method on the dual (Deville & Sarndal 1992; survey::grake).

For calibration of base weights d to totals, minimize sum_i d_i G(g_i), g = w / d, subject to X'w = T and
per-unit ratio bounds lo_i <= g_i <= hi_i (ratio bounds, and weight bounds divided by d). The weights are
w_i = d_i F_i(x_i'lam) with F_i = (G')^{-1} clipped to [lo_i, hi_i]; G, F and F' are the distance term's own
(`terms.distances`: linear G(g) = (g - 1)^2 / 2, raking g log g - g + 1, logit with bounds L < g < U), and lam
minimizes the convex dual D(lam) = sum_i d_i [u_i g_i - G(g_i)] - T'lam (u = X lam, g = F(u)), whose gradient is
the misfit X'w - T and whose (generalized) Hessian is X' diag(d F'(u)) X, all sums over the rows (`rows.Rows`; X
kept sparse when it is mostly zeros, as the indicator columns of margins are: O(nnz) per product instead of
O(n k)). Each Newton step solves
with a generalized inverse (eigenvalues below 256 eps of the largest are dropped, so collinear targets do no
harm) and halves the step until D decreases enough (Armijo). Convergence, as in survey: every target within
max |x_j'w - T_j| / (1 + |T_j|) < epsilon. Without convergence the result is "inaccurate" with the closest
weights found and the worst targets named (`CalibrationError` from `solve`, or the weights with
raise_on_failure=False, survey's force=TRUE). A normalization (sum w = N) is one more target, so entropy balancing
(raking to the target means, sum w = 1) is solved here too; a problem in groups of units, each with its own
normalization (the ATE's two arms), is one such Newton per group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from .base import RawResult, register
from .blocks import Blocks
from .forms import CalibrationForm, balance_duals
from .rows import Rows


@register
class CalibrationBackend:
    """Backend "calibration": Deville-Sarndal Newton on the dual; see the module docstring."""

    name = "calibration"
    form = CalibrationForm
    auto = 2
    solves = "calibration (linear, raking, logit; ratio and weight bounds), entropy balancing"
    how = "Deville-Sarndal Newton on the dual with step halving and a generalized inverse"

    def __init__(self, problem):
        self.form = CalibrationForm.of(problem.terms, problem.n, self.name)
        self.lam = {}              # group index -> the last dual point: a warm start along a path
        self.rows = None           # the groups' constraint rows, set up on the first solve and kept

    def _rows(self):
        """Each group's scaled constraint rows, set up once: B kept sparse when at most a quarter of it is nonzero,
        as margins' indicators are (O(nnz) per product instead of O(n k))."""
        if self.rows is None:
            self.rows = [sparse_if_mostly_zero(self.form.rows(group)) for group in self.form.groups]
        return self.rows

    def solve(self, solver=None, epsilon=1e-9, max_iter=100, warm_start=True):
        start = time.perf_counter()
        lo, hi = self.form.ratio_box()
        d = self.form.base
        weights = np.empty(self.form.n)
        duals, worst, iterations, halvings, converged, largest, points = {}, [], 0, 0, True, 0.0, []
        for index, (group, rows) in enumerate(zip(self.form.groups, self._rows())):
            t, scale, names = self.form.system(group)
            here = slice(None) if group.rows is None else group.rows
            previous = self.lam.get(index) if warm_start else None
            lam = previous if previous is not None and len(previous) == len(t) else np.zeros(len(t))
            weights[here], run = grake(rows, self.form.distance, d[here], lo[here], hi[here], t, scale, lam, epsilon,
                                       max_iter)
            points.append(run.lam)
            self.lam[index] = run.lam if run.converged else None
            duals.update(balance_duals(group.balance, run.lam))
            worst += run.worst(names)
            iterations, halvings = iterations + run.iterations, halvings + run.halvings
            converged, largest = converged and run.converged, max(largest, run.largest)
        worst = sorted(worst, key=lambda row: -row[3])[:5]
        kind = DISTANCE_NAMES[type(self.form.distance).__name__]
        message = newton_message(kind, iterations, largest, epsilon, converged, worst)
        return RawResult(weights=weights, status="optimal" if converged else "inaccurate", solver=f"newton/{kind}",
                         solve_time=time.perf_counter() - start, duals=duals, iterations=iterations, message=message,
                         info={"max_relative_misfit": largest, "worst_targets": worst, "step_halvings": halvings,
                               "epsilon": epsilon}, worst_targets=[] if converged else worst,
                         dual_point=np.concatenate(points))


def grake(rows, distance, d, lo, hi, t, scale, lam, epsilon=1e-9, max_iter=100):
    """The calibration of base weights d (survey's grake): rows X (`rows.Rows`, scaled columns), the distance, ratio
    bounds lo <= w / d <= hi, scaled totals t (T = scale t), from the dual point lam; d may hold zeros (those units
    keep weight 0: a replicate's deleted PSUs). Returns the weights and the `NewtonRun`."""
    blocks = Blocks([(rows, distance, np.asarray(d, dtype=float), lo, hi)])
    run = newton(blocks, t, scale, lam, epsilon, max_iter)
    return blocks.map(calibrated_weights, lam=run.lam), run


def newton_message(kind, iterations, largest, epsilon, converged, worst) -> str:
    """The solver message of a calibration Newton run, naming the worst targets when it did not converge."""
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


def newton_sums(rows, distance, d, lo, hi, points=(), hessian=False):
    """One block's share of the dual's sums at each dual point lam in `points` (u = X lam, g = F(u) clipped to
    [lo, hi], w = d g): sum_i d_i (u_i g_i - G(g_i)) and X'w, and with `hessian` the generalized Hessian
    X' diag(d F'(u)) X over the units strictly inside their bounds, at the first point."""
    values, products = np.empty(len(points)), np.empty((len(points), rows.k))
    H = np.zeros((rows.k, rows.k))
    for j, lam in enumerate(points):
        u = rows.dot(lam)
        g = np.clip(distance.F(u), lo, hi)
        with np.errstate(over="ignore", invalid="ignore"):   # a trial step far out: D = inf, which Armijo refuses
            values[j] = d @ (u * g - distance.G(g))
            products[j] = rows.tdot(d * g)
        if hessian and j == 0:
            inside = (g > lo) & (g < hi)
            H = rows.gram(np.where(inside, d * distance.dF(u, g), 0.0))
    return values, products, H


def calibrated_weights(rows, distance, d, lo, hi, lam=None) -> np.ndarray:
    """w = d F(X lam), F clipped to [lo, hi]: one block's weights at the dual point lam."""
    return d * np.clip(distance.F(rows.dot(lam)), lo, hi)


@dataclass
class NewtonRun:
    """Where a Newton run ended: the dual point, the misfit X'w - T there (in the totals' units), and counts."""

    lam: np.ndarray
    misfit: np.ndarray
    T: np.ndarray
    iterations: int
    halvings: int
    converged: bool

    @property
    def relative(self) -> np.ndarray:
        return np.abs(self.misfit) / (1 + np.abs(self.T))

    @property
    def largest(self) -> float:
        return float(self.relative.max(initial=0.0))

    def worst(self, names, count=5) -> list:
        """(name, achieved, target, relative misfit) of the `count` worst targets."""
        return [(names[j], float(self.misfit[j] + self.T[j]), float(self.T[j]), float(self.relative[j]))
                for j in np.argsort(self.relative)[::-1][:count]]


def newton(blocks, t, scale, lam, epsilon, max_iter, callback=None) -> NewtonRun:
    """Damped Newton on the dual D(lam) = sum_i d_i (u_i g_i - G(g_i)) - t'lam over the row blocks `blocks`
    (`blocks.Blocks` or `DaskBlocks`, each block (rows, distance, d, lo, hi)), from `lam`, until every target is
    within max |x_j'w - T_j| / (1 + |T_j|) < epsilon (T = scale t). Each step tries the full step (with the
    Hessian there, for the next step), then, if D does not decrease enough (Armijo), `blocks.batch` halved sizes per
    pass, and takes the first that does. `callback(iteration, lam)`, if given, runs after every step."""
    T = scale * t

    def evaluate(points, hessian):
        values, products, H = blocks.reduce(newton_sums, points=points, hessian=hessian)
        return values - np.asarray(points) @ t, products - t, H

    values, grads, H = evaluate([lam], True)
    value, grad = values[0], grads[0]
    halvings = 0
    for iteration in range(max_iter + 1):
        if np.max(np.abs(grad * scale) / (1 + np.abs(T)), initial=0.0) < epsilon:
            return NewtonRun(lam, grad * scale, T, iteration, halvings, True)
        if iteration == max_iter:
            break
        step = _ginv_solve(H, grad)
        slope = grad @ step
        if not slope > 0:        # no descent direction (every unit at a bound): steepest descent
            step, slope = grad, grad @ grad
        residual, size, accepted = float(np.linalg.norm(grad)), 1.0, None
        while accepted is None and size > 1e-12:
            sizes = size * 0.5 ** np.arange(1 if size == 1.0 else blocks.batch)     # the full step on its own
            values, grads, H_first = evaluate([lam - s * step for s in sizes], True)
            for j, s in enumerate(sizes):
                # near the optimum D's decrease is below its rounding (it sums n terms): accept a step that
                # shrinks the misfit without raising D beyond that rounding
                if values[j] <= value - 1e-4 * s * slope or (values[j] <= value + 1e-12 * abs(value) and
                                                             np.linalg.norm(grads[j]) <= (1 - 1e-4 * s) * residual):
                    accepted = j
                    break
                halvings += 1
            size = sizes[-1] * 0.5
        if accepted is None:
            break                # no decrease possible in floating point: the closest point found
        lam, value, grad = lam - sizes[accepted] * step, values[accepted], grads[accepted]
        H = H_first if accepted == 0 else evaluate([lam], True)[2]
        if callback is not None:
            callback(iteration + 1, lam)
    return NewtonRun(lam, grad * scale, T, iteration, halvings, False)


def _ginv_solve(H, b):
    """H^+ b by the symmetric eigendecomposition, dropping eigenvalues below 256 eps of the largest (survey's
    ginv tolerance), so collinear targets do not break the step."""
    values, vectors = np.linalg.eigh(H)
    keep = values > 256 * np.finfo(float).eps * max(values.max(initial=0.0), 1e-300)
    return vectors[:, keep] @ ((vectors[:, keep].T @ b) / values[keep])
