"""Presence records (hooks.live.presence) in process: every JOIN gets exactly one LEAVE, whoever
ends the connection, and crashes between the steps neither lose nor double one. The sockets
themselves, across real servers: tests/hooks/test_two_way_e2e.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from hooks import pipeline, public_calls
from hooks.live import presence
from hooks.models import Connection, Hook, Key, Request, State
from tests.conftest import write_key

pytestmark = pytest.mark.django_db(transaction=True)

SEATS = """
PRESENCE = True

def room(request, secrets):
    if request.method == "JOIN" and request.body["name"] == "banned":
        raise ValueError("no entry")
    return request.query.get("room")

def reducer(state, request, secrets):
    state = state or []
    state.append([request.method, request.body["name"] if request.method != "WS" else None])
    return state
"""


def key_of(hook: Hook) -> Key:
    return public_calls.key_resolve(token=write_key(hook), kind=Key.Kind.WRITE)


def join(hook: Hook, connection_id: str, name: str = "ann", room: str = "t") -> None:
    presence.join(
        key=key_of(hook), connection_id=connection_id, room=room, name=name, query={"room": [room]}
    )


def expire(connection_id: str) -> None:
    Connection.objects.filter(pk=connection_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def folded(hook: Hook, room: str = "t") -> list[list[str]]:
    pipeline.hook_reduce(hook_id=hook.pk, room=room)
    hook.refresh_from_db()
    return json.loads(State.objects.get(version_id=hook.live_version_id, room=room).value)


def test_join_and_leave_are_requests_folded_in_their_room(make_hook) -> None:
    hook = make_hook(SEATS)
    join(hook, "c1", "ann")
    assert [m.name for m in presence.members(str(hook.pk), "t")] == ["ann"]
    presence.leave("c1")
    presence.leave("c1")  # a second end of the same connection stores nothing
    assert folded(hook) == [["JOIN", "ann"], ["LEAVE", "ann"]]
    assert presence.members(str(hook.pk), "t") == []
    join_request = Request.objects.get(method="JOIN")
    assert join_request.headers["X-WebReducer-Connection"] == "c1"
    assert join_request.uuid == presence.request_id("c1", "JOIN")


def test_a_hook_without_the_flag_stores_no_presence_requests(make_hook) -> None:
    hook = make_hook(SEATS.replace("PRESENCE = True", ""))
    join(hook, "c1")
    assert [m.id for m in presence.members(str(hook.pk), "t")] == ["c1"]
    presence.leave("c1")
    assert not Request.objects.exists() and not Connection.objects.exists()


def test_a_reaper_ends_an_expired_connection_once_even_when_its_leave_was_half_done(
    make_hook,
) -> None:
    hook = make_hook(SEATS)
    join(hook, "dead")
    join(hook, "half")
    join(hook, "alive")
    expire("dead")
    # "half": its process stored the LEAVE and died before deleting the row.
    row = Connection.objects.get(pk="half")
    presence._presence_request(key_of(hook), "half", "LEAVE", "ann", row.query)
    expire("half")
    assert presence.members(str(hook.pk), "t") == [presence.Member("alive", "ann")]
    assert presence.reap() == 2
    assert presence.reap() == 0
    assert list(Connection.objects.values_list("pk", flat=True)) == ["alive"]
    leaves = Request.objects.filter(method="LEAVE").values_list("uuid", flat=True)
    assert sorted(leaves) == sorted([presence.request_id(c, "LEAVE") for c in ("dead", "half")])


def test_a_connection_whose_join_was_never_stored_gets_no_leave(make_hook) -> None:
    hook = make_hook(SEATS)
    # The process died between the row and its JOIN.
    Connection.objects.create(
        id="orphan",
        hook=hook,
        key=hook.keys.get(kind=Key.Kind.WRITE),
        room="t",
        process="gone",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert presence.reap() == 1
    assert not Request.objects.exists() and not Connection.objects.exists()


def test_a_join_the_room_function_refuses_is_refused_and_leaves_nothing_behind(make_hook) -> None:
    hook = make_hook(SEATS)
    with pytest.raises(public_calls.PublicError) as refused:
        join(hook, "c1", "banned")
    assert refused.value.status == 400 and refused.value.code == "room_error"
    assert not Connection.objects.exists()
    assert Request.objects.get().outcome == Request.Outcome.REJECTED  # logged, never folded
    presence.leave("c1")
    assert Request.objects.count() == 1


def test_renew_reports_the_connections_a_reaper_took(make_hook) -> None:
    hook = make_hook(SEATS)
    join(hook, "mine")
    join(hook, "taken")
    Connection.objects.filter(pk="taken").update(process="someone else")
    assert presence.renew({"mine", "taken"}) == {"taken"}


def test_threads_joining_at_once_share_one_process_name(monkeypatch) -> None:
    # Two names would split a process's rows: its upkeep, renewing under one, would close the
    # sockets joined under the other as lapsed.
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(presence, "_process", None)
    with ThreadPoolExecutor(8) as pool:
        names = set(pool.map(lambda _: presence.process_id(), range(64)))
    assert len(names) == 1
