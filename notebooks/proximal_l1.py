# %% [markdown]
# # The proximal L1 contract: `lam * mean(w / w0)`, checked five ways
#
# The populace pull request "Proximal L1 solver (method=prox, l1_lambda)" (PolicyEngine/populace #184, in
# `shared/seeds/populace-prox-l1-pr.txt`) fixes one contract for sparse calibration: the L1 penalty is
# `l1_lambda * mean(w / w0)`, so a proximal step shrinks the ratio r = w / w0 by `step * lambda / n`, and its
# review asks for a one-step prox test or a duplicate-record invariance test to pin that scale.
# This notebook checks the same contract for `counterpoise.sparse_calibrate` solved by `backend="prox"`
# (FISTA, then an exact finish certified by a dual bound), against `backend="cvxpy"` (CLARABEL): the objective
# against the hand formula, the one-step soft-threshold scale, duplicate-record invariance, monotonicity in lam
# along a path, and exact zeros.

# %%
import os

SIZE = os.environ.get("COUNTERPOISE_NOTEBOOK_SIZE", "full")
SIZES = {
    "full": dict(n=5000, path_points=24, seed=42, target_seed=123),    # the sparse-calibration study's sample size
    "small": dict(n=1000, path_points=8, seed=42, target_seed=123),    # what CI runs
}
n, PATH_POINTS, SEED, TARGET_SEED = (SIZES[SIZE][key] for key in ("n", "path_points", "seed", "target_seed"))
print(f"SIZE = {SIZE}: n = {n}, {PATH_POINTS} lam values per path, seeds {SEED} / {TARGET_SEED}")

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import counterpoise as cpz

pd.set_option("display.width", 160)
warnings.filterwarnings("ignore", category=cpz.CounterpoiseWarning)

# %% [markdown]
# ## The problem
#
# The sample is the sparse-calibration notebook's CPS-like design (`cpz.datasets.cps_like`): age group, sex and a
# lognormal `weight` per record; the targets are the five age-group counts and the total of `weight`
# (`data.attrs`). The base weights w0 are proportional to `weight` and sum to the population count, the way
# l0-python's HardConcrete is initialised in that study. With uniform w0 the lasso's optimum is a whole face
# (the penalty is then a multiple of sum(w)), so weights could not be compared between solvers; with varying w0 it
# is a single point.
#
# `sparse_calibrate` minimizes, over w >= 0,
#
# $$\tfrac12 \sum_j \Big(\frac{x_j'w - T_j}{s_j}\Big)^2 + \lambda\,\frac1n\sum_i \frac{w_i}{w_{0i}}
#   \;\Big[+\ \frac{\text{ridge}}{2}\,\frac{\sum_i (w_i - w_{0i})^2 / w_{0i}}{\sum_i w_{0i}}\Big],
#   \qquad s_j = \max(|T_j|, \text{floor}).$$
#
# (populace's loss is a capped absolute relative error; counterpoise's is the squared relative error. The penalty,
# the part the pull request is about, is the same.)

# %%
data = cpz.datasets.cps_like(n=n, seed=SEED, target_seed=TARGET_SEED)
margins, totals = data.attrs["margins"], data.attrs["totals"]
population = sum(margins["age_group"].values())
data["w0"] = data["weight"] * population / data["weight"].sum()

# The calibration system by hand: one indicator column per age group, then the `weight` column.
names = [f"age_group={level}" for level in margins["age_group"]] + list(totals)
X = np.column_stack([(data["age_group"] == level).to_numpy(float) for level in margins["age_group"]]
                    + [data[col].to_numpy(float) for col in totals])
T = np.array(list(margins["age_group"].values()) + list(totals.values()), dtype=float)
s = np.maximum(np.abs(T), 1.0)            # floor = 1.0, the builder's default
w0 = data["w0"].to_numpy()
k = len(T)


