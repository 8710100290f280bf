"""The OSQP backend against cvxpy + CLARABEL: objectives, feasibility, duals, cached paths, failures."""

import numpy as np
import pytest

import counterpoise as cpz
from conftest import COVARIATES
from counterpoise.errors import UnsupportedProblem

POP = cpz.datasets.API_POPULATION


@pytest.fixture(scope="module")
def kim2000():
    return cpz.datasets.kim2023(n=2000, overlap="weak", seed=1)


def assert_matches_reference(prob, gap=1e-6, violation=1e-7, dual_rtol=1e-6, **options):
    check = prob.check("osqp", **options)
    sol, ref = check.solution, check.reference_solution
    assert sol.status == "optimal", sol.message
    assert sol.solver == "OSQP"
    assert check.objective_gap <= gap
    assert check.max_violation <= violation
    assert sol.weights.index.equals(ref.weights.index)
    # duals: same terms, same columns, same convention (sign + when the upper side binds)
    assert sol.duals.index.equals(ref.duals.index)
    scale = max(np.max(np.abs(ref.duals.to_numpy())), 1e-300)
    np.testing.assert_allclose(sol.duals.to_numpy(), ref.duals.to_numpy(), atol=dual_rtol * scale)
    assert all(p in ("succeeded", "not needed") for p in sol.info["polish"])
    return check


def test_sbw_att_matches_cvxpy(kim2000):
    prob = cpz.sbw(kim2000, treatment="A", covariates=COVARIATES, estimand="ATT", delta=0.02)
    check = assert_matches_reference(prob)
    # polished to the exact vertex: tighter than the 1e-6 the check asks for
    assert check.objective_gap <= 1e-9
    assert check.max_violation <= 1e-12
    assert check.solution.weights.min() >= 0
    assert check.solution.info["setups"] == 1 and check.solution.iterations > 0


def test_sbw_ate_matches_cvxpy_group_by_group(kim2000):
    prob = cpz.sbw(kim2000, treatment="A", covariates=COVARIATES, estimand="ATE", delta=0.02)
    check = assert_matches_reference(prob)
    sol = check.solution
    assert len(sol.info["iterations"]) == 2 and sol.info["setups"] == 2
    np.testing.assert_allclose(sol.weights.groupby(kim2000.A).sum(), [1, 1], atol=1e-12)
    assert check.weight_gap <= 1e-5


def test_kernel_sbw_matches_cvxpy(kim2000):
    prob = cpz.kernel_sbw(kim2000, treatment="A", covariates=COVARIATES, m=40, l=20, s=10,
                          delta=0.002, delta_scale="raw")
    assert_matches_reference(prob)


def test_linear_calibration_with_ratio_bounds_matches_cvxpy():
    api = cpz.datasets.api("apistrat")
    prob = cpz.calibrate(api, base_weights="pw", margins={"stype": POP["stype"], "sch.wide": POP["sch.wide"]},
                         totals={"api99": POP["api99"]}, bounds=(0.97, 1.03))
    # CLARABEL's interior point is the less accurate side here (weights to ~1e-6): OSQP's polished vertex has
    # the lower objective, and the duals agree to the reference's accuracy
    check = assert_matches_reference(prob, dual_rtol=1e-5)
    assert check.solution.objective <= check.reference_solution.objective * (1 + 1e-12)
    g = check.solution.weights / api["pw"].to_numpy()
    assert g.min() >= 0.97 - 1e-12 and g.max() <= 1.03 + 1e-12


