"""Realtime benchmark (issue 6). Run: `.venv/bin/python bench/realtime_bench.py` (needs PostgreSQL
and Redis; uses the database `webreducer_rtbench` and Redis db 6).

1. Write-to-delivery latency (p50/p99) with 1, 100 and 1,000 WebSocket subscribers on one hook
   at a steady write rate: each write carries its send time, the hook's reducer keeps the last
   few (seq, time) pairs in the state, and every subscriber computes, for every write its
   message covers, receive time - send time. So a write coalesced into a later message counts
   with its real (longer) delay, never drops out.
2. The most idle subscribers one uvicorn process holds (then one write, and how many of them
   received it).

The subscribers run on uvloop in this process (as uvicorn does), to leave as much CPU as possible
to the server. The stack is the production one: writes to gunicorn (sync, -w 2), subscribers on one uvicorn
process, one Celery worker (-c 2), PostgreSQL and Redis (the channel layer), all on this
machine with the load generator sharing its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
DB = "webreducer_rtbench"
ENV = {
    **os.environ,
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/6",
    "DEBUG": "false",
    "SECRET_KEY": "bench-secret-key-not-for-production",
    "WR_SECRETS_KEYS": "YmVuY2gtb25seS1rZXktYmVuY2gtb25seS1rZXktISE=",
    "ALLOWED_HOSTS": "*",
    "WR_RATE_PER_SECOND": "1000000",
    "WR_RATE_BURST": "1000000",
    "WR_LIVE_MAX_PER_KEY": "1000000",
    "WR_LIVE_MAX_PER_IP": "1000000",
    "LOG_LEVEL": "WARNING",
    "DJANGO_SETTINGS_MODULE": "webreducer.settings",
}
PY = sys.executable
# Browsers offer permessage-deflate and uvicorn accepts it unless started with
# --ws-per-message-deflate false; --deflate measures that (compression per message per socket).
COMPRESSION: str | None = None
CODE = """
def reducer(state, request, secrets):
    state = state or {"count": 0, "recent": []}
    state["count"] += 1
    state["recent"] = (state["recent"] + [[request.seq, request.body["t"]]])[-16:]
    return state
