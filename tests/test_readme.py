"""The README and the pages of docs/ run: every fenced Python block, in order (the README first, then the pages in
the order the README links them), in one namespace, and every shell command but the `pip install` and `pytest`
that CI itself runs (`.ci/run`), in a scratch folder."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import counterpoise as cpz
from counterpoise.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
PAGES = [README] + [README.parent / link for link in
                    dict.fromkeys(re.findall(r"\]\((docs/[\w-]+\.md)\)", README.read_text()))]
BLOCKS = [(kind, block, page) for page in PAGES
          for kind, block in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.S | re.M)
          if kind]                                               # untagged fences are diagrams, not code


def test_every_page_of_docs_is_linked_from_the_readme():
    assert sorted(PAGES[1:]) == sorted((README.parent / "docs").glob("*.md"))


def _commands(block):
    """The shell commands of a block: one per line, `&&` splits, comments and CI's own commands dropped."""
    for line in block.splitlines():
        line = line.split("  #")[0].strip()
        for command in filter(None, (part.strip() for part in line.split("&&"))):
            if not command.startswith(("pip install", "pytest")):
                yield shlex.split(command)


def test_the_readme_has_python_and_shell_blocks():
    kinds = [kind for kind, _, _ in BLOCKS]
    assert set(kinds) == {"python", "sh"}, "a fence tagged otherwise would not run here"
    assert kinds.count("python") >= 6 and kinds.count("sh") >= 2


def test_every_readme_block_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for kind, block, page in BLOCKS:
        if kind == "python":
            exec(compile(block, str(page), "exec"), namespace)
            continue
        for command in _commands(block):
            if command[0] == "counterpoise":
                assert main(command[1:]) == 0, command
            elif command[0] == "python":
                subprocess.run([sys.executable, *command[1:]], check=True)
            else:
                pytest.fail(f"the README runs a command the test does not know: {command}")
    assert (tmp_path / "love_plot.png").is_file() and (tmp_path / "weights.csv").is_file()
    assert (tmp_path / "cal.csv").is_file()
    assert round(namespace["calibrated"].mean("api00").se, 4) == 3.4418
    assert "status optimal" in capsys.readouterr().out
    table = namespace["small"].path(share=[0.03, 0.025, 0.022]).table
    assert list(table["status"]) == ["optimal"] * 3
    assert table["objective"][0] < table["objective"][1] < table["objective"][2]      # the share binds
    assert round(table["ess"][0]) == 575 and round(table["ess"][2]) == 564


def test_the_tours_effects_are_the_ones_it_prints():
    """The tour's comments quote the SBW ATT (4.38), the kernel SBW ATT (0.24) and the augmented quadratic SBW
    ATT (0.002; plain -0.11, as its paragraph says) on its data."""
    data = cpz.datasets.kim2023(n=20_000, overlap="weak", seed=1)
    covariates = ["X1", "X2", "X3", "X4", "X5", "X6"]
    sbw = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=0.02).solve()
    kernel = cpz.kernel_sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=0.01).solve()
    for weights, estimate, se in ((sbw, 4.38, 0.185), (kernel, 0.24, 0.042)):
        effect = cpz.estimate.att(data, treatment="A", outcome="Y", weights=weights)
        assert (round(effect.estimate, 2), round(effect.std_error, 3)) == (estimate, se)
    assert round(cpz.estimate.att(data, treatment="A", outcome="Y", weights=kernel, se="fixed").std_error, 2) == 0.50
    quadratic = cpz.sbw(data, treatment="A", covariates=covariates, estimand="ATT", delta=0.02, moments=2,
                        interactions=True).solve()
    plain = cpz.estimate.att(data, treatment="A", outcome="Y", weights=quadratic)
    augmented = cpz.estimate.att(data, treatment="A", outcome="Y", weights=quadratic, augmented=True)
    assert (round(plain.estimate, 2), round(augmented.estimate, 3), round(augmented.std_error, 3)) == (-0.11, 0.002,
                                                                                                      0.023)