def hand_objective(w, lam, ridge=0.0):
    """The objective written out: 1/2 sum_j ((x_j'w - T_j)/s_j)^2 + lam mean(w/w0) + the ridge's chi-square."""
    residual = (X.T @ w - T) / s
    chi_square = np.sum((w - w0) ** 2 / w0) / (2 * w0.sum())
    return 0.5 * residual @ residual + lam * np.mean(w / w0) + ridge * chi_square


def lasso(frame=data, base="w0", **options):
    return cpz.sparse_calibrate(frame, base_weights=base, margins=margins, totals=totals, **options)


prob = lasso()
lam_max = prob.backend("prox").lambda_max()
print(f"n = {n} records, k = {k} targets: {names}")
print(f"lam_max = {lam_max:.6g} (the smallest lam at which w = 0 is optimal)")
pd.DataFrame({"target": T, "scale s_j": s, "w0 total": X.T @ w0}, index=names)

# %% [markdown]
# ## 1. The penalty is `lam * mean(w / w0)`: the objective against the hand formula
#
# Along a path of lam from 0.9 lam_max down to 1e-4 lam_max, solved warm by `prox` and by `cvxpy`: the objective
# each solution reports, the prox backend's own primal value (on r = w / w0) and its dual bound, and the hand
# formula above evaluated at the returned weights.

# %%
fractions = np.geomspace(0.9, 1e-4, PATH_POINTS)
lams = fractions * lam_max
prox_path = prob.path(lam=lams, backend="prox")
cvxpy_path = prob.path(lam=lams, backend="cvxpy", raise_on_failure=False)   # CLARABEL may stop "inaccurate"

rows = []
for lam, p, c in zip(lams, prox_path.solutions, cvxpy_path.solutions):
    w, wc = p.weights.to_numpy(), c.weights.to_numpy()
    rows.append(dict(lam_over_max=lam / lam_max, lam=lam, records=p.info["records"],
                     prox_objective=p.objective, hand_formula=hand_objective(w, lam),
                     prox_internal=p.info["objective"], dual_bound=p.info["dual_bound"],
                     cvxpy_objective=c.objective, cvxpy_hand=hand_objective(wc, lam),
                     penalty=lam * np.mean(w / w0), loss=hand_objective(w, 0.0)))
objective = pd.DataFrame(rows)
objective["cvxpy_status"] = [sol.status for sol in cvxpy_path.solutions]
objective["hand_vs_prox"] = np.abs(objective.hand_formula - objective.prox_objective) / objective.prox_objective
objective["prox_gap"] = (objective.prox_objective - objective.dual_bound) / objective.prox_objective
objective["cvxpy_minus_prox"] = (objective.cvxpy_objective - objective.prox_objective) / objective.prox_objective
objective[["lam_over_max", "records", "prox_objective", "hand_formula", "dual_bound", "cvxpy_objective",
           "cvxpy_status", "hand_vs_prox", "prox_gap", "cvxpy_minus_prox"]]

# %%
assert all(sol.status == "optimal" for sol in prox_path.solutions)
cvxpy_status = pd.Series([sol.status for sol in cvxpy_path.solutions]).value_counts()
print("cvxpy statuses:", cvxpy_status.to_dict(), "(every cvxpy point is feasible: w >= 0 is its only constraint)")
assert all(sol.max_violation <= 1e-6 for sol in cvxpy_path.solutions)
print(f"max |hand formula - reported objective| / objective: prox {objective.hand_vs_prox.max():.1e}, "
      f"cvxpy {(np.abs(objective.cvxpy_hand - objective.cvxpy_objective) / objective.cvxpy_objective).max():.1e}")
print(f"max |prox internal primal (on r) - hand formula| / objective: "
      f"{(np.abs(objective.prox_internal - objective.hand_formula) / objective.hand_formula).max():.1e}")
print(f"prox relative duality gap: at most {objective.prox_gap.max():.1e}")
print(f"(cvxpy - prox) / prox objective: from {objective.cvxpy_minus_prox.min():.1e} "
      f"to {objective.cvxpy_minus_prox.max():.1e}")
