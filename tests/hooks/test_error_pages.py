"""Error pages (issue 17): a page for people and JSON for programs, never Django's blank 405 or
its debug 404 with the URL patterns, whatever DEBUG says."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User

JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def debug(request: Any, settings: Any) -> bool:
    settings.DEBUG = request.param
    return bool(request.param)


@pytest.fixture
def signed_in(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_a_form_address_opened_in_the_browser_says_what_it_takes(
    signed_in: Client, debug: bool
) -> None:
    page = signed_in.get("/hooks/new/")

    assert page.status_code == 405 and page["Allow"] == "POST"
    assert page["Content-Type"].startswith("text/html")
    assert "takes POST, not GET" in page.content.decode()
    assert 'href="/hooks/"' in page.content.decode()


def test_a_program_asking_for_json_gets_the_json_error_shape(
    signed_in: Client, debug: bool
) -> None:
    wrong_method = signed_in.get("/hooks/new/", **JSON)  # type: ignore[arg-type]
    missing = signed_in.get("/nothing-here/", **JSON)  # type: ignore[arg-type]
    api = signed_in.get("/api/nothing-here/")

    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert "takes POST" in wrong_method.json()["error"]["message"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_an_unknown_hook_is_a_plain_not_found_page_without_the_url_patterns(
    signed_in: Client, debug: bool
) -> None:
    page = signed_in.get("/hooks/00000000-0000-0000-0000-000000000000/")
    unrouted = signed_in.get("/no/such/page/")

    for answer in (page, unrouted):
        text = answer.content.decode()
        assert answer.status_code == 404
        assert "Nothing here" in text
        assert "URLconf" not in text and "Using the URLconf" not in text
        assert "Your hooks" in text


def test_the_write_and_read_urls_keep_their_own_answers(db: Any, debug: bool) -> None:
    read = Client().get("/read/no-such-key")
    write = Client().get("/write/no-such-key")

    assert read.status_code == 404 and read.json()["error"]["code"] == "not_found"
    assert write.status_code == 404 and write["Content-Type"] == "application/json"
