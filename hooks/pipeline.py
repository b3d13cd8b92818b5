"""The reduce pipeline: apply a room's pending requests with its hook's live version, exactly
once and in order.

Everything here is per room (hooks.rooms; the main room is ""): a task folds one room, and the
rooms of a hook fold side by side on different workers. One batch is one transaction. It locks
the room's live state row, numbers the room's oldest pending requests after the state's seq,
folds them in one sandbox child, and writes their outcomes, the ledger and the new state before
committing. The row lock is what makes concurrent workers safe: a
second worker cannot lock the row (NOWAIT) and retries later; a worker killed mid-batch loses its
connection, PostgreSQL rolls the batch back, and the requests are still pending for the next
one. The sandbox runs inside the transaction on purpose: the lock must cover the fold, and the
sandbox's wall-time limits bound how long it is held.

A slice (one task) runs batch after batch in one sandbox child and reads ahead: before batch n
is written, batch n+1 is fetched and starts folding in a background thread, so the child works
while PostgreSQL writes. Batch n+1 is used only if, under the lock again, the state is exactly
where batch n left it (`Ahead`); nothing is written without the lock. docs/pipeline.md.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from hooks import broadcast, wakeup
from hooks.fold import Folding, Outcome, fold_needs_sandbox, fold_start
from hooks.ledger import HookBusy, ledger_lookup, ledger_record
from hooks.models import MAIN_ROOM, Hook, Request, State, Version
from hooks.refusals import commit_error, constraints_check, refusal_check
from hooks.request_rows import StoredRequest, stored_fetch
from hooks.rooms import room_route, state_row_ensure
from hooks.services import hook_limits, hook_secrets
from sandbox import Limits, Session, session

logger = logging.getLogger(__name__)


class HookFailing(Exception):
    """The hook's batches fail for a reason that is not one request: even recording its oldest
    pending request as failed was refused (e.g. the database refuses the hook's state row). Its
    task backs off (hooks.tasks)."""


class BatchRefused(Exception):
    """The database refused to commit a batch: its `count` requests, from the oldest pending one
    (`first_id`), stay pending; the transaction was rolled back."""

    def __init__(self, *, first_id: int, count: int, error: BaseException) -> None:
        super().__init__(f"batch of {count} from request {first_id} refused: {error}")
        self.first_id = first_id
        self.count = count
        self.error = error


# The first batch of a slice is small: a hostile or slow reducer then holds the hook's lock
# (and a worker) for a few calls, not for WR_BATCH_SIZE of them. Later batches are sized from
# the measured cost to take about BATCH_TARGET_SECONDS.
FIRST_BATCH = 16
BATCH_TARGET_SECONDS = 1.0


def hook_reduce(*, hook_id: uuid.UUID | str, room: str = MAIN_ROOM) -> int:
    """Apply everything pending in the room; return how many requests were numbered."""
    total = 0
    while True:
        count, more = hook_reduce_slice(hook_id=hook_id, room=room)
        total += count
        if not more:
            return total


def hook_reduce_slice(
    *,
    hook_id: uuid.UUID | str,
    room: str = MAIN_ROOM,
    seconds: float | None = None,
    sandboxes: Sandboxes | None = None,
    reroute: bool = True,
) -> tuple[int, bool]:
    """Apply pending requests for up to `seconds`; return (how many, whether any may be left).

    A batch the database refuses to commit is folded again in halves until the request that
    causes it is alone; that request is recorded as failed (`_refused_fail`) and the rest are
    applied. Raises HookFailing when even that record is refused: the fault is not one request.
    `sandboxes` is the caller's (hooks.room_batch: a multi-room slice's one child); `reroute`
    False when the caller has run `stale_reroute` already.
    """
    deadline = time.monotonic() + (seconds or settings.WR_REDUCE_SLICE_SECONDS)
    if reroute:
        stale_reroute(hook_id=hook_id)
    size = min(FIRST_BATCH, settings.WR_BATCH_SIZE)
    total = 0
    ahead: Ahead | None = None
    # How many of the oldest pending requests are known to hold one the database refuses.
    suspect = 0
    with ExitStack() as own:
        if sandboxes is None:
            sandboxes = own.enter_context(Sandboxes())
        while True:
            started = time.monotonic()
            try:
                count, ahead, drained = _reduce_batch(
                    hook_id,
                    size,
                    sandboxes,
                    room=room,
                    ahead=ahead,
                    read_ahead=started < deadline and not suspect,
                )
            except BatchRefused as refused:
                ahead = None
                if refused.count > 1:
                    suspect, size = refused.count, max(1, refused.count // 2)
                    continue
                total += _refused_fail(
                    hook_id, room, request_id=refused.first_id, error=refused.error
                )
                suspect, size = 0, min(FIRST_BATCH, settings.WR_BATCH_SIZE)
                if time.monotonic() >= deadline:
                    return total, True  # a flood of poison requests still gets its slice only
                continue
            total += count
            if drained or (count == 0 and ahead is None):
                return total, False
            if suspect:
                # The refused request is still among the next `suspect`: keep halving there
                # rather than folding the whole window again.
                suspect = max(0, suspect - count)
                if suspect:
                    size = max(1, suspect // 2)
                    continue
            now = time.monotonic()
            if now >= deadline and ahead is None:
                return total, True
            per_request = max((now - started) / max(count, 1), 1e-6)
            size = max(1, min(settings.WR_BATCH_SIZE, int(BATCH_TARGET_SECONDS / per_request)))


class Sandboxes:
    """The sandbox session of a slice: its batches fold in one child (each batch sends the
    committed state first, so a batch that rolled back leaves nothing behind in the child). A
    new version, secrets or limits get a new child. `background` runs a read-ahead batch's
    reducer calls while the batch before it is written."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self.stack = ExitStack()
        self.current: Session | None = None
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fold")
        # A multi-room batch's broadcasts still going out (hooks.room_batch).
        self.sending: broadcast.Sending | None = None

    def __enter__(self) -> Sandboxes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.background.shutdown(wait=True)  # before the child goes: a fold may be using it
        broadcast.sent_wait(self.sending)
        self.stack.close()

    def get(self, hook: Hook, version: Version, key: tuple[int, int, Limits]) -> Session | None:
        """The session for `key` (from `key_for`), or None when the code needs no sandbox."""
        if not fold_needs_sandbox(version.functions):
            return None
        if key != self.key:
            self.background.submit(lambda: None).result()  # the old child may still be folding
            self.stack.close()
            self.current = self.stack.enter_context(
                session(
                    code=version.code,
                    secrets=hook_secrets(hook.pk, version=hook.secrets_version),
                    limits=key[2],
                    hook_id=str(hook.pk),
                    role="reduce",
                )
            )
            self.key = key
        return self.current

    @staticmethod
    def key_for(hook: Hook, version: Version) -> tuple[int, int, Limits]:
        return (version.pk, hook.secrets_version, hook_limits(hook))


