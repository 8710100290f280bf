"""Sparse calibration by accelerated proximal gradient with an exact active-set finish.

On the ratios r = w / w0 the non-negative relative-loss lasso (`terms.SparseLoss`, with the cap r <= c) reads

    minimize_r  P(r) = 1/2 ||M'r - b||^2 + rho' r    s.t. 0 <= r <= c,
    M_ij = w0_i x_ij / s_j,  b_j = T_j / s_j,  rho_i = lam / n,

a QP in n variables whose quadratic has rank k (the number of targets). Its dual, in k variables, is

    D(y) = -1/2 ||y||^2 - b'y + sum_i c min(0, rho_i + (M y)_i)     (for c = inf: s.t. rho + M y >= 0),

and at the optimum y = M'r - b, the scaled residual; any y gives the lower bound D(y) <= P(r*).

1. FISTA (Beck & Teboulle 2009) with gradient-based adaptive restart (O'Donoghue & Candes 2015) on P. The step
   is 1/L with L = lambda_max(M'M), computed exactly from the k x k Gram matrix. The prox of rho'r plus the box
   is exact: r = clip(v - rho / L, 0, c).
2. Exact finish on a working set. Fix the units at the cap, and solve the problem restricted to the candidate
   units C (FISTA's support and the units whose gradient rho_i + (My)_i is nearly 0) exactly: its dual is a
   least-distance program, min ||z|| s.t. M_C z >= h, which Lawson & Hanson solve by one NNLS on a (k+1) x |C|
   matrix (their active-set algorithm, here with a stopping rule relative to rho); the multipliers are r_C,
   with exact zeros. Units that violate the KKT conditions (a zero unit with a
   negative gradient, a unit over the cap, a capped unit with a positive gradient) join or leave the working
   set, and the restricted problem is solved again, until none does.
   With a cap, an LP crossover comes first (`_crossover`): a vertex of the optimal face from one HiGHS solve,
   then an exact solve on its few free records; the working set only takes over when that is not certified.
   (With uniform w0 the optimum is a whole face, and the two pick different vertices: equally optimal, but
   not equal on targets they were not fitted to.)
3. Certificate: the relative gap (P(r) - D(y)) / max(P(r), tiny) with y = M'r - b (for c = inf scaled by the
   best theta in [0, 1] that makes it dual feasible). The result is "optimal" when the gap is below 1e-6
   (observed: 1e-14 to 1e-7; the floor is the rounding of rho + M y when lam / n is 1e-9 of |M b|).

Elastic net (SparseLoss's ridge > 0): P gains sum_i gamma_i/2 (r_i - 1)^2 with gamma = ridge w0 / sum(w0), the
problem is strongly convex, r(y) = clip(1 - (rho + M y) / gamma, 0, c), and the finish is Newton on the
k-variable dual (`_newton`); the certificate is the same gap with that dual.

With w0 uniform the pure-L1 optimum need not be unique (the penalty is constant on the solution set); the
finish returns a vertex (at most k + 1 records off their bounds, NNLS's choice).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.optimize

from ..errors import InputError
from .base import RawResult, register
from .forms import SparseLassoForm
from .rows import Rows

GAP_TOLERANCE = 1e-6


def _cap(bounds) -> float:
    """The cap on w / w0, read from the bounds' Parameters now (they may have been set since the build)."""
    cap = np.inf
    for term in bounds:
        if np.any(term.lower.value != 0):
            raise InputError("backend 'prox' solves 0 <= w / w0 <= cap: the lower bound must stay 0")
        if term.upper is not None:
            if np.ptp(term.upper.value) > 0:
                raise InputError("backend 'prox' takes one cap on w / w0 for every unit")
            cap = min(cap, float(np.max(term.upper.value)))
    return cap


