"""Survey designs: estimates and SEs against formulas written out here and R survey's printed values, calibrated
SEs, replicate designs against brute-force recalibration with cvxpy, and bad input."""

import numpy as np
import pandas as pd
import pytest

import counterpoise as cpz
from counterpoise.errors import CalibrationError, InputError

POP = cpz.datasets.API_POPULATION
MARGINS = {"stype": POP["stype"]}
TOTALS = {"api99": POP["api99"]}


@pytest.fixture(scope="module")
def strat():
    return cpz.datasets.api("apistrat")


@pytest.fixture(scope="module")
def clus():
    return cpz.datasets.api("apiclus1")


def cluster_total_variance(y, w, psu, fraction=0.0):
    """The with-replacement variance of a one-stage cluster sample's total, by hand: n/(n-1) sum (t_j - tbar)^2
    over the PSU totals t_j = sum_{i in j} w_i y_i, times (1 - f)."""
    totals = pd.Series(w * y).groupby(np.asarray(psu)).sum().to_numpy()
    n = len(totals)
    return (1 - fraction) * n / (n - 1) * np.sum((totals - totals.mean()) ** 2)


def test_r_survey_printed_values(strat, clus):
    """svymean / svytotal / svyratio / svyby / calibrate on the API samples, as survey prints them."""
    dstrat = cpz.SurveyDesign(strat, weights="pw", strata="stype", fpc="fpc")
    assert dstrat.mean("api00").estimate == pytest.approx(662.29, abs=0.005)
    assert dstrat.mean("api00").se == pytest.approx(9.4089, abs=5e-5)
    assert dstrat.total("enroll").estimate == pytest.approx(3687178, abs=1)
    assert dstrat.total("enroll").se == pytest.approx(114642, abs=1)
    dclus1 = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc")
    assert dclus1.mean("api00").se == pytest.approx(23.542, abs=5e-4)
    assert dclus1.mean("api00").deff == pytest.approx(9.3459, abs=5e-5)        # svymean(..., deff=TRUE)
    assert dclus1.total("enroll").se == pytest.approx(932235, abs=1)
    ratio = dclus1.ratio("api.stu", "enroll")
    assert (ratio.estimate, ratio.se) == (pytest.approx(0.8497, abs=5e-5), pytest.approx(0.008386, abs=5e-7))
    by = dclus1.mean("api00", by="stype")
    assert by.se.to_numpy() == pytest.approx([22.36241, 38.02025, 31.60947], abs=5e-5)
    calibrated = dclus1.calibrate(margins=MARGINS, totals=TOTALS)
    assert calibrated.mean("api00").estimate == pytest.approx(665.31, abs=0.005)
    assert calibrated.mean("api00").se == pytest.approx(3.4418, abs=5e-5)
    jk1 = dclus1.replicates("jk1")
    assert jk1.scale == pytest.approx((1 - 15 / 757) * 14 / 15)
    assert jk1.mean("api00").se == pytest.approx(26.329, abs=5e-4)


def test_one_stage_cluster_formula_by_hand(clus):
    design = cpz.SurveyDesign(clus, weights="pw", ids="dnum")
    y, w = clus["enroll"].to_numpy(float), clus["pw"].to_numpy(float)
    assert design.total("enroll").se ** 2 == pytest.approx(cluster_total_variance(y, w, clus["dnum"]), rel=1e-12)
    mean = w @ y / w.sum()
    linearized = cluster_total_variance(y - mean, w, clus["dnum"]) / w.sum() ** 2
    assert design.mean("enroll").se ** 2 == pytest.approx(linearized, rel=1e-12)
    with_fpc = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc")
    assert with_fpc.total("enroll").se ** 2 == pytest.approx(
        cluster_total_variance(y, w, clus["dnum"], fraction=15 / 757), rel=1e-12)


def test_stratified_srs_closed_form_with_fpc(strat):
    """Stratified SRS: Var(total) = sum_h N_h^2 (1 - n_h / N_h) s_h^2 / n_h, s_h^2 the stratum's sample variance."""
    design = cpz.SurveyDesign(strat, strata="stype", fpc="fpc")          # weights N_h / n_h from the fpc
    expected = 0.0
    for _, rows in strat.groupby("stype"):
        n_h, N_h = len(rows), rows["fpc"].iloc[0]
        expected += N_h ** 2 * (1 - n_h / N_h) * rows["api00"].var(ddof=1) / n_h
    assert design.total("api00").se ** 2 == pytest.approx(expected, rel=1e-12)
    # the shipped pw is N_h / n_h in single precision
    shipped = cpz.SurveyDesign(strat, weights="pw", strata="stype", fpc="fpc")
    assert shipped.total("api00").se == pytest.approx(design.total("api00").se, rel=1e-6)
    fractions = strat.assign(f=strat.groupby("stype")["fpc"].transform(lambda s: len(s) / s))
    as_fraction = cpz.SurveyDesign(fractions, weights="pw", strata="stype", fpc="f")
    assert as_fraction.total("api00").se == pytest.approx(shipped.total("api00").se, rel=1e-12)


