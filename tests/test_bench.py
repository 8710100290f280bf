import fnmatch
import importlib.util
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from counterpoise import bench
from counterpoise.bench import schema
from counterpoise.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
description = "SBW at n = 300, two solvers."

[data]
generator = "kim2023"
n = [300]
overlap = ["weak"]
seed = 5
replications = 1

[problem]
family = "sbw"
treatment = "A"
covariates = ["X1", "X2", "X3", "X4", "X5", "X6"]
estimand = "ATT"
delta = 0.05

[[run]]
backend = "cvxpy"
solver = "CLARABEL"

[[run]]
backend = "cvxpy"
solver = "OSQP"
label = "osqp"
max_n = 250

[truth]
outcome = "Y"
att = 0.0
"""


def _write(tmp_path, text, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tiny_study(tmp_path):
    path = _write(tmp_path, TINY.replace("max_n = 250\n", ""))
    start = time.perf_counter()
    df = bench.run_study(path, out_dir=tmp_path / "out", quiet=True)
    wall = time.perf_counter() - start
    assert list(df.columns) == bench.COLUMNS[:3] + ["n", "overlap"] + bench.COLUMNS[3:]
    assert len(df) == 2
    assert list(df["run"]) == ["cvxpy/CLARABEL", "osqp"]
    clarabel = df.iloc[0]
    assert clarabel["status"] == "optimal"
    assert clarabel["n"] == 300 and clarabel["n_rows"] == 300 and clarabel["seed"] == 5
    assert clarabel["objective_gap"] < 1e-6
    assert df.loc[df["status"] == "optimal", "objective_gap"].min() == 0.0
    assert clarabel["max_abs_smd"] <= 0.05 + 1e-6
    assert clarabel["ess"] > 0
    # the two runs solved one problem, built once; its build and the solves were timed one after the other
    times = df[["build_time", "solve_time"]].to_numpy(dtype=float)
    assert np.isfinite(times).all() and (times > 0).all()
    assert df["build_time"].nunique() == 1 and times[0, 0] + times[:, 1].sum() <= wall
    assert list(df["solver_status"]) == ["optimal", "optimal"]
    assert np.isfinite(clarabel["estimate"]) and clarabel["error"] == clarabel["estimate"]
    assert df["objective_gap"].notna().all()
    csv, md = tmp_path / "out" / "tiny.csv", tmp_path / "out" / "tiny.md"
    assert csv.is_file() and md.is_file()
    assert len(pd.read_csv(csv)) == 2
    text = md.read_text()
    assert "| setting | run | success | correct | SGM ratio |" in text and "ATT RMSE" in text
    assert "| n=300, overlap=weak | osqp |" in text
    assert (tmp_path / "out" / "tiny-profile.png").is_file() and "![performance profile](tiny-profile.png)" in text


def test_max_n_skips_and_overrides(tmp_path, capsys):
    path = _write(tmp_path, TINY)
    df = bench.run_study(path, out_dir=None, sizes=[200, 300], replications=2)
    assert len(df) == 2 * 2 * 2
    assert sorted(df["seed"].unique()) == [5, 6]
    skipped = df[df["status"] == "skipped"]
    assert set(skipped["run"]) == {"osqp"} and set(skipped["n"]) == {300}
    err = capsys.readouterr().err
    assert "tiny: cells" in err and "/4 [" in err and "runs not optimal" in err       # the progress bar
    table = bench.markdown_table(df)
    assert "skipped: 300 rows > max_n = 250" in table


def test_quiet_prints_nothing(tmp_path, capsys):
    bench.run_study(_write(tmp_path, TINY), out_dir=None, quiet=True)
    assert capsys.readouterr().err == ""


def test_gap_is_nan_without_an_optimal_run(tmp_path):
    text = TINY.replace('solver = "CLARABEL"', 'solver = "CLARABEL"\noptions = { max_iter = 1 }')
    text = text.replace("max_n = 250\n", "options = { max_iter = 1 }\n")
    df = bench.run_study(_write(tmp_path, text), out_dir=None, quiet=True)
    assert (df["status"] != "optimal").all()
    assert df["objective_gap"].isna().all()


def _named_files(study):
    """The files a checked shipped study names: its peer runs' scripts, its HardConcrete script and results."""
    named = [run["script"] for part in study.get("parts", []) for run in part["runs"] if run["peer"]]
    return named + [study["hardconcrete"][key] for key in ("script", "results") if study.get("hardconcrete")]


