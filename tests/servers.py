"""Real processes for tests whose behaviour depends on them: Celery workers, WSGI/ASGI servers.

Each runs against the test database (the tests using them need transaction=True so their
rows are committed and visible to other processes).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that shares this test run's database and Redis."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="webreducer.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.url = ""  # a server's base URL
        self._file = log.open("wb")
        # A process group of its own, so a kill takes the worker's pool and sandboxes with it.
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._file.close()


def batch_in_flight() -> bool:
    """Whether a worker is inside a batch now: the pipeline holds a row lock on hooks_state for
    the whole of one (the moment to SIGKILL it in the crash tests)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON l.relation = c.oid "
            "WHERE c.relname = 'hooks_state' AND l.mode = 'RowShareLock' AND l.granted"
        )
        return bool(cursor.fetchone()[0])


@contextmanager
def celery_worker(
    tmp_path: Path, *, concurrency: int = 2, beat: bool = False, name: str = "w", **env: str
) -> Iterator[Process]:
    args = [
        sys.executable, "-m", "celery", "-A", "webreducer", "worker",
        "-c", str(concurrency), "-l", "info", "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if beat:
        args += ["-B", "-s", str(tmp_path / f"beat-{name}")]
    process = Process(args, child_env(**env), tmp_path / f"celery-{name}.log")
    try:
        wait_for(lambda: "ready." in process.output(), 60, "the Celery worker to start")
        yield process
    finally:
        process.stop()


@contextmanager
def wsgi_server(
    tmp_path: Path, *, workers: int = 2, threads: int = 8, port: int | None = None, **env: str
) -> Iterator[str]:
    """gunicorn as deployed (gunicorn.conf.py: gthread workers); pass `port` when SITE_ROOT
    must name it in advance."""
    port = port or free_port()
    args = [
        sys.executable, "-m", "gunicorn", "webreducer.wsgi:application",
        "-b", f"127.0.0.1:{port}", "-w", str(workers), "--threads", str(threads),
        "--access-logfile", "-",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    # The server's own address is its app origin unless a test says otherwise: the owners'
    # websocket only accepts pages of SITE_ROOT.
    env.setdefault("SITE_ROOT", url)
    process = Process(args, child_env(**env), tmp_path / f"gunicorn-{port}.log")
    try:
        wait_for(lambda: _answers(url), 60, "gunicorn to start")
        yield url
    finally:
        process.stop()


@contextmanager
def asgi_server(tmp_path: Path, *, port: int | None = None, **env: str) -> Iterator[str]:
    """uvicorn (HTTP and websockets); pass `port` when SITE_ROOT must name it in advance."""
    with asgi_process(tmp_path, port=port, **env) as process:
        yield process.url


@contextmanager
def asgi_process(tmp_path: Path, *, port: int | None = None, **env: str) -> Iterator[Process]:
    """asgi_server's process itself (`.url`), for tests that kill it."""
    port = port or free_port()
    args = [
        # The production launcher: uvicorn with the input backstops and proxy trust of
        # webreducer.asgiserver.
        sys.executable, "-m", "webreducer.asgiserver", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env.setdefault("SITE_ROOT", url)  # as for wsgi_server
    process = Process(args, child_env(**env), tmp_path / f"uvicorn-{port}.log")
    process.url = url
    try:
        wait_for(lambda: _answers(url), 60, "uvicorn to start")
        yield process
    finally:
        process.stop()


def worker_settle(timeout: float = 30) -> None:
    """Wait until the test Celery worker has nothing queued, unacknowledged or about to be
    queued (wake-up flags): a reduce transaction still running while the test database is
    flushed can deadlock with the TRUNCATE."""
    from webreducer.redis import get_redis

    client = get_redis()
    assert client is not None
    deadline = time.monotonic() + timeout
    while client.llen("celery") or client.hlen("unacked") or any(client.scan_iter("wr:wake:*")):
        assert time.monotonic() < deadline, "the Celery worker did not settle"
        time.sleep(0.1)
    time.sleep(0.3)


def two_origins(port: int) -> dict[str, str]:
    """`make run`'s arrangement on one port: the app on localhost, the write and read URLs on
    127.0.0.1 (webreducer/origins.py): a client must use each key's own URL."""
    return {"SITE_ROOT": f"http://localhost:{port}", "WR_PUBLIC_ORIGIN": f"http://127.0.0.1:{port}"}


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/read/none", timeout=1)
        return True
    except httpx.HTTPError:
        return False
