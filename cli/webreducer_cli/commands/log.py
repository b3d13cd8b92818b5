"""wr logs, wr pull, wr send: the request log and the write URL."""

from __future__ import annotations

import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

import click
import httpx
from rich.text import Text

from webreducer_cli import __version__
from webreducer_cli.api import connection_error
from webreducer_cli.errors import CliError
from webreducer_cli.follow import Tracker, follow
from webreducer_cli.output import dumps, entry_line, out, print_state_diff, say
from webreducer_cli.session import Session

OUTCOMES = ["pending", "applied", "duplicate", "failed", "rejected"]


def body_text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value, indent=None)


def entry_details(entry: dict[str, Any]) -> None:
    """The request beside the responder's answer, then what the reducer made of it."""
    for name, value in (entry.get("headers") or {}).items():
        out.print(Text(f"    > {name}: {value}", style="dim"))
    if entry.get("body"):
        encoding = " (base64)" if entry.get("body_encoding") == "base64" else ""
        out.print(Text(f"    > body{encoding}: {entry['body']}"))
    response = entry.get("response")
    if isinstance(response, dict):
        out.print(Text(f"    < {response.get('status')}", style="bold"))
        for name, value in (response.get("headers") or {}).items():
            out.print(Text(f"    < {name}: {value}", style="dim"))
        truncated = " (truncated)" if response.get("truncated") else ""
        out.print(Text(f"    < body{truncated}: {body_text(response.get('body'))}"))
    error = entry.get("error")
    if isinstance(error, dict):
        for line in str(error.get("traceback") or "").rstrip().splitlines():
            out.print(Text(f"    {line}", style="red"))
    if entry.get("console"):
        for line in str(entry["console"]).rstrip().splitlines():
            out.print(Text(f"    | {line}"))
    if entry.get("state_diff"):
        print_state_diff(entry["state_diff"], out)


