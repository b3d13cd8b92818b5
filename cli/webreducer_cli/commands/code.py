"""wr push, wr diff, wr publish, wr rollback, wr dry-run: the code's way from a file to live."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from webreducer_cli.errors import ApiError, CliError
from webreducer_cli.output import dumps, out, print_diff, print_state_diff, say, text_diff
from webreducer_cli.replay import replay_check, replay_follow
from webreducer_cli.session import Session, read_code
from webreducer_cli.syntax import raise_code_error
from webreducer_cli.testcases import cases_file_load, results_print


def shown(path: Path) -> str:
    """The path as an editor would open it from here."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--tests", "tests_file", type=click.Path(dir_okay=False), help="Upload this tests file."
)
@click.option("--no-tests", is_flag=True, help="Save the code only.")
@click.pass_obj
def push(session: Session, file: str | None, tests_file: str | None, no_tests: bool) -> None:
    """Save FILE (default: the linked code file) as the hook's draft, and upload tests.json.

    The draft does not change live traffic until `wr publish`. A syntax error is printed as
    `hook.py:LINE:COL: message` and exits 1 (the draft stays as it was).

    \b
        wr push
        wr push src/hook.py
    """
    path = session.code_file(file)
    code = read_code(path)
    try:
        draft = session.api.put(session.hook_path("draft/"), {"code": code})
    except ApiError as error:
        raise_code_error(error, shown(path))
        raise
    live = draft.get("live_version")
    if draft.get("changed"):
        say(
            f"Saved {shown(path)} as the draft (differs from live v{live}: `wr diff`, `wr publish`)."
        )
    else:
        say(f"Saved {shown(path)} as the draft (same as live v{live}).")
    if no_tests:
        return
    tests_path = session.tests_file(tests_file)
    if tests_path is None or (tests_file is None and not tests_path.exists()):
        return
    tests_upload(session, tests_path)


def tests_upload(session: Session, path: Path) -> None:
    document = cases_file_load(path)
    if "required" not in document:
        # The file need not say: keep what the owner chose (in the UI, say).
        current = session.api.get(session.hook_path("tests/"))
        document = {**document, "required": bool(current.get("required"))}
    try:
        saved = session.api.put(session.hook_path("tests/"), document)
    except ApiError as error:
        raise CliError(f"{shown(path)}: {error.message}") from None
    required = " (required before publish)" if saved.get("required") else ""
    say(f"Uploaded {len(saved.get('cases') or [])} test case(s) from {shown(path)}{required}.")


def live_code(session: Session) -> tuple[int | None, str]:
    hook = session.api.get(session.hook_path())
    number = hook.get("live_version")
    if number is None:
        return None, ""
    return number, session.api.get(session.hook_path(f"versions/{number}/"))["code"]


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--draft", is_flag=True, help="Diff the saved draft (on the server) instead.")
@click.pass_obj
def diff(session: Session, file: str | None, draft: bool) -> None:
    """Show what publishing would change: FILE (default: the linked code file) vs live.

    \b
        wr diff
        wr diff --draft
    """
    if draft:
        answer = session.api.get(session.hook_path("versions/diff/"))
        lines = answer.get("diff", "").splitlines()
        name = "the draft"
    else:
        path = session.code_file(file)
        code = read_code(path)
        number, live = live_code(session)
        lines = text_diff(live, code, f"v{number}" if number else "live", shown(path))
        name = shown(path)
    if not lines:
        say(f"No difference between {name} and the live version.")
        return
    print_diff(lines)


def publish_report(session: Session, answer: dict[str, Any], *, wait: bool, timeout: float) -> None:
    number = answer["version"]["number"]
    progress = answer.get("progress") or {}
    say(f"Publishing v{number}: rebuilding the state from {progress.get('total', 0)} request(s).")
    if wait:
        replay_follow(session, number, total=progress.get("total") or 0, timeout=timeout)
    elif answer["version"].get("status") != "building":
        replay_check(session, answer["version"])
    else:
        say("It goes live when the replay ends (`wr versions`; `wr publish --wait` waits).")


def local_differs_from_draft(session: Session) -> bool:
    project = session.project()
    if session.hook_override or project is None or not project.code_path.is_file():
        return False
    draft = session.api.get(session.hook_path("draft/"))
    return bool(read_code(project.code_path) != draft.get("code"))


