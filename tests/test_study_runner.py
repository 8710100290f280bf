"""The study runner: cells on a real Dask LocalCluster equal the sequential run, per-cell files make a study
resumable, and a study of several parts with `backend = "every"`."""

import numpy as np
import pandas as pd
import pytest

from counterpoise import bench
from counterpoise.bench.runner import TIMES
from counterpoise.errors import InputError

TWO_PARTS = """
name = "two-parts"
description = "SBW and raking, small."

[[part]]
name = "sbw"
[part.data]
generator = "kim2023"
n = [300, 400]
seed = 3
replications = 2
[part.problem]
family = "sbw"
treatment = "A"
covariates = ["X1", "X2", "X3"]
delta = 0.05
[[part.run]]
backend = "dual"
[[part.run]]
backend = "cvxpy"
solver = "CLARABEL"
[part.truth]
outcome = "Y"
att = 0.0

[[part]]
name = "raking"
[part.data]
generator = "survey_margins"
n = 400
variables = 2
levels = 3
seed = 1
[part.problem]
family = "calibrate"
base_weights = "d"
distance = "raking"
[[part.run]]
backend = "every"
"""


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "two-parts.toml"
    path.write_text(TWO_PARTS)
    return path


def _same_numbers(a, b):
    """The frames agree exactly in every column except the times."""
    columns = [c for c in a.columns if c not in TIMES]
    pd.testing.assert_frame_equal(a[columns], b[columns], check_exact=True)


def test_parts_and_every_backend(study):
    df = bench.run_study(study, out_dir=None, quiet=True)
    assert list(df["part"].unique()) == ["sbw", "raking"]
    sbw = df[df["part"] == "sbw"]
    assert len(sbw) == 2 * 2 * 2 and (sbw["status"] == "optimal").all()
    raking = df[df["part"] == "raking"].set_index("run")
    assert "calibration" in raking.index and "cvxpy/CLARABEL" in raking.index and "cvxpy/ECOS_BB" not in raking.index
    assert raking.loc["calibration", "status"] == "optimal"
    assert raking.loc["dual", "status"] == "unsupported" and "dual" in raking.loc["dual", "message"]
    # an exponential cone that cvxpy cannot hand to OSQP: unsupported in cvxpy's words, not a failed solve
    assert raking.loc["cvxpy/OSQP", "status"] == "unsupported"
    assert "OSQP does not take this problem's form" in raking.loc["cvxpy/OSQP", "message"]
    table = bench.markdown_table(df)
    assert "### sbw" in table and "### raking" in table
    assert "| default | dual |" not in table and "take this problem's form (their words are in the CSV's message): " \
        "dual, osqp" in table


def test_dask_local_cluster_equals_the_sequential_run(study, tmp_path):
    sequential = bench.run_study(study, out_dir=tmp_path / "sequential", quiet=True)
    on_dask = bench.run_study(study, out_dir=tmp_path / "dask", quiet=True, workers=2)
    _same_numbers(sequential, on_dask)
    assert (sequential["objective"].notna()).sum() > 10


def test_an_interrupted_study_resumes(study, tmp_path):
    out = tmp_path / "out"
    first = bench.run_study(study, out_dir=out, quiet=True)
    cells = sorted((out / "two-parts.cells").glob("*.csv"))
    assert len(cells) == 2 * 2 + 1                       # sbw: 2 sizes x 2 replications; raking: 1
    again = bench.run_study(study, out_dir=out, quiet=True)
    pd.testing.assert_frame_equal(first, again, check_exact=True)      # every cell read back, times included
    assert "5 cell(s) were read" in (out / "two-parts.md").read_text()

    lost = cells[1]
    lost.unlink()
    resumed = bench.run_study(study, out_dir=out, quiet=True, workers=2)
    _same_numbers(first, resumed)
    recomputed = resumed[TIMES[1]].ne(first[TIMES[1]]) & first[TIMES[1]].notna()     # unsupported runs: no time
    assert recomputed.any() and resumed.loc[~recomputed, TIMES].equals(first.loc[~recomputed, TIMES])
    assert len(resumed.loc[recomputed, ["part", "setting", "replication"]].drop_duplicates()) == 1
    assert lost.is_file() and "4 cell(s) were read" in (out / "two-parts.md").read_text()

    forced = bench.run_study(study, out_dir=out, quiet=True, force=True)
    _same_numbers(first, forced)
    assert (forced[TIMES[1]].dropna() != first[TIMES[1]].dropna()).all()


def test_a_changed_study_does_not_read_stale_cells(study, tmp_path):
    out = tmp_path / "out"
    bench.run_study(study, out_dir=out, quiet=True)
    study.write_text(TWO_PARTS.replace("delta = 0.05", "delta = 0.08"))
    changed = bench.run_study(study, out_dir=out, quiet=True)
    assert "were read" in (out / "two-parts.md").read_text()          # the raking cell is unchanged
    assert changed.loc[changed["part"] == "sbw", "max_abs_smd"].max() > 0.05 + 1e-9


def test_the_time_limit_stops_solvers_and_fails_slow_solves(study, tmp_path):
    quick = tmp_path / "quick.toml"
    quick.write_text('time_limit = 1e-9\n' + TWO_PARTS.replace("replications = 2", "replications = 1"))
    df = bench.run_study(quick, out_dir=None, quiet=True)
    clarabel = df[(df["part"] == "sbw") & (df["run"] == "cvxpy/CLARABEL")]
    assert (clarabel["solver_status"] == "inaccurate").all() and clarabel["message"].str.contains("user_limit").all()
    summary = bench.summarize(df, time_limit=1e-9)
    dual = summary[(summary["part"] == "sbw") & (summary["run"] == "dual")]
    assert (df.loc[(df["part"] == "sbw") & (df["run"] == "dual"), "status"] == "optimal").all()
    assert (dual["success"] == 0).all()               # optimal, but slower than the limit


def test_runner_options_are_checked(study):
    with pytest.raises(InputError, match="not both"):
        bench.run_study(study, out_dir=None, workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(InputError, match="workers must be a positive integer"):
        bench.run_study(study, out_dir=None, workers=0)
    with pytest.raises(InputError, match="no Dask scheduler reached"):
        bench.run_study(study, out_dir=None, scheduler="tcp://127.0.0.1:9")
    with pytest.raises(InputError, match="apply to studies of"):
        bench.run_study("balnet", out_dir=None, workers=2)
    assert np.isfinite(bench.load_study(study)["time_limit"])
