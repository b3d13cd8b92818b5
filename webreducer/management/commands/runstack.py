"""`make run`: migrate, then serve the whole product from one command.

Embedded default (no REDIS_URL): one ASGI process serves HTTP and websockets, tasks run in
process. With REDIS_URL: the ASGI server, a Celery worker and Celery beat, stopped together.

Two origins on one port unless SITE_ROOT or WR_PUBLIC_ORIGIN is set: the app on
http://localhost:PORT, the write and read URLs on http://127.0.0.1:PORT. Different host names,
so the app's host-only cookies never reach users' content (docs/security.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from webreducer.origins import local_origins


class Command(BaseCommand):
    help = "Migrate and serve WebReducer (web, and with REDIS_URL a worker and beat too)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")

    def handle(self, *args: Any, host: str, port: int, workers: int, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        origins = local_origins(port)
        # The children read their settings from the environment.
        os.environ.update(origins)
        python = sys.executable
        # uvicorn with the input backstops and proxy trust the settings ask for.
        web = [python, "-m", "webreducer.asgiserver", "--host", host, "--port", str(port)]
        processes = []
        if settings.REDIS_URL:
            celery = [python, "-m", "celery", "-A", "webreducer"]
            processes.append(
                subprocess.Popen([*celery, "worker", "-c", str(workers), "-l", "info"])
            )
            processes.append(
                subprocess.Popen(
                    [*celery, "beat", "-l", "info", "-s", str(settings.BASE_DIR / "var" / "beat")]
                )
            )
        # A process manager's SIGTERM (or a closed terminal's SIGHUP) stops the children too:
        # by default Python would die at once and leave them running.
        for stop in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, _exit)
        app = origins.get("SITE_ROOT", settings.SITE_ROOT)
        public = origins.get("WR_PUBLIC_ORIGIN", settings.WR_PUBLIC_ORIGIN or app)
        self.stdout.write(f"WebReducer on {host}:{port}  (Ctrl-C stops it)")
        self.stdout.write(f"  app:            {app}/")
        self.stdout.write(f"  write and read: {public}/write/…, {public}/read/…")
        server = subprocess.Popen(web)
        processes.append(server)
        try:
            server.wait()
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


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through handle()'s finally, which stops the children
