"""The imbalance budget of balnet's weight-space dual (`reference.dual_problem`): a `Term` that bounds each group's
scaled imbalance by lam times its penalty factor, the conjugate of the group elastic-net penalty."""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from ..terms import Term


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
