"""Progress bars for long work: paths, bootstraps, cross-validation folds.

`bar(iterable, description, progress)` is tqdm on stderr: shown when `progress` is True, hidden when False, and by
default (None) shown only when stderr is a terminal, so logs, notebooks' captured output and tests stay clean.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def bar(iterable, description, progress=None, total=None):
    """`iterable` wrapped in a progress bar labelled `description` (see the module docstring for when it shows);
    `total`: its length, for an iterable without len()."""
    shown = bool(getattr(sys.stderr, "isatty", lambda: False)()) if progress is None else bool(progress)
    return tqdm(iterable, desc=description, disable=not shown, file=sys.stderr, leave=False, dynamic_ncols=True,
                total=total)
