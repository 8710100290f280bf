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


@dataclass
class Report:
    """What the balance table of a problem on partitions compares: the columns `names` of the blocks' rows (rows.B)
    in group `group`, as weighted totals (kind "total", SMDs over N sd with N = `size`, or the sum of the weights)
    or means (kind "mean", plus `offset` when the rows are centred), against `target`, with the fixed SDs `sd`
    (those `std` names: "target", "pooled", ...)."""

    names: list
    group: str
    kind: str
    target: np.ndarray
    sd: np.ndarray
    offset: np.ndarray | None = None
    size: float | None = None
    std: str = "target"

    def table(self, before, base_total, after, total) -> pd.DataFrame:
        """The table from sum_i d_i b_i (`before`), sum d, sum_i w_i b_i (`after`) and sum w."""
        return diagnostics.group_balance_table(self.names, self.group, self.kind, self.target, (before, base_total),
                                               (after, total), self.sd, self.offset, self.size, self.std)

    def design(self, X, d) -> diagnostics.BalanceDesign:
        """The in-memory balance design, given the gathered rows X and base weights d."""
        return diagnostics.BalanceDesign(
            names=tuple(self.names), X=X, groups=np.full(len(d), self.group, dtype=object), base_weights=d,
            targets={self.group: self.target}, denominators={self.std: self.sd}, std=self.std, kind=self.kind,
            population_size=None if self.size is None else {self.group: self.size}, offset=self.offset,
            checked=True)


class PartitionedProblem:
    """A weighting problem on a Dask collection's partitions, solved by the calibration Newton.

    blocks: `backends.blocks.DaskBlocks` of the Newton's (rows, distance, d, lo, hi), one per partition (the
    weighted units only); index: those units' index per partition (Delayed); divisions: the input's; t, scale: the
    Newton's scaled targets and their scales (T = scale t), `targets` their names; report: the balance table's
    `Report`; weight_scale: what the weights sum to, in words; note: None, or note(count, n, smallest) -> the
    warning said after an optimal solve that made `count` weights negative (linear calibration); estimand and
    sample_weights (the base weights' column): what `cpz.estimate` reads, as for a `WeightingProblem`."""

    def __init__(self, blocks, index, divisions, t, scale, targets, report, family, weight_scale, note=None,
                 estimand=None, sample_weights=None):
        self.blocks, self.index, self.divisions = blocks, index, divisions
        self.t, self.scale, self.targets = np.asarray(t, dtype=float), np.asarray(scale, dtype=float), list(targets)
        self.report, self.family, self.weight_scale, self.note = report, family, weight_scale, note
        self.estimand, self.sample_weights = estimand, sample_weights
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
        lam = self.lam if warm_start and self.lam is not None else np.zeros(len(self.t))
        run = newton(self.blocks, self.t, self.scale, lam, epsilon, max_iter, callback)
        self.lam = run.lam if run.converged else None
        kind = self.family.split("/")[-1]
        solution = PartitionedSolution(
            problem=self, lam=run.lam, status="optimal" if run.converged else "inaccurate",
            solver=f"newton/{kind}", iterations=run.iterations, solve_time=time.perf_counter() - start,
            message=newton_message(kind, run.iterations, run.largest, epsilon, run.converged,
                                   run.worst(self.targets)),
            info={"max_relative_misfit": run.largest, "step_halvings": run.halvings, "epsilon": epsilon,
                  "partitions": len(self.blocks.sizes)},
            duals=pd.Series(-run.lam, index=self.targets, name="dual"))
        if raise_on_failure and not run.converged:
            raise CalibrationError(f"{self.family} on dask partitions: {solution.message}")
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
        """One pass over the partitions: the base-weighted and weighted sums of the report's columns, the sums of
        d, w and w^2, the distance's value and the number of positive weights; and max w / d."""
        names = ("before", "after", "d", "w", "w2", "objective", "positive")
        sums = dict(zip(names, self.problem.blocks.reduce(_solution_sums, lam=self.lam)))
        sums["max_ratio"] = self.problem.blocks.reduce(_max_ratio, combine=np.maximum, lam=self.lam)
        return sums

    @property
    def objective(self) -> float:
        return float(self._sums["objective"])

    @cached_property
    def balance(self) -> pd.DataFrame:
        """The balance table (`diagnostics.balance_table`'s columns), from sums over the partitions."""
        s = self._sums
        return self.problem.report.table(s["before"], s["d"], s["after"], s["w"])

    @property
    def ess(self) -> float:
        """Kish effective sample size (sum w)^2 / sum w^2."""
        return float(self._sums["w"] ** 2 / self._sums["w2"])

    def validate(self) -> dict:
        """As `Solution.validate()` for a calibration: per target actual, target, relative and absolute error; the
        largest relative error; records kept (w > 0); ESS, design effect, max w / d; the status (no top 1% share:
        it needs the weights sorted, which `compute()` gives)."""
        if self.problem.report.kind != "total":
            raise AttributeError("validate() reports calibration to totals; this problem has no population totals")
        table = self.balance.xs(self.problem.report.group, level=0)
        actual, target = table["after"].to_numpy(), table["target"].to_numpy()
        relative = np.abs(actual - target) / np.where(target != 0, np.abs(target), 1.0)
        targets = pd.DataFrame({"actual": actual, "target": target, "relative_error": relative,
                                "error": actual - target}, index=table.index)
        return {"targets": targets, "max_relative_error": float(relative.max()),
                "records": int(self._sums["positive"]), "ess": self.ess, "design_effect": self.problem.n / self.ess,
                "max_weight_ratio": float(self._sums["max_ratio"]), "status": self.status}

    def compute(self) -> Solution:
        """The in-memory `Solution`: the weights and the report's rows gathered to the client."""
        import dask

        pieces = dask.compute(*[dask.delayed(_gathered)(block, index, self.lam)
                                for block, index in zip(self.problem.blocks.blocks, self.problem.index)])
        X = [p[0] for p in pieces]
        X = scipy.sparse.vstack(X, format="csr") if scipy.sparse.issparse(X[0]) else np.vstack(X)
        d = np.concatenate([p[1] for p in pieces])
        weights = pd.concat([p[2] for p in pieces])
        return Solution(weights=weights, status=self.status, objective=self.objective, solve_time=self.solve_time,
                        backend=self.backend, solver=self.solver, duals=self.duals,
                        violations={"targets": self.info["max_relative_misfit"]}, tolerance=self.info["epsilon"],
                        weight_scale=self.problem.weight_scale, iterations=self.iterations, message=self.message,
                        design=self.problem.report.design(X, d), info=self.info, solver_status=self.status)


def _weight_series(block, index, lam) -> pd.Series:
    return pd.Series(calibrated_weights(*block, lam=lam), index=index, name="weight")


def _solution_sums(rows, distance, d, lo, hi, lam):
    w = calibrated_weights(rows, distance, d, lo, hi, lam=lam)
    return (rows.B.T @ d, rows.B.T @ w, d.sum(), w.sum(), w @ w, float(d @ distance.G(w / d)), float(np.sum(w > 0)))


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
