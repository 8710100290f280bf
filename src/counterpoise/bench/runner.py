"""Running a study of the default kind: every data setting x replication x [[run]], one row each.

For every data setting x replication x run, `run` builds the problem and solves it with raise_on_failure=False,
timing both, and records one row of a tidy DataFrame (see `COLUMNS`); a peer run hands the data to the peer's
script in its own environment (`peers`) and checks the weights it returns like a backend's.
`objective_gap` is (objective - best) / max(|best|, 1e-12), with best the smallest objective among the runs of the
same data setting, replication and problem variant (a run's `problem` overrides) whose status is "optimal" (NaN
when none is); it is negative for a run whose weights violate the constraints and so reach below the optimum.
"""

from __future__ import annotations

import inspect
import itertools
import math
import sys
import time
from importlib import resources

import numpy as np
import pandas as pd

from .. import datasets
from ..errors import CounterpoiseError, InputError
from ..problem import CHECK_TOLERANCE
from . import peers
from .report import write_results
from .schema import EFFECTS, FAMILIES, estimand

#: Columns of the frame `run` returns, after the crossed data arguments (which follow "setting").
COLUMNS = [
    "study", "setting", "replication", "seed", "run", "variant", "backend", "solver", "n_rows", "n_weights", "status",
    "build_time", "solve_time", "compile_time", "solver_time", "iterations", "objective", "objective_gap",
    "max_violation", "ess", "max_abs_smd", "min_weight", "estimand", "estimate", "std_error", "error",
    "diagnostics_failed", "message",
]


def _settings(study, sizes):
    """The data settings: one dict of generator arguments per combination of the crossed (list-valued) ones."""
    args = dict(study["data_args"])
    crossed = list(study["crossed"])
    if sizes is not None:
        if "n" not in inspect.signature(getattr(datasets, study["generator"])).parameters:
            raise InputError(f"sizes= overrides the generator's 'n', and {study['generator']!r} has no argument n")
        sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2 for s in sizes):
            raise InputError(f"sizes must be integers >= 2, got {sizes!r}")
        args["n"] = [int(s) for s in sizes]
        if "n" not in crossed:
            crossed.append("n")
    lists = [args[k] for k in crossed]
    for combo in itertools.product(*lists):
        values = dict(zip(crossed, combo))
        label = ", ".join(f"{k}={v}" for k, v in values.items()) or "default"
        yield label, values, {**args, **values}


def _safe(compute, problems, what):
    """compute(), or NaN when the weights are unusable for it: the reason is appended to `problems`."""
    try:
        return compute()
    except (CounterpoiseError, ValueError, ZeroDivisionError, FloatingPointError) as exc:
        problems.append(f"{what} not computed: {' '.join(str(exc).split())}")
        return float("nan")


