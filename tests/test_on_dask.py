"""Calibration of a dask DataFrame on a real LocalCluster (2 worker processes): the same weights as in memory, on
partitions of unequal sizes with an empty one and a margin level in one partition only; diagnostics computed
partition-wise; a worker lost mid-solve; and the inputs a dask DataFrame cannot take."""

import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import counterpoise as cpz
from counterpoise.errors import InputError
from counterpoise.plots import love_plot

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def sample():
    """4,000 units, 5 margins x 10 levels, a numeric column; level "rare" of v1 only in the first 30 rows."""
    frame = cpz.datasets.survey_margins(4000, seed=11)
    frame["x"] = np.random.default_rng(11).gamma(2.0, 3.0, len(frame))
    frame.loc[:29, "v1"] = "rare"
    margins = {var: frame.groupby(var)["d"].sum().mul(1.1).to_dict() for var in ["v1", "v2", "v3", "v4", "v5"]}
    totals = {"x": 1.05 * float(frame["x"] @ frame["d"])}
    return frame, margins, totals


def partitioned(frame):
    """Unequal partitions, one of them empty: rows [0, 700), [700, 700), [700, 2300), [2300, 4000)."""
    cuts = [0, 700, 700, 2300, len(frame)]
    pieces = [dask.delayed(frame.iloc[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return dd.from_delayed(pieces, meta=frame.iloc[:0])


CASES = [("raking", None, None), ("linear", None, None), ("logit", (0.5, 2.2), None), ("raking", (0.7, 1.6), None),
         ("linear", (0.3, 3.0), (20.0, 900.0))]


@pytest.mark.parametrize("distance, bounds, weight_bounds", CASES)
def test_partitioned_calibration_equals_the_in_memory_solve(client, sample, distance, bounds, weight_bounds):
    frame, margins, totals = sample
    arguments = dict(base_weights="d", margins=margins, totals=totals, distance=distance, bounds=bounds,
                     weight_bounds=weight_bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # GREG's negative weights are said alike by both
        memory = cpz.calibrate(frame, **arguments).solve(backend="calibration")
        solution = cpz.calibrate(partitioned(frame), **arguments).solve()
    assert isinstance(solution, cpz.Solution) and solution.status == "optimal"
    weights = solution.weights.compute()
    assert weights.index.equals(frame.index)
    scale = memory.weights.abs().max()
    assert np.max(np.abs(weights - memory.weights)) <= 1e-8 * scale
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-9, atol=1e-9 * scale)
    assert solution.ess == pytest.approx(memory.ess, rel=1e-10)
    ours, theirs = solution.validate(), memory.validate()
    for key in ("records", "max_weight_ratio", "design_effect"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-9)
    assert ours["max_relative_error"] < 1e-9
    assert solution.objective == pytest.approx(memory.objective, rel=1e-9)


@pytest.mark.parametrize("distance, bounds", [("raking", None), ("logit", (0.5, 2.2)), ("linear", None)])
def test_partitioned_calibration_with_tolerances_equals_the_in_memory_dual(client, sample, distance, bounds):
    """Totals within 2% (the v1 margin's levels moved 4% up and down in turn, so some bind): the dual Newton on the
    partitions, as in memory."""
    frame, margins, totals = sample
    moved = {**margins, "v1": {k: (1.04 if j % 2 else 0.96) * v for j, (k, v) in enumerate(margins["v1"].items())}}
    arguments = dict(base_weights="d", margins=moved, totals=totals, distance=distance, bounds=bounds, tol=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = cpz.calibrate(frame, **arguments).solve()
        solution = cpz.calibrate(partitioned(frame), **arguments).solve()
    assert memory.backend == "dual" and solution.backend == "dual" and solution.status == "optimal"
    weights = solution.weights.compute()
    assert np.max(np.abs(weights - memory.weights)) <= 1e-8 * memory.weights.abs().max()
    assert solution.objective == pytest.approx(memory.objective, rel=1e-9)
    np.testing.assert_allclose(solution.duals.to_numpy(), memory.duals.to_numpy(), rtol=0,
                               atol=1e-7 * np.abs(memory.duals).max())
    assert np.abs(memory.duals).max() > 0                     # some total sits at its tolerance
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-8, atol=1e-8 * weights.abs().max())


@pytest.mark.parametrize("tol", [None, 0.01])
def test_constraints_with_coefficients_chunked_like_the_partitions(client, sample, tol):
    """constraints= takes a dask array of coefficients chunked like the partitions: the in-memory weights, duals and
    table, exact or within a tolerance; other chunks are refused."""
    import dask.array as da

    frame, margins, totals = sample
    coefficients = np.where(frame["v2"] == frame["v2"].iloc[0], frame["x"], 0.0)
    total = 1.02 * float(coefficients @ frame["d"])
    arguments = dict(base_weights="d", margins=margins, distance="raking", tol=tol)
    memory = cpz.calibrate(frame, constraints={"part": (coefficients, total)}, **arguments).solve()
    data = partitioned(frame)
    chunked = da.from_array(coefficients, chunks=((700, 0, 1600, 1700),))
    solution = cpz.calibrate(data, constraints={"part": (chunked, total)}, **arguments).solve()
    assert solution.status == "optimal" and solution.backend == memory.backend
    np.testing.assert_allclose(solution.weights.compute(), memory.weights, rtol=1e-8)
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-8)
    assert solution.duals.iloc[-1] == pytest.approx(memory.duals.iloc[-1], rel=1e-6)
    with pytest.raises(InputError, match="must be the DataFrame's partitions"):
        cpz.calibrate(data, constraints={"part": (chunked.rechunk(1000), total)}, **arguments)
    with pytest.raises(InputError, match="must be a 1-D dask array"):
        cpz.calibrate(data, constraints={"part": (da.stack([chunked, chunked], axis=1), total)}, **arguments)


def test_check_runs_on_a_sample_the_user_names(client, sample):
    """check(sample=...) builds the same problem (the same population totals) on the rows named, in memory, and
    checks the engine against cvxpy there."""
    frame, margins, totals = sample
    rows = frame.sample(3000, random_state=1)
    check = cpz.calibrate(partitioned(frame), base_weights="d", margins=margins, totals=totals).check("dual",
                                                                                                     sample=rows)
    alone = cpz.calibrate(rows, base_weights="d", margins=margins, totals=totals).check("dual")
    assert check.objective_gap < 1e-7 and check.weight_gap < 1e-6
    np.testing.assert_allclose(check.solution.weights, alone.solution.weights, rtol=1e-12)
    kernel = cpz.kernel_sbw(partitioned(cpz.datasets.kim2023(2000, seed=2)), treatment="A", m=30, l=20, s=10,
                            covariates=["X1", "X2"], delta=0.05)
    assert kernel.check("dual", sample=cpz.datasets.kim2023(2000, seed=2).sample(800, random_state=2)).objective_gap \
        < 1e-6


@pytest.mark.parametrize("trim", [(0.8, 1.6), (0.9, 2.0)])
def test_rake_with_trimming_on_partitions_is_the_in_memory_one(client, sample, trim):
    """rake(trim=) on partitions: trim_weights' rounds, each one pass of sums, give the in-memory trimmed weights,
    units capped, misfit, status, table and message (margins whose g spreads from 0.5 to 2.1)."""
    frame = sample[0]
    rng, population = np.random.default_rng(3), 1.1 * frame["d"].sum()
    margins = {}
    for var in ["v1", "v2", "v3"]:
        level = frame.groupby(var)["d"].sum() * rng.uniform(0.7, 1.3, frame[var].nunique())
        margins[var] = (level * population / level.sum()).to_dict()
    memory = cpz.rake(frame, margins=margins, base_weights="d", trim=trim)
    solution = cpz.rake(partitioned(frame), margins=margins, base_weights="d", trim=trim)
    np.testing.assert_allclose(solution.weights.compute(), memory.weights, rtol=1e-10)
    assert solution.info["trimmed_units"] == memory.info["trimmed_units"] > 0
    assert solution.info["max_relative_misfit"] == pytest.approx(memory.info["max_relative_misfit"], rel=1e-8)
    assert (solution.status, solution.message) == (memory.status, memory.message)
    assert solution.objective == pytest.approx(memory.objective, rel=1e-8)
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-8)
    pd.testing.assert_series_equal(solution.compute().weights, memory.weights, rtol=1e-10)


def test_compute_gives_the_in_memory_solution(client, sample):
    frame, margins, totals = sample
    solution = cpz.rake(partitioned(frame), margins=margins, base_weights="d")
    memory = cpz.rake(frame, margins=margins, base_weights="d")
    gathered = solution.compute()
    assert isinstance(gathered, cpz.Solution) and gathered.status == "optimal"
    np.testing.assert_allclose(gathered.weights.loc[frame.index], memory.weights, rtol=1e-10)
    pd.testing.assert_frame_equal(gathered.balance, memory.balance, rtol=1e-9)
    assert gathered.validate()["top_1pct_share"] == pytest.approx(memory.validate()["top_1pct_share"], rel=1e-9)


def test_a_worker_lost_mid_solve_is_recomputed(client, sample):
    """After the first Newton step both workers are restarted: every persisted block is lost, Dask recomputes the
    blocks from their graph, and the solve ends where an undisturbed one does."""
    frame, margins, totals = sample
    arguments = dict(base_weights="d", margins=margins, totals=totals, distance="raking")
    reference = cpz.calibrate(frame, **arguments).solve(backend="calibration").weights
    problem = cpz.calibrate(partitioned(frame), **arguments)
    keys = [block.key for block in problem.blocks.blocks]
    held_after_restart = []

    def lose_the_workers(iteration, lam):
        if iteration == 1:
            client.restart_workers(workers=list(client.scheduler_info()["workers"]))
            held_after_restart.append(client.who_has(keys))

    solution = problem.solve(callback=lose_the_workers)
    assert held_after_restart and not any(held_after_restart[0].values())     # every block was lost
    assert solution.status == "optimal" and solution.iterations > 1
    np.testing.assert_allclose(solution.weights.compute(), reference, rtol=1e-10)


def test_what_a_dask_dataframe_cannot_take(client, sample):
    frame, margins, totals = sample
    data = partitioned(frame)
    with pytest.raises(InputError, match="coefficients of constraint 'c' on a dask DataFrame must be a 1-D dask"):
        cpz.calibrate(data, base_weights="d", margins=margins, constraints={"c": (np.ones(len(frame)), 1.0)})
    with pytest.raises(InputError, match="must be a column name"):
        cpz.calibrate(data, base_weights=frame["d"].to_numpy(), margins=margins)
    with pytest.raises(InputError, match=r"\['nope'\] are not in the data"):
        cpz.calibrate(data, base_weights="d", margins={"nope": {"a": 1.0}})
    with pytest.raises(InputError, match="needs every row in memory; name a sample of the rows"):
        cpz.calibrate(data, base_weights="d", margins=margins).check("calibration")


def test_margin_errors_are_the_in_memory_ones(client, sample):
    frame, margins, totals = sample
    short = {**margins, "v1": {k: v for k, v in margins["v1"].items() if k != "rare"}}
    with pytest.raises(InputError, match=r"margin 'v1': levels \['rare'\] occur in the data but have no"):
        cpz.calibrate(partitioned(frame), base_weights="d", margins=short)
    holes = frame.assign(v2=frame["v2"].where(frame.index != 3000))
    with pytest.raises(InputError, match="margin variable 'v2' has 1 missing values"):
        cpz.calibrate(partitioned(holes), base_weights="d", margins=margins)
    absent = {**margins, "v3": {**margins["v3"], "nowhere": 5.0}}
    with pytest.raises(InputError, match="level 'nowhere' has population total 5 but no units"):
        cpz.calibrate(partitioned(frame), base_weights="d", margins=absent)


@pytest.mark.parametrize("estimand, std", [("ATT", None), ("ATC", "pooled")])
def test_partitioned_entropy_balancing_equals_the_in_memory_one(client, estimand, std):
    frame = cpz.datasets.kim2023(3000, seed=4)
    frame["q"] = np.random.default_rng(4).uniform(0.5, 2.0, len(frame))
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], estimand=estimand, std=std,
                     base_weights="q")
    memory = cpz.entropy_balance(frame, **arguments).solve()
    solution = cpz.entropy_balance(partitioned(frame), **arguments).solve()
    weights = solution.weights.compute()
    assert solution.status == "optimal" and weights.index.equals(memory.weights.index)
    assert np.max(np.abs(weights - memory.weights)) <= 1e-8 * memory.weights.max()
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    expected = memory.balance_with(std or "target")
    pd.testing.assert_frame_equal(solution.balance, expected, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(solution.compute().balance, expected, rtol=1e-9, atol=1e-12)
    assert solution.ess == pytest.approx(memory.ess, rel=1e-10)
    tolerant = cpz.entropy_balance(partitioned(frame), **arguments, delta=0.05).solve()
    exact = cpz.entropy_balance(frame, **arguments, delta=0.05).solve()
    assert tolerant.backend == exact.backend == "dual"
    assert np.max(np.abs(tolerant.weights.compute() - exact.weights)) <= 1e-8 * exact.weights.max()
    with pytest.raises(InputError, match="delta on a dask DataFrame is one nonnegative number"):
        cpz.entropy_balance(partitioned(frame), **arguments, delta="auto")
    with pytest.raises(InputError, match="takes delta in SD units"):
        cpz.entropy_balance(partitioned(frame), **arguments, delta=0.05, delta_scale="raw")
    with pytest.raises(InputError, match="has no treated units"):
        cpz.entropy_balance(partitioned(frame.assign(A=0)), treatment="A", covariates=["X1"])


def test_effect_estimates_on_partitions_equal_the_in_memory_ones(client):
    frame = cpz.datasets.kim2023(3000, seed=5)
    frame["q"] = np.random.default_rng(5).uniform(0.5, 2.0, len(frame))
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], base_weights="q")
    for estimand, estimate in (("ATT", cpz.estimate.att), ("ATC", cpz.estimate.atc)):
        in_memory = cpz.entropy_balance(frame, estimand=estimand, **arguments).solve()
        data = partitioned(frame)
        on_partitions = cpz.entropy_balance(data, estimand=estimand, **arguments).solve()
        for se in ("fixed", "balancing"):
            memory = estimate(frame, "A", "Y", in_memory, se=se)
            ours = estimate(data, "A", "Y", on_partitions, se=se)
            assert ours.method == se
            for field in ("estimate", "std_error", "ci_lower", "ci_upper", "ess_treated", "ess_control"):
                assert getattr(ours, field) == pytest.approx(getattr(memory, field), rel=1e-8), (se, field)
            assert (ours.n_treated, ours.n_control) == (memory.n_treated, memory.n_control)
        assert estimate(data, "A", "Y", on_partitions).method == "balancing"           # the default, as in memory
    sbw = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], delta=0.05, moments=2)
    in_memory, on_partitions = cpz.sbw(frame, **sbw).solve(), cpz.sbw(partitioned(frame), **sbw).solve()
    memory = cpz.estimate.att(frame, "A", "Y", in_memory)
    ours = cpz.estimate.att(partitioned(frame), "A", "Y", on_partitions)
    assert ours.std_error == pytest.approx(memory.std_error, rel=1e-6)
    corrected = cpz.estimate.att(frame, "A", "Y", in_memory, augmented=True)      # delta 0.05: not the plain ATT
    assert abs(corrected.estimate - memory.estimate) > 1e-3
    ours = cpz.estimate.att(partitioned(frame), "A", "Y", on_partitions, augmented=True)
    assert ours.augmented and ours.estimate == pytest.approx(corrected.estimate, rel=1e-6)
    assert ours.std_error == pytest.approx(corrected.std_error, rel=1e-6)


