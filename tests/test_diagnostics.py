import numpy as np
import pytest

from counterpoise.diagnostics import (
    BalanceDesign,
    balance_table,
    design_effect,
    effective_sample_size,
    max_abs_smd,
    mean_abs_smd,
    smd_denominators,
    weight_summary,
)
from counterpoise.errors import InputError

# Two treated rows, three control rows.
X = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [3.0, 0.0], [5.0, 1.0]])
T = np.array([1, 1, 0, 0, 0])


def test_smd_denominators_match_hand_computation():
    sd = smd_denominators(X, treatment=T)
    # sample variances (R's var()): treated col0 [0, 2] var 2; col1 [1, 0] var 1/2.
    # control: col0 [1, 3, 5] var 4; col1 [0, 0, 1] var 1/3.
    np.testing.assert_allclose(sd["treated"], np.sqrt([2.0, 0.5]))
    np.testing.assert_allclose(sd["control"], np.sqrt([4.0, 1 / 3]))
    np.testing.assert_allclose(sd["pooled"], np.sqrt([(2 + 4) / 2, (1 / 2 + 1 / 3) / 2]))
    # all rows: col0 mean 2.2, sum of squares 14.8, var 3.7; col1 mean 0.4, sum of squares 1.2, var 0.3.
    np.testing.assert_allclose(sd["target"], np.sqrt([3.7, 0.3]))
    assert set(sd) == {"target", "treated", "control", "pooled"}


def test_smd_denominators_are_r_sd_without_weights():
    Z = np.random.default_rng(3).normal(size=(40, 3)) * [1.0, 10.0, 0.1]
    np.testing.assert_allclose(smd_denominators(Z)["target"], Z.std(axis=0, ddof=1), rtol=1e-12)


def test_smd_denominators_target_rows_and_base_weights():
    sd = smd_denominators(X, target_rows=T == 1)
    assert set(sd) == {"target"}
    np.testing.assert_allclose(sd["target"], np.sqrt([2.0, 0.5]))
    # Reliability weights (cobalt's col_w_sd): treated col0 [0, 2] with weights [2, 1]: mean 2/3, sum of squares
    # 2 (4/9) + 16/9 = 8/3, divided by sum d - sum d^2 / sum d = 3 - 5/3 = 4/3: var 2.
    d = np.array([2.0, 1, 1, 1, 1])
    weighted = smd_denominators(X, treatment=T, base_weights=d)
    np.testing.assert_allclose(weighted["treated"][0], np.sqrt(2.0))
    for key, value in smd_denominators(X, treatment=T, base_weights=7.5 * d).items():
        np.testing.assert_allclose(value, weighted[key], rtol=1e-12)      # rescaling the weights changes nothing
    # cobalt's form: weights normalized to sum 1, var = sum w (x - xbar)^2 / (1 - sum w^2)
    w = d / d.sum()
    xbar = w @ X
    np.testing.assert_allclose(weighted["target"], np.sqrt(w @ (X - xbar) ** 2 / (1 - w @ w)), rtol=1e-12)


def test_smd_denominator_of_a_single_row_is_zero():
    assert np.all(smd_denominators(X, target_rows=np.eye(5, dtype=bool)[0])["target"] == 0)


def test_constant_column_has_zero_sd_and_using_that_denominator_raises():
    X_const = X.copy()
    X_const[:2, 1] = 1.0  # constant within the treated arm only
    sds = smd_denominators(X_const, treatment=T)
    assert sds["treated"][1] == 0 and sds["control"][1] > 0
    with pytest.raises(InputError, match=r"\['b'\] have zero 'treated' standard deviation"):
        BalanceDesign(names=("a", "b"), X=X_const, groups=np.full(len(X), "sample"), base_weights=np.ones(len(X)),
                      targets={"sample": np.zeros(2)}, denominators=sds, std="treated")


