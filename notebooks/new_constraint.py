# %% [markdown]
# # Prototyping a new constraint: mean balance within strata
#
# Stable balancing weights (SBW) balance each covariate's mean over the whole control group, but that does not make
# the controls look like the treated *within* a subgroup. This notebook writes that requirement as a new
# `counterpoise.terms.Term`, adds it to an SBW problem, sweeps its tolerance (a cvxpy Parameter) along a path,
# checks the solutions against a second cvxpy solver, shows what the fast backends do with a term they cannot read,
# and then writes the same constraint so that the fast engine reads it. It follows the README's section "Your own
# constraint" (its `ShareCap` and `TopShare`) on the Kim, Niknam & Zubizarreta design
# (`counterpoise.datasets.kim2023`).

# %%
import os

SIZE = os.environ.get("COUNTERPOISE_NOTEBOOK_SIZE", "full")
SIZES = {
    "full": dict(n=10_000, path_points=20),   # about 20 s on 2 cores (cvxpy + CLARABEL at every point)
    "small": dict(n=2_000, path_points=8),    # what CI runs
}
N, PATH_POINTS = SIZES[SIZE]["n"], SIZES[SIZE]["path_points"]
SEED = 1            # the data; the SBW problem itself has no random step
DELTA = 0.02        # SBW's tolerance on the overall means, in treated-SD units
print(f"SIZE={SIZE}: n={N}, {PATH_POINTS} path points")

# %%
# %matplotlib inline
import cvxpy as cp
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import counterpoise as cpz
from counterpoise.errors import UnsupportedProblem
from counterpoise.terms import Term

# %% [markdown]
# ## The starting point: SBW on the six means
#
# Weak overlap, ATT: the controls are weighted so that each covariate's mean is within 0.02 treated SDs of the
# treated mean. `auto` solves it with the dual Newton method.

# %%
data = cpz.datasets.kim2023(n=N, overlap="weak", seed=SEED)
covariates = ["X1", "X2", "X3", "X4", "X5", "X6"]
plain = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=DELTA)
plain_solution = plain.solve()
print(plain_solution.summary())
print("backends auto would try:", plain.auto_backends())

# %% [markdown]
# ## The new term
#
# Within each level g of the binary X6, the weighted control mean of X1..X5 should be within `within` SDs of the
# treated mean in that level:
#
# $$\Big|\sum_{i \in S_g} w_i (x_{ij} - t_{gj}) / s_{gj}\Big| \le \text{within} \cdot \sum_{i \in S_g} w_i
# \quad\text{for every } g, j,$$
#
# with $t_{g}$ and $s_{g}$ the treated mean and SD in level g. Multiplying through by the stratum's total weight keeps
# the constraint linear in w and DPP-compliant (a Parameter times an affine expression), so cvxpy compiles it once
# for a whole path. The term needs a constructor, `parameters()`, `constraints(w)` and `violation(w)`; the
# violation is in the constraint's own units (SDs), which the post-solve check compares with 1e-6.


# %%
class StratumBalance(Term):
    """Mean balance within strata: |sum_{i in S_g} w_i (x_i - t_g) / s_g| <= within * sum_{i in S_g} w_i for every
    stratum g and column j, i.e. the weighted mean of each column within each stratum is within `within` (in units
    of s_g) of its target t_g. Parameter: "within"."""

    name = "strata"

    def __init__(self, X, strata, targets, scales, within, columns, name=None):
        self.name = name or self.name
        self.columns = list(columns)
        self.labels = list(targets)
        self.rows = {g: np.flatnonzero(strata == g) for g in self.labels}
        # each stratum's rows, centred at its targets and scaled to SD units, computed once
        self.Z = {g: (X[self.rows[g]] - targets[g]) / scales[g] for g in self.labels}
        self.within = cp.Parameter(nonneg=True, name=f"{self.name}.within", value=float(within))

    def parameters(self):
        return {"within": self.within}

    def constraints(self, w):
        return [cp.abs(self.Z[g].T @ w[self.rows[g]]) <= self.within * cp.sum(w[self.rows[g]]) for g in self.labels]

    def imbalance(self, w) -> pd.DataFrame:
        """The weighted mean minus the target, in SDs, per column (rows) and stratum (columns)."""
        return pd.DataFrame({g: self.Z[g].T @ w[self.rows[g]] / w[self.rows[g]].sum() for g in self.labels},
                            index=self.columns)

    def violation(self, w):
        if min(w[rows].sum() for rows in self.rows.values()) <= 0:
            return np.inf        # a stratum without weight has no mean to balance
        return float(max(np.abs(self.imbalance(w).to_numpy()).max() - self.within.value, 0.0))


