"""A hook's test cases: the `tests.json` file and the run results (docs/cli.md, Test cases).

The file is the API's document (`GET /api/hooks/<id>/tests/`) as is, so the same JSON goes
between the editor, git, the server and the UI without translation:

    {"required": false, "cases": [{"name": …, "requests": [Step…], "expect": {"state": …}}]}

The server validates it (and bounds it: WR_MAX_TEST_CASES, …); this module only checks that
it is a document at all, so the error names the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from webreducer_cli.errors import CliError
from webreducer_cli.output import json_diff_lines, out, print_diff, short


def cases_file_load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"Cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise CliError(f"{path}:{error.lineno}:{error.colno}: {error.msg}", plain=True) from None
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise CliError(f'{path}: expected {{"cases": [...], "required": false}}.')
    if "required" in document and not isinstance(document["required"], bool):
        raise CliError(f"{path}: `required` must be true or false.")
    return document


def failure_title(failure: dict[str, Any]) -> str:
    step = failure.get("step")
    where = (
        f"step {step + 1 if isinstance(step, int) else '?'}"
        if step is not None
        else "after the last step"
    )
    return f"{where}: {failure.get('what')}"


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def results_print(report: dict[str, Any], console: Console = out) -> None:
    """The pass/fail table, then each failure with a diff of what was expected and what came."""
    results = report.get("results") or []
    table = Table("", "case", "result")
    for result in results:
        if result.get("passed"):
            table.add_row(Text("✓", style="green"), result.get("name", ""), Text("passed", "green"))
            continue
        reasons = [failure_title(f) for f in result.get("failures") or []]
        if result.get("error"):
            reasons.insert(
                0, f"{result['error'].get('type')}: {short(result['error'].get('message'))}"
            )
        table.add_row(
            Text("✗", style="red"),
            result.get("name", ""),
            Text("; ".join(reasons) or "failed", "red"),
        )
    console.print(table)
    for result in results:
        if result.get("passed"):
            continue
        console.print(Text(f"✗ {result.get('name', '')}", style="bold red"))
        error = result.get("error")
        if error:
            console.print(Text(f"  {error.get('type')}: {error.get('message')}"))
            for line in str(error.get("traceback") or "").rstrip().splitlines():
                console.print(Text(f"    {line}", style="dim"))
        for failure in result.get("failures") or []:
            expected, actual = failure.get("expected"), failure.get("actual")
            if failure.get("what") == "error":
                # The error itself (and its traceback, for the first) is shown above.
                raised = actual if isinstance(actual, dict) else {}
                console.print(
                    Text(
                        f"  {failure_title(failure)}: {raised.get('type')}: {raised.get('message')}"
                    )
                )
                continue
            if _is_scalar(expected) and _is_scalar(actual):
                console.print(
                    Text(
                        f"  {failure_title(failure)}: expected {json.dumps(expected)}, got {json.dumps(actual)}"
                    )
                )
                continue
            console.print(Text(f"  {failure_title(failure)}:"))
            print_diff(json_diff_lines(expected, actual), console, indent="    ")
    passed, failed = report.get("passed", 0), report.get("failed", 0)
    style = "green" if not failed else "red"
    console.print(Text(f"{passed} passed, {failed} failed", style=style))