@pytest.mark.parametrize("estimand", ["ATT", "ATE"])
def test_the_balancing_se_on_partitions_survives_columns_of_very_different_scales(client, estimand):
    """An income in dollars (squared: 1e9) beside a binary column: the arms' regressions are least squares on their
    triangular factors, as in memory, not normal equations (whose squared condition number would drop directions)."""
    frame = cpz.datasets.kim2023(2000, seed=3)
    frame["income"] = np.exp(10.8 + 0.5 * frame["X1"])
    frame["B"] = (frame["X2"] > 0).astype(float)
    arguments = dict(treatment="A", covariates=["income", "B", "X3"], moments=2, delta=0.05, estimand=estimand)
    estimate = getattr(cpz.estimate, estimand.lower())
    memory, solution = cpz.sbw(frame, **arguments).solve(), cpz.sbw(partitioned(frame), **arguments).solve()
    for augmented in (False, True):
        ours = estimate(partitioned(frame), "A", "Y", solution, augmented=augmented)
        theirs = estimate(frame, "A", "Y", memory, augmented=augmented)
        assert ours.estimate == pytest.approx(theirs.estimate, rel=1e-8)
        assert ours.std_error == pytest.approx(theirs.std_error, rel=1e-8)


@pytest.mark.parametrize("builder, options, estimate, augmented", [
    (cpz.sbw, dict(delta=0.05, base_weights="q"), cpz.estimate.att, False),
    (cpz.entropy_balance, dict(estimand="ATE"), cpz.estimate.ate, True),
    (cpz.kernel_sbw, dict(m=40, l=30, s=15, delta=0.1), cpz.estimate.att, False)])
