"""The problem forms the fast backends solve, recognized from a problem's terms, and the dual sign convention.

Each form's `of(terms, n, backend)` returns the form or raises `UnsupportedProblem` naming the term that does not
fit; `accepts(terms, n)` says whether it would. Parameter values (targets, tolerances, bounds) are read when a
solve starts, so a form is built once per backend and serves a whole path.

  WeightingForm    min sum_i d_i G(w_i / d_i) (a chi-square sum (w_i - c_i)^2 / s_i, raking, logit, linear)
                   s.t. lo <= w <= hi (bounds, and MaxShare where the totals are fixed), per group g:
                   sum w_g = N_g, |(B_g'w_g - t)/r| <= delta (exact: delta = 0) and l <= C_g'w_g <= u, the rows
                   of a user's terms that are affine in w                                         (backend dual)
  SeparableQP      the WeightingForm with the chi-square distance and no user's rows            (backend osqp)
  CalibrationForm  the WeightingForm with a calibration distance (linear, raking, logit) and exact totals, per
                   group of units with a normalization each (raking / logit)     (backend calibration)
  SparseLassoForm  min SparseLoss(w)  s.t. 0 <= w / w0 <= cap          (backend prox)

`balance_duals` turns a backend's multipliers into counterpoise's dual values; it is the one place the sign
convention is applied.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from ..errors import InfeasibleError, UnsupportedProblem
from ..terms import Balance, Bounds, ChiSquare, Entropy, Linear, Logit, MaxShare, Normalize, SparseLoss
from .affine import AffineTerm
from .rows import Rows, Stacked


def split(terms, stacked) -> dict:
    """A vector stacked over the terms' columns, cut into one piece per term (by name)."""
    pieces, offset = {}, 0
    for term in terms:
        pieces[term.name] = np.asarray(stacked[offset: offset + len(term.columns)], dtype=float)
        offset += len(term.columns)
    return pieces


def balance_duals(terms, sensitivity) -> dict:
    """counterpoise's dual per balance term from the stacked sensitivities of the optimal objective to each
    constraint's scaled value (d p* / d t_j, in the term's units; the multiplier y of a Newton dual). The dual is
    -sensitivity: positive when the upper side binds, and the objective falls by |dual_j| per unit of extra
    tolerance (`terms.Balance`)."""
    return {name: -piece for name, piece in split(terms, sensitivity).items()}


def box(bounds, n) -> tuple[np.ndarray, np.ndarray]:
    """The tightest current lower and upper bounds on w over the Bounds terms (+-inf where free)."""
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    for term in bounds:
        term_lo, term_hi = term.limits(n)
        lo, hi = np.maximum(lo, term_lo), np.minimum(hi, term_hi)
    return lo, hi


def balance_rows(terms, n, constant=None) -> Rows:
    """The rows [B_1 / s_1, ..., B_m / s_m (, constant)] of balance terms over n units, on the terms' own matrices:
    no copy for one term, or for terms whose matrices are consecutive column views of one matrix."""
    if not terms:
        return Rows(np.zeros((n, 0)), constant=constant)
    scale = np.concatenate([t.scale for t in terms])
    if len(terms) == 1:
        return Rows(terms[0].matrix, column_scale=scale, constant=constant, columns=terms[0].column_index)
    matrices = [t.matrix if t.column_index is None else t.matrix[:, t.column_index] for t in terms]
    return Rows(joined(matrices), column_scale=scale, constant=constant)


