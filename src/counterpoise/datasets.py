"""Simulated data sets from the balancing-weights literature.

`kim2023` is the design of Kim, Niknam & Zubizarreta (kernel-based stable balancing weights,
section 4.1), itself an extension of Hainmueller (2012) to a nonlinear treatment assignment.
`medicare_like` a synthetic stand-in for that paper's 1.27M-patient, 87-covariate case study;
`confounded` is a many-covariate logistic design for propensity-score paths (balnet); `survey_margins` a
categorical sample with population margins for raking benchmarks; `region_age` one whose margins the sample's
weights miss by 3-5% (calibration within tolerances); `cps_like` the sparse-calibration notebook's
sample with its train and held-out targets. `on_dask` draws any of them as a dask DataFrame, partition by
partition on the workers.
"""

from importlib import resources

import numpy as np
import pandas as pd

from counterpoise.errors import InputError
from counterpoise.validation import integer, one_of, validated

_COV_X123 = np.array([[2.0, 1.0, -1.0], [1.0, 1.0, -0.5], [-1.0, -0.5, 1.0]])
_EPS_VARIANCE = {"weak": 30.0, "strong": 100.0}


#: How kim2023 reads the paper's eps ~ N(0, 30) / N(0, 100): as variances (the paper's notation) or as standard
#: deviations (the authors' public R code draws rnorm(n, 0, 30)).
NOISE_READINGS = ("variance", "sd")


