"""wr state, wr secrets, wr keys."""

from __future__ import annotations

import sys

import click
from rich.table import Table
from rich.text import Text

from webreducer_cli.errors import ApiError, CliError
from webreducer_cli.output import dumps, out, say
from webreducer_cli.session import Session


@click.command()
@click.pass_obj
def state(session: Session) -> None:
    """Print the live state as JSON (its seq and version on stderr).

    \b
        wr state > state.json
        wr state | jq .count
    """
    answer = session.api.get(session.hook_path("state/"))
    say(f"seq {answer.get('seq')}, version {answer.get('version')}")
    out.print(Text(dumps(answer.get("state"))))


@click.group()
def secrets() -> None:
    """The hook's secrets (`secrets["NAME"]` in its code). Values are never shown again."""


def secret_value_read(name: str) -> str:
    """From stdin when it is piped, else a hidden prompt: never from argv, where it would
    land in the shell's history and in `ps`."""
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        # `echo value | wr secrets set NAME` means "value", not "value\n".
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    else:
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise CliError("Empty value: nothing set.")
    return value


@secrets.command(name="set")
@click.argument("name")
@click.pass_obj
def secrets_set(session: Session, name: str) -> None:
    """Set secret NAME (created or replaced); the value comes from stdin or a hidden prompt.

    One trailing newline of piped input is dropped.

    \b
        wr secrets set GITHUB_SECRET              # prompts, hidden
        printf %s "$SECRET" | wr secrets set GITHUB_SECRET
        wr secrets set SIGNING_KEY < key.pem
    """
    value = secret_value_read(name)
    answer = session.api.put(session.hook_path(f"secrets/{name}/"), {"value": value})
    say(f"Set {answer.get('name', name)} (fingerprint {answer.get('fingerprint')}).")


@secrets.command(name="list")
@click.pass_obj
def secrets_list(session: Session) -> None:
    """List the secrets' names and fingerprints (an HMAC: compare to tell a changed value).

    \b
        wr secrets list
    """
    table = Table("name", "fingerprint", "updated")
    for secret in session.api.get(session.hook_path("secrets/")):
        table.add_row(
            secret["name"],
            secret.get("fingerprint", ""),
            str(secret.get("updated_at", ""))[:19].replace("T", " "),
        )
    out.print(table)


@secrets.command(name="rm")
@click.argument("name")
@click.pass_obj
def secrets_rm(session: Session, name: str) -> None:
    """Delete secret NAME.

    \b
        wr secrets rm OLD_TOKEN
    """
    try:
        session.api.delete(session.hook_path(f"secrets/{name}/"))
    except ApiError as error:
        if error.status == 404:
            raise CliError(f"No secret named {name} (`wr secrets list`).") from None
        raise
    say(f"Deleted {name}.")


@click.command()
@click.pass_obj
def keys(session: Session) -> None:
    """List the hook's keys with their URLs (write: producers post there; read: the state).

    \b
        wr keys
    """
    # Lines, not a table: a URL must stay whole to be copied.
    for key in session.api.get(session.hook_path("keys/")):
        status = "revoked" if key.get("revoked_at") else "paused" if key.get("paused") else "active"
        label = f"  {key['label']}" if key.get("label") else ""
        out.print(
            Text(f"{key['id']:>4}  {key['kind']:<5}  {status:<7}  {key.get('url', '')}{label}")
        )


COMMANDS = [state, secrets, keys]