assert objective.hand_vs_prox.max() < 1e-12
assert (np.abs(objective.prox_internal - objective.hand_formula) / objective.hand_formula).max() < 1e-9
assert objective.prox_gap.max() < 1e-6
# cvxpy's solution is feasible, so its objective can never be below the prox's certified dual bound,
assert (objective.cvxpy_objective >= objective.dual_bound * (1 - 1e-9)).all()
assert (objective.cvxpy_minus_prox >= -1e-9).all()
# and the two agree to CLARABEL's accuracy.
assert np.abs(objective.cvxpy_minus_prox).max() < 1e-3

# %% [markdown]
# The reported objective *is* the hand formula with the penalty `lam * mean(w / w0)`, on both backends, and the
# prox backend's dual bound certifies its solution. Where the two backends differ, it is cvxpy that is above the
# optimum: its objective is never below prox's (printed above) and never below the dual bound, which no feasible
# weights can beat.
#
# The stationarity condition pins the penalty's scale record by record. On r = w / w0 the loss's gradient is
# g_i = w0_i sum_j x_ij residual_j / s_j^2; at the optimum g_i = -lam / n on every record kept and g_i >= -lam / n on
# every record at zero. A sum penalty `lam * sum(w / w0)` would put the kept records at -lam instead, n times
# further down.

# %%
middle = len(lams) // 2
lam_mid, sol_mid = lams[middle], prox_path.solutions[middle]
w_mid = sol_mid.weights.to_numpy()
gradient = w0 * (X @ ((X.T @ w_mid - T) / s ** 2))
kept = w_mid > 0
scaled = -gradient / (lam_mid / n)            # 1 on the kept records, <= 1 on the others
print(f"lam = {lam_mid / lam_max:.3g} lam_max: {kept.sum()} records kept")
print(f"kept records: -g_i / (lam/n) in [{scaled[kept].min():.12f}, {scaled[kept].max():.12f}]")
print(f"records at 0: -g_i / (lam/n) at most {scaled[~kept].max():.6f}")
assert np.allclose(scaled[kept], 1.0, rtol=0, atol=1e-6)
assert scaled[~kept].max() <= 1 + 1e-6

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
ax = axes[0]
ax.loglog(objective.lam_over_max, objective.hand_formula, "-", color="0.6", lw=4, label="hand formula (prox weights)")
ax.loglog(objective.lam_over_max, objective.prox_objective, "o", ms=4, label="prox: reported objective")
ax.loglog(objective.lam_over_max, objective.cvxpy_objective, "x", label="cvxpy: reported objective")
ax.loglog(objective.lam_over_max, objective.penalty, "--", label="penalty lam mean(w/w0)")
ax.loglog(objective.lam_over_max, objective.loss, ":", label="loss")
ax.set_xlabel("lam / lam_max")
ax.set_ylabel("objective")
ax.set_title("objective = loss + lam mean(w / w0)")
ax.legend(fontsize=8)
ax = axes[1]
ax.scatter(w0[~kept], scaled[~kept], s=4, color="0.6", label=f"w = 0 ({(~kept).sum()} records)")
ax.scatter(w0[kept], scaled[kept], s=40, color="C3", label=f"w > 0 ({kept.sum()} records)")
ax.axhline(1.0, color="C3", lw=1, ls="--", label="lam / n  (mean penalty)")
ax.set_xlabel("base weight w0_i")
ax.set_ylabel("-(d loss / d r_i) / (lam / n)")
ax.set_title(f"stationarity at lam = {lam_mid / lam_max:.2g} lam_max")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 2. The one-step soft-threshold scale
#
# The pull request's regression test: where the smooth gradient is zero, one proximal-gradient step with step size
# eta moves every ratio from r = 1 to max(1 - eta lam / n, 0). Here the targets are moved to the totals that w0
# itself reaches (so the gradient at r = 1 is exactly zero) and the library's FISTA loop
# (`counterpoise.backends.prox._fista`, an internal function) runs one iteration from r = 1 with its step 1 / L,
# L the largest eigenvalue of M'M, M = diag(w0) X diag(1 / s). Both the step and L are recomputed here by hand.
#
# A public check of the same scale: one target, the count T of one age group, and uniform base weights
# w0 = T / n on all n records. With S the group's weighted count, the objective is 1/2 (S/T - 1)^2 + lam S/T
# (records outside the group only add penalty, so they get 0), and the solution is soft-thresholded,
# S/T = max(0, 1 - lam): lam_max = 1 for every n. A penalty lam * sum(w / w0) would give max(0, 1 - n lam).
# (The target is an indicator column rather than a column of ones because a constant target column is refused
# by the builder; see the report.)

