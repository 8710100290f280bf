import numpy as np
import pandas as pd
import pytest
from scipy import stats

import counterpoise as cpz
from counterpoise.errors import InputError, SolverError
from counterpoise.estimate import Estimate, ate, att, weighted_mean


def _data(n_treated=30, n_control=50, seed=0, effect=1.0):
    rng = np.random.default_rng(seed)
    t = np.r_[np.ones(n_treated, dtype=int), np.zeros(n_control, dtype=int)]
    y = rng.normal(size=t.size) + effect * t + rng.exponential(size=t.size) * t
    # A non-default index checks that weights are matched by label.
    return pd.DataFrame({"t": t, "y": y}, index=[f"u{i}" for i in range(t.size)])


def _control_ones(data):
    return pd.Series(1.0, index=data.index[data["t"] == 0])


def test_weighted_mean():
    assert weighted_mean([1.0, 2.0, 4.0], [1.0, 1.0, 2.0]) == pytest.approx(11 / 4)
    with pytest.raises(InputError, match="sums to zero"):
        weighted_mean([1.0, 2.0], [0.0, 0.0])


def test_att_uniform_weights_is_difference_in_means_with_welch_se():
    data = _data()
    y_t, y_c = data.loc[data.t == 1, "y"], data.loc[data.t == 0, "y"]
    # Extra entries for treated rows are ignored.
    result = att(data, "t", "y", pd.Series(1.0, index=data.index[::-1]))
    assert result.estimate == pytest.approx(y_t.mean() - y_c.mean())
    welch = np.sqrt(y_t.var(ddof=0) / y_t.size + y_c.var(ddof=0) / y_c.size)
    assert result.std_error == pytest.approx(welch)
    z = stats.norm.ppf(0.975)
    assert (result.ci_lower, result.ci_upper) == pytest.approx((result.estimate - z * welch, result.estimate + z * welch))
    assert (result.n_treated, result.n_control) == (30, 50)
    assert (result.ess_treated, result.ess_control) == pytest.approx((30, 50))
    assert result.method == "fixed" and result.estimand == "ATT"
    assert str(result).startswith(f"ATT = {result.estimate:.4g} (SE ")
    assert "95% CI" in str(result) and "weights held fixed" in repr(result)
    frame = result.to_frame()
    assert frame.shape[0] == 1 and frame.loc[0, "std_error"] == pytest.approx(welch)


def test_att_invariant_to_rescaling_and_order_of_weights():
    data = _data(seed=1)
    controls = data.index[data.t == 0]
    w = pd.Series(np.random.default_rng(2).uniform(0.2, 3.0, size=controls.size), index=controls)
    base = att(data, "t", "y", w)
    scaled = att(data, "t", "y", 13.0 * w.sample(frac=1.0, random_state=3))
    assert scaled.estimate == pytest.approx(base.estimate)
    assert scaled.std_error == pytest.approx(base.std_error)
    expected = data.loc[data.t == 1, "y"].mean() - np.average(data.loc[controls, "y"], weights=w)
    assert base.estimate == pytest.approx(expected)


def test_att_sample_weights_on_treated():
    data = _data(n_treated=4, n_control=5, seed=4)
    data["s"] = [1.0, 2.0, 3.0, 4.0, 9, 9, 9, 9, 9]
    result = att(data, "t", "y", _control_ones(data), sample_weights="s")
    treated = data[data.t == 1]
    expected = np.average(treated.y, weights=treated.s) - data.loc[data.t == 0, "y"].mean()
    assert result.estimate == pytest.approx(expected)
    assert result.ess_treated == pytest.approx(100 / 30)


def test_ate_hand_example():
    data = pd.DataFrame({"t": [1, 1, 0, 0, 0], "y": [1.0, 3.0, 2.0, 4.0, 6.0]})
    w = pd.Series([1.0, 3.0, 1.0, 1.0, 2.0])
    result = ate(data, "t", "y", w, level=0.9)
    # treated: (1 + 9) / 4 = 2.5; control: (2 + 4 + 12) / 4 = 4.5.
    assert result.estimate == pytest.approx(-2.0)
    # v_t = (1/4, 3/4): 1/16 * 2.25 + 9/16 * 0.25; v_c = (1/4, 1/4, 1/2): 1/16 * 6.25 + 1/16 * 0.25 + 1/4 * 2.25.
    assert result.std_error == pytest.approx(np.sqrt(0.28125 + 0.96875))
    assert result.ci_upper - result.estimate == pytest.approx(stats.norm.ppf(0.95) * np.sqrt(1.25))
    assert result.estimand == "ATE" and "90% CI" in str(result)
    with pytest.raises(InputError, match="missing for 1 of the 2 treated rows"):
        ate(data, "t", "y", w.drop(0))