@validated(n=integer(2), noise=one_of(NOISE_READINGS))
def kim2023(n, overlap="weak", transformed=False, seed=0, noise="variance"):
    """Simulate the Kim-Niknam-Zubizarreta design: n units, columns covariates, A (0/1 int) and Y.

    Covariates:
        (X1, X2, X3) ~ N(0, [[2, 1, -1], [1, 1, -0.5], [-1, -0.5, 1]]),
        X4 ~ U[-3, 3],  X5 ~ chi2(1),  X6 ~ Bern(0.5).
    Outcome:  Y = (X1 + X2 + X5)^2 + eta,  eta ~ N(0, 1)  (no treatment effect, so the true ATT is 0).
    Treatment:  A = 1{X1^2 + 2 X2^2 - 2 X3^2 - (X4 + 1)^3 - 0.5 log(X5 + 10) + X6 - 1.5 + eps > 0},
        eps ~ N(0, 30) for overlap="weak" and N(0, 100) for overlap="strong". The paper writes N(mean, variance);
        the authors' public code draws rnorm(n, 0, 30), an SD of 30. noise="variance" (default) reads the numbers
        as variances (eps SD 5.48 / 10), noise="sd" as standard deviations (eps SD 30 / 100: the assignment is
        mostly noise, so overlap is much better and every estimator's bias is smaller).

    With transformed=False the covariate columns are X1..X6; with transformed=True they are the
    misspecified X* = (X1 X3, X2^2, X4, X5, X6), named X1X3, X2sq, X4, X5, X6, built from the same
    draws (same seed gives the same A, Y and underlying X). Random draws use
    numpy.random.default_rng(seed). `frame.attrs` names the covariates, treatment and outcome, so
    builders called without `covariates=` use the right set for either version.
    """
    if overlap not in _EPS_VARIANCE:
        raise InputError(f"overlap must be 'weak' or 'strong', got {overlap!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    x123 = rng.standard_normal((n, 3)) @ np.linalg.cholesky(_COV_X123).T
    x1, x2, x3 = x123.T
    x4 = rng.uniform(-3.0, 3.0, n)
    x5 = rng.chisquare(1.0, n)
    x6 = rng.integers(0, 2, n).astype(np.float64)
    y = (x1 + x2 + x5) ** 2 + rng.standard_normal(n)
    spread = _EPS_VARIANCE[overlap]
    eps = rng.normal(0.0, np.sqrt(spread) if noise == "variance" else spread, n)
    index = x1**2 + 2 * x2**2 - 2 * x3**2 - (x4 + 1) ** 3 - 0.5 * np.log(x5 + 10) + x6 - 1.5 + eps
    a = (index > 0).astype(np.int64)
    if transformed:
        covariates = {"X1X3": x1 * x3, "X2sq": x2**2}
    else:
        covariates = {"X1": x1, "X2": x2, "X3": x3}
    covariates.update({"X4": x4, "X5": x5, "X6": x6})
    frame = pd.DataFrame({**covariates, "A": a, "Y": y})
    frame.attrs.update(covariates=list(covariates), treatment="A", outcome="Y")
    return frame


@validated(n=integer(2), p=integer(1))
def confounded(n, p=50, strength=1.0, seed=0):
    """n units with p correlated covariates, a logistic treatment and a confounded outcome; the true ATE is 1.

    Covariates X1..Xp: X_1 = Z_1, X_j = 0.5 X_{j-1} + sqrt(0.75) Z_j (standard normal, neighbours correlated 0.5).
    Treatment: A ~ Bernoulli(expit(strength * s / sd(s))), s = sum_{j <= 10} (-1)^(j+1) X_j / j (larger strength,
    poorer overlap). Outcome: Y = A + sum_{j <= 10} X_j / j + 0.5 X_1^2 + N(0, 1). Draws use default_rng(seed).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((int(n), int(p)))
    for j in range(1, p):
        X[:, j] = 0.5 * X[:, j - 1] + np.sqrt(0.75) * X[:, j]
    k = min(p, 10)
    beta = np.array([(-1) ** j / (j + 1) for j in range(k)])
    score = X[:, :k] @ beta
    a = (rng.random(n) < 1 / (1 + np.exp(-strength * score / score.std()))).astype(np.int64)
    y = a + X[:, :k] @ np.abs(beta) + 0.5 * X[:, 0] ** 2 + rng.standard_normal(n)
    names = [f"X{j + 1}" for j in range(p)]
    frame = pd.DataFrame(X, columns=names)
    frame["A"], frame["Y"] = a, y
    frame.attrs.update(covariates=names, treatment="A", outcome="Y")
    return frame


@validated(n=integer(2))
def survey_margins(n, variables=5, levels=10, seed=0):
    """A survey sample for raking benchmarks: `variables` independent categorical columns v1.. with `levels`
    levels "L0".. (level probabilities from a Dirichlet(2) draw per variable), design weights d ~ lognormal(0,
    0.5) * 100, and population margins in `frame.attrs["margins"]`: each level's sample total of d times a factor
    from U(0.7, 1.3), rescaled so every variable sums to the same N = 1.1 sum(d). Draws use default_rng(seed)."""
    rng = np.random.default_rng(seed)
    names = np.array([f"L{k}" for k in range(levels)], dtype=object)
    frame = pd.DataFrame({f"v{j + 1}": names[rng.choice(levels, size=int(n), p=rng.dirichlet(np.full(levels, 2.0)))]
                          for j in range(variables)})
    frame["d"] = 100 * rng.lognormal(0.0, 0.5, int(n))
    N = 1.1 * frame["d"].sum()
    margins = {}
    for var in frame.columns[:variables]:
        totals = frame.groupby(var)["d"].sum() * rng.uniform(0.7, 1.3, frame[var].nunique())
        margins[var] = (totals * N / totals.sum()).to_dict()
    frame.attrs.update(margins=margins, base_weights="d")
    return frame


def region_age(n, seed=0):
    """A survey sample of 8 regions x 3 age groups for calibration within tolerances: "region" (r0..r7, equally
    likely), "age" (a, b, c with probabilities 0.3, 0.4, 0.3), design weights d ~ U(1, 3), and population margins in
    `frame.attrs["margins"]` moved 3-5% from the sample's totals of d: every region up 4%, age "a" down 5% and the
    others up 3%, the ages rescaled to the regions' total. Draws use default_rng(seed)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"region": rng.choice([f"r{j}" for j in range(8)], int(n)),
                          "age": rng.choice(["a", "b", "c"], int(n), p=[0.3, 0.4, 0.3]), "d": rng.uniform(1, 3, int(n))})
    region = {k: 1.04 * v for k, v in frame.groupby("region")["d"].sum().items()}
    age = {k: v * (0.95 if k == "a" else 1.03) for k, v in frame.groupby("age")["d"].sum().items()}
    age = {k: v * sum(region.values()) / sum(age.values()) for k, v in age.items()}
    frame.attrs.update(margins={"region": region, "age": age}, base_weights="d")
    return frame