def test_the_bootstrap_on_partitions_has_the_in_memory_resamples(client, builder, options, estimate, augmented):
    """se="bootstrap" with a seed: the same resamples (drawn by position, labelled as the in-memory resample, so the
    kernel's landmarks are the same), the weights re-solved on the partitions: the in-memory SE and interval."""
    frame = cpz.datasets.kim2023(1200, seed=15)
    frame["q"] = np.random.default_rng(15).uniform(0.5, 2.0, len(frame))
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4"], **options)
    bootstrap = dict(se="bootstrap", n_boot=4, seed=3, augmented=augmented)
    memory = estimate(frame, "A", "Y", builder(frame, **arguments).solve(), **bootstrap)
    data = partitioned(frame)
    ours = estimate(data, "A", "Y", builder(data, **arguments).solve(), **bootstrap)
    assert ours.method == "bootstrap" and ours.n_failed_replicates == memory.n_failed_replicates == 0
    for field in ("estimate", "std_error", "ci_lower", "ci_upper", "ess_treated", "ess_control"):
        assert getattr(ours, field) == pytest.approx(getattr(memory, field), rel=1e-8), field
    with pytest.raises(InputError, match="sample_weights on a dask DataFrame must be a column name"):
        cpz.estimate.att(data, "A", "Y", cpz.sbw(data, treatment="A", covariates=["X1"]).solve(),
                         sample_weights=frame["q"])
    basis = data[["X1"]].to_dask_array(lengths=True)
    with pytest.raises(InputError, match=r"cannot rebuild on new data: \['basis'\]"):
        cpz.estimate.att(data, "A", "Y", cpz.sbw(data, treatment="A", covariates=["X1"], basis=basis).solve(),
                         se="bootstrap", n_boot=2)


