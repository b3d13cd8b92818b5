"""The public endpoints (docs/pipeline.md): no login, the key in the URL is the credential.

Plain Django views, not DRF: they take no authentication, parsing, content negotiation or
throttling (the body is read byte-exact here, the rate limit is the key's), and DRF's dispatch
around them was ~5 % of a write's time under cProfile (docs/performance.md, "Write path"). They
run behind the short middleware chain of the public endpoints (webreducer/handlers.py).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from hooks import public_calls, reads, writes
from hooks.models import Key
from hooks.responses import json_error, preflight, render, retry_after

READ_METHODS = ("GET", "HEAD")


def _error(error: public_calls.PublicError) -> HttpResponse:
    response = json_error(error.status, error.code, error.message)
    if error.retry_after is not None:
        retry_after(response, error.retry_after)
    return response


def _reply(reply: public_calls.Reply) -> HttpResponse:
    return render(
        reply.status,
        reply.headers,
        reply.body,
        raw_json=reply.raw_json,
        server_headers=reply.server_headers,
    )


def stored_headers(request: HttpRequest) -> dict[str, str]:
    # A browser on WebReducer's own origin would send its session cookie with a write: the
    # key is the credential here, and the log must not keep anyone's session.
    return {name: value for name, value in request.headers.items() if name.lower() != "cookie"}


def _query(request: HttpRequest) -> dict[str, list[str]]:
    return {name: request.GET.getlist(name) for name in request.GET}


def _preflight(request: HttpRequest) -> HttpResponse | None:
    """The answer to a CORS preflight (an OPTIONS that names the method it asks for)."""
    if request.method == "OPTIONS" and request.META.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
        return preflight(request.META.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", ""))
    return None


@csrf_exempt
def write(request: HttpRequest, token: str, path: str = "") -> HttpResponse:
    """ANY /write/<key>[/<path>]: store the request, answer with the responder.

    Every method is a write (OPTIONS too, unless it is a CORS preflight)."""
    answer = _preflight(request)
    if answer is not None:
        return answer
    try:
        key = writes.write_key_resolve(token)
        limit = writes.max_body_bytes(key)
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > limit:
            raise public_calls.PublicError(413, "too_large", f"The body is over {limit} bytes.")
        writes.rate_check(key)
        body = request.read(limit + 1)
        if len(body) > limit:
            raise public_calls.PublicError(413, "too_large", f"The body is over {limit} bytes.")
        reply = writes.request_ingest(
            key=key,
            method=request.method or "GET",
            path=path,
            headers=stored_headers(request),
            query=_query(request),
            content_type=request.content_type or "",
            body=body,
            soon=True,
        )
    except public_calls.PublicError as error:
        return _error(error)
    return _reply(reply)


@csrf_exempt
def read(request: HttpRequest, token: str) -> HttpResponse:
    """GET /read/<key>[?params]: the queried state, with X-WebReducer-Seq."""
    answer = _preflight(request)
    if answer is not None:
        return answer
    if request.method not in READ_METHODS:
        response = json_error(
            405, "method_not_allowed", f"{request.method} is not accepted here; a read is a GET."
        )
        response["Allow"] = "GET, HEAD, OPTIONS"
        return response
    try:
        key = public_calls.key_resolve(token=token, kind=Key.Kind.READ)
        reply = reads.state_read(key=key, params=_query(request))
    except public_calls.PublicError as error:
        return _error(error)
    return _reply(reply)
