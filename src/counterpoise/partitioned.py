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
from .diagnostics import resampled_sums
from .backends.calibration import calibrate_rows, newton_message
from .backends.dual import SUBSAMPLE_FROM, GroupDual, subsample_start, worst_status
from .backends.blocks import DaskBlocks
from .backends.units import Units, block_weights
from .errors import CalibrationError, InfeasibleError, InputError, SolverError
from .progress import bar
from .solution import Path, Solution
from .validation import warn


@dataclass
class Report:
    """What the balance table of one group on partitions compares: the columns `names` (`columns` of the group's
    table rows: the rows of its blocks (rows.B), or, when `arm` is given, that arm's rows of the data pieces' balance
    functions X: columns the blocks do not balance) in group `group`, as weighted totals (kind "total", SMDs over N
    sd with N = `size`, or the sum of the weights) or means (kind "mean", plus `offset` when the rows are centred),
    against `target`, with the fixed SDs `sd` (those `std` names: "target", "pooled", ...). The units' base weights
    are their distance's times `base_scale` (a balancing family's distance holds d over the arm's total)."""

    names: list
    group: str
    kind: str
    target: np.ndarray
    sd: np.ndarray
    offset: np.ndarray | None = None
    size: float | None = None
    std: str = "target"
    columns: slice = field(default_factory=lambda: slice(None))
    arm: int | None = None
    base_scale: float = 1.0

    def rows(self, block, piece):
        """The table's rows of one partition's units: its block's rows (the matrix itself for every column: a
        sparse one is not copied), or the arm's rows of its data piece centred at the offset."""
        if self.arm is None:
            B = block[0].B
            return B if self.columns == slice(None) else B[:, self.columns]
        data = piece[0]                     # a data piece is a block of one argument
        return data["X"][data["a"] == self.arm][:, self.columns] - self.offset

    def base(self, block):
        """The base weights of one partition's units (the in-memory design's: not normalized within the arm)."""
        return block[1].base if self.base_scale == 1.0 else block[1].base * self.base_scale

    def table(self, before, base_total, after, total) -> pd.DataFrame:
        """The table from sum_i d_i b_i (`before`), sum d, sum_i w_i b_i (`after`) and sum w."""
        return diagnostics.group_balance_table(self.names, self.group, self.kind, self.target, (before, base_total),
                                               (after, total), self.sd, self.offset, self.size, self.std)


