"""Basis expansions whose columns become balance terms.

Low-dimensional expansions (`moments`, `interactions`), column `standardize`-ation, the Gaussian
kernel and its rank-restricted Nystrom approximation (`nystrom`), which gives an n x s matrix D with
D D' ~ K, the n x n kernel matrix, without ever forming K: Algorithm 1, steps 2-5, of Kim, Niknam &
Zubizarreta (kernel-based stable balancing weights), after Wang et al. (2019).
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from counterpoise.backends.blocks import DaskBlocks
from counterpoise.columns import value_range, widest
from counterpoise.diagnostics import weighted_sds
from counterpoise.errors import InputError
from counterpoise.threads import blas_threads, one_blas_thread
from counterpoise.validation import POSITIVE, check, integer, is_dask_array, matrix, one_of


def _check_names(names, p):
    names = [str(name) for name in names]
    if len(names) != p:
        raise InputError(f"names has {len(names)} entries but X has {p} columns")
    return names


def _check_not_constant(X):
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0)
    if constant.size:
        raise InputError(f"X column {constant[0]} is constant; drop it before standardizing or kernel balancing")


def moments(X, names, degree=2, binary=None):
    """Columns of X followed by X_j^k, k = 2..degree, for every non-binary column j.

    Binary (0/1) columns get no powers since x^k = x (`binary`: which columns are, when X is one piece of larger
    data; by default read off X). Returns (M, names), the powers named "X1^2". Columns are ordered by power: X,
    then all squares, then all cubes, ...
    """
    X = matrix(X)
    names = _check_names(names, X.shape[1])
    degree = check("degree", degree, integer(1))
    binary = np.all((X == 0) | (X == 1), axis=0) if binary is None else np.asarray(binary, dtype=bool)
    cols = np.flatnonzero(~binary)
    powers = range(2, degree + 1)
    M = np.hstack([X] + [X[:, cols] ** k for k in powers])
    return M, names + [f"{names[j]}^{k}" for k in powers for j in cols]


def interactions(X, names):
    """All pairwise products X_j X_k, j < k, in lexicographic (j, k) order. Returns (M, names "X1:X2")."""
    X = matrix(X)
    names = _check_names(names, X.shape[1])
    j, k = np.triu_indices(X.shape[1], 1)
    return X[:, j] * X[:, k], [f"{names[a]}:{names[b]}" for a, b in zip(j, k)]


def expanded(X, names, degree=1, products=False, binary=None):
    """A balancing problem's functions of the covariates X (named `names`): X, its powers up to `degree` (none of
    the `binary` columns: read off X by default, given when X is one piece of larger data) and, with `products`,
    its pairwise interactions. Returns (B, names)."""
    B, columns = moments(X, names, degree=degree, binary=binary) if degree > 1 else (X, list(names))
    if products:
        M, pairs = interactions(X, names)
        B, columns = np.hstack([B, M]), columns + pairs
    return B, columns


def _moments(X):
    """Column means and population SDs, in row chunks (no n x p temporary)."""
    _check_not_constant(X)
    return X.mean(axis=0), weighted_sds(X, np.ones((len(X), 1)), sample=False)[0]


def _standardized(X):
    mean, sd = _moments(X)
    Z = np.subtract(X, mean)
    Z /= sd
    return Z, mean, sd


def standardize(X):
    """Z = (X - mean) / sd column by column, with the population sd (ddof=0). Returns (Z, mean, sd).

    Raises InputError naming the first constant column (sd = 0).
    """
    return _standardized(matrix(X))


def _landmarks(n, m, seed, keys):
    """m landmark rows: uniform positions, or (with keys) the rows of the m smallest seeded label hashes."""
    if keys is None:
        return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
    keys = pd.Index(keys)
    if len(keys) != n or not keys.is_unique:
        raise InputError(f"keys must hold {n} distinct labels, one per row of X")
    return np.argsort(_label_hashes(keys, seed), kind="stable")[:m]


def _label_hashes(keys, seed) -> np.ndarray:
    """A seeded 64-bit hash of each label (pandas' hash of the label, then a seeded splitmix64 mix)."""
    labels = pd.util.hash_pandas_object(pd.Index(keys).to_series(index=None), index=False).to_numpy()
    z = labels ^ np.uint64(np.random.default_rng(seed).integers(0, 2 ** 63))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _partitioned_landmarks(keys, sizes, m, seed):
    """The landmarks of `_landmarks` with keys, for labels held in partitions (`keys`: one Delayed Index per row
    chunk, of `sizes` rows): each partition's m smallest hashes with their global positions, then the m smallest
    of those (ties broken by position, as the stable sort does in memory)."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    found = DaskBlocks([(index,) for index in keys]).collect(
        _smallest_hashes, [dict(m=m, seed=seed, start=int(start)) for start in starts])
    hashes = np.concatenate([h for h, _ in found])
    positions = np.concatenate([q for _, q in found])
    order = np.lexsort((positions, hashes))[:m]
    if len(np.unique(hashes)) < len(hashes):
        raise InputError("keys must hold distinct labels, one per row of X")
    return positions[order]


def _smallest_hashes(index, m, seed, start):
    hashes = _label_hashes(index, seed)
    chosen = np.argsort(hashes, kind="stable")[:m]
    return hashes[chosen], chosen + start


def _check_bandwidth(bandwidth):
    return float(check("bandwidth", bandwidth, POSITIVE))


def _gaussian(A, B, bandwidth, out=None):
    """exp(-||a_i - b_j||^2 / bandwidth) from ||a||^2 + ||b||^2 - 2 a.b, as one BLAS product (into `out`, a
    len(A) x len(B) buffer, when given: fresh memory costs as much as the product here).

    The rows [a, ||a||^2, 1] . [2b, -1, -||b||^2] / bandwidth give -||a - b||^2 / bandwidth directly;
    rounding can push it above 0, hence the clip (distance >= 0) before exponentiating in place.
    """
    a2 = np.einsum("ij,ij->i", A, A)[:, None]
    b2 = np.einsum("ij,ij->i", B, B)[:, None]
    K = np.matmul(np.hstack([A, a2, np.ones_like(a2)]),
                  np.hstack([2 * B, -np.ones_like(b2), -b2]).T / bandwidth, out=out)
    np.minimum(K, 0.0, out=K)
    return np.exp(K, out=K)


def gaussian_kernel(A, B, bandwidth):
    """K_ij = exp(-||a_i - b_j||^2 / bandwidth) for rows a_i of A and b_j of B (Hazlett 2020 / kbal convention)."""
    A = matrix(A, "A")
    B = matrix(B, "B")
    if A.shape[1] != B.shape[1]:
        raise InputError(f"A and B must have the same number of columns, got {A.shape[1]} and {B.shape[1]}")
    return _gaussian(A, B, _check_bandwidth(bandwidth))


@dataclass(frozen=True)
class NystromBasis:
    """A Nystrom basis D of a kernel matrix, columns "K1", "K2", ... (see `nystrom`).

    construction "rank_restricted": D is n x s with D D' ~ K, columns in decreasing norm, and eigenvalues are the
    top-s eigenvalues of G = R'R (squared singular values of R), so that ||D[:, j]||^2 = eigenvalues[j].
    construction "landmark_eigenvectors": D = C U_l is n x l (s is None), eigenvalues the top l of W.
    landmarks are the sampled row indices.
    """

    D: np.ndarray
    names: list
    landmarks: np.ndarray
    eigenvalues: np.ndarray
    bandwidth: float
    m: int
    l: int
    s: int | None
    seed: object
    construction: str = "rank_restricted"

    def approximation(self):
        """The n x n approximate kernel matrix D D'. Materializes n^2 numbers: for small n only."""
        return self.D @ self.D.T


def _over_chunks(n, chunk_size, work, threads):
    """[work(rows) for each chunk of chunk_size rows], in chunk order, on `threads` threads (the caller holds BLAS
    to one thread, so the exponentials run in parallel too and every chunk's numbers are the same whatever the
    number of threads)."""
    chunks = [slice(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]
    if threads == 1 or len(chunks) == 1:
        return [work(rows) for rows in chunks]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, chunks))


