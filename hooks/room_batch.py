"""Folding several rooms of one hook in one transaction: the multi-room batch.

A reduce task (hooks.tasks) folds its hook's pending rooms, not only the room that woke it:
`rooms_reduce_slice` picks the rooms whose oldest pending request is oldest, locks the state
rows of up to ROOMS_PER_BATCH of them with `FOR UPDATE SKIP LOCKED` (a room another worker
folds is skipped, never waited for), takes each locked room's oldest pending requests, folds
room after room in the slice's one sandbox child, and writes every room's outcomes, the
ledger and the new states in one transaction. A hook with 1,000 small rooms thus pays a
transaction, a task and a sandbox session per batch of rooms rather than per room (~58 ms a
room before: docs/performance.md), and one exchange with the child for all of its rooms
(hooks.fold.fold_rooms).

Exactly once and in order hold per room as in hooks.pipeline: a room's requests are numbered
and folded only under its state row's lock, after its seq, and a crash rolls the whole batch
back. When only one room is pending the slice is hooks.pipeline's (read-ahead, growing
batches); a batch the database refuses is folded again room by room there (halving down to
the request it refuses). docs/pipeline.md, "The multi-room batch".
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from hooks import broadcast, wakeup
from hooks.fold import Outcome, fold_rooms
from hooks.ledger import HookBusy, ledger_lookup, ledger_record
from hooks.models import MAIN_ROOM, Hook, Request, State
from hooks.pipeline import (
    BATCH_TARGET_SECONDS,
    FIRST_BATCH,
    BatchRefused,
    Sandboxes,
    _number,
    hook_reduce_slice,
    outcomes_save,
    routable,
    stale_reroute,
)
from hooks.refusals import constraints_check, refusal_check
from hooks.request_rows import StoredRequest, stored_fetch
from hooks.rooms import state_rows_ensure

# Rooms folded in one transaction, and how many the pick looks at: a second worker, finding
# the oldest ones locked, still finds rooms of its own.
ROOMS_PER_BATCH = 64
PICK_ROOMS = 512
ROOMS_BATCH_FACTOR = 4


def rooms_reduce_slice(
    *, hook_id: uuid.UUID | str, room: str = MAIN_ROOM, seconds: float | None = None
) -> tuple[int, bool]:
    """Fold the hook's pending rooms, oldest waiting first, for up to `seconds`; return (how
    many requests were numbered, whether any may be left). Raises HookBusy when rooms are
    pending but every one of them is being folded by another worker."""
    deadline = time.monotonic() + (seconds or settings.WR_REDUCE_SLICE_SECONDS)
    if connection.vendor != "postgresql":
        # The embedded default (SQLite, one process): no SKIP LOCKED; one room at a time, the
        # one that woke the task first (one task per hook: hooks.wakeup).
        version_id = _live_version(hook_id)
        pending = rooms_pending(hook_id, version_id, PICK_ROOMS) if version_id else []
        return _one_by_one(hook_id, deadline, rooms=list(dict.fromkeys([room, *pending])))
    stale_reroute(hook_id=hook_id)
    total = 0
    fanned_out = False
    size = min(FIRST_BATCH, settings.WR_BATCH_SIZE)
    # The rooms to fold next, oldest waiting first: picked once for several batches (the pick
    # scans the hook's pending index), again when used up.
    queue: list[str] = []
    with Sandboxes() as sandboxes:
        while True:
            version_id = _live_version(hook_id)
            if version_id is None:
                return total, False
            if not queue:
                queue = rooms_pending(hook_id, version_id, PICK_ROOMS)
            if not queue:
                return total, False
            rooms, queue = queue, []
            if len(rooms) == 1:
                # One room: the single-room slice, which reads ahead and grows its batches.
                try:
                    count, more = hook_reduce_slice(
                        hook_id=hook_id,
                        room=rooms[0],
                        seconds=max(0.001, deadline - time.monotonic()),
                        sandboxes=sandboxes,
                        reroute=False,
                    )
                except HookBusy:
                    if total:
                        return total, False  # another worker folds the last room
                    raise
                total += count
                if more or time.monotonic() >= deadline:
                    return total, more
                continue
            started = time.monotonic()
            try:
                count, folded, queue = _rooms_batch(hook_id, rooms, size, sandboxes)
            except BatchRefused:
                # One of these rooms holds a request the database refuses: the single-room
                # slices find it (by halving) and fold the rest.
                count, more = _one_by_one(hook_id, deadline, rooms=rooms)
                total += count
                if more:
                    return total, True
                continue
            if not folded:
                if queue:
                    continue  # those were locked or folded meanwhile: the next ones
                if total:
                    return total, False  # the rest is being folded by other workers
                raise HookBusy(f"{hook_id}: every pending room is locked")
            total += count
            if queue and not fanned_out:
                # More rooms wait than this batch took: one more task (the flag keeps it to
                # one queued) folds them on another worker meanwhile, skipping what this
                # one holds; it does the same when it starts, while rooms are left over.
                wakeup.wake(str(hook_id), room=queue[0])
                fanned_out = True
            now = time.monotonic()
            if now >= deadline:
                return total, True
            per_request = max((now - started) / max(count, 1), 1e-6)
            # Up to ROOMS_BATCH_FACTOR times WR_BATCH_SIZE: a batch of small rooms folds each
            # of them whole; the second's target still bounds how long it holds the locks.
            largest = ROOMS_BATCH_FACTOR * settings.WR_BATCH_SIZE
            size = max(1, min(largest, int(BATCH_TARGET_SECONDS / per_request)))


def _one_by_one(
    hook_id: uuid.UUID | str,
    deadline: float,
    *,
    rooms: list[str],
) -> tuple[int, bool]:
    """Single-room slices over `rooms`, within the deadline."""
    total = 0
    for name in rooms:
        left = deadline - time.monotonic()
        if left <= 0:
            return total, True
        try:
            count, more = hook_reduce_slice(hook_id=hook_id, room=name, seconds=left)
        except HookBusy:
            continue  # another worker folds it
        total += count
        if more:
            return total, True
    return total, False


def _live_version(hook_id: uuid.UUID | str) -> int | None:
    return Hook.objects.filter(pk=hook_id).values_list("live_version", flat=True).first()


def rooms_pending(hook_id: uuid.UUID | str, version_id: int, limit: int) -> list[str]:
    """The rooms with requests the live version may fold, the one whose oldest pending
    request is oldest first (one scan of the pending index)."""
    where = Q(hook_id=hook_id, outcome=Request.Outcome.PENDING) & routable(version_id)
    rows = (
        Request.objects.filter(where)
        .order_by()
        .values("room")
        .annotate(oldest=Min("id"))
        .order_by("oldest")
        .values_list("room", flat=True)[:limit]
    )
    return list(rows)


def pending_fetch_rooms(
    hook_id: uuid.UUID | str, rooms: list[str], per_room: int, version_id: int
) -> list[StoredRequest]:
    """The oldest `per_room` pending requests of each room, in the order they were stored."""
    table = Request._meta.db_table
    with connection.cursor() as cursor:
        # Only model metadata is interpolated; every value is a parameter.
        cursor.execute(
            f"SELECT p.id FROM unnest(%s::text[]) AS g(room) CROSS JOIN LATERAL ("  # noqa: S608
            f"SELECT id FROM {table} WHERE hook_id = %s AND room = g.room "
            "AND outcome = 'pending' AND (routed_by IS NULL OR routed_by = %s) "
            "ORDER BY id LIMIT %s) AS p",
            [rooms, str(hook_id), version_id, per_room],
        )
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    return stored_fetch(Q(id__in=ids), order_by="id", limit=len(ids))


def _states_lock(
    hook_id: uuid.UUID | str, version_id: int, rooms: list[str], limit: int
) -> list[State]:
    """Lock the state rows of up to `limit` of `rooms` (in that order) that no other worker
    holds; a row missing for the live version (a write stored while a publish replayed) is
    created first, for a room that has requests this version folds: rooms picked before a
    publish switched may have none left (routed elsewhere), and must not show as empty rooms."""
    existing = set(
        State.objects.filter(version_id=version_id, room__in=rooms).values_list("room", flat=True)
    )
    if missing := [name for name in rooms if name not in existing]:
        waiting = Request.objects.filter(
            Q(hook_id=hook_id, outcome=Request.Outcome.PENDING, room__in=missing)
            & routable(version_id)
        )
        names = sorted(set(waiting.order_by().values_list("room", flat=True).distinct()))
        if names:
            state_rows_ensure(hook_id=str(hook_id), version_id=version_id, rooms=names)
    table = State._meta.db_table
    return list(
        State.objects.raw(
            f"SELECT * FROM {table} WHERE version_id = %s AND room = ANY(%s) "  # noqa: S608
            "ORDER BY array_position(%s::text[], room::text) LIMIT %s FOR UPDATE SKIP LOCKED",
            [version_id, rooms, rooms, limit],
        )
    )


def _rooms_batch(
    hook_id: uuid.UUID | str, rooms: list[str], size: int, sandboxes: Sandboxes
) -> tuple[int, int, list[str]]:
    """One transaction over the first ROOMS_PER_BATCH of `rooms` that no other worker holds,
    about `size` requests in all. Returns (requests numbered, rooms folded, the rooms after
    the ones it locked, for the next batch)."""
    with transaction.atomic():
        hook = Hook.objects.filter(pk=hook_id).select_related("live_version").first()
        if hook is None or hook.live_version is None:
            return 0, 0, []
        version = hook.live_version
        states = _states_lock(hook_id, version.pk, rooms, min(ROOMS_PER_BATCH, max(2, size)))
        if not states:
            return 0, 0, []
        last = max(rooms.index(s.room) for s in states)
        rest = rooms[last + 1 :]
        # The switch to a new version takes these same locks: re-read the pointer under them.
        if (
            Hook.objects.filter(pk=hook_id).values_list("live_version", flat=True).get()
            != version.pk
        ):
            raise HookBusy(str(hook_id))
        per_room = max(1, -(-size // len(states)))
        pending = pending_fetch_rooms(hook_id, [s.room for s in states], per_room, version.pk)
        if not pending:
            return 0, 0, rest
        by_room: dict[str, list[StoredRequest]] = {}
        for request in pending:
            by_room.setdefault(request.room, []).append(request)

        key = sandboxes.key_for(hook, version)
        sandbox = sandboxes.get(hook, version, key)
        secrets = sandbox.secrets if sandbox is not None else {}

        def seen(keys: list[str]) -> dict[str, int]:
            return ledger_lookup(version, keys, claim=True)

        folded = [(s, by_room[s.room]) for s in states if by_room.get(s.room)]
        for state, requests in folded:
            _number(requests, after=state.seq)
        # Every room's reducer calls in one exchange with the child (hooks.fold.fold_rooms).
        foldings = fold_rooms(
            functions=version.functions,
            secrets=secrets,
            rooms=[(state.value, requests) for state, requests in folded],
            seen=seen,
            sandbox=sandbox,
        )
        done: list[StoredRequest] = []
        outcomes: list[Outcome] = []
        changed: list[State] = []
        for (state, requests), folding in zip(folded, foldings, strict=True):
            room_outcomes, state.value = folding.finish()
            if not room_outcomes:
                continue  # cut before its first request by a key another room applies
            room_done = requests[: len(room_outcomes)]
            state.seq = room_done[-1].seq or state.seq
            done += room_done
            outcomes += room_outcomes
            changed.append(state)
            # The room's last activity: when its fold ended (rooms in one batch keep the order
            # they were folded in, most recently active last).
            state.updated_at = timezone.now()
        if not done:
            return 0, 0, rest

        try:
            outcomes_save(done, outcomes)
            ledger_record(version, done, outcomes)
            states_save(changed)
            constraints_check()
        except Exception as error:
            if not refusal_check(error):
                raise
            raise BatchRefused(first_id=done[0].id, count=len(done), error=error) from error
        news: list[tuple[str, int, str]] = [(s.room, s.seq, s.value) for s in changed]
        transaction.on_commit(lambda: _announce(sandboxes, str(hook_id), version.pk, news, done))
        return len(done), len(changed), rest


def states_save(states: list[State]) -> None:
    """Write the rooms' new values, seqs and activity times in one statement (bulk_update's
    CASE per row and column costs more Python than the fold of a small room); the replay's
    multi-room steps too (hooks.replay)."""
    rows = [[s.id, s.seq, s.value, s.updated_at.isoformat()] for s in states]
    table = State._meta.db_table
    with connection.cursor() as cursor:
        # Only model metadata is interpolated; every value is a parameter.
        cursor.execute(
            f"UPDATE {table} AS s SET seq = (e->>1)::bigint, value = e->>2, "  # noqa: S608
            "updated_at = (e->>3)::timestamptz FROM json_array_elements(%s::json) AS e "
            "WHERE s.id = (e->>0)::bigint",
            [json.dumps(rows, ensure_ascii=False, separators=(",", ":"))],
        )


def _announce(
    sandboxes: Sandboxes,
    hook_id: str,
    version_id: int,
    news: list[tuple[str, int, str]],
    done: list[Any],
) -> None:
    """After commit: the rooms' state changes go out while the next batch folds; the slice
    waits for the previous batch's before sending more and for the last before it ends."""
    broadcast.sent_wait(sandboxes.sending)
    sandboxes.sending = broadcast.states_changed(
        hook_id=hook_id, version_id=version_id, changes=news
    )
    broadcast.requests_logged(hook_id=hook_id, requests=done)
