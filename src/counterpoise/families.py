"""The builders: each turns data and a few choices into a `WeightingProblem`.

Causal balancing (one weight per unit of the weighted arm, summing to 1 within each arm):
  sbw               min sum_i (w_i - d_i/sum d)^2 / (d_i/mean d)   s.t. |B'w - target| <= delta, sum w = 1, w >= 0
  kernel_sbw        sbw on a rank-restricted Nystrom kernel basis (plus, optionally, covariate means)
  entropy_balance   min sum_i w_i log(w_i / q_i)                   s.t. B'w = target (or within delta), sum w = 1
Survey calibration (weights on the scale of the population totals):
  calibrate         min sum_i d_i G(w_i / d_i) (linear, raking or logit G)   s.t. X'w = T, ratio / weight bounds
  sparse_calibrate  min 1/2 sum_j ((x_j'w - T_j)/s_j)^2 + lam mean_i(w_i / d_i)  s.t. w >= 0, w / d <= cap
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.linalg

from . import basis as bases
from .diagnostics import BalanceDesign, smd_denominators
from .errors import InfeasibleError, InputError, SolverError
from .problem import WeightingProblem
from .terms import Balance, Bounds, ChiSquare, Entropy, Logit, Normalize, SparseLoss
from .validation import CounterpoiseWarning, as_frame, base_weights as check_base_weights, choice, columns_list
from .validation import drop_constant, finite, numeric_matrix, treatment_indicator

ESTIMANDS = ("ATT", "ATC", "ATE", "target")


# ---- causal balancing ---------------------------------------------------------------------------


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
    "control") for delta_scale="sd", or 1 for delta_scale="raw". base_weights (a column name or an
    array) are sample weights: they weight the target means and are the weights' starting point.
    """
    spec = dict(treatment=treatment, covariates=covariates, estimand=estimand, delta=delta, delta_scale=delta_scale,
                std=std, target=target, moments=moments, interactions=interactions, basis=basis, base_weights=base_weights)
    return _moment_problem(sbw, "chi_square", data, spec)


def kernel_sbw(data, treatment=None, covariates=None, estimand="ATT", delta=0.02, delta_scale="sd", std=None,
               m=300, l=200, s=100, bandwidth=None, seed=0, means=True, mean_delta=None,
               base_weights=None) -> WeightingProblem:
    """Kernel stable balancing weights (Kim, Niknam & Zubizarreta): SBW on the rank-restricted Nystrom
    basis D (n x s) of a Gaussian kernel on the standardized covariates (Algorithm 1,
    `basis.nystrom(X, m, l, s, bandwidth, seed)`), with tolerance `delta` on every basis column.
    `means=True` also balances the covariate means within `mean_delta` (default: `delta`).
    The paper uses delta = 0.0005 on the raw basis columns: `delta=0.0005, delta_scale="raw"`.
    """
    spec = dict(treatment=treatment, covariates=covariates, estimand=estimand, delta=delta, delta_scale=delta_scale,
                std=std, m=m, l=l, s=s, bandwidth=bandwidth, seed=seed, means=means, mean_delta=mean_delta,
                base_weights=base_weights)
    frame = as_frame(data)
    X, names = _covariates(frame, covariates)
    X, names = drop_constant(X, names)
    kernel = bases.nystrom(X, m=m, l=l, s=s, bandwidth=bandwidth, seed=seed)
    blocks = [("kernel", kernel.D, list(kernel.names), delta)]
    if means:
        blocks.append(("means", X, names, delta if mean_delta is None else mean_delta))
    return _balancing_problem(frame, treatment, estimand, blocks, "means" if means else (X, names), delta_scale, std,
                              None, base_weights,
                              dispersion="chi_square", family="kernel_sbw", rebuild=_rebuilder(kernel_sbw, spec, frame))


def entropy_balance(data, treatment=None, covariates=None, estimand="ATT", delta=None, delta_scale="sd", std=None,
                    target=None, moments=1, interactions=False, basis=None, base_weights=None) -> WeightingProblem:
    """Entropy balancing (Hainmueller 2012): minimize sum_i w_i log(w_i / q_i), q = base weights
    normalized within each arm, subject to exact balance B'w = target (or |B'w - target| <= delta s
    when `delta` is given) and sum w = 1 within each arm. Arguments as in `sbw`.
    """
    spec = dict(treatment=treatment, covariates=covariates, estimand=estimand, delta=delta, delta_scale=delta_scale,
                std=std, target=target, moments=moments, interactions=interactions, basis=basis, base_weights=base_weights)
    return _moment_problem(entropy_balance, "entropy", data, spec)


