"""Publishing: a new version rebuilds every room from the whole history, blue/green (docs/api.md, "Publishing").

The new version gets its own State rows and folds every accepted request in the order they were
stored (by id), in the background, while the live version keeps serving reads and applying new
writes. The new code's `room` routes each request again (hooks.rooms), so a publish can
re-partition the history; each room is numbered 1, 2, 3… afresh, and the new room and seq are
staged with the outcome (ReplayOutcome). When the rebuild is within one batch of the end of the
history, it locks every live room too (the live workers wait), folds the rest, and swaps
Hook.live_version and the staged outcomes in the same transaction: nothing is lost or applied
twice, and readers see either every old room or every rebuilt one, never a mix.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, Max, Min, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.models import User
from hooks import broadcast
from hooks.fold import (
    Outcome,
    default_key,
    fold,
    fold_needs_sandbox,
    fold_rooms,
    ledger_key,
)
from hooks.ledger import ledger_lookup, ledger_record
from hooks.models import MAIN_ROOM, Hook, LedgerEntry, ReplayOutcome, Request, State, Version
from hooks.refusals import commit_error, constraints_check, refusal_check
from hooks.request_rows import StoredRequest, stored_fetch
from hooks.room_batch import states_save
from hooks.rooms import room_route
from hooks.services import code_check, hook_limits, hook_secrets
from sandbox import Session, session

logger = logging.getLogger(__name__)


def hook_publish(*, hook: Hook, author: User | None, strict: bool = False) -> Version:
    """Publish the draft: a new version that goes live once it has replayed the history."""
    functions = code_check(hook.draft_code)
    return _version_start(
        hook=hook, code=hook.draft_code, functions=functions, author=author, strict=strict
    )


def hook_rollback(*, hook: Hook, number: int, author: User | None) -> Version:
    """Publish an earlier version's code again, through the same replay."""
    earlier = Version.objects.get(hook=hook, number=number)
    return _version_start(
        hook=hook,
        code=earlier.code,
        functions=earlier.functions,
        author=author,
        strict=False,
        rolled_back_from=number,
    )


def _version_start(
    *,
    hook: Hook,
    code: str,
    functions: list[str],
    author: User | None,
    strict: bool,
    rolled_back_from: int | None = None,
) -> Version:
    from hooks.tasks import replay_version

    with transaction.atomic():
        Hook.objects.select_for_update().get(pk=hook.pk)  # one publish at a time per hook
        number = (Version.objects.filter(hook=hook).aggregate(n=Max("number"))["n"] or 0) + 1
        # A newer publish supersedes a rebuild still running; its task notices and stops.
        Version.objects.filter(hook=hook, status=Version.Status.BUILDING).update(
            status=Version.Status.FAILED, replay_error=f"Superseded by version {number}."
        )
        version = Version.objects.create(
            hook=hook,
            number=number,
            code=code,
            functions=functions,
            author=author,
            strict=strict,
            rolled_back_from=rolled_back_from,
            status=Version.Status.BUILDING,
        )
        State.objects.create(version=version, hook=hook)
        transaction.on_commit(lambda: replay_version.delay(version.pk))
    return version


def _history(hook_id: object) -> Q:
    """The requests a replay folds: every accepted one (a rejected request is never folded)."""
    return Q(hook_id=hook_id) & ~Q(outcome=Request.Outcome.REJECTED)


def replay_progress(version: Version) -> dict[str, object]:
    """How far a version's rebuild has come: requests folded of the history, and rooms."""
    applied = version.replay_done
    total = applied
    if version.status == Version.Status.BUILDING:
        # Not routed yet, and routed but not folded yet.
        left = Request.objects.filter(_history(version.hook_id), id__gt=version.replay_cursor)
        total += left.count() + _staged(version).count()
    return {
        "version": version.number,
        "status": {"building": "running", "published": "done"}.get(version.status, version.status),
        "applied": applied,
        "total": total,
        "rooms": State.objects.filter(version=version).count(),
        "failures": version.replay_failures,
        "error": version.replay_error,
    }


# The rebuild's steps: a task goes on (MORE), leaves the rest to the tasks folding it (IDLE),
# or the rebuild has ended (ENDED: live, failed or superseded).
MORE, IDLE, ENDED = "more", "idle", "ended"
# Rooms one fold step locks and folds (one transaction), how many rooms a task picks at once,
# and how many replay tasks fold a publish's rooms side by side.
REPLAY_ROOMS_PER_STEP = 64
REPLAY_PICK_ROOMS = 512
REPLAY_TASKS = 4
PROGRESS_SECONDS = 1.0


