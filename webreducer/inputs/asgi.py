"""The ASGI wrapper: the head checked, the body read here (bounded, with a deadline) and then
handed to the application in one message."""

from __future__ import annotations

import asyncio
from typing import Any

from webreducer.inputs.busy import public_key, refusal
from webreducer.inputs.limits import (
    Limits,
    Refused,
    declared_length,
    head_check,
    incomplete,
    is_chunked,
    public_path,
    too_large,
    too_slow,
)

Scope = dict[str, Any]
Message = dict[str, Any]


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value for key, value in scope["headers"] if key.lower() == name]
    return b",".join(values).decode("latin-1") if values else None


def _response(refused: Refused, path: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = refused.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        # The rest of the body, if any, is never read: the connection cannot carry another
        # request after it.
        (b"connection", b"close"),
    ]
    if public_path(path):
        headers.append((b"access-control-allow-origin", b"*"))
    return headers, body


class InputLimits:
    """Outermost ASGI middleware for HTTP and websocket handshakes (docs/security.md)."""

    def __init__(self, app: Any, limits: Limits | None = None):
        self.app = app
        self._limits = limits

    @property
    def limits(self) -> Limits:
        # Read on first use: the settings are not configured when the module is imported.
        if self._limits is None:
            self._limits = Limits.from_settings()
        return self._limits

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            await self._connection(scope, receive, send)
        except asyncio.CancelledError:
            # Only the server cancels a connection's task: at the end of its graceful shutdown,
            # the SSE streams and sockets still open (webreducer.asgiserver). A stream cut so is
            # the designed end, not an error to log with a traceback; its client reconnects.
            return

    async def _connection(self, scope: Scope, receive: Any, send: Any) -> None:
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        try:
            head_check(
                self.limits,
                path=len(path),
                query=scope.get("query_string", b""),
                header_sizes=(len(name) + len(value) for name, value in scope["headers"]),
            )
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            # Only the framing of the request says whether a body follows (RFC 9112 §6.3).
            declared = declared_length(_header(scope, b"content-length"), self.limits)
            if not declared and not is_chunked(_header(scope, b"transfer-encoding")):
                await self._app_or_busy(scope, receive, send)
                return
            body = await self._read(receive, declared)
        except Refused as refused:
            await self._refuse(scope, receive, send, refused, path)
            return
        if body is None:
            return  # the client went away
        pending: Message | None = {"type": "http.request", "body": body, "more_body": False}

        async def replay() -> Message:
            nonlocal pending
            if pending is not None:
                message, pending = pending, None
                return message
            # After the body: the disconnect a streaming response (SSE) waits for.
            return await receive()  # type: ignore[no-any-return]

        await self._app_or_busy(scope, replay, send)

    async def _app_or_busy(self, scope: Scope, receive: Any, send: Any) -> None:
        """The app, unless the URL's key is one this process refuses now for a full hook
        (webreducer/inputs/busy.py): then its 429, without Django."""
        key = public_key(scope["method"], scope["path"], _header(scope, b"host") or "")
        if key is None:
            await self.app(scope, receive, send)
            return
        from hooks import serving

        limit = serving.refused_early(*key)
        if limit is None:
            with serving.request_key(*key):
                await self.app(scope, receive, send)
            return
        status, headers, body = refusal(limit)
        raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _read(self, receive: Any, declared: int | None) -> bytes | None:
        limit = self.limits.body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise too_large(self.limits)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise too_slow(self.limits) from None
        if declared is not None and size < declared:
            raise incomplete()
        return b"".join(chunks)

    async def _refuse(
        self, scope: Scope, receive: Any, send: Any, refused: Refused, path: bytes
    ) -> None:
        headers, body = _response(refused, path)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1009})
                return
            # The websocket server frames this answer itself (its length, its close).
            headers = [(k, v) for k, v in headers if k not in (b"content-length", b"connection")]
            start = "websocket.http.response.start"
            await send({"type": start, "status": refused.status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": refused.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
