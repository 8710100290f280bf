"""Weighting problems on the partitions of a Dask collection, and their solutions.

A `PartitionedProblem` is what a builder returns for a dask DataFrame (`families.on_dask`): the calibration
Newton's blocks persisted on the workers, one per partition, and the targets on the client. `solve()` runs the
same Newton as in memory (`backends.calibration.newton`), each step one tree reduction over the partitions, and
returns a `PartitionedSolution`: the weights as a lazy dask Series aligned with the input's partitions, the
balance table, ESS and `validate()` computed partition-wise, and `compute()` for the in-memory `Solution`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse

from . import diagnostics
from .backends.calibration import calibrated_weights, newton, newton_message
from .errors import CalibrationError, InputError
from .solution import Solution
from .validation import warn


class PartitionedProblem:
    """Calibration of base weights d to totals T on a Dask collection's partitions.

    blocks: `backends.blocks.DaskBlocks` of the Newton's (rows, distance, d, lo, hi), one per partition; index: the
    partitions' indexes (Delayed); divisions: the input's; names, T: every target; keep: the targets the Newton
    holds (exactly redundant ones dropped); scale: each target's misfit scale; N: the population size a margin
    gives (None without margins); note: None, or note(count, n, smallest) -> the warning said after an optimal
    solve that made `count` weights negative (linear calibration)."""

    def __init__(self, blocks, index, divisions, names, T, keep, scale, N, family, note=None):
        self.blocks, self.index, self.divisions = blocks, index, divisions
        self.names, self.T, self.keep, self.scale, self.N = list(names), np.asarray(T), np.asarray(keep), scale, N
        self.family, self.note = family, note
        self.lam = None                 # the last converged dual point: a warm start

    @property
    def n(self) -> int:
        return sum(self.blocks.sizes)

    def solve(self, backend="auto", raise_on_failure=True, epsilon=1e-9, max_iter=100, warm_start=True,
              callback=None) -> "PartitionedSolution":
        """Solve by the calibration Newton on the partitions (backend "auto" or "calibration"): converged when
        max |x_j'w - T_j| / (1 + |T_j|) < epsilon. `callback(iteration, lam)` runs after every Newton step.
        Without convergence a CalibrationError names the worst targets, unless raise_on_failure=False."""
        if backend not in ("auto", "calibration"):
            raise InputError(f"a problem on dask partitions is solved by the calibration Newton (backend "
                             f"'calibration' or 'auto'), not {backend!r}")
        start = time.perf_counter()
        t = self.T[self.keep] / self.scale
        lam = self.lam if warm_start and self.lam is not None else np.zeros(len(t))
        run = newton(self.blocks, t, self.scale, lam, epsilon, max_iter, callback)
        self.lam = run.lam if run.converged else None
        kind = self.family.split("/")[-1]
        solution = PartitionedSolution(
            problem=self, lam=run.lam, status="optimal" if run.converged else "inaccurate",
            solver=f"newton/{kind}", iterations=run.iterations, solve_time=time.perf_counter() - start,
            message=newton_message(kind, run.iterations, run.largest, epsilon, run.converged,
                                   run.worst([self.names[j] for j in self.keep])),
            info={"max_relative_misfit": run.largest, "step_halvings": run.halvings, "epsilon": epsilon,
                  "partitions": len(self.blocks.sizes)},
            duals=pd.Series(-run.lam, index=[f"totals:{self.names[j]}" for j in self.keep], name="dual"))
        if raise_on_failure and not run.converged:
            raise CalibrationError(f"calibration on dask partitions: {solution.message}")
        if run.converged and self.note is not None:
            count, smallest = self.blocks.reduce(_negative_weights, combine=_count_and_min, lam=run.lam)
            if count:
                warn(self.note(int(count), self.n, smallest))
        return solution


@dataclass
class PartitionedSolution:
    """The weights of a `PartitionedProblem` and what the solve found. `weights` is a lazy dask Series aligned
    with the input's partitions (its index the input's); everything else is computed partition-wise, in one
    pass over the partitions, when first read."""

    problem: PartitionedProblem = field(repr=False)
    lam: np.ndarray
    status: str
    solver: str
    iterations: int
    solve_time: float
    message: str
    info: dict
    duals: pd.Series
    backend: str = "calibration"

    @property
    def ok(self) -> bool:
        return self.status == "optimal"

    @cached_property
    def weights(self):
        """The weights, a lazy dask Series named "weight" aligned with the input's partitions."""
        import dask
        import dask.dataframe as dd

        parts = [dask.delayed(_weight_series)(block, index, self.lam)
                 for block, index in zip(self.problem.blocks.blocks, self.problem.index)]
        return dd.from_delayed(parts, meta=pd.Series(dtype=float, name="weight"), divisions=self.problem.divisions,
                               verify_meta=False)

    @cached_property
    def _sums(self) -> dict:
        """One pass over the partitions: the base-weighted and weighted totals of every target column, the sums of
        d, d^2, w, w^2, d x^2 (for the SDs), the distance's value, max w / d and the number of positive weights."""
        names = ("before", "after", "d", "d2", "w", "w2", "dx2", "objective", "positive")
        values = self.problem.blocks.reduce(_solution_sums, lam=self.lam)
        sums = dict(zip(names, values))
        sums["max_ratio"] = self.problem.blocks.reduce(_max_ratio, combine=np.maximum, lam=self.lam)
        return sums

    @property
    def objective(self) -> float:
        return float(self._sums["objective"])

    @cached_property
    def balance(self) -> pd.DataFrame:
        """The balance table of the totals (`diagnostics.balance_table`'s columns), from sums over the partitions."""
        s = self._sums
        mean = s["before"] / s["d"]
        squares = np.maximum(s["dx2"] - mean ** 2 * s["d"], 0.0)
        sd = diagnostics.sds_from_sums(squares, s["d"], s["d2"])
        return diagnostics.total_balance_table(self.problem.names, self.problem.T, s["before"], s["after"], sd,
                                               self.problem.N, s["d"], s["w"])

    @property
    def ess(self) -> float:
        """Kish effective sample size (sum w)^2 / sum w^2."""
        return float(self._sums["w"] ** 2 / self._sums["w2"])

    def validate(self) -> dict:
        """As `Solution.validate()`: per target actual, target, relative and absolute error; the largest relative
        error; records kept (w > 0); ESS, design effect, max w / d; the status (no top 1% share: it needs the
        weights sorted, which `compute()` gives)."""
        table = self.balance.xs("sample", level=0)
        actual, target = table["after"].to_numpy(), table["target"].to_numpy()
        relative = np.abs(actual - target) / np.where(target != 0, np.abs(target), 1.0)
        targets = pd.DataFrame({"actual": actual, "target": target, "relative_error": relative,
                                "error": actual - target}, index=table.index)
        return {"targets": targets, "max_relative_error": float(relative.max()),
                "records": int(self._sums["positive"]), "ess": self.ess, "design_effect": self.problem.n / self.ess,
                "max_weight_ratio": float(self._sums["max_ratio"]), "status": self.status}

    def compute(self) -> Solution:
        """The in-memory `Solution`: the weights and the calibration matrix gathered to the client."""
        import dask

        from .families.totals import total_design

        pieces = dask.compute(*[dask.delayed(_gathered)(block, index, self.lam)
                                for block, index in zip(self.problem.blocks.blocks, self.problem.index)])
        X = [p[0] for p in pieces]
        X = scipy.sparse.vstack(X, format="csr") if scipy.sparse.issparse(X[0]) else np.vstack(X)
        d = np.concatenate([p[1] for p in pieces])
        weights = pd.concat([p[2] for p in pieces])
        design = total_design(X, self.problem.names, self.problem.T, self.problem.N, d)
        return Solution(weights=weights, status=self.status, objective=self.objective, solve_time=self.solve_time,
                        backend=self.backend, solver=self.solver, duals=self.duals,
                        violations={"totals": self.info["max_relative_misfit"]}, tolerance=self.info["epsilon"],
                        weight_scale="population totals (w = g d)", iterations=self.iterations, message=self.message,
                        design=design, info=self.info, solver_status=self.status)


