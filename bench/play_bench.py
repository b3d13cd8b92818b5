"""Two-way socket benchmark (issue 15): a game's load over the socket, beside the same load as
HTTP writes with read-only subscribers.

    .venv/bin/python bench/play_bench.py [--rooms 100] [--players 10] [--seconds 20]

ROOMS rooms x PLAYERS players, each player one move per second (random phase). Over the socket,
each player is one `WS /write/<key>/live?room=…&read=<read key>`: it sends its moves as writes
and receives the room's state frames. Over HTTP, each player POSTs its moves (keep-alive) and a
read-only subscriber per player listens on `/read/<key>/live?room=…`. Every move carries a unique
id and its send time; the reducer keeps the room's last 64 (id, time) pairs, so a receiver knows,
from each state frame, which moves it contains. Reported (p50/p99):
- ack: send → the move's ack (socket) or response (HTTP);
- move-to-player: send → the first state frame containing it, per (move, player);
- move-to-every-player: send → the last of the room's players to get it, per move.
And whether every player ends on its room's last seq.

Clients run in separate processes (--clients, 4), a whole room per process, with uvloop. The
stack: 2 uvicorn processes (players alternate between them), one Celery worker (-c 2),
PostgreSQL and Redis, all on this machine with the clients. Uses the database in
WR_BENCH_DB (webreducer_bench) and Redis db WR_BENCH_REDIS_DB (8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    ENV,
    Stack,
    cpu_reference,
    figure,
    fresh_database,
    wait_until,
)

PY = sys.executable
CODE = """
def reducer(state, request, secrets):
    state = state or {"moves": 0, "recent": []}
    state["moves"] += 1
    state["recent"] = (state["recent"] + [[request.body["k"], request.body["t"]]])[-64:]
    return state
"""
SERVER_ENV = {
    "WR_LIVE_MAX_PER_KEY": "1000000",
    "WR_LIVE_MAX_PER_IP": "1000000",
    "WR_RATE_PER_SECOND": "1000000",
    "WR_RATE_BURST": "1000000",
}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- the client process ---------------------------------------------------------------------


class Room:
    """What one client process learns about one room: who received which move when."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}  # move id -> send time
        self.received: dict[str, list[float]] = {}  # move id -> receive times, one per player
        self.acks: list[float] = []
        self.last_seqs: list[int] = []


def _take_state(room: Room, seen: set[str], frame: dict[str, Any], now: float) -> None:
    body = frame.get("body") or {}
    for move_id, _ in body.get("recent", ()):
        if move_id not in seen:
            seen.add(move_id)
            room.received.setdefault(move_id, []).append(now)


async def socket_player(
    args: argparse.Namespace, room: Room, name: str, base: str, stop_at: float
) -> int:
    from websockets.asyncio.client import connect

    url = f"{base}/write/{args.write}/live?room={name}&read={args.read}&name=p"
    seen: set[str] = set()
    last_seq = 0
    pending: dict[int, float] = {}
    async with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
        ready = asyncio.get_running_loop().create_future()

        async def reader() -> None:
            nonlocal last_seq
            async for text in ws:
                now = time.time()
                frame = json.loads(text)
                kind = frame["type"]
                if kind == "state":
                    last_seq = max(last_seq, frame["seq"])
                    _take_state(room, seen, frame, now)
                    if not ready.done():
                        ready.set_result(None)
                elif kind == "ack":
                    sent = pending.pop(frame["ref"], None)
                    if sent is not None and frame["status"] < 300:
                        room.acks.append(now - sent)

        task = asyncio.create_task(reader())
        try:
            await asyncio.wait_for(asyncio.shield(ready), 120)
        except TimeoutError:
            raise SystemExit(f"a player of {name} got no state in 120 s") from None
        await asyncio.sleep(max(0.0, args.start - time.time()) + random.random())
        ref = 0
        while time.time() < stop_at:
            move_id = uuid.uuid4().hex[:12]
            now = time.time()
            room.sent[move_id] = now
            pending[ref] = now
            await ws.send(
                json.dumps({"type": "write", "ref": ref, "body": {"k": move_id, "t": now}})
            )
            ref += 1
            await asyncio.sleep(1.0)
        # Every player of the room stopped by now (all of a room's players are in this process):
        # wait for the acks, and for the state holding the room's last move.
        await asyncio.sleep(max(0.0, stop_at + 1.5 - time.time()))
        await _settle(lambda: not pending and last_seq >= len(room.sent), 30)
        task.cancel()
    return last_seq


