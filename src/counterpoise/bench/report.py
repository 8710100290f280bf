"""Reporting a study: the summary and markdown tables of the default kind, the files every kind writes, and the
number formatting the plug-ins share.

The default kind's report follows the conventions of solver benchmarks (qpbenchmark, Mittelmann's): per part,
data setting and run

- success: the share of solves whose status is "optimal" (the solver said so AND counterpoise's post-solve check
  passed) within the study's time limit; correct: of the solves the solver itself called optimal, the share that
  passed the check;
- the shifted geometric mean of the solve time, exp(mean log(t + 10 s)) - 10 s with a failure counted as the time
  limit, divided by the smallest among the runs of that part and setting (the best run reads 1.0), and the median
  and 95th percentile of the solve time;
- success at three accuracy tiers: the solver said optimal, and the largest scaled violation and the objective's
  relative gap above the best optimal objective on the same data are both at most 1e-3, 1e-6 or 1e-9
  (counterpoise's check is the 1e-6 tier of the violation);
- means of the objective gap and the largest violation over every solve, and of ESS, max |SMD| and the effect's
  error (its bias) with its RMSE over the successful solves, the mean SE over the SD of the estimates, and the
  share of confidence intervals that cover the truth.

`write_results` writes the frame as <out_dir>/<name>.csv, a performance profile <out_dir>/<name>-profile.png (see
`profile`) and <out_dir>/<name>.md (a header with the machine, versions, git commit and the CSV's checksum, then
the tables); `save` writes any kind's CSV and markdown; `fmt` prints a number, or "–" for a missing one.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import environment, profile

#: The shift of the shifted geometric mean of solve times, in seconds (qpbenchmark's).
SHIFT = 10.0

#: Accuracy tiers: the largest scaled violation a solver-reported optimum may have at each.
TIERS = {"low": 1e-3, "mid": 1e-6, "high": 1e-9}

#: Statuses of runs that did not solve anything (left out of the rates).
NOT_RUN = ("skipped", "unsupported")


def success(df, time_limit) -> pd.Series:
    """Per row: status "optimal" (solver and check agree) within the time limit."""
    return (df["status"] == "optimal") & (df["solve_time"].astype(float) <= time_limit)


def shifted_geometric_mean(times, shift=SHIFT) -> float:
    """exp(mean log(t + shift)) - shift."""
    return float(np.exp(np.mean(np.log(np.asarray(times, dtype=float) + shift))) - shift)


def summarize(df, time_limit=100.0) -> pd.DataFrame:
    """One row per part x data setting x run (see the module docstring for the columns)."""
    rows = []
    ok = success(df, time_limit)
    for (part, setting, run), group in df.groupby(["part", "setting", "run"], sort=False):
        done = group[~group["status"].isin(NOT_RUN)]
        row = {"part": part, "setting": setting, "run": run, "solves": len(done)}
        if done.empty:
            row["note"] = group["message"].iloc[0]
            rows.append(row)
            continue
        good = ok[done.index]
        said = done["solver_status"] == "optimal"
        times = done["solve_time"].astype(float)
        violation = done["max_violation"].astype(float)
        gap = done["objective_gap"].astype(float)
        solved = done[good]
        error = solved["error"].astype(float)
        row.update(
            success=float(good.mean()),
            correct=float((done["status"][said] == "optimal").mean()) if said.any() else float("nan"),
            sgm=shifted_geometric_mean(times.where(good, time_limit).fillna(time_limit)),
            p50=float(times.median()), p95=float(times.quantile(0.95)),
            build_time=done["build_time"].astype(float).mean(),
            compile_time=done["compile_time"].astype(float).mean(),
            **{tier: float((said & (violation <= tol) & ~(gap > tol) & (times <= time_limit)).mean())
               for tier, tol in TIERS.items()},
            objective_gap=done["objective_gap"].astype(float).mean(),
            max_violation=violation.mean(),
            ess=solved["ess"].astype(float).mean(),
            max_abs_smd=solved["max_abs_smd"].astype(float).mean(),
            error=error.mean(),
            rmse=float(np.sqrt(np.mean(error[error.notna()] ** 2))) if error.notna().any() else float("nan"),
            se_ratio=_se_ratio(solved),
            coverage=solved["covered"].dropna().astype(float).mean() if "covered" in solved else float("nan"),
            min_weight=done["min_weight"].astype(float).min(),
            note=_note(done),
        )
        rows.append(row)
    summary = pd.DataFrame(rows)
    if "sgm" in summary:
        best = summary.groupby(["part", "setting"], sort=False)["sgm"].transform("min")
        summary["sgm_ratio"] = summary["sgm"] / best
    return summary


def _se_ratio(solved) -> float:
    """The mean reported SE over the SD of the estimates across replications (1: the SE is right on average)."""
    estimates = solved["estimate"].astype(float).dropna()
    if len(estimates) < 2:
        return float("nan")
    return float(solved["std_error"].astype(float).mean() / estimates.std(ddof=1))


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


def markdown_table(df, time_limit=100.0) -> str:
    """The summary (see `summarize`) of a default-kind study's frame as markdown: one table per part."""
    summary = summarize(df, time_limit)
    estimand = next((e for e in df["estimand"] if e), "") if "estimand" in df else ""
    has_effect = bool(estimand) and df["error"].notna().any()
    header = ["setting", "run", "success", "correct", "SGM ratio", "p50 s", "p95 s", "build s", "compile s",
              "ok @1e-3", "ok @1e-6", "ok @1e-9", "objective gap", "max violation", "min weight", "ESS",
              "max abs SMD"]
    if has_effect:
        header += [f"{estimand} error", f"{estimand} RMSE", "SE / SD", "CI coverage"]
    header.append("note")
    align = ["---", "---"] + ["---:"] * (len(header) - 3) + ["---"]  # numbers right-aligned
    sections = []
    for part, rows in summary.groupby("part", sort=False):
        ran = df[(df["part"] == part)]
        unsupported = [run for run, g in ran.groupby("run", sort=False) if (g["status"] == "unsupported").all()]
        rows = rows[~rows["run"].isin(unsupported)]
        lines = ([f"### {part}", ""] if part else []) + ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
        for row in rows.to_dict("records"):
            if row["solves"] == 0:
                cells = [row["setting"], row["run"]] + ["–"] * (len(header) - 3) + [row.get("note", "")]
            else:
                cells = [row["setting"], row["run"], f"{row['success']:.0%} of {row['solves']}",
                         fmt(row["correct"], ".0%"), fmt(row["sgm_ratio"], ".3f"), fmt(row["p50"], ".3f"),
                         fmt(row["p95"], ".3f"), fmt(row["build_time"], ".3f"), fmt(row["compile_time"], ".3f"),
                         *(f"{row[tier]:.0%}" for tier in TIERS), fmt(row["objective_gap"], ".1e"),
                         fmt(row["max_violation"], ".1e"), fmt(row["min_weight"], ".1e"), fmt(row["ess"], ".1f"),
                         fmt(row["max_abs_smd"], ".4f")]
                if has_effect:
                    cells += [fmt(row["error"], ".3f"), fmt(row["rmse"], ".3f"), fmt(row["se_ratio"], ".2f"),
                              fmt(row["coverage"], ".1%")]
                cells.append(row["note"])
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        if unsupported:
            lines += ["", f"Not run here, since they do not take this problem's form (their words are in the CSV's "
                          f"message): {', '.join(unsupported)}."]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def save(df, out_dir, name, description, *sections) -> tuple[Path, Path]:
    """Write `df` as <out_dir>/<name>.csv and <out_dir>/<name>.md: a title, the description, the machine header
    (with the CSV's checksum) and the markdown `sections`, one paragraph each. Returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    df.to_csv(csv_path, index=False)
    paragraphs = ([f"# {name}"] + ([description.strip()] if description.strip() else [])
                  + ["\n".join(environment.header(csv_path))] + list(sections))
    md_path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return csv_path, md_path


def profile_figure(df, time_limit, path) -> Path | None:
    """Save the study's performance profile (one panel per part) as `path`; None when no run ran."""
    ran = df[~df["status"].isin(NOT_RUN)]
    if ran.empty:
        return None
    ok = success(ran, time_limit)
    panels = [(part, profile.ratios(group, ok[group.index])) for part, group in ran.groupby("part", sort=False)]
    fig = profile.figure(panels)
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Path(path)


