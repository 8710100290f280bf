"""The proximal Newton step min_d 1/2 d'Hd + g'd + sum delta_j |y_j + d_j|, against cvxpy and its KKT conditions."""

import cvxpy as cp
import numpy as np
import pytest

from counterpoise.backends import l1_qp


@pytest.mark.parametrize("seed", range(6))
def test_feature_sign_search_matches_cvxpy(seed):
    rng = np.random.default_rng(seed)
    k = 25
    A = rng.normal(size=(40, k))
    H = A.T @ A
    b = rng.normal(size=k) * 5
    delta = 3 * np.abs(rng.normal(size=k))
    delta[-1] = 0.0                                    # an unpenalized variable, as the dual's sum constraint
    y = rng.normal(size=k) * (rng.random(k) < 0.4)     # the current point: some multipliers at zero
    d = l1_qp.minimize(H, b, delta, y)
    x = cp.Variable(k)
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(H)) + b @ x + delta @ cp.abs(y + x))).solve(
        solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    np.testing.assert_allclose(d, x.value, atol=1e-5)
    assert l1_qp.objective(H, b, delta, y, d)[0] <= l1_qp.objective(H, b, delta, y, x.value)[0] + 1e-9
    # KKT by hand, z = y + d: grad + delta sign(z) = 0 on the support, |grad| <= delta off it
    grad, z = H @ d + b, y + d
    on = z != 0
    np.testing.assert_allclose(grad[on], -delta[on] * np.sign(z[on]), atol=1e-10)
    assert np.all(np.abs(grad[~on]) <= delta[~on] + 1e-10)
    assert 0 < on.sum() < k                            # the case has both kinds of variable


def test_no_penalty_is_the_linear_solve():
    rng = np.random.default_rng(9)
    A = rng.normal(size=(10, 4))
    H, b = A.T @ A, rng.normal(size=4)
    np.testing.assert_allclose(l1_qp.minimize(H, b, np.zeros(4), np.ones(4)), np.linalg.solve(H, -b), atol=1e-12)


def test_a_large_penalty_keeps_zero():
    H, b = np.eye(3), np.array([1.0, -2.0, 0.5])
    y = np.array([1.0, 0.0, -1.0])
    np.testing.assert_array_equal(l1_qp.minimize(H, b, np.full(3, 3.0), y), -y)       # the step to z = 0


def test_a_crawling_step_reaches_the_minimizer_through_the_dual(monkeypatch):
    """A real hard case: kernel SBW's delta="auto" grid at n = 2000 (weak overlap, X*, the study's seed 1000) reaches
    steps with every multiplier in play, tiny tolerances and cond(H) ~ 1e6, where feature-sign moves crawl (each
    stops where one multiplier changes sign). The dual's projected Newton finishes them: cvxpy's minimizer."""
    import counterpoise as cpz

    cases = []
    original = l1_qp._dual_box_newton
    monkeypatch.setattr(l1_qp, "_dual_box_newton", lambda *a: cases.append(a) or original(*a))
    data = cpz.datasets.kim2023(2000, overlap="weak", transformed=True, noise="sd", seed=1000)
    cpz.kernel_sbw(data, treatment="A", estimand="ATT", delta="auto", bandwidth="2p").solve()
    assert cases
    H, g, delta, y = cases[0]
    d = l1_qp.minimize(H, g, delta, y)
    x = cp.Variable(len(g))
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(H)) + g @ x + delta @ cp.abs(y + x))).solve(
        solver="CLARABEL")
    best = l1_qp.objective(H, g, delta, y, x.value)[0]
    assert l1_qp.objective(H, g, delta, y, d)[0] <= best + 1e-7 * abs(best)
    assert l1_qp.optimality(H, g, delta, y, d) <= 1e-10 * np.abs(g).max()
