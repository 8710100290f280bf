"""The weighting form on the dual engine: a user's affine terms, one-sided rows and calibration with tolerances, each
against the cvxpy reference (CLARABEL) and, for the proximal step, against cvxpy and its KKT conditions by hand."""

import cvxpy as cp
import numpy as np
import pytest

import counterpoise as cpz
from counterpoise.backends import l1_qp
from counterpoise.terms import MaxShare, ShareCap, Term

COVARIATES = ["X1", "X2", "X3", "X4", "X5", "X6"]


class SubgroupBalance(Term):
    """Within the subgroup `mask`, the weighted mean of each column of F is within `tol` of `target`:
    |F_S'w_S - target sum(w_S)| <= tol sum(w_S), written as two affine inequalities per column."""

    def __init__(self, mask, F, target, tol):
        self.name, self.mask = "subgroup_balance", np.asarray(mask, dtype=float)
        self.G = (np.asarray(F) - target) * self.mask[:, None]
        self.tol = tol

    def constraints(self, w):
        gap, room = self.G.T @ w, self.tol * (self.mask @ w)
        return [gap <= room, -gap <= room]

    def violation(self, w):
        return float(np.max(np.abs(self.G.T @ w) - self.tol * (self.mask @ w), initial=0.0))


class Contrast(Term):
    """A linear contrast of the weights held at a value: c'w == value."""

    def __init__(self, c, value):
        self.name, self.c, self.value_ = "contrast", np.asarray(c, dtype=float), value

    def constraints(self, w):
        return [self.c @ w == self.value_]

    def violation(self, w):
        return abs(self.c @ w - self.value_)


class TopShare(Term):
    """The k largest weights hold at most `share` of the total (not affine: sum_largest)."""

    def __init__(self, k, share):
        self.name, self.k, self.share = "top_share", k, share

    def constraints(self, w):
        return [cp.sum_largest(w, self.k) <= self.share * cp.sum(w)]


@pytest.fixture(scope="module")
def kim():
    return cpz.datasets.kim2023(n=3000, overlap="weak", seed=4)


def _sbw(kim, **options):
    return cpz.sbw(kim, treatment="A", covariates=COVARIATES, estimand="ATT", delta=0.02, **options)


def _controls(kim, prob):
    return kim.loc[prob.units]


@pytest.mark.parametrize("term", ["share_cap", "subgroup_balance", "contrast"])
def test_a_users_affine_term_solves_on_the_dual_as_cvxpy_does(kim, term):
    prob = _sbw(kim)
    controls = _controls(kim, prob)
    if term == "share_cap":
        mask = controls["X1"] > 0.5
        prob.add(ShareCap(mask, 0.8 * mask.mean()))
    elif term == "subgroup_balance":
        treated = kim[kim["A"] == 1]
        target = (treated[["X1", "X2"]] ** 2).mean().to_numpy()
        prob.add(SubgroupBalance(controls["X3"] > 0, controls[["X1", "X2"]].to_numpy() ** 2, target, 0.05))
    else:
        prob.add(Contrast(np.where(controls["X4"] > 0, 1.0, -1.0), 0.1))
    assert prob.auto_backends() == ["dual", "cvxpy"]
    sol = prob.solve()
    ref = prob.solve(backend="cvxpy")
    assert sol.backend == "dual" and sol.status == "optimal"
    assert abs(sol.objective - ref.objective) <= 1e-7 * ref.objective
    np.testing.assert_allclose(sol.weights, ref.weights, atol=1e-4 * ref.weights.max())
    free = _sbw(kim).solve()
    assert sol.objective > free.objective * (1 + 1e-6)           # the term binds: it changed the weights


def test_a_path_over_the_users_parameter_equals_cold_solves(kim):
    prob = _sbw(kim)
    mask = _controls(kim, prob)["X1"] > 0.5
    shares = [fraction * mask.mean() for fraction in (0.9, 0.8, 0.7, 0.6)]
    prob.add(ShareCap(mask, shares[0]))
    path = prob.path(share=shares)
    for share, warm in zip(shares, path.solutions):
        cold = _sbw(kim).add(ShareCap(mask, share)).solve(backend="cvxpy")
        assert warm.backend == "dual" and warm.status == "optimal"
        assert warm.objective == pytest.approx(cold.objective, rel=1e-7)
    assert np.all(np.diff([s.objective for s in path.solutions]) > 0)


