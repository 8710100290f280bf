"""Survey calibration: base weights d moved as little as possible to meet population totals.

    calibrate     min sum_i d_i G(w_i / d_i) (linear, raking or logit G)   s.t. X'w = T, ratio / weight bounds
    rake          calibrate with the raking distance, survey::rake's margins and trimming, solved in one call
    trim_weights  g = w / d trimmed to [L, U], the excess spread over the others (survey::trimWeights)

The calibration system (`families.totals`): margins become indicator columns (every level in the data needs a
total), totals and raw constraints become columns of X, exactly redundant targets are dropped after checking that
they agree (a pivoted Cholesky factorization of X' diag(d) X), and totals that the bounds put out of reach are
refused before solving. A dask DataFrame is calibrated on its partitions (`families.on_dask`).

    sol = cpz.rake(api, margins=[pd.DataFrame({"stype": ["E", "H", "M"], "Freq": [4421, 755, 1018]}),
                                 {"sch.wide": {"No": 1072, "Yes": 5122}}], base_weights="pw")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..arguments import recorded
from ..backends.base import RawResult
from ..backends.blocks import Blocks
from ..backends.units import block_weights
from ..errors import InfeasibleError, InputError
from ..partitioned import SumsOverPartitions
from ..problem import WeightingProblem
from ..validation import as_frame, base_weights as check_base_weights, is_dask_frame, one_of, validated
from .on_dask import calibrate as calibrate_partitions
from .totals import (calibration_bounds, calibration_system, calibration_terms, check_reachable, independent_targets,
                     negative_weights_note, target_scales, total_design, warn_unless_nonnegative_reach)

DISTANCES = ("linear", "raking", "logit")


@recorded
@validated(distance=one_of(DISTANCES))
def calibrate(data, base_weights=None, margins=None, totals=None, constraints=None, distance="linear",
              bounds=None, weight_bounds=None, tol=None) -> WeightingProblem:
    """Calibration of base weights d to population totals (Deville & Sarndal 1992; survey::calibrate).

    minimize sum_i d_i G(w_i / d_i)   s.t.  sum_i w_i x_ij = T_j for every target j
    with G the "linear" (chi-square, GREG: G(g) = (g-1)^2/2), "raking" (G(g) = g log g - g + 1) or
    "logit" (bounded; needs `bounds`) distance. Targets: `margins={"var": {"level": total}}` (every
    level in the data needs a total; without any targets, those a dataset records in `frame.attrs["margins"]`
    and `["totals"]`, with its `["base_weights"]` column), `totals={"col": total}`, and
    `constraints={"name": (coefficients, total)}` for raw linear rows. `bounds=(L, U)` bounds the ratio g = w/d,
    `weight_bounds=(lo, hi)` bounds w itself (for "logit" the bounds are part of the distance and fixed when it is
    built); `tol` asks only |x_j'w - T_j| <= tol |T_j| (absolute, <= tol, for a zero total). Exactly redundant
    targets (two margins that both sum to N) are dropped after checking that they agree; the balance table still
    shows them, with the totals they were built with. Linear weights may go negative (survey allows them): a
    CounterpoiseWarning says so, at the build for a total that no nonnegative weights reach, and after the solve.
    `data` may be a dask DataFrame (margins and totals of its columns, constraints whose coefficients are dask
    arrays chunked like its partitions, base weights a column, exact totals or `tol`): the problem is then built
    and solved on its partitions (`families.on_dask`, a `partitioned.PartitionedProblem`).
    """
    if is_dask_frame(data):
        return calibrate_partitions(data, base_weights, margins, totals, constraints, distance, bounds, weight_bounds,
                                    tol)
    frame, d, X, names, T, N = calibration_inputs(data, base_weights, margins, totals, constraints)
    return calibration_problem(frame.index, X, names, T, N, d, distance, bounds, weight_bounds, tol)


def calibration_inputs(data, base_weights, margins, totals, constraints, sparse=True):
    """(frame, base weights d, X, target names, totals T, population size N) for a calibration builder. Without
    any targets, those a dataset records in frame.attrs ("margins", "totals") are used, with its "base_weights"
    column unless base weights are given. X is sparse where margins make it mostly zeros, unless sparse=False."""
    frame = as_frame(data)
    if margins is None and totals is None and constraints is None:
        margins, totals = frame.attrs.get("margins"), frame.attrs.get("totals")
        base_weights = frame.attrs.get("base_weights") if base_weights is None else base_weights
    d = check_base_weights(frame, base_weights)
    return (frame, d) + calibration_system(frame, margins, totals, constraints, sparse)


def calibration_problem(index, X, names, T, N, d, distance, bounds=None, weight_bounds=None, tol=None):
    """The calibration WeightingProblem of `calibrate` on a built system (also `refit`'s, on a support)."""
    ratio_bounds, weight_box = calibration_bounds(distance, bounds, weight_bounds)
    negatives = distance == "linear" and ratio_bounds[0] < 0 and weight_box[0] < 0   # GREG weights may go below 0
    blocks = Blocks([(X, d)])
    if tol is None:
        check_reachable(blocks, T, names, ratio_bounds, weight_box, nonnegative=distance == "raking")
        if negatives:
            warn_unless_nonnegative_reach(blocks, T, names, ratio_bounds, weight_box)
    keep = independent_targets(X, T, names, d, tol)
    terms = calibration_terms(X, T, names, d, keep, distance, bounds, weight_bounds, tol)
    problem = WeightingProblem(index, terms, family=f"calibrate/{distance}", weight_scale="population totals (w = g d)",
                               weight_unit=float(np.mean(d)), design=total_design(X, names, T, N, d),
                               design_targets={"sample": (terms[1], keep)})
    if negatives:
        problem.notes.append(_negative_weights)
    return problem


def _negative_weights(w):
    """The note after an optimal linear calibration with negative weights."""
    negative = w < 0
    return negative_weights_note(int(negative.sum()), len(w), w.min()) if negative.any() else None


def rake(data, margins, base_weights=None, bounds=None, trim=None, force=False, epsilon=1e-9, max_iter=100):
    """Rake base weights to population margins and return the `Solution`.

    margins: {variable: {level: total}}, or survey-style population margins: a list of DataFrames, each with one
    variable column and a "Freq" column (dicts may be mixed in). bounds=(L, U) bounds g = w / d during raking.
    trim=(lower, upper) trims g afterwards and spreads what was cut over the untrimmed units (`trim_weights`); the
    totals then hold only approximately, and the solution's status and message say by how much. Convergence:
    max |achieved - total| / (1 + |total|) < epsilon. Without convergence a `CalibrationError` names the worst
    targets, unless force=True, which returns the closest weights found with status "inaccurate". On a dask
    DataFrame the trimming runs on the partitions, one pass of sums per round.
    """
    problem = calibrate(data, base_weights=base_weights, margins=_margins(margins), distance="raking", bounds=bounds)
    solution = problem.solve(backend="calibration", raise_on_failure=not force, epsilon=epsilon, max_iter=max_iter)
    if trim is None:
        return solution
    lower, upper = trim
    if is_dask_frame(data):
        return _trimmed_on_partitions(problem, solution, lower, upper)
    d = problem.terms[0].base
    trimmed, capped = trim_weights(solution.weights.to_numpy(), d, lower, upper)
    totals = problem.terms[1]
    off = totals.violation(trimmed)           # max |x_j'w - T_j| / |T_j| after trimming
    raw = RawResult(weights=trimmed, status=solution.status, solver=solution.solver, solve_time=solution.solve_time,
                    iterations=solution.iterations, info={"trimmed_units": capped, "max_relative_misfit": off},
                    message=f"raked, then trimmed g = w/d to [{lower:g}, {upper:g}]: {capped} units capped; the "
                            f"totals are now off by up to {off:.2%} (relative)")
    trimmed_solution = problem.checked(raw, solution.backend, solution.tolerance)
    return dataclasses.replace(trimmed_solution, duals=solution.duals)


def trim_weights(w, d, lower=0.0, upper=np.inf, max_rounds=100):
    """Trim the ratios g = w / d to [lower, upper] and spread the weight cut (or added) over the units left inside,
    in proportion to their weights, until every ratio is within bounds; the total sum(w) is kept. Returns
    (trimmed weights, number of units at a bound)."""
    w, d = np.asarray(w, dtype=float).copy(), np.asarray(d, dtype=float)
    total = _trimmable(lower, upper, w.sum(), d.sum())
    fixed = np.zeros(len(w), bool)
    for _ in range(max_rounds):
        w, fixed, out = _clipped(w, d, lower, upper, fixed)
        if not out:
            break
        free = ~fixed
        if not free.any():
            break
        w[free] *= (total - w[fixed].sum()) / w[free].sum()
    return w, int(fixed.sum())


def _trimmable(lower, upper, total, base_total) -> float:
    """The total, after checking that g can be trimmed to [lower, upper] keeping it."""
    if not (0 <= lower < upper):
        raise InputError(f"trim needs 0 <= lower < upper, got ({lower}, {upper})")
    if not (lower * base_total <= total <= upper * base_total):
        raise InfeasibleError(f"cannot trim g to [{lower:g}, {upper:g}] and keep the total {total:g}: the bounds "
                              f"allow totals in [{lower * base_total:g}, {upper * base_total:g}]")
    return total


def _clipped(w, d, lower, upper, fixed):
    """One round's clip: (w with its ratios out of [lower, upper] set to the bound, the units fixed so far, whether
    any was out)."""
    low, high = w < lower * d, w > upper * d
    out = bool(low.any() or high.any())
    return np.where(low, lower * d, np.where(high, upper * d, w)), fixed | low | high, out


@dataclass(frozen=True)
class Trimming:
    """`trim_weights`' rounds with their factors known (each round clips the ratios out of bounds, and those units
    stay fixed, then scales the free units' weights by its factor): what a solution on partitions applies to
    each partition's weights."""

    lower: float
    upper: float
    factors: tuple = ()

    def apply(self, w, d) -> tuple:
        """(the weights after the known rounds and one more clip, the units fixed, whether that clip changed any)."""
        fixed = np.zeros(len(w), bool)
        for factor in self.factors:
            w, fixed, _ = _clipped(w, d, self.lower, self.upper, fixed)
            w = np.where(fixed, w, w * factor)
        return _clipped(w, d, self.lower, self.upper, fixed)


def _trimmed_on_partitions(problem, solution, lower, upper, max_rounds=100):
    """`rake(trim=)` on partitions: `trim_weights`' rounds, each one pass of sums (units out of bounds, the fixed
    and the free units' weights) from which the client takes the round's factor; the solution's weights, table and
    misfit are those of the trimmed weights (`Trimming` applied partition by partition)."""
    sums = solution.design.sums[0]
    total = _trimmable(lower, upper, sums["w"], sums["d"])
    trimming = Trimming(lower, upper)
    group = problem.groups[0]
    for _ in range(max_rounds):
        out, fixed_sum, free_sum, capped = group.blocks.reduce(_trim_sums, lam=solution.dual_point, trimming=trimming)
        if not out or not free_sum:
            break
        trimming = Trimming(lower, upper, trimming.factors + ((total - fixed_sum) / free_sum,))
    design = SumsOverPartitions(problem, solution.dual_point, trimming)
    report, after = group.report, design.sums[0]["after"]
    kept = [report.names.index(name.split(":", 1)[1]) for name in problem.targets]
    off = float(np.max(np.abs(after[kept] - report.target[kept]) / target_scales(report.target)[kept]))
    return dataclasses.replace(
        solution, weights=problem.weights(solution.dual_point, trimming), design=design,
        status=solution.status if off <= solution.tolerance else "inaccurate",
        objective=float(design.sums[0]["objective"]), violations={"targets": off},
        info={**solution.info, "trimmed_units": int(capped), "max_relative_misfit": off},
        message=f"raked, then trimmed g = w/d to [{lower:g}, {upper:g}]: {int(capped)} units capped; the totals are "
                f"now off by up to {off:.2%} (relative)")


def _trim_sums(rows, distance, lo, hi, memo, lam, trimming) -> tuple:
    """One partition's round of `_trimmed_on_partitions`: (units out of bounds at this round's clip, the fixed
    units' weight, the free units' weight, the fixed units)."""
    w, fixed, out = trimming.apply(block_weights(rows, distance, lo, hi, memo, y=lam), distance.base)
    return float(out), float(w[fixed].sum()), float(w[~fixed].sum()), float(fixed.sum())


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