def test_a_computed_solution_estimates_in_memory_as_the_in_memory_solve(client):
    """compute() brings the weights and the balance functions to the client: the in-memory estimate (its default,
    the balancing SE) equals the one on the in-memory solve; a diagnostic it cannot give on partitions says so."""
    frame = cpz.datasets.kim2023(2000, seed=7)
    frame["q"] = np.random.default_rng(7).uniform(0.5, 2.0, len(frame))
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3"], base_weights="q")
    memory = cpz.estimate.att(frame, "A", "Y", cpz.entropy_balance(frame, **arguments).solve())
    solution = cpz.entropy_balance(partitioned(frame), **arguments).solve()
    gathered = cpz.estimate.att(frame, "A", "Y", solution.compute())
    assert gathered.method == memory.method == "balancing"
    for field in ("estimate", "std_error"):
        assert getattr(gathered, field) == pytest.approx(getattr(memory, field), rel=1e-8)
    assert f"n = {len(frame) - int(frame['A'].sum())}" in str(solution)
    with pytest.raises(InputError, match="has the SDs it was built with"):
        love_plot(solution, std="pooled")


@pytest.mark.parametrize("estimand, delta, base_weights", [("ATT", 0.02, None), ("ATC", 0.05, "q"), ("ATT", 0.0, "q")])
def test_partitioned_sbw_equals_the_in_memory_dual(client, estimand, delta, base_weights):
    frame = cpz.datasets.kim2023(4000, seed=6)
    frame["q"] = np.random.default_rng(6).uniform(0.5, 2.0, len(frame))
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], estimand=estimand, delta=delta,
                     base_weights=base_weights)
    memory = cpz.sbw(frame, **arguments).solve(backend="dual")
    solution = cpz.sbw(partitioned(frame), **arguments).solve()
    weights = solution.weights.compute()
    assert solution.status == "optimal" and solution.info["duality_gap"] <= 1e-10
    assert weights.index.equals(memory.weights.index)
    assert np.max(np.abs(weights - memory.weights)) <= 1e-8 * memory.weights.max()
    assert solution.iterations == memory.iterations                 # the same Newton steps, summed by partition
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-9, atol=1e-12)
    assert solution.objective == pytest.approx(memory.objective, rel=1e-9)
    assert solution.ess == pytest.approx(memory.ess, rel=1e-10)


