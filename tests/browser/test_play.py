"""The browser client of the two-way socket (static/js/webreducer-client.js) in real Chromium,
against a real uvicorn and Celery worker: the examples' pages (tic-tac-toe, shared cursors),
served from a static host of their own as a newcomer would, and a reconnect through a SIGKILL of
the server with writes not yet acknowledged."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import expect

from hooks.models import Hook, Request
from hooks.services import hook_create
from tests.browser.conftest import Console, Stack
from tests.conftest import read_key, write_key
from tests.servers import (
    ROOT,
    Process,
    celery_worker,
    child_env,
    free_port,
    wait_for,
    worker_settle,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 20_000  # ms: a state frame after a fold (a worker's batch) is well within this


class QuietFiles(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/favicon.ico":  # asked for by a browser on every page
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    """The repository served as plain files, on an origin of its own: how a newcomer opens the
    example pages (python -m http.server from the repository root)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(ROOT)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def quiet_worker(transactional_db: None) -> Iterator[None]:
    """After each test (its pages closed first, the database flushed after), let the module's
    worker fold what the pages' last messages and leaves queued: a reduce transaction still
    running during the flush can deadlock with its TRUNCATE."""
    yield
    time.sleep(0.5)  # the closed pages' leaves reach the server
    worker_settle()


def example_hook(owner: Any, slug: str) -> Hook:
    code = (ROOT / "examples" / slug / "hook.py").read_text()
    return hook_create(owner=owner, name=slug, code=code)


def page_url(pages: str, slug: str, **fragment: str) -> str:
    return f"{pages}/examples/{slug}/#{urlencode(fragment)}"


def opened(page: Any) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-status", "open", timeout=LIVE)


def bodies(hook: Hook, method: str) -> list[Any]:
    requests = hook.requests.filter(method=method).order_by("seq", "id")
    return [json.loads(bytes(r.body)) for r in requests]


# --- tic-tac-toe ------------------------------------------------------------------------------

# X wins the top row; alice also tries to play twice in a row (refused by the reducer).
GAME = [("alice", 0, 0), ("alice", 1, 1), ("bob", 1, 0), ("alice", 0, 1), ("bob", 1, 1)]
GAME += [("alice", 0, 2)]
FINAL = ["X", "X", "X", "O", "O", "", "", "", ""]


def test_it_plays_tictactoe_over_the_socket_between_two_pages(
    alice: Any, new_page: Any, stack: Stack, pages: str
) -> None:
    hook = example_hook(alice, "tictactoe")
    keys = {"write": f"{stack.url}/write/{write_key(hook)}", "read": read_key(hook)}
    # The client as the product serves it, from another origin than the page's.
    client = f"{stack.url}/static/js/webreducer-client.js"
    players = {}
    for name in ("alice", "bob"):
        page = new_page()
        page.goto(page_url(pages, "tictactoe", **keys, room="match-7", name=name, client=client))
        opened(page)  # alice joins first: she sits as X
        players[name] = page

    for page in players.values():
        expect(page.locator("#presence li")).to_have_text(["alice", "bob"], timeout=LIVE)
        expect(page.locator("#turn")).to_contain_text("X: alice · O: bob", timeout=LIVE)

    moves = 0
    for name, row, col in GAME:
        players[name].locator(f'[data-cell="{row},{col}"]').click()
        if (name, row, col) == ("alice", 1, 1):
            for page in players.values():
                expect(page.locator("#error")).to_have_text("it is O's turn", timeout=LIVE)
            continue
        moves += 1
        for page in players.values():
            expect(page.locator("#turn")).to_have_attribute("data-moves", str(moves), timeout=LIVE)

    for page in players.values():
        expect(page.locator("#board button")).to_have_text(FINAL)
        expect(page.locator("#turn")).to_have_attribute("data-winner", "X")
        expect(page.locator("#turn")).to_contain_text("X (alice) wins")
        expect(page.locator("#presence li")).to_have_text(["alice", "bob"])

    # Every move was a socket write (method "WS", the player's name on it), each applied once,
    # after the two joins folded by the reducer.
    moves_stored = hook.requests.filter(method="WS").order_by("seq")
    assert [r.outcome for r in moves_stored] == [Request.Outcome.APPLIED] * len(GAME)
    names = [
        {k.lower(): v for k, v in r.headers.items()}["x-webreducer-name"] for r in moves_stored
    ]
    assert names == [name for name, _, _ in GAME]
    assert [b["row"] * 3 + b["col"] for b in bodies(hook, "WS")] == [r * 3 + c for _, r, c in GAME]
    joins = hook.requests.filter(method="JOIN").order_by("seq")
    assert [json.loads(bytes(r.body))["name"] for r in joins] == ["alice", "bob"]
    assert [r.seq for r in joins] == [1, 2]
    assert [r.seq for r in moves_stored] == list(range(3, 3 + len(GAME)))


