"""The terms a weighting problem is made of.

A term is one mathematical idea (a dispersion objective, a balance constraint, a normalization, a
bound). It knows three things: its cvxpy form (`objective(w)` and `constraints(w)`, written with
`cvxpy.Parameter`s so that a path is compiled once), its value at a numpy weight vector
(`value(w)`), and how far a numpy weight vector violates it (`violation(w)`, in the term's own
scaled units). Backends read terms; terms never know about backends.

A researcher adds a constraint by subclassing `Term`; see `MaxShare` for a complete example.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np


class Term:
    """Base class. Subclasses override what applies to them; the defaults are "contributes nothing"."""

    name = "term"

    def parameters(self) -> dict[str, cp.Parameter]:
        """The swept quantities of this term, by short name (e.g. {"delta": ...})."""
        return {}

    def objective(self, w) -> cp.Expression | None:
        """This term's contribution to the objective (a convex cvxpy expression), or None."""
        return None

    def constraints(self, w) -> list:
        """This term's cvxpy constraints on the weight vector `w` (a cvxpy expression of length n)."""
        return []

    def value(self, w: np.ndarray) -> float:
        """The objective contribution at numpy weights `w`."""
        return 0.0

    def objective_scale(self) -> float | None:
        """The objective's natural magnitude (its value at w = 0), so a backend can solve it at scale 1; None
        for a term that does not know it (a backend then relies on the other objective terms)."""
        return None

    def violation(self, w: np.ndarray) -> float:
        """Largest violation of this term's constraints at numpy weights `w` (0 when satisfied)."""
        return 0.0

    def dual(self, constraints) -> np.ndarray | None:
        """Per-column dual values read off this term's solved cvxpy `constraints`, where that means something."""
        return None


def _select(w, rows):
    return w if rows is None else w[rows]


def _parameter(value, name, nonneg=False):
    value = np.asarray(value, dtype=float)
    return cp.Parameter(value.shape, name=name, value=value, nonneg=nonneg)


class ChiSquare(Term):
    """Chi-square dispersion: sum_i (w_i - c_i + tau h_i)^2 / s_i (tau = 0 unless a `tau` is given).

    SBW (Zubizarreta 2015) uses c = d / sum(d), s = d / mean(d) within each arm, which is the
    variance of the weights sum (w_i - 1/n)^2 for unit base weights d. Linear (GREG) calibration
    uses c = d, s = 2 d, the Deville-Sarndal distance sum d_i (g_i - 1)^2 / 2 with g = w / d.
    `tau` (a Parameter "tau") with a fixed `shift` h moves the center to c - tau h; since
    sum (w - c + tau h)^2 / s = sum (w - c)^2 / s + 2 tau sum h w / s + const, this adds a linear penalty: with
    s = 2 d sum(d) and h = mean(d) it is tau mean(w / d) (exact-target sparse calibration).
    """

    name = "chi_square"

    def __init__(self, center, scale, tau=None, shift=None, name=None):
        self.base_center = np.asarray(center, dtype=float)
        self.scale = np.asarray(scale, dtype=float)
        self.name = name or self.name
        self.tau = None if tau is None else cp.Parameter(nonneg=True, name=f"{self.name}.tau", value=float(tau))
        self.shift = None if tau is None else np.broadcast_to(np.asarray(shift, dtype=float), self.base_center.shape)

    @property
    def center(self):
        return self.base_center if self.tau is None else self.base_center - self.tau.value * self.shift

    def parameters(self):
        return {} if self.tau is None else {"tau": self.tau}

    def objective(self, w):
        center = self.base_center if self.tau is None else self.base_center - self.tau * self.shift
        return cp.sum_squares(cp.multiply(w - center, 1.0 / np.sqrt(self.scale)))

    def value(self, w):
        return float(np.sum((w - self.center) ** 2 / self.scale))

    def objective_scale(self):
        return float(np.sum(self.base_center ** 2 / self.scale))