def test_a_delta_path_on_partitions_equals_the_in_memory_path(client):
    """set() and path() over the tolerance on partitions: warm from the last dual point, the weights and table of
    the in-memory path (an infeasible point kept with its status), and the tolerance restored afterwards."""
    frame = cpz.datasets.kim2023(3000, overlap="weak", seed=9)
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], moments=2, delta=0.1)
    deltas = [0.1, 0.05, 0.02, 0.0]
    memory = cpz.sbw(frame, **arguments).path(delta=deltas)
    problem = cpz.sbw(partitioned(frame), **arguments)
    path = problem.path(delta=deltas)
    assert [s.status for s in path] == [s.status for s in memory]
    for ours, theirs in zip(path, memory):
        if theirs.status == "optimal":
            assert np.max(np.abs(ours.weights.compute() - theirs.weights)) <= 1e-8 * theirs.weights.max()
    pd.testing.assert_frame_equal(path.table.drop(columns="solve_time"), memory.table.drop(columns="solve_time"),
                                  rtol=1e-8)
    assert problem.get("delta") == pytest.approx(np.full(len(problem.t) - 1, 0.1))
    kernel = cpz.kernel_sbw(partitioned(frame), treatment="A", covariates=["X1", "X2"], m=30, l=20, s=10, delta=0.05)
    memory = cpz.kernel_sbw(frame, treatment="A", covariates=["X1", "X2"], m=30, l=20, s=10, delta=0.05)
    ours, theirs = kernel.set(mean_delta=0.01).solve(), memory.set(mean_delta=0.01).solve()
    assert np.max(np.abs(ours.weights.compute() - theirs.weights)) <= 1e-8 * theirs.weights.max()
    with pytest.raises(InputError, match=r"no parameter named 'lam'.*\['delta', 'mean_delta'\]"):
        kernel.set(lam=1.0)


