"""counterpoise's survey estimates on the API samples beside the values R's survey package prints for the same calls
(survey 4.x, its help pages and vignettes: dstrat, dclus1, their calibration and replicate designs).

    python problems/survey_reference.py            # a markdown table: the R call, survey's value, ours, the difference

The survey values are those its documentation prints, to the digits it prints; a difference below half the last
printed digit means the numbers agree to the printed digit.
"""

import counterpoise as cpz

POP = cpz.datasets.API_POPULATION
CALIBRATION = dict(margins={"stype": POP["stype"]}, totals={"api99": POP["api99"]})


def rows():
    """(the R call, the quantity, survey's printed value, counterpoise's)."""
    strat, clus = cpz.datasets.api("apistrat"), cpz.datasets.api("apiclus1")
    dstrat = cpz.SurveyDesign(strat, weights="pw", strata="stype", fpc="fpc")
    dclus1 = cpz.SurveyDesign(clus, weights="pw", ids="dnum", fpc="fpc")
    calibrated = dclus1.calibrate(**CALIBRATION)
    jk1 = dclus1.replicates("jk1")
    estimates = {
        "svymean(~api00, dstrat)": (dstrat.mean("api00"), 662.29, 9.4089),
        "svytotal(~enroll, dstrat)": (dstrat.total("enroll"), 3687178, 114642),
        "svymean(~api00, dclus1)": (dclus1.mean("api00"), 644.17, 23.542),
        "svytotal(~enroll, dclus1)": (dclus1.total("enroll"), 3404940, 932235),
        "svyratio(~api.stu, ~enroll, dclus1)": (dclus1.ratio("api.stu", "enroll"), 0.8497, 0.008386),
        "svymean(~api00, calibrate(dclus1, ~stype+api99, pop.totals))": (calibrated.mean("api00"), 665.31, 3.4418),
        "svymean(~api00, as.svrepdesign(dclus1))": (jk1.mean("api00"), 644.17, 26.329),
    }
    for call, (estimate, value, se) in estimates.items():
        yield call, "estimate", value, estimate.estimate
        yield call, "SE", se, estimate.se
    yield "svymean(~api00, dclus1, deff=TRUE)", "DEff", 9.3459, dclus1.mean("api00").deff
    by = dclus1.mean("api00", by="stype").table
    for level, se in zip("EHM", (22.36241, 38.02025, 31.60947)):
        yield "svyby(~api00, ~stype, dclus1, svymean)", f"SE, stype {level}", se, by.loc[(level, "api00"), "se"]


def main():
    print("| R survey call | quantity | survey prints | counterpoise | difference |")
    print("|---|---|---:|---:|---:|")
    for call, quantity, theirs, ours in rows():
        print(f"| `{call}` | {quantity} | {theirs:.10g} | {ours:.10g} | {ours - theirs:+.2g} |")


if __name__ == "__main__":
    main()
