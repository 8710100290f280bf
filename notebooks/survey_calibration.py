# %% [markdown]
# # Survey calibration on the California API samples: GREG, raking, logit, bounds and trimming
#
# R's survey package teaches calibration on its `api` data: a stratified sample (`apistrat`, 200 schools) and a
# cluster sample (`apiclus1`, 183 schools in 15 districts) of California's 6,194 schools, calibrated to the
# population counts by school type and by whether the school met its growth target, and to the total of the 1999
# API. This notebook runs `cpz.calibrate` with survey's three calibration functions (linear = GREG, raking, logit),
# bounds on g = w / d, trimming (`cpz.trim_weights`, `cpz.rake(trim=)`) and `sol.validate()` on both samples, and
# checks them against survey's definitions as written down in `shared/reference/calibration_anchors.md` (section
# 4.1: the calibration functions, the logit's form, the convergence rule, trimming) and the population totals of
# `shared/data/api/README.md`.

# %%
import os

SIZE = os.environ.get("COUNTERPOISE_NOTEBOOK_SIZE", "full")
SIZES = {
    "full": dict(replicates=1000, seed=20240601),    # bootstrap replicates of apistrat for the standard errors
    "small": dict(replicates=40, seed=20240601),     # what CI runs
}
REPLICATES, SEED = SIZES[SIZE]["replicates"], SIZES[SIZE]["seed"]
print(f"SIZE = {SIZE}: {REPLICATES} bootstrap replicates, seed {SEED}")

# %%
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import counterpoise as cpz

pd.set_option("display.width", 170)
warnings.filterwarnings("ignore", category=cpz.CounterpoiseWarning)

# %% [markdown]
# ## Samples and population totals
#
# `cpz.datasets.API_POPULATION` holds the totals of survey's classic calibration examples; they are the ones the
# data README lists (N = 6194; stype E 4421, H 755, M 1018; sch.wide No 1072, Yes 5122; sum of api99 = 3,914,069).
# Where R's population file `apipop` is at hand (in this workplace, `shared/data/api/api_apipop.csv`; it is not
# shipped with counterpoise) the totals are recomputed from it, and the true mean of api00 is kept to compare the
# estimates with.

# %%
pop = cpz.datasets.API_POPULATION
readme_totals = {"N": 6194, "stype": {"E": 4421, "H": 755, "M": 1018}, "sch.wide": {"No": 1072, "Yes": 5122},
                 "api99": 3_914_069}
assert pop == readme_totals
margins = {"stype": pop["stype"], "sch.wide": pop["sch.wide"]}
totals = {"api99": pop["api99"]}

# R's population file, where a workplace keeps it: COUNTERPOISE_APIPOP, else shared/ beside the repository
# (this notebook runs in notebooks/)
apipop_path = Path(os.environ.get("COUNTERPOISE_APIPOP", "../../shared/data/api/api_apipop.csv"))
truth = None
if apipop_path.is_file():
    apipop = pd.read_csv(apipop_path, dtype={"cds": str})
    recomputed = {"N": len(apipop), "stype": apipop.stype.value_counts().to_dict(),
                  "sch.wide": apipop["sch.wide"].value_counts().to_dict(), "api99": int(apipop.api99.sum())}
    assert recomputed == pop, recomputed
    truth = float(apipop.api00.mean())
    print(f"apipop found: its totals equal API_POPULATION; population mean of api00 = {truth:.2f}")
else:
    print("apipop is not at hand here: the population totals are taken as listed, and no true mean is shown")

samples = {name: cpz.datasets.api(name) for name in ("apistrat", "apiclus1")}
for name, api in samples.items():
    print(f"{name}: {len(api)} schools, sum of pw = {api.pw.sum():.2f}, stype counts {api.stype.value_counts().to_dict()}")

# In apistrat the design weight is N_h / n_h, so the Horvitz-Thompson stype counts are already the population's.
strat = samples["apistrat"]
ht_stype = strat.groupby("stype").pw.sum()
print("apistrat HT stype counts:", ht_stype.round(3).to_dict())
assert np.allclose(ht_stype.reindex(list(pop["stype"])).to_numpy(), list(pop["stype"].values()), rtol=1e-6)

