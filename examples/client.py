"""The few lines of HTTP the example drivers share (standard library only, so a driver runs
with any Python 3)."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def send(
    url: str,
    body: bytes | str | dict[str, Any],
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, Any]:
    """Send one request; return (status, parsed JSON body or text)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _parse(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _parse(error.read())


def read(url: str) -> tuple[Any, int]:
    """GET the read URL; return (body, seq)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return _parse(response.read()), int(response.headers["X-WebReducer-Seq"])


def wait_for_seq(read_url: str, seq: int, timeout: float = 60) -> Any:
    """Poll the read URL until the state has applied `seq` requests; return its body."""
    deadline = time.monotonic() + timeout
    while True:
        body, applied = read(read_url)
        if applied >= seq or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def usage(doc: str) -> None:
    if len(sys.argv) < 3:
        sys.exit(doc)
