"""Raking and SBW on a Dask LocalCluster as the rows grow: time, Newton steps and peak memory, against memory.

    for n in 1000000 10000000 100000000; do python problems/dask_scaling.py --n $n; done
    for n in 1000000 10000000 100000000; do python problems/dask_scaling.py --n $n --problem sbw; done

One size per process (so that the client's peak memory is its own), the data drawn on the workers
(`datasets.on_dask`, 1M rows per partition, seed 1).

raking: `datasets.survey_margins`, 5 categorical variables x 10 levels, lognormal design weights. The population
margins are each level's total of d over the whole data times a factor from U(0.7, 1.3) (default_rng(1)),
rescaled so every variable sums to N = 1.1 sum(d): one pass over the data ("prep s", which also draws it once).
Then `cpz.calibrate(ddf, margins=..., base_weights="d", distance="raking")`.

sbw: `datasets.confounded(p=10)`, 10 correlated normal covariates and a logistic treatment; `cpz.sbw(ddf,
treatment="A", covariates=X1..X10, delta=0.02)` (the ATT, delta in treated SDs); "prep s" is one pass drawing the
data and counting the treated.

"build s": the builder (it draws the data again, reads each partition once, and runs its passes); "solve s":
`solve()`. Peak memory: the largest resident set of each worker process and of the client (getrusage). With
--in-memory (default up to 10M rows) the same data are gathered to the client and solved in memory for
comparison (their weights must agree to 1e-8; that part's time and memory are not in the dask columns).
Prints one markdown row.
"""

import argparse
import resource
import time

import numpy as np

import counterpoise as cpz


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def steps_of(solution) -> str:
    """Newton steps, "full + subsample" where the dual started from a subsample."""
    subsample = solution.info.get("subsample_iterations", 0)
    return f"{solution.iterations} + {subsample}" if subsample else f"{solution.iterations}"


def population_margins(ddf, variables, seed=1) -> dict:
    totals = {var: ddf.groupby(var)["d"].sum() for var in variables}
    import dask
    totals, d_total = dask.compute(totals, ddf["d"].sum())
    rng = np.random.default_rng(seed)
    N = 1.1 * d_total
    margins = {}
    for var in variables:
        level = totals[var].sort_index()
        perturbed = level * rng.uniform(0.7, 1.3, len(level))
        margins[var] = (perturbed * N / perturbed.sum()).to_dict()
    return margins


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--problem", choices=["raking", "sbw"], default="raking")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument("--in-memory", choices=["auto", "yes", "no"], default="auto")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        if args.problem == "raking":
            ddf = cpz.datasets.on_dask(cpz.datasets.survey_margins, args.n, partition_rows=args.partition_rows, seed=1)
            start = time.perf_counter()
            margins = population_margins(ddf, [f"v{j + 1}" for j in range(5)])
            prep_s = time.perf_counter() - start
            build = lambda data: cpz.calibrate(data, base_weights="d", margins=margins, distance="raking")
        else:
            ddf = cpz.datasets.on_dask(cpz.datasets.confounded, args.n, partition_rows=args.partition_rows, seed=1,
                                       p=10)
            start = time.perf_counter()
            ddf["A"].sum().compute()
            prep_s = time.perf_counter() - start
            build = lambda data: cpz.sbw(data, treatment="A", covariates=[f"X{j + 1}" for j in range(10)], delta=0.02)
        start = time.perf_counter()
        problem = build(ddf)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        solution = problem.solve()
        solve_s = time.perf_counter() - start
        misfit = solution.info["max_relative_misfit"]
        workers = client.run(peak_mib)
        client_peak = peak_mib()
        comparison = "–"
        if args.in_memory == "yes" or (args.in_memory == "auto" and args.n <= 10_000_000):
            frame = ddf.compute()
            start = time.perf_counter()
            memory = build(frame).solve()
            memory_s = time.perf_counter() - start
            weights = solution.weights.compute()
            gap = float(np.max(np.abs(weights.to_numpy() - memory.weights.to_numpy())) / memory.weights.abs().max())
            comparison = (f"{memory_s:.2f} s ({steps_of(memory)} steps; weights agree to {gap:.0e})")
    print(f"| {args.problem} | {args.n:,} | {len(problem.layout)} | {prep_s:.1f} | {build_s:.1f} | "
          f"{solve_s:.1f} | {build_s + solve_s:.1f} | {steps_of(solution)} | {solution.status} | {misfit:.0e} | "
          f"{max(workers.values()):.0f} | {client_peak:.0f} | {comparison} |")


if __name__ == "__main__":
    main()
