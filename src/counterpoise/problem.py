"""WeightingProblem: a list of terms over one weight vector, solved by any backend and checked after.

    minimize   sum of the objective terms (a dispersion, a loss)
    subject to every constraint term (balance, normalization, bounds, your own)

Swept quantities are cvxpy Parameters, addressed as "term.param" (e.g. "balance.delta") or by the
short name alone ("delta"), which sets that parameter in every term that has it.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pandas as pd

from .backends import AUTO_ORDER, BACKENDS
from .errors import CalibrationError, InfeasibleError, InputError, SolverError, UnsupportedProblem
from .infeasibility import certify, explain
from .progress import bar
from .solution import Check, Path, Solution
from .terms import Term
from .validation import warn

#: Largest scaled violation a solution may have and still be called "optimal" (see each term's
#: `violation`: SD units for balance in SD units, relative for sums, a fraction of a typical weight for bounds).
CHECK_TOLERANCE = 1e-6


class WeightingProblem:
    """Weights for the `units` (a pandas Index) that minimize the objective terms subject to the rest.

    Built by the family functions (`counterpoise.sbw`, `calibrate`, ...); `add` puts in your own term.
    """

    def __init__(self, units, terms, family="custom", weight_scale="", weight_unit=1.0, design=None,
                 design_targets=None, estimand=None, sample_weights=None):
        self.units = pd.Index(units)
        self.n = len(self.units)
        self.weight_unit = float(weight_unit)     # a typical weight (1/n, a mean base weight): backends solve at this scale
        self.estimand = estimand                  # "ATT", "ATC", "ATE", "target" or None (calibration)
        self.sample_weights = sample_weights      # base weights of every data row (a Series), for the estimates
        self._design_targets = design_targets or {}   # group -> (balance term, positions): targets read at solve time
        self.terms: list[Term] = []
        self.family = family
        self.weight_scale = weight_scale
        self.design = design
        self.call = None                          # the builder's call (`arguments.recorded`), for rebuild()
        self.notes = []                           # note(w) -> str or None, said as a warning after an optimal solve
        self.tuner = None                         # chooses "delta" at the first solve (`tuning`: delta="auto", ...)
        self.tuning = None                        # what the tuner chose (a tuning.DeltaTuning), kept on solutions
        self.balance_functions = None             # a balancing_se.BalanceFunctions: what se="balancing" residualizes on
        self._backends = {}
        self._dual_index = None                   # (term names, the (term, column) MultiIndex of their duals)
        for term in terms:
            self.add(term)
        self._builder_terms = len(self.terms)

    def __repr__(self):
        names = ", ".join(t.name for t in self.terms)
        return f"WeightingProblem({self.family}, n={self.n}, terms=[{names}])"

    def add(self, term: Term) -> "WeightingProblem":
        """Add a term (a constraint or an objective piece); the cvxpy problem is rebuilt on the next solve."""
        if not isinstance(term, Term):
            raise InputError(f"add() takes a counterpoise Term, got {type(term).__name__}")
        if any(t.name == term.name for t in self.terms):
            raise InputError(f"the problem already has a term named {term.name!r}; give the new one another name")
        self.terms.append(term)
        self._backends.clear()
        return self

    # ---- parameters -------------------------------------------------------------------------

    @property
    def parameters(self) -> dict:
        """Every cvxpy Parameter, keyed "term.param"."""
        return {f"{t.name}.{k}": p for t in self.terms for k, p in t.parameters().items()}

    def _resolve(self, key):
        params = self.parameters
        if key in params:
            return [params[key]]
        matches = [p for name, p in params.items() if name.split(".", 1)[1] == key]
        if not matches:
            raise InputError(f"no parameter named {key!r}; this problem has {sorted(params)}")
        return matches

    def set(self, **values) -> "WeightingProblem":
        """Set parameter values: `set(delta=0.01)`, `set(**{"balance:control.delta": [...]})`; scalars broadcast."""
        for key, value in values.items():
            params = self._resolve(key)
            for param in params:
                try:
                    array = np.broadcast_to(np.asarray(value, dtype=float), param.shape)
                except ValueError:
                    names = [name for name, p in self.parameters.items() if any(p is q for q in params)]
                    raise InputError(f"{key}: a value of shape {np.shape(value)} does not fit {param.name()} of shape "
                                     f"{param.shape}; set each of {names} by its full name") from None
                if not np.all(np.isfinite(array)):
                    raise InputError(f"{key} must be finite, got {value!r}")
                if param.is_nonneg() and np.any(array < 0):
                    raise InputError(f"{key} must be nonnegative, got {value!r}")
                param.value = np.array(array)
        return self

    def get(self, key):
        """The current value of a parameter (the first match for a short name)."""
        return self._resolve(key)[0].value

    # ---- solving ----------------------------------------------------------------------------

    def backend(self, name):
        """The backend object for this problem, created once so it keeps its state (compiled problem, factorization)."""
        if name not in BACKENDS:
            raise InputError(f"unknown backend {name!r}; available: {sorted(BACKENDS)} and 'auto'")
        if name not in self._backends:
            self._backends[name] = BACKENDS[name](self)
        return self._backends[name]

    def auto_backends(self) -> list:
        """The backends "auto" tries, fastest first: those that can solve this problem exactly."""
        return [name for name in AUTO_ORDER
                if BACKENDS[name].form is None or BACKENDS[name].form.accepts(self.terms, self.n)]

    def auto_refusals(self) -> dict:
        """The backends "auto" skips for this problem, each with its reason (the term that keeps it off them)."""
        refusals = {}
        for name in AUTO_ORDER:
            form = BACKENDS[name].form
            if form is None:
                continue
            try:
                form.of(self.terms, self.n, name)
            except UnsupportedProblem as refusal:
                refusals[name] = str(refusal)
        return refusals

    def to_cvxpy(self):
        """The cvxpy problem the reference backend solves, built once. Its variable is u = w / weight_unit;
        `cvxpy_weights` is w as a cvxpy expression, for writing your own constraints on a copy:
        `cp.Problem(p.objective, p.constraints + [prob.cvxpy_weights[:10] <= 0.01])`. To keep counterpoise's
        checks, diagnostics and paths, add them as a term with `prob.add(term)` instead.
        """
        return self.backend("cvxpy").cvxpy_problem

    @property
    def cvxpy_weights(self):
        """The weights w as a cvxpy expression of `to_cvxpy()`'s variable."""
        return self.backend("cvxpy").w

    def solve(self, backend="auto", solver=None, tolerance=CHECK_TOLERANCE, raise_on_failure=True,
              **options) -> Solution:
        """Solve and check. Raises `InfeasibleError` (naming the constraints that bind) or `SolverError`
        (with the solver status and the violations) unless `raise_on_failure=False`, which returns the
        solution with its status instead. `solver` and `options` go to the backend (for cvxpy: any
        installed solver and its settings). backend="auto" (the default) takes the fastest exact backend that
        handles the problem ("dual" for SBW, kernel SBW, linear calibration and exact-target sparse calibration;
        "calibration" for raking, logit and entropy balancing; "prox" for sparse calibration; "cvxpy" otherwise)
        and moves on to the next when a solution fails the post-solve check. With auto, naming a `solver` means the
        cvxpy backend (whose solvers those are), and `options` limit it to the backends whose solve() takes them.
        Each term first checks the current parameter values (`Term.check`), so a degenerate problem is refused the
        same way on every backend; the problem's `notes` are said as warnings after an optimal solve. A problem
        built with delta="auto" or "tightest" chooses delta at its first solve (`counterpoise.tuning`; kept as
        `solution.tuning`); set(delta=...) afterwards overrides the choice."""
        if self.tuner is not None and self.tuning is None:
            self.tuning = self.tuner.tune(self, backend if solver is None else "cvxpy")
        solution = self._solve(backend, solver, tolerance, options)
        solution.tuning = self.tuning
        if raise_on_failure and solution.status != "optimal":
            if solution.status == "infeasible":
                raise self.explain_infeasible(solution)
            error = CalibrationError if solution.worst_targets else SolverError
            raise error(self._failure_message(solution), solution=solution)
        self._say_notes([solution])
        return solution

    def _solve(self, backend, solver, tolerance, options) -> Solution:
        """The solve itself, by the first backend that returns an optimal (or an infeasible) solution; one that
        stops short with constraints violated has its infeasibility settled by the relaxed problem
        (`infeasibility.certify`)."""
        for term in self.terms:
            term.check()
        for name in self._candidates(backend, solver, options):
            try:
                engine = self.backend(name)       # built only when reached: cvxpy's model is costly at 10^6 rows
            except UnsupportedProblem:
                if backend != "auto":
                    raise
                continue
            solution = self.checked(engine.solve(solver=solver, **options), name, tolerance)
            if solution.status in ("optimal", "infeasible"):
                break
        if solution.status == "inaccurate" and max(solution.violations.values(), default=0.0) > tolerance:
            solution = certify(self, solution)
        return solution

    @staticmethod
    def _candidates(backend, solver, options) -> list:
        """The backends a solve tries: the one named, or auto's order limited to those that take the options (cvxpy,
        last, takes any: its solver judges them)."""
        if backend != "auto":
            return [backend]
        if solver is not None:
            return ["cvxpy"]
        return [name for name in AUTO_ORDER if _takes(BACKENDS[name].solve, options)]

    def _say_notes(self, solutions):
        """Each note once, for the first optimal solution it applies to (with how many it applies to)."""
        for note in self.notes:
            said = [text for s in solutions if s.status == "optimal" and (text := note(s.weights.to_numpy()))]
            if said:
                warn(said[0] + ("" if len(solutions) == 1 else
                                f" (at {len(said)} of {len(solutions)} path points; the first shown)"))

    def checked(self, raw, backend, tolerance=CHECK_TOLERANCE) -> Solution:
        """The post-solve check: a backend's (or a peer's) RawResult as a Solution, "optimal" only when the solver
        said so and every term's violation is within `tolerance`."""
        w = raw.weights
        finite = np.all(np.isfinite(w))
        violations = {t.name: t.violation(w) if finite else np.inf for t in self.terms}
        objective = float(sum(t.value(w) for t in self.terms)) if finite else float("nan")
        status = raw.status
        if status == "optimal" and (not finite or max(violations.values(), default=0.0) > tolerance):
            status = "inaccurate"
        return Solution(
            weights=pd.Series(w, index=self.units, name="weight"),
            status=status,
            solver_status=raw.status,
            objective=objective,
            solve_time=raw.solve_time,
            backend=backend,
            solver=raw.solver,
            duals=self._duals(raw.duals),
            violations=violations,
            tolerance=tolerance,
            weight_scale=self.weight_scale,
            parameters={k: np.array(p.value) for k, p in self.parameters.items()},
            iterations=raw.iterations,
            message=raw.message,
            design=self._current_design(),
            problem=self,
            info=raw.info,
            certificate=raw.certificate,
            worst_targets=raw.worst_targets,
            dual_point=raw.dual_point,
        )

    def _current_design(self):
        """The balance design with its targets read from the balance terms now (they may have been swept)."""
        if self.design is None or not self._design_targets:
            return self.design
        targets = dict(self.design.targets)
        for group, (term, positions) in self._design_targets.items():
            current = np.array(targets[group], dtype=float)
            current[positions] = term.target.value
            targets[group] = current
        return dataclasses.replace(self.design, targets=targets, checked=True)

    def _duals(self, duals) -> pd.Series:
        """The backend's duals as one Series indexed by (term, column). The index is built once per set of dual
        terms and reused (a path would otherwise spend a third of its time building it)."""
        names = tuple(term.name for term in self.terms if term.name in duals)
        if not names:
            return pd.Series(dtype=float)
        if self._dual_index is None or self._dual_index[0] != names:
            columns = {term.name: term.columns for term in self.terms if term.name in duals}
            index = pd.MultiIndex.from_tuples([(name, column) for name in names for column in columns[name]],
                                              names=["term", "column"])
            self._dual_index = (names, index)
        values = np.concatenate([np.asarray(duals[name], dtype=float).ravel() for name in names])
        return pd.Series(values, index=self._dual_index[1])

    def _failure_message(self, solution) -> str:
        if not np.all(np.isfinite(solution.weights)):
            detail = "no finite weights returned"
        else:
            bad = {k: v for k, v in solution.violations.items() if v > solution.tolerance}
            detail = ", ".join(f"{k} violated by {v:.2e}" for k, v in bad.items()) or \
                "the solver reported reduced accuracy, though every constraint holds within the check tolerance"
        return (
            f"{solution.backend}/{solution.solver} returned status {solution.status!r}: {detail} "
            f"(check tolerance {solution.tolerance:g}; {solution.message}). Try another solver or tighter "
            "solver tolerances, or pass raise_on_failure=False to get these weights anyway."
        )

    def explain_infeasible(self, solution=None) -> InfeasibleError:
        """Why no weights exist (`infeasibility.explain`): the balance columns that bind, and by how much."""
        return explain(self, solution)

    def path(self, backend="auto", solver=None, progress=None, raise_on_failure=True, **sweep) -> Path:
        """Solve once per value of one swept parameter, in order, warm: `prob.path(delta=np.geomspace(.2, .001, 30))`.

        The cvxpy backend compiles the parametrized problem once and re-solves it for each value; the dual
        starts from the previous dual point. A value where no weights exist (delta too small) is kept with
        status "infeasible" and the path goes on; a solver failure raises unless `raise_on_failure=False`.
        Afterwards (or after an error) the swept parameter is back at the value it had before the path.
        `progress`: a progress bar (None: when stderr is a terminal; `counterpoise.progress`)."""
        if len(sweep) != 1:
            raise InputError(f"path() sweeps exactly one parameter, got {sorted(sweep)}")
        (key, values), = sweep.items()
        before = [(param, np.array(param.value)) for param in self._resolve(key)]
        solutions = []
        try:
            for value in bar(values, f"path over {key}", progress):
                self.set(**{key: value})
                solution = self._solve(backend, solver, CHECK_TOLERANCE, {})
                if raise_on_failure and solution.status not in ("optimal", "infeasible"):
                    raise SolverError(f"at {key} = {value}: " + self._failure_message(solution), solution=solution)
                solutions.append(solution)
        finally:
            for param, value in before:
                param.value = value
        self._say_notes(solutions)
        return Path(parameter=key, values=list(values), solutions=solutions)

    def check(self, backend, solver=None, reference_solver="CLARABEL", **options) -> Check:
        """Solve with `backend` (and `solver`) and with cvxpy + `reference_solver`, and report the gaps."""
        sol = self.solve(backend=backend, solver=solver, raise_on_failure=False, **options)
        ref = self.solve(backend="cvxpy", solver=reference_solver)
        w, w_ref = sol.weights.to_numpy(), ref.weights.to_numpy()
        return Check(
            backend=f"{backend}/{sol.solver}",
            reference=f"cvxpy/{ref.solver}",
            objective_gap=abs(sol.objective - ref.objective) / max(abs(ref.objective), 1e-12),
            weight_gap=float(np.max(np.abs(w - w_ref)) / max(np.max(np.abs(w_ref)), 1e-300)),
            max_violation=sol.max_violation,
            reference_max_violation=ref.max_violation,
            solution=sol,
            reference_solution=ref,
        )

    def rebuild(self, data) -> "WeightingProblem":
        """The same family with the same arguments on other data (the bootstrap uses this)."""
        if self.call is None:
            raise InputError("this problem was not made by a family builder, so it cannot be rebuilt on new data")
        if len(self.terms) > self._builder_terms:
            raise InputError("rebuild() re-runs the family builder and cannot carry terms added with add()")
        return self.call.on(data)


def _takes(solve, options) -> bool:
    """Whether a backend's solve() takes every one of `options` (by name, or through **options)."""
    parameters = inspect.signature(solve).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in parameters) or set(options) <= {p.name for p in parameters}
