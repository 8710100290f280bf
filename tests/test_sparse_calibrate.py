"""Backend "prox" for sparse calibration: exact against cvxpy and its own KKT conditions, certified by the dual
bound; the notebook's setup (N = 5,000, seeds 42 and 123); lam paths and target_records."""

import numpy as np
import pandas as pd
import pytest

import counterpoise as cpz
from counterpoise.errors import InputError


def notebook_data():
    """The sparse-calibrator notebook's sample and train targets (age-group margins plus the total of `weight`)."""
    df = cpz.datasets.cps_like()
    return df, df.attrs["margins"], df.attrs["totals"]


@pytest.fixture(scope="module")
def notebook():
    return notebook_data()


def kkt_violation(prob, w):
    """Largest violation of the KKT conditions of the lasso in r = w / w0 (relative to lam / n)."""
    loss = prob.terms[0]
    w0 = loss.w0
    M = loss.B * w0[:, None] / loss.scale
    y = M.T @ (w / w0) - loss.target.value / loss.scale
    rho = loss.lam.value / len(w0)
    g = (rho + M @ y) / rho
    return max(float(np.max(-g[w == 0], initial=0.0)), float(np.max(np.abs(g[w > 0]), initial=0.0)))


@pytest.mark.parametrize("base_weights", [None, "weight"])
@pytest.mark.parametrize("fraction", [1e-4, 1e-2, 0.3])
def test_exact_against_cvxpy_and_kkt(notebook, base_weights, fraction):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, base_weights=base_weights, margins=margins, totals=totals)
    prob.set(lam=fraction * prob.backend("prox").lambda_max())
    sol = prob.solve(backend="prox")
    ref = prob.solve(backend="cvxpy", raise_on_failure=False)
    assert sol.info["duality_gap"] <= 1e-6 and sol.info["converged"]
    assert sol.info["objective"] == pytest.approx(sol.objective, rel=1e-12)   # the penalty the problem states
    assert sol.info["dual_bound"] <= sol.objective * (1 + 1e-12)
    # never worse than CLARABEL, and equal where CLARABEL is accurate (it is not at lam near 0 with w0 = weight)
    assert sol.objective <= ref.objective * (1 + 1e-9)
    if base_weights is None:
        assert sol.objective == pytest.approx(ref.objective, rel=1e-9)
    assert kkt_violation(prob, sol.weights.to_numpy()) < 1e-5
    assert np.count_nonzero(sol.weights) <= 2 * len(prob.terms[0].columns)     # a vertex: a few records


@pytest.mark.parametrize("cap", [1.5, 3.0, 50.0])
def test_cap_is_respected_and_exact(notebook, cap):
    """With many records at the cap (1.5: about 3,300 of 5,000) the LP crossover finds the vertex in one step."""
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals, cap=cap)
    prob.set(lam=1e-3 * prob.backend("prox").lambda_max())
    sol = prob.solve(backend="prox")
    ref = prob.solve(backend="cvxpy")
    assert sol.weights.max() <= cap and sol.objective == pytest.approx(ref.objective, rel=1e-9)
    assert sol.info["duality_gap"] <= 1e-9
    between = np.count_nonzero((sol.weights > 0) & (sol.weights < cap))
    assert between <= len(prob.terms[0].columns) + 1          # a vertex: the rest sit at 0 or at the cap


def test_every_point_of_a_path_is_certified(notebook):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals)
    top = prob.backend("prox").lambda_max()
    path = prob.path(lam=np.geomspace(0.5 * top, 1e-5 * top, 15), backend="prox")
    assert (path.table["status"] == "optimal").all()
    gaps = [s.info["duality_gap"] for s in path.solutions]
    assert max(gaps) <= 1e-6


def test_a_cap_set_after_the_build_is_used(notebook):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals, cap=50.0)
    prob.set(lam=1e-3 * prob.backend("prox").lambda_max())
    prob.solve(backend="prox")
    prob.set(upper=20.0)
    sol = prob.solve(backend="prox")
    assert sol.weights.max() <= 20.0 and sol.status == "optimal"
    assert sol.objective == pytest.approx(prob.solve(backend="cvxpy").objective, rel=1e-8)


