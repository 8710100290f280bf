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

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.special

from ..diagnostics import weighted_sds
from ..errors import InputError, SolverError
from ..validation import CounterpoiseWarning, as_frame, base_weights as check_weights, choice, columns_list
from ..validation import drop_constant, numeric_matrix, treatment_indicator
from . import loss as cal
from .adelie_path import RawPath, solve_path

TARGETS = ("ATE", "ATT", "treated", "control")
ARMS = {"ATE": ("control", "treated"), "ATT": ("control",), "treated": ("treated",), "control": ("control",)}
_CHUNK = 16   # lambdas per block when the path's diagnostics are computed


@dataclass
class Arm:
    """One arm's fitted path. `y` marks the arm's units, `scale` is c, `center`/`spread` the standardization, and
    `target_mean`/`target_sd` the target population's mean and SD of each covariate (SMDs use them). Coefficients
    are kept on the original covariate scale; `table` has one row per converged lambda (lambda, nonzero, mean/max
    |SMD|, ESS%)."""

    name: str
    y: np.ndarray
    scale: float
    att: bool
    center: np.ndarray
    spread: np.ndarray
    target_mean: np.ndarray
    target_sd: np.ndarray
    path: RawPath
    intercepts: np.ndarray = field(init=False)
    coefs: np.ndarray = field(init=False)
    table: pd.DataFrame = field(init=False)

    def __post_init__(self):
        betas = self.path.betas.toarray()
        self.coefs = betas / self.spread
        self.intercepts = self.path.intercepts - betas @ (self.center / self.spread)

    @property
    def lambdas(self) -> np.ndarray:
        return self.path.lambdas

    def at(self, lam) -> tuple[float, np.ndarray]:
        """(intercept, coefficients) at `lam`: linear interpolation in lambda between path points (glmnet's rule),
        clamped to the path's range."""
        lams = self.lambdas
        lam = float(np.clip(lam, lams[-1], lams[0]))
        j = int(np.clip(np.searchsorted(-lams, -lam), 1, len(lams) - 1)) if len(lams) > 1 else 0
        i = max(j - 1, 0)
        t = 0.0 if i == j else (lams[i] - lam) / (lams[i] - lams[j])
        return ((1 - t) * self.intercepts[i] + t * self.intercepts[j], (1 - t) * self.coefs[i] + t * self.coefs[j])

    def link(self, X, lam) -> np.ndarray:
        """eta(x) = logit P(arm | x) at `lam`."""
        a, b = self.at(lam)
        return a + X @ b


