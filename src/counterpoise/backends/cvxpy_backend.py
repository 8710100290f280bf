"""The reference backend: the problem written as one parametrized (DPP) cvxpy problem.

The cvxpy problem is built once per weighting problem; every solve after the first re-uses cvxpy's
compiled parametrized program, so a path only re-fills parameter values. The default solver is
CLARABEL (interior point) with tolerances tight enough for weights of size 1/n (`TIGHT_OPTIONS`).
"""

from __future__ import annotations

import time
import warnings

import cvxpy as cp
import numpy as np

from ..errors import InputError, UnsupportedProblem
from .base import RawResult, register

DEFAULT_SOLVER = "CLARABEL"

#: The option that caps a cvxpy solver's time, in seconds, for the solvers that have one (a study's time_limit).
TIME_LIMIT_OPTIONS = {"CLARABEL": "time_limit", "OSQP": "time_limit", "SCS": "time_limit_secs"}

#: cvxpy's words when a solver cannot take the problem's form (a QP to an LP solver, an exponential cone to a QP
#: solver): raised as UnsupportedProblem, not reported as a failed solve.
_FORM_REFUSED = ("could not be reduced to a QP", "do not support the cones")

#: Solver options applied unless the caller overrides them. The problem is solved at scale 1 (see
#: `CvxpyBackend`), so CLARABEL's gaps of 1e-10 are relative: objectives come out exact to about 1e-9,
#: and weights, from an interior point, to about the square root of that.
#: Feasibility 1e-8 is relative to the constraint data; the post-solve check then holds every
#: constraint within 1e-6 of its limit (SD units for balance).
TIGHT_OPTIONS = {
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-8, "tol_ktratio": 1e-8, "max_iter": 500},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
    "OSQP": {},   # left at its defaults on purpose: the benchmark shows what they give
    "ECOS": {"abstol": 1e-9, "reltol": 1e-9, "feastol": 1e-9, "max_iters": 500},
}

_STATUS = {
    cp.OPTIMAL: "optimal",
    cp.OPTIMAL_INACCURATE: "inaccurate",
    cp.INFEASIBLE: "infeasible",
    cp.INFEASIBLE_INACCURATE: "infeasible",
    cp.UNBOUNDED: "unbounded",
    cp.UNBOUNDED_INACCURATE: "unbounded",
    cp.USER_LIMIT: "inaccurate",
}


def build(terms, n, slack_terms=(), unit=1.0, scale=1.0):
    """The cvxpy problem min scale * sum(objectives) s.t. all constraints, over weights w = unit * u.

    Returns the problem, the weight expression w, each term's constraints (by term name) and the slack
    variables. Terms named in `slack_terms` get a nonnegative slack on their balance constraints and the
    objective becomes the total slack: the relaxed problem used to explain infeasibility.
    """
    w = unit * cp.Variable(n, name="u")
    by_term, objective, slacks = {}, [], {}
    for term in terms:
        if term.name in slack_terms:
            slacks[term.name] = cp.Variable(len(term.columns), nonneg=True, name=f"{term.name}.slack")
            by_term[term.name] = term.constraints(w, slack=slacks[term.name])
            continue
        by_term[term.name] = term.constraints(w)
        expr = term.objective(w)
        if expr is not None and slack_terms:
            by_term[term.name] = by_term[term.name] + expr.domain   # keep w where the objective is defined
        elif expr is not None:
            objective.append(expr)
    if slack_terms:
        objective = [cp.sum(s) for s in slacks.values()]
    goal = cp.Minimize(scale * cp.sum(objective) if objective else cp.Constant(0.0))
    constraints = [c for cons in by_term.values() for c in cons]
    return cp.Problem(goal, constraints), w, by_term, slacks


@register
class CvxpyBackend:
    """Solves the problem's cvxpy form with any installed solver (CLARABEL by default).

    The solver sees the problem at order 1: the variable is u = w / unit, with `unit` the problem's typical
    weight (1/n for SBW, the mean base weight for calibration), and the objective is divided by its value
    at w = 0. Interior-point gaps are measured relative to max(1, |objective|), so an SBW objective of
    order 1/n over weights of order 1/n would otherwise stop early (ECOS fails outright on it).
    """

    name = "cvxpy"
    form = None               # every problem, your own terms included
    auto = 4
    solves = "every problem, your own terms included"
    how = "the parametrized cvxpy problem, any installed solver (CLARABEL by default)"

    def __init__(self, problem):
        self.terms = problem.terms
        scales = [t.objective_scale() for t in problem.terms]
        self.objective_scale = max((x for x in scales if x), default=1.0)
        self.cvxpy_problem, self.w, self.constraints, _ = build(
            problem.terms, problem.n, unit=problem.weight_unit, scale=1.0 / self.objective_scale)
        self.compilations = 0     # times cvxpy ran its reduction chain (a path re-fills parameters: one in all)

    def _compiled_program(self):
        """cvxpy's cached parametrized program (None until the first DPP solve), to count compilations; cvxpy
        keeps it in a private cache, so a cvxpy without one counts every solve."""
        return getattr(getattr(self.cvxpy_problem, "_cache", None), "param_prog", None)

    def solve(self, solver=None, warm_start=True, verbose=False, **options):
        solver = (solver or DEFAULT_SOLVER).upper()
        settings = {**TIGHT_OPTIONS.get(solver, {}), **options}
        start = time.perf_counter()
        message = ""
        program = self._compiled_program()
        try:
            with warnings.catch_warnings():   # cvxpy's "may be inaccurate" warning: the status says it, and our check
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                self.cvxpy_problem.solve(solver=solver, warm_start=warm_start, verbose=verbose, **settings)
            status = _STATUS.get(self.cvxpy_problem.status, "failed")
        except cp.error.SolverError as exc:
            if any(words in str(exc) for words in _FORM_REFUSED):
                raise UnsupportedProblem(f"cvxpy's {solver} does not take this problem's form: {exc}") from None
            status, message = "failed", str(exc)
        except TypeError as exc:                  # a setting the solver does not know (its own words)
            raise InputError(f"backend 'cvxpy' with {solver}: {exc}") from None
        elapsed = time.perf_counter() - start
        if program is None or self._compiled_program() is not program:
            self.compilations += 1
        value = self.w.value
        weights = np.full(self.w.shape, np.nan) if value is None else np.asarray(value, dtype=float)
        stats = self.cvxpy_problem.solver_stats
        duals = {}
        if value is not None:
            for term in self.terms:
                dual = term.dual(self.constraints[term.name]) if self.constraints[term.name] else None
                if dual is not None:
                    duals[term.name] = dual * self.objective_scale
        return RawResult(
            weights=weights,
            status=status,
            solver=solver,
            solve_time=elapsed,
            duals=duals,
            iterations=None if stats is None else stats.num_iters,
            message=message or f"cvxpy status {self.cvxpy_problem.status}",
            info={"compile_time": self.cvxpy_problem.compilation_time, "solver_time": None if stats is None else stats.solve_time},
        )
