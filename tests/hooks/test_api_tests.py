"""A hook's test cases (issue 16): stored with the hook, run in the sandbox against the draft
or given code (fresh state per case, nothing stored), required by publish, bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hooks.models import Hook, HookTests, Request, State, Version
from hooks.services import draft_save, secret_set
from tests.hooks.api import call, url

pytestmark = pytest.mark.usefixtures("eager_tasks")

COUNTER = """
from webreducer import Response

def responder(request, secrets):
    if isinstance(request.body, dict) and request.body.get("reject"):
        return Response({"error": "no"}, status=422)
    return {"ok": True}

def reducer(state, request, secrets):
    state = state or {"n": 0}
    state["n"] += request.body.get("add", 1)
    return state
"""

CASES: list[dict[str, Any]] = [
    {
        "name": "counts two requests",
        "requests": [
            {"body": {"add": 2}, "expect": {"status": 200, "body": {"ok": True}}},
            {"body": {"add": 3}, "expect": {"state": {"n": 5}}},
        ],
        "expect": {"state": {"n": 5}},
    },
    {
        "name": "a rejected request is not folded",
        "requests": [
            {"body": {"reject": True}, "expect": {"status": 422}},
            {"body": {}},
        ],
        "expect": {"state": {"n": 1}},
    },
]


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def run(api, hook: Hook, body: Any = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = call(api, "post", url(hook, "tests", "run"), body or {})
    assert response.status_code == 200, response.content
    return response.json()  # type: ignore[no-any-return]


def test_it_stores_and_returns_a_hooks_test_cases(api, make_hook, bob, client_for) -> None:
    hook = make_hook(COUNTER)
    assert call(api, "get", url(hook, "tests")).json() == {"cases": [], "required": False}

    saved = call(api, "put", url(hook, "tests"), {"cases": CASES, "required": True})

    assert saved.status_code == 200
    assert call(api, "get", url(hook, "tests")).json() == {"cases": CASES, "required": True}
    outsider = client_for(bob)
    assert call(outsider, "get", url(hook, "tests")).status_code == 404
    assert call(outsider, "put", url(hook, "tests"), {"cases": []}).status_code == 404
    assert call(outsider, "post", url(hook, "tests", "run"), {}).status_code == 404


def test_it_runs_the_stored_cases_against_the_draft(api, make_hook) -> None:
    hook = make_hook(COUNTER)
    call(api, "put", url(hook, "tests"), {"cases": CASES})
    assert run(api, hook) == {
        "passed": 2,
        "failed": 0,
        "results": [
            {"name": "counts two requests", "passed": True, "error": None, "failures": []},
            {
                "name": "a rejected request is not folded",
                "passed": True,
                "error": None,
                "failures": [],
            },
        ],
    }
    # The draft, not the live code, is what runs by default.
    draft_save(hook=hook, code=COUNTER.replace('request.body.get("add", 1)', "10"))

    outcome = run(api, hook)

    assert outcome["failed"] == 2
    first = outcome["results"][0]
    assert first["failures"][0] == {
        "step": 1,
        "what": "state",
        "expected": {"n": 5},
        "actual": {"n": 20},
        "diff": [{"op": "replace", "path": "/n", "value": 20, "old": 5}],
    }
    assert first["failures"][-1]["step"] is None  # the case's own expectation


def test_it_runs_given_code_and_cases_and_stores_nothing(api, make_hook) -> None:
    hook = make_hook(COUNTER)
    before = (Request.objects.count(), list(State.objects.values_list("value", "seq")))
    cases = [{"name": "status", "requests": [{"body": {}, "expect": {"status": 201}}]}]

    outcome = run(
        api, hook, {"code": "def responder(request, secrets):\n    return 1\n", "cases": cases}
    )

    assert outcome["failed"] == 1
    assert outcome["results"][0]["failures"] == [
        {"step": 0, "what": "status", "expected": 201, "actual": 200}
    ]
    assert (Request.objects.count(), list(State.objects.values_list("value", "seq"))) == before
    assert not HookTests.objects.exists()
    assert Version.objects.filter(hook=hook).count() == 1


def test_it_starts_each_case_from_a_fresh_state_and_a_fresh_sandbox(api, make_hook) -> None:
    # A module-level global would carry one case's requests into the next in a shared child.
    code = """
SEEN = []

def reducer(state, request, secrets):
    SEEN.append(1)
    return {"state_n": (state or {}).get("state_n", 0) + 1, "global_n": len(SEEN)}
