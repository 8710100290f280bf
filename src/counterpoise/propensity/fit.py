"""balnet: regularized calibrated propensity scores (Tan 2020; R's balnet) on adelie's pathwise group elastic net.

For each arm a (the treated, the controls, or both for the ATE) fit P(arm | x) = expit(a + x~'b) by

    minimize_{a, b}  c sum_i w_i (y_i exp(-eta_i) + (1 - y_i) eta_i)
                     + lam sum_g pf_g (alpha ||b_g|| + (1 - alpha)/2 ||b_g||^2)

over a decreasing path of lam, with x~ the covariates standardized to the target population (weighted mean and
population SD), w the sample weights normalized to sum to 1, y the arm indicator and c = 1, or sum(w) / sum(w T)
for the ATT. The intercept makes the inverse-probability weights of the arm sum to the target's total, and for the
lasso the KKT conditions read max_j |SMD_j| = lam: lam is the imbalance the weights leave.

  target    arms     weights (times the sample weights)   standardized to
  ATE       both     treated 1/e(x), controls 1/(1-e(x))   the full sample
  treated   treated  1/e(x)                                the full sample
  control   control  1/(1-e(x))                            the full sample
  ATT       control  e(x)/(1-e(x)) (odds)                  the treated
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..arguments import recorded
from ..diagnostics import weighted_sds
from ..errors import InputError, SolverError
from ..validation import POSITIVE, as_frame, base_weights as check_weights, columns_list, drop_constant, integer
from ..validation import interval, numeric_matrix, one_of, optional, treatment_indicator, validated, warn
from . import loss as cal
from .adelie_path import solve_path
from .model import Arm, BalnetFit

TARGETS = ("ATE", "ATT", "treated", "control")
ARMS = {"ATE": ("control", "treated"), "ATT": ("control",), "treated": ("treated",), "control": ("control",)}
_CHUNK = 16   # lambdas per block when the path's diagnostics are computed


@recorded
@validated(target=one_of(TARGETS), alpha=interval(0, 1), n_lambda=integer(1),
           lambda_min_ratio=interval(0, 1, closed=False), max_imbalance=optional(POSITIVE), tol=POSITIVE,
           max_iter=integer(1))
def balnet(data, treatment=None, covariates=None, target="ATE", alpha=1.0, groups=None, penalty_factor=None,
           sample_weights=None, n_lambda=100, lambda_min_ratio=1e-2, lambdas=None, max_imbalance=None,
           standardize=True, tol=1e-9, max_iter=100_000, n_threads=1) -> BalnetFit:
    """Fit balnet's penalized calibrated propensity-score paths (module docstring) with adelie.

    target: "ATE" (two arms), "ATT", "treated" or "control". alpha: elastic-net mixing (1 = lasso, 0 = ridge).
    groups: a list of lists (or a dict of lists) of covariate names penalized together by their Euclidean norm;
    other covariates are groups of one. penalty_factor: one factor per group (groups in the order of their first
    covariate; a dict by group name or covariate name also works), default sqrt(group size).
    sample_weights: a column name or an array; they act as frequency weights (a unit of weight 2 is two units).
    The path: `n_lambda` values from lambda_max (where every coefficient is 0) down to lambda_min_ratio * lambda_max
    on a log scale, or `lambdas` (a list for every arm, or a dict per arm). max_imbalance (lasso only) extends each
    arm's path down to that max |SMD| when lambda_min_ratio would stop above it. standardize=False uses the
    covariates as they are (then lambda is in their units). A path stops early, at the last lambda that converged,
    when the loss diverges (poor overlap, separation, lambda near 0); the fit says so, and a user path on which
    no lambda converges raises SolverError. adelie settings: tol, max_iter, n_threads. tol is tighter than R
    balnet's 1e-7: there max |SMD| ends a path up to 0.7% above lambda; 1e-9 keeps it within 0.1% for about 25%
    more time (n = 100,000, p = 100).
    """
    frame = as_frame(data)
    names = columns_list(frame.attrs.get("covariates") if covariates is None else covariates, "covariates")
    X, names = drop_constant(numeric_matrix(frame, names), names)
    t = treatment_indicator(frame, treatment)
    for arm, size in (("treated", int(t.sum())), ("control", int(len(t) - t.sum()))):
        if size < 2:    # every arm's model contrasts the two arms: adelie fails inside ("IRLS lambda ... inf")
            raise InputError(f"the {arm} arm has {size} unit: a propensity path needs at least 2 units in each arm")
    sw = check_weights(frame, sample_weights, "sample_weights")
    if max_imbalance is not None and alpha != 1:
        raise InputError("max_imbalance bounds max |SMD| through the lasso's KKT conditions: it needs alpha = 1")
    order, starts, group_list = _groups(groups, names)
    penalty = _penalty(penalty_factor, group_list)

    w = sw / sw.sum()
    on_target = sw * t if target == "ATT" else sw
    target_mean, target_sd = _weighted_stats(X, on_target)
    zero = [nm for nm, s in zip(names, target_sd) if not s > 0]
    if zero:
        warn(f"covariates {zero} do not vary in the target population: their imbalance is measured in raw "
             "units (standardizing scale 1)")
        target_sd = np.where(target_sd > 0, target_sd, 1.0)
    center, spread = (target_mean, target_sd) if standardize else (np.zeros(len(names)), np.ones(len(names)))
    Xs = np.asfortranarray(((X - center) / spread)[:, order])
    Xc = X - target_mean           # centred at the target, for every arm's SMD table

    arms = {}
    for name in ARMS[target]:
        y = (t if name == "treated" else 1 - t).astype(float)
        scale = float(sw.sum() / (sw * t).sum()) if target == "ATT" else 1.0
        arm_lambdas = _arm_lambdas(lambdas, name)
        ratio = lambda_min_ratio
        if max_imbalance is not None and arm_lambdas is None:
            ratio = min(ratio, max_imbalance / _lambda_max(Xs, y, w, scale, starts, penalty))
        path = solve_path(Xs, y, w, scale, starts, penalty, alpha, lambdas=arm_lambdas, n_lambda=n_lambda,
                          lambda_min_ratio=ratio, tol=tol, max_iter=max_iter, n_threads=n_threads)
        if len(path.lambdas) == 0:
            raise SolverError(f"balnet: no lambda converged for the {name} arm ({path.stopped}); "
                              + ("none of the supplied lambdas converged: give larger ones" if arm_lambdas is not None
                                 else "the arm cannot be balanced on these covariates"))
        path.betas = path.betas[:, np.argsort(order)]      # back to the covariates' order
        arms[name] = Arm(name, y, scale, target == "ATT", center, spread, target_mean, target_sd, path)
        arms[name].table = _path_table(arms[name], Xc, target_mean, sw)
    return BalnetFit(target, arms, names, frame.index, X, t, sw, group_list, penalty, float(alpha))


def _groups(groups, names):
    """(column order that makes every group contiguous, 0-based group starts in that order, groups as arrays of
    positions in `names`, each with its label). Groups are ordered by their first covariate; ungrouped covariates
    are groups of one, labelled by their name."""
    if groups is None:
        groups = []
    named = groups if isinstance(groups, dict) else {f"group{k + 1}": g for k, g in enumerate(groups)}
    owner = {}
    for label, members in named.items():
        members = columns_list(members, f"groups[{label!r}]")
        unknown = [m for m in members if m not in names]
        if unknown:
            raise InputError(f"groups[{label!r}] names covariates {unknown} that are not among the covariates "
                             "(constant columns are dropped)")
        for m in members:
            if m in owner:
                raise InputError(f"covariate {m!r} is in two groups, {owner[m]!r} and {label!r}; "
                                 "groups may not overlap")
            owner[m] = label
    group_list, seen = [], set()
    for j, name in enumerate(names):
        label = owner.get(name, name)
        if label in seen:
            continue
        seen.add(label)
        group_list.append((label, np.array([k for k, nm in enumerate(names) if owner.get(nm, nm) == label])))
    order = np.concatenate([g for _, g in group_list])
    sizes = [len(g) for _, g in group_list]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    return order, starts, group_list


def _penalty(penalty_factor, group_list):
    """One penalty factor per group (adelie's order): sqrt(group size) by default."""
    labels = [label for label, _ in group_list]
    if penalty_factor is None:
        return np.sqrt([len(g) for _, g in group_list]).astype(float)
    if isinstance(penalty_factor, dict):
        unknown = sorted(set(penalty_factor) - set(labels))
        if unknown:
            raise InputError(f"penalty_factor has keys {unknown} that name no group; the groups are {labels}")
        values = np.array([float(penalty_factor.get(label, np.sqrt(len(g)))) for label, g in group_list])
    else:
        values = np.asarray(penalty_factor, dtype=float).ravel()
        if len(values) != len(labels):
            raise InputError(f"penalty_factor needs one value per group ({len(labels)}: {labels[:10]}), "
                             f"got {len(values)}")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
        raise InputError("penalty_factor must be finite and >= 0, with at least one group penalized")
    return values


def _arm_lambdas(lambdas, arm):
    if lambdas is None:
        return None
    if isinstance(lambdas, dict):
        if arm not in lambdas:
            raise InputError(f"lambdas has no path for the {arm} arm (keys: {list(lambdas)})")
        lambdas = lambdas[arm]
    values = np.atleast_1d(np.asarray(lambdas, dtype=float))
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InputError(f"lambdas must be a non-empty list of finite numbers >= 0, got {lambdas!r}")
    return np.unique(values)[::-1].copy()


def _weighted_stats(X, v):
    """Weighted column means and population SDs sum v (x - m)^2 / sum v (balnet's standardization); the SD is 0
    exactly for a column that takes one value on the rows with v > 0."""
    constant = np.ptp(X[v > 0], axis=0) == 0
    return v @ X / v.sum(), np.where(constant, 0.0, weighted_sds(X, v[:, None], sample=False)[0])


def _lambda_max(Xs, y, w, scale, starts, penalty):
    """The smallest lasso lambda at which every coefficient is 0: max_g ||grad_g|| / pf_g at the intercept-only fit
    (there the gradient is the arm's unweighted standardized mean difference)."""
    p = float(w @ y)
    r = scale * w * (y * (1 - p) / p - (1 - y))
    grad = Xs.T @ r
    ends = list(starts[1:]) + [len(grad)]
    norms = np.array([np.linalg.norm(grad[s:e]) for s, e in zip(starts, ends)])
    penalized = penalty > 0
    return float(np.max(norms[penalized] / penalty[penalized]))


def _path_table(arm: Arm, Xc, target_mean, sample_weights) -> pd.DataFrame:
    """Per lambda: nonzero coefficients, mean and max |SMD| of the arm's normalized weights against the target
    mean (Xc: the covariates minus it), and ESS% = (sum sw r)^2 / sum sw r^2 / sum_arm sw (r the inverse
    probability or odds), which treats sample weights as frequencies."""
    L = len(arm.lambdas)
    mean_smd, max_smd, ess = np.empty(L), np.empty(L), np.empty(L)
    y, sw = arm.y[:, None], sample_weights[:, None]
    arm_size = float(sample_weights @ arm.y)
    for start in range(0, L, _CHUNK):
        block = slice(start, min(start + _CHUNK, L))
        eta = arm.intercepts[block] + arm.coefs[block] @ target_mean + Xc @ arm.coefs[block].T
        omega = cal.balancing_weights(eta, y, sw, att=arm.att)
        smd = (Xc.T @ omega / omega.sum(axis=0)) / arm.target_sd[:, None]
        mean_smd[block], max_smd[block] = np.mean(np.abs(smd), axis=0), np.max(np.abs(smd), axis=0)
        ess[block] = omega.sum(axis=0) ** 2 / np.sum(omega ** 2 / sw, axis=0) / arm_size * 100
    return pd.DataFrame({"lambda": arm.lambdas, "nonzero": np.count_nonzero(arm.coefs, axis=1),
                         "mean_abs_smd": mean_smd, "max_abs_smd": max_smd, "ess_pct": ess})
