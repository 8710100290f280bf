"""Calibration of a dask DataFrame, on its partitions: `cpz.calibrate` and `cpz.rake` given a dask DataFrame.

The weights of calibration come from a dual in k variables whose value, gradient and Hessian are sums over the
units, so nothing n-sized needs to reach the client (the pattern of dask-glm's Newton). The build:

1. the number of units at each margin level (one `value_counts` per margin variable), from which the targets, the
   column of each level and every check on the margins follow exactly as in memory (`totals.margin_targets`);
2. per partition, its piece of the calibration matrix X (CSR when mostly zeros, as in memory) and its base
   weights, persisted on the workers;
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

from ..backends.blocks import DaskBlocks
from ..backends.forms import CalibrationForm
from ..errors import InputError
from ..partitioned import PartitionedProblem
from ..validation import base_weights as check_base_weights, finite, numeric_matrix
from .totals import (calibration_bounds, calibration_terms, check_reachable, check_target_names,
                     independent_targets_of, margin_codes, margin_targets, negative_weights_note, system_matrix,
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
    ddf = ddf.persist()
    found = dask.compute(*[dask.delayed(_level_counts)(part, list(margins)) for part in ddf.to_delayed()])
    counts = {}
    for var in margins:
        per_partition = pd.concat([piece[var] for piece in found])
        if per_partition.index.isna().any():
            raise InputError(f"margin variable {var!r} has {int(per_partition[per_partition.index.isna()].sum())} "
                             "missing values")
        counts[var] = per_partition.groupby(level=0, sort=False).sum()
    names, T, N, levels = margin_targets(counts, margins)
    names += list(totals)
    T += [float(v) for v in totals.values()]
    T = np.asarray(T, dtype=float)
    finite(T, "population totals")
    check_target_names(names)
    systems = dask.persist(*[dask.delayed(_partition_system)(part, base_weights, levels, list(totals), len(names))
                             for part in ddf.to_delayed()])
    sizes = dask.compute(*[dask.delayed(len)(system[1]) for system in systems])
    data = DaskBlocks(systems, sizes)
    check_reachable(data, T, names, ratio_bounds, weight_box, nonnegative=distance == "raking")
    negatives = distance == "linear" and ratio_bounds[0] < 0 and weight_box[0] < 0   # GREG weights may go below 0
    if negatives:
        warn_unless_nonnegative_reach(data, T, names, ratio_bounds, weight_box)
    keep = independent_targets_of(data, T, names)
    blocks = dask.persist(*[dask.delayed(_newton_block)(system, T, names, keep, distance, bounds, weight_bounds)
                            for system in systems])
    index = [dask.delayed(_index)(part) for part in ddf.to_delayed()]
    return PartitionedProblem(DaskBlocks(blocks, sizes), index, ddf.divisions, names, T, keep,
                              target_scales(T)[keep], N, family=f"calibrate/{distance}",
                              note=negative_weights_note if negatives else None)


def _level_counts(frame, variables) -> dict:
    """Units per level (missing values counted under NaN) of each margin variable in one partition."""
    return {var: frame[var].value_counts(dropna=False, sort=False) for var in variables}


def _partition_system(frame, base_weights, levels, totals, k):
    """(X, d) of one partition: its rows of the calibration matrix (the margins' columns from the levels' global
    columns) and its base weights."""
    coded = {var: margin_codes(frame, var) for var in levels}
    for var, (_, present) in coded.items():
        unknown = [level for level in present if level not in levels[var]]
        if unknown:      # the data changed between the level counts and this pass
            raise InputError(f"margin {var!r}: levels {unknown} were not in the data when its levels were counted")
    numeric = [numeric_matrix(frame, [col], "totals")[:, 0] for col in totals]
    if not coded and not len(frame):
        numeric = [np.zeros(0)] * len(totals)
    return system_matrix(coded, levels, numeric, k), check_base_weights(frame, base_weights)


def _newton_block(system, T, names, keep, distance, bounds, weight_bounds):
    """The calibration Newton's block of one partition: (rows, distance, d, lo, hi), from the same terms and form
    as in memory."""
    X, d = system
    terms = calibration_terms(X, T, names, d, keep, distance, bounds, weight_bounds)
    form = CalibrationForm.of(terms, len(d), "calibration")
    lo, hi = form.ratio_box()
    return form.rows(form.groups[0]), form.distance, form.base, lo, hi


def _index(frame) -> pd.Index:
    return frame.index
