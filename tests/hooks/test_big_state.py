"""A hook whose state is bigger than the request log keeps (WR_LOG_STATE_MAX_BYTES, 64 KiB):
the sandbox sends such a state back only once per batch (docs/sandbox.md, "Big states"), and
everything that reads states still sees the right ones: the committed state and seq, the log's
state after each request (None when it was too big to keep, as before), the state limit
failing exactly the request that breaks it, the realtime notification, a publish's replay and a
dry run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from hooks import broadcast, pipeline
from hooks.models import Hook, Request, State
from tests.conftest import read_key, write_key
from tests.hooks.api import url

pytestmark = pytest.mark.django_db

BIG = 100_000  # bytes of padding: over the 64 KiB log cap, under the 1 MiB state limit

# "grow" pads the state past the log cap, "shrink" drops the padding, "huge" tries a state
# over the state limit; every other request adds its name.
CODE = f"""
def reducer(state, request, secrets):
    state = state or {{"names": [], "pad": ""}}
    name = request.body["name"]
    if name == "grow":
        state["pad"] = "x" * {BIG}
    elif name == "shrink":
        state["pad"] = ""
    elif name == "huge":
        state["pad"] = "x" * (2 << 20)
    state["names"].append(name)
    return state
"""


def send(client: Client, hook: Hook, *names: str) -> None:
    for name in names:
        response = client.post(
            f"/write/{write_key(hook)}", json.dumps({"name": name}), content_type="application/json"
        )
        assert response.status_code == 202, response.content


def state_text(names: list[str], pad: int) -> str:
    return json.dumps({"names": names, "pad": "x" * pad}, separators=(",", ":"))


def log(hook: Hook) -> list[tuple[int | None, str, str | None, str | None]]:
    rows = Request.objects.filter(hook=hook).order_by("seq")
    return [
        (r.seq, r.outcome, (r.error or {}).get("type"), r.state_after)  # type: ignore[union-attr]
        for r in rows
    ]


@pytest.fixture
def notified(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The realtime notifications the pipeline sends after each commit."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(broadcast, "state_changed", lambda **message: sent.append(message))
    return sent


def test_it_logs_small_states_commits_the_big_one_and_fails_the_request_over_the_limit(
    make_hook: Any,
    client: Client,
    notified: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    hook = make_hook(CODE)
    send(client, hook, "a", "grow", "b", "huge", "c")

    with django_capture_on_commit_callbacks(execute=True):
        pipeline.hook_reduce(hook_id=hook.pk)

    assert log(hook) == [
        (1, "applied", None, state_text(["a"], 0)),
        (2, "applied", None, None),  # over the log cap: never sent back per request
        (3, "applied", None, None),
        (4, "failed", "StateTooLarge", None),  # the state before it, which was big
        (5, "applied", None, None),
    ]
    committed = state_text(["a", "grow", "b", "c"], BIG)
    state = State.objects.get(version_id=hook.live_version_id)
    assert (state.seq, state.value) == (5, committed)
    read = client.get(f"/read/{read_key(hook)}")
    assert read.content.decode() == committed and read["X-WebReducer-Seq"] == "5"
    assert notified[-1]["seq"] == 5 and notified[-1]["value"] == committed


def test_it_goes_back_to_logging_states_once_the_state_is_small_again(
    make_hook: Any,
    client: Client,
    notified: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    hook = make_hook(CODE)
    send(client, hook, "grow", "a", "shrink", "b")

    with django_capture_on_commit_callbacks(execute=True):
        pipeline.hook_reduce(hook_id=hook.pk)

    names = ["grow", "a", "shrink", "b"]
    assert [after for *_, after in log(hook)] == [
        None,
        None,
        state_text(names[:3], 0),
        state_text(names, 0),
    ]
    assert State.objects.get(version_id=hook.live_version_id).value == state_text(names, 0)
    assert notified[-1]["value"] == state_text(names, 0)


def test_it_folds_a_big_state_across_read_ahead_batches_without_losing_a_request(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(CODE)
    names = ["grow", *(f"n{i}" for i in range(59))]
    send(client, hook, *names)

    # Several batches in one slice: the first one is 16 requests, the next one folds in the
    # sandbox while it is written.
    count, more = pipeline.hook_reduce_slice(hook_id=hook.pk, seconds=60)

    assert (count, more) == (60, False)
    state = State.objects.get(version_id=hook.live_version_id)
    assert (state.seq, state.value) == (60, state_text(names, BIG))
    assert [seq for seq, *_ in log(hook)] == list(range(1, 61))
    assert all(outcome == "applied" and after is None for _, outcome, _, after in log(hook))


@pytest.mark.usefixtures("eager_tasks")
def test_a_publish_and_a_dry_run_over_a_big_state_see_the_same_states(
    make_hook: Any,
    client: Client,
    alice: Any,
    client_for: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    hook = make_hook(CODE)
    send(client, hook, "a", "grow", "b", "huge", "shrink", "c")
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.hook_reduce(hook_id=hook.pk)
    live = log(hook)
    final = State.objects.get(version_id=hook.live_version_id).value
    api = client_for(alice)

    dry = api.post(url(hook, "dry-run"), {}, format="json")
    assert dry.status_code == 200, dry.content
    assert dry.json()["state"] == json.loads(final) and dry.json()["failures"] == 1

    assert api.put(url(hook, "draft"), {"code": CODE + "\n"}, format="json").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(url(hook, "publish"), {}, format="json").status_code == 202
    hook.refresh_from_db()
    assert hook.live_version is not None and hook.live_version.number == 2
    assert log(hook) == live  # the replay logged the same outcomes and states
    assert State.objects.get(version_id=hook.live_version_id).value == final
