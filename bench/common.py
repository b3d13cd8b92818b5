"""What the benchmarks share: a throwaway database and production-like settings."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each benchmark run gets a database and Redis db of its own (several people share a machine).
DB = os.environ.get("WR_BENCH_DB", "webreducer_bench")
REDIS_DB = os.environ.get("WR_BENCH_REDIS_DB", "8")
# DEBUG off (no query log), a real-looking secrets key, limits that do not throttle the load.
ENV = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
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
    subprocess.run(
        ["redis-cli", "-n", REDIS_DB, "flushdb"], env=env, check=False, capture_output=True
    )
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def pending_requests(hook: object, count: int, rooms: Sequence[str] = ("",)) -> None:
    """Store `count` requests for the hook as the write path would, not yet applied; round-robin
    over `rooms` (the main room by default), each named room's `?room=` in its query as the
    write path stores it (a publish routes the history by it again).

    On PostgreSQL one `INSERT … SELECT generate_series` (then ANALYZE, as autovacuum would):
    a million rows in seconds, where bulk_create built a model instance per row and took
    minutes. The columns a write sets that folding reads (`hooks.request_rows.FIELDS`) are the
    ones given here; the rest keep their model defaults."""
    from django.db import connection
    from django.utils import timezone

    from hooks.models import Request

    now = timezone.now()
    names = list(rooms)
    queries = [{"room": [name]} if name else {} for name in names]
    if connection.vendor != "postgresql":
        Request.objects.bulk_create(
            (
                Request(
                    hook=hook,
                    room=names[n % len(names)],
                    query=queries[n % len(names)],
                    method="POST",
                    content_type="application/json",
                    body=BODY.encode(),
                    received_at=now,
                )
                for n in range(count)
            ),
            batch_size=5000,
        )
        return
    table = Request._meta.db_table
    with connection.cursor() as cursor:
        # Ids in generate_series order: request n is the n-th stored, in room n % len(rooms).
        cursor.execute(
            f"INSERT INTO {table} (uuid, hook_id, room, method, path, headers, query, "
            "content_type, body, received_at, outcome, console) "
            "SELECT gen_random_uuid(), %s, (%s::text[])[1 + n %% %s], 'POST', '', '{}'::jsonb, "
            "(%s::jsonb[])[1 + n %% %s], 'application/json', %s, %s, 'pending', '' "
            "FROM generate_series(0, %s - 1) AS n ORDER BY n",
            [
                str(hook.pk),  # type: ignore[attr-defined]
                names,
                len(names),
                [json.dumps(q) for q in queries],
                len(names),
                BODY.encode(),
                now,
                count,
            ],
        )
        cursor.execute(f"ANALYZE {table}")


# The web server arrangements the benchmarks compare (docs/performance.md, "Web server"):
# NAME or NAME:WORKERSxTHREADS.
SERVERS = ("sync", "gthread", "granian", "uvicorn")


def server_args(spec: str, port: int) -> list[str]:
    """The command line of one web server arrangement on 127.0.0.1:port."""
    name, _, shape = spec.partition(":")
    workers, _, threads = (shape or "").partition("x")
    py = sys.executable
    bind = f"127.0.0.1:{port}"
    if name == "sync":
        return [py, "-m", "gunicorn", "webreducer.wsgi:application", "-b", bind,
                "-w", workers or "4", "-k", "sync", "--threads", "1"]  # fmt: skip
    if name == "gthread":
        return [py, "-m", "gunicorn", "webreducer.wsgi:application", "-b", bind,
                "-w", workers or "2", "-k", "gthread", "--threads", threads or "8"]  # fmt: skip
    if name == "granian":
        return [py, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", workers or "2",
                "--blocking-threads", threads or "8", "webreducer.wsgi:application"]  # fmt: skip
    if name == "uvicorn":
        return [py, "-m", "uvicorn", "webreducer.asgi:application", "--host", "127.0.0.1",
                "--port", str(port), "--workers", workers or "1"]  # fmt: skip
    raise SystemExit(f"unknown server {spec!r}: one of {', '.join(SERVERS)}[:WORKERSxTHREADS]")


def cpu_reference() -> float:
    """docs/performance.md's measure of the machine's speed: `sum(range(20_000_000))`."""
    import time

    started = time.perf_counter()
    sum(range(20_000_000))
    return time.perf_counter() - started


FIGURE_PREFIX = "#figure "


def figure(
    name: str, value: float, unit: str, *, target: str = "", met: bool | None = None
) -> None:
    """One figure for `make bench`'s table (bench/all.py reads these lines from the output);
    without a target it is reported, not judged."""
    line = {"name": name, "value": round(value, 3), "unit": unit, "target": target, "met": met}
    print(FIGURE_PREFIX + json.dumps(line), flush=True)


class Stack:
    """The processes this run started; all of them are killed on the way out, whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        atexit.register(self.stop)

    def start(
        self, name: str, args: list[str], cwd: Path = ROOT, **env: str
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env={**os.environ, **ENV, **env},
            stdout=(self.logs / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill takes its children too
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")
