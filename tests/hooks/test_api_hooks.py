"""The management API of hooks: list, create, read, rename, delete, draft, state, archive."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client, override_settings

from hooks.models import Hook, ReplayOutcome, Request, Version
from hooks.replay import version_replay
from hooks.services import secret_set
from tests.conftest import read_key, write_key
from tests.hooks.api import read, url, write

pytestmark = pytest.mark.usefixtures("eager_tasks")

ADD = """
def reducer(state, request, secrets):
    state = state or {"number": 0}
    state["number"] += request.body["number"]
    return state
"""


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def test_it_creates_a_hook_with_its_keys_and_their_urls(api, settings) -> None:
    settings.SITE_ROOT = "https://wr.example.com/"

    response = api.post("/api/hooks/", {"name": "scores", "code": ADD}, format="json")

    assert response.status_code == 201
    body = response.json()
    hook = Hook.objects.get(pk=body["id"])
    assert body["name"] == "scores"
    assert body["live_version"] == 1
    assert body["draft_code"] == ADD
    assert body["draft_changed"] is False
    assert body["seq"] == 0
    assert body["counts"] == {
        "pending": 0,
        "applied": 0,
        "duplicate": 0,
        "failed": 0,
        "rejected": 0,
    }
    keys = {key["kind"]: key for key in body["keys"]}
    assert keys["write"]["url"] == f"https://wr.example.com/write/{write_key(hook)}"
    assert keys["read"]["url"] == f"https://wr.example.com/read/{read_key(hook)}"
    assert keys["write"]["paused"] is False
    assert keys["write"]["revoked_at"] is None


def test_it_creates_an_empty_hook_without_a_body(api, client: Client) -> None:
    response = api.post("/api/hooks/", format="json")

    assert response.status_code == 201
    assert response.json()["name"] == "Untitled hook"
    hook = Hook.objects.get(pk=response.json()["id"])
    assert write(client, write_key(hook), {"a": 1}).status_code == 202


def test_it_refuses_to_create_a_hook_with_a_syntax_error(api) -> None:
    response = api.post("/api/hooks/", {"code": "x = 1\ndef reducer(:\n"}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "syntax_error"
    assert error["line"] == 2
    assert isinstance(error["column"], int)
    assert not Hook.objects.exists()


def test_it_lists_only_the_users_hooks_newest_first(api, make_hook, bob) -> None:
    first = make_hook(name="first")
    second = make_hook(name="second")
    make_hook(name="bob's", owner=bob)

    body = api.get("/api/hooks/").json()

    assert [h["id"] for h in body["results"]] == [str(second.pk), str(first.pk)]
    assert body["next"] is None
    assert {k["kind"] for k in body["results"][0]["keys"]} == {"read", "write"}


def test_it_reads_a_hook_with_its_seq_counts_and_replay(api, make_hook, client: Client) -> None:
    hook = make_hook(ADD)
    write(client, write_key(hook), {"number": 2})
    write(client, write_key(hook), {"number": "not a number"})  # the reducer fails
    api.put(url(hook, "draft"), {"code": ADD + "\n# edited\n"}, format="json")

    body = api.get(url(hook)).json()

    assert body["seq"] == 2
    assert body["counts"] == {
        "pending": 0,
        "applied": 1,
        "duplicate": 0,
        "failed": 1,
        "rejected": 0,
    }
    assert body["live_version"] == 1
    assert body["draft_changed"] is True
    assert body["replay"] is None


def test_it_shows_the_progress_of_a_running_replay(
    api, make_hook, client: Client, django_capture_on_commit_callbacks
) -> None:
    hook = make_hook(ADD)
    for number in range(5):
        write(client, write_key(hook), {"number": number})
    with django_capture_on_commit_callbacks(execute=False):
        api.post(url(hook, "publish"), format="json")
    with override_settings(WR_BATCH_SIZE=2):
        version_replay(version_id=Version.objects.get(hook=hook, number=2).pk, seconds=0.001)

    replay = api.get(url(hook)).json()["replay"]

    assert replay == {
        "version": 2,
        "status": "running",
        "applied": 2,
        "total": 5,
        "failures": 0,
        "error": "",
    }


def test_it_renames_and_describes_a_hook(api, make_hook) -> None:
    hook = make_hook()

    response = api.patch(url(hook), {"name": "renamed", "description": "Scores"}, format="json")

    assert response.status_code == 200
    assert response.json()["name"] == "renamed"
    assert response.json()["description"] == "Scores"
    hook.refresh_from_db()
    assert (hook.name, hook.description) == ("renamed", "Scores")


def test_it_refuses_a_blank_or_too_long_name(api, make_hook) -> None:
    hook = make_hook()
    for name in ("", "x" * 101):
        response = api.patch(url(hook), {"name": name}, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"
        assert "name" in response.json()["error"]["fields"]


def hooks_table_counts() -> dict[str, int]:
    counts = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if table.startswith("hooks_"):
                cursor.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cursor.fetchone()[0]
    return counts


def test_it_deletes_a_hook_and_everything_it_owns(
    api, make_hook, bob, client: Client, django_capture_on_commit_callbacks
) -> None:
    others = make_hook(ADD, owner=bob)
    write(client, write_key(others), {"number": 1})
    before = hooks_table_counts()

    hook = make_hook(ADD)
    secret_set(hook=hook, name="TOKEN", value="t0ps3cret")
    for number in range(5):
        write(client, write_key(hook), {"number": number}, **{"Idempotency-Key": f"k{number}"})
    write(client, write_key(hook), {"number": 0}, **{"Idempotency-Key": "k0"})  # a duplicate
    with django_capture_on_commit_callbacks(execute=False):
        api.post(url(hook, "publish"), format="json")
    with override_settings(WR_BATCH_SIZE=2):  # a rebuild half-way: staged outcomes exist
        version_replay(version_id=Version.objects.get(hook=hook, number=2).pk, seconds=0.001)
    assert ReplayOutcome.objects.filter(request__hook=hook).exists()
    assert Request.objects.filter(hook=hook, duplicate_of__isnull=False).exists()

    response = api.delete(url(hook))

    assert response.status_code == 204
    assert hooks_table_counts() == before
    assert api.get(url(hook)).status_code == 404
    assert write(client, write_key(others), {"number": 1}).status_code == 202


def test_it_saves_and_reads_the_draft(api, make_hook, client: Client) -> None:
    hook = make_hook(ADD)
    draft = "def reducer(state, request, secrets):\n    return 'draft'\n"

    response = api.put(url(hook, "draft"), {"code": draft}, format="json")

    assert response.status_code == 200
    assert response.json() == {"code": draft, "changed": True, "live_version": 1}
    assert api.get(url(hook, "draft")).json()["code"] == draft
    # The draft never affects live traffic.
    write(client, write_key(hook), {"number": 3})
    assert read(client, read_key(hook)).json() == {"number": 3}


def test_it_keeps_the_drafts_whitespace(api, make_hook) -> None:
    hook = make_hook()
    code = "\n\n# comment   \n"
    api.put(url(hook, "draft"), {"code": code}, format="json")
    assert api.get(url(hook, "draft")).json()["code"] == code


def test_it_refuses_a_draft_with_a_syntax_error_with_its_line_and_column(api, make_hook) -> None:
    hook = make_hook(ADD)

    response = api.put(
        url(hook, "draft"), {"code": "def reducer(state):\n    return (\n"}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "syntax_error"
    assert error["message"].startswith("SyntaxError")
    assert error["line"] == 2
    assert error["column"] >= 1
    hook.refresh_from_db()
    assert hook.draft_code == ADD


def test_it_refuses_a_draft_over_the_code_limit(api, make_hook, settings) -> None:
    settings.WR_MAX_CODE_BYTES = 100
    hook = make_hook()

    response = api.put(url(hook, "draft"), {"code": "#" * 101}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "code_too_large"
    assert response.json()["error"]["line"] is None


def test_it_refuses_a_draft_without_code(api, make_hook) -> None:
    hook = make_hook()
    for body in ({}, {"code": None}, {"code": 5}):
        response = api.put(url(hook, "draft"), body, format="json")
        assert response.status_code == 400, body
    response = api.put(url(hook, "draft"), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_it_reads_the_live_state_and_its_seq(api, make_hook, client: Client) -> None:
    hook = make_hook(ADD)
    assert api.get(url(hook, "state")).json() == {"seq": 0, "state": None, "version": 1}
    write(client, write_key(hook), {"number": 4})

    assert api.get(url(hook, "state")).json() == {"seq": 1, "state": {"number": 4}, "version": 1}


def test_archive_resets_the_history_and_the_state_at_once(api, make_hook, client: Client) -> None:
    hook = make_hook(ADD)
    write(client, write_key(hook), {"number": 4})
    write(client, write_key(hook), {"number": 5})
    assert read(client, read_key(hook)).json() == {"number": 9}

    response = api.post(url(hook, "archive"), format="json")

    assert response.status_code == 200
    assert response.json()["seq"] == 0
    assert response.json()["counts"]["applied"] == 0
    reply = read(client, read_key(hook))
    assert reply.content == b"null"  # the original product kept serving the old state
    assert reply["X-WebReducer-Seq"] == "0"
    assert api.get(url(hook, "requests")).json()["results"] == []
    assert api.get(url(hook, "state")).json() == {"seq": 0, "state": None, "version": 1}
    # …and the history starts again from seq 1.
    write(client, write_key(hook), {"number": 1})
    assert read(client, read_key(hook)).json() == {"number": 1}
    assert Request.objects.get(hook=hook).seq == 1


def test_it_answers_404_with_the_json_error_for_a_malformed_or_unknown_hook_id(api) -> None:
    for hook_id in ("nope", "00000000-0000-0000-0000-000000000000"):
        response = api.get(url(hook_id))
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_it_answers_401_without_credentials(make_hook) -> None:
    from rest_framework.test import APIClient

    hook = make_hook()
    response = APIClient().get(url(hook))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_takes_json_bodies_only(api, make_hook) -> None:
    hook = make_hook()
    response = api.patch(url(hook), {"name": "form"}, format="multipart")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