@validated(n=integer(100))
def medicare_like(n=1_273_636, seed=0):
    """A synthetic stand-in, of the same shape, for the kernel SBW paper's case study (Kim, Niknam & Zubizarreta,
    section 5: 1,273,636 Medicare heart-attack patients, 206,948 of them at 775 for-profit hospitals, 87
    covariates; the real data are not public). Hospitals: 3538, 775 for-profit (`A` = 1 for their patients), each
    with 17 area-level characteristics (constant within the hospital): "small" and "nonteaching" (binary, more
    common at for-profit hospitals: 79.5% / 87.6% against 72.9% / 81.5% of patients) and area1..area15 (normal,
    for-profit means shifted by 0 to 0.4 SD). Patients go to hospitals in proportion to hospital sizes drawn so
    that about 16.3% are treated. 70 patient covariates: age (normal(79, 8) clipped to [65, 105]), female,
    white / black / hispanic (the paper's Table 5 shares, by arm), 60 comorbidities (binary, prevalence 2% to 45%,
    correlated through a frailty factor, slightly shifted by arm), prior admissions (Poisson), admission year
    (2010-2019), dual eligibility, emergency admission and a severity score (normal). Binary and count columns
    are int8 / int16. Outcome Y (PCI, binary) depends on age, frailty and a few covariates and not on A: the
    true ATT is 0. `frame.attrs["covariates"]` lists the 87 covariates. Draws use default_rng(seed).
    """
    rng = np.random.default_rng(seed)
    n = int(n)
    hospitals, for_profit = 3538, 775
    profit = np.zeros(hospitals, bool)
    profit[rng.choice(hospitals, for_profit, replace=False)] = True
    size = rng.lognormal(0.0, 0.8, hospitals)
    size[profit] *= 0.163 / (1 - 0.163) * size[~profit].sum() / size[profit].sum()   # 16.3% of patients treated
    hospital = rng.choice(hospitals, n, p=size / size.sum())
    a = profit[hospital]
    columns = {}
    area = {"small": (0.795, 0.729), "nonteaching": (0.876, 0.815)}
    for name, (p_treated, p_control) in area.items():
        # at the hospital level, so that the patient shares match the paper's
        columns[name] = (rng.random(hospitals) < np.where(profit, p_treated, p_control))[hospital].astype(np.int8)
    shifts = np.linspace(0.0, 0.4, 15)
    for j, shift in enumerate(shifts):
        columns[f"area{j + 1}"] = (rng.standard_normal(hospitals) + shift * profit)[hospital]
    columns["age"] = np.clip(rng.normal(79.0, 8.0, n) - 0.3 * a, 65, 105)
    columns["female"] = (rng.random(n) < 0.478).astype(np.int8)
    race = rng.random(n)
    white, black, hispanic = np.where(a, 0.790, 0.842), np.where(a, 0.083, 0.078), np.where(a, 0.086, 0.044)
    columns["white"] = (race < white).astype(np.int8)
    columns["black"] = ((race >= white) & (race < white + black)).astype(np.int8)
    columns["hispanic"] = ((race >= white + black) & (race < white + black + hispanic)).astype(np.int8)
    frailty = rng.standard_normal(n)
    prevalence = np.linspace(0.02, 0.45, 60)
    arm_shift = rng.uniform(-0.15, 0.15, 60)
    for j in range(60):
        logit = np.log(prevalence[j] / (1 - prevalence[j])) + 0.5 * frailty + arm_shift[j] * a
        columns[f"comorbidity{j + 1}"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    columns["prior_admissions"] = rng.poisson(np.exp(0.3 * frailty - 0.5)).astype(np.int16)
    columns["year"] = rng.integers(2010, 2020, n).astype(np.int16)
    columns["dual_eligible"] = (rng.random(n) < np.where(a, 0.2, 0.15)).astype(np.int8)
    columns["emergency"] = (rng.random(n) < 0.7 + 0.05 * a).astype(np.int8)
    columns["severity"] = frailty + rng.standard_normal(n)
    frame = pd.DataFrame(columns)
    covariates = list(frame.columns)
    score = (-1.0 - 0.04 * (columns["age"] - 79) - 0.4 * frailty + 0.5 * columns["comorbidity60"]
             - 0.3 * columns["comorbidity30"] + 0.3 * columns["area15"] + 0.5 * columns["small"] * columns["black"])
    frame["A"] = a.astype(np.int8)
    frame["Y"] = (rng.random(n) < 1 / (1 + np.exp(-score))).astype(np.int8)
    frame.attrs.update(covariates=covariates, treatment="A", outcome="Y")
    return frame


def cps_like(n=5000, seed=42, target_seed=123):
    """The sparse-calibration notebook's CPS-like sample (microplex's SparseCalibrator vs HardConcrete study):
    age_group (5 levels), is_male and a lognormal(8, 0.5) `weight` per record, drawn with the legacy
    numpy.random.RandomState(seed) exactly as the notebook does. Targets, drawn with RandomState(target_seed):
    `frame.attrs["margins"]` the age-group counts perturbed by U(0.7, 1.3), `attrs["totals"]` the total of
    `weight` (sum_i w_i weight_i) perturbed by U(0.9, 1.1), and the held-out `attrs["held_out"]` sex counts
    perturbed by U(0.8, 1.2). Calibrated weights are on the count scale (about 1 per record)."""
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({
        "age_group": rng.choice(["0-17", "18-34", "35-54", "55-64", "65+"], n, p=[0.22, 0.22, 0.26, 0.13, 0.17]),
        "is_male": rng.choice([True, False], n, p=[0.49, 0.51]),
        "weight": rng.lognormal(8.0, 0.5, n),
    })
    rng2 = np.random.RandomState(target_seed)
    margins = {"age_group": {c: round(k * rng2.uniform(0.7, 1.3)) for c, k in frame["age_group"].value_counts().items()}}
    totals = {"weight": round(frame["weight"].sum() * rng2.uniform(0.9, 1.1))}
    held_out = {"is_male": {c: round(k * rng2.uniform(0.8, 1.2)) for c, k in frame["is_male"].value_counts().items()}}
    frame.attrs.update(margins=margins, totals=totals, held_out=held_out)
    return frame


#: Population totals of the California API population (R survey's `apipop`, 6194 schools), for calibration.
API_POPULATION = {
    "N": 6194,
    "stype": {"E": 4421, "H": 755, "M": 1018},
    "sch.wide": {"No": 1072, "Yes": 5122},
    "api99": 3_914_069,
}


def api(sample="apistrat"):
    """The survey package's California API samples: "apistrat" (stratified by stype, 200 schools) or
    "apiclus1" (one-stage cluster sample of 15 districts, 183 schools); design weights in `pw`.
    `API_POPULATION` holds the population totals the classic calibration examples use."""
    if sample not in ("apistrat", "apiclus1"):
        raise InputError(f'sample must be "apistrat" or "apiclus1", got {sample!r}')
    path = resources.files("counterpoise") / "data" / f"api_{sample}.csv"
    with resources.as_file(path) as file:
        return pd.read_csv(file, dtype={"cds": str})


@validated(n=integer(1), partition_rows=integer(1))
def on_dask(generator, n, partition_rows=1_000_000, seed=0, **arguments):
    """A dask DataFrame of `n` rows drawn by `generator` (one of this module's simulations, e.g. survey_margins)
    on the workers, partition by partition: partition p holds the generator's own draw of min(partition_rows,
    n - p partition_rows) rows with seed (seed, p), its index continuing the previous partition's (divisions
    known). Nothing is drawn until a partition is computed, and the same (n, partition_rows, seed) give the same
    rows wherever that happens. The generator's frame.attrs (margins, covariates) are per partition and not kept."""
    import dask
    import dask.dataframe as dd

    starts = list(range(0, int(n), int(partition_rows)))
    sizes = [min(int(partition_rows), int(n) - start) for start in starts]
    parts = [dask.delayed(_partition)(generator, size, start, (seed, p), arguments)
             for p, (start, size) in enumerate(zip(starts, sizes))]
    meta = _partition(generator, 2, 0, (seed, 0), arguments).iloc[:0]
    return dd.from_delayed(parts, meta=meta, divisions=starts + [int(n) - 1], verify_meta=False)


def _partition(generator, size, start, seed, arguments) -> pd.DataFrame:
    frame = generator(size, seed=seed, **arguments)
    frame.index = pd.RangeIndex(start, start + size)
    frame.attrs = {}
    return frame
