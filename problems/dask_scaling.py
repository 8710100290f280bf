"""Raking on a Dask LocalCluster as the rows grow: time, Newton steps and peak memory, against the in-memory solve.

    for n in 1000000 10000000 100000000; do python problems/dask_scaling.py --n $n; done

One size per process (so that the client's peak memory is its own). The data are `datasets.survey_margins`
drawn on the workers (`datasets.on_dask`, 1M rows per partition, seed 1): 5 categorical variables x 10 levels,
lognormal design weights. The population margins are each level's total of d over the whole data times a factor
from U(0.7, 1.3) (default_rng(1)), rescaled so every variable sums to N = 1.1 sum(d): one pass over the data
("margins s", which also draws it once). Then `cpz.calibrate(ddf, margins=..., base_weights="d",
distance="raking")` ("build s": it draws the data again, reads it once, and runs the checks) and `solve()`
("solve s"). Peak memory: the largest resident set of each worker process and of the client (getrusage). With
--in-memory (default up to 10M rows) the same data are gathered to the client and raked in memory for
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
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument("--in-memory", choices=["auto", "yes", "no"], default="auto")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        ddf = cpz.datasets.on_dask(cpz.datasets.survey_margins, args.n, partition_rows=args.partition_rows, seed=1)
        variables = [f"v{j + 1}" for j in range(5)]
        start = time.perf_counter()
        margins = population_margins(ddf, variables)
        margins_s = time.perf_counter() - start
        start = time.perf_counter()
        problem = cpz.calibrate(ddf, base_weights="d", margins=margins, distance="raking")
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        solution = problem.solve()
        solve_s = time.perf_counter() - start
        report = solution.validate()
        workers = client.run(peak_mib)
        client_peak = peak_mib()
        comparison = "–"
        if args.in_memory == "yes" or (args.in_memory == "auto" and args.n <= 10_000_000):
            frame = ddf.compute()
            start = time.perf_counter()
            memory = cpz.calibrate(frame, base_weights="d", margins=margins, distance="raking").solve()
            memory_s = time.perf_counter() - start
            weights = solution.weights.compute()
            gap = float(np.max(np.abs(weights.to_numpy() - memory.weights.to_numpy())) / memory.weights.abs().max())
            comparison = f"{memory_s:.2f} s ({memory.iterations} steps; weights agree to {gap:.0e})"
    print(f"| {args.n:,} | {len(problem.blocks.sizes)} | {margins_s:.1f} | {build_s:.1f} | {solve_s:.1f} | "
          f"{build_s + solve_s:.1f} | {solution.iterations} | {solution.status} | "
          f"{report['max_relative_error']:.0e} | {max(workers.values()):.0f} | {client_peak:.0f} | {comparison} |")


if __name__ == "__main__":
    main()
