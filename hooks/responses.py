"""Rendering user-defined responses and the JSON errors of the public endpoints."""

from __future__ import annotations

import json
import math
from typing import Any

from django.http import HttpResponse

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "X-WebReducer-Seq, Retry-After",
}
# Headers a user's code may not set: they belong to the server and the transport.
FORBIDDEN_HEADERS = {"content-length", "transfer-encoding", "connection", "set-cookie", "server"}


def json_error(status: int, code: str, message: str, **extra: Any) -> HttpResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, **extra}}
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    for name, value in CORS_HEADERS.items():
        response[name] = value
    return response


def retry_after(response: HttpResponse, seconds: float) -> HttpResponse:
    response["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def render(
    status: int, headers: dict[str, str], body: Any, *, raw_json: str | None = None
) -> HttpResponse:
    """A user's (status, headers, body) as an HTTP response.

    A str body with a non-JSON Content-Type is sent as text (Slack challenges, XML, HTML);
    anything else is sent as JSON. `raw_json` is body's JSON text when the caller has it already.
    """
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
        if name.lower() not in FORBIDDEN_HEADERS and name.lower() != "content-type":
            response[name] = value
    for name, value in CORS_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def preflight(request_headers: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    response["Access-Control-Allow-Headers"] = request_headers or "*"
    response["Access-Control-Max-Age"] = "86400"
    return response
