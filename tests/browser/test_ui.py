"""The web UI in a real browser, against a real server, worker and Redis (see conftest.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from hooks.models import Hook
from tests.browser.conftest import DESKTOP, PHONE, Stack, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE_TIMEOUT = 20_000  # ms: a request applied by the worker and pushed to the page


def land(page: Any, stack: Stack) -> None:
    """A first visit: a new visitor on their example hook, with the editor and the live feed up."""
    page.goto(stack.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Counter example")
    expect(page.locator(".cm-editor")).to_be_visible()
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")


def replace_code(page: Any, code: str) -> None:
    """Select everything in the editor and put `code` in its place, as a paste would."""
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(code)


def send(page: Any, body: str, *, path: str = "") -> None:
    form = page.locator("#test-request")
    form.get_by_label("Path").fill(path)
    form.get_by_label("Body").fill(body)
    form.get_by_role("button", name="Send").click()
    expect(page.locator("#tr-status")).to_contain_text("Answered 2")


def state_text(page: Any) -> Any:
    return page.locator("#state-json")


def test_it_lands_a_visitor_on_an_example_that_updates_live(new_page: Any, stack: Stack) -> None:
    page = new_page()
    land(page, stack)
    expect(page.get_by_role("link", name="Sign in to keep your hooks")).to_be_visible()
    expect(page.locator("#write-url")).to_have_text(
        re.compile(re.escape(stack.url) + r"/write/\S+")
    )
    expect(page.locator("#log-empty")).to_be_visible()

    page.get_by_role("button", name="Send a test request").click()

    # No reload: the row comes over the owner's WebSocket feed, then its outcome and the state.
    row = page.locator(".log-row").first
    expect(row.locator(".badge")).to_have_text("applied", timeout=LIVE_TIMEOUT)
    expect(row.locator(".c-seq")).to_contain_text("#1")
    expect(row.locator(".c-method")).to_have_text("POST")
    expect(state_text(page)).to_contain_text('"count": 1', timeout=LIVE_TIMEOUT)
    expect(page.locator("#stat-seq")).to_have_text("1")

    send(page, '{"number": 41}')
    expect(state_text(page)).to_contain_text('"number": 42', timeout=LIVE_TIMEOUT)
    expect(page.locator(".log-row")).to_have_count(2)

    # A row opens on the request: body, headers, the state change it caused.
    newest = page.locator(".log-row").first
    newest.locator("summary").click()
    detail = newest.locator(".detail-grid")
    expect(detail).to_contain_text('"number": 41')
    expect(detail).to_contain_text("Content-Type")
    expect(detail.locator(".op-replace").filter(has_text="/number")).to_contain_text("1 → 42")
    screenshot(page, "hook-page-desktop")


def test_it_shows_a_syntax_error_at_its_line_then_publishes_and_rolls_back(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    land(page, stack)
    send(page, '{"number": 2}')
    send(page, '{"number": 3}')
    expect(state_text(page)).to_contain_text('"count": 2', timeout=LIVE_TIMEOUT)

    replace_code(
        page,
        "def reducer(state, request, secrets):\n"
        "    state = state or {}\n"
        "    state['total'] = (state.get('total', 0) +\n"
        "    return state\n",
    )

    error = page.locator("#code-error")
    expect(error).to_contain_text("Line 3", timeout=10_000)
    expect(page.locator("#draft-status")).to_have_text("Not saved: error on line 3")
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    # The gutter marker sits on line 3.
    marker_top = page.locator(".cm-lint-marker-error").bounding_box()["y"]
    line_three = page.locator(".cm-line").nth(2).bounding_box()
    assert line_three["y"] - 2 <= marker_top <= line_three["y"] + line_three["height"]

    replace_code(
        page,
        "def reducer(state, request, secrets):\n"
        "    state = state or {'total': 0, 'requests': 0}\n"
        "    state['total'] += request.body.get('number', 0) * 10\n"
        "    state['requests'] += 1\n"
        "    return state\n",
    )
    expect(page.locator("#draft-status")).to_have_text("Saved", timeout=10_000)
    expect(error).to_be_hidden()
    expect(page.locator("#draft-changed")).to_have_text("The draft differs from the live version.")

    page.get_by_role("button", name="Diff with live").click()
    expect(page.locator("#diff-output .diff-add").first).to_be_visible()
    expect(page.locator("#diff-output")).to_contain_text("* 10")

    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#dry-run-output")).to_contain_text("Folded 2 of 2", timeout=LIVE_TIMEOUT)
    expect(page.locator("#dry-run-output")).to_contain_text('"total": 50')
    expect(state_text(page)).to_contain_text('"count": 2')  # a dry run changes nothing

    page.get_by_role("button", name="Publish").click()
    progress = page.locator("#publish-progress")
    expect(progress).to_have_attribute("data-state", "done", timeout=LIVE_TIMEOUT)
    expect(progress).to_contain_text("version 2 is live")
    expect(state_text(page)).to_contain_text('"total": 50', timeout=LIVE_TIMEOUT)
    expect(page.locator("#stat-version")).to_have_text("v2")
    expect(page.locator("#versions-panel .version").first).to_contain_text("live")

    # New requests go through the new version.
    send(page, '{"number": 1}')
    expect(state_text(page)).to_contain_text('"total": 60', timeout=LIVE_TIMEOUT)

    page.get_by_role("button", name="Roll back to v1").click()
    expect(progress).to_contain_text("version 3 is live", timeout=LIVE_TIMEOUT)
    expect(state_text(page)).to_contain_text('"count": 3', timeout=LIVE_TIMEOUT)
    expect(state_text(page)).to_contain_text('"number": 6')
    # The rollback put v1's code back in the editor.
    expect(page.locator(".cm-content")).to_contain_text("Count requests and add up")
    expect(page.locator("#draft-status")).to_have_text("Saved")


def test_it_keeps_a_secret_write_only_and_gives_it_to_the_code(new_page: Any, stack: Stack) -> None:
    page = new_page()
    land(page, stack)
    value = f"s3cret-{uuid.uuid4().hex[:8]}"

    secrets = page.locator("#secrets")
    secrets.get_by_label("Name").fill("GREETING")
    secrets.get_by_label("Value").fill(value)
    secrets.get_by_role("button", name="Add or replace").click()

    expect(secrets.locator(".secret-name")).to_have_text("GREETING")
    expect(secrets).to_contain_text("Added GREETING")
    assert value not in page.content()
    page.reload()
    assert value not in page.content()

    replace_code(
        page,
        "def reducer(state, request, secrets):\n"
        "    return {'greeting': secrets['GREETING'], 'seq': request.seq}\n",
    )
    expect(page.locator("#draft-status")).to_have_text("Saved", timeout=10_000)
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#publish-progress")).to_have_attribute(
        "data-state", "done", timeout=LIVE_TIMEOUT
    )

    send(page, "{}")
    expect(state_text(page)).to_contain_text(f'"greeting": "{value}"', timeout=LIVE_TIMEOUT)


def test_it_signs_in_by_the_emailed_link_and_keeps_the_hooks(new_page: Any, stack: Stack) -> None:
    page = new_page()
    land(page, stack)
    hook_url = page.url
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"

    page.get_by_role("link", name="Sign in to keep your hooks").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    screenshot(page, "sign-in-desktop")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    page.goto(stack.sign_in_link(email))
    expect(page.get_by_role("heading", level=1)).to_contain_text(email)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(stack.url + "/hooks/")
    expect(page.locator(".nav-email")).to_have_text(email)
    expect(page.get_by_role("link", name="Counter example", exact=True)).to_be_visible()
    account = User.objects.get(email=email)
    assert not account.is_visitor
    assert Hook.objects.filter(owner=account, name="Counter example").count() == 1
    page.goto(hook_url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Counter example")
    expect(page.locator(".welcome")).to_have_count(0)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_it_lays_out_the_main_pages_without_sideways_scrolling(
    new_page: Any, stack: Stack, size: str
) -> None:
    page = new_page(DESKTOP if size == "desktop" else PHONE)
    land(page, stack)
    page.get_by_role("button", name="Send a test request").click()
    expect(page.locator(".log-row .badge").first).to_have_text("applied", timeout=LIVE_TIMEOUT)
    page.locator(".log-row summary").first.click()
    expect(page.locator(".detail-grid")).to_be_visible()
    # Seen once, as a reader scrolling would: the editor measures its lines when in view.
    page.locator(".cm-editor").scroll_into_view_if_needed()
    page.wait_for_timeout(100)
    pages = [
        ("hook", None),
        ("hooks-list", "/hooks/"),
        ("docs", "/docs/"),
        ("sign-in", "/accounts/login/"),
    ]
    for name, path in pages:
        if path:
            page.goto(stack.url + path)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {size} width"
        screenshot(page, f"{name}-{size}")