# The ids one walk of the room's pending index lines up for the read-aheads that follow.
CHAIN_IDS = 100_000


@dataclass
class Chain:
    """The room's pending ids after a batch, as one statement saw them (`_chain_start`): the
    read-aheads take their requests from here, in order, until it runs out."""

    ids: list[int]
    complete: bool  # the statement found fewer than it asked for: nothing else was pending


@dataclass
class Ahead:
    """The next batch, fetched and folding while the previous one was written. It is valid if
    the state is still where that batch left it when the lock is taken again."""

    requests: list[StoredRequest]
    folding: Folding
    seq: int
    sandbox: tuple[int, int, Limits]  # Sandboxes.key_for(): version, secrets, limits
    exhausted: bool  # nothing else was pending when it was fetched
    chain: Chain


def _reduce_batch(
    hook_id: uuid.UUID | str,
    batch_size: int,
    sandboxes: Sandboxes | None = None,
    *,
    room: str = MAIN_ROOM,
    ahead: Ahead | None = None,
    read_ahead: bool = False,
) -> tuple[int, Ahead | None, bool]:
    """One batch in one transaction. Returns (how many were applied, the next batch if it was
    read ahead, whether nothing was left pending)."""
    with transaction.atomic(), ExitStack() as own:
        if sandboxes is None:
            sandboxes = own.enter_context(Sandboxes())
        hook = Hook.objects.filter(pk=hook_id).select_related("live_version").first()
        if hook is None or hook.live_version is None:
            return 0, None, True
        version = hook.live_version
        state = _state_lock(hook_id, version.pk, room)
        if state is None:
            return 0, None, True
        # The switch to a new version takes this same lock: re-read the pointer under it.
        if (
            Hook.objects.filter(pk=hook_id).values_list("live_version", flat=True).get()
            != version.pk
        ):
            raise HookBusy(str(hook_id))
        key = sandboxes.key_for(hook, version)
        if ahead is not None and (ahead.seq, ahead.sandbox) != (state.seq, key):
            # Another worker or a publish moved the state meanwhile, or the secrets or limits
            # changed: fold that batch again from scratch.
            ahead.folding.abandon()
            ahead = None

        sandbox = sandboxes.get(hook, version, key)
        secrets = sandbox.secrets if sandbox is not None else {}  # for masking the log
        applied: dict[str, int] = {}  # keys this batch applies, not in the ledger table yet

        def seen(keys: list[str]) -> dict[str, int]:
            found = ledger_lookup(version, keys, claim=True)
            found.update((k, applied[k]) for k in keys if k in applied)
            return found

        def start(requests: list[StoredRequest], background: bool) -> Folding:
            return fold_start(
                functions=version.functions,
                secrets=secrets,
                state=state.value,
                requests=requests,
                seen=seen,
                sandbox=sandbox,
                background=sandboxes.background if background else None,
            )

        chain: Chain | None = None
        if ahead is not None:
            pending, folding, exhausted = ahead.requests, ahead.folding, ahead.exhausted
            chain = ahead.chain
        else:
            pending = pending_fetch(hook_id, room, batch_size, version_id=version.pk)
            if not pending:
                return 0, None, True
            exhausted = len(pending) < batch_size
            _number(pending, after=state.seq)
            folding = start(pending, background=False)
        outcomes, state.value = folding.finish()
        done = pending[: len(outcomes)]
        state.seq = done[-1].seq or state.seq
        if chain is not None and len(done) < len(pending):
            # Cut short: the rest of the batch comes first in the next one.
            chain.ids = [request.id for request in pending[len(done) :]] + chain.ids

        # Read ahead: the next batch folds in the sandbox while this one is written.
        next_batch: Ahead | None = None
        drained = passed_over = False
        if read_ahead and sandbox is not None:
            applied.update(
                (o.idempotency_key, r.id)
                for r, o in zip(done, outcomes, strict=True)
                if o.outcome == Request.Outcome.APPLIED and o.idempotency_key is not None
            )
            following: list[StoredRequest] = []
            if exhausted and len(done) == len(pending):
                # The fetch found fewer than it asked for: nothing else was pending. A request
                # stored since then has queued a task of its own (hooks.wakeup).
                pass
            else:
                if chain is None:
                    chain = _chain_start(hook_id, room, done, version.pk)
                    passed_over = chain is None
                if chain is not None and chain.ids:
                    ids, chain.ids = chain.ids[:batch_size], chain.ids[batch_size:]
                    found = pending_by_ids(ids, version_id=version.pk)
                    if found is None:
                        chain, passed_over = None, True
                    else:
                        following = found
            if following and chain is not None:
                _number(following, after=state.seq)
                upcoming = start(following, background=True)
                last = not chain.ids and chain.complete
                next_batch = Ahead(following, upcoming, state.seq, key, last, chain)
            elif not passed_over and (chain is None or chain.complete):
                drained = True

        try:
            outcomes_save(done, outcomes)
            ledger_record(version, done, outcomes)
            state.save(update_fields=["value", "seq", "updated_at"])
            constraints_check()
        except Exception as error:
            if not refusal_check(error):
                raise
            if next_batch is not None:
                next_batch.folding.abandon()  # it was folded from a state that will not exist
            # Raised through the atomic block: the batch rolls back and the lock is released.
            raise BatchRefused(first_id=done[0].id, count=len(done), error=error) from error
        seq, value = state.seq, state.value
        transaction.on_commit(
            lambda: broadcast.state_changed(
                hook_id=str(hook_id), seq=seq, version_id=version.pk, value=value, room=room
            )
        )
        transaction.on_commit(
            lambda: broadcast.requests_logged(hook_id=str(hook_id), requests=done)
        )
        return len(done), next_batch, drained