@pytest.mark.parametrize("variable", ["api00", "enroll"])
def test_greg_variance_closed_form(clus, variable):
    """Linear calibration: the SE of the calibrated total is that of sum w_i e_i, e = y - X B, with B the
    d-weighted regression of y on the calibration variables (the GREG residual variance)."""
    design = cpz.SurveyDesign(clus, weights="pw", ids="dnum")
    calibrated = design.calibrate(margins=MARGINS, totals=TOTALS)
    d = clus["pw"].to_numpy(float)
    X = np.column_stack([(clus["stype"] == level).to_numpy(float) for level in "EHM"] + [clus["api99"]])
    y = clus[variable].to_numpy(float)
    B = np.linalg.solve(X.T @ (d[:, None] * X), X.T @ (d * y))
    w = calibrated.weights
    assert X.T @ w == pytest.approx([4421, 755, 1018, POP["api99"]], rel=1e-10)
    assert calibrated.total(variable).estimate == pytest.approx(w @ y, rel=1e-12)
    expected = cluster_total_variance(y - X @ B, w, clus["dnum"])
    assert calibrated.total(variable).se ** 2 == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("distance, bounds", [("linear", None), ("raking", None), ("logit", (0.4, 3.0)),
                                              ("linear", (0.5, 2.5))])
def test_calibrated_total_of_a_calibration_variable_has_se_zero(clus, distance, bounds):
    design = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc")
    calibrated = design.calibrate(margins=MARGINS, totals=TOTALS, distance=distance, bounds=bounds)
    assert calibrated.total("api99").estimate == pytest.approx(POP["api99"], rel=1e-9)
    assert calibrated.total("api99").se < 1e-8 * POP["api99"]
    assert calibrated.total("stype").se.to_numpy() == pytest.approx(0.0, abs=1e-6)
    assert calibrated.total("enroll").se > 0
    if bounds is not None:
        g = calibrated.weights / clus["pw"].to_numpy()
        assert g.min() >= bounds[0] - 1e-9 and g.max() <= bounds[1] + 1e-9


def test_post_stratification_is_calibration_on_one_margin(strat):
    """Post-stratified on stype (already the strata, with N_h known): the weights do not move and the SE is that
    of the stratified design, whose within-stratum residuals are what calibration leaves."""
    design = cpz.SurveyDesign(strat, strata="stype", fpc="fpc")          # weights N_h / n_h exactly
    post = design.calibrate(margins=MARGINS)
    assert post.weights == pytest.approx(design.weights, rel=1e-12)
    assert post.mean("api00").se == pytest.approx(design.mean("api00").se, rel=1e-10)


def test_duplicated_psus_with_halved_weights_leave_everything_equal(clus):
    doubled = pd.concat([clus, clus], ignore_index=True).assign(pw=lambda f: f["pw"] / 2)
    one = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc")
    two = cpz.SurveyDesign(doubled, weights="pw", ids="dnum", fpc="fpc")
    for design_a, design_b in [(one, two), (one.calibrate(margins=MARGINS, totals=TOTALS),
                                            two.calibrate(margins=MARGINS, totals=TOTALS))]:
        for a, b in [(design_a.mean("api00"), design_b.mean("api00")),
                     (design_a.total("enroll"), design_b.total("enroll"))]:
            assert b.estimate == pytest.approx(a.estimate, rel=1e-10)
            assert b.se == pytest.approx(a.se, rel=1e-8)


def test_rows_in_another_order_give_the_same_numbers(clus):
    design = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc").calibrate(margins=MARGINS, totals=TOTALS)
    shuffled = clus.sample(frac=1.0, random_state=3)
    again = cpz.SurveyDesign(shuffled, weights="pw", ids="dnum", fpc="fpc").calibrate(margins=MARGINS, totals=TOTALS)
    assert again.mean("api00", by="stype").table.to_numpy() == pytest.approx(
        design.mean("api00", by="stype").table.to_numpy(), rel=1e-10)