# %% [markdown]
# ## Six weightings per sample
#
# The targets are the stype and sch.wide margins and the api99 total. Bounds on g = w / d are chosen to bind: the
# stratified sample needs little adjustment (its unbounded g stay within about 4% of 1), the cluster sample a lot.
#
# | method | call |
# |---|---|
# | GREG | `calibrate(distance="linear")` (survey's `calfun="linear"`; unbounded, its closed form is the regression estimator) |
# | raking | `calibrate(distance="raking")` |
# | logit (L, U) | `calibrate(distance="logit", bounds=(L, U))`: g stays strictly inside (L, U) |
# | linear, bounded | `calibrate(distance="linear", bounds=(L, U))`: g = clamp(1 + u, L, U) |
# | raking, bounded | `calibrate(distance="raking", bounds=(L, U))`: g = clamp(exp(u), L, U) |
# | raking, trimmed | `trim_weights(raking weights, d, L, U)`: g clipped to [L, U], the excess spread over the others |

# %%
BOUNDS = {"apistrat": (0.97, 1.03), "apiclus1": (0.7, 1.7)}


def calibration_matrix(api):
    """The calibration columns as calibrate builds them: one indicator per margin level, then api99."""
    names = [f"{var}={level}" for var, levels in margins.items() for level in levels] + list(totals)
    X = np.column_stack([(api[var] == level).to_numpy(float) for var, levels in margins.items() for level in levels]
                        + [api[col].to_numpy(float) for col in totals])
    T = np.array([t for levels in margins.values() for t in levels.values()] + list(totals.values()), dtype=float)
    return names, X, T


results, solutions = {}, {}
for name, api in samples.items():
    L, U = BOUNDS[name]
    d = api.pw.to_numpy()
    calls = {
        "GREG": dict(distance="linear"),
        "raking": dict(distance="raking"),
        f"logit ({L:g}, {U:g})": dict(distance="logit", bounds=(L, U)),
        "linear, bounded": dict(distance="linear", bounds=(L, U)),
        "raking, bounded": dict(distance="raking", bounds=(L, U)),
    }
    weights = {}
    for method, options in calls.items():
        start = time.perf_counter()
        sol = cpz.calibrate(api, base_weights="pw", margins=margins, totals=totals, **options).solve()
        solutions[name, method] = (sol, time.perf_counter() - start)
        weights[method] = sol.weights.to_numpy()
    trimmed, capped = cpz.trim_weights(weights["raking"], d, L, U)
    weights["raking, trimmed"] = trimmed
    results[name] = dict(d=d, weights=weights, trimmed_units=capped)

# %% [markdown]
# ## `sol.validate()`
#
# One solution's report in full, then the summary of every weighting. `survey rule` is survey's convergence
# criterion, max |achieved - target| / (1 + |target|), whose default epsilon is 1e-7 (counterpoise's calibration
# Newton stops at 1e-9). The trimmed weights are not a solution of a calibration problem, so their row is computed
# here the same way from the weights.

# %%
report = solutions["apistrat", "raking"][0].validate()
print({key: value for key, value in report.items() if key != "targets"})
report["targets"]

# %%
rows = []
for name, api in samples.items():
    _, X, T = calibration_matrix(api)
    d = results[name]["d"]
    for method, w in results[name]["weights"].items():
        achieved = X.T @ w
        g = w / d
        row = dict(sample=name, method=method, survey_rule=float(np.max(np.abs(achieved - T) / (1 + np.abs(T)))),
                   max_relative_error=float(np.max(np.abs(achieved - T) / np.abs(T))), g_min=g.min(), g_max=g.max(),
                   ess=w.sum() ** 2 / (w ** 2).sum(), sum_w=w.sum())
        if (name, method) in solutions:
            sol, seconds = solutions[name, method]
            v = sol.validate()
            assert abs(v["max_relative_error"] - row["max_relative_error"]) < 1e-12
            assert abs(v["ess"] - row["ess"]) < 1e-9 * row["ess"]
            row.update(status=v["status"], backend=sol.backend, records=v["records"],
                       design_effect=v["design_effect"], max_weight_ratio=v["max_weight_ratio"], ms=1000 * seconds)
        else:
            row.update(status="(trimmed afterwards)", backend="trim_weights", records=int((w > 0).sum()),
                       design_effect=len(w) * (w ** 2).sum() / w.sum() ** 2, max_weight_ratio=g.max())
        rows.append(row)
