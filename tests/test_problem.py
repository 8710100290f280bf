"""The WeightingProblem machinery: parameters, DPP paths, custom terms, check(), to_cvxpy()."""

import inspect

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest

import counterpoise as cpz
from conftest import COVARIATES
from counterpoise.terms import MaxShare, Term


@pytest.fixture()
def prob(kim):
    return cpz.sbw(kim, treatment="A", covariates=COVARIATES, estimand="ATT", delta=0.05)


def test_problem_is_dpp_and_path_compiles_once(prob):
    problem = prob.to_cvxpy()
    assert problem.is_dpp()
    prob.solve(backend="cvxpy")
    assert prob.backend("cvxpy").compilations == 1
    deltas = np.geomspace(0.2, 0.01, 6)
    path = prob.path(backend="cvxpy", delta=deltas)
    assert prob.backend("cvxpy").compilations == 1        # the same compiled program, re-filled
    assert [s.status for s in path] == ["optimal"] * 6
    table = path.table
    np.testing.assert_allclose(table["max_abs_smd"], np.minimum(deltas, table["max_abs_smd"]), rtol=1e-6)
    assert np.all(np.diff(table["objective"]) >= -1e-12)   # tighter balance never costs less dispersion
    assert np.all(np.diff(table["ess"]) <= 1e-6)
    assert path.weights.shape == (len(prob.units), 6)


def test_set_resolves_short_and_full_names(prob):
    prob.set(delta=0.1)
    assert np.all(prob.get("balance.delta") == 0.1)
    prob.set(**{"balance.delta": np.linspace(0.01, 0.06, 6)})
    np.testing.assert_allclose(prob.get("delta"), np.linspace(0.01, 0.06, 6))
    sol = prob.solve()
    imbalance = np.abs(sol.balance["smd_after"].to_numpy())
    assert np.all(imbalance <= np.linspace(0.01, 0.06, 6) + 1e-7)
    with pytest.raises(cpz.InputError, match="no parameter named 'gamma'"):
        prob.set(gamma=1)
    with pytest.raises(cpz.InputError, match="nonnegative"):
        prob.set(delta=-0.1)
    with pytest.raises(cpz.InputError, match="finite"):
        prob.set(delta=np.nan)


def test_built_in_max_share_term(prob):
    free = prob.solve()
    cap = 0.8 * float(free.weights.max())
    prob.add(MaxShare(cap))
    capped = prob.solve()
    assert capped.weights.max() <= cap + 1e-9
    assert capped.objective > free.objective
    assert capped.violations["max_share"] <= 1e-6
    with pytest.raises(cpz.InputError, match="already has a term named"):
        prob.add(MaxShare(0.1))


class TopShare(Term):
    """A user's term: the k largest weights together hold at most `share` of the total."""

    def __init__(self, k, share):
        self.name, self.k = "top_share", k
        self.share = cp.Parameter(nonneg=True, value=share)

    def parameters(self):
        return {"share": self.share}

    def constraints(self, w):
        return [cp.sum_largest(w, self.k) <= self.share * cp.sum(w)]

    def violation(self, w):
        return max(np.sort(w)[-self.k:].sum() - self.share.value * w.sum(), 0.0)


def test_user_written_term_solves_and_is_swept(prob):
    prob.add(TopShare(k=10, share=0.05))
    sol = prob.solve()
    assert np.sort(sol.weights.to_numpy())[-10:].sum() <= 0.05 + 1e-8
    path = prob.path(share=[0.05, 0.04])
    top = [np.sort(s.weights.to_numpy())[-10:].sum() for s in path]
    assert top[1] <= 0.04 + 1e-8 and top[0] > 0.04
    with pytest.raises(cpz.InputError, match="cannot carry terms added"):
        prob.rebuild(prob.design)


def test_check_compares_with_reference(prob):
    report = prob.check("cvxpy", solver="ECOS")
    assert report.objective_gap < 1e-6
    assert report.weight_gap < 1e-3      # interior-point weights are exact to about sqrt(objective gap)
    assert report.max_violation < 1e-7
    assert report.passes()
    frame = report.to_frame()
    assert list(frame.columns)[:2] == ["backend", "reference"]


def test_osqp_stopped_early_is_flagged_not_trusted(prob):
    sol = prob.solve(solver="OSQP", raise_on_failure=False, max_iter=50)
    assert sol.status == "inaccurate"
    with pytest.raises(cpz.SolverError, match="inaccurate"):
        prob.solve(solver="OSQP", max_iter=50)


def test_unknown_backend(prob):
    with pytest.raises(cpz.InputError, match="unknown backend 'gurobi'"):
        prob.solve(backend="gurobi")


def test_bootstrap_resolves_the_weights():
    data = cpz.datasets.kim2023(n=400, overlap="strong", seed=8)
    sol = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.1).solve()
    fixed = cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol)
    boot = cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol, se="bootstrap", n_boot=30, seed=1)
    again = cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol, se="bootstrap", n_boot=30, seed=1)
    assert boot.estimate == fixed.estimate
    assert boot.std_error == again.std_error
    assert 0.3 * fixed.std_error < boot.std_error < 3 * fixed.std_error


