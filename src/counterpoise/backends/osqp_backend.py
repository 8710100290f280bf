"""OSQP on the separable QP, built directly: one cached factorization per group, warm-started along paths.

The problem (see `structure.separable_qp`) is

    minimize   sum_i (w_i - c_i)^2 / s_i
    subject to sum_{i in g} w_i = T_g,  |B_g' w_g - t| <= delta,  lo <= w <= hi     for every group g,

and groups (arms) share no constraint, so each group is its own OSQP problem. Per group, over
u = w / unit (unit = the problem's typical weight, 1/n for SBW, the mean base weight for calibration):

    minimize   1/2 u'Pu + q'u,   P = 2 diag(1/s),  q = -2 (c / unit) / s
    subject to l <= A u <= u_bar, the rows of A being
               unit / T_g * 1'          (normalization, = 1: its residual is the relative sum error)
               unit * (B_g / r)'        (balance in the term's scale, t/r -+ delta: residuals in SD units)
               I                        (bounds lo / unit, hi / unit, for units with a finite bound)

which is the objective in w divided by unit^2 (constants dropped). This scaling is what makes OSQP's
absolute tolerances mean something: every constraint row is measured in the same units as
counterpoise's post-solve check (relative sums, SD units, fractions of a typical weight), and the
objective's curvature is 2 / s_i, about 2 per variable, so a dual residual of eps moves a weight by
about eps/2 of a typical weight. The objective itself is of order n; it is left undivided, because
dividing it by n (to make it of order 1) divides the dual residual by n too and loosens the
stationarity test by that factor (OSQP's internal cost scaling handles the magnitude).

Defaults (`DEFAULT_SETTINGS`, each overridable by `solve(**options)` with OSQP 1.x names): eps_abs =
eps_rel = 1e-8 on the rescaled problem, polishing on with 10 refinement steps, max_iter 100,000,
adaptive rho on, verbose off. The polish step (solve the KKT system of the active set that ADMM
found) is what turns ADMM's 1e-8 residuals into an exact vertex: on SBW and kernel SBW it succeeds
at every size tried, and the post-check then sees violations at rounding level (about 1e-12).
When polishing fails (a wrongly guessed active set) the ADMM iterate is returned; its residuals are
below eps_abs + eps_rel * scale in the units above, and `info["polish"]` says "failed".

Measured against cvxpy + CLARABEL (`prob.check("osqp")`, this machine, 2 cores):

    SBW, kim2023 weak overlap, X1..X6, ATT, delta 0.02 SD, n = 5000: objective gap 1e-10,
        max violation 3e-15, weight gap 3e-6 (CLARABEL's own weights are accurate to ~1e-5), 0.03 s
    SBW ATE (two groups): gap 2e-10; kernel SBW (m=300, l=200, s=100, delta 0.0005 raw), n = 5000:
        gap 1e-8, violation 1e-13, 0.5 s (CLARABEL 9 s)
    linear calibration on apistrat with ratio bounds (0.97, 1.03): gap 1e-12, violation 1e-13

See the measurements in the closing block of this docstring's module tests
(`tests/test_osqp_backend.py`) and the numbers reported with the backend for timings of paths.

Paths: the sparsity of P and A never changes (targets, tolerances and bounds only move l and u), so
after the first solve every solve calls `update(l=, u=)`, warm-starts from the previous solution
(x and y, from the last solve that returned a solution) and re-uses the factorization; OSQP
refactors only when adaptive rho changes rho. `info["setups"]` counts setups, `info["setup_time"]`
is the OSQP setup time of this call (0 on a warm call), `info["iterations"]` the ADMM iterations per
group and `info["polish"]` the polish outcome per group. `solve_time` is the wall time of the call.

Duals: y of balance row j is d(objective in u)/d(bound), so the objective in w moves by unit^2 * y_j
per unit of extra tolerance; `duals[term]` = unit^2 * y, positive when the upper side binds, the
convention of `terms.Balance.dual` and the cvxpy backend.
"""

from __future__ import annotations

import time

import numpy as np
import osqp
import scipy.sparse as sp

from ..errors import InputError
from .base import RawResult
from .structure import separable_qp

#: OSQP 1.x settings applied unless `solve(**options)` overrides them (0.6 names "polish" and
#: "warm_start" are accepted too). Tolerances are absolute in the rescaled problem's units (module doc).
DEFAULT_SETTINGS = {
    "eps_abs": 1e-8,
    "eps_rel": 1e-8,
    "eps_prim_inf": 1e-6,
    "eps_dual_inf": 1e-6,
    "polishing": True,
    "polish_refine_iter": 10,
    "max_iter": 100_000,
    "adaptive_rho": True,
    "verbose": False,
}

_RENAMED = {"polish": "polishing"}

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


