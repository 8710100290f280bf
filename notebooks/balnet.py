# %% [markdown]
# # balnet on adelie: regularized calibrated propensity scores
#
# balnet (Tan 2020; the R package balnet) fits each arm's propensity model by minimizing a calibration loss whose
# score equations are covariate balance, plus an elastic-net penalty, along a path of lambda; for the lasso, lambda
# is the largest standardized mean difference (SMD) the implied inverse-probability weights leave (the KKT
# conditions make the two equal at the optimum).
# This notebook follows the balnet-on-adelie memo (`shared/seeds/balnet-adelie-memo.txt`, with the notes in
# `shared/reference/balnet_adelie.md`): a two-arm ATE path on a confounded simulated data set (`counterpoise.balnet`,
# which hands the loss to adelie's pathwise solver as a custom GLM), its balance and effective sample size along
# lambda, a path point checked against the cvxpy primal and dual, and lambda chosen by cross-validation
# (`counterpoise.cv_balnet`).

# %%
import os

SIZE = os.environ.get("COUNTERPOISE_NOTEBOOK_SIZE", "full")
SIZES = {
    "full": dict(n=10_000, p=50, n_lambda=100, n_folds=10),   # the first setting of problems/balnet.toml; ~40 s
    "small": dict(n=2_000, p=20, n_lambda=100, n_folds=5),    # what CI runs
}
N, P, N_LAMBDA, N_FOLDS = (SIZES[SIZE][key] for key in ("n", "p", "n_lambda", "n_folds"))
SEED = 1           # the data (datasets.confounded)
CV_SEED = 0        # the fold assignment of cv_balnet
TRUE_ATE = 1.0     # by construction of datasets.confounded
print(f"SIZE={SIZE}: n={N}, p={P}, {N_LAMBDA} lambdas, {N_FOLDS}-fold CV")

# %%
# %matplotlib inline
import time

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import counterpoise as cpz

# %% [markdown]
# ## The data
#
# `datasets.confounded`: p correlated standard-normal covariates (neighbours correlated 0.5), a logistic treatment
# on the first ten, and an outcome Y = A + sum_{j <= 10} X_j / j + 0.5 X1^2 + noise, so the true ATE is 1 and the
# difference in means is confounded.

# %%
data = cpz.datasets.confounded(n=N, p=P, seed=SEED)
treated = data["A"] == 1
naive = data.loc[treated, "Y"].mean() - data.loc[~treated, "Y"].mean()
print(f"n = {N}, p = {P}, treated share {treated.mean():.3f}; difference in means {naive:.3f} (true ATE {TRUE_ATE})")

# %% [markdown]
# ## The path
#
# For the ATE balnet fits two independent paths: the treated arm's model (weights 1/e(x) on the treated) and the
# control arm's (weights 1/(1 - e(x)) on the controls), each balancing its arm to the full sample. Covariates are
# standardized to the full sample (population SD, as balnet does); each arm's path starts at its own lambda_max,
# where every coefficient is 0, and runs down to 1% of it on a log scale.

# %%
start = time.perf_counter()
fit = cpz.balnet(data, treatment="A", target="ATE", n_lambda=N_LAMBDA)
print(f"balnet (both arms, with the per-lambda balance table): {time.perf_counter() - start:.2f} s")
print(fit)

# %% [markdown]
# `fit.plot()` draws, per arm, the largest and the mean |SMD| of the weighted arm against the full sample, and the
# weights' effective sample size as a share of the arm, against lambda:

# %%
fig = fit.plot()
top = fig.axes[0]
top.set_yscale("log")      # on log-log axes the lasso's max |SMD| = lambda is the diagonal
diagonal = np.array([min(fit.lambdas(a)[-1] for a in fit.arms), max(fit.lambdas(a)[0] for a in fit.arms)])
top.plot(diagonal, diagonal, color="black", linestyle="--", linewidth=0.8, label="max |SMD| = lambda")
top.legend()
fig.suptitle(f"balnet ATE paths, n = {N:,}, p = {P}")
fig

# %% [markdown]
# The top panel is the line max |SMD| = lambda (to a relative 1e-3, adelie's tolerance): the lasso's KKT
# conditions, checked here for every path point of both arms. At lambda_max the model is intercept-only, every unit
# of an arm gets the same weight, and the ESS is the whole arm; as lambda falls, balance is bought with effective
# sample size.

