"""Row blocks: how a Newton method's sums over units reach the data, in memory or on the partitions of a Dask
collection.

A Newton step on a low-dimensional dual needs sums over the units (the dual's value, its gradient, its Hessian)
and, at the end, the weights unit by unit. Both are functions of one block of rows at a time: `reduce(fn)` sums
fn(*block) over the blocks (each block a tuple of its arguments: its `rows.Rows`, its per-unit vectors) and
`map(fn)` stacks fn(*block) in row order; `collect(fn)` brings each block's result to the caller. `Blocks` holds its
blocks in memory (one block: the data itself); `DaskBlocks` holds them on a Dask cluster, one per partition,
persisted, so a step is one tree reduction whose k + k^2 numbers per partition are all that reach the client.
`batch` is how many trial points a line search should evaluate per pass: one in memory, where a pass is cheap,
several on a cluster, where a pass costs a round trip.
"""

from __future__ import annotations

import numpy as np


def _add(a, b):
    """The elementwise sum of two results of a block function (arrays, numbers, or tuples of them)."""
    if isinstance(a, tuple):
        return tuple(_add(x, y) for x, y in zip(a, b))
    return a + b


def _combine_all(combine, *results):
    """The results of a block function on several blocks, combined pairwise by `combine` (None: summed)."""
    combine = combine or _add
    total = results[0]
    for result in results[1:]:
        total = combine(total, result)
    return total


class Blocks:
    """Row blocks in memory: `blocks` is a list of argument tuples."""

    batch = 1

    def __init__(self, blocks):
        self.blocks = list(blocks)
        self.sizes = None

    def reduce(self, fn, combine=None, **options):
        """sum over blocks of fn(*block, **options) (or their reduction by the binary `combine`, e.g. np.maximum)."""
        return _combine_all(combine, *[fn(*block, **options) for block in self.blocks])

    def map(self, fn, **options) -> np.ndarray:
        """fn(*block, **options) for every block, concatenated in row order."""
        return np.concatenate([fn(*block, **options) for block in self.blocks])

    def collect(self, fn, options=None) -> list:
        """[fn(*block, **options[p]) for each block p whose options are not None] (options None: every block, none)."""
        options = [{}] * len(self.blocks) if options is None else options
        return [fn(*block, **given) for block, given in zip(self.blocks, options) if given is not None]


class DaskBlocks:
    """Row blocks on a Dask cluster: `blocks` is a list of dask Delayed objects, one per partition, each an
    argument tuple (persist them first: every pass reads them); `sizes` their row counts (needed by `map` only)."""

    batch = 8
    fan_in = 8             # partial sums combined per task of the tree reduction

    def __init__(self, blocks, sizes=None):
        self.blocks = list(blocks)
        self.sizes = None if sizes is None else [int(s) for s in sizes]

    def reduce(self, fn, combine=None, **options):
        """sum over partitions of fn(*block, **options) (or their reduction by the binary `combine`), by a tree
        reduction on the cluster."""
        import dask

        level = [dask.delayed(_apply)(fn, block, options) for block in self.blocks]
        while len(level) > 1:
            level = [dask.delayed(_combine_all)(combine, *level[i: i + self.fan_in])
                     for i in range(0, len(level), self.fan_in)]
        return dask.compute(level[0])[0]

    def map(self, fn, **options):
        """fn(*block, **options) for every partition, as one lazy dask array in row order (its chunks the
        partitions)."""
        import dask
        import dask.array as da

        pieces = [da.from_delayed(dask.delayed(_apply)(fn, block, options), shape=(size,), dtype=float)
                  for block, size in zip(self.blocks, self.sizes)]
        return da.concatenate(pieces)

    def collect(self, fn, options=None) -> list:
        """[fn(*block, **options[p]) for each partition p whose options are not None], computed in one pass."""
        import dask

        options = [{}] * len(self.blocks) if options is None else options
        return list(dask.compute(*[dask.delayed(_apply)(fn, block, given)
                                   for block, given in zip(self.blocks, options) if given is not None]))


def _apply(fn, block, options):
    return fn(*block, **options)