@register
class ProxBackend:
    """Backend "prox": FISTA with restart, then an exact finish (working set, LP crossover, or Newton on the dual
    for the elastic net); see the module docstring."""

    name = "prox"
    form = SparseLassoForm
    auto = 3
    solves = "sparse calibration (lasso, elastic net, cap)"
    how = "FISTA, then an exact finish certified by the dual bound"

    def __init__(self, problem):
        form = SparseLassoForm.of(problem.terms, problem.n, self.name)
        self.loss, self.bounds = form.loss, form.bounds
        self.w0 = self.loss.w0
        self.M = Rows(self.loss.B, column_scale=self.loss.scale, row_factor=self.w0)   # M = diag(w0) B diag(1/s)
        self.L = float(np.linalg.eigvalsh(self.M.gram())[-1])
        self.r = None                                   # the last solution: a warm start along a path

    def lambda_max(self) -> float:
        """The smallest lam at which every weight is 0 (`terms.SparseLoss.lambda_max`)."""
        return self.loss.lambda_max()

    def solve(self, solver=None, max_iter=200, warm_start=True):
        start = time.perf_counter()
        n = len(self.w0)
        lam = float(self.loss.lam.value)
        b = self.loss.scaled_target()
        top = self.loss.lambda_max()                    # lam < top: the problem checked the term before solving
        rho, gamma, cap = np.full(n, lam / n), self.loss.ridge_curvature(), _cap(self.bounds)
        r0 = np.minimum(self.r if warm_start and self.r is not None else np.ones(n), cap)
        r, fista_iterations = _fista(self.M, b, rho, gamma, cap, self.L + float(np.max(gamma)), r0, max_iter)
        if np.any(gamma > 0):
            r, finish_iterations = _newton(self.M, b, rho, gamma, cap, self.M.tdot(r) - b)
            method, finish = "fista+newton", f"Newton on the {len(b)}-variable dual ({finish_iterations} steps)"
        else:
            crossed = _crossover(self.M, b, rho, cap, r) if np.isfinite(cap) else None
            if crossed is not None:
                r, finish_iterations = crossed, 1
                method = "fista+lp-crossover"
                finish = "an LP crossover to a vertex and an exact solve on its free records"
            else:
                r, finish_iterations = _finish(self.M, b, rho, cap, r)
                method = "fista+active-set"
                finish = f"an exact working-set finish ({finish_iterations} NNLS solves)"
        primal = _primal(self.M, b, rho, gamma, r)
        dual = _dual_value(self.M, b, rho, gamma, cap, self.M.tdot(r) - b)
        gap = (primal - dual) / max(abs(primal), 1e-300)
        converged = gap <= GAP_TOLERANCE
        self.r = r if converged else None
        records = int(np.count_nonzero(r))
        return RawResult(
            weights=self.w0 * r, status="optimal" if converged else "inaccurate",
            solver=method,
            solve_time=time.perf_counter() - start, iterations=fista_iterations + finish_iterations,
            message=(f"FISTA ({fista_iterations} iterations) and {finish}: objective {primal:.10g}, dual bound "
                     f"{dual:.10g}, relative gap {gap:.1e}, {records} records kept"),
            info={"objective": primal, "dual_bound": dual, "duality_gap": gap, "converged": converged,
                  "fista_iterations": fista_iterations, "finish_iterations": finish_iterations, "records": records,
                  "lambda_max": top})


def _primal(M, b, rho, gamma, r) -> float:
    residual = M.tdot(r) - b
    return float(0.5 * residual @ residual + rho @ r + 0.5 * gamma @ (r - 1) ** 2)


def _dual_value(M, b, rho, gamma, cap, y) -> float:
    """A lower bound on the optimum from the dual point y: D(y) with the ridge (always finite), or for the pure
    lasso D(theta y) at the best theta in [0, 1] that keeps it finite (only needed for cap = inf)."""
    g_shift = M.dot(y)
    if np.any(gamma > 0):
        r = _ridge_minimizer(rho + g_shift, gamma, cap)
        return float(-0.5 * y @ y - b @ y + np.sum((rho + g_shift) * r + 0.5 * gamma * (r - 1) ** 2))
    if np.isfinite(cap):
        return float(-0.5 * y @ y - b @ y + cap * np.sum(np.minimum(0.0, rho + g_shift)))
    worst = float(np.max(-g_shift / rho, initial=0.0))     # rho + theta (M y) >= 0 for theta <= 1 / worst
    limit = 1.0 if worst <= 1.0 else 1.0 / worst
    yy, by = float(y @ y), float(b @ y)
    theta = min(max(-by / yy, 0.0), limit) if yy > 0 else 0.0
    return -0.5 * theta ** 2 * yy - theta * by