# %% [markdown]
# The term works on the problem's own units, the controls, in `plain.units` order. Targets and SDs are the treated
# arm's, per level of X6 (the SDs are sample SDs, as counterpoise's balance terms use).

# %%
columns = covariates[:5]
controls, treated = data.loc[plain.units], data[data["A"] == 1]
levels = sorted(treated["X6"].unique())
targets = {g: treated.loc[treated["X6"] == g, columns].mean().to_numpy() for g in levels}
scales = {g: treated.loc[treated["X6"] == g, columns].std().to_numpy() for g in levels}


def stratum_term(within):
    return StratumBalance(controls[columns].to_numpy(), controls["X6"].to_numpy(), targets, scales, within, columns)


before = stratum_term(1.0).imbalance(plain_solution.weights.to_numpy())
before.columns = [f"X6 = {g:g}" for g in levels]
print("Within-stratum SMDs of the plain SBW weights (overall means are within 0.02 SD):")
before.round(4)

# %% [markdown]
# Overall balance leaves some within-stratum means well off target. The largest of them (printed below) is what a
# stratum tolerance has to go under to bind.

# %%
unconstrained = float(before.abs().to_numpy().max())
print(f"largest within-stratum |SMD| of the plain SBW weights: {unconstrained:.4f}; overall max |SMD|: "
      f"{plain_solution.max_abs_smd:.4f}")
assert unconstrained > 2 * DELTA, "overall balance already gives within-stratum balance here: nothing to show"

# %% [markdown]
# ## Adding it to the problem
#
# `prob.add(term)` puts it in; nothing needs registering. With the tolerance at a quarter of that largest
# imbalance the constraint binds.

# %%
prob = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=DELTA)
term = stratum_term(within=unconstrained / 4)
prob.add(term)
print(prob)
solution = prob.solve()
print(solution.summary())
print("violations (each term's own units):", {k: f"{v:.1e}" for k, v in solution.violations.items()})
after = term.imbalance(solution.weights.to_numpy())
print(f"largest within-stratum |SMD| now {after.abs().to_numpy().max():.5f} (within = {term.within.value:.5f})")
assert solution.status == "optimal"
assert abs(np.abs(after.to_numpy()).max() - term.within.value) <= 1e-6     # it binds: the largest sits on it
assert solution.ess < plain_solution.ess      # a binding constraint costs effective sample size

# %% [markdown]
# ## As written, no fast path reads it: auto falls back to cvxpy
#
# The fast engine reads a user's term when its constraints are affine in w (it takes their coefficients from cvxpy).
# `cp.abs(Z'w) <= within * sum(w)` is convex but not affine as cvxpy sees it (its left side is an `abs`), so the
# fast backends refuse the term, by name. `auto_backends()` lists what `backend="auto"` will try (with the new term
# only cvxpy is left), `auto_refusals()` says why each fast backend is skipped, and the solution records the
# backend that produced it.

# %%
print("plain SBW, auto tries:", plain.auto_backends(), "-> solved by", plain_solution.backend)
print("with StratumBalance, auto tries:", prob.auto_backends(), "-> solved by",
      f"{solution.backend}/{solution.solver}")
assert prob.auto_backends() == ["cvxpy"] and solution.backend == "cvxpy"
assert plain_solution.backend == "dual"
print("why not the dual:", prob.auto_refusals()["dual"])