def version_replay(*, version_id: int, seconds: float | None = None) -> bool:
    """Rebuild for up to `seconds`; return whether this task has more to do (False: the
    rebuild ended, or what is left is being folded by other tasks, the last of which
    switches)."""
    deadline = time.monotonic() + (seconds or settings.WR_REDUCE_SLICE_SECONDS)
    task = _Task()
    while time.monotonic() < deadline:
        step = _replay_step(version_id, task)
        if step != MORE:
            return False
    return True


class _Task:
    """What one replay task keeps between its steps: the rooms it picked to fold next, and
    whether this version's rooms may fold in parallel (`_parallel`)."""

    def __init__(self) -> None:
        self.rooms: list[str] = []
        self.parallel: bool | None = None
        self.told = 0.0  # when it last told the owner's feed the progress

    def progress_due(self) -> bool:
        """At most one progress message a second per task: counting what is left is a scan
        of the history, and the steps are many."""
        now = time.monotonic()
        if now - self.told < PROGRESS_SECONDS:
            return False
        self.told = now
        return True


def _replay_step(version_id: int, task: _Task) -> str:
    """One step of the rebuild, in one transaction (docs/pipeline.md, "The parallel replay"):
    route a batch of history (one task at a time: the coordinator), fold rooms whose routed
    requests wait (any number of tasks, each holding its rooms' state rows), or, when
    everything is routed and folded, fold the rest under every live room's lock and switch."""
    batch = settings.WR_BATCH_SIZE
    with transaction.atomic():
        version = Version.objects.select_related("hook").get(pk=version_id)
        if version.status != Version.Status.BUILDING:
            return ENDED
        counted = (version.replay_done, version.replay_failures)
        history = _history(version.hook_id)
        coordinator = _coordinator_lock(version)
        with ExitStack() as stack:
            sandbox = _replay_session(stack, version)
            routed: list[StoredRequest] = []
            if coordinator:
                after = history & Q(id__gt=version.replay_cursor)
                # More than a batch left (a count would scan the rest of the history).
                ahead = stored_fetch(after, order_by="id", limit=batch + 1)
                if len(ahead) > batch:
                    first = version.replay_cursor == 0
                    routed = ahead[:batch]
                    _route(version, routed, sandbox)
                    if task.parallel:
                        task.parallel = _parallel(version, routed)
                    # The last batch to route before the switch's: only the ids are looked at.
                    last = not Request.objects.filter(after).order_by("id")[2 * batch :].exists()
                    if first or last:
                        _fan_out(version)  # routed requests wait: more tasks fold them
            # Then fold, the coordinator too (its next step routes the next batch).
            waiting = _staged(version).exists()
            if routed and not waiting:  # folded as it was routed (_fold_now)
                _counted(version, counted)
                if task.progress_due():
                    _progress(version)
                return MORE
            if waiting:
                if task.parallel is None:
                    task.parallel = _parallel(version)
                if task.parallel:
                    folded = _rooms_fold(version, task, sandbox)
                elif coordinator:
                    folded = _fold_in_order(version, batch, sandbox)
                else:
                    return IDLE  # the coordinator folds them in order
                _counted(version, counted)
                if folded or routed:
                    if task.progress_due():
                        _progress(version)
                    return MORE
                # Every waiting room is held: its tasks go on, and the last to finish switches.
                return IDLE
            if not coordinator:
                return IDLE  # the coordinator routes, or switches
            # Within one batch of the end: hold every live room, so the live workers wait and
            # nothing more is numbered until the switch commits. Lock order (live, then
            # building) is the same everywhere.
            live = State.objects.select_for_update().filter(version_id=version.hook.live_id)
            list(live.order_by("id").values_list("pk", flat=True))
            # By id, but also a request that committed after the cursor passed its id (ids
            # are taken before commit): everything accepted that this version has not routed.
            staged = ReplayOutcome.objects.filter(version=version, request=OuterRef("pk"))
            rest = history & ~Q(Exists(staged))
            while requests := stored_fetch(rest, order_by="id", limit=batch):
                _route(version, requests, sandbox)
            # Looked at again: the rest just routed may have put a key in a second room.
            together = task.parallel is not False and _parallel(version)
            while _fold_in_order(version, batch, sandbox, together=together):
                pass
        _counted(version, counted)
        _switch(version)
        return ENDED


def _coordinator_lock(version: Version) -> bool:
    """The rebuild's routing and switch are one task's at a time: a transaction-level
    advisory lock on the version, tried, never waited for (other tasks fold meanwhile)."""
    if connection.vendor != "postgresql":
        return True  # the embedded default: one process
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('wr-replay:' || %s, 0))",
            [str(version.pk)],
        )
        return bool(cursor.fetchone()[0])


def _staged(version: Version) -> QuerySet[ReplayOutcome]:
    """The routed requests of the rebuild that wait to be folded."""
    return ReplayOutcome.objects.filter(version=version, outcome=Request.Outcome.PENDING)