summary = pd.DataFrame(rows)
summary

# %%
calibrated = summary[summary.method != "raking, trimmed"]
assert (calibrated.status == "optimal").all()
print(f"calibrated weightings: survey rule at most {calibrated.survey_rule.max():.1e} (survey's epsilon: 1e-7)")
assert calibrated.survey_rule.max() < 1e-9 and calibrated.max_relative_error.max() < 1e-9
trimmed_rows = summary[summary.method == "raking, trimmed"].set_index("sample")
for name in samples:
    L, U = BOUNDS[name]
    print(f"{name}: trimming raking's g to [{L:g}, {U:g}] caps {results[name]['trimmed_units']} schools, keeps "
          f"sum(w) = {trimmed_rows.loc[name, 'sum_w']:.6f}, and leaves the totals off by up to "
          f"{trimmed_rows.loc[name, 'max_relative_error']:.2%}")
    assert results[name]["trimmed_units"] > 0 and trimmed_rows.loc[name, "max_relative_error"] > 1e-6
    assert abs(trimmed_rows.loc[name, "sum_w"] - results[name]["weights"]["raking"].sum()) < 1e-9 * pop["N"]

# %% [markdown]
# ## The distribution of g = w / d
#
# One box per weighting, each school a dot; the dashed lines are the bounds (L, U). GREG's and raking's g are close
# where the adjustment is small (apistrat) and part in the tails where it is large (apiclus1: GREG's smallest g is
# lower, raking's largest higher). The bounds pile schools up at L and U under the bounded linear and raking
# distances and under trimming, while the logit's g approach them smoothly and stay strictly inside.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
rng = np.random.default_rng(SEED)
for ax, name in zip(axes, samples):
    L, U = BOUNDS[name]
    methods = list(results[name]["weights"])
    gs = [results[name]["weights"][m] / results[name]["d"] for m in methods]
    ax.boxplot(gs, whis=(0, 100), widths=0.5, showfliers=False)
    for i, g in enumerate(gs, start=1):
        ax.plot(i + rng.uniform(-0.18, 0.18, len(g)), g, ".", ms=3, alpha=0.45, color="C0")
    ax.axhline(1.0, color="0.6", lw=0.8)
    for bound in (L, U):
        ax.axhline(bound, color="C3", ls="--", lw=1)
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("g = w / d")
    ax.set_title(f"{name} (n = {len(results[name]['d'])}), bounds ({L:g}, {U:g})")
fig.tight_layout()

# %%
for name in samples:
    L, U = BOUNDS[name]
    g = {m: w / results[name]["d"] for m, w in results[name]["weights"].items()}
    at_bounds = {m: int(np.sum((g[m] <= L + 1e-9) | (g[m] >= U - 1e-9))) for m in g}
    print(f"{name}: schools with g at or beyond L or U: {at_bounds}")
    print(f"   unbounded g: GREG [{g['GREG'].min():.4f}, {g['GREG'].max():.4f}], raking [{g['raking'].min():.4f}, "
          f"{g['raking'].max():.4f}]")
    for method in ("linear, bounded", "raking, bounded", "raking, trimmed"):
        assert g[method].min() >= L - 1e-9 and g[method].max() <= U + 1e-9 and at_bounds[method] > 0
    logit = g[f"logit ({L:g}, {U:g})"]
    assert logit.min() > L and logit.max() < U and at_bounds[f"logit ({L:g}, {U:g})"] == 0
    assert g["GREG"].min() < L or g["GREG"].max() > U          # the bounds bind: unbounded, some g lie outside
    if name == "apistrat":
        assert np.abs(g["GREG"] - g["raking"]).max() < 0.002
    else:
        assert g["GREG"].min() < g["raking"].min() and g["raking"].max() > g["GREG"].max()