def recent(
    session: Session, *, status: str | None, path: str | None, limit: int
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    if limit <= 0:
        return entries
    requests = session.hook_path("requests/")
    for entry in session.api.pages(requests, status=status, path=path):
        entries.append(entry)
        if len(entries) >= limit:
            break
    return entries[::-1]


@click.command()
@click.option(
    "--follow", "-f", "follow_", is_flag=True, help="Keep printing new requests (Ctrl-C stops)."
)
@click.option("--status", type=click.Choice(OUTCOMES), help="Only this outcome.")
@click.option("--path", "path", help="Only requests whose path starts with this (e.g. github).")
@click.option("--limit", "-n", default=20, show_default=True, help="How many recent entries first.")
@click.option(
    "--verbose", "-v", is_flag=True, help="Headers, bodies, the response, errors, state diffs."
)
@click.pass_obj
def logs(
    session: Session,
    follow_: bool,
    status: str | None,
    path: str | None,
    limit: int,
    verbose: bool,
) -> None:
    """Show the request log, oldest of the last N first; --follow keeps it open.

    Following uses the owners' live feed (a WebSocket, authenticated by the token) and falls
    back to polling the log every second when the server has no feed.

    \b
        wr logs -n 50
        wr logs --follow --status failed
    """

    def show(entry: dict[str, Any]) -> None:
        out.print(entry_line(entry))
        if verbose:
            full = (
                entry
                if "headers" in entry
                else session.api.get(session.hook_path(f"requests/{entry['id']}/"))
            )
            entry_details(full)

    prefix = path.strip("/") if path else None
    tracker = Tracker(status=status, path=prefix, show=show)

    def baseline() -> None:
        for entry in recent(session, status=status, path=prefix, limit=limit):
            tracker.offer(entry)

    if not follow_:
        baseline()
        return
    try:
        follow(session, tracker, baseline=baseline)
    except KeyboardInterrupt:
        return


@click.command()
@click.option("--since", type=click.IntRange(min=0), help="Only numbered requests after this seq.")
@click.option("--status", type=click.Choice(OUTCOMES), help="Only this outcome.")
@click.option("--quiet", "-q", is_flag=True, help="No summary on stderr.")
@click.pass_obj
def pull(session: Session, since: int | None, status: str | None, quiet: bool) -> None:
    """Export the request log as NDJSON on stdout, oldest first (one entry a line).

    Streamed: any size of log, in constant memory. Keep fixtures, grep them with jq, or
    resume with --since.

    \b
        wr pull > requests.ndjson
        wr pull --since 1200 >> requests.ndjson
    """
    count = 0
    stdout = sys.stdout.buffer
    with session.api.stream(
        session.hook_path("requests/"), format="ndjson", since=since, status=status
    ) as response:
        kind = response.headers.get("content-type", "")
        if "ndjson" not in kind:
            raise CliError(f"The server answered {kind or 'no content type'}, not NDJSON: too old?")
        try:
            for chunk in response.iter_bytes():
                stdout.write(chunk)
                count += chunk.count(b"\n")
            stdout.flush()
        except httpx.HTTPError as error:
            raise connection_error(session.api.url, error) from None
        except BrokenPipeError:
            # `wr pull | head`: the reader has what it wanted. Point stdout at /dev/null so
            # the interpreter's own flush at exit does not complain either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
    if not quiet:
        say(f"Pulled {count} request(s).")


# Every answer of the write URL has these; the responder's own headers are what matter.
SERVER_HEADERS = {
    "date",
    "server",
    "content-length",
    "allow",
    "vary",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "access-control-allow-origin",
    "access-control-expose-headers",
}


def header_parse(values: tuple[str, ...]) -> list[tuple[str, str]]:
    headers = []
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip():
            raise CliError(f"--header {value!r}: expected NAME:VALUE.")
        headers.append((name.strip(), rest.strip()))
    return headers


def query_parse(values: tuple[str, ...]) -> list[tuple[str, str | int | float | bool | None]]:
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals or not name:
            raise CliError(f"--query {value!r}: expected NAME=VALUE.")
        pairs.append((name, rest))
    return pairs


def write_key(session: Session, key_id: int | None) -> dict[str, Any]:
    keys = session.api.get(session.hook_path("keys/"))
    usable = [
        key
        for key in keys
        if key.get("kind") == "write" and not key.get("revoked_at") and not key.get("paused")
    ]
    if key_id is not None:
        usable = [key for key in usable if key.get("id") == key_id]
        if not usable:
            raise CliError(f"Key {key_id} is not a usable write key of this hook (`wr keys`).")
    if not usable:
        raise CliError("The hook has no usable write key (`wr keys`).")
    return usable[0]


def body_read(data: str | None, file: str | None) -> tuple[bytes | None, str | None]:
    """The body and the content type it suggests (a header given with --header wins)."""
    if data is not None and file is not None:
        raise CliError("Give --data or --file, not both.")
    if data is not None:
        try:
            json.loads(data)
            return data.encode(), "application/json"
        except ValueError:
            return data.encode(), "text/plain; charset=utf-8"
    if file is not None:
        if file == "-":
            return sys.stdin.buffer.read(), None
        path = Path(file)
        try:
            content = path.read_bytes()
        except OSError as error:
            raise CliError(f"Cannot read {file}: {error}") from None
        guessed = mimetypes.guess_type(path.name)[0]
        return content, guessed or "application/octet-stream"
    return None, None


@click.command()
@click.option(
    "--header",
    "-H",
    "headers",
    multiple=True,
    metavar="NAME:VALUE",
    help="A request header (repeatable).",
)
@click.option("--data", "-d", help="The body; sent as application/json when it parses as JSON.")
@click.option(
    "--file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The body from a file (- for stdin).",
)
@click.option(
    "--path", "path", default="", help="After the key: --path /github → /write/<key>/github."
)
@click.option("--method", "-X", default="POST", show_default=True)
@click.option(
    "--query",
    "-q",
    "query",
    multiple=True,
    metavar="NAME=VALUE",
    help="A query parameter (repeatable).",
)
@click.option(
    "--key", "key_id", type=int, help="The write key's id (default: the first usable one)."
)
@click.option("--verbose", "-v", is_flag=True, help="Also the server's own headers (date, CORS…).")
@click.pass_obj
def send(
    session: Session,
    headers: tuple[str, ...],
    data: str | None,
    file: str | None,
    path: str,
    method: str,
    query: tuple[str, ...],
    key_id: int | None,
    verbose: bool,
) -> None:
    """Send a write to the hook's write URL and show the answer (exit 1 when it is ≥ 400).

    The request goes to the public write URL like any producer's, without your API token,
    so it is logged and reduced as production traffic would be.

    \b
        wr send -d '{"number": 3}'
        wr send --path /github -H 'X-GitHub-Event: push' -H 'X-Hub-Signature-256: sha256=…' --file push.json
    """
    key = write_key(session, key_id)
    # The key's own URL: it names the public origin, which may be another host than the API's
    # (the app refuses write URLs on its own host when the two differ).
    url = str(key.get("url") or f"{session.api.url}/write/{key['token']}")
    if path.strip("/"):
        url += "/" + path.strip("/")
    body, suggested = body_read(data, file)
    request_headers = header_parse(headers)
    if suggested and not any(name.lower() == "content-type" for name, _ in request_headers):
        request_headers.append(("Content-Type", suggested))
    request_headers.append(("User-Agent", f"wr/{__version__}"))
    # A client of its own: the API token must never travel to the write URL (it would be
    # stored in the request log with the other headers).
    try:
        with httpx.Client(timeout=30.0) as client:
            response = client.request(
                method.upper(),
                url,
                headers=request_headers,
                params=query_parse(query),
                content=body,
            )
    except httpx.HTTPError as error:
        raise connection_error(session.api.url, error) from None
    style = "green" if response.status_code < 400 else "red"
    out.print(Text(f"HTTP {response.status_code} {response.reason_phrase}", style=f"bold {style}"))
    for name, value in response.headers.items():
        if verbose or name.lower() not in SERVER_HEADERS:
            out.print(Text(f"{name}: {value}", style="dim"))
    out.print()
    try:
        out.print(Text(dumps(response.json())))
    except ValueError:
        out.print(Text(response.text))
    if response.status_code >= 400:
        raise CliError(
            f"The write was answered {response.status_code}: see the log (`wr logs -v -n 1`)."
        )


@click.command()
@click.argument("request_id")
@click.pass_obj
def resend(session: Session, request_id: str) -> None:
    """Send a logged request again (ID: its `id`, from `wr logs -v` or `wr pull`).

    The copy goes through the write path like a new write (the live responder answers it,
    the rate limit applies) and is marked as resent from the original, which stays as it was.

    \b
        wr resend 90df2a32-dd33-49b4-a992-01ef4d150155
    """
    entry = session.api.post(session.hook_path(f"requests/{request_id}/resend/"))
    out.print(entry_line(entry))
    entry_details(entry)


COMMANDS = [logs, pull, send, resend]
