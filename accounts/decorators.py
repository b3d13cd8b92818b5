from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.ratelimit import RateLimited
from accounts.services import visitor_for_request


def rate_limited_response(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = render(
        request,
        "accounts/rate-limited.html",
        {"message": exc.message, "retry_after": exc.retry_after},
        status=429,
    )
    response["Retry-After"] = str(exc.retry_after)
    return response


def visitor_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For web UI views: a first visit starts a visitor, so request.user is always someone."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            visitor_for_request(request)
        except RateLimited as exc:
            return rate_limited_response(request, exc)
        return view(request, *args, **kwargs)

    return wrapper