# %% [markdown]
# Asking for a fast backend by name raises `UnsupportedProblem`, with a message that names the term and the backend
# that solves it:

# %%
messages = {}
for backend in ("dual", "osqp"):
    try:
        prob.solve(backend=backend)
    except UnsupportedProblem as error:
        messages[backend] = str(error)
        print(f"backend={backend!r}: UnsupportedProblem: {error}")
assert set(messages) == {"dual", "osqp"}
assert all("'strata' (StratumBalance)" in text and "backend='cvxpy'" in text for text in messages.values())

# %% [markdown]
# ## A path over the term's Parameter
#
# `prob.path(within=...)` sets the Parameter and re-solves the compiled cvxpy problem at each value (the name
# `within` is unique to the term; a short name shared by several terms, like `delta`, sets all of them). The values
# run from above the plain weights' largest imbalance, where the term is slack, down to a tenth of the overall
# tolerance.

# %%
values = np.geomspace(1.5 * unconstrained, DELTA / 10, PATH_POINTS)
path = prob.path(within=values)
table = path.table.copy()
table["max_stratum_smd"] = [term.imbalance(s.weights.to_numpy()).abs().to_numpy().max() for s in path]
print(f"path of {len(path)} points, {table['solve_time'].sum():.2f} s of solves")
table

# %%
assert (table["status"] == "optimal").all()
assert np.all(table["max_stratum_smd"] <= table["within"] + 1e-6)      # the constraint holds at every point
# the feasible set shrinks as `within` falls, so the SBW objective (the weights' variance) can only grow,
# and the ESS, 1 / (objective + 1 / n_controls) for SBW, can only fall
assert np.all(np.diff(table["ess"]) <= 1e-6 * table["ess"].iloc[0])
slack = table["within"] >= unconstrained
assert np.allclose(table.loc[slack, "ess"], plain_solution.ess, rtol=1e-6)   # a slack term changes nothing
# below the plain weights' imbalance the plain optimum is cut off, so the constraint binds at the new optimum
assert np.allclose(table.loc[~slack, "max_stratum_smd"], table.loc[~slack, "within"], rtol=1e-5)

# %%
fig = Figure(figsize=(6.4, 5.6), layout="constrained")   # not tracked by pyplot: shown once, as the cell's value
axes = fig.subplots(2, 1, sharex=True)
axes[0].plot(table["within"], table["max_stratum_smd"], marker="o", label="largest within-stratum |SMD|")
axes[0].plot(table["within"], table["within"], linestyle="--", color="gray", label="the tolerance (y = within)")
axes[0].axhline(unconstrained, linestyle=":", color="C1", label="plain SBW weights")
axes[0].set_ylabel("|SMD| within X6 strata")
axes[0].set_yscale("log")
axes[0].legend(fontsize="small")
axes[1].plot(table["within"], table["ess"], marker="o")
axes[1].axhline(plain_solution.ess, linestyle=":", color="C1")
axes[1].set_ylabel("Effective sample size")
axes[1].set_xlabel("within (tolerance in treated SDs per stratum)")
axes[1].set_xscale("log")
fig.suptitle("Tightening the stratum constraint: balance bought with ESS")
fig

# %% [markdown]
# The top panel: once `within` falls below the plain weights' largest within-stratum imbalance (dotted), that
# imbalance sits on the tolerance line. The bottom panel: the effective sample size it costs.

# %% [markdown]
# ## Checking the solution against cvxpy
#
# `prob.check(backend, solver=...)` solves with the given backend and with cvxpy + CLARABEL and reports the
# relative objective gap, the largest weight difference (relative to the largest weight) and both solutions'
# largest violations (the post-solve check, so our `violation` is exercised on both). With the new term the only
# backend is cvxpy, so the independent reference is a second interior-point solver, ECOS, on the same cvxpy
# problem.

# %%
check = prob.check("cvxpy", solver="ECOS")
check.to_frame()

