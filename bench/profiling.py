"""Where a request's CPU goes under load: per process kind (/proc), and inside the web server
(py-spy samples folded into the write path's cost categories; docs/performance.md, "Write path").

py-spy is pinned in requirements-dev.txt; without it `sampled()` reports nothing and says so.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

# Leaf upwards, the first frame that matches names the sample's cost (so the INSERT inside the
# write view is the INSERT's). (category, function name, part of the file's path).
CATEGORIES = [
    ("sandbox call (responder)", "_respond", "hooks/writes.py"),
    ("INSERT (raw SQL)", "_insert", "hooks/writes.py"),
    ("ORM INSERT (bare view)", "create", "django/db/models/query.py"),
    ("rate limit", "take", "hooks/ratelimit.py"),
    ("wake-up", "wake", "hooks/wakeup.py"),
    ("wake-up", "_flush", "hooks/wakeup.py"),
    ("owners' feed", "requests_logged", "hooks/broadcast.py"),
    ("key lookup", "key_resolve", "hooks/public_calls.py"),
    ("pool: connection out (and its check)", "getconn", "psycopg_pool/"),
    ("pool: connection back", "putconn", "psycopg_pool/"),
    ("body checks", "body_check", "hooks/writes.py"),
    ("body checks", "cloudevent_check", "hooks/writes.py"),
    ("write view, the rest", "write", "hooks/views/public.py"),
    ("bare view, the rest", "bare_insert", "bench/views.py"),
    ("render (headers, JSON)", "render", "hooks/responses.py"),
    ("Django middleware", "__call__", "django/utils/deprecation.py"),
    ("Django handler (request, URL, signals)", "get_response", "django/core/handlers/base.py"),
    ("Django handler (request, URL, signals)", "__call__", "django/core/handlers/wsgi.py"),
    ("input limits (webreducer/inputs)", "__call__", "webreducer/inputs/"),
]


def _frame_parts(frame: str) -> tuple[str, str]:
    name, _, where = frame.partition(" (")
    return name.strip(), where


def category(stack: list[str]) -> str:
    for frame in reversed(stack):
        name, where = _frame_parts(frame)
        for label, function, path in CATEGORIES:
            if (name == function or name.endswith("." + function)) and path in where:
                return label
    return "server (HTTP parsing, sockets, the rest)"


def cpu_seconds(root_pids: list[int], database: str) -> dict[str, float]:
    """CPU seconds used so far by: the processes under `root_pids` (the web server; sandbox
    children apart), PostgreSQL backends of `database`, Redis, and this process's children
    that have ended (wrk)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / TICKS
        names[pid] = cmdline
    totals: Counter[str] = Counter()
    for pid, seconds in times.items():
        name = names[pid]
        ancestor, under_root = pid, False
        while ancestor > 1:
            if ancestor in root_pids:
                under_root = True
                break
            ancestor = parents.get(ancestor, 1)
        if under_root:
            totals["sandbox" if "wr_forkserver" in name else "web"] += seconds
        elif name.startswith("postgres:") and f" {database} " in name:
            totals["postgres"] += seconds
        elif name.startswith("redis-server"):
            totals["redis"] += seconds
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    totals["wrk"] = children.ru_utime + children.ru_stime
    return dict(totals)


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def sampled(pid: int, seconds: int) -> Iterator[Counter[str]]:
    """py-spy on `pid` and its subprocesses while the block runs (at most `seconds`); the
    Counter is filled, on the way out, with samples per cost category."""
    found: Counter[str] = Counter()
    binary = py_spy()
    if binary is None:
        print("  (py-spy not installed: no profile; pip install -r requirements-dev.txt)")
        yield found
        return
    out = Path(tempfile.mkdtemp(prefix="wr-py-spy-")) / "samples.txt"
    args = ["record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "200"]
    spy = subprocess.Popen(
        [binary, *args, "--duration", str(seconds), "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield found
    finally:
        try:
            spy.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    if out.exists():
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                found[category(stack.split(";"))] += int(count)


def shares(samples: Counter[str]) -> list[tuple[str, float]]:
    total = sum(samples.values()) or 1
    return [(label, count / total) for label, count in samples.most_common()]
