"""Choosing a balancing problem's tolerance delta from the data.

`BootstrapDelta` is Wang & Zubizarreta's (2020) rule, the one R's sbw runs by default (`bal_alg = TRUE`): for every
delta on a grid (sbw's `bal_gri`: 1e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1), solve for the weights w(delta)
on the full sample; then, on each of `samples` bootstrap resamples b of every weighted arm's units (with
replacement, the weights held fixed), measure the arm's imbalance

    C_b(delta) = mean_j | (sum_{i in b} w_i x_ij / sum_{i in b} w_i - t_j) / s_j |

over its balance columns j (targets t_j, and s_j the scale delta is measured in: the SD of `std` for
delta_scale="sd", 1 for "raw", as sbw's bal_std "group" / "target" / "manual"); C(delta) is the mean of C_b over
the resamples, summed over the arms, and the chosen delta minimizes it. Too small a delta fits the sample's noise
(high variance weights whose balance does not survive resampling), too large a delta leaves bias. A resample draws
the arm's n units with replacement, as R's sample(n, replace = TRUE); R draws new resamples for every grid point,
here every grid point sees the same resamples (common random numbers, each drawn once), so the curve is smooth in
delta and the choice reproducible from `seed`. The grid is solved as a warm-started path; a
grid point without weights (infeasible) is skipped.

`TightestDelta` is the smallest delta for which weights exist: the linear program min t s.t. every balance
column swept by "delta" within t s_j, the problem's other constraints as they are (by cvxpy in memory; by column
generation on a dask DataFrame's partitions, `tightest.tightest_tolerance`). At t itself the feasible set
is a single face and a QP solver stalls on it, so the delta set is t (1 + margin) + 1e-9 (margin 1e-3 by default;
`DeltaTuning.tightest` keeps t).

Both set the problem's "delta" and return a `DeltaTuning` (the curve and the choice), which the solution keeps as
`solution.tuning`. `resolve(delta)` turns a builder's `delta` argument ("auto", "tightest", a tuner, or a number)
into (the number to build with, the tuner or None).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .diagnostics import imbalance_of, resampled_sums
from .errors import InfeasibleError, InputError, SolverError
from .partitioned import PartitionedProblem, resampled_arms
from .tightest import tightest_tolerance
from .terms.constraints import Balance
from .validation import check, integer

#: R sbw's default grid of tolerances for its tuning algorithm (bal_gri).
SBW_GRID = (0.0001, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


@dataclass(frozen=True)
class DeltaTuning:
    """What a tuner chose. `delta` is the value set; `grid` and `statistic` are the bootstrap curve (empty for the
    tightest delta); `status` is each grid point's solve status."""

    method: str
    delta: float
    grid: tuple = ()
    statistic: tuple = ()
    status: tuple = ()
    samples: int = 0
    seed: object = None
    tightest: float | None = None

    def table(self):
        """The curve as a DataFrame: delta, status, statistic (NaN where no weights)."""
        import pandas as pd

        return pd.DataFrame({"delta": self.grid, "status": self.status, "statistic": self.statistic})