# %%
print(f"objective gap {check.objective_gap:.1e}, weight gap {check.weight_gap:.1e}, "
      f"max violation {check.max_violation:.1e} (ECOS) / {check.reference_max_violation:.1e} (CLARABEL)")
assert check.solution.status == "optimal" and check.reference_solution.status == "optimal"
assert check.objective_gap < 1e-6 and check.max_violation < 1e-7

# %% [markdown]
# A second, independent check uses a fast path: where the term is slack, the cvxpy solution of the extended problem
# must be the plain SBW solution, which the dual Newton method found without cvxpy.

# %%
slack_solution = prob.set(within=1.5 * unconstrained).solve()
gap = float(np.max(np.abs(slack_solution.weights - plain_solution.weights)) / plain_solution.weights.max())
objective_gap = abs(slack_solution.objective - plain_solution.objective) / plain_solution.objective
print(f"slack term, cvxpy vs plain SBW on the dual: objective gap {objective_gap:.1e}, weight gap {gap:.1e}")
assert objective_gap < 1e-6 and gap < 1e-3

# %% [markdown]
# ## What it does to the estimate
#
# The outcome, Y = (X1 + X2 + X5)^2 + noise, has no treatment effect (the true ATT is 0). Mean balance leaves a
# large bias because the outcome is quadratic; balancing within the X6 strata does not address that (X6 does not
# enter the outcome), so we do not expect it to move by much against its standard error. The ATT along the path,
# and its largest change from the plain SBW estimate:

# %%
estimates = pd.DataFrame([{"within": v, **cpz.estimate.att(data, treatment="A", outcome="Y", weights=s).to_frame()
                           [["estimate", "std_error"]].iloc[0].to_dict()} for v, s in zip(values, path)])
plain_att = cpz.estimate.att(data, treatment="A", outcome="Y", weights=plain_solution)
change = float(np.max(np.abs(estimates["estimate"] - plain_att.estimate)))
print(f"plain SBW: {plain_att}")
print(f"largest change along the path: {change:.3f}, {change / plain_att.std_error:.2f} of its SE")
assert change < plain_att.std_error
estimates

# %% [markdown]
# ## Written affine, it runs on the fast engine
#
# |a| <= b is the same as a <= b and -a <= b. Written that way, every constraint of the term is affine in w, so the
# dual Newton reads its rows (two per stratum and column) from cvxpy and solves the problem itself; a path over
# `within` re-reads them at each value and starts each solve from the last dual point.


# %%
class AffineStratumBalance(StratumBalance):
    """StratumBalance with each |.| <= b written as two affine inequalities, which the fast engine reads."""

    def constraints(self, w):
        pieces = [(self.Z[g].T @ w[self.rows[g]], self.within * cp.sum(w[self.rows[g]])) for g in self.labels]
        return [c for gap, room in pieces for c in (gap <= room, -gap <= room)]


fast = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=DELTA)
fast_term = AffineStratumBalance(controls[columns].to_numpy(), controls["X6"].to_numpy(), targets, scales,
                                 unconstrained / 4, columns)
fast.add(fast_term)
fast_path = fast.path(within=values)
print("auto tries:", fast.auto_backends(), "-> solved by", {s.backend for s in fast_path})
gaps = [abs(a.objective - b.objective) / b.objective for a, b in zip(fast_path, path)]
print(f"{len(fast_path)} points in {fast_path.table['solve_time'].sum():.2f} s of solves (cvxpy: "
      f"{table['solve_time'].sum():.2f} s); largest objective gap to the cvxpy path {max(gaps):.1e}")
assert fast.auto_backends() == ["dual", "cvxpy"] and {s.backend for s in fast_path} == {"dual"}
assert max(gaps) < 1e-6

# %% [markdown]
# Prototyping a constraint, then, is one small class: paths sweep its Parameter, the post-solve check holds it to its
# own `violation`, the fast engine solves it when its constraints are affine in w, and otherwise the fast backends
# refuse it by name and cvxpy solves it, rather than silently dropping it.
