import numpy as np
import pytest

import counterpoise as cpz
from counterpoise.basis import NystromBasis, gaussian_kernel, interactions, moments, nystrom, standardize
from counterpoise.datasets import kim2023
from counterpoise.errors import InputError

COVARIATES = ["X1", "X2", "X3", "X4", "X5", "X6"]


@pytest.fixture(scope="module")
def X400():
    return kim2023(400, seed=3)[COVARIATES].to_numpy()


def relative_error(K, approx):
    return np.linalg.norm(K - approx) / np.linalg.norm(K)


def test_moments_powers_skip_binary_columns():
    X = np.array([[1.0, 0.0, 2.0], [2.0, 1.0, -1.0], [3.0, 1.0, 0.5]])
    M, names = moments(X, ["a", "b", "c"], degree=3)
    assert names == ["a", "b", "c", "a^2", "c^2", "a^3", "c^3"]
    np.testing.assert_array_equal(M, np.column_stack([X, X[:, 0] ** 2, X[:, 2] ** 2, X[:, 0] ** 3, X[:, 2] ** 3]))
    M1, names1 = moments(X, ["a", "b", "c"], degree=1)
    np.testing.assert_array_equal(M1, X)
    assert names1 == ["a", "b", "c"]


def test_interactions_pairs_in_order():
    X = np.arange(12.0).reshape(4, 3)
    M, names = interactions(X, ["x", "y", "z"])
    assert names == ["x:y", "x:z", "y:z"]
    np.testing.assert_array_equal(M, np.column_stack([X[:, 0] * X[:, 1], X[:, 0] * X[:, 2], X[:, 1] * X[:, 2]]))


def test_expansions_validate_names_and_degree():
    X = np.ones((3, 2)) + np.eye(3, 2)
    with pytest.raises(InputError, match="names"):
        moments(X, ["a"])
    with pytest.raises(InputError, match="names"):
        interactions(X, ["a", "b", "c"])
    with pytest.raises(InputError, match="degree"):
        moments(X, ["a", "b"], degree=0)


def test_standardize():
    X = np.array([[1.0, 10.0], [2.0, 30.0], [6.0, 20.0]])
    Z, mean, sd = standardize(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-15)
    np.testing.assert_allclose(Z.std(axis=0), 1)
    np.testing.assert_allclose(mean, [3.0, 20.0])
    np.testing.assert_allclose(sd, X.std(axis=0, ddof=0))
    with pytest.raises(InputError, match="column 1 is constant"):
        standardize(np.array([[1.0, 5.0], [2.0, 5.0]]))


def test_gaussian_kernel_matches_double_loop():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    expected = np.array([[np.exp(-np.sum((a - b) ** 2) / 2.5) for b in B] for a in A])
    np.testing.assert_allclose(gaussian_kernel(A, B, 2.5), expected, rtol=1e-12)
    np.testing.assert_allclose(np.diag(gaussian_kernel(A, A, 2.5)), 1.0)


def test_gaussian_kernel_validates():
    with pytest.raises(InputError, match="bandwidth"):
        gaussian_kernel(np.ones((2, 2)), np.ones((2, 2)), 0)
    with pytest.raises(InputError, match="columns"):
        gaussian_kernel(np.ones((2, 2)), np.ones((2, 3)), 1.0)


def test_nystrom_close_to_best_rank_s_and_improves_with_m(X400):
    Z, _, _ = standardize(X400)
    K = gaussian_kernel(Z, Z, bandwidth=Z.shape[1])
    s = 40
    eigenvalues = np.linalg.eigvalsh(K)[::-1]
    best = np.sqrt(np.sum(eigenvalues[s:] ** 2)) / np.linalg.norm(K)
    errors = [
        np.mean([relative_error(K, nystrom(X400, m=m, l=l, s=s, seed=seed, bandwidth="p").approximation())
                 for seed in range(5)])
        for m, l in [(60, 50), (150, 100), (350, 200)]
    ]
    # Measured: best 0.0341; Nystrom 0.068, 0.040, 0.0343.
    assert errors[0] > errors[1] > errors[2] >= best
    assert errors[0] < 2.5 * best
    assert errors[2] < 1.05 * best