def test_partitioned_sbw_starts_from_a_gathered_subsample(client, monkeypatch):
    from counterpoise import partitioned as partitioned_module
    from counterpoise.backends import dual as dual_module

    frame = cpz.datasets.kim2023(5000, seed=7)
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], delta=0.02)
    memory = cpz.sbw(frame, **arguments).solve(backend="dual")
    monkeypatch.setattr(partitioned_module, "SUBSAMPLE_FROM", 1000)      # pretend the controls are many
    monkeypatch.setattr(dual_module, "SUBSAMPLE", 700)
    solution = cpz.sbw(partitioned(frame), **arguments).solve()
    assert solution.status == "optimal" and solution.info["subsample_iterations"] > 0
    np.testing.assert_allclose(solution.weights.compute(), memory.weights, atol=1e-10)


def test_partitioned_sbw_infeasibility_is_certified(client):
    frame = cpz.datasets.kim2023(3000, seed=8)
    frame.loc[frame["A"] == 1, "X4"] += 10.0            # the treated's X4 mean beyond every control's X4
    with pytest.raises(cpz.InfeasibleError, match="the dual's ray certifies it"):
        cpz.sbw(partitioned(frame), treatment="A", covariates=["X1", "X4"], delta=0.01).solve()


@pytest.mark.parametrize("builder, options", [(cpz.sbw, dict(moments=2)), (cpz.sbw, dict(estimand="ATE")),
                                              (cpz.kernel_sbw, dict(m=40, l=30, s=15, mean_delta=0.05))])
def test_the_tightest_delta_on_partitions_is_the_in_memory_one(client, builder, options):
    """delta="tightest" by column generation on the partitions (HiGHS on a few units, priced by passes) against the
    in-memory LP over every row (cvxpy and CLARABEL); kernel SBW keeps its covariate means within mean_delta."""
    frame = cpz.datasets.kim2023(1500, overlap="weak", seed=17)
    frame.loc[frame["A"] == 1, ["X1", "X4"]] += 2.5          # exact balance out of reach: the tightest delta > 0
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4"], delta="tightest", **options)
    memory = builder(frame, **arguments).solve()
    solution = builder(partitioned(frame), **arguments).solve()
    assert solution.tuning.tightest == pytest.approx(memory.tuning.tightest, rel=1e-6)
    assert solution.status == "optimal"
    assert np.max(np.abs(solution.weights.compute() - memory.weights)) <= 1e-4 * memory.weights.max()
    if builder is cpz.kernel_sbw:                # covariate means held within 0.001 SD: no basis delta helps
        with pytest.raises(cpz.InfeasibleError, match="no weights meet the problem's other tolerances"):
            builder(partitioned(frame), **{**arguments, "mean_delta": 0.001}).solve()


@pytest.mark.parametrize("builder, options", [(cpz.sbw, dict(moments=2)), (cpz.sbw, dict(estimand="ATE")),
                                              (cpz.kernel_sbw, dict(m=40, l=30, s=15))])
def test_delta_auto_on_partitions_is_the_in_memory_choice(client, builder, options):
    """delta="auto" (Wang & Zubizarreta's bootstrap) with a seed: the resamples drawn on the client as in memory,
    their sums made on the partitions; the same curve, choice and weights."""
    frame = cpz.datasets.kim2023(1500, overlap="weak", seed=16)
    tuner = cpz.tuning.BootstrapDelta(grid=(0.002, 0.01, 0.05, 0.2), samples=25, seed=4)
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4"], delta=tuner, **options)
    memory = builder(frame, **arguments).solve()
    solution = builder(partitioned(frame), **arguments).solve()
    assert solution.tuning.delta == memory.tuning.delta and solution.tuning.status == memory.tuning.status
    np.testing.assert_allclose(solution.tuning.statistic, memory.tuning.statistic, rtol=1e-8)
    assert np.max(np.abs(solution.weights.compute() - memory.weights)) <= 1e-8 * memory.weights.max()


@pytest.mark.parametrize("construction", ["rank_restricted", "landmark_eigenvectors"])
def test_the_nystrom_basis_of_a_dask_array_is_the_in_memory_one(client, construction):
    import dask.array as da

    X = cpz.datasets.kim2023(3000, seed=9)[["X1", "X2", "X3", "X4", "X5", "X6"]].to_numpy()
    memory = cpz.basis.nystrom(X, m=120, l=80, s=40 if construction == "rank_restricted" else None,
                               construction=construction, seed=2)
    chunks = da.from_array(X, chunks=((700, 0, 1600, 700), (6,)))        # unequal chunks, one empty
    ours = cpz.basis.nystrom(chunks, m=120, l=80, s=40 if construction == "rank_restricted" else None,
                             construction=construction, seed=2)
    assert isinstance(ours.D, da.Array) and ours.D.chunks[0] == chunks.chunks[0]
    np.testing.assert_array_equal(ours.landmarks, memory.landmarks)
    np.testing.assert_allclose(ours.D.compute(), memory.D, atol=1e-10 * np.abs(memory.D).max())
    np.testing.assert_allclose(ours.eigenvalues, memory.eigenvalues, rtol=1e-10)


