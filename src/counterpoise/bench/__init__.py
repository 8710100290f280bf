"""Benchmark studies: one TOML file says which data, which weighting problem and which backends/solvers to compare.

    from counterpoise import bench
    df = bench.run_study("sbw-solvers", out_dir="results")      # a shipped study, or a path to a .toml file
    print(bench.markdown_table(df))

The format of a study file and where the shipped ones live: `schema`. Running one: `runner` (the default kind,
[[run]] tables of backends, solvers and peers) with `peers` (peer methods in environments of their own), or a
plug-in for a study with a `kind`: `balnet` (balnet's paths against adelie's binomial GLM and cvxpy) and `sparse`
(the sparse-calibration frontier against HardConcrete), both registered in `kinds`, which dispatches. The
summary, the markdown and the files written: `report`.
"""

from .kinds import load_study, markdown_table, run_study
from .report import summarize, write_results
from .runner import COLUMNS
from .schema import shipped_studies

__all__ = ["COLUMNS", "load_study", "markdown_table", "run_study", "shipped_studies", "summarize", "write_results"]