def _pyproject_ships(relative):
    """Whether pyproject.toml's packages and package-data put problems/<relative> into the package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = ".".join(["counterpoise.problems", *relative.parent.parts])
    return package in config["packages"] and (relative.suffix == ".py" or any(
        fnmatch.fnmatch(relative.name, pattern) for pattern in config["package-data"].get(package, [])))


def test_shipped_studies_and_the_files_they_name_are_package_resources():
    # problems/ is the one copy: pyproject.toml ships it as counterpoise/problems. Installed (CI), the studies are
    # read from the package's resources; from the source tree (PYTHONPATH=src) from problems/ itself.
    folder = schema.studies_folder()
    assert sorted(f"{name}.toml" for name in bench.shipped_studies()) == sorted(
        p.name for p in (ROOT / "problems").glob("*.toml"))
    named = []
    for name in bench.shipped_studies():
        assert (folder / f"{name}.toml").read_text() == (ROOT / "problems" / f"{name}.toml").read_text()
        assert _pyproject_ships(Path(f"{name}.toml"))
        named += _named_files(bench.load_study(name))
    assert {Path(str(p)).name for p in named} >= {"balance_rake.py", "hardconcrete.py", "hardconcrete_results.csv"}
    for path in named:
        relative = Path(str(path)).relative_to(str(folder))
        assert path.is_file() and path.read_bytes() == (ROOT / "problems" / relative).read_bytes(), relative
        assert _pyproject_ships(relative), f"pyproject.toml does not ship problems/{relative}"


def test_pyproject_lists_every_package():
    # packages is a list (packages.find cannot map problems/ into the package): a new subpackage must be added there.
    def folders(root, name):
        return {name} | {".".join([name, *d.relative_to(root).parts]) for d in root.rglob("*")
                         if d.is_dir() and not any(part.startswith((".", "__")) for part in d.relative_to(root).parts)}

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"": "src", "counterpoise.problems": "problems"}
    expected = folders(ROOT / "src" / "counterpoise", "counterpoise") | folders(ROOT / "problems",
                                                                               "counterpoise.problems")
    assert sorted(config["packages"]) == sorted(expected)


@pytest.mark.slow
def test_the_wheel_holds_the_studies_and_their_peers(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("counterpoise-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    problems = ROOT / "problems"
    wanted = [p for p in problems.glob("*.toml")] + [p for p in (problems / "peers").iterdir() if p.is_file()]
    for path in wanted:
        assert f"counterpoise/problems/{path.relative_to(problems).as_posix()}" in names
    assert "counterpoise/problems/README.md" not in names
    assert {"counterpoise/data/api_apiclus1.csv", "counterpoise/bench/kinds.py"} <= names


def test_shipped_study_by_name():
    assert "sbw-solvers" in bench.shipped_studies()
    study = bench.load_study("sbw-solvers")
    [part] = study["parts"]
    assert part["family"] == "sbw" and part["data_args"]["n"] == [2000, 10000, 50000]
    assert [r["solver"] for r in part["runs"]] == ["CLARABEL", "OSQP", "SCS", "ECOS"]
    assert bench.load_study("sbw-solvers.toml")["name"] == "sbw-solvers"
    assert bench.load_study(ROOT / "problems" / "sbw-solvers.toml")["parts"][0]["truth"] == {"outcome": "Y",
                                                                                              "att": 0.0}


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('family = "sbw"', 'family = "magic"'), "unknown family 'magic'"),
    (lambda t: t.replace('generator = "kim2023"', 'generator = "nope"'), "unknown generator 'nope'"),
    (lambda t: t.replace('generator = "kim2023"', 'generator = "InputError"'), "unknown generator"),
    (lambda t: t.replace('name = "tiny"', ""), "missing the key 'name'"),
    (lambda t: t.replace('generator = "kim2023"', ""), "missing the key 'generator'"),
    (lambda t: t.replace('family = "sbw"', ""), "missing the key 'family'"),
    (lambda t: t.split("[[run]]")[0], "missing the key 'run'"),
    (lambda t: t.replace('backend = "cvxpy"\nsolver = "OSQP"', 'solver = "OSQP"'), "missing the key 'backend'"),
    (lambda t: t.replace('solver = "OSQP"', 'solver = "NOSUCH"'), "not installed"),
    (lambda t: t.replace('backend = "cvxpy"\nsolver = "OSQP"', 'backend = "gurobi-ish"'), "unknown backend"),
    (lambda t: t.replace("max_n = 250", "maxn = 250"), "unknown keys ['maxn']"),
    (lambda t: t.replace("max_n = 250", "max_n = 250\naugmented = 1"), "'augmented' must be true or false"),
    (lambda t: t.replace("max_n = 250", 'max_n = 250\naugmented = true\nse = "fixed"'), "'augmented' needs se"),
    (lambda t: t.replace("overlap = [\"weak\"]", "overlap = [\"weak\"]\nrho = 2"), "no arguments ['rho']"),
    (lambda t: t.replace("delta = 0.05", "delta = 0.05\nlambda = 3"), "no arguments ['lambda']"),
    (lambda t: t.replace("n = [300]", ""), "needs the arguments ['n']"),
    (lambda t: t.replace("n = [300]", "n = []"), "empty list"),
    (lambda t: t.replace('outcome = "Y"', ""), "missing the key 'outcome'"),
    (lambda t: t.replace("att = 0.0", "ate = 0.0"), "unknown keys ['ate']"),
    (lambda t: t.replace("att = 0.0", 'att = "zero"'), "must be a number"),
    (lambda t: t.replace("replications = 1", "replications = 0"), "at least 1"),
    (lambda t: t + "\n[extra]\nx = 1\n", "unknown top-level keys ['extra']"),
    (lambda t: t.replace('label = "osqp"', 'label = "cvxpy/CLARABEL"'), "distinct label"),
    (lambda t: t.replace('name = "tiny"', 'name = "tiny'), "not valid TOML"),
    (lambda t: 'kind = "nope"\n' + t, "unknown kind 'nope'"),
])
def test_bad_files_raise_input_error(tmp_path, edit, message):
    with pytest.raises(InputError) as info:
        bench.load_study(_write(tmp_path, edit(TINY)))
    assert message in str(info.value)


def test_unknown_study_name(tmp_path):
    with pytest.raises(InputError, match="no study file 'no-such-study'.*sbw-solvers"):
        bench.run_study("no-such-study", out_dir=None)
    with pytest.raises(InputError, match="no study file"):
        bench.run_study(str(tmp_path / "missing.toml"), out_dir=None)


def test_bad_overrides(tmp_path):
    path = _write(tmp_path, TINY)
    with pytest.raises(InputError, match="sizes must be integers"):
        bench.run_study(path, out_dir=None, sizes=[1])
    with pytest.raises(InputError, match="replications must be a positive integer"):
        bench.run_study(path, out_dir=None, replications=0)


BALNET = """
name = "balnet-tiny"
kind = "balnet"
[data]
generator = "confounded"
seed = 2
settings = [{ n = 800, p = 6 }]
[fit]
treatment = "A"
target = "ATE"
n_lambda = 20
[compare]
binomial = true
cvxpy_points = 1
[truth]
outcome = "Y"
ate = 1.0
"""


def test_balnet_study(tmp_path):
    pytest.importorskip("adelie")
    start = time.perf_counter()
    df = bench.run_study(_write(tmp_path, BALNET), out_dir=tmp_path / "out", quiet=True)
    wall = time.perf_counter() - start
    assert list(df["arm"]) == ["control", "treated"]
    assert (df["n"] == 800).all() and (df["p"] == 6).all()
    assert (df["path"] == 20).all() and (df["requested"] == 20).all()
    # the fit and each arm's binomial path were timed one after the other inside the call
    binomial = df["binomial_path_s"].to_numpy(dtype=float)
    assert np.isfinite(binomial).all() and (binomial > 0).all()
    assert df["balnet_s"].iloc[0] + binomial.sum() <= wall
    assert (df["adelie_path_s"] > 0).all() and df["adelie_path_s"].sum() <= df["balnet_s"].iloc[0]
    assert (df["max_abs_diff_propensity"] < 1e-4).all()
    np.testing.assert_allclose(df["max_smd@1.00"], df["lambda@1.00"], rtol=1e-3)
    text = (tmp_path / "out" / "balnet-tiny.md").read_text()
    assert "speed-up per lambda" in text and bench.markdown_table(df) in text
    with pytest.raises(InputError, match="settings"):
        bench.run_study(_write(tmp_path, BALNET.replace("settings = [{ n = 800, p = 6 }]", ""), "bad.toml"))
    with pytest.raises(InputError, match="do not apply"):
        bench.run_study(_write(tmp_path, BALNET), sizes=[100])


SPARSE = """
name = "sparse-tiny"
kind = "sparse_frontier"
[data]
n = 600
[lasso]
fractions = [0.1, 0.001]
[capped_lasso]
fraction = 0.001
caps = [20.0]
[elastic_net]
ridge = 1.0
fractions = [0.1]
[refit]
distance = "raking"
[exact]
taus = [0.0]
[hardconcrete]
script = "{script}"
results = "{results}"
lambdas = [1e-4]
seeds = [0]
epochs = 20
"""


def test_sparse_frontier_study(tmp_path):
    stored = tmp_path / "hc.csv"
    pd.DataFrame([dict(lambda_l0=1e-4, seed=0, records=100, train_error=0.01, test_error=0.12,
                       fit_seconds=2.5)]).to_csv(stored, index=False)
    text = SPARSE.format(script=ROOT / "problems" / "peers" / "hardconcrete.py", results=stored)
    df = bench.run_study(_write(tmp_path, text), out_dir=tmp_path / "out", quiet=True)
    ours = df[~df["method"].str.startswith("HardConcrete")]
    assert set(ours["method"]) == {"lasso (prox)", "capped lasso (lam = 0.001 lam_max)", "elastic net (ridge 1)",
                                   "elastic net + raking refit", "exact targets (tau)"}
    assert (ours["status"] == "optimal").all()
    assert ours.loc[ours["method"] == "elastic net + raking refit", "train_error"].max() < 1e-9
    assert (df["method"] == "HardConcrete (l0-python)").sum() == 1
    if importlib.util.find_spec("torch") is None:     # not run here: the stored results, and why
        assert df.attrs["provenance"].startswith("stored results (hc.csv); not run here: torch")
    assert (tmp_path / "out" / "sparse-tiny.png").is_file()
    assert "| method | parameter |" in (tmp_path / "out" / "sparse-tiny.md").read_text()


@pytest.mark.filterwarnings("ignore:.*weights are negative")   # linear calibration at n = 400: four, as said
def test_a_peer_run_without_its_interpreter_is_skipped(tmp_path):
    text = """