def _kernel_times(X, standardization, centres, bandwidth, Q, chunk_size, threads=1, into=None):
    """K(Z, centres) Q chunk by chunk, Z = (X - shift) / scale standardized chunk by chunk (in centres' dtype):
    written into `into`, or (None) the sum of the chunks' Gram matrices (K Q)'(K Q). Each thread keeps its own
    kernel and product buffers: fresh memory costs as much as the products."""
    shift, scale = standardization
    buffers = threading.local()

    def work(rows):
        size = rows.stop - rows.start
        if getattr(buffers, "kernel", None) is None or len(buffers.kernel) < size:
            buffers.kernel = np.empty((size, len(centres)), dtype=centres.dtype)
            buffers.product = np.empty((size, Q.shape[1]), dtype=centres.dtype)
        Z = ((X[rows] - shift) / scale).astype(centres.dtype, copy=False)
        product = np.matmul(_gaussian(Z, centres, bandwidth, out=buffers.kernel[:size]), Q,
                            out=buffers.product[:size])
        if into is None:
            return product.T @ product
        into[rows] = product
    return _over_chunks(len(X), chunk_size, work, threads)


def _block_gram(X, **arguments):
    """(C Q)'(C Q) of one row block of X (one thread: the partitions run in parallel)."""
    q = arguments["Q"].shape[1]
    return np.sum(_kernel_times(X, **arguments), axis=0, dtype=np.float64) if len(X) else np.zeros((q, q))