def test_nystrom_result_fields(X400):
    basis = nystrom(X400, m=100, l=60, s=20, seed=1)
    assert isinstance(basis, NystromBasis)
    assert basis.D.shape == (400, 20)
    assert basis.names == [f"K{j}" for j in range(1, 21)]
    assert (basis.m, basis.l, basis.s, basis.seed, basis.bandwidth) == (100, 60, 20, 1, 12.0)   # default 2p
    assert len(basis.landmarks) == 100 and len(np.unique(basis.landmarks)) == 100
    norms = np.sum(basis.D**2, axis=0)
    np.testing.assert_allclose(norms, basis.eigenvalues, rtol=1e-8)
    assert np.all(np.diff(basis.eigenvalues) <= 0)
    assert basis.D.flags.c_contiguous


def test_nystrom_seeds(X400):
    first = nystrom(X400, m=100, l=60, s=20, seed=7)
    np.testing.assert_array_equal(first.D, nystrom(X400, m=100, l=60, s=20, seed=7).D)
    other = nystrom(X400, m=100, l=60, s=20, seed=8)
    assert not np.array_equal(first.landmarks, other.landmarks)
    assert not np.allclose(first.approximation(), other.approximation())


def test_nystrom_chunking_and_float32_agree(X400):
    reference = nystrom(X400, m=100, l=60, s=20).approximation()
    np.testing.assert_allclose(nystrom(X400, m=100, l=60, s=20, chunk_size=37).approximation(), reference,
                               atol=1e-10)
    single = nystrom(X400, m=100, l=60, s=20, dtype=np.float32)
    assert single.D.dtype == np.float32
    assert relative_error(reference, single.approximation()) < 1e-4  # measured 2e-6


def test_nystrom_is_the_same_on_any_number_of_threads_and_writes_into_out(X400):
    """Each chunk runs with one BLAS thread, so one thread or several give the same bits; `out` receives D."""
    from threadpoolctl import threadpool_limits
    several = nystrom(X400, m=100, l=60, s=20, chunk_size=50)
    with threadpool_limits(limits=1):
        one = nystrom(X400, m=100, l=60, s=20, chunk_size=50)
    np.testing.assert_array_equal(several.D, one.D)
    wide = np.full((400, 23), 7.0)
    into = nystrom(X400, m=100, l=60, s=20, chunk_size=50, out=wide[:, :20])
    assert np.shares_memory(into.D, wide)
    np.testing.assert_array_equal(wide[:, :20], several.D)
    assert np.all(wide[:, 20:] == 7.0)
    with pytest.raises(InputError, match="out must be a float64 array of shape"):
        nystrom(X400, m=100, l=60, s=20, out=np.empty((400, 19)))


def test_nystrom_unstandardized_and_explicit_bandwidth(X400):
    basis = nystrom(X400, m=100, l=60, s=20, standardize=False, bandwidth=10.0)
    K = gaussian_kernel(X400, X400, 10.0)
    assert basis.bandwidth == 10.0
    assert relative_error(K, basis.approximation()) < 0.1  # measured 0.053; best rank-20 error is 0.050


