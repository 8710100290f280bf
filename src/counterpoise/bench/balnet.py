"""The balnet benchmark, a plug-in of `kinds`: a study file with `kind = "balnet"` (see problems/balnet.toml).

    [data]                        # a generator in counterpoise.datasets, one table per setting (not crossed)
    generator = "confounded"
    seed = 1
    settings = [{n = 10000, p = 50}, {n = 100000, p = 100}]
    [fit]                         # balnet() arguments
    target = "ATE"
    [compare]
    binomial = true               # adelie's built-in binomial GLM: same standardized X, path length, settings
    cvxpy_points = 1              # path points per arm solved by cvxpy + CLARABEL (0: none)
    cvxpy_max_cells = 20000000    # skip cvxpy where n * p exceeds this
    [truth]                       # optional: outcome column and the true ATE (or ATT)
    outcome = "Y"
    ate = 1.0

One row per setting x arm: the path length, the time of balnet() (adelie's path plus the per-lambda diagnostics)
and of adelie's path alone, adelie's built-in binomial path on the same X and settings (the ratio is the Python
GLM's cost together with the two losses' different work), cvxpy's time per lambda against adelie's, the largest
propensity difference there, max |SMD| and ESS% along the path, and the effect estimate at the path's end.
"""

from __future__ import annotations

import inspect
import sys
import time

import numpy as np
import pandas as pd

from .. import datasets, estimate
from ..errors import InputError
from ..propensity import balnet
from ..propensity.adelie_path import load_adelie
from ..propensity.reference import compare_primal, standardized
from .report import fmt, save

_KEYS = {"name", "description", "kind", "data", "fit", "compare", "truth"}
#: Where along a path the table reports max |SMD| and ESS%: fractions of the converged path.
PATH_POINTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def check_study(raw, source, folder) -> dict:
    """Validate a balnet study table read from TOML (it names no files, so `folder` is not used)."""
    where = f"study {source}"
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InputError(f"{where}: unknown top-level keys {unknown}; a balnet study has {sorted(_KEYS)}")
    data = dict(raw.get("data", {}))
    generator = getattr(datasets, data.pop("generator", ""), None)
    if not inspect.isfunction(generator):
        raise InputError(f"{where} [data]: 'generator' must name a function in counterpoise.datasets")
    seed = data.pop("seed", 0)
    settings = data.pop("settings", None)
    if not isinstance(settings, list) or not settings or not all(isinstance(s, dict) for s in settings):
        raise InputError(f"{where} [data]: 'settings' must be a non-empty list of tables, e.g. [{{n = 10000, p = 50}}]")
    fit = dict(raw.get("fit", {}))
    if "target" in fit and fit["target"] not in ("ATE", "ATT", "treated", "control"):
        raise InputError(f"{where} [fit]: unknown target {fit['target']!r}")
    compare = dict(raw.get("compare", {}))
    return dict(name=raw.get("name", "balnet"), description=raw.get("description", ""), generator=generator,
                seed=seed, fixed=data, settings=settings, fit=fit, binomial=bool(compare.get("binomial", True)),
                cvxpy_points=int(compare.get("cvxpy_points", 1)),
                cvxpy_max_cells=int(compare.get("cvxpy_max_cells", 20_000_000)), truth=raw.get("truth"))


def binomial_seconds(fit, arm) -> float:
    """adelie's path with its built-in binomial GLM (logistic likelihood) on the arm indicator: the fit's
    standardized X, groups, penalty, path length and ratio, and solver settings (`adelie_path.solve_path`'s).
    The two losses take their own paths, so the ratio of the times is the Python GLM's cost plus the difference
    in the losses' work, not the callbacks' cost alone."""
    ad = load_adelie()
    order = np.concatenate([g for _, g in fit.groups])
    Xs = np.asfortranarray(standardized(fit, arm)[:, order])
    starts = np.cumsum([0] + [len(g) for _, g in fit.groups[:-1]])
    glm = ad.glm.binomial(y=np.ascontiguousarray(arm.y), weights=fit.sample_weights / fit.sample_weights.sum())
    settings = fit.call.arguments
    start = time.perf_counter()
    ad.grpnet(Xs, glm, groups=starts, alpha=fit.alpha, penalty=fit.penalty, lmda_path_size=arm.path.requested,
              min_ratio=arm.lambdas[-1] / arm.lambdas[0] if len(arm.lambdas) > 1 else settings["lambda_min_ratio"],
              irls_max_iters=10_000, irls_tol=settings["tol"], tol=settings["tol"], max_iters=settings["max_iter"],
              newton_tol=1e-12, newton_max_iters=1000, adev_tol=0.9, ddev_tol=0.0, early_exit=False,
              intercept=True, progress_bar=False, n_threads=settings["n_threads"])
    return time.perf_counter() - start