name = "cal-tiny"
[data]
generator = "survey_margins"
n = [400]
seed = 1
[problem]
family = "calibrate"
base_weights = "d"
distance = "raking"
[[run]]
backend = "calibration"
[[run]]
backend = "dual"
label = "linear dual"
problem = { distance = "linear" }
[[run]]
peer = "balance_rake"
python = "$COUNTERPOISE_NO_SUCH_PYTHON"
script = "peers/balance_rake.py"
"""
    df = bench.run_study(_write(tmp_path, text), out_dir=None, quiet=True)
    assert list(df["status"]) == ["optimal", "optimal", "skipped"]
    assert df["message"].iloc[2] == ("skipped: the environment variable COUNTERPOISE_NO_SUCH_PYTHON that names the "
                                     "peer's interpreter is not set")
    assert list(df["variant"]) == ["", "distance=linear", ""]
    assert df["objective_gap"].iloc[:2].tolist() == [0.0, 0.0]     # each compared within its own variant
    with pytest.raises(InputError, match="unknown peer"):
        bench.run_study(_write(tmp_path, text.replace('"balance_rake"', '"nope"'), "bad.toml"), out_dir=None)


def test_sparse_frontier_at_another_size_says_why_its_stored_peer_does_not_apply():
    if importlib.util.find_spec("torch") and importlib.util.find_spec("l0"):
        pytest.skip("the compare extra is installed, so the peer would run (minutes)")
    df = bench.run_study("sparse-calibration", out_dir=None, quiet=True, sizes=[1200])
    assert df["records"].max() <= 1200
    assert not (df["method"] == "HardConcrete (l0-python)").any()
    assert "stored results are for n = 5000, not n = 1200" in df.attrs["provenance"]
    with pytest.raises(InputError, match="one size"):
        bench.run_study("sparse-calibration", out_dir=None, quiet=True, sizes=[1000, 2000])
