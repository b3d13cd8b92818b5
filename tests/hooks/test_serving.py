"""hooks.serving: a hook's sandbox call slots in one web process (docs/security.md, "One tenant
cannot starve the others")."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from hooks import serving
from tests.conftest import read_key


@contextlib.contextmanager
def slots_held(hook_id: str, count: int = 1) -> Iterator[threading.Event]:
    """`count` of the hook's slots held by other threads until the event yielded is set (or
    the block ends)."""
    release = threading.Event()

    def hold() -> None:
        with serving.sandbox_slot(hook_id=hook_id):
            release.wait(10)

    holders = [threading.Thread(target=hold) for _ in range(count)]
    for holder in holders:
        holder.start()
    try:
        deadline = time.monotonic() + 10
        while serving.running_calls(hook_id) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert serving.running_calls(hook_id) == count
        yield release
    finally:
        release.set()
        for holder in holders:
            holder.join(10)


def calls(hook_id: str, seconds: float, count: int = 3) -> None:
    """Give the hook a history of calls that take `seconds` each."""
    for _ in range(count):
        with serving.sandbox_slot(hook_id=hook_id):
            time.sleep(seconds)


@pytest.fixture
def one_slot(settings: Any) -> None:
    settings.WR_SANDBOX_CALLS_PER_HOOK = 1
    settings.WR_SANDBOX_SLOT_WAIT_SECONDS = 2.0


def test_a_quick_hooks_request_waits_for_a_slot_instead_of_being_refused(one_slot: None) -> None:
    calls("quick", 0.001)
    with slots_held("quick") as release:
        threading.Timer(0.05, release.set).start()
        with serving.sandbox_slot(hook_id="quick"):  # would raise HookSaturated if it did not wait
            assert serving.running_calls("quick") == 1


def test_a_slow_hooks_excess_is_refused_at_once_while_its_slot_is_still_held(
    one_slot: None,
) -> None:
    calls("slow", 0.6, count=1)  # over a quarter of the 2 s wait: not worth waiting for
    with slots_held("slow") as release:
        # The slot frees well within the wait: a request that waited would get it.
        threading.Timer(0.3, release.set).start()
        with pytest.raises(serving.HookSaturated), serving.sandbox_slot(hook_id="slow"):
            pass
    assert serving.running_calls("slow") == 0


def test_another_hook_is_served_while_one_hook_is_full(one_slot: None) -> None:
    with slots_held("busy"), serving.sandbox_slot(hook_id="other"):
        assert serving.running_calls("busy") == 1


def test_a_new_hooks_excess_is_refused_once_its_running_calls_outlive_a_quick_call(
    one_slot: None,
) -> None:
    # No history yet (a hook's very first calls): its running call alone says it is slow.
    with slots_held("new-slow") as release:
        time.sleep(0.6)  # over a quarter of the 2 s wait
        threading.Timer(0.3, release.set).start()  # a request that waited would get the slot
        with pytest.raises(serving.HookSaturated), serving.sandbox_slot(hook_id="new-slow"):
            pass


def test_a_waiting_request_gives_up_once_the_running_call_outlives_a_quick_call(
    one_slot: None,
) -> None:
    # A new hook's first call, slow: the request that came with it waits, but only while that
    # call could still be a quick one (a quarter of the 2 s wait), not for the whole wait.
    outcome: list[str] = []

    def wait_for_the_slot() -> None:
        try:
            with serving.sandbox_slot(hook_id="turns-slow"):
                outcome.append("served")
        except serving.HookSaturated:
            outcome.append("refused")

    with slots_held("turns-slow") as release:
        waiter = threading.Thread(target=wait_for_the_slot)
        waiter.start()
        # The slot frees within the 2 s wait but after the quick window: too late for it.
        threading.Timer(1.2, release.set).start()
        waiter.join(10)
    assert outcome == ["refused"]


def test_at_most_four_requests_per_slot_wait_for_a_full_hook(one_slot: None) -> None:
    served = []

    def wait_for_the_slot() -> None:
        with serving.sandbox_slot(hook_id="crowded"):
            served.append(1)

    waiters = [threading.Thread(target=wait_for_the_slot) for _ in range(4)]
    with slots_held("crowded"):
        for waiter in waiters:
            waiter.start()
        deadline = time.monotonic() + 5
        while serving.waiting_requests("crowded") < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert serving.waiting_requests("crowded") == 4
        # One slot held, four requests already wait for it: the next is refused now.
        with pytest.raises(serving.HookSaturated), serving.sandbox_slot(hook_id="crowded"):
            pass
    for waiter in waiters:
        waiter.join(10)
    assert len(served) == 4


@pytest.mark.django_db
def test_a_read_refused_for_a_busy_hook_costs_the_key_lookup_alone(
    make_hook: Any, django_assert_num_queries: Any
) -> None:
    hook = make_hook(code="def query(state, params, secrets):\n    return state\n")
    token = read_key(hook)
    # WR_SANDBOX_CALLS_PER_HOOK: both of the hook's slots held.
    with slots_held(str(hook.pk), count=2), django_assert_num_queries(1):
        # The key; not the state (up to a MiB) that a refused read would throw away.
        response = Client().get(f"/read/{token}")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "hook_busy"


@pytest.mark.django_db
def test_a_refused_request_writes_no_log_line_with_the_key_in_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "k" * 43  # no such key: the 404 a scanner gets, as many times as it likes
    response = Client().get(f"/read/{token}")
    assert response.status_code == 404
    assert not [record for record in caplog.records if token in record.getMessage()]
