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


def post_fork(server: Any, worker: Any) -> None:
    # Each worker process starts its own sandbox fork server before it takes requests, so the
    # first responder/query call does not pay for it.
    import sandbox

    try:
        sandbox.warmup()
    except Exception:
        server.log.exception("sandbox unavailable in worker %s", worker.pid)
