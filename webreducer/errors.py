"""One JSON error shape everywhere: {"error": {"code", "message", "fields"?}}."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    error: dict[str, Any] = {"code": "error", "message": "The request failed."}
    if isinstance(exc, exceptions.ValidationError):
        error = {"code": "invalid", "message": "Some fields are invalid.", "fields": exc.detail}
        if isinstance(exc.detail, list):
            error = {"code": "invalid", "message": " ".join(str(d) for d in exc.detail)}
        elif isinstance(exc.detail, dict) and set(exc.detail) == {"non_field_errors"}:
            error = {
                "code": "invalid",
                "message": " ".join(map(str, exc.detail["non_field_errors"])),
            }
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (dict, list)) else "The request failed."
        error = {
            "code": exc.get_codes() if isinstance(exc.get_codes(), str) else "error",
            "message": message,
        }
        # More about the error for the client, e.g. the line and column of a syntax error.
        error.update(getattr(exc, "extra", None) or {})
    if response.status_code == status.HTTP_404_NOT_FOUND:
        error = {"code": "not_found", "message": "Not found."}
    response.data = {"error": error}
    return response
