"""The exceptions the sandbox's callers catch."""

from __future__ import annotations


class CodeError(Exception):
    """User code that cannot be saved: a syntax error, too large, or a bad contract name."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        if self.column is None:
            return f"{self.message} (line {self.line})"
        return f"{self.message} (line {self.line}, column {self.column})"


class SandboxUnavailable(Exception):
    """An isolation layer is missing (and weak mode is off), or the sandbox cannot start."""

    def __init__(self, message: str, *, missing: tuple[str, ...] = ()) -> None:
        self.missing = missing
        super().__init__(message)
