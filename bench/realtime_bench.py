"""Realtime benchmark (issue 6). Run: `.venv/bin/python bench/realtime_bench.py` (needs PostgreSQL
and Redis; uses the database `webreducer_rtbench` and Redis db 6).

1. Write-to-delivery latency (p50/p99) with 1, 100 and 1,000 WebSocket subscribers on one hook
   at a steady write rate: each write carries its send time, the hook's reducer keeps the last
   few (seq, time) pairs in the state, and every subscriber computes, for every write its
   message covers, receive time - send time. So a write coalesced into a later message counts
   with its real (longer) delay, never drops out.
2. How many idle subscribers one uvicorn process holds (`--idle N`, 50,000 by default; then one
   write, and how many of them received it, how soon) and its memory per connection. The
   clients spread over loopback source addresses (127.1.x.y), so the ephemeral port range does
   not cap the count; the bench raises the file descriptor limit to fit where it may (root with
   CAP_SYS_RESOURCE), otherwise the hard limit caps the count and the bench says so.

The subscribers run in child processes (--clients, 2 by default), lean WebSocket readers on
uvloop (LeanSubscriber below), so that the load generator costs less CPU than the server it
measures. The stack is the production one: writes to gunicorn (sync, -w 2), subscribers on one
uvicorn process, one Celery worker (-c 2), PostgreSQL and Redis (the channel layer), all on this
machine with the load generator sharing its cores. Besides write-to-delivery latency it reports
the live path alone (from the log's applied_at) and the uvicorn process's CPU per delivery
(/proc/<pid>/stat). `--root DIR` runs the servers from another checkout (A/B runs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import common  # noqa: E402

DB = "webreducer_rtbench"
ENV = {
    **os.environ,
    **common.ENV,
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/6",
    "WR_BENCH_VIEWS": "false",
    "WR_LIVE_MAX_PER_KEY": "1000000",
    "WR_LIVE_MAX_PER_IP": "1000000",
}
PY = sys.executable
# Browsers offer permessage-deflate and uvicorn accepts it unless started with
# --ws-per-message-deflate false; --deflate makes the subscribers offer it too (the server then
# compresses every message for every socket).
DEFLATE = False
CODE = """
def reducer(state, request, secrets):
    state = state or {"count": 0, "recent": []}
    state["count"] += 1
    state["recent"] = (state["recent"] + [[request.seq, request.body["t"]]])[-16:]
    return state