def _state_lock(hook_id: uuid.UUID | str, version_id: int, room: str) -> State | None:
    """The room's state row of the live version, locked (NOWAIT: HookBusy when another worker
    folds the room). A room that has pending requests but no row for this version (a write
    stored while a publish replayed) gets one first; None when it has neither."""
    rows = State.objects.select_for_update(nowait=True).filter(version_id=version_id, room=room)
    try:
        state = rows.first()
        if state is None:
            if not pending_fetch(hook_id, room, 1, version_id=version_id):
                return None  # e.g. its requests were routed elsewhere by a publish
            state_row_ensure(hook_id=str(hook_id), version_id=version_id, room=room)
            state = rows.get()
    except DatabaseError as error:
        raise HookBusy(f"{hook_id} {room}") from error
    return state


def _refused_fail(
    hook_id: uuid.UUID | str, room: str, *, request_id: int, error: BaseException
) -> int:
    """Record the oldest pending request, alone in a batch the database refused, as failed
    with a CommitError: it takes its seq, the state stays as it was, and nothing it produced
    (state, console output, idempotency key) is written. Returns 1, or 0 when the hook moved
    meanwhile (another worker, a publish, a delete); raises HookFailing when this is refused
    too."""
    try:
        with transaction.atomic():
            hook = Hook.objects.filter(pk=hook_id).select_related("live_version").first()
            if hook is None or hook.live_version is None:
                return 0
            state = _state_lock(hook_id, hook.live_version.pk, room)
            if state is None:
                return 0
            pending = pending_fetch(hook_id, room, 1, version_id=hook.live_version.pk)
            if not pending or pending[0].id != request_id:
                return 0
            _number(pending, after=state.seq)
            failed = Outcome(
                outcome=Request.Outcome.FAILED, error=commit_error(error), state_after=state.value
            )
            outcomes_save(pending, [failed])
            state.seq = pending[0].seq or state.seq
            state.save(update_fields=["seq", "updated_at"])
            constraints_check()
            seq, value, version_id = state.seq, state.value, hook.live_version.pk
            transaction.on_commit(
                lambda: broadcast.state_changed(
                    hook_id=str(hook_id), seq=seq, version_id=version_id, value=value, room=room
                )
            )
            transaction.on_commit(
                lambda: broadcast.requests_logged(hook_id=str(hook_id), requests=pending)
            )
    except HookBusy:
        raise
    except Exception as again:
        if refusal_check(again):
            raise HookFailing(
                f"hook {hook_id}: recording request {request_id} as failed was refused too: {again}"
            ) from again
        raise
    logger.warning(
        "hook %s: request %s failed: the database refused its outcome (%s)",
        hook_id,
        request_id,
        error,
    )
    return 1


