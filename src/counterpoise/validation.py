"""Input checks at the public boundary: data (frames, matrices, weights, finiteness) and options (declared per
function with `@validated`, as scikit-learn's validate_params). Everything past the builders trusts clean arrays."""

from __future__ import annotations

import functools
import inspect
import numbers
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InputError


class CounterpoiseWarning(UserWarning):
    """Something was changed for you (a constant column dropped); the message says what."""


def warn(message):
    """Issue a CounterpoiseWarning attributed to the first caller outside counterpoise (the user's line), however
    deep inside the package it is raised."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, CounterpoiseWarning, stacklevel=level)


def is_dask_frame(data, series=False) -> bool:
    """Whether `data` is a dask DataFrame (or, with series=True, a dask Series), checked without importing dask,
    an optional dependency."""
    partitioned = type(data).__module__.split(".")[0] == "dask" and hasattr(data, "npartitions")
    return partitioned and getattr(data, "ndim", None) == (1 if series else 2)


def is_dask_array(data) -> bool:
    """Whether `data` is a dask array (checked without importing dask)."""
    return type(data).__module__.startswith("dask.array")


def as_frame(data) -> pd.DataFrame:
    """A DataFrame from a DataFrame or a 2-D array (columns named X1..Xp); rejects duplicate column names."""
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, np.ndarray) and data.ndim == 2:
        frame = pd.DataFrame(data, columns=[f"X{j + 1}" for j in range(data.shape[1])])
    else:
        raise InputError(f"data must be a pandas DataFrame or a 2-D numpy array, got {type(data).__name__}")
    duplicated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if duplicated:
        raise InputError(f"data has duplicate column names {duplicated}; rename them so each column is unambiguous")
    if len(frame) == 0:
        raise InputError("data has no rows")
    if not frame.index.is_unique:
        raise InputError("data's index has duplicate labels; weights are returned by index, so make it unique (reset_index)")
    return frame


def columns_list(columns, what) -> list:
    if columns is None:
        raise InputError(f"{what}: give the column names")
    columns = [columns] if isinstance(columns, str) else list(columns)
    if not columns:
        raise InputError(f"{what}: the list of columns is empty")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InputError(f"{what}: columns listed more than once: {repeated}")
    return columns


def numeric_matrix(frame: pd.DataFrame, columns, what="covariates") -> np.ndarray:
    """The named columns as a float matrix; every column must exist, be numeric (or boolean) and finite."""
    columns = columns_list(columns, what)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: columns {missing} are not in the data (it has {list(frame.columns)[:20]})")
    bad_type = [c for c in columns if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    if bad_type:
        raise InputError(
            f"{what}: columns {bad_type} are not numeric; encode categories as indicator columns "
            "(pandas.get_dummies) or pass them as calibration margins"
        )
    X = frame[columns].to_numpy(dtype=float)
    finite(X, what, columns)
    return X


def finite(values, what, columns=None):
    """The one finiteness check: raise naming where NaN or inf sits (per column for a matrix)."""
    values = np.asarray(values, dtype=float)
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if values.ndim == 2:
        counts = bad.sum(axis=0)
        names = columns if columns is not None else [f"column {j}" for j in range(values.shape[1])]
        where = ", ".join(f"{names[j]} ({counts[j]} rows)" for j in np.flatnonzero(counts))
        raise InputError(f"{what} contain NaN or infinite values: {where}; drop or impute those rows first")
    raise InputError(f"{what} contain {int(bad.sum())} non-finite values (NaN or infinite); drop or impute those "
                     "rows first")


def numeric(x, what, ndim: int, shape: str) -> np.ndarray:
    """`x` as a finite float array of `ndim` dimensions (`shape` says which in the error)."""
    try:
        x = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be numeric: {exc}") from None
    if x.ndim != ndim:
        raise InputError(f"{what} must be {shape}, got shape {x.shape}")
    return finite(x, what)


def matrix(X, what="X") -> np.ndarray:
    """A finite 2-D float array (units x columns)."""
    return numeric(X, what, 2, "two-dimensional (units x columns)")


def weights(w, what, n=None) -> np.ndarray:
    """A finite, non-empty weight vector of length `n`. Negative weights are allowed: unbounded linear (GREG)
    calibration produces them, and the diagnostics stay defined."""
    w = numeric(w, what, 1, "one-dimensional")
    if n is not None and w.shape[0] != n:
        raise InputError(f"{what} has {w.shape[0]} entries but there are {n} units")
    if w.size == 0:
        raise InputError(f"{what} is empty")
    return w


def vector(v, what, p) -> np.ndarray:
    """A finite vector of shape (p,)."""
    v = np.asarray(v, dtype=float)
    if v.shape != (p,):
        raise InputError(f"{what} must have shape ({p},), got {v.shape}")
    return finite(v, what)


def treatment_indicator(frame: pd.DataFrame, column, both_arms=True) -> np.ndarray:
    """The treatment column as 0/1 integers; both arms must have units (unless both_arms=False: a partition of
    the data, whose caller checks the arms over all of them with `require_both_arms`)."""
    if column is None:
        raise InputError("treatment: give the name of the 0/1 treatment column")
    if column not in frame.columns:
        raise InputError(f"treatment column {column!r} is not in the data")
    values = frame[column]
    if values.isna().any():
        raise InputError(f"treatment column {column!r} has {int(values.isna().sum())} missing values")
    levels = set(pd.unique(values).tolist())
    if not levels <= {0, 1, True, False}:
        raise InputError(f"treatment column {column!r} must be 0/1 (or boolean); it has values {sorted(map(str, levels))[:10]}")
    a = values.to_numpy().astype(int)
    if both_arms:
        require_both_arms(np.sum(a == 1), np.sum(a == 0), column)
    return a


def target_means(target, names) -> np.ndarray:
    """The target means of estimand="target", one per balance column `names`, from a dict or Series by name or an
    array in their order, checked."""
    if target is None:
        raise InputError('estimand="target" needs target= (a dict or Series of target means per balance column)')
    if isinstance(target, (dict, pd.Series)):
        missing = [c for c in names if c not in target]
        if missing:
            raise InputError(f"target has no value for balance columns {missing}")
        values = np.array([float(target[c]) for c in names])
    else:
        values = np.asarray(target, dtype=float).ravel()
        if len(values) != len(names):
            raise InputError(f"target has {len(values)} values for {len(names)} balance columns {names}")
    finite(values, "target")
    return values


def require_both_arms(treated, control, column):
    """Both arms must have units (`treated`, `control`: their counts)."""
    for count, arm, label in ((treated, 1, "treated"), (control, 0, "control")):
        if not count:
            raise InputError(f"treatment column {column!r} has no {label} units ({column} == {arm}); both arms are needed")


def base_weights(frame: pd.DataFrame, spec, what="base_weights") -> np.ndarray:
    """Base (design / sample) weights: None gives ones; a column name or an array; finite and positive."""
    if spec is None:
        return np.ones(len(frame))
    if isinstance(spec, str):
        if spec not in frame.columns:
            raise InputError(f"{what}: column {spec!r} is not in the data")
        d = frame[spec].to_numpy(dtype=float)
    else:
        d = np.asarray(spec, dtype=float).ravel()
        if len(d) != len(frame):
            raise InputError(f"{what} has length {len(d)} but the data has {len(frame)} rows")
    finite(d, what)
    if np.any(d < 0):
        raise InputError(f"{what}: {int(np.sum(d < 0))} weights are negative; base weights must be positive")
    if np.any(d == 0):
        raise InputError(f"{what}: {int(np.sum(d == 0))} weights are zero; drop those rows (they cannot be reweighted)")
    return d


def drop_constant(B: np.ndarray, names: list) -> tuple[np.ndarray, list]:
    """Drop columns that take one value in every row, with a warning: any normalized weights balance them."""
    constant = np.ptp(B, axis=0) == 0 if len(B) else np.zeros(B.shape[1], bool)
    keep = constant_columns_dropped(constant, names)
    return (B, names) if keep is None else (B[:, keep], [names[j] for j in keep])


def constant_columns_dropped(constant, names):
    """The columns to keep (None: all) when `constant` marks those that take one value in every row, said with a
    warning; all of them constant is an error."""
    if not np.any(constant):
        return None
    dropped = [n for n, c in zip(names, constant) if c]
    warn(f"dropped constant columns {dropped}: they take one value in every row, so balance on them is automatic")
    if np.all(constant):
        raise InputError("every balance column is constant; there is nothing to balance")
    return np.flatnonzero(~np.asarray(constant))


# ---- options, declared -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What an option must be: `test(value)` and the words for it ("a positive number")."""

    text: str
    test: object

    def __call__(self, value) -> bool:
        return bool(self.test(value))


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)