"""


def sh(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=ENV, text=True, capture_output=True, check=check)


def start(args: list[str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, env=ENV, stdout=log.open("wb"), stderr=subprocess.STDOUT)


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


# -- The load generator: subscriber processes ---------------------------------------------------
#
# Subscribers run in CLIENTS child processes (`realtime_bench.py --client URL COUNT`) on uvloop,
# each a bare asyncio.Protocol speaking just enough WebSocket (RFC 6455) to read text frames and
# answer pings: no per-message task, no JSON parse per message (the seq is sliced out of the
# frame, each distinct frame's body is parsed once), one clock read per socket read. That keeps
# the clients' CPU well below the server's, so the figures are the server's.
# A child opens its sockets, prints {"opened": n}, then records from a "go" line on stdin to a
# "stop" line, and prints its results as one JSON line.


PER_SOURCE = 20_000


class LeanSubscriber(asyncio.Protocol):
    bodies: dict[int, bytes] = {}  # seq -> one frame with that seq (the same for all)

    def __init__(self, host: str, path: str):
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if DEFLATE else "")
            + "\r\n"
        ).encode()
        self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self.buffer = bytearray()
        self.upgraded = False
        self.first: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.received: list[tuple[int, float]] = []  # (seq, time read) after the first
        self.recording = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError("closed before the first state"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in buffer[: buffer.find(b"\r\n")]:
                self.first.set_exception(ConnectionError(bytes(buffer[:end]).decode()))
                return
            del buffer[: end + 4]
            self.upgraded = True
        while len(buffer) >= 2:
            compressed, opcode = buffer[0] & 0x40, buffer[0] & 0x0F
            length, offset = buffer[1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            if compressed:
                payload = self.inflate.decompress(payload + b"\0\0\xff\xff")
            if opcode == 1:
                start = payload.index(b'"seq":') + 6
                seq = int(payload[start : payload.index(b",", start)])
                if not self.first.done():
                    self.first.set_result(seq)
                elif self.recording:
                    self.received.append((seq, now))
                    if seq not in self.bodies:
                        self.bodies[seq] = payload
            elif opcode == 9 and self.transport is not None:  # ping: pong, masked (zero mask)
                self.transport.write(bytes([0x8A, 0x80 | length]) + b"\0\0\0\0" + payload)


async def client_main(url: str, count: int, index: int) -> None:
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    loop = asyncio.get_running_loop()
    subscribers: list[LeanSubscriber] = []
    batch = 200
    while len(subscribers) < count:
        size = min(batch, count - len(subscribers))
        opened = await asyncio.gather(
            *(
                loop.create_connection(
                    lambda: LeanSubscriber(f"{host}:{port}", path),
                    host,
                    port,
                    # One loopback source address per PER_SOURCE sockets: a source address has
                    # only ~28,000 ephemeral ports towards one server port.
                    local_addr=(f"127.1.{index}.{1 + len(subscribers) // PER_SOURCE}", 0),
                )
                for _ in range(size)
            ),
            return_exceptions=True,
        )
        made = [protocol for o in opened if not isinstance(o, BaseException) for protocol in [o[1]]]
        firsts = await asyncio.gather(*(p.first for p in made), return_exceptions=True)
        subscribers += [p for p, f in zip(made, firsts, strict=True) if isinstance(f, int)]
        failures = [o for o in [*opened, *firsts] if isinstance(o, BaseException)]
        if failures:
            print(f"  stopped opening at {len(subscribers)}: {failures[0]!r}", file=sys.stderr)
            break
    print(json.dumps({"opened": len(subscribers)}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()  # go
    for subscriber in subscribers:
        subscriber.recording = True
    cpu = time.process_time()
    await reader.readline()  # stop
    cpu = time.process_time() - cpu
    # Every write's send time, from the "recent" list of the frames that covered it.
    sent_at: dict[int, float] = {}
    for payload in LeanSubscriber.bodies.values():
        for write_seq, at in (json.loads(payload)["body"] or {}).get("recent", []):
            sent_at[write_seq] = at
    samples: list[float] = []
    write_seqs: list[int] = []
    last_seqs: list[int] = []
    received_any = 0
    last_at = 0.0
    for subscriber in subscribers:
        last = subscriber.first.result()
        received_any += bool(subscriber.received)
        for seq, now in subscriber.received:
            for write_seq in range(last + 1, seq + 1):
                if write_seq in sent_at:
                    samples.append((now - sent_at[write_seq]) * 1000)
                    write_seqs.append(write_seq)
            last = max(last, seq)
            last_at = max(last_at, now)
        last_seqs.append(last)
    print(
        json.dumps(
            {
                "samples": samples,
                "write_seqs": write_seqs,
                "sent_at": sent_at,
                "last_seqs": last_seqs,
                "received_any": received_any,
                "last_at": last_at,
                "cpu": cpu,
            }
        ),
        flush=True,
    )
    for subscriber in subscribers:
        if subscriber.transport is not None:
            subscriber.transport.close()


class Clients:
    """COUNT subscribers spread over `processes` child processes."""

    def __init__(self, url: str, count: int, processes: int):
        shares = [count // processes + (i < count % processes) for i in range(processes)]
        self.children = [
            subprocess.Popen(
                [
                    *(PY, __file__, "--client", url, str(share)),
                    *("deflate" if DEFLATE else "plain", str(index)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index, share in enumerate(shares)
            if share
        ]
        self.opened = 0
        for child in self.children:
            assert child.stdout is not None
            line = child.stdout.readline()
            self.opened += json.loads(line)["opened"] if line else 0

    def tell(self, line: str) -> None:
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write(line + "\n")
            child.stdin.flush()

    def results(self) -> dict[str, Any]:
        self.tell("stop")
        merged: dict[str, Any] = {
            "samples": [],
            "write_seqs": [],
            "sent_at": {},
            "last_seqs": [],
            "received_any": 0,
            "last_at": 0.0,
            "cpu": 0.0,
        }
        for child in self.children:
            assert child.stdout is not None
            result = json.loads(child.stdout.readline())
            merged["samples"] += result["samples"]
            merged["write_seqs"] += result["write_seqs"]
            merged["sent_at"].update({int(k): v for k, v in result["sent_at"].items()})
            merged["last_seqs"] += result["last_seqs"]
            merged["received_any"] += result["received_any"]
            merged["last_at"] = max(merged["last_at"], result["last_at"])
            merged["cpu"] += result["cpu"]
        for child in self.children:
            child.wait(timeout=60)
        return merged


def latency_run(
    ws_url: str,
    write_url: str,
    subscribers: int,
    rate: float,
    seconds: float,
    server_pid: int,
    processes: int,
    applied_at: Callable[[], dict[int, float]],
) -> dict[str, Any]:
    clients = Clients(ws_url, subscribers, processes)
    time.sleep(1)
    clients.tell("go")
    server_cpu = cpu_seconds(server_pid)
    sent = write_steadily(write_url, rate, seconds)
    time.sleep(3)
    server_cpu = cpu_seconds(server_pid) - server_cpu
    result = clients.results()
    samples = result["samples"]
    # The same deliveries counted from the moment the worker applied the write (the log's
    # applied_at): the live path alone (broadcast, hub read, fan-out, client read), without the
    # write's own path through gunicorn, the queue and the fold.
    applied = applied_at()
    sent_at = result["sent_at"]
    fanout = [
        sample - (applied[seq] - sent_at[seq]) * 1000
        for sample, seq in zip(samples, result["write_seqs"], strict=True)
        if seq in applied
    ]
    return {
        "fanout_p50": statistics.median(fanout) if fanout else float("nan"),
        "fanout_p99": percentile(fanout, 0.99) if fanout else float("nan"),
        "subscribers": clients.opened,
        "writes": sent,
        "samples": len(samples),
        "expected": sent * clients.opened,
        "p50": statistics.median(samples) if samples else float("nan"),
        "p99": percentile(samples, 0.99) if samples else float("nan"),
        "max": max(samples) if samples else float("nan"),
        "ended_on": (min(result["last_seqs"]), max(result["last_seqs"])),
        "server_cpu": server_cpu,
        "client_cpu": result["cpu"],
    }


def idle_run(
    ws_url: str, write_url: str, target: int, server_pid: int, processes: int
) -> dict[str, Any]:
    before = rss_mb(server_pid)
    started = time.monotonic()
    clients = Clients(ws_url, target, processes)
    opened_in = time.monotonic() - started
    after = rss_mb(server_pid)
    time.sleep(5)
    clients.tell("go")
    written = time.time()
    httpx.post(write_url, json={"t": written}, timeout=30)
    time.sleep(20)
    result = clients.results()
    return {
        "held": clients.opened,
        "opened_in": opened_in,
        "rss_before": before,
        "rss_after": after,
        "received": result["received_any"],
        "fanout_seconds": result["last_at"] - written,
    }


def main() -> None:
    global DEFLATE
    if sys.argv[1:2] == ["--client"]:  # a subscriber process (see Clients)
        DEFLATE = sys.argv[4:5] == ["deflate"]
        uvloop.run(client_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[5])))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20, help="steady writes/s")
    parser.add_argument("--seconds", type=float, default=15, help="length of each latency run")
    parser.add_argument("--subscribers", default="1,100,1000")
    parser.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate")
    parser.add_argument(
        "--idle",
        type=int,
        default=50_000,
        help="idle subscribers to open (-1: skip)",
    )
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes")
    parser.add_argument(
        "--ws", default="auto", help="uvicorn --ws implementation (auto, websockets-sansio, ...)"
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="run the servers from this checkout (A/B runs)"
    )
    options = parser.parse_args()
    DEFLATE = options.deflate

    # Every connection is a file descriptor, in the server and in the clients (who inherit this
    # limit). Root may raise the hard limit; anyone else gets what the hard limit allows.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(hard, options.idle + 1000)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        hard = wanted
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle_target = min(options.idle, hard - 500)

    sh("dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB)
    sh("createdb", "-h", "127.0.0.1", "-U", "postgres", DB, check=True)
    sh(PY, "manage.py", "migrate", "-v0", check=True)
    sh("redis-cli", "-n", "6", "flushdb")
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from accounts.models import User
    from hooks.models import Key, Request
    from hooks.services import hook_create

    hook = hook_create(owner=User.objects.create_user(username="bench"), name="latency", code=CODE)
    read = Key.objects.get(hook=hook, kind="read").token
    write = Key.objects.get(hook=hook, kind="write").token

    def applied_at() -> dict[int, float]:
        rows = Request.objects.filter(hook=hook, seq__isnull=False, applied_at__isnull=False)
        return {seq: at.timestamp() for seq, at in rows.values_list("seq", "applied_at")}

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
            options.root,
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
                "--ws",
                options.ws,
            ],
            logs / "uvicorn.log",
            options.root,
        ),
        start(
            [PY, "-m", "celery", "-A", "webreducer", "worker", "-c", "2", "-l", "warning"],
            logs / "worker.log",
            options.root,
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
            f"Write-to-delivery latency, {options.rate:g} writes/s for {options.seconds:g}s, one hook, "
            f"one uvicorn process (--ws {options.ws}{', permessage-deflate' if options.deflate else ''}), "
            f"subscribers in {options.clients} processes"
        )
        print(
            f"{'subscribers':>12}{'writes':>8}{'deliveries':>18}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
            f"{'live p50':>10}{'live p99':>10}"
            f"{'srv us/d':>10}{'srv CPU':>10}{'bench CPU':>10}  last seq (min..max)"
        )
        for count in (int(n) for n in options.subscribers.split(",") if n):
            result = latency_run(
                ws_url,
                write_url,
                count,
                options.rate,
                options.seconds,
                server.pid,
                options.clients,
                applied_at,
            )
            deliveries = f"{result['samples']}/{result['expected']}"
            per_delivery = result["server_cpu"] / max(1, result["samples"]) * 1e6
            print(
                f"{result['subscribers']:>12}{result['writes']:>8}{deliveries:>18}{result['p50']:>10.1f}"
                f"{result['p99']:>10.1f}{result['max']:>10.1f}"
                f"{result['fanout_p50']:>10.1f}{result['fanout_p99']:>10.1f}{per_delivery:>10.0f}"
                f"{result['server_cpu'] / (options.seconds + 3):>10.0%}{result['client_cpu'] / (options.seconds + 3):>10.0%}"
                f"  {result['ended_on'][0]}..{result['ended_on'][1]}"
            )
            if count == 1000:
                for q, limit in (("p50", 50), ("p99", 250)):
                    common.figure(f"1,000 subscribers: write-to-delivery {q}", result[q], "ms",
                                  target=f"< {limit} ms", met=result[q] < limit)  # fmt: skip
                common.figure("1,000 subscribers: deliveries", result["samples"],
                              f"of {result['expected']}", target=f"= {result['expected']}",
                              met=result["samples"] >= result["expected"])  # fmt: skip

        if options.idle < 0:
            return
        print(
            f"\nIdle subscribers on one uvicorn process (target {idle_target}, file descriptor limit {hard})"
        )
        if idle_target < options.idle:
            print(f"  the target is capped by the file descriptor limit (asked for {options.idle})")
        result = idle_run(ws_url, write_url, idle_target, server.pid, options.clients)
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