async def http_player(
    args: argparse.Namespace, room: Room, name: str, base: str, stop_at: float, client: Any
) -> None:
    await asyncio.sleep(max(0.0, args.start - time.time()) + random.random())
    url = f"{base}/write/{args.write}?room={name}"
    while time.time() < stop_at:
        move_id = uuid.uuid4().hex[:12]
        now = time.time()
        room.sent[move_id] = now
        response = await _post(client, url, {"k": move_id, "t": now})
        if response is not None and response.status_code < 300:
            room.acks.append(time.time() - now)
        await asyncio.sleep(max(0.0, 1.0 - (time.time() - now)))


async def _post(client: Any, url: str, body: dict[str, Any]) -> Any:
    """POST a move; a keep-alive connection the server closed meanwhile is retried (with the
    move's Idempotency-Key, so a retry never stores it twice)."""
    import httpx

    for attempt in range(3):
        try:
            return await client.post(url, json=body, headers={"Idempotency-Key": body["k"]})
        except httpx.TransportError:
            if attempt == 2:
                return None
    return None


async def subscriber(
    args: argparse.Namespace, room: Room, name: str, base: str, done: asyncio.Event
) -> int:
    from websockets.asyncio.client import connect

    url = f"{base}/read/{args.read}/live?room={name}"
    seen: set[str] = set()
    last_seq = 0
    async with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
        while not done.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            frame = json.loads(text)
            if frame.get("type") == "state":
                last_seq = max(last_seq, frame["seq"])
                _take_state(room, seen, frame, time.time())
    return last_seq


async def _settle(condition: Any, seconds: float) -> None:
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        await asyncio.sleep(0.1)