@click.command()
@click.option(
    "--wait", is_flag=True, help="Show the replay's progress; exit 1 unless it goes live cleanly."
)
@click.option(
    "--strict", is_flag=True, help="Refuse to go live if any request fails in the replay."
)
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds --wait waits.")
@click.pass_obj
def publish(session: Session, wait: bool, strict: bool, timeout: float) -> None:
    """Publish the saved draft: a new version, live once it has replayed the history.

    With --wait, a progress bar follows the replay; the exit code is 1 if the version did not
    go live (refused by --strict, superseded) or went live with requests that failed in its
    replay (their seqs are named). If the hook requires its test cases, a failing case refuses
    the publish and its failures are shown.

    \b
        wr push && wr publish --wait
    """
    if local_differs_from_draft(session):
        say(
            "[yellow]note:[/] the linked code file differs from the saved draft (`wr push` first?)."
        )
    try:
        answer = session.api.post(session.hook_path("publish/"), {"strict": strict})
    except ApiError as error:
        if error.code == "tests_failed":
            results_print(
                {"results": error.detail.get("results") or [], **_counts(error.detail)}, out
            )
            raise CliError(f"Publish refused: {error.message}") from None
        raise_code_error(error, "draft")
        raise
    publish_report(session, answer, wait=wait, timeout=timeout)


def _counts(detail: dict[str, Any]) -> dict[str, int]:
    results = detail.get("results") or []
    failed = sum(1 for result in results if not result.get("passed"))
    return {"passed": len(results) - failed, "failed": failed}


@click.command()
@click.argument("number", type=int)
@click.option("--wait", is_flag=True, help="Show the replay's progress (as for publish).")
@click.option("--timeout", default=3600.0, show_default=True)
@click.pass_obj
def rollback(session: Session, number: int, wait: bool, timeout: float) -> None:
    """Publish version NUMBER's code again, as a new version (through the same replay).

    \b
        wr versions
        wr rollback 3 --wait
    """
    answer = session.api.post(session.hook_path(f"versions/{number}/rollback/"))
    publish_report(session, answer, wait=wait, timeout=timeout)


@click.command(name="dry-run")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--draft", is_flag=True, help="Try the saved draft instead of a file.")
@click.option(
    "--last", type=click.IntRange(min=1), help="Fold only the last N requests, from null."
)
@click.option("--state", "show_state", is_flag=True, help="Also print the resulting state.")
@click.pass_obj
def dry_run(
    session: Session, file: str | None, draft: bool, last: int | None, show_state: bool
) -> None:
    """Fold the stored history with FILE (default: the linked code file), changing nothing.

    Prints how the live state would change and every request that would fail (with its
    traceback) or print something. Exits 1 when a request fails.

    \b
        wr dry-run
        wr dry-run --last 100
    """
    body: dict[str, Any] = {}
    name = "draft"
    if not draft:
        path = session.code_file(file)
        body["code"], name = read_code(path), shown(path)
    if last is not None:
        body["last"] = last
    try:
        result = session.api.post(session.hook_path("dry-run/"), body)
    except ApiError as error:
        raise_code_error(error, name)
        raise
    truncated = " (truncated: the last ones only)" if result.get("truncated") else ""
    say(
        f"Folded {result.get('requests')} of {result.get('history')} request(s) with {name}{truncated}."
    )
    ops = result.get("diff") or []
    if ops:
        out.print(Text(f"State diff vs live (seq {result.get('live_seq')}):", style="bold"))
        print_state_diff(ops)
    else:
        out.print("The state would not change.")
    if show_state:
        out.print(Text(dumps(result.get("state"))))
    for item in result.get("report") or []:
        failure = item.get("error")
        head = f"seq {item.get('seq')}: {item.get('outcome')}"
        if failure:
            out.print(Text(f"{head}: {failure.get('type')}: {failure.get('message')}", style="red"))
            for line in str(failure.get("traceback") or "").rstrip().splitlines():
                out.print(Text(f"    {line}", style="dim"))
        if item.get("console"):
            out.print(Text(f"{head} printed:" if not failure else "  console:"))
            for line in str(item["console"]).rstrip().splitlines():
                out.print(Text(f"    {line}"))
    failures = result.get("failures") or 0
    if failures:
        raise CliError(f"{failures} request(s) would fail with {name}.")


COMMANDS = [push, diff, publish, rollback, dry_run]
