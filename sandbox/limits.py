"""Per-call and per-child resource limits (docs/configuration.md, "Limits"; docs/sandbox.md)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# Setting name for each field; the defaults below apply when Django is not configured.
_SETTINGS = {
    "cpu_seconds": "WR_CPU_SECONDS",
    "wall_seconds": "WR_WALL_SECONDS",
    "memory_bytes": "WR_MEMORY_BYTES",
    "output_bytes": "WR_MAX_OUTPUT_BYTES",
    "state_bytes": "WR_MAX_STATE_BYTES",
}


def setting(name: str, default: Any) -> Any:
    """A Django setting when settings are configured, else `default` (the child never calls this)."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:  # pragma: no cover - Django is always installed here
        return default
    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:
        return default


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 1.0  # per function call
    wall_seconds: float = 2.0  # per function call, enforced by the parent with SIGKILL
    memory_bytes: int = 256 * 2**20  # per sandbox child, on top of the preloaded interpreter
    output_bytes: int = 64 * 2**10  # console output captured per call
    state_bytes: int = 2**20  # serialised state (UTF-8 bytes of compact JSON)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive number, not {value!r}")

    @classmethod
    def from_settings(cls, overrides: dict[str, Any] | None = None) -> Limits:
        values: dict[str, Any] = {}
        for f in fields(cls):
            values[f.name] = setting(_SETTINGS[f.name], f.default)
        for name, value in (overrides or {}).items():
            if name not in values:
                raise ValueError(f"unknown limit {name!r}")
            if value is not None:
                values[name] = value
        for name in ("memory_bytes", "output_bytes", "state_bytes"):
            values[name] = int(values[name])
        for name in ("cpu_seconds", "wall_seconds"):
            values[name] = float(values[name])
        return cls(**values)
