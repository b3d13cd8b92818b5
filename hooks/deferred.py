"""What a write does once it is committed, off the request: the owners' feed entry
(hooks.broadcast.requests_logged), then the wake-up of its rooms (hooks.wakeup), in that order
as on the request before, so the feed never hears of a fold before the request it folds.

One thread per web process sends them. It waits WR_WAKE_COALESCE_SECONDS after the first
write it has not sent yet, then sends everything committed meanwhile: one feed message per
watched hook, the rooms' flags in one round trip to Redis (hooks.wakeup.wake_all). A busy
process pays one round trip per window instead of two per write, and the request pays none
(the wake-up's SET NX was ~9 % of a write's CPU: docs/performance.md, "Write path"). What it
costs: up to that window more from write to applied. What a crash loses: the wake-ups not sent
yet, which the reconciler queues again as it does a lost task message (hooks/wakeup.py), and
their live feed entries (the owner's log still lists the requests: they are stored).

For the HTTP write view only (hooks/views/public.py: `request_ingest(soon=True)`). The writes of
a two-way socket and its JOINs and LEAVEs (hooks/live) send both before they return, as do all
writes when there is no Redis (the embedded default: one process, tasks in process), when tasks
run eagerly (tests), or with WR_WAKE_COALESCE_SECONDS = 0.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from hooks import broadcast, wakeup
from webreducer.celery import app as celery_app
from webreducer.redis import get_redis

logger = logging.getLogger(__name__)


def after_commit(
    *, hook_id: str, requests: Sequence[Any], rooms: Sequence[str], soon: bool = True
) -> None:
    """The owners' feed entry of `requests` (stored, of hook `hook_id`) and the wake-up of
    `rooms` (the rooms of its pending ones): `soon`, off the request, unless they cannot wait;
    else now."""
    seconds = float(settings.WR_WAKE_COALESCE_SECONDS)
    if not soon or seconds <= 0 or celery_app.conf.task_always_eager or get_redis() is None:
        broadcast.requests_logged(hook_id=hook_id, requests=requests)
        wakeup.wake_all([(hook_id, room) for room in rooms])
        return
    _sender().add(hook_id, requests, rooms, seconds)


def flush(timeout: float = 5.0) -> bool:
    """Wait until what this process's writes left to send so far is sent; whether it was."""
    current = _current
    return current is None or current.pid != os.getpid() or current.flush(timeout)


class _Sender:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Condition()
        self.logged: dict[str, list[Any]] = {}  # hook id -> requests, in commit order
        self.rooms: dict[tuple[str, str], None] = {}
        self.window = 0.0
        self.added = self.sent = 0
        threading.Thread(target=self._run, name="wr-after-write", daemon=True).start()

    def add(self, hook_id: str, requests: Sequence[Any], rooms: Sequence[str], window: float):
        with self.lock:
            if not self.added - self.sent:
                self.lock.notify_all()
            self.window = window
            self.added += 1
            self.logged.setdefault(hook_id, []).extend(requests)
            for room in rooms:
                self.rooms[(hook_id, room)] = None

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            wanted = self.added
            while self.sent < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self.lock:
                while self.added == self.sent:
                    self.lock.wait()
                window = self.window
            time.sleep(window)  # what the writes of the next `window` seconds add comes along
            with self.lock:
                logged, self.logged = self.logged, {}
                rooms, self.rooms = list(self.rooms), {}
                upto = self.added
            try:
                for hook_id, requests in logged.items():
                    broadcast.requests_logged(hook_id=hook_id, requests=requests)
                if rooms:
                    wakeup.wake_all(rooms)
            except Exception:  # never the thread: the next writes' wake-ups must still go out
                logger.exception("sending %d writes' wake-ups failed", upto - self.sent)
            with self.lock:
                self.sent = upto
                self.lock.notify_all()


_lock = threading.Lock()
_current: _Sender | None = None


def _sender() -> _Sender:
    """This process's sender, started on first use and again in a forked child (a fork copies
    the object but not its thread)."""
    global _current
    current = _current
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = _Sender()
        return _current


# A server stopping in an orderly way (a deploy) sends what it has left.
atexit.register(flush, 2.0)
