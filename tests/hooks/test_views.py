"""The web UI's views with Django's test client: landing, pages, panels, 404s, CSRF."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts import ratelimit
from accounts.models import User
from hooks.models import Hook, Key, Request, Secret
from hooks.services import EXAMPLE_CODE, secret_set
from tests.conftest import write_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Any:
    # Landing on "/" starts a visitor, which is rate limited per IP in the real Redis.
    ratelimit.reset()
    yield
    ratelimit.reset()


def logged_in(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def hook_urls(hook: Hook) -> dict[str, list[str]]:
    """Every UI route of one hook, by method."""
    kw = {"hook_id": hook.pk}
    key = hook.keys.first()
    assert key is not None
    request = Request.objects.filter(hook=hook).first()
    get = [
        reverse("hooks:detail", kwargs=kw),
        reverse("hooks:log", kwargs=kw),
        reverse("hooks:state", kwargs=kw),
        reverse("hooks:versions", kwargs=kw),
        reverse("hooks:delete", kwargs=kw),
        reverse("hooks:reset", kwargs=kw),
    ]
    if request is not None:
        get.append(reverse("hooks:request", kwargs={**kw, "request_id": request.uuid}))
    post = [
        reverse("hooks:settings", kwargs=kw),
        reverse("hooks:delete", kwargs=kw),
        reverse("hooks:reset", kwargs=kw),
        reverse("hooks:key-new", kwargs=kw),
        reverse("hooks:key-action", kwargs={**kw, "key_id": key.pk, "action": "revoke"}),
        reverse("hooks:secret-save", kwargs=kw),
        reverse("hooks:secret-delete", kwargs={**kw, "name": "TOKEN"}),
        reverse("hooks:sign", kwargs=kw),
        reverse("hooks:draft", kwargs=kw),
    ]
    return {"get": get, "post": post}


def test_it_lands_a_first_visitor_on_a_working_example_hook() -> None:
    client = Client()

    response = client.get("/")

    hook = Hook.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("hooks:detail", kwargs={"hook_id": hook.pk})
    assert hook.owner.is_visitor
    assert hook.name == "Counter example"
    assert hook.live_version is not None and hook.live_version.code == EXAMPLE_CODE
    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Send a test request" in html
    assert "Sign in to keep your hooks" in html
    assert f"/write/{write_key(hook)}" in html


def test_it_makes_the_example_only_once() -> None:
    client = Client()
    first = client.get("/")
    second = client.get("/")

    assert first["Location"] == second["Location"]
    assert Hook.objects.count() == 1


def test_it_sends_a_signed_in_user_to_the_hooks_list(alice: User, make_hook: Any) -> None:
    make_hook(EXAMPLE_CODE)

    response = logged_in(alice).get("/")

    assert response.status_code == 302
    assert response["Location"] == reverse("hooks:list")


def test_it_lists_hooks_with_their_requests_and_state_size(
    alice: User, make_hook: Any, client: Client
) -> None:
    hook = make_hook(EXAMPLE_CODE, name="scores")
    for number in (1, 2):
        client.post(
            f"/write/{write_key(hook)}", {"number": number}, content_type="application/json"
        )

    response = logged_in(alice).get(reverse("hooks:list"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "scores" in html
    assert ">2</td>" in html  # two requests
    assert "seq 2" in html


def test_it_creates_a_hook_from_a_starter(alice: User) -> None:
    response = logged_in(alice).post(reverse("hooks:new"), {"name": "", "starter": "iot_last_seen"})

    hook = Hook.objects.get(owner=alice)
    assert response["Location"] == reverse("hooks:detail", kwargs={"hook_id": hook.pk})
    assert hook.name == "IoT last-seen board"
    assert hook.live_version is not None
    assert "def query" in hook.live_version.code


def test_it_renders_the_hook_page_with_its_urls(alice: User, make_hook: Any, settings: Any) -> None:
    settings.SITE_ROOT = "https://wr.example.com"
    hook = make_hook(EXAMPLE_CODE)

    response = logged_in(alice).get(reverse("hooks:detail", kwargs={"hook_id": hook.pk}))

    html = response.content.decode()
    assert response.status_code == 200
    assert f"https://wr.example.com/write/{write_key(hook)}" in html
    assert "curl -X POST https://wr.example.com/write/" in html
    assert 'id="hook-config"' in html


def test_it_answers_404_to_an_outsider_on_every_hook_route(
    alice: User, bob: User, make_hook: Any, client: Client
) -> None:
    hook = make_hook(EXAMPLE_CODE)
    client.post(f"/write/{write_key(hook)}", {"number": 1}, content_type="application/json")
    secret_set(hook=hook, name="TOKEN", value="x")
    outsider = logged_in(bob)

    urls = hook_urls(hook)
    for url in urls["get"]:
        assert outsider.get(url).status_code == 404, url
    for url in urls["post"]:
        assert outsider.post(url, {"name": "X", "kind": "read", "value": "v"}).status_code == 404, (
            url
        )

    assert Hook.objects.filter(pk=hook.pk).exists()
    assert Secret.objects.filter(hook=hook).count() == 1
    assert not Key.objects.filter(hook=hook, revoked_at__isnull=False).exists()


def test_it_sends_an_anonymous_browser_to_sign_in(make_hook: Any) -> None:
    hook = make_hook(EXAMPLE_CODE)

    response = Client().get(reverse("hooks:detail", kwargs={"hook_id": hook.pk}))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_refuses_a_form_post_without_the_csrf_token(alice: User, make_hook: Any) -> None:
    hook = make_hook(EXAMPLE_CODE)
    client = logged_in(alice, enforce_csrf_checks=True)
    url = reverse("hooks:secret-save", kwargs={"hook_id": hook.pk})

    refused = client.post(url, {"name": "TOKEN", "value": "v"})

    assert refused.status_code == 403
    assert not Secret.objects.exists()
    client.get(reverse("hooks:detail", kwargs={"hook_id": hook.pk}))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(url, {"name": "TOKEN", "value": "v", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert Secret.objects.filter(hook=hook, name="TOKEN").exists()


def test_it_never_shows_a_secret_value(alice: User, make_hook: Any) -> None:
    hook = make_hook(EXAMPLE_CODE)
    client = logged_in(alice)

    panel = client.post(
        reverse("hooks:secret-save", kwargs={"hook_id": hook.pk}),
        {"name": "API_TOKEN", "value": "hunter2-very-secret"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    page = client.get(reverse("hooks:detail", kwargs={"hook_id": hook.pk}))

    for response in (panel, page):
        html = response.content.decode()
        assert "API_TOKEN" in html
        assert "hunter2-very-secret" not in html


def test_it_refuses_a_bad_secret_name_in_the_panel(alice: User, make_hook: Any) -> None:
    hook = make_hook(EXAMPLE_CODE)

    panel = logged_in(alice).post(
        reverse("hooks:secret-save", kwargs={"hook_id": hook.pk}),
        {"name": "lower-case", "value": "v"},
        HTTP_X_REQUESTED_WITH="fetch",
    )

    assert panel.status_code == 200
    assert "UPPER_SNAKE_CASE" in panel.content.decode()
    assert not Secret.objects.exists()


def key_action(client: Client, key: Key, action: str) -> str:
    """Post a keys panel action as the page's script does; the panel's new HTML."""
    url = reverse(
        "hooks:key-action", kwargs={"hook_id": key.hook_id, "key_id": key.pk, "action": action}
    )
    answer = client.post(url, HTTP_X_REQUESTED_WITH="fetch")
    assert answer.status_code == 200
    return answer.content.decode()


def test_it_pauses_resumes_and_revokes_a_key(alice: User, make_hook: Any) -> None:
    hook = make_hook(EXAMPLE_CODE)
    key = hook.keys.get(kind=Key.Kind.WRITE)
    client = logged_in(alice)

    def act(action: str) -> None:
        key_action(client, key, action)

    act("pause")
    key.refresh_from_db()
    assert key.is_paused
    act("resume")
    key.refresh_from_db()
    assert not key.is_paused
    act("revoke")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_revoked_key_stays_revoked_in_the_keys_panel_as_in_the_api(
    alice: User, make_hook: Any
) -> None:
    hook = make_hook(EXAMPLE_CODE)
    key = hook.keys.get(kind=Key.Kind.WRITE)
    client = logged_in(alice)
    key_action(client, key, "revoke")
    revoked_at = Key.objects.get(pk=key.pk).revoked_at

    assert "A revoked key cannot be paused or resumed." in key_action(client, key, "resume")
    assert "This key is revoked already." in key_action(client, key, "revoke")
    key.refresh_from_db()
    assert key.revoked_at == revoked_at and not key.is_paused


def test_it_shows_a_request_with_its_state_diff(
    alice: User, make_hook: Any, client: Client
) -> None:
    hook = make_hook(EXAMPLE_CODE)
    for number in (5, 7):
        client.post(
            f"/write/{write_key(hook)}", {"number": number}, content_type="application/json"
        )
    second = Request.objects.get(hook=hook, seq=2)

    response = logged_in(alice).get(
        reverse("hooks:request", kwargs={"hook_id": hook.pk, "request_id": second.uuid})
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "/count" in html and '1</span> → <span class="op-new">2' in html
    assert "/number" in html and '5</span> → <span class="op-new">12' in html


def test_it_deletes_a_hook_after_confirmation(alice: User, make_hook: Any) -> None:
    hook = make_hook(EXAMPLE_CODE, name="doomed")
    client = logged_in(alice)
    url = reverse("hooks:delete", kwargs={"hook_id": hook.pk})

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Delete “doomed”?" in confirm.content.decode()
    assert Hook.objects.filter(pk=hook.pk).exists()

    response = client.post(url)

    assert response["Location"] == reverse("hooks:list")
    assert not Hook.objects.filter(pk=hook.pk).exists()


def test_it_renders_the_docs_page() -> None:
    response = Client().get(reverse("hooks:docs"))

    html = response.content.decode()
    assert response.status_code == 200
    for text in ("The sandbox", "Limits", "verify_github", "Multiplayer tic-tac-toe", "since"):
        assert text in html, text
