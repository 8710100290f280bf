"""A user's own affine constraint on the fast engine, against the same problem without it and against cvxpy.

    python problems/user_terms.py [--sizes 20000,200000,1000000] [--cvxpy-up-to 200000] [--repeats 3]

SBW on kim2023 (weak overlap, X1..X6, ATT, delta 0.02 SD), solved by backend="auto", with and without the term of
the issue that asked for it: "controls with X4 > 1 hold at most 80% of their current share", written as a user
writes it (`counterpoise.terms.ShareCap`, a plain `Term` whose constraint is `mask @ w <= share * cp.sum(w)` and
which no backend knows by name), "current share" being what the unconstrained SBW weights give them (so the cap
binds). Times are build + solve (the builder, `add`, the first
`solve()`), best of `--repeats`, data drawn beforehand; cvxpy is the same problem with backend="cvxpy" (CLARABEL).
Prints a markdown table; the objective gap is the fast solve's against cvxpy's, relative.
"""

import argparse
import time

import counterpoise as cpz
from counterpoise.terms import ShareCap

COVARIATES = ["X1", "X2", "X3", "X4", "X5", "X6"]


def solve(data, backend="auto", cap=None):
    """(seconds for build + solve, the solution), the cap (mask, share) added when given."""
    start = time.perf_counter()
    prob = cpz.sbw(data, treatment="A", covariates=COVARIATES, estimand="ATT", delta=0.02)
    if cap is not None:
        prob.add(ShareCap(*cap))
    solution = prob.solve(backend=backend)
    return time.perf_counter() - start, solution


def best(repeats, *args, **options):
    runs = [solve(*args, **options) for _ in range(repeats)]
    return min(seconds for seconds, _ in runs), runs[0][1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20000,200000,1000000")
    parser.add_argument("--cvxpy-up-to", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| n | without the term s | with it s | ratio | backend | cvxpy s | objective gap vs cvxpy |")
    print("|---:|---:|---:|---:|---|---:|---:|")
    for n in (int(v) for v in args.sizes.split(",")):
        data = cpz.datasets.kim2023(n=n, overlap="weak", seed=1)
        plain_seconds, plain = best(args.repeats, data)
        mask = data.loc[plain.weights.index, "X4"].to_numpy() > 1
        cap = (mask, 0.8 * float(plain.weights[mask].sum()))
        seconds, capped = best(args.repeats, data, cap=cap)
        reference, gap = "", ""
        if n <= args.cvxpy_up_to:
            cvxpy_seconds, exact = solve(data, "cvxpy", cap)
            reference = f"{cvxpy_seconds:.2f}"
            gap = f"{abs(capped.objective - exact.objective) / exact.objective:.1e}"
        print(f"| {n} | {plain_seconds:.3f} | {seconds:.3f} | {seconds / plain_seconds:.2f} | {capped.backend} | "
              f"{reference} | {gap} |", flush=True)


if __name__ == "__main__":
    main()
