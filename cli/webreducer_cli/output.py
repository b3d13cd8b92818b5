"""Printing: results on stdout (so they can be piped), everything else on stderr."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A status line for people (stderr): never mixed into piped output."""
    err.print(message)


def dumps(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=False)


def short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_diff(lines: Iterable[str], console: Console = out, indent: str = "") -> None:
    for line in lines:
        line = line.rstrip("\n")
        style = None
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        console.print(Text(indent + line, style=style or ""))


def text_diff(old: str, new: str, old_name: str, new_name: str) -> list[str]:
    return list(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
        )
    )


def json_diff_lines(expected: Any, actual: Any) -> list[str]:
    """A unified diff of two JSON values, pretty-printed with sorted keys so only real
    differences show."""
    left = json.dumps(expected, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    right = json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return text_diff(left, right, "expected", "actual")


def state_diff_lines(ops: list[dict[str, Any]]) -> list[str]:
    """The API's JSON-Patch-like ops (docs/api.md, State diffs) as `~ /path: old → new`."""

    def j(value: Any) -> str:
        return short(json.dumps(value, ensure_ascii=False))

    lines = []
    for op in ops:
        path = op.get("path") or "/"
        if op.get("op") == "add":
            lines.append(f"+ {path}: {j(op.get('value'))}")
        elif op.get("op") == "remove":
            lines.append(f"- {path}: {j(op.get('old'))}")
        else:
            lines.append(f"~ {path}: {j(op.get('old'))} → {j(op.get('value'))}")
    return lines


def print_state_diff(ops: list[dict[str, Any]], console: Console = out) -> None:
    for line in state_diff_lines(ops):
        style = {"+": "green", "-": "red"}.get(line[0], "yellow")
        console.print(Text(line, style=style))


OUTCOME_STYLE = {
    "applied": "green",
    "failed": "red",
    "rejected": "red",
    "duplicate": "yellow",
    "pending": "dim",
}


def entry_line(entry: dict[str, Any]) -> str:
    """One log entry as one line (markup): `#12  19:02:11  POST /github  applied  202  3.1 ms`."""
    seq = entry.get("seq")
    when = str(entry.get("received_at") or "")
    when = when[11:19] if len(when) >= 19 else when
    path = "/" + str(entry.get("path") or "").lstrip("/")
    outcome = str(entry.get("outcome") or "?")
    status = entry.get("response_status", entry.get("status"))
    duration = entry.get("duration_ms")
    parts = [
        f"#{seq}" if seq is not None else "  -",
        when,
        f"{entry.get('method') or '?'} {escape(path)}",
        f"[{OUTCOME_STYLE.get(outcome, '')}]{outcome}[/]" if outcome in OUTCOME_STYLE else outcome,
    ]
    if status is not None:
        parts.append(str(status))
    if isinstance(duration, int | float):
        parts.append(f"{duration:.1f} ms")
    error = entry.get("error")
    if isinstance(error, dict):
        parts.append(escape(f"{error.get('type')}: {short(error.get('message') or '', 80)}"))
    if entry.get("resent_from"):
        parts.append(f"(resent from {str(entry['resent_from'])[:8]})")
    return "  ".join(parts)