def run(study, out_dir="results", quiet=False, sizes=None) -> pd.DataFrame:
    """Run a checked balnet study; write <out_dir>/<name>.csv and .md unless out_dir is None."""
    if sizes is not None:
        raise InputError("a balnet study lists its (n, p) settings in the file; sizes= and replications= do not "
                         "apply")
    rows = []
    load_adelie()   # imported once before the clocks start (about 2 s)
    for k, setting in enumerate(study["settings"]):
        data = study["generator"](**study["fixed"], **setting, seed=study["seed"])
        start = time.perf_counter()
        fit = balnet(data, **study["fit"])
        fit_seconds = time.perf_counter() - start
        effect = _effect(study, data, fit)
        for arm in fit.arms.values():
            row = dict(study=study["name"], setting=", ".join(f"{key}={v}" for key, v in setting.items()),
                       n=len(data), p=len(fit.names), arm=arm.name, path=len(arm.lambdas),
                       requested=arm.path.requested, stopped=arm.path.stopped, balnet_s=fit_seconds,
                       adelie_path_s=arm.path.seconds, **effect)
            if study["binomial"]:
                row["binomial_path_s"] = binomial_seconds(fit, arm)
            if study["cvxpy_points"] and len(data) * len(fit.names) <= study["cvxpy_max_cells"]:
                row.update(_cvxpy(fit, arm, study["cvxpy_points"]))
            for q in PATH_POINTS:
                i = round(q * (len(arm.lambdas) - 1))
                entry = arm.table.iloc[i]
                row[f"max_smd@{q:.2f}"] = entry["max_abs_smd"]
                row[f"ess_pct@{q:.2f}"] = entry["ess_pct"]
                row[f"lambda@{q:.2f}"] = entry["lambda"]
            rows.append(row)
            if not quiet:
                print(f"[{k + 1}/{len(study['settings'])}] {row['setting']} {arm.name}: path {row['path']}, "
                      f"balnet {fit_seconds:.2f} s", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    df.attrs["kind"] = "balnet"
    if out_dir is not None:
        save(df, out_dir, study["name"], study["description"], markdown_table(df))
    return df


def _effect(study, data, fit) -> dict:
    truth = study["truth"]
    if not truth:
        return {}
    estimator = {"ATE": estimate.ate, "ATT": estimate.att}.get(fit.target)
    if estimator is None:
        return {}
    value = estimator(data, treatment=fit.call.arguments["treatment"], outcome=truth["outcome"], weights=fit.weights())
    return dict(estimate=value.estimate, error=value.estimate - truth.get(fit.target.lower(), np.nan))


def _cvxpy(fit, arm, points) -> dict:
    """cvxpy + CLARABEL at `points` evenly spaced inner path points: mean seconds per lambda, worst propensity gap."""
    L = len(arm.lambdas)
    picks = sorted({int(round(x)) for x in np.linspace(0, L - 1, points + 2)[1:-1]}) or [0]
    results = [compare_primal(fit, arm, arm.lambdas[i]) for i in picks]
    seconds = float(np.mean([r["primal_seconds"] for r in results]))
    return dict(cvxpy_s_per_lambda=seconds, adelie_s_per_lambda=arm.path.seconds / L,
                cvxpy_status=",".join(sorted({r["primal_status"] for r in results})),
                max_abs_diff_propensity=max(r["max_abs_diff_propensity"] for r in results))


def markdown_table(df) -> str:
    """Two tables: time (adelie against its binomial GLM and against cvxpy per lambda) and the path's balance."""
    lines = ["| setting | arm | path | balnet s | adelie path s | binomial path s | ratio | cvxpy s/lambda | "
             "adelie s/lambda | speed-up per lambda | max abs d propensity |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in df.to_dict("records"):
        binomial, cvx = r.get("binomial_path_s", np.nan), r.get("cvxpy_s_per_lambda", np.nan)
        per = r.get("adelie_s_per_lambda", r["adelie_path_s"] / r["path"])
        lines.append(f"| {r['setting']} | {r['arm']} | {r['path']}/{r['requested']} | {r['balnet_s']:.2f} | "
                     f"{r['adelie_path_s']:.2f} | {fmt(binomial, '.2f')} | {fmt(r['adelie_path_s'] / binomial, '.2f')}"
                     f" | {fmt(cvx, '.2f')} | {per:.4f} | {fmt(cvx / per, '.0f')} | "
                     f"{fmt(r.get('max_abs_diff_propensity', np.nan), '.1e')} |")
    lines += ["", "Along the path (fraction of the converged path: lambda / max |SMD| / ESS%):", "",
              "| setting | arm | " + " | ".join(f"{q:.2f}" for q in PATH_POINTS) + " | estimate error |",
              "|---|---|" + "---:|" * (len(PATH_POINTS) + 1)]
    for r in df.to_dict("records"):
        cells = [f"{r[f'lambda@{q:.2f}']:.3g} / {r[f'max_smd@{q:.2f}']:.3g} / {r[f'ess_pct@{q:.2f}']:.0f}%"
                 for q in PATH_POINTS]
        lines.append(f"| {r['setting']} | {r['arm']} | " + " | ".join(cells) + f" | {fmt(r.get('error'), '.3f')} |")
    return "\n".join(lines)
