"""Early refusals for a full hook (hooks/serving.py, "Early refusals"), shared by the ASGI and
WSGI wrappers: the key a public URL names, whether this process refuses its request now, and
the answer, the same 429 `hook_busy` the view gives, built without Django.

Only a request the view would route to a hook's sandbox call is considered: GET /read/<key>,
any method but OPTIONS (a CORS preflight) on /write/<key>[/<path>], on a host Django would
accept for that path (ALLOWED_HOSTS and the origins' split, webreducer/origins.py). Anything
else, and every request while the hook is not full, goes to Django as before.
"""

from __future__ import annotations

import json
import random

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from webreducer.origins import misrouted


def public_key(method: str, path: str, host: str) -> tuple[str, str] | None:
    """(kind, token) of the key this request's URL names, when it is one the view would run
    user code for; None otherwise. `path` is the decoded path (PATH_INFO, scope["path"])."""
    if path.startswith("/read/"):
        token = path[len("/read/") :]
        if method != "GET" or not token or "/" in token:
            return None
        kind = "read"
    elif path.startswith("/write/"):
        token = path[len("/write/") :].split("/", 1)[0]
        if method == "OPTIONS" or not token:
            return None
        kind = "write"
    else:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    if misrouted(host=host, path=path) is not None:
        return None
    return kind, token


def refusal(limit: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of the early 429: what hooks.public_calls' `fair_share` answers,
    with the headers every public answer carries (hooks.responses.SERVER_HEADERS) and those
    Django's middleware adds. Not HSTS: SecurityMiddleware sends it on https requests only,
    and a browser has it from the hook's other answers."""
    from hooks.responses import SERVER_HEADERS

    body = json.dumps(
        {
            "error": {
                "code": "hook_busy",
                "message": f"This hook is already running {limit} responder or query call(s) "
                "at once here; retry shortly.",
            }
        }
    ).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        # 1 or 2 s, as the view: a refused crowd that honours it does not come back at once.
        ("Retry-After", str(random.randint(1, 2))),  # noqa: S311 - spreading load, not a secret
        *SERVER_HEADERS.items(),
    ]
    # What Django's middleware adds to the view's answer (SecurityMiddleware, clickjacking).
    for name, setting in (
        ("X-Frame-Options", "X_FRAME_OPTIONS"),
        ("Referrer-Policy", "SECURE_REFERRER_POLICY"),
        ("Cross-Origin-Opener-Policy", "SECURE_CROSS_ORIGIN_OPENER_POLICY"),
    ):
        value = getattr(settings, setting, None)
        if value:
            headers.append((name, str(value)))
    return 429, headers, body