def joined(matrices):
    """[B_1, ..., B_m] side by side: a view of the builder's own matrix when the B_j are consecutive column views
    of one block of its rows, full width (no copy), else a new one."""
    if any(scipy.sparse.issparse(m) for m in matrices):
        return scipy.sparse.hstack(matrices, format="csr")
    base = matrices[0].base
    if isinstance(base, np.ndarray) and base.ndim == 2 and base.flags.c_contiguous and \
            all(m.base is base and m.strides == base.strides and m.shape[0] == matrices[0].shape[0]
                for m in matrices) and sum(m.shape[1] for m in matrices) == base.shape[1]:
        first, row = divmod((matrices[0].__array_interface__["data"][0] - base.__array_interface__["data"][0])
                            // base.itemsize, base.shape[1])
        starts = [m.__array_interface__["data"][0] for m in matrices]
        widths = np.cumsum([0] + [m.shape[1] for m in matrices[:-1]]) * base.itemsize
        if row == 0 and np.array_equal(np.subtract(starts, starts[0]), widths):
            return base[first: first + matrices[0].shape[0]]
    return np.hstack(matrices)


class Form:
    """A recognizer: `of` builds the form or raises UnsupportedProblem; `accepts` asks without raising."""

    @classmethod
    def of(cls, terms, n, backend):
        raise NotImplementedError

    @classmethod
    def accepts(cls, terms, n) -> bool:
        try:
            cls.of(terms, n, cls.__name__)
        except UnsupportedProblem:
            return False
        return True


@dataclass
class Group:
    """The units `rows` (None: all) with their normalization total (None: free; `name`: its term's) and balance
    terms."""

    rows: np.ndarray | None
    total: float | None = None
    balance: list = field(default_factory=list)
    name: str = ""
    affine: list = field(default_factory=list)       # `affine.AffineTerm`s whose rows fall on these units

    def select(self, x):
        return x if self.rows is None else x[self.rows]

    def scales(self):
        """The column scales r of the group's balance rows, in row order."""
        return np.concatenate([t.scale for t in self.balance]) if self.balance else np.zeros(0)

    def targets(self):
        """The scaled targets t / r and tolerances of the group's balance rows, in row order."""
        if not self.balance:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([t.scaled_target() for t in self.balance]),
                np.concatenate([t.tolerances() for t in self.balance]))

    def constraint_rows(self, size) -> Rows:
        """A' = [B / r, 1] (the sum column only when normalized) over the group's `size` units."""
        return balance_rows(self.balance, size, constant=1.0 if self.total is not None else None)


def _roles(terms, role, solves, alternative="") -> dict:
    """The terms by their role in a form (`role(term)`; None: the form cannot hold it, UnsupportedProblem naming
    the term); every role a list, empty where no term has it."""
    roles = defaultdict(list)
    for term in terms:
        name = role(term)
        if name is None:
            raise UnsupportedProblem(f"{solves}; term {term.name!r} ({type(term).__name__}) needs backend='cvxpy'"
                                     f"{alternative}")
        roles[name].append(term)
    return roles


def _calibration_role(term):
    kind = type(term)
    if kind in (Linear, Logit) or kind is Entropy and term.offset is None:
        return "distance"
    if kind is Balance:
        return "balance" if term.exact else None
    return {Normalize: "normalize", Bounds: "bounds"}.get(kind)


def _sparse_role(term):
    if type(term) is SparseLoss:
        return "loss"
    return "bounds" if type(term) is Bounds and term.reference is not None else None


def groups(normalize, balance, n, backend) -> list:
    """The groups of units the constraints split the problem into: one per Normalize term (all units without
    one), each with the balance terms on its rows; UnsupportedProblem unless they cover every unit once."""
    found = [Group(rows=t.rows, total=t.total, name=t.name) for t in normalize] or [Group(rows=None)]
    for term in balance:
        group = next((g for g in found if _same_rows(g.rows, term.rows)), None)
        if group is None:
            raise UnsupportedProblem(f"backend {backend!r}: balance term {term.name!r} covers rows that match no "
                                     "normalized group")
        group.balance.append(term)
    covered = sum(n if g.rows is None else len(g.rows) for g in found)
    if covered != n:
        raise UnsupportedProblem(f"backend {backend!r}: the normalized groups cover {covered} of {n} units")
    return found


def _same_rows(a, b):
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and np.array_equal(a, b)


