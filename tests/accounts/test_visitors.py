"""Anonymous visitors: started by the first visit or over the API, rate limited, cleaned up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import visitor_for_request, visitors_delete_stale
from accounts.tasks import cleanup
from hooks import broadcast
from hooks.models import Hook, Request
from hooks.services import hook_create
from tests.accounts.helpers import bearer
from tests.conftest import write_key
from tests.hooks.api import write


def test_it_creates_a_visitor_on_the_first_visit(db: Any) -> None:
    browser = Client()

    response = browser.get("/accounts/visitor/?next=/hooks/")

    assert response.status_code == 302
    assert response["Location"] == "/hooks/"
    me = browser.get("/api/me/").json()
    assert me["kind"] == "visitor"
    assert me["email"] is None
    visitor = User.objects.get(pk=me["id"])
    assert visitor.is_visitor
    assert visitor.username.startswith("visitor-")
    assert not visitor.has_usable_password()
    browser.get("/accounts/visitor/")
    assert browser.get("/api/me/").json()["id"] == visitor.pk
    assert User.objects.count() == 1


def test_it_does_not_redirect_elsewhere(db: Any) -> None:
    response = Client().get("/accounts/visitor/?next=https://evil.example/")

    assert response["Location"] == "/"


def test_it_keeps_the_signed_in_user(alice: User, rf: RequestFactory) -> None:
    request = rf.get("/")
    request.user = alice

    assert visitor_for_request(request) == alice
    assert User.objects.count() == 1


def test_it_rate_limits_visitors_per_ip(db: Any, settings: Any) -> None:
    settings.WR_VISITORS_PER_IP_PER_HOUR = 2
    Client().get("/accounts/visitor/")
    Client().get("/accounts/visitor/")

    web = Client().get("/accounts/visitor/")
    api = APIClient().post("/api/visitors/")

    assert web.status_code == 429
    assert int(web["Retry-After"]) > 0
    assert b"Too many visitors" in web.content
    assert api.status_code == 429
    assert int(api["Retry-After"]) > 0
    assert api.json()["error"]["code"] == "throttled"
    assert "Too many visitors" in api.json()["error"]["message"]
    assert User.objects.count() == 2


def test_it_creates_a_visitor_with_a_token_over_the_api(db: Any) -> None:
    response = APIClient().post("/api/visitors/")

    assert response.status_code == 201
    body = response.json()
    assert body["user"]["kind"] == "visitor"
    me = bearer(body["token"]).get("/api/me/").json()
    assert me == body["user"]
    assert User.objects.get(pk=me["id"]).is_visitor


def test_it_says_who_is_signed_in(
    alice: User, visitor: User, client_for: Callable[..., APIClient]
) -> None:
    assert client_for(alice).get("/api/me/").json() == {
        "kind": "user",
        "id": alice.pk,
        "email": "alice@example.com",
    }
    assert client_for(visitor).get("/api/me/").json() == {
        "kind": "visitor",
        "id": visitor.pk,
        "email": None,
    }


def test_it_deletes_visitors_untouched_for_30_days(alice: User) -> None:
    old = timezone.now() - timedelta(days=31)
    stale = User.objects.create_user(username="visitor-stale", is_visitor=True, date_joined=old)
    seen_long_ago = User.objects.create_user(
        username="visitor-gone", is_visitor=True, date_joined=old, last_seen_at=old
    )
    seen_lately = User.objects.create_user(
        username="visitor-back", is_visitor=True, date_joined=old, last_seen_at=timezone.now()
    )
    fresh = User.objects.create_user(username="visitor-new", is_visitor=True)
    User.objects.filter(pk=alice.pk).update(date_joined=old, last_seen_at=old)
    hook = hook_create(owner=stale, name="forgotten")

    assert cleanup() == 2

    assert set(User.objects.all()) == {alice, seen_lately, fresh}
    assert not Hook.objects.filter(pk=hook.pk).exists()
    assert not User.objects.filter(pk=seen_long_ago.pk).exists()


def test_a_stale_visitors_hooks_go_with_their_history_and_their_live_connections_close(
    db: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    old = timezone.now() - timedelta(days=31)
    stale = User.objects.create_user(username="visitor-stale", is_visitor=True, date_joined=old)
    hook = hook_create(owner=stale, name="forgotten")
    for n in range(3):
        assert write(Client(), write_key(hook), {"n": n}).status_code == 202
    assert Request.objects.filter(hook=hook).count() == 3
    rechecked: list[str] = []
    monkeypatch.setattr(
        broadcast, "key_changed", lambda hook_id, key_id=None: rechecked.append(hook_id)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert visitors_delete_stale() == 1

    assert not Request.objects.filter(hook_id=hook.pk).exists()
    assert not Hook.objects.filter(pk=hook.pk).exists()
    assert rechecked == [str(hook.pk)]


def test_it_takes_the_visitor_age_from_settings(db: Any, settings: Any) -> None:
    settings.WR_VISITOR_MAX_AGE_DAYS = 2
    User.objects.create_user(
        username="visitor-x", is_visitor=True, date_joined=timezone.now() - timedelta(days=3)
    )

    assert visitors_delete_stale() == 1


def test_it_records_when_a_visitor_was_last_seen_at_most_hourly(db: Any) -> None:
    browser = Client()
    browser.get("/accounts/visitor/")
    visitor = User.objects.get()
    first = visitor.last_seen_at
    assert first is not None

    browser.get("/api/me/")
    visitor.refresh_from_db()
    assert visitor.last_seen_at == first

    User.objects.filter(pk=visitor.pk).update(last_seen_at=first - timedelta(hours=2))
    browser.get("/api/me/")
    visitor.refresh_from_db()
    assert visitor.last_seen_at >= first


def test_it_keeps_the_visitors_session_as_long_as_the_visitor(db: Any, settings: Any) -> None:
    browser = Client()
    browser.get("/accounts/visitor/")

    cookie = browser.cookies[settings.SESSION_COOKIE_NAME]

    assert int(cookie["max-age"]) == settings.WR_VISITOR_MAX_AGE_DAYS * 24 * 3600


def test_the_rate_limit_says_how_long_to_wait_in_minutes(
    db: Any, settings: Any, monkeypatch: Any
) -> None:
    settings.WR_VISITORS_PER_IP_PER_HOUR = 1
    ten_past = 1_800_000_000 - 1_800_000_000 % 3600 + 600  # 10 minutes into an hour's window
    monkeypatch.setattr("accounts.ratelimit.time.time", lambda: ten_past)
    Client(REMOTE_ADDR="203.0.113.9").get("/")

    page = Client(REMOTE_ADDR="203.0.113.9").get("/")
    api = APIClient(REMOTE_ADDR="203.0.113.9").post("/api/visitors/")

    assert page.status_code == 429 and page["Retry-After"] == "3001"
    assert "Sign in, or try again in 51 minutes." in page.content.decode()
    assert "seconds" not in page.content.decode()
    assert api.json()["error"]["message"] == (
        "Too many visitors were started from your network. Sign in, or try again in 51 minutes."
    )


def test_in_development_browsers_on_loopback_are_not_rate_limited(db: Any, settings: Any) -> None:
    settings.DEBUG = True
    settings.WR_VISITORS_PER_IP_PER_HOUR = 1

    loopback = [Client(REMOTE_ADDR="127.0.0.1").get("/").status_code for _ in range(3)]
    ipv6 = Client(REMOTE_ADDR="::1").get("/").status_code
    elsewhere = [Client(REMOTE_ADDR="203.0.113.10").get("/").status_code for _ in range(2)]

    assert loopback == [302, 302, 302] and ipv6 == 302
    assert elsewhere == [302, 429]


def test_without_debug_loopback_is_rate_limited_like_any_address(db: Any, settings: Any) -> None:
    settings.DEBUG = False
    settings.WR_VISITORS_PER_IP_PER_HOUR = 1

    statuses = [Client(REMOTE_ADDR="127.0.0.1").get("/").status_code for _ in range(2)]

    assert statuses == [302, 429]
