"""SBW against its optimality conditions, and the estimands, bases and invariances users rely on."""

import numpy as np
import pandas as pd
import pytest

import counterpoise as cpz
from conftest import COVARIATES


def test_sbw_satisfies_kkt_conditions_and_duals_have_documented_sign(kim):
    prob = cpz.sbw(kim, treatment="A", covariates=COVARIATES, estimand="ATT", delta=0.05)
    sol = prob.solve()
    assert sol.status == "optimal"
    term = next(t for t in prob.terms if t.name == "balance")
    w = sol.weights.to_numpy()
    n = len(w)
    Bs = term.B / term.scale
    # Stationarity: 2 (w_i - 1/n) = nu + b_i' beta + mu_i, mu_i >= 0, mu_i w_i = 0  (beta = -dual).
    # Fit nu, beta on clearly positive weights, then every weight must follow w_i = max(0, 1/n + (nu + b_i'beta)/2).
    # (An interior-point solution is exact to ~1e-7/n away from the kink and to ~sqrt(gap) at units next to it.)
    positive = w > 0.1 / n
    design = np.column_stack([np.ones(positive.sum()), Bs[positive]])
    coef, *_ = np.linalg.lstsq(design, 2 * (w[positive] - 1 / n), rcond=None)
    residual = design @ coef - 2 * (w[positive] - 1 / n)
    assert np.max(np.abs(residual)) < 1e-6 / n
    nu, beta = coef[0], coef[1:]
    predicted = np.maximum(0, 1 / n + (nu + Bs @ beta) / 2)
    assert np.max(np.abs(w - predicted)) < 5e-3 / n
    assert np.sum(predicted == 0) > 100
    # Complementary slackness: a column with a nonzero multiplier sits at its tolerance on the side beta says.
    imbalance = term.imbalance(w)
    binding = np.abs(beta) > 1e-6 * np.max(np.abs(beta))
    assert binding.any() and not binding.all()
    np.testing.assert_allclose(np.abs(imbalance[binding]), 0.05, atol=1e-7)
    assert np.all(np.sign(imbalance[binding]) == -np.sign(beta[binding]))
    assert np.all(np.abs(imbalance[~binding]) <= 0.05 + 1e-9)
    np.testing.assert_allclose(sol.duals.loc["balance"].to_numpy(), -beta, atol=1e-6 * np.max(np.abs(beta)))


def test_att_weights_are_indexed_by_controls_and_meet_tolerance(kim):
    sol = cpz.sbw(kim, treatment="A", covariates=COVARIATES, delta=0.02).solve()
    controls = kim.index[kim.A == 0]
    assert sol.weights.index.equals(controls)
    assert sol.weights.sum() == pytest.approx(1, abs=1e-9)
    assert sol.weights.min() >= -1e-10
    table = sol.balance
    assert list(table.columns) == ["target", "before", "after", "smd_before", "smd_after", "rel_error_before", "rel_error_after"]
    np.testing.assert_allclose(table["target"], kim.loc[kim.A == 1, COVARIATES].mean().to_numpy())
    assert np.abs(table["smd_after"]).max() <= 0.02 + 1e-7
    assert np.abs(table["smd_before"]).max() > 0.5
    assert 1 < sol.ess < len(controls)


def test_ate_balances_each_arm_to_the_full_sample(kim):
    sol = cpz.sbw(kim, treatment="A", covariates=COVARIATES, estimand="ATE", delta=0.03).solve()
    assert sol.weights.index.equals(kim.index)
    sums = sol.weights.groupby(kim.A).sum()
    np.testing.assert_allclose(sums, [1, 1], atol=1e-9)
    full = kim[COVARIATES].mean().to_numpy()
    sd = kim[COVARIATES].std().to_numpy()           # pandas' default, R's sd(): ddof = 1
    for arm in (0, 1):
        rows = kim.A == arm
        mean = sol.weights[rows] @ kim.loc[rows, COVARIATES] / sol.weights[rows].sum()
        assert np.max(np.abs(mean - full) / sd) <= 0.03 + 1e-7
    assert isinstance(sol.ess, pd.Series) and set(sol.ess.index) == {"treated", "control"}
    est = cpz.estimate.ate(kim, treatment="A", outcome="Y", weights=sol)
    assert np.isfinite(est.estimate) and est.std_error > 0


def test_atc_and_user_target():
    data = cpz.datasets.kim2023(n=1500, overlap="strong", seed=5)
    atc = cpz.sbw(data, treatment="A", covariates=COVARIATES, estimand="ATC", delta=0.05).solve()
    assert atc.weights.index.equals(data.index[data.A == 1])
    target = {c: float(data[c].mean()) + 0.05 for c in COVARIATES}
    sol = cpz.sbw(data, covariates=COVARIATES, estimand="target", target=target, delta=0.01, delta_scale="raw").solve()
    achieved = sol.weights @ data[COVARIATES]
    assert np.max(np.abs(achieved.to_numpy() - np.array(list(target.values())))) <= 0.01 + 1e-8


