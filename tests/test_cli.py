import matplotlib
import numpy as np
import pandas as pd
import pytest

import counterpoise as cpz
from counterpoise.backends import BACKENDS
from counterpoise.cli import main

from test_bench import TINY

matplotlib.use("Agg")


@pytest.fixture
def small_csv(tmp_path):
    path = tmp_path / "data.csv"
    cpz.datasets.kim2023(n=400, overlap="weak", seed=2).to_csv(path, index=False)
    return path


def test_weights_csv(small_csv, tmp_path, capsys):
    out = tmp_path / "w.csv"
    code = main(["weights", str(small_csv), "--treatment", "A", "--covariates", "X1,X2,X3,X4,X5,X6",
                 "--method", "sbw", "--estimand", "ATT", "--delta", "0.05", "--solver", "CLARABEL", "-o", str(out)])
    assert code == 0
    weights = pd.read_csv(out, index_col=0)
    data = pd.read_csv(small_csv)
    assert list(weights.columns) == ["weight"] and weights.index.name == "row"
    assert set(weights.index) == set(data.index[data["A"] == 0])
    assert weights["weight"].sum() == pytest.approx(1.0, abs=1e-8)
    printed = capsys.readouterr().out
    assert "status optimal" in printed and "smd_after" in printed and str(out) in printed


def test_weights_parquet_and_id(small_csv, tmp_path):
    pytest.importorskip("pyarrow", exc_type=ImportError)  # pyarrow >= 21 refuses numpy < 2
    data = pd.read_csv(small_csv)
    data["unit"] = [f"u{i}" for i in range(len(data))]
    source = tmp_path / "data.parquet"
    data.to_parquet(source)
    out = tmp_path / "w.parquet"
    code = main(["weights", str(source), "--treatment", "A", "--covariates", "X1,X2,X3", "--method",
                 "entropy_balance", "--id", "unit", "-o", str(out)])
    assert code == 0
    weights = pd.read_parquet(out)
    assert weights.index.name == "unit" and weights.index[0].startswith("u")
    assert len(weights) == int((data["A"] == 0).sum())
    assert weights["weight"].sum() == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("argv_tail, message", [
    (["--covariates", "X1,Nope"], "error: covariates: columns ['Nope'] are not in the data"),
    (["--covariates", "X1", "--treatment", "Y"], "error:"),
])
def test_weights_error_is_one_line(small_csv, tmp_path, capsys, argv_tail, message):
    argv = ["weights", str(small_csv), "--treatment", "A", "-o", str(tmp_path / "w.csv"), *argv_tail]
    code = main(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "w.csv").exists()


def test_weights_missing_file_and_bad_extension(tmp_path, capsys):
    assert main(["weights", str(tmp_path / "none.csv"), "--treatment", "A", "--covariates", "X1", "-o", "w.csv"]) == 2
    assert capsys.readouterr().err.startswith("error: no data file")
    odd = tmp_path / "data.txt"
    odd.write_text("A,X1\n0,1\n1,2\n")
    assert main(["weights", str(odd), "--treatment", "A", "--covariates", "X1", "-o", "w.csv"]) == 2
    assert "unknown file type .txt" in capsys.readouterr().err


def test_demo(tmp_path, capsys):
    out = tmp_path / "tmp" / "x.png"
    assert main(["demo", "--n", "600", "--out", str(out)]) == 0
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    for text in ("timings: data", "status optimal", "ESS", "ATT =", "95% CI", "true ATT is 0", "love plot saved"):
        assert text in printed
    # delta = 0.02 is infeasible with 100 kernel columns and ~400 controls: the demo loosens it and says so
    assert "is infeasible at n = 600" in printed


def test_bench(tmp_path, capsys):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    code = main(["bench", str(study), "--out-dir", str(tmp_path / "res"), "--sizes", "200,300", "--replications",
                 "1", "--quiet"])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "| setting | run | success |" in captured.out and "n=300, overlap=weak" in captured.out
    assert (tmp_path / "res" / "tiny.csv").is_file() and (tmp_path / "res" / "tiny.md").is_file()
    df = pd.read_csv(tmp_path / "res" / "tiny.csv")
    assert len(df) == 4 and np.all(df.loc[df["run"] == "cvxpy/CLARABEL", "status"] == "optimal")