# %%
paths = {arm: fit.table(arm) for arm in fit.arms}
for arm, table in paths.items():
    ratio = table["max_abs_smd"] / table["lambda"]
    print(f"{arm:>8}: {len(table)} lambdas from {table['lambda'].iloc[0]:.4f} to {table['lambda'].iloc[-1]:.5f}; "
          f"max |SMD| / lambda in [{ratio.min():.5f}, {ratio.max():.5f}]; ESS from "
          f"{table['ess_pct'].iloc[0]:.1f}% to {table['ess_pct'].iloc[-1]:.1f}% of the arm")
    assert fit.arms[arm].path.stopped == "" and len(table) == N_LAMBDA      # the path ran to its end
    assert table["nonzero"].iloc[0] == 0                                    # lambda_max: intercept only
    assert abs(table["lambda"].iloc[-1] / table["lambda"].iloc[0] - 0.01) < 1e-9   # down to 1% of it
    np.testing.assert_allclose(table["max_abs_smd"], table["lambda"], rtol=1e-3)
    assert abs(table["ess_pct"].iloc[0] - 100) < 1e-6
    assert table["ess_pct"].iloc[-1] < table["ess_pct"].iloc[0]
pd.concat({arm: table.iloc[np.linspace(0, len(table) - 1, 6).round().astype(int)] for arm, table in paths.items()})

# %% [markdown]
# ## One path point against cvxpy: the primal and the dual
#
# `fit.check(lam, arm)` solves the same arm at the same lambda twice with cvxpy + CLARABEL and compares with adelie's
# path:
#
# - the **primal**, the penalized calibration loss itself (an exponential-cone problem): compared in objective and
#   in propensity score;
# - the **weight-space dual**, a shifted entropy over the arm's normalized weights with an l-infinity imbalance budget
#   of lambda (`fit.to_problem`, a counterpoise `WeightingProblem`): compared in the weights themselves (the largest
#   difference, in units of the arm's mean weight).
#
# The check is made at a point of the path (not between points, where `coef` interpolates): the middle one.