def test_nystrom_bad_data(X400):
    X = X400.copy()
    X[5, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        nystrom(X, m=100, l=60, s=20)
    X = X400.copy()
    X[:, 2] = 1.5
    for standardize_first in (True, False):
        with pytest.raises(InputError, match="column 2 is constant"):
            nystrom(X, m=100, l=60, s=20, standardize=standardize_first)


@pytest.mark.parametrize("change, word", [
    ({"s": 60}, "s < l < m"),
    ({"l": 100}, "s < l < m"),
    ({"m": 401}, "m \\(number of landmarks\\) must be <= the number of rows"),
    ({"bandwidth": -1.0}, "bandwidth"),
    ({"kernel": "laplace"}, "kernel"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_nystrom_bad_arguments(X400, change, word):
    with pytest.raises(InputError, match=word):
        nystrom(X400, **{"m": 100, "l": 60, "s": 20, **change})


def test_nystrom_refuses_singular_landmark_matrix():
    # Five distinct rows repeated: W has rank at most 5, so keeping l = 10 eigenpairs is impossible.
    X = np.repeat(np.random.default_rng(0).normal(size=(5, 3)), 20, axis=0)
    with pytest.raises(InputError, match="lower l"):
        nystrom(X, m=30, l=10, s=5)


def test_keyed_landmarks_follow_the_rows_not_their_order():
    """With row labels as keys the same data in another row order gives the same basis, row for row, and
    kernel_sbw the same weights (it passes the data's index)."""
    X = np.random.default_rng(2).standard_normal((400, 3))
    keys = np.arange(1000, 1400)
    order = np.random.default_rng(5).permutation(400)
    a = nystrom(X, m=50, l=30, s=10, seed=3, keys=keys)
    b = nystrom(X[order], m=50, l=30, s=10, seed=3, keys=keys[order])
    np.testing.assert_array_equal(np.sort(keys[a.landmarks]), np.sort(keys[order][b.landmarks]))
    np.testing.assert_allclose(b.D, a.D[order], atol=1e-10)
    assert not np.array_equal(nystrom(X, m=50, l=30, s=10, seed=4, keys=keys).landmarks, a.landmarks)  # seeded
    data = kim2023(800, seed=6)
    cov = ["X1", "X2", "X3", "X4", "X5", "X6"]
    w = cpz.kernel_sbw(data, treatment="A", covariates=cov, m=60, l=40, s=20, delta=0.05).solve().weights
    shuffled = data.sample(frac=1.0, random_state=7)
    v = cpz.kernel_sbw(shuffled, treatment="A", covariates=cov, m=60, l=40, s=20, delta=0.05).solve().weights
    np.testing.assert_allclose(v.loc[w.index], w, atol=1e-9 * w.max())


def test_landmark_eigenvectors_basis_is_c_times_u(X400):
    basis = nystrom(X400, construction="landmark_eigenvectors", bandwidth="2p", seed=4)
    assert (basis.m, basis.l, basis.s, basis.D.shape) == (100, 50, None, (400, 50))     # the public code's sizes
    Z = (X400 - X400.mean(axis=0)) / X400.std(axis=0)
    C = np.array([[np.exp(-np.sum((z - Z[i]) ** 2) / 12.0) for i in basis.landmarks] for z in Z])   # 2p = 12
    evals, evecs = np.linalg.eigh(C[basis.landmarks])
    U = evecs[:, ::-1][:, :50]
    np.testing.assert_allclose(basis.eigenvalues, evals[::-1][:50], rtol=1e-10)
    # eigenvectors have arbitrary signs: compare column by column up to sign
    expected = C @ U
    signs = np.sign(np.sum(basis.D * expected, axis=0))
    np.testing.assert_allclose(basis.D, expected * signs, atol=1e-9)
    assert basis.construction == "landmark_eigenvectors" and basis.bandwidth == 12.0


def test_bandwidth_rules(X400):
    assert nystrom(X400, m=40, l=20, s=10, bandwidth="p").bandwidth == 6.0
    np.testing.assert_array_equal(nystrom(X400, m=40, l=20, s=10, bandwidth="2p").D,
                                  nystrom(X400, m=40, l=20, s=10, bandwidth=12.0).D)
    with pytest.raises(InputError, match="bandwidth must be a positive number or one of"):
        nystrom(X400, m=40, l=20, s=10, bandwidth="3p")
    with pytest.raises(InputError, match="s \\(the rank-s step\\) belongs to"):
        nystrom(X400, construction="landmark_eigenvectors", s=10)
    with pytest.raises(InputError, match="construction"):
        nystrom(X400, construction="public")


def test_kernel_sbw_means_keep_their_own_tolerance_in_sd_units():
    data = kim2023(1500, seed=8)
    prob = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, delta=0.002, delta_scale="raw", m=100, l=60,
                          s=30)
    assert float(np.max(prob.get("mean_delta"))) == 0.02           # SD units, not the raw 0.002
    sol = prob.solve(backend="cvxpy")
    means = sol.balance.loc[("control", COVARIATES), "smd_after"]
    assert np.abs(means).max() <= 0.02 + 1e-6
    treated_sd = data.loc[data.A == 1, COVARIATES].std().to_numpy()
    control_means = sol.weights @ data.loc[data.A == 0, COVARIATES]
    assert np.all(np.abs(control_means - data.loc[data.A == 1, COVARIATES].mean()) <= 0.02 * treated_sd + 1e-6)
    prob.path(delta=[0.004, 0.003])
    assert float(np.max(prob.get("mean_delta"))) == 0.02           # a path over delta leaves the means alone
    public = cpz.kernel_sbw(data, treatment="A", covariates=COVARIATES, construction="landmark_eigenvectors",
                            bandwidth="2p", delta=0.05)
    assert public.solve().status == "optimal"
