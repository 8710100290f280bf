"""A fitted balnet: each arm's path on the original covariate scale (`Arm`) and the fit (`BalnetFit`): its
lambdas, coefficients, propensity scores, balancing weights, path table, print, plot and the cvxpy references it
is checked against. The loss, the targets and their weights are stated in `fit`, the procedure that makes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.special

from ..arguments import Call
from ..errors import InputError
from ..validation import as_frame, check, numeric_matrix, one_of, warn
from . import loss as cal
from .adelie_path import RawPath


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

    def __init__(self, target, arms, names, index, X, treatment, sample_weights, groups, penalty, alpha):
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
        self.call: Call | None = None   # balnet's call, set by @recorded (cv_balnet refits with it per fold)

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
        last = float(arm.lambdas[-1])
        if lam < last:
            why = (f"the path stopped early there ({arm.path.stopped})" if arm.path.stopped
                   else "the path ends there (lower lambda_min_ratio, or give lambdas, to go further)")
            warn(f"lam = {lam:g} is below the {arm.name} arm's last lambda {last:.6g}: {why}; the fit at "
                 f"lam = {last:.6g} is used")
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
        check("type", type, one_of(("response", "link")))
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
