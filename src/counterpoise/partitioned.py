"""Weighting problems on the partitions of a Dask collection, and their solutions.

A `PartitionedProblem` is what a builder returns for a dask DataFrame (`families.on_dask`): a Newton method's
blocks persisted on the workers, one per partition, and the targets on the client. `solve()` runs the same dual
Newton as in memory (`backends.dual.GroupDual` on `backends.units.Units` over the partitions), each step one tree
reduction over the partitions: stopped by survey's rule for exact totals (calibration, raking, entropy balancing)
or by its duality gap for tolerances (SBW, kernel SBW; calibration and entropy balancing within a tolerance). It
returns a `Solution` whose weights are a lazy dask Series aligned with the input's partitions and whose design
(`SumsOverPartitions`) computes the balance table, the ESS and `validate()` partition-wise; `compute()` gives the
in-memory `Solution`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse

from . import diagnostics
from .backends.calibration import calibrate_rows, newton_message
from .backends.dual import SUBSAMPLE_FROM, GroupDual, subsample_start
from .backends.blocks import DaskBlocks
from .backends.units import Units, block_weights
from .errors import CalibrationError, InfeasibleError, InputError, SolverError
from .progress import bar
from .solution import Path, Solution
from .validation import warn


@dataclass
class Report:
    """What the balance table of a problem on partitions compares: the columns `names` of the blocks' rows (rows.B)
    in group `group`, as weighted totals (kind "total", SMDs over N sd with N = `size`, or the sum of the weights)
    or means (kind "mean", plus `offset` when the rows are centred), against `target`, with the fixed SDs `sd`
    (those `std` names: "target", "pooled", ...); `columns` selects the shown columns among the rows'."""

    names: list
    group: str
    kind: str
    target: np.ndarray
    sd: np.ndarray
    offset: np.ndarray | None = None
    size: float | None = None
    std: str = "target"
    columns: slice = field(default_factory=lambda: slice(None))

    def table(self, before, base_total, after, total) -> pd.DataFrame:
        """The table from sum_i d_i b_i (`before`), sum d, sum_i w_i b_i (`after`) and sum w."""
        before, after = before[self.columns], after[self.columns]
        return diagnostics.group_balance_table(self.names, self.group, self.kind, self.target, (before, base_total),
                                               (after, total), self.sd, self.offset, self.size, self.std)

    def design(self, X, d) -> diagnostics.BalanceDesign:
        """The in-memory balance design, given the gathered rows X and base weights d."""
        return diagnostics.BalanceDesign(
            names=tuple(self.names), X=X[:, self.columns], groups=np.full(len(d), self.group, dtype=object),
            base_weights=d, targets={self.group: self.target}, denominators={self.std: self.sd}, std=self.std,
            kind=self.kind, population_size=None if self.size is None else {self.group: self.size}, offset=self.offset,
            checked=True)


@dataclass
class MethodRun:
    """One solve of a problem on partitions: the dual point, the status, the Newton steps, the solver's label and
    message, its statistics, and the error to raise when it failed (None when it did not)."""

    y: np.ndarray
    status: str
    iterations: int
    solver: str
    message: str
    info: dict
    error: type | None


class DualNewton:
    """The dual Newton on blocks (rows, distance, lo, hi, memo): SBW, entropy balancing with a tolerance, calibration
    with tolerances. The problem's t and scale are the group's scaled targets and its tolerances (when `normalized`,
    the sum row's last)."""

    name = "dual"

    def __init__(self, normalized=True):
        self.normalized = normalized

    def units(self, problem):
        """The group's units on the partitions, and the number of rows other than the sum."""
        k = len(problem.t) - self.normalized
        return Units(problem.blocks, k), k

    def run(self, problem, y, tol=1e-10, max_iter=200, callback=None) -> MethodRun:
        if callback is not None:
            raise InputError("callback= is for exact totals (the calibration backend's); the dual Newton with "
                             "tolerances on partitions takes none")
        units, k = self.units(problem)
        dual = GroupDual(units, problem.t[:k], problem.scale[:k], problem.t[k] if self.normalized else None)
        start_steps = 0
        if not np.any(y) and self.normalized and units.size >= SUBSAMPLE_FROM:
            start, start_steps = subsample_start(dual, tol, max_iter)
            y = y if start is None else start
        run = dual.solve(y, tol, max_iter)
        message = (f"dual Newton on partitions: relative duality gap {run.gap:.1e}, max violation "
                   f"{run.violation:.1e}")
        info = {"duality_gap": run.gap, "max_violation": run.violation, "subsample_iterations": start_steps,
                "infeasible_below": run.infeasible_below, "max_relative_misfit": run.violation}
        error = {"optimal": None, "infeasible": InfeasibleError}.get(run.status, SolverError)
        if run.status == "infeasible":
            message += (f"; no weights meet these tolerances: the dual's ray certifies it (no weights below a common "
                        f"delta of {run.infeasible_below:.4g} in the scaled units); loosen delta")
        return MethodRun(run.y, run.status, run.iterations, "newton", message, info, error)