def test_an_infeasible_users_row_is_certified_by_the_dual(kim):
    prob = _sbw(kim)
    controls = _controls(kim, prob)
    prob.add(ShareCap(controls["X1"] > 0.5, 0.0))                # no weight at all on about half the controls
    prob.add(Contrast((controls["X1"] > 0.5).to_numpy(), 0.5))   # and half the weight on them
    sol = prob.solve(backend="dual", raise_on_failure=False)
    assert sol.status == "infeasible"
    assert prob.solve(backend="cvxpy", raise_on_failure=False).status == "infeasible"


def test_a_users_row_in_a_large_certificate_is_named(kim, monkeypatch):
    """Above the relaxed solve's size the dual's ray names the rows that bind, a user's among them."""
    monkeypatch.setattr(cpz.infeasibility, "RELAXED_SOLVE_LIMIT", 100)
    prob = _sbw(kim)
    controls = _controls(kim, prob)
    prob.add(ShareCap(controls["X1"] > -10, 0.5))                # every control: at most half of all the weight
    with pytest.raises(cpz.InfeasibleError, match=r"share_cap / row 0"):
        prob.solve()


def test_rows_without_weights_and_rows_moved_off_their_group_are_refused(kim):
    prob = _sbw(kim).add(Contrast(np.zeros(len(_controls(kim, _sbw(kim)))), 0.1))
    with pytest.raises(cpz.InfeasibleError, match="no weight in it whose bounds exclude 0"):
        prob.solve(backend="dual")
    fine = _sbw(kim).add(Contrast(np.zeros(len(_controls(kim, _sbw(kim)))), 0.0))    # 0 == 0: no row at all
    assert fine.solve().objective == pytest.approx(_sbw(kim).solve().objective, rel=1e-12)

    class Moving(Term):
        """p'w <= 2, with p a Parameter: its coefficients can move between the arms."""

        def __init__(self, p):
            self.name, self.p = "moving", cp.Parameter(len(p), value=p)

        def parameters(self):
            return {"p": self.p}

        def constraints(self, w):
            return [self.p @ w <= 2.0]

    ate = cpz.sbw(kim, treatment="A", covariates=COVARIATES, estimand="ATE", delta=0.05)
    treated = (kim["A"] == 1).to_numpy()
    ate.add(Moving(np.where(treated, 0.0, 1.0)))
    assert ate.solve(backend="dual").status == "optimal"
    ate.set(p=np.where(treated, 1.0, 0.0))
    with pytest.raises(cpz.InputError, match="now put coefficients on the units of another normalized group"):
        ate.solve(backend="dual")


@pytest.mark.parametrize("estimand", ["ATT", "ATE"])
def test_max_share_is_a_bound_where_the_totals_are_fixed(estimand):
    """MaxShare's w_i <= share * sum(w) is w_i <= share * (the groups' totals) when every group is normalized: a
    bound of the form, solved by the dual and by OSQP, as cvxpy solves the term itself (n dense rows there, so a
    small sample)."""
    small = cpz.datasets.kim2023(n=600, overlap="weak", seed=4)
    prob = cpz.sbw(small, treatment="A", covariates=COVARIATES, estimand=estimand, delta=0.05)
    free = prob.solve()
    prob.add(MaxShare(0.7 * free.weights.max() / (2 if estimand == "ATE" else 1)))
    assert prob.auto_backends() == ["dual", "cvxpy"]
    sol, ref = prob.solve(), prob.solve(backend="cvxpy")
    assert sol.backend == "dual" and abs(sol.objective - ref.objective) <= 1e-7 * ref.objective
    assert sol.objective > free.objective * (1 + 1e-6)                     # the cap binds
    assert prob.solve(backend="osqp").objective == pytest.approx(ref.objective, rel=1e-7)
    calibration = cpz.calibrate(cpz.datasets.region_age(500), distance="raking", tol=0.01).add(MaxShare(0.01))
    assert calibration.auto_backends() == ["cvxpy"]                        # no fixed total: not a bound
    assert "fixed total" in calibration.auto_refusals()["dual"]


