"""Benchmark studies: one TOML file says which data, which weighting problem and which backends/solvers to compare.

    from counterpoise import bench
    df = bench.run_study("sbw-solvers", out_dir="results")      # a shipped study, or a path to a .toml file

A study file (see problems/README.md at the repository root, and the shipped problems/*.toml):

    name = "sbw-solvers"
    description = "..."

    [data]                       # a generator in counterpoise.datasets and its arguments
    generator = "kim2023"
    n = [2000, 10000]            # list-valued arguments are crossed: one data setting per combination
    overlap = ["weak"]
    seed = 1                     # replication r (0, 1, ...) draws its data with seed + r
    replications = 1

    [problem]                    # a family builder in counterpoise and its keyword arguments
    family = "sbw"
    treatment = "A"
    covariates = ["X1", "X2"]
    estimand = "ATT"
    delta = 0.02

    [[run]]                      # one table per backend/solver to compare
    backend = "cvxpy"
    solver = "CLARABEL"          # optional (the backend's default otherwise)
    problem = { distance = "linear" }   # optional: builder arguments that override [problem] for this run
    label = "clarabel"           # optional (backend/solver otherwise)
    max_n = 100000               # optional: skip data with more rows than this
    [run.options]                # optional: keyword arguments for solve()
    max_iter = 200

    [truth]                      # optional: the outcome column and the true effect, named by the estimand
    outcome = "Y"
    att = 0.0

A [[run]] may instead name a peer method run in its own environment (`peer`, `python`, `script`; see `peers`): its
weights are checked like a backend's. A study with `kind = "balnet"` benchmarks balnet's paths (`bench_balnet`).

For every data setting x replication x run, `run_study` builds the problem and solves it with
raise_on_failure=False, timing both, and records one row of a tidy DataFrame (see `COLUMNS`).
`objective_gap` is (objective - best) / max(|best|, 1e-12), with best the smallest objective among the runs of the
same data setting, replication and problem variant (a run's `problem` overrides) whose status is "optimal" (NaN
when none is); it is negative for a run whose weights violate the constraints and so reach below the optimum. `write_results` writes the frame as CSV and a
markdown summary per data setting x run.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import platform
import sys
import time
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from . import datasets, estimate, families
from .backends import BACKENDS
from .errors import CounterpoiseError, InputError
from .problem import CHECK_TOLERANCE

#: The family builders a study may name.
FAMILIES = {name: getattr(families, name) for name in ("sbw", "kernel_sbw", "entropy_balance", "calibrate",
                                                        "sparse_calibrate")}

#: Estimands for which a [truth] table gives an effect to compare with, and the estimator of each.
EFFECTS = {"ATT": estimate.att, "ATE": estimate.ate}

_TOP_KEYS = {"name", "description", "data", "problem", "run", "truth"}
_RUN_KEYS = {"backend", "solver", "options", "max_n", "label", "problem", "peer", "python", "script"}
_DATA_RESERVED = {"generator", "seed", "replications"}

#: Columns of the frame `run_study` returns, after the crossed data arguments (which follow "setting").
COLUMNS = [
    "study", "setting", "replication", "seed", "run", "variant", "backend", "solver", "n_rows", "n_weights", "status",
    "build_time", "solve_time", "compile_time", "solver_time", "iterations", "objective", "objective_gap",
    "max_violation", "ess", "max_abs_smd", "min_weight", "estimand", "estimate", "std_error", "error",
    "diagnostics_failed", "message",
]


# ---- reading and checking a study file -------------------------------------------------------------


def shipped_studies() -> list[str]:
    """Names of the studies that ship with counterpoise (usable as `run_study(name)`)."""
    folder = resources.files("counterpoise") / "problems"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _locate(path_or_name):
    """(TOML text, where it came from) for a file path or the name of a shipped study."""
    path = Path(path_or_name)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    if str(path_or_name) in (name, f"{name}.toml"):  # a bare name, not a path that does not exist
        resource = resources.files("counterpoise") / "problems" / f"{name}.toml"
        if resource.is_file():
            return resource.read_text(encoding="utf-8"), f"counterpoise/problems/{name}.toml"
    shipped = ", ".join(shipped_studies()) or "none"
    raise InputError(f"no study file {str(path_or_name)!r}: give a path to a .toml file or the name of a shipped "
                     f"study ({shipped})")


def load_study(path_or_name) -> dict:
    """Read and check a study file (a path, or the name of a shipped study); returns the checked study as a dict
    with keys name, description, source, generator, data_args, crossed, seed, replications, family, problem, runs,
    truth."""
    text, source = _locate(path_or_name)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source} is not valid TOML: {exc}") from None
    if raw.get("kind") == "balnet":
        from . import bench_balnet

        return dict(bench_balnet.check_study(raw, source), kind="balnet")
    if raw.get("kind") == "sparse_frontier":
        from . import bench_sparse

        return dict(bench_sparse.check_study(raw, source), kind="sparse_frontier")
    return _check_study(raw, source)


def _need(table, key, where, kind):
    if key not in table:
        raise InputError(f"{where} is missing the key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where}: {key!r} must be a {names}, got {value!r}")
    return value


def _check_study(raw, source):
    where = f"study {source}"
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown top-level keys {unknown}; expected {sorted(_TOP_KEYS)}")
    name = _need(raw, "name", where, str)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{where}: 'description' must be a string")

    data = dict(_need(raw, "data", where, dict))
    generator_name = _need(data, "generator", f"{where} [data]", str)
    generator = getattr(datasets, generator_name, None)
    if generator_name.startswith("_") or not inspect.isfunction(generator) \
            or generator.__module__ != datasets.__name__:
        available = sorted(n for n, f in vars(datasets).items()
                           if inspect.isfunction(f) and f.__module__ == datasets.__name__ and not n.startswith("_"))
        raise InputError(f"{where} [data]: unknown generator {generator_name!r}; counterpoise.datasets has {available}")
    seed = data.get("seed", 0)
    replications = data.get("replications", 1)
    for key, value in (("seed", seed), ("replications", replications)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where} [data]: {key!r} must be an integer, got {value!r}")
    if replications < 1:
        raise InputError(f"{where} [data]: 'replications' must be at least 1, got {replications}")
    data_args = {k: v for k, v in data.items() if k not in _DATA_RESERVED}
    crossed = [k for k, v in data_args.items() if isinstance(v, list)]
    for key in crossed:
        if not data_args[key]:
            raise InputError(f"{where} [data]: {key!r} is an empty list; give at least one value")
    if "seed" not in inspect.signature(generator).parameters:
        raise InputError(f"{where} [data]: generator {generator_name!r} takes no seed, so replications cannot differ")
    _check_arguments(generator, data_args, f"{where} [data]: generator {generator_name!r}", skip_first=False,
                     reserved=("seed",))

    problem = dict(_need(raw, "problem", where, dict))
    family = _need(problem, "family", f"{where} [problem]", str)
    if family not in FAMILIES:
        raise InputError(f"{where} [problem]: unknown family {family!r}; choose from {sorted(FAMILIES)}")
    problem_args = {k: v for k, v in problem.items() if k != "family"}
    _check_arguments(FAMILIES[family], problem_args, f"{where} [problem]: family {family!r}", skip_first=True)

    runs_raw = _need(raw, "run", where, list)
    if not runs_raw:
        raise InputError(f"{where} has no [[run]] tables; add at least one (backend = \"cvxpy\", solver = ...)")
    runs = [_check_run(run, i, where, source) for i, run in enumerate(runs_raw)]
    for i, run in enumerate(runs):
        if run["problem"]:
            _check_arguments(FAMILIES[family], {**problem_args, **run["problem"]},
                             f"{where} [[run]] #{i + 1} problem: family {family!r}", skip_first=True)
    labels = [r["label"] for r in runs]
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:
        raise InputError(f"{where}: several [[run]] tables have the label(s) {repeated}; give each a distinct label")

    truth = raw.get("truth")
    if truth is not None:
        if not isinstance(truth, dict):
            raise InputError(f"{where}: [truth] must be a table")
        _need(truth, "outcome", f"{where} [truth]", str)
        estimand = _estimand(FAMILIES[family], problem_args)
        if estimand not in EFFECTS:
            raise InputError(f"{where} [truth]: effects are estimated for estimands {sorted(EFFECTS)} only, and "
                             f"this problem's estimand is {estimand!r}")
        unknown = sorted(set(truth) - {"outcome", estimand.lower()})
        if unknown:
            raise InputError(f"{where} [truth]: unknown keys {unknown}; expected 'outcome' and the true effect "
                             f"named by the problem's estimand, {estimand.lower()!r}")
        value = truth.get(estimand.lower())
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{where} [truth]: {estimand.lower()!r} must be a number, got {value!r}")
    return dict(name=name, description=description, source=source, generator=generator_name, data_args=data_args,
                crossed=crossed, seed=seed, replications=replications, family=family, problem=problem_args,
                runs=runs, truth=truth)


def _check_arguments(function, arguments, where, skip_first, reserved=()):
    params = list(inspect.signature(function).parameters.values())[1 if skip_first else 0:]
    names = {p.name for p in params}
    unknown = sorted(set(arguments) - names)
    if unknown:
        accepted = sorted(names - set(reserved))
        raise InputError(f"{where} has no arguments {unknown}; it accepts {accepted}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in arguments
               and p.name not in reserved and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise InputError(f"{where} needs the arguments {missing}")


def _estimand(builder, problem_args):
    if "estimand" in problem_args:
        return problem_args["estimand"]
    param = inspect.signature(builder).parameters.get("estimand")
    return None if param is None else param.default


def _check_run(run, i, where, source):
    here = f"{where} [[run]] #{i + 1}"
    if not isinstance(run, dict):
        raise InputError(f"{here} must be a table")
    unknown = sorted(set(run) - _RUN_KEYS)
    if unknown:
        raise InputError(f"{here}: unknown keys {unknown}; expected {sorted(_RUN_KEYS)}")
    if "peer" in run:
        return _check_peer_run(run, here, source)
    backend = _need(run, "backend", here, str)
    if backend not in BACKENDS and backend != "auto":
        raise InputError(f"{here}: unknown backend {backend!r}; available: {sorted(BACKENDS)} and 'auto'")
    solver = run.get("solver")
    if solver is not None and not isinstance(solver, str):
        raise InputError(f"{here}: 'solver' must be a string, got {solver!r}")
    if backend == "cvxpy" and solver is not None:
        import cvxpy as cp

        if solver.upper() not in cp.installed_solvers():
            raise InputError(f"{here}: solver {solver!r} is not installed for cvxpy; "
                             f"installed: {cp.installed_solvers()}")
    options = run.get("options", {})
    if not isinstance(options, dict):
        raise InputError(f"{here}: 'options' must be a table of solver settings, got {options!r}")
    max_n = run.get("max_n")
    if max_n is not None and (isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1):
        raise InputError(f"{here}: 'max_n' must be a positive integer, got {max_n!r}")
    label = run.get("label") or (f"{backend}/{solver}" if solver else backend)
    if not isinstance(label, str):
        raise InputError(f"{here}: 'label' must be a string, got {label!r}")
    overrides = run.get("problem", {})
    if not isinstance(overrides, dict):
        raise InputError(f"{here}: 'problem' must be a table of builder arguments that override [problem]")
    return dict(backend=backend, solver=solver, options=dict(options), max_n=max_n, label=label, peer=None,
                problem=dict(overrides))


def _check_peer_run(run, here, source):
    """A [[run]] of a peer in its own environment (see `counterpoise.peers`): peer, python, script, label, max_n."""
    from . import peers

    if run["peer"] not in peers.PEERS:
        raise InputError(f"{here}: unknown peer {run['peer']!r}; available: {list(peers.PEERS)}")
    extra = sorted(set(run) - {"peer", "python", "script", "label", "max_n"})
    if extra:
        raise InputError(f"{here}: a peer run takes peer, python, script, label and max_n; not {extra}")
    for key in ("python", "script"):
        _need(run, key, here, str)
    script = Path(source).parent / run["script"] if Path(source).is_file() else Path(run["script"])
    max_n = run.get("max_n")
    return dict(backend="peer", solver=run["peer"], options={}, max_n=max_n, label=run.get("label") or run["peer"],
                peer=run["peer"], python=run["python"], script=script, problem={})


# ---- running ------------------------------------------------------------------------------------


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
    estimand = _estimand(FAMILIES[study["family"]], study["problem"])
    truth = study["truth"]
    row["estimand"] = estimand if truth is not None else ""
    if run["max_n"] is not None and len(data) > run["max_n"]:
        return {**row, "status": "skipped", "message": f"skipped: {len(data)} rows > max_n = {run['max_n']}"}
    start = time.perf_counter()
    problem = FAMILIES[study["family"]](data, **{**study["problem"], **run["problem"]})
    row["build_time"] = time.perf_counter() - start
    row["n_weights"] = problem.n
    start = time.perf_counter()
    try:
        if run["peer"]:
            sol = _peer_solution(run, study, data, problem)
            if sol is None:
                return {**row, "status": "skipped", "message": f"skipped: no interpreter {run['python']!r} here"}
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
    row.update(max_violation=sol.max_violation, min_weight=float(np.min(weights)), ess=_safe(lambda: float(np.min(sol.ess)), problems, "ESS"))
    if sol.design is not None:
        row["max_abs_smd"] = _safe(lambda: sol.max_abs_smd, problems, "max |SMD|")
    if truth is not None:
        effect = _safe(lambda: EFFECTS[estimand](data, treatment=study["problem"].get("treatment"),
                                                 outcome=truth["outcome"], weights=sol), problems, estimand)
        if not (isinstance(effect, float) and math.isnan(effect)):
            true_value = truth.get(estimand.lower())
            row.update(estimate=effect.estimate, std_error=effect.std_error,
                       error=effect.estimate - true_value if true_value is not None else float("nan"))
    row["message"] = "; ".join([sol.message] + problems)
    row["diagnostics_failed"] = bool(problems)
    return row


def _peer_solution(run, study, data, problem):
    """Run a peer on this data and check its weights like any backend's; None when its interpreter is absent."""
    from . import peers

    python = peers.interpreter(run["python"])
    if python is None:
        return None
    margins = study["problem"].get("margins") or data.attrs.get("margins")
    raw = peers.run_balance_rake(python, run["script"], data, margins, problem.design.base_weights)
    return problem._finish(raw, "peer", CHECK_TOLERANCE)