def _parallel(version: Version, routed: Sequence[StoredRequest] | None = None) -> bool:
    """Whether the rebuild's rooms may fold side by side: on PostgreSQL, unless one key is in
    several rooms' routed requests (which of them applies must be the first in the history,
    so those fold in the history's order), or the code's own `idempotency_key` decides the
    keys (known only when folding). With `routed` (a batch just routed, the rest known to
    be fine), only the keys of that batch are looked at."""
    if connection.vendor != "postgresql" or "idempotency_key" in version.functions:
        return False
    where, values = "idempotency_key IS NOT NULL", []
    if routed is not None:
        keys = [k for k in (default_key(r) for r in routed) if k is not None]
        if not keys:
            return True
        where, values = "idempotency_key = ANY(%s)", [[ledger_key(k) for k in keys]]
    table = ReplayOutcome._meta.db_table
    with connection.cursor() as cursor:
        # Only model metadata is interpolated; every value is a parameter.
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE version_id = %s AND {where} "  # noqa: S608
            "GROUP BY idempotency_key HAVING count(DISTINCT room) > 1 LIMIT 1",
            [version.pk, *values],
        )
        return cursor.fetchone() is None


def _fan_out(version: Version) -> None:
    """Once routed requests wait, more replay tasks fold rooms (each ends when it finds every
    waiting room held by another; a duplicate task does no harm). Only from a replay task on
    a worker: a caller in process (or an eager task) folds everything in its own loop."""
    from celery import current_task

    from hooks.tasks import replay_version

    request = getattr(current_task, "request", None)
    if (
        connection.vendor != "postgresql"
        or "idempotency_key" in version.functions
        or request is None
        or request.called_directly
        or getattr(request, "is_eager", False)
    ):
        return
    version_id = version.pk
    transaction.on_commit(
        lambda: [replay_version.delay(version_id) for _ in range(REPLAY_TASKS - 1)]
    )


def _counted(version: Version, before: tuple[int, int]) -> None:
    """Add this step's folded requests and failures to the version's counts, once, at the end
    of the step: the version row is every fold task's, so its lock is held for a moment."""
    done, failures = version.replay_done - before[0], version.replay_failures - before[1]
    if done or failures:
        Version.objects.filter(pk=version.pk).update(
            replay_done=F("replay_done") + done, replay_failures=F("replay_failures") + failures
        )


def _replay_session(stack: ExitStack, version: Version) -> Session | None:
    """One sandbox child for a step's routing and every room's fold."""
    if not version.functions:
        return None
    hook = version.hook
    return stack.enter_context(
        session(
            code=version.code,
            secrets=hook_secrets(hook.pk),
            limits=hook_limits(hook),
            hook_id=str(hook.pk),
            role="reduce",
        )
    )


def _route(version: Version, requests: Sequence[StoredRequest], sandbox: Session | None) -> None:
    """Route a batch of history (in id order) with the new code's `room` and stage each
    request as pending in its room, numbered after the room's last routed seq; a request
    whose room cannot be decided goes to the main room with its error, to fail there."""
    routes: list[tuple[StoredRequest, str, dict | None]] = []
    for request in requests:
        routed = room_route(version, sandbox, request)
        room, error = (routed, None) if isinstance(routed, str) else (MAIN_ROOM, routed)
        routes.append((request, room, error))
    rooms = {room for _, room, _ in routes}
    # A room's last routed seq: its last waiting one, else its state's (every folded one is at
    # most the state's seq). Waiting ones first: a fold that commits between the two reads
    # then shows in the second.
    waiting = dict(
        _staged(version)
        .filter(room__in=rooms)
        .order_by()
        .values("room")
        .annotate(top=Max("seq"))
        .values_list("room", "top")
    )
    top: dict[str, int] = dict(
        State.objects.filter(version=version, room__in=rooms).values_list("room", "seq")
    )
    existing = set(top)
    for room, seq in waiting.items():
        top[room] = max(top.get(room, 0), seq)
    if len(rooms) == 1 and not waiting and existing and _fold_now(version, routes, sandbox):
        return
    State.objects.bulk_create(
        [State(version=version, hook_id=version.hook_id, room=r) for r in rooms - existing],
        ignore_conflicts=True,
    )
    keyed = "idempotency_key" not in version.functions
    rows = []
    for request, room, error in routes:
        top[room] = (top.get(room) or 0) + 1
        key = default_key(request) if keyed and error is None else None
        rows.append(
            Staged(
                request_id=request.id,
                room=room,
                seq=top[room],
                outcome=Request.Outcome.PENDING,
                error=error,
                idempotency_key=None if key is None else ledger_key(key),
            )
        )
    _staged_write(version, rows, replace=False)
    cursor = max(version.replay_cursor, requests[-1].id)
    Version.objects.filter(pk=version.pk).update(replay_cursor=cursor)
    version.replay_cursor = cursor


