"""OSQP on the separable QP, built directly: one cached factorization per group, warm-started along paths.

The problem (`forms.SeparableQP`: SBW, kernel SBW, linear calibration) is

    minimize   sum_i (w_i - c_i)^2 / s_i
    subject to sum_{i in g} w_i = T_g,  |(B_g' w_g - t) / r| <= delta,  lo <= w <= hi     for every group g,

and groups (arms) share no constraint, so each group is its own OSQP problem (one `osqp.OSQP` object,
set up once). Per group of n_g units, over u = w / unit (unit = the problem's typical weight: 1/n for
SBW, the mean base weight for calibration, so u is of order 1):

    minimize   1/2 u'Pu + q'u,   P = 2 diag(1/s),  q = -2 (c / unit) / s     (the objective / unit^2)
    subject to l <= A u <= u_bar, with rows
               S unit / T_g * 1'      = S               normalization
               S unit (B_g / r)'      in S (t/r -+ delta)   balance
               I                      in [lo, hi] / unit    bounds (units with a finite bound)

with S = n_g. Why these scales:
  * u of order 1 makes the bound rows, and OSQP's absolute tolerances on them, fractions of a typical
    weight (the post-solve check's unit), and the curvature 2/s of order 1 makes the dual residual
    the error in a weight's gradient, again in typical-weight units. The objective is left of order n
    (not divided to order 1): dividing it by n would divide the dual residual by n and loosen the
    stationarity test by that factor; OSQP's own cost scaling takes care of its magnitude.
  * The dense rows are multiplied by S = n_g. Unscaled, their entries are about 1/n_g, and OSQP's
    Ruiz equilibration leaves rows whose norm is below 1e-4 unscaled (MIN_SCALING): on kernel SBW at
    n = 5,000 that made ADMM stall (a primal residual stuck at 2e-2 raw units for 100,000 iterations,
    and false "primal infeasible" verdicts at n = 10,000). Scaled, a residual of eps in such a row is
    eps / n_g in the check's units (relative sum error, SD units), which only makes OSQP's test stricter.

Accuracy comes from polishing, not from ADMM. OSQP's polish solves the KKT system of the active set
ADMM has guessed; when the guess is right the answer is exact (violations ~1e-15, relative duality gap
~1e-12). ADMM alone converges slowly here (about 2,700 iterations per decade of residual on kernel
SBW: most weights sit at zero and most balance rows bind), and OSQP only polishes when ADMM meets its
tolerance. So the backend runs a tolerance continuation: solve at eps = 1e-2 and polish; if the
polish fails, or leaves a violation above `EXACT` (1e-9 in the check's units) or a relative dual
residual above 1e-8, tighten eps by sqrt(10) and let ADMM continue from where it stopped (same
factorization, same rho), down to the requested eps_abs / eps_rel. The first exact polish ends the
solve; otherwise the last rung's point is returned with OSQP's status, and the problem's post-solve
check downgrades it to "inaccurate" if a constraint is off by more than 1e-6. A loose rung never tests
infeasibility (OSQP skips the test while the primal residual meets the tolerance), so a rung that runs
`RUNG_CAP` (5,000) iterations without converging is interrupted by a `PROBE_ITER` (500) iteration run
at the requested tolerances, where infeasibility is detected, and then continues. `continuation=False`
runs one plain OSQP solve at the requested tolerances.

Polish behaviour, measured: it fails while ADMM's active set is still wrong (always at eps 1e-2 on
kernel SBW) and succeeds once units near the kink are classified, which takes eps ~ their distance
from it: SBW with one binding column and ~40 of 6,796 weights within 1e-3 of a typical weight of zero
(n = 10,000, delta 0.2 SD) polishes only at eps 1e-5 (15,000 iterations); SBW at delta 0.02 SD at
the first rungs (150 iterations). Exceptionally it never succeeds (one of 100 points of the SBW path
below, delta 0.111: the ADMM iterate came back 1.2e-6 off a bound, reported "inaccurate").

Defaults (`DEFAULT_SETTINGS`, each overridable through `solve(**options)` with OSQP 1.x names; the 0.6
name "polish" is accepted; a setup-only setting such as scaling or sigma triggers a new setup):
eps_abs = eps_rel = 1e-7 at the last rung, polishing with 10 refinement steps, max_iter 100,000 over
all rungs, adaptive rho, verbose off, infeasibility tolerances 1e-6. Note that OSQP's primal test is
eps_abs + eps_rel * max|Au|, and max|Au| ~ n_g (the scaled sum row), so an unpolished "solved" point
can be off a bound by ~1e-7 n_g of a typical weight; the post-solve check catches that.

Measured (kim2023 weak overlap, seed 1, X1..X6; this 2-core machine, shared, so times are +-30%):
  * `check` against cvxpy + CLARABEL, SBW ATT delta 0.02 SD, n = 5,000: objective gap 6e-12, max
    violation 3e-16, duals equal to 1.4e-11 (largest 6.7e-4), 150 iterations, 0.03 s. ATE (two
    groups): gap 3e-12. Strong overlap and X*: gap <= 1e-9, violation <= 1e-12 (tests).
  * kernel SBW (m = 300, l = 200, s = 100, delta = 0.0005 raw), n = 5,000: gap 1.4e-12, violation
    2e-15, duals equal to 2e-11 -- after 18,925 ADMM iterations, 25-30 s, against 6.3 s for CLARABEL.
    n = 10,000: 58,000-100,000 iterations (the polish that succeeds comes late), 270-490 s, against
    14.5 s for CLARABEL. n = 100,000: setup 4 s, ~60 ms per iteration; with time_limit=900 it stopped
    after 15,000 iterations unpolished, 0.034 of a typical weight below zero ("inaccurate").
  * linear calibration (apistrat, ratio bounds (0.97, 1.03)): gap 5e-9, and the OSQP objective is the
    lower one (CLARABEL with tolerances 1e-14 agrees with OSQP to 5e-13): the reference is the less
    exact side.
  * 100-value delta path, SBW ATT n = 10,000, np.geomspace(0.2, 0.001, 100): warm 36 s (156,000
    iterations) against 67 s for 100 cold solves on new problems (257,000 iterations), 1.8x; 99
    optimal, 1 inaccurate (above). cvxpy + CLARABEL does the same path in 14-17 s.
  * kernel SBW path, n = 5,000, the first 20 of np.geomspace(0.001, 0.0005, 100): warm 101 s in all
    (first solve 16.6 s, then 0.1-15 s, median ~3,400 iterations) against 21.7 s per cold solve
    (13,000 iterations; 5 measured), about 4.3x; warm and cold objectives agree exactly.

Paths: P, A and their sparsity never change (targets, tolerances and bounds only move l and u), so
after the first solve every solve calls `update(l=, u=)`, warm-starts from the last returned solution
(x and y) and re-uses the factorization (OSQP refactors only when adaptive rho changes rho). `info`:
"setup_time" (OSQP setup seconds in this call, 0 when nothing was set up), "setups" (groups set up in
this call), "iterations" (ADMM iterations per group, all rungs), "polish" (outcome per group),
"polished_at" (the eps of the rung whose polish was accepted, None if none). `solve_time` is the wall
time of the call, including, on the first call, building the matrices and OSQP's setup.

Duals: y_j of a scaled balance row is the sensitivity of the u-objective to that row's bound, which is
S times the bound in the term's scale, so the objective in w moves by unit^2 S y_j per unit of extra
tolerance: `duals[term] = unit^2 * S * y` (positive when the upper side binds), the convention of
`terms.Balance.dual` and the cvxpy backend.
"""

