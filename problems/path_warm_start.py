"""Warm-started delta paths against cold solves, per backend: the paper's Appendix D experiment.

    python problems/path_warm_start.py [--sizes 10000,100000] [--backends dual,osqp] [--points 100]

Kernel SBW on kim2023 (weak overlap, X, m = 300, l = 200, s = 100, ATT), delta on the raw basis columns from
0.01 down to 0.0005 (geometric, `--points` values). "warm" is `prob.path(backend=..., delta=deltas)`; "cold" solves
the same problem at each delta with warm_start=False (for osqp: a new problem each time, so it factors again).
Prints a markdown table; times exclude building the basis. The objective gap compares each path with the
first backend's cold solves (list dual first: it is exact).
"""

import argparse
import time

import numpy as np

import counterpoise as cpz


def cold_solves(data, backend, deltas):
    """Seconds for one cold solve per delta, and the objectives."""
    elapsed, objectives = 0.0, []
    shared = cpz.kernel_sbw(data, treatment="A", delta=deltas[0], delta_scale="raw", means=False)
    for delta in deltas:
        # dual: the same problem without its warm start; osqp: a fresh problem, so it factors again
        prob = shared if backend == "dual" else cpz.kernel_sbw(data, treatment="A", delta=delta, delta_scale="raw",
                                                               means=False)
        options = {"warm_start": False} if backend == "dual" else {}
        start = time.perf_counter()
        solution = prob.set(delta=delta).solve(backend=backend, raise_on_failure=False, **options)
        elapsed += time.perf_counter() - start
        objectives.append(solution.objective)
    return elapsed, np.array(objectives)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="dual,osqp")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    deltas = np.geomspace(0.01, 0.0005, args.points)
    print("| n | backend | warm path s | cold solves s | cold / warm | path iterations | max objective gap warm vs cold |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in (int(v) for v in args.sizes.split(",")):
        data = cpz.datasets.kim2023(n=n, overlap="weak", seed=args.seed)
        reference = None
        for backend in args.backends.split(","):
            prob = cpz.kernel_sbw(data, treatment="A", delta=deltas[0], delta_scale="raw", means=False)
            start = time.perf_counter()
            path = prob.path(backend=backend, delta=deltas, raise_on_failure=False)
            warm = time.perf_counter() - start
            cold, objectives = cold_solves(data, backend, deltas)
            reference = objectives if reference is None else reference     # the first backend's cold solves
            gap = np.max(np.abs(np.array([s.objective for s in path]) - reference) / reference)
            iterations = sum(s.iterations or 0 for s in path)
            print(f"| {n} | {backend} | {warm:.2f} | {cold:.2f} | {cold / warm:.1f} | {iterations} | {gap:.1e} |",
                  flush=True)


if __name__ == "__main__":
    main()
