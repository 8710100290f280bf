"""Running a study of the default kind: its cells (part x data setting x replication), each a task that generates
its data from its seed and runs every [[run]] of its part on it, one row per run.

A cell builds each problem variant (a run's `problem` overrides) once and solves it with every run that uses it,
with raise_on_failure=False, timing the build and the solve; a peer run hands the data to the peer's script in its
own environment (`peers`) and its weights are checked like a backend's. A run whose backend does not understand
the problem is recorded with status "unsupported"; a cvxpy solver that takes a time limit gets the study's.
Every cell runs with one BLAS thread, on this machine or on a Dask worker (`execution`), so the two give the same
numbers (all but the times, and a solve that the time limit stops, which stops where the clock says). With an
output folder each cell's rows are stored as they finish (`store`), and a study run again computes only the
cells it does not find.
`objective_gap` is (objective - best) / max(|best|, 1e-12), with best the smallest objective among the runs of the
cell and problem variant whose status is "optimal" (NaN when none is); it is negative for a run whose weights
violate the constraints and so reach below the optimum.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
import warnings
from importlib import resources

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .. import datasets
from ..backends.cvxpy_backend import DEFAULT_SOLVER, TIME_LIMIT_OPTIONS
from ..errors import CounterpoiseError, InputError, UnsupportedProblem
from ..problem import CHECK_TOLERANCE
from ..progress import bar
from . import execution, peers
from .report import NOT_RUN, write_results
from .schema import EFFECTS, FAMILIES, estimand
from .store import CellStore, cell_id

#: Columns of the frame `run` returns, after the crossed data arguments (which follow "setting").
COLUMNS = [
    "study", "part", "setting", "replication", "seed", "run", "variant", "backend", "solver", "n_rows", "n_weights",
    "solver_status", "status", "build_time", "solve_time", "compile_time", "solver_time", "iterations", "objective",
    "objective_gap", "max_violation", "ess", "max_abs_smd", "min_weight", "estimand", "estimate", "std_error",
    "error", "covered", "diagnostics_failed", "message",
]

#: Columns that measure time: they differ between two runs of the same study; every other column does not.
TIMES = ["build_time", "solve_time", "compile_time", "solver_time"]


def _settings(part, sizes):
    """The data settings: one dict of generator arguments per combination of the crossed (list-valued) ones."""
    args = dict(part["data_args"])
    crossed = list(part["crossed"])
    if sizes is not None:
        if "n" not in inspect.signature(getattr(datasets, part["generator"])).parameters:
            raise InputError(f"sizes= overrides the generator's 'n', and {part['generator']!r} has no argument n")
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


def cells(study, sizes=None, replications=None) -> list[dict]:
    """The study's cells in order: dicts with the part, setting (label, crossed values, generator arguments),
    replication, seed and id (see `store.cell_id`)."""
    found = []
    for part in study["parts"]:
        reps = part["replications"] if replications is None else replications
        if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
            raise InputError(f"replications must be a positive integer, got {replications!r}")
        for k, (label, values, args) in enumerate(_settings(part, sizes)):
            for r in range(int(reps)):
                cell = dict(study=study["name"], part=part, index=k, setting=label, values=values, args=args,
                            replication=r, seed=part["seed"] + r, time_limit=study["time_limit"])
                found.append({**cell, "id": cell_id(cell)})
    return found


def run_cell(cell) -> list[dict]:
    """Every run of the cell's part on the cell's data (generated here, from its seed), with one BLAS thread."""
    part = cell["part"]
    with threadpool_limits(limits=1):
        data = getattr(datasets, part["generator"])(**cell["args"], seed=cell["seed"])
        built = {}
        rows = [_warnings_in_message(_one_run, cell, one, data, built) for one in part["runs"]]
    variants = {}
    for row in rows:
        variants.setdefault(row["variant"], []).append(row)
    for group in variants.values():
        _objective_gaps(group)
    return rows


def _safe(compute, problems, what):
    """compute(), or NaN when the weights are unusable for it: the reason is appended to `problems`."""
    try:
        return compute()
    except (CounterpoiseError, ValueError, ZeroDivisionError, FloatingPointError) as exc:
        problems.append(f"{what} not computed: {' '.join(str(exc).split())}")
        return float("nan")


def _options(run, time_limit):
    """The run's solve() options, with the study's time limit for a cvxpy solver that takes one."""
    key = TIME_LIMIT_OPTIONS.get((run["solver"] or DEFAULT_SOLVER).upper()) if run["backend"] == "cvxpy" else None
    return run["options"] if key is None else {key: time_limit, **run["options"]}


def _warnings_in_message(function, *args):
    """function(*args), a row, with the warnings raised meanwhile appended to its message instead of printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = function(*args)
    said = list(dict.fromkeys(f"{w.category.__name__}: {' '.join(str(w.message).split())}" for w in caught))
    if said:
        row["message"] = "; ".join(filter(None, [row.get("message", ""), *said]))
    return row


