"""One-call raking and weight trimming, in the shape survey::rake and survey::trimWeights users know.

    sol = cpz.rake(api, margins=[pd.DataFrame({"stype": ["E", "H", "M"], "Freq": [4421, 755, 1018]}),
                                 {"sch.wide": {"No": 1072, "Yes": 5122}}], base_weights="pw")
    sol.weights, sol.balance

Raking (multiplicative calibration to margins; IPF's fixed point) is `calibrate(..., distance="raking")` solved by
Deville-Sarndal Newton (backend "calibration"); `rake` builds it, solves it, and optionally trims the result.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .backends.base import RawResult
from .errors import InfeasibleError, InputError
from .families import calibrate


def rake(data, margins, base_weights=None, bounds=None, trim=None, force=False, epsilon=1e-9, max_iter=100):
    """Rake base weights to population margins and return the `Solution`.

    margins: {variable: {level: total}}, or survey-style population margins: a list of DataFrames, each with one
    variable column and a "Freq" column (dicts may be mixed in). bounds=(L, U) bounds g = w / d during raking.
    trim=(lower, upper) trims g afterwards and spreads what was cut over the untrimmed units (`trim_weights`); the
    totals then hold only approximately, and the solution's status and message say by how much. Convergence:
    max |achieved - total| / (1 + |total|) < epsilon. Without convergence a `CalibrationError` names the worst
    targets, unless force=True, which returns the closest weights found with status "inaccurate".
    """
    problem = calibrate(data, base_weights=base_weights, margins=_margins(margins), distance="raking", bounds=bounds)
    solution = problem.solve(backend="calibration", raise_on_failure=not force, epsilon=epsilon, max_iter=max_iter)
    if trim is None:
        return solution
    lower, upper = trim
    d = problem.terms[0].base
    trimmed, capped = trim_weights(solution.weights.to_numpy(), d, lower, upper)
    totals = problem.terms[1]
    off = totals.violation(trimmed)           # max |x_j'w - T_j| / |T_j| after trimming
    raw = RawResult(weights=trimmed, status=solution.status, solver=solution.solver, solve_time=solution.solve_time,
                    iterations=solution.iterations, info={"trimmed_units": capped, "max_relative_misfit": off},
                    message=f"raked, then trimmed g = w/d to [{lower:g}, {upper:g}]: {capped} units capped; the "
                            f"totals are now off by up to {off:.2%} (relative)")
    trimmed_solution = problem._finish(raw, solution.backend, solution.tolerance)
    return dataclasses.replace(trimmed_solution, duals=solution.duals)


def trim_weights(w, d, lower=0.0, upper=np.inf, max_rounds=100):
    """Trim the ratios g = w / d to [lower, upper] and spread the weight cut (or added) over the units left inside,
    in proportion to their weights, until every ratio is within bounds; the total sum(w) is kept. Returns
    (trimmed weights, number of units at a bound)."""
    w, d = np.asarray(w, dtype=float).copy(), np.asarray(d, dtype=float)
    if not (0 <= lower < upper):
        raise InputError(f"trim needs 0 <= lower < upper, got ({lower}, {upper})")
    total = w.sum()
    if not (lower * d.sum() <= total <= upper * d.sum()):
        raise InfeasibleError(f"cannot trim g to [{lower:g}, {upper:g}] and keep the total {total:g}: the bounds "
                              f"allow totals in [{lower * d.sum():g}, {upper * d.sum():g}]")
    fixed = np.zeros(len(w), bool)
    for _ in range(max_rounds):
        low, high = w < lower * d, w > upper * d
        if not (low.any() or high.any()):
            break
        fixed |= low | high
        w = np.where(low, lower * d, np.where(high, upper * d, w))
        free = ~fixed
        if not free.any():
            break
        w[free] *= (total - w[fixed].sum()) / w[free].sum()
    return w, int(fixed.sum())


def _margins(margins) -> dict:
    """{variable: {level: total}} from a dict, or from a list of dicts and survey-style Freq data frames."""
    if isinstance(margins, dict):
        return margins
    out = {}
    for item in margins if isinstance(margins, (list, tuple)) else [margins]:
        if isinstance(item, dict):
            out.update(item)
            continue
        if not isinstance(item, pd.DataFrame) or "Freq" not in item.columns or item.shape[1] != 2:
            raise InputError("each population margin must be a dict {variable: {level: total}} or a DataFrame with "
                             "one variable column and a 'Freq' column (survey::rake's population.margins)")
        variable = next(c for c in item.columns if c != "Freq")
        if variable in out:
            raise InputError(f"the margin for {variable!r} is given twice")
        out[variable] = dict(zip(item[variable], item["Freq"]))
    return out