@pytest.mark.parametrize("options", [dict(delta=0.02),
                                     dict(delta=0.0005, delta_scale="raw", mean_delta=0.05, base_weights="q"),
                                     dict(delta=0.3, mean_delta=0.2, estimand="ATC",
                                          construction="landmark_eigenvectors"),
                                     dict(delta=0.0005, delta_scale="raw", means=False),
                                     dict(delta=0.05, estimand="ATE", base_weights="q")])
def test_partitioned_kernel_sbw_equals_the_in_memory_one(client, options):
    frame = cpz.datasets.kim2023(4000, seed=10)
    frame["q"] = np.random.default_rng(10).uniform(0.5, 2.0, len(frame))
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], m=150, l=100, **options)
    if options.get("construction") != "landmark_eigenvectors":
        arguments["s"] = 50
    memory = cpz.kernel_sbw(frame, **arguments).solve(backend="dual")
    solution = cpz.kernel_sbw(partitioned(frame), **arguments).solve()
    weights = solution.weights.compute()
    assert solution.status == "optimal" and weights.index.equals(memory.weights.index)
    assert np.max(np.abs(weights - memory.weights)) <= 1e-8 * memory.weights.max()
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-8, atol=1e-10)
    pd.testing.assert_series_equal(pd.Series(solution.ess), pd.Series(memory.ess), rtol=1e-8)
    estimate = getattr(cpz.estimate, arguments.get("estimand", "ATT").lower())
    ours, theirs = estimate(partitioned(frame), "A", "Y", solution), estimate(frame, "A", "Y", memory)
    assert ours.std_error == pytest.approx(theirs.std_error, rel=1e-8)     # residualized on what was balanced


def test_the_ate_orders_its_arms_by_first_appearance_over_all_rows(client):
    """Every partition starts with a treated row and the first holds treated rows only: both arms are still
    weighted, in memory's order (treated first), with the same weights and weight summary."""
    study = cpz.datasets.kim2023(1200, seed=18)
    treated, controls = study[study["A"] == 1], study[study["A"] == 0]
    pieces = [treated.iloc[:100], pd.concat([treated.iloc[100:110], controls.iloc[:500]]),
              pd.concat([treated.iloc[110:120], controls.iloc[500:]]), treated.iloc[120:]]
    frame = pd.concat(pieces)
    data = dd.from_delayed([dask.delayed(piece) for piece in pieces], meta=frame.iloc[:0])
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3"], estimand="ATE", delta=0.02)
    memory, solution = cpz.sbw(frame, **arguments).solve(), cpz.sbw(data, **arguments).solve()
    assert list(solution.weight_summary().index) == list(memory.weight_summary().index) == ["treated", "control"]
    assert np.max(np.abs(solution.weights.compute() - memory.weights)) <= 1e-8 * memory.weights.max()


@pytest.mark.parametrize("builder, options", [(cpz.entropy_balance, {}), (cpz.entropy_balance, dict(delta=0.05)),
                                              (cpz.sbw, dict(delta=0.05, moments=2))])
def test_the_ate_on_partitions_equals_the_in_memory_one(client, builder, options):
    """Both arms weighted to the whole sample, as two groups: the weights, the balance table, the ESS and the
    weight summary per arm, and the ATE with each SE, as in memory."""
    frame = cpz.datasets.kim2023(3000, seed=5)
    frame["q"] = np.random.default_rng(5).uniform(0.5, 2.0, len(frame))
    arguments = dict(treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], base_weights="q",
                     estimand="ATE", **options)
    memory = builder(frame, **arguments).solve()
    solution = builder(partitioned(frame), **arguments).solve()
    weights = solution.weights.compute()
    assert solution.status == "optimal" and solution.backend == memory.backend
    assert weights.index.equals(memory.weights.index)
    assert np.max(np.abs(weights - memory.weights)) <= 1e-8 * memory.weights.max()
    assert solution.objective == pytest.approx(memory.objective, rel=1e-8)
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-8, atol=1e-12)
    pd.testing.assert_frame_equal(solution.compute().balance, memory.balance, rtol=1e-8, atol=1e-12)
    pd.testing.assert_series_equal(solution.ess, memory.ess, rtol=1e-8)
    summary = solution.weight_summary().drop(columns="top_1pct_share")
    pd.testing.assert_frame_equal(summary, memory.weight_summary().drop(columns="top_1pct_share"), rtol=1e-8)
    data = partitioned(frame)
    for se, augmented in (("fixed", False), ("balancing", False), ("balancing", True)):
        ours = cpz.estimate.ate(data, "A", "Y", solution, se=se, augmented=augmented)
        theirs = cpz.estimate.ate(frame, "A", "Y", memory, se=se, augmented=augmented)
        for field in ("estimate", "std_error", "ess_treated", "ess_control"):
            assert getattr(ours, field) == pytest.approx(getattr(theirs, field), rel=1e-8), (se, augmented, field)
    if "delta" in options:          # a path over the tolerance sweeps both arms' tolerances
        ours = builder(partitioned(frame), **arguments).path(delta=[0.1, 0.02, 0.005])
        theirs = builder(frame, **arguments).path(delta=[0.1, 0.02, 0.005])
        pd.testing.assert_frame_equal(ours.table.drop(columns="solve_time"), theirs.table.drop(columns="solve_time"),
                                      rtol=1e-7)


