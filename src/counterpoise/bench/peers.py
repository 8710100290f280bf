"""Peer methods that live in environments of their own, run as subprocesses by the benchmark runner.

A study's [[run]] table names one with `peer = "balance_rake"`, the interpreter with `python = "..."` (a path,
or an environment variable holding one, written "$NAME") and the script with `script = "..."` (relative to
the study file; a shipped study's peer scripts ship with it). The peer's weights come back and go through
counterpoise's own post-solve check, so every run of a study is judged by the same measure. Where the
interpreter or the script is missing the run is skipped, and its message says why.

balance_rake: Meta's `balance` raking (problems/peers/balance_rake.py), for a problem of categorical margins
only (`calibrate(..., margins=...)`, distance "raking").
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..backends.base import RawResult
from ..errors import InputError

PEERS = ("balance_rake",)


def interpreter(spec) -> tuple[str | None, str]:
    """The interpreter a run names (a path, or "$NAME": the environment variable NAME holds the path), as
    (path, ""), or (None, why there is none here)."""
    if spec.startswith("$"):
        path = os.environ.get(spec[1:], "")
        if not path:
            return None, f"the environment variable {spec[1:]} that names the peer's interpreter is not set"
        where = f"{path!r} (from {spec})"
    else:
        path, where = spec, repr(spec)
    if not Path(path).is_file():
        return None, f"no interpreter {where} here"
    return path, ""


def run_balance_rake(python, script, data, margins, base_weights) -> RawResult:
    """Export the margins and base weights, rake with balance in `python`, and read the weights back."""
    variables = list(margins)
    codes = np.empty((len(data), len(variables)), dtype=np.int64)
    totals = []
    for j, var in enumerate(variables):
        levels = list(margins[var])
        lookup = {str(level): k for k, level in enumerate(levels)}
        values = data[var].astype(str)
        if not values.isin(lookup.keys()).all():
            raise InputError(f"peer balance_rake: variable {var!r} has levels without a margin total")
        codes[:, j] = values.map(lookup).to_numpy()
        totals.append([float(margins[var][level]) for level in levels])
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        np.savez(folder / "data.npz", codes=codes, base_weights=np.asarray(base_weights, dtype=float))
        (folder / "targets.json").write_text(json.dumps({"variables": variables, "totals": totals}))
        out = folder / "out.json"
        done = subprocess.run([python, str(script), "--data", str(folder / "data.npz"), "--targets",
                               str(folder / "targets.json"), "--out", str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            tail = " ".join(done.stderr.strip().splitlines()[-3:])
            return RawResult(weights=np.full(len(data), np.nan), status="failed", solver="balance rake",
                             solve_time=float("nan"), message=f"peer failed: {tail}")
        report = json.loads(out.read_text())
        weights = np.load(folder / "out.weights.npy")
    return RawResult(weights=weights, status="optimal" if report.get("converged") else "inaccurate",
                     solver=f"balance {report['versions']['balance']} rake", solve_time=float(report["seconds"]),
                     iterations=report.get("iterations"),
                     message=f"balance rake: max relative error {report.get('max_rel_error', float('nan')):.1e}, "
                             f"data preparation {report.get('prep_seconds', float('nan')):.2f} s (not timed)")
