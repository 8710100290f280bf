"""Reporting a study: the summary and markdown table of the default kind, the files every kind writes, and the
number formatting the plug-ins share.

`summarize` averages the runs of each data setting x run over replications; `markdown_table` prints that summary;
`write_results` writes the frame as <out_dir>/<name>.csv and a markdown summary <out_dir>/<name>.md, with the
machine it ran on; `save` writes any kind's CSV and markdown; `fmt` prints a number, or "–" for a missing one.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd


def summarize(df) -> pd.DataFrame:
    """One row per data setting x run: the share of solves with status "optimal", means over replications of the
    times, objective gap, max violation, ESS and max |SMD|, the smallest weight, and the mean error and the RMSE of
    the effect estimate."""
    rows = []
    for (setting, run), group in df.groupby(["setting", "run"], sort=False):
        done = group[group["status"] != "skipped"]
        row = {"setting": setting, "run": run, "solves": len(done)}
        if done.empty:
            row["note"] = group["message"].iloc[0]
            rows.append(row)
            continue
        error = done["error"].astype(float)
        row.update(
            optimal=float(np.mean(done["status"] == "optimal")),
            build_time=done["build_time"].astype(float).mean(),
            solve_time=done["solve_time"].astype(float).mean(),
            objective_gap=done["objective_gap"].astype(float).mean(),
            max_violation=done["max_violation"].astype(float).mean(),
            ess=done["ess"].astype(float).mean(),
            max_abs_smd=done["max_abs_smd"].astype(float).mean(),
            error=error.mean(),
            rmse=float(np.sqrt(np.mean(error[error.notna()] ** 2))) if error.notna().any() else float("nan"),
            min_weight=done["min_weight"].astype(float).min(),
            note=_note(done),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _note(done):
    notes = [f"{int(np.sum(done['status'] == s))} {s}" for s in dict.fromkeys(done["status"]) if s != "optimal"]
    failed = done[done["diagnostics_failed"].astype(bool)]
    if len(failed):
        notes.append(f"{len(failed)} without SMD/effect (see message in the CSV)")
    return "; ".join(notes)


def fmt(value, spec) -> str:
    """`value` formatted by `spec`, or "–" when it is None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def markdown_table(df) -> str:
    """The summary (see `summarize`) of a default-kind study's frame as a markdown table."""
    summary = summarize(df)
    estimand = next((e for e in df["estimand"] if e), "") if "estimand" in df else ""
    has_effect = bool(estimand) and df["error"].notna().any()
    header = ["setting", "run", "optimal", "build s", "solve s", "objective gap", "max violation", "min weight",
              "ESS", "max abs SMD"]
    if has_effect:
        header += [f"{estimand} error", f"{estimand} RMSE"]
    header.append("note")
    align = ["---", "---"] + ["---:"] * (len(header) - 3) + ["---"]  # numbers right-aligned
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in summary.to_dict("records"):
        if row["solves"] == 0:
            cells = [row["setting"], row["run"]] + ["–"] * (len(header) - 3) + [row.get("note", "")]
        else:
            cells = [row["setting"], row["run"], f"{row['optimal']:.0%} of {row['solves']}",
                     fmt(row["build_time"], ".3f"), fmt(row["solve_time"], ".2f"), fmt(row["objective_gap"], ".1e"),
                     fmt(row["max_violation"], ".1e"), fmt(row["min_weight"], ".1e"), fmt(row["ess"], ".1f"),
                     fmt(row["max_abs_smd"], ".4f")]
            if has_effect:
                cells += [fmt(row["error"], ".3f"), fmt(row["rmse"], ".3f")]
            cells.append(row["note"])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _environment():
    import cvxpy as cp

    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"cvxpy {cp.__version__}"]
    for module in ("clarabel", "osqp", "scs", "ecos"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except (ImportError, AttributeError):
            pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; " + ", ".join(versions)


def save(df, out_dir, name, description, *sections) -> tuple[Path, Path]:
    """Write `df` as <out_dir>/<name>.csv and <out_dir>/<name>.md: a title, the description and the markdown
    `sections`, one paragraph each. Returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    df.to_csv(csv_path, index=False)
    paragraphs = [f"# {name}"] + ([description.strip()] if description.strip() else []) + list(sections)
    md_path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return csv_path, md_path


def write_results(df, out_dir, name, description="") -> tuple[Path, Path]:
    """Write `df` (from `run_study`, a study of the default kind) as <out_dir>/<name>.csv and a markdown summary
    <out_dir>/<name>.md. Returns the two paths."""
    reps = int(df["replication"].nunique()) if len(df) else 0
    legend = (
        f"Means over {reps} replication(s) per data setting x run. optimal: share of solves with status \"optimal\" "
        "(the solver said so and counterpoise's post-solve feasibility check passed). build s: building the problem; "
        "solve s: the solve() call (cvxpy compilation included). objective gap: (f - f_best) / |f_best| against the "
        "best objective among the optimal runs on the same data (negative when the weights violate the constraints). "
        "max violation: the largest scaled constraint violation. min weight: the smallest weight over replications. "
        "ESS: Kish effective sample size of the weights (the smallest arm's). "
        "max abs SMD: largest absolute standardized mean difference after weighting. Effect error: estimate - truth; "
        "RMSE over replications. Means skip the replications where a value could not be computed (see the note).")
    return save(df, out_dir, name, description, markdown_table(df), legend, f"Machine: {_environment()}.")