def _number(requests: list[StoredRequest], *, after: int) -> None:
    for offset, request in enumerate(requests, start=1):
        request.seq = after + offset


def _chain_start(
    hook_id: uuid.UUID | str, room: str, done: list[StoredRequest], version_id: int
) -> Chain | None:
    """The room's pending ids after the batch `done`, from one statement that starts at the
    room's oldest pending entry; None when one of them lies below the batch's last id.

    Ids are taken before a write commits, so a request can become visible with an id below a
    batch already fetched. A read-ahead "after the batch's last id" would pass it by and fold
    it after requests behind it: a write acked before its client sent the next, or the rest of
    one socket trip (one transaction) whose rows' ids straddle the batch. Here every request of
    a transaction is in the statement or none is; the batch's own are still pending (their
    outcomes are written after this), so a list that does not start with exactly them holds
    such a request, and the next batch starts at the room's oldest pending one instead. Read
    aheads then take their requests from this list, with no walk of the index entries of the
    requests folded since the last VACUUM: one walk per CHAIN_IDS requests, not per batch."""
    where = Q(hook_id=hook_id, room=room, outcome=Request.Outcome.PENDING) & routable(version_id)
    limit = len(done) + CHAIN_IDS
    ids = list(Request.objects.filter(where).order_by("id").values_list("id", flat=True)[:limit])
    if ids[: len(done)] != [request.id for request in done]:
        return None
    return Chain(ids=ids[len(done) :], complete=len(ids) < limit)