def test_a_term_that_is_not_affine_goes_to_cvxpy_and_auto_names_it(kim):
    prob = _sbw(kim).add(TopShare(10, 0.03))
    assert prob.auto_backends() == ["cvxpy"]
    refusals = prob.auto_refusals()
    assert "'top_share' (TopShare)" in refusals["dual"] and "not affine" in refusals["dual"]


def test_a_users_row_across_two_normalized_groups_goes_to_cvxpy(kim):
    prob = cpz.sbw(kim, treatment="A", covariates=COVARIATES, estimand="ATE", delta=0.02)
    prob.add(Contrast(np.ones(prob.n), 2.0))
    assert prob.auto_backends() == ["cvxpy"]
    assert "more than one normalized group" in prob.auto_refusals()["dual"]


@pytest.mark.parametrize("distance, options", [("raking", {}), ("logit", {"bounds": (0.5, 2.0)}),
                                               ("linear", {})])
def test_calibration_with_tolerances_solves_on_the_dual_as_cvxpy_does(distance, options):
    frame = cpz.datasets.region_age(3000)
    prob = cpz.calibrate(frame, distance=distance, tol=0.01, **options)
    assert prob.auto_backends()[0] == "dual"
    sol = prob.solve()
    ref = prob.solve(backend="cvxpy", raise_on_failure=False)
    assert sol.backend == "dual" and sol.status == "optimal" and ref.max_violation < 1e-6
    assert abs(sol.objective - ref.objective) <= 1e-7 * ref.objective
    np.testing.assert_allclose(sol.duals, ref.duals, atol=1e-4 * np.abs(ref.duals).max())
    achieved = sol.balance["after"].to_numpy()
    target = sol.balance["target"].to_numpy()
    assert np.max(np.abs(achieved / target - 1)) <= 0.01 + 1e-9
    assert np.max(np.abs(achieved / target - 1)) >= 0.01 - 1e-9     # some total sits at its tolerance


def test_exact_raking_stays_on_surveys_newton():
    prob = cpz.calibrate(cpz.datasets.region_age(500), distance="raking")
    assert prob.auto_backends() == ["calibration", "cvxpy"]


@pytest.mark.parametrize("seed", range(4))
def test_the_proximal_step_with_one_sided_rows_matches_cvxpy(seed):
    """q(d) = 1/2 d'Hd + g'd + sum_j psi_j(y_j + d_j), psi_j(z) = a_j max(z, 0) + b_j max(-z, 0) with some
    a_j or b_j infinite (a one-sided row: its multiplier keeps one sign)."""
    rng = np.random.default_rng(seed)
    k = 12
    A = rng.normal(size=(30, k))
    H, g = A.T @ A, rng.normal(size=k) * 5
    a, b = np.abs(rng.normal(size=k)), np.abs(rng.normal(size=k))
    a[:3], b[3:6] = np.inf, np.inf                     # z <= 0 on the first three, z >= 0 on the next three
    a[6], b[6] = 0.0, 0.0                              # an equality row
    y = rng.normal(size=k) * (rng.random(k) < 0.5)
    y[:3], y[3:6] = -np.abs(y[:3]), np.abs(y[3:6])     # the current point respects the signs
    d = l1_qp.minimize(H, g, (a, b), y)
    x = cp.Variable(k)
    z = y + x
    finite_a, finite_b = np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(b), b, 0.0)
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(H)) + g @ x + finite_a @ cp.pos(z) + finite_b @ cp.neg(z)),
               [z[:3] <= 0, z[3:6] >= 0]).solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12)
    np.testing.assert_allclose(d, x.value, atol=1e-5)
    grad, z = H @ d + g, y + d
    assert np.all(z[:3] <= 0) and np.all(z[3:6] >= 0)
    # KKT by hand: the slope on z's side cancels the gradient; at z = 0, -a <= grad <= b
    right, left = z > 0, z < 0
    np.testing.assert_allclose(grad[right], -a[right], atol=1e-9)
    np.testing.assert_allclose(grad[left], b[left], atol=1e-9)
    zero = ~(right | left)
    assert np.all(grad[zero] <= b[zero] + 1e-9) and np.all(grad[zero] >= -a[zero] - 1e-9)
    assert l1_qp.optimality(H, g, (a, b), y, d) <= 1e-9