def _moment_problem(builder, dispersion, data, spec):
    """A balancing problem on covariates, their moments, interactions and a user basis (sbw, entropy_balance)."""
    frame = as_frame(data)
    X, names = _covariates(frame, spec["covariates"])
    B, bnames = _expand(X, names, spec["moments"], spec["interactions"], spec["basis"], len(frame))
    B, bnames = drop_constant(B, bnames)
    return _balancing_problem(frame, spec["treatment"], spec["estimand"], [("balance", B, bnames, spec["delta"])],
                              "balance", spec["delta_scale"], spec["std"], spec["target"], spec["base_weights"],
                              dispersion=dispersion, family=builder.__name__, rebuild=_rebuilder(builder, spec, frame))


def _covariates(frame, covariates):
    """The covariate matrix; without `covariates`, the list a dataset records in `frame.attrs["covariates"]`."""
    names = columns_list(frame.attrs.get("covariates") if covariates is None else covariates, "covariates")
    return numeric_matrix(frame, names, "covariates"), names


def _expand(X, names, moments, interactions, basis, n):
    if not (isinstance(moments, (int, np.integer)) and moments >= 1):
        raise InputError(f"moments must be an integer >= 1, got {moments!r}")
    B, bnames = bases.moments(X, names, degree=moments) if moments > 1 else (X, list(names))
    if interactions:
        M, mnames = bases.interactions(X, names)
        B, bnames = np.hstack([B, M]), bnames + mnames
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
    return np.ascontiguousarray(B), list(bnames)


def _arms(frame, treatment, estimand):
    """(weighted-row mask, group label per weighted row, target-row mask or None, treatment or None)."""
    choice(estimand, ESTIMANDS, "estimand")
    n = len(frame)
    if estimand == "target":
        return np.ones(n, bool), np.full(n, "sample", dtype=object), None, None
    a = treatment_indicator(frame, treatment)
    if estimand == "ATT":
        return a == 0, np.full(int(np.sum(a == 0)), "control", dtype=object), a == 1, a
    if estimand == "ATC":
        return a == 1, np.full(int(np.sum(a == 1)), "treated", dtype=object), a == 0, a
    return np.ones(n, bool), np.where(a == 1, "treated", "control").astype(object), np.ones(n, bool), a


def _user_target(target, names):
    if target is None:
        raise InputError('estimand="target" needs target= (a dict or Series of target means per balance column)')
    if isinstance(target, (dict, pd.Series)):
        missing = [c for c in names if c not in target]
        if missing:
            raise InputError(f"target has no value for balance columns {missing}")
        values = np.array([float(target[c]) for c in names])
    else:
        values = np.asarray(target, dtype=float).ravel()
        if len(values) != len(names):
            raise InputError(f"target has {len(values)} values for {len(names)} balance columns {names}")
    finite(values, "target")
    return values


