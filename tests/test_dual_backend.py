"""The dual Newton backend against the cvxpy reference (CLARABEL) on the problems it claims."""

import numpy as np
import pytest

import counterpoise as cpz
from conftest import COVARIATES

TRANSFORMED = ["X1X3", "X2sq", "X4", "X5", "X6"]
SETTINGS = [(overlap, transformed) for overlap in ("weak", "strong") for transformed in (False, True)]


def assert_matches_reference(prob, objective_tol=1e-6, violation_tol=1e-7):
    report = prob.check("dual")
    assert report.solution.status == "optimal"
    assert report.objective_gap <= objective_tol
    assert report.max_violation <= violation_tol
    assert report.solution.info["duality_gap"] <= 1e-7
    duals, reference = report.solution.duals, report.reference_solution.duals
    np.testing.assert_allclose(duals.to_numpy(), reference.to_numpy(), atol=1e-4 * np.abs(reference).max())
    return report


@pytest.mark.parametrize("overlap,transformed", SETTINGS)
def test_sbw_att_and_ate(overlap, transformed):
    data = cpz.datasets.kim2023(n=5000, overlap=overlap, transformed=transformed, seed=1)
    covariates = TRANSFORMED if transformed else COVARIATES
    for estimand in ("ATT", "ATE"):
        assert_matches_reference(cpz.sbw(data, treatment="A", covariates=covariates, estimand=estimand, delta=0.02))


@pytest.mark.parametrize("overlap,transformed", SETTINGS)
def test_kernel_sbw_raw_delta(overlap, transformed):
    data = cpz.datasets.kim2023(n=5000, overlap=overlap, transformed=transformed, seed=1)
    covariates = TRANSFORMED if transformed else COVARIATES
    prob = cpz.kernel_sbw(data, treatment="A", covariates=covariates, delta=0.0005, delta_scale="raw",
                          m=100, l=60, s=30)
    assert_matches_reference(prob)


def test_a_multiplier_left_near_zero_by_rounding_does_not_stall_the_newton_step():
    """Replication draws (kernel-sbw-rmse, 2k weak) whose dual ran to its iteration limit ("inaccurate"): the public
    code's basis at a raw delta left one multiplier at 6e-36, and every feature-sign move stopped there at once;
    the step's dual by projected Newton gets past it."""
    data = cpz.datasets.kim2023(2000, overlap="weak", noise="sd", seed=1136)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.0005, delta_scale="raw", means=False,
                          bandwidth="2p", construction="landmark_eigenvectors")
    report = assert_matches_reference(prob)
    assert report.solution.iterations <= 20
    # the delta="auto" choice on another draw (0.05 SD on the basis, the means at 0.02 SD): the feature-sign moves
    # stall, and the step's dual needs about 150 projected Newton iterations, more than the 100 it once had
    data = cpz.datasets.kim2023(2000, overlap="weak", transformed=True, noise="variance", seed=1151)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=TRANSFORMED, delta=0.05, mean_delta=0.02)
    assert assert_matches_reference(prob).solution.iterations <= 20


@pytest.mark.slow
@pytest.mark.parametrize("overlap,transformed", SETTINGS)
def test_kernel_sbw_paper_size(overlap, transformed):
    data = cpz.datasets.kim2023(n=5000, overlap=overlap, transformed=transformed, seed=1)
    covariates = TRANSFORMED if transformed else COVARIATES
    assert_matches_reference(cpz.kernel_sbw(data, treatment="A", covariates=covariates, delta=0.0005,
                                            delta_scale="raw"))


@pytest.mark.parametrize("options", [{}, {"bounds": (0.97, 1.03)}, {"weight_bounds": (10, 60)}, {"tol": 0.002}])
def test_linear_calibration(options):
    api = cpz.datasets.api()
    pop = cpz.datasets.API_POPULATION
    prob = cpz.calibrate(api, base_weights="pw", margins={"stype": pop["stype"], "sch.wide": pop["sch.wide"]},
                         totals={"api99": pop["api99"]}, **options)
    report = prob.check("dual")
    assert report.solution.status == "optimal"
    assert report.objective_gap <= 1e-6 and report.max_violation <= 1e-7


