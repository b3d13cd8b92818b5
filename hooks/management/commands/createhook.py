"""Create a hook from a code file and print its URLs: the quick start before any UI or API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from hooks.models import Key
from hooks.services import hook_create
from sandbox import CodeError
from webreducer.origins import public_root


class Command(BaseCommand):
    help = "Create a hook whose code is FILE (or the defaults) and print its write and read URLs."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("code", nargs="?", help="a Python file with the hook's functions")
        parser.add_argument("--name", default="")
        parser.add_argument("--email", default="local@localhost", help="owner (created if needed)")

    def handle(self, *args: Any, code: str | None, name: str, email: str, **options: Any) -> None:
        source = Path(code).read_text() if code else ""
        owner, _ = User.objects.get_or_create(email=email, defaults={"username": email})
        try:
            hook = hook_create(
                owner=owner, name=name or (Path(code).stem if code else ""), code=source
            )
        except CodeError as error:
            raise CommandError(str(error)) from error
        root = public_root()  # where the write and read URLs are served
        write = hook.keys.get(kind=Key.Kind.WRITE).token
        read = hook.keys.get(kind=Key.Kind.READ).token
        self.stdout.write(f"hook  {hook.pk}  {hook.name}")
        self.stdout.write(f"write {root}/write/{write}")
        self.stdout.write(f"read  {root}/read/{read}")
