"""Backend "calibration" (Deville-Sarndal Newton on the dual) against cvxpy, IPF and survey's fixed point; its
failure reporting; `rake` and `trim_weights`."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

import counterpoise as cpz
from counterpoise.errors import CalibrationError, InfeasibleError, InputError
from counterpoise.terms import Balance, Entropy
from test_calibrate import MARGINS, POP, ipf

TOTALS = {"api99": POP["api99"]}


@pytest.fixture(scope="module")
def api():
    return cpz.datasets.api("apistrat")


@pytest.mark.parametrize("distance, bounds, weight_bounds", [
    ("linear", None, None), ("raking", None, None), ("logit", (0.5, 2.0), None), ("linear", (0.97, 1.03), None),
    ("raking", (0.97, 1.03), None), ("logit", (0.96, 1.04), None), ("raking", None, (14.8, 45.5)),
])
def test_matches_cvxpy(api, distance, bounds, weight_bounds):
    prob = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals=TOTALS, distance=distance, bounds=bounds,
                         weight_bounds=weight_bounds)
    check = prob.check("calibration")
    assert check.solution.status == "optimal"
    assert check.objective_gap < 1e-7
    assert check.weight_gap < 2e-5                      # CLARABEL's weights are exact to ~sqrt(its gap)
    assert check.solution.info["max_relative_misfit"] < 1e-9
    w, d = check.solution.weights, api["pw"]
    if bounds is not None and distance != "logit":      # unbounded, g spans 0.957-1.039: these bounds bind
        assert min((w / d).min() - bounds[0], bounds[1] - (w / d).max()) < 1e-9
    if weight_bounds is not None:
        assert min(w.min() - weight_bounds[0], weight_bounds[1] - w.max()) < 1e-9


def test_raking_equals_ipf_to_machine_precision(api):
    sol = cpz.calibrate(api, base_weights="pw", margins=MARGINS, distance="raking").solve(backend="calibration")
    np.testing.assert_allclose(sol.weights, ipf(api, api["pw"].to_numpy(), MARGINS), rtol=1e-9)
    assert sol.iterations <= 10


def test_collinear_targets_are_handled_by_the_generalized_inverse(api):
    """Two copies of a margin's columns (which calibrate() itself would drop) leave the Hessian singular."""
    X = np.column_stack([(api["stype"] == k).to_numpy(float) for k in POP["stype"]])
    T = np.array(list(POP["stype"].values()), float)
    d = api["pw"].to_numpy()
    prob = cpz.WeightingProblem(api.index, [Entropy(d), Balance(np.hstack([X, X]), np.concatenate([T, T]))])
    sol = prob.solve(backend="calibration")
    assert sol.status == "optimal"
    expected = d * (X @ (T / (X.T @ d)))              # one margin: every level scaled by its own ratio
    np.testing.assert_allclose(sol.weights, expected, rtol=1e-12)


def test_no_convergence_names_the_worst_targets(api):
    prob = cpz.calibrate(api, base_weights="pw", margins=MARGINS, totals=TOTALS, distance="raking")
    with pytest.raises(CalibrationError, match=r"did not converge\. Worst targets") as caught:
        prob.solve(backend="calibration", max_iter=1)
    assert caught.value.solution.info["worst_targets"][0][3] > 1e-9
    forced = prob.solve(backend="calibration", max_iter=1, raise_on_failure=False)   # survey's force=TRUE
    assert forced.status == "inaccurate" and np.all(np.isfinite(forced.weights))


def test_jointly_unreachable_totals_fail_loudly(api):
    """Each total is reachable on its own, but not together: Newton cannot converge and says which targets."""
    d, api99 = api["pw"].to_numpy(), api["api99"].to_numpy()
    # the stratum totals hold at g = 1; within [0.9, 1.1] the api99 total can move about 1.5%, not 5%
    prob = cpz.calibrate(api, base_weights="pw", margins={"stype": POP["stype"]},
                         totals={"api99": 1.05 * d @ api99}, distance="raking", bounds=(0.9, 1.1))
    with pytest.raises(CalibrationError, match="api99"):
        prob.solve(backend="calibration")


