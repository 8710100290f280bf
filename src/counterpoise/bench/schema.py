"""Reading and checking study files: where the shipped studies are, and the default kind's format.

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
    se = "balancing"             # optional, with [truth]: the effect's SE ("balancing", "fixed", "bootstrap"; see
    n_boot = 200                 #   cpz.estimate), bootstrap resamples, and the replications the run is made on
    max_replications = 100       #   (the first ones: a costly SE on part of the draws)
    augmented = true             # optional: the bias-corrected estimate (cpz.estimate.att's augmented=True)
    [run.options]                # optional: keyword arguments for solve()
    max_iter = 200

    [truth]                      # optional: the outcome column and the true effect, named by the estimand
    outcome = "Y"
    att = 0.0

    time_limit = 100             # optional: seconds after which a solve counts as failed in the report; the cvxpy
                                 # solvers that take a time limit (CLARABEL, OSQP, SCS) are given it

A [[run]] may instead name a peer method run in its own environment (`peer`, `python`, `script`; see
`counterpoise.bench.peers`): its weights are checked like a backend's. `backend = "every"` (with optional max_n
and problem) stands for one run per registered backend and one per installed cvxpy solver.

A study of several weighting problems puts each in a [[part]] table with its own name, [part.data],
[part.problem], [[part.run]] and [part.truth] (problems/solver-comparison.toml); the cells of a study are its
parts x data settings x replications. A file with a `kind` (see
`counterpoise.bench.kinds`) has a format of its own, checked by its plug-in.

The shipped studies are the repository's problems/ folder, which pyproject.toml ships inside the package as
counterpoise/problems (the study files and the peer scripts and stored results they name, found through
importlib.resources). Run from the source tree without installing it (PYTHONPATH=src, or pip install -e), the
package holds no such folder and the studies are read from problems/ itself.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .. import datasets, estimate, families
from ..backends import BACKENDS
from ..errors import InputError
from . import peers

#: The family builders a study may name.
FAMILIES = {name: getattr(families, name) for name in ("sbw", "kernel_sbw", "entropy_balance", "calibrate",
                                                        "sparse_calibrate")}

#: Estimands for which a [truth] table gives an effect to compare with, and the estimator of each.
EFFECTS = {"ATT": estimate.att, "ATE": estimate.ate}

_TOP_KEYS = {"name", "description", "time_limit", "data", "problem", "run", "truth"}

#: Seconds after which a solve counts as failed in the report, and the time a failure counts as (`time_limit`).
DEFAULT_TIME_LIMIT = 100.0

#: cvxpy solvers that `backend = "every"` leaves out: they add integer variables to a solver already listed.
MIXED_INTEGER_ONLY = {"ECOS_BB", "GLPK_MI"}
_RUN_KEYS = {"backend", "solver", "options", "max_n", "label", "problem", "peer", "python", "script", "se", "n_boot",
             "max_replications", "augmented"}
_DATA_RESERVED = {"generator", "seed", "replications"}


# ---- finding and reading a study file -----------------------------------------------------------------


def studies_folder() -> Traversable:
    """The folder of the shipped studies: counterpoise/problems in an installed package, else (a source tree:
    src/counterpoise/bench/schema.py) the repository's problems/."""
    shipped = resources.files("counterpoise") / "problems"
    return shipped if shipped.is_dir() else Path(__file__).resolve().parents[3] / "problems"


def shipped_studies() -> list[str]:
    """Names of the studies that ship with counterpoise (usable as `run_study(name)`)."""
    folder = studies_folder()
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _locate(path_or_name):
    """(TOML text, where it came from, the folder its relative paths start from) for a file path or the name of a
    shipped study."""
    path = Path(path_or_name)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path), path.parent
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    if str(path_or_name) in (name, f"{name}.toml"):  # a bare name, not a path that does not exist
        folder = studies_folder()
        resource = folder / f"{name}.toml"
        if resource.is_file():
            return resource.read_text(encoding="utf-8"), f"counterpoise/problems/{name}.toml", folder
    shipped = ", ".join(shipped_studies()) or "none"
    raise InputError(f"no study file {str(path_or_name)!r}: give a path to a .toml file or the name of a shipped "
                     f"study ({shipped})")


