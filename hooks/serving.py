"""A web process's fair shares for the public endpoints' sandbox calls (docs/security.md,
"One tenant cannot starve the others").

A responder or query runs while its request holds one of the process's threads. Without a
bound, one hook's slow code under concurrent requests would hold every thread and every other
hook's requests would queue behind it; with it, a hook runs at most WR_SANDBOX_CALLS_PER_HOOK
calls at once per process and its excess is answered 429 after a short wait, so the other threads stay
free for other hooks. The bound is per process (nothing shared is needed for it to hold): the
deployment runs threaded web processes for it to mean anything (docs/deployment.md).

The database connection is given back to the pool for the length of the call: a request
waiting on user code must not hold one of the process's few connections (settings,
WR_DB_POOL_MAX_SIZE).

Early refusals: once this process has refused a key's request because its hook was full, the
next requests with that key are refused by the input layer (webreducer/inputs/busy.py) before
Django, for as long as the hook stays full and at most REFUSED_TRUST_SECONDS after the view last
refused it: a refusal then costs a dictionary lookup instead of Django's middleware, the key
lookup and the view (a flooding tenant's excess was most of the web processes' CPU).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import connection


class HookSaturated(Exception):
    """The hook already runs its limit of sandbox calls in this process."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} call(s) at once")
        self.limit = limit


_freed = threading.Condition()
# The start times of each hook's running calls in this process, and how many requests wait.
_running: dict[str, list[float]] = {}
_waiting: dict[str, int] = {}
# Each hook's recent call time in this process (seconds, a moving average): whether a request
# for a full hook is worth a wait, or is refused at once.
_recent: dict[str, float] = {}
RECENT_MAX_HOOKS = 10_000
# Early refusals: (key kind, token) -> (hook id, when the view last refused a request with it,
# whether a probe is in the view). Only a key the view itself resolved and refused is ever
# refused early, and only for this long after that: a key revoked or paused meanwhile answers
# 429 instead of 404 for at most this (and its probe's time in the view), then goes through the
# view again.
_refused: dict[tuple[str, str], tuple[str, float, bool]] = {}
REFUSED_TRUST_SECONDS = 2.0
PROBE_MAX_SECONDS = 2.0
REFUSED_MAX_KEYS = 10_000
# The key of the request this context serves, as the input layer read it from the URL (under
# ASGI the view's thread runs in a copy of the input layer's context, so it reads the same).
_request_key: ContextVar[tuple[str, str] | None] = ContextVar("wr_request_key", default=None)


def _worth_waiting(hook_id: str, limit: int, patience: float, now: float) -> bool:
    """Whether a request for a full hook should wait for one of its slots.

    Only when a slot is likely to free soon: the hook's calls have been quick (its moving
    average), one of its running calls is still younger than a quick call (a hook's first slow
    calls have no average yet: without this, a crowd arriving at once would each wait the whole
    patience, holding the process's threads), and fewer than four requests per slot wait."""
    if _recent.get(hook_id, 0.0) > patience / 4 or _waiting.get(hook_id, 0) >= 4 * limit:
        return False
    return _young_until(hook_id, patience) > now


def _young_until(hook_id: str, patience: float) -> float:
    """When the hook's youngest running call stops being a quick one (in the past when none
    runs): a request waiting for a slot waits no longer than that. Re-checked at each wake-up, so a
    crowd that arrived with a hook's first calls, which turn out slow, is refused a quarter of
    the patience after they began instead of holding a thread each for the whole patience."""
    return max(_running.get(hook_id, ()), default=-patience) + patience / 4


