"""Row-block reductions: the one interface through which the Newton methods and FISTA touch the data.

    M = diag(a) [B_C diag(1/s), c 1]    (n x k: B the builder's matrix, kept as given, never copied; C a subset of
                                         its columns, a per-row factors, s column scales, c an optional constant)

The low-dimensional methods need only sums over rows: M'w (k numbers), the Gram matrix M_F' diag(h) M_F over a
subset F of the columns and the rows where h > 0 (k x k), and M y (one number per row, which the caller then
reduces again). `Rows` computes them block by block: a numpy array is one block for the products and row chunks of
about CHUNK_BYTES for the Gram matrix (so its temporaries stay small, and below the size at which the allocator
maps fresh pages for each one); a partitioned array supplies its partitions as the
blocks. Scales and the constant column are folded into the small vectors, so nothing n x k is built per solve.
A scipy sparse B (mostly-zero indicator columns) is one block with the same operations.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

CHUNK_BYTES = 8 * 2 ** 20


def _chunk_rows(B) -> int:
    return max(256, CHUNK_BYTES // (8 * max(B.shape[1], 1)))


class Rows:
    """The rows of M = diag(a) [B_C diag(1/s), c 1] and the sums over them (B_C: the columns C of B, all by default)."""

    def __init__(self, B, column_scale=None, row_factor=None, constant=None, columns=None):
        self.B = B
        self.n = B.shape[0]
        self.columns = None if columns is None else np.asarray(columns)
        self.p = B.shape[1] if columns is None else len(self.columns)
        self.column_scale = None if column_scale is None else np.asarray(column_scale, dtype=float)
        self.inverse_scale = np.ones(self.p) if column_scale is None else 1.0 / self.column_scale
        self.row_factor = row_factor
        self.constant = constant
        self.k = self.p + (constant is not None)
        self._sparse_gram = None           # a sparse B's Gram machinery, set up on the first gram()

    def _coefficients(self, y):
        """B_C diag(1/s) y as B z: z holds y / s on the columns C and 0 elsewhere."""
        scaled = y[: self.p] * self.inverse_scale
        if self.columns is None:
            return scaled
        z = np.zeros(self.B.shape[1])
        z[self.columns] = scaled
        return z

    def _rows(self, v):
        return v if self.row_factor is None else v * self.row_factor

    def dot(self, y) -> np.ndarray:
        """M y, one value per row."""
        v = self.B @ self._coefficients(y) if self.p else np.zeros(self.n)
        if self.constant is not None:
            v = v + self.constant * y[self.p]
        return self._rows(v)

    def tdot(self, w) -> np.ndarray:
        """M'w, one value per column."""
        w = self._rows(w)
        Bw = self.B.T @ w
        Bw = (Bw if self.columns is None else Bw[self.columns]) * self.inverse_scale
        return np.append(Bw, self.constant * w.sum()) if self.constant is not None else Bw

    def abs_dot(self, v) -> np.ndarray:
        """|M| v (elementwise absolute values of M) for v >= 0, one value per row, in row chunks."""
        z = np.abs(self._coefficients(v))
        if scipy.sparse.issparse(self.B):
            out = abs(self.B) @ z
        else:
            chunk = _chunk_rows(self.B)
            out = np.concatenate([np.abs(self.B[start: start + chunk]) @ z for start in range(0, self.n, chunk)])
        if self.constant is not None:
            out = out + abs(self.constant) * v[self.p]
        return out if self.row_factor is None else out * np.abs(self.row_factor)

    def cross(self, F) -> np.ndarray:
        """F'M for an n x m matrix F (dense or scipy sparse): m x k."""
        F = F if self.row_factor is None else scipy.sparse.csc_matrix(F).multiply(self.row_factor[:, None])
        FB = F.T @ self.B
        FB = np.asarray(FB.toarray() if scipy.sparse.issparse(FB) else FB)
        FB = (FB if self.columns is None else FB[:, self.columns]) * self.inverse_scale
        if self.constant is None:
            return FB
        return np.hstack([FB, self.constant * np.asarray(F.sum(axis=0)).reshape(-1, 1)])

    def subset(self, rows) -> "Rows":
        """The same M on the rows `rows` only (their B rows copied: a subsample's working matrix)."""
        factor = None if self.row_factor is None else self.row_factor[rows]
        return Rows(self.B[rows], self.column_scale, factor, self.constant, self.columns)

    def take(self, rows) -> np.ndarray:
        """The dense rows M[rows] (a copy: a working set, a chunk, a solver's own matrix)."""
        B = self.B[rows]
        B = B.toarray() if scipy.sparse.issparse(B) else np.asarray(B, dtype=float)
        block = (B if self.columns is None else B[:, self.columns]) * self.inverse_scale
        if self.constant is not None:
            block = np.hstack([block, np.full((len(block), 1), self.constant)])
        return block if self.row_factor is None else block * self.row_factor[rows][:, None]

    def gram(self, h=None, columns=None) -> np.ndarray:
        """M_F' diag(h) M_F for the columns F of M (increasing indices; default all), with h >= 0 (None: h = 1):
        a dense B is read in row chunks, only the rows with h > 0."""
        columns = np.arange(self.k) if columns is None else np.asarray(columns)
        weights = np.ones(self.n) if h is None else h
        weights = weights if self.row_factor is None else weights * self.row_factor ** 2
        bal = columns[columns < self.p]
        of_B = bal if self.columns is None else self.columns[bal]      # the same columns, counted in B
        whole = self.columns is None and len(bal) == self.p
        with_constant = self.constant is not None and len(columns) > len(bal)
        m = len(columns)
        H = np.zeros((m, m))
        scale = self.inverse_scale[bal]
        if scipy.sparse.issparse(self.B):
            if self._sparse_gram is None:
                self._sparse_gram = _SparseGram(self.B)
            G = self._sparse_gram(weights)                              # over all of B's columns: k x k
            H[: len(bal), : len(bal)] = G if whole else G[np.ix_(of_B, of_B)]
            if with_constant:
                H[-1, : len(bal)] = self.constant * (self.B.T @ weights)[of_B]
                H[-1, -1] = self.constant ** 2 * weights.sum()
        else:
            chunk = _chunk_rows(self.B)
            for start in range(0, self.n, chunk):
                h_block = weights[start: start + chunk]
                idx = np.flatnonzero(h_block > 0)
                if not len(idx):
                    continue
                root = np.sqrt(h_block[idx])
                X = self.B[start: start + chunk][idx]                   # one copy of the chunk's rows with h > 0
                if not whole:
                    X = X[:, of_B]
                X *= root[:, None]
                if len(bal):
                    H[: len(bal), : len(bal)] += X.T @ X     # numpy's gemm: faster than scipy's dsyrk, which copies
                if with_constant:
                    H[-1, : len(bal)] += self.constant * (root @ X)
                    H[-1, -1] += self.constant ** 2 * root @ root
        H[: len(bal), : len(bal)] *= np.outer(scale, scale)      # the column scales, applied to k x k numbers
        if with_constant:
            H[-1, : len(bal)] *= scale
            H[: len(bal), -1] = H[-1, : len(bal)]
        return H


