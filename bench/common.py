"""What the benchmarks share: a throwaway database and production-like settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "webreducer_bench"
# DEBUG off (no query log), a real-looking secrets key, limits that do not throttle the load.
ENV = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/8",
    "DEBUG": "false",
    "SECRET_KEY": "bench-secret-key-not-for-production",
    "WR_SECRETS_KEYS": "YmVuY2gtb25seS1rZXktYmVuY2gtb25seS1rZXktISE=",
    "ALLOWED_HOSTS": "*",
    "WR_BENCH_VIEWS": "true",
    "WR_RATE_PER_SECOND": "1000000",
    "WR_RATE_BURST": "1000000",
    "LOG_LEVEL": "WARNING",
    "DJANGO_SETTINGS_MODULE": "webreducer.settings",
}
# The 325-byte JSON body of MEASURED.md's ingest figures.
BODY = json.dumps({"event": "reading", "device": "sensor-0042", "number": 1, "pad": "x" * 254})


def fresh_database() -> None:
    """Drop and re-create the bench database, migrate it, and set this process up on it."""
    env = {**os.environ, **ENV}
    pg = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(["dropdb", *pg, "--if-exists", DB], env=env, check=True)
    subprocess.run(["createdb", *pg, DB], env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(["redis-cli", "-n", "8", "flushdb"], env=env, check=False, capture_output=True)
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def pending_requests(hook: object, count: int) -> None:
    """Store `count` requests for the hook as the write path would, not yet applied."""
    from django.utils import timezone

    from hooks.models import Request

    now = timezone.now()
    Request.objects.bulk_create(
        (
            Request(
                hook=hook,
                method="POST",
                content_type="application/json",
                body=BODY.encode(),
                received_at=now,
            )
            for _ in range(count)
        ),
        batch_size=5000,
    )
