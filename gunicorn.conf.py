"""gunicorn settings for the WSGI web servers (docker-compose.yml's `web`)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

# Threaded workers (docs/performance.md, "Web server"): with sync workers one process serves one
# request at a time, so 4 concurrent calls of one hook's slow responder or query held every
# worker and every other hook waited (finding 4 of issue 13). With threads, a hook gets at most
# WR_SANDBOX_CALLS_PER_HOOK of a process's threads (hooks/serving.py) and the rest serve
# everyone else. Each process borrows database connections from a pool of
# WR_DB_POOL_MAX_SIZE (webreducer/settings.py), whatever its number of threads.
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))


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


def on_starting(server: Any) -> None:
    # The public URLs' keys out of the access and error logs (webreducer.log_redaction).
    import logging

    from webreducer.log_redaction import KeyRedaction

    for name in ("gunicorn.access", "gunicorn.error"):
        logging.getLogger(name).addFilter(KeyRedaction())


def post_fork(server: Any, worker: Any) -> None:
    # Each worker process starts its own sandbox fork server before it takes requests, so the
    # first responder/query call does not pay for it.
    import sandbox

    try:
        sandbox.warmup()
    except Exception:
        server.log.exception("sandbox unavailable in worker %s", worker.pid)
