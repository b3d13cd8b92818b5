"""Sign-in by emailed link: the original product's auth checks, adapted, and the merge."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, MagicLink, User
from accounts.services import api_token_create, magic_link_request
from accounts.tasks import magic_link_send_task
from hooks.models import Hook
from hooks.services import hook_create
from tests.accounts.helpers import ask_for_link, bearer, link_path, link_token, sent_links

pytestmark = pytest.mark.usefixtures("mail_after_commit")  # they read the outbox


def confirm(client: APIClient, token: str) -> Any:
    return client.post("/api/auth/magic-link/confirm/", {"token": token}, format="json")


def visitor_client(visitor: User) -> APIClient:
    """A browser whose session is the visitor's, as visitor_for_request leaves it."""
    client = APIClient()
    client.force_login(visitor, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_it_signs_in_without_a_visitor_session(db: Any) -> None:
    client = APIClient()
    token = ask_for_link(client, "carol@example.com")

    response = confirm(client, token)

    assert response.status_code == 200, response.content
    assert response.json()["user"]["kind"] == "user"
    assert response.json()["user"]["email"] == "carol@example.com"
    me = client.get("/api/me/").json()
    assert me["kind"] == "user"
    assert me["email"] == "carol@example.com"


def test_it_creates_the_account_only_when_the_link_is_confirmed(db: Any) -> None:
    client = APIClient()
    token = ask_for_link(client, "Dana@Example.com")
    assert not User.objects.filter(email__iexact="dana@example.com").exists()

    confirm(client, token)

    account = User.objects.get(email="dana@example.com")
    assert not account.is_visitor
    assert not account.has_usable_password()


@pytest.mark.parametrize(
    "email", ["", "not-an-email", "a@", "@example.com", "a b@example.com", "x" * 250 + "@ex.com"]
)
def test_it_rejects_a_malformed_email(db: Any, email: str) -> None:
    response = APIClient().post("/api/auth/magic-link/", {"email": email}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "email" in response.json()["error"]["fields"]
    assert mail.outbox == []


def test_it_rejects_a_malformed_email_in_the_web_form(db: Any) -> None:
    response = Client().post("/accounts/login/", {"email": "not-an-email"})

    assert response.status_code == 400
    assert b"Enter a valid email address." in response.content
    assert mail.outbox == []


def test_it_refuses_a_link_used_twice(db: Any) -> None:
    client = APIClient()
    token = ask_for_link(client, "carol@example.com")
    assert confirm(client, token).status_code == 200

    response = confirm(APIClient(), token)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "link_used"
    assert "already been used" in response.json()["error"]["message"]


def test_it_refuses_an_expired_link(db: Any) -> None:
    client = APIClient()
    token = ask_for_link(client, "carol@example.com")
    MagicLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = confirm(client, token)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "link_expired"
    assert not User.objects.filter(email="carol@example.com").exists()


def test_it_expires_links_after_an_hour(db: Any) -> None:
    ask_for_link(APIClient(), "carol@example.com")

    link = MagicLink.objects.get()

    assert link.expires_at - link.created_at == pytest.approx(
        timedelta(hours=1), abs=timedelta(seconds=5)
    )


def test_it_refuses_a_made_up_link(db: Any) -> None:
    response = confirm(APIClient(), "made-up-token")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "link_invalid"


def test_it_refuses_made_up_used_and_expired_links_in_the_browser(db: Any) -> None:
    browser = Client()
    browser.post("/accounts/login/", {"email": "carol@example.com"})
    path = link_path(sent_links()[0])
    browser.post(path)

    used = Client().get(path)
    made_up = Client().get("/accounts/login/link/made-up/")

    assert used.status_code == 400
    assert b"already been used" in used.content
    assert made_up.status_code == 400
    assert b"not valid" in made_up.content


def test_it_sends_the_email_once_to_that_address_with_the_link(db: Any, settings: Any) -> None:
    settings.SITE_ROOT = "https://webreducer.example"
    APIClient().post("/api/auth/magic-link/", {"email": "carol@example.com"}, format="json")

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["carol@example.com"]
    assert message.subject == "Sign in to WebReducer"
    (url,) = sent_links("carol@example.com")
    assert url.startswith("https://webreducer.example/accounts/login/link/")
    html, mimetype = message.alternatives[0]  # type: ignore[attr-defined]
    assert mimetype == "text/html"
    assert url in str(html)


def test_it_never_builds_the_link_from_the_host_header(db: Any, settings: Any) -> None:
    settings.SITE_ROOT = "https://webreducer.example"
    # Even a host the operator lets through (ALLOWED_HOSTS is no longer `*` by default).
    settings.ALLOWED_HOSTS = ["*"]
    APIClient().post(
        "/api/auth/magic-link/",
        {"email": "carol@example.com"},
        format="json",
        HTTP_HOST="evil.example",
    )

    assert sent_links()[0].startswith("https://webreducer.example/")


def test_it_stores_only_a_hash_of_the_link(db: Any) -> None:
    token = ask_for_link(APIClient(), "carol@example.com")

    link = MagicLink.objects.get()

    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(list(MagicLink.objects.values_list()))


def test_it_does_not_spend_the_link_on_get(db: Any) -> None:
    client = APIClient()
    token = ask_for_link(client, "carol@example.com")
    path = link_path(sent_links()[0])

    for _ in range(3):  # a mail scanner, a preview, the person
        page = Client().get(path)
        assert page.status_code == 200
        assert b"Sign in as carol@example.com" in page.content
        assert b'method="post"' in page.content

    assert MagicLink.objects.get().used_at is None
    assert not User.objects.filter(email="carol@example.com").exists()
    assert confirm(client, token).status_code == 200


def test_it_answers_the_same_for_known_and_unknown_addresses(alice: User) -> None:
    known = APIClient().post("/api/auth/magic-link/", {"email": alice.email}, format="json")
    unknown = APIClient().post(
        "/api/auth/magic-link/", {"email": "nobody@example.com"}, format="json"
    )

    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert [m.to for m in mail.outbox] == [[alice.email], ["nobody@example.com"]]
    known_page = Client().post("/accounts/login/", {"email": alice.email}, follow=True)
    unknown_page = Client().post("/accounts/login/", {"email": "nobody@example.com"}, follow=True)
    assert known_page.status_code == unknown_page.status_code == 200
    assert known_page.content.replace(alice.email.encode(), b"X") == unknown_page.content.replace(
        b"nobody@example.com", b"X"
    )


def test_it_rate_limits_links_per_email(db: Any, settings: Any) -> None:
    settings.WR_MAGIC_LINKS_PER_EMAIL_PER_HOUR = 2
    client = APIClient()
    for _ in range(2):
        assert (
            client.post(
                "/api/auth/magic-link/", {"email": "c@example.com"}, format="json"
            ).status_code
            == 202
        )

    response = client.post("/api/auth/magic-link/", {"email": "c@example.com"}, format="json")
    other = client.post("/api/auth/magic-link/", {"email": "d@example.com"}, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    assert other.status_code == 202
    assert len(mail.outbox) == 3


def test_it_rate_limits_links_per_ip(db: Any, settings: Any) -> None:
    settings.WR_MAGIC_LINKS_PER_IP_PER_HOUR = 3
    client = APIClient()
    statuses = [
        client.post(
            "/api/auth/magic-link/", {"email": f"p{i}@example.com"}, format="json"
        ).status_code
        for i in range(4)
    ]
    web = Client().post("/accounts/login/", {"email": "web@example.com"})

    assert statuses == [202, 202, 202, 429]
    assert web.status_code == 429
    assert int(web["Retry-After"]) > 0
    assert b"Too many sign-in links" in web.content


def test_it_rate_limits_confirmations_per_ip(db: Any, settings: Any) -> None:
    settings.WR_MAGIC_LINK_CONFIRMS_PER_IP_PER_HOUR = 2
    client = APIClient()
    assert confirm(client, "guess-1").status_code == 400
    assert confirm(client, "guess-2").status_code == 400

    response = confirm(client, "guess-3")

    assert response.status_code == 429
    assert "Retry-After" in response


def test_it_moves_the_visitors_hooks_to_a_new_account(visitor: User) -> None:
    first = hook_create(owner=visitor, name="one")
    second = hook_create(owner=visitor, name="two")
    client = visitor_client(visitor)
    assert client.get("/api/me/").json()["kind"] == "visitor"
    token = ask_for_link(client, "carol@example.com")

    response = confirm(client, token)

    account = User.objects.get(email="carol@example.com")
    assert response.json()["user"]["id"] == account.pk
    assert set(Hook.objects.filter(owner=account)) == {first, second}
    assert not User.objects.filter(pk=visitor.pk).exists()
    assert client.get("/api/me/").json() == {
        "kind": "user",
        "id": account.pk,
        "email": "carol@example.com",
    }


def test_it_moves_the_visitors_hooks_to_an_account_that_has_hooks(
    alice: User, visitor: User
) -> None:
    own = hook_create(owner=alice, name="alice's")
    made = {hook_create(owner=visitor, name="one"), hook_create(owner=visitor, name="two")}
    client = visitor_client(visitor)
    token = ask_for_link(client, alice.email)

    assert confirm(client, token).status_code == 200

    assert set(Hook.objects.filter(owner=alice)) == {own, *made}
    assert Hook.objects.filter(owner=alice).count() == 3
    assert not User.objects.filter(pk=visitor.pk).exists()
    assert client.get("/api/me/").json()["id"] == alice.pk


def test_it_moves_the_visitors_tokens(alice: User, visitor: User) -> None:
    _, token = api_token_create(user=visitor, name="curl")
    api = bearer(token)
    assert api.get("/api/me/").json()["kind"] == "visitor"
    link = ask_for_link(api, alice.email)

    assert confirm(api, link).status_code == 200

    assert ApiToken.objects.get().user == alice
    assert api.get("/api/me/").json() == {"kind": "user", "id": alice.pk, "email": alice.email}


def test_it_leaves_the_hooks_of_the_visitor_that_asked_when_confirmed_elsewhere(
    alice: User, visitor: User
) -> None:
    # Asking for a link proves nothing (anyone can type alice's address): only the browser that
    # confirms it is signed in, and the asker's hooks stay where they were.
    hook = hook_create(owner=visitor, name="made on the laptop")
    laptop = visitor_client(visitor)
    token = ask_for_link(laptop, alice.email)

    phone = APIClient()
    assert confirm(phone, token).status_code == 200

    hook.refresh_from_db()
    assert hook.owner == visitor
    assert phone.get("/api/me/").json()["id"] == alice.pk
    assert laptop.get("/api/me/").json() == {"kind": "visitor", "id": visitor.pk, "email": None}


def test_it_moves_the_confirming_browsers_visitor_only_when_asked_to(alice: User) -> None:
    laptop_visitor = User.objects.create_user(username="visitor-laptop", is_visitor=True)
    phone_visitor = User.objects.create_user(username="visitor-phone", is_visitor=True)
    laptop_hook = hook_create(owner=laptop_visitor, name="laptop")
    phone_hook = hook_create(owner=phone_visitor, name="phone")
    token = ask_for_link(visitor_client(laptop_visitor), alice.email)
    phone = visitor_client(phone_visitor)

    response = phone.post(
        "/api/auth/magic-link/confirm/", {"token": token, "merge_visitor": True}, format="json"
    )

    assert response.status_code == 200
    laptop_hook.refresh_from_db()
    phone_hook.refresh_from_db()
    assert phone_hook.owner == alice
    assert laptop_hook.owner == laptop_visitor
    assert not User.objects.filter(pk=phone_visitor.pk).exists()


def test_it_offers_and_does_not_tick_the_move_on_a_link_asked_for_elsewhere(
    alice: User, visitor: User
) -> None:
    hook = hook_create(owner=visitor, name="phone's")
    ask_for_link(APIClient(), alice.email)
    path = link_path(sent_links()[0])
    browser = Client()
    session_login_client(browser, visitor)

    page = browser.get(path)
    unticked = browser.post(path)

    assert b"Also move the 1 hook this browser made as a visitor to alice@example.com" in (
        page.content
    )
    assert b'name="merge_visitor" value="yes">' in page.content  # not `checked`
    assert unticked.status_code == 302
    hook.refresh_from_db()
    assert hook.owner == visitor
    assert browser.get("/api/me/").json()["id"] == alice.pk


def test_it_moves_this_browsers_hooks_when_the_box_is_ticked(alice: User, visitor: User) -> None:
    hook = hook_create(owner=visitor, name="phone's")
    ask_for_link(APIClient(), alice.email)
    path = link_path(sent_links()[0])
    browser = Client()
    session_login_client(browser, visitor)

    browser.post(path, {"merge_visitor": "yes"})

    hook.refresh_from_db()
    assert hook.owner == alice
    assert not User.objects.filter(pk=visitor.pk).exists()


def test_it_switches_accounts_without_merging_them(alice: User, bob: User) -> None:
    hook_create(owner=alice, name="alice's")
    client = APIClient()
    client.force_login(alice, backend="django.contrib.auth.backends.ModelBackend")
    token = ask_for_link(client, bob.email)

    confirm(client, token)

    assert client.get("/api/me/").json()["id"] == bob.pk
    assert Hook.objects.filter(owner=alice).count() == 1
    assert Hook.objects.filter(owner=bob).count() == 0


def test_it_refuses_a_disabled_account(alice: User) -> None:
    alice.is_active = False
    alice.save()
    client = APIClient()
    token = ask_for_link(client, alice.email)

    response = confirm(client, token)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "account_disabled"
    assert MagicLink.objects.get().used_at is None


def test_it_can_hand_out_an_api_token_on_sign_in(db: Any) -> None:
    client = APIClient()
    token = ask_for_link(client, "carol@example.com")

    response = client.post(
        "/api/auth/magic-link/confirm/",
        {"token": token, "api_token_name": "laptop"},
        format="json",
    )

    api_token = response.json()["api_token"]
    assert bearer(api_token).get("/api/me/").json()["email"] == "carol@example.com"


def test_it_signs_in_through_the_web_pages(visitor: User) -> None:
    hook = hook_create(owner=visitor, name="mine")
    browser = Client()
    session_login_client(browser, visitor)
    assert browser.get("/accounts/login/").status_code == 200

    asked = browser.post("/accounts/login/", {"email": "carol@example.com"})
    assert asked.status_code == 302
    assert asked["Location"] == "/accounts/login/check-email/"
    check = browser.get(asked["Location"])
    assert b"Check your email" in check.content
    assert b"carol@example.com" in check.content

    path = link_path(sent_links("carol@example.com")[0])
    assert b"will move to this account" in browser.get(path).content
    done = browser.post(path)

    assert done.status_code == 302
    account = User.objects.get(email="carol@example.com")
    hook.refresh_from_db()
    assert hook.owner == account
    assert browser.get("/api/me/").json()["id"] == account.pk
    assert link_token(sent_links()[0]) not in browser.get("/api/me/").content.decode()


def session_login_client(client: Client, user: User) -> None:
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")


def test_it_signs_out(alice: User) -> None:
    browser = Client()
    session_login_client(browser, alice)

    response = browser.post("/accounts/logout/")

    assert response.status_code == 302
    assert browser.get("/api/me/").status_code == 401


def test_it_keeps_allauths_password_pages_out_of_the_way(db: Any) -> None:
    for path in ["/accounts/signup/", "/accounts/password/reset/", "/accounts/email/"]:
        response = Client().get(path)
        assert response.status_code == 302, path
        assert response["Location"] == "/accounts/login/"


def test_the_sign_in_email_goes_out_from_a_task_only_once_the_request_commits() -> None:
    with transaction.atomic():
        magic_link_request(email="late@example.com", ip="192.0.2.1")
        assert mail.outbox == []
        assert not MagicLink.objects.filter(email="late@example.com").exists()

    assert [message.to for message in mail.outbox] == [["late@example.com"]]
    assert MagicLink.objects.get(email="late@example.com").requested_ip == "192.0.2.1"


def test_no_sign_in_token_travels_through_the_task_queue(monkeypatch: Any) -> None:
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(magic_link_send_task, "delay", lambda **kwargs: queued.append(kwargs))

    with transaction.atomic():
        magic_link_request(email="queued@example.com", ip="192.0.2.2", user_agent="curl/8")

    assert queued == [
        {
            "email": "queued@example.com",
            "visitor_id": None,
            "requested_ip": "192.0.2.2",
            "requested_browser": queued[0]["requested_browser"],
        }
    ]
    assert mail.outbox == [] and not MagicLink.objects.exists()  # the task makes the token
