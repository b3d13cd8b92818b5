"""The `wr` command: global options, error handling, and the commands (docs/cli.md)."""

from __future__ import annotations

from typing import Any

import click
from rich.text import Text

from webreducer_cli import __version__
from webreducer_cli.commands import account, code, hooks, log, settings, testing
from webreducer_cli.errors import CliError
from webreducer_cli.output import err
from webreducer_cli.session import Session


class Failure(click.ClickException):
    """One clear line on stderr and exit code 1, instead of a traceback."""

    def __init__(self, message: str, *, plain: bool = False) -> None:
        super().__init__(message)
        self.plain = plain

    def show(self, file: Any = None) -> None:
        # Text, not markup: an API message may contain square brackets.
        if self.plain:
            err.print(Text(self.message))
        else:
            err.print(Text.assemble(("error: ", "red"), self.message))


class WrGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as error:
            raise Failure(error.message, plain=error.plain) from None


@click.group(cls=WrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--hook",
    metavar="ID",
    help="The hook to work on (default: the linked folder's, webreducer.toml; or WR_HOOK).",
)
@click.version_option(__version__, prog_name="wr")
@click.pass_context
def cli(ctx: click.Context, hook: str | None) -> None:
    """WebReducer from your editor, git and CI.

    Link a folder to a hook with `wr init`, then push, test, publish and watch it. The server
    and token come from `wr login` (or WR_URL and WR_TOKEN). Docs: docs/cli.md.
    """
    session = Session(hook=hook)
    ctx.obj = session
    ctx.call_on_close(session.close)


for module in (account, hooks, code, log, settings, testing):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="wr")
