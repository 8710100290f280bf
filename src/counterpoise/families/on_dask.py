"""Calibration of a dask DataFrame, on its partitions: `cpz.calibrate` and `cpz.rake` given a dask DataFrame.

The weights of calibration come from a dual in k variables whose value, gradient and Hessian are sums over the
units, so nothing n-sized needs to reach the client (the pattern of dask-glm's Newton). The build:

1. each partition read once: its margin variables' level codes, numeric target columns and base weights,
   persisted on the workers; the number of units at each margin level, from which the targets, the column of
   each level and every check on the margins follow exactly as in memory (`totals.margin_targets`);
2. per partition, its piece of the calibration matrix X (CSR when mostly zeros, as in memory) and its base
   weights, persisted;
3. the checks before solving (totals within reach of the bounds, exactly redundant targets dropped) as sums over
   the partitions (`totals.check_reachable`, `totals.independent_targets`);
4. per partition, the calibration Newton's block (`backends.calibration.newton_sums`): its rows, distance, base
   weights and bounds, persisted.

Each Newton step is then one tree reduction on the cluster (`backends.blocks.DaskBlocks`), and the weights come
back as a lazy dask Series aligned with the input's partitions (`partitioned.PartitionedSolution`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse

from ..backends.blocks import DaskBlocks
from ..backends.forms import CalibrationForm
from ..errors import InputError
from ..columns import max_abs
from ..diagnostics import sds_from_sums
from ..partitioned import PartitionedProblem, Report
from ..validation import base_weights as check_base_weights, finite, numeric_matrix
from .totals import (calibration_bounds, calibration_terms, check_reachable, check_target_names,
                     independent_targets_of, margin_targets, negative_weights_note, system_matrix,
                     target_scales,
                     warn_unless_nonnegative_reach)


def is_dask_frame(data) -> bool:
    """Whether `data` is a dask DataFrame (checked without importing dask)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "npartitions") and hasattr(data, "columns")


def calibrate(ddf, base_weights, margins, totals, constraints, distance, bounds, weight_bounds, tol):
    """`cpz.calibrate` on a dask DataFrame (see there), as a `PartitionedProblem`: margins and numeric totals,
    linear / raking / logit distances, ratio and weight bounds, exact totals."""
    import dask

    if constraints:
        raise InputError("constraints= takes coefficient arrays, one per row, which a dask DataFrame's rows do not "
                         "line up with; put the coefficients in a column and pass totals={column: total}")
    if tol is not None:
        raise InputError("tol= (totals within a tolerance) is solved by the 'dual' backend, which does not run on "
                         "dask partitions yet; calibrate a dask DataFrame to exact totals (tol=None)")
    if not isinstance(base_weights, (str, type(None))):
        raise InputError("base_weights on a dask DataFrame must be a column name (or None for ones)")
    margins, totals = dict(margins or {}), dict(totals or {})
    if not margins and not totals:
        raise InputError("give at least one target: margins= or totals=")
    columns = list(margins) + list(totals) + ([base_weights] if base_weights else [])
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise InputError(f"columns {missing} are not in the data (it has {list(ddf.columns)[:20]})")
    ratio_bounds, weight_box = calibration_bounds(distance, bounds, weight_bounds)
    coded = dask.persist(*[dask.delayed(_coded)(part, list(margins), list(totals), base_weights)
                           for part in ddf.to_delayed()])
    found = dask.compute(*[dask.delayed(_level_counts)(piece) for piece in coded])
    counts = {}
    for var in margins:
        missing_values = sum(piece[var][1] for piece in found)
        if missing_values:
            raise InputError(f"margin variable {var!r} has {missing_values} missing values")
        counts[var] = pd.concat([piece[var][0] for piece in found]).groupby(level=0, sort=False).sum()
    names, T, N, levels = margin_targets(counts, margins)
    names += list(totals)
    T += [float(v) for v in totals.values()]
    T = np.asarray(T, dtype=float)
    finite(T, "population totals")
    check_target_names(names)
    systems = dask.persist(*[dask.delayed(_partition_system)(piece, levels, len(names)) for piece in coded])
    sizes = dask.compute(*[dask.delayed(len)(system[1]) for system in systems])
    data = DaskBlocks(systems, sizes)
    check_reachable(data, T, names, ratio_bounds, weight_box, nonnegative=distance == "raking")
    negatives = distance == "linear" and ratio_bounds[0] < 0 and weight_box[0] < 0   # GREG weights may go below 0
    if negatives:
        warn_unless_nonnegative_reach(data, T, names, ratio_bounds, weight_box)
    keep = independent_targets_of(data, T, names)
    blocks = dask.persist(*[dask.delayed(_newton_block)(system, T, names, keep, distance, bounds, weight_bounds)
                            for system in systems])
    index = dask.persist(*[dask.delayed(_index)(piece) for piece in coded])
    scale = target_scales(T)[keep]
    report = Report(names, "sample", "total", T, base_weighted_sds(data), size=N)
    return PartitionedProblem(DaskBlocks(blocks, sizes), index, ddf.divisions, T[keep] / scale, scale,
                              [f"totals:{names[j]}" for j in keep], report, family=f"calibrate/{distance}",
                              weight_scale="population totals (w = g d)",
                              note=negative_weights_note if negatives else None)


