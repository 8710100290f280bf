"""Entropy balancing against its dual solution w_i = q_i exp(c_i'lam) / sum_j q_j exp(c_j'lam)."""

import numpy as np
import pytest
import scipy.optimize

import counterpoise as cpz
from conftest import COVARIATES


def dual_weights(C, q, m):
    """Minimize the convex dual log sum_i q_i exp(c_i'lam) - m'lam with Newton steps (Hainmueller 2012)."""
    center = C - m
    lam = np.zeros(C.shape[1])
    for _ in range(100):
        w = q * np.exp(center @ lam - np.max(center @ lam))
        w /= w.sum()
        grad = w @ center
        if np.max(np.abs(grad)) < 1e-13:
            break
        hess = (center * w[:, None]).T @ center - np.outer(grad, grad)
        lam -= np.linalg.solve(hess, grad)
    return w


@pytest.mark.parametrize("moments", [1, 2])
def test_entropy_balance_matches_dual_closed_form(moments):
    data = cpz.datasets.kim2023(n=1200, overlap="strong", seed=11)
    prob = cpz.entropy_balance(data, treatment="A", covariates=COVARIATES, moments=moments)
    sol = prob.solve()
    term = next(t for t in prob.terms if t.name == "balance")
    controls = data.A == 0
    C = term.B
    m = term.target.value
    expected = dual_weights(C, np.full(C.shape[0], 1 / C.shape[0]), m)
    # interior point on exponential cones: weights to ~1e-4 relative, the objective to ~1e-9
    np.testing.assert_allclose(sol.weights.to_numpy(), expected, rtol=2e-4)
    assert sol.objective == pytest.approx(np.sum(expected * np.log(expected * controls.sum())), rel=1e-8)
    assert sol.balance["smd_after"].abs().max() < 1e-6
    assert sol.weights.min() > 0


def test_entropy_balance_with_base_weights_and_tolerance():
    data = cpz.datasets.kim2023(n=1200, overlap="strong", seed=12)
    data["d"] = np.random.default_rng(0).uniform(0.5, 2.0, len(data))
    sol = cpz.entropy_balance(data, treatment="A", covariates=COVARIATES, base_weights="d", delta=0.05).solve()
    assert sol.balance["smd_after"].abs().max() <= 0.05 + 1e-7
    # optimality against scipy on the same primal: KL(w || q) is no smaller at a feasible perturbation
    q = data.loc[data.A == 0, "d"].to_numpy()
    q = q / q.sum()
    w = sol.weights.to_numpy()
    assert np.sum(w * np.log(w / q)) == pytest.approx(sol.objective, rel=1e-6, abs=1e-12)