"""
    hook = make_hook(code)
    case = {
        "name": "one",
        "requests": [{"body": {}}],
        "expect": {"state": {"state_n": 1, "global_n": 1}},
    }

    outcome = run(api, hook, {"cases": [case, {**case, "name": "two"}, {**case, "name": "three"}]})

    assert outcome == {**outcome, "passed": 3, "failed": 0}


def test_it_applies_idempotency_as_in_production(api, make_hook) -> None:
    hook = make_hook(COUNTER)
    step = {"body": {}, "headers": {"Idempotency-Key": "same"}}
    cases = [{"name": "dup", "requests": [step, step, {"body": {}}], "expect": {"state": {"n": 2}}}]

    assert run(api, hook, {"cases": cases})["passed"] == 1


def test_it_routes_each_step_to_its_room_as_a_write_would(api, make_hook) -> None:
    code = """
def room(request, secrets):
    if request.body.get("bad"):
        raise ValueError("no match")
    return request.body.get("match")

def reducer(state, request, secrets):
    state = state or {"room": request.room, "seqs": []}
    state["seqs"].append(request.seq)
    return state
"""
    hook = make_hook(code)
    a, b = {"body": {"match": "a"}}, {"body": {"match": "b"}}
    steps = [
        a,
        {**b, "expect": {"state": {"room": "b", "seqs": [1]}}},
        {**a, "expect": {"state": {"room": "a", "seqs": [1, 2]}}},
        {"body": {}, "expect": {"state": {"room": None, "seqs": [1]}}},  # the main room
        {"body": {"bad": True}, "expect": {"status": 400}},  # `room` raised: rejected
        {"body": {"match": "no spaces"}, "expect": {"status": 400}},  # not a room name
        {**b, "headers": {"Idempotency-Key": "k"}},
        {**a, "headers": {"Idempotency-Key": "k"}},  # the key is the hook's: a duplicate
    ]
    case = {"name": "rooms", "requests": steps, "expect": {"state": {"room": "a", "seqs": [1, 2]}}}

    outcome = run(api, hook, {"cases": [case]})

    assert outcome["results"][0]["failures"] == []
    assert outcome["passed"] == 1
    # Without a `room` function, `?room=` routes, and a bad one answers 400 as the write does.
    plain = make_hook(COUNTER)
    case = {
        "name": "query",
        "requests": [
            {"body": {}, "query": {"room": ["x"]}, "expect": {"state": {"n": 1}}},
            {"body": {}, "query": {"room": ["x"]}, "expect": {"state": {"n": 2}}},
            {"body": {}, "expect": {"state": {"n": 1}}},
            {"body": {}, "query": {"room": ["bad room"]}, "expect": {"status": 400}},
        ],
    }
    assert run(api, plain, {"cases": [case]})["passed"] == 1


def test_it_reports_an_exception_with_its_traceback_and_masks_secrets(api, make_hook) -> None:
    code = """
def reducer(state, request, secrets):
    raise ValueError("the key is " + secrets["API_KEY"])
"""
    hook = make_hook(code)
    secret_set(hook=hook, name="API_KEY", value="hunter2-very-secret")

    outcome = run(api, hook, {"cases": [{"name": "boom", "requests": [{"body": {}}]}]})

    result = outcome["results"][0]
    assert result["passed"] is False
    assert result["error"]["type"] == "ValueError"
    assert "[secret API_KEY]" in result["error"]["message"]
    assert "line 3" in result["error"]["traceback"]
    assert result["failures"][0]["what"] == "error"
    assert "hunter2-very-secret" not in json.dumps(outcome)


def test_it_sends_raw_bodies_and_headers_so_signatures_can_be_checked(api, make_hook) -> None:
    import hashlib
    import hmac

    code = """
from webreducer import Response, WebhookVerificationError, verify_github

def responder(request, secrets):
    try:
        verify_github(request, secrets["GITHUB_SECRET"])
    except WebhookVerificationError as error:
        return Response({"error": str(error)}, status=401)
    return {"ok": True}
