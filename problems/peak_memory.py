"""Peak memory and time of the two 1M solves the redesign issue names, each in a process of its own.

    python problems/peak_memory.py kernel-sbw [--n 1000000]
    python problems/peak_memory.py raking [--n 1000000]
    python problems/peak_memory.py kernel-sbw-87 [--n 1273636]

kernel-sbw: kernel_sbw(kim2023(n, seed=1), treatment="A", covariates=X1..X6, estimand="ATT", delta=0.01), then
solve(backend="auto"). kernel-sbw-87: the paper's case-study shape, kernel_sbw(medicare_like(n, seed=1),
treatment="A", covariates=its 87, estimand="ATT") at the defaults (kernel basis and means within 0.02 SD), then
solve(backend="auto"). raking: calibrate(survey_margins(n, seed=1), margins=its attrs, base_weights="d",
distance="raking"), then solve(backend="calibration"). Prints one markdown row: the data frame's size; from
tracemalloc (numpy and Python allocations), the build's peak, what the problem holds after the build, the solve's
peak above that; the process's peak resident set (ru_maxrss: interpreter and libraries included); build and solve
seconds (under tracemalloc, which slows Python-heavy code: time the same with --no-trace). tracemalloc does not see
the large matrices mapped by counterpoise.memory (kernel SBW's [D, X]): for those, read the resident set. Newton
steps for the dual: full-size steps + the subsample start's.
"""

import argparse
import resource
import time
import tracemalloc

import counterpoise as cpz

MB = 2 ** 20


def builder(case, data):
    if case == "kernel-sbw-87":
        return lambda: cpz.kernel_sbw(data, treatment="A", covariates=data.attrs["covariates"], estimand="ATT"), "auto"
    if case == "kernel-sbw":
        return lambda: cpz.kernel_sbw(data, treatment="A", covariates=[f"X{j}" for j in range(1, 7)],
                                      estimand="ATT", delta=0.01), "auto"
    return lambda: cpz.calibrate(data, base_weights="d", margins=data.attrs["margins"], distance="raking"), \
        "calibration"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["kernel-sbw", "kernel-sbw-87", "raking"])
    parser.add_argument("--n", type=int, default=None, help="rows (default 1,000,000; 1,273,636 for kernel-sbw-87)")
    parser.add_argument("--no-trace", action="store_true", help="times only (no tracemalloc)")
    args = parser.parse_args()
    generators = {"kernel-sbw": cpz.datasets.kim2023, "kernel-sbw-87": cpz.datasets.medicare_like,
                  "raking": cpz.datasets.survey_margins}
    args.n = args.n or (1_273_636 if args.case == "kernel-sbw-87" else 1_000_000)
    data = generators[args.case](args.n, seed=1)
    build, backend = builder(args.case, data)
    trace = not args.no_trace
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    problem = build()
    built = time.perf_counter()
    held = build_peak = 0
    if trace:
        held, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
    solution = problem.solve(backend=backend)
    solved = time.perf_counter()
    solve_peak = tracemalloc.get_traced_memory()[1] - held if trace else 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    steps = f"{solution.iterations} + {solution.info['subsample_iterations']}" \
        if "subsample_iterations" in solution.info else f"{solution.iterations}"
    print(f"| {args.case} | {args.n:,} | {solution.backend} {solution.status} | {steps} | "
          f"{data.memory_usage(deep=True).sum() / MB:.0f} | {build_peak / MB:.0f} | {held / MB:.0f} | "
          f"{solve_peak / MB:.0f} | {rss / MB:.0f} | {built - start:.1f} | {solved - built:.1f} |")


if __name__ == "__main__":
    main()