def test_to_cvxpy_exposes_the_weights_for_hand_written_constraints(prob):
    problem = prob.to_cvxpy()
    w = prob.cvxpy_weights
    first = prob.solve(backend="cvxpy").weights.to_numpy()
    assert np.any(first[:5] > 1e-4 / len(first))           # so zeroing them must cost something
    optimum = problem.value
    extended = cp.Problem(problem.objective, problem.constraints + [w[:5] == 0])
    extended.solve(solver="CLARABEL")
    np.testing.assert_allclose(w.value[:5], 0, atol=1e-12)
    assert extended.value > optimum


def test_balance_table_follows_swept_targets(prob):
    target = prob.get("balance.target") + 0.05
    sol = prob.set(**{"balance.target": target}).solve()
    np.testing.assert_allclose(sol.balance["target"].to_numpy(), target)
    assert sol.balance["smd_after"].abs().max() <= 0.05 + 1e-7


def test_set_with_a_wrong_shape_names_the_full_keys():
    data = cpz.datasets.kim2023(n=600, overlap="strong", seed=2)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, m=40, l=30, s=10)
    with pytest.raises(cpz.InputError, match=r"set each of \['kernel.target', 'means.target'\] by its full name"):
        prob.set(target=np.zeros(6))
    prob.set(**{"means.target": np.zeros(6)})
    np.testing.assert_allclose(prob.get("means.target"), 0)


def test_estimates_use_the_problem_sample_weights_and_estimand():
    data = cpz.datasets.kim2023(n=800, overlap="strong", seed=9)
    data["s"] = np.random.default_rng(1).uniform(0.5, 2, len(data))
    sol = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.05, base_weights="s").solve()
    default = cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol)
    explicit = cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol, sample_weights="s")
    assert default.estimate == pytest.approx(explicit.estimate)
    uniform = cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol, sample_weights=np.ones(len(data)))
    assert uniform.estimate != pytest.approx(default.estimate)
    ate = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.05, estimand="ATE").solve()
    with pytest.raises(cpz.InputError, match="these weights solve a ATE problem; use estimate.ate"):
        cpz.estimate.att(data, treatment="A", outcome="Y", weights=ate)
    atc = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.05, estimand="ATC").solve()
    est = cpz.estimate.atc(data, treatment="A", outcome="Y", weights=atc)
    treated = data.A == 1
    expected = atc.weights @ data.loc[treated, "Y"] - data.loc[~treated, "Y"].mean()
    assert est.estimate == pytest.approx(expected)


def test_rebuild_refuses_row_tied_arguments():
    data = cpz.datasets.kim2023(n=400, overlap="strong", seed=8)
    basis = pd.DataFrame({"q": (data.X4 > 0).astype(float)}, index=data.index)
    sol = cpz.sbw(data, treatment="A", covariates=COVARIATES, basis=basis, delta=0.1).solve()
    with pytest.raises(cpz.InputError, match=r"\['basis'\] hold one value per original row"):
        cpz.estimate.att(data, treatment="A", outcome="Y", weights=sol, se="bootstrap", n_boot=5)


def test_path_leaves_the_swept_parameter_as_it_found_it(prob):
    before = prob.solve(backend="dual")
    prob.path(backend="dual", delta=[0.2, 0.1, 0.01])
    assert prob.get("delta") == pytest.approx(0.05)
    after = prob.solve(backend="dual")
    np.testing.assert_allclose(after.weights, before.weights, atol=1e-12)
    with pytest.raises(cpz.InputError):
        prob.path(backend="dual", delta=[0.2, -1.0])          # an error part-way also puts the value back
    assert prob.get("delta") == pytest.approx(0.05)


def test_the_default_backend_is_auto_and_a_named_solver_means_cvxpy(prob):
    assert inspect.signature(cpz.WeightingProblem.solve).parameters["backend"].default == "auto"
    assert prob.solve().backend == "dual"                      # SBW: the dual Newton, the first exact fast path
    assert {s.backend for s in prob.path(delta=[0.1, 0.05])} == {"dual"}
    named = prob.solve(solver="ECOS")
    assert (named.backend, named.solver) == ("cvxpy", "ECOS")
    assert prob.solve(backend="cvxpy").objective == pytest.approx(prob.solve().objective, rel=1e-7)


def test_long_work_shows_a_bar_only_when_asked_or_on_a_terminal(prob, kim, capsys):
    prob.path(backend="dual", delta=[0.2, 0.1, 0.05])
    assert capsys.readouterr().err == ""                    # stderr is no terminal here: quiet by default
    prob.path(backend="dual", delta=[0.2, 0.1, 0.05], progress=True)
    assert "path over delta" in capsys.readouterr().err
    sol = prob.solve(backend="dual")
    cpz.estimate.att(kim, treatment="A", outcome="Y", weights=sol, se="bootstrap", n_boot=5, progress=True)
    assert "bootstrap" in capsys.readouterr().err
    prob.path(backend="dual", delta=[0.2, 0.1], progress=False)
    assert capsys.readouterr().err == ""


def test_auto_takes_the_backends_that_take_the_options(prob):
    assert prob.solve(verbose=False).backend == "cvxpy"          # only cvxpy's solve takes verbose
    assert prob.solve(max_iter=300).backend == "dual"             # the dual takes max_iter
    with pytest.raises(cpz.InputError, match=r"backend 'cvxpy' with CLARABEL: .*unrecognized solver setting 'epsilon'"):
        prob.solve(epsilon=1e-12)               # the calibration Newton's option: not SBW's, so cvxpy's solver says
