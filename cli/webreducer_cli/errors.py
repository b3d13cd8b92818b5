"""The two ways a command fails: a problem the CLI found, or an error the API answered.

Both end as one line on stderr and exit code 1 (webreducer_cli.main), never a traceback.
"""

from __future__ import annotations

from typing import Any


class CliError(Exception):
    """Something the user can fix: no login, no linked folder, a missing file."""

    def __init__(self, message: str, *, plain: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # Printed as is, without "error: ": compiler-style `file:line:col: message` lines
        # that editors and CI annotations recognise.
        self.plain = plain


class ApiError(CliError):
    """An `{"error": {"code", "message", …}}` answer (docs/api.md, Errors)."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail

    @classmethod
    def from_response(cls, status: int, body: Any, fallback: str) -> ApiError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            # Not the API's error shape (a proxy's page, an old server): say what we got.
            return cls(status, "http_error", f"HTTP {status}: {fallback}", {})
        message = str(error.get("message") or f"HTTP {status}")
        fields = error.get("fields")
        if isinstance(fields, dict) and fields:
            message = f"{message} {format_fields(fields)}"
        return cls(status, str(error.get("code") or "error"), message, error)


def format_fields(fields: dict[str, Any], prefix: str = "") -> str:
    """`{"cases": {"0": {"name": ["required"]}}}` → `cases.0.name: required`, one per field."""
    parts: list[str] = []
    for name, value in fields.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        if not path and isinstance(value, list):
            parts.append(" ".join(str(item) for item in value))
        elif isinstance(value, dict):
            parts.append(format_fields(value, path))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            parts.append(f"{path}: {' '.join(value)}")
        elif isinstance(value, list):
            nested = {str(i): item for i, item in enumerate(value) if item}
            parts.append(format_fields(nested, path))
        else:
            parts.append(f"{path}: {value}")
    return "; ".join(part for part in parts if part)