def test_domain_estimates_use_the_whole_design(clus):
    """A domain mean's SE keeps every PSU (the influence values are zero outside the domain), unlike an estimate
    on the subset of rows; by hand: the domain's influence values through the cluster formula."""
    design = cpz.SurveyDesign(clus, weights="pw", ids="dnum")
    by = design.mean("api00", by="stype")
    w, y = clus["pw"].to_numpy(float), clus["api00"].to_numpy(float)
    for level in "EHM":
        inside = (clus["stype"] == level).to_numpy()
        wd = w * inside
        mean = wd @ y / wd.sum()
        expected = cluster_total_variance(y - mean, wd, clus["dnum"]) / wd.sum() ** 2
        assert by.table.loc[(level, "api00"), "estimate"] == pytest.approx(mean, rel=1e-12)
        assert by.table.loc[(level, "api00"), "se"] ** 2 == pytest.approx(expected, rel=1e-12)


def test_lonely_psu_options(strat):
    """One stratum with a single PSU: survey's default fails naming it; remove drops its contribution; adjust
    centres its PSU total at zero; average scales the rest by H / (H - 1); certainty equals remove."""
    lonely = pd.concat([strat, strat.iloc[[0]].assign(stype="X", fpc=10.0)], ignore_index=True)
    with pytest.raises(InputError, match="single PSU"):
        cpz.SurveyDesign(lonely, weights="pw", strata="stype").mean("api00")
    se = {rule: cpz.SurveyDesign(lonely, weights="pw", strata="stype", lonely_psu=rule).total("api00").se
          for rule in ("remove", "certainty", "adjust", "average")}
    others = cpz.SurveyDesign(strat, weights="pw", strata="stype").total("api00").se
    assert se["remove"] == pytest.approx(others, rel=1e-12) and se["certainty"] == se["remove"]
    assert se["average"] ** 2 == pytest.approx(others ** 2 * 4 / 3, rel=1e-12)
    row = lonely.iloc[-1]
    assert se["adjust"] ** 2 == pytest.approx(others ** 2 + (row["pw"] * row["api00"]) ** 2, rel=1e-12)
    # a lonely PSU that is its whole stratum (fpc = 1 PSU) is a certainty, not an error
    census = lonely.assign(fpc=np.where(lonely["stype"] == "X", 1.0, lonely["fpc"]))
    assert cpz.SurveyDesign(census, weights="pw", strata="stype", fpc="fpc").total("api00").se > 0


def test_bad_design_input(strat, clus):
    with pytest.raises(InputError, match="ids column 'dnum' has 2 missing"):
        cpz.SurveyDesign(clus.assign(dnum=clus["dnum"].where(clus.index > 1)), weights="pw", ids="dnum")
    with pytest.raises(InputError, match="fpc is smaller than the sample"):
        cpz.SurveyDesign(clus.assign(fpc=10.0), weights="pw", ids="dnum", fpc="fpc")
    with pytest.raises(InputError, match="varies within a stratum"):
        cpz.SurveyDesign(strat.assign(fpc=strat["fpc"] + np.arange(len(strat))), weights="pw", strata="stype",
                         fpc="fpc")
    with pytest.raises(InputError, match="not nested in strata"):
        cpz.SurveyDesign(clus, weights="pw", ids="dnum", strata="stype")
    assert cpz.SurveyDesign(clus, weights="pw", ids="dnum", strata="stype", nest=True).mean("api00").se > 0
    with pytest.raises(InputError, match="values <= 0"):
        cpz.SurveyDesign(clus.assign(pw=0.0), weights="pw", ids="dnum")
    design = cpz.SurveyDesign(clus, weights="pw", ids="dnum")
    categorical = cpz.SurveyDesign(clus.assign(s2=pd.Categorical(clus["stype"], categories=["E", "H", "M", "K"])),
                                   weights="pw", ids="dnum")
    with pytest.raises(InputError, match=r"level\(s\) \['K'\] have no units"):
        categorical.mean("api00", by="s2")
    with pytest.raises(InputError, match="missing values; pass na_rm=True"):
        design.mean("acs.k3")
    observed = clus["acs.k3"].notna().to_numpy()
    w, y = clus["pw"].to_numpy(), clus["acs.k3"].to_numpy()
    assert design.mean("acs.k3", na_rm=True).estimate == pytest.approx(w[observed] @ y[observed] / w[observed].sum())


def test_replicate_totals_match_the_linearization_for_linear_statistics(clus, strat):
    """For a total, the delete-one jackknife variance equals the linearization (with the same fpc factor)."""
    dclus1 = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc")
    assert dclus1.replicates("jk1").total("enroll").se == pytest.approx(dclus1.total("enroll").se, rel=1e-10)
    dstrat = cpz.SurveyDesign(strat, weights="pw", strata="stype", fpc="fpc")
    assert dstrat.replicates("jkn").total("enroll").se == pytest.approx(dstrat.total("enroll").se, rel=1e-10)