def pending_by_ids(ids: list[int], *, version_id: int) -> list[StoredRequest] | None:
    """The requests of `ids`, in id order, or None unless every one of them is still pending
    for the live version (a chain's list is, under the room's lock: anything else means the
    room changed, and the next batch starts from its oldest pending request).

    Primary-key lookups only: a condition on the outcome would let the planner choose a scan
    of the partial pending index with the ids as a filter, the walk the chain exists to avoid.
    Pending is checked on the rows instead (a folded request has a seq)."""
    where = Q(id__in=ids) & routable(version_id)
    rows = stored_fetch(where, order_by="id", limit=len(ids))
    if len(rows) != len(ids) or any(row.seq is not None for row in rows):
        return None
    return rows


def routable(version_id: int) -> Q:
    """Requests the version may fold: not routed by another version's code (`stale_reroute`
    moves those first)."""
    return Q(routed_by__isnull=True) | Q(routed_by=version_id)


def pending_fetch(
    hook_id: uuid.UUID | str, room: str, limit: int, *, version_id: int | None = None
) -> list[StoredRequest]:
    """The oldest pending requests of the room, in the order they were stored, and, with
    `version_id` (the live version), only those it may fold (`routable`). The read-ahead
    takes its requests from a `Chain` instead (`_chain_start`)."""
    where = Q(hook_id=hook_id, room=room, outcome=Request.Outcome.PENDING)
    if version_id is not None:
        where &= routable(version_id)
    return stored_fetch(where, order_by="id", limit=limit)


# A write whose room the previous code chose, stored while a publish switched (the switch
# re-routes everything it replayed, not what committed after its last read): for this long
# after a switch, a slice first routes such pending requests again with the live code.
REROUTE_SECONDS = 120


def stale_reroute(*, hook_id: uuid.UUID | str) -> int:
    """Route again, with the live code, the hook's pending requests that an earlier version's
    code routed; wake the rooms they move to. Returns how many moved."""
    hook = Hook.objects.filter(pk=hook_id).select_related("live_version").first()
    version = hook.live_version if hook is not None else None
    if (
        hook is None
        or version is None
        or version.published_at is None
        or timezone.now() - version.published_at > timedelta(seconds=REROUTE_SECONDS)
    ):
        return 0
    pending = Q(hook_id=hook_id, outcome=Request.Outcome.PENDING, routed_by__isnull=False)
    stale = stored_fetch(pending & ~Q(routed_by=version.pk), order_by="id", limit=1000)
    if not stale:
        return 0
    moved: set[str] = set()
    with ExitStack() as stack:
        sandbox = None
        if version.defines("room"):
            sandbox = stack.enter_context(
                session(
                    code=version.code,
                    secrets=hook_secrets(hook.pk, version=hook.secrets_version),
                    limits=hook_limits(hook),
                    hook_id=str(hook.pk),
                    role="reduce",
                )
            )
        for request in stale:
            routed = room_route(version, sandbox, request)
            room = routed if isinstance(routed, str) else MAIN_ROOM
            # Only while still pending and stale: another worker may have moved it already.
            if (
                Request.objects.filter(pk=request.id, outcome=Request.Outcome.PENDING)
                .exclude(routed_by=version.pk)
                .update(room=room, routed_by=version.pk)
            ):
                moved.add(room)
    for room in moved:
        wakeup.wake(str(hook_id), room=room)
    return len(stale)