@contextmanager
def sandbox_slot(*, hook_id: str) -> Iterator[None]:
    """Hold one of the hook's sandbox call slots in this process, or raise HookSaturated.

    A full hook's request waits for a slot when the hook's calls are quick (a quick responder
    frees one within a millisecond, so a burst of concurrent writers to a busy but fast hook
    queues briefly instead of being refused): up to WR_SANDBOX_SLOT_WAIT_SECONDS, and no longer
    than its youngest running call stays quick. A slow hook's excess is refused at once:
    waiting would only hold a thread that other hooks' requests need."""
    limit = settings.WR_SANDBOX_CALLS_PER_HOOK
    patience = settings.WR_SANDBOX_SLOT_WAIT_SECONDS
    with _freed:
        if len(_running.get(hook_id, ())) >= limit:
            if not _worth_waiting(hook_id, limit, patience, time.monotonic()):
                _refusal_note(hook_id)
                raise HookSaturated(limit)
            _waiting[hook_id] = _waiting.get(hook_id, 0) + 1
            try:
                give_up = time.monotonic() + patience
                while len(_running.get(hook_id, ())) >= limit:
                    now = time.monotonic()
                    until = min(give_up, _young_until(hook_id, patience))
                    if now >= until:
                        _refusal_note(hook_id)
                        raise HookSaturated(limit)
                    _freed.wait(until - now)
            finally:
                _waiting[hook_id] -= 1
                if not _waiting[hook_id]:
                    del _waiting[hook_id]
        started = time.monotonic()
        _running.setdefault(hook_id, []).append(started)
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        with _freed:
            if len(_recent) > RECENT_MAX_HOOKS:
                _recent.clear()  # forgetting costs a hook at most one wait it should not get
            _recent[hook_id] = 0.7 * _recent.get(hook_id, elapsed) + 0.3 * elapsed
            running = _running[hook_id]
            running.remove(started)
            if not running:
                del _running[hook_id]
            _freed.notify_all()


def running_calls(hook_id: str) -> int:
    with _freed:
        return len(_running.get(hook_id, ()))


def connection_release() -> None:
    """Give this thread's pooled connection back before a long wait; the next query takes one
    again. A persistent connection (no pool) is kept: reconnecting would cost ~4 ms, and
    with one per thread their number is bounded by the threads. Inside a transaction nothing is
    released (the transaction needs its connection)."""
    if (
        connection.connection is not None
        and not connection.in_atomic_block
        and getattr(connection, "pool", None) is not None
    ):
        connection.close()


def waiting_requests(hook_id: str) -> int:
    with _freed:
        return _waiting.get(hook_id, 0)


# ---- early refusals (webreducer/inputs/busy.py) ---------------------------------------------------
@contextmanager
def request_key(kind: str, token: str) -> Iterator[None]:
    """Mark the request this context serves as one for the key (kind, token) read from its URL:
    if the view refuses it for a full hook, the key's next requests may be refused early. A
    request that was the key's probe (see refused_early) and was not refused again ends the
    key's early refusals: it was served, or answered otherwise (a revoked key's 404)."""
    reset = _request_key.set((kind, token))
    try:
        yield
    finally:
        _request_key.reset(reset)
        with _freed:
            entry = _refused.get((kind, token))
            if entry is not None and entry[2]:
                del _refused[(kind, token)]


def _refusal_note(hook_id: str) -> None:
    # Called with _freed held, as the view refuses a request for the hook.
    key = _request_key.get()
    if key is None:
        return
    if len(_refused) >= REFUSED_MAX_KEYS:
        _refused.clear()  # forgetting costs a key one more refusal through the view
    _refused[key] = (hook_id, time.monotonic(), False)


def refused_early(kind: str, token: str) -> int | None:
    """The hook's slot limit when a request for this key is to be refused before Django: the
    view refused one within REFUSED_TRUST_SECONDS, and its hook is still full here with no
    wait worth it. None otherwise (the request goes through the view, as always).

    Past REFUSED_TRUST_SECONDS one request, the probe, goes through the view again, and the
    key's others are still refused early while it is answered: a refused crowd that comes back
    together (Retry-After) would otherwise reach Django all at once on an ASGI server. The
    probe's refusal renews the trust; any other answer ends it (request_key). A probe that has
    not ended within PROBE_MAX_SECONDS ends it too."""
    with _freed:
        entry = _refused.get((kind, token))
        if entry is None:
            return None
        hook_id, refused_at, probing = entry
        now = time.monotonic()
        limit = settings.WR_SANDBOX_CALLS_PER_HOOK
        if len(_running.get(hook_id, ())) < limit or _worth_waiting(
            hook_id, limit, settings.WR_SANDBOX_SLOT_WAIT_SECONDS, now
        ):
            return None
        age = now - refused_at
        if age > REFUSED_TRUST_SECONDS + PROBE_MAX_SECONDS:
            del _refused[(kind, token)]
            return None
        if age > REFUSED_TRUST_SECONDS and not probing:
            _refused[(kind, token)] = (hook_id, refused_at, True)
            return None  # this request is the probe
        return int(limit)
