"""Celery tasks: thin wrappers that take ids and call the pipeline."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from hooks import ledger, room_batch, wakeup, worktime
from hooks.live import presence
from hooks.models import Request, Version

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, acks_late=True)
def reduce_hook(hook_id: str, busy: int = 0, room: str = "") -> int:
    """Apply the pending requests of the hook's rooms (hooks.room_batch), starting with the
    room that queued it (the main room by default): one queued task per hook (hooks.wakeup).
    Safe to run twice or concurrently: the pipeline locks each room. `busy` counts the retries
    after finding the rooms locked by other workers."""
    run, failures = wakeup.claim(hook_id)
    if not run:
        return 0  # backing off (hooks.wakeup): queued again when the pause is over
    if not Request.objects.filter(hook_id=hook_id, outcome=Request.Outcome.PENDING).exists():
        # Another task folded the hook's rooms after this one was queued (a write since then
        # queued a task of its own): nothing to do, and no worker time.
        return 0
    # Worker time is the hook's, whichever room spends it: a hook cannot get more of the
    # workers by spreading its writes over more rooms.
    seconds, defer = worktime.slice_for(hook_id)
    if seconds is None:
        # Over its share of worker time (hooks.worktime): the next window, behind other hooks'
        # work. Queued through the wake-up flag, so its writes meanwhile queue nothing more.
        logger.info("hook %s is over its share of worker time: deferred %.1f s", hook_id, defer)
        wakeup.wake(hook_id, room=room, countdown=defer)
        return 0
    started = time.monotonic()
    try:
        count, more = room_batch.rooms_reduce_slice(hook_id=hook_id, room=room, seconds=seconds)
    except ledger.HookBusy:
        # The worker holding the lock folds until nothing is pending, but a request that
        # committed just after its last look would wait for the reconciler: look again soon
        # (unless a task is queued already: that one will look).
        if busy < settings.WR_BUSY_RETRIES:
            wakeup.wake(hook_id, room=room, countdown=settings.WR_BUSY_RETRY_SECONDS, busy=busy + 1)
        return 0
    except Exception:
        # Not one request (the pipeline isolates those): the hook's state cannot be written,
        # the database is away, its secrets cannot be read... Retrying at once would only
        # flood the queue and take workers from other hooks.
        delay = wakeup.back_off(hook_id)
        logger.exception("reducing hook %s failed; it is paused for %.1f s", hook_id, delay)
        return 0
    finally:
        worktime.charge(hook_id, time.monotonic() - started)
    if failures:
        wakeup.recovered(hook_id)
    if more:
        # The slice ran out of time: queue the rest behind other hooks' work.
        wakeup.wake(hook_id, room=room)
    return count


@shared_task(ignore_result=True)
def reconcile() -> int:
    """Queue every hook whose requests have waited too long (at its oldest waiting room): lost
    messages only delay work."""
    cutoff = timezone.now() - timedelta(seconds=settings.WR_RECONCILE_AFTER)
    rooms = (
        Request.objects.filter(outcome=Request.Outcome.PENDING, received_at__lt=cutoff)
        .order_by()  # without it, the model's ordering made DISTINCT one row per request
        .values_list("hook_id", "room")
        .distinct()
    )
    # Through the wake-up flag: a hook that has a task queued, or is backing off, gets none.
    count = wakeup.wake_all([(str(hook_id), room) for hook_id, room in rooms])
    # A rebuild whose state has not moved for a while lost its task (a running one moves every
    # batch; a duplicate task is harmless, it finds the state locked and retries).
    stalled = (
        Version.objects.filter(status=Version.Status.BUILDING)
        .annotate(moved=Max("states__updated_at"))
        .filter(moved__lt=timezone.now() - timedelta(seconds=30))
        .values_list("pk", flat=True)
    )
    for version_id in stalled:
        replay_version.delay(version_id)
        count += 1
    if count:
        logger.info("reconciler queued %d hook(s) and rebuild(s)", count)
    # Two-way sockets of web processes that died: their leaves (web processes with sockets
    # reap too; this covers a deployment whose every web process stopped).
    presence.reap()
    return count


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=None)
def replay_version(self, version_id: int) -> None:  # type: ignore[no-untyped-def]
    """Rebuild a published version's state from the history, then switch it live."""
    from hooks import replay

    try:
        more = replay.version_replay(version_id=version_id)
    except ledger.HookBusy:
        raise self.retry(countdown=settings.WR_BUSY_RETRY_SECONDS) from None
    except Exception as error:
        logger.exception("replay of version %s failed", version_id)
        replay.replay_fail(version_id=version_id, error=f"{type(error).__name__}: {error}")
        raise
    if more:
        replay_version.delay(version_id)