async def client_main(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    names = args.room_names.split(",")
    rooms = {name: Room() for name in names}
    bases_ws = [b.replace("http://", "ws://") for b in args.bases.split(",")]
    bases_http = args.bases.split(",")
    stop_at = args.start + args.seconds
    if args.mode == "socket":
        results = await asyncio.gather(
            *(
                socket_player(args, rooms[name], name, bases_ws[p % len(bases_ws)], stop_at)
                for name in names
                for p in range(args.players)
            )
        )
        for index, name in enumerate(n for n in names for _ in range(args.players)):
            rooms[name].last_seqs.append(results[index])
    else:
        done = asyncio.Event()
        limits = httpx.Limits(max_connections=args.players * len(names))
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            subscribers = [
                asyncio.create_task(
                    subscriber(args, rooms[n], n, bases_ws[p % len(bases_ws)], done)
                )
                for n in names
                for p in range(args.players)
            ]
            await asyncio.sleep(max(0.0, args.start - time.time()))
            await asyncio.gather(
                *(
                    http_player(args, rooms[n], n, bases_http[p % len(bases_http)], stop_at, client)
                    for n in names
                    for p in range(args.players)
                )
            )
            await asyncio.sleep(5)  # the last moves' states
            done.set()
            results = await asyncio.gather(*subscribers)
        for index, name in enumerate(n for n in names for _ in range(args.players)):
            rooms[name].last_seqs.append(results[index])
    return {
        name: {
            "sent": room.sent,
            "received": room.received,
            "acks": room.acks,
            "last_seqs": room.last_seqs,
        }
        for name, room in rooms.items()
    }


# --- the parent -------------------------------------------------------------------------------


# --- CPU per move ------------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    try:
        # Fields after the command name, which may hold spaces: state, ppid, … (proc(5)).
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _tree_cpu(roots: list[int]) -> float:
    """CPU seconds of the processes `roots` and their descendants (the reaped ones included:
    a process's own figure counts its waited-for children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, grew = set(roots), True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in tree:
        fields = _proc_stat(pid)
        if fields is not None:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / ticks


def _postgres_pids() -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def cpu_sample(groups: dict[str, list[int]]) -> dict[str, float]:
    sample = {name: _tree_cpu(pids) for name, pids in groups.items()}
    sample["postgres"] = _tree_cpu(_postgres_pids())
    return sample


# The stack's processes by role (set by main()): their CPU during each phase's moves.
STACK_PIDS: dict[str, list[int]] = {}


def run_phase(
    mode: str, options: argparse.Namespace, keys: tuple[str, str], bases: list[str], prefix: str
) -> dict[str, Any] | None:
    names = [f"{prefix}-{n}" for n in range(options.rooms)]
    start = time.time() + 15 + options.rooms * options.players / 200  # time to connect
    chunks = [names[i :: options.clients] for i in range(options.clients)]
    children = []
    outs = []
    for index, chunk in enumerate(c for c in chunks if c):
        outs.append(Path(tempfile.mkdtemp(prefix="wr-play-client-")) / f"{index}.json")
        args = [PY, __file__, "--client", "--mode", mode, "--write", keys[0], "--read", keys[1],
                "--bases", ",".join(bases), "--room-names", ",".join(chunk),
                "--players", str(options.players), "--start", str(start),
                "--seconds", str(options.seconds), "--out", str(outs[-1])]  # fmt: skip
        children.append(subprocess.Popen(args, cwd=ROOT, env={**os.environ, **ENV}))
    # The CPU each part spends during the moves (from their start to their end), per move.
    time.sleep(max(0.0, start + 1 - time.time()))
    groups = {**STACK_PIDS, "clients": [child.pid for child in children]}
    before = cpu_sample(groups)
    time.sleep(max(0.0, start + options.seconds - time.time()))
    after = cpu_sample(groups)
    window = options.seconds - 1
    moves = options.rooms * options.players * window  # one a second each
    print(
        f"{mode:>7}: CPU per move during the moves (ms, {window:.0f} s, ~{moves:,.0f} moves): "
        + ", ".join(f"{name} {1000 * (after[name] - before[name]) / moves:.2f}" for name in after)
        + f"; all of them {1000 * sum(after[n] - before[n] for n in after) / moves:.2f} "
        f"(2 cores: {2000 / (options.rooms * options.players):.2f} ms per move at this rate)",
        flush=True,
    )
    merged: dict[str, Any] = {}
    # Connecting, the moves, the last states and the settling wait take well under this: a
    # phase that overruns it saturated the stack, and is reported as such instead of hanging.
    deadline = start + options.seconds + 90
    for child, out in zip(children, outs, strict=True):
        try:
            code = child.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for other in children:
                other.kill()
                other.wait()
            print(f"{mode:>7}: did not finish within {options.seconds:.0f} s + 90 s", flush=True)
            return None
        if code != 0:
            raise SystemExit(f"a client process failed ({child.returncode})")
        merged.update(json.loads(out.read_text()))
    return merged


def summarise(
    mode: str, results: dict[str, Any] | None, options: argparse.Namespace
) -> dict[str, float]:
    from hooks.models import Hook, Request, State

    if results is None:  # did not finish: every figure fails
        nan = float("nan")
        return {"moves": 0, "ack_p50": nan, "ack_p99": nan, "player_p50": nan,
                "player_p99": nan, "every_p50": nan, "every_p99": nan, "missing": 1,
                "behind": 1}  # fmt: skip

    hook = Hook.objects.get(name="play-bench")
    seqs = dict(State.objects.filter(version_id=hook.live_id).values_list("room", "seq"))
    acks, to_player, to_every, missing, behind = [], [], [], 0, 0
    for name, room in results.items():
        acks += room["acks"]
        for move_id, sent in room["sent"].items():
            times = room["received"].get(move_id, [])
            to_player += [t - sent for t in times]
            if len(times) == options.players:
                to_every.append(max(times) - sent)
            else:
                missing += 1
        behind += sum(1 for s in room["last_seqs"] if s != seqs.get(name, 0))
    moves = sum(len(r["sent"]) for r in results.values())
    # Where a move's time goes, from the rows: send -> stored (received_at), stored -> folded
    # (applied_at); the rest of move-to-player is the state's way to the players.
    stored, folded = [], []
    rows = Request.objects.filter(hook=hook, room__in=list(results), applied_at__isnull=False)
    for body, received_at, applied_at in rows.values_list("body", "received_at", "applied_at"):
        assert applied_at is not None
        sent = json.loads(bytes(body))["t"]
        stored.append(received_at.timestamp() - sent)
        folded.append((applied_at - received_at).total_seconds())
    figures = {
        "moves": moves,
        "ack_p50": pct(acks, 50) * 1000,
        "ack_p99": pct(acks, 99) * 1000,
        "player_p50": pct(to_player, 50) * 1000,
        "player_p99": pct(to_player, 99) * 1000,
        "every_p50": pct(to_every, 50) * 1000,
        "every_p99": pct(to_every, 99) * 1000,
        "missing": missing,
        "behind": behind,
        "stored_p50": pct(stored, 50) * 1000,
        "folded_p50": pct(folded, 50) * 1000,
        "folded_p99": pct(folded, 99) * 1000,
    }
    print(
        f"{mode:>7}: {moves:,} moves; ack p50 {figures['ack_p50']:.1f} ms p99 "
        f"{figures['ack_p99']:.1f} ms; move-to-player p50 {figures['player_p50']:.1f} ms p99 "
        f"{figures['player_p99']:.1f} ms; move-to-every-player p50 {figures['every_p50']:.1f} ms "
        f"p99 {figures['every_p99']:.1f} ms; moves some player never saw: {missing}; players not "
        f"on their room's last seq: {behind}; send to stored p50 {figures['stored_p50']:.1f} "
        f"ms, stored to folded p50 {figures['folded_p50']:.1f} ms p99 "
        f"{figures['folded_p99']:.1f} ms",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--players", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--phases", default="socket,http", help="socket, http or both")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="socket", help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    parser.add_argument("--read", help=argparse.SUPPRESS)
    parser.add_argument("--bases", help=argparse.SUPPRESS)
    parser.add_argument("--room-names", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.client:
        import uvloop

        results = uvloop.run(client_main(options))
        Path(options.out).write_text(json.dumps(results))
        return

    reference = cpu_reference()
    print(f"CPU reference sum(range(20_000_000)): {reference:.2f} s")
    ENV.update(SERVER_ENV)
    fresh_database()
    from accounts.models import User
    from hooks.models import Key
    from hooks.services import hook_create

    owner = User.objects.create_user(username="play-bench")
    hook = hook_create(owner=owner, name="play-bench", code=CODE)
    keys = (
        hook.keys.get(kind=Key.Kind.WRITE).token,
        hook.keys.get(kind=Key.Kind.READ).token,
    )
    logs = Path(tempfile.mkdtemp(prefix="wr-play-"))
    stack = Stack(logs)
    try:
        ports = [18261, 18262]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        STACK_PIDS["server"] = [
            stack.start(
                f"uvicorn-{port}", [PY, "-m", "webreducer.asgiserver", "--port", str(port)]
            ).pid
            for port in ports
        ]
        worker = stack.start("worker", [PY, "-m", "celery", "-A", "webreducer", "worker", "-c", "2",
                               "-l", "warning", "-n", "play-bench@%h"])  # fmt: skip
        STACK_PIDS["worker"] = [worker.pid]
        import httpx

        def answers(base: str) -> bool:
            return httpx.get(f"{base}/read/none").status_code == 404

        for base in bases:
            wait_until(lambda: answers(base), 60, "uvicorn")  # noqa: B023 - called at once
        time.sleep(3)
        players = options.rooms * options.players
        print(
            f"\n{options.rooms} rooms x {options.players} players ({players:,} sockets), each "
            f"player 1 move/s for {options.seconds:.0f} s; 2 uvicorn, 1 worker (-c 2)"
        )
        phases = options.phases.split(",")
        skipped = summarise("skipped", None, options)
        socket = http = skipped
        if "socket" in phases:
            socket = summarise("socket", run_phase("socket", options, keys, bases, "s"), options)
        if "http" in phases:
            http = summarise("http", run_phase("http", options, keys, bases, "h"), options)
    finally:
        stack.stop()
    figure("two-way socket: ack p50", socket["ack_p50"], "ms", target="< 15 ms",
           met=socket["ack_p50"] < 15)  # fmt: skip
    figure("two-way socket: move-to-every-player p50", socket["every_p50"], "ms",
           target="< 50 ms", met=socket["every_p50"] < 50)  # fmt: skip
    figure("two-way socket: move-to-every-player p99", socket["every_p99"], "ms",
           target="< 150 ms", met=socket["every_p99"] < 150)  # fmt: skip
    figure("two-way socket: players not on their room's last seq", socket["behind"], "players",
           target="0", met=socket["behind"] == 0 and socket["missing"] == 0)  # fmt: skip
    figure("HTTP writes + read sockets: response p50", http["ack_p50"], "ms")
    figure("HTTP writes + read sockets: move-to-every-player p50", http["every_p50"], "ms")
    print(f"CPU reference: {reference:.2f} s")


if __name__ == "__main__":
    main()