from __future__ import annotations

import time

import numpy as np
import osqp
import scipy.sparse as sp

from ..errors import InputError, UnsupportedProblem
from .base import RawResult, register
from .forms import SeparableQP, balance_duals, balance_rows

#: OSQP 1.x settings applied unless `solve(**options)` overrides them; eps_abs / eps_rel are those of
#: the last continuation rung, in the rescaled problem's units (see the module docstring).
DEFAULT_SETTINGS = {
    "eps_abs": 1e-7,
    "eps_rel": 1e-7,
    "eps_prim_inf": 1e-6,
    "eps_dual_inf": 1e-6,
    "polishing": True,
    "polish_refine_iter": 10,
    "max_iter": 100_000,
    "adaptive_rho": True,
    "verbose": False,
}

#: A polished point is accepted when its constraint violations (in the post-solve check's units) and its
#: dual residual (relative to the gradient's size) are below these.
EXACT = {"violation": 1e-9, "dual": 1e-8}

#: The continuation's first tolerance and the factor between rungs (each rung ends with a polish attempt,
#: which costs about one factorization; finer rungs find the active set sooner: on kernel SBW at n = 5,000
#: a factor of sqrt(10) polished after 17,000 ADMM iterations, a factor of 10 after 23,000).
FIRST_RUNG = 1e-2
RUNG_FACTOR = 10 ** 0.5

