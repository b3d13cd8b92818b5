"""Two origins: the app (`SITE_ROOT`) and the public endpoints (`WR_PUBLIC_ORIGIN`).

What a hook's `responder` and `query` return is anyone's content. Served on the app's origin it
would run as the product, with the signed-in owner's cookies (issue 13, finding 1). So the
public endpoints get an origin of their own, and every answer they give, on any origin, is a
sandboxed document (`Content-Security-Policy: sandbox`) that cannot run script or read cookies.
When the two origins' host names differ, each host serves only its own routes; when
WR_PUBLIC_ORIGIN is unset it equals SITE_ROOT and one host serves everything (the sandbox
header alone holds then). docs/security.md, "User content".

Imported by settings.py, so nothing here imports more of Django than its settings object; the
guards that enforce these rules are in webreducer/origin_guards.py.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Every answer of a public endpoint (the user's content and our JSON errors alike). Plain
# `sandbox`, no allow-* token: no script, forms, popups, top navigation, and an opaque origin,
# so nothing in it can read the app's cookies or pages even on one origin.
USER_CONTENT_HEADERS = {
    "Content-Security-Policy": "sandbox",
    "X-Content-Type-Options": "nosniff",
}

PUBLIC_PREFIXES = ("/write/", "/read/")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


def origin_parse(url: str, *, name: str) -> str:
    """`scheme://host[:port]` of an absolute http(s) URL; ImproperlyConfigured otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an http(s) URL like https://example.com")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name} must be an origin, without a path: {url!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def host_of(origin: str) -> str:
    """The host name of an origin, as ALLOWED_HOSTS spells it ("http://[::1]:8000" -> "[::1]")."""
    try:
        host = (urlsplit(origin).hostname or "").lower()
    except ValueError:
        return ""
    return f"[{host}]" if ":" in host else host


def app_root() -> str:
    """The app's origin (pages, API, admin, sign-in links, the owners' websocket)."""
    return str(settings.SITE_ROOT).rstrip("/")


def public_root() -> str:
    """The origin of the write, read and live URLs shown to people (SITE_ROOT when unset)."""
    return str(settings.WR_PUBLIC_ORIGIN or settings.SITE_ROOT).rstrip("/")


def websocket_url(url: str) -> str:
    """The ws(s):// form of an http(s):// URL."""
    return "ws" + url[len("http") :] if url.startswith("http") else url


def origins_split() -> bool:
    """Whether the two origins have different host names. Only then does each host refuse the
    other's routes: cookies are per host, not per port, so a port alone separates nothing."""
    return host_of(app_root()) != host_of(public_root())


def is_public_path(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


def on_public_host(host: str) -> bool:
    """Whether a Host header ("hooks.example.net:443") names the public host of split origins."""
    return origins_split() and host_of("//" + host) == host_of(public_root())


def misrouted(*, host: str, path: str) -> str | None:
    """Why this host does not serve this path, or None when it does.

    With split origins the public endpoints are served only on the public host, and the public
    host serves nothing else. Other hosts in ALLOWED_HOSTS (an internal health check) are the
    app's.
    """
    if not origins_split():
        return None
    public_host = on_public_host(host)
    if is_public_path(path) and not public_host:
        return f"The write and read URLs are served at {public_root()}, not on this host."
    if not is_public_path(path) and public_host:
        return f"This host serves only the write and read URLs; the app is at {app_root()}."
    return None


# Addresses a server listens on that a browser on the same machine reaches as loopback.
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - names, not a bind


def local_port() -> int:
    """The port `make run` serves on: PORT, else 8000 (docs/configuration.md)."""
    return int(os.environ.get("PORT") or 8000)


def local_origins(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """SITE_ROOT and WR_PUBLIC_ORIGIN of a local run on one port (`make run`), unless the
    operator chose either: two host names for one loopback server. A server on one other
    address (HOST=192.168.1.5) is one origin there, the only name it answers to."""
    if os.environ.get("SITE_ROOT") or os.environ.get("WR_PUBLIC_ORIGIN"):
        return {}
    if host.lower() not in LOOPBACK_HOSTS | WILDCARD_HOSTS | {"::1"}:
        name = f"[{host}]" if ":" in host else host
        return {"SITE_ROOT": f"http://{name}:{port}", "WR_PUBLIC_ORIGIN": f"http://{name}:{port}"}
    return {"SITE_ROOT": f"http://localhost:{port}", "WR_PUBLIC_ORIGIN": f"http://127.0.0.1:{port}"}
