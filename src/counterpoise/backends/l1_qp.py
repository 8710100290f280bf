"""The exact proximal Newton step for a smooth function plus an l1 term, from the quadratic model at y:

    minimize over d   q(d) = 1/2 d'Hd + g'd + sum_j delta_j |y_j + d_j|,
                      H symmetric positive definite (k x k, k small), delta_j >= 0 (0: an unpenalized variable)

`delta` may also be a pair (a, b) of one-sided slopes, the term psi_j(z) = a_j max(z, 0) + b_j max(-z, 0) (a = b =
delta above): the multiplier of a one-sided row l <= a'w (or a'w <= u) may not take one sign, which is a slope of
+inf on that side (a_j = inf: z_j <= 0; b_j = inf: z_j >= 0). Every rule below reads "sign(z) delta" as the slope
on z's side and "|grad| <= delta" as -a <= grad <= b; the symmetric case is the l1 term exactly.

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


def slopes(delta):
    """(a, b): the slopes of the l1 term to the right and to the left of zero (`delta` itself, or a pair)."""
    return delta if isinstance(delta, tuple) else (delta, delta)


def psi(a, b, z):
    """a max(z, 0) + b max(-z, 0), elementwise; +inf where z is on a side of infinite slope, 0 at z = 0."""
    with np.errstate(invalid="ignore"):
        return np.where(z > 0, a * z, np.where(z < 0, -b * z, 0.0))


def slope_at(a, b, sign):
    """The slope on the side `sign` (+1: a, -1: -b, 0: 0)."""
    return np.where(sign > 0, a, np.where(sign < 0, -b, 0.0))


def l1_change(delta, y, D):
    """psi(y + d) - psi(y) (psi the l1 term) for each row d of D, exact where the sign is kept (the slope on y's
    side times d), so that a small step's change is not lost to rounding against |y|."""
    a, b = slopes(delta)
    if a is b:
        Z = y + D
        kept = (np.sign(Z) == np.sign(y)) & (y != 0)
        return np.where(kept, np.sign(y) * D, np.abs(Z) - np.abs(y)) @ delta
    Z = y + np.atleast_2d(D)
    kept = (np.sign(Z) == np.sign(y)) & (y != 0)
    with np.errstate(invalid="ignore"):
        change = np.where(kept, slope_at(a, b, np.sign(y)) * D, psi(a, b, Z) - psi(a, b, y))
    return change.sum(axis=1) if change.ndim == 2 else change.sum()


def objective(H, g, delta, y, D):
    """q(d) - q(0) at each row d of D: the change of the model from y."""
    D = np.atleast_2d(D)
    return 0.5 * np.einsum("ij,ij->i", D @ H, D) + D @ g + l1_change(delta, y, D)


def _excess(a, b, grad):
    """How far grad leaves [-a, b], the condition for z = 0 to be optimal (0 inside)."""
    return np.maximum(np.maximum(grad - b, -a - grad), 0.0)


def optimality(H, g, delta, y, d):
    """The largest violation of q's optimality conditions at d (0 at the minimizer)."""
    a, b = slopes(delta)
    grad, z = H @ d + g, y + d
    with np.errstate(invalid="ignore"):
        on_side = np.abs(grad + slope_at(a, b, np.sign(z)))
    return float(np.max(np.where(z != 0, on_side, _excess(a, b, grad)), initial=0.0))


def _solve(H, r):
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, check_finite=False), r, check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(H, r, rcond=None)[0]


def _sign_fixed(H, g, delta, y, active, sign):
    """The minimizer of q with z = y + d held at 0 off `active` and sign(z_j) = sign_j on it: the linear system
    H_AA d_A = -(g_A + delta_A sign_A + H_AR d_R), d_R = -y_R."""
    a, b = slopes(delta)
    d = -y.copy()
    off = np.ones(len(g), bool)
    off[active] = False
    rest = np.flatnonzero(off)
    d[active] = _solve(H[np.ix_(active, active)],
                       -(g[active] + slope_at(a[active], b[active], sign) + H[np.ix_(active, rest)] @ d[rest]))
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
    a, b = slopes(delta)
    crossing = np.flatnonzero(~zero & (np.sign(goal) != np.sign(z)) & ((a > 0) | (b > 0)))
    steps = np.append(z[crossing] / -change[crossing], 1.0)
    candidates = d + steps[:, None] * change
    candidates[np.arange(len(crossing)), crossing] = -y[crossing]
    values = objective(H, g, delta, y, candidates)
    best = int(np.argmin(values))
    return (candidates[best], values[best]) if values[best] < value else None


