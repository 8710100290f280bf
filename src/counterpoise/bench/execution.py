"""Where a study's cells run: one after another here, or as tasks on Dask (a LocalCluster, or a running cluster).

`completed(function, items, workers, scheduler)` yields (item, function(item)) as each finishes: in order when
neither workers nor scheduler is given; on a `dask.distributed.LocalCluster` of `workers` single-threaded worker
processes; or on the cluster whose scheduler listens at `scheduler` (an address such as "tcp://10.0.0.5:8786").
Each item is one task, shipped as it is (a cell is a few arguments: its data is generated inside the task). A task
that raises stops the run with its error, after the results that finished before it were handed out.
Dask is an optional dependency: pip install "counterpoise[dask]".
"""

from __future__ import annotations

import logging
from contextlib import ExitStack

from ..errors import InputError


def completed(function, items, workers=None, scheduler=None):
    """(item, function(item)) for every item, as each finishes (see the module docstring)."""
    if workers is not None and scheduler is not None:
        raise InputError("give workers (a LocalCluster of that many processes) or scheduler (a running cluster's "
                         "address), not both")
    if workers is None and scheduler is None:
        for item in items:
            yield item, function(item)
        return
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    yield from _on_dask(function, list(items), workers, scheduler)


def _on_dask(function, items, workers, scheduler):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError('running on Dask needs dask.distributed: pip install "counterpoise[dask]"') from None
    if not items:
        return
    with ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0", silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except OSError as exc:
                raise InputError(f"no Dask scheduler reached at {scheduler!r}: {exc}") from None
        futures = {client.submit(function, item, pure=False): item for item in items}
        for future in as_completed(futures):
            yield futures[future], future.result()