def _fold_now(
    version: Version,
    routes: list[tuple[StoredRequest, str, dict | None]],
    sandbox: Session | None,
) -> bool:
    """A batch routed all to one room with nothing of it waiting (a hook with one room, the
    usual case): fold it at once, from memory, as the sequential replay did, instead of
    staging it and fetching it again. False when another task holds the room."""
    room = routes[0][1]
    table = State._meta.db_table
    rows = list(
        State.objects.raw(
            f"SELECT * FROM {table} WHERE version_id = %s AND room = %s "  # noqa: S608
            "FOR UPDATE SKIP LOCKED",
            [version.pk, room],
        )
    )
    if not rows:
        return False
    state = rows[0]
    for offset, (request, _, _) in enumerate(routes, start=1):
        request.room, request.seq = room, state.seq + offset
    _room_fold(version, state, [(request, error) for request, _, error in routes], sandbox)
    cursor = max(version.replay_cursor, routes[-1][0].id)
    Version.objects.filter(pk=version.pk).update(replay_cursor=cursor)
    version.replay_cursor = cursor
    return True


def _staged_fetch(
    version: Version, where: Q, limit: int, *, rooms: list[str] | None = None, per_room: int = 0
) -> list[tuple[StoredRequest, dict | None]]:
    """Routed requests waiting to be folded, with their room, seq and routing error: `where`
    over the staged rows (oldest first, up to `limit`), or the first `per_room` of each of
    `rooms`."""
    if rooms is not None:
        table = ReplayOutcome._meta.db_table
        with connection.cursor() as cursor:
            # Only model metadata is interpolated; every value is a parameter.
            cursor.execute(
                f"SELECT p.request_id, p.room, p.seq, p.error FROM unnest(%s::text[]) AS g(room) "  # noqa: S608
                f"CROSS JOIN LATERAL (SELECT request_id, room, seq, error FROM {table} "
                "WHERE version_id = %s AND room = g.room AND outcome = 'pending' "
                "ORDER BY seq LIMIT %s) AS p",
                [rooms, version.pk, per_room],
            )
            staged = [
                (i, r, q, json.loads(e) if isinstance(e, str) else e)
                for i, r, q, e in cursor.fetchall()
            ]
    else:
        staged = list(
            _staged(version)
            .filter(where)
            .order_by("request_id")
            .values_list("request_id", "room", "seq", "error")[:limit]
        )
    if not staged:
        return []
    # One array parameter, not an IN list of thousands (bound and parsed value by value).
    ids = RawSQL("SELECT unnest(%s::bigint[])", [[row[0] for row in staged]])
    found = {r.id: r for r in stored_fetch(Q(id__in=ids), order_by="id", limit=len(staged))}
    part: list[tuple[StoredRequest, dict | None]] = []
    for request_id, room, seq, error in staged:
        request = found[request_id]
        request.room, request.seq = room, seq
        part.append((request, error))
    return part


def _fold_in_order(
    version: Version, limit: int, sandbox: Session | None, *, together: bool = False
) -> int:
    """Fold the oldest `limit` routed requests, in the history's order, each room's part
    under its state row's lock; return how many. `together` (the rooms may fold side by side,
    `_parallel`): every room's part in one piece (`_rooms_write`), as a parallel step does;
    the last batch before the switch spans many rooms, and one piece per room cost a round of
    statements and an exchange with the child each."""
    part = _staged_fetch(version, Q(), limit)
    by_room: dict[str, list[tuple[StoredRequest, dict | None]]] = {}
    for item in part:
        by_room.setdefault(item[0].room, []).append(item)
    if together and len(by_room) > 1:
        # By id, as every blocking lock of building rows: the tasks that fold rooms side by
        # side skip held rows (SKIP LOCKED) and never wait for these.
        rows = State.objects.select_for_update().filter(version=version, room__in=list(by_room))
        locked = {s.room: s for s in rows.order_by("id")}
        before = version.replay_done
        _rooms_write(version, [(locked[room], items) for room, items in by_room.items()], sandbox)
        return version.replay_done - before
    # Runs of one room in the history's order (a room's part cut where another room's request
    # comes between): which of the requests with one key applies is the history's first.
    states: dict[str, State] = {}
    for room, run in itertools.groupby(part, key=lambda item: item[0].room):
        if room not in states:
            states[room] = State.objects.select_for_update().get(version=version, room=room)
        _room_fold(version, states[room], list(run), sandbox)
    return len(part)


