"""Large working arrays with their memory mapped up front.

The first write to each 4 KB page of a fresh allocation traps into the kernel, and on a virtual machine that can
cost a few microseconds per page: 1 to 3 seconds per GB written, as much as the arithmetic that fills a kernel
basis. `empty` asks for the pages in one system call instead (mmap with MAP_POPULATE, on Linux; measured here 4x
faster than faulting them one by one), and is numpy.empty elsewhere and for small arrays.
"""

from __future__ import annotations

import mmap
import math

import numpy as np

#: Arrays of at least this many bytes are mapped up front.
POPULATE_FROM = 64 * 2 ** 20


def empty(shape, dtype=np.float64) -> np.ndarray:
    """An uninitialized C-ordered array like numpy.empty(shape, dtype), its pages mapped in one call when it is
    large (the array owns no data: its base is the mapping, released with the last view)."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is None or size < POPULATE_FROM:
        return np.empty(shape, dtype=dtype)
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    return np.ndarray(shape, dtype=dtype, buffer=mapping)