"""
    hook = make_hook(code)
    secret_set(hook=hook, name="GITHUB_SECRET", value="gh-secret")
    raw = '{"action": "opened"}'
    signature = "sha256=" + hmac.new(b"gh-secret", raw.encode(), hashlib.sha256).hexdigest()
    step = {
        "raw_body": raw,
        "content_type": "application/json",
        "headers": {"X-Hub-Signature-256": signature},
        "expect": {"status": 200},
    }
    forged = {**step, "headers": {"X-Hub-Signature-256": "sha256=00"}, "expect": {"status": 401}}

    outcome = run(api, hook, {"cases": [{"name": "signed", "requests": [step, forged]}]})

    assert outcome["passed"] == 1, outcome


def test_it_answers_a_syntax_error_in_the_code_with_its_line(api, make_hook) -> None:
    hook = make_hook(COUNTER)
    response = call(
        api, "post", url(hook, "tests", "run"), {"code": "def reducer(:\n", "cases": CASES}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["line"]) == ("syntax_error", 1)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"cases": "nope"}, "cases"),
        ({"cases": [{"requests": [{}]}]}, "cases[0].name"),
        ({"cases": [{"name": "x", "requests": []}]}, "cases[0].requests"),
        (
            {"cases": [{"name": "x", "requests": [{"headers": {"A": 1}}]}]},
            "cases[0].requests[0].headers",
        ),
        (
            {"cases": [{"name": "x", "requests": [{"expect": {"status": 99}}]}]},
            "cases[0].requests[0].expect.status",
        ),
        ({"cases": [{"name": "x", "requests": [{"room": "r1"}]}]}, "cases[0].requests[0].room"),
        ({"cases": [], "required": "yes"}, "required"),
    ],
)
def test_it_refuses_an_invalid_document_naming_the_field(api, make_hook, document, field) -> None:
    hook = make_hook(COUNTER)
    response = call(api, "put", url(hook, "tests"), document)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]


def test_it_bounds_hostile_documents(api, make_hook, settings) -> None:
    hook = make_hook(COUNTER)
    huge_body = {"cases": [{"name": "big", "requests": [{"body": "x" * (64 * 1024 + 1)}]}]}
    too_many = {"cases": [{"name": str(i), "requests": [{}]} for i in range(101)]}
    step_flood = {"cases": [{"name": "flood", "requests": [{}] * 1001}]}

    for document, field in (
        (huge_body, "cases[0].requests[0].body"),
        (too_many, "cases"),
        (step_flood, "cases[0].requests"),
    ):
        for path in (url(hook, "tests"), url(hook, "tests", "run")):
            body = document if path.endswith("tests/") else {"cases": document["cases"]}
            response = call(api, "put" if path.endswith("tests/") else "post", path, body)
            assert response.status_code == 400, (field, response.content)
            assert field in response.json()["error"]["fields"]
    whole = {"cases": [{"name": str(i), "requests": [{"body": "y" * 60000}]} for i in range(20)]}
    response = call(api, "put", url(hook, "tests"), whole)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_large"
    assert not HookTests.objects.exists()


def test_it_stops_a_run_at_its_total_time_limit(api, make_hook, settings) -> None:
    # Each call stays within its own limits; the run as a whole is bounded too.
    settings.WR_MAX_TEST_RUN_SECONDS = 0.5
    code = """
def reducer(state, request, secrets):
    total = 0
    for i in range(300000):
        total += i
    return total
"""
    hook = make_hook(code)
    cases = [{"name": str(i), "requests": [{"body": {}}] * 10} for i in range(100)]

    outcome = run(api, hook, {"cases": cases})

    assert outcome["failed"] > 0
    stopped = [
        r for r in outcome["results"] if r["error"] and r["error"]["type"] == "TestRunTimeLimit"
    ]
    assert stopped and all(not r["passed"] for r in stopped)
    assert stopped[-1]["name"] == "99"


def test_it_refuses_to_publish_when_required_tests_fail(api, make_hook) -> None:
    hook = make_hook(COUNTER)
    call(api, "put", url(hook, "tests"), {"cases": CASES, "required": True})
    draft_save(hook=hook, code=COUNTER.replace('state["n"] +=', 'state["n"] -='))

    response = call(api, "post", url(hook, "publish"), {})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "tests_failed"
    assert "2 of 2" in error["message"]
    assert [r["passed"] for r in error["results"]] == [False, False]
    assert Version.objects.filter(hook=hook).count() == 1

    draft_save(hook=hook, code=COUNTER)
    assert call(api, "post", url(hook, "publish"), {}).status_code == 202
    assert Version.objects.filter(hook=hook).count() == 2


def test_it_publishes_despite_failing_tests_that_are_not_required(api, make_hook) -> None:
    hook = make_hook(COUNTER)
    call(api, "put", url(hook, "tests"), {"cases": CASES, "required": False})
    draft_save(hook=hook, code="")

    assert call(api, "post", url(hook, "publish"), {}).status_code == 202


def test_it_passes_the_example_in_the_docs_on_the_counter(api, make_hook) -> None:
    import re

    from django.conf import settings

    from hooks.services import EXAMPLE_CODE

    text = (settings.BASE_DIR / "docs" / "functions.md").read_text()
    section = text[text.index("## Test cases") :]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL)[1])  # type: ignore[index]
    hook = make_hook(EXAMPLE_CODE)

    outcome = run(api, hook, {"cases": example})

    assert (outcome["passed"], outcome["failed"]) == (3, 0), outcome
    assert call(api, "put", url(hook, "tests"), {"cases": example}).status_code == 200
