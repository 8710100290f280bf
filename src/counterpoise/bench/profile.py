"""Performance profiles (Dolan and More 2002): for each run, the share of problems it solves within a factor tau
of the fastest run on that problem.

A problem is one cell and problem variant (a data setting x replication). With t(p, r) the solve time of run r on
problem p when it succeeded (infinite when it did not), the ratio is t(p, r) / min_r' t(p, r'), and run r's
profile is rho_r(tau) = share of problems with ratio <= tau. rho_r(1) is how often r is fastest; rho_r at large
tau is its success rate. Problems that no run solved count against every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def ratios(df, success) -> pd.DataFrame:
    """Performance ratios: one row per problem (setting, replication, variant), one column per run; inf where the
    run did not succeed (`success`, a boolean Series aligned with df), NaN where the run did not run at all."""
    times = df["solve_time"].astype(float).where(success, np.inf)
    table = times.groupby([df["setting"], df["replication"], df["variant"], df["run"]], sort=False).first()
    table = table.unstack("run")
    best = table.min(axis=1)
    return table.div(best.where(np.isfinite(best)), axis=0).where(table.notna())


def figure(parts, columns=4):
    """A matplotlib Figure: one log2-tau panel per (title, ratios) in `parts`, `columns` panels to a row, a step
    line per run in the same colour in every panel."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    runs = list(dict.fromkeys(run for _, table in parts for run in table.columns))
    colours = {run: plt.get_cmap("tab10")(k % 10) for k, run in enumerate(runs)}
    width = min(columns, len(parts))
    height = -(-len(parts) // width)
    fig, axes = plt.subplots(height, width, figsize=(4.2 * width, 3.4 * height), squeeze=False,
                             layout="constrained")
    for ax, (title, table) in zip(axes.flat, parts):
        finite = table.to_numpy()[np.isfinite(table.to_numpy())]
        top = max(2.0, float(finite.max()) * 1.5) if finite.size else 2.0
        taus = np.geomspace(1, top, 400)
        for run in table.columns:
            column = table[run].dropna().to_numpy()
            if column.size:
                ax.step(taus, [(column <= tau).mean() for tau in taus], where="post", label=run, color=colours[run])
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("tau (time / fastest time on the problem)")
        ax.set_title(title or "all problems", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.flat[len(parts):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("share of problems solved within tau")
    return fig
