"""Celery tasks: thin wrappers that take ids and call the pipeline."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from hooks import pipeline, wakeup, worktime
from hooks.models import Request, Version

logger = logging.getLogger(__name__)


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=None)
def reduce_hook(self, hook_id: str) -> int:  # type: ignore[no-untyped-def]
    """Apply a hook's pending requests. Safe to run twice or concurrently: the pipeline locks."""
    seconds, defer = worktime.slice_for(hook_id)
    if seconds is None:
        # Over its share of worker time: the next window, behind other hooks' work. Its
        # wake-up flag stays set, so its writes meanwhile queue nothing more.
        logger.info("hook %s is over its share of worker time: deferred %.1f s", hook_id, defer)
        wakeup.hold(hook_id)
        reduce_hook.apply_async((hook_id,), countdown=defer)
        return 0
    wakeup.clear(hook_id)
    started = time.monotonic()
    try:
        count, more = pipeline.hook_reduce_slice(hook_id=hook_id, seconds=seconds)
    except pipeline.HookBusy:
        # The worker holding the lock folds until nothing is pending, but a request that
        # committed just after its last look would wait for the reconciler: look again soon.
        if self.request.retries < settings.WR_BUSY_RETRIES:
            raise self.retry(countdown=settings.WR_BUSY_RETRY_SECONDS) from None
        return 0
    finally:
        worktime.charge(hook_id, time.monotonic() - started)
    if more:
        # The slice ran out of time: queue the rest behind other hooks' work (fairness).
        wakeup.wake(hook_id)
    return count


@shared_task(ignore_result=True)
def reconcile() -> int:
    """Queue every hook whose requests have waited too long: lost messages only delay work."""
    cutoff = timezone.now() - timedelta(seconds=settings.WR_RECONCILE_AFTER)
    hook_ids = (
        Request.objects.filter(outcome=Request.Outcome.PENDING, received_at__lt=cutoff)
        .order_by()  # without it, the model's ordering made DISTINCT one row per request
        .values_list("hook_id", flat=True)
        .distinct()
    )
    count = 0
    for hook_id in hook_ids:
        reduce_hook.delay(str(hook_id))
        count += 1
    # A rebuild whose state has not moved for a while lost its task (a running one moves every
    # batch; a duplicate task is harmless, it finds the state locked and retries).
    stalled = Version.objects.filter(
        status=Version.Status.BUILDING, state__updated_at__lt=timezone.now() - timedelta(seconds=30)
    ).values_list("pk", flat=True)
    for version_id in stalled:
        replay_version.delay(version_id)
        count += 1
    if count:
        logger.info("reconciler queued %d hook(s) and rebuild(s)", count)
    return count


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=None)
def replay_version(self, version_id: int) -> None:  # type: ignore[no-untyped-def]
    """Rebuild a published version's state from the history, then switch it live."""
    from hooks import replay

    try:
        more = replay.version_replay(version_id=version_id)
    except pipeline.HookBusy:
        raise self.retry(countdown=settings.WR_BUSY_RETRY_SECONDS) from None
    except Exception as error:
        logger.exception("replay of version %s failed", version_id)
        replay.replay_fail(version_id=version_id, error=f"{type(error).__name__}: {error}")
        raise
    if more:
        replay_version.delay(version_id)