def test_brr_and_fay_on_two_psu_strata():
    """Two PSUs per stratum: BRR's variance of a total equals the with-replacement linearization, sum_h
    (t_h1 - t_h2)^2, for plain BRR and for Fay's method."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"stratum": np.repeat(np.arange(6), 10), "psu": np.repeat(np.arange(12), 5),
                          "w": rng.uniform(1, 3, 60), "y": rng.normal(size=60)})
    design = cpz.SurveyDesign(frame, weights="w", ids="psu", strata="stratum")
    totals = (frame["w"] * frame["y"]).groupby(frame["psu"]).sum().to_numpy().reshape(6, 2)
    expected = np.sum((totals[:, 0] - totals[:, 1]) ** 2)
    assert design.total("y").se ** 2 == pytest.approx(expected, rel=1e-12)
    for rho in (0.0, 0.5):
        brr = design.replicates("brr", fay_rho=rho)
        assert brr.replicate_weights.shape[1] == 8
        assert brr.total("y").se ** 2 == pytest.approx(expected, rel=1e-10)
    with pytest.raises(InputError, match="exactly two PSUs"):
        cpz.SurveyDesign(frame, weights="w", strata="stratum").replicates("brr")


def test_rao_wu_bootstrap_is_seeded_and_close_to_the_linearization(strat):
    design = cpz.SurveyDesign(strat, weights="pw", strata="stype")
    boot = design.replicates("bootstrap", replicates=400, seed=5)
    again = design.replicates("bootstrap", replicates=400, seed=5)
    assert np.array_equal(boot.replicate_weights, again.replicate_weights)
    ratio = boot.total("enroll").se / design.total("enroll").se
    assert 0.85 < ratio < 1.15                    # 400 draws: the SE of an SE is about 1 / sqrt(800) = 3.5%
    # each stratum's replicate weights sum to its weight total in expectation: n_h - 1 draws x n_h / (n_h - 1)
    assert boot.replicate_weights.sum(axis=0).mean() == pytest.approx(design.weights.sum(), rel=0.01)


@pytest.mark.parametrize("distance", ["linear", "raking"])
def test_replicate_recalibration_against_brute_force_with_cvxpy(clus, distance):
    """Every JK1 replicate recalibrated from its replicate weights; by brute force: calibrate the rows the
    replicate keeps with the cvxpy backend, then the jackknife variance by its formula."""
    design = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc")
    replicates = design.replicates("jk1")
    calibrated = replicates.calibrate(margins=MARGINS, totals=TOTALS, distance=distance)
    assert calibrated.replicate_status["converged"].all()
    thetas = []
    for r in range(replicates.replicate_weights.shape[1]):
        d_r = replicates.replicate_weights[:, r]
        keep = d_r > 0
        problem = cpz.calibrate(clus[keep], base_weights=d_r[keep], margins=MARGINS, totals=TOTALS,
                                distance=distance)
        w = problem.solve(backend="cvxpy").weights.to_numpy()
        assert calibrated.replicate_weights[keep, r] == pytest.approx(w, rel=1e-5)
        y = clus["api00"].to_numpy()[keep]
        thetas.append(w @ y / w.sum())
    thetas = np.asarray(thetas)
    expected = replicates.scale * np.sum((thetas - thetas.mean()) ** 2)
    assert calibrated.mean("api00").se ** 2 == pytest.approx(expected, rel=1e-4)
    assert calibrated.total("api99").se < 1e-6 * POP["api99"]


def test_a_replicate_that_cannot_be_calibrated_is_reported(clus):
    """A margin level found in one district only: the replicate that deletes that district cannot reach it."""
    rare = clus.assign(rare=(clus["dnum"] == clus["dnum"].iloc[0]).map({True: "yes", False: "no"}))
    counts = {"yes": 100.0, "no": 6094.0}
    replicates = cpz.SurveyDesign(rare, weights="pw", ids="dnum").replicates("jk1")
    with pytest.raises(CalibrationError, match="1 of 15 replicates did not calibrate"):
        replicates.calibrate(margins={"rare": counts})
    with pytest.warns(cpz.CounterpoiseWarning, match="closest weights are kept"):
        kept = replicates.calibrate(margins={"rare": counts}, raise_on_failure=False)
    assert (~kept.replicate_status["converged"]).sum() == 1