#: ADMM iterations a loose rung may take before the continuation moves on, and the length of the
#: infeasibility probe run at the requested tolerances when it does (see `OsqpBackend._solve_group`).
RUNG_CAP = 5_000
PROBE_ITER = 500

_RENAMED = {"polish": "polishing"}
#: Settings OSQP 1.x changes on a set-up solver; any other change triggers a new setup.
_UPDATABLE = {"max_iter", "eps_abs", "eps_rel", "eps_prim_inf", "eps_dual_inf", "rho", "alpha", "delta", "polishing",
              "polish_refine_iter", "verbose", "scaled_termination", "check_termination", "check_dualgap",
              "warm_starting", "time_limit"}
_STATUS = {
    "OSQP_SOLVED": "optimal",
    "OSQP_SOLVED_INACCURATE": "inaccurate",
    "OSQP_MAX_ITER_REACHED": "inaccurate",
    "OSQP_TIME_LIMIT_REACHED": "inaccurate",
    "OSQP_PRIMAL_INFEASIBLE": "infeasible",
    "OSQP_PRIMAL_INFEASIBLE_INACCURATE": "infeasible",
}
_RANK = {"optimal": 0, "inaccurate": 1, "infeasible": 2, "failed": 3}
_POLISH = {-2: "linear system error", -1: "failed", 0: "not performed", 1: "succeeded", 2: "not needed"}
_INFTY = 1e30


def _status_name(value):
    try:
        return osqp.SolverStatus(value).name
    except (ValueError, AttributeError):
        return f"OSQP status {value}"


def _rungs(eps_abs, eps_rel):
    """FIRST_RUNG, FIRST_RUNG / RUNG_FACTOR, ... while looser than the requested tolerances, then the requested pair."""
    rungs, eps = [], FIRST_RUNG
    while eps > max(eps_abs, eps_rel) * 1.0001:
        rungs.append((max(eps, eps_abs), max(eps, eps_rel)))
        eps /= RUNG_FACTOR
    return rungs + [(eps_abs, eps_rel)]


class _GroupQP:
    """One group's QP over u = w / unit: the fixed P, q, A, the row layout and scales, and its OSQP object."""

    def __init__(self, group, qp, unit):
        self.group = group
        self.rows = np.arange(qp.n) if group.rows is None else np.asarray(group.rows)
        n_g = len(self.rows)
        self.S = float(n_g)
        scale = qp.dispersion.scale[self.rows]
        center = qp.dispersion.center[self.rows]
        self.P = sp.diags(2.0 / scale, format="csc")
        self.q = -2.0 * (center / unit) / scale
        self.total = group.total
        blocks, row_scale = [], []
        if self.total is not None:
            # sum(w) = T  <=>  (S unit / T) sum(u) = S; its residual / S is the relative sum error
            self.norm_coef = self.S * unit / (abs(self.total) if self.total != 0 else 1.0)
            self.norm_rhs = self.S * np.sign(self.total)
            blocks.append(sp.csr_matrix(np.full((1, n_g), self.norm_coef)))
            row_scale.append([self.S])
        rows = balance_rows(group.balance, n_g)
        self.k = rows.p
        if self.k:              # OSQP's own (sparse) copy of the scaled rows S unit (B / r)'
            blocks.append(sp.csr_matrix((self.S * unit) * rows.take(slice(None)).T))
            row_scale.append(np.full(self.k, self.S))
        lo, hi = qp.box()
        self.bounded = np.flatnonzero(np.isfinite(lo[self.rows]) | np.isfinite(hi[self.rows]))
        if len(self.bounded):
            blocks.append(sp.identity(n_g, format="csr")[self.bounded])
            row_scale.append(np.ones(len(self.bounded)))
        self.A = sp.vstack(blocks, format="csc") if blocks else sp.csc_matrix((0, n_g))
        self.row_scale = np.concatenate(row_scale) if row_scale else np.zeros(0)
        self.offset = 1 if self.total is not None else 0
        self.solver = None
        self.settings = None
        self.x = self.y = None          # the last solution returned (the next warm start)

    def limits(self, qp, unit):
        """l and u for the current parameter values, and whether the bound rows still cover every finite bound."""
        l, u = [], []
        if self.total is not None:
            l.append([self.norm_rhs]), u.append([self.norm_rhs])
        if self.k:
            target, delta = self.group.targets()
            l.append(self.S * (target - delta)), u.append(self.S * (target + delta))
        lo, hi = qp.box()
        lo, hi = lo[self.rows], hi[self.rows]
        finite = np.isfinite(lo) | np.isfinite(hi)
        finite[self.bounded] = False
        if len(self.bounded):
            l.append(np.maximum(lo[self.bounded] / unit, -_INFTY))
            u.append(np.minimum(hi[self.bounded] / unit, _INFTY))
        join = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
        return join(l), join(u), not finite.any()

    def setup(self, l, u, settings):
        solver = osqp.OSQP()
        solver.setup(self.P, self.q, self.A, l, u, **settings)
        self.solver, self.settings = solver, dict(settings)
        self.x = self.y = None

    def apply(self, settings):
        """Bring the solver's settings to `settings`; False when that needs a new setup (a setup-only setting
        such as scaling, sigma or adaptive rho changed: OSQP would silently keep the old value)."""
        changed = {k: v for k, v in settings.items() if self.settings.get(k) != v}
        if any(k not in _UPDATABLE for k in changed):
            return False
        if changed:
            self.solver.update_settings(**changed)
            self.settings.update(changed)
        return True

    def snap(self, x, l, u):
        """x with values within EXACT["violation"] outside their bounds moved onto them (a polished zero weight
        comes back as +-1e-21 or so; the rows are identity rows, so this only shrinks violations)."""
        if not len(self.bounded):
            return x
        x = x.copy()
        lo, hi = l[-len(self.bounded):], u[-len(self.bounded):]
        xb = x[self.bounded]
        tol = EXACT["violation"]
        xb = np.where((xb < lo) & (xb >= lo - tol), lo, xb)
        xb = np.where((xb > hi) & (xb <= hi + tol), hi, xb)
        x[self.bounded] = xb
        return x

    def set(self, **changed):
        self.solver.update_settings(**changed)
        self.settings.update(changed)

    def exact(self, x, y, l, u):
        """Whether a polished (x, y) is exact to `EXACT`: violations in the check's units, relative dual residual."""
        Ax = self.A @ x
        violation = np.max(np.maximum(np.maximum(l - Ax, Ax - u), 0.0) / self.row_scale, initial=0.0)
        Px = self.P @ x
        size = max(1.0, np.max(np.abs(Px), initial=0.0), np.max(np.abs(self.q), initial=0.0))
        dual = np.max(np.abs(Px + self.q + self.A.T @ y), initial=0.0) / size
        return violation <= EXACT["violation"] and dual <= EXACT["dual"]