# %% [markdown]
# ## Survey's calibration functions
#
# survey writes every calibrated weight as g = F(x'eta) for one vector eta (calibration_anchors.md, 4.1): linear
# F(u) = clamp(1 + u, L, U), raking F(u) = clamp(exp(u), L, U), and the logit
#
# $$F(u) = \frac{L(U-1) + U(1-L)e^{Au}}{U - 1 + (1-L)e^{Au}}, \qquad A = \frac{U-L}{(U-1)(1-L)}.$$
#
# Inverting F on the returned g gives u, and if the weights are survey's, u is *exactly* linear in the calibration
# columns x (on the schools strictly inside the bounds; at a bound the clamp only says F(x'eta) is beyond it).
# The check: regress u on x, and look at the residuals and at the schools at a bound.

# %%
def inverse(method, g, L, U):
    if method.startswith("logit"):
        A = (U - L) / ((U - 1) * (1 - L))
        return np.log((g - L) * (U - 1) / ((U - g) * (1 - L))) / A
    return np.log(g) if method.startswith("raking") else g - 1


def forward(method, u, L, U):
    if method.startswith("logit"):
        A = (U - L) / ((U - 1) * (1 - L))
        e = np.exp(A * u)
        return (L * (U - 1) + U * (1 - L) * e) / (U - 1 + (1 - L) * e)
    return np.exp(u) if method.startswith("raking") else 1 + u


fits, curves = [], {}
for name, api in samples.items():
    L, U = BOUNDS[name]
    _, X, _ = calibration_matrix(api)
    for method, w in results[name]["weights"].items():
        if method == "raking, trimmed":
            continue
        g = w / results[name]["d"]
        bounded = method.endswith("bounded")
        lo, hi = (L, U) if bounded else (-np.inf, np.inf)
        inside = (g > lo + 1e-9) & (g < hi - 1e-9)
        u = inverse(method, g, L, U)
        eta = np.linalg.lstsq(X[inside], u[inside], rcond=None)[0]
        predicted = X @ eta
        residual = np.abs(u[inside] - predicted[inside]).max() / max(np.abs(u[inside]).max(), 1e-300)
        beyond = forward(method, predicted[~inside], L, U)
        clamp_ok = bool(np.all((g[~inside] <= L + 1e-9) & (beyond <= L + 1e-7)
                               | (g[~inside] >= U - 1e-9) & (beyond >= U - 1e-7)))
        fits.append(dict(sample=name, method=method, inside=int(inside.sum()), at_bound=int((~inside).sum()),
                         relative_residual=residual, clamp_consistent=clamp_ok))
        curves[name, method] = (predicted, g)
linearity = pd.DataFrame(fits)
linearity

# %%
assert linearity.relative_residual.max() < 1e-7 and linearity.clamp_consistent.all()
print(f"u = F^-1(g) is linear in x to a relative residual of {linearity.relative_residual.max():.1e} in every "
      "weighting; every school at a bound has F(x'eta) beyond it")

name = "apiclus1"
L, U = BOUNDS[name]
fig, ax = plt.subplots(figsize=(8, 5))
for (sample, method), (predicted, g) in curves.items():
    if sample != name:
        continue
    grid = np.linspace(predicted.min() - 0.1, predicted.max() + 0.1, 300)
    line = forward(method, grid, L, U)
    if method.endswith("bounded"):
        line = np.clip(line, L, U)
    (drawn,) = ax.plot(grid, line, lw=1, alpha=0.8)
    ax.plot(predicted, g, ".", ms=5, color=drawn.get_color(), label=method)