@dataclass
class Group:
    """One group of units on the partitions (the weighted arm; each arm of an ATE; the sample of a calibration):
    its method's blocks (rows, distance, lo, hi, memo), one per partition, the balance `report` of its table, and
    the data pieces a report with an `arm` reads (None: it reads the blocks' own rows)."""

    blocks: DaskBlocks
    report: Report
    pieces: list | None = None

    def sum_blocks(self) -> DaskBlocks:
        """Each partition's (block, data piece): what the solution's sums read."""
        pieces = self.pieces or [None] * len(self.blocks.blocks)
        return DaskBlocks([(block, piece) for block, piece in zip(self.blocks.blocks, pieces)])


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
    with tolerances. A group's t and scale are its scaled targets and its tolerances (when `normalized`, the sum
    row's last)."""

    name = "dual"

    def __init__(self, normalized=True):
        self.normalized = normalized

    def units(self, blocks, t):
        """The group's units on the partitions, and the number of rows other than the sum."""
        k = len(t) - self.normalized
        return Units(blocks, k), k

    def run(self, blocks, t, scale, targets, kind, y, tol=1e-10, max_iter=200, callback=None) -> MethodRun:
        if callback is not None:
            raise InputError("callback= is for exact totals (the calibration backend's); the dual Newton with "
                             "tolerances on partitions takes none")
        units, k = self.units(blocks, t)
        dual = GroupDual(units, t[:k], scale[:k], t[k] if self.normalized else None)
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
    raking, entropy balancing. A group's t and scale are the scaled targets and the rows' scales (T = scale t)."""

    name = "calibration"

    def run(self, blocks, t, scale, targets, kind, y, epsilon=1e-9, max_iter=100, callback=None) -> MethodRun:
        units, k = self.units(blocks, t)
        run = calibrate_rows(units, t[:k], t[k] if self.normalized else None, scale, y if np.any(y) else None,
                             epsilon, max_iter, callback)
        message = newton_message(kind, run.iterations, run.largest, epsilon, run.converged, run.worst(targets))
        info = {"max_relative_misfit": run.largest, "epsilon": epsilon}
        return MethodRun(run.dual.y, "optimal" if run.converged else "inaccurate", run.iterations, f"newton/{kind}",
                         message, info, None if run.converged else CalibrationError)


#: How the statistics of several groups' runs combine: the worst of each, the Newton steps of the subsamples summed.
_WORST = ("duality_gap", "max_violation", "max_relative_misfit", "infeasible_below")


def combined(runs, labels) -> MethodRun:
    """One run from the runs of several groups (`labels`): the dual points side by side, the worst status and
    statistics, the error of the first run with that status, every message named by its group."""
    if len(runs) == 1:
        return runs[0]
    status = worst_status(run.status for run in runs)
    info = dict(runs[0].info)
    for key in _WORST:
        if key in info:
            info[key] = max((run.info[key] for run in runs if not np.isnan(run.info[key])), default=float("nan"))
    if "subsample_iterations" in info:
        info["subsample_iterations"] = sum(run.info["subsample_iterations"] for run in runs)
    return MethodRun(np.concatenate([run.y for run in runs]), status, sum(run.iterations for run in runs),
                     runs[0].solver, "; ".join(f"{label}: {run.message}" for label, run in zip(labels, runs)), info,
                     next((run.error for run in runs if run.status == status), None))


class PartitionedProblem:
    """A weighting problem on a Dask collection's partitions.

    groups: the `Group`s of weighted units (one for an ATT, an ATC or a calibration; the two arms of an ATE), each
    with its blocks on the partitions; layout: per partition (Delayed) the index of its weighted units and the
    positions among them of each group's units; divisions: the input's; method: `CalibrationNewton` or
    `DualNewton`; t, scale: the groups' exact totals' scaled targets and their rows' scales (T = scale t), or the
    dual's scaled targets and tolerances, side by side in the groups' order (`sizes` entries each); `targets`
    their names; weight_scale: what the weights sum to, in words; note: None, or note(count, n, smallest) -> the
    warning said after an optimal solve that made `count` weights negative (linear calibration); estimand and
    sample_weights (the base weights' column): what `cpz.estimate` reads, as for a `WeightingProblem`;
    tolerances: for the dual, each tolerance parameter's name ("delta", "mean_delta") and the positions of its
    columns in `scale`, for `set` and `path`."""

    def __init__(self, groups, layout, divisions, method, t, scale, targets, family, weight_scale, note=None,
                 estimand=None, sample_weights=None, tolerances=None):
        self.groups, self.layout, self.divisions, self.method = groups, layout, divisions, method
        self.t, self.scale, self.targets = np.asarray(t, dtype=float), np.asarray(scale, dtype=float), list(targets)
        self.family, self.weight_scale, self.note = family, weight_scale, note
        self.estimand, self.sample_weights = estimand, sample_weights
        self.tolerances = tolerances or {}
        self.sizes = [len(self.t) // len(groups)] * len(groups)     # every group has the same rows
        self.lam = None                 # the last optimal dual point: a warm start
        self.balance_functions = None   # a balancing_se.PartitionedFunctions, for se="balancing"
        self.tuner = None               # chooses "delta" at the first solve (`tuning`: delta="auto")
        self.tuning = None              # what the tuner chose, kept on solutions

    @property
    def n(self) -> int:
        return sum(sum(group.blocks.sizes) for group in self.groups)

    @property
    def blocks(self) -> DaskBlocks:
        """Every group's blocks on the partitions."""
        return DaskBlocks([block for group in self.groups for block in group.blocks.blocks],
                          [size for group in self.groups for size in group.blocks.sizes])

    def _pieces(self, vector) -> list:
        """A vector side by side over the groups, cut into one piece per group."""
        return np.split(vector, np.cumsum(self.sizes)[:-1])

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

    def path(self, backend="auto", progress=None, raise_on_failure=True, **sweep) -> Path:
        """Solve once per value of one tolerance, in order, each from the last dual point (`WeightingProblem.path`):
        an infeasible point is kept with its status, and the tolerance is back at its value afterwards."""
        if len(sweep) != 1:
            raise InputError(f"path() sweeps exactly one parameter, got {sorted(sweep)}")
        (key, values), = sweep.items()
        before, solutions = self.get(key), []
        try:
            for value in bar(values, f"path over {key}", progress):
                solution = self.set(**{key: value})._solve(backend, raise_on_failure=False)
                if raise_on_failure and solution.status not in ("optimal", "infeasible"):
                    raise SolverError(f"at {key} = {value}: {self.family} on dask partitions: {solution.message}")
                solutions.append(solution)
        finally:
            self.set(**{key: before})
        return Path(parameter=key, values=list(values), solutions=solutions)

    def rebuild(self, data) -> "PartitionedProblem":
        """The same family with the same arguments on another dask DataFrame (the bootstrap uses this)."""
        return self.call.on(data)

    def add(self, term):
        """Refused: a term holds its arrays (a matrix of the units' rows, per-unit bounds) in memory, and the problem on
        partitions builds its blocks from the builder's terms only."""
        raise InputError(f"add() puts a term whose arrays are in memory into the problem; this one's units are on dask "
                         f"partitions, so {getattr(term, 'name', term)!r} cannot join it. Build the problem on the "
                         "data in memory (ddf.compute()) to add your own terms")

    def check(self, backend="auto", solver=None, reference_solver="CLARABEL", sample=None, **options):
        """The engine against cvxpy (`WeightingProblem.check`) on `sample`, a pandas DataFrame of rows you name
        (e.g. `ddf.sample(frac=0.01, random_state=1).compute()`): the same builder, with the same arguments (the same
        population totals for a calibration), runs on it in memory, and its check is returned. The engine on
        partitions runs the same Newton steps as in memory (the tests compare them); cvxpy needs every row at once,
        so without a sample the check is refused."""
        if sample is None:
            raise InputError("check() solves the problem with cvxpy too, which needs every row in memory; name a "
                             "sample of the rows in memory (sample=ddf.sample(frac=..., random_state=seed).compute()) "
                             "and the same problem is checked on it")
        return self.rebuild(sample).check(backend, solver, reference_solver, **options)

    def solve(self, backend="auto", raise_on_failure=True, warm_start=True, callback=None, **options) -> Solution:
        """Solve by the problem's Newton on the partitions, group by group (backend "auto", or the method's name:
        "calibration" or "dual"). Options as the in-memory backend's (epsilon, max_iter for calibration; tol,
        max_iter for the dual); `callback(iteration, lam)` runs after every Newton step to exact totals. Without
        convergence the error names why (CalibrationError with the worst targets, InfeasibleError with the dual's
        certificate, SolverError), unless raise_on_failure=False. The `Solution`'s weights are a lazy dask Series
        aligned with the input's partitions, its design a `SumsOverPartitions` (one more pass, for the objective
        and the diagnostics, unless infeasible); `compute()` gives it in memory. A problem built with delta="auto"
        chooses delta at its first solve (`counterpoise.tuning`, as in memory; kept as `solution.tuning`)."""
        if self.tuner is not None and self.tuning is None:
            self.tuning = self.tuner.tune(self, backend)
        solution = self._solve(backend, raise_on_failure, warm_start, callback, **options)
        solution.tuning = self.tuning
        return solution

    def _solve(self, backend="auto", raise_on_failure=True, warm_start=True, callback=None, **options) -> Solution:
        """The solve itself (`solve` without the tuner)."""
        if backend not in ("auto", self.method.name):
            raise InputError(f"this problem on dask partitions is solved by backend {self.method.name!r} (or "
                             f"'auto'), not {backend!r}")
        start = time.perf_counter()
        lam = self.lam if warm_start and self.lam is not None else np.zeros(len(self.t))
        kind = self.family.split("/")[-1]
        runs = [self.method.run(group.blocks, t, scale, targets, kind, y, callback=callback, **options)
                for group, t, scale, targets, y in zip(self.groups, self._pieces(self.t), self._pieces(self.scale),
                                                       self._pieces(np.asarray(self.targets, dtype=object)),
                                                       self._pieces(lam))]
        run = combined(runs, [group.report.group for group in self.groups])
        lam, status = run.y, run.status
        self.lam = lam if status == "optimal" else None
        solve_time = time.perf_counter() - start
        run.info["partitions"] = len(self.layout)
        if raise_on_failure and run.error is not None:
            raise run.error(f"{self.family} on dask partitions: {run.message}")
        design = SumsOverPartitions(self, lam)
        sums = design.sums if status != "infeasible" else [{"objective": np.nan, "negative": 0}]
        negative = sum(group["negative"] for group in sums)
        if status == "optimal" and self.note is not None and negative:
            warn(self.note(int(negative), self.n, min(group["smallest"] for group in sums)))
        return Solution(weights=self.weights(lam), status=status,
                        objective=float(sum(group["objective"] for group in sums)), solve_time=solve_time,
                        backend=self.method.name, solver=run.solver,
                        duals=pd.Series(-lam, index=self.targets, name="dual"),
                        violations={"targets": run.info["max_relative_misfit"]},
                        tolerance=run.info.get("epsilon", 1e-6), weight_scale=self.weight_scale,
                        parameters={key: self.get(key) for key in self.tolerances}, iterations=run.iterations,
                        message=run.message, design=design, problem=self, info=run.info, solver_status=status,
                        dual_point=lam)

    def _partitions(self) -> list:
        """Per partition: (its layout, every group's block, every group's data piece)."""
        blocks = [group.blocks.blocks for group in self.groups]
        pieces = [group.pieces or [None] * len(self.layout) for group in self.groups]
        return [(layout, [b[p] for b in blocks], [q[p] for q in pieces]) for p, layout in enumerate(self.layout)]

    def weights(self, lam, trimming=None):
        """The weights at the dual point lam (then trimmed by `trimming`, if given: `families.calibration.Trimming`):
        a lazy dask Series named "weight" aligned with the input's partitions."""
        import dask
        import dask.dataframe as dd

        lams = self._pieces(lam)
        parts = [dask.delayed(_weight_series)(layout, blocks, lams, trimming)
                 for layout, blocks, _ in self._partitions()]
        return dd.from_delayed(parts, meta=pd.Series(dtype=float, name="weight"), divisions=self.divisions,
                               verify_meta=False)


class SumsOverPartitions:
    """The balance design of a solution on partitions (its `Solution.design`): the weights are w(A'lam) on the
    problem's blocks, and the balance table, the ESS and the weight summary come from one pass of sums per group
    over the partitions, made when first read; `gather` brings the weights and the tables' rows to the client as
    the in-memory `Solution` (`Solution.compute`)."""

    in_memory = False

    def __init__(self, problem, lam, trimming=None):
        self.problem, self.lam, self.trimming, self.size = problem, lam, trimming, problem.n
        self.kind = problem.groups[0].report.kind

    @cached_property
    def sums(self) -> list:
        """Per group: sum_i d_i b_i and sum_i w_i b_i over its table's rows b; sums of d, w and w^2; the distance's
        value; the numbers of positive and of negative weights; the largest w, the largest w / d and the smallest
        w."""
        return [dict(zip(SUMS, group.sum_blocks().reduce(_solution_sums, combine=_combine_sums, lam=lam,
                                                          report=group.report, trimming=self.trimming)))
                for group, lam in zip(self.problem.groups, self.problem._pieces(self.lam))]

    def table(self, weights=None, std=None) -> pd.DataFrame:
        """The balance table (`diagnostics.balance_table`'s columns) of the weights, from the sums."""
        reports = [group.report for group in self.problem.groups]
        if std not in (None, reports[0].std):
            raise InputError(f"the balance table on partitions has the SDs it was built with ({reports[0].std!r}); "
                             f"build the problem with std={std!r}, or compute() the solution first")
        tables = [report.table(s["before"], s["d"], s["after"], s["w"]) for report, s in zip(reports, self.sums)]
        table = pd.concat(tables) if len(tables) > 1 else tables[0]
        table.attrs["std"] = reports[0].std
        return table

    def ess(self, weights=None):
        """Kish's effective sample size (sum w)^2 / sum w^2: a float, or a Series per group when there are
        several (as in memory)."""
        values = {group.report.group: float(s["w"] ** 2 / s["w2"]) for group, s in zip(self.problem.groups, self.sums)}
        return next(iter(values.values())) if len(values) == 1 else pd.Series(values, name="weight").sort_index()

    def weight_summary(self, weights=None) -> pd.DataFrame:
        """`diagnostics.weight_summary`'s rows for the weighted groups, from the sums (top_1pct_share NaN: it needs
        the weights sorted)."""
        rows = {}
        for group, s in zip(self.problem.groups, self.sums):
            n, ess = sum(group.blocks.sizes), float(s["w"] ** 2 / s["w2"])
            rows[group.report.group] = {
                "n": n, "n_nonzero": int(s["positive"]), "sum": float(s["w"]), "ess": ess, "design_effect": n / ess,
                "max_weight_ratio": float(s["max_w"] / (s["w"] / n)), "max_ratio_to_base": float(s["max_ratio"]),
                "top_1pct_share": np.nan}
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "group"
        return table

    def gather(self, solution) -> Solution:
        """The in-memory `Solution`: the weights and the tables' rows brought to the client."""
        problem = self.problem
        reports = [group.report for group in problem.groups]
        lams = problem._pieces(self.lam)
        pieces = DaskBlocks(problem._partitions()).collect(
            _gathered, [dict(lams=lams, reports=reports, trimming=self.trimming)] * len(problem.layout))
        X = [p[0] for p in pieces]
        X = scipy.sparse.vstack(X, format="csr") if scipy.sparse.issparse(X[0]) else np.vstack(X)
        d, groups = np.concatenate([p[1] for p in pieces]), np.concatenate([p[2] for p in pieces])
        weights = pd.concat([p[3] for p in pieces])
        first = reports[0]
        design = diagnostics.BalanceDesign(
            names=tuple(first.names), X=X, groups=groups, base_weights=d,
            targets={report.group: report.target for report in reports}, denominators={first.std: first.sd},
            std=first.std, kind=first.kind,
            population_size=None if first.size is None else {report.group: report.size for report in reports},
            offset=first.offset, checked=True)
        return dataclasses.replace(solution, weights=weights, design=design)


def resampled_arms(problem, solutions) -> list:
    """Per group (weighted arm) of a problem on partitions: (its units, sums(counts): the resampled sums
    (`diagnostics.resampled_sums`) of its part of each solution's weights with its balance columns centred at the
    targets and divided by their scales), the counts of each partition's units sent with its task (`tuning`)."""
    points = [problem._pieces(solution.dual_point) for solution in solutions]
    arms = []
    for g, group in enumerate(problem.groups):
        lams, ends = [point[g] for point in points], np.cumsum([0] + group.blocks.sizes)

        def sums(counts, group=group, lams=lams, ends=ends):
            parts = group.blocks.collect(_resampled_block_sums, [dict(counts=counts[:, a:b], lams=lams)
                                                                  for a, b in zip(ends[:-1], ends[1:])])
            return tuple(np.sum([part[j] for part in parts], axis=0) for j in (0, 1))

        arms.append((int(ends[-1]), sums))
    return arms


def _resampled_block_sums(rows, distance, lo, hi, memo, counts, lams) -> tuple:
    """One partition's `diagnostics.resampled_sums` of the weights at each dual point of `lams`."""
    weights = [block_weights(rows, distance, lo, hi, memo, y=lam) for lam in lams]
    return resampled_sums(counts, weights, rows.B * rows.inverse_scale)


def _placed(layout, values):
    """The groups' per-unit values (arrays, one per group; sparse only for a single group) in the partition's order
    of its weighted units."""
    index, positions = layout
    if len(values) == 1:
        return values[0]
    out = np.empty((len(index),) + values[0].shape[1:], dtype=values[0].dtype)
    for where, value in zip(positions, values):
        out[where] = value
    return out


def unit_weights(block, lam, trimming=None) -> np.ndarray:
    """A block's weights at the dual point lam, then trimmed by `trimming` (None: as they are)."""
    w = block_weights(*block, y=lam)
    return w if trimming is None else trimming.apply(w, block[1].base)[0]


def _weight_series(layout, blocks, lams, trimming=None) -> pd.Series:
    w = _placed(layout, [unit_weights(block, lam, trimming) for block, lam in zip(blocks, lams)])
    return pd.Series(w, index=layout[0], name="weight")


SUMS = ("before", "after", "d", "w", "w2", "objective", "positive", "negative", "max_w", "max_ratio", "smallest")


def _solution_sums(block, piece, lam, report, trimming=None) -> tuple:
    """One partition's `SumsOverPartitions.sums` for one group (the extremes of an empty block: -inf, 0 and
    +inf)."""
    w, base, B = unit_weights(block, lam, trimming), report.base(block), report.rows(block, piece)
    return (B.T @ base, B.T @ w, base.sum(), w.sum(), w @ w, block[1].value(w), float(np.sum(w > 0)),
            float(np.sum(w < 0)), float(np.max(w, initial=-np.inf)), float(np.max(w / base, initial=0.0)),
            float(np.min(w, initial=np.inf)))


def _combine_sums(a, b) -> tuple:
    extremes = {"max_w": max, "max_ratio": max, "smallest": min}
    return tuple(extremes[name](x, y) if name in extremes else x + y for name, x, y in zip(SUMS, a, b))


def _gathered(layout, blocks, pieces, lams, reports, trimming=None):
    """One partition's table rows, base weights, group labels and weights Series, in its order of weighted units."""
    rows = [report.rows(block, piece) for block, piece, report in zip(blocks, pieces, reports)]
    bases = [report.base(block) for block, report in zip(blocks, reports)]
    labels = [np.full(len(base), report.group, dtype=object) for base, report in zip(bases, reports)]
    return (_placed(layout, rows), _placed(layout, bases), _placed(layout, labels),
            _weight_series(layout, blocks, lams, trimming))