def base_weighted_sds(data) -> np.ndarray:
    """The base-weighted sample SD of every column over the row blocks (X, d), as `diagnostics.smd_denominators`
    computes it (0 for a column constant to rounding): sums of d x and d x^2, then the one-pass formula."""
    linear, squares, total, total_squares = data.reduce(_moment_sums)
    largest = data.reduce(_max_abs, combine=np.maximum)
    sd = sds_from_sums(np.maximum(squares - linear ** 2 / total, 0.0), total, total_squares)
    return np.where(sd <= 1e-12 * largest, 0.0, sd)


def _moment_sums(X, d):
    squares = X.power(2) if scipy.sparse.issparse(X) else X * X
    return X.T @ d, squares.T @ d, d.sum(), d @ d


def _max_abs(X, d):
    return max_abs(X)


def _coded(frame, margins, totals, base_weights) -> dict:
    """One partition read once: each margin variable's level codes and levels (NaN coded -1), the numeric targets'
    columns, the base weights and the index; everything later passes read, in place of the data."""
    coded = {}
    for var in margins:
        code, present = pd.factorize(frame[var])
        coded[var] = (code.astype(np.int32), present)
    return {"codes": coded, "numeric": [numeric_matrix(frame, [col], "totals")[:, 0] for col in totals],
            "d": check_base_weights(frame, base_weights), "index": frame.index}


def _level_counts(piece) -> dict:
    """Per margin variable of one partition: (units per level, missing values)."""
    return {var: (pd.Series(np.bincount(code[code >= 0], minlength=len(present)), index=present),
                  int(np.sum(code < 0))) for var, (code, present) in piece["codes"].items()}


def _partition_system(piece, levels, k):
    """(X, d) of one partition: its rows of the calibration matrix (each level in its global column) and its base
    weights."""
    for var, (_, present) in piece["codes"].items():
        unknown = [level for level in present if level not in levels[var]]
        if unknown:      # cannot happen for data read once; said rather than mis-assigned
            raise InputError(f"margin {var!r}: levels {unknown} were not in the data when its levels were counted")
    numeric = piece["numeric"]
    if not piece["codes"] and not len(piece["d"]):
        numeric = [np.zeros(0)] * len(numeric)
    return system_matrix(piece["codes"], levels, numeric, k), piece["d"]


def _newton_block(system, T, names, keep, distance, bounds, weight_bounds):
    """The calibration Newton's block of one partition: (rows, distance, d, lo, hi), from the same terms and form
    as in memory."""
    X, d = system
    terms = calibration_terms(X, T, names, d, keep, distance, bounds, weight_bounds)
    form = CalibrationForm.of(terms, len(d), "calibration")
    lo, hi = form.ratio_box()
    return form.rows(form.groups[0]), form.distance, form.base, lo, hi


def _index(piece) -> pd.Index:
    return piece["index"]