def read_study(path_or_name) -> tuple[dict, str, Traversable]:
    """(the parsed TOML, where it came from, the folder its relative paths start from) for a file path or the name
    of a shipped study."""
    text, source, folder = _locate(path_or_name)
    try:
        return tomllib.loads(text), source, folder
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source} is not valid TOML: {exc}") from None


# ---- checking a study of the default kind -----------------------------------------------------------


def _need(table, key, where, kind):
    if key not in table:
        raise InputError(f"{where} is missing the key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where}: {key!r} must be a {names}, got {value!r}")
    return value


def check_study(raw, source, folder) -> dict:
    """Check a study of the default kind (no `kind` key); returns it as a dict with keys name, description, source,
    time_limit and parts: one dict per weighting problem, with keys part (its name; "" for a file of one problem),
    generator, data_args, crossed, seed, replications, family, problem, runs, truth. A file holds one problem
    ([data], [problem], [[run]], [truth] at the top) or several ([[part]] tables, each with a name and those four).
    A peer run's script is resolved against `folder`."""
    where = f"study {source}"
    top = _TOP_KEYS | {"part"} if "part" in raw else _TOP_KEYS
    unknown = sorted(set(raw) - top)
    if unknown:
        raise InputError(f"{where}: unknown top-level keys {unknown}; expected {sorted(top)}")
    name = _need(raw, "name", where, str)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{where}: 'description' must be a string")
    time_limit = raw.get("time_limit", DEFAULT_TIME_LIMIT)
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise InputError(f"{where}: 'time_limit' must be a positive number of seconds, got {time_limit!r}")
    if "part" not in raw:
        parts = [_check_part(raw, "", where, folder)]
    else:
        if set(raw) & {"data", "problem", "run", "truth"}:
            raise InputError(f"{where}: give [data], [problem], [[run]] and [truth] inside each [[part]], not at the "
                             "top as well")
        tables = _need(raw, "part", where, list)
        if not tables or not all(isinstance(t, dict) for t in tables):
            raise InputError(f"{where}: [[part]] must be one or more tables")
        parts = []
        for i, table in enumerate(tables):
            label = _need(table, "name", f"{where} [[part]] #{i + 1}", str)
            extra = sorted(set(table) - {"name", "data", "problem", "run", "truth"})
            if extra:
                raise InputError(f"{where} [[part]] {label!r}: unknown keys {extra}; expected name, data, problem, "
                                 "run and truth")
            parts.append(_check_part(table, label, f"{where} [[part]] {label!r}", folder))
        labels = [p["part"] for p in parts]
        repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
        if repeated:
            raise InputError(f"{where}: several [[part]] tables have the name(s) {repeated}")
    return dict(name=name, description=description, source=source, time_limit=float(time_limit), parts=parts)


def _check_part(raw, part, where, folder) -> dict:
    """One weighting problem of a study: its data, builder, runs and truth (see `check_study`)."""
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
    runs = [checked for i, run in enumerate(runs_raw) for checked in _check_runs(run, i, where, folder)]
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
        target = estimand(FAMILIES[family], problem_args)
        if target not in EFFECTS:
            raise InputError(f"{where} [truth]: effects are estimated for estimands {sorted(EFFECTS)} only, and "
                             f"this problem's estimand is {target!r}")
        unknown = sorted(set(truth) - {"outcome", target.lower()})
        if unknown:
            raise InputError(f"{where} [truth]: unknown keys {unknown}; expected 'outcome' and the true effect "
                             f"named by the problem's estimand, {target.lower()!r}")
        value = truth.get(target.lower())
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{where} [truth]: {target.lower()!r} must be a number, got {value!r}")
    return dict(part=part, generator=generator_name, data_args=data_args, crossed=crossed, seed=seed,
                replications=replications, family=family, problem=problem_args, runs=runs, truth=truth)


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