def test_lam_at_or_above_lambda_max_is_a_clear_error(notebook):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals)
    prob.set(lam=prob.backend("prox").lambda_max())
    with pytest.raises(InputError, match="every weight to 0"):
        prob.solve(backend="prox")


def test_target_records(notebook):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals, target_records=4)
    assert np.count_nonzero(prob.solve(backend="prox").weights) == 4
    with pytest.warns(cpz.CounterpoiseWarning, match="no lam found keeps exactly 300"):
        cpz.sparse_calibrate(df, margins=margins, totals=totals, target_records=300)


def test_results_are_identical_on_every_run(notebook):
    df, margins, totals = notebook
    runs = [cpz.sparse_calibrate(df, margins=margins, totals=totals, lam=0.01).solve(backend="prox").weights
            for _ in range(2)]
    pd.testing.assert_series_equal(runs[0], runs[1])


# ---- the elastic net, exact targets, refit, validate -----------------------------------------------------------


def test_elastic_net_is_exact_and_its_record_count_moves_smoothly(notebook):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals, ridge=1.0)
    top = prob.backend("prox").lambda_max()
    records = []
    for lam in np.geomspace(0.6 * top, 0.2 * top, 5):
        prob.set(lam=lam)
        sol = prob.solve(backend="prox")
        ref = prob.solve(backend="cvxpy")
        assert sol.info["duality_gap"] <= 1e-9 and sol.solver == "fista+newton"
        assert sol.objective == pytest.approx(ref.objective, rel=1e-8)
        records.append(sol.info["records"])
    assert records == sorted(records) and 0 < records[0] < records[-1]          # more records as lam falls


def test_exact_targets_hold_while_tau_drops_records(notebook):
    """Base weights that vary within the margins' cells (with uniform ones tau is absorbed: next test)."""
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, base_weights="weight", margins=margins, totals=totals, exact=True, tau=0.0)
    w0 = df["weight"].to_numpy()
    X = np.column_stack([(df["age_group"] == k).to_numpy(float) for k in margins["age_group"]] + [w0])
    counts = []
    for tau in (0.0, 0.5, 0.9, 0.99):
        prob.set(tau=tau)
        sol = prob.solve(backend="dual")
        assert sol.validate()["max_relative_error"] < 1e-9
        ref = prob.solve(backend="cvxpy")
        assert sol.objective == pytest.approx(ref.objective, rel=1e-6, abs=1e-12)
        w = sol.weights.to_numpy()
        kept = w > 0
        # the closed form: on the kept records w / w0 - 1 + tau mean(w0) / w0 = x'eta for one eta, and <= it off them
        lhs = w / w0 - 1 + tau * w0.mean() / w0
        eta = np.linalg.lstsq(X[kept], lhs[kept], rcond=None)[0]
        np.testing.assert_allclose(X[kept] @ eta, lhs[kept], atol=1e-9)
        assert np.all(X[~kept] @ eta <= lhs[~kept] + 1e-9)
        counts.append(int(kept.sum()))
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]


def test_exact_targets_with_uniform_base_weights_and_a_fixed_total_ignore_tau(notebook):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals, exact=True, tau=0.0)
    first = prob.solve(backend="dual").weights
    prob.set(tau=5.0)
    np.testing.assert_allclose(prob.solve(backend="dual").weights, first, rtol=1e-9)


def test_target_records_tunes_tau_in_exact_mode(notebook):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, base_weights="weight", margins=margins, totals=totals, exact=True,
                                target_records=1000)
    assert abs(int(np.count_nonzero(prob.solve(backend="dual").weights > 0)) - 1000) <= 5


