"""gunicorn settings for the WSGI web servers (docker-compose.yml's `web`)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

# Sync workers: Django's request path is CPU-bound here and sync WSGI measured fastest
# (docs/performance.md). Persistent DB connections come from CONN_MAX_AGE.
worker_class = "sync"


def post_fork(server: Any, worker: Any) -> None:
    # Each worker process starts its own sandbox fork server before it takes requests, so the
    # first responder/query call does not pay for it.
    import sandbox

    try:
        sandbox.warmup()
    except Exception:
        server.log.exception("sandbox unavailable in worker %s", worker.pid)