def _weight_series(block, index, lam) -> pd.Series:
    return pd.Series(calibrated_weights(*block, lam=lam), index=index, name="weight")


def _solution_sums(rows, distance, d, lo, hi, lam):
    w = calibrated_weights(rows, distance, d, lo, hi, lam=lam)
    X = rows.B
    squares = X.power(2) if scipy.sparse.issparse(X) else X * X
    return (X.T @ d, X.T @ w, d.sum(), d @ d, w.sum(), w @ w, squares.T @ d,
            float(d @ distance.G(np.where(d > 0, w / d, 1.0))), float(np.sum(w > 0)))


def _max_ratio(rows, distance, d, lo, hi, lam):
    """max w / d over a block (0 for an empty one)."""
    w = calibrated_weights(rows, distance, d, lo, hi, lam=lam)
    return float(np.max(w / d, initial=0.0))


def _negative_weights(rows, distance, d, lo, hi, lam):
    """(the number of negative weights, the smallest weight) of a block."""
    w = calibrated_weights(rows, distance, d, lo, hi, lam=lam)
    return float(np.sum(w < 0)), float(np.min(w, initial=np.inf))


def _count_and_min(a, b):
    return a[0] + b[0], min(a[1], b[1])


def _gathered(block, index, lam):
    rows, distance, d, lo, hi = block
    return rows.B, d, _weight_series(block, index, lam)
