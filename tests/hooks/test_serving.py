"""hooks.serving: a hook's sandbox call slots in one web process (docs/security.md, "One tenant
cannot starve the others")."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hooks import serving


def hold_slot(hook_id: str, entered: threading.Event, release: threading.Event) -> None:
    with serving.sandbox_slot(hook_id=hook_id):
        entered.set()
        release.wait(10)


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
    entered, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_slot, args=("quick", entered, release))
    holder.start()
    assert entered.wait(10)
    threading.Timer(0.05, release.set).start()
    with serving.sandbox_slot(hook_id="quick"):  # would raise HookSaturated if it did not wait
        assert serving.running_calls("quick") == 1
    holder.join(10)


def test_a_slow_hooks_excess_is_refused_at_once_while_its_slot_is_still_held(
    one_slot: None,
) -> None:
    calls("slow", 0.6, count=1)  # over a quarter of the 2 s wait: not worth waiting for
    entered, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_slot, args=("slow", entered, release))
    holder.start()
    assert entered.wait(10)
    # The slot frees well within the wait: a request that waited would get it.
    threading.Timer(0.3, release.set).start()
    try:
        with pytest.raises(serving.HookSaturated), serving.sandbox_slot(hook_id="slow"):
            pass
    finally:
        release.set()
        holder.join(10)
    assert serving.running_calls("slow") == 0


def test_another_hook_is_served_while_one_hook_is_full(one_slot: None) -> None:
    entered, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_slot, args=("busy", entered, release))
    holder.start()
    assert entered.wait(10)
    try:
        with serving.sandbox_slot(hook_id="other"):
            assert serving.running_calls("busy") == 1
    finally:
        release.set()
        holder.join(10)