# %%
from counterpoise.backends.prox import _fista

reached = X.T @ w0
zero_gradient = cpz.sparse_calibrate(
    data, base_weights="w0", margins={"age_group": dict(zip(margins["age_group"], reached[:-1]))},
    totals={"weight": reached[-1]})
engine = zero_gradient.backend("prox")
s0 = np.maximum(np.abs(reached), 1.0)
M = w0[:, None] * X / s0
L_hand = float(np.linalg.eigvalsh(M.T @ M)[-1])
print(f"L: by hand {L_hand:.10g}, the backend's {engine.L:.10g}")
assert abs(engine.L - L_hand) <= 1e-9 * L_hand
assert np.abs(M.T @ np.ones(n) - reached / s0).max() < 1e-12       # zero residual, so zero gradient, at r = 1

one_step = []
for fraction in [1e-3, 0.01, 0.1, 0.3, 0.6, 1.0, 2.0]:
    lam = fraction * n * L_hand                 # so that the threshold eta lam / n is `fraction`
    r1, _ = _fista(engine.M, reached / s0, np.full(n, lam / n), np.zeros(n), np.inf, engine.L, np.ones(n), 1)
    one_step.append(dict(lam=lam, eta_lam_over_n=lam / (n * L_hand), r_after_one_step_min=r1.min(),
                         r_after_one_step_max=r1.max(), mean_contract=max(1 - lam / (n * L_hand), 0.0),
                         sum_contract=max(1 - lam / L_hand, 0.0)))
one_step = pd.DataFrame(one_step)
one_step["error"] = np.maximum(np.abs(one_step.r_after_one_step_min - one_step.mean_contract),
                               np.abs(one_step.r_after_one_step_max - one_step.mean_contract))
print(one_step.to_string())
assert one_step.error.max() < 1e-12

