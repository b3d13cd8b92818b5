"""Account tasks: sign-in emails, sent after the request's commit; the periodic clean-up
(scheduled in settings.CELERY_BEAT_SCHEDULE["accounts-cleanup"])."""

from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def magic_link_send_task(
    *, email: str, visitor_id: int | None, requested_ip: str | None, requested_browser: str
) -> None:
    """Create and email a sign-in link (accounts.services.magic_link_request queues this)."""
    services.magic_link_send(
        email=email,
        visitor_id=visitor_id,
        requested_ip=requested_ip,
        requested_browser=requested_browser,
    )


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def cleanup() -> int:
    """Delete stale visitors (with their hooks) and spent sign-in links. Idempotent."""
    deleted = services.visitors_delete_stale()
    services.magic_links_delete_expired()
    return deleted