@register
class OsqpBackend:
    """OSQP (1.x) on the problem's separable QP: one set-up solver per group, re-used across solves."""

    name = "osqp"
    form = SeparableQP
    auto = None
    solves = "SBW, kernel SBW, linear calibration (the chi-square distance, no rows of your own)"
    how = "the QP handed to OSQP directly, factorization cached across a path"

    def __init__(self, problem):
        self.qp = SeparableQP.of(problem.terms, problem.n, self.name)
        if self.qp.dispersion.tau is not None:     # q is built once: a swept center would go stale
            raise UnsupportedProblem("backend 'osqp' keeps the chi-square center fixed; a tau parameter needs "
                                     "backend='dual' or 'cvxpy'")
        self.unit = float(problem.weight_unit)
        self.n = problem.n
        self.groups = None              # built on the first solve, inside its timing
        self.setups = 0                 # OSQP setups over this backend's life (a path should add none)

    def solve(self, solver=None, warm_start=True, continuation=True, **options):
        if solver is not None and str(solver).upper() != "OSQP":
            raise InputError(f"backend 'osqp' solves with OSQP only, got solver={solver!r}; "
                             "use backend='cvxpy' for other solvers")
        settings = dict(DEFAULT_SETTINGS)
        for key, value in options.items():
            settings[_RENAMED.get(key, key)] = value
        start = time.perf_counter()
        if self.groups is None:
            self.groups = [_GroupQP(g, self.qp, self.unit) for g in self.qp.groups]
        weights = np.full(self.n, np.nan)
        duals, statuses, messages, iterations, polish, polished_at = {}, [], [], [], [], []
        setup_time, setups = 0.0, 0
        for index, g in enumerate(self.groups):
            l, u, fits = g.limits(self.qp, self.unit)
            if not fits:    # a bound became finite where the matrix has no row for it: rebuild this group
                g = self.groups[index] = _GroupQP(g.group, self.qp, self.unit)
                l, u, fits = g.limits(self.qp, self.unit)
            try:
                fresh = g.solver is None or not g.apply(settings)
                if fresh:
                    g.setup(l, u, settings)
                    setups += 1
                    self.setups += 1
                else:
                    g.solver.update(l=l, u=u)
                    if warm_start and g.x is not None:
                        g.solver.warm_start(x=g.x, y=g.y)
                    else:
                        g.solver.warm_start(x=np.zeros(g.A.shape[1]), y=np.zeros(g.A.shape[0]))
            except ValueError as exc:   # OSQP: unrecognized settings
                raise InputError(f"backend 'osqp': {exc}") from exc
            result, used, accepted, setup_seconds = self._solve_group(g, l, u, settings, continuation)
            info = result.info
            if fresh:
                setup_time += setup_seconds
            status = _STATUS.get(_status_name(info.status_val), "failed")
            statuses.append(status)
            iterations.append(used)
            polish.append(_POLISH.get(int(info.status_polish), str(info.status_polish)) if settings["polishing"]
                          else "not performed")
            polished_at.append(accepted)
            messages.append(info.status if len(self.groups) == 1 else f"group {index}: {info.status}")
            x, y = np.array(result.x, dtype=float), np.array(result.y, dtype=float)
            if status in ("optimal", "inaccurate") and np.all(np.isfinite(x)) and np.all(np.isfinite(y)):
                g.x, g.y = x, y
                weights[g.rows] = self.unit * g.snap(x, l, u)
                # OSQP's y is minus the u-objective's sensitivity to a row's bound, a row being S times its
                # balance value: the objective in w moves by -unit^2 S y per unit of the balance value.
                duals.update(balance_duals(g.group.balance, -self.unit ** 2 * g.S * y[g.offset: g.offset + g.k]))
        status = max(statuses, key=_RANK.__getitem__) if statuses else "optimal"
        if status not in ("optimal", "inaccurate"):
            weights[:] = np.nan
            duals = {}
        return RawResult(
            weights=weights,
            status=status,
            solver="OSQP",
            solve_time=time.perf_counter() - start,
            duals=duals,
            iterations=int(sum(iterations)),
            message="OSQP status " + "; ".join(messages),
            info={"setup_time": setup_time, "setups": setups, "iterations": iterations, "polish": polish,
                  "polished_at": polished_at},
        )

    @staticmethod
    def _solve_group(g, l, u, settings, continuation):
        """Run the tolerance continuation on one set-up group. Returns the last OSQP result, the ADMM
        iterations used, the eps of the rung whose polish was accepted (None if none) and OSQP's setup time."""
        budget = int(settings["max_iter"])
        final = (settings["eps_abs"], settings["eps_rel"])
        rungs = _rungs(*final) if continuation and settings["polishing"] else [final]
        used, clock = 0, time.perf_counter()

        def run(eps, iterations):
            nonlocal used
            limit = settings.get("time_limit")
            extra = {} if limit is None else {"time_limit": max(limit - (time.perf_counter() - clock), 1e-3)}
            g.set(eps_abs=eps[0], eps_rel=eps[1], max_iter=max(int(iterations), 1), **extra)
            result = g.solver.solve(raise_error=False)
            used += int(result.info.iter)
            return result, _status_name(result.info.status_val)

        def capped(result, name, cap):   # stopped by the iteration cap (with "solved inaccurate" if 10x eps holds)
            return name in ("OSQP_MAX_ITER_REACHED", "OSQP_SOLVED_INACCURATE") and int(result.info.iter) >= cap

        result, name, ran, i = None, "", final, 0
        while True:
            eps, last = rungs[i], i == len(rungs) - 1
            cap = budget - used if last else min(budget - used, RUNG_CAP)
            result, name = run(eps, cap)
            ran = eps
            if name == "OSQP_SOLVED":
                if last or (int(result.info.status_polish) == 1 and g.exact(result.x, result.y, l, u)):
                    break
                i += 1
                continue
            if not last and capped(result, name, cap) and used < budget:
                # A loose rung never tests infeasibility (OSQP skips the test while the primal residual meets the
                # rung's tolerance, which a scaled row always does), so probe with the requested tolerances, then
                # go on at the same rung (ADMM simply continues: nothing is lost).
                probe = min(budget - used, PROBE_ITER)
                result, name = run(final, probe)
                ran = final
                if name == "OSQP_SOLVED":
                    break
                if capped(result, name, probe) and used < budget:
                    continue
            break
        exact = name == "OSQP_SOLVED" and int(result.info.status_polish) == 1 and g.exact(result.x, result.y, l, u)
        g.set(eps_abs=final[0], eps_rel=final[1], max_iter=budget,
              **({} if settings.get("time_limit") is None else {"time_limit": settings["time_limit"]}))
        return result, used, float(f"{ran[0]:.3g}") if exact else None, result.info.setup_time
