"""Peer methods that live in environments of their own, run as subprocesses by the benchmark runner.

A study's [[run]] table names one with `peer = "balance_rake"`, the interpreter with `python = "..."` (a path,
or an environment variable holding one, written "$NAME") and the script with `script = "..."` (relative to
the study file). The peer's weights come back and go through counterpoise's own post-solve check, so every run
of a study is judged by the same measure.

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

from .backends.base import RawResult
from .errors import InputError

PEERS = ("balance_rake",)


def interpreter(spec) -> str | None:
    """The interpreter path a run names (expanding "$NAME"), or None when it does not exist here."""
    path = os.environ.get(spec[1:], "") if spec.startswith("$") else spec
    return path if path and Path(path).is_file() else None


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
