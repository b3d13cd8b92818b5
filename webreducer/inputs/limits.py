"""The input limits and their checks, shared by the ASGI and WSGI wrappers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings


class Refused(Exception):
    """A request refused before anything of it reached Django: a JSON error, then close."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> bytes:
        return json.dumps({"error": {"code": self.code, "message": self.message}}).encode()


@dataclass(frozen=True)
class Limits:
    header_bytes: int
    headers_bytes: int
    headers: int
    path_bytes: int
    query_bytes: int
    query_fields: int
    body_bytes: int
    body_seconds: float

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            header_bytes=settings.WR_MAX_HEADER_BYTES,
            headers_bytes=settings.WR_MAX_HEADERS_BYTES,
            headers=settings.WR_MAX_HEADERS,
            path_bytes=settings.WR_MAX_PATH_BYTES,
            query_bytes=settings.WR_MAX_QUERY_BYTES,
            query_fields=settings.WR_MAX_QUERY_FIELDS,
            body_bytes=settings.WR_MAX_REQUEST_BODY_BYTES,
            body_seconds=settings.WR_BODY_READ_SECONDS,
        )


def head_check(limits: Limits, *, path: int, query: bytes, header_sizes: Iterable[int]) -> None:
    """Raise Refused when the request head is over a limit. `path` is the raw path's length in
    bytes, `header_sizes` each header's name plus value in bytes."""
    if path > limits.path_bytes:
        raise Refused(414, "path_too_long", f"The URL path is over {limits.path_bytes} bytes.")
    if len(query) > limits.query_bytes:
        raise Refused(
            414, "query_too_long", f"The query string is over {limits.query_bytes} bytes."
        )
    # Counted as Django's QueryDict counts (one more than the separators), so Django's own
    # TooManyFieldsSent, an HTML 400 or a bare 500, can never be what a client sees.
    fields = query.count(b"&") + 1 if query else 0
    if fields > limits.query_fields:
        raise Refused(
            400,
            "too_many_query_fields",
            f"The query string has {fields} fields; at most {limits.query_fields} are allowed.",
        )
    count = total = 0
    for size in header_sizes:
        count += 1
        total += size
        if size > limits.header_bytes:
            raise Refused(431, "header_too_large", f"A header is over {limits.header_bytes} bytes.")
    if count > limits.headers:
        raise Refused(
            431,
            "too_many_headers",
            f"The request has {count} headers; at most {limits.headers} are allowed.",
        )
    if total > limits.headers_bytes:
        raise Refused(
            431, "headers_too_large", f"The headers are over {limits.headers_bytes} bytes in all."
        )


def declared_length(value: str | None, limits: Limits) -> int | None:
    """The body length a Content-Length header declares (None without one), refused at once
    when it is over the limit: nothing of such a body is read."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 19:
        raise Refused(400, "invalid_content_length", "The Content-Length header is not a number.")
    length = int(value)
    if length > limits.body_bytes:
        raise too_large(limits)
    return length


def too_large(limits: Limits) -> Refused:
    # The same code and message as the write endpoint's own limit (hooks.views.public).
    return Refused(413, "too_large", f"The body is over {limits.body_bytes} bytes.")


def too_slow(limits: Limits) -> Refused:
    return Refused(
        408,
        "body_timeout",
        f"The body did not arrive within {limits.body_seconds:g} seconds.",
    )


def incomplete() -> Refused:
    return Refused(400, "incomplete_body", "The body ended before its declared Content-Length.")


def is_chunked(transfer_encoding: str | None) -> bool:
    return bool(transfer_encoding) and "chunked" in str(transfer_encoding).lower()


def public_path(path: bytes) -> bool:
    # The public endpoints are CORS-open (docs/security.md): a browser page that sent the request may
    # read why it was refused. The app's own routes keep their same-origin answers.
    return path.startswith((b"/write/", b"/read/"))


@dataclass(frozen=True)
class Backstops:
    """The servers' own hard limits, a little above the app's: they bound what a server reads
    before the app can measure it (uvicorn's httptools parser bounds no header at all, so the
    ASGI server runs h11, whose max_incomplete_event_size bounds the whole request head)."""

    request_line: int  # gunicorn limit_request_line (at most 8190)
    header_fields: int  # gunicorn limit_request_fields
    header_field_bytes: int  # gunicorn limit_request_field_size
    head_bytes: int  # uvicorn h11 max incomplete event size: request line and headers
    websocket_message_bytes: int  # uvicorn ws_max_size


def backstops(limits: Limits | None = None) -> Backstops:
    limits = limits or Limits.from_settings()
    request_line = limits.path_bytes + limits.query_bytes + 64
    return Backstops(
        request_line=min(8190, max(request_line + 1024, 4096)),
        header_fields=limits.headers + 20,
        header_field_bytes=limits.header_bytes + 1024,
        head_bytes=request_line + limits.headers_bytes + 8 * 1024,
        websocket_message_bytes=limits.body_bytes + 64 * 1024,
    )
