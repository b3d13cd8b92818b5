"""The guards of the two origins (webreducer/origins.py): Django middleware for HTTP (WSGI and
ASGI alike), and Channels wrappers for websockets, which never pass through that middleware."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from webreducer.origins import (
    USER_CONTENT_HEADERS,
    app_root,
    is_public_path,
    misrouted,
    on_public_host,
)


class OriginsMiddleware(MiddlewareMixin):
    """Refuses routes on the other origin's host, and marks every public answer as sandboxed
    user content (CSP sandbox, nosniff) whatever produced it: a view, a 404, a 500.

    A MiddlewareMixin (sync and async capable) so the ASGI path stays async for SSE.
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        refusal = misrouted(host=request.get_host(), path=request.path_info)
        if refusal is None:
            return None
        return JsonResponse({"error": {"code": "wrong_origin", "message": refusal}}, status=404)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if is_public_path(request.path_info) or on_public_host(request.get_host()):
            for name, value in USER_CONTENT_HEADERS.items():
                response[name] = value
        return response


class WebsocketHostGuard:
    """The same host rule for websockets: `/read/<key>/live` only on the public host, `/ws/`
    never on it. A refused handshake is closed before it is accepted (HTTP 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        host = next((v for k, v in scope.get("headers", []) if k == b"host"), b"")
        if misrouted(host=host.decode("latin1"), path=scope["path"]) is not None:
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


class AppOriginValidator(OriginValidator):
    """Only pages of the app's own origin (SITE_ROOT: scheme, host and port) may open a
    websocket authenticated by the session cookie, whatever DEBUG and ALLOWED_HOSTS say: another
    site's page would ride on a signed-in browser's cookie (issue 13, finding 12). SITE_ROOT is
    read per connection so tests can change it."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is not None and bool(
            self.match_allowed_origin(parsed_origin, app_root())
        )