def _att_design(**overrides):
    controls = X[T == 0]
    args = dict(names=("x0", "x1"), X=controls, groups=np.array(["control"] * 3), base_weights=np.ones(3),
                targets={"control": X[T == 1].mean(axis=0)}, denominators=smd_denominators(X, treatment=T),
                std="treated")
    args.update(overrides)
    return BalanceDesign(**args)


def test_balance_table_means_by_hand():
    table = balance_table(_att_design(), np.array([2.0, 1.0, 1.0]))
    assert list(table.columns) == ["target", "before", "after", "smd_before", "smd_after",
                                   "rel_error_before", "rel_error_after"]
    assert table.index.names == ["group", "term"]
    assert list(table.index) == [("control", "x0"), ("control", "x1")]
    row = table.loc["control"]
    np.testing.assert_allclose(row["target"], [1.0, 0.5])
    np.testing.assert_allclose(row["before"], [3.0, 1 / 3])
    np.testing.assert_allclose(row["after"], [10 / 4, 1 / 4])  # weights normalized within the group
    sd = np.sqrt([2.0, 0.5])                                        # the treated arm's sample SDs
    np.testing.assert_allclose(row["smd_before"], [2.0, -1 / 6] / sd)
    np.testing.assert_allclose(row["smd_after"], [1.5, -0.25] / sd)
    np.testing.assert_allclose(row["rel_error_before"], [2.0, -1 / 3])
    np.testing.assert_allclose(row["rel_error_after"], [1.5, -0.5])
    assert max_abs_smd(table) == pytest.approx(1.5 / np.sqrt(2))
    assert mean_abs_smd(table) == pytest.approx((1.5 / np.sqrt(2) + 0.25 / np.sqrt(0.5)) / 2)
    assert max_abs_smd(table, "smd_before") == pytest.approx(np.sqrt(2))
    # Another denominator on request.
    pooled = balance_table(_att_design(), np.array([2.0, 1.0, 1.0]), std="pooled")
    np.testing.assert_allclose(pooled["smd_after"], [1.5, -0.25] / smd_denominators(X, treatment=T)["pooled"])


def test_balance_table_two_groups_keep_their_order():
    target = X.mean(axis=0)
    design = BalanceDesign(names=("x0", "x1"), X=X, groups=np.where(T == 1, "treated", "control"),
                           base_weights=np.ones(5), targets={"treated": target, "control": target},
                           denominators=smd_denominators(X, treatment=T), std="pooled")
    table = balance_table(design, np.ones(5))
    assert list(table.index) == [("treated", "x0"), ("treated", "x1"), ("control", "x0"), ("control", "x1")]
    np.testing.assert_allclose(table.loc["treated", "before"], [1.0, 0.5])
    np.testing.assert_allclose(table.loc["control", "after"], [3.0, 1 / 3])


def _total_design(population_size=None):
    return BalanceDesign(names=("a", "b"), X=np.array([[1.0, -1.0], [0.0, 2.0], [1.0, -1.0]]),
                         groups=np.array(["sample"] * 3), base_weights=np.full(3, 10.0),
                         targets={"sample": np.array([12.0, 0.0])}, denominators={"target": np.array([0.5, 1.5])},
                         kind="total", population_size=population_size)


def test_balance_table_totals_by_hand():
    w = np.array([5.0, 20.0, 10.0])
    table = balance_table(_total_design(), w).loc["sample"]
    np.testing.assert_allclose(table["before"], [20.0, 0.0])
    np.testing.assert_allclose(table["after"], [15.0, 25.0])
    # N = sum of the weights concerned: 30 before, 35 after.
    np.testing.assert_allclose(table["smd_before"], [8 / (30 * 0.5), 0.0])
    np.testing.assert_allclose(table["smd_after"], [3 / (35 * 0.5), 25 / (35 * 1.5)])
    # Relative error, and the absolute error where the target is 0.
    np.testing.assert_allclose(table["rel_error_before"], [8 / 12, 0.0])
    np.testing.assert_allclose(table["rel_error_after"], [3 / 12, 25.0])
    fixed_n = balance_table(_total_design({"sample": 40.0}), w).loc["sample"]
    np.testing.assert_allclose(fixed_n["smd_before"], [8 / 20, 0.0])
    np.testing.assert_allclose(fixed_n["smd_after"], [3 / 20, 25 / 60])


