"""wr login, wr whoami."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from webreducer_cli.api import Api
from webreducer_cli.config import UserConfig, credentials_resolve, url_normalize
from webreducer_cli.errors import ApiError, CliError
from webreducer_cli.output import out, say
from webreducer_cli.session import Session


def describe(me: dict[str, Any]) -> str:
    if me.get("kind") == "visitor":
        return f"visitor #{me.get('id')} (sign in on the web to keep your hooks)"
    return str(me.get("email") or f"user #{me.get('id')}")


@click.command()
@click.option("--url", help="The server, e.g. https://webreducer.example (default: the last one).")
@click.option(
    "--token",
    help="An API token (wr_…). Without it: read from stdin when piped, else a hidden prompt.",
)
def login(url: str | None, token: str | None) -> None:
    """Check an API token and store it for the server.

    Get a token from the web UI (your account's API tokens), `python manage.py createtoken
    --email you@example.com`, or POST /api/tokens/. It is stored in the user's config dir
    (`~/.config/webreducer/config.toml`, mode 0600); WR_URL and WR_TOKEN override it.

    \b
        wr login --url https://webreducer.example
    """
    config = UserConfig.load()
    server = url_normalize(url or os.environ.get("WR_URL") or credentials_resolve().url)
    if token is None:
        if sys.stdin.isatty():
            token = click.prompt(f"API token for {server}", hide_input=True)
        else:
            token = sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        raise CliError("No token given.")
    api = Api(server, token)
    try:
        me = api.get("/api/me/")
    except ApiError as error:
        if error.status == 401:
            raise CliError(f"{server} refused the token: {error.message}") from None
        raise
    finally:
        api.close()
    config.url = server
    config.tokens[server] = token
    path = config.save()
    say(f"Logged in to {server} as {describe(me)}. Token saved in {path}.")


@click.command()
@click.pass_obj
def whoami(session: Session) -> None:
    """Show who the token belongs to, and on which server.

    \b
        wr whoami
    """
    me = session.api.get("/api/me/")
    out.print(f"{describe(me)} on {session.api.url}")


COMMANDS = [login, whoami]