def _balancing_problem(frame, treatment, estimand, blocks, report, delta_scale, std, target, base_weights,
                       dispersion, family, rebuild):
    """Assemble dispersion + per-arm normalization + per-arm balance blocks (+ w >= 0 for chi-square).

    `blocks` are (name, B over all rows, column names, delta); `report` names the block whose columns the
    balance table shows (its targets follow the terms when swept), or is an (X, names) pair of its own.
    """
    choice(delta_scale, ("sd", "raw"), "delta_scale")
    weighted, groups, target_rows, a = _arms(frame, treatment, estimand)
    d_all = check_base_weights(frame, base_weights)
    d = d_all[weighted]
    labels = list(dict.fromkeys(groups))
    rows = {g: (None if len(labels) == 1 else np.flatnonzero(groups == g)) for g in labels}
    share = d / _group_total(d, groups)
    std = std or "target"

    def summary(B, names, with_sds=True):
        """Fixed SDs (when needed: they cost passes over B) and target values of the columns of B."""
        sds = smd_denominators(B, treatment=a, target_rows=target_rows, base_weights=d_all) if with_sds else None
        goal = _user_target(target, names) if estimand == "target" else _weighted_mean(B, d_all, target_rows)
        return sds, goal

    mean_d = _group_total(d, groups) / pd.Series(groups).groupby(groups).transform("size").to_numpy()
    terms = [ChiSquare(share, d / mean_d, name="dispersion") if dispersion == "chi_square"
             else Entropy(share, name="dispersion")]
    for g in labels:
        terms.append(Normalize(1.0, rows=rows[g], name="sum" if len(labels) == 1 else f"sum:{g}"))
    summaries, balance_terms = {}, {}
    for block, B, names, delta in blocks:
        sds, goal = summaries[block] = summary(B, names, with_sds=delta_scale == "sd" or report == block)
        scale = _scale(sds, std, names) if delta_scale == "sd" else np.ones(len(names))
        Bw = B[weighted]
        for g in labels:
            term = Balance(Bw if rows[g] is None else Bw[rows[g]], goal, delta=delta, scale=scale, rows=rows[g],
                           columns=names, name=block if len(labels) == 1 else f"{block}:{g}")
            balance_terms[block, g] = term
            terms.append(term)
    if dispersion == "chi_square":
        terms.append(Bounds(lower=0.0, name="nonnegative"))
    if isinstance(report, str):
        X, names = next((B, names) for block, B, names, _ in blocks if block == report)
        sds, goal = summaries[report]
        design_targets = {g: (balance_terms[report, g], np.arange(len(names))) for g in labels}
    else:
        X, names = report
        sds, goal = summary(X, names)
        design_targets = None
    design = BalanceDesign(names=tuple(names), X=X[weighted], groups=groups, base_weights=d,
                           targets={g: goal for g in labels}, denominators=sds, std=std, kind="mean")
    scale_text = "sums to 1 within each arm" if len(labels) > 1 else "sums to 1"
    sample_weights = None if base_weights is None else pd.Series(d_all, index=frame.index)
    return WeightingProblem(frame.index[weighted], terms, family=family, weight_scale=scale_text,
                            weight_unit=float(np.mean(share)), design=design, rebuild=rebuild,
                            design_targets=design_targets, estimand=estimand, sample_weights=sample_weights)


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
        raise InputError(f"balance columns {zero} have zero {std} SD, so delta in SD units is undefined for them; "
                         "use std='pooled' or delta_scale='raw'")
    return s


# ---- survey calibration -------------------------------------------------------------------------

DISTANCES = ("linear", "raking", "logit")


def calibrate(data, base_weights=None, margins=None, totals=None, constraints=None, distance="linear",
              bounds=None, weight_bounds=None, tol=None) -> WeightingProblem:
    """Calibration of base weights d to population totals (Deville & Sarndal 1992; survey::calibrate).

    minimize sum_i d_i G(w_i / d_i)   s.t.  sum_i w_i x_ij = T_j for every target j
    with G the "linear" (chi-square, GREG: G(g) = (g-1)^2/2), "raking" (G(g) = g log g - g + 1) or
    "logit" (bounded; needs `bounds`) distance. Targets: `margins={"var": {"level": total}}` (every
    level in the data needs a total; without any targets, those a dataset records in `frame.attrs["margins"]`
    and `["totals"]`, with its `["base_weights"]` column), `totals={"col": total}`, and
    `constraints={"name": (coefficients, total)}` for raw linear rows. `bounds=(L, U)` bounds the ratio g = w/d, `weight_bounds=(lo, hi)`
    bounds w itself (for "logit" the bounds are part of the distance and fixed when it is built); `tol` asks
    only |x_j'w - T_j| <= tol |T_j| (absolute, <= tol, for a zero total). Exactly redundant targets (two
    margins that both sum to N) are dropped after checking that they agree; the balance table still shows
    them, with the totals they were built with.
    """
    spec = dict(base_weights=base_weights, margins=margins, totals=totals, constraints=constraints, distance=distance,
                bounds=bounds, weight_bounds=weight_bounds, tol=tol)
    frame = as_frame(data)
    margins, totals, base_weights = _recorded(frame, margins, totals, constraints, base_weights)
    d = check_base_weights(frame, base_weights)
    X, names, T, N = _calibration_system(frame, margins, totals, constraints)
    return _calibration_problem(frame.index, X, names, T, N, d, distance, bounds, weight_bounds, tol,
                                rebuild=_rebuilder(calibrate, spec, frame))


def _recorded(frame, margins, totals, constraints, base_weights):
    """Without any targets, those a dataset records in frame.attrs ("margins", "totals"), with its
    "base_weights" column unless base weights are given."""
    if margins is None and totals is None and constraints is None:
        margins, totals = frame.attrs.get("margins"), frame.attrs.get("totals")
        base_weights = frame.attrs.get("base_weights") if base_weights is None else base_weights
    return margins, totals, base_weights


