"""Create a hook from a code file and print its URLs: the quick start before any UI or API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from hooks.models import Key
from hooks.services import hook_create
from sandbox import CodeError
from webreducer.origins import local_origins, local_port, public_root


class Command(BaseCommand):
    help = "Create a hook whose code is FILE (or the defaults) and print its write and read URLs."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("code", nargs="?", help="a Python file with the hook's functions")
        parser.add_argument("--name", default="")
        parser.add_argument("--email", default="local@localhost", help="owner (created if needed)")
        parser.add_argument(
            "--port",
            type=int,
            default=local_port(),
            help="the port of `make run`, for its URLs when no origin is configured",
        )

    def handle(
        self, *args: Any, code: str | None, name: str, email: str, port: int, **options: Any
    ) -> None:
        try:
            source = Path(code).read_text() if code else ""
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or error
            raise CommandError(f"Cannot read the code file {code}: {reason}.") from error
        owner, _ = User.objects.get_or_create(email=email, defaults={"username": email})
        try:
            hook = hook_create(
                owner=owner, name=name or (Path(code).stem if code else ""), code=source
            )
        except CodeError as error:
            raise CommandError(str(error)) from error
        # Where the write and read URLs are served: `make run`'s public origin when nothing
        # is configured (it serves them on 127.0.0.1 only), else the configured one.
        root = public_root()
        if not settings.WR_PUBLIC_ORIGIN:
            host = os.environ.get("HOST") or "127.0.0.1"
            root = local_origins(port, host).get("WR_PUBLIC_ORIGIN", root)
        write = hook.keys.get(kind=Key.Kind.WRITE).token
        read = hook.keys.get(kind=Key.Kind.READ).token
        self.stdout.write(f"hook  {hook.pk}  {hook.name}")
        self.stdout.write(f"write {root}/write/{write}")
        self.stdout.write(f"read  {root}/read/{read}")