@pytest.mark.parametrize("builder, options", [(cpz.sbw, dict(delta=0.02)), (cpz.entropy_balance, {})])
def test_every_row_weighted_to_a_target_on_partitions(client, builder, options):
    """estimand="target" weights every row (no treatment) to the given means, as in memory."""
    frame = cpz.datasets.kim2023(2000, seed=14).drop(columns="A")
    frame["q"] = np.random.default_rng(14).uniform(0.5, 2.0, len(frame))
    target = {"X1": 0.3, "X2": -0.2, "X3": 0.1}
    arguments = dict(covariates=["X1", "X2", "X3"], estimand="target", target=target, base_weights="q", **options)
    memory = builder(frame, **arguments).solve()
    solution = builder(partitioned(frame), **arguments).solve()
    assert solution.status == "optimal" and solution.backend == memory.backend
    np.testing.assert_allclose(solution.weights.compute(), memory.weights, atol=1e-10 * memory.weights.max())
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-8, atol=1e-12)
    with pytest.raises(InputError, match="target has no value for balance columns"):
        builder(partitioned(frame), **{**arguments, "target": {"X1": 0.3}})
    with pytest.raises(InputError, match='target= is used with estimand="target"'):
        builder(partitioned(frame.assign(A=frame["X1"] > 0)), **{**arguments, "estimand": "ATT", "treatment": "A"})


def test_partitioned_sbw_with_a_dask_array_basis(client):
    frame = cpz.datasets.kim2023(3000, seed=12)
    squares = (frame[["X1", "X2"]] ** 2).to_numpy()
    memory = cpz.sbw(frame, treatment="A", covariates=["X1", "X2", "X3"], basis=squares, delta=0.03).solve(
        backend="dual")
    data = partitioned(frame)
    basis = (data[["X1", "X2"]] ** 2).to_dask_array(lengths=True)
    solution = cpz.sbw(data, treatment="A", covariates=["X1", "X2", "X3"], basis=basis, delta=0.03).solve()
    assert solution.status == "optimal"
    np.testing.assert_allclose(solution.weights.compute(), memory.weights, atol=1e-10)
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-9, atol=1e-12)
    with pytest.raises(InputError, match="must be the DataFrame's partitions"):
        cpz.sbw(data, treatment="A", covariates=["X1"], basis=basis.rechunk(1000), delta=0.03)


def test_partitioned_moments_and_interactions_are_the_in_memory_balance_functions(client):
    frame = cpz.datasets.kim2023(3000, seed=13)
    frame["Z"] = 1.0                                     # constant: dropped with a warning, as in memory
    arguments = dict(treatment="A", covariates=["X1", "X4", "X6", "Z"], moments=3, interactions=True)
    with pytest.warns(cpz.CounterpoiseWarning, match=r"dropped constant columns \['Z'"):
        memory = cpz.sbw(frame, delta=0.05, **arguments).solve(backend="dual")
    with pytest.warns(cpz.CounterpoiseWarning, match=r"dropped constant columns \['Z'"):
        solution = cpz.sbw(partitioned(frame), delta=0.05, **arguments).solve()
    assert list(solution.balance.index.get_level_values("term")) == list(memory.balance.index.get_level_values("term"))
    np.testing.assert_allclose(solution.weights.compute(), memory.weights, atol=1e-10)
    pd.testing.assert_frame_equal(solution.balance, memory.balance, rtol=1e-9, atol=1e-12)
    with pytest.warns(cpz.CounterpoiseWarning):
        entropy = cpz.entropy_balance(partitioned(frame), **arguments).solve()
    with pytest.warns(cpz.CounterpoiseWarning):
        expected = cpz.entropy_balance(frame, **arguments).solve()
    np.testing.assert_allclose(entropy.weights.compute(), expected.weights, atol=1e-10)
