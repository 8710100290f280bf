"""A builder's call, captured once from its signature, so that it can be run again on other data.

`@recorded` wraps a builder `f(data, ...)` (the families, `balnet`): its result gets `.call`, a `Call` holding the
arguments as `inspect.signature(f)` binds them (defaults filled in). `WeightingProblem.rebuild` (the bootstrap) and
`cv_balnet` (a refit per fold) re-run `call.on(new_data)` or `call.builder`; nothing copies a signature by hand.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InputError
from .validation import is_dask_array


@dataclass(frozen=True)
class Call:
    """`builder(data, **arguments)`, as it was called on data of `rows` rows."""

    builder: object
    arguments: dict
    rows: int

    def row_tied(self) -> list:
        """The arguments that hold one value per original row (an array of base weights, a basis, raw constraint
        coefficients): they cannot follow a resample."""
        return [key for key, value in self.arguments.items() if _row_tied(value, self.rows)]

    def on(self, data):
        """The builder run again on `data` with the same arguments."""
        tied = self.row_tied()
        if tied:
            raise InputError(f"cannot rebuild on new data: {tied} hold one value per original row; pass base weights "
                             "as a column name, and put a basis or constraint coefficients in columns of the data")
        return self.builder(data, **self.arguments)


def recorded(function):
    """Decorate a builder whose first parameter is the data: its result records the call as `.call`."""
    signature = inspect.signature(function)
    first = next(iter(signature.parameters))

    @functools.wraps(function)
    def builder(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        data = arguments.pop(first)
        result = function(*args, **kwargs)
        result.call = Call(builder, arguments, len(data))
        return result

    return builder


def _row_tied(value, n):
    if isinstance(value, dict):
        return any(_row_tied(v, n) for v in value.values())
    if isinstance(value, tuple):
        return any(_row_tied(v, n) for v in value)
    if is_dask_array(value):
        return True                       # a basis or coefficients chunked like the original partitions
    return isinstance(value, (np.ndarray, pd.Series, pd.DataFrame, list)) and len(value) == n and np.ndim(value) >= 1