class Entropy(Term):
    """Entropy (KL) distance to base weights: sum_i v_i log(v_i / q_i) - v_i + q_i with v = w - o.

    With sum w = sum q = 1 and no offset o this is KL(w || q), entropy balancing (Hainmueller 2012); with q = d it
    is the raking distance sum d_i G(w_i / d_i), G(g) = g log g - g + 1 (Deville-Sarndal). An offset o keeps every
    w_i >= o_i: balnet's dual, where 1/P(arm | x) >= 1 puts w_i = o_i + q_i exp(-eta_i) with o = q.
    """

    name = "entropy"

    def __init__(self, base, offset=None, name=None):
        self.base = np.asarray(base, dtype=float)
        self.offset = None if offset is None else np.asarray(offset, dtype=float)
        self.name = name or self.name

    def _excess(self, w):
        return w if self.offset is None else w - self.offset

    def objective(self, w):
        return cp.sum(cp.kl_div(self._excess(w), self.base))

    def value(self, w):
        v = np.maximum(self._excess(w), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            vlogv = np.where(v > 0, v * np.log(v / self.base), 0.0)
        return float(np.sum(vlogv - v + self.base))

    def objective_scale(self):
        return float(np.sum(self.base))

    def violation(self, w):
        """Weights below the offset (0 by default) are outside the entropy's domain; in units of the mean base
        weight."""
        return max(float(-np.min(self._excess(w))), 0.0) / float(np.mean(self.base))


def logit_distance(g, lower, upper):
    """The logit distance per unit, G(g) = [(g-L) log((g-L)/(1-L)) + (U-g) log((U-g)/(U-1))] / A, for L <= g <= U."""
    def xlogx_over(x, y):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0) / y), 0.0)

    A = (upper - lower) / ((1 - lower) * (upper - 1))
    return (xlogx_over(g - lower, 1 - lower) + xlogx_over(upper - g, upper - 1)) / A


class Logit(Term):
    """Deville-Sarndal logit distance with ratio bounds L < g = w/d < U:

    sum_i d_i G(g_i), G(g) = [(g-L) log((g-L)/(1-L)) + (U-g) log((U-g)/(U-1))] / A,
    A = (U-L) / ((1-L)(U-1)). Its calibration weights are survey::calibrate's calfun="logit".
    The bounds are part of the distance's domain, so they are fixed when the term is built (not Parameters).
    """

    name = "logit"

    def __init__(self, base, lower, upper, name=None):
        if not (0 <= lower < 1 < upper < np.inf):
            raise ValueError("logit distance needs ratio bounds 0 <= L < 1 < U < inf")
        self.base = np.asarray(base, dtype=float)
        self.lower, self.upper = float(lower), float(upper)
        self.A = (upper - lower) / ((1 - lower) * (upper - 1))
        self.name = name or self.name

    def objective(self, w):
        d, L, U = self.base, self.lower, self.upper
        return (cp.sum(cp.rel_entr(w - L * d, (1 - L) * d)) + cp.sum(cp.rel_entr(U * d - w, (U - 1) * d))) / self.A

    def value(self, w):
        g = np.clip(w / self.base, self.lower, self.upper)
        return float(np.sum(self.base * logit_distance(g, self.lower, self.upper)))

    def objective_scale(self):
        return float(np.sum(self.base))

    def violation(self, w):
        """How far g = w/d leaves [L, U] (the distance's domain), in units of g."""
        g = w / self.base
        return max(float(np.max(self.lower - g)), float(np.max(g - self.upper)), 0.0)


class Balance(Term):
    """Approximate balance: |(B_j' w - t_j) / s_j| <= delta_j for every column j of B.

    B holds the balance functions of the units in `rows`, t the targets (Parameter "target") and s the
    fixed scales that make delta unit-free (target SDs for delta in SD units, 1 for raw units, |t| for
    relative tolerances). `delta=None` asks for exact balance B'w = t. The dual of column j is the
    objective's sensitivity to its tolerance: the objective falls by about |dual_j| per unit of extra
    delta_j; the sign says which side binds (+: the weighted value sits at its upper limit).
    """

    name = "balance"

    def __init__(self, B, target, delta=None, scale=None, rows=None, columns=None, name=None):
        k = np.shape(B)[1]
        self.scale = np.ones(k) if scale is None else np.asarray(scale, dtype=float)
        self.rows = rows
        self.columns = list(columns) if columns is not None else [f"b{j}" for j in range(k)]
        self.name = name or self.name
        self.target = _parameter(target, f"{self.name}.target")
        self.exact = delta is None
        self.delta = None if self.exact else _parameter(np.broadcast_to(delta, (k,)), f"{self.name}.delta", nonneg=True)
        self._scaled = np.ascontiguousarray(np.asarray(B, dtype=float) / self.scale)   # the only copy of B kept

    @property
    def B(self):
        """The balance functions of the units in `rows`, unscaled."""
        return self._scaled * self.scale

    def parameters(self):
        params = {"target": self.target}
        if not self.exact:
            params["delta"] = self.delta
        return params

    def imbalance(self, w):
        """(B'w - t) / s: the scaled imbalance, a cvxpy expression or a numpy array."""
        if isinstance(w, np.ndarray):
            return (_select(w, self.rows) @ self._scaled) - self.target.value / self.scale
        return self._scaled.T @ _select(w, self.rows) - cp.multiply(self.target, 1.0 / self.scale)

    def constraints(self, w, slack=None):
        """Balance constraints; with a nonnegative `slack` vector they are loosened by it (infeasibility diagnosis)."""
        gap = self.imbalance(w)
        if self.exact and slack is None:
            return [gap == 0]
        limit = (0 if self.exact else self.delta) + (0 if slack is None else slack)
        return [gap <= limit, -gap <= limit]

    def violation(self, w):
        gap = np.abs(self.imbalance(w))
        limit = 0.0 if self.exact else self.delta.value
        return float(np.max(gap - limit, initial=0.0))

    def dual(self, constraints):
        if constraints[0].dual_value is None:
            return None
        if len(constraints) == 1:
            return np.asarray(constraints[0].dual_value, dtype=float).ravel()
        return np.asarray(constraints[0].dual_value - constraints[1].dual_value, dtype=float).ravel()


