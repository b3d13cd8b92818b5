"""The operators' admin: useful lists, no secrets or token hashes, a pause action."""

from __future__ import annotations

from typing import Any

import pytest
from django.forms import CheckboxInput
from django.test import Client

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from hooks import broadcast, crypto
from hooks.models import Hook, Key, Request, Secret
from hooks.services import hook_create


@pytest.fixture
def operator(db: Any) -> Client:
    admin = User.objects.create_superuser(username="ops", email="ops@example.com", password="x")
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def hook(alice: User) -> Hook:
    hook = hook_create(owner=alice, name="alice's hook")
    Secret.objects.create(
        hook=hook,
        name="STRIPE_KEY",
        ciphertext=crypto.encrypt("sk_live_topsecret"),
        fingerprint=crypto.fingerprint("sk_live_topsecret"),
    )
    return hook


def test_it_lists_users_with_a_visitor_filter_and_hook_counts(
    operator: Client, hook: Hook, visitor: User
) -> None:
    page = operator.get("/admin/accounts/user/?is_visitor__exact=1")

    assert page.status_code == 200
    assert visitor.username.encode() in page.content
    assert b"alice@example.com" not in page.content
    assert b"column-hooks_count" in operator.get("/admin/accounts/user/").content


def test_it_never_shows_token_hashes(operator: Client, alice: User) -> None:
    api_token, token = api_token_create(user=alice, name="ci")

    for url in [
        "/admin/accounts/apitoken/",
        f"/admin/accounts/apitoken/{api_token.pk}/change/",
        f"/admin/accounts/user/{alice.pk}/change/",
    ]:
        page = operator.get(url)
        assert page.status_code == 200, url
        assert api_token.token_hash.encode() not in page.content
        assert token.encode() not in page.content
    assert operator.get("/admin/accounts/apitoken/add/").status_code == 403


def test_it_never_shows_secrets_or_key_tokens(operator: Client, hook: Hook) -> None:
    secret = hook.secrets.get()
    write_key = hook.keys.get(kind=Key.Kind.WRITE).token
    for url in [
        "/admin/hooks/hook/",
        f"/admin/hooks/hook/{hook.pk}/change/",
        "/admin/hooks/secret/",
        f"/admin/hooks/secret/{secret.pk}/change/",
        "/admin/hooks/key/",
        "/admin/hooks/version/",
        "/admin/hooks/request/",
    ]:
        page = operator.get(url)
        assert page.status_code == 200, url
        assert b"sk_live_topsecret" not in page.content
        assert bytes(secret.ciphertext) not in page.content
        assert write_key.encode() not in page.content
    assert b"STRIPE_KEY" in operator.get(f"/admin/hooks/hook/{hook.pk}/change/").content


def test_it_shows_a_request(operator: Client, hook: Hook) -> None:
    from django.utils import timezone

    row = Request.objects.create(
        hook=hook, method="POST", body=b'{"n": 1}', received_at=timezone.now()
    )

    page = operator.get(f"/admin/hooks/request/{row.pk}/change/")

    assert page.status_code == 200
    assert b"{&quot;n&quot;: 1}" in page.content


def test_it_pauses_and_unpauses_hooks(operator: Client, hook: Hook) -> None:
    operator.post("/admin/hooks/hook/", {"action": "pause", "_selected_action": [str(hook.pk)]})
    hook.refresh_from_db()
    assert hook.is_paused

    operator.post("/admin/hooks/hook/", {"action": "unpause", "_selected_action": [str(hook.pk)]})
    hook.refresh_from_db()
    assert not hook.is_paused


def test_it_keeps_non_staff_out(alice: User, hook: Hook) -> None:
    client = Client()
    client.force_login(alice)

    response = client.post(
        "/admin/hooks/hook/", {"action": "pause", "_selected_action": [str(hook.pk)]}
    )

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    hook.refresh_from_db()
    assert not hook.is_paused


def test_it_revokes_tokens_from_the_admin(operator: Client, alice: User) -> None:
    api_token, _ = api_token_create(user=alice, name="leaked")

    operator.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [str(api_token.pk)]}
    )

    assert ApiToken.objects.get(pk=api_token.pk).revoked_at is not None


def test_it_searches_by_id_name_and_owner(operator: Client, hook: Hook) -> None:
    for term in [str(hook.pk), "alice's", "alice@example.com", "not-a-uuid"]:
        page = operator.get("/admin/hooks/hook/", {"q": term})
        assert page.status_code == 200, term
    assert str(hook.pk).encode() in operator.get("/admin/hooks/hook/", {"q": str(hook.pk)}).content
    for url in [
        "/admin/hooks/request/",
        "/admin/hooks/key/",
        "/admin/hooks/version/",
        "/admin/hooks/secret/",
    ]:
        assert operator.get(url, {"q": "not-a-uuid"}).status_code == 200, url


def _form_data(response: Any) -> dict[str, Any]:
    """The admin change form's current values as POST data (its inlines' included)."""
    forms = [response.context["adminform"].form]
    data: dict[str, Any] = {}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update(
            {management.add_prefix(name): management[name].value() for name in management.fields}
        )
        forms += formset.forms
    for form in forms:
        for field in form:
            value = field.value()
            if isinstance(field.field.widget, CheckboxInput):
                if value:
                    data[field.html_name] = "on"
            else:
                data[field.html_name] = field.field.widget.format_value(value) or ""
    return data


@pytest.fixture
def rechecked(monkeypatch: Any) -> list[tuple[str, int | None]]:
    """(hook id, key id) of every live re-check sent (hooks.broadcast.key_changed)."""
    sent: list[tuple[str, int | None]] = []
    monkeypatch.setattr(
        broadcast, "key_changed", lambda hook_id, key_id=None: sent.append((hook_id, key_id))
    )
    return sent


def test_editing_a_hooks_pause_or_limits_in_its_form_reaches_live_connections(
    operator: Client,
    hook: Hook,
    django_capture_on_commit_callbacks: Any,
    rechecked: list[tuple[str, int | None]],
) -> None:
    url = f"/admin/hooks/hook/{hook.pk}/change/"
    data = _form_data(operator.get(url))

    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(url, {**data, "description": "renamed"}).status_code == 302
    assert rechecked == []  # nothing live changed

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(url, {**data, "is_paused": "on", "limits": '{"wall_seconds": 2}'})
    assert response.status_code == 302
    hook.refresh_from_db()
    assert hook.is_paused and hook.limits == {"wall_seconds": 2}
    assert rechecked == [(str(hook.pk), None)]


def test_pausing_a_key_in_the_admin_closes_its_live_connections(
    operator: Client,
    hook: Hook,
    django_capture_on_commit_callbacks: Any,
    rechecked: list[tuple[str, int | None]],
) -> None:
    read = Key.objects.get(hook=hook, kind="read")

    # In the hook's form (the keys inline)...
    url = f"/admin/hooks/hook/{hook.pk}/change/"
    data = _form_data(operator.get(url))
    row = next(
        name for name, value in data.items() if name.endswith("-id") and str(value) == str(read.pk)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            operator.post(url, {**data, row.replace("-id", "-is_paused"): "on"}).status_code == 302
        )
    assert Key.objects.get(pk=read.pk).is_paused
    assert rechecked == [(str(hook.pk), read.pk)]

    # ... and in the key's own form.
    rechecked.clear()
    url = f"/admin/hooks/key/{read.pk}/change/"
    data = _form_data(operator.get(url))
    data.pop("is_paused")
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(url, data).status_code == 302
    assert not Key.objects.get(pk=read.pk).is_paused
    assert rechecked == [(str(hook.pk), read.pk)]
