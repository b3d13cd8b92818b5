"""Resend a logged request: a copy goes through the normal write path (hooks.writes), so the
live responder answers it, the key's rate limit applies and the pipeline folds it like any
write. The original row is never touched; the copy names it in `resent_from`."""

from __future__ import annotations

from hooks import public_calls, writes
from hooks.models import Hook, Key, Request


class ResendRefused(Exception):
    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def _write_key(hook: Hook, original: Request) -> Key:
    """The key the original came in on, if it still works; else the hook's oldest usable write
    key (a paused or revoked key must not take writes, not even copies)."""
    keys = Key.objects.filter(
        hook=hook, kind=Key.Kind.WRITE, is_paused=False, revoked_at__isnull=True
    )
    key = keys.filter(pk=original.key_id).first() if original.key_id else None
    key = key or keys.order_by("created_at", "id").first()
    if key is None:
        raise ResendRefused(409, "no_write_key", "The hook has no active write key to resend on.")
    return key


def request_resend(*, hook: Hook, original: Request) -> tuple[Request, public_calls.Reply]:
    """Store a copy of `original` as a new write; returns it and the answer it got."""
    token = _write_key(hook, original).token
    body = bytes(original.body)
    try:
        key = public_calls.key_resolve(token=token, kind=Key.Kind.WRITE)
        limit = writes.max_body_bytes(key)
        if len(body) > limit:
            raise public_calls.PublicError(413, "too_large", f"The body is over {limit} bytes.")
        writes.rate_check(key)
        reply = writes.request_ingest(
            key=key,
            method=original.method,
            path=original.path,
            headers=dict(original.headers),
            query=dict(original.query),
            content_type=original.content_type,
            body=body,
            resent_from=original.pk,
        )
    except public_calls.PublicError as error:
        raise ResendRefused(error.status, error.code, error.message, error.retry_after) from None
    assert reply.request is not None  # a stored request is never a batch
    return reply.request, reply