class ImbalanceBudget(Term):
    """Group imbalance budget: the weight-space dual of an elastic-net penalty on balancing coefficients.

    With gap_g = (B_g'w - t_g) / s_g the scaled imbalance of group g of columns and penalty factors pf_g:
    alpha = 1 (group lasso): ||gap_g||_2 <= lam pf_g, an l-infinity budget |gap_j| <= lam pf_j for groups of one;
    alpha < 1: the objective gains sum_g (||gap_g|| - lam alpha pf_g)_+^2 / (2 lam (1 - alpha) pf_g), the conjugate
    of lam pf_g (alpha ||b_g|| + (1 - alpha)/2 ||b_g||^2). Unpenalized groups (pf_g = 0) are balanced exactly.
    Parameter: "lam".
    """

    name = "budget"

    def __init__(self, B, target, scale, groups, penalty, lam, alpha=1.0, columns=None, name=None):
        self._scaled = np.ascontiguousarray(np.asarray(B, dtype=float) / scale)
        self._target = np.asarray(target, dtype=float) / scale
        self.groups = [np.asarray(g, dtype=int) for g in groups]
        self.penalty = np.asarray(penalty, dtype=float)
        self.alpha = float(alpha)
        self.columns = list(columns) if columns is not None else [f"b{j}" for j in range(self._scaled.shape[1])]
        self.name = name or self.name
        self.lam = cp.Parameter(nonneg=True, name=f"{self.name}.lam", value=float(lam))
        self._lam_copy = cp.Variable(nonneg=True) if alpha < 1 else None   # == lam, out of a denominator (DPP)
        self._singletons = all(len(g) == 1 for g in self.groups)

    def parameters(self):
        return {"lam": self.lam}

    def _gap(self, w):
        if isinstance(w, np.ndarray):
            return w @ self._scaled - self._target
        return self._scaled.T @ w - self._target

    def _norms(self, gap):
        if self._singletons:
            order = np.concatenate(self.groups)
            return cp.abs(gap[order]) if not isinstance(gap, np.ndarray) else np.abs(gap[order])
        if isinstance(gap, np.ndarray):
            return np.array([np.linalg.norm(gap[g]) for g in self.groups])
        return cp.hstack([cp.norm(gap[g], 2) for g in self.groups])

    def constraints(self, w):
        gap, free = self._gap(w), self.penalty == 0
        norms = self._norms(gap)
        cons = [gap[np.concatenate([self.groups[g] for g in np.flatnonzero(free)])] == 0] if free.any() else []
        held = np.flatnonzero(~free)
        if self.alpha == 1:
            cons.append(norms[held] <= self.lam * self.penalty[held])
        else:
            cons.append(self._lam_copy == self.lam)
        return cons

    def objective(self, w):
        if self.alpha == 1:
            return None
        held = np.flatnonzero(self.penalty > 0)
        excess = cp.pos(self._norms(self._gap(w))[held] - self.lam * self.alpha * self.penalty[held])
        return sum(cp.quad_over_lin(excess[k], 2 * (1 - self.alpha) * self.penalty[g] * self._lam_copy)
                   for k, g in enumerate(held))

    def value(self, w):
        if self.alpha == 1:
            return 0.0
        norms, lam, held = self._norms(self._gap(w)), self.lam.value, self.penalty > 0
        excess = np.maximum(norms[held] - lam * self.alpha * self.penalty[held], 0.0)
        return float(np.sum(excess ** 2 / (2 * lam * (1 - self.alpha) * self.penalty[held])))

    def violation(self, w):
        norms = self._norms(self._gap(w))
        limit = np.where(self.penalty == 0, 0.0, np.inf if self.alpha < 1 else self.lam.value * self.penalty)
        return float(np.max(norms - limit, initial=0.0))


class Normalize(Term):
    """sum_{i in rows} w_i = total."""

    name = "normalize"

    def __init__(self, total, rows=None, name=None):
        self.total = float(total)
        self.rows = rows
        self.name = name or self.name

    def constraints(self, w):
        return [cp.sum(_select(w, self.rows)) == self.total]

    def violation(self, w):
        return abs(float(np.sum(_select(w, self.rows))) - self.total) / abs(self.total)


