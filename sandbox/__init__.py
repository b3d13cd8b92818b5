"""Run untrusted user code (one Python module per hook) in a sandboxed subprocess.

The parent-side API is imported by Django code; nothing here imports Django at module level (the
settings are read lazily, for defaults only). See docs/sandbox.md for the isolation layers.
"""

from __future__ import annotations

from sandbox.check import check_code
from sandbox.errors import CodeError, SandboxUnavailable
from sandbox.limits import Limits
from sandbox.process import isolation_report, shutdown
from sandbox.reduce_batch import ReduceStep
from sandbox.runner import CallResult, Session, session

__all__ = [
    "CallResult",
    "CodeError",
    "Limits",
    "ReduceStep",
    "SandboxUnavailable",
    "Session",
    "check_code",
    "isolation_report",
    "session",
    "shutdown",
    "warmup",
]


def warmup() -> dict[str, bool]:
    """Start this process's fork server now (e.g. in a worker's post-fork hook) and report the
    isolation layers; otherwise it starts on the first session."""
    return isolation_report()
