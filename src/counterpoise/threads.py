"""BLAS threads: the process's BLAS libraries, looked up once (a lookup reads every loaded library: milliseconds,
paid by each small solve that asks again)."""

from __future__ import annotations

import functools

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def blas_threads() -> int:
    """The number of threads BLAS runs on now (the largest over the loaded BLAS libraries; 1 without one)."""
    return max([pool["num_threads"] for pool in _controller().info() if pool.get("user_api") == "blas"], default=1)


def one_blas_thread():
    """A context manager holding BLAS to one thread."""
    return _controller().limit(limits=1, user_api="blas")