class FakeSolution:
    """Uniform control weights; `problem.rebuild(data)` re-solves on new data. Fails on every `fail_every`-th solve."""

    def __init__(self, data, fail_every=None, calls=None):
        self.weights = pd.Series(1.0, index=data.index[data["t"] == 0])
        self.problem = self
        self._fail_every = fail_every
        self._calls = calls if calls is not None else [0]
        self._data = data

    def rebuild(self, data):
        return FakeSolution(data, self._fail_every, self._calls)

    def solve(self):
        self._calls[0] += 1
        if self._fail_every and self._calls[0] % self._fail_every == 0:
            raise SolverError("fake failure")
        return FakeSolution(self._data, self._fail_every, self._calls)


def test_bootstrap_reproducible_and_close_to_linearization():
    data = _data(n_treated=1500, n_control=1500, seed=5)
    solution = FakeSolution(data)
    first = att(data, "t", "y", solution, se="bootstrap", n_boot=200, seed=11)
    again = att(data, "t", "y", solution, se="bootstrap", n_boot=200, seed=11)
    other = att(data, "t", "y", solution, se="bootstrap", n_boot=200, seed=12)
    assert (first.std_error, first.ci_lower, first.ci_upper) == (again.std_error, again.ci_lower, again.ci_upper)
    assert first.std_error != other.std_error
    linear = att(data, "t", "y", solution)
    assert first.estimate == linear.estimate
    assert first.std_error == pytest.approx(linear.std_error, rel=0.2)
    assert first.ci_lower < first.estimate < first.ci_upper
    assert first.method == "bootstrap" and first.n_failed_replicates == 0
    assert "bootstrap" in str(first)


def test_bootstrap_counts_failures_and_gives_up_past_ten_percent():
    data = _data(n_treated=40, n_control=60, seed=6)
    result = att(data, "t", "y", FakeSolution(data, fail_every=20), se="bootstrap", n_boot=100)
    assert result.n_failed_replicates == 5
    assert "5 failed replicates" in str(result)
    with pytest.raises(SolverError, match="20 of 100"):
        att(data, "t", "y", FakeSolution(data, fail_every=5), se="bootstrap", n_boot=100)
    with pytest.raises(InputError, match="rebuild"):
        att(data, "t", "y", _control_ones(data), se="bootstrap")


def test_input_errors():
    data = _data(n_treated=3, n_control=4)
    w = _control_ones(data)
    bad = data.assign(t=[0, 1, 2, 0, 0, 1, 0])
    with pytest.raises(InputError, match="0/1"):
        att(bad, "t", "y", w)
    with pytest.raises(InputError, match="has no control units"):
        att(data.assign(t=1), "t", "y", w)
    with pytest.raises(InputError, match="missing for 2 of the 4 control rows"):
        att(data, "t", "y", w.iloc[2:])
    with pytest.raises(InputError, match="all zero"):
        att(data, "t", "y", 0.0 * w)
    with pytest.raises(InputError, match="non-finite"):
        att(data.assign(y=np.r_[np.nan, np.zeros(6)]), "t", "y", w)
    with pytest.raises(InputError, match="treatment column 'z' is not in the data"):
        att(data, "z", "y", w)
    with pytest.raises(InputError, match="se must be"):
        att(data, "t", "y", w, se="jackknife")


def test_estimate_is_a_frozen_record():
    result = att(_data(), "t", "y", _control_ones(_data()))
    assert isinstance(result, Estimate)
    with pytest.raises(AttributeError):
        result.estimate = 0.0


def _wls(F, y, v):
    """The v-weighted least squares of y on [1, F] by its normal equations (written out here)."""
    D = np.column_stack([np.ones(len(y)), F])
    beta = np.linalg.solve(D.T @ (v[:, None] * D), D.T @ (v * y))
    return beta, y - D @ beta


