"""The client's address for every per-IP limit, on every server (docs/security.md, "Proxies").

One setting decides whom to believe: TRUSTED_PROXY_COUNT, the number of proxies in front of
the app that each append the address they saw to X-Forwarded-For. With 0 the peer of the TCP
connection is the client and X-Forwarded-For is ignored. With N the client is the address N
hops from the right of X-Forwarded-For: the rightmost entry was written by the last proxy, the
Nth from the right by the first one we trust; anything to its left was sent by the client and
is never believed. (uvicorn's own `--proxy-headers` takes the leftmost entry when told to trust
everything, which is how a client chose its own address: the servers run with it off and this
module is the only reader of the header.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest

UNKNOWN = "unknown"


def _normal(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_address(*, peer: str | None, forwarded_for: Iterable[str], trusted_proxies: int) -> str:
    """The client's address given the TCP peer and the X-Forwarded-For header values, in order."""
    if trusted_proxies > 0:
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
        if hops:
            # Fewer hops than proxies: the request came through fewer proxies than declared
            # (a health check, a proxy that was bypassed), so the farthest one known is taken.
            chosen = _normal(hops[-min(trusted_proxies, len(hops))])
            if chosen is not None:
                return chosen
    return _normal(peer or "") or UNKNOWN


def client_ip(request: HttpRequest) -> str:
    """The client's address of a Django request (WSGI or ASGI)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_address(
        peer=request.META.get("REMOTE_ADDR"),
        forwarded_for=[forwarded] if forwarded else [],
        trusted_proxies=settings.TRUSTED_PROXY_COUNT,
    )


def scope_client_ip(scope: dict[str, Any]) -> str:
    """The client's address of an ASGI connection (websockets)."""
    client = scope.get("client")
    return client_address(
        peer=str(client[0]) if client else None,
        forwarded_for=[
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"x-forwarded-for"
        ],
        trusted_proxies=settings.TRUSTED_PROXY_COUNT,
    )
