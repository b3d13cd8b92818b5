"""Personal API tokens: shown once, stored hashed, revocable, Bearer authentication."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.http import Http404
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from hooks.selectors import hook_get_for_user
from hooks.services import hook_create
from tests.accounts.helpers import bearer


def test_it_creates_a_token_shown_once(alice: User, client_for: Callable[..., APIClient]) -> None:
    client = client_for(alice)

    created = client.post("/api/tokens/", {"name": "laptop"}, format="json")

    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("wr_")
    assert created.json()["prefix"] == token[:9]
    stored = ApiToken.objects.get()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    listed = client.get("/api/tokens/").json()
    assert listed == [
        {
            "id": stored.pk,
            "name": "laptop",
            "prefix": token[:9],
            "created_at": listed[0]["created_at"],
            "last_used_at": None,
            "revoked_at": None,
        }
    ]
    assert token not in str(listed)


def test_it_requires_a_token_name(alice: User, client_for: Callable[..., APIClient]) -> None:
    response = client_for(alice).post("/api/tokens/", {}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]


def test_it_authenticates_with_a_bearer_token(alice: User) -> None:
    _, token = api_token_create(user=alice, name="ci")

    response = bearer(token).get("/api/me/")

    assert response.status_code == 200
    assert response.json() == {"kind": "user", "id": alice.pk, "email": alice.email}


def test_it_refuses_a_revoked_token(alice: User) -> None:
    api_token, token = api_token_create(user=alice, name="ci")
    client = bearer(token)
    assert client.delete(f"/api/tokens/{api_token.pk}/").status_code == 204

    response = client.get("/api/me/")

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or revoked API token."
    assert client.get("/api/tokens/").status_code == 401


def test_it_refuses_an_unknown_token(db: Any) -> None:
    for token in ["wr_made-up", "not-even-the-format", "wr_" + "x" * 500]:
        response = bearer(token).get("/api/me/")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "authentication_failed"


def test_it_refuses_a_malformed_authorization_header(alice: User) -> None:
    _, token = api_token_create(user=alice, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token} extra")

    assert client.get("/api/me/").status_code == 401


def test_it_refuses_the_token_of_a_disabled_user(alice: User) -> None:
    _, token = api_token_create(user=alice, name="ci")
    User.objects.filter(pk=alice.pk).update(is_active=False)

    assert bearer(token).get("/api/me/").status_code == 401


def test_it_answers_401_without_credentials(db: Any) -> None:
    response = APIClient().get("/api/me/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_it_records_last_used_at_at_most_once_a_minute(alice: User) -> None:
    api_token, token = api_token_create(user=alice, name="ci")
    client = bearer(token)

    client.get("/api/me/")
    api_token.refresh_from_db()
    first = api_token.last_used_at
    client.get("/api/me/")
    api_token.refresh_from_db()
    assert first is not None
    assert api_token.last_used_at == first

    ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/me/")
    api_token.refresh_from_db()
    assert api_token.last_used_at > first - timedelta(seconds=1)
    alice.refresh_from_db()
    assert alice.last_seen_at is not None


def test_it_does_not_revoke_another_users_token(
    alice: User, bob: User, client_for: Callable[..., APIClient]
) -> None:
    api_token, token = api_token_create(user=alice, name="ci")

    response = client_for(bob).delete(f"/api/tokens/{api_token.pk}/")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}
    assert bearer(token).get("/api/me/").status_code == 200
    assert client_for(bob).get("/api/tokens/").json() == []


def test_it_lists_only_live_tokens(alice: User, client_for: Callable[..., APIClient]) -> None:
    revoked, _ = api_token_create(user=alice, name="old")
    live, _ = api_token_create(user=alice, name="new")
    client = client_for(alice)
    client.delete(f"/api/tokens/{revoked.pk}/")

    assert [t["id"] for t in client.get("/api/tokens/").json()] == [live.pk]
    assert client.delete(f"/api/tokens/{revoked.pk}/").status_code == 204  # idempotent


@pytest.mark.urls("tests.accounts.probe_urls")
def test_it_keeps_a_token_of_one_user_away_from_another_users_hook(alice: User, bob: User) -> None:
    alices = hook_create(owner=alice, name="alice's")
    bobs = hook_create(owner=bob, name="bob's")
    _, token = api_token_create(user=alice, name="ci")
    client = bearer(token)

    assert client.get(f"/probe/hooks/{alices.pk}/").json()["name"] == "alice's"
    response = client.get(f"/probe/hooks/{bobs.pk}/")

    assert response.status_code == 404
    assert "bob's" not in response.content.decode()
    assert client.get("/probe/hooks/not-a-uuid/").status_code == 404


def test_it_raises_404_for_someone_elses_or_a_malformed_hook_id(alice: User, bob: User) -> None:
    hook = hook_create(owner=alice, name="alice's")

    assert hook_get_for_user(user=alice, hook_id=hook.pk) == hook
    assert hook_get_for_user(user=alice, hook_id=str(hook.pk)) == hook
    for user, hook_id in [(bob, hook.pk), (alice, "nope"), (alice, None), (None, hook.pk)]:
        with pytest.raises(Http404):
            hook_get_for_user(user=user, hook_id=hook_id)


def test_it_prints_a_working_token_from_createtoken(db: Any) -> None:
    out = StringIO()

    call_command("createtoken", "--email", "Ops@Example.com", "--name", "deploy", stdout=out)

    token = out.getvalue().strip()
    user = User.objects.get(email="ops@example.com")
    assert ApiToken.objects.get().name == "deploy"
    assert bearer(token).get("/api/me/").json() == {
        "kind": "user",
        "id": user.pk,
        "email": user.email,
    }


def test_it_reuses_the_account_in_createtoken(alice: User) -> None:
    out = StringIO()

    call_command("createtoken", "--email", alice.email, stdout=out)

    assert bearer(out.getvalue().strip()).get("/api/me/").json()["id"] == alice.pk
    assert User.objects.count() == 1


def test_it_refuses_a_malformed_email_in_createtoken(db: Any) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("createtoken", "--email", "nope", stdout=StringIO())


def test_it_never_stores_the_clear_token(alice: User) -> None:
    api_token, token = api_token_create(user=alice, name="ci")

    assert token not in str(list(ApiToken.objects.values_list()))
    assert api_token.revoked_at is None
    assert timezone.now() - api_token.created_at < timedelta(minutes=1)
