"""Re-encrypt every hook secret under the first key of WR_SECRETS_KEYS.

Rotation: put the new key first in WR_SECRETS_KEYS (keep the old ones after it), restart,
run this, then drop the old keys.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from hooks.services import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt all hook secrets under the current (first) key of WR_SECRETS_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        count = secrets_rotate()
        self.stdout.write(f"re-encrypted {count} secret(s)")