def estimand(builder, problem_args):
    """The estimand a builder is called with: the study's, else the builder's default (None: it has none)."""
    if "estimand" in problem_args:
        return problem_args["estimand"]
    param = inspect.signature(builder).parameters.get("estimand")
    return None if param is None else param.default


def _check_runs(run, i, where, folder) -> list[dict]:
    """The runs a [[run]] table stands for: itself, or for `backend = "every"` one run per registered backend and
    one per installed cvxpy solver (a backend that does not understand the problem is recorded as unsupported)."""
    if not (isinstance(run, dict) and run.get("backend") == "every"):
        return [_check_run(run, i, where, folder)]
    extra = sorted(set(run) - {"backend", "max_n", "problem"})
    if extra:
        raise InputError(f"{where} [[run]] #{i + 1}: backend = \"every\" takes max_n and problem only, not {extra}")
    import cvxpy as cp

    tables = [{"backend": b} for b in BACKENDS if b != "cvxpy"]
    tables += [{"backend": "cvxpy", "solver": s} for s in cp.installed_solvers() if s not in MIXED_INTEGER_ONLY]
    return [_check_run({**table, **{k: run[k] for k in ("max_n", "problem") if k in run}}, i, where, folder)
            for table in tables]


def _check_run(run, i, where, folder):
    here = f"{where} [[run]] #{i + 1}"
    if not isinstance(run, dict):
        raise InputError(f"{here} must be a table")
    unknown = sorted(set(run) - _RUN_KEYS)
    if unknown:
        raise InputError(f"{here}: unknown keys {unknown}; expected {sorted(_RUN_KEYS)}")
    if "peer" in run:
        return _check_peer_run(run, here, folder)
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
    max_n, n_boot, max_replications = (_positive_integer(run, key, here, least)
                                       for key, least in (("max_n", 1), ("n_boot", 2), ("max_replications", 1)))
    se = run.get("se")
    if se is not None and se not in estimate.SE_METHODS:
        raise InputError(f"{here}: 'se' must be one of {estimate.SE_METHODS}, got {se!r}")
    augmented = run.get("augmented", False)
    if not isinstance(augmented, bool):
        raise InputError(f"{here}: 'augmented' must be true or false, got {augmented!r}")
    if augmented and se == "fixed":
        raise InputError(f"{here}: 'augmented' needs se = \"balancing\" or \"bootstrap\" (the augmented estimate's SE)")
    label = run.get("label") or (f"{backend}/{solver}" if solver else backend)
    if not isinstance(label, str):
        raise InputError(f"{here}: 'label' must be a string, got {label!r}")
    overrides = run.get("problem", {})
    if not isinstance(overrides, dict):
        raise InputError(f"{here}: 'problem' must be a table of builder arguments that override [problem]")
    return dict(backend=backend, solver=solver, options=dict(options), max_n=max_n, label=label, peer=None,
                problem=dict(overrides), se=se, n_boot=n_boot or 200, max_replications=max_replications,
                augmented=augmented)


def _positive_integer(run, key, here, least):
    value = run.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
        raise InputError(f"{here}: {key!r} must be an integer >= {least}, got {value!r}")
    return value


def _check_peer_run(run, here, folder):
    """A [[run]] of a peer in its own environment (see `peers`): peer, python, script (relative to the study's
    folder), label, max_n."""
    if run["peer"] not in peers.PEERS:
        raise InputError(f"{here}: unknown peer {run['peer']!r}; available: {list(peers.PEERS)}")
    extra = sorted(set(run) - {"peer", "python", "script", "label", "max_n"})
    if extra:
        raise InputError(f"{here}: a peer run takes peer, python, script, label and max_n; not {extra}")
    for key in ("python", "script"):
        _need(run, key, here, str)
    max_n = run.get("max_n")
    return dict(backend="peer", solver=run["peer"], options={}, max_n=max_n, label=run.get("label") or run["peer"],
                peer=run["peer"], python=run["python"], script=folder / run["script"], problem={}, se=None,
                n_boot=200, max_replications=None, augmented=False)
