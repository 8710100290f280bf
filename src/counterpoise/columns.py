"""Column-wise reads of a units x columns matrix that work alike on a dense array and a scipy sparse matrix (the
calibration matrix is sparse when margins make it mostly zeros): one column as a dense vector, the largest |x|
and the presence of negative values per column, the range of a dense X, and the weighted sums sum_i w_i x_ij and sum_i w_i x_ij^2."""

from __future__ import annotations

import numpy as np
import scipy.sparse


def column(X, j) -> np.ndarray:
    """Column j as a dense vector."""
    return X[:, [j]].toarray().ravel() if scipy.sparse.issparse(X) else X[:, j]


def max_abs(X) -> np.ndarray:
    """max_i |x_ij| per column (0 for an empty or all-zero column), without an n x k temporary."""
    if scipy.sparse.issparse(X):
        return abs(X).max(axis=0).toarray().ravel() if X.shape[0] else np.zeros(X.shape[1])
    return np.maximum(X.max(axis=0, initial=0.0), -X.min(axis=0, initial=0.0))


def value_range(X) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) per column of a dense X (+inf, -inf for no rows: the identities of a reduction over blocks)."""
    return X.min(axis=0, initial=np.inf), X.max(axis=0, initial=-np.inf)


def widest(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two blocks' `value_range` combined."""
    return np.minimum(a[0], b[0]), np.maximum(a[1], b[1])


def has_negative(X) -> np.ndarray:
    """Whether column j holds a negative value, per column."""
    if scipy.sparse.issparse(X):
        X = X.tocsr()
        return np.bincount(X.indices[X.data < 0], minlength=X.shape[1]) > 0
    return np.any(X < 0, axis=0)


def weighted_sums(W, X, squares=False) -> np.ndarray:
    """W' X (or W' (X * X) with squares=True): one row per column of the weights W (n x m), one column per column
    of X."""
    if scipy.sparse.issparse(X):
        X = X.power(2) if squares else X
        return np.asarray((X.T @ W).T)
    return W.T @ (X * X) if squares else W.T @ X