class Bounds(Term):
    """lower_i <= w_i / r_i <= upper_i, with r = 1 (bounds on w) or r = d (bounds on the ratio g = w/d).

    Bounds are scalars or per-unit arrays, held in Parameters ("lower", "upper") so they can be swept
    (keep them scalar where you can: cvxpy compiles a scalar parameter faster). Violations are reported in
    units of the mean reference weight, so 1e-6 means "a millionth of a typical weight".
    """

    name = "bounds"

    def __init__(self, lower=None, upper=None, reference=None, name=None):
        self.reference = None if reference is None else np.asarray(reference, dtype=float)
        self.name = name or self.name
        self.lower = None if lower is None else _parameter(lower, f"{self.name}.lower")
        self.upper = None if upper is None else _parameter(upper, f"{self.name}.upper")

    def parameters(self):
        return {k: p for k, p in (("lower", self.lower), ("upper", self.upper)) if p is not None}

    def _limit(self, param):
        return param if self.reference is None else cp.multiply(param, self.reference)

    def constraints(self, w):
        cons = []
        if self.lower is not None:
            cons.append(w >= self._limit(self.lower))
        if self.upper is not None:
            cons.append(w <= self._limit(self.upper))
        return cons

    def violation(self, w):
        ref = np.ones_like(w) if self.reference is None else self.reference
        unit = float(np.mean(ref)) if self.reference is not None else max(float(np.mean(np.abs(w))), 1e-300)
        worst = 0.0
        if self.lower is not None:
            worst = max(worst, float(np.max(self.lower.value * ref - w, initial=0.0)))
        if self.upper is not None:
            worst = max(worst, float(np.max(w - self.upper.value * ref, initial=0.0)))
        return worst / unit


class SparseLoss(Term):
    """Non-negative relative-loss lasso objective (sparse calibration), optionally an elastic net:

    1/2 sum_j ((B_j' w - b_j) / s_j)^2 + lam * mean_i(w_i / w0_i) + ridge/2 * sum_i w0_i (w_i / w0_i - 1)^2 / sum(w0),

    with s_j = max(|b_j|, floor) fixed when the problem is built (changing the targets later keeps these scales).
    With w >= 0 the L1 term is linear. The ridge term is the chi-square distance to w0 over the total base weight:
    it makes the path unique and keeps many records active. Parameters: "target" (b), "lam" and "ridge".
    """

    name = "sparse_loss"

    def __init__(self, B, target, lam, w0, floor=1.0, ridge=0.0, columns=None, name=None):
        self.B = np.ascontiguousarray(B, dtype=float)
        self.w0 = np.asarray(w0, dtype=float)
        target = np.asarray(target, dtype=float)
        self.scale = np.maximum(np.abs(target), floor)
        self.columns = list(columns) if columns is not None else [f"b{j}" for j in range(self.B.shape[1])]
        self.name = name or self.name
        self.target = _parameter(target, f"{self.name}.target")
        self.lam = _parameter(lam, f"{self.name}.lam", nonneg=True)
        self.ridge = _parameter(ridge, f"{self.name}.ridge", nonneg=True)
        self._scaled = self.B / self.scale

    def parameters(self):
        return {"target": self.target, "lam": self.lam, "ridge": self.ridge}

    def objective(self, w):
        residual = self._scaled.T @ w - cp.multiply(self.target, 1.0 / self.scale)
        spread = cp.sum_squares(cp.multiply(w - self.w0, 1.0 / np.sqrt(self.w0))) / (2 * self.w0.sum())
        return (0.5 * cp.sum_squares(residual) + self.lam * cp.sum(cp.multiply(w, 1.0 / (self.w0 * len(self.w0))))
                + self.ridge * spread)

    def value(self, w):
        residual = w @ self._scaled - self.target.value / self.scale
        spread = np.sum((w - self.w0) ** 2 / self.w0) / (2 * self.w0.sum())
        return float(0.5 * residual @ residual + self.lam.value * np.mean(w / self.w0) + self.ridge.value * spread)


class MaxShare(Term):
    """No unit carries more than `share` of the total weight: w_i <= share * sum(w).

    Also the worked example of a user-written term: a constructor, `parameters`, `constraints` and
    `violation` are all a term needs to solve on cvxpy.
    """

    name = "max_share"

    def __init__(self, share, name=None):
        self.name = name or self.name
        self.share = cp.Parameter(nonneg=True, name=f"{self.name}.share", value=float(share))

    def parameters(self):
        return {"share": self.share}

    def constraints(self, w):
        return [w <= self.share * cp.sum(w)]

    def violation(self, w):
        return max(float(np.max(w) - self.share.value * np.sum(w)), 0.0) / max(float(np.mean(np.abs(w))), 1e-300)
