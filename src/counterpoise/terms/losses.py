"""Losses that trade the targets' fit against the weights: the sparse-calibration lasso and elastic net."""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from ..errors import InputError
from .base import Term, parameter


class SparseLoss(Term):
    """Non-negative relative-loss lasso objective (sparse calibration), optionally an elastic net:

    1/2 sum_j ((B_j' w - b_j) / s_j)^2 + lam * mean_i(w_i / w0_i) + ridge/2 * sum_i w0_i (w_i / w0_i - 1)^2 / sum(w0),

    with s_j = max(|b_j|, floor) fixed when the problem is built (changing the targets later keeps these scales).
    With w >= 0 the L1 term is linear. The ridge term is the chi-square distance to w0 over the total base weight:
    it makes the path unique and keeps many records active. Parameters: "target" (b), "lam" and "ridge".
    B is kept as given (the builder's matrix, shared with the balance table).
    """

    name = "sparse_loss"

    def __init__(self, B, target, lam, w0, floor=1.0, ridge=0.0, columns=None, name=None):
        self.B = np.asarray(B, dtype=float)
        self.w0 = np.asarray(w0, dtype=float)
        target = np.asarray(target, dtype=float)
        self.scale = np.maximum(np.abs(target), floor)
        self.columns = list(columns) if columns is not None else [f"b{j}" for j in range(self.B.shape[1])]
        self.name = name or self.name
        self.target = parameter(target, f"{self.name}.target")
        self.lam = parameter(lam, f"{self.name}.lam", nonneg=True)
        self.ridge = parameter(ridge, f"{self.name}.ridge", nonneg=True)

    def parameters(self):
        return {"target": self.target, "lam": self.lam, "ridge": self.ridge}

    def scaled_target(self) -> np.ndarray:
        """b / s."""
        return np.asarray(self.target.value, dtype=float) / self.scale

    def residual(self, w: np.ndarray) -> np.ndarray:
        """(B'w - b) / s at numpy weights."""
        return (w @ self.B) / self.scale - self.scaled_target()

    def ridge_curvature(self) -> np.ndarray:
        """gamma_i = ridge w0_i / sum(w0): the elastic net's curvature per unit on r = w / w0 (zeros for the lasso)."""
        return float(self.ridge.value) * self.w0 / self.w0.sum()

    def lambda_max(self) -> float:
        """The smallest lam at which w = 0 is optimal. On r = w / w0 the gradient at r = 0 is
        lam / n - w0_i (B_i / s)'(b / s) - gamma_i, so lam_max = n max_i (w0_i (B_i / s)'(b / s) + gamma_i)."""
        b = self.scaled_target()
        return float(len(self.w0) * np.max(self.w0 * (self.B @ (b / self.scale)) + self.ridge_curvature()))

    def check(self):
        """lam >= lam_max makes w = 0 optimal; a lam_max <= 0 means the totals make it optimal for every lam."""
        top, lam = self.lambda_max(), float(self.lam.value)
        if top <= 0:
            raise InputError(f"w = 0 is optimal for every lam with these totals (lam_max = {top:.6g} <= 0): no "
                             "nonnegative weights move the fit towards them (a negative total on a nonnegative "
                             "column?); check the totals, not lam")
        if lam >= top:
            raise InputError(f"lam = {lam:g} sets every weight to 0 (lam_max = {top:.6g} for these targets); "
                             "choose a smaller lam")

    def objective(self, w):
        residual = (self.B / self.scale).T @ w - cp.multiply(self.target, 1.0 / self.scale)
        spread = cp.sum_squares(cp.multiply(w - self.w0, 1.0 / np.sqrt(self.w0))) / (2 * self.w0.sum())
        return (0.5 * cp.sum_squares(residual) + self.lam * cp.sum(cp.multiply(w, 1.0 / (self.w0 * len(self.w0))))
                + self.ridge * spread)

    def value(self, w):
        residual = self.residual(w)
        spread = np.sum((w - self.w0) ** 2 / self.w0) / (2 * self.w0.sum())
        return float(0.5 * residual @ residual + self.lam.value * np.mean(w / self.w0) + self.ridge.value * spread)
