"""The kinds of study, registered in one place, and the three calls that dispatch on a study's kind.

A study file without a `kind` key is of the default kind: [[run]] tables of backends, solvers and peers on one
weighting problem (`schema.check_study`, `runner.run`, `report.markdown_table`). A file with `kind = "..."` is run
by the plug-in module that `PLUGINS` names for it, a module with

    check_study(raw, source, folder) -> dict    the parsed TOML checked (folder: where its relative paths start)
    run(study, out_dir, quiet, sizes) -> DataFrame   the study run (sizes: None, or the n to run at, where the kind
                                                 takes one), the frame's attrs["kind"] set, results written
    markdown_table(df) -> str                   the frame as markdown

`load_study`, `run_study` and `markdown_table` look the kind up here and import its plug-in on first use; the
plug-ins import the shared reporting (`report`) and nothing imports them but this module.
"""

from __future__ import annotations

import importlib

import pandas as pd

from ..errors import InputError
from . import report, runner, schema

#: A study's `kind` -> the module of counterpoise.bench that checks, runs and reports it.
PLUGINS = {"balnet": "balnet", "sparse_frontier": "sparse"}


def plugin(kind, where="a study"):
    """The plug-in module of `kind` (imported on first use)."""
    if kind not in PLUGINS:
        raise InputError(f"{where}: unknown kind {kind!r}; choose from {sorted(PLUGINS)}, or give no kind for "
                         "[[run]] tables of backends")
    return importlib.import_module(f"{__package__}.{PLUGINS[kind]}")


def load_study(path_or_name) -> dict:
    """Read and check a study file (a path, or the name of a shipped study); returns the checked study as a dict.
    For the default kind its keys are name, description, source, generator, data_args, crossed, seed,
    replications, family, problem, runs, truth; a plug-in's study has the keys its check_study gives and `kind`."""
    raw, source, folder = schema.read_study(path_or_name)
    if "kind" not in raw:
        return schema.check_study(raw, source, folder)
    return dict(plugin(raw["kind"], f"study {source}").check_study(raw, source, folder), kind=raw["kind"])


def run_study(path, out_dir="results", quiet=False, sizes=None, replications=None, workers=None, scheduler=None,
              force=False) -> pd.DataFrame:
    """Run the study in `path` (a .toml file, or the name of a shipped study such as "sbw-solvers").

    `sizes` (a list of n) and `replications` override the file, for quick runs. A progress bar (cells done, runs
    not optimal, time left) goes to stderr unless `quiet`. The cells (part x data setting x replication) run one
    after another, or on Dask: `workers` single-threaded processes of a LocalCluster, or the running cluster at
    `scheduler`. With `out_dir` (None: write nothing) each cell is stored as it finishes under
    <out_dir>/<name>.cells/, and a run finds the stored cells instead of computing them again (`force`: compute
    them all); the report is written by `write_results` as <out_dir>/<name>.csv, .md and -profile.png. Returns
    the tidy frame: one row per cell x run, with the columns in `COLUMNS` (the crossed data arguments right after
    "setting"). A study with a `kind` lists its other settings in the file, runs them in order, writes its own
    results and returns a frame of its own.
    """
    study = load_study(path)
    if "kind" not in study:
        return runner.run(study, out_dir=out_dir, quiet=quiet, sizes=sizes, replications=replications,
                          workers=workers, scheduler=scheduler, force=force)
    if replications is not None:
        raise InputError(f"a {study['kind']} study lists its settings in the file; replications= does not apply")
    if workers is not None or scheduler is not None or force:
        raise InputError(f"a {study['kind']} study runs its settings in order, here and from scratch; workers, "
                         "scheduler and force apply to studies of [[run]] tables")
    return plugin(study["kind"]).run(study, out_dir=out_dir, quiet=quiet, sizes=sizes)


def markdown_table(df) -> str:
    """The frame of `run_study` as markdown: for the default kind the summary (see `summarize`) as a table, for a
    plug-in's frame its own tables."""
    kind = df.attrs.get("kind")
    if kind is None:
        return report.markdown_table(df, df.attrs.get("time_limit", schema.DEFAULT_TIME_LIMIT))
    return plugin(kind).markdown_table(df)