def _calibration_problem(index, X, names, T, N, d, distance, bounds=None, weight_bounds=None, tol=None, rebuild=None):
    """The calibration WeightingProblem of `calibrate` on a built system (also `refit`'s, on a support)."""
    choice(distance, DISTANCES, "distance")
    lower, upper = _pair(bounds, "bounds")
    terms = []
    if distance == "linear":
        terms.append(ChiSquare(d, 2 * d, name="distance"))
    elif distance == "raking":
        terms.append(Entropy(d, name="distance"))
    else:
        if bounds is None:
            raise InputError('distance="logit" needs finite ratio bounds, e.g. bounds=(0.5, 2.0), with L < 1 < U')
        if not (0 <= lower < 1 < upper < np.inf):
            raise InputError(f"logit bounds must satisfy 0 <= L < 1 < U < inf, got {bounds}")
        terms.append(Logit(d, lower, upper, name="distance"))
    if tol is None:
        _check_reachable(X, T, d, names, (lower, upper), _pair(weight_bounds, "weight_bounds"),
                         nonnegative=distance == "raking")
    totals, keep = _totals_term(X, T, names, d, tol)
    terms.append(totals)
    if bounds is not None and distance != "logit":
        _check_ratio_bounds(lower, upper)
        terms.append(Bounds(lower=None if lower == -np.inf else lower, upper=None if upper == np.inf else upper,
                            reference=d, name="ratio_bounds"))
    if weight_bounds is not None:
        lo, hi = _pair(weight_bounds, "weight_bounds")
        terms.append(Bounds(lower=None if lo == -np.inf else lo, upper=None if hi == np.inf else hi, name="weight_bounds"))
    return WeightingProblem(index, terms, family=f"calibrate/{distance}", weight_scale="population totals (w = g d)",
                            weight_unit=float(np.mean(d)), design=_total_design(X, names, T, N, d), rebuild=rebuild,
                            design_targets={"sample": (totals, keep)})


def _totals_term(X, T, names, d, tol):
    """(Balance on the totals at relative scale |T| (1 for a zero total), the indices of the targets it holds):
    exactly redundant targets are dropped, after checking they agree, when the totals must hold exactly."""
    relative = np.where(T != 0, np.abs(T), 1.0)
    keep = _independent_targets(X, T, d, names) if tol is None else np.arange(len(T))
    B = X if len(keep) == X.shape[1] else X[:, keep]
    return Balance(B, T[keep], delta=tol, scale=relative[keep], columns=[names[j] for j in keep], name="totals"), keep


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
    spec = dict(base_weights=base_weights, margins=margins, totals=totals, constraints=constraints, lam=lam,
                floor=floor, cap=cap, ridge=ridge, exact=exact, tau=tau, tol=tol, target_records=target_records)
    frame = as_frame(data)
    margins, totals, base_weights = _recorded(frame, margins, totals, constraints, base_weights)
    w0 = check_base_weights(frame, base_weights)
    X, names, T, N = _calibration_system(frame, margins, totals, constraints)
    for value, what in ((lam, "lam"), (ridge, "ridge"), (tau, "tau")):
        if not (np.isfinite(value) and value >= 0):
            raise InputError(f"{what} must be a nonnegative number, got {value!r}")
    if not (np.isfinite(floor) and floor > 0):
        raise InputError(f"floor must be a positive number, got {floor!r}")
    if cap is not None and not cap > 0:
        raise InputError(f"cap on w / w0 must be positive, got {cap!r}")
    if exact:
        if tol is None:
            _check_reachable(X, T, w0, names, (0.0, np.inf if cap is None else cap), (-np.inf, np.inf), True)
        totals_term, keep = _totals_term(X, T, names, w0, tol)
        terms = [ChiSquare(w0, 2 * w0 * w0.sum(), tau=tau, shift=w0.mean(), name="distance"), totals_term]
        reported = (totals_term, keep)
    else:
        if tol is not None:
            raise InputError("tol applies to exact=True; the lasso trades the totals' fit against lam itself")
        terms = [SparseLoss(X, T, lam, w0, floor=floor, ridge=ridge, columns=names, name="loss")]
        reported = (terms[0], np.arange(len(names)))
    terms.append(Bounds(lower=0.0, upper=cap, reference=w0, name="bounds"))
    problem = WeightingProblem(frame.index, terms, family="sparse_calibrate" + ("/exact" if exact else ""),
                               weight_scale="population totals (w = g w0)", weight_unit=float(np.mean(w0)),
                               design=_total_design(X, names, T, N, w0), rebuild=_rebuilder(sparse_calibrate, spec, frame),
                               design_targets={"sample": reported})
    if target_records is not None:
        if exact:
            _tune_for_records(problem, target_records, "tau", 1e-4, 1e4, "dual")
        else:
            top = problem.backend("prox").lambda_max()
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
        warnings.warn(f"target_records={k}: no {parameter} found keeps exactly {k} records; {parameter} = "
                      f"{best[0]:.6g} keeps {best[1]}", CounterpoiseWarning, stacklevel=3)


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
    refitted = _calibration_problem(problem.units[keep], loss.B[keep], list(loss.columns),
                                    np.asarray(loss.target.value, dtype=float), N, loss.w0[keep], distance, bounds)
    return refitted.solve(backend="auto")


