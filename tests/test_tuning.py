"""delta chosen from the data: the bootstrap tuner against a brute-force bootstrap, the tightest delta against a
bisection with cvxpy."""

import numpy as np
import pytest

import counterpoise as cpz
from counterpoise.errors import InputError
from counterpoise.tuning import BootstrapDelta

COVARIATES = ["X1", "X2", "X3", "X4", "X5", "X6"]


@pytest.fixture(scope="module")
def data():
    return cpz.datasets.kim2023(600, overlap="strong", seed=21)


def _brute_force_statistic(data, delta, counts):
    """C(delta) with fresh cvxpy weights and explicit resampled index lists (one per resample's counts)."""
    sol = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=delta).solve(backend="cvxpy")
    controls = data[data.A == 0][COVARIATES].to_numpy()
    treated = data[data.A == 1][COVARIATES]
    target, sd = treated.mean().to_numpy(), treated.std().to_numpy()
    w = sol.weights.to_numpy()
    values = []
    for c in counts:
        index = np.repeat(np.arange(len(w)), c)                 # the resample, unit by unit
        mean = w[index] @ controls[index] / w[index].sum()
        values.append(np.mean(np.abs((mean - target) / sd)))
    return np.mean(values)


def test_bootstrap_delta_matches_a_brute_force_bootstrap(data):
    grid, samples, seed = (0.002, 0.01, 0.05, 0.2), 40, 3
    prob = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta=BootstrapDelta(grid, samples, seed))
    sol = prob.solve()
    tuning = sol.tuning
    n = int((data.A == 0).sum())
    # resample b: n controls drawn with replacement from default_rng((seed, arm 0, b)), as R's sample()
    counts = [np.bincount(np.random.default_rng([seed, 0, b]).integers(0, n, n), minlength=n) for b in range(samples)]
    expected = [_brute_force_statistic(data, d, counts) for d in tuning.grid]
    np.testing.assert_allclose(tuning.statistic, expected, rtol=1e-5)
    assert tuning.delta == tuning.grid[int(np.argmin(expected))]
    assert float(np.max(prob.get("delta"))) == tuning.delta and sol.status == "optimal"
    assert list(tuning.table()["delta"]) == sorted(grid, reverse=True)
    assert sol.max_abs_smd <= tuning.delta + 1e-6


def test_auto_uses_r_sbw_grid(data):
    sol = cpz.sbw(data, treatment="A", covariates=COVARIATES, delta="auto").solve()
    assert sol.tuning.grid == tuple(sorted(cpz.tuning.SBW_GRID, reverse=True)) and sol.tuning.samples == 1000
    assert sol.tuning.delta in cpz.tuning.SBW_GRID


def test_tightest_delta_matches_a_bisection_with_cvxpy():
    # weak overlap, 209 controls, 27 balance functions: exact balance is out of reach
    data = cpz.datasets.kim2023(300, overlap="weak", seed=21)
    options = dict(treatment="A", covariates=COVARIATES, moments=2, interactions=True)
    sol = cpz.sbw(data, **options, delta="tightest").solve()
    tightest = sol.tuning.tightest
    assert sol.status == "optimal" and sol.tuning.delta == pytest.approx(tightest * 1.001 + 1e-9)
    assert sol.max_abs_smd <= sol.tuning.delta + 1e-6

    def feasible(delta):
        fresh = cpz.sbw(data, **options, delta=delta)
        return fresh.solve(backend="cvxpy", raise_on_failure=False).status == "optimal"

    low, high = 0.0, 1.0
    assert feasible(high)
    for _ in range(14):
        middle = (low + high) / 2
        low, high = (low, middle) if feasible(middle) else (middle, high)
    assert low - 1e-4 <= tightest <= high + 1e-4
    assert feasible(tightest * 1.01) and not feasible(tightest * 0.97)


def test_kernel_sbw_tunes_its_basis_delta_and_keeps_the_means_tolerance(data):
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, m=80, l=40, s=20,
                          delta=BootstrapDelta((0.01, 0.05, 0.2), samples=20))
    sol = prob.solve()
    assert sol.tuning.delta in (0.01, 0.05, 0.2) and float(np.max(prob.get("mean_delta"))) == 0.02


def test_bad_tuners_are_refused(data):
    with pytest.raises(InputError, match="delta must be a number, 'auto', 'tightest'"):
        cpz.sbw(data, treatment="A", covariates=COVARIATES, delta="best")
    with pytest.raises(InputError, match="grid"):
        BootstrapDelta(grid=(0.01, -1))
    with pytest.raises(InputError, match="samples"):
        BootstrapDelta(samples=0)