"""


def sh(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=ENV, text=True, capture_output=True, check=check)


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=ENV, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def open_many(
    url: str, count: int, batch: int = 200
) -> tuple[list[ClientConnection], list[int]]:
    sockets: list[ClientConnection] = []
    while len(sockets) < count:
        size = min(batch, count - len(sockets))
        opened = await asyncio.gather(
            *(
                connect(
                    url, open_timeout=60, max_queue=None, ping_timeout=None, compression=COMPRESSION
                )
                for _ in range(size)
            ),
            return_exceptions=True,
        )
        failures = [o for o in opened if isinstance(o, BaseException)]
        sockets += [o for o in opened if not isinstance(o, BaseException)]
        if failures:
            print(f"  stopped opening at {len(sockets)}: {failures[0]!r}")
            break
    # The first message of each is the state at connect.
    first = await asyncio.gather(*(ws.recv() for ws in sockets))
    return sockets, [json.loads(raw)["seq"] for raw in first]


def write_steadily(url: str, rate: float, seconds: float) -> int:
    sent = 0
    with httpx.Client(timeout=30) as client:
        next_at = time.monotonic()
        stop = next_at + seconds
        while next_at < stop:
            response = client.post(url, json={"t": time.time()})
            assert response.status_code == 202, response.text
            sent += 1
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
    return sent


async def latency_run(
    ws_url: str, write_url: str, subscribers: int, rate: float, seconds: float, server_pid: int
) -> dict[str, Any]:
    sockets, last_seqs = await open_many(ws_url, subscribers)
    samples: list[float] = []

    async def reader(ws: ClientConnection, index: int) -> None:
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            seq = message["seq"]
            for write_seq, sent_at in (message["body"] or {}).get("recent", []):
                if last_seqs[index] < write_seq <= seq:
                    samples.append((now - sent_at) * 1000)
            last_seqs[index] = seq

    readers = [asyncio.create_task(reader(ws, i)) for i, ws in enumerate(sockets)]
    server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
    sent = await asyncio.to_thread(write_steadily, write_url, rate, seconds)
    await asyncio.sleep(3)
    server_cpu, client_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - client_cpu
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "subscribers": len(sockets),
        "writes": sent,
        "samples": len(samples),
        "expected": sent * len(sockets),
        "p50": statistics.median(samples) if samples else float("nan"),
        "p99": percentile(samples, 0.99) if samples else float("nan"),
        "max": max(samples) if samples else float("nan"),
        "ended_on": (min(last_seqs), max(last_seqs)),
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


async def idle_run(ws_url: str, write_url: str, target: int, server_pid: int) -> dict[str, Any]:
    before = rss_mb(server_pid)
    started = time.monotonic()
    sockets, _ = await open_many(ws_url, target)
    opened_in = time.monotonic() - started
    after = rss_mb(server_pid)
    await asyncio.sleep(5)
    received = 0

    async def one(ws: ClientConnection) -> None:
        nonlocal received
        await ws.recv()
        received += 1

    waiters = [asyncio.create_task(one(ws)) for ws in sockets]
    written = time.monotonic()
    httpx.post(write_url, json={"t": time.time()}, timeout=30)
    await asyncio.wait(waiters, timeout=60)
    all_in = time.monotonic() - written
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "held": len(sockets),
        "opened_in": opened_in,
        "rss_before": before,
        "rss_after": after,
        "received": received,
        "fanout_seconds": all_in,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20, help="steady writes/s")
    parser.add_argument("--seconds", type=float, default=15, help="length of each latency run")
    parser.add_argument("--subscribers", default="1,100,1000")
    parser.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate")
    parser.add_argument(
        "--idle",
        type=int,
        default=0,
        help="idle subscribers to open (0: as many as file descriptors allow)",
    )
    options = parser.parse_args()
    global COMPRESSION
    COMPRESSION = "deflate" if options.deflate else None

    # Every connection is a file descriptor, in the server and in this client.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle_target = options.idle or hard - 500

    sh("dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB)
    sh("createdb", "-h", "127.0.0.1", "-U", "postgres", DB, check=True)
    sh(PY, "manage.py", "migrate", "-v0", check=True)
    sh("redis-cli", "-n", "6", "flushdb")
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from accounts.models import User
    from hooks.models import Key
    from hooks.services import hook_create

    hook = hook_create(owner=User.objects.create_user(username="bench"), name="latency", code=CODE)
    read = Key.objects.get(hook=hook, kind="read").token
    write = Key.objects.get(hook=hook, kind="write").token

    logs = Path(tempfile.mkdtemp(prefix="wr-rtbench-"))
    http_port, ws_port = 8766, 8767
    processes = [
        start(
            [
                PY,
                "-m",
                "gunicorn",
                "webreducer.wsgi:application",
                "-b",
                f"127.0.0.1:{http_port}",
                "-w",
                "2",
            ],
            logs / "gunicorn.log",
        ),
        start(
            [
                PY,
                "-m",
                "uvicorn",
                "webreducer.asgi:application",
                "--port",
                str(ws_port),
                "--log-level",
                "warning",
            ],
            logs / "uvicorn.log",
        ),
        start(
            [PY, "-m", "celery", "-A", "webreducer", "worker", "-c", "2", "-l", "warning"],
            logs / "worker.log",
        ),
    ]
    server = processes[1]
    write_url = f"http://127.0.0.1:{http_port}/write/{write}"
    ws_url = f"ws://127.0.0.1:{ws_port}/read/{read}/live"
    try:
        wait_http(f"http://127.0.0.1:{http_port}/read/x")
        wait_http(f"http://127.0.0.1:{ws_port}/read/x")
        time.sleep(3)  # the worker
        httpx.post(write_url, json={"t": time.time()})  # warm the sandbox and the connections
        time.sleep(2)

        print(
            f"Write-to-delivery latency, {options.rate:g} writes/s for {options.seconds:g}s, one hook, one uvicorn process"
        )
        print(
            f"{'subscribers':>12}{'writes':>8}{'deliveries':>18}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
            f"{'srv us/d':>10}{'srv CPU':>10}{'bench CPU':>10}  last seq (min..max)"
        )
        for count in (int(n) for n in options.subscribers.split(",")):
            result = asyncio.run(
                latency_run(ws_url, write_url, count, options.rate, options.seconds, server.pid)
            )
            deliveries = f"{result['samples']}/{result['expected']}"
            per_delivery = result["server_cpu"] / max(1, result["samples"]) * 1e6
            print(
                f"{result['subscribers']:>12}{result['writes']:>8}{deliveries:>18}{result['p50']:>10.1f}"
                f"{result['p99']:>10.1f}{result['max']:>10.1f}{per_delivery:>10.0f}"
                f"{result['server_cpu'] / (options.seconds + 3):>10.0%}{result['client_cpu'] / (options.seconds + 3):>10.0%}"
                f"  {result['ended_on'][0]}..{result['ended_on'][1]}"
            )

        print(
            f"\nIdle subscribers on one uvicorn process (target {idle_target}, file descriptor limit {hard})"
        )
        result = uvloop.run(idle_run(ws_url, write_url, idle_target, server.pid))
        per_conn = (result["rss_after"] - result["rss_before"]) * 1024 / max(1, result["held"])
        print(
            f"  held {result['held']} (opened in {result['opened_in']:.0f}s); server RSS "
            f"{result['rss_before']:.0f} -> {result['rss_after']:.0f} MB (~{per_conn:.0f} KB per connection)"
        )
        print(
            f"  one write then reached {result['received']}/{result['held']} of them in {result['fanout_seconds']:.1f}s"
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    print(f"\nlogs in {logs}")


if __name__ == "__main__":
    main()
