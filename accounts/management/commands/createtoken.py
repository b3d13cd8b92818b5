"""Print a new personal API token for an email address, creating the account if needed."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import account_get_or_create, api_token_create, email_normalize


class Command(BaseCommand):
    help = "Create a personal API token for --email (creating the account) and print it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="createtoken")

    def handle(self, *args: Any, email: str, name: str, **options: Any) -> None:
        try:
            email = email_normalize(email)
        except ValidationError as error:
            raise CommandError(f"Not a valid email address: {email!r}") from error
        user = account_get_or_create(email=email)
        _, token = api_token_create(user=user, name=name)
        # Only the token on stdout, so scripts can do TOKEN=$(manage.py createtoken --email …).
        self.stdout.write(token)
