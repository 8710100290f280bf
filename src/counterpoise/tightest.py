"""The tightest tolerance of a balancing problem on a dask DataFrame's partitions, by column generation.

`tuning.TightestDelta` asks for the smallest common tolerance t of the "delta" columns for which weights exist, a
linear program over every unit. In memory cvxpy solves it whole; on partitions the units stay where they are, and
the LP is solved over a few of them at a time: the restricted LP's duals price every unit in one pass over the
partitions (`backends.blocks.DaskBlocks.collect`), and the units that would lower it join, until none would.
"""

from __future__ import annotations

import numpy as np

from .errors import InfeasibleError, SolverError


#: Units a pricing pass of the tightest-tolerance LP brings back per partition and group (`tightest_tolerance`).
PRICED = 8

#: The cost of a unit of slack on a row whose tolerance is fixed in the tightest-tolerance LP: slack left at the
#: optimum means that the fixed tolerances admit no weights.
SLACK_COST = 1e6


def tightest_tolerance(problem, max_passes=500) -> float:
    """The smallest common tolerance t of the "delta" columns for which weights exist, on the partitions: the LP

        min t  s.t.  |(A_g'w_g)_j| <= t (the "delta" columns), <= delta_j (the others, as set), sum w_g = 1, w_g >= 0

    for every group g (A_g its units' balance columns centred at the targets and scaled, as its blocks hold them;
    SBW's box w >= 0), by column generation: a restricted LP over a few units per group (scipy's HiGHS) gives the
    rows' duals y and the sums' nu; one pass over the partitions prices every unit by its reduced cost
    -(a_i'y + nu_g) and brings back the PRICED cheapest of each partition; the units with a negative reduced cost
    join the LP, until there are none, when the restricted optimum is the LP's. The first LP holds each partition's
    units extreme in each balance column. A fixed row the units cannot meet keeps a slack: no weights then."""
    from scipy.optimize import linprog

    k = problem.sizes[0] - 1
    swept = np.zeros(len(problem.scale), bool)
    swept[problem.tolerances["delta"]] = True
    swept = [piece[:k] for piece in problem._pieces(swept)]
    fixed = [piece[:k] for piece in problem._pieces(problem.scale)]
    units = [_priced(group.blocks, np.hstack([np.eye(k), -np.eye(k)]), 1) for group in problem.groups]
    units = [(set(keys), rows) for keys, rows, scores in units]
    for _ in range(max_passes):
        lp = _tightest_lp(linprog, [rows for keys, rows in units], swept, fixed)
        added = 0
        for g, group in enumerate(problem.groups):
            y, nu = lp["duals"][g]
            keys, rows, scores = _priced(group.blocks, y[:, None], PRICED)
            cheap = [j for j, key in enumerate(keys) if -(scores[j, 0] + nu) < -1e-9 * max(1.0, abs(nu))
                     and key not in units[g][0]]
            if cheap:
                units[g] = (units[g][0] | {keys[j] for j in cheap}, np.vstack([units[g][1], rows[cheap]]))
                added += len(cheap)
        if not added:
            break
    else:
        raise SolverError(f"the tightest-tolerance LP on partitions priced {max_passes} times without settling")
    if lp["slack"] > 1e-9:
        raise InfeasibleError("no weights meet the problem's other tolerances (its 'mean_delta' columns) whatever "
                              "delta is; loosen them")
    return lp["t"]


def _priced(blocks, directions, count):
    """The units of every partition whose balance columns score highest along each direction (a column of
    `directions`), `count` per direction and partition: their keys (partition, position), rows and scores."""
    found = blocks.collect(_best_units, [dict(directions=directions, count=count)] * len(blocks.blocks))
    keys = [(p, int(i)) for p, (positions, rows, scores) in enumerate(found) for i in positions]
    return keys, np.vstack([rows for _, rows, _ in found]), np.vstack([scores for _, _, scores in found])


def _best_units(rows, distance, lo, hi, memo, directions, count) -> tuple:
    """One partition's `_priced` units: positions, rows of A (the balance columns, scaled), scores A d."""
    A = rows.B * rows.inverse_scale
    if not len(A):
        return np.zeros(0, int), np.zeros((0, A.shape[1])), np.zeros((0, directions.shape[1]))
    scores = A @ directions
    best = np.unique(np.argpartition(-scores, min(count, len(A)) - 1, axis=0)[:count].ravel())
    return best, A[best], scores[best]


def _tightest_lp(linprog, units, swept, fixed) -> dict:
    """The restricted LP of `tightest_tolerance` over the units' rows (one array per group): its t, its largest
    slack, and per group the duals (y, nu) of the balance rows (y_j = the upper row's minus the lower's) and of the
    sum."""
    k, groups = units[0].shape[1], len(units)
    sizes = [len(rows) for rows in units]
    free = [np.flatnonzero(~s) for s in swept]
    width = sum(sizes) + 1 + sum(len(f) for f in free)
    cost = np.zeros(width)
    cost[sum(sizes)] = 1.0
    cost[sum(sizes) + 1:] = SLACK_COST
    upper, bound, equal = [], [], np.zeros((groups, width))
    start, slack = 0, sum(sizes) + 1
    for g, rows in enumerate(units):
        equal[g, start: start + sizes[g]] = 1.0
        for sign in (1.0, -1.0):
            block = np.zeros((k, width))
            block[:, start: start + sizes[g]] = sign * rows.T
            block[swept[g], sum(sizes)] = -1.0
            block[free[g], slack + np.arange(len(free[g]))] = -1.0
            upper.append(block)
            bound.append(np.where(swept[g], 0.0, fixed[g]))
        start, slack = start + sizes[g], slack + len(free[g])
    result = linprog(cost, A_ub=np.vstack(upper), b_ub=np.concatenate(bound), A_eq=equal, b_eq=np.ones(groups),
                     bounds=(0, None), method="highs")
    if result.status != 0:
        raise SolverError(f"the tightest-tolerance LP (HiGHS) ended with status {result.status}: {result.message}")
    marginals = result.ineqlin.marginals.reshape(groups, 2, k)
    duals = [(marginals[g, 0] - marginals[g, 1], float(result.eqlin.marginals[g])) for g in range(groups)]
    return {"t": float(result.x[sum(sizes)]), "slack": float(np.max(result.x[sum(sizes) + 1:], initial=0.0)),
            "duals": duals}