class BalnetFit:
    """A balnet fit: one penalized path per arm. See `balnet`."""

    def __init__(self, target, arms, names, index, X, treatment, sample_weights, groups, penalty, alpha, settings):
        self.target = target
        self.arms: dict[str, Arm] = arms
        self.names = list(names)
        self.index = index
        self.X = X
        self.treatment = treatment
        self.sample_weights = sample_weights
        self.groups = groups            # list of column-position arrays, in the order adelie sees them
        self.penalty = penalty
        self.alpha = alpha
        self.settings = settings        # the arguments balnet() was called with (cv_balnet refits with them)

    # ---- the path -----------------------------------------------------------------------------------------

    def _arm(self, arm) -> Arm:
        if arm is None:
            if len(self.arms) > 1:
                raise InputError(f"this fit has the arms {list(self.arms)}; say which with arm=")
            return next(iter(self.arms.values()))
        if arm not in self.arms:
            raise InputError(f"arm must be one of {list(self.arms)} for target {self.target!r}, got {arm!r}")
        return self.arms[arm]

    def lambdas(self, arm=None) -> np.ndarray:
        """The converged lambdas of `arm` (decreasing). Optional for single-arm targets."""
        return self._arm(arm).lambdas.copy()

    def _lam(self, lam, arm: Arm) -> float:
        """The lambda to use for `arm`: a number for every arm, a dict per arm, or None (the end of the path)."""
        if isinstance(lam, dict):
            if arm.name not in lam:
                raise InputError(f"lam has no value for the {arm.name} arm (keys: {list(lam)})")
            lam = lam[arm.name]
        if lam is None:
            return float(arm.lambdas[-1])
        lam = float(lam)
        if not (np.isfinite(lam) and lam >= 0):
            raise InputError(f"lam must be a finite number >= 0, got {lam!r}")
        return lam

    def table(self, arm=None) -> pd.DataFrame:
        """The path of `arm`: lambda, nonzero coefficients, mean and max |SMD| of the weighted arm against the
        target, and the ESS of the arm's weights as a percentage of its (sample-weighted) size."""
        return self._arm(arm).table.copy()

    def __repr__(self):
        lines = [f"balnet ({self.target}, alpha = {self.alpha:g}, {len(self.names)} covariates, n = {len(self.index)})"]
        for arm in self.arms.values():
            lines.append(f"{arm.name.capitalize()} (path: {len(arm.lambdas)}/{arm.path.requested})"
                         + (f", stopped early: {arm.path.stopped}" if arm.path.stopped else ""))
            table = arm.table[["nonzero", "mean_abs_smd", "lambda"]].rename(
                columns={"nonzero": "Nonzero", "mean_abs_smd": "Mean |SMD|", "lambda": "Lambda"})
            table.index = table.index + 1
            text = table.to_string(float_format=lambda v: f"{v:.4g}")
            rows = text.splitlines()
            if len(table) > 6:
                rows = rows[:4] + ["..."] + rows[-3:]
            lines += rows
        return "\n".join(lines)

    # ---- coefficients, propensities, weights ----------------------------------------------------------------

    def coef(self, lam=None, arm=None) -> pd.DataFrame:
        """Intercept and coefficients on the original covariate scale, one row per arm, at `lam` (a number, a dict
        per arm, or None for each path's last lambda; interpolated between path points and clamped to the path).
        The coefficients are those of logit P(arm | x): for the control arm, of P(control | x)."""
        rows = {}
        for arm in ([self._arm(arm)] if arm is not None else self.arms.values()):
            a, b = arm.at(self._lam(lam, arm))
            rows[arm.name] = np.concatenate([[a], b])
        return pd.DataFrame.from_dict(rows, orient="index", columns=["(Intercept)"] + self.names)

    def _matrix(self, newdata):
        if newdata is None:
            return self.X, self.index
        frame = as_frame(newdata)
        return numeric_matrix(frame, self.names, "newdata covariates"), frame.index

    def predict(self, newdata=None, lam=None, type="response") -> pd.DataFrame:
        """Propensity scores e(x) = P(treated | x), one column per arm, at `lam` (as in `coef`). The control arm
        models P(control | x), so its column is 1 - that. type="link" gives logit e(x) instead."""
        choice(type, ("response", "link"), "type")
        X, index = self._matrix(newdata)
        out = {}
        for arm in self.arms.values():
            eta = arm.link(X, self._lam(lam, arm))
            logit_e = eta if arm.name == "treated" else -eta
            out[arm.name] = logit_e if type == "link" else scipy.special.expit(logit_e)
        return pd.DataFrame(out, index=index)

    def weights(self, lam=None) -> pd.Series:
        """Balancing weights on the data's index at `lam` (as in `coef`), sample weights included: 1/e(x) on the
        treated and 1/(1-e(x)) on the controls for the ATE arms, the odds e(x)/(1-e(x)) on the controls for the ATT
        (the treated keep their sample weights there: they are the target), 0 on units of an arm not fitted. Each
        fitted arm's weights sum to the sample-weighted size of the target population."""
        w = np.zeros(len(self.index))
        if self.target == "ATT":
            w[self.treatment == 1] = self.sample_weights[self.treatment == 1]
        for arm in self.arms.values():
            eta = arm.link(self.X, self._lam(lam, arm))
            w += cal.balancing_weights(eta, arm.y, self.sample_weights, att=arm.att)
        return pd.Series(w, index=self.index, name="weight")

    # ---- diagnostics ---------------------------------------------------------------------------------------

    def plot(self, axes=None):
        """Max |SMD|, mean |SMD| and ESS% along each arm's path, against lambda (log scale)."""
        from ..plots import balnet_path_plot

        return balnet_path_plot(self, axes=axes)

    # ---- checks against the cvxpy formulations -------------------------------------------------------------

    def to_cvxpy(self, lam, arm=None):
        """The arm's penalized calibration loss at `lam` as a cvxpy problem (exponential cone) on the standardized
        covariates: returns (problem, intercept variable, coefficient variable). See `reference.primal`."""
        from .reference import primal

        arm = self._arm(arm)
        return primal(self, arm, self._lam(lam, arm))

    def to_problem(self, lam, arm=None):
        """The arm's weight-space dual at `lam` as a `WeightingProblem`: shifted entropy with an imbalance budget.
        See `reference.dual_problem`."""
        from .reference import dual_problem

        arm = self._arm(arm)
        return dual_problem(self, arm, self._lam(lam, arm))

    def check(self, lam=None, arm=None, solver="CLARABEL") -> pd.DataFrame:
        """Solve the cvxpy primal and dual at `lam` (default: each path's last lambda) and compare with this fit:
        one row per arm with the objectives and the largest differences in propensity score and in normalized
        weights. See `reference.check`."""
        from .reference import check

        arms = [self._arm(arm)] if arm is not None else list(self.arms.values())
        return pd.DataFrame([check(self, a, self._lam(lam, a), solver) for a in arms]).set_index("arm")


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
    choice(target, TARGETS, "target")
    frame = as_frame(data)
    names = columns_list(frame.attrs.get("covariates") if covariates is None else covariates, "covariates")
    X, names = drop_constant(numeric_matrix(frame, names), names)
    t = treatment_indicator(frame, treatment)
    sw = check_weights(frame, sample_weights, "sample_weights")
    _check_path_options(alpha, n_lambda, lambda_min_ratio, max_imbalance, tol, max_iter)
    order, starts, group_list = _groups(groups, names)
    penalty = _penalty(penalty_factor, group_list)

    w = sw / sw.sum()
    on_target = sw * t if target == "ATT" else sw
    target_mean, target_sd = _weighted_stats(X, on_target)
    zero = [nm for nm, s in zip(names, target_sd) if not s > 0]
    if zero:
        warnings.warn(f"covariates {zero} do not vary in the target population: their imbalance is measured in raw "
                      "units (standardizing scale 1)", CounterpoiseWarning, stacklevel=2)
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
    settings = dict(treatment=treatment, covariates=names, target=target, alpha=alpha, groups=groups,
                    penalty_factor=penalty_factor, n_lambda=n_lambda, lambda_min_ratio=lambda_min_ratio,
                    lambdas=lambdas, max_imbalance=max_imbalance, standardize=standardize, tol=tol,
                    max_iter=max_iter, n_threads=n_threads)
    return BalnetFit(target, arms, names, frame.index, X, t, sw, group_list, penalty, float(alpha), settings)


