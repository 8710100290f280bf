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

One code computes them from sums over rows, in memory (`balancing`, the rows at once) and over a dask DataFrame's
partitions (`estimate`, two passes): each arm's regression from the triangular factor of its weighted rows
(`regression_factor`, stacked over blocks), the population's sums of D, then the residuals' squares.
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


def design(F) -> np.ndarray:
    """D = [1, F]: the intercept and the balance functions of some rows."""
    return np.column_stack([np.ones(len(F)), F])


def triangular_factor(M) -> np.ndarray:
    """R of M = QR, square (zero rows below when M has fewer rows than columns): R'R = M'M, and R has M's singular
    values. Stacking two blocks' factors and factoring again gives the factor of the blocks stacked."""
    R = np.linalg.qr(M, mode="r")
    return np.vstack([R, np.zeros((M.shape[1] - R.shape[0], M.shape[1]))]) if R.shape[0] < M.shape[1] else R


def regression_factor(y, v, D) -> np.ndarray:
    """The triangular factor of [sqrt(v) D, sqrt(v) y]: an arm's v-weighted regression of y on D, summed over its
    rows in any blocks (stack and factor again)."""
    return triangular_factor(np.sqrt(np.maximum(v, 0.0))[:, None] * np.column_stack([D, y]))


def regressions(estimand, factors, population, totals) -> tuple:
    """(fit, the augmented estimate) from each arm's (control, treated) `regression_factor`, the population's
    sum s'D (the treated for an ATT, the controls for an ATC, every unit for an ATE, s its sample weights) and
    the arms' sums v'y. An arm's regression is the least squares of its factor, R beta ~ z: the rows' singular
    values, so the minimum-norm solution where D is collinear, without the normal equations' squared condition
    number. An ATT or ATC has one regression, the weighted arm's (m0 for the ATT), and its target arm's residuals
    r = y - m(x) are centred at their mean rbar = sum v r (the augmented ATT is rbar, the ATC -rbar). An ATE has
    both, and each unit's effect m1 - m0 enters around its population mean taubar (the augmented ATE). The fit is
    (coefficients per arm, the shift each arm's residuals are centred at, None or (m1 - m0's coefficients,
    taubar)), for `residual_sum` and `effect_sum`."""
    betas = np.array([np.linalg.lstsq(factor[:-1, :-1], factor[:-1, -1], rcond=None)[0] for factor in factors])
    if estimand == "ATE":
        difference = betas[1] - betas[0]
        taubar = float(population @ difference / population[0])
        return (betas, np.zeros(2), (difference, taubar)), taubar
    weighted, target = (0, 1) if estimand == "ATT" else (1, 0)
    beta = betas[weighted]
    rbar = float((totals[target] - population @ beta) / population[0])
    shifts = np.zeros(2)
    shifts[target] = rbar
    return (np.array([beta, beta]), shifts, None), rbar if estimand == "ATT" else -rbar


def residual_sum(y, v, D, beta, shift) -> float:
    """sum v^2 (y - D beta - shift)^2 over an arm's rows: its term of the variance (times its sum of v, squared)."""
    return float(v ** 2 @ (y - D @ np.atleast_1d(beta) - shift) ** 2)


def effect_sum(s, D, difference, taubar) -> float:
    """sum s^2 (D difference - taubar)^2 over the population: the ATE's sampling term (times (sum s)^2)."""
    return float(s ** 2 @ (D @ difference - taubar) ** 2)


def balancing(estimand, arms, population) -> tuple[float, float]:
    """(the augmented estimate, the balancing variance) of rows in memory: `arms` the (control, treated) (y, v, F),
    v the weights of the arm's rows (the sample weights in the target arm of an ATT / ATC), `population` the
    (s, F) of the units the effect is averaged over (module docstring)."""
    designs = [design(F) for y, v, F in arms]
    factors = [regression_factor(y, v, D) for (y, v, F), D in zip(arms, designs)]
    s, F = population
    fit, corrected = regressions(estimand, factors, s @ design(F), [v @ y for y, v, F in arms])
    betas, shifts, effect = fit
    variance = sum(residual_sum(y, v, D, beta, shift) / v.sum() ** 2
                   for (y, v, F), D, beta, shift in zip(arms, designs, betas, shifts))
    if effect is not None:
        variance += effect_sum(s, design(F), *effect) / s.sum() ** 2
    return corrected, variance
