"""Who opens an owners' WebSocket (/ws/…): a personal API token, or the browser's session.

`Authorization: Bearer <token>` in the handshake (the `wr` CLI, scripts) authenticates by the
token alone and needs no Origin: a web page cannot set that header on a WebSocket, so no other
site can make a browser send it. Without it the socket is the browser's: the session cookie
authenticates it and only pages of this site (Origin in ALLOWED_HOSTS) may open it, since any
site could make a signed-in browser send the cookie.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser

from accounts.services import api_token_authenticate


def bearer_token(scope: dict[str, Any]) -> str | None:
    """The token of an `Authorization: Bearer …` header; "" for a malformed one; None without
    the header (or with another scheme)."""
    for name, value in scope.get("headers", []):
        if name.lower() != b"authorization":
            continue
        parts = value.split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            return ""
        try:
            return str(parts[1].decode("ascii"))
        except UnicodeDecodeError:
            return ""
    return None


@database_sync_to_async
def _token_user(token: str) -> Any:
    api_token = api_token_authenticate(token=token) if token else None
    return api_token.user if api_token is not None else AnonymousUser()


class OwnerSocketAuth:
    """ASGI middleware for the owners' WebSocket routes (webreducer/asgi.py)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.by_session = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = bearer_token(scope)
        if token is None:
            return await self.by_session(scope, receive, send)
        # An invalid token is anonymous (the consumer refuses it with 4403); it never falls
        # back to the cookie, which would bring the Origin question back.
        user = await _token_user(token)
        return await self.inner({**scope, "user": user}, receive, send)
