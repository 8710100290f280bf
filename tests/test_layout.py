"""The redesign's promises, observed: one registry, one copy of the data, the row-block sums, the distances' own
calibration functions, declared options, recorded calls."""

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

import counterpoise as cpz
from conftest import COVARIATES
from counterpoise import backends
from counterpoise.backends.rows import Rows
from counterpoise.errors import InputError
from counterpoise.terms import ChiSquare, Entropy, Logit

ROOT = Path(__file__).resolve().parents[1]


def test_readme_backend_table_is_the_registry():
    default = inspect.signature(cpz.WeightingProblem.solve).parameters["backend"].default
    assert backends.markdown_table(default) in (ROOT / "README.md").read_text()
    assert backends.AUTO_ORDER == ("dual", "calibration", "prox", "cvxpy")
    assert set(backends.BACKENDS) == {"cvxpy", "dual", "osqp", "calibration", "prox"}


def test_one_copy_of_the_balance_data(kim):
    """Kernel SBW (ATT): the kernel and means terms are column views of one matrix [D, X], built with the
    controls' rows first, so the control arm's matrix is a view of it (centred in place), which the balance table
    and the dual backend read without copying."""
    prob = cpz.kernel_sbw(kim, treatment="A", covariates=COVARIATES, m=40, l=20, s=10, delta=0.05)
    kernel, means = (next(t for t in prob.terms if t.name == name) for name in ("kernel", "means"))
    assert kernel.matrix.base is means.matrix.base and kernel.matrix.base is not None
    assert np.shares_memory(prob.design.X, means.matrix)
    rows = prob.backend("dual").rows[0]
    assert rows.B.base is kernel.matrix.base and rows.B.shape == (int((kim.A == 0).sum()), 16)
    assert np.shares_memory(rows.B, kernel.matrix) and np.shares_memory(rows.B, means.matrix)
    controls = kim.loc[kim.A == 0, COVARIATES].to_numpy()
    np.testing.assert_allclose(prob.design.X + prob.design.offset, controls, atol=1e-12)   # centred at the target
    np.testing.assert_allclose(means.B, controls, atol=1e-12)
    sol = prob.solve(backend="dual")
    assert prob.backend("dual").rows[0] is rows                   # built once per problem, not per solve
    assert sol.status == "optimal"


def test_calibration_terms_share_the_calibration_matrix():
    """Two margins both sum to N: one level is redundant, and the totals term selects the other columns of the
    design's own matrix instead of copying them."""
    api = cpz.datasets.api("apistrat")
    pop = cpz.datasets.API_POPULATION
    prob = cpz.calibrate(api, base_weights="pw", margins={"stype": pop["stype"], "sch.wide": pop["sch.wide"]},
                         totals={"api99": pop["api99"]}, distance="raking")
    totals = prob.terms[1]
    assert totals.matrix is prob.design.X
    assert len(totals.column_index) == prob.design.X.shape[1] - 1
    assert prob.solve(backend="calibration").validate()["max_relative_error"] < 1e-9


def _dense(B, scale, factor, constant, columns):
    M = (B if columns is None else B[:, columns]) / scale
    if constant is not None:
        M = np.hstack([M, np.full((len(B), 1), constant)])
    return M if factor is None else M * factor[:, None]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("constant", [None, 0.25])
@pytest.mark.parametrize("factor", [False, True])
@pytest.mark.parametrize("columns", [None, [4, 0, 2, 1]])
def test_rows_sums_match_the_dense_formulas(sparse, constant, factor, columns):
    rng = np.random.default_rng(3)
    n = 70_000 + 17            # two Gram chunks
    B = rng.standard_normal((n, 5)) * (rng.random((n, 5)) < 0.3)
    scale = np.array([1.0, 2.0, 0.5, 4.0])
    B = B if columns is not None else B[:, :4]
    a = rng.uniform(0.5, 2.0, n) if factor else None
    rows = Rows(scipy.sparse.csr_matrix(B) if sparse else B, column_scale=scale, row_factor=a, constant=constant,
                columns=columns)
    M = _dense(B, scale, a, constant, columns)
    y, w = rng.standard_normal(M.shape[1]), rng.standard_normal(n)
    h = np.where(rng.random(n) < 0.5, rng.uniform(0, 3, n), 0.0)
    np.testing.assert_allclose(rows.dot(y), M @ y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.tdot(w), M.T @ w, rtol=1e-10)
    np.testing.assert_allclose(rows.abs_dot(np.abs(y)), np.abs(M) @ np.abs(y), rtol=1e-12)
    np.testing.assert_allclose(rows.gram(h), M.T @ (M * h[:, None]), rtol=1e-10)
    columns = np.array([0, 2] + ([4] if constant is not None else []))
    np.testing.assert_allclose(rows.gram(h, columns), M[:, columns].T @ (M[:, columns] * h[:, None]), rtol=1e-10)
    np.testing.assert_allclose(rows.take([5, 9]), M[[5, 9]], rtol=1e-14)


BASE = np.array([2.0, 3.0, 0.5, 1.0, 4.0])


@pytest.mark.parametrize("distance", [ChiSquare(BASE, 2 * BASE), ChiSquare(BASE, np.array([1.0, 7.0, 2.0, 3.0, 5.0])),
                                      Entropy(BASE), Logit(BASE, 0.4, 2.5)])
def test_each_distance_owns_its_inverse_derivative(distance):
    """F = (G')^-1 and F' by central differences of the distance's own G, for the calibration Newton."""
    u = np.array([-0.7, -0.1, 0.0, 0.3, 0.9])
    g = distance.F(u)
    step = 1e-6
    derivative = (distance.G(g + step) - distance.G(g - step)) / (2 * step)   # G'(F(u)) = u
    np.testing.assert_allclose(derivative, u, atol=1e-6)
    np.testing.assert_allclose(distance.dF(u, g), (distance.F(u + step) - distance.F(u - step)) / (2 * step),
                               rtol=1e-6)
    w = distance.base * 1.3
    assert distance.value(w) == pytest.approx(float(distance.base @ distance.G(w / distance.base)), rel=1e-12)


def test_declared_options_name_the_option_and_value(kim):
    with pytest.raises(InputError, match=r"moments must be an integer >= 1, got 0"):
        cpz.sbw(kim, treatment="A", covariates=COVARIATES, moments=0)
    with pytest.raises(InputError, match=r"delta_scale must be one of \['sd', 'raw'\], got 'SD'"):
        cpz.kernel_sbw(kim, treatment="A", covariates=COVARIATES, delta_scale="SD")
    with pytest.raises(InputError, match=r"cap must be a positive number or None, got -1"):
        cpz.sparse_calibrate(cpz.datasets.cps_like(), cap=-1)
    with pytest.raises(InputError, match=r"n must be an integer >= 2, got 1.5"):
        cpz.datasets.kim2023(1.5)


def test_builders_record_their_call(kim):
    prob = cpz.sbw(kim, treatment="A", covariates=COVARIATES, delta=0.05)
    assert prob.call.arguments == {**{k: p.default for k, p in inspect.signature(cpz.sbw).parameters.items()
                                      if k != "data"}, "treatment": "A", "covariates": COVARIATES, "delta": 0.05}
    again = prob.rebuild(kim.iloc[::-1])
    assert again.call.arguments == prob.call.arguments
    np.testing.assert_allclose(again.solve().weights.loc[prob.units], prob.solve().weights, atol=1e-7)


def test_warnings_point_at_the_callers_line(kim):
    data = kim.assign(C=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cpz.sbw(data, treatment="A", covariates=["X1", "C"])
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]