def _check_path_options(alpha, n_lambda, lambda_min_ratio, max_imbalance, tol, max_iter):
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise InputError(f"alpha must be a number in [0, 1] (1 = lasso, 0 = ridge), got {alpha!r}")
    if isinstance(n_lambda, bool) or not isinstance(n_lambda, (int, np.integer)) or n_lambda < 1:
        raise InputError(f"n_lambda must be a positive integer, got {n_lambda!r}")
    if not (isinstance(lambda_min_ratio, (int, float)) and 0 < lambda_min_ratio < 1):
        raise InputError(f"lambda_min_ratio must be in (0, 1), got {lambda_min_ratio!r}")
    if max_imbalance is not None:
        if alpha != 1:
            raise InputError("max_imbalance bounds max |SMD| through the lasso's KKT conditions: it needs alpha = 1")
        if not (isinstance(max_imbalance, (int, float)) and max_imbalance > 0):
            raise InputError(f"max_imbalance must be a positive number (a max |SMD|), got {max_imbalance!r}")
    if not (tol > 0 and max_iter >= 1):
        raise InputError(f"tol must be > 0 and max_iter >= 1, got tol={tol!r}, max_iter={max_iter!r}")


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
    return v @ X / v.sum(), np.where(constant, 0.0, weighted_sds(X, v[:, None])[0])


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