def _one_run(cell, run, data, built):
    """One run on the cell's data: its row. `built` holds the problem of each variant, built on first use."""
    part = cell["part"]
    variant = ", ".join(f"{k}={v}" for k, v in run["problem"].items())
    row = dict(study=cell["study"], part=part["part"], setting=cell["setting"], **cell["values"],
               replication=cell["replication"], seed=cell["seed"], run=run["label"], variant=variant,
               backend=run["backend"], solver=run["solver"] or "", n_rows=len(data))
    target = estimand(FAMILIES[part["family"]], part["problem"])
    truth = part["truth"]
    row["estimand"] = target if truth is not None else ""
    if run["max_n"] is not None and len(data) > run["max_n"]:
        return {**row, "status": "skipped", "message": f"skipped: {len(data)} rows > max_n = {run['max_n']}"}
    if run["max_replications"] is not None and cell["replication"] >= run["max_replications"]:
        return {**row, "status": "skipped", "message": f"skipped: replication {cell['replication']} >= "
                                                       f"max_replications = {run['max_replications']}"}
    if variant not in built:
        start = time.perf_counter()
        built[variant] = (FAMILIES[part["family"]](data, **{**part["problem"], **run["problem"]}),
                          time.perf_counter() - start)
    problem, row["build_time"] = built[variant]
    row["n_weights"] = problem.n
    start = time.perf_counter()
    try:
        if run["peer"]:
            sol, why = _peer_solution(run, part, data, problem)
            if sol is None:
                return {**row, "status": "skipped", "message": f"skipped: {why}"}
        else:
            sol = problem.solve(backend=run["backend"], solver=run["solver"], raise_on_failure=False,
                                **_options(run, cell["time_limit"]))
    except UnsupportedProblem as exc:
        return {**row, "status": "unsupported", "message": " ".join(str(exc).split())}
    except CounterpoiseError as exc:
        row.update(solve_time=time.perf_counter() - start, status="failed", message=" ".join(str(exc).split()))
        return row
    row["solve_time"] = sol.solve_time if run["peer"] else time.perf_counter() - start
    weights = sol.weights.to_numpy()
    row.update(solver_status=sol.solver_status, status=sol.status, solver=sol.solver,
               compile_time=sol.info.get("compile_time"), solver_time=sol.info.get("solver_time"),
               iterations=sol.iterations, objective=sol.objective)
    if not np.all(np.isfinite(weights)):
        row["message"] = f"{sol.message}; no finite weights"
        return row
    problems = []
    row.update(max_violation=sol.max_violation, min_weight=float(np.min(weights)),
               ess=_safe(lambda: float(np.min(sol.ess)), problems, "ESS"))
    if sol.design is not None:
        row["max_abs_smd"] = _safe(lambda: sol.max_abs_smd, problems, "max |SMD|")
    if truth is not None and sol.status != "optimal":
        problems.append(f"no {target} estimate: status {sol.status!r}")
    elif truth is not None:
        effect = _safe(lambda: EFFECTS[target](data, treatment=part["problem"].get("treatment"),
                                               outcome=truth["outcome"], weights=sol, se=run["se"],
                                               n_boot=run["n_boot"], seed=cell["seed"], progress=False,
                                               augmented=run["augmented"]),
                       problems, target)
        if not (isinstance(effect, float) and math.isnan(effect)):
            true_value = truth.get(target.lower())
            row.update(estimate=effect.estimate, std_error=effect.std_error,
                       error=effect.estimate - true_value if true_value is not None else float("nan"),
                       covered=effect.ci_lower <= true_value <= effect.ci_upper if true_value is not None else None)
    row["message"] = "; ".join([sol.message] + problems)
    row["diagnostics_failed"] = bool(problems)
    return row


