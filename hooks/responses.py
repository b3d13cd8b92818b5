"""Rendering user-defined responses and the JSON errors of the public endpoints."""

from __future__ import annotations

import json
import math
from typing import Any

from django.http import HttpResponse

from hooks.response_headers import headers_filter, status_allowed
from webreducer.origins import USER_CONTENT_HEADERS

# Never with credentials: the key in the URL is the credential, and a browser's cookies must
# never make a cross-origin read succeed. Without credentials `*` exposes every header, so
# pages can read a hook's own X-… headers (hooks cannot set Access-Control-* themselves).
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "*",
}
# What the server sets on every public answer, after (so over) anything the hook chose.
SERVER_HEADERS = {**CORS_HEADERS, **USER_CONTENT_HEADERS}


def json_error(status: int, code: str, message: str, **extra: Any) -> HttpResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, **extra}}
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    for name, value in SERVER_HEADERS.items():
        response[name] = value
    return response


def retry_after(response: HttpResponse, seconds: float) -> HttpResponse:
    response["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def render(
    status: int,
    headers: dict[str, str],
    body: Any,
    *,
    raw_json: str | None = None,
    server_headers: dict[str, str] | None = None,
) -> HttpResponse:
    """A user's (status, headers, body) as an HTTP response.

    A str body with a non-JSON Content-Type is sent as text (Slack challenges, XML, HTML);
    anything else is sent as JSON. `raw_json` is body's JSON text when the caller has it already.
    `headers` are the hook's; `server_headers` ours (X-WebReducer-Seq), set after them.
    The allow-list of headers and statuses (hooks/response_headers.py) is applied here too,
    whatever the caller checked: this is the last step before the bytes leave.
    """
    if not status_allowed(status):
        return json_error(
            500, "invalid_response", f"The hook answered with status {status!r} (allowed: 200-599)."
        )
    headers = headers_filter(headers).headers
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if isinstance(body, str) and content_type and "json" not in content_type.lower():
        content = body.encode()
    else:
        content = (
            raw_json if raw_json is not None else json.dumps(body, ensure_ascii=False)
        ).encode()
        content_type = content_type or "application/json"
    response = HttpResponse(content, status=status, content_type=content_type)
    for name, value in headers.items():
        if name.lower() != "content-type":
            response[name] = value
    for name, value in {**(server_headers or {}), **SERVER_HEADERS}.items():
        response[name] = value
    return response


def preflight(request_headers: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    response["Access-Control-Allow-Headers"] = request_headers or "*"
    response["Access-Control-Max-Age"] = "86400"
    for name, value in USER_CONTENT_HEADERS.items():
        response[name] = value
    return response
