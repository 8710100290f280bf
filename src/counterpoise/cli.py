"""The `counterpoise` command: a demo, weights for a data file, survey calibration, and benchmark studies.

    counterpoise demo [--n 5000] [--seed 1] [--out love_plot.png]
    counterpoise weights DATA.csv --treatment A --covariates X1,X2 --method sbw --delta 0.05 -o weights.csv
    counterpoise calibrate DATA.csv --margins targets.toml --base-weights pw --ids dnum --estimate api00 -o w.csv
    counterpoise rake ... | counterpoise sparse DATA.csv --margins targets.json --target-records 500 -o w.csv
    counterpoise bench problems/sbw-solvers.toml --out-dir results      (or the name of a shipped study: sbw-solvers)

Errors that counterpoise raises about its input (`CounterpoiseError`) are printed as one line "error: ..." and give
exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

METHODS = ("sbw", "kernel_sbw", "entropy_balance")
DEMO_COVARIATES = ["X1", "X2", "X3", "X4", "X5", "X6"]


class _Failure(Exception):
    """An error about the command's input (a file that cannot be read...), reported like a CounterpoiseError."""


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


# ---- demo -------------------------------------------------------------------------------------------


def _demo(args) -> int:
    import counterpoise as cpz

    start = time.perf_counter()
    data = cpz.datasets.kim2023(n=args.n, overlap="weak", seed=args.seed)
    t_data = time.perf_counter() - start
    print(f"data: kim2023(n={args.n}, overlap='weak', seed={args.seed}): {int(data['A'].sum())} treated, "
          f"{int((data['A'] == 0).sum())} controls; covariates {', '.join(DEMO_COVARIATES)}; outcome Y "
          "(no treatment effect: the true ATT is 0)")

    start = time.perf_counter()
    # Kernel SBW: balance the controls to the treated on s = 100 columns of a Nystrom basis of a Gaussian kernel
    # (m = 300 landmarks, rank l = 200) and on the six covariate means, each within delta treated SDs.
    # delta = 0.02 SD is feasible at the default n = 5000 (checked with CLARABEL: status optimal, ESS about 390 of
    # 3400 controls). With fewer units the 106 balance conditions cannot all hold that tightly (at n = 2000 the
    # smallest feasible delta is between 0.02 and 0.05, at n = 600 between 0.1 and 0.2), so the demo then doubles
    # delta until the problem is feasible and says so, instead of stopping at an infeasibility error.
    prob = cpz.kernel_sbw(data, treatment="A", covariates=DEMO_COVARIATES, estimand="ATT", delta=args.delta,
                          m=args.m, l=args.l, s=args.s)
    t_build = time.perf_counter() - start

    start = time.perf_counter()
    delta = args.delta
    sol = prob.solve(backend=args.backend, solver=args.solver, raise_on_failure=False)
    while sol.status == "infeasible" and delta * 2 <= 1.0:
        print(f"delta = {delta:g} SD is infeasible at n = {args.n}: too few controls to balance all "
              f"{args.s} kernel columns that tightly; retrying with delta = {2 * delta:g}")
        delta *= 2
        prob.set(delta=delta)
        sol = prob.solve(backend=args.backend, solver=args.solver, raise_on_failure=False)
    if sol.status != "optimal":  # raises the informative InfeasibleError / SolverError
        prob.solve(backend=args.backend, solver=args.solver)
    t_solve = time.perf_counter() - start

    compile_time, solver_time = sol.info.get("compile_time"), sol.info.get("solver_time")
    detail = (f" (last solve: cvxpy compile {compile_time:.2f} s, {sol.solver} {solver_time:.2f} s)"
              if compile_time is not None and solver_time is not None else "")
    print(f"\ntimings: data {t_data:.2f} s, basis + build {t_build:.2f} s, solve {t_solve:.2f} s{detail}")
    print(f"\nkernel SBW, ATT, delta = {delta:g} treated SDs (m = {args.m}, l = {args.l}, s = {args.s})")
    print(sol.summary())
    table = sol.balance.xs("control", level="group")[["target", "before", "after", "smd_before", "smd_after"]]
    print("\ncovariate balance (target = treated mean; SMD in treated SDs):")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    effect = cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol)
    unweighted = data.loc[data["A"] == 1, "Y"].mean() - data.loc[data["A"] == 0, "Y"].mean()
    print(f"\nESS of the control weights: {sol.ess:.1f} of {sol.weights.size} controls")
    print(f"ATT = {effect.estimate:.3f} (SE {effect.std_error:.3f}, 95% CI {effect.ci_lower:.3f} to "
          f"{effect.ci_upper:.3f}); the true ATT is 0 in this design (unweighted difference {unweighted:.3f})")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = cpz.plots.love_plot(sol, title=f"Kernel SBW, kim2023 (n = {args.n}, weak overlap)", tolerance=delta)
    figure.savefig(out, bbox_inches="tight")
    print(f"\nlove plot saved to {out.resolve()}")
    return 0