def _peer_solution(run, part, data, problem):
    """Run a peer on this data and check its weights like any backend's: (solution, ""), or (None, why not) when
    its interpreter or its script is not here."""
    python, why = peers.interpreter(run["python"])
    if python is None:
        return None, why
    if not run["script"].is_file():
        return None, f"no peer script {str(run['script'])!r}"
    margins = part["problem"].get("margins") or data.attrs.get("margins")
    with resources.as_file(run["script"]) as script:
        raw = peers.run_balance_rake(python, script, data, margins, problem.design.base_weights)
    return problem.checked(raw, "peer", CHECK_TOLERANCE), ""


def run(study, out_dir="results", quiet=False, sizes=None, replications=None, workers=None, scheduler=None,
        force=False) -> pd.DataFrame:
    """Run a checked study of the default kind (see `counterpoise.bench.run_study`)."""
    todo = cells(study, sizes, replications)
    store = None if out_dir is None else CellStore(out_dir, study["name"])
    found = {} if store is None or force else store.read([cell["id"] for cell in todo])
    missing = [cell for cell in todo if cell["id"] not in found]
    failures = 0
    progress = bar(execution.completed(run_cell, missing, workers=workers, scheduler=scheduler),
                   f"{study['name']}: cells", progress=not quiet, total=len(missing))
    for cell, rows in progress:
        found[cell["id"]] = rows
        if store is not None:
            store.write(cell["id"], rows)
        failures += sum(row["status"] not in ("optimal", *NOT_RUN) for row in rows)
        # refreshed at once: a cell is far slower than drawing the bar, and unrefreshed the count only showed when
        # tqdm's own clock next redrew, never when every cell finished within its 0.1 s interval
        progress.set_postfix_str(f"{failures} runs not optimal", refresh=True)
    df = frame([row for cell in todo for row in found[cell["id"]]])
    df.attrs["time_limit"] = study["time_limit"]
    if store is not None:
        write_results(df, out_dir, study["name"], description=study["description"], time_limit=study["time_limit"],
                      resumed=len(todo) - len(missing))
    return df


def frame(rows) -> pd.DataFrame:
    """The rows of a study's runs as its tidy frame: the columns of `COLUMNS`, the crossed data arguments after
    "setting", text columns without NaN."""
    df = pd.DataFrame(rows)
    crossed = [c for c in df.columns if c not in COLUMNS]
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    df = df[COLUMNS[:3] + crossed + COLUMNS[3:]]
    for column in ("part", "estimand", "message", "solver", "variant", "solver_status"):
        df[column] = df[column].fillna("").astype(str)
    df["diagnostics_failed"] = df["diagnostics_failed"].astype("boolean").fillna(False).astype(bool)
    return df


def _objective_gaps(rows):
    """Set each row's objective_gap against the best optimal objective among `rows` (one cell, one variant)."""
    best = [row["objective"] for row in rows if row.get("status") == "optimal"]
    f_best = min(best) if best else float("nan")
    for row in rows:
        objective = row.get("objective", float("nan"))
        row["objective_gap"] = (objective - f_best) / max(abs(f_best), 1e-12) if best else float("nan")