def _pair(value, what):
    if value is None:
        return -np.inf, np.inf
    try:
        lo, hi = (float(v) if v is not None else np.nan for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a pair (lower, upper), got {value!r}") from None
    lo = -np.inf if np.isnan(lo) else lo
    hi = np.inf if np.isnan(hi) else hi
    if not lo < hi:
        raise InputError(f"{what}: lower {lo} must be below upper {hi}")
    return lo, hi


def _check_ratio_bounds(lower, upper):
    if not (lower <= 1 <= upper):
        raise InputError(f"ratio bounds ({lower}, {upper}) exclude g = 1, the base weights themselves; "
                         "bounds on g = w/d should satisfy L <= 1 <= U")


def _check_reachable(X, T, d, names, ratio_bounds, weight_bounds, nonnegative):
    """Before solving: every target on a nonnegative column must lie between the totals the bounds allow,
    sum_i lo_i x_ij <= T_j <= sum_i hi_i x_ij, with lo_i, hi_i the bounds on w_i (raking keeps w >= 0)."""
    lo = np.maximum(np.maximum(0.0 if nonnegative else -np.inf, ratio_bounds[0] * d), weight_bounds[0])
    hi = np.minimum(ratio_bounds[1] * d, weight_bounds[1])
    if np.any(lo > hi):
        raise InfeasibleError("the ratio bounds and the weight bounds leave no room for some units' weights")
    used = X > 0
    low = np.where(used.T @ ~np.isfinite(lo) > 0, -np.inf, np.where(np.isfinite(lo), lo, 0.0) @ X)
    high = np.where(used.T @ ~np.isfinite(hi) > 0, np.inf, np.where(np.isfinite(hi), hi, 0.0) @ X)
    for j in np.flatnonzero(~np.any(X < 0, axis=0)):
        slack = 1e-9 * max(abs(T[j]), 1.0)
        if not (low[j] - slack <= T[j] <= high[j] + slack):
            raise InfeasibleError(f"target {names[j]} = {T[j]:g} is out of reach: the bounds on the weights allow "
                                  f"totals between {low[j]:g} and {high[j]:g} for it; widen the bounds",
                                  binding=[names[j]])


def _calibration_system(frame, margins, totals, constraints):
    """The calibration matrix X (n x k), target names, totals T, and the population size N when a margin gives it."""
    columns, names, T = [], [], []
    N = None
    for var, levels in (margins or {}).items():
        if var not in frame.columns:
            raise InputError(f"margin variable {var!r} is not in the data")
        values = frame[var]
        if values.isna().any():
            raise InputError(f"margin variable {var!r} has {int(values.isna().sum())} missing values")
        if not isinstance(levels, (dict, pd.Series)) or len(levels) == 0:
            raise InputError(f"margins[{var!r}] must be a non-empty dict level -> population total")
        codes, present = pd.factorize(values)     # integer codes: one pass, then cheap comparisons per level
        position = {level: j for j, level in enumerate(present)}
        keyed = {_level_key(k, present): (k, float(v)) for k, v in dict(levels).items()}
        missing = [p for p in present if p not in keyed]
        if missing:
            raise InputError(f"margin {var!r}: levels {sorted(map(str, missing))} occur in the data but have no "
                             "population total; add them (or merge levels) so every unit is calibrated")
        for level, (key, total) in keyed.items():
            finite([total], f"population total for {var}={key}")
            if total < 0:
                raise InputError(f"margin {var!r}: level {key!r} has a negative total {total}")
            mask = codes == position[level] if level in position else np.zeros(len(codes), bool)
            if not mask.any():
                if total > 0:
                    raise InputError(f"margin {var!r}: level {key!r} has population total {total:g} but no units "
                                     "in the sample; no weights can reach it (collapse it into a neighbouring level)")
                continue
            if total == 0:
                warnings.warn(f"margin {var!r}: level {key!r} has {int(mask.sum())} units but a population total of 0, "
                              "so those units get weight 0", CounterpoiseWarning, stacklevel=3)
            columns.append(mask)
            names.append(f"{var}={key}")
            T.append(total)
        N = N if N is not None else sum(v for _, v in keyed.values())
    for col, total in (totals or {}).items():
        columns.append(numeric_matrix(frame, [col], "totals")[:, 0])
        names.append(col)
        T.append(float(total))
    for name, (coef, total) in (constraints or {}).items():
        coef = np.asarray(coef, dtype=float).ravel()
        if len(coef) != len(frame):
            raise InputError(f"constraint {name!r} has {len(coef)} coefficients for {len(frame)} rows")
        finite(coef, f"constraint {name!r} coefficients")
        columns.append(coef)
        names.append(str(name))
        T.append(float(total))
    if not columns:
        raise InputError("give at least one target: margins=, totals= or constraints=")
    finite(T, "population totals")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"targets named more than once: {repeated}")
    X = np.empty((len(frame), len(columns)))       # one C-ordered matrix, filled column by column
    for j, column in enumerate(columns):
        X[:, j] = column
    return X, names, np.asarray(T), N


