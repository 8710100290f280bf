from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import counterpoise as cpz
from counterpoise.diagnostics import BalanceDesign
from counterpoise.errors import InputError
from counterpoise.plots import love_plot, path_plot


def _table(groups=("control",)):
    blocks = []
    for k, group in enumerate(groups):
        blocks.append(pd.DataFrame({
            "group": group, "term": ["age", "income", "educ"],
            "smd_before": np.array([0.3, -0.8, 0.05]) * (k + 1), "smd_after": np.array([0.02, -0.05, 0.01]) * (k + 1),
        }))
    return pd.concat(blocks).set_index(["group", "term"])


def _threshold_lines(ax, x):
    return [line for line in ax.lines if np.allclose(line.get_xdata(), x) and line.get_linestyle() == "--"]


def test_love_plot_one_group():
    fig = love_plot(_table(), threshold=0.1, title="ATT")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    before, after = ax.collections
    # Terms ordered by |smd_before|, largest at the top (highest y).
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["educ", "age", "income"]
    np.testing.assert_allclose(before.get_offsets(), [[0.3, 1], [0.8, 2], [0.05, 0]])
    np.testing.assert_allclose(after.get_offsets(), [[0.02, 1], [0.05, 2], [0.01, 0]])
    assert before.get_facecolors().size == 0  # open markers
    assert after.get_facecolors()[0, 3] == 1  # filled markers
    assert len(_threshold_lines(ax, 0.1)) == 1
    assert ax.get_xlabel() == "Absolute standardized mean difference"
    assert ax.get_title() == "ATT"


def test_love_plot_groups_solution_and_std():
    solution = SimpleNamespace(balance=_table(groups=("treated", "control")))
    fig = love_plot(solution, threshold=0.25)
    ax = fig.axes[0]
    assert len(ax.collections) == 4
    assert all(len(c.get_offsets()) == 3 for c in ax.collections)
    colors = {tuple(c.get_edgecolors()[0]) for c in ax.collections}
    assert len(colors) == 2
    assert len(_threshold_lines(ax, 0.25)) == 1
    assert len(_threshold_lines(love_plot(_table(), threshold=None).axes[0], 0.1)) == 0

    design = BalanceDesign(names=("x",), X=np.array([[0.0], [2.0]]), groups=np.array(["control", "control"]),
                           base_weights=np.ones(2), targets={"control": np.array([2.0])},
                           denominators={"target": np.array([1.0]), "pooled": np.array([2.0])})
    # |mean - target| = |1 - 2| = 1: 1 with the default "target" SD, 0.5 with the "pooled" SD.
    recomputed = love_plot(SimpleNamespace(design=design, weights=np.ones(2)), std="pooled").axes[0]
    assert recomputed.collections[0].get_offsets()[0, 0] == pytest.approx(0.5)
    with pytest.raises(InputError, match="std="):
        love_plot(_table(), std="pooled")


def test_path_plot():
    table = pd.DataFrame({"delta": [0.5, 0.01, 0.1, 0.001], "max_abs_smd": [0.5, 0.01, 0.1, 0.001],
                          "ess": [90.0, 40.0, 70.0, 30.0]})
    fig = path_plot(SimpleNamespace(parameter="delta", table=table))
    top, bottom = fig.axes
    (smd_line,), (ess_line,) = top.lines, bottom.lines
    np.testing.assert_allclose(smd_line.get_xdata(), [0.001, 0.01, 0.1, 0.5])
    np.testing.assert_allclose(smd_line.get_ydata(), [0.001, 0.01, 0.1, 0.5])
    np.testing.assert_allclose(ess_line.get_ydata(), [30.0, 40.0, 70.0, 90.0])
    assert top.get_xscale() == "log" and bottom.get_xlabel() == "delta"
    narrow = path_plot(SimpleNamespace(parameter="lam", table=table.rename(columns={"delta": "lam"}).assign(lam=[1, 2, 3, 4])))
    assert narrow.axes[0].get_xscale() == "linear"
    with pytest.raises(InputError, match="ess"):
        path_plot(SimpleNamespace(parameter="delta", table=table.drop(columns="ess")))


def test_love_plot_reads_at_both_ends(kim):
    """Square-root x axis, rings around smaller dots, markers at 0 not clipped, labelled threshold and tolerance,
    the SD named, a readable size."""
    sol = cpz.sbw(kim, treatment="A", covariates=["X1", "X2", "X3", "X4", "X5", "X6"], delta=0.02).solve()
    fig = love_plot(sol, tolerance=0.02)
    ax = fig.axes[0]
    assert ax.get_xscale() == "function" and ax.get_xlim()[0] == 0
    before, after = ax.collections
    assert before.get_sizes()[0] > after.get_sizes()[0] and before.get_zorder() < after.get_zorder()
    assert not before.get_clip_on() and not after.get_clip_on()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["before", "after", "threshold 0.1", "tolerance delta = 0.02"]
    assert "the target population's SD" in ax.get_xlabel()
    width, height = fig.get_size_inches() * fig.dpi
    assert width >= 1000 and height >= 450
