"""Periodic account clean-up (scheduled in settings.CELERY_BEAT_SCHEDULE["accounts-cleanup"])."""

from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def cleanup() -> int:
    """Delete stale visitors (with their hooks) and spent sign-in links. Idempotent."""
    deleted = services.visitors_delete_stale()
    services.magic_links_delete_expired()
    return deleted