# %%
checks = []
for arm in fit.arms:
    lam = fit.lambdas(arm)[len(fit.lambdas(arm)) // 2]
    checks.append(fit.check(lam=lam, arm=arm))
checks = pd.concat(checks)
checks["objective_rel_diff"] = (checks["objective_fit"] - checks["objective_cvxpy"]).abs() / checks["objective_cvxpy"]
checks.T

# %%
for arm, row in checks.iterrows():
    print(f"{arm:>8} at lambda {row['lam']:.5f}: primal {row['primal_status']}, objective difference "
          f"{row['objective_rel_diff']:.1e} (relative), largest propensity difference "
          f"{row['max_abs_diff_propensity']:.1e}; dual {row['dual_status']}, largest weight difference "
          f"{row['max_weight_diff']:.1e} mean weights")
    # CLARABEL's exponential-cone steps can stall just short of its 1e-10 gap ("optimal_inaccurate", and then the
    # dual's status reads "inaccurate"; which way a borderline solve goes depends on the BLAS threads); the
    # differences are the comparison that counts (the tolerances of tests/test_balnet.py)
    assert row["primal_status"] in ("optimal", "optimal_inaccurate")
    assert row["dual_status"] in ("optimal", "inaccurate")
    assert row["objective_rel_diff"] <= 1e-6
    assert row["max_abs_diff_propensity"] <= 1e-4
    assert row["max_weight_diff"] <= 1e-3

# %% [markdown]
# The dual is an ordinary counterpoise problem, so its solution has the usual balance table: at lambda its largest
# |SMD| is lambda, and its weights are the fit's 1/e(x), normalized.

# %%
arm = "treated"
lam = fit.lambdas(arm)[len(fit.lambdas(arm)) // 2]
dual = fit.to_problem(lam=lam, arm=arm)
print(dual, "-> auto tries", dual.auto_backends())
# CLARABEL can finish this exponential-cone problem "optimal_inaccurate" (then the status reads "inaccurate"); the
# checks below, against the fit, are what count
dual_solution = dual.solve(raise_on_failure=False)
assert dual_solution.status in ("optimal", "inaccurate"), dual_solution.message
omega = fit.weights(lam)[treated]
weight_gap = float(np.max(np.abs(dual_solution.weights - omega / omega.sum())) * treated.sum())
print(f"dual: max |SMD| {dual_solution.max_abs_smd:.6f} at lambda {lam:.6f}; ESS {dual_solution.ess:.1f}; "
      f"largest weight difference from the fit {weight_gap:.1e} mean weights")
assert abs(dual_solution.max_abs_smd - lam) <= 1e-4 * lam
assert weight_gap <= 1e-3
dual_solution.balance.sort_values("smd_after", key=abs, ascending=False).head(8)

# %% [markdown]
# ## The ATE along the path
#
# Hajek ATE with both arms' weights (`fit.weights(lam)`, a number for both arms is read per arm and clamped to each
# path), with the linearization SE that holds the weights fixed, at a few lambdas from the top of the path to its
# end:

# %%
grid = np.geomspace(min(fit.lambdas(a)[0] for a in fit.arms), max(fit.lambdas(a)[-1] for a in fit.arms), 12)
along = pd.DataFrame([{"lambda": lam, **cpz.estimate.ate(data, treatment="A", outcome="Y",
                                                          weights=fit.weights(lam)).to_frame()
                       [["estimate", "std_error", "ci_lower", "ci_upper"]].iloc[0]} for lam in grid])
along["error"] = along["estimate"] - TRUE_ATE
along

# %%
fig = Figure(figsize=(6.4, 3.6), layout="constrained")
ax = fig.subplots()
ax.fill_between(along["lambda"], along["ci_lower"], along["ci_upper"], alpha=0.25, label="95% CI (weights fixed)")
ax.plot(along["lambda"], along["estimate"], marker="o", label="balnet ATE")
ax.axhline(TRUE_ATE, color="black", linestyle="--", label="true ATE")
ax.axhline(naive, color="gray", linestyle=":", label="difference in means")
ax.set_xscale("log")
ax.set_xlabel("lambda (= max |SMD| each arm leaves)")
ax.set_ylabel("ATE")
ax.legend(fontsize="small")
fig

# %%
end_error = abs(along["error"].iloc[-1])
print(f"|error| at the path's end {end_error:.3f}, of the difference in means {abs(naive - TRUE_ATE):.3f}")
assert end_error < abs(naive - TRUE_ATE)

# %% [markdown]
# ## Choosing lambda by cross-validation
#
# `cv_balnet` follows R's `cv.balnet`: the full-data fit gives each arm's lambdas; each fold refits balnet on the
# other folds (re-standardizing, with a path of its own), predicts the link on the held-out rows at the full-data
# lambdas, and scores the calibration loss there; lambda_min minimizes the mean held-out loss per arm (no
# one-SE rule, as in balnet).

# %%
start = time.perf_counter()
cv = cpz.cv_balnet(data, treatment="A", n_folds=N_FOLDS, seed=CV_SEED, n_lambda=N_LAMBDA)
print(f"cv_balnet: {time.perf_counter() - start:.2f} s")
print(cv)
for arm in fit.arms:
    table = cv.cv_table(arm)
    assert int(table["cv_loss"].idxmin()) == cv.index_min[arm]
    np.testing.assert_array_equal(cv.fit.lambdas(arm), fit.lambdas(arm))   # the same full-data path
fig = cv.plot()
fig.suptitle(f"{N_FOLDS}-fold cross-validated balance loss")
fig

# %%
chosen = cpz.estimate.ate(data, treatment="A", outcome="Y", weights=cv.weights())
summary = pd.DataFrame({arm: fit.table(arm).iloc[cv.index_min[arm]] for arm in fit.arms}).T
summary["cv_loss"] = [cv.cv_table(arm)["cv_loss"].iloc[cv.index_min[arm]] for arm in summary.index]
print(f"at lambda_min: {chosen} (true ATE {TRUE_ATE})")
np.testing.assert_allclose(summary["max_abs_smd"], summary["lambda"], rtol=1e-3)
summary

# %% [markdown]
# At lambda_min each arm's weights leave a max |SMD| equal to that lambda (the table's `max_abs_smd`), with the
# ESS share shown beside it. The ATE interval there is the linearization interval, which holds the weights fixed.
