"""Versions, their diff, and dry runs through the management API (docs/api.md)."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test import Client

from hooks.models import Hook, Version
from tests.conftest import read_key, write_key
from tests.hooks.api import read, url, write

pytestmark = pytest.mark.usefixtures("eager_tasks")

ADD = """\
def reducer(state, request, secrets):
    state = state or {"number": 0}
    state["number"] += request.body["number"]
    return state
"""
DOUBLE = """\
def reducer(state, request, secrets):
    state = state or {"number": 0}
    print("adding", request.body["number"] * 2)
    if request.body["number"] == 3:
        raise KeyError("three")
    state["number"] += request.body["number"] * 2
    return state
"""


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


@pytest.fixture
def published(api, make_hook, django_capture_on_commit_callbacks) -> Hook:  # type: ignore[no-untyped-def]
    """A hook at version 2 (DOUBLE), with version 1 (ADD) archived, and no history."""
    hook = make_hook(ADD)
    api.put(url(hook, "draft"), {"code": DOUBLE}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        api.post(url(hook, "publish"), {"strict": False}, format="json")
    return hook


def test_it_lists_versions_newest_first_with_author_status_and_hash(api, published) -> None:
    body = api.get(url(published, "versions")).json()

    assert body["next"] is None
    latest, first = body["results"]
    assert latest["number"] == 2
    assert latest["status"] == "published"
    assert latest["author"] == "alice@example.com"
    assert latest["sha256"] == hashlib.sha256(DOUBLE.encode()).hexdigest()[:12]
    assert latest["functions"] == ["reducer"]
    assert latest["rolled_back_from"] is None
    assert latest["published_at"] is not None
    assert latest["progress"] is None
    assert latest["error"] == ""
    assert "code" not in latest
    assert first["number"] == 1
    assert first["status"] == "archived"


def test_it_reads_one_version_with_its_code(api, published) -> None:
    response = api.get(url(published, "versions", 1))

    assert response.status_code == 200
    assert response.json()["code"] == ADD
    for number in (3, 0, "abc"):
        assert api.get(url(published, "versions", number)).status_code == 404


def test_it_diffs_two_versions_and_the_draft(api, published) -> None:
    body = api.get(url(published, "versions", "diff") + "?from=1&to=2").json()

    assert body["from"] == "1"
    assert body["to"] == "2"
    assert body["diff"].startswith("--- v1\n+++ v2\n@@")
    assert '-    state["number"] += request.body["number"]\n' in body["diff"]
    assert '+    state["number"] += request.body["number"] * 2\n' in body["diff"]

    # By default: the live version against the draft.
    assert api.get(url(published, "versions", "diff")).json()["diff"] == ""
    api.put(url(published, "draft"), {"code": DOUBLE + "# more\n"}, format="json")
    body = api.get(url(published, "versions", "diff")).json()
    assert (body["from"], body["to"]) == ("2", "draft")
    assert body["diff"].endswith("+# more\n")
    assert "--- v2\n+++ draft\n" in body["diff"]
    assert api.get(url(published, "versions", "diff") + "?from=draft&to=1").json()["diff"]


def test_it_refuses_a_diff_of_unknown_sides(api, published) -> None:
    response = api.get(url(published, "versions", "diff") + "?from=live")
    assert response.status_code == 400
    assert "from" in response.json()["error"]["fields"]
    assert api.get(url(published, "versions", "diff") + "?to=9").status_code == 404


def table_counts() -> dict[str, int]:
    counts = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if table.startswith("hooks_"):
                cursor.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cursor.fetchone()[0]
    return counts


def test_a_dry_run_shows_state_diff_errors_and_console_and_changes_nothing(
    api, make_hook, client: Client
) -> None:
    hook = make_hook(ADD)
    for number in (1, 2, 3, 4):
        write(client, write_key(hook), {"number": number})
    api.put(url(hook, "draft"), {"code": DOUBLE}, format="json")
    counts = table_counts()
    hook_row = Hook.objects.filter(pk=hook.pk).values().get()
    live = api.get(url(hook, "state")).json()

    response = api.post(url(hook, "dry-run"), {}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == {"number": 14}
    assert body["live_state"] == {"number": 10}
    assert body["live_seq"] == 4
    assert body["diff"] == [{"op": "replace", "path": "/number", "value": 14, "old": 10}]
    assert (body["requests"], body["history"], body["truncated"]) == (4, 4, False)
    assert body["failures"] == 1
    failed = [r for r in body["report"] if r["outcome"] == "failed"]
    assert [r["seq"] for r in failed] == [3]
    assert failed[0]["error"]["type"] == "KeyError"
    assert [r["console"] for r in body["report"]] == [f"adding {n * 2}\n" for n in (1, 2, 3, 4)]
    # Nothing changed: not a row, not the hook, not the state.
    assert table_counts() == counts
    assert Hook.objects.filter(pk=hook.pk).values().get() == hook_row
    assert api.get(url(hook, "state")).json() == live
    assert read(client, read_key(hook)).json() == {"number": 10}
    assert Version.objects.filter(hook=hook).count() == 1


def test_a_dry_run_takes_given_code_and_the_last_n_requests(api, make_hook, client: Client) -> None:
    hook = make_hook(ADD)
    for number in (1, 2, 3, 4):
        write(client, write_key(hook), {"number": number})

    body = api.post(url(hook, "dry-run"), {"code": ADD, "last": 2}, format="json").json()

    assert body["state"] == {"number": 7}
    assert (body["requests"], body["history"], body["truncated"]) == (2, 4, True)
    assert body["report"] == []


def test_a_dry_run_refuses_bad_code_and_input(api, make_hook) -> None:
    hook = make_hook(ADD)

    response = api.post(url(hook, "dry-run"), {"code": "def reducer(\n"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "syntax_error"
    assert response.json()["error"]["line"] == 1
    for body in ({"last": 0}, {"last": "many"}, {"code": 5}):
        response = api.post(url(hook, "dry-run"), body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid"


def test_publish_refuses_a_non_boolean_strict(api, make_hook) -> None:
    hook = make_hook(ADD)
    response = api.post(url(hook, "publish"), {"strict": "perhaps"}, format="json")
    assert response.status_code == 400
    assert "strict" in response.json()["error"]["fields"]
    assert Version.objects.filter(hook=hook).count() == 1