def test_moments_interactions_and_user_basis_become_balance_columns(kim):
    basis = pd.DataFrame({"q": (kim.X4 <= kim.X4.median()).astype(float)}, index=kim.index)
    prob = cpz.sbw(kim, treatment="A", covariates=["X1", "X2", "X6"], moments=2, interactions=True, basis=basis, delta=0.1)
    names = prob.terms[[t.name for t in prob.terms].index("balance")].columns
    assert names == ["X1", "X2", "X6", "X1^2", "X2^2", "X1:X2", "X1:X6", "X2:X6", "q"]
    sol = prob.solve()
    assert sol.balance.index.get_level_values("term").tolist() == names
    assert np.abs(sol.balance["smd_after"]).max() <= 0.1 + 1e-7


def test_delta_raw_scale_is_absolute(kim):
    sol = cpz.sbw(kim, treatment="A", covariates=COVARIATES, delta=0.01, delta_scale="raw").solve()
    gap = sol.balance["after"] - sol.balance["target"]
    assert np.abs(gap).max() <= 0.01 + 1e-8
    assert np.abs(gap).max() == pytest.approx(0.01, abs=1e-6)


def test_duplicated_rows_equal_doubled_base_weights():
    data = cpz.datasets.kim2023(n=600, overlap="strong", seed=2)
    dup_rows = data.index[data.A == 0][:15]
    duplicated = pd.concat([data, data.loc[dup_rows]], ignore_index=True)
    doubled = data.assign(d=1.0)
    doubled.loc[dup_rows, "d"] = 2.0
    w_dup = cpz.sbw(duplicated, treatment="A", covariates=COVARIATES, delta=0.05).solve().weights
    w_dbl = cpz.sbw(doubled, treatment="A", covariates=COVARIATES, delta=0.05, base_weights="d").solve().weights
    copies = w_dup.iloc[-15:].to_numpy()
    np.testing.assert_allclose(w_dup.loc[dup_rows].to_numpy() + copies, w_dbl.loc[dup_rows].to_numpy(), atol=1e-8)
    others = w_dbl.index.difference(dup_rows)
    np.testing.assert_allclose(w_dup.loc[others], w_dbl.loc[others], atol=1e-8)


def test_row_order_does_not_change_weights(kim):
    shuffled = kim.sample(frac=1.0, random_state=0)
    a = cpz.sbw(kim, treatment="A", covariates=COVARIATES, delta=0.05).solve().weights
    b = cpz.sbw(shuffled, treatment="A", covariates=COVARIATES, delta=0.05).solve().weights
    np.testing.assert_allclose(a.sort_index(), b.sort_index(), atol=1e-8)


def test_kernel_sbw_balances_basis_and_means():
    data = cpz.datasets.kim2023(n=800, overlap="strong", seed=4)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.05, m=60, l=40, s=20, seed=1)
    assert {t.name for t in prob.terms} >= {"kernel", "means"}
    sol = prob.solve()
    assert sol.violations["kernel"] <= 1e-7 and sol.violations["means"] <= 1e-7
    assert list(sol.balance.index.get_level_values("term")) == COVARIATES
    raw = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.0005, delta_scale="raw", m=60, l=40, s=20,
                         means=False).solve()
    kernel = next(t for t in raw.problem.terms if t.name == "kernel")
    assert np.max(np.abs(kernel.imbalance(raw.weights.to_numpy()))) <= 0.0005 + 1e-9


@pytest.mark.parametrize("family, backends", [("sbw", ["dual", "osqp", "cvxpy"]),
                                              ("entropy_balance", ["calibration", "cvxpy"])])
def test_a_covariate_far_from_zero_solves_like_the_same_one_near_zero(kim, family, backends):
    """Balance is translation invariant for normalized weights, and the builders centre each balance column at its
    target: X1 + 1e12 solves on every backend. Doubles near 1e12 are 1.2e-4 apart, so the shifted data hold X1 only
    to about 1e-4 of its SD: the weights agree to that (SBW's inequalities bind elsewhere and agree closer)."""
    build = getattr(cpz, family)
    near = build(kim, treatment="A", covariates=COVARIATES)
    far = build(kim.assign(X1=kim["X1"] + 1e12), treatment="A", covariates=COVARIATES)
    for backend in backends:
        w_near, sol = near.solve(backend=backend).weights, far.solve(backend=backend)
        assert sol.status == "optimal"
        np.testing.assert_allclose(sol.weights, w_near, atol=1e-3 * w_near.max())
        row = sol.balance.loc[("control", "X1")]
        assert row["target"] == pytest.approx(1e12 + kim.loc[kim.A == 1, "X1"].mean(), abs=1e-3)
        assert abs(row["smd_after"]) <= 0.02 + 1e-6


def test_far_from_zero_with_two_arms_keeps_the_tables_precision(kim):
    """The ATE's table keeps its covariates in row order (a copy), centred too: its SMDs are those of the same
    covariate near zero."""
    near = cpz.sbw(kim, treatment="A", covariates=COVARIATES, estimand="ATE", delta=0.03).solve()
    far = cpz.sbw(kim.assign(X1=kim["X1"] + 1e12), treatment="A", covariates=COVARIATES, estimand="ATE",
                  delta=0.03).solve()
    np.testing.assert_allclose(far.balance["smd_after"], near.balance["smd_after"], atol=1e-3)
    assert far.balance["smd_after"].abs().max() <= 0.03 + 1e-6
