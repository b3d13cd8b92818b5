"""Keys through the management API: create, pause, resume, revoke (docs/api.md)."""

from __future__ import annotations

import pytest
from django.test import Client

from hooks.models import Key, Request
from tests.conftest import read_key, write_key
from tests.hooks.api import read, url, write

pytestmark = pytest.mark.usefixtures("eager_tasks")

CODE = """
from webreducer import Response

def reducer(state, request, secrets):
    return (state or 0) + 1

def responder(request, secrets):
    print("the responder ran")
    return Response({"responder": "ran"}, status=200)

def query(state, params, secrets):
    return {"count": state}
"""


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def key_of(hook, kind: str) -> Key:  # type: ignore[no-untyped-def]
    return hook.keys.get(kind=kind)


def test_it_creates_read_and_write_keys_that_work_at_once(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)

    written = api.post(url(hook, "keys"), {"kind": "write", "label": "github"}, format="json")
    reader = api.post(url(hook, "keys"), {"kind": "read"}, format="json")

    assert written.status_code == 201
    assert written.json()["label"] == "github"
    assert written.json()["url"].endswith(f"/write/{written.json()['token']}")
    assert len(written.json()["token"]) >= 43  # 256 bits, URL-safe base64
    assert write(client, written.json()["token"], {}).json() == {"responder": "ran"}
    assert read(client, reader.json()["token"]).json() == {"count": 1}
    listed = api.get(url(hook, "keys")).json()
    assert [k["kind"] for k in listed] == ["write", "read", "write", "read"]


def test_it_refuses_an_unknown_kind(api, make_hook) -> None:
    hook = make_hook()
    for body in ({"kind": "admin"}, {}, {"kind": "read", "label": "x" * 101}):
        response = api.post(url(hook, "keys"), body, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"
    assert hook.keys.count() == 2


def test_a_paused_write_key_answers_404_stores_nothing_and_runs_no_responder(
    api, make_hook, client: Client
) -> None:
    hook = make_hook(CODE)
    key = key_of(hook, "write")

    response = api.patch(url(hook, "keys", key.pk), {"paused": True}, format="json")

    assert response.status_code == 200
    assert response.json()["paused"] is True
    answer = write(client, key.token, {})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert "responder" not in answer.content.decode()
    assert not Request.objects.filter(hook=hook).exists()

    api.patch(url(hook, "keys", key.pk), {"paused": False}, format="json")

    assert write(client, key.token, {}).json() == {"responder": "ran"}
    assert Request.objects.filter(hook=hook).count() == 1


def test_a_paused_read_key_answers_404_and_does_not_serve(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)
    write(client, write_key(hook), {})
    key = key_of(hook, "read")

    api.patch(url(hook, "keys", key.pk), {"paused": True}, format="json")

    answer = read(client, key.token)
    assert answer.status_code == 404
    assert "count" not in answer.content.decode()
    assert "X-WebReducer-Seq" not in answer

    api.patch(url(hook, "keys", key.pk), {"paused": False}, format="json")
    assert read(client, read_key(hook)).json() == {"count": 1}


def test_a_revoked_key_is_listed_but_unusable_for_good(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)
    key = key_of(hook, "write")

    response = api.delete(url(hook, "keys", key.pk))

    assert response.status_code == 204
    listed = {k["id"]: k for k in api.get(url(hook, "keys")).json()}
    assert listed[key.pk]["revoked_at"] is not None
    assert write(client, key.token, {}).status_code == 404
    assert not Request.objects.exists()
    # It cannot be resumed, and revoking again changes nothing.
    resumed = api.patch(url(hook, "keys", key.pk), {"paused": False}, format="json")
    assert resumed.status_code == 409
    assert resumed.json()["error"]["code"] == "key_revoked"
    revoked_at = Key.objects.get(pk=key.pk).revoked_at
    assert api.delete(url(hook, "keys", key.pk)).status_code == 204
    assert Key.objects.get(pk=key.pk).revoked_at == revoked_at
    assert write(client, key.token, {}).status_code == 404


def test_it_answers_404_for_another_hooks_key_or_a_malformed_id(api, make_hook, bob) -> None:
    hook = make_hook()
    others = make_hook(owner=bob)
    theirs = key_of(others, "write")

    for key_id in (theirs.pk, "abc", "-1", 99999999):
        assert (
            api.patch(url(hook, "keys", key_id), {"paused": True}, format="json").status_code == 404
        )
        assert api.delete(url(hook, "keys", key_id)).status_code == 404
    assert Key.objects.get(pk=theirs.pk).is_usable


def test_it_refuses_a_patch_without_paused(api, make_hook) -> None:
    hook = make_hook()
    key = key_of(hook, "write")
    response = api.patch(url(hook, "keys", key.pk), {}, format="json")
    assert response.status_code == 400
    assert "paused" in response.json()["error"]["fields"]
