"""Bad input gets a counterpoise error that names the problem; nothing falls back to silent weights."""

import warnings

import numpy as np
import pytest

import counterpoise as cpz
from conftest import COVARIATES


@pytest.fixture()
def data():
    return cpz.datasets.kim2023(n=400, overlap="strong", seed=21)


def test_nan_and_inf_in_covariates_are_named(data):
    data.loc[data.index[:3], "X2"] = np.nan
    data.loc[data.index[5], "X4"] = np.inf
    with pytest.raises(cpz.InputError, match=r"NaN or infinite values: X2 \(3 rows\), X4 \(1 rows\)"):
        cpz.sbw(data, treatment="A", covariates=COVARIATES)


def test_treatment_must_be_binary_with_two_arms(data):
    with pytest.raises(cpz.InputError, match="must be 0/1"):
        cpz.sbw(data.assign(A=data.A * 2), treatment="A", covariates=COVARIATES)
    with pytest.raises(cpz.InputError, match="has no treated units"):
        cpz.sbw(data.assign(A=0), treatment="A", covariates=COVARIATES)
    with pytest.raises(cpz.InputError, match="missing values"):
        cpz.entropy_balance(data.assign(A=data.A.where(data.index > 2)), treatment="A", covariates=COVARIATES)
    with pytest.raises(cpz.InputError, match="not in the data"):
        cpz.sbw(data, treatment="treated", covariates=COVARIATES)


def test_constant_covariate_is_dropped_with_a_warning(data):
    with pytest.warns(cpz.CounterpoiseWarning, match=r"dropped constant columns \['one'\]"):
        prob = cpz.sbw(data.assign(one=1.0), treatment="A", covariates=COVARIATES + ["one"], delta=0.1)
    assert "one" not in prob.design.names
    with pytest.raises(cpz.InputError, match="every balance column is constant"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpz.sbw(data.assign(one=1.0), treatment="A", covariates=["one"])


def test_covariate_constant_in_the_target_arm_needs_another_scale(data):
    data["flag"] = np.where(data.A == 1, 1.0, (np.arange(len(data)) % 2).astype(float))
    with pytest.raises(cpz.InputError, match=r"\['flag'\] have zero target SD, so delta in SD units is undefined"):
        cpz.sbw(data, treatment="A", covariates=["X1", "flag"])
    sol = cpz.sbw(data, treatment="A", covariates=["X1", "flag"], std="pooled", delta=0.05).solve()
    assert sol.status == "optimal"


def test_duplicate_and_missing_columns(data):
    dup = data.rename(columns={"X2": "X1"})
    with pytest.raises(cpz.InputError, match=r"duplicate column names \['X1'\]"):
        cpz.sbw(dup, treatment="A", covariates=["X1"])
    with pytest.raises(cpz.InputError, match=r"listed more than once: \['X1'\]"):
        cpz.sbw(data, treatment="A", covariates=["X1", "X1"])
    with pytest.raises(cpz.InputError, match=r"columns \['Z'\] are not in the data"):
        cpz.sbw(data, treatment="A", covariates=["X1", "Z"])
    with pytest.raises(cpz.InputError, match="not numeric"):
        cpz.sbw(data.assign(s="a"), treatment="A", covariates=["X1", "s"])


def test_bad_base_weights(data):
    for values, message in [(np.nan, "NaN or infinite"), (-1.0, "negative"), (0.0, "zero")]:
        d = np.ones(len(data))
        d[0] = values
        with pytest.raises(cpz.InputError, match=message):
            cpz.sbw(data, treatment="A", covariates=COVARIATES, base_weights=d)
    with pytest.raises(cpz.InputError, match="length 3"):
        cpz.sbw(data, treatment="A", covariates=COVARIATES, base_weights=[1, 2, 3])


def test_bad_targets_and_options(data):
    with pytest.raises(cpz.InputError, match=r"target has no value for balance columns \['X2'\]"):
        cpz.sbw(data, covariates=["X1", "X2"], estimand="target", target={"X1": 0.0})
    with pytest.raises(cpz.InputError, match="target contain"):
        cpz.sbw(data, covariates=["X1", "X2"], estimand="target", target=[0.0, np.nan])
    with pytest.raises(cpz.InputError, match="estimand must be one of"):
        cpz.sbw(data, treatment="A", covariates=COVARIATES, estimand="LATE")
    api = cpz.datasets.api()
    with pytest.raises(cpz.InputError, match="population totals contain"):
        cpz.calibrate(api, base_weights="pw", totals={"api99": np.nan})
    with pytest.raises(cpz.InputError, match="give at least one target"):
        cpz.calibrate(api, base_weights="pw")


def test_infeasible_tolerance_names_the_binding_terms(data):
    data.loc[data.A == 1, "X4"] = 10.0 + data.loc[data.A == 1, "X4"]   # treated far outside the controls' range
    prob = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.05)
    with pytest.raises(cpz.InfeasibleError, match=r"balance / X4: tolerance 0.05, needs at least") as info:
        prob.solve()
    binding = info.value.binding
    assert binding["column"].tolist() == ["X4"]
    assert float(binding["needed"].iloc[0]) > 1
    sol = prob.solve(raise_on_failure=False)
    assert sol.status == "infeasible"


def test_infeasible_bounds_are_reported(data):
    api = cpz.datasets.api()
    margins = {"stype": cpz.datasets.API_POPULATION["stype"]}
    with pytest.raises(cpz.InfeasibleError):
        cpz.calibrate(api, base_weights="pw", margins=margins, weight_bounds=(0, 1)).solve()


def test_solver_failure_is_reported_with_status(data):
    prob = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=0.05)
    with pytest.raises(cpz.SolverError, match=r"CLARABEL returned status 'inaccurate'") as info:
        prob.solve(max_iter=2)
    assert info.value.solution.status == "inaccurate"


def test_a_one_unit_arm_gets_advice_that_works(kim):
    data = kim[(kim.A == 0) | (kim.index == kim.index[kim.A == 1][0])]
    with pytest.raises(cpz.InputError, match=r"zero target SD, .*; use std='pooled'") as info:
        cpz.sbw(data, treatment="A", covariates=COVARIATES)
    assert "delta_scale='raw'" not in str(info.value)
    assert cpz.sbw(data, treatment="A", covariates=COVARIATES, std="pooled", delta=1.0).solve().status == "optimal"
