"""GET /read/<key>/events: the live state as Server-Sent Events (served by the ASGI server).

    id: <seq>
    event: state
    data: {"seq": <seq>, "body": <query result>}

A comment line every WR_LIVE_KEEPALIVE_SECONDS keeps proxies from cutting an idle stream and
lets the server notice a client that went away. `Last-Event-ID: N` (or `?since=N` for a first
connection) resumes: nothing is sent at connect if the state is still at N.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from hooks import live
from hooks.responses import SERVER_HEADERS, json_error, preflight, retry_after
from webreducer.clientip import client_ip


async def live_events(request: HttpRequest, token: str) -> HttpResponse | StreamingHttpResponse:
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        return preflight(request.headers.get("Access-Control-Request-Headers", ""))
    if request.method not in ("GET", "HEAD"):
        return json_error(405, "method_not_allowed", "Use GET to subscribe.")
    if not isinstance(request, ASGIRequest):
        # Under WSGI an endless stream would be read to its end before anything is sent.
        return json_error(501, "asgi_required", "Server-Sent Events are served by the ASGI server.")
    params = {name: request.GET.getlist(name) for name in request.GET}
    since = live.since_parse(request.headers.get("Last-Event-ID") or request.GET.get("since"))
    try:
        subscription = await live.subscribe(
            token=token, query=params, since=since, ip=client_ip(request)
        )
    except live.Refused as refused:
        error = json_error(refused.status, refused.code, refused.message)
        if refused.status in (429, 503):
            retry_after(error, 5)
        return error
    response = StreamingHttpResponse(_stream(subscription), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    for name, value in SERVER_HEADERS.items():
        response[name] = value
    return response


async def _stream(subscription: live.Subscription) -> AsyncIterator[bytes]:
    try:
        # Sent at once so the client sees the stream open even when it is up to date.
        yield b": connected\n\n"
        while True:
            item = await subscription.next(timeout=settings.WR_LIVE_KEEPALIVE_SECONDS)
            if item is None:
                yield b": keep-alive\n\n"
            elif isinstance(item, live.Closing):
                data = json.dumps({"code": item.code, "reason": item.reason})
                yield f"event: close\ndata: {data}\n\n".encode()
                return
            else:
                yield item.sse_bytes
    finally:
        # Also on a client disconnect: Django cancels the response and closes this generator.
        await live.unsubscribe(subscription)
