"""The kernel-sbw-rmse study's accuracy table: per n, overlap, covariates, noise reading and run, the draws, the
share without weights (infeasible at that delta), and over the draws with weights the ATT's bias, SD and RMSE (the
true ATT is 0) and the mean ESS of the weights.

    python problems/rmse_table.py results/kernel-sbw-rmse.csv

Prints a markdown table. The paper's Table 3 (weak overlap) and Web Table 7 (strong) report the RMSE of kernel SBW
with OSQP.
"""

import argparse

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="the study's CSV (counterpoise bench ... --out-dir DIR writes DIR/kernel-sbw-rmse.csv)")
    args = parser.parse_args()
    print(markdown(table(pd.read_csv(args.csv))))


def markdown(frame: pd.DataFrame) -> str:
    cells = frame.apply(lambda column: column.map(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)))
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()])


if __name__ == "__main__":
    main()
