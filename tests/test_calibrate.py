"""Calibration against GREG's closed form, iterative proportional fitting, and survey's calibration functions."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

import counterpoise as cpz

POP = cpz.datasets.API_POPULATION
MARGINS = {"stype": POP["stype"], "sch.wide": POP["sch.wide"]}


@pytest.fixture(scope="module")
def api():
    return cpz.datasets.api("apistrat")


def design_matrix(data):
    cols = [(data["stype"] == k).to_numpy(float) for k in POP["stype"]]
    cols.append((data["sch.wide"] == "Yes").to_numpy(float))
    cols.append(data["api99"].to_numpy(float))
    return np.column_stack(cols), np.array([*POP["stype"].values(), POP["sch.wide"]["Yes"], POP["api99"]], float)


def test_linear_calibration_equals_greg_closed_form(api):
    sol = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": POP["api99"]}).solve()
    X, T = design_matrix(api)
    d = api["pw"].to_numpy()
    lam = np.linalg.solve(X.T @ (d[:, None] * X), T - X.T @ d)
    np.testing.assert_allclose(sol.weights.to_numpy(), d * (1 + X @ lam), rtol=1e-7)
    # the redundant sch.wide margin (both margins sum to N) was dropped, not violated
    assert sol.balance["rel_error_after"].abs().max() < 1e-9


def ipf(data, d, margins, sweeps=1000):
    w = d.copy()
    for _ in range(sweeps):
        for var, totals in margins.items():
            for level, total in totals.items():
                rows = (data[var] == level).to_numpy()
                w[rows] *= total / w[rows].sum()
    return w


def test_raking_equals_iterative_proportional_fitting(api):
    sol = cpz.calibrate(api, base_weights="pw", margins=MARGINS, distance="raking").solve()
    expected = ipf(api, api["pw"].to_numpy(), MARGINS)
    # CLARABEL on exponential cones: the objective to ~1e-7, weights to ~1e-5 (see cvxpy_backend.TIGHT_OPTIONS)
    np.testing.assert_allclose(sol.weights.to_numpy(), expected, rtol=2e-5)
    assert sol.objective == pytest.approx(np.sum(expected * np.log(expected / api["pw"]) - expected + api["pw"]), rel=1e-6)


def survey_root(X, T, d, F):
    """survey::calibrate's fixed point: w = d F(X lam) with X'w = T, solved independently by scipy."""
    result = scipy.optimize.root(lambda lam: X.T @ (d * F(X @ lam)) / T - 1, np.zeros(X.shape[1]), tol=1e-14)
    assert np.max(np.abs(result.fun)) < 1e-12
    return d * F(X @ result.x)


def test_raking_and_logit_match_survey_calibration_functions(api):
    X, T = design_matrix(api)
    d = api["pw"].to_numpy()
    scale = np.r_[np.ones(4), 1e-3]          # keep api99 on a scale scipy's root finder likes
    Xs, Ts = X * scale, T * scale
    raking = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": POP["api99"]}, distance="raking")
    np.testing.assert_allclose(raking.solve().weights, survey_root(Xs, Ts, d, np.exp), rtol=2e-5)
    L, U = 0.8, 1.3
    A = (U - L) / ((U - 1) * (1 - L))

    def logit(u):
        e = np.exp(A * u)
        return (L * (U - 1) + U * (1 - L) * e) / (U - 1 + (1 - L) * e)

    sol = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": POP["api99"]}, distance="logit",
                        bounds=(L, U)).solve()
    np.testing.assert_allclose(sol.weights, survey_root(Xs, Ts, d, logit), rtol=2e-5)
    g = sol.weights / api["pw"]
    assert g.min() > L and g.max() < U
    assert "ratio_bounds.lower" not in sol.problem.parameters     # logit's bounds are its domain, not a Parameter


def test_bounded_linear_is_truncated_greg(api):
    L, U = 0.97, 1.03
    sol = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": POP["api99"]}, bounds=(L, U)).solve()
    d = api["pw"].to_numpy()
    g = sol.weights.to_numpy() / d
    assert g.min() >= L - 1e-9 and g.max() <= U + 1e-9
    X, _ = design_matrix(api)
    inside = (g > L + 1e-3) & (g < U - 1e-3)
    lam, *_ = np.linalg.lstsq(X[inside], g[inside] - 1, rcond=None)
    u = 1 + X @ lam
    # g = clamp(1 + x'lam, L, U); interior-point weights next to a bound are exact to ~sqrt(gap)
    np.testing.assert_allclose(g, np.clip(u, L, U), atol=2e-5)
    assert np.any(g <= L + 1e-6) and np.any(g >= U - 1e-6)


def test_duplicated_rows_equal_doubled_base_weights(api):
    dup = api.iloc[:10]
    duplicated = pd.concat([api, dup], ignore_index=True)
    doubled = api.copy()
    doubled.loc[doubled.index[:10], "pw"] *= 2
    for distance in ("linear", "raking"):
        a = cpz.calibrate(duplicated, base_weights="pw", margins=MARGINS, distance=distance).solve().weights.to_numpy()
        b = cpz.calibrate(doubled, base_weights="pw", margins=MARGINS, distance=distance).solve().weights.to_numpy()
        np.testing.assert_allclose(a[:10] + a[-10:], b[:10], rtol=2e-5)
        np.testing.assert_allclose(a[10:len(api)], b[10:], rtol=2e-5)


def test_relative_tolerance_and_weight_bounds(api):
    sol = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": POP["api99"]}, tol=0.01).solve()
    assert sol.balance["rel_error_after"].abs().max() <= 0.01 + 1e-8
    capped = cpz.calibrate(api, base_weights="pw", margins=MARGINS, weight_bounds=(10, 60)).solve()
    assert capped.weights.min() >= 10 - 1e-7 and capped.weights.max() <= 60 + 1e-7
    assert capped.balance["rel_error_after"].abs().max() < 1e-8


def test_margin_problems_are_named(api):
    with pytest.raises(cpz.InputError, match=r"levels \['M'\] occur in the data but have no population total"):
        cpz.calibrate(api, base_weights="pw", margins={"stype": {"E": 4421, "H": 755}})
    with pytest.raises(cpz.InputError, match="level 'K' has population total 10 but no units"):
        cpz.calibrate(api, base_weights="pw", margins={"stype": {**POP["stype"], "K": 10}})
    zero_level = cpz.calibrate(api, base_weights="pw", margins={"stype": {**POP["stype"], "K": 0}}).solve()
    assert zero_level.status == "optimal"
    with pytest.warns(cpz.CounterpoiseWarning, match="level 'H' has 50 units but a population total of 0"):
        cpz.calibrate(api, base_weights="pw", margins={"stype": {**POP["stype"], "H": 0}})
    with pytest.raises(cpz.InfeasibleError, match="contradicts the other targets"):
        cpz.calibrate(api, base_weights="pw", margins={"stype": POP["stype"], "sch.wide": {"No": 1000, "Yes": 5000}})
    with pytest.raises(cpz.InputError, match='needs finite ratio bounds'):
        cpz.calibrate(api, base_weights="pw", margins=MARGINS, distance="logit")
    with pytest.raises(cpz.InputError, match="negative"):
        cpz.calibrate(api.assign(pw=-api.pw), base_weights="pw", margins=MARGINS)


def test_sparse_calibration_satisfies_lasso_kkt(api):
    lam = 2.0     # large enough that the solution is sparse (a handful of records, as the lasso's vertex solutions are)
    prob = cpz.sparse_calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": POP["api99"]}, lam=lam)
    sol = prob.solve()
    loss = prob.terms[0]
    w = sol.weights.to_numpy()
    w0 = api["pw"].to_numpy()
    scaled = loss.B / loss.scale                                # (x_j / s_j) per record
    residual = w @ scaled - loss.target.value / loss.scale
    grad = scaled @ residual + lam / (len(w) * w0)
    scale = np.max(lam / (len(w) * w0))
    positive = w > 1e-6 * w0
    assert 0 < positive.sum() < 20
    assert np.max(np.abs(grad[positive])) < 1e-5 * scale      # stationarity on the support
    assert np.min(grad[~positive]) > -1e-5 * scale            # and the right sign off it
    assert sol.objective == pytest.approx(0.5 * residual @ residual + lam * np.mean(w / w0), rel=1e-12)
    path = prob.path(lam=[1e-4, 1e-2, 1e-1])
    kept = [int(np.sum(s.weights.to_numpy() > 1e-6 * w0)) for s in path]
    assert kept[0] >= kept[-1]
    capped = cpz.sparse_calibrate(api, base_weights="pw", margins=MARGINS, lam=1e-3, cap=1.5).solve()
    assert (capped.weights / api["pw"]).max() <= 1.5 + 1e-8


def test_targets_are_parameters_swept_without_recompiling(api):
    prob = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": POP["api99"]})
    first = prob.solve(backend="cvxpy")
    assert prob.backend("cvxpy").compilations == 1
    names = prob.terms[1].columns
    shifted = np.array([POP["api99"] * 1.02 if n == "api99" else first.balance.loc[("sample", n), "target"] for n in names])
    path = prob.path(backend="cvxpy", target=[prob.get("totals.target"), shifted])
    assert prob.backend("cvxpy").compilations == 1
    achieved = path[1].weights @ api["api99"]
    assert achieved == pytest.approx(POP["api99"] * 1.02, rel=1e-9)
    summary = path[1].weight_summary()
    assert list(summary.index) == ["sample"] and summary.loc["sample", "n"] == len(api)
    assert summary.loc["sample", "ess"] == pytest.approx(path[1].ess)


def test_a_total_that_holds_every_unit_at_zero_is_named(api):
    """Raking keeps w >= 0: api99 = 0 on a positive column needs every weight at 0, which the school-type margins
    cannot allow; the error names api99, not the margins."""
    with pytest.raises(cpz.InfeasibleError, match=r"target api99 = 0 can only be met with every unit where api99 > 0 "
                                                  r"at its lowest weight \(200 units\), and then target stype=E"):
        cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals={"api99": 0.0}, distance="raking")
    with pytest.warns(cpz.CounterpoiseWarning, match="level 'H' has 50 units but a population total of 0"):
        zero_level = cpz.calibrate(api, base_weights="pw", margins={"stype": {**POP["stype"], "H": 0}},
                                   distance="raking")
    assert zero_level.solve().status == "optimal"          # a zero level holds only its own units: still feasible


def test_greg_weights_below_zero_are_said(api):
    """A total of 0 on a positive column: GREG meets it with negative weights (survey allows them), and says so
    twice: at the build, naming the total no nonnegative weights reach, and after the solve, counting them."""
    with pytest.warns(cpz.CounterpoiseWarning, match=r"no nonnegative weights meet the total of api99"):
        prob = cpz.calibrate(api, base_weights="pw", margins={"stype": POP["stype"]}, totals={"api99": 0.0})
    with pytest.warns(cpz.CounterpoiseWarning, match=r"86 of 200 weights are negative \(smallest -388\.88"):
        sol = prob.solve()
    assert sol.status == "optimal" and int((sol.weights < 0).sum()) == 86
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # bounded: positive weights, nothing to say
        cpz.calibrate(api, base_weights="pw", margins=MARGINS, bounds=(0.5, 2.0)).solve()


def test_a_path_says_its_negative_weights_once(api):
    with pytest.warns(cpz.CounterpoiseWarning, match="no nonnegative weights"):
        prob = cpz.calibrate(api, base_weights="pw", margins={"stype": POP["stype"]}, totals={"api99": 0.0})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prob.path(target=[prob.get("totals.target")] * 3)
    said = [str(w.message) for w in caught if "negative" in str(w.message)]
    assert len(said) == 1 and said[0].endswith("(at 3 of 3 path points; the first shown)")
