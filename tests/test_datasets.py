import numpy as np
import pandas as pd
import pytest

from counterpoise.datasets import confounded, cps_like, kim2023, medicare_like, survey_margins
from counterpoise.errors import InputError


def test_columns_and_types():
    df = kim2023(500)
    assert list(df.columns) == ["X1", "X2", "X3", "X4", "X5", "X6", "A", "Y"]
    assert df.shape == (500, 8)
    assert df["A"].dtype == np.int64
    assert set(df["A"].unique()) <= {0, 1}
    assert set(df["X6"].unique()) <= {0.0, 1.0}
    assert list(kim2023(500, transformed=True).columns) == ["X1X3", "X2sq", "X4", "X5", "X6", "A", "Y"]


def test_distribution_matches_design():
    df = kim2023(200_000, seed=1)
    sigma = np.array([[2.0, 1.0, -1.0], [1.0, 1.0, -0.5], [-1.0, -0.5, 1.0]])
    np.testing.assert_allclose(np.cov(df[["X1", "X2", "X3"]].to_numpy().T), sigma, atol=0.03)
    assert df["X4"].between(-3, 3).all()
    assert df["X5"].min() >= 0 and df["X5"].mean() == pytest.approx(1.0, abs=0.02)
    assert df["X6"].mean() == pytest.approx(0.5, abs=0.01)
    # E[(X1 + X2 + X5)^2] = Var(X1 + X2) + E[X5^2] = 5 + 3
    assert df["Y"].mean() == pytest.approx(8.0, rel=0.03)


def test_reproducible_and_seed_dependent():
    pd.testing.assert_frame_equal(kim2023(300, seed=5), kim2023(300, seed=5))
    assert not np.allclose(kim2023(300, seed=5)["X1"], kim2023(300, seed=6)["X1"])


def test_treated_share_by_overlap():
    # Population shares are about 0.321 (weak) and 0.340 (strong), measured at n = 2e6.
    weak = kim2023(100_000, "weak").A.mean()
    strong = kim2023(100_000, "strong").A.mean()
    assert 0.31 < weak < 0.33
    assert 0.33 < strong < 0.35


def test_transformed_columns_are_functions_of_same_draws():
    raw = kim2023(1000, seed=3)
    star = kim2023(1000, seed=3, transformed=True)
    np.testing.assert_array_equal(star["X1X3"], raw["X1"] * raw["X3"])
    np.testing.assert_array_equal(star["X2sq"], raw["X2"] ** 2)
    for col in ["X4", "X5", "X6", "A", "Y"]:
        np.testing.assert_array_equal(star[col], raw[col])


@pytest.mark.parametrize("kwargs, word", [
    ({"n": 1}, "n"),
    ({"n": 10.0}, "n"),
    ({"n": True}, "n"),
    ({"n": 10, "overlap": "medium"}, "overlap"),
])
def test_bad_arguments(kwargs, word):
    with pytest.raises(InputError, match=word):
        kim2023(**kwargs)


def test_confounded_design():
    a = confounded(2000, p=12, seed=3)
    assert a.attrs["covariates"] == [f"X{j}" for j in range(1, 13)]
    assert set(a["A"].unique()) == {0, 1}
    pd.testing.assert_frame_equal(a, confounded(2000, p=12, seed=3))
    assert not a.equals(confounded(2000, p=12, seed=4))
    assert abs(np.corrcoef(a["X1"], a["X2"])[0, 1] - 0.5) < 0.06
    with pytest.raises(InputError, match="p must"):
        confounded(100, p=0)


def test_survey_margins_records_consistent_margins():
    frame = survey_margins(3000, variables=3, levels=4, seed=2)
    margins = frame.attrs["margins"]
    assert list(margins) == ["v1", "v2", "v3"] and frame.attrs["base_weights"] == "d"
    sums = [sum(m.values()) for m in margins.values()]
    np.testing.assert_allclose(sums, sums[0])
    assert survey_margins(3000, variables=3, levels=4, seed=2).equals(frame)


def test_cps_like_reproduces_the_notebook_targets():
    frame = cps_like()
    assert frame.attrs["margins"]["age_group"] == {"35-54": 1447, "0-17": 978, "18-34": 931, "65+": 845, "55-64": 736}
    assert frame.attrs["totals"] == {"weight": 16540779}
    assert frame.attrs["held_out"] == {"is_male": {True: 3003, False: 2664}}


def test_kim2023_reads_the_noise_as_a_variance_or_an_sd():
    n, seed = 4000, 11
    by_variance = kim2023(n, overlap="weak", seed=seed)
    by_sd = kim2023(n, overlap="weak", seed=seed, noise="sd")
    pd.testing.assert_frame_equal(by_variance.drop(columns="A"), by_sd.drop(columns="A"))    # same X and Y draws
    # the assignment by hand, with the generator's draws in order: the noise is the last one
    rng = np.random.default_rng(seed)
    cov = np.array([[2, 1, -1], [1, 1, -0.5], [-1, -0.5, 1]])
    x1, x2, x3 = (rng.standard_normal((n, 3)) @ np.linalg.cholesky(cov).T).T
    x4, x5, x6 = rng.uniform(-3, 3, n), rng.chisquare(1.0, n), rng.integers(0, 2, n).astype(float)
    rng.standard_normal(n)                                                    # the outcome's noise
    z = rng.standard_normal(n)
    signal = x1**2 + 2 * x2**2 - 2 * x3**2 - (x4 + 1) ** 3 - 0.5 * np.log(x5 + 10) + x6 - 1.5
    np.testing.assert_array_equal(by_variance["A"], (signal + np.sqrt(30) * z > 0).astype(int))
    np.testing.assert_array_equal(by_sd["A"], (signal + 30 * z > 0).astype(int))
    with pytest.raises(InputError, match="noise"):
        kim2023(10, noise="variances")


def test_medicare_like_has_the_case_study_shape():
    """The stand-in for the kernel SBW paper's case study: 87 covariates, about 16.3% treated, imbalance mostly in
    the area-level characteristics (TASMD up to about 0.4), reproducible from its seed."""
    data = medicare_like(20_000, seed=3)
    covariates = data.attrs["covariates"]
    assert len(covariates) == 87 and {"A", "Y"} <= set(data.columns)
    assert abs(data["A"].mean() - 0.163) < 0.03
    treated, control = data.loc[data.A == 1, covariates], data.loc[data.A == 0, covariates]
    tasmd = (control.mean() - treated.mean()).abs() / treated.std()
    assert 0.25 < tasmd.max() < 0.6 and tasmd.idxmax().startswith("area")
    assert sum(data[c].isin([0, 1]).all() for c in covariates) >= 65          # mostly binary
    pd.testing.assert_frame_equal(data, medicare_like(20_000, seed=3))
