"""Why no weights exist: the balance columns that bind, and how much extra tolerance each needs.

Two ways, by size. Up to RELAXED_SOLVE_LIMIT units, the relaxed problem

    minimize sum_j z_j   s.t. |(B_j'w - t_j) / s_j| <= delta_j + z_j, z >= 0, and every other constraint

is solved by cvxpy + CLARABEL: column j's tolerance plus its slack z_j is feasible jointly. Above it, where that
solve would be slow, a backend's certificate of infeasibility (the dual's diverging direction, the solution's
`certificate.ray`) names the columns instead, with their shares of the certificate.

The same relaxed problem settles a solve that stopped short with its balance constraints violated (`certify`):
a problem whose smallest feasible tolerance lies a fraction of a percent above the one asked for can keep a
dual iterating to its limit before its ray is sharp enough to certify; the relaxed problem says at once whether
weights exist.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .backends.base import Certificate
from .backends.cvxpy_backend import build
from .errors import InfeasibleError
from .terms import Balance, Bounds, Normalize, Term

#: Above this many units an infeasible problem is explained from the backend's certificate, not a cvxpy solve.
RELAXED_SOLVE_LIMIT = 50_000


def certify(problem, solution):
    """A solve that ended "inaccurate" with its balance constraints violated, on at most RELAXED_SOLVE_LIMIT
    units: the solution relabelled "infeasible", with the relaxed problem's binding columns as its certificate
    (what `explain` reports), when the relaxed problem needs slack on some balance column, else the solution as it
    was. A calibration's failure to converge keeps its own report (the targets it could not reach, raised as
    CalibrationError)."""
    if problem.n > RELAXED_SOLVE_LIMIT or solution.worst_targets or \
            not any(isinstance(t, Balance) for t in problem.terms):
        return solution
    binding = _relaxed_binding(problem)
    if binding is None or binding.empty:      # weights exist, or the relaxed solve did not settle it
        return solution
    return dataclasses.replace(solution, status="infeasible", certificate=Certificate(binding=binding),
                               message=f"{solution.message}; the relaxed problem certifies that no weights exist")


def explain(problem, solution=None) -> InfeasibleError:
    """The InfeasibleError for `problem` (a WeightingProblem), naming the balance columns that bind; `solution`
    supplies a backend's certificate where it has one."""
    certificate = None if solution is None else solution.certificate
    if certificate is not None and certificate.binding is not None:
        return _binding_error(certificate.binding)
    ray = None if certificate is None else certificate.ray
    if ray and problem.n > RELAXED_SOLVE_LIMIT:
        terms = {t.name: t for t in problem.terms}
        weights = pd.concat([pd.Series(np.abs(v), index=[f"{name} / {c}" for c in _row_names(terms[name], len(v))])
                             for name, v in ray.items()]).sort_values(ascending=False)
        top = weights[weights > 0.05 * weights.iloc[0]].head(20)
        below = certificate.below
        floor = (f"; with one tolerance for every balance column, none below {below:.4g} (in the constraints' "
                 "scaled units) is feasible" if np.isfinite(below) else "")
        return InfeasibleError(
            "no weights satisfy the balance constraints and the other rows with these tolerances (certified by the "
            "dual's Farkas ray"
            f"{floor}); the dual diverges along these rows (share of the certificate):\n"
            + "\n".join(f"  {k}: {v:.2f}" for k, v in top.items())
            + "\nloosen their tolerances (or drop units outside the target's support; delta='tightest' finds the "
            "smallest feasible delta)",
            binding=top.rename_axis("column").reset_index(name="share"))
    return _relaxed(problem)


def _row_names(term, rows) -> list:
    """The names of a term's rows in a certificate: a balance term's columns, else "row j" (a user's term)."""
    columns = list(getattr(term, "columns", None) or [])
    return columns if len(columns) == rows else [f"row {j}" for j in range(rows)]


def _relaxed(problem) -> InfeasibleError:
    """The relaxed problem's InfeasibleError: the balance columns that need slack, and how much (none: the
    problem is feasible, and the error says the solver failed)."""
    binding = _relaxed_binding(problem)
    if binding is None:
        yours = [t.name for t in problem.terms if type(t).constraints is not Term.constraints
                 and not isinstance(t, (Balance, Normalize, Bounds))]
        return InfeasibleError(
            "no weights satisfy the bounds and normalization" + (f" and the terms {yours}" if yours else "")
            + " even with balance relaxed (for example, lower bounds that sum to more than the required total, "
            "upper bounds to less, or your terms' rows in conflict with them)"
        )
    return _binding_error(binding)


def _relaxed_binding(problem):
    """The relaxed problem's table of the balance columns that need slack (term, column, tolerance, needed; empty:
    none does), or None when even the relaxed problem has no solution."""
    balance = [t for t in problem.terms if isinstance(t, Balance)]
    relaxed, _, _, slacks = build(problem.terms, problem.n, slack_terms={t.name for t in balance},
                                  unit=problem.weight_unit)
    relaxed.solve(solver="CLARABEL")
    if relaxed.status not in ("optimal", "optimal_inaccurate"):
        return None
    binding = []
    for term in balance:
        needed = np.asarray(slacks[term.name].value)
        for column, slack, delta in zip(term.columns, needed, term.tolerances()):
            if slack > 1e-7:
                binding.append({"term": term.name, "column": column, "tolerance": delta, "needed": delta + slack})
    return pd.DataFrame(binding, columns=["term", "column", "tolerance", "needed"])


def _binding_error(binding) -> InfeasibleError:
    """The InfeasibleError that names the binding columns of the relaxed problem."""
    if binding.empty:
        return InfeasibleError("the solver reported the problem infeasible, but it is feasible once every balance "
                               "constraint is given slack that the relaxed solve does not need: a numerical "
                               "failure; try another solver", binding=binding)
    lines = [f"  {r.term} / {r.column}: tolerance {r.tolerance:.4g}, needs at least {r.needed:.4g}"
             for r in binding.itertuples()]
    return InfeasibleError(
        "no weights satisfy the balance constraints with these tolerances; the smallest total loosening "
        "(sum of the slacks) that makes them feasible needs:\n"
        + "\n".join(lines[:20]) + ("\n  ..." if len(lines) > 20 else "")
        + "\n(tolerances in the term's scale: SD units for delta_scale='sd', relative for calibration tolerances)",
        binding=binding,
    )