# --- shared cursors ---------------------------------------------------------------------------


def received_from(page: Any) -> list[str]:
    return list(page.evaluate("window.received.map((frame) => frame.from)"))


def test_it_relays_cursors_to_the_rooms_other_pages_only(
    alice: Any, new_page: Any, stack: Stack, pages: str
) -> None:
    hook = example_hook(alice, "cursors")
    keys = {"write": f"{stack.url}/write/{write_key(hook)}", "read": read_key(hook)}
    a, b, c = new_page(), new_page(), new_page()
    for page, room, name in ((a, "lobby", "alice"), (b, "lobby", "bob"), (c, "elsewhere", "carol")):
        page.goto(page_url(pages, "cursors", **keys, room=room, name=name))
        opened(page)  # one after the other: presence lists in order of joining
    for page in (a, b):
        expect(page.locator("#presence")).to_have_text("alice, bob", timeout=LIVE)
    ids = {name: page.evaluate("space.id") for name, page in (("a", a), ("b", b), ("c", c))}

    a.mouse.move(320, 200)
    expect(b.locator(f'.cursor[data-from="{ids["a"]}"]')).to_have_text("alice", timeout=LIVE)
    b.mouse.move(640, 400)
    expect(a.locator(f'.cursor[data-from="{ids["b"]}"]')).to_have_text("bob", timeout=LIVE)
    c.mouse.move(100, 100)
    # Frames of one socket arrive in order: once A has B's second broadcast, anything sent to A
    # before it (its own cursor, carol's) would have arrived too.
    time.sleep(0.1)
    b.mouse.move(650, 410)
    wait_for(lambda: received_from(a).count(ids["b"]) >= 2, LIVE / 1000, "bob's second cursor")
    assert set(received_from(a)) == {ids["b"]}
    assert set(received_from(b)) == {ids["a"]}
    assert received_from(c) == []
    assert not hook.requests.exists()  # broadcasts are never stored

    # A click is a write: stored, folded into the room's pins, on every page of the room.
    a.mouse.click(320, 200)
    expect(b.locator(".pin")).to_have_text(["alice"], timeout=LIVE)
    expect(a.locator(".pin")).to_have_text(["alice"], timeout=LIVE)
    assert c.locator(".pin").count() == 0
    assert bodies(hook, "WS")[0]["label"] == "alice"


# --- reconnect through a SIGKILL of the server ------------------------------------------------

MOVES = 90

LOG_CODE = """
def reducer(state, request, secrets):
    state = state or {"moves": []}
    state["moves"].append(request.body["n"])
    return state
"""

# Sends MOVES writes in bursts of 3 every 40 ms, whatever the socket is doing; records every ack
# and, at each drop, how many writes were not acknowledged.
PLAY = """
([write, read, moves]) => {
  window.acks = [];
  window.drops = [];
  const game = WebReducer.connect(write, { read, minDelay: 100, maxDelay: 1000 });
  window.game = game;
  game.on("status", (status, detail) => {
    if (status === "connecting" && detail.code) window.drops.push({ ...detail, pending: game.pending });
  });
  let n = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < 3 && n < moves; i++) game.send({ n: n++ }).then((ack) => window.acks.push(ack));
    if (n >= moves) clearInterval(timer);
  }, 40);
}
"""