def test_bounds_that_cannot_reach_a_total_are_caught_before_solving(api):
    d = api["pw"].to_numpy()
    reachable = 1.1 * d[(api["stype"] == "H").to_numpy()].sum()
    margins = {"stype": {**POP["stype"], "H": 1.2 * reachable / 1.1}}
    with pytest.raises(InfeasibleError, match="stype=H .* out of reach"):
        cpz.calibrate(api, base_weights="pw", margins=margins, distance="raking", bounds=(0.9, 1.1))
    with pytest.raises(InfeasibleError, match="out of reach"):
        cpz.calibrate(api, base_weights="pw", totals={"api99": -1.0}, distance="raking")


def test_auto_picks_the_calibration_backend_for_raking(api):
    sol = cpz.calibrate(api, base_weights="pw", margins=MARGINS, distance="raking").solve(backend="auto")
    assert sol.backend == "calibration" and sol.status == "optimal"


def test_rake_takes_survey_style_margins_and_trims(api):
    margins = [pd.DataFrame({"stype": list(POP["stype"]), "Freq": list(POP["stype"].values())}),
               {"sch.wide": POP["sch.wide"]}]
    sol = cpz.rake(api, margins, base_weights="pw")
    np.testing.assert_allclose(sol.weights, ipf(api, api["pw"].to_numpy(), MARGINS), rtol=1e-9)
    g = sol.weights / api["pw"]
    cap = 1 + (g.max() - 1) / 2
    trimmed = cpz.rake(api, margins, base_weights="pw", trim=(0.0, cap))
    assert (trimmed.weights / api["pw"]).max() <= cap * (1 + 1e-12)
    assert trimmed.weights.sum() == pytest.approx(sol.weights.sum(), rel=1e-12)
    assert trimmed.status == "inaccurate" and "totals are now off by up to" in trimmed.message
    assert trimmed.info["max_relative_misfit"] > 1e-6
    with pytest.raises(InputError, match="Freq"):
        cpz.rake(api, [pd.DataFrame({"stype": ["E"], "count": [1]})], base_weights="pw")


def test_trim_weights_caps_and_redistributes():
    rng = np.random.default_rng(0)
    d = rng.uniform(1, 2, 500)
    w = d * rng.lognormal(0, 0.6, 500)
    trimmed, capped = cpz.trim_weights(w, d, 0.5, 2.0)
    g = trimmed / d
    assert g.min() >= 0.5 - 1e-12 and g.max() <= 2.0 + 1e-12 and capped > 0
    assert trimmed.sum() == pytest.approx(w.sum(), rel=1e-12)
    inside = (g > 0.5) & (g < 2.0)
    ratio = trimmed[inside] / w[inside]
    np.testing.assert_allclose(ratio, ratio[0])           # the untrimmed units share the excess proportionally
    with pytest.raises(InfeasibleError, match="cannot trim"):
        cpz.trim_weights(w, d, 0.1, 0.2)


@pytest.fixture(scope="module")
def survey():
    """5 margin variables x 10 levels and a numeric column: the calibration matrix is sparse (CSR)."""
    frame = cpz.datasets.survey_margins(4000, seed=5)
    frame["x"] = np.random.default_rng(5).gamma(2.0, 3.0, len(frame))
    return frame


def _system(frame, sparse):
    from counterpoise.families.totals import calibration_system
    totals = {"x": 1.05 * float(frame["x"] @ frame["d"])}
    return calibration_system(frame, frame.attrs["margins"], totals, None, sparse=sparse)


