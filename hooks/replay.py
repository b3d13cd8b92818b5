"""Publishing: a new version rebuilds the state from the whole history, blue/green (docs/api.md, "Publishing").

The new version gets its own State row and folds every applied request in seq order, in the
background, while the live version keeps serving reads and applying new writes. When the
rebuild is within one batch of the head, it locks the live state too (the live worker waits),
folds the rest and swaps Hook.live_version in the same transaction: nothing is lost or applied
twice, and readers see either the old state or the caught-up new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from accounts.models import User
from hooks import broadcast
from hooks.fold import Outcome, fold
from hooks.models import Hook, LedgerEntry, ReplayOutcome, Request, State, Version
from hooks.pipeline import HookBusy, ledger_lookup, ledger_record
from hooks.refusals import commit_error, constraints_check, refusal_check
from hooks.request_rows import StoredRequest, stored_fetch
from hooks.services import code_check, hook_limits, hook_secrets

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


def replay_progress(version: Version) -> dict[str, object]:
    """How far a version's rebuild has come: applied of total (the live head)."""
    applied = State.objects.filter(version=version).values_list("seq", flat=True).first() or 0
    live = (
        State.objects.filter(version_id=version.hook.live_id).values_list("seq", flat=True).first()
        or 0
    )
    total = max(live, applied)
    if version.status == Version.Status.PUBLISHED:
        applied = total = max(applied, live)
    return {
        "version": version.number,
        "status": {"building": "running", "published": "done"}.get(version.status, version.status),
        "applied": applied,
        "total": total,
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
            state = State.objects.select_for_update(nowait=True).get(version=version)
        except DatabaseError as error:
            raise HookBusy(str(version.hook_id)) from error
        hook = version.hook
        head = State.objects.values_list("seq", flat=True).get(version_id=hook.live_id)
        final = head - state.seq <= batch
        if final:
            # Hold the live state: the live worker waits, so the head stands still until the
            # switch commits. Lock order (building, then live) is the same everywhere.
            live = State.objects.select_for_update().get(version_id=hook.live_id)
            head = live.seq
        requests = stored_fetch(
            Q(hook=hook, seq__gt=state.seq, seq__lte=head), order_by="seq", limit=batch
        )
        while requests:
            done = _fold_into(version, state, requests)
            requests = requests[done:]
            if not final:
                break
        if final and state.seq == head:
            _switch(version, state)
            return True
        _progress(version, done=state.seq, total=head)
        return False


def _progress(version: Version, *, done: int, total: int) -> None:
    """Tell the owner's live feed how far the rebuild is, once this batch has committed."""
    hook_id, number, status = str(version.hook_id), version.number, version.status
    transaction.on_commit(
        lambda: broadcast.replay_progress(
            hook_id=hook_id, version=number, done=done, total=total, status=status
        )
    )


def _fold_into(version: Version, state: State, requests: Sequence[StoredRequest]) -> int:
    """Fold and stage `requests` (or the first of them, when a repeated key cuts the batch);
    return how many. Each piece is written under a savepoint: a piece the database refuses is
    folded again in halves, down to the request that causes it, which is staged as failed with
    a CommitError (as the live pipeline does), so no stored request can stop a publish."""
    before = (state.value, state.seq, version.replay_failures)
    try:
        with transaction.atomic():
            return _fold_write(version, state, requests)
    except Exception as error:
        if not refusal_check(error):
            raise
        state.value, state.seq, version.replay_failures = before
        if len(requests) > 1:
            half = len(requests) // 2
            done = _fold_into(version, state, requests[:half])
            if done < half:
                return done  # cut by a repeated key: the caller goes on from there
            return done + _fold_into(version, state, requests[half:])
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


def _fold_write(version: Version, state: State, requests: Sequence[StoredRequest]) -> int:
    outcomes, new_state = fold(
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


def _switch(version: Version, state: State) -> None:
    hook = version.hook
    if version.strict and version.replay_failures:
        seqs = list(
            ReplayOutcome.objects.filter(version=version, outcome=Request.Outcome.FAILED)
            .order_by("request__seq")
            .values_list("request__seq", flat=True)[:20]
        )
        listed = ", ".join(map(str, seqs)) + (", …" if version.replay_failures > len(seqs) else "")
        version.status = Version.Status.FAILED
        version.replay_error = (
            f"Strict publish refused: {version.replay_failures} request(s) failed during the "
            f"replay (seq {listed}). The previous version stays live."
        )
        version.save(update_fields=["status", "replay_error"])
        ReplayOutcome.objects.filter(version=version).delete()
        _progress(version, done=state.seq, total=state.seq)
        return
    table, staged = Request._meta.db_table, ReplayOutcome._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} SET outcome = o.outcome, error = o.error, console = o.console,
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
    hook_id, seq, value = str(hook.pk), state.seq, state.value
    transaction.on_commit(
        lambda: broadcast.state_changed(
            hook_id=hook_id, seq=seq, version_id=version.pk, value=value
        )
    )
    _progress(version, done=seq, total=seq)


def replay_fail(*, version_id: int, error: str) -> None:
    with transaction.atomic():
        failed = Version.objects.filter(pk=version_id, status=Version.Status.BUILDING).update(
            status=Version.Status.FAILED, replay_error=error[:2000]
        )
        if failed:
            version = Version.objects.get(pk=version_id)
            done = State.objects.values_list("seq", flat=True).get(version=version)
            _progress(version, done=done, total=done)


def hook_dry_run(*, hook: Hook, code: str, last: int | None = None) -> dict[str, object]:
    """Fold `code` over the stored history (or its last `last` requests, from a null state)
    in memory: nothing is written. Returns the final state, the live state and per-request
    failures and console output."""
    import json

    from hooks.diff import json_diff

    functions = code_check(code)
    limit = min(last or settings.WR_DRY_RUN_MAX_REQUESTS, settings.WR_DRY_RUN_MAX_REQUESTS)
    history = Q(hook=hook, seq__isnull=False)
    total = Request.objects.filter(history).count()
    requests = stored_fetch(history, order_by="-seq", limit=limit)[::-1]
    ledger: dict[str, int] = {}
    state = "null"
    report: list[dict[str, object]] = []
    secrets = hook_secrets(hook.pk) if functions else {}
    limits = hook_limits(hook)

    def seen(keys: list[str]) -> dict[str, int]:
        return {k: ledger[k] for k in keys if k in ledger}

    position = 0
    while position < len(requests):
        chunk = requests[position : position + settings.WR_BATCH_SIZE]
        outcomes, state = fold(
            code=code,
            functions=functions,
            secrets=secrets,
            limits=limits,
            state=state,
            requests=chunk,
            seen=seen,
        )
        for request, outcome in zip(chunk, outcomes, strict=False):
            if outcome.outcome == Request.Outcome.APPLIED and outcome.idempotency_key is not None:
                ledger[outcome.idempotency_key] = request.id
            if outcome.error or outcome.console:
                report.append(
                    {
                        "seq": request.seq,
                        "id": str(request.uuid),
                        "outcome": outcome.outcome,
                        "error": outcome.error,
                        "console": outcome.console,
                    }
                )
        position += len(outcomes)
    live = State.objects.get(version_id=hook.live_id)
    final, current = json.loads(state), json.loads(live.value)
    return {
        "requests": len(requests),
        "history": total,
        "truncated": len(requests) < total,
        "state": final,
        "live_state": current,
        "live_seq": live.seq,
        "diff": json_diff(current, final),
        "failures": sum(1 for r in report if r["outcome"] == Request.Outcome.FAILED),
        "requests_report": report,
    }