class CalibrationNewton(DualNewton):
    """The same dual Newton to exact totals, stopped by survey's rule (`backends.calibration`): calibration,
    raking, entropy balancing. The problem's t and scale are the scaled targets and the rows' scales (T = scale t)."""

    name = "calibration"

    def run(self, problem, y, epsilon=1e-9, max_iter=100, callback=None) -> MethodRun:
        units, k = self.units(problem)
        run = calibrate_rows(units, problem.t[:k], problem.t[k] if self.normalized else None, problem.scale,
                             y if np.any(y) else None, epsilon, max_iter, callback)
        kind = problem.family.split("/")[-1]
        message = newton_message(kind, run.iterations, run.largest, epsilon, run.converged,
                                 run.worst(problem.targets))
        info = {"max_relative_misfit": run.largest, "epsilon": epsilon}
        return MethodRun(run.dual.y, "optimal" if run.converged else "inaccurate", run.iterations, f"newton/{kind}",
                         message, info, None if run.converged else CalibrationError)


class PartitionedProblem:
    """A weighting problem on a Dask collection's partitions.

    blocks: `backends.blocks.DaskBlocks` of the method's blocks, one per partition (the weighted units only);
    index: those units' index per partition (Delayed); divisions: the input's; method: `CalibrationNewton` or
    `DualNewton`; t, scale: exact totals' scaled targets and their rows' scales (T = scale t), or the dual's
    scaled targets and tolerances; `targets` their names; report: the balance table's `Report`; weight_scale: what
    the weights sum to, in words; note: None, or note(count, n, smallest) -> the warning said after an optimal
    solve that made `count` weights negative (linear calibration); estimand and sample_weights (the base weights'
    column): what `cpz.estimate` reads, as for a `WeightingProblem`; tolerances: for the dual, each tolerance
    parameter's name ("delta", "mean_delta") and the positions of its columns in `scale`, for `set` and `path`."""

    def __init__(self, blocks, index, divisions, method, t, scale, targets, report, family, weight_scale, note=None,
                 estimand=None, sample_weights=None, tolerances=None):
        self.blocks, self.index, self.divisions, self.method = blocks, index, divisions, method
        self.t, self.scale, self.targets = np.asarray(t, dtype=float), np.asarray(scale, dtype=float), list(targets)
        self.report, self.family, self.weight_scale, self.note = report, family, weight_scale, note
        self.estimand, self.sample_weights = estimand, sample_weights
        self.tolerances = tolerances or {}
        self.lam = None                 # the last optimal dual point: a warm start
        self.balance_functions = None   # a balancing_se.PartitionedFunctions, for se="balancing"

    @property
    def n(self) -> int:
        return sum(self.blocks.sizes)

    def set(self, **values) -> "PartitionedProblem":
        """Set tolerances, as `WeightingProblem.set`: `set(delta=0.01)` (a number, or one per column of that
        parameter); the next solve starts from the last dual point."""
        for key, value in values.items():
            if key not in self.tolerances:
                raise InputError(f"no parameter named {key!r}; this problem on dask partitions has "
                                 f"{sorted(self.tolerances)} (its targets are fixed when it is built)")
            positions = self.tolerances[key]
            try:
                array = np.broadcast_to(np.asarray(value, dtype=float), (len(positions),))
            except ValueError:
                raise InputError(f"{key}: a value of shape {np.shape(value)} does not fit its {len(positions)} "
                                 "columns") from None
            if not np.all(np.isfinite(array)) or np.any(array < 0):
                raise InputError(f"{key} must be finite and nonnegative, got {value!r}")
            self.scale = self.scale.copy()
            self.scale[positions] = array
        return self

    def get(self, key):
        """The current value of a tolerance parameter (per column)."""
        if key not in self.tolerances:
            raise InputError(f"no parameter named {key!r}; this problem on dask partitions has "
                             f"{sorted(self.tolerances)}")
        return self.scale[self.tolerances[key]].copy()

    def path(self, progress=None, raise_on_failure=True, **sweep) -> Path:
        """Solve once per value of one tolerance, in order, each from the last dual point (`WeightingProblem.path`):
        an infeasible point is kept with its status, and the tolerance is back at its value afterwards."""
        if len(sweep) != 1:
            raise InputError(f"path() sweeps exactly one parameter, got {sorted(sweep)}")
        (key, values), = sweep.items()
        before, solutions = self.get(key), []
        try:
            for value in bar(values, f"path over {key}", progress):
                solution = self.set(**{key: value}).solve(raise_on_failure=False)
                if raise_on_failure and solution.status not in ("optimal", "infeasible"):
                    raise SolverError(f"at {key} = {value}: {self.family} on dask partitions: {solution.message}")
                solutions.append(solution)
        finally:
            self.set(**{key: before})
        return Path(parameter=key, values=list(values), solutions=solutions)

    def check(self, *args, **options):
        """Refused: the check solves the problem with cvxpy as well, which needs every row in memory. Check the
        engine on a sample in memory instead: the same builder on `ddf.sample(frac=..., random_state=seed).compute()`,
        then `prob.check("dual")` (or "calibration")."""
        raise InputError("check() solves the problem with cvxpy too, which needs every row in memory; build the "
                         "same problem on a sample in memory (ddf.sample(frac=..., random_state=seed).compute()) and "
                         "check that one: the engine on partitions runs the same Newton steps as in memory")

    def solve(self, backend="auto", raise_on_failure=True, warm_start=True, callback=None, **options) -> Solution:
        """Solve by the problem's Newton on the partitions (backend "auto", or the method's name: "calibration"
        or "dual"). Options as the in-memory backend's (epsilon, max_iter for calibration; tol, max_iter for the
        dual); `callback(iteration, lam)` runs after every Newton step to exact totals. Without convergence the
        error names why (CalibrationError with the worst targets, InfeasibleError with the dual's certificate,
        SolverError), unless raise_on_failure=False. The `Solution`'s weights are a lazy dask Series aligned with
        the input's partitions, its design a `SumsOverPartitions` (one more pass, for the objective and the
        diagnostics, unless infeasible); `compute()` gives it in memory."""
        if backend not in ("auto", self.method.name):
            raise InputError(f"this problem on dask partitions is solved by backend {self.method.name!r} (or "
                             f"'auto'), not {backend!r}")
        start = time.perf_counter()
        lam = self.lam if warm_start and self.lam is not None else np.zeros(len(self.t))
        run = self.method.run(self, lam, callback=callback, **options)
        lam, status = run.y, run.status
        self.lam = lam if status == "optimal" else None
        solve_time = time.perf_counter() - start
        run.info["partitions"] = len(self.blocks.sizes)
        if raise_on_failure and run.error is not None:
            raise run.error(f"{self.family} on dask partitions: {run.message}")
        design = SumsOverPartitions(self, lam)
        sums = design.sums if status != "infeasible" else {"objective": np.nan, "negative": 0}
        if status == "optimal" and self.note is not None and sums["negative"]:
            warn(self.note(int(sums["negative"]), self.n, sums["smallest"]))
        return Solution(weights=self.weights(lam), status=status, objective=float(sums["objective"]),
                        solve_time=solve_time, backend=self.method.name, solver=run.solver,
                        duals=pd.Series(-lam, index=self.targets, name="dual"),
                        violations={"targets": run.info["max_relative_misfit"]},
                        tolerance=run.info.get("epsilon", 1e-6), weight_scale=self.weight_scale,
                        parameters={key: self.get(key) for key in self.tolerances}, iterations=run.iterations,
                        message=run.message, design=design, problem=self, info=run.info, solver_status=status,
                        dual_point=lam)

    def weights(self, lam):
        """The weights at the dual point lam: a lazy dask Series named "weight" aligned with the input's
        partitions."""
        import dask
        import dask.dataframe as dd

        parts = [dask.delayed(_weight_series)(block, index, lam) for block, index in zip(self.blocks.blocks, self.index)]
        return dd.from_delayed(parts, meta=pd.Series(dtype=float, name="weight"), divisions=self.divisions,
                               verify_meta=False)


