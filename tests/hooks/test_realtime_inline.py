"""Live hubs deliver the state a `state.changed` notification carries without reading the
database, and fall back to a read whenever the message cannot be trusted on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone

from hooks import broadcast
from hooks.live import db as live_db
from hooks.live.state import Delivery
from hooks.live.subscription import Subscription
from hooks.models import Hook, Key, State, Version
from tests.conftest import read_key
from tests.hooks.realtime_helpers import COUNTER, live_slots_clean  # noqa: F401 (a fixture)
from tests.hooks.test_realtime import closed_with, connect, run, write

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_slots_clean")]


@pytest.fixture
def db_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions live code runs on its database thread, from now on. Async
    live code can reach the database only through that thread (a sync ORM call in the event
    loop raises SynchronousOnlyOperation)."""
    calls: list[str] = []
    original = live_db.reads.run

    async def counting(func: Callable[..., Any], *args: Any) -> Any:
        calls.append(func.__name__)
        return await original(func, *args)

    monkeypatch.setattr(live_db.reads, "run", counting)
    return calls


@database_sync_to_async
def notify(hook: Hook, seq: int, **kwargs: Any) -> None:
    broadcast.state_changed(hook_id=str(hook.pk), seq=seq, **kwargs)


@database_sync_to_async
def store(version_id: int, seq: int, value: str) -> None:
    State.objects.filter(version_id=version_id).update(seq=seq, value=value)


async def state_of(ws: Any) -> tuple[int, Any]:
    message = await ws.receive_json_from(timeout=10)
    assert message["type"] == "state", message
    return message["seq"], message["body"]


def test_the_hub_delivers_a_carried_state_without_reading_the_database(
    make_hook, eager_tasks, db_calls
) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)
    version_id = hook.live_version_id
    assert version_id is not None

    async def scenario() -> None:
        ws = await connect(f"/read/{token}/live")
        assert await state_of(ws) == (0, None)
        # The hub's first change reads the hook, its live version and the keys.
        assert await write(hook, {"n": 1}) == 202
        assert await state_of(ws) == (1, {"count": 1, "last": {"n": 1}})
        db_calls.clear()

        # The database holds another text than the message: only the message can be the
        # source of what is delivered.
        await store(version_id, 2, '{"from": "database"}')
        await notify(hook, 2, version_id=version_id, value='{"from": "message"}')
        assert await state_of(ws) == (2, {"from": "message"})
        await store(version_id, 3, '{"from": "database"}')
        await notify(hook, 3, version_id=version_id, value='{"from": "message", "n": 3}')
        assert await state_of(ws) == (3, {"from": "message", "n": 3})
        assert db_calls == []

        # Another version than the hub knows: it re-reads (and delivers what the database has).
        await store(version_id, 4, '{"from": "database"}')
        await notify(hook, 4, version_id=version_id + 1000, value='{"from": "message"}')
        assert await state_of(ws) == (4, {"from": "database"})
        assert db_calls == ["snapshot_read"]

        # No value (what the pipeline sends for states over WR_LIVE_INLINE_STATE_BYTES): a read.
        await store(version_id, 5, '{"from": "database", "n": 5}')
        await notify(hook, 5)
        assert await state_of(ws) == (5, {"from": "database", "n": 5})
        assert db_calls == ["snapshot_read"] * 2

        # Older than what was delivered (e.g. a late message from another worker): a read,
        # which finds nothing newer, and the subscriber gets nothing.
        await notify(hook, 2, version_id=version_id, value='{"from": "old message"}')
        assert await ws.receive_nothing(timeout=0.5)
        assert db_calls == ["snapshot_read"] * 3
        await ws.disconnect()

    run(scenario)


def test_the_hub_checks_a_new_subscribers_key_before_trusting_carried_states(
    make_hook, eager_tasks, db_calls
) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)
    other = Key.objects.create(hook=hook, kind=Key.Kind.READ)
    version_id = hook.live_version_id
    assert version_id is not None

    async def commit(seq: int) -> None:
        await store(version_id, seq, str(seq))
        await notify(hook, seq, version_id=version_id, value=str(seq))

    async def scenario() -> None:
        first = await connect(f"/read/{token}/live")
        assert (await state_of(first))[0] == 0
        assert await write(hook, {"n": 1}) == 202
        assert (await state_of(first))[0] == 1
        await commit(2)
        assert await state_of(first) == (2, 2)

        second = await connect(f"/read/{other.token}/live")
        assert await state_of(second) == (2, 2)
        db_calls.clear()
        # A key the hub has not checked yet: one read.
        await commit(3)
        assert await state_of(first) == (3, 3)
        assert await state_of(second) == (3, 3)
        assert db_calls == ["snapshot_read"]
        db_calls.clear()
        await commit(4)
        assert await state_of(first) == (4, 4)
        assert await state_of(second) == (4, 4)
        assert db_calls == []
        await first.disconnect()
        await second.disconnect()

    run(scenario)