def test_denominator_does_not_change_with_weights():
    design = _att_design()
    sd = smd_denominators(X, treatment=T)["treated"]
    rng = np.random.default_rng(1)
    tables = [balance_table(design, rng.uniform(0.1, 3, size=3)) for _ in range(3)]
    for table in tables:
        implied = (table["after"] - table["target"]) / table["smd_after"]
        np.testing.assert_allclose(implied, sd)
        np.testing.assert_allclose(table["smd_before"], tables[0]["smd_before"])


def test_ess_and_design_effect():
    w = np.array([1.0, 2.0, 3.0])
    assert effective_sample_size(w) == pytest.approx(36 / 14)
    assert design_effect(w) == pytest.approx(3 * 14 / 36)
    assert effective_sample_size(17.5 * w) == pytest.approx(effective_sample_size(w))
    assert design_effect(0.01 * w) == pytest.approx(design_effect(w))
    assert effective_sample_size(np.full(40, 2.5)) == pytest.approx(40)
    assert design_effect(np.full(40, 2.5)) == pytest.approx(1)
    one = np.zeros(10)
    one[3] = 4.0
    assert effective_sample_size(one) == pytest.approx(1)
    assert design_effect(one) == pytest.approx(10)


def test_weight_summary_and_top_share():
    w = np.ones(200)
    w[:2] = 50.0  # 1% of 200 units is 2 units
    summary = weight_summary(w)
    assert list(summary.index) == ["all"]
    row = summary.loc["all"]
    assert row["n"] == 200 and row["n_nonzero"] == 200
    assert row["sum"] == pytest.approx(298)
    assert row["top_1pct_share"] == pytest.approx(100 / 298)
    assert row["max_weight_ratio"] == pytest.approx(50 / (298 / 200))
    assert row["ess"] == pytest.approx(298 ** 2 / (198 + 2 * 2500))
    assert "max_ratio_to_base" not in summary.columns
    # Fewer than 100 units: the single largest unit.
    small = weight_summary(np.array([1.0, 0.0, 3.0]), base_weights=np.array([2.0, 1.0, 1.0]),
                           groups=np.array(["a", "a", "b"]))
    assert list(small.index) == ["a", "b"]
    assert small.loc["a", "top_1pct_share"] == pytest.approx(1.0)
    assert small.loc["a", "n_nonzero"] == 1
    assert small.loc["a", "max_ratio_to_base"] == pytest.approx(0.5)
    assert small.loc["b", "max_ratio_to_base"] == pytest.approx(3.0)


def test_bad_input():
    design = _att_design()
    with pytest.raises(InputError, match="non-finite"):
        balance_table(design, np.array([1.0, np.nan, 1.0]))
    with pytest.raises(InputError, match="3 units"):
        balance_table(design, np.ones(4))
    with pytest.raises(InputError, match="sum to zero"):
        balance_table(design, np.zeros(3))
    with pytest.raises(InputError, match="std='target'"):
        balance_table(_att_design(denominators={"treated": np.ones(2)}), np.ones(3), std="target")
    with pytest.raises(InputError, match="targets"):
        _att_design(targets={"treated": np.zeros(2)})
    with pytest.raises(InputError, match="kind"):
        _att_design(kind="median")
    # Negative weights (GREG calibration makes them) keep the diagnostics defined.
    table = balance_table(design, np.array([1.5, -0.5, 1.0]))
    assert np.isfinite(table["smd_after"]).all()
    assert effective_sample_size([2.0, -1.0]) == pytest.approx(1 / 5)