def _dual_box_newton(H, g, delta, y, iterations=500):
    """q's dual, a box-constrained QP: with M = H^-1 and z(u) = y - M (g + u),

        minimize  phi(u) = 1/2 (g + u)'M(g + u) - y'u   over  -b <= u <= a (-delta <= u <= delta),  grad phi = -z(u),

    by Bertsekas' (1982) projected Newton method: the variables at a bound that the gradient pushes outwards stay
    there, Newton on the others, an Armijo search along the projection arc. Ill-conditioned H, where the primal
    moves crawl, is no harder here, though where many of u's bounds switch one by one it can take 150 iterations
    (a kernel SBW draw at n = 2,000 with two tolerances, 106 variables). Returns the primal step d = z(u) - y
    with z set to exactly 0 wherever u is strictly inside its box (complementarity), the rest solved again with
    those signs (+ where u is at a, - where at -b)."""
    a, b = slopes(delta)
    k = len(g)
    M = _solve(H, np.eye(k))
    M = (M + M.T) / 2
    u = np.zeros(k)
    phi = lambda u: 0.5 * (g + u) @ M @ (g + u) - y @ u
    value = phi(u)
    for _ in range(iterations):
        grad = M @ (g + u) - y
        at_lower, at_upper = _at_bounds(a, b, u, 1e-12)
        binding = (at_lower & (grad > 0)) | (at_upper & (grad < 0)) | ((a == 0) & (b == 0))
        free = np.flatnonzero(~binding)
        projected = np.where(binding, 0.0, grad)
        if not len(free) or np.max(np.abs(projected)) <= 1e-14 * max(np.max(np.abs(y), initial=0.0), 1e-300):
            break
        step = np.zeros(k)
        step[free] = -_solve(M[np.ix_(free, free)], grad[free])
        alpha = 1.0
        for _ in range(60):
            trial = np.clip(u + alpha * step, -b, a)
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
    at_lower, at_upper = _at_bounds(a, b, u, 1e-9)
    kinked = (a > 0) | (b > 0)
    active = np.flatnonzero(at_lower | at_upper | ~kinked)
    sign = np.where(~kinked, np.sign(z), np.where(at_upper, 1.0, -1.0))
    return _sign_fixed(H, g, delta, y, active, sign[active])


def _at_bounds(a, b, u, relative):
    """Where u sits at its lower bound -b and at its upper bound a, within `relative` of the bound."""
    with np.errstate(invalid="ignore"):
        return u <= -b + relative * np.maximum(b, 1e-300), u >= a - relative * np.maximum(a, 1e-300)


def minimize(H, g, delta, y, tol=1e-13, max_moves=None):
    """argmin q: see `_minimize`; without an l1 term (every delta 0: equalities only) the Newton step -H^-1 g. The
    moves run on one BLAS thread: every product there is k x k, too small to share, and a second thread's start-up
    costs more than the product, far more when the other cores are busy."""
    if not isinstance(delta, tuple) and not np.any(delta):
        return -_solve(H, g)
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
        finite = np.concatenate([v[np.isfinite(v)] for v in slopes(delta)])
        scale = max(np.max(np.abs(g), initial=0.0), np.max(np.abs(H @ d), initial=0.0), np.max(finite, initial=0.0))
        if optimality(H, g, delta, y, d) <= tol * max(scale, 1e-300):
            return d
        z = y + d
        excess = np.where(z == 0, _excess(*slopes(delta), grad), -np.inf)
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
