"""The site's own 404 and 405 answers: a page for people, JSON for programs.

Django answers a method a view does not take with an empty 405, and a missing page with its
debug page (the URL patterns) when DEBUG is on, or a bare "Not Found" when it is off. This
middleware replaces those, on the app's routes, with the JSON error shape of the API
(webreducer/errors.py) for /api/ and for clients that ask for JSON, and with a page that says
what happened and where to go for everyone else. The write and read URLs are left alone: their
answers are the hook's (or their own JSON errors). docs/ui.md, "Error pages".
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

from webreducer.origins import is_public_path


def wants_json(request: HttpRequest) -> bool:
    if request.path.startswith("/api/"):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _replaceable(response: HttpResponse) -> bool:
    if response.streaming:
        return False
    content_type = response.get("Content-Type", "")
    if response.status_code == 405:
        return not response.content
    # Django's own 404 pages are HTML; the API's and the guards' are JSON already.
    return response.status_code == 404 and content_type.startswith("text/html")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if wants_json(request):
        error = {"code": "not_found", "message": f"Nothing is at {request.path}."}
        return JsonResponse({"error": error}, status=404)
    return render(request, "errors/404.html", {"path": request.path}, status=404)


def method_not_allowed(request: HttpRequest, allowed: str) -> HttpResponse:
    methods = [m.strip() for m in allowed.split(",") if m.strip()]
    message = f"{request.method} is not accepted at {request.path}; it takes {', '.join(methods)}."
    if wants_json(request):
        response: HttpResponse = JsonResponse(
            {"error": {"code": "method_not_allowed", "message": message}}, status=405
        )
    else:
        context = {"path": request.path, "method": request.method, "allowed": methods}
        response = render(request, "errors/405.html", context, status=405)
    response["Allow"] = allowed
    return response


class ErrorPagesMiddleware(MiddlewareMixin):
    """A MiddlewareMixin (sync and async capable) so the ASGI path stays async for SSE."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if is_public_path(request.path) or not _replaceable(response):
            return response
        if response.status_code == 405:
            return method_not_allowed(request, response.get("Allow", ""))
        return not_found(request)
