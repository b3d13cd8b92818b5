"""A slice of several batches: the next batch folds in the sandbox (read ahead) while the one
before it is written. Keys, failures and state must carry across batches exactly as within one,
and a read-ahead batch must be thrown away when the state moved under it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from hooks import pipeline
from hooks.models import Hook, Request, State
from hooks.services import secret_set
from tests.conftest import write_key

pytestmark = pytest.mark.django_db

CODE = """
def reducer(state, request, secrets):
    state = state or {"seqs": [], "names": [], "secret": None}
    if request.body.get("fail"):
        raise ValueError("refused")
    state["seqs"].append(request.seq)
    state["names"].append(request.body["name"])
    state["secret"] = secrets.get("TOKEN")
    return state
"""


def send(client: Client, hook: Hook, name: str, key: str | None = None, fail: bool = False) -> None:
    headers = {"Idempotency-Key": key} if key else {}
    body = json.dumps({"name": name, "fail": fail})
    response = client.post(
        f"/write/{write_key(hook)}", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 202, response.content


def live(hook: Hook) -> tuple[int, Any]:
    hook.refresh_from_db()
    state = State.objects.get(version_id=hook.live_version_id)
    return state.seq, json.loads(state.value)


@contextmanager
def before_the_chain_starts(monkeypatch: Any, commit: Callable[[], None]) -> Iterator[None]:
    """Run `commit` (what other writers commit meanwhile) just before the read-ahead lists the
    room's pending ids (pipeline._chain_start), while the block runs."""
    chain_start = pipeline._chain_start

    def committed_first(*args: Any, **kwargs: Any) -> Any:
        commit()
        return chain_start(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "_chain_start", committed_first)
        yield


def outcomes(hook: Hook) -> list[tuple[str, str, int | None]]:
    rows = Request.objects.filter(hook=hook).order_by("id")
    return [(json.loads(bytes(r.body))["name"], r.outcome, r.seq) for r in rows]


def test_keys_and_failures_carry_across_read_ahead_batches(
    make_hook: Any, client: Client, settings: Any
) -> None:
    settings.WR_BATCH_SIZE = 3
    hook = make_hook(CODE)
    send(client, hook, "a", key="k1")
    send(client, hook, "b", key="k2", fail=True)
    send(client, hook, "c")
    # Next batch (read ahead while the first is written): k1 was applied one batch ago, k2
    # failed there and so was never applied.
    send(client, hook, "d", key="k1")
    send(client, hook, "e", key="k2")
    send(client, hook, "f")
    send(client, hook, "g", key="k2")  # a third batch: k2 was applied in the second

    assert pipeline.hook_reduce(hook_id=hook.pk) == 7

    assert outcomes(hook) == [
        ("a", "applied", 1),
        ("b", "failed", 2),
        ("c", "applied", 3),
        ("d", "duplicate", 4),
        ("e", "applied", 5),
        ("f", "applied", 6),
        ("g", "duplicate", 7),
    ]
    seq, state = live(hook)
    assert seq == 7
    assert state["seqs"] == [1, 3, 5, 6]
    assert state["names"] == ["a", "c", "e", "f"]
    first = Request.objects.get(hook=hook, seq=1)
    assert Request.objects.get(hook=hook, seq=4).duplicate_of_id == first.pk


def test_a_read_ahead_batch_is_dropped_when_another_worker_applied_it(
    make_hook: Any, client: Client, settings: Any
) -> None:
    settings.WR_BATCH_SIZE = 2
    hook = make_hook(CODE)
    for name in "abcdef":
        send(client, hook, name)

    with pipeline.Sandboxes() as sandboxes:
        count, ahead, drained = pipeline._reduce_batch(hook.pk, 2, sandboxes, read_ahead=True)
        assert (count, drained) == (2, False)
        assert ahead is not None and [r.seq for r in ahead.requests] == [3, 4]
        # Meanwhile another worker applies the next batch (the same requests, c and d).
        assert pipeline._reduce_batch(hook.pk, 2)[0] == 2
        # The read-ahead batch is stale: it is dropped, and e and f are folded instead.
        count, ahead, drained = pipeline._reduce_batch(hook.pk, 2, sandboxes, ahead=ahead)
        assert (count, ahead) == (2, None)

    assert outcomes(hook) == [(name, "applied", seq) for seq, name in enumerate("abcdef", 1)]
    assert live(hook) == (6, {"seqs": [1, 2, 3, 4, 5, 6], "names": list("abcdef"), "secret": None})