def test_balancing_se_is_the_residualized_variance_written_out():
    """ATT and ATE: the balancing SE by its formula, with the balance functions (the covariates) regressed by hand."""
    data = cpz.datasets.kim2023(n=1500, overlap="weak", seed=4)
    covariates = ["X1", "X2", "X3", "X4", "X5", "X6"]
    t = data["A"].to_numpy() == 1
    X, y = data[covariates].to_numpy(), data["Y"].to_numpy()
    sol = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=0.02).solve()
    result = att(data, "A", "Y", sol)
    assert result.method == "balancing"
    v_c = sol.weights.reindex(data.index[~t]).to_numpy()
    v_t = np.full(t.sum(), 1 / t.sum())
    beta, e = _wls(X[~t], y[~t], v_c)
    r = y[t] - np.column_stack([np.ones(t.sum()), X[t]]) @ beta
    expected = np.sum(v_t ** 2 * (r - r.mean()) ** 2) + np.sum(v_c ** 2 * e ** 2)
    assert result.std_error ** 2 == pytest.approx(expected, rel=1e-9)
    assert att(data, "A", "Y", sol.weights, covariates=covariates).std_error == pytest.approx(result.std_error,
                                                                                             rel=1e-9)
    both = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATE", delta=0.02).solve()
    w = both.weights.reindex(data.index).to_numpy()
    v1, v0 = w[t] / w[t].sum(), w[~t] / w[~t].sum()
    b1, e1 = _wls(X[t], y[t], v1)
    b0, e0 = _wls(X[~t], y[~t], v0)
    tau = np.column_stack([np.ones(len(y)), X]) @ (b1 - b0)
    expected = np.sum((tau - tau.mean()) ** 2) / len(y) ** 2 + np.sum(v1 ** 2 * e1 ** 2) + np.sum(v0 ** 2 * e0 ** 2)
    assert cpz.estimate.ate(data, "A", "Y", both).std_error ** 2 == pytest.approx(expected, rel=1e-9)


def test_augmented_estimates_are_the_regression_corrected_contrasts_written_out():
    """ATT, ATC and ATE at delta 0.05 SD: the augmented estimate by hand (the weighted regression on the covariates,
    then the target population's mean of the fitted contrast), the plain one corrected by the residual imbalance
    times the coefficients; its SE is the balancing SE."""
    data = cpz.datasets.kim2023(n=1500, overlap="weak", seed=4)
    covariates = ["X1", "X2", "X3", "X4", "X5", "X6"]
    t = data["A"].to_numpy() == 1
    X, y = data[covariates].to_numpy(), data["Y"].to_numpy()
    D = np.column_stack([np.ones(len(y)), X])
    for estimand, target, weighted in (("ATT", t, ~t), ("ATC", ~t, t)):
        sol = cpz.sbw(data, treatment="A", covariates=covariates, estimand=estimand, delta=0.05).solve()
        estimate = att if estimand == "ATT" else cpz.estimate.atc
        plain, result = estimate(data, "A", "Y", sol), estimate(data, "A", "Y", sol, augmented=True)
        v = sol.weights.reindex(data.index[weighted]).to_numpy()
        v = v / v.sum()
        beta, _ = _wls(X[weighted], y[weighted], v)
        sign = 1.0 if estimand == "ATT" else -1.0
        expected = sign * np.mean(y[target] - D[target] @ beta)
        imbalance = v @ X[weighted] - X[target].mean(axis=0)
        assert result.augmented and result.estimate == pytest.approx(expected, rel=1e-9)
        assert result.estimate == pytest.approx(plain.estimate + sign * imbalance @ beta[1:], rel=1e-9)
        assert abs(result.estimate - plain.estimate) > 1e-3 and result.std_error == plain.std_error
        assert "augmented" in str(result)
    both = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATE", delta=0.05).solve()
    w = both.weights.reindex(data.index).to_numpy()
    b1, _ = _wls(X[t], y[t], w[t] / w[t].sum())
    b0, _ = _wls(X[~t], y[~t], w[~t] / w[~t].sum())
    result = ate(data, "A", "Y", both, augmented=True)
    assert result.estimate == pytest.approx(np.mean(D @ (b1 - b0)), rel=1e-9)
    assert result.std_error == ate(data, "A", "Y", both).std_error
    with pytest.raises(InputError, match="its SE is se='balancing'"):
        att(data, "A", "Y", cpz.sbw(data, treatment="A", covariates=covariates, delta=0.05).solve(), se="fixed",
            augmented=True)