@dataclass(frozen=True)
class BootstrapDelta:
    """Wang & Zubizarreta's bootstrap choice of delta over `grid` with `samples` resamples (see the module)."""

    grid: tuple = SBW_GRID
    samples: int = 1000
    seed: object = 0

    def __post_init__(self):
        grid = np.asarray(self.grid, dtype=float)
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
            raise InputError(f"the delta grid must be a non-empty list of positive numbers, got {self.grid!r}")
        check("samples", self.samples, integer(1))
        check("seed", self.seed, integer(0))
        object.__setattr__(self, "grid", tuple(np.sort(grid)[::-1]))    # large to small: the warm path's order

    @property
    def start(self) -> float:
        return self.grid[0]

    def tune(self, problem, backend="auto") -> DeltaTuning:
        path = problem.path(delta=list(self.grid), backend=backend, raise_on_failure=False)
        live = [g for g, sol in enumerate(path.solutions) if sol.status == "optimal"]
        totals = np.zeros(len(path.solutions))
        arms = resampled_arms(problem, [path.solutions[g] for g in live]) if isinstance(problem, PartitionedProblem) \
            else _arms(problem, [path.solutions[g].weights.to_numpy() for g in live])
        for arm, (n, sums) in enumerate(arms):
            totals[live] += self._arm_totals(n, arm, sums)
        values = np.full(len(totals), np.nan)
        values[live] = totals[live] / self.samples
        if np.all(np.isnan(values)):
            raise InfeasibleError(f"no delta on the grid {list(self.grid)} has weights: every grid point is "
                                  f"infeasible or failed ({[s.status for s in path.solutions]}); give larger values")
        best = float(self.grid[int(np.nanargmin(values))])
        problem.set(delta=best)
        return DeltaTuning("bootstrap", best, self.grid, tuple(float(v) for v in values),
                           tuple(s.status for s in path.solutions), self.samples, self.seed)

    def _arm_totals(self, n, arm, sums) -> np.ndarray:
        """Per weight vector of the arm's n units, the sum over resamples of mean_j |(c w)' A_j / (c' w)|, A the
        arm's centred, scaled balance columns and c a resample's counts of each unit: resample b draws n units with
        replacement (R's sample(n, replace = TRUE)) from default_rng((seed, arm, b)), so each resample is drawn once,
        whatever the grid, the chunking, the storage or the machine. Resamples go in chunks of about 128 MB of counts
        (one byte per unit); `sums(counts)` gives their `diagnostics.resampled_sums`."""
        totals = 0.0
        per_chunk = max(1, min(self.samples, 2 ** 27 // max(n, 1)))
        for start in range(0, self.samples, per_chunk):
            draws = range(start, min(start + per_chunk, self.samples))
            counts = np.empty((len(draws), n), dtype=np.uint8)       # a count above 255 has probability < 1e-400
            for row, b in enumerate(draws):
                counts[row] = np.bincount(np.random.default_rng([self.seed, arm, b]).integers(0, n, n), minlength=n)
            totals = totals + imbalance_of(*sums(counts)).sum(axis=0)
        return totals


@dataclass(frozen=True)
class TightestDelta:
    """The smallest delta for which weights exist (see the module)."""

    solver: str = "CLARABEL"
    margin: float = 1e-3

    def __post_init__(self):
        if not (isinstance(self.margin, (int, float)) and 0 <= self.margin < 1):
            raise InputError(f"margin must be a number in [0, 1), got {self.margin!r}")

    @property
    def start(self) -> float:
        return 1.0

    def tune(self, problem, backend="auto") -> DeltaTuning:
        if isinstance(problem, PartitionedProblem):     # its units on the partitions: by column generation
            tightest = tightest_tolerance(problem)
        else:
            tightest = self._tightest(problem)
        delta = tightest * (1 + self.margin) + 1e-9
        problem.set(delta=delta)
        return DeltaTuning("tightest", delta, tightest=tightest)

    def _tightest(self, problem) -> float:
        """The LP's optimal t, by cvxpy with every term of the problem in memory."""
        import cvxpy as cp

        swept = [t for t in problem.terms if isinstance(t, Balance) and t.tolerance == "delta" and not t.exact]
        if not swept:
            raise InputError("this problem has no balance tolerance named 'delta' to tighten")
        w = cp.Variable(problem.n)
        t = cp.Variable(nonneg=True)
        constraints = []
        saved = [(term, np.array(term.delta.value)) for term in swept]
        try:
            for term in swept:
                term.delta.value = np.zeros(term.delta.shape)
                constraints += term.constraints(w, slack=t)
            for term in problem.terms:
                if term not in swept:
                    constraints += term.constraints(w)
            lp = cp.Problem(cp.Minimize(t), constraints)
            lp.solve(solver=self.solver)
        finally:
            for term, value in saved:
                term.delta.value = value
        if lp.status not in ("optimal", "optimal_inaccurate") or t.value is None:
            raise SolverError(f"the linear program for the tightest delta ended with status {lp.status!r} "
                              f"({self.solver}): the problem's other constraints may have no solution")
        return max(float(t.value), 0.0)


def resolve(delta):
    """(value to build with, tuner or None) for a builder's `delta`: "auto" (BootstrapDelta()), "tightest"
    (TightestDelta()), a tuner, or a number (returned as it is)."""
    if isinstance(delta, str):
        tuners = {"auto": BootstrapDelta, "tightest": TightestDelta}
        if delta not in tuners:
            raise InputError(f"delta must be a number, 'auto', 'tightest' or a tuner, got {delta!r}")
        delta = tuners[delta]()
    if isinstance(delta, (BootstrapDelta, TightestDelta)):
        return delta.start, delta
    return delta, None


def _arms(problem, weights) -> list:
    """Per weighted arm of a problem in memory: (its units, sums(counts): the resampled sums of the arm's part of
    each of `weights` with its balance columns centred at the targets and divided by their scales, gathered over
    every balance term of that arm)."""
    arms = {}
    for term in problem.terms:
        if not isinstance(term, Balance):
            continue
        rows = np.arange(problem.n) if term.rows is None else np.asarray(term.rows)
        key = rows.tobytes()
        A = (term.B - np.asarray(term.target.value, dtype=float)) / term.scale
        if key in arms:
            arms[key] = (rows, np.hstack([arms[key][1], A]))
        else:
            arms[key] = (rows, A)
    return [(len(rows), partial(resampled_sums, weights=[w[rows] for w in weights], A=A)) for rows, A in arms.values()]


__all__ = ["SBW_GRID", "BootstrapDelta", "DeltaTuning", "TightestDelta", "resolve"]