@dataclass
class WeightingForm(Form):
    """The weighting form (module docstring): the distance term, the bounds, the groups of units (each with its
    normalization, balance terms and user's affine terms) over n units. A term that is none of these and not affine
    in w is refused (UnsupportedProblem naming it: the problem goes to cvxpy)."""

    distance: object
    bounds: list
    groups: list
    n: int
    caps: list = field(default_factory=list)     # MaxShare terms: with every group's total fixed, a bound on each w_i

    @classmethod
    def of(cls, terms, n, backend):
        distances, bounds, normalize, balance, affine, caps = [], [], [], [], [], []
        for term in terms:
            kind = type(term)
            if kind in (ChiSquare, Linear, Logit) or kind is Entropy and term.offset is None:
                distances.append(term)
            elif kind in (Balance, Normalize, Bounds, MaxShare):
                {Balance: balance, Normalize: normalize, Bounds: bounds, MaxShare: caps}[kind].append(term)
            elif kind in (SparseLoss, Entropy):
                raise UnsupportedProblem(f"backend {backend!r} solves a separable distance with linear rows; term "
                                         f"{term.name!r} ({kind.__name__}) needs backend='prox' or backend='cvxpy'")
            else:
                affine.append(AffineTerm(term, n))
        if len(distances) != 1:
            raise UnsupportedProblem(f"backend {backend!r} needs exactly one distance term (chi-square, raking, "
                                     f"logit), found {len(distances)}")
        found = groups(normalize, balance, n, backend)
        if caps and any(group.total is None for group in found):
            raise UnsupportedProblem(f"backend {backend!r}: term {caps[0].name!r} (MaxShare) caps each weight at a "
                                     "share of the total, a bound on w only where every unit's group has a fixed "
                                     "total; it needs backend='cvxpy'")
        for term in affine:
            _attach(term, found, backend)
        return cls(distance=distances[0], bounds=bounds, groups=found, n=n, caps=caps)

    def box(self):
        """The tightest current bounds on w: the Bounds terms, MaxShare's w_i <= share * (the groups' fixed total),
        and the distance's own domain (w >= 0 for raking, L d <= w <= U d for logit)."""
        lo, hi = box(self.bounds, self.n)
        if self.caps:
            total = sum(group.total for group in self.groups)
            hi = np.minimum(hi, min(float(cap.share.value) for cap in self.caps) * total)
        if type(self.distance) is Logit:
            return np.maximum(lo, self.distance.lower * self.distance.base), \
                np.minimum(hi, self.distance.upper * self.distance.base)
        if type(self.distance) is Entropy:
            return np.maximum(lo, 0.0), hi
        return lo, hi

    def user_rows(self, group, rows):
        """The group's rows [B / r, 1, C / c] from its balance-and-sum rows `rows` (`Group.constraint_rows`, built once
        by the backend) and its user's rows at the current parameter values (each scaled by its largest coefficient
        times the group's base total, so that its values are of order one), with (lower, upper) of the user's rows in
        those units, and the name of the term each user's row comes from."""
        if not group.affine:
            return rows, np.zeros(0), np.zeros(0), []
        pieces = [_group_rows(term, group) for term in group.affine]
        C = scipy.sparse.hstack([piece[0] for piece in pieces], format="csc")
        if not C.shape[1]:
            return rows, np.zeros(0), np.zeros(0), []
        lower, upper = (np.concatenate([piece[j] for piece in pieces]) for j in (1, 2))
        owners = [term.term.name for term, piece in zip(group.affine, pieces) for _ in range(len(piece[1]))]
        base = np.abs(group.select(self.distance.base)).sum()
        scale = abs(C).max(axis=0).toarray().ravel() * base
        return Stacked(rows, C @ scipy.sparse.diags(1.0 / scale)), lower / scale, upper / scale, owners


def _group_rows(term, group):
    """A user's term's rows (C, l, u) on the units of its group, read now: rows with no coefficient left out after
    checking that 0 is within their bounds; an error when a parameter has moved coefficients off the group."""
    C, lower, upper = term.rows()
    if not _on_units(C, group):
        raise UnsupportedProblem(f"term {term.term.name!r} ({type(term.term).__name__}): its parameters now put "
                                 "coefficients on the units of another normalized group; solve it with "
                                 "backend='cvxpy'")
    empty = np.diff(C.indptr) == 0
    if np.any(empty & ((lower > 0) | (upper < 0))):
        raise InfeasibleError(f"term {term.term.name!r} ({type(term.term).__name__}) has a constraint with no weight "
                              "in it whose bounds exclude 0: no weights satisfy it")
    C = C if group.rows is None else C.tocsr()[group.rows].tocsc()
    return C[:, ~empty], lower[~empty], upper[~empty]


def _on_units(C, group) -> bool:
    """Whether every nonzero coefficient of C (n x m, CSC) falls on the group's units."""
    return group.rows is None or bool(np.isin(np.unique(C.indices), group.rows).all())


def _attach(term, found, backend):
    """Put a user's affine term in the group whose units its coefficients fall on."""
    C = term.rows()[0]
    for group in found:
        if _on_units(C, group):
            group.affine.append(term)
            return
    raise UnsupportedProblem(f"backend {backend!r}: term {term.term.name!r} ({type(term.term).__name__}) has rows on "
                             "the units of more than one normalized group; the engine solves groups one at a time")