def test_a_read_ahead_batch_is_folded_again_after_a_secret_changes(
    make_hook: Any, client: Client, settings: Any
) -> None:
    settings.WR_BATCH_SIZE = 2
    hook = make_hook(CODE)
    secret_set(hook=hook, name="TOKEN", value="old-value")
    for name in "abcd":
        send(client, hook, name)

    with pipeline.Sandboxes() as sandboxes:
        _, ahead, _ = pipeline._reduce_batch(hook.pk, 2, sandboxes, read_ahead=True)
        assert ahead is not None
        hook.refresh_from_db()
        secret_set(hook=hook, name="TOKEN", value="new-value")
        count, ahead, _ = pipeline._reduce_batch(hook.pk, 2, sandboxes, ahead=ahead)
        assert (count, ahead) == (2, None)

    seq, state = live(hook)
    assert (seq, state["names"], state["secret"]) == (4, list("abcd"), "new-value")


COUNTING = """
CALLS = [0]

def reducer(state, request, secrets):
    CALLS[0] += 1
    return {"calls_in_this_child": CALLS[0]}

def responder(request, secrets):
    return {"reducer_calls_seen_here": CALLS[0]}
"""


def test_the_next_slice_reuses_the_warm_reducer_child_but_responders_never_share_it(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(COUNTING)
    url = f"/write/{write_key(hook)}"
    first = client.post(url, "{}", content_type="application/json")
    assert pipeline.hook_reduce(hook_id=hook.pk) == 1
    second = client.post(url, "{}", content_type="application/json")
    assert pipeline.hook_reduce(hook_id=hook.pk) == 1

    # One child folded both slices (no fork, no module load for the second) ...
    assert live(hook) == (2, {"calls_in_this_child": 2})
    # ... and the responder's warm child is another one, which never ran the reducer.
    assert first.json() == second.json() == {"reducer_calls_seen_here": 0}


def test_a_short_batch_ends_the_slice_without_looking_again(make_hook: Any, client: Client) -> None:
    """A fetch that found fewer requests than it asked for saw everything pending: the slice
    ends without a second fetch (a request stored later queues its own task)."""
    hook = make_hook(CODE)
    for name in "abc":
        send(client, hook, name)

    def fetches(queries: Any) -> int:
        return sum('FROM "hooks_request"' in q["sql"] and "pending" in q["sql"] for q in queries)

    with pipeline.Sandboxes() as sandboxes:
        with CaptureQueriesContext(connection) as captured:
            count, ahead, drained = pipeline._reduce_batch(hook.pk, 5, sandboxes, read_ahead=True)
        assert (count, ahead, drained) == (3, None, True)
        assert fetches(captured.captured_queries) == 1

        send(client, hook, "d")
        send(client, hook, "e")
        # A full batch (2 of 2) may have more behind it: that one looks ahead (the fetch, and
        # the chain's list of what follows, pipeline._chain_start: empty here).
        with CaptureQueriesContext(connection) as captured:
            count, ahead, drained = pipeline._reduce_batch(hook.pk, 2, sandboxes, read_ahead=True)
        assert (count, ahead, drained) == (2, None, True)
        assert fetches(captured.captured_queries) == 2

    assert outcomes(hook) == [(name, "applied", seq) for seq, name in enumerate("abcde", 1)]


def test_the_read_ahead_walks_the_pending_index_once_per_chain(
    make_hook: Any, client: Client, settings: Any
) -> None:
    """The read-aheads take their requests by id from one list of the room's pending ids
    (pipeline.Chain), not from a fetch at the room's oldest pending entry per batch: the
    pending index keeps an entry for every request folded since the last VACUUM, and such a
    fetch walked them all for every batch of a replay (issue 18)."""
    settings.WR_BATCH_SIZE = 2
    hook = make_hook(CODE)
    for name in "abcdef":
        send(client, hook, name)
    ids = list(Request.objects.filter(hook=hook).order_by("id").values_list("id", flat=True))

    def walks(queries: Any) -> list[str]:
        return [
            str(q["sql"])
            for q in queries
            if 'FROM "hooks_request"' in q["sql"]
            and "pending" in q["sql"]
            and " IN (" not in q["sql"]
        ]

    with pipeline.Sandboxes() as sandboxes:
        with CaptureQueriesContext(connection) as captured:
            _, ahead, _ = pipeline._reduce_batch(hook.pk, 2, sandboxes, read_ahead=True)
        assert ahead is not None and ahead.chain.ids == ids[4:]
        assert len(walks(captured.captured_queries)) == 2  # the batch's fetch, the chain's
        with CaptureQueriesContext(connection) as captured:
            _, ahead, _ = pipeline._reduce_batch(
                hook.pk, 2, sandboxes, ahead=ahead, read_ahead=True
            )
        assert walks(captured.captured_queries) == []
        by_id = [q["sql"] for q in captured.captured_queries if " IN (" in q["sql"]]
        assert len(by_id) == 1 and f"{ids[4]}, {ids[5]}" in by_id[0]
        if connection.vendor == "postgresql":
            # Planned as primary-key lookups, not a range of the pending index.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")
                cursor.execute(f"EXPLAIN {by_id[0]}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                cursor.execute("SET LOCAL enable_seqscan = on")
            assert "hooks_request_pkey" in plan, plan
        assert pipeline._reduce_batch(hook.pk, 2, sandboxes, ahead=ahead)[0] == 2

    assert outcomes(hook) == [(name, "applied", seq) for seq, name in enumerate("abcdef", 1)]


def test_a_request_that_commits_behind_the_read_ahead_is_folded_by_the_next_slice(
    make_hook: Any, client: Client, settings: Any
) -> None:
    """Ids are taken before commit: a write can become visible with an id below a batch the
    slice already fetched. One that commits after the chain's list was read is folded after
    what the list holds (it was stored after them), once, by the next slice (its write queued
    that task)."""
    settings.WR_BATCH_SIZE = 2
    hook = make_hook(CODE)
    for name in "abxcd":
        send(client, hook, name)
    rows = list(Request.objects.filter(hook=hook).order_by("id"))
    late = rows[2]
    # Not visible yet when the first batch and the chain's list are read.
    Request.objects.filter(pk=late.pk).update(outcome=Request.Outcome.REJECTED)
    with pipeline.Sandboxes() as sandboxes:
        count, ahead, _ = pipeline._reduce_batch(hook.pk, 2, sandboxes, read_ahead=True)
        assert ahead is not None and [r.id for r in ahead.requests] == [rows[3].pk, rows[4].pk]
        Request.objects.filter(pk=late.pk).update(outcome=Request.Outcome.PENDING)  # it commits
        count, ahead, drained = pipeline._reduce_batch(
            hook.pk, 2, sandboxes, ahead=ahead, read_ahead=True
        )
        assert (count, ahead, drained) == (2, None, True)

    assert pipeline.hook_reduce(hook_id=hook.pk) == 1
    assert [
        (r.pk, r.outcome, r.seq) for r in Request.objects.filter(hook=hook).order_by("seq")
    ] == [
        (rows[0].pk, "applied", 1),
        (rows[1].pk, "applied", 2),
        (rows[3].pk, "applied", 3),
        (rows[4].pk, "applied", 4),
        (late.pk, "applied", 5),
    ]
    assert live(hook)[1]["names"] == ["a", "b", "c", "d", "x"]


def test_a_write_acked_before_the_next_is_stored_is_folded_before_it(
    make_hook: Any, client: Client, settings: Any, monkeypatch: Any
) -> None:
    """The order a client sees. Ids are taken before commit: "x" took its id between "a" and
    "b" and commits only after the batch [a, b] was fetched; then the client, acked, sends "c"
    and "d". The read-ahead ("after b") would find c and d, and fold them before x. It counts
    what it would pass over and gives way to the next fetch from the room's start, which
    folds x first (the CI failure of
    test_a_server_killed_mid_stream_of_trips_lost_no_acked_write: a socket's writes 1-24
    folded after its 25th)."""
    settings.WR_BATCH_SIZE = 2
    hook = make_hook(CODE)
    for name in "axb":
        send(client, hook, name)
    late = Request.objects.filter(hook=hook).order_by("id")[1]
    Request.objects.filter(pk=late.pk).update(outcome=Request.Outcome.REJECTED)  # uncommitted

    def x_commits_then_c_and_d_are_sent() -> None:
        Request.objects.filter(pk=late.pk).update(outcome=Request.Outcome.PENDING)
        send(client, hook, "c")
        send(client, hook, "d")

    with before_the_chain_starts(monkeypatch, x_commits_then_c_and_d_are_sent):
        with pipeline.Sandboxes() as sandboxes:
            count, ahead, drained = pipeline._reduce_batch(hook.pk, 2, sandboxes, read_ahead=True)
        # Nothing read ahead, and not drained: x waits below the batch.
        assert (count, ahead, drained) == (2, None, False)
    assert pipeline.hook_reduce(hook_id=hook.pk) == 3
    assert live(hook)[1]["names"] == ["a", "b", "x", "c", "d"]
    assert [name for name, outcome, _ in sorted(outcomes(hook), key=lambda o: o[2] or 0)] == [
        "a",
        "b",
        "x",
        "c",
        "d",
    ]


def test_a_trip_whose_rows_straddle_the_batch_is_not_split(
    make_hook: Any, client: Client, settings: Any, monkeypatch: Any
) -> None:
    """One transaction (a socket's trip) stores t1 and t2, its ids interleaved with another
    writer's a and b, and commits after the batch [a, b] was fetched. The read-ahead "after b"
    would take t2 and fold it before t1, which the same socket sent first (the second CI
    failure: a socket's write 32 folded before its 1-31). A bound on the ids handed out
    before the fetch does not help: t2 took its id before it."""
    settings.WR_BATCH_SIZE = 2
    hook = make_hook(CODE)
    for name in ("a", "t1", "b", "t2"):
        send(client, hook, name)
    rows = list(Request.objects.filter(hook=hook).order_by("id"))
    trip = [rows[1].pk, rows[3].pk]
    Request.objects.filter(pk__in=trip).update(outcome=Request.Outcome.REJECTED)

    def the_trip_commits() -> None:
        Request.objects.filter(pk__in=trip).update(outcome=Request.Outcome.PENDING)

    with before_the_chain_starts(monkeypatch, the_trip_commits):
        with pipeline.Sandboxes() as sandboxes:
            count, ahead, drained = pipeline._reduce_batch(hook.pk, 2, sandboxes, read_ahead=True)
        assert (count, ahead, drained) == (2, None, False)
    assert pipeline.hook_reduce(hook_id=hook.pk) == 2
    assert live(hook)[1]["names"] == ["a", "b", "t1", "t2"]


def test_a_read_ahead_batch_cut_by_a_repeated_key_keeps_the_rest_first(
    make_hook: Any, client: Client, settings: Any
) -> None:
    """A key repeated inside a batch cuts it before the repeat (hooks.fold); in a read-ahead
    from the chain's list, the rest of the batch goes back to the front of the list, so it
    is folded before what followed it."""
    settings.WR_BATCH_SIZE = 2
    hook = make_hook(CODE)
    send(client, hook, "a")
    send(client, hook, "b")
    send(client, hook, "c", key="k")
    send(client, hook, "d", key="k")
    send(client, hook, "e")

    assert pipeline.hook_reduce(hook_id=hook.pk) == 5
    assert outcomes(hook) == [
        ("a", "applied", 1),
        ("b", "applied", 2),
        ("c", "applied", 3),
        ("d", "duplicate", 4),
        ("e", "applied", 5),
    ]
