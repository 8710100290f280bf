"""What a study ran on, for the header of its report: versions, CPU, BLAS and threads, the git commit, and the
checksum of the results file, so that a reader can tell whether two reports are comparable."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

#: Distributions whose versions the header lists when they are installed (solvers first).
PACKAGES = ["counterpoise", "numpy", "scipy", "pandas", "cvxpy", "clarabel", "osqp", "scs", "ecos", "highspy",
            "adelie", "dask", "distributed"]


def versions() -> dict[str, str]:
    """Python's and each installed distribution's version."""
    found = {"Python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def cpu() -> str:
    """The CPU model (from /proc/cpuinfo where there is one), the machine type, and the logical CPU count."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs"


def blas() -> str:
    """The BLAS libraries loaded here with their threads (threadpoolctl), e.g. "openblas 0.3.23: 2 threads"."""
    from threadpoolctl import threadpool_info

    pools = [f"{pool['internal_api']} {pool.get('version') or '(version unknown)'}: {pool['num_threads']} threads"
             for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return ", ".join(pools) or "no BLAS found"


def git_commit() -> str:
    """The commit of the source tree counterpoise is imported from, with "+ changes" when it has uncommitted ones;
    "not a git checkout" for an installed package."""
    here = Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "not a git checkout"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not a git checkout"
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def checksum(path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def header(results_path=None) -> list[str]:
    """The report's header lines (markdown list items)."""
    lines = ["- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
             f"- CPU: {cpu()}",
             f"- BLAS: {blas()} as loaded; every cell runs with 1 BLAS thread (one cell per worker process)",
             f"- git commit: {git_commit()}"]
    if results_path is not None:
        lines.append(f"- results: {Path(results_path).name}, SHA-256 {checksum(results_path)}")
    return lines