def test_delta_path_reuses_the_factorization_and_equals_cold_solves(kim2000):
    deltas = [0.1, 0.05, 0.02, 0.01, 0.005]
    prob = cpz.sbw(kim2000, treatment="A", covariates=COVARIATES, estimand="ATE", delta=deltas[0])
    first = prob.solve(backend="osqp")
    backend = prob.backend("osqp")
    solvers = [g.solver for g in backend.groups]
    assert backend.setups == 2 and first.info["setups"] == 2
    path = prob.path(backend="osqp", delta=deltas)
    assert all(g.solver is solver for g, solver in zip(backend.groups, solvers))   # the same OSQP objects
    assert backend.setups == 2
    for delta, warm in zip(deltas, path.solutions):
        assert warm.status == "optimal" and warm.info["setups"] == 0 and warm.info["setup_time"] == 0
        cold = cpz.sbw(kim2000, treatment="A", covariates=COVARIATES, estimand="ATE", delta=delta).solve(backend="osqp")
        assert warm.objective == pytest.approx(cold.objective, rel=1e-10)
        np.testing.assert_allclose(warm.weights, cold.weights, rtol=0, atol=1e-10 * cold.weights.max())
        np.testing.assert_allclose(warm.duals, cold.duals, rtol=0, atol=1e-8 * np.abs(cold.duals).max())


def test_unsupported_problem_names_the_cvxpy_backend(kim2000):
    prob = cpz.entropy_balance(kim2000, treatment="A", covariates=COVARIATES)
    with pytest.raises(UnsupportedProblem, match="backend='cvxpy'") as info:
        prob.solve(backend="osqp")
    assert isinstance(info.value, cpz.InputError)


def test_infeasible_delta_is_reported_and_the_path_goes_on():
    data = cpz.datasets.kim2023(n=100, overlap="weak", seed=1)
    prob = cpz.sbw(data, treatment="A", covariates=COVARIATES, moments=2, interactions=True, delta=0.5)
    path = prob.path(backend="osqp", delta=[0.5, 0.0, 0.5], raise_on_failure=False)
    statuses = [s.status for s in path.solutions]
    assert statuses == ["optimal", "infeasible", "optimal"]
    infeasible = path.solutions[1]
    assert "infeasible" in infeasible.message and infeasible.weights.isna().all()
    np.testing.assert_allclose(path.solutions[2].weights, path.solutions[0].weights, atol=1e-12)
    with pytest.raises(cpz.InfeasibleError):
        prob.set(delta=0.0).solve(backend="osqp")


def test_options_reach_osqp_and_bad_ones_are_input_errors(kim2000):
    prob = cpz.sbw(kim2000, treatment="A", covariates=COVARIATES, delta=0.02)
    loose = prob.solve(backend="osqp", eps_abs=1e-5, eps_rel=1e-5, raise_on_failure=False)
    assert loose.status == "optimal"
    backend = prob.backend("osqp")
    solver = backend.groups[0].solver
    assert backend.groups[0].settings["eps_abs"] == 1e-5
    plain = prob.solve(backend="osqp", continuation=False, polish=False, raise_on_failure=False)
    assert plain.info["polish"] == ["not performed"] and backend.groups[0].solver is solver
    prob.solve(backend="osqp", scaling=5)              # a setup-only setting: set up again, not silently ignored
    assert backend.groups[0].solver is not solver and backend.setups == 2
    with pytest.raises(cpz.InputError, match="no_such_setting"):
        prob.solve(backend="osqp", no_such_setting=1)
    with pytest.raises(cpz.InputError, match="OSQP only"):
        prob.solve(backend="osqp", solver="ECOS")


@pytest.mark.parametrize("overlap,transformed", [("weak", False), ("strong", False), ("weak", True), ("strong", True)])
def test_sbw_at_5000_on_both_overlaps_and_covariate_sets(overlap, transformed):
    data = cpz.datasets.kim2023(n=5000, overlap=overlap, transformed=transformed, seed=2)
    covariates = [c for c in data.columns if c not in ("A", "Y")]
    prob = cpz.sbw(data, treatment="A", covariates=covariates, delta=0.02)
    check = assert_matches_reference(prob)
    assert check.objective_gap <= 1e-9 and check.max_violation <= 1e-12