def run_study(path, out_dir="results", quiet=False, sizes=None, replications=None) -> pd.DataFrame:
    """Run the study in `path` (a .toml file, or the name of a shipped study such as "sbw-solvers").

    `sizes` (a list of n) and `replications` override the file, for quick runs. Progress goes to stderr, one line
    per run, unless `quiet`. With `out_dir` (None: write nothing) the results are written by `write_results` as
    <out_dir>/<name>.csv and <out_dir>/<name>.md. Returns the tidy frame: one row per data setting x replication x
    run, with the columns in `COLUMNS` (the crossed data arguments right after "setting").
    """
    study = load_study(path)
    if study.get("kind") in ("balnet", "sparse_frontier"):
        if sizes is not None or replications is not None:
            raise InputError(f"a {study['kind']} study lists its settings in the file; sizes= and replications= "
                             "do not apply")
        from . import bench_balnet, bench_sparse

        runner = bench_balnet if study["kind"] == "balnet" else bench_sparse
        return runner.run(study, out_dir=out_dir, quiet=quiet)
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
            for run in study["runs"]:
                row = _one_run(study, run, data, label, values, r, seed)
                rows.append(row)
                done += 1
                if not quiet:
                    seconds = row.get("build_time", 0.0) + row.get("solve_time", 0.0)
                    print(f"[{done}/{total}] {label}, rep {r} | {run['label']} | {row['status']} | {seconds:.2f} s",
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


# ---- reporting ----------------------------------------------------------------------------------


def summarize(df) -> pd.DataFrame:
    """One row per data setting x run: the share of solves with status "optimal", means over replications of the
    times, objective gap, max violation, ESS and max |SMD|, the smallest weight, and the mean error and the RMSE of
    the effect estimate."""
    rows = []
    for (setting, run), group in df.groupby(["setting", "run"], sort=False):
        done = group[group["status"] != "skipped"]
        row = {"setting": setting, "run": run, "solves": len(done)}
        if done.empty:
            row["note"] = group["message"].iloc[0]
            rows.append(row)
            continue
        error = done["error"].astype(float)
        row.update(
            optimal=float(np.mean(done["status"] == "optimal")),
            build_time=done["build_time"].astype(float).mean(),
            solve_time=done["solve_time"].astype(float).mean(),
            objective_gap=done["objective_gap"].astype(float).mean(),
            max_violation=done["max_violation"].astype(float).mean(),
            ess=done["ess"].astype(float).mean(),
            max_abs_smd=done["max_abs_smd"].astype(float).mean(),
            error=error.mean(),
            rmse=float(np.sqrt(np.mean(error[error.notna()] ** 2))) if error.notna().any() else float("nan"),
            min_weight=done["min_weight"].astype(float).min(),
            note=_note(done),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _note(done):
    notes = [f"{int(np.sum(done['status'] == s))} {s}" for s in dict.fromkeys(done["status"]) if s != "optimal"]
    failed = done[done["diagnostics_failed"].astype(bool)]
    if len(failed):
        notes.append(f"{len(failed)} without SMD/effect (see message in the CSV)")
    return "; ".join(notes)


def _fmt(value, spec):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def markdown_table(df) -> str:
    """The summary (see `summarize`) as a markdown table (a balnet study's frame has tables of its own)."""
    if df.attrs.get("kind") == "balnet":
        from . import bench_balnet

        return bench_balnet.markdown_table(df)
    if df.attrs.get("kind") == "sparse_frontier":
        from . import bench_sparse

        return bench_sparse.markdown_table(df)
    summary = summarize(df)
    estimand = next((e for e in df["estimand"] if e), "") if "estimand" in df else ""
    has_effect = bool(estimand) and df["error"].notna().any()
    header = ["setting", "run", "optimal", "build s", "solve s", "objective gap", "max violation", "min weight",
              "ESS", "max abs SMD"]
    if has_effect:
        header += [f"{estimand} error", f"{estimand} RMSE"]
    header.append("note")
    align = ["---", "---"] + ["---:"] * (len(header) - 3) + ["---"]  # numbers right-aligned
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in summary.to_dict("records"):
        if row["solves"] == 0:
            cells = [row["setting"], row["run"]] + ["–"] * (len(header) - 3) + [row.get("note", "")]
        else:
            cells = [row["setting"], row["run"], f"{row['optimal']:.0%} of {row['solves']}",
                     _fmt(row["build_time"], ".3f"), _fmt(row["solve_time"], ".2f"), _fmt(row["objective_gap"], ".1e"),
                     _fmt(row["max_violation"], ".1e"), _fmt(row["min_weight"], ".1e"), _fmt(row["ess"], ".1f"),
                     _fmt(row["max_abs_smd"], ".4f")]
            if has_effect:
                cells += [_fmt(row["error"], ".3f"), _fmt(row["rmse"], ".3f")]
            cells.append(row["note"])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _environment():
    import cvxpy as cp

    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"cvxpy {cp.__version__}"]
    for module in ("clarabel", "osqp", "scs", "ecos"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except (ImportError, AttributeError):
            pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; " + ", ".join(versions)


def write_results(df, out_dir, name, description="") -> tuple[Path, Path]:
    """Write `df` (from `run_study`) as <out_dir>/<name>.csv and a markdown summary <out_dir>/<name>.md.
    Returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    df.to_csv(csv_path, index=False)
    reps = int(df["replication"].nunique()) if len(df) else 0
    text = [f"# {name}", ""]
    if description:
        text += [description.strip(), ""]
    text += [
        markdown_table(df), "",
        f"Means over {reps} replication(s) per data setting x run. optimal: share of solves with status \"optimal\" "
        "(the solver said so and counterpoise's post-solve feasibility check passed). build s: building the problem; "
        "solve s: the solve() call (cvxpy compilation included). objective gap: (f - f_best) / |f_best| against the "
        "best objective among the optimal runs on the same data (negative when the weights violate the constraints). "
        "max violation: the largest scaled constraint violation. min weight: the smallest weight over replications. "
        "ESS: Kish effective sample size of the weights (the smallest arm's). "
        "max abs SMD: largest absolute standardized mean difference after weighting. Effect error: estimate - truth; "
        "RMSE over replications. Means skip the replications where a value could not be computed (see the note).",
        "",
        f"Machine: {_environment()}.",
        "",
    ]
    md_path.write_text("\n".join(text), encoding="utf-8")
    return csv_path, md_path