# %%
group = max(margins["age_group"], key=margins["age_group"].get)
T_one = float(margins["age_group"][group])
single = data[["age_group"]].assign(in_group=(data["age_group"] == group).astype(float), d=T_one / n)
single_prob = cpz.sparse_calibrate(single, base_weights="d", totals={"in_group": T_one})
in_group = single["in_group"].to_numpy()
print(f"single target: lam_max = {single_prob.backend('prox').lambda_max():.12g} (the contract says 1)")
assert abs(single_prob.backend("prox").lambda_max() - 1.0) < 1e-12
single_lams = np.array([0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
shrink = []
for lam in single_lams:
    single_prob.set(lam=lam)
    p = single_prob.solve(backend="prox")
    c = single_prob.solve(backend="cvxpy")
    shrink.append(dict(lam=lam, prox=p.weights @ in_group / T_one, cvxpy=c.weights @ in_group / T_one,
                       contract=max(0.0, 1 - lam), sum_penalty=max(0.0, 1 - n * lam),
                       prox_outside_group=float(p.weights[in_group == 0].sum())))
shrink = pd.DataFrame(shrink)
print(shrink.to_string())
assert np.abs(shrink.prox - shrink.contract).max() < 1e-9
assert np.abs(shrink.cvxpy - shrink.contract).max() < 1e-6
assert (shrink.prox_outside_group == 0).all()

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
ax = axes[0]
grid = np.linspace(0, 2.05, 200)
ax.plot(grid, np.maximum(1 - grid, 0), color="0.6", lw=4, label="max(1 - eta lam / n, 0)  (mean penalty)")
ax.plot(grid, np.maximum(1 - n * grid, 0), "--", color="C1", label="max(1 - eta lam, 0)  (sum penalty)")
ax.plot(one_step.eta_lam_over_n, one_step.r_after_one_step_min, "o", color="C0",
        label="library FISTA: one step from r = 1")
ax.set_xlabel("eta lam / n   (eta = 1 / L)")
ax.set_ylabel("r after one step (every record)")
ax.set_title("one prox step where the gradient is zero")
ax.legend(fontsize=8)
ax = axes[1]
grid = np.linspace(0, 1.0, 200)
ax.plot(grid, np.maximum(1 - grid, 0), color="0.6", lw=4, label="max(0, 1 - lam)  (mean penalty)")
ax.plot(grid, np.maximum(1 - n * grid, 0), "--", color="C1", label=f"max(0, 1 - n lam), n = {n}  (sum penalty)")
ax.plot(shrink.lam, shrink.prox, "o", label="prox")
ax.plot(shrink.lam, shrink.cvxpy, "x", label="cvxpy")
ax.set_xlabel("lam")
ax.set_ylabel("S / T  (S: the group's weighted count)")
ax.set_title(f"one target (age {group}), w0 = T / n")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 3. Duplicate-record invariance
#
# Duplicating every record and halving its base weight describes the same population. Under `lam * mean(w / w0)`
# the duplicated problem is the same problem: splitting each w_i into two halves keeps every total, and the penalty
# (1 / 2n) sum over the 2n copies of (w_i / 2) / (w0_i / 2) equals (1 / n) sum_i w_i / w0_i. (The ridge's chi-square
# is invariant too.) So at the same lam the optimal objective is the same and each pair of copies carries the
# original record's weight; under a sum penalty the duplicated penalty would double. In the lasso the two copies
# are interchangeable, so only the pair's sum is determined (prox's vertex gives it all to one copy, so the record
# count stays the same); in the elastic net (strictly convex) each copy gets exactly half, and the count doubles.

# %%
twice = pd.concat([data, data], ignore_index=True)
twice["w0"] = twice["w0"] / 2
pair = np.r_[np.arange(n), np.arange(n)]
duplicate_rows = []
pair_sums = {}
for label, ridge in [("lasso", 0.0), ("elastic net (ridge 1)", 1.0)]:
    original, duplicated = lasso(ridge=ridge), lasso(twice, ridge=ridge)
    top = original.backend("prox").lambda_max()
    top2 = duplicated.backend("prox").lambda_max()
    for fraction in [0.3, 0.03, 0.003]:
        original.set(lam=fraction * top)
        duplicated.set(lam=fraction * top)             # the same lam
        for backend in ("prox", "cvxpy"):
            a = original.solve(backend=backend)
            b = duplicated.solve(backend=backend)
            wa, wb = a.weights.to_numpy(), b.weights.to_numpy()
            sums = np.bincount(pair, weights=wb)
            pair_sums[(label, fraction, backend)] = (wa, sums, wb)
            duplicate_rows.append(dict(
                problem=label, lam_over_max=fraction, backend=backend, lam_max_original=top, lam_max_duplicated=top2,
                objective_original=a.objective, objective_duplicated=b.objective,
                objective_gap=abs(a.objective - b.objective) / a.objective,
                pair_sum_gap=np.abs(sums - wa).max() / wa.max(),
                copies_gap=np.abs(wb[:n] - wb[n:]).max() / wa.max(),
                mean_penalty_original=np.mean(wa / w0), mean_penalty_duplicated=np.mean(wb / twice["w0"]),
                sum_penalty_original=np.sum(wa / w0), sum_penalty_duplicated=np.sum(wb / twice["w0"]),
                records_original=int((wa > 0).sum()), records_duplicated=int((wb > 0).sum())))
duplicates = pd.DataFrame(duplicate_rows)
duplicates[["problem", "lam_over_max", "backend", "objective_original", "objective_duplicated", "objective_gap",
            "pair_sum_gap", "copies_gap", "mean_penalty_original", "mean_penalty_duplicated",
            "sum_penalty_original", "sum_penalty_duplicated", "records_original", "records_duplicated"]]

# %%
assert np.allclose(duplicates.lam_max_original, duplicates.lam_max_duplicated, rtol=1e-12)
on_prox = duplicates[duplicates.backend == "prox"]
on_cvxpy = duplicates[duplicates.backend == "cvxpy"]
print(f"prox: objective gap at most {on_prox.objective_gap.max():.1e}, pair sums off by at most "
      f"{on_prox.pair_sum_gap.max():.1e} (relative to the largest weight)")
print(f"cvxpy: objective gap at most {on_cvxpy.objective_gap.max():.1e}, pair sums off by at most "
      f"{on_cvxpy.pair_sum_gap.max():.1e}")
print(f"elastic net copies differ by at most {duplicates[duplicates.problem != 'lasso'].copies_gap.max():.1e}")
print("prox: sum(w / w0) duplicated / original:",
      np.round((on_prox.sum_penalty_duplicated / on_prox.sum_penalty_original).to_numpy(), 12))
assert on_prox.objective_gap.max() < 1e-9 and on_prox.pair_sum_gap.max() < 1e-7
assert on_cvxpy.objective_gap.max() < 1e-3      # CLARABEL's accuracy on the lasso, as in section 1
net_rows = duplicates.problem != "lasso"
assert duplicates[net_rows & (duplicates.backend == "prox")].copies_gap.max() < 1e-7
assert duplicates[net_rows & (duplicates.backend == "cvxpy")].pair_sum_gap.max() < 1e-4
prox_lasso = on_prox[on_prox.problem == "lasso"]
prox_net = on_prox[on_prox.problem != "lasso"]
assert (prox_lasso.records_duplicated == prox_lasso.records_original).all()
assert (prox_net.records_duplicated == 2 * prox_net.records_original).all()
# cvxpy's lasso pair sums are only as good as its lasso weights, which at small lam are off on the original data too:
for fraction in [0.3, 0.03, 0.003]:
    w_prox, w_cvxpy = pair_sums[("lasso", fraction, "prox")][0], pair_sums[("lasso", fraction, "cvxpy")][0]
    print(f"lasso, lam = {fraction} lam_max, original data: max |w_cvxpy - w_prox| / max w_prox = "
          f"{np.abs(w_cvxpy - w_prox).max() / w_prox.max():.1e}")
assert np.allclose(on_prox.mean_penalty_original, on_prox.mean_penalty_duplicated, rtol=1e-9)
assert np.allclose(on_prox.sum_penalty_duplicated / on_prox.sum_penalty_original, 2.0, rtol=1e-9)
assert np.allclose(on_cvxpy.mean_penalty_original, on_cvxpy.mean_penalty_duplicated, rtol=1e-3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, label, fraction in zip(axes, ["lasso", "elastic net (ridge 1)"], [0.3, 0.03]):
    for backend, marker in [("prox", "o"), ("cvxpy", "x")]:
        wa, sums, wb = pair_sums[(label, fraction, backend)]
        show = (wa > 0) | (sums > 1e-9 * wa.max())
        ax.plot(wa[show], sums[show], marker, ms=5 if backend == "prox" else 7, mfc="none" if backend == "prox"
                else None, label=f"{backend}: w(copy 1) + w(copy 2)")
    wa, sums, wb = pair_sums[(label, fraction, "prox")]
    top = max(wa.max(), sums.max()) * 1.05
    ax.plot([0, top], [0, top], color="0.6", lw=1, zorder=0)
    if label != "lasso":
        ax.plot(wa[wa > 0], 2 * wb[:n][wa > 0], ".", ms=2, color="C2", label="prox: 2 w(copy 1)")
    ax.set_xlabel("w_i, original data")
    ax.set_ylabel("the two copies' weights, duplicated data, w0 / 2")
    ax.set_title(f"{label}, lam = {fraction} lam_max")
    ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 4. Monotonicity in lam along a path
#
# The pull request's monotonicity test counts survivors as lam grows. Here the path runs from small lam to large,
# warm-started (`prob.path`), for the lasso, the elastic net (ridge 1) and the lasso with a cap w / w0 <= 20.
# Two facts hold for any convex penalty path and are checked at every step: the penalty mean(w / w0) never
# increases with lam and the loss never decreases. The record count is a different matter: the elastic net's
# never increases, but the pure lasso's solution is a vertex with at most k + 1 records off their bounds, and
# between two lam values the vertex may change to one with a record more (the cell below counts how often that
# happens on this path). A path point that prox does not certify
# optimal (its relative duality gap above 1e-6) is listed below and left out of the counts.

# %%
increasing = np.sort(lams)
paths = {}
for label, options in [("lasso", {}), ("elastic net (ridge 1)", dict(ridge=1.0)), ("capped lasso (cap 20)",
                                                                                    dict(cap=20.0))]:
    p = lasso(**options)
    top = p.backend("prox").lambda_max()
    values = np.sort(fractions) * top
    path = p.path(lam=values, backend="prox", raise_on_failure=False)
    w_path = path.weights.to_numpy()
    paths[label] = pd.DataFrame(dict(
        lam_over_max=values / top, status=[sol.status for sol in path.solutions],
        records=(w_path > 0).sum(axis=0), mean_ratio=(w_path / w0[:, None]).mean(axis=0),
        loss=[sol.objective - v * np.mean(sol.weights.to_numpy() / w0) for v, sol in zip(values, path.solutions)]))
monotone = []
for label, table in paths.items():
    ok = table[table.status == "optimal"]
    monotone.append(dict(path=label, points=len(table), optimal=len(ok),
                         records_first=int(ok.records.iloc[0]), records_last=int(ok.records.iloc[-1]),
                         record_increases=int((np.diff(ok.records) > 0).sum()),
                         penalty_increases=int((np.diff(ok.mean_ratio) > 1e-9 * ok.mean_ratio.max()).sum()),
                         loss_decreases=int((np.diff(ok.loss) < -1e-9 * ok.loss.max()).sum()),
                         max_records=int(ok.records.max())))
monotone = pd.DataFrame(monotone)
monotone

# %%
failed = {label: table[table.status != "optimal"].lam_over_max.round(6).tolist() for label, table in paths.items()}
print("points not certified optimal (warm-started path):", failed)
assert (monotone.penalty_increases == 0).all() and (monotone.loss_decreases == 0).all()
net = monotone.set_index("path").loc["elastic net (ridge 1)"]
assert net.optimal == net.points and net.record_increases == 0 and net.records_first > net.records_last
lasso_row = monotone.set_index("path").loc["lasso"]
assert lasso_row.optimal == lasso_row.points and lasso_row.max_records <= k + 1
print(f"lasso: at most {lasso_row.max_records} records at any lam (k + 1 = {k + 1}); the count rises "
      f"{lasso_row.record_increases} times along the path as lam grows")

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for label, table in paths.items():
    ok = table[table.status == "optimal"]
    axes[0].semilogx(ok.lam_over_max, ok.records, ".-", label=label)
    axes[1].loglog(ok.lam_over_max, ok.mean_ratio, ".-", label=label)
axes[0].set_yscale("log")
axes[0].set_xlabel("lam / lam_max")
axes[0].set_ylabel("records kept (w > 0)")
axes[0].set_title("records along the path")
axes[1].set_xlabel("lam / lam_max")
axes[1].set_ylabel("mean(w / w0)")
axes[1].set_title("the penalized quantity never grows with lam")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 5. Exact zeros
#
# The prox backend's exact finish sets the records it drops to 0.0 exactly (NNLS moves a unit out of the working
# set by setting it to zero; no threshold is applied afterwards). An interior-point solver never reaches the
# boundary: cvxpy + CLARABEL returns small positive weights where the optimum has zeros, and a count of records
# kept then needs a threshold, and the right threshold depends on the solver's accuracy. On the elastic-net path
# (whose optimum is unique, so the two supports can be compared), the records prox keeps are the records cvxpy
# ranks highest: some threshold separates them from the rest, but not one fixed in advance (cvxpy leaves small
# positive ratios, printed below, on records whose optimal weight is 0, and how small depends on its accuracy).

# %%
net_prob = lasso(ridge=1.0)
top = net_prob.backend("prox").lambda_max()
zero_rows, ratios = [], {}
for fraction in [0.5, 0.2, 0.1, 0.05]:
    net_prob.set(lam=fraction * top)
    p, c = net_prob.solve(backend="prox"), net_prob.solve(backend="cvxpy")
    rp, rc = p.weights.to_numpy() / w0, c.weights.to_numpy() / w0
    ratios[fraction] = (rp, rc)
    support = rp > 0
    zero_rows.append(dict(lam_over_max=fraction, prox_records=int(support.sum()),
                          prox_exact_zeros=int((rp == 0).sum()), prox_smallest_positive=rp[support].min(),
                          prox_negative=int((rp < 0).sum()),
                          cvxpy_exact_zeros=int((rc == 0).sum()), cvxpy_largest_off_support=rc[~support].max(),
                          cvxpy_smallest_on_support=rc[support].min()))
zeros = pd.DataFrame(zero_rows)
zeros

# %%
assert (zeros.prox_exact_zeros + zeros.prox_records == n).all() and (zeros.prox_negative == 0).all()
assert (zeros.prox_smallest_positive > 1e-6).all()          # no near-zero survivors: 0.0 or clearly positive
assert (zeros.cvxpy_exact_zeros < zeros.prox_exact_zeros).all()
# a threshold between cvxpy's largest ratio off prox's support and its smallest on it recovers prox's support
assert (zeros.cvxpy_largest_off_support < zeros.cvxpy_smallest_on_support).all()
assert (zeros.cvxpy_largest_off_support < 1e-3).all()
print(f"prox: {zeros.prox_exact_zeros.tolist()} records exactly 0.0; cvxpy: {zeros.cvxpy_exact_zeros.tolist()}")
print(f"cvxpy's largest w/w0 where prox has 0: {zeros.cvxpy_largest_off_support.max():.1e}; its smallest where "
      f"prox keeps a record: {zeros.cvxpy_smallest_on_support.min():.1e}")

fraction = 0.1
rp, rc = ratios[fraction]
fig, ax = plt.subplots(figsize=(8, 4))
floor = 1e-14
bins = np.linspace(-14.5, 1, 63)
ax.hist(np.log10(np.maximum(rc, floor)), bins=bins, alpha=0.6, label="cvxpy (CLARABEL)")
ax.hist(np.log10(rp[rp > 0]), bins=bins, alpha=0.6, label="prox, w > 0")
ax.bar(np.log10(floor) - 0.5, (rp == 0).sum(), width=0.4, color="C1", hatch="//", alpha=0.8,
       label=f"prox, w = 0.0 exactly ({(rp == 0).sum()})")
ax.set_xlabel("log10(w / w0)   (exact zeros drawn at the left)")
ax.set_ylabel("records")
ax.set_title(f"elastic net, lam = {fraction} lam_max, n = {n}")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Summary
#
# - The objective both backends report is the hand formula with the penalty `lam * mean(w / w0)` (to rounding),
#   the prox backend's dual bound certifies it, and the stationarity condition puts every kept record's loss
#   gradient at exactly -lam / n.
# - One FISTA step from a zero-gradient point shrinks every ratio by exactly eta lam / n, and with one target the
#   total is soft-thresholded at 1 - lam: the mean scale, not the sum scale.
# - Duplicating every record and halving w0 leaves lam_max, the optimal objective and the weight per original
#   record unchanged (the elastic net splits it exactly in half); a sum penalty would double.
# - Along a path the penalized quantity mean(w / w0) never grows with lam; the elastic net's record count never
#   grows either, while the pure lasso's stays at k + 1 or fewer records and need not shrink monotonically.
# - prox's dropped records are exactly 0.0; cvxpy leaves them small and positive (the sizes are printed in
#   section 5), so counting cvxpy's records needs a threshold that depends on its accuracy.
