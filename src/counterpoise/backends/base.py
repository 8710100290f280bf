"""What a backend is, what it returns, and the registry of backends.

A backend is a class built from a problem (`Backend(problem)`, which raises `UnsupportedProblem` when the
problem's terms are not of the form it solves) with a `solve(solver=None, **options) -> RawResult` that keeps its
expensive state (a compiled problem, a factorization, the last dual point) between solves. `@register` adds it to
`BACKENDS`; its class attributes say what it solves and how (the README's backend table is `markdown_table()`),
and `auto` its place in backend="auto"'s order (None: auto never picks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Backend(Protocol):
    """What `register` takes: built once per problem, then solved as often as its parameters change."""

    name: str                  # what solve(backend=...) calls it
    solves: str                # the problems it solves, and how, in words (the README's table)
    how: str
    auto: int | None           # its place in backend="auto"'s order (None: auto never picks it)
    form: type | None          # the forms.Form it recognizes (None: every problem)

    def __init__(self, problem): ...   # raises UnsupportedProblem for terms it cannot solve

    def solve(self, solver=None, **options) -> "RawResult": ...


#: Every backend by name, in registration order.
BACKENDS: dict[str, type] = {}


def register(backend):
    """Class decorator: add `backend` (a `Backend`) to BACKENDS under `backend.name`."""
    for attribute in ("name", "solves", "how", "auto", "form"):
        if not hasattr(backend, attribute):
            raise TypeError(f"backend {backend.__name__} has no {attribute!r}")
    BACKENDS[backend.name] = backend
    return backend


def auto_order() -> tuple:
    """What backend="auto" tries, fastest first; each is skipped where it cannot solve the problem exactly."""
    ranked = sorted((b.auto, name) for name, b in BACKENDS.items() if b.auto is not None)
    return tuple(name for _, name in ranked)


def markdown_table(default) -> str:
    """The backend table of the README: name, what it solves, how; `default` is the backend solve() uses."""
    rows = ["| backend | solves | how |", "|---|---|---|"]
    rows += [f'| `"{name}"`{" (default)" if name == default else ""} | {b.solves} | {b.how} |'
             for name, b in BACKENDS.items()]
    *fast, last = [f"`{name}`" for name in auto_order()]
    label = '`"auto"`' + (" (default)" if default == "auto" else "")
    rows.append(f"| {label} | every problem | the fastest exact backend that applies ({', '.join(fast)}, else {last}), "
                "moving on when a solution fails the check |")
    return "\n".join(rows)


@dataclass
class Certificate:
    """Why no weights exist. From a dual backend: `ray`, the dual's Farkas direction (normalized) per balance term
    (term name -> per-column values), and `below`, a common scaled tolerance below which no weights exist (NaN when
    not known). From the relaxed problem (`infeasibility.certify`): `binding`, its table of the balance columns that
    need slack (term, column, tolerance, needed)."""

    ray: dict = field(default_factory=dict)
    below: float = float("nan")
    binding: object = None


@dataclass
class RawResult:
    """A backend's answer before counterpoise checks it: weights plus the solver's own account. The typed fields
    are what the rest of counterpoise reads (`dual_point`, `certificate` when infeasible, `worst_targets` from a
    calibration: (name, achieved, target, relative misfit) rows, worst first); `info` is the solver's own
    statistics, for reports."""

    weights: np.ndarray
    status: str                  # "optimal", "inaccurate", "infeasible", "unbounded" or "failed"
    solver: str
    solve_time: float            # seconds in the solver call (compile included for cvxpy's first solve)
    duals: dict = field(default_factory=dict)   # term name -> per-column dual values
    iterations: int | None = None
    message: str = ""
    info: dict = field(default_factory=dict)
    dual_point: np.ndarray | None = None
    certificate: Certificate | None = None
    worst_targets: list = field(default_factory=list)
