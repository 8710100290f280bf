"""The exact proximal Newton step for a smooth function plus an l1 term, from the quadratic model at y:

    minimize over d   q(d) = 1/2 d'Hd + g'd + sum_j delta_j |y_j + d_j|,
                      H symmetric positive definite (k x k, k small), delta_j >= 0 (0: an unpenalized variable)

by feature-sign search (Lee, Battle, Raina & Ng 2007, "Efficient sparse coding algorithms") on z = y + d: guess the
sign of every variable that is nonzero or whose zero violates optimality (|grad_j| > delta_j), solve the linear
system of q on those variables with the signs fixed, and move from the current point towards that solution,
stopping at the best of the points where a variable changes sign (q evaluated exactly there) and the full move.
Each move strictly decreases q, so the sign pattern never repeats and the search ends, in a few linear solves of
at most k variables, at d with (grad = H d + g, z = y + d)

    grad_j + delta_j sign(z_j) = 0 where z_j != 0,    |grad_j| <= delta_j where z_j = 0.

The step d, not the point z, is the unknown: near the optimum d is small while y need not be, and solving for z
would lose d's digits to the cancellation in z - y.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


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
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(H), r)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(H, r, rcond=None)[0]


def _move(H, g, delta, y, d, value, active, grad):
    """Feature-sign move on the variables `active` (signs: z's, or -grad's where z = y + d is 0; the others held
    at z = 0): the best of the points on the segment from d to the sign-fixed solution where a nonzero z_j reaches
    zero, and the solution itself. (d there, q there), or None when none lowers q."""
    z = y + d
    zero = z == 0
    sign = np.where(zero, -np.sign(grad), np.sign(z))[active]
    target = -y.copy()                                    # z = 0 off the active set
    rest = np.setdiff1d(np.arange(len(g)), active)
    target[active] = _solve(H[np.ix_(active, active)],
                            -(g[active] + delta[active] * sign + H[np.ix_(active, rest)] @ target[rest]))
    change = target - d
    goal = y + target
    crossing = np.flatnonzero(~zero & (np.sign(goal) != np.sign(z)) & (delta > 0))
    steps = np.append(z[crossing] / -change[crossing], 1.0)
    candidates = d + steps[:, None] * change
    candidates[np.arange(len(crossing)), crossing] = -y[crossing]
    values = objective(H, g, delta, y, candidates)
    best = int(np.argmin(values))
    return (candidates[best], values[best]) if values[best] < value else None


def minimize(H, g, delta, y, tol=1e-13, max_moves=None):
    """argmin q from d = 0 (see the module): d after the last move that decreased q, stopping when the optimality
    violation is at most tol times the problem's scale (|g|, |H d|, delta).

    Each move first activates every zero that violates optimality at once; when that does not lower q (a
    variable's guessed sign was wrong), it activates only the worst one, as Lee et al. do, and then none."""
    d = np.zeros(len(g))
    value = objective(H, g, delta, y, d)[0]
    for _ in range(max_moves or 4 * len(g) + 20):
        grad = H @ d + g
        scale = max(np.max(np.abs(g), initial=0.0), np.max(np.abs(H @ d), initial=0.0), np.max(delta, initial=0.0))
        if optimality(H, g, delta, y, d) <= tol * max(scale, 1e-300):
            break
        z = y + d
        excess = np.where(z == 0, np.abs(grad) - delta, -np.inf)
        nonzero = np.flatnonzero(z != 0)
        violators = np.flatnonzero(excess > 0)
        worst = violators[np.argmax(excess[violators])][None] if len(violators) else violators
        for active in (np.union1d(nonzero, violators), np.union1d(nonzero, worst), nonzero):
            moved = _move(H, g, delta, y, d, value, active, grad) if len(active) else None
            if moved is not None:
                d, value = moved
                break
        else:
            break
    return d