def outcomes_save(requests: Sequence[StoredRequest], outcomes: Sequence[Outcome]) -> None:
    """Write the outcome of each request (same order) in one statement."""
    now = timezone.now()
    log_cap = settings.WR_LOG_STATE_MAX_BYTES
    for request, outcome in zip(requests, outcomes, strict=True):
        request.outcome = outcome.outcome
        request.idempotency_key = outcome.idempotency_key
        request.duplicate_of_id = outcome.duplicate_of
        request.error = outcome.error
        request.console = outcome.console
        request.duration_ms = outcome.duration_ms
        after = outcome.state_after
        request.state_after = after if after is not None and len(after) <= log_cap else None
        request.applied_at = now
    if connection.vendor == "postgresql":
        _update_postgresql(requests, now)
    else:
        _update_portable(requests, now)


# Columns a pending row holds as NULL (or, for console, as the responder left it): sent only when
# a row of the batch changes them, which keeps the common batch's JSON short.
SOMETIMES_SET: list[tuple[str, str, Callable[[StoredRequest], Any]]] = [
    ("idempotency_key", "text", lambda r: r.idempotency_key),
    ("duplicate_of_id", "bigint", lambda r: r.duplicate_of_id),
    ("error", "jsonb", lambda r: r.error),
    ("console", "text", lambda r: r.console or None),
]


def _update_postgresql(requests: Sequence[StoredRequest], now: datetime) -> None:
    """One UPDATE … FROM a JSON array of rows: json.dumps is one C call for the whole batch,
    where arrays (or bulk_update's CASE per row and column) cost Python time per value."""
    sometimes = [c for c in SOMETIMES_SET if any(c[2](r) is not None for r in requests)]
    rows = [
        [r.id, r.seq, r.outcome, r.duration_ms, r.state_after, *(c[2](r) for c in sometimes)]
        for r in requests
    ]
    columns = [
        ("seq", "bigint"),
        ("outcome", "text"),
        ("duration_ms", "float8"),
        ("state_after", "text"),
        *((name, kind) for name, kind, _ in sometimes),
    ]
    # A JSON null becomes SQL NULL through ->>; console output adds to the responder's.
    values = ", ".join(f"(e->>{i})::{kind} AS {name}" for i, (name, kind) in enumerate(columns, 1))
    sets = ", ".join(
        f"{name} = r.{name} || coalesce(v.{name}, '')"
        if name == "console"
        else f"{name} = v.{name}"
        for name, _ in columns
    )
    table = Request._meta.db_table
    with connection.cursor() as cursor:
        # Only model metadata is interpolated; every value is a parameter.
        cursor.execute(
            f"UPDATE {table} AS r SET {sets}, applied_at = %s "  # noqa: S608
            f"FROM (SELECT (e->>0)::bigint AS id, {values} FROM json_array_elements(%s::json) AS e) AS v "
            f"WHERE r.id = v.id AND r.outcome = 'pending'",
            [now, json.dumps(rows, ensure_ascii=False, separators=(",", ":"))],
        )
        if cursor.rowcount != len(rows):
            # Only the holder of the state lock changes a pending request: never reached.
            raise RuntimeError("pending requests changed under the state lock; batch undone")


def _update_portable(requests: Sequence[StoredRequest], now: datetime) -> None:
    """The embedded default (SQLite): a statement per request, fine at its volumes."""
    for r in requests:
        changes: dict[str, Any] = {
            "seq": r.seq,
            "outcome": r.outcome,
            "idempotency_key": r.idempotency_key,
            "duplicate_of_id": r.duplicate_of_id,
            "error": r.error,
            "duration_ms": r.duration_ms,
            "state_after": r.state_after,
            "applied_at": now,
        }
        if r.console:
            changes["console"] = Concat(F("console"), Value(r.console))
        Request.objects.filter(id=r.id, outcome=Request.Outcome.PENDING).update(**changes)
