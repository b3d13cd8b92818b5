"""gunicorn settings for the WSGI web servers (docker-compose.yml's `web`)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

# Sync workers: Django's request path is CPU-bound here and sync WSGI measured fastest
# (docs/performance.md). Persistent DB connections come from CONN_MAX_AGE.
worker_class = "sync"


def _input_backstops() -> dict[str, Any]:
    """Hard limits a little above the app's (webreducer.inputs answers below them with JSON),
    and proxy trust from the same TRUSTED_PROXY_COUNT Django reads (docs/security.md)."""
    from django.conf import settings

    from webreducer.inputs.limits import backstops

    limits = backstops()
    return {
        "limit_request_line": limits.request_line,
        "limit_request_fields": limits.header_fields,
        "limit_request_field_size": limits.header_field_bytes,
        # X-Forwarded-Proto is believed only behind a declared proxy; the app's port must then
        # be reachable only through it. (Client addresses: webreducer.clientip.)
        "forwarded_allow_ips": "*" if settings.TRUSTED_PROXY_COUNT else "",
    }


_backstops = _input_backstops()
limit_request_line = _backstops["limit_request_line"]
limit_request_fields = _backstops["limit_request_fields"]
limit_request_field_size = _backstops["limit_request_field_size"]
forwarded_allow_ips = _backstops["forwarded_allow_ips"]


def post_fork(server: Any, worker: Any) -> None:
    # Each worker process starts its own sandbox fork server before it takes requests, so the
    # first responder/query call does not pay for it.
    import sandbox

    try:
        sandbox.warmup()
    except Exception:
        server.log.exception("sandbox unavailable in worker %s", worker.pid)