def test_warm_path_equals_cold_solves_with_fewer_iterations():
    data = cpz.datasets.kim2023(n=3000, overlap="weak", seed=2)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.002, delta_scale="raw", m=100, l=60, s=30)
    deltas = np.geomspace(0.01, 0.001, 8)
    path = prob.path(backend="dual", delta=deltas)
    cold = []
    for delta in deltas:
        fresh = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=delta, delta_scale="raw",
                               m=100, l=60, s=30)
        cold.append(fresh.solve(backend="dual"))
    for warm, ref in zip(path, cold):
        assert warm.objective == pytest.approx(ref.objective, rel=1e-9)
        np.testing.assert_allclose(warm.weights, ref.weights, atol=1e-9 / len(ref.weights))
    assert sum(s.iterations for s in path[1:]) < sum(s.iterations for s in cold[1:])


def test_infeasible_delta_is_detected(kim):
    data = kim.copy()
    data.loc[data.A == 1, "X4"] += 10
    prob = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.05)
    sol = prob.solve(backend="dual", raise_on_failure=False)
    assert sol.status == "infeasible"
    with pytest.raises(cpz.InfeasibleError, match="balance / X4"):
        prob.solve(backend="dual")
    path = prob.path(backend="dual", delta=[0.05, 10.0])           # an infeasible point does not stop a path
    assert [s.status for s in path] == ["infeasible", "optimal"]


def test_large_infeasible_problems_are_explained_by_the_dual_certificate(kim, monkeypatch):
    data = kim.copy()
    data.loc[data.A == 1, "X4"] += 10
    monkeypatch.setattr(cpz.infeasibility, "RELAXED_SOLVE_LIMIT", 100)   # pretend n is large: no cvxpy relaxed solve
    with pytest.raises(cpz.InfeasibleError, match=r"dual diverges along (.|\n)*balance / X4") as info:
        cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.05).solve(backend="dual")
    assert info.value.binding["column"].iloc[0] == "balance / X4"


def test_the_farkas_ray_certifies_infeasibility_within_a_few_steps(monkeypatch):
    # weak overlap, 209 controls, 27 balance functions: no weights exist below a common delta of about 0.033
    data = cpz.datasets.kim2023(300, overlap="weak", seed=21)
    options = dict(treatment="A", covariates=COVARIATES, moments=2, interactions=True)
    prob = cpz.sbw(data, **options, delta=0.01)
    sol = prob.solve(backend="dual", raise_on_failure=False)
    feasible = cpz.sbw(data, **options, delta=0.05).solve(backend="dual")
    assert sol.status == "infeasible" and sol.iterations <= 2 * feasible.iterations
    assert prob.solve(backend="cvxpy", raise_on_failure=False).status == "infeasible"
    # the certified floor is a lower bound on the smallest feasible delta (the LP's), and not a loose one
    tightest = cpz.tuning.TightestDelta().tune(cpz.sbw(data, **options, delta=0.01)).tightest
    assert 0.01 < sol.info["infeasible_below"] <= tightest + 1e-9
    monkeypatch.setattr(cpz.infeasibility, "RELAXED_SOLVE_LIMIT", 100)   # the message of a large problem
    with pytest.raises(cpz.InfeasibleError, match=r"Farkas ray; with one tolerance for every balance column, none "
                                                  r"below 0\.0\d+"):
        prob.solve(backend="dual")


