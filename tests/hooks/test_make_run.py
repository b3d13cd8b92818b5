"""`make run` as a newcomer meets it (issue 17): the port they chose in every URL shown, a busy
port refused out loud, Ctrl-C that stops at once with a live client connected, a quiet log,
and a runtime-only install."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, wait_for
from webreducer.origins import local_origins

ROOT = Path(__file__).resolve().parents[2]
COUNTER = "def reducer(state, request, secrets):\n    return (state or 0) + 1\n"


def run_env(tmp_path: Path, port: int) -> dict[str, str]:
    """A fresh clone's environment: nothing configured but the port (and a private SQLite)."""
    unset = ("DATABASE_URL", "REDIS_URL", "SITE_ROOT", "WR_PUBLIC_ORIGIN", "ALLOWED_HOSTS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PORT=str(port), PYTHONUNBUFFERED="1"
    )
    return env


@dataclass
class Run:
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Run]:
    port = free_port()
    env = run_env(tmp_path, port)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runstack"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    run = Run(port=port, env=env, process=process, log=log)
    try:
        wait_for(lambda: "WebReducer on" in run.output(), timeout=60, what="make run to serve")
        yield run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_every_url_it_shows_names_the_port_it_serves(make_run: Run) -> None:
    app, public = f"http://localhost:{make_run.port}", f"http://127.0.0.1:{make_run.port}"
    code = Path(make_run.log.parent / "counter.py")
    code.write_text(COUNTER)

    created = make_run.manage("createhook", str(code))
    token = make_run.manage("createtoken", "--email", "new@example.com")
    visitor = httpx.post(f"{app}/api/visitors/").json()
    hook = httpx.post(
        f"{app}/api/hooks/",
        json={"name": "scores", "code": COUNTER},
        headers={"Authorization": f"Bearer {visitor['token']}"},
    ).json()

    assert f"app:            {app}/" in make_run.output()
    assert f"write and read: {public}/write/" in make_run.output()
    assert created.returncode == 0, created.stderr
    assert f"write {public}/write/" in created.stdout
    assert token.returncode == 0, token.stderr
    assert {key["url"].rsplit("/", 2)[0] for key in hook["keys"]} == {public}
    write = next(key["url"] for key in hook["keys"] if key["kind"] == "write")
    assert httpx.post(write, json={}).status_code == 202


def test_it_refuses_a_busy_port_out_loud_and_says_which_variable_picks_another(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "manage.py", "runstack"],
            cwd=ROOT,
            env=run_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode != 0
    assert f"Port {port} on 127.0.0.1 is in use" in done.stderr
    assert f"PORT={port + 1} make run" in done.stderr
    assert "WebReducer on" not in done.stdout


def test_ctrl_c_with_a_live_client_connected_stops_everything_and_ends_the_stream(
    make_run: Run,
) -> None:
    hook = httpx.post(
        f"http://localhost:{make_run.port}/api/hooks/",
        json={"name": "live", "code": COUNTER},
        headers={
            "Authorization": f"Bearer {httpx.post(f'http://localhost:{make_run.port}/api/visitors/').json()['token']}"
        },
    ).json()
    read = next(key["url"] for key in hook["keys"] if key["kind"] == "read")
    ended = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", read + "/events", timeout=60) as stream:
                for _ in stream.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for(lambda: "/events HTTP/1.1" in make_run.output(), timeout=30, what="the stream")

    os.killpg(make_run.process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group

    # uvicorn waited for the stream to end, forever; now it cuts it after a grace period.
    assert make_run.process.wait(timeout=30) == 0
    assert ended.wait(timeout=10), "the stream was still open after make run stopped"
    with pytest.raises(httpx.TransportError):
        httpx.get(read, timeout=2)
    output = make_run.output()
    assert "Traceback" not in output, output
    assert "lifespan" not in output and "No hostname was supplied" not in output, output


def test_a_code_file_that_is_not_there_is_an_error_that_says_so(tmp_path: Path) -> None:
    env = run_env(tmp_path, free_port())
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    done = subprocess.run(
        [sys.executable, "manage.py", "createhook", "nonexistent.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "Cannot read the code file nonexistent.py: No such file or directory." in done.stderr
    assert "Traceback" not in done.stderr


def test_make_run_installs_the_runtime_only_and_make_test_the_dev_tools_too(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "fresh-venv"  # never created: `make -n` only prints what it would do

    def planned(target: str) -> str:
        return subprocess.run(
            ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True
        ).stdout

    run, test = planned("run"), planned("test")

    assert "-r requirements.txt" in run and "requirements-dev.txt" not in run
    assert "-r requirements.txt" in test and "-r requirements-dev.txt" in test


@pytest.mark.parametrize(
    ("host", "app", "public"),
    [
        ("127.0.0.1", "http://localhost:8123", "http://127.0.0.1:8123"),
        ("0.0.0.0", "http://localhost:8123", "http://127.0.0.1:8123"),
        ("192.0.2.7", "http://192.0.2.7:8123", "http://192.0.2.7:8123"),
    ],
)
def test_its_origins_follow_the_host_it_listens_on(
    monkeypatch: pytest.MonkeyPatch, host: str, app: str, public: str
) -> None:
    monkeypatch.delenv("SITE_ROOT", raising=False)
    monkeypatch.delenv("WR_PUBLIC_ORIGIN", raising=False)

    assert local_origins(8123, host) == {"SITE_ROOT": app, "WR_PUBLIC_ORIGIN": public}