def integer(at_least) -> Rule:
    return Rule(f"an integer >= {at_least}", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)
                and v >= at_least)


def whole_number(at_least) -> Rule:
    """An integer, or a float with an integer value (200.0), at least `at_least`."""
    return Rule(f"a whole number >= {at_least}", lambda v: _is_number(v) and float(v).is_integer() and v >= at_least)


def one_of(values) -> Rule:
    return Rule(f"one of {list(values)}", lambda v: v in values)


def optional(rule: Rule) -> Rule:
    return Rule(f"{rule.text} or None", lambda v: v is None or rule(v))


def interval(low, high, closed=True) -> Rule:
    """A number in [low, high] (closed) or (low, high) (closed=False)."""
    if closed:
        return Rule(f"a number in [{low}, {high}]", lambda v: _is_number(v) and low <= v <= high)
    return Rule(f"a number in ({low}, {high})", lambda v: _is_number(v) and low < v < high)


POSITIVE = Rule("a positive number", lambda v: _is_number(v) and v > 0)
NONNEGATIVE = Rule("a nonnegative number", lambda v: _is_number(v) and v >= 0)


def check(name, value, rule: Rule):
    """Raise InputError unless `value` satisfies `rule`, naming the option and the value."""
    if not rule(value):
        raise InputError(f"{name} must be {rule.text}, got {value!r}")
    return value


def validated(**rules):
    """Decorate a function with the rules its options must satisfy: `@validated(lam=NONNEGATIVE, moments=integer(1))`.
    Every call checks them (defaults included) before the body runs."""
    def decorate(function):
        signature = inspect.signature(function)
        unknown = sorted(set(rules) - set(signature.parameters))
        if unknown:
            raise TypeError(f"{function.__name__} has no parameters {unknown}")

        @functools.wraps(function)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, rule in rules.items():
                check(name, bound.arguments[name], rule)
            return function(*args, **kwargs)

        return checked

    return decorate