ax.axhline(L, color="C3", ls="--", lw=0.8)
ax.axhline(U, color="C3", ls="--", lw=0.8)
ax.set_xlabel("u = x'eta (eta fitted from the returned weights)")
ax.set_ylabel("g = w / d")
ax.set_title(f"{name}: the returned g (dots) on survey's calibration functions (lines)")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## GREG against its closed form, and `rake` against `calibrate`
#
# Unbounded linear calibration is the regression estimator (survey's `regcalibrate`):
# w = d (1 + x'lambda) with lambda = (X'DX)^+ (T - X'd), the generalized inverse because the two margins share
# their total (the stype and the sch.wide indicators both sum to 1). `cpz.rake` takes survey-style margins (data
# frames with a `Freq` column, or dicts) and must give `calibrate(distance="raking")`'s weights on the same
# margins; `rake(trim=)` must give `trim_weights` applied to them.

# %%
checks = []
for name, api in samples.items():
    L, U = BOUNDS[name]
    _, X, T = calibration_matrix(api)
    d = results[name]["d"]
    lam = np.linalg.pinv(X.T @ (d[:, None] * X)) @ (T - X.T @ d)
    closed = d * (1 + X @ lam)
    greg_gap = np.abs(closed - results[name]["weights"]["GREG"]).max() / closed.max()

    survey_margins = [pd.DataFrame({"stype": list(pop["stype"]), "Freq": list(pop["stype"].values())}),
                      {"sch.wide": pop["sch.wide"]}]
    raked = cpz.rake(api, survey_margins, base_weights="pw")
    same = cpz.calibrate(api, base_weights="pw", margins=margins, distance="raking").solve()
    rake_gap = np.abs(raked.weights - same.weights).max() / same.weights.max()
    raked_trim = cpz.rake(api, survey_margins, base_weights="pw", trim=(L, U))
    by_hand, capped = cpz.trim_weights(raked.weights.to_numpy(), d, L, U)
    trim_gap = np.abs(raked_trim.weights.to_numpy() - by_hand).max() / by_hand.max()
    checks.append(dict(sample=name, greg_vs_closed_form=greg_gap, rake_vs_calibrate=rake_gap,
                       rake_trim_vs_trim_weights=trim_gap, rake_trim_capped=raked_trim.info["trimmed_units"],
                       rake_trim_status=raked_trim.status, rake_trim_message=raked_trim.message))
checks = pd.DataFrame(checks)
print(checks.drop(columns="rake_trim_message").to_string(index=False))
for message in checks.rake_trim_message:
    print(" ", message)
assert checks.greg_vs_closed_form.max() < 1e-9
assert checks.rake_vs_calibrate.max() < 1e-10 and checks.rake_trim_vs_trim_weights.max() < 1e-12

# %% [markdown]
# `rake(trim=)` reports how far the trimmed weights miss the margins, and calls them "optimal" only when that miss
# is within the post-solve check's tolerance: apistrat's margins-only raking moves g by under 1%, so nothing is
# trimmed there; apiclus1's trimmed weights miss and are "inaccurate".

# %%
strat_rake = cpz.rake(strat, margins, base_weights="pw")
moved = np.abs(strat_rake.weights / strat.pw - 1).max()
print(f"apistrat, raking to the two margins only: max |g - 1| = {moved:.4f}")
by_sample = checks.set_index("sample")
assert moved < 0.01 and by_sample.loc["apistrat", "rake_trim_capped"] == 0
assert by_sample.loc["apistrat", "rake_trim_status"] == "optimal"
assert by_sample.loc["apiclus1", "rake_trim_capped"] > 0 and by_sample.loc["apiclus1", "rake_trim_status"] == "inaccurate"

# %% [markdown]
#
# ## When the bounds cannot be met
#
# Tighten apistrat's bounds to (0.98, 1.02) and no weights reach every total: counterpoise says so before
# returning anything, with the targets that bind (survey stops with "Calibration failed" unless `force=TRUE`).

# %%
try:
    cpz.calibrate(strat, base_weights="pw", margins=margins, totals=totals, distance="raking",
                  bounds=(0.98, 1.02)).solve()
    raised = None