def _ridge_minimizer(g, gamma, cap):
    """argmin_{0 <= r <= cap} g r + gamma/2 (r - 1)^2 per unit."""
    return np.clip(1.0 - g / gamma, 0.0, cap)


def _fista(M, b, rho, gamma, cap, L, r, max_iter, check_every=25, tol=1e-4):
    """Accelerated proximal gradient with adaptive restart, until the relative gap is below `tol` or `max_iter`:
    it only has to bring the right units near the working set; the exact finish does the rest."""
    z, t = r.copy(), 1.0
    for iteration in range(1, max_iter + 1):
        grad = M.dot(M.tdot(z) - b) + gamma * (z - 1)
        r_next = np.clip(z - (grad + rho) / L, 0.0, cap)
        if (z - r_next) @ (r_next - r) > 0:         # momentum points uphill: restart
            t = 1.0
            z = r_next
        else:
            t_next = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
            z = r_next + ((t - 1) / t_next) * (r_next - r)
            t = t_next
        r = r_next
        if iteration % check_every == 0:
            primal = _primal(M, b, rho, gamma, r)
            if primal - _dual_value(M, b, rho, gamma, cap, M.tdot(r) - b) <= tol * max(abs(primal), 1e-300):
                break
    return r, iteration


def _newton(M, b, rho, gamma, cap, y, max_iter=100):
    """The elastic net's exact finish: minimize Psi(y) = -D(y), a convex piecewise quadratic in k variables with
    gradient y + b - M'r(y) and generalized Hessian I + M_F' diag(1 / gamma_F) M_F over the units F strictly
    inside their bounds, by Newton steps with Armijo backtracking. Returns (r(y), steps)."""
    def psi(y):
        g = rho + M.dot(y)
        r = _ridge_minimizer(g, gamma, cap)
        return 0.5 * y @ y + b @ y - float(np.sum(g * r + 0.5 * gamma * (r - 1) ** 2)), r

    value, r = psi(y)
    for step in range(1, max_iter + 1):
        grad = y + b - M.tdot(r)
        if np.max(np.abs(grad)) <= 1e-13 * (1 + np.max(np.abs(b))):
            return r, step - 1
        free = (r > 0) & (r < cap)
        direction = np.linalg.solve(np.eye(len(y)) + M.gram(np.where(free, 1.0 / gamma, 0.0)), grad)
        size = 1.0
        while size > 1e-12:
            trial_value, trial_r = psi(y - size * direction)
            if trial_value <= value - 1e-4 * size * (grad @ direction):
                break
            size *= 0.5
        else:
            return r, step
        y, value, r = y - size * direction, trial_value, trial_r
    return r, max_iter


def _crossover(M, b, rho, cap, r):
    """For a cap: jump to a vertex of the optimal face, then solve exactly on its free records.

    With y = M'r - b from FISTA, an optimal r* minimizes the linear cost (rho + M y*)'r over {M'r = b + y*,
    0 <= r <= cap} (the KKT conditions). Solving that LP at FISTA's y (HiGHS dual simplex) gives a vertex: at most
    k records strictly between 0 and the cap. Keeping its capped set, the records between are solved for exactly
    (`_restricted`). Returns that r when its duality gap is below GAP_TOLERANCE, else None (the working set
    takes over). Where many records sit at the cap this replaces hundreds of working-set rounds by one LP."""
    y = M.tdot(r) - b
    lp = scipy.optimize.linprog(rho + M.dot(y), A_eq=M.take(slice(None)).T, b_eq=b + y, bounds=(0.0, cap),
                                method="highs-ds")                     # HiGHS gets a dense copy of M
    if lp.status != 0:
        return None
    capped = lp.x >= cap * (1 - 1e-12)
    between = np.flatnonzero((lp.x > 0) & ~capped)
    r = np.where(capped, cap, 0.0)
    r[between] = np.minimum(_restricted(M.take(between), b - M.tdot(r), rho[between]), cap)
    gamma = np.zeros_like(rho)
    primal = _primal(M, b, rho, gamma, r)
    gap = primal - _dual_value(M, b, rho, gamma, cap, M.tdot(r) - b)
    return r if gap <= GAP_TOLERANCE * max(abs(primal), 1e-300) else None