def _one_run(study, run, data, label, values, replication, seed):
    row = dict(study=study["name"], setting=label, **values, replication=replication, seed=seed, run=run["label"],
               variant=", ".join(f"{k}={v}" for k, v in run["problem"].items()), backend=run["backend"],
               solver=run["solver"] or "", n_rows=len(data))
    target = estimand(FAMILIES[study["family"]], study["problem"])
    truth = study["truth"]
    row["estimand"] = target if truth is not None else ""
    if run["max_n"] is not None and len(data) > run["max_n"]:
        return {**row, "status": "skipped", "message": f"skipped: {len(data)} rows > max_n = {run['max_n']}"}
    start = time.perf_counter()
    problem = FAMILIES[study["family"]](data, **{**study["problem"], **run["problem"]})
    row["build_time"] = time.perf_counter() - start
    row["n_weights"] = problem.n
    start = time.perf_counter()
    try:
        if run["peer"]:
            sol, why = _peer_solution(run, study, data, problem)
            if sol is None:
                return {**row, "status": "skipped", "message": f"skipped: {why}"}
        else:
            sol = problem.solve(backend=run["backend"], solver=run["solver"], raise_on_failure=False,
                                **run["options"])
    except CounterpoiseError as exc:
        row.update(solve_time=time.perf_counter() - start, status="failed", message=" ".join(str(exc).split()))
        return row
    row["solve_time"] = sol.solve_time if run["peer"] else time.perf_counter() - start
    weights = sol.weights.to_numpy()
    finite = bool(np.all(np.isfinite(weights)))
    row.update(status=sol.status, solver=sol.solver, compile_time=sol.info.get("compile_time"),
               solver_time=sol.info.get("solver_time"), iterations=sol.iterations, objective=sol.objective)
    if not finite:
        row["message"] = f"{sol.message}; no finite weights"
        return row
    problems = []
    row.update(max_violation=sol.max_violation, min_weight=float(np.min(weights)),
               ess=_safe(lambda: float(np.min(sol.ess)), problems, "ESS"))
    if sol.design is not None:
        row["max_abs_smd"] = _safe(lambda: sol.max_abs_smd, problems, "max |SMD|")
    if truth is not None:
        effect = _safe(lambda: EFFECTS[target](data, treatment=study["problem"].get("treatment"),
                                               outcome=truth["outcome"], weights=sol), problems, target)
        if not (isinstance(effect, float) and math.isnan(effect)):
            true_value = truth.get(target.lower())
            row.update(estimate=effect.estimate, std_error=effect.std_error,
                       error=effect.estimate - true_value if true_value is not None else float("nan"))
    row["message"] = "; ".join([sol.message] + problems)
    row["diagnostics_failed"] = bool(problems)
    return row


def _peer_solution(run, study, data, problem):
    """Run a peer on this data and check its weights like any backend's: (solution, ""), or (None, why not) when
    its interpreter or its script is not here."""
    python, why = peers.interpreter(run["python"])
    if python is None:
        return None, why
    if not run["script"].is_file():
        return None, f"no peer script {str(run['script'])!r}"
    margins = study["problem"].get("margins") or data.attrs.get("margins")
    with resources.as_file(run["script"]) as script:
        raw = peers.run_balance_rake(python, script, data, margins, problem.design.base_weights)
    return problem.checked(raw, "peer", CHECK_TOLERANCE), ""


def run(study, out_dir="results", quiet=False, sizes=None, replications=None) -> pd.DataFrame:
    """Run a checked study of the default kind (see `counterpoise.bench.run_study`)."""
    reps = study["replications"] if replications is None else replications
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise InputError(f"replications must be a positive integer, got {replications!r}")
    generator = getattr(datasets, study["generator"])
    settings = list(_settings(study, sizes))
    total = len(settings) * reps * len(study["runs"])
    rows, done = [], 0
    for label, values, args in settings:
        for r in range(int(reps)):
            seed = study["seed"] + r
            data = generator(**args, seed=seed)
            for one in study["runs"]:
                row = _one_run(study, one, data, label, values, r, seed)
                rows.append(row)
                done += 1
                if not quiet:
                    seconds = row.get("build_time", 0.0) + row.get("solve_time", 0.0)
                    print(f"[{done}/{total}] {label}, rep {r} | {one['label']} | {row['status']} | {seconds:.2f} s",
                          file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    crossed = [c for c in df.columns if c not in COLUMNS]
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    df = df[COLUMNS[:2] + crossed + COLUMNS[2:]]
    for column in ("estimand", "message", "solver", "variant"):
        df[column] = df[column].fillna("")
    df["diagnostics_failed"] = df["diagnostics_failed"].astype("boolean").fillna(False).astype(bool)
    df["objective_gap"] = _objective_gaps(df)
    if out_dir is not None:
        write_results(df, out_dir, study["name"], description=study["description"])
    return df


def _objective_gaps(df) -> pd.Series:
    gaps = pd.Series(np.nan, index=df.index, dtype=float)
    for _, group in df.groupby(["setting", "replication", "variant"], sort=False):
        best = group.loc[group["status"] == "optimal", "objective"].astype(float)
        if best.empty:
            continue
        f_best = best.min()
        gaps[group.index] = (group["objective"].astype(float) - f_best) / max(abs(f_best), 1e-12)
    return gaps