def test_it_closes_connections_of_a_paused_key_within_a_second_between_carried_states(
    make_hook, eager_tasks
) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)
    other = Key.objects.create(hook=hook, kind=Key.Kind.READ)
    version_id = hook.live_version_id
    assert version_id is not None

    async def scenario() -> None:
        paused = await connect(f"/read/{token}/live")
        kept = await connect(f"/read/{other.token}/live")
        for ws in (paused, kept):
            await state_of(ws)
        assert await write(hook, {"n": 1}) == 202
        await store(version_id, 2, "2")
        await notify(hook, 2, version_id=version_id, value="2")
        for ws in (paused, kept):
            while (await state_of(ws))[0] < 2:
                pass
        await database_sync_to_async(Key.objects.filter(token=token).update)(
            revoked_at=timezone.now()
        )
        await database_sync_to_async(broadcast.key_changed)(hook_id=str(hook.pk), key_id=None)
        assert await asyncio.wait_for(closed_with(paused), 1) == 4404
        # The cached key check was renewed: carried states still reach the usable key only.
        await store(version_id, 3, "3")
        await notify(hook, 3, version_id=version_id, value="3")
        assert await state_of(kept) == (3, 3)
        await kept.disconnect()

    run(scenario)


def test_a_publish_delivers_the_new_versions_state_at_the_same_seq(
    make_hook, eager_tasks, db_calls
) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)
    old_version = hook.live_version_id
    assert old_version is not None

    @database_sync_to_async
    def publish(seq: int, value: str) -> int:
        # What hooks.replay does when a rebuilt version goes live at the live head's seq.
        version = Version.objects.create(
            hook=hook, number=2, code=COUNTER, status=Version.Status.PUBLISHED
        )
        State.objects.create(hook=hook, version=version, seq=seq, value=value)
        Hook.objects.filter(pk=hook.pk).update(live_version=version)
        return version.pk

    async def scenario() -> None:
        ws = await connect(f"/read/{token}/live")
        await state_of(ws)
        assert await write(hook, {"n": 1}) == 202
        assert (await state_of(ws))[0] == 1
        await store(old_version, 2, '"old code"')
        await notify(hook, 2, version_id=old_version, value='"old code"')
        assert await state_of(ws) == (2, "old code")
        new_version = await publish(2, '"new code"')
        await notify(hook, 2)  # the replay's notification: no value
        assert await state_of(ws) == (2, "new code")
        # A late message about the old version changes nothing; the new one's are carried.
        await notify(hook, 2, version_id=old_version, value='"old code"')
        assert await ws.receive_nothing(timeout=0.5)
        db_calls.clear()
        await store(new_version, 3, '"new code, 3"')
        await notify(hook, 3, version_id=new_version, value='"new code, 3"')
        assert await state_of(ws) == (3, "new code, 3")
        assert db_calls == []
        await ws.disconnect()

    run(scenario)


def test_a_subscription_never_goes_back_to_an_earlier_seq_or_version() -> None:
    def state(seq: int, version: int) -> Delivery:
        return Delivery(seq=seq, version_id=version, body_json="{}")

    subscription = Subscription(hook_id="h", key_id=1, params=())
    offers = [(1, 1), (2, 1), (1, 1), (2, 2), (2, 1), (3, 2), (3, 1), (2, 3)]
    taken = []
    for seq, version in offers:
        subscription.offer(state(seq, version))
        if subscription.pending is not None:
            taken.append((subscription.pending.seq, subscription.pending.version_id))
            subscription.pending = None
            subscription.last_seq, subscription.last_version = taken[-1]
    # A later version at the same seq is a publish; an earlier one is a late message.
    assert taken == [(1, 1), (2, 1), (2, 2), (3, 2)]


@override_settings(WR_LIVE_INLINE_STATE_BYTES=10)
def test_state_changed_carries_the_state_up_to_the_configured_size(monkeypatch) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        broadcast, "broadcast", lambda group, message: sent.append((group, message))
    )
    broadcast.state_changed(hook_id="h", seq=1, version_id=7, value='"abcdefgh"')  # 10 bytes
    broadcast.state_changed(hook_id="h", seq=2, version_id=7, value='"abcdefghi"')  # 11 bytes
    broadcast.state_changed(hook_id="h", seq=3, version_id=7, value='"ééééé"')  # 5 chars, 12 bytes
    broadcast.state_changed(hook_id="h", seq=4)  # the callers that pass only the seq
    assert sent == [
        ("hook.h", {"type": "state.changed", "seq": 1, "version_id": 7, "value": '"abcdefgh"'}),
        ("hook.h", {"type": "state.changed", "seq": 2, "version_id": 7}),
        ("hook.h", {"type": "state.changed", "seq": 3, "version_id": 7}),
        ("hook.h", {"type": "state.changed", "seq": 4}),
    ]


def test_a_long_fan_out_lets_the_event_loop_run_other_work(monkeypatch) -> None:
    # Notifications must keep arriving while a hub serves thousands of connections, or a hub
    # that fell behind would send old states one pass after another.
    from hooks.live import hub as live_hub

    monkeypatch.setattr(live_hub, "FAN_OUT_SLICE_SECONDS", 0.0)

    async def scenario() -> tuple[list[int], list[int]]:
        offered: list[int] = []
        seen_by_other_work: list[int] = []

        class Counting(Subscription):
            def offer(self, delivery: Delivery) -> None:
                offered.append(delivery.seq)

        async def other_work() -> None:
            while len(offered) < 200:
                seen_by_other_work.append(len(offered))
                await asyncio.sleep(0)

        delivery = Delivery(seq=1, version_id=1, body_json="{}")
        subscribers = [Counting(hook_id="h", key_id=1, params=()) for _ in range(200)]
        other = asyncio.ensure_future(other_work())
        await asyncio.sleep(0)
        await live_hub.Hub._fan_out(None, ((s, delivery) for s in subscribers))  # type: ignore[arg-type]
        await other
        return offered, seen_by_other_work

    offered, seen = asyncio.run(scenario())
    assert offered == [1] * 200
    # The other task ran between slices of the pass, not only before and after it.
    assert any(0 < n < 200 for n in seen)
