"""The study report's rates, shifted geometric means, accuracy tiers and performance ratios, against hand values."""

import numpy as np
import pandas as pd
import pytest

from counterpoise.bench import profile, report
from counterpoise.bench.runner import frame


def _rows():
    # run A: fastest on replication 0; on replication 1 the solver said optimal, but the check failed (1e-4).
    # run B: optimal on both, slower.
    spec = [("A", 0, "optimal", "optimal", 1.0, 1e-8), ("A", 1, "optimal", "inaccurate", 2.0, 1e-4),
            ("B", 0, "optimal", "optimal", 4.0, 1e-10), ("B", 1, "optimal", "optimal", 3.0, 1e-7)]
    rows = frame([dict(study="s", part="", setting="n=1", replication=r, run=run, variant="", solver_status=said,
                       status=status, solve_time=t, max_violation=v, build_time=0.1)
                  for run, r, said, status, t, v in spec])
    rows.loc[2, "objective_gap"] = 1e-8          # B's first objective sits 1e-8 above the best one
    return rows


def test_summary_by_hand():
    summary = report.summarize(_rows(), time_limit=100.0).set_index("run")
    assert summary.loc["A", "success"] == 0.5 and summary.loc["B", "success"] == 1.0
    assert summary.loc["A", "correct"] == 0.5 and summary.loc["B", "correct"] == 1.0
    # shifted geometric means, shift 10 s, A's failure counted as the 100 s limit
    sgm_a, sgm_b = np.sqrt(11 * 110) - 10, np.sqrt(14 * 13) - 10
    assert summary.loc["A", "sgm"] == pytest.approx(sgm_a) and summary.loc["B", "sgm"] == pytest.approx(sgm_b)
    assert summary.loc["B", "sgm_ratio"] == 1.0 and summary.loc["A", "sgm_ratio"] == pytest.approx(sgm_a / sgm_b)
    assert summary.loc["A", "p50"] == 1.5 and summary.loc["B", "p95"] == pytest.approx(3.95)
    assert list(summary.loc["A", ["low", "mid", "high"]]) == [1.0, 0.5, 0.0]
    assert list(summary.loc["B", ["low", "mid", "high"]]) == [1.0, 1.0, 0.0]     # its gap fails the high tier
    assert report.shifted_geometric_mean([0.0, 0.0]) == pytest.approx(0.0)


def test_a_solve_over_the_time_limit_fails():
    summary = report.summarize(_rows(), time_limit=3.5).set_index("run")
    assert summary.loc["B", "success"] == 0.5 and summary.loc["B", "low"] == 0.5


def test_performance_ratios_by_hand():
    df = _rows()
    ratios = profile.ratios(df, report.success(df, 100.0))
    assert list(ratios.columns) == ["A", "B"]
    np.testing.assert_array_equal(ratios.to_numpy(), [[1.0, 4.0], [np.inf, 1.0]])
    fig = profile.figure([("", ratios)])
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["A", "B"]
    # rho_A(tau) = 1/2 for every tau (it is fastest once and fails once); rho_B reaches 1 at tau = 4
    assert set(lines[0].get_ydata()) == {0.5}
    taus, rho_b = lines[1].get_xdata(), lines[1].get_ydata()
    assert rho_b[taus < 4].max() == 0.5 and rho_b[taus >= 4].min() == 1.0


def test_the_rmse_table_of_kernel_sbw_rmse():
    """problems/rmse_table.py: bias, SD and RMSE of the ATT (true value 0) over the draws with weights, by hand."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "problems" / "rmse_table.py"
    spec = importlib.util.spec_from_file_location("rmse_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = pd.DataFrame({"n": 2000, "overlap": "weak", "transformed": [False] * 4, "noise": "sd", "run": "A",
                         "status": ["optimal", "optimal", "optimal", "infeasible"],
                         "estimate": [0.1, -0.3, 0.5, np.nan], "ess": [100.0, 200.0, 300.0, np.nan]})
    out = module.table(rows).iloc[0]
    assert out["draws"] == 4 and out["infeasible"] == "25%" and out["covariates"] == "X"
    assert out["bias"] == pytest.approx(0.1) and out["SD"] == pytest.approx(0.4)
    assert out["RMSE"] == pytest.approx(np.sqrt((0.01 + 0.09 + 0.25) / 3)) and out["ESS"] == pytest.approx(200.0)
    assert module.markdown(module.table(rows)).splitlines()[0].startswith("| n | overlap | covariates")
    both = pd.concat([rows, rows.assign(run="Algorithm 1, bandwidth 2p, delta auto", status="optimal",
                                        estimate=[0.2, 0.2, -0.2, -0.2])])
    wide = module.compact(module.table(both)).iloc[0]
    assert wide["A1 2p auto"] == "0.200 (0%)" and wide["A"] == f"{np.sqrt(0.35 / 3):.3f} (25%)" and wide["draws"] == 4
    assert wide["paper"] == "0.19"                       # Table 3: weak overlap, X, n = 2000