def _finish(M, b, rho, cap, r, max_rounds=500):
    """Exact solution by the working-set method of the module docstring, started from FISTA's point. A restricted
    solve is a vertex with at most k + 1 units strictly between the bounds, so each round caps at most that many:
    a solution with many records at the cap takes many rounds (250 rounds, 0.3 s, for 1,234 capped records of
    5,000 with k = 6)."""
    capped = r >= 0.5 * cap               # near the cap after FISTA: start there (released again if wrong)
    gradient = rho + M.dot(M.tdot(r) - b)
    candidates = ((r > 0) | (gradient <= 1e-3 * float(np.max(np.abs(gradient))))) & ~capped
    tol = _allowance(M.abs_dot(np.abs(b)), rho)
    for round_ in range(1, max_rounds + 1):
        r = np.where(capped, cap, 0.0)
        index = np.flatnonzero(candidates)
        r[index] = _restricted(M.take(index), b - M.tdot(r), rho[index])
        over = candidates & (r > cap)
        capped |= over
        candidates &= ~over
        r = np.minimum(r, cap)
        gradient = rho + M.dot(M.tdot(r) - b)
        enter = ~candidates & ~capped & (gradient < -tol)
        release = capped & (gradient > tol)
        if not (over.any() or enter.any() or release.any()):
            return r, round_
        candidates |= enter | release
        capped &= ~release
    return r, max_rounds


def _allowance(abs_Mb, rho):
    """How far below 0 a unit's gradient rho_i + (M y)_i may be and still count as 0: 1e-9 rho_i, plus the
    rounding of y = M'r - b (about eps |b|) carried through M (abs_Mb = |M| |b|)."""
    return 1e-9 * rho + 8 * np.finfo(float).eps * (abs_Mb + rho)


def _restricted(MC, b, rho_c):
    """argmin_{r >= 0} 1/2 ||MC'r - b||^2 + rho_c'r, exactly, through its least-distance dual (Lawson & Hanson
    1974, ch. 23): min ||z|| s.t. MC z >= h with h = MC b - rho_c, which is the NNLS problem E u ~ e_{k+1} with
    E = [MC'; h']; then r = u / (1 - h'u) and the unit gradients are g = rho_c + MC y = -(E'(f - E u)) / (1 - h'u)."""
    if len(MC) == 0:
        return np.zeros(0)
    h = MC @ b - rho_c
    E = np.vstack([MC.T, h[None, :]])
    f = np.zeros(E.shape[0])
    f[-1] = 1.0
    u = _nnls(E, f, _allowance(np.abs(MC) @ np.abs(b), rho_c))
    return u / (1.0 - h @ u)


def _nnls(E, f, allowance, max_iter=None):
    """Lawson-Hanson active-set NNLS, min ||E u - f|| over u >= 0, stopping when no unit's gradient in the caller's
    units, -(E'(f - E u)) / (1 - h'u), is below -allowance (scipy's nnls has no settable tolerance, and the
    calibration duals need one relative to rho)."""
    m, n = E.shape
    u, passive = np.zeros(n), np.zeros(n, bool)
    for _ in range(max_iter or 3 * n + 10):
        residual = f - E @ u
        w = E.T @ residual
        scale = max(residual[-1], 1e-300)          # = 1 - h'u > 0
        score = np.where(passive, -np.inf, w - scale * allowance)
        j = int(np.argmax(score))
        if score[j] <= 0:
            break
        passive[j] = True
        for _ in range(n):                           # each pass drops at least one unit from the passive set
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(E[:, passive], f, rcond=None)[0]
            if np.all(z[passive] > 0):
                u = z
                break
            negative = np.flatnonzero(passive & (z <= 0))
            ratios = u[negative] / (u[negative] - z[negative])
            alpha = float(np.min(ratios))
            u = u + alpha * (z - u)
            u[negative[np.argmin(ratios)]] = 0.0     # the unit that reaches 0 leaves, exactly
            passive &= u > 0
            u[~passive] = 0.0
    return u
