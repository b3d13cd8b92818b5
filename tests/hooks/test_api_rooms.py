"""The rooms in the management API: list (cursor pages, prefix, recent first), delete one,
`?room=` on state/ and requests/, and publish, dry run and archive over rooms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from hooks.models import MAIN_ROOM, Request, State
from tests.conftest import read_key, write_key
from tests.hooks.api import url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_tasks")]

COUNT = """
def reducer(state, request, secrets):
    state = state or {"n": 0, "seqs": []}
    state["n"] += 1
    state["seqs"].append(request.seq)
    return state
"""

BY_PLAYER = (
    COUNT
    + """
def room(request, secrets):
    return (request.body or {}).get("player")
"""
)


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def write(hook: Any, body: Any = None, room: str | None = None) -> Any:
    query = f"?room={room}" if room else ""
    return Client().post(
        f"/write/{write_key(hook)}{query}", json.dumps(body or {}), content_type="application/json"
    )


def test_it_lists_rooms_with_seq_size_and_last_activity_by_name_in_pages(make_hook, api) -> None:
    hook = make_hook(COUNT)
    for n in range(105):
        write(hook, room=f"r{n:03d}")
    write(hook, room="r000")

    first = api.get(url(hook, "rooms")).json()
    assert [r["room"] for r in first["results"]][:3] == [None, "r000", "r001"]
    assert first["results"][1]["seq"] == 2
    assert first["results"][1]["size"] == len(
        State.objects.get(hook=hook, room="r000", version_id=hook.live_version_id).value
    )
    assert first["results"][1]["last_activity"]
    assert len(first["results"]) == 100
    second = api.get(first["next"]).json()
    names = [r["room"] for r in first["results"] + second["results"]]
    assert len(names) == 106 and len(set(names)) == 106


def test_it_filters_rooms_by_prefix_and_lists_the_most_recently_active_first(
    make_hook, api
) -> None:
    hook = make_hook(COUNT)
    for name in ["match-1", "match-2", "lobby", "match-3"]:
        write(hook, room=name)
    write(hook, room="match-1")

    prefixed = api.get(url(hook, "rooms"), {"prefix": "match-"}).json()["results"]
    assert [r["room"] for r in prefixed] == ["match-1", "match-2", "match-3"]
    recent = api.get(url(hook, "rooms"), {"prefix": "match-", "order": "recent"}).json()
    assert [r["room"] for r in recent["results"]] == ["match-1", "match-3", "match-2"]


def test_state_and_requests_take_a_room(make_hook, api) -> None:
    hook = make_hook(COUNT)
    write(hook, room="a")
    write(hook, room="a")
    write(hook)

    state = api.get(url(hook, "state"), {"room": "a"}).json()
    assert (state["room"], state["seq"], state["state"]["n"]) == ("a", 2, 2)
    main = api.get(url(hook, "state")).json()
    assert ("room" in main, main["seq"]) == (False, 1)
    unknown = api.get(url(hook, "state"), {"room": "nobody"}).json()
    assert (unknown["seq"], unknown["state"]) == (0, None)
    log = api.get(url(hook, "requests"), {"room": "a"}).json()["results"]
    assert [(e["room"], e["seq"]) for e in log] == [("a", 2), ("a", 1)]
    assert log[0]["state_diff"] is not None  # from the room's seq 1, not the main room's
    main_log = api.get(url(hook, "requests"), {"room": ""}).json()["results"]
    assert [(e["room"], e["seq"]) for e in main_log] == [(None, 1)]
    bad = api.get(url(hook, "state"), {"room": "no spaces"})
    assert bad.status_code == 400
    assert api.get(url(hook, "requests"), {"room": "no spaces"}).status_code == 400


def test_deleting_a_room_removes_its_state_and_history_only(make_hook, api) -> None:
    hook = make_hook(COUNT)
    write(hook, room="gone")
    write(hook, room="kept")

    assert api.delete(url(hook, "rooms", "gone")).status_code == 204
    assert not Request.objects.filter(hook=hook, room="gone").exists()
    assert not State.objects.filter(hook=hook, room="gone").exists()
    assert Request.objects.filter(hook=hook, room="kept").count() == 1
    assert Client().get(f"/read/{read_key(hook)}?room=gone")["X-WebReducer-Seq"] == "0"
    assert api.delete(url(hook, "rooms", "gone")).status_code == 404
    assert api.delete(url(hook, "rooms", "bad name")).status_code == 404
    # A write starts the room again from seq 1.
    write(hook, room="gone")
    assert api.get(url(hook, "state"), {"room": "gone"}).json()["seq"] == 1


def test_another_user_cannot_list_read_or_delete_your_rooms(make_hook, bob, client_for) -> None:
    hook = make_hook(COUNT)
    write(hook, room="secret-room")
    outsider = client_for(bob)

    for response in [
        outsider.get(url(hook, "rooms")),
        outsider.get(url(hook, "state"), {"room": "secret-room"}),
        outsider.get(url(hook, "requests"), {"room": "secret-room"}),
        outsider.delete(url(hook, "rooms", "secret-room")),
    ]:
        assert response.status_code == 404
        assert "secret-room" not in response.content.decode()
    assert State.objects.filter(hook=hook, room="secret-room").exists()


def test_archive_resets_every_room(make_hook, api) -> None:
    hook = make_hook(COUNT)
    write(hook, room="a")
    write(hook)
    assert api.post(url(hook, "archive")).status_code in (200, 204)
    rooms = api.get(url(hook, "rooms")).json()["results"]
    assert [(r["room"], r["seq"]) for r in rooms] == [(None, 0)]
    assert Client().get(f"/read/{read_key(hook)}?room=a")["X-WebReducer-Seq"] == "0"


def test_a_publish_that_repartitions_the_history_folds_each_new_room_from_its_requests(
    make_hook, api
) -> None:
    hook = make_hook(COUNT)  # rooms chosen by ?room=
    for n, (room, player) in enumerate([("x", "p1"), ("x", "p2"), ("y", "p1"), ("y", "p1")]):
        write(hook, {"player": player, "n": n}, room=room)
    assert api.put(url(hook, "draft"), {"code": BY_PLAYER}, format="json").status_code == 200

    dry = api.post(url(hook, "dry-run"), {}, format="json").json()
    assert dry["rooms"]["count"] == 2  # p1, p2 (nothing in the main room)
    shown = {r["room"]: r for r in dry["rooms"]["shown"]}
    assert shown["p1"]["seq"] == 3 and shown["p2"]["seq"] == 1
    assert State.objects.filter(hook=hook, room="p1").count() == 0  # a dry run changes nothing

    assert api.post(url(hook, "publish"), {}, format="json").status_code == 202
    hook.refresh_from_db()
    live = {s.room: s for s in State.objects.filter(version_id=hook.live_version_id)}
    assert set(live) == {MAIN_ROOM, "p1", "p2"}
    assert json.loads(live["p1"].value) == {"n": 3, "seqs": [1, 2, 3]}
    assert json.loads(live["p2"].value) == {"n": 1, "seqs": [1]}
    logged = Request.objects.filter(hook=hook).order_by("id").values_list("room", "seq")
    assert list(logged) == [("p1", 1), ("p2", 1), ("p1", 2), ("p1", 3)]
    # New writes are routed by the new code.
    write(hook, {"player": "p2"}, room="x")
    assert api.get(url(hook, "state"), {"room": "p2"}).json()["seq"] == 2
    progress = api.get(url(hook)).json()
    assert progress["replay"] is None or progress["replay"]["status"] == "done"


def test_a_strict_publish_whose_room_fails_on_history_is_refused_and_nothing_moves(
    make_hook, api
) -> None:
    hook = make_hook(COUNT)
    write(hook, {"player": "p1"}, room="x")
    write(hook, {}, room="y")  # no player: the new room() raises on it
    raising = COUNT + "\ndef room(request, secrets):\n    return request.body['player']\n"
    api.put(url(hook, "draft"), {"code": raising}, format="json")

    api.post(url(hook, "publish"), {"strict": True}, format="json")
    hook.refresh_from_db()
    assert hook.live_version.number == 1
    assert set(Request.objects.filter(hook=hook).order_by("id").values_list("room", flat=True)) == {
        "x",
        "y",
    }
