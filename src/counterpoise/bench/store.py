"""Per-cell result files, so that an interrupted study resumes: <out_dir>/<name>.cells/<cell>.csv, one per cell.

A cell's file name ends in a hash of everything that determines its rows except the code (`cell_id`): the part's
data generator and arguments, seed and replication, builder and arguments, runs and truth, and the study's time
limit. Changing any of them
gives new cells (the old files stay, unread); `--force` recomputes the cells of this run regardless. Files are
written whole under a temporary name and renamed, so a killed run leaves no half-written cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd


def cell_id(cell) -> str:
    """A file-name-safe id: the part's name, the setting's and replication's numbers, and a hash of the cell."""
    part = cell["part"]
    spec = {key: part[key] for key in ("part", "generator", "family", "problem", "truth")}
    spec["runs"] = [{k: v for k, v in run.items() if k != "script"} | {"script": str(run.get("script", ""))}
                    for run in part["runs"]]
    spec.update(study=cell["study"], args=cell["args"], seed=cell["seed"], replication=cell["replication"],
                time_limit=cell["time_limit"])
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
    prefix = re.sub(r"[^A-Za-z0-9]+", "-", part["part"]).strip("-") or "cell"
    return f"{prefix}-s{cell['index']}-r{cell['replication']}-{digest}"


class CellStore:
    """The folder of one study's cell files under `out_dir`."""

    def __init__(self, out_dir, name):
        self.folder = Path(out_dir) / f"{name}.cells"

    def path(self, cell) -> Path:
        return self.folder / f"{cell}.csv"

    def read(self, cells) -> dict[str, list[dict]]:
        """The stored rows of those of `cells` (ids) that have a file, read back exactly (floats round-trip)."""
        found = {}
        for cell in cells:
            path = self.path(cell)
            if path.is_file():
                found[cell] = pd.read_csv(path, float_precision="round_trip").to_dict("records")
        return found

    def write(self, cell, rows):
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.path(cell).with_suffix(".csv.partial")
        pd.DataFrame(rows).to_csv(temporary, index=False)
        os.replace(temporary, self.path(cell))
