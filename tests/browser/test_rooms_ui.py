"""The room picker on the hook page, in a real browser: the state and the log follow the room."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Stack
from tests.browser.test_ui import LIVE_TIMEOUT, land, state_text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_picks_a_room_by_prefix_and_shows_its_live_state_and_log(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    land(page, stack)
    write_url = page.locator("#write-url").inner_text().strip()
    with httpx.Client(timeout=10) as http:
        for room, count in [("match-1", 2), ("match-2", 1), ("lobby", 1)]:
            for _ in range(count):
                assert http.post(f"{write_url}?room={room}", json={}).status_code == 202
    expect(page.locator(".log-row")).to_have_count(4, timeout=LIVE_TIMEOUT)
    expect(page.locator(".log-row .c-room").first).to_have_text("lobby", timeout=LIVE_TIMEOUT)

    picker = page.get_by_role("combobox", name="Room")
    picker.fill("match-")
    options = page.locator("#room-options option")
    expect(options).to_have_count(2, timeout=LIVE_TIMEOUT)
    # Most recently active first.
    expect(options.first).to_have_attribute("value", "match-2")
    picker.fill("match-1")
    expect(page.locator("#state-meta")).to_contain_text("match-1", timeout=LIVE_TIMEOUT)
    expect(page.locator("#state-meta")).to_contain_text("seq 2")
    expect(state_text(page)).to_contain_text('"count": 2')
    expect(page.locator(".log-row")).to_have_count(2, timeout=LIVE_TIMEOUT)
    expect(page.locator(".log-row .c-room")).to_have_text(["match-1", "match-1"])

    # Live: a write to the picked room shows up without a reload, another room's does not.
    with httpx.Client(timeout=10) as http:
        http.post(f"{write_url}?room=match-2", json={})
        http.post(f"{write_url}?room=match-1", json={})
    expect(page.locator("#state-meta")).to_contain_text("seq 3", timeout=LIVE_TIMEOUT)
    expect(page.locator(".log-row")).to_have_count(3, timeout=LIVE_TIMEOUT)

    picker.fill("")
    expect(page.locator("#state-meta")).not_to_contain_text("match-1", timeout=LIVE_TIMEOUT)
    expect(page.locator(".log-row")).to_have_count(6, timeout=LIVE_TIMEOUT)
