"""Results: a `Solution` per solve, a `Path` per sweep, a `Check` per backend comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from . import diagnostics


@dataclass
class Solution:
    """Weights and what the solve found.

    `weights` keeps the index of the weighted rows and is on the scale named by `weight_scale`.
    `status` is "optimal" only when the solver said so *and* the weights pass counterpoise's own
    feasibility check (`violations`, each term's largest violation in its scaled units, all within
    `tolerance`); otherwise "inaccurate", "infeasible", "unbounded" or "failed". `solver_status` is what the
    solver itself said (the same words), before that check. `tuning` is how delta was chosen, for a problem
    built with delta="auto" or "tightest" (`counterpoise.tuning.DeltaTuning`). `certificate` says why no weights
    exist when infeasible (`backends.Certificate`), `worst_targets` a calibration's worst targets, worst first
    (name, achieved, target, relative misfit); `dual_point` is a Newton backend's multipliers
    in its own scaling (a warm start for a related solve). `objective` is the
    problem's objective evaluated at the returned weights (the same formula for every backend).
    `duals` holds one value per balance column (see `terms.Balance`).
    """

    weights: pd.Series
    status: str
    objective: float
    solve_time: float
    backend: str
    solver: str
    duals: pd.Series
    violations: dict
    tolerance: float
    weight_scale: str
    parameters: dict = field(default_factory=dict)
    iterations: int | None = None
    message: str = ""
    design: diagnostics.BalanceDesign | None = field(default=None, repr=False)
    problem: object = field(default=None, repr=False)
    info: dict = field(default_factory=dict, repr=False)
    solver_status: str = ""
    tuning: object = field(default=None, repr=False)
    certificate: object = field(default=None, repr=False)
    worst_targets: list = field(default_factory=list, repr=False)
    dual_point: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "optimal"

    @property
    def max_violation(self) -> float:
        return max(self.violations.values(), default=0.0)

    @cached_property
    def balance(self) -> pd.DataFrame:
        """Balance table: target, before / after values and SMDs per (group, term); see `diagnostics.balance_table`."""
        return self._design().table(self.weights)

    def balance_with(self, std: str) -> pd.DataFrame:
        """The balance table with another fixed SMD denominator ("target", "pooled", "treated", "control")."""
        return self._design().table(self.weights, std=std)

    def _design(self):
        if self.design is None:
            raise AttributeError("this problem has no balance design (it was built without covariates)")
        return self.design

    @property
    def ess(self):
        """Kish effective sample size (sum w)^2 / sum w^2: a float, or a Series per arm when several arms are weighted."""
        if self.design is None:
            return diagnostics.effective_sample_size(self.weights.to_numpy())
        return self.design.ess(self.weights)

    def weight_summary(self) -> pd.DataFrame:
        """Per arm: n, nonzero weights, sum, ESS, design effect, max weight ratio (also to the base weights), top 1% share."""
        if self.design is None:
            return diagnostics.weight_summary(self.weights.to_numpy())
        return self.design.weight_summary(self.weights)

    def compute(self) -> "Solution":
        """This solution with its weights in memory: itself, or, for weights on a Dask collection's partitions (a
        lazy dask Series), the weights and the balance design's rows gathered to the client."""
        return self if self.design is None or self.design.in_memory else self.design.gather(self)

    @property
    def max_abs_smd(self) -> float:
        return diagnostics.max_abs_smd(self.balance)

    def validate(self) -> dict:
        """The calibration report (microplex's validate() and populace's result, in one place): "targets", a table
        of actual, target, relative_error = |actual - target| / |target| (the absolute error for a zero target) and
        error per target; "max_relative_error"; "records" kept (w > 0); "ess" and "design_effect" (Kish);
        "max_weight_ratio" (max w / w0); "top_1pct_share" of the total weight (NaN for weights on partitions: it
        needs them sorted, which `compute()` gives); "status"."""
        if self.design is None or self.design.kind != "total":
            raise AttributeError("validate() reports calibration to totals; this problem has no population totals")
        table = self.balance.xs("sample", level=0) if isinstance(self.balance.index, pd.MultiIndex) else self.balance
        actual, target = table["after"].to_numpy(), table["target"].to_numpy()
        error = actual - target
        relative = np.abs(error) / np.where(target != 0, np.abs(target), 1.0)
        targets = pd.DataFrame({"actual": actual, "target": target, "relative_error": relative, "error": error},
                               index=table.index)
        summary = self.weight_summary().iloc[0]
        return {"targets": targets, "max_relative_error": float(relative.max()),
                "records": int(summary["n_nonzero"]), "ess": float(summary["ess"]),
                "design_effect": float(summary["design_effect"]),
                "max_weight_ratio": float(summary["max_ratio_to_base"]),
                "top_1pct_share": float(summary["top_1pct_share"]), "status": self.status}

    def path_row(self) -> dict:
        """This solution as a row of a path's table: status, objective, solve time, the (smallest arm's) ESS and
        max |SMD| (with a balance design); NaN where there are no weights (an infeasible point)."""
        row = {"status": self.status, "objective": self.objective, "solve_time": self.solve_time}
        weighted = self.status != "infeasible" if self.design is not None and not self.design.in_memory else \
            bool(np.all(np.isfinite(self.weights.to_numpy())))
        ess = self.ess if weighted else np.nan
        row["ess"] = float(np.min(ess)) if isinstance(ess, pd.Series) else ess
        if self.design is not None:
            row["max_abs_smd"] = self.max_abs_smd if weighted else np.nan
        return row

    def summary(self) -> str:
        """A few lines a person reads: status, objective, balance, ESS, time."""
        lines = [
            f"status {self.status} ({self.backend}/{self.solver}), objective {self.objective:.6g}, "
            f"max violation {self.max_violation:.2e}, {self.solve_time:.2f} s",
            f"weights: n = {len(self.weights) if self.design is None else self.design.size}, {self.weight_scale}",
        ]
        ess = self.ess
        if isinstance(ess, pd.Series):
            lines.append("ESS " + ", ".join(f"{g} {v:.1f}" for g, v in ess.items()))
        else:
            lines.append(f"ESS {ess:.1f}")
        if self.design is not None:
            table = self.balance
            lines.append(
                f"max |SMD| before {diagnostics.max_abs_smd(table, 'smd_before'):.3f}, after {diagnostics.max_abs_smd(table):.4f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass
class Path:
    """One solution per value of the swept parameter, solved warm in order."""

    parameter: str
    values: list
    solutions: list

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per point: the value, status, objective, solve time, the (smallest arm's) ESS and max |SMD|; NaN
        where a point has no weights (an infeasible one)."""
        return pd.DataFrame([{self.parameter: value, **sol.path_row()} for value, sol in zip(self.values,
                                                                                           self.solutions)])

    @property
    def weights(self) -> pd.DataFrame:
        """Weights along the path: one column per parameter value."""
        return pd.concat([s.weights.rename(v) for v, s in zip(self.values, self.solutions)], axis=1)

    def plot(self, **kwargs):
        from .plots import path_plot

        return path_plot(self, **kwargs)

    def __len__(self):
        return len(self.solutions)

    def __getitem__(self, i):
        return self.solutions[i]


@dataclass
class Check:
    """How far a backend's solution is from the cvxpy reference on the same problem."""

    backend: str
    reference: str
    objective_gap: float        # |f - f_ref| / max(|f_ref|, 1e-12)
    weight_gap: float           # max_i |w_i - w_ref_i| / max_i |w_ref_i|
    max_violation: float        # the backend's largest scaled violation
    reference_max_violation: float
    solution: Solution = field(repr=False)
    reference_solution: Solution = field(repr=False)

    def passes(self, objective_tol=1e-6, violation_tol=1e-7) -> bool:
        return self.objective_gap <= objective_tol and self.max_violation <= violation_tol

    def to_frame(self) -> pd.DataFrame:
        keys = ["backend", "reference", "objective_gap", "weight_gap", "max_violation", "reference_max_violation"]
        return pd.DataFrame([{k: getattr(self, k) for k in keys}])