class SumsOverPartitions:
    """The balance design of a solution on partitions (its `Solution.design`): the weights are w(A'lam) on the
    problem's blocks, and the balance table, the ESS and the weight summary come from one pass of sums over the
    partitions, made when first read; `gather` brings the weights and the report's rows to the client as the
    in-memory `Solution` (`Solution.compute`)."""

    in_memory = False

    def __init__(self, problem, lam):
        self.problem, self.lam, self.kind, self.size = problem, lam, problem.report.kind, problem.n

    @cached_property
    def sums(self) -> dict:
        """sum_i d_i b_i and sum_i w_i b_i over the report's rows b; sums of d, w and w^2; the distance's value; the
        numbers of positive and of negative weights; the largest w, the largest w / d and the smallest w."""
        return dict(zip(SUMS, self.problem.blocks.reduce(_solution_sums, combine=_combine_sums, lam=self.lam)))

    def table(self, weights=None, std=None) -> pd.DataFrame:
        """The balance table (`diagnostics.balance_table`'s columns) of the weights, from the sums."""
        report, s = self.problem.report, self.sums
        if std not in (None, report.std):
            raise InputError(f"the balance table on partitions has the SDs it was built with ({report.std!r}); "
                             f"build the problem with std={std!r}, or compute() the solution first")
        return report.table(s["before"], s["d"], s["after"], s["w"])

    def ess(self, weights=None) -> float:
        """Kish's effective sample size (sum w)^2 / sum w^2."""
        return float(self.sums["w"] ** 2 / self.sums["w2"])

    def weight_summary(self, weights=None) -> pd.DataFrame:
        """`diagnostics.weight_summary`'s row for the weighted group, from the sums (top_1pct_share NaN: it needs the
        weights sorted)."""
        s, n = self.sums, self.problem.n
        row = {"n": n, "n_nonzero": int(s["positive"]), "sum": float(s["w"]), "ess": self.ess(),
               "design_effect": n / self.ess(), "max_weight_ratio": float(s["max_w"] / (s["w"] / n)),
               "max_ratio_to_base": float(s["max_ratio"]), "top_1pct_share": np.nan}
        table = pd.DataFrame.from_dict({self.problem.report.group: row}, orient="index")
        table.index.name = "group"
        return table

    def gather(self, solution) -> Solution:
        """The in-memory `Solution`: the weights and the report's rows brought to the client."""
        blocks = list(zip(self.problem.blocks.blocks, self.problem.index))
        pieces = DaskBlocks(blocks).collect(_gathered, [dict(lam=self.lam)] * len(blocks))
        X = [p[0] for p in pieces]
        X = scipy.sparse.vstack(X, format="csr") if scipy.sparse.issparse(X[0]) else np.vstack(X)
        d = np.concatenate([p[1] for p in pieces])
        weights = pd.concat([p[2] for p in pieces])
        return dataclasses.replace(solution, weights=weights, design=self.problem.report.design(X, d))


def _weight_series(block, index, lam) -> pd.Series:
    return pd.Series(block_weights(*block, y=lam), index=index, name="weight")


SUMS = ("before", "after", "d", "w", "w2", "objective", "positive", "negative", "max_w", "max_ratio", "smallest")


def _solution_sums(rows, distance, lo, hi, memo, lam) -> tuple:
    """One block's `SumsOverPartitions.sums` (the extremes of an empty block: -inf, 0 and +inf)."""
    w, base = block_weights(rows, distance, lo, hi, memo, lam), distance.base
    return (rows.B.T @ base, rows.B.T @ w, base.sum(), w.sum(), w @ w, distance.value(w), float(np.sum(w > 0)),
            float(np.sum(w < 0)), float(np.max(w, initial=-np.inf)), float(np.max(w / base, initial=0.0)),
            float(np.min(w, initial=np.inf)))


def _combine_sums(a, b) -> tuple:
    extremes = {"max_w": max, "max_ratio": max, "smallest": min}
    return tuple(extremes[name](x, y) if name in extremes else x + y for name, x, y in zip(SUMS, a, b))


def _gathered(block, index, lam):
    return block[0].B, block[1].base, _weight_series(block, index, lam)
