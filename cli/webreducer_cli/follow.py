"""`wr logs --follow`: the owners' live feed (WS /ws/hooks/<id>/ with the Bearer token), and
polling the request log when the feed cannot be had (a WSGI-only server, a proxy without
WebSockets, an older server) or drops.

Both paths feed one Tracker, which prints an entry once it has an outcome (pending entries
only when asked for), and once per outcome: a request seen pending, then applied, prints once.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from webreducer_cli.errors import CliError
from webreducer_cli.output import say
from webreducer_cli.session import Session

POLL_SECONDS = 1.0
# On the live feed, the log is read back after this long without a message.
RECONCILE_SECONDS = 5.0
# A poll reads back at most this many pages (40 entries each) for entries it has not seen.
POLL_MAX_PAGES = 5
# Entries remembered, so a long follow does not grow without bound.
REMEMBERED = 10_000
# The feed's close codes (docs/realtime.md): not signed in (here: the token was not taken),
# not your hook.
CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4403, 4404


class FeedUnavailable(Exception):
    pass


class Tracker:
    def __init__(
        self,
        *,
        status: str | None,
        show: Callable[[dict[str, Any]], None],
        path: str | None = None,
    ) -> None:
        self.status = status
        self.path = path
        self.show = show
        self.outcomes: OrderedDict[str, str] = OrderedDict()

    def offer(self, entry: dict[str, Any]) -> None:
        key, outcome = str(entry.get("id")), str(entry.get("outcome"))
        if self.outcomes.get(key) == outcome:
            return
        self.outcomes[key] = outcome
        self.outcomes.move_to_end(key)
        while len(self.outcomes) > REMEMBERED:
            self.outcomes.popitem(last=False)
        if outcome == "pending" and self.status != "pending":
            return
        if self.status and outcome != self.status:
            return
        if self.path and not str(entry.get("path") or "").startswith(self.path):
            return
        self.show(entry)

    def forget(self, key: str) -> None:
        self.outcomes.pop(key, None)

    def settled(self, key: str) -> bool:
        return self.outcomes.get(key, "pending") != "pending"

    def pending(self) -> set[str]:
        return {key for key, outcome in self.outcomes.items() if outcome == "pending"}


def feed_url(base: str, hook_id: str) -> str:
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/hooks/{hook_id}/"


def follow(session: Session, tracker: Tracker, *, baseline: Callable[[], None]) -> None:
    """Print `baseline()` (the recent entries), then new ones as they come, until Ctrl-C."""
    try:
        follow_feed(session, tracker, baseline=baseline)
        reason = "the live feed closed"
    except FeedUnavailable as error:
        reason = f"no live feed ({error})"
    say(f"[dim]{reason}: polling the log every {POLL_SECONDS:.0f} s[/]")
    follow_poll(session, tracker)


def follow_feed(session: Session, tracker: Tracker, *, baseline: Callable[[], None]) -> None:
    api = session.api
    api.require_token()
    url = feed_url(api.url, session.hook_id)
    try:
        socket = connect(
            url, additional_headers={"Authorization": f"Bearer {api.token}"}, open_timeout=10
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
        baseline()
        raise FeedUnavailable(str(error) or type(error).__name__) from None
    with socket:
        # Connected before the baseline is read, so nothing written in between is missed (the
        # tracker drops what both show).
        try:
            hello = json.loads(socket.recv(timeout=10))
        except (ConnectionClosed, TimeoutError, ValueError) as error:
            baseline()
            closed = getattr(error, "rcvd", None)
            if closed is not None and closed.code == CLOSE_NOT_FOUND:
                raise CliError(f"No such hook: {session.hook_id}.") from None
            if closed is not None and closed.code == CLOSE_FORBIDDEN:
                raise FeedUnavailable("the server's feed does not take API tokens") from None
            raise FeedUnavailable(str(error) or type(error).__name__) from None
        if hello.get("type") != "hello":
            baseline()
            raise FeedUnavailable(f"unexpected first message {hello.get('type')!r}")
        baseline()
        while True:
            try:
                text = socket.recv(timeout=RECONCILE_SECONDS)
            except TimeoutError:
                # Quiet for a while: read the log back once. The feed can drop events (a
                # publisher that has not seen the watch mark yet, a full outbox); the tracker
                # prints each entry once whichever path brings it.
                poll_once(session, tracker)
                continue
            except ConnectionClosed:
                return
            message = json.loads(text)
            if message.get("type") == "requests":
                for row in message.get("requests") or []:
                    tracker.offer(row)


def follow_poll(session: Session, tracker: Tracker) -> None:
    while True:
        poll_once(session, tracker)
        time.sleep(POLL_SECONDS)


def poll_once(session: Session, tracker: Tracker) -> None:
    """Read the newest entries back to the first one already settled, once every pending
    one has been seen again (bounded by POLL_MAX_PAGES), and offer them oldest first."""
    waiting = tracker.pending()
    fresh: list[dict[str, Any]] = []
    params = {"status": tracker.status, "path": tracker.path}
    for count, entry in enumerate(session.api.pages(session.hook_path("requests/"), **params)):
        key = str(entry.get("id"))
        waiting.discard(key)
        if tracker.settled(key) and not waiting:
            break
        fresh.append(entry)
        if count + 1 >= POLL_MAX_PAGES * 40:
            break
    for entry in reversed(fresh):
        tracker.offer(entry)
    # Pending entries older than the pages read: stop looking for them on every poll.
    for key in waiting:
        tracker.forget(key)
