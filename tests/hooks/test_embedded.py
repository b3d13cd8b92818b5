"""The embedded default (`make run` without DATABASE_URL/REDIS_URL): SQLite, tasks in process.
The pipeline has a portable path for it; this runs it for real in a child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.servers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json
import django

django.setup()
from django.core.management import call_command
from django.test.utils import setup_test_environment

setup_test_environment()  # as Django's test runner does: the test client's host is allowed

call_command("migrate", verbosity=0)

from django.test import Client

from accounts.models import User
from hooks.models import Key, Request
from hooks.services import hook_create

CODE = """
def reducer(state, request, secrets):
    if request.body.get("fail"):
        raise ValueError("no")
    print("adding", request.body["n"])
    return (state or 0) + request.body["n"]
"""
hook = hook_create(owner=User.objects.create_user(username="local"), name="embedded", code=CODE)
write = Key.objects.get(hook=hook, kind="write").token
read = Key.objects.get(hook=hook, kind="read").token
client = Client()
for body, key in [({"n": 1}, "a"), ({"n": 2}, "a"), ({"fail": True}, None), ({"n": 4}, None)]:
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post(f"/write/{write}", body, content_type="application/json", headers=headers)
    assert response.status_code == 202, response.content
rows = Request.objects.filter(hook=hook).order_by("id")
print(json.dumps({
    "state": client.get(f"/read/{read}").json(),
    "rows": [[r.seq, r.outcome, r.console, r.state_after] for r in rows],
}))
'''


def test_the_embedded_default_applies_writes_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="webreducer.settings",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == 5
    assert result["rows"] == [
        [1, "applied", "adding 1\n", "1"],
        [2, "duplicate", "", "1"],
        [3, "failed", "", "1"],
        [4, "applied", "adding 4\n", "5"],
    ]


def test_run_stops_its_server_when_it_is_terminated(tmp_path: Path) -> None:
    """`make run` under a process manager: SIGTERM to it must not leave the server behind."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PYTHONUNBUFFERED="1")
    port = free_port()
    run = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server_pids: list[int] = []
    try:
        wait_for(lambda: _answers(port), timeout=60, what="make run to serve")
        server_pids += _children(run.pid)
        assert server_pids, "runstack started no server process"

        run.send_signal(signal.SIGTERM)

        assert run.wait(timeout=30) == 128 + signal.SIGTERM
        wait_for(
            lambda: not any(_alive(pid) for pid in server_pids),
            timeout=15,
            what="the server to stop",
        )
        assert not _answers(port)
    finally:
        for pid in [run.pid, *server_pids]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        run.wait()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/read/none", timeout=1).status_code == 404
    except httpx.TransportError:
        return False


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
