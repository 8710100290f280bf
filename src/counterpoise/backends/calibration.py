"""Calibration by Newton's method on the dual (Deville & Sarndal 1992; survey::grake).

For calibration of base weights d to totals, minimize sum_i d_i G(g_i), g = w / d, subject to X'w = T and
per-unit ratio bounds lo_i <= g_i <= hi_i (ratio bounds, and weight bounds divided by d). The weights are
w_i = d_i F_i(x_i'lam) with F_i = (G')^{-1} clipped to [lo_i, hi_i]:

    linear   G(g) = (g - 1)^2 / 2         F(u) = 1 + u
    raking   G(g) = g log g - g + 1       F(u) = exp(u)
    logit    G(g) = [(g-L) log((g-L)/(1-L)) + (U-g) log((U-g)/(U-1))] / A,   A = (U-L) / ((1-L)(U-1)),
             F(u) = (L (U-1) + U (1-L) e^{Au}) / (U - 1 + (1-L) e^{Au})

and lam minimizes the convex dual D(lam) = sum_i d_i [u_i g_i - G(g_i)] - T'lam (u = X lam, g = F(u)), whose
gradient is the misfit X'w - T and whose (generalized) Hessian is X' diag(d F'(u)) X (X kept sparse when it is mostly
zeros, as the indicator columns of margins are: O(nnz) per product instead of O(n k)). Each Newton step solves
with a generalized inverse (eigenvalues below 256 eps of the largest are dropped, so collinear targets do no
harm) and halves the step until D decreases enough (Armijo). Convergence, as in survey: every target within
max |x_j'w - T_j| / (1 + |T_j|) < epsilon. Without convergence the result is "inaccurate" with the closest
weights found and the worst targets named (`CalibrationError` from `solve`, or the weights with
raise_on_failure=False, survey's force=TRUE). A normalization (sum w = N) is one more target, so entropy balancing
(raking to the target means, sum w = 1) is solved here too.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse

from ..terms import Balance, Bounds, ChiSquare, Entropy, Logit, Normalize, logit_distance
from .base import RawResult
from .structure import UnsupportedProblem

CHUNK = 65_536


class Distance:
    """G, F = (G')^{-1} and F' for one of the Deville-Sarndal distances (module docstring)."""

    def __init__(self, kind, lower=None, upper=None):
        self.kind, self.L, self.U = kind, lower, upper
        if kind == "logit":
            self.A = (upper - lower) / ((1 - lower) * (upper - 1))

    def F(self, u):
        if self.kind == "linear":
            return 1.0 + u
        if self.kind == "raking":
            return np.exp(np.minimum(u, 700.0))
        e = np.exp(np.clip(self.A * u, -700.0, 700.0))
        return (self.L * (self.U - 1) + self.U * (1 - self.L) * e) / (self.U - 1 + (1 - self.L) * e)

    def dF(self, u, g):
        """F'(u), given g = F(u)."""
        if self.kind == "linear":
            return np.ones_like(u)
        if self.kind == "raking":
            return g
        return self.A * (g - self.L) * (self.U - g) / (self.U - self.L)

    def G(self, g):
        if self.kind == "linear":
            return 0.5 * (g - 1.0) ** 2
        if self.kind == "raking":
            return np.where(g > 0, g * np.log(np.where(g > 0, g, 1.0)) - g + 1.0, 1.0)
        return logit_distance(g, self.L, self.U)


def _recognize(problem):
    """(distance, d, lo, hi, [(balance or normalize term, columns)]) for a calibration problem, or
    UnsupportedProblem naming what does not fit."""
    distance, d, targets, bounds = None, None, [], []
    for term in problem.terms:
        if type(term) is ChiSquare and term.tau is None and np.allclose(term.scale, 2 * term.center) \
                and distance is None:
            distance, d = Distance("linear"), term.center
        elif type(term) is Entropy and term.offset is None and distance is None:
            distance, d = Distance("raking"), term.base
        elif type(term) is Logit and distance is None:
            distance, d = Distance("logit", term.lower, term.upper), term.base
        elif type(term) is Balance and term.rows is None and term.exact:
            targets.append(term)
        elif type(term) is Normalize and term.rows is None:
            targets.append(term)
        elif type(term) is Bounds:
            bounds.append(term)
        else:
            raise UnsupportedProblem(
                f"backend 'calibration' solves calibration (linear, raking or logit distance to base weights, exact "
                f"totals, bounds); term {term.name!r} ({type(term).__name__}) needs backend='cvxpy' (or 'dual' for "
                "tolerances with the linear distance)")
    if distance is None or not targets:
        raise UnsupportedProblem("backend 'calibration' needs one calibration distance and exact totals")
    lo, hi = np.full(problem.n, -np.inf), np.full(problem.n, np.inf)
    if distance.kind == "logit":
        lo[:], hi[:] = distance.L, distance.U
    elif distance.kind == "raking":
        lo[:] = 0.0
    return distance, d, lo, hi, targets, bounds


class CalibrationBackend:
    """Backend "calibration": Deville-Sarndal Newton on the dual; see the module docstring."""

    name = "calibration"

    def __init__(self, problem):
        self.distance, self.d, self._lo, self._hi, self.targets, self.bounds = _recognize(problem)
        self.n = problem.n
        self.lam = None            # the last dual point: a warm start along a path
        self.X = None              # the scaled constraint columns, built on the first solve and kept

    def _system(self):
        """X (n x k, scaled columns; sparse when at most a quarter of it is nonzero, as margins' indicators are),
        scaled targets t, column scales s (totals T = s t) and target names."""
        columns, t, scale, names = [], [], [], []
        for term in self.targets:
            if isinstance(term, Balance):
                columns.append(term._scaled)
                t.append(term.target.value / term.scale)
                scale.append(term.scale)
                names += [f"{term.name}:{c}" for c in term.columns]
            else:
                columns.append(np.full((self.n, 1), 1.0 / term.total))
                t.append([1.0])
                scale.append([term.total])
                names.append(term.name)
        if self.X is None:
            X = columns[0] if len(columns) == 1 else np.hstack(columns)
            self.X = scipy.sparse.csr_matrix(X) if np.count_nonzero(X) <= 0.25 * X.size else X
        return self.X, np.concatenate(t), np.concatenate(scale), names

    def _box(self):
        """Bounds on g = w / d per unit: the distance's own, ratio bounds and weight bounds (divided by d)."""
        lo, hi = self._lo.copy(), self._hi.copy()
        for term in self.bounds:
            per_g = 1.0 / self.d if term.reference is None else term.reference / self.d
            if term.lower is not None:
                lo = np.maximum(lo, term.lower.value * per_g)
            if term.upper is not None:
                hi = np.minimum(hi, term.upper.value * per_g)
        return lo, hi

    def solve(self, solver=None, epsilon=1e-9, max_iter=100, warm_start=True):
        start = time.perf_counter()
        X, t, scale, names = self._system()
        T = scale * t
        lo, hi = self._box()
        newton = _Newton(self.distance, self.d, lo, hi, X, t)
        lam = self.lam if warm_start and self.lam is not None and len(self.lam) == len(t) else np.zeros(len(t))
        lam, w, iterations, converged, halvings = newton.run(lam, scale, T, epsilon, max_iter)
        misfit = (X.T @ w - t) * scale
        relative = np.abs(misfit) / (1 + np.abs(T))
        self.lam = lam if converged else None
        order = np.argsort(relative)[::-1][:5]
        worst = [(names[j], float(misfit[j] + T[j]), float(T[j]), float(relative[j])) for j in order]
        status = "optimal" if converged else "inaccurate"
        message = (f"Deville-Sarndal Newton ({self.distance.kind}): {iterations} iterations, max |misfit| / "
                   f"(1 + |T|) = {relative.max():.1e} (epsilon {epsilon:g})")
        if not converged:
            message += "; did not converge. Worst targets (achieved vs target): " + ", ".join(
                f"{n} {a:.6g} vs {b:.6g}" for n, a, b, _ in worst[:3])
        duals, offset = {}, 0
        for term in self.targets:
            size = len(term.columns) if isinstance(term, Balance) else 1
            if isinstance(term, Balance):
                duals[term.name] = -lam[offset: offset + size]
            offset += size
        return RawResult(weights=w, status=status, solver=f"newton/{self.distance.kind}",
                         solve_time=time.perf_counter() - start, duals=duals, iterations=iterations, message=message,
                         info={"max_relative_misfit": float(relative.max()), "worst_targets": worst,
                               "step_halvings": halvings, "epsilon": epsilon})


class _Newton:
    """The dual's value, gradient and Hessian over row chunks, and the damped Newton iteration."""

    def __init__(self, distance, d, lo, hi, X, t):
        self.distance, self.d, self.lo, self.hi, self.X, self.t = distance, d, lo, hi, X, t

    def weights(self, lam):
        """(u, g, w) at the dual point lam."""
        u = self.X @ lam
        g = np.clip(self.distance.F(u), self.lo, self.hi)
        return u, g, self.d * g

    def value(self, lam):
        u, g, _ = self.weights(lam)
        return float(self.d @ (u * g - self.distance.G(g)) - self.t @ lam)

    def hessian(self, u, g):
        """X' diag(d F'(u)) X over the units strictly inside their bounds (dense X in row chunks)."""
        k = self.X.shape[1]
        inside = (g > self.lo) & (g < self.hi)
        curvature = np.where(inside, self.d * self.distance.dF(u, g), 0.0)
        if scipy.sparse.issparse(self.X):
            return (self.X.T @ self.X.multiply(curvature[:, None]).tocsr()).toarray()
        H = np.zeros((k, k))
        for s in range(0, len(u), CHUNK):
            block = self.X[s: s + CHUNK]
            H += block.T @ (block * curvature[s: s + CHUNK, None])
        return H

    def run(self, lam, scale, T, epsilon, max_iter):
        halvings = 0
        for iteration in range(max_iter + 1):
            u, g, w = self.weights(lam)
            grad = self.X.T @ w - self.t
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
                        np.linalg.norm(self.X.T @ self.weights(trial)[2] - self.t) <= (1 - 1e-4 * size) * residual:
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
