"""balnet on adelie, checked against its cvxpy primal and dual, its KKT meaning (max |SMD| = lambda), and balnet's
invariances (sample weights = duplicated rows, single arm = ATE arm, CV invariant to the weights' scale)."""

import logging
import warnings
import sys

import numpy as np
import pandas as pd
import pytest

import counterpoise as cpz
from counterpoise.errors import InputError, SolverError

pytest.importorskip("adelie")

from counterpoise.propensity import adelie_path  # noqa: E402
from counterpoise.propensity import loss as cal  # noqa: E402


def simulate(n, p, strength=0.5, seed=0, shift=0.0, separate=False):
    """Covariates on very different scales (x2 * 15, x3 * 42 + 7) and a binary x4; treatment from a logistic model
    (`strength` sets the overlap, `shift` the treated share) or, with `separate`, W = 1(x1 > 0)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 1] *= 15
    X[:, 2] = 42 * X[:, 2] + 7
    X[:, 3] = (X[:, 3] > 0.4).astype(float)
    signal = strength * (X[:, 0] - X[:, 1] / 15 + X[:, 3]) + shift
    W = (X[:, 0] > 0) if separate else rng.random(n) < 1 / (1 + np.exp(-signal))
    frame = pd.DataFrame(X, columns=[f"x{j + 1}" for j in range(p)])
    frame["W"] = W.astype(int)
    frame.attrs["covariates"] = [f"x{j + 1}" for j in range(p)]
    return frame


SETUPS = {
    "n>p overlap": dict(n=400, p=10, strength=0.5),
    "n<p overlap": dict(n=80, p=120, strength=0.5),
    "n>p low overlap": dict(n=400, p=10, strength=4.0),
    "n<p low overlap": dict(n=80, p=120, strength=4.0),
    "separation": dict(n=80, p=120, separate=True),
}


def path_points(lambdas):
    """balnet's test points: the first, middle and 4th-from-last lambda, or the first two of a truncated path."""
    L = len(lambdas)
    return [lambdas[0], lambdas[1]] if L < 100 else [lambdas[0], lambdas[L // 2], lambdas[L - 4]]


# ---- the GLM ---------------------------------------------------------------------------------------------------


def test_glm_gives_the_loss_its_negative_gradient_and_hessian():
    rng = np.random.default_rng(0)
    n = 50
    y, sw, eta = (rng.random(n) < 0.3).astype(float), rng.uniform(0.5, 2, n), rng.normal(size=n)
    glm = adelie_path.glm_class()(y, sw, 1.7)
    w = sw / sw.sum()
    grad, hess = np.empty(n), np.empty(n)
    glm.gradient(eta, grad)
    glm.hessian(eta, grad, hess)
    step = 1e-6
    numeric = np.array([(cal.loss(eta + step * e, y, w, 1.7) - cal.loss(eta - step * e, y, w, 1.7)) / (2 * step)
                        for e in np.eye(n)])
    np.testing.assert_allclose(-grad, numeric, atol=1e-8)
    np.testing.assert_allclose(hess, np.maximum(1.7 * w * y * np.exp(-eta), adelie_path.HESSIAN_FLOOR), rtol=1e-12)
    assert glm.loss(eta) == pytest.approx(cal.loss(eta, y, w, 1.7))
    p = w @ y
    intercept_only = np.full(n, np.log(p / (1 - p)))          # exp(-a) = (1 - p) / p minimizes the null loss
    assert glm.loss(intercept_only) == pytest.approx(cal.null_loss(y, w, 1.7), rel=1e-12)
    assert cal.null_loss(y, w, 1.7) - glm.loss_full() == pytest.approx(1.0)


@pytest.mark.parametrize("shift", [-2.2, 2.2])
def test_arms_with_a_small_share_fit_the_whole_path(shift):
    """The null loss is negative below a 27% share; adelie's tolerance must stay positive (the proof of concept's
    empty path and IndexError)."""
    data = simulate(2000, 6, strength=0.5, shift=shift, seed=4)
    share = data["W"].mean()
    assert (share < 0.2) if shift < 0 else (share > 0.8)
    fit = cpz.balnet(data, "W")
    for arm in ("treated", "control"):
        assert len(fit.lambdas(arm)) == 100
        table = fit.table(arm)
        np.testing.assert_allclose(table["max_abs_smd"], table["lambda"], rtol=1e-3)
    assert np.all(np.isfinite(fit.weights()))


# ---- against cvxpy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("target", ["ATE", "ATT"])
def test_matches_the_cvxpy_primal_and_dual(setup, target):
    data = simulate(**SETUPS[setup], seed=7)
    fit = cpz.balnet(data, "W", target=target)
    for arm in fit.arms:
        for lam in path_points(fit.lambdas(arm)):
            row = fit.check(lam=lam, arm=arm).iloc[0]
            # CLARABEL's exponential-cone steps sometimes stall just short of its 1e-10 gap ("optimal_inaccurate");
            # the objectives and propensities below are the comparison that counts.
            assert row["primal_status"] in ("optimal", "optimal_inaccurate")
            assert row["max_abs_diff_propensity"] <= 1e-4, (setup, arm, lam)
            assert row["objective_fit"] == pytest.approx(row["objective_cvxpy"], rel=1e-6, abs=1e-8)
            assert row["dual_status"] == "optimal" and row["max_weight_diff"] <= 1e-3, (setup, arm, lam)


def test_groups_elastic_net_and_sample_weights_match_cvxpy():
    data = simulate(300, 8, strength=0.8, seed=2)
    sw = np.random.default_rng(3).uniform(0.3, 3, len(data))
    groups = {"first": ["x1", "x2", "x3"], "pair": ["x5", "x7"]}
    for target in ("ATE", "ATT"):
        fit = cpz.balnet(data, "W", target=target, alpha=0.5, groups=groups, sample_weights=sw)
        assert [label for label, _ in fit.groups][:3] == ["first", "x4", "pair"]
        for arm in fit.arms:
            L = fit.lambdas(arm)
            for lam in (L[1], L[len(L) // 2], L[-4]):
                row = fit.check(lam=lam, arm=arm).iloc[0]
                assert row["max_abs_diff_propensity"] <= 1e-4
                assert row["objective_fit"] == pytest.approx(row["objective_cvxpy"], rel=1e-6)
                assert row["dual_status"] == "optimal" and row["max_weight_diff"] <= 1e-3


def test_unpenalized_groups_are_balanced_exactly_in_both_formulations():
    data = simulate(300, 6, seed=6)
    fit = cpz.balnet(data, "W", target="ATT", penalty_factor=[0, 1, 1, 1, 1, 1])
    row = fit.check(lam=fit.lambdas()[20]).iloc[0]
    assert row["max_abs_diff_propensity"] <= 1e-4 and row["dual_status"] == "optimal"
    assert abs(fit.table().iloc[20]["max_abs_smd"] - fit.lambdas()[20]) < 1e-3 * fit.lambdas()[20]


def test_dual_problem_is_a_weighting_problem_with_a_swept_lambda():
    data = simulate(300, 6, seed=5)
    fit = cpz.balnet(data, "W", target="ATT")
    L = fit.lambdas()
    prob = fit.to_problem(L[10])
    sol = prob.solve()
    omega = fit.weights(L[10])[data["W"] == 0]
    np.testing.assert_allclose(sol.weights, omega / omega.sum(), atol=1e-5 / len(omega) * 10)
    assert sol.max_abs_smd == pytest.approx(L[10], rel=1e-4)
    prob.set(lam=L[40])
    omega = fit.weights(L[40])[data["W"] == 0]
    np.testing.assert_allclose(prob.solve().weights, omega / omega.sum(), atol=1e-4 / len(omega))


# ---- what lambda means ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["ATE", "ATT", "treated", "control"])
def test_max_abs_smd_equals_lambda_along_the_lasso_path(target):
    data = simulate(1500, 8, strength=0.7, seed=11)
    fit = cpz.balnet(data, "W", target=target)
    for arm in fit.arms:
        table = fit.table(arm)
        np.testing.assert_allclose(table["max_abs_smd"], table["lambda"], rtol=1e-3)
        # the table's SMD is the balance of the returned weights against the target population
        lam = table["lambda"].iloc[30]
        w = fit.weights(lam)
        X = data[fit.names].to_numpy()
        on = (data["W"] == (1 if arm == "treated" else 0)).to_numpy()
        target_rows = (data["W"] == 1).to_numpy() if target == "ATT" else np.ones(len(data), bool)
        mean, sd = X[target_rows].mean(0), X[target_rows].std(0)
        smd = (w[on] @ X[on] / w[on].sum() - mean) / sd
        assert np.max(np.abs(smd)) == pytest.approx(lam, rel=1e-3)
        assert w[on].sum() == pytest.approx(target_rows.sum(), rel=1e-6)


def test_sample_weights_equal_duplicated_rows():
    data = simulate(400, 6, seed=8)
    counts = np.random.default_rng(1).integers(1, 4, len(data))
    expanded = data.loc[data.index.repeat(counts)].reset_index(drop=True)
    for target in ("ATE", "ATT"):
        weighted = cpz.balnet(data, "W", target=target, sample_weights=counts.astype(float))
        duplicated = cpz.balnet(expanded, "W", target=target)
        for arm in weighted.arms:
            np.testing.assert_allclose(weighted.lambdas(arm), duplicated.lambdas(arm), rtol=1e-10)
            # (nonzero counts are left out: at lambda_max a coefficient of 1e-16 can appear on one side)
            pd.testing.assert_frame_equal(weighted.table(arm).drop(columns="nonzero"),
                                          duplicated.table(arm).drop(columns="nonzero"), rtol=1e-6)
            for lam in weighted.lambdas(arm)[::10]:
                np.testing.assert_allclose(weighted.coef(lam, arm), duplicated.coef(lam, arm), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(weighted.coef(), duplicated.coef(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(weighted.weights().to_numpy() / counts,
                                   duplicated.weights().to_numpy()[np.cumsum(counts) - 1], rtol=1e-6)


def test_single_arm_targets_equal_the_ate_arms():
    data = simulate(600, 6, seed=9)
    ate = cpz.balnet(data, "W", target="ATE")
    for arm in ("treated", "control"):
        single = cpz.balnet(data, "W", target=arm)
        np.testing.assert_array_equal(single.lambdas(), ate.lambdas(arm))
        pd.testing.assert_frame_equal(single.coef(), ate.coef(arm=arm))
        pd.testing.assert_series_equal(single.predict()[arm], ate.predict()[arm])


def test_coef_and_predict_interpolate_and_clamp():
    data = simulate(500, 6, seed=10)
    fit = cpz.balnet(data, "W", target="treated")
    L = fit.lambdas()
    mid = 0.5 * (L[20] + L[21])
    np.testing.assert_allclose(fit.coef(mid), 0.5 * (fit.coef(L[20]).to_numpy() + fit.coef(L[21]).to_numpy()))
    pd.testing.assert_frame_equal(fit.coef(10 * L[0]), fit.coef(L[0]))
    with pytest.warns(cpz.CounterpoiseWarning, match=r"lam = 0 is below the treated arm's last lambda .*the path "
                                                     r"ends there .*; the fit at lam = .* is used"):
        below = fit.coef(0.0)
    pd.testing.assert_frame_equal(below, fit.coef(L[-1]))
    assert np.all(fit.coef(L[0]).iloc[0, 1:] == 0)
    e = fit.predict(data.head(5), lam=L[50])["treated"]
    link = fit.predict(data.head(5), lam=L[50], type="link")["treated"]
    np.testing.assert_allclose(e, 1 / (1 + np.exp(-link)))
    w = fit.weights(L[50])
    np.testing.assert_allclose(w[data["W"] == 1], 1 / fit.predict(lam=L[50])["treated"][data["W"] == 1])
    assert np.all(w[data["W"] == 0] == 0)


def test_standardize_false_on_prestandardized_covariates_is_the_same_fit():
    data = simulate(500, 6, seed=17)
    names = data.attrs["covariates"]
    scaled = data.copy()
    scaled[names] = (data[names] - data[names].mean()) / data[names].std(ddof=0)
    fit = cpz.balnet(scaled, "W", target="treated")
    raw = cpz.balnet(scaled, "W", target="treated", standardize=False)
    np.testing.assert_allclose(raw.lambdas(), fit.lambdas(), rtol=1e-10)
    np.testing.assert_allclose(raw.coef(), fit.coef(), atol=1e-10)
    assert raw.check(lam=raw.lambdas()[30]).iloc[0]["max_abs_diff_propensity"] < 1e-4


def test_print_shows_each_arm_compactly():
    fit = cpz.balnet(simulate(400, 5, seed=1), "W")
    text = repr(fit)
    assert "Control (path: 100/100)" in text and "Treated (path: 100/100)" in text
    assert "Mean |SMD|" in text and text.count("...") == 2
    assert len(text.splitlines()) < 25


# ---- divergence ------------------------------------------------------------------------------------------------


def test_divergence_truncates_the_path_with_a_reason(capsys):
    data = simulate(**SETUPS["separation"], seed=3)
    before = list(logging.getLogger().handlers)
    fit = cpz.balnet(data, "W")
    assert list(logging.getLogger().handlers) == before          # adelie's root handler is gone
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""               # and it printed nothing
    arm = fit.arms["treated"]
    assert 0 < len(arm.lambdas) < 100 and "diverg" in arm.path.stopped
    assert "stopped early" in repr(fit)
    with pytest.warns(cpz.CounterpoiseWarning, match=r"the path stopped early there \(.*diverg"):
        w = fit.weights(0.0)                                       # below the path: clamped to its end, and said
    assert np.all(np.isfinite(w))


def test_a_user_path_that_never_converges_is_an_error():
    data = simulate(**SETUPS["separation"], seed=3)
    with pytest.raises(SolverError, match="none of the supplied lambdas converged"):
        cpz.balnet(data, "W", target="treated", lambdas=[1e-6, 1e-7])
    fit = cpz.balnet(data, "W", target="treated", lambdas=[1.0, 0.5, 1e-7])
    assert len(fit.lambdas()) < 3 and fit.arms["treated"].path.stopped


def test_max_imbalance_extends_the_path():
    data = simulate(1500, 6, strength=0.5, seed=12)
    fit = cpz.balnet(data, "W", max_imbalance=1e-3)
    for arm in fit.arms:
        assert fit.lambdas(arm)[-1] == pytest.approx(1e-3)
    with pytest.raises(InputError, match="alpha = 1"):
        cpz.balnet(data, "W", max_imbalance=1e-3, alpha=0.5)


def test_the_fit_records_its_call_and_runs_it_again():
    data = simulate(300, 5, seed=19)
    fit = cpz.balnet(data, "W", target="ATT", n_lambda=30)
    assert fit.call.arguments["target"] == "ATT" and fit.call.arguments["tol"] == 1e-9   # defaults filled in
    again = fit.call.on(data)
    np.testing.assert_array_equal(again.lambdas(), fit.lambdas())
    pd.testing.assert_frame_equal(again.coef(), fit.coef())


# ---- cross-validation -------------------------------------------------------------------------------------------


def test_cv_is_invariant_to_the_scale_of_the_sample_weights_and_refits_at_lambda_min():
    data = simulate(600, 6, seed=13)
    sw = np.random.default_rng(2).uniform(0.5, 2, len(data))
    folds = np.random.default_rng(3).integers(0, 4, len(data))
    cv = cpz.cv_balnet(data, "W", fold_id=folds, sample_weights=sw)
    cv42 = cpz.cv_balnet(data, "W", fold_id=folds, sample_weights=42 * sw)
    assert cv.lambda_min == pytest.approx(cv42.lambda_min)
    for arm in cv.losses:
        np.testing.assert_allclose(cv.losses[arm], cv42.losses[arm], rtol=1e-7)
    refit = cpz.balnet(data, "W", sample_weights=sw, lambdas={arm: [lam] for arm, lam in cv.lambda_min.items()})
    np.testing.assert_allclose(cv.coef(), refit.coef(), atol=1e-5)
    assert np.all(np.isfinite(cv.weights()))
    assert "lambda_min" in repr(cv)


def test_boot_balnet_matches_a_brute_force_subsample_imbalance():
    data = simulate(300, 4, seed=17)
    boot = cpz.boot_balnet(data, "W", samples=12, seed=5, n_lambda=15)
    fit, n = boot.fit, len(data)
    X = data[fit.names].to_numpy()
    rng = np.random.default_rng([5, 0])                     # the 12 subsamples are the first chunk
    subsets = [rng.choice(n, n // 2, replace=False) for _ in range(12)]
    for name, arm in fit.arms.items():
        rows = data["W"].to_numpy() == (1 if name == "treated" else 0)
        target, sd = X.mean(axis=0), X.std(axis=0)          # the ATE's target population: every row
        for j, lam in enumerate(arm.lambdas):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")             # the other arm's path may end above this lambda
                w = np.where(rows, fit.weights(lam).to_numpy(), 0.0)
            expected = [np.mean(np.abs((w[s] @ X[s] / w[s].sum() - target) / sd)) for s in subsets]
            np.testing.assert_allclose(boot.losses[name][:, j], expected, rtol=1e-9)
        assert boot.lambda_min[name] == arm.lambdas[int(np.argmin(boot.losses[name].mean(axis=0)))]
    assert "subsampled imbalance over 12 subsamples" in repr(boot)
    with pytest.raises(InputError, match="samples"):
        cpz.boot_balnet(data, "W", samples=1)


def test_cv_survives_a_covariate_constant_within_a_fold():
    data = simulate(300, 4, seed=18)
    data["rare"] = 0.0
    data.loc[[3, 7], "rare"] = 1.0
    folds = np.arange(len(data)) % 3
    folds[[3, 7]] = 0                                    # both 1s in fold 0: constant in that fold's training rows
    with pytest.warns(cpz.CounterpoiseWarning, match="constant"):
        cv = cpz.cv_balnet(data, "W", covariates=data.attrs["covariates"] + ["rare"], fold_id=folds)
    assert np.all(np.isfinite(cv.losses["treated"]))


def test_cv_single_arm_equals_the_ate_arm_and_folds_follow_the_seed():
    data = simulate(500, 5, seed=14)
    ate = cpz.cv_balnet(data, "W", n_folds=5, seed=1)
    treated = cpz.cv_balnet(data, "W", target="treated", n_folds=5, seed=1)
    np.testing.assert_array_equal(ate.losses["treated"], treated.losses["treated"])
    np.testing.assert_array_equal(ate.fold_id, cpz.cv_balnet(data, "W", n_folds=5, seed=1).fold_id)


def test_plots_draw():
    data = simulate(300, 5, seed=15)
    fit = cpz.balnet(data, "W")
    assert len(fit.plot().axes) == 3
    assert len(cpz.cv_balnet(data, "W", n_folds=3).plot().axes) == 2


# ---- bad input --------------------------------------------------------------------------------------------------


def test_bad_input_is_named():
    data = simulate(200, 4, seed=16)
    with pytest.raises(InputError, match="target"):
        cpz.balnet(data, "W", target="ATC")
    with pytest.raises(InputError, match="alpha"):
        cpz.balnet(data, "W", alpha=1.5)
    with pytest.raises(InputError, match="two groups"):
        cpz.balnet(data, "W", groups=[["x1", "x2"], ["x2", "x3"]])
    with pytest.raises(InputError, match="not among the covariates"):
        cpz.balnet(data, "W", groups=[["x1", "nope"]])
    with pytest.raises(InputError, match="one value per group"):
        cpz.balnet(data, "W", penalty_factor=[1, 1])
    with pytest.raises(InputError, match="lambdas"):
        cpz.balnet(data, "W", lambdas=[-1.0])
    bad = data.copy()
    bad.loc[3, "x1"] = np.nan
    with pytest.raises(InputError, match="NaN"):
        cpz.balnet(bad, "W")
    with pytest.raises(InputError, match="arm="):
        cpz.balnet(data, "W").lambdas()


def test_missing_adelie_is_a_clear_error(monkeypatch):
    adelie_path.load_adelie.cache_clear()
    adelie_path.glm_class.cache_clear()
    monkeypatch.setitem(sys.modules, "adelie", None)
    try:
        with pytest.raises(ImportError, match=r"pip install 'counterpoise\[balnet\]'"):
            cpz.balnet(simulate(100, 4), "W")
    finally:
        adelie_path.load_adelie.cache_clear()
        adelie_path.glm_class.cache_clear()


@pytest.mark.parametrize("target", ["ATE", "control", "treated", "ATT"])
def test_an_arm_of_one_unit_is_refused_before_adelie(target):
    data = cpz.datasets.confounded(n=2000, p=10, seed=1)
    data["A"] = 0
    data.loc[data.index[0], "A"] = 1
    with pytest.raises(InputError, match=r"the treated arm has 1 unit: a propensity path needs at least 2 units"):
        cpz.balnet(data, "A", target=target)


def test_cross_validation_shows_its_folds_when_asked(capsys):
    data = simulate(300, 4, seed=8)
    cpz.cv_balnet(data, "W", n_folds=3, seed=1, n_lambda=10, progress=True)
    assert "cv_balnet folds" in capsys.readouterr().err
    cpz.cv_balnet(data, "W", n_folds=3, seed=1, n_lambda=10)
    assert capsys.readouterr().err == ""