# ---- weights ----------------------------------------------------------------------------------------


def _read(path: Path):
    import pandas as pd

    if not path.is_file():
        raise _Failure(f"no data file {str(path)!r}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except ImportError as exc:
        raise _Failure(f"reading {path.name} needs an optional package: {_one_line(exc)}") from None
    except Exception as exc:  # a malformed file: say which and why, without a traceback
        raise _Failure(f"cannot read {str(path)!r}: {_one_line(exc)}") from None
    raise _Failure(f"{str(path)!r}: unknown file type {suffix or '(none)'}; use .csv or .parquet")


def _write(weights, path: Path):
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise _Failure(f"{str(path)!r}: unknown output type {suffix or '(none)'}; use .csv or .parquet")
    frame = weights.to_frame("weight")
    if frame.index.name is None:
        frame.index.name = "row"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if suffix == ".csv":
            frame.to_csv(path)
        else:
            frame.to_parquet(path)
    except ImportError as exc:
        raise _Failure(f"writing {path.name} needs an optional package: {_one_line(exc)}") from None


def _output_and_data(args):
    """(the output path, checked before any solve; the data, indexed by --id if given)."""
    out = Path(args.output)
    if out.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise _Failure(f"{str(out)!r}: unknown output type {out.suffix or '(none)'}; use .csv or .parquet")
    data = _read(Path(args.data))
    if args.id is not None:
        if args.id not in data.columns:
            raise _Failure(f"--id {args.id!r} is not a column of {args.data}")
        data = data.set_index(args.id)
    return out, data


def _weights(args) -> int:
    import counterpoise as cpz

    out, data = _output_and_data(args)
    covariates = [c.strip() for c in args.covariates.split(",") if c.strip()]
    options = dict(treatment=args.treatment, covariates=covariates, estimand=args.estimand,
                   delta_scale=args.delta_scale)
    if args.delta is not None:
        options["delta"] = args.delta
    sizes = {k: v for k, v in (("m", args.m), ("l", args.l), ("s", args.s)) if v is not None}
    if sizes and args.method != "kernel_sbw":
        raise _Failure("--m, --l and --s apply to --method kernel_sbw only")
    options.update(sizes)
    builder = getattr(cpz, args.method)
    start = time.perf_counter()
    prob = builder(data, **options)
    sol = prob.solve(backend=args.backend, solver=args.solver)
    elapsed = time.perf_counter() - start
    _write(sol.weights, out)
    print(sol.summary())
    groups = sol.balance.index.get_level_values("group").unique()
    table = sol.balance[["target", "before", "after", "smd_before", "smd_after"]]
    if len(groups) == 1:
        table = table.droplevel("group")
    sd = cpz.diagnostics.SD_WORDS[sol.design.std]
    print(f"\nbalance (SMD = (weighted mean - target) / {sd}, fixed before weighting; target = the estimand's "
          "target means):")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\n{sol.weights.size} weights written to {out} ({elapsed:.2f} s to build and solve)")
    return 0


# ---- calibrate, rake, sparse ------------------------------------------------------------------------


def _pair_of_floats(text):
    try:
        lower, upper = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers L,U, got {text!r}") from None
    return lower, upper


def _calibrate(args) -> int:
    """calibrate / rake / sparse: read the data and the targets, solve, write the weights, print the report."""
    import counterpoise as cpz
    from .targets_file import matched_levels, read_targets

    out, data = _output_and_data(args)
    margins, totals = read_targets(args.margins)
    margins = matched_levels(data, margins)
    start = time.perf_counter()
    if args.command == "sparse":
        if args.estimate:
            raise _Failure("--estimate applies to calibrate and rake (calibration estimators with design SEs); "
                           "sparse calibration keeps few records and has no such variance")
        options = dict(exact=args.exact) | ({"target_records": args.target_records} if args.target_records else
                                            {"lam": args.lam})
        solution = cpz.sparse_calibrate(data, base_weights=args.base_weights, margins=margins or None,
                                        totals=totals or None, **options).solve()
        design = None
    else:
        distance = "raking" if args.command == "rake" else args.distance
        design = cpz.SurveyDesign(data, weights=args.base_weights, ids=args.ids, strata=args.strata, fpc=args.fpc,
                                  nest=args.nest, lonely_psu=args.lonely_psu)
        design = design.calibrate(margins=margins or None, totals=totals or None, distance=distance,
                                  bounds=args.bounds)
        solution = design.solution
    elapsed = time.perf_counter() - start
    _write(solution.weights, out)
    report = solution.validate()
    print(solution.summary())
    print("\ntargets (actual, target, relative error):")
    print(report["targets"].to_string(float_format=lambda v: f"{v:.6g}"))
    print(f"\nmax relative error {report['max_relative_error']:.2e}; records {report['records']}; ESS "
          f"{report['ess']:.1f}; design effect {report['design_effect']:.3f}; max w / d "
          f"{report['max_weight_ratio']:.3g}")
    for column in args.estimate or []:
        for estimate in (design.mean(column), design.total(column)):
            print(f"\n{estimate!r}")
    print(f"\n{solution.weights.size} weights written to {out} ({elapsed:.2f} s to build and solve)")
    return 0


# ---- bench ------------------------------------------------------------------------------------------


def _sizes(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes comma-separated integers, e.g. 2000,10000; got {text!r}")
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"--sizes must be integers >= 2, got {text!r}")
    return sizes


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _bench(args) -> int:
    from . import bench

    start = time.perf_counter()
    df = bench.run_study(args.study, out_dir=args.out_dir, quiet=args.quiet, sizes=args.sizes,
                         replications=args.replications, workers=args.workers, scheduler=args.scheduler,
                         force=args.force)
    elapsed = time.perf_counter() - start
    name = df["study"].iloc[0]
    print(bench.markdown_table(df))
    print(f"\n{len(df)} runs in {elapsed:.1f} s; results in {Path(args.out_dir) / (name + '.csv')} and "
          f"{Path(args.out_dir) / (name + '.md')}")
    return 0


# ---- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKENDS

    backends = ("auto", *BACKENDS)
    parser = argparse.ArgumentParser(
        prog="counterpoise",
        description="Balancing and calibration weights as convex problems. Run 'counterpoise COMMAND --help' for the "
                    "options of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo", help="kernel SBW on simulated data: balance, ESS, ATT and a love plot",
        description="Kernel stable balancing weights (ATT) on the kim2023 simulation with weak overlap "
                    "(covariates X1..X6; the true ATT is 0). Prints the timings, the balance table, the effective "
                    "sample size and the ATT with its 95% CI, and saves a love plot.",
    )
    demo.add_argument("--n", type=_positive, default=5000, help="number of simulated units (default 5000)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the simulation (default 1)")
    demo.add_argument("--out", default="love_plot.png", help="where to save the love plot PNG (default love_plot.png)")
    demo.add_argument("--delta", type=float, default=0.02,
                      help="balance tolerance in treated SDs (default 0.02; doubled while infeasible)")
    demo.add_argument("--m", type=_positive, default=300, help="Nystrom landmarks (default 300)")
    demo.add_argument("--l", type=_positive, default=200, help="rank of the Nystrom approximation (default 200)")
    demo.add_argument("--s", type=_positive, default=100, help="kernel basis columns balanced (default 100)")
    demo.add_argument("--backend", choices=backends, default="auto",
                      help="the backend (default auto: the dual Newton here)")
    demo.add_argument("--solver", default=None, help="solver for --backend cvxpy (default CLARABEL)")
    demo.set_defaults(func=_demo)

    weights = sub.add_parser(
        "weights", help="compute balancing weights for a CSV or Parquet file",
        description="Build and solve a balancing problem on a data file (.csv or .parquet) and write one weight "
                    "per weighted row (for the ATT: the controls, summing to 1) with the row index, to .csv or "
                    ".parquet. Prints the solution summary and the balance table.",
    )
    weights.add_argument("data", metavar="DATA", help="the data file, .csv or .parquet")
    weights.add_argument("--treatment", required=True, help="the 0/1 treatment column")
    weights.add_argument("--covariates", required=True, help="comma-separated covariate columns, e.g. X1,X2,X3")
    weights.add_argument("--method", choices=METHODS, default="sbw", help="the weighting method (default sbw)")
    weights.add_argument("--estimand", choices=("ATT", "ATC", "ATE"), default="ATT",
                         help="ATT: weight the controls to the treated; ATC: the treated to the controls; ATE: both "
                              "arms to the whole sample (default ATT)")
    weights.add_argument("--delta", type=float, default=None,
                         help="balance tolerance (default: the method's, 0.02 for sbw and kernel_sbw, exact balance "
                              "for entropy_balance)")
    weights.add_argument("--delta-scale", choices=("sd", "raw"), default="sd",
                         help="delta in standard deviations (sd, default) or in the covariates' units (raw)")
    weights.add_argument("--m", type=_positive, default=None, help="kernel_sbw: Nystrom landmarks (default 300)")
    weights.add_argument("--l", type=_positive, default=None, help="kernel_sbw: Nystrom rank (default 200)")
    weights.add_argument("--s", type=_positive, default=None, help="kernel_sbw: basis columns balanced (default 100)")
    weights.add_argument("--id", default=None, help="a column of unique row ids to use as the index (default: the "
                                                    "row number)")
    weights.add_argument("--backend", choices=backends, default="auto",
                         help="the backend (default auto: the fastest that solves the problem exactly)")
    weights.add_argument("--solver", default=None, help="solver name for the backend, e.g. CLARABEL (the default), "
                                                        "ECOS, SCS, OSQP")
    weights.add_argument("-o", "--output", required=True, help="output file, .csv or .parquet")
    weights.set_defaults(func=_weights)

    for name, what in (("calibrate", "calibrate a survey sample to population margins and totals"),
                       ("rake", "rake a survey sample to population margins (calibrate with the raking distance)"),
                       ("sparse", "sparse calibration: few records with positive weight meeting the totals")):
        command = sub.add_parser(
            name, help=what,
            description=f"{what[0].upper()}{what[1:]}. Reads DATA (.csv or .parquet) and the targets (--margins: a "
                        ".json, .toml or .csv file of margins {variable: {level: count}} and totals {column: "
                        "total}; a CSV has the columns variable, level, total, an empty level for a total), writes "
                        "one weight per row to OUT and prints the calibration report (validate()).",
        )
        command.add_argument("data", metavar="DATA", help="the sample, .csv or .parquet")
        command.add_argument("--margins", required=True, metavar="FILE",
                             help="the population targets: .json, .toml or .csv (see above)")
        command.add_argument("--base-weights", default=None, metavar="COL",
                             help="the design weights column (default: every weight 1)")
        command.add_argument("--id", default=None, help="a column of unique row ids for the output (default: the "
                                                        "row number)")
        command.add_argument("-o", "--output", required=True, help="output file, .csv or .parquet")
        if name == "sparse":
            command.add_argument("--lam", type=float, default=1e-3, help="the lasso penalty (default 1e-3)")
            command.add_argument("--target-records", type=_positive, default=None, metavar="K",
                                 help="tune the penalty to keep about K records (instead of --lam)")
            command.add_argument("--exact", action="store_true", help="meet the totals exactly")
        else:
            if name == "calibrate":
                command.add_argument("--distance", choices=("linear", "raking", "logit"), default="linear",
                                     help="the calibration distance (default linear, GREG)")
            command.add_argument("--bounds", type=_pair_of_floats, default=None, metavar="L,U",
                                 help="bounds on g = w / d, e.g. 0.5,2 (needed by --distance logit)")
            command.add_argument("--ids", default=None, metavar="COL", help="the PSU (cluster) column, for the SEs")
            command.add_argument("--strata", default=None, metavar="COL", help="the strata column, for the SEs")
            command.add_argument("--fpc", default=None, metavar="COL",
                                 help="the population PSU count (or sampling fraction) per stratum, for the SEs")
            command.add_argument("--nest", action="store_true", help="PSU ids are numbered within strata")
            command.add_argument("--lonely-psu", choices=("fail", "remove", "adjust", "average", "certainty"),
                                 default="fail", help="strata with one PSU (default fail, as R survey)")
        command.add_argument("--estimate", action="append", metavar="COL",
                             help="print the calibrated mean and total of COL with design SEs (repeatable)")
        command.set_defaults(func=_calibrate)

    bench = sub.add_parser(
        "bench", help="run a benchmark study described by a TOML file",
        description="Run a benchmark study: every data setting x replication x run of the study file, timed and "
                    "checked. Writes <out-dir>/<name>.csv (one row per solve), <out-dir>/<name>.md (the report) and "
                    "<out-dir>/<name>-profile.png (a performance profile), and prints the tables. Each cell (data "
                    "setting x replication) is stored under <out-dir>/<name>.cells/ as it finishes, so an "
                    "interrupted study run again computes only the missing cells. Progress goes to stderr.",
    )
    bench.add_argument("study", metavar="FILE_OR_NAME",
                       help="a study .toml file, or the name of a study shipped with counterpoise (e.g. sbw-solvers)")
    bench.add_argument("--out-dir", default="results", help="folder for the CSV and markdown results (default results)")
    bench.add_argument("--sizes", type=_sizes, default=None,
                       help="comma-separated sample sizes that replace the study's n, e.g. 2000,10000")
    bench.add_argument("--replications", type=_positive, default=None,
                       help="replications per data setting (default: the study's)")
    where = bench.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive, default=None,
                       help="run the cells on a Dask LocalCluster of this many single-threaded worker processes "
                            '(needs pip install "counterpoise[dask]")')
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run the cells on the running Dask cluster whose scheduler is at ADDRESS "
                            "(e.g. tcp://10.0.0.5:8786)")
    bench.add_argument("--force", action="store_true",
                       help="compute every cell again, even those stored under OUT_DIR/NAME.cells/ by an earlier run")
    bench.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    bench.set_defaults(func=_bench)
    return parser


def main(argv=None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    from .errors import CounterpoiseError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CounterpoiseError, _Failure) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