def test_a_solve_stopped_short_is_settled_by_the_relaxed_problem():
    """A replication draw whose smallest feasible delta is 0.2% above the raw 0.0005 asked for: the dual's ray is
    not yet sharp at its iteration limit (here cut to 20), and the relaxed problem certifies what cvxpy finds,
    infeasibility; a feasible problem stopped short stays "inaccurate"."""
    data = cpz.datasets.kim2023(2000, overlap="weak", noise="variance", seed=1067)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.0005, delta_scale="raw", means=False)
    sol = prob.solve(backend="dual", max_iter=20, raise_on_failure=False)
    assert sol.status == "infeasible" and sol.solver_status == "inaccurate" and sol.iterations == 20
    assert "relaxed problem certifies" in sol.message
    assert prob.solve(backend="cvxpy", raise_on_failure=False).status == "infeasible"
    error = prob.explain_infeasible(sol)                 # the relaxed problem's, kept: what solve() raises
    assert "smallest total loosening" in str(error) and len(error.binding) >= 1
    assert (error.binding["needed"] > 0.0005).all()
    feasible = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.01, delta_scale="raw", means=False)
    assert feasible.solve(backend="dual", max_iter=1, raise_on_failure=False).status == "inaccurate"
    # another such draw stalls far out along the ray (steps that lower neither D nor the residual): the dual stops
    # after STALLED_STEPS of them instead of running to max_iter (200), and the relaxed problem settles it
    data = cpz.datasets.kim2023(2000, overlap="weak", noise="variance", seed=1165)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.0005, delta_scale="raw", means=False)
    raw = prob.backend("dual").solve()
    assert raw.status == "inaccurate" and raw.iterations < 50


def test_a_large_cold_solve_starts_from_a_subsample_and_ends_at_the_same_optimum(monkeypatch):
    from counterpoise.backends import dual as dual_module

    data = cpz.datasets.kim2023(4000, overlap="weak", seed=3)
    build = lambda: cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, m=120, l=80, s=40, delta=0.01)
    monkeypatch.setattr(dual_module, "SUBSAMPLE_FROM", 10**9)
    cold = build().solve(backend="dual")
    monkeypatch.setattr(dual_module, "SUBSAMPLE_FROM", 1000)        # pretend the 2900 controls are many
    monkeypatch.setattr(dual_module, "SUBSAMPLE", 600)
    starts = []
    original = dual_module.subsample_start
    monkeypatch.setattr(dual_module, "subsample_start", lambda *a: starts.append(original(*a)) or starts[-1])
    prob = build()
    started = prob.solve(backend="dual")
    assert len(starts) == 1 and starts[0][0] is not None    # the start came from the subsample's optimum
    assert started.info["subsample_iterations"] == starts[0][1] > 0
    assert started.status == "optimal"                  # fewer steps only at scale: a benchmark, not a test
    np.testing.assert_allclose(started.weights, cold.weights, atol=1e-10)
    reference = prob.solve(backend="cvxpy")
    assert abs(started.objective - reference.objective) <= 1e-7 * reference.objective


def test_kernel_sbw_bad_sizes_are_named(kim):
    with pytest.raises(cpz.InputError, match="need s < l < m"):
        cpz.kernel_sbw(kim, treatment="A", covariates=COVARIATES, m=50, l=40, s=40)
    with pytest.raises(cpz.InputError, match=r"m \(number of landmarks\) must be <= the number of rows"):
        cpz.kernel_sbw(kim.iloc[:100], treatment="A", covariates=COVARIATES, m=300)


def test_auto_takes_the_dual_where_it_applies(kim):
    sbw = cpz.sbw(kim, treatment="A", covariates=COVARIATES, delta=0.05)
    assert sbw.auto_backends() == ["dual", "cvxpy"]
    assert sbw.solve(backend="auto").backend == "dual"
    entropy = cpz.entropy_balance(kim, treatment="A", covariates=COVARIATES)
    # entropy balancing is raking calibration with a normalization: the calibration backend's Newton solves it
    assert entropy.auto_backends() == ["calibration", "cvxpy"]
    assert entropy.solve(backend="auto").backend == "calibration"
    check = entropy.check("calibration")
    assert check.objective_gap < 1e-9 and check.weight_gap < 1e-5
    with pytest.raises(cpz.InputError, match="needs backend='cvxpy'"):
        entropy.solve(backend="dual")
