"""A newcomer's first day in the UI (issue 17): panels that follow what changed, a live indicator
that tells offline from polling, the sign-in page's development hint, the docs' search and live
updates, dark mode, keyboard shortcuts and Copy buttons for the live URLs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from hooks.models import Hook
from tests.browser.conftest import Stack, screenshot
from tests.browser.test_ui import LIVE_TIMEOUT, land, replace_code
from tests.servers import asgi_server, free_port

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROKEN = "def reducer(state, request, secrets):\n    return (state or 0) +\n"
FIXED = "def reducer(state, request, secrets):\n    return (state or 0) + 2\n"


def hook_of(page: Any) -> Hook:
    hook_id = re.search(r"/hooks/([0-9a-f-]{36})/", page.url)
    assert hook_id is not None, page.url
    return Hook.objects.get(pk=hook_id.group(1))


def test_revoking_the_write_key_takes_it_off_the_send_requests_card(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    land(page, stack)
    revoked = page.locator("#write-url").inner_text()
    keys = page.locator("#keys-panel")

    keys.locator(".key", has_text="write").get_by_role("button", name="Revoke").click()

    expect(keys.locator(".key-revoked")).to_have_count(1)
    card = page.locator("#try")
    expect(card).to_contain_text("This hook has no active write key")
    expect(card.locator("#write-url")).to_have_count(0)
    expect(page.get_by_role("button", name="Send a test request")).to_be_hidden()

    keys.get_by_label("New key").select_option("write")
    keys.get_by_role("button", name="Create key").click()

    expect(card.locator("#write-url")).to_have_text(re.compile(r"/write/\S+"))
    fresh = card.locator("#write-url").inner_text()
    assert fresh != revoked
    # The redrawn card's form still sends, to the new key.
    card.get_by_label("Body").fill('{"number": 5}')
    card.get_by_role("button", name="Send").click()
    expect(page.locator("#tr-status")).to_have_text("Answered 202.")
    assert httpx.post(revoked, json={}).status_code == 404


def test_the_panels_follow_the_draft_and_what_goes_live(new_page: Any, stack: Stack) -> None:
    page = new_page()
    land(page, stack)
    progress = page.locator("#publish-progress")

    replace_code(page, BROKEN)
    expect(page.locator("#draft-status")).to_contain_text("Not saved", timeout=10_000)
    page.get_by_role("button", name="Publish").click()
    expect(progress).to_contain_text("Not published: fix the error in the draft first.")

    replace_code(page, FIXED)
    expect(page.locator("#draft-status")).to_have_text("Saved", timeout=10_000)
    expect(progress).to_be_hidden()

    page.get_by_role("button", name="Diff with live").click()
    expect(page.locator("#diff-output")).to_contain_text("+ 2")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#dry-run-output")).to_contain_text("Folded", timeout=LIVE_TIMEOUT)

    # Ctrl-Enter in the editor publishes (and inserts no blank line into the draft).
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")

    expect(progress).to_contain_text("version 2 is live", timeout=LIVE_TIMEOUT)
    expect(page.locator("#diff-output")).to_have_text("No changes: the draft is the live code.")
    expect(page.locator("#dry-run-output")).to_contain_text(
        "Version 2 went live since this dry run: run it again"
    )
    assert hook_of(page).draft_code == FIXED


def test_ctrl_s_saves_the_draft_and_keeps_the_browser_s_save_dialog_away(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    land(page, stack)
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("\n# saved by hand\n")

    page.keyboard.press("Control+s")

    expect(page.locator("#draft-status")).to_have_text("Saved", timeout=10_000)
    assert hook_of(page).draft_code.endswith("# saved by hand\n")
    expect(page.locator("#shortcut-hint")).to_contain_text("Enter")


@pytest.mark.parametrize(
    ("scheme", "background"), [("light", "rgb(245, 247, 250)"), ("dark", "rgb(13, 17, 23)")]
)
def test_it_follows_the_system_s_light_or_dark_mode(
    browser: Any, stack: Stack, scheme: str, background: str
) -> None:
    context = browser.new_context(color_scheme=scheme)
    try:
        page = context.new_page()
        land(page, stack)
        body = page.evaluate("getComputedStyle(document.body).backgroundColor")
        editor = page.evaluate(
            "getComputedStyle(document.querySelector('.editor')).backgroundColor"
        )
        screenshot(page, f"hook-page-{scheme}")
    finally:
        context.close()

    assert body == background
    assert (editor == "rgb(255, 255, 255)") == (scheme == "light")


def test_the_live_urls_have_copy_buttons(browser: Any, stack: Stack) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        land(page, stack)
        copied = {}
        for name in ("live-url", "events-url"):
            page.locator(f"[data-copy='#{name}']").click()
            expect(page.locator(f"[data-copy='#{name}']")).to_have_text("Copied")
            copied[name] = page.evaluate("navigator.clipboard.readText()")
    finally:
        context.close()

    public = stack.url.split("://", 1)[1]
    assert re.fullmatch(rf"ws://{re.escape(public)}/read/\S+/live", copied["live-url"])
    assert re.fullmatch(rf"http://{re.escape(public)}/read/\S+/events", copied["events-url"])


def test_a_json_body_sent_as_a_form_says_what_it_was_taken_as(new_page: Any, stack: Stack) -> None:
    page = new_page()
    land(page, stack)
    write = page.locator("#write-url").inner_text()

    # What `curl -d '{"number": 4}' URL` sends: no -H, so a form.
    sent = httpx.post(
        write,
        content=b'{"number": 4}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert sent.status_code == 202

    row = page.locator(".log-row").first
    expect(row.locator(".badge")).to_have_text("applied", timeout=LIVE_TIMEOUT)
    row.locator("summary").click()
    detail = row.locator(".detail-grid")
    expect(detail.locator(".taken-as")).to_contain_text("form fields")
    expect(detail.locator(".body-hint")).to_contain_text("looks like JSON but was sent as a form")
    expect(page.locator("#write-url-note")).to_contain_text("opening this URL in a browser")


def test_the_sign_in_pages_say_where_the_link_goes_when_no_email_is_sent(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    page.goto(stack.url + "/accounts/login/")
    expect(page.locator("#delivery-hint")).to_contain_text("No email is sent")

    page.get_by_label("Email").fill("newcomer@example.com")
    page.get_by_role("button", name="Email me a sign-in link").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    expect(page.locator("#delivery-hint")).to_contain_text("written to a file")
    expect(page.locator("main")).not_to_contain_text("spam")


def test_the_docs_search_keeps_the_matching_sections_and_has_the_live_updates(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    page.goto(stack.url + "/docs/")
    live = page.locator("#live-updates")
    expect(live).to_be_visible()
    expect(page.locator("article")).to_contain_text("4409")
    expect(page.locator(".docs-toc")).to_contain_text("Live updates")

    page.keyboard.press("/")
    page.keyboard.type("Last-Event-ID")

    expect(page.locator("#docs-search-status")).to_contain_text("match")
    expect(page.get_by_role("heading", name="Catch-up")).to_be_visible()
    expect(page.locator("#limits h2")).to_be_hidden()

    page.keyboard.press("Escape")
    expect(page.locator("#limits h2")).to_be_visible()
    expect(page.locator("#docs-search-status")).to_have_text("")


def test_the_live_indicator_says_offline_while_the_server_is_down_and_recovers(
    browser: Any, tmp_path: Path, stack: Stack
) -> None:
    # A context of its own: the page logs the refused connections, as it should.
    context = browser.new_context()
    context.set_default_timeout(LIVE_TIMEOUT)
    port = free_port()
    try:
        page = context.new_page()
        with asgi_server(tmp_path, port=port) as url:
            page.goto(url + "/")
            indicator = page.locator("#live-indicator")
            expect(indicator).to_have_attribute("data-state", "live")

        expect(indicator).to_have_attribute("data-state", "offline")
        expect(indicator).to_have_text("Offline: the server cannot be reached")

        with asgi_server(tmp_path, port=port):
            expect(indicator).to_have_attribute("data-state", "live")
            expect(indicator).to_have_text("Live")
    finally:
        context.close()
