"""A user's term whose constraints are affine in the weights, read as linear rows  l <= C w <= u.

A term written for cvxpy (`Term.constraints(w)`, see the README's "Your own constraint") is handed a cvxpy
variable of length n; each constraint it returns that is affine in w (`expr <= 0`, `expr >= 0`, `expr == 0`, with
expr = C w + e) becomes rows of the weighting form: C (n x m, sparse, its coefficients read by cvxpy's own
differentiation of the affine expression) and bounds l, u (-e where a side binds, +-inf where it is free). The
term's Parameters are read at each `rows()` call, so a path over them is re-read point by point. The coefficients
are checked: C w + e must reproduce cvxpy's value of the expression at a random w, so a term cvxpy calls affine
but whose coefficients cannot be read is refused rather than solved wrong.

A term with an objective, a constraint that is not affine (`cp.sum_largest`, a norm), or more than MAX_ROWS rows
in one constraint (an elementwise cap on every weight: n rows) is refused with the reason, which names the term;
the problem then goes to cvxpy.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse
from cvxpy.constraints import Equality, Inequality, NonNeg, NonPos, Zero

from ..errors import InputError, UnsupportedProblem

#: The most rows one constraint of a user's term may have on the engine; more (an elementwise constraint on all n
#: weights) would make the dual as large as the primal.
MAX_ROWS = 256


class AffineTerm:
    """A Term's affine constraints over n weights, read as rows; `rows()` gives (C, l, u) at the current parameter
    values (C: a scipy CSC matrix, n x m)."""

    def __init__(self, term, n):
        self.term, self.n = term, n
        if term.objective(cp.Variable(n)) is not None:
            raise UnsupportedProblem(f"term {term.name!r} ({type(term).__name__}) adds to the objective; only "
                                     "terms whose constraints are affine in w reduce to the weighting form, so it "
                                     "needs backend='cvxpy'")
        self.w = cp.Variable(n, name="w")
        self.constraints = term.constraints(self.w)
        for constraint in self.constraints:
            self._check(constraint)
        self.parameters = [p for constraint in self.constraints for p in constraint.parameters()]
        self._read = (None, None)          # (parameter values, rows read at them)

    def _check(self, constraint):
        name = f"term {self.term.name!r} ({type(self.term).__name__})"
        if not isinstance(constraint, (Inequality, Equality, Zero, NonPos, NonNeg)):
            raise UnsupportedProblem(f"{name} has a {type(constraint).__name__} constraint, not an affine one; it "
                                     "needs backend='cvxpy'")
        if not constraint.expr.is_affine():
            atoms = ", ".join(sorted(set(_not_affine(constraint.expr))))
            raise UnsupportedProblem(f"{name} has a constraint that is not affine in w (it uses {atoms}); it needs "
                                     "backend='cvxpy'")
        if constraint.expr.size > MAX_ROWS:
            raise UnsupportedProblem(f"{name} has a constraint of {constraint.expr.size} rows; the dual engine takes "
                                     f"at most {MAX_ROWS} per constraint (bounds on every weight: a Bounds term), so "
                                     "it needs backend='cvxpy'")

    def rows(self):
        """(C, l, u) at the current parameter values: the rows l <= C'w <= u of every constraint, stacked (read again
        only when a parameter has changed)."""
        values = tuple(np.asarray(p.value, dtype=float).tobytes() for p in self.parameters)
        if self._read[0] != values:
            self._read = (values, self._rows())
        return self._read[1]

    def _rows(self, seed=0):
        self.w.value = np.zeros(self.n)
        pieces, lower, upper = [], [], []
        check = np.random.default_rng(seed).standard_normal(self.n)
        for constraint in self.constraints:
            expr = constraint.expr
            offset = np.atleast_1d(np.asarray(expr.value, dtype=float)).ravel(order="F")
            if not np.all(np.isfinite(offset)):
                raise InputError(f"term {self.term.name!r} ({type(self.term).__name__}) has a constraint whose "
                                 "constant is not finite (NaN or inf) at the current parameter values")
            C = expr.grad[self.w]
            C = scipy.sparse.csc_matrix(C if C is not None else (self.n, expr.size))
            self._verify(expr, C, offset, check)
            pieces.append(C)
            free = np.full(len(offset), np.inf)
            if isinstance(constraint, (Equality, Zero)):
                lower.append(-offset), upper.append(-offset)
            elif isinstance(constraint, NonNeg):
                lower.append(-offset), upper.append(free)
            else:
                lower.append(-free), upper.append(-offset)
        self.w.value = None
        C = scipy.sparse.hstack(pieces, format="csc")
        C.eliminate_zeros()
        return C, np.concatenate(lower), np.concatenate(upper)

    def _verify(self, expr, C, offset, check):
        """C'w + e must be cvxpy's value of expr at the random point `check` (to rounding)."""
        self.w.value = check
        value = np.atleast_1d(np.asarray(expr.value, dtype=float)).ravel(order="F")
        self.w.value = np.zeros(self.n)
        mine = C.T @ check + offset
        scale = abs(C).T @ np.abs(check) + np.abs(offset) + 1e-300
        if not np.all(np.abs(mine - value) <= 1e-9 * scale):
            raise UnsupportedProblem(f"term {self.term.name!r} ({type(self.term).__name__}): its constraint's "
                                     "coefficients could not be read from cvxpy; it needs backend='cvxpy'")


def _not_affine(expr):
    """The names of the innermost atoms of `expr` that are not affine (those whose arguments all are)."""
    if expr.is_affine():
        return []
    inner = [name for arg in expr.args for name in _not_affine(arg)]
    return inner or [type(expr).__name__]
