"""Entropy balancing against its dual solution w_i = q_i exp(c_i'lam) / sum_j q_j exp(c_j'lam)."""

import numpy as np
import pytest

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


def test_entropy_balance_with_base_weights_and_tolerance_meets_kkt():
    data = cpz.datasets.kim2023(n=1200, overlap="strong", seed=12)
    data["d"] = np.random.default_rng(0).uniform(0.5, 2.0, len(data))
    prob = cpz.entropy_balance(data, treatment="A", covariates=COVARIATES, base_weights="d", delta=0.05)
    sol = prob.solve()
    term = next(t for t in prob.terms if t.name == "balance")
    q = data.loc[data.A == 0, "d"].to_numpy()
    w = sol.weights.to_numpy()
    # Stationarity: log(w_i / q_i) = a + b_i' beta; complementary slackness: beta_j != 0 only at |imbalance_j| = delta.
    design = np.column_stack([np.ones(len(w)), term.B / term.scale])
    coef, *_ = np.linalg.lstsq(design, np.log(w / q), rcond=None)
    assert np.max(np.abs(design @ coef - np.log(w / q))) < 1e-4
    beta = coef[1:]
    imbalance = term.imbalance(w)
    binding = np.abs(beta) > 1e-3 * np.max(np.abs(beta))
    assert binding.any()
    np.testing.assert_allclose(np.abs(imbalance[binding]), 0.05, atol=1e-7)
    assert np.all(np.sign(imbalance[binding]) == -np.sign(beta[binding]))
    assert np.max(np.abs(imbalance)) <= 0.05 + 1e-7


def test_exact_duals_follow_the_tolerance_convention():
    data = cpz.datasets.kim2023(n=1200, overlap="strong", seed=13)
    exact = cpz.entropy_balance(data, treatment="A", covariates=COVARIATES).solve().duals
    loose = cpz.entropy_balance(data, treatment="A", covariates=COVARIATES, delta=1e-5).solve().duals
    np.testing.assert_allclose(exact.to_numpy(), loose.to_numpy(), rtol=0.05, atol=1e-3 * np.abs(exact).max())


def test_infeasible_entropy_balance_names_the_binding_column():
    data = cpz.datasets.kim2023(n=600, overlap="strong", seed=14)
    data.loc[data.A == 1, "X4"] += 10
    with pytest.raises(cpz.InfeasibleError, match="balance / X4") as info:
        cpz.entropy_balance(data, treatment="A", covariates=COVARIATES).solve()
    assert info.value.binding["column"].tolist() == ["X4"]


def test_negative_weights_violate_the_entropy_domain():
    term = cpz.terms.Entropy(np.full(4, 0.25))
    assert term.violation(np.array([0.5, 0.5, 0.1, -0.1])) == pytest.approx(0.4)
    assert term.violation(np.full(4, 0.25)) == 0


def test_the_ate_is_one_calibration_per_arm(kim):
    """Entropy balancing of the ATE: each arm raked to the full sample's means, on the calibration backend (auto
    picks it), against the cvxpy reference."""
    prob = cpz.entropy_balance(kim, treatment="A", covariates=COVARIATES, estimand="ATE")
    assert prob.auto_backends() == ["calibration", "cvxpy"]
    check = prob.check("calibration")
    assert check.passes() and check.weight_gap < 1e-4
    sol = check.solution
    assert sol.backend == "calibration" and set(sol.ess.index) == {"treated", "control"}
    assert np.abs(sol.balance["smd_after"]).max() < 1e-8
    np.testing.assert_allclose(sol.duals.to_numpy(), check.reference_solution.duals.to_numpy(), rtol=1e-4, atol=1e-9)