except cpz.InfeasibleError as error:
    raised = error
print(type(raised).__name__, ":", str(raised)[:600])
assert isinstance(raised, cpz.InfeasibleError) and "api99" in str(raised)

# %% [markdown]
# ## Estimates, and how much calibration on api99 buys
#
# The weighted mean of api00 and the total enrollment under each weighting. api00 (the 2000 API) tracks api99
# closely, so calibrating to the api99 total should pull the estimate of mean api00 towards the population's. The
# standard errors come from a with-replacement bootstrap of apistrat within its strata (n_h schools drawn from each
# stratum's n_h, design weights kept, every weighting recomputed on each replicate; it ignores the finite
# population correction, a few percent here). The bootstrap's logit uses bounds (0.5, 1.5): apistrat's (0.97, 1.03)
# leave too little room for most resamples.

# %%
estimates = []
for name, api in samples.items():
    for method, w in [("Horvitz-Thompson (d)", results[name]["d"])] + list(results[name]["weights"].items()):
        estimates.append(dict(sample=name, method=method, mean_api00=np.sum(w * api.api00) / np.sum(w),
                              total_enroll=np.sum(w * api.enroll)))
estimates = pd.DataFrame(estimates)
if truth is not None:
    estimates["error_vs_population"] = estimates.mean_api00 - truth
estimates.round(2)

# %%
# apistrat's tight bounds (0.97, 1.03) leave almost no resample feasible, so the bootstrap's logit takes (0.5, 1.5)
boot_methods = {"GREG": dict(distance="linear"), "raking": dict(distance="raking"),
                "logit (0.5, 1.5)": dict(distance="logit", bounds=(0.5, 1.5))}
rng = np.random.default_rng(SEED)
strata = [np.flatnonzero(strat.stype.to_numpy() == h) for h in pop["stype"]]
draws, failures = {m: [] for m in ["Horvitz-Thompson (d)", *boot_methods]}, {m: 0 for m in boot_methods}
start = time.perf_counter()
for _ in range(REPLICATES):
    rows = np.concatenate([rng.choice(index, size=len(index), replace=True) for index in strata])
    replicate = strat.iloc[rows].reset_index(drop=True)
    draws["Horvitz-Thompson (d)"].append(np.sum(replicate.pw * replicate.api00) / replicate.pw.sum())
    for method, options in boot_methods.items():
        try:
            sol = cpz.calibrate(replicate, base_weights="pw", margins=margins, totals=totals, **options).solve()
        except (cpz.InfeasibleError, cpz.SolverError, cpz.InputError):
            failures[method] += 1           # e.g. tight bounds that a resample cannot meet
            continue
        w = sol.weights.to_numpy()
        draws[method].append(np.sum(w * replicate.api00) / w.sum())
seconds = time.perf_counter() - start
bootstrap = pd.DataFrame([dict(method=m, replicates=len(v), failed=failures.get(m, 0), mean=np.mean(v),
                               se=np.std(v, ddof=1)) for m, v in draws.items()])
bootstrap["se / HT se"] = bootstrap.se / bootstrap.se.iloc[0]
print(f"{REPLICATES} replicates in {seconds:.1f} s")
bootstrap.round(3)

# %%
ht_se = bootstrap.se.iloc[0]
greg_se = float(bootstrap.set_index("method").loc["GREG", "se"])
raking_se = float(bootstrap.set_index("method").loc["raking", "se"])
logit_se = float(bootstrap.set_index("method").loc["logit (0.5, 1.5)", "se"])
print(f"bootstrap SE of mean api00: HT {ht_se:.2f}, GREG {greg_se:.2f}, raking {raking_se:.2f}, "
      f"logit {logit_se:.2f}; failed replicates {failures}")
