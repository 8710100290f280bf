"""Matplotlib figures: love plots of balance tables, and balance / ESS along a parameter path.

Every function returns a `matplotlib.figure.Figure` and never calls `plt.show`. Without `ax` it draws on a new
Figure that pyplot does not track (nothing accumulates in pyplot's state; Jupyter still displays the returned figure).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from counterpoise.diagnostics import SD_WORDS
from counterpoise.errors import InputError


def _balance_of(result, std) -> pd.DataFrame:
    """The balance table of `result`: a table itself, or a Solution-like object's `.balance`.

    With `std`, the table is recomputed with that denominator, which needs the object's `.design` (a BalanceDesign)
    and `.weights`; a finished table has its denominator fixed.
    """
    if std is not None:
        if not (hasattr(result, "design") and hasattr(result, "weights")):
            raise InputError("std= needs a Solution with .design and .weights to recompute the SMDs; a balance table "
                             "has its denominator fixed (use diagnostics.balance_table(design, weights, std=...))")
        return result.design.table(result.weights, std=std)
    table = result if isinstance(result, pd.DataFrame) else getattr(result, "balance", None)
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"result must be a balance table DataFrame or have a .balance DataFrame; got "
                         f"{type(result).__name__}")
    missing = {"smd_before", "smd_after"} - set(table.columns)
    if missing or list(table.index.names) != ["group", "term"]:
        raise InputError("the balance table needs a (group, term) index and columns smd_before, smd_after; "
                         f"missing columns {sorted(missing)}, index names {list(table.index.names)}")
    return table


def love_plot(result, threshold=0.1, std=None, ax=None, title=None, tolerance=None) -> Figure:
    """Dot plot of |SMD| per term before (open ring) and after (filled dot, drawn smaller inside the ring) weighting.

    `result` is a balance table (see `diagnostics.balance_table`) or a Solution with a `.balance` table. Terms run
    down the y axis, largest |smd_before| (over groups) at the top; with several groups each gets its own color and
    a small vertical offset. The x axis has a square-root scale, so that after-values near 0 and before-values near 1
    both read; markers at 0 are not clipped by the spine. A labelled dashed line marks `threshold` (None: none),
    a labelled dotted line the balance `tolerance` delta when given in the same SD units; the axis names the SD.
    """
    table = _balance_of(result, std)
    groups = list(dict.fromkeys(table.index.get_level_values("group")))
    before = table["smd_before"].abs()
    order = before.groupby(level="term", sort=False).max().sort_values(ascending=True).index
    y_of = {term: i for i, term in enumerate(order)}
    if ax is None:
        ax = Figure(figsize=(7.0, max(3.0, 1.3 + 0.32 * len(order))), dpi=150, layout="constrained").subplots()
    spread = 0.3 if len(groups) > 1 else 0.0
    colors = [f"C{k % 10}" for k in range(len(groups))]
    for k, group in enumerate(groups):
        rows = table.xs(group, level="group")
        offset = spread * (k / max(len(groups) - 1, 1) - 0.5)
        y = np.array([y_of[term] for term in rows.index]) + offset
        prefix = f"{group}: " if len(groups) > 1 else ""
        ax.scatter(rows["smd_before"].abs(), y, s=70, facecolors="none", edgecolors=colors[k], linewidths=1.4,
                   zorder=3, clip_on=False, label=f"{prefix}before")
        ax.scatter(rows["smd_after"].abs(), y, s=22, color=colors[k], zorder=4, clip_on=False,
                   label=f"{prefix}after")
    if threshold is not None:
        ax.axvline(threshold, linestyle="--", color="gray", linewidth=1, label=f"threshold {threshold:g}")
    if tolerance is not None:
        ax.axvline(tolerance, linestyle=":", color="black", linewidth=1, label=f"tolerance delta = {tolerance:g}")
    ax.set_xscale("function", functions=(np.sqrt, np.square))
    right = 1.05 * max(float(table[["smd_before", "smd_after"]].abs().max().max()), threshold or 0.0,
                       tolerance or 0.0, 1e-3)
    ax.set_xlim(left=0, right=right)
    ticks = []
    for tick in (0, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50):
        # keep ticks at least 7% of the axis apart on its square-root scale, so their labels never run together
        if tick <= right and (not ticks or np.sqrt(tick) - np.sqrt(ticks[-1]) >= 0.07 * np.sqrt(right)):
            ticks.append(tick)
    ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_yticks(range(len(order)), [str(term) for term in order])
    sd = SD_WORDS.get(table.attrs.get("std"))
    ax.set_xlabel("Absolute standardized mean difference" + (f" (in {sd}; square-root scale)" if sd else ""))
    ax.grid(axis="x", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize="small", framealpha=0.9)
    if title is not None:
        ax.set_title(title)
    return ax.figure


def path_plot(path, ax=None) -> Figure:
    """Max |SMD| (top) and effective sample size (bottom) against the swept parameter of a path.

    `path` has `.parameter` (the parameter's name, e.g. "delta") and `.table`, a DataFrame with that column and
    columns "max_abs_smd" and "ess". `ax` is None or a pair of Axes (top, bottom). The x axis is logarithmic when
    all parameter values are positive and span more than a factor of 10.
    """
    parameter = getattr(path, "parameter", None)
    table = getattr(path, "table", None)
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"path must have a .table DataFrame; got {type(path).__name__}")
    missing = [c for c in (parameter, "max_abs_smd", "ess") if c not in table.columns]
    if missing:
        raise InputError(f"path.table lacks columns {missing} (path.parameter is {parameter!r})")
    if ax is None:
        axes = Figure(figsize=(6.4, 5.6)).subplots(2, 1, sharex=True)
    else:
        axes = list(ax)
        if len(axes) != 2:
            raise InputError(f"ax must be a pair of Axes (top, bottom), got {len(axes)}")
    table = table.sort_values(parameter)
    x = table[parameter].to_numpy(dtype=float)
    for axis, column, label in ((axes[0], "max_abs_smd", "Max |SMD|"), (axes[1], "ess", "Effective sample size")):
        axis.plot(x, table[column].to_numpy(dtype=float), marker="o")
        axis.set_ylabel(label)
    if np.all(x > 0) and x.max() > 10 * x.min():
        axes[0].set_xscale("log")
        axes[1].set_xscale("log")
    axes[1].set_xlabel(str(parameter))
    return axes[0].figure


def _axes(ax, count, size):
    if ax is None:
        return list(np.atleast_1d(Figure(figsize=size).subplots(count, 1, sharex=True)))
    axes = list(np.atleast_1d(ax))
    if len(axes) != count:
        raise InputError(f"axes must be {count} Axes, got {len(axes)}")
    return axes


def balnet_path_plot(fit, axes=None) -> Figure:
    """Max |SMD|, mean |SMD| and ESS% of each arm's weights along its balnet path, against lambda (log scale).
    For the lasso the max |SMD| panel is the line y = lambda: lambda is the imbalance the weights leave."""
    axes = _axes(axes, 3, (6.4, 7.2))
    for arm in fit.arms.values():
        table = arm.table
        for axis, column in zip(axes, ("max_abs_smd", "mean_abs_smd", "ess_pct")):
            axis.plot(table["lambda"], table[column], marker=".", label=arm.name)
    for axis, label in zip(axes, ("Max |SMD|", "Mean |SMD|", "ESS (% of arm)")):
        axis.set_ylabel(label)
    axes[0].legend()
    axes[-1].set_xscale("log")
    axes[-1].set_xlabel("lambda")
    return axes[0].figure


def balnet_cv_plot(cv, axes=None) -> Figure:
    """Cross-validated balance loss (mean +- one standard error over folds) against lambda per arm; the dotted
    line marks lambda_min."""
    arms = list(cv.losses)
    axes = _axes(axes, len(arms), (6.4, 3.2 * len(arms)))
    for axis, arm in zip(axes, arms):
        table = cv.cv_table(arm)
        axis.errorbar(table["lambda"], table["cv_loss"], yerr=table["std_error"], marker=".", capsize=2)
        axis.axvline(cv.lambda_min[arm], linestyle=":", color="gray")
        axis.set_ylabel(f"{cv.measure} ({arm})")
        axis.set_xscale("log")
    axes[-1].set_xlabel("lambda")
    return axes[0].figure
