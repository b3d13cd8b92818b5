"""Queue every hook with requests still pending (what Celery beat does periodically)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from hooks.tasks import reconcile


class Command(BaseCommand):
    help = "Queue reduce tasks for hooks whose requests are still pending, and stalled rebuilds."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"queued {reconcile()} task(s)")
