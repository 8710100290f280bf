"""The exact proximal Newton step for a smooth function plus an l1 term, from the quadratic model at y:

    minimize over d   q(d) = 1/2 d'Hd + g'd + sum_j delta_j |y_j + d_j|,
                      H symmetric positive definite (k x k, k small), delta_j >= 0 (0: an unpenalized variable)

by feature-sign search (Lee, Battle, Raina & Ng 2007, "Efficient sparse coding algorithms") on z = y + d: guess the
sign of every variable that is nonzero or whose zero violates optimality (|grad_j| > delta_j), solve the linear
system of q on those variables with the signs fixed, and move from the current point towards that solution,
stopping at the best of the points where a variable changes sign (q evaluated exactly there) and the full move.
Each move strictly decreases q, so the sign pattern never repeats and the search ends, usually in a few linear
solves of at most k variables, at d with (grad = H d + g, z = y + d)

    grad_j + delta_j sign(z_j) = 0 where z_j != 0,    |grad_j| <= delta_j where z_j = 0.

Where many multipliers sit near zero and H is ill-conditioned (kernel SBW's tuning grid at small n) the moves can
crawl, each stopping where one multiplier changes sign; after 20 of them the step's dual, a box-constrained QP, is
solved by projected Newton instead (`_dual_box_newton`), which is not slowed by that.

The step d, not the point z, is the unknown: near the optimum d is small while y need not be, and solving for z
would lose d's digits to the cancellation in z - y.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..threads import one_blas_thread


def l1_change(delta, y, D):
    """sum_j delta_j (|y_j + d_j| - |y_j|) for each row d of D, exact where the sign is kept (sign(y_j) d_j), so
    that a small step's change is not lost to rounding against |y|."""
    Z = y + D
    kept = (np.sign(Z) == np.sign(y)) & (y != 0)
    return np.where(kept, np.sign(y) * D, np.abs(Z) - np.abs(y)) @ delta


def objective(H, g, delta, y, D):
    """q(d) - q(0) at each row d of D: the change of the model from y."""
    D = np.atleast_2d(D)
    return 0.5 * np.einsum("ij,ij->i", D @ H, D) + D @ g + l1_change(delta, y, D)


def optimality(H, g, delta, y, d):
    """The largest violation of q's optimality conditions at d (0 at the minimizer)."""
    grad, z = H @ d + g, y + d
    return float(np.max(np.where(z != 0, np.abs(grad + delta * np.sign(z)), np.maximum(np.abs(grad) - delta, 0.0)),
                        initial=0.0))


def _solve(H, r):
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, check_finite=False), r, check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(H, r, rcond=None)[0]


def _sign_fixed(H, g, delta, y, active, sign):
    """The minimizer of q with z = y + d held at 0 off `active` and sign(z_j) = sign_j on it: the linear system
    H_AA d_A = -(g_A + delta_A sign_A + H_AR d_R), d_R = -y_R."""
    d = -y.copy()
    off = np.ones(len(g), bool)
    off[active] = False
    rest = np.flatnonzero(off)
    d[active] = _solve(H[np.ix_(active, active)],
                       -(g[active] + delta[active] * sign + H[np.ix_(active, rest)] @ d[rest]))
    return d


def _move(H, g, delta, y, d, value, active, grad):
    """Feature-sign move on the variables `active` (signs: z's, or -grad's where z = y + d is 0; the others held
    at z = 0): the best of the points on the segment from d to the sign-fixed solution where a nonzero z_j reaches
    zero, and the solution itself. (d there, q there), or None when none lowers q."""
    z = y + d
    zero = z == 0
    target = _sign_fixed(H, g, delta, y, active, np.where(zero, -np.sign(grad), np.sign(z))[active])
    change = target - d
    goal = y + target
    crossing = np.flatnonzero(~zero & (np.sign(goal) != np.sign(z)) & (delta > 0))
    steps = np.append(z[crossing] / -change[crossing], 1.0)
    candidates = d + steps[:, None] * change
    candidates[np.arange(len(crossing)), crossing] = -y[crossing]
    values = objective(H, g, delta, y, candidates)
    best = int(np.argmin(values))
    return (candidates[best], values[best]) if values[best] < value else None