class _SparseGram:
    """X' diag(h) X for a scipy sparse X, as a dense k x k array, for one X and many h (a Newton run's Hessians).

    When every row stores the same number r of entries (the calibration matrix of margins: one per margin variable
    and numeric target) it is r (r + 1) / 2 weighted histograms over the pairs of a row's entries (np.bincount;
    O(n r^2), no sparse product). When moreover every entry is 1 (margins only) the rows are cells of the margins'
    cross-classification: with few distinct cells, h is first summed per cell (one histogram over n) and the pairs
    run over the cells. Otherwise scipy's sparse product."""

    def __init__(self, X):
        X = X.tocsr()
        self.X, (n, self.k) = X, X.shape
        r = X.indptr[1] - X.indptr[0] if n else 0
        self.equal = bool(n and r and X.nnz == n * r and X.has_canonical_format and np.all(np.diff(X.indptr) == r))
        self.cell = None
        if not self.equal:
            return
        index, self.value = X.indices.reshape(n, r), X.data.reshape(n, r)
        if np.all(X.data == 1.0) and r * np.log2(self.k) < 62:
            key = index.astype(np.int64) @ (self.k ** np.arange(r, dtype=np.int64))
            cells, cell = np.unique(key, return_inverse=True)
            if len(cells) <= n // 4:
                self.cell, self.value = cell, np.ones((len(cells), r))
                index = (cells[:, None] // self.k ** np.arange(r)) % self.k
        self.index = [np.ascontiguousarray(index[:, a]) for a in range(r)]

    def __call__(self, h) -> np.ndarray:
        if not self.equal:
            return (self.X.T @ self.X.multiply(h[:, None]).tocsr()).toarray()
        k, value = self.k, self.value
        if self.cell is not None:
            h = np.bincount(self.cell, weights=h, minlength=len(value))
        H = np.zeros(k * k)
        for a, index in enumerate(self.index):
            weighted = h * value[:, a]
            H += np.bincount(index * (k + 1), weights=weighted * value[:, a], minlength=k * k)
            for b in range(a + 1, len(self.index)):      # columns index[a] < index[b] within a row (canonical)
                H += np.bincount(index * k + self.index[b], weights=weighted * value[:, b], minlength=k * k)
        H = H.reshape(k, k)
        return H + np.triu(H, 1).T


class Stacked:
    """The rows [M, E] of a group: a `Rows` M (balance columns, the sum column last when normalized) beside the
    extra columns E (n x m, scipy sparse: the rows a user's affine term adds), with the sums the dual Newton reads
    (`dot`, `tdot`, `gram`, `subset`). E'diag(h)M is one sparse-times-dense product, O(nnz(E) k)."""

    def __init__(self, rows, extra):
        self.rows, self.extra = rows, scipy.sparse.csc_matrix(extra)
        self.n, self.p = rows.n, rows.p
        self.k = rows.k + self.extra.shape[1]

    def dot(self, y) -> np.ndarray:
        return self.rows.dot(y[: self.rows.k]) + self.extra @ y[self.rows.k:]

    def tdot(self, w) -> np.ndarray:
        return np.concatenate([self.rows.tdot(w), self.extra.T @ w])

    def gram(self, h=None) -> np.ndarray:
        h = np.ones(self.n) if h is None else h
        k0 = self.rows.k
        H = np.zeros((self.k, self.k))
        H[:k0, :k0] = self.rows.gram(h)
        weighted = scipy.sparse.csc_matrix(self.extra.multiply(h[:, None]))
        H[k0:, :k0] = self.rows.cross(weighted)
        H[:k0, k0:] = H[k0:, :k0].T
        H[k0:, k0:] = (self.extra.T @ weighted).toarray()
        return H

    def subset(self, rows) -> "Stacked":
        return Stacked(self.rows.subset(rows), self.extra[rows])
