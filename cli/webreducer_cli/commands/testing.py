"""wr test: the hook's test cases against the local code, in the server's sandbox."""

from __future__ import annotations

from typing import Any

import click

from webreducer_cli.commands.code import shown
from webreducer_cli.errors import ApiError, CliError
from webreducer_cli.output import out, say
from webreducer_cli.session import Session, read_code
from webreducer_cli.syntax import raise_code_error
from webreducer_cli.testcases import cases_file_load, results_print


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--tests",
    "tests_file",
    type=click.Path(dir_okay=False),
    help="The cases (default: the linked tests.json).",
)
@click.option("--draft", is_flag=True, help="Test the saved draft instead of a file.")
@click.option("--stored", is_flag=True, help="Run the cases stored with the hook, not the file's.")
@click.pass_obj
def test(
    session: Session, file: str | None, tests_file: str | None, draft: bool, stored: bool
) -> None:
    """Run the hook's test cases against FILE (default: the linked code file).

    The cases come from tests.json (or, without one, those stored with the hook). Each case
    runs in the server's sandbox from a fresh state; nothing is stored. Prints a pass/fail
    table with diffs of what was expected and what came; exits 1 if a case fails (for CI).

    \b
        wr test
        wr test hook.py --tests tests/github.json
    """
    body: dict[str, Any] = {}
    name = "draft"
    if not draft:
        path = session.code_file(file)
        body["code"], name = read_code(path), shown(path)
    tests_path = None if stored else session.tests_file(tests_file)
    if tests_path is not None and (tests_file is not None or tests_path.exists()):
        body["cases"] = cases_file_load(tests_path)["cases"]
        source = shown(tests_path)
    else:
        source = "the hook's stored cases"
    if body.get("cases") == []:
        say(f"No test cases in {source}.")
        return
    try:
        report = session.api.post(session.hook_path("tests/run/"), body)
    except ApiError as error:
        raise_code_error(error, name)
        if error.code == "invalid" and tests_path is not None and "cases" in body:
            raise CliError(f"{shown(tests_path)}: {error.message}") from None
        raise
    if not report.get("results"):
        say(f"No test cases in {source}.")
        return
    say(f"Ran {len(report['results'])} case(s) from {source} against {name}.")
    results_print(report, out)
    if report.get("failed"):
        raise CliError(f"{report['failed']} test case(s) failed.")


COMMANDS = [test]
