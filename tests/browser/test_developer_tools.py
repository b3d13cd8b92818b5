"""Issue 16 in a real browser: headers in the test form (a starter's request signed on the
server), the responder's answer beside a request, the Tests panel, and API tokens."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from hooks.models import HookTests
from tests.browser.conftest import Stack, screenshot
from tests.browser.test_ui import LIVE_TIMEOUT, land

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_sends_a_correctly_signed_github_request_with_headers_from_the_form(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    land(page, stack)
    page.goto(stack.url + "/hooks/")
    page.get_by_label("GitHub activity board").check()
    page.get_by_role("button", name="Create hook").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("GitHub activity board")
    expect(page.locator("#tr-sign-missing")).to_contain_text("GITHUB_SECRET")

    secret = f"gh-{uuid.uuid4().hex}"
    secrets = page.locator("#secrets")
    secrets.get_by_label("Name").fill("GITHUB_SECRET")
    secrets.get_by_label("Value").fill(secret)
    secrets.get_by_role("button", name="Add or replace").click()
    expect(secrets).to_contain_text("Added GITHUB_SECRET")
    page.reload()

    headers = page.locator("#tr-headers")
    expect(headers).to_have_value(re.compile(r"X-Hub-Signature-256: sha256=[0-9a-f]{64}"))
    assert secret not in page.content()  # the signature reached the page, the secret did not
    # An edited body is signed again when it is sent; a header of one's own goes along.
    headers.fill(headers.input_value() + "X-Trace: from-the-form\n")
    page.locator("#tr-body").fill('{"action": "opened", "issue": {"labels": [{"name": "bug"}]}}')
    page.locator("#test-request").get_by_role("button", name="Send").click()
    expect(page.locator("#tr-status")).to_have_text("Answered 202.")

    row = page.locator(".log-row").first
    expect(row.locator("summary .badge")).to_have_text("applied", timeout=LIVE_TIMEOUT)
    expect(page.locator("#state-json")).to_contain_text('"bug"', timeout=LIVE_TIMEOUT)
    row.locator("summary").click()
    detail = row.locator(".detail-grid")
    expect(detail).to_contain_text("X-Trace")
    expect(detail.locator(".detail-response")).to_contain_text("202")
    expect(detail.locator(".response-body")).to_contain_text('"ok": true')

    # A producer's unsigned request is refused by the responder, and the log shows why.
    write_url = page.locator("#write-url").inner_text()
    unsigned = urllib.request.Request(
        write_url, data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        urllib.request.urlopen(unsigned, timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 401
    rejected = page.locator(".log-row").first
    expect(rejected.locator("summary .badge")).to_have_text("rejected", timeout=LIVE_TIMEOUT)
    rejected.locator("summary").click()
    expect(rejected.locator(".detail-response")).to_contain_text("401")
    expect(rejected.locator(".response-body")).to_contain_text("X-Hub-Signature-256")
    screenshot(page, "request-response-desktop")


CASES = [
    {
        "name": "adds up numbers",
        "requests": [{"body": {"number": 2}}, {"body": {"number": 3}}],
        "expect": {"state": {"count": 2, "number": 5}},
    },
    {
        "name": "a wrong expectation",
        "requests": [{"body": {"number": 1}}],
        "expect": {"state": {"count": 1, "number": 7}},
    },
]


def test_it_runs_test_cases_in_the_tests_panel_and_adds_one_from_the_log(
    new_page: Any, stack: Stack
) -> None:
    page = new_page()
    land(page, stack)
    tests = page.locator("#tests")
    tests.get_by_label("Test cases (a JSON list)").fill(json.dumps(CASES, indent=2))

    tests.get_by_role("button", name="Run against the draft").click()

    expect(tests.locator(".tests-summary")).to_have_text(
        "1 passed, 1 failed.", timeout=LIVE_TIMEOUT
    )
    failing = tests.locator('.test-result[data-passed="0"]')
    expect(failing).to_contain_text("a wrong expectation")
    expect(failing.locator(".op-replace")).to_contain_text("/number: 7 → 1")
    tests.get_by_role("button", name="Save tests").click()
    expect(page.locator("#tests-status")).to_have_text("Saved 2 cases.")
    screenshot(page, "tests-panel-desktop")

    page.get_by_role("button", name="Send a test request").click()
    row = page.locator(".log-row").first
    expect(row.locator("summary .badge")).to_have_text("applied", timeout=LIVE_TIMEOUT)
    row.locator("summary").click()
    row.get_by_role("button", name="Add as a test case").click()
    expect(row.locator("[data-action-status]")).to_have_text("Added to the tests below.")
    hook_tests = HookTests.objects.get()
    assert len(hook_tests.cases) == 3
    assert hook_tests.cases[2]["requests"][0]["expect"] == {"status": 202}
    page.reload()
    expect(page.locator("#tests-doc")).to_have_value(re.compile("POST /"))
    page.locator("#tests").get_by_role("button", name="Run against the draft").click()
    expect(page.locator(".tests-summary")).to_have_text("2 passed, 1 failed.", timeout=LIVE_TIMEOUT)


def _me(stack: Stack, token: str) -> int:
    request = urllib.request.Request(
        stack.url + "/api/me/", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_it_creates_an_api_token_shown_once_and_revokes_it(new_page: Any, stack: Stack) -> None:
    page = new_page()
    land(page, stack)
    email = f"tok-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(stack.url + "/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Email me a sign-in link").click()
    page.goto(stack.sign_in_link(email))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".nav-email")).to_have_text(email)

    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("laptop CLI")
    page.get_by_role("button", name="Create token").click()

    token = page.locator("#new-token").inner_text()
    assert token.startswith("wr_")
    assert _me(stack, token) == 200
    row = page.locator("tr[data-token-id]")
    expect(row).to_contain_text("laptop CLI")
    screenshot(page, "api-tokens-desktop")
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()  # shown once, then never again

    page.get_by_role("button", name="Revoke laptop CLI").click()
    expect(page.locator(".messages")).to_contain_text("Revoked")
    expect(page.locator("tr[data-token-id]")).to_have_count(0)
    assert _me(stack, token) == 401