def test_bench_errors(tmp_path, capsys):
    assert main(["bench", "no-such-study", "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no study file 'no-such-study'")
    with pytest.raises(SystemExit) as info:
        main(["bench", "sbw-solvers", "--sizes", "ten"])
    assert info.value.code == 2


@pytest.mark.parametrize("command", [[], ["demo"], ["weights"], ["bench"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: counterpoise" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["demo", "weights"])
def test_backend_choices_are_the_backends(command, small_csv, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--backend {" + ",".join(["auto", *BACKENDS]) + "}" in capsys.readouterr().out
    argv = ["weights", str(small_csv), "--treatment", "A", "--covariates", "X1", "-o", "w.csv"] \
        if command == "weights" else ["demo"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--backend", "nope"])
    assert info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_help_and_balance_header_read_as_words(small_csv, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "95% CI" in text and "%%" not in text
    assert main(["weights", str(small_csv), "--treatment", "A", "--covariates", "X1,X2", "-o",
                 str(tmp_path / "w.csv")]) == 0
    assert "SMD = (weighted mean - target) / the target population's SD, fixed before weighting" in \
        capsys.readouterr().out


@pytest.fixture
def api_csv(tmp_path):
    path = tmp_path / "apiclus1.csv"
    cpz.datasets.api("apiclus1").to_csv(path, index=False)
    return path


TARGETS_TOML = '[margins.stype]\nE = 4421\nH = 755\nM = 1018\n\n[totals]\napi99 = 3914069\n'
TARGETS_JSON = '{"stype": {"E": 4421, "H": 755, "M": 1018}, "api99": 3914069}'
TARGETS_CSV = "variable,level,total\nstype,E,4421\nstype,H,755\nstype,M,1018\napi99,,3914069\n"


@pytest.mark.parametrize("suffix, text", [(".toml", TARGETS_TOML), (".json", TARGETS_JSON), (".csv", TARGETS_CSV)])
def test_calibrate_a_csv_from_each_targets_format(api_csv, tmp_path, capsys, suffix, text):
    targets = tmp_path / f"targets{suffix}"
    targets.write_text(text)
    out = tmp_path / "w.csv"
    code = main(["calibrate", str(api_csv), "--margins", str(targets), "--base-weights", "pw", "--ids", "dnum",
                 "--fpc", "fpc", "--estimate", "api00", "-o", str(out)])
    assert code == 0
    weights = pd.read_csv(out, index_col=0)["weight"]
    data = pd.read_csv(api_csv)
    design = cpz.SurveyDesign(data, weights="pw", ids="dnum", fpc="fpc").calibrate(
        margins={"stype": {"E": 4421, "H": 755, "M": 1018}}, totals={"api99": 3914069})
    assert weights.to_numpy() == pytest.approx(design.weights, rel=1e-10)
    printed = capsys.readouterr().out
    assert "max relative error" in printed and "api99" in printed
    assert "665.31" in printed and "3.4418" in printed            # the calibrated mean and its SE


def test_rake_and_sparse_commands(api_csv, tmp_path, capsys):
    targets = tmp_path / "margins.csv"
    targets.write_text("variable,level,total\nstype,E,4421\nstype,H,755\nstype,M,1018\nsch.wide,No,1072\n"
                       "sch.wide,Yes,5122\n")
    out = tmp_path / "r.csv"
    assert main(["rake", str(api_csv), "--margins", str(targets), "--base-weights", "pw", "-o", str(out)]) == 0
    raked = pd.read_csv(out, index_col=0)["weight"].to_numpy()
    data = pd.read_csv(api_csv)
    assert (data["stype"] == "H").to_numpy() @ raked == pytest.approx(755, rel=1e-8)
    assert main(["sparse", str(api_csv), "--margins", str(targets), "--base-weights", "pw", "--target-records", "5",
                 "-o", str(out)]) == 0
    sparse = pd.read_csv(out, index_col=0)["weight"].to_numpy()
    assert len(sparse) == len(data) and (sparse > 0).sum() <= 6
    assert main(["sparse", str(api_csv), "--margins", str(targets), "--estimate", "api00", "-o", str(out)]) == 2
    assert "--estimate applies to calibrate and rake" in capsys.readouterr().err


def test_calibrate_bad_targets_file(api_csv, tmp_path, capsys):
    targets = tmp_path / "t.json"
    targets.write_text('{"stype": {"E": "many"}}')
    assert main(["calibrate", str(api_csv), "--margins", str(targets), "-o", str(tmp_path / "w.csv")]) == 2
    assert "margin 'stype' must be a table of level = count" in capsys.readouterr().err
    targets.write_text('{"stype": {"E": 4421, "H": 755}}')
    assert main(["calibrate", str(api_csv), "--margins", str(targets), "-o", str(tmp_path / "w.csv")]) == 2
    assert "M" in capsys.readouterr().err                        # the level in the data without a total
