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

import json
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from accounts.models import User
from hooks import broadcast
from hooks.fold import Outcome, fold, fold_needs_sandbox
from hooks.ledger import HookBusy, ledger_lookup, ledger_record
from hooks.models import MAIN_ROOM, Hook, LedgerEntry, ReplayOutcome, Request, State, Version
from hooks.refusals import commit_error, constraints_check, refusal_check
from hooks.request_rows import StoredRequest, stored_fetch
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
        left = Request.objects.filter(_history(version.hook_id), id__gt=version.replay_cursor)
        total += left.count()
    return {
        "version": version.number,
        "status": {"building": "running", "published": "done"}.get(version.status, version.status),
        "applied": applied,
        "total": total,
        "rooms": State.objects.filter(version=version).count(),
        "failures": version.replay_failures,
        "error": version.replay_error,
    }


def version_replay(*, version_id: int, seconds: float | None = None) -> bool:
    """Rebuild for up to `seconds`; return whether there is more to do."""
    deadline = time.monotonic() + (seconds or settings.WR_REDUCE_SLICE_SECONDS)
    while time.monotonic() < deadline:
        if _replay_batch(version_id):
            return False
    return True


def _replay_batch(version_id: int) -> bool:
    """Fold one batch of history into the building version; return True when it has ended
    (gone live, failed, or was superseded)."""
    batch = settings.WR_BATCH_SIZE
    with transaction.atomic():
        version = Version.objects.select_related("hook").get(pk=version_id)
        if version.status != Version.Status.BUILDING:
            return True
        try:
            # The main room's row is the rebuild's own lock: one batch of it at a time.
            State.objects.select_for_update(nowait=True).get(version=version, room=MAIN_ROOM)
        except DatabaseError as error:
            raise HookBusy(str(version.hook_id)) from error
        hook = version.hook
        history = _history(hook.pk)
        left = Request.objects.filter(history, id__gt=version.replay_cursor).count()
        final = left <= batch
        if final:
            # Hold every live room: the live workers wait, so nothing more is numbered until
            # the switch commits. Lock order (building, then live) is the same everywhere.
            live = State.objects.select_for_update().filter(version_id=hook.live_id)
            list(live.order_by("id").values_list("pk", flat=True))
            # By id, but also a request that committed after the cursor passed its id (ids
            # are taken before commit): everything accepted that this version has not folded.
            staged = ReplayOutcome.objects.filter(version=version, request=OuterRef("pk"))
            history &= ~Q(Exists(staged))
        else:
            history &= Q(id__gt=version.replay_cursor)
        with ExitStack() as stack:
            sandbox = _replay_session(stack, version)
            while True:
                requests = stored_fetch(history, order_by="id", limit=batch)
                if not requests:
                    break
                _replay_fold(version, requests, sandbox)
                if not final:
                    break
        if final:
            _switch(version)
            return True
        _progress(version)
        return False


def _replay_session(stack: ExitStack, version: Version) -> Session | None:
    """One sandbox child for a batch's routing and every room's fold."""
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


def _replay_fold(
    version: Version, requests: Sequence[StoredRequest], sandbox: Session | None
) -> None:
    """Route one batch of history (in id order), then fold each room's part of it in order."""
    by_room: dict[str, list[tuple[StoredRequest, dict | None]]] = {}
    for request in requests:
        routed = room_route(version, sandbox, request)
        room, error = (routed, None) if isinstance(routed, str) else (MAIN_ROOM, routed)
        request.room = room
        by_room.setdefault(room, []).append((request, error))
    for room, part in by_room.items():
        state, _ = State.objects.get_or_create(version=version, room=room, hook_id=version.hook_id)
        for offset, (request, _error) in enumerate(part, start=1):
            request.seq = state.seq + offset
        run: list[StoredRequest] = []
        for item, error in [*part, (None, None)]:
            if item is not None and error is None:
                run.append(item)
                continue
            while run:  # the requests routed fine before this one, as the live pipeline would
                run = run[_fold_into(version, state, run, sandbox) :]
            if item is not None:
                # Its room could not be decided: failed in the main room, the state unchanged.
                failed = Outcome(
                    outcome=Request.Outcome.FAILED, error=error, state_after=state.value
                )
                _fold_record(version, state, [item], [failed], state.value)
    Version.objects.filter(pk=version.pk).update(
        replay_cursor=max(version.replay_cursor, requests[-1].id),
        replay_done=version.replay_done + len(requests),
    )
    version.replay_cursor = max(version.replay_cursor, requests[-1].id)
    version.replay_done += len(requests)


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
    before = (state.value, state.seq, version.replay_failures)
    try:
        with transaction.atomic():
            return _fold_write(version, state, requests, sandbox)
    except Exception as error:
        if not refusal_check(error):
            raise
        state.value, state.seq, version.replay_failures = before
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
        seen=lambda keys: ledger_lookup(version, keys),
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
    failures = sum(1 for o in outcomes if o.outcome == Request.Outcome.FAILED)
    if failures:
        Version.objects.filter(pk=version.pk).update(
            replay_failures=version.replay_failures + failures
        )
        version.replay_failures += failures
    state.value = new_state
    state.seq = done[-1].seq or state.seq
    state.save(update_fields=["value", "seq", "updated_at"])
    constraints_check()


def _outcomes_stage(
    version: Version, requests: Sequence[StoredRequest], outcomes: Sequence[Outcome]
) -> None:
    cap = settings.WR_LOG_STATE_MAX_BYTES
    ReplayOutcome.objects.bulk_create(
        ReplayOutcome(
            version=version,
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