def _dual_box_newton(H, g, delta, y, iterations=500):
    """q's dual, a box-constrained QP: with M = H^-1 and z(u) = y - M (g + u),

        minimize  phi(u) = 1/2 (g + u)'M(g + u) - y'u   over  -delta <= u <= delta,      grad phi = -z(u),

    by Bertsekas' (1982) projected Newton method: the variables at a bound that the gradient pushes outwards stay
    there, Newton on the others, an Armijo search along the projection arc. Ill-conditioned H, where the primal
    moves crawl, is no harder here, though where many of u's bounds switch one by one it can take 150 iterations
    (a kernel SBW draw at n = 2,000 with two tolerances, 106 variables). Returns the primal step d = z(u) - y
    with z set to exactly 0 wherever u is strictly inside its box (complementarity), the rest solved again with
    those signs."""
    k = len(g)
    M = _solve(H, np.eye(k))
    M = (M + M.T) / 2
    u = np.zeros(k)
    phi = lambda u: 0.5 * (g + u) @ M @ (g + u) - y @ u
    value = phi(u)
    for _ in range(iterations):
        grad = M @ (g + u) - y
        bound = 1e-12 * np.maximum(delta, 1e-300)
        binding = ((u <= -delta + bound) & (grad > 0)) | ((u >= delta - bound) & (grad < 0)) | (delta == 0)
        free = np.flatnonzero(~binding)
        projected = np.where(binding, 0.0, grad)
        if not len(free) or np.max(np.abs(projected)) <= 1e-14 * max(np.max(np.abs(y), initial=0.0), 1e-300):
            break
        step = np.zeros(k)
        step[free] = -_solve(M[np.ix_(free, free)], grad[free])
        alpha = 1.0
        for _ in range(60):
            trial = np.clip(u + alpha * step, -delta, delta)
            trial_value = phi(trial)
            if trial_value <= value + 1e-4 * grad @ (trial - u):
                break
            alpha /= 2
        else:
            break
        if not trial_value < value:
            break
        u, value = trial, trial_value
    z = y - M @ (g + u)
    inside = (np.abs(u) < delta * (1 - 1e-9)) & (delta > 0)
    active = np.flatnonzero(~inside)
    return _sign_fixed(H, g, delta, y, active, np.where(delta == 0, np.sign(z), np.sign(u))[active])


def minimize(H, g, delta, y, tol=1e-13, max_moves=None):
    """argmin q: see `_minimize`. On one BLAS thread: every product here is k x k, too small to share, and a
    second thread's start-up costs more than the product, far more when the other cores are busy."""
    with one_blas_thread():
        return _minimize(H, g, delta, y, tol, max_moves)


def _minimize(H, g, delta, y, tol, max_moves):
    """argmin q (see the module) by feature-sign moves from d = 0, each strictly lowering q, until the optimality
    violation is at most tol times the problem's scale (|g|, |H d|, delta), or after max_moves (default 20).

    Each move first activates every zero that violates optimality at once; when that does not lower q (a
    variable's guessed sign was wrong), it activates only the worst one, as Lee et al. do, and then none. Where
    many multipliers sit near zero the moves can crawl (each stops where one of them changes sign), or stall where
    a multiplier left at 1e-36 by rounding stops a move at once: when the moves run out or none lowers q any more,
    the dual's projected Newton point (`_dual_box_newton`) is taken instead if it lowers q more. Either
    way q(d) < 0 unless d = 0 is optimal, so d is a descent direction for the proximal Newton step; near the
    optimum the signs settle and the moves end at the exact minimizer."""
    k = len(g)
    d, value = np.zeros(k), 0.0
    for _ in range(max_moves or 20):
        grad = H @ d + g
        scale = max(np.max(np.abs(g), initial=0.0), np.max(np.abs(H @ d), initial=0.0), np.max(delta, initial=0.0))
        if optimality(H, g, delta, y, d) <= tol * max(scale, 1e-300):
            return d
        z = y + d
        excess = np.where(z == 0, np.abs(grad) - delta, -np.inf)
        nonzero = z != 0
        violators = excess > 0
        worst = np.zeros(k, bool)
        if violators.any():
            worst[np.argmax(excess)] = True
        for active in map(np.flatnonzero, (nonzero | violators, nonzero | worst, nonzero)):
            moved = _move(H, g, delta, y, d, value, active, grad) if len(active) else None
            if moved is not None:
                d, value = moved
                break
        else:
            break                     # no move lowers q short of its minimum: the moves are stuck
    dual = _dual_box_newton(H, g, delta, y)
    return dual if objective(H, g, delta, y, dual)[0] < value else d