def test_refit_recalibrates_exactly_on_the_support(notebook):
    df, margins, totals = notebook
    sparse = cpz.sparse_calibrate(df, margins=margins, totals=totals, ridge=1.0, lam=0.3).solve(backend="prox")
    support = sparse.weights > 0
    refitted = cpz.refit(sparse, distance="raking")
    assert list(refitted.weights.index) == list(df.index[support])
    assert refitted.validate()["max_relative_error"] < 1e-9
    direct = cpz.calibrate(df[support], margins=margins, totals=totals, distance="raking").solve(backend="cvxpy")
    np.testing.assert_allclose(refitted.weights, direct.weights, rtol=1e-5)
    with pytest.raises(InputError, match="refit takes"):
        cpz.refit(cpz.calibrate(df, margins=margins, totals=totals).solve())


def test_validate_reports_targets_and_weight_diagnostics(notebook):
    df, margins, totals = notebook
    sol = cpz.sparse_calibrate(df, margins=margins, totals=totals, lam=0.01).solve(backend="prox")
    report = sol.validate()
    assert list(report["targets"].columns) == ["actual", "target", "relative_error", "error"]
    assert report["targets"].loc["weight", "target"] == totals["weight"]
    assert report["records"] == sol.info["records"] == int(np.count_nonzero(sol.weights))
    summary = sol.weight_summary().iloc[0]
    assert report["ess"] == pytest.approx(summary["ess"]) and report["top_1pct_share"] == summary["top_1pct_share"]
    assert report["max_weight_ratio"] == pytest.approx(sol.weights.max())            # w0 = 1
    with pytest.raises(AttributeError, match="totals"):
        cpz.sbw(cpz.datasets.kim2023(300, seed=1), treatment="A", covariates=["X1"]).solve().validate()


def test_sparse_bad_input_is_named(notebook):
    df, margins, totals = notebook
    with pytest.raises(InputError, match="tol applies to exact=True"):
        cpz.sparse_calibrate(df, margins=margins, totals=totals, tol=0.01)
    with pytest.raises(InputError, match="lam must be"):
        cpz.sparse_calibrate(df, margins=margins, totals=totals, lam=-1.0)
    with pytest.raises(InputError, match="floor must be"):
        cpz.sparse_calibrate(df, margins=margins, totals=totals, floor=0.0)
    with pytest.raises(cpz.InfeasibleError, match="out of reach"):
        cpz.sparse_calibrate(df, margins=margins, totals={"weight": -5.0}, exact=True)
    with pytest.raises(InputError, match="no population total"):
        cpz.sparse_calibrate(df, margins={"age_group": {"0-17": 900}}, totals=totals)


def test_zero_and_negative_targets_use_the_floor_scale(notebook):
    """s_j = max(|T_j|, floor): a zero or negative target is scaled, never divided by T + 1 (l0-python's rule)."""
    df, margins, totals = notebook
    rng = np.random.default_rng(5)
    signed = rng.normal(size=len(df))
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals, floor=10.0,
                                constraints={"signed": (signed, -40.0), "zero": (signed - signed.mean(), 0.0)})
    loss = prob.terms[0]
    np.testing.assert_allclose(loss.scale[-2:], [40.0, 10.0])
    prob.set(lam=1e-3 * prob.backend("prox").lambda_max())
    sol = prob.solve(backend="prox")
    assert sol.objective == pytest.approx(prob.solve(backend="cvxpy").objective, rel=1e-8)
    report = sol.validate()["targets"]
    assert report.loc["zero", "relative_error"] == pytest.approx(abs(report.loc["zero", "actual"]))


@pytest.mark.parametrize("backend", ["cvxpy", "auto", "prox"])
def test_every_backend_refuses_lam_at_lambda_max(notebook, backend):
    df, margins, totals = notebook
    prob = cpz.sparse_calibrate(df, margins=margins, totals=totals)
    prob.set(lam=prob.backend("prox").lambda_max())
    with pytest.raises(InputError, match=r"sets every weight to 0 \(lam_max = "):
        prob.solve(backend=backend)


def test_totals_that_make_zero_weights_optimal_are_named_as_the_problem(notebook):
    df, margins, _ = notebook
    prob = cpz.sparse_calibrate(df, totals={"weight": -1e6}, lam=1e-3)
    with pytest.raises(InputError, match=r"optimal for every lam with these totals .*check the totals, not lam"):
        prob.solve(backend="cvxpy")
