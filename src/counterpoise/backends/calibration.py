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

import numpy as np
import scipy.sparse

from .base import RawResult, register
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
            self.rows = [_sparse_if_mostly_zero(self.form.rows(group)) for group in self.form.groups]
        return self.rows

    def solve(self, solver=None, epsilon=1e-9, max_iter=100, warm_start=True):
        start = time.perf_counter()
        lo, hi = self.form.ratio_box()
        d = self.form.base
        weights = np.empty(self.form.n)
        duals, worst, iterations, halvings, converged, largest = {}, [], 0, 0, True, 0.0
        for index, (group, rows) in enumerate(zip(self.form.groups, self._rows())):
            t, scale, names = self.form.system(group)
            T = scale * t
            here = slice(None) if group.rows is None else group.rows
            newton = _Newton(self.form.distance, d[here], lo[here], hi[here], rows, t)
            previous = self.lam.get(index) if warm_start else None
            lam = previous if previous is not None and len(previous) == len(t) else np.zeros(len(t))
            lam, w, steps, done, halved = newton.run(lam, scale, T, epsilon, max_iter)
            weights[here] = w
            misfit = (rows.tdot(w) - t) * scale
            relative = np.abs(misfit) / (1 + np.abs(T))
            self.lam[index] = lam if done else None
            duals.update(balance_duals(group.balance, lam))
            worst += [(names[j], float(misfit[j] + T[j]), float(T[j]), float(relative[j]))
                      for j in np.argsort(relative)[::-1][:5]]
            iterations, halvings, converged = iterations + steps, halvings + halved, converged and done
            largest = max(largest, float(relative.max()))
        worst = sorted(worst, key=lambda row: -row[3])[:5]
        kind = DISTANCE_NAMES[type(self.form.distance).__name__]
        message = (f"Deville-Sarndal Newton ({kind}): {iterations} iterations, max |misfit| / (1 + |T|) = "
                   f"{largest:.1e} (epsilon {epsilon:g})")
        if not converged:
            message += "; did not converge. Worst targets (achieved vs target): " + ", ".join(
                f"{n} {a:.6g} vs {b:.6g}" for n, a, b, _ in worst[:3])
        return RawResult(weights=weights, status="optimal" if converged else "inaccurate", solver=f"newton/{kind}",
                         solve_time=time.perf_counter() - start, duals=duals, iterations=iterations, message=message,
                         info={"max_relative_misfit": largest, "worst_targets": worst, "step_halvings": halvings,
                               "epsilon": epsilon})


def _sparse_if_mostly_zero(rows):
    """`rows` with its own sparse copy of B's selected columns when at most a quarter of B is nonzero."""
    if scipy.sparse.issparse(rows.B) or np.count_nonzero(rows.B) > 0.25 * rows.B.size:
        return rows
    B = scipy.sparse.csr_matrix(rows.B)
    return Rows(B if rows.columns is None else B[:, rows.columns], column_scale=rows.column_scale,
                constant=rows.constant)


#: The distance's name in the solver label and messages (survey's calfun names).
DISTANCE_NAMES = {"ChiSquare": "linear", "Entropy": "raking", "Logit": "logit"}


class _Newton:
    """The dual's value, gradient and Hessian as sums over the constraint rows, and the damped Newton iteration."""

    def __init__(self, distance, d, lo, hi, rows, t):
        self.distance, self.d, self.lo, self.hi, self.rows, self.t = distance, d, lo, hi, rows, t

    def weights(self, lam):
        """(u, g, w) at the dual point lam."""
        u = self.rows.dot(lam)
        g = np.clip(self.distance.F(u), self.lo, self.hi)
        return u, g, self.d * g

    def value(self, lam):
        u, g, _ = self.weights(lam)
        with np.errstate(over="ignore", invalid="ignore"):    # a trial step far out: D = inf, which Armijo refuses
            return float(self.d @ (u * g - self.distance.G(g)) - self.t @ lam)

    def hessian(self, u, g):
        """X' diag(d F'(u)) X over the units strictly inside their bounds."""
        inside = (g > self.lo) & (g < self.hi)
        return self.rows.gram(np.where(inside, self.d * self.distance.dF(u, g), 0.0))

    def run(self, lam, scale, T, epsilon, max_iter):
        halvings = 0
        for iteration in range(max_iter + 1):
            u, g, w = self.weights(lam)
            grad = self.rows.tdot(w) - self.t
            if np.max(np.abs(grad * scale) / (1 + np.abs(T))) < epsilon:
                return lam, w, iteration, True, halvings
            if iteration == max_iter:
                break
            step = _ginv_solve(self.hessian(u, g), grad)
            slope = grad @ step
            if not slope > 0:        # no descent direction (every unit at a bound): steepest descent
                step, slope = grad, grad @ grad
            current, size, residual = self.value(lam), 1.0, float(np.linalg.norm(grad))
            while size > 1e-12:
                trial = lam - size * step
                value = self.value(trial)
                if value <= current - 1e-4 * size * slope:
                    break
                # near the optimum D's decrease is below its rounding (it sums n terms): accept a step that
                # shrinks the misfit without raising D beyond that rounding
                if value <= current + 1e-12 * abs(current) and \
                        np.linalg.norm(self.rows.tdot(self.weights(trial)[2]) - self.t) <= (1 - 1e-4 * size) * residual:
                    break
                size *= 0.5
                halvings += 1
            else:
                break                # no decrease possible in floating point: the closest point found
            lam = trial
        return lam, w, iteration, False, halvings


def _ginv_solve(H, b):
    """H^+ b by the symmetric eigendecomposition, dropping eigenvalues below 256 eps of the largest (survey's
    ginv tolerance), so collinear targets do not break the step."""
    values, vectors = np.linalg.eigh(H)
    keep = values > 256 * np.finfo(float).eps * max(values.max(initial=0.0), 1e-300)
    return vectors[:, keep] @ ((vectors[:, keep].T @ b) / values[keep])