class _GroupQP:
    """One group's QP over u = w / unit: the fixed P, q, A, the row layout, and its OSQP object."""

    def __init__(self, group, qp, unit):
        self.group = group
        rows = np.arange(qp.n) if group.rows is None else np.asarray(group.rows)
        self.rows = rows
        n_g = len(rows)
        scale = qp.dispersion.scale[rows]
        center = qp.dispersion.center[rows]
        self.P = sp.diags(2.0 / scale, format="csc")
        self.q = -2.0 * (center / unit) / scale
        blocks = []
        self.total = group.total
        if self.total is not None:
            self.norm_coef = unit / abs(self.total) if self.total != 0 else unit
            blocks.append(sp.csr_matrix(np.full((1, n_g), self.norm_coef)))
        B, _, _ = group.constraint_matrix()
        self.k = 0 if B is None else B.shape[1]
        self.balance = []   # (term name, start, stop) within the balance rows
        start = 0
        for term in group.balance:
            self.balance.append((term.name, start, start + len(term.columns)))
            start += len(term.columns)
        if B is not None:
            blocks.append(sp.csr_matrix(np.ascontiguousarray((unit * B).T)))
        lo, hi = qp.box()
        self.bounded = np.flatnonzero(np.isfinite(lo[rows]) | np.isfinite(hi[rows]))
        if len(self.bounded):
            blocks.append(sp.identity(n_g, format="csr")[self.bounded])
        self.A = sp.vstack(blocks, format="csc") if blocks else sp.csc_matrix((0, n_g))
        self.solver = None
        self.setups = 0
        self.x = self.y = None          # the last solution returned (for warm starts)
        self.settings = None

    def limits(self, qp, unit):
        """l and u for the current parameter values, and whether the bounded rows still cover every finite bound."""
        l, u = [], []
        if self.total is not None:
            sign = self.total * self.norm_coef / unit if self.total != 0 else 0.0
            l.append([sign]), u.append([sign])
        if self.k:
            _, target, delta = self.group.constraint_matrix()
            l.append(target - delta), u.append(target + delta)
        lo, hi = qp.box()
        lo, hi = lo[self.rows], hi[self.rows]
        covered = np.zeros(len(self.rows), dtype=bool)
        covered[self.bounded] = True
        fits = not np.any(~covered & (np.isfinite(lo) | np.isfinite(hi)))
        if len(self.bounded):
            l.append(np.maximum(lo[self.bounded] / unit, -_INFTY))
            u.append(np.minimum(hi[self.bounded] / unit, _INFTY))
        cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
        return cat(l), cat(u), fits

    def setup(self, l, u, settings):
        self.solver = osqp.OSQP()
        self.solver.setup(self.P, self.q, self.A, l, u, **settings)
        self.settings = dict(settings)
        self.setups += 1
        self.x = self.y = None

    def apply(self, settings):
        """Bring the solver's settings to `settings`; False when only a new setup can (setup-only settings)."""
        changed = {k: v for k, v in settings.items() if self.settings.get(k) != v}
        if not changed:
            return True
        try:
            self.solver.update_settings(**changed)
        except Exception:   # noqa: BLE001 - OSQP refuses setup-only settings (scaling, adaptive rho, ...)
            return False
        self.settings.update(changed)
        return True


class OsqpBackend:
    """OSQP (1.x) on the problem's separable QP, one set-up solver per group, re-used across solves."""

    name = "osqp"

    def __init__(self, problem):
        self.qp = separable_qp(problem.terms, problem.n, self.name)
        self.unit = float(problem.weight_unit)
        self.n = problem.n
        self.groups = [_GroupQP(g, self.qp, self.unit) for g in self.qp.groups]

    def solve(self, solver=None, warm_start=True, **options):
        if solver is not None and str(solver).upper() != "OSQP":
            raise InputError(f"backend 'osqp' solves with OSQP only, got solver={solver!r}; "
                             "use backend='cvxpy' for other solvers")
        settings = dict(DEFAULT_SETTINGS)
        for key, value in options.items():
            settings[_RENAMED.get(key, key)] = value
        start = time.perf_counter()
        weights = np.full(self.n, np.nan)
        duals, statuses, messages, iterations, polish, setup_time, setups, objective = {}, [], [], [], [], 0.0, 0, 0.0
        for index, g in enumerate(self.groups):
            l, u, fits = g.limits(self.qp, self.unit)
            fresh = g.solver is None or not fits or not g.apply(settings)
            try:
                if fresh:
                    g.setup(l, u, settings)
                    setups += 1
                else:
                    g.solver.update(l=l, u=u)
                    if warm_start and g.x is not None:
                        g.solver.warm_start(x=g.x, y=g.y)
                    elif not warm_start:
                        g.solver.warm_start(x=np.zeros(g.A.shape[1]), y=np.zeros(g.A.shape[0]))
            except ValueError as exc:   # unrecognized settings
                raise InputError(f"backend 'osqp': {exc}") from exc
            result = g.solver.solve(raise_error=False)
            info = result.info
            name = _status_name(info.status_val)
            status = _STATUS.get(name, "failed")
            if fresh:
                setup_time += info.setup_time
            statuses.append(status)
            iterations.append(int(info.iter))
            polish.append(_POLISH.get(int(info.status_polish), str(info.status_polish)))
            messages.append(f"{info.status}" if len(self.groups) == 1 else f"group {index}: {info.status}")
            x, y = np.asarray(result.x, dtype=float), np.asarray(result.y, dtype=float)
            if status in ("optimal", "inaccurate") and np.all(np.isfinite(x)) and np.all(np.isfinite(y)):
                g.x, g.y = x.copy(), y.copy()
                weights[g.rows] = self.unit * x
                offset = 1 if g.total is not None else 0
                for term, a, b in g.balance:
                    duals[term] = self.unit ** 2 * y[offset + a: offset + b]
                objective += float(info.obj_val)
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
                  "osqp_objective": objective},
        )
