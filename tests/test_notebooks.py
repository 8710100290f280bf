"""Every notebook in notebooks/ executes from top to bottom at its small size (COUNTERPOISE_NOTEBOOK_SIZE=small).

The notebooks are jupytext percent scripts; each is converted to a notebook and run by nbclient in a fresh kernel,
so a cell that raises fails the test with the cell's traceback.
"""

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))


def test_there_is_a_notebook_per_seed_study():
    assert {path.stem for path in NOTEBOOKS} >= {"kernel_sbw", "balnet", "sparse_frontier", "proximal_l1",
                                                 "survey_calibration", "new_constraint"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_at_small_size(path, monkeypatch, tmp_path):
    monkeypatch.setenv("COUNTERPOISE_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