@dataclass
class DualForm(WeightingForm):
    """The weighting form that backend "dual" takes: a chi-square distance (SBW's, and linear calibration's, which
    it solves to exact totals too) with any rows; raking and logit where some row is not an exact total (a
    tolerance, a user's row). Exact raking and logit calibration is backend "calibration"'s: the same Newton, with
    survey's convergence rule and failure report (the worst targets, the closest weights), which the survey
    module's numbers follow."""

    @classmethod
    def of(cls, terms, n, backend):
        form = super().of(terms, n, backend)
        exact = all(term.exact for group in form.groups for term in group.balance)
        if not isinstance(form.distance, ChiSquare) and exact and not any(group.affine for group in form.groups):
            raise UnsupportedProblem(f"backend {backend!r}: the {type(form.distance).__name__} distance with exact "
                                     "totals is solved by backend 'calibration' (survey's stopping rule), and "
                                     "otherwise needs backend='cvxpy'")
        return form


@dataclass
class SeparableQP(WeightingForm):
    """The weighting form with the chi-square distance sum (w_i - c_i)^2 / s_i (the `dispersion`) and no user's
    rows: what the OSQP backend builds its QP from."""

    @property
    def dispersion(self):
        return self.distance

    @classmethod
    def of(cls, terms, n, backend):
        form = super().of(terms, n, backend)
        if not isinstance(form.distance, ChiSquare):
            raise UnsupportedProblem(f"backend {backend!r} solves the chi-square distance; {form.distance.name!r} "
                                     f"({type(form.distance).__name__}) needs backend='dual' or backend='cvxpy'")
        for group in form.groups:
            if group.affine:
                raise UnsupportedProblem(f"backend {backend!r}: term {group.affine[0].term.name!r} "
                                         f"({type(group.affine[0].term).__name__}) needs backend 'dual' or 'cvxpy'")
        return form


@dataclass
class CalibrationForm(WeightingForm):
    """The weighting form of calibration to exact totals: a calibration distance (linear, raking / entropy, logit)
    to base weights, exact balance rows, bounds; per group of units with a normalization each (entropy balancing of
    the ATE) with the raking or logit distance."""

    @classmethod
    def of(cls, terms, n, backend):
        solves = (f"backend {backend!r} solves calibration (linear, raking or logit distance to base weights, "
                  "exact totals, bounds)")
        for term in terms:
            if _calibration_role(term) is None:
                raise UnsupportedProblem(f"{solves}; term {term.name!r} ({type(term).__name__}) needs backend='cvxpy' "
                                         "(or 'dual' for tolerances and rows of your own)")
        form = super().of(terms, n, backend)
        if not any(group.balance or group.total is not None for group in form.groups):
            raise UnsupportedProblem(f"backend {backend!r} needs one calibration distance and exact totals")
        if len(form.groups) > 1 and type(form.distance) is Linear:
            raise UnsupportedProblem(f"backend {backend!r} calibrates groups of units with the raking or logit "
                                     "distance; the linear distance per group is backend 'dual'")
        return form

    @staticmethod
    def names(group) -> list:
        """The targets' names of a group, in row order: "term:column", then its normalization's."""
        names = [f"{term.name}:{c}" for term in group.balance for c in term.columns]
        return names + ([group.name] if group.total is not None else [])

    @staticmethod
    def scales(group) -> np.ndarray:
        """The scale of each row's misfit in the totals' own units (the balance columns' s, 1 for the sum)."""
        return np.append(group.scales(), [1.0] * (group.total is not None))


@dataclass
class SparseLassoForm(Form):
    """SparseLoss with 0 <= w / w0 (<= cap) on the loss's base weights."""

    loss: SparseLoss
    bounds: list

    @classmethod
    def of(cls, terms, n, backend):
        roles = _roles(terms, _sparse_role, f"backend {backend!r} solves sparse calibration (SparseLoss, "
                                            "0 <= w / w0 <= cap)")
        if len(roles["loss"]) != 1:
            raise UnsupportedProblem(f"backend {backend!r} needs one SparseLoss term (sparse_calibrate)")
        loss, bounds = roles["loss"][0], roles["bounds"]
        if not bounds or any(not np.allclose(term.reference, loss.w0) or term.lower is None for term in bounds):
            raise UnsupportedProblem(f"backend {backend!r} needs the bounds 0 <= w / w0 (<= cap) on the loss's base "
                                     "weights")
        return cls(loss=loss, bounds=bounds)
