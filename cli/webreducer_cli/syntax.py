"""Code the server refused to compile, reported like a compiler: `hook.py:3:5: message`."""

from __future__ import annotations

from webreducer_cli.errors import ApiError, CliError

CODE_ERRORS = {"syntax_error", "code_too_large"}


def code_error_line(error: ApiError, filename: str) -> str:
    line, column = error.detail.get("line"), error.detail.get("column")
    where = filename
    if isinstance(line, int):
        where += f":{line}"
        if isinstance(column, int):
            where += f":{column}"
    return f"{where}: {error.message}"


def raise_code_error(error: ApiError, filename: str) -> None:
    """Re-raise a refused-code answer as the `file:line:col: message` line; others pass."""
    if error.code in CODE_ERRORS:
        raise CliError(code_error_line(error, filename), plain=True) from None