class Restartable:
    """uvicorn on a fixed port, as tests.servers.asgi_server starts it, killed and restarted."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.process: Process | None = None

    def start(self) -> None:
        self.starts += 1
        args = [sys.executable, "-m", "webreducer.asgiserver", "--host", "127.0.0.1"]
        args += ["--port", str(self.port)]
        env = child_env(SITE_ROOT=self.url)
        self.process = Process(args, env, self.logs / f"uvicorn-{self.starts}.log")
        wait_for(self.answers, 60, "uvicorn to start")

    def answers(self) -> bool:
        try:
            httpx.get(self.url + "/read/none", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    def freeze(self) -> None:
        assert self.process is not None
        os.killpg(self.process.popen.pid, signal.SIGSTOP)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill(signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Restartable]:
    server = Restartable(tmp_path)
    server.start()
    # With the reconciler (beat), as deployed: a server killed between a write's wake-up flag
    # and its task message leaves the room's flag set for wakeup.FLAG_TTL_SECONDS, and the
    # reconciler is what queues the room again if no later write does (hooks/wakeup.py).
    with celery_worker(tmp_path, concurrency=1, beat=True, name="reconcile"):
        yield server
    server.stop()


def test_it_resends_unacknowledged_writes_through_a_server_kill_exactly_once(
    alice: Any, new_page: Any, console: Console, stack: Stack, pages: str, server: Restartable
) -> None:
    hook = hook_create(owner=alice, name="log", code=LOG_CODE)
    page = new_page()
    page.goto(f"{pages}/examples/")
    page.add_script_tag(url=f"{server.url}/static/js/webreducer-client.js", type="module")
    page.wait_for_function("globalThis.WebReducer !== undefined")
    write = f"{server.url}/write/{write_key(hook)}"
    page.evaluate(PLAY, [write, read_key(hook), MOVES])

    # Mid-stream, with writes in flight: frozen first (SIGSTOP) so that writes are surely sent
    # and not acknowledged when it dies, then kill -9, then the same port again a moment later.
    page.wait_for_function("window.acks.length >= 15")
    server.freeze()
    page.wait_for_function("game.pending >= 6")
    server.kill()
    page.wait_for_function("window.drops.length > 0")
    time.sleep(1)
    server.start()

    page.wait_for_function(f"window.acks.length === {MOVES}", timeout=60_000)
    drops = page.evaluate("window.drops")
    assert drops[0]["pending"] > 0, drops  # the kill did catch writes not acknowledged
    acks = page.evaluate("window.acks")
    assert sorted(a["ref"] for a in acks) == list(range(1, MOVES + 1))
    assert {a["status"] for a in acks} == {202}
    pending = hook.requests.filter(outcome=Request.Outcome.PENDING)
    wait_for(lambda: not pending.exists(), 60, "the worker to fold every request")

    # In the database: every move applied exactly once, in the order sent; a resent write whose
    # first copy had been stored is folded as a duplicate of it (it takes a seq, the state does
    # not change); seq gapless.
    folded = list(hook.requests.exclude(seq=None).order_by("seq"))
    assert [r.seq for r in folded] == list(range(1, len(folded) + 1))
    applied = [r for r in folded if r.outcome == Request.Outcome.APPLIED]
    assert [json.loads(bytes(r.body))["n"] for r in applied] == list(range(MOVES))
    copies = [r for r in folded if r.outcome != Request.Outcome.APPLIED]
    assert {r.outcome for r in copies} <= {Request.Outcome.DUPLICATE}
    first_of = {r.idempotency_key: r.pk for r in applied}
    assert len(first_of) == MOVES
    assert all(first_of[r.idempotency_key] == r.duplicate_of_id for r in copies)
    assert hook.requests.count() == len(folded)  # nothing refused or left over

    # The page ends on the room's last seq, with every move once, in order.
    page.wait_for_function(f"game.seq === {folded[-1].seq}", timeout=LIVE)
    assert page.evaluate("game.state.moves") == list(range(MOVES))

    page.evaluate("game.close()")  # before the server stops: no reconnect attempts after it
    # Chromium logs each refused reconnect attempt while the server was down; nothing else.
    console.problems[:] = [p for p in console.problems if "WebSocket connection to" not in p]


# --- refusals where nothing was stored ----------------------------------------------------------

BURST = """
([write, count]) => {
  window.acks = [];
  window.refusals = [];
  const game = WebReducer.connect(write, { retries: 20 });
  window.game = game;
  game.on("ack", (ack) => { if (ack.status === 429) window.refusals.push(ack.body.error.code); });
  game.on("status", (status) => {
    if (status !== "open") return;
    for (let n = 0; n < count; n++) game.send({ n }).then((ack) => window.acks.push(ack));
  });
}
"""


WRITES = 8  # at once, against a bucket of 3 refilled at 2/s: 5 are refused at first


def test_it_sends_again_by_itself_the_writes_refused_by_the_rate_limit(
    alice: Any, new_page: Any, stack: Stack, pages: str
) -> None:
    hook = hook_create(owner=alice, name="log", code=LOG_CODE)
    hook.limits = {"rate_per_second": 2, "rate_burst": 3}
    hook.save(update_fields=["limits"])
    page = new_page()
    page.goto(f"{pages}/examples/")
    page.add_script_tag(url=f"{stack.url}/static/js/webreducer-client.js", type="module")
    page.wait_for_function("globalThis.WebReducer !== undefined")
    page.evaluate(BURST, [f"{stack.url}/write/{write_key(hook)}", WRITES])

    page.wait_for_function(f"window.acks.length === {WRITES}", timeout=60_000)
    # The burst went over the key's rate limit: refused (nothing stored), then resent by the
    # client after retry_after, until each was stored; its promise has the ack that stored it.
    assert page.evaluate("window.refusals").count("rate_limited") > 0
    assert {a["status"] for a in page.evaluate("window.acks")} == {202}
    pending = hook.requests.filter(outcome=Request.Outcome.PENDING)
    wait_for(lambda: hook.requests.count() == WRITES and not pending.exists(), 60, "the folds")
    applied = hook.requests.filter(outcome=Request.Outcome.APPLIED).order_by("seq")
    assert sorted(json.loads(bytes(r.body))["n"] for r in applied) == list(range(WRITES))
    page.evaluate("game.close()")
