"""The UI's issue-16 parts with Django's test client: a request's stored answer, log filters,
server-side signing of a starter's test request, versions' code, and the API tokens page."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from examples import example
from hooks.models import Request
from hooks.replay import hook_publish
from hooks.services import draft_save, secret_set
from tests.conftest import write_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

ECHO = """
from webreducer import Response

def responder(request, secrets):
    return Response({"expected": secrets.get("TOKEN")}, status=403)
"""


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_shows_the_answer_beside_the_request_with_secrets_masked(alice, make_hook) -> None:
    hook = make_hook(ECHO)
    secret_set(hook=hook, name="TOKEN", value="tok-very-secret")
    Client().post(f"/write/{write_key(hook)}", "{}", content_type="application/json")
    row = Request.objects.get()

    html = (
        logged_in(alice)
        .get(reverse("hooks:request", kwargs={"hook_id": hook.pk, "request_id": row.uuid}))
        .content.decode()
    )

    assert "[secret TOKEN]" in html
    assert "tok-very-secret" not in html
    assert re.search(r'class="status-code text-danger">403<', html)
    assert f'data-resend="{row.uuid}"' in html and f'data-add-test="{row.uuid}"' in html


def test_it_marks_a_resent_copy_with_the_original_seq(alice, make_hook, client_for) -> None:
    hook = make_hook("def reducer(state, request, secrets):\n    return (state or 0) + 1\n")
    Client().post(f"/write/{write_key(hook)}", "{}", content_type="application/json")
    original = Request.objects.get()
    copy = client_for(alice).post(f"/api/hooks/{hook.pk}/requests/{original.uuid}/resend/").json()

    html = (
        logged_in(alice)
        .get(reverse("hooks:request", kwargs={"hook_id": hook.pk, "request_id": copy["id"]}))
        .content.decode()
    )

    assert re.search(r'class="resent-from">#1<', html)


def test_it_filters_the_log_panel_by_outcome_and_path(alice, make_hook) -> None:
    hook = make_hook(
        "from webreducer import Response\n"
        "def responder(request, secrets):\n"
        "    return Response({}, status=400 if request.path == 'bad' else 200)\n"
    )
    for path in ("github/push", "stripe", "bad"):
        Client().post(f"/write/{write_key(hook)}/{path}", "{}", content_type="application/json")
    url = reverse("hooks:log", kwargs={"hook_id": hook.pk})
    page = logged_in(alice)

    def paths(query: str) -> list[str]:
        return re.findall(r'class="c-path">/([^<]*)<', page.get(url + query).content.decode())

    assert paths("") == ["bad", "stripe", "github/push"]
    assert paths("?status=rejected") == ["bad"]
    assert paths("?path=/git") == ["github/push"]
    assert paths("?status=applied&path=bad") == []


def test_it_prefills_a_github_request_signed_on_the_server_without_the_secret(
    alice, make_hook
) -> None:
    hook = make_hook(example("github_board").code)
    page = logged_in(alice)
    detail = reverse("hooks:detail", kwargs={"hook_id": hook.pk})
    assert "Set the secret <code>GITHUB_SECRET</code>" in page.get(detail).content.decode()
    secret_set(hook=hook, name="GITHUB_SECRET", value="gh-hook-secret")

    html = page.get(detail).content.decode()

    assert "gh-hook-secret" not in html
    body = example("github_board").sample[3]
    expected = hmac.new(b"gh-hook-secret", body.encode(), hashlib.sha256).hexdigest()
    assert f"X-Hub-Signature-256: sha256={expected}" in html
    # Each send is signed again for the body as it is then.
    sign = reverse("hooks:sign", kwargs={"hook_id": hook.pk})
    answer = page.post(
        sign, json.dumps({"starter": "github_board", "body": "{}"}), content_type="application/json"
    )
    assert answer.status_code == 200
    signature = hmac.new(b"gh-hook-secret", b"{}", hashlib.sha256).hexdigest()
    assert answer.json()["headers"]["X-Hub-Signature-256"] == f"sha256={signature}"
    assert "gh-hook-secret" not in answer.content.decode()
    refused = page.post(
        sign,
        json.dumps({"starter": "stripe_ledger", "body": "{}"}),
        content_type="application/json",
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "no_secret"


def test_it_offers_each_versions_code_and_diff(alice, make_hook) -> None:
    hook = make_hook("")
    draft_save(hook=hook, code="def reducer(state, request, secrets):\n    return 1\n")
    hook_publish(hook=hook, author=alice)

    html = logged_in(alice).get(reverse("hooks:versions", kwargs={"hook_id": hook.pk})).content
    text = html.decode()

    assert 'data-version-code="1"' in text and "Code and diff" in text
    assert 'data-version-panel="1"' in text


def test_it_creates_a_token_shown_once_and_revokes_it(alice: User, bob: User) -> None:
    page = logged_in(alice)
    url = reverse("accounts:tokens")

    created = page.post(url, {"name": "laptop"})

    assert created.status_code == 302  # post/redirect/get: a reload makes no second token
    shown = page.get(url)
    token = re.search(r'id="new-token">(wr_[^<]+)<', shown.content.decode())
    assert token is not None
    assert shown["Cache-Control"] == "no-store"
    api_token = ApiToken.objects.get(user=alice)
    assert token[1] not in page.get(url).content.decode()  # only once
    assert ApiToken.objects.filter(user=alice).count() == 1
    assert (
        Client().get("/api/me/", headers={"Authorization": f"Bearer {token[1]}"}).status_code == 200
    )

    revoke = reverse("accounts:token-revoke", kwargs={"token_id": api_token.pk})
    assert logged_in(bob).post(revoke).status_code == 404
    assert page.post(revoke).status_code == 302
    assert (
        Client().get("/api/me/", headers={"Authorization": f"Bearer {token[1]}"}).status_code == 401
    )


def test_it_sends_a_visitor_to_sign_in_for_tokens(visitor: User) -> None:
    page = logged_in(visitor)
    html = page.get(reverse("accounts:tokens")).content.decode()
    assert "Sign in" in html and 'id="new-token"' not in html
    page.post(reverse("accounts:tokens"), {"name": "x"})
    assert not ApiToken.objects.filter(user=visitor).exists()
    _, token = api_token_create(user=visitor, name="from the API")  # the API way still works
    assert token.startswith("wr_")