def _rooms_fold(version: Version, task: _Task, sandbox: Session | None) -> int:
    """Fold up to REPLAY_ROOMS_PER_STEP rooms whose routed requests wait and that no other
    task holds (SKIP LOCKED: a held room is skipped, never waited for); return how many
    requests were folded (0: every waiting room the task picked is held)."""
    repicked = False
    while True:
        if not task.rooms:
            if repicked:
                return 0
            repicked = True
            task.rooms = list(
                _staged(version)
                .order_by()
                .values("room")
                .annotate(first=Min("request_id"))
                .order_by("first")
                .values_list("room", flat=True)[:REPLAY_PICK_ROOMS]
            )
            if not task.rooms:
                return 0
        rooms = task.rooms
        table = State._meta.db_table
        states = list(
            State.objects.raw(
                f"SELECT * FROM {table} WHERE version_id = %s AND room = ANY(%s) "  # noqa: S608
                "ORDER BY array_position(%s::text[], room::text) LIMIT %s FOR UPDATE SKIP LOCKED",
                [version.pk, rooms, rooms, REPLAY_ROOMS_PER_STEP],
            )
        )
        if not states:
            task.rooms = []  # all held by other tasks: pick again, once
            continue
        task.rooms = rooms[max(rooms.index(s.room) for s in states) + 1 :]
        per_room = max(1, 4 * settings.WR_BATCH_SIZE // len(states))
        part = _staged_fetch(version, Q(), 0, rooms=[s.room for s in states], per_room=per_room)
        if not part:
            continue  # folded by other tasks since the pick
        by_room: dict[str, list[tuple[StoredRequest, dict | None]]] = {}
        for item in part:
            by_room.setdefault(item[0].room, []).append(item)
        _rooms_write(version, [(s, by_room[s.room]) for s in states if s.room in by_room], sandbox)
        logger.info(
            "replay of version %s: %d requests folded in %d rooms",
            version.pk,
            len(part),
            len(by_room),
        )
        # A room that had more than this step took goes first in the next step.
        unfinished = [s.room for s in states if len(by_room.get(s.room, ())) == per_room]
        task.rooms = unfinished + task.rooms
        return len(part)


def _rooms_write(
    version: Version,
    rooms: list[tuple[State, list[tuple[StoredRequest, dict | None]]]],
    sandbox: Session | None,
) -> None:
    """Fold several rooms' routed requests as one piece: every room's reducer calls in one
    exchange with the child (hooks.fold.fold_rooms), every outcome in one statement, every
    state in one more (as the live multi-room batch writes). A room whose routing failed for
    a request, a room cut short by a key (its rest: the next step), and a piece the database
    refuses (a savepoint, rolled back) go through `_room_fold` instead, room by room."""
    simple = [
        (state, [r for r, _ in part]) for state, part in rooms if all(e is None for _, e in part)
    ]
    for state, part in rooms:
        if any(e is not None for _, e in part):
            _room_fold(version, state, part, sandbox)
    if not simple:
        return
    before = [(state.value, state.seq) for state, _ in simple]
    counts = (version.replay_failures, version.replay_done)
    try:
        with transaction.atomic():
            foldings = fold_rooms(
                functions=version.functions,
                secrets=sandbox.secrets if sandbox is not None else {},
                rooms=[(state.value, requests) for state, requests in simple],
                seen=lambda keys: ledger_lookup(version, keys, claim=True),
                sandbox=sandbox if fold_needs_sandbox(version.functions) else None,
            )
            done: list[StoredRequest] = []
            outcomes: list[Outcome] = []
            changed: list[State] = []
            for (state, requests), folding in zip(simple, foldings, strict=True):
                room_outcomes, value = folding.finish()
                if not room_outcomes:
                    continue
                room_done = requests[: len(room_outcomes)]
                state.value, state.seq = value, room_done[-1].seq or state.seq
                state.updated_at = timezone.now()
                done += room_done
                outcomes += room_outcomes
                changed.append(state)
            _outcomes_stage(version, done, outcomes)
            ledger_record(version, done, outcomes)
            states_save(changed)
            constraints_check()
            version.replay_failures += sum(
                1 for o in outcomes if o.outcome == Request.Outcome.FAILED
            )
            version.replay_done += len(done)
    except Exception as error:
        if not refusal_check(error):
            raise
        for (state, _), (value, seq) in zip(simple, before, strict=True):
            state.value, state.seq = value, seq
        version.replay_failures, version.replay_done = counts
        for state, requests in simple:  # room by room, halving down to the refused request
            _room_fold(version, state, [(r, None) for r in requests], sandbox)


def _room_fold(
    version: Version,
    state: State,
    part: Sequence[tuple[StoredRequest, dict | None]],
    sandbox: Session | None,
) -> None:
    """Fold one room's routed requests (in its seq order) into its state, as the live
    pipeline would; a request whose room could not be decided fails, the state unchanged."""
    run: list[StoredRequest] = []
    for item, error in [*part, (None, None)]:
        if item is not None and error is None:
            run.append(item)
            continue
        while run:  # the requests routed fine before this one
            run = run[_fold_into(version, state, run, sandbox) :]
        if item is not None:
            failed = Outcome(outcome=Request.Outcome.FAILED, error=error, state_after=state.value)
            _fold_record(version, state, [item], [failed], state.value)


def _progress(version: Version) -> None:
    """Tell the owner's live feed how far the rebuild is, once this batch has committed."""
    progress = replay_progress(version)
    hook_id, number, status = str(version.hook_id), version.number, version.status
    done, total = int(progress["applied"]), int(progress["total"])  # type: ignore[call-overload]
    transaction.on_commit(
        lambda: broadcast.replay_progress(
            hook_id=hook_id, version=number, done=done, total=total, status=status
        )
    )


def _fold_into(
    version: Version,
    state: State,
    requests: Sequence[StoredRequest],
    sandbox: Session | None = None,
) -> int:
    """Fold and stage `requests` (or the first of them, when a repeated key cuts the batch);
    return how many. Each piece is written under a savepoint: a piece the database refuses is
    folded again in halves, down to the request that causes it, which is staged as failed with
    a CommitError (as the live pipeline does), so no stored request can stop a publish."""
    before = (state.value, state.seq, version.replay_failures, version.replay_done)
    try:
        with transaction.atomic():
            return _fold_write(version, state, requests, sandbox)
    except Exception as error:
        if not refusal_check(error):
            raise
        state.value, state.seq, version.replay_failures, version.replay_done = before
        if len(requests) > 1:
            half = len(requests) // 2
            done = _fold_into(version, state, requests[:half], sandbox)
            if done < half:
                return done  # cut by a repeated key: the caller goes on from there
            return done + _fold_into(version, state, requests[half:], sandbox)
        failed = Outcome(
            outcome=Request.Outcome.FAILED, error=commit_error(error), state_after=state.value
        )
        _fold_record(version, state, requests, [failed], state.value)
        logger.warning(
            "replay of version %s: request %s failed: the database refused its outcome (%s)",
            version.pk,
            requests[0].id,
            error,
        )
        return 1


def _fold_write(
    version: Version,
    state: State,
    requests: Sequence[StoredRequest],
    sandbox: Session | None = None,
) -> int:
    outcomes, new_state = fold(
        sandbox=sandbox if fold_needs_sandbox(version.functions) else None,
        code=version.code,
        functions=version.functions,
        secrets=hook_secrets(version.hook_id) if version.functions else {},
        limits=hook_limits(version.hook),
        state=state.value,
        requests=requests,
        # Claimed: rooms fold side by side, and one key applies once across them.
        seen=lambda keys: ledger_lookup(version, keys, claim=True),
    )
    done = requests[: len(outcomes)]
    _fold_record(version, state, done, outcomes, new_state)
    return len(done)


def _fold_record(
    version: Version,
    state: State,
    done: Sequence[StoredRequest],
    outcomes: Sequence[Outcome],
    new_state: str,
) -> None:
    _outcomes_stage(version, done, outcomes)
    ledger_record(version, done, outcomes)
    # Counted on the version row once per step (_counted), not here: its lock is every task's.
    version.replay_failures += sum(1 for o in outcomes if o.outcome == Request.Outcome.FAILED)
    version.replay_done += len(done)
    state.value = new_state
    state.seq = done[-1].seq or state.seq
    state.save(update_fields=["value", "seq", "updated_at"])
    constraints_check()


def _outcomes_stage(
    version: Version, requests: Sequence[StoredRequest], outcomes: Sequence[Outcome]
) -> None:
    cap = settings.WR_LOG_STATE_MAX_BYTES
    # Over the pending row its routing staged (_route), or none (_fold_now).
    rows = [
        Staged(
            request_id=request.id,
            room=request.room,
            seq=request.seq,
            outcome=outcome.outcome,
            error=outcome.error,
            console=outcome.console,
            duration_ms=outcome.duration_ms,
            idempotency_key=outcome.idempotency_key,
            duplicate_of_id=outcome.duplicate_of,
            state_after=_logged(outcome.state_after, cap),
        )
        for request, outcome in zip(requests, outcomes, strict=True)
    ]
    _staged_write(version, rows, replace=True)


class Staged(NamedTuple):
    """A ReplayOutcome row to write (beside its version), as _staged_write takes it."""

    request_id: int
    room: str
    seq: int | None
    outcome: str
    error: dict | None = None
    console: str = ""
    duration_ms: float | None = None
    idempotency_key: str | None = None
    duplicate_of_id: int | None = None
    state_after: str | None = None


# The columns of a Staged row: (column, PostgreSQL type), in its order.
STAGED_COLUMNS = [
    ("request_id", "bigint"),
    ("room", "text"),
    ("seq", "bigint"),
    ("outcome", "text"),
    ("error", "jsonb"),
    ("console", "text"),
    ("duration_ms", "float8"),
    ("idempotency_key", "text"),
    ("duplicate_of_id", "bigint"),
    ("state_after", "text"),
]


def _staged_write(version: Version, rows: list[Staged], *, replace: bool) -> None:
    """Insert staged rows (`replace`: over the version's rows of the same requests). On
    PostgreSQL one INSERT … SELECT FROM a JSON array (json.dumps is one C call for all of them;
    the ORM's bulk_create cost ~0.1 ms of Python per row), else the ORM."""
    if not rows:
        return
    names = [name for name, _ in STAGED_COLUMNS]
    if connection.vendor != "postgresql":
        objects = [ReplayOutcome(version=version, **row._asdict()) for row in rows]
        if replace:
            ReplayOutcome.objects.bulk_create(
                objects,
                update_conflicts=True,
                unique_fields=["version", "request"],
                update_fields=[n.removesuffix("_id") for n in names[1:]],
            )
        else:
            ReplayOutcome.objects.bulk_create(objects)
        return
    data = json.dumps(
        rows,  # each a JSON array, in STAGED_COLUMNS' order
        ensure_ascii=False,
        separators=(",", ":"),
    )
    values = ", ".join(
        f"coalesce(e->>{i}, '')" if name == "console" else f"(e->>{i})::{kind}"
        for i, (name, kind) in enumerate(STAGED_COLUMNS)
    )
    conflict = (
        " ON CONFLICT (version_id, request_id) DO UPDATE SET "
        + ", ".join(f"{name} = EXCLUDED.{name}" for name in names[1:])
        if replace
        else ""
    )
    with connection.cursor() as cursor:
        # Only model metadata is interpolated; every value is a parameter.
        cursor.execute(
            f"INSERT INTO {ReplayOutcome._meta.db_table} (version_id, {', '.join(names)}) "  # noqa: S608
            f"SELECT %s, {values} FROM json_array_elements(%s::json) AS e{conflict}",
            [version.pk, data],
        )


def _logged(state_after: str | None, cap: int) -> str | None:
    return state_after if state_after is not None and len(state_after) <= cap else None


def _switch(version: Version) -> None:
    hook = version.hook
    if version.strict and version.replay_failures:
        failed = list(
            ReplayOutcome.objects.filter(version=version, outcome=Request.Outcome.FAILED)
            .order_by("request_id")
            .values_list("room", "seq")[:20]
        )
        seqs = [f"{room}:{seq}" if room else str(seq) for room, seq in failed]
        listed = ", ".join(seqs) + (", …" if version.replay_failures > len(seqs) else "")
        version.status = Version.Status.FAILED
        version.replay_error = (
            f"Strict publish refused: {version.replay_failures} request(s) failed during the "
            f"replay (seq {listed}). The previous version stays live."
        )
        version.save(update_fields=["status", "replay_error"])
        ReplayOutcome.objects.filter(version=version).delete()
        _progress(version)
        return
    table, staged = Request._meta.db_table, ReplayOutcome._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The history's rooms and seqs change in one statement: checked at commit.
            cursor.execute("SET CONSTRAINTS hooks_request_room_seq_unique DEFERRED")
        else:
            # SQLite checks every row: clear the numbers first (the staged ones replace them).
            cursor.execute(
                f"UPDATE {table} SET seq = NULL WHERE id IN "  # noqa: S608
                f"(SELECT request_id FROM {staged} WHERE version_id = %s)",
                [version.pk],
            )
        cursor.execute(
            f"""
            UPDATE {table} SET room = o.room, seq = o.seq, routed_by = o.version_id,
                outcome = o.outcome, error = o.error, console = o.console,
                duration_ms = o.duration_ms, idempotency_key = o.idempotency_key,
                duplicate_of_id = o.duplicate_of_id, state_after = o.state_after
            FROM {staged} AS o
            WHERE o.version_id = %s AND {table}.id = o.request_id
            """,  # noqa: S608 - only table names are interpolated
            [version.pk],
        )
    ReplayOutcome.objects.filter(version=version).delete()
    previous = hook.live_id
    LedgerEntry.objects.filter(version_id=previous).delete()
    Version.objects.filter(pk=previous).update(status=Version.Status.ARCHIVED)
    version.status = Version.Status.PUBLISHED
    version.published_at = timezone.now()
    version.save(update_fields=["status", "published_at"])
    # A rollback puts the earlier code back in the editor; a publish leaves the draft alone, as
    # the owner may have edited it while the replay ran.
    changes: dict[str, object] = {"live_version": version}
    if version.rolled_back_from is not None:
        changes["draft_code"] = version.code
    Hook.objects.filter(pk=hook.pk).update(**changes)
    hook_id = str(hook.pk)
    main = State.objects.get(version=version, room=MAIN_ROOM)
    transaction.on_commit(
        lambda: broadcast.state_changed(
            hook_id=hook_id, seq=main.seq, version_id=version.pk, value=main.value
        )
    )
    # Every other room's subscribers read theirs again.
    transaction.on_commit(lambda: broadcast.state_changed(hook_id=hook_id, seq=0, room=None))
    _progress(version)


def replay_fail(*, version_id: int, error: str) -> None:
    with transaction.atomic():
        failed = Version.objects.filter(pk=version_id, status=Version.Status.BUILDING).update(
            status=Version.Status.FAILED, replay_error=error[:2000]
        )
        if failed:
            _progress(Version.objects.select_related("hook").get(pk=version_id))


# A dry run's report lists at most this many rooms' state diffs (the busiest are not chosen:
# the first rooms the history touched, in the order it did).
DRY_RUN_MAX_ROOMS = 20


def hook_dry_run(*, hook: Hook, code: str, last: int | None = None) -> dict[str, object]:
    """Fold `code` over the stored history (or its last `last` requests, from null states)
    in memory, routed by the code's `room`: nothing is written. Returns the main room's final
    and live state, the rooms it made (count, and the state diff of the first
    DRY_RUN_MAX_ROOMS it touched) and per-request failures and console output."""
    from hooks.diff import json_diff

    functions = code_check(code)
    limit = min(last or settings.WR_DRY_RUN_MAX_REQUESTS, settings.WR_DRY_RUN_MAX_REQUESTS)
    history = _history(hook.pk)
    total = Request.objects.filter(history).count()
    requests = stored_fetch(history, order_by="-id", limit=limit)[::-1]
    ledger: dict[str, int] = {}
    states: dict[str, str] = {}
    seqs: dict[str, int] = {}
    report: list[dict[str, object]] = []
    secrets = hook_secrets(hook.pk) if functions else {}
    probe = Version(hook=hook, code=code, functions=sorted(functions))

    def seen(keys: list[str]) -> dict[str, int]:
        return {k: ledger[k] for k in keys if k in ledger}

    def note(request: StoredRequest, outcome: Outcome) -> None:
        if outcome.error or outcome.console:
            report.append(
                {
                    "seq": request.seq,
                    "room": request.room or None,
                    "id": str(request.uuid),
                    "outcome": outcome.outcome,
                    "error": outcome.error,
                    "console": outcome.console,
                }
            )

    with ExitStack() as stack:
        sandbox = None
        if functions:
            sandbox = stack.enter_context(
                session(code=code, secrets=secrets, limits=hook_limits(hook))
            )
        for start in range(0, len(requests), settings.WR_BATCH_SIZE):
            chunk = requests[start : start + settings.WR_BATCH_SIZE]
            by_room: dict[str, list[StoredRequest]] = {}
            for request in chunk:
                routed = room_route(probe, sandbox, request)
                room = routed if isinstance(routed, str) else MAIN_ROOM
                request.room = room
                seqs[room] = seqs.get(room, 0) + 1
                request.seq = seqs[room]
                states.setdefault(room, "null")
                if isinstance(routed, dict):
                    note(request, Outcome(outcome=Request.Outcome.FAILED, error=routed))
                    continue
                by_room.setdefault(room, []).append(request)
            for room, part in by_room.items():
                while part:
                    outcomes, states[room] = fold(
                        code=code,
                        functions=functions,
                        secrets=secrets,
                        limits=hook_limits(hook),
                        state=states[room],
                        requests=part,
                        seen=seen,
                        sandbox=sandbox if fold_needs_sandbox(functions) else None,
                    )
                    for request, outcome in zip(part, outcomes, strict=False):
                        key = outcome.idempotency_key
                        if outcome.outcome == Request.Outcome.APPLIED and key is not None:
                            ledger[key] = request.id
                        note(request, outcome)
                    part = part[len(outcomes) :]
    live_rooms = State.objects.filter(version_id=hook.live_id)
    live = live_rooms.get(room=MAIN_ROOM)
    final, current = json.loads(states.get(MAIN_ROOM, "null")), json.loads(live.value)
    shown = [room for room in states if room != MAIN_ROOM][:DRY_RUN_MAX_ROOMS]
    before = dict(live_rooms.filter(room__in=shown).values_list("room", "value"))
    return {
        "requests": len(requests),
        "history": total,
        "truncated": len(requests) < total,
        "state": final,
        "live_state": current,
        "live_seq": live.seq,
        "diff": json_diff(current, final),
        "rooms": {
            "count": len(states),
            "live_count": live_rooms.count(),
            "shown": [
                {
                    "room": room,
                    "seq": seqs[room],
                    "diff": json_diff(
                        json.loads(before.get(room, "null")), json.loads(states[room])
                    ),
                }
                for room in shown
            ],
            "truncated": len(states) - (MAIN_ROOM in states) > len(shown),
        },
        "failures": sum(1 for r in report if r["outcome"] == Request.Outcome.FAILED),
        "requests_report": report,
    }
