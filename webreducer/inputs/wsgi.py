"""The WSGI wrapper: the head checked, the body read here (bounded, with a deadline) and then
handed to Django as a complete, length-delimited stream."""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

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

READ_STEP = 64 * 1024


class Watchdog:
    """Ends body reads that pass their deadline: one thread per process shuts the socket for
    reading, so the blocked read returns at once. A timeout on the socket alone would not do:
    gunicorn's body reader loops over recv() until it has what it asked for, so a client that
    trickles a byte at a time never lets a per-recv timeout fire."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._deadlines: list[tuple[float, int, socket.socket]] = []
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._pid = 0

    @contextmanager
    def deadline(self, sock: socket.socket, seconds: float) -> Iterator[Callable[[], bool]]:
        """Yields a function telling whether the deadline passed (and the socket was shut)."""
        ident = next(self._ids)
        with self._lock:
            # Started lazily in each process: a thread started before gunicorn forks its
            # workers would not exist in them.
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._deadlines, self._expired = [], set()
                threading.Thread(target=self._run, name="wr-body-deadline", daemon=True).start()
            heapq.heappush(self._deadlines, (time.monotonic() + seconds, ident, sock))
            self._lock.notify()
        try:
            yield lambda: ident in self._expired
        finally:
            with self._lock:
                self._deadlines = [entry for entry in self._deadlines if entry[1] != ident]
                heapq.heapify(self._deadlines)
                self._expired.discard(ident)

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, ident, sock = heapq.heappop(self._deadlines)
                    self._expired.add(ident)
                    with contextlib.suppress(OSError):  # already closed
                        sock.shutdown(socket.SHUT_RD)
                wait = self._deadlines[0][0] - now if self._deadlines else None
                self._lock.wait(wait)


watchdog = Watchdog()


def _header_sizes(environ: dict[str, Any]) -> Iterator[int]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield len(key) - 5 + len(value)
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            yield len(key) + len(value)


def _raw_path(environ: dict[str, Any]) -> bytes:
    # gunicorn's RAW_URI is the request target as sent; PATH_INFO is already decoded.
    raw = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
    return str(raw).split("?", 1)[0].encode("latin-1", "replace")


class InputLimits:
    """Outermost WSGI middleware (docs/security.md)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], limits: Limits | None = None):
        self.app = app
        self._limits = limits

    @property
    def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits.from_settings()
        return self._limits

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = _raw_path(environ)
        body_untouched = True
        try:
            head_check(
                self.limits,
                path=len(path),
                query=str(environ.get("QUERY_STRING", "")).encode("latin-1", "replace"),
                header_sizes=_header_sizes(environ),
            )
            declared = declared_length(environ.get("CONTENT_LENGTH") or None, self.limits)
            chunked = is_chunked(environ.get("HTTP_TRANSFER_ENCODING"))
            if declared or chunked:
                body_untouched = False
                body = self._read(environ, declared)
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
                # Django reads exactly CONTENT_LENGTH bytes (its WSGI request would otherwise
                # see a chunked body as empty).
                environ.pop("HTTP_TRANSFER_ENCODING", None)
        except Refused as refused:
            sock = environ.get("gunicorn.socket")
            if isinstance(sock, socket.socket) and not (
                body_untouched and self._drained(environ, sock)
            ):
                # Connection: close is a hop-by-hop header a WSGI app cannot send; this ends
                # the connection instead, so no worker reads (or drains) the rest of the body.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
            return _refuse(start_response, refused, path)
        return self._app_or_busy(environ, start_response)

    def _app_or_busy(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """The app, unless the URL's key is one this process refuses now for a full hook
        (webreducer/inputs/busy.py): then its 429, without Django."""
        key = public_key(
            str(environ.get("REQUEST_METHOD", "")),
            str(environ.get("PATH_INFO", "")),
            str(environ.get("HTTP_HOST", "")),
        )
        if key is None:
            return self.app(environ, start_response)
        from hooks import serving

        limit = serving.refused_early(*key)
        if limit is not None:
            status, headers, body = refusal(limit)
            start_response(f"{status} Too Many Requests", headers)
            return [body]
        with serving.request_key(*key):
            return self.app(environ, start_response)

    def _drained(self, environ: dict[str, Any], sock: socket.socket) -> bool:
        """Behind a proxy (TRUSTED_PROXY_COUNT > 0), read and drop the body of a refused request
        when it declares a length of at most twice the limit: nginx has buffered it whole and
        is still writing it, and a connection shut under that write reaches the client as
        nginx's 502 instead of this refusal. False (nothing or not all read) otherwise: a
        client straight on the server does not get to make a worker read its body."""
        if not settings.TRUSTED_PROXY_COUNT or is_chunked(environ.get("HTTP_TRANSFER_ENCODING")):
            return False
        value = str(environ.get("CONTENT_LENGTH") or "0").strip()
        if not value.isdigit() or len(value) > 19 or int(value) > 2 * self.limits.body_bytes:
            return False
        left = int(value)
        stream = environ["wsgi.input"]
        with watchdog.deadline(sock, self.limits.body_seconds) as expired:
            try:
                while left > 0 and not expired():
                    chunk = stream.read(min(READ_STEP, left))
                    if not chunk:
                        break
                    left -= len(chunk)
            except Exception:  # shut under the read (too slow) or broken: close it
                return False
        return left == 0

    def _read(self, environ: dict[str, Any], declared: int | None) -> bytes:
        stream = environ["wsgi.input"]
        limit = self.limits.body_bytes
        want = limit + 1 if declared is None else declared
        sock = environ.get("gunicorn.socket")
        buffer = bytearray()
        with (
            watchdog.deadline(sock, self.limits.body_seconds)
            if isinstance(sock, socket.socket)
            else _no_deadline()
        ) as expired:
            try:
                while len(buffer) < want:
                    chunk = stream.read(min(READ_STEP, want - len(buffer)))
                    if not chunk:
                        break
                    buffer += chunk
            except Exception as error:
                # gunicorn raises its own NoMoreData/ChunkMissingTerminator when the socket
                # is shut under a read; anything else is a broken request.
                if expired():
                    raise too_slow(self.limits) from None
                raise incomplete() from error
            if expired():
                raise too_slow(self.limits)
        if len(buffer) > limit:
            raise too_large(self.limits)
        if declared is not None and len(buffer) < declared:
            raise incomplete()
        return bytes(buffer)


@contextmanager
def _no_deadline() -> Iterator[Callable[[], bool]]:
    # Another WSGI server (or Django's test client): its own timeouts bound the read.
    yield lambda: False


def _refuse(start_response: Any, refused: Refused, path: bytes) -> list[bytes]:
    body = refused.body()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if public_path(path):
        headers.append(("Access-Control-Allow-Origin", "*"))
    start_response(f"{refused.status} {_REASONS.get(refused.status, 'Error')}", headers)
    return [body]


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}
