"""The effect-coverage study's table: per part and run, the draws with an estimate, the ATT's bias and RMSE (the
true ATT is 0), the mean SE over the SD of the estimates, and the share of 95% intervals that hold 0.

    python problems/coverage_table.py problems/rows/effect-coverage-rows.csv.gz     # the stored rows
    python problems/coverage_table.py results/effect-coverage.csv                    # a run of the study

Prints a markdown table.
"""

import argparse

import numpy as np
import pandas as pd
from rmse_table import markdown          # the same markdown as the kernel-sbw-rmse table (this folder)


def table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (part, run), group in frame.groupby(["part", "run"], sort=False):
        ran = group[group["status"] != "skipped"]
        done = ran[ran["estimate"].notna()]
        error = done["estimate"].to_numpy(dtype=float)
        rows.append({"part": part, "run": run, "draws": len(ran), "with an estimate": len(done),
                     "bias": error.mean(), "RMSE": np.sqrt(np.mean(error ** 2)),
                     "SE / SD": done["std_error"].mean() / error.std(ddof=1),
                     "95% CI coverage": f"{done['covered'].astype(float).mean():.1%}"})
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", help="the study's CSV, or the stored rows (.csv.gz)")
    print(markdown(table(pd.read_csv(parser.parse_args().rows))))


if __name__ == "__main__":
    main()
