"""Weighting a dask DataFrame on its partitions: `cpz.calibrate`, `cpz.rake`, `cpz.entropy_balance`, `cpz.sbw`
and `cpz.kernel_sbw` given a dask DataFrame.

The weights of calibration come from a dual in k variables whose value, gradient and Hessian are sums over the
units, so nothing n-sized needs to reach the client (the pattern of dask-glm's Newton). The build:

1. each partition read once: its margin variables' level codes, numeric target columns and base weights,
   persisted on the workers; the number of units at each margin level, from which the targets, the column of
   each level and every check on the margins follow exactly as in memory (`totals.margin_targets`);
2. per partition, its piece of the calibration matrix X (CSR when mostly zeros, as in memory) and its base
   weights, persisted;
3. the checks before solving (totals within reach of the bounds, exactly redundant targets dropped) as sums over
   the partitions (`totals.check_reachable`, `totals.independent_targets`);
4. per partition, the dual Newton's block (`backends.dual.dual_block`): its rows, distance and bounds,
   persisted.

Entropy balancing is the same (the weighted arm's covariates centred at the target means, the raking distance to
its base weights, sum w = 1), after passes for the arms' means and SDs; so is SBW, with the chi-square dispersion
and its tolerances (`backends.units` over the partitions), and kernel SBW adds the Nystrom basis computed on the partitions
(`basis.nystrom` on a dask array). Exact totals stop by survey's rule, tolerances by the duality gap.

Each Newton step is then one tree reduction on the cluster (`backends.blocks.DaskBlocks`), and the weights come
back in a `Solution` as a lazy dask Series aligned with the input's partitions (`partitioned.PartitionedProblem`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from .. import basis as bases
from ..backends.blocks import DaskBlocks
from ..balancing_se import PartitionedFunctions
from ..backends.dual import dual_block
from ..backends.units import block_size
from ..columns import max_abs, value_range, weighted_sums, widest
from ..diagnostics import rounding_to_zero, sds_from_sums
from ..errors import InputError
from ..partitioned import CalibrationNewton, DualNewton, Group, PartitionedProblem, Report
from ..terms import Balance, Bounds, ChiSquare, Entropy, Normalize
from ..validation import (base_weights as check_base_weights, columns_list, constant_columns_dropped, finite,
                          is_dask_array, numeric_matrix, require_both_arms, target_means, treatment_indicator)
from .totals import (calibration_bounds, calibration_terms, check_reachable, check_target_names,
                     independent_targets_of, margin_targets, negative_weights_note, system_matrix, target_scales,
                     warn_unless_nonnegative_reach)


def calibrate(ddf, base_weights, margins, totals, constraints, distance, bounds, weight_bounds, tol):
    """`cpz.calibrate` on a dask DataFrame (see there), as a `PartitionedProblem`: margins, numeric totals and
    `constraints` whose coefficients are dask arrays chunked like the partitions, linear / raking / logit distances,
    ratio and weight bounds, exact totals or within `tol`."""
    import dask

    if not isinstance(base_weights, (str, type(None))):
        raise InputError("base_weights on a dask DataFrame must be a column name (or None for ones)")
    margins, totals, constraints = dict(margins or {}), dict(totals or {}), dict(constraints or {})
    if not margins and not totals and not constraints:
        raise InputError("give at least one target: margins=, totals= or constraints=")
    columns = list(margins) + list(totals) + ([base_weights] if base_weights else [])
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise InputError(f"columns {missing} are not in the data (it has {list(ddf.columns)[:20]})")
    ratio_bounds, weight_box = calibration_bounds(distance, bounds, weight_bounds)
    parts = ddf.to_delayed()
    coefficients = [partition_rows(ddf, coef, f"the coefficients of constraint {name!r}", vector=True)
                    for name, (coef, total) in constraints.items()]
    coded = dask.persist(*[dask.delayed(_coded)(part, list(margins), list(totals), base_weights,
                                                [chunks[p] for chunks in coefficients], list(constraints))
                           for p, part in enumerate(parts)])
    found = DaskBlocks([(piece,) for piece in coded]).collect(_level_counts)
    counts = {}
    for var in margins:
        missing_values = sum(piece[var][1] for piece in found)
        if missing_values:
            raise InputError(f"margin variable {var!r} has {missing_values} missing values")
        counts[var] = pd.concat([piece[var][0] for piece in found]).groupby(level=0, sort=False).sum()
    names, T, N, levels = margin_targets(counts, margins)
    names += list(totals) + [str(name) for name in constraints]
    T += [float(v) for v in totals.values()] + [float(total) for coef, total in constraints.values()]
    T = np.asarray(T, dtype=float)
    finite(T, "population totals")
    check_target_names(names)
    systems = dask.persist(*[dask.delayed(_partition_system)(piece, levels, len(names)) for piece in coded])
    sizes = DaskBlocks(systems).collect(_system_size)
    data = DaskBlocks(systems, sizes)
    negatives = distance == "linear" and ratio_bounds[0] < 0 and weight_box[0] < 0   # GREG weights may go below 0
    if tol is None:
        check_reachable(data, T, names, ratio_bounds, weight_box, nonnegative=distance == "raking")
        if negatives:
            warn_unless_nonnegative_reach(data, T, names, ratio_bounds, weight_box)
        keep = independent_targets_of(data, T, names)
    else:
        keep = np.arange(len(T))
    blocks = dask.persist(*[dask.delayed(_calibration_block)(system, T, names, keep, distance, bounds,
                                                             weight_bounds, tol) for system in systems])
    layout = dask.persist(*[dask.delayed(_layout)(piece) for piece in coded])
    scale = target_scales(T)[keep]
    report = Report(names, "sample", "total", T, base_weighted_sds(data), size=N)
    # exact totals: (t, the rows' scales) with T = scale t; tolerances: (t, the tolerances); no sum row
    method, second = (CalibrationNewton(normalized=False), scale) if tol is None else \
        (DualNewton(normalized=False), np.full(len(keep), float(tol)))
    return PartitionedProblem([Group(DaskBlocks(blocks, sizes), report)], layout, ddf.divisions, method,
                              T[keep] / scale, second, [f"totals:{names[j]}" for j in keep],
                              family=f"calibrate/{distance}",
                              weight_scale="population totals (w = g d)",
                              note=negative_weights_note if negatives else None,
                              tolerances=None if tol is None else {"delta": np.arange(len(keep))})


def base_weighted_sds(data) -> np.ndarray:
    """The base-weighted sample SD of every column over the row blocks (X, d), as `diagnostics.smd_denominators`
    computes it (0 for a column constant to rounding): sums of d x and d x^2, then the one-pass formula."""
    linear, squares, total, total_squares = data.reduce(_moment_sums)
    largest = data.reduce(_max_abs, combine=np.maximum)
    sd = sds_from_sums(np.maximum(squares - linear ** 2 / total, 0.0), total, total_squares)
    return rounding_to_zero(sd, largest)


def _moment_sums(X, d):
    W = d[:, None]
    return weighted_sums(W, X)[0], weighted_sums(W, X, squares=True)[0], d.sum(), d @ d


def _max_abs(X, d):
    return max_abs(X)


def _coded(frame, margins, totals, base_weights, coefficients=(), constraints=()) -> dict:
    """One partition read once: each margin variable's level codes and levels (NaN coded -1), the numeric targets'
    columns, then the `constraints`' `coefficients` (this partition's chunk of each), the base weights and the
    index; everything later passes read, in place of the data."""
    coded = {}
    for var in margins:
        code, present = pd.factorize(frame[var])
        coded[var] = (code.astype(np.int32), present)
    numeric = [numeric_matrix(frame, [col], "totals")[:, 0] for col in totals]
    numeric += [finite(np.asarray(coef, dtype=float).ravel(), f"constraint {name!r} coefficients")
                for coef, name in zip(coefficients, constraints)]
    return {"codes": coded, "numeric": numeric, "d": check_base_weights(frame, base_weights), "index": frame.index}


def _level_counts(piece) -> dict:
    """Per margin variable of one partition: (units per level, missing values)."""
    return {var: (pd.Series(np.bincount(code[code >= 0], minlength=len(present)), index=present),
                  int(np.sum(code < 0))) for var, (code, present) in piece["codes"].items()}


def _partition_system(piece, levels, k):
    """(X, d) of one partition: its rows of the calibration matrix (each level in its global column) and its base
    weights."""
    numeric = piece["numeric"]
    if not piece["codes"] and not len(piece["d"]):
        numeric = [np.zeros(0)] * len(numeric)
    return system_matrix(piece["codes"], levels, numeric, k), piece["d"]


def _calibration_block(system, T, names, keep, distance, bounds, weight_bounds, tol):
    """The dual Newton's block of one partition: (rows, distance, lo, hi, memo), from the same terms and form as in
    memory (X as the partition's system holds it: sparse where margins make it mostly zeros)."""
    X, d = system
    return dual_block(calibration_terms(X, T, names, d, keep, distance, bounds, weight_bounds, tol), len(d))


def _system_size(X, d) -> int:
    return len(d)


def _layout(piece) -> tuple:
    """A partition's weighted units (every row of a calibration): their index, and no placement of groups."""
    return piece["index"], None


def entropy_balance(ddf, treatment, covariates, estimand, delta, std, base_weights, moments=1, interactions=False,
                    target=None):
    """`cpz.entropy_balance` on a dask DataFrame (see there), as a `PartitionedProblem`: the controls weighted to
    the treated means (ATT), the reverse (ATC), both arms to the whole sample's (ATE), or every row to `target`;
    exact balance of the covariates' means (or within delta), the SMDs' fixed SDs as in memory (`std`: "target",
    "treated", "control" or "pooled")."""
    return _balancing(ddf, treatment, covariates, estimand, None if delta is None else _tolerance(delta), std,
                      base_weights, "entropy_balance", moments=moments, interactions=interactions, target=target)


def _tolerance(delta) -> float:
    """One tolerance for every balance column (on a dask DataFrame), checked."""
    try:
        value = float(delta)
    except (TypeError, ValueError):
        raise InputError(f"delta on a dask DataFrame is one nonnegative number for every balance column, got "
                         f"{delta!r}") from None
    if not value >= 0:
        raise InputError(f"delta must be a nonnegative number, got {delta}")
    return value


def sbw(ddf, treatment, covariates, estimand, delta, std, base_weights, basis=None, moments=1, interactions=False,
        target=None):
    """`cpz.sbw` on a dask DataFrame (see there), as a `PartitionedProblem` solved by the dual Newton on the
    partitions: the weighted arms (one for an ATT or ATC, both for an ATE, every row for a target), the covariates'
    means (and a dask array `basis`'s columns) within delta target SDs (`std`)."""
    delta = _tolerance(delta)
    extra = None if basis is None else user_basis(ddf, basis)
    return _balancing(ddf, treatment, covariates, estimand, delta, std, base_weights, "sbw", basis=extra,
                      mean_delta=delta, moments=moments, interactions=interactions, target=target)


def kernel_sbw(ddf, treatment, covariates, estimand, delta, delta_scale, std, mean_delta, base_weights,
               nystrom_options, means=True):
    """`cpz.kernel_sbw` on a dask DataFrame (see there), as a `PartitionedProblem`: the Nystrom basis of the
    covariates computed on the partitions (`basis.nystrom` on a dask array, landmarks by the index labels' seeded
    hash as in memory), then SBW of the weighted arms on the basis within delta (in `delta_scale` units) and, when
    `means`, on the covariate means within mean_delta SDs."""
    import dask

    covariates = columns_list(covariates, "covariates")
    missing = [c for c in covariates if c not in ddf.columns]
    if missing:
        raise InputError(f"columns {missing} are not in the data (it has {list(ddf.columns)[:20]})")
    X = ddf[covariates].to_dask_array(lengths=True)
    keys = [dask.delayed(_partition_index)(part) for part in ddf.to_delayed()]
    kernel = bases.nystrom(X, keys=keys, **nystrom_options)
    return _balancing(ddf, treatment, covariates, estimand, float(delta), std, base_weights, "kernel_sbw",
                      basis=(kernel.D.to_delayed().ravel(), list(kernel.names), delta_scale == "raw"),
                      mean_delta=mean_delta, means=means)


def user_basis(ddf, basis) -> tuple:
    """A dask array basis (one row per row of the DataFrame, chunked like its partitions) as `_balancing`'s
    (blocks, names, raw=False)."""
    chunks = partition_rows(ddf, basis, "basis")
    width = 1 if basis.ndim == 1 else basis.shape[1]
    return chunks, [f"basis{j + 1}" for j in range(width)], False


def partition_rows(ddf, values, what, vector=False) -> list:
    """A dask array with one row per row of the DataFrame (a vector, or unless `vector` a matrix), chunked like
    its partitions, as one Delayed chunk per partition (a matrix's columns in one chunk)."""
    if not is_dask_array(values) or values.ndim not in ((1,) if vector else (1, 2)):
        shape = "a 1-D dask array" if vector else "a dask array"
        raise InputError(f"{what} on a dask DataFrame must be {shape} with one row per row of the data")
    values = values.reshape(-1, 1) if values.ndim == 1 else values.rechunk({1: -1})
    lengths = tuple(ddf.map_partitions(len).compute())
    if values.chunks[0] != lengths:
        raise InputError(f"{what}: the row chunks {values.chunks[0][:5]}... must be the DataFrame's partitions "
                         f"{lengths[:5]}... (e.g. build it from the DataFrame with to_dask_array(lengths=True))")
    return list(values.to_delayed().ravel())


def _partition_index(frame) -> pd.Index:
    return frame.index


def _balancing(ddf, treatment, covariates, estimand, delta, std, base_weights, family, basis=None, mean_delta=None,
               moments=1, interactions=False, means=True, target=None):
    """The balancing problem of a dask DataFrame: the arms' means and SDs from sums over the partitions, then per
    partition each weighted arm's block of the dual Newton (stopped by survey's rule for exact entropy balancing,
    by the duality gap for tolerances). One weighted arm for an ATT or ATC (weighted to the other arm's means);
    both for an ATE, each weighted to the whole sample's means, as two groups in the arms' order of first appearance;
    every row (group "sample", no treatment needed) for estimand "target", weighted to the means `target`.
    `basis`: (one block per partition, its column names, whether its tolerance is raw rather than in SDs), balanced
    within delta after the covariates, which then get mean_delta (unless `means` is False: the basis alone is
    balanced, and the table shows the covariates); the balance table shows the covariates (and, for SBW, the basis:
    its own balance functions). `moments`, `interactions`: the covariates' powers (binary columns, read over all
    partitions, get none) and pairwise products, as in memory; columns constant over all partitions are dropped
    with a warning."""
    import dask

    if target is not None and estimand != "target":
        raise InputError(f'target= is used with estimand="target"; this problem\'s estimand is {estimand!r}')
    treatment = None if estimand == "target" else treatment
    if not isinstance(base_weights, (str, type(None))):
        raise InputError("base_weights on a dask DataFrame must be a column name (or None for ones)")
    covariates = columns_list(covariates, "covariates")
    missing = [c for c in [*([treatment] if treatment else []), *covariates, *([base_weights] if base_weights else [])]
               if c not in ddf.columns]
    if missing:
        raise InputError(f"columns {missing} are not in the data (it has {list(ddf.columns)[:20]})")
    parts = ddf.to_delayed()
    extra, basis_names, raw = (None, [], False) if basis is None else basis
    extra = [None] * len(parts) if extra is None else list(extra)
    binary = None
    if moments > 1:
        binary = DaskBlocks([(part,) for part in parts]).reduce(_binary_columns, combine=np.logical_and,
                                                                covariates=covariates)
    expansion = dict(degree=moments, products=interactions, binary=binary)
    arms = dask.persist(*[dask.delayed(_arms)(part, treatment, covariates, base_weights, more, expansion)
                          for part, more in zip(parts, extra)])
    names = bases.expanded(np.zeros((1, len(covariates))), covariates, **expansion)[1] + basis_names
    low, high = DaskBlocks(arms).reduce(_column_range, combine=widest)
    largest = np.maximum(-low, high)                   # max |x| per column
    keep = constant_columns_dropped(high - low == 0, names)
    if keep is not None:
        largest = largest[keep]
        arms = dask.persist(*[dask.delayed(_selected)(piece[0], keep) for piece in arms])
        basis_names = [name for j, name in enumerate(names) if j in set(keep) and name in basis_names]
        names = [names[j] for j in keep]
    covariates = [name for name in names if name not in basis_names]
    data = DaskBlocks(arms)
    counts, totals, linear = data.reduce(_arm_sums)
    if estimand != "target":
        require_both_arms(counts[1], counts[0], treatment)
    means_by_arm = linear / np.maximum(totals, 1e-300)[:, None]
    squares, total_squares = data.reduce(_arm_squares, means=means_by_arm)
    sds = {key: rounding_to_zero(sds_from_sums(squares[arm], totals[arm], total_squares[arm]), largest)
           for arm, key in ((1, "treated"), (0, "control")) if counts[arm]}
    labels = dict(enumerate(ARM_LABELS))
    if estimand == "target":       # every row is in arm 1: the sample, its SDs the target's
        goal, sds, weighted, labels = target_means(target, names), {"target": sds["treated"]}, [1], {1: "sample"}
    elif estimand == "ATE":          # every arm weighted to the whole sample: its means, and its SDs about them
        goal = linear.sum(axis=0) / totals.sum()
        around = data.reduce(_arm_squares, means=np.array([goal, goal]))[0].sum(axis=0)
        sds["target"] = rounding_to_zero(sds_from_sums(around, totals.sum(), total_squares.sum()), largest)
        weighted = [int(a) for a in dict.fromkeys(np.concatenate(data.collect(_arms_in_order)))]
    else:
        target_arm = 1 if estimand == "ATT" else 0
        goal, sds["target"], weighted = means_by_arm[target_arm], sds[ARM_LABELS[target_arm]], [1 - target_arm]
    if estimand != "target":
        sds["pooled"] = np.sqrt((sds["treated"] ** 2 + sds["control"] ** 2) / 2)
    std = std or "target"
    if std not in sds:
        raise InputError(f"std={std!r} is not available here; choose from {sorted(sds)}")
    scale = sds[std].copy()
    if raw:
        scale[len(covariates):] = 1.0
    balanced = slice(0 if means else len(covariates), len(names))
    zero = [name for name, value in zip(names[balanced], scale[balanced]) if not value > 0]
    if zero:
        raise InputError(f"balance columns {zero} have zero {std} SD, so their balance and SMDs are undefined")
    k = len(names[balanced])
    deltas = None if delta is None else np.concatenate([np.full(len(covariates), mean_delta or delta),
                                                         np.full(len(basis_names), delta)])[balanced]
    exact_entropy = family == "entropy_balance" and delta is None
    block = partial(_dual_arm_block, goal=goal[balanced], scale=scale[balanced], delta=deltas, columns=balanced,
                    dispersion="entropy" if family == "entropy_balance" else "chi_square")
    shown = slice(0, len(covariates)) if family == "kernel_sbw" else slice(None)
    groups, targets = [], []
    for arm in weighted:
        label = labels[arm]
        blocks = dask.persist(*[dask.delayed(block)(piece[0], arm=arm, total=totals[arm],
                                                    mean=totals[arm] / counts[arm]) for piece in arms])
        # the blocks hold the balanced columns centred at the goal; the table reads them there when it shows some of
        # them (no copy), else (kernel SBW without the means) the covariates in the data pieces
        report = Report(names[shown], label, "mean", goal[shown], sds[std][shown], offset=goal[shown], std=std,
                        columns=shown, arm=None if means else arm, base_scale=totals[arm])
        groups.append(Group(DaskBlocks(blocks, DaskBlocks(blocks).collect(block_size)), report,
                            None if means else list(arms)))
        prefix = "" if len(weighted) == 1 else f"{label}:"
        targets += [f"balance:{prefix}{c}" for c in names[balanced]] + [f"sum{prefix and ':' + label}"]
    layout = dask.persist(*[dask.delayed(_arm_layout)(piece[0], weighted) for piece in arms])
    if exact_entropy:
        method, tolerances = CalibrationNewton(), np.append(scale[balanced], 1.0)
    else:
        method, tolerances = DualNewton(), np.append(deltas, 0.0)
    parameters = None
    if not exact_entropy:            # the tolerances' names, as in memory: kernel SBW's covariate means have their own
        columns = np.concatenate([np.arange(k) + g * (k + 1) for g in range(len(weighted))])
        is_basis = np.tile(np.arange(k) >= len(names[balanced]) - len(basis_names), len(weighted))
        parameters = {"mean_delta": columns[~is_basis], "delta": columns[is_basis]} \
            if family == "kernel_sbw" and means else {"delta": columns}
    problem = PartitionedProblem(groups, layout, (None,) * (len(arms) + 1), method,
                                 np.tile(np.append(np.zeros(k), 1.0), len(weighted)),
                                 np.tile(tolerances, len(weighted)), targets, family=family,
                                 weight_scale="sums to 1" if len(weighted) == 1 else "sums to 1 within each arm",
                                 estimand=estimand, sample_weights=base_weights, tolerances=parameters)
    if estimand != "target":
        problem.balance_functions = PartitionedFunctions(list(arms), goal[balanced], balanced)
    return problem


#: The label of each arm (treatment 0 / 1), as the balance table and the weight summary name its group.
ARM_LABELS = ("control", "treated")


def _arms_in_order(piece) -> np.ndarray:
    """The arms of a partition's rows in order of first appearance."""
    return pd.unique(piece["a"])


def _arm_layout(piece, weighted) -> tuple:
    """A partition's weighted units: their index (the weighted arm's rows, or every row when both arms are
    weighted) and the positions among them of each weighted arm's rows (None for one arm)."""
    if len(weighted) == 1:
        return piece["index"][piece["a"] == weighted[0]], None
    return piece["index"], [np.flatnonzero(piece["a"] == arm) for arm in weighted]


def _arms(frame, treatment, covariates, base_weights, basis=None, expansion=None) -> tuple:
    """One partition read once, as a block of one argument: {treatment (0/1; 1 for every row without a
    treatment), balance columns (the covariates with their `expansion`, then its rows of the `basis`, if any), base
    weights, index}."""
    X = bases.expanded(numeric_matrix(frame, covariates, "covariates"), covariates, **(expansion or {}))[0]
    a = np.ones(len(frame), dtype=int) if treatment is None else treatment_indicator(frame, treatment, both_arms=False)
    return ({"a": a,
             "X": X if basis is None else np.hstack([X, basis]), "d": check_base_weights(frame, base_weights),
             "index": frame.index},)


def _binary_columns(frame, covariates):
    X = numeric_matrix(frame, covariates, "covariates")
    return np.all((X == 0) | (X == 1), axis=0)


def _column_range(piece):
    return value_range(piece["X"])


def _selected(piece, keep):
    return ({**piece, "X": piece["X"][:, keep]},)


def _arm_sums(piece):
    """Per arm (rows 0 / 1): units, sum d, sum d x."""
    a, X, d = piece["a"], piece["X"], piece["d"]
    arms = [a == 0, a == 1]
    return (np.array([float(arm.sum()) for arm in arms]), np.array([d[arm].sum() for arm in arms]),
            np.array([d[arm] @ X[arm] for arm in arms]))


def _arm_squares(piece, means):
    """Per arm: sum d (x - mean_arm)^2, and sum d^2."""
    a, X, d = piece["a"], piece["X"], piece["d"]
    arms = [a == 0, a == 1]
    return (np.array([d[arm] @ (X[arm] - means[j]) ** 2 for j, arm in enumerate(arms)]),
            np.array([d[arm] @ d[arm] for arm in arms]))


def _arm_terms(piece, arm, goal, scale, total, columns, delta=None):
    """The weighted arm's rows of one partition, its balanced `columns` centred at the target means, with their base
    weights' shares q = d / (the arm's total d) and its balance and normalization terms, as the in-memory builder
    makes them."""
    rows = piece["a"] == arm
    share = piece["d"][rows] / total
    return share, [Normalize(1.0, name="sum"),
                   Balance(piece["X"][rows][:, columns] - goal, goal, delta=delta, scale=scale, offset=goal,
                           name="balance")]


def _dual_arm_block(piece, arm, goal, scale, total, mean, delta, columns, dispersion):
    """The dual Newton's block (rows, distance, lo, hi, memo) of one partition's weighted arm, as the in-memory
    builder makes it: SBW's dispersion sum (w - q)^2 / (d / mean d) with w >= 0, or entropy balancing's KL(w || q);
    sum w = 1, balance within delta."""
    share, terms = _arm_terms(piece, arm, goal, scale, total, columns, delta)
    if dispersion == "entropy":
        return dual_block([Entropy(share, name="dispersion"), *terms], len(share))
    d = piece["d"][piece["a"] == arm]
    return dual_block([ChiSquare(share, d / mean, name="dispersion"), *terms, Bounds(lower=0.0, name="nonnegative")],
                      len(share))
