"""wr init, wr hooks, wr open, wr versions."""

from __future__ import annotations

import json
import webbrowser
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from webreducer_cli.api import Api
from webreducer_cli.config import credentials_resolve, token_for, url_normalize
from webreducer_cli.errors import ApiError, CliError
from webreducer_cli.output import out, say
from webreducer_cli.project import FILENAME, Project
from webreducer_cli.session import Session, read_code
from webreducer_cli.syntax import raise_code_error

STARTER_CODE = """\
# A WebReducer hook: every write to the hook's write URL is folded into the state, in order,
# exactly once. The function contract: docs/functions.md (or /docs/ on your server).


def reducer(state, request, secrets):
    state = state or {"count": 0, "last": None}
    state["count"] += 1
    state["last"] = request.body
    return state
"""

STARTER_TESTS: dict[str, Any] = {
    "required": False,
    "cases": [
        {
            "name": "counts the requests and keeps the last body",
            "requests": [
                {"method": "POST", "path": "", "headers": {}, "body": {"n": 1}},
                {"method": "POST", "path": "", "headers": {}, "body": {"n": 2}},
            ],
            "expect": {"state": {"count": 2, "last": {"n": 2}}},
        }
    ],
}


@click.command()
@click.option("--hook", "hook_id", metavar="ID", help="Link to this existing hook instead.")
@click.option("--name", help="The new hook's name (default: the folder's name).")
@click.option("--code", "code_name", default="hook.py", show_default=True, help="The code file.")
@click.option("--tests", "tests_name", default="tests.json", show_default=True)
@click.option("--url", help="The server (default: WR_URL or the last `wr login`).")
@click.option("--force", is_flag=True, help=f"Replace an existing {FILENAME}.")
def init(
    hook_id: str | None,
    name: str | None,
    code_name: str,
    tests_name: str,
    url: str | None,
    force: bool,
) -> None:
    """Link this folder to a hook: create one, or link an existing one (--hook).

    Writes webreducer.toml (the hook's id, the server, the code and tests files; commit it).
    A new hook is created from the code file if it exists, else from a starter that is
    written to it. Linking an existing hook writes its draft and test cases to the files
    that do not exist yet.

    \b
        wr init --name scores
        wr init --hook f26fbeb2-0c25-481f-845c-f1a5091aba9a
    """
    root = Path.cwd()
    if (root / FILENAME).exists() and not force:
        raise CliError(f"{FILENAME} already exists here (--force to replace it).")
    server = url_normalize(url) if url else credentials_resolve().url
    api = Api(server, token_for(server))
    project = Project(root=root, hook="", url=server, code=code_name, tests=tests_name)
    try:
        hook = _link(api, project, hook_id) if hook_id else _create(api, project, name)
    finally:
        api.close()
    project.hook = str(hook["id"])
    project.save()
    say(f"Linked {root} to {hook['name']!r} ({project.hook}) on {server}: {FILENAME} written.")
    say("Next: edit the code, then `wr push`, `wr test`, `wr publish --wait`, `wr send`.")


def _create(api: Api, project: Project, name: str | None) -> dict[str, Any]:
    if project.code_path.exists():
        code = read_code(project.code_path)
    else:
        code = STARTER_CODE
        project.code_path.write_text(code, encoding="utf-8")
        say(f"Wrote a starter {project.code}.")
    if not project.tests_path.exists():
        project.tests_path.write_text(json.dumps(STARTER_TESTS, indent=2) + "\n", encoding="utf-8")
        say(f"Wrote a starter {project.tests} (`wr test` runs it).")
    try:
        hook: dict[str, Any] = api.post(
            "/api/hooks/", {"name": name or project.root.name, "code": code}
        )
    except ApiError as error:
        raise_code_error(error, project.code)
        raise
    return hook


def _link(api: Api, project: Project, hook_id: str) -> dict[str, Any]:
    hook: dict[str, Any] = api.get(f"/api/hooks/{hook_id}/")
    if not project.code_path.exists():
        project.code_path.write_text(hook.get("draft_code") or "", encoding="utf-8")
        say(f"Wrote the hook's draft to {project.code}.")
    if not project.tests_path.exists():
        tests = api.get(f"/api/hooks/{hook_id}/tests/")
        if tests.get("cases"):
            document = {"required": tests.get("required", False), "cases": tests["cases"]}
            project.tests_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            say(f"Wrote the hook's {len(tests['cases'])} test case(s) to {project.tests}.")
    return hook


@click.command(name="hooks")
@click.pass_obj
def hooks_list(session: Session) -> None:
    """List your hooks (the linked one is marked *).

    \b
        wr hooks
    """
    project = session.project()
    linked = session.hook_override or (project.hook if project else None)
    table = Table("", "id", "name", "live", "seq", "updated")
    for hook in session.api.pages("/api/hooks/"):
        table.add_row(
            "*" if str(hook["id"]) == linked else "",
            str(hook["id"]),
            hook["name"],
            f"v{hook['live_version']}" if hook.get("live_version") else "-",
            str(hook.get("seq", "")),
            str(hook.get("updated_at", ""))[:19].replace("T", " "),
        )
    out.print(table)


@click.command(name="open")
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
@click.pass_obj
def open_page(session: Session, no_browser: bool) -> None:
    """Open the hook's page in the browser (and print its URL).

    \b
        wr open
    """
    session.api.get(session.hook_path())  # a clear error for a wrong id, before a browser opens
    page = f"{session.api.url}/hooks/{session.hook_id}/"
    out.print(page)
    if not no_browser:
        webbrowser.open(page)


@click.command()
@click.pass_obj
def versions(session: Session) -> None:
    """List the hook's versions, newest first (for `wr rollback N`).

    \b
        wr versions
    """
    table = Table("version", "status", "published", "author", "sha256", "failures", "note")
    for version in session.api.pages(session.hook_path("versions/")):
        note = version.get("error") or ""
        if version.get("rolled_back_from"):
            note = f"rollback to v{version['rolled_back_from']}. {note}".strip()
        table.add_row(
            f"v{version['number']}",
            version["status"],
            str(version.get("published_at") or "")[:19].replace("T", " "),
            version.get("author") or "",
            version.get("sha256") or "",
            str(version.get("failures") or 0),
            note,
        )
    out.print(table)


COMMANDS = [init, hooks_list, open_page, versions]
