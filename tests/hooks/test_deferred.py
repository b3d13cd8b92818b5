"""What a write does after its commit, sent off the request (hooks/deferred.py): the wake-up that
queues its fold and the owners' feed entry are not on the request, yet always go out, once per
hook, with real Redis and the real channel layer (tasks are not eager here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client, override_settings

from hooks import broadcast, deferred, wakeup
from hooks.models import Hook
from tests.conftest import write_key
from tests.hooks.test_broadcast import _drain, _listen
from tests.servers import wait_for
from webreducer.celery import app as celery_app
from webreducer.redis import get_redis

pytestmark = pytest.mark.django_db

COUNTER = """
def reducer(state, request, secrets):
    return (state or 0) + 1
"""


def queued_tasks(hook: Hook) -> list[dict[str, Any]]:
    """The reduce tasks queued for the hook in the broker (a Redis list), as (args, kwargs)."""
    found = []
    for raw in get_redis().lrange(celery_app.conf.task_default_queue, 0, -1):
        message = json.loads(raw)
        headers = message.get("headers", {})
        if headers.get("task") == "hooks.tasks.reduce_hook" and str(hook.pk) in str(
            headers.get("argsrepr")
        ):
            found.append({"raw": raw, "kwargs": headers.get("kwargsrepr")})
    return found


@pytest.fixture
def queue_clean(make_hook: Any) -> Iterator[Hook]:
    """A hook with no wake-up flag; what the test queued for it is taken off the broker after."""
    assert not celery_app.conf.task_always_eager
    hook = make_hook(COUNTER)
    yield hook
    assert deferred.flush()
    client = get_redis()
    for task in queued_tasks(hook):
        client.lrem(celery_app.conf.task_default_queue, 0, task["raw"])
    client.delete(wakeup._flag(str(hook.pk)))


def post(hook: Hook, room: str | None = None) -> None:
    url = f"/write/{write_key(hook)}" + (f"?room={room}" if room is not None else "")
    response = Client().post(url, data={"n": 1}, content_type="application/json")
    assert response.status_code == 202, response.content


@override_settings(WR_WAKE_COALESCE_SECONDS=2.0)
def test_the_wake_up_is_sent_after_the_answer_and_queues_the_fold(queue_clean: Hook) -> None:
    hook = queue_clean
    post(hook)
    # Answered without it: a 2 s window has not passed yet.
    assert get_redis().get(wakeup._flag(str(hook.pk))) is None
    assert queued_tasks(hook) == []
    assert deferred.flush()
    assert get_redis().get(wakeup._flag(str(hook.pk))) == wakeup.QUEUED
    assert len(queued_tasks(hook)) == 1


def test_the_wake_up_goes_out_without_anyone_waiting_for_it(queue_clean: Hook) -> None:
    hook = queue_clean
    post(hook)
    wait_for(lambda: len(queued_tasks(hook)) == 1, 5, "the write's reduce task to be queued")


@override_settings(WR_WAKE_COALESCE_SECONDS=0.5)
def test_writes_of_one_window_queue_one_task_per_hook_at_its_first_room(
    queue_clean: Hook,
) -> None:
    hook = queue_clean
    for _ in range(5):
        post(hook, room="a")
        post(hook)
        post(hook, room="b")
    assert deferred.flush()
    tasks = queued_tasks(hook)
    assert [str(t["kwargs"]) for t in tasks] == ["{'room': 'a'}"]  # it folds every room


@override_settings(WR_WAKE_COALESCE_SECONDS=0)
def test_a_write_while_a_task_is_queued_queues_none_whatever_its_room(queue_clean: Hook) -> None:
    hook = queue_clean
    post(hook, room="a")
    post(hook, room="b")
    post(hook)
    assert len(queued_tasks(hook)) == 1
    # The task starts (it clears the flag): the next write queues the next task.
    assert wakeup.claim(str(hook.pk)) == (True, 0)
    post(hook, room="c")
    assert len(queued_tasks(hook)) == 2


def test_the_owners_feed_gets_the_write_off_the_request(queue_clean: Hook) -> None:
    hook = queue_clean
    broadcast.watch(str(hook.pk))
    broadcast._watch_cache.pop(str(hook.pk), None)
    channel = async_to_sync(_listen)(broadcast.owner_group(str(hook.pk)))
    post(hook)
    post(hook)
    assert deferred.flush()
    received = async_to_sync(_drain)(channel, 1)
    ids = [entry["id"] for message in received for entry in message["requests"]]
    stored = [str(r.uuid) for r in hook.requests.order_by("received_at")]
    # One message for both writes of the window (or one each, had they fallen in two).
    if len(ids) < 2:
        ids += [e["id"] for m in async_to_sync(_drain)(channel, 1) for e in m["requests"]]
    assert received[0]["type"] == "requests.logged"
    assert ids == stored


@override_settings(WR_WAKE_COALESCE_SECONDS=0)
def test_a_window_of_zero_wakes_on_the_request(queue_clean: Hook) -> None:
    hook = queue_clean
    post(hook)
    assert len(queued_tasks(hook)) == 1
