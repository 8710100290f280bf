"""Causal balancing weights: one weight per unit of the weighted arm, summing to 1 within each arm.

  sbw               min sum_i (w_i - d_i/sum d)^2 / (d_i/mean d)   s.t. |B'w - target| <= delta, sum w = 1, w >= 0
  kernel_sbw        sbw on a rank-restricted Nystrom kernel basis (plus, optionally, covariate means)
  entropy_balance   min sum_i w_i log(w_i / q_i)                   s.t. B'w = target (or within delta), sum w = 1

Data are held once: each arm's balance functions (every block side by side) are one read-only matrix, filled once
from the rows of that arm; the balance terms hold column views of it, and with one weighted arm the balance table
reads it too (with two, whose rows interleave, the table keeps its covariates in row order).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import basis as bases
from .. import memory
from .. import tuning
from ..arguments import recorded
from ..balancing_se import BalanceFunctions
from ..diagnostics import BalanceDesign, smd_denominators
from ..errors import InputError
from ..problem import WeightingProblem
from ..terms import Balance, Bounds, ChiSquare, Entropy, Normalize
from ..validation import as_frame, base_weights as check_base_weights, columns_list, drop_constant, finite, integer
from ..validation import is_dask_frame, numeric_matrix, one_of, target_means, treatment_indicator, validated
from .on_dask import entropy_balance as entropy_balance_partitions, kernel_sbw as kernel_sbw_partitions
from .on_dask import sbw as sbw_partitions

ESTIMANDS = ("ATT", "ATC", "ATE", "target")
DELTA_SCALES = ("sd", "raw")


#: kernel_sbw's tolerance on the covariate means, in SD units, when the basis's delta is raw (sbw's default delta).
DEFAULT_MEAN_DELTA = 0.02


@dataclass
class Block:
    """Balance functions of every data row (`B`, one column per name) with their tolerance (None: exact), in
    `delta_scale` units ("sd" or "raw"; None: the problem's), a Parameter named `tolerance`."""

    name: str
    B: np.ndarray
    names: list
    delta: object = None
    delta_scale: str | None = None
    tolerance: str = "delta"


@recorded
@validated(estimand=one_of(ESTIMANDS), delta_scale=one_of(DELTA_SCALES), moments=integer(1))
def sbw(data, treatment=None, covariates=None, estimand="ATT", delta=0.02, delta_scale="sd", std=None, target=None,
        moments=1, interactions=False, basis=None, base_weights=None) -> WeightingProblem:
    """Stable balancing weights (Zubizarreta 2015).

    minimize sum_i (w_i - d_i / sum d)^2 / (d_i / mean d)   (the variance of the weights when d = 1)
    s.t.     |sum_i w_i b_j(x_i) - target_j| <= delta_j s_j for every balance function b_j,
             sum_i w_i = 1 within each weighted arm, w >= 0.

    estimand: "ATT" weights the controls to the treated means, "ATC" the treated to the controls,
    "ATE" each arm to the full sample, "target" every row to `target` (a dict or Series of means
    per balance column). Balance functions: the covariates, their powers up to `moments`, pairwise
    `interactions`, and the columns of a user `basis` (array or DataFrame with one row per data row).
    delta is in units of s_j, the SD named by `std` ("target" by default, or "pooled", "treated",
    "control") for delta_scale="sd", or 1 for delta_scale="raw"; s_j is the sample SD (R's sd(), as sbw and
    cobalt use; base-weighted like cobalt's when base_weights are given). base_weights (a column name or an
    array) are sample weights: they weight the target means and are the weights' starting point.
    delta="auto" chooses delta at the first solve by Wang & Zubizarreta's bootstrap over R sbw's grid (as sbw's
    bal_alg), delta="tightest" takes the smallest feasible delta; `counterpoise.tuning.BootstrapDelta(grid,
    samples, seed)` sets the grid and resamples. The choice is kept as `solution.tuning`. `data` may be a dask
    DataFrame (any estimand, the covariates with their moments and interactions, delta in SD units: a number,
    "auto" or "tightest", base weights a column, optionally a dask array `basis` chunked like the partitions): the
    problem is then built and solved on its partitions by the dual Newton (`families.on_dask`).
    """
    delta, tuner = tuning.resolve(delta)
    if is_dask_frame(data):
        if delta_scale != "sd":
            raise InputError("SBW on a dask DataFrame takes delta in SD units (delta_scale='sd')")
        problem = sbw_partitions(data, treatment, covariates, estimand, delta, std, base_weights, basis, moments,
                                 interactions, target)
        problem.tuner = tuner
        return problem
    frame = as_frame(data)
    block = _moment_block(frame, covariates, moments, interactions, basis, delta)
    problem = _balancing_problem(frame, treatment, estimand, [block], block, "chi_square", "sbw",
                                 delta_scale=delta_scale, std=std, target=target, base_weights=base_weights)
    problem.tuner = tuner
    return problem


@recorded
@validated(estimand=one_of(ESTIMANDS), delta_scale=one_of(DELTA_SCALES),
           construction=one_of(bases.NYSTROM_CONSTRUCTIONS))
def kernel_sbw(data, treatment=None, covariates=None, estimand="ATT", delta=0.02, delta_scale="sd", std=None,
               m=None, l=None, s=None, bandwidth="2p", construction="rank_restricted", seed=0, means=True,
               mean_delta=None, base_weights=None) -> WeightingProblem:
    """Kernel stable balancing weights (Kim, Niknam & Zubizarreta): SBW on a Nystrom basis of a Gaussian kernel on
    the standardized covariates, `basis.nystrom(X, m, l, s, bandwidth, construction, seed)`, with tolerance `delta`
    (in `delta_scale` units) on every basis column. construction="rank_restricted" is the paper's Algorithm 1 (the
    rank-s basis D, n x s, defaults m=300, l=200, s=100); "landmark_eigenvectors" is the authors' public code's
    basis C U_W (n x l, defaults m=100 below 100,000 rows and 250 above, l = m/2); `bandwidth` is a number or the
    rule "2p" (twice the number of covariates: kbal's and the public code's, the default) or "p" (Algorithm 1 as
    printed). The defaults come from the replication of the paper's simulation (problems/README.md,
    kernel-sbw-rmse: n = 2000, 200 draws in each of 8 settings): bandwidth 2p had the lower ATT RMSE than p in all
    7 settings where both had weights (e.g. 0.247 against 0.303, strong overlap), and Algorithm 1 a lower RMSE
    than the public code's basis wherever it had weights at the paper's raw delta, though that basis is feasible
    far more often at that delta.
    The landmarks are drawn by a seeded hash of the data's index labels, so the weights do not depend on the rows'
    order.

    `means=True` also balances the covariate means, within `mean_delta` in SD units whatever `delta_scale` is
    (default: `delta` when delta_scale="sd" and delta is a number, else 0.02 SD), its own Parameter "mean_delta": a raw basis tolerance is
    never applied to the covariates, and a path over "delta" moves the basis's tolerance alone. The paper's setting balances the raw basis alone: `delta=0.0005, delta_scale="raw", means=False`.
    `data` may be a dask DataFrame (any estimand but "target", any delta, base weights a column):
    the basis and the problem are then built, and solved by the dual Newton, on its partitions (`families.on_dask`).
    """
    delta, tuner = tuning.resolve(delta)
    if mean_delta is None:
        mean_delta = delta if delta_scale == "sd" and tuner is None else DEFAULT_MEAN_DELTA
    if is_dask_frame(data):
        problem = kernel_sbw_partitions(data, treatment, covariates, estimand, delta, delta_scale, std, mean_delta,
                                        base_weights, dict(m=m, l=l, s=s, bandwidth=bandwidth,
                                                           construction=construction, seed=seed), means=means)
        problem.tuner = tuner
        return problem
    original = as_frame(data)
    # One matrix [D, X] holds the basis and the covariates, its rows the weighted arm's first (when one arm is
    # weighted): the arm's matrix is then a view of it, centred in place, not a copy (at 1M rows, 0.6 GB less)
    weighted = _arms(original, treatment, estimand)[0]
    order = np.arange(len(original)) if estimand == "ATE" else np.argsort(~weighted, kind="stable")
    X, names = _covariates(original, covariates)
    X, names = drop_constant(X, names)
    frame = original[list(dict.fromkeys(c for c in (treatment, base_weights) if isinstance(c, str)))].iloc[order]
    m, l, s = bases.nystrom_sizes(construction, len(frame), m, l, s)
    columns = l if s is None else s
    matrix = memory.empty((len(frame), columns + (X.shape[1] if means else 0)))
    X = _rows_into(X, order, matrix[:, columns:] if means else None)
    kernel = bases.nystrom(X, m=m, l=l, s=s, bandwidth=bandwidth, construction=construction, seed=seed,
                           keys=frame.index, out=matrix[:, :columns])
    covariate_means = Block("means", X, names, mean_delta, delta_scale="sd", tolerance="mean_delta")
    blocks = [Block("kernel", kernel.D, list(kernel.names), delta)] + ([covariate_means] if means else [])
    problem = _balancing_problem(frame, treatment, estimand, blocks, covariate_means, "chi_square", "kernel_sbw",
                                 delta_scale=delta_scale, std=std, target=None, base_weights=base_weights,
                                 own_matrix=matrix)
    if problem.sample_weights is not None:
        problem.sample_weights = problem.sample_weights.loc[original.index]
    problem.tuner = tuner
    return problem


@recorded
@validated(estimand=one_of(ESTIMANDS), delta_scale=one_of(DELTA_SCALES), moments=integer(1))
def entropy_balance(data, treatment=None, covariates=None, estimand="ATT", delta=None, delta_scale="sd", std=None,
                    target=None, moments=1, interactions=False, basis=None, base_weights=None) -> WeightingProblem:
    """Entropy balancing (Hainmueller 2012): minimize sum_i w_i log(w_i / q_i), q = base weights
    normalized within each arm, subject to exact balance B'w = target (or |B'w - target| <= delta s
    when `delta` is given) and sum w = 1 within each arm. Arguments as in `sbw`. `data` may be a dask DataFrame
    (any estimand, exact balance (or within delta) of the covariates with their moments and interactions, base weights
    a column): the problem is then built and solved on its partitions (`families.on_dask`).
    """
    if is_dask_frame(data):
        if basis is not None:
            raise InputError("entropy balancing on a dask DataFrame balances the covariates, their moments and "
                             "interactions (a dask array basis is SBW's)")
        if delta_scale != "sd":
            raise InputError("entropy balancing on a dask DataFrame takes delta in SD units (delta_scale='sd')")
        return entropy_balance_partitions(data, treatment, covariates, estimand, delta, std, base_weights, moments,
                                          interactions, target)
    frame = as_frame(data)
    block = _moment_block(frame, covariates, moments, interactions, basis, delta)
    return _balancing_problem(frame, treatment, estimand, [block], block, "entropy", "entropy_balance",
                              delta_scale=delta_scale, std=std, target=target, base_weights=base_weights)


def _moment_block(frame, covariates, moments, interactions, basis, delta) -> Block:
    """The "balance" block of sbw and entropy_balance: covariates, their moments, interactions and a user basis."""
    X, names = _covariates(frame, covariates)
    B, bnames = _expand(X, names, moments, interactions, basis, len(frame))
    B, bnames = drop_constant(B, bnames)
    return Block("balance", B, bnames, delta)


def _covariates(frame, covariates):
    """The covariate matrix; without `covariates`, the list a dataset records in `frame.attrs["covariates"]`."""
    names = columns_list(frame.attrs.get("covariates") if covariates is None else covariates, "covariates")
    return numeric_matrix(frame, names, "covariates"), names


def _expand(X, names, moments, interactions, basis, n):
    B, bnames = bases.expanded(X, names, moments, interactions)
    if basis is not None:
        extra = basis.to_numpy(dtype=float) if isinstance(basis, pd.DataFrame) else np.asarray(basis, dtype=float)
        extra = extra.reshape(n, -1) if extra.ndim == 1 else extra
        if extra.shape[0] != n:
            raise InputError(f"basis has {extra.shape[0]} rows but the data has {n}")
        finite(extra, "basis")
        enames = list(basis.columns) if isinstance(basis, pd.DataFrame) else [f"basis{j + 1}" for j in range(extra.shape[1])]
        clash = sorted(set(enames) & set(bnames))
        if clash:
            raise InputError(f"basis columns {clash} have the same names as balance columns already present")
        B, bnames = np.hstack([B, extra]), bnames + enames
    return B, list(bnames)


def _arms(frame, treatment, estimand):
    """(weighted-row mask, group label per weighted row, target-row mask or None, treatment or None)."""
    n = len(frame)
    if estimand == "target":
        return np.ones(n, bool), np.full(n, "sample", dtype=object), None, None
    a = treatment_indicator(frame, treatment)
    if estimand == "ATT":
        return a == 0, np.full(int(np.sum(a == 0)), "control", dtype=object), a == 1, a
    if estimand == "ATC":
        return a == 1, np.full(int(np.sum(a == 1)), "treated", dtype=object), a == 0, a
    return np.ones(n, bool), np.where(a == 1, "treated", "control").astype(object), np.ones(n, bool), a


def _balancing_problem(frame, treatment, estimand, blocks, report, dispersion, family, *, delta_scale, std, target,
                       base_weights, own_matrix=None):
    """Assemble dispersion + per-arm normalization + per-arm balance blocks (+ w >= 0 for chi-square).

    `blocks` are the balanced Blocks; `report` is the Block whose columns the balance table shows: one of `blocks`
    (its targets then follow the terms when swept), or the covariates alone when they are not balanced.
    `own_matrix`: the builder's scratch matrix whose consecutive column views the blocks' B are; when one arm is
    weighted and its rows come first, the arm's matrix is its leading rows, centred in place (no copy).
    """
    weighted, groups, target_rows, a = _arms(frame, treatment, estimand)
    d_all = check_base_weights(frame, base_weights)
    d = d_all[weighted]
    labels = list(dict.fromkeys(groups))
    rows = {g: (None if len(labels) == 1 else np.flatnonzero(groups == g)) for g in labels}
    share = d / _group_total(d, groups)
    std = std or "target"

    def summary(block, with_sds=True):
        """Fixed SDs (when needed: they cost passes over B) and target values of the block's columns."""
        sds = smd_denominators(block.B, treatment=a, target_rows=target_rows, base_weights=d_all) if with_sds else None
        goal = (target_means(target, block.names) if estimand == "target"
                else _weighted_mean(block.B, d_all, target_rows))
        return sds, goal

    mean_d = _group_total(d, groups) / pd.Series(groups).groupby(groups).transform("size").to_numpy()
    terms = [ChiSquare(share, d / mean_d, name="dispersion") if dispersion == "chi_square"
             else Entropy(share, name="dispersion")]
    for g in labels:
        terms.append(Normalize(1.0, rows=rows[g], name="sum" if len(labels) == 1 else f"sum:{g}"))
    scales = {id(block): block.delta_scale or delta_scale for block in blocks}
    summaries = {id(block): summary(block, with_sds=scales[id(block)] == "sd" or block is report) for block in blocks}
    arm_rows = {g: np.flatnonzero(weighted) if rows[g] is None else np.flatnonzero(weighted)[rows[g]] for g in labels}
    # each block centred at its target values: balance is the same for normalized weights, and a covariate far
    # from zero (1e12 + noise) keeps its precision
    offsets = [summaries[id(block)][1] for block in blocks]
    leading = own_matrix is not None and len(labels) == 1 and np.array_equal(arm_rows[labels[0]],
                                                                            np.arange(len(arm_rows[labels[0]])))
    if leading:
        matrices = {labels[0]: _centred_in_place(own_matrix, [block.B for block in blocks], offsets,
                                                 len(arm_rows[labels[0]]))}
    else:
        matrices = {g: _side_by_side([block.B for block in blocks], offsets, arm_rows[g]) for g in labels}
    balance_terms, start = {}, 0
    for block in blocks:
        sds, goal = summaries[id(block)]
        scale = _scale(sds, std, block.names) if scales[id(block)] == "sd" else np.ones(len(block.names))
        columns = slice(start, start + len(block.names))
        for g in labels:
            term = Balance(matrices[g][:, columns], goal, delta=block.delta, scale=scale, rows=rows[g],
                           columns=block.names, name=block.name if len(labels) == 1 else f"{block.name}:{g}",
                           offset=goal, tolerance=block.tolerance)
            balance_terms[block.name, g] = term
            terms.append(term)
        if block is report:
            report_columns = columns
        start += len(block.names)
    if dispersion == "chi_square":
        terms.append(Bounds(lower=0.0, name="nonnegative"))
    if any(block is report for block in blocks):
        sds, goal = summaries[id(report)]
        design_targets = {g: (balance_terms[report.name, g], np.arange(len(report.names))) for g in labels}
        # one arm: the table reads the problem's own (centred) matrix; several: their rows interleave, so a copy
        X = matrices[labels[0]][:, report_columns] if len(labels) == 1 else _centred_rows(report.B, weighted, goal)
    else:
        sds, goal = summary(report)
        design_targets = None
        X = _centred_rows(report.B, weighted, goal)
    design = BalanceDesign(names=tuple(report.names), X=X, groups=groups, base_weights=d,
                           targets={g: goal for g in labels}, denominators=sds, std=std, kind="mean", offset=goal,
                           checked=True)
    scale_text = "sums to 1 within each arm" if len(labels) > 1 else "sums to 1"
    sample_weights = None if base_weights is None else pd.Series(d_all, index=frame.index)
    problem = WeightingProblem(frame.index[weighted], terms, family=family, weight_scale=scale_text,
                               weight_unit=float(np.mean(share)), design=design, design_targets=design_targets,
                               estimand=estimand, sample_weights=sample_weights)
    if estimand != "target":
        problem.balance_functions = _functions(frame, blocks, offsets, matrices, arm_rows, target_rows, estimand)
    return problem


def _functions(frame, blocks, offsets, matrices, arm_rows, target_rows, estimand) -> BalanceFunctions:
    """Each arm's balance functions for the balancing SE (`balancing_se`): the weighted arms' matrices the terms
    hold, and for an ATT / ATC the target arm's rows, gathered when first asked for and kept."""
    arms = {g: (frame.index[arm_rows[g]], matrices[g]) for g in matrices}
    if estimand in ("ATT", "ATC"):
        target = np.flatnonzero(target_rows)
        sources = [block.B for block in blocks]
        arms["treated" if estimand == "ATT" else "control"] = (
            frame.index[target], functools.cache(lambda: _side_by_side(sources, offsets, target)))
    return BalanceFunctions(arms)


def _centred_rows(B, rows, center):
    """B[rows] - center, as the balanced blocks are held: one copy, centred in place."""
    X = B[rows]
    X -= center
    return X


def _side_by_side(matrices, offsets, rows, chunk=65_536):
    """The `rows` of every matrix minus its column offsets, side by side in one new C-ordered matrix: the arm's
    only copy of its data (filled in row chunks, so no second full-size temporary). Read-only: the terms, the
    balance table and the backends share it."""
    out = np.empty((len(rows), sum(B.shape[1] for B in matrices)))
    start = 0
    for B, offset in zip(matrices, offsets):
        for first in range(0, len(rows), chunk):
            out[first: first + chunk, start: start + B.shape[1]] = B[rows[first: first + chunk]] - offset
        start += B.shape[1]
    out.flags.writeable = False
    return out


def _rows_into(X, order, out=None, chunk=65_536):
    """X[order], written into `out` (a view of the builder's matrix) in row chunks, or a new array."""
    if out is None:
        return X[order]
    for first in range(0, len(order), chunk):
        out[first: first + chunk] = X[order[first: first + chunk]]
    return out


def _centred_in_place(matrix, blocks, offsets, rows, chunk=65_536):
    """The first `rows` rows of `matrix` (whose consecutive column views are `blocks`) minus the blocks' column
    offsets, in place, in row chunks: the arm's matrix as a read-only view, with no copy."""
    if not np.shares_memory(matrix, blocks[0]) or sum(B.shape[1] for B in blocks) != matrix.shape[1]:
        raise ValueError("the blocks are not the columns of the builder's matrix")
    offset = np.concatenate(offsets)
    for first in range(0, rows, chunk):
        matrix[first: min(first + chunk, rows)] -= offset
    arm = matrix[:rows]
    arm.flags.writeable = False
    return arm


def _group_total(d, groups):
    """Each unit's group total of d."""
    return pd.Series(d).groupby(groups).transform("sum").to_numpy()


def _weighted_mean(B, d, rows):
    """sum_{i in rows} d_i b_i / sum_{i in rows} d_i, without copying the rows of B."""
    weights = np.where(rows, d, 0.0)
    return weights @ B / weights.sum()


def _scale(sds, std, names):
    if std not in sds:
        raise InputError(f"std={std!r} is not available here; choose from {sorted(sds)}")
    s = np.asarray(sds[std], dtype=float)
    zero = [n for n, v in zip(names, s) if not v > 0]
    if zero:
        usable = sorted((key for key, values in sds.items() if np.all(np.asarray(values) > 0)),
                        key=lambda key: key != "pooled")
        advice = (f"use std={usable[0]!r}" + (f" (or {', '.join(map(repr, usable[1:]))})" if usable[1:] else "")
                  if usable else "no SD is positive for them; drop them or collect more units")
        raise InputError(f"balance columns {zero} have zero {std} SD, so delta in SD units is undefined for them (and "
                         f"so are the balance table's SMDs on that scale); {advice}")
    return s