def _block_product(X, **arguments):
    """C Q of one row block of X."""
    into = np.empty((len(X), arguments["Q"].shape[1]), dtype=arguments["centres"].dtype)
    _kernel_times(X, into=into, **arguments)
    return into


def _row_chunks(X) -> DaskBlocks:
    """The row chunks of a dask array X as blocks, for sums over them on the cluster."""
    return DaskBlocks([(block,) for block in X.to_delayed().ravel()])


def _partitioned_moments(X):
    """Column means and population SDs of a dask array (two passes over its row chunks), after checking that no
    column is constant."""
    _check_partitions_not_constant(X)
    mean = _row_chunks(X).reduce(_column_sums) / X.shape[0]
    return mean, np.sqrt(_row_chunks(X).reduce(_squared_deviations, mean=mean) / X.shape[0])


def _column_sums(X):
    return X.sum(axis=0)


def _squared_deviations(X, mean):
    return ((X - mean) ** 2).sum(axis=0)


def _check_partitions_not_constant(X):
    low, high = _row_chunks(X).reduce(value_range, combine=widest)
    constant = np.flatnonzero(high - low == 0)
    if constant.size:
        raise InputError(f"X column {constant[0]} is constant; drop it before standardizing or kernel balancing")


def _output(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.dtype(dtype):
        raise InputError(f"out must be a {np.dtype(dtype)} array of shape {shape}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    return out


#: The Nystrom bases `nystrom` builds: the paper's Algorithm 1, and the authors' public code's.
NYSTROM_CONSTRUCTIONS = ("rank_restricted", "landmark_eigenvectors")

#: Bandwidth rules: "p" = the number of columns (Algorithm 1), "2p" = twice that (kbal's, the public code's).
BANDWIDTH_RULES = {"p": 1, "2p": 2}


def nystrom_sizes(construction, n, m=None, l=None, s=None):
    """m, l, s with the construction's defaults filled in (s is None for landmark_eigenvectors), checked against
    each other and the n rows."""
    if construction == "rank_restricted":
        m, l, s = (300 if m is None else m), (200 if l is None else l), (100 if s is None else s)
    elif s is not None:
        raise InputError("s (the rank-s step) belongs to construction='rank_restricted'; the landmark_eigenvectors "
                         "basis has l columns")
    else:
        m = (100 if n < 100_000 else 250) if m is None else m
        l = round(m / 2) if l is None else l
    m = check("m", m, integer(3))
    l = check("l", l, integer(2))
    if m > n:
        raise InputError(f"m (number of landmarks) must be <= the number of rows of X, got m={m} > n={n}")
    if s is None:
        if not l < m:
            raise InputError(f"need l < m, got l={l}, m={m}")
    else:
        s = check("s", s, integer(1))
        if not s < l < m:
            raise InputError(f"need s < l < m, got s={s}, l={l}, m={m}")
    return m, l, s


def _bandwidth(bandwidth, p):
    if isinstance(bandwidth, str):
        if bandwidth not in BANDWIDTH_RULES:
            raise InputError(f"bandwidth must be a positive number or one of {sorted(BANDWIDTH_RULES)}, got "
                             f"{bandwidth!r}")
        return float(BANDWIDTH_RULES[bandwidth] * p)
    return _check_bandwidth(2.0 * p if bandwidth is None else bandwidth)


def nystrom(X, m=None, l=None, s=None, kernel="gaussian", bandwidth="2p", construction="rank_restricted",
            standardize=True, seed=0, dtype=np.float64, chunk_size=32_768, keys=None, out=None):
    """A Nystrom basis of the Gaussian kernel matrix K(x, y) = exp(-||x - y||^2 / bandwidth) of the rows of X.

    1. Standardize the columns of X (if standardize). bandwidth: a number, or "2p" (twice the number of columns:
       the default, as kbal and the paper's public code) or "p" (Algorithm 1 as printed); see `kernel_sbw`.
    2. Sample m landmark rows I uniformly without replacement (numpy.random.default_rng(seed)); with `keys`
       (one distinct label per row, e.g. a DataFrame's index), the m rows whose labels have the smallest seeded
       hash, in that order, so the same data in another row order gives the same basis, row for row.
    3. W = K(X_I, X_I) = U Lambda U'; keep the top l eigenpairs. C = K(X, X_I) (n x m).

    construction="rank_restricted" (Kim, Niknam & Zubizarreta's Algorithm 1, after Wang et al. 2019; defaults
    m=300, l=200, s=100):
    4. R = C P with P = U_l Lambda_l^{-1/2} (m x l); G = R'R = V S^2 V', keep the top s eigenvectors V_s.
    5. D = R V_s, n x s, so that D D' = (C W_l^+ C')_s, the best rank-s approximation of the
       rank-l-regularized Nystrom matrix. eigenvalues: the top s of G (||D[:, j]||^2).
    construction="landmark_eigenvectors" (the authors' public code, osqp-kernel-sbw; defaults m=100 below
    100,000 rows and 250 above, l = m/2, no s):
    4. D = C U_l, n x l: no Lambda^{-1/2} and no rank-s step, so column j has scale about Lambda_j and a common
       tolerance on every column is in effect weighted by the spectrum. eigenvalues: the top l of W.

    C is never held whole, and neither is R: one pass over chunk_size-row chunks evaluates the kernel and sums
    G = R'R chunk by chunk, a second evaluates it again and writes D = C (P V_s) (landmark_eigenvectors: one pass,
    D = C U_l), so memory holds D and a few chunks, never n l numbers. The chunks run on as many threads as BLAS
    has, each with one BLAS thread, so the basis is the same, to the last bit, whatever the number of threads.
    dtype (e.g. numpy.float32) sets the precision of X, C and D; W, its eigendecomposition and G are always float64.
    out: an n x s (landmark_eigenvectors: n x l) array of that dtype to write D into, e.g. the leading columns of
    a caller's larger matrix, so that D is not copied there afterwards.
    Raises InputError unless s < l < m <= n (l < m <= n for landmark_eigenvectors), X is finite without constant
    columns, and the top l eigenvalues of W exceed 1e-12 times the largest (lower l otherwise).
    X may be a dask array: the standardization and the Gram sum G are reductions over its row chunks, the landmark
    rows (the same positions as in memory) are gathered to the client, and D comes back as a lazy dask array of
    X's row chunks (each chunk's D computed where the chunk lives); `keys` is then a list of one Index (Delayed)
    per row chunk, e.g. the index of each partition of the dask DataFrame X comes from.
    """
    if kernel != "gaussian":
        raise InputError(f"kernel must be 'gaussian', got {kernel!r}")
    construction = check("construction", construction, one_of(NYSTROM_CONSTRUCTIONS))
    partitioned = is_dask_array(X)
    if partitioned and out is not None:
        raise InputError("out= needs X in memory; a dask array's basis is a dask array of its row chunks")
    X = X.rechunk({1: -1}) if partitioned else matrix(X)
    n, p = X.shape
    m, l, s = nystrom_sizes(construction, n, m, l, s)
    chunk_size = check("chunk_size", chunk_size, integer(1))
    moments_of = _partitioned_moments if partitioned else _moments
    shift, scale = moments_of(X) if standardize else (np.zeros(p), np.ones(p))   # applied chunk by chunk
    if not standardize:
        (_check_partitions_not_constant if partitioned else _check_not_constant)(X)
    bandwidth = _bandwidth(bandwidth, p)

    if partitioned and keys is not None:       # keys: one Index per row chunk (a dask DataFrame's partitions)
        landmarks = _partitioned_landmarks(keys, X.chunks[0], m, seed)
    else:
        landmarks = _landmarks(n, m, seed, keys)
    width = l if s is None else s
    D = None if partitioned else _output(out, (n, width), dtype)
    threads = blas_threads()
    with one_blas_thread():       # see the docstring: the same bits on any thread count
        rows = X[landmarks].compute() if partitioned else X[landmarks]
        centres = (rows - shift) / scale
        evals, evecs = np.linalg.eigh(_gaussian(centres, centres, bandwidth))
        lam = np.ascontiguousarray(evals[::-1][:l])
        if lam[-1] <= 1e-12 * lam[0]:
            raise InputError(f"l={l} is too large: eigenvalue {l} of the landmark kernel matrix W is "
                             f"{lam[-1]:.3g}, at most 1e-12 times the largest ({lam[0]:.3g}); lower l")
        U = np.ascontiguousarray(evecs[:, ::-1][:, :l])

        arguments = dict(standardization=(shift, scale), centres=centres.astype(dtype), bandwidth=bandwidth,
                         chunk_size=chunk_size)

        def gram_of(Q):          # (C Q)'(C Q), summed over chunks (and partitions)
            if partitioned:
                return _row_chunks(X).reduce(_block_gram, Q=Q.astype(dtype), **arguments)
            return np.sum(_kernel_times(X, Q=Q.astype(dtype), threads=threads, **arguments), axis=0,
                          dtype=np.float64)

        def write(Q):            # D = C Q: into D, or as a dask array of X's row chunks
            if partitioned:
                return X.map_blocks(_block_product, Q=Q.astype(dtype), **arguments, dtype=dtype,
                                    chunks=(X.chunks[0], (Q.shape[1],)))
            _kernel_times(X, Q=Q.astype(dtype), threads=threads, into=D, **arguments)
            return D

        if construction == "landmark_eigenvectors":
            D = write(U)
            eigenvalues = lam
        else:
            P = U / np.sqrt(lam)
            G = gram_of(P)                                                 # R'R with R = C P, R never stored
            g_evals, g_evecs = np.linalg.eigh(G)
            eigenvalues = np.ascontiguousarray(g_evals[::-1][:s])
            D = write(P @ g_evecs[:, ::-1][:, :s])                         # D = R V_s = C (P V_s): a second pass
    return NystromBasis(D=D, names=[f"K{j + 1}" for j in range(D.shape[1])], landmarks=landmarks,
                        eigenvalues=eigenvalues, bandwidth=bandwidth, m=m, l=l, s=s, seed=seed,
                        construction=construction)