assert greg_se < 0.5 * ht_se and raking_se < 0.5 * ht_se and logit_se < 0.5 * ht_se
assert sum(failures.values()) <= 0.05 * REPLICATES
if truth is not None:
    strat_estimates = estimates[estimates["sample"] == "apistrat"].set_index("method")
    ht_error = abs(strat_estimates.loc["Horvitz-Thompson (d)", "error_vs_population"])
    greg_error = abs(strat_estimates.loc["GREG", "error_vs_population"])
    print(f"apistrat, |estimate - population mean of api00|: HT {ht_error:.2f}, GREG {greg_error:.2f}")
    assert greg_error < ht_error

fig, ax = plt.subplots(figsize=(8, 4))
bins = np.linspace(min(min(v) for v in draws.values()), max(max(v) for v in draws.values()), 40)
for method, values in draws.items():
    ax.hist(values, bins=bins, alpha=0.5, label=f"{method} (SE {np.std(values, ddof=1):.1f})")
if truth is not None:
    ax.axvline(truth, color="k", lw=1.5, label=f"population mean {truth:.1f}")
ax.set_xlabel("estimated mean of api00")
ax.set_ylabel("bootstrap replicates")
ax.set_title(f"apistrat: {REPLICATES} stratified bootstrap replicates")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Design-based SEs: the linearization and the jackknife beside this bootstrap
#
# `cpz.SurveyDesign` computes the SEs that R's survey package reports, without resampling: the stratified
# linearization with the finite population correction, on the calibration residuals for a calibrated design (survey's
# svyrecvar), and the stratified jackknife (JKn) that recalibrates every replicate. They should sit within a few
# percent of the bootstrap SEs above, which differ by construction: the bootstrap ignores the fpc (2-7% of each
# stratum is sampled, which lowers the design SEs) and its n_h draws of n_h schools understate the variance by the
# factor (n_h - 1) / n_h (which lowers the bootstrap's).

# %%
design = cpz.SurveyDesign(strat, weights="pw", strata="stype", fpc="fpc")
jackknife = design.replicates("jkn")
rows = [dict(method="Horvitz-Thompson (d)", linearization=design.mean("api00").se,
             jackknife=jackknife.mean("api00").se)]
for method, options in boot_methods.items():
    calibrated = design.calibrate(margins=margins, totals=totals, **options)
    recalibrated = jackknife.calibrate(margins=margins, totals=totals, **options)
    assert recalibrated.replicate_status["converged"].all()
    assert calibrated.total("api99").se < 1e-6 * pop["api99"]          # a calibration variable: SE 0
    rows.append(dict(method=method, linearization=calibrated.mean("api00").se, jackknife=recalibrated.mean("api00").se))
design_se = pd.DataFrame(rows).merge(bootstrap[["method", "se"]].rename(columns={"se": "bootstrap"}), on="method")
assert abs(design_se.linearization.iloc[0] - 9.4089) < 5e-5                  # survey: svymean(~api00, dstrat)
assert (design_se.linearization.iloc[1:] < 0.5 * design_se.linearization.iloc[0]).all()
design_se.round(3)

# %% [markdown]
# ## Summary
#
# - Every calibrated weighting meets the population totals to rounding, far inside survey's convergence rule
#   (epsilon 1e-7), and `sol.validate()` reports the same relative errors and ESS that the weights give by hand.
# - The returned g are survey's: F^-1(g) is linear in the calibration columns for the linear, raking and logit
#   functions, the bounded linear and raking weights are those functions clamped at (L, U), and the logit keeps g
#   strictly inside its bounds. Unbounded linear calibration is the regression estimator's closed form.
# - `rake` with survey-style `Freq` margins gives `calibrate(distance="raking")`'s weights; trimming (`trim_weights`,
#   `rake(trim=)`) caps g, keeps sum(w) and leaves the totals off by the amount it reports.
# - Bounds that no weights can meet raise `InfeasibleError` naming the binding targets.
# - Calibrating to the api99 total cuts the bootstrap standard error of the mean of api00 to well under half the
#   Horvitz-Thompson one (the numbers above), and the design-based SEs (linearization on the calibration residuals,
#   a jackknife that recalibrates every replicate) agree with the bootstrap without resampling.