def _level_key(key, present):
    """Match a target's level to the data's values, also across str/number spellings ("1" vs 1)."""
    if key in set(present):
        return key
    by_text = {str(p): p for p in present}
    return by_text.get(str(key), key)


def _independent_targets(X, T, d, names, chunk=65_536):
    """Indices of a maximal set of linearly independent targets; a redundant target must agree with the others.
    Works on the k x k Gram matrix G = X' diag(d) X (one pass over the rows): pivoted Cholesky (LAPACK dpstrf)
    finds the rank, and a dropped target's implied total is T_keep' G_kk^-1 G_k,drop."""
    k = X.shape[1]
    G = np.zeros((k, k))
    for start in range(0, len(X), chunk):
        block = X[start: start + chunk]
        G += block.T @ (block * d[start: start + chunk, None])
    scale = np.sqrt(np.maximum(np.diag(G), 1e-300))
    _, piv, rank, _ = scipy.linalg.lapack.dpstrf(G / np.outer(scale, scale), tol=1e-12)
    piv = piv[:k] - 1
    keep, drop = np.sort(piv[:rank]), piv[rank:]
    if len(drop):
        implied = T[keep] @ np.linalg.solve(G[np.ix_(keep, keep)], G[np.ix_(keep, drop)])
        for j, value in zip(drop, implied):
            if abs(value - T[j]) > 1e-8 * (1 + abs(T[j])):
                raise InfeasibleError(f"target {names[j]} = {T[j]:g} contradicts the other targets, which imply "
                                      f"{value:g} for it (e.g. two margins with different population sizes)")
    return keep


def _total_design(X, names, T, N, d):
    return BalanceDesign(names=tuple(names), X=X, groups=np.full(len(d), "sample", dtype=object), base_weights=d,
                         targets={"sample": T}, denominators=smd_denominators(X, base_weights=d), std="target",
                         kind="total", population_size=None if N is None else {"sample": N})


# ---- rebuild on new data (bootstrap) --------------------------------------------------------------


def _rebuilder(builder, spec, frame):
    """builder(new_data, **spec), refusing arguments that hold one value per original row (they cannot follow a
    resample): base weights, a basis or raw constraint coefficients given as arrays rather than columns."""
    tied = [key for key, value in spec.items() if _row_tied(value, len(frame))]

    def rebuild(new_data):
        if tied:
            raise InputError(f"cannot rebuild on new data: {tied} hold one value per original row; pass base weights "
                             "as a column name, and put a basis or constraint coefficients in columns of the data")
        return builder(new_data, **spec)

    return rebuild


def _row_tied(value, n):
    if isinstance(value, dict):
        return any(_row_tied(v, n) for v in value.values())
    if isinstance(value, tuple):
        return any(_row_tied(v, n) for v in value)
    return isinstance(value, (np.ndarray, pd.Series, pd.DataFrame, list)) and len(value) == n and np.ndim(value) >= 1
