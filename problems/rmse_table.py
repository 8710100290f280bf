"""The kernel-sbw-rmse study's accuracy table: per n, overlap, covariates, noise reading and run, the draws, the
share without weights (infeasible at that delta), and over the draws with weights the ATT's bias, SD and RMSE (the
true ATT is 0) and the mean ESS of the weights.

    python problems/rmse_table.py results/kernel-sbw-rmse.csv            # one row per setting and run
    python problems/rmse_table.py results/kernel-sbw-rmse.csv --compact  # RMSE (infeasible share), runs as columns
    python problems/rmse_table.py results/kernel-sbw-rmse.cells          # a study's cell files, e.g. while it runs

Prints a markdown table. The paper's Table 3 (weak overlap) and Web Table 7 (strong) report the RMSE of kernel SBW
with OSQP.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def table(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(covariates=np.where(frame["transformed"], "X*", "X"))
    keys = ["n", "overlap", "covariates", "noise", "run"]
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        solved = group[group["status"] == "optimal"]
        error = solved["estimate"].to_numpy(dtype=float)        # the true ATT is 0
        rows.append(dict(zip(keys, key), draws=len(group), infeasible=f"{1 - len(solved) / len(group):.0%}",
                         bias=error.mean() if len(error) else np.nan,
                         SD=error.std(ddof=1) if len(error) > 1 else np.nan,
                         RMSE=np.sqrt(np.mean(error ** 2)) if len(error) else np.nan,
                         ESS=solved["ess"].mean() if len(solved) else np.nan))
    return pd.DataFrame(rows)


#: The compact table's column names for the study's runs.
SHORT = {"Algorithm 1, bandwidth p, delta 0.0005 raw": "A1 p raw", "Algorithm 1, bandwidth 2p, delta 0.0005 raw":
         "A1 2p raw", "public code's C U_W, bandwidth 2p, delta 0.0005 raw": "CU 2p raw",
         "Algorithm 1, bandwidth 2p, delta auto": "A1 2p auto", "public code's C U_W, bandwidth 2p, delta auto":
         "CU 2p auto"}


#: The paper's kernel SBW (OSQP) RMSE: Table 3 (weak overlap) and Web Table 7 (strong), X and X*, by n.
PAPER = {("weak", "X"): [0.19, 0.03, 0.10, 0.04, 0.02], ("weak", "X*"): [0.31, 0.19, 0.16, 0.08, 0.05],
         ("strong", "X"): [0.05, 0.03, 0.02, 0.01, 0.01], ("strong", "X*"): [0.39, 0.21, 0.19, 0.10, 0.03]}
PAPER_N = [2000, 5000, 10000, 100000, 1000000]


def compact(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: each run's RMSE with its infeasible share in brackets, the draws, and the paper's
    RMSE for that n, overlap and covariates."""
    rows = rows.assign(cell=[("–" if np.isnan(r) else f"{r:.3f}") + f" ({i})" for r, i in zip(rows["RMSE"],
                                                                                            rows["infeasible"])],
                       run=rows["run"].map(lambda run: SHORT.get(run, run)))
    keys = ["n", "overlap", "covariates", "noise"]
    wide = rows.pivot_table(index=keys, columns="run", values="cell", aggfunc="first")
    known = [name for name in SHORT.values() if name in wide.columns]
    wide = wide[known + [name for name in wide.columns if name not in known]]
    wide["draws"] = rows.groupby(keys)["draws"].max()
    wide = wide.reset_index()
    wide["paper"] = [f"{PAPER[o, c][PAPER_N.index(n)]:.2f}" if n in PAPER_N else "–"
                     for n, o, c in zip(wide["n"], wide["overlap"], wide["covariates"])]
    return wide


def read(path) -> pd.DataFrame:
    """The study's rows: its CSV, or every cell file of a .cells folder."""
    path = Path(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    return pd.concat([pd.read_csv(f, low_memory=False) for f in files], ignore_index=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the study's CSV (counterpoise bench ... --out-dir DIR writes "
                                     "DIR/kernel-sbw-rmse.csv) or its DIR/kernel-sbw-rmse.cells folder")
    parser.add_argument("--compact", action="store_true", help="RMSE (infeasible share), one column per run")
    args = parser.parse_args()
    rows = table(read(args.path))
    print(markdown(compact(rows) if args.compact else rows))


def markdown(frame: pd.DataFrame) -> str:
    cells = frame.apply(lambda column: column.map(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)))
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()])


if __name__ == "__main__":
    main()