def test_augmented_equals_the_plain_estimate_at_exact_balance_and_is_bootstrapped_as_itself():
    """Entropy balancing holds the means exactly, so the correction is zero; on resamples of an SBW at delta
    0.05 SD the bootstrap recomputes the augmented estimate, whose spread the balancing SE describes."""
    data = cpz.datasets.kim2023(n=1200, overlap="strong", seed=2)
    covariates = ["X1", "X2", "X3", "X4", "X5", "X6"]
    exact = cpz.entropy_balance(data, treatment="A", covariates=covariates).solve()
    assert att(data, "A", "Y", exact, augmented=True).estimate == pytest.approx(att(data, "A", "Y", exact).estimate,
                                                                               abs=1e-8)
    sol = cpz.sbw(data, treatment="A", covariates=covariates, delta=0.05).solve()
    boot = att(data, "A", "Y", sol, se="bootstrap", n_boot=60, seed=3, augmented=True)
    plain_boot = att(data, "A", "Y", sol, se="bootstrap", n_boot=60, seed=3)
    corrected = att(data, "A", "Y", sol, augmented=True)
    assert boot.estimate == corrected.estimate and boot.method == "bootstrap" and boot.augmented
    assert boot.std_error != plain_boot.std_error
    assert 0.5 < boot.std_error / corrected.std_error < 2.0


def test_balancing_se_vanishes_for_an_outcome_the_balanced_functions_explain():
    """Exact balance (entropy balancing) and Y linear in the covariates with no noise: nothing is left to vary
    but the treated's residual, which is zero; the fixed-weight SE is not."""
    data = cpz.datasets.kim2023(n=1200, overlap="strong", seed=2)
    data["Z"] = 1.0 + 2.0 * data["X1"] - data["X3"] + 0.5 * data["X6"]
    sol = cpz.entropy_balance(data, treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"]).solve()
    assert att(data, "A", "Z", sol).std_error < 1e-8
    assert att(data, "A", "Z", sol, se="fixed").std_error > 0.05


def test_balancing_se_for_kernel_sbw_reads_the_treated_rows_of_its_basis():
    """Kernel SBW's functions for the balancing SE are its Nystrom basis at every row (recomputed here with
    cpz.basis.nystrom, the builder's defaults, landmarks chosen by row key), centred at the treated mean."""
    data = cpz.datasets.kim2023(n=1000, overlap="strong", seed=3)
    covariates = ["X1", "X2", "X3", "X4", "X5", "X6"]
    sol = cpz.kernel_sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=0.1, means=False).solve()
    t = data["A"].to_numpy() == 1
    D = cpz.basis.nystrom(data[covariates].to_numpy(), keys=data.index).D
    centre = D[t].mean(axis=0)
    functions = sol.problem.balance_functions
    assert functions.rows("treated", data.index[t]) == pytest.approx(D[t] - centre, abs=1e-9)
    assert functions.rows("control", data.index[~t]) == pytest.approx(D[~t] - centre, abs=1e-9)
    with pytest.raises(InputError, match="needs the rows the problem was built on"):
        att(data.rename(index=lambda i: i + 10_000 if data.loc[i, "A"] == 1 else i), "A", "Y", sol)
    with pytest.raises(InputError, match="se must be one of"):
        att(data, "A", "Y", sol, se="linearization")


def test_options_are_declared():
    """se, level and n_boot are checked by the declared rules (`validation.validated`), naming the option."""
    data = pd.DataFrame({"t": [1, 1, 0, 0, 0], "y": [1.0, 2.0, 0.5, 1.5, 1.0]})
    w = pd.Series([0.0, 0.0, 0.2, 0.3, 0.5])
    assert att(data, "t", "y", w, n_boot=200.0).estimate == pytest.approx(1.5 - (0.1 + 0.45 + 0.5))
    with pytest.raises(InputError, match=r"n_boot must be a whole number >= 2, got 1.5"):
        att(data, "t", "y", w, n_boot=1.5)
    with pytest.raises(InputError, match=r"level must be a number in \(0, 1\), got 1.0"):
        att(data, "t", "y", w, level=1.0)
