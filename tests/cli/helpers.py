"""Running `wr` in tests: the console script as a user would, in a folder, with a HOME of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hooks.models import Hook, Key, State

WR = str(Path(sys.executable).with_name("wr"))

# The responder checks a header against a secret, as a webhook signature check would.
SIGNED = """\
from webreducer import Response


def responder(request, secrets):
    if request.headers.get("X-Signature") != secrets["SIG"]:
        return Response({"error": "bad signature"}, status=401)
    return Response({"ok": True}, status=201)


def reducer(state, request, secrets):
    return (state or 0) + 1
"""


class Wr:
    """Runs `wr` in `folder` as a user whose HOME is `home`."""

    def __init__(self, base: str, token: str | None, home: Path, folder: Path) -> None:
        self.folder = folder
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("WR_", "XDG_", "DJANGO_"))
        }
        self.env.update(HOME=str(home), WR_URL=base, COLUMNS="200", TERM="dumb")
        if token:
            self.env["WR_TOKEN"] = token

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WR, *args],
            cwd=self.folder,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self(*args, input=input)
        assert result.returncode == 0, f"wr {' '.join(args)}: {result.stdout}\n{result.stderr}"
        return result


def linked(folder: Path, hook: Hook) -> None:
    (folder / "webreducer.toml").write_text(
        f'hook = "{hook.pk}"\ncode = "hook.py"\ntests = "tests.json"\n'
    )


def post(base: str, hook: Hook, body: Any, **headers: str) -> httpx.Response:
    token = hook.keys.get(kind=Key.Kind.WRITE).token
    return httpx.post(f"{base}/write/{token}", json=body, headers=headers, timeout=30)


def applied_seq(hook: Hook) -> int:
    state = State.objects.filter(hook=hook, version=Hook.objects.get(pk=hook.pk).live_version)
    return state.values_list("seq", flat=True).first() or 0


@dataclass
class Follower:
    """`wr logs --follow` running in `folder`, its output lines collected as they come."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self) -> str:
        """Stop it; return what it wrote on stderr."""
        self.process.terminate()
        _, stderr = self.process.communicate(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)
        return stderr


def follow(wr: Wr) -> Follower:
    process = subprocess.Popen(
        [WR, "logs", "--follow", "-n", "0"],
        cwd=wr.folder,
        env=wr.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    follower = Follower(process)
    stdout = process.stdout
    assert stdout is not None
    follower.reader = threading.Thread(
        target=lambda: follower.lines.extend(iter(stdout.readline, ""))
    )
    follower.reader.start()
    return follower
