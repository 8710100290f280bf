"""Sparse calibration: few records with positive weight, the population totals met closely or exactly.

  sparse_calibrate  min 1/2 sum_j ((x_j'w - T_j)/s_j)^2 + lam mean_i(w_i / d_i)  s.t. w >= 0, w / d <= cap
                    (the lasso; `ridge` makes it an elastic net), or exact totals traded against tau mean(w / d);
                    target_records=k tunes lam (or tau) to keep k records
  refit             exact calibration on the records a sparse solution keeps
"""

from __future__ import annotations

import numpy as np

from ..arguments import recorded
from ..backends.blocks import Blocks
from ..errors import InputError, SolverError
from ..problem import WeightingProblem
from ..terms import Bounds, ChiSquare, SparseLoss
from ..validation import NONNEGATIVE, POSITIVE, one_of, optional
from ..validation import validated, warn
from .calibration import DISTANCES, calibration_inputs, calibration_problem
from .totals import check_reachable, independent_targets, total_design, totals_term

@recorded
@validated(lam=NONNEGATIVE, ridge=NONNEGATIVE, tau=NONNEGATIVE, floor=POSITIVE, cap=optional(POSITIVE))
def sparse_calibrate(data, base_weights=None, margins=None, totals=None, constraints=None, lam=1e-3, floor=1.0,
                     cap=None, ridge=0.0, exact=False, tau=0.1, tol=None, target_records=None) -> WeightingProblem:
    """Sparse calibration: few records with positive weight, the totals met closely or exactly.

    Lasso (default) and elastic net (ridge > 0), the non-negative relative-loss lasso:
        minimize 1/2 sum_j ((x_j'w - T_j)/s_j)^2 + lam mean_i(w_i/w0_i) + ridge/2 sum_i w0_i (w_i/w0_i - 1)^2 / sum(w0)
        s.t. 0 <= w_i / w0_i <= cap,   s_j = max(|T_j|, floor);   Parameters "lam", "ridge", "target".
    The pure lasso's solution is a vertex (a few records per target); the ridge makes the path unique and lets the
    record count move smoothly, at the price of shrinking every weight.
    Exact targets (exact=True):
        minimize sum_i (w_i - w0_i)^2 / (2 w0_i sum(w0)) + tau mean_i(w_i / w0_i)
        s.t. x_j'w = T_j (or within tol |T_j|), 0 <= w_i / w0_i <= cap,
    whose weights are w0_i max(0, 1 + x_i'eta - tau mean(w0) / w0_i): tau (Parameter "tau") drops the records
    with small base weights first while the targets keep holding. (The recorded objective is the chi-square to
    w0 - tau mean(w0), which differs from this one by a constant.) When the targets fix sum(w) (margins do)
    and w0 is uniform, the penalty is constant on the feasible set and tau changes nothing: use the lasso there.
    Backends: "prox" for the lasso and the elastic net (FISTA, then an exact finish certified by the dual bound),
    "dual" for exact targets; "auto" picks them. w0 = the base weights; targets as in `calibrate`.
    target_records=k tunes lam (or tau) by bisection on its logarithm to keep k records, or (with a warning) the
    closest count met.
    """
    frame, w0, X, names, T, N = calibration_inputs(data, base_weights, margins, totals, constraints,
                                                  sparse=False)
    if exact:
        if tol is None:
            check_reachable(Blocks([(X, w0)]), T, names, (0.0, np.inf if cap is None else cap), (-np.inf, np.inf),
                            True)
        keep = independent_targets(X, T, names, w0, tol)
        totals = totals_term(X, T, names, keep, tol)
        terms = [ChiSquare(w0, 2 * w0 * w0.sum(), tau=tau, shift=w0.mean(), name="distance"), totals]
        reported = (totals, keep)
    else:
        if tol is not None:
            raise InputError("tol applies to exact=True; the lasso trades the totals' fit against lam itself")
        terms = [SparseLoss(X, T, lam, w0, floor=floor, ridge=ridge, columns=names, name="loss")]
        reported = (terms[0], np.arange(len(names)))
    terms.append(Bounds(lower=0.0, upper=cap, reference=w0, name="bounds"))
    problem = WeightingProblem(frame.index, terms, family="sparse_calibrate" + ("/exact" if exact else ""),
                               weight_scale="population totals (w = g w0)", weight_unit=float(np.mean(w0)),
                               design=total_design(X, names, T, N, w0), design_targets={"sample": reported})
    if target_records is not None:
        if exact:
            _tune_for_records(problem, target_records, "tau", 1e-4, 1e4, "dual")
        else:
            top = terms[0].lambda_max()
            _tune_for_records(problem, target_records, "lam", top * 1e-9, top, "prox")
    return problem


def _tune_for_records(problem, k, parameter, low, high, backend, steps=40):
    """Set `parameter` (the record count falls as it grows) to keep k records: bisection on its log in (low, high)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= problem.n:
        raise InputError(f"target_records must be an integer in [1, {problem.n}], got {k!r}")
    low, high = np.log(low), np.log(high)
    best = None
    for _ in range(steps):
        mid = 0.5 * (low + high)
        problem.set(**{parameter: np.exp(mid)})
        solution = problem.solve(backend=backend, raise_on_failure=False)
        records = int(np.count_nonzero(solution.weights > 0))
        if solution.status == "optimal" and (best is None or abs(records - k) < abs(best[1] - k)):
            best = (np.exp(mid), records)
        if records == k:
            break
        low, high = (mid, high) if records > k else (low, mid)
    if best is None:
        raise SolverError(f"target_records={k}: no {parameter} in the search gave an optimal solution")
    problem.set(**{parameter: best[0]})
    if best[1] != k:
        warn(f"target_records={k}: no {parameter} found keeps exactly {k} records; {parameter} = "
             f"{best[0]:.6g} keeps {best[1]}")


@validated(distance=one_of(DISTANCES))
def refit(solution, distance="linear", bounds=None):
    """Recalibrate exactly on the records a sparse solution keeps: `calibrate` (linear or raking distance to the
    base weights w0, optional ratio bounds) restricted to the units with w > 0, to the same totals. Returns the
    Solution over those units (reindex to the data's index with fill_value=0 for a full vector)."""
    problem = solution.problem
    loss = problem.terms[0]
    if not isinstance(loss, SparseLoss):
        raise InputError("refit takes a Solution of sparse_calibrate's lasso or elastic net")
    if solution.status != "optimal":
        raise InputError(f"refit needs an optimal sparse solution; this one is {solution.status!r}")
    keep = solution.weights.to_numpy() > 0
    design = problem.design
    N = None if design.population_size is None else design.population_size["sample"]
    refitted = calibration_problem(problem.units[keep], loss.B[keep], list(loss.columns),
                                    np.asarray(loss.target.value, dtype=float), N, loss.w0[keep], distance, bounds)
    return refitted.solve(backend="auto")


