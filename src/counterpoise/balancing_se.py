"""The balancing standard error of a weighted contrast: the outcome residualized on the functions the weights
balance, so the variance reflects that the weights balance them (R sbw's estimate() residualizes the same way).

Write the outcome in each weighted arm as Y = m(x) + e, m(x) = a + f(x)'beta, with f the balance functions and
beta the weighted least-squares fit of Y on f in that arm (the balancing weights as regression weights, as sbw).
Weights that balance f move the weighted mean of m exactly to its target, so only e and the target's own
sampling enter. With v the weights normalized within their arm:

    ATT  Var = sum_treated v_i^2 (r_i - rbar)^2 + sum_control v_i^2 e_i^2,   r = Y - m0(x), rbar = sum v r
    ATC  the arms' roles swapped (r = Y - m1(x) on the controls)
    ATE  Var = sum_all u_i^2 (tau_i - taubar)^2 + sum_treated v_i^2 e1_i^2 + sum_control v_i^2 e0_i^2,
         tau = m1(x) - m0(x), u the sample weights over all units normalized

The first term is the sampling of the population the effect is averaged over (the treated for the ATT), the others
the outcome noise left after the balanced functions; with f empty it is the fixed-weight variance. It takes the
balance as exact: under a tolerance delta the residual imbalance (weighted mean of f - target)' beta is a bias
and a variance it does not count, which dominate when delta is large against the SE (problems/README.md,
effect-coverage: SBW on kim2023's quadratic outcome covers 92.2% at delta 0 and 21.6% at delta 0.02 SD). R sbw's
estimate() differs: its treated term is the variance of Y itself and its control term averages the fitted m0 over
the treated, which leaves out the controls' residuals.

The augmented (bias-corrected) estimate removes that residual imbalance: the contrast with each weighted arm's
mean replaced by its regression's mean over the population averaged over,

    ATT_aug = sum_treated v_i (Y_i - m0(x_i)) = ATT + (sum_control v_i f_i - sum_treated v_i f_i)' beta0
    ATE_aug = sum_all u_i (m1(x_i) - m0(x_i))

(the weighted residuals sum to zero in each arm, the fit having an intercept), the same as the plain contrast when
the balance is exact. The variances above are its variances, whatever the residual imbalance: it is the estimator
the balancing SE describes (effect-coverage in problems/README.md shows both).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .backends.blocks import DaskBlocks
from .errors import InputError


@dataclass(frozen=True)
class BalanceFunctions:
    """The balance functions of a balancing problem, per arm: label -> (row labels, matrix rows x p); "target"
    holds the target arm's rows of an ATT / ATC (their functions, with the same centring)."""

    arms: dict

    def rows(self, arm, index: pd.Index) -> np.ndarray:
        """The functions at the data rows `index` of `arm`, matched by label."""
        labels, matrix = self.arms[arm]
        matrix = matrix() if callable(matrix) else matrix
        positions = pd.Index(labels).get_indexer(index)
        if np.any(positions < 0):
            raise InputError(f"se='balancing' needs the rows the problem was built on: {int(np.sum(positions < 0))} "
                             f"of the {arm} rows are not among them; pass the data the weights were solved on, or "
                             "se='fixed'")
        return matrix[positions]


@dataclass(frozen=True)
class PartitionedFunctions:
    """The balance functions of a problem on dask partitions: per partition a persisted block {"a": treatment,
    "X": every row's balance columns, ...} aligned with the partition's rows, the `columns` of X that were
    balanced and the target means `goal` they are centred at."""

    pieces: list
    goal: np.ndarray
    columns: slice

    def rows(self, arm, index: pd.Index) -> np.ndarray:
        """The functions at the data rows `index` of `arm` (an estimate in memory on a computed solution), from the
        rows gathered to the client once."""
        return self.gathered.rows(arm, index)

    @cached_property
    def gathered(self) -> BalanceFunctions:
        """Every partition's rows on the client, as the in-memory `BalanceFunctions` (centred at `goal`)."""
        pieces = DaskBlocks(self.pieces).collect(_treatment_and_functions)
        a = np.concatenate([piece[0] for piece in pieces])
        X = np.vstack([centred(piece[1], self.goal, self.columns) for piece in pieces])
        index = pieces[0][2].append([piece[2] for piece in pieces[1:]])
        return BalanceFunctions({"treated": (index[a == 1], X[a == 1]), "control": (index[a == 0], X[a == 0])})


def centred(X, goal, columns) -> np.ndarray:
    """The balanced `columns` of a partition's balance columns X, centred at the target means `goal`."""
    return X[:, columns] - goal


def _treatment_and_functions(piece) -> tuple:
    return piece["a"], piece["X"], piece["index"]


def _fit(F, y, v):
    """(coefficients on [1, F], residuals) of the v-weighted least squares of y on [1, F] (minimum norm when
    F is collinear)."""
    design = np.column_stack([np.ones(len(y)), F])
    root = np.sqrt(np.maximum(v, 0.0))
    beta = np.linalg.lstsq(root[:, None] * design, root * y, rcond=None)[0]
    return beta, y - design @ beta


def one_arm_balancing(y_target, v_target, F_target, y_weighted, v_weighted, F_weighted) -> tuple[float, float]:
    """(rbar, Var) of an ATT (or ATC): the target arm's mean residual rbar = sum v r, r = Y - m(x), off the weighted
    arm's regression m (the augmented ATT; minus the augmented ATC), and the balancing variance (module docstring);
    v's normalized within their arm."""
    beta, e = _fit(F_weighted, y_weighted, v_weighted)
    r = y_target - np.column_stack([np.ones(len(y_target)), F_target]) @ beta
    rbar = float(v_target @ r)
    return rbar, float(np.sum(v_target ** 2 * (r - rbar) ** 2) + np.sum(v_weighted ** 2 * e ** 2))


def ate_balancing(y_t, v_t, F_t, y_c, v_c, F_c, u_t, u_c) -> tuple[float, float]:
    """(ATE_aug, Var): the augmented ATE sum u (m1 - m0) and the ATE's balancing variance (module docstring); u the
    sample weights of the treated and the controls, normalized over all units together."""
    beta_1, e_1 = _fit(F_t, y_t, v_t)
    beta_0, e_0 = _fit(F_c, y_c, v_c)
    difference = beta_1 - beta_0
    tau = np.concatenate([np.column_stack([np.ones(len(y_t)), F_t]) @ difference,
                          np.column_stack([np.ones(len(y_c)), F_c]) @ difference])
    u = np.concatenate([u_t, u_c])
    taubar = float(u @ tau)
    return taubar, float(np.sum(u ** 2 * (tau - taubar) ** 2) + np.sum(v_t ** 2 * e_1 ** 2)
                         + np.sum(v_c ** 2 * e_0 ** 2))
