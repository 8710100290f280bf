"""balnet's two cvxpy formulations, the references the adelie path is checked against.

Primal (exponential cone), on the standardized covariates x~ in the covariates' own order:

    minimize_{a, b}  c sum_i w_i (y_i exp(-a - x~_i'b) + (1 - y_i)(a + x~_i'b))
                     + lam sum_g pf_g (alpha ||b_g|| + (1 - alpha)/2 ||b_g||^2)

Dual, in weight space (Tan 2020; Zhao & Percival 2017 for the ATT), over the normalized balancing weights omega of
the arm's units: with q = c w on the arm and the offset o = q (o = 0 for the ATT's odds weights),

    minimize  sum_i v_i log(v_i / q_i) - v_i,  v = omega - o >= 0
    s.t.      sum_i omega_i = 1,  the imbalance of omega against the target within the budget (`ImbalanceBudget`)

Its solution is omega_i = o_i + q_i exp(-eta_i), the fit's weights normalized to sum to 1, and the budget's duals
are the coefficients' group norms.
"""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np
import scipy.special

from ..backends.cvxpy_backend import TIGHT_OPTIONS
from ..diagnostics import BalanceDesign
from ..problem import WeightingProblem
from ..terms import Entropy, Normalize
from . import loss as cal
from .budget import ImbalanceBudget


def standardized(fit, arm):
    """The covariates as the arm's path saw them: (X - center) / spread."""
    return (fit.X - arm.center) / arm.spread


def primal(fit, arm, lam):
    """(cvxpy problem, intercept, coefficients on the standardized scale) for `arm` at `lam` ("lam" is a Parameter:
    set `problem.param_dict["lam"].value` to sweep it without recompiling)."""
    Xs = standardized(fit, arm)
    w = fit.sample_weights / fit.sample_weights.sum()
    on, off = arm.y > 0, arm.y == 0
    a, b = cp.Variable(name="intercept"), cp.Variable(Xs.shape[1], name="coef")
    lam_parameter = cp.Parameter(nonneg=True, name="lam", value=float(lam))
    loss = arm.scale * (w[on] @ cp.exp(-(a + Xs[on] @ b)) + w[off].sum() * a + (w[off] @ Xs[off]) @ b)
    return cp.Problem(cp.Minimize(loss + lam_parameter * _penalty(fit, b))), a, b


def _penalty(fit, b):
    """sum_g pf_g (alpha ||b_g|| + (1 - alpha)/2 ||b_g||^2), groups of one in one vectorized expression (a loop over
    1,000 columns is slow to compile); terms with a zero coefficient are left out."""
    singles = [(g[0], pf) for (_, g), pf in zip(fit.groups, fit.penalty) if len(g) == 1 and pf > 0]
    blocks = [(g, pf) for (_, g), pf in zip(fit.groups, fit.penalty) if len(g) > 1 and pf > 0]
    if singles:
        j, pf = (np.array(v) for v in zip(*singles))
        blocks.append((j, pf))
    terms = []
    for g, pf in blocks:
        vector = np.ndim(pf) > 0
        if fit.alpha > 0:
            terms.append(fit.alpha * (pf @ cp.abs(b[g]) if vector else pf * cp.norm(b[g], 2)))
        if fit.alpha < 1:
            terms.append((1 - fit.alpha) / 2 * (pf @ cp.square(b[g]) if vector else pf * cp.sum_squares(b[g])))
    return cp.sum(cp.hstack(terms))


def dual_problem(fit, arm, lam) -> WeightingProblem:
    """The weight-space dual for `arm` at `lam` as a WeightingProblem over the arm's units (weights sum to 1)."""
    rows = arm.y > 0
    w = fit.sample_weights / fit.sample_weights.sum()
    q = arm.scale * w[rows]
    budget = ImbalanceBudget(fit.X[rows], arm.target_mean, arm.spread, [g for _, g in fit.groups], fit.penalty, lam,
                             fit.alpha, columns=fit.names)
    terms = [Entropy(q, offset=None if arm.att else q, name="entropy"), Normalize(1.0, name="sum"), budget]
    n_arm = int(rows.sum())
    design = BalanceDesign(names=tuple(fit.names), X=fit.X[rows], groups=np.full(n_arm, arm.name, dtype=object),
                           base_weights=fit.sample_weights[rows], targets={arm.name: arm.target_mean},
                           denominators={"target": arm.target_sd}, std="target", kind="mean")
    return WeightingProblem(fit.index[rows], terms, family="balnet", weight_scale="sums to 1",
                            weight_unit=1.0 / n_arm, design=design)


def compare_primal(fit, arm, lam, solver="CLARABEL") -> dict:
    """Solve the primal at `lam` with cvxpy (tight tolerances) and compare with the fit: status, solve seconds
    (compilation included), both objectives and the largest difference in propensity score."""
    problem, a, b = primal(fit, arm, lam)
    start = time.perf_counter()
    problem.solve(solver=solver, **TIGHT_OPTIONS.get(solver.upper(), {}))
    seconds = time.perf_counter() - start
    eta_fit = arm.link(fit.X, lam)
    _, b_std = arm.at(lam)
    b_std = b_std * arm.spread
    w = fit.sample_weights / fit.sample_weights.sum()
    penalty = sum(pf * (fit.alpha * np.linalg.norm(b_std[g]) + (1 - fit.alpha) / 2 * b_std[g] @ b_std[g])
                  for (_, g), pf in zip(fit.groups, fit.penalty))
    result = dict(arm=arm.name, lam=float(lam), primal_status=problem.status, primal_seconds=seconds,
                  objective_fit=cal.loss(eta_fit, arm.y, w, arm.scale) + lam * penalty,
                  objective_cvxpy=float(problem.value) if problem.value is not None else float("nan"),
                  max_abs_diff_propensity=float("nan"))
    if b.value is not None:
        sign = 1.0 if arm.name == "treated" else -1.0
        eta_cvxpy = a.value + standardized(fit, arm) @ b.value
        result["max_abs_diff_propensity"] = float(np.max(np.abs(scipy.special.expit(sign * eta_fit)
                                                               - scipy.special.expit(sign * eta_cvxpy))))
    return result


def check(fit, arm, lam, solver="CLARABEL") -> dict:
    """Solve both formulations at `lam` with cvxpy and compare with the adelie fit (interpolated at `lam`, so compare
    at path points). Returns `compare_primal`'s entries and the largest difference between the dual's weights and
    the fit's normalized weights, in units of the arm's mean weight."""
    result = compare_primal(fit, arm, lam, solver)
    solution = dual_problem(fit, arm, lam).solve(backend="cvxpy", solver=solver, raise_on_failure=False)
    rows = arm.y > 0
    omega = cal.balancing_weights(arm.link(fit.X, lam), arm.y, fit.sample_weights, att=arm.att)[rows]
    omega /= omega.sum()
    return dict(result, dual_status=solution.status,
                max_weight_diff=float(np.max(np.abs(solution.weights.to_numpy() - omega)) * rows.sum()))