def test_margins_are_built_sparse_with_one_entry_per_variable(survey):
    X, names, T, N = _system(survey, sparse=True)
    dense, dense_names, dense_T, _ = _system(survey, sparse=False)
    assert scipy.sparse.issparse(X) and X.nnz == len(survey) * 6 and names == dense_names
    np.testing.assert_array_equal(X.toarray(), dense)
    np.testing.assert_array_equal(T, dense_T)
    hand = np.column_stack([(survey[v] == level).to_numpy(float) for v, levels in survey.attrs["margins"].items()
                            for level in levels] + [survey["x"].to_numpy()])
    np.testing.assert_array_equal(dense, hand)


@pytest.mark.parametrize("distance, bounds", [("raking", None), ("linear", (0.5, 1.6)), ("logit", (0.4, 1.8))])
def test_sparse_margins_match_cvxpy_and_the_dense_build(survey, distance, bounds):
    from counterpoise.families.calibration import calibration_problem
    solutions = []
    for sparse in (True, False):
        X, names, T, N = _system(survey, sparse)
        problem = calibration_problem(survey.index, X, names, T, N, survey["d"].to_numpy(), distance, bounds)
        solutions.append(problem.solve(backend="calibration"))
        if sparse and distance == "linear":       # (CLARABEL is "inaccurate" on these raking and logit problems)
            check = problem.check("calibration")
            assert check.objective_gap < 1e-7 and check.weight_gap < 1e-4
        if sparse and distance == "raking":               # KKT: X'w = T and log(w / d) in the span of X
            w, dense = solutions[-1].weights.to_numpy(), X.toarray()
            np.testing.assert_allclose(dense.T @ w, T, rtol=1e-9)
            log_ratio = np.log(w / survey["d"].to_numpy())
            fitted = dense @ np.linalg.lstsq(dense, log_ratio, rcond=None)[0]
            assert np.abs(fitted - log_ratio).max() < 1e-9
    sparse_solution, dense_solution = solutions
    np.testing.assert_allclose(sparse_solution.weights, dense_solution.weights, rtol=1e-10)
    pd.testing.assert_frame_equal(sparse_solution.balance, dense_solution.balance, rtol=1e-9)


def test_sparse_gram_is_the_weighted_cross_product():
    from counterpoise.backends.rows import Rows
    rng = np.random.default_rng(0)
    n, k = 500, 12
    columns = np.column_stack([rng.integers(0, 4, n), 4 + rng.integers(0, 4, n), np.full(n, 8), np.full(n, 11)])
    values = np.column_stack([np.ones((n, 2)), rng.normal(size=(n, 2))])
    X = scipy.sparse.csr_matrix((values.ravel(), columns.ravel(), np.arange(0, 4 * n + 1, 4)), shape=(n, k))
    h = rng.random(n)
    dense = X.toarray()
    np.testing.assert_allclose(Rows(X).gram(h), dense.T @ (dense * h[:, None]), rtol=1e-12, atol=1e-12)
    uneven = scipy.sparse.csr_matrix(dense * (rng.random((n, k)) < 0.5))   # rows with unequal entry counts
    np.testing.assert_allclose(Rows(uneven).gram(h), uneven.toarray().T @ (uneven.toarray() * h[:, None]),
                               rtol=1e-12, atol=1e-12)
    margins = scipy.sparse.csr_matrix((np.ones(2 * n), columns[:, :2].ravel(), np.arange(0, 2 * n + 1, 2)),
                                      shape=(n, k))            # 16 distinct rows: summed per cell first
    np.testing.assert_allclose(Rows(margins).gram(h), margins.toarray().T @ (margins.toarray() * h[:, None]),
                               rtol=1e-12, atol=1e-12)
    chosen = np.array([0, 2, 5, 8, 11])
    rows = Rows(X, column_scale=np.arange(1.0, 6.0), constant=2.0, columns=chosen)
    M = np.column_stack([dense[:, chosen] / np.arange(1.0, 6.0), np.full(n, 2.0)])
    np.testing.assert_allclose(rows.gram(h), M.T @ (M * h[:, None]), rtol=1e-12, atol=1e-12)