def write_results(df, out_dir, name, description="", time_limit=100.0, resumed=0) -> tuple[Path, Path]:
    """Write `df` (from `run_study`, a study of the default kind) as <out_dir>/<name>.csv, its performance profile
    <out_dir>/<name>-profile.png and a markdown report <out_dir>/<name>.md. Returns the CSV's and the report's paths."""
    reps = int(df["replication"].nunique()) if len(df) else 0
    figure = profile_figure(df, time_limit, Path(out_dir) / f"{name}-profile.png") if len(df) else None
    legend = (
        f"Over {reps} replication(s) per data setting x run; time limit {time_limit:g} s. success: share of solves "
        "with status \"optimal\" (the solver said so and counterpoise's post-solve check passed, largest scaled "
        "violation <= 1e-6) within the time limit. correct: of the solves the solver called optimal, the share that "
        "passed the check. SGM ratio: shifted geometric mean of solve times (shift 10 s, a failure counted as the "
        "time limit) over the smallest in the same setting (the best run is 1.000). p50 / p95 s: median / 95th "
        "percentile of the solve() call's time (cvxpy's compilation included; compile s is that part alone). "
        "build s: building the problem. ok @tol: the solver said optimal, the largest scaled violation is <= tol and "
        "the objective is at most tol (relative) above the best optimal one. "
        "objective gap: (f - f_best) / |f_best| against the best objective among the optimal runs on the same data "
        "(negative when the weights violate the constraints). max violation: the largest scaled constraint "
        "violation. min weight: the smallest weight over replications. ESS: Kish effective sample size (the "
        "smallest arm's), max abs SMD: largest absolute standardized mean difference after weighting, effect error: "
        "estimate - truth (its mean is the bias), RMSE: their root mean square, SE / SD: the mean reported SE over "
        "the SD of the estimates (the run's se method), CI coverage: the share of confidence intervals (95% by "
        "default) that hold the truth, each over the successful solves only. Means skip the solves where a value "
        "could not be computed (see the note); unsupported and skipped runs are not solves.")
    sections = [markdown_table(df, time_limit), legend]
    if figure is not None:
        sections.append(f"![performance profile]({figure.name})\n\nPerformance profile (Dolan and More): the share "
                        "of problems (data setting x replication) each run solves within a factor tau of the fastest "
                        "run on that problem.")
    if resumed:
        sections.append(f"{resumed} cell(s) were read from an earlier run's cell files "
                        f"({name}.cells/), not recomputed.")
    return save(df, out_dir, name, description, *sections)
