"""`make run`: migrate, then serve the whole product from one command.

Embedded default (no REDIS_URL): one ASGI process serves HTTP and websockets, tasks run in
process. With REDIS_URL: the ASGI server, a Celery worker and Celery beat, stopped together.

Two origins on one port unless SITE_ROOT or WR_PUBLIC_ORIGIN is set: the app on
http://localhost:PORT, the write and read URLs on http://127.0.0.1:PORT. Different host names,
so the app's host-only cookies never reach users' content (docs/security.md).

It says where it serves only once the server answers there; a port already in use, or a server
that stops on its own, is an error that exits non-zero (docs/configuration.md, HOST and PORT).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from webreducer.origins import WILDCARD_HOSTS, local_origins, local_port

CONSOLE_EMAIL = "django.core.mail.backends.console.EmailBackend"


class Command(BaseCommand):
    help = "Migrate and serve WebReducer (web, and with REDIS_URL a worker and beat too)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=local_port())
        parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")

    def handle(self, *args: Any, host: str, port: int, workers: int, **options: Any) -> None:
        _check_port_free(host, port)
        call_command("migrate", interactive=False, verbosity=0)
        origins = local_origins(port, host)
        # The children read their settings from the environment.
        os.environ.update(origins)
        python = sys.executable
        # uvicorn with the input backstops and proxy trust the settings ask for.
        web = [python, "-m", "webreducer.asgiserver", "--host", host, "--port", str(port)]
        processes = []
        # A process manager's SIGTERM (or a closed terminal's SIGHUP) stops the children too:
        # by default Python would die at once and leave them running.
        for stop in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, _exit)
        app = origins.get("SITE_ROOT", settings.SITE_ROOT)
        public = origins.get("WR_PUBLIC_ORIGIN", settings.WR_PUBLIC_ORIGIN or app)
        try:
            server = subprocess.Popen(web)
            processes.append(server)
            _wait_until_served(server, host, port)
            if settings.REDIS_URL:
                celery = [python, "-m", "celery", "-A", "webreducer"]
                processes.append(
                    subprocess.Popen([*celery, "worker", "-c", str(workers), "-l", "info"])
                )
                beat = str(settings.BASE_DIR / "var" / "beat")
                processes.append(subprocess.Popen([*celery, "beat", "-l", "info", "-s", beat]))
            self.stdout.write(f"WebReducer on {host}:{port}  (Ctrl-C stops it)")
            self.stdout.write(f"  app:            {app}/")
            self.stdout.write(f"  write and read: {public}/write/…, {public}/read/…")
            if settings.EMAIL_BACKEND == CONSOLE_EMAIL:
                self.stdout.write(
                    "  sign-in links:   printed below, in this terminal (no email is sent)"
                )
            self.stdout.flush()
            code = server.wait()
            if code != 0:
                raise CommandError(f"The web server stopped with exit status {code} (see above).")
        except KeyboardInterrupt:
            pass
        finally:
            for stop in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(stop, signal.SIG_IGN)  # a second signal must not cut this short
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


def _check_port_free(host: str, port: int) -> None:
    """CommandError, naming the variable that picks another, when something listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: SO_REUSEADDR lets a port in TIME_WAIT be taken, not a listening one.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"Port {port} on {host} is in use (another `make run`?). "
                    f"Stop it, or pick another port: PORT={port + 1} make run"
                ) from None
            raise CommandError(f"Cannot serve on {host}:{port}: {error.strerror}.") from None


def _wait_until_served(server: subprocess.Popen[bytes], host: str, port: int) -> None:
    """Until the server accepts connections; CommandError if it stops first (it says why)."""
    target = "127.0.0.1" if host in WILDCARD_HOSTS else host.strip("[]")
    while True:
        code = server.poll()
        if code is not None:
            raise CommandError(
                f"The web server did not start on {host}:{port} (exit status {code}, "
                f"its error is above). PORT and HOST choose where it serves."
            )
        try:
            socket.create_connection((target, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through handle()'s finally, which stops the children
